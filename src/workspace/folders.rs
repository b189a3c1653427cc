//! The folders themselves: where each user's folder is, whose it is (the `.owner` marker),
//! creating it atomically at the first write, locking it, and reading, writing, listing and
//! trashing whole folders and documents.

use std::collections::HashMap;
use std::fs;
use std::hash::Hash;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use super::doc::WorkspaceDoc;
use super::lock::{self, DirLock, LockKind, WaitNotice};
use super::names::{self, GALLERY_DIR, LOCK_FILE, OWNER_FILE, TALLY_FILE, WORKSPACE_FILE};
use super::tally::{Tally, counted, known, read_tally};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::store::Held;

/// Default size cap for documents and pieces: 16 MiB.
pub const DEFAULT_MAX_DOC_BYTES: u64 = 16 * 1024 * 1024;

/// Default cap on the pieces of one user's gallery: 10,000. Far more than a person saves by
/// hand (ten a day for nearly three years), while a client saving in a loop (a bug, a
/// stolen token) is stopped before one gallery's listing, export or check grows slow. Raise it, or lift it with `Some(u64::MAX)`, in
/// [`WorkspaceOptions::max_pieces`].
pub const DEFAULT_MAX_PIECES: u64 = 10_000;

/// Default cap on the bytes of one user's pieces together: 1 GiB. About ten times what
/// 10,000 pieces of a typical 100 KiB take, so real galleries meet the piece cap first;
/// yet a few hundred users at their cap fill no more than a common disk. Without it, one
/// signed-in user fills the disk with pieces at the [`DEFAULT_MAX_DOC_BYTES`] each save
/// may take. Raise it, or lift it with `Some(u64::MAX)`, in
/// [`WorkspaceOptions::max_gallery_bytes`].
pub const DEFAULT_MAX_GALLERY_BYTES: u64 = 1024 * 1024 * 1024;

/// How the size cap for workspace files is raised, for messages that refuse a file over it.
pub(crate) const RAISE_LIMIT: &str = "`Options::workspace.max_doc_bytes` in the application, \
     `--max-doc-bytes` or REDKEEP_MAX_DOC_BYTES for the `redkeep` command";

/// The identity a folder is bound to: a user's uid, and when the user was created. Only the
/// uid decides whose folder it is; the creation time lets an upgrade recognise a folder of the
/// same account after its uid was forgotten (a store restored from before uids existed).
#[derive(Clone, Copy)]
pub struct FolderOwner {
    /// The user's uid.
    pub uid: [u8; 16],
    /// When the user was created (Unix seconds).
    pub since: i64,
}

impl PartialEq for FolderOwner {
    fn eq(&self, other: &Self) -> bool {
        self.uid == other.uid
    }
}

impl Eq for FolderOwner {}

impl FolderOwner {
    fn marker(self) -> String {
        format!("{}\n{}\n", crate::bytes::hex(&self.uid), self.since)
    }

    fn parse(text: &str) -> Option<FolderOwner> {
        let mut lines = text.lines();
        let hex = lines.next()?.trim();
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut uid = [0u8; 16];
        for (i, o) in uid.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        let since = match lines.next() {
            Some(l) => l.trim().parse().ok()?,
            None => 0,
        };
        Some(FolderOwner { uid, since })
    }
}

/// What a folder's `.owner` marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// No marker: no folder, or one of an older build or copied in by hand.
    Missing,
    /// A marker that names no account (a hand edit, a bad disk block, a copy cut short):
    /// like a missing one, it says nothing about whose the folder is.
    Malformed,
    /// The account the marker names.
    Of(FolderOwner),
}

impl std::fmt::Debug for FolderOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FolderOwner({}, since {})",
            crate::bytes::hex(&self.uid),
            self.since
        )
    }
}

/// What a restore that replaces the workspace folders leaves in the restored store until
/// they are in place: where the backup's folders wait, and the restore's time. A restore
/// stopped between the two (a crash, a kill) is then named by `check`, and `check --repair`
/// finishes it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct StoppedRestore {
    /// The folders to put in place as `workspaces/users` (the restore's staging folder, or
    /// the trash entry given with `--folders`).
    pub(crate) users: PathBuf,
    /// The restore's time (Unix seconds): the trash entry of the replaced folders is named
    /// for it.
    pub(crate) at: i64,
    /// Whether an empty trash entry is kept for the replaced folders (the undo names it).
    pub(crate) keep_empty: bool,
    /// The safety copy of the store the restore replaced (`….pre-restore-<time>.bak`),
    /// which with the trash entry of the replaced folders undoes it; `None` when there is
    /// nothing to undo (and in marks of earlier builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) safety_copy: Option<PathBuf>,
}

impl StoppedRestore {
    /// Puts the waiting folders in place in `ws` (the folders there go to the trash) and
    /// says what it did; `None` when they are in place already.
    ///
    /// # Errors
    /// `Io` / `UnsafePath` when the folders cannot be moved.
    pub(crate) fn finish(&self, ws: &Workspaces) -> Result<Option<FinishedRestore>> {
        // Through a handle whose data dir moved away, the waiting folders are not where the
        // mark says: not "in place already".
        ws.in_place()?;
        if fsutil::real_dir(&self.users)?.is_none() {
            return Ok(None);
        }
        // Stopped after the folders there went to the trash: their entry is there, and an
        // empty one beside it (`reset-<at>-2`) would only be noise in the undo.
        let trashed = ws.trash_dir().join(format!("reset-{}", self.at));
        let before = fsutil::real_dir(&trashed).ok().flatten().is_some();
        let keep_empty = self.keep_empty && !before;
        let (count, made) = ws.replace_users_with(&self.users, Timestamp(self.at), keep_empty)?;
        self.remove_staging();
        // An entry made now, beside the one made before the restore stopped, holds folders
        // made in `users/` meanwhile (nothing of this build writes there then).
        let (replaced, made_since) = if before {
            (Some(trashed), made)
        } else {
            (made, None)
        };
        Ok(Some(FinishedRestore {
            count: count.unwrap_or(0),
            from: self.users.clone(),
            replaced,
            made_since,
            safety_copy: self.safety_copy.clone(),
        }))
    }

    /// Removes the restore's staging folder, left empty once its folders went into place:
    /// the temp folders (`.rk-tmp-…`) above `users`, up to the first one so named, each
    /// only when empty (never a trash entry, which is no temp folder).
    fn remove_staging(&self) {
        let temp = |p: &Path| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(fsutil::TEMP_PREFIX))
        };
        // `workspaces/.rk-tmp-…/users`, or (earlier builds) `.rk-tmp-…/workspaces/users`.
        let ancestors: Vec<&Path> = self.users.ancestors().skip(1).take(2).collect();
        let Some(top) = ancestors.iter().position(|p| temp(p)) else {
            return;
        };
        for dir in &ancestors[..=top] {
            if fs::remove_dir(dir).is_err() {
                return;
            }
        }
    }

    /// The refusal of every workspace read and write while a restore's mark is in the
    /// store: the folders in place are not (or not known to be) the restored store's.
    pub(crate) fn refusal() -> Error {
        Error::NotReady {
            reason: "a restore stopped part way here (a crash or a kill) before the backup's \
                     workspace folders were in place, so no workspace folder is read or \
                     written until it is finished; `redkeep check --repair` finishes it"
                .into(),
        }
    }
}

/// What finishing a stopped restore did ([`StoppedRestore::finish`]).
#[derive(Debug, Clone)]
pub(crate) struct FinishedRestore {
    /// How many folders were put in place.
    pub(crate) count: u64,
    /// Where they came from.
    pub(crate) from: PathBuf,
    /// The trash entry holding the folders the restore replaced, if there were any.
    pub(crate) replaced: Option<PathBuf>,
    /// A second entry, made by the finish beside `replaced`: the folders made in `users/`
    /// while the restore was stopped.
    pub(crate) made_since: Option<PathBuf>,
    /// The safety copy of the store the restore replaced, which pairs with `replaced`.
    pub(crate) safety_copy: Option<PathBuf>,
}

impl std::fmt::Display for FinishedRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} folder(s) put in place from {}",
            self.count,
            self.from.display()
        )?;
        match (&self.replaced, &self.made_since) {
            (Some(r), Some(m)) => write!(
                f,
                " (the folders they replaced went to the trash, {}; folders made while the \
                 restore was stopped went to {})",
                r.display(),
                m.display()
            ),
            (Some(r), None) | (None, Some(r)) => {
                write!(f, " (the folders there went to the trash, {})", r.display())
            }
            (None, None) => write!(f, " (no folders were there to replace)"),
        }
    }
}

/// Who owns the folder of a user id now: `None` when no such user exists.
pub type Owners = Arc<dyn Fn(u64) -> Result<Option<FolderOwner>> + Send + Sync>;

/// Options of [`Workspaces`].
#[derive(Clone, Default)]
pub struct WorkspaceOptions {
    /// Largest document or piece read or written; `None` means [`DEFAULT_MAX_DOC_BYTES`].
    pub max_doc_bytes: Option<u64>,
    /// The most pieces one user's gallery may hold: [`Workspaces::save_piece`] past it is
    /// refused ([`Error::QuotaExceeded`]) and saves nothing. Pieces already past it (an
    /// adopted deployment, a lowered cap) stay readable and removable; imports and adoptions
    /// are not held to it. `None` means [`DEFAULT_MAX_PIECES`]; `Some(u64::MAX)` lifts it.
    pub max_pieces: Option<u64>,
    /// The most bytes one user's pieces may take together: a save that would pass it is
    /// refused as one past `max_pieces` is. Removed pieces wait in the folder's trash
    /// without counting toward the caps, and the trash holds at most as many pieces and
    /// bytes again: past them, [`Workspaces::delete_piece`] deletes the oldest removed for
    /// good ([`Workspaces::purge_trash`] deletes them sooner).
    /// `None` means [`DEFAULT_MAX_GALLERY_BYTES`]; `Some(u64::MAX)` lifts it.
    pub max_gallery_bytes: Option<u64>,
    /// Called when a lock is busy, before waiting (the CLI prints that it is waiting).
    pub on_wait: Option<WaitNotice>,
}

impl std::fmt::Debug for WorkspaceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceOptions")
            .field("max_doc_bytes", &self.max_doc_bytes)
            .field("max_pieces", &self.max_pieces)
            .field("max_gallery_bytes", &self.max_gallery_bytes)
            .field("on_wait", &self.on_wait.is_some())
            .finish()
    }
}

/// A summary of one user directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceInfo {
    /// The user id (the directory's name).
    pub user_id: u64,
    /// Whether the folder exists yet (it is made at the first write).
    pub exists: bool,
    /// The gallery's piece count as a read of the document gives it (`None` if unreadable or
    /// absent).
    pub piece_count: Option<u64>,
    /// Pieces actually in the gallery.
    pub pieces: u64,
    /// Notes in workspace.json.
    pub notes: usize,
    /// Bytes of every file in the directory.
    pub size_bytes: u64,
    /// Latest modification of any file in it.
    pub modified: Option<Timestamp>,
    /// Why the folder or workspace.json could not be read, if it could not.
    pub error: Option<String>,
}

