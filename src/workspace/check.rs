//! Checking the folders: each is served only to its owner, its files parse, and its piece
//! count (`.pieces`, or without one `piece_count`) matches the gallery; with repair, foreign folders go to the trash, counts are
//! fixed and a corrupt `workspace.json` is moved aside for a fresh one. Files that are whole
//! but cannot be used as they are (over the size limit, holding `NaN`, nested too deep) are
//! only reported.

use std::fs;

use serde::Serialize;

use super::doc::WorkspaceDoc;
use super::folders::{Marker, Workspaces, date_moved};
use super::lock::{self, LockKind};
use super::names::{
    GALLERY_DIR, LOCK_FILE, OWNER_FILE, PIECE_TRASH, TALLY_FILE, WORKSPACE_FILE, gallery_numbers,
    keep_numbers_up_to, kept_number, piece_file_name, trashed_number,
};
use super::tally::{Tally, counted, known, read_tally};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::fsutil;

/// The first file of the folder `dir` (its document or a gallery piece) last changed before
/// `since` (Unix seconds), if any: a sign the folder was there before the account made then.
fn older_than(dir: &std::path::Path, since: i64) -> Option<std::path::PathBuf> {
    let before = |path: &std::path::Path| {
        fs::symlink_metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX) < since)
    };
    let doc = dir.join(WORKSPACE_FILE);
    if before(&doc) {
        return Some(doc);
    }
    let mut pieces: Vec<_> = fs::read_dir(dir.join(GALLERY_DIR))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pieces.sort();
    pieces.into_iter().find(|p| before(p))
}

/// A problem found in the workspaces by [`Workspaces::check`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceProblem {
    /// The user directory concerned.
    pub user_id: u64,
    /// What is wrong (or, after a repair, `fixed: …`).
    pub problem: String,
}

impl Workspaces {
    /// Problems in the folders: folders of no user or another owner, unreadable files and
    /// a piece count (`.pieces`, or without one `piece_count`) disagreeing with the gallery,
    /// folders and files open to other users or shutting out their own owner (a `chmod 000`);
    /// each folder is checked under its lock. With `repair`, foreign folders go to the
    /// trash, counts are set to the gallery's, modes to 0700 and 0600, and a corrupt
    /// workspace.json is moved aside (for a fresh one, or, when only its count is bad, for
    /// the same one with the gallery's count); fixes are prefixed `fixed:`. A file over the
    /// size limit, holding `NaN` or `Infinity`, or nested deeper than redkeep reads, is not
    /// damaged: it is reported and left in place, whatever `repair` says.
    ///
    /// # Errors
    /// `Io` when the folder cannot be listed; the error of [`Owners`](super::Owners) when
    /// it cannot say whose the folders are (while a restore stopped part way, say).
    pub fn check(&self, repair: bool, now: Timestamp) -> Result<Vec<WorkspaceProblem>> {
        let mut out = Vec::new();
        // A user's place taken by a symlink or a file: every operation refuses it.
        for user in self.entries_named_by_id(false)? {
            let why = "it is not a real directory (a symlink or a file), so redkeep refuses it";
            let problem = if repair {
                match self.trash_folder(user, now) {
                    Ok(to) => format!(
                        "fixed: {why}; moved to {}",
                        to.map(|p| p.display().to_string()).unwrap_or_default()
                    ),
                    Err(e) => e.to_string(),
                }
            } else {
                format!("{why}; `redkeep check --repair` moves it to the trash")
            };
            out.push(WorkspaceProblem {
                user_id: user,
                problem,
            });
        }
        let users = self.user_ids()?;
        // Whose a folder is is asked of the store; when it refuses to say for any (a restore
        // stopped part way), that is said once, not for each folder.
        if !users.is_empty() {
            (self.owners)(0)?;
        }
        for user in users {
            let mut problem = |p: String| {
                out.push(WorkspaceProblem {
                    user_id: user,
                    problem: p,
                })
            };
            match self.check_one(user, repair, now) {
                Ok(found) => found.into_iter().for_each(&mut problem),
                Err(e) => problem(format!("{e}{}", owned_by_another(&self.dir(user), &e))),
            }
        }
        // Folders a crash left half-built (`users/.rk-tmp-*`) are the data dir check's to
        // report and remove once an hour old: a young one may be a folder being made.
        Ok(out)
    }

