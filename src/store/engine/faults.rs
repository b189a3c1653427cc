//! I/O fault injection for tests: a storage backend that fails one chosen call (the `n`th
//! write, sync, set_len or read) with an I/O error and works again afterwards, like a disk
//! that fills up and is freed. The default engine never goes through it.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use redb::StorageBackend;
use redb::backends::FileBackend;

/// Which kind of call a [`FaultPlan`] fails.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Writing bytes.
    Write,
    /// Flushing to the disk.
    Sync,
    /// Growing or shrinking the file.
    SetLen,
    /// Reading bytes.
    Read,
    /// Workspace files: writing a temp file's bytes.
    FileWrite,
    /// Workspace files: fsyncing a file or a directory.
    FileSync,
    /// Workspace files: renaming into place (or into the trash).
    FileRename,
    /// Workspace files: reading a file a salvage copies; the store file a live check
    /// copies.
    FileRead,
    /// PostgreSQL: a statement inside a transaction, before which the server ends the
    /// session (as a stop or a restart does), so the statement meets the connection closed.
    Statement,
}

/// Fails the `nth` call (1-based) of one kind, once; or, made with
/// [`pausing`](FaultPlan::pausing), holds that call until [`resume`](FaultPlan::resume).
#[doc(hidden)]
pub struct FaultPlan {
    kind: FaultKind,
    nth: u64,
    calls: AtomicU64,
    fired: AtomicBool,
    // A pausing plan: whether the call is held, and whether it was let go.
    pause: Option<(Mutex<(bool, bool)>, Condvar)>,
}

impl fmt::Debug for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultPlan")
            .field("kind", &self.kind)
            .field("nth", &self.nth)
            .field("fired", &self.fired())
            .finish()
    }
}

impl FaultPlan {
    /// A plan failing the `nth` call of `kind`.
    pub fn new(kind: FaultKind, nth: u64) -> Arc<FaultPlan> {
        Arc::new(FaultPlan {
            kind,
            nth,
            calls: AtomicU64::new(0),
            fired: AtomicBool::new(false),
            pause: None,
        })
    }

    /// A plan holding the `nth` call of `kind` (which then succeeds) until
    /// [`resume`](Self::resume): what another thread can do while it waits.
    pub fn pausing(kind: FaultKind, nth: u64) -> Arc<FaultPlan> {
        Arc::new(FaultPlan {
            kind,
            nth,
            calls: AtomicU64::new(0),
            fired: AtomicBool::new(false),
            pause: Some((Mutex::new((false, false)), Condvar::new())),
        })
    }

    /// Waits until a pausing plan holds its call (at once for a plan that does not pause).
    pub fn wait_paused(&self) {
        if let Some((state, cv)) = &self.pause {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            while !st.0 {
                st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Lets the held call of a pausing plan go on (and any it has yet to hold).
    pub fn resume(&self) {
        if let Some((state, cv)) = &self.pause {
            state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
            cv.notify_all();
        }
    }

    /// Whether the failure happened.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// How many calls of the plan's kind were made so far (a plan whose `nth` is never
    /// reached counts them: how many syncs an operation costs).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Arms the plan for the workspace files written (or, salvaging, read) by this thread (the `File*` kinds)
    /// until the guard is dropped.
    pub fn arm_files(self: &Arc<Self>) -> FileFaults {
        use crate::fsutil::FileOp;
        let plan = self.clone();
        let previous = crate::fsutil::set_fault_hook(Some(Arc::new(move |op| {
            plan.check(match op {
                FileOp::Write => FaultKind::FileWrite,
                FileOp::Sync => FaultKind::FileSync,
                FileOp::Rename => FaultKind::FileRename,
                FileOp::Read => FaultKind::FileRead,
            })
        })));
        FileFaults { previous }
    }

    /// Whether the statement about to run is the one the plan fails (a plan of kind
    /// [`FaultKind::Statement`]).
    #[cfg(feature = "postgres")]
    pub(crate) fn statement_fails(&self) -> bool {
        self.check(FaultKind::Statement).is_err()
    }

    fn check(&self, kind: FaultKind) -> io::Result<()> {
        if kind != self.kind {
            return Ok(());
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.nth {
            self.fired.store(true, Ordering::SeqCst);
            if let Some((state, cv)) = &self.pause {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                st.0 = true;
                cv.notify_all();
                while !st.1 {
                    st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                return Ok(());
            }
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("injected failure of {kind:?} call {n}"),
            ));
        }
        Ok(())
    }
}

/// The file backend with a fault plan in front of it.
#[derive(Debug)]
pub(crate) struct FaultyBackend {
    inner: FileBackend,
    plan: Arc<FaultPlan>,
}

impl FaultyBackend {
    pub(crate) fn new(
        file: File,
        plan: Arc<FaultPlan>,
    ) -> Result<FaultyBackend, redb::DatabaseError> {
        Ok(FaultyBackend {
            inner: FileBackend::new(file)?,
            plan,
        })
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.plan.check(FaultKind::Read)?;
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.plan.check(FaultKind::SetLen)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.plan.check(FaultKind::Sync)?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.plan.check(FaultKind::Write)?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// Keeps a [`FaultPlan`] armed for this thread's workspace files; disarms it when dropped.
#[doc(hidden)]
#[must_use = "the plan is disarmed when the guard is dropped"]
pub struct FileFaults {
    previous: Option<FileFaultHook>,
}

type FileFaultHook = Arc<dyn Fn(crate::fsutil::FileOp) -> io::Result<()> + Send + Sync>;

impl fmt::Debug for FileFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileFaults").finish_non_exhaustive()
    }
}

impl Drop for FileFaults {
    fn drop(&mut self) {
        crate::fsutil::set_fault_hook(self.previous.take());
    }
}
