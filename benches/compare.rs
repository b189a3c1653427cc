//! One interleaved comparison of redkeep (Exclusive and Shared) with bare redb doing the same
//! index work and SQLite (WAL, `synchronous=FULL`, prepared statements, the same indexes).
//!
//! Every operation runs in rounds; within a round all systems run one after another, so disk
//! drift hits them alike, and the report takes per-round ratios. Results land in criterion's
//! usual place (`target/criterion/r{N}_{operation}/{system}`); `cargo run --example
//! bench_report` turns them into `BENCHMARKS.md` and `docs/benchmarks.svg`.
//!
//! `REDKEEP_COMPARE_USERS` (default 100000) users are loaded; `REDKEEP_COMPARE_ROUNDS`
//! (default 3) rounds run.

#[path = "common/bare.rs"]
mod bare;
#[path = "common/crew.rs"]
mod crew;
#[path = "common/results.rs"]
mod results;
#[path = "common/sessions.rs"]
mod sessions;
#[path = "common/users.rs"]
mod users;

use std::collections::HashSet;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crew::{Job, Setup, alike, with_crew, with_crew_set_up};
use criterion::{Bencher, BenchmarkGroup, Criterion, measurement::WallTime};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use redkeep::auth::audit::AuditEvent;
use redkeep::auth::orgs::Org;
use redkeep::auth::roles::RoleSpec;
use redkeep::auth::sessions::{LoginMeta, Session};
use redkeep::store::{KeyRange, Order};
use redkeep::{Durability, Mode, NewUser, Options, PasswordParams, Redkeep, Timestamp, User};
use sessions::{IDLE_SECS, SessionRow, short_id};
use users::{email, insert_user, user};

const PASSWORD: &str = "bench password 1";
/// Users that have a password, a role and a session (the others are bulk-loaded records).
const ACCOUNTS: u64 = 500;
/// Stand-ins for the audit rows redkeep holds for each account once it is created, given the
/// editor role and logged in; the bare systems are loaded with as many.
const ACCOUNT_EVENTS: [&str; 5] = [
    "role.granted",
    "org.created",
    "user.created",
    "role.granted",
    "login",
];

// Bare redb: the same tables and indexes redkeep keeps for these operations (the ones the
// reads use are in `common/bare.rs`).
use bare::{BY_CREATED, BY_EMAIL, ROLES, SESSIONS, USER_ROLES, USERS, dec, enc, token_hash};
const BY_ADMIN: TableDefinition<(bool, u64), ()> = TableDefinition::new("users_admin");
const CREDENTIALS: TableDefinition<u64, &str> = TableDefinition::new("credentials");
const SESSIONS_BY_USER: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("sessions_user");
const USER_ROLES_BY_ROLE: TableDefinition<(u64, u64), ()> = TableDefinition::new("user_roles_role");
const ORGS: TableDefinition<u64, &[u8]> = TableDefinition::new("orgs");
const ORGS_BY_SLUG: TableDefinition<&str, u64> = TableDefinition::new("orgs_slug");
const MEMBERS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("members");
const MEMBERS_BY_USER: TableDefinition<(u64, u64), ()> = TableDefinition::new("members_user");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const AUDIT_BY_USER: TableDefinition<(u64, u64), ()> = TableDefinition::new("audit_user");
const SEQ: TableDefinition<&str, u64> = TableDefinition::new("seq");

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// When the bare systems' preloaded sessions were last seen: the benchmark's `now`, so that
/// they are valid through it.
const SEEN: i64 = NOW;
/// The time the validations run at.
const NOW: i64 = 1_900_000_000;

struct Systems {
    ex: Redkeep,
    sh: Redkeep,
    redb: redb::Database,
    sqlite: rusqlite::Connection,
    sqlite_path: PathBuf,
    // Session tokens of the first ACCOUNTS users in each system (redkeep's are its own).
    ex_tokens: Vec<String>,
    sh_tokens: Vec<String>,
    plain_tokens: Vec<String>,
}

fn open_redkeep(dir: &Path, mode: Mode, n: u64) -> (Redkeep, Vec<String>) {
    let mut opts = Options {
        durability: Durability::Immediate,
        ..Options::default()
    };
    // Sessions as the bare systems keep them: a day's idle timeout, and no use recorded while
    // validating (the bare validations never write).
    opts.sessions.idle_timeout = Duration::from_secs(IDLE_SECS as u64);
    opts.sessions.touch_interval = Duration::from_secs(IDLE_SECS as u64);
    let opts = opts.mode(mode).password(PasswordParams::INSECURE_FAST);
    let rk = Redkeep::open(dir, opts).unwrap();
    rk.roles()
        .create(RoleSpec {
            name: "editor".into(),
            description: String::new(),
            permissions: vec!["docs.read".into(), "docs.edit".into()],
            priority: 1,
        })
        .unwrap();
    let mut tokens = Vec::new();
    for i in 1..=ACCOUNTS {
        let u = rk
            .users()
            .create(NewUser {
                email: email(i),
                password: Some(PASSWORD.into()),
                ..NewUser::default()
            })
            .unwrap()
            .user;
        rk.roles().grant(u.id, "editor", None).unwrap();
        let l = rk
            .sessions()
            .login(&email(i), PASSWORD, LoginMeta::default())
            .unwrap();
        tokens.push(l.token.expose().to_string());
    }
    let first = rk.users().count().unwrap() + 1;
    rk.store()
        .write(|tx| {
            let t = tx.table::<User>();
            for _ in first..=n {
                let id = t.next_id()?;
                t.insert(&user(id))?;
            }
            Ok(())
        })
        .unwrap();
    (rk, tokens)
}

/// Bare redb's user table and its three indexes, open in one write transaction.
struct UserTables<'t> {
    users: redb::Table<'t, u64, &'static [u8]>,
    by_email: redb::Table<'t, &'static str, u64>,
    by_created: redb::Table<'t, (i64, u64), ()>,
    by_admin: redb::Table<'t, (bool, u64), ()>,
}

impl<'t> UserTables<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> UserTables<'t> {
        UserTables {
            users: tx.open_table(USERS).unwrap(),
            by_email: tx.open_table(BY_EMAIL).unwrap(),
            by_created: tx.open_table(BY_CREATED).unwrap(),
            by_admin: tx.open_table(BY_ADMIN).unwrap(),
        }
    }

    /// Inserts `u` with its index entries, checking that its email is free (as redkeep's
    /// unique index does).
    fn put(&mut self, u: &User) {
        assert!(self.by_email.get(u.email.as_str()).unwrap().is_none());
        self.by_email.insert(u.email.as_str(), u.id).unwrap();
        self.by_created.insert((u.created_at.0, u.id), ()).unwrap();
        self.by_admin.insert((u.is_admin, u.id), ()).unwrap();
        self.users.insert(u.id, enc(u).as_slice()).unwrap();
    }
}

fn redb_put_user(tx: &redb::WriteTransaction, u: &User) {
    UserTables::open(tx).put(u);
}

/// One transaction of 1,000 users with the tables kept open for the whole batch (each
/// opened once), and the id sequence read once and written once, as redkeep's write
/// transaction keeps its tables open.
fn redb_batch(db: &redb::Database, mut fresh: impl FnMut() -> u64) {
    let tx = db.begin_write().unwrap();
    {
        let mut seq = tx.open_table(SEQ).unwrap();
        let mut next = seq.get("users").unwrap().map_or(0, |v| v.value());
        let mut tables = UserTables::open(&tx);
        for _ in 0..1000 {
            next += 1;
            let mut u = user(fresh());
            u.id = next;
            tables.put(&u);
        }
        seq.insert("users", next).unwrap();
    }
    tx.commit().unwrap();
}

fn redb_next(tx: &redb::WriteTransaction, name: &str) -> u64 {
    let mut seq = tx.open_table(SEQ).unwrap();
    let next = seq.get(name).unwrap().map_or(0, |v| v.value()) + 1;
    seq.insert(name, next).unwrap();
    next
}

