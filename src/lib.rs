#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod asynch;
pub mod auth;
mod bytes;
pub mod cli;
pub mod clock;
mod error;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
pub mod ops;
pub mod store;
pub mod workspace;

pub use asynch::AsyncRedkeep;
pub use auth::invites::{CreatedInvite, Invite, InviteFilter, InviteSpec, InviteStatus, Invites};
pub use auth::password::PasswordParams;
pub use auth::register::Registration;
pub use auth::token::Secret;
pub use auth::users::{CreatedUser, NewUser, User, UserFilter, Users};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{Error, Result};
pub use handle::{
    InitOutcome, InitSpec, Options, Redkeep, SCHEMA_VERSION, STORE_FILE, WORKSPACES_DIR,
};
pub use store::{Durability, Index, KeyPart, KeyRange, Mode, Order, Record, Store, StoreOptions};
pub use workspace::{PieceInfo, WorkspaceDoc, WorkspaceInfo, WorkspaceOptions, Workspaces};
