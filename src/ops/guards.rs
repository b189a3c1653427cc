//! Refusals shared by the operations on a whole data dir: a store whose last restore or reset
//! stopped part way, and a folder that is no data dir.

use std::path::Path;

use crate::error::{Error, Result};

/// Refuses a whole-store operation (a backup, a move, a reset, a salvage) while a restore or
/// a reset that stopped part way left its mark in `store`: the store and the workspace
/// folders in place are then not of one state, and a copy or an emptying would pair them
/// (or throw away the folders the stopped operation waits to put in place). The refusal is
/// the one every workspace read gives, naming `redkeep check --repair`. A mark that cannot
/// be read (a damaged store) does not refuse: what reads the store says why.
///
/// # Errors
/// `NotReady` while such a mark is there.
pub(crate) fn refuse_stopped_operation(store: &crate::store::Store) -> Result<()> {
    use crate::store::Meta;
    let marked = |key: &str| store.read(|tx| tx.meta(key)).ok().flatten().is_some();
    if marked(crate::store::RESTORE_UNFINISHED) {
        return Err(crate::workspace::StoppedRestore::refusal());
    }
    if marked(crate::store::RESET_UNFINISHED) {
        return Err(Error::NotReady {
            reason: "a reset stopped part way here (a crash or a kill); `redkeep check` says \
                     how to undo it, `redkeep check --repair` finishes it"
                .into(),
        });
    }
    Ok(())
}

/// Refuses to replace or empty a store (a restore, a reset; `doing` says which: "restored",
/// "reset") into which a move stopped part way: the workspace folders in its data dir still
/// belong to the store the move came from, which stays the live one, and the replaced store
/// would lose its mark and pass for a whole one beside it. The ways out are the move's own.
/// A mark that cannot be read (a damaged store) does not refuse: what reads the store says
/// why.
///
/// # Errors
/// `Denied` while the store holds the mark of a move into it.
pub(crate) fn refuse_half_moved(store: &crate::store::Store, doing: &str) -> Result<()> {
    use crate::store::Meta;
    match store.read(|tx| tx.meta(crate::store::MOVE_UNFINISHED)) {
        Ok(Some(from)) => Err(Error::denied(format!(
            "a move from {} into this store stopped part way, so the store cannot be {doing}: \
             the data dir's workspace folders still belong to the store the move came from; \
             {}",
            String::from_utf8_lossy(&from),
            crate::handle::HALF_MOVED_WAYS_OUT
        ))),
        _ => Ok(()),
    }
}

/// Refuses to make `dir` a data dir (`doing`: "init", "restore into", "move into") when it
/// holds other things and nothing of redkeep's (a mistyped `--data-dir ~`): a data dir is
/// made private (0700), which would lock other users out of it, and keeps every password
/// hash. A new or empty folder, or one that holds a store or workspaces, is a data dir.
///
/// # Errors
/// `InvalidInput` naming a few of the other files.
pub(crate) fn refuse_foreign_folder(dir: &Path, doing: &str) -> Result<()> {
    let Some(names) = foreign_files(dir) else {
        return Ok(());
    };
    Err(Error::invalid(
        "data dir",
        format!(
            "{} holds other files ({names}) and is no redkeep data dir; {doing} makes its data \
             dir private (0700) and keeps every account's password hash there, so give a new \
             or empty folder",
            dir.display(),
        ),
    ))
}

/// A few of the files in `dir` (as "a, b, c and 4 more") when it holds files and none of
/// them is redkeep's: a folder that is no data dir. `None` when `dir` is empty, is not
/// there, cannot be read, or holds something of redkeep's.
pub(crate) fn foreign_files(dir: &Path) -> Option<String> {
    // Not there: it is made. Not readable: opening it says why.
    let entries = std::fs::read_dir(dir).ok()?;
    // A file system's own `lost+found` (a freshly made disk, the usual place of a restore
    // after a disk was lost) is no one's files.
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lost+found")
        .collect();
    // redkeep's own names: the store and the copies kept beside it (`redkeep.redb.…`), the
    // admin socket, the note of a move, the snapshot of a server's store, the workspaces and
    // temp files. (Not any name that starts with "redkeep": a checkout `redkeep-src/` in a
    // home folder is not a data dir.)
    let redkeeps = |n: &String| {
        let own_file = |base: &str| {
            n == base
                || n.strip_prefix(base)
                    .is_some_and(|rest| rest.starts_with('.'))
        };
        own_file(crate::STORE_FILE)
            || own_file(crate::handle::POSTGRES_COPIES)
            || n == crate::handle::MOVED_NOTE
            || n == crate::handle::STORE_NOTE
            || n == super::files::SOCKET_NAME
            || n == crate::WORKSPACES_DIR
            || n.starts_with(crate::fsutil::TEMP_PREFIX)
    };
    if names.is_empty() || names.iter().any(redkeeps) {
        return None;
    }
    let mut names = names;
    names.sort();
    Some(crate::top::first_few(&names, 3))
}
