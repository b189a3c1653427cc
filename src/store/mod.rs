//! The generic typed-table layer. Nothing here knows about users or files.
//!
//! A [`Store`] is one redb file. Work happens in closures: [`Store::write`] commits when the
//! closure returns `Ok` and aborts otherwise (including on panic); [`Store::read`] sees one
//! consistent snapshot. Typed tables ([`Table`]) keep their secondary indexes exact inside the
//! same write transaction as the record. The `meta` table holds the schema version, the id
//! sequences, the registry of struct shapes the records use (`format.rs`) and a catalog of the
//! tables written, so tools can read a store without the application's types.

mod check;
pub mod codec;
mod engine;
pub mod format;
mod index;
mod key;
mod migrate;
mod table;

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

pub use check::{CheckReport, TableCheck, TableCounts, TableStats, check_table};
pub use codec::Stored;
pub use engine::{KeyRange, Order};
pub use index::Index;
pub use key::{Key, KeyPart};
pub use migrate::{Migration, MigrationRun};
pub use table::{Record, Table};

pub(crate) use engine::{RawRead, RawWrite, get_owned};
pub(crate) use key::{hex, show_key};
pub(crate) use table::{decode_record, index_table, record_table};

use crate::error::{Error, Result};
use engine::redb_file::{self, FileRead, FileWrite};
use format::{Shape, UsedShapes};

/// How the store file is shared between processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Mode {
    /// One process owns the file (redb `ExclusiveWriter`); the fastest mode.
    #[default]
    Exclusive,
    /// Several processes open the file at once, one write transaction at a time
    /// (redb `MultiWriter`). Each transaction costs about twice as much.
    Shared,
}

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is on disk when `write` returns (the default).
    #[default]
    Immediate,
    /// Commits are made durable by the next `Immediate` one; a crash may lose them.
    /// For bulk loads and benchmarks. A store in `Mode::Shared` commits durably regardless
    /// (redb shares a file between processes only that way).
    None,
}

/// Options for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Exclusive (default) or shared between processes.
    pub mode: Mode,
    /// Durability of each commit.
    pub durability: Durability,
    /// Create the file when it does not exist (the default). When false, a missing file is
    /// `Error::NotInitialized`.
    pub create: bool,
    /// The schema version this build writes. A file with a newer one is refused; an older one
    /// is `Error::MigrationNeeded` unless `allow_outdated` is set.
    pub schema_version: u64,
    /// Open a file with an older schema version anyway (to migrate it).
    pub allow_outdated: bool,
    /// Cache size in bytes.
    pub cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            mode: Mode::Exclusive,
            durability: Durability::Immediate,
            create: true,
            schema_version: 1,
            allow_outdated: false,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One redb file of typed tables. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    // Transactions hold the read side for their lifetime; `check_integrity` needs the write
    // side because redb refuses to check while a transaction is alive.
    db: RwLock<redb::Database>,
    path: PathBuf,
    mode: Mode,
    durability: Durability,
    owner_file: Option<PathBuf>,
    // Shapes and catalog entries known to be committed in this file.
    shapes: RwLock<HashSet<u64>>,
    catalogued: RwLock<HashSet<&'static str>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(owner) = &self.owner_file {
            // Only remove the marker if it is still ours.
            if read_owner(owner).is_some_and(|o| o.pid == std::process::id()) {
                let _ = std::fs::remove_file(owner);
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("mode", &self.inner.mode)
            .finish()
    }
}

/// Who holds a store exclusively, as recorded in `<db>.owner` next to the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owner {
    /// Process id of the holder.
    pub pid: u32,
    /// When it opened the store (Unix seconds).
    pub since: i64,
}

/// The path of the owner marker of the store at `db`.
pub fn owner_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".owner");
    db.with_file_name(name)
}

/// Reads the owner marker, if any and well-formed.
pub fn read_owner(owner_file: &Path) -> Option<Owner> {
    let text = std::fs::read_to_string(owner_file).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether a process with this pid is running (signal 0 reaches it, or exists but is not ours).
pub fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

fn describe_holder(db: &Path) -> String {
    match read_owner(&owner_path(db)) {
        Some(o) if process_alive(o.pid) => format!(
            "process {} holds it exclusively; stop that process, or open it in shared mode there",
            o.pid
        ),
        _ => "another process has it open (shared, or exclusively without a marker); \
              wait for it to finish or stop it"
            .to_string(),
    }
}

pub(crate) const META: &str = "meta";
const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";
const SEQ_PREFIX: &[u8] = b"seq:";
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
}