    fn check_one(&self, user: u64, repair: bool, now: Timestamp) -> Result<Vec<String>> {
        let dir = self.dir(user);
        let mut found = Vec::new();
        // A folder or file whose mode shuts out its own owner (a `chmod 000`, a copy made
        // with a wrong umask) keeps the application from its files, and every read below
        // would blame the first file it tries: said as the cause, and mended by a repair.
        // (A handle that may not write reports them as a check does.)
        let (tight, still_shut) = tight_modes(&dir, repair && self.writable().is_ok());
        found.extend(tight);
        if still_shut {
            return Ok(found);
        }
        let foreign = match (self.owners)(user)? {
            None => Some("the folder has no user (orphan)".to_string()),
            Some(owner) => match Workspaces::read_owner(&dir) {
                Ok(Marker::Of(m)) if m == owner => None,
                Ok(Marker::Of(_)) => {
                    Some("the folder belongs to another account (its owner marker differs)".into())
                }
                // Without a marker (a folder of an older build, or copied in by hand), the
                // folder's number is all that names its owner, and an earlier account with
                // the same number (a store reset or restored since) is as likely: the files
                // are never given away on a guess. Nor is the folder moved: the user, who
                // exists, would be left an empty workspace without a word. It is left,
                // unserved, and named with the command that gives it to the user; a file in
                // it older than their account is named as a sign it is another's. A marker
                // that names no account (garbled by a hand edit, a bad block or a copy cut
                // short) says as little, and is treated alike.
                Ok(unknown @ (Marker::Missing | Marker::Malformed)) => {
                    let what = if unknown == Marker::Missing {
                        "the folder has no owner marker".to_string()
                    } else {
                        format!(
                            "the folder's owner marker {} is malformed (it names no account)",
                            dir.join(OWNER_FILE).display()
                        )
                    };
                    let older = older_than(&dir, owner.since).map_or(String::new(), |file| {
                        format!(
                            ", and {} is older than their account (made {}), so it may be an \
                             earlier account's with the same number",
                            file.display(),
                            Timestamp(owner.since)
                        )
                    });
                    found.push(format!(
                        "{what}, so it is not served; it bears the number of user {user}, who \
                         exists{older}; a repair leaves it: if the files are user {user}'s, \
                         `redkeep workspace bind {user}` gives the folder to them; if not, \
                         move it out of {} (user {user} then starts an empty workspace)",
                        self.users_dir().display()
                    ));
                    return Ok(found);
                }
                // A marker that cannot be read (a failing disk, its permissions) says
                // nothing about whose folder this is: reported, and left, as a document or
                // piece that cannot be read is. Moving it took a live user's files out of
                // service, and the report then read "ok".
                Err(e) if unreadable(&e) => {
                    found.push(format!(
                        "{e}: whose folder this is cannot be told while its owner marker \
                         cannot be read, so a repair leaves it (mend the file's permissions \
                         or the disk, then check again){}",
                        owned_by_another(&dir, &e)
                    ));
                    return Ok(found);
                }
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(why) = foreign {
            if repair {
                let to = self.trash_folder(user, now)?;
                let to = to.map(|p| p.display().to_string()).unwrap_or_default();
                found.push(format!("fixed: {why}; moved to {to}"));
                return Ok(found);
            }
            found.push(format!(
                "{why}; `redkeep check --repair` moves it to the trash"
            ));
            return Ok(found);
        }
        // A lock file that is no regular file (another tool's lock, a symlink) refuses every
        // operation on the folder. Nobody can hold a lock on it, so it is moved without one
        // (a writer coming meanwhile makes a new lock file, and waits on it as usual); a
        // symlink is moved as a link, never followed.
        let lock_path = dir.join(LOCK_FILE);
        if let Some(odd) = lock::odd_lock(&lock_path) {
            if !repair {
                found.push(format!(
                    "{} is {odd}, not a regular file, so every operation on this folder \
                     refuses it; remove it (redkeep makes a new one), or run `redkeep check \
                     --repair`, which moves it into the folder's .trash",
                    lock_path.display()
                ));
                return Ok(found);
            }
            self.writable()?;
            let trash = dir.join(PIECE_TRASH);
            if let Err(Error::UnsafePath { .. }) = fsutil::real_dir(&trash) {
                found.push(renew_piece_trash(&dir, now)?);
            }
            let to =
                fsutil::move_to_trash(&lock_path, &trash, &format!("lock.not-a-file-{}", now.0))?;
            found.push(format!(
                "fixed: {} was {odd}, not a regular file, so the folder could not be locked; \
                 moved it to {}",
                lock_path.display(),
                to.display()
            ));
        }
        let kind = if repair {
            LockKind::Exclusive
        } else {
            LockKind::Shared
        };
        let Some(folder) = self.folder(user, kind, false)? else {
            return Ok(found);
        };
        // Folders 0700 and files 0600: one copied in by hand, or put back by another tool,
        // may let the machine's other users read the account's files.
        found.extend(loose_modes(&folder.dir, repair));
        // Temp files and folders of a write or an import killed part way. Every writer holds
        // the folder's lock, so under it whatever is there is a leftover, young or old;
        // without `repair` each is a note, not a problem.
        for dir in [folder.dir.clone(), folder.dir.join(GALLERY_DIR)] {
            // A symlinked gallery is never followed (it is reported below).
            if !fsutil::real_dir(&dir).is_ok_and(|d| d.is_some()) {
                continue;
            }
            for left in fsutil::leftovers(&dir) {
                let path = &left.path;
                let kind = if left.is_dir { "folder" } else { "file" };
                if repair {
                    let removed = if left.is_dir {
                        fs::remove_dir_all(path)
                    } else {
                        fs::remove_file(path)
                    };
                    found.push(match removed {
                        Ok(()) => format!(
                            "fixed: removed {}, a temp {kind} of an interrupted write",
                            path.display()
                        ),
                        Err(e) => format!(
                            "{} is a temp {kind} of an interrupted write; removing it failed: {e}",
                            path.display()
                        ),
                    });
                } else {
                    // Harmless (no reader takes it for a file of the folder), and gone at the
                    // user's next write: a note, so that `check` after a crash does not fail
                    // (and page whoever watches it) for it.
                    found.push(format!(
                        "{}{} is a temp {kind} of an interrupted write, which nothing reads: the \
                         user's next write removes it, `redkeep check --repair` now",
                        fsutil::NOTE,
                        path.display()
                    ));
                }
            }
        }
        // A `.trash` that is no real folder (a file, a symlink) refuses every save (the
        // numbers it keeps are looked at for each new piece) and every removal. Moved aside
        // into a fresh one, which keeps the highest number it recorded.
        let trash = folder.dir.join(PIECE_TRASH);
        if let Err(Error::UnsafePath { .. }) = fsutil::real_dir(&trash) {
            found.push(if repair {
                renew_piece_trash(&folder.dir, now)?
            } else {
                format!(
                    "{} is not a real folder (a symlink or a file), so every save and removal \
                     of a piece refuses it; `redkeep check --repair` moves it aside into a \
                     fresh one, keeping the piece numbers it recorded",
                    trash.display()
                )
            });
        }
        // A gallery that is a symlink (or a file) is refused by every piece operation. Moved
        // aside, the user starts an empty one; what a symlink pointed at is left alone.
        let gallery = folder.dir.join(GALLERY_DIR);
        if let Err(Error::UnsafePath { .. }) = fsutil::real_dir(&gallery) {
            if !repair {
                found.push(format!(
                    "{} is not a real folder (a symlink or a file), so every piece operation \
                     refuses it; `redkeep check --repair` moves it aside",
                    gallery.display()
                ));
                return Ok(found);
            }
            let to = fsutil::move_to_trash(
                &gallery,
                &folder.dir.join(PIECE_TRASH),
                &format!("gallery.not-a-folder-{}", now.0),
            )?;
            found.push(format!(
                "fixed: {} was not a real folder (a symlink or a file); moved it to {}",
                gallery.display(),
                to.display()
            ));
        }
        let numbers = gallery_numbers(&folder.dir)?;
        for &n in &numbers.others {
            let name = piece_file_name(n);
            let path = folder.dir.join(GALLERY_DIR).join(&name);
            if repair {
                let to = fsutil::move_to_trash(&path, &folder.dir.join(PIECE_TRASH), &name)?;
                date_moved(&to, now);
                found.push(format!(
                    "fixed: {} was not a regular file; moved it to {}",
                    path.display(),
                    to.display()
                ));
            } else {
                found.push(format!(
                    "{} is not a regular file (redkeep skips its number); `redkeep check --repair` moves it aside",
                    path.display()
                ));
            }
        }
        let mut count = 0u64;
        for n in numbers.files {
            match self.read_piece(&folder.dir, n) {
                Ok(_) => count += 1,
                Err(e) if repair && !left_in_place(&e) => {
                    let name = piece_file_name(n);
                    let to = fsutil::move_to_trash(
                        &folder.dir.join(GALLERY_DIR).join(&name),
                        &folder.dir.join(PIECE_TRASH),
                        &name,
                    )?;
                    // It ages in the trash from now, as a removed piece does: a purge of
                    // old entries must not take it at once for when it was last written.
                    date_moved(&to, now);
                    found.push(format!(
                        "fixed: {}; moved it to {}",
                        what_was_wrong(&e),
                        to.display()
                    ));
                }
                Err(e) => {
                    count += 1;
                    found.push(e.to_string());
                }
            }
        }
        let doc_path = folder.dir.join(WORKSPACE_FILE);
        let tally = read_tally(&folder.dir)?;
        if tally != Tally::Absent {
            found.extend(self.check_tally(&folder.dir, tally, repair)?);
        }
        match self.read_doc(&folder.dir) {
            // Whole files a lenient writer made, or larger than this handle's limit: never
            // moved aside, nor replaced by a fresh document (the canvas, the notes and the
            // application's fields are all in there).
            Err(
                e @ (Error::TooLarge { .. } | Error::NotStrictJson { .. } | Error::TooDeep { .. }),
            ) => {
                found.push(e.to_string());
            }
            Err(e) if unreadable(&e) => found.push(format!(
                "{e}: a file that cannot be read is not damaged, and a repair leaves it; give it back to the data dir's owner, or mend what keeps it from being read{}",
                owned_by_another(&folder.dir, &e)
            )),
            Err(e) if repair => {
                // A JSON object whose only fault is its count (`"piece_count": "1"`) keeps
                // everything else (canvas, notes, the application's fields) with the
                // gallery's count; anything else starts a fresh document.
                let bytes = match self.read_file(&doc_path) {
                    Ok(bytes) => bytes,
                    // Not to be read now (grown past the limit since, say): never replaced
                    // by a fresh document for that; left for the next check.
                    Err(again) => {
                        found.push(again.to_string());
                        return Ok(found);
                    }
                };
                let kept = bytes
                    .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                    .and_then(|v| match v {
                        serde_json::Value::Object(mut map) => {
                            map.insert("piece_count".into(), count.into());
                            WorkspaceDoc::from_map(map).ok()
                        }
                        _ => None,
                    });
                let aside = fsutil::move_to_trash(
                    &doc_path,
                    &folder.dir.join(PIECE_TRASH),
                    &format!("workspace.json.corrupt-{}", now.0),
                )?;
                let (doc, how) = match kept {
                    Some(doc) => (
                        doc,
                        format!(
                            "wrote it again with piece_count {count}, the gallery's, and every other field kept"
                        ),
                    ),
                    None => (
                        WorkspaceDoc {
                            piece_count: count,
                            ..WorkspaceDoc::default()
                        },
                        "started a fresh document".to_string(),
                    ),
                };
                self.write_json(&doc_path, &doc)?;
                found.push(format!(
                    "fixed: {}; moved it to {} and {how}",
                    what_was_wrong(&e),
                    aside.display()
                ));
            }
            Err(e @ crate::Error::DamagedFile { .. }) => found.push(e.to_string()),
            Err(e) => found.push(format!(
                "{e} (`redkeep check --repair` moves it aside and starts a fresh document)"
            )),
            // With a `.pieces`, the count is there, and the document's own catches up at
            // its next write (a save does not rewrite it).
            Ok(mut doc)
                if tally == Tally::Absent && doc_path.exists() && doc.piece_count != count =>
            {
                if repair {
                    let old = doc.piece_count;
                    doc.piece_count = count;
                    self.write_json(&doc_path, &doc)?;
                    found.push(format!(
                        "fixed: piece_count {old} set to the gallery's {count}"
                    ));
                } else {
                    found.push(format!(
                        "piece_count is {} but the gallery holds {count} pieces",
                        doc.piece_count
                    ));
                }
            }
            // Gone from a folder whose gallery holds pieces (redkeep writes it with the
            // folder and never removes it): a removal by hand, or a restore of part of the
            // folder. Nothing to repair (it reads as an empty document, as the user's next
            // save writes it), but the canvas and notes it held are lost unless put back.
            Ok(_) if count > 0 && fs::symlink_metadata(&doc_path).is_err() => {
                found.push(format!(
                    "{}{} is missing though the gallery holds {count} piece(s): the user's \
                     document reads as an empty one (no canvas, no notes); if it was removed \
                     by mistake, put it back from a backup",
                    fsutil::NOTE,
                    doc_path.display()
                ));
            }
            Ok(_) => {}
        }
        Ok(found)
    }
}

impl Workspaces {
    /// The problem with the `.pieces` of the folder `dir` (held, exclusively with `repair`),
    /// which says `tally`, if its count is not the gallery's or its next number is taken;
    /// with `repair`, set from the gallery. Unknown, or left by a save stopped after its
    /// piece, it is not wrong: every reader counts the gallery then.
    fn check_tally(
        &self,
        dir: &std::path::Path,
        tally: Tally,
        repair: bool,
    ) -> Result<Option<String>> {
        let Some(k) = known(dir, tally)? else {
            return Ok(None);
        };
        let listed = counted(dir)?;
        // Bytes alone are not checked: pieces rewritten by hand or by another program
        // change them, and a save sums the gallery before they refuse it.
        if k.count == listed.count && listed.next.is_some_and(|free| k.next >= free) {
            return Ok(None);
        }
        let path = dir.join(TALLY_FILE);
        let free_text = listed.next.map_or("none".to_string(), |n| n.to_string());
        let said = format!(
            "{} pieces{} with number {} next",
            k.count,
            k.bytes
                .map_or(String::new(), |bytes| format!(" of {bytes} bytes")),
            k.next
        );
        let real = format!("{} pieces of {} bytes", listed.count, listed.bytes);
        if !repair {
            return Ok(Some(format!(
                "{} says {said}, but the gallery holds {real} (the next free number is \
                 {free_text}); `redkeep check --repair` sets it from the gallery",
                path.display()
            )));
        }
        self.write_tally(dir, listed.tally())?;
        Ok(Some(format!(
            "fixed: {} said {said}; set it to the gallery's {real} with number {free_text} next",
            path.display()
        )))
    }
}

/// Replaces the `.trash` of the folder `dir` (held exclusively), a file or a symlink, with a
/// fresh folder, and moves it into that folder; returns the `fixed:` line. The highest piece
/// number it recorded (read through a symlink to a folder, names only: removed pieces and
/// number markers) is kept there by an empty `numbers_used_up_to_<n>`, as an import keeps
/// one, so that no number is given twice.
fn renew_piece_trash(dir: &std::path::Path, now: Timestamp) -> Result<String> {
    let trash = dir.join(PIECE_TRASH);
    let recorded = fs::read_dir(&trash).ok().and_then(|entries| {
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                trashed_number(name).or_else(|| kept_number(name))
            })
            .max()
    });
    let name = format!("trash.not-a-folder-{}", now.0);
    let aside = dir.join(format!(".{name}"));
    if !fsutil::rename_no_replace(&trash, &aside)? {
        return Err(Error::unsafe_path(
            &trash,
            format!(
                "it is not a real folder, and {} is taken, so it cannot be moved aside; move \
                 one of them out of the folder by hand",
                aside.display()
            ),
        ));
    }
    fsutil::create_private_dir(&trash)?;
    fsutil::sync_dir(&trash)?;
    if let Some(n) = recorded {
        keep_numbers_up_to(&trash, n)?;
    }
    let to = fsutil::move_to_trash(&aside, &trash, &name)?;
    let kept = recorded.map_or(String::new(), |n| {
        format!(", keeping piece number {n} (the highest it recorded) used")
    });
    Ok(format!(
        "fixed: {} was not a real folder (a symlink or a file); moved it to {} in a fresh \
         one{kept}",
        trash.display(),
        to.display()
    ))
}

