//! Transactions: a read snapshot or a write transaction over the storage boundary, and the
//! `meta` table they share (schema version, id sequences, the registry of struct shapes, the
//! catalog of tables, free-form entries).

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::engine::{KeyRange, Order, RawRead, RawWrite, get_owned};
use super::format::{self, Shape, shape_id};
use crate::bytes::hex;
use crate::error::{Error, Result};

pub(crate) const META: &str = "meta";
const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";
pub(crate) const SEQ_PREFIX: &[u8] = b"seq:";
/// The largest id a sequence hands out: 2^63 − 1, what a PostgreSQL sequence (a bigint)
/// holds and an export's sequence line carries, so every store can move anywhere.
pub const MAX_ID: u64 = i64::MAX as u64;
const USER_META_PREFIX: &[u8] = b"x:";
const SHAPE_PREFIX: &[u8] = b"shape:";
const TABLE_PREFIX: &[u8] = b"table:";

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

fn shape_key(id: u64) -> Vec<u8> {
    prefixed(SHAPE_PREFIX, &id.to_be_bytes())
}

/// Whether a `meta` entry read back from a damaged file still has the form its key calls
/// for (salvage copies only those). Keys this build does not know are kept: a newer build
/// may have written them.
pub(crate) fn meta_entry_sound(key: &[u8], value: &[u8]) -> bool {
    if key == SCHEMA_VERSION_KEY {
        value.len() == 8
    } else if let Some(name) = key.strip_prefix(SEQ_PREFIX) {
        std::str::from_utf8(name).is_ok() && value.len() == 8
    } else if let Some(id) = key.strip_prefix(SHAPE_PREFIX) {
        be_u64(id).is_some_and(|id| format::decode_shape(id, value).is_ok())
    } else if let Some(name) = key.strip_prefix(TABLE_PREFIX) {
        serde_json::from_slice::<TableInfo>(value).is_ok_and(|t| t.name.as_bytes() == name)
    } else if let Some(name) = key.strip_prefix(USER_META_PREFIX) {
        std::str::from_utf8(name).is_ok()
    } else {
        true
    }
}

/// The table a `meta` catalog key names.
#[cfg(feature = "postgres")]
pub(crate) fn table_of_meta_key(key: &[u8]) -> Option<&str> {
    key.strip_prefix(TABLE_PREFIX)
        .and_then(|n| std::str::from_utf8(n).ok())
}

/// The secret fields the catalog of the transaction behind `raw` lists for `table`; `None`
/// when the table has no catalog entry (then nothing is known to be safe to show).
#[cfg(feature = "postgres")]
pub(crate) fn secret_fields(raw: &dyn RawRead, table: &str) -> Result<Option<Vec<String>>> {
    Ok(
        get_owned(raw, META, &prefixed(TABLE_PREFIX, table.as_bytes()))?
            .and_then(|v| serde_json::from_slice::<TableInfo>(&v).ok())
            .map(|info| info.secret_fields),
    )
}

/// The largest record, and the largest JSON text of one, that is rendered for PostgreSQL's
/// `jsonb` column: the server parses the text inside the write's SERIALIZABLE transaction
/// (an 8 MB record of control characters, 47 MB of JSON, held it for 3 s).
#[cfg(feature = "postgres")]
const MAX_READABLE_BYTES: usize = 1 << 20;

/// How many times a record's bytes its JSON text may grow (escaped control characters
/// become six bytes each) once the text is over [`READABLE_GROWTH_FROM`] bytes.
#[cfg(feature = "postgres")]
const MAX_READABLE_GROWTH: usize = 4;

/// The text size from which [`MAX_READABLE_GROWTH`] holds: a small record's field names,
/// which its stored bytes do not carry, may well make its text several times its size.
#[cfg(feature = "postgres")]
const READABLE_GROWTH_FROM: usize = 64 << 10;

/// A stored record as JSON text an operator can query (PostgreSQL's `jsonb` column), with
/// its secret fields shown as `"<redacted>"`; `None` when the value is not self-describing
/// (format 1), cannot be decoded, holds text `jsonb` refuses (a NUL character), or is too
/// large to render while the write waits (over [`MAX_READABLE_BYTES`], as bytes or as
/// text, or a text of over 64 KiB more than four times the record's size).
#[cfg(feature = "postgres")]
pub(crate) fn readable_json(
    value: &[u8],
    resolve: format::Resolve<'_>,
    secret: &[String],
) -> Option<String> {
    if value.len() > MAX_READABLE_BYTES {
        return None;
    }
    let mut json = super::codec::Stored::parse(value, resolve)
        .ok()?
        .to_json()
        .ok()?;
    if holds_nul(&json) {
        return None;
    }
    if let serde_json::Value::Object(fields) = &mut json {
        for name in secret {
            if let Some(v) = fields.get_mut(name.as_str()) {
                *v = serde_json::Value::String("<redacted>".into());
            }
        }
    }
    let text = serde_json::to_string(&json).ok()?;
    let blown_up =
        text.len() > READABLE_GROWTH_FROM && text.len() > MAX_READABLE_GROWTH * value.len();
    (text.len() <= MAX_READABLE_BYTES && !blown_up).then_some(text)
}

