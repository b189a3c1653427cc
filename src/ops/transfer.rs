//! Export and import as JSON lines, streamed both ways: memory stays flat however large the
//! store. An export holds every table (redkeep's own and the application's registered ones
//! as JSON records; any other table as its raw bytes with its index entries, shapes and
//! catalog entry), the id sequences and metadata, then every workspace document and gallery
//! piece, and last a line that counts the lines before it, so an import sees an export that
//! was cut short. Exporting the same data twice gives the same bytes, and export → import →
//! export gives them back.
//!
//! ```text
//! {"redkeep_export":3,"schema_version":3}
//! {"table":"users","key":"0000000000000001","record":{…}}
//! {"table":"projects","key":"…","value":"<base64>"}       a table this handle has no type for
//! {"index":"projects:by_owner","key":"…","value":"…"}     its index entries (hex)
//! {"shape":"<16 hex>","names":[…]}
//! {"catalog":{…}}
//! {"sequence":"users","value":4}
//! {"meta":"initialized_at","value":"<base64>"}
//! {"workspace":2,"doc":{…},"modified":1733390000}      the file's time, seconds
//! {"workspace":5,"doc":{…},"modified":1733390000,"modified_nanos":500000000}   and a part
//! {"workspace":3,"doc":{…},"trashed_up_to":4}         removed pieces' highest number
//! {"workspace":4,"doc":{…},"text":"{\"notes\":[]}"}     the file's bytes, when not as written
//! {"piece":1,"user":2,"doc":{…},"modified":1733390000}
//! {"piece":2,"user":2,"doc":{…},"text":"{\"a\": 1}\n"}   the file's bytes, when not compact
//! {"redkeep_export_end":true,"lines":9}
//! ```
//!
//! An import (of format 3, or of format 2, which has no end line) runs in one write
//! transaction and checks the whole result (records, indexes, references) before it commits,
//! so a failed import changes nothing; workspace lines are spooled to a temp file and written
//! once the records are in.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Value, json};

use crate::Redkeep;
use crate::auth::users::User;
use crate::bytes::{hex, unhex};
use crate::error::{Error, Result};
use crate::handle::SCHEMA_VERSION;
use crate::store::{
    CheckReport, Entries, IMPORT_UNFINISHED, KeyRange, Meta, NewRecords, Order, Refused, Source,
    TableCheck, TableInfo, WriteTx,
};
use crate::workspace::{WorkspaceDoc, Workspaces};

/// The export format's version, in the first line. Format 3 ends with a line that counts
/// the lines before it (`{"redkeep_export_end":true,"lines":N}`), so an import sees an export
/// cut short; format 2 (no such line) is still read.
pub const EXPORT_FORMAT: u64 = 3;

/// The first format that ends with a count of its lines.
const FORMAT_WITH_END: u64 = 3;

/// What an import or export handled.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransferSummary {
    /// Records per table.
    pub records: BTreeMap<String, u64>,
    /// Workspace documents.
    pub workspaces: u64,
    /// Gallery pieces.
    pub pieces: u64,
    /// Lines read or written.
    pub lines: u64,
    /// The email of the administrator `redkeep init` had made in the store an import
    /// replaced (that account is gone; the export's accounts are the store's now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_admin: Option<String>,
    /// Entries of the workspace folders an export left out: in a user's folder, what is
    /// neither a document nor a piece (`users/{id}/…`; see [`Workspaces::outside_layout`]),
    /// which `redkeep backup` keeps when it is a regular file or folder; and in `users/`,
    /// what is no folder of a user of the exported snapshot (`users/{name}`: an orphan
    /// folder, a symlink or a file in a user's place, an operator's folder).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(serialize_with = "crate::fsutil::lossy::list")]
    pub left_out: Vec<PathBuf>,
}

fn write_line(out: &mut dyn Write, value: &Value, summary: &mut TransferSummary) -> Result<()> {
    // An export whose asker went away stops at its next line.
    crate::fsutil::go_on("the export")?;
    let text = serde_json::to_string(value).map_err(|e| Error::Invariant {
        what: format!("cannot write an export line: {e}"),
    })?;
    writeln!(out, "{text}").map_err(|e| Error::io("writing the export", e))?;
    summary.lines += 1;
    Ok(())
}

// Tables of the store that no registered type reads: exported as raw bytes.
fn unknown_tables(tx: &dyn Meta, known: &BTreeSet<&str>) -> Result<Vec<String>> {
    Ok(tx
        .table_names()?
        .into_iter()
        .filter_map(|n| n.strip_prefix("r:").map(str::to_string))
        .filter(|n| !known.contains(n.as_str()))
        .collect())
}