fn open_redb(path: &Path, n: u64) -> (redb::Database, Vec<String>) {
    let db = redb::Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    let mut tokens = Vec::new();
    {
        // As in redkeep: the system role `user` (every account holds it, and it comes
        // first), then `editor`.
        bare::put_roles(&tx);
        for id in 1..=n {
            redb_next(&tx, "users");
            redb_put_user(&tx, &user(id));
            if id <= ACCOUNTS {
                tx.open_table(CREDENTIALS)
                    .unwrap()
                    .insert(id, "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
                    .unwrap();
                for role in [1, 2] {
                    tx.open_table(USER_ROLES)
                        .unwrap()
                        .insert((id, role), true)
                        .unwrap();
                    tx.open_table(USER_ROLES_BY_ROLE)
                        .unwrap()
                        .insert((role, id), ())
                        .unwrap();
                }
                let token = format!("rks_plain{id:020}");
                let h = token_hash(&token);
                let row = SessionRow::new(id, id, SEEN, i64::MAX);
                tx.open_table(SESSIONS)
                    .unwrap()
                    .insert(h.as_slice(), enc(&row).as_slice())
                    .unwrap();
                tx.open_table(SESSIONS_BY_USER)
                    .unwrap()
                    .insert((id, h.as_slice()), ())
                    .unwrap();
                tokens.push(token);
                // As redkeep holds for each account: a personal org with its membership, and
                // audit rows for the creation (role granted, org created, user created), the
                // editor grant and the login.
                let org = redb_next(&tx, "orgs");
                let slug = format!("user{id}-workspace");
                tx.open_table(ORGS_BY_SLUG)
                    .unwrap()
                    .insert(slug.as_str(), org)
                    .unwrap();
                tx.open_table(ORGS)
                    .unwrap()
                    .insert(org, enc(&(org, &slug, "User's Workspace", id)).as_slice())
                    .unwrap();
                tx.open_table(MEMBERS)
                    .unwrap()
                    .insert((org, id), enc(&("owner", 0i64)).as_slice())
                    .unwrap();
                tx.open_table(MEMBERS_BY_USER)
                    .unwrap()
                    .insert((id, org), ())
                    .unwrap();
                for event in ACCOUNT_EVENTS {
                    redb_audit(&tx, id, 0, event);
                }
            }
        }
    }
    tx.commit().unwrap();
    (db, tokens)
}

const SQLITE_SCHEMA: &str = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
 CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
   is_admin INTEGER NOT NULL, is_active INTEGER NOT NULL, last_login_at INTEGER,
   created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
 CREATE INDEX users_is_admin ON users(is_admin); CREATE INDEX users_created ON users(created_at);
 CREATE TABLE credentials (user_id INTEGER PRIMARY KEY, hash TEXT NOT NULL);
 CREATE TABLE sessions (hash BLOB PRIMARY KEY, short_id TEXT NOT NULL, user_id INTEGER NOT NULL,
   created_at INTEGER NOT NULL, last_seen_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
   idle_timeout_secs INTEGER NOT NULL, ip TEXT, user_agent TEXT) WITHOUT ROWID;
 CREATE INDEX sessions_user ON sessions(user_id);
 CREATE TABLE roles (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, permissions TEXT NOT NULL);
 CREATE TABLE user_roles (user_id INTEGER NOT NULL, role_id INTEGER NOT NULL, active INTEGER NOT NULL,
   PRIMARY KEY (user_id, role_id)) WITHOUT ROWID;
 CREATE INDEX user_roles_role ON user_roles(role_id);
 CREATE TABLE orgs (id INTEGER PRIMARY KEY, slug TEXT NOT NULL UNIQUE, name TEXT NOT NULL);
 CREATE TABLE members (org_id INTEGER NOT NULL, user_id INTEGER NOT NULL, role TEXT NOT NULL,
   PRIMARY KEY (org_id, user_id)) WITHOUT ROWID;
 CREATE INDEX members_user ON members(user_id);
 CREATE TABLE audit (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, user_id INTEGER, event TEXT NOT NULL);
 CREATE INDEX audit_user ON audit(user_id);";

const SQL_INSERT_USER: &str =
    "INSERT INTO users (id, email, name, is_admin, is_active, created_at, updated_at)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

fn sqlite_insert_user(conn: &rusqlite::Connection, u: &User) {
    conn.prepare_cached(SQL_INSERT_USER)
        .unwrap()
        .execute(rusqlite::params![
            u.id as i64,
            u.email,
            u.name,
            u.is_admin,
            u.is_active,
            u.created_at.0,
            u.updated_at.0
        ])
        .unwrap();
}

/// Ids of users made during the benchmark (above every loaded one).
static FRESH: AtomicU64 = AtomicU64::new(10_000_000);

/// Set in the writer processes of the multi-process row: `redkeep_shared DIR` or
/// `sqlite_wal_full PATH`.
const WORKER_ENV: &str = "REDKEEP_COMPARE_WORKER";

/// A writer process: opens the store named in `spec`, says `ready`, then for each line
/// `FIRST COUNT` on stdin makes COUNT durable one-user commits and answers `ok`.
fn worker(spec: &str) {
    use std::io::BufRead;
    let (kind, path) = spec.split_once(' ').expect("KIND PATH");
    let rk = (kind == "redkeep_shared").then(|| {
        let opts = Options {
            durability: Durability::Immediate,
            ..Options::default()
        }
        .mode(Mode::Shared)
        .password(PasswordParams::INSECURE_FAST);
        Redkeep::open(path, opts).unwrap()
    });
    let conn = rk.is_none().then(|| sqlite_writer(Path::new(path)));
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let (first, count) = line.split_once(' ').expect("FIRST COUNT");
        let (first, count): (u64, u64) = (first.parse().unwrap(), count.parse().unwrap());
        for id in first..first + count {
            match (&rk, &conn) {
                (Some(rk), _) => insert_user(rk, id),
                (None, Some(c)) => sqlite_insert(c, &user(id)),
                (None, None) => unreachable!(),
            }
        }
        writeln!(out, "ok").unwrap();
        out.flush().unwrap();
    }
}

/// Writer processes (this benchmark's binary started again as [`worker`]s).
struct Workers(
    Vec<(
        std::process::Child,
        std::io::BufReader<std::process::ChildStdout>,
    )>,
);

impl Workers {
    fn start(n: usize, spec: &str) -> Workers {
        use std::io::BufRead;
        let exe = std::env::current_exe().unwrap();
        let mut all = Vec::new();
        for _ in 0..n {
            let mut child = std::process::Command::new(&exe)
                .env(WORKER_ENV, spec)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ready", "a writer process did not start");
            all.push((child, out));
        }
        Workers(all)
    }

