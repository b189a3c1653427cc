//! Turns the results of `cargo bench --bench compare` (and, when present, of
//! `cargo bench --bench scale`) into `BENCHMARKS.md` and `docs/benchmarks.svg`: per operation
//! the median time of each system (median over rounds of criterion's medians) and the
//! ratios, taken round by round and then their median, so disk drift between rounds cancels
//! out; each target of the issue is judged met or missed from the figure shown beside it.
//!
//! Run `cargo bench --bench compare`, then `cargo run --release --example bench_report`; an
//! argument names another folder to write the two files into (for a trial run).

#[path = "../benches/common/results.rs"]
mod results;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const SYSTEMS: [&str; 6] = [
    "redkeep_exclusive",
    "redkeep_shared",
    "bare_redb",
    "sqlite_wal_full",
    "sqlite_one_connection",
    "raw_floor",
];

/// What redkeep Exclusive's time is held against in a target.
#[derive(Clone, Copy)]
enum Base {
    Redb,
    Sqlite,
    Floor,
}

impl Base {
    fn name(self) -> &'static str {
        match self {
            Base::Redb => "bare redb",
            Base::Sqlite => "SQLite",
            Base::Floor => "raw floor",
        }
    }
}

/// A target of the issue for a row: redkeep Exclusive's time at most `at_most` times the
/// base's.
type Limit = (Base, f64);

const READ: &[Limit] = &[(Base::Redb, 1.15), (Base::Sqlite, 0.5)];

/// Operations in report order, with the targets the issue set for redkeep (Exclusive). The
/// 16-writer row's targets are on rates and judged apart ([`writers_verdict`]).
const OPERATIONS: [(&str, &[Limit]); 15] = [
    ("user_by_email", READ),
    ("user_by_id", READ),
    ("session_validate", READ),
    ("permission_check", READ),
    ("page_of_50_by_created", READ),
    ("concurrent_reads_4_threads", &[]),
    ("user_by_email_while_writing", &[]),
    ("durable_insert", &[]),
    ("durable_login", &[]),
    ("durable_create_user", &[(Base::Redb, 1.1)]),
    (
        "batch_1000_inserts",
        &[(Base::Redb, 1.2), (Base::Sqlite, 1.0)],
    ),
    ("workspace_update", &[(Base::Floor, 1.1)]),
    ("save_piece", &[(Base::Floor, 1.1)]),
    ("concurrent_inserts_1_threads", &[]),
    ("concurrent_inserts_16_threads", &[]),
];

/// The 16-writer targets: redkeep Exclusive's rate with 16 writers at least this many times
/// its own 1-writer rate, and at least [`VS_SQLITE_16`] times SQLite's with 16 writers.
const VS_OWN_1: f64 = 8.0;
const VS_SQLITE_16: f64 = 5.0;

/// The prefixes of the keys under which a round keeps what its pairs measured (not a
/// system): the median pair ratio, and the median time of each side.
const PAIRED: &str = "paired:";
const PAIRED_MINE: &str = "paired_mine:";
const PAIRED_OTHER: &str = "paired_other:";

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

/// Whether `path` was written at or after `started` (seconds since the epoch).
fn fresh(path: &Path, started: i64) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .is_some_and(|d| d.as_secs() as i64 >= started)
}

/// The results of this run: rounds below `rounds`, from files written since `started` (a
/// folder left by an earlier run with more rounds, or a row a filtered run did not redo, is
/// left out and counted in the second value).
fn read_results(dir: &Path, rounds: u64, started: i64) -> std::io::Result<(Table, usize)> {
    let mut out: Table = BTreeMap::new();
    let mut stale = 0;
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
        if round >= rounds {
            stale += 1;
            continue;
        }
        let mut put = |key: String, v: f64| {
            out.entry(op.to_string())
                .or_default()
                .entry(round)
                .or_default()
                .insert(key, v);
        };
        // What back-to-back pairs of Exclusive and another system measured (`paired` in
        // benches/compare.rs), kept under the prefixes and that system's name.
        let paired = entry.path().join("paired.json");
        if let Ok(text) = std::fs::read_to_string(&paired) {
            if !fresh(&paired, started) {
                stale += 1;
            } else {
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| std::io::Error::other(format!("{name}/paired.json: {e}")))?;
                if let Some(against) = v["against"].as_str() {
                    for (prefix, field) in [
                        (PAIRED, "median_ratio"),
                        (PAIRED_MINE, "mine_median_ns"),
                        (PAIRED_OTHER, "other_median_ns"),
                    ] {
                        if let Some(x) = v[field].as_f64() {
                            put(format!("{prefix}{against}"), x);
                        }
                    }
                }
            }
        }
        for system in SYSTEMS {
            let path = entry.path().join(system).join("new/estimates.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if !fresh(&path, started) {
                stale += 1;
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
            if let Some(ns) = v["median"]["point_estimate"].as_f64() {
                put(system.to_string(), ns);
            }
        }
    }
    Ok((out, stale))
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
<text x="10" y="20" font-size="14">redkeep (Exclusive) time ÷ other's time, median of interleaved rounds (log scale, bars cut at ⅛ and 8, the label is the figure; left of 1 = redkeep faster)</text>
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

