//! Reading the old database: rows of a SELECT as named cells, and the conversions a mapping
//! needs (ids, text, booleans, times, JSON lists, blobs), each failing with a sentence that
//! names the column and what was found.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::store::MAX_ID;

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// An id in the old system: a number is kept as redkeep's id; anything else (a UUID) is
/// kept as the record's external id, and the record gets a new number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum SourceId {
    Num(u64),
    Text(String),
}

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceId::Num(n) => write!(f, "{n}"),
            SourceId::Text(t) => f.write_str(t),
        }
    }
}

/// One row of a SELECT.
#[derive(Clone)]
pub(crate) struct Row {
    /// 1-based position in the result.
    pub(crate) n: usize,
    cells: BTreeMap<String, Cell>,
}

// By hand: a row holds password hashes, salts and invite codes, so its `Debug` shows each
// column's name and kind, never a value.
impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Kind<'a>(&'a Cell);
        impl std::fmt::Debug for Kind<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.0 {
                    Cell::Null => f.write_str("null"),
                    Cell::Int(_) => f.write_str("<integer>"),
                    Cell::Real(_) => f.write_str("<real>"),
                    Cell::Text(t) => write!(f, "<text, {} bytes>", t.len()),
                    Cell::Blob(b) => write!(f, "<blob, {} bytes>", b.len()),
                }
            }
        }
        f.debug_struct("Row")
            .field("n", &self.n)
            .field(
                "cells",
                &self
                    .cells
                    .iter()
                    .map(|(k, v)| (k, Kind(v)))
                    .collect::<BTreeMap<_, _>>(),
            )
            .finish()
    }
}

type Conv<T> = std::result::Result<T, String>;

impl Row {
    fn cell(&self, col: &str) -> &Cell {
        self.cells.get(col).unwrap_or(&Cell::Null)
    }

    /// Text of a column, if not null (numbers are written out).
    pub(crate) fn text(&self, col: &str) -> Conv<Option<String>> {
        match self.cell(col) {
            Cell::Null => Ok(None),
            Cell::Int(i) => Ok(Some(i.to_string())),
            Cell::Real(r) => Ok(Some(r.to_string())),
            Cell::Text(t) => Ok(Some(t.clone())),
            Cell::Blob(b) => String::from_utf8(b.clone()).map(Some).map_err(|_| {
                format!(
                    "{col} holds bytes that are not UTF-8 text; store it as UTF-8 text (or \
                     leave the column out of the query)"
                )
            }),
        }
    }

    /// Text of a column that must be there and not empty.
    pub(crate) fn required(&self, col: &str) -> Conv<String> {
        match self.text(col)? {
            Some(t) if !t.trim().is_empty() => Ok(t),
            _ => Err(format!("{col} is empty")),
        }
    }

    /// An id column: a number from 1 to [`MAX_ID`], or text that is not a number (a UUID).
    pub(crate) fn id(&self, col: &str) -> Conv<Option<SourceId>> {
        let too_large = |t: &dyn std::fmt::Display| {
            format!(
                "{col} {t} is larger than the largest id redkeep keeps ({MAX_ID}); renumber \
                 the record in the old database (its references with it)"
            )
        };
        match self.cell(col) {
            Cell::Null => Ok(None),
            Cell::Int(i) if *i > 0 => Ok(Some(SourceId::Num(*i as u64))),
            Cell::Int(i) => Err(format!("{col} {i} is not a positive id")),
            _ => {
                let t = self.required(col)?.trim().to_string();
                Ok(Some(match t.parse::<u64>() {
                    Ok(n) if n > MAX_ID => return Err(too_large(&t)),
                    Ok(n) if n > 0 => SourceId::Num(n),
                    // Digits past even u64: a number too, not a text id.
                    Err(_) if t.bytes().all(|b| b.is_ascii_digit()) => {
                        return Err(too_large(&t));
                    }
                    _ => SourceId::Text(t),
                }))
            }
        }
    }

    /// An id column that must be there.
    pub(crate) fn required_id(&self, col: &str) -> Conv<SourceId> {
        self.id(col)?.ok_or_else(|| format!("{col} is empty"))
    }

