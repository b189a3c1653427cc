//! `redkeep status` seen from outside: probes the files, then asks the owner if there is one.

use std::path::Path;

use super::client::{self, Remote};
use super::commands::Command;
use super::commands::status::reply;
use super::reply::Reply;
use super::request::Request;
use crate::store::{Mode, Store, StoreOptions, owner_path, process_alive, read_owner};
use crate::{Error, Result, SCHEMA_VERSION, STORE_FILE};

/// How long `status` waits for the owner's answer.
const STATUS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// The status seen from outside: probes the files, then asks the owner if there is one.
///
/// # Errors
/// `Io` or `Storage` when the files cannot be read; `Corrupt` for an unreadable store.
pub fn probe(dir: &Path) -> Result<Reply> {
    let db = dir.join(STORE_FILE);
    if !db.exists() {
        return Ok(reply("missing", None, None, None, dir));
    }
    let owner = read_owner(&owner_path(&db)).filter(|o| process_alive(o.pid));
    if let Some(o) = &owner
        && let Some(conn) = client::connect(dir)
    {
        let req = Request::new(Command::Status);
        // A stopped or hung owner accepts the connection and never answers: status says so
        // rather than wait with it.
        let socket =
            match conn
                .give_up_after(STATUS_PATIENCE)
                .send(&req, None, &mut std::io::sink())
            {
                Ok(Remote::Reply(r)) => return Ok(r),
                Err(Error::Busy { .. }) => "not answering",
                _ => "unreachable",
            };
        return Ok(reply("exclusive", Some(o.pid), Some(socket), None, dir));
    }
    let options = |mode| StoreOptions {
        mode,
        create: false,
        allow_outdated: true,
        schema_version: SCHEMA_VERSION,
        ..StoreOptions::default()
    };
    // Opened only to read, the file keeps its bytes (an open for writing rewrites some even
    // when nothing is written). Opened so, in exclusive mode it is refused while anyone
    // writes it; in shared mode, only while someone holds it exclusively. What those two
    // cannot settle (a file not closed cleanly, which only an open for writing repairs; one
    // redb cannot read) goes to the open for writing below.
    let read = |mode| Store::open_to_read(&db, &options(mode));
    match read(Mode::Exclusive).and_then(|store| store.schema_version()) {
        Ok(version) => {
            let state = if others_have_open(&db) {
                "shared"
            } else if !writable(dir, &db) {
                "read-only"
            } else {
                "free"
            };
            return Ok(reply(state, None, None, version, dir));
        }
        Err(Error::InUse { .. }) => match read(Mode::Shared).and_then(|s| s.schema_version()) {
            Ok(version) => return Ok(reply("shared", None, None, version, dir)),
            Err(Error::InUse { .. }) => {
                let socket = if client::reachable(dir) {
                    "reachable"
                } else {
                    "unreachable"
                };
                return Ok(reply(
                    "exclusive",
                    owner.map(|o| o.pid),
                    Some(socket),
                    None,
                    dir,
                ));
            }
            Err(_) => {}
        },
        Err(_) => {}
    }
    let open = |mode| Store::open(&db, &options(mode));
    // An exclusive open succeeds only if nobody has the file; it is closed at once.
    match open(Mode::Exclusive) {
        Ok(store) => Ok(reply("free", None, None, store.schema_version()?, dir)),
        Err(Error::InUse { .. }) => match open(Mode::Shared) {
            Ok(store) => Ok(reply("shared", None, None, store.schema_version()?, dir)),
            Err(Error::InUse { .. }) => {
                let socket = if client::reachable(dir) {
                    "reachable"
                } else {
                    "unreachable"
                };
                Ok(reply(
                    "exclusive",
                    owner.map(|o| o.pid),
                    Some(socket),
                    None,
                    dir,
                ))
            }
            Err(Error::Damaged { reason, .. }) => {
                Ok(super::commands::status::damaged(&reason, dir))
            }
            Err(e) => Err(e),
        },
        Err(Error::Damaged { reason, .. }) => Ok(super::commands::status::damaged(&reason, dir)),
        // A store this user may read but not write: say so, with what reading finds.
        Err(e) if e.is_permission_denied() => {
            match Store::open_to_read(&db, &options(Mode::Shared)) {
                Ok(store) => Ok(reply("read-only", None, None, store.schema_version()?, dir)),
                Err(Error::Damaged { reason, .. }) => {
                    Ok(super::commands::status::damaged(&reason, dir))
                }
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether this user may write the store file and its data dir.
fn writable(dir: &Path, db: &Path) -> bool {
    use rustix::fs::{Access, access};
    access(db, Access::WRITE_OK).is_ok() && access(dir, Access::WRITE_OK).is_ok()
}

/// Whether another process has the store file at `db` open: every redb handle, reading or
/// writing, holds file locks on it while open, which Linux lists in `/proc/locks` (by device
/// and inode; this process holds none once its probe is closed). Without that list (another
/// system), none is seen.
fn others_have_open(db: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(meta), Ok(locks)) = (
        std::fs::metadata(db),
        std::fs::read_to_string("/proc/locks"),
    ) else {
        return false;
    };
    let dev = meta.dev();
    // glibc's split of a device number into major and minor.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let me = std::process::id().to_string();
    locks.lines().any(|line| {
        // "1: FLOCK  ADVISORY  READ 1234 fe:00:10084895 0 EOF"; a blocked waiter's line starts
        // with "->" and is not a holder.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") {
            return false;
        }
        let Some(pos) = fields.iter().position(|f| f.matches(':').count() == 2) else {
            return false;
        };
        let mut id = fields[pos].split(':');
        let same = matches!(
            (id.next(), id.next(), id.next()),
            (Some(ma), Some(mi), Some(ino))
                if u64::from_str_radix(ma, 16) == Ok(major)
                    && u64::from_str_radix(mi, 16) == Ok(minor)
                    && ino.parse::<u64>() == Ok(meta.ino())
        );
        same && pos > 0 && fields[pos - 1] != me
    })
}