/// Whether a string or a key anywhere in `json` holds NUL, which `jsonb` cannot hold.
#[cfg(feature = "postgres")]
fn holds_nul(json: &serde_json::Value) -> bool {
    use serde_json::Value;
    match json {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Reads the names of shape `id` from the registry of the transaction behind `raw`.
pub(crate) fn resolve_shape(
    raw: &dyn RawRead,
    id: u64,
) -> std::result::Result<Shape, format::FormatError> {
    let bytes = get_owned(raw, META, &shape_key(id))
        .map_err(|e| format::FormatError(format!("reading shape {id:016x}: {e}")))?
        .ok_or_else(|| format::FormatError(format!("shape {id:016x} is not registered")))?;
    format::decode_shape(id, &bytes)
}

/// What the catalog records about a table written to this store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// The table's name.
    pub name: String,
    /// The record version last written by the application.
    pub version: u32,
    /// Length of the primary key when fixed.
    pub key_len: Option<usize>,
    /// The secondary indexes.
    pub indexes: Vec<IndexInfo>,
    /// Fields holding secret material.
    pub secret_fields: Vec<String>,
    /// Whether the primary key is secret material (a token's hash).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret_key: bool,
}

/// One index in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Its name.
    pub name: String,
    /// Whether it is unique.
    pub unique: bool,
}

/// A read-only snapshot.
pub struct ReadTx<'a> {
    raw: &'a dyn RawRead,
    registry: &'a Registry,
}

/// A write transaction; everything done through it commits or aborts together.
pub struct WriteTx<'a> {
    raw: &'a dyn RawWrite,
    registry: &'a Registry,
    // The registry's epoch this transaction's registrations belong to (see
    // [`Registry::forget`]).
    epoch: std::cell::Cell<u64>,
    new_shapes: RefCell<Vec<u64>>,
    new_tables: RefCell<Vec<(&'static str, TypeId)>>,
    // The table and type registered last in this transaction (its name's address and
    // length): a batch of writes to one table asks again for every record, and this answers
    // without the registry's lock and hash. Emptied with `new_tables`.
    last_table: std::cell::Cell<Option<(usize, usize, TypeId)>>,
    // The shape registered last in this transaction, for the same reason. Emptied with
    // `new_shapes`.
    last_shape: std::cell::Cell<Option<u64>>,
    // The sequences this transaction has advanced, held here and written to `meta` once:
    // when the work ends, and before anything could read or change `meta` behind them (raw
    // access, a sequence read, a raise). A batch of inserts thus writes each sequence once.
    sequences: RefCell<Vec<Advanced>>,
    // Who asked for this write, when the thread that began it was told (see `origin.rs`).
    origin: Option<Arc<str>>,
}

/// A sequence a write transaction has advanced: its name, its `meta` key, its value, and
/// whether `meta` holds that value.
type Advanced = (Box<str>, Vec<u8>, u64, bool);

/// Shapes and catalog entries a store handle knows to be committed in its file, so that
/// transactions need not look them up again.
///
/// It must never claim an entry the file lacks, or a record would be written without its
/// shape or catalog entry (readable by this handle, which knows its type, but `Corrupt` to a
/// fresh one that reads it by name). A write that deletes `meta` (a wipe) therefore empties
/// the registry inside its transaction, before any write after it in the same batch asks it,
/// and moves it to a new epoch: registrations of transactions begun in an older epoch are
/// dropped when they are published (a write batched before the wipe, committed with it,
/// publishes only after it). A wipe taken back leaves the registry emptied, which costs the
/// next writes a lookup.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    // Counts the times `meta` was deleted (see above).
    epoch: std::sync::atomic::AtomicU64,
    shapes: RwLock<HashSet<u64, Quick>>,
    // Tables catalogued, with each record type that wrote them through this handle.
    catalogued: RwLock<HashSet<(&'static str, TypeId), Quick>>,
    // The record type each table is kept for: redkeep's own tables (in a handle), and the
    // type that wrote an application table through this handle (see
    // [`Registry::refuse_foreign`]). Every write asks it.
    owners: RwLock<HashMap<&'static str, Owner, Quick>>,
    // Changes with every change of `owners`; 0 while it is empty.
    owners_generation: AtomicU64,
    // Index builds refused in a write that then failed: their tables are emptied by a write
    // of their own (`Store::clear_refused_builds`), since the failed write's own emptying
    // was rolled back with it.
    refused_builds: std::sync::Mutex<Vec<RefusedBuild>>,
}

/// The record type a table is kept for: one of redkeep's own (without `info`), or the type
/// that wrote an application table through a handle.
#[derive(Debug, Clone, Copy)]
struct Owner {
    ty: TypeId,
    type_name: &'static str,
    info: Option<fn() -> TableInfo>,
}

/// The refusal of record type `type_name` on `name`, one of redkeep's own tables.
pub(crate) fn own_table_refused(name: &str, type_name: &str) -> Error {
    Error::invalid(
        "record type",
        format!(
            "{type_name} names its table {name:?}, one of redkeep's own tables; give it \
             another Record::TABLE (a prefix of the application's, say)"
        ),
    )
}

/// The indexes of an application table whose build was refused: their names, whether each
/// is unique, and their raw tables.
#[derive(Debug, Clone)]
pub(crate) struct RefusedBuild {
    pub(crate) table: &'static str,
    pub(crate) indexes: Vec<(&'static str, bool, &'static str)>,
}

/// The hasher of the registry's sets, which every record write asks: shape ids (hashes
/// already) and table names a program defines. SipHash's guard against chosen keys buys
/// nothing there and cost more than the rest of the check.
type Quick = std::hash::BuildHasherDefault<QuickHasher>;

