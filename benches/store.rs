//! redkeep against bare redb and SQLite (WAL, prepared statements), doing the same work in one
//! run: a lookup of a user by email through a unique index, a durable one-user commit, and
//! durable one-user commits from 1, 4 and 16 threads at once (group commit).
//!
//! `REDKEEP_BENCH_USERS` sets the preloaded user count (default 100000).

#[path = "common/users.rs"]
mod users;

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use redkeep::{Durability, Mode, Options, PasswordParams, Redkeep, User};
use users::user;

const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
const EMAILS: TableDefinition<&str, u64> = TableDefinition::new("users_email");

fn user_count() -> u64 {
    std::env::var("REDKEEP_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// What a hand-written application on bare redb would store: the user encoded with bincode.
fn encode(u: &User) -> Vec<u8> {
    bincode::serde::encode_to_vec(u, bincode::config::standard()).unwrap()
}

fn decode(bytes: &[u8]) -> User {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .unwrap()
        .0
}

fn open_redkeep(dir: &Path, mode: Mode, n: u64) -> Redkeep {
    let opts = Options {
        durability: Durability::Immediate,
        ..Options::default()
    }
    .mode(mode)
    .password(PasswordParams::INSECURE_FAST);
    let rk = Redkeep::open(dir, opts).unwrap();
    rk.store()
        .write(|tx| {
            let t = tx.table::<User>();
            for id in 1..=n {
                tx.table::<User>().next_id()?;
                t.insert(&user(id))?;
            }
            Ok(())
        })
        .unwrap();
    rk
}

fn open_redb(path: &Path, n: u64) -> redb::Database {
    let db = redb::Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut users = tx.open_table(USERS).unwrap();
        let mut emails = tx.open_table(EMAILS).unwrap();
        for id in 1..=n {
            let u = user(id);
            users.insert(id, encode(&u).as_slice()).unwrap();
            emails.insert(u.email.as_str(), id).unwrap();
        }
    }
    tx.commit().unwrap();
    db
}

fn redb_lookup(db: &redb::Database, email: &str) -> Option<User> {
    let tx = db.begin_read().unwrap();
    let id = tx.open_table(EMAILS).unwrap().get(email).unwrap()?.value();
    let users = tx.open_table(USERS).unwrap();
    let bytes = users.get(id).unwrap()?;
    Some(decode(bytes.value()))
}

fn redb_insert(db: &redb::Database, u: &User) {
    let tx = db.begin_write().unwrap();
    {
        let mut emails = tx.open_table(EMAILS).unwrap();
        assert!(emails.get(u.email.as_str()).unwrap().is_none());
        emails.insert(u.email.as_str(), u.id).unwrap();
        tx.open_table(USERS)
            .unwrap()
            .insert(u.id, encode(u).as_slice())
            .unwrap();
    }
    tx.commit().unwrap();
}

fn open_sqlite(path: &Path, n: u64) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, email_norm TEXT NOT NULL UNIQUE,
           name TEXT NOT NULL, password_hash TEXT NOT NULL, is_admin INTEGER NOT NULL, is_active INTEGER NOT NULL,
           failed_logins INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
         CREATE INDEX users_is_admin ON users(is_admin); CREATE INDEX users_created ON users(created_at);",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut st = tx.prepare(INSERT_SQL).unwrap();
        for id in 1..=n {
            sqlite_insert_with(&mut st, &user(id));
        }
    }
    tx.commit().unwrap();
    conn
}

const INSERT_SQL: &str =
    "INSERT INTO users (id, email, email_norm, name, password_hash, is_admin, is_active,
    failed_logins, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

fn sqlite_insert_with(st: &mut rusqlite::Statement<'_>, u: &User) {
    st.execute(rusqlite::params![
        u.id as i64,
        u.email,
        u.email.to_lowercase(),
        u.name,
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA",
        u.is_admin,
        u.is_active,
        0,
        u.created_at.0,
        u.updated_at.0
    ])
    .unwrap();
}

fn sqlite_lookup(
    conn: &rusqlite::Connection,
    email: &str,
) -> Option<(i64, String, String, String, bool)> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, email, name, password_hash, is_admin FROM users WHERE email_norm = ?1",
        )
        .unwrap();
    st.query_row([email], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .ok()
}

