//! The storage boundary: the few raw operations on byte tables that the typed layer is built
//! on. An engine provides them inside its own transactions; nothing above this module knows
//! which engine runs.

pub(crate) mod faults;
pub(crate) mod header;
#[cfg(feature = "postgres")]
pub(crate) mod pg;
pub(crate) mod redb_file;

use std::cell::Cell;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use zeroize::Zeroize;

use crate::error::{Error, Result};

thread_local! {
    static CONTAINING: Cell<u32> = const { Cell::new(0) };
}

#[cfg(test)]
thread_local! {
    /// The engine calls this thread made, in order, by kind (`get`, `range`, `put`, `write`
    /// for a write transaction begun, …; no table or key). On PostgreSQL each is a round
    /// trip: paths meant to take the same time (an unknown email and a known one) must make
    /// the same calls. For tests.
    pub(crate) static ENGINE_CALLS: std::cell::RefCell<Vec<&'static str>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Notes an engine call in [`ENGINE_CALLS`]; nothing outside tests.
#[inline]
pub(crate) fn note_call(_what: &'static str) {
    #[cfg(test)]
    ENGINE_CALLS.with_borrow_mut(|c| c.push(_what));
}

/// The name this process's connections to a PostgreSQL store give the server, when set.
static CONNECTION_NAME: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The longest `application_name` the server keeps (`NAMEDATALEN - 1`); it cuts longer ones.
const MAX_CONNECTION_NAME: usize = 63;

/// Names the connections this process opens from now on to a PostgreSQL store: the
/// server's `application_name`, which `pg_stat_activity`, `redkeep status` and the refusals
/// of whole-store commands show, so an operator can tell which program holds the store.
/// A store URL that sets `application_name` keeps its own. Without this call, connections
/// are named after the program and its pid (`myapp (redkeep, pid 4242)`). The server keeps
/// printable ASCII of at most 63 bytes: other characters become `?`, the rest is cut.
/// Nothing changes for a redb store.
pub fn name_connections(name: &str) {
    *CONNECTION_NAME.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.to_string());
}

/// The `application_name` of a new connection (see [`name_connections`]).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn connection_name() -> String {
    let set = CONNECTION_NAME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let name = set.unwrap_or_else(|| {
        let program = std::env::args_os()
            .next()
            .and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "an application".to_string());
        format!("{program} (redkeep, pid {})", std::process::id())
    });
    // What the server would do to it, done here so that what is asked is what is shown.
    name.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_CONNECTION_NAME)
        .collect()
}

/// A connection that has the store open (holds its lock, shared or alone), as the server
/// shows it in `pg_stat_activity`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "admin", feature = "postgres")), allow(dead_code))]
pub(crate) struct Holder {
    /// The server process serving the connection (`pg_terminate_backend` ends it).
    pub backend_pid: i32,
    /// `local socket`, or the client's address and port; `None` when the server does not
    /// show it to this role.
    pub client: Option<String>,
    /// The connection's `application_name` (redkeep's name the program and its pid).
    pub application_name: Option<String>,
    /// When the connection was made, in UTC (`2026-12-07T08:50:12Z`).
    pub since: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backend pid {} (", self.backend_pid)?;
        match &self.client {
            Some(c) => write!(f, "{c}")?,
            None => write!(f, "client not shown to this role")?,
        }
        match self.application_name.as_deref() {
            Some(a) if !a.is_empty() => write!(f, ", application_name {a:?}")?,
            _ => write!(f, ", no application_name")?,
        }
        if let Some(since) = &self.since {
            write!(f, ", connected since {since}")?;
        }
        write!(f, ")")
    }
}

/// Whether this thread is inside an engine call whose panic redkeep turns into an error (a
/// panic hook may stay silent then; the CLI's does).
pub fn containing() -> bool {
    CONTAINING.with(|c| c.get() > 0)
}

/// While alive, code runs as the caller's, not the engine's: a panic in it is reported as
/// usual (used around the caller's closures that a contained scan calls).
pub(crate) struct CallerCode(u32);