/// A multiply-rotate hasher over 8-byte words (as rustc's `FxHasher`).
#[derive(Default)]
pub(crate) struct QuickHasher(u64);

impl QuickHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for QuickHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.add(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
}

/// Refuses a second record type on an application table another type wrote through a
/// handle, unless both declare the same key and indexes, or the second extends the first's
/// indexes (then it takes the table over, see [`Registry::note_writer`]). Two types whose
/// records do not read as each other's (a table name copied from another type) would break
/// each other's reads and unique indexes. And each type's registration is done once per
/// handle, so the indexes the other declares would not be kept for its records either. (A
/// type changed from one release to the next, with an index added, say, is one type per
/// process: that keeps working, the new indexes built at its first write.)
///
/// # Errors
/// `InvalidInput` naming both types and what they declare.
fn refuse_second_type(
    name: &str,
    first: &'static str,
    theirs: fn() -> TableInfo,
    type_name: &'static str,
    ours: fn() -> TableInfo,
) -> Result<()> {
    let (theirs, ours) = (theirs(), ours());
    if theirs.key_len == ours.key_len && theirs.indexes.iter().all(|i| ours.indexes.contains(i)) {
        return Ok(());
    }
    Err(Error::invalid(
        "record type",
        format!(
            "table {name:?} is used by {first} ({}) and by {type_name} ({}); one table holds \
             the records of one type: give one of them another Record::TABLE",
            declared(&theirs),
            declared(&ours),
        ),
    ))
}

/// A record type's key and indexes, as a message names them.
fn declared(info: &TableInfo) -> String {
    let key = match info.key_len {
        Some(8) => "an 8-byte key".to_string(),
        Some(n) => format!("a {n}-byte key"),
        None => "a variable-length key".to_string(),
    };
    let indexes: Vec<String> = info
        .indexes
        .iter()
        .map(|i| {
            if i.unique {
                format!("{} (unique)", i.name)
            } else {
                i.name.clone()
            }
        })
        .collect();
    if indexes.is_empty() {
        format!("{key}, no index")
    } else {
        format!("{key}, indexes {}", indexes.join(", "))
    }
}

/// What a transaction registered, published once it commits, with the registry's epoch it
/// was registered in.
pub(crate) struct Registrations {
    epoch: u64,
    shapes: Vec<u64>,
    tables: Vec<(&'static str, TypeId)>,
}

impl Registry {
    /// Whether `table` is kept for a type of the handle's own (redkeep's tables).
    pub(crate) fn is_reserved(&self, table: &str) -> bool {
        self.owner(table).is_some_and(|o| o.info.is_none())
    }

    fn owner(&self, table: &str) -> Option<Owner> {
        self.owners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .copied()
    }

    /// Refuses a record type `ty` (declaring `info`) other than the one table `name` is
    /// kept for: any other type on one of redkeep's own tables, and on an application table
    /// a second type (see [`refuse_second_type`]). One lookup, as before there were
    /// application owners: every write asks.
    ///
    /// # Errors
    /// `InvalidInput` naming the types and the table.
    pub(crate) fn refuse_foreign(
        &self,
        name: &str,
        ty: TypeId,
        type_name: &'static str,
        info: fn() -> TableInfo,
    ) -> Result<()> {
        // Every read and write asks, nearly always for a type that passes: the thread keeps
        // the last few that passed, each with the owners' generation it passed in.
        type Passed = Cell<Option<(u64, TypeId, usize, usize)>>;
        const SLOTS: usize = 8;
        thread_local! {
            static PASSED: [Passed; SLOTS] = const { [const { Cell::new(None) }; SLOTS] };
        }
        // Read before the owners: a change after it makes the note below a stale one, which
        // no later check matches.
        let generation = self.owners_generation.load(Ordering::Acquire);
        let key = (generation, ty, name.as_ptr() as usize, name.len());
        let slot = (key.2 >> 3) % SLOTS;
        if PASSED.try_with(|p| p[slot].get() == Some(key)) == Ok(true) {
            return Ok(());
        }
        match self.owner(name) {
            Some(owner) if owner.ty != ty => match owner.info {
                None => Err(own_table_refused(name, type_name)),
                Some(theirs) => refuse_second_type(name, owner.type_name, theirs, type_name, info),
            },
            _ => Ok(()),
        }?;
        let _ = PASSED.try_with(|p| p[slot].set(Some(key)));
        Ok(())
    }

    /// Marks a change of the owners (made under their write lock): every check that passed
    /// before it is asked again.
    fn owners_changed(&self) {
        // Unique across handles, so that a check noted for one handle never matches another's.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        self.owners_generation
            .store(NEXT.fetch_add(1, Ordering::Relaxed), Ordering::Release);
    }

    /// Notes `ty` as the writer of application table `name` through this handle, unless
    /// another type is noted already that declares as many indexes (see
    /// [`Registry::refuse_second_type`]). A type that declares more takes the table over
    /// (its registration built its new indexes from every record): the type it took over
    /// from, which would leave them without its records, is refused from then on.
    fn note_writer(
        &self,
        name: &'static str,
        ty: TypeId,
        type_name: &'static str,
        info: fn() -> TableInfo,
    ) {
        let mut owners = self.owners.write().unwrap_or_else(|e| e.into_inner());
        let writer = Owner {
            ty,
            type_name,
            info: Some(info),
        };
        let Some(first) = owners.get(name).copied() else {
            owners.insert(name, writer);
            self.owners_changed();
            return;
        };
        let Some(theirs) = first.info else {
            return; // One of redkeep's own.
        };
        if first.ty == ty || theirs().indexes.len() >= info().indexes.len() {
            return;
        }
        owners.insert(name, writer);
        self.owners_changed();
        // Its registration is forgotten, so that its next write asks again, and is refused.
        self.catalogued
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(name, first.ty));
    }

