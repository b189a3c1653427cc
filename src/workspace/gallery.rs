//! Gallery pieces: `gallery/piece_{n:06}.json`, numbered from the highest existing piece + 1 so
//! a crash between writing a piece and updating `piece_count` never reuses a number.

use std::fs;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::lock::LockKind;
use super::{GALLERY_DIR, WORKSPACE_FILE, Workspaces, corrupt};
use crate::error::{Error, Result};

/// One piece in a gallery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PieceInfo {
    /// Its number.
    pub piece: u64,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Its last modification.
    pub modified: Option<crate::Timestamp>,
}

/// The file name of piece `n`: six digits, wider past 999,999.
pub fn piece_file_name(n: u64) -> String {
    format!("piece_{n:06}.json")
}

/// The number in a piece file name, if it is one.
fn parse_piece_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("piece_")?.strip_suffix(".json")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 6 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

impl Workspaces {
    fn gallery(&self, user: u64) -> PathBuf {
        self.dir(user).join(GALLERY_DIR)
    }

    /// The path of piece `n` of `user`.
    pub fn piece_path(&self, user: u64, n: u64) -> PathBuf {
        self.gallery(user).join(piece_file_name(n))
    }

    /// Piece numbers present, ascending.
    pub(super) fn piece_numbers(&self, user: u64) -> Result<Vec<u64>> {
        let dir = self.gallery(user);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        let mut out: Vec<u64> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().to_str().and_then(parse_piece_name))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Saves a piece (any JSON document) as the next number, then updates `piece_count`; all
    /// under the user's exclusive lock. Returns the number.
    ///
    /// # Errors
    /// `InvalidInput` when `json` is not JSON or is over the cap; `NotFound` without a
    /// workspace; `Corrupt` when workspace.json is unreadable (the piece is not written).
    pub fn save_piece(&self, user: u64, json: &[u8]) -> Result<u64> {
        serde_json::from_slice::<Value>(json)
            .map_err(|e| Error::invalid("piece", format!("it is not valid JSON ({e})")))?;
        let _lock = self.lock(user, LockKind::Exclusive)?;
        // Refuse before writing anything if the document cannot be updated afterwards.
        let mut doc = self.read_doc(user)?;
        let gallery = self.gallery(user);
        if fs::symlink_metadata(&gallery).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Refused(format!(
                "{} is a symlink; refusing to use it",
                gallery.display()
            )));
        }
        crate::fsutil::create_private_dir(&gallery)?;
        // The exclusive lock keeps the gallery as listed here until the count is written.
        let existing = self.piece_numbers(user)?;
        let n = existing.last().map_or(1, |last| last + 1);
        self.write_bytes(&self.piece_path(user, n), json)?;
        doc.piece_count = existing.len() as u64 + 1;
        self.write_json(&self.dir(user).join(WORKSPACE_FILE), &doc)?;
        Ok(n)
    }

    /// Pieces of the user's gallery, ascending by number.
    pub fn list_pieces(&self, user: u64) -> Result<Vec<PieceInfo>> {
        let _lock = self.lock(user, LockKind::Shared)?;
        let mut out = Vec::new();
        for n in self.piece_numbers(user)? {
            let m = fs::symlink_metadata(self.piece_path(user, n)).ok();
            out.push(PieceInfo {
                piece: n,
                size_bytes: m.as_ref().map_or(0, |m| m.len()),
                modified: m
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| crate::Timestamp(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
            });
        }
        Ok(out)
    }

    /// Reads piece `n`.
    ///
    /// # Errors
    /// `NotFound` when it does not exist; `Corrupt` (naming the path) when it is not JSON.
    pub fn load_piece(&self, user: u64, n: u64) -> Result<Value> {
        let _lock = self.lock(user, LockKind::Shared)?;
        let path = self.piece_path(user, n);
        let bytes = self
            .read_file(&path)?
            .ok_or_else(|| Error::not_found(format!("piece {n} of user {user}")))?;
        serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, format!("not valid JSON ({e})")))
    }

    /// Deletes piece `n` and updates `piece_count`.
    pub fn delete_piece(&self, user: u64, n: u64) -> Result<()> {
        let _lock = self.lock(user, LockKind::Exclusive)?;
        let path = self.piece_path(user, n);
        let mut doc = self.read_doc(user)?;
        match fs::symlink_metadata(&path) {
            Ok(_) => fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?,
            Err(_) => return Err(Error::not_found(format!("piece {n} of user {user}"))),
        }
        crate::fsutil::sync_dir(&path)?;
        doc.piece_count = self.piece_numbers(user)?.len() as u64;
        self.write_json(&self.dir(user).join(WORKSPACE_FILE), &doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_names_round_trip_and_widen() {
        for n in [1, 42, 999_999, 1_000_000, 123_456_789] {
            assert_eq!(parse_piece_name(&piece_file_name(n)), Some(n));
        }
        assert_eq!(piece_file_name(1), "piece_000001.json");
        assert_eq!(piece_file_name(1_000_000), "piece_1000000.json");
        for bad in [
            "piece_1.json",
            "piece_0000001.json",
            "piece_00000a.json",
            "x_000001.json",
            "piece_000001.json.tmp",
        ] {
            assert_eq!(parse_piece_name(bad), None, "{bad}");
        }
    }
}
