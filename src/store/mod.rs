//! The generic typed-table layer over redb. Nothing here knows about users or files.
//!
//! A [`Store`] is one redb file. Work happens in closures: [`Store::write`] commits when the
//! closure returns `Ok` and aborts otherwise (including on panic); [`Store::read`] sees one
//! consistent snapshot. Typed tables ([`Table`]) keep their secondary indexes exact inside the
//! same write transaction as the record.

mod check;
pub mod codec;
mod index;
mod migrate;
mod table;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError};

pub use check::{CheckReport, TableCheck, TableCounts, TableStats, check_table};
pub use index::{Index, KeyPart};
pub use migrate::{Migration, MigrationRun};
pub use table::{KeyRange, Order, Record, RecordKey, Table};

use crate::error::{Error, Result};

/// How the store file is shared between processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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
    /// For bulk loads and benchmarks.
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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

/// Whether a process with this pid is running (Linux: it has an entry in `/proc`).
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
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

const META: &str = "meta";
const SCHEMA_VERSION: &[u8] = b"schema_version";

fn raw_def(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
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
    ///
    /// # Errors
    /// The closure's error, or `Storage` if the transaction cannot begin or commit.
    pub fn write<T>(&self, f: impl FnOnce(&WriteTx) -> Result<T>) -> Result<T> {
        let db = self.db();
        let mut txn = db
            .begin_write()
            .map_err(|e| Error::storage("beginning a write transaction", e))?;
        if self.inner.durability == Durability::None {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| Error::storage("setting durability", redb::Error::from(e)))?;
        }
        let tx = WriteTx { txn };
        let value = f(&tx)?;
        tx.txn
            .commit()
            .map_err(|e| Error::storage("committing", e))?;
        Ok(value)
    }

    /// Runs `f` on one consistent snapshot.
    ///
    /// # Errors
    /// The closure's error, or `Storage` if the snapshot cannot be taken.
    pub fn read<T>(&self, f: impl FnOnce(&ReadTx) -> Result<T>) -> Result<T> {
        let db = self.db();
        let txn = db
            .begin_read()
            .map_err(|e| Error::storage("beginning a read transaction", e))?;
        f(&ReadTx { txn })
    }

    /// Runs redb's own integrity check (page checksums and allocator state), waiting for
    /// transactions of this handle to end. Returns whether the file was already sound; a
    /// repairable problem is repaired.
    pub fn check_file(&self) -> Result<bool> {
        let mut db = self.inner.db.write().unwrap_or_else(|e| e.into_inner());
        db.check_integrity()
            .map_err(|e| Error::storage("checking file integrity", e))
    }
}

/// A read-only snapshot.
pub struct ReadTx {
    txn: redb::ReadTransaction,
}

/// A write transaction; everything done through it commits or aborts together.
pub struct WriteTx {
    txn: redb::WriteTransaction,
}

/// An untyped table of bytes, in either kind of transaction.
pub(crate) enum RawTable<'tx> {
    Read(redb::ReadOnlyTable<&'static [u8], &'static [u8]>),
    Write(redb::Table<'tx, &'static [u8], &'static [u8]>),
    Missing,
}

/// Something tables can be opened from: a read or a write transaction.
pub trait Source: sealed::Sealed {
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn raw(&self, name: &str) -> Result<RawTable<'_>>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ReadTx {}
    impl Sealed for super::WriteTx {}
}

impl Source for ReadTx {
    #[allow(private_interfaces)]
    fn raw(&self, name: &str) -> Result<RawTable<'_>> {
        match self.txn.open_table(raw_def(name)) {
            Ok(t) => Ok(RawTable::Read(t)),
            Err(TableError::TableDoesNotExist(_)) => Ok(RawTable::Missing),
            Err(e) => Err(Error::storage("opening a table", e)),
        }
    }
}

impl Source for WriteTx {
    #[allow(private_interfaces)]
    fn raw(&self, name: &str) -> Result<RawTable<'_>> {
        self.txn
            .open_table(raw_def(name))
            .map(RawTable::Write)
            .map_err(|e| Error::storage("opening a table", e))
    }
}

