//! The redb engine: byte tables in one file. A transaction keeps each table it opens open
//! until it ends. A handle that is the file's only writer keeps the read transaction of the
//! latest commit for the reads after it, until the next commit ends ([`Snapshot`]).
//!
//! Every call into redb runs under [`contain`]: a malformed page that reaches an assertion
//! inside redb becomes `Error::Damaged` instead of a panic. redb's own corruption reports
//! become `Error::Damaged` too, and an I/O failure that leaves redb refusing further work
//! ("previous I/O error") is recognised so the store can reopen the file.

use std::cell::RefCell;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, TryLockError};

use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
    TableHandle,
};

use super::{
    CallerCode, KeyRange, Keys, Order, RawRead, RawWrite, Visit, VisitKey, contain, each_absent,
};
use crate::error::{Error, Result};

/// Drops `what` (a table or transaction of redb) under [`contain`]: a panic of redb while
/// letting it go is logged there, not raised in the caller.
fn close_quietly<T>(context: &'static str, what: T) {
    let _ = contain(context, || {
        drop(what);
        Ok(())
    });
}

/// An engine error as redkeep reports it: corruption is `Damaged`, the rest `Storage` with
/// redb's error kept as the cause.
#[cold]
#[inline(never)]
fn engine(context: &'static str, e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Corrupted(reason) => Error::Damaged {
            path: PathBuf::new(),
            reason: format!("{context}: {reason}"),
        },
        other => Error::storage(context, EngineError(other)),
    }
}

/// An error of redb, giving the I/O error under an `Io` one as its cause (redb's own gives
/// none), so that a disk run full is told from damage ([`Error::shortage`]).
#[derive(Debug)]
pub(crate) struct EngineError(pub(crate) redb::Error);

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            redb::Error::Io(io) => Some(io),
            other => other.source(),
        }
    }
}

/// Whether `e` leaves the file handle unusable until it is opened again (redb refuses every
/// call after an I/O failure until then).
pub(crate) fn needs_reopen(e: &Error) -> bool {
    let Error::Storage { source, .. } = e else {
        return false;
    };
    matches!(
        source.downcast_ref::<EngineError>(),
        Some(EngineError(redb::Error::PreviousIo | redb::Error::Io(_)))
    )
}

/// Why a file cannot be opened only to read it: it is marked as not closed cleanly (a process
/// that had it open for writing was killed, or a commit or an integrity check failed in it),
/// and only an open for writing repairs that.
#[derive(Debug)]
pub(crate) struct NotClosedCleanly(PathBuf);

impl std::fmt::Display for NotClosedCleanly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is marked as not closed cleanly (a process that had it open for writing \
             was killed, or a commit or an integrity check failed in it); an open for writing \
             repairs it, one only to read it cannot: run any \
             command as a user who may write the data dir once",
            self.0.display()
        )
    }
}

impl std::error::Error for NotClosedCleanly {}

/// Whether `e` is the refusal of a read-only open of a file that was not closed cleanly
/// ([`FileDb::open_read_only`]).
#[cfg(feature = "admin")]
pub(crate) fn not_closed_cleanly(e: &Error) -> bool {
    matches!(e, Error::Storage { source, .. } if source.downcast_ref::<NotClosedCleanly>().is_some())
}

/// How a database file is opened, kept to open it again.
#[derive(Debug, Clone)]
pub(crate) struct OpenSpec {
    pub(crate) cache_bytes: usize,
    pub(crate) shared: bool,
    /// Tests only: a backend failing one chosen I/O call.
    pub(crate) faults: Option<std::sync::Arc<super::faults::FaultPlan>>,
}

/// An open database file. Dropping it closes the file under [`contain`].
pub(crate) struct FileDb {
    db: Option<redb::Database>,
    // Set instead of `db` for a file opened only to be read.
    read_only: Option<redb::ReadOnlyDatabase>,
    path: PathBuf,
    spec: OpenSpec,
    snapshot: Mutex<Snapshot>,
    _here: OpenHere,
}

/// The store files this process has open (a path once per handle), so a refused second
/// open can say the holder is this very process.
static OPEN_HERE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// This process's hold of a store file, counted in [`OPEN_HERE`] while it lives.
struct OpenHere(Option<PathBuf>);

impl OpenHere {
    fn new(path: &Path) -> OpenHere {
        let path = std::fs::canonicalize(path).ok();
        if let Some(p) = &path {
            OPEN_HERE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(p.clone());
        }
        OpenHere(path)
    }
}

impl Drop for OpenHere {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let mut here = OPEN_HERE.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = here.iter().position(|h| h == p) {
                here.remove(i);
            }
        }
    }
}

/// Whether this process has the store file at `path` open (through another handle).
pub(crate) fn open_here(path: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| {
        OPEN_HERE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&p)
    })
}

/// The read transaction of the latest commit, kept for the reads that follow it while
/// nothing changes, with its tables open: a lookup then neither begins a transaction nor
/// opens a table. Kept only when this handle is the file's one writer (exclusive mode, not
/// read-only), so every change to the file is a commit that [`FileDb::commit`] sees.
///
/// A commit counts a change as it begins and as it ends, and lets the kept snapshot go as it
/// ends. While it runs, the snapshot kept before it began serves the reads (the commit has
/// not returned, so it is still the latest one any caller was told of: with durable writes
/// the file's one writer is committing most of the time, and these reads would otherwise each
/// begin a transaction and open their tables). A snapshot begun while a commit runs is not
/// kept (what the commit writes may show before it returns, so such a snapshot may be newer
/// than the one others still read, or older than one another thread already saw). A reader
/// keeps the snapshot it began only if no commit runs and none was counted since it looked
/// before beginning it, so a kept snapshot is always the latest commit that returned; and a
/// reader that finds one kept by then reads that one instead of its own (which may have
/// begun after a commit running now showed, while others read the kept one), so what a
/// thread reads never goes back.
///
/// Holding the snapshot through the next commit delays the reuse of the pages that commit
/// replaces by one durable commit: redb frees them right after publishing the commit only
/// when no older snapshot lives (an extra small commit of its own), else at the next durable
/// commit, after that one's pages are written, so the commit after it reuses them. About one
/// commit's replaced pages stay allocated for longer (the file did not grow for it over 3,000
/// durable one-user commits, each followed by a read), and the commit skips that extra step.
/// Readers that still use a snapshot let go keep it alive until they end, as before. Closing
/// the file (to reopen it, or for good) and redb's check, which refuses to run while a
/// transaction lives, let it go first.
#[derive(Default)]
struct Snapshot {
    changes: u64,
    // Commits under way.
    committing: usize,
    kept: Option<Arc<FileRead>>,
}

impl FileDb {
    /// Opens (creating when empty) the file at `path`.
    pub(crate) fn open(path: &Path, spec: OpenSpec) -> Result<FileDb> {
        let db = open_db(path, &spec)?;
        Ok(FileDb {
            db: Some(db),
            read_only: None,
            path: path.to_path_buf(),
            spec,
            snapshot: Mutex::default(),
            _here: OpenHere::new(path),
        })
    }

