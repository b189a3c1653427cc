//! `Redkeep`: the handle an application opens on its data dir. It holds the store, the
//! account rules and the workspaces folder, and hands out one handle per noun
//! (`rk.users()`, `rk.sessions()`, …). Every operation lives on those handles; this file
//! only opens, initialises, migrates and checks the whole.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::agents::Agents;
use crate::auth::api_keys::ApiKeys;
use crate::auth::audit::AuditLog;
use crate::auth::invites::Invites;
use crate::auth::migrations::{FOLDERS_UNMARKED, MIGRATIONS, UnmarkedFolders};
use crate::auth::orgs::Orgs;
use crate::auth::password::{PasswordParams, Passwords};
use crate::auth::recovery::{Recovery, RecoveryPolicy};
use crate::auth::roles::{self, Roles};
use crate::auth::sessions::{LockoutPolicy, SessionPolicy, Sessions};
use crate::auth::users::{CreatedUser, NewUser, User, Users};
use crate::auth::web_sessions::WebSessions;
use crate::auth::{Accounts, Policy, UserFiles, flows, references};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{Error, Result};
use crate::store::{
    CheckReport, Durability, Meta, MigrationRun, Mode, Record, Store, StoreOptions, TableCheck,
    check_app_table,
};
use crate::workspace::{FolderOwner, Owners, WorkspaceOptions, Workspaces};

/// The file name of the store inside a data dir.
pub const STORE_FILE: &str = crate::fsutil::STORE_FILE_NAME;

/// The note `move` leaves in a data dir whose redb store it moved to a server (which keeps
/// using the data dir's folders), in place of the store file it renamed.
pub(crate) const MOVED_NOTE: &str = "redkeep.moved";

/// What [`MOVED_NOTE`] holds.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct MovedNote {
    /// The store URL it moved to, without password.
    pub(crate) to: String,
    /// Where the store file went.
    pub(crate) kept: PathBuf,
}

/// The note in `dir` (see [`MOVED_NOTE`]): `None` when there is none, `Some(None)` when it
/// does not read.
pub(crate) fn moved_note(dir: &Path) -> Option<Option<MovedNote>> {
    match read_note(&dir.join(MOVED_NOTE)) {
        Ok(None) => None,
        Ok(Some(text)) => Some(serde_json::from_slice(&text).ok()),
        // A symlink, or one that cannot be read: a note is there, and does not read.
        Err(_) => Some(None),
    }
}

/// Largest note of a data dir read ([`MOVED_NOTE`], [`STORE_NOTE`]): they hold a few hundred
/// bytes.
const MAX_NOTE_BYTES: u64 = 64 * 1024;

/// The bytes of the note at `path`, `None` when there is none (or its folder is a file). A
/// symlink is never followed, and anything but a regular file is refused, as a file bigger
/// than [`MAX_NOTE_BYTES`] is.
///
/// # Errors
/// `UnsafePath` for a symlink or what is not a regular file; `InvalidInput` for one too big;
/// `Io` when it cannot be read.
fn read_note(path: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match crate::fsutil::open_regular(path) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(None),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotADirectory => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    file.take(MAX_NOTE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if text.len() as u64 > MAX_NOTE_BYTES {
        return Err(Error::invalid(
            "data dir",
            format!(
                "{} is over {MAX_NOTE_BYTES} bytes, which no note redkeep writes is: put it \
                 back from a copy of the data dir",
                path.display()
            ),
        ));
    }
    Ok(Some(text))
}

/// The refusal of an open of `dir` without a store URL when its store moved to a server
/// (see [`MOVED_NOTE`]); `None` when it did not.
pub(crate) fn moved_away(dir: &Path) -> Option<Error> {
    let (to, kept) = match moved_note(dir)? {
        Some(note) => (note.to, note.kept.display().to_string()),
        None => ("a PostgreSQL server".to_string(), "beside it".to_string()),
    };
    Some(Error::denied(format!(
        "the store of {} was moved to {to} (its old file is kept as {kept}, and the data dir \
         still holds the folders that store uses); give that store with `--store URL` (or \
         REDKEEP_STORE_URL), or move it back with `redkeep --data-dir {} --store URL move \
         --to NEW_DIR`",
        dir.display(),
        dir.display()
    )))
}
/// The note in a data dir that names the store its workspace folders belong to (its id and
/// where it is): an open of another store on the data dir is refused, so that a mistyped
/// schema, a forgotten `--store`, a wrong `--data-dir` or a half-filled move's target never
/// takes the folders for its own (and `check --repair`, `reset` or `restore` never moves
/// them to the trash). Written by the first open for writing of a data dir that has none
/// (existing data dirs move in without a step), by a finished `move` (naming the target)
/// and by a `restore` (naming the restored store).
pub(crate) const STORE_NOTE: &str = "redkeep.store";

/// What [`STORE_NOTE`] holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoreNote {
    /// The store's id ([`crate::store::STORE_ID`]).
    pub(crate) id: String,
    /// Where the store is: its URL without password on a server; `None` for the redb file
    /// in the data dir.
    pub(crate) store: Option<String>,
    /// Which copy of the store ([`crate::store::STORE_INSTANCE`]); `None` in notes of
    /// earlier builds, which name the store by its id alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) instance: Option<String>,
}

impl StoreNote {
    /// The note naming the copy `instance` of the store `id` at `url` (`None`: the redb
    /// file in the data dir), kept without its password.
    pub(crate) fn of(url: Option<&str>, id: String, instance: Option<String>) -> StoreNote {
        StoreNote {
            id,
            store: url.map(crate::store::redact),
            instance,
        }
    }

    /// Whether the note names the store `id` (`None`: a store without one yet), on a server
    /// when `on_server`. The kind counts too: a data dir whose store is on a server holds
    /// no live redb file, and the other way round.
    pub(crate) fn names(&self, id: Option<&str>, on_server: bool) -> bool {
        id == Some(self.id.as_str()) && self.store.is_some() == on_server
    }

    /// Whether the note names this copy of the store `id`: [`StoreNote::names`], and the
    /// copy `instance` when the note names one (a restore's: the store it replaced, or the
    /// one it came from, shares the id).
    pub(crate) fn owned_by(
        &self,
        id: Option<&str>,
        instance: Option<&str>,
        on_server: bool,
    ) -> bool {
        self.names(id, on_server)
            && self
                .instance
                .as_deref()
                .is_none_or(|named| Some(named) == instance)
    }
}

/// The note in `dir` (see [`STORE_NOTE`]); `None` when there is none. A symlink is never
/// followed.
///
/// # Errors
/// `InvalidInput` when it does not read; `UnsafePath` for a symlink or what is not a regular
/// file; `Io` when it cannot be read.
pub(crate) fn store_note(dir: &Path) -> Result<Option<StoreNote>> {
    let path = dir.join(STORE_NOTE);
    let Some(text) = read_note(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&text).map(Some).map_err(|e| {
        Error::invalid(
            "data dir",
            format!(
                "{} does not read ({e}); it names the store the data dir's workspace folders \
                 belong to: put it back from a copy of the data dir, or remove it if the store \
                 you give is the one these folders belong to",
                path.display()
            ),
        )
    })
}

/// Writes the note of `dir` (see [`STORE_NOTE`]), mode 0600.
///
/// # Errors
/// `Io` when it cannot be written.
pub(crate) fn write_store_note(dir: &Path, note: &StoreNote) -> Result<()> {
    let text = serde_json::to_vec(note).map_err(|e| Error::Invariant {
        what: format!("the note naming the data dir's store cannot be written as JSON: {e}"),
    })?;
    crate::fsutil::write_private(&dir.join(STORE_NOTE), &text)
}

/// The files of a data dir that say which store it holds and where: none may be another
/// user's or a symlink (see [`refuse_untrusted`]).
const TRUSTED_FILES: [&str; 4] = [STORE_FILE, STORE_NOTE, MOVED_NOTE, POSTGRES_COPIES];

/// Refuses the data dir `dir` when its owner, or the owner of a file in it that says what the
/// store is, is not one this process may trust with the store (an open that `writes`, or
/// only reads); see [`crate::fsutil::refuse_untrusted_data_dir`] for the rule.
///
/// # Errors
/// `Denied`, saying whose the data dir or file is and what to run.
pub(crate) fn refuse_untrusted(dir: &Path, writes: bool) -> Result<()> {
    crate::fsutil::refuse_untrusted_data_dir(dir, &TRUSTED_FILES, writes)
}

/// A new store id: 16 random bytes, in hex.
///
/// # Errors
/// `Io` when the system's random source fails.
pub(crate) fn new_store_id() -> Result<String> {
    let mut b = [0u8; 16];
    crate::auth::token::random_bytes(&mut b)?;
    Ok(crate::bytes::hex(&b))
}

/// The id of `store` ([`crate::store::STORE_ID`]), if it has one.
///
/// # Errors
/// `Storage` when it cannot be read.
pub(crate) fn store_id(store: &Store) -> Result<Option<String>> {
    meta_text(store, crate::store::STORE_ID)
}

/// The copy of `store` ([`crate::store::STORE_INSTANCE`]), if it has one.
///
/// # Errors
/// `Storage` when it cannot be read.
pub(crate) fn store_instance(store: &Store) -> Result<Option<String>> {
    meta_text(store, crate::store::STORE_INSTANCE)
}

