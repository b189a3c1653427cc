//! Typed tables: the `Record` trait and the table view over a transaction.
//!
//! A record lives in the table `r:<TABLE>` under its primary key bytes; its value is a format
//! byte, the record type's version and the encoded record (`codec.rs`). Every write of a
//! record rewrites its index entries in the same write transaction, so records and indexes
//! never disagree.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroize;

use super::codec::{self, Stored};
use super::engine::redb_file::needs_reopen;
use super::engine::{KeyRange, Order, RawRead, RawWrite, get_owned};
use super::format::{self, Resolve, UsedShapes};
use super::index::Index;
use super::key::{Key, show_key};
use super::tx::{IndexInfo, ReadTx, Source, TableInfo, WriteTx, resolve_shape};
use crate::error::{Error, Result};

/// A type stored in its own table with a primary key and secondary indexes.
///
/// Records evolve without migrations: fields are stored by name, so a new field that is an
/// `Option` or has `#[serde(default)]` reads as `None` / its default from older records, and
/// a removed field is ignored. A top-level field the type does not declare is kept when the
/// record is rewritten (an update, a `modify`, a `put`): an older build of the application
/// (a rollback, or an old worker still running) that updates a record a newer build wrote
/// keeps the newer build's fields, which the newer build finds again. A field the type
/// dropped for good is listed in [`Record::DROPPED_FIELDS`], so rewrites leave it out. A
/// change that cannot be read that way (a field renamed or retyped) raises
/// [`Record::VERSION`] and reads older versions in [`Record::upgrade`], through a frozen
/// copy of the old shape:
///
/// ```
/// use redkeep::store::{Index, Record, Stored};
/// use redkeep::key;
///
/// // Version 1 had `title`; version 2 calls it `name`. The old shape is kept, frozen.
/// #[derive(serde::Deserialize)]
/// struct ProjectV1 { id: u64, org_id: u64, title: String }
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Project { id: u64, org_id: u64, name: String, archived: Option<bool> }
///
/// impl Project {
///     const BY_ORG: Index<Self> = Index::many("by_org", |p| Some(key!(p.org_id)));
/// }
///
/// impl Record for Project {
///     const TABLE: &'static str = "projects";
///     type Key = u64;
///     const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_ORG];
///     const VERSION: u32 = 2;
///     fn key(&self) -> u64 { self.id }
///     fn upgrade(old: Stored<'_>) -> Result<Self, String> {
///         let v1: ProjectV1 = old.decode()?;
///         Ok(Project { id: v1.id, org_id: v1.org_id, name: v1.title, archived: None })
///     }
/// }
/// ```
pub trait Record: Serialize + DeserializeOwned + 'static {
    /// The table's name; must be unique in the store. Through a `Redkeep` handle, the names
    /// of redkeep's own tables (`users`, `sessions`, …) are kept for its types: a read,
    /// write, delete or id of another type there is `InvalidInput`. Once a type has written
    /// a table through a store handle, another type that declares a different key or
    /// indexes is refused there the same way (one declaring the same, or more indexes, is
    /// let through). It may not be empty or hold `:` or a control character (NUL, a line
    /// break): such a name is `InvalidInput` too.
    const TABLE: &'static str;
    /// The primary key type.
    type Key: Key;
    /// The secondary indexes, kept exact by every write.
    const INDEXES: &'static [&'static Index<Self>] = &[];
    /// The version of this type's shape, stored with every record written. Raise it when a
    /// field is renamed or retyped, and read the older versions in [`Record::upgrade`].
    const VERSION: u32 = 1;
    /// Fields that hold secret material (hashes): shown as `<redacted>` by `redkeep inspect`.
    const SECRET_FIELDS: &'static [&'static str] = &[];
    /// Fields this type no longer has and that a rewrite of a stored record leaves out. Any
    /// other stored field the type does not declare is kept when a record of the same
    /// [`Record::VERSION`] is rewritten (a newer build's field, read by an older one); list a
    /// removed field here (or raise `VERSION`) when its values must go, and always when a
    /// later version may give the name a value of another type. A type with
    /// [`Record::SECRET_FIELDS`] keeps no field it does not declare: what another build
    /// derived from a secret must not outlive a change of the secret.
    const DROPPED_FIELDS: &'static [&'static str] = &[];
    /// Whether the primary key is secret material (a token's hash): `redkeep inspect` then
    /// shows keys as `<redacted>`. By default, whether the key type is ([`Key::SECRET`]).
    const SECRET_KEY: bool = <Self::Key as Key>::SECRET;
    /// Whether the keys come from the table's id sequence ([`Table::next_id`]): an import
    /// then raises the sequence past every imported id.
    const ID_SEQUENCE: bool = false;

    /// The record's primary key.
    fn key(&self) -> Self::Key;

    /// Puts back fields that are not stored in the value because the key holds them (a
    /// token's hash, for instance). Called after every read.
    fn restore_key(&mut self, key: &Self::Key) {
        let _ = key;
    }

    /// Checks a record that comes from outside the application's own code paths (an
    /// import): the rules the type's constructors enforce. The default accepts anything.
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    fn validate(&self) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Reads a record written by an older version of this type (or by the first release's
    /// binary format). The default reads it as the current type, which works whenever the
    /// changes since were additions of optional or defaulted fields, or removals. It must
    /// depend on `old` alone: a decoded record may be reused for the same bytes.
    ///
    /// # Errors
    /// A message saying why the value cannot be read; it is reported as `Error::Corrupt`.
    fn upgrade(old: Stored<'_>) -> std::result::Result<Self, String> {
        old.decode()
    }
}

impl TableInfo {
    /// The catalog entry of record type `R`.
    pub fn of<R: Record>() -> TableInfo {
        TableInfo {
            name: R::TABLE.to_string(),
            version: R::VERSION,
            key_len: <R::Key as Key>::FIXED_LEN,
            indexes: R::INDEXES
                .iter()
                .map(|i| IndexInfo {
                    name: i.name.to_string(),
                    unique: i.unique,
                })
                .collect(),
            secret_fields: R::SECRET_FIELDS.iter().map(|s| s.to_string()).collect(),
            secret_key: R::SECRET_KEY,
        }
    }
}

/// Makes sure the catalog describes `R`'s table as `R` declares it (once per handle and
/// type), first building the indexes of `R` the catalog does not list (see
/// [`build_new_indexes`]; not for redkeep's own tables).
///
/// # Errors
/// `InvalidInput` when the table is kept for another record type; `Denied` when a new
/// unique index cannot be built because two records share its key; `Storage` when the
/// engine fails.
pub(crate) fn declare<R: Record>(tx: &WriteTx<'_>) -> Result<()> {
    tx.register_table(
        R::TABLE,
        std::any::TypeId::of::<R>(),
        std::any::type_name::<R>(),
        TableInfo::of::<R>,
        |before| build_new_indexes::<R>(tx, before),
    )
}

/// The indexes of `R` that the catalog entry `before` (what the table's writers declared
/// last) does not list, as they are now: an index added to the type, or one turned unique
/// or back. Without an entry (a table first written now, or before stores kept a
/// catalog), every index.
pub(crate) fn new_indexes<R: Record>(before: Option<&TableInfo>) -> Vec<&'static Index<R>> {
    R::INDEXES
        .iter()
        .copied()
        .filter(|idx| {
            before.is_none_or(|b| {
                !b.indexes
                    .iter()
                    .any(|i| i.name == idx.name && i.unique == idx.unique)
            })
        })
        .collect()
}

/// Whether `R`'s table has indexes the store has not built yet ([`new_indexes`] of its
/// catalog entry, when it has records): the first write of `R` through a handle builds
/// them.
///
/// # Errors
/// `Storage` when the store cannot be read.
pub(crate) fn indexes_behind<R: Record, S: Source + super::tx::Meta + ?Sized>(
    tx: &S,
) -> Result<bool> {
    let entry = tx.catalog()?.into_iter().find(|t| t.name == R::TABLE);
    Ok(!new_indexes::<R>(entry.as_ref()).is_empty()
        && (entry.is_some() || tx.raw().len(records_of::<R>())? > 0))
}