impl WorkspaceInfo {
    fn empty(user_id: u64) -> WorkspaceInfo {
        WorkspaceInfo {
            user_id,
            exists: false,
            piece_count: None,
            pieces: 0,
            notes: 0,
            size_bytes: 0,
            modified: None,
            error: None,
        }
    }
}

/// The per-user folders under one root.
///
/// A handle keeps some files open between calls (the lock files of recently used folders),
/// so, like the database, it is not to be used in a child process forked without exec.
/// It serves the folders of the root it opened: once that root is moved, removed or
/// replaced at its path, every call that reads or changes folders fails with
/// `Error::NotReady` until it is back (see [`Workspaces::open`]); a handle opened
/// read-only on a data dir without a workspaces folder has no root to keep.
#[derive(Clone)]
pub struct Workspaces {
    root: PathBuf,
    options: WorkspaceOptions,
    pub(super) owners: Owners,
    // Owner markers this handle has read, each with the file version it read: while the
    // marker is still that version, it need not be read again.
    markers: Memory<u64, (FileVersion, FolderOwner)>,
    // Directories whose crash leftovers (temp files) this handle has removed.
    tidied: Memory<PathBuf, ()>,
    // Small documents this handle has read or written, each with the version of its
    // `workspace.json`: while the file is still that version, it need not be read again.
    docs: DocMemory,
    // Lock files this handle opened and released, to lock again without opening them.
    lock_files: LockFiles,
    // Set when the filesystem refused a rename without replacement: no remembered numbers.
    no_replace_unsupported: Arc<AtomicBool>,
    // Opened with the data dir read-only: every change is refused.
    read_only: bool,
    // Where the users' folders are when not in `root/users` (a trash entry checked before a
    // restore puts its folders back).
    users_at: Option<PathBuf>,
    // Dates removed pieces, so they age in the trash as the folders there do.
    clock: Arc<dyn crate::clock::Clock>,
    // The identity (device, inode) of the root as opened: a root moved away, removed or
    // replaced under the running process is refused ([`Workspaces::in_place`]). `None` when
    // there was no root to open (a data dir opened only to read, without folders).
    root_id: Option<(u64, u64)>,
    // The root, held open for the handle's life: a folder made at its path after it was
    // removed never gets its inode number, so the identity above cannot be matched by a
    // successor.
    _root_held: Option<Arc<fs::File>>,
}

/// The identity of one version of a file: an atomic replacement makes a new inode, and its
/// times and size come with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileVersion {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileVersion {
    /// The version of the file at `path` (not following a symlink); `None` when absent.
    pub(super) fn of(path: &Path) -> Option<FileVersion> {
        Some(FileVersion::from_meta(&fs::symlink_metadata(path).ok()?))
    }

    /// The version `m` describes.
    fn from_meta(m: &fs::Metadata) -> FileVersion {
        FileVersion {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Entries a handle's memory keeps at most; past it the memory starts again (which only
/// costs the checks it spared).
const MAX_HINTS: usize = 4096;

/// One of a handle's memories, shared by its clones and bounded by [`MAX_HINTS`].
struct Memory<K, V>(Arc<Mutex<HashMap<K, V>>>);

impl<K, V> Clone for Memory<K, V> {
    fn clone(&self) -> Self {
        Memory(Arc::clone(&self.0))
    }
}

impl<K, V> Default for Memory<K, V> {
    fn default() -> Self {
        Memory(Arc::default())
    }
}

impl<K: Eq + Hash, V: Copy> Memory<K, V> {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &K) -> Option<V> {
        self.map().get(key).copied()
    }

    /// Remembers `value` for `key`; returns what was remembered before.
    fn insert(&self, key: K, value: V) -> Option<V> {
        let mut map = self.map();
        if map.len() >= MAX_HINTS {
            map.clear();
        }
        map.insert(key, value)
    }
}

/// The most JSON (as written) a handle's memory of documents holds, a few thousand usual
/// documents, and the largest document it keeps.
const DOCS_KEPT_BYTES: usize = 4 * 1024 * 1024;
const MAX_DOC_KEPT: usize = 64 * 1024;

/// Documents a handle has read or written, by path, each with the version of the file it
/// came from and its size as written; shared by the handle's clones and bounded by
/// [`DOCS_KEPT_BYTES`] and [`MAX_HINTS`] (past either it starts again).
#[derive(Clone, Default)]
struct DocMemory(Arc<Mutex<DocMap>>);

#[derive(Default)]
struct DocMap {
    docs: HashMap<PathBuf, (FileVersion, Arc<WorkspaceDoc>, usize)>,
    bytes: usize,
}

impl DocMemory {
    fn map(&self) -> std::sync::MutexGuard<'_, DocMap> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The document kept for `path`, if it is the one of version `version`.
    fn get(&self, path: &Path, version: FileVersion) -> Option<Arc<WorkspaceDoc>> {
        self.map()
            .docs
            .get(path)
            .filter(|(v, _, _)| *v == version)
            .map(|(_, doc, _)| Arc::clone(doc))
    }

    /// Keeps `doc`, `len` bytes as written, as the document of version `version` at `path`.
    fn insert(&self, path: PathBuf, version: FileVersion, doc: WorkspaceDoc, len: usize) {
        let doc = Arc::new(doc);
        let mut m = self.map();
        m.remove(&path);
        if m.bytes.saturating_add(len) > DOCS_KEPT_BYTES || m.docs.len() >= MAX_HINTS {
            m.docs.clear();
            m.bytes = 0;
        }
        m.bytes += len;
        m.docs.insert(path, (version, doc, len));
    }

    fn remove(&self, path: &Path) {
        self.map().remove(path);
    }
}

impl DocMap {
    /// Drops the document kept for `path`, and its bytes from the count.
    fn remove(&mut self, path: &Path) {
        if let Some((_, _, old)) = self.docs.remove(path) {
            self.bytes = self.bytes.saturating_sub(old);
        }
    }
}

/// Lock files a handle keeps open after their lock is released: at most this many, past it
/// it starts again (a file descriptor each).
const MAX_LOCK_FILES: usize = 64;

/// Lock files this handle opened and has released, by user, each with the device and inode
/// its path showed, so the next lock of the folder needs no open, `stat` and close; shared by
/// the handle's clones and bounded by [`MAX_LOCK_FILES`]. A file is taken out while it is
/// locked: locks on one file description do not exclude each other, so no two locks may share
/// one.
#[derive(Clone, Default)]
struct LockFiles(Arc<Mutex<KeptLockFiles>>);

/// By user: an open lock file and the device and inode its path showed.
type KeptLockFiles = HashMap<u64, (fs::File, (u64, u64))>;

impl LockFiles {
    fn map(&self) -> std::sync::MutexGuard<'_, KeptLockFiles> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes out the file kept for `user`'s folder, if any.
    fn take(&self, user: u64) -> Option<(fs::File, (u64, u64))> {
        self.map().remove(&user)
    }

    /// Keeps `file`, unlocked, as the lock file of `user`'s folder, of identity `id`.
    fn keep(&self, user: u64, file: fs::File, id: (u64, u64)) {
        let mut map = self.map();
        // The files let go are closed after the guard, not while others wait for it.
        let old = if map.len() >= MAX_LOCK_FILES && !map.contains_key(&user) {
            std::mem::take(&mut *map)
        } else {
            HashMap::new()
        };
        map.insert(user, (file, id));
        drop(map);
        drop(old);
    }

    /// Closes what is kept for `user` (or for everyone).
    fn forget(&self, user: Option<u64>) {
        match user {
            Some(u) => {
                self.map().remove(&u);
            }
            None => self.map().clear(),
        }
    }
}

/// One entry of the workspace trash ([`Workspaces::trash`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrashEntry {
    /// Its name in the trash: `<user>-<time>[-n]`, `reset-<time>[-n]`, or another; for a
    /// removed piece, its path under the workspaces folder (`users/<user>/.trash/piece_…`).
    pub name: String,
    /// Where it is.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub path: PathBuf,
    /// The user whose folder it was, when its name says (`<user>-<time>`), or whose removed
    /// piece it is.
    pub user: Option<u64>,
    /// The number of the removed piece it is (`None` for a folder, or a copy `check
    /// --repair` kept in a user's folder).
    pub piece: Option<u64>,
    /// When it was moved there: the time in its name, or else its modification time (for a
    /// removed piece, the time of its removal).
    pub moved_at: Option<Timestamp>,
}

impl TrashEntry {
    /// Whether it is in a user's folder (`users/<user>/.trash/…`: a removed piece, or a copy
    /// `check --repair` kept), not a folder in the trash.
    pub fn in_user_folder(&self) -> bool {
        self.name.starts_with("users/")
    }

    fn read(path: &Path) -> TrashEntry {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut parts = name.splitn(3, '-');
        let (first, second) = (parts.next().unwrap_or(""), parts.next());
        let time = second.and_then(|t| t.parse::<i64>().ok());
        let user = time.and(first.parse::<u64>().ok());
        let moved_at = time.map(Timestamp).or_else(|| {
            fs::symlink_metadata(path)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(Timestamp::of_system_time)
        });
        TrashEntry {
            name,
            path: path.to_path_buf(),
            user,
            piece: None,
            moved_at,
        }
    }
}

/// What [`Workspaces::copy_folder_timed`] calls for each file: its path under `users/`, its
/// bytes and its modification time.
pub type TimedCopy<'a> = dyn FnMut(&Path, &[u8], std::time::SystemTime) -> Result<()> + 'a;

/// What [`Workspaces::copy_folder_streamed`] calls for each file: its path under `users/`,
/// a reader of its bytes, their count, and its modification time.
pub(crate) type StreamedCopy<'a> =
    dyn FnMut(&Path, &mut dyn Read, u64, std::time::SystemTime) -> Result<()> + 'a;

impl std::fmt::Debug for Workspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspaces")
            .field("root", &self.root)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// An open, locked folder whose owner was checked. Dropping it releases the lock and keeps
/// the lock file open for the handle's next lock of the folder.
pub(super) struct Folder {
    pub(super) dir: PathBuf,
    // Always there until dropped.
    lock: Option<DirLock>,
    user: u64,
    // The lock file's device and inode, as its path showed them.
    id: (u64, u64),
    kept: LockFiles,
    // Dropped after the lock is released (fields drop in order, after `drop` below).
    _held: Held,
}

impl Drop for Folder {
    fn drop(&mut self) {
        if let Some(file) = self.lock.take().and_then(DirLock::unlocked) {
            self.kept.keep(self.user, file, self.id);
        }
    }
}

