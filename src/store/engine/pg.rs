//! The PostgreSQL engine: the same byte tables on a PostgreSQL server, so several instances of
//! an application share one store.
//!
//! Layout, in one schema (`redkeep` unless the store URL says `schema=NAME`):
//! - one table per redkeep table, `(k bytea primary key, v bytea not null)` (record tables
//!   add `j jsonb`, below); `bytea` compares
//!   like redb's byte keys, so a range is `k >= $1 and k < $2`. Names longer than PostgreSQL's
//!   63 bytes are shortened with a hash;
//! - `_objects (name, relname, kind)`: which PostgreSQL table or sequence holds each redkeep
//!   name;
//! - one `SEQUENCE` per id sequence (`seq:NAME`): ids may have gaps (a transaction that rolls
//!   back keeps the number it drew) but never repeat, and writers never clash on a counter row.
//!
//! Values stay in redkeep's record format (`bytea`, column `v`): the bytes every engine and
//! the export share, which keep fields this build does not know. A record table also has a
//! `j jsonb` column, rendered from `v` at every write with the catalog's secret fields shown
//! as `"<redacted>"`, and a view named after the record type (`SCHEMA.users (k, v)`, `v` the
//! jsonb), so `select v->>'email' from redkeep.users` works in `psql`. redkeep never reads
//! `j`; it is NULL where a value cannot be shown (a NUL character), for a record over 1 MiB
//! (or whose JSON text is: rendering and parsing it would hold the write's transaction), and
//! for every record written through a store URL with `readable=off`.
//!
//! Writes run at SERIALIZABLE and are retried on a serialization failure or a deadlock
//! (bounded, with jitter), so a write closure may run more than once. Reads run at
//! REPEATABLE READ READ ONLY: one snapshot per closure. Tables and sequences are created
//! outside the writing transaction (DDL under concurrent writers only adds clashes); an empty
//! table reads exactly as a missing one.
//!
//! Every process that opens the store holds a shared advisory lock for as long as it has it
//! open; `restore`, `reset`, `move` and `import` take it exclusively, so they refuse while an
//! application runs, and an open while they run is refused (not held back until they end).
//! Every write transaction takes the lock shared again for its own length (or, in the
//! process that has the store alone, checks that it still does): a process whose lock
//! session ended (a server restart, `idle_session_timeout`, a dropped connection) cannot
//! write into a store another process has alone. Such a process learns it at its next write
//! (its lock session also holds a lock of its own, which the write then can take) and takes
//! its hold again on a new session; if another process took the store alone meanwhile
//! (whole-store commands leave a mark in table `_taken`), it refuses everything from then
//! on. Migrations run under a second, exclusive advisory lock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Bound;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, IsolationLevel, NoTls, SimpleQueryMessage, Statement, Transaction};
use sha2::{Digest, Sha256};

use super::{KeyRange, Keys, Order, RawRead, RawWrite, Visit, VisitKey};
use crate::error::{Error, Result};
use crate::store::format::Shape;
use crate::store::tx::{META, readable_json, resolve_shape, secret_fields, table_of_meta_key};

/// How many times a write is tried before its clashes are reported as `Busy`.
const MAX_ATTEMPTS: u32 = 100;
/// From this attempt on, a write retries in this process's single retry lane.
const LANE_FROM: u32 = 3;
/// Connections kept open for reuse.
const POOL_IDLE: usize = 32;
/// Rows fetched per round trip in a scan: small first (pages, prefix lookups), then large.
const FIRST_BATCH: i32 = 64;
const NEXT_BATCH: i32 = 2048;
/// Keys `get_each` asks for in one statement.
const GET_EACH_CHUNK: usize = 1024;
/// PostgreSQL's longest identifier.
const MAX_IDENT: usize = 63;
/// The advisory lock class of a store (the second key is the schema's hash).
const LOCK_OPEN: i32 = 0x7264_6b01;
const LOCK_MIGRATE: i32 = 0x7264_6b02;

/// Whether `url` names a PostgreSQL store (a `postgres://` / `postgresql://` URL or a libpq
/// key/value string, whose keys are words of lowercase letters and `_`: a path holding `=`,
/// such as `/srv/copy=2024` or `./x=y`, is not one).
pub fn is_postgres_url(url: &str) -> bool {
    let url = url.trim();
    let word = |k: &str| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    // A key/value string names at least one key libpq (or redkeep's `schema`) knows: a path
    // such as `copy=2024` is a data dir; a string with one mistyped key among known ones is
    // still read as one, and its error names the key.
    url.starts_with("postgres://")
        || url.starts_with("postgresql://")
        || key_values(url).is_some_and(|pairs| {
            !pairs.is_empty()
                && pairs.iter().all(|p| word(&p.key))
                && pairs
                    .iter()
                    .any(|p| CONNECTION_KEYS.contains(&p.key.as_str()))
        })
}

/// The keys of a libpq key/value connection string, and redkeep's `schema`.
const CONNECTION_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
    "sslnegotiation",
    "require_auth",
    "schema",
];

/// The lock sessions through which this process has a store alone, by server pid and
/// session start: an open that finds its store held alone by one of them is refused as
/// the same store (`move` onto itself under another spelling of its URL), not as another
/// process's.
static ALONE_HERE: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());

/// How an [`Error::InUse`] from an open starts when this very process holds the store alone
/// (through another handle): to a move, its target is its source named another way.
pub(crate) const HELD_ALONE_HERE: &str = "this process already has it alone";

/// One `key=value` of a libpq key/value string: its key, its value (unquoted), and its text
/// as written.
struct Pair {
    key: String,
    value: String,
    raw: String,
}

/// The pairs of a libpq key/value string, read as libpq reads them: spaces may surround
/// `=`, and a value is either quoted (`'…'`, with `\'` and `\\` inside) or runs to the
/// next space. `None` when `s` is not such a string (a word without `=`, an open quote).
fn key_values(s: &str) -> Option<Vec<Pair>> {
    let mut pairs = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let key_end = rest.find(|c: char| c == '=' || c.is_whitespace())?;
        let key = &rest[..key_end];
        let after_key = rest[key_end..].trim_start();
        let after_eq = after_key.strip_prefix('=')?.trim_start();
        if key.is_empty() {
            return None;
        }
        let mut value = String::new();
        let consumed = if let Some(quoted) = after_eq.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?.1),
                    '\'' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            1 + end?
        } else {
            // Up to the next space not escaped by a backslash; a backslash at the very end
            // is dropped, as libpq drops it.
            let mut end = after_eq.len();
            let mut chars = after_eq.char_indices();
            while let Some((i, c)) = chars.next() {
                if c.is_whitespace() {
                    end = i;
                    break;
                }
                if c == '\\' {
                    if let Some((_, next)) = chars.next() {
                        value.push(next);
                    }
                } else {
                    value.push(c);
                }
            }
            end
        };
        let written = rest.len() - after_eq.len() + consumed;
        pairs.push(Pair {
            key: key.to_string(),
            value,
            raw: rest[..written].to_string(),
        });
        rest = rest[written..].trim_start();
    }
    Some(pairs)
}

/// The store URL split into the connection settings and redkeep's own settings.
struct Target {
    config: Config,
    schema: String,
    readable: bool,
    shown: String,
}

/// redkeep's own settings in a store URL, taken out before the rest goes to the client.
#[derive(Default)]
struct Settings {
    schema: Option<String>,
    readable: Option<String>,
    // The first of redkeep's settings given twice (which one should win is a guess).
    repeated: Option<&'static str>,
}

impl Settings {
    /// Takes `p` when it is one of redkeep's settings (`schema=`, `readable=`).
    fn take(&mut self, p: &str) -> bool {
        match p.split_once('=') {
            Some((key, value)) => self.take_pair(key, value),
            None => false,
        }
    }

    /// Takes `key` = `value` when it is one of redkeep's settings.
    fn take_pair(&mut self, key: &str, value: &str) -> bool {
        let (name, slot) = match key {
            "schema" => ("schema", &mut self.schema),
            "readable" => ("readable", &mut self.readable),
            _ => return false,
        };
        if slot.is_some() && self.repeated.is_none() {
            self.repeated = Some(name);
        }
        *slot = Some(value.to_string());
        true
    }
}

