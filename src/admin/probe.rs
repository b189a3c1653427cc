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