impl Workspaces {
    /// Opens (creating, mode 0700) the root `root`; `owners` says who owns each user id.
    /// The handle keeps the root's identity (device and inode): a root moved away, removed
    /// or replaced (a new data dir made at its path) while the handle lives is refused
    /// rather than read as a root without folders or written into.
    ///
    /// # Errors
    /// `Io` when the root cannot be created.
    pub fn open(
        root: impl AsRef<Path>,
        options: WorkspaceOptions,
        owners: Owners,
    ) -> Result<Workspaces> {
        // Absolute, so that a change of the working directory is not taken for a move.
        let root =
            std::path::absolute(root.as_ref()).unwrap_or_else(|_| root.as_ref().to_path_buf());
        fsutil::create_private_dir(&root.join("users"))?;
        // Folders made before, or copied in, with a loose mode are made private too.
        fsutil::restrict_dir(&root)?;
        fsutil::restrict_dir(&root.join("users"))?;
        let (root_id, _root_held) = hold_root(&root);
        Ok(Workspaces {
            root_id,
            _root_held,
            root,
            options,
            owners,
            markers: Memory::default(),
            tidied: Memory::default(),
            docs: DocMemory::default(),
            lock_files: LockFiles::default(),
            no_replace_unsupported: Arc::default(),
            read_only: false,
            users_at: None,
            clock: Arc::new(crate::clock::SystemClock),
        })
    }

    /// [`Workspaces::open`] without creating anything: for a data dir opened read-only.
    pub(crate) fn open_existing(
        root: impl AsRef<Path>,
        options: WorkspaceOptions,
        owners: Owners,
    ) -> Workspaces {
        let root =
            std::path::absolute(root.as_ref()).unwrap_or_else(|_| root.as_ref().to_path_buf());
        let (root_id, _root_held) = hold_root(&root);
        Workspaces {
            root_id,
            _root_held,
            root,
            options,
            owners,
            markers: Memory::default(),
            tidied: Memory::default(),
            docs: DocMemory::default(),
            lock_files: LockFiles::default(),
            no_replace_unsupported: Arc::default(),
            read_only: true,
            users_at: None,
            clock: Arc::new(crate::clock::SystemClock),
        }
    }

    /// This handle with "now" from `clock` (the store's): removed pieces are dated by it.
    pub(crate) fn with_clock(mut self, clock: Arc<dyn crate::clock::Clock>) -> Workspaces {
        self.clock = clock;
        self
    }

    /// This read-only view with the users' folders in `users` rather than `root/users`: to
    /// check folders kept elsewhere (a trash entry) as if they were in place.
    pub(crate) fn with_users_dir(mut self, users: &Path) -> Workspaces {
        self.users_at = Some(users.to_path_buf());
        // Only to be read: a repair through it would move folders out of `users`.
        self.read_only = true;
        self
    }

    /// Now, from the store's clock.
    pub(super) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Refuses to touch the folders when the root is no longer the directory this handle
    /// opened: the data dir was moved, removed or replaced (another `init` at its path)
    /// while the process ran. Its store file stays open where it went, so logins go on;
    /// but a folder missing at the old path would read as an empty document, and one
    /// written there would land in another store's data dir.
    ///
    /// # Errors
    /// `NotReady` saying so, when the root is not the one opened.
    pub(crate) fn in_place(&self) -> Result<()> {
        let Some(opened) = self.root_id else {
            return Ok(());
        };
        if dir_id(&self.root) == Some(opened) {
            return Ok(());
        }
        Err(Error::NotReady {
            reason: format!(
                "the workspace folders {} were moved, removed or replaced after this process \
                 opened them (with the data dir, say), so no workspace folder is read or \
                 written: a folder missing there would read as empty, and one written there \
                 would land in whatever is at that path now; restart the application on the \
                 data dir where it is now, or put the folders back",
                self.root.display()
            ),
        })
    }

    /// Refuses a change when the data dir was opened read-only, or moved away under this
    /// process ([`Workspaces::in_place`]).
    pub(super) fn writable(&self) -> Result<()> {
        self.in_place()?;
        self.refuse_read_only()
    }

    /// Refuses a change when the data dir was opened read-only.
    fn refuse_read_only(&self) -> Result<()> {
        if self.read_only {
            // Said as the store's refusals say it when the file system is the cause.
            let what = if fsutil::on_read_only_fs(&self.root) {
                format!(
                    "{} is on a read-only file system, so workspace folders cannot be changed; \
                     remount it read-write",
                    self.root.display()
                )
            } else {
                format!(
                    "the data dir of {} is open read-only, so workspace folders cannot be \
                     changed; open it for writing",
                    self.root.display()
                )
            };
            return Err(Error::ReadOnly { what });
        }
        Ok(())
    }

    /// Refuses to lock the folder `dir` of `user` (`exclusive`ly or not) on a thread that
    /// holds its lock already where either lock is exclusive (a workspace call inside an
    /// update's closure), which would wait for itself forever. Two shared locks go together.
    fn not_held(dir: &Path, user: u64, exclusive: bool) -> Result<()> {
        if crate::store::lock_held_here(dir, exclusive) {
            return Err(Error::invalid(
                "workspace",
                format!(
                    "a workspace call for user {user} cannot run inside another for the same \
                     user (in an update's closure, say), which would wait for itself: change the \
                     document the closure is given, or make the call after it"
                ),
            ));
        }
        Ok(())
    }

    /// Whether the filesystem refused a rename without replacement (then every save lists
    /// its gallery).
    pub(super) fn no_replace_unsupported(&self) -> bool {
        self.no_replace_unsupported.load(Ordering::Relaxed)
    }