/// The metadata entry `key` of `store` as text, if there is one.
fn meta_text(store: &Store, key: &str) -> Result<Option<String>> {
    Ok(store
        .read(|tx| tx.meta(key))?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// The id of `store`, given one first when it has none (a store made before ids were).
///
/// # Errors
/// `Storage` when it cannot be read or written.
fn ensure_store_id(store: &Store) -> Result<String> {
    ensure_meta_text(store, crate::store::STORE_ID)
}

/// The copy of `store`, given one first when it has none.
///
/// # Errors
/// `Storage` when it cannot be read or written.
fn ensure_store_instance(store: &Store) -> Result<String> {
    ensure_meta_text(store, crate::store::STORE_INSTANCE)
}

/// The metadata entry `key` of `store` (an id: 32 random hex digits), set first when there
/// is none. Set only where none is: two processes opening the store at once agree on one.
fn ensure_meta_text(store: &Store, key: &str) -> Result<String> {
    if let Some(text) = meta_text(store, key)? {
        return Ok(text);
    }
    let fresh = new_store_id()?;
    store.write(|tx| match tx.meta(key)? {
        Some(text) => Ok(String::from_utf8_lossy(&text).into_owned()),
        None => {
            tx.set_meta(key, fresh.as_bytes())?;
            Ok(fresh.clone())
        }
    })
}

/// The refusal of a store (`this`: what it is; `None` when no store was given) on the data
/// dir `dir`, whose note names another store.
pub(crate) fn foreign_store(dir: &Path, note: &StoreNote, this: Option<&str>) -> Error {
    let (owner, reach) = match &note.store {
        Some(url) => (
            format!("the store on {url}"),
            format!(
                "give that store with `--store {}` (or REDKEEP_STORE_URL, with its password \
                 where `***` stands)",
                shell_word(Path::new(url))
            ),
        ),
        None => (
            format!("the redb file {}", dir.join(STORE_FILE).display()),
            "run the command without --store (and without REDKEEP_STORE_URL)".to_string(),
        ),
    };
    let this = match this {
        Some(this) => format!(", not to {this}"),
        None => ", and no store URL was given".to_string(),
    };
    Error::denied(format!(
        "the workspace folders in {} belong to {owner} (store id {}){this}; {reach}; if that \
         store is gone for good and these folders are to be this one's, remove {} first",
        dir.display(),
        note.id,
        dir.join(STORE_NOTE).display()
    ))
}

/// Ties the data dir `dir` to `store` (see [`STORE_NOTE`]): refused when its note `note`
/// names another store. A note is written where there is none, and the store given an id where it
/// has none, when `writable`. A store an import, an adoption or a move stopped filling is
/// left alone: it is no whole store yet (and a half-filled move target never matches).
fn tie_data_dir(
    dir: &Path,
    note: Option<StoreNote>,
    store: &Store,
    url: Option<&str>,
    writable: bool,
) -> Result<()> {
    // What follows looks at, in one read where it can (on a server each read is round
    // trips of its own): whether the store is whole, its id, its copy, a restore's mark.
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    let known = store
        .read(|tx| {
            let [import, adopt, moving] = NOT_WHOLE_MARKS;
            let mut m = crate::store::metas(
                tx,
                &[
                    import,
                    adopt,
                    moving,
                    crate::store::STORE_ID,
                    crate::store::STORE_INSTANCE,
                    crate::store::RESTORE_UNFINISHED,
                ],
            )?
            .into_iter();
            let mut next = || m.next().flatten();
            let marked = [next(), next(), next()].iter().any(Option::is_some);
            Ok((marked, next().map(text), next().map(text), next().is_some()))
        })
        .ok();
    if known
        .as_ref()
        .map_or_else(|| not_whole(store), |k| Ok(k.0))?
    {
        return Ok(());
    }
    let id = match known
        .as_ref()
        .map_or_else(|| store_id(store), |k| Ok(k.1.clone()))
    {
        Ok(None) if writable && store.damage().is_none() => match ensure_store_id(store) {
            Ok(id) => Some(id),
            // A store whose writes are refused (damage seen meanwhile) opens to be checked.
            Err(_) if store.damage().is_some() => None,
            Err(e) => return Err(e),
        },
        Ok(id) => id,
        // A damaged store whose meta does not read: `check` names the damage.
        Err(_) if store.damage().is_some() => return Ok(()),
        Err(e) => return Err(e),
    };
    let on_server = store.engine() != "redb";
    // (Giving the store an id above leaves its copy and marks as they were read.)
    let instance = match &known {
        Some(k) => k.2.clone(),
        None => store_instance(store)?,
    };
    // A restore into this data dir stopped before its folders were in place (its mark): it
    // had replaced the store the note names, and ties the data dir to the restored one.
    let restoring = match &known {
        Some(k) => k.3,
        None => open_mark(store, crate::store::RESTORE_UNFINISHED)?.is_some(),
    };
    match (note, id) {
        // (Written again even when it names this store by its id: a note of an earlier build
        // names no copy, and the store the restore replaced would still match it.)
        (Some(_), Some(id)) if restoring && writable => {
            write_store_note(dir, &StoreNote::of(url, id, instance))
        }
        (Some(note), id) if note.owned_by(id.as_deref(), instance.as_deref(), on_server) => Ok(()),
        (Some(_), _) if restoring => Ok(()),
        (Some(note), id) if note.names(id.as_deref(), on_server) => {
            Err(replaced_copy(dir, &note, &describe(store)))
        }
        (Some(note), _) => Err(foreign_store(dir, &note, Some(&describe(store)))),
        (None, Some(id)) if writable => {
            let instance = ensure_store_instance(store)?;
            write_store_note(dir, &StoreNote::of(url, id, Some(instance)))
        }
        (None, _) => Ok(()),
    }
}

/// The refusal of `this`, a copy of the store the data dir `dir` is tied to (same id) but
/// not the copy its note names: the store a restore replaced, or the one it was restored
/// from into another schema, whose folders are now the restored copy's.
fn replaced_copy(dir: &Path, note: &StoreNote, this: &str) -> Error {
    let owner = match &note.store {
        Some(url) => format!("the store on {url}"),
        None => format!("the redb file {}", dir.join(STORE_FILE).display()),
    };
    Error::denied(format!(
        "the workspace folders in {} belong to {owner}, a restored copy of {this} (same \
         store id {}); a restore tied the data dir to that copy, so the store it replaced or \
         was restored from no longer owns them, and its users would find their files taken \
         (a `check --repair` would move them to the trash); open the restored copy instead; \
         if it is gone for good and this store is to own the folders again, remove {} first",
        dir.display(),
        note.id,
        dir.join(STORE_NOTE).display()
    ))
}

/// `store` as named in a refusal.
fn describe(store: &Store) -> String {
    if store.engine() == "redb" {
        format!("the redb file {}", store.location())
    } else {
        format!("the store on {}", store.location())
    }
}

/// The refusal of a store on a server that holds no store yet while the data dir `dir` is
/// tied to another (a mistyped schema): nothing is made there.
fn foreign_new_store(dir: &Path, note: &StoreNote, url: &str) -> Error {
    foreign_store(
        dir,
        note,
        Some(&format!(
            "{}, which holds no store (a mistyped URL or schema?)",
            crate::store::redact(url)
        )),
    )
}

/// Refuses a whole-store operation (a reset) on `store` when the data dir `dir` is tied to
/// another store (see [`STORE_NOTE`]).
///
/// # Errors
/// `Denied` naming the store the folders belong to.
pub(crate) fn refuse_untied(dir: &Path, store: &Store) -> Result<()> {
    match store_note(dir)? {
        Some(note)
            if !note.owned_by(
                store_id(store)?.as_deref(),
                store_instance(store)?.as_deref(),
                store.engine() != "redb",
            ) =>
        {
            Err(foreign_store(dir, &note, Some(&describe(store))))
        }
        _ => Ok(()),
    }
}

/// Refuses a backup of a store on a server through the data dir of `rk` when nothing ties
/// the two (see [`STORE_NOTE`]; a note naming another store is refused at the open): a
/// data dir that is not there, or one without a note that holds no folder of the store's
/// users, is not the data dir the store was set up with, and the backup would hold none
/// of their folders (and its restore would trash them).
///
/// # Errors
/// `InvalidInput` naming the data dir.
pub(crate) fn refuse_unknown_data_dir(rk: &Redkeep) -> Result<()> {
    let dir = rk.dir();
    if rk.store().engine() == "redb" {
        return Ok(());
    }
    if std::fs::metadata(dir).is_err() {
        return Err(missing_data_dir(dir));
    }
    if store_note(dir)?.is_some() {
        return Ok(());
    }
    let users = rk.users().count()?;
    if users > 0 && rk.workspaces().taken_ids()?.is_empty() {
        return Err(Error::invalid(
            "data dir",
            format!(
                "{} holds no workspace folder of the {users} user(s) of {}, and no note naming \
                 the store ({STORE_NOTE}): it is not the data dir this store was set up with, \
                 and the backup would hold none of their folders; give that one (--data-dir); \
                 if these users have no folders yet, open the store once for writing with this \
                 data dir (`redkeep check`), which ties the two",
                dir.display(),
                rk.store_place()
            ),
        ));
    }
    Ok(())
}

/// The refusal of a data dir that is not there, for a store on a server.
fn missing_data_dir(dir: &Path) -> Error {
    Error::invalid(
        "data dir",
        format!(
            "{} does not exist; a store on a server keeps its users' workspace folders in the \
             data dir: give the one it was set up with (--data-dir), or make the folder",
            dir.display()
        ),
    )
}

/// What to do with a store into which a move stopped part way (said by every refusal of
/// it): its data dir's folders belong to the move's source, which is still the live store.
pub(crate) const HALF_MOVED_WAYS_OUT: &str = "run the same move again (it replaces what the \
     stopped one wrote), or remove this store (it is a copy: on PostgreSQL, drop its schema)";

/// The folder of per-user workspaces inside a data dir.
pub const WORKSPACES_DIR: &str = "workspaces";
/// The file name, in the data dir, next to which copies of a PostgreSQL store taken before
/// migrations are written (`redkeep-postgres.redb.pre-vN.bak`, each a redb file).
pub(crate) const POSTGRES_COPIES: &str = "redkeep-postgres.redb";

/// Opens the store a store URL names.
/// Temp files and folders in the data dir `dir` and user folders half-made in
/// `workspaces/users/`: what an interrupted operation may leave (`check` and `status`).
pub(crate) fn data_dir_leftovers(dir: &Path) -> Vec<crate::fsutil::Leftover> {
    let mut found = crate::fsutil::leftovers(dir);
    // The workspaces folder holds a restore's staging folder of the backup's folders.
    found.extend(crate::fsutil::leftovers(&dir.join(WORKSPACES_DIR)));
    found.extend(crate::fsutil::leftovers(
        &dir.join(WORKSPACES_DIR).join("users"),
    ));
    found
}

/// Whether the data dir `dir` shows that it held a store: its workspaces folder holds
/// anything but an empty `users/` folder (a user's folder, the trash, a file). A data dir
/// that cannot be looked at counts as having held one.
fn held_a_store(dir: &Path) -> bool {
    let root = dir.join(WORKSPACES_DIR);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
    };
    entries.into_iter().any(|e| {
        e.map_or(true, |e| {
            e.file_name() != "users"
                || !e.file_type().is_ok_and(|t| t.is_dir())
                || std::fs::read_dir(e.path()).map_or(true, |mut d| d.next().is_some())
        })
    })
}

/// `e` as said for the data dir `dir`: a store file that holds nothing
/// ([`Error::Unwritten`]) in a data dir with users' folders is no leftover of an `init`
/// but a store whose contents were lost, said as damage (a backup restores it).
pub(crate) fn in_data_dir(dir: &Path, e: Error) -> Error {
    match e {
        Error::Unwritten { path, found } if held_a_store(dir) => Error::Damaged {
            path,
            reason: format!(
                "it holds nothing ({found}), though the data dir holds users' folders \
                 ({WORKSPACES_DIR}/): the store it held was lost"
            ),
        },
        e => e,
    }
}

pub(crate) fn open_url(url: &str, options: &StoreOptions, read_only: bool) -> Result<Store> {
    #[cfg(feature = "postgres")]
    if crate::store::is_postgres_url(url) {
        let store = Store::open_postgres(url, options, read_only)?;
        refuse_moved(&store)?;
        return Ok(store);
    }
    #[cfg(not(feature = "postgres"))]
    let _ = (options, read_only);
    // Never the rest, which may hold a password in any form: its start up to the first `:`
    // or `=` (the scheme or first key typed), enough to see what was meant.
    let shown = match url.find([':', '=', '@', '/', ' ']) {
        Some(end) => format!("{}…", &url[..=end]),
        None => "…".to_string(),
    };
    Err(Error::invalid(
        "store",
        if cfg!(feature = "postgres") {
            format!(
                "`{shown}` is not a store URL; give postgres://USER@HOST/DB (or a libpq \
                 key/value string such as `host=/run/postgresql dbname=app`), or leave the \
                 store unset for the redb file in the data dir"
            )
        } else {
            "this build of redkeep has no PostgreSQL support; rebuild it with the `postgres` \
             feature, or leave the store unset for the redb file in the data dir"
                .to_string()
        },
    ))
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: u64 = 3;

/// How to open a data dir.
#[derive(Clone)]
pub struct Options {
    /// Exclusive (default, fastest) or shared between processes.
    pub mode: Mode,
    /// Durability of each commit (default: immediate).
    pub durability: Durability,
    /// argon2id parameters (default: OWASP's).
    pub password: PasswordParams,
    /// Where "now" comes from (default: the system clock).
    pub clock: Arc<dyn Clock>,
    /// Create the data dir and store when missing (default true). The CLI turns this off for
    /// every command but `init`.
    pub create: bool,
    /// Open a store with an older schema without migrating it, so its migrations can be
    /// inspected and run (`redkeep migrate`). Other operations may fail on such a store.
    pub open_outdated: bool,
    /// Open a store that an import, an adoption or a move into it stopped part way left (a
    /// crash or a kill before its records and workspace folders were whole; `check` names
    /// it), to check or back it up, or to finish the import by running it again (default
    /// false). Otherwise such a store is refused with `Denied` saying what to run: its
    /// users' folders may be missing, and what is written into it would be lost when the
    /// operation is finished or redone. Opened so, such a store is not settled (no system
    /// role is written into it, as an open otherwise does).
    pub open_unfinished: bool,
    /// Apply pending schema migrations on open (default false: opening an older store is
    /// `Error::MigrationNeeded`, and `redkeep migrate up` upgrades it).
    pub auto_migrate: bool,
    /// Let registration work without an invite code (default false).
    pub open_registration: bool,
    /// Options of the workspaces folder.
    pub workspace: WorkspaceOptions,
    /// Session lifetimes.
    pub sessions: SessionPolicy,
    /// Lockout after failed logins.
    pub lockout: LockoutPolicy,
    /// `last_used_at` of an API key is written at most this often (default 60 s).
    pub api_key_touch_interval: Duration,
    /// Cache size of the store in bytes; `None` (the default) picks one from the file size.
    pub cache_bytes: Option<usize>,
    /// How many password hashes (and verifications) may run at once in this handle; the
    /// others wait (default: one per core, [`crate::default_hash_concurrency`]). Each argon2
    /// hash holds its `memory_kib` while it runs, so this bounds what a flood of logins can
    /// allocate: with OWASP's 19 MiB and 8 cores, 152 MiB. At least 1.
    pub max_concurrent_hashes: usize,
    /// Open an existing store only to read it (default false): nothing is written to the data
    /// dir, not even the system roles an up-to-date store gets on open, and every write fails
    /// with `ReadOnly`. For a data dir this user may read but not write (the CLI falls back to
    /// it when opening for writing is refused), and for commands that only read (the CLI's
    /// `stats`, `export`, `backup`, listings…), which then leave the store file's bytes as
    /// they were. `check` then reads every record but skips redb's own page check, which
    /// needs a writable file.
    ///
    /// With [`Mode::Shared`] the handle reads beside processes that write the file in shared
    /// mode, and sees their commits; a process opening the file exclusively (or migrating
    /// it) is refused while the handle lives. With [`Mode::Exclusive`] it keeps every writer
    /// out. A redb file whose last writer did not close it (killed, or the machine stopped)
    /// cannot be opened read-only: redb repairs it only when opening it for writing.
    pub read_only: bool,
    /// Lifetimes of password-reset and email-verification tokens.
    pub recovery: RecoveryPolicy,
    /// Audit rows a minute, at most, for the events of requests no one signed in to: failed
    /// logins (`login_failed`, `login_locked`, whatever the account, none included) and
    /// password-reset requests (`password_reset_requested`). Beyond it, in the same minute,
    /// such events are counted in one row per action (outcome `summarized`, detail `N more
    /// … in this minute`) that each further one rewrites, so that a flood of them grows the
    /// audit log by a bounded number of rows a minute (default 60, plus one per action).
    /// The count is this handle's, not shared between processes. Every request does the
    /// same work whether its row is written or counted, and whether or not an account
    /// matches, so it tells no more than before. `u32::MAX` keeps every row.
    pub unauthenticated_audit_per_minute: u32,
    /// Where the store is (default `None`: the redb file in the data dir). A `postgres://…`
    /// URL or a libpq key/value string (`host=/run/postgresql dbname=app`) puts it on a
    /// PostgreSQL server (the `postgres` feature); `schema=NAME` in it picks the schema
    /// (default `redkeep`). Workspaces stay in the data dir either way.
    pub store_url: Option<String>,
    /// How long an open in [`Mode::Exclusive`] waits while other processes have the store
    /// file open without holding it alone, before it is refused with `Error::InUse` naming
    /// them (default 30 s; `Duration::ZERO` refuses at once). Such a process is most often
    /// an operator's command that only reads the store (`redkeep check`, `backup`,
    /// `export`), which ends by itself: an application that starts (or restarts) while one
    /// runs waits for it instead of failing. A process that holds the store alone (another
    /// application) is named at once, without waiting; a store on PostgreSQL is shared and
    /// never waited for. The wait is said through [`Options::on_wait_for_readers`].
    pub wait_for_readers: Duration,
    /// Called once when an open begins to wait for other processes (see
    /// [`Options::wait_for_readers`]) with what it waits for, whose `Display` is a sentence
    /// to print; without it, the wait is logged as a `tracing` warning.
    pub on_wait_for_readers: Option<crate::store::ReadersNotice>,
    /// Tests only: fail one chosen I/O call of the storage engine.
    #[doc(hidden)]
    pub faults: Option<Arc<crate::store::FaultPlan>>,
}

// By hand, so that a password in `store_url` is never shown.
impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("mode", &self.mode)
            .field("durability", &self.durability)
            .field("password", &self.password)
            .field("clock", &self.clock)
            .field("create", &self.create)
            .field("open_outdated", &self.open_outdated)
            .field("open_unfinished", &self.open_unfinished)
            .field("auto_migrate", &self.auto_migrate)
            .field("open_registration", &self.open_registration)
            .field("workspace", &self.workspace)
            .field("sessions", &self.sessions)
            .field("lockout", &self.lockout)
            .field("api_key_touch_interval", &self.api_key_touch_interval)
            .field("cache_bytes", &self.cache_bytes)
            .field("max_concurrent_hashes", &self.max_concurrent_hashes)
            .field("read_only", &self.read_only)
            .field("recovery", &self.recovery)
            .field(
                "unauthenticated_audit_per_minute",
                &self.unauthenticated_audit_per_minute,
            )
            .field(
                "store_url",
                &self.store_url.as_deref().map(crate::store::redact),
            )
            .field("wait_for_readers", &self.wait_for_readers)
            .field("on_wait_for_readers", &self.on_wait_for_readers.is_some())
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        let policy = Policy::default();
        Options {
            mode: Mode::Exclusive,
            durability: Durability::Immediate,
            password: PasswordParams::OWASP,
            clock: Arc::new(SystemClock),
            create: true,
            open_outdated: false,
            open_unfinished: false,
            auto_migrate: false,
            open_registration: policy.open_registration,
            workspace: WorkspaceOptions::default(),
            sessions: policy.sessions,
            lockout: policy.lockout,
            api_key_touch_interval: policy.api_key_touch_interval,
            cache_bytes: None,
            max_concurrent_hashes: crate::auth::password::default_hash_concurrency(),
            read_only: false,
            recovery: policy.recovery,
            unauthenticated_audit_per_minute: policy.unauthenticated_audit_per_minute,
            store_url: None,
            wait_for_readers: Duration::from_secs(30),
            on_wait_for_readers: None,
            faults: None,
        }
    }
}