/// Median over rounds of the values kept under `key` (a system's time, or a paired figure).
fn median_of(rounds: &BTreeMap<u64, BTreeMap<String, f64>>, key: &str) -> Option<f64> {
    median(
        rounds
            .values()
            .filter_map(|r| r.get(key).copied())
            .collect(),
    )
}

/// `x` with its target `≤ limit` or `≥ limit`: "met" or "missed".
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

/// Figures and verdicts against the issue's targets, collected as the report is written.
#[derive(Default)]
struct Verdicts {
    missed: Vec<String>,
    met: usize,
}

impl Verdicts {
    /// Judges `what` (a figure, shown as `shown`) against its target (`target`), and keeps a
    /// missed one for the list.
    fn judge(&mut self, met: bool, what: &str, shown: &str, target: &str) -> &'static str {
        if met {
            self.met += 1;
        } else {
            self.missed
                .push(format!("{what}: {shown} (target {target})"));
        }
        verdict(met)
    }
}

/// The 16-writer row's rate ratios per round, and their medians: Exclusive's 16-writer rate
/// over its 1-writer rate of the same round (16 × the 1-thread time over the 16-thread time),
/// and over each SQLite setup's 16-writer rate.
struct Writers {
    own: Vec<f64>,
    own_median: f64,
    sqlite: Option<f64>,
    sqlite_one: Option<f64>,
}

fn writers(table: &Table) -> Option<Writers> {
    let one = table.get("concurrent_inserts_1_threads")?;
    let sixteen = table.get("concurrent_inserts_16_threads")?;
    let per_round = |a: &BTreeMap<u64, BTreeMap<String, f64>>, sa: &str, scale: f64| {
        sixteen
            .iter()
            .filter_map(|(round, r)| {
                Some(scale * a.get(round)?.get(sa)? / r.get("redkeep_exclusive")?)
            })
            .collect::<Vec<f64>>()
    };
    let own = per_round(one, "redkeep_exclusive", 16.0);
    Some(Writers {
        own_median: median(own.clone())?,
        own,
        sqlite: median(per_round(sixteen, "sqlite_wal_full", 1.0)),
        sqlite_one: median(per_round(sixteen, "sqlite_one_connection", 1.0)),
    })
}

/// The 16-writer targets, judged on rates: the figure cell and the verdict cell.
fn writers_verdict(w: &Writers, v: &mut Verdicts) -> (String, String) {
    let op = "concurrent_inserts_16_threads";
    let mut shown = vec![format!("{:.1}× own", w.own_median)];
    let mut verdicts = vec![v.judge(
        w.own_median >= VS_OWN_1,
        &format!("{op}, rate over its own 1-writer rate"),
        &format!("{:.1}×", w.own_median),
        &format!("≥ {VS_OWN_1}×"),
    )];
    for (ratio, label) in [
        (w.sqlite, "SQLite (16 connections)"),
        (w.sqlite_one, "SQLite (one shared connection)"),
    ] {
        if let Some(r) = ratio {
            shown.push(format!("{r:.1}× {label}"));
            verdicts.push(v.judge(
                r >= VS_SQLITE_16,
                &format!("{op}, rate over {label}"),
                &format!("{r:.1}×"),
                &format!("≥ {VS_SQLITE_16}×"),
            ));
        }
    }
    (shown.join(", "), verdicts.join(", "))
}