    pub(super) fn set_no_replace_unsupported(&self) {
        self.no_replace_unsupported.store(true, Ordering::Relaxed);
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn users_dir(&self) -> PathBuf {
        match &self.users_at {
            Some(users) => users.clone(),
            None => self.root.join("users"),
        }
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.options.max_doc_bytes.unwrap_or(DEFAULT_MAX_DOC_BYTES)
    }

    /// The caps on one user's gallery: pieces, and bytes of them together.
    pub(super) fn gallery_caps(&self) -> (u64, u64) {
        (
            self.options.max_pieces.unwrap_or(DEFAULT_MAX_PIECES),
            self.options
                .max_gallery_bytes
                .unwrap_or(DEFAULT_MAX_GALLERY_BYTES),
        )
    }

    /// The directory of `user`. Built from the number only.
    pub fn dir(&self, user: u64) -> PathBuf {
        self.users_dir().join(user.to_string())
    }

    fn owner_of(&self, user: u64) -> Result<FolderOwner> {
        (self.owners)(user)?.ok_or_else(|| Error::not_found(format!("user {user}")))
    }

    /// Builds a folder aside (marker, gallery, lock file, all synced) and renames it into
    /// place unless one exists; the folder is durable when this returns.
    fn create_folder(&self, user: u64, owner: FolderOwner) -> Result<()> {
        let users = self.users_dir();
        let tmp =
            fsutil::private_temp_dir_in(Some(&users), &format!("a folder in {}", users.display()))?;
        let staged = tmp.path();
        fsutil::create_private_dir(&staged.join(GALLERY_DIR))?;
        fsutil::write_private(&staged.join(OWNER_FILE), owner.marker().as_bytes())?;
        fsutil::write_private(&staged.join(LOCK_FILE), b"")?;
        fsutil::sync_this_dir(staged)?;
        let dir = self.dir(user);
        if fsutil::rename_no_replace(staged, &dir)? {
            // Renamed away: nothing left for the TempDir to remove.
            let _ = tmp.keep();
            fsutil::sync_this_dir(&users)?;
        }
        Ok(())
    }

    /// Opens and locks the folder of `user` after checking it is theirs. `None` when it does
    /// not exist and `create` is off.
    pub(super) fn folder(&self, user: u64, kind: LockKind, create: bool) -> Result<Option<Folder>> {
        self.in_place()?;
        let dir = self.dir(user);
        Self::not_held(&dir, user, kind == LockKind::Exclusive || create)?;
        if kind == LockKind::Exclusive || create {
            self.refuse_read_only()?;
        }
        // The owner this call made the folder for, when it made it.
        let mut made_for = None;
        for _ in 0..8 {
            if fsutil::real_dir(&dir)?.is_none() {
                let owner = self.owner_of(user)?;
                if !create {
                    return Ok(None);
                }
                self.create_folder(user, owner)?;
                made_for = Some(owner);
            }
            let lock_path = dir.join(LOCK_FILE);
            let notice = self.options.on_wait.as_ref();
            // The lock file this handle kept open, if any, is locked without opening it; the
            // check below that the path still names it finds one moved away or replaced.
            let kept = self.lock_files.take(user);
            let known = kept.as_ref().map(|(_, id)| *id);
            let locked = match kept {
                Some((file, _)) => lock::relock(file, &lock_path, kind, notice),
                None => lock::lock(&lock_path, kind, notice),
            };
            let lock = match locked {
                Ok(l) => l,
                // Moved away between the check and the lock: look again.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            // The identity kept for next time is the path's, as `stat` gives it: a kept file
            // is compared with the same source (some filesystems, overlayfs on older kernels,
            // give an open file another device number than its path).
            let at_path = fs::symlink_metadata(&lock_path)
                .ok()
                .map(|m| (m.dev(), m.ino()));
            let same = match (known, at_path) {
                (Some(id), Some(path)) => id == path,
                (None, Some((_, ino))) => lock.inode() == Some(ino),
                (_, None) => false,
            };
            let Some(id) = at_path.filter(|_| same) else {
                continue;
            };
            // Whose the folder must be is read under the lock, once: a deletion or restore
            // that committed before is seen here, and one that commits later moves the
            // folder only after taking this lock.
            let owner = (self.owners)(user)?;
            if let Some(made) = made_for
                && owner != Some(made)
                && kind == LockKind::Exclusive
            {
                // The user was deleted while we made the folder: it goes where their
                // deletion sent the rest.
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                fsutil::move_to_trash(&dir, &self.trash_dir(), &format!("{user}-{secs}"))?;
                return Err(Error::not_found(format!("user {user}")));
            }
            let owner = owner.ok_or_else(|| Error::not_found(format!("user {user}")))?;
            self.check_marker(user, &dir, owner)?;
            return Ok(Some(Folder {
                _held: Held::new(&dir, kind == LockKind::Exclusive),
                dir,
                lock: Some(lock),
                user,
                id,
                kept: self.lock_files.clone(),
            }));
        }
        Err(Error::Busy {
            what: format!("the folder {} keeps moving", dir.display()),
        })
    }

    /// The owner marker of the folder of `user`, if the folder and its marker exist.
    ///
    /// # Errors
    /// `UnsafePath` for a malformed marker or a symlink.
    pub fn marker(&self, user: u64) -> Result<Option<FolderOwner>> {
        self.in_place()?;
        let dir = self.dir(user);
        if fsutil::real_dir(&dir)?.is_none() {
            return Ok(None);
        }
        Self::read_marker(&dir)
    }

    /// The owner marker of the folder `dir` (`None` without one).
    ///
    /// # Errors
    /// `UnsafePath` for a malformed marker; `Io` when it cannot be read.
    pub(crate) fn read_marker(dir: &Path) -> Result<Option<FolderOwner>> {
        match Self::read_owner(dir)? {
            Marker::Of(owner) => Ok(Some(owner)),
            Marker::Missing => Ok(None),
            Marker::Malformed => Err(malformed_marker(dir)),
        }
    }

    /// What the owner marker of the folder `dir` says (`Missing` without a folder).
    ///
    /// # Errors
    /// `UnsafePath` for a marker that is a symlink or no regular file; `Io` when it cannot
    /// be read.
    pub(crate) fn read_owner(dir: &Path) -> Result<Marker> {
        let path = dir.join(OWNER_FILE);
        // A marker is some fifty bytes: a larger file is no marker, as a garbled one is not.
        let bytes = match fsutil::read_regular(&path, 256) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Marker::Missing),
            Err(Error::InvalidInput { .. }) => return Ok(Marker::Malformed),
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok(FolderOwner::parse(&text).map_or(Marker::Malformed, Marker::Of))
    }

    /// What the owner marker of the folder of `user` says (`Missing` without a folder).
    ///
    /// # Errors
    /// `UnsafePath` for a symlink in place of the folder or the marker; `Io` when either
    /// cannot be read.
    #[cfg(feature = "admin")]
    pub(crate) fn owner_marker(&self, user: u64) -> Result<Marker> {
        self.in_place()?;
        let dir = self.dir(user);
        if fsutil::real_dir(&dir)?.is_none() {
            return Ok(Marker::Missing);
        }
        Self::read_owner(&dir)
    }

    fn check_marker(&self, user: u64, dir: &Path, owner: FolderOwner) -> Result<()> {
        // The version is taken before the read: a marker replaced in between is read anew
        // next time, never taken for the version seen here.
        let version = FileVersion::of(&dir.join(OWNER_FILE));
        if let Some(v) = version
            && self
                .markers
                .get(&user)
                .is_some_and(|(kv, ko)| kv == v && ko == owner)
        {
            return Ok(());
        }
        let unknown = match Self::read_owner(dir)? {
            Marker::Of(m) if m == owner => {
                if let Some(v) = version {
                    self.markers.insert(user, (v, owner));
                }
                return Ok(());
            }
            Marker::Of(_) => {
                return Err(Error::unsafe_path(
                    dir,
                    "the folder belongs to another account (a deleted or restored-away user with the same id); it is never served to this one; run `redkeep check --repair` to move it to the trash",
                ));
            }
            Marker::Missing => "the folder has no owner marker",
            Marker::Malformed => "its owner marker (.owner) is malformed",
        };
        // The user exists (their owner was read under the lock): the folder is theirs or an
        // earlier account's with the same number, which only the operator can tell.
        Err(Error::unsafe_path(
            dir,
            format!(
                "{unknown}, so whose it is is unknown and it is not served; if its files are \
                 user {user}'s, `redkeep workspace bind {user}` gives it to them (`redkeep \
                 check` says more)"
            ),
        ))
    }

    /// Whether the user has a workspace folder (it is made at the first write). False too
    /// when the root was moved away under this handle (see [`Workspaces::open`]), which
    /// the async facade's `exists` reports as `NotReady`.
    pub fn exists(&self, user: u64) -> bool {
        matches!(fsutil::real_dir(&self.dir(user)), Ok(Some(())))
    }

    /// [`Workspaces::exists`], refused when the root was moved away under this handle.
    ///
    /// # Errors
    /// `NotReady` when the root is not the one opened.
    pub(crate) fn present(&self, user: u64) -> Result<bool> {
        self.in_place()?;
        Ok(self.exists(user))
    }

    /// Reads the user's document under a shared lock. A user without a folder yet, or a
    /// folder without workspace.json, reads as an empty document.
    ///
    /// # Errors
    /// `NotFound` for an unknown user; `DamagedFile` for a file that is not a workspace
    /// document, `TooLarge` for one over the size cap, `NotStrictJson` for one holding `NaN`
    /// or `Infinity`, `TooDeep` for one nested deeper than [`super::MAX_DOC_DEPTH`] (each
    /// naming its path); `UnsafePath` for a folder of another account, a
    /// symlink or a non-regular file.
    pub fn read(&self, user: u64) -> Result<WorkspaceDoc> {
        match self.folder(user, LockKind::Shared, false)? {
            Some(f) => {
                let (mut doc, version) = self.read_doc_versioned(&f.dir)?;
                let found = version.map(|_| doc.piece_count);
                doc.piece_count = self.piece_count_in(&f.dir, found)?;
                Ok(doc)
            }
            None => Ok(WorkspaceDoc::default()),
        }
    }

    /// Reads the user's document under a shared lock, with the bytes of its file (`None`
    /// when there is no file, or when its `piece_count` is behind the gallery's), for
    /// exports: an import writes those bytes back.
    ///
    /// # Errors
    /// As [`Workspaces::read`].
    pub(crate) fn read_as_found(&self, user: u64) -> Result<(WorkspaceDoc, Option<Vec<u8>>)> {
        let Some(f) = self.folder(user, LockKind::Shared, false)? else {
            return Ok((WorkspaceDoc::default(), None));
        };
        let path = f.dir.join(WORKSPACE_FILE);
        match self.read_file(&path)? {
            None => Ok((WorkspaceDoc::default(), None)),
            Some(bytes) => {
                let mut doc =
                    WorkspaceDoc::parse(&bytes).map_err(|r| unparsed(&path, &bytes, r))?;
                let count = self.piece_count_in(&f.dir, Some(doc.piece_count))?;
                if count == doc.piece_count {
                    return Ok((doc, Some(bytes)));
                }
                // The file's count has not caught up with the gallery's (a save does not
                // rewrite it): its bytes would carry the old count, so none are given.
                doc.piece_count = count;
                Ok((doc, None))
            }
        }
    }

    pub(super) fn read_doc(&self, dir: &Path) -> Result<WorkspaceDoc> {
        self.read_doc_versioned(dir).map(|(doc, _)| doc)
    }

    /// The document of the folder `dir` (under its lock), with the version of the file it
    /// was read from (`None`: no file). A document this handle read or wrote, while its
    /// file is still that version, comes from memory: the lock keeps redkeep's writers out,
    /// and each of them replaces the file, which makes a new version.
    pub(super) fn read_doc_versioned(
        &self,
        dir: &Path,
    ) -> Result<(WorkspaceDoc, Option<FileVersion>)> {
        let path = dir.join(WORKSPACE_FILE);
        // Taken before the read: a file changed in between is read anew next time, never
        // kept under the older version.
        let version = FileVersion::of(&path);
        if let Some(v) = version
            && let Some(doc) = self.docs.get(&path, v)
        {
            return Ok((WorkspaceDoc::clone(&doc), version));
        }
        match self.read_file(&path)? {
            None => Ok((WorkspaceDoc::default(), None)),
            Some(bytes) => {
                let doc = WorkspaceDoc::parse(&bytes).map_err(|r| unparsed(&path, &bytes, r))?;
                self.keep_doc(path, version, &doc, bytes.len());
                Ok((doc, version))
            }
        }
    }

    /// Keeps `doc`, `len` bytes as stored, as the document of version `version` at `path`.
    fn keep_doc(
        &self,
        path: PathBuf,
        version: Option<FileVersion>,
        doc: &WorkspaceDoc,
        len: usize,
    ) {
        match version {
            Some(v) if len <= MAX_DOC_KEPT => self.docs.insert(path, v, doc.clone(), len),
            _ => self.docs.remove(&path),
        }
    }

    /// Reads a regular file, refusing one over the cap (`TooLarge`: it is not damaged).
    /// `None` if absent.
    pub(super) fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let limit = self.max_bytes();
        fsutil::read_regular(path, limit).map_err(|e| match e {
            Error::InvalidInput { .. } => Error::TooLarge {
                path: path.to_path_buf(),
                // It grew past the limit while read when its size now is within it.
                size: fs::symlink_metadata(path)
                    .map_or(0, |m| m.len())
                    .max(limit.saturating_add(1)),
                limit,
            },
            e => e,
        })
    }