/// Writes every record, index entry of unknown tables, shape, catalog entry, sequence and
/// metadata entry from one snapshot, then every workspace document and piece, as JSON lines
/// in a fixed order, and last the end line counting the lines before it. Calls `progress`
/// with the number of lines written so far.
///
/// # Errors
/// `Corrupt` for an unreadable record; `Io` when writing fails.
pub fn export(
    rk: &Redkeep,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> Result<TransferSummary> {
    let mut summary = TransferSummary::default();
    let tables = rk.tables();
    let known: BTreeSet<&str> = tables.iter().map(|t| t.name()).collect();
    rk.store().read(|tx| {
        let schema = tx.schema_version()?.unwrap_or(SCHEMA_VERSION);
        write_line(
            out,
            &json!({"redkeep_export": EXPORT_FORMAT, "schema_version": schema}),
            &mut summary,
        )?;
        for t in &tables {
            let name = t.name();
            let mut n = 0;
            t.export(tx, &mut |key, record| {
                n += 1;
                write_line(
                    out,
                    &json!({"table": name, "key": key, "record": record}),
                    &mut summary,
                )?;
                if summary.lines % 1000 == 0 {
                    progress(summary.lines);
                }
                Ok(())
            })?;
            summary.records.insert(name.to_string(), n);
        }
        for name in unknown_tables(tx, &known)? {
            let mut n = 0;
            tx.raw().range(
                &format!("r:{name}"),
                &KeyRange::all(),
                Order::Asc,
                &mut |k, v| {
                    n += 1;
                    write_line(
                        out,
                        &json!({"table": name, "key": hex(k), "value": STANDARD.encode(v)}),
                        &mut summary,
                    )?;
                    Ok(true)
                },
            )?;
            summary.records.insert(name.clone(), n);
            let prefix = format!("i:{name}:");
            for index in tx
                .table_names()?
                .into_iter()
                .filter(|t| t.starts_with(&prefix))
            {
                let label = index["i:".len()..].to_string();
                tx.raw()
                    .range(&index, &KeyRange::all(), Order::Asc, &mut |k, v| {
                        write_line(
                            out,
                            &json!({"index": label, "key": hex(k), "value": hex(v)}),
                            &mut summary,
                        )?;
                        Ok(true)
                    })?;
            }
        }
        for (id, names) in tx.shapes()? {
            let names: Vec<&str> = names.iter().map(|n| &**n).collect();
            write_line(
                out,
                &json!({"shape": format!("{id:016x}"), "names": names}),
                &mut summary,
            )?;
        }
        for info in tx.catalog()? {
            write_line(out, &json!({"catalog": info}), &mut summary)?;
        }
        for (table, value) in tx.sequences()? {
            write_line(
                out,
                &json!({"sequence": table, "value": value}),
                &mut summary,
            )?;
        }
        // (Not the marks of operations stopped part way: they hold for this data dir only.
        // Nor the store's id and copy: the store an import fills keeps its own, which its
        // data dir names.)
        for (key, value) in tx.meta_entries()? {
            if key == crate::store::STORE_ID
                || key == crate::store::STORE_INSTANCE
                || crate::store::UNFINISHED_MARKS
                    .iter()
                    .any(|(m, _)| *m == key)
            {
                continue;
            }
            write_line(
                out,
                &json!({"meta": key, "value": STANDARD.encode(value)}),
                &mut summary,
            )?;
        }
        // The folders of the users of this snapshot, each read under its lock.
        let ws = rk.workspaces();
        let mut exported = BTreeSet::new();
        tx.table::<User>()
            .for_each_key(KeyRange::all(), Order::Asc, |id| {
                export_folder(ws, id, out, &mut summary)?;
                exported.insert(id);
                Ok(true)
            })?;
        // What no user's folder is, named rather than left out without a word: a folder of
        // no user in the snapshot (an orphan, a user created since), a symlink or a file in
        // a user's place, an entry no user id names (an operator's folder).
        let mut beside: Vec<PathBuf> = ws
            .user_ids()?
            .into_iter()
            .filter(|id| !exported.contains(id))
            .map(|id| Path::new("users").join(id.to_string()))
            .collect();
        beside.extend(super::files::not_real_folders(ws)?);
        beside.sort();
        summary.left_out.extend(beside);
        Ok(())
    })?;
    let before = summary.lines;
    write_line(
        out,
        &json!({"redkeep_export_end": true, "lines": before}),
        &mut summary,
    )?;
    out.flush()
        .map_err(|e| Error::io("writing the export", e))?;
    progress(summary.lines);
    Ok(summary)
}

/// Dates `line` as the file at `path` is dated: `modified`, in whole seconds since 1970, as
/// `user list` and `gallery list` show it, and `modified_nanos`, the part of a second, when
/// there is one (a key older builds pass over). Nothing when the file does not say.
fn add_modified(line: &mut Value, path: &Path) {
    let Some(m) = std::fs::symlink_metadata(path)
        .ok()
        .and_then(|m| m.modified().ok())
    else {
        return;
    };
    if let Some(t) = crate::clock::Timestamp::of_system_time(m) {
        line["modified"] = json!(t.0);
    }
    if let Some(nanos) = m
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.subsec_nanos())
        .filter(|n| *n != 0)
    {
        line["modified_nanos"] = json!(nanos);
    }
}

/// Dates the file an import just wrote at `path` as its line says (`modified` and
/// `modified_nanos`), never following a symlink.
fn set_modified(path: &Path, line: &Value) -> Result<()> {
    let nanos = line
        .get("modified_nanos")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    match line.get("modified").and_then(Value::as_u64) {
        Some(secs) => crate::fsutil::set_modified(
            path,
            std::time::UNIX_EPOCH
                + std::time::Duration::new(secs, u32::try_from(nanos).unwrap_or(0)),
        ),
        None => Ok(()),
    }
}

// Writes one user's workspace document and pieces, if the folder exists.
fn export_folder(
    ws: &Workspaces,
    id: u64,
    out: &mut dyn Write,
    summary: &mut TransferSummary,
) -> Result<()> {
    if !ws.present(id)? {
        return Ok(());
    }
    let (doc, found) = ws.read_as_found(id)?;
    let mut line = json!({"workspace": id, "doc": doc});
    // The file's own bytes when an import would write others (its spacing, the order of its
    // fields): an import writes the document as it was.
    if let Some(bytes) = found {
        let written = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Invariant {
            what: format!("workspace document of user {id}: {e}"),
        })?;
        if written != bytes {
            let text = std::str::from_utf8(&bytes).map_err(|e| {
                Error::invalid(
                    "workspace document",
                    format!("the workspace document of user {id} is not UTF-8 ({e})"),
                )
            })?;
            line["text"] = json!(text);
        }
    }
    add_modified(
        &mut line,
        &ws.dir(id).join(crate::workspace::WORKSPACE_FILE),
    );
    // Removed pieces stay out, but not their numbers: an import gives none of them again.
    if let Some(n) = ws.highest_trashed(id)? {
        line["trashed_up_to"] = json!(n);
    }
    write_line(out, &line, summary)?;
    summary.workspaces += 1;
    ws.pieces(id, &mut |n, bytes| {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::invalid("piece", format!("piece {n} of user {id} is not JSON ({e})"))
        })?;
        summary.pieces += 1;
        let mut line = json!({"piece": n, "user": id, "doc": doc});
        // The file's own bytes when the document alone would not give them back (its
        // spacing, line breaks, a trailing newline): an import writes the piece as it was.
        let compact = serde_json::to_vec(&line["doc"]).map_err(|e| Error::Invariant {
            what: format!("piece {n} of user {id}: {e}"),
        })?;
        if compact != bytes {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                Error::invalid(
                    "piece",
                    format!("piece {n} of user {id} is not UTF-8 ({e})"),
                )
            })?;
            line["text"] = json!(text);
        }
        add_modified(&mut line, &ws.piece_path(id, n));
        write_line(out, &line, summary)
    })?;
    let user_dir = Path::new("users").join(id.to_string());
    summary
        .left_out
        .extend(ws.outside_layout(id)?.into_iter().map(|p| user_dir.join(p)));
    Ok(())
}