impl CallerCode {
    pub(crate) fn enter() -> CallerCode {
        CallerCode(CONTAINING.with(|c| c.replace(0)))
    }
}

impl Drop for CallerCode {
    fn drop(&mut self) {
        CONTAINING.with(|c| c.set(self.0));
    }
}

/// Runs one call into the engine so that a panic inside it (a malformed page reaching an
/// assertion) becomes `Error::Damaged`. This relies on unwinding: an application built with
/// `panic = "abort"` still aborts on such a file.
pub(crate) fn contain<T>(what: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    CONTAINING.with(|c| c.set(c.get() + 1));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(c.get().saturating_sub(1)));
    outcome.unwrap_or_else(|panic| Err(engine_panicked(what, panic)))
}

/// The error for a panic inside the engine. Out of line and cold: `contain` wraps every
/// engine call, and its callers' code stays small.
#[cold]
#[inline(never)]
fn engine_panicked(what: &'static str, panic: Box<dyn std::any::Any + Send>) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    tracing::error!(what, message, "the storage engine failed on a damaged page");
    Error::Damaged {
        path: PathBuf::new(),
        reason: format!("the storage engine failed while {what} ({message})"),
    }
}

/// The connection keys whose values say where a store is and how it is reached, and
/// nothing secret: [`redact`] shows their values. Every other key's value shows as `***`:
/// `password` and `sslpassword`, `options` (which may carry anything), a mistyped key
/// (`pasword=…`) and one this list does not know.
const SHOWN_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "schema",
    "readable",
    "service",
    "application_name",
    "fallback_application_name",
    "connect_timeout",
    "client_encoding",
    "channel_binding",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "load_balance_hosts",
    "replication",
    "gssencmode",
    "gsslib",
    "gssdelegation",
    "krbsrvname",
    "require_auth",
    "requirepeer",
    "sslmode",
    "sslnegotiation",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
];

/// A store URL (`postgres://…` or a libpq `key=value` string) without its secrets, for
/// messages and `Debug` output: the password of the authority shows as `***`, and so does
/// the value of every key but those that only say where the store is and how it is reached
/// (`host`, `port`, `dbname`, `user`, `schema`, `sslmode` and the like): `password`,
/// `sslpassword`, a mistyped or unknown key. In a key/value string, a word without `=`
/// (no key, perhaps a password typed apart from its key) shows as `***` too.
pub fn redact(url: &str) -> String {
    let url = url.trim();
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return redact_key_values(url);
    };
    let scheme = &url[..url.len() - rest.len()];
    let mut hidden = url_password(rest).into_iter().collect::<Vec<_>>();
    hidden.extend(secret_parameters(rest));
    hidden.sort_unstable();
    let mut shown = scheme.to_string();
    let mut at = 0;
    for (start, end) in hidden {
        if start < at {
            // Overlaps the range just hidden (or follows it directly): hidden with it.
            at = at.max(end);
            continue;
        }
        shown.push_str(&rest[at..start]);
        shown.push_str("***");
        at = end;
    }
    shown.push_str(&rest[at..]);
    shown
}

/// Where the password of a URL's user part is in `rest` (the URL after its scheme), as a
/// byte range: from the `:` after the user to the `@` before the host. Which `@` that is
/// depends on who reads: the client takes the first `@` of the whole URL (a password may
/// then hold `?`, `/` or `#`), a person may mean the last one before the query (a password
/// holding `@`) or before the path. The range covers every reading, so no reading of the
/// URL shows part of the password.
fn url_password(rest: &str) -> Option<(usize, usize)> {
    let colon = rest.find(':')?;
    let first = rest.find('@');
    let before_query = rest[..rest.find('?').unwrap_or(rest.len())].rfind('@');
    // A password holding both `@` and `?`: the last `@` before the path that follows the
    // first `@` (only when the client reads a password at all, so that a port and a
    // parameter value holding `@` are left alone).
    let before_path = first.filter(|&at| colon < at).and_then(|at| {
        let path = rest[at..].find('/').map_or(rest.len(), |i| at + i);
        rest[..path].rfind('@')
    });
    let end = [first, before_query, before_path]
        .into_iter()
        .flatten()
        .filter(|&at| colon < at)
        .max()?;
    Some((colon + 1, end))
}