    /// Writes JSON atomically to `path` after checking the cap and that `path` is not a
    /// symlink. Stale temp files in the directory are removed first, the first time this
    /// handle writes there.
    pub(super) fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::invalid("document", e.to_string()))?;
        self.write_bytes(path, &bytes)
    }

    pub(super) fn write_bytes(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        if let Some(dir) = path.parent() {
            self.tidy_once(dir);
        }
        self.write_bytes_tidied(path, bytes)
    }

    /// Removes crash leftovers from `dir` the first time this handle writes there (a crash
    /// of this process ends the handle; leftovers of other processes' crashes are removed by
    /// the next handle to write there, and by `check --repair`). Called under the folder's
    /// exclusive lock, so no write of this handle is under way there.
    pub(super) fn tidy_once(&self, dir: &Path) {
        // Listed outside the memory's lock: other folders' writes need not wait for it.
        if self.tidied.insert(dir.to_path_buf(), ()).is_none() {
            clean_temp_files(dir);
        }
    }

    /// The bytes of `doc` as written, once it is known that they read back as `doc`: no known
    /// field in `other` (it would be written over the field itself), within the size cap,
    /// and nested no deeper than a read takes ([`super::MAX_DOC_DEPTH`]).
    fn doc_bytes(&self, doc: &WorkspaceDoc) -> Result<Vec<u8>> {
        if let Some(name) = ["canvas", "notes", "piece_count"]
            .into_iter()
            .find(|k| doc.other.contains_key(*k))
        {
            return Err(Error::invalid(
                "workspace document",
                format!("`other` holds \"{name}\", a field of the document itself; set the field"),
            ));
        }
        let bytes = serde_json::to_vec_pretty(doc)
            .map_err(|e| Error::invalid("document", e.to_string()))?;
        self.within_cap(&bytes)?;
        super::within_depth("workspace document", &bytes)?;
        Ok(bytes)
    }

    /// Writes back the document of the folder `dir` that [`Workspaces::read_doc`] read under
    /// the exclusive lock still held. That read refused anything there but a regular file
    /// (or nothing), so unlike [`Workspaces::write_json`] this does not look again.
    pub(super) fn write_doc(&self, dir: &Path, doc: &WorkspaceDoc) -> Result<()> {
        let bytes = self.doc_bytes(doc)?;
        self.tidy_once(dir);
        let path = dir.join(WORKSPACE_FILE);
        // A failed write leaves either the old file, whose kept document still holds, or the
        // new one, a new version: the memory needs no change then.
        let written = fsutil::write_private_meta(&path, &bytes)?;
        // Taken from the file now in place, under the exclusive lock still held: the version
        // just written (a rename changes the file's ctime, so this is read after it).
        let version = written.as_ref().map(FileVersion::from_meta);
        self.keep_doc(path, version, doc, bytes.len());
        Ok(())
    }

    pub(super) fn within_cap(&self, bytes: &[u8]) -> Result<()> {
        let cap = self.max_bytes();
        if bytes.len() as u64 > cap {
            return Err(Error::invalid(
                "document",
                format!(
                    "it has {} bytes; the limit for workspace files is {cap} (raise it with \
                     {RAISE_LIMIT})",
                    bytes.len()
                ),
            ));
        }
        Ok(())
    }

    /// [`Workspaces::write_bytes`] into a directory whose crash leftovers were just removed.
    pub(super) fn write_bytes_tidied(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.writable_to(path, bytes)?;
        fsutil::write_private(path, bytes)
    }

    /// Refuses `bytes` over the cap, and a `path` that is there as something else than a
    /// regular file.
    pub(super) fn writable_to(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.within_cap(bytes)?;
        match fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_file() => Err(Error::unsafe_path(
                path,
                "it is not a regular file; redkeep does not write through it",
            )),
            _ => Ok(()),
        }
    }

    /// Makes durable what was written without a sync in the users' folders
    /// ([`Workspaces::put_pieces_unsynced`]): the file system is flushed once, then every
    /// folder is fsynced.
    ///
    /// # Errors
    /// `Io` when a flush fails: what was written may not be on disk.
    #[cfg(feature = "adopt")]
    pub(crate) fn sync_users(&self) -> Result<()> {
        let users = self.users_dir();
        if fsutil::real_dir(&users)?.is_none() {
            // No folder was written.
            return Ok(());
        }
        fsutil::sync_file_system(&users)?;
        fsutil::sync_tree(&users)
    }

    /// Reads the document, lets `f` change it, and writes it back atomically, all under the
    /// user's exclusive lock. Creates the folder at the first write. `piece_count` is the
    /// gallery's to decide: a change `f` makes to it is not kept (as in a merge).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// # let alice = rk.users().create(redkeep::NewUser { email: "alice@example.com".into(), name: None, username: None, password: None, is_admin: false, invite: None })?.user;
    /// rk.workspaces().update(alice.id, |doc| {
    ///     doc.notes = serde_json::json!(["first note"]);
    ///     Ok(())
    /// })?;
    /// assert_eq!(rk.workspaces().read(alice.id)?.notes[0], "first note");
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Workspaces::read`]; `f`'s error (nothing written); `InvalidInput` when the result
    /// is over the cap.
    pub fn update<T>(
        &self,
        user: u64,
        f: impl FnOnce(&mut WorkspaceDoc) -> Result<T>,
    ) -> Result<T> {
        let folder = self.created(user)?;
        let dir = &folder.dir;
        let (mut doc, version) = self.read_doc_versioned(dir)?;
        // The document's count catches up with the gallery's here (a save does not
        // rewrite the document), whatever `f` makes of it.
        let tally = read_tally(dir)?;
        let (count, counted_now) = match (tally, known(dir, tally)?) {
            (Tally::Absent, _) if version.is_some() => (doc.piece_count, None),
            (_, Some(k)) => (k.count, None),
            // No document, or no count to go by: the gallery is counted. A `.pieces`
            // made here would be trusted by saves, so none is made where there was none.
            (tally, None) => {
                let listed = counted(dir)?;
                let fresh = Some(listed.tally())
                    .filter(|fresh| tally != Tally::Absent && *fresh != Tally::Unknown);
                (listed.count, fresh)
            }
        };
        doc.piece_count = count;
        let out = f(&mut doc)?;
        doc.piece_count = count;
        self.write_doc(dir, &doc)?;
        if let Some(tally) = counted_now {
            // Spares the next reads a count of the gallery; when it cannot be written, they
            // count it, which is as right.
            let _ = self.write_tally(dir, tally);
        }
        Ok(out)
    }

    pub(super) fn created(&self, user: u64) -> Result<Folder> {
        self.folder(user, LockKind::Exclusive, true)?
            .ok_or_else(|| Error::Invariant {
                what: format!("the folder of user {user} was not created"),
            })
    }

    /// Entries of the folder of `user` that are not part of its layout (`workspace.json`,
    /// `gallery/piece_NNNNNN.json`, redkeep's own lock, owner marker and temp files): files
    /// an application or an operator put there, and the copies `check --repair` keeps in
    /// `.trash/`. Paths relative to the folder, in name order. A backup keeps the regular
    /// files and folders among them (not symlinks or special files); an export none.
    ///
    /// # Errors
    /// `Io` when the folder cannot be listed.
    pub fn outside_layout(&self, user: u64) -> Result<Vec<PathBuf>> {
        self.in_place()?;
        let dir = self.dir(user);
        let mut out = Vec::new();
        if fsutil::real_dir(&dir)?.is_none() {
            return Ok(out);
        }
        let list = fsutil::entries_sorted;
        for e in list(&dir)? {
            let name = e.file_name();
            let text = name.to_string_lossy();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let own = text == WORKSPACE_FILE
                || text == TALLY_FILE
                || text == LOCK_FILE
                || text == OWNER_FILE
                || text.starts_with(fsutil::TEMP_PREFIX);
            if own {
                continue;
            }
            if text == GALLERY_DIR && is_dir {
                for p in list(&e.path())? {
                    let piece = p.file_name();
                    let piece = piece.to_string_lossy();
                    let kept = p.file_type().is_ok_and(|t| t.is_file())
                        && names::parse_piece_name(&piece).is_some();
                    if !kept && !piece.starts_with(fsutil::TEMP_PREFIX) {
                        out.push(Path::new(GALLERY_DIR).join(&*piece));
                    }
                }
                continue;
            }
            out.push(PathBuf::from(&name));
        }
        Ok(out)
    }

    /// User ids that have a directory, ascending.
    ///
    /// # Errors
    /// `Io` when the folder cannot be listed.
    pub fn user_ids(&self) -> Result<Vec<u64>> {
        self.entries_named_by_id(true)
    }

    /// Ids named by any entry of `users/` (a folder, or a file or symlink in a folder's
    /// place), ascending; none when `users/` does not exist yet.
    ///
    /// # Errors
    /// `Io` when the folder cannot be listed.
    pub(crate) fn taken_ids(&self) -> Result<Vec<u64>> {
        self.in_place()?;
        if !self.users_dir().exists() {
            return Ok(Vec::new());
        }
        let mut ids = self.entries_named_by_id(true)?;
        ids.extend(self.entries_named_by_id(false)?);
        ids.sort_unstable();
        Ok(ids)
    }

    /// Ids named by the entries of `users/` that are directories (`dirs`), or that are not
    /// (a symlink or a file in a folder's place), ascending.
    pub(crate) fn entries_named_by_id(&self, dirs: bool) -> Result<Vec<u64>> {
        let Some(entries) = self.users_entries()? else {
            return Ok(Vec::new());
        };
        let mut ids: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) == dirs)
            .filter_map(|e| e.file_name().to_str().and_then(names::parse_id))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The entries of `users/`; `None` when it is not there (not made yet: a data dir
    /// opened only to read makes nothing) or is not a folder.
    fn users_entries(&self) -> Result<Option<fs::ReadDir>> {
        self.in_place()?;
        let users = self.users_dir();
        match fs::read_dir(&users) {
            Ok(entries) => Ok(Some(entries)),
            // (A file in its place holds no user's folder either; `check` and every write
            // refuse it.)
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::io(format!("listing {}", users.display()), e)),
        }
    }

    /// Names of the entries of `users/` that no user id names (an operator's folder, say;
    /// redkeep's own temp entries are not among them), in name order. Nothing serves them.
    pub(crate) fn entries_not_named_by_id(&self) -> Result<Vec<std::ffi::OsString>> {
        let Some(entries) = self.users_entries()? else {
            return Ok(Vec::new());
        };
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| {
                let text = n.to_string_lossy();
                names::parse_id(&text).is_none() && !text.starts_with(fsutil::TEMP_PREFIX)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// A summary of one user's folder (zeros when it does not exist yet).
    ///
    /// # Errors
    /// `NotFound` for an unknown user; `UnsafePath` for a folder of another account.
    pub fn info(&self, user: u64) -> Result<WorkspaceInfo> {
        let Some(f) = self.folder(user, LockKind::Shared, false)? else {
            return Ok(WorkspaceInfo::empty(user));
        };
        Ok(self.summary(user, &f.dir))
    }

    fn summary(&self, user: u64, dir: &Path) -> WorkspaceInfo {
        let (size_bytes, modified) = dir_usage(dir);
        let pieces = names::piece_numbers(dir).map_or(0, |p| p.len() as u64);
        let doc = self.read_doc_versioned(dir).and_then(|(d, version)| {
            let count = self.piece_count_in(dir, version.map(|_| d.piece_count))?;
            Ok((d, count))
        });
        let (piece_count, notes, error) = match doc {
            Ok((d, count)) => (Some(count), d.note_count(), None),
            Err(e) => (None, 0, Some(e.to_string())),
        };
        WorkspaceInfo {
            user_id: user,
            exists: true,
            piece_count,
            pieces,
            notes,
            size_bytes,
            modified,
            error,
        }
    }

    /// Every user folder present, with its counts, size and last change. A folder that
    /// cannot be served (no user, another owner) is listed with the reason.
    ///
    /// # Errors
    /// `Io` when the folder cannot be listed.
    pub fn list(&self) -> Result<Vec<WorkspaceInfo>> {
        let mut out = Vec::new();
        for id in self.user_ids()? {
            out.push(match self.info(id) {
                Ok(i) => i,
                Err(e) => {
                    let mut i = WorkspaceInfo::empty(id);
                    i.exists = true;
                    i.error = Some(e.to_string());
                    i
                }
            });
        }
        Ok(out)
    }

    /// Calls `f` with the path (relative to the `users` folder) and the bytes of every
    /// regular file in the folder of `user`, under the folder's shared lock, so no file is
    /// seen half-written. The lock file and temp files are skipped; symlinks are not followed.
    /// Works on any folder present, whoever owns it (for backups).
    ///
    /// # Errors
    /// `Io` when a file cannot be read; `f`'s error.
    pub fn copy_folder(
        &self,
        user: u64,
        f: &mut dyn FnMut(&Path, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.copy_folder_timed(user, &mut |rel, bytes, _| f(rel, bytes))
            .map(drop)
    }

    /// [`Workspaces::copy_folder`], giving each file's modification time too (a copy keeps
    /// it: it is when a piece was saved, which lists show). Returns the entries it did not
    /// copy: symlinks (never followed) and special files (pipes, sockets, devices), relative
    /// to the users' folder, in name order, so that a backup does not claim what it did not
    /// keep.
    ///
    /// # Errors
    /// As [`Workspaces::copy_folder`].
    pub fn copy_folder_timed(&self, user: u64, f: &mut TimedCopy<'_>) -> Result<Vec<PathBuf>> {
        self.copy_folder_streamed(user, &mut |rel, file, len, modified| {
            // Whole in memory, as this call gives it: up to 1 GiB a file.
            let cap = 1 << 30;
            if len > cap {
                return Err(Error::invalid(
                    "file",
                    format!(
                        "users/{} is larger than the {cap}-byte limit",
                        rel.display()
                    ),
                ));
            }
            let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            file.read_to_end(&mut bytes)
                .map_err(|e| Error::io(format!("reading users/{}", rel.display()), e))?;
            f(rel, &bytes, modified)
        })
    }

    /// [`Workspaces::copy_folder_timed`], handing each file to `f` as a reader of its bytes
    /// with their count, so that a file of any size is copied without being held in memory
    /// (backups, moves). The reader fails if the file ends before that count (it shrank
    /// while being copied).
    ///
    /// # Errors
    /// As [`Workspaces::copy_folder`].
    pub(crate) fn copy_folder_streamed(
        &self,
        user: u64,
        f: &mut StreamedCopy<'_>,
    ) -> Result<Vec<PathBuf>> {
        self.in_place()?;
        let dir = self.dir(user);
        let mut uncopied = Vec::new();
        if fsutil::real_dir(&dir)?.is_none() {
            return Ok(uncopied);
        }
        Self::not_held(&dir, user, false)?;
        let base = self.users_dir();
        let lock_path = dir.join(LOCK_FILE);
        let _lock = match lock::lock(&lock_path, LockKind::Shared, self.options.on_wait.as_ref()) {
            Ok(lock) => Some(lock),
            // A lock file that is no regular file (a symlink, a directory) cannot be locked
            // by anyone, so no redkeep writer works in the folder: its files are copied as
            // they are, rather than left out of a backup or a move, and the odd entry is
            // named among those not kept (a copy makes a new lock file).
            Err(Error::UnsafePath { .. }) if lock::odd_lock(&lock_path).is_some() => {
                uncopied.push(lock_path.strip_prefix(&base).unwrap_or(&lock_path).into());
                None
            }
            Err(e) => return Err(e),
        };
        let _held = Held::new(&dir, false);
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for e in fsutil::entries_sorted(&d)? {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name == LOCK_FILE || name.starts_with(fsutil::TEMP_PREFIX) {
                    continue;
                }
                let path = e.path();
                let Ok(t) = e.file_type() else { continue };
                let rel = path.strip_prefix(&base).unwrap_or(&path);
                if t.is_dir() {
                    stack.push(path);
                } else if !t.is_file() {
                    uncopied.push(rel.to_path_buf());
                } else if let Some((file, len)) = fsutil::open_regular_sized(&path)? {
                    let modified = file
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or_else(|_| std::time::SystemTime::now());
                    f(rel, &mut fsutil::Exactly::new(file, len), len, modified)?;
                }
            }
        }
        uncopied.sort();
        Ok(uncopied)
    }

    /// Replaces the document of `user` (creating the folder), for imports.
    ///
    /// # Errors
    /// As [`Workspaces::update`].
    pub fn put_doc(&self, user: u64, doc: &WorkspaceDoc) -> Result<()> {
        // Checked before anything is made: a document that would not read back (too deep,
        // a known field in `other`) is refused, as an update's is.
        let bytes = self.doc_bytes(doc)?;
        let folder = self.created(user)?;
        self.write_bytes(&folder.dir.join(WORKSPACE_FILE), &bytes)
    }

    /// Replaces the document of `user` (creating the folder) with `bytes` as they are, for
    /// imports of an export that carries the file's own bytes (its spacing, its order).
    ///
    /// # Errors
    /// `InvalidInput` when `bytes` are not a workspace document or hold a field of the
    /// document in a form it does not read; `TooLarge`, `TooDeep` as [`Workspaces::update`];
    /// otherwise as [`Workspaces::update`].
    pub(crate) fn put_doc_as_found(&self, user: u64, bytes: &[u8]) -> Result<()> {
        WorkspaceDoc::parse(bytes).map_err(|r| Error::invalid("workspace document", r))?;
        self.within_cap(bytes)?;
        super::within_depth("workspace document", bytes)?;
        let folder = self.created(user)?;
        self.write_bytes(&folder.dir.join(WORKSPACE_FILE), bytes)
    }

    pub(crate) fn trash_dir(&self) -> PathBuf {
        self.root.join("trash")
    }

    /// What the trash holds: folders of deleted users (`<user>-<time>`), the folders a
    /// reset or restore replaced (`reset-<time>`), anything else moved aside, and what is in
    /// each user's `.trash/` (removed pieces, and the copies `check --repair` kept there);
    /// oldest first. (An empty `{}` there only keeps a removed number from being given
    /// again: it holds nothing and is not listed.)
    ///
    /// # Errors
    /// `Io` when the trash cannot be listed.
    pub fn trash(&self) -> Result<Vec<TrashEntry>> {
        self.in_place()?;
        let mut out = self.removed_pieces()?;
        let dir = self.trash_dir();
        // A trash that is a symlink would list (and purge) another folder.
        if fsutil::real_dir(&dir)?.is_some() {
            match fs::read_dir(&dir) {
                Ok(e) => out.extend(e.flatten().map(|e| TrashEntry::read(&e.path()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
            }
        }
        out.sort_by(|a, b| (a.moved_at, &a.name).cmp(&(b.moved_at, &b.name)));
        Ok(out)
    }

    /// What the users' folders' `.trash/` hold (a `.trash` that is no real folder is left to
    /// `check`): removed pieces (regular files), without the `numbers_used_up_to_<n>` markers
    /// and the `{}` of earlier versions that only keep numbers, and
    /// the copies `check --repair` kept there (a damaged `workspace.json`, a gallery or a lock
    /// file that was no real one), dated by the time in their name. An entry with a piece's
    /// name that is no regular file is left out: it keeps a number from being given again.
    fn removed_pieces(&self) -> Result<Vec<TrashEntry>> {
        let mut out = Vec::new();
        for user in self.user_ids()? {
            self.removed_pieces_of(user, &mut out)?;
        }
        Ok(out)
    }

    /// [`Workspaces::removed_pieces`] of one user, added to `out`.
    fn removed_pieces_of(&self, user: u64, out: &mut Vec<TrashEntry>) -> Result<()> {
        let trash = self.dir(user).join(names::PIECE_TRASH);
        if !matches!(fsutil::real_dir(&trash), Ok(Some(()))) {
            return Ok(());
        }
        let entries = match fs::read_dir(&trash) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("listing {}", trash.display()), e)),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Temp files of a write cut short are no entries: writers tidy them.
            if name.starts_with(fsutil::TEMP_PREFIX) {
                continue;
            }
            let path = e.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            // It keeps numbers from being given again; it is no entry of its own.
            if names::kept_number(&name).is_some() {
                continue;
            }
            let piece = names::trashed_number(&name);
            if piece.is_some() && (!meta.is_file() || is_number_keeper(&path, &meta)) {
                continue;
            }
            let modified = || meta.modified().ok().and_then(Timestamp::of_system_time);
            out.push(TrashEntry {
                name: format!("users/{user}/{}/{name}", names::PIECE_TRASH),
                user: Some(user),
                piece,
                moved_at: piece
                    .is_none()
                    .then(|| repair_copy_time(&name))
                    .flatten()
                    .or_else(modified),
                path,
            });
        }
        Ok(())
    }

    /// Keeps the removed pieces in the `.trash/` of `user` within the gallery's caps
    /// ([`WorkspaceOptions::max_pieces`](super::WorkspaceOptions::max_pieces) pieces and
    /// [`max_gallery_bytes`](super::WorkspaceOptions::max_gallery_bytes) together), deleting
    /// the oldest removed for good: else saving and removing in turn would fill the disk
    /// past the caps. Their numbers are never given again. Called with the folder's
    /// exclusive lock held, after a removal; best effort (a piece that cannot be deleted is
    /// logged and left, and the removal stands).
    pub(super) fn bound_removed_pieces(&self, user: u64) {
        let (max_pieces, max_bytes) = self.gallery_caps();
        let mut removed = Vec::new();
        if let Err(e) = self.removed_pieces_of(user, &mut removed) {
            tracing::warn!(user, error = %e, "could not list the removed pieces to keep them within the caps");
            return;
        }
        let mut removed: Vec<(TrashEntry, u64)> = removed
            .into_iter()
            .filter(|e| e.piece.is_some())
            .map(|e| {
                let size = fs::symlink_metadata(&e.path).map(|m| m.len()).unwrap_or(0);
                (e, size)
            })
            .collect();
        // The oldest first (by the time of removal, then by number).
        removed.sort_by_key(|(e, _)| (e.moved_at, e.piece));
        let mut count = removed.len() as u64;
        let mut bytes: u64 = removed.iter().map(|(_, size)| size).sum();
        for (entry, size) in removed {
            if count <= max_pieces && bytes <= max_bytes {
                break;
            }
            let Some(n) = entry.piece else { continue };
            match self.purge_piece(user, n, &entry.path) {
                Ok(()) => {
                    count -= 1;
                    bytes = bytes.saturating_sub(size);
                }
                Err(e) => {
                    tracing::warn!(user, piece = n, error = %e, "could not delete a removed piece past the caps");
                    return;
                }
            }
        }
    }

    /// Checks that `entry` is an entry of this trash that holds users' workspace folders
    /// (`reset-<time>`, where a reset or a restore put the folders it replaced), so that a
    /// restore can put it back in place of the folders; returns its real path. `entry` is
    /// a path, or a bare name as [`Workspaces::trash`] lists it.
    ///
    /// # Errors
    /// `InvalidInput` when it is missing, a symlink, not directly inside this trash, not
    /// named `reset-…`, one user's folder, or holds folders that are no user's (files and
    /// `.`-entries are taken along); `ReadOnly` for a read-only data dir; `Io` when it cannot
    /// be read.
    pub fn trash_entry_of_folders(&self, entry: &Path) -> Result<PathBuf> {
        self.writable()?;
        // A bare name, as `redkeep workspace trash` lists it, is taken inside the trash.
        let named = self.trash_dir().join(entry);
        let bare = matches!(
            entry.components().collect::<Vec<_>>()[..],
            [std::path::Component::Normal(_)]
        );
        let entry = if bare && fs::symlink_metadata(&named).is_ok() {
            named.as_path()
        } else {
            entry
        };
        let bad = |why: String| {
            Error::invalid(
                "folders",
                format!(
                    "{} {why}; give a `reset-…` entry of this data dir's workspace trash \
                     (`redkeep workspace trash` lists them)",
                    entry.display()
                ),
            )
        };
        let meta = match fs::symlink_metadata(entry) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad("does not exist".into()));
            }
            Err(e) => return Err(Error::io(format!("reading {}", entry.display()), e)),
        };
        if !meta.is_dir() {
            return Err(bad("is not a folder".into()));
        }
        let trash = self.trash_dir();
        // A trash that is a symlink is no trash of this data dir.
        let trash_is_real = fsutil::real_dir(&trash).is_ok_and(|d| d.is_some());
        let inside = match (fs::canonicalize(entry), fs::canonicalize(&trash)) {
            (Ok(real), Ok(real_trash)) if trash_is_real => {
                (real.parent() == Some(real_trash.as_path())).then_some(real)
            }
            _ => None,
        };
        let Some(real) = inside else {
            return Err(bad(format!("is not an entry of {}", trash.display())));
        };
        let one_users = [WORKSPACE_FILE, GALLERY_DIR, OWNER_FILE, LOCK_FILE]
            .iter()
            .any(|f| fs::symlink_metadata(real.join(f)).is_ok());
        if one_users {
            return Err(bad(
                "is one user's folder (a deleted user's, `<user>-<time>`), not the folders \
                 of every user; copy its files back by hand"
                    .into(),
            ));
        }
        // Only what a restore or a reset put there holds the folders of every user.
        let reset = real
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("reset-"));
        if !reset {
            return Err(bad(
                "is not one a restore or a reset made (those are named `reset-<time>`)".into(),
            ));
        }
        // What else it holds (an operator's notes, a folder not named for a user) went there
        // with the rest, from the folder it goes back to: it goes back too.
        Ok(real)
    }

    /// Moves the folders of `users` (those that exist) into one new trash entry
    /// `reset-<time>`, as a reset moves every folder: what finishing an interrupted reset
    /// does with the folders whose accounts it emptied, leaving those of users made since.
    /// The entry is named for `at` (the reset's time, as its copy of the store is). Returns
    /// the entry, or `None` when none of them has a folder.
    ///
    /// # Errors
    /// `ReadOnly` for a read-only data dir; `InvalidInput` inside a call for one of them;
    /// `Io` when a folder cannot be moved (those before it are in the entry).
    pub(crate) fn trash_together(&self, users: &[u64], at: &str) -> Result<Option<PathBuf>> {
        self.writable()?;
        let present: Vec<u64> = users
            .iter()
            .copied()
            .filter(|&u| matches!(fsutil::real_dir(&self.dir(u)), Ok(Some(()))))
            .collect();
        if present.is_empty() {
            return Ok(None);
        }
        let trash = self.trash_dir();
        fsutil::create_private_dir(&trash)?;
        fsutil::real_dir(&trash)?;
        // The entry is named first: a folder moved into it stays there whatever fails next.
        let empty = fsutil::private_temp_dir_in(Some(&trash), "a trash entry")?.keep();
        let entry = fsutil::move_to_trash(&empty, &trash, &format!("reset-{at}"))?;
        for &user in &present {
            let dir = self.dir(user);
            Self::not_held(&dir, user, true)?;
            self.lock_files.forget(Some(user));
            let _lock = lock::lock(&dir.join(LOCK_FILE), LockKind::Exclusive, None)?;
            fs::rename(&dir, entry.join(user.to_string()))
                .map_err(|e| Error::io(format!("moving {}", dir.display()), e))?;
        }
        fsutil::sync_this_dir(&self.users_dir())?;
        fsutil::sync_this_dir(&entry)?;
        Ok(Some(entry))
    }

    /// Refuses, before a restore or a reset changes the store, a folder layout in which
    /// [`Workspaces::trash_all`] would fail afterwards: a read-only data dir, a trash or a
    /// users' folder that is a symlink or a file. Makes the trash folder if it is missing.
    ///
    /// # Errors
    /// `ReadOnly` for a read-only data dir; `UnsafePath` for a symlink or a file where one of
    /// those folders belongs; `Io` when the trash cannot be made.
    pub(crate) fn ready_to_trash_all(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        self.writable()?;
        let users = self.users_dir();
        fsutil::real_dir(&users)?;
        let trash = self.trash_dir();
        // `users/` moves into the trash and is made again: the workspaces folder, `users/`
        // itself and the trash must be changeable.
        fsutil::may_change(&self.root)?;
        fsutil::may_change(&users)?;
        if fsutil::real_dir(&trash)?.is_none() {
            fsutil::create_private_dir(&trash)?;
        }
        fsutil::may_change(&trash)?;
        // The folders move by renaming, which cannot cross file systems.
        let device = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
        let from = device(&users).or_else(|| device(&self.root));
        if let (Some(from), Some(to)) = (from, device(&trash))
            && from != to
        {
            return Err(Error::invalid(
                "trash",
                format!(
                    "{} is on another file system than {}, so the folders cannot be moved \
                     there; make the trash a folder on the same file system",
                    trash.display(),
                    users.display()
                ),
            ));
        }
        Ok(())
    }

    /// Refuses, before a restore changes the store, users' folders in `staged` (unpacked from
    /// a backup, or a trash entry) that could not go into place by a rename: on another file
    /// system than `users/` (or the workspaces folder, without one).
    ///
    /// # Errors
    /// `InvalidInput` saying nothing was changed.
    pub(crate) fn ready_to_take_users_from(&self, staged: &Path) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let device = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
        let users = self.users_dir();
        let here = device(&users).or_else(|| device(&self.root));
        if let (Some(here), Some(there)) = (here, device(staged))
            && here != there
        {
            return Err(Error::invalid(
                "folders",
                format!(
                    "{} is on another file system than {}, so the folders cannot be moved into \
                     place; nothing was changed; keep the workspaces folder and its users/ and \
                     trash/ on one file system",
                    staged.display(),
                    users.display()
                ),
            ));
        }
        Ok(())
    }

    /// Deletes for good the trash entries `which` picks (the folders a user's deletion moved
    /// there, a user's removed pieces and repair copies; old entries, for space), never following a symlink
    /// out of the trash: a trash folder that is a symlink is refused, an entry that is one is
    /// removed as a link. A removed piece's number is still never given again. Copies
    /// of the same files elsewhere stay: inside `reset-…` entries (a reset or restore moved
    /// every folder), in the store's safety copies and in backups. Returns what it deleted.
    /// A `reset-…` entry a stopped restore waits to put in place (`Redkeep::check` names it)
    /// is its users' only copy: leave it out of `which` (the CLI's `purge-trash` keeps it).
    ///
    /// # Errors
    /// `ReadOnly` for a read-only data dir; `UnsafePath` when the trash folder is a symlink;
    /// `Io` when an entry cannot be deleted (those before it are gone).
    pub fn purge_trash(&self, which: &dyn Fn(&TrashEntry) -> bool) -> Result<Vec<TrashEntry>> {
        self.writable()?;
        let mut purged = Vec::new();
        for entry in self.trash()?.into_iter().filter(|e| which(e)) {
            if let (Some(user), Some(n)) = (entry.user, entry.piece) {
                self.purge_piece(user, n, &entry.path)?;
                purged.push(entry);
                continue;
            }
            let meta = fs::symlink_metadata(&entry.path)
                .map_err(|e| Error::io(format!("reading {}", entry.path.display()), e))?;
            // `remove_dir_all` removes a symlink inside, never what it points to.
            let removed = if meta.is_dir() {
                fs::remove_dir_all(&entry.path)
            } else {
                fs::remove_file(&entry.path)
            };
            removed.map_err(|e| Error::io(format!("deleting {}", entry.path.display()), e))?;
            tracing::info!(path = %entry.path.display(), "trash entry deleted for good");
            purged.push(entry);
        }
        // (A removed piece's folder was synced at its deletion.) The others: the trash, and
        // the `.trash` of each user folder whose repair copies went.
        let mut synced = std::collections::BTreeSet::new();
        for entry in purged.iter().filter(|e| e.piece.is_none()) {
            if let Some(dir) = entry.path.parent()
                && synced.insert(dir.to_path_buf())
            {
                fsutil::sync_this_dir(dir)?;
            }
        }
        Ok(purged)
    }

    /// Deletes the removed piece `n` of `user` at `path` (in their `.trash/`) for good. The
    /// highest removed number is what keeps numbers from being given twice: before that
    /// piece goes, an empty `numbers_used_up_to_<n>` takes over its number (in place first,
    /// so the number stays taken at every moment; no lock is needed), as an import keeps a
    /// number. Nothing named like the piece is left for anyone to put back.
    fn purge_piece(&self, user: u64, n: u64, path: &Path) -> Result<()> {
        let trash = self.dir(user).join(names::PIECE_TRASH);
        if names::trashed_numbers(&self.dir(user))?.highest() == Some(n) {
            names::keep_numbers_up_to(&trash, n)?;
        }
        fs::remove_file(path).map_err(|e| Error::io(format!("deleting {}", path.display()), e))?;
        fsutil::sync_this_dir(&trash)?;
        tracing::info!(user, piece = n, "removed piece deleted for good");
        Ok(())
    }

    /// Refuses before a change that ends with [`Workspaces::trash_folder`] of `user` (deleting
    /// the account), so that nothing is written when that step could not run: a read-only
    /// data dir, or a call on this thread inside a workspace call for the same user. Makes
    /// the trash folder when the user has a folder to move there and it is missing.
    ///
    /// # Errors
    /// `ReadOnly` for a read-only data dir; `UnsafePath` when the trash folder is a symlink;
    /// `InvalidInput` inside a call for the user; `Io` when the trash cannot be made.
    pub(crate) fn can_trash(&self, user: u64) -> Result<()> {
        self.writable()?;
        // A trash that is a symlink is refused when the folder moves: say so first.
        let trash = self.trash_dir();
        fsutil::real_dir(&trash)?;
        // The folder moves out of `users/` into the trash (made if missing): each must be
        // changeable, and the folder itself (its `..` changes).
        fsutil::may_change(&self.users_dir())?;
        fsutil::may_change(if trash.exists() { &trash } else { &self.root })?;
        fsutil::may_change(&self.dir(user))?;
        Self::not_held(&self.dir(user), user, true)?;
        // The trash made now, before the account goes: a full disk then refuses the delete
        // rather than leaving the folder behind a deleted account.
        if fsutil::real_dir(&self.dir(user))?.is_some() && fsutil::real_dir(&trash)?.is_none() {
            fsutil::create_private_dir(&trash)?;
        }
        Ok(())
    }

    /// Moves the folder of `user` to `<root>/trash/<user>-<time>/` under its exclusive lock
    /// (never deleting). Used when the account is deleted. Returns where it went, or `None`
    /// when there was no folder.
    ///
    /// # Errors
    /// `Io` when it cannot be moved.
    pub fn trash_folder(&self, user: u64, now: Timestamp) -> Result<Option<PathBuf>> {
        self.writable()?;
        let dir = self.dir(user);
        Self::not_held(&dir, user, true)?;
        self.lock_files.forget(Some(user));
        let real = match fsutil::real_dir(&dir) {
            Ok(Some(())) => true,
            Ok(None) => return Ok(None),
            // A symlink or a file where the folder should be: moved away as it is.
            Err(_) => false,
        };
        // The lock keeps writers out while the folder moves; whoever waits finds it gone.
        let _lock = if real {
            lock::lock(&dir.join(LOCK_FILE), LockKind::Exclusive, None).ok()
        } else {
            None
        };
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(None);
        }
        let to = fsutil::move_to_trash(&dir, &self.trash_dir(), &format!("{user}-{}", now.0))?;
        tracing::info!(user, to = %to.display(), "workspace folder moved to the trash");
        Ok(Some(to))
    }

    /// Moves every user folder to `<root>/trash/reset-<time>/` (for `reset`). Returns where
    /// they went, or `None` when there were none.
    ///
    /// # Errors
    /// `Io` when they cannot be moved.
    pub fn trash_all(&self, now: Timestamp) -> Result<Option<PathBuf>> {
        self.trash_all_keeping(now, false)
    }

    /// Puts the users' folders in `staged_users` (unpacked from a backup, or a trash entry)
    /// in place of these (which go to the trash, as [`Workspaces::trash_all_keeping`]
    /// says); returns how many were put in place and where the replaced ones went.
    ///
    /// # Errors
    /// `Io` / `UnsafePath` when the folders cannot be moved.
    pub(crate) fn replace_users_with(
        &self,
        staged_users: &Path,
        now: Timestamp,
        keep_empty: bool,
    ) -> Result<(Option<u64>, Option<PathBuf>)> {
        let count = fs::read_dir(staged_users).map_or(0, |d| {
            d.flatten()
                .filter(|e| {
                    e.file_type().is_ok_and(|t| t.is_dir())
                        && e.file_name()
                            .to_str()
                            .is_some_and(|n| n.parse::<u64>().is_ok())
                })
                .count() as u64
        });
        // With `keep_empty`, kept even when empty: the undo line names it, and putting it
        // back leaves no folders.
        let safety = self.trash_all_keeping(now, keep_empty)?;
        let users = self.users_dir();
        match fs::remove_dir(&users) {
            Ok(()) => {}
            // Gone already (a restore stopped after taking it away).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("replacing {}", users.display()), e)),
        }
        fsutil::rename_replace(staged_users, &users)?;
        Ok((Some(count), safety))
    }

    /// [`Workspaces::trash_all`], with `keep_empty`: an empty `reset-<time>` entry is made
    /// even when there were no folders, so that a restore can name the entry that undoes it
    /// (putting it back leaves no folders, as there were none).
    pub(crate) fn trash_all_keeping(
        &self,
        now: Timestamp,
        keep_empty: bool,
    ) -> Result<Option<PathBuf>> {
        self.writable()?;
        self.lock_files.forget(None);
        let users = self.users_dir();
        let empty = fs::read_dir(&users)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true);
        if empty && !(keep_empty && fsutil::real_dir(&users).is_ok_and(|d| d.is_some())) {
            return Ok(None);
        }
        let to = fsutil::move_to_trash(&users, &self.trash_dir(), &format!("reset-{}", now.0))?;
        fsutil::create_private_dir(&users)?;
        fsutil::sync_dir(&users)?;
        Ok(Some(to))
    }

    /// Gives an unmarked folder of `user` to `owner` (migrations, adoption). Returns whether
    /// a marker was written; a folder already marked is left as it is.
    ///
    /// # Errors
    /// `UnsafePath` for a malformed marker (only the operator may say whose the folder is:
    /// `redkeep workspace bind`); `Io` when the marker cannot be written.
    pub fn mark(&self, user: u64, owner: FolderOwner) -> Result<bool> {
        self.write_marker(user, owner, false)
    }

    /// Gives the folder of `user` to `owner` on the operator's word (`redkeep workspace
    /// bind`): as [`mark`](Self::mark), and a malformed marker is replaced too.
    ///
    /// # Errors
    /// `Io` when the marker cannot be written.
    pub(crate) fn bind(&self, user: u64, owner: FolderOwner) -> Result<bool> {
        self.write_marker(user, owner, true)
    }

    fn write_marker(&self, user: u64, owner: FolderOwner, over_malformed: bool) -> Result<bool> {
        self.writable()?;
        let dir = self.dir(user);
        if fsutil::real_dir(&dir)?.is_none() {
            return Ok(false);
        }
        Self::not_held(&dir, user, true)?;
        let _lock = lock::lock(&dir.join(LOCK_FILE), LockKind::Exclusive, None)?;
        match Self::read_owner(&dir)? {
            Marker::Of(_) => return Ok(false),
            Marker::Malformed if !over_malformed => return Err(malformed_marker(&dir)),
            Marker::Missing | Marker::Malformed => {}
        }
        fsutil::write_private(&dir.join(OWNER_FILE), owner.marker().as_bytes())?;
        Ok(true)
    }
}