    /// Opens the file to read it only: nothing is ever written to it, not even the repair
    /// redb makes on opening a file that was not closed cleanly (such a file is refused with
    /// [`NotClosedCleanly`] as the cause).
    ///
    /// With `spec.shared`, the handle shares the file with processes that write it in shared
    /// mode and reads their commits as they land; a process that wants the file to itself
    /// (an exclusive open, a migration) is refused while it is open. Without, it shares the
    /// file with other readers only and keeps every writer out.
    pub(crate) fn open_read_only(path: &Path, spec: OpenSpec) -> Result<FileDb> {
        refuse_bad_first_bytes(path)?;
        let mut builder = redb::Builder::new();
        builder.set_cache_size(spec.cache_bytes);
        if spec.shared {
            builder.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
        }
        let db = contain("opening the store to read it", || {
            let file = open_store_file(path, false, "opening the store to read it")?;
            redb::backends::FileBackend::new(file)
                .and_then(|b| builder.open_read_only_with_backend(b))
                .map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse {
                        path: path.to_path_buf(),
                        holder: String::new(),
                    },
                    redb::DatabaseError::RepairAborted => Error::storage(
                        "opening the store to read it",
                        NotClosedCleanly(path.to_path_buf()),
                    ),
                    redb::DatabaseError::UpgradeRequired(v) => Error::Damaged {
                        path: path.to_path_buf(),
                        reason: super::header::older_format(path, v),
                    },
                    e => engine("opening the store to read it", e),
                })
        })?;
        Ok(FileDb {
            db: None,
            read_only: Some(db),
            path: path.to_path_buf(),
            spec,
            snapshot: Mutex::default(),
            _here: OpenHere::new(path),
        })
    }

    fn db(&self) -> Result<&redb::Database> {
        if self.read_only.is_some() {
            let what = if crate::fsutil::on_read_only_fs(&self.path) {
                format!(
                    "{} is on a read-only file system, so nothing can be changed; remount it \
                     read-write",
                    self.path.display()
                )
            } else {
                format!(
                    "{} is open read-only (as asked, or because this user cannot write the \
                     data dir), so nothing can be changed; open it for writing, as the data \
                     dir's owner (a user who may write it)",
                    self.path.display()
                )
            };
            return Err(Error::ReadOnly { what });
        }
        self.db.as_ref().ok_or_else(|| Error::Damaged {
            path: self.path.clone(),
            reason: "the file could not be opened again after an I/O error".into(),
        })
    }

    /// Whether the file was opened only to read it.
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only.is_some()
    }

    /// Closes the file and opens it again: after an I/O failure redb refuses all work on
    /// the old handle.
    pub(crate) fn reopen(&mut self) -> Result<()> {
        let read_only = self.read_only.is_some();
        self.close();
        if read_only {
            *self = FileDb::open_read_only(&self.path, self.spec.clone())?;
        } else {
            self.db = Some(open_db(&self.path, &self.spec)?);
        }
        Ok(())
    }

    fn close(&mut self) {
        self.changed();
        let (db, read_only) = (self.db.take(), self.read_only.take());
        let _ = contain("closing the store", || {
            drop(db);
            drop(read_only);
            Ok(())
        });
    }

    /// Whether reads may share a kept snapshot (see [`Snapshot`]): this handle is the only
    /// writer of the file.
    fn keeps_snapshots(&self) -> bool {
        self.db.is_some() && self.read_only.is_none() && !self.spec.shared
    }

    fn snapshot(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a change to the file; `committing` says by how much the commits under way
    /// change. Unless a commit begins (which leaves it to the reads made while it runs), lets
    /// the kept snapshot go: it ends when its last reader does.
    fn change(&self, committing: isize) {
        let old = {
            let mut s = self.snapshot();
            s.changes += 1;
            debug_assert!(s.committing.checked_add_signed(committing).is_some());
            s.committing = s.committing.saturating_add_signed(committing);
            if committing > 0 { None } else { s.kept.take() }
        };
        close_quietly("ending a read transaction", old);
    }

    fn changed(&self) {
        self.change(0);
    }

    /// The kept snapshot, and the count of changes as it stands now (taken before a new
    /// snapshot is begun, for [`FileDb::keep`]).
    fn kept(&self) -> (u64, Option<Arc<FileRead>>) {
        let s = self.snapshot();
        (s.changes, s.kept.clone())
    }

    /// The snapshot a read that found none kept uses, given `raw`, the one it began after the
    /// count of changes was `seen`: one kept by another reader meanwhile, which it reads
    /// instead (`raw` may have begun after a commit running now showed, while others read the
    /// kept one, older); else `raw`, kept unless a change was counted since or a commit runs
    /// (then it may predate a commit, or show one that has not returned, and the next read
    /// begins its own).
    fn keep(&self, seen: u64, raw: Arc<FileRead>) -> Arc<FileRead> {
        let kept = {
            let mut s = self.snapshot();
            match &s.kept {
                Some(kept) => Some(Arc::clone(kept)),
                None => {
                    if s.changes == seen && s.committing == 0 {
                        s.kept = Some(Arc::clone(&raw));
                    }
                    None
                }
            }
        };
        // `raw`, when not used, ends here, outside the lock.
        kept.unwrap_or(raw)
    }

    /// Runs `f` in a read transaction of the latest commit: the kept one, or one begun now
    /// (and kept when nothing was committed meanwhile). It is begun, handed to `f` and let go
    /// in one contained call; a panic of `f` itself is the caller's and is raised again as
    /// it was.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&FileRead) -> Result<T>) -> Result<T> {
        let db = match &self.read_only {
            Some(ro) => Err(ro),
            None => Ok(self.db()?),
        };
        let keep = self.keeps_snapshots();
        let outcome = contain("reading", || {
            let (seen, kept) = if keep { self.kept() } else { (0, None) };
            let raw = match kept {
                Some(raw) => raw,
                None => {
                    let txn = match db {
                        Ok(db) => db.begin_read(),
                        Err(ro) => ro.begin_read(),
                    }
                    .map_err(|e| engine("beginning a read transaction", e))?;
                    let raw = Arc::new(FileRead::of(txn, keep));
                    if keep { self.keep(seen, raw) } else { raw }
                }
            };
            let used = catch_unwind(AssertUnwindSafe(|| {
                let _caller = CallerCode::enter();
                f(&raw)
            }));
            drop(raw);
            Ok(used)
        })?;
        outcome.unwrap_or_else(|p| resume_unwind(p))
    }

    /// Begins a write transaction to be shared by several callers' work (group commit).
    pub(crate) fn begin_shared(&self) -> Result<OpenWrite> {
        let db = self.db()?;
        let txn = contain("beginning a write transaction", || {
            db.begin_write()
                .map_err(|e| engine("beginning a write transaction", e))
        })?;
        Ok(OpenWrite::new(txn))
    }

    /// Commits `open` (see [`OpenWrite::commit`]); the reads after it see what it wrote.
    pub(crate) fn commit(&self, open: OpenWrite, durable: bool) -> Result<()> {
        /// Counts the commit's end however it ends (a failed one may have changed the file
        /// too), so snapshots are kept again after it.
        struct Ending<'a>(&'a FileDb);
        impl Drop for Ending<'_> {
            fn drop(&mut self) {
                self.0.change(-1);
            }
        }
        self.change(1);
        let _ending = Ending(self);
        open.commit(durable)
    }

    /// redb's integrity check (page checksums, allocator state); repairs what it can.
    pub(crate) fn check_integrity(&mut self) -> Result<bool> {
        self.changed();
        let db = self.db.as_mut().ok_or_else(|| Error::Damaged {
            path: self.path.clone(),
            reason: "the file is not open".into(),
        })?;
        contain("checking the file", || {
            db.check_integrity()
                .map_err(|e| engine("checking file integrity", e))
        })
    }

    /// Copies the file's bytes into a private temporary folder, to be checked with
    /// [`CheckCopy::check`] once the caller lets commits go on again. Reads need not stop:
    /// committed pages do not change without a commit. Another process that writes
    /// meanwhile is seen (the length, modification time or header moved) and the copy taken
    /// again, three times at most.
    pub(crate) fn copy_for_check(&self) -> Result<CheckCopy> {
        let scratch = crate::fsutil::private_temp_dir_in(self.path.parent(), "a temporary folder")
            .or_else(|_| crate::fsutil::private_temp_dir_in(None, "a temporary folder"))?;
        let copy = scratch.path().join("check.redb");
        // The length, modification time and header (its commit records): every commit
        // rewrites the header, and a time stamped by a coarse clock may not move.
        let stamp = || {
            let read = |e| Error::io(format!("reading {}", self.path.display()), e);
            let meta = std::fs::metadata(&self.path).map_err(read)?;
            let mut header = vec![0; super::header::HEADER_LEN];
            let mut file = std::fs::File::open(&self.path).map_err(read)?;
            let n = std::io::Read::read(&mut file, &mut header).map_err(read)?;
            header.truncate(n);
            Ok::<_, Error>((meta.len(), meta.modified().ok(), header))
        };
        let mut tries = 0;
        loop {
            let before = stamp()?;
            let copying = |e| {
                Error::io(
                    format!(
                        "copying {} to {} to check it",
                        self.path.display(),
                        copy.display()
                    ),
                    e,
                )
            };
            crate::fsutil::fault(crate::fsutil::FileOp::Read).map_err(copying)?;
            std::fs::copy(&self.path, &copy).map_err(copying)?;
            if stamp()? == before {
                break;
            }
            tries += 1;
            if tries == 3 {
                return Err(Error::Busy {
                    what: format!(
                        "{} changed while it was copied to be checked, three times (another \
                         process writes it)",
                        self.path.display()
                    ),
                });
            }
        }
        // The copy takes the file's mode, which a data dir this user may only read makes
        // read-only; redb's check writes the copy.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io(format!("making {} writable", copy.display()), e))?;
        }
        Ok(CheckCopy {
            _scratch: scratch,
            copy,
            cache_bytes: self.spec.cache_bytes,
        })
    }

    /// Copies every table of one snapshot into a new file at `dest`.
    pub(crate) fn copy_to(&self, dest: &Path) -> Result<()> {
        let db = match &self.read_only {
            Some(ro) => Err(ro),
            None => Ok(self.db()?),
        };
        contain("copying the store", || {
            let target =
                redb::Database::create(dest).map_err(|e| engine("creating the copy", e))?;
            let src = match db {
                Ok(db) => db.begin_read(),
                Err(ro) => ro.begin_read(),
            }
            .map_err(|e| engine("beginning a read transaction", e))?;
            let out = target
                .begin_write()
                .map_err(|e| engine("writing the copy", e))?;
            let names: Vec<String> = src
                .list_tables()
                .map_err(|e| engine("listing tables", e))?
                .map(|h| h.name().to_string())
                .collect();
            for name in names {
                let d = def(&name);
                let from = src
                    .open_table(d)
                    .map_err(|e| engine("opening a table", e))?;
                let mut to = out
                    .open_table(d)
                    .map_err(|e| engine("writing the copy", e))?;
                for item in from.iter().map_err(|e| engine("copying", e))? {
                    let (k, v) = item.map_err(|e| engine("copying", e))?;
                    to.insert(k.value(), v.value())
                        .map_err(|e| engine("copying", e))?;
                }
            }
            out.commit().map_err(|e| engine("writing the copy", e))?;
            Ok(())
        })
    }
}

