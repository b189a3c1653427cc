//! Locks outside the store (workspace folders) that a thread holds, so that a second lock of
//! one of them where either is exclusive (a workspace call inside an update's closure) is
//! refused rather than left to wait for itself. A write closure may run on the committing
//! thread of a batch instead of its caller's: [`Store::write`](super::Store::write) carries
//! the caller's list there for the closure's run, so the check sees the same holds wherever
//! the closure runs.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

thread_local! {
    static HELD: RefCell<Vec<(PathBuf, bool)>> = const { RefCell::new(Vec::new()) };
}

/// This thread's hold of a folder's lock, listed while it lives.
pub(crate) struct Held {
    dir: PathBuf,
    exclusive: bool,
}

impl Held {
    /// Lists the lock of `dir` (`exclusive` or shared) as held by this thread.
    pub(crate) fn new(dir: &Path, exclusive: bool) -> Held {
        HELD.with_borrow_mut(|held| held.push((dir.to_path_buf(), exclusive)));
        Held {
            dir: dir.to_path_buf(),
            exclusive,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.with_borrow_mut(|held| {
            if let Some(i) = held
                .iter()
                .rposition(|(d, e)| *d == self.dir && *e == self.exclusive)
            {
                held.remove(i);
            }
        });
    }
}

/// Whether this thread (or the caller whose write closure it runs) holds the lock of `dir`
/// where it or the one wanted (`exclusive`) is exclusive.
pub(crate) fn clashes(dir: &Path, exclusive: bool) -> bool {
    HELD.with_borrow(|held| held.iter().any(|(d, e)| d == dir && (*e || exclusive)))
}

/// The locks this thread holds, to carry to where its write closure runs.
pub(crate) fn snapshot() -> Vec<(PathBuf, bool)> {
    HELD.with_borrow(Clone::clone)
}

/// While alive, this thread's list is the one carried (a caller's); the thread's own comes
/// back when it drops.
pub(crate) struct Carried(Vec<(PathBuf, bool)>);

impl Carried {
    /// Makes `held` (a [`snapshot`] of the caller's) this thread's list.
    pub(crate) fn install(held: &[(PathBuf, bool)]) -> Carried {
        Carried(HELD.with_borrow_mut(|h| std::mem::replace(h, held.to_vec())))
    }
}

impl Drop for Carried {
    fn drop(&mut self) {
        let own = std::mem::take(&mut self.0);
        HELD.with_borrow_mut(|h| *h = own);
    }
}
