//! `redkeep move`: copies a whole store to another place, possibly on another engine (the redb
//! file of a data dir, or a PostgreSQL server), from one snapshot; then checks the copy and
//! compares the entry count of every table.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::files::{Made, folders_of, not_real_folders, open_file_store, open_url_store};
use crate::error::{Error, Result};
use crate::handle::{Options, Redkeep, SCHEMA_VERSION, STORE_FILE, WORKSPACES_DIR};
use crate::store::{CheckReport, MOVE_UNFINISHED, Meta, Mode, Source, Store, StoreOptions};

/// What `move` did.
#[derive(Debug, Clone, Serialize)]
pub struct MoveReport {
    /// The store copied (a file, or a server and schema without password).
    pub from: String,
    /// The store written.
    pub to: String,
    /// Entries per table, the same in both.
    pub tables: Vec<(String, u64)>,
    /// Workspace folders copied (0 when both stores use the same data dir).
    pub folders: u64,
    /// Entries of those folders not copied: symlinks and special files (`users/{id}/…`,
    /// and `users/{id}` in a folder's place), which redkeep never follows, and entries of
    /// `users/` no user id names (`users/{name}`: an operator's folder).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(serialize_with = "crate::fsutil::lossy::list")]
    pub not_kept: Vec<PathBuf>,
    /// Entries of the workspace trash copied (deleted users' folders, the folders a reset or
    /// restore replaced), so the new data dir can still bring them back; 0 when both stores
    /// use the same data dir. Symlinks and special files in them are named in `not_kept`.
    #[serde(default)]
    pub trash_entries: u64,
    /// Where the redb file of the data dir went after a move from it to a server (which
    /// keeps using the data dir's folders): renamed
    /// (`redkeep.redb.moved-to-postgres-<time>`), so that no command run without the store
    /// URL opens it by mistake; `None` for other moves, which leave the source as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_kept_as: Option<PathBuf>,
    /// Whether the source, on a server, was marked as moved after a move to another server
    /// on the same data dir's folders: every open of it is then refused, naming the new
    /// store. Other moves leave the source as it was.
    #[serde(default)]
    pub source_marked_moved: bool,
    /// `check` on the new store.
    pub check: CheckReport,
    /// The problems of `check` that the source already had before the move (a move with
    /// [`move_store_with_problems`] carries them over unchanged); the others are new.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub carried_over: Vec<String>,
}

impl MoveReport {
    /// Whether the copy has no problem the source did not have before the move.
    pub fn copy_sound(&self) -> bool {
        self.check
            .problems
            .iter()
            .all(|p| self.carried_over.contains(p))
    }
}

/// Where a move goes: a data dir (its redb file) or a store URL. `postgres:` or
/// `postgresql:` without `//` (`postgres:/app:pw@db/app`) is a malformed URL, refused as
/// such (without repeating it), not a folder to make.
fn is_url(to: &str) -> bool {
    #[cfg(feature = "postgres")]
    if crate::store::is_postgres_url(to) {
        return true;
    }
    let scheme = |s: &str| {
        to.get(..s.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(s))
    };
    to.contains("://") || scheme("postgres:") || scheme("postgresql:")
}

/// Copies the store of `data_dir` (its redb file, or the store at `store_url`) to `to`: a
/// data dir whose store does not exist yet, or a PostgreSQL URL whose schema holds nothing
/// yet. Refused while an application has the source or the target open. The copy is made
/// from one snapshot; the id sequences are carried over; then `check` runs on the target
/// and every table's entry count is compared. When `to` is another data dir, the workspace
/// folders and the workspace trash are copied there too (a PostgreSQL target keeps using
/// `data_dir`'s folders). The store's safety copies (`redkeep.redb.pre-…`) stay where they
/// are: undo commands name them by path.
///
/// `check` runs on the source first, under the same hold, before anything is made: a source
/// with problems is refused (see [`move_store_with_problems`]).
///
/// # Errors
/// `InUse` when a process holds either store; `Denied` when the source has problems (nothing
/// was made) or the target already holds records; `Invariant` when the counts differ after
/// the copy; engines' errors.
pub fn move_store(
    data_dir: &Path,
    store_url: Option<&str>,
    to: &str,
    options: Options,
) -> Result<MoveReport> {
    move_checked(data_dir, store_url, to, options, false)
}

