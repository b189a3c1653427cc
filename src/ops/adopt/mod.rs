//! `redkeep adopt`: moving an existing deployment in. It reads the old SQLite database through
//! a mapping (one SELECT per kind of record, columns named as redkeep's fields; presets for
//! the documented seed apps), and the old workspace folders, and creates a new store from them
//! in one transaction — all or nothing, `check` clean at the end.
//!
//! Old password hashes keep working (bcrypt, bcrypt over a salted password, PBKDF2 and argon2
//! PHC strings, Werkzeug's scrypt form) and become argon2id at each user's next login;
//! plain-text or unknown hashes are refused, or taken with no password that logs in when the
//! operator asks ([`WithoutPassword::Reset`]). Numeric ids are kept (so `users/{id}` folders
//! and the application's own references stay right); other ids (UUIDs) are kept as unique
//! external ids (`users().by_external_id`, `Org::EXTERNAL_ID`) and the records get new
//! numbers. Invite codes are stored hashed. A dry run creates nothing and lists every row it
//! cannot take.

mod mapping;
mod plan;
mod settings;
mod source;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use mapping::{Mapping, PRESETS, Query, UsersQuery, WorkspacesLayout};
pub use plan::AdoptCounts;
pub use settings::WithoutPassword;

use crate::error::{Error, Result};
use crate::handle::{InitSpec, Options, Redkeep, STORE_FILE, WORKSPACES_DIR};
use crate::store::{Meta, Mode};
use crate::workspace::WORKSPACE_FILE;

/// What to adopt.
#[derive(Debug, Clone)]
pub struct AdoptSpec {
    /// The old database: `sqlite:PATH`.
    pub from: String,
    /// Which columns hold what.
    pub mapping: Mapping,
    /// The old workspace folders (the folder that holds `users/`), if any.
    pub workspaces: Option<PathBuf>,
    /// Create nothing; report what would be created and every row that cannot be taken.
    pub dry_run: bool,
    /// What becomes of an account whose old password hash redkeep cannot verify (NULL,
    /// empty, plain text, or a form it does not read).
    pub accounts_without_password: WithoutPassword,
    /// Leave out the old workspace files (and avatars) that cannot be taken as they are, each
    /// named in the notes, rather than refuse the adoption; the old tree is only read.
    pub leave_out_bad_files: bool,
}

/// What an adoption did, or would do.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptReport {
    /// True when the store was created (false for a dry run, when rows were refused, or
    /// when the adopted store failed its check and was taken away again).
    pub adopted: bool,
    /// True for a dry run.
    pub dry_run: bool,
    /// What was (or would be) created.
    pub counts: AdoptCounts,
    /// Rows that cannot be taken, each with its reason. Any problem means nothing was
    /// adopted.
    pub problems: Vec<String>,
    /// Changes redkeep made to fit its rules (an owner given to an org, a default password
    /// that must be changed, …).
    pub notes: Vec<String>,
}

