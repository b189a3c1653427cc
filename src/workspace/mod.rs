//! Per-user workspace folders on the file system, in the layout existing deployments use:
//!
//! ```text
//! <root>/users/{user_id}/workspace.json
//! <root>/users/{user_id}/gallery/piece_000001.json
//! <root>/users/{user_id}/.lock
//! ```
//!
//! Readers take the `.lock` shared, writers exclusively; every file is replaced atomically;
//! unknown JSON fields survive rewrites; paths are built only from numbers; symlinks are
//! refused. Nothing here knows about the store.

mod gallery;
pub mod lock;

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use gallery::PieceInfo;
use lock::{DirLock, LockKind, WaitNotice};

use crate::error::{Error, Result};
use crate::fsutil;

/// The document file in each user directory.
pub const WORKSPACE_FILE: &str = "workspace.json";
/// The gallery folder in each user directory.
pub const GALLERY_DIR: &str = "gallery";
const LOCK_FILE: &str = ".lock";
/// Default size cap for documents and pieces: 16 MiB.
pub const DEFAULT_MAX_DOC_BYTES: u64 = 16 * 1024 * 1024;

/// A user's `workspace.json`: typed access to the known fields, every other field kept as it
/// was (in its original order) when the document is rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceDoc {
    /// Canvas state: any JSON value.
    #[serde(default)]
    pub canvas: Value,
    /// Notes: usually an array, kept as whatever JSON the app stored.
    #[serde(default = "empty_array")]
    pub notes: Value,
    /// Number of pieces in the gallery.
    #[serde(default)]
    pub piece_count: u64,
    /// Fields redkeep does not know, preserved on rewrite.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn empty_array() -> Value {
    Value::Array(Vec::new())
}

impl Default for WorkspaceDoc {
    fn default() -> Self {
        WorkspaceDoc {
            canvas: Value::Null,
            notes: empty_array(),
            piece_count: 0,
            other: Map::new(),
        }
    }
}

impl WorkspaceDoc {
    /// Appends a note (turning a missing or null `notes` into an array first).
    ///
    /// # Errors
    /// `InvalidInput` when `notes` holds something other than an array.
    pub fn add_note(&mut self, note: impl Into<Value>) -> Result<()> {
        if self.notes.is_null() {
            self.notes = empty_array();
        }
        match &mut self.notes {
            Value::Array(a) => {
                a.push(note.into());
                Ok(())
            }
            _ => Err(Error::invalid(
                "notes",
                "this workspace keeps notes as something other than a list",
            )),
        }
    }

    /// The number of notes (0 when `notes` is not an array).
    pub fn note_count(&self) -> usize {
        self.notes.as_array().map_or(0, Vec::len)
    }
}

/// Options of [`Workspaces`].
#[derive(Clone, Default)]
pub struct WorkspaceOptions {
    /// Largest document or piece read or written; `None` means [`DEFAULT_MAX_DOC_BYTES`].
    pub max_doc_bytes: Option<u64>,
    /// Called when a lock is busy, before waiting (the CLI prints that it is waiting).
    pub on_wait: Option<WaitNotice>,
}

impl std::fmt::Debug for WorkspaceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceOptions")
            .field("max_doc_bytes", &self.max_doc_bytes)
            .field("on_wait", &self.on_wait.is_some())
            .finish()
    }
}

/// A summary of one user directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceInfo {
    /// The user id (the directory's name).
    pub user_id: u64,
    /// `piece_count` as recorded in workspace.json (`None` if unreadable).
    pub piece_count: Option<u64>,
    /// Pieces actually in the gallery.
    pub pieces: u64,
    /// Notes in workspace.json.
    pub notes: usize,
    /// Bytes of every file in the directory.
    pub size_bytes: u64,
    /// Latest modification of any file in it.
    pub modified: Option<crate::Timestamp>,
    /// Why workspace.json could not be read, if it could not.
    pub error: Option<String>,
}

/// A problem found in the workspaces by [`Workspaces::check`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceProblem {
    /// The user directory concerned.
    pub user_id: u64,
    /// What is wrong.
    pub problem: String,
}

/// The per-user folders under one root.
#[derive(Debug, Clone)]
pub struct Workspaces {
    root: PathBuf,
    options: WorkspaceOptions,
}

