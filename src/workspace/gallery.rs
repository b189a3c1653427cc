//! Gallery pieces: `gallery/piece_{n:06}.json`. A new piece takes the number after the
//! highest piece ever saved in the folder (removed pieces wait in `.trash/`), so a number is
//! never given twice, not even after a crash between the piece and the count.
//!
//! Finding that number lists the gallery (and removes crash leftovers) on the first save of
//! each gallery by a handle. After that, the handle remembers the next number and the count
//! for as long as `workspace.json` is the very version it wrote (each save and delete, by any
//! process, replaces that file), and writes the piece as a new file that never replaces one,
//! so a save costs what the two file replacements cost whatever the gallery's size. A piece
//! that is there after all sends the save back to the listing.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::folders::{Workspaces, date_moved, unparsed};
use super::lock::LockKind;
use super::names::{GALLERY_DIR, PIECE_TRASH};
use super::names::{piece_file_name, piece_numbers, piece_numbers_tidying, trashed_numbers};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::fsutil;

/// A piece found elsewhere (an existing deployment), for
/// [`Workspaces::put_pieces_unsynced`].
#[cfg(feature = "adopt")]
#[derive(Debug)]
pub(crate) struct FoundPiece {
    /// Its number.
    pub(crate) n: u64,
    /// Its bytes, JSON.
    pub(crate) json: Vec<u8>,
    /// When it was saved, which its file keeps.
    pub(crate) modified: Option<std::time::SystemTime>,
}

/// Refuses a piece that is not JSON or is nested deeper than a read takes.
fn piece_json(json: &[u8]) -> Result<()> {
    super::within_depth("piece", json)?;
    serde_json::from_slice::<Value>(json).map_err(|e| not_json(json, &e))?;
    Ok(())
}

/// The gallery of the folder `dir`, made if it is not there.
fn made_gallery(dir: &Path) -> Result<PathBuf> {
    let gallery = dir.join(GALLERY_DIR);
    if fsutil::real_dir(&gallery)?.is_none() {
        fsutil::create_private_dir(&gallery)?;
    }
    Ok(gallery)
}

/// One piece in a gallery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PieceInfo {
    /// Its number.
    pub piece: u64,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Its last modification.
    pub modified: Option<Timestamp>,
}

impl Workspaces {
    /// The path of piece `n` of `user`.
    pub fn piece_path(&self, user: u64, n: u64) -> PathBuf {
        self.dir(user).join(GALLERY_DIR).join(piece_file_name(n))
    }

