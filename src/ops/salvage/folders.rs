//! The folder side of a salvage: the new data dir it writes into, and the workspace
//! folders it copies as they are.

use std::path::Path;

use crate::error::{Error, Result};
use crate::handle::STORE_FILE;

/// Copies the user folders, files as they are (symlinks are left behind).
pub(super) fn copy_folders(from: &Path, to: &Path) -> Result<u64> {
    let users = from.join("users");
    let Ok(entries) = std::fs::read_dir(&users) else {
        return Ok(0);
    };
    let mut n = 0;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_tree(&entry.path(), &to.join("users").join(entry.file_name()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// A reader that notes whether reading failed (a damaged file), to tell that from a
/// failure to write the copy (a full disk).
struct ReadFailures<R> {
    inner: R,
    failed: bool,
}

impl<R: std::io::Read> std::io::Read for ReadFailures<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed = true)
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    crate::fsutil::create_private_dir(to)?;
    let entries =
        std::fs::read_dir(from).map_err(|e| Error::io(format!("listing {}", from.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        match entry.file_type() {
            Ok(t) if t.is_dir() => copy_tree(&path, &target)?,
            Ok(t) if t.is_file() => {
                // A file that cannot be read is left behind; the rest is copied, with its
                // own time (lists show when a piece was saved, not when it was salvaged).
                // Streamed: a file of any size is copied without being held in memory.
                if let Ok(Some((file, len))) = crate::fsutil::open_regular_sized(&path) {
                    let mut reader = ReadFailures {
                        inner: crate::fsutil::Exactly::new(file, len),
                        failed: false,
                    };
                    match crate::fsutil::write_private_from(&target, &mut reader) {
                        Ok(()) => {}
                        // Nothing is left of it: as a file that does not open.
                        Err(_) if reader.failed => continue,
                        Err(e) => return Err(e),
                    }
                    if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                        let _ = std::fs::File::options()
                            .write(true)
                            .open(&target)
                            .and_then(|f| f.set_modified(modified));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
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