/// The error of a folder `dir` whose owner marker is malformed, for callers that cannot say
/// whether its number is a user's (`check` and a user's requests say more).
fn malformed_marker(dir: &Path) -> Error {
    Error::unsafe_path(
        dir.join(OWNER_FILE),
        "the owner marker is malformed, so whose folder this is is unknown and it is not \
         served; a repair leaves it (`redkeep check` says what to do)",
    )
}

/// The names `check --repair` gives what it moves into a user folder's `.trash/`, each
/// followed by the repair's time (Unix seconds) and maybe `-2`, `-3`, ….
const REPAIR_COPIES: [&str; 4] = [
    "workspace.json.corrupt-",
    "gallery.not-a-folder-",
    "trash.not-a-folder-",
    "lock.not-a-file-",
];

/// When the repair copy named `name` was moved aside: the time in its name.
fn repair_copy_time(name: &str) -> Option<Timestamp> {
    let rest = REPAIR_COPIES.iter().find_map(|p| name.strip_prefix(p))?;
    rest.split('-').next()?.parse().ok().map(Timestamp)
}

/// Dates the entry at `path`, just moved into a trash, at `at`, so it ages there from its
/// move, not from when it was last written. Should that fail, it keeps its old time.
pub(super) fn date_moved(path: &Path, at: Timestamp) {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.0.try_into().unwrap_or(0));
    let _ = fsutil::set_modified(path, at);
}

