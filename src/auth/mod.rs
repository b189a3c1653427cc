//! The account domain: one file per table family (records, rules and the handle of that
//! noun), `flows.rs` for the changes that span tables, `references.rs` for the cross-table
//! checks, `migrations.rs` with the frozen shapes of older versions in `legacy.rs`,
//! `budget.rs` with the audit rows a minute that requests no one signed in to may write, and
//! `punycode.rs`, which reads a domain's `xn--` form for the email rules' errors.
//!
//! Every handle (`Users`, `Sessions`, …) borrows the crate-private `Accounts`: the store, the clock, the
//! password hasher and the policies. Nothing here knows files: what must happen to a user's
//! folder when the account changes is asked of a [`UserFiles`] after the commit.

mod accounts;
pub mod agents;
pub mod api_keys;
pub mod audit;
mod budget;
pub(crate) mod flows;
pub mod invites;
pub(crate) mod legacy;
pub(crate) mod migrations;
pub mod orgs;
pub mod password;
mod punycode;
pub mod recovery;
pub(crate) mod references;
pub mod roles;
pub mod sessions;
mod sweep;
pub mod token;
pub mod users;
pub mod web_sessions;

pub(crate) use accounts::Accounts;
pub use accounts::{NoFiles, Policy, UserFiles};
pub(crate) use references::{own_table_types, own_tables};
pub(crate) use token::insert_with_token;