/// Builds, from the records already stored, the indexes of `R` that the catalog entry
/// `before` does not list ([`new_indexes`]), so that lookups through an index added to an
/// application's type find the records written before it, and a new unique index holds
/// across old and new records. Whatever the index table held (from an earlier life of an
/// index of that name) is replaced. Records that do not read as `R` (see `check`) get no
/// entries.
///
/// # Errors
/// `Denied` when two records share a key of a new unique index: the catalog is left as it
/// was, so writes of `R` are refused the same way until one of the two is deleted (or a
/// repair through a handle that registered `R` moves the later one aside). The new
/// indexes' tables are emptied, but for those the catalog lists under the same name
/// (another version's, as not unique, say), which stay as they were for that version when
/// the write fails, as this error makes it; `Storage` when the engine fails.
fn build_new_indexes<R: Record>(tx: &WriteTx<'_>, before: Option<&TableInfo>) -> Result<()> {
    let new = new_indexes::<R>(before);
    if new.is_empty() {
        return Ok(());
    }
    let raw = tx.raw_write()?;
    let records = records_of::<R>();
    if before.is_none() && raw.len(records)? == 0 {
        return Ok(());
    }
    for idx in &new {
        raw.delete_table(index_name(idx))?;
    }
    let resolve = |id| resolve_shape(raw, id);
    let mut clash = None;
    raw.range(records, &KeyRange::all(), Order::Asc, &mut |pk, value| {
        let record = match decode_record::<R>(pk, value, &resolve) {
            Ok(r) if r.key().to_bytes() == pk => r,
            _ => return Ok(true),
        };
        for idx in &new {
            let Some(key) = index_entry(idx, &record, pk) else {
                continue;
            };
            let name = index_name(idx);
            if idx.unique
                && let Some(holder) = get_owned(raw, name, &key)?
                && holder != pk
            {
                clash = Some((idx.name, holder, pk.to_vec()));
                return Ok(false);
            }
            raw.put(name, &key, &entry_value(idx, pk))?;
        }
        Ok(true)
    })?;
    let Some((index, first, second)) = clash else {
        return Ok(());
    };
    // Emptied here, should the caller go on after the error. When this transaction fails
    // instead (as the error makes it), that is rolled back, and the store empties them in
    // a write of its own, unless the catalog lists an index of that name (another
    // version's, whose entries must stay): entries of an index's earlier life must not be
    // read as this one's.
    for idx in &new {
        raw.delete_table(index_name(idx))?;
    }
    tx.note_refused_build(super::tx::RefusedBuild {
        table: R::TABLE,
        indexes: new
            .iter()
            .map(|idx| (idx.name, idx.unique, index_name(idx)))
            .collect(),
    });
    let table = R::TABLE;
    Err(Error::Denied {
        reason: format!(
            "the unique index {table}.{index}, new to the table, cannot be built: records {} and {} share its key; delete one of them (or change it through a type without the index), or run a repair (`Redkeep::check(true)` on a handle that registered the type), which moves the later one to quarantine:{table}; until then, writes of {table} are refused",
            key_in_report::<R>(&first),
            key_in_report::<R>(&second)
        ),
    })
}

/// Encodes a record inside `tx`, registering the shapes it uses and its table in the catalog.
pub(crate) fn encode<R: Record>(tx: &WriteTx<'_>, record: &R) -> Result<Vec<u8>> {
    declare::<R>(tx)?;
    let mut used = UsedShapes::default();
    let bytes = codec::encode(record, R::VERSION, &mut used).map_err(|reason| {
        Error::invalid(
            "record",
            format!("cannot store a {} record: {reason}", R::TABLE),
        )
    })?;
    for (id, names) in used.0 {
        tx.register_shape(id, &names)?;
    }
    Ok(bytes)
}

/// Fields of a stored record its type does not declare: each name with its value's bytes.
pub(crate) type Kept = Vec<(Box<str>, Vec<u8>)>;

/// The fields of the value `v` stored under `pk` that `R` does not declare (nor drop), with
/// their bytes as stored: what a rewrite keeps (see [`Record::DROPPED_FIELDS`]).
///
/// # Errors
/// `Corrupt` when the value is malformed.
pub(crate) fn undeclared_fields<R: Record>(
    pk: &[u8],
    v: &[u8],
    resolve: Resolve<'_>,
) -> Result<Kept> {
    let stored = Stored::parse(v, resolve).map_err(|r| corrupt::<R>(pk, r))?;
    // A record of another version is read through `Record::upgrade`, which decides what of
    // it is kept; a type serde does not read as a struct has no field list to go by. A
    // record with secret fields is written whole by one build: a field another build derived
    // from the secret (a second hash) must not outlive a change of it.
    if stored.version() != R::VERSION || stored.is_legacy() || !R::SECRET_FIELDS.is_empty() {
        return Ok(Vec::new());
    }
    let Some(fields) = format::declared_fields::<R>() else {
        return Ok(Vec::new());
    };
    // Stored with exactly the type's fields (the common case): nothing else to keep.
    if let Some(id) = stored.struct_shape()
        && format::positional(id, fields, resolve).map_err(|r| corrupt::<R>(pk, r.to_string()))?
    {
        return Ok(Vec::new());
    }
    let kept = stored
        .struct_fields(|name| !fields.contains(&name) && !R::DROPPED_FIELDS.contains(&name))
        .map_err(|r| corrupt::<R>(pk, r))?;
    Ok(kept.into_iter().map(|(n, b)| (n, b.to_vec())).collect())
}

pub(crate) fn record_table(table: &str) -> String {
    format!("r:{table}")
}

pub(crate) fn index_table(table: &str, index: &str) -> String {
    format!("i:{table}:{index}")
}

/// The raw table name of a record type's records (`index` empty) or of one of its indexes,
/// built once per process: typed tables are opened on every access, and their names are
/// `'static` constants, so each distinct pair is leaked once (a program has a fixed handful).
fn static_name(table: &'static str, index: &'static str) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    // Keyed by the constants' addresses and lengths: the same address and length is the
    // same text (the same literal may also sit at two addresses: two entries, same name).
    type Key = (usize, usize, usize, usize);
    let key: Key = (
        table.as_ptr() as usize,
        table.len(),
        index.as_ptr() as usize,
        index.len(),
    );
    // Per thread: a slot per hash of the key, holding the last name that hashed there (one
    // comparison on the hot path), then every name the thread has used, searched in order
    // (which took a hundred instructions on every table access when it came first).
    const SLOTS: usize = 16;
    type Slot = Cell<Option<(Key, &'static str)>>;
    thread_local! {
        static FAST: [Slot; SLOTS] = const { [const { Cell::new(None) }; SLOTS] };
        static NEAR: RefCell<Vec<(Key, &'static str)>> = const { RefCell::new(Vec::new()) };
    }
    // The addresses' bits mixed, so names stored side by side fall in different slots.
    let mixed = (key.0 ^ key.2.rotate_left(29) ^ key.3) as u64;
    let slot = (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SLOTS;
    let remember = |name| {
        let _ = FAST.try_with(|f| f[slot].set(Some((key, name))));
        name
    };
    if let Ok(Some((k, name))) = FAST.try_with(|f| f[slot].get())
        && k == key
    {
        return name;
    }
    if let Some(name) = NEAR
        .try_with(|n| n.borrow().iter().find(|(k, _)| *k == key).map(|e| e.1))
        .ok()
        .flatten()
    {
        return remember(name);
    }
    static ALL: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let text = if index.is_empty() {
        record_table(table)
    } else {
        index_table(table, index)
    };
    let name = {
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match all.get(&text) {
            Some(name) => *name,
            None => {
                let name: &'static str = Box::leak(text.clone().into_boxed_str());
                all.insert(text, name);
                name
            }
        }
    };
    let _ = NEAR.try_with(|n| n.borrow_mut().push((key, name)));
    remember(name)
}

fn records_of<R: Record>() -> &'static str {
    static_name(R::TABLE, "")
}

fn index_name<R: Record>(idx: &Index<R>) -> &'static str {
    static_name(R::TABLE, idx.name)
}

#[cold]
#[inline(never)]
pub(crate) fn corrupt<R: Record>(key: &[u8], reason: impl Into<String>) -> Error {
    Error::Corrupt {
        table: R::TABLE.to_string(),
        key: key_in_report::<R>(key),
        reason: reason.into(),
    }
}

