//! The account domain: one file per table family (records, rules and the handle of that
//! noun), `flows.rs` for the changes that span tables, `references.rs` for the cross-table
//! checks, and `migrations.rs` with the frozen shapes of older versions in `legacy.rs`.
//!
//! Every handle (`Users`, `Sessions`, …) borrows the crate-private `Accounts`: the store, the clock, the
//! password hasher and the policies. Nothing here knows files: what must happen to a user's
//! folder when the account changes is asked of a [`UserFiles`] after the commit.

pub mod agents;
pub mod api_keys;
pub mod audit;
pub(crate) mod flows;
pub mod invites;
pub(crate) mod legacy;
pub(crate) mod migrations;
pub mod orgs;
pub mod password;
pub(crate) mod references;
pub mod roles;
pub mod sessions;
pub mod token;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, Timestamp};
use crate::error::{Error, Result};
use crate::store::{Record, Store, WriteTx};
use password::Passwords;
use sessions::{LockoutPolicy, SessionPolicy};

/// The rules of the account domain that an application may tune.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Session lifetimes.
    pub sessions: SessionPolicy,
    /// Lockout after failed logins.
    pub lockout: LockoutPolicy,
    /// `last_used_at` of an API key is written at most this often (default 60 s).
    pub api_key_touch_interval: Duration,
    /// Let registration work without an invite code (default false).
    pub open_registration: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            sessions: SessionPolicy::default(),
            lockout: LockoutPolicy::default(),
            api_key_touch_interval: Duration::from_secs(60),
            open_registration: false,
        }
    }
}

/// What happens to a user's files when the account changes. The handle provides it with the
/// workspaces folder; a store without files uses [`NoFiles`].
pub trait UserFiles: Send + Sync + std::fmt::Debug {
    /// The user was deleted (committed): move their files out of reach. Returns where they
    /// went, if anywhere.
    ///
    /// # Errors
    /// When the files cannot be moved; the account is deleted regardless.
    fn user_deleted(&self, user: &users::User) -> Result<Option<PathBuf>>;
}

/// [`UserFiles`] for a store without per-user files.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFiles;

impl UserFiles for NoFiles {
    fn user_deleted(&self, _user: &users::User) -> Result<Option<PathBuf>> {
        Ok(None)
    }
}

/// The account domain's state shared by every handle.
#[derive(Debug)]
pub(crate) struct Accounts {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) passwords: Passwords,
    pub(crate) policy: Policy,
    pub(crate) files: Arc<dyn UserFiles>,
}

impl Accounts {
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Inserts a record keyed by a freshly drawn `kind` token, built by `make` from the token's
/// hash and display prefix; draws again on the rare prefix clash. Returns the secret, shown
/// once, and the record.
pub(crate) fn insert_with_token<R: Record>(
    tx: &WriteTx<'_>,
    kind: &str,
    make: impl Fn(token::TokenHash, String) -> R,
) -> Result<(token::Secret, R)> {
    let table = tx.table::<R>();
    for _ in 0..8 {
        let tok = token::generate(kind)?;
        let record = make(tok.hash, tok.prefix);
        match table.insert(&record) {
            Ok(()) => return Ok((tok.secret, record)),
            Err(Error::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Busy {
        what: format!("drawing an unused {kind} prefix failed eight times"),
    })
}

/// The whole-table operations of redkeep's own record types.
pub(crate) fn own_tables() -> Vec<Box<dyn crate::store::TableCheck>> {
    use crate::store::check_table;
    vec![
        check_table::<users::User>(),
        check_table::<users::Credential>(),
        check_table::<users::Avatar>(),
        check_table::<invites::Invite>(),
        check_table::<roles::Role>(),
        check_table::<roles::UserRole>(),
        check_table::<sessions::Session>(),
        check_table::<agents::AgentSession>(),
        check_table::<orgs::Org>(),
        check_table::<orgs::OrgMember>(),
        check_table::<api_keys::ApiKey>(),
        check_table::<audit::AuditEvent>(),
    ]
}
