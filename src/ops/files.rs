//! Files the operations share: writing account data privately, opening a store file that no
//! process holds, naming safety copies, and moving whole workspace folders.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::handle::{SCHEMA_VERSION, STORE_FILE, WORKSPACES_DIR};
use crate::store::{Meta, Mode, Source, Store, StoreOptions};
use crate::workspace::{WorkspaceOptions, Workspaces};

/// Writes `bytes` to `path` atomically (temp file, fsync, rename), mode 0600, refusing to
/// replace an existing file: for exports and other files that hold account data.
///
/// # Errors
/// `InvalidInput` when `path` exists; `Io`.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.exists() {
        return Err(Error::invalid(
            "path",
            format!("{} exists; choose a new file", path.display()),
        ));
    }
    fsutil::write_private(path, bytes)
}

pub(super) fn open_file_store(path: &Path, mode: Mode) -> Result<Store> {
    Store::open(
        path,
        &StoreOptions {
            mode,
            create: false,
            schema_version: SCHEMA_VERSION,
            allow_outdated: true,
            ..StoreOptions::default()
        },
    )
}

/// Removes the store file of `data_dir` and the empty workspace folders opening it made,
/// when nothing has used it: for a command that made the store and then failed (a refused
/// `init` or `import`), so no empty store is left to trip up the next attempt. Returns
/// whether it removed them. The store is left when it holds a user, an init or an
/// unfinished import (another process, or the import itself, used it), when another process
/// holds it, or when the workspaces folder is a symlink or holds any file.
pub fn discard_unused_store(data_dir: &Path) -> bool {
    discard_unused_store_except(data_dir, &std::collections::BTreeSet::new())
}

/// The entries under the workspaces folder of `data_dir` (folders and files, not following
/// symlinks), for [`discard_unused_store_except`]; `None` past 10,000 of them (then a
/// take-back leaves the folders and the store as they are).
pub fn workspace_entries(data_dir: &Path) -> Option<std::collections::BTreeSet<PathBuf>> {
    fn walk(dir: &Path, out: &mut std::collections::BTreeSet<PathBuf>) -> Option<()> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Some(());
        };
        for e in entries.flatten() {
            if out.len() >= 10_000 {
                return None;
            }
            out.insert(e.path());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out)?;
            }
        }
        Some(())
    }
    let root = data_dir.join(WORKSPACES_DIR);
    let mut out = std::collections::BTreeSet::new();
    if std::fs::symlink_metadata(&root).is_ok() {
        out.insert(root.clone());
    }
    walk(&root, &mut out)?;
    Some(out)
}

/// [`discard_unused_store`] for a command that found the entries `found` under the
/// workspaces folder before it ran ([`workspace_entries`]): those are left as they are,
/// and do not count as use of the store.
pub fn discard_unused_store_except(
    data_dir: &Path,
    found: &std::collections::BTreeSet<PathBuf>,
) -> bool {
    let db = data_dir.join(crate::handle::STORE_FILE);
    // Held alone while it is looked at, so nobody writes into it meanwhile. Opening made
    // the system roles; an import that committed left users or its unfinished mark.
    let unused = open_file_store(&db, Mode::Exclusive).and_then(|store| {
        store.read(|tx| {
            let unused = tx.table::<crate::User>().count()? == 0
                && tx.meta(crate::store::IMPORT_UNFINISHED)?.is_none()
                && tx.meta(crate::handle::INITIALIZED)?.is_none();
            unused.then(|| tx.meta(crate::store::STORE_ID)).transpose()
        })
    });
    let workspaces = data_dir.join(WORKSPACES_DIR);
    let Ok(Some(id)) = unused else {
        return false;
    };
    if fsutil::real_dir(&workspaces).is_err()
        || holds_a_file(&workspaces, found)
        || std::fs::remove_file(&db).is_err()
    {
        return false;
    }
    // The note the open wrote, naming the store just removed.
    if let (Some(id), Ok(Some(note))) = (id, crate::handle::store_note(data_dir))
        && note.store.is_none()
        && note.id.as_bytes() == id.as_slice()
    {
        let _ = std::fs::remove_file(data_dir.join(crate::handle::STORE_NOTE));
    }
    remove_empty_folders(&workspaces, found);
    true
}

/// Whether anything but folders, and but the entries of `found`, is under `dir` (an
/// unreadable folder counts as holding one, a symlink as a file: never followed).
fn holds_a_file(dir: &Path, found: &std::collections::BTreeSet<PathBuf>) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return dir.exists() && !found.contains(dir);
    };
    entries.into_iter().any(|e| {
        e.map_or(true, |e| {
            // `DirEntry::file_type` does not follow a symlink.
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                holds_a_file(&e.path(), found)
            } else {
                !found.contains(&e.path())
            }
        })
    })
}

