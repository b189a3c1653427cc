//! Files the operations share: writing account data privately, opening a store file that no
//! process holds, naming safety copies, and moving whole workspace folders.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::handle::{SCHEMA_VERSION, WORKSPACES_DIR};
use crate::store::{Meta, Mode, Store, StoreOptions};
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

pub(super) fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    db.with_file_name(name)
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