/// Where the values of parameters that may be secret are in `rest` (the URL after its
/// scheme), as byte ranges: after any `?` or `&` (where the query starts depends on where
/// the user part ends, see [`url_password`]), a key that, once its `%XX` escapes are
/// decoded as the client decodes them, is not one of [`SHOWN_KEYS`].
fn secret_parameters(rest: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (i, c) in rest.char_indices() {
        if c != '?' && c != '&' {
            continue;
        }
        let key_start = i + 1;
        let Some(eq) = rest[key_start..]
            .find(['=', '&', '?'])
            .map(|j| key_start + j)
        else {
            continue;
        };
        if rest.as_bytes()[eq] != b'=' || shown_key(&percent_decoded(&rest[key_start..eq])) {
            continue;
        }
        let end = rest[eq + 1..].find('&').map_or(rest.len(), |j| eq + 1 + j);
        found.push((eq + 1, end));
    }
    found
}

/// `s` with its `%XX` escapes decoded.
fn percent_decoded(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Whether the values of connection key `key` are shown (see [`SHOWN_KEYS`]).
fn shown_key(key: &[u8]) -> bool {
    SHOWN_KEYS.iter().any(|k| k.as_bytes() == key)
}

/// A libpq `key=value` string with the values of the keys not in [`SHOWN_KEYS`], and words
/// without `=`, as `***`: values may be quoted (`'…'`, with `\'` inside) and `=` may have
/// spaces around it, as libpq reads them.
fn redact_key_values(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let copy_spaces = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String| {
        while let Some(&c) = chars.peek().filter(|c| c.is_whitespace()) {
            out.push(c);
            chars.next();
        }
    };
    loop {
        copy_spaces(&mut chars, &mut out);
        let mut key = String::new();
        while let Some(&c) = chars.peek().filter(|&&c| c != '=' && !c.is_whitespace()) {
            key.push(c);
            chars.next();
        }
        let spaces = chars.clone().take_while(|c| c.is_whitespace()).count();
        if chars.clone().nth(spaces) != Some('=') {
            // A word that is no key: perhaps a password typed apart from its key.
            if !key.is_empty() {
                out.push_str("***");
            }
            if chars.peek().is_none() {
                return out;
            }
            continue;
        }
        out.push_str(&key);
        copy_spaces(&mut chars, &mut out);
        out.push('=');
        chars.next();
        copy_spaces(&mut chars, &mut out);
        let mut value = String::new();
        let quoted = chars.peek() == Some(&'\'');
        if quoted {
            value.push('\'');
            chars.next();
        }
        while let Some(&c) = chars.peek() {
            if !quoted && c.is_whitespace() {
                break;
            }
            chars.next();
            value.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    value.push(n);
                }
            } else if quoted && c == '\'' {
                break;
            }
        }
        if shown_key(key.as_bytes()) {
            out.push_str(&value);
        } else {
            out.push_str("***");
        }
        if chars.peek().is_none() {
            return out;
        }
    }
}

/// Which way a scan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest key first.
    Asc,
    /// Largest key first.
    Desc,
}

/// A range of key bytes to scan. Its `Debug` form shows the bounds' lengths only: keys may
/// be secret material (a token's hash).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub(crate) start: Bound<Vec<u8>>,
    pub(crate) end: Bound<Vec<u8>>,
}