fn parse_target(url: &str) -> Result<Target> {
    let url = url.trim();
    let mut settings = Settings::default();
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The query starts at the first `?` after the user part, which the client ends at
        // the first `@`: a password may hold `?`.
        let user_end = url.find('@').map_or(0, |at| at + 1);
        let query_at = url[user_end..].find('?').map(|i| user_end + i);
        match query_at.map(|q| (&url[..q], &url[q + 1..])) {
            Some((base, query)) => {
                if query
                    .split('&')
                    .any(|p| p.split_once('=').is_some_and(|(k, _)| k == "passfile"))
                {
                    return Err(no_passfile());
                }
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|p| !p.is_empty() && !settings.take(p))
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_string(),
        }
    } else {
        let pairs = key_values(url).ok_or_else(|| {
            Error::invalid(
                "store",
                format!(
                    "`{}` is not a PostgreSQL connection string (each part must read \
                         key=value, a value with spaces in single quotes); write \
                         postgres://USER@HOST/DB or host=/run/postgresql dbname=DB",
                    super::redact(url)
                ),
            )
        })?;
        if pairs.iter().any(|p| p.key == "passfile") {
            return Err(no_passfile());
        }
        pairs
            .into_iter()
            .filter(|p| !settings.take_pair(&p.key, &p.value))
            .map(|p| p.raw)
            .collect::<Vec<_>>()
            .join(" ")
    };
    if let Some(name) = settings.repeated {
        return Err(Error::invalid(
            "store",
            format!(
                "`{name}=` is given twice in the store URL `{}`; give it once",
                super::redact(url)
            ),
        ));
    }
    let readable = match settings.readable.as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => {
            return Err(Error::invalid(
                "store",
                format!(
                    "readable={other} is not a setting; write readable=on (the default: each \
                     record also as jsonb) or readable=off"
                ),
            ));
        }
    };
    let schema = settings.schema.unwrap_or_else(|| "redkeep".to_string());
    if schema.is_empty()
        || schema.len() > MAX_IDENT
        || !schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        || schema.as_bytes()[0].is_ascii_digit()
        || schema.starts_with("pg_")
    {
        return Err(Error::invalid(
            "store",
            format!(
                "schema `{schema}` is not a usable schema name; use lowercase letters, digits \
                 and `_` (not starting with a digit or `pg_`), at most 63 bytes"
            ),
        ));
    }
    let mut config = Config::from_str(&rest).map_err(|e| {
        Error::invalid(
            "store",
            format!(
                "`{}` is not a PostgreSQL connection string ({}); write \
                 postgres://USER@HOST/DB or host=/run/postgresql dbname=DB",
                super::redact(url),
                with_causes(&e)
            ),
        )
    })?;
    if config.get_application_name().is_none() {
        config.application_name(&super::connection_name());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok(Target {
        config,
        shown: format!("{} (schema {schema})", super::redact(&rest)),
        schema,
        readable,
    })
}

/// The error for `passfile` in a store URL, which the client does not read.
fn no_passfile() -> Error {
    Error::invalid(
        "store",
        "passfile is not read: redkeep's PostgreSQL client reads no password file (nor \
         PGPASSWORD); give the password in the store URL, kept off the command line through \
         REDKEEP_STORE_URL (and REDKEEP_MOVE_TO for the target of a move)",
    )
}

fn pg(context: &'static str, e: postgres::Error) -> Error {
    Error::storage(context, e)
}

/// Whether `e` is a clash with a concurrent transaction that a retry resolves.
fn is_clash(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Whether a redkeep error carries such a clash.
fn error_is_clash(e: &Error) -> bool {
    match e {
        Error::Storage { source, .. } => source
            .downcast_ref::<postgres::Error>()
            .is_some_and(is_clash),
        _ => false,
    }
}

/// A quoted identifier.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The PostgreSQL name of the redkeep table or sequence `name`: itself when it fits,
/// otherwise its start and a hash.
fn relname(name: &str) -> String {
    if name.len() <= MAX_IDENT {
        return name.to_string();
    }
    let mut cut = 40;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = Sha256::digest(name.as_bytes());
    let tail: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}~{tail}", &name[..cut])
}

fn lock_key(schema: &str) -> i32 {
    let digest = Sha256::digest(schema.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The DDL of redkeep table `name` held in `q`: a record table also has the `j jsonb`
/// column and a view named after the record type, `SCHEMA.TYPE (k, v)` with `v` the jsonb,
/// so `select v->>'email' from redkeep.users` works in `psql`.
fn table_ddl(schema: &str, name: &str, q: &str) -> String {
    let Some(record) = name.strip_prefix("r:") else {
        return format!("create table if not exists {q} (k bytea primary key, v bytea not null)");
    };
    let mut ddl =
        format!("create table if not exists {q} (k bytea primary key, v bytea not null, j jsonb)");
    // Made only where no relation has the name: a view or table made by hand (or by another
    // application) is never replaced.
    if let Some(view) = view_name(record) {
        ddl += &format!(
            "; do $view$ begin
                 if to_regclass('{}.{}') is null then
                     create view {}.{} as select k, j as v from {q};
                 end if;
             end $view$",
            quote(schema),
            quote(&view),
            quote(schema),
            quote(&view)
        );
    }
    ddl
}

/// The name of the view over record table `record`; none where it could clash with one of
/// redkeep's own tables, or where it is not a plain lowercase name (it is written into the
/// DDL that makes the view only where none is).
fn view_name(record: &str) -> Option<String> {
    let rel = relname(record);
    let plain = rel
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (plain && !rel.starts_with('_') && rel != META).then_some(rel)
}

/// Gives record tables made before records were also kept as jsonb their `j` column (empty
/// until each record is next written) and their view.
fn add_readable_columns(c: &mut Client, schema: &str) -> Result<()> {
    let q_schema = quote(schema);
    let missing = c
        .query(
            &format!(
                "select o.name, o.relname from {q_schema}._objects o
                 where o.kind = 't' and o.name like 'r:%' and not exists (
                     select 1 from pg_attribute a
                     join pg_class t on t.oid = a.attrelid
                     join pg_namespace n on n.oid = t.relnamespace
                     where n.nspname = $1 and t.relname = o.relname
                       and a.attname = 'j' and not a.attisdropped)"
            ),
            &[&schema],
        )
        .map_err(|e| pg("looking for record tables without jsonb", e))?;
    for row in &missing {
        let name: &str = column(row, 0)?;
        let rel: &str = column(row, 1)?;
        let q = format!("{q_schema}.{}", quote(rel));
        let ddl = format!(
            "alter table {q} add column if not exists j jsonb; {}",
            table_ddl(schema, name, &q)
        );
        c.batch_execute(&ddl)
            .map_err(|e| pg("adding the jsonb column", e))?;
    }
    Ok(())
}

/// The tables and sequences the schema's catalog names (redkeep name → quoted,
/// schema-qualified object), read at once as a store opens: a store's tables are never
/// dropped, so each lookup later finds them without a trip to the server (one connection
/// less per command, and a trip less per table it uses); one made after the open is looked
/// up when first used.
fn objects(
    c: &mut Client,
    schema: &str,
) -> Result<(HashMap<String, String>, HashMap<String, String>)> {
    let q_schema = quote(schema);
    let rows = c
        .query(
            &format!("select name, relname, kind from {q_schema}._objects"),
            &[],
        )
        .map_err(|e| pg("reading the schema's catalog", e))?;
    let (mut tables, mut sequences) = (HashMap::new(), HashMap::new());
    for row in &rows {
        let name: String = column(row, 0)?;
        let rel: &str = column(row, 1)?;
        let kind: i8 = column(row, 2)?;
        let q = format!("{q_schema}.{}", quote(rel));
        match kind as u8 {
            b't' => tables.insert(name, q),
            b's' => sequences.insert(name, q),
            _ => None,
        };
    }
    Ok((tables, sequences))
}

/// Whether the schema (which has redkeep's catalog) holds a store: its `meta` table has an
/// entry. A schema left with empty tables (an `init` or `import` that failed after making
/// them) holds none.
fn holds_store(c: &mut Client, schema: &str) -> Result<bool> {
    let q_schema = quote(schema);
    let meta = c
        .query_opt(
            &format!("select relname from {q_schema}._objects where name = $1"),
            &[&META],
        )
        .map_err(|e| pg("looking for the store's meta table", e))?;
    let Some(row) = meta else {
        return Ok(false);
    };
    let rel: &str = column(&row, 0)?;
    let row = c
        .query_one(
            &format!("select exists (select 1 from {q_schema}.{})", quote(rel)),
            &[],
        )
        .map_err(|e| pg("reading the store's meta table", e))?;
    column(&row, 0)
}

/// A pooled connection with its prepared statements.
struct Conn {
    client: Client,
    stmts: HashMap<String, Statement>,
}

/// A store on a PostgreSQL server.
pub(crate) struct PgDb {
    config: Config,
    schema: String,
    shown: String,
    pool: Mutex<Vec<Conn>>,
    // redkeep table name → quoted, schema-qualified PostgreSQL table, for tables that exist.
    tables: RwLock<HashMap<String, String>>,
    sequences: RwLock<HashMap<String, String>>,
    // The session holding the store's shared advisory lock (and, briefly, exclusive ones).
    lock: Mutex<Option<Client>>,
    // While this process has the store alone: the server pid of the lock session holding it
    // exclusively, which every write checks (it cannot take the lock shared then).
    alone_pid: Mutex<Option<i32>>,
    // The key of an advisory lock only the lock session holds (exclusively): a write that
    // can take it shared knows that session ended, and with it the process's hold.
    token: i64,
    // The mark the last whole-store command left when this process took its hold, and how
    // many times the hold was taken again: a hold taken again over a changed mark means a
    // whole-store command ran while this process had none.
    generation: Mutex<Option<String>>,
    holds: std::sync::atomic::AtomicU64,
    // Set once another process took the store over while this one had no hold: every
    // operation is refused from then on.
    taken_over: std::sync::atomic::AtomicBool,
    // Opened only to be read: every write is refused.
    read_only: bool,
    // Writes that clashed several times retry one at a time: they then compete only with
    // first attempts, so none of them starves.
    retry_lane: Mutex<()>,
    // Records are also written as jsonb (column `j`) for operators.
    readable: bool,
    // Shapes by id (an id is a hash of the names: an entry never changes), and each record
    // table's secret fields from the catalog, for rendering records as jsonb.
    shapes: RwLock<HashMap<u64, Shape>>,
    secrets: RwLock<HashMap<String, Arc<[String]>>>,
    // Tests only: the statement of a transaction at which the server ends the session.
    faults: Option<Arc<super::faults::FaultPlan>>,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // Closing a connection blocks on its own runtime, which panics on a thread that runs
        // async code (a store dropped inside a tokio task): close them on a thread of their
        // own.
        let pool = std::mem::take(self.pool.get_mut().unwrap_or_else(|e| e.into_inner()));
        let lock = self
            .lock
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let closing = std::thread::spawn(move || {
            drop(pool);
            drop(lock);
        });
        let _ = closing.join();
    }
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb").field("at", &self.shown).finish()
    }
}

