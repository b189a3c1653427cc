//! The operator's choices for an adoption that the plan follows row by row and file by file.

use std::path::PathBuf;

use serde::Serialize;

/// What adopt does with an account whose old password hash it cannot verify (an account
/// that only ever signed in through another provider, an invite never redeemed, a hash
/// form redkeep does not read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WithoutPassword {
    /// The row is a problem, so nothing is adopted until the mapping or this option says
    /// otherwise (the default: no account is locked out without the operator's word).
    #[default]
    Refuse,
    /// The account is adopted with no password that logs in (an empty hash, which no
    /// password matches) and must change its password; the report names each one. They
    /// get in through a password reset or an operator's `redkeep user set-password`.
    Reset,
}

/// What the plan needs of the adoption's spec and options.
pub(crate) struct Settings {
    pub(crate) workspaces: Option<PathBuf>,
    pub(crate) without_password: WithoutPassword,
    /// Leave out (with a note each) the old files and avatars that cannot be taken, rather
    /// than refuse the adoption.
    pub(crate) leave_out_bad_files: bool,
    /// The most bytes a workspace document or piece may hold.
    pub(crate) max_doc_bytes: u64,
}