impl Drop for FileDb {
    fn drop(&mut self) {
        self.close();
    }
}

/// Refuses a file whose first bytes say it cannot be read right (see
/// [`first_bytes_problem`](super::header::first_bytes_problem)): redb would take a damaged
/// geometry and read every page at the wrong place (a store that reads as empty and sound).
fn refuse_bad_first_bytes(path: &Path) -> Result<()> {
    match super::header::first_bytes_problem(path) {
        Some(reason) => Err(Error::Damaged {
            path: path.to_path_buf(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Opens the store file at `path` to read it (and with `write`, to write it, made 0600 when
/// missing), never through a symlink: whoever may write the data dir could put one there
/// after the open checked the file (`Redkeep::open`), pointing at a file of the user
/// running redkeep that redb would then write a store into. (`what`: the step, in errors.)
///
/// # Errors
/// `UnsafePath` for a symlink; the file system's error otherwise, as redb would give it.
fn open_store_file(path: &Path, write: bool, what: &'static str) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC;
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .truncate(false)
        .mode(0o600)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                Error::unsafe_path(path, "it is a symlink; redkeep never follows one")
            } else {
                engine(what, redb::DatabaseError::from(e))
            }
        })
}

fn open_db(path: &Path, spec: &OpenSpec) -> Result<redb::Database> {
    refuse_bad_first_bytes(path)?;
    let mut builder = redb::Builder::new();
    builder.set_cache_size(spec.cache_bytes);
    builder.set_concurrency_mode(if spec.shared {
        redb::ConcurrencyMode::MultiWriter
    } else {
        redb::ConcurrencyMode::ExclusiveWriter
    });
    contain("opening the store", || {
        let opened = match &spec.faults {
            None => {
                redb::backends::FileBackend::new(open_store_file(path, true, "opening the store")?)
                    .and_then(|b| builder.create_with_backend(b))
            }
            Some(plan) => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                super::faults::FaultyBackend::new(file, plan.clone())
                    .and_then(|b| builder.create_with_backend(b))
            }
        };
        opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse {
                path: path.to_path_buf(),
                holder: String::new(),
            },
            redb::DatabaseError::UpgradeRequired(v) => Error::Damaged {
                path: path.to_path_buf(),
                reason: super::header::older_format(path, v),
            },
            // Not a damaged store but not a store at all (another program's file, or one
            // overwritten from its first byte): said as damage, which says what to do.
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::InvalidData
                    && io.to_string().contains("magic number") =>
            {
                Error::Damaged {
                    path: path.to_path_buf(),
                    reason: not_a_store_file(path),
                }
            }
            other => engine("opening the store", other),
        })
    })
}

/// How the hint about an interrupted `init` begins, for callers that say the reason of a
/// file that is not a data dir's store (a backup) and must leave it out.
pub(crate) const INIT_HINT: &str = "; it may be the leftover of an interrupted `redkeep init`";

/// Why a file without redb's magic number is refused. A small one may be what an
/// interrupted `init` left (a new file is some 72 KiB) in a way not recognised as holding
/// nothing: said so, with what to do when the data dir never held a store.
fn not_a_store_file(path: &Path) -> String {
    let what = "it is not a redb store file (its first bytes are not redb's magic number)";
    if std::fs::metadata(path).is_ok_and(|m| m.len() <= 1 << 20) {
        format!(
            "{what}{INIT_HINT}: if this data dir never held a store, delete {} and run \
             `redkeep init` again",
            path.display()
        )
    } else {
        what.to_string()
    }
}

type Bytes = &'static [u8];

fn def(name: &str) -> TableDefinition<'_, Bytes, Bytes> {
    TableDefinition::new(name)
}

fn bounds(range: &KeyRange) -> (Bound<&[u8]>, Bound<&[u8]>) {
    fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(v) => Bound::Included(v.as_slice()),
            Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (as_ref(&range.start), as_ref(&range.end))
}

