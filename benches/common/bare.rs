//! The bare redb side of the read comparisons, one definition for the benchmark and the
//! profiling example (included with `#[path]`, beside `sessions.rs`): the tables and indexes
//! redkeep keeps for these reads, records in bincode, and each read as the benchmark times
//! it, so `read_profile`'s instruction counts are those of the benchmark's bare redb.
#![allow(dead_code)]

use redb::{ReadableDatabase, TableDefinition};
use redkeep::User;
use sha2::{Digest, Sha256};

use super::sessions::SessionRow;

pub const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
pub const BY_EMAIL: TableDefinition<&str, u64> = TableDefinition::new("users_email");
pub const BY_CREATED: TableDefinition<(i64, u64), ()> = TableDefinition::new("users_created");
pub const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
pub const ROLES: TableDefinition<u64, &[u8]> = TableDefinition::new("roles");
/// A user's role grants: `(user, role)` → active.
pub const USER_ROLES: TableDefinition<(u64, u64), bool> = TableDefinition::new("user_roles");

/// The permissions of the system role `user` (every account holds it; role id 1).
pub const USER_PERMISSIONS: [&str; 3] =
    ["basic_access", "session_management", "profile_management"];
/// The permissions of the `editor` role (role id 2).
pub const EDITOR_PERMISSIONS: [&str; 2] = ["docs.read", "docs.edit"];

pub fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
}

pub fn dec<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .unwrap()
        .0
}

/// The key a session is kept under: the SHA-256 of its token, as redkeep keeps it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Writes the roles `user` (id 1) and `editor` (id 2) as `(name, permissions)`.
pub fn put_roles(tx: &redb::WriteTransaction) {
    let mut roles = tx.open_table(ROLES).unwrap();
    let user: Vec<String> = USER_PERMISSIONS.iter().map(|p| p.to_string()).collect();
    let editor: Vec<String> = EDITOR_PERMISSIONS.iter().map(|p| p.to_string()).collect();
    roles.insert(1, enc(&("user", user)).as_slice()).unwrap();
    roles
        .insert(2, enc(&("editor", editor)).as_slice())
        .unwrap();
}

pub fn by_email(db: &redb::Database, email: &str) -> Option<User> {
    let tx = db.begin_read().unwrap();
    let id = tx
        .open_table(BY_EMAIL)
        .unwrap()
        .get(email)
        .unwrap()?
        .value();
    let bytes = tx.open_table(USERS).unwrap().get(id).unwrap()?;
    Some(dec(bytes.value()))
}

pub fn by_id(db: &redb::Database, id: u64) -> Option<User> {
    let tx = db.begin_read().unwrap();
    let bytes = tx.open_table(USERS).unwrap().get(id).unwrap()?;
    Some(dec(bytes.value()))
}

/// The session of `token` and its user, when the session is live at `now` and the user
/// active.
pub fn validate(db: &redb::Database, token: &str, now: i64) -> Option<(User, SessionRow)> {
    let h = token_hash(token);
    let tx = db.begin_read().unwrap();
    let s: SessionRow = dec(tx
        .open_table(SESSIONS)
        .unwrap()
        .get(h.as_slice())
        .unwrap()?
        .value());
    let u: User = dec(tx
        .open_table(USERS)
        .unwrap()
        .get(s.user_id)
        .unwrap()?
        .value());
    (u.is_active && now < s.deadline()).then_some((u, s))
}

/// Whether active user `user` holds `perm` through an active grant (or `*`).
pub fn has_permission(db: &redb::Database, user: u64, perm: &str) -> bool {
    let tx = db.begin_read().unwrap();
    let u: User = dec(tx
        .open_table(USERS)
        .unwrap()
        .get(user)
        .unwrap()
        .unwrap()
        .value());
    if !u.is_active {
        return false;
    }
    let roles = tx.open_table(ROLES).unwrap();
    for row in tx
        .open_table(USER_ROLES)
        .unwrap()
        .range((user, 0)..=(user, u64::MAX))
        .unwrap()
    {
        let (k, active) = row.unwrap();
        if !active.value() {
            continue;
        }
        let (_, perms): (String, Vec<String>) =
            dec(roles.get(k.value().1).unwrap().unwrap().value());
        if perms.iter().any(|p| p == perm || p == "*") {
            return true;
        }
    }
    false
}

/// The 50 users created at `from` or later, oldest first.
pub fn page(db: &redb::Database, from: i64) -> Vec<User> {
    let tx = db.begin_read().unwrap();
    let users = tx.open_table(USERS).unwrap();
    tx.open_table(BY_CREATED)
        .unwrap()
        .range((from, 0)..)
        .unwrap()
        .take(50)
        .map(|r| dec(users.get(r.unwrap().0.value().1).unwrap().unwrap().value()))
        .collect()
}