impl Options {
    /// Puts the store at `url` (see [`Options::store_url`]).
    pub fn store(mut self, url: impl Into<String>) -> Self {
        self.store_url = Some(url.into());
        self
    }

    /// Sets the sharing mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the argon2id parameters.
    pub fn password(mut self, params: PasswordParams) -> Self {
        self.password = params;
        self
    }

    /// Sets how many password hashes may run at once (see
    /// [`Options::max_concurrent_hashes`]).
    pub fn max_concurrent_hashes(mut self, limit: usize) -> Self {
        self.max_concurrent_hashes = limit;
        self
    }

    /// Sets the clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets whether a missing store is created.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Sets whether a store an import, an adoption or a move stopped part way left is opened (see
    /// [`Options::open_unfinished`]).
    pub fn open_unfinished(mut self, open: bool) -> Self {
        self.open_unfinished = open;
        self
    }

    /// Sets how long an exclusive open waits for processes that have the store open
    /// without holding it alone (see [`Options::wait_for_readers`]).
    pub fn wait_for_readers(mut self, wait: Duration) -> Self {
        self.wait_for_readers = wait;
        self
    }

    /// Sets what is called when an open begins to wait for other processes (see
    /// [`Options::on_wait_for_readers`]).
    pub fn on_wait_for_readers(
        mut self,
        notice: impl Fn(&crate::store::ReadersWait) + Send + Sync + 'static,
    ) -> Self {
        self.on_wait_for_readers = Some(Arc::new(notice));
        self
    }

    /// Sets whether the store is opened only to be read (see [`Options::read_only`]).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    fn policy(&self) -> Policy {
        Policy {
            sessions: self.sessions,
            lockout: self.lockout,
            api_key_touch_interval: self.api_key_touch_interval,
            open_registration: self.open_registration,
            recovery: self.recovery,
            unauthenticated_audit_per_minute: self.unauthenticated_audit_per_minute,
        }
    }
}

/// The cache redb gets: a quarter of the file, at least 160 MiB, at most 1 GiB. The cache
/// only ever holds pages of the file, so a small store uses no more than its size whatever
/// the cap; the floor lets a store grow well past 100 MiB (a bulk load, 1,000,000 users)
/// without evicting the pages it is writing, and keeps the process under 200 MiB there.
fn cache_for(db: &Path) -> usize {
    let file = std::fs::metadata(db).map_or(0, |m| m.len());
    let quarter = usize::try_from(file / 4).unwrap_or(usize::MAX);
    quarter.clamp(160 << 20, 1 << 30)
}

/// The command that undoes a restore or a reset of `data_dir`: the store's safety copy
/// `store`, and the trash entry `folders` that holds the folders it replaced; said as
/// advice ("to undo: `…`"). A store on a server is given with `--store`: its URL when that
/// holds no password, `"$REDKEEP_STORE_URL"` otherwise (the password is never printed).
pub(crate) fn undo_command(
    data_dir: &std::path::Path,
    store_url: Option<&str>,
    folders: Option<&std::path::Path>,
    store: &std::path::Path,
) -> String {
    // The URL may hold a password: then the line names the variable, never the value.
    let (store_arg, after) = match store_url {
        Some(url) if crate::store::redact(url) == url.trim() => {
            (Some(shell_word(Path::new(url.trim()))), String::new())
        }
        Some(_) => (
            Some("\"$REDKEEP_STORE_URL\"".to_string()),
            " (with REDKEEP_STORE_URL set to the store's URL)".to_string(),
        ),
        None => (None, String::new()),
    };
    format!(
        "to undo: `{}`{after}",
        undo_line(data_dir, store_arg.as_deref(), folders, store)
    )
}

/// The command line of [`undo_command`] alone (without `--store`, which may hold a
/// password), for machine output.
#[cfg_attr(not(feature = "admin"), allow(dead_code))]
pub(crate) fn undo_invocation(
    data_dir: &std::path::Path,
    folders: Option<&std::path::Path>,
    store: &std::path::Path,
) -> String {
    undo_line(data_dir, None, folders, store)
}

/// [`undo_invocation`] with `--store store_arg` (a shell word) when given.
fn undo_line(
    data_dir: &std::path::Path,
    store_arg: Option<&str>,
    folders: Option<&std::path::Path>,
    store: &std::path::Path,
) -> String {
    let folders = folders.map_or(String::new(), |f| format!("--folders {} ", shell_word(f)));
    let store_arg = store_arg.map_or(String::new(), |a| format!("--store {a} "));
    format!(
        "redkeep --data-dir {} {store_arg}restore --force {folders}{}",
        shell_word(data_dir),
        shell_word(store)
    )
}

/// `path` as one shell word: as it is when it holds only characters no shell reads, in
/// single quotes otherwise.
pub(crate) fn shell_word(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A reset that stopped part way (see [`Redkeep::check`]).
struct StoppedReset {
    copy: PathBuf,
    /// The reset's time (Unix seconds), as in the names of its copy and trash entry.
    at: String,
    entry: Option<PathBuf>,
    orphans: Vec<u64>,
}

/// An open data dir: the account store and the workspaces root. Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Redkeep {
    inner: Arc<Shared>,
}

struct Shared {
    accounts: Accounts,
    workspaces: Workspaces,
    dir: PathBuf,
    options: Options,
    app_tables: RwLock<Vec<Arc<dyn TableCheck>>>,
    /// Whether [`Redkeep::open_to_init`] replaced a store file that held nothing.
    replaced_unwritten: std::sync::atomic::AtomicBool,
    /// What the open made private (the data dir, the store file, open to other users of
    /// the machine before), as `fixed: …` lines: `check` reports them once.
    tightened: std::sync::Mutex<Vec<String>>,
    /// The places to hash of every [`crate::asynch::AsyncRedkeep`] wrapping this handle
    /// (made by the first), so that each wrapper counts against one bound.
    #[cfg(feature = "tokio")]
    hash_places: std::sync::OnceLock<Arc<tokio::sync::Semaphore>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redkeep")
            .field("dir", &self.dir)
            .field("store", &self.accounts.store)
            .finish_non_exhaustive()
    }
}

/// An operation on the whole data dir that stopped part way (a crash or a kill), as
/// [`Redkeep::unfinished`] reports it. Its `Display` is a warning for the operator: what
/// it left, and the command that finishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unfinished {
    /// Which: `a restore`, `a reset`, `a move into this store`, `an import`, `an adoption`.
    pub operation: &'static str,
    /// Whether every workspace read and write is refused (with `Error::NotReady`) until it
    /// is finished.
    pub refuses_workspaces: bool,
}

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.operation {
            "a restore" => write!(
                f,
                "a restore stopped part way here (a crash or a kill) before the backup's \
                 workspace folders were in place: every workspace read and write is refused \
                 until `redkeep check --repair` finishes it"
            ),
            "a reset" => write!(
                f,
                "a reset stopped part way here (a crash or a kill) after emptying the store, \
                 with the workspace folders still in place: `redkeep check` says how to undo \
                 it, `redkeep check --repair` finishes it"
            ),
            other => write!(
                f,
                "{other} stopped part way here (a crash or a kill): `redkeep check` says what \
                 is missing and how to finish it"
            ),
        }
    }
}

/// What `init` did.
#[derive(Debug)]
pub struct InitOutcome {
    /// False when the store was already initialised (nothing changed).
    pub created: bool,
    /// The first administrator, if one was created.
    pub admin: Option<CreatedUser>,
    /// Whether the store replaced a store file that held nothing, left by an interrupted
    /// init (see [`Redkeep::open_to_init`]).
    pub replaced_unwritten: bool,
}

