//! The user record the benchmarks and profiling examples load, one definition for all of
//! them (included with `#[path]`): the same bytes everywhere, so their figures compare.
#![allow(dead_code)]

use redkeep::{Redkeep, Timestamp, Uid, User};

/// The email address of user `id`.
pub fn email(id: u64) -> String {
    format!("user{id}@example.com")
}

/// User `id`, created at a time that grows with the id.
pub fn user(id: u64) -> User {
    User {
        id,
        uid: Uid([7; 16]),
        email: email(id),
        username: None,
        name: format!("User {id}"),
        external_id: None,
        is_admin: false,
        is_active: true,
        email_verified: false,
        must_change_password: false,
        last_login_at: None,
        current_org_id: None,
        created_at: Timestamp(1_800_000_000 + id as i64),
        updated_at: Timestamp(1_800_000_000 + id as i64),
    }
}

/// One commit of one user (its email from `id`, its id from the table's sequence).
pub fn insert_user(rk: &Redkeep, id: u64) {
    rk.store()
        .write(|tx| {
            let t = tx.table::<User>();
            let mut u = user(id);
            u.id = t.next_id()?;
            t.insert(&u)
        })
        .expect("a durable insert of one user");
}
