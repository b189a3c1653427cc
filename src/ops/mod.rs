//! Operations on a whole data dir: backups and restores (the store and every workspace
//! folder in one archive), streamed export and import of JSON lines, reset and statistics.
//! Functions that replace the whole store (`restore`, `reset`) work on a data dir that no
//! process holds; the others take an open handle.

mod backup;
mod transfer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use backup::{BackupReport, RestoreReport, backup, check_file, restore};
pub use transfer::{EXPORT_FORMAT, TransferSummary, export, import};

use crate::error::{Error, Result};
use crate::handle::{SCHEMA_VERSION, STORE_FILE, WORKSPACES_DIR};
use crate::store::{Meta, Mode, Store, StoreOptions, TableStats};
use crate::workspace::{WorkspaceOptions, Workspaces};
use crate::{Redkeep, fsutil};

/// Sizes of a store.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Per table.
    pub tables: BTreeMap<String, TableStats>,
    /// The store file's size in bytes.
    pub file_bytes: u64,
    /// The store file.
    pub path: PathBuf,
    /// Its schema version.
    pub schema_version: u64,
    /// The storage engine.
    pub engine: &'static str,
}

/// Records, index entries and bytes per table, and the file size.
///
/// # Errors
/// `Storage` when the store cannot be read.
pub fn stats(rk: &Redkeep) -> Result<Stats> {
    let tables = rk.tables();
    let per_table = rk.store().read(|tx| {
        let mut out = BTreeMap::new();
        for t in &tables {
            out.insert(t.name().to_string(), t.stats(tx)?);
        }
        Ok(out)
    })?;
    let path = rk.store().path().to_path_buf();
    Ok(Stats {
        tables: per_table,
        file_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        schema_version: rk.store().schema_version()?.unwrap_or(SCHEMA_VERSION),
        engine: "redb",
        path,
    })
}

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

pub(crate) fn open_file_store(path: &Path, mode: Mode) -> Result<Store> {
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

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    db.with_file_name(name)
}

// The workspaces of a data dir, for moving whole folders (no owner lookups are made).
fn folders_of(data_dir: &Path) -> Result<Workspaces> {
    Workspaces::open(
        data_dir.join(WORKSPACES_DIR),
        WorkspaceOptions::default(),
        std::sync::Arc::new(|_| Ok(None)),
    )
}

/// What `reset` did.
#[derive(Debug, Clone, Serialize)]
pub struct ResetReport {
    /// The copy of the store taken first.
    pub backup: PathBuf,
    /// Where the workspace folders went, if there were any.
    pub folders: Option<PathBuf>,
}

/// Empties the store of `data_dir` after copying it (`redkeep.redb.pre-reset-<time>.bak`),
/// keeping its id sequences so no id is handed out twice, and moves every workspace folder
/// to the trash. Needs the store to be free.
///
/// # Errors
/// `NotInitialized`; `InUse` when a process holds the store.
pub fn reset(data_dir: &Path, now: crate::Timestamp) -> Result<ResetReport> {
    let db = data_dir.join(STORE_FILE);
    if !db.exists() {
        return Err(Error::NotInitialized { path: db });
    }
    let store = open_file_store(&db, Mode::Exclusive)?;
    let version = store.schema_version()?.unwrap_or(SCHEMA_VERSION);
    let backup = with_suffix(&db, &format!(".pre-reset-{}.bak", now.0));
    store.copy_to(&backup)?;
    store.wipe(version)?;
    let folders = folders_of(data_dir)?.trash_all(now)?;
    tracing::warn!(backup = %backup.display(), "store reset");
    Ok(ResetReport { backup, folders })
}

fn sequences_of(store: &Store) -> Result<Vec<(String, u64)>> {
    store.read(|tx| tx.sequences())
}