impl PgDb {
    /// Connects to the server `url` names and makes sure the schema exists.
    pub(crate) fn open(url: &str, create: bool, read_only: bool) -> Result<PgDb> {
        let target = parse_target(url)?;
        let mut lock = connect(&target.config, &target.shown)?;
        let q_schema = quote(&target.schema);
        let exists = lock
            .query_opt(
                "select 1 from pg_namespace where nspname = $1",
                &[&target.schema],
            )
            .map_err(|e| pg("looking for the schema", e))?
            .is_some();
        // The catalog table is made with the schema: without it, the schema holds no store
        // (an empty schema, `public`, one of another application). One that is there needs no
        // DDL, so a role that may only read can open the store.
        let catalog = exists
            && lock
                .query_opt(
                    "select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                     where n.nspname = $1 and c.relname = '_objects'",
                    &[&target.schema],
                )
                .map_err(|e| pg("looking for the schema's catalog", e))?
                .is_some();
        // A schema of something else (`public`, another application's) is never written
        // into: its tables and views are not redkeep's to add to or replace.
        if create && exists && !catalog {
            let taken = lock
                .query_opt(
                    "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
                     where n.nspname = $1 limit 1",
                    &[&target.schema],
                )
                .map_err(|e| pg("looking at the schema's tables", e))?;
            if let Some(row) = taken {
                let name: &str = column(&row, 0)?;
                return Err(Error::denied(format!(
                    "schema {} holds tables that are not a redkeep store (such as {name}); \
                     nothing was created there: give schema=NAME in the store URL for a schema \
                     of redkeep's own",
                    target.schema
                )));
            }
        }
        let usable = create || (catalog && holds_store(&mut lock, &target.schema)?);
        if !usable {
            return Err(Error::NotInitialized {
                path: target.shown.clone().into(),
            });
        }
        // Two processes creating the schema at once may clash on the catalog: try again.
        let setup = format!(
            "create schema if not exists {q_schema};
             create table if not exists {q_schema}._objects (
                 name text primary key,
                 relname text not null unique,
                 kind \"char\" not null);
             create table if not exists {q_schema}._taken (mark text not null)"
        );
        let mut tries = 0;
        let mut made = catalog;
        while !made {
            match lock.batch_execute(&setup) {
                Ok(()) => made = true,
                Err(e) if tries < 5 && is_catalog_race(&e) => tries += 1,
                Err(e) => return Err(pg("creating the redkeep schema", e)),
            }
        }
        let token = fresh_token();
        let shared = hold(&mut lock, &target.schema, token)?;
        if !shared && held_alone_here(&mut lock, &target.schema)? {
            return Err(Error::InUse {
                path: target.shown.clone().into(),
                holder: format!(
                    "{HELD_ALONE_HERE}, for a command it runs (a move, a restore, a reset): a \
                     move onto the store being moved, named another way; name another schema \
                     or database as the target"
                ),
            });
        }
        if !shared {
            return Err(Error::InUse {
                path: target.shown.clone().into(),
                holder: "another process has it alone (a move, a restore or a reset is running); \
                         try again once it has finished"
                    .into(),
            });
        }
        // A read-only handle never takes its hold again (it never writes), so it needs no
        // mark, nor the right to read it.
        let generation = if read_only {
            None
        } else {
            generation(&mut lock, &target.schema)?
        };
        if !read_only {
            add_readable_columns(&mut lock, &target.schema)?;
        }
        let (tables, sequences) = objects(&mut lock, &target.schema)?;
        Ok(PgDb {
            config: target.config,
            schema: target.schema,
            shown: target.shown,
            pool: Mutex::default(),
            tables: RwLock::new(tables),
            sequences: RwLock::new(sequences),
            lock: Mutex::new(Some(lock)),
            alone_pid: Mutex::new(None),
            token,
            generation: Mutex::new(generation),
            holds: std::sync::atomic::AtomicU64::new(0),
            taken_over: std::sync::atomic::AtomicBool::new(false),
            read_only,
            retry_lane: Mutex::new(()),
            readable: target.readable,
            shapes: RwLock::default(),
            secrets: RwLock::default(),
            faults: None,
        })
    }

    /// Tests only: has the server end the session at the statement of a transaction that
    /// `plan` (of kind [`FaultKind::Statement`](super::faults::FaultKind::Statement)) picks.
    pub(crate) fn with_faults(mut self, plan: Option<Arc<super::faults::FaultPlan>>) -> PgDb {
        self.faults = plan;
        self
    }

    /// Whether the store was opened only to be read.
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The schema the store is in.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// The server and schema, without the password.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Forgets the cached secret fields of the table whose catalog entry `meta` key `key` is.
    fn forget_catalog(&self, key: &[u8]) {
        if let Some(table) = table_of_meta_key(key) {
            self.secrets
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(table);
        }
    }

    fn take(&self) -> Result<Conn> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => self.fresh(),
        }
    }

    /// A new connection, not one from the pool.
    fn fresh(&self) -> Result<Conn> {
        Ok(Conn {
            client: connect(&self.config, &self.shown)?,
            stmts: HashMap::new(),
        })
    }

    fn give_back(&self, conn: Conn) {
        if conn.client.is_closed() {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_IDLE {
            pool.push(conn);
        }
    }

    /// Runs `f` on a connection outside any transaction of the caller's.
    fn outside<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let mut conn = self.take()?;
        let out = f(&mut conn.client);
        self.give_back(conn);
        out
    }

    fn object(&self, name: &str, kind: u8) -> Result<Option<String>> {
        let known = if kind == b't' {
            &self.tables
        } else {
            &self.sequences
        };
        if let Some(q) = known.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(Some(q.clone()));
        }
        let kind = kind as i8;
        let found = self.outside(|c| {
            c.query_opt(
                &format!(
                    "select relname from {}._objects where name = $1 and kind = $2",
                    quote(&self.schema)
                ),
                &[&name, &kind],
            )
            .map_err(|e| pg("looking up a table", e))
        })?;
        let Some(row) = found else {
            return Ok(None);
        };
        let rel: &str = column(&row, 0)?;
        let q = format!("{}.{}", quote(&self.schema), quote(rel));
        known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), q.clone());
        Ok(Some(q))
    }

    /// The table holding `name`, if it exists.
    fn table(&self, name: &str) -> Result<Option<String>> {
        self.object(name, b't')
    }

    /// The table holding `name`, created when missing.
    fn ensure_table(&self, name: &str) -> Result<String> {
        if let Some(q) = self.table(name)? {
            return Ok(q);
        }
        // Bare names other than `meta` get a prefix, so no table takes a record view's name.
        let rel = if name.contains(':') || name == META {
            relname(name)
        } else {
            relname(&format!("t:{name}"))
        };
        let q = format!("{}.{}", quote(&self.schema), quote(&rel));
        let ddl = table_ddl(&self.schema, name, &q);
        self.create(name, &rel, b't', &ddl)?;
        Ok(self.table(name)?.unwrap_or(q))
    }

    /// The sequence behind `name`, created when missing.
    fn ensure_sequence(&self, name: &str) -> Result<String> {
        if let Some(q) = self.object(name, b's')? {
            return Ok(q);
        }
        let rel = relname(&format!("seq:{name}"));
        let q = format!("{}.{}", quote(&self.schema), quote(&rel));
        let ddl = format!("create sequence if not exists {q} as bigint minvalue 1");
        self.create(name, &rel, b's', &ddl)?;
        Ok(self.object(name, b's')?.unwrap_or(q))
    }

    fn create(&self, name: &str, rel: &str, kind: u8, ddl: &str) -> Result<()> {
        let register = format!(
            "insert into {}._objects (name, relname, kind) values ($1, $2, $3)
             on conflict do nothing",
            quote(&self.schema)
        );
        let kind = kind as i8;
        self.outside(|c| {
            let mut tries = 0;
            loop {
                let done = c
                    .batch_execute(ddl)
                    .and_then(|()| c.execute(&register, &[&name, &rel, &kind]).map(|_| ()));
                match done {
                    Ok(()) => return Ok(()),
                    Err(e) if tries < 5 && is_catalog_race(&e) => tries += 1,
                    Err(e) => return Err(pg("creating a table", e)),
                }
            }
        })
    }

    /// Runs `f` in one REPEATABLE READ READ ONLY transaction (one snapshot).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&PgTx<'_>) -> Result<T>) -> Result<T> {
        self.refuse_taken_over()?;
        let mut conn = self.take()?;
        let mut renewed = false;
        let out = loop {
            let Conn { client, stmts } = &mut conn;
            match client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
            {
                Ok(txn) => {
                    let tx = PgTx::new(self, txn, stmts);
                    let value = f(&tx);
                    let ended = tx.end(false);
                    break value.and_then(|v| ended.map(|()| v));
                }
                // A pooled connection the server ended (a restart): nothing of `f` ran, so
                // it begins again, once, on a new one.
                Err(e) if !renewed && is_lost_connection(&e) => {}
                Err(e) => break Err(pg("beginning a read transaction", e)),
            }
            renewed = true;
            conn = self.fresh()?;
        };
        self.give_back(conn);
        out
    }

    /// Runs `f` in a SERIALIZABLE transaction, again (after a short, random pause) when it
    /// clashes with a concurrent one; commits when it returns `Ok`. A write that finds this
    /// process's hold on the store gone takes it again first ([`PgDb::hold_again`]).
    pub(crate) fn write<T>(
        &self,
        durable: bool,
        mut f: impl FnMut(&PgTx<'_>) -> Result<T>,
    ) -> Result<T> {
        if self.read_only {
            return Err(Error::ReadOnly {
                what: format!(
                    "{} was opened only to be read, so nothing can be changed",
                    self.shown
                ),
            });
        }
        let mut attempt = 0;
        // Whether a connection from the pool was found gone (then the next one is new).
        let mut renewed = false;
        let mut renew_now = false;
        let mut held_again = 0;
        loop {
            self.refuse_taken_over()?;
            attempt += 1;
            let _lane = (attempt >= LANE_FROM)
                .then(|| self.retry_lane.lock().unwrap_or_else(|e| e.into_inner()));
            let holds = self.holds.load(std::sync::atomic::Ordering::SeqCst);
            let mut conn = if std::mem::take(&mut renew_now) {
                self.fresh()?
            } else {
                self.take()?
            };
            // The outcome, whether it was lost to a clash with a concurrent transaction, and
            // whether it found the connection or the process's hold gone before `f` ran.
            let (outcome, clashed, gone) = {
                let Conn { client, stmts } = &mut conn;
                match client
                    .build_transaction()
                    .isolation_level(IsolationLevel::Serializable)
                    .start()
                {
                    Err(e) if !renewed && is_lost_connection(&e) => (
                        Err(pg("beginning a write transaction", e)),
                        false,
                        Gone::Connection,
                    ),
                    Err(e) => (Err(pg("beginning a write transaction", e)), false, Gone::No),
                    Ok(mut txn) => {
                        let setup = txn.simple_query(&self.write_setup(durable));
                        let tx = PgTx::new(self, txn, stmts);
                        let hold = setup
                            .map_err(|e| tx.failed("beginning a write transaction", e))
                            .and_then(|replies| self.still_held(&replies));
                        let gone = if matches!(hold, Ok(Hold::Lost)) {
                            Gone::Hold
                        } else {
                            Gone::No
                        };
                        let value = hold.and_then(|h| match h {
                            Hold::Held => f(&tx),
                            Hold::Lost => Err(lost_hold()),
                        });
                        let outcome = match value {
                            Ok(_) if tx.clashed.get() => Err(tx.clash_error()),
                            Ok(v) => match tx.failure.take() {
                                None => tx.end(true).map(|()| v),
                                Some(why) => {
                                    let _ = tx.end(false);
                                    Err(swallowed(&why))
                                }
                            },
                            Err(e) => {
                                let _ = tx.end(false);
                                Err(e)
                            }
                        };
                        let clashed =
                            tx.clashed.get() || outcome.as_ref().err().is_some_and(error_is_clash);
                        (outcome, clashed, gone)
                    }
                }
            };
            self.give_back(conn);
            match (outcome, gone) {
                // Nothing of `f` ran: the same attempt again, on a new connection or with the
                // hold taken again.
                (Err(_), Gone::Connection) => {
                    renewed = true;
                    renew_now = true;
                    attempt -= 1;
                    continue;
                }
                (Err(_), Gone::Hold) if held_again < 2 => {
                    held_again += 1;
                    attempt -= 1;
                    self.hold_again(holds)?;
                    continue;
                }
                (Err(_), _) if clashed && attempt < MAX_ATTEMPTS => pause(attempt),
                (Err(e), _) if clashed => {
                    return Err(Error::Busy {
                        what: format!(
                            "the write clashed with concurrent writers {MAX_ATTEMPTS} times \
                             in a row ({e})"
                        ),
                    });
                }
                (other, _) => return other,
            }
        }
    }

    /// What begins every write transaction, in one round trip: the store's lock taken shared
    /// until the transaction ends (refused while another process has the store alone), and
    /// whether this process's lock session still holds the store (its token lock cannot be
    /// taken); or, while this process has it alone, whether its lock session still holds it
    /// so; then, unless `durable`, the commit without waiting for the disk (a crash may lose
    /// it).
    fn write_setup(&self, durable: bool) -> String {
        let key = lock_key(&self.schema);
        let alone = *self.alone_pid.lock().unwrap_or_else(|e| e.into_inner());
        let held = match alone {
            None => format!(
                "select pg_try_advisory_xact_lock_shared({LOCK_OPEN}, {key}),
                 not pg_try_advisory_xact_lock_shared({})",
                self.token
            ),
            Some(pid) => format!(
                "select exists (select 1 from pg_locks where locktype = 'advisory'
                 and classid = ({LOCK_OPEN})::int::oid and objid = ({key})::int::oid
                 and objsubid = 2 and mode = 'ExclusiveLock' and granted and pid = {pid}), true"
            ),
        };
        if durable {
            held
        } else {
            format!("set local synchronous_commit = off; {held}")
        }
    }

    /// What the replies to [`PgDb::write_setup`] say of the store's lock: held, or this
    /// process's hold gone (to be taken again); `InUse` when another process has the store
    /// alone or this one lost its hold while it had the store alone.
    fn still_held(&self, replies: &[SimpleQueryMessage]) -> Result<Hold> {
        let (mut shared, mut session) = (false, false);
        for m in replies {
            if let SimpleQueryMessage::Row(row) = m {
                shared = row.get(0) == Some("t");
                session = row.get(1) == Some("t");
            }
        }
        let alone = self
            .alone_pid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !alone && !session {
            return Ok(Hold::Lost);
        }
        if shared {
            return Ok(Hold::Held);
        }
        let holder = if alone {
            "this process had it alone, but its session to the server ended (a server \
             restart, idle_session_timeout or a dropped connection) and with it that hold; \
             nothing was written: run the command again"
        } else {
            "another process has it alone (a move, a restore, a reset or an import is \
             running); nothing was written"
        };
        Err(Error::InUse {
            path: self.shown.clone().into(),
            holder: holder.into(),
        })
    }

    /// Refuses every operation once another process took the store over while this one
    /// had no hold on it.
    fn refuse_taken_over(&self) -> Result<()> {
        if !self.taken_over.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        Err(Error::InUse {
            path: self.shown.clone().into(),
            holder: "another process took the store over (a move, a restore, a reset or an \
                     import) while this process's session holding it was cut (a server \
                     restart, a failover, idle_session_timeout or a dropped connection), so \
                     what this process has read may be stale and nothing more is written: \
                     restart this application once that command has finished (after a \
                     move, with the new store's URL)"
                .into(),
        })
    }

    /// Takes this process's hold on the store again on a new lock session, after the one
    /// holding it ended, unless another thread did since `holds` was read. When another
    /// process has the store alone now, or had it since this process took its hold (the mark
    /// whole-store commands leave changed), the store was taken over: this operation and
    /// every later one are refused.
    fn hold_again(&self, holds: u64) -> Result<()> {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.holds.load(std::sync::atomic::Ordering::SeqCst) != holds {
            return Ok(());
        }
        self.refuse_taken_over()?;
        let mut lock = connect(&self.config, &self.shown)?;
        let shared = hold(&mut lock, &self.schema, self.token)?;
        let unchanged = shared && {
            let now = generation(&mut lock, &self.schema)?;
            *self.generation.lock().unwrap_or_else(|e| e.into_inner()) == now
        };
        if !unchanged {
            self.taken_over
                .store(true, std::sync::atomic::Ordering::SeqCst);
            // Holding nothing: the process that took the store must not wait for this one.
            *guard = None;
            drop(lock);
            return self.refuse_taken_over();
        }
        *guard = Some(lock);
        self.holds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Takes the hold again when the lock session is gone (called before using it).
    fn ensure_held(&self) -> Result<()> {
        self.refuse_taken_over()?;
        let holds = self.holds.load(std::sync::atomic::Ordering::SeqCst);
        let alive = self
            .lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .is_some_and(|c| c.is_valid(Duration::from_secs(10)).is_ok());
        if alive {
            return Ok(());
        }
        self.hold_again(holds)
    }

    /// Takes the store's lock exclusively for as long as `f` runs: refused while another
    /// process has the store open.
    pub(crate) fn alone<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.ensure_held()?;
        let key = lock_key(&self.schema);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let lock = guard.as_mut().ok_or_else(closed)?;
        let row = lock
            .query_one(
                "select pg_try_advisory_lock($1, $2), pg_backend_pid(),
                     pg_postmaster_start_time()::text",
                &[&LOCK_OPEN, &key],
            )
            .map_err(|e| pg("taking the store's lock", e))?;
        let got: bool = column(&row, 0)?;
        let pid: i32 = column(&row, 1)?;
        let server: String = column(&row, 2)?;
        if !got {
            let holders = holders_on(lock, &self.schema).unwrap_or_default();
            return Err(Error::InUse {
                path: self.shown.clone().into(),
                holder: in_use_by(&holders, what),
            });
        }
        // A process whose hold on the store was cut meanwhile learns, when it takes it
        // again, that a whole-store command ran.
        if !self.read_only {
            let mark = fresh_token().to_string();
            let marked = lock
                .batch_execute(&format!(
                    "create table if not exists {q}._taken (mark text not null);
                     delete from {q}._taken; insert into {q}._taken values ('{mark}')",
                    q = quote(&self.schema)
                ))
                .map_err(|e| pg("marking the store as taken alone", e));
            if let Err(e) = marked {
                let _ = lock.execute("select pg_advisory_unlock($1, $2)", &[&LOCK_OPEN, &key]);
                return Err(e);
            }
            *self.generation.lock().unwrap_or_else(|e| e.into_inner()) = Some(mark);
        }
        drop(guard);
        let before = self
            .alone_pid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(pid);
        // The lock went with its session if that ended while `f` ran: other processes may
        // then have opened the store and written what `f` did not see.
        let here = (pid, server);
        ALONE_HERE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(here.clone());
        let out = f().and_then(|v| self.still_alone(what).map(|()| v));
        ALONE_HERE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|h| *h != here);
        *self.alone_pid.lock().unwrap_or_else(|e| e.into_inner()) = before;
        if let Some(lock) = self.lock.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = lock.execute("select pg_advisory_unlock($1, $2)", &[&LOCK_OPEN, &key]);
        }
        out
    }

    /// Whether this process still has the store alone (inside [`PgDb::alone`]): its lock
    /// session still holds the exclusive lock, asked on another connection (that session
    /// may be gone). `InUse` when it does not; `what` says what the hold was for.
    pub(crate) fn still_alone(&self, what: &str) -> Result<()> {
        let Some(pid) = *self.alone_pid.lock().unwrap_or_else(|e| e.into_inner()) else {
            return Ok(());
        };
        let key = lock_key(&self.schema);
        let held = self.outside(|c| {
            let row = c
                .query_one(
                    "select exists (select 1 from pg_locks where locktype = 'advisory'
                     and classid = $1::int::oid and objid = $2::int::oid and objsubid = 2
                     and mode = 'ExclusiveLock' and granted and pid = $3)",
                    &[&LOCK_OPEN, &key, &pid],
                )
                .map_err(|e| pg("reading the store's locks", e))?;
            column::<bool>(&row, 0)
        })?;
        if held {
            return Ok(());
        }
        Err(Error::InUse {
            path: self.shown.clone().into(),
            holder: format!(
                "this process had it alone to {what}, but its session holding that lock ended \
                 part way (a server restart, idle_session_timeout, a proxy's idle cut or a \
                 dropped connection), so other processes may have written to it meanwhile: a \
                 copy it made (a move, a backup) may miss their writes, so run it again; a change \
                 it made to the store (an import, a restore, a reset) is made, mixed with theirs, \
                 so run `redkeep check` before relying on it"
            ),
        })
    }

    /// The other connections that have the store open now (every one but this process's
    /// lock session), oldest first.
    ///
    /// # Errors
    /// `Storage` when the server cannot be asked.
    #[cfg(feature = "admin")]
    pub(crate) fn holders(&self) -> Result<Vec<super::Holder>> {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            // Asked on the lock session, which the query leaves out.
            Some(lock) => holders_on(lock, &self.schema),
            None => {
                drop(guard);
                self.outside(|c| holders_on(c, &self.schema))
            }
        }
    }

    /// Runs `f` holding the store's migration lock (one migration at a time, across every
    /// instance).
    pub(crate) fn migrating<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.ensure_held()?;
        let key = lock_key(&self.schema);
        self.lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .ok_or_else(closed)?
            .execute("select pg_advisory_lock($1, $2)", &[&LOCK_MIGRATE, &key])
            .map_err(|e| pg("taking the migration lock", e))?;
        let out = f();
        if let Some(lock) = self.lock.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = lock.execute("select pg_advisory_unlock($1, $2)", &[&LOCK_MIGRATE, &key]);
        }
        out
    }

    /// Checks every table's primary-key index with `amcheck` when the extension is installed;
    /// returns whether they are sound (`true` without `amcheck`: nothing more can be checked).
    pub(crate) fn check_indexes(&self) -> Result<bool> {
        self.outside(|c| {
            let installed = c
                .query_opt("select 1 from pg_extension where extname = 'amcheck'", &[])
                .map_err(|e| pg("looking for amcheck", e))?
                .is_some();
            if !installed {
                return Ok(true);
            }
            let rows = c
                .query(
                    "select i.indexrelid::regclass::text from pg_index i
                     join pg_class t on t.oid = i.indrelid
                     join pg_namespace n on n.oid = t.relnamespace
                     where n.nspname = $1",
                    &[&self.schema],
                )
                .map_err(|e| pg("listing indexes", e))?;
            for row in rows {
                let index: &str = column(&row, 0)?;
                if let Err(e) =
                    c.execute("select bt_index_check($1::text::regclass, true)", &[&index])
                {
                    if e.code() == Some(&SqlState::INDEX_CORRUPTED) {
                        return Ok(false);
                    }
                    return Err(pg("checking an index", e));
                }
            }
            Ok(true)
        })
    }

    /// Bytes the schema's tables take on the server.
    pub(crate) fn size(&self) -> Result<u64> {
        self.outside(|c| {
            let row = c
                .query_one(
                    "select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                     from pg_class c join pg_namespace n on n.oid = c.relnamespace
                     where n.nspname = $1 and c.relkind in ('r', 'S')",
                    &[&self.schema],
                )
                .map_err(|e| pg("measuring the store", e))?;
            let n: i64 = column(&row, 0)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
}

/// Whether the session holding the store of `schema` alone, in the database `lock` is
/// connected to, is one of this process's ([`ALONE_HERE`]).
fn held_alone_here(lock: &mut Client, schema: &str) -> Result<bool> {
    let here = ALONE_HERE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if here.is_empty() {
        return Ok(false);
    }
    let rows = lock
        .query(
            "select pid, pg_postmaster_start_time()::text from pg_locks
             where locktype = 'advisory' and classid = $1::int::oid and objid = $2::int::oid
               and objsubid = 2 and mode = 'ExclusiveLock' and granted
               and database = (select oid from pg_database where datname = current_database())",
            &[&LOCK_OPEN, &lock_key(schema)],
        )
        .map_err(|e| pg("reading the store's locks", e))?;
    for row in &rows {
        let holder = (column::<i32>(row, 0)?, column::<String>(row, 1)?);
        if here.contains(&holder) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The connections other than `lock`'s own that hold the lock of the store in `schema` (a
/// write transaction holds it too, for as long as it lasts), oldest first.
fn holders_on(lock: &mut Client, schema: &str) -> Result<Vec<super::Holder>> {
    let rows = lock
        .query(
            "select l.pid,
                    case when a.client_port = -1 then 'local socket'
                         when a.client_addr is not null
                         then 'from ' || host(a.client_addr) || ' port ' || a.client_port end,
                    a.application_name,
                    to_char(a.backend_start at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             from (select distinct pid from pg_locks where locktype = 'advisory'
                   and classid = $1::int::oid and objid = $2::int::oid and objsubid = 2
                   and pid <> pg_backend_pid()
                   and database = (select oid from pg_database where datname = current_database())) l
             left join pg_stat_activity a on a.pid = l.pid
             order by a.backend_start nulls last, l.pid",
            &[&LOCK_OPEN, &lock_key(schema)],
        )
        .map_err(|e| pg("reading the store's locks", e))?;
    rows.iter()
        .map(|r| {
            Ok(super::Holder {
                backend_pid: column(r, 0)?,
                client: column(r, 1)?,
                application_name: column(r, 2)?,
                since: column(r, 3)?,
            })
        })
        .collect()
}

/// The most holders a refusal names; `redkeep status` lists them all.
const HOLDERS_NAMED: usize = 5;

/// Why the store cannot be had alone to do `what`: the connections that have it open, by
/// name, and what to do.
fn in_use_by(holders: &[super::Holder], what: &str) -> String {
    let n = holders.len();
    let who = match n {
        // Gone between the refused lock and the query: the count is not known.
        0 => "other connections have".to_string(),
        1 => "1 other connection has".to_string(),
        n => format!("{n} other connections have"),
    };
    // Joined by commas: what follows the first `;` is advice, which the CLI replaces.
    let mut named: Vec<String> = holders
        .iter()
        .take(HOLDERS_NAMED)
        .map(|h| h.to_string())
        .collect();
    if n > HOLDERS_NAMED {
        named.push(format!(
            "and {} more (`redkeep status` lists them all)",
            n - HOLDERS_NAMED
        ));
    }
    let list = if named.is_empty() {
        String::new()
    } else {
        format!(": {}", named.join(", "))
    };
    format!(
        "{who} the store open, so it cannot {what}{list}; stop the applications using it first \
         (a connection an application left behind ends with `select \
         pg_terminate_backend(PID)`, PID its backend pid)"
    )
}

/// What a write found of this process's hold on the store.
enum Hold {
    Held,
    Lost,
}

/// What a write attempt found gone before its code ran.
enum Gone {
    No,
    Connection,
    Hold,
}

fn lost_hold() -> Error {
    Error::Storage {
        context: "beginning a write transaction",
        source: "this process's session holding the store ended".into(),
    }
}

/// A random key for the advisory lock only one lock session holds.
fn fresh_token() -> i64 {
    let mut b = [0u8; 8];
    // Without randomness, the time: unique enough among the processes sharing a store.
    if getrandom::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    i64::from_le_bytes(b)
}

/// Takes, on the lock session `lock`, the store's lock shared and the session's own token
/// lock; returns whether the store's lock was granted. Not waited for: a process that has
/// the store alone (a move, a restore, a reset) would otherwise only hold this back, and
/// its writes would land after the move's copy, in the store being left. The locks live as
/// long as this session: the server must not end it for being idle (`idle_session_timeout`,
/// PostgreSQL 14 on; an older server has no such setting, and the error it gives for it
/// changes nothing).
fn hold(lock: &mut Client, schema: &str, token: i64) -> Result<bool> {
    let row = lock
        .query_one(
            "select pg_try_advisory_lock_shared($1, $2)",
            &[&LOCK_OPEN, &lock_key(schema)],
        )
        .map_err(|e| pg("taking the store's shared lock", e))?;
    let shared: bool = column(&row, 0)?;
    if shared {
        lock.execute("select pg_advisory_lock($1)", &[&token])
            .map_err(|e| pg("taking the store's shared lock", e))?;
        let _ = lock.batch_execute("set idle_session_timeout = 0");
    }
    Ok(shared)
}

/// The mark the last whole-store command left in the schema (none before the first).
fn generation(lock: &mut Client, schema: &str) -> Result<Option<String>> {
    let q = quote(schema);
    let row = lock
        .query_one(
            "select to_regclass($1) is not null",
            &[&format!("{q}._taken")],
        )
        .map_err(|e| pg("reading the store's mark", e))?;
    if !column::<bool>(&row, 0)? {
        return Ok(None);
    }
    let row = lock
        .query_opt(&format!("select mark from {q}._taken limit 1"), &[])
        .map_err(|e| pg("reading the store's mark", e))?;
    row.map(|r| column(&r, 0)).transpose()
}

/// Whether `e` says the connection is gone (the server ended it: a restart, a failover,
/// `pg_terminate_backend`, or the network), not that a statement failed.
pub(crate) fn is_lost_connection(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_none_or(|c| {
            let c = c.code();
            c.starts_with("08") || c.starts_with("57P")
        })
}

/// What `cause` says, when it is the client's report that the connection to the server was
/// lost (the server stopped or restarted, an administrator ended the session, the network
/// failed) rather than a statement's failure: the client's text and the OS error under it.
pub(crate) fn lost_connection(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    let e = cause.downcast_ref::<postgres::Error>()?;
    let below_is_io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    let ended = e.code().is_some_and(|c| {
        let c = c.code();
        c.starts_with("08") || c.starts_with("57P")
    });
    (e.is_closed() || below_is_io || ended).then(|| with_causes(e))
}

/// Column `i` of `row`: a column of another type (a table altered by hand) is an error, not
/// a panic.
fn column<'r, T: postgres::types::FromSql<'r>>(row: &'r postgres::Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(|e| pg("reading a row", e))
}

/// The error of a write whose closure returned `Ok` after a statement of it failed (`why`):
/// the server had aborted the transaction, so it is rolled back, not reported as written.
fn swallowed(why: &str) -> Error {
    Error::Storage {
        context: "writing",
        source: format!(
            "a statement of this write failed ({why}), which ended its transaction, yet the \
             write's code went on and returned success; it was rolled back and nothing was \
             written: that code must pass such errors on"
        )
        .into(),
    }
}

fn closed() -> Error {
    Error::Invariant {
        what: "the store's lock session was used after the store closed".into(),
    }
}

fn is_catalog_race(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::DUPLICATE_SCHEMA
            || *c == SqlState::DUPLICATE_OBJECT
    ) || e
        .as_db_error()
        .is_some_and(|d| d.message().contains("tuple concurrently updated"))
}

/// The context of an error connecting to the server.
pub(crate) const CONNECTING: &str = "connecting to PostgreSQL";

fn connect(config: &Config, shown: &str) -> Result<Client> {
    config.connect(NoTls).map_err(|e| {
        // No server answered (no socket there, nothing listening, no reply in time), as
        // opposed to one that answered and refused (a password, a database).
        let unanswered = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        let ask = if unanswered {
            "; is a PostgreSQL server running there? Start it, or correct the host and port \
             in the store URL"
        } else {
            ""
        };
        Error::Storage {
            context: CONNECTING,
            source: format!(
                "cannot connect to {shown} at {}: {}{ask}",
                addresses(config),
                with_causes(&e)
            )
            .into(),
        }
    })
}

/// Where a connection with `config` is tried, as the client tries it: for each host, the
/// socket file in its folder or `host:port` (a `hostaddr` in place of the host it goes
/// with). Holds no password.
fn addresses(config: &Config) -> String {
    use postgres::config::Host;
    let ports = config.get_ports();
    let (hosts, addrs) = (config.get_hosts(), config.get_hostaddrs());
    let tried: Vec<String> = (0..hosts.len().max(addrs.len()))
        .map(|i| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match (addrs.get(i), hosts.get(i)) {
                (Some(std::net::IpAddr::V6(a)), _) => format!("[{a}]:{port}"),
                (Some(a), _) => format!("{a}:{port}"),
                (None, Some(Host::Unix(dir))) => {
                    format!("socket {}", dir.join(format!(".s.PGSQL.{port}")).display())
                }
                (None, Some(Host::Tcp(h))) if h.contains(':') => format!("[{h}]:{port}"),
                (None, Some(Host::Tcp(h))) => format!("{h}:{port}"),
                (None, None) => String::new(),
            }
        })
        .collect();
    if tried.is_empty() {
        "no host (the store URL names none)".into()
    } else {
        tried.join(", then ")
    }
}

/// An error with the causes under it: the client's own text is only `db error` or `error
/// connecting to server`, and what to fix (a wrong password, a database that does not
/// exist, no socket at that path) is the server's message or the OS error below it.
fn with_causes(e: &postgres::Error) -> String {
    crate::error::with_causes(e)
}

/// Sleeps a random while that grows with `attempt`, so clashing writers spread out.
fn pause(attempt: u32) {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let cap = 1u64 << attempt.min(6);
    let micros = 200 * cap + u64::from(u16::from_le_bytes(b)) % (500 * cap);
    std::thread::sleep(Duration::from_micros(micros));
}

/// One transaction on the server.
pub(crate) struct PgTx<'a> {
    db: &'a PgDb,
    txn: RefCell<Option<Transaction<'a>>>,
    stmts: RefCell<&'a mut HashMap<String, Statement>>,
    // A statement failed with a clash: the transaction is lost and the whole write is retried
    // (even if the closure swallowed the error).
    clashed: Cell<bool>,
    // The first error the server reported: it aborted the transaction, whose COMMIT would
    // then only roll it back, so a closure that went on regardless does not succeed.
    failure: RefCell<Option<String>>,
    // The tables scans are running over, innermost last: written to, they refuse, as redb's
    // do, so that code behaves alike on both engines.
    scans: RefCell<Vec<String>>,
}

/// A scan of a table under way in a [`PgTx`]; it ends when this drops.
struct Scanning<'t> {
    scans: &'t RefCell<Vec<String>>,
}

impl Drop for Scanning<'_> {
    fn drop(&mut self) {
        self.scans.borrow_mut().pop();
    }
}

