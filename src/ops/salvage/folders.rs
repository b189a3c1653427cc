//! The folder side of a salvage: the new data dir it writes into, and the workspace
//! folders (users' and the trash) it copies as they are. What cannot be listed, opened or
//! read is named, never skipped without a word: on a failing disk a copy short of files
//! would otherwise pass, once repaired, for a whole one.

use std::fs::DirEntry;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::handle::STORE_FILE;

/// What the copy of the workspace folders did.
#[derive(Debug, Default)]
pub(super) struct Copied {
    /// Users' folders copied (wholly or in part).
    pub(super) folders: u64,
    /// Trash entries copied (wholly or in part).
    pub(super) trash: u64,
    /// What could not be listed, opened or read, one line each (naming the path and the
    /// cause), in the order met.
    pub(super) left_behind: Vec<String>,
    /// The source paths behind `left_behind`, to tell what a repair then wrote fresh.
    unread: Vec<PathBuf>,
}

impl Copied {
    /// Names `path` as left behind, `line` saying what failed (with the path).
    fn leave(&mut self, path: &Path, line: String) {
        self.left_behind.push(line);
        self.unread.push(path.to_path_buf());
    }

    /// The report's problem line for what was left behind, if anything was.
    pub(super) fn problem(&self) -> Option<String> {
        (!self.left_behind.is_empty()).then(|| {
            format!(
                "{} workspace file(s) or folder(s) could not be read and are not in the copy \
                 (each is listed as left behind): copy what can still be had of them by hand, or \
                 take them from a backup",
                self.left_behind.len()
            )
        })
    }

    /// The workspace documents of the copy that were written fresh (by the repair that
    /// runs on it), or are missing, because their source could not be read: `from` is the
    /// source's workspaces folder, `to` the copy's.
    pub(super) fn written_fresh(&self, from: &Path, to: &Path) -> Vec<String> {
        let users = from.join("users");
        self.unread
            .iter()
            .filter_map(|p| {
                let rel = p.strip_prefix(&users).ok()?;
                let mut parts = rel.components();
                let user = parts.next()?.as_os_str().to_str()?.parse::<u64>().ok()?;
                if parts.as_path() != Path::new(crate::workspace::WORKSPACE_FILE) {
                    return None;
                }
                let copy = to.join("users").join(rel);
                // The repair writes one where the count was to be told by the document;
                // with the count kept beside it (`.pieces`), the copy has none.
                let now = if copy.is_file() {
                    format!("{} is a fresh document the repair wrote", copy.display())
                } else {
                    format!(
                        "the copy has none at {}: it reads as an empty document",
                        copy.display()
                    )
                };
                Some(format!(
                    "workspace of user {user}: {} could not be read, so {now} (its canvas, \
                     notes and fields are lost)",
                    p.display(),
                ))
            })
            .collect()
    }
}

/// Copies the users' folders and the trash's entries of the workspaces folder `from` into
/// `to`, files as they are (symlinks are left behind); names what cannot be read.
///
/// # Errors
/// `Io` when the copy cannot be written (a full disk).
pub(super) fn copy_folders(from: &Path, to: &Path) -> Result<Copied> {
    let mut copied = Copied::default();
    // Users' folders only: other entries of `users` (a crash's temp folders) are no
    // account's.
    for entry in listed(&from.join("users"), &mut copied).unwrap_or_default() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                let target = to.join("users").join(entry.file_name());
                if copy_tree(&entry.path(), &target, &mut copied)? {
                    copied.folders += 1;
                }
            }
            Ok(_) => {}
            Err(e) => unknown_type(&entry, &e, &mut copied),
        }
    }
    // The trash whole: deleted users' folders, and the `reset-…` entries `restore
    // --folders` puts back.
    for entry in listed(&from.join("trash"), &mut copied).unwrap_or_default() {
        let target = to.join("trash").join(entry.file_name());
        let done = match entry.file_type() {
            Ok(t) if t.is_dir() => copy_tree(&entry.path(), &target, &mut copied)?,
            Ok(t) => {
                crate::fsutil::create_private_dir(&to.join("trash"))?;
                copy_entry(&entry, t, &target, &mut copied)?
            }
            Err(e) => {
                unknown_type(&entry, &e, &mut copied);
                false
            }
        };
        if done {
            // A trash entry's age is its time: purges and `workspace trash` go by it.
            keep_time(&entry, &target);
            copied.trash += 1;
        }
    }
    Ok(copied)
}

/// The entries of `dir`, up to a listing error, which is named; nothing for a folder that
/// is not there. `None` when it cannot be listed at all.
fn listed(dir: &Path, copied: &mut Copied) -> Option<Vec<DirEntry>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
        Err(e) => {
            copied.leave(dir, format!("listing {}: {e}", dir.display()));
            return None;
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => out.push(e),
            // What follows cannot be told: the rest of the folder is not in the copy.
            Err(e) => {
                copied.leave(
                    dir,
                    format!(
                        "listing {}: {e} (after {} entries; the rest of it is not in the copy)",
                        dir.display(),
                        out.len()
                    ),
                );
                break;
            }
        }
    }
    Some(out)
}

