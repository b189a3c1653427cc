//! Frozen shapes of the records as schema versions 1 and 2 stored them (format 1: bincode,
//! fields in order), with the primary keys and index layouts of those versions. They are
//! used to read records written by the first release, and by the migrations, which read and
//! write old data through these types and never through today's. Never change them.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::agents::{AgentSession, AgentState};
use super::api_keys::{ApiKeyV1, KeyOwnerV1};
use super::audit::AuditEventV1;
use super::invites::InviteV1;
use super::orgs::{OrgMember, OrgRole, OrgV1};
use super::roles::{Role, UserRole};
use super::sessions::SessionV1;
use super::users::{Avatar, UserV1};
use crate::error::{Error, Result};
use crate::store::{
    KeyPart, KeyRange, Order, RawRead, WriteTx, codec, get_owned, index_table, record_table,
};

/// A frozen record shape with the key and index layout its version stored.
pub(crate) trait LegacyRecord: Serialize + DeserializeOwned {
    /// The table's name.
    const TABLE: &'static str;
    /// The primary key bytes as versions 1 and 2 wrote them.
    fn key_bytes(&self) -> Vec<u8>;
    /// Index entries as version 2 wrote them: (index name, index key, unique).
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)>;
}

fn k<T: KeyPart + ?Sized>(part: &T) -> Vec<u8> {
    let mut out = Vec::new();
    part.put(&mut out);
    out
}

impl LegacyRecord for UserV1 {
    const TABLE: &'static str = "users";
    fn key_bytes(&self) -> Vec<u8> {
        self.id.to_be_bytes().to_vec()
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        let mut out = vec![("email", k(&self.email.trim().to_lowercase()), true)];
        if let Some(u) = &self.username {
            out.push(("username", k(&u.to_lowercase()), true));
        }
        out.push(("is_admin", k(&self.is_admin), false));
        out.push(("created_at", k(&self.created_at), false));
        out
    }
}

