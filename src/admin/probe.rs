//! `redkeep status` seen from outside: probes the files, then asks the owner if there is one.

use std::path::Path;

use super::client::{self, Remote};
use super::commands::Command;
use super::commands::status::{reply, stopped_operations, with_stopped};
use super::reply::Reply;
use super::request::Request;
use crate::store::{
    Mode, Store, StoreOptions, open_elsewhere, owner_path, process_alive, read_owner,
};
use crate::{Error, Result, SCHEMA_VERSION, STORE_FILE};

/// How long `status` waits for the owner's answer.
const STATUS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// The status seen from outside: probes the files, then asks the owner if there is one.
///
/// # Errors
/// `NotInitialized` when the data dir holds no store (`Denied`, saying where, when it moved
/// to a server); `Io` or `Storage` when the files cannot be read; `Corrupt` for an
/// unreadable store.
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
        // No store is no state to report: a health check or script that asks must see a
        // failure, as it does of a PostgreSQL schema that holds none. A store that moved to
        // a server left a note in its place, which says where it went.
        return Err(crate::handle::moved_away(dir).unwrap_or(Error::NotInitialized { path: db }));
    }
    let owner = read_owner(&owner_path(&db)).filter(|o| process_alive(o.pid));
    if let Some(o) = &owner
        && let Some(conn) = client::connect(dir)
    {
        let req = Request::new(Command::Status);
        // A stopped or hung owner accepts the connection and never answers: status says so
        // rather than wait with it.
        let (socket, why) =
            match conn
                .give_up_after(STATUS_PATIENCE)
                .send(&req, None, &mut std::io::sink())
            {
                Ok(Remote::Reply(r)) => return Ok(r),
                Err(Error::Busy { .. }) => ("not answering", None),
                // The listener is not one to trust (another uid's), or it refused this user:
                // say why, which "unreachable" would hide.
                Err(Error::Denied { reason }) => ("refused", Some(reason)),
                _ => ("unreachable", None),
            };
        let mut out = reply("exclusive", Some(o.pid), Some(socket), None, dir);
        if let Some(why) = why {
            if let super::reply::Human::Text(lines) = &mut out.human
                && let Some(line) = lines.iter_mut().find(|l| l.starts_with("admin socket: "))
            {
                *line = format!("admin socket: refused ({why})");
            }
            out.json["socket_refused"] = serde_json::json!(why);
        }
        return Ok(out);
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
                     version is read then, with whether an operation (a reset, a restore) \
                     stopped part way: `redkeep check` opens it and says"
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
    if open_elsewhere(db) == Some(true) {
        "shared"
    } else if rustix::fs::access(db, rustix::fs::Access::WRITE_OK).is_ok() {
        "free"
    } else {
        "read-only"
    }
}

/// The status of a store another process holds exclusively (`pid`, when its owner marker
/// names a live one), with whether its admin socket answers a connection: `none` when
/// there is no socket (a redkeep command, or an application that serves none), which is
/// no fault; `missing` when the application listens on a socket whose file was removed.
/// A redkeep command is named, as the errors of other commands name it.
fn held_exclusively(dir: &Path, pid: Option<u32>) -> Reply {
    let command = pid.and_then(crate::store::redkeep_command);
    let socket = if client::reachable(dir) {
        "reachable"
    } else if command.is_none() && client::listening_without_file(dir) {
        "missing"
    } else if command.is_some() || !dir.join(super::protocol::SOCKET_FILE).exists() {
        "none"
    } else {
        "unreachable"
    };
    let mut out = reply("exclusive", pid, Some(socket), None, dir);
    if command.is_none()
        && socket == "none"
        && let super::reply::Human::Text(lines) = &mut out.human
        && let Some(line) = lines
            .iter_mut()
            .find(|l| l.starts_with("admin socket: none"))
    {
        // The application may serve one whose file was removed, bound where this cannot see.
        *line = format!(
            "admin socket: none (no file at {}: the holder serves none, so commands cannot \
             run through it; if it is an application that serves one, the file was removed, \
             by a temp-file cleaner or by hand: restart the application to recreate it)",
            dir.join(super::protocol::SOCKET_FILE).display()
        );
    }
    if let (Some(command), Some(pid)) = (&command, pid) {
        if let super::reply::Human::Text(lines) = &mut out.human
            && let Some(first) = lines.first_mut()
        {
            *first = format!(
                "the store is held exclusively by process {pid} (`{command}`, a redkeep \
                 command); wait for it to finish"
            );
        }
        out.json["command"] = serde_json::json!(command);
    }
    out
}