    /// Notes an index build refused in a write (see [`RefusedBuild`]).
    pub(crate) fn note_refused_build(&self, build: RefusedBuild) {
        let mut builds = self
            .refused_builds
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Each write of the type tries again: one note per table is enough.
        builds.retain(|b| b.table != build.table);
        builds.push(build);
    }

    /// The refused builds noted since the last call.
    pub(crate) fn take_refused_builds(&self) -> Vec<RefusedBuild> {
        std::mem::take(
            &mut *self
                .refused_builds
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Keeps each table name of `tables` for its record type: writing a record of another
    /// type into it is refused.
    pub(crate) fn reserve(&self, tables: &[(&'static str, TypeId)]) {
        let own = |&(name, ty): &(&'static str, TypeId)| {
            let owner = Owner {
                ty,
                type_name: "",
                info: None,
            };
            (name, owner)
        };
        let mut owners = self.owners.write().unwrap_or_else(|e| e.into_inner());
        owners.extend(tables.iter().map(own));
        self.owners_changed();
    }

    /// The current epoch (see [`Registry`]).
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Notes what a committed transaction registered, unless `meta` was deleted since it
    /// began. Each set is checked under its own lock, and [`Registry::forget`] moves the
    /// epoch before it empties either set, so nothing of an older epoch lands after.
    pub(crate) fn publish(&self, known: Registrations) {
        if !known.shapes.is_empty() {
            let mut shapes = self.shapes.write().unwrap_or_else(|e| e.into_inner());
            if self.epoch() == known.epoch {
                shapes.extend(known.shapes);
            }
        }
        if !known.tables.is_empty() {
            let mut catalogued = self.catalogued.write().unwrap_or_else(|e| e.into_inner());
            if self.epoch() == known.epoch {
                catalogued.extend(known.tables);
            }
        }
    }

    /// Forgets everything and begins a new epoch (`meta` is being deleted, or was replaced);
    /// returns the new epoch.
    pub(crate) fn forget(&self) -> u64 {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.shapes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.catalogued
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        epoch
    }
}

impl<'a> ReadTx<'a> {
    pub(crate) fn new(raw: &'a dyn RawRead, registry: &'a Registry) -> ReadTx<'a> {
        ReadTx { raw, registry }
    }
}

impl<'a> WriteTx<'a> {
    pub(crate) fn new(
        raw: &'a dyn RawWrite,
        registry: &'a Registry,
        origin: Option<Arc<str>>,
    ) -> WriteTx<'a> {
        WriteTx {
            raw,
            registry,
            epoch: std::cell::Cell::new(registry.epoch()),
            new_shapes: RefCell::default(),
            new_tables: RefCell::default(),
            last_table: std::cell::Cell::new(None),
            last_shape: std::cell::Cell::new(None),
            sequences: RefCell::default(),
            origin,
        }
    }

    /// Who asked for this write (an operator's `redkeep` command, say), when the code that
    /// began it said so; `None` otherwise (an application's own writes).
    pub(crate) fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    pub(crate) fn into_registrations(self) -> Registrations {
        Registrations {
            epoch: self.epoch.get(),
            shapes: self.new_shapes.into_inner(),
            tables: self.new_tables.into_inner(),
        }
    }
}

/// Something tables can be read from: a read or a write transaction.
pub trait Source: sealed::Sealed {
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn raw(&self) -> &dyn RawRead;

    /// Writes what the transaction holds back (the sequences a write advanced), so that raw
    /// reads of `meta` see it.
    #[doc(hidden)]
    fn settle(&self) -> Result<()> {
        Ok(())
    }

    /// Why reads of table `name` through record type `ty` are refused, if they are: as
    /// writes are (`Registry::refuse_foreign`). A write transaction refuses at its first
    /// write instead, which every write checks already.
    #[doc(hidden)]
    fn read_refusal(
        &self,
        name: &str,
        ty: TypeId,
        type_name: &'static str,
        info: fn() -> TableInfo,
    ) -> Option<Error> {
        let _ = (name, ty, type_name, info);
        None
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ReadTx<'_> {}
    impl Sealed for super::WriteTx<'_> {}
}

impl Source for ReadTx<'_> {
    #[allow(private_interfaces)]
    fn raw(&self) -> &dyn RawRead {
        self.raw
    }

    fn read_refusal(
        &self,
        name: &str,
        ty: TypeId,
        type_name: &'static str,
        info: fn() -> TableInfo,
    ) -> Option<Error> {
        self.registry
            .refuse_foreign(name, ty, type_name, info)
            .err()
    }
}

impl Source for WriteTx<'_> {
    #[allow(private_interfaces)]
    fn raw(&self) -> &dyn RawRead {
        self.raw
    }

    fn settle(&self) -> Result<()> {
        self.flush_sequences()
    }
}

impl WriteTx<'_> {
    /// The engine's write access for anything (`meta` included): the sequences this
    /// transaction advanced are written first and then forgotten, since raw writes may
    /// change them.
    ///
    /// # Errors
    /// `Storage` when a sequence cannot be written.
    pub(crate) fn raw_write(&self) -> Result<&dyn RawWrite> {
        self.flush_sequences()?;
        self.sequences.borrow_mut().clear();
        Ok(self.raw)
    }

