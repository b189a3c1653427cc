//! Where the comparison and the scale run leave their results, and the machine they ran on,
//! one definition for the benchmarks and `examples/bench_report.rs` (included with `#[path]`):
//! the report reads exactly the folder criterion wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Criterion's output folder, found as criterion finds it: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else `target/criterion` in the package.
pub fn results_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        let target = PathBuf::from(target);
        // Relative to the package, where cargo runs benchmarks and examples.
        return Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(target)
            .join("criterion");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion")
}

/// The file the scale run (`benches/scale.rs`) writes its figures to, for the report.
pub const SCALE_FILE: &str = "scale.json";

/// Seconds since the epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The processor, its number of cores and the kernel.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

/// The page cache every SQLite connection of the benchmarks gets, in KiB: redkeep's default
/// redb cache for these files (`cache_for` in `src/handle.rs`: a quarter of the file, at least
/// 160 MiB), so neither side reads pages through the OS that the other keeps in memory. redb
/// maps no memory, so SQLite's `mmap_size` stays off.
pub const SQLITE_CACHE_KIB: i64 = 160 * 1024;

/// The pragma that sets [`SQLITE_CACHE_KIB`] (negative: a size in KiB, not in pages).
pub fn sqlite_cache_pragma() -> String {
    format!("PRAGMA cache_size=-{SQLITE_CACHE_KIB};")
}
