//! Backups: one tar archive holding a manifest, a consistent snapshot of the store and every
//! workspace folder, each folder copied under its shared lock so no piece is half-written.
//! Restoring brings both back, after checking the archive and keeping a safety copy of what
//! it replaces; id sequences never go back. A plain store file (an automatic `pre-vN` copy,
//! or a backup of the first release) is restored as the store alone.
//!
//! ```text
//! redkeep.redb                  the store, from one read snapshot
//! workspaces/users/{id}/…       every user folder
//! redkeep-backup.json           {"redkeep_backup": 1, "schema_version": 3, "created_at": …,
//!                                "entries": N}, last: it counts the entries before it
//! ```
//!
//! An archive cut short has no manifest and is refused. (Archives of earlier builds have
//! the manifest first and no count; they restore as before.)

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{folders_of, free_with_suffix, open_file_store, sequences_of};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::handle::{SCHEMA_VERSION, STORE_FILE, WORKSPACES_DIR};
use crate::store::INIT_HINT;
use crate::store::{CheckReport, Mode, Store};
use crate::workspace::{WorkspaceOptions, Workspaces};
use crate::{Redkeep, fsutil};

const MANIFEST: &str = "redkeep-backup.json";
/// The largest manifest a restore reads: it names every file with its checksum (about 130
/// bytes each), so this takes archives of some two million files.
const MAX_MANIFEST_BYTES: u64 = 256 << 20;
const BACKUP_FORMAT: u64 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    redkeep_backup: u64,
    schema_version: u64,
    created_at: Timestamp,
    /// The entries before the manifest (the store and every workspace file). Written last,
    /// the manifest is missing from an archive cut short, and this count tells one whose
    /// entries were dropped. `None` in archives of earlier builds, which wrote it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<u64>,
    /// The SHA-256 of every entry before the manifest, by its path in the archive: tar
    /// checks only its headers, so a restore compares each file's bytes against these.
    /// `None` in archives of earlier builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<std::collections::BTreeMap<String, String>>,
}

/// A reader that hashes what passes through it (SHA-256).
struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Hashing<R> {
        use sha2::Digest;
        Hashing {
            inner,
            hasher: sha2::Sha256::new(),
        }
    }

    fn hex(self) -> String {
        use sha2::Digest;
        crate::bytes::hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        // A backup whose asker went away stops here, even within a large file; its
        // unfinished archive is removed on the way out.
        fsutil::go_on("the backup").map_err(std::io::Error::other)?;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What a backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The backup file.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The store's schema version.
    pub schema_version: u64,
    /// Workspace folders in the archive.
    pub folders: u64,
    /// Files from those folders.
    pub files: u64,
    /// Entries of those folders the archive does not hold, in name order: symlinks and
    /// special files (`users/{id}/…`; see
    /// [`crate::workspace::Workspaces::copy_folder_timed`]), the folders (`users/{id}`) of
    /// users the store's snapshot does not hold (created after it, or orphans), whose owner
    /// marker names another account or none (a restore would refuse them), or that are not
    /// real folders (a symlink in a folder's place), and entries of `users/` no user id
    /// names (`users/{name}`: an operator's folder).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(serialize_with = "crate::fsutil::lossy::list")]
    pub not_kept: Vec<PathBuf>,
    /// The folders among `not_kept` (`users/{id}`, `users/{name}`), each with why it was
    /// left out, in name order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(serialize_with = "crate::fsutil::lossy::list_with")]
    pub folders_not_kept: Vec<(PathBuf, String)>,
    /// The check of the store snapshot.
    pub check: CheckReport,
    /// redkeep's temp files and folders found beside the backup (`.rk-tmp-*`: what a backup
    /// killed part way leaves, a staging folder holding a copy of the store) and removed: an
    /// hour old or more, and held by no running operation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(serialize_with = "crate::fsutil::lossy::list")]
    pub leftovers_removed: Vec<PathBuf>,
    /// Such temp entries left in place: younger than an hour, or held by an operation still
    /// running.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(serialize_with = "crate::fsutil::lossy::list")]
    pub leftovers_kept: Vec<PathBuf>,
    /// Such temp entries old enough and not held, whose removal failed, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(serialize_with = "crate::fsutil::lossy::list_with")]
    pub leftovers_failed: Vec<(PathBuf, String)>,
}

fn header(size: u64, mtime: i64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(u64::try_from(mtime).unwrap_or(0));
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// A PAX `mtime` for a file dated `modified`: seconds since 1970, a point, nanoseconds;
/// `None` for a time in whole seconds (the header holds it) or before 1970.
fn pax_mtime(modified: std::time::SystemTime) -> Option<String> {
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    (since.subsec_nanos() != 0).then(|| format!("{}.{:09}", since.as_secs(), since.subsec_nanos()))
}

/// The time of a PAX `mtime` value (`secs[.fraction]`, as [`pax_mtime`] writes and other
/// tars do); `None` when it is not one (negative, or no time a clock holds).
fn parse_pax_mtime(value: &[u8]) -> Option<std::time::SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Nanoseconds: the first nine digits of the fraction, padded.
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: u32 = digits.parse().ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(secs.parse().ok()?, nanos))
}

fn tar_err(what: &str, e: std::io::Error) -> Error {
    Error::io(format!("writing the backup ({what})"), e)
}

/// Writes a backup of the data dir of `rk` to `dest` (a new file, 0600): the store from one
/// read snapshot and every workspace folder, each under its shared lock. Other processes
/// may keep working meanwhile; works on a store of an older schema too.
///
/// # Errors
/// `InvalidInput` when `dest` exists; `Io` / `Storage` when writing fails.
pub fn backup(rk: &Redkeep, dest: &Path) -> Result<BackupReport> {
    write_backup(rk, dest).map_err(|e| backup_failed(rk, dest, e))
}

/// The error `e` of the backup to `dest`, said with the way out when it comes from the
/// folder it is written to: no space left there (or where the store is staged), or no right
/// of this process (the application's, for a backup handed to it) to write there.
fn backup_failed(rk: &Redkeep, dest: &Path, e: Error) -> Error {
    use std::io::ErrorKind;
    let folder = fsutil::folder_of(dest);
    let uid = rustix::process::geteuid().as_raw();
    let (kind, way_out) = if e.shortage() == Some(crate::error::Shortage::Space) {
        let staged = if rk.store().is_read_only() {
            String::new()
        } else {
            format!(
                " (or in the data dir {}, where the store is staged)",
                rk.dir().display()
            )
        };
        (
            ErrorKind::StorageFull,
            format!(
                "free some space on the file system of {}, which the backup and its copy of \
                 the store are written to{staged}, or write the backup elsewhere; nothing was \
                 left behind",
                folder.display()
            ),
        )
    } else if let Some(how) = out_of_reach(folder, &e) {
        let why = format!(
            "the process writing the backup (uid {uid}; the application, when the backup ran \
             through its admin socket) may not {how} {}: give a folder uid {uid} may write",
            folder.display()
        );
        // Refused before anything was tried: the whole of it is said here.
        if matches!(e, Error::InvalidInput { .. }) {
            return Error::invalid("path", why);
        }
        (ErrorKind::PermissionDenied, why)
    } else {
        return e;
    };
    Error::io(
        format!("writing the backup {}", dest.display()),
        std::io::Error::new(kind, format!("{}; {way_out}", e.full_message())),
    )
}

