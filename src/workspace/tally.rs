//! The gallery's piece count and bytes, kept in a few bytes beside the document (`.pieces`),
//! so that saving or removing a piece writes those bytes and the piece, never the whole
//! `workspace.json`, however large the document is, and a save checks the user's caps
//! (`WorkspaceOptions::max_pieces`, `max_gallery_bytes`) without listing the gallery.
//!
//! `.pieces` says `{"piece_count": N, "next_piece": M, "piece_bytes": B}`: the gallery holds N
//! pieces of B bytes in all and the next save takes number M, unless piece M is there
//! already (a save stopped after writing its piece, before the count), which every reader
//! checks and then counts the gallery. A change other than a save first writes the count as
//! unknown (`null`), so a crash part way leaves the gallery to be counted. Without
//! `piece_bytes` (files of older builds) the bytes are summed from the gallery at the next
//! save, which writes them. Without the file (folders of existing deployments and older
//! builds), `workspace.json`'s `piece_count` is the count, as those writers kept it (without
//! either, the gallery is counted). The document's own `piece_count` is brought up to date
//! at its next write.

use std::path::Path;

use serde_json::{Value, json};

use super::names::{GALLERY_DIR, TALLY_FILE, piece_file_name, trashed_numbers};
use crate::error::{Error, Result};
use crate::fsutil;

/// What a folder's `.pieces` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tally {
    /// No `.pieces`: the document's `piece_count` is the count.
    Absent,
    /// `count` pieces of `bytes` bytes in all (`None`: not said, to be summed from the
    /// gallery); the next save takes `next`, unless piece `next` is there already.
    Known(Known),
    /// To be counted in the gallery: a change was under way, or the file says nothing usable.
    Unknown,
}

/// More than `.pieces` ever holds: a larger file is no count.
const MAX_TALLY_BYTES: u64 = 256;

impl Tally {
    fn parse(bytes: &[u8]) -> Tally {
        let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
            return Tally::Unknown;
        };
        match (
            v.get("piece_count").and_then(Value::as_u64),
            v.get("next_piece").and_then(Value::as_u64),
        ) {
            (Some(count), Some(next)) => Tally::Known(Known {
                count,
                next,
                bytes: v.get("piece_bytes").and_then(Value::as_u64),
            }),
            _ => Tally::Unknown,
        }
    }

    pub(super) fn bytes(self) -> Vec<u8> {
        let v = match self {
            Tally::Known(Known {
                count,
                next,
                bytes: Some(bytes),
            }) => json!({"piece_count": count, "next_piece": next, "piece_bytes": bytes}),
            Tally::Known(Known {
                count,
                next,
                bytes: None,
            }) => json!({"piece_count": count, "next_piece": next}),
            Tally::Absent | Tally::Unknown => json!({"piece_count": null, "next_piece": null}),
        };
        let mut bytes = v.to_string().into_bytes();
        bytes.push(b'\n');
        bytes
    }
}

/// What `.pieces` of the folder `dir` says. A file there that is no regular file, or too
/// large, says nothing usable: the gallery is counted, and the next write replaces it.
///
/// # Errors
/// `Io` when it cannot be read.
pub(super) fn read_tally(dir: &Path) -> Result<Tally> {
    match fsutil::read_regular(&dir.join(TALLY_FILE), MAX_TALLY_BYTES) {
        Ok(None) => Ok(Tally::Absent),
        Ok(Some(bytes)) => Ok(Tally::parse(&bytes)),
        Err(Error::InvalidInput { .. } | Error::UnsafePath { .. }) => Ok(Tally::Unknown),
        Err(e) => Err(e),
    }
}

/// What a usable `.pieces` says: the gallery's count, its bytes (`None`: to be summed) and
/// the next number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Known {
    pub(super) count: u64,
    pub(super) next: u64,
    pub(super) bytes: Option<u64>,
}

/// What `tally` says of the folder `dir`, when it says the count and next number and no
/// save stopped after its piece (piece `next` is not there).
///
/// # Errors
/// `Io` when the gallery cannot be looked at.
pub(super) fn known(dir: &Path, tally: Tally) -> Result<Option<Known>> {
    let Tally::Known(k) = tally else {
        return Ok(None);
    };
    let piece = dir.join(GALLERY_DIR).join(piece_file_name(k.next));
    match std::fs::symlink_metadata(&piece) {
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(k)),
        Err(e) => Err(Error::io(format!("looking for {}", piece.display()), e)),
    }
}

/// The gallery of a folder as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counted {
    /// Its pieces.
    pub(super) count: u64,
    /// The number after the highest any entry of it or of its trash takes (`None` when
    /// there is no such number).
    pub(super) next: Option<u64>,
    /// The bytes of its pieces.
    pub(super) bytes: u64,
}

impl Counted {
    /// The `.pieces` that says it (unknown when no number is left).
    pub(super) fn tally(self) -> Tally {
        match self.next {
            Some(next) => Tally::Known(Known {
                count: self.count,
                next,
                bytes: Some(self.bytes),
            }),
            None => Tally::Unknown,
        }
    }
}

/// The gallery of the folder `dir`, listed.
///
/// # Errors
/// `Io` when the gallery or its trash cannot be listed.
pub(super) fn counted(dir: &Path) -> Result<Counted> {
    let pieces = super::names::gallery_numbers(dir)?;
    let highest = pieces
        .highest()
        .max(trashed_numbers(dir)?.highest())
        .unwrap_or(0);
    Ok(Counted {
        count: pieces.files.len() as u64,
        next: highest.checked_add(1),
        bytes: pieces.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::{Known, Tally};

    #[test]
    fn tallies_read_back_and_anything_else_is_unknown() {
        for t in [
            Tally::Known(Known {
                count: 3,
                next: 9,
                bytes: Some(120),
            }),
            // Written by builds that kept no bytes: summed at the next save.
            Tally::Known(Known {
                count: 3,
                next: 9,
                bytes: None,
            }),
            Tally::Unknown,
        ] {
            assert_eq!(Tally::parse(&t.bytes()), t);
        }
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"piece_count": 3}"#,
            br#"{"piece_count": -1, "next_piece": 2}"#,
        ] {
            assert_eq!(Tally::parse(bad), Tally::Unknown);
        }
    }
}