impl std::fmt::Debug for KeyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// A bound with its key's length in place of the key.
        struct Shown<'a>(&'a Bound<Vec<u8>>);
        impl std::fmt::Debug for Shown<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.0 {
                    Bound::Included(k) => write!(f, "Included(<{} bytes>)", k.len()),
                    Bound::Excluded(k) => write!(f, "Excluded(<{} bytes>)", k.len()),
                    Bound::Unbounded => f.write_str("Unbounded"),
                }
            }
        }
        f.debug_struct("KeyRange")
            .field("start", &Shown(&self.start))
            .field("end", &Shown(&self.end))
            .finish()
    }
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: Vec<u8>) -> Self {
        let end = match super::key::prefix_end(&prefix) {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        KeyRange {
            start: Bound::Included(prefix),
            end,
        }
    }

    /// Keys in `[start, end)`.
    pub fn between(start: Vec<u8>, end: Vec<u8>) -> Self {
        KeyRange {
            start: Bound::Included(start),
            end: Bound::Excluded(end),
        }
    }

    /// Keys strictly below `end`.
    pub fn below(end: Vec<u8>) -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Excluded(end),
        }
    }

    /// This range without the keys up to and including `key`: the next page after a cursor
    /// when scanning upwards.
    pub fn after(mut self, key: &[u8]) -> Self {
        let later = match &self.start {
            Bound::Included(s) | Bound::Excluded(s) => key >= s.as_slice(),
            Bound::Unbounded => true,
        };
        if later {
            self.start = Bound::Excluded(key.to_vec());
        }
        self
    }

    /// This range without the keys from `key` up: the next page after a cursor when scanning
    /// downwards.
    pub fn before(mut self, key: &[u8]) -> Self {
        let earlier = match &self.end {
            Bound::Included(e) | Bound::Excluded(e) => key <= e.as_slice(),
            Bound::Unbounded => true,
        };
        if earlier {
            self.end = Bound::Excluded(key.to_vec());
        }
        self
    }

    /// Whether no key can fall in the range.
    pub(crate) fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        }
    }

    /// Whether `key` falls in the range.
    #[cfg(test)]
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }
}

/// Called with each entry of a scan; returns `Ok(false)` to stop.
pub(crate) type Visit<'f> = &'f mut dyn FnMut(&[u8], &[u8]) -> Result<bool>;

/// The keys handed to [`RawRead::get_each`].
pub(crate) type Keys<'k> = &'k mut dyn Iterator<Item = &'k [u8]>;

/// What [`RawRead::get_each`] calls with each key and its value (`None`: absent); `false`
/// stops it.
pub(crate) type VisitKey<'f> = &'f mut dyn FnMut(&[u8], Option<&[u8]>) -> Result<bool>;

/// [`RawRead::get_each`] over a table that does not exist: every key is absent.
pub(crate) fn each_absent(keys: Keys<'_>, f: VisitKey<'_>) -> Result<()> {
    for key in keys {
        if !f(key, None)? {
            break;
        }
    }
    Ok(())
}

