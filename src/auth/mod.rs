//! The account domain: users, passwords, invite codes and the flows that span them. Each file
//! is a thin layer of records and rules on the generic store.

pub mod invites;
pub mod password;
pub mod register;
pub mod token;
pub mod users;