fn benches(c: &mut Criterion) {
    let n = user_count();
    let tmp = tempfile::tempdir().unwrap();
    let rk_ex = open_redkeep(&tmp.path().join("ex"), Mode::Exclusive, n);
    let rk_sh = open_redkeep(&tmp.path().join("sh"), Mode::Shared, n);
    let redb = open_redb(&tmp.path().join("bare.redb"), n);
    let sqlite = open_sqlite(&tmp.path().join("users.sqlite"), n);

    let mut g = c.benchmark_group(format!("lookup_by_email_{n}_users"));
    let pick = AtomicU64::new(0);
    let next_email = || {
        let i = pick.fetch_add(7919, Ordering::Relaxed) % n + 1;
        format!("user{i}@example.com")
    };
    g.bench_function("redkeep_exclusive", |b| {
        b.iter(|| black_box(rk_ex.users().by_email(&next_email()).unwrap()))
    });
    g.bench_function("redkeep_shared", |b| {
        b.iter(|| black_box(rk_sh.users().by_email(&next_email()).unwrap()))
    });
    g.bench_function("bare_redb", |b| {
        b.iter(|| black_box(redb_lookup(&redb, &next_email())))
    });
    g.bench_function("sqlite_wal", |b| {
        b.iter(|| black_box(sqlite_lookup(&sqlite, &next_email())))
    });
    g.finish();

    let mut g = c.benchmark_group("durable_insert_one_user");
    g.sample_size(20);
    let next = AtomicU64::new(n + 1);
    let fresh = || user(next.fetch_add(1, Ordering::Relaxed));
    let insert = |rk: &Redkeep, u: &User| {
        rk.store()
            .write(|tx| {
                let t = tx.table::<User>();
                let mut u = u.clone();
                u.id = t.next_id()?;
                t.insert(&u)
            })
            .unwrap()
    };
    g.bench_function("redkeep_exclusive", |b| b.iter(|| insert(&rk_ex, &fresh())));
    g.bench_function("redkeep_shared", |b| b.iter(|| insert(&rk_sh, &fresh())));
    g.bench_function("bare_redb", |b| b.iter(|| redb_insert(&redb, &fresh())));
    let mut st = sqlite.prepare(INSERT_SQL).unwrap();
    g.bench_function("sqlite_wal_full", |b| {
        b.iter(|| sqlite_insert_with(&mut st, &fresh()))
    });
    g.finish();
    drop(st);

    // Each thread commits its inserts one by one, durably; an iteration is every thread's
    // PER_THREAD inserts. Throughput is in inserts per second.
    const PER_THREAD: u64 = 8;
    let sqlite_path = tmp.path().join("users.sqlite");
    let mut sqlite_conns: Vec<rusqlite::Connection> = (0..16)
        .map(|_| {
            let c = rusqlite::Connection::open(&sqlite_path).unwrap();
            c.execute_batch("PRAGMA synchronous=FULL;").unwrap();
            c.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
            c
        })
        .collect();
    for threads in [1u64, 4, 16] {
        let mut g = c.benchmark_group(format!("durable_inserts_{threads}_threads"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(threads * PER_THREAD));
        let each = |work: &(dyn Fn(u64) + Sync)| {
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        for _ in 0..PER_THREAD {
                            work(next.fetch_add(1, Ordering::Relaxed));
                        }
                    });
                }
            })
        };
        g.bench_function("redkeep_exclusive", |b| {
            b.iter(|| each(&|id| insert(&rk_ex, &user(id))))
        });
        g.bench_function("bare_redb", |b| {
            b.iter(|| each(&|id| redb_insert(&redb, &user(id))))
        });
        g.bench_function("sqlite_wal_full", |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for conn in sqlite_conns.iter_mut().take(threads as usize) {
                        let next = &next;
                        s.spawn(move || {
                            let mut st = conn.prepare_cached(INSERT_SQL).unwrap();
                            for _ in 0..PER_THREAD {
                                sqlite_insert_with(
                                    &mut st,
                                    &user(next.fetch_add(1, Ordering::Relaxed)),
                                );
                            }
                        });
                    }
                })
            })
        });
        g.finish();
    }
}

criterion_group!(store, benches);
criterion_main!(store);