/// [`move_store`] of a store whose `check` finds problems: they are carried over unchanged
/// and listed in [`MoveReport::carried_over`]; a problem the copy has and the source did
/// not is still one ([`MoveReport::copy_sound`]).
///
/// # Errors
/// As [`move_store`], but for the source's problems.
pub fn move_store_with_problems(
    data_dir: &Path,
    store_url: Option<&str>,
    to: &str,
    options: Options,
) -> Result<MoveReport> {
    move_checked(data_dir, store_url, to, options, true)
}

/// [`move_store`]; with `with_problems`, a source with problems is moved as it is.
fn move_checked(
    data_dir: &Path,
    store_url: Option<&str>,
    to: &str,
    options: Options,
    with_problems: bool,
) -> Result<MoveReport> {
    let to = to.trim();
    if to.is_empty() {
        return Err(Error::invalid(
            "to",
            "give the target: a new data dir, or a postgres:// URL",
        ));
    }
    if store_url.is_none() && !is_url(to) && same_dir(data_dir, Path::new(to)) {
        return Err(Error::invalid(
            "to",
            format!(
                "{to} is the data dir being moved, so the target would be the store being \
                 moved; choose another data dir, or a postgres:// URL; nothing was changed"
            ),
        ));
    }
    // Inside the source, the copy of its folders would copy itself, level under level.
    if !is_url(to) && crate::fsutil::within(data_dir, Path::new(to)) {
        return Err(Error::invalid(
            "to",
            format!(
                "{to} is inside the data dir being moved ({}); give a data dir outside it, or a \
                 postgres:// URL",
                data_dir.display()
            ),
        ));
    }
    // A move into a server stopped (a crash, a kill) after it retired this data dir's file
    // and before it cleared the target's mark: the same move puts the file back, and runs
    // again.
    if store_url.is_none() && is_url(to) {
        resume_retired(data_dir, to)?;
    }
    // A move into this data dir that stopped after its records (a crash, a kill) left its
    // mark there: the same move may run again, and replaces what the stopped one wrote.
    let stopped_from = if is_url(to) {
        None
    } else {
        unfinished_move(Path::new(to))
    };
    if !is_url(to) && !same_dir(data_dir, Path::new(to)) && stopped_from.is_none() {
        super::files::refuse_taken_folders(Path::new(to), "move")?;
        super::guards::refuse_foreign_folder(Path::new(to), "move")?;
    }
    if !is_url(to) && Path::new(to).is_symlink() {
        return Err(Error::invalid(
            "to",
            format!("{to} is a symlink; give the target data dir itself (a new folder)"),
        ));
    }
    // A new data dir is made in a folder that exists: a mistyped path makes no tree.
    let target_before = (!is_url(to)).then(|| Made::before(Path::new(to)));
    if let Some(t) = &target_before
        && !t.existed
    {
        crate::fsutil::existing_folder_of(Path::new(to), "to", "copy")?;
    }
    let source = match store_url {
        Some(url) => open_url_store(url, false)?,
        None => {
            let db = data_dir.join(STORE_FILE);
            if !crate::fsutil::is_there(&db)? {
                if let Some(moved) = crate::handle::moved_away(data_dir) {
                    return Err(moved);
                }
                return Err(Error::NotInitialized { path: db });
            }
            open_source_file(&db)?
        }
    };
    super::guards::refuse_stopped_operation(&source)?;
    // The folders move from the data dir given: from a server, that must be the data dir
    // the application uses. One with no workspace folders at all beside a store holding
    // users is another folder (run from elsewhere): the accounts would arrive without
    // their files.
    if store_url.is_some()
        && !is_url(to)
        && crate::fsutil::real_dir(&data_dir.join(WORKSPACES_DIR))?.is_none()
        && source.read(|tx| Ok(tx.table::<crate::User>().count()? > 0))?
    {
        return Err(Error::invalid(
            "data_dir",
            format!(
                "{} holds no workspace folders, but the store on {} holds users; give the \
                 data dir the application uses (`--data-dir`), whose folders move with the \
                 store; nothing was copied",
                data_dir.display(),
                source.location()
            ),
        ));
    }
    if let Some(from) = &stopped_from
        && !same_source(from, &source.location())
    {
        return Err(refuse_other_move(to, from));
    }
    // The copy is checked as a current store: an older one would read as damaged there.
    if let Some(found) = source.schema_version()?
        && found < SCHEMA_VERSION
    {
        return Err(Error::MigrationNeeded {
            found,
            needed: SCHEMA_VERSION,
        });
    }
    // Whether this move opened the target (a target another process holds is left as it is).
    let opened = std::cell::Cell::new(false);
    // The target's schema, once it is opened on a server (for the way out of a stopped move).
    let target_schema = std::cell::RefCell::new(None);
    // Whether the copy is whole (the target's mark cleared): a failure after that is not one
    // of the copy.
    let whole = std::cell::Cell::new(false);
    // A redb file is held by its open (read-only, exclusive); a server store takes its
    // lock exclusively for the move.
    let body = || {
        // A target that is the source named another way is said as such first (it is the
        // argument to fix), and without making anything there.
        if store_url.is_some()
            && is_url(to)
            && let Err(e) = open_url_store(to, false)
            && crate::store::held_alone_here(&e)
        {
            return Err(the_source_itself(to));
        }
        // The source is checked before anything is made, under the hold the copy is made
        // with: a store that already fails `check` is not moved unasked (its problems would
        // read as the move's, after the source was retired), and with `with_problems` what
        // it had is told apart from what the copy may add.
        let before = Redkeep::over_held(data_dir, source.clone(), options.clone())?.check(false)?;
        if !before.ok {
            // `check` names what it could not read as a problem: when the server went away,
            // the move stops as such (and says what is left), not as a store with problems.
            source.still_alone("be moved")?;
            source.read(|tx| tx.table_names().map(drop))?;
        }
        if !before.ok && !with_problems {
            return Err(source_has_problems(&before.problems));
        }
        // Made without a schema version: its first write says it is being filled.
        let (target, target_dir, target_url) = if is_url(to) {
            let target = open_target_url(to).map_err(|e| {
                if crate::store::held_alone_here(&e) {
                    the_source_itself(to)
                } else {
                    e
                }
            })?;
            target_schema.replace(target.schema().map(str::to_string));
            (target, data_dir.to_path_buf(), Some(to))
        } else {
            let dir = PathBuf::from(to);
            crate::fsutil::create_private_dir(&dir)?;
            let store = Store::open_unchecked(
                dir.join(STORE_FILE),
                &StoreOptions {
                    schema_version: SCHEMA_VERSION,
                    allow_outdated: true,
                    copies_at: None,
                    ..StoreOptions::default()
                },
            )?;
            (store, dir, None)
        };
        if target.location() == source.location() {
            return Err(the_source_itself(to));
        }
        // A file store is named by its real path: the same move, run again from another
        // folder or through another spelling, finds its mark.
        let from = source.location();
        let from = std::fs::canonicalize(&from).map_or(from, |p| p.display().to_string());
        let (tables, folders, kept, marked) = target.alone_with("receive a move", || {
            // Only now is the target this move's: before, an `InUse` means another process
            // holds it, and what is there is that process's, never to be taken back.
            opened.set(true);
            let resuming = match target.read(|tx| tx.meta(MOVE_UNFINISHED))? {
                Some(mark) if same_source(&String::from_utf8_lossy(&mark), &from) => true,
                Some(mark) => {
                    return Err(refuse_other_move(
                        &target.location(),
                        &String::from_utf8_lossy(&mark),
                    ));
                }
                None => false,
            };
            if !resuming && !holds_nothing_made(&target)? {
                return Err(Error::denied(format!(
                    "{} already holds records; move fills a new store only (one that holds \
                     no more than `redkeep init --no-admin` or `redkeep reset` leave): choose \
                     another data dir or schema, or empty it with `redkeep reset --force`",
                    target.location()
                )));
            }
            if let Some(found) = target.schema_version()?
                && found > SCHEMA_VERSION
            {
                return Err(Error::NewerSchema {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            // The target says it is being filled before it holds any record, and until the
            // move has checked that the copy is whole: a move cut off part way (a kill, a
            // server stopped) leaves a target that `status` and `check` name as such (never
            // one that passes for a new, empty store), and the same move may run again.
            let mark = (MOVE_UNFINISHED, from.as_bytes());
            target.write_here(|tx| {
                if tx.schema_version()?.is_none() {
                    tx.set_schema_version(SCHEMA_VERSION)?;
                    tx.set_meta(crate::store::BORN_AT, &SCHEMA_VERSION.to_be_bytes())?;
                }
                tx.set_meta(mark.0, mark.1)
            })?;
            let version = source.schema_version()?.unwrap_or(SCHEMA_VERSION);
            let one_dir = same_dir(&target_dir, data_dir);
            // The target is a new store, with an id of its own (not the source's): until
            // the move is whole, the data dir's note names the source, so a half-filled
            // target never passes for the store its folders belong to; once whole, the note
            // of the target's data dir names it (below).
            let target_id = crate::handle::new_store_id()?;
            let tables = source.replace_into_marked(
                &target,
                version,
                &[mark, (crate::store::STORE_ID, target_id.as_bytes())],
            )?;
            compare(&source, &target)?;
            let folders = if one_dir {
                (0, Vec::new(), 0)
            } else {
                if resuming {
                    clear_copied_folders(&target_dir, options.clock.now())?;
                }
                copy_folders(data_dir, &target_dir)?
            };
            // A lock that went with its session (a server restart, `idle_session_timeout`,
            // a dropped connection) let other processes write to the source after the
            // snapshot, or to the target: the copy is then not the store.
            source.still_alone("be moved")?;
            target.still_alone("receive a move")?;
            // A store on a server keeps using this data dir's folders: the redb file left
            // here would be a second store on the same folders.
            let kept = if store_url.is_none() && target_url.is_some() {
                Some(retire_source(data_dir, to, options.clock.now())?)
            } else {
                None
            };
            if let Err(e) = target.write_here(|tx| tx.remove_meta(MOVE_UNFINISHED)) {
                if let Some(kept) = &kept {
                    unretire_source(data_dir, kept);
                }
                return Err(e);
            }
            whole.set(true);
            // From one server to another, both on this data dir's folders: the source is
            // marked as moved, and no open of it is taken for the store any more.
            let marked = store_url.is_some() && target_url.is_some() && one_dir;
            if marked {
                let shown = crate::store::redact(to);
                source
                    .write_here(|tx| tx.set_meta(crate::store::MOVED_TO, shown.as_bytes()))
                    .map_err(|e| {
                        Error::denied(format!(
                            "the store was moved and checked, but its source could not be \
                             marked as moved ({e}); stop using {} (every command on it would \
                             share the data dir's folders with the new store), and drop it once \
                             it is not needed",
                            source.location()
                        ))
                    })?;
            }
            // The note a move out of the data dir's redb file left names the new store
            // from now on: opened without the URL, the data dir sends the operator there.
            if marked {
                renote_moved(data_dir, to).map_err(|e| {
                    Error::denied(format!(
                        "the store was moved and checked, but the note {} could not be \
                         updated ({e}); it still names {}: replace `to` there with the new \
                         store's URL (without its password)",
                        data_dir.join(crate::handle::MOVED_NOTE).display(),
                        source.location()
                    ))
                })?;
            }
            // The target's data dir is tied to it from now on.
            crate::handle::write_store_note(
                &target_dir,
                // (A new id: the store moved from, marked, shares none with it.)
                &crate::handle::StoreNote::of(target_url, target_id, None),
            )
            .map_err(|e| {
                Error::denied(format!(
                    "the store was moved, but the note that ties the data dir to it could not \
                     be written ({e}); remove {} (it names the store moved from), and the next \
                     open of the moved store writes it",
                    target_dir.join(crate::handle::STORE_NOTE).display()
                ))
            })?;
            Ok((tables, folders, kept, marked))
        })?;
        let (from, to_shown) = (source.location(), target.location());
        // The target is closed before it is opened again to be checked.
        drop(target);
        let mut opts = options.clone();
        // The store is there now; only a data dir that is not (a move between two servers,
        // run where the source had none) is made.
        opts.create = std::fs::metadata(&target_dir).is_err();
        opts.auto_migrate = false;
        opts.open_outdated = true;
        // (Checked, not used: a mark the store carried is named by the check.)
        opts.open_unfinished = true;
        opts.store_url = target_url.map(str::to_string);
        let check = Redkeep::open(&target_dir, opts)?.check(false)?;
        // The source's problems as the copy's check words them: the paths of its data dir
        // are the target's.
        let carried_over = carried_over(&before.problems, &check.problems, data_dir, &target_dir);
        tracing::warn!(from, to = to_shown, "store moved");
        Ok(MoveReport {
            from,
            to: to_shown,
            tables: tables
                .into_iter()
                .filter(|(name, _)| name != "meta")
                .collect(),
            folders: folders.0,
            not_kept: folders.1,
            trash_entries: folders.2,
            source_kept_as: kept,
            source_marked_moved: marked,
            check,
            carried_over,
        })
    };
    let moved = match store_url {
        Some(_) => source.alone_with("be moved", body),
        None => body(),
    };
    // A move that failed part way (a full disk while the folders were copied) takes away
    // what it made in the target, so nothing there passes for a store and a new attempt
    // finds the target as it was.
    // (Not when the target was in use before this move opened it: then this move made
    // nothing there, and what is there is its holder's.)
    if let Err(e) = &moved
        && (opened.get() || !matches!(e, Error::InUse { .. }))
        && let Some(made) = &target_before
    {
        made.take_back();
    }
    let stopped = StoppedMove {
        source: &source,
        to,
        target_schema: target_schema.take(),
        resumed: stopped_from.is_some(),
        whole: whole.get(),
    };
    moved.map_err(|e| stopped.said(e))
}

/// What a move that lost its server part way leaves, for its error.
struct StoppedMove<'a> {
    source: &'a Store,
    to: &'a str,
    // The target's schema, when the target is on a server and was opened.
    target_schema: Option<String>,
    // The move ran again into a data dir a stopped move had filled.
    resumed: bool,
    // The copy was whole (the target's mark cleared) when it failed.
    whole: bool,
}

impl StoppedMove<'_> {
    /// `e` as the error of a move that stopped part way because a connection to a server
    /// was lost: what is left and what to do. Other errors are left as they are.
    fn said(&self, e: Error) -> Error {
        if !crate::store::lost_server(&e) {
            return e;
        }
        let on_server = self.source.engine() == "postgres";
        if self.whole {
            return Error::Storage {
                context: "checking the moved store",
                source: Box::new(StoppedPartWay {
                    said: format!(
                        "the move is done (the copy is whole and in use from now on), but the \
                         connection to the server was lost before its check ran ({e}); run \
                         `redkeep check` on {} once the server is back",
                        crate::store::redact(self.to)
                    ),
                    cause: e,
                }),
            };
        }
        let left = if is_url(self.to) {
            let Some(schema) = &self.target_schema else {
                // Lost before the target was opened: nothing was made there.
                return e;
            };
            format!(
                "schema {schema} on the target server holds what was copied, marked as a \
                 move stopped part way (refused for use); run the same `redkeep move` again \
                 once the server is back (it finishes the move), or drop schema {schema} \
                 there (`drop schema \"{schema}\" cascade`)"
            )
        } else if !on_server {
            return e;
        } else if self.resumed {
            format!(
                "{} holds what was copied, marked as a move stopped part way; run the same \
                 `redkeep move` again once the server is back",
                self.to
            )
        } else {
            format!(
                "nothing is left in {} (what the move made there was taken back); run the \
                 same `redkeep move` again once the server is back",
                self.to
            )
        };
        let source = if on_server {
            format!("the store on {}", self.source.location())
        } else {
            self.source.location()
        };
        Error::Storage {
            context: "moving the store",
            source: Box::new(StoppedPartWay {
                said: format!(
                    "the move stopped part way, as the connection to the server was lost \
                     ({e}); the source, {source}, is unchanged and still the store; {left}"
                ),
                cause: e,
            }),
        }
    }
}

/// The cause of a move's error when it stopped part way: what it left and what to do,
/// over the engine's error.
#[derive(Debug)]
struct StoppedPartWay {
    said: String,
    cause: Error,
}

impl std::fmt::Display for StoppedPartWay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.said)
    }
}

