//! Files the operations share: writing account data privately, opening a store file that no
//! process holds, naming safety copies, and moving whole workspace folders.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::handle::{SCHEMA_VERSION, WORKSPACES_DIR};
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
    let first = with_suffix(db, suffix);
    let mut path = first.clone();
    let mut n = 2u64;
    while path.symlink_metadata().is_ok() {
        path = with_suffix(db, &format!("{suffix}.{n}"));
        n += 1;
    }
    path
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