/// What the store holds beyond what `redkeep init` makes, named for a message, or `None`.
/// `init` makes the system roles and at most one user, an administrator, with their
/// credential, role grants, personal org and its membership, and audit events about them;
/// an import replaces all of it. Anything else (a role, an org, an invite, a session, a key,
/// an audit event about anything else, a record of any other table, an application's
/// included) would be lost.
fn held_data(tx: &WriteTx<'_>) -> Result<Option<String>> {
    use crate::auth::orgs::{Org, OrgMember};
    use crate::auth::roles::{Role, UserRole};
    use crate::auth::users::Credential;
    use crate::store::Record;
    let users = tx.table::<User>().range(KeyRange::all(), Order::Asc, 2)?;
    let admin = match users.as_slice() {
        [] => None,
        [u] if u.is_admin => Some(u.id),
        [u] => return Ok(Some(format!("user {}, who is not an administrator", u.id))),
        _ => return Ok(Some("more than one user".into())),
    };
    let others = |user: u64| admin != Some(user);
    let mut orgs = 0;
    // (The decoy credential a login with no account writes is no one's data.)
    let held = first_foreign(tx, |c: &Credential| {
        (others(c.user_id) && !crate::auth::users::is_decoy_owner(c.user_id))
            .then(|| format!("a credential of user {}", c.user_id))
    })?
    .or(first_foreign(tx, |g: &UserRole| {
        others(g.user_id).then(|| format!("a role grant to user {}", g.user_id))
    })?)
    .or(first_foreign(tx, |r: &Role| {
        (!r.is_system).then(|| format!("role {}", r.name))
    })?)
    .or(first_foreign(tx, |o: &Org| {
        orgs += 1;
        let own = o.is_personal && orgs == 1 && admin.is_some();
        (!own).then(|| format!("org {}", o.slug))
    })?)
    .or(first_foreign(tx, |m: &OrgMember| {
        others(m.user_id).then(|| format!("a member of org {}", m.org_id))
    })?);
    if held.is_some() {
        return Ok(held);
    }
    // Every other table, whether this handle has a type for it or not, must be empty.
    let kept: BTreeSet<String> = [
        User::TABLE,
        Credential::TABLE,
        UserRole::TABLE,
        Role::TABLE,
        Org::TABLE,
        OrgMember::TABLE,
        crate::auth::audit::AuditEvent::TABLE,
    ]
    .iter()
    .map(|t| crate::store::record_table(t))
    .collect();
    let raw = tx.raw_write()?;
    for name in raw.table_names()? {
        if let Some(table) = name.strip_prefix("r:")
            && !kept.contains(&name)
        {
            let n = raw.len(&name)?;
            if n > 0 {
                return Ok(Some(format!("{n} record(s) in table {table}")));
            }
        }
    }
    // `init`'s events are all about its administrator; any other tells of work an import
    // would erase from the log (a user made and deleted again, a role, an org).
    first_foreign(tx, |e: &crate::auth::audit::AuditEvent| {
        match e.subject_user {
            Some(u) if !others(u) => None,
            _ => Some(format!(
                "audit event {} ({} {})",
                e.seq, e.action, e.subject
            )),
        }
    })
}

/// The first record of `R`, in key order, that `foreign` names (one `init` does not make).
fn first_foreign<R: crate::store::Record>(
    tx: &WriteTx<'_>,
    mut foreign: impl FnMut(&R) -> Option<String>,
) -> Result<Option<String>> {
    let mut found = None;
    tx.table::<R>().for_each(KeyRange::all(), Order::Asc, |r| {
        found = foreign(&r);
        Ok(found.is_none())
    })?;
    Ok(found)
}

fn line_err(n: u64, why: impl std::fmt::Display) -> Error {
    Error::invalid("import", format!("line {n}: {why}"))
}

/// Why a line did not apply: the line is at fault (the text says how), or the store failed
/// under it (a lost connection, a full disk), which is no fault of the line.
enum LineFault {
    Input(String),
    Store(Error),
}

impl From<String> for LineFault {
    fn from(why: String) -> LineFault {
        LineFault::Input(why)
    }
}

impl From<&str> for LineFault {
    fn from(why: &str) -> LineFault {
        LineFault::Input(why.to_string())
    }
}

impl From<Error> for LineFault {
    fn from(e: Error) -> LineFault {
        if store_fault(&e) {
            LineFault::Store(e)
        } else {
            LineFault::Input(e.to_string())
        }
    }
}

/// Whether `e` is the store failing (no fault of a line).
fn store_fault(e: &Error) -> bool {
    matches!(
        e,
        Error::Storage { .. }
            | Error::Io { .. }
            | Error::Damaged { .. }
            | Error::InUse { .. }
            | Error::Busy { .. }
            | Error::ReadOnly { .. }
            | Error::Cancelled { .. }
            | Error::Invariant { .. }
    )
}

/// `InvalidInput` naming line `n` when `e` is the line's fault; `e` as it is when the store
/// failed.
fn fault_at(n: u64, e: Error) -> Error {
    match LineFault::from(e) {
        LineFault::Input(why) => line_err(n, why),
        LineFault::Store(e) => e,
    }
}

/// Record and index lines read but not yet written: written a batch at a time, so that on
/// a server an import is a few round trips per few hundred lines, not a few per line.
#[derive(Default)]
struct Pending {
    /// The records of registered tables, by line number.
    records: NewRecords<u64>,
    /// Raw entries (tables no type was registered for, and their indexes), in the order
    /// read, a run per engine table.
    raw: Vec<(String, Entries)>,
    raw_count: usize,
}

impl Pending {
    /// Adds a raw entry; returns whether the batch is full.
    fn put(&mut self, table: String, key: &[u8], value: &[u8]) -> bool {
        if self.raw.last().is_none_or(|(t, _)| *t != table) {
            self.raw.push((table, Entries::new(usize::MAX)));
        }
        self.raw_count += 1;
        let full = self.raw.last_mut().is_some_and(|(_, e)| e.push(key, value));
        full || self.raw_count >= NewRecords::<u64>::RECORDS
    }

    /// Writes what waits. A record the store refuses (a clash) is named by its line, as
    /// when each line was written as it was read.
    ///
    /// # Errors
    /// `InvalidInput` naming the line of a refused record; the store's error when it failed.
    fn write(&mut self, tx: &WriteTx<'_>) -> Result<()> {
        self.records.write(tx).map_err(|refused| match refused {
            Refused::Record(n, e) => fault_at(n, e),
            Refused::Store(e) => e,
        })?;
        self.raw_count = 0;
        for (table, mut entries) in std::mem::take(&mut self.raw) {
            entries.write(tx.raw_write()?, &table)?;
        }
        Ok(())
    }
}

/// Applies line `n`, of a table, index, shape, catalog, sequence or meta kind, inside `tx`:
/// a record or index entry waits in `pending` until a batch is full; a line of another
/// kind is applied once what waits is written (it may change how records are stored).
///
/// # Errors
/// `InvalidInput` naming the line when the line (or, once a batch is written, a waiting
/// one) is at fault; the store's own error, as it is, when the store failed under it.
fn apply(
    tx: &WriteTx<'_>,
    tables: &BTreeMap<&str, std::sync::Arc<dyn TableCheck>>,
    v: &Value,
    n: u64,
    summary: &mut TransferSummary,
    pending: &mut Pending,
) -> Result<()> {
    if v.get("table").is_none() && v.get("index").is_none() {
        pending.write(tx)?;
    }
    match apply_line(tx, tables, v, summary, n, pending) {
        Ok(true) => pending.write(tx),
        Ok(false) => Ok(()),
        Err(LineFault::Input(why)) => Err(line_err(n, why)),
        Err(LineFault::Store(e)) => Err(e),
    }
}