/// How `folder` is out of this process's reach ("reach", "write in") when `e` comes from
/// that: a refused permission, or a refusal of the folder as missing, while this process may
/// not write in it.
fn out_of_reach(folder: &Path, e: &Error) -> Option<&'static str> {
    use rustix::fs::Access;
    let unreachable =
        fs::metadata(folder).is_err_and(|m| m.kind() == std::io::ErrorKind::PermissionDenied);
    // (Only the refusal of the folder as out of reach: another refusal is said as it is.)
    let refused = e.is_permission_denied()
        || (unreachable
            && matches!(e, Error::InvalidInput { field: "path", reason }
                if reason.contains("may not reach")));
    // As this process's effective uid, the one that writes.
    let may_write = rustix::fs::accessat(
        rustix::fs::CWD,
        folder,
        Access::WRITE_OK | Access::EXEC_OK,
        rustix::fs::AtFlags::EACCESS,
    );
    if !refused || may_write.is_ok() {
        return None;
    }
    Some(if unreachable { "reach" } else { "write in" })
}

fn write_backup(rk: &Redkeep, dest: &Path) -> Result<BackupReport> {
    // Not while a stopped restore or reset has the store and the folders out of step: the
    // archive would pair them.
    super::guards::refuse_stopped_operation(rk.store())?;
    // A store on a server with a data dir that is not its own: the backup would hold none
    // of its users' folders.
    crate::handle::refuse_unknown_data_dir(rk)?;
    // (The CLI gives paths made absolute: `-` arrives as `…/-`.)
    if dest.file_name().is_some_and(|n| n == "-") {
        return Err(Error::invalid(
            "path",
            "a backup is written to a file, not to stdout (`-`); give the path of a new file",
        ));
    }
    let parent = fsutil::existing_folder_of(dest, "path", "backup")?;
    // A dangling symlink is something there too.
    if dest.symlink_metadata().is_ok() {
        return Err(Error::invalid(
            "path",
            format!("{} already exists; choose a new file", dest.display()),
        ));
    }
    fsutil::refuse_temp_name(dest)?;
    super::files::refuse_own_file_name(rk.dir(), dest, "path")?;
    // Among the workspace folders, the backup would travel with what it backs up: in a
    // user's folder it is that user's file (counted toward the folder, shown to the app),
    // and every later backup holds it again.
    let workspaces = rk.workspaces().root();
    if fsutil::within(workspaces, dest) {
        return Err(Error::invalid(
            "path",
            format!(
                "{} is among the workspace folders ({}); write the backup elsewhere: it holds \
                 every account's records and password hashes, and there it would become a \
                 user's file and go into every later backup",
                dest.display(),
                workspaces.display()
            ),
        ));
    }
    let now = rk.now();
    let schema_version = rk.store().schema_version()?.unwrap_or(SCHEMA_VERSION);
    // A backup killed part way leaves its unfinished archive here (named after it): the
    // next backup to this folder takes it away. Its staging folder (a copy of the store,
    // every password hash) is made in the data dir, where `status` names it and
    // `check --repair` removes it; beside the backup only where the data dir cannot be
    // written (a read-only mount, another user's) or cannot hold the copy (no space), and
    // for a handle opened read-only, which writes nothing in the data dir.
    let tidied = fsutil::remove_leftovers(parent, rk.dir());
    let stage = |dir: &Path| -> Result<(fsutil::TempDir, PathBuf)> {
        let staging = fsutil::private_temp_dir_in(Some(dir), "a staging folder for the backup")?;
        let snapshot = staging.path().join(STORE_FILE);
        rk.store().copy_to(&snapshot)?;
        Ok((staging, snapshot))
    };
    let (_staging, snapshot) = match (!rk.store().is_read_only()).then(|| stage(rk.dir())) {
        Some(Ok(staged)) => staged,
        _ => stage(parent)?,
    };
    let check = check_in_place(&snapshot)?;
    fsutil::go_on("the backup")?;

    let archive = fsutil::held_temp_sibling(dest)?;
    let mut tar = tar::Builder::new(
        archive
            .as_file()
            .try_clone()
            .map_err(|e| tar_err("opening", e))?,
    );
    let db = File::open(&snapshot).map_err(|e| tar_err("store", e))?;
    let size = db.metadata().map_err(|e| tar_err("store", e))?.len();
    let mut sums = std::collections::BTreeMap::new();
    let mut db = Hashing::new(db);
    tar.append_data(&mut header(size, now.0), STORE_FILE, &mut db)
        .map_err(|e| tar_err("store", e))?;
    sums.insert(STORE_FILE.to_string(), db.hex());
    let (mut folders, mut files) = (0u64, 0u64);
    let mut not_kept = Vec::new();
    let ws = rk.workspaces();
    // Only the folders of users the snapshot holds: one made for a user created since (or
    // an orphan) would come back beside no record, and be refused to the next new user.
    // And only folders whose owner marker names that user: a restore refuses an archive
    // holding a folder of another account (or of none), which could be served to the
    // wrong one, so such a folder would make the whole backup one that does not restore.
    let ids = ws.user_ids()?;
    let mut folders_not_kept: Vec<(PathBuf, String)> = super::files::not_real_folders(ws)?
        .into_iter()
        .map(|p| {
            let named_for_a_user = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().parse::<u64>().is_ok());
            let why = if named_for_a_user {
                "not a real folder (a symlink or a file in its place, which redkeep never follows)"
            } else {
                "not named for a user (an operator's folder)"
            };
            (p, why.to_string())
        })
        .collect();
    let kept: Vec<u64> = {
        let snap = open_file_store(&snapshot, Mode::Exclusive)?;
        snap.read(|tx| {
            let users = tx.table::<crate::User>();
            let mut kept = Vec::with_capacity(ids.len());
            for &id in &ids {
                let left_out = match users.get(&id)? {
                    // A store from before uids (an outdated one, backed up before its
                    // upgrade): its folders are not marked yet, and go by their number.
                    Some(u) if u.uid.is_unset() => None,
                    Some(u) if matches!(ws.marker(id), Ok(Some(m)) if m.uid == u.uid.0) => None,
                    Some(_) => Some(
                        "its owner marker names another account or none (`redkeep check` \
                         names it)",
                    ),
                    None => Some(
                        "of no user in the store's snapshot (a user created while the backup \
                         ran, whose next backup holds it, or an orphan)",
                    ),
                };
                match left_out {
                    None => kept.push(id),
                    Some(why) => folders_not_kept
                        .push((Path::new("users").join(id.to_string()), why.to_string())),
                }
            }
            Ok(kept)
        })?
    };
    for id in kept {
        folders += 1;
        // Streamed: a file of any size goes in without being held in memory.
        let skipped = ws.copy_folder_streamed(id, &mut |rel, file, len, modified| {
            let name = Path::new(WORKSPACES_DIR).join("users").join(rel);
            files += 1;
            // The file's own time: restored with it, so lists show when a piece was saved.
            let mtime = Timestamp::of_system_time(modified).unwrap_or(now).0;
            let mut hashed = Hashing::new(file);
            // The part of a second a header cannot hold goes in a PAX `mtime` before it
            // (readers without PAX take the header's whole seconds).
            if let Some(exact) = pax_mtime(modified) {
                tar.append_pax_extensions([("mtime", exact.as_bytes())])
                    .map_err(|e| tar_err(&format!("users/{}", rel.display()), e))?;
            }
            tar.append_data(&mut header(len, mtime), &name, &mut hashed)
                .map_err(|e| tar_err(&format!("users/{}", rel.display()), e))?;
            sums.insert(name.to_string_lossy().into_owned(), hashed.hex());
            Ok(())
        })?;
        not_kept.extend(skipped.into_iter().map(|p| Path::new("users").join(p)));
    }
    folders_not_kept.sort();
    not_kept.extend(folders_not_kept.iter().map(|(p, _)| p.clone()));
    not_kept.sort();
    // The manifest comes last, counting what came before it: a restore refuses an archive
    // cut short (no manifest) or missing entries (another count).
    let manifest = serde_json::to_vec_pretty(&Manifest {
        redkeep_backup: BACKUP_FORMAT,
        schema_version,
        created_at: now,
        entries: Some(files + 1),
        sha256: Some(sums),
    })
    .map_err(|e| Error::Invariant {
        what: format!("cannot write the backup manifest: {e}"),
    })?;
    tar.append_data(
        &mut header(manifest.len() as u64, now.0),
        MANIFEST,
        &manifest[..],
    )
    .map_err(|e| tar_err("manifest", e))?;
    tar.into_inner()
        .and_then(|mut f| f.flush())
        .map_err(|e| tar_err("finishing", e))?;
    fsutil::persist_new(archive, dest)?;
    let bytes = fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    tracing::info!(path = %dest.display(), bytes, folders, "backup written");
    Ok(BackupReport {
        path: dest.to_path_buf(),
        bytes,
        schema_version,
        folders,
        files,
        not_kept,
        folders_not_kept,
        check,
        leftovers_removed: tidied.removed.into_iter().map(|l| l.path).collect(),
        leftovers_kept: tidied.young_or_held.into_iter().map(|l| l.path).collect(),
        leftovers_failed: tidied
            .failed
            .into_iter()
            .map(|(l, why)| (l.path, why))
            .collect(),
    })
}

