//! The account domain: one file per table family, each a thin layer of records and rules on
//! the generic store, and `register.rs` for the flows that span tables.

pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod invites;
pub mod migrations;
pub mod orgs;
pub mod password;
pub mod register;
pub mod roles;
pub mod sessions;
pub mod token;
pub mod users;