/// [`apply`], its faults not yet tied to the line; returns whether `pending` is full.
fn apply_line(
    tx: &WriteTx<'_>,
    tables: &BTreeMap<&str, std::sync::Arc<dyn TableCheck>>,
    v: &Value,
    summary: &mut TransferSummary,
    n: u64,
    pending: &mut Pending,
) -> std::result::Result<bool, LineFault> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    if let Some(table) = s("table") {
        if let Some(record) = v.get("record") {
            let t = tables.get(table).ok_or_else(|| {
                format!("unknown table {table:?}: this handle has no type for it (register it with `Redkeep::register_table`)")
            })?;
            let key = s("key").ok_or("a table line needs the record's key")?;
            let full = pending.records.push(n, t.stage(tx, key, record)?);
            *summary.records.entry(table.to_string()).or_default() += 1;
            return Ok(full);
        } else {
            if tables.contains_key(table) {
                return Err(format!(
                    "records of {table} are imported as JSON (a \"record\" field), which is checked, and this line holds raw bytes; export from a handle that registered the table's type, or import with a handle that has not registered it (and register it after)"
                ).into());
            }
            let key = s("key").ok_or("a table line needs the record's key")?;
            let value = STANDARD
                .decode(s("value").ok_or("a raw record needs a value")?)
                .map_err(|e| format!("value is not base64 ({e})"))?;
            let key = unhex(key).ok_or("key is not hex")?;
            // A plain name, or the quarantine of one (records a repair set aside).
            let plain = table.strip_prefix("quarantine:").unwrap_or(table);
            if plain.is_empty() || plain.contains(':') {
                return Err(format!("table name {table:?} is not allowed").into());
            }
            let full = pending.put(format!("r:{table}"), &key, &value);
            *summary.records.entry(table.to_string()).or_default() += 1;
            return Ok(full);
        }
    } else if let (Some(index), Some(key), Some(value)) = (s("index"), s("key"), s("value")) {
        let (table, name) = index.split_once(':').ok_or("index must be table:name")?;
        if tables.contains_key(table) {
            return Err(format!(
                "index entries of {table} are rebuilt from its records; remove this line"
            )
            .into());
        }
        let key = unhex(key).ok_or("key is not hex")?;
        let value = unhex(value).ok_or("value is not hex")?;
        return Ok(pending.put(format!("i:{table}:{name}"), &key, &value));
    } else if let Some(id) = s("shape") {
        let id = u64::from_str_radix(id, 16).map_err(|_| "shape id is not 16 hex digits")?;
        let names: Vec<Box<str>> = v
            .get("names")
            .and_then(Value::as_array)
            .ok_or("a shape needs names")?
            .iter()
            .map(|n| {
                n.as_str()
                    .map(Box::from)
                    .ok_or("a shape name is not a string")
            })
            .collect::<std::result::Result<_, _>>()?;
        tx.put_shape(id, &names)?;
    } else if let Some(info) = v.get("catalog") {
        let info: TableInfo =
            serde_json::from_value(info.clone()).map_err(|e| format!("catalog entry: {e}"))?;
        tx.put_catalog(&info)?;
    } else if let Some(seq) = s("sequence") {
        // A sequence is named after its table, and so follows the same rule.
        if seq.is_empty() || seq.contains(':') {
            return Err(format!(
                "sequence name {seq:?} is not allowed: a sequence is named after its table \
                 (not empty, without `:`)"
            )
            .into());
        }
        let value = v
            .get("value")
            .and_then(Value::as_u64)
            .filter(|&n| i64::try_from(n).is_ok())
            .ok_or_else(|| {
                format!(
                    "the value of sequence {seq:?} must be a whole number from 0 to {}",
                    i64::MAX
                )
            })?;
        tx.raise_sequence(seq, value)?;
    } else if let (Some(key), Some(value)) = (s("meta"), s("value")) {
        if let Some((_, what)) = crate::store::UNFINISHED_MARKS
            .iter()
            .find(|(m, _)| *m == key)
        {
            return Err(format!(
                "meta {key:?} is the mark {what} stopped part way leaves in its own data dir, \
                 which no export carries; remove this line (and count one line less in the \
                 end line); nothing was imported"
            )
            .into());
        }
        let bytes = STANDARD
            .decode(value)
            .map_err(|e| format!("meta value is not base64 ({e})"))?;
        // The store keeps its own id and copy, which its data dir names (no export carries
        // them).
        if key != crate::store::STORE_ID && key != crate::store::STORE_INSTANCE {
            tx.set_meta(key, &bytes)?;
        }
    } else {
        return Err(
            "expected a table, index, shape, catalog, sequence, meta, workspace or piece line"
                .into(),
        );
    }
    Ok(false)
}

/// Reads an export into the store, which must be empty or fresh from `init` (its
/// administrator is replaced). Every record line goes into one write transaction, which is
/// checked (records, indexes, references) before it commits, so a bad line or a broken
/// reference changes nothing; then the workspace documents and pieces are written. Id
/// sequences are raised past every imported id. Calls `progress` with the lines read.
///
/// On PostgreSQL the import has the store alone, as `restore` and `reset` do: it is refused
/// while another process has the store open.
///
/// # Errors
/// `InvalidInput` naming the line at fault or the problems `check` found; `Denied` when the
/// store holds data; `InUse` on PostgreSQL when another process has the store open; `Busy`
/// when its transaction clashed with a concurrent one of this process (nothing was imported).
pub fn import(
    rk: &Redkeep,
    input: &mut dyn BufRead,
    progress: &dyn Fn(u64),
) -> Result<TransferSummary> {
    // On PostgreSQL other processes' writes would run beside the import's one long
    // transaction (and clash with it, or land in the tables it replaces); a redb file's
    // write transaction keeps every other writer out already.
    let imported = if rk.store().engine() == "postgres" {
        rk.store()
            .alone_with("be imported", || import_alone(rk, input, progress))
    } else {
        import_alone(rk, input, progress)
    };
    // Its hashes may be of other schemes or costs (an export of an adopted store), even
    // when it failed part way.
    rk.forget_password_profiles();
    imported
}