/// Reads, in either kind of transaction. A missing table reads as empty.
pub(crate) trait RawRead {
    /// An id for this transaction's snapshot when it is a read that later reads may share
    /// (an exclusive handle's reads, whose snapshot it keeps until the next commit ends): what
    /// it reads never changes, so a record decoded from it is the same for every read with
    /// that id.
    /// Ids are never used twice. `None` (the default) for writes, and for the reads of
    /// handles that never share a snapshot (shared and read-only ones, PostgreSQL).
    fn snapshot_id(&self) -> Option<u64> {
        None
    }
    /// Calls `f` with the value of `key` if present; returns whether it was.
    fn get(&self, table: &str, key: &[u8], f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool>;
    /// Calls `f` with each entry in `range`, in `order`, until it returns `false`.
    fn range(&self, table: &str, range: &KeyRange, order: Order, f: Visit<'_>) -> Result<()>;
    /// Calls `f` with each key of `keys` and its value (`None`: absent), in order, until it
    /// returns `false`: the lookups of a page of records, which an engine may make with its
    /// table opened once.
    fn get_each(&self, table: &str, keys: Keys<'_>, f: VisitKey<'_>) -> Result<()> {
        for key in keys {
            let mut more = true;
            let found = self.get(table, key, &mut |v| {
                more = f(key, Some(v))?;
                Ok(())
            })?;
            if !found {
                more = f(key, None)?;
            }
            if !more {
                break;
            }
        }
        Ok(())
    }
    /// How many lookups a caller that can gather them should hand [`RawRead::get_each`] at
    /// once: 1 where a lookup is a call (redb), more where it is a round trip (a server).
    fn lookups_per_trip(&self) -> usize {
        1
    }
    /// Number of entries.
    fn len(&self, table: &str) -> Result<u64>;
    /// Every table's name.
    fn table_names(&self) -> Result<Vec<String>>;
    /// The id sequences, as (name, last id), when the engine keeps them itself; `None` when
    /// they live in the `meta` table.
    fn native_sequences(&self) -> Result<Option<Vec<(String, u64)>>> {
        Ok(None)
    }
}

/// Writes, in a write transaction.
pub(crate) trait RawWrite: RawRead {
    /// Sets `key` to `value`.
    fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<()>;
    /// Sets each key of `entries` to its value, as `put` does one by one. The keys are
    /// distinct. (Engines where a statement is a round trip, like PostgreSQL, write them in
    /// one.)
    fn put_all(&self, table: &str, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        for (key, value) in entries {
            self.put(table, key, value)?;
        }
        Ok(())
    }
    /// Sets `key` to `value` unless it is present; returns whether it wrote. (What engines
    /// with their own conflict handling, like PostgreSQL's `on conflict do nothing`, offer.)
    fn insert_new(&self, table: &str, key: &[u8], value: &[u8]) -> Result<bool>;
    /// Removes `key`; returns whether it was present.
    fn remove(&self, table: &str, key: &[u8]) -> Result<bool>;
    /// Deletes a whole table.
    fn delete_table(&self, table: &str) -> Result<()>;
    /// Whether `table` is in use in this transaction (a scan of it is under way), so that
    /// deleting it would be refused.
    fn in_use(&self, _table: &str) -> bool {
        false
    }
    /// Draws the next id of sequence `name` when the engine keeps sequences itself.
    fn native_next(&self, _name: &str) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Raises sequence `name` to at least `value` when the engine keeps sequences itself;
    /// returns whether it does.
    fn native_raise(&self, _name: &str, _value: u64) -> Result<bool> {
        Ok(false)
    }
}

/// Entries copied out of a scan on their way to a batched write or lookup: at most `limit`
/// of them, and about [`Entries::BYTES`]. Wiped when let go: a key may be a token's hash, a
/// value hold a password hash.
pub(crate) struct Entries {
    pub(crate) list: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
    limit: usize,
}

impl Entries {
    /// About the most bytes a batch holds.
    pub(crate) const BYTES: usize = 4 << 20;

    pub(crate) fn new(limit: usize) -> Entries {
        Entries {
            list: Vec::new(),
            bytes: 0,
            limit,
        }
    }

    /// Keeps a copy of an entry; returns whether that makes the batch full.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) -> bool {
        self.bytes += key.len() + value.len();
        self.list.push((key.to_vec(), value.to_vec()));
        self.list.len() >= self.limit || self.bytes >= Self::BYTES
    }

    /// The entries kept so far, taken out: this batch starts again empty.
    pub(crate) fn take(&mut self) -> Entries {
        self.bytes = 0;
        Entries {
            list: std::mem::take(&mut self.list),
            bytes: 0,
            limit: self.limit,
        }
    }

    /// Writes the entries kept so far into `table` in one go ([`RawWrite::put_all`]), then
    /// lets them go.
    pub(crate) fn write(&mut self, raw: &dyn RawWrite, table: &str) -> Result<()> {
        let batch = self.take();
        if batch.list.is_empty() {
            return Ok(());
        }
        raw.put_all(table, &batch.list)
    }
}

impl Drop for Entries {
    fn drop(&mut self) {
        for (key, value) in &mut self.list {
            key.zeroize();
            value.zeroize();
        }
    }
}

/// Copies the value of `key`, if present.
pub(crate) fn get_owned(raw: &dyn RawRead, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = None;
    raw.get(table, key, &mut |v| {
        out = Some(v.to_vec());
        Ok(())
    })?;
    Ok(out)
}

/// What a failed commit says it was doing: a commit that fails at the disk (its fsync) may
/// have stored the change all the same, so a retry must look first (a user made twice would
/// be refused as "exists", a key made twice would be live unseen).
pub(crate) const COMMIT_FAILED: &str =
    "committing (the change may have been stored all the same: look before making it again)";

/// A failure of the engine (`Storage`) told with what it left of the operation that met it:
/// `left` after its cause, or `maybe` when it came at the commit, which may have stored the
/// change all the same. A lost connection to a PostgreSQL server is named as such, with its
/// cause. Other errors come back as they are.
pub(crate) fn with_outcome(e: Error, left: &str, maybe: &str) -> Error {
    let said = if failed_at_commit(&e) { maybe } else { left };
    let Error::Storage { context, source } = e else {
        return e;
    };
    let cause = match lost_connection(source.as_ref()) {
        Some(why) => format!("the connection to the PostgreSQL server was lost ({why})"),
        None => crate::error::with_causes(source.as_ref()),
    };
    Error::Storage {
        context,
        source: Box::new(Outcome {
            text: format!("{cause}; {said}"),
            cause: source,
        }),
    }
}

/// The cause of a failure of the engine and what it left, as one sentence; the cause stays
/// its source.
#[derive(Debug)]
struct Outcome {
    text: String,
    cause: crate::error::StorageCause,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Outcome {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause.as_ref())
    }
}