/// The entries under `dir` (itself included) open to other users, as one problem line (or,
/// with `repair`, made private and said as `fixed: …`, with a line for any left open).
fn loose_modes(dir: &std::path::Path, repair: bool) -> Vec<String> {
    let mut loose = loose_entries(dir);
    let mut found = Vec::new();
    // Open to the group only, to a checker who reads them as a member of the group: the
    // way in of a read-only operator, said as a note (`fsutil::NOTE`), not a problem.
    if let Some((me, owner)) = fsutil::group_reader(dir) {
        let (group, other): (Vec<_>, Vec<_>) =
            loose.into_iter().partition(|(_, mode)| mode & 0o007 == 0);
        loose = other;
        if let Some((first, mode)) = group.first() {
            found.push(format!(
                "{}{} entr(ies) are open to their group (such as {}, mode {mode:04o}), which \
                 lets this user (uid {me}) read them though uid {owner} owns them; if no one \
                 else of the group should, the owner's `redkeep check --repair` makes folders \
                 0700 and files 0600",
                fsutil::NOTE,
                group.len(),
                first.display()
            ));
        }
    }
    let Some((first, mode)) = loose.first() else {
        return found;
    };
    let n = loose.len();
    if !repair {
        found.push(format!(
            "{n} entr(ies) are open to other users of this machine (such as {}, mode \
             {mode:04o}); `redkeep check --repair` makes folders 0700 and files 0600",
            first.display()
        ));
        return found;
    }
    for (path, _) in &loose {
        if let Err(e) = restrict_here(path) {
            found.push(format!("making {} private: {e}", path.display()));
        }
    }
    let left = loose_entries(dir).len();
    found.push(if left == 0 {
        format!(
            "fixed: {n} entr(ies) were open to other users (such as {}, mode {mode:04o}); made \
             folders 0700 and files 0600",
            first.display()
        )
    } else {
        format!(
            "{left} entr(ies) are still open to other users (another user owns them, so their \
             mode cannot be changed from here)"
        )
    });
    found
}

