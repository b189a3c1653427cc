//! Advisory locks on a user directory's `.lock` file, with std's `File::lock` family (flock on
//! Linux). No two locks held at once share a file description (each opens its own, or takes
//! one that no lock holds), so locks exclude each other between threads of one process as
//! well as between processes. A child forked without exec inherits the descriptions, which
//! is why a handle is not to be used across such a fork (no more than the database itself).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Called with the lock path when a lock is busy and the caller is about to wait for it.
pub type WaitNotice = std::sync::Arc<dyn Fn(&Path) + Send + Sync>;

/// A held lock; released on drop.
#[must_use = "the lock is released when this guard is dropped"]
#[derive(Debug)]
pub struct DirLock {
    // Always there until [`DirLock::unlocked`] takes it.
    file: Option<File>,
    // Whether the file was opened for writing (a reader of a read-only folder opens it for
    // reading only).
    writable: bool,
}

impl DirLock {
    /// The inode of the locked file, to check that the path still names it.
    pub fn inode(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        self.file.as_ref()?.metadata().ok().map(|m| m.ino())
    }

    /// Releases the lock and gives back the still open file, to lock again later with
    /// [`relock`]; `None` (and the file closed) if it could not be released, or if it was
    /// opened for reading only (an exclusive lock must not be taken on such a file).
    pub(crate) fn unlocked(mut self) -> Option<File> {
        let file = self.file.take()?;
        file.unlock().ok()?;
        self.writable.then_some(file)
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Released explicitly, not only by the close: a child forked without exec shares
        // the file description and would otherwise keep the lock.
        if let Some(file) = &self.file {
            let _ = file.unlock();
        }
    }
}

/// Which kind of lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Readers: many at once.
    Shared,
    /// Writers: one, and no readers.
    Exclusive,
}

/// Takes the lock at `path` (creating the file, mode 0600, without following a symlink).
/// If it is busy, calls `notice` once and then waits.
///
/// # Errors
/// `UnsafePath` when something other than a regular file is at `path` (a symlink, a
/// directory, another tool's lock), saying how to mend it; `Io` when the file cannot be
/// opened or locked (a missing directory is `NotFound` io).
pub fn lock(path: &Path, kind: LockKind, notice: Option<&WaitNotice>) -> Result<DirLock> {
    // Without blocking on a FIFO planted there (flock itself still waits: only `LOCK_NB`
    // makes it give up).
    let flags =
        (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NONBLOCK)
            .bits() as i32;
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(flags)
        .open(path);
    let writable = opened.is_ok();
    let file = match opened {
        // A reader who may not write the folder (a read-only data dir) locks an existing
        // lock file opened for reading: flock does not need write access.
        Err(e)
            if kind == LockKind::Shared
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
        {
            OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path)
                .map_err(|_| not_opened(path, e))?
        }
        other => other.map_err(|e| not_opened(path, e))?,
    };
    // Opened without following a symlink, but a FIFO, a socket or a device opens too.
    if file.metadata().is_ok_and(|m| !m.is_file()) {
        return Err(not_a_lock_file(
            path,
            "a special file (a FIFO, a socket or a device)",
        ));
    }
    let mut lock = relock(file, path, kind, notice)?;
    lock.writable = writable;
    Ok(lock)
}

/// What is at `path` when it is there but is no regular file, as a lock file must be: "a
/// symlink", "a directory" or "a special file …"; `None` when it is a regular file or absent.
pub(crate) fn odd_lock(path: &Path) -> Option<&'static str> {
    let kind = std::fs::symlink_metadata(path).ok()?.file_type();
    if kind.is_file() {
        None
    } else if kind.is_symlink() {
        Some("a symlink")
    } else if kind.is_dir() {
        Some("a directory")
    } else {
        Some("a special file (a FIFO, a socket or a device)")
    }
}

/// The refusal of the lock file at `path`, which is `kind` ([`odd_lock`]): every operation
/// on the folder needs its lock, so it says how to mend it.
pub(crate) fn not_a_lock_file(path: &Path, kind: &str) -> Error {
    Error::unsafe_path(
        path,
        format!(
            "the folder's lock file is {kind}, not a regular file (another tool's lock, or \
             put there by hand), so the folder cannot be locked and nothing in it is read or \
             written; remove it (redkeep makes a new one), or run `redkeep check --repair`, \
             which moves it into the folder's .trash"
        ),
    )
}

/// Why the lock file at `path` could not be opened (`e`): when something other than a
/// regular file is there (a symlink: `ELOOP`, as it is never followed; a directory:
/// `EISDIR`; a socket: `ENXIO`), that, with how to mend it.
fn not_opened(path: &Path, e: std::io::Error) -> Error {
    match odd_lock(path) {
        Some(kind) if e.kind() != std::io::ErrorKind::NotFound => not_a_lock_file(path, kind),
        _ => Error::io(format!("opening lock file {}", path.display()), e),
    }
}

/// Takes the lock on `file`, the lock file at `path` opened for writing before (by [`lock`],
/// then given back by [`DirLock::unlocked`]). Whether `path` still names it is the caller's
/// to check. A lock belongs to the open file description, not to the descriptor: no other
/// descriptor of the same description (a `try_clone`, or a copy inherited by a forked child)
/// may be locked while this one is, or the two would not exclude each other.
///
/// # Errors
/// `Io` when it cannot be locked.
pub(crate) fn relock(
    file: File,
    path: &Path,
    kind: LockKind,
    notice: Option<&WaitNotice>,
) -> Result<DirLock> {
    let attempt = match kind {
        LockKind::Shared => file.try_lock_shared(),
        LockKind::Exclusive => file.try_lock(),
    };
    match attempt {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            if let Some(n) = notice {
                n(path);
            }
            let waited = match kind {
                LockKind::Shared => file.lock_shared(),
                LockKind::Exclusive => file.lock(),
            };
            waited.map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::io(format!("locking {}", path.display()), e));
        }
    }
    Ok(DirLock {
        file: Some(file),
        writable: true,
    })
}
