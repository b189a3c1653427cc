//! Schema versions, ordered migration steps with optional reverses, and logical copies of the
//! whole file.
//!
//! Each step runs in one write transaction together with its version bump, so a crash leaves
//! the file at one version or the next. Before the first pending step runs (either way), the
//! file is copied to `<db>.pre-v<N>.bak`. Steps read old data through frozen copies of the
//! record shapes of their version, never through today's types.

use std::path::{Path, PathBuf};

use super::db::Store;
use super::tx::{Meta, WriteTx};
use crate::clock::Timestamp;
use crate::error::{Error, Result};

/// A change of the data, run inside a step's write transaction with the time it runs at.
pub type Step = fn(&WriteTx<'_>, Timestamp) -> Result<()>;

/// One migration step: it brings the store from `version - 1` to `version`, and, when it has
/// a `down`, back.
pub struct Migration {
    /// The version the store has after this step.
    pub version: u64,
    /// A short name shown by `migrate status`.
    pub name: &'static str,
    /// The change.
    pub up: Step,
    /// The reverse change, if the step can be undone.
    pub down: Option<Step>,
}

/// What happened when migrations ran.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MigrationRun {
    /// Versions applied (or, going down, reverted), in order, with their names.
    pub applied: Vec<(u64, String)>,
    /// The copy taken before the first step, if any step ran.
    #[serde(serialize_with = "crate::fsutil::lossy::option")]
    pub backup: Option<PathBuf>,
    /// The schema version afterwards.
    pub version: u64,
}

fn backup_path(db: &Path, version: u64) -> PathBuf {
    let named = |n: Option<u64>| {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        match n {
            None => name.push(format!(".pre-v{version}.bak")),
            Some(n) => name.push(format!(".pre-v{version}.{n}.bak")),
        }
        db.with_file_name(name)
    };
    // An earlier run left its copy: keep it, and number this one (still ending in `.bak`,
    // so that what finds the copies by that name finds it too).
    let mut candidate = named(None);
    let mut n = 2;
    while candidate.symlink_metadata().is_ok() {
        candidate = named(Some(n));
        n += 1;
    }
    candidate
}

impl Store {
    /// When the first step of a run refuses (its own check said no, before anything was
    /// committed) and the file is still at the version the run began at, the file is as the
    /// copy taken before it: the copy is removed, so a refused run leaves nothing behind. On
    /// any other failure (an I/O error, a commit whose outcome is unknown) the copy is kept.
    /// Returns `e`.
    fn forget_unused_copy(&self, run: &MigrationRun, began_at: u64, e: Error) -> Error {
        let refused = matches!(
            e,
            Error::Denied { .. }
                | Error::ReadOnly { .. }
                | Error::InvalidInput { .. }
                | Error::Conflict { .. }
                | Error::NotFound { .. }
        );
        if refused
            && run.applied.is_empty()
            && matches!(self.schema_version(), Ok(v) if v.unwrap_or(0) == began_at)
            && let Some(copy) = &run.backup
            && let Err(gone) = std::fs::remove_file(copy)
        {
            tracing::warn!(copy = %copy.display(), error = %gone, "could not remove an unused copy");
        }
        e
    }

    /// Applies every step newer than the file's version, in order. A no-op when up to date.
    ///
    /// # Errors
    /// `NewerSchema` when the file is newer than the last step; the step's own error, in which
    /// case that step wrote nothing and earlier ones stay applied.
    pub fn migrate(&self, steps: &[Migration], now: Timestamp) -> Result<MigrationRun> {
        self.migrating(|| self.migrate_locked(steps, now))
    }

    fn migrate_locked(&self, steps: &[Migration], now: Timestamp) -> Result<MigrationRun> {
        let current = self.schema_version()?.unwrap_or(0);
        let target = steps.last().map_or(current, |s| s.version);
        if current > target {
            return Err(Error::NewerSchema {
                found: current,
                supported: target,
            });
        }
        let pending: Vec<&Migration> = steps.iter().filter(|s| s.version > current).collect();
        let mut run = MigrationRun {
            version: current,
            ..MigrationRun::default()
        };
        if pending.is_empty() {
            return Ok(run);
        }
        let backup = backup_path(&self.copies_base(), current);
        self.copy_to(&backup)?;
        run.backup = Some(backup);
        for step in pending {
            tracing::info!(
                version = step.version,
                name = step.name,
                "applying migration"
            );
            self.write_migrating(|tx| {
                // Re-check inside the transaction: another process may have migrated.
                if tx.schema_version()?.unwrap_or(0) >= step.version {
                    return Ok(());
                }
                (step.up)(tx, now)?;
                tx.set_schema_version(step.version)
            })
            .map_err(|e| self.forget_unused_copy(&run, current, e))?;
            run.applied.push((step.version, step.name.to_string()));
            run.version = step.version;
        }
        self.set_behind(None);
        Ok(run)
    }

