//! Per-user workspace folders on the file system, in the layout existing deployments use:
//!
//! ```text
//! <root>/users/{user_id}/workspace.json
//! <root>/users/{user_id}/gallery/piece_000001.json
//! <root>/users/{user_id}/.owner      the owner's identity: a folder is served only to them
//! <root>/users/{user_id}/.lock
//! <root>/users/{user_id}/.pieces     the gallery's piece count and bytes (saves write it)
//! <root>/users/{user_id}/.trash/     removed pieces
//! <root>/trash/                      removed folders
//! ```
//!
//! Nothing here knows the store: who owns a folder is asked of an [`Owners`] function. A
//! folder is served only to the user whose identity its `.owner` marker holds, so a folder
//! left behind by a deleted, reset or restored-away account is never served to a new account
//! that reuses its number. A folder is created atomically at the first write (built aside and
//! renamed into place, never replacing one). Readers take the `.lock` shared, writers
//! exclusively, and writers check under the lock that the folder is still there and its user
//! still exists. Every file is replaced atomically; only regular files are opened; paths are
//! built only from numbers; nothing is deleted, only moved to the trash.

mod check;
mod doc;
mod folders;
mod gallery;
pub mod lock;
mod names;
mod tally;

pub use check::WorkspaceProblem;
pub use doc::{MAX_DOC_DEPTH, WorkspaceDoc};
pub(crate) use doc::{parse_wrapped, within_depth};
pub(crate) use folders::StoppedRestore;
pub use folders::{
    DEFAULT_MAX_DOC_BYTES, DEFAULT_MAX_GALLERY_BYTES, DEFAULT_MAX_PIECES, FolderOwner, Owners,
    TimedCopy, TrashEntry, WorkspaceInfo, WorkspaceOptions, Workspaces,
};
#[cfg(feature = "admin")]
pub(crate) use folders::{Marker, RAISE_LIMIT};
#[cfg(feature = "adopt")]
pub(crate) use gallery::FoundPiece;
pub use gallery::PieceInfo;
pub(crate) use names::piece_within;
pub use names::{
    GALLERY_DIR, MAX_GIVEN_PIECE, MAX_JSON_PIECE, OWNER_FILE, WORKSPACE_FILE, parse_piece_name,
    piece_file_name,
};