/// Whether `e` is the engine's failure to commit, which may have stored the change all the
/// same.
pub(crate) fn failed_at_commit(e: &Error) -> bool {
    matches!(e, Error::Storage { context, .. }
        if *context == COMMIT_FAILED || *context == GROUP_COMMIT_FAILED)
}

/// What `cause` (a failure of the engine) says, when it says that the connection to the
/// PostgreSQL server was lost (the server stopped or restarted, the network failed).
#[cfg(feature = "postgres")]
pub(crate) fn lost_connection(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    pg::lost_connection(cause)
}

/// What `cause` says of a lost connection to a server: never, without PostgreSQL.
#[cfg(not(feature = "postgres"))]
pub(crate) fn lost_connection(_cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    None
}

/// [`COMMIT_FAILED`] for a write that waited for a group commit.
pub(crate) const GROUP_COMMIT_FAILED: &str = "committing a group of writes (the change may have \
     been stored all the same: look before making it again)";

#[cfg(test)]
mod tests {
    use super::*;

    /// A range's bounds may be a secret key (a token's hash): its `Debug` form shows their
    /// lengths only.
    #[test]
    fn a_key_range_shows_the_lengths_of_its_bounds_not_their_bytes() {
        let secret = vec![0xC3_u8; 32];
        let shown = format!(
            "{:?} {:?} {:?}",
            KeyRange::all().after(&secret),
            KeyRange::between(secret.clone(), vec![0xC3; 33]),
            KeyRange::prefix(secret.clone())
        );
        assert!(
            !shown.contains("195") && !shown.to_lowercase().contains("c3"),
            "{shown}"
        );
        assert!(shown.contains("Excluded(<32 bytes>)"), "{shown}");
        assert!(shown.contains("Unbounded"), "{shown}");
    }

    #[test]
    fn store_urls_are_shown_without_their_passwords() {
        for (url, shown) in [
            ("postgres://app:hunter2@db/app", "postgres://app:***@db/app"),
            (
                "postgresql://app:p@ss@db:5432/app",
                "postgresql://app:***@db:5432/app",
            ),
            ("postgres://app@db/app", "postgres://app@db/app"),
            (
                "postgres://db/app?user=app&password=hunter2&sslmode=require",
                "postgres://db/app?user=app&password=***&sslmode=require",
            ),
            (
                "host=db password=hunter2 dbname=app",
                "host=db password=*** dbname=app",
            ),
            ("host=db password = hunter2", "host=db password = ***"),
            (
                "password='hunter 2 \\' x' dbname=app",
                "password=*** dbname=app",
            ),
            (
                "host=/run/postgresql dbname=app",
                "host=/run/postgresql dbname=app",
            ),
            ("password=", "password=***"),
            ("password=a\\ b host=db", "password=*** host=db"),
            ("odd words password", "*** *** ***"),
            // Only the values of keys that say where the store is show: not those of
            // other secrets, of a mistyped key, of one the client does not know, nor a
            // word without a key.
            (
                "host=db sslpassword=hunter2 dbname=app",
                "host=db sslpassword=*** dbname=app",
            ),
            (
                "host=db pasword=hunter8 schema=m1",
                "host=db pasword=*** schema=m1",
            ),
            ("host=db password hunter2", "host=db *** ***"),
            ("host=db options='-c x=hunter2'", "host=db options=***"),
            (
                "postgres://app:***@db/app?sslpassword=hunter4&sslmode=require",
                "postgres://app:***@db/app?sslpassword=***&sslmode=require",
            ),
            (
                "postgres://db/app?pasword=hunter8&schema=m1",
                "postgres://db/app?pasword=***&schema=m1",
            ),
        ] {
            assert_eq!(redact(url), shown, "{url}");
            assert!(!redact(url).contains("hunter"), "{url}");
        }
    }