    /// Reverts steps down to schema version `to` (default: one step), newest first, after
    /// taking the same copy as [`Store::migrate`].
    ///
    /// # Errors
    /// `Denied` when a step on the way has no reverse (nothing is changed) or nothing is
    /// below the current version to go to; `InvalidInput` when `to` is above the current
    /// version; the step's own error. A `to` below the first version means the first.
    pub fn migrate_down(
        &self,
        steps: &[Migration],
        to: Option<u64>,
        now: Timestamp,
    ) -> Result<MigrationRun> {
        // Other processes (or, on PostgreSQL, other instances) would go on writing this
        // build's records into the older schema.
        self.alone_with("be migrated down", || {
            self.migrating(|| self.migrate_down_locked(steps, to, now))
        })
    }

    fn migrate_down_locked(
        &self,
        steps: &[Migration],
        to: Option<u64>,
        now: Timestamp,
    ) -> Result<MigrationRun> {
        let current = self.schema_version()?.unwrap_or(0);
        let first = steps
            .first()
            .map_or(current, |s| s.version.saturating_sub(1));
        match to {
            Some(asked) if asked > current => {
                return Err(Error::invalid(
                    "to",
                    format!(
                        "the store is at schema version {current}, below {asked}; `migrate down` \
                         goes back to an earlier version (`migrate up` goes forward)"
                    ),
                ));
            }
            _ => {}
        }
        let to = to.unwrap_or(current.saturating_sub(1)).max(first);
        if to >= current {
            return Err(Error::denied(format!(
                "the store is at schema version {current}{}; there is nothing to revert",
                if current == first {
                    ", the first"
                } else {
                    ", as asked"
                }
            )));
        }
        let mut reverting: Vec<&Migration> = steps
            .iter()
            .filter(|s| s.version > to && s.version <= current)
            .collect();
        reverting.reverse();
        if let Some(s) = reverting.iter().find(|s| s.down.is_none()) {
            return Err(Error::denied(format!(
                "step v{} ({}) cannot be reversed; restore the copy taken before it (`redkeep restore <db>.pre-v{}.bak`) instead",
                s.version,
                s.name,
                s.version - 1
            )));
        }
        let mut run = MigrationRun {
            version: current,
            ..MigrationRun::default()
        };
        let backup = backup_path(&self.copies_base(), current);
        self.copy_to(&backup)?;
        run.backup = Some(backup);
        // Every step in one transaction: a step that refuses (step v2 when what it made is
        // in use) leaves the store as it was, the steps above it not reverted either.
        let reverted = self
            .write_migrating(|tx| {
                let mut reverted = Vec::new();
                for step in &reverting {
                    let Some(down) = step.down else { continue };
                    if tx.schema_version()?.unwrap_or(0) < step.version {
                        continue;
                    }
                    tracing::info!(
                        version = step.version,
                        name = step.name,
                        "reverting migration"
                    );
                    down(tx, now)?;
                    tx.set_schema_version(step.version - 1)?;
                    reverted.push((step.version, step.name.to_string()));
                }
                Ok(reverted)
            })
            .map_err(|e| self.forget_unused_copy(&run, current, e))?;
        for (version, name) in reverted {
            run.applied.push((version, name));
            run.version = version - 1;
        }
        if let Some(last) = steps.last()
            && run.version < current
        {
            self.set_behind(Some((run.version, last.version)));
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
        self.copy_file(tmp.path())?;
        crate::fsutil::persist(tmp, dest)
    }

    /// Deletes every table (records, indexes, metadata) in one write transaction, leaving an
    /// empty store at schema `version` whose id sequences keep their values, so ids are never
    /// handed out twice.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn wipe(&self, version: u64) -> Result<()> {
        self.wipe_marked(version, None)
    }

    /// [`Store::wipe`], setting the metadata entry `mark` in the same transaction (what an
    /// interrupted reset leaves for `check` to see).
    pub(crate) fn wipe_marked(&self, version: u64, mark: Option<(&str, &[u8])>) -> Result<()> {
        self.write(|tx| {
            let sequences = tx.sequences()?;
            // The store stays the one its data dir names.
            let id = tx.meta(crate::store::STORE_ID)?;
            let instance = tx.meta(crate::store::STORE_INSTANCE)?;
            tx.delete_all_tables()?;
            tx.set_schema_version(version)?;
            if let Some(id) = &id {
                tx.set_meta(crate::store::STORE_ID, id)?;
            }
            if let Some(instance) = &instance {
                tx.set_meta(crate::store::STORE_INSTANCE, instance)?;
            }
            if let Some((key, value)) = mark {
                tx.set_meta(key, value)?;
            }
            // Emptied, it holds nothing an earlier step made: as a store made at `version`.
            tx.set_meta(crate::store::BORN_AT, &version.to_be_bytes())?;
            for (table, value) in &sequences {
                tx.raise_sequence(table, *value)?;
            }
            Ok(())
        })
    }
}
