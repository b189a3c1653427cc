//! Small file-system helpers shared by the store and the workspaces: private permissions,
//! atomic replacement (temp file in the same directory, fsync, rename, fsync the directory),
//! opening only regular files, and renames that never replace.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::OFlags;
use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Prefix of every temp file redkeep writes; readers skip such files and writers clean them.
pub const TEMP_PREFIX: &str = ".rk-tmp-";

/// A temp file or folder that an interrupted operation (a copy, backup or restore killed
/// half-way) may have left in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Its path.
    pub path: std::path::PathBuf,
    /// Its size as the folder lists it (a folder's own entry, not its contents).
    pub bytes: u64,
    /// When it was last changed, in seconds since 1970 (0 when the system cannot say).
    pub modified: i64,
    /// Whether it is a folder.
    pub is_dir: bool,
}

/// Serializers that write paths as text even when they are not UTF-8 (lossily, as
/// `Path::display` shows them): a report must never fail, or lose its fields, over one odd
/// file name. For `#[serde(serialize_with = "…")]`.
pub mod lossy {
    use std::path::{Path, PathBuf};

    use serde::Serializer;

    /// A path.
    ///
    /// # Errors
    /// The serializer's.
    pub fn path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_string_lossy())
    }

    /// An optional path.
    ///
    /// # Errors
    /// The serializer's.
    pub fn option<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(&p.to_string_lossy()),
            None => s.serialize_none(),
        }
    }

    /// A list of paths.
    ///
    /// # Errors
    /// The serializer's.
    pub fn list<S: Serializer>(v: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|p| p.to_string_lossy()))
    }

    /// A list of paths, each with a text.
    ///
    /// # Errors
    /// The serializer's.
    pub fn list_with<S: Serializer>(v: &[(PathBuf, String)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|(p, t)| (p.to_string_lossy(), t)))
    }
}

/// The store file of a data dir (`handle::STORE_FILE` is this one).
pub(crate) const STORE_FILE_NAME: &str = "redkeep.redb";

/// How old a temp entry must be before a backup or a repair removes it as a leftover: a
/// younger one may belong to an operation under way that holds no lock on it.
pub const LEFTOVER_AGE_SECS: i64 = 3600;

impl Leftover {
    /// Its age in seconds at `now` (by the system clock, which stamped it), never negative.
    pub fn age(&self, now: i64) -> i64 {
        now.saturating_sub(self.modified).max(0)
    }

    /// Whether it is old enough to be taken for a leftover ([`LEFTOVER_AGE_SECS`]).
    pub fn old(&self, now: i64) -> bool {
        self.age(now) >= LEFTOVER_AGE_SECS
    }
}

/// Takes an exclusive advisory lock (flock) on `file`, a temp file or folder this process
/// made, for as long as it stays open: the entry is then [`in_use`], and cleaners of
/// leftovers pass it by however old it looks. Best effort: where the file system cannot lock
/// (a folder on NFS, say), the entry is left to the age rule ([`LEFTOVER_AGE_SECS`]).
fn hold(file: &File, path: &Path) {
    if let Err(e) = rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        tracing::debug!(path = %path.display(), error = %e, "temp entry not locked");
    }
}

/// The start of a check's line that is a note, not a problem (see `CheckReport::notes`).
pub(crate) const NOTE: &str = "note: ";

/// This process's uid and the owner's of `path`, when this process is neither root nor
/// that owner: a user who reads the data dir through its group (a read-only operator), to
/// whom the group bits that let it in are no fault of the data dir.
pub(crate) fn group_reader(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let owner = std::fs::metadata(path).ok()?.uid();
    (me != 0 && me != owner).then_some((me, owner))
}

/// Whether a running operation holds the temp entry `path` (see [`held_temp_sibling`] and
/// [`private_temp_dir_in`]): only a lock held elsewhere says so. Only a regular file or a
/// real folder can be held: a symlink (never followed), a FIFO or a device is not, and is
/// never opened. An entry that cannot be opened or locked (another user's, a file system
/// without locks) is not held: the age rule alone decides for it.
pub fn in_use(path: &Path) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !(meta.is_file() || meta.is_dir()) {
        return false;
    }
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path);
    let Ok(file) = opened else {
        return false;
    };
    let held = |f: &File| {
        matches!(
            rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockShared),
            Err(rustix::io::Errno::WOULDBLOCK)
        )
    };
    if held(&file) {
        return true;
    }
    // A folder holding a store that a process has open (redb locks its file): a data dir
    // of that name, in use, is no leftover.
    meta.is_dir()
        && fs::OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
            .open(path.join(STORE_FILE_NAME))
            .is_ok_and(|store| held(&store))
}

/// What [`remove_leftovers`] did with the leftovers of a folder.
#[derive(Debug, Default)]
pub struct Tidied {
    /// Removed: old enough and held by no running operation.
    pub removed: Vec<Leftover>,
    /// Left: younger than [`LEFTOVER_AGE_SECS`], or held by a running operation.
    pub young_or_held: Vec<Leftover>,
    /// Old enough and not held, but removing it failed (with why): another user's, say.
    pub failed: Vec<(Leftover, String)>,
}

/// Removes the leftovers in `dir` ([`leftovers`]) that are [`Leftover::old`] and not
/// [`in_use`]. A symlink is removed, never followed. An entry that is, or holds, `spare`
/// (the data dir at work) is left, whatever its name.
pub fn remove_leftovers(dir: &Path, spare: &Path) -> Tidied {
    let now = crate::clock::unix_now();
    let mut out = Tidied::default();
    for entry in leftovers(dir) {
        if !entry.old(now) || in_use(&entry.path) || (entry.is_dir && within(&entry.path, spare)) {
            out.young_or_held.push(entry);
            continue;
        }
        let removed = if entry.is_dir {
            fs::remove_dir_all(&entry.path)
        } else {
            fs::remove_file(&entry.path)
        };
        match removed {
            Ok(()) => out.removed.push(entry),
            // Removed meanwhile by someone else (another backup): gone, not ours to report.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => out.failed.push((entry, e.to_string())),
        }
    }
    out
}

