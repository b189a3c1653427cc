//! Gallery pieces: `gallery/piece_{n:06}.json`. A new piece takes the number after the
//! highest piece ever saved in the folder (removed pieces wait in `.trash/`), so a number is
//! never given twice, not even after a crash between the piece and the count.
//!
//! The count and that number are kept in `.pieces` (see `tally.rs`), never in a rewrite of
//! `workspace.json`: a save writes the piece as a new file that never replaces one, then
//! those few bytes, so it costs the same whatever the size of the gallery or the document.
//! Without a usable `.pieces`, a save lists the gallery (and removes crash leftovers); a
//! piece that is there after all sends it to the listing too.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::folders::{Workspaces, date_moved, unparsed};
use super::lock::LockKind;
use super::names::gallery_numbers;
use super::names::{GALLERY_DIR, PIECE_TRASH};
use super::names::{piece_file_name, piece_numbers, piece_numbers_tidying, trashed_numbers};
use super::tally::{Known, Tally, counted, known, read_tally};
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

    /// Saves a piece (any JSON document) as the next number, then updates the piece count;
    /// all under the user's exclusive lock. Creates the folder at the first write. Returns
    /// the number. The count is kept beside `workspace.json`, not in a rewrite of it, so a
    /// save costs the same with a large document; the document's `piece_count` catches up
    /// at its next write, and every read gives the gallery's count.
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
    /// `InvalidInput` when `json` is not JSON or is over the cap; `QuotaExceeded` when the
    /// gallery holds [`WorkspaceOptions::max_pieces`](super::WorkspaceOptions::max_pieces)
    /// pieces already, or `json` would take its bytes past
    /// [`max_gallery_bytes`](super::WorkspaceOptions::max_gallery_bytes) (nothing is
    /// written then); `NotFound` for an unknown
    /// user; `UnsafePath` for a folder of another account or a symlinked gallery; `Io` when
    /// the piece or the count cannot be written (then the piece is not kept), or, saying the
    /// piece was saved, when only the last sync failed.
    pub fn save_piece(&self, user: u64, json: &[u8]) -> Result<u64> {
        piece_json(json)?;
        self.within_cap(json)?;
        let folder = self.created(user)?;
        let dir = &folder.dir;
        let gallery = made_gallery(dir)?;
        let mut made = Made {
            tally: read_tally(dir)?,
            tally_written: false,
            doc: false,
            piece: None,
        };
        match self.save_steps(dir, &gallery, json, &mut made) {
            Ok(n) => Ok(n),
            Err(Step::Undone(e)) => {
                made.undo(self, dir, &gallery);
                Err(e)
            }
            Err(Step::Saved(e)) => Err(e),
        }
    }

    /// The steps of [`Workspaces::save_piece`] in the folder `dir` (held exclusively), each
    /// noted in `made` so that a failure before the count is written takes them back.
    fn save_steps(
        &self,
        dir: &Path,
        gallery: &Path,
        json: &[u8],
        made: &mut Made,
    ) -> std::result::Result<u64, Step> {
        // A folder without a document gets one first, as every folder of the layout has: a
        // small one, so this costs nothing like a rewrite.
        if !fsutil::is_there(&dir.join(super::WORKSPACE_FILE)).map_err(Step::Undone)? {
            made.doc = true;
            let doc = super::WorkspaceDoc {
                piece_count: self.piece_count_in(dir, None).map_err(Step::Undone)?,
                ..super::WorkspaceDoc::default()
            };
            self.write_doc(dir, &doc).map_err(Step::Undone)?;
        }
        // The next number and the count from `.pieces` when it gives them (no listing);
        // written only as a new file, so a count gone wrong can never replace a piece.
        let known = known(dir, made.tally)
            .map_err(Step::Undone)?
            .filter(|k| k.next <= super::MAX_JSON_PIECE && !self.no_replace_unsupported());
        let mut saved = None;
        if let Some(k) = known {
            // A count of an older build says no bytes: summed once, then kept in `.pieces`.
            let bytes = match k.bytes {
                Some(bytes) => bytes,
                None => gallery_numbers(dir).map_err(Step::Undone)?.bytes,
            };
            let bytes = match self.within_quota(k.count, bytes, json) {
                Ok(()) => bytes,
                // Bytes `.pieces` says fall behind pieces changed by hand or by another
                // program: summed from the gallery before they refuse a save.
                Err(Error::QuotaExceeded {
                    limit: "max_gallery_bytes",
                    ..
                }) if k.bytes.is_some() => {
                    let listed = gallery_numbers(dir).map_err(Step::Undone)?.bytes;
                    self.within_quota(k.count, listed, json)
                        .map_err(Step::Undone)?;
                    listed
                }
                Err(e) => return Err(Step::Undone(e)),
            };
            self.tidy_once(gallery);
            let n = k.next;
            let piece = gallery.join(piece_file_name(n));
            match fsutil::write_private_new(&piece, json) {
                Ok(true) => saved = Some((n, k.count, bytes)),
                // Taken after all (written by another build, or by hand): list the gallery.
                Ok(false) => {}
                Err(Error::Io { source, .. })
                    if source.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
                {
                    // A filesystem that cannot rename without replacing (NFS): always list.
                    self.set_no_replace_unsupported();
                }
                Err(e) => {
                    // The number was free (the file is written only as a new one, under
                    // the folder's exclusive lock): a file there now is this call's, put in
                    // place before its folder's sync failed.
                    made.piece = Some(piece);
                    return Err(Step::Undone(e));
                }
            }
        }
        let (n, count, bytes) = match saved {
            Some(saved) => saved,
            None => self.save_listed(dir, gallery, json, made)?,
        };
        let after = Tally::Known(Known {
            count: count.saturating_add(1),
            next: n.saturating_add(1),
            bytes: Some(bytes.saturating_add(json.len() as u64)),
        });
        if let Err(e) = self.write_tally(dir, after) {
            // The count reached the disk (only its folder's sync failed): the piece stays.
            if read_tally(dir).is_ok_and(|t| t == after) {
                return Err(Step::Saved(saved_but(n, e)));
            }
            // The piece goes again, so the count says what is there; if it cannot go, the
            // count still says number `n` is next, and piece `n` there tells every reader
            // to count the gallery.
            made.piece = Some(gallery.join(piece_file_name(n)));
            return Err(Step::Undone(e));
        }
        Ok(n)
    }

    /// Refuses to save `json` in a gallery of `count` pieces taking `bytes` when that takes
    /// it past a cap of the options (the first one met decides).
    ///
    /// # Errors
    /// `QuotaExceeded`, saying which cap and what the user can do.
    fn within_quota(&self, count: u64, bytes: u64, json: &[u8]) -> Result<()> {
        let (max_pieces, max_bytes) = self.gallery_caps();
        let kept = "nothing was saved and no piece was changed";
        if count >= max_pieces {
            return Err(Error::QuotaExceeded {
                limit: "max_pieces",
                reason: format!(
                    "this gallery holds {count} pieces and may hold at most {max_pieces}; \
                     {kept}: remove pieces to save new ones"
                ),
            });
        }
        let size = json.len() as u64;
        let total = bytes.saturating_add(size);
        if total > max_bytes {
            return Err(Error::QuotaExceeded {
                limit: "max_gallery_bytes",
                reason: format!(
                    "this gallery's pieces take {bytes} bytes and may take at most {max_bytes}, \
                     so a piece of {size} bytes does not fit; {kept}: remove pieces, or save \
                     a smaller one, to make room"
                ),
            });
        }
        Ok(())
    }

    /// Saves `json` as the number after the highest the gallery (and its trash) has used,
    /// listing them; returns that number, and the count and bytes before it.
    fn save_listed(
        &self,
        dir: &Path,
        gallery: &Path,
        json: &[u8],
        made: &mut Made,
    ) -> std::result::Result<(u64, u64, u64), Step> {
        // The exclusive lock keeps the gallery as listed here until the count is written.
        // Numbers taken by anything (a symlink, a folder) or in the trash are never handed
        // out again.
        let existing = piece_numbers_tidying(dir).map_err(Step::Undone)?;
        let highest = existing
            .highest()
            .max(trashed_numbers(dir).map_err(Step::Undone)?.highest())
            .unwrap_or(0);
        let n = highest
            .checked_add(1)
            // Past what a JSON client (and an export's line) reads exactly, a number would
            // not come back: the same refusal as when numbers end.
            .filter(|&n| n <= super::MAX_JSON_PIECE)
            .ok_or_else(|| {
                Step::Undone(Error::denied(format!(
                    "this gallery has used every piece number: piece {highest} is in it or in its trash, and numbers are never given twice; move that piece (and its trashed copy) out of the folder by hand to save more"
                )))
            })?;
        let count = existing.files.len() as u64;
        self.within_quota(count, existing.bytes, json)
            .map_err(Step::Undone)?;
        // The count as it stands and the number this save takes, before the piece: a crash
        // after the piece leaves piece `n` there, which every reader takes for a save
        // stopped part way (and counts the gallery).
        let before = Tally::Known(Known {
            count,
            next: n,
            bytes: Some(existing.bytes),
        });
        if made.tally != before {
            made.tally_written = true;
            self.write_tally(dir, before).map_err(Step::Undone)?;
        }
        let piece = gallery.join(piece_file_name(n));
        if let Err(e) = self.write_bytes_tidied(&piece, json) {
            // Its number was free (listed under the exclusive lock), so a file there now is
            // this call's, even when the write failed after putting it in place (its
            // folder's sync).
            made.piece = Some(piece);
            return Err(Step::Undone(e));
        }
        Ok((n, count, existing.bytes))
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
        self.tally_unknown(&folder.dir)?;
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
        self.tally_unknown(&folder.dir)?;
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
        let live = piece_numbers_tidying(&folder.dir)?;
        let trashed = trashed_numbers(&folder.dir)?.highest();
        if trashed.is_some_and(|t| t >= n) || live.files.contains(&n) || live.others.contains(&n) {
            return Ok(());
        }
        let trash = folder.dir.join(PIECE_TRASH);
        if fsutil::real_dir(&trash)?.is_none() {
            fsutil::create_private_dir(&trash)?;
        }
        // A count that says a lower number is next is made unknown first.
        if known(&folder.dir, read_tally(&folder.dir)?)?.is_some_and(|k| k.next <= n) {
            self.tally_unknown(&folder.dir)?;
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
        self.list_pieces_page(user, None, usize::MAX)
    }

    /// At most `limit` pieces of the user's gallery, ascending by number, from the first
    /// numbered past `after` (`None`: from the first): a page of a gallery too large to list
    /// in one answer. Only the page's pieces are looked at, past the listing of numbers.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// # let alice = rk.users().create(redkeep::NewUser { email: "alice@example.com".into(), name: None, username: None, password: None, is_admin: false, invite: None })?.user;
    /// for _ in 0..3 {
    ///     rk.workspaces().save_piece(alice.id, b"{}")?;
    /// }
    /// let page = rk.workspaces().list_pieces_page(alice.id, Some(1), 1)?;
    /// assert_eq!(page.iter().map(|p| p.piece).collect::<Vec<_>>(), [2]);
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Workspaces::list_pieces`].
    pub fn list_pieces_page(
        &self,
        user: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<PieceInfo>> {
        let Some(folder) = self.folder(user, LockKind::Shared, false)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let numbers = piece_numbers(&folder.dir)?;
        let page = numbers
            .into_iter()
            .filter(|&n| after.is_none_or(|after| n > after))
            .take(limit);
        for n in page {
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

    /// Moves piece `n` to the folder's `.trash/` and updates the piece count (kept beside
    /// `workspace.json`, as a save keeps it). Its number is not given again.
    /// [`Workspaces::trash`] lists it, dated now, and [`Workspaces::purge_trash`] deletes it
    /// for good. The `.trash/` keeps at most the gallery's caps' worth of removed pieces
    /// ([`WorkspaceOptions::max_pieces`](super::WorkspaceOptions::max_pieces),
    /// [`max_gallery_bytes`](super::WorkspaceOptions::max_gallery_bytes)): past them, the
    /// oldest removed are deleted for good, so saving and removing in turn cannot fill the
    /// disk.
    ///
    /// # Errors
    /// `NotFound` when it does not exist; `Io` when it cannot be moved or its count cannot
    /// be written (then the piece is put back), or, saying the piece was removed, when only
    /// the last sync failed.
    pub fn delete_piece(&self, user: u64, n: u64) -> Result<()> {
        let missing = || Error::not_found(format!("piece {n} of user {user}"));
        let folder = self
            .folder(user, LockKind::Exclusive, false)?
            .ok_or_else(missing)?;
        let removed = self.remove_piece(&folder.dir, user, n);
        if removed.is_ok() {
            self.bound_removed_pieces(user);
        }
        removed
    }

    /// [`Workspaces::delete_piece`] in the folder `dir`, held exclusively.
    fn remove_piece(&self, dir: &Path, user: u64, n: u64) -> Result<()> {
        let missing = || Error::not_found(format!("piece {n} of user {user}"));
        if fsutil::real_dir(&dir.join(GALLERY_DIR))?.is_none() {
            return Err(missing());
        }
        let path = dir.join(GALLERY_DIR).join(piece_file_name(n));
        let Some(file) = fsutil::open_regular(&path)? else {
            return Err(missing());
        };
        let size = file
            .metadata()
            .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?
            .len();
        drop(file);
        let tally = read_tally(dir)?;
        let known = known(dir, tally)?;
        // Unknown while the piece moves: a crash part way leaves the gallery to be counted.
        if let Err(e) = self.tally_unknown(dir) {
            self.restore_tally(dir, tally);
            return Err(e);
        }
        let trashed =
            match fsutil::move_to_trash(&path, &dir.join(PIECE_TRASH), &piece_file_name(n)) {
                Ok(trashed) => trashed,
                Err(e) => {
                    // Nothing moved: the count said before still holds.
                    self.restore_tally(dir, tally);
                    return Err(e);
                }
            };
        // Dated at its removal, so it ages in the trash as a removed folder does (its
        // name keeps no time); not before, as a failed removal puts it back.
        let dated = || date_moved(&trashed, self.now());
        let after = match known {
            Some(k) => Tally::Known(Known {
                count: k.count.saturating_sub(1),
                next: k.next,
                bytes: k.bytes.map(|bytes| bytes.saturating_sub(size)),
            }),
            None => counted(dir)?.tally(),
        };
        if after == Tally::Unknown {
            dated();
            return Ok(());
        }
        let Err(e) = self.write_tally(dir, after) else {
            dated();
            return Ok(());
        };
        // The count is in place (only its folder's sync failed): the piece stays removed.
        if read_tally(dir).is_ok_and(|t| t == after) {
            dated();
            return Err(removed_but(n, e));
        }
        // The count could not be written: the piece comes back, and the count as it was
        // (were either to fail, the count stays unknown, which every reader counts right).
        if fsutil::rename_no_replace(&trashed, &path).unwrap_or(false) {
            let _ = fsutil::sync_dir(&path);
            self.restore_tally(dir, tally);
        }
        Err(e)
    }
}

/// How a step of a save failed: before its count was written (what it made is taken back),
/// or after (the piece is saved; the error says so).
enum Step {
    Undone(Error),
    Saved(Error),
}

/// What a save has made so far, to take back when it fails before its count is written.
struct Made {
    /// `.pieces` as the save found it.
    tally: Tally,
    /// Whether the save wrote `.pieces` before its piece.
    tally_written: bool,
    /// Whether the save made the document (the folder had none).
    doc: bool,
    /// The piece, once the save may have put it in place.
    piece: Option<PathBuf>,
}

impl Made {
    /// Takes back what the save made in the folder `dir`, as far as it can: the folder is
    /// left as the save found it (what cannot be taken back is a state every reader counts
    /// right: `.pieces` names the piece's number as next).
    fn undo(&self, ws: &Workspaces, dir: &Path, gallery: &Path) {
        if let Some(piece) = &self.piece {
            remove_piece_file(piece, gallery);
        }
        if self.tally_written {
            ws.restore_tally(dir, self.tally);
        }
        if self.doc {
            let _ = std::fs::remove_file(dir.join(super::WORKSPACE_FILE));
            let _ = fsutil::sync_this_dir(dir);
        }
    }
}

/// Removes the file `piece` this call put in `gallery` (a regular file only), for a save
/// that fails after putting it there.
fn remove_piece_file(piece: &Path, gallery: &Path) {
    if is_file(piece) {
        let _ = std::fs::remove_file(piece);
        let _ = fsutil::sync_this_dir(gallery);
    }
}

impl Workspaces {
    /// The gallery's piece count in the folder `dir` (under its lock), whose document says
    /// `doc_count` (`None`: there is no document).
    ///
    /// # Errors
    /// `Io` when `.pieces` or the gallery cannot be read.
    pub(super) fn piece_count_in(&self, dir: &Path, doc_count: Option<u64>) -> Result<u64> {
        let tally = read_tally(dir)?;
        if let (Tally::Absent, Some(count)) = (tally, doc_count) {
            return Ok(count);
        }
        match known(dir, tally)? {
            Some(k) => Ok(k.count),
            None => Ok(piece_numbers(dir)?.len() as u64),
        }
    }

    /// Counts the gallery of `user` into `.pieces` when it has a count to be worked out (an
    /// import or an adoption wrote pieces), so that reads need not count it each time.
    ///
    /// # Errors
    /// `Io` when the gallery cannot be listed or `.pieces` cannot be written.
    pub(crate) fn settle_count(&self, user: u64) -> Result<()> {
        let Some(folder) = self.folder(user, LockKind::Exclusive, false)? else {
            return Ok(());
        };
        let tally = read_tally(&folder.dir)?;
        if tally == Tally::Absent || known(&folder.dir, tally)?.is_some() {
            return Ok(());
        }
        match counted(&folder.dir)?.tally() {
            Tally::Unknown => Ok(()),
            tally => self.write_tally(&folder.dir, tally),
        }
    }

    /// Puts back `.pieces` of the folder `dir` as a change that failed found it (`tally`),
    /// as far as it can: what cannot be put back leaves a count every reader takes right
    /// (unknown, or naming as next a number that is there).
    pub(super) fn restore_tally(&self, dir: &Path, tally: Tally) {
        match tally {
            Tally::Absent => {
                let _ = std::fs::remove_file(dir.join(super::names::TALLY_FILE));
                let _ = fsutil::sync_this_dir(dir);
            }
            found => {
                if read_tally(dir).is_ok_and(|now| now != found) {
                    let _ = self.write_tally(dir, found);
                }
            }
        }
    }

    /// Writes `tally` as the `.pieces` of the folder `dir` (held exclusively), atomically.
    ///
    /// # Errors
    /// `Io` when it cannot be written.
    pub(super) fn write_tally(&self, dir: &Path, tally: Tally) -> Result<()> {
        self.tidy_once(dir);
        fsutil::write_private(&dir.join(super::names::TALLY_FILE), &tally.bytes())
    }

    /// Writes the count as unknown before a change of the gallery of the folder `dir` other
    /// than a save, so that a crash part way leaves the gallery to be counted.
    ///
    /// # Errors
    /// `Io` when it cannot be written (nothing changed then).
    pub(super) fn tally_unknown(&self, dir: &Path) -> Result<()> {
        if read_tally(dir)? == Tally::Unknown {
            return Ok(());
        }
        self.write_tally(dir, Tally::Unknown)
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