    /// Each process makes `count` commits, all at once; returns when all are done.
    fn run(&mut self, count: u64) {
        use std::io::BufRead;
        for (child, _) in &mut self.0 {
            let first = FRESH.fetch_add(count, Ordering::Relaxed);
            let stdin = child.stdin.as_mut().unwrap();
            writeln!(stdin, "{first} {count}").unwrap();
            stdin.flush().unwrap();
        }
        for (_, out) in &mut self.0 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ok", "a writer process failed");
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Keeps SQLite from re-preparing statements whose parameters its planner looked at (the
/// bundled build does so after `clear_bindings`, which rusqlite calls on every execution).
fn stable_plans(conn: &rusqlite::Connection) {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .unwrap();
}

/// A SQLite connection set up as all of the benchmark's are: stable plans, and a page cache
/// as large as redkeep's default redb cache ([`results::SQLITE_CACHE_KIB`]; a connection's
/// cache is its own).
fn sqlite_open(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    stable_plans(&c);
    c.execute_batch(&results::sqlite_cache_pragma()).unwrap();
    c
}

fn open_sqlite(path: &Path, n: u64) -> (rusqlite::Connection, Vec<String>) {
    let conn = sqlite_open(path);
    conn.execute_batch(SQLITE_SCHEMA).unwrap();
    let mut tokens = Vec::new();
    let tx = conn.unchecked_transaction().unwrap();
    tx.execute_batch(
        "INSERT INTO roles (id, name, permissions)
           VALUES (1, 'user', 'basic_access,session_management,profile_management');
         INSERT INTO roles (id, name, permissions) VALUES (2, 'editor', 'docs.read,docs.edit');",
    )
    .unwrap();
    for id in 1..=n {
        sqlite_insert_user(&tx, &user(id));
        if id <= ACCOUNTS {
            tx.execute(
                "INSERT INTO credentials VALUES (?1, '$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA')",
                [id as i64],
            )
            .unwrap();
            for role in [1, 2] {
                tx.execute(
                    "INSERT INTO user_roles VALUES (?1, ?2, 1)",
                    [id as i64, role],
                )
                .unwrap();
            }
            let token = format!("rks_plain{id:020}");
            tx.execute(
                "INSERT INTO sessions VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, NULL, NULL)",
                rusqlite::params![
                    token_hash(&token).to_vec(),
                    short_id(id),
                    id as i64,
                    SEEN,
                    i64::MAX,
                    IDLE_SECS
                ],
            )
            .unwrap();
            tokens.push(token);
            // The account's personal org, membership and audit rows, as in redkeep.
            tx.execute(
                "INSERT INTO orgs (slug, name) VALUES (?1, 'User''s Workspace')",
                [format!("user{id}-workspace")],
            )
            .unwrap();
            let org = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO members VALUES (?1, ?2, 'owner')",
                [org, id as i64],
            )
            .unwrap();
            for event in ACCOUNT_EVENTS {
                tx.execute(
                    "INSERT INTO audit (at, user_id, event) VALUES (0, ?1, ?2)",
                    rusqlite::params![id as i64, event],
                )
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    (conn, tokens)
}

fn redb_insert(db: &redb::Database, u: &User) {
    let tx = db.begin_write().unwrap();
    let mut u = u.clone();
    u.id = redb_next(&tx, "users");
    redb_put_user(&tx, &u);
    tx.commit().unwrap();
}

/// What a system held before a row that adds records, for [`Systems::trim`]: the top keys
/// of the tables that grow from a sequence, and the keys of its sessions (hashes, in no
/// order).
struct Marks {
    user: u64,
    org: u64,
    audit: u64,
    sessions: HashSet<Vec<u8>>,
}

/// [`Marks`] of each system.
struct AllMarks {
    ex: Marks,
    sh: Marks,
    redb: Marks,
    sqlite: Marks,
}

/// What a row adds: plain users (kept out by deleting the records), or accounts and sessions
/// (created by the flows, kept out by deleting each account with what belongs to it).
#[derive(Clone, Copy, PartialEq)]
enum Adds {
    Users,
    Accounts,
}

/// The highest key of `R`'s table (0 when empty).
fn top_key<R: redkeep::Record<Key = u64>>(rk: &Redkeep) -> u64 {
    rk.store()
        .read(|tx| {
            let mut top = 0;
            tx.table::<R>()
                .for_each_key(KeyRange::all(), Order::Desc, |id| {
                    top = id;
                    Ok(false)
                })?;
            Ok(top)
        })
        .unwrap()
}

fn rk_marks(rk: &Redkeep) -> Marks {
    use redkeep::Key as _;
    let sessions = rk
        .store()
        .read(|tx| {
            let mut keys = HashSet::new();
            tx.table::<Session>()
                .for_each_key(KeyRange::all(), Order::Asc, |k| {
                    keys.insert(k.to_bytes());
                    Ok(true)
                })?;
            Ok(keys)
        })
        .unwrap();
    Marks {
        user: top_key::<User>(rk),
        org: top_key::<Org>(rk),
        audit: top_key::<AuditEvent>(rk),
        sessions,
    }
}

/// Deletes the records of `R` that `added` picks, in transactions of at most 10,000. The keys
/// are walked from the top down; unless `scattered`, the walk stops at the first key not
/// added (keys from a sequence).
fn trim_records<R: redkeep::Record>(
    rk: &Redkeep,
    added: &(dyn Fn(&R::Key) -> bool + Sync),
    scattered: bool,
) {
    while rk
        .store()
        .write(|tx| {
            let t = tx.table::<R>();
            let mut keys = Vec::new();
            t.for_each_key(KeyRange::all(), Order::Desc, |k| {
                if keys.len() == 10_000 {
                    return Ok(false);
                }
                if added(&k) {
                    keys.push(k);
                    return Ok(true);
                }
                Ok(scattered)
            })?;
            for k in &keys {
                t.delete(k)?;
            }
            Ok(keys.len() == 10_000)
        })
        .unwrap()
    {}
}

/// Takes out of a redkeep store what a row added since `m`: its users (plain records, or
/// accounts deleted through the flow with their credential, grants, sessions and personal
/// org), the sessions made since, and the audit rows written since (the deletions' own
/// included).
fn trim_redkeep(rk: &Redkeep, m: &Marks, adds: Adds) {
    match adds {
        Adds::Users => trim_records::<User>(rk, &|id| *id > m.user, false),
        Adds::Accounts => {
            let top = top_key::<User>(rk);
            for id in m.user + 1..=top {
                match rk.users().delete(id) {
                    Ok(_) | Err(redkeep::Error::NotFound { .. }) => {}
                    Err(e) => panic!("taking out user {id}: {e}"),
                }
            }
        }
    }
    use redkeep::Key as _;
    trim_records::<Session>(rk, &|k| !m.sessions.contains(&k.to_bytes()), true);
    trim_records::<AuditEvent>(rk, &|id| *id > m.audit, false);
}

/// Removes the entries of `table` whose keys `range` holds, and returns `each` of them.
fn take_range<'a, K, V, KR, T>(
    table: &mut redb::Table<'_, K, V>,
    range: impl std::ops::RangeBounds<KR> + 'a,
    mut each: impl for<'f> FnMut(K::SelfType<'f>, V::SelfType<'f>) -> T,
) -> Vec<T>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
    KR: std::borrow::Borrow<K::SelfType<'a>> + 'a,
{
    let mut out = Vec::new();
    table
        .retain_in(range, |k, v| {
            out.push(each(k, v));
            false
        })
        .unwrap();
    out
}

impl Systems {
    fn marks(&self) -> AllMarks {
        let tx = self.redb.begin_read().unwrap();
        let top = |def: TableDefinition<u64, &[u8]>| {
            tx.open_table(def)
                .unwrap()
                .last()
                .unwrap()
                .map_or(0, |(id, _)| id.value())
        };
        let redb = Marks {
            user: top(USERS),
            org: top(ORGS),
            audit: top(AUDIT),
            sessions: tx
                .open_table(SESSIONS)
                .unwrap()
                .iter()
                .unwrap()
                .map(|e| e.unwrap().0.value().to_vec())
                .collect(),
        };
        let max = |table: &str| -> u64 {
            let n: i64 = self
                .sqlite
                .query_row(
                    &format!("SELECT coalesce(max(id), 0) FROM {table}"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            n as u64
        };
        let mut hashes = self.sqlite.prepare("SELECT hash FROM sessions").unwrap();
        let sqlite = Marks {
            user: max("users"),
            org: max("orgs"),
            audit: max("audit"),
            sessions: hashes
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect(),
        };
        AllMarks {
            ex: rk_marks(&self.ex),
            sh: rk_marks(&self.sh),
            redb,
            sqlite,
        }
    }

    /// Runs `row` (a row that adds what `adds` says), then takes what it added out again,
    /// untimed ([`Systems::trim`]).
    fn adding<T>(&self, adds: Adds, row: impl FnOnce() -> T) -> T {
        let marks = self.marks();
        let out = row();
        self.trim(&marks, adds);
        out
    }

    /// Takes out what was added since `marks` (users or accounts with everything pointing at
    /// them, sessions, audit rows), untimed, so every round reads tables of the loaded size
    /// in every system: the rows that add plain users add about 500,000 a round to redkeep
    /// (most of them the batch row), and the create-user and login rows add as many accounts
    /// and sessions as each system makes in the row's time, which differs by up to 6×.
    fn trim(&self, marks: &AllMarks, adds: Adds) {
        trim_redkeep(&self.ex, &marks.ex, adds);
        trim_redkeep(&self.sh, &marks.sh, adds);
        self.trim_redb(&marks.redb);
        let m = &marks.sqlite;
        let tx = self.sqlite.unchecked_transaction().unwrap();
        for (sql, mark) in [
            ("DELETE FROM users WHERE id > ?1", m.user),
            ("DELETE FROM credentials WHERE user_id > ?1", m.user),
            ("DELETE FROM user_roles WHERE user_id > ?1", m.user),
            ("DELETE FROM orgs WHERE id > ?1", m.org),
            ("DELETE FROM members WHERE org_id > ?1", m.org),
            ("DELETE FROM audit WHERE id > ?1", m.audit),
        ] {
            tx.execute(sql, [mark as i64]).unwrap();
        }
        let added: Vec<Vec<u8>> = tx
            .prepare("SELECT hash FROM sessions")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .filter(|h: &Vec<u8>| !m.sessions.contains(h))
            .collect();
        for h in added {
            tx.execute("DELETE FROM sessions WHERE hash = ?1", [h])
                .unwrap();
        }
        tx.commit().unwrap();
        let after = self.marks();
        for (system, a, b) in [
            ("redkeep Exclusive", &after.ex, &marks.ex),
            ("redkeep Shared", &after.sh, &marks.sh),
            ("bare redb", &after.redb, &marks.redb),
            ("SQLite", &after.sqlite, &marks.sqlite),
        ] {
            assert!(
                a.user <= b.user
                    && a.org <= b.org
                    && a.audit <= b.audit
                    && a.sessions == b.sessions,
                "what a row added to {system} was not all taken out"
            );
        }
    }

    /// [`Systems::trim`] for bare redb: users in transactions of at most 10,000 deletions,
    /// then the rows of accounts, sessions and audit in one.
    fn trim_redb(&self, m: &Marks) {
        loop {
            let tx = self.redb.begin_write().unwrap();
            let more = {
                let mut t = UserTables::open(&tx);
                let added: Vec<User> = t
                    .users
                    .range(m.user + 1..)
                    .unwrap()
                    .take(10_000)
                    .map(|e| dec(e.unwrap().1.value()))
                    .collect();
                for u in &added {
                    t.users.remove(u.id).unwrap();
                    t.by_email.remove(u.email.as_str()).unwrap();
                    t.by_created.remove((u.created_at.0, u.id)).unwrap();
                    t.by_admin.remove((u.is_admin, u.id)).unwrap();
                }
                added.len() == 10_000
            };
            tx.commit().unwrap();
            if !more {
                break;
            }
        }
        let tx = self.redb.begin_write().unwrap();
        {
            take_range(
                &mut tx.open_table(CREDENTIALS).unwrap(),
                m.user + 1..,
                |_, _| (),
            );
            let mut by_role = tx.open_table(USER_ROLES_BY_ROLE).unwrap();
            for (user, role) in take_range(
                &mut tx.open_table(USER_ROLES).unwrap(),
                (m.user + 1, 0)..,
                |k, _| k,
            ) {
                by_role.remove((role, user)).unwrap();
            }
            let mut slugs = tx.open_table(ORGS_BY_SLUG).unwrap();
            for slug in take_range(&mut tx.open_table(ORGS).unwrap(), m.org + 1.., |_, v| {
                dec::<(u64, String, String, u64)>(v).1
            }) {
                slugs.remove(slug.as_str()).unwrap();
            }
            let mut by_user = tx.open_table(MEMBERS_BY_USER).unwrap();
            for (org, user) in take_range(
                &mut tx.open_table(MEMBERS).unwrap(),
                (m.org + 1, 0)..,
                |k, _| k,
            ) {
                by_user.remove((user, org)).unwrap();
            }
            let mut by_user = tx.open_table(AUDIT_BY_USER).unwrap();
            for (a, user) in
                take_range(&mut tx.open_table(AUDIT).unwrap(), m.audit + 1.., |k, v| {
                    (k, dec::<(u64, i64, u64, String)>(v).2)
                })
            {
                by_user.remove((user, a)).unwrap();
            }
            let mut sessions = tx.open_table(SESSIONS).unwrap();
            let added: Vec<(Vec<u8>, u64)> = sessions
                .iter()
                .unwrap()
                .map(|e| {
                    let (k, v) = e.unwrap();
                    (k.value().to_vec(), dec::<SessionRow>(v.value()).user_id)
                })
                .filter(|(k, _)| !m.sessions.contains(k))
                .collect();
            let mut by_user = tx.open_table(SESSIONS_BY_USER).unwrap();
            for (k, user) in added {
                sessions.remove(k.as_slice()).unwrap();
                by_user.remove((user, k.as_slice())).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

fn redb_login(db: &redb::Database, email: &str, n: u64, now: i64) {
    let tx = db.begin_write().unwrap();
    {
        let id = tx
            .open_table(BY_EMAIL)
            .unwrap()
            .get(email)
            .unwrap()
            .unwrap()
            .value();
        let mut users = tx.open_table(USERS).unwrap();
        let mut u: User = dec(users.get(id).unwrap().unwrap().value());
        assert!(
            tx.open_table(CREDENTIALS)
                .unwrap()
                .get(id)
                .unwrap()
                .is_some()
        );
        u.last_login_at = Some(Timestamp(now));
        users.insert(id, enc(&u).as_slice()).unwrap();
        let h = token_hash(&format!("rks_login{n:020}"));
        let row = SessionRow::new(n, id, now, now + 86_400);
        tx.open_table(SESSIONS)
            .unwrap()
            .insert(h.as_slice(), enc(&row).as_slice())
            .unwrap();
        tx.open_table(SESSIONS_BY_USER)
            .unwrap()
            .insert((id, h.as_slice()), ())
            .unwrap();
    }
    tx.commit().unwrap();
}

fn redb_create_user(db: &redb::Database, n: u64) {
    let tx = db.begin_write().unwrap();
    {
        let mut u = user(0);
        u.id = redb_next(&tx, "users");
        u.email = format!("new{n}@example.com");
        redb_put_user(&tx, &u);
        tx.open_table(CREDENTIALS)
            .unwrap()
            .insert(u.id, "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
            .unwrap();
        // The default role (`user`), found by its record, granted and audited.
        assert!(tx.open_table(ROLES).unwrap().get(1).unwrap().is_some());
        tx.open_table(USER_ROLES)
            .unwrap()
            .insert((u.id, 1), true)
            .unwrap();
        tx.open_table(USER_ROLES_BY_ROLE)
            .unwrap()
            .insert((1, u.id), ())
            .unwrap();
        redb_audit(&tx, u.id, u.created_at.0, "role.granted");
        let org = redb_next(&tx, "orgs");
        let slug = format!("new{n}-workspace");
        let mut slugs = tx.open_table(ORGS_BY_SLUG).unwrap();
        assert!(slugs.get(slug.as_str()).unwrap().is_none());
        slugs.insert(slug.as_str(), org).unwrap();
        tx.open_table(ORGS)
            .unwrap()
            .insert(org, enc(&(org, &slug, "New's Workspace", u.id)).as_slice())
            .unwrap();
        tx.open_table(MEMBERS)
            .unwrap()
            .insert((org, u.id), enc(&("owner", u.created_at.0)).as_slice())
            .unwrap();
        tx.open_table(MEMBERS_BY_USER)
            .unwrap()
            .insert((u.id, org), ())
            .unwrap();
        redb_audit(&tx, u.id, u.created_at.0, "org.created");
        redb_audit(&tx, u.id, u.created_at.0, "user.created");
    }
    tx.commit().unwrap();
}

/// An audit row with its entry in the by-user index.
fn redb_audit(tx: &redb::WriteTransaction, user: u64, at: i64, event: &str) {
    let a = redb_next(tx, "audit");
    tx.open_table(AUDIT)
        .unwrap()
        .insert(a, enc(&(a, at, user, event)).as_slice())
        .unwrap();
    tx.open_table(AUDIT_BY_USER)
        .unwrap()
        .insert((user, a), ())
        .unwrap();
}

/// Every column of a user row, as the other systems read whole users.
macro_rules! user_columns {
    () => {
        "id, email, name, is_admin, is_active, created_at, updated_at"
    };
}

/// A whole user row.
type SqlUser = (i64, String, String, bool, bool, i64, i64);
/// A session's columns except the hash and the user (read from the user's row): short id,
/// created, last seen, expiry, idle timeout, address and user agent.
type SqlSession = (String, i64, i64, i64, i64, Option<String>, Option<String>);

fn sql_user(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<SqlUser> {
    Ok((
        r.get(at)?,
        r.get(at + 1)?,
        r.get(at + 2)?,
        r.get(at + 3)?,
        r.get(at + 4)?,
        r.get(at + 5)?,
        r.get(at + 6)?,
    ))
}

/// The read statements of one SQLite connection, prepared once and held, as an application
/// that keeps its statements does (no lookup in rusqlite's statement cache per call).
struct SqlReads<'c> {
    by_email: rusqlite::Statement<'c>,
    by_id: rusqlite::Statement<'c>,
    validate: rusqlite::Statement<'c>,
    permissions: rusqlite::Statement<'c>,
    page: rusqlite::Statement<'c>,
}

impl<'c> SqlReads<'c> {
    fn new(c: &'c rusqlite::Connection) -> SqlReads<'c> {
        let prepare = |sql: &str| c.prepare(sql).unwrap();
        SqlReads {
            by_email: prepare(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE email = ?1"
            )),
            by_id: prepare(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE id = ?1"
            )),
            validate: prepare(
                "SELECT u.id, u.email, u.name, u.is_admin, u.is_active, u.created_at, u.updated_at,
                        s.short_id, s.created_at, s.last_seen_at, s.expires_at, s.idle_timeout_secs,
                        s.ip, s.user_agent
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.hash = ?1 AND min(s.expires_at, s.last_seen_at + s.idle_timeout_secs) > ?2
                   AND u.is_active = 1",
            ),
            permissions: prepare(
                "SELECT r.permissions FROM users u JOIN user_roles ur ON ur.user_id = u.id
                 JOIN roles r ON r.id = ur.role_id
                 WHERE u.id = ?1 AND u.is_active = 1 AND ur.active = 1",
            ),
            page: prepare(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE created_at >= ?1 ORDER BY created_at, id LIMIT 50"
            )),
        }
    }

    fn by_email(&mut self, email: &str) -> Option<SqlUser> {
        self.by_email.query_row([email], |r| sql_user(r, 0)).ok()
    }

    fn by_id(&mut self, id: u64) -> Option<SqlUser> {
        self.by_id.query_row([id as i64], |r| sql_user(r, 0)).ok()
    }

    fn validate(&mut self, token: &str, now: i64) -> Option<(SqlUser, SqlSession)> {
        self.validate
            .query_row(rusqlite::params![token_hash(token).to_vec(), now], |r| {
                let session = (
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                    r.get(12)?,
                    r.get(13)?,
                );
                Ok((sql_user(r, 0)?, session))
            })
            .ok()
    }

    fn has_permission(&mut self, user: u64, perm: &str) -> bool {
        let rows = self
            .permissions
            .query_map([user as i64], |r| r.get::<_, String>(0))
            .unwrap();
        for perms in rows {
            if perms.unwrap().split(',').any(|p| p == perm || p == "*") {
                return true;
            }
        }
        false
    }

    fn page(&mut self, from: i64) -> Vec<SqlUser> {
        self.page
            .query_map([from], |r| sql_user(r, 0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

fn sqlite_insert(c: &rusqlite::Connection, u: &User) {
    let mut u = u.clone();
    u.id = 0;
    c.prepare_cached(
        "INSERT INTO users (email, name, is_admin, is_active, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .unwrap()
    .execute(rusqlite::params![
        u.email,
        u.name,
        u.is_admin,
        u.is_active,
        u.created_at.0,
        u.updated_at.0
    ])
    .unwrap();
}

fn sqlite_login(c: &rusqlite::Connection, email: &str, n: u64, now: i64) {
    let tx = c.unchecked_transaction().unwrap();
    let id: i64 = tx
        .prepare_cached("SELECT id FROM users WHERE email = ?1")
        .unwrap()
        .query_row([email], |r| r.get(0))
        .unwrap();
    let _hash: String = tx
        .prepare_cached("SELECT hash FROM credentials WHERE user_id = ?1")
        .unwrap()
        .query_row([id], |r| r.get(0))
        .unwrap();
    tx.prepare_cached("UPDATE users SET last_login_at = ?2 WHERE id = ?1")
        .unwrap()
        .execute([id, now])
        .unwrap();
    tx.prepare_cached("INSERT INTO sessions VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, NULL, NULL)")
        .unwrap()
        .execute(rusqlite::params![
            token_hash(&format!("rks_login{n:020}")).to_vec(),
            short_id(n),
            id,
            now,
            now + 86_400,
            IDLE_SECS
        ])
        .unwrap();
    tx.commit().unwrap();
}

fn sqlite_create_user(c: &rusqlite::Connection, n: u64) {
    let tx = c.unchecked_transaction().unwrap();
    let mut u = user(0);
    u.email = format!("new{n}@example.com");
    sqlite_insert(&tx, &u);
    let id = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO credentials VALUES (?1, '$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA')",
    )
    .unwrap()
    .execute([id])
    .unwrap();
    let role: i64 = tx
        .prepare_cached("SELECT id FROM roles WHERE name = 'user'")
        .unwrap()
        .query_row([], |r| r.get(0))
        .unwrap();
    tx.prepare_cached("INSERT INTO user_roles VALUES (?1, ?2, 1)")
        .unwrap()
        .execute([id, role])
        .unwrap();
    tx.prepare_cached("INSERT INTO audit (at, user_id, event) VALUES (?1, ?2, 'role.granted')")
        .unwrap()
        .execute([u.created_at.0, id])
        .unwrap();
    tx.prepare_cached("INSERT INTO orgs (slug, name) VALUES (?1, 'New''s Workspace')")
        .unwrap()
        .execute([format!("new{n}-workspace")])
        .unwrap();
    let org = tx.last_insert_rowid();
    tx.prepare_cached("INSERT INTO members VALUES (?1, ?2, 'owner')")
        .unwrap()
        .execute([org, id])
        .unwrap();
    tx.prepare_cached("INSERT INTO audit (at, user_id, event) VALUES (?1, ?2, 'org.created')")
        .unwrap()
        .execute([u.created_at.0, id])
        .unwrap();
    tx.prepare_cached("INSERT INTO audit (at, user_id, event) VALUES (?1, ?2, 'user.created')")
        .unwrap()
        .execute([u.created_at.0, id])
        .unwrap();
    tx.commit().unwrap();
}

/// The raw floor of a crash-safe file replacement: write a temp file, fsync it, rename it
/// over the target, fsync the folder.
fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

/// Times `mine` and `other` (the raw floor, or bare redb doing the same durable work) back
/// to back, `iters` times, the one or the other first in turns, and returns the time `mine`
/// took. Each pair's two times are kept in `pairs`: pairs run a few milliseconds apart, so
/// the disk's drift, which moves whole seconds of criterion samples, hits both halves of a
/// pair alike.
fn paired(
    iters: u64,
    pairs: &mut Vec<(f64, f64)>,
    mine: &mut dyn FnMut(),
    other: &mut dyn FnMut(),
) -> Duration {
    let timed = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        started.elapsed()
    };
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (a, b) = if pairs.len().is_multiple_of(2) {
            let a = timed(mine);
            (a, timed(other))
        } else {
            let b = timed(other);
            (timed(mine), b)
        };
        pairs.push((a.as_nanos() as f64, b.as_nanos() as f64));
        total += a;
    }
    total
}

/// Benchmarks redkeep Exclusive in `g` with [`paired`] against `other`; returns the pairs,
/// for [`write_pairs`].
fn bench_paired(
    g: &mut BenchmarkGroup<'_, WallTime>,
    mine: &mut dyn FnMut(),
    other: &mut dyn FnMut(),
) -> Vec<(f64, f64)> {
    let mut pairs = Vec::new();
    g.bench_function("redkeep_exclusive", |b| {
        b.iter_custom(|iters| paired(iters, &mut pairs, mine, other))
    });
    pairs
}

/// The median of `v` (the mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[m]),
        _ => Some((v[m - 1] + v[m]) / 2.0),
    }
}

/// Writes what [`paired`] measured for `op` in round `round` beside criterion's results,
/// for `bench_report`: the system the pairs held against redkeep Exclusive, the number of
/// pairs, the median of their ratios and the median time of each side, so the report can
/// show the times the ratio came from.
fn write_pairs(round: u64, op: &str, against: &str, pairs: &[(f64, f64)]) {
    let Some(ratio) = median(pairs.iter().map(|(a, b)| a / b).collect()) else {
        return;
    };
    let dir = results::results_dir().join(format!("r{round}_{op}"));
    std::fs::create_dir_all(&dir).unwrap();
    let info = serde_json::json!({
        "against": against,
        "pairs": pairs.len(),
        "median_ratio": ratio,
        "mine_median_ns": median(pairs.iter().map(|p| p.0).collect()),
        "other_median_ns": median(pairs.iter().map(|p| p.1).collect()),
    });
    std::fs::write(dir.join("paired.json"), info.to_string()).unwrap();
}

fn setup(dir: &Path, n: u64) -> Systems {
    let (ex, ex_tokens) = open_redkeep(&dir.join("ex"), Mode::Exclusive, n);
    let (sh, sh_tokens) = open_redkeep(&dir.join("sh"), Mode::Shared, n);
    let (redb, plain_tokens) = open_redb(&dir.join("bare.redb"), n);
    let sqlite_path = dir.join("users.sqlite");
    let (sqlite, _) = open_sqlite(&sqlite_path, n);
    Systems {
        ex,
        sh,
        redb,
        sqlite,
        sqlite_path,
        ex_tokens,
        sh_tokens,
        plain_tokens,
    }
}

/// Times one system's `jobs`, started once and run together on every iteration (see
/// [`with_crew`]), each `times` times.
fn bench_crew(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, jobs: Vec<Job<'_>>, times: u64) {
    with_crew(jobs, times, |run| {
        g.bench_function(name, |b| b.iter(&mut *run));
    });
}

/// One system's part of a row: runs its benchmark in the row's group.
type Part<'a> = Box<dyn FnOnce(&mut BenchmarkGroup<'_, WallTime>) + 'a>;

/// A [`Part`] that benchmarks `f` under `name`.
fn part<'a>(name: &'a str, mut f: impl FnMut(&mut Bencher<'_, WallTime>) + 'a) -> Part<'a> {
    Box::new(move |g| {
        g.bench_function(name, |b| f(b));
    })
}

/// Runs the systems' `parts` of row `op` in round `r`, starting with the `r`-th (mod their
/// number), so that no system always runs first or last in its row: whatever hangs on a
/// position (the writeback of the row before, drift within a row) moves from one system
/// to the next, round by round.
fn row(
    c: &mut Criterion,
    r: u64,
    op: &str,
    setup: impl FnOnce(&mut BenchmarkGroup<'_, WallTime>),
    mut parts: Vec<Part<'_>>,
) {
    let mut g = c.benchmark_group(format!("r{r}_{op}"));
    setup(&mut g);
    let k = parts.len();
    parts.rotate_left(r as usize % k);
    for part in parts {
        part(&mut g);
    }
    g.finish();
}

/// No group settings beyond the defaults.
fn plain(_: &mut BenchmarkGroup<'_, WallTime>) {}

/// Durable rows: fewer samples (`n`).
fn samples(n: usize) -> impl FnOnce(&mut BenchmarkGroup<'_, WallTime>) {
    move |g| {
        g.sample_size(n);
    }
}

/// How often the writer of the reads-while-writing row commits: 1,000 commits a second, less
/// than one writer of each system manages alone, so all four read under the same load.
const WRITE_EVERY: Duration = Duration::from_millis(1);

/// Runs `timed` while another thread runs `write` once every [`WRITE_EVERY`] (or as often
/// as it can, when a write takes longer), until `timed` returns (or panics: the writer stops
/// either way).
fn while_writing(write: &(dyn Fn() + Sync), timed: impl FnOnce()) {
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                write();
                next += WRITE_EVERY;
                match next.checked_duration_since(Instant::now()) {
                    Some(left) => std::thread::sleep(left),
                    // Behind: no catching up in a burst.
                    None => next = Instant::now(),
                }
            }
        });
        let _stop = Stop(&stop);
        timed();
    });
}

/// A SQLite connection of its own for a writing thread (durable commits, waiting for the
/// others' locks).
fn sqlite_writer(path: &Path) -> rusqlite::Connection {
    let c = sqlite_open(path);
    c.execute_batch("PRAGMA synchronous=FULL;").unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    c
}

/// The record a read row looked up: the rows time lookups that find their record, and a
/// miss (ids or emails no longer lining up between systems) stops the run.
fn found<T>(record: Option<T>) -> T {
    record.expect("a read row's record was not found")
}

/// A page of the page row: always 50 users (every start leaves at least 50 after it).
fn full_page<T>(page: Vec<T>) -> Vec<T> {
    assert_eq!(page.len(), 50, "a page of 50 came back short");
    page
}

/// Ids of the raw floor's piece files, never used twice (redkeep's `save_piece` always makes
/// a new file, so the floor does too, in every round).
static FLOOR_PIECE: AtomicU64 = AtomicU64::new(0);

fn round(c: &mut Criterion, s: &Systems, r: u64, n: u64, tmp: &Path) {
    let pick = AtomicU64::new(r);
    let next = || pick.fetch_add(7919, Ordering::Relaxed) % n + 1;
    let next_account = || pick.fetch_add(7919, Ordering::Relaxed) % ACCOUNTS + 1;
    let now = NOW;
    let (ex, sh, db) = (&s.ex, &s.sh, &s.redb);
    let q = std::cell::RefCell::new(SqlReads::new(&s.sqlite));

    row(
        c,
        r,
        "user_by_email",
        plain,
        vec![
            part("redkeep_exclusive", |b| {
                b.iter(|| black_box(found(ex.users().by_email(&email(next())).unwrap())))
            }),
            part("redkeep_shared", |b| {
                b.iter(|| black_box(found(sh.users().by_email(&email(next())).unwrap())))
            }),
            part("bare_redb", |b| {
                b.iter(|| black_box(found(bare::by_email(db, &email(next())))))
            }),
            part("sqlite_wal_full", |b| {
                let q = &mut *q.borrow_mut();
                b.iter(|| black_box(found(q.by_email(&email(next())))))
            }),
        ],
    );

    row(
        c,
        r,
        "user_by_id",
        plain,
        vec![
            part("redkeep_exclusive", |b| {
                b.iter(|| black_box(found(ex.users().get(next()).unwrap())))
            }),
            part("redkeep_shared", |b| {
                b.iter(|| black_box(found(sh.users().get(next()).unwrap())))
            }),
            part("bare_redb", |b| {
                b.iter(|| black_box(found(bare::by_id(db, next()))))
            }),
            part("sqlite_wal_full", |b| {
                let q = &mut *q.borrow_mut();
                b.iter(|| black_box(found(q.by_id(next()))))
            }),
        ],
    );

    let tok = |ts: &[String]| ts[(next_account() - 1) as usize].clone();
    row(
        c,
        r,
        "session_validate",
        plain,
        vec![
            part("redkeep_exclusive", |b| {
                b.iter(|| black_box(ex.sessions().validate(&tok(&s.ex_tokens)).unwrap()))
            }),
            part("redkeep_shared", |b| {
                b.iter(|| black_box(sh.sessions().validate(&tok(&s.sh_tokens)).unwrap()))
            }),
            part("bare_redb", |b| {
                b.iter(|| black_box(found(bare::validate(db, &tok(&s.plain_tokens), now))))
            }),
            part("sqlite_wal_full", |b| {
                let q = &mut *q.borrow_mut();
                b.iter(|| black_box(found(q.validate(&tok(&s.plain_tokens), now))))
            }),
        ],
    );

    // redkeep's account users are ids 1..=ACCOUNTS as in the others (created first).
    row(
        c,
        r,
        "permission_check",
        plain,
        vec![
            part("redkeep_exclusive", |b| {
                b.iter(|| {
                    assert!(
                        ex.roles()
                            .has_permission(next_account(), "docs.edit")
                            .unwrap()
                    )
                })
            }),
            part("redkeep_shared", |b| {
                b.iter(|| {
                    assert!(
                        sh.roles()
                            .has_permission(next_account(), "docs.edit")
                            .unwrap()
                    )
                })
            }),
            part("bare_redb", |b| {
                b.iter(|| assert!(bare::has_permission(db, next_account(), "docs.edit")))
            }),
            part("sqlite_wal_full", |b| {
                let q = &mut *q.borrow_mut();
                b.iter(|| assert!(q.has_permission(next_account(), "docs.edit")))
            }),
        ],
    );

    let from = || 1_800_000_000 + (next() % n.saturating_sub(50).max(1)) as i64;
    let to = Timestamp(i64::MAX);
    row(
        c,
        r,
        "page_of_50_by_created",
        plain,
        vec![
            part("redkeep_exclusive", |b| {
                b.iter(|| {
                    black_box(full_page(
                        ex.users()
                            .created_between(Timestamp(from()), to, 50)
                            .unwrap(),
                    ))
                })
            }),
            part("redkeep_shared", |b| {
                b.iter(|| {
                    black_box(full_page(
                        sh.users()
                            .created_between(Timestamp(from()), to, 50)
                            .unwrap(),
                    ))
                })
            }),
            part("bare_redb", |b| {
                b.iter(|| black_box(full_page(bare::page(db, from()))))
            }),
            part("sqlite_wal_full", |b| {
                let q = &mut *q.borrow_mut();
                b.iter(|| black_box(full_page(q.page(from()))))
            }),
        ],
    );

    // Lookups by email from 4 threads at once, each with its own SQLite connection and its
    // statement prepared on its thread: whether reads of one handle get in each other's way
    // (an Exclusive handle's reads share the kept snapshot, taken under one lock).
    const READERS: u64 = 4;
    const READS: u64 = 500;
    let ex_read = || {
        drop(black_box(found(
            ex.users().by_email(&email(next())).unwrap(),
        )))
    };
    let sh_read = || {
        drop(black_box(found(
            sh.users().by_email(&email(next())).unwrap(),
        )))
    };
    let redb_read = || drop(black_box(found(bare::by_email(db, &email(next())))));
    let sqlite_path = &s.sqlite_path;
    row(
        c,
        r,
        "concurrent_reads_4_threads",
        |g| {
            g.throughput(criterion::Throughput::Elements(READERS * READS));
        },
        vec![
            Box::new(|g| bench_crew(g, "redkeep_exclusive", alike(READERS, &ex_read), READS)),
            Box::new(|g| bench_crew(g, "redkeep_shared", alike(READERS, &sh_read), READS)),
            Box::new(|g| bench_crew(g, "bare_redb", alike(READERS, &redb_read), READS)),
            Box::new(|g| {
                let readers = (0..READERS)
                    .map(|_| {
                        Box::new(move |serve: &mut dyn FnMut(&mut dyn FnMut())| {
                            let conn = sqlite_open(sqlite_path);
                            let mut q = SqlReads::new(&conn);
                            serve(&mut || drop(black_box(found(q.by_email(&email(next()))))));
                        }) as Setup<'_>
                    })
                    .collect();
                with_crew_set_up(readers, READS, |run| {
                    g.bench_function("sqlite_wal_full", |b| b.iter(&mut *run));
                });
            }),
        ],
    );

    let fresh = || FRESH.fetch_add(1, Ordering::Relaxed);

    // Reads while the same file takes writes: one other thread makes a durable one-user
    // commit every millisecond while a lookup by email is timed (SQLite's writer has its
    // own connection).
    let writer = std::sync::Mutex::new(sqlite_writer(&s.sqlite_path));
    let sqlite_write = || sqlite_insert(&writer.lock().unwrap(), &user(fresh()));
    s.adding(Adds::Users, || {
        row(
            c,
            r,
            "user_by_email_while_writing",
            plain,
            vec![
                part("redkeep_exclusive", |b| {
                    while_writing(&|| insert_user(ex, fresh()), || {
                        b.iter(|| black_box(found(ex.users().by_email(&email(next())).unwrap())))
                    })
                }),
                part("redkeep_shared", |b| {
                    while_writing(&|| insert_user(sh, fresh()), || {
                        b.iter(|| black_box(found(sh.users().by_email(&email(next())).unwrap())))
                    })
                }),
                part("bare_redb", |b| {
                    while_writing(&|| redb_insert(db, &user(fresh())), || {
                        b.iter(|| black_box(found(bare::by_email(db, &email(next())))))
                    })
                }),
                part("sqlite_wal_full", |b| {
                    let q = &mut *q.borrow_mut();
                    while_writing(&sqlite_write, || {
                        b.iter(|| black_box(found(q.by_email(&email(next())))))
                    })
                }),
            ],
        )
    });
    drop(writer);
    drop(q);

    // Durable commits: Exclusive is timed in pairs with bare redb (see `paired`).
    let mut pairs = Vec::new();
    s.adding(Adds::Users, || {
        row(
            c,
            r,
            "durable_insert",
            samples(20),
            vec![
                Box::new(|g| {
                    pairs = bench_paired(g, &mut || insert_user(ex, fresh()), &mut || {
                        redb_insert(db, &user(fresh()))
                    })
                }),
                part("redkeep_shared", |b| b.iter(|| insert_user(sh, fresh()))),
                part("bare_redb", |b| b.iter(|| redb_insert(db, &user(fresh())))),
                part("sqlite_wal_full", |b| {
                    b.iter(|| sqlite_insert(&s.sqlite, &user(fresh())))
                }),
            ],
        )
    });
    write_pairs(r, "durable_insert", "bare_redb", &pairs);

    let login = |rk: &Redkeep| {
        rk.sessions()
            .login(&email(next_account()), PASSWORD, LoginMeta::default())
            .unwrap()
    };
    s.adding(Adds::Accounts, || {
        row(
            c,
            r,
            "durable_login",
            samples(20),
            vec![
                part("redkeep_exclusive", |b| b.iter(|| black_box(login(ex)))),
                part("redkeep_shared", |b| b.iter(|| black_box(login(sh)))),
                part("bare_redb", |b| {
                    b.iter(|| redb_login(db, &email(next_account()), fresh(), now))
                }),
                part("sqlite_wal_full", |b| {
                    b.iter(|| sqlite_login(&s.sqlite, &email(next_account()), fresh(), now))
                }),
            ],
        )
    });

    let create = |rk: &Redkeep| {
        rk.users()
            .create(NewUser {
                email: format!("new{}@example.com", fresh()),
                password: Some(PASSWORD.into()),
                ..NewUser::default()
            })
            .unwrap()
    };
    let mut pairs = Vec::new();
    s.adding(Adds::Accounts, || {
        row(
            c,
            r,
            "durable_create_user",
            samples(20),
            vec![
                Box::new(|g| {
                    pairs = bench_paired(g, &mut || drop(black_box(create(ex))), &mut || {
                        redb_create_user(db, fresh())
                    })
                }),
                part("redkeep_shared", |b| b.iter(|| black_box(create(sh)))),
                part("bare_redb", |b| b.iter(|| redb_create_user(db, fresh()))),
                part("sqlite_wal_full", |b| {
                    b.iter(|| sqlite_create_user(&s.sqlite, fresh()))
                }),
            ],
        )
    });
    write_pairs(r, "durable_create_user", "bare_redb", &pairs);

    let rk_batch = |rk: &Redkeep| {
        rk.store()
            .write(|tx| {
                let t = tx.table::<User>();
                for _ in 0..1000 {
                    let mut u = user(fresh());
                    u.id = t.next_id()?;
                    t.insert(&u)?;
                }
                Ok(())
            })
            .unwrap()
    };
    s.adding(Adds::Users, || {
        row(
            c,
            r,
            "batch_1000_inserts",
            samples(10),
            vec![
                part("redkeep_exclusive", |b| b.iter(|| rk_batch(ex))),
                part("redkeep_shared", |b| b.iter(|| rk_batch(sh))),
                part("bare_redb", |b| b.iter(|| redb_batch(db, fresh))),
                part("sqlite_wal_full", |b| {
                    b.iter(|| {
                        let tx = s.sqlite.unchecked_transaction().unwrap();
                        for _ in 0..1000 {
                            sqlite_insert(&tx, &user(fresh()));
                        }
                        tx.commit().unwrap();
                    })
                }),
            ],
        )
    });

    // Workspace files against the raw floor of one crash-safe replacement.
    let floor = tmp.join("floor");
    std::fs::create_dir_all(floor.join("gallery")).unwrap();
    let doc = serde_json::to_vec_pretty(&serde_json::json!({
        "canvas": {"width": 800, "height": 600}, "notes": ["a note"], "piece_count": 0
    }))
    .unwrap();
    let piece = br#"{"title":"a piece","strokes":[[1,2],[3,4]]}"#;
    let update = |rk: &Redkeep| {
        rk.workspaces()
            .update(1, |d| {
                d.notes = serde_json::json!(["a note"]);
                Ok(())
            })
            .unwrap()
    };
    let floor_update = || atomic_write(&floor, "workspace.json", &doc);
    // Exclusive is timed in pairs with the floor (see `paired`), for the ratio.
    let mut pairs = Vec::new();
    row(
        c,
        r,
        "workspace_update",
        samples(20),
        vec![
            Box::new(|g| pairs = bench_paired(g, &mut || update(ex), &mut { floor_update })),
            part("redkeep_shared", |b| b.iter(|| update(sh))),
            part("raw_floor", |b| b.iter(floor_update)),
        ],
    );
    write_pairs(r, "workspace_update", "raw_floor", &pairs);

    // A piece file and its count: two replacements.
    let floor_piece = || {
        let i = FLOOR_PIECE.fetch_add(1, Ordering::Relaxed);
        atomic_write(&floor.join("gallery"), &format!("piece_{i:08}.json"), piece);
        atomic_write(&floor, "workspace.json", &doc);
    };
    let mut pairs = Vec::new();
    row(
        c,
        r,
        "save_piece",
        samples(20),
        vec![
            Box::new(|g| {
                pairs = bench_paired(
                    g,
                    &mut || {
                        ex.workspaces().save_piece(2, piece).unwrap();
                    },
                    &mut { floor_piece },
                )
            }),
            part("redkeep_shared", |b| {
                b.iter(|| sh.workspaces().save_piece(2, piece).unwrap())
            }),
            part("raw_floor", |b| b.iter(floor_piece)),
        ],
    );
    write_pairs(r, "save_piece", "raw_floor", &pairs);

    // The same save for a user whose document is large (4 MiB): the count is kept beside
    // the document, so a save writes the piece and a few bytes, as the floor does, never
    // the document (which once made such saves take seconds).
    ex.workspaces()
        .update(3, |d| {
            d.notes = serde_json::json!(["x".repeat(4 << 20)]);
            Ok(())
        })
        .unwrap();
    let floor_counted_piece = || {
        let i = FLOOR_PIECE.fetch_add(1, Ordering::Relaxed);
        atomic_write(&floor.join("gallery"), &format!("piece_{i:08}.json"), piece);
        atomic_write(&floor, ".pieces", br#"{"piece_count":1,"next_piece":2}"#);
    };
    let mut pairs = Vec::new();
    row(
        c,
        r,
        "save_piece_large_doc",
        samples(20),
        vec![
            Box::new(|g| {
                pairs = bench_paired(
                    g,
                    &mut || {
                        ex.workspaces().save_piece(3, piece).unwrap();
                    },
                    &mut { floor_counted_piece },
                )
            }),
            part("raw_floor", |b| b.iter(floor_counted_piece)),
        ],
    );
    write_pairs(r, "save_piece_large_doc", "raw_floor", &pairs);

    // Durable one-record commits from several threads at once. SQLite twice: a connection
    // per thread, each waiting for the write lock in its busy handler (which sleeps 1, 2,
    // 5, 10, ... ms between tries), and all threads sharing one connection behind a mutex
    // (writes serialised without sleeping).
    const PER_THREAD: u64 = 8;
    let mut conns: Vec<rusqlite::Connection> =
        (0..16).map(|_| sqlite_writer(&s.sqlite_path)).collect();
    let shared = std::sync::Mutex::new(sqlite_writer(&s.sqlite_path));
    let shared_write = || sqlite_insert(&shared.lock().unwrap(), &user(fresh()));
    let ex_write = || insert_user(ex, fresh());
    let sh_write = || insert_user(sh, fresh());
    let redb_write = || redb_insert(db, &user(fresh()));
    let writes: [(&str, &(dyn Fn() + Sync)); 4] = [
        ("redkeep_exclusive", &ex_write),
        ("redkeep_shared", &sh_write),
        ("bare_redb", &redb_write),
        ("sqlite_one_connection", &shared_write),
    ];
    for threads in [1u64, 4, 16] {
        // Each system's writers are started once and write together on every iteration.
        let mut parts: Vec<Part<'_>> = writes
            .iter()
            .map(|&(name, write)| -> Part<'_> {
                Box::new(move |g| bench_crew(g, name, alike(threads, write), PER_THREAD))
            })
            .collect();
        let conns = &mut conns;
        parts.push(Box::new(move |g| {
            let writers = conns
                .iter_mut()
                .take(threads as usize)
                .map(|conn| Box::new(move || sqlite_insert(conn, &user(fresh()))) as Job<'_>)
                .collect();
            bench_crew(g, "sqlite_wal_full", writers, PER_THREAD);
        }));
        s.adding(Adds::Users, || {
            row(
                c,
                r,
                &format!("concurrent_inserts_{threads}_threads"),
                |g| {
                    g.sample_size(10);
                    g.throughput(criterion::Throughput::Elements(threads * PER_THREAD));
                },
                parts,
            )
        });
    }
    drop(shared);

    // The same from 4 processes, for the systems several processes can write: redkeep
    // Shared and SQLite (an Exclusive store and bare redb are one process's alone).
    let sh_dir = tmp.join("sh");
    let procs = |name: &'static str, target: &Path| -> Part<'static> {
        let spec = format!("{name} {}", target.display());
        Box::new(move |g| {
            let mut workers = Workers::start(4, &spec);
            g.bench_function(name, |b| b.iter(|| workers.run(PER_THREAD)));
        })
    };
    s.adding(Adds::Users, || {
        row(
            c,
            r,
            "concurrent_inserts_4_processes",
            |g| {
                g.sample_size(10);
                g.throughput(criterion::Throughput::Elements(4 * PER_THREAD));
            },
            vec![
                procs("redkeep_shared", &sh_dir),
                procs("sqlite_wal_full", &s.sqlite_path),
            ],
        )
    });
}

fn argon2_default(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rk = Redkeep::open(dir.path(), Options::default()).unwrap();
    let u = rk
        .users()
        .create(NewUser {
            email: "argon@example.com".into(),
            password: Some(PASSWORD.into()),
            ..NewUser::default()
        })
        .unwrap()
        .user;
    let mut g = c.benchmark_group("argon2_default_check_password");
    g.sample_size(10);
    g.bench_function("redkeep", |b| {
        b.iter(|| rk.users().check_password(u.id, PASSWORD).unwrap())
    });
    g.finish();
}

fn main() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        return worker(&spec);
    }
    let n = env_u64("REDKEEP_COMPARE_USERS", 100_000).max(ACCOUNTS + 100);
    let rounds = env_u64("REDKEEP_COMPARE_ROUNDS", 3);
    // Each row's warm-up and measurement; `--warm-up-time`, `--measurement-time` (and the
    // durable rows' sample counts aside) override them, as for a short smoke run.
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let tmp = tempfile::tempdir().unwrap();
    let systems = setup(tmp.path(), n);
    // Written before the rounds: the report reads only rounds below `rounds` whose results
    // are no older than `started` (a folder left by an earlier or a filtered run is not
    // this run's).
    let started = results::unix_now();
    let info = serde_json::json!({
        "users": n,
        "rounds": rounds,
        "started": started,
        "date": Timestamp(started).to_string(),
        "machine": results::machine(),
        "sqlite_cache_kib": results::SQLITE_CACHE_KIB,
    });
    let out = results::results_dir();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("compare.json"), info.to_string()).unwrap();
    for r in 0..rounds {
        // The previous round's durable and multi-process writes leave dirty pages behind:
        // flush them first, so their writeback does not land on whichever reads run first.
        rustix::fs::sync();
        round(&mut c, &systems, r, n, tmp.path());
    }
    argon2_default(&mut c);
    c.final_summary();
}