/// Adopts an old deployment into the data dir `data_dir`, which must hold no store yet.
///
/// The store is always the data dir's redb file: `options.store_url` is refused, since
/// adopt could not take back what it wrote into a PostgreSQL store (a live one included) if
/// rows are refused or the check fails. Adopt into a data dir, then move the store with
/// `redkeep move --to postgres://…`.
///
/// # Errors
/// `InvalidInput` when `options.store_url` is set; `Denied` when the data dir holds a store;
/// `InvalidInput` for an unreadable source or a query that fails; `Io` / `Storage` when
/// writing fails. Rows that cannot be taken are not errors: they are listed in the report,
/// and nothing is created.
pub fn adopt(data_dir: &Path, spec: &AdoptSpec, options: Options) -> Result<AdoptReport> {
    // As `Redkeep::open` reads it: an empty URL is no URL.
    if options
        .store_url
        .as_deref()
        .is_some_and(|u| !u.trim().is_empty())
    {
        return Err(Error::invalid(
            "store",
            "adopt fills the redb file of a new data dir and cannot take back what it would \
             write into a PostgreSQL store; adopt without store_url, then `redkeep move --to \
             postgres://…`",
        ));
    }
    // Adoptions next to one another take turns, so each finds the data dir as the one before
    // left it and cleans up only what it made itself.
    let _turn = if spec.dry_run {
        None
    } else {
        Some(lock_parent(data_dir)?)
    };
    if data_dir.join(STORE_FILE).exists() {
        match stopped_adoption(data_dir) {
            // Stopped before it adopted a row: nothing of it is worth keeping.
            Some(false) if !spec.dry_run => {
                let db = data_dir.join(STORE_FILE);
                let _ = std::fs::remove_file(crate::store::owner_path(&db));
                std::fs::remove_file(&db)
                    .map_err(|e| Error::io(format!("removing {}", db.display()), e))?;
            }
            Some(_) => {
                return Err(Error::denied(format!(
                    "{} holds what an adoption that stopped part way (a crash or a kill) \
                     wrote; remove its {STORE_FILE} and its {WORKSPACES_DIR} folder (they hold \
                     only that adoption's copy), then adopt again",
                    data_dir.display()
                )));
            }
            None => {
                return Err(Error::denied(format!(
                    "{} already holds a store; adopt creates a new one, so give an empty or \
                     new data dir",
                    data_dir.display()
                )));
            }
        }
    }
    // The dry run checks the target too: it works elsewhere, and the real run would copy
    // everything before finding out.
    let target_notes = check_target(data_dir)?;
    let mode_before = std::fs::symlink_metadata(data_dir)
        .ok()
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777);
    let source = source::Source::open(&spec.from)?;
    if let Some(w) = &spec.workspaces
        && !w.is_dir()
    {
        return Err(Error::invalid(
            "workspaces",
            format!("{} is not a folder", w.display()),
        ));
    }
    // A dry run works in a throwaway store, so the data dir is never touched.
    let scratch;
    let target = if spec.dry_run {
        scratch = crate::fsutil::private_temp_dir_in(None, "a temporary folder")?;
        scratch.path().to_path_buf()
    } else {
        data_dir.to_path_buf()
    };
    let made = super::files::Made::before(&target);
    // A panic (a defect) is no reason to leave a half-made store that blocks the next run.
    struct OnPanic<'a>(&'a super::files::Made, bool);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if self.1 && std::thread::panicking() {
                self.0.take_back();
            }
        }
    }
    let _on_panic = OnPanic(&made, !spec.dry_run);
    let result = adopt_in(&target, &source, spec, options);
    let failed = !matches!(&result, Ok(r) if r.adopted);
    if failed && !spec.dry_run {
        // Nothing may stay behind: the store file, the folders it wrote, and the data dir
        // if adopt made it; a data dir that was there keeps its mode.
        made.take_back();
        if let Some(mode) = mode_before
            && data_dir.is_dir()
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(mode));
        }
    }
    result.map(|mut r| {
        r.notes.splice(0..0, target_notes);
        r
    })
}