impl<'a> PgTx<'a> {
    fn new(
        db: &'a PgDb,
        txn: Transaction<'a>,
        stmts: &'a mut HashMap<String, Statement>,
    ) -> PgTx<'a> {
        PgTx {
            db,
            txn: RefCell::new(Some(txn)),
            stmts: RefCell::new(stmts),
            clashed: Cell::new(false),
            failure: RefCell::new(None),
            scans: RefCell::new(Vec::new()),
        }
    }

    fn scanning(&self, table: &str) -> Scanning<'_> {
        self.scans.borrow_mut().push(table.to_string());
        Scanning { scans: &self.scans }
    }

    /// Refuses a write to a table a scan of this transaction is running over (as redb does).
    fn refuse_scanned(&self, table: &str) -> Result<()> {
        if self.in_use(table) {
            return Err(Error::Invariant {
                what: format!("table {table} was written while a scan of it was running"),
            });
        }
        Ok(())
    }

    fn clash_error(&self) -> Error {
        Error::Storage {
            context: "writing",
            source: "the transaction clashed with a concurrent one".into(),
        }
    }

    fn end(&self, commit: bool) -> Result<()> {
        let Some(txn) = self.txn.borrow_mut().take() else {
            return Ok(());
        };
        if commit {
            txn.commit().map_err(|e| pg(super::COMMIT_FAILED, e))
        } else {
            txn.rollback().map_err(|e| pg("ending a transaction", e))
        }
    }

    /// Runs `f` with the transaction and the prepared statement for `sql`.
    fn with<T>(
        &self,
        context: &'static str,
        sql: &str,
        f: impl FnOnce(&mut Transaction<'a>, &Statement) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut guard = self.txn.borrow_mut();
        let txn = guard.as_mut().ok_or_else(|| Error::Invariant {
            what: "a PostgreSQL transaction was used after it ended".into(),
        })?;
        let stmt = {
            let mut stmts = self.stmts.borrow_mut();
            match stmts.get(sql) {
                Some(s) => s.clone(),
                None => {
                    let s = txn.prepare(sql).map_err(|e| self.failed(context, e))?;
                    stmts.insert(sql.to_string(), s.clone());
                    s
                }
            }
        };
        if let Some(plan) = &self.db.faults
            && plan.statement_fails()
        {
            // The server ends the session (as a stop or a restart does): the statement
            // then meets the connection closed.
            let _ = txn.batch_execute("select pg_terminate_backend(pg_backend_pid())");
        }
        f(txn, &stmt).map_err(|e| self.failed(context, e))
    }

    fn failed(&self, context: &'static str, e: postgres::Error) -> Error {
        if is_clash(&e) {
            self.clashed.set(true);
        }
        let from_server = e.code().is_some();
        let e = pg(context, e);
        if from_server {
            self.failure
                .borrow_mut()
                .get_or_insert_with(|| crate::error::with_causes(&e));
        }
        e
    }

    /// A record of table `record` as the jsonb text of its `j` column, or `None` (NULL) when
    /// the store was opened with `readable=off`, the table has no catalog entry (its secret
    /// fields are unknown) or the value cannot be shown.
    fn readable(&self, record: &str, value: &[u8]) -> Result<Option<String>> {
        if !self.db.readable {
            return Ok(None);
        }
        let known = self
            .db
            .secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(record)
            .cloned();
        let secret = match known {
            Some(secret) => secret,
            None => {
                let Some(secret) = secret_fields(self, record)? else {
                    return Ok(None);
                };
                let secret: Arc<[String]> = secret.into();
                self.db
                    .secrets
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(record.to_string(), secret.clone());
                secret
            }
        };
        let resolve = |id: u64| {
            if let Some(shape) = self
                .db
                .shapes
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
            {
                return Ok(shape.clone());
            }
            let shape = resolve_shape(self, id)?;
            self.db
                .shapes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, shape.clone());
            Ok(shape)
        };
        Ok(readable_json(value, &resolve, &secret))
    }
}

