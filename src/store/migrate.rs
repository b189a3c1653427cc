//! Schema versions, ordered migration steps, and logical copies of the whole file.
//!
//! Each step runs in one write transaction together with its version bump, so a crash leaves
//! the file at one version or the next. Before the first pending step runs, the file is copied
//! to `<db>.pre-v<N>.bak`.

use std::path::{Path, PathBuf};

use redb::{ReadableTable, TableDefinition, TableHandle};

use super::{Meta, Store, WriteTx};
use crate::error::{Error, Result};

/// One migration step: it brings the store from `version - 1` to `version`.
pub struct Migration {
    /// The version the store has after this step.
    pub version: u64,
    /// A short name shown by `migrate status`.
    pub name: &'static str,
    /// The change, run inside the step's write transaction, with the time it runs at.
    pub run: fn(&WriteTx, crate::Timestamp) -> Result<()>,
}

/// What happened when migrations ran.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MigrationRun {
    /// Versions applied, in order, with their names.
    pub applied: Vec<(u64, String)>,
    /// The copy taken before the first step, if any step ran.
    pub backup: Option<PathBuf>,
}

fn table_names<I: Iterator<Item = redb::UntypedTableHandle>>(
    listed: std::result::Result<I, redb::StorageError>,
) -> Result<Vec<String>> {
    Ok(listed
        .map_err(|e| Error::storage("listing tables", e))?
        .map(|h| h.name().to_string())
        .collect())
}

fn backup_path(db: &Path, version: u64) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".pre-v{version}.bak"));
    db.with_file_name(name)
}

impl Store {
    /// Applies every step newer than the file's version, in order. A no-op when up to date.
    ///
    /// # Errors
    /// `NewerSchema` when the file is newer than the last step; the step's own error, in which
    /// case that step wrote nothing and earlier ones stay applied.
    pub fn migrate(&self, steps: &[Migration], now: crate::Timestamp) -> Result<MigrationRun> {
        let current = self.schema_version()?.unwrap_or(0);
        let target = steps.last().map_or(current, |s| s.version);
        if current > target {
            return Err(Error::NewerSchema {
                found: current,
                supported: target,
            });
        }
        let pending: Vec<&Migration> = steps.iter().filter(|s| s.version > current).collect();
        let mut run = MigrationRun::default();
        if pending.is_empty() {
            return Ok(run);
        }
        let mut backup = backup_path(self.path(), current);
        if backup.exists() {
            // An earlier attempt (that failed in a step) left its copy: keep it, add another.
            let mut name = backup.file_name().unwrap_or_default().to_os_string();
            name.push(format!(".{}", now.0));
            backup = backup.with_file_name(name);
        }
        self.copy_to(&backup)?;
        run.backup = Some(backup);
        for step in pending {
            self.write(|tx| {
                // Re-check inside the transaction: another process may have migrated.
                if tx.schema_version()?.unwrap_or(0) >= step.version {
                    return Ok(());
                }
                (step.run)(tx, now)?;
                tx.set_schema_version(step.version)
            })?;
            run.applied.push((step.version, step.name.to_string()));
        }
        Ok(run)
    }

    /// Writes a consistent copy of every table, taken from one read snapshot, to a new file at
    /// `dest` (mode 0600). Other processes may keep writing meanwhile.
    ///
    /// # Errors
    /// `InvalidInput` when `dest` exists; `Io` or `Storage` when writing it fails.
    pub fn copy_to(&self, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(Error::invalid(
                "path",
                format!("{} already exists; choose a new file", dest.display()),
            ));
        }
        let tmp = crate::fsutil::temp_sibling(dest)?;
        let target = redb::Database::create(tmp.path())
            .map_err(|e| Error::storage("creating the copy", e))?;
        self.read(|src| {
            let out = target
                .begin_write()
                .map_err(|e| Error::storage("writing the copy", e))?;
            let names = table_names(src.txn.list_tables())?;
            for name in names {
                let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
                let from = src
                    .txn
                    .open_table(def)
                    .map_err(|e| Error::storage("opening a table", e))?;
                let mut to = out
                    .open_table(def)
                    .map_err(|e| Error::storage("writing the copy", e))?;
                for item in from.iter().map_err(|e| Error::storage("copying", e))? {
                    let (k, v) = item.map_err(|e| Error::storage("copying", e))?;
                    to.insert(k.value(), v.value())
                        .map_err(|e| Error::storage("copying", e))?;
                }
            }
            out.commit()
                .map_err(|e| Error::storage("writing the copy", e))
        })?;
        drop(target);
        crate::fsutil::persist(tmp, dest)
    }
}

impl Store {
    /// Deletes every table (records, indexes, sequences, metadata) in one write transaction,
    /// leaving an empty store at schema `version`.
    pub fn wipe(&self, version: u64) -> Result<()> {
        self.write(|tx| {
            let names = table_names(tx.txn.list_tables())?;
            for name in names {
                let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
                tx.txn
                    .delete_table(def)
                    .map_err(|e| Error::storage("deleting a table", e))?;
            }
            tx.set_schema_version(version)
        })
    }
}