impl Workspaces {
    /// Opens (creating, mode 0700) the root `root`.
    pub fn open(root: impl AsRef<Path>, options: WorkspaceOptions) -> Result<Workspaces> {
        let root = root.as_ref().to_path_buf();
        fsutil::create_private_dir(&root.join("users"))?;
        Ok(Workspaces { root, options })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn max_bytes(&self) -> u64 {
        self.options.max_doc_bytes.unwrap_or(DEFAULT_MAX_DOC_BYTES)
    }

    /// The directory of `user`. Built from the number only.
    pub fn dir(&self, user: u64) -> PathBuf {
        self.root.join("users").join(user.to_string())
    }

    fn lock(&self, user: u64, kind: LockKind) -> Result<DirLock> {
        let dir = self.checked_dir(user)?;
        lock::lock(&dir.join(LOCK_FILE), kind, self.options.on_wait.as_ref())
    }

    /// The user's directory, refusing a missing one or a symlink.
    fn checked_dir(&self, user: u64) -> Result<PathBuf> {
        let dir = self.dir(user);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => Err(Error::Refused(format!(
                "{} is a symlink; refusing to use it",
                dir.display()
            ))),
            Ok(m) if m.is_dir() => Ok(dir),
            Ok(_) => Err(Error::Refused(format!(
                "{} is not a directory",
                dir.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::not_found(format!("workspace of user {user}")))
            }
            Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
        }
    }

    /// Whether the user has a workspace directory.
    pub fn exists(&self, user: u64) -> bool {
        self.checked_dir(user).is_ok()
    }

    /// Creates the user's directory, gallery and an empty document; does nothing for the
    /// parts that exist.
    pub fn create(&self, user: u64) -> Result<()> {
        let dir = self.dir(user);
        fsutil::create_private_dir(&dir.join(GALLERY_DIR))?;
        let _lock = self.lock(user, LockKind::Exclusive)?;
        let file = dir.join(WORKSPACE_FILE);
        if fs::symlink_metadata(&file).is_err() {
            self.write_json(&file, &WorkspaceDoc::default())?;
        }
        Ok(())
    }

    /// Reads the user's document under a shared lock. A directory without workspace.json
    /// reads as an empty document.
    ///
    /// # Errors
    /// `NotFound` without a directory; `Corrupt` for a file that is not a workspace document
    /// or is over the size cap (naming its path); `Refused` for a symlink.
    pub fn read(&self, user: u64) -> Result<WorkspaceDoc> {
        let _lock = self.lock(user, LockKind::Shared)?;
        self.read_doc(user)
    }

    fn read_doc(&self, user: u64) -> Result<WorkspaceDoc> {
        let path = self.dir(user).join(WORKSPACE_FILE);
        match self.read_file(&path)? {
            None => Ok(WorkspaceDoc::default()),
            Some(bytes) => parse_doc(&path, &bytes),
        }
    }

    /// Reads a file without following symlinks, refusing one over the cap. `None` if absent.
    fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path);
        let file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Error::Refused(format!(
                    "{} is a symlink; refusing to follow it",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let cap = self.max_bytes();
        let mut bytes = Vec::new();
        file.take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if bytes.len() as u64 > cap {
            return Err(corrupt(path, format!("larger than the {cap}-byte limit")));
        }
        Ok(Some(bytes))
    }

    /// Writes JSON atomically to `path` after checking the cap and that `path` is not a
    /// symlink. Stale temp files in the directory are removed first.
    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::invalid("document", e.to_string()))?;
        self.write_bytes(path, &bytes)
    }

    fn write_bytes(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let cap = self.max_bytes();
        if bytes.len() as u64 > cap {
            return Err(Error::invalid(
                "document",
                format!("it has {} bytes; the limit is {cap}", bytes.len()),
            ));
        }
        if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Refused(format!(
                "{} is a symlink; refusing to write through it",
                path.display()
            )));
        }
        if let Some(dir) = path.parent() {
            clean_temp_files(dir);
        }
        fsutil::write_private(path, bytes)
    }

    /// Reads the document, lets `f` change it, and writes it back atomically, all under the
    /// user's exclusive lock.
    ///
    /// # Errors
    /// As [`Workspaces::read`]; `f`'s error (nothing written); `InvalidInput` when the result
    /// is over the cap.
    pub fn update<T>(
        &self,
        user: u64,
        f: impl FnOnce(&mut WorkspaceDoc) -> Result<T>,
    ) -> Result<T> {
        let _lock = self.lock(user, LockKind::Exclusive)?;
        let mut doc = self.read_doc(user)?;
        let out = f(&mut doc)?;
        self.write_json(&self.dir(user).join(WORKSPACE_FILE), &doc)?;
        Ok(out)
    }

    /// User ids that have a directory, ascending.
    pub fn user_ids(&self) -> Result<Vec<u64>> {
        let users = self.root.join("users");
        let entries = fs::read_dir(&users)
            .map_err(|e| Error::io(format!("listing {}", users.display()), e))?;
        let mut ids: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().and_then(parse_id))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// A summary of one user's directory.
    pub fn info(&self, user: u64) -> Result<WorkspaceInfo> {
        let _lock = self.lock(user, LockKind::Shared)?;
        let dir = self.dir(user);
        let (size_bytes, modified) = dir_usage(&dir);
        let pieces = self.piece_numbers(user)?.len() as u64;
        let (piece_count, notes, error) = match self.read_doc(user) {
            Ok(d) => (Some(d.piece_count), d.note_count(), None),
            Err(e) => (None, 0, Some(e.to_string())),
        };
        Ok(WorkspaceInfo {
            user_id: user,
            piece_count,
            pieces,
            notes,
            size_bytes,
            modified,
            error,
        })
    }

    /// Every user directory with its piece count, size and last change.
    pub fn list(&self) -> Result<Vec<WorkspaceInfo>> {
        self.user_ids()?
            .into_iter()
            .map(|id| self.info(id))
            .collect()
    }

    /// Moves the user's directory to `<root>/trash/<user>-<unix time>/`; never deletes.
    /// Returns where it went.
    pub fn remove(&self, user: u64, now: crate::Timestamp) -> Result<PathBuf> {
        let dir = self.checked_dir(user)?;
        let _lock = self.lock(user, LockKind::Exclusive)?;
        let trash = self.root.join("trash");
        fsutil::create_private_dir(&trash)?;
        let mut target = trash.join(format!("{user}-{}", now.0));
        let mut n = 1;
        while target.exists() {
            target = trash.join(format!("{user}-{}-{n}", now.0));
            n += 1;
        }
        fs::rename(&dir, &target).map_err(|e| {
            Error::io(
                format!("moving {} to {}", dir.display(), target.display()),
                e,
            )
        })?;
        fsutil::sync_dir(&target)?;
        fsutil::sync_dir(&dir)?;
        Ok(target)
    }

    /// Problems in the directories of `users` and of the directories present: unparseable
    /// files and `piece_count` disagreeing with the gallery. With `repair`, counts are set to
    /// the gallery's and the fixes are returned as problems prefixed `fixed:`.
    pub fn check(&self, repair: bool) -> Result<Vec<WorkspaceProblem>> {
        let mut out = Vec::new();
        for user in self.user_ids()? {
            let problem = |p: String| WorkspaceProblem {
                user_id: user,
                problem: p,
            };
            let pieces = match self.piece_numbers(user) {
                Ok(p) => p,
                Err(e) => {
                    out.push(problem(e.to_string()));
                    continue;
                }
            };
            for &n in &pieces {
                if let Err(e) = self.load_piece(user, n) {
                    out.push(problem(e.to_string()));
                }
            }
            let count = pieces.len() as u64;
            match self.read(user) {
                Err(e) => out.push(problem(e.to_string())),
                Ok(doc) if doc.piece_count != count => {
                    if repair {
                        let old = self.update(user, |d| {
                            let old = d.piece_count;
                            d.piece_count = self.piece_numbers(user)?.len() as u64;
                            Ok(old)
                        })?;
                        out.push(problem(format!(
                            "fixed: piece_count {old} set to the gallery's {count}"
                        )));
                    } else {
                        out.push(problem(format!(
                            "piece_count is {} but the gallery holds {count} pieces",
                            doc.piece_count
                        )));
                    }
                }
                Ok(_) => {}
            }
        }
        Ok(out)
    }
}