/// One system's figures at one size in the scale run (`benches/scale.rs`).
struct ScaleRow {
    system: String,
    users: u64,
    load_s: f64,
    file_bytes: f64,
    peak_rss_mib: f64,
    lookup_open_us: f64,
    lookup_again_us: f64,
}

/// The scale section: the table of `scale.json` with the four 1M targets judged.
fn scale_section(md: &mut String, results: &Path, v: &mut Verdicts) {
    let text = match std::fs::read_to_string(results.join(results::SCALE_FILE)) {
        Ok(t) => t,
        Err(_) => {
            let _ = writeln!(
                md,
                "\n## Scale\n\nNo scale results in this run's folder: \
                 `REDKEEP_SCALE_USERS=1000000 cargo bench --bench scale` makes them; its \
                 targets (load, file size, lookup growth, peak RSS) are not judged here."
            );
            return;
        }
    };
    let Ok(info) = serde_json::from_str::<serde_json::Value>(&text) else {
        let _ = writeln!(
            md,
            "\n## Scale\n\n`{}` could not be read.",
            results::SCALE_FILE
        );
        return;
    };
    let rows: Vec<ScaleRow> = info["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| {
                    Some(ScaleRow {
                        system: r["system"].as_str()?.to_string(),
                        users: r["users"].as_u64()?,
                        load_s: r["load_s"].as_f64()?,
                        file_bytes: r["file_bytes"].as_f64()?,
                        peak_rss_mib: r["peak_rss_mib"].as_f64()?,
                        lookup_open_us: r["lookup_open_us"].as_f64()?,
                        lookup_again_us: r["lookup_again_us"].as_f64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let big = info["users"].as_u64().unwrap_or(0);
    let _ = writeln!(
        md,
        "\n## Scale\n\nMade by `{}` on {}. Machine: {}. Each system in its own process: \
         users loaded in transactions of 10,000, then 20,000 random lookups by email right \
         after reopening the store, and the same 20,000 again (redkeep at its default cache, \
         SQLite with a page cache of the same size, bare redb at redb's default).\n\n\
         | system | users | load (s) | file (MiB) | peak RSS (MiB) | lookup after opening (µs) | the same users again (µs) |\n\
         |---|---|---|---|---|---|---|",
        info["command"]
            .as_str()
            .unwrap_or("cargo bench --bench scale"),
        info["date"].as_str().unwrap_or("?"),
        info["machine"].as_str().unwrap_or("?"),
    );
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} |",
            r.system,
            r.users,
            r.load_s,
            r.file_bytes / f64::from(1 << 20),
            r.peak_rss_mib,
            r.lookup_open_us,
            r.lookup_again_us
        );
    }
    let find =
        |system: &str, users: u64| rows.iter().find(|r| r.system == system && r.users == users);
    let (Some(rk), Some(rk_small), Some(redb), Some(sqlite)) = (
        find("redkeep", big),
        find("redkeep", 10_000),
        find("bare_redb", big),
        find("sqlite_wal_full", big),
    ) else {
        let _ = writeln!(md, "\nThe scale results lack a system or size: not judged.");
        return;
    };
    let _ = writeln!(
        md,
        "\nTargets at {big} users (the issue sets them for 1,000,000):\n\n\
         | target | figure | result |\n|---|---|---|"
    );
    let checks = [
        (
            "load ≤ SQLite's time",
            rk.load_s / sqlite.load_s,
            1.0,
            format!("{:.2} s ÷ {:.2} s", rk.load_s, sqlite.load_s),
        ),
        (
            "file ≤ 1.3× bare redb's",
            rk.file_bytes / redb.file_bytes,
            1.3,
            String::new(),
        ),
        (
            "lookup after opening ≤ 2× the 10,000-user figure",
            rk.lookup_open_us / rk_small.lookup_open_us,
            2.0,
            format!(
                "{:.2} µs ÷ {:.2} µs",
                rk.lookup_open_us, rk_small.lookup_open_us
            ),
        ),
        (
            "lookup of the same users again ≤ 2× the 10,000-user figure",
            rk.lookup_again_us / rk_small.lookup_again_us,
            2.0,
            format!(
                "{:.2} µs ÷ {:.2} µs",
                rk.lookup_again_us, rk_small.lookup_again_us
            ),
        ),
        (
            "peak RSS < 200 MiB",
            rk.peak_rss_mib / 200.0,
            1.0,
            format!("{:.0} MiB", rk.peak_rss_mib),
        ),
    ];
    for (target, ratio, limit, how) in checks {
        let shown = if target.starts_with("peak") {
            how
        } else if how.is_empty() {
            format!("{ratio:.2}×")
        } else {
            format!("{ratio:.2}× ({how})")
        };
        let met = if target.starts_with("peak") {
            ratio < limit
        } else {
            ratio <= limit
        };
        let result = v.judge(met, "scale", &shown, target);
        let _ = writeln!(md, "| {target} | {shown} | {result} |");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::args_os()
        .nth(1)
        .map_or_else(|| root.clone(), PathBuf::from);
    let results = results::results_dir();
    let info: serde_json::Value = std::fs::read_to_string(results.join("compare.json"))
        .map_err(|e| {
            format!(
                "no results in {}: run `cargo bench --bench compare` first ({e})",
                results.display()
            )
        })
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))?;
    let rounds = info["rounds"].as_u64().unwrap_or(u64::MAX);
    let started = info["started"].as_i64().unwrap_or(0);
    let (table, stale) = read_results(&results, rounds, started)?;
    if table.is_empty() {
        return Err("no compare results: run `cargo bench --bench compare` first".into());
    }
    if stale > 0 {
        eprintln!(
            "bench_report: left out {stale} result files in {} that are not this run's",
            results.display()
        );
    }
    let cache_mib = info["sqlite_cache_kib"].as_i64().unwrap_or(0) / 1024;
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Made by `cargo bench --bench compare && cargo run --release --example bench_report` \
         on {}. Machine: {}. {} users loaded, {} interleaved rounds: in every round each \
         operation runs on every system one after another, in an order that turns by one \
         system each round; times are medians over rounds of criterion's medians, ratios are \
         medians of the per-round ratios. Every row that adds records takes them out again \
         after the row, untimed, so every round reads tables of the loaded size in every \
         system: the plain users of the durable insert, batch of 1,000, concurrent inserts and \
         reads-while-writing rows, and the accounts (with their credentials, grants, personal \
         orgs, memberships and audit rows) and sessions of the create-user and login rows, \
         which each system makes as many of as fit in the row's time.\n",
        info["date"].as_str().unwrap_or("?"),
        info["machine"]
            .as_str()
            .map_or_else(results::machine, str::to_string),
        info["users"],
        rounds,
    );
    let _ = writeln!(
        md,
        "Systems: redkeep with an Exclusive and a Shared handle (durability Immediate) at its \
         default redb cache (a quarter of the file, at least 160 MiB); bare redb keeping the \
         same tables and indexes by hand (bincode values) at redb's default cache (1 GiB); \
         SQLite 3 (bundled) in WAL mode with `synchronous=FULL`, the same indexes, \
         `SQLITE_DBCONFIG_ENABLE_QPSG`, and a page cache of {cache_mib} MiB on every \
         connection (`cache_size`, as redkeep's; no memory map, as redb uses none), so all \
         three hold these files in memory; its read statements are prepared once and held. \
         SQLite's user row has fewer columns than redkeep's record (no uid, username, external \
         id, email-verified, must-change-password or current org), which favours it slightly. \
         For workspace files, the raw floor of crash-safe replacement (write a temp file, \
         fsync, rename, fsync the folder; a saved piece is always a new file, as in redkeep). \
         For the workspace rows (against the floor) and for durable insert and create user \
         (against bare redb), the ratio is the median, over rounds, of each round's median \
         ratio of pairs in which redkeep Exclusive and the other ran back to back, the one or \
         the other first in turns; the times marked † beside them are the same pairs' median \
         times (medians over rounds), and the other columns of those rows come from each \
         system's own run. For reads, bare redb begins a read \
         transaction and opens its tables for each operation, as an application that uses \
         redb directly does; redkeep Exclusive, the file's only writer, keeps the transaction \
         of the latest commit with its tables open for the reads that follow it, those made \
         while the next commit runs included, and lets it go as that commit ends, so a hot \
         read begins no transaction and opens no table (the first read after a commit, or one \
         while a commit runs that no read came before, pays for both); redkeep Shared, whose \
         file other processes change, begins one for every read. Each read row checks that it \
         found its record. A page of 50 users by \
         creation time reads the index entries, then the records: bare redb looks each \
         record up from the root of its table, as an application \
         does by hand; redkeep, finding their ids in rising order (ids come from a sequence, \
         so creation order is id order), steps from one record to the next in the table \
         (redkeep's 500 accounts were created at the real clock's time, just before the loaded \
         users' times, where the others' are among them; a page starts at a loaded user's \
         time, so the difference shows only in pages that start among the first 500). \
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
         validates it (as the bare versions never write). In all three, every account holds \
         the system role `user` and a role `editor`. A permission check in bare redb and \
         SQLite reads the user, the two grants and the two roles on every call; redkeep reads \
         the user and the grants, and a role only the first time a thread meets it in the kept \
         snapshot (it keeps the roles it decoded per thread until the next commit, and this row \
         makes no commits), so the row shows a read-mostly workload. The 500 accounts also \
         hold, in all three, a personal org with its membership, a session and five audit \
         rows, as redkeep's flows leave them. \
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
        "| operation | redkeep Exclusive | redkeep Shared | bare redb | SQLite / floor | Excl ÷ redb | Excl ÷ SQLite or floor | Shared ÷ redb | target | figure | result |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    let mut verdicts = Verdicts::default();
    let w = writers(&table);
    let mut bars = Vec::new();
    for (op, limits) in OPERATIONS {
        let Some(rounds) = table.get(op) else {
            continue;
        };
        let floor = if rounds.values().any(|r| r.contains_key("raw_floor")) {
            "raw_floor"
        } else {
            "sqlite_wal_full"
        };
        let paired_with = [("bare_redb", Base::Redb), (floor, Base::Floor)]
            .into_iter()
            .find(|(system, _)| median_of(rounds, &format!("{PAIRED}{system}")).is_some())
            .map(|(system, _)| system);
        // The paired ratio when the run measured one: it does not move with the disk's
        // drift between criterion's samples.
        let against = |other: &str| {
            median_of(rounds, &format!("{PAIRED}{other}"))
                .or_else(|| ratio(rounds, "redkeep_exclusive", other))
        };
        // A system's time: the pairs' own for Exclusive and its partner (marked †).
        let time = |system: &str| match paired_with {
            Some(p) if system == "redkeep_exclusive" => {
                format!(
                    "{} †",
                    show_time(median_of(rounds, &format!("{PAIRED_MINE}{p}")))
                )
            }
            Some(p) if system == p => {
                format!(
                    "{} †",
                    show_time(median_of(rounds, &format!("{PAIRED_OTHER}{p}")))
                )
            }
            _ => show_time(time_of(rounds, system)),
        };
        let sixteen = op == "concurrent_inserts_16_threads";
        let vs_redb = against("bare_redb");
        let vs_other = against(floor);
        let (target, figure, result) = if sixteen {
            match &w {
                Some(w) => {
                    let (figure, result) = writers_verdict(w, &mut verdicts);
                    (
                        format!(
                            "rate ≥ {VS_OWN_1}× own 1-writer rate, ≥ {VS_SQLITE_16}× SQLite's 16-writer rate"
                        ),
                        figure,
                        result,
                    )
                }
                None => (String::new(), "–".into(), "–".into()),
            }
        } else if limits.is_empty() {
            (String::new(), String::new(), String::new())
        } else {
            let mut targets = Vec::new();
            let mut figures = Vec::new();
            let mut results = Vec::new();
            for &(base, at_most) in limits {
                let r = match base {
                    Base::Redb => vs_redb,
                    Base::Sqlite | Base::Floor => vs_other,
                };
                let target = format!("≤ {at_most}× {}", base.name());
                let shown = r.map_or_else(|| "–".into(), |r| format!("{r:.2}× {}", base.name()));
                targets.push(target.clone());
                figures.push(shown.clone());
                results.push(match r {
                    Some(r) => verdicts.judge(r <= at_most, op, &shown, &target),
                    None => "not measured",
                });
            }
            (targets.join(", "), figures.join(", "), results.join(", "))
        };
        // The 16-writer row's time ratios would read as rate targets: its figures are rates.
        let cell = |r: Option<f64>| if sixteen { "–".into() } else { show_ratio(r) };
        let _ = writeln!(
            md,
            "| {op} | {} | {} | {} | {} | {} | {} | {} | {target} | {figure} | {result} |",
            time("redkeep_exclusive"),
            time("redkeep_shared"),
            time("bare_redb"),
            time(floor),
            cell(vs_redb),
            cell(vs_other),
            cell(ratio(rounds, "redkeep_shared", "bare_redb")),
        );
        if !sixteen {
            bars.push((op.to_string(), vs_redb, vs_other));
        }
    }
    // Concurrency as rates: 8 durable one-record commits per thread per iteration.
    let _ = writeln!(
        md,
        "\n## Durable commits from several threads or processes (commits per second)\n\n\
         Each thread or process makes 8 durable one-user commits per iteration, all at once. \
         SQLite twice: a connection per thread, whose writers wait for the write lock in \
         SQLite's busy handler (it sleeps 1, 2, 5, 10, … up to 100 ms between tries), and all \
         threads sharing one connection behind a mutex (commits one after another, no \
         sleeping).\n\n\
         | threads | redkeep Exclusive | redkeep Shared | bare redb | SQLite, a connection each | SQLite, one shared connection |\n|---|---|---|---|---|---|"
    );
    let rate_systems = [
        "redkeep_exclusive",
        "redkeep_shared",
        "bare_redb",
        "sqlite_wal_full",
        "sqlite_one_connection",
    ];
    for threads in [1u64, 4, 16] {
        let Some(rounds) = table.get(&format!("concurrent_inserts_{threads}_threads")) else {
            continue;
        };
        let cells: Vec<String> = rate_systems
            .iter()
            .map(|s| {
                time_of(rounds, s).map_or_else(
                    || "–".into(),
                    |ns| format!("{:.0}", (threads * 8) as f64 / (ns / 1e9)),
                )
            })
            .collect();
        let _ = writeln!(md, "| {threads} | {} |", cells.join(" | "));
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
            "| 4 processes | – (one process's alone) | {} | – (one process's alone) | {} | – |",
            rate("redkeep_shared"),
            rate("sqlite_wal_full")
        );
    }
    if let Some(w) = &w {
        let rounds: Vec<String> = w.own.iter().map(|r| format!("{r:.1}")).collect();
        let show = |r: Option<f64>| r.map_or_else(|| "–".into(), |r| format!("{r:.1}×"));
        let _ = writeln!(
            md,
            "\nredkeep Exclusive with 16 writers: {:.1}× its own 1-writer rate (per round: {}); \
             {} SQLite's 16-writer rate with a connection per thread, and {} with the threads \
             sharing one connection; medians of the rounds' ratios. Against its own single \
             writer, redkeep gains by group commit (concurrent writes share one transaction \
             and one fsync). Against SQLite with a connection per thread, most of the gap is \
             SQLite's busy handler: its writers sleep while they wait for the lock, so its \
             rate falls as writers are added; with one shared connection SQLite commits one \
             after another without sleeping, and that ratio is the one group commit earns.",
            w.own_median,
            rounds.join(", "),
            show(w.sqlite),
            show(w.sqlite_one),
        );
    }
    if let Some(argon) = table_argon(&results, started) {
        let _ = writeln!(
            md,
            "\nPassword check at the default argon2id parameters (OWASP: m = 19 MiB, t = 2, p = 1), \
             reported apart since it dominates any login: {}.",
            show_time(Some(argon))
        );
    }
    scale_section(&mut md, &results, &mut verdicts);
    let _ = writeln!(
        md,
        "\n## Missed targets\n\n{} of {} targets met.",
        verdicts.met,
        verdicts.met + verdicts.missed.len()
    );
    if verdicts.missed.is_empty() {
        let _ = writeln!(md, "\nNone missed.");
    } else {
        let _ = writeln!(md);
        for m in &verdicts.missed {
            let _ = writeln!(md, "- {m}");
        }
    }
    std::fs::create_dir_all(out.join("docs"))?;
    std::fs::write(out.join("docs/benchmarks.svg"), svg(&bars))?;
    std::fs::write(out.join("BENCHMARKS.md"), md)?;
    println!(
        "wrote {} and {}",
        out.join("BENCHMARKS.md").display(),
        out.join("docs/benchmarks.svg").display()
    );
    Ok(())
}

fn table_argon(results: &Path, started: i64) -> Option<f64> {
    let path = results.join("argon2_default_check_password/redkeep/new/estimates.json");
    if !fresh(&path, started) {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["median"]["point_estimate"].as_f64()
}