    pub(super) fn read_piece(&self, dir: &Path, n: u64) -> Result<Value> {
        // The gallery itself must be a real folder: a symlink there is never followed.
        if fsutil::real_dir(&dir.join(GALLERY_DIR))?.is_none() {
            return Err(Error::not_found(format!("piece {n}")));
        }
        let path = dir.join(GALLERY_DIR).join(piece_file_name(n));
        let bytes = self
            .read_file(&path)?
            .ok_or_else(|| Error::not_found(format!("piece {n}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| unparsed(&path, &bytes, format!("not valid JSON ({e})")))
    }

    /// Saves a piece (any JSON document) as the next number, then updates `piece_count`; all
    /// under the user's exclusive lock. Creates the folder at the first write. Returns the
    /// number.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// # let alice = rk.users().create(redkeep::NewUser { email: "alice@example.com".into(), name: None, username: None, password: None, is_admin: false, invite: None })?.user;
    /// let n = rk.workspaces().save_piece(alice.id, br#"{"title": "sunset"}"#)?;
    /// assert_eq!(n, 1); // saved as gallery/piece_000001.json
    /// assert_eq!(rk.workspaces().read(alice.id)?.piece_count, 1);
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` when `json` is not JSON or is over the cap; `NotFound` for an unknown
    /// user; `DamagedFile` when workspace.json is unreadable (the piece is not written);
    /// `UnsafePath` for a folder of another account or a symlinked gallery.
    pub fn save_piece(&self, user: u64, json: &[u8]) -> Result<u64> {
        super::within_depth("piece", json)?;
        serde_json::from_slice::<Value>(json).map_err(|e| not_json(json, &e))?;
        let folder = self.created(user)?;
        // Refuse before writing anything if the document cannot be updated afterwards.
        let (mut doc, version) = self.read_doc_versioned(&folder.dir)?;
        let gallery = folder.dir.join(GALLERY_DIR);
        if fsutil::real_dir(&gallery)?.is_none() {
            fsutil::create_private_dir(&gallery)?;
        }
        let before = doc.piece_count;
        // The next number from this handle's memory of the gallery when it still holds (no
        // listing); written only as a new file, so a wrong memory can never replace a piece.
        let mut saved = None;
        let hinted = self
            .hinted(user, version, before)
            .filter(|&(n, _)| n <= super::MAX_JSON_PIECE)
            .filter(|_| json.len() as u64 <= self.max_bytes() && !self.no_replace_unsupported());
        if let Some((n, count)) = hinted {
            let piece = gallery.join(piece_file_name(n));
            match fsutil::write_private_new(&piece, json) {
                Ok(true) => saved = Some((n, count, piece)),
                // Taken after all (written by another build, or by hand): list the gallery.
                Ok(false) => self.forget(Some(user)),
                Err(Error::Io { source, .. })
                    if source.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
                {
                    // A filesystem that cannot rename without replacing (NFS): always list.
                    self.set_no_replace_unsupported();
                    self.forget(None);
                }
                Err(e) => {
                    // The number was free (the file is written only as a new one, under
                    // the folder's exclusive lock): a file there now is this call's, put in
                    // place before its folder's sync failed. It goes, as the count does not
                    // count it.
                    self.forget(Some(user));
                    if is_file(&piece) {
                        let _ = std::fs::remove_file(&piece);
                        let _ = fsutil::sync_this_dir(&gallery);
                    }
                    return Err(e);
                }
            }
        }
        let (n, count, piece, written) = match saved {
            Some((n, count, piece)) => (n, count, piece, Ok(())),
            None => {
                // The exclusive lock keeps the gallery as listed here until the count is
                // written. Numbers taken by anything (a symlink, a folder) or in the trash
                // are never handed out again.
                let existing = piece_numbers_tidying(&folder.dir)?;
                let highest = existing
                    .highest()
                    .max(trashed_numbers(&folder.dir)?.highest())
                    .unwrap_or(0);
                let n = highest
                    .checked_add(1)
                    // Past what a JSON client (and an export's line) reads exactly, a
                    // number would not come back: the same refusal as when numbers end.
                    .filter(|&n| n <= super::MAX_JSON_PIECE)
                    .ok_or_else(|| {
                        Error::denied(format!(
                            "this gallery has used every piece number: piece {highest} is in it or in its trash, and numbers are never given twice; move that piece (and its trashed copy) out of the folder by hand to save more"
                        ))
                    })?;
                let piece = gallery.join(piece_file_name(n));
                let written = self.write_bytes_tidied(&piece, json);
                (n, existing.files.len() as u64 + 1, piece, written)
            }
        };
        doc.piece_count = count;
        let version = match written.and_then(|()| self.write_doc(&folder.dir, &doc)) {
            Ok(version) => version,
            Err(e) => {
                // The piece this call wrote goes again unless the count did reach the disk
                // (only its directory sync failed), so both stay in step. Its number was free
                // (listed under the exclusive lock), so a file there now is this call's, even
                // when the write failed after putting it in place (its folder's sync).
                self.forget(Some(user));
                let landed = self
                    .read_doc(&folder.dir)
                    .is_ok_and(|d| d.piece_count != before);
                if landed {
                    return Err(saved_but(n, e));
                }
                if is_file(&piece) {
                    let _ = std::fs::remove_file(&piece);
                    let _ = fsutil::sync_this_dir(&gallery);
                }
                return Err(e);
            }
        };
        if let Some(next) = n.checked_add(1) {
            self.remember(user, version, next, count);
        }
        Ok(n)
    }

    /// Writes piece `n` as given (creating the folder), for imports; the document's count is
    /// left to the caller.
    ///
    /// # Errors
    /// `InvalidInput` when `json` is not JSON or is over the cap, or when `n` is 0 or past
    /// [`MAX_GIVEN_PIECE`](super::MAX_GIVEN_PIECE) (saves number on past the highest piece,
    /// so a gallery given the last numbers could save no more).
    pub fn put_piece(&self, user: u64, n: u64, json: &[u8]) -> Result<()> {
        super::piece_within(n, super::MAX_GIVEN_PIECE)?;
        self.put_piece_as_found(user, n, json)
    }

    /// [`Workspaces::put_piece`] for a number found in an export or an existing deployment,
    /// which keeps its pieces' numbers whatever they are.
    ///
    /// # Errors
    /// As [`Workspaces::put_piece`], but for the number.
    pub(crate) fn put_piece_as_found(&self, user: u64, n: u64, json: &[u8]) -> Result<()> {
        piece_json(json)?;
        let folder = self.created(user)?;
        self.forget(Some(user));
        let gallery = made_gallery(&folder.dir)?;
        self.write_bytes(&gallery.join(piece_file_name(n)), json)
    }

    /// Writes the pieces `pieces` gives into the gallery of `user` (creating the folder)
    /// under one lock, each with its number and dated by its time, without a sync each:
    /// none is durable until [`Workspaces::sync_users`] returns. For an adoption, whose store
    /// says it is unfinished until then. Pieces are taken one at a time: a gallery of any
    /// size is never held in memory. The document's count is left to the caller.
    ///
    /// # Errors
    /// The first error `pieces` gives; `InvalidInput` for a piece that is not JSON or is
    /// over the cap; `Io` when a piece cannot be written or dated.
    #[cfg(feature = "adopt")]
    pub(crate) fn put_pieces_unsynced(
        &self,
        user: u64,
        pieces: &mut dyn Iterator<Item = Result<FoundPiece>>,
    ) -> Result<()> {
        let folder = self.created(user)?;
        self.forget(Some(user));
        let gallery = made_gallery(&folder.dir)?;
        self.tidy_once(&gallery);
        for piece in pieces {
            let piece = piece?;
            piece_json(&piece.json)?;
            let path = gallery.join(piece_file_name(piece.n));
            self.writable_to(&path, &piece.json)?;
            fsutil::write_private_unsynced(&path, &piece.json)?;
            if let Some(at) = piece.modified {
                fsutil::set_modified(&path, at)?;
            }
        }
        Ok(())
    }

    /// The highest number among the removed pieces of `user` (in the gallery's `.trash/`),
    /// for exports: numbers are never given twice, and those are taken.
    ///
    /// # Errors
    /// As [`Workspaces::list_pieces`].
    pub(crate) fn highest_trashed(&self, user: u64) -> Result<Option<u64>> {
        let Some(folder) = self.folder(user, LockKind::Shared, false)? else {
            return Ok(None);
        };
        Ok(trashed_numbers(&folder.dir)?.highest())
    }

    /// Keeps piece number `n` of `user` from being given again, for imports of an export
    /// whose gallery had removed pieces up to `n` (their bytes stay out of an export): an
    /// empty `numbers_used_up_to_<n>` in the gallery's `.trash/` (named like no piece, so
    /// that no one takes it for the removed one), unless a removed piece holds
    /// that number or a higher one already, or a piece holds that very number. (A piece
    /// with a higher number keeps `n` from being given too, but without the trash entry
    /// the next export would not say `trashed_up_to`: export → import → export would not
    /// give the same lines.)
    ///
    /// # Errors
    /// `Io` when the trash entry cannot be written.
    pub(crate) fn keep_number_used(&self, user: u64, n: u64) -> Result<()> {
        let folder = self.created(user)?;
        self.forget(Some(user));
        let live = piece_numbers_tidying(&folder.dir)?;
        let trashed = trashed_numbers(&folder.dir)?.highest();
        if trashed.is_some_and(|t| t >= n) || live.files.contains(&n) || live.others.contains(&n) {
            return Ok(());
        }
        let trash = folder.dir.join(PIECE_TRASH);
        if fsutil::real_dir(&trash)?.is_none() {
            fsutil::create_private_dir(&trash)?;
        }
        super::names::keep_numbers_up_to(&trash, n)
    }

    /// The numbers and bytes of the pieces of `user`, under the shared lock, for exports.
    ///
    /// # Errors
    /// As [`Workspaces::list_pieces`].
    pub fn pieces(&self, user: u64, f: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        let Some(folder) = self.folder(user, LockKind::Shared, false)? else {
            return Ok(());
        };
        for n in piece_numbers(&folder.dir)? {
            let path = folder.dir.join(GALLERY_DIR).join(piece_file_name(n));
            if let Some(bytes) = self.read_file(&path)? {
                f(n, &bytes)?;
            }
        }
        Ok(())
    }

    /// Pieces of the user's gallery, ascending by number.
    ///
    /// # Errors
    /// `NotFound` for an unknown user; `UnsafePath` for a folder of another account.
    pub fn list_pieces(&self, user: u64) -> Result<Vec<PieceInfo>> {
        let Some(folder) = self.folder(user, LockKind::Shared, false)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for n in piece_numbers(&folder.dir)? {
            let m =
                fs::symlink_metadata(folder.dir.join(GALLERY_DIR).join(piece_file_name(n))).ok();
            out.push(PieceInfo {
                piece: n,
                size_bytes: m.as_ref().map_or(0, |m| m.len()),
                modified: m
                    .and_then(|m| m.modified().ok())
                    .and_then(Timestamp::of_system_time),
            });
        }
        Ok(out)
    }

    /// Reads piece `n`.
    ///
    /// # Errors
    /// `NotFound` when it does not exist; `DamagedFile` (naming the path) when it is not JSON;
    /// `TooLarge` when it is over the size cap; `NotStrictJson` when it holds `NaN` or
    /// `Infinity`; `TooDeep` when it nests deeper than [`super::MAX_DOC_DEPTH`].
    pub fn load_piece(&self, user: u64, n: u64) -> Result<Value> {
        let missing = || Error::not_found(format!("piece {n} of user {user}"));
        let folder = self
            .folder(user, LockKind::Shared, false)?
            .ok_or_else(missing)?;
        self.read_piece(&folder.dir, n).map_err(|e| match e {
            Error::NotFound { .. } => missing(),
            e => e,
        })
    }

    /// Moves piece `n` to the folder's `.trash/` and updates `piece_count`. Its number is not
    /// given again. [`Workspaces::trash`] lists it, dated now, and
    /// [`Workspaces::purge_trash`] deletes it for good.
    ///
    /// # Errors
    /// `NotFound` when it does not exist; `Io` when it cannot be moved or the count cannot
    /// be written (then the piece is put back), or, saying the piece was removed, when only
    /// the last sync failed.
    pub fn delete_piece(&self, user: u64, n: u64) -> Result<()> {
        let missing = || Error::not_found(format!("piece {n} of user {user}"));
        let folder = self
            .folder(user, LockKind::Exclusive, false)?
            .ok_or_else(missing)?;
        if fsutil::real_dir(&folder.dir.join(GALLERY_DIR))?.is_none() {
            return Err(missing());
        }
        let path = folder.dir.join(GALLERY_DIR).join(piece_file_name(n));
        let mut doc = self.read_doc(&folder.dir)?;
        if fsutil::open_regular(&path)?.is_none() {
            return Err(missing());
        }
        let trashed =
            fsutil::move_to_trash(&path, &folder.dir.join(PIECE_TRASH), &piece_file_name(n))?;
        let before = doc.piece_count;
        doc.piece_count = piece_numbers(&folder.dir)?.len() as u64;
        let Err(e) = self.write_doc(&folder.dir, &doc) else {
            // Dated at its removal, so it ages in the trash as a removed folder does (its
            // name keeps no time); not before, as a failed removal puts it back.
            date_moved(&trashed, self.now());
            return Ok(());
        };
        match self.read_doc(&folder.dir) {
            Ok(d) if d.piece_count == before => {
                // The count could not be written: the piece comes back, so both stay in step.
                if fsutil::rename_no_replace(&trashed, &path).unwrap_or(false) {
                    let _ = fsutil::sync_dir(&path);
                }
                Err(e)
            }
            // The count is in place (only its folder's sync failed): the piece stays removed.
            Ok(_) => Err(removed_but(n, e)),
            Err(_) => Err(e),
        }
    }
}

/// Why `json` is refused as a piece: serde's reason, and what to do about a UTF-8 byte order
/// mark (a text editor's, which JSON does not allow), which serde only calls "expected value".
fn not_json(json: &[u8], e: &serde_json::Error) -> Error {
    if json.starts_with(b"\xEF\xBB\xBF") {
        return Error::invalid(
            "piece",
            "it starts with a UTF-8 byte order mark (EF BB BF), which JSON does not allow; save \
             it as UTF-8 without one",
        );
    }
    if let Some((token, line, column)) = super::doc::non_finite_token(json) {
        return Error::invalid(
            "piece",
            format!(
                "it holds {token} at line {line} column {column}, which JSON does not allow \
                 (Python's `json.dumps` writes NaN and Infinity unless given \
                 `allow_nan=False`); write null (or a string) there instead"
            ),
        );
    }
    Error::invalid("piece", format!("it is not valid JSON ({e})"))
}

/// Whether a regular file is at `path` (not following a symlink).
fn is_file(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// The error of a removal whose piece is in the trash and whose count is written, but whose
/// last step (a folder's sync) failed: it says the piece was removed, so that nobody
/// removes it again (its number is never given again, so a second removal finds nothing).
fn removed_but(n: u64, e: Error) -> Error {
    e.io_context(|context| {
        format!(
            "piece {n} was removed, but {context} failed, so the removal may not survive a \
             crash (`redkeep check` tells); do not remove it again"
        )
    })
}

/// The error of a save whose piece and count are both in place, but whose last step (a
/// folder's sync) failed: it says the piece was saved, so that nobody saves it again.
fn saved_but(n: u64, e: Error) -> Error {
    e.io_context(|context| {
        format!(
            "piece {n} was saved, but {context} failed, so it may not survive a crash \
             (`redkeep check` tells); do not save it again"
        )
    })
}