/// Whether the removed-piece file at `path` only keeps its number from being given again:
/// an empty `{}`, as imports and purges of earlier versions left (they now leave a
/// `numbers_used_up_to_<n>` instead; data dirs holding the old ones still work).
fn is_number_keeper(path: &Path, meta: &fs::Metadata) -> bool {
    meta.len() == 2 && fs::read(path).is_ok_and(|b| b == b"{}")
}

/// Why the file at `path`, `bytes`, did not parse (`reason`): `NotStrictJson` when it holds
/// `NaN` or `Infinity` (a whole file of a lenient writer, left as it is), `TooDeep` when it
/// nests deeper than serde_json reads, else damaged.
pub(super) fn unparsed(path: &Path, bytes: &[u8], reason: String) -> Error {
    if let Some((token, line, column)) = super::doc::non_finite_token(bytes) {
        return Error::NotStrictJson {
            path: path.to_path_buf(),
            token: token.to_string(),
            line,
            column,
        };
    }
    // serde_json stops at its recursion limit (parsing deeper recurses deeper, and hostile
    // input could overflow the stack), having read JSON up to there: a file nested that
    // deep whose brackets all close again is most likely whole (Python's `json` writes
    // such files), so it is never taken for damaged. One cut short is.
    if reason.contains("recursion limit exceeded") {
        let (depth, closed) = super::doc::json_nesting(bytes);
        if closed && depth > super::MAX_DOC_DEPTH {
            return Error::TooDeep {
                path: path.to_path_buf(),
                depth,
                limit: super::MAX_DOC_DEPTH,
            };
        }
    }
    corrupt(path, reason)
}