    /// A boolean (0/1, true/false, t/f, yes/no); `default` when null.
    pub(crate) fn flag(&self, col: &str, default: bool) -> Conv<bool> {
        match self.cell(col) {
            Cell::Null => Ok(default),
            Cell::Int(i) => Ok(*i != 0),
            _ => match self.required(col)?.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "t" | "yes" | "y" => Ok(true),
                "0" | "false" | "f" | "no" | "n" => Ok(false),
                other => Err(format!("{col} {other:?} is not a boolean")),
            },
        }
    }

    /// An integer, if not null.
    pub(crate) fn int(&self, col: &str) -> Conv<Option<i64>> {
        match self.cell(col) {
            Cell::Null => Ok(None),
            Cell::Int(i) => Ok(Some(*i)),
            Cell::Real(r) if r.fract() == 0.0 && r.abs() < 9.0e15 => Ok(Some(*r as i64)),
            _ => {
                let t = self.required(col)?;
                t.trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{col} {t:?} is not an integer"))
            }
        }
    }

    /// A time: Unix time (in seconds, milliseconds, microseconds or nanoseconds, told apart
    /// by size, as [`unix_time`] says), or text like `2024-05-01 10:30:00[.123][Z|+02:00]`
    /// (UTC when no offset is given).
    pub(crate) fn time(&self, col: &str) -> Conv<Option<Timestamp>> {
        match self.cell(col) {
            Cell::Null => Ok(None),
            Cell::Int(i) => Ok(Some(unix_time(*i as f64))),
            Cell::Real(r) if r.is_finite() => Ok(Some(unix_time(*r))),
            Cell::Real(r) => Err(format!("{col} {r} is not a time")),
            _ => {
                let t = self.required(col)?;
                // Unix time written as text (a TEXT column holding `1700000000`).
                if let Ok(n) = t.trim().parse::<i64>() {
                    return Ok(Some(unix_time(n as f64)));
                }
                parse_time(t.trim()).map(Some).ok_or_else(|| {
                    format!("{col} {t:?} is not a time (use ISO 8601 or Unix seconds)")
                })
            }
        }
    }

    /// Bytes, if not null.
    pub(crate) fn blob(&self, col: &str) -> Conv<Option<Vec<u8>>> {
        match self.cell(col) {
            Cell::Null => Ok(None),
            Cell::Blob(b) => Ok(Some(b.clone())),
            Cell::Text(t) => Ok(Some(t.as_bytes().to_vec())),
            _ => Err(format!("{col} is a number, not bytes")),
        }
    }

    /// A list of strings: a JSON array (its strings, other values written as JSON) or a
    /// comma-separated list; empty when null.
    pub(crate) fn list(&self, col: &str) -> Conv<Vec<String>> {
        let Some(t) = self.text(col)? else {
            return Ok(Vec::new());
        };
        let t = t.trim();
        if t.starts_with('[') {
            let v: serde_json::Value =
                serde_json::from_str(t).map_err(|e| format!("{col} is not a JSON array ({e})"))?;
            let serde_json::Value::Array(items) = v else {
                return Err(format!("{col} is not a JSON array"));
            };
            return Ok(items
                .into_iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect());
        }
        if t.starts_with('{') {
            return Err(format!("{col} is a JSON object; a list is needed"));
        }
        Ok(t.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect())
    }

    /// JSON text, checked to parse, if not null.
    pub(crate) fn json(&self, col: &str) -> Conv<Option<String>> {
        let Some(t) = self.text(col)? else {
            return Ok(None);
        };
        serde_json::from_str::<serde_json::Value>(&t)
            .map_err(|e| format!("{col} is not JSON ({e})"))?;
        Ok(Some(t))
    }

    /// Columns not in `known`.
    pub(crate) fn unknown_columns(&self, known: &[&str]) -> Vec<String> {
        self.cells
            .keys()
            .filter(|c| !known.contains(&c.as_str()))
            .cloned()
            .collect()
    }
}