    /// Passwords holding characters a URL reserves, written unescaped or escaped: the
    /// client reads the user part up to the first `@`, a person may mean another `@`; none of
    /// the password shows either way.
    #[test]
    fn passwords_with_reserved_characters_never_show() {
        for (url, shown) in [
            ("postgres://app:s3cr?t@db/app", "postgres://app:***@db/app"),
            (
                "postgres://app:s3cr?t@db/app?schema=x",
                "postgres://app:***@db/app?schema=x",
            ),
            ("postgres://app:s3cr#t@db/app", "postgres://app:***@db/app"),
            (
                "postgres://app:s3cr/t@db:5432/app",
                "postgres://app:***@db:5432/app",
            ),
            (
                "postgres://app:s3cr%40t@db/app",
                "postgres://app:***@db/app",
            ),
            ("postgres://app:s3c@r?t@db/app", "postgres://app:***@db/app"),
            ("postgres://app:s3c@r/t@db/app", "postgres://app:***@db/app"),
            (
                "postgres://me@corp:s3cr=t@db/app",
                "postgres://me@corp:***@db/app",
            ),
            ("postgres://app:@db/app", "postgres://app:***@db/app"),
            (
                "postgres://db/app?user=app&PassWord=s3cr?t",
                "postgres://db/app?user=app&PassWord=***",
            ),
            (
                "postgres://db/app?pass%77ord=s3cr@t&sslmode=require",
                "postgres://db/app?pass%77ord=***&sslmode=require",
            ),
            (
                "postgres://db/app?x&password=s3crt",
                "postgres://db/app?x&password=***",
            ),
            (
                "host=db password='s3cr?t@x' dbname=app",
                "host=db password=*** dbname=app",
            ),
            (
                "host=db password=s3cr\\'t dbname=app",
                "host=db password=*** dbname=app",
            ),
            ("host=db PASSWORD = 's3 cr t'", "host=db PASSWORD = ***"),
            // What holds no password is shown whole, `@` and `:` in other places included.
            (
                "postgres://u@db:5432/app?application_name=a@b",
                "postgres://u@db:5432/app?application_name=a@b",
            ),
            ("postgres://[::1]:5432/app", "postgres://[::1]:5432/app"),
        ] {
            let got = redact(url);
            assert_eq!(got, shown, "{url}");
            for part in ["s3", "cr", "3c", "r?t", "r#t", "r/t", "%40", "=t"] {
                assert!(!got.contains(part), "{url} shows {got}");
            }
        }
    }

    #[test]
    fn cursors_narrow_ranges() {
        let r = KeyRange::prefix(vec![1]).after(&[1, 5]);
        assert!(!r.contains(&[1, 5]));
        assert!(r.contains(&[1, 6]));
        assert!(!r.contains(&[2]));
        let r = KeyRange::all().before(&[3]);
        assert!(r.contains(&[2, 9]));
        assert!(!r.contains(&[3]));
        assert!(KeyRange::between(vec![2], vec![2]).is_empty());
        assert!(
            KeyRange::prefix(vec![1])
                .after(&[1, 5])
                .before(&[1, 5])
                .is_empty()
        );
    }
}
