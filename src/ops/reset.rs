//! Emptying a store: its contents are copied first, its id sequences kept, and its workspace
//! folders moved to the trash.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::files::{folders_of, free_with_suffix, open_file_store};
use crate::error::{Error, Result};
use crate::handle::{SCHEMA_VERSION, STORE_FILE};
use crate::store::Mode;

/// What `reset` did.
#[derive(Debug, Clone, Serialize)]
pub struct ResetReport {
    /// The copy of the store taken first.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub backup: PathBuf,
    /// Where the workspace folders went, if there were any.
    #[serde(serialize_with = "crate::fsutil::lossy::option")]
    pub folders: Option<PathBuf>,
}

/// Empties the store of `data_dir` after copying it (`redkeep.redb.pre-reset-<time>.bak`),
/// keeping its id sequences so no id is handed out twice, and moves every workspace folder
/// to the trash. Needs the store to be free.
///
/// # Errors
/// `NotInitialized`; `InUse` when a process holds the store.
pub fn reset(data_dir: &Path, now: crate::Timestamp) -> Result<ResetReport> {
    reset_store(data_dir, None, now)
}

/// [`reset`] of the store at `store_url` (see [`crate::Options::store_url`]; `None`: the
/// redb file in the data dir). A PostgreSQL store is emptied while its lock is held
/// exclusively (refused while an application has it open); the copy taken first is a redb
/// file in the data dir.
///
/// # Errors
/// As [`reset`].
pub fn reset_store(
    data_dir: &Path,
    store_url: Option<&str>,
    now: crate::Timestamp,
) -> Result<ResetReport> {
    // The copy goes next to the store file, or for a store on a server, into the data dir.
    let (store, db) = match store_url {
        Some(url) => (
            super::files::open_url_store(url, false)?,
            data_dir.join(super::files::REMOTE_COPIES),
        ),
        None => {
            let db = data_dir.join(STORE_FILE);
            if !crate::fsutil::is_there(&db)? {
                return Err(Error::NotInitialized { path: db });
            }
            (open_file_store(&db, Mode::Exclusive)?, db)
        }
    };
    store.alone_with("be reset", || {
        // A stopped reset: another copy now would be of the emptied store, and its undo
        // would restore nothing; it is finished (or undone) from its own mark. A stopped
        // restore: its folders wait to be put in place, and would be orphaned.
        super::guards::refuse_stopped_operation(&store)?;
        super::guards::refuse_half_moved(&store, "reset")?;
        // The data dir's folders, which go to the trash, must be this store's.
        crate::handle::refuse_untied(data_dir, &store)?;
        let version = store.schema_version()?.unwrap_or(SCHEMA_VERSION);
        crate::fsutil::create_private_dir(data_dir)?;
        // Checked before the store is emptied: the folders must be able to follow.
        folders_of(data_dir)?.ready_to_trash_all()?;
        let backup = free_with_suffix(&db, &format!(".pre-reset-{}.bak", now.0));
        store.copy_to(&backup)?;
        // Marked until the folders have followed: a reset killed in between is seen by
        // `check`, and `check --repair` finishes it.
        let mark = format!(
            "{}\n{}",
            std::path::absolute(&backup)
                .unwrap_or_else(|_| backup.clone())
                .display(),
            now.0
        );
        store.wipe_marked(
            version,
            Some((crate::store::RESET_UNFINISHED, mark.as_bytes())),
        )?;
        let folders = folders_of(data_dir)?.trash_all(now)?;
        store.write(|tx| {
            // An emptied store is as `init --no-admin` makes one: with the built-in roles
            // (what opens it only to read, or a check, finds there).
            if version == SCHEMA_VERSION {
                crate::auth::roles::put_system_roles(tx, now)?;
            }
            tx.remove_meta(crate::store::RESET_UNFINISHED)
        })?;
        tracing::warn!(backup = %backup.display(), "store reset");
        Ok(ResetReport { backup, folders })
    })
}