fn get_in<T: ReadableTable<Bytes, Bytes>>(
    t: &T,
    key: &[u8],
    f: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<bool> {
    // The value is handed to `f` inside the contained call (no copy); a panic of `f` itself
    // is the caller's and is raised again as it was.
    let mut caller_panic = None;
    let found = contain("reading", || {
        match t.get(key).map_err(|e| engine("reading", e))? {
            Some(guard) => {
                // Reading the value is the engine's work; using it is the caller's.
                let v = guard.value();
                let used = catch_unwind(AssertUnwindSafe(|| {
                    let _caller = CallerCode::enter();
                    f(v)
                }));
                match used {
                    Ok(r) => r.map(|()| true),
                    Err(p) => {
                        caller_panic = Some(p);
                        Ok(true)
                    }
                }
            }
            None => Ok(false),
        }
    });
    if let Some(p) = caller_panic {
        resume_unwind(p);
    }
    found
}

/// Entries a walk in [`get_each_in`] steps over looking for a key before it gives up and a
/// new walk begins at the key (a descent from the root, which costs about as much as this
/// many steps).
const WALK_STEPS: usize = 8;

/// How many walks [`get_each_in`] gives up (a key more than [`WALK_STEPS`] entries past the
/// one before, or keys turning back) before it looks the remaining keys up from the root one
/// by one: keys in no order waste at most this many walks.
const WALK_MISSES: usize = 2;

type Entry<'a> = (redb::AccessGuard<'a, Bytes>, redb::AccessGuard<'a, Bytes>);

#[cfg(test)]
thread_local! {
    /// Keys this thread's walks found (tests check that pages do walk).
    static WALKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// What a [`Walk`] found for a key.
enum Sought<'a> {
    /// The walk reached the key: its value, `None` if it is absent.
    Reached(Option<redb::AccessGuard<'a, Bytes>>),
    /// The walk took [`WALK_STEPS`] steps without reaching the key.
    TooFar,
}

/// A cursor over a table that finds keys following each other in one direction by stepping
/// from the previous one instead of descending from the root: a page of records found
/// through an index whose order is the records' own (users by creation time, with ids from
/// a sequence) is read leaf by leaf.
struct Walk<'a> {
    entries: redb::Range<'a, Bytes, Bytes>,
    /// Towards smaller keys.
    back: bool,
    /// The first entry past the last key looked for, not yet used.
    ahead: Option<Entry<'a>>,
    /// No entry is left in the walk's direction.
    ended: bool,
}

impl<'a> Walk<'a> {
    /// A walk from `key` (included) towards greater keys, or smaller ones if `back`.
    fn from<T: ReadableTable<Bytes, Bytes>>(t: &'a T, key: &[u8], back: bool) -> Result<Self> {
        let range = if back {
            (Bound::Unbounded, Bound::Included(key))
        } else {
            (Bound::Included(key), Bound::Unbounded)
        };
        Ok(Walk {
            entries: t.range::<&[u8]>(range).map_err(|e| engine("reading", e))?,
            back,
            ahead: None,
            ended: false,
        })
    }

    /// Looks for `key`, which lies beyond every key this walk was asked for before in its
    /// direction, and not before the key it began at.
    fn seek(&mut self, key: &[u8]) -> Result<Sought<'a>> {
        for _ in 0..WALK_STEPS {
            if self.ended {
                return Ok(Sought::Reached(None));
            }
            let entry = match self.ahead.take() {
                Some(entry) => entry,
                None => {
                    let next = if self.back {
                        self.entries.next_back()
                    } else {
                        self.entries.next()
                    };
                    match next {
                        Some(entry) => entry.map_err(|e| engine("reading", e))?,
                        None => {
                            self.ended = true;
                            return Ok(Sought::Reached(None));
                        }
                    }
                }
            };
            let order = entry.0.value().cmp(key);
            let past = if self.back {
                order.is_lt()
            } else {
                order.is_gt()
            };
            if order.is_eq() {
                #[cfg(test)]
                WALKED.with(|n| n.set(n.get() + 1));
                return Ok(Sought::Reached(Some(entry.1)));
            }
            if past {
                self.ahead = Some(entry);
                return Ok(Sought::Reached(None));
            }
        }
        Ok(Sought::TooFar)
    }
}

fn get_each_in<T: ReadableTable<Bytes, Bytes>>(
    t: &T,
    keys: Keys<'_>,
    f: VisitKey<'_>,
) -> Result<()> {
    // The lookups run inside one contained call, handing each value to `f` without a copy; a
    // panic of `f` itself is the caller's and is raised again as it was.
    let mut caller_panic = None;
    let done = contain("reading", || {
        // The first key is looked up from the root; from the second on, while the keys are in
        // strict order one way, a walk steps from each to the next (see [`Walk`]). Either
        // way every key gets its own value: the walk only finds it sooner.
        let mut walk: Option<Walk<'_>> = None;
        let mut misses = 0;
        let mut previous: Option<&[u8]> = None;
        for key in keys {
            // Towards greater keys (`Some(false)`), smaller ones (`Some(true)`), or neither (the
            // first key, or the same key again: looked up from the root, the walk left as is).
            let back = previous.and_then(|p| match p.cmp(key) {
                std::cmp::Ordering::Less => Some(false),
                std::cmp::Ordering::Greater => Some(true),
                std::cmp::Ordering::Equal => None,
            });
            previous = Some(key);
            let mut found = None;
            if let Some(back) = back {
                if walk.as_ref().is_some_and(|w| w.back != back) {
                    walk = None;
                    misses += 1;
                }
                if let Some(w) = &mut walk {
                    match w.seek(key)? {
                        Sought::Reached(value) => found = Some(value),
                        Sought::TooFar => {
                            walk = None;
                            misses += 1;
                        }
                    }
                }
                if walk.is_none() && misses < WALK_MISSES {
                    // A walk from this key, whose first step reaches it.
                    let mut w = Walk::from(t, key, back)?;
                    if let Sought::Reached(value) = w.seek(key)? {
                        found = Some(value);
                    }
                    walk = Some(w);
                }
            }
            let guard = match found {
                Some(value) => value,
                None => t.get(key).map_err(|e| engine("reading", e))?,
            };
            // Reading the value is the engine's work; using it is the caller's.
            let value = guard.as_ref().map(|g| g.value());
            match catch_unwind(AssertUnwindSafe(|| {
                let _caller = CallerCode::enter();
                f(key, value)
            })) {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => break,
                Ok(Err(e)) => return Err(e),
                Err(p) => {
                    caller_panic = Some(p);
                    break;
                }
            }
        }
        Ok(())
    });
    if let Some(p) = caller_panic {
        resume_unwind(p);
    }
    done
}