/// [`import`] once no other process writes to the store.
fn import_alone(
    rk: &Redkeep,
    input: &mut dyn BufRead,
    progress: &dyn Fn(u64),
) -> Result<TransferSummary> {
    let tables: BTreeMap<&str, std::sync::Arc<dyn TableCheck>> =
        rk.tables().into_iter().map(|t| (t.name(), t)).collect();
    let mut summary = TransferSummary::default();
    let mut spool = tempfile::tempfile().map_err(|e| Error::io("creating a temp file", e))?;
    let mut input = Some(input);
    // The workspace lines, checked before the records commit: by user, the line of its
    // document; by (user, piece), the line of the piece.
    let mut docs: BTreeMap<u64, u64> = BTreeMap::new();
    let mut pieces: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    rk.store().write_here(|tx| {
        // An engine that retries a write on a clash (PostgreSQL) would run this again, but
        // the input has been read.
        let input = input.take().ok_or_else(|| Error::Busy {
            what: "the import's transaction clashed with a concurrent one of this process and \
                   was rolled back, so nothing was imported; its input is read as it goes, so \
                   it is not tried again by itself"
                .into(),
        })?;
        // An import that stopped after its records: its records and folders are replaced,
        // but only while they are as it left them (its mark holds their digest). What was
        // written since would be lost without a word.
        let resuming = match tx.meta(IMPORT_UNFINISHED)? {
            None => false,
            Some(left) if left == records_digest(tx)?.as_bytes() => true,
            Some(_) => {
                return Err(Error::denied(
                    "an import stopped part way here, and the store was changed since (its \
                     records are not those the import wrote), so running it again would \
                     lose those changes; nothing was imported: run `redkeep reset` (it \
                     keeps a copy of the store), then import again",
                ));
            }
        };
        if resuming {
            rk.workspaces().trash_all(rk.now())?;
            drop_unregistered(tx, &tables)?;
        } else if let Some(what) = held_data(tx)? {
            return Err(Error::denied(format!(
                "the store holds data ({what}); import needs an empty store or one fresh from `redkeep init` (see `redkeep reset`)",
            )));
        } else {
            // Fresh from `init`: its administrator (if it made one) is replaced too.
            summary.replaced_admin = tx
                .table::<User>()
                .range(KeyRange::all(), Order::Asc, 1)?
                .into_iter()
                .next()
                .map(|u| u.email);
        }
        // The export's users get the export's folders: any folder already there (a user's
        // from before, or another deployment's) would be refused half-way, after the records.
        let taken = rk.workspaces().taken_ids()?;
        if !taken.is_empty() {
            let shown: Vec<String> = taken.iter().map(|id| format!("users/{id}")).collect();
            return Err(Error::denied(format!(
                "the data dir already holds workspace folders ({}) in {}; import writes the export's own: move that folder away (or run `redkeep reset`, which moves them to the trash), then import again; nothing was imported",
                crate::top::first_few(&shown, 5),
                rk.workspaces().root().join("users").display(),
            )));
        }
        for t in tables.values() {
            t.clear(tx)?;
        }
        // The records are the export's, and so is the version their store was made at (a
        // meta line, when the export has one): this file's own would claim steps never ran
        // on them.
        tx.remove_meta(crate::store::BORN_AT)?;
        tx.set_meta(IMPORT_UNFINISHED, b"1")?;
        // The format the header names (0: no header yet), and whether the end line was read.
        let mut format = 0;
        let mut ended = false;
        let mut n = 0u64;
        let cap = max_line_bytes(rk);
        let mut raw = Vec::new();
        let mut pending = Pending::default();
        let mut read_lines = || -> Result<()> {
        loop {
            raw.clear();
            let read = std::io::Read::take(&mut *input, cap + 1)
                .read_until(b'\n', &mut raw)
                .map_err(|e| Error::io(format!("reading line {}", n + 1), e))?;
            if read == 0 {
                break;
            }
            n += 1;
            if raw.len() as u64 > cap {
                return Err(line_err(n, format!("the line is longer than {cap} bytes, more than any line of an export holds: this is not a redkeep export (or it was damaged); nothing was imported")));
            }
            let line = std::str::from_utf8(&raw)
                .map_err(|e| line_err(n, format!("not UTF-8 text ({e}); nothing was imported")))?
                .trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            if ended {
                return Err(line_err(n, "a line after the export's end line; the file holds more than one export, or was changed"));
            }
            // A line wraps a document that may nest as deep as a document may.
            let v: Value = crate::workspace::parse_wrapped(line.as_bytes()).map_err(|e| line_err(n, format!("not JSON ({e})")))?;
            summary.lines += 1;
            if summary.lines % 1000 == 0 {
                progress(summary.lines);
            }
            if format == 0 {
                let version = v.get("schema_version").and_then(Value::as_u64);
                format = match v.get("redkeep_export").and_then(Value::as_u64) {
                    Some(f @ (2 | EXPORT_FORMAT)) => f,
                    _ => return Err(line_err(n, format!("the first line must be the header of a redkeep export of format 2 to {EXPORT_FORMAT}"))),
                };
                match version {
                    Some(SCHEMA_VERSION) => {}
                    Some(other) => return Err(line_err(n, format!(
                        "the export has schema version {other}; this build imports version {SCHEMA_VERSION} (import it with the redkeep that wrote it, `migrate up`, and export again)"
                    ))),
                    None => return Err(line_err(n, "the header has no schema version")),
                }
                continue;
            }
            if v.get("redkeep_export_end").is_some() {
                let before = summary.lines - 1;
                let counted = v.get("lines").and_then(Value::as_u64);
                if format < FORMAT_WITH_END || counted != Some(before) {
                    return Err(line_err(n, match counted {
                        Some(c) if format >= FORMAT_WITH_END => format!("the export's end line counts {c} lines before it, but {before} came: lines are missing or were added; nothing was imported"),
                        _ => "a malformed end line".to_string(),
                    }));
                }
                ended = true;
                continue;
            }
            if v.get("workspace").is_some() || v.get("piece").is_some() {
                let ok = v.get("doc").is_some()
                    && (v.get("workspace").and_then(Value::as_u64).is_some()
                        || (v.get("piece").and_then(Value::as_u64).is_some()
                            && v.get("user").and_then(Value::as_u64).is_some()));
                if v.get("modified").is_some_and(|m| m.as_i64().is_none_or(|t| t < 0)) {
                    return Err(line_err(n, "\"modified\" must be the file's time in whole seconds since 1970; nothing was imported"));
                }
                if let Some(nanos) = v.get("modified_nanos")
                    && (nanos.as_u64().is_none_or(|t| t >= 1_000_000_000) || v.get("modified").is_none())
                {
                    return Err(line_err(n, "\"modified_nanos\" is the part of a second of \"modified\", beside it: a whole number from 0 to 999999999; nothing was imported"));
                }
                if let Some(t) = v.get("trashed_up_to") {
                    let fits = t.as_u64().is_some_and(|t| {
                        crate::workspace::piece_within(t, crate::workspace::MAX_JSON_PIECE).is_ok()
                    });
                    if !fits || v.get("workspace").is_none() {
                        return Err(line_err(n, format!("\"trashed_up_to\" belongs on a workspace line and is the highest number of a removed piece, a whole number from 1 to {}; nothing was imported", crate::workspace::MAX_JSON_PIECE)));
                    }
                }
                if !ok {
                    return Err(line_err(n, if v.get("workspace").is_some() {
                        "a workspace line needs \"workspace\" (a user id, a whole number) and \"doc\"; nothing was imported"
                    } else {
                        "a piece line needs \"user\" (a user id), \"piece\" (its number, a whole number) and \"doc\"; nothing was imported"
                    }));
                }
                if let Some(doc) = v.get("doc").filter(|_| v.get("workspace").is_some()) {
                    let Value::Object(map) = doc else {
                        return Err(line_err(n, "a workspace doc must be a JSON object"));
                    };
                    WorkspaceDoc::from_map(map.clone()).map_err(|e| line_err(n, e))?;
                    if let Some(text) = doc_text(&v).map_err(|e| line_err(n, e))? {
                        crate::workspace::within_depth("workspace document", text.as_bytes())
                            .map_err(|e| line_err(n, format!("{e}; nothing was imported")))?;
                    }
                    // Deeper than a read takes, it would import, then fail every read.
                    let bytes = serde_json::to_vec(doc).map_err(|e| line_err(n, e.to_string()))?;
                    crate::workspace::within_depth("workspace document", &bytes)
                        .map_err(|e| line_err(n, format!("{e}; nothing was imported")))?;
                    let user = v.get("workspace").and_then(Value::as_u64).unwrap_or_default();
                    if let Some(first) = docs.insert(user, n) {
                        return Err(line_err(n, format!("a second workspace document of user {user} (the first is on line {first}); an export has one; nothing was imported")));
                    }
                } else {
                    let user = v.get("user").and_then(Value::as_u64).unwrap_or_default();
                    let piece = v.get("piece").and_then(Value::as_u64).unwrap_or_default();
                    let bytes = piece_bytes(&v).map_err(|e| line_err(n, e))?;
                    crate::workspace::within_depth("piece", &bytes)
                        .map_err(|e| line_err(n, format!("{e}; nothing was imported")))?;
                    // (Piece 0 too: a gallery holds it when an adopted deployment did, and an
                    // export carries it.)
                    if piece != 0 {
                        crate::workspace::piece_within(piece, crate::workspace::MAX_JSON_PIECE)
                            .map_err(|e| line_err(n, format!("{e}; nothing was imported")))?;
                    }
                    if let Some(first) = pieces.insert((user, piece), n) {
                        return Err(line_err(n, format!("a second piece {piece} of user {user} (the first is on line {first}); an export has one; nothing was imported")));
                    }
                }
                writeln!(spool, "{n}\t{line}").map_err(|e| Error::io("spooling workspace lines", e))?;
                continue;
            }
            apply(tx, &tables, &v, n, &mut summary, &mut pending)?;
        }
        Ok(())
        };
        match read_lines() {
            // A store that failed is in no state to write more (a PostgreSQL transaction
            // refuses every statement after a failed one).
            Err(e) if store_fault(&e) => return Err(e),
            // The lines that wait were read before the one at fault: one of them may be
            // refused too, and is named first, as when every line was written as read.
            Err(e) => {
                pending.write(tx)?;
                return Err(e);
            }
            Ok(()) => pending.write(tx)?,
        }
        if format == 0 {
            return Err(Error::invalid("import", "the input is empty; expected a redkeep export"));
        }
        if format >= FORMAT_WITH_END && !ended {
            return Err(Error::invalid(
                "import",
                format!("the export stops at line {n} without its end line: it was cut short (an interrupted export or copy); nothing was imported; export again"),
            ));
        }
        for t in tables.values() {
            if let Some(id) = t.highest_id(tx)? {
                tx.raise_sequence(t.name(), id)?;
            }
        }
        // Every folder line has its user among the records: found now, before the records
        // commit, a bad line changes nothing.
        let users = tx.table::<User>();
        let first_lines = docs.iter().map(|(u, n)| (*u, *n)).chain(pieces.iter().map(|((u, _), n)| (*u, *n)));
        for (user, n) in first_lines {
            if !users.contains(&user)? {
                return Err(line_err(n, format!("user {user} has no record in the export; a workspace or piece line needs its user; nothing was imported")));
            }
        }
        let mut report = CheckReport::new();
        for t in tables.values() {
            t.check(tx as &dyn Source, &mut report)?;
        }
        crate::auth::references::check(tx, &mut report)?;
        if !report.ok {
            let shown: Vec<&str> = report.problems.iter().take(5).map(String::as_str).collect();
            return Err(Error::invalid(
                "import",
                format!(
                    "the imported data fails its check ({} problem(s): {}); nothing was imported",
                    report.problems.len(),
                    shown.join("; ")
                ),
            ));
        }
        // Committed with the records, until the folders are written too.
        tx.set_meta(IMPORT_UNFINISHED, records_digest(tx)?.as_bytes())?;
        Ok(())
    })
    .map_err(|e| {
        let back = if rk.store().engine() == "postgres" {
            "once the server is back"
        } else {
            "once the disk works again (space freed, the fault fixed)"
        };
        crate::store::with_outcome(
            e,
            &format!(
                "nothing was imported: the store is as it was before the import; run the same \
                 import again {back}"
            ),
            &format!(
                "the records may have been stored all the same, without their workspace \
                 folders: run the same import again {back} (it finishes what was stored)"
            ),
        )
    })?;
    // A document counts the pieces the export holds (the gallery decides the count, as a
    // repair would set it): an export taken while pieces were saved, or of a folder whose
    // count was off, imports into a store that passes `check`.
    let mut held: BTreeMap<u64, u64> = BTreeMap::new();
    for (user, _) in pieces.keys() {
        *held.entry(*user).or_default() += 1;
    }
    let with_doc: BTreeSet<u64> = docs.keys().copied().collect();
    if let Err(e) = write_folders(rk, spool, &held, &with_doc, &mut summary) {
        return Err(taken_back(rk, &tables, e));
    }
    rk.store()
        .write_here(|tx| tx.remove_meta(IMPORT_UNFINISHED))?;
    progress(summary.lines);
    Ok(summary)
}