fn get_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    key: &[u8],
) -> Result<Option<Vec<u8>>> {
    let got = t.get(key).map_err(|e| Error::storage("reading", e))?;
    Ok(got.map(|v| v.value().to_vec()))
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn range_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    range: &KeyRange,
    order: Order,
    limit: Option<usize>,
) -> Result<Entries> {
    use std::ops::Bound;
    fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(v) => Bound::Included(v.as_slice()),
            Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (as_ref(&range.start), as_ref(&range.end));
    if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) =
        bounds
        && s > e
    {
        return Ok(Vec::new());
    }
    let iter = t
        .range::<&[u8]>(bounds)
        .map_err(|e| Error::storage("scanning", e))?;
    let limit = limit.unwrap_or(usize::MAX);
    let map = |item: std::result::Result<_, redb::StorageError>| {
        let (k, v): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) =
            item.map_err(|e| Error::storage("scanning", e))?;
        Ok((k.value().to_vec(), v.value().to_vec()))
    };
    match order {
        Order::Asc => iter.take(limit).map(map).collect(),
        Order::Desc => iter.rev().take(limit).map(map).collect(),
    }
}

impl RawTable<'_> {
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            RawTable::Read(t) => get_in(t, key),
            RawTable::Write(t) => get_in(t, key),
            RawTable::Missing => Ok(None),
        }
    }

    pub(crate) fn range(
        &self,
        range: &KeyRange,
        order: Order,
        limit: Option<usize>,
    ) -> Result<Entries> {
        match self {
            RawTable::Read(t) => range_in(t, range, order, limit),
            RawTable::Write(t) => range_in(t, range, order, limit),
            RawTable::Missing => Ok(Vec::new()),
        }
    }

    pub(crate) fn len(&self) -> Result<u64> {
        let n = match self {
            RawTable::Read(t) => t.len(),
            RawTable::Write(t) => t.len(),
            RawTable::Missing => return Ok(0),
        };
        n.map_err(|e| Error::storage("counting", e))
    }

    pub(crate) fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        match self {
            RawTable::Write(t) => {
                t.insert(key, value)
                    .map_err(|e| Error::storage("writing", e))?;
                Ok(())
            }
            _ => Err(Error::Refused("write in a read transaction".into())),
        }
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Result<()> {
        match self {
            RawTable::Write(t) => {
                t.remove(key).map_err(|e| Error::storage("deleting", e))?;
                Ok(())
            }
            _ => Err(Error::Refused("write in a read transaction".into())),
        }
    }
}

/// Reads of the `meta` table shared by both transaction kinds.
pub trait Meta: Source {
    /// The schema version, `None` on a new file.
    fn schema_version(&self) -> Result<Option<u64>> {
        Ok(self
            .raw(META)?
            .get(SCHEMA_VERSION)?
            .as_deref()
            .and_then(be_u64))
    }

    /// A free-form metadata value.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.raw(META)?.get(format!("x:{key}").as_bytes())
    }

    /// Every sequence, as (table, last id), by table name.
    fn sequences(&self) -> Result<Vec<(String, u64)>> {
        Ok(self
            .raw(META)?
            .range(&KeyRange::prefix(b"seq:".to_vec()), Order::Asc, None)?
            .into_iter()
            .filter_map(|(k, v)| {
                let name = std::str::from_utf8(&k[4..]).ok()?.to_string();
                Some((name, be_u64(&v)?))
            })
            .collect())
    }

    /// Every free-form metadata entry, by key.
    fn meta_entries(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .raw(META)?
            .range(&KeyRange::prefix(b"x:".to_vec()), Order::Asc, None)?
            .into_iter()
            .filter_map(|(k, v)| Some((std::str::from_utf8(&k[2..]).ok()?.to_string(), v)))
            .collect())
    }

    /// The last id handed out by `table`'s sequence (0 when none).
    fn sequence(&self, table: &str) -> Result<u64> {
        let key = format!("seq:{table}");
        Ok(self
            .raw(META)?
            .get(key.as_bytes())?
            .as_deref()
            .and_then(be_u64)
            .unwrap_or(0))
    }
}

impl Meta for ReadTx {}
impl Meta for WriteTx {}

impl WriteTx {
    /// Sets the schema version.
    pub fn set_schema_version(&self, version: u64) -> Result<()> {
        self.raw(META)?
            .insert(SCHEMA_VERSION, &version.to_be_bytes())
    }

    /// Sets a free-form metadata value.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.raw(META)?.insert(format!("x:{key}").as_bytes(), value)
    }

    /// Advances `table`'s sequence and returns the new value.
    pub fn next_sequence(&self, table: &str) -> Result<u64> {
        let next = self.sequence(table)? + 1;
        self.set_sequence(table, next)?;
        Ok(next)
    }

    /// Sets `table`'s sequence (used by import).
    pub fn set_sequence(&self, table: &str, value: u64) -> Result<()> {
        let key = format!("seq:{table}");
        self.raw(META)?.insert(key.as_bytes(), &value.to_be_bytes())
    }
}