impl Workspaces {
    /// Entries of the trash open to other users of this machine (a folder put there by
    /// hand, say): the trash holds deleted users' files. With `repair`, folders become 0700
    /// and files 0600. Lines as [`Workspaces::check`] gives them (`fixed: …` when mended).
    pub(crate) fn check_trash_modes(&self, repair: bool) -> Vec<String> {
        let trash = self.trash_dir();
        // A trash that is a symlink is refused by every operation; nothing of it is read.
        match fsutil::real_dir(&trash) {
            Ok(Some(_)) => loose_modes(&trash, repair),
            _ => Vec::new(),
        }
    }
}

/// The folder `dir` and the folders and files below it whose mode lets other users in
/// (group or others bits), with that mode; symlinks are not followed nor counted.
fn loose_entries(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    entries_whose_mode(dir, |_, mode| mode & 0o077 != 0)
}

/// The folder `dir` and the folders and files below it (those that can be listed) whose
/// mode keeps their owner from reading them (a folder without `r-x`, a file without `r`
/// for its owner), with that mode; symlinks are not followed nor counted. (Reading is what
/// is needed: a data dir made read-only on purpose, folders 0500 and files 0400, shuts no
/// one out.)
fn tight_entries(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    entries_whose_mode(dir, |is_dir, mode| {
        let needs = if is_dir { 0o500 } else { 0o400 };
        mode & needs != needs
    })
}

