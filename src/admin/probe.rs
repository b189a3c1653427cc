//! `redkeep status` seen from outside: probes the files, then asks the owner if there is one.

use std::path::Path;

use super::client::{self, Remote};
use super::commands::Command;
use super::commands::status::{reply, stopped_operations, with_stopped};
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
    if !crate::fsutil::is_there(&db)? {
        // A symlink to a store that is not there (a volume not mounted) is no missing store.
        if let Ok(target) = std::fs::read_link(&db) {
            return Err(Error::invalid(
                "store",
                format!(
                    "{} is a symlink to {}, which is not there (a volume not mounted?); make it \
                     reachable, or remove the symlink",
                    db.display(),
                    target.display()
                ),
            ));
        }
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
    // when nothing is written). Opened so in shared mode, it keeps out only a process that
    // wants the store alone (a migration, say), and only for a moment; it is refused while
    // one holds it. Whoever else has the file open, to read or to write it, is in
    // `/proc/locks`. A file marked as not closed cleanly is said as such, without guessing
    // why (a killed writer, or a commit or check that failed in it): only an open for
    // writing repairs it, which `status` does not make. What cannot be read (damage) goes
    // to the open for writing below, which says what is wrong as every command does.
    let read = Store::open_to_read(&db, &options(Mode::Shared))
        .and_then(|s| Ok((s.schema_version()?, stopped_operations(&s))));
    match read {
        // (Not opened again in exclusive mode, which would check its allocator state as an
        // open for writing does: that open keeps writers out while it lasts, and a shared
        // writer opening then is refused. Damage there is `check`'s to find.)
        Ok((version, stopped)) => {
            let out = reply(not_held_state(&db), None, None, version, dir);
            return Ok(with_stopped(out, &stopped));
        }
        Err(Error::InUse { .. }) => return Ok(held_exclusively(dir, owner.map(|o| o.pid))),
        Err(e) if crate::store::not_closed_cleanly(&e) => {
            let mut out = reply(not_held_state(&db), None, None, None, dir);
            out.json["not_closed_cleanly"] = serde_json::json!(true);
            if let super::reply::Human::Text(lines) = &mut out.human {
                lines.insert(
                    1,
                    "the file is marked as not closed cleanly: a process that had it open for \
                     writing did not close it cleanly (it was killed, the machine stopped, or \
                     a commit or an integrity check failed in it; the file does not say \
                     which): the next redkeep command or application that opens it repairs it \
                     (`status` does not; a command that only reads does), and the schema \
                     version is read then"
                        .to_string(),
                );
            }
            return Ok(out);
        }
        Err(e) if e.is_permission_denied() => {
            return Err(Error::denied(format!(
                "this user may not read {} ({}); run `redkeep status` as a user who may read \
                 the data dir",
                db.display(),
                e.full_message()
            )));
        }
        Err(e) if !crate::store::opened_for_writing_instead(&e) => return Err(e),
        Err(_) => {}
    }
    let open = |mode| Store::open(&db, &options(mode));
    // An exclusive open succeeds only if nobody has the file; it is closed at once.
    match open(Mode::Exclusive) {
        Ok(store) => Ok(with_stopped(
            reply("free", None, None, store.schema_version()?, dir),
            &stopped_operations(&store),
        )),
        Err(Error::InUse { .. }) => match open(Mode::Shared) {
            Ok(store) => Ok(with_stopped(
                reply("shared", None, None, store.schema_version()?, dir),
                &stopped_operations(&store),
            )),
            Err(Error::InUse { .. }) => Ok(held_exclusively(dir, owner.map(|o| o.pid))),
            Err(Error::Damaged { reason, .. }) => {
                Ok(super::commands::status::damaged(&reason, dir))
            }
            Err(e) => Err(e),
        },
        Err(Error::Damaged { reason, .. }) => Ok(super::commands::status::damaged(&reason, dir)),
        // A store this user may read but not write: say so, with what reading finds.
        Err(e) if e.is_permission_denied() => {
            match Store::open_to_read(&db, &options(Mode::Shared)) {
                Ok(store) => Ok(with_stopped(
                    reply("read-only", None, None, store.schema_version()?, dir),
                    &stopped_operations(&store),
                )),
                Err(Error::Damaged { reason, .. }) => {
                    Ok(super::commands::status::damaged(&reason, dir))
                }
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The state of a store no process holds exclusively: `shared` when another has it open,
/// else `free`, or `read-only` when this user may not write it.
fn not_held_state(db: &Path) -> &'static str {
    if others_have_open(db) {
        "shared"
    } else if rustix::fs::access(db, rustix::fs::Access::WRITE_OK).is_ok() {
        "free"
    } else {
        "read-only"
    }
}

/// The status of a store another process holds exclusively (`pid`, when its owner marker
/// names a live one), with whether its admin socket answers a connection.
fn held_exclusively(dir: &Path, pid: Option<u32>) -> Reply {
    let socket = if client::reachable(dir) {
        "reachable"
    } else {
        "unreachable"
    };
    reply("exclusive", pid, Some(socket), None, dir)
}

/// Whether another process has the store file at `db` open: every redb handle, reading or
/// writing, holds file locks on it while open, which Linux lists in `/proc/locks` by device
/// and inode. This process holds none once its probe is closed (a library caller that holds
/// its own handle of the file is counted as another). Without that list (another system),
/// none is seen.
fn others_have_open(db: &Path) -> bool {
    let (Some(file), Ok(locks)) = (FileId::of(db), std::fs::read_to_string("/proc/locks")) else {
        return false;
    };
    let me = std::process::id().to_string();
    locks.lines().any(|line| file.held_in(line, &me))
}

/// A file as `/proc/locks` names it: its inode, and the devices that may stand for its file
/// system there (the one `stat` gives, and its mount's; they differ on btrfs subvolumes and
/// some overlay file systems, and `/proc/locks` gives the mount's).
struct FileId {
    ino: u64,
    devices: Vec<(u64, u64)>,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let dev = meta.dev();
        // glibc's split of a device number into major and minor.
        let mut devices = vec![(
            ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
            (dev & 0xff) | ((dev >> 12) & !0xff),
        )];
        if let Some(mounted) = mount_device(path) {
            devices.push(mounted);
        }
        Some(FileId {
            ino: meta.ino(),
            devices,
        })
    }

    /// Whether `line` of `/proc/locks` is a lock on this file held by a process other than
    /// `me` ("1: FLOCK  ADVISORY  READ 1234 fe:00:10084895 0 EOF"; an open file
    /// description's lock shows pid -1; a blocked waiter's line, "1: -> FLOCK …", holds
    /// nothing).
    fn held_in(&self, line: &str, me: &str) -> bool {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") {
            return false;
        }
        let Some(pos) = fields.iter().position(|f| f.matches(':').count() == 2) else {
            return false;
        };
        let mut id = fields[pos].split(':');
        let (Some(major), Some(minor), Some(ino)) = (id.next(), id.next(), id.next()) else {
            return false;
        };
        let device = (
            u64::from_str_radix(major, 16).ok(),
            u64::from_str_radix(minor, 16).ok(),
        );
        ino.parse::<u64>() == Ok(self.ino)
            && self
                .devices
                .iter()
                .any(|&(ma, mi)| device == (Some(ma), Some(mi)))
            && pos > 0
            && fields[pos - 1] != me
    }
}

/// The device of the file system `path` is on, as its mount names it in
/// `/proc/self/mountinfo` (what `/proc/locks` shows), found by the mount id `statx` gives.
fn mount_device(path: &Path) -> Option<(u64, u64)> {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    let st = statx(CWD, path, AtFlags::empty(), StatxFlags::MNT_ID).ok()?;
    if st.stx_mask & StatxFlags::MNT_ID.bits() == 0 {
        return None;
    }
    let id = st.stx_mnt_id.to_string();
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": id, parent,
    // major:minor (decimal).
    table.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next()? != id {
            return None;
        }
        let (major, minor) = fields.nth(1)?.split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::FileId;

    /// Lines of `/proc/locks` as Linux writes them: a lock on the file by another process
    /// (a flock with its pid, an open file description's with -1) counts; this process's
    /// own, another inode's, another device's and a blocked waiter's do not.
    #[test]
    fn proc_locks_lines_are_read_by_device_and_inode() {
        let file = FileId {
            ino: 10084895,
            devices: vec![(0xfe, 0), (259, 0x1a5)],
        };
        let me = "4242";
        let held = |line: &str| file.held_in(line, me);
        assert!(held("1: FLOCK  ADVISORY  READ 19754 fe:00:10084895 0 EOF"));
        assert!(held(
            "2: OFDLCK ADVISORY  READ -1 fe:00:10084895 4611686018427387906 4611686018427387906"
        ));
        assert!(held("3: POSIX  ADVISORY  WRITE 77 103:1a5:10084895 0 EOF"));
        assert!(!held("4: FLOCK  ADVISORY  READ 4242 fe:00:10084895 0 EOF"));
        assert!(!held("5: FLOCK  ADVISORY  READ 19754 fe:00:10084896 0 EOF"));
        assert!(!held("6: FLOCK  ADVISORY  READ 19754 fe:01:10084895 0 EOF"));
        assert!(!held(
            "7: -> FLOCK  ADVISORY  WRITE 19755 fe:00:10084895 0 EOF"
        ));
        assert!(!held("8: LEASE  ACTIVE    READ 19754 <none>:0 0 EOF"));
        assert!(!held(""));
    }
}
