//! Turns the results of `cargo bench --bench compare` into `BENCHMARKS.md` and
//! `docs/benchmarks.svg`: per operation the median time of each system (median over rounds of
//! criterion's medians) and the ratios, taken round by round and then their median, so disk
//! drift between rounds cancels out.
//!
//! Run `cargo bench --bench compare`, then `cargo run --example bench_report`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const SYSTEMS: [&str; 5] = [
    "redkeep_exclusive",
    "redkeep_shared",
    "bare_redb",
    "sqlite_wal_full",
    "raw_floor",
];

/// Operations in report order, with the target the issue set for redkeep (Exclusive).
const OPERATIONS: [(&str, &str); 15] = [
    ("user_by_email", "≤ 1.15× bare redb, ≤ 0.5× SQLite"),
    ("user_by_id", "≤ 1.15× bare redb, ≤ 0.5× SQLite"),
    ("session_validate", "≤ 1.15× bare redb, ≤ 0.5× SQLite"),
    ("permission_check", "≤ 1.15× bare redb, ≤ 0.5× SQLite"),
    ("page_of_50_by_created", "≤ 1.15× bare redb, ≤ 0.5× SQLite"),
    ("concurrent_reads_4_threads", ""),
    ("user_by_email_while_writing", ""),
    ("durable_insert", ""),
    ("durable_login", ""),
    ("durable_create_user", "≤ 1.1× bare redb"),
    ("batch_1000_inserts", "≤ 1.2× bare redb, ≤ 1× SQLite"),
    ("workspace_update", "≤ 1.1× raw floor"),
    ("save_piece", "≤ 1.1× raw floor"),
    ("concurrent_inserts_1_threads", ""),
    (
        "concurrent_inserts_16_threads",
        "≥ 5× SQLite's rate, ≥ 8× own 1-thread rate",
    ),
];

/// The prefix of the key under which a round keeps a paired ratio (not a system).
const PAIRED: &str = "paired:";

type Table = BTreeMap<String, BTreeMap<u64, BTreeMap<String, f64>>>;

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn read_results(dir: &Path) -> std::io::Result<Table> {
    let mut out: Table = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix('r') else {
            continue;
        };
        let Some((round, op)) = rest.split_once('_') else {
            continue;
        };
        let Ok(round) = round.parse::<u64>() else {
            continue;
        };
        // The median ratio of Exclusive's time to another system's in back-to-back pairs
        // (`paired` in benches/compare.rs), kept under `paired:` and that system's name.
        if let Ok(text) = std::fs::read_to_string(entry.path().join("paired.json")) {
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| std::io::Error::other(format!("{name}/paired.json: {e}")))?;
            if let (Some(r), Some(against)) = (v["median_ratio"].as_f64(), v["against"].as_str()) {
                out.entry(op.to_string())
                    .or_default()
                    .entry(round)
                    .or_default()
                    .insert(format!("{PAIRED}{against}"), r);
            }
        }
        for system in SYSTEMS {
            let path = entry.path().join(system).join("new/estimates.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
            if let Some(ns) = v["median"]["point_estimate"].as_f64() {
                out.entry(op.to_string())
                    .or_default()
                    .entry(round)
                    .or_default()
                    .insert(system.to_string(), ns);
            }
        }
    }
    Ok(out)
}

/// The median over rounds of `a / b`.
fn ratio(rounds: &BTreeMap<u64, BTreeMap<String, f64>>, a: &str, b: &str) -> Option<f64> {
    median(
        rounds
            .values()
            .filter_map(|r| Some(r.get(a)? / r.get(b)?))
            .collect(),
    )
}

fn time_of(rounds: &BTreeMap<u64, BTreeMap<String, f64>>, system: &str) -> Option<f64> {
    median(
        rounds
            .values()
            .filter_map(|r| r.get(system).copied())
            .collect(),
    )
}

fn show_time(ns: Option<f64>) -> String {
    match ns {
        None => "–".into(),
        Some(ns) if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        Some(ns) if ns >= 1e3 => format!("{:.1} µs", ns / 1e3),
        Some(ns) => format!("{ns:.0} ns"),
    }
}

