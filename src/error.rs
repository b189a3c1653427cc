//! The one error type of the crate.
//!
//! Each variant is something a caller acts on differently; `Display` is a sentence an operator
//! can act on, and `source()` keeps the underlying cause.

use std::path::PathBuf;

/// Shorthand for `Result<T, redkeep::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cause of a storage failure, whichever engine it came from.
pub type StorageCause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in redkeep.
///
/// `Io` and `Storage` say their cause in `Display` as well as return it from `source()`: a
/// program that prints `{e}` alone shows why (a full disk, a missing folder), and one that
/// inspects the cause still has it. A reporter that prints the whole chain (`anyhow`'s
/// `{:#}`, `eyre`) therefore shows that cause twice; [`Error::full_message`] gives the
/// chain on one line without repeats.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing asked for does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `user 7` or `invite rki_ab12cd34`.
        what: String,
    },
    /// A unique index already holds the value; nothing of the operation was written.
    #[error("{detail}")]
    Conflict {
        /// The table whose index clashed.
        table: &'static str,
        /// The unique index that clashed (`primary` for the primary key).
        index: &'static str,
        /// A human hint about the clashing value.
        detail: String,
    },
    /// The input is malformed; the message says what to fix.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field or argument at fault.
        field: &'static str,
        /// What is wrong with it and how to fix it.
        reason: String,
    },
    /// Wrong credentials. Deliberately says nothing about which part was wrong.
    #[error("wrong email, username or password")]
    Unauthorized,
    /// A token, code or key did not verify. Deliberately uniform.
    #[error("{what} is not valid")]
    InvalidCredential {
        /// What kind of secret was rejected (`invite code`, `session token`, `api key`).
        what: &'static str,
    },
    /// The thing has expired.
    #[error("{what} has expired")]
    Expired {
        /// What expired (`invite code rki_ab12cd34`).
        what: String,
    },
    /// The thing was revoked or used up and cannot be used any more.
    #[error("{what}")]
    Revoked {
        /// What happened to it, as a sentence (`invite rki_ab12cd34 was revoked`).
        what: String,
    },
    /// A rule of the domain forbids the operation (the last owner of an org cannot leave, a
    /// system role cannot be deleted, …). Nothing was changed.
    #[error("{reason}")]
    Denied {
        /// Which rule, and what to do instead.
        reason: String,
    },
    /// The store or the data dir was opened only to be read (as asked, or because this user
    /// cannot write it): every change is refused, and nothing was changed. The state of the
    /// server, not a fault of the request.
    #[error("{what}")]
    ReadOnly {
        /// What is read-only, and how to open it for writing.
        what: String,
    },
    /// The data dir is not ready to serve: an operation on the whole of it (a restore, a
    /// reset) stopped part way (a crash or a kill), and an operator must finish it; or it
    /// was moved, removed or replaced under the running process, which must be started
    /// again where it is. The reason says what to do (`redkeep check --repair`, a restart).
    /// The state of the server, not a fault of the request:
    /// [`Redkeep::unfinished`](crate::Redkeep::unfinished) reports a stopped operation at
    /// open.
    #[error("{reason}")]
    NotReady {
        /// What stopped part way, and the command that finishes it.
        reason: String,
    },
    /// A save would take a user's gallery past a cap of the workspace options (its piece
    /// count, or the bytes of its pieces together). Nothing was saved and no piece changed;
    /// the pieces there stay readable and removable. The user makes room by removing pieces;
    /// an operator raises the caps (`WorkspaceOptions::max_pieces` and `max_gallery_bytes`
    /// in the application, `--max-pieces` and `--max-gallery-bytes` for the `redkeep`
    /// command).
    #[error("{reason}")]
    QuotaExceeded {
        /// The option whose cap it passes: `max_pieces` or `max_gallery_bytes`.
        limit: &'static str,
        /// What the gallery holds, the cap, and what the user can do.
        reason: String,
    },
    /// Something is busy or could not be done now; the same call may succeed later.
    #[error("{what}; try again")]
    Busy {
        /// What was busy.
        what: String,
    },
    /// A path is not what redkeep may use: a symlink, a non-regular file, or a folder that
    /// belongs to another account. It is never followed or served.
    #[error("refusing to use {}: {reason}", path.display())]
    UnsafePath {
        /// The path.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A record is unreadable: the file was damaged or written by an incompatible build.
    #[error("record {key} of table {table} is corrupt: {reason}; run `redkeep check`")]
    Corrupt {
        /// The table holding the record.
        table: String,
        /// The record's key, printed readably.
        key: String,
        /// What failed while reading it.
        reason: String,
    },
    /// A file of a workspace folder (`workspace.json`, a piece) cannot be read as what it
    /// should be.
    #[error(
        "{} is damaged: {reason}; `redkeep check --repair` moves it aside (a workspace.json is \
         then written again: with its other fields when only its count is bad, else fresh)",
        path.display()
    )]
    DamagedFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file of a workspace folder (`workspace.json`, a piece) is larger than the size
    /// limit (`WorkspaceOptions::max_doc_bytes`, 16 MiB unless raised). It is not damaged:
    /// it is not read, and nothing moves or replaces it (`check --repair` reports it and
    /// leaves it). Raise the limit to read it.
    #[error(
        "{} has {size} bytes, more than the {limit}-byte limit for workspace files, so it is \
         not read; it is not damaged and is left as it is: raise the limit \
         (`Options::workspace.max_doc_bytes` in the application, `--max-doc-bytes` or \
         REDKEEP_MAX_DOC_BYTES for the `redkeep` command)",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit it passes.
        limit: u64,
    },
    /// A file of a workspace folder (`workspace.json`, a piece) holds `NaN`, `Infinity` or
    /// `-Infinity`, which JSON does not allow (Python's `json.dumps` writes them unless
    /// given `allow_nan=False`). It is not read, and nothing moves or replaces it
    /// (`check --repair` reports it and leaves it).
    #[error(
        "{} holds {token} at line {line} column {column}, which JSON does not allow (Python's \
         `json.dumps` writes NaN and Infinity unless given `allow_nan=False`), so it is not \
         read; it is left as it is: have the application write null (or a string) there \
         instead, and edit the file to do the same",
        path.display()
    )]
    NotStrictJson {
        /// The file.
        path: PathBuf,
        /// The token (`NaN`, `Infinity` or `-Infinity`), the first in the file.
        token: String,
        /// Its line (from 1).
        line: usize,
        /// Its column (from 1, in bytes).
        column: usize,
    },
    /// A file of a workspace folder (`workspace.json`, a piece) nests objects and arrays
    /// deeper than redkeep reads ([`MAX_DOC_DEPTH`](crate::workspace::MAX_DOC_DEPTH)
    /// levels), as another program may write it (Python's `json` goes to about 1000). It is
    /// not taken for damaged: it is not read, and nothing moves or replaces it (`check
    /// --repair` reports it and leaves it).
    #[error(
        "{} nests objects and arrays {depth} levels deep, more than the {limit} redkeep reads, \
         so it is not read; it is not taken for damaged and is left as it is: have the \
         application that wrote it nest its data less deeply, or move the file out of the \
         folder",
        path.display()
    )]
    TooDeep {
        /// The file.
        path: PathBuf,
        /// How deep it nests.
        depth: usize,
        /// How deep a file redkeep reads may nest.
        limit: usize,
    },
    /// The store file is damaged (a malformed page, a truncated or empty file): the engine
    /// cannot read it as it is. Writes are refused until it is repaired or restored.
    #[error(
        "the store{} is damaged: {reason}; run `redkeep check` to see what can still be read, then restore a backup (`redkeep restore`) or copy out what can be read (`redkeep salvage --to DIR`)",
        shown_path(path)
    )]
    Damaged {
        /// The store file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The store file was written by a newer redkeep.
    #[error(
        "the store has schema version {found}, newer than this build supports ({supported}); upgrade redkeep"
    )]
    NewerSchema {
        /// Version found in the file.
        found: u64,
        /// Highest version this build knows.
        supported: u64,
    },
    /// The store needs `redkeep migrate up` before it can be used.
    #[error(
        "the store has schema version {found} but this build needs {needed}; run `redkeep migrate up`"
    )]
    MigrationNeeded {
        /// Version found in the file.
        found: u64,
        /// Version this build works with.
        needed: u64,
    },
    /// No store exists where one was expected.
    #[error("no store at {}; run `redkeep init` first", path.display())]
    NotInitialized {
        /// The database path that does not exist.
        path: PathBuf,
    },
    /// The store file holds nothing: no store was ever written in it (it is empty, every byte
    /// is zero, or it holds only the header redb writes before its first sync). An
    /// interrupted `init` (a kill, a full disk, a failed sync at the file's first write)
    /// leaves such a file; [`Redkeep::open_to_init`](crate::Redkeep::open_to_init) and
    /// `redkeep init` replace it in a data dir that holds no user folders. Nothing else
    /// writes into it: an ordinary open never takes it for a new store, since a store cut
    /// short to nothing would then pass for an empty one.
    #[error(
        "the store file {} holds nothing ({found}): no store was ever written in it, as an \
         interrupted `redkeep init` leaves it; run `redkeep init`, which replaces it (or, if \
         this data dir did hold a store, restore a backup: `redkeep restore`)",
        path.display()
    )]
    Unwritten {
        /// The store file.
        path: PathBuf,
        /// What it holds, as a phrase (`every byte is zero`).
        found: String,
    },
    /// Another process has the store open in a way that excludes this one.
    #[error("the store {} is in use: {holder}", path.display())]
    InUse {
        /// The database path.
        path: PathBuf,
        /// Who holds it and what to do about it.
        holder: String,
    },
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The storage engine failed.
    #[error("storage error while {context}: {source}")]
    Storage {
        /// What was being done.
        context: &'static str,
        /// The underlying engine error.
        #[source]
        source: StorageCause,
    },
    /// An internal rule of redkeep did not hold: a bug. Nothing was written.
    #[error("internal error: {what}; please report it")]
    Invariant {
        /// What went wrong.
        what: String,
    },
    /// The work was cancelled (its runtime is shutting down).
    #[error("{what} was cancelled")]
    Cancelled {
        /// What was cancelled.
        what: String,
    },
}