/// The first administrator to create at `init`.
#[derive(Clone, Default)]
pub struct InitSpec {
    /// Create no administrator.
    pub no_admin: bool,
    /// The admin's email (default `admin@localhost.localdomain`).
    pub admin_email: Option<String>,
    /// The admin's password; `None` generates one, printed once.
    pub admin_password: Option<crate::Secret>,
    /// Whether a given `admin_password` stays: not marked to be changed at first login, as
    /// for a password the operator chose at the console (`redkeep init
    /// --admin-password-stdin`), and as [`Users::create`](crate::Users::create) leaves a
    /// given password. Default `false`: a password from an application's configuration must
    /// be changed at first login. A generated password always must.
    pub keep_password: bool,
}

impl std::fmt::Debug for InitSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitSpec")
            .field("no_admin", &self.no_admin)
            .field("admin_email", &self.admin_email)
            .field("keep_password", &self.keep_password)
            .finish_non_exhaustive()
    }
}

/// Where each migration step stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationStatus {
    /// The store's schema version.
    pub current: u64,
    /// The version this build writes.
    pub target: u64,
    /// Every step, oldest first.
    pub steps: Vec<MigrationStep>,
}

/// One step in [`MigrationStatus`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationStep {
    /// The version it brings the store to.
    pub version: u64,
    /// What it does.
    pub name: &'static str,
    /// Whether the store has it.
    pub applied: bool,
    /// Whether `migrate down` can undo it.
    pub reversible: bool,
}

/// Meta key `init` sets: the store was initialised (an administrator made, or chosen not to).
pub(crate) const INITIALIZED: &str = "initialized_at";

/// Moves a deleted user's folder to the trash.
#[derive(Debug)]
struct FolderFiles {
    workspaces: Workspaces,
    clock: Arc<dyn Clock>,
}

impl UserFiles for FolderFiles {
    fn user_deleted(&self, id: u64) -> Result<Option<PathBuf>> {
        self.workspaces.trash_folder(id, self.clock.now())
    }

    fn before_delete(&self, id: u64) -> Result<()> {
        self.workspaces.can_trash(id)
    }
}

pub(crate) fn owners(store: Store) -> Owners {
    owners_of(store, false)
}

/// [`owners`] for a handle's own folders, `serving` them: refused while a restore that
/// stopped part way has its mark in the store. The mark cannot appear while a handle is
/// open (a restore has the store to itself), so once seen gone it is not read again.
fn owners_of(store: Store, serving: bool) -> Owners {
    let restoring = Arc::new(std::sync::atomic::AtomicBool::new(serving));
    Arc::new(move |id| {
        store.refuse_behind()?;
        if restoring.load(std::sync::atomic::Ordering::Acquire) {
            if store
                .read(|tx| tx.meta(crate::store::RESTORE_UNFINISHED))?
                .is_some()
            {
                return Err(crate::workspace::StoppedRestore::refusal());
            }
            restoring.store(false, std::sync::atomic::Ordering::Release);
        }
        let user = store.read(|tx| tx.table::<User>().get(&id))?;
        Ok(user.filter(|u| !u.uid.is_unset()).map(|u| FolderOwner {
            uid: u.uid.0,
            since: u.created_at.0,
        }))
    })
}

/// Refuses a store on a server that a move took to another server sharing the data dir's
/// folders ([`crate::store::MOVED_TO`]), saying where it went: it would be a second store on
/// those folders. (A damaged store whose mark does not read is let through.)
#[cfg(feature = "postgres")]
fn refuse_moved(store: &Store) -> Result<()> {
    match open_mark(store, crate::store::MOVED_TO)? {
        Some(to) => Err(Error::denied(format!(
            "the store on {} was moved to {} (the data dir's folders belong to that store \
             now); give that store's URL with `--store URL` (or REDKEEP_STORE_URL); this one is \
             kept as it was, and may be dropped once it is not needed",
            store.location(),
            String::from_utf8_lossy(&to)
        ))),
        None => Ok(()),
    }
}

/// The meta entry `key` an open looks at to refuse the store; `None` too on a damaged store
/// whose entry does not read (it refuses writes, and `check` names the damage).
fn open_mark(store: &Store, key: &str) -> Result<Option<Vec<u8>>> {
    match store.read(|tx| tx.meta(key)) {
        Err(_) if store.damage().is_some() => Ok(None),
        read => read,
    }
}

/// Whether an import, an adoption or a move into `store` stopped part way there (see
/// [`refuse_unfinished`]): it is not a whole store, and opening it (to be checked, looked
/// at, or filled again) writes nothing there. The same command run again replaces it all.
fn not_whole(store: &Store) -> Result<bool> {
    Ok(open_marks(store, NOT_WHOLE_MARKS)?
        .iter()
        .any(Option::is_some))
}

/// The marks of an import, an adoption and a move into the store that stopped part way.
const NOT_WHOLE_MARKS: [&str; 3] = [
    crate::store::IMPORT_UNFINISHED,
    crate::store::ADOPT_UNFINISHED,
    crate::store::MOVE_UNFINISHED,
];

/// The meta entries `keys` an open looks at, as [`open_mark`] gives each, read in one
/// transaction: a store on a server answers every read in round trips of its own, and an
/// open looks at many. (One by one on a damaged store, which may read some and not others.)
fn open_marks<const N: usize>(store: &Store, keys: [&str; N]) -> Result<[Option<Vec<u8>>; N]> {
    let together = store.read(|tx| {
        let mut found: [Option<Vec<u8>>; N] = std::array::from_fn(|_| None);
        for (slot, mark) in found.iter_mut().zip(crate::store::metas(tx, &keys)?) {
            *slot = mark;
        }
        Ok(found)
    });
    match together {
        Err(_) if store.damage().is_some() => {
            let mut found: [Option<Vec<u8>>; N] = std::array::from_fn(|_| None);
            for (slot, key) in found.iter_mut().zip(keys) {
                *slot = open_mark(store, key)?;
            }
            Ok(found)
        }
        together => together,
    }
}

/// Whether the store is at this build's schema version and whole (see [`not_whole`]), from
/// one read where it can.
fn current_and_whole(store: &Store) -> Result<bool> {
    let together = store.read(|tx| {
        let version = tx.schema_version()?;
        let marked = crate::store::metas(tx, &NOT_WHOLE_MARKS)?
            .iter()
            .any(Option::is_some);
        Ok(version == Some(SCHEMA_VERSION) && !marked)
    });
    match together {
        Ok(answer) => Ok(answer),
        // As the two reads give it, one failing on its own.
        Err(_) => Ok(store.schema_version()? == Some(SCHEMA_VERSION) && !not_whole(store)?),
    }
}

/// Refuses a store that an import, an adoption or a move into it stopped part way left (see
/// [`Options::open_unfinished`]), saying how to finish or redo it. (A damaged store whose
/// marks do not read is let through: it refuses writes, and `check` names the damage.)
fn refuse_unfinished(store: &Store) -> Result<()> {
    let stopped = [
        (
            crate::store::IMPORT_UNFINISHED,
            "an import stopped part way here (a crash or a kill), so users' workspace \
             folders may be missing; run the same `redkeep import` again to finish it",
        ),
        (
            crate::store::ADOPT_UNFINISHED,
            "an adoption stopped part way here (a crash or a kill), so users' workspace \
             folders may be missing; remove this data dir's store and workspaces folder (they \
             hold only that adoption's copy), then adopt again",
        ),
        (
            crate::store::MOVE_UNFINISHED,
            "a move into this store stopped part way (a crash, a kill, a lost connection), so \
             records or workspace folders may be missing; run the same move again (it \
             replaces what the stopped one wrote), or remove this store (it is a copy)",
        ),
    ];
    let marks = open_marks(store, stopped.map(|(key, _)| key))?;
    for ((_, what), mark) in stopped.into_iter().zip(marks) {
        if mark.is_some() {
            return Err(Error::denied(format!(
                "{what}; the store is not opened for use until then"
            )));
        }
    }
    Ok(())
}

/// Refuses policies no login could live with (a session that expires at once, a lockout
/// after no failure), before anything is opened or made.
fn check_policies(o: &Options) -> Result<()> {
    use crate::clock::lifetime;
    lifetime("sessions.ttl", o.sessions.ttl)?;
    lifetime("sessions.idle_timeout", o.sessions.idle_timeout)?;
    lifetime("recovery.reset_ttl", o.recovery.reset_ttl)?;
    lifetime("recovery.verification_ttl", o.recovery.verification_ttl)?;
    // A lock of no time would switch the lockout off while still announcing locks.
    lifetime("lockout.base_lock", o.lockout.base_lock)?;
    lifetime("lockout.max_lock", o.lockout.max_lock)?;
    if o.lockout.threshold == 0 {
        return Err(Error::invalid(
            "lockout.threshold",
            "0 would lock every account at its first failed login; give at least 1 (u32::MAX \
             never locks)",
        ));
    }
    if o.workspace.max_doc_bytes == Some(0) {
        return Err(Error::invalid(
            "workspace.max_doc_bytes",
            "0 would refuse every workspace document and piece; give at least 1 byte, or None \
             for the default (16 MiB)",
        ));
    }
    if o.max_concurrent_hashes == 0 {
        return Err(Error::invalid(
            "max_concurrent_hashes",
            "0 would let no password be checked; give at least 1",
        ));
    }
    if o.lockout.max_failures_per_hour == 0 {
        return Err(Error::invalid(
            "lockout.max_failures_per_hour",
            "0 would refuse every password; give at least 1",
        ));
    }
    Ok(())
}