/// Entries of `dir` named as redkeep's temp files ([`TEMP_PREFIX`]), in name order; none when
/// `dir` cannot be read.
pub fn leftovers(dir: &Path) -> Vec<Leftover> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Leftover> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
        .filter_map(|e| {
            let path = e.path();
            let meta = path.symlink_metadata().ok()?;
            let modified = meta
                .modified()
                .ok()
                .and_then(crate::clock::Timestamp::of_system_time)
                .map_or(0, |t| t.0);
            Some(Leftover {
                bytes: meta.len(),
                modified,
                is_dir: meta.is_dir(),
                path,
            })
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// Whether `path` (which need not exist yet) is `dir` or lies inside it, symlinks and `..`
/// resolved as far as the path exists; false when `dir` does not exist.
pub fn within(dir: &Path, path: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => return false,
        }
    };
    // The deepest part that exists, resolved; the rest appended as written.
    let mut rest = Vec::new();
    let mut existing = path.as_path();
    let resolved = loop {
        if let Ok(real) = existing.canonicalize() {
            break real;
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            // `..` or the root itself: nothing more to resolve.
            _ => return false,
        }
    };
    let mut full = resolved;
    for name in rest.into_iter().rev() {
        full.push(name);
    }
    full.starts_with(&dir)
}

/// A file-system call the fault seam can fail (tests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileOp {
    /// Writing a temp file's bytes.
    Write,
    /// Fsyncing a file or a directory.
    Sync,
    /// Renaming into place.
    Rename,
    /// Reading a file a salvage copies, or the store file a live check copies.
    Read,
}

type FaultHook = std::sync::Arc<dyn Fn(FileOp) -> std::io::Result<()> + Send + Sync>;

thread_local! {
    // Tests only: set by `FaultPlan::arm_files` for the calling thread.
    static FAULTS: std::cell::RefCell<Option<FaultHook>> = const { std::cell::RefCell::new(None) };
}

/// Sets (or clears) the fault hook of this thread; returns the previous one.
pub(crate) fn set_fault_hook(hook: Option<FaultHook>) -> Option<FaultHook> {
    FAULTS.with(|f| f.replace(hook))
}

/// Fails when the fault hook of this thread says so; a no-op without one.
pub(crate) fn fault(op: FileOp) -> std::io::Result<()> {
    let hook = FAULTS.with(|f| f.borrow().clone());
    match hook {
        Some(h) => h(op),
        None => Ok(()),
    }
}

/// Tells whether whoever asked for the work this thread does went away (see [`watched`]).
type Asker = std::rc::Rc<dyn Fn() -> bool>;