/// A resource the machine ran short of (see [`Error::shortage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shortage {
    /// No space left on the file system, or the user's quota reached.
    Space,
    /// No file descriptor free, in the process or the system.
    Files,
    /// No memory.
    Memory,
}

impl Shortage {
    fn of(e: &std::io::Error) -> Option<Shortage> {
        use std::io::ErrorKind;
        let errno = e.raw_os_error().map(rustix::io::Errno::from_raw_os_error);
        match (e.kind(), errno) {
            (_, Some(rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT))
            | (ErrorKind::StorageFull | ErrorKind::QuotaExceeded, _) => Some(Shortage::Space),
            (_, Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)) => Some(Shortage::Files),
            (_, Some(rustix::io::Errno::NOMEM)) | (ErrorKind::OutOfMemory, _) => {
                Some(Shortage::Memory)
            }
            _ => None,
        }
    }
}

/// A path after a space, for a sentence that names it when known ("the store /x/y is …");
/// nothing when it is empty.
pub(crate) fn shown_path(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" {}", path.display())
    }
}

impl Error {
    /// Whether the error comes from the system refusing to let this user write (or from a
    /// read-only file system): the data dir can then still be opened to read
    /// ([`Options::read_only`](crate::Options::read_only)).
    pub fn is_permission_denied(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                )
            {
                return true;
            }
            cause = c.source();
        }
        let text = self.to_string();
        text.contains("Permission denied") || text.contains("Read-only file system")
    }

    /// A `NotFound` for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// An `InvalidInput` for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            reason: reason.into(),
        }
    }

    /// A `Denied` with its reason.
    pub fn denied(reason: impl Into<String>) -> Self {
        Error::Denied {
            reason: reason.into(),
        }
    }

    /// An `Io` error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// This error with the context of an `Io` one rewritten by `f` (other kinds unchanged):
    /// for a step that failed after an earlier one took effect, which the message must say.
    pub(crate) fn io_context(self, f: impl FnOnce(&str) -> String) -> Self {
        match self {
            Error::Io { context, source } => Error::Io {
                context: f(&context),
                source,
            },
            other => other,
        }
    }

    /// A `Storage` error with context.
    pub fn storage(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Storage {
            context,
            source: Box::new(source),
        }
    }

    /// What the machine ran short of, when the error comes from that rather than from the
    /// data: no space left (or the quota reached), no file descriptor free, no memory.
    pub(crate) fn shortage(&self) -> Option<Shortage> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>()
                && let Some(short) = Shortage::of(io)
            {
                return Some(short);
            }
            cause = c.source();
        }
        None
    }

    /// The message and its causes on one line, for an operator.
    pub fn full_message(&self) -> String {
        with_causes(self)
    }

    /// An `UnsafePath` error.
    pub fn unsafe_path(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::UnsafePath {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// `e`'s message and the causes under it on one line, each cause once (one whose text the
/// line holds already is left out).
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let below = s.to_string();
        if !text.contains(&below) {
            text.push_str(": ");
            text.push_str(&below);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}