/// One index in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Its name.
    pub name: String,
    /// Whether it is unique.
    pub unique: bool,
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
        }
    }
}

impl Store {
    /// Opens (and with `options.create`, creates) the store file at `path`.
    ///
    /// # Errors
    /// `NotInitialized` when the file is missing and `create` is off; `InUse` when another
    /// process holds it in an incompatible mode; `NewerSchema` / `MigrationNeeded` on a schema
    /// mismatch; `Storage` or `Io` when the file cannot be opened.
    pub fn open(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let exists = path.exists();
        if !exists && !options.create {
            return Err(Error::NotInitialized { path });
        }
        if !exists {
            // Create the file ourselves so it is 0600 from the first byte.
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        let mut builder = redb::Builder::new();
        builder.set_cache_size(options.cache_bytes);
        builder.set_concurrency_mode(match options.mode {
            Mode::Exclusive => redb::ConcurrencyMode::ExclusiveWriter,
            Mode::Shared => redb::ConcurrencyMode::MultiWriter,
        });
        let db = builder.create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse {
                holder: describe_holder(&path),
                path: path.clone(),
            },
            other => Error::storage("opening the store", other),
        })?;
        let owner_file = (options.mode == Mode::Exclusive).then(|| owner_path(&path));
        if let Some(owner) = &owner_file {
            let marker = Owner {
                pid: std::process::id(),
                since: crate::clock::unix_now(),
            };
            let text = serde_json::to_string(&marker).unwrap_or_default();
            crate::fsutil::write_private(owner, text.as_bytes())?;
        }
        let store = Store {
            inner: Arc::new(Inner {
                db: RwLock::new(db),
                path,
                mode: options.mode,
                durability: options.durability,
                owner_file,
                shapes: RwLock::default(),
                catalogued: RwLock::default(),
            }),
        };
        store.check_schema(options)?;
        Ok(store)
    }

    fn check_schema(&self, options: &StoreOptions) -> Result<()> {
        let found = self.schema_version()?;
        match found {
            None => self.write(|tx| tx.set_schema_version(options.schema_version)),
            Some(v) if v > options.schema_version => Err(Error::NewerSchema {
                found: v,
                supported: options.schema_version,
            }),
            Some(v) if v < options.schema_version && !options.allow_outdated => {
                Err(Error::MigrationNeeded {
                    found: v,
                    needed: options.schema_version,
                })
            }
            Some(_) => Ok(()),
        }
    }

    /// The file's schema version, or `None` on a brand-new file.
    ///
    /// # Errors
    /// `Storage` when the file cannot be read.
    pub fn schema_version(&self) -> Result<Option<u64>> {
        self.read(|tx| tx.schema_version())
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The mode the store was opened in.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, redb::Database> {
        self.inner.db.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in a write transaction: commits if it returns `Ok`, aborts on `Err` or panic.
    /// The closure may run more than once (engines that retry conflicts re-run it), so side
    /// effects outside the store belong after `write` returns.
    ///
    /// # Errors
    /// The closure's error, or `Storage` if the transaction cannot begin or commit.
    pub fn write<T>(&self, f: impl FnMut(&WriteTx<'_>) -> Result<T>) -> Result<T> {
        self.write_with(self.inner.durability, f)
    }

    /// [`Store::write`] with the durability of this one commit: `Durability::None` commits
    /// without waiting for the disk (the next durable commit carries it), for bookkeeping
    /// that may be lost in a crash. A store opened with `Durability::None` never waits.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn write_with<T>(
        &self,
        durability: Durability,
        mut f: impl FnMut(&WriteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let db = self.db();
        // redb shares a file between processes only with durable commits.
        let durable = self.inner.mode == Mode::Shared
            || (durability == Durability::Immediate
                && self.inner.durability == Durability::Immediate);
        let mut shapes = Vec::new();
        let mut tables = Vec::new();
        let value = redb_file::write(&db, durable, |raw: &FileWrite<'_>| {
            let tx = WriteTx {
                raw,
                store: &self.inner,
                new_shapes: Default::default(),
                new_tables: Default::default(),
            };
            let value = f(&tx)?;
            shapes = tx.new_shapes.into_inner();
            tables = tx.new_tables.into_inner();
            Ok(value)
        })?;
        // Committed: later transactions need not look these up again.
        if !shapes.is_empty() {
            self.inner
                .shapes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .extend(shapes);
        }
        if !tables.is_empty() {
            self.inner
                .catalogued
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .extend(tables);
        }
        Ok(value)
    }

    /// Runs `f` on one consistent snapshot.
    ///
    /// # Errors
    /// The closure's error, or `Storage` if the snapshot cannot be taken.
    pub fn read<T>(&self, f: impl FnOnce(&ReadTx<'_>) -> Result<T>) -> Result<T> {
        let db = self.db();
        let raw = FileRead::begin(&db)?;
        f(&ReadTx { raw: &raw })
    }

    /// Runs redb's own integrity check (page checksums and allocator state), waiting for
    /// transactions of this handle to end. Returns whether the file was already sound; a
    /// repairable problem is repaired.
    ///
    /// # Errors
    /// `Storage` when the file cannot be checked.
    pub fn check_file(&self) -> Result<bool> {
        let mut db = self.inner.db.write().unwrap_or_else(|e| e.into_inner());
        db.check_integrity()
            .map_err(|e| Error::storage("checking file integrity", e))
    }
}

/// A read-only snapshot.
pub struct ReadTx<'a> {
    raw: &'a dyn RawRead,
}

/// A write transaction; everything done through it commits or aborts together.
pub struct WriteTx<'a> {
    raw: &'a dyn RawWrite,
    store: &'a Inner,
    new_shapes: std::cell::RefCell<Vec<u64>>,
    new_tables: std::cell::RefCell<Vec<&'static str>>,
}