fn range_in<T: ReadableTable<Bytes, Bytes>>(
    t: &T,
    range: &KeyRange,
    order: Order,
    f: Visit<'_>,
) -> Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    // The scan runs inside one contained call, handing each entry to `f` without a copy; a
    // panic of `f` itself is the caller's and is raised again as it was.
    let mut caller_panic = None;
    let scanned = contain("scanning", || {
        let iter = t
            .range::<&[u8]>(bounds(range))
            .map_err(|e| engine("scanning", e))?;
        let mut visit = |item: std::result::Result<_, redb::StorageError>| -> Result<bool> {
            let (k, v): (redb::AccessGuard<Bytes>, redb::AccessGuard<Bytes>) =
                item.map_err(|e| engine("scanning", e))?;
            // Reading the entry is the engine's work; using it is the caller's.
            let (k, v) = (k.value(), v.value());
            match catch_unwind(AssertUnwindSafe(|| {
                let _caller = CallerCode::enter();
                f(k, v)
            })) {
                Ok(r) => r,
                Err(p) => {
                    caller_panic = Some(p);
                    Ok(false)
                }
            }
        };
        match order {
            Order::Asc => {
                for item in iter {
                    if !visit(item)? {
                        break;
                    }
                }
            }
            Order::Desc => {
                for item in iter.rev() {
                    if !visit(item)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    });
    if let Some(p) = caller_panic {
        resume_unwind(p);
    }
    scanned
}

fn names<I: Iterator<Item = redb::UntypedTableHandle>>(
    list: impl FnOnce() -> std::result::Result<I, redb::StorageError>,
) -> Result<Vec<String>> {
    contain("listing tables", || {
        Ok(list()
            .map_err(|e| engine("listing tables", e))?
            .map(|h| h.name().to_string())
            .collect())
    })
}

type ReadTable = redb::ReadOnlyTable<Bytes, Bytes>;

/// How many tables a read transaction keeps in place without allocating (a hot read touches
/// one to three; more go to a list).
const READ_SLOTS: usize = 3;

/// A table name kept by a read transaction: inline when short (every name redkeep makes
/// for its records and indexes is), so a read allocates nothing to remember it.
enum TableName {
    Short(u8, [u8; 30]),
    Long(Box<str>),
}

impl TableName {
    fn new(name: &str) -> TableName {
        let mut buf = [0u8; 30];
        match (buf.get_mut(..name.len()), u8::try_from(name.len())) {
            (Some(head), Ok(len)) => {
                head.copy_from_slice(name.as_bytes());
                TableName::Short(len, buf)
            }
            _ => TableName::Long(name.into()),
        }
    }

    fn is(&self, name: &str) -> bool {
        match self {
            TableName::Short(len, buf) => &buf[..usize::from(*len)] == name.as_bytes(),
            TableName::Long(own) => **own == *name,
        }
    }
}

/// An open table of a read transaction (`None` inside: not in this snapshot).
type Kept = (TableName, Option<ReadTable>);

/// A table handed out by [`FileRead::table`]: one kept in place, or one from the list.
enum Opened<'a> {
    InPlace(&'a ReadTable),
    Listed(Arc<ReadTable>),
}

impl std::ops::Deref for Opened<'_> {
    type Target = ReadTable;

    fn deref(&self) -> &ReadTable {
        match self {
            Opened::InPlace(t) => t,
            Opened::Listed(t) => t,
        }
    }
}

/// A read transaction on the file.
pub(crate) struct FileRead {
    txn: redb::ReadTransaction,
    // Tables opened so far, by name, each opened once: the first few in slots that are set
    // once and never move (so a table stays usable while others are opened), the rest in a
    // list. A transaction touches a handful, so a search in order beats hashing the name.
    slots: [OnceLock<Kept>; READ_SLOTS],
    more: Mutex<Vec<(TableName, Option<Arc<ReadTable>>)>>,
    // This snapshot's id when later reads may share it (see `RawRead::snapshot_id`).
    id: Option<u64>,
}

/// The ids [`FileRead`]s get: each new one the next, so an id is never used twice.
static SNAPSHOT_IDS: AtomicU64 = AtomicU64::new(1);

impl FileRead {
    /// A read of `txn`; `shared` when the handle keeps snapshots for the reads after it,
    /// which gives it an id.
    fn of(txn: redb::ReadTransaction, shared: bool) -> FileRead {
        FileRead {
            txn,
            slots: Default::default(),
            more: Mutex::default(),
            id: shared.then(|| SNAPSHOT_IDS.fetch_add(1, Ordering::Relaxed)),
        }
    }

    fn more(&self) -> std::sync::MutexGuard<'_, Vec<(TableName, Option<Arc<ReadTable>>)>> {
        self.more.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, name: &str) -> Result<Option<ReadTable>> {
        contain("opening a table", || match self.txn.open_table(def(name)) {
            Ok(t) => Ok(Some(t)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(engine("opening a table", e)),
        })
    }

    fn table(&self, name: &str) -> Result<Option<Opened<'_>>> {
        for slot in &self.slots {
            match slot.get() {
                Some((n, t)) if n.is(name) => return Ok(t.as_ref().map(Opened::InPlace)),
                Some(_) => {}
                None => {
                    let mut opened = Some(self.open(name)?);
                    // Another reader of a kept snapshot may fill the slot meanwhile: then
                    // the table opened here is closed, and the search goes on.
                    let (n, t) =
                        slot.get_or_init(|| (TableName::new(name), opened.take().flatten()));
                    close_quietly("closing a table", opened);
                    if n.is(name) {
                        return Ok(t.as_ref().map(Opened::InPlace));
                    }
                }
            }
        }
        let listed = |more: &[(TableName, Option<Arc<ReadTable>>)]| {
            more.iter()
                .find(|(n, _)| n.is(name))
                .map(|(_, t)| t.clone().map(Opened::Listed))
        };
        if let Some(t) = listed(&self.more()) {
            return Ok(t);
        }
        let t = self.open(name)?.map(Arc::new);
        let mut more = self.more();
        // Another reader of the snapshot may have opened it meanwhile.
        if let Some(found) = listed(&more) {
            drop(more);
            close_quietly("closing a table", t);
            return Ok(found);
        }
        more.push((TableName::new(name), t.clone()));
        Ok(t.map(Opened::Listed))
    }
}

impl RawRead for FileRead {
    fn snapshot_id(&self) -> Option<u64> {
        self.id
    }

    fn get(&self, table: &str, key: &[u8], f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        super::note_call("get");
        match self.table(table)? {
            Some(t) => get_in(&*t, key, f),
            None => Ok(false),
        }
    }

    fn range(&self, table: &str, range: &KeyRange, order: Order, f: Visit<'_>) -> Result<()> {
        super::note_call("range");
        match self.table(table)? {
            Some(t) => range_in(&*t, range, order, f),
            None => Ok(()),
        }
    }

    fn get_each(&self, table: &str, keys: Keys<'_>, f: VisitKey<'_>) -> Result<()> {
        super::note_call("get_each");
        match self.table(table)? {
            Some(t) => get_each_in(&*t, keys, f),
            None => each_absent(keys, f),
        }
    }

    fn len(&self, table: &str) -> Result<u64> {
        super::note_call("len");
        match self.table(table)? {
            Some(t) => contain("counting", || t.len().map_err(|e| engine("counting", e))),
            None => Ok(0),
        }
    }

    fn table_names(&self) -> Result<Vec<String>> {
        names(|| self.txn.list_tables())
    }
}

/// An open table of a write transaction: shared by the writes of a batch, which run one
/// after another on their own threads (hence `Arc` and a lock, taken without waiting: a
/// table is in use only by the thread whose turn it is).
type WriteTable<'t> = Arc<RwLock<redb::Table<'t, Bytes, Bytes>>>;

/// The tables a write transaction has opened, by name (a handful: searched in order). They
/// stay open until it commits or aborts, so the writes of a batch open each table once
/// instead of once each.
pub(crate) struct OpenTables<'t> {
    txn: &'t redb::WriteTransaction,
    list: RefCell<Vec<(Box<str>, WriteTable<'t>)>>,
}

self_cell::self_cell!(
    /// A write transaction with the tables opened in it.
    struct TxnCell {
        owner: redb::WriteTransaction,
        #[not_covariant]
        dependent: OpenTables,
    }
);

/// A write transaction on the file, as one write sees it; everything done through it commits
/// or aborts together.
pub(crate) struct FileWrite<'w, 't> {
    tables: &'w OpenTables<'t>,
    // Set when this work shares its transaction with others (group commit): what each
    // change replaced, so the work can be taken back alone.
    undo: Option<&'w UndoLog>,
}

/// What a piece of work changed in a shared transaction, to take it back: for each change,
/// the table, the key and the value it replaced (`None`: there was none).
#[derive(Default)]
pub(crate) struct UndoLog(RefCell<Vec<Replaced>>);

/// One change of an [`UndoLog`]: table, key, and the value it replaced.
type Replaced = (String, Vec<u8>, Option<Vec<u8>>);