/// A Unix time in whole seconds. Old apps store seconds, or milliseconds (JavaScript's
/// `Date.now()`), or finer: a number of seconds past the year 5000 (1e11) is read as
/// milliseconds, past that in milliseconds as microseconds, and so on to nanoseconds.
pub(crate) fn unix_time(n: f64) -> Timestamp {
    const PAST_5000: f64 = 1e11;
    let mut n = n;
    for _ in 0..3 {
        if n.abs() < PAST_5000 {
            break;
        }
        n /= 1000.0;
    }
    // Whole seconds, down (a time before 1970 too); `as` saturates.
    Timestamp(n.floor() as i64)
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.frac][Z|±HH:MM]` or a bare date.
fn parse_time(t: &str) -> Option<Timestamp> {
    let offset_at = t.len().checked_sub(6).filter(|&i| t.is_char_boundary(i));
    let (body, offset) = match offset_at.map(|i| t.split_at(i)) {
        Some((b, o))
            if (o.starts_with('+') || o.starts_with('-'))
                && o.as_bytes().get(3) == Some(&b':')
                && b.len() >= 10 =>
        {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let h: i64 = o.get(1..3)?.parse().ok()?;
            let m: i64 = o.get(4..6)?.parse().ok()?;
            (b, sign * (h * 3600 + m * 60))
        }
        _ => (t.trim_end_matches('Z'), 0),
    };
    let body = if body.len() == 10 {
        format!("{body}T00:00:00")
    } else {
        body.replacen(' ', "T", 1)
    };
    let at = humantime::parse_rfc3339_weak(&body).ok()?;
    let secs = match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_secs()).ok()?,
    };
    Some(Timestamp(secs - offset))
}

/// The old database, open read-only.
pub(crate) struct Source {
    conn: Connection,
}

impl Source {
    /// Opens `sqlite:PATH` (or a bare path) read-only.
    pub(crate) fn open(from: &str) -> Result<Source> {
        let path = from
            .strip_prefix("sqlite://")
            .or_else(|| from.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                Error::invalid(
                    "from",
                    format!("{from:?} is not a source redkeep reads; use --from sqlite:PATH"),
                )
            })?;
        let path = Path::new(path);
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::invalid(
                    "from",
                    format!(
                        "{} does not exist; give the old database's path",
                        path.display()
                    ),
                ));
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
            Ok(m) if !m.is_file() => {
                return Err(Error::invalid(
                    "from",
                    format!("{} is not a SQLite database file", path.display()),
                ));
            }
            Ok(_) => {}
        }
        let open = |flags: OpenFlags, at: &Path| {
            Connection::open_with_flags(at, flags).map_err(|e| sqlite(path, "opening", e))
        };
        let read_only = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = open(read_only, path)?;
        let mut first = first_read(&conn);
        // A WAL database is read through its `-shm` file, which SQLite must be able to
        // create beside it: in a folder adopt may not write, that fails. With no write
        // waiting in a `-wal`, the file alone holds the database, and is read as it is.
        let wal = wal_mode(path);
        if let Err(e) = &first
            && wal
            && matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
            )
            && !wal_holds_writes(path)
        {
            let uri = immutable_uri(path);
            conn = open(read_only | OpenFlags::SQLITE_OPEN_URI, Path::new(&uri))?;
            first = first_read(&conn);
        }
        first.map_err(|e| {
            let why = match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    format!(
                        "{} is locked by a program writing it ({e}); stop the application \
                         that uses it, then adopt again",
                        path.display()
                    )
                }
                // A hot journal: a writer stopped mid-transaction, and only an open that
                // may write rolls it back (adopt never writes the old database).
                Some(rusqlite::ErrorCode::ReadOnly)
                    if matches!(
                        e,
                        rusqlite::Error::SqliteFailure(ref f, _)
                            if f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK
                                || f.extended_code == rusqlite::ffi::SQLITE_READONLY_RECOVERY
                    ) =>
                {
                    format!(
                        "{} has a write its program did not finish (a journal or WAL beside it; \
                         {e}); \
                         open it once with `sqlite3` or start its application, which rolls \
                         that write back, then adopt again",
                        path.display()
                    )
                }
                Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen) if wal => {
                    format!(
                        "{} is in WAL mode, with writes still in its -wal file, and SQLite \
                         must create or write its -shm file beside it to read them, which this \
                         user may not ({e}); run adopt as the application's user, or stop the \
                         application and copy the database with its -wal file to a folder \
                         you can write, then adopt from the copy",
                        path.display()
                    )
                }
                _ => format!("{} is not a readable SQLite database ({e})", path.display()),
            };
            Error::invalid("from", why)
        })?;
        Ok(Source { conn })
    }

    /// Every row of `sql`; `what` names the mapping section in errors.
    pub(crate) fn rows(&self, what: &str, sql: &str) -> Result<Vec<Row>> {
        let fail = |e: rusqlite::Error| {
            Error::invalid(
                "mapping",
                format!("the [{what}] query fails: {e}; check it against the database's tables"),
            )
        };
        let mut stmt = self.conn.prepare(sql).map_err(fail)?;
        let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let mut rows = stmt.query([]).map_err(fail)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(fail)? {
            let mut cells = BTreeMap::new();
            for (i, name) in names.iter().enumerate() {
                let cell = match r.get_ref(i).map_err(fail)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    // Text that is not UTF-8 is kept as its bytes, so that reading it as text
                    // is refused by row, naming the column, as for such a BLOB (never turned
                    // into U+FFFD).
                    ValueRef::Text(t) => match std::str::from_utf8(t) {
                        Ok(t) => Cell::Text(t.to_string()),
                        Err(_) => Cell::Blob(t.to_vec()),
                    },
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                };
                cells.insert(name.clone(), cell);
            }
            out.push(Row {
                n: out.len() + 1,
                cells,
            });
        }
        Ok(out)
    }
}

/// Reads the schema, so that SQLite reads the file's header: a file that is not a database
/// is named as such rather than as a failing query.
fn first_read(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
}

/// Whether the database file's header says WAL mode (its read and write versions are 2).
fn wal_mode(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0_u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| header.starts_with(b"SQLite format 3\0") && header[18..20] == [2, 2])
}

/// Whether a `-wal` file beside the database holds writes not yet in the database.
fn wal_holds_writes(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(Path::new(&wal)).is_ok_and(|m| m.len() > 0)
}

/// The URI that opens `path` as a file nothing changes while it is read (`immutable=1`: no
/// locks, no `-shm`), every byte outside the unreserved ones percent-encoded.
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file:");
    for &b in absolute.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

fn sqlite(path: &Path, doing: &str, e: rusqlite::Error) -> Error {
    Error::invalid("from", format!("{doing} {} failed: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_in_the_forms_old_databases_use() {
        let t = |s| parse_time(s).map(|t| t.0);
        assert_eq!(t("2024-05-01 10:30:00"), Some(1_714_559_400));
        assert_eq!(t("2024-05-01T10:30:00.123456"), Some(1_714_559_400));
        assert_eq!(t("2024-05-01T10:30:00Z"), Some(1_714_559_400));
        assert_eq!(t("2024-05-01T12:30:00+02:00"), Some(1_714_559_400));
        assert_eq!(t("2024-05-01 05:30:00-05:00"), Some(1_714_559_400));
        assert_eq!(t("2024-05-01"), Some(1_714_521_600));
        assert_eq!(t("yesterday"), None);
    }

    /// Unix seconds in a TEXT column are read as a time, as in an INTEGER one.
    #[test]
    fn unix_seconds_written_as_text_are_a_time() {
        let row = |cell| super::Row {
            n: 1,
            cells: [("created_at".to_string(), cell)].into(),
        };
        for cell in [
            super::Cell::Text("1700000000".into()),
            super::Cell::Text(" 1700000000 ".into()),
            super::Cell::Int(1_700_000_000),
        ] {
            assert_eq!(
                row(cell).time("created_at").unwrap().map(|t| t.0),
                Some(1_700_000_000)
            );
        }
        assert!(
            row(super::Cell::Text("soon".into()))
                .time("created_at")
                .is_err()
        );
    }

    /// Milliseconds (JavaScript's `Date.now()`), microseconds and nanoseconds are told from
    /// seconds by size: an expired invite stays expired (read as seconds, a time in
    /// milliseconds lies 50,000 years ahead).
    #[test]
    fn finer_unix_times_are_read_as_such() {
        let row = |cell| super::Row {
            n: 1,
            cells: [("at".to_string(), cell)].into(),
        };
        for cell in [
            super::Cell::Int(1_700_000_000_123),
            super::Cell::Int(1_700_000_000_123_456),
            super::Cell::Int(1_700_000_000_123_456_789),
            super::Cell::Real(1_700_000_000.5),
            super::Cell::Text("1700000000123".into()),
        ] {
            assert_eq!(
                row(cell.clone()).time("at").unwrap().map(|t| t.0),
                Some(1_700_000_000),
                "{cell:?}"
            );
        }
        // Before 1970, in milliseconds.
        assert_eq!(
            row(super::Cell::Int(-100_000_000_500))
                .time("at")
                .unwrap()
                .map(|t| t.0),
            Some(-100_000_001)
        );
        assert!(row(super::Cell::Real(f64::NAN)).time("at").is_err());
        assert!(row(super::Cell::Real(f64::INFINITY)).time("at").is_err());
    }

    /// A row's `Debug` (in a panic message, a log line) shows its columns, never their
    /// values: a password hash, a salt or an invite code stays out of it.
    #[test]
    fn a_rows_debug_shows_no_value() {
        let hash = "$2b$12$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01";
        let row = super::Row {
            n: 3,
            cells: [
                ("password_hash".to_string(), super::Cell::Text(hash.into())),
                ("salt".to_string(), super::Cell::Blob(b"pepper-42".to_vec())),
                ("code".to_string(), super::Cell::Text("WELCOME-2024".into())),
                ("uses".to_string(), super::Cell::Int(424_242)),
            ]
            .into(),
        };
        for shown in [format!("{row:?}"), format!("{row:#?}")] {
            for secret in [hash, "pepper-42", "WELCOME-2024", "424242", "abcdefghij"] {
                assert!(!shown.contains(secret), "{shown}");
            }
            assert!(
                shown.contains("password_hash") && shown.contains("salt"),
                "{shown}"
            );
        }
    }

    /// Text that is no time never panics, whatever characters end it (a multi-byte one
    /// where an offset would start).
    #[test]
    fn times_ending_in_any_character_are_refused_not_a_panic() {
        for t in [
            "x\u{e9}12345",
            "2024-05-01\u{e9}1234",
            "\u{fffd}\u{fffd}\u{fffd}",
            "\u{1F600}+02:00",
        ] {
            assert_eq!(parse_time(t), None, "{t:?}");
        }
    }
}