impl Redkeep {
    /// Opens the data dir `dir` (creating it, mode 0700, and its store, mode 0600, when
    /// `options.create` is set). A relative `dir` is made absolute against the working
    /// directory ([`std::path::absolute`]: `..` and symlinks are kept as given), so every
    /// path the handle hands out means the same from anywhere.
    ///
    /// Whoever owns the data dir can replace every file in it, so the open trusts its owner
    /// with the store, and refuses owners it was not meant to trust: the data dir must belong
    /// to this process's user (its euid) or root, except that root, and an open that only
    /// reads (`read_only`: an operator in the data dir's group), may open the data dir of
    /// another user, whom they then trust (an operator's `sudo redkeep …` on the
    /// application's data dir works). The store file and the note naming the store must be
    /// regular files (never symlinks) of this user, root, or that trusted owner; and neither
    /// the data dir nor those files may be writable by others unless this user owns them
    /// (the open then makes them private, 0700 / 0600). The same holds for the data dir of
    /// a store on PostgreSQL, which keeps the workspace folders.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let dir = tmp.path();
    /// use redkeep::{Options, PasswordParams, Redkeep};
    /// let rk = Redkeep::open(dir, Options::default().password(PasswordParams::INSECURE_FAST))?;
    /// assert_eq!(rk.users().count()?, 0);
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` for a data dir that is a file, or a policy no login could live with (a
    /// session lifetime or idle timeout under one second or over 100 years, a lockout
    /// threshold of 0, `max_concurrent_hashes` of 0); `Denied` for a data dir, store file
    /// or note of an owner not trusted (as above), or a symlink in their place, nothing
    /// opened or changed; `NotInitialized` when there is
    /// no store and `create` is off; `InUse` when another process holds the store;
    /// `NewerSchema` / `MigrationNeeded`; `Damaged` when the store file cannot be read as
    /// it is (see `redkeep salvage`); `Io` / `Storage`.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Redkeep> {
        check_policies(&options)?;
        // Absolute from here on: the paths the handle hands out (a workspace's folder, a
        // piece's file, the store's, in replies through the admin socket too) must mean the
        // same to a caller in another working directory. Symlinks are kept as given.
        let dir = std::path::absolute(dir.as_ref()).unwrap_or_else(|_| dir.as_ref().to_path_buf());
        if std::fs::metadata(&dir).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::invalid(
                "data dir",
                format!(
                    "{} is a file; the data dir is a folder (it holds {STORE_FILE} and \
                     {WORKSPACES_DIR}/)",
                    dir.display()
                ),
            ));
        }
        refuse_untrusted(&dir, !options.read_only)?;
        let url = options
            .store_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty());
        let db = dir.join(STORE_FILE);
        if url.is_none()
            && !crate::fsutil::is_there(&db)?
            && let Some(moved) = moved_away(&dir)
        {
            return Err(moved);
        }
        let mut tied_to = store_note(&dir)?;
        // The redb file the note names is gone (a refused `init` took back the one it made,
        // or it was removed): a new one is made as before, and named.
        if url.is_none()
            && tied_to.as_ref().is_some_and(|n| n.store.is_none())
            && !crate::fsutil::is_there(&db)?
        {
            tied_to = None;
        }
        // The data dir's store is on a server: a redb file made here would be a second store
        // on its folders (and "no store here, run `redkeep init`" would say to make one).
        if url.is_none()
            && let Some(note) = tied_to.as_ref().filter(|n| n.store.is_some())
            && !crate::fsutil::is_there(&db)?
        {
            return Err(foreign_store(&dir, note, None));
        }
        if url.is_some() {
            // The store is elsewhere; the data dir holds the workspaces only, and is made once
            // the store is open (a missing store creates nothing).
        } else if options.create && !options.read_only {
            crate::fsutil::create_private_dir(&dir)?;
        } else if !crate::fsutil::is_there(&db)? {
            return Err(Error::NotInitialized { path: db });
        }
        // What holds password hashes is private even when made or copied in with a loose
        // mode; `check` says what was changed.
        let mut tightened = Vec::new();
        let mut note = |what: &str, path: &Path, was: Option<u32>, now: u32| {
            if let Some(was) = was {
                tightened.push(format!(
                    "fixed: {what} {} was open to other users of this machine (mode \
                     {was:04o}); made it {now:04o} when the store was opened",
                    path.display()
                ));
            }
        };
        if !options.read_only && url.is_none() {
            note(
                "the data dir",
                &dir,
                crate::fsutil::restrict_dir(&dir)?,
                0o700,
            );
        }
        let passwords = Passwords::new(options.password)?.limited(options.max_concurrent_hashes);
        let store_options = StoreOptions {
            mode: options.mode,
            durability: options.durability,
            create: options.create && !options.read_only,
            schema_version: SCHEMA_VERSION,
            allow_outdated: true,
            cache_bytes: options.cache_bytes.unwrap_or_else(|| cache_for(&db)),
            copies_at: url.map(|_| dir.join(POSTGRES_COPIES)),
            wait_for_readers: options.wait_for_readers,
            on_wait_for_readers: options.on_wait_for_readers.clone(),
            faults: options.faults.clone(),
        };
        let store = match url {
            Some(url) => {
                // A data dir tied to a store: a URL that names none yet is not that store (a
                // new one could never match), and nothing is made there.
                let mut store_options = store_options;
                store_options.create &= tied_to.is_none();
                let store =
                    open_url(url, &store_options, options.read_only).map_err(|e| {
                        match (&tied_to, e) {
                            (Some(note), Error::NotInitialized { .. }) if options.create => {
                                foreign_new_store(&dir, note, url)
                            }
                            (_, e) => e,
                        }
                    })?;
                // A data dir that is not there is made only by what may create: otherwise
                // a mistyped one would quietly hold a second set of workspace folders. (A
                // read-only open makes nothing, and reads no folder that is not there.)
                if !options.create && !options.read_only && std::fs::metadata(&dir).is_err() {
                    return Err(missing_data_dir(&dir));
                }
                if !options.read_only {
                    crate::fsutil::create_private_dir(&dir)?;
                    note(
                        "the data dir",
                        &dir,
                        crate::fsutil::restrict_dir(&dir)?,
                        0o700,
                    );
                }
                store
            }
            None if options.read_only => {
                Store::open_to_read(&db, &store_options).map_err(|e| in_data_dir(&dir, e))?
            }
            None => {
                let store = Store::open(&db, &store_options).map_err(|e| in_data_dir(&dir, e))?;
                // It holds password hashes: private even when copied in with a loose mode.
                note(
                    "the store file",
                    &db,
                    crate::fsutil::restrict_file(&db)?,
                    0o600,
                );
                store
            }
        };
        tie_data_dir(&dir, tied_to, &store, url, !options.read_only)?;
        let rk = Redkeep::around(dir, store, options, passwords, tightened)?;
        if !rk.options().open_unfinished {
            refuse_unfinished(rk.store())?;
        }
        rk.migrate_on_open()?;
        Ok(rk)
    }

    /// A handle on `store`, which the caller opened and holds, with the workspace folders of
    /// the data dir `dir` read only: for `move`, which checks the store it copies under the
    /// hold it copies it with. Nothing is tied, migrated or settled, and nothing is written.
    ///
    /// # Errors
    /// `InvalidInput` when the password parameters are out of bounds.
    pub(crate) fn over_held(dir: &Path, store: Store, options: Options) -> Result<Redkeep> {
        let options = options.read_only(true);
        let passwords = Passwords::new(options.password)?.limited(options.max_concurrent_hashes);
        // Absolute, as every handle's: its problems name paths a caller compares.
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Redkeep::around(dir, store, options, passwords, Vec::new())
    }

    /// The handle on the open `store` and the workspace folders of `dir`.
    fn around(
        dir: PathBuf,
        store: Store,
        options: Options,
        passwords: Passwords,
        tightened: Vec<String>,
    ) -> Result<Redkeep> {
        store.reserve_tables(&crate::auth::own_table_types());
        let workspaces = if options.read_only {
            Workspaces::open_existing(
                dir.join(WORKSPACES_DIR),
                options.workspace.clone(),
                owners_of(store.clone(), true),
            )
        } else {
            Workspaces::open(
                dir.join(WORKSPACES_DIR),
                options.workspace.clone(),
                owners_of(store.clone(), true),
            )?
        }
        .with_clock(options.clock.clone());
        let accounts = Accounts::new(
            store,
            options.clock.clone(),
            passwords,
            options.policy(),
            Arc::new(FolderFiles {
                workspaces: workspaces.clone(),
                clock: options.clock.clone(),
            }),
        );
        let rk = Redkeep {
            inner: Arc::new(Shared {
                accounts,
                workspaces,
                dir,
                options,
                app_tables: RwLock::default(),
                replaced_unwritten: std::sync::atomic::AtomicBool::new(false),
                tightened: std::sync::Mutex::new(tightened),
                #[cfg(feature = "tokio")]
                hash_places: std::sync::OnceLock::new(),
            }),
        };
        Ok(rk)
    }

    /// Opens the data dir `dir` to initialise it ([`Redkeep::init`]): as [`Redkeep::open`]
    /// with `create` set, except that a store file that holds nothing (see
    /// [`Error::Unwritten`]: what an `init` interrupted at the file's first write leaves) is
    /// replaced by a new one when the data dir holds no users' folders and nobody has the
    /// file open. [`InitOutcome::replaced_unwritten`] then says so. [`Redkeep::open`] never
    /// does that: a store cut short to nothing would pass for a new, empty one.
    ///
    /// The data dir's owners are checked as [`Redkeep::open`] says, before anything is
    /// replaced.
    ///
    /// # Errors
    /// As [`Redkeep::open`]; `Damaged` when the store file holds nothing but the data dir
    /// holds users' folders (the store was lost: restore a backup).
    pub fn open_to_init(dir: impl AsRef<Path>, options: Options) -> Result<Redkeep> {
        let dir = dir.as_ref();
        // Before a store file that holds nothing is taken away.
        refuse_untrusted(dir, !options.read_only)?;
        let db = dir.join(STORE_FILE);
        let on_file = options
            .store_url
            .as_deref()
            .is_none_or(|u| u.trim().is_empty());
        let replaced = on_file
            && !options.read_only
            && Store::unwritten(&db).is_some()
            && !held_a_store(dir)
            && Store::remove_unwritten(&db, None);
        if replaced {
            tracing::warn!(store = %db.display(), "replaced a store file that held nothing");
        }
        let rk = Redkeep::open(dir, options.create(true))?;
        rk.inner
            .replaced_unwritten
            .store(replaced, std::sync::atomic::Ordering::Relaxed);
        Ok(rk)
    }

    fn migrate_on_open(&self) -> Result<()> {
        let found = self.store().schema_version()?.unwrap_or(SCHEMA_VERSION);
        // An outdated store opened as it is: its tables hold the older layout, so work on
        // this build's records is refused (`MigrationNeeded`) until `migrate up`, as after a
        // `migrate down`. A write would put today's format into the old tables, and the
        // upgrade would then fail on it; a read would answer wrong.
        let behind = || {
            self.store().set_behind(Some((found, SCHEMA_VERSION)));
            Ok(())
        };
        if self.options().read_only {
            // Nothing may be written: no migration, no settling.
            return if found < SCHEMA_VERSION && !self.options().open_outdated {
                Err(Error::MigrationNeeded {
                    found,
                    needed: SCHEMA_VERSION,
                })
            } else if found < SCHEMA_VERSION {
                behind()
            } else {
                Ok(())
            };
        }
        if found < SCHEMA_VERSION {
            if self.options().auto_migrate {
                self.migrate()?;
            } else if !self.options().open_outdated {
                return Err(Error::MigrationNeeded {
                    found,
                    needed: SCHEMA_VERSION,
                });
            } else {
                return behind();
            }
        }
        self.settle()
    }

    /// Whether an up-to-date store lacks what [`Redkeep::settle`] gives it on an open for
    /// writing (a system role, folders' owner markers): a handle opened read-only reads it
    /// without them, so the CLI opens such a store for writing instead.
    #[cfg(feature = "cli")]
    pub(crate) fn needs_settling(&self) -> Result<bool> {
        if !current_and_whole(self.store())? {
            return Ok(false);
        }
        Ok(roles::system_roles_missing(&self.inner.accounts)?
            || self.store().read(|tx| tx.meta(FOLDERS_UNMARKED))?.is_some())
    }

    /// Whether an import, an adoption or a move into the store stopped part way there: it
    /// is not a whole store (opened only with [`Options::open_unfinished`]), and opening it
    /// wrote nothing there.
    #[cfg(feature = "cli")]
    pub(crate) fn is_not_whole(&self) -> Result<bool> {
        not_whole(self.store())
    }

    /// What an up-to-date store needs after opening or migrating: the system roles, and the
    /// owner markers of folders that existed before identities did. Nothing, in a store
    /// that is not whole (see [`not_whole`]): opened to be checked or looked at, it is
    /// left as the stopped command left it.
    fn settle(&self) -> Result<()> {
        if !current_and_whole(self.store())? {
            return Ok(());
        }
        let settled = roles::ensure_system_roles(&self.inner.accounts).and_then(|()| {
            // (Not while a stopped restore waits to put its folders in place: the folders
            // there now are those it replaces.)
            let (restoring, unmarked) = self.store().read(|tx| {
                let [restoring, unmarked] = <[_; 2]>::try_from(crate::store::metas(
                    tx,
                    &[crate::store::RESTORE_UNFINISHED, FOLDERS_UNMARKED],
                )?)
                .unwrap_or_default();
                Ok((restoring.is_some(), unmarked))
            })?;
            if !restoring && let Some(unmarked) = unmarked {
                // Older builds wrote `1`: every user's uid was new then.
                let fresh = serde_json::from_slice::<UnmarkedFolders>(&unmarked)
                    .ok()
                    .map(|u| u.fresh);
                self.mark_folders(fresh.as_deref())?;
                self.store().write(|tx| tx.remove_meta(FOLDERS_UNMARKED))?;
            }
            Ok(())
        });
        match settled {
            // A damaged record on the way (a role that does not decode) is the store's to
            // report: it refuses writes from now on, and the handle stays open so that
            // `check` can name the damage and `check --repair` mend it. The next open
            // settles again.
            Err(e) if self.store().damage().is_some() => {
                tracing::error!(error = %e, "the store could not be settled after opening; run `redkeep check`");
                Ok(())
            }
            other => other,
        }
    }

    /// Reports the reset that stopped part way with the command that undoes it, or with
    /// `repair` finishes it: the folders of the accounts it emptied go to one trash entry
    /// named for the reset's time, then the mark goes.
    fn finish_reset(
        &self,
        stopped: &StoppedReset,
        repair: bool,
        report: &mut CheckReport,
    ) -> Result<()> {
        let store_url = self.options().store_url.as_deref();
        let undo = |entry: Option<&Path>| undo_command(self.dir(), store_url, entry, &stopped.copy);
        if !repair {
            let (where_, entry) = match (&stopped.entry, stopped.orphans.is_empty()) {
                (Some(e), true) => (
                    format!("after moving the workspace folders to {}", e.display()),
                    Some(e.as_path()),
                ),
                _ => (
                    "before the workspace folders went to the trash".to_string(),
                    None,
                ),
            };
            report.problem(format!(
                "a reset stopped after emptying the store, {where_} (a crash or a kill); \
                 `redkeep check --repair` finishes it; {}",
                undo(entry)
            ));
            return Ok(());
        }
        let moved = self
            .workspaces()
            .trash_together(&stopped.orphans, &stopped.at)?;
        let entry = moved.or(stopped.entry.clone());
        crate::fsutil::create_private_dir(&self.dir().join(WORKSPACES_DIR).join("users"))?;
        // Also when damage elsewhere refuses ordinary writes: the folders have moved.
        self.store().write_anyway(self.options().durability, |tx| {
            tx.remove_meta(crate::store::RESET_UNFINISHED)
        })?;
        report.repaired.push(format!(
            "fixed: finished a reset that had stopped after emptying the store{}; {}",
            entry.as_ref().map_or(String::new(), |to| format!(
                "; the workspace folders are in {}",
                to.display()
            )),
            undo(entry.as_deref())
        ));
        Ok(())
    }

    /// The reset that stopped part way in this data dir, if its mark is in the store: the
    /// copy it took, the trash entry it had moved the folders to (if it got that far), and
    /// the folders whose accounts it emptied (no user owns them now).
    fn stopped_reset(&self) -> Result<Option<StoppedReset>> {
        let Some(mark) = self
            .store()
            .read(|tx| tx.meta(crate::store::RESET_UNFINISHED))?
        else {
            return Ok(None);
        };
        let mark = String::from_utf8_lossy(&mark).into_owned();
        let (copy, at) = mark.split_once('\n').unwrap_or((mark.as_str(), ""));
        let prefix = format!("reset-{at}");
        let entry = if at.is_empty() {
            None
        } else {
            self.workspaces()
                .trash()?
                .into_iter()
                .filter(|e| {
                    e.name == prefix
                        || e.name
                            .strip_prefix(&prefix)
                            .is_some_and(|rest| rest.starts_with('-'))
                })
                .map(|e| e.path)
                .next_back()
        };
        let mut orphans = Vec::new();
        for id in self.workspaces().user_ids()? {
            if self.users().get(id)?.is_none() {
                orphans.push(id);
            }
        }
        Ok(Some(StoppedReset {
            copy: PathBuf::from(copy),
            at: if at.is_empty() {
                self.now().0.to_string()
            } else {
                at.to_string()
            },
            entry,
            orphans,
        }))
    }

    /// Binds the folders that existed before identities did to their users: an unmarked
    /// folder is given to the user with its number; a marked one whose marker names this
    /// account (same creation time) gives the user back that uid, which a store restored from
    /// before identities had forgotten.
    ///
    /// A folder whose marker names another uid is recognised as the user's (and the uid
    /// taken back) only for a user whose uid the upgrade made new (`fresh`; `None`: all):
    /// a user whose uid was kept across `migrate down` and up is the account the marker
    /// names, or another one (a store of another deployment restored here), whose folder
    /// it is not.
    fn mark_folders(&self, fresh: Option<&[u64]>) -> Result<()> {
        let (mut marked, mut recognised) = (0, 0);
        for id in self.workspaces().user_ids()? {
            let Some(u) = self.users().get(id)? else {
                continue;
            };
            let owner = FolderOwner {
                uid: u.uid.0,
                since: u.created_at.0,
            };
            match self.workspaces().marker(id) {
                Ok(None) => {
                    if self.workspaces().mark(id, owner)? {
                        marked += 1;
                    }
                }
                Ok(Some(m))
                    if m != owner
                        && m.since == u.created_at.0
                        && fresh.is_none_or(|f| f.contains(&id)) =>
                {
                    let uid = crate::Uid(m.uid);
                    self.store().write(|tx| {
                        tx.table::<User>().modify(&id, |u| {
                            u.uid = uid;
                            Ok(())
                        })
                    })?;
                    recognised += 1;
                }
                // Another account's folder, or a malformed marker: `check` reports it.
                Ok(Some(_)) | Err(_) => {}
            }
        }
        tracing::info!(
            marked,
            recognised,
            "workspace folders bound to their owners"
        );
        Ok(())
    }

    /// Applies every pending schema migration (a copy of the file is taken first), then marks
    /// the workspace folders of existing users; a no-op when the store is up to date.
    ///
    /// # Errors
    /// `NewerSchema`; a step's error (that step wrote nothing; earlier ones stay applied).
    pub fn migrate(&self) -> Result<MigrationRun> {
        let run = self.store().migrate(MIGRATIONS, self.now())?;
        self.settle()?;
        Ok(run)
    }

    /// Reverts migrations down to schema version `to` (default: one step), after taking the
    /// same copy as [`Redkeep::migrate`]. The store then needs a build of that version, or
    /// `migrate up` again: until then this handle refuses every write but a migration, and
    /// every read of the accounts (`MigrationNeeded`), since its records are of this build's
    /// schema and the store's are of the older one. It needs the store
    /// to itself: an exclusive handle (on PostgreSQL, no other connection).
    ///
    /// # Errors
    /// `Denied` when a step on the way cannot be reversed (nothing is changed) or the store
    /// is at the first version already; `InvalidInput` when `to` is above the store's
    /// version; `InUse` on a shared handle or while other connections have a PostgreSQL
    /// store open.
    pub fn migrate_down(&self, to: Option<u64>) -> Result<MigrationRun> {
        self.store().migrate_down(MIGRATIONS, to, self.now())
    }

    /// The store's schema version and every step, applied or not, reversible or not.
    ///
    /// # Errors
    /// `Storage` when the store cannot be read.
    pub fn migration_status(&self) -> Result<MigrationStatus> {
        let current = self.store().schema_version()?.unwrap_or(0);
        Ok(MigrationStatus {
            current,
            target: SCHEMA_VERSION,
            steps: MIGRATIONS
                .iter()
                .map(|s| MigrationStep {
                    version: s.version,
                    name: s.name,
                    applied: s.version <= current,
                    reversible: s.down.is_some(),
                })
                .collect(),
        })
    }

    /// Makes the next login read the cost profiles of the stored password hashes again
    /// (after hashes were written other than by a login or a password change: an import).
    pub(crate) fn forget_password_profiles(&self) {
        self.inner.accounts.passwords.forget_profiles();
    }

    /// The users.
    pub fn users(&self) -> Users<'_> {
        Users {
            acc: &self.inner.accounts,
        }
    }

    /// Password resets and email verification.
    pub fn recovery(&self) -> Recovery<'_> {
        Recovery {
            acc: &self.inner.accounts,
        }
    }

    /// The session store of a web framework's session layer (see the `tower-sessions`
    /// feature).
    pub fn web_sessions(&self) -> WebSessions<'_> {
        WebSessions {
            acc: &self.inner.accounts,
        }
    }

    /// Login sessions.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions {
            acc: &self.inner.accounts,
        }
    }

    /// Roles and permissions.
    pub fn roles(&self) -> Roles<'_> {
        Roles {
            acc: &self.inner.accounts,
        }
    }

    /// Organizations and their members.
    pub fn orgs(&self) -> Orgs<'_> {
        Orgs {
            acc: &self.inner.accounts,
        }
    }

    /// Invite codes.
    pub fn invites(&self) -> Invites<'_> {
        Invites {
            acc: &self.inner.accounts,
        }
    }

    /// API keys.
    pub fn api_keys(&self) -> ApiKeys<'_> {
        ApiKeys {
            acc: &self.inner.accounts,
        }
    }

    /// Agent sessions.
    pub fn agents(&self) -> Agents<'_> {
        Agents {
            acc: &self.inner.accounts,
        }
    }

    /// The audit log.
    pub fn audit(&self) -> AuditLog<'_> {
        AuditLog {
            acc: &self.inner.accounts,
        }
    }

    /// Runs `f` with `origin` named as the origin of every write this thread begins in it,
    /// on any store: each audit event those writes record carries it in
    /// [`AuditEvent::origin`](crate::auth::audit::AuditEvent::origin), as the `redkeep`
    /// command's and the admin socket's do. The thread's previous origin (usually none)
    /// comes back afterwards, a panic included, so the calls nest.
    ///
    /// Thread-scoped: writes that `f` hands to another thread do not take it, nor do the
    /// methods of an [`AsyncRedkeep`](crate::AsyncRedkeep), which run on tokio's blocking
    /// pool; give those their origin with
    /// [`AsyncRedkeep::with_origin`](crate::AsyncRedkeep::with_origin).
    ///
    /// ```
    /// # use redkeep::{NewUser, Options, Origin, PasswordParams, Redkeep};
    /// # let dir = tempfile::tempdir()?;
    /// # let rk = Redkeep::open(dir.path(), Options::default().password(PasswordParams::INSECURE_FAST))?;
    /// let origin = Origin::new("web, 203.0.113.7")?;
    /// let new_user = NewUser { email: "ann@example.com".into(), ..NewUser::default() };
    /// let ann = Redkeep::with_origin(&origin, || rk.users().create(new_user))?;
    /// let created = &rk.audit().list(Some(ann.user.id), None, 1)?[0];
    /// assert_eq!(created.origin.as_deref(), Some("web, 203.0.113.7"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_origin<T>(origin: &crate::store::Origin, f: impl FnOnce() -> T) -> T {
        crate::store::with_origin(origin, f)
    }

    /// The per-user workspace folders.
    pub fn workspaces(&self) -> &Workspaces {
        &self.inner.workspaces
    }

    /// Gives `user` the folder that bears their number and has no owner marker, or a
    /// malformed one (`redkeep workspace bind`, for a folder the operator knows is theirs):
    /// writes its marker naming `owner`, then records a `workspace_bound` event about the
    /// user that names the folder. Returns whether a marker was written; when none was (no
    /// folder, or one marked already), nothing is recorded.
    ///
    /// # Errors
    /// `Io` when the marker cannot be written (nothing is recorded); `Storage` when the event
    /// cannot be recorded (the folder is bound by then, and a second run changes nothing).
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn bind_workspace(&self, user: u64, owner: FolderOwner) -> Result<bool> {
        if !self.inner.workspaces.bind(user, owner)? {
            return Ok(false);
        }
        let folder = self.inner.workspaces.dir(user);
        let now = self.now();
        self.store().write(|tx| {
            crate::auth::audit::user_event(
                tx,
                now,
                "workspace_bound",
                user,
                format!("folder {}", folder.display()),
            )
        })?;
        Ok(true)
    }

    /// The operations on the whole data dir that stopped part way here (a crash or a kill
    /// during a restore, a reset, a move into this store, an import or an adoption) and wait
    /// for an operator to finish them: what an application should report as it starts (the
    /// example server prints each as a warning). Empty when none did. While a restore is
    /// unfinished, every workspace read and write fails with `Error::NotReady`.
    ///
    /// # Errors
    /// `Storage` when the store cannot be read.
    pub fn unfinished(&self) -> Result<Vec<Unfinished>> {
        let stopped = self
            .store()
            .read(|tx| crate::store::stopped_operations(tx))?;
        Ok(stopped
            .into_iter()
            .map(|operation| Unfinished {
                operation,
                refuses_workspaces: operation == "a restore",
            })
            .collect())
    }

    /// The underlying store, for an application's own tables and composed transactions.
    pub fn store(&self) -> &Store {
        &self.inner.accounts.store
    }

    /// One place per password hash the handle may run at once
    /// ([`Options::max_concurrent_hashes`]), shared by every async wrapper of it.
    #[cfg(feature = "tokio")]
    pub(crate) fn hash_places(&self) -> Arc<tokio::sync::Semaphore> {
        self.inner
            .hash_places
            .get_or_init(|| {
                // A bound as large as "no bound" (`usize::MAX`) is more places than tokio
                // counts.
                let places = self
                    .options()
                    .max_concurrent_hashes
                    .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
                Arc::new(tokio::sync::Semaphore::new(places))
            })
            .clone()
    }

    /// The data dir, absolute (see [`Redkeep::open`]).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the handle was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The current time from the configured clock.
    pub fn now(&self) -> Timestamp {
        self.inner.options.clock.now()
    }

    /// Registers an application's record type, so `check`, `stats` and `export` / `import`
    /// handle its table like redkeep's own. Registering twice is harmless.
    ///
    /// An index the type gained since records were last written (or one turned unique) is
    /// built here from the stored records, in one write: lookups through it find the older
    /// records, and a new unique index holds across old and new. Register each type at
    /// start-up, before reading through a new index; the first write of the type builds it
    /// too. Nothing is built on a handle that takes no writes (read-only, damaged, migrated
    /// down) or inside a write closure; the first write of the type does it.
    ///
    /// The build goes by the store's catalog of what each table's writers declared: an
    /// index the catalog lists already (an earlier release wrote the new type without
    /// building it) is not built again here; `check` reports its missing entries and a
    /// repair writes them. An index whose key function changed under the same name and
    /// uniqueness is not seen as new: give it a new name to have it built. Two processes
    /// writing one table with different versions of its type (an older one without the
    /// index) each keep only their own indexes exact.
    ///
    /// # Errors
    /// `InvalidInput` when `R::TABLE` names one of redkeep's own tables (`users`, `sessions`
    /// and the others of [`Redkeep::tables`]): records of `R` could not be written there;
    /// when `R::TABLE` or an index name is empty or holds `:` or a control character (NUL,
    /// a line break), or two indexes share a name
    /// (their entries would share storage; writes are refused the same way). `Denied`
    /// when two stored records share a key of a new unique index: the type stays
    /// registered, its writes are refused the same way until one of the two (the error
    /// names both) is deleted, or a repair ([`Redkeep::check`] with `repair`) moves the
    /// later one to quarantine. `Storage` when the store cannot be read or written.
    pub fn register_table<R: Record>(&self) -> Result<()> {
        crate::store::check_names::<R>()?;
        self.store().refuse_foreign(
            R::TABLE,
            std::any::TypeId::of::<R>(),
            std::any::type_name::<R>(),
            crate::store::TableInfo::of::<R>,
        )?;
        {
            let mut tables = self
                .inner
                .app_tables
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if !tables.iter().any(|t| t.name() == R::TABLE) {
                tables.push(Arc::from(check_app_table::<R>()));
            }
        }
        // Registered first, so that a repair through this handle can settle what a refused
        // build reports.
        if !self.options().read_only
            && self.store().writes_open()
            && self
                .store()
                .read(|tx| crate::store::indexes_behind::<R, _>(tx))?
        {
            self.store().write(|tx| crate::store::declare::<R>(tx))?;
        }
        Ok(())
    }

    /// Every table the handle knows how to read: redkeep's own, then the registered ones.
    pub fn tables(&self) -> Vec<Arc<dyn TableCheck>> {
        let mut out: Vec<Arc<dyn TableCheck>> = crate::auth::own_tables()
            .into_iter()
            .map(Arc::from)
            .collect();
        out.extend(
            self.inner
                .app_tables
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        out
    }

    /// Whether `init` has run on this store.
    ///
    /// # Errors
    /// `Storage` when the store cannot be read.
    pub fn is_initialized(&self) -> Result<bool> {
        Ok(self.store().read(|tx| tx.meta(INITIALIZED))?.is_some())
    }

    /// Where the store is, for messages: the data dir when the store is its redb file, else
    /// the server and schema (without a password).
    pub(crate) fn store_place(&self) -> String {
        if self.store().engine() == "redb" {
            self.dir().display().to_string()
        } else {
            format!(
                "the store on {} ({})",
                self.store().engine(),
                self.store().location()
            )
        }
    }

    /// Initialises the store once: records the time and creates the first administrator with
    /// `must_change_password` set (a generated password unless one is given; a given one
    /// with [`InitSpec::keep_password`] is not to be changed). A second call
    /// changes nothing and returns `created: false`, or, when it names an administrator,
    /// says so as an error.
    ///
    /// # Errors
    /// `Denied` when the store is initialised and `spec` names an administrator; the errors
    /// of [`Users::create`].
    pub fn init(&self, spec: InitSpec) -> Result<InitOutcome> {
        let asked = spec.admin_email.is_some() || spec.admin_password.is_some();
        if self.is_initialized()? {
            if asked {
                return Err(Error::denied(format!(
                    "{} is already initialised, so no administrator was created; add one with `redkeep user create EMAIL --admin`",
                    self.store_place()
                )));
            }
            return Ok(InitOutcome {
                created: false,
                admin: None,
                replaced_unwritten: false,
            });
        }
        let acc = &self.inner.accounts;
        let prepared = if spec.no_admin {
            None
        } else {
            let new = NewUser {
                email: spec
                    .admin_email
                    .clone()
                    .unwrap_or_else(|| "admin@localhost.localdomain".to_string()),
                name: Some("Administrator".into()),
                password: spec.admin_password.clone(),
                is_admin: true,
                ..NewUser::default()
            };
            Some(flows::prepare_user(acc, &new)?)
        };
        let now = self.now();
        let created = self.store().write(|tx| {
            if tx.meta(INITIALIZED)?.is_some() {
                return Ok(None);
            }
            tx.set_meta(INITIALIZED, &now.0.to_be_bytes())?;
            match &prepared {
                Some(p) => {
                    let mut user = p.user.clone();
                    user.must_change_password =
                        spec.admin_password.is_none() || !spec.keep_password;
                    let user = flows::insert_new_user(tx, now, user, p.hash.clone(), None)?;
                    Ok(Some(Some(user)))
                }
                None => Ok(Some(None)),
            }
        })?;
        Ok(match created {
            None => InitOutcome {
                created: false,
                admin: None,
                replaced_unwritten: false,
            },
            Some(user) => InitOutcome {
                created: true,
                replaced_unwritten: self
                    .inner
                    .replaced_unwritten
                    .load(std::sync::atomic::Ordering::Relaxed),
                admin: user.map(|user| CreatedUser {
                    user,
                    password: prepared.and_then(|p| p.generated),
                }),
            },
        })
    }

    /// Temp files and folders in the data dir that an interrupted copy, backup or restore
    /// left behind (SIGKILL, power loss), and user folders a crash left half-made in
    /// `workspaces/users/`: reported once they are an hour old (a younger one may belong to
    /// an operation under way), and removed by a repair.
    /// The restore that stopped after replacing the store but before its workspace folders
    /// were in place, if one did (its mark, as text when it does not read).
    pub(crate) fn stopped_restore(
        &self,
    ) -> Result<Option<std::result::Result<crate::workspace::StoppedRestore, String>>> {
        let Some(text) = self
            .store()
            .read(|tx| tx.meta(crate::store::RESTORE_UNFINISHED))?
        else {
            return Ok(None);
        };
        Ok(Some(
            serde_json::from_slice::<crate::workspace::StoppedRestore>(&text)
                .map_err(|e| e.to_string())
                .and_then(|mut s| {
                    // Named from the data dir (or, from older marks, absolute), and never
                    // anything outside it: the mark travels with copies of the store.
                    if s.users.is_relative() {
                        s.users = self.inner.dir.join(&s.users);
                    }
                    // (Or in its workspaces folder, which may be a symlink to another disk.)
                    let inside = |p: &Path| {
                        let real = std::fs::canonicalize(p).ok()?;
                        let within = |dir: &Path| {
                            std::fs::canonicalize(dir).is_ok_and(|d| real.starts_with(d))
                        };
                        Some(
                            within(&self.inner.dir) || within(&self.inner.dir.join(WORKSPACES_DIR)),
                        )
                    };
                    match inside(&s.users) {
                        Some(false) => Err(format!(
                            "it names {}, which is not in this data dir",
                            s.users.display()
                        )),
                        _ => Ok(s),
                    }
                }),
        ))
    }

    /// Reports a restore that stopped before its workspace folders were in place; with
    /// `repair`, puts them in place (the folders there go to the trash) and removes its
    /// mark. Returns whether the folders in place are still not the restored store's.
    fn check_stopped_restore(&self, repair: bool, report: &mut CheckReport) -> bool {
        let stopped = match self.stopped_restore() {
            Ok(None) => return false,
            Ok(Some(Ok(s))) => s,
            Ok(Some(Err(why))) => {
                let removed = repair
                    && self
                        .store()
                        .write(|tx| tx.remove_meta(crate::store::RESTORE_UNFINISHED))
                        .is_ok();
                if removed {
                    report.repaired.push(format!(
                        "removed the mark of a restore stopped part way, which could not be \
                         used ({why}): if its workspace folders are not in place, restore \
                         again"
                    ));
                } else {
                    report.problem(format!(
                        "a restore stopped part way left a mark that cannot be used ({why}): \
                         if its workspace folders are not in place, restore again; \
                         `redkeep check --repair` removes the mark"
                    ));
                }
                return false;
            }
            Err(e) => {
                report.problem(format!(
                    "a restore that stopped part way was not looked at: {e}"
                ));
                return false;
            }
        };
        let waiting = matches!(crate::fsutil::real_dir(&stopped.users), Ok(Some(())));
        if !repair {
            report.problem(if waiting {
                format!(
                    "a restore stopped after replacing the store but before putting the \
                     backup's workspace folders in place (a crash or a kill): they wait in {}; \
                     `redkeep check --repair` puts them in place (the folders there now go to \
                     the trash)",
                    stopped.users.display()
                )
            } else {
                "a restore left its mark after its workspace folders were in place; \
                 `redkeep check --repair` removes it"
                    .to_string()
            });
            return waiting;
        }
        match stopped.finish(self.workspaces()) {
            Ok(count) => {
                if let Err(e) = self
                    .store()
                    .write(|tx| tx.remove_meta(crate::store::RESTORE_UNFINISHED))
                {
                    report.problem(format!(
                        "the mark of a finished restore was not removed: {e}"
                    ));
                }
                report.repaired.push(match count {
                    Some(done) => format!(
                        "finished a restore stopped before its workspace folders were in \
                         place: {done}{}",
                        match (&done.safety_copy, &done.replaced) {
                            (Some(copy), Some(entry)) => format!(
                                "; the store it replaced is kept at {}; {}",
                                copy.display(),
                                undo_command(
                                    self.dir(),
                                    self.options().store_url.as_deref(),
                                    Some(entry),
                                    copy
                                )
                            ),
                            _ => String::new(),
                        }
                    ),
                    None => "removed the mark a finished restore left".to_string(),
                });
                false
            }
            Err(e) => {
                // The way back instead: the store the restore replaced, with the folders it
                // replaced (in the trash once they went there, else still in place).
                let undo = stopped.safety_copy.as_ref().map_or(String::new(), |copy| {
                    let trashed = self
                        .workspaces()
                        .trash_dir()
                        .join(format!("reset-{}", stopped.at));
                    let entry = matches!(crate::fsutil::real_dir(&trashed), Ok(Some(())));
                    format!(
                        "; {}",
                        undo_command(
                            self.dir(),
                            self.options().store_url.as_deref(),
                            entry.then_some(trashed.as_path()),
                            copy
                        )
                    )
                });
                report.problem(format!(
                    "a restore stopped before putting its workspace folders in place (they wait \
                     in {}), and finishing it failed: {e}{undo}",
                    stopped.users.display()
                ));
                true
            }
        }
    }

    fn check_leftovers(&self, repair: bool, report: &mut CheckReport) {
        // Ages against the system's clock, which stamped the files (not an injected one).
        let now = crate::clock::unix_now();
        // While a restore's mark is there, its staging folder (the backup's folders) may be
        // any of them: none is a leftover until it is finished.
        let restoring = !matches!(self.stopped_restore(), Ok(None));
        for left in data_dir_leftovers(&self.inner.dir) {
            // One a running operation holds is no leftover, however old.
            if !left.old(now) || crate::fsutil::in_use(&left.path) {
                continue;
            }
            if restoring && left.is_dir {
                continue;
            }
            let path = &left.path;
            let what = format!(
                "{} ({} bytes), a leftover of an interrupted operation",
                path.display(),
                left.bytes
            );
            if repair && !self.options().read_only {
                let removed = if left.is_dir {
                    std::fs::remove_dir_all(path)
                } else {
                    std::fs::remove_file(path)
                };
                match removed {
                    Ok(()) => report.repaired.push(format!("removed {what}")),
                    Err(err) => report.problem(format!("{what}: removing it failed: {err}")),
                }
            } else {
                report.problem(format!("{what}: `redkeep check --repair` removes it"));
            }
        }
    }

    /// The data dir and the store file, which hold every password hash, closed to other
    /// users of the machine, as the workspace folders are: a loose mode is a problem, which
    /// `repair` mends (0700 / 0600). What the open mended is reported (once) as mended.
    fn check_private_modes(&self, repair: bool, report: &mut CheckReport) {
        use std::os::unix::fs::PermissionsExt;
        report.repaired.extend(self.take_tightened());
        let mut private = vec![("the data dir", self.dir().to_path_buf(), 0o700)];
        if self.store().engine() == "redb" {
            private.push(("the store file", self.dir().join(STORE_FILE), 0o600));
        }
        for (what, path, mode) in private {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let was = meta.permissions().mode() & 0o777;
            if was & 0o077 == 0 {
                continue;
            }
            // Open to the group only, to a checker who reads it as a member of the group:
            // that is the way in of a read-only operator, not a fault.
            if was & 0o007 == 0
                && let Some((me, owner)) = crate::fsutil::group_reader(self.dir())
            {
                report.notes.push(format!(
                    "{what} {} is open to its group (mode {was:04o}), which lets this user \
                     (uid {me}) read it though uid {owner} owns it; if no one else of the \
                     group should, the owner's `redkeep check --repair` makes it {mode:04o}",
                    path.display()
                ));
                continue;
            }
            let what = format!(
                "{what} {} is open to other users of this machine (mode {was:04o})",
                path.display()
            );
            if !repair || self.options().read_only {
                report.problem(format!(
                    "{what}; `redkeep check --repair` makes it {mode:04o}"
                ));
                continue;
            }
            let restricted = if mode == 0o700 {
                crate::fsutil::restrict_dir(&path)
            } else {
                crate::fsutil::restrict_file(&path)
            };
            match restricted {
                Ok(Some(_)) => report.repaired.push(format!(
                    "fixed: {}; made it {mode:04o}",
                    what.replacen(" is open ", " was open ", 1)
                )),
                Ok(None) => report.problem(format!(
                    "{what}; another user owns it, so its mode cannot be changed from here"
                )),
                Err(e) => report.problem(format!("{what}; making it private failed: {e}")),
            }
        }
    }

    /// `e` back when it is a finding of [`check`](Self::check) about the store; an error
    /// of the check itself when it comes from the check running short of space (for its
    /// copy of the store file), file descriptors or memory: that says nothing of the store,
    /// and reported as a problem it sent the operator to `check --repair` or `salvage`
    /// over a sound store.
    fn check_could_run(&self, e: Error) -> Result<Error> {
        let Some(short) = e.shortage() else {
            return Ok(e);
        };
        let what = match short {
            crate::error::Shortage::Space => format!(
                "free some space on the file system of {} (the check copies the store file \
                 there) or in the temp folder",
                self.dir().display()
            ),
            crate::error::Shortage::Files => "raise the limit of open files of the process \
                 that ran it (the application, when the check ran through its admin socket: \
                 `ulimit -n`, or `LimitNOFILE=` of its service)"
                .to_string(),
            crate::error::Shortage::Memory => "free some memory".to_string(),
        };
        let kind = match short {
            crate::error::Shortage::Space => std::io::ErrorKind::StorageFull,
            crate::error::Shortage::Memory => std::io::ErrorKind::OutOfMemory,
            crate::error::Shortage::Files => std::io::ErrorKind::Other,
        };
        Err(Error::io(
            "the check could not run",
            std::io::Error::new(
                kind,
                format!(
                    "{}; this is no problem of the store, whose health is unknown until a \
                     check runs: {what}, then run `redkeep check` again",
                    e.full_message()
                ),
            ),
        ))
    }

    /// The `fixed: …` lines of what the open made private, once.
    pub(crate) fn take_tightened(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .inner
                .tightened
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Checks the whole data dir: redb's own integrity check (on a byte copy of the file
    /// without `repair`, so the file keeps its bytes), every record decodes and sits
    /// under its own key, every index mirrors its records, references resolve, and the
    /// workspace folders belong to their users and, like the trash, the data dir and the
    /// store file, are closed to other users of the machine. With `repair`, indexes are
    /// rebuilt from the records whose key is intact, foreign folders go to the trash, piece
    /// counts are fixed, loose modes of the folders, the trash, the data dir and the store
    /// file become 0700 / 0600 and leftovers of interrupted operations an hour old are
    /// removed; the changes are listed in `repaired`. On PostgreSQL a repair needs the
    /// store to itself, as `restore` and `move` do: stop the applications that have it
    /// open first.
    ///
    /// # Errors
    /// `Storage` when the store cannot be read at all (problems in the data are reported);
    /// with `repair` on PostgreSQL, `InUse` while another process has the store open
    /// (nothing was repaired); `Io` ("the check could not run") when the check itself runs
    /// short of space, file descriptors or memory, which says nothing of the store (with
    /// `repair`, what was mended before stays mended); `NotReady` when the data dir was
    /// moved, removed or replaced under this handle (nothing was looked at).
    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        // Through a handle whose data dir moved away, every path-based check and repair
        // would look at (and change) whatever is at the old path now.
        self.workspaces().in_place()?;
        // A move into this store stopped part way: the data dir's folders are still those
        // of the store the move came from (the live one), so they are neither repaired nor
        // named as foreign here, and the store itself is not mended (the same move redoes it).
        let half_moved = self
            .store()
            .read(|tx| tx.meta(crate::store::MOVE_UNFINISHED))?;
        if repair && let Some(from) = &half_moved {
            return Err(Error::denied(format!(
                "a move from {} into this store stopped part way, so `check --repair` is \
                 refused: the data dir's workspace folders still belong to the store the move \
                 came from; {}",
                String::from_utf8_lossy(from),
                HALF_MOVED_WAYS_OUT
            )));
        }
        let mut report = CheckReport::new();
        // Damage of the file itself (pages, not records) is never "repaired" in place.
        let mut damaged_pages = false;
        // redb's page check runs on a byte copy of the file: run in place, a check that finds
        // damage leaves the file marked as needing recovery, which the next open for writing
        // (by any command) makes, rewriting the damaged file. Only a repair runs it in place,
        // and only when the copy showed what redb repairs, not damaged pages.
        let in_place = repair && !self.options().read_only && self.store().engine() != "postgres";
        let file_check = match self.store().check_file_copy() {
            Ok(false) if in_place => self.store().check_file(),
            other => other,
        };
        match file_check {
            Ok(true) => {}
            Ok(false) if self.store().engine() == "postgres" => report.problem(
                "an index of the store's tables failed amcheck's bt_index_check on the server; \
                 rebuild it with REINDEX SCHEMA",
            ),
            Ok(false) if in_place => {
                report.problem("the file failed redb's integrity check and was repaired")
            }
            Ok(false) => report.problem(
                "the file failed redb's integrity check in a way redb repairs (its allocator \
                 state, not its pages); `redkeep check --repair` repairs it",
            ),
            Err(e) => {
                let e = self.check_could_run(e)?;
                damaged_pages = matches!(e, Error::Damaged { .. });
                report.problem(format!("the file: {e}"));
            }
        }
        let tables = self.tables();
        if repair && damaged_pages {
            report.problem(
                "`check --repair` does not rewrite a file whose pages are damaged; copy out what can be read with `redkeep salvage --to DIR`, or restore a backup",
            );
        } else if repair {
            let now = self.now();
            let rebuild = || {
                self.store().write_anyway(self.options().durability, |tx| {
                    let mut changes = crate::store::move_old_quarantine(tx)?;
                    changes.extend(tx.mend_shapes()?);
                    for t in &tables {
                        changes.extend(t.rebuild_indexes(tx)?);
                    }
                    // Records set aside (or lost before) leave references pointing nowhere:
                    // those records are set aside too, and what every user needs is made
                    // again.
                    changes.extend(references::settle(tx, now, false)?);
                    Ok(changes)
                })
            };
            // One transaction reads every table and rewrites every index: on PostgreSQL,
            // any other process's write to a table it read would make it start over, each
            // time reading the whole store again (redb's single writer keeps them out
            // already). So it runs with the store alone, refused while others have it open.
            let changes = if self.store().engine() == "postgres" {
                self.store().alone_with("be repaired", rebuild)?
            } else {
                rebuild()?
            };
            if !changes.is_empty() {
                tracing::warn!(changes = changes.len(), "indexes repaired");
            }
            report.repaired = changes;
        }
        for t in &tables {
            // Each table on its own snapshot: a damaged one does not hide the others.
            if let Err(e) = self.store().read(|tx| t.check(tx, &mut report)) {
                let e = self.check_could_run(e)?;
                report.problem(format!("{}: cannot be read: {e}", t.name()));
            }
        }
        if let Err(e) = self.store().read(|tx| references::check(tx, &mut report)) {
            report.problem(format!("references were not checked: {e}"));
        }
        match self.store().read(|tx| crate::store::damaged_shapes(tx)) {
            Ok(damaged) => {
                for (id, why) in damaged {
                    let Some(id) = id else {
                        report.problem(format!("meta: {why}"));
                        continue;
                    };
                    let known = crate::store::format::cached_shape(id).is_some();
                    report.problem(format!(
                        "meta: the registry entry of shape {id:016x} is damaged ({why}); {}",
                        if known {
                            "`redkeep check --repair` writes it again (this build's record types have it)"
                        } else {
                            "records written in that shape cannot be read; `redkeep salvage --to DIR` copies what reads"
                        }
                    ));
                }
            }
            Err(e) => report.problem(format!("meta: the shape registry cannot be read: {e}")),
        }
        // A restore killed between the store and the folders: finished (or named) first, so
        // the folders checked below are the restored ones.
        let restore_waiting = self.check_stopped_restore(
            repair && !damaged_pages && !self.options().read_only,
            &mut report,
        );
        // A reset killed after emptying the store: the folders of the accounts it emptied go
        // to one trash entry (which `restore --folders` brings back with the reset's copy),
        // not one by one as orphans; those of users made since stay.
        match self.stopped_reset() {
            Ok(Some(stopped)) => {
                if let Err(e) = self.finish_reset(&stopped, repair && !damaged_pages, &mut report) {
                    report.problem(format!("the reset that stopped part way: {e}"));
                }
            }
            Ok(None) => {}
            Err(e) => report.problem(format!(
                "a reset that stopped part way was not looked at: {e}"
            )),
        }
        let folders = if half_moved.is_some() {
            Err(Error::denied(
                "they belong to the store the stopped move came from, not to this one",
            ))
        } else if restore_waiting {
            // The folders in place are those the restore replaces: checked against the
            // restored store, each would be named (or moved away) as another account's.
            Err(Error::denied(
                "they are not the restored store's until the stopped restore is finished",
            ))
        } else {
            self.workspaces()
                .check(repair && !damaged_pages, self.now())
        };
        match folders {
            Ok(found) => {
                for p in found {
                    let text = format!("workspace of user {}: {}", p.user_id, p.problem);
                    if p.problem.starts_with("fixed:") {
                        report.repaired.push(text);
                    } else if let Some(note) = p.problem.strip_prefix(crate::fsutil::NOTE) {
                        report
                            .notes
                            .push(format!("workspace of user {}: {note}", p.user_id));
                    } else {
                        report.problem(text);
                    }
                }
            }
            Err(e) => {
                let e = self.check_could_run(e)?;
                report.problem(format!("workspace folders were not checked: {e}"))
            }
        }
        // A file (or symlink) left among the users' folders is no one's: nothing serves it,
        // and exports and backups leave it out. (A folder of another name is taken for the
        // operator's own: it is left, and goes to the trash and back with the others on a
        // reset and its undo.)
        match self.workspaces().entries_not_named_by_id() {
            Ok(names) => {
                let users = self.workspaces().dir(0);
                let users = users.parent().unwrap_or(&users);
                let not_a_folder = |name: &std::ffi::OsString| {
                    !users
                        .join(name)
                        .symlink_metadata()
                        .is_ok_and(|m| m.is_dir())
                };
                for name in names.iter().filter(|n| not_a_folder(n)) {
                    report.problem(format!(
                        "the workspace folders: {} is not a user's folder (its name is no user \
                         id, and it is no folder), so nothing serves it, and exports and \
                         backups leave it out; move it out of {}",
                        users.join(name).display(),
                        users.display()
                    ));
                }
            }
            Err(e) => {
                let e = self.check_could_run(e)?;
                report.problem(format!(
                    "the entries of the workspace folders were not all looked at: {e}"
                ))
            }
        }
        // Mended with the rest, or not at all: a repair of damaged pages is refused whole
        // (above), and the report says nothing was repaired.
        let repair_trash = repair && !damaged_pages && !self.options().read_only;
        for line in self.workspaces().check_trash_modes(repair_trash) {
            let text = format!("the workspace trash: {line}");
            if line.starts_with("fixed:") {
                report.repaired.push(text);
            } else if let Some(note) = line.strip_prefix(crate::fsutil::NOTE) {
                report.notes.push(format!("the workspace trash: {note}"));
            } else {
                report.problem(text);
            }
        }
        self.check_private_modes(repair, &mut report);
        self.check_leftovers(repair, &mut report);
        if self
            .store()
            .read(|tx| tx.meta(crate::store::IMPORT_UNFINISHED))?
            .is_some()
        {
            report.problem(
                "an import stopped after writing its records (a crash or a kill), so workspace \
                 folders may be missing; run the same import again: it replaces what the \
                 stopped one wrote",
            );
        }
        if self
            .store()
            .read(|tx| tx.meta(crate::store::ADOPT_UNFINISHED))?
            .is_some()
        {
            report.problem(
                "an adoption stopped part way (a crash or a kill), so records or workspace \
                 folders may be missing; remove this data dir's store and workspaces folder \
                 (they hold only that adoption's copy), then adopt again",
            );
        }
        if let Some(from) = self
            .store()
            .read(|tx| tx.meta(crate::store::MOVE_UNFINISHED))?
        {
            report.problem(format!(
                "a move from {} into this store stopped part way (a crash, a kill, a lost \
                 connection), so records or workspace folders may be missing: this is not a \
                 whole store; {HALF_MOVED_WAYS_OUT}",
                String::from_utf8_lossy(&from)
            ));
        }
        if repair && report.ok {
            self.store().clear_damage();
        }
        Ok(report)
    }
}