/// A primary key of `R` as errors and reports show it: `<redacted>` when the key is secret
/// material (a token's hash).
pub(crate) fn key_in_report<R: Record>(pk: &[u8]) -> String {
    unless_secret::<R>(|| show_key(pk))
}

/// `show()`, or `<redacted>` when `R`'s keys are secret material: for any text that shows a
/// primary key or bytes holding one.
pub(crate) fn unless_secret<R: Record>(show: impl FnOnce() -> String) -> String {
    if R::SECRET_KEY {
        "<redacted>".to_string()
    } else {
        show()
    }
}

/// Decodes the stored value of the record at `key`, upgrading older versions.
pub(crate) fn decode_record<R: Record>(
    key: &[u8],
    value: &[u8],
    resolve: Resolve<'_>,
) -> Result<R> {
    let stored = Stored::parse(value, resolve).map_err(|r| corrupt::<R>(key, r))?;
    let decoded = if stored.version() == R::VERSION && !stored.is_legacy() {
        stored.decode::<R>()
    } else {
        decode_other_version::<R>(stored)
    };
    let mut record = decoded.map_err(|r| corrupt::<R>(key, misfit_or_damage::<R>(&stored, r)))?;
    let k = R::Key::from_bytes(key).ok_or_else(|| corrupt::<R>(key, "malformed primary key"))?;
    record.restore_key(&k);
    Ok(record)
}

/// Takes back what a write step changed before step error `e`, newest first: removes the
/// index entries in `added`, puts back the `(table, key, value)` entries in `removed`. Returns
/// `e`, or, when taking back fails too, an error that says the transaction is left
/// half-changed and must be abandoned. A failure of the engine itself is passed on as it is
/// (the step's own, or else the one taking back met): an I/O failure after which the engine
/// refuses all work until the file is opened again (the store must see it to recover by
/// reopening the file), a damaged page, or a lost connection to the server (whose
/// transaction is gone, and the same call, made again once it is back, may succeed). None of
/// them is a fault of the caller's code, and the rest of the transaction fails anyway.
fn take_back(
    raw: &dyn RawWrite,
    e: Error,
    added: &[(&str, Vec<u8>)],
    removed: &[(&str, Vec<u8>, Vec<u8>)],
) -> Error {
    let mut back = Ok(());
    for (name, k) in added.iter().rev() {
        back = back.and(raw.remove(name, k).map(drop));
    }
    for (name, k, v) in removed.iter().rev() {
        back = back.and(raw.put(name, k, v));
    }
    match back {
        Ok(()) => e,
        Err(_) if needs_reopen(&e) || engine_failed(&e) => e,
        Err(again) if needs_reopen(&again) || engine_failed(&again) => again,
        Err(again) => Error::Invariant {
            what: format!(
                "{e}; taking back the changes made before it failed too ({again}), so the \
                 transaction must be abandoned (return the error from the write closure)"
            ),
        },
    }
}

/// Whether `e` is a failure of the engine (`Storage`, `Damaged`), not of the write's code
/// (a clash, a table the caller is scanning).
fn engine_failed(e: &Error) -> bool {
    matches!(e, Error::Storage { .. } | Error::Damaged { .. })
}

/// Why a stored value of `R` did not decode: a value whose bytes are whole (format 2, every
/// tag and shape in place) but that does not fit `R` (a field `R` gained without a default, a
/// field of another type) is a mismatch between the type and the data, not damage, and says
/// how to fix the type; anything else is told as it is. Out of line: it runs only on failure.
#[cold]
#[inline(never)]
fn misfit_or_damage<R: Record>(stored: &Stored<'_>, reason: String) -> String {
    if reason.contains(NEWER_VERSION) || !stored.whole() {
        return reason;
    }
    format!(
        "{reason}: the stored value is whole but {DOES_NOT_FIT} {} (version {}); for an \
         application's type that gained a field, make the field an Option or give it \
         #[serde(default)], or raise Record::VERSION and read the old shape in \
         Record::upgrade (in one of redkeep's own tables it is damage)",
        std::any::type_name::<R>(),
        R::VERSION
    )
}

/// A record written by another version of its type: upgraded, or refused when newer. Out of
/// line: the usual record is of the current version, and its path stays small.
#[cold]
#[inline(never)]
fn decode_other_version<R: Record>(stored: Stored<'_>) -> std::result::Result<R, String> {
    if stored.version() > R::VERSION {
        Err(format!(
            "it was {NEWER_VERSION} of the application (record version {}, this build reads up to {})",
            stored.version(),
            R::VERSION
        ))
    } else {
        R::upgrade(stored)
    }
}

/// The entry key of `idx` for `record` stored under `pk`.
pub(crate) fn index_entry<R: Record>(idx: &Index<R>, record: &R, pk: &[u8]) -> Option<Vec<u8>> {
    let mut key = (idx.key)(record)?;
    if !idx.unique {
        key.extend_from_slice(pk);
    }
    Some(key)
}

/// The value stored with an index entry pointing at `pk`.
pub(crate) fn entry_value<R: Record>(idx: &Index<R>, pk: &[u8]) -> Vec<u8> {
    if idx.unique {
        pk.to_vec()
    } else if R::Key::FIXED_LEN.is_some() {
        Vec::new()
    } else {
        let mut out = Vec::with_capacity(2);
        format::put_varint(&mut out, pk.len() as u64);
        out
    }
}

/// The primary key an index entry points at, or `None` when the entry is malformed.
pub(crate) fn entry_target<'e, R: Record>(
    idx: &Index<R>,
    entry: &'e [u8],
    value: &'e [u8],
) -> Option<&'e [u8]> {
    entry_target_raw(idx.unique, R::Key::FIXED_LEN, entry, value)
}

/// The primary key an entry of `idx` points at; `Corrupt` naming the index when the entry is
/// malformed.
fn target_of<'e, R: Record>(idx: &Index<R>, entry: &'e [u8], value: &'e [u8]) -> Result<&'e [u8]> {
    entry_target(idx, entry, value)
        .ok_or_else(|| corrupt::<R>(entry, format!("{} {}", INDEX_ENTRY_ASTRAY[0], idx.name)))
}

/// An entry of `idx` points at `pk`, which holds no record.
#[cold]
#[inline(never)]
fn dangling<R: Record>(idx: &Index<R>, pk: &[u8]) -> Error {
    corrupt::<R>(pk, format!("index {} {}", idx.name, INDEX_ENTRY_ASTRAY[1]))
}

/// [`entry_target`] for an index known only by whether it is unique and by the length of its
/// table's keys (`None` when they vary).
pub(crate) fn entry_target_raw<'e>(
    unique: bool,
    key_len: Option<usize>,
    entry: &'e [u8],
    value: &'e [u8],
) -> Option<&'e [u8]> {
    if unique {
        return Some(value);
    }
    let len = match key_len {
        Some(n) => n,
        None => {
            let mut v = 0usize;
            let mut shift = 0;
            for (i, &b) in value.iter().enumerate() {
                v |= usize::from(b & 0x7F) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    if i + 1 != value.len() {
                        return None;
                    }
                    break;
                }
                if shift > 28 {
                    return None;
                }
            }
            v
        }
    };
    entry.len().checked_sub(len).map(|at| &entry[at..])
}

/// A decoded record this thread keeps: its type, key and stored bytes, the shared snapshot
/// (see `RawRead::snapshot_id`) it was last found in, and the record.
type MemoEntry = (TypeId, Box<[u8]>, Box<[u8]>, Option<u64>, Rc<dyn Any>);

