// The README's example runs live administration, so it is the crate's documentation (and a
// doc test) whenever the `admin` feature is on.
#![cfg_attr(feature = "admin", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "admin"),
    doc = "redkeep: an embedded account store (users, passwords, invite codes, roles, sessions, organizations, API keys, audit, per-user workspace folders) in one redb file. See the README."
)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "tokio")]
pub mod asynch;
pub mod auth;
mod bytes;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
mod error;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
pub mod ops;
pub mod store;
mod top;
#[cfg(any(feature = "axum", feature = "tower-sessions"))]
pub mod web;
pub mod workspace;

#[cfg(feature = "tokio")]
pub use asynch::AsyncRedkeep;
pub use auth::invites::{CreatedInvite, Invite, InviteFilter, InviteSpec, InviteStatus, Invites};
pub use auth::password::{PasswordParams, default_hash_concurrency};
pub use auth::token::Secret;
pub use auth::users::{CreatedUser, NewUser, Registration, Uid, User, UserFilter, Users};
pub use auth::{NoFiles, Policy, UserFiles};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{Error, Result};
pub use handle::{
    InitOutcome, InitSpec, MigrationStatus, MigrationStep, Options, Redkeep, SCHEMA_VERSION,
    STORE_FILE, Unfinished, WORKSPACES_DIR,
};
pub use store::{
    Durability, Index, Key, KeyPart, KeyRange, Mode, Order, Origin, ReadersNotice, ReadersWait,
    Record, Store, StoreOptions,
};
pub use workspace::{PieceInfo, WorkspaceDoc, WorkspaceInfo, WorkspaceOptions, Workspaces};
