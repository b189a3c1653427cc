//! Small file-system helpers shared by the store and the workspaces: private permissions and
//! atomic replacement (temp file in the same directory, fsync, rename, fsync the directory).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Prefix of every temp file redkeep writes; readers skip such files and writers clean them.
pub const TEMP_PREFIX: &str = ".rk-tmp-";

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("creating directory {}", dir.display()), e))
}

/// A new temp file (mode 0600) in the directory of `target`.
pub fn temp_sibling(target: &Path) -> Result<NamedTempFile> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    private_temp_in(dir)
}

/// A new temp file (mode 0600) in `dir`.
pub fn private_temp_in(dir: &Path) -> Result<NamedTempFile> {
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("creating a temp file in {}", dir.display()), e))?;
    Ok(tmp)
}

/// Flushes `tmp` to disk, renames it over `target` and fsyncs the directory. On error the
/// temp file is removed and `target` is untouched.
pub fn persist(tmp: NamedTempFile, target: &Path) -> Result<()> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(format!("syncing a temp file for {}", target.display()), e))?;
    tmp.persist(target)
        .map_err(|e| Error::io(format!("replacing {}", target.display()), e.error))?;
    sync_dir(target)
}

/// Fsyncs the directory holding `path`, so a rename in it survives a crash.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// Atomically replaces `target` with `bytes` (mode 0600).
pub fn write_private(target: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = temp_sibling(target)?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
    persist(tmp, target)
}