/// Something tables can be read from: a read or a write transaction.
pub trait Source: sealed::Sealed {
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn raw(&self) -> &dyn RawRead;
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
}

impl Source for WriteTx<'_> {
    #[allow(private_interfaces)]
    fn raw(&self) -> &dyn RawRead {
        self.raw
    }
}

impl WriteTx<'_> {
    pub(crate) fn raw_write(&self) -> &dyn RawWrite {
        self.raw
    }

    /// Encodes a record, registering the shapes it uses and its table in the catalog.
    pub(crate) fn encode<R: Record>(&self, record: &R) -> Result<Vec<u8>> {
        self.catalog::<R>()?;
        let mut used = UsedShapes::default();
        let bytes = codec::encode(record, R::VERSION, &mut used).map_err(|reason| {
            Error::invalid(
                "record",
                format!("cannot store a {} record: {reason}", R::TABLE),
            )
        })?;
        for (id, names) in used.0 {
            self.register_shape(id, &names)?;
        }
        Ok(bytes)
    }

    fn register_shape(&self, id: u64, names: &[&'static str]) -> Result<()> {
        if self
            .store
            .shapes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
            || self.new_shapes.borrow().contains(&id)
        {
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
                if known.len() != names.len() || known.iter().zip(names).any(|(a, b)| &**a != *b) {
                    return Err(Error::Invariant {
                        what: format!("two field lists share the shape id {id:016x}"),
                    });
                }
            }
            None => self.raw.put(META, &key, &format::encode_shape(names))?,
        }
        self.new_shapes.borrow_mut().push(id);
        Ok(())
    }

    fn catalog<R: Record>(&self) -> Result<()> {
        if self
            .store
            .catalogued
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(R::TABLE)
            || self.new_tables.borrow().contains(&R::TABLE)
        {
            return Ok(());
        }
        let info = TableInfo::of::<R>();
        let key = prefixed(TABLE_PREFIX, R::TABLE.as_bytes());
        let current = get_owned(self.raw, META, &key)?
            .and_then(|b| serde_json::from_slice::<TableInfo>(&b).ok());
        if current.as_ref() != Some(&info) {
            let bytes = serde_json::to_vec(&info).map_err(|e| Error::Invariant {
                what: format!("cannot encode the catalog entry of {}: {e}", R::TABLE),
            })?;
            self.raw.put(META, &key, &bytes)?;
        }
        self.new_tables.borrow_mut().push(R::TABLE);
        Ok(())
    }
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

impl WriteTx<'_> {
    /// Sets the schema version.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn set_schema_version(&self, version: u64) -> Result<()> {
        self.raw
            .put(META, SCHEMA_VERSION_KEY, &version.to_be_bytes())
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
    /// `Storage` when the engine fails.
    pub fn next_sequence(&self, table: &str) -> Result<u64> {
        let key = prefixed(SEQ_PREFIX, table.as_bytes());
        let next = get_owned(self.raw, META, &key)?
            .as_deref()
            .and_then(be_u64)
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| Error::Invariant {
                what: format!("the id sequence of {table} is exhausted"),
            })?;
        self.raw.put(META, &key, &next.to_be_bytes())?;
        Ok(next)
    }

    /// Raises `table`'s sequence to at least `value` (sequences never go back).
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn raise_sequence(&self, table: &str, value: u64) -> Result<()> {
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

use format::shape_id;