    /// Deletes every table of the store (records, indexes and `meta`, sequences included).
    /// The shapes and catalog entries known to be registered go with `meta`: this
    /// transaction's own, and the handle's registry (see [`Registry`]), for the writes after
    /// this one in the same batch.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub(crate) fn delete_all_tables(&self) -> Result<()> {
        let raw = self.raw_write()?;
        self.new_shapes.borrow_mut().clear();
        self.new_tables.borrow_mut().clear();
        self.last_table.set(None);
        self.last_shape.set(None);
        self.epoch.set(self.registry.forget());
        for name in raw.table_names()? {
            raw.delete_table(&name)?;
        }
        Ok(())
    }

    /// The engine's write access for a table's records and index entries, which never touch
    /// the sequences in `meta`.
    pub(super) fn raw_records(&self) -> &dyn RawWrite {
        self.raw
    }

    /// Writes the sequence values this transaction holds back. Called when its work ends.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub(crate) fn flush_sequences(&self) -> Result<()> {
        for (_, key, value, written) in self.sequences.borrow_mut().iter_mut() {
            if !*written {
                // The engine call cannot come back into this transaction.
                self.raw.put(META, key, &value.to_be_bytes())?;
                *written = true;
            }
        }
        Ok(())
    }

    /// Makes sure the shape `id` (of `names`) is in the registry of this file.
    pub(crate) fn register_shape<S: AsRef<str>>(&self, id: u64, names: &[S]) -> Result<()> {
        if self.last_shape.get() == Some(id) {
            return Ok(());
        }
        if self
            .registry
            .shapes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
            || self.new_shapes.borrow().contains(&id)
        {
            self.last_shape.set(Some(id));
            return Ok(());
        }
        let key = shape_key(id);
        match get_owned(self.raw, META, &key)? {
            Some(existing) => {
                // Same id, other names: a 64-bit hash collision. Refuse rather than misread.
                let known = format::decode_shape(id, &existing).map_err(|e| Error::Corrupt {
                    table: META.into(),
                    key: format!("shape {id:016x}"),
                    reason: e.to_string(),
                })?;
                if known.len() != names.len()
                    || known.iter().zip(names).any(|(a, b)| **a != *b.as_ref())
                {
                    return Err(Error::Invariant {
                        what: format!("two field lists share the shape id {id:016x}"),
                    });
                }
            }
            None => self.raw.put(META, &key, &format::encode_shape(names))?,
        }
        self.new_shapes.borrow_mut().push(id);
        self.last_shape.set(Some(id));
        Ok(())
    }

    /// Refuses a record type `ty` other than the one table `name` is kept for (one of
    /// redkeep's own tables): it would write or delete records of another type there.
    ///
    /// # Errors
    /// `InvalidInput` naming the type and the table.
    pub(crate) fn refuse_foreign(
        &self,
        name: &str,
        ty: TypeId,
        type_name: &'static str,
        info: fn() -> TableInfo,
    ) -> Result<()> {
        self.registry.refuse_foreign(name, ty, type_name, info)
    }

    /// Notes an index build this transaction refused, so that the store empties its
    /// tables in a write of their own should this one fail.
    pub(crate) fn note_refused_build(&self, build: RefusedBuild) {
        self.registry.note_refused_build(build);
    }

    /// Makes sure the catalog holds `info` for table `name`, written by the record type
    /// `ty` (once per handle, table and type). When the entry differs, `catch_up` runs
    /// first with the entry found (`None` when there is none), to bring the table in line
    /// with `info` (its new indexes built), unless the table is one of redkeep's own, whose
    /// indexes change only in schema migrations.
    ///
    /// # Errors
    /// `InvalidInput` when `name` is kept for another record type (one of redkeep's own
    /// tables); what `catch_up` returns; `Storage` when the engine fails.
    pub(crate) fn register_table(
        &self,
        name: &'static str,
        ty: TypeId,
        type_name: &'static str,
        info: fn() -> TableInfo,
        catch_up: impl FnOnce(Option<&TableInfo>) -> Result<()>,
    ) -> Result<()> {
        let this = Some((name.as_ptr() as usize, name.len(), ty));
        if self.last_table.get() == this {
            return Ok(());
        }
        if self
            .registry
            .catalogued
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(name, ty))
            || self.new_tables.borrow().contains(&(name, ty))
        {
            self.last_table.set(this);
            return Ok(());
        }
        self.refuse_foreign(name, ty, type_name, info)?;
        let own = self.registry.is_reserved(name);
        let declared = info;
        let mut info = info();
        let key = prefixed(TABLE_PREFIX, name.as_bytes());
        let current = get_owned(self.raw, META, &key)?
            .and_then(|b| serde_json::from_slice::<TableInfo>(&b).ok());
        // A field a writer of the table declared secret stays secret (shown `<redacted>`):
        // an older build that rewrites a newer one's records keeps the fields it does not
        // know, secret ones among them (see `Record::DROPPED_FIELDS`).
        if let Some(before) = &current {
            for field in &before.secret_fields {
                if !info.secret_fields.contains(field) {
                    info.secret_fields.push(field.clone());
                }
            }
        }
        if current.as_ref() != Some(&info) {
            if !own {
                catch_up(current.as_ref())?;
            }
            self.put_catalog(&info)?;
        }
        if !own {
            self.registry.note_writer(name, ty, type_name, declared);
        }
        self.new_tables.borrow_mut().push((name, ty));
        self.last_table.set(this);
        Ok(())
    }
}