fn parse_doc(path: &Path, bytes: &[u8]) -> Result<WorkspaceDoc> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(path, format!("not valid JSON ({e})")))?;
    if !value.is_object() {
        return Err(corrupt(path, "not a JSON object".into()));
    }
    serde_json::from_value(value)
        .map_err(|e| corrupt(path, format!("not a workspace document ({e})")))
}

fn corrupt(path: &Path, reason: String) -> Error {
    Error::Corrupt {
        table: "workspace file".into(),
        key: path.display().to_string(),
        reason,
    }
}

/// Parses a directory name that is a canonical decimal id (no sign, no leading zero).
fn parse_id(name: &str) -> Option<u64> {
    if name.is_empty() || (name.len() > 1 && name.starts_with('0')) {
        return None;
    }
    if !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Total bytes and latest modification of the files under `dir` (not following symlinks).
fn dir_usage(dir: &Path) -> (u64, Option<crate::Timestamp>) {
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
                if let Ok(t) = m.modified() {
                    latest = Some(latest.map_or(t, |l| l.max(t)));
                }
            }
        }
    }
    let ts = latest
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| crate::Timestamp(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    (size, ts)
}

/// Removes leftover temp files of an interrupted write; failures are ignored (best effort).
fn clean_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with(fsutil::TEMP_PREFIX)
        {
            let _ = fs::remove_file(e.path());
        }
    }
}