/// Checks the data dir adopt is to fill before anything is read or copied (the dry run
/// included): it must belong to the user running adopt, who must be able to create files
/// in it. Root adopting into another user's data dir is refused: the store and folders
/// would belong to root, and the application could not open them. Returns notes: the mode
/// the data dir will be given, or the owner of the new data dir's folder when root makes it
/// there for another user.
fn check_target(data_dir: &Path) -> Result<Vec<String>> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let me = rustix::process::geteuid().as_raw();
    let shown = data_dir.display();
    let writable = |dir: &Path| {
        rustix::fs::access(
            dir,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .is_ok()
    };
    let mut notes = Vec::new();
    match std::fs::metadata(data_dir) {
        Ok(m) if !m.is_dir() => {
            return Err(Error::invalid(
                "data dir",
                format!("{shown} is not a folder; give an empty or new data dir"),
            ));
        }
        Ok(m) => {
            if m.uid() != me {
                let how = if me == 0 {
                    format!(
                        "adopting as root would leave a store and folders owned by root that \
                         the application (uid {owner}) cannot open: run adopt as uid {owner} \
                         (such as `sudo -u '#{owner}' redkeep …`)",
                        owner = m.uid()
                    )
                } else {
                    format!(
                        "redkeep keeps its data dir private to its owner: run adopt as uid \
                         {owner}, or give a data dir of your own",
                        owner = m.uid()
                    )
                };
                return Err(Error::denied(format!(
                    "the data dir {shown} belongs to uid {}, not to the user running adopt \
                     (uid {me}); {how}",
                    m.uid()
                )));
            }
            if !writable(data_dir) {
                return Err(Error::denied(format!(
                    "adopt cannot create files in the data dir {shown} (mode {:04o}); \
                     `chmod 700 {shown}` lets its owner do so",
                    m.permissions().mode() & 0o7777
                )));
            }
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                notes.push(format!(
                    "the data dir {shown} is mode {mode:04o}; the adoption makes it 0700 \
                     (redkeep keeps its data dir private), and leaves it as it was if \
                     nothing is adopted"
                ));
            }
        }
        Err(_) => {
            let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.into());
            // The nearest folder that is there: adopt makes the rest.
            let mut parent = absolute.parent();
            while let Some(p) = parent
                && !p.exists()
            {
                parent = p.parent();
            }
            let Some(parent) = parent else {
                return Ok(notes);
            };
            if !writable(parent) {
                return Err(Error::denied(format!(
                    "adopt cannot create the data dir {shown}: {} does not let uid {me} create \
                     files in it",
                    parent.display()
                )));
            }
            if let Ok(m) = std::fs::metadata(parent)
                && me == 0
                && m.uid() != 0
            {
                notes.push(format!(
                    "the new data dir {shown} and all in it belong to root, while {} belongs \
                     to uid {owner}: if the application runs as uid {owner}, `chown -R {owner} \
                     {shown}` before it opens the store",
                    parent.display(),
                    owner = m.uid()
                ));
            }
        }
    }
    Ok(notes)
}

/// Takes the lock of the folder that holds `target` (waiting for another adoption there).
fn lock_parent(target: &Path) -> Result<std::fs::File> {
    let parent = holder(target)?;
    let parent = parent.as_path();
    let dir = std::fs::File::open(parent)
        .map_err(|e| Error::io(format!("opening {}", parent.display()), e))?;
    rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        Error::io(
            format!("locking {} for the adoption", parent.display()),
            e.into(),
        )
    })?;
    Ok(dir)
}

/// The real folder that holds `target`, which need not exist yet: symlinks and `..` are
/// resolved, so every spelling of one data dir (`d`, `./d`, `d/.`, `d/sub/..`, a symlink to
/// it) names the same folder, and adoptions into it take turns.
fn holder(target: &Path) -> Result<PathBuf> {
    let resolve = |p: &Path| {
        std::fs::canonicalize(p).map_err(|e| Error::io(format!("resolving {}", p.display()), e))
    };
    let absolute = std::path::absolute(target)
        .map_err(|e| Error::io(format!("resolving {}", target.display()), e))?;
    match resolve(&absolute) {
        Ok(real) => Ok(real
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)),
        // Not there yet: the folder it is to be made in.
        Err(_) => resolve(absolute.parent().unwrap_or(Path::new("/"))),
    }
}

/// Whether the data dir's store is one an adoption that stopped part way left (its mark is
/// there): `Some(true)` when it had adopted rows, `Some(false)` when not yet.
fn stopped_adoption(data_dir: &Path) -> Option<bool> {
    let store = super::files::open_file_store(&data_dir.join(STORE_FILE), Mode::Exclusive).ok()?;
    store
        .read(|tx| {
            if tx.meta(crate::store::ADOPT_UNFINISHED)?.is_none() {
                return Ok(None);
            }
            Ok(Some(tx.table::<crate::User>().count()? > 0))
        })
        .ok()
        .flatten()
}