/// A digest (SHA-256, hex) of every record and index entry in `tx`: the mark an import
/// leaves until its folders are written, so that running it again after a kill can tell
/// that nothing was written into the store since.
///
/// # Errors
/// `Storage` when the engine fails.
fn records_digest(tx: &WriteTx<'_>) -> Result<String> {
    use sha2::{Digest, Sha256};
    let raw = Source::raw(tx);
    let mut names = raw.table_names()?;
    names.retain(|n| n.starts_with("r:") || n.starts_with("i:"));
    names.sort();
    let mut hash = Sha256::new();
    // Each field with its length first, so that no two sequences of fields hash alike.
    let field = |h: &mut Sha256, bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    for name in names {
        field(&mut hash, name.as_bytes());
        raw.range(&name, &KeyRange::all(), Order::Asc, &mut |k, v| {
            field(&mut hash, k);
            field(&mut hash, v);
            Ok(true)
        })?;
    }
    Ok(hex(&hash.finalize()))
}

/// After the records were committed, writing the folders failed (`e`): the records are taken
/// out again and the folders written go to the trash, so a failed import leaves an empty
/// store rather than accounts without their files. The error says so (or, should that fail
/// too, what to run).
/// Deletes the tables of records no registered type owns (with their index tables): what
/// an import wrote as raw bytes. An import runs on a store that held none, so taking one
/// back (or running a stopped one again) leaves none behind; the next import would find
/// them and refuse the store as holding data.
///
/// # Errors
/// `Storage` when a table cannot be deleted.
fn drop_unregistered(
    tx: &WriteTx<'_>,
    tables: &BTreeMap<&str, std::sync::Arc<dyn TableCheck>>,
) -> Result<()> {
    let raw = tx.raw_write()?;
    for name in raw.table_names()? {
        let owner = match (name.strip_prefix("r:"), name.strip_prefix("i:")) {
            (Some(table), _) => table,
            (None, Some(index)) => index.split(':').next().unwrap_or(index),
            (None, None) => continue,
        };
        // A quarantine table (of any table) holds only what an import wrote: the store held
        // none before one (as `held_data` makes sure).
        if owner.starts_with("quarantine:") || !tables.contains_key(owner) {
            raw.delete_table(&name)?;
        }
    }
    Ok(())
}

