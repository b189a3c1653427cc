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

use crate::error::{Error, Result};
use crate::store::{Record, WriteTx};

/// Inserts a record keyed by a freshly drawn `kind` token, built by `make` from the token's
/// hash and display prefix; draws again on the rare prefix clash. Returns the secret, shown
/// once, and the record.
pub(crate) fn insert_with_token<R: Record>(
    tx: &WriteTx,
    kind: &str,
    make: impl Fn([u8; 32], String) -> R,
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
    Err(Error::Refused(format!(
        "could not draw an unused {kind} prefix; try again"
    )))
}