fn adopt_in(
    target: &Path,
    source: &source::Source,
    spec: &AdoptSpec,
    options: Options,
) -> Result<AdoptReport> {
    let settings = settings::Settings {
        workspaces: spec.workspaces.clone(),
        without_password: spec.accounts_without_password,
        leave_out_bad_files: spec.leave_out_bad_files,
        max_doc_bytes: options
            .workspace
            .max_doc_bytes
            .unwrap_or(crate::workspace::DEFAULT_MAX_DOC_BYTES),
    };
    let rk = Redkeep::open(target, options.create(true))?;
    // Until the folders are written too: a kill on the way leaves a store that `check`
    // names and the next adoption recognises.
    rk.store()
        .write(|tx| tx.set_meta(crate::store::ADOPT_UNFINISHED, b"1"))?;
    rk.init(InitSpec {
        no_admin: true,
        ..InitSpec::default()
    })?;
    let now = rk.now();
    let mut outcome = None;
    let written = rk.store().write_here(|tx| {
        let o = plan::adopt_into(tx, now, source, &spec.mapping, &settings)?;
        let keep = o.problems.is_empty() && !spec.dry_run;
        outcome = Some(o);
        if keep {
            Ok(())
        } else {
            // Leave nothing behind: the transaction is rolled back.
            Err(Error::Cancelled {
                what: "the adoption".into(),
            })
        }
    });
    let o = match (written, outcome) {
        // The plan itself failed (an unreadable source, a missing table): that error is the
        // one to report.
        (Err(e), None) => return Err(e),
        (Ok(()), None) => {
            return Err(Error::Invariant {
                what: "the adoption ran no transaction".into(),
            });
        }
        (Ok(()), Some(o)) => o,
        (Err(Error::Cancelled { .. }), Some(o)) => {
            return Ok(AdoptReport {
                adopted: false,
                dry_run: spec.dry_run,
                counts: o.counts,
                problems: o.problems,
                notes: o.notes,
            });
        }
        (Err(e), Some(_)) => return Err(e),
    };
    let ws = rk.workspaces();
    for f in &o.folders {
        // The count is the gallery's (old apps let the two drift apart; a repair would set
        // it so), and every file keeps its time, as a move or an import does.
        let (mut doc, modified) = f.doc.clone().unwrap_or_default();
        doc.piece_count = f.pieces.len() as u64;
        if f.doc.is_some() || !f.pieces.is_empty() {
            ws.put_doc(f.user, &doc)?;
            ws.settle_count(f.user)?;
            if let Some(at) = modified {
                crate::fsutil::set_modified(&ws.dir(f.user).join(WORKSPACE_FILE), at)?;
            }
        }
        // Each piece is read again as it is written (a big gallery is never held in memory
        // at once), and none is synced on its own: one flush below makes them all durable.
        let cap = settings.max_doc_bytes;
        ws.put_pieces_unsynced(f.user, &mut f.pieces.iter().map(|p| p.read_again(cap)))?;
    }
    // Durable before the store stops saying the adoption is unfinished: a crash before this
    // leaves a store the next adoption knows to take away.
    ws.sync_users()?;
    rk.store()
        .write(|tx| tx.remove_meta(crate::store::ADOPT_UNFINISHED))?;
    let report = rk.check(false)?;
    let mut problems = o.problems;
    problems.extend(report.problems.iter().map(|p| format!("check: {p}")));
    // All or nothing: a store that fails its check is taken away again by the caller.
    Ok(AdoptReport {
        adopted: report.ok,
        dry_run: false,
        counts: o.counts,
        problems,
        notes: o.notes,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use super::{holder, lock_parent};

    /// The device and inode of a folder: one folder however its path is spelled.
    fn identity(p: &Path) -> (u64, u64) {
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    #[test]
    fn every_spelling_of_a_data_dir_locks_the_same_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::create_dir_all(base.join("parent/d/sub")).unwrap();
        std::fs::create_dir(base.join("other")).unwrap();
        std::os::unix::fs::symlink(base.join("parent/d"), base.join("link")).unwrap();
        let parent = identity(&base.join("parent"));
        for spelling in [
            "parent/d",
            "parent/d/.",
            "parent/./d",
            "other/../parent/d",
            "parent/d/sub/..",
            "link",
            "parent/not-yet",
        ] {
            let held = holder(&base.join(spelling)).unwrap();
            assert_eq!(identity(&held), parent, "{spelling} is held by {held:?}");
        }
        // Held through one spelling, the folder is busy for another.
        let _turn = lock_parent(&base.join("link")).unwrap();
        let other = std::fs::File::open(base.join("parent")).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
    }
}