/// The metadata entry (free-form, 8 bytes big-endian) holding the schema version a file was
/// made at. Steps up to that version never ran on it; a reverse step may read it to know that
/// it has nothing of its step's to take out.
pub(crate) const BORN_AT: &str = "schema_born";

/// Meta key an import sets with its records and removes once its folders are written:
/// while it is there, an import stopped between the two (a crash, a kill), and the next
/// import replaces what it wrote (`ops::import`; `check` reports it).
pub(crate) const IMPORT_UNFINISHED: &str = "import_unfinished";
/// Set in a move's target with the store's records, until the workspace folders are copied
/// too; holds where the move came from.
pub(crate) const MOVE_UNFINISHED: &str = "move_unfinished";
/// Set in the source of a move from one server to another that share the data dir's
/// folders, once the move is whole; holds where the store went (without password). Every
/// open of the source is then refused: it would be a second store on those folders.
pub(crate) const MOVED_TO: &str = "moved_to";
/// The store's id: 32 hex digits, random, given when the store is made or first opened for
/// writing by a build that knows it. The data dir names it in its note (`redkeep.store`), so
/// that a store is never opened on another store's workspace folders. A backup and a
/// restore keep it, a reset too; a move gives its target a new one; an export leaves it out.
pub(crate) const STORE_ID: &str = "store_id";
/// Which copy of the store this is: 32 hex digits, random, given anew by every `restore`
/// (the id stays the backup's) and by the first open that writes the data dir's note. The
/// note names it too, so that the store a restore replaced, or the one it was restored from
/// when that went to another schema, is refused on the data dir now tied to the restored
/// copy, though they share an id. A reset keeps it.
pub(crate) const STORE_INSTANCE: &str = "store_instance";
/// Set by `adopt` in the store it makes, until the workspace folders are written too.
pub(crate) const ADOPT_UNFINISHED: &str = "adopt_unfinished";
/// Set while a reset has emptied the store but not yet moved the workspace folders to the
/// trash; its value is the path of the copy the reset took first.
pub(crate) const RESET_UNFINISHED: &str = "reset_unfinished";
/// Set in a restored store until the backup's workspace folders are in place: a
/// [`StoppedRestore`](crate::ops::StoppedRestore) as JSON.
pub(crate) const RESTORE_UNFINISHED: &str = "restore_unfinished";

/// Every mark an operation stopped part way leaves in the store, with the name `status` and
/// `check` give the operation. An export leaves them out, and an import refuses a line that
/// sets one. A restore removes those its backup's store carried, but for the
/// [`CONTENT_MARKS`].
pub(crate) const UNFINISHED_MARKS: [(&str, &str); 5] = [
    (RESET_UNFINISHED, "a reset"),
    (RESTORE_UNFINISHED, "a restore"),
    (MOVE_UNFINISHED, "a move into this store"),
    (IMPORT_UNFINISHED, "an import"),
    (ADOPT_UNFINISHED, "an adoption"),
];

/// The operations that stopped part way in the store (a crash, a kill), by the marks they
/// leave until done ([`UNFINISHED_MARKS`]), as phrases (`a restore`).
///
/// # Errors
/// `Storage` when the engine fails.
pub(crate) fn stopped_operations(tx: &dyn Meta) -> Result<Vec<&'static str>> {
    let marks = metas(tx, &UNFINISHED_MARKS.map(|(key, _)| key))?;
    Ok(UNFINISHED_MARKS
        .iter()
        .zip(marks)
        .filter(|(_, mark)| mark.is_some())
        .map(|((_, what), _)| *what)
        .collect())
}

/// The free-form metadata values of `keys` ([`Meta::meta`]), in their order: on a server,
/// in one round trip rather than one each.
///
/// # Errors
/// `Storage` when the engine fails.
pub(crate) fn metas(tx: &dyn Meta, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
    let full: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| prefixed(USER_META_PREFIX, k.as_bytes()))
        .collect();
    let mut found = Vec::with_capacity(keys.len());
    tx.raw().get_each(
        META,
        &mut full.iter().map(Vec::as_slice),
        &mut |_, value| {
            found.push(value.map(<[u8]>::to_vec));
            Ok(true)
        },
    )?;
    Ok(found)
}

/// The marks that say the store's own records are incomplete (an import or an adoption
/// stopped part way), which hold wherever its file goes: a restore keeps them.
pub(crate) const CONTENT_MARKS: [&str; 2] = [IMPORT_UNFINISHED, ADOPT_UNFINISHED];

/// The schema version the file was made at, when it says (files made before redkeep wrote it
/// do not).
///
/// # Errors
/// `Storage` when the engine fails.
pub(crate) fn born_at(tx: &dyn Meta) -> Result<Option<u64>> {
    Ok(tx
        .meta(BORN_AT)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes))
}