fn corrupt(path: &Path, reason: String) -> Error {
    Error::DamagedFile {
        path: path.to_path_buf(),
        reason,
    }
}

/// The directory `root` held open, with its identity as its path gives it (some file
/// systems, overlayfs on older kernels, give an open file another device number than its
/// path); neither when it cannot be opened.
fn hold_root(root: &Path) -> (Option<(u64, u64)>, Option<Arc<fs::File>>) {
    match fs::File::open(root) {
        Ok(held) => (dir_id(root), Some(Arc::new(held))),
        Err(_) => (dir_id(root), None),
    }
}

/// The identity (device, inode) of the directory at `path` (following a symlink, as every
/// path under it does); `None` when there is none.
fn dir_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path)
        .ok()
        .filter(fs::Metadata::is_dir)
        .map(|m| (m.dev(), m.ino()))
}

/// Total bytes and latest modification of the files under `dir` (not following symlinks).
/// The folder's own bookkeeping (its lock, owner marker and piece count, rewritten by a
/// restore or a repair) counts toward the bytes, not toward when the user's files last
/// changed.
fn dir_usage(dir: &Path) -> (u64, Option<Timestamp>) {
    let mut size = 0;
    let mut latest: Option<SystemTime> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                size += m.len();
                let name = e.file_name();
                let bookkeeping = name == LOCK_FILE || name == OWNER_FILE || name == TALLY_FILE;
                if let Ok(t) = m.modified()
                    && !bookkeeping
                {
                    latest = Some(latest.map_or(t, |l| l.max(t)));
                }
            }
        }
    }
    (size, latest.and_then(Timestamp::of_system_time))
}

/// Removes leftover temp files of an interrupted write; failures are ignored (best effort).
pub(super) fn clean_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with(fsutil::TEMP_PREFIX)
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_memory_stays_within_its_byte_budget() {
        let memory = DocMemory::default();
        let version = FileVersion {
            dev: 1,
            ino: 1,
            size: 1,
            mtime: (0, 0),
            ctime: (0, 0),
        };
        let counted = |memory: &DocMemory| {
            let m = memory.map();
            (
                m.bytes,
                m.docs.values().map(|(_, _, len)| len).sum::<usize>(),
            )
        };
        // A document kept again under the same path is counted once; a removed one not at
        // all.
        for _ in 0..10 {
            memory.insert("/a".into(), version, WorkspaceDoc::default(), 1000);
        }
        memory.insert("/b".into(), version, WorkspaceDoc::default(), 500);
        assert_eq!(counted(&memory), (1500, 1500));
        memory.remove(Path::new("/b"));
        assert_eq!(counted(&memory), (1000, 1000));
        // Many large documents: never more than the budget, and always what it holds.
        for i in 0..200 {
            let path = PathBuf::from(format!("/d{i}"));
            memory.insert(path, version, WorkspaceDoc::default(), MAX_DOC_KEPT);
            let (bytes, sum) = counted(&memory);
            assert!(bytes <= DOCS_KEPT_BYTES, "{bytes} bytes kept");
            assert_eq!(bytes, sum);
        }
        assert!(memory.get(Path::new("/d199"), version).is_some());
        assert!(memory.map().docs.len() > 1);
    }

    #[test]
    fn kept_lock_files_stay_within_their_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let file = fs::File::create(tmp.path().join("lock")).unwrap();
        let kept = LockFiles::default();
        for user in 0..200 {
            kept.keep(user, file.try_clone().unwrap(), (1, user));
            let held = kept.map().len();
            assert!(held <= MAX_LOCK_FILES, "{held} files kept");
        }
        // The last one is there, once, and taking it out leaves none for that user.
        assert_eq!(kept.take(199).map(|(_, id)| id), Some((1, 199)));
        assert!(kept.take(199).is_none());
        kept.forget(None);
        assert!(kept.map().is_empty());
    }
}
