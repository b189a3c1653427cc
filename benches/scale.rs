//! Scale, opt-in: `REDKEEP_SCALE_USERS=1000000 cargo bench --bench scale` loads that many
//! users (and 10,000 for comparison) into redkeep, bare redb with the same indexes, and SQLite
//! (WAL, `synchronous=FULL`, the same indexes), each in its own process, and prints per system:
//! load time (transactions of 10,000 users), file size, peak RSS, and the mean time of a lookup
//! by email over 20,000 random users right after reopening the store, then over the same users
//! again (redkeep at its default cache, SQLite with a page cache of the same size, bare redb
//! at redb's default). It also writes them to `scale.json` in criterion's folder, where
//! `cargo run --example bench_report` judges the targets from them.
//!
//! Without `REDKEEP_SCALE_USERS` it prints how to run it and does nothing.

#[path = "common/results.rs"]
mod results;
#[path = "common/users.rs"]
mod users;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use redkeep::{Options, PasswordParams, Redkeep, User};
use users::user;

const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
const BY_EMAIL: TableDefinition<&str, u64> = TableDefinition::new("users_email");
const BY_CREATED: TableDefinition<(i64, u64), ()> = TableDefinition::new("users_created");
const BY_ADMIN: TableDefinition<(bool, u64), ()> = TableDefinition::new("users_admin");
const BATCH: u64 = 10_000;
const LOOKUPS: u64 = 20_000;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// A spread of ids in 1..=n.
fn pick(i: u64, n: u64) -> u64 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % n + 1
}