thread_local! {
    // Set by `watched` for the thread running a command for an admin client.
    static ASKER: std::cell::RefCell<Option<Asker>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` on this thread with `gone` telling whether whoever asked for it went away (an
/// admin client that closed its end): long work (a backup, an export) then stops at its
/// next step, through [`go_on`], as it would if it ran in that client's own process.
#[cfg(feature = "admin")]
pub(crate) fn watched<T>(gone: impl Fn() -> bool + 'static, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Asker>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ASKER.with(|a| *a.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(ASKER.with(|a| a.borrow_mut().replace(std::rc::Rc::new(gone))));
    f()
}

/// A step of long work that can stop cleanly: `Cancelled` when whoever asked for `what`
/// went away (see [`watched`]); `Ok` otherwise, and always outside `watched`.
///
/// # Errors
/// `Cancelled` as above.
pub(crate) fn go_on(what: &str) -> Result<()> {
    let gone = ASKER.with(|a| a.borrow().as_ref().is_some_and(|gone| gone()));
    if gone {
        return Err(Error::Cancelled {
            what: format!("{what} (whoever asked for it went away)"),
        });
    }
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("creating directory {}", dir.display()), e))
}

/// Makes an existing directory private (0700) if it is more open and this user owns it;
/// returns the mode it had when it was changed.
///
/// # Errors
/// `Io` when its mode cannot be read or changed.
pub fn restrict_dir(dir: &Path) -> Result<Option<u32>> {
    restrict(dir, 0o700)
}

/// `path`, or when something is there already (a dangling symlink included), `path.2`,
/// `path.3`, …: a name for a new copy that never replaces an earlier one.
pub fn free_path(path: &Path) -> std::path::PathBuf {
    let mut candidate = path.to_path_buf();
    let mut n = 2u64;
    while candidate.symlink_metadata().is_ok() {
        let mut name = path.as_os_str().to_os_string();
        name.push(format!(".{n}"));
        candidate = name.into();
        n += 1;
    }
    candidate
}

/// Refuses a data dir `dir` whose owners this process cannot trust with the store, before
/// anything in it is read or made. Whoever owns a folder can replace every file in it, so
/// opening a data dir trusts its owner; the rule keeps that trust to the owners meant:
///
/// - the data dir must belong to this user (the euid) or root; root, and a user who only
///   reads (`writes` false: a read-only operator in the data dir's group), may also open
///   one of another user, whom they then trust (an operator's `sudo redkeep …` on the
///   application's data dir);
/// - each of `files` in it that is there (the store file, the note naming the store) must
///   be a regular file (never a symlink, which the data dir's owner could point anywhere),
///   owned by this user, root, or (for those who trust it) the data dir's owner;
/// - neither may be writable by the group or others unless this user owns it (then the
///   open makes it private, as before): anyone who may write it could replace the store.
///
/// A data dir that is not there passes (it is made, this user's); one that cannot be looked
/// at, or is no folder, is left to the open, which says why.
///
/// # Errors
/// `Denied` saying whose the data dir or file is and what to run to make it right; nothing
/// was read or changed.
pub(crate) fn refuse_untrusted_data_dir(dir: &Path, files: &[&str], writes: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // A file given as the data dir is said as such by the open.
    let Some(meta) = fs::metadata(dir).ok().filter(fs::Metadata::is_dir) else {
        return Ok(());
    };
    let me = rustix::process::geteuid().as_raw();
    let owner = meta.uid();
    let shown = dir.display();
    if owner != me && owner != 0 && me != 0 && writes {
        return Err(Error::denied(format!(
            "the data dir {shown} belongs to uid {owner}, not to this user (uid {me}) nor to \
             root, and uid {owner} could replace the store in it; nothing was opened or \
             changed: run this as uid {owner}, or if the data dir is this user's, `chown -R \
             {me} {shown}` as root"
        )));
    }
    let trusted = |uid: u32| uid == me || uid == 0 || (uid == owner && (me == 0 || !writes));
    refuse_open_to_others(dir, &meta, me, "the data dir")?;
    for name in files {
        let path = dir.join(name);
        let file = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && owner == me => {
                let mode = meta.permissions().mode() & 0o7777;
                return Err(Error::denied(format!(
                    "the data dir {shown} is this user's, but its mode ({mode:04o}) keeps this \
                     user out of it; nothing was opened: `chmod 700 {shown}`"
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                let mode = meta.permissions().mode() & 0o7777;
                let run_as = if owner == 0 {
                    "as root (`sudo redkeep …`)".to_string()
                } else {
                    format!("as uid {owner} (`sudo -u '#{owner}' redkeep …`) or as root")
                };
                return Err(Error::denied(format!(
                    "this user (uid {me}) may not look inside the data dir {shown} (it belongs \
                     to uid {owner}, mode {mode:04o}); nothing was opened: run the command \
                     {run_as}, or, for commands that only read, give this user the data dir's \
                     group and `chmod 750 {shown}`"
                )));
            }
            Err(e) => return Err(Error::io(format!("looking at {}", path.display()), e)),
        };
        if !file.is_file() {
            let what = if file.file_type().is_symlink() {
                "a symlink"
            } else {
                "not a regular file"
            };
            return Err(Error::denied(format!(
                "{} is {what}, which redkeep never opens in a data dir (whoever made it \
                 chooses what it leads to); nothing was opened or changed: look at what it is \
                 and who made it, then put the real file in its place or remove it",
                path.display()
            )));
        }
        if !trusted(file.uid()) {
            let give = if me == 0 { owner } else { me };
            let mut whom = vec![format!("this user (uid {me})")];
            if me != 0 {
                whom.push("root".into());
            }
            if trusted(owner) && owner != me && owner != 0 {
                whom.push(format!("the data dir's owner (uid {owner})"));
            }
            return Err(Error::denied(format!(
                "{} belongs to uid {uid}, not to {}, so uid {uid} could have put any store \
                 there; nothing was opened or changed: if it is the store you meant, `chown \
                 {give} {}` as root",
                path.display(),
                whom.join(" nor "),
                path.display(),
                uid = file.uid(),
            )));
        }
        refuse_open_to_others(&path, &file, me, "the file")?;
    }
    Ok(())
}

/// Refuses `path` (`what`: "the data dir", "the file") when others may write it and this
/// user does not own it, so cannot make it private.
fn refuse_open_to_others(path: &Path, meta: &fs::Metadata, me: u32, what: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 == 0 || meta.uid() == me {
        return Ok(());
    }
    let owner = meta.uid();
    let shown = path.display();
    let private = if meta.is_dir() { "700" } else { "600" };
    Err(Error::denied(format!(
        "{what} {shown} may be written by other users (mode {mode:04o}), and it belongs to uid \
         {owner}, so this user (uid {me}) does not make it private: whoever may write it could \
         replace the store; nothing was opened or changed: as uid {owner} (or root), `chmod \
         {private} {shown}`"
    )))
}

/// Whether this process's user owns the file (only the owner may change its mode; a
/// deliberately shared file of another user is left as it is).
fn owned(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.uid() == rustix::process::geteuid().as_raw()
}

/// Makes the file `path` private (0600) when its mode lets others in and this user owns it;
/// returns the mode it had when it was changed. A symlink at `path` is left as it is, never
/// followed: whoever may write the folder could point one at any file (root would then
/// make `/etc/passwd` private). The mode is changed through the file opened, so a symlink
/// put there meanwhile changes nothing either.
///
/// # Errors
/// `Io` when its mode cannot be read or changed.
pub fn restrict_file(path: &Path) -> Result<Option<u32>> {
    let reading = |e| Error::io(format!("reading {}", path.display()), e);
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(None);
        }
        // Not readable by its owner (a mode such as 0266): no symlink, or `open` would have
        // said so; changed by its path, as before.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return restrict(path, 0o600);
        }
        Err(e) => return Err(reading(e)),
    };
    let meta = file.metadata().map_err(reading)?;
    let was = meta.permissions().mode() & 0o777;
    if !meta.is_file() || was & 0o077 == 0 || !owned(&meta) {
        return Ok(None);
    }
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("making {} private (0600)", path.display()), e))?;
    Ok(Some(was))
}

/// Sets `path` to `mode` when its mode lets others in and this user owns it; returns the
/// mode it had when it was changed.
fn restrict(path: &Path, mode: u32) -> Result<Option<u32>> {
    let meta =
        fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let was = meta.permissions().mode() & 0o777;
    if was & 0o077 == 0 || !owned(&meta) {
        return Ok(None);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("making {} private ({mode:04o})", path.display()), e))?;
    Ok(Some(was))
}

/// A new temp file (mode 0600) in the directory of `target`.
pub fn temp_sibling(target: &Path) -> Result<NamedTempFile> {
    private_temp_in(folder_of(target))
}

/// The folder `target` is in (`.` for a bare name).
pub(crate) fn folder_of(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A new temp file (mode 0600) in `dir`.
pub fn private_temp_in(dir: &Path) -> Result<NamedTempFile> {
    private_temp_named(dir, TEMP_PREFIX)
}

/// A new temp file (mode 0600) in `dir`, its name beginning with `prefix`.
fn private_temp_named(dir: &Path, prefix: &str) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("creating a temp file in {}", dir.display()), e))
}

/// Refuses a file name that starts with [`TEMP_PREFIX`] for a file meant to stay: a later
/// cleanup would take it for a leftover.
///
/// # Errors
/// `InvalidInput` naming the file.
pub fn refuse_temp_name(target: &Path) -> Result<()> {
    if target
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX))
    {
        return Err(Error::invalid(
            "path",
            format!(
                "{} starts with `{TEMP_PREFIX}`, the prefix of redkeep's temp files, which \
                 cleanups remove; choose another name",
                target.display()
            ),
        ));
    }
    Ok(())
}

/// The folder of a new file `target` (`.` for a bare name), refused when it does not
/// exist (`field` names the argument, `what` the file: "backup", "export").
///
/// # Errors
/// `InvalidInput` naming the folder.
pub fn existing_folder_of<'t>(
    target: &'t Path,
    field: &'static str,
    what: &str,
) -> Result<&'t Path> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match fs::metadata(parent) {
        Ok(m) if m.is_dir() => Ok(parent),
        Ok(_) => Err(Error::invalid(
            field,
            format!(
                "{} is not a folder; write the {what} into a folder",
                parent.display()
            ),
        )),
        // There, perhaps, but out of this process's reach: "does not exist" would send the
        // operator looking for a mistyped path.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Error::invalid(
            field,
            format!(
                "this process (uid {uid}) may not reach the folder {}; write the {what} into \
                 a folder uid {uid} may write, or let it in",
                parent.display(),
                uid = rustix::process::geteuid().as_raw(),
            ),
        )),
        Err(_) => Err(Error::invalid(
            field,
            format!(
                "the folder {} does not exist; make it first, or write the {what} elsewhere",
                parent.display()
            ),
        )),
    }
}

/// [`temp_sibling`], held ([`in_use`]) while open: for a long write of redkeep's own (an
/// archive, an export) that [`persist_new`] ends, never for a file a store opens (redb locks
/// its file itself).
///
/// # Errors
/// `InvalidInput` when `target`'s name starts with [`TEMP_PREFIX`] (a later cleanup would
/// take the finished file for a leftover); as [`temp_sibling`].
///
/// Named after `target` (`.rk-tmp-<name>.…`, the name cut to 64 bytes): one a kill left
/// behind says whose it is.
pub fn held_temp_sibling(target: &Path) -> Result<NamedTempFile> {
    refuse_temp_name(target)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let tmp = private_temp_named(
        folder_of(target),
        &format!("{TEMP_PREFIX}{}.", &name[..end]),
    )?;
    hold(tmp.as_file(), tmp.path());
    Ok(tmp)
}

/// A temp folder of redkeep's, removed when dropped (unless kept), and held ([`in_use`])
/// while alive.
#[derive(Debug)]
pub struct TempDir {
    dir: tempfile::TempDir,
    _held: Option<File>,
}

impl TempDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the folder (no longer removed, nor held) and gives its path.
    pub fn keep(self) -> std::path::PathBuf {
        self.dir.keep()
    }
}

/// A new temp folder, created with mode 0700 (the umask can only narrow it), in `dir`, or in
/// the system's temp folder when `dir` is `None`. `what` says what it is for, in errors.
pub fn private_temp_dir_in(dir: Option<&Path>, what: &str) -> Result<TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(0o700));
    let dir = match dir {
        Some(d) => b.tempdir_in(d),
        None => b.tempdir(),
    }
    .map_err(|e| Error::io(format!("creating {what}"), e))?;
    let held = File::open(dir.path()).ok();
    if let Some(f) = &held {
        hold(f, dir.path());
    }
    Ok(TempDir { dir, _held: held })
}

/// Flushes `tmp` to disk and renames it to `target`, a new file, never replacing one: a file
/// that appeared at `target` since it was checked is `InvalidInput` (and `tmp` is removed).
/// Then fsyncs the directory.
///
/// # Errors
/// `InvalidInput` when `target` exists; `Io`.
pub fn persist_new(tmp: NamedTempFile, target: &Path) -> Result<()> {
    fault(FileOp::Sync)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(format!("syncing a temp file for {}", target.display()), e))?;
    let tmp = tmp.into_temp_path();
    if !rename_no_replace(&tmp, target)? {
        return Err(Error::invalid(
            "path",
            format!(
                "{} appeared while it was being written; it was kept, and nothing was written \
                 over it: choose a new file",
                target.display()
            ),
        ));
    }
    // Moved: the temp path is gone and must not be removed on drop.
    let _ = tmp.keep();
    sync_dir(target)
}

/// Where the file system cannot rename without replacing (NFS, SMB, many FUSE mounts answer
/// `EINVAL` to `RENAME_NOREPLACE`): a file is hard-linked to its new name, which refuses an
/// existing one as surely, then its old name removed; a folder is renamed when nothing is at
/// its new name. A rename puts a folder in the place of an empty folder only, so what could
/// be replaced (an empty folder made there in between) holds nothing to lose. `false` when
/// something is at `to`.
fn rename_new_without_flags(from: &Path, to: &Path) -> std::io::Result<bool> {
    if !fs::symlink_metadata(from)?.is_dir() {
        return match fs::hard_link(from, to) {
            Ok(()) => fs::remove_file(from).map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            // No hard links either: the rename's own answer, which callers know (a piece is
            // then numbered from a listing under the folder's lock).
            Err(_) => Err(rustix::io::Errno::INVAL.into()),
        };
    }
    if fs::symlink_metadata(to).is_ok() {
        return Ok(false);
    }
    let taken = [
        rustix::io::Errno::NOTEMPTY,
        rustix::io::Errno::EXIST,
        rustix::io::Errno::NOTDIR,
    ]
    .map(|e| Some(e.raw_os_error()));
    match fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if taken.contains(&e.raw_os_error()) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
thread_local! {
    // Tests only: this thread's renames act as on a file system without `RENAME_NOREPLACE`.
    static NO_RENAME_FLAGS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The `RENAME_NOREPLACE` rename itself: `Ok(false)` when `to` exists, the errno of any other
/// failure.
fn renameat_no_replace(from: &Path, to: &Path) -> std::result::Result<bool, rustix::io::Errno> {
    #[cfg(test)]
    if NO_RENAME_FLAGS.with(std::cell::Cell::get) {
        return Err(rustix::io::Errno::INVAL);
    }
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Flushes `tmp` to disk, renames it over `target` and fsyncs the directory. On error the
/// temp file is removed and `target` is untouched.
pub fn persist(tmp: NamedTempFile, target: &Path) -> Result<()> {
    persist_open(tmp, target).map(drop)
}

/// [`persist`], giving back the file, still open, now at `target`.
fn persist_open(tmp: NamedTempFile, target: &Path) -> Result<File> {
    fault(FileOp::Sync)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(format!("syncing a temp file for {}", target.display()), e))?;
    fault(FileOp::Rename).map_err(|e| Error::io(format!("replacing {}", target.display()), e))?;
    let file = tmp
        .persist(target)
        .map_err(|e| Error::io(format!("replacing {}", target.display()), e.error))?;
    sync_dir(target)?;
    Ok(file)
}

/// Fsyncs the directory holding `path`, so a rename in it survives a crash.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_this_dir(dir)
}

/// Fsyncs `dir` itself.
pub fn sync_this_dir(dir: &Path) -> Result<()> {
    fault(FileOp::Sync)
        .and_then(|()| File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// Makes everything written so far on the file system that holds `dir` durable at once:
/// files written with [`write_private_unsynced`] by the thousand cost one flush instead of
/// two fsyncs each. On Linux one `syncfs` (which reports a write-back error since Linux 5.8);
/// elsewhere every file and folder under `dir` is fsynced.
///
/// # Errors
/// `Io` when the flush fails: what was written may not be on disk.
#[cfg(feature = "adopt")]
pub fn sync_file_system(dir: &Path) -> Result<()> {
    let failed = |e| Error::io(format!("flushing the file system of {}", dir.display()), e);
    fault(FileOp::Sync).map_err(failed)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let at = File::open(dir).map_err(failed)?;
        rustix::fs::syncfs(&at).map_err(|e| failed(e.into()))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let mut todo = vec![dir.to_path_buf()];
        while let Some(at) = todo.pop() {
            for entry in entries_sorted(&at)? {
                match entry.file_type() {
                    Ok(t) if t.is_dir() => todo.push(entry.path()),
                    Ok(t) if t.is_file() => File::open(entry.path())
                        .and_then(|f| f.sync_all())
                        .map_err(failed)?,
                    _ => {}
                }
            }
            sync_this_dir(&at)?;
        }
        Ok(())
    }
}

/// Fsyncs `dir`, every folder under it (symlinks are not followed) and the folder holding
/// it: after a copy made folders (a restore's unpacking, a move), each file and its entry
/// were synced as written, but not the folders' own entries in their parents, which a crash
/// could lose with everything in them. One sync a folder.
///
/// # Errors
/// `Io` when a folder cannot be listed or synced.
pub fn sync_tree(dir: &Path) -> Result<()> {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in entries_sorted(&at)? {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(entry.path());
            }
        }
        sync_this_dir(&at)?;
    }
    sync_dir(dir)
}

/// Dates the file at `path` as written at `at` (its access time too), never following a
/// symlink: a copy or an import keeps when the original was saved (lists show it).
///
/// # Errors
/// `Io` when the file's times cannot be set.
pub fn set_modified(path: &Path, at: std::time::SystemTime) -> Result<()> {
    let (sec, nsec) = match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        // Before 1970: whole seconds down, nanoseconds up.
        Err(e) => {
            let d = e.duration();
            let sec = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (sec, 0),
                n => (sec - 1, 1_000_000_000 - n),
            }
        }
    };
    let at = rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec.into(),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: at,
            last_modification: at,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io(format!("dating {}", path.display()), e.into()))
}

/// Atomically replaces `target` with `bytes` (mode 0600).
pub fn write_private(target: &Path, bytes: &[u8]) -> Result<()> {
    write_private_open(target, bytes).map(drop)
}

/// [`write_private`], giving back the metadata of the file written (taken from the open file
/// once it is in place: no other lookup of `target`). `None` when it could not be read.
///
/// # Errors
/// As [`write_private`].
pub fn write_private_meta(target: &Path, bytes: &[u8]) -> Result<Option<fs::Metadata>> {
    Ok(write_private_open(target, bytes)?.metadata().ok())
}

fn write_private_open(target: &Path, bytes: &[u8]) -> Result<File> {
    let mut tmp = temp_sibling(target)?;
    fault(FileOp::Write)
        .and_then(|()| tmp.write_all(bytes))
        .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
    persist_open(tmp, target)
}

/// [`write_private`] without its fsyncs: the file is whole or absent at `target` (a temp
/// file renamed into place), but a crash may lose it until [`sync_file_system`] runs. For
/// many files written together and made durable together.
///
/// # Errors
/// `Io` when it cannot be written; nothing is left behind.
#[cfg(feature = "adopt")]
pub fn write_private_unsynced(target: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = temp_sibling(target)?;
    fault(FileOp::Write)
        .and_then(|()| tmp.write_all(bytes))
        .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
    fault(FileOp::Rename).map_err(|e| Error::io(format!("replacing {}", target.display()), e))?;
    tmp.persist(target)
        .map(drop)
        .map_err(|e| Error::io(format!("replacing {}", target.display()), e.error))
}

/// [`write_private`] of what `from` gives, read as it is written: a file of any size is
/// copied without being held in memory.
///
/// # Errors
/// `Io` when `from` cannot be read or the file cannot be written; nothing is left behind.
pub fn write_private_from(target: &Path, from: &mut dyn Read) -> Result<()> {
    let mut tmp = temp_sibling(target)?;
    fault(FileOp::Write)
        .and_then(|()| std::io::copy(from, &mut tmp).map(drop))
        .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
    persist_open(tmp, target).map(drop)
}

/// A reader of the first `len` bytes of a file, which fails if the file ends before them
/// (it shrank while being read): a copy whose size was given ahead (an archive entry's
/// header) gets that many bytes or an error, never fewer.
pub(crate) struct Exactly {
    file: std::io::Take<File>,
    left: u64,
}

impl Exactly {
    /// The first `len` bytes of `file`.
    pub(crate) fn new(file: File, len: u64) -> Exactly {
        Exactly {
            file: file.take(len),
            left: len,
        }
    }
}

impl Read for Exactly {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended {} bytes short of its size: it shrank while being copied; copy again",
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes `bytes` (mode 0600) as the new file `target` durably, without ever replacing
/// anything: `false` (and nothing written) when `target` already exists.
///
/// # Errors
/// `Io` when it cannot be written; nothing is left behind.
pub fn write_private_new(target: &Path, bytes: &[u8]) -> Result<bool> {
    let mut tmp = temp_sibling(target)?;
    fault(FileOp::Write)
        .and_then(|()| tmp.write_all(bytes))
        .and_then(|()| fault(FileOp::Sync))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
    let tmp = tmp.into_temp_path();
    if !rename_no_replace(&tmp, target)? {
        return Ok(false);
    }
    // Renamed: the temp path is gone and must not be removed on drop.
    let _ = tmp.keep();
    if let Err(e) = sync_dir(target) {
        let _ = fs::remove_file(target);
        return Err(e);
    }
    Ok(true)
}

/// Opens `path` for reading only if it is a regular file: a symlink (at the last component)
/// or a FIFO, socket or device is refused without blocking. `None` when it does not exist.
///
/// # Errors
/// `UnsafePath` for anything but a regular file; `Io` otherwise.
pub fn open_regular(path: &Path) -> Result<Option<File>> {
    Ok(open_regular_sized(path)?.map(|(file, _)| file))
}

/// [`open_regular`], with the file's size when opened.
pub(crate) fn open_regular_sized(path: &Path) -> Result<Option<(File, u64)>> {
    let flags = (OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits();
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(Error::unsafe_path(
                path,
                "it is a symlink; redkeep never follows one",
            ));
        }
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if !meta.file_type().is_file() {
        return Err(Error::unsafe_path(
            path,
            "it is not a regular file (a FIFO, socket, device or directory)",
        ));
    }
    Ok(Some((file, meta.len())))
}

/// Reads a regular file of at most `cap` bytes. `None` when it does not exist.
///
/// # Errors
/// `UnsafePath` (see [`open_regular`]); `InvalidInput` when it is larger than `cap`.
pub fn read_regular(path: &Path, cap: u64) -> Result<Option<Vec<u8>>> {
    let Some((file, len)) = open_regular_sized(path)? else {
        return Ok(None);
    };
    let too_large = || {
        Error::invalid(
            "file",
            format!("{} is larger than the {cap}-byte limit", path.display()),
        )
    };
    // Too large as it stands: refused without reading it (a sparse file of 10 GB would
    // otherwise cost a read of `cap` bytes first).
    if len > cap {
        return Err(too_large());
    }
    // Room for the whole file and one byte more, so the usual read takes one call and the
    // end is seen by the next (the size is a hint: the file may grow meanwhile).
    let room = usize::try_from(len.saturating_add(1)).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(room.min(1 << 20));
    // Saturating: a cap of `u64::MAX` (no limit) must not wrap to a read of nothing.
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// The entries of `dir`, in name order, for copies that must hold everything: an entry
/// the listing fails on is an error, never skipped.
///
/// # Errors
/// `Io` naming `dir` when it cannot be listed, or when reading any of its entries fails.
pub(crate) fn entries_sorted(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    let listing = |e| Error::io(format!("listing {}", dir.display()), e);
    let mut entries = fs::read_dir(dir)
        .map_err(listing)?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(listing)?;
    entries.sort_by_key(fs::DirEntry::file_name);
    Ok(entries)
}

/// Whether `path`, or the nearest folder above it that is there, is on a file system
/// mounted read-only: no permission or owner would let anyone change it, so the advice is to
/// remount it, not to run as someone else.
pub(crate) fn on_read_only_fs(path: &Path) -> bool {
    let Ok(path) = std::path::absolute(path) else {
        return false;
    };
    path.ancestors()
        .find_map(|a| rustix::fs::statvfs(a).ok())
        .is_some_and(|fs| fs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Whether something is at `path` (through a symlink: a dangling one is nothing).
///
/// # Errors
/// `Io` when that cannot be told: a folder on the way this user may not enter is not "not
/// there" (which would read as "no store; run `redkeep init`").
pub fn is_there(path: &Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("looking for {}", path.display()), e)),
    }
}

/// Refuses, before anything changes, a folder this process may not change (make, rename or
/// remove entries in; a folder moving to another one is changed too): a move into or out
/// of it would fail part way, after the store had changed. A folder that is not there
/// passes.
///
/// # Errors
/// `Denied` naming the folder; `Io` when it cannot be looked at.
pub(crate) fn may_change(dir: &Path) -> Result<()> {
    use rustix::fs::{Access, AtFlags};
    // As the process's effective ids and capabilities would meet it (a service running
    // with CAP_DAC_OVERRIDE may change what its uid alone may not).
    match rustix::fs::accessat(
        rustix::fs::CWD,
        dir,
        Access::WRITE_OK | Access::EXEC_OK,
        AtFlags::EACCESS,
    ) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => Err(Error::denied(format!(
            "{} may not be changed by this user (its permissions); let the data dir's owner \
             write it again (`chmod u+rwx`), or run as its owner; nothing was changed",
            dir.display()
        ))),
        Err(rustix::io::Errno::ROFS) => Err(Error::denied(format!(
            "{} is on a read-only file system; nothing was changed",
            dir.display()
        ))),
        Err(e) => Err(Error::io(format!("looking at {}", dir.display()), e.into())),
    }
}

/// Whether `path` is a real directory (not a symlink to one). `None` when it does not exist.
///
/// # Errors
/// `UnsafePath` when it is a symlink or not a directory.
pub fn real_dir(path: &Path) -> Result<Option<()>> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::unsafe_path(
            path,
            "it is a symlink; redkeep never follows one",
        )),
        Ok(m) if m.is_dir() => Ok(Some(())),
        Ok(_) => Err(Error::unsafe_path(path, "it is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Renames `from` to `to` only if `to` does not exist (`RENAME_NOREPLACE`, or where the file
/// system cannot do that, as [`rename_new_without_flags`] says); returns false when it
/// exists.
///
/// # Errors
/// `Io` for other failures.
pub fn rename_no_replace(from: &Path, to: &Path) -> Result<bool> {
    let what = || format!("moving {} to {}", from.display(), to.display());
    fault(FileOp::Rename).map_err(|e| Error::io(what(), e))?;
    match renameat_no_replace(from, to) {
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOTSUP | rustix::io::Errno::NOSYS) => {
            rename_new_without_flags(from, to).map_err(|e| Error::io(what(), e))
        }
        other => other.map_err(|e| Error::io(what(), e.into())),
    }
}

/// Renames `from` over `to` and makes the rename durable.
///
/// # Errors
/// `Io` when it cannot be renamed.
pub fn rename_replace(from: &Path, to: &Path) -> Result<()> {
    fault(FileOp::Rename)
        .and_then(|()| fs::rename(from, to))
        .map_err(|e| Error::io(format!("moving {} to {}", from.display(), to.display()), e))?;
    sync_dir(to)
}

/// Moves `from` into `trash` as `<name>`, `<name>-2`, … (never replacing anything) and
/// makes the move durable. Returns where it went. When the move cannot be made durable it
/// is undone (as far as the file system lets it) and the error returned.
///
/// # Errors
/// `Io` when it cannot be moved.
pub fn move_to_trash(from: &Path, trash: &Path, name: &str) -> Result<std::path::PathBuf> {
    let new_trash = fs::symlink_metadata(trash).is_err();
    create_private_dir(trash)?;
    if new_trash {
        // Its own entry made durable too: else a crash could keep the move out of the
        // source folder and lose the trash that holds what moved.
        sync_dir(trash)?;
    }
    // Never into a trash that is a symlink: what goes there must stay under the data dir.
    real_dir(trash)?;
    let mut n = 1;
    loop {
        let target = if n == 1 {
            trash.join(name)
        } else {
            trash.join(format!("{name}-{n}"))
        };
        if rename_no_replace(from, &target)? {
            let synced = sync_this_dir(trash).and_then(|()| sync_dir(from));
            if let Err(e) = synced {
                // Not durable: put it back, so a failure leaves things where they were.
                let _ = rename_no_replace(&target, from);
                return Err(e);
            }
            return Ok(target);
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    /// This thread's renames act as on a file system without `RENAME_NOREPLACE` (NFS) until
    /// the guard is dropped.
    struct NoRenameFlags;

    impl NoRenameFlags {
        fn on() -> NoRenameFlags {
            super::NO_RENAME_FLAGS.with(|f| f.set(true));
            NoRenameFlags
        }
    }

    impl Drop for NoRenameFlags {
        fn drop(&mut self) {
            super::NO_RENAME_FLAGS.with(|f| f.set(false));
        }
    }

    /// Without `RENAME_NOREPLACE`, files and folders still move only to a name nothing
    /// holds, and what holds the name is left as it was.
    #[test]
    fn renames_never_replace_without_the_no_replace_flag() {
        let _nfs = NoRenameFlags::on();
        let tmp = tempfile::tempdir().unwrap();
        let at = |name: &str| tmp.path().join(name);
        std::fs::write(at("a"), b"a").unwrap();
        std::fs::write(at("taken"), b"precious").unwrap();
        assert!(!super::rename_no_replace(&at("a"), &at("taken")).unwrap());
        assert_eq!(std::fs::read(at("taken")).unwrap(), b"precious");
        assert!(super::rename_no_replace(&at("a"), &at("b")).unwrap());
        assert_eq!(std::fs::read(at("b")).unwrap(), b"a");
        assert!(!at("a").exists());

        std::fs::create_dir(at("dir")).unwrap();
        std::fs::write(at("dir/inside"), b"in").unwrap();
        std::fs::create_dir(at("full")).unwrap();
        std::fs::write(at("full/kept"), b"kept").unwrap();
        for taken in ["full", "taken"] {
            assert!(!super::rename_no_replace(&at("dir"), &at(taken)).unwrap());
        }
        assert_eq!(std::fs::read(at("full/kept")).unwrap(), b"kept");
        assert_eq!(std::fs::read(at("taken")).unwrap(), b"precious");
        assert!(super::rename_no_replace(&at("dir"), &at("moved")).unwrap());
        assert_eq!(std::fs::read(at("moved/inside")).unwrap(), b"in");

        assert!(super::write_private_new(&at("new"), b"new").unwrap());
        assert!(!super::write_private_new(&at("new"), b"other").unwrap());
        assert_eq!(std::fs::read(at("new")).unwrap(), b"new");
        let trashed = super::move_to_trash(&at("moved"), &at("trash"), "moved").unwrap();
        assert_eq!(std::fs::read(trashed.join("inside")).unwrap(), b"in");
    }

    /// Without `RENAME_NOREPLACE`, user folders are made, pieces saved and deleted, and
    /// folders trashed: all of it failed with "Invalid argument".
    #[test]
    fn workspaces_work_without_the_no_replace_flag() {
        use crate::workspace::{FolderOwner, WorkspaceOptions, Workspaces};
        let _nfs = NoRenameFlags::on();
        let tmp = tempfile::tempdir().unwrap();
        let owners: crate::workspace::Owners = std::sync::Arc::new(|id| {
            Ok(Some(FolderOwner {
                uid: [id as u8; 16],
                since: 1_800_000_000,
            }))
        });
        let ws = Workspaces::open(tmp.path(), WorkspaceOptions::default(), owners).unwrap();
        ws.update(1, |d| d.add_note("kept")).unwrap();
        let first = ws.save_piece(1, br#"{"title":"dawn"}"#).unwrap();
        let second = ws.save_piece(1, br#"{"title":"dusk"}"#).unwrap();
        ws.delete_piece(1, first).unwrap();
        assert_eq!(ws.list_pieces(1).unwrap().len(), 1);
        assert_eq!(ws.load_piece(1, second).unwrap()["title"], "dusk");
        assert_eq!(ws.read(1).unwrap().notes, serde_json::json!(["kept"]));
        assert!(
            ws.trash_folder(1, crate::clock::Timestamp(1_800_000_000))
                .unwrap()
                .is_some()
        );
        assert!(!tmp.path().join("users/1").exists());
    }

    /// A file that appears at the target while it is written is kept: nothing is written
    /// over it, and the temp file goes.
    #[test]
    fn persist_new_never_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("b.tar");
        let mut file = super::held_temp_sibling(&target).unwrap();
        std::io::Write::write_all(&mut file, b"the backup").unwrap();
        std::fs::write(&target, b"precious").unwrap();
        let err = super::persist_new(file, &target).unwrap_err();
        assert!(err.to_string().contains("appeared"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        let file = super::held_temp_sibling(&tmp.path().join("new.tar")).unwrap();
        super::persist_new(file, &tmp.path().join("new.tar")).unwrap();
        assert!(tmp.path().join("new.tar").is_file());
    }

    /// redkeep's own temp folders and held temp files are in use while alive, and no longer
    /// once dropped or kept; a plain temp file is never held.
    #[test]
    fn temp_entries_are_held_while_alive() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = super::private_temp_dir_in(Some(tmp.path()), "a test folder").unwrap();
        let path = dir.path().to_path_buf();
        assert!(super::in_use(&path));
        drop(dir);
        assert!(!path.exists());
        let dir = super::private_temp_dir_in(Some(tmp.path()), "a test folder").unwrap();
        let kept = dir.keep();
        assert!(kept.is_dir() && !super::in_use(&kept));
        let file = super::held_temp_sibling(&tmp.path().join("target")).unwrap();
        let path = file.path().to_path_buf();
        assert!(super::in_use(&path));
        let plain = super::temp_sibling(&tmp.path().join("target")).unwrap();
        assert!(!super::in_use(plain.path()));
        let persisted = tmp.path().join("target");
        super::persist(file, &persisted).unwrap();
        assert!(!super::in_use(&persisted));
    }

    #[test]
    fn within_resolves_what_exists_and_appends_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("workspaces/users/2")).unwrap();
        let outside = tmp.path().join("elsewhere");
        std::fs::create_dir(&outside).unwrap();
        assert!(super::within(&data, &data));
        assert!(super::within(
            &data,
            &data.join("workspaces/users/2/new/deeper")
        ));
        assert!(!super::within(&data, &outside.join("x")));
        // `..` out of the data dir, and a symlink into it.
        assert!(!super::within(
            &data,
            &data.join("workspaces/../../elsewhere/x")
        ));
        std::os::unix::fs::symlink(data.join("workspaces"), tmp.path().join("link")).unwrap();
        assert!(super::within(&data, &tmp.path().join("link/users/2/x")));
        assert!(!super::within(&tmp.path().join("missing"), &data));
    }

    use super::*;

    /// A symlink where a private file is expected is not followed: the file it points to
    /// keeps its mode. A real file is made private as before.
    #[test]
    fn restrict_file_never_follows_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        fs::write(&target, b"x").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        let link = tmp.path().join("redkeep.redb");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(restrict_file(&link).unwrap(), None);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&target), 0o644);
        assert_eq!(restrict_file(&target).unwrap(), Some(0o644));
        assert_eq!(mode(&target), 0o600);
    }

    /// Staging folders hold copies of the store: 0700 whatever the umask (a plain tempdir is
    /// 0755 under the usual 022).
    #[test]
    fn temp_folders_are_private() {
        let parent = tempfile::tempdir().unwrap();
        for dir in [Some(parent.path()), None] {
            let tmp = private_temp_dir_in(dir, "a test folder").unwrap();
            let meta = fs::metadata(tmp.path()).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{dir:?}");
            let name = tmp
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(name.starts_with(TEMP_PREFIX), "{name}");
        }
    }
}