/// Checks a store file in place: redb's integrity, and on a store of this build's schema,
/// every record and index. (A store of an older schema is checked after `migrate up`.)
fn check_in_place(path: &Path) -> Result<CheckReport> {
    let store = open_file_store(path, Mode::Exclusive)?;
    let mut report = CheckReport::new();
    if !store.check_file()? {
        report.problem("the file failed redb's integrity check");
    }
    if store.schema_version()? != Some(SCHEMA_VERSION) {
        return Ok(report);
    }
    store.read(|tx| {
        for t in crate::auth::own_tables() {
            t.check(tx, &mut report)?;
        }
        crate::auth::references::check(tx, &mut report)
    })?;
    Ok(report)
}

/// Checks a store file without changing it (redb may repair a file it opens, so the check
/// runs on a private copy).
///
/// # Errors
/// `NotFound`; `Storage` when it is not a readable redb file (truncated, corrupt).
pub fn check_file(path: &Path) -> Result<CheckReport> {
    if !path.is_file() {
        return Err(Error::not_found(format!("file {}", path.display())));
    }
    let tmp = fsutil::private_temp_in(&std::env::temp_dir())?;
    fs::copy(path, tmp.path()).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    check_in_place(tmp.path())
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The schema version of the restored store (run `redkeep migrate up` when older).
    pub schema_version: u64,
    /// The copy of the replaced store, if one was replaced.
    #[serde(serialize_with = "crate::fsutil::lossy::option")]
    pub safety_copy: Option<PathBuf>,
    /// Where the replaced workspace folders went, if any were replaced.
    #[serde(serialize_with = "crate::fsutil::lossy::option")]
    pub folders_safety: Option<PathBuf>,
    /// Workspace folders restored (`None`: the backup held only the store, and the folders
    /// present were kept).
    pub folders: Option<u64>,
    /// Why the replaced store could not be opened, when it could not: `safety_copy` then
    /// holds its bytes as they were, which no restore takes back (`salvage` reads what it
    /// can of them).
    pub previous_damaged: Option<String>,
    /// After a restore of a store file alone: the trash entries holding folders of the
    /// restored store's users who have no folder in place (what an earlier reset or restore
    /// set aside), for `restore --folders` to put back.
    pub folders_in_trash: Vec<FoldersInTrash>,
}

/// A trash entry holding workspace folders of users of a restored store (their owner
/// markers name them) who have no folder in place.
#[derive(Debug, Clone, Serialize)]
pub struct FoldersInTrash {
    /// The trash entry (`workspaces/trash/reset-…` or `…/restore-…`).
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub entry: PathBuf,
    /// The users whose folders it holds, in id order.
    pub users: Vec<u64>,
}

/// The trash entries of `data_dir` holding folders whose owner markers name users of its
/// store file who have no folder in place, newest first. Best effort: what cannot be read
/// (the store at an older schema, a damaged marker) is passed over.
fn folders_in_trash(data_dir: &Path) -> Vec<FoldersInTrash> {
    use crate::auth::users::User;
    let workspaces = data_dir.join(WORKSPACES_DIR);
    let Ok(entries) = fs::read_dir(workspaces.join("trash")) else {
        return Vec::new();
    };
    let Ok(store) = open_file_store(&data_dir.join(STORE_FILE), Mode::Shared) else {
        return Vec::new();
    };
    let mut out: Vec<FoldersInTrash> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("reset-") || name.starts_with("restore-")) {
            continue;
        }
        // A trash entry holds the folders it took, named by their users' ids.
        let Ok(folders) = fs::read_dir(entry.path()) else {
            continue;
        };
        let mut users: Vec<u64> = folders
            .flatten()
            .filter_map(|f| {
                let id: u64 = f.file_name().to_str()?.parse().ok()?;
                if workspaces
                    .join("users")
                    .join(id.to_string())
                    .symlink_metadata()
                    .is_ok()
                {
                    return None;
                }
                let owner = Workspaces::read_marker(&f.path()).ok()??;
                let user = store.read(|tx| tx.table::<User>().get(&id)).ok()??;
                (user.uid.0 == owner.uid).then_some(id)
            })
            .collect();
        if !users.is_empty() {
            users.sort_unstable();
            out.push(FoldersInTrash {
                entry: entry.path(),
                users,
            });
        }
    }
    // Newest first: entries are named by the time they were made.
    out.sort_by(|a, b| b.entry.cmp(&a.entry));
    out
}

// Where a tar entry may go: the manifest, the store, or a file under workspaces/users/{id}/.
fn allowed(path: &Path) -> bool {
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return false;
    }
    let s = path.to_string_lossy();
    if s == MANIFEST || s == STORE_FILE {
        return true;
    }
    let mut parts = path.components();
    parts
        .next()
        .is_some_and(|c| c.as_os_str() == WORKSPACES_DIR)
        && parts.next().is_some_and(|c| c.as_os_str() == "users")
        && parts.next().is_some_and(|c| {
            // A user's id as redkeep names its folder (`users/2`, never `users/0002` or
            // `users/0`): any other spelling would be put in place as a folder nobody owns.
            let id = c.as_os_str().to_string_lossy();
            id.bytes().all(|b| b.is_ascii_digit())
                && id
                    .parse::<u64>()
                    .is_ok_and(|n| n >= 1 && id == n.to_string())
        })
        && parts.next().is_some()
}