fn range_sql(table: &str, range: &KeyRange, order: Order) -> (String, Vec<Vec<u8>>) {
    let mut conds = Vec::new();
    let mut params = Vec::new();
    for (bound, included, excluded) in [(&range.start, ">=", ">"), (&range.end, "<=", "<")] {
        let (key, op) = match bound {
            Bound::Included(k) => (k, included),
            Bound::Excluded(k) => (k, excluded),
            Bound::Unbounded => continue,
        };
        params.push(key.clone());
        conds.push(format!("k {op} ${}", params.len()));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" where {}", conds.join(" and "))
    };
    let dir = match order {
        Order::Asc => "asc",
        Order::Desc => "desc",
    };
    (
        format!("select k, v from {table}{filter} order by k {dir}"),
        params,
    )
}

impl RawRead for PgTx<'_> {
    fn get(&self, table: &str, key: &[u8], f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        super::note_call("get");
        let Some(t) = self.db.table(table)? else {
            return Ok(false);
        };
        let row = self.with(
            "reading",
            &format!("select v from {t} where k = $1"),
            |txn, s| txn.query_opt(s, &[&key]),
        )?;
        match row {
            Some(row) => {
                f(column(&row, 0)?)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn lookups_per_trip(&self) -> usize {
        GET_EACH_CHUNK / 2
    }

    fn get_each(&self, table: &str, keys: Keys<'_>, f: VisitKey<'_>) -> Result<()> {
        super::note_call("get_each");
        let Some(t) = self.db.table(table)? else {
            return super::each_absent(keys, f);
        };
        // A statement per chunk of keys, not per key: a page of records is one round trip.
        let sql = format!("select k, v from {t} where k = any($1)");
        let mut chunk: Vec<&[u8]> = Vec::new();
        let mut keys = keys.peekable();
        while keys.peek().is_some() {
            chunk.clear();
            chunk.extend(keys.by_ref().take(GET_EACH_CHUNK));
            let rows = self.with("reading", &sql, |txn, s| txn.query(s, &[&chunk]))?;
            let mut found: HashMap<&[u8], &[u8]> = HashMap::with_capacity(rows.len());
            for row in &rows {
                found.insert(column(row, 0)?, column(row, 1)?);
            }
            for key in &chunk {
                if !f(key, found.get(key).copied())? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn range(&self, table: &str, range: &KeyRange, order: Order, f: Visit<'_>) -> Result<()> {
        super::note_call("range");
        if range.is_empty() {
            return Ok(());
        }
        let Some(t) = self.db.table(table)? else {
            return Ok(());
        };
        let (sql, params) = range_sql(&t, range, order);
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let portal = self.with("scanning", &sql, |txn, s| txn.bind(s, &refs))?;
        let _scan = self.scanning(table);
        let mut batch = FIRST_BATCH;
        loop {
            // The transaction is free while `f` runs: it may read other tables.
            let rows = {
                let mut guard = self.txn.borrow_mut();
                let txn = guard.as_mut().ok_or_else(|| Error::Invariant {
                    what: "a PostgreSQL transaction was used after it ended".into(),
                })?;
                txn.query_portal(&portal, batch)
                    .map_err(|e| self.failed("scanning", e))?
            };
            for row in &rows {
                if !f(column(row, 0)?, column(row, 1)?)? {
                    return Ok(());
                }
            }
            if rows.len() < usize::try_from(batch).unwrap_or(usize::MAX) {
                return Ok(());
            }
            batch = NEXT_BATCH;
        }
    }

    fn len(&self, table: &str) -> Result<u64> {
        super::note_call("len");
        let Some(t) = self.db.table(table)? else {
            return Ok(0);
        };
        let row = self.with(
            "counting",
            &format!("select count(*) from {t}"),
            |txn, s| txn.query_one(s, &[]),
        )?;
        let n: i64 = column(&row, 0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn table_names(&self) -> Result<Vec<String>> {
        let rows = self.with(
            "listing tables",
            &format!(
                "select name from {}._objects where kind = 't' order by name collate \"C\"",
                quote(&self.db.schema)
            ),
            |txn, s| txn.query(s, &[]),
        )?;
        rows.iter().map(|r| column(r, 0)).collect()
    }

    fn native_sequences(&self) -> Result<Option<Vec<(String, u64)>>> {
        let rows = self.with(
            "listing sequences",
            &format!(
                "select name, relname from {}._objects where kind = 's'
                 order by name collate \"C\"",
                quote(&self.db.schema)
            ),
            |txn, s| txn.query(s, &[]),
        )?;
        let mut out = Vec::new();
        for row in rows {
            let name: String = column(&row, 0)?;
            let rel: &str = column(&row, 1)?;
            let q = format!("{}.{}", quote(&self.db.schema), quote(rel));
            let last = self.sequence_value(&q)?;
            out.push((name, last));
        }
        Ok(Some(out))
    }
}

impl PgTx<'_> {
    /// Inserts `key` → `value` into `table`, replacing the entry there when `replace` (else
    /// leaving it); a record table's `j` is written with `v`. Returns the rows written.
    fn insert(&self, table: &str, key: &[u8], value: &[u8], replace: bool) -> Result<u64> {
        let t = self.db.ensure_table(table)?;
        let j = match table.strip_prefix("r:") {
            Some(record) => Some(self.readable(record, value)?),
            None => None,
        };
        let (columns, set) = match j {
            Some(_) => (
                "(k, v, j) values ($1, $2, $3::text::jsonb)",
                "v = excluded.v, j = excluded.j",
            ),
            None => ("(k, v) values ($1, $2)", "v = excluded.v"),
        };
        let sql = if replace {
            format!("insert into {t} {columns} on conflict (k) do update set {set}")
        } else {
            format!("insert into {t} {columns} on conflict do nothing")
        };
        self.with("writing", &sql, |txn, s| match &j {
            Some(j) => txn.execute(s, &[&key, &value, j]),
            None => txn.execute(s, &[&key, &value]),
        })
    }

    fn sequence_value(&self, q: &str) -> Result<u64> {
        let row = self.with(
            "reading a sequence",
            &format!("select last_value, is_called from {q}"),
            |txn, s| txn.query_one(s, &[]),
        )?;
        let (last, called): (i64, bool) = (column(&row, 0)?, column(&row, 1)?);
        Ok(if called {
            u64::try_from(last).unwrap_or(0)
        } else {
            0
        })
    }
}

impl RawWrite for PgTx<'_> {
    fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        super::note_call("put");
        self.refuse_scanned(table)?;
        if table == META {
            self.db.forget_catalog(key);
        }
        self.insert(table, key, value, true)?;
        Ok(())
    }

    fn put_all(&self, table: &str, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        super::note_call("put_all");
        self.refuse_scanned(table)?;
        // One statement cannot write a key twice (`on conflict do update` refuses it): keys
        // said to be distinct that are not go one by one, the last value kept, as by `put`.
        let distinct = || {
            let mut seen = std::collections::HashSet::with_capacity(entries.len());
            entries.iter().all(|(k, _)| seen.insert(k.as_slice()))
        };
        if table == META || entries.len() < 2 || !distinct() {
            for (key, value) in entries {
                self.put(table, key, value)?;
            }
            return Ok(());
        }
        // One statement for the lot: a row at a time, a copy of a large store is round trips.
        let t = self.db.ensure_table(table)?;
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| k.as_slice()).collect();
        let values: Vec<&[u8]> = entries.iter().map(|(_, v)| v.as_slice()).collect();
        match table.strip_prefix("r:") {
            Some(record) => {
                let j = entries
                    .iter()
                    .map(|(_, v)| self.readable(record, v))
                    .collect::<Result<Vec<Option<String>>>>()?;
                let sql = format!(
                    "insert into {t} (k, v, j) \
                     select k, v, j::jsonb from unnest($1::bytea[], $2::bytea[], $3::text[]) \
                     as e(k, v, j) on conflict (k) do update set v = excluded.v, j = excluded.j"
                );
                self.with("writing", &sql, |txn, s| {
                    txn.execute(s, &[&keys, &values, &j])
                })?;
            }
            None => {
                let sql = format!(
                    "insert into {t} (k, v) select k, v from unnest($1::bytea[], $2::bytea[]) \
                     as e(k, v) on conflict (k) do update set v = excluded.v"
                );
                self.with("writing", &sql, |txn, s| txn.execute(s, &[&keys, &values]))?;
            }
        }
        Ok(())
    }

    fn insert_new(&self, table: &str, key: &[u8], value: &[u8]) -> Result<bool> {
        super::note_call("insert_new");
        self.refuse_scanned(table)?;
        Ok(self.insert(table, key, value, false)? == 1)
    }

    fn remove(&self, table: &str, key: &[u8]) -> Result<bool> {
        super::note_call("remove");
        self.refuse_scanned(table)?;
        let Some(t) = self.db.table(table)? else {
            return Ok(false);
        };
        let n = self.with(
            "deleting",
            &format!("delete from {t} where k = $1"),
            |txn, s| txn.execute(s, &[&key]),
        )?;
        Ok(n == 1)
    }

    fn delete_table(&self, table: &str) -> Result<()> {
        self.refuse_scanned(table)?;
        // The table stays (dropping it would lock out every concurrent reader); an empty table
        // reads as no table.
        if let Some(t) = self.db.table(table)? {
            self.with("deleting a table", &format!("delete from {t}"), |txn, s| {
                txn.execute(s, &[])
            })?;
        }
        Ok(())
    }

    fn in_use(&self, table: &str) -> bool {
        self.scans.borrow().iter().any(|t| t == table)
    }

    fn native_next(&self, name: &str) -> Result<Option<u64>> {
        let q = self.db.ensure_sequence(name)?;
        let row = self
            .with(
                "drawing an id",
                "select nextval($1::text::regclass)",
                |txn, s| txn.query_one(s, &[&q]),
            )
            .map_err(|e| {
                // Past the bigint's largest value: the same refusal as on redb.
                let at_limit = std::error::Error::source(&e)
                    .and_then(|c| c.downcast_ref::<postgres::Error>())
                    .and_then(postgres::Error::code)
                    == Some(&postgres::error::SqlState::SEQUENCE_GENERATOR_LIMIT_EXCEEDED);
                if at_limit {
                    Error::denied(format!(
                        "the id sequence of {name} is exhausted (it reached the largest id, \
                         {}); no more records can be numbered",
                        crate::store::MAX_ID
                    ))
                } else {
                    e
                }
            })?;
        let n: i64 = column(&row, 0)?;
        u64::try_from(n).map(Some).map_err(|_| Error::Invariant {
            what: format!("the id sequence of {name} gave {n}"),
        })
    }

    fn native_raise(&self, name: &str, value: u64) -> Result<bool> {
        let q = self.db.ensure_sequence(name)?;
        if value == 0 {
            return Ok(true);
        }
        let value = i64::try_from(value).map_err(|_| {
            Error::invalid(
                "sequence",
                format!("{value} is beyond PostgreSQL's largest id (2^63 - 1)"),
            )
        })?;
        // Read and raised in one statement, never lowered: a sequence is outside the
        // transaction, so a read and a raise in two steps could set back an id drawn between
        // them, which would then be handed out again.
        self.with(
            "raising a sequence",
            &format!(
                "select setval($1::text::regclass, $2, true) from {q}
                 where not is_called or last_value < $2"
            ),
            |txn, s| txn.execute(s, &[&q, &value]),
        )?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_recognised_and_their_schema_taken_out() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("host=/tmp dbname=x"));
        assert!(!is_postgres_url("/var/lib/redkeep"));
        assert!(!is_postgres_url("./data"));
        // A path holding `=` is a data dir.
        assert!(!is_postgres_url("/srv/copy=2024"));
        assert!(!is_postgres_url("./x=y"));
        assert!(!is_postgres_url("backups/a=b c=d"));
        // A word holding `=` whose key libpq does not know is a folder name.
        assert!(!is_postgres_url("copy=2024"));
        assert!(!is_postgres_url("a=b c=d"));
        assert!(is_postgres_url("dbname=app"));
        assert!(
            is_postgres_url("hots=x dbname=y"),
            "a typo among known keys"
        );
        assert!(is_postgres_url("host=/x application_name=a=b"));
        let t = parse_target("postgres://u:secret@h/db?schema=app_one&sslmode=disable").unwrap();
        assert_eq!(t.schema, "app_one");
        assert!(!t.shown.contains("secret"), "{}", t.shown);
        let t = parse_target("host=/tmp dbname=x schema=s2 password=pw").unwrap();
        assert_eq!(t.schema, "s2");
        assert!(!t.shown.contains("pw "), "{}", t.shown);
        assert!(parse_target("postgres://h/db?schema=Bad-Name").is_err());
        assert!(t.readable);
        let t = parse_target("postgres://h/db?readable=off&schema=s3").unwrap();
        assert!(!t.readable);
        assert_eq!(t.schema, "s3");
        assert!(!parse_target("host=/tmp readable=off").unwrap().readable);
        let Err(e) = parse_target("postgres://h/db?readable=maybe") else {
            panic!("readable=maybe was taken");
        };
        assert!(e.to_string().contains("readable=on"), "{e}");
        // A setting given twice is refused, not settled by whichever comes last.
        for url in [
            "postgres://u:pw@h/db?schema=a&schema=b",
            "host=/tmp password=pw schema=a schema=b",
            "postgres://h/db?readable=on&schema=a&readable=off",
        ] {
            let Err(e) = parse_target(url) else {
                panic!("{url} was taken");
            };
            let said = e.to_string();
            assert!(
                said.contains("is given twice") && said.contains("give it once"),
                "{said}"
            );
            assert!(!said.contains("pw"), "{said}");
        }
    }

    /// The settings after a password holding `?` are read (the client ends the user part at
    /// the first `@`), and the shown form holds none of it.
    #[test]
    fn settings_after_a_password_holding_a_question_mark_are_taken() {
        for url in [
            "postgres://app:s3cr?t@db/app?schema=app_two&sslmode=disable",
            "postgres://app:s3cr?t@db/app?sslmode=disable&schema=app_two",
            "postgresql://app:s3cr?schema=x@db?schema=app_two",
        ] {
            let t = parse_target(url).unwrap();
            assert_eq!(t.schema, "app_two", "{url}");
            assert!(!t.shown.contains("s3cr"), "{url}: {}", t.shown);
            assert!(!t.shown.contains("schema=app_two"), "{url}: {}", t.shown);
        }
        let Err(e) = parse_target("postgres://app:s3cr?t@db/app?port=x") else {
            panic!("a bad port was taken");
        };
        let said = crate::error::with_causes(&e);
        assert!(said.contains("port") && !said.contains("s3cr"), "{said}");
    }

    #[test]
    fn key_value_strings_are_read_as_libpq_reads_them() {
        let pairs = |s: &str| {
            key_values(s).map(|p| {
                p.into_iter()
                    .map(|p| (p.key, p.value, p.raw))
                    .collect::<Vec<_>>()
            })
        };
        let got = pairs("host=/x  password = 'a b\\'c\\\\' dbname= app").unwrap();
        assert_eq!(
            got,
            [
                ("host".into(), "/x".into(), "host=/x".into()),
                (
                    "password".into(),
                    "a b'c\\".into(),
                    "password = 'a b\\'c\\\\'".into()
                ),
                ("dbname".into(), "app".into(), "dbname= app".into()),
            ]
        );
        let one = |s: &str| pairs(s).unwrap().remove(0).1;
        assert_eq!(one("password=a\\ b"), "a b");
        assert_eq!(one("password=abc\\"), "abc");
        assert_eq!(one("x=a=b=c"), "a=b=c");
        assert_eq!(one("x='a=b c'"), "a=b c");
        assert_eq!(one("x=é'ü"), "é'ü");
        assert_eq!(pairs("dbname=''").unwrap()[0].1, "");
        for bad in ["host", "=x", "host=/x dbname", "x='open", "x='a\\'"] {
            assert!(pairs(bad).is_none(), "{bad}");
        }
        // What a store URL keeps and takes out.
        let t = parse_target("host=/x password = 'p w' schema = 'app'").unwrap();
        assert_eq!(t.schema, "app");
        assert!(!t.shown.contains("p w"), "{}", t.shown);
        assert!(is_postgres_url("host = /x"));
    }

    #[test]
    fn long_names_are_shortened_distinctly() {
        let a = "i:".to_string() + &"x".repeat(80) + "a";
        let b = "i:".to_string() + &"x".repeat(80) + "b";
        assert!(relname(&a).len() <= MAX_IDENT);
        assert_ne!(relname(&a), relname(&b));
        assert_eq!(relname("meta"), "meta");
    }
}
