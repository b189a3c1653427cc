//! Names in a folder: user folder names (canonical decimal ids) and gallery piece file names
//! (`piece_000001.json`), and the piece numbers present in a folder.

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil;

/// The document file in each user directory.
pub const WORKSPACE_FILE: &str = "workspace.json";
/// The gallery folder in each user directory.
pub const GALLERY_DIR: &str = "gallery";
/// The marker holding the identity of a folder's owner.
pub const OWNER_FILE: &str = ".owner";
pub(super) const LOCK_FILE: &str = ".lock";
pub(super) const PIECE_TRASH: &str = ".trash";
/// The gallery's piece count, kept beside the document (see `tally.rs`).
pub(super) const TALLY_FILE: &str = ".pieces";
/// Parses a directory name that is a canonical decimal id (no sign, no leading zero).
pub(super) fn parse_id(name: &str) -> Option<u64> {
    if name.is_empty() || (name.len() > 1 && name.starts_with('0')) {
        return None;
    }
    if !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The largest whole number a JSON client (JavaScript) reads exactly: 2^53 − 1. An import
/// refuses piece numbers past it.
pub const MAX_JSON_PIECE: u64 = (1 << 53) - 1;

/// The highest piece number [`Workspaces::put_piece`](super::Workspaces::put_piece) writes:
/// 2^52 − 1, half of [`MAX_JSON_PIECE`]. Saved pieces number on past the highest one, so a
/// gallery given the highest number still saves 2^52 more before its numbers pass what a
/// JSON client reads exactly. (An adoption keeps the numbers it finds.)
pub const MAX_GIVEN_PIECE: u64 = (1 << 52) - 1;

/// Refuses a piece number outside 1 ..= `max`, saying why `max` is the limit.
///
/// # Errors
/// `InvalidInput` saying the range.
pub(crate) fn piece_within(n: u64, max: u64) -> crate::error::Result<()> {
    if (1..=max).contains(&n) {
        return Ok(());
    }
    let why = if max == MAX_JSON_PIECE {
        "the largest whole number a JSON client reads exactly"
    } else {
        "which leaves the gallery as many numbers to save after it"
    };
    Err(crate::error::Error::invalid(
        "piece",
        format!("piece number {n} is outside 1 to {max} ({why}); number it within that range"),
    ))
}

/// The file name of piece `n`: six digits, wider past 999,999.
pub fn piece_file_name(n: u64) -> String {
    format!("piece_{n:06}.json")
}

/// The number in a piece file name, if it is one.
pub fn parse_piece_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("piece_")?.strip_suffix(".json")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 6 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The numbered names in a folder: those of regular files, and those taken by anything else
/// (a symlink, a folder), whose numbers are never handed out either. Both ascending.
#[derive(Debug, Default)]
pub(super) struct Numbers {
    pub files: Vec<u64>,
    pub others: Vec<u64>,
    /// The bytes of the regular files among them.
    pub bytes: u64,
}

impl Numbers {
    /// The highest number taken by any entry.
    pub fn highest(&self) -> Option<u64> {
        self.files.last().copied().max(self.others.last().copied())
    }
}

fn numbers_in(dir: &Path, parse: impl Fn(&str) -> Option<u64>) -> Result<Numbers> {
    numbers_tidying(dir, parse, false)
}

// Lists `dir` once: the numbers `parse` finds; with `tidy`, temp files a crash left behind
// are removed on the way.
fn numbers_tidying(dir: &Path, parse: impl Fn(&str) -> Option<u64>, tidy: bool) -> Result<Numbers> {
    let mut out = Numbers::default();
    if fsutil::real_dir(dir)?.is_none() {
        return Ok(out);
    }
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let file = e.file_type().is_ok_and(|t| t.is_file());
        match parse(name) {
            Some(n) if file => {
                out.files.push(n);
                // Not following a symlink: the entry is a regular file.
                let size = e.metadata().map_or(0, |m| m.len());
                out.bytes = out.bytes.saturating_add(size);
            }
            Some(n) => out.others.push(n),
            None if file && tidy && name.starts_with(fsutil::TEMP_PREFIX) => {
                let _ = fs::remove_file(e.path());
            }
            None => {}
        }
    }
    out.files.sort_unstable();
    out.others.sort_unstable();
    Ok(out)
}

/// [`piece_numbers`], removing the temp files a crash left in the gallery on the way (one
/// listing serves both, so saving a piece lists a large gallery once).
pub(super) fn piece_numbers_tidying(dir: &Path) -> Result<Numbers> {
    numbers_tidying(&dir.join(GALLERY_DIR), parse_piece_name, true)
}

/// Piece numbers in the gallery of the folder `dir`: of pieces (regular files), and of
/// entries that only bear a piece's name. A symlinked gallery is refused.
pub(super) fn gallery_numbers(dir: &Path) -> Result<Numbers> {
    numbers_in(&dir.join(GALLERY_DIR), parse_piece_name)
}

/// Numbers of the pieces (regular files) in the gallery of the folder `dir`, ascending. A
/// symlinked gallery is refused.
pub(super) fn piece_numbers(dir: &Path) -> Result<Vec<u64>> {
    Ok(gallery_numbers(dir)?.files)
}

// Removed pieces are kept as `piece_NNNNNN.json` or `piece_NNNNNN.json-2`, ….
pub(super) fn trashed_numbers(dir: &Path) -> Result<Numbers> {
    numbers_in(&dir.join(PIECE_TRASH), |name| {
        trashed_number(name).or_else(|| kept_number(name))
    })
}

/// The name of the empty file in a gallery's `.trash/` that keeps piece numbers up to `n`
/// from being given again when no removed piece is there to do it (an import leaves it for
/// the removed pieces an export left out). It names no piece: nothing lists it as one.
pub(super) fn number_keeper_name(n: u64) -> String {
    format!("numbers_used_up_to_{n:06}")
}

/// Keeps piece numbers up to `n` from being given again with an empty
/// [`number_keeper_name`] in the `.trash` folder `trash` (which exists), written and synced
/// before anything else changes, so that the number stays taken at every moment; then
/// removes the markers of lower numbers, which keep nothing more. A marker of `n` already
/// there is kept as it is.
///
/// # Errors
/// `Io` when the marker cannot be written (nothing changed then). A lower marker that cannot
/// be removed stays: only the highest number counts.
pub(super) fn keep_numbers_up_to(trash: &Path, n: u64) -> Result<()> {
    fsutil::write_private_new(&trash.join(number_keeper_name(n)), b"")?;
    let Ok(entries) = fs::read_dir(trash) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let lower = e
            .file_name()
            .to_str()
            .and_then(kept_number)
            .is_some_and(|k| k < n);
        if lower && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// The number a [`number_keeper_name`] keeps.
pub(super) fn kept_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("numbers_used_up_to_")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The number of a removed piece's name in a folder's `.trash/` (`piece_NNNNNN.json`, or
/// `piece_NNNNNN.json-2`, …), if it is one.
pub(super) fn trashed_number(name: &str) -> Option<u64> {
    let base = match name.rsplit_once(".json-") {
        Some((b, n)) if n.bytes().all(|c| c.is_ascii_digit()) => &name[..b.len() + 5],
        _ => name,
    };
    parse_piece_name(base)
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