fn is_tar(path: &Path) -> Result<bool> {
    let mut head = [0u8; 512];
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let n = f
        .read(&mut head)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(n == 512 && &head[257..262] == b"ustar")
}

// Unpacks a backup archive, refusing entries outside the layout: the store into `staging`,
// the workspace folders (`workspaces/users/…`) into `ws_staging` (`users/…`), a folder on
// the file system of the data dir's workspace folders, so that they go into place by a
// rename. Returns the manifest.
fn unpack(archive: &Path, staging: &Path, ws_staging: &Path) -> Result<Manifest> {
    let bad = |why: String| {
        Error::invalid(
            "backup",
            format!(
                "{} cannot be read as a redkeep backup (not one, or cut short or damaged): {why}",
                archive.display()
            ),
        )
    };
    let file =
        File::open(archive).map_err(|e| Error::io(format!("opening {}", archive.display()), e))?;
    let len = file.metadata().map(|m| m.len()).ok();
    let mut tar = tar::Archive::new(&file);
    let mut manifest = None;
    // Entries other than the manifest: all of them, and those after it.
    let (mut unpacked, mut after_manifest) = (0u64, 0u64);
    let mut sums = std::collections::BTreeMap::new();
    let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            // Read to its end, it stops inside an entry: after the PAX header that dates the
            // next file, say.
            let at_end = len.is_some_and(|l| (&file).stream_position().is_ok_and(|p| p >= l));
            if at_end {
                bad(format!(
                    "it ends inside an entry ({e}): it was cut short (an interrupted copy, a full disk)"
                ))
            } else {
                bad(e.to_string())
            }
        })?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular => {}
            other => return Err(bad(format!("{} is a {other:?} entry", path.display()))),
        }
        if !allowed(&path) {
            return Err(bad(format!(
                "unexpected entry {} (a backup holds {MANIFEST}, {STORE_FILE} and \
                 {WORKSPACES_DIR}/users/ID/…, each ID a user's id without leading zeros)",
                path.display()
            )));
        }
        if path == Path::new(MANIFEST) {
            if manifest.is_some() {
                return Err(bad(format!("it holds {MANIFEST} twice")));
            }
            // Read whole: a manifest cut at a fixed size (it was 64 KiB) failed to parse for
            // any backup of more than some 500 files.
            let size = entry.size();
            if size > MAX_MANIFEST_BYTES {
                return Err(bad(format!(
                    "its manifest is {size} bytes, more than the {MAX_MANIFEST_BYTES} a restore reads"
                )));
            }
            let mut text = Vec::new();
            entry
                .by_ref()
                .take(MAX_MANIFEST_BYTES)
                .read_to_end(&mut text)
                .map_err(|e| bad(e.to_string()))?;
            manifest = Some(
                serde_json::from_slice::<Manifest>(&text)
                    .map_err(|e| bad(format!("its manifest is malformed ({e})")))?,
            );
            continue;
        }
        unpacked += 1;
        if manifest.is_some() {
            after_manifest += 1;
        }
        let target = match path.strip_prefix(WORKSPACES_DIR) {
            Ok(inside) => ws_staging.join(inside),
            Err(_) => staging.join(&path),
        };
        if target.symlink_metadata().is_ok() {
            return Err(bad(format!("it holds {} twice", path.display())));
        }
        if let Some(parent) = target.parent() {
            fsutil::create_private_dir(parent)?;
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| Error::io(format!("unpacking {}", path.display()), e))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("securing {}", target.display()), e))?;
        // A workspace file keeps the time it was saved at (the store's own time does not
        // matter); a time no clock can hold (a crafted header) is left out, not a panic.
        // A PAX `mtime` holds the part of a second too; backups before it hold seconds only.
        let exact = match entry.pax_extensions() {
            Ok(Some(pax)) => pax
                .flatten()
                .find(|x| x.key_bytes() == b"mtime")
                .and_then(|x| parse_pax_mtime(x.value_bytes())),
            _ => None,
        };
        let mtime = exact
            .or_else(|| {
                entry.header().mtime().ok().and_then(|t| {
                    std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(t))
                })
            })
            .filter(|_| path.starts_with(WORKSPACES_DIR));
        let mut hashed = Hashing::new(&mut entry);
        std::io::copy(&mut hashed, &mut out)
            .and_then(|_| mtime.map_or(Ok(()), |t| out.set_modified(t)))
            .and_then(|()| out.sync_all())
            .map_err(|e| Error::io(format!("unpacking {}", path.display()), e))?;
        sums.insert(path.to_string_lossy().into_owned(), hashed.hex());
    }
    let manifest = manifest.ok_or_else(|| {
        bad(format!(
            "its manifest ({MANIFEST}), which a backup writes last, is missing: the archive \
             was cut short (an interrupted copy, a full disk), or is not a redkeep backup"
        ))
    })?;
    if let Some(expected) = manifest.entries
        && (expected != unpacked || after_manifest > 0)
    {
        return Err(bad(format!(
            "its manifest counts {expected} entries before it, but {} came before it and \
             {after_manifest} after: entries were lost or added",
            unpacked - after_manifest
        )));
    }
    if let Some(expected) = &manifest.sha256 {
        let damaged: Vec<&String> = sums
            .iter()
            .filter(|(path, sum)| expected.get(*path) != Some(sum))
            .map(|(path, _)| path)
            .collect();
        if !damaged.is_empty() || expected.len() != sums.len() {
            let shown: Vec<String> = damaged.iter().map(|p| p.to_string()).collect();
            return Err(bad(format!(
                "{} entr(ies) do not match the checksums the backup wrote for them ({}): the \
                 archive was damaged after it was written (a disk, a copy); nothing was \
                 changed; choose another backup",
                damaged.len().max(1),
                crate::top::first_few(&shown, 3)
            )));
        }
    }
    if manifest.redkeep_backup != BACKUP_FORMAT {
        return Err(bad(format!(
            "backup format {} is not {BACKUP_FORMAT}; use the redkeep that wrote it",
            manifest.redkeep_backup
        )));
    }
    if manifest.schema_version > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            found: manifest.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(manifest)
}

/// Restores the data dir `data_dir` from `backup`: an archive written by `redkeep backup`
/// (the store and every workspace folder), or a plain store file (an automatic `pre-vN`
/// copy, or a backup of the first release: the store alone, folders kept). The backup is
/// checked first; replacing an existing store needs `force`, and keeps a safety copy of the
/// store (`redkeep.redb.pre-restore-<time>.bak`) and of the folders (in the trash). Id
/// sequences are raised to the replaced store's, so ids are never handed out twice. A
/// store that cannot be opened (empty, truncated, not a store) is replaced too: its bytes
/// are kept as the safety copy, and since its sequences cannot be read, user ids go past
/// the highest workspace folder's instead.
///
/// # Errors
/// `InvalidInput` / `Storage` for a backup that is not one or fails its check (nothing is
/// changed); `NewerSchema`; `InUse` when a process holds the store; `Denied` without `force`.
pub fn restore(
    data_dir: &Path,
    backup: &Path,
    force: bool,
    now: Timestamp,
) -> Result<RestoreReport> {
    restore_store(data_dir, None, backup, force, now)
}