/// Removes `dir` and the folders under it, all empty, but those of `found`.
fn remove_empty_folders(dir: &Path, found: &std::collections::BTreeSet<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_folders(&e.path(), found);
            }
        }
    }
    if !found.contains(dir) {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The file name, in the data dir, next to which copies of a store that is not a file
/// (PostgreSQL) are written (`…pre-reset-<time>.bak`, each a redb file).
pub(crate) const REMOTE_COPIES: &str = crate::handle::POSTGRES_COPIES;

/// Opens the store at a store URL (see [`crate::Options::store_url`]), creating it when
/// `create` is set; an older schema is accepted.
///
/// # Errors
/// `InvalidInput` for a URL that names no store this build supports; the engine's errors.
pub(crate) fn open_url_store(url: &str, create: bool) -> Result<Store> {
    crate::handle::open_url(
        url,
        &StoreOptions {
            create,
            schema_version: SCHEMA_VERSION,
            allow_outdated: true,
            ..StoreOptions::default()
        },
        false,
    )
}

/// Whether a store holds nothing but its metadata.
///
/// # Errors
/// `Storage` when it cannot be read.
pub(crate) fn is_empty(store: &Store) -> Result<bool> {
    store.read(|tx| {
        for name in tx.table_names()? {
            if name != "meta" && tx.raw().len(&name)? > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

pub(super) fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    db.with_file_name(name)
}

/// [`with_suffix`], numbered (`.2`, `.3`, …) past any file an earlier run left there.
pub(super) fn free_with_suffix(db: &Path, suffix: &str) -> PathBuf {
    fsutil::free_path(&with_suffix(db, suffix))
}

/// Refuses a target data dir whose workspaces folder holds anything but empty `users/` and
/// `trash/` folders: copying the source's folders there would mix two deployments' files (a
/// piece of the target's served as the source user's, a foreign trash entry restored), or
/// write through a symlink. `doing` names the command.
///
/// # Errors
/// `Denied` naming what was found, with nothing copied.
pub(super) fn refuse_taken_folders(target_dir: &Path, doing: &str) -> Result<()> {
    if let Ok(m) = std::fs::metadata(target_dir)
        && !m.is_dir()
    {
        return Err(Error::invalid(
            "to",
            format!(
                "{} is a file, not a data dir; give a new folder (or a store URL)",
                target_dir.display()
            ),
        ));
    }
    let root = target_dir.join(WORKSPACES_DIR);
    let refuse = |what: String| {
        Error::denied(format!(
            "{} {what}; {doing} writes the source's workspace folders there: choose a new \
             data dir, or move that away; nothing was copied",
            root.display()
        ))
    };
    match std::fs::symlink_metadata(&root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(format!("cannot be read ({e})"))),
        Ok(m) if m.file_type().is_symlink() => return Err(refuse("is a symlink".into())),
        Ok(m) if !m.is_dir() => return Err(refuse("is not a folder".into())),
        Ok(_) => {}
    }
    let listed = |dir: &Path| -> Result<Vec<std::fs::DirEntry>> {
        std::fs::read_dir(dir)
            .and_then(Iterator::collect)
            .map_err(|e| refuse(format!("cannot be read ({e})")))
    };
    let names = |dir: &Path| -> Result<Vec<String>> {
        let mut found: Vec<String> = listed(dir)?
            .into_iter()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        Ok(found)
    };
    let mut found = Vec::new();
    for e in listed(&root)? {
        let name = e.file_name().to_string_lossy().into_owned();
        let real_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if !real_dir || !(name == "users" || name == "trash") {
            found.push(name);
            continue;
        }
        found.extend(names(&e.path())?.into_iter().map(|n| format!("{name}/{n}")));
    }
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    Err(refuse(format!(
        "already holds workspace folders or files ({})",
        crate::top::first_few(&found, 5)
    )))
}

// The workspaces of a data dir, for moving whole folders (no owner lookups are made).
pub(super) fn folders_of(data_dir: &Path) -> Result<Workspaces> {
    Workspaces::open(
        data_dir.join(WORKSPACES_DIR),
        WorkspaceOptions::default(),
        std::sync::Arc::new(|_| Ok(None)),
    )
}

pub(super) fn sequences_of(store: &Store) -> Result<Vec<(String, u64)>> {
    store.read(|tx| tx.sequences())
}

/// The places of `ws` taken by a symlink or a file instead of a user's folder (a folder
/// moved to another disk and linked back), as `users/{id}`, and the entries of `users/` no
/// user id names (an operator's folder): never copied, so named as not kept by whatever
/// copies the folders.
///
/// # Errors
/// `Io` when `users/` cannot be listed.
pub(super) fn not_real_folders(ws: &Workspaces) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = ws
        .entries_named_by_id(false)?
        .into_iter()
        .map(|id| Path::new("users").join(id.to_string()))
        .collect();
    out.extend(
        ws.entries_not_named_by_id()?
            .into_iter()
            .map(|name| Path::new("users").join(name)),
    );
    Ok(out)
}

/// The admin socket's name in the data dir (`admin::SOCKET_FILE`, which operations may not
/// use).
pub(crate) const SOCKET_NAME: &str = "redkeep.sock";

/// Refuses `dest` (an output file: a backup, an export) when it is one of the names redkeep
/// gives its own files in `data_dir`: the store, its owner marker and safety copies
/// (`redkeep.redb…`), the admin socket. Such a file would be taken for redkeep's, and
/// replaced or removed by the next command that makes it (a migration removes a stale owner
/// marker).
///
/// # Errors
/// `InvalidInput` naming `field` (`path`, `output`).
pub(crate) fn refuse_own_file_name(
    data_dir: &Path,
    dest: &Path,
    field: &'static str,
) -> Result<()> {
    let (Some(name), Some(parent)) = (dest.file_name(), dest.parent()) else {
        return Ok(());
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let same_dir = matches!(
        (std::fs::canonicalize(parent), std::fs::canonicalize(data_dir)),
        (Ok(a), Ok(b)) if a == b
    );
    let name = name.to_string_lossy();
    if same_dir && (name.starts_with(STORE_FILE) || name == SOCKET_NAME) {
        return Err(Error::invalid(
            field,
            format!(
                "{} is a name redkeep gives its own files in the data dir (the store, its owner \
                 marker and safety copies, the admin socket); choose another name, or write it \
                 outside the data dir",
                dest.display()
            ),
        ));
    }
    Ok(())
}

/// What a target data dir held before a command made a store there, to take that back on
/// failure.
pub(crate) struct Made {
    dir: PathBuf,
    pub(crate) existed: bool,
    had_store: bool,
    had_workspaces: bool,
    // The entries of `workspaces/users/` and `workspaces/trash/` before (`None`: too many
    // to list; none is taken back then).
    users_before: Option<std::collections::BTreeSet<std::ffi::OsString>>,
    trash_before: Option<std::collections::BTreeSet<std::ffi::OsString>>,
}

/// The names in `dir` (none when it cannot be listed), or `None` when there are too many to
/// keep.
fn names_in(dir: &Path) -> Option<std::collections::BTreeSet<std::ffi::OsString>> {
    match std::fs::read_dir(dir) {
        Err(_) => Some(Default::default()),
        Ok(entries) => {
            let names: std::collections::BTreeSet<_> = entries
                .take(10_001)
                .flatten()
                .map(|e| e.file_name())
                .collect();
            (names.len() <= 10_000).then_some(names)
        }
    }
}

impl Made {
    pub(crate) fn before(dir: &Path) -> Made {
        let workspaces = dir.join(crate::handle::WORKSPACES_DIR);
        Made {
            dir: dir.to_path_buf(),
            // A symlink (even a dangling one) is something there: never removed.
            existed: dir.symlink_metadata().is_ok(),
            had_store: dir.join(STORE_FILE).exists(),
            had_workspaces: workspaces.exists(),
            users_before: names_in(&workspaces.join("users")),
            trash_before: names_in(&workspaces.join("trash")),
        }
    }

    /// Removes the data dir when it was made, else the store and the workspaces folder
    /// when they were, else the user folders and trash entries that were not there before.
    pub(crate) fn take_back(&self) {
        if !self.existed {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        if !self.had_store {
            let store = self.dir.join(STORE_FILE);
            let _ = std::fs::remove_file(crate::store::owner_path(&store));
            let _ = std::fs::remove_file(store);
        }
        let workspaces = self.dir.join(crate::handle::WORKSPACES_DIR);
        if !self.had_workspaces {
            let _ = std::fs::remove_dir_all(workspaces);
            return;
        }
        for (before, folder) in [(&self.users_before, "users"), (&self.trash_before, "trash")] {
            if let (Some(before), Ok(now)) = (before, std::fs::read_dir(workspaces.join(folder))) {
                for entry in now.flatten() {
                    if !before.contains(&entry.file_name()) {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
    }
}