fn taken_back(
    rk: &Redkeep,
    tables: &BTreeMap<&str, std::sync::Arc<dyn TableCheck>>,
    e: Error,
) -> Error {
    let undone = rk
        .store()
        .write_here(|tx| {
            for t in tables.values() {
                t.clear(tx)?;
            }
            drop_unregistered(tx, tables)?;
            tx.remove_meta(IMPORT_UNFINISHED)
        })
        .and_then(|()| rk.workspaces().trash_all(rk.now()).map(drop));
    let what = match undone {
        Ok(()) => "the import was taken back (records out again, folders written moved to the trash), so the store is empty: fix the cause and import again".to_string(),
        Err(u) => format!("taking the import back failed too ({u}): run `redkeep reset`, then import again"),
    };
    match e {
        Error::Io { context, source } => Error::io(format!("{context}; {what}"), source),
        e => Error::invalid(
            "import",
            format!("writing the workspace folders failed ({e}); {what}"),
        ),
    }
}

/// The longest line an import reads: four times the largest workspace document or piece
/// (a piece's line holds its document and, escaped, its text), and a MiB more. A file
/// without line breaks (a wrong file, `/dev/zero`) is refused there, not read into memory
/// whole.
fn max_line_bytes(rk: &Redkeep) -> u64 {
    rk.workspaces()
        .max_bytes()
        .saturating_mul(4)
        .saturating_add(1 << 20)
}

// The bytes to write for a piece line: its "text" (the file as it was) when there is one,
// which must hold the line's "doc"; else the "doc" as compact JSON.
fn piece_bytes(v: &Value) -> std::result::Result<Vec<u8>, String> {
    let doc = v.get("doc").unwrap_or(&Value::Null);
    match v.get("text") {
        None => serde_json::to_vec(doc).map_err(|e| e.to_string()),
        Some(Value::String(text)) => {
            let parsed: Value = serde_json::from_str(text).map_err(|e| {
                format!("a piece's \"text\" must be its JSON file ({e}); nothing was imported")
            })?;
            if &parsed != doc {
                return Err("a piece's \"text\" and \"doc\" differ: edit both alike, or drop \"text\"; nothing was imported".into());
            }
            Ok(text.as_bytes().to_vec())
        }
        Some(_) => {
            Err("a piece's \"text\" must be a string (its JSON file); nothing was imported".into())
        }
    }
}

// The "text" of a workspace line (the file as it was), checked to hold the line's "doc";
// `None` when the line has none.
fn doc_text(v: &Value) -> std::result::Result<Option<&str>, String> {
    let text = match v.get("text") {
        None => return Ok(None),
        Some(Value::String(text)) => text,
        Some(_) => {
            return Err(
                "a workspace's \"text\" must be a string (its JSON file); nothing was imported"
                    .into(),
            );
        }
    };
    let parsed = WorkspaceDoc::parse(text.as_bytes()).map_err(|e| {
        format!("a workspace's \"text\" must be its JSON file ({e}); nothing was imported")
    })?;
    let doc = match v.get("doc") {
        Some(Value::Object(map)) => WorkspaceDoc::from_map(map.clone()).ok(),
        _ => None,
    };
    if doc.as_ref() != Some(&parsed) {
        return Err("a workspace's \"text\" and \"doc\" differ: edit both alike, or drop \"text\"; nothing was imported".into());
    }
    Ok(Some(text))
}