/// The folder `dir` and the folders and files below it (those that can be listed) for whose
/// permission bits `wrong(is_dir, mode)` holds, with that mode, sorted; symlinks and other
/// kinds of entries are not followed nor counted.
fn entries_whose_mode(
    dir: &std::path::Path,
    wrong: impl Fn(bool, u32) -> bool,
) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        let Ok(meta) = fs::symlink_metadata(&at) else {
            continue;
        };
        if !(meta.is_dir() || meta.is_file()) {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if wrong(meta.is_dir(), mode) {
            out.push((at.clone(), mode));
        }
        if meta.is_dir()
            && let Ok(entries) = fs::read_dir(&at)
        {
            todo.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out.sort();
    out
}

/// The entries under `dir` (itself included) whose mode shuts out their own owner (a
/// folder without `r-x`, a file without `r` for its owner), as problem lines (with
/// `repair`, those of this user set to 0700 and 0600 and said as `fixed: …`), and whether
/// any is left so (the rest of the folder's check would stop at it, without a word of why).
fn tight_modes(dir: &std::path::Path, repair: bool) -> (Vec<String>, bool) {
    let mut found = Vec::new();
    let mut tight = tight_entries(dir);
    let Some((first, mode)) = tight.first().cloned() else {
        return (found, false);
    };
    let mut n = tight.len();
    if repair {
        // A folder opened up may show entries of its own that are shut too: each pass
        // takes those not seen before, until none is new.
        let mut seen = std::collections::BTreeSet::new();
        loop {
            let new: Vec<_> = tight
                .iter()
                .filter(|(p, _)| !seen.contains(p))
                .cloned()
                .collect();
            if new.is_empty() {
                break;
            }
            for (path, _) in new {
                if let Err(e) = restrict_here(&path) {
                    found.push(format!("setting the mode of {}: {e}", path.display()));
                }
                seen.insert(path);
            }
            tight = tight_entries(dir);
        }
        n = seen.len();
        let left = tight.len();
        found.push(if left == 0 {
            format!(
                "fixed: {n} entr(ies) shut out their own owner (such as {}, mode {mode:04o}), \
                 so the application could not read them; made folders 0700 and \
                 files 0600",
                first.display()
            )
        } else {
            format!(
                "{left} of {n} entr(ies) that shut out their own owner still do (such as {}): \
                 another user owns them, or changing the mode failed (said above), so nothing \
                 else in the folder is checked until then; `chmod -R u+rwX {}` as their owner \
                 or root opens them again",
                tight[0].0.display(),
                dir.display()
            )
        });
    } else {
        found.push(format!(
            "{n} entr(ies) shut out their own owner (such as {}, mode {mode:04o}), so the \
             application cannot read them, and nothing else in the folder is checked until \
             then; `redkeep check --repair` makes folders 0700 and files 0600",
            first.display(),
        ));
    }
    (found, !tight.is_empty())
}

/// Makes the folder or file `path` private (0700 or 0600) when this user owns it, through a
/// descriptor opened without following a symlink: one swapped in since the listing is
/// refused, never followed to a file elsewhere. Left as it is when another user owns it.
/// An entry whose mode shuts out its owner (a 000 lets them open it no other way) is
/// opened as a path only, and changed through its descriptor's name in /proc (an `O_PATH`
/// descriptor takes no `fchmod`).
fn restrict_here(path: &std::path::Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let open = |how| {
        rustix::fs::open(
            path,
            how | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let (fd, by_path) = match open(OFlags::RDONLY | OFlags::NONBLOCK) {
        Ok(fd) => (fd, false),
        Err(rustix::io::Errno::ACCESS) => (open(OFlags::PATH)?, true),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Ok(());
    }
    let mode = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::Directory => Mode::from_raw_mode(0o700),
        rustix::fs::FileType::RegularFile => Mode::from_raw_mode(0o600),
        _ => return Ok(()),
    };
    if by_path {
        let at = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        rustix::fs::chmod(at.as_str(), mode)?;
    } else {
        rustix::fs::fchmod(&fd, mode)?;
    }
    Ok(())
}

/// Whether a repair leaves the file `e` is about in place, reported: one that cannot be read
/// (its content may be whole), one over the size limit, one holding `NaN` or `Infinity`, one
/// nested deeper than redkeep reads.
fn left_in_place(e: &crate::Error) -> bool {
    unreadable(e)
        || matches!(
            e,
            crate::Error::TooLarge { .. }
                | crate::Error::NotStrictJson { .. }
                | crate::Error::TooDeep { .. }
        )
}

/// For a permission refused in the folder `dir`: the entries of it (itself, its files, its
/// gallery's) that belong to another user than this process's, as a clause naming the cause
/// and the way out; empty when `e` is no refusal or every entry is this user's. A command run
/// as root while the application was stopped leaves files only root may open.
fn owned_by_another(dir: &std::path::Path, e: &Error) -> String {
    use std::os::unix::fs::MetadataExt;
    if !e.is_permission_denied() {
        return String::new();
    }
    let me = rustix::process::geteuid().as_raw();
    let mut paths = vec![dir.to_path_buf()];
    for sub in [dir.to_path_buf(), dir.join(GALLERY_DIR)] {
        if let Ok(entries) = fs::read_dir(&sub) {
            let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            paths.extend(names);
        }
    }
    let others: Vec<(std::path::PathBuf, u32)> = paths
        .into_iter()
        .filter_map(|p| {
            let uid = fs::symlink_metadata(&p).ok()?.uid();
            (uid != me).then_some((p, uid))
        })
        .collect();
    let Some((first, uid)) = others.first() else {
        return String::new();
    };
    let more = match others.len() {
        1 => String::new(),
        n => format!(" (and {} more entries of the folder)", n - 1),
    };
    format!(
        "; the cause: {} belongs to uid {uid}{more}, not to uid {me}, which runs this check \
         (a command run as uid {uid}, root say, while the application was stopped leaves such \
         files); if uid {me} is the application's, `chown -R {me} {}` as root gives them back",
        first.display(),
        dir.display()
    )
}

/// Whether `e` says a file could not be read (permission denied, an I/O error, no
/// descriptors left), not that what was read is damaged: such a file is not moved aside, as
/// its content may be whole.
fn unreadable(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Io { .. })
}

/// What was wrong with a file that a repair moved aside, without the advice to repair it.
fn what_was_wrong(e: &crate::Error) -> String {
    match e {
        crate::Error::DamagedFile { path, reason } => {
            format!("{} was damaged ({reason})", path.display())
        }
        e => e.to_string(),
    }
}