impl std::error::Error for StoppedPartWay {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// The refusal of a source whose `check` found `problems`.
fn source_has_problems(problems: &[String]) -> Error {
    Error::denied(format!(
        "the store to move has problems ({} found, such as: {}); run `redkeep check` to see \
         them all, fix them (`redkeep check --repair` mends what it can) and run the move \
         again, or move the store as it is with `redkeep move --with-problems`, which carries \
         them over unchanged; nothing was changed",
        problems.len(),
        problems.first().map_or("", String::as_str)
    ))
}

/// The problems of the copy (`after`) the source had already (`before`): the same sentence,
/// once the source's data dir `from` is read as the target's `to` in it.
fn carried_over(before: &[String], after: &[String], from: &Path, to: &Path) -> Vec<String> {
    let whole = |p: &Path| {
        std::path::absolute(p).map_or_else(|_| p.display().to_string(), |p| p.display().to_string())
    };
    let (from, to) = (whole(from), whole(to));
    let before: Vec<String> = before.iter().map(|p| p.replace(&from, &to)).collect();
    after
        .iter()
        .filter(|p| before.contains(p))
        .cloned()
        .collect()
}

/// Whether `a` and `b` are the same folder: by another spelling, through a symlink, or
/// mounted at another path (the same device and inode).
fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The refusal of a move whose target `to` is its source named another way (another
/// spelling of its URL: the same server, database and schema).
fn the_source_itself(to: &str) -> Error {
    Error::invalid(
        "to",
        format!(
            "{} is the store being moved, named another way (the same server, database and \
             schema); a move needs another store as its target: choose another schema or \
             database, or a data dir; nothing was changed",
            crate::store::redact(to)
        ),
    )
}

/// Opens the redb file a move copies from, only to read it, yet exclusively: no other
/// process opens it, to write or to read, until the move is done and the file retired, so
/// the copy is one snapshot nobody changes meanwhile; and a move killed part way leaves the
/// file as it was (never marked as not closed cleanly, with no owner marker left behind).
/// A file its last writer did not close cleanly is opened for writing instead: only that
/// open makes the repair it needs (as every command does).
///
/// # Errors
/// As [`Store::open`]: `InUse` while another process has the file open.
fn open_source_file(db: &Path) -> Result<Store> {
    let options = StoreOptions {
        mode: Mode::Exclusive,
        create: false,
        schema_version: SCHEMA_VERSION,
        allow_outdated: true,
        ..StoreOptions::default()
    };
    match Store::open_to_read(db, &options) {
        Err(e) if crate::store::opened_for_writing_instead(&e) => {
            tracing::debug!(error = %e, "opening the store only to read it failed");
            open_file_store(db, Mode::Exclusive)
        }
        other => other,
    }
}

/// The refusal of a target that holds what a move from another source (`from`) wrote
/// before it stopped.
fn refuse_other_move(to: &str, from: &str) -> Error {
    Error::denied(format!(
        "{to} holds what a move from {from} wrote before it stopped (a crash or a kill); run \
         that move again to finish it, or remove {to} (it is a copy)"
    ))
}

/// Opens (creating) a target on a server without writing its schema version, so that the
/// move's first write there says it is being filled.
fn open_target_url(to: &str) -> Result<Store> {
    #[cfg(feature = "postgres")]
    if crate::store::is_postgres_url(to) {
        return Store::open_postgres_unchecked(
            to,
            &StoreOptions {
                schema_version: SCHEMA_VERSION,
                allow_outdated: true,
                ..StoreOptions::default()
            },
        );
    }
    open_url_store(to, true)
}

/// Retires the redb file of `data_dir` once its store has moved to the server `to`, which
/// keeps using the data dir's folders: the file is renamed to a kept copy
/// (`redkeep.redb.moved-to-postgres-<time>`, nothing is deleted) and a note left in its
/// place, so that an open of the data dir without the store URL (an old cron job, a shell
/// without `REDKEEP_STORE_URL`) is refused with where the store went, instead of working
/// on a stale store whose `check --repair` would trash the folders of users made since.
/// Returns the kept copy's path.
///
/// # Errors
/// `Io` when the note cannot be written or the file renamed (then neither is left).
fn retire_source(data_dir: &Path, to: &str, now: crate::Timestamp) -> Result<PathBuf> {
    let db = data_dir.join(STORE_FILE);
    let kept = super::files::free_with_suffix(&db, &format!(".moved-to-postgres-{}", now.0));
    // Named whole: the note is read by commands run from any folder.
    let kept = std::path::absolute(&kept).unwrap_or(kept);
    let note = crate::handle::MovedNote {
        to: crate::store::redact(to),
        kept: kept.clone(),
    };
    let path = data_dir.join(crate::handle::MOVED_NOTE);
    let text = serde_json::to_vec(&note).map_err(|e| Error::Invariant {
        what: format!("the note of a moved store cannot be written as JSON: {e}"),
    })?;
    crate::fsutil::write_private(&path, &text)?;
    if let Err(e) = std::fs::rename(&db, &kept) {
        let _ = std::fs::remove_file(&path);
        return Err(Error::io(
            format!("renaming {} to {}", db.display(), kept.display()),
            e,
        ));
    }
    Ok(kept)
}

/// Puts back the file [`retire_source`] kept when the move that retired it stopped before it
/// was whole: the note is there, the kept file too, no store file, and the target `to`
/// still carries the mark of a move from that very file. Anything else is left as it is
/// (the open then names the note).
///
/// # Errors
/// `Io`, `Storage` when the target cannot be read.
fn resume_retired(data_dir: &Path, to: &str) -> Result<()> {
    let Some(Some(note)) = crate::handle::moved_note(data_dir) else {
        return Ok(());
    };
    if data_dir.join(STORE_FILE).exists() || !note.kept.is_file() {
        return Ok(());
    }
    let Ok(dir) = data_dir.canonicalize() else {
        return Ok(());
    };
    let source = dir.join(STORE_FILE);
    let target = open_url_store(to, false)?;
    let mark = target.read(|tx| tx.meta(MOVE_UNFINISHED))?;
    drop(target);
    if mark.is_some_and(|m| same_source(&String::from_utf8_lossy(&m), &source.to_string_lossy())) {
        tracing::warn!(kept = %note.kept.display(), "a move stopped after retiring its source; putting it back to run again");
        unretire_source(data_dir, &note.kept);
    }
    Ok(())
}

/// Has the note [`retire_source`] left in `data_dir` (if any) name the server store `to`,
/// which a move between servers on the data dir's folders just filled.
///
/// # Errors
/// `Io` when the note cannot be written.
fn renote_moved(data_dir: &Path, to: &str) -> Result<()> {
    let Some(Some(mut note)) = crate::handle::moved_note(data_dir) else {
        return Ok(());
    };
    note.to = crate::store::redact(to);
    let text = serde_json::to_vec(&note).map_err(|e| Error::Invariant {
        what: format!("the note of a moved store cannot be written as JSON: {e}"),
    })?;
    crate::fsutil::write_private(&data_dir.join(crate::handle::MOVED_NOTE), &text)
}

/// Takes back [`retire_source`] when the move failed after it.
fn unretire_source(data_dir: &Path, kept: &Path) {
    if std::fs::rename(kept, data_dir.join(STORE_FILE)).is_ok() {
        let _ = std::fs::remove_file(data_dir.join(crate::handle::MOVED_NOTE));
    }
}

/// Whether the source a stopped move's mark names is `location`: the same text, or (a file
/// store) the same file however its path is spelled.
fn same_source(mark: &str, location: &str) -> bool {
    mark == location
        || matches!(
            (std::fs::canonicalize(mark), std::fs::canonicalize(location)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// Where the move that stopped part way into the data dir `dir` came from, if one did.
fn unfinished_move(dir: &Path) -> Option<String> {
    let db = dir.join(STORE_FILE);
    if !db.is_file() {
        return None;
    }
    let store = open_file_store(&db, Mode::Exclusive).ok()?;
    let mark = store.read(|tx| tx.meta(MOVE_UNFINISHED)).ok()??;
    Some(String::from_utf8_lossy(&mark).into_owned())
}

/// Moves the workspace folders a stopped move copied into `dir` to its trash (never
/// deleting: whatever was written there since goes along), before the same move copies
/// them again (the source may have changed since). The trash entries it copied are written
/// over by the new copy.
///
/// # Errors
/// `UnsafePath` when a folder on the way is a symlink; `Io` when they cannot be moved.
fn clear_copied_folders(dir: &Path, now: crate::Timestamp) -> Result<()> {
    crate::fsutil::real_dir(&dir.join(WORKSPACES_DIR))?;
    let ws = folders_of(dir)?;
    ws.ready_to_trash_all()?;
    ws.trash_all(now)?;
    Ok(())
}

/// Whether `store` holds nothing anybody made: no more than a new store starts with (its
/// meta and the built-in roles, each with its name's index entry), so a move may replace it
/// and lose nothing. A free-form meta entry other than the version the file was made at (an
/// application's `set_meta`, the mark of an interrupted reset or import) counts as made.
fn holds_nothing_made(store: &Store) -> Result<bool> {
    use crate::auth::roles::Role;
    store.read(|tx| {
        if tx.meta_entries()?.iter().any(|(key, _)| {
            key != crate::store::BORN_AT
                && key != crate::store::STORE_ID
                && key != crate::store::STORE_INSTANCE
        }) {
            return Ok(false);
        }
        // Only the roles and their names' index may hold anything.
        let (records, names) = (
            crate::store::record_table(<Role as crate::store::Record>::TABLE),
            crate::store::index_table(<Role as crate::store::Record>::TABLE, "name"),
        );
        let (mut entries, mut named) = (0, 0);
        for name in tx.table_names()? {
            if name == "meta" {
                continue;
            }
            let n = tx.raw().len(&name)?;
            if n > 0 && name != records && name != names {
                return Ok(false);
            }
            if name == names {
                named = n;
            }
            entries += n;
        }
        if entries == 0 {
            return Ok(true);
        }
        let (mut roles, mut all_built_in) = (0, true);
        tx.table::<Role>().for_each(
            crate::store::KeyRange::all(),
            crate::store::Order::Asc,
            |r| {
                roles += 1;
                all_built_in &= r.is_system;
                Ok(all_built_in)
            },
        )?;
        Ok(all_built_in && named == roles && entries == 2 * roles)
    })
}

/// Compares the entry count of every table but `meta` (whose sequences each engine keeps its
/// own way) in both stores.
fn compare(source: &Store, target: &Store) -> Result<()> {
    let counts = |store: &Store| {
        store.read(|tx| {
            let mut out = Vec::new();
            for name in tx.table_names()? {
                let n = tx.raw().len(&name)?;
                if name != "meta" && n > 0 {
                    out.push((name, n));
                }
            }
            Ok(out)
        })
    };
    let (a, b) = (counts(source)?, counts(target)?);
    if a != b {
        return Err(Error::Invariant {
            what: format!(
                "after the move the target's tables differ from the source's ({a:?} vs {b:?}); \
                 the source is unchanged"
            ),
        });
    }
    Ok(())
}

/// Copies every workspace folder of `from` into the data dir `to`, each under its lock.
/// Copies the users' workspace folders and the trash; returns how many folders, what was
/// not copied, and how many trash entries.
fn copy_folders(from: &Path, to: &Path) -> Result<(u64, Vec<PathBuf>, u64)> {
    let ws = folders_of(from)?;
    let base = to.join(WORKSPACES_DIR).join("users");
    let mut folders = 0;
    let mut not_kept = Vec::new();
    for id in ws.user_ids()? {
        folders += 1;
        let skipped = ws.copy_folder_streamed(id, &mut |rel, file, _, modified| {
            let path = base.join(rel);
            if let Some(parent) = path.parent() {
                crate::fsutil::create_private_dir(parent)?;
            }
            crate::fsutil::write_private_from(&path, file)?;
            crate::fsutil::set_modified(&path, modified)
        })?;
        not_kept.extend(skipped.into_iter().map(|p| Path::new("users").join(p)));
    }
    not_kept.extend(not_real_folders(&ws)?);
    // The trash too: the undo a restore or reset printed, and a deleted user's files, work
    // in the new data dir as they did in the old one.
    let trash = from.join(WORKSPACES_DIR).join("trash");
    let mut entries = 0;
    if crate::fsutil::real_dir(&trash)?.is_some() {
        let names = crate::fsutil::entries_sorted(&trash)?;
        let base = to.join(WORKSPACES_DIR);
        for entry in names {
            let rel = Path::new("trash").join(entry.file_name());
            if copy_tree(&from.join(WORKSPACES_DIR), &base, &rel, &mut not_kept)? {
                entries += 1;
            }
        }
    }
    // The folders the copies made, durable before the source is retired (each file and
    // its entry were synced as written, but not the folders' entries in their parents).
    let copied = to.join(WORKSPACES_DIR);
    if crate::fsutil::real_dir(&copied)?.is_some() {
        crate::fsutil::sync_tree(&copied)?;
    }
    not_kept.sort();
    Ok((folders, not_kept, entries))
}

/// Copies `from/rel` to `to/rel`: folders and regular files (streamed, with their times);
/// symlinks and special files are never followed, and go to `not_kept` (as `rel` paths), as
/// do redkeep's temp files. Returns whether anything was copied.
///
/// # Errors
/// `Io` when a folder cannot be listed or a file cannot be read or written: a move copies
/// everything or fails.
fn copy_tree(from: &Path, to: &Path, rel: &Path, not_kept: &mut Vec<PathBuf>) -> Result<bool> {
    let source = from.join(rel);
    let meta = std::fs::symlink_metadata(&source)
        .map_err(|e| Error::io(format!("reading {}", source.display()), e))?;
    let target = to.join(rel);
    if meta.is_file() {
        let skipped = rel
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(crate::fsutil::TEMP_PREFIX));
        if skipped {
            return Ok(false);
        }
        let Some((file, len)) = crate::fsutil::open_regular_sized(&source)? else {
            not_kept.push(rel.to_path_buf());
            return Ok(false);
        };
        let modified = file.metadata().and_then(|m| m.modified()).ok();
        if let Some(parent) = target.parent() {
            crate::fsutil::create_private_dir(parent)?;
        }
        crate::fsutil::write_private_from(&target, &mut crate::fsutil::Exactly::new(file, len))?;
        if let Some(at) = modified {
            crate::fsutil::set_modified(&target, at)?;
        }
        return Ok(true);
    }
    if !meta.is_dir() {
        not_kept.push(rel.to_path_buf());
        return Ok(false);
    }
    crate::fsutil::create_private_dir(&target)?;
    for entry in crate::fsutil::entries_sorted(&source)? {
        copy_tree(from, to, &rel.join(entry.file_name()), not_kept)?;
    }
    Ok(true)
}