// Writes the spooled workspace documents and pieces, now that their users exist.
fn write_folders(
    rk: &Redkeep,
    mut spool: std::fs::File,
    held: &BTreeMap<u64, u64>,
    with_doc: &BTreeSet<u64>,
    summary: &mut TransferSummary,
) -> Result<()> {
    spool
        .rewind()
        .map_err(|e| Error::io("reading spooled workspace lines", e))?;
    let ws = rk.workspaces();
    // (user, highest removed piece, line): kept from being given again once the pieces are
    // in place.
    let mut trashed = Vec::new();
    for line in BufReader::new(spool).lines() {
        let line = line.map_err(|e| Error::io("reading spooled workspace lines", e))?;
        let (n, text) = line.split_once('\t').unwrap_or(("?", &line));
        let v: Value =
            crate::workspace::parse_wrapped(text.as_bytes()).map_err(|e| Error::Invariant {
                what: format!("spooled line {n}: {e}"),
            })?;
        let doc = v.get("doc").cloned().unwrap_or(Value::Null);
        let at = |e: Error| Error::invalid("import", format!("line {n}: {e}"));
        if let Some(user) = v.get("workspace").and_then(Value::as_u64) {
            let Value::Object(map) = doc else { continue };
            let mut doc = WorkspaceDoc::from_map(map).map_err(|e| at(Error::invalid("doc", e)))?;
            let count = held.get(&user).copied().unwrap_or(0);
            let text = doc_text(&v).map_err(|e| Error::Invariant {
                what: format!("spooled line {n}: {e}"),
            })?;
            // The file as it was, unless its count is not the gallery's: then the document
            // with the count the pieces give.
            match text {
                Some(text) if doc.piece_count == count => {
                    ws.put_doc_as_found(user, text.as_bytes()).map_err(at)?;
                }
                _ => {
                    doc.piece_count = count;
                    ws.put_doc(user, &doc).map_err(at)?;
                }
            }
            set_modified(&ws.dir(user).join(crate::workspace::WORKSPACE_FILE), &v).map_err(at)?;
            if let Some(t) = v.get("trashed_up_to").and_then(Value::as_u64) {
                trashed.push((user, t, n.to_string()));
            }
            summary.workspaces += 1;
        } else if let (Some(piece), Some(user)) = (
            v.get("piece").and_then(Value::as_u64),
            v.get("user").and_then(Value::as_u64),
        ) {
            let bytes = piece_bytes(&v).map_err(|e| Error::Invariant {
                what: format!("spooled line {n}: {e}"),
            })?;
            ws.put_piece_as_found(user, piece, &bytes).map_err(at)?;
            set_modified(&ws.piece_path(user, piece), &v).map_err(at)?;
            summary.pieces += 1;
        }
    }
    for (user, t, n) in trashed {
        ws.keep_number_used(user, t)
            .map_err(|e| Error::invalid("import", format!("line {n}: {e}")))?;
    }
    // The pieces are in place: their count, so that reads need not count them each time.
    for &user in held.keys() {
        ws.settle_count(user)?;
    }
    // Pieces without a document line: a document that counts them.
    for (&user, &count) in held {
        if !with_doc.contains(&user) {
            let doc = WorkspaceDoc {
                piece_count: count,
                ..WorkspaceDoc::default()
            };
            ws.put_doc(user, &doc)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{IMPORT_UNFINISHED, export, import, records_digest};
    use crate::{Error, NewUser, Options, PasswordParams, Redkeep};

    fn open(dir: &std::path::Path) -> Redkeep {
        let options = Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .open_unfinished(true);
        Redkeep::open(dir, options).unwrap()
    }

    fn add_user(rk: &Redkeep, email: &str) -> u64 {
        let new = NewUser {
            email: email.into(),
            ..NewUser::default()
        };
        rk.users().create(new).unwrap().user.id
    }

    /// A record type of an application, with a unique index.
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Ticket {
        id: u64,
        code: String,
    }

    impl Ticket {
        const BY_CODE: crate::Index<Ticket> =
            crate::Index::unique("by_code", |t| Some(crate::key!(t.code.as_str())));
    }

    impl crate::Record for Ticket {
        const TABLE: &'static str = "tickets";
        type Key = u64;
        const INDEXES: &'static [&'static crate::Index<Self>] = &[&Self::BY_CODE];
        fn key(&self) -> u64 {
            self.id
        }
    }

    /// Records go in a batch at a time: per few hundred records a lookup of the keys they
    /// claim and a write, per table; not a lookup and a write per record (on a server each
    /// call is a round trip).
    #[test]
    fn an_import_writes_records_a_batch_at_a_time() {
        use crate::store::ENGINE_CALLS;
        let tmp = tempfile::tempdir().unwrap();
        let from = open(&tmp.path().join("from"));
        from.register_table::<Ticket>().unwrap();
        from.store()
            .write(|tx| {
                for id in 1..=2_000 {
                    let code = format!("T-{id}");
                    tx.table::<Ticket>().insert(&Ticket { id, code })?;
                }
                Ok(())
            })
            .unwrap();
        let mut text = Vec::new();
        export(&from, &mut text, &|_| {}).unwrap();
        let to = open(&tmp.path().join("to"));
        to.register_table::<Ticket>().unwrap();
        ENGINE_CALLS.with_borrow_mut(Vec::clear);
        let summary = import(&to, &mut text.as_slice(), &|_| {}).unwrap();
        let calls = ENGINE_CALLS.with_borrow_mut(std::mem::take);
        assert_eq!(summary.records["tickets"], 2_000);
        let count = |what: &str| calls.iter().filter(|c| **c == what).count();
        // Four batches of tickets: two lookups (keys, codes) and two writes (records, index)
        // each.
        assert!(count("insert_new") < 10, "{}", count("insert_new"));
        assert!(count("put_all") <= 10, "{}", count("put_all"));
        assert!(count("get_each") <= 12, "{}", count("get_each"));
        assert!(to.check(false).unwrap().ok);
    }

    /// What a kill between an import's records and its folders leaves (its mark, holding
    /// the digest of the records it committed; the folders not written).
    fn stop_import(rk: &Redkeep) {
        rk.store()
            .write_here(|tx| tx.set_meta(IMPORT_UNFINISHED, records_digest(tx)?.as_bytes()))
            .unwrap();
        rk.workspaces().trash_all(rk.now()).unwrap();
    }

    /// A stopped import runs again over what it wrote while nothing else was written; once
    /// the store was written to since (a user made, as an application given the store
    /// would), running it again is refused and the write is kept.
    #[test]
    fn a_stopped_import_runs_again_only_over_its_own_records() {
        let tmp = tempfile::tempdir().unwrap();
        let from = open(&tmp.path().join("from"));
        let ann = add_user(&from, "ann@example.com");
        from.workspaces().save_piece(ann, br#"{"a":1}"#).unwrap();
        let mut text = Vec::new();
        export(&from, &mut text, &|_| {}).unwrap();
        let to = open(&tmp.path().join("to"));
        import(&to, &mut text.as_slice(), &|_| {}).unwrap();
        stop_import(&to);
        import(&to, &mut text.as_slice(), &|_| {}).unwrap();
        assert_eq!(to.workspaces().list_pieces(ann).unwrap().len(), 1);
        assert!(to.check(false).unwrap().ok);

        stop_import(&to);
        let newbie = add_user(&to, "newbie@example.com");
        let e = import(&to, &mut text.as_slice(), &|_| {}).unwrap_err();
        assert!(matches!(e, Error::Denied { .. }), "{e}");
        assert!(e.to_string().contains("changed since"), "{e}");
        assert!(to.users().get(newbie).is_ok(), "the write was kept");
        // A mark of an older build, without a digest, cannot tell either.
        to.store()
            .write_here(|tx| tx.set_meta(IMPORT_UNFINISHED, b"1"))
            .unwrap();
        let e = import(&to, &mut text.as_slice(), &|_| {}).unwrap_err();
        assert!(e.to_string().contains("changed since"), "{e}");
    }
}