/// [`restore`] into the store at `store_url` (see [`crate::Options::store_url`]; `None`: the
/// redb file in the data dir), the workspace folders into `data_dir`. A PostgreSQL store is
/// emptied and refilled from the backup while its lock is held exclusively (refused while
/// an application has it open); its safety copy is a redb file in the data dir.
///
/// # Errors
/// As [`restore`].
pub fn restore_store(
    data_dir: &Path,
    store_url: Option<&str>,
    backup: &Path,
    force: bool,
    now: Timestamp,
) -> Result<RestoreReport> {
    restore_store_with_folders(data_dir, store_url, backup, None, force, now)
}

/// [`restore_store`] of a plain store file together with the workspace folders in
/// `folders`: an entry of the data dir's workspace trash (`reset-<time>`, where a restore
/// or a reset put the folders it replaced). This undoes a restore or a reset: give it the
/// safety copy of the store (`….pre-restore-<time>.bak`, `….pre-reset-<time>.bak`) and the
/// trash entry of the same time. The folders in place go to the trash, as in any restore;
/// the entry is moved back, not copied. `None` is [`restore_store`].
///
/// The entry's folders are checked against the store copy first: one whose owner marker
/// names another account, or none, or that is no real folder refuses the restore. (A copy
/// of an older schema cannot be read as this build's users yet: its folders are not
/// checked, and `check` after `migrate up` names what does not belong.)
///
/// # Errors
/// As [`restore`]; `InvalidInput` (nothing changed) when `backup` is an archive (it brings
/// its own folders) or `folders` is not an entry of this data dir's trash holding only
/// users' workspace folders.
pub fn restore_store_with_folders(
    data_dir: &Path,
    store_url: Option<&str>,
    backup: &Path,
    folders: Option<&Path>,
    force: bool,
    now: Timestamp,
) -> Result<RestoreReport> {
    // The data dir's store moved to a server, which uses its folders: a redb file restored
    // here would be a second store on them (the note says where the store went).
    if store_url.is_none()
        && let Some(moved) = crate::handle::moved_away(data_dir)
    {
        return Err(moved);
    }
    let existed = data_dir.symlink_metadata().is_ok();
    // The workspace folders a refused restore may make in a data dir that lacked them,
    // innermost first.
    let workspaces = data_dir.join(WORKSPACES_DIR);
    let missing: Vec<PathBuf> = [
        workspaces.join("trash"),
        workspaces.join("users"),
        workspaces,
    ]
    .into_iter()
    .filter(|p| p.symlink_metadata().is_err())
    .collect();
    let mut restored = restore_into(data_dir, store_url, backup, folders, force, now);
    if let Ok(report) = &mut restored
        && store_url.is_none()
        && folders.is_none()
        && report.folders.is_none()
    {
        report.folders_in_trash = folders_in_trash(data_dir);
    }
    if restored.is_err() {
        // A refused restore into a new data dir leaves no data dir behind, when it holds
        // only the empty folders the attempt made (never a file: a safety copy, say); into
        // an existing one, none of the empty folders it made.
        if !existed && holds_no_file(data_dir) {
            let _ = fs::remove_dir_all(data_dir);
        } else {
            for dir in &missing {
                // Only an empty folder goes.
                let _ = fs::remove_dir(dir);
            }
        }
    }
    restored
}