/// Reads of the `meta` table shared by both transaction kinds.
pub trait Meta: Source {
    /// The schema version, `None` on a new file.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn schema_version(&self) -> Result<Option<u64>> {
        Ok(get_owned(self.raw(), META, SCHEMA_VERSION_KEY)?
            .as_deref()
            .and_then(be_u64))
    }

    /// A free-form metadata value.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        get_owned(
            self.raw(),
            META,
            &prefixed(USER_META_PREFIX, key.as_bytes()),
        )
    }

    /// Every sequence, as (table, last id), by table name.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn sequences(&self) -> Result<Vec<(String, u64)>> {
        self.settle()?;
        if let Some(native) = self.raw().native_sequences()? {
            return Ok(native);
        }
        let mut out = Vec::new();
        self.raw().range(
            META,
            &KeyRange::prefix(SEQ_PREFIX.to_vec()),
            Order::Asc,
            &mut |k, v| {
                if let (Ok(name), Some(n)) =
                    (std::str::from_utf8(&k[SEQ_PREFIX.len()..]), be_u64(v))
                {
                    out.push((name.to_string(), n));
                }
                Ok(true)
            },
        )?;
        Ok(out)
    }

    /// Every free-form metadata entry, by key.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn meta_entries(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        self.raw().range(
            META,
            &KeyRange::prefix(USER_META_PREFIX.to_vec()),
            Order::Asc,
            &mut |k, v| {
                if let Ok(name) = std::str::from_utf8(&k[USER_META_PREFIX.len()..]) {
                    out.push((name.to_string(), v.to_vec()));
                }
                Ok(true)
            },
        )?;
        Ok(out)
    }

    /// Every registered shape, as (id, field names).
    ///
    /// # Errors
    /// `Corrupt` for a malformed registry entry.
    fn shapes(&self) -> Result<Vec<(u64, Shape)>> {
        let mut out = Vec::new();
        self.raw().range(
            META,
            &KeyRange::prefix(SHAPE_PREFIX.to_vec()),
            Order::Asc,
            &mut |k, v| {
                let id = be_u64(&k[SHAPE_PREFIX.len()..]).ok_or_else(|| Error::Corrupt {
                    table: META.into(),
                    key: hex(k),
                    reason: "malformed shape key".into(),
                })?;
                let shape = format::decode_shape(id, v).map_err(|e| Error::Corrupt {
                    table: META.into(),
                    key: format!("shape {id:016x}"),
                    reason: e.to_string(),
                })?;
                out.push((id, shape));
                Ok(true)
            },
        )?;
        Ok(out)
    }

    /// The catalog: every table written to this store by a build that records it.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn catalog(&self) -> Result<Vec<TableInfo>> {
        let mut out = Vec::new();
        self.raw().range(
            META,
            &KeyRange::prefix(TABLE_PREFIX.to_vec()),
            Order::Asc,
            &mut |_, v| {
                if let Ok(info) = serde_json::from_slice::<TableInfo>(v) {
                    out.push(info);
                }
                Ok(true)
            },
        )?;
        Ok(out)
    }

    /// The last id handed out by `table`'s sequence (0 when none).
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn sequence(&self, table: &str) -> Result<u64> {
        self.settle()?;
        if let Some(native) = self.raw().native_sequences()? {
            return Ok(native
                .into_iter()
                .find(|(name, _)| name == table)
                .map_or(0, |(_, n)| n));
        }
        Ok(
            get_owned(self.raw(), META, &prefixed(SEQ_PREFIX, table.as_bytes()))?
                .as_deref()
                .and_then(be_u64)
                .unwrap_or(0),
        )
    }

    /// The names of every raw table in the store (records `r:…`, indexes `i:…`, `meta`).
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn table_names(&self) -> Result<Vec<String>> {
        self.raw().table_names()
    }
}

impl Meta for ReadTx<'_> {}
impl Meta for WriteTx<'_> {}

/// The entries of the shape registry in `meta` that do not read (a damaged page, a changed
/// byte), each with its shape's id where its key reads, and why. An export reads every
/// entry, and so did not run where a check passed: this build's own shapes are taken from
/// memory, not from the registry.
///
/// # Errors
/// `Storage` when the engine fails.
pub(crate) fn damaged_shapes(tx: &dyn Source) -> Result<Vec<(Option<u64>, String)>> {
    let mut out = Vec::new();
    tx.raw().range(
        META,
        &KeyRange::prefix(SHAPE_PREFIX.to_vec()),
        Order::Asc,
        &mut |k, v| {
            let Some(id) = be_u64(&k[SHAPE_PREFIX.len()..]) else {
                out.push((None, format!("malformed shape key {}", hex(k))));
                return Ok(true);
            };
            if let Err(e) = format::decode_shape(id, v) {
                out.push((Some(id), e.to_string()));
            }
            Ok(true)
        },
    )?;
    Ok(out)
}

impl WriteTx<'_> {
    /// Writes again the damaged registry entries ([`damaged_shapes`]) of shapes this build
    /// knows (its own record types'); says what it wrote. The others stay as they are:
    /// `check` names them.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub(crate) fn mend_shapes(&self) -> Result<Vec<String>> {
        let mut changes = Vec::new();
        for (id, why) in damaged_shapes(self)? {
            let Some(id) = id else { continue };
            if let Some(names) = format::cached_shape(id) {
                self.put_shape(id, &names)?;
                changes.push(format!(
                    "meta: the registry entry of shape {id:016x} was damaged ({why}); wrote it again from this build's record types"
                ));
            }
        }
        Ok(changes)
    }
}