impl UndoLog {
    fn note(&self, table: &str, key: &[u8], old: Option<Vec<u8>>) {
        self.0
            .borrow_mut()
            .push((table.to_string(), key.to_vec(), old));
    }
}

/// A write transaction shared by the writes of several callers, one after another (group
/// commit); committed once for all of them. Dropped uncommitted (a panic in redkeep's own
/// code unwinding past it included), it is aborted inside `contain`, so a panic of redb
/// there cannot abort the process.
pub(crate) struct OpenWrite {
    // `None` only once committed or aborted.
    cell: Option<TxnCell>,
}

impl Drop for OpenWrite {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            let _ = contain("aborting", || {
                drop(cell);
                Ok(())
            });
        }
    }
}

impl OpenWrite {
    fn new(txn: redb::WriteTransaction) -> OpenWrite {
        OpenWrite {
            cell: Some(TxnCell::new(txn, |txn| OpenTables {
                txn,
                list: RefCell::default(),
            })),
        }
    }

    fn cell(&self) -> Result<&TxnCell> {
        self.cell.as_ref().ok_or_else(|| Error::Invariant {
            what: "a write transaction was used after it ended".into(),
        })
    }

    /// Runs `f` in the shared transaction; with `undo`, every change is noted there so it
    /// can be taken back by [`OpenWrite::undo`]. The tables it opens stay open for the
    /// writes after it.
    pub(crate) fn run<T>(
        &self,
        undo: Option<&UndoLog>,
        f: impl FnOnce(&FileWrite<'_, '_>) -> Result<T>,
    ) -> Result<T> {
        self.cell()?
            .with_dependent(|_, tables| f(&FileWrite { tables, undo }))
    }

    /// Takes back the changes noted in `log`, newest first.
    pub(crate) fn undo(&self, log: UndoLog) -> Result<()> {
        self.cell()?.with_dependent(|_, tables| {
            let raw = FileWrite { tables, undo: None };
            for (table, key, old) in log.0.into_inner().into_iter().rev() {
                match old {
                    Some(v) => raw.put(&table, &key, &v)?,
                    None => {
                        raw.remove(&table, &key)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The transaction, its tables closed.
    fn close(mut self) -> Result<redb::WriteTransaction> {
        let cell = self.cell.take().ok_or_else(|| Error::Invariant {
            what: "a write transaction was committed after it ended".into(),
        })?;
        contain("closing tables", || Ok(cell.into_owner()))
    }

    /// Commits everything done in the transaction, waiting for the disk when `durable`.
    fn commit(self, durable: bool) -> Result<()> {
        let mut txn = self.close()?;
        contain("committing", || {
            txn.set_durability(if durable {
                redb::Durability::Immediate
            } else {
                redb::Durability::None
            })
            .map_err(|e| engine("setting durability", e))?;
            txn.commit().map_err(|e| engine(super::COMMIT_FAILED, e))
        })
    }

    /// Drops everything done in the transaction.
    pub(crate) fn abort(self) {
        drop(self);
    }
}

impl<'t> FileWrite<'_, 't> {
    fn table(&self, name: &str) -> Result<WriteTable<'t>> {
        if let Some((_, t)) = self.tables.list.borrow().iter().find(|(n, _)| **n == *name) {
            return Ok(Arc::clone(t));
        }
        let t = contain("opening a table", || {
            self.tables
                .txn
                .open_table(def(name))
                .map_err(|e| engine("opening a table", e))
        })?;
        let t = Arc::new(RwLock::new(t));
        self.tables
            .list
            .borrow_mut()
            .push((name.into(), Arc::clone(&t)));
        Ok(t)
    }

    /// Runs `f` on table `name` to read it (several reads may be under way at once, a scan
    /// and reads inside it).
    fn with_ref<T>(
        &self,
        name: &str,
        f: impl FnOnce(&redb::Table<'t, Bytes, Bytes>) -> Result<T>,
    ) -> Result<T> {
        let t = self.table(name)?;
        let t = match t.try_read() {
            Ok(t) => t,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Invariant {
                    what: format!("table {name} was read while being written"),
                });
            }
        };
        f(&t)
    }

    fn with_mut<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut redb::Table<'t, Bytes, Bytes>) -> Result<T>,
    ) -> Result<T> {
        let t = self.table(name)?;
        let mut t = match t.try_write() {
            Ok(t) => t,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Invariant {
                    what: format!("table {name} was written while a scan of it was running"),
                });
            }
        };
        f(&mut t)
    }
}

impl RawRead for FileWrite<'_, '_> {
    fn get(&self, table: &str, key: &[u8], f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        super::note_call("get");
        self.with_ref(table, |t| get_in(t, key, f))
    }

    fn range(&self, table: &str, range: &KeyRange, order: Order, f: Visit<'_>) -> Result<()> {
        super::note_call("range");
        self.with_ref(table, |t| range_in(t, range, order, f))
    }

    fn get_each(&self, table: &str, keys: Keys<'_>, f: VisitKey<'_>) -> Result<()> {
        super::note_call("get_each");
        self.with_ref(table, |t| get_each_in(t, keys, f))
    }

    fn len(&self, table: &str) -> Result<u64> {
        super::note_call("len");
        self.with_ref(table, |t| {
            contain("counting", || t.len().map_err(|e| engine("counting", e)))
        })
    }

    fn table_names(&self) -> Result<Vec<String>> {
        names(|| self.tables.txn.list_tables())
    }
}

impl RawWrite for FileWrite<'_, '_> {
    fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        super::note_call("put");
        self.with_mut(table, |t| {
            contain("writing", || {
                let old = t.insert(key, value).map_err(|e| engine("writing", e))?;
                if let Some(log) = self.undo {
                    log.note(table, key, old.map(|g| g.value().to_vec()));
                }
                Ok(())
            })
        })
    }

    fn insert_new(&self, table: &str, key: &[u8], value: &[u8]) -> Result<bool> {
        super::note_call("insert_new");
        self.with_mut(table, |t| {
            contain("writing", || {
                // One descent: insert, and in the rare case the key was taken, put its value
                // back. The value it replaced is noted first, so that if putting it back
                // fails, undoing this closure still restores it.
                let old = t
                    .insert(key, value)
                    .map_err(|e| engine("writing", e))?
                    .map(|g| g.value().to_vec());
                if let Some(old) = old {
                    if let Some(log) = self.undo {
                        log.note(table, key, Some(old.clone()));
                    }
                    t.insert(key, old.as_slice())
                        .map_err(|e| engine("writing", e))?;
                    return Ok(false);
                }
                if let Some(log) = self.undo {
                    log.note(table, key, None);
                }
                Ok(true)
            })
        })
    }

    fn remove(&self, table: &str, key: &[u8]) -> Result<bool> {
        super::note_call("remove");
        self.with_mut(table, |t| {
            contain("deleting", || {
                let old = t.remove(key).map_err(|e| engine("deleting", e))?;
                let found = old.is_some();
                if let Some(log) = self.undo
                    && let Some(g) = old
                {
                    log.note(table, key, Some(g.value().to_vec()));
                }
                Ok(found)
            })
        })
    }

    fn in_use(&self, table: &str) -> bool {
        self.tables
            .list
            .borrow()
            .iter()
            .any(|(n, t)| **n == *table && Arc::strong_count(t) > 1)
    }

    fn delete_table(&self, table: &str) -> Result<()> {
        if self.undo.is_some() {
            // Shared with others: each entry is removed (and noted), so the table can be put
            // back. The table itself stays; an empty table reads as no table.
            let mut keys = Vec::new();
            self.range(table, &KeyRange::all(), Order::Asc, &mut |k, _| {
                keys.push(k.to_vec());
                Ok(true)
            })?;
            for k in &keys {
                self.remove(table, k)?;
            }
            return Ok(());
        }
        let removed = {
            let mut tables = self.tables.list.borrow_mut();
            let at = tables.iter().position(|(n, _)| **n == *table);
            at.map(|i| tables.swap_remove(i))
        };
        if let Some((name, t)) = removed {
            if Arc::strong_count(&t) > 1 {
                self.tables.list.borrow_mut().push((name, t));
                return Err(Error::Invariant {
                    what: format!("table {table} was deleted while in use"),
                });
            }
            contain("closing a table", || {
                drop(t);
                Ok(())
            })?;
        }
        contain("deleting a table", || {
            self.tables
                .txn
                .delete_table(def(table))
                .map_err(|e| engine("deleting a table", e))?;
            Ok(())
        })
    }
}