fn restore_into(
    data_dir: &Path,
    store_url: Option<&str>,
    backup: &Path,
    folders: Option<&Path>,
    force: bool,
    now: Timestamp,
) -> Result<RestoreReport> {
    if backup.is_dir() {
        return Err(Error::invalid(
            "backup",
            format!(
                "{} is a folder; give the backup file (a .tar written by `redkeep backup`, or a store file such as a pre-vN copy)",
                backup.display()
            ),
        ));
    }
    if !backup.is_file() {
        if crate::fsutil::is_there(backup)? {
            return Err(Error::invalid(
                "backup",
                format!(
                    "{} is not a regular file (a device, a FIFO, a socket); give the backup \
                     file",
                    backup.display()
                ),
            ));
        }
        return Err(Error::not_found(format!("backup {}", backup.display())));
    }
    if store_url.is_none()
        && let (Ok(a), Ok(b)) = (
            backup.canonicalize(),
            data_dir.join(STORE_FILE).canonicalize(),
        )
        && a == b
    {
        return Err(Error::invalid(
            "backup",
            format!(
                "{} is the store this restore would replace; give a backup (an archive, or a \
                 copy of a store file kept elsewhere)",
                backup.display()
            ),
        ));
    }
    super::guards::refuse_foreign_folder(data_dir, "restore")?;
    fsutil::create_private_dir(data_dir)?;
    let remote = match store_url {
        Some(url) => Some(super::files::open_url_store(url, true)?),
        None => None,
    };
    let db = match &remote {
        Some(_) => data_dir.join(super::files::REMOTE_COPIES),
        None => data_dir.join(STORE_FILE),
    };
    if let Some(store) = &remote {
        super::guards::refuse_half_moved(store, "restored")?;
    }
    let occupied = match &remote {
        Some(store) => !super::files::is_empty(store)?,
        None => fsutil::is_there(&db)?,
    };
    // Said again if a store appears while this restore runs (another restore, an `init`):
    // checked here, and again once the store is held (or, where there was none, by placing
    // the restored one only where none is).
    let needs_force = || {
        let what = match &remote {
            Some(store) => format!(
                "the store on {} ({}) holds data",
                store.engine(),
                store.location()
            ),
            None => format!("{} exists", db.display()),
        };
        Error::denied(format!(
            "{what}; restoring replaces it (a safety copy of the store and the folders is kept); pass --force"
        ))
    };
    if occupied && !force {
        return Err(needs_force());
    }
    let archive = is_tar(backup)?;
    // The folders' layout is checked before the store changes: a failure after the swap
    // would leave a new store beside the old folders.
    let here = if archive || folders.is_some() {
        let ws = folders_of(data_dir)?;
        ws.ready_to_trash_all()?;
        Some(ws)
    } else {
        None
    };
    let folders = match (folders, &here) {
        (Some(_), _) if archive => {
            return Err(Error::invalid(
                "folders",
                format!(
                    "{} is a backup archive, which brings its own workspace folders; give \
                     --folders only with a plain store file (a safety copy of a restore or reset)",
                    backup.display()
                ),
            ));
        }
        (Some(entry), Some(ws)) => Some(ws.trash_entry_of_folders(entry)?),
        _ => None,
    };
    let staging = fsutil::private_temp_dir_in(Some(data_dir), "a staging folder for the restore")?;
    let staged_db = staging.path().join(STORE_FILE);
    // An archive's workspace folders are unpacked inside the workspaces folder, on its file
    // system (which may not be the data dir's: a mount, a symlink to another disk), so
    // that they go into place by a rename, as the folders they replace go to the trash.
    let ws_staging = match (archive, &here) {
        (true, Some(ws)) => Some(fsutil::private_temp_dir_in(
            Some(ws.root()),
            "a staging folder for the backup's workspace folders",
        )?),
        _ => None,
    };
    let staged_users = match &ws_staging {
        Some(dir) => dir.path().join("users"),
        None => staging.path().join(WORKSPACES_DIR).join("users"),
    };
    if let Some(ws_staging) = &ws_staging {
        unpack(backup, staging.path(), ws_staging.path())?;
        // The folders unpacking made, durable before they are put in place (their files
        // are synced as unpacked).
        fsutil::sync_tree(ws_staging.path())?;
        if !staged_db.is_file() {
            return Err(Error::invalid(
                "backup",
                format!("{} holds no store", backup.display()),
            ));
        }
    } else {
        fs::copy(backup, &staged_db)
            .map_err(|e| Error::io(format!("copying {}", backup.display()), e))?;
        fs::set_permissions(&staged_db, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("securing {}", staged_db.display()), e))?;
    }
    let report = check_in_place(&staged_db).map_err(|e| {
        // Said of the backup: the staged copy's path and the advice for a damaged live
        // store (check, salvage) would point the wrong way.
        let why = match e {
            // Without the hint for a data dir's store left by an interrupted `init`: this
            // is a backup, and its staged copy's path is no file of the operator's.
            Error::Damaged { reason, .. } => match reason.split_once(INIT_HINT) {
                Some((why, _)) => why.to_string(),
                None => reason,
            },
            Error::Unwritten { found, .. } => format!("it holds nothing: {found}"),
            e => e.to_string(),
        };
        Error::invalid(
            "backup",
            format!(
                "{} does not hold a readable store ({why}); nothing was changed; choose another \
                 backup",
                backup.display()
            ),
        )
    })?;
    if !report.ok {
        return Err(Error::invalid(
            "backup",
            format!(
                "{} fails its check ({}); nothing was changed",
                backup.display(),
                report.problems.join("; ")
            ),
        ));
    }
    let staged = open_file_store(&staged_db, Mode::Exclusive)?;
    let (restored_id, restored_copy) = tied_restore(data_dir, remote.as_ref(), &db, &staged)?;
    let schema_version = staged.schema_version()?.unwrap_or(SCHEMA_VERSION);
    // (A store of an older schema is checked after `migrate up`, as in [`check_file`]: its
    // users cannot be read as this build's yet.)
    if staged.schema_version()? == Some(SCHEMA_VERSION) {
        if let Some(ws_staging) = &ws_staging {
            fsutil::create_private_dir(&staged_users)?;
            check_staged_folders(
                &staged,
                &FoldersFrom {
                    users: &staged_users,
                    root: ws_staging.path(),
                    shown_as: (ws_staging.path(), "workspaces/"),
                    field: "backup",
                    source: backup,
                    orphans_refused: true,
                    way_out: format!(
                        "choose another backup, or restore its store alone: extract it outside \
                         the data dir (`tar -xf {} -C DIR {STORE_FILE}`), then `redkeep \
                         restore --force DIR/{STORE_FILE}`, which keeps the folders here",
                        backup.display()
                    ),
                },
                now,
            )?;
        } else if let Some(entry) = &folders {
            // A folder of no user in the copy is let through: the trash entry holds every
            // folder `users/` held, an orphan among them. Ids handed out here are not handed
            // out again (the copy's sequences are raised to the live store's), and a folder
            // whose owner marker names another account is served to no one, so it reaches
            // no one; `check` names it afterwards.
            check_staged_folders(
                &staged,
                &FoldersFrom {
                    users: entry,
                    root: &staging.path().join(WORKSPACES_DIR),
                    shown_as: (staging.path(), ""),
                    field: "folders",
                    source: entry,
                    orphans_refused: false,
                    way_out: format!(
                        "give the trash entry the same restore or reset made (its time is in \
                         the name of {}), or restore the store alone (without --folders), \
                         which keeps the folders here",
                        backup.display()
                    ),
                },
                now,
            )?;
        }
    }
    // Every rename the restore makes from here on stays on one file system, or nothing is
    // changed: the folders in place to the trash (checked above), those that replace them
    // into `users/`.
    if let Some(ws) = &here {
        if let Some(entry) = &folders {
            ws.ready_to_take_users_from(entry)?;
        } else if archive {
            ws.ready_to_take_users_from(&staged_users)?;
        }
    }
    // A data dir the restore makes or fills holds every password hash: private, as `init`
    // makes one.
    fsutil::restrict_dir(data_dir)?;
    // The folders that replace the data dir's, when any do: the restored store carries a
    // mark naming them until they are in place.
    let mark = |undoable: bool, safety_copy: Option<&Path>| -> Result<Option<Vec<u8>>> {
        let users = if archive {
            staged_users.clone()
        } else if let Some(entry) = &folders {
            entry.clone()
        } else {
            return Ok(None);
        };
        // Inside the data dir (the staging folder, a trash entry): named from it, so the
        // mark holds wherever the data dir is mounted or however it is spelled.
        let users = match users.strip_prefix(data_dir) {
            Ok(inside) => inside.to_path_buf(),
            Err(_) => std::path::absolute(&users)
                .map_err(|e| Error::io(format!("resolving {}", users.display()), e))?,
        };
        let stopped = crate::workspace::StoppedRestore {
            users,
            at: now.0,
            keep_empty: undoable,
            safety_copy: safety_copy.filter(|_| undoable).map(Path::to_path_buf),
        };
        serde_json::to_vec(&stopped)
            .map(Some)
            .map_err(|e| Error::Invariant {
                what: format!("writing the restore's mark: {e}"),
            })
    };
    // The data dir is tied to the restored store from now on.
    let note = crate::handle::StoreNote::of(store_url, restored_id, Some(restored_copy));
    // With the store in place: the folders, the note, and the report.
    let finish = |safety_copy: Option<PathBuf>, previous_damaged: Option<String>| {
        // With a store replaced, an empty trash entry stands for "no folders" in the undo;
        // without one, there is nothing to undo.
        let undoable = safety_copy.is_some() && previous_damaged.is_none();
        // (Stopped here, the restore's mark has the next open write it.)
        crate::handle::write_store_note(data_dir, &note)?;
        let (folders, folders_safety) = if archive {
            fsutil::create_private_dir(&staged_users)?;
            restore_folders(data_dir, &staged_users, now, undoable)?
        } else if let Some(entry) = &folders {
            restore_folders(data_dir, entry, now, undoable)?
        } else {
            (None, None)
        };
        tracing::warn!(from = %backup.display(), "store restored");
        Ok(RestoreReport {
            schema_version,
            safety_copy,
            folders_safety,
            folders,
            previous_damaged,
            folders_in_trash: Vec::new(),
        })
    };
    // Set once the restored store (with its mark) is in place: a failure after that keeps
    // the staging folder of the workspace folders, where the backup's folders wait for
    // `check --repair`.
    let swapped = std::cell::Cell::new(false);
    let keep_staging = |result: Result<RestoreReport>, ws_staging: Option<fsutil::TempDir>| {
        if result.is_err()
            && swapped.get()
            && let Some(dir) = ws_staging
        {
            let _ = dir.keep();
        }
        result
    };
    if let Some(live) = &remote {
        let result = live.alone_with("be restored", || {
            if !occupied && !force && !super::files::is_empty(live)? {
                return Err(needs_force());
            }
            let mut safety_copy = None;
            if occupied {
                let copy = free_with_suffix(&db, &format!(".pre-restore-{}.bak", now.0));
                live.copy_to(&copy).map_err(|e| unreplaced(e, None))?;
                safety_copy = Some(copy);
            }
            // One transaction: a failure part way leaves the live store as it was. The live
            // sequences stay, raised to the backup's where those are higher: no id is
            // handed out twice.
            let mark = mark(occupied, safety_copy.as_deref())?;
            let mark = mark
                .as_deref()
                .map(|m| (crate::store::RESTORE_UNFINISHED, m));
            staged
                .replace_into_marked(live, schema_version, mark.as_slice())
                .map_err(|e| unreplaced(e, safety_copy.as_deref()))?;
            swapped.set(mark.is_some());
            let report =
                finish(safety_copy, None).map_err(|e| stopped_after_swap(e, mark.is_some()))?;
            if mark.is_some() {
                clear_restore_mark(live);
            }
            Ok(report)
        });
        return keep_staging(result, ws_staging);
    }
    // Hold the live store exclusively during the swap: that keeps every other process out.
    let mut safety_copy = None;
    let mut previous_damaged = None;
    let there = fsutil::is_there(&db)?;
    let live = if there {
        if !occupied && !force {
            return Err(needs_force());
        }
        match open_file_store(&db, Mode::Exclusive) {
            Ok(live) => {
                super::guards::refuse_half_moved(&live, "restored")?;
                let copy = free_with_suffix(&db, &format!(".pre-restore-{}.bak", now.0));
                live.copy_to(&copy)?;
                safety_copy = Some(copy);
                let sequences = sequences_of(&live)?;
                staged.write(|tx| {
                    for (table, value) in &sequences {
                        tx.raise_sequence(table, *value)?;
                    }
                    Ok(())
                })?;
                Some(live)
            }
            // A store that cannot be opened is what a restore is for: its bytes are kept
            // as they are, and the backup's ids go on (the damaged file's cannot be read).
            // (So is a file that holds nothing: a store that was lost, or never written.)
            Err(e) if let Some(reason) = unopenable(&e) => {
                safety_copy = Some(keep_damaged(&db, now, &reason)?);
                previous_damaged = Some(reason);
                // Its sequences cannot be read: user ids at least go past every workspace
                // folder here, so no new user meets a folder of an account it replaced.
                let highest = folders_of(data_dir)?
                    .taken_ids()?
                    .last()
                    .copied()
                    .unwrap_or(0);
                if highest > 0 {
                    staged.write(|tx| {
                        tx.raise_sequence(<crate::User as crate::store::Record>::TABLE, highest)
                    })?;
                }
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let marked = mark(
        safety_copy.is_some() && previous_damaged.is_none(),
        safety_copy.as_deref(),
    )?;
    staged.write(|tx| {
        // Marks of operations on the data dir the backup was taken in do not hold here.
        // Those of an import or an adoption stopped part way do: the records are as
        // incomplete as they were, and the store is not to be used as if whole.
        for (key, _) in crate::store::UNFINISHED_MARKS {
            if !crate::store::CONTENT_MARKS.contains(&key) {
                tx.remove_meta(key)?;
            }
        }
        match &marked {
            Some(m) => tx.set_meta(crate::store::RESTORE_UNFINISHED, m),
            None => Ok(()),
        }
    })?;
    drop(staged);
    // Set before the swap: a failure once the file has moved (its directory's sync) must
    // keep the staging folder too.
    swapped.set(marked.is_some());
    let placed = if there {
        fsutil::rename_replace(&staged_db, &db)
    } else {
        // No store was there: one made since (another restore, an `init`) is not replaced.
        match fsutil::rename_no_replace(&staged_db, &db) {
            Ok(true) => fsutil::sync_dir(&db),
            Ok(false) if !force => return Err(needs_force()),
            Ok(false) => {
                return Err(Error::denied(format!(
                    "{} was made while this restore ran (another restore, or an `init`); \
                     nothing was changed; restore again",
                    db.display()
                )));
            }
            Err(e) => return Err(e),
        }
    };
    // A rename that failed moved nothing: the backup's folders are no one's to wait for.
    if placed.is_err() && staged_db.exists() {
        swapped.set(false);
    }
    let report = placed
        .and_then(|()| finish(safety_copy, previous_damaged))
        .map_err(|e| stopped_after_swap(e, marked.is_some()));
    drop(live);
    drop(staging);
    let report = keep_staging(report, ws_staging)?;
    if marked.is_some() {
        match open_file_store(&db, Mode::Exclusive) {
            Ok(store) => clear_restore_mark(&store),
            Err(e) => {
                tracing::warn!(error = %e, "the restore's mark could not be removed; `redkeep check --repair` removes it")
            }
        }
    }
    Ok(report)
}

/// Refuses a restore into the data dir `data_dir` tied to another store (see
/// [`crate::handle::STORE_NOTE`]): the store replaced (`remote`, or the redb file `db`) must
/// be the one the data dir's note names, or the backup `staged` one of it (a store that was
/// lost, restored into a new schema). Returns the id the restored store gets: the backup's,
/// else the replaced store's (a backup made before stores had ids), else a new one; and a
/// new copy ([`crate::store::STORE_INSTANCE`]); both are set in `staged`.
///
/// # Errors
/// `Denied` naming the store the data dir's folders belong to; `Storage`.
fn tied_restore(
    data_dir: &Path,
    remote: Option<&Store>,
    db: &Path,
    staged: &Store,
) -> Result<(String, String)> {
    let backup_id = crate::handle::store_id(staged)?;
    // A redb file that cannot be read (damaged, held) is the data dir's own.
    let (live_id, live_unread) = match remote {
        Some(store) => (crate::handle::store_id(store)?, false),
        // (Opened only to read: a refused restore leaves the file's bytes as they were.)
        None if fsutil::is_there(db)? => match Store::open_to_read(
            db,
            &crate::store::StoreOptions {
                mode: Mode::Shared,
                create: false,
                schema_version: SCHEMA_VERSION,
                allow_outdated: true,
                ..crate::store::StoreOptions::default()
            },
        )
        .and_then(|live| crate::handle::store_id(&live))
        {
            Ok(id) => (id, false),
            Err(_) => (None, true),
        },
        None => (None, false),
    };
    if let Some(note) = crate::handle::store_note(data_dir)? {
        let on_server = remote.is_some();
        let tied = note.names(backup_id.as_deref(), on_server)
            || note.names(live_id.as_deref(), on_server)
            || (live_unread && note.store.is_none());
        if !tied {
            let this = match remote {
                Some(store) => format!("the store on {}", store.location()),
                None => format!("a redb file {}", db.display()),
            };
            return Err(crate::handle::foreign_store(data_dir, &note, Some(&this)));
        }
    }
    let id = match backup_id.clone().or(live_id) {
        Some(id) => id,
        None => crate::handle::new_store_id()?,
    };
    // A copy of its own: the store it replaces, and the one the backup was made of when that
    // lives on elsewhere (a restore into a new schema), share the id but no longer own the
    // data dir's folders.
    let instance = crate::handle::new_store_id()?;
    staged.write(|tx| {
        if backup_id.as_ref() != Some(&id) {
            tx.set_meta(crate::store::STORE_ID, id.as_bytes())?;
        }
        tx.set_meta(crate::store::STORE_INSTANCE, instance.as_bytes())
    })?;
    Ok((id, instance))
}

/// A failure of the server (a lost connection, a refused statement) while a restore onto it
/// copied the store or replaced it, told with what it left. Before the commit the store was
/// not changed: the safety copy (`copy`, a copy of that same store) is removed. A failure
/// at the commit may have stored the restore all the same: the copy stays, for the way back.
fn unreplaced(e: Error, copy: Option<&Path>) -> Error {
    let at_commit = crate::store::failed_at_commit(&e);
    let mut left = "the store was not changed (the restore writes it in one transaction, \
                    which did not commit)"
        .to_string();
    if let Some(copy) = copy.filter(|_| !at_commit) {
        match fs::remove_file(copy) {
            Ok(()) => left.push_str(" and the safety copy taken before it was removed"),
            Err(_) => left.push_str(&format!(
                "; {} is a copy of that same store, taken before the restore, and can be \
                 deleted",
                copy.display()
            )),
        }
    }
    left.push_str("; run the same restore again once the server is back");
    let mut maybe = "the restore may have been stored all the same: `redkeep check` says \
                     whether it was (and `redkeep check --repair` then puts its workspace \
                     folders in place)"
        .to_string();
    if let Some(copy) = copy {
        maybe.push_str(&format!(
            "; {} holds the store as it was before the restore",
            copy.display()
        ));
    }
    crate::store::with_outcome(e, &left, &maybe)
}

/// An error of a restore after the store was replaced: says so, and how to finish it.
fn stopped_after_swap(e: Error, marked: bool) -> Error {
    if !marked {
        return e;
    }
    let what = "the store was restored, but the backup's workspace folders may not be in \
                place: `redkeep check` names them, and `redkeep check --repair` puts them in \
                place";
    match e {
        Error::Io { context, source } => Error::io(format!("{context}; {what}"), source),
        e => Error::denied(format!("{e}; {what}")),
    }
}

/// Removes the mark of a restore from the store at `db` once its folders are in place (a
/// process that opened the store meanwhile keeps it: `check` then names it, and
/// `check --repair` removes it).
fn clear_restore_mark(store: &crate::store::Store) {
    if let Err(e) = store.write(|tx| tx.remove_meta(crate::store::RESTORE_UNFINISHED)) {
        tracing::warn!(error = %e, "the restore's mark could not be removed; `redkeep check --repair` removes it");
    }
}

/// Whether `dir` holds folders only (any depth), no file, symlink or other entry.
fn holds_no_file(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .all(|e| e.file_type().is_ok_and(|t| t.is_dir()) && holds_no_file(&e.path()))
}

/// Workspace folders a restore is about to put in place, for [`check_staged_folders`].
struct FoldersFrom<'a> {
    /// Where they are: the users' folders an archive brought (unpacked under `staging`),
    /// or a trash entry given with `--folders`.
    users: &'a Path,
    /// The workspaces folder they are read as part of.
    root: &'a Path,
    /// How paths under the restore's staging folder are shown: that folder, and what
    /// stands for it (as the archive names them).
    shown_as: (&'a Path, &'a str),
    /// What they came from, as the refusal names it: the `backup` archive, or the
    /// `folders` trash entry.
    field: &'static str,
    source: &'a Path,
    /// Whether a folder of no user refuses the restore.
    orphans_refused: bool,
    /// What to do instead, said after the refusal.
    way_out: String,
}

/// Checks the users' workspace folders `from` brings against the store about to be
/// restored, as `check` would after the restore: a folder of another account (a copied
/// owner marker), with no owner marker, or not a real folder refuses the restore before
/// anything changes; so does a folder of no user, when `from` says so.
///
/// # Errors
/// `InvalidInput` naming the problems and the way out.
fn check_staged_folders(staged: &Store, from: &FoldersFrom<'_>, now: Timestamp) -> Result<()> {
    let FoldersFrom {
        users,
        root,
        shown_as,
        field,
        source,
        orphans_refused,
        ref way_out,
    } = *from;
    let ws = Workspaces::open_existing(
        root,
        WorkspaceOptions::default(),
        crate::handle::owners(staged.clone()),
    )
    .with_users_dir(users);
    // Only what would hand files to the wrong account refuses the restore: a folder whose
    // owner marker names another account (or none), one that is no real folder, and when
    // asked, one of no user. What `check --repair` mends in place (a count, a damaged
    // piece, a temp file, a loose mode) restores, and `check` names it afterwards.
    let problems: Vec<_> = ws
        .check(false, now)?
        .into_iter()
        .filter(|p| {
            ["another account", "no owner marker", "not a real directory"]
                .iter()
                .any(|w| p.problem.contains(w))
                || (orphans_refused && p.problem.contains("(orphan)"))
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    // Paths as the archive names them, not under the staging folder.
    let inside = format!("{}/", shown_as.0.display());
    let mut shown: Vec<String> = problems
        .iter()
        .take(3)
        .map(|p| {
            let text = p.problem.replace(&inside, shown_as.1);
            let text = text
                .split("; `redkeep check --repair`")
                .next()
                .unwrap_or(&text)
                .to_string();
            format!("workspace of user {}: {text}", p.user_id)
        })
        .collect();
    if problems.len() > 3 {
        shown.push(format!("and {} more", problems.len() - 3));
    }
    Err(Error::invalid(
        field,
        format!(
            "{} holds workspace folders that could be served to the wrong account ({}); \
             nothing was changed; {way_out}",
            source.display(),
            shown.join("; "),
        ),
    ))
}

/// Keeps a byte copy of the store file `db`, which cannot be opened (`reason`), before a
/// restore replaces it; returns the copy's path. Refused while the owner marker names a
/// running process: the file is still that process's.
///
/// # Errors
/// `InUse` when a running process owns the store; `Io` when the copy fails.
fn keep_damaged(db: &Path, now: Timestamp, reason: &str) -> Result<PathBuf> {
    let marker = crate::store::owner_path(db);
    if let Some(owner) = crate::store::read_owner(&marker)
        && owner.pid != std::process::id()
        && crate::store::process_alive(owner.pid)
    {
        return Err(Error::InUse {
            path: db.to_path_buf(),
            holder: format!(
                "process {} owns it, says its owner marker {}; stop that process, then \
                 restore (if no redkeep process runs under that number, delete the marker)",
                owner.pid,
                marker.display()
            ),
        });
    }
    let copy = free_with_suffix(db, &format!(".pre-restore-{}.bak", now.0));
    let mut tmp = fsutil::held_temp_sibling(&copy)?;
    let mut from =
        std::fs::File::open(db).map_err(|e| Error::io(format!("reading {}", db.display()), e))?;
    std::io::copy(&mut from, tmp.as_file_mut())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(format!("copying {}", db.display()), e))?;
    fsutil::persist_new(tmp, &copy)?;
    tracing::warn!(store = %db.display(), reason, copy = %copy.display(), "restoring over a store that cannot be opened; its bytes are kept");
    Ok(copy)
}

/// Puts the users' workspace folders in `staged_users` (unpacked from a backup, or a trash
/// entry) in place of the data dir's (those go to the trash); returns how many were
/// restored and where the replaced ones went.
fn restore_folders(
    data_dir: &Path,
    staged_users: &Path,
    now: Timestamp,
    keep_empty: bool,
) -> Result<(Option<u64>, Option<PathBuf>)> {
    folders_of(data_dir)?.replace_users_with(staged_users, now, keep_empty)
}

/// Why a store file cannot be opened as it is, when that is the file's fault (damage, or
/// nothing in it): what a restore replaces, keeping its bytes.
fn unopenable(e: &Error) -> Option<String> {
    match e {
        Error::Damaged { reason, .. } => Some(reason.clone()),
        Error::Unwritten { found, .. } => Some(format!("it holds nothing ({found})")),
        _ => None,
    }
}