fn show_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}"))
}

fn machine() -> String {
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

/// Bars of redkeep's ratios against bare redb and SQLite (or the raw floor), one pair per
/// operation, on a log scale around 1.
fn svg(rows: &[(String, Option<f64>, Option<f64>)]) -> String {
    let (left, width, row_h, top) = (210.0, 420.0, 26.0, 40.0);
    let height = top + row_h * rows.len() as f64 + 40.0;
    // log2 scale from 1/8 to 8.
    let x = |r: f64| left + width / 2.0 + (r.clamp(0.125, 8.0).log2() / 3.0) * (width / 2.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14">redkeep (Exclusive) time ÷ other's time, median of interleaved rounds (log scale; left of 1 = redkeep faster)</text>
"##,
        w = left + width + 120.0
    );
    for (tick, label) in [
        (0.125, "⅛"),
        (0.25, "¼"),
        (0.5, "½"),
        (1.0, "1"),
        (2.0, "2"),
        (4.0, "4"),
        (8.0, "8"),
    ] {
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{y2}" stroke="{c}"/><text x="{x}" y="{ty}" text-anchor="middle">{label}</text>"##,
            x = x(tick),
            y2 = height - 30.0,
            c = if tick == 1.0 { "#000" } else { "#ddd" },
            ty = height - 15.0
        );
    }
    for (i, (name, redb, other)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let _ = writeln!(
            s,
            r##"<text x="{tx}" y="{ty}" text-anchor="end">{name}</text>"##,
            tx = left - 8.0,
            ty = y + 16.0
        );
        for (k, (r, colour)) in [(redb, "#4a7ebb"), (other, "#d9822b")]
            .into_iter()
            .enumerate()
        {
            if let Some(r) = r {
                let (a, b) = (x(1.0), x(*r));
                let _ = writeln!(
                    s,
                    r##"<rect x="{x0}" y="{y0}" width="{w}" height="10" fill="{colour}"/><text x="{lx}" y="{ly}" font-size="10">{r:.2}</text>"##,
                    x0 = a.min(b),
                    y0 = y + 3.0 + 11.0 * k as f64,
                    w = (b - a).abs().max(1.0),
                    lx = a.max(b) + 4.0,
                    ly = y + 12.0 + 11.0 * k as f64
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<rect x="{lx}" y="28" width="10" height="10" fill="#4a7ebb"/><text x="{tx}" y="37">÷ bare redb</text>
<rect x="{lx}" y="44" width="10" height="10" fill="#d9822b"/><text x="{tx}" y="53">÷ SQLite / raw floor</text>
</svg>"##,
        lx = left + width + 10.0,
        tx = left + width + 24.0
    );
    s
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let results = root.join("target/criterion");
    let info: serde_json::Value = std::fs::read_to_string(results.join("compare.json"))
        .map_err(|e| {
            format!(
                "no results in {}: run `cargo bench --bench compare` first ({e})",
                results.display()
            )
        })
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))?;
    let table = read_results(&results)?;
    if table.is_empty() {
        return Err("no compare results: run `cargo bench --bench compare` first".into());
    }
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Made by `cargo bench --bench compare && cargo run --example bench_report` on {}.\n\
         Machine: {}. {} users loaded, {} interleaved rounds: in every round each operation \
         runs on every system one after another; times are medians over rounds of criterion's \
         medians, ratios are medians of the per-round ratios. The rows that add plain users \
         (durable insert, batch of 1,000, the concurrent inserts, the writer of the \
         reads-while-writing row) take them out again after the row, untimed, so every round \
         reads the loaded number of users (the create-user and login rows still add a few \
         thousand accounts and sessions a round).\n",
        info["date"].as_str().unwrap_or("?"),
        machine(),
        info["users"],
        info["rounds"],
    );
    let _ = writeln!(
        md,
        "Systems: redkeep with an Exclusive and a Shared handle (durability Immediate), bare \
         redb keeping the same tables and indexes by hand (bincode values), SQLite 3 (bundled) \
         in WAL mode with `synchronous=FULL`, prepared statements and the same indexes; for \
         workspace files, the raw floor of crash-safe replacement (write a temp file, fsync, \
         rename, fsync the folder). For the workspace rows (against the floor) and for durable \
         insert and create user (against bare redb), the ratio is the median, over rounds, of \
         each round's median ratio of pairs in which redkeep Exclusive and the other ran back \
         to back, the one or the other first in turns. For reads, bare redb begins a read \
         transaction and opens its tables for each operation, as an application that uses \
         redb directly does; redkeep Exclusive, the file's only writer, keeps the transaction \
         of the latest commit with its tables open for the reads that follow it, those made \
         while the next commit runs included, and lets it go as that commit ends, so a hot \
         read begins no transaction and opens no table (the first read after a commit, or one \
         while a commit runs that no read came before, pays for both); redkeep Shared, whose \
         file other processes change, begins one for every read. A page of 50 users by \
         creation time reads the index entries, then the records: bare redb looks each \
         record up from the root of its table, as an application \
         does by hand; redkeep, finding their ids in rising order (ids come from a sequence, \
         so creation order is id order), steps from one record to the next in the table. \
         redkeep's login and create-user flows include hashing or checking a \
         password at cheap argon2 parameters, which the bare versions skip; create user writes \
         the user with its indexes, the credential, the default role's grant, a \
         personal org with its membership, and three audit rows (role granted, org created, user \
         created) with their by-user index entries, and the bare versions write the same rows \
         by hand. \
         Login in redkeep also counts the attempt in a separate non-durable commit (lockout), \
         clears the count, keeps three session indexes and an audit row; the bare versions \
         only update the user and insert the session with its by-user entry. A session holds \
         the same fields in all three (display prefix, user, times, idle timeout, address and \
         user agent) and the same one-day idle timeout, a validation checks both its expiry \
         and its idle deadline, and redkeep records no use of a session while the benchmark \
         validates it (as the bare versions never write). In all \
         three, every \
         account holds the system role `user` and a role `editor`, so a permission check reads \
         two grants and two roles; the 500 accounts also hold, in all three, a personal org \
         with its membership, a session and five audit rows, as redkeep's flows leave them. \
         concurrent_reads_4_threads times 4 threads making 500 lookups by email each at once \
         (SQLite with a connection per thread): its times are for all 2,000. For it and the \
         concurrent writes below, each system's threads (and processes) are started once and \
         wait between iterations, so starting them is not timed. \
         user_by_email_while_writing times one lookup by email while another thread makes a \
         durable one-user commit to the same file every millisecond (SQLite's writer with a \
         connection of its own): 1,000 commits a second, fewer than one writer of each \
         system manages alone, so all four read under the same load.\n\n\
         ![ratios](docs/benchmarks.svg)\n"
    );
    let _ = writeln!(
        md,
        "| operation | redkeep Exclusive | redkeep Shared | bare redb | SQLite / floor | Excl ÷ redb | Excl ÷ SQLite or floor | Shared ÷ redb | target |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let mut bars = Vec::new();
    for (op, target) in OPERATIONS {
        let Some(rounds) = table.get(op) else {
            continue;
        };
        let floor = if rounds.values().any(|r| r.contains_key("raw_floor")) {
            "raw_floor"
        } else {
            "sqlite_wal_full"
        };
        // The paired ratio when the run measured one: it does not move with the disk's
        // drift between criterion's samples.
        let against = |other: &str| {
            let key = format!("{PAIRED}{other}");
            if rounds.values().any(|r| r.contains_key(&key)) {
                median(
                    rounds
                        .values()
                        .filter_map(|r| r.get(&key).copied())
                        .collect(),
                )
            } else {
                ratio(rounds, "redkeep_exclusive", other)
            }
        };
        let vs_redb = against("bare_redb");
        let vs_other = against(floor);
        let _ = writeln!(
            md,
            "| {op} | {} | {} | {} | {} | {} | {} | {} | {target} |",
            show_time(time_of(rounds, "redkeep_exclusive")),
            show_time(time_of(rounds, "redkeep_shared")),
            show_time(time_of(rounds, "bare_redb")),
            show_time(time_of(rounds, floor)),
            show_ratio(vs_redb),
            show_ratio(vs_other),
            show_ratio(ratio(rounds, "redkeep_shared", "bare_redb")),
        );
        bars.push((op.to_string(), vs_redb, vs_other));
    }
    // Concurrency as rates: 8 durable one-record commits per thread per iteration.
    let _ = writeln!(
        md,
        "\n## Durable commits from several threads or processes (commits per second)\n\n\
         Each thread or process makes 8 durable one-user commits per iteration, all at once.\n\n\
         | threads | redkeep Exclusive | redkeep Shared | bare redb | SQLite |\n|---|---|---|---|---|"
    );
    for threads in [1u64, 4, 16] {
        let Some(rounds) = table.get(&format!("concurrent_inserts_{threads}_threads")) else {
            continue;
        };
        let rate =
            |system: &str| time_of(rounds, system).map(|ns| (threads * 8) as f64 / (ns / 1e9));
        let row: Vec<Option<f64>> = [
            "redkeep_exclusive",
            "redkeep_shared",
            "bare_redb",
            "sqlite_wal_full",
        ]
        .iter()
        .map(|s| rate(s))
        .collect();
        let cell = |r: Option<f64>| r.map_or_else(|| "–".into(), |r| format!("{r:.0}"));
        let _ = writeln!(
            md,
            "| {threads} | {} | {} | {} | {} |",
            cell(row[0]),
            cell(row[1]),
            cell(row[2]),
            cell(row[3])
        );
    }
    // The same from 4 processes (only the systems several processes can write).
    if let Some(rounds) = table.get("concurrent_inserts_4_processes") {
        let rate = |system: &str| {
            time_of(rounds, system).map_or_else(
                || "–".to_string(),
                |ns| format!("{:.0}", (4 * 8) as f64 / (ns / 1e9)),
            )
        };
        let _ = writeln!(
            md,
            "| 4 processes | – (one process's alone) | {} | – (one process's alone) | {} |",
            rate("redkeep_shared"),
            rate("sqlite_wal_full")
        );
    }
    // Per round, as every ratio above: the 16-writer rate over the 1-writer rate of the same
    // round (16 × the 1-thread time over the 16-thread time), and the median of those.
    if let (Some(one), Some(sixteen)) = (
        table.get("concurrent_inserts_1_threads"),
        table.get("concurrent_inserts_16_threads"),
    ) {
        let per_round = |a: &BTreeMap<u64, BTreeMap<String, f64>>, sa: &str, scale: f64| {
            sixteen
                .iter()
                .filter_map(|(round, r)| {
                    Some(scale * a.get(round)?.get(sa)? / r.get("redkeep_exclusive")?)
                })
                .collect::<Vec<f64>>()
        };
        let own = per_round(one, "redkeep_exclusive", 16.0);
        let sqlite = per_round(sixteen, "sqlite_wal_full", 1.0);
        if let (Some(o), Some(q)) = (median(own.clone()), median(sqlite)) {
            let rounds: Vec<String> = own.iter().map(|r| format!("{r:.1}")).collect();
            let _ = writeln!(
                md,
                "\nredkeep Exclusive with 16 writers: {o:.1}× its own 1-writer rate (per round: \
                 {}), {q:.1}× SQLite's 16-writer rate; medians of the rounds' ratios (group \
                 commit: concurrent writes share one transaction and one fsync).",
                rounds.join(", ")
            );
        }
    }
    if let Some(argon) = table_argon(&results) {
        let _ = writeln!(
            md,
            "\nPassword check at the default argon2id parameters (OWASP: m = 19 MiB, t = 2, p = 1), \
             reported apart since it dominates any login: {}.",
            show_time(Some(argon))
        );
    }
    std::fs::create_dir_all(root.join("docs"))?;
    std::fs::write(root.join("docs/benchmarks.svg"), svg(&bars))?;
    std::fs::write(root.join("BENCHMARKS.md"), md)?;
    println!("wrote BENCHMARKS.md and docs/benchmarks.svg");
    Ok(())
}

fn table_argon(results: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(
        results.join("argon2_default_check_password/redkeep/new/estimates.json"),
    )
    .ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["median"]["point_estimate"].as_f64()
}