/// A byte copy of a store file taken by [`FileDb::copy_for_check`]; removed when dropped.
pub(crate) struct CheckCopy {
    _scratch: crate::fsutil::TempDir,
    copy: PathBuf,
    cache_bytes: usize,
}

impl CheckCopy {
    /// Runs redb's integrity check (page checksums and allocator state) on the copy, which
    /// touches neither the file nor its store: whether the copy was sound (`false`: a
    /// problem a check of the file itself repairs in place).
    pub(crate) fn check(self) -> Result<bool> {
        let spec = OpenSpec {
            cache_bytes: self.cache_bytes,
            shared: false,
            faults: None,
        };
        // Said of the file itself, whose path the store puts in: the copy is gone after.
        let of_file = |e: Error| match e {
            Error::Damaged { reason, .. } => Error::Damaged {
                path: PathBuf::new(),
                reason,
            },
            e => e,
        };
        let mut db = open_db(&self.copy, &spec).map_err(of_file)?;
        let sound = contain("checking the file", || {
            db.check_integrity()
                .map_err(|e| engine("checking file integrity", e))
        })
        .map_err(of_file);
        close_quietly("closing the copy of the store", db);
        sound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shared: bool) -> OpenSpec {
        OpenSpec {
            cache_bytes: 1 << 20,
            shared,
            faults: None,
        }
    }

    fn put(db: &FileDb, value: &[u8]) {
        let open = db.begin_shared().unwrap();
        open.run(None, |w| w.put("t", b"k", value)).unwrap();
        // A file shared between processes takes durable commits only.
        db.commit(open, db.spec.shared).unwrap();
    }

    /// A new file in a temp dir (kept while the dir lives), its key holding `1`.
    fn opened(shared: bool) -> (tempfile::TempDir, FileDb) {
        let tmp = tempfile::tempdir().unwrap();
        let db = FileDb::open(&tmp.path().join("s.redb"), spec(shared)).unwrap();
        put(&db, b"1");
        (tmp, db)
    }

    /// The key's value in one snapshot.
    fn value_in(r: &FileRead) -> Result<Option<Vec<u8>>> {
        let mut out = None;
        r.get("t", b"k", &mut |v| {
            out = Some(v.to_vec());
            Ok(())
        })?;
        Ok(out)
    }

    fn value(db: &FileDb) -> Option<Vec<u8>> {
        db.read(value_in).unwrap()
    }