fn unknown_type(entry: &DirEntry, e: &std::io::Error, copied: &mut Copied) {
    let path = entry.path();
    copied.leave(
        &path,
        format!("reading the type of {}: {e}", path.display()),
    );
}

/// A reader that keeps the error reading gave (a damaged file), to tell it from a failure
/// to write the copy (a full disk).
struct ReadFailures<R> {
    inner: R,
    failed: Option<String>,
}

impl<R: std::io::Read> std::io::Read for ReadFailures<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        crate::fsutil::fault(crate::fsutil::FileOp::Read)
            .and_then(|()| self.inner.read(buf))
            .inspect_err(|e| self.failed = Some(e.to_string()))
    }
}

/// Copies the folder `from` to `to`; `false` when it cannot be listed (then nothing of
/// it is copied).
fn copy_tree(from: &Path, to: &Path, copied: &mut Copied) -> Result<bool> {
    let Some(entries) = listed(from, copied) else {
        return Ok(false);
    };
    crate::fsutil::create_private_dir(to)?;
    for entry in entries {
        let target = to.join(entry.file_name());
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                copy_tree(&entry.path(), &target, copied)?;
            }
            Ok(t) => {
                copy_entry(&entry, t, &target, copied)?;
            }
            Err(e) => unknown_type(&entry, &e, copied),
        }
    }
    Ok(true)
}

/// Copies an entry that is no folder, with its own time (lists show when a piece was
/// saved, not when it was salvaged), streamed (a file of any size is copied without being
/// held in memory); `false` when it is not copied.
fn copy_entry(
    entry: &DirEntry,
    kind: std::fs::FileType,
    target: &Path,
    copied: &mut Copied,
) -> Result<bool> {
    let path = entry.path();
    // Redkeep never follows a symlink: one is left behind by design.
    if kind.is_symlink() {
        return Ok(false);
    }
    if !kind.is_file() {
        copied.leave(
            &path,
            format!(
                "{} is not a regular file or a folder (a FIFO, socket or device), so it was \
                 not copied",
                path.display()
            ),
        );
        return Ok(false);
    }
    let (file, len) = match crate::fsutil::open_regular_sized(&path) {
        Ok(Some(opened)) => opened,
        // Gone since it was listed.
        Ok(None) => return Ok(false),
        Err(e) => {
            copied.leave(&path, e.to_string());
            return Ok(false);
        }
    };
    let mut reader = ReadFailures {
        inner: crate::fsutil::Exactly::new(file, len),
        failed: None,
    };
    match crate::fsutil::write_private_from(target, &mut reader) {
        Ok(()) => {}
        // Nothing of it is written.
        Err(_) if reader.failed.is_some() => {
            let e = reader.failed.take().unwrap_or_default();
            copied.leave(&path, format!("reading {}: {e}", path.display()));
            return Ok(false);
        }
        Err(e) => return Err(e),
    }
    keep_time(entry, target);
    Ok(true)
}

/// Gives `target` the modification time of `entry` (a file or a folder), if it can.
fn keep_time(entry: &DirEntry, target: &Path) {
    if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
        let opened = if target.is_dir() {
            std::fs::File::open(target)
        } else {
            std::fs::File::options().write(true).open(target)
        };
        let _ = opened.and_then(|f| f.set_modified(modified));
    }
}

/// Refuses a `to` that cannot take a salvage of `data_dir`.
pub(super) fn check_target(data_dir: &Path, to: &Path) -> Result<()> {
    if to.join(STORE_FILE).exists() {
        return Err(Error::denied(format!(
            "{} already holds a store; salvage writes into a new data dir",
            to.display()
        )));
    }
    crate::ops::files::refuse_taken_folders(to, "salvage")?;
    refuse_filled(to)?;
    // Inside the source, the copy of its folders would copy itself, level under level.
    if crate::fsutil::within(data_dir, to) {
        return Err(Error::invalid(
            "to",
            format!(
                "{} is inside the damaged data dir ({}); give a new data dir outside it",
                to.display(),
                data_dir.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses a `to` that holds anything but a `workspaces` folder (whose empty `users` and
/// `trash` [`crate::ops::files::refuse_taken_folders`] allows) and a mount point's
/// `lost+found`: a salvage is a new data dir, not one mixed in with other files.
fn refuse_filled(to: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(to) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", to.display()), e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", to.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !(dir && (name == crate::handle::WORKSPACES_DIR || name == "lost+found")) {
            found.push(name);
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    Err(Error::denied(format!(
        "{} is not empty (it holds {}); salvage writes a new data dir into a new or empty \
         folder: give another one, or move those away; nothing was written",
        to.display(),
        crate::top::first_few(&found, 5)
    )))
}