impl WriteTx<'_> {
    /// Sets the schema version.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn set_schema_version(&self, version: u64) -> Result<()> {
        self.raw
            .put(META, SCHEMA_VERSION_KEY, &version.to_be_bytes())
    }

    /// Removes the recorded schema version (salvage's new copy, until the damaged store's
    /// own is copied in).
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub(crate) fn clear_schema_version(&self) -> Result<()> {
        self.raw.remove(META, SCHEMA_VERSION_KEY)?;
        Ok(())
    }

    /// Sets a free-form metadata value.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.raw
            .put(META, &prefixed(USER_META_PREFIX, key.as_bytes()), value)
    }

    /// Removes a free-form metadata value.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn remove_meta(&self, key: &str) -> Result<()> {
        self.raw
            .remove(META, &prefixed(USER_META_PREFIX, key.as_bytes()))?;
        Ok(())
    }

    /// Advances `table`'s sequence and returns the new value.
    ///
    /// # Errors
    /// `Denied` past [`MAX_ID`]; `Storage` when the engine fails.
    pub fn next_sequence(&self, table: &str) -> Result<u64> {
        if let Some(n) = self.raw.native_next(table)? {
            return Ok(n);
        }
        let exhausted = || {
            Error::denied(format!(
                "the id sequence of {table} is exhausted (it reached the largest id, {MAX_ID}); no more records can be numbered"
            ))
        };
        // Advanced before in this transaction: the value is known, and written later.
        if let Some((_, _, last, written)) = self
            .sequences
            .borrow_mut()
            .iter_mut()
            .find(|(name, ..)| **name == *table)
        {
            *last = last
                .checked_add(1)
                .filter(|n| *n <= MAX_ID)
                .ok_or_else(exhausted)?;
            *written = false;
            return Ok(*last);
        }
        let key = prefixed(SEQ_PREFIX, table.as_bytes());
        let next = get_owned(self.raw, META, &key)?
            .as_deref()
            .and_then(be_u64)
            .unwrap_or(0)
            .checked_add(1)
            .filter(|n| *n <= MAX_ID)
            .ok_or_else(exhausted)?;
        self.sequences
            .borrow_mut()
            .push((table.into(), key, next, false));
        Ok(next)
    }

    /// Raises `table`'s sequence to at least `value` (sequences never go back).
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn raise_sequence(&self, table: &str, value: u64) -> Result<()> {
        if self.raw.native_raise(table, value)? {
            return Ok(());
        }
        self.flush_sequences()?;
        self.sequences
            .borrow_mut()
            .retain(|(name, ..)| **name != *table);
        if self.sequence(table)? < value {
            self.raw.put(
                META,
                &prefixed(SEQ_PREFIX, table.as_bytes()),
                &value.to_be_bytes(),
            )?;
        }
        Ok(())
    }

    /// Writes a catalog entry read from another store (import, salvage).
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub(crate) fn put_catalog(&self, info: &TableInfo) -> Result<()> {
        let bytes = serde_json::to_vec(info).map_err(|e| Error::Invariant {
            what: format!("cannot encode the catalog entry of {}: {e}", info.name),
        })?;
        self.raw
            .put(META, &prefixed(TABLE_PREFIX, info.name.as_bytes()), &bytes)
    }

    /// Registers the shapes this process knows that the registry lacks, or holds damaged (a
    /// salvage reads records through their type's own field list when their registry
    /// entries were lost); returns how many.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub(crate) fn register_known_shapes(&self) -> Result<usize> {
        let mut added = 0;
        for (id, names) in format::cached_shapes() {
            let sound = get_owned(self.raw, META, &shape_key(id))?
                .is_some_and(|bytes| format::decode_shape(id, &bytes).is_ok());
            if !sound {
                self.put_shape(id, &names)?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Registers shapes read from another store (import, salvage), checking each.
    ///
    /// # Errors
    /// `Corrupt` when an entry does not match its id.
    pub(crate) fn put_shape(&self, id: u64, names: &[Box<str>]) -> Result<()> {
        if shape_id(names) != id {
            return Err(Error::invalid(
                "shape",
                format!("shape {id:016x} does not match its names"),
            ));
        }
        self.raw
            .put(META, &shape_key(id), &format::encode_shape(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(indexes: &[&str]) -> TableInfo {
        TableInfo {
            name: "things".into(),
            version: 1,
            key_len: Some(8),
            indexes: indexes
                .iter()
                .map(|n| IndexInfo {
                    name: (*n).into(),
                    unique: false,
                })
                .collect(),
            secret_fields: Vec::new(),
            secret_key: false,
        }
    }

    /// The checks a thread notes as passed are asked again once the owners change: a type
    /// another takes its table over from is refused at its next write, though it passed a
    /// moment before.
    #[test]
    fn a_type_that_passed_is_refused_once_another_takes_its_table_over() {
        struct Old;
        struct New;
        let (old, new) = (TypeId::of::<Old>(), TypeId::of::<New>());
        let registry = Registry::default();
        registry.note_writer("things", old, "Old", || table(&["a"]));
        let ask = |ty, info: fn() -> TableInfo| registry.refuse_foreign("things", ty, "T", info);
        assert!(ask(old, || table(&["a"])).is_ok());
        assert!(ask(old, || table(&["a"])).is_ok());
        registry.note_writer("things", new, "New", || table(&["a", "b"]));
        assert!(ask(old, || table(&["a"])).is_err());
        assert!(ask(new, || table(&["a", "b"])).is_ok());
        // Another handle's owners are its own, whatever this thread noted for the first.
        let other = Registry::default();
        other.note_writer("things", new, "New", || table(&["a", "b"]));
        assert!(
            other
                .refuse_foreign("things", old, "T", || table(&["a"]))
                .is_err()
        );
    }
}