    #[test]
    fn reads_share_a_snapshot_until_a_commit() {
        let (_tmp, db) = opened(false);
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        let first = db.kept().1.expect("a read keeps its snapshot");
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        let again = db.kept().1.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second read began its own");
        put(&db, b"2");
        assert!(db.kept().1.is_none(), "a commit let the snapshot go");
        assert_eq!(value(&db).as_deref(), Some(&b"2"[..]));
        // The snapshot let go still reads as it was for whoever holds it.
        assert_eq!(value_in(&first).unwrap().as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn reads_of_a_kept_snapshot_share_its_id_and_no_other_read_has_it() {
        let id = |db: &FileDb| db.read(|r| Ok(r.snapshot_id())).unwrap();
        let (_tmp, db) = opened(false);
        let first = id(&db).expect("a snapshot reads may share has an id");
        assert_eq!(id(&db), Some(first));
        put(&db, b"2");
        let second = id(&db).unwrap();
        assert_ne!(second, first, "a new snapshot has a new id");
        assert_eq!(id(&db), Some(second));
        // Reads while a commit runs share the snapshot kept before it began...
        db.change(1);
        assert_eq!((id(&db), id(&db)), (Some(second), Some(second)));
        db.change(-1);
        // ...and when none was kept, begin snapshots that are not kept: each its own id.
        db.change(1);
        let (a, b) = (id(&db).unwrap(), id(&db).unwrap());
        assert!(a != b && a != second && b != second);
        db.change(-1);
        // A file other processes write: every read begins its own snapshot, with no id.
        let (_tmp, shared) = opened(true);
        assert_eq!(id(&shared), None);
    }

    #[test]
    fn a_snapshot_kept_while_a_write_runs_is_let_go_at_its_commit() {
        let (_tmp, db) = opened(false);
        let open = db.begin_shared().unwrap();
        open.run(None, |w| w.put("t", b"k", b"2")).unwrap();
        // A read while the write is not yet committed (on another thread in real use).
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        assert!(db.kept().1.is_some());
        db.commit(open, false).unwrap();
        assert_eq!(value(&db).as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn the_snapshot_kept_before_a_commit_serves_the_reads_while_it_runs() {
        let (_tmp, db) = opened(false);
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        let before = db.kept().1.expect("a read keeps its snapshot");
        db.change(1);
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        let during = db.kept().1.expect("the commit's start let the snapshot go");
        assert!(
            Arc::ptr_eq(&before, &during),
            "a read while the commit ran began its own"
        );
        db.change(-1);
        assert!(db.kept().1.is_none(), "the commit's end kept the snapshot");
    }

    #[test]
    fn a_reader_that_finds_a_snapshot_kept_meanwhile_reads_that_one() {
        // A reader finds none kept and begins its own; meanwhile another keeps one and a
        // commit begins, whose writes may show in the first reader's snapshot before the
        // commit returns. The first reader reads the kept snapshot, as every other reader
        // does until the commit ends, so none of them reads back afterwards.
        let (_tmp, db) = opened(false);
        let (seen, none) = db.kept();
        assert!(none.is_none(), "a snapshot was kept after the last commit");
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        let kept = db.kept().1.expect("a read keeps its snapshot");
        db.change(1);
        let own = db.db().unwrap().begin_read().unwrap();
        let used = db.keep(seen, Arc::new(FileRead::of(own, true)));
        assert!(
            Arc::ptr_eq(&used, &kept),
            "the reader read its own snapshot, not the kept one"
        );
        assert!(Arc::ptr_eq(&db.kept().1.unwrap(), &kept));
        db.change(-1);
    }

    #[test]
    fn a_read_after_a_commit_returned_sees_it_and_a_thread_never_reads_back() {
        // One thread commits 1, 2, 3, ... and notes each once its commit returned; readers
        // check each read against what was noted before it began and what they read before.
        let (_tmp, db) = opened(false);
        let done = AtomicU64::new(0);
        let last = 300u64;
        // Set however the writing ends, a panic included, so the readers stop.
        let stop = std::sync::atomic::AtomicBool::new(false);
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let read = |db: &FileDb| {
            let v = value(db).unwrap();
            if v == b"1" {
                0
            } else {
                u64::from_be_bytes(v.try_into().unwrap())
            }
        };
        std::thread::scope(|sc| {
            for _ in 0..2 {
                sc.spawn(|| {
                    let mut seen = 0;
                    loop {
                        let returned = done.load(Ordering::SeqCst);
                        let now = read(&db);
                        assert!(
                            now >= returned,
                            "read {now} after commit {returned} returned"
                        );
                        assert!(now >= seen, "read {now} after reading {seen}");
                        seen = now;
                        if returned == last || stop.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                });
            }
            let _stop = Stop(&stop);
            for i in 1..=last {
                put(&db, &i.to_be_bytes());
                done.store(i, Ordering::SeqCst);
            }
        });
    }

    #[test]
    fn no_snapshot_is_kept_while_a_commit_runs() {
        let (_tmp, db) = opened(false);
        // What a commit writes may show before it returns: a snapshot begun meanwhile may
        // be older than one another thread already read, so it is not kept (when none was
        // kept before the commit began).
        db.change(1);
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        assert!(db.kept().1.is_none());
        db.change(-1);
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        assert!(db.kept().1.is_some());
    }

    #[test]
    fn a_snapshot_begun_before_a_commit_is_not_kept() {
        let (_tmp, db) = opened(false);
        // A reader looks at the count and begins a transaction; a commit lands before it
        // gets to keep it.
        let (seen, _) = db.kept();
        let raw = Arc::new(FileRead::of(db.db().unwrap().begin_read().unwrap(), true));
        put(&db, b"2");
        let used = db.keep(seen, Arc::clone(&raw));
        assert!(
            Arc::ptr_eq(&used, &raw),
            "none was kept, yet another was used"
        );
        assert!(db.kept().1.is_none());
        assert_eq!(value(&db).as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn reopening_and_checking_the_file_let_the_kept_snapshot_go() {
        let (_tmp, mut db) = opened(false);
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        // redb refuses its check while a transaction lives, and the file stays open (and
        // locked against opening it again) while one does.
        assert!(db.check_integrity().unwrap());
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        assert!(db.kept().1.is_some());
        db.reopen().unwrap();
        // Nothing of the file closed is kept: its transaction would keep it open.
        assert!(db.kept().1.is_none());
        put(&db, b"2");
        assert_eq!(value(&db).as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn a_file_other_processes_write_keeps_no_snapshot() {
        let (_tmp, db) = opened(true);
        assert_eq!(value(&db).as_deref(), Some(&b"1"[..]));
        assert!(db.kept().1.is_none());
    }

    /// What `get_each` gives for `keys`: each key with its value, up to where `f` stops.
    fn each(
        r: &dyn RawRead,
        keys: &[Vec<u8>],
        stop_after: usize,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut iter = keys.iter().map(Vec::as_slice);
        r.get_each("t", &mut iter, &mut |k, v| {
            out.push((k.to_vec(), v.map(<[u8]>::to_vec)));
            Ok(out.len() < stop_after)
        })
        .unwrap();
        out
    }

    /// What looking each key up alone gives.
    fn one_by_one(
        r: &dyn RawRead,
        keys: &[Vec<u8>],
        stop_after: usize,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        for k in keys.iter().take(stop_after) {
            let mut v = None;
            r.get("t", k, &mut |found| {
                v = Some(found.to_vec());
                Ok(())
            })
            .unwrap();
            out.push((k.clone(), v));
        }
        out
    }

    /// Key sequences in the shapes `get_each` meets: rising runs (a page through an index in
    /// the records' own order), falling runs, both, and no order at all; with gaps, repeats
    /// and keys past either end of the table.
    fn key_runs() -> impl proptest::strategy::Strategy<Value = Vec<u16>> {
        use proptest::prelude::*;
        let any_keys = proptest::collection::vec(0u16..2_200, 0..120);
        prop_oneof![
            any_keys.clone(),
            any_keys.clone().prop_map(|mut v| {
                v.sort_unstable();
                v
            }),
            any_keys.clone().prop_map(|mut v| {
                v.sort_unstable_by(|a, b| b.cmp(a));
                v
            }),
            (any_keys.clone(), any_keys).prop_map(|(mut up, mut down)| {
                up.sort_unstable();
                down.sort_unstable_by(|a, b| b.cmp(a));
                up.extend(down);
                up
            }),
            (0u16..2_000, 1u16..40, 1usize..120).prop_map(|(from, step, n)| {
                (0..n)
                    .map(|i| from.saturating_add(step.saturating_mul(i as u16)))
                    .collect()
            }),
        ]
    }

    #[test]
    fn keys_in_order_are_found_by_walking_and_keys_in_no_order_give_up_after_two_walks() {
        let tmp = tempfile::tempdir().unwrap();
        let db = FileDb::open(&tmp.path().join("s.redb"), spec(false)).unwrap();
        let open = db.begin_shared().unwrap();
        open.run(None, |w| {
            for k in 0..1_000u32 {
                w.put("t", &k.to_be_bytes(), &[7; 40])?;
            }
            Ok(())
        })
        .unwrap();
        db.commit(open, false).unwrap();
        let walked = |keys: &[u32]| {
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_be_bytes().to_vec()).collect();
            let before = WALKED.with(std::cell::Cell::get);
            let seen = db.read(|r| Ok(each(r, &keys, usize::MAX))).unwrap();
            assert!(seen.iter().all(|(_, v)| v.is_some()));
            WALKED.with(std::cell::Cell::get) - before
        };
        // All but the first key of a page in either order are found by walking, over gaps of
        // a few keys and past repeats (each looked up from the root, the walk kept).
        let rising: Vec<u32> = (100..=120)
            .chain(120..=140)
            .chain(140..150)
            .chain([155])
            .collect();
        assert_eq!(walked(&rising), rising.len() - 3);
        let falling: Vec<u32> = (500..550).rev().collect();
        assert_eq!(walked(&falling), falling.len() - 1);
        // A gap too long to step over begins a new walk from the key after it.
        assert_eq!(walked(&[10, 11, 500, 501, 502]), 4);
        // Keys that turn back each time: two walks are begun, then every key is looked up
        // from the root.
        let zigzag: Vec<u32> = (0..20).flat_map(|i| [300 + i, 400 - i]).collect();
        assert_eq!(walked(&zigzag), 2);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Keys read together, whether found by walking from one to the next or from the
        /// root, get exactly the values they get when read one by one, in a snapshot and in
        /// a write transaction, however the keys are ordered and wherever the caller stops.
        #[test]
        fn keys_read_together_get_the_values_they_get_alone(
            present in proptest::collection::btree_set(0u16..2_000, 0..1_500),
            keys in key_runs(),
            stop_after in 1usize..150,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let db = FileDb::open(&tmp.path().join("s.redb"), spec(false)).unwrap();
            let value = |k: u16| format!("value of {k:05} with some length to it").into_bytes();
            let open = db.begin_shared().unwrap();
            open.run(None, |w| {
                for &k in &present {
                    w.put("t", &k.to_be_bytes(), &value(k))?;
                }
                Ok(())
            })
            .unwrap();
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_be_bytes().to_vec()).collect();
            let expected: Vec<_> = keys
                .iter()
                .take(stop_after)
                .map(|k| {
                    let n = u16::from_be_bytes([k[0], k[1]]);
                    (k.clone(), present.contains(&n).then(|| value(n)))
                })
                .collect();
            let (seen, alone) = open
                .run(None, |w| Ok((each(w, &keys, stop_after), one_by_one(w, &keys, stop_after))))
                .unwrap();
            proptest::prop_assert_eq!(&alone, &expected);
            proptest::prop_assert_eq!(&seen, &expected, "in the write transaction");
            db.commit(open, false).unwrap();
            let seen = db.read(|r| Ok(each(r, &keys, stop_after))).unwrap();
            proptest::prop_assert_eq!(&seen, &expected, "in a snapshot");
        }
    }
}
