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
#[path = "common/sessions.rs"]
mod sessions;
#[path = "common/users.rs"]
mod users;

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crew::{Job, alike, with_crew};
use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use redkeep::auth::roles::RoleSpec;
use redkeep::auth::sessions::LoginMeta;
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

fn redb_put_user(tx: &redb::WriteTransaction, u: &User) {
    let mut by_email = tx.open_table(BY_EMAIL).unwrap();
    assert!(by_email.get(u.email.as_str()).unwrap().is_none());
    by_email.insert(u.email.as_str(), u.id).unwrap();
    tx.open_table(BY_CREATED)
        .unwrap()
        .insert((u.created_at.0, u.id), ())
        .unwrap();
    tx.open_table(BY_ADMIN)
        .unwrap()
        .insert((u.is_admin, u.id), ())
        .unwrap();
    tx.open_table(USERS)
        .unwrap()
        .insert(u.id, enc(u).as_slice())
        .unwrap();
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
    let conn = rk.is_none().then(|| {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch("PRAGMA synchronous=FULL;").unwrap();
        stable_plans(&c);
        c.busy_timeout(Duration::from_secs(30)).unwrap();
        c
    });
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

fn open_sqlite(path: &Path, n: u64) -> (rusqlite::Connection, Vec<String>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    stable_plans(&conn);
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

/// The highest user id of each system, taken before a row that adds users.
struct UserMarks {
    ex: u64,
    sh: u64,
    redb: u64,
    sqlite: i64,
}

impl Systems {
    /// The highest user id of each system.
    fn user_marks(&self) -> UserMarks {
        let top = |rk: &Redkeep| {
            rk.store()
                .read(|tx| {
                    let mut top = 0;
                    tx.table::<User>()
                        .for_each_key(KeyRange::all(), Order::Desc, |id| {
                            top = id;
                            Ok(false)
                        })?;
                    Ok(top)
                })
                .unwrap()
        };
        let tx = self.redb.begin_read().unwrap();
        let redb = tx
            .open_table(USERS)
            .unwrap()
            .last()
            .unwrap()
            .map_or(0, |(id, _)| id.value());
        UserMarks {
            ex: top(&self.ex),
            sh: top(&self.sh),
            redb,
            sqlite: self
                .sqlite
                .query_row("SELECT coalesce(max(id), 0) FROM users", [], |r| r.get(0))
                .unwrap(),
        }
    }

    /// Runs `row` (a row that adds plain users), then takes those users out again, untimed
    /// ([`Systems::trim_users`]).
    fn adding_users<T>(&self, row: impl FnOnce() -> T) -> T {
        let marks = self.user_marks();
        let out = row();
        self.trim_users(&marks);
        out
    }

    /// Takes out the users added since `marks` (with their index entries), untimed, so
    /// every round reads the loaded number of users: the rows that add plain users add about
    /// 500,000 a round to redkeep (most of them the batch row), and more to SQLite. A mark and
    /// its trim must not span a row that writes rows pointing at users (logins, create user):
    /// SQLite gives the ids of deleted users out again.
    fn trim_users(&self, marks: &UserMarks) {
        let trim = |rk: &Redkeep, mark: u64| {
            // In transactions of at most 10,000 deletions.
            while rk
                .store()
                .write(|tx| {
                    let t = tx.table::<User>();
                    let mut ids = Vec::new();
                    t.for_each_key(KeyRange::all(), Order::Desc, |id| {
                        if id > mark && ids.len() < 10_000 {
                            ids.push(id);
                            return Ok(true);
                        }
                        Ok(false)
                    })?;
                    for id in &ids {
                        t.delete(id)?;
                    }
                    Ok(ids.len() == 10_000)
                })
                .unwrap()
            {}
        };
        trim(&self.ex, marks.ex);
        trim(&self.sh, marks.sh);
        // Bare redb, in transactions of at most 10,000 deletions too.
        loop {
            let tx = self.redb.begin_write().unwrap();
            let more = {
                let mut users = tx.open_table(USERS).unwrap();
                let added: Vec<User> = users
                    .range(marks.redb + 1..)
                    .unwrap()
                    .take(10_000)
                    .map(|e| dec(e.unwrap().1.value()))
                    .collect();
                let mut by_email = tx.open_table(BY_EMAIL).unwrap();
                let mut by_created = tx.open_table(BY_CREATED).unwrap();
                let mut by_admin = tx.open_table(BY_ADMIN).unwrap();
                for u in &added {
                    users.remove(u.id).unwrap();
                    by_email.remove(u.email.as_str()).unwrap();
                    by_created.remove((u.created_at.0, u.id)).unwrap();
                    by_admin.remove((u.is_admin, u.id)).unwrap();
                }
                added.len() == 10_000
            };
            tx.commit().unwrap();
            if !more {
                break;
            }
        }
        self.sqlite
            .execute("DELETE FROM users WHERE id > ?1", [marks.sqlite])
            .unwrap();
        let after = self.user_marks();
        assert!(
            after.ex <= marks.ex
                && after.sh <= marks.sh
                && after.redb <= marks.redb
                && after.sqlite <= marks.sqlite,
            "the users a row added were not all taken out"
        );
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

fn sqlite_by_email(c: &rusqlite::Connection, email: &str) -> Option<SqlUser> {
    c.prepare_cached(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE email = ?1"
    ))
    .unwrap()
    .query_row([email], |r| sql_user(r, 0))
    .ok()
}

fn sqlite_by_id(c: &rusqlite::Connection, id: u64) -> Option<SqlUser> {
    c.prepare_cached(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = ?1"
    ))
    .unwrap()
    .query_row([id as i64], |r| sql_user(r, 0))
    .ok()
}

fn sqlite_validate(
    c: &rusqlite::Connection,
    token: &str,
    now: i64,
) -> Option<(SqlUser, SqlSession)> {
    c.prepare_cached(
        "SELECT u.id, u.email, u.name, u.is_admin, u.is_active, u.created_at, u.updated_at,
                s.short_id, s.created_at, s.last_seen_at, s.expires_at, s.idle_timeout_secs,
                s.ip, s.user_agent
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.hash = ?1 AND min(s.expires_at, s.last_seen_at + s.idle_timeout_secs) > ?2
           AND u.is_active = 1",
    )
    .unwrap()
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

fn sqlite_has_permission(c: &rusqlite::Connection, user: u64, perm: &str) -> bool {
    let mut st = c
        .prepare_cached(
            "SELECT r.permissions FROM users u JOIN user_roles ur ON ur.user_id = u.id
             JOIN roles r ON r.id = ur.role_id
             WHERE u.id = ?1 AND u.is_active = 1 AND ur.active = 1",
        )
        .unwrap();
    let rows = st
        .query_map([user as i64], |r| r.get::<_, String>(0))
        .unwrap();
    for perms in rows {
        if perms.unwrap().split(',').any(|p| p == perm || p == "*") {
            return true;
        }
    }
    false
}

fn sqlite_page(c: &rusqlite::Connection, from: i64) -> Vec<SqlUser> {
    c.prepare_cached(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE created_at >= ?1 ORDER BY created_at, id LIMIT 50"
    ))
    .unwrap()
    .query_map([from], |r| sql_user(r, 0))
    .unwrap()
    .map(Result::unwrap)
    .collect()
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

/// Writes what [`paired`] measured for `op` in round `round` beside criterion's results,
/// for `bench_report`: the system the pairs held against redkeep Exclusive, the number of
/// pairs and the median of their ratios.
fn write_pairs(round: u64, op: &str, against: &str, pairs: &[(f64, f64)]) {
    let mut ratios: Vec<f64> = pairs.iter().map(|(a, b)| a / b).collect();
    ratios.sort_by(f64::total_cmp);
    let Some(median) = ratios.get(ratios.len() / 2) else {
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/criterion/r{round}_{op}"));
    std::fs::create_dir_all(&dir).unwrap();
    let info = serde_json::json!({
        "against": against,
        "pairs": pairs.len(),
        "median_ratio": median,
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
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA synchronous=FULL;").unwrap();
    stable_plans(&c);
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    c
}

fn group<'a>(c: &'a mut Criterion, round: u64, op: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(format!("r{round}_{op}"));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g
}

fn round(c: &mut Criterion, s: &Systems, r: u64, n: u64, tmp: &Path) {
    let pick = AtomicU64::new(r);
    let next = || pick.fetch_add(7919, Ordering::Relaxed) % n + 1;
    let next_account = || pick.fetch_add(7919, Ordering::Relaxed) % ACCOUNTS + 1;
    let now = NOW;

    let mut g = group(c, r, "user_by_email");
    g.bench_function("redkeep_exclusive", |b| {
        b.iter(|| black_box(s.ex.users().by_email(&email(next())).unwrap()))
    });
    g.bench_function("redkeep_shared", |b| {
        b.iter(|| black_box(s.sh.users().by_email(&email(next())).unwrap()))
    });
    g.bench_function("bare_redb", |b| {
        b.iter(|| black_box(bare::by_email(&s.redb, &email(next()))))
    });
    g.bench_function("sqlite_wal_full", |b| {
        b.iter(|| black_box(sqlite_by_email(&s.sqlite, &email(next()))))
    });
    g.finish();

    let mut g = group(c, r, "user_by_id");
    g.bench_function("redkeep_exclusive", |b| {
        b.iter(|| black_box(s.ex.users().get(next()).unwrap()))
    });
    g.bench_function("redkeep_shared", |b| {
        b.iter(|| black_box(s.sh.users().get(next()).unwrap()))
    });
    g.bench_function("bare_redb", |b| {
        b.iter(|| black_box(bare::by_id(&s.redb, next())))
    });
    g.bench_function("sqlite_wal_full", |b| {
        b.iter(|| black_box(sqlite_by_id(&s.sqlite, next())))
    });
    g.finish();

    let mut g = group(c, r, "session_validate");
    let tok = |ts: &[String]| ts[(next_account() - 1) as usize].clone();
    g.bench_function("redkeep_exclusive", |b| {
        b.iter(|| black_box(s.ex.sessions().validate(&tok(&s.ex_tokens)).unwrap()))
    });
    g.bench_function("redkeep_shared", |b| {
        b.iter(|| black_box(s.sh.sessions().validate(&tok(&s.sh_tokens)).unwrap()))
    });
    g.bench_function("bare_redb", |b| {
        b.iter(|| black_box(bare::validate(&s.redb, &tok(&s.plain_tokens), now).unwrap()))
    });
    g.bench_function("sqlite_wal_full", |b| {
        b.iter(|| black_box(sqlite_validate(&s.sqlite, &tok(&s.plain_tokens), now).unwrap()))
    });
    g.finish();

    let mut g = group(c, r, "permission_check");
    // redkeep's account users are ids 1..=ACCOUNTS as in the others (created first).
    g.bench_function("redkeep_exclusive", |b| {
        b.iter(|| {
            assert!(
                s.ex.roles()
                    .has_permission(next_account(), "docs.edit")
                    .unwrap()
            )
        })
    });
    g.bench_function("redkeep_shared", |b| {
        b.iter(|| {
            assert!(
                s.sh.roles()
                    .has_permission(next_account(), "docs.edit")
                    .unwrap()
            )
        })
    });
    g.bench_function("bare_redb", |b| {
        b.iter(|| assert!(bare::has_permission(&s.redb, next_account(), "docs.edit")))
    });
    g.bench_function("sqlite_wal_full", |b| {
        b.iter(|| {
            assert!(sqlite_has_permission(
                &s.sqlite,
                next_account(),
                "docs.edit"
            ))
        })
    });
    g.finish();

    let mut g = group(c, r, "page_of_50_by_created");
    let from = || 1_800_000_000 + (next() % n.saturating_sub(50).max(1)) as i64;
    let to = Timestamp(i64::MAX);
    g.bench_function("redkeep_exclusive", |b| {
        b.iter(|| {
            black_box(
                s.ex.users()
                    .created_between(Timestamp(from()), to, 50)
                    .unwrap(),
            )
        })
    });
    g.bench_function("redkeep_shared", |b| {
        b.iter(|| {
            black_box(
                s.sh.users()
                    .created_between(Timestamp(from()), to, 50)
                    .unwrap(),
            )
        })
    });
    g.bench_function("bare_redb", |b| {
        b.iter(|| black_box(bare::page(&s.redb, from())))
    });
    g.bench_function("sqlite_wal_full", |b| {
        b.iter(|| black_box(sqlite_page(&s.sqlite, from())))
    });
    g.finish();

    // Lookups by email from 4 threads at once, each with its own SQLite connection: whether
    // reads of one handle get in each other's way (an Exclusive handle's reads share the
    // kept snapshot, taken under one lock).
    const READERS: u64 = 4;
    const READS: u64 = 500;
    let mut readers: Vec<rusqlite::Connection> = (0..READERS)
        .map(|_| {
            let c = rusqlite::Connection::open(&s.sqlite_path).unwrap();
            stable_plans(&c);
            c
        })
        .collect();
    let mut g = group(c, r, "concurrent_reads_4_threads");
    g.throughput(criterion::Throughput::Elements(READERS * READS));
    // Each system's readers are started once and read together on every iteration.
    let (ex, sh, db) = (&s.ex, &s.sh, &s.redb);
    let reads: [(&str, &(dyn Fn() + Sync)); 3] = [
        ("redkeep_exclusive", &|| {
            drop(black_box(ex.users().by_email(&email(next())).unwrap()))
        }),
        ("redkeep_shared", &|| {
            drop(black_box(sh.users().by_email(&email(next())).unwrap()))
        }),
        ("bare_redb", &|| {
            drop(black_box(bare::by_email(db, &email(next()))))
        }),
    ];
    for (name, read) in reads {
        bench_crew(&mut g, name, alike(READERS, read), READS);
    }
    let sqlite_readers = readers
        .iter_mut()
        .map(|conn| {
            Box::new(move || drop(black_box(sqlite_by_email(conn, &email(next()))))) as Job<'_>
        })
        .collect();
    bench_crew(&mut g, "sqlite_wal_full", sqlite_readers, READS);
    g.finish();
    drop(readers);

    let fresh = || FRESH.fetch_add(1, Ordering::Relaxed);

    // Reads while the same file takes writes: one other thread makes a durable one-user
    // commit every millisecond while a lookup by email is timed (SQLite's writer has its
    // own connection).
    s.adding_users(|| {
        let mut g = group(c, r, "user_by_email_while_writing");
        g.bench_function("redkeep_exclusive", |b| {
            while_writing(&|| insert_user(ex, fresh()), || {
                b.iter(|| black_box(s.ex.users().by_email(&email(next())).unwrap()))
            })
        });
        g.bench_function("redkeep_shared", |b| {
            while_writing(&|| insert_user(sh, fresh()), || {
                b.iter(|| black_box(s.sh.users().by_email(&email(next())).unwrap()))
            })
        });
        g.bench_function("bare_redb", |b| {
            while_writing(&|| redb_insert(db, &user(fresh())), || {
                b.iter(|| black_box(bare::by_email(&s.redb, &email(next()))))
            })
        });
        let writer = std::sync::Mutex::new(sqlite_writer(&s.sqlite_path));
        g.bench_function("sqlite_wal_full", |b| {
            let write = || {
                let conn = writer.lock().unwrap();
                sqlite_insert(&conn, &user(fresh()));
            };
            while_writing(&write, || {
                b.iter(|| black_box(sqlite_by_email(&s.sqlite, &email(next()))))
            })
        });
        g.finish();
        drop(writer);
    });

    // Durable commits: Exclusive is timed in pairs with bare redb (see `paired`).
    let pairs = s.adding_users(|| {
        let mut g = group(c, r, "durable_insert");
        g.sample_size(20);
        let pairs = bench_paired(&mut g, &mut || insert_user(&s.ex, fresh()), &mut || {
            redb_insert(&s.redb, &user(fresh()))
        });
        g.bench_function("redkeep_shared", |b| b.iter(|| insert_user(&s.sh, fresh())));
        g.bench_function("bare_redb", |b| {
            b.iter(|| redb_insert(&s.redb, &user(fresh())))
        });
        g.bench_function("sqlite_wal_full", |b| {
            b.iter(|| sqlite_insert(&s.sqlite, &user(fresh())))
        });
        g.finish();
        pairs
    });
    write_pairs(r, "durable_insert", "bare_redb", &pairs);

    let mut g = group(c, r, "durable_login");
    g.sample_size(20);
    let login = |rk: &Redkeep| {
        rk.sessions()
            .login(&email(next_account()), PASSWORD, LoginMeta::default())
            .unwrap()
    };
    g.bench_function("redkeep_exclusive", |b| b.iter(|| black_box(login(&s.ex))));
    g.bench_function("redkeep_shared", |b| b.iter(|| black_box(login(&s.sh))));
    g.bench_function("bare_redb", |b| {
        b.iter(|| redb_login(&s.redb, &email(next_account()), fresh(), now))
    });
    g.bench_function("sqlite_wal_full", |b| {
        b.iter(|| sqlite_login(&s.sqlite, &email(next_account()), fresh(), now))
    });
    g.finish();

    let mut g = group(c, r, "durable_create_user");
    g.sample_size(20);
    let create = |rk: &Redkeep| {
        rk.users()
            .create(NewUser {
                email: format!("new{}@example.com", fresh()),
                password: Some(PASSWORD.into()),
                ..NewUser::default()
            })
            .unwrap()
    };
    let pairs = bench_paired(&mut g, &mut || drop(black_box(create(&s.ex))), &mut || {
        redb_create_user(&s.redb, fresh())
    });
    g.bench_function("redkeep_shared", |b| b.iter(|| black_box(create(&s.sh))));
    g.bench_function("bare_redb", |b| {
        b.iter(|| redb_create_user(&s.redb, fresh()))
    });
    g.bench_function("sqlite_wal_full", |b| {
        b.iter(|| sqlite_create_user(&s.sqlite, fresh()))
    });
    g.finish();
    write_pairs(r, "durable_create_user", "bare_redb", &pairs);

    s.adding_users(|| {
        let mut g = group(c, r, "batch_1000_inserts");
        g.sample_size(10);
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
        g.bench_function("redkeep_exclusive", |b| b.iter(|| rk_batch(&s.ex)));
        g.bench_function("redkeep_shared", |b| b.iter(|| rk_batch(&s.sh)));
        g.bench_function("bare_redb", |b| {
            b.iter(|| {
                let tx = s.redb.begin_write().unwrap();
                for _ in 0..1000 {
                    let mut u = user(fresh());
                    u.id = redb_next(&tx, "users");
                    redb_put_user(&tx, &u);
                }
                tx.commit().unwrap();
            })
        });
        g.bench_function("sqlite_wal_full", |b| {
            b.iter(|| {
                let tx = s.sqlite.unchecked_transaction().unwrap();
                for _ in 0..1000 {
                    sqlite_insert(&tx, &user(fresh()));
                }
                tx.commit().unwrap();
            })
        });
        g.finish();
    });

    // Workspace files against the raw floor of one crash-safe replacement.
    let floor = tmp.join("floor");
    std::fs::create_dir_all(floor.join("gallery")).unwrap();
    let doc = serde_json::to_vec_pretty(&serde_json::json!({
        "canvas": {"width": 800, "height": 600}, "notes": ["a note"], "piece_count": 0
    }))
    .unwrap();
    let piece = br#"{"title":"a piece","strokes":[[1,2],[3,4]]}"#;
    let mut g = group(c, r, "workspace_update");
    g.sample_size(20);
    let update = |rk: &Redkeep| {
        rk.workspaces()
            .update(1, |d| {
                d.notes = serde_json::json!(["a note"]);
                Ok(())
            })
            .unwrap()
    };
    // Exclusive is timed in pairs with the floor (see `paired`), for the ratio.
    let pairs = bench_paired(&mut g, &mut || update(&s.ex), &mut || {
        atomic_write(&floor, "workspace.json", &doc)
    });
    g.bench_function("redkeep_shared", |b| b.iter(|| update(&s.sh)));
    g.bench_function("raw_floor", |b| {
        b.iter(|| atomic_write(&floor, "workspace.json", &doc))
    });
    g.finish();
    write_pairs(r, "workspace_update", "raw_floor", &pairs);

    let mut g = group(c, r, "save_piece");
    g.sample_size(20);
    let k = AtomicU64::new(0);
    // A piece file and the count in workspace.json: two replacements.
    let floor_piece = || {
        let i = k.fetch_add(1, Ordering::Relaxed);
        atomic_write(&floor.join("gallery"), &format!("piece_{i:06}.json"), piece);
        atomic_write(&floor, "workspace.json", &doc);
    };
    let pairs = bench_paired(
        &mut g,
        &mut || {
            s.ex.workspaces().save_piece(2, piece).unwrap();
        },
        &mut || floor_piece(),
    );
    g.bench_function("redkeep_shared", |b| {
        b.iter(|| s.sh.workspaces().save_piece(2, piece).unwrap())
    });
    g.bench_function("raw_floor", |b| b.iter(floor_piece));
    g.finish();
    write_pairs(r, "save_piece", "raw_floor", &pairs);

    // Durable one-record commits from several threads at once.
    const PER_THREAD: u64 = 8;
    let mut conns: Vec<rusqlite::Connection> =
        (0..16).map(|_| sqlite_writer(&s.sqlite_path)).collect();
    let (ex, sh, db) = (&s.ex, &s.sh, &s.redb);
    for threads in [1u64, 4, 16] {
        s.adding_users(|| {
            let mut g = group(c, r, &format!("concurrent_inserts_{threads}_threads"));
            g.sample_size(10);
            g.throughput(criterion::Throughput::Elements(threads * PER_THREAD));
            // Each system's writers are started once and write together on every iteration.
            let writes: [(&str, &(dyn Fn() + Sync)); 3] = [
                ("redkeep_exclusive", &|| insert_user(ex, fresh())),
                ("redkeep_shared", &|| insert_user(sh, fresh())),
                ("bare_redb", &|| redb_insert(db, &user(fresh()))),
            ];
            for (name, write) in writes {
                bench_crew(&mut g, name, alike(threads, write), PER_THREAD);
            }
            let sqlite_writers = conns
                .iter_mut()
                .take(threads as usize)
                .map(|conn| Box::new(move || sqlite_insert(conn, &user(fresh()))) as Job<'_>)
                .collect();
            bench_crew(&mut g, "sqlite_wal_full", sqlite_writers, PER_THREAD);
            g.finish();
        });
    }

    // The same from 4 processes, for the systems several processes can write: redkeep
    // Shared and SQLite (an Exclusive store and bare redb are one process's alone).
    s.adding_users(|| {
        let mut g = group(c, r, "concurrent_inserts_4_processes");
        g.sample_size(10);
        g.throughput(criterion::Throughput::Elements(4 * PER_THREAD));
        let sh_dir = tmp.join("sh");
        for (name, target) in [
            ("redkeep_shared", sh_dir.as_path()),
            ("sqlite_wal_full", s.sqlite_path.as_path()),
        ] {
            let mut workers = Workers::start(4, &format!("{name} {}", target.display()));
            g.bench_function(name, |b| b.iter(|| workers.run(PER_THREAD)));
        }
        g.finish();
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
    let mut c = Criterion::default().configure_from_args();
    let tmp = tempfile::tempdir().unwrap();
    let systems = setup(tmp.path(), n);
    let info = serde_json::json!({
        "users": n,
        "rounds": rounds,
        "date": Timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        )
        .to_string(),
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
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