thread_local! {
    // The entries, and which one gives way next once they are all in use.
    static MEMO: RefCell<(Vec<MemoEntry>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// The record of type `R` at `pk` that this thread's memo holds as found in shared snapshot
/// `snapshot`, whose records never change: no need to read it again.
fn memo_in_snapshot<R: Record>(snapshot: u64, pk: &[u8]) -> Option<Rc<R>> {
    let id = TypeId::of::<R>();
    MEMO.try_with(|m| {
        m.borrow()
            .0
            .iter()
            .find(|e| e.0 == id && e.3 == Some(snapshot) && *e.1 == *pk)
            .map(|e| Rc::clone(&e.4))
    })
    .ok()
    .flatten()
    .and_then(|r| r.downcast::<R>().ok())
}

/// The record stored as `value` under `pk` (read in `snapshot`, when it is a shared one),
/// from this thread's memo of decoded records when the same type, key and bytes were decoded
/// before, else `decode`d and remembered; either way the entry notes `snapshot`. Decoding
/// depends only on the type, the key and the bytes (shapes are named by their content,
/// [`Record::upgrade`] depends on the old value alone), so a remembered record is the one
/// `decode` would give. Values over [`MEMO_VALUE_MAX`] bytes are not kept, nor more than the
/// last [`MEMO_ENTRIES`] records, so a thread holds little. While the thread's locals are
/// being destroyed, records are decoded without the memo.
fn memo<R: Record>(
    pk: &[u8],
    value: &[u8],
    snapshot: Option<u64>,
    decode: impl FnOnce() -> Result<R>,
) -> Result<Rc<R>> {
    let id = TypeId::of::<R>();
    let same_key = |e: &MemoEntry| e.0 == id && *e.1 == *pk;
    let kept = MEMO
        .try_with(|m| {
            let mut m = m.borrow_mut();
            let e = m.0.iter_mut().find(|e| same_key(e) && *e.2 == *value)?;
            e.3 = snapshot;
            Some(Rc::clone(&e.4))
        })
        .ok()
        .flatten();
    if let Some(record) = kept.and_then(|r| r.downcast::<R>().ok()) {
        return Ok(record);
    }
    let record = Rc::new(decode()?);
    if value.len() <= MEMO_VALUE_MAX {
        // Without the thread's locals (it is ending), the record is not kept.
        let _ = MEMO.try_with(|m| {
            let (entries, next) = &mut *m.borrow_mut();
            let entry: MemoEntry = (
                id,
                pk.into(),
                value.into(),
                snapshot,
                Rc::clone(&record) as Rc<dyn Any>,
            );
            if let Some(older) = entries.iter_mut().find(|e| same_key(e)) {
                *older = entry;
            } else if entries.len() < MEMO_ENTRIES {
                entries.push(entry);
            } else {
                entries[*next] = entry;
                *next = (*next + 1) % MEMO_ENTRIES;
            }
        });
    }
    Ok(record)
}

thread_local! {
    /// The key buffer [`with_key`] reuses.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with the encoding of `key`, built in a buffer the thread reuses rather than in a
/// new allocation for every lookup (a lookup made inside `f` builds its own). A `secret` key
/// (a token's hash) is wiped from the buffer before it is kept.
fn with_key<K: Key, T>(key: &K, secret: bool, f: impl FnOnce(&[u8]) -> T) -> T {
    let mut buf = SPARE.try_with(Cell::take).unwrap_or_default();
    buf.clear();
    key.put(&mut buf);
    let out = f(&buf);
    if secret || K::SECRET {
        // The buffer is kept, so these writes are not dropped; bytes past the key hold only
        // other keys, each wiped after use if secret.
        buf.fill(0);
    }
    // A long key's buffer is not kept.
    if buf.capacity() <= 256 {
        let _ = SPARE.try_with(|s| s.set(buf));
    }
    out
}

/// Primary keys one after another in one buffer (the records of a page, to look up
/// together). Secret keys (token hashes) are wiped however the buffer goes: when it grows
/// (the old allocation is wiped before it is freed), and when it is dropped, on an error or a
/// panic as well.
struct KeyList {
    buf: Vec<u8>,
    // Where each key ends in `buf`.
    ends: Vec<usize>,
    secret: bool,
}

impl KeyList {
    fn new(secret: bool) -> KeyList {
        KeyList {
            buf: Vec::new(),
            ends: Vec::new(),
            secret,
        }
    }

    fn push(&mut self, key: &[u8]) {
        let needed = self.buf.len() + key.len();
        if self.secret && needed > self.buf.capacity() {
            let mut bigger = Vec::with_capacity(needed.max(self.buf.capacity() * 2).max(256));
            bigger.extend_from_slice(&self.buf);
            let mut old = std::mem::replace(&mut self.buf, bigger);
            old.zeroize();
        }
        self.buf.extend_from_slice(key);
        self.ends.push(self.buf.len());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buf.len()
    }

    /// How many keys it holds.
    fn count(&self) -> usize {
        self.ends.len()
    }

    /// The keys, in the order they were pushed.
    fn keys(&self) -> ListedKeys<'_> {
        ListedKeys {
            list: self,
            next: 0,
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// The keys of a [`KeyList`], in order.
struct ListedKeys<'l> {
    list: &'l KeyList,
    next: usize,
}

impl<'l> Iterator for ListedKeys<'l> {
    type Item = &'l [u8];

    fn next(&mut self) -> Option<&'l [u8]> {
        let end = *self.list.ends.get(self.next)?;
        let start = match self.next {
            0 => 0,
            n => self.list.ends.get(n - 1).copied().unwrap_or_default(),
        };
        self.next += 1;
        Some(self.list.buf.get(start..end).unwrap_or_default())
    }
}

impl Drop for KeyList {
    fn drop(&mut self) {
        if self.secret {
            self.buf.zeroize();
        }
    }
}

/// How many decoded records [`Table::get_memo`] keeps per thread.
const MEMO_ENTRIES: usize = 32;
/// The largest stored value [`Table::get_memo`] keeps decoded.
const MEMO_VALUE_MAX: usize = 2048;

/// How a record of a newer application version is described (it is not damage).
pub(crate) const NEWER_VERSION: &str = "written by a newer version";
/// How a whole value that does not fit its record type is described (it is not damage).
pub(crate) const DOES_NOT_FIT: &str = "does not fit the record type";
/// What a read through an index says of an entry that does not lead to its record.
pub(crate) const INDEX_ENTRY_ASTRAY: [&str; 2] =
    ["malformed entry in index", "points at a missing record"];

/// A primary key of `R` for a message, read as its type writes it (an id as a number, a
/// name as text), not guessed from its length; `<redacted>` when the key is secret
/// material (a token's hash).
fn shown_key<R: Record>(pk: &[u8]) -> String {
    unless_secret::<R>(|| super::key_text::key_text(pk, <R::Key as Key>::FIXED_LEN))
}

/// "user 7 not found": the table's name in the singular, and the key.
#[cold]
#[inline(never)]
fn missing<R: Record>(pk: &[u8]) -> Error {
    let one = R::TABLE
        .strip_suffix('s')
        .unwrap_or(R::TABLE)
        .replace('_', " ");
    Error::not_found(format!("{one} {}", shown_key::<R>(pk)))
}

/// A typed view of one table inside a transaction. Read methods work in both read and write
/// transactions; write methods only in write transactions.
pub struct Table<'tx, R, S: ?Sized> {
    tx: &'tx S,
    records: &'static str,
    // A record type refused on this table (another type's, see `Source::read_refusal`):
    // reading its records is refused as writing them is.
    refused: bool,
    _record: PhantomData<fn() -> R>,
}

impl<'tx, R: Record, S: Source + ?Sized> Table<'tx, R, S> {
    pub(crate) fn new(tx: &'tx S) -> Self {
        Table {
            tx,
            records: records_of::<R>(),
            refused: Self::read_refusal(tx).is_some(),
            _record: PhantomData,
        }
    }

    fn raw(&self) -> &'tx dyn RawRead {
        self.tx.raw()
    }

    fn read_refusal(tx: &S) -> Option<Error> {
        tx.read_refusal(
            R::TABLE,
            std::any::TypeId::of::<R>(),
            std::any::type_name::<R>(),
            TableInfo::of::<R>,
        )
    }

    fn decode(&self, key: &[u8], value: &[u8]) -> Result<R> {
        if self.refused
            && let Some(refusal) = Self::read_refusal(self.tx)
        {
            return Err(refusal);
        }
        let raw = self.raw();
        let resolve = |id| resolve_shape(raw, id);
        decode_record::<R>(key, value, &resolve)
    }

    fn get_raw(&self, pk: &[u8]) -> Result<Option<R>> {
        let mut out = None;
        self.raw().get(self.records, pk, &mut |v| {
            out = Some(self.decode(pk, v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The record with this primary key, with the fields of its stored value that `R` does
    /// not declare, for a rewrite to keep (see [`Record::DROPPED_FIELDS`]).
    fn get_keeping(&self, pk: &[u8]) -> Result<Option<(R, Kept)>> {
        let mut out = None;
        self.raw().get(self.records, pk, &mut |v| {
            out = Some((self.decode(pk, v)?, self.undeclared_fields(pk, v)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// The fields of the stored value `v` that `R` does not declare (nor drop), with their
    /// bytes as stored.
    fn undeclared_fields(&self, pk: &[u8], v: &[u8]) -> Result<Kept> {
        let raw = self.raw();
        undeclared_fields::<R>(pk, v, &|id| resolve_shape(raw, id))
    }

    /// The record with this primary key.
    ///
    /// # Errors
    /// `Corrupt` when it cannot be read; `Storage` when the engine fails.
    pub fn get(&self, key: &R::Key) -> Result<Option<R>> {
        with_key(key, R::SECRET_KEY, |pk| self.get_raw(pk))
    }

    /// The record with this primary key, as [`Table::get`], kept decoded per thread: for
    /// the few small records read on every request. Within a snapshot that reads share (see
    /// `RawRead::snapshot_id`), whose records never change, a record found once is not
    /// looked up again. In any other transaction the stored bytes are read on each call and
    /// the decoded copy (of the last 32 records of at most 2 KiB) serves while they are the
    /// same. Either way the answer is the transaction's. Not for records that hold secrets.
    ///
    /// # Errors
    /// As [`Table::get`].
    pub(crate) fn get_memo(&self, key: &R::Key) -> Result<Option<Rc<R>>> {
        with_key(key, R::SECRET_KEY, |pk| {
            let snapshot = self.raw().snapshot_id();
            if let Some(found) = snapshot.and_then(|id| memo_in_snapshot::<R>(id, pk)) {
                return Ok(Some(found));
            }
            let mut out = None;
            self.raw().get(self.records, pk, &mut |v| {
                out = Some(memo(pk, v, snapshot, || self.decode(pk, v))?);
                Ok(())
            })?;
            Ok(out)
        })
    }

    /// Whether a record with this primary key exists (without reading it).
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn contains(&self, key: &R::Key) -> Result<bool> {
        with_key(key, R::SECRET_KEY, |pk| {
            self.raw().get(self.records, pk, &mut |_| Ok(()))
        })
    }

    /// The records with these primary keys, in the same order (`Ok(None)` where absent, an
    /// `Err` where one cannot be read), looked up together: on a server engine, one round
    /// trip for the lot.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub(crate) fn get_many(&self, keys: &[R::Key]) -> Result<Vec<Result<Option<R>>>> {
        self.each_of(keys, |pk, v| v.map(|v| self.decode(pk, v)).transpose())
    }

    /// Whether a record with each of these primary keys exists, in the same order, looked up
    /// together.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub(crate) fn contains_many(&self, keys: &[R::Key]) -> Result<Vec<bool>> {
        self.each_of(keys, |_, v| v.is_some())
    }

    fn each_of<T>(
        &self,
        keys: &[R::Key],
        mut f: impl FnMut(&[u8], Option<&[u8]>) -> T,
    ) -> Result<Vec<T>> {
        let secret = R::SECRET_KEY || <R::Key as Key>::SECRET;
        let mut list = KeyList::new(secret);
        for key in keys {
            with_key(key, secret, |pk| list.push(pk));
        }
        let mut each = list.keys();
        let mut out = Vec::with_capacity(keys.len());
        self.raw().get_each(self.records, &mut each, &mut |pk, v| {
            out.push(f(pk, v));
            Ok(true)
        })?;
        Ok(out)
    }

    fn index_of(idx: &Index<R>) -> Result<&'static Index<R>> {
        R::INDEXES
            .iter()
            .copied()
            .find(|i| i.name == idx.name)
            .ok_or_else(|| Error::Invariant {
                what: format!("index {} is not listed in {}'s INDEXES", idx.name, R::TABLE),
            })
    }

    /// The record whose entry in the unique index `index` is `key` (built with
    /// [`key!`](crate::key)).
    ///
    /// # Errors
    /// `Invariant` when `index` is not unique; `Corrupt` when the entry or record is damaged.
    pub fn get_by(&self, index: &Index<R>, key: &[u8]) -> Result<Option<R>> {
        let idx = Self::index_of(index)?;
        if !idx.unique {
            return Err(Error::Invariant {
                what: format!("{}.{} is not unique; scan it instead", R::TABLE, idx.name),
            });
        }
        // The record is read while the entry is in hand (no copy of the primary key).
        let mut out = None;
        self.raw().get(index_name(idx), key, &mut |pk| {
            out = Some(self.get_raw(pk)?.ok_or_else(|| dangling(idx, pk))?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with each record whose primary key falls in `range`, in `order`, until it
    /// returns `false`. Nothing is collected: this is how to walk a large table.
    ///
    /// # Errors
    /// `f`'s error; `Corrupt` for an unreadable record.
    pub fn for_each(
        &self,
        range: KeyRange,
        order: Order,
        mut f: impl FnMut(R) -> Result<bool>,
    ) -> Result<()> {
        self.raw().range(self.records, &range, order, &mut |k, v| {
            let r = self.decode(k, v)?;
            f(r)
        })
    }

    /// Calls `f` with each record in `range` that decodes, in key order, skipping damaged ones
    /// (the table check reports those), until it returns `false`.
    ///
    /// # Errors
    /// `f`'s error; `Storage` when the engine fails.
    pub(crate) fn for_each_sound(
        &self,
        range: KeyRange,
        mut f: impl FnMut(R) -> Result<bool>,
    ) -> Result<()> {
        self.raw().range(
            self.records,
            &range,
            Order::Asc,
            &mut |k, v| match self.decode(k, v) {
                Ok(r) => f(r),
                Err(Error::Corrupt { .. }) => Ok(true),
                Err(e) => Err(e),
            },
        )
    }

    /// Calls `f` with each record whose entry in `index` falls in `range`, in index order,
    /// until it returns `false`.
    ///
    /// # Errors
    /// `f`'s error; `Corrupt` for an unreadable record or an entry pointing nowhere.
    pub fn for_each_by(
        &self,
        index: &Index<R>,
        range: KeyRange,
        order: Order,
        mut f: impl FnMut(R) -> Result<bool>,
    ) -> Result<()> {
        let idx = Self::index_of(index)?;
        let raw = self.raw();
        raw.range(index_name(idx), &range, order, &mut |entry, value| {
            let pk = target_of(idx, entry, value)?;
            f(self.get_raw(pk)?.ok_or_else(|| dangling(idx, pk))?)
        })
    }

    /// Up to `limit` records whose primary key falls in `range`, in `order`. For the next
    /// page, narrow the range with [`KeyRange::after`] (or [`KeyRange::before`]) and the
    /// last key returned.
    ///
    /// # Errors
    /// `Corrupt` for an unreadable record.
    pub fn range(&self, range: KeyRange, order: Order, limit: usize) -> Result<Vec<R>> {
        let mut out = Vec::with_capacity(limit.min(64));
        if limit == 0 {
            return Ok(out);
        }
        self.for_each(range, order, |r| {
            out.push(r);
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Up to `limit` records whose entry in `index` falls in `range`, in index order.
    ///
    /// # Errors
    /// `Corrupt` for an unreadable record or an entry pointing nowhere.
    pub fn range_by(
        &self,
        index: &Index<R>,
        range: KeyRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<R>> {
        let mut out = Vec::with_capacity(limit.min(64));
        if limit == 0 {
            return Ok(out);
        }
        // The index entries first, then the records they point at, with the records' table
        // opened once for all of them.
        let idx = Self::index_of(index)?;
        let raw = self.raw();
        let mut keys = KeyList::new(R::SECRET_KEY || <R::Key as Key>::SECRET);
        raw.range(index_name(idx), &range, order, &mut |entry, value| {
            keys.push(target_of(idx, entry, value)?);
            Ok(keys.count() < limit)
        })?;
        let mut each = keys.keys();
        raw.get_each(self.records, &mut each, &mut |pk, v| {
            out.push(self.decode(pk, v.ok_or_else(|| dangling(idx, pk))?)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Calls `f` with each primary key in `range`, without reading the records (works on
    /// damaged ones), until it returns `false`.
    ///
    /// # Errors
    /// `Corrupt` for a malformed key; `f`'s error.
    pub fn for_each_key(
        &self,
        range: KeyRange,
        order: Order,
        mut f: impl FnMut(R::Key) -> Result<bool>,
    ) -> Result<()> {
        self.raw().range(self.records, &range, order, &mut |k, _| {
            let key =
                R::Key::from_bytes(k).ok_or_else(|| corrupt::<R>(k, "malformed primary key"))?;
            f(key)
        })
    }

    /// Number of records.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn count(&self) -> Result<u64> {
        self.raw().len(self.records)
    }

    /// Number of records whose key falls in `range`, counted without reading them.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn count_in(&self, range: KeyRange) -> Result<u64> {
        let mut n = 0u64;
        self.raw()
            .range(self.records, &range, Order::Asc, &mut |_, _| {
                n += 1;
                Ok(true)
            })?;
        Ok(n)
    }

    /// Number of entries of `index` in `range`, counted without reading records.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn count_by(&self, index: &Index<R>, range: KeyRange) -> Result<u64> {
        let idx = Self::index_of(index)?;
        let mut n = 0u64;
        self.raw()
            .range(index_name(idx), &range, Order::Asc, &mut |_, _| {
                n += 1;
                Ok(true)
            })?;
        Ok(n)
    }
}

impl<R: Record> Table<'_, R, WriteTx<'_>> {
    /// The next id of this table's sequence (1, 2, …); ids are never handed out twice, even
    /// across `reset`, `restore` and `import`.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn next_id(&self) -> Result<u64> {
        self.refuse_foreign()?;
        self.tx.next_sequence(R::TABLE)
    }

    /// Refuses an application type writing into one of redkeep's own tables, and a type
    /// whose table or index names would share storage with another's.
    fn refuse_foreign(&self) -> Result<()> {
        check_names::<R>()?;
        self.tx.refuse_foreign(
            R::TABLE,
            std::any::TypeId::of::<R>(),
            std::any::type_name::<R>(),
            TableInfo::of::<R>,
        )
    }

    /// Inserts a new record. A record with the same primary key, or a clash in a unique index,
    /// is a `Conflict` and writes nothing.
    ///
    /// # Errors
    /// `Conflict`; `InvalidInput` when the record cannot be encoded (too large).
    pub fn insert(&self, record: &R) -> Result<()> {
        // No replaced record: the key is claimed first, a clash when it is taken.
        self.write(&record.key().to_bytes(), None, record, &[])
    }

    /// `record` checked and encoded as [`Table::insert`] would write it, for a batch of
    /// new records ([`super::NewRecords`]) to write; its shapes are registered now.
    ///
    /// # Errors
    /// `InvalidInput` when the record cannot be encoded (too large) or a key is too long.
    pub(crate) fn stage(&self, record: &R) -> Result<super::NewRecord> {
        check_names::<R>()?;
        let pk = record.key().to_bytes();
        let keys = entries(record, &pk);
        check_key_sizes::<R>(&pk, &keys)?;
        let value = encode(self.tx, record)?;
        let entries = R::INDEXES
            .iter()
            .zip(keys)
            .filter_map(|(idx, key)| {
                Some(super::bulk::NewEntry {
                    table: index_name(idx),
                    index: idx.name,
                    unique: idx.unique,
                    key: key?,
                    value: entry_value(idx, &pk),
                })
            })
            .collect();
        Ok(super::NewRecord {
            table: R::TABLE,
            records: self.records,
            pk,
            value,
            entries,
            shown: shown_key::<R>,
        })
    }

    /// Replaces the stored record with the same primary key, moving its index entries.
    ///
    /// # Errors
    /// `NotFound` when there is no such record; `Conflict` on a unique clash (nothing written).
    pub fn update(&self, record: &R) -> Result<()> {
        // Before the read: another type's record would not decode as `R`.
        self.refuse_foreign()?;
        let pk = record.key().to_bytes();
        let (old, kept) = self.get_keeping(&pk)?.ok_or_else(|| missing::<R>(&pk))?;
        self.write(&pk, Some(&entries(&old, &pk)), record, &kept)
    }

    /// Inserts the record, or replaces the one with the same primary key.
    ///
    /// # Errors
    /// `Conflict` on a unique clash (nothing written).
    pub fn put(&self, record: &R) -> Result<()> {
        self.refuse_foreign()?;
        let pk = record.key().to_bytes();
        let (old, kept) = match self.get_keeping(&pk)? {
            Some((old, kept)) => (entries(&old, &pk), kept),
            None => (vec![None; R::INDEXES.len()], Vec::new()),
        };
        self.write(&pk, Some(&old), record, &kept)
    }

    /// Reads the record, lets `f` change it, and writes it back: one read-modify-write.
    ///
    /// # Errors
    /// `NotFound`; `f`'s error (nothing written); `InvalidInput` when `f` changed the key.
    pub fn modify<T>(&self, key: &R::Key, f: impl FnOnce(&mut R) -> Result<T>) -> Result<T> {
        self.refuse_foreign()?;
        let pk = key.to_bytes();
        let (mut record, kept) = self.get_keeping(&pk)?.ok_or_else(|| missing::<R>(&pk))?;
        let old = entries(&record, &pk);
        let out = f(&mut record)?;
        if record.key().to_bytes() != pk {
            return Err(Error::invalid(
                "key",
                "a modification must keep the primary key",
            ));
        }
        self.write(&pk, Some(&old), &record, &kept)?;
        Ok(out)
    }

    /// Removes the record and its index entries; returns it, or `None` if it did not exist.
    ///
    /// # Errors
    /// `Corrupt` when the record cannot be read (its index entries are unknown; `redkeep
    /// check --repair` removes it); `Invariant` when the table or one of its indexes is being
    /// scanned by the caller (nothing is deleted then).
    pub fn delete(&self, key: &R::Key) -> Result<Option<R>> {
        self.refuse_foreign()?;
        let pk = key.to_bytes();
        let Some(old) = self.get_raw(&pk)? else {
            return Ok(None);
        };
        let raw = self.tx.raw_records();
        // The index entries removed so far, put back when a later step fails (a table the
        // caller is scanning), so a refused delete leaves the record and its entries as
        // they were.
        let mut removed: Vec<(&str, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut steps = || -> Result<()> {
            for idx in R::INDEXES {
                if let Some(k) = index_entry(idx, &old, &pk)
                    && raw.remove(index_name(idx), &k)?
                {
                    removed.push((index_name(idx), k, entry_value(idx, &pk)));
                }
            }
            raw.remove(self.records, &pk)?;
            Ok(())
        };
        steps().map_err(|e| take_back(raw, e, &[], &removed))?;
        Ok(Some(old))
    }

    /// Deletes up to `limit` records whose entry in `index` falls in `range`, in index order,
    /// for sweeps that go batch by batch. A record that cannot be read is left (with its
    /// entry) for `check --repair`, and counted apart: one such record never stops a sweep.
    /// Returns the records deleted, those left unread, and the last entry seen (resume
    /// after it), `None` once the range is done. A `limit` of 0 deletes nothing and returns
    /// `None`.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub(crate) fn delete_batch_by(
        &self,
        index: &Index<R>,
        range: KeyRange,
        limit: usize,
    ) -> Result<(usize, usize, Option<Vec<u8>>)> {
        let idx = Self::index_of(index)?;
        // A malformed entry (no primary key in it) is passed over like an unreadable record.
        let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        self.raw()
            .range(index_name(idx), &range, Order::Asc, &mut |entry, value| {
                // Asked for none, nothing is taken (the scan calls back once before it can
                // be stopped).
                if batch.len() >= limit {
                    return Ok(false);
                }
                let pk = entry_target(idx, entry, value).map(<[u8]>::to_vec);
                batch.push((entry.to_vec(), pk));
                Ok(batch.len() < limit)
            })?;
        let (mut deleted, mut unread) = (0, 0);
        for (_, pk) in &batch {
            let Some(key) = pk.as_deref().and_then(R::Key::from_bytes) else {
                unread += 1;
                continue;
            };
            match self.delete(&key) {
                Ok(Some(_)) => deleted += 1,
                Ok(None) => {}
                Err(Error::Corrupt { .. }) => unread += 1,
                Err(e) => return Err(e),
            }
        }
        let more = batch.len() >= limit.max(1);
        Ok((
            deleted,
            unread,
            batch.pop().filter(|_| more).map(|(e, _)| e),
        ))
    }

    /// Deletes every record and index entry of the table; returns how many records there were.
    ///
    /// # Errors
    /// `Storage` when the engine fails; `Invariant` when the table or one of its indexes is
    /// being scanned by the caller (nothing is deleted then).
    pub fn clear(&self) -> Result<u64> {
        self.refuse_foreign()?;
        let n = self.count()?;
        let raw = self.tx.raw_records();
        // Refused before anything is deleted when one of the tables is in use (a scan of it
        // is under way), so a refused clear leaves the table whole.
        for name in R::INDEXES
            .iter()
            .map(|idx| index_name(idx))
            .chain(std::iter::once(self.records))
        {
            if raw.in_use(name) {
                return Err(Error::Invariant {
                    what: format!("table {name} was cleared while a scan of it was running"),
                });
            }
        }
        for idx in R::INDEXES {
            raw.delete_table(index_name(idx))?;
        }
        raw.delete_table(self.records)?;
        Ok(n)
    }

    // Writes `new` under `pk`. An insert (`old: None`) first claims the primary key; then
    // the record's new unique entries are claimed, each claim one insert-if-absent (on
    // PostgreSQL `insert … on conflict do nothing`: no read before the write, and a clash does
    // not abort the transaction); then the other entries move and, unless claimed already,
    // the record is written. A step that fails (a clash, a table the caller is scanning)
    // takes back every step before it, so a refused write leaves nothing behind. `old` holds
    // the replaced record's entry of each index, in `R::INDEXES` order; those past its end
    // are none.
    fn write(
        &self,
        pk: &[u8],
        old: Option<&[Option<Vec<u8>>]>,
        new: &R,
        kept: &[(Box<str>, Vec<u8>)],
    ) -> Result<()> {
        check_names::<R>()?;
        let new_entries = entries(new, pk);
        check_key_sizes::<R>(pk, &new_entries)?;
        let mut value = encode(self.tx, new)?;
        if !kept.is_empty() {
            value = self.with_kept(&value, kept)?;
        }
        let raw = self.tx.raw_records();
        // What this write changed so far, to take it back when a later step fails (a
        // unique clash, or a table the caller is scanning): the index entries it claimed or
        // added (removed again) and the old ones it removed (put back).
        let mut added: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut removed: Vec<(&str, Vec<u8>, Vec<u8>)> = Vec::new();
        self.write_steps(pk, old, new_entries, &value, &mut added, &mut removed)
            .map_err(|e| take_back(raw, e, &added, &removed))?;

        #[cfg(test)]
        RECORD_WRITES.with_borrow_mut(|w| *w.entry(R::TABLE).or_default() += 1);
        Ok(())
    }

    /// `value`, the encoding of a record, with the `kept` fields of the record it replaces
    /// added to it (and its shape registered).
    fn with_kept(&self, value: &[u8], kept: &[(Box<str>, Vec<u8>)]) -> Result<Vec<u8>> {
        let raw = self.raw();
        let resolve = |id| resolve_shape(raw, id);
        let extra: Vec<format::StoredField<'_>> = kept
            .iter()
            .map(|(name, bytes)| (name.clone(), bytes.as_slice()))
            .collect();
        let (bytes, id, names) = codec::with_fields(value, &extra, &resolve).map_err(|reason| {
            Error::invalid(
                "record",
                format!("cannot store a {} record: {reason}", R::TABLE),
            )
        })?;
        self.tx.register_shape(id, &names)?;
        Ok(bytes)
    }

    /// The steps of [`Table::write`], noting in `added` and `removed` what each changed.
    fn write_steps<'i>(
        &self,
        pk: &[u8],
        old: Option<&[Option<Vec<u8>>]>,
        mut new_entries: Vec<Option<Vec<u8>>>,
        value: &[u8],
        added: &mut Vec<(&'i str, Vec<u8>)>,
        removed: &mut Vec<(&'i str, Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let raw = self.tx.raw_records();
        // An insert claims its key in the same step that checks it is free (one descent,
        // where a check and a later write would take two).
        let fresh = old.is_none();
        if fresh {
            if !raw.insert_new(self.records, pk, value)? {
                return Err(Error::Conflict {
                    table: R::TABLE,
                    index: "primary",
                    detail: format!(
                        "{} already holds a record with key {}",
                        R::TABLE,
                        shown_key::<R>(pk)
                    ),
                });
            }
            added.push((self.records, pk.to_vec()));
        }
        let old = old.unwrap_or_default();
        let mut moves = Vec::with_capacity(R::INDEXES.len());
        for (i, idx) in R::INDEXES.iter().enumerate() {
            let old_key = old.get(i).and_then(Option::as_ref);
            let mut new_key = new_entries.get_mut(i).and_then(Option::take);
            if old_key == new_key.as_ref() {
                continue;
            }
            if idx.unique
                && let Some(k) = new_key.take()
            {
                // The entry is claimed now (or found pointing here already): the move below
                // only takes out the old one.
                let name = index_name(idx);
                if raw.insert_new(name, &k, pk)? {
                    added.push((name, k));
                } else {
                    match get_owned(raw, name, &k)? {
                        Some(holder) if holder == pk => {}
                        Some(holder) => {
                            return Err(Error::Conflict {
                                table: R::TABLE,
                                index: idx.name,
                                detail: format!(
                                    "{}.{} already holds that value (held by {})",
                                    R::TABLE,
                                    idx.name,
                                    shown_key::<R>(&holder)
                                ),
                            });
                        }
                        // Present yet unseen: a concurrent write holds it.
                        None => {
                            return Err(Error::Busy {
                                what: format!(
                                    "{}.{} is being written by another writer",
                                    R::TABLE,
                                    idx.name
                                ),
                            });
                        }
                    }
                }
            }
            moves.push((idx, old_key, new_key));
        }
        for (idx, old_key, new_key) in moves {
            let name = index_name(idx);
            if let Some(k) = old_key
                && raw.remove(name, k)?
            {
                removed.push((name, k.clone(), entry_value(idx, pk)));
            }
            if let Some(k) = new_key {
                raw.put(name, &k, &entry_value(idx, pk))?;
                added.push((name, k));
            }
        }
        if fresh {
            return Ok(());
        }
        raw.put(self.records, pk, value)
    }
}

/// The longest primary key, and the longest index entry key, a record may have, on every
/// engine: a unique index's entry key is the indexed value, another index's the value and
/// the primary key. PostgreSQL's B-tree refuses entries past about 2.7 KB (less where the
/// bytes do not compress), so without one limit a key that works on redb would fail after
/// a move. redkeep's own keys (emails of at most 254 bytes, usernames, slugs and role names
/// of at most 64) stay far below it.
pub const MAX_KEY_BYTES: usize = 2048;

/// `InvalidInput` when the primary key `pk` or an entry key in `entries` (in `R::INDEXES`
/// order) is longer than [`MAX_KEY_BYTES`]; checked before anything is written. The key is
/// not shown: it may be secret, and its length says what to fix.
fn check_key_sizes<R: Record>(pk: &[u8], entries: &[Option<Vec<u8>>]) -> Result<()> {
    if pk.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(
            "key",
            format!(
                "the primary key of this {} record is {} bytes, over the limit of \
                 {MAX_KEY_BYTES} bytes a key may have in any store; use a shorter key (a hash \
                 or an id, say)",
                R::TABLE,
                pk.len()
            ),
        ));
    }
    for (idx, entry) in R::INDEXES.iter().zip(entries) {
        let Some(entry) = entry.as_ref().filter(|e| e.len() > MAX_KEY_BYTES) else {
            continue;
        };
        let made_of = if idx.unique {
            "its value"
        } else {
            "its value and the primary key"
        };
        return Err(Error::invalid(
            "key",
            format!(
                "the {}.{} index entry of this record is {} bytes ({made_of}), over the limit \
                 of {MAX_KEY_BYTES} bytes a key may have in any store; index a shorter value \
                 (a hash or a prefix of it, say)",
                R::TABLE,
                idx.name,
                entry.len()
            ),
        ));
    }
    Ok(())
}

/// The entry of each index for one record, in `R::INDEXES` order.
fn entries<R: Record>(record: &R, pk: &[u8]) -> Vec<Option<Vec<u8>>> {
    R::INDEXES
        .iter()
        .map(|idx| index_entry(idx, record, pk))
        .collect()
}

impl<'a> ReadTx<'a> {
    /// A typed view of the table of `R`.
    pub fn table<R: Record>(&self) -> Table<'_, R, ReadTx<'a>> {
        Table::new(self)
    }
}

impl<'a> WriteTx<'a> {
    /// A typed view of the table of `R`.
    pub fn table<R: Record>(&self) -> Table<'_, R, WriteTx<'a>> {
        Table::new(self)
    }
}

#[cfg(test)]
type WriteTally = std::cell::RefCell<std::collections::HashMap<&'static str, u64>>;

#[cfg(test)]
thread_local! {
    /// Records this thread wrote, by table: what an operation writes, for tests.
    pub(crate) static RECORD_WRITES: WriteTally = WriteTally::default();
}

/// Checks the names a record type stores under: a table name neither empty nor holding `:`
/// (storage names are `r:<table>` and `i:<table>:<index>`, so `a` with index `b:c` and `a:b`
/// with index `c` would share one), and index names unique within the type, neither empty
/// nor holding `:`. No name holds a control character: PostgreSQL's `text` cannot hold NUL
/// (a table named so worked on redb and failed every read and write there), and the others
/// would garble the names `check` and `inspect` print.
///
/// # Errors
/// `InvalidInput` naming the type and what to rename.
pub(crate) fn check_names<R: Record>() -> Result<()> {
    // Every write checks: the verdict is worked out once, when the type is compiled, and
    // only a refused name goes on to the checks below, which say what is wrong.
    if NamesFine::<R>::FINE {
        return Ok(());
    }
    let bad = |why: String| {
        Err(Error::invalid(
            "record type",
            format!("{}: {why}", std::any::type_name::<R>()),
        ))
    };
    if R::TABLE.is_empty() || R::TABLE.contains(':') {
        return bad(format!(
            "the table name {:?} must be non-empty and without `:`; rename `Record::TABLE`",
            R::TABLE
        ));
    }
    if R::TABLE.contains(char::is_control) {
        return bad(format!(
            "the table name {:?} holds a control character (such as NUL or a line break), \
             which no engine's table name may hold (PostgreSQL cannot store NUL); rename \
             `Record::TABLE`",
            R::TABLE
        ));
    }
    for (i, index) in R::INDEXES.iter().enumerate() {
        if index.name.is_empty() || index.name.contains(':') {
            return bad(format!(
                "the index name {:?} must be non-empty and without `:`; rename it",
                index.name
            ));
        }
        if index.name.contains(char::is_control) {
            return bad(format!(
                "the index name {:?} holds a control character (such as NUL or a line \
                 break), which no engine's table name may hold (PostgreSQL cannot store NUL); \
                 rename it",
                index.name
            ));
        }
        if R::INDEXES[..i].iter().any(|other| other.name == index.name) {
            return bad(format!(
                "two indexes are named {:?}; give each its own name",
                index.name
            ));
        }
    }
    Ok(())
}

/// [`check_names`]' verdict for `R`, a constant: the names are constants.
struct NamesFine<R>(PhantomData<R>);

impl<R: Record> NamesFine<R> {
    const FINE: bool = {
        let mut fine = name_fine(R::TABLE.as_bytes());
        let mut i = 0;
        while fine && i < R::INDEXES.len() {
            let name = R::INDEXES[i].name.as_bytes();
            fine = name_fine(name);
            let mut j = 0;
            while fine && j < i {
                fine = !same_bytes(R::INDEXES[j].name.as_bytes(), name);
                j += 1;
            }
            i += 1;
        }
        fine
    };
}

/// Whether a table or index name passes [`check_names`]: not empty, no `:`, no control
/// character (in UTF-8: a byte below 0x20, 0x7F, or U+0080 to U+009F, which are 0xC2
/// followed by 0x80 to 0x9F).
const fn name_fine(name: &[u8]) -> bool {
    if name.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if b == b':' || b < 0x20 || b == 0x7F {
            return false;
        }
        if b == 0xC2 && i + 1 < name.len() && name[i + 1] >= 0x80 && name[i + 1] <= 0x9F {
            return false;
        }
        i += 1;
    }
    true
}

/// `a == b`, in a constant.
const fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the thread's key buffer holds now.
    fn spare() -> Vec<u8> {
        let buf = SPARE.with(Cell::take);
        let seen = buf.clone();
        SPARE.with(|s| s.set(buf));
        seen
    }

    #[test]
    fn the_constant_name_check_agrees_with_the_worded_one_on_every_character() {
        let worded = |name: &str| {
            !(name.is_empty() || name.contains([':']) || name.contains(char::is_control))
        };
        assert!(!name_fine(b""));
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            for name in [
                c.to_string(),
                format!("a{c}"),
                format!("{c}b"),
                format!("x{c}yz"),
            ] {
                assert_eq!(name_fine(name.as_bytes()), worded(&name), "{name:?}");
            }
        }
        assert!(same_bytes(b"by_email", b"by_email"));
        assert!(!same_bytes(b"by_email", b"by_emails"));
        assert!(!same_bytes(b"by_email", b"by_mail_"));
    }

    #[test]
    fn a_key_list_keeps_every_key_across_growth() {
        for secret in [false, true] {
            let mut list = KeyList::new(secret);
            let mut expected = Vec::new();
            for n in 0..100u8 {
                let key = [n; 32];
                list.push(&key);
                expected.extend_from_slice(&key);
                assert_eq!(list.len(), expected.len());
            }
            assert_eq!(list.bytes(), expected.as_slice());
            let keys: Vec<&[u8]> = list.keys().collect();
            assert_eq!(keys.len(), 100);
            assert!(keys.iter().enumerate().all(|(n, k)| *k == [n as u8; 32]));
        }
    }

    #[test]
    fn a_secret_key_does_not_stay_in_the_reused_buffer() {
        let key = [0xAB_u8; 32];
        let seen = with_key(&key, true, <[u8]>::to_vec);
        assert_eq!(seen, key, "the lookup sees the key itself");
        let kept = spare();
        assert_eq!(kept.len(), 32, "the buffer is kept for the next lookup");
        assert!(
            kept.iter().all(|&b| b == 0),
            "a secret key is wiped: {kept:?}"
        );
        // A key that is not secret is simply left for the next lookup to overwrite.
        with_key(&7_u64, false, |pk| assert_eq!(pk, 7_u64.to_be_bytes()));
        assert_eq!(spare(), 7_u64.to_be_bytes());
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Due {
        id: u64,
        at: u64,
    }

    impl Due {
        const AT: Index<Due> = Index::many("at", |d| Some(crate::key!(d.at)));
    }

    impl Record for Due {
        const TABLE: &'static str = "due";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::AT];
        fn key(&self) -> u64 {
            self.id
        }
    }

    #[test]
    fn a_batch_delete_asked_for_none_deletes_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(
            dir.path().join("s.redb"),
            &crate::store::StoreOptions::default(),
        )
        .unwrap();
        let count = || store.read(|tx| tx.table::<Due>().count()).unwrap();
        store
            .write(|tx| {
                for id in 1..=3 {
                    tx.table::<Due>().insert(&Due { id, at: id * 10 })?;
                }
                Ok(())
            })
            .unwrap();
        let none = store
            .write(|tx| {
                tx.table::<Due>()
                    .delete_batch_by(&Due::AT, KeyRange::all(), 0)
            })
            .unwrap();
        assert_eq!(none, (0, 0, None));
        assert_eq!(count(), 3);
        let (deleted, unread, next) = store
            .write(|tx| {
                tx.table::<Due>()
                    .delete_batch_by(&Due::AT, KeyRange::all(), 2)
            })
            .unwrap();
        assert_eq!((deleted, unread), (2, 0));
        assert!(next.is_some(), "one record is left to the next batch");
        assert_eq!(count(), 1);
    }
}