fn load_redkeep(dir: &Path, n: u64) -> (PathBuf, f64, f64) {
    let rk = Redkeep::open(
        dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let mut id = 0;
    while id < n {
        let end = (id + BATCH).min(n);
        rk.store()
            .write(|tx| {
                let t = tx.table::<User>();
                for _ in id..end {
                    let next = t.next_id()?;
                    t.insert(&user(next))?;
                }
                Ok(())
            })
            .unwrap();
        id = end;
    }
    drop(rk);
    let rk = Redkeep::open(
        dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let (cold, warm) = lookups(|i| {
        let u = rk
            .users()
            .by_email(&format!("user{}@example.com", pick(i, n)))
            .unwrap();
        assert!(u.is_some());
    });
    (dir.join(redkeep::STORE_FILE), cold, warm)
}

/// Mean seconds per lookup over `LOOKUPS` random users right after opening (pages come from
/// the file), then over the same users again (the pages they need are in the cache, as for
/// the active users of a running service).
fn lookups(mut one: impl FnMut(u64)) -> (f64, f64) {
    let mut pass = || {
        let start = Instant::now();
        for i in 0..LOOKUPS {
            one(i);
        }
        start.elapsed().as_secs_f64() / LOOKUPS as f64
    };
    let cold = pass();
    (cold, pass())
}

fn load_redb(dir: &Path, n: u64) -> (PathBuf, f64, f64) {
    let path = dir.join("bare.redb");
    let db = redb::Database::create(&path).unwrap();
    let mut id = 0;
    while id < n {
        let end = (id + BATCH).min(n);
        let tx = db.begin_write().unwrap();
        {
            let mut users = tx.open_table(USERS).unwrap();
            let mut emails = tx.open_table(BY_EMAIL).unwrap();
            let mut created = tx.open_table(BY_CREATED).unwrap();
            let mut admin = tx.open_table(BY_ADMIN).unwrap();
            for i in id + 1..=end {
                let u = user(i);
                assert!(emails.get(u.email.as_str()).unwrap().is_none());
                emails.insert(u.email.as_str(), i).unwrap();
                created.insert((u.created_at.0, i), ()).unwrap();
                admin.insert((u.is_admin, i), ()).unwrap();
                let bytes = bincode::serde::encode_to_vec(&u, bincode::config::standard()).unwrap();
                users.insert(i, bytes.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
        id = end;
    }
    drop(db);
    let db = redb::Database::open(&path).unwrap();
    let (cold, warm) = lookups(|i| {
        let tx = db.begin_read().unwrap();
        let email = format!("user{}@example.com", pick(i, n));
        let id = tx
            .open_table(BY_EMAIL)
            .unwrap()
            .get(email.as_str())
            .unwrap()
            .unwrap()
            .value();
        let bytes = tx.open_table(USERS).unwrap().get(id).unwrap().unwrap();
        let (u, _): (User, usize) =
            bincode::serde::decode_from_slice(bytes.value(), bincode::config::standard()).unwrap();
        assert_eq!(u.id, id);
    });
    (path, cold, warm)
}

/// A SQLite connection as in the comparison: plans that do not change with the parameters,
/// and a page cache as large as redkeep's default.
fn sqlite_open(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .unwrap();
    conn.execute_batch(&results::sqlite_cache_pragma()).unwrap();
    conn
}

fn load_sqlite(dir: &Path, n: u64) -> (PathBuf, f64, f64) {
    let path = dir.join("users.sqlite");
    let conn = sqlite_open(&path);
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
           is_admin INTEGER NOT NULL, is_active INTEGER NOT NULL, created_at INTEGER NOT NULL,
           updated_at INTEGER NOT NULL);
         CREATE INDEX users_is_admin ON users(is_admin); CREATE INDEX users_created ON users(created_at);",
    )
    .unwrap();
    let mut id = 0;
    while id < n {
        let end = (id + BATCH).min(n);
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO users (id, email, name, is_admin, is_active, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .unwrap();
            for i in id + 1..=end {
                let u = user(i);
                st.execute(rusqlite::params![
                    i as i64,
                    u.email,
                    u.name,
                    u.is_admin,
                    u.is_active,
                    u.created_at.0,
                    u.updated_at.0
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
        id = end;
    }
    // Reopened, as the others are, so the lookups after opening start from a cold cache.
    drop(conn);
    let conn = sqlite_open(&path);
    let mut st = conn
        .prepare("SELECT id, email, name, is_admin FROM users WHERE email = ?1")
        .unwrap();
    let (cold, warm) = lookups(|i| {
        let email = format!("user{}@example.com", pick(i, n));
        let row: (i64, String, String, bool) = st
            .query_row([email], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert!(row.0 > 0);
    });
    drop(st);
    drop(conn);
    (path, cold, warm)
}

fn file_size(path: &Path) -> u64 {
    // SQLite's WAL holds part of the data until a checkpoint: count it too.
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    std::fs::metadata(path).map_or(0, |m| m.len()) + std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// One system and size in its own process, so the peak RSS is its own.
fn child(system: &str, n: u64, dir: &Path) {
    let start = Instant::now();
    let (path, cold, warm) = match system {
        "redkeep" => load_redkeep(dir, n),
        "bare_redb" => load_redb(dir, n),
        _ => load_sqlite(dir, n),
    };
    let total = start.elapsed().as_secs_f64() - (cold + warm) * LOOKUPS as f64;
    println!(
        "RESULT {system} {n} {total:.2} {} {:.0} {:.2} {:.2}",
        file_size(&path),
        peak_rss_mib(),
        cold * 1e6,
        warm * 1e6
    );
}

fn main() {
    if let (Ok(system), Ok(n), Ok(dir)) = (
        std::env::var("REDKEEP_SCALE_SYSTEM"),
        std::env::var("REDKEEP_SCALE_N"),
        std::env::var("REDKEEP_SCALE_DIR"),
    ) {
        child(&system, n.parse().unwrap(), Path::new(&dir));
        return;
    }
    let Some(big) = std::env::var("REDKEEP_SCALE_USERS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        println!("scale: set REDKEEP_SCALE_USERS=1000000 to run (it takes minutes)");
        return;
    };
    println!(
        "| system | users | load (s) | file (MiB) | peak RSS (MiB) | lookup by email, after opening (µs) | the same users again (µs) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let date = redkeep::Timestamp(results::unix_now()).to_string();
    let mut rows = Vec::new();
    for n in [10_000, big] {
        for system in ["redkeep", "bare_redb", "sqlite_wal_full"] {
            let tmp = tempfile::tempdir().unwrap();
            let out = Command::new(std::env::current_exe().unwrap())
                .env("REDKEEP_SCALE_SYSTEM", system)
                .env("REDKEEP_SCALE_N", n.to_string())
                .env("REDKEEP_SCALE_DIR", tmp.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{system} {n}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(line) = text.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
                panic!("{system} {n}: no result in {text}");
            };
            let f: Vec<&str> = line.split(' ').collect();
            let num = |i: usize| -> f64 { f[i].parse().unwrap() };
            println!(
                "| {} | {} | {} | {:.0} | {} | {} | {} |",
                f[0],
                f[1],
                f[2],
                num(3) / (1 << 20) as f64,
                f[4],
                f[5],
                f[6]
            );
            rows.push(serde_json::json!({
                "system": f[0],
                "users": n,
                "load_s": num(2),
                "file_bytes": num(3),
                "peak_rss_mib": num(4),
                "lookup_open_us": num(5),
                "lookup_again_us": num(6),
            }));
        }
    }
    let out = results::results_dir();
    std::fs::create_dir_all(&out).unwrap();
    let info = serde_json::json!({
        "users": big,
        "date": date,
        "machine": results::machine(),
        "command": format!("REDKEEP_SCALE_USERS={big} cargo bench --bench scale"),
        "rows": rows,
    });
    std::fs::write(out.join(results::SCALE_FILE), info.to_string()).unwrap();
    println!("(written to {})", out.join(results::SCALE_FILE).display());
}