impl LegacyRecord for InviteV1 {
    const TABLE: &'static str = "invites";
    fn key_bytes(&self) -> Vec<u8> {
        self.hash.to_vec()
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        vec![
            ("prefix", k(&self.prefix), true),
            ("status", vec![self.stored_status as u8], false),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoleV1 {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub permissions: BTreeSet<String>,
    pub priority: i64,
    pub is_system: bool,
    pub created_at: i64,
}

impl From<&Role> for RoleV1 {
    fn from(r: &Role) -> RoleV1 {
        RoleV1 {
            id: r.id,
            name: r.name.clone(),
            description: r.description.clone(),
            permissions: r.permissions.clone(),
            priority: r.priority,
            is_system: r.is_system,
            created_at: r.created_at.0,
        }
    }
}

impl LegacyRecord for RoleV1 {
    const TABLE: &'static str = "roles";
    fn key_bytes(&self) -> Vec<u8> {
        self.id.to_be_bytes().to_vec()
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        vec![("name", k(&self.name), true)]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserRoleV1 {
    pub user_id: u64,
    pub role_id: u64,
    pub assigned_by: Option<u64>,
    pub active: bool,
    pub assigned_at: i64,
}

impl From<&UserRole> for UserRoleV1 {
    fn from(r: &UserRole) -> UserRoleV1 {
        UserRoleV1 {
            user_id: r.user_id,
            role_id: r.role_id,
            assigned_by: r.assigned_by,
            active: r.active,
            assigned_at: r.assigned_at.0,
        }
    }
}

impl LegacyRecord for UserRoleV1 {
    const TABLE: &'static str = "user_roles";
    fn key_bytes(&self) -> Vec<u8> {
        k(&(self.user_id, self.role_id))
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        vec![
            ("by_user", k(&self.user_id), false),
            ("by_role", k(&self.role_id), false),
        ]
    }
}

impl LegacyRecord for SessionV1 {
    const TABLE: &'static str = "sessions";
    fn key_bytes(&self) -> Vec<u8> {
        self.hash.to_vec()
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        vec![
            ("short_id", k(&self.short_id), true),
            ("by_user", k(&self.user_id), false),
            ("by_expires", k(&self.expires_at), false),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AgentStateV1 {
    pub status: String,
    pub current_step: Option<String>,
    pub progress: Vec<String>,
    pub failures: Vec<String>,
    pub artifacts: Vec<String>,
    pub context: String,
    pub escalation: Option<String>,
    pub goal: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AgentSessionV1 {
    pub id: String,
    pub user_id: u64,
    pub name: String,
    pub state: AgentStateV1,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
}

impl From<&AgentSession> for AgentSessionV1 {
    fn from(a: &AgentSession) -> AgentSessionV1 {
        let s: &AgentState = &a.state;
        AgentSessionV1 {
            id: a.id.clone(),
            user_id: a.user_id,
            name: a.name.clone(),
            state: AgentStateV1 {
                status: s.status.clone(),
                current_step: s.current_step.clone(),
                progress: s.progress.clone(),
                failures: s.failures.clone(),
                artifacts: s.artifacts.clone(),
                context: s.context.clone(),
                escalation: s.escalation.clone(),
                goal: s.goal.clone(),
            },
            created_at: a.created_at.0,
            updated_at: a.updated_at.0,
            expires_at: a.expires_at.map(|t| t.0),
        }
    }
}

impl LegacyRecord for AgentSessionV1 {
    const TABLE: &'static str = "agent_sessions";
    fn key_bytes(&self) -> Vec<u8> {
        // Versions 1 and 2 stored a string key as its bytes, unescaped.
        self.id.as_bytes().to_vec()
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        vec![
            ("by_user", k(&(self.user_id, self.updated_at)), false),
            ("by_updated", k(&self.updated_at), false),
        ]
    }
}

impl LegacyRecord for OrgV1 {
    const TABLE: &'static str = "orgs";
    fn key_bytes(&self) -> Vec<u8> {
        self.id.to_be_bytes().to_vec()
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        vec![("slug", k(&self.slug), true)]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OrgRoleV1 {
    Owner,
    Admin,
    Member,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrgMemberV1 {
    pub org_id: u64,
    pub user_id: u64,
    pub role: OrgRoleV1,
    pub joined_at: i64,
}

impl From<&OrgMember> for OrgMemberV1 {
    fn from(m: &OrgMember) -> OrgMemberV1 {
        OrgMemberV1 {
            org_id: m.org_id,
            user_id: m.user_id,
            role: match m.role {
                OrgRole::Owner => OrgRoleV1::Owner,
                OrgRole::Admin => OrgRoleV1::Admin,
                OrgRole::Member => OrgRoleV1::Member,
            },
            joined_at: m.joined_at.0,
        }
    }
}

impl LegacyRecord for OrgMemberV1 {
    const TABLE: &'static str = "org_members";
    fn key_bytes(&self) -> Vec<u8> {
        k(&(self.org_id, self.user_id))
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        vec![
            ("by_org", k(&self.org_id), false),
            ("by_user", k(&self.user_id), false),
        ]
    }
}

impl LegacyRecord for ApiKeyV1 {
    const TABLE: &'static str = "api_keys";
    fn key_bytes(&self) -> Vec<u8> {
        self.hash.to_vec()
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        let owner = match self.owner {
            KeyOwnerV1::User(id) => k(&(0u32, id)),
            KeyOwnerV1::Org(id) => k(&(1u32, id)),
        };
        vec![
            ("prefix", k(&self.prefix), true),
            ("by_owner", owner, false),
        ]
    }
}

impl LegacyRecord for AuditEventV1 {
    const TABLE: &'static str = "audit";
    fn key_bytes(&self) -> Vec<u8> {
        self.seq.to_be_bytes().to_vec()
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        match self.subject_user {
            Some(u) => vec![("by_subject_user", k(&u), false)],
            None => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AvatarV1 {
    pub user_id: u64,
    pub jpeg: Vec<u8>,
}

impl From<&Avatar> for AvatarV1 {
    fn from(a: &Avatar) -> AvatarV1 {
        AvatarV1 {
            user_id: a.user_id,
            jpeg: a.jpeg.clone(),
        }
    }
}

impl LegacyRecord for AvatarV1 {
    const TABLE: &'static str = "avatars";
    fn key_bytes(&self) -> Vec<u8> {
        self.user_id.to_be_bytes().to_vec()
    }
    fn indexes(&self) -> Vec<(&'static str, Vec<u8>, bool)> {
        Vec::new()
    }
}

fn corrupt(table: &str, key: &[u8], reason: String) -> Error {
    Error::Corrupt {
        table: table.to_string(),
        key: crate::store::show_key(key),
        reason,
    }
}

/// Reads a format-1 value as `T`.
pub(crate) fn decode<T: LegacyRecord>(key: &[u8], value: &[u8]) -> Result<T> {
    let none = |id: u64| -> std::result::Result<crate::store::format::Shape, _> {
        Err(crate::store::format::FormatError(format!(
            "shape {id} in a format-1 value"
        )))
    };
    let stored = codec::Stored::parse(value, &none).map_err(|r| corrupt(T::TABLE, key, r))?;
    if !stored.is_legacy() {
        return Err(corrupt(
            T::TABLE,
            key,
            "expected a record of the first release's format".into(),
        ));
    }
    stored.decode().map_err(|r| corrupt(T::TABLE, key, r))
}

/// Every record of `T`'s table, decoded as `T` (format 1 only).
pub(crate) fn all<T: LegacyRecord>(raw: &dyn RawRead) -> Result<Vec<T>> {
    let mut out = Vec::new();
    raw.range(
        &record_table(T::TABLE),
        &KeyRange::all(),
        Order::Asc,
        &mut |key, v| {
            out.push(decode::<T>(key, v)?);
            Ok(true)
        },
    )?;
    Ok(out)
}

/// The record of `T`'s table at `key`, if any.
pub(crate) fn get<T: LegacyRecord>(raw: &dyn RawRead, key: &[u8]) -> Result<Option<T>> {
    get_owned(raw, &record_table(T::TABLE), key)?
        .map(|v| decode::<T>(key, &v))
        .transpose()
}

/// Writes `record` in format 1 under its old key (indexes are rebuilt separately).
pub(crate) fn put<T: LegacyRecord>(tx: &WriteTx<'_>, record: &T) -> Result<()> {
    let value = codec::encode_legacy(record).map_err(|e| Error::Invariant {
        what: format!("cannot encode a {} record in format 1: {e}", T::TABLE),
    })?;
    tx.raw_write()?
        .put(&record_table(T::TABLE), &record.key_bytes(), &value)
}

/// Removes the record of `T`'s table at `key`.
pub(crate) fn remove<T: LegacyRecord>(tx: &WriteTx<'_>, key: &[u8]) -> Result<()> {
    tx.raw_write()?.remove(&record_table(T::TABLE), key)?;
    Ok(())
}

fn rebuild<T: LegacyRecord>(tx: &WriteTx<'_>) -> Result<()> {
    let raw = tx.raw_write()?;
    for r in all::<T>(raw)? {
        let pk = r.key_bytes();
        for (index, mut key, unique) in r.indexes() {
            if !unique {
                key.extend_from_slice(&pk);
            }
            // Versions 1 and 2 stored the primary key as the value of every entry.
            raw.put(&index_table(T::TABLE, index), &key, &pk)?;
        }
    }
    Ok(())
}

/// Deletes every index table and rebuilds redkeep's indexes in the layout of version 2, from
/// records that are all in format 1.
pub(crate) fn rebuild_v2_indexes(tx: &WriteTx<'_>) -> Result<()> {
    delete_index_tables(tx)?;
    rebuild::<UserV1>(tx)?;
    rebuild::<InviteV1>(tx)?;
    rebuild::<RoleV1>(tx)?;
    rebuild::<UserRoleV1>(tx)?;
    rebuild::<SessionV1>(tx)?;
    rebuild::<AgentSessionV1>(tx)?;
    rebuild::<OrgV1>(tx)?;
    rebuild::<OrgMemberV1>(tx)?;
    rebuild::<ApiKeyV1>(tx)?;
    rebuild::<AuditEventV1>(tx)?;
    Ok(())
}

/// The tables of redkeep's own records, by name.
pub(crate) const OWN_TABLES: [&str; 12] = [
    "users",
    "credentials",
    "avatars",
    "invites",
    "roles",
    "user_roles",
    "sessions",
    "agent_sessions",
    "orgs",
    "org_members",
    "api_keys",
    "audit",
];

/// Deletes the index tables of redkeep's own records (application indexes are kept).
pub(crate) fn delete_index_tables(tx: &WriteTx<'_>) -> Result<()> {
    let raw = tx.raw_write()?;
    for name in raw.table_names()? {
        let own = name
            .strip_prefix("i:")
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(table, _)| OWN_TABLES.contains(&table));
        if own {
            raw.delete_table(&name)?;
        }
    }
    Ok(())
}

/// The last schema version whose records are all in format 1.
pub(crate) const LAST_FORMAT_ONE: u64 = 2;

/// Takes out of redkeep's tables the records the migrations from a store before version 3
/// could not read: a value that is not its table's format-1 shape, an agent session whose
/// key is not text. Their bytes go to the table's quarantine table, as `check --repair` keeps
/// them, and the indexes are rebuilt in the layout of version 2 without them. Salvage runs
/// it on an old copy so that one damaged record does not stop the copy's migration. Returns
/// one line per record set aside.
///
/// # Errors
/// `Storage` when the store cannot be written.
pub(crate) fn set_aside_unreadable(tx: &WriteTx<'_>) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    screen::<UserV1>(tx, &mut changes, |_| true)?;
    screen::<InviteV1>(tx, &mut changes, |_| true)?;
    screen::<RoleV1>(tx, &mut changes, |_| true)?;
    screen::<UserRoleV1>(tx, &mut changes, |_| true)?;
    screen::<SessionV1>(tx, &mut changes, |_| true)?;
    screen::<AgentSessionV1>(tx, &mut changes, |key| std::str::from_utf8(key).is_ok())?;
    screen::<OrgV1>(tx, &mut changes, |_| true)?;
    screen::<OrgMemberV1>(tx, &mut changes, |_| true)?;
    screen::<ApiKeyV1>(tx, &mut changes, |_| true)?;
    screen::<AuditEventV1>(tx, &mut changes, |_| true)?;
    rebuild_v2_indexes(tx)?;
    Ok(changes)
}

// Moves the records of `T`'s table that do not decode as `T`, or whose key `key_ok` refuses,
// to its quarantine table.
fn screen<T: LegacyRecord>(
    tx: &WriteTx<'_>,
    changes: &mut Vec<String>,
    key_ok: impl Fn(&[u8]) -> bool,
) -> Result<()> {
    let raw = tx.raw_write()?;
    let table = record_table(T::TABLE);
    let mut unreadable = Vec::new();
    raw.range(&table, &KeyRange::all(), Order::Asc, &mut |key, value| {
        let problem = match decode::<T>(key, value) {
            Err(Error::Corrupt { reason, .. }) => Some(reason),
            Err(other) => Some(other.to_string()),
            Ok(_) if !key_ok(key) => Some("its key is not text".to_string()),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            unreadable.push((key.to_vec(), value.to_vec(), problem));
        }
        Ok(true)
    })?;
    let aside = crate::store::quarantine_table(T::TABLE);
    for (key, value, problem) in unreadable {
        raw.put(&record_table(&aside), &key, &value)?;
        raw.remove(&table, &key)?;
        changes.push(format!(
            "fixed: record {} of table {} is corrupt: {problem}; its bytes were moved to {aside}",
            crate::store::show_key(&key),
            T::TABLE
        ));
    }
    Ok(())
}

/// The schema version a store's records show, for salvage to check the version the store
/// records (a damaged byte can make it read older, newer, or not at all). 3 when most user
/// records are in today's format (version 3 rewrote every user), or, with as many of each
/// (none, when the users could not be read), when there are credentials (version 3 made
/// that table) or any record in today's format. Else, with most user records in format 1,
/// 2 when there is an organization (version 2 made one for every store with users) and 1
/// when there is none. `None` when nothing tells.
///
/// # Errors
/// `Storage` when the store cannot be read.
pub(crate) fn version_from_records(raw: &dyn RawRead) -> Result<Option<u64>> {
    let (mut old, mut new) = (0u64, 0u64);
    raw.range(
        &record_table(UserV1::TABLE),
        &KeyRange::all(),
        Order::Asc,
        &mut |_, value| {
            match value.first() {
                Some(&codec::FORMAT_LEGACY) => old += 1,
                Some(&codec::FORMAT_CURRENT) => new += 1,
                _ => {}
            }
            Ok(true)
        },
    )?;
    let any = |table: &str| -> Result<bool> {
        let mut found = false;
        raw.range(
            &record_table(table),
            &KeyRange::all(),
            Order::Asc,
            &mut |_, _| {
                found = true;
                Ok(false)
            },
        )?;
        Ok(found)
    };
    // With as many user records of each format (none, say), today's format anywhere
    // tells: versions 1 and 2 wrote none.
    let today_anywhere = || -> Result<bool> {
        let mut found = false;
        for table in OWN_TABLES {
            raw.range(
                &record_table(table),
                &KeyRange::all(),
                Order::Asc,
                &mut |_, v| {
                    found = v.first() == Some(&codec::FORMAT_CURRENT);
                    Ok(!found)
                },
            )?;
            if found {
                break;
            }
        }
        Ok(found)
    };
    if new > old || (new == old && (any("credentials")? || today_anywhere()?)) {
        return Ok(Some(3));
    }
    if old == new {
        return Ok(None);
    }
    Ok(Some(if any(OrgV1::TABLE)? { 2 } else { 1 }))
}
