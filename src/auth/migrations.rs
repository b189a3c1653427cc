//! The schema history of redkeep's own tables. Each step reads old data through the frozen
//! shapes of `legacy.rs`, and each can be reversed.
//!
//! - v1: users, avatars, invites (and, created on demand, roles, sessions, agent sessions,
//!   API keys, audit), in format 1.
//! - v2: tenancy and default roles. Stores written before organizations get a "Default
//!   Workspace" (slug `default`) holding every user without an org, as admins, with it as
//!   their current org; the first administrator (or else the first user) owns it. Users
//!   without any role get `user` (and `admin` when `is_admin`). The step keeps a journal of
//!   what it created, which its reverse removes. The reverse remembers the users who had no
//!   role or no org then (an operator's choice), and the next upgrade leaves them so.
//! - v3: identities and evolvable records. Every user gets a random `uid` that binds their
//!   workspace folder (the folders are marked after the commit), the password hash and
//!   lockout counters move to the `credentials` table, string primary keys take the escaped
//!   key encoding, and every index is rebuilt in today's layout. Other records keep their
//!   bytes and are read through their types' upgrades. The reverse writes every record of
//!   redkeep's tables back in format 1 and remembers the uids, so a later upgrade gives each
//!   user their folder back.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::agents::AgentSession;
use super::api_keys::{ApiKey, ApiKeyV1, KeyOwnerV1};
use super::audit::{AuditEvent, AuditEventV1};
use super::invites::{Invite, InviteV1};
use super::legacy::{self, AgentSessionV1, AvatarV1, OrgMemberV1, OrgRoleV1, RoleV1, UserRoleV1};
use super::orgs::{Org, OrgMember, OrgV1};
use super::roles::{Role, SYSTEM_ROLES, UserRole};
use super::sessions::{Session, SessionV1};
use super::users::{Avatar, Credential, Uid, User, UserV1, new_stamp};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Key, KeyRange, Meta, Migration, Order, Record, WriteTx, record_table};

/// Set by v3 until the workspace folders of existing users carry their marker.
pub(crate) const FOLDERS_UNMARKED: &str = "folders_unmarked";
const TENANCY_JOURNAL: &str = "v2_journal";
const KEPT_BELOW_V2: &str = "v1_kept";
const SAVED_UIDS: &str = "v3_uids";
const SAVED_ORG_IDS: &str = "v3_org_external_ids";

/// Every migration step, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 2,
        name: "tenancy: default workspace for users without an org; default roles",
        up: tenancy_up,
        down: Some(tenancy_down),
    },
    Migration {
        version: 3,
        name: "identities: user uids binding workspace folders; credentials apart from users; evolvable records",
        up: identities_up,
        down: Some(identities_down),
    },
];

/// What the v2 step created, so its reverse removes exactly that.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TenancyJournal {
    roles: Vec<u64>,
    grants: Vec<(u64, u64)>,
    org: Option<u64>,
    members: Vec<(u64, u64)>,
    /// Users whose current org was set, with the value before.
    current_org: Vec<(u64, Option<u64>)>,
}

impl TenancyJournal {
    fn is_empty(&self) -> bool {
        self.roles.is_empty()
            && self.grants.is_empty()
            && self.org.is_none()
            && self.members.is_empty()
            && self.current_org.is_empty()
    }
}

/// The users who, when the store went below version 2, had no role or no org: the operator
/// made them so (a `role revoke`, an org left), so the next upgrade leaves them so instead of
/// giving them the defaults it gives users from before roles and orgs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeptBelowV2 {
    no_role: HashSet<u64>,
    no_org: HashSet<u64>,
}

fn json_err(what: &str, e: serde_json::Error) -> Error {
    Error::Invariant {
        what: format!("{what}: {e}"),
    }
}

fn tenancy_up(tx: &WriteTx<'_>, now: Timestamp) -> Result<()> {
    let raw = tx.raw_write()?;
    let kept: KeptBelowV2 = match tx.meta(KEPT_BELOW_V2)? {
        Some(text) => serde_json::from_slice(&text)
            .map_err(|e| json_err("reading the users kept without roles or orgs", e))?,
        None => KeptBelowV2::default(),
    };
    let mut journal = TenancyJournal::default();
    let mut users: Vec<UserV1> = legacy::all(raw)?;
    let mut roles: Vec<RoleV1> = legacy::all(raw)?;
    for (name, description, perms, priority) in SYSTEM_ROLES {
        if roles.iter().any(|r| r.name == name) {
            continue;
        }
        let role = RoleV1 {
            id: tx.next_sequence("roles")?,
            name: name.into(),
            description: description.into(),
            permissions: perms.iter().map(|p| p.to_string()).collect(),
            priority,
            is_system: true,
            created_at: now.0,
        };
        legacy::put(tx, &role)?;
        journal.roles.push(role.id);
        roles.push(role);
    }
    let with_roles: HashSet<u64> = legacy::all::<UserRoleV1>(raw)?
        .iter()
        .map(|a| a.user_id)
        .collect();
    for u in &users {
        if with_roles.contains(&u.id) || kept.no_role.contains(&u.id) {
            continue;
        }
        let names: &[&str] = if u.is_admin {
            &["user", "admin"]
        } else {
            &["user"]
        };
        for name in names {
            if let Some(role) = roles.iter().find(|r| r.name == *name) {
                legacy::put(
                    tx,
                    &UserRoleV1 {
                        user_id: u.id,
                        role_id: role.id,
                        assigned_by: None,
                        active: true,
                        assigned_at: now.0,
                    },
                )?;
                journal.grants.push((u.id, role.id));
            }
        }
    }
    let with_orgs: HashSet<u64> = legacy::all::<OrgMemberV1>(raw)?
        .iter()
        .map(|m| m.user_id)
        .collect();
    let orphans: Vec<usize> = (0..users.len())
        .filter(|&i| !with_orgs.contains(&users[i].id) && !kept.no_org.contains(&users[i].id))
        .collect();
    if let Some(&first) = orphans.first() {
        let owner = orphans
            .iter()
            .map(|&i| &users[i])
            .find(|u| u.is_admin)
            .unwrap_or(&users[first])
            .id;
        let orgs: Vec<OrgV1> = legacy::all(raw)?;
        let mut slug = "default".to_string();
        let mut n = 2;
        while orgs.iter().any(|o| o.slug == slug) {
            slug = format!("default-{n}");
            n += 1;
        }
        let org = OrgV1 {
            id: tx.next_sequence("orgs")?,
            name: "Default Workspace".into(),
            slug,
            description: "Created when organizations were introduced".into(),
            is_personal: false,
            is_default: true,
            created_at: now.0,
            updated_at: now.0,
        };
        legacy::put(tx, &org)?;
        journal.org = Some(org.id);
        for i in orphans {
            let u = &mut users[i];
            legacy::put(
                tx,
                &OrgMemberV1 {
                    org_id: org.id,
                    user_id: u.id,
                    role: if u.id == owner {
                        OrgRoleV1::Owner
                    } else {
                        OrgRoleV1::Admin
                    },
                    joined_at: now.0,
                },
            )?;
            journal.members.push((org.id, u.id));
            journal.current_org.push((u.id, u.current_org_id));
            u.current_org_id = Some(org.id);
            legacy::put(tx, &*u)?;
        }
    }
    tx.remove_meta(KEPT_BELOW_V2)?;
    // A store made at version 2 or later whose step made nothing needs no journal: its
    // reverse knows it made nothing (a journal would only be a line its export never had).
    if !journal.is_empty() || crate::store::born_at(tx)?.is_none_or(|v| v < 2) {
        let text =
            serde_json::to_vec(&journal).map_err(|e| json_err("writing the v2 journal", e))?;
        tx.set_meta(TENANCY_JOURNAL, &text)?;
    }
    legacy::rebuild_v2_indexes(tx)
}

/// Remembers the users without a role or without an org as the store goes below version
/// 2 (before the step's own grants and memberships are taken away), for the next upgrade.
fn keep_below_v2(tx: &WriteTx<'_>) -> Result<()> {
    let raw = tx.raw_write()?;
    let with_roles: HashSet<u64> = legacy::all::<UserRoleV1>(raw)?
        .iter()
        .map(|a| a.user_id)
        .collect();
    let with_orgs: HashSet<u64> = legacy::all::<OrgMemberV1>(raw)?
        .iter()
        .map(|m| m.user_id)
        .collect();
    let mut kept = KeptBelowV2::default();
    for u in legacy::all::<UserV1>(raw)? {
        if !with_roles.contains(&u.id) {
            kept.no_role.insert(u.id);
        }
        if !with_orgs.contains(&u.id) {
            kept.no_org.insert(u.id);
        }
    }
    if kept.no_role.is_empty() && kept.no_org.is_empty() {
        return tx.remove_meta(KEPT_BELOW_V2);
    }
    let text = serde_json::to_vec(&kept)
        .map_err(|e| json_err("saving the users without roles or orgs", e))?;
    tx.set_meta(KEPT_BELOW_V2, &text)
}

/// Refuses to take away the Default Workspace step v2 made when anything but what the step
/// made there uses it: members who joined it since, users who chose it as their current org,
/// API keys it owns. Taking it away would leave those pointing at no org, and the next
/// upgrade would not mend them.
fn refuse_default_org_in_use(
    raw: &dyn crate::store::RawRead,
    org: u64,
    journal: &TenancyJournal,
) -> Result<()> {
    let made: HashSet<(u64, u64)> = journal.members.iter().copied().collect();
    let members = legacy::all::<OrgMemberV1>(raw)?
        .into_iter()
        .filter(|m| m.org_id == org && !made.contains(&(org, m.user_id)))
        .count();
    let set: HashSet<u64> = journal.current_org.iter().map(|(id, _)| *id).collect();
    let current = legacy::all::<UserV1>(raw)?
        .into_iter()
        .filter(|u| u.current_org_id == Some(org) && !set.contains(&u.id))
        .count();
    let keys = legacy::all::<ApiKeyV1>(raw)?
        .into_iter()
        .filter(|k| matches!(k.owner, KeyOwnerV1::Org(o) if o == org))
        .count();
    let mut uses = Vec::new();
    for (n, what) in [
        (members, "member(s) who joined it since"),
        (current, "user(s) who chose it as their current org"),
        (keys, "API key(s) it owns"),
    ] {
        if n > 0 {
            uses.push(format!("{n} {what}"));
        }
    }
    if uses.is_empty() {
        return Ok(());
    }
    Err(Error::denied(format!(
        "step v2 cannot be reversed: the Default Workspace it made (org {org}) is in use ({}), \
 and version 1 would keep them pointing at no org; nothing was changed; move them to \
 another org (or remove them) first, or restore a backup made before version 2",
        uses.join(", ")
    )))
}

fn tenancy_down(tx: &WriteTx<'_>, _now: Timestamp) -> Result<()> {
    let Some(text) = tx.meta(TENANCY_JOURNAL)? else {
        // A file made at version 2 or later never ran the step: it created nothing here.
        if crate::store::born_at(tx)?.is_some_and(|v| v >= 2) {
            keep_below_v2(tx)?;
            return legacy::rebuild_v2_indexes(tx);
        }
        return Err(Error::denied(
            "this store has no record of what step v2 created (an earlier redkeep made or migrated it without one), so it cannot go below version 2; restore a backup made before it reached version 2 instead",
        ));
    };
    let journal: TenancyJournal =
        serde_json::from_slice(&text).map_err(|e| json_err("reading the v2 journal", e))?;
    let raw = tx.raw_write()?;
    if let Some(org) = journal.org {
        refuse_default_org_in_use(raw, org, &journal)?;
    }
    keep_below_v2(tx)?;
    for (user, before) in &journal.current_org {
        if let Some(mut u) = legacy::get::<UserV1>(raw, &user.to_be_bytes())?
            && u.current_org_id == journal.org
        {
            u.current_org_id = *before;
            legacy::put(tx, &u)?;
        }
    }
    for (org, user) in &journal.members {
        legacy::remove::<OrgMemberV1>(tx, &(*org, *user).to_bytes())?;
    }
    if let Some(org) = journal.org {
        legacy::remove::<OrgV1>(tx, &org.to_be_bytes())?;
    }
    for (user, role) in &journal.grants {
        legacy::remove::<UserRoleV1>(tx, &(*user, *role).to_bytes())?;
    }
    let still_held: Vec<UserRoleV1> = legacy::all(raw)?;
    for role in &journal.roles {
        if !still_held.iter().any(|a| a.role_id == *role) {
            legacy::remove::<RoleV1>(tx, &role.to_be_bytes())?;
        }
    }
    tx.remove_meta(TENANCY_JOURNAL)?;
    legacy::rebuild_v2_indexes(tx)
}

/// The uid a user had before `migrate down` from v3, kept for the next upgrade.
#[derive(Debug, Serialize, Deserialize)]
struct SavedUid {
    uid: String,
    email: String,
    created_at: i64,
    /// The user's external id (format 1 has no place for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    /// When the password was last set (format 1 keeps no such time), with a digest of the
    /// password hash of that time: the time comes back only for the same password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_set: Option<(i64, String)>,
}

/// A digest of a password hash, to tell at the next upgrade whether the password is still
/// the one of a saved time (the hash itself stays out of `meta`).
fn hash_digest(password_hash: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::bytes::hex(&Sha256::digest(password_hash.as_bytes()))
}

/// An org's external id from before `migrate down` from v3 (format 1 has no place for it),
/// with what tells it is still the same org at the next upgrade.
#[derive(Debug, Serialize, Deserialize)]
struct SavedOrgId {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    /// The user a personal org is of (format 1 has no place for it either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    personal_user: Option<u64>,
    slug: String,
    created_at: i64,
}

/// The users whose uid the v3 step made new (not one saved by `migrate down`): only their
/// folders may be recognised by the creation time their marker holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct UnmarkedFolders {
    pub(crate) fresh: Vec<u64>,
}

fn identities_up(tx: &WriteTx<'_>, _now: Timestamp) -> Result<()> {
    let raw = tx.raw_write()?;
    legacy::delete_index_tables(tx)?;
    let saved: BTreeMap<u64, SavedUid> = match tx.meta(SAVED_UIDS)? {
        Some(text) => {
            serde_json::from_slice(&text).map_err(|e| json_err("reading saved uids", e))?
        }
        None => BTreeMap::new(),
    };
    let users_table = record_table(User::TABLE);
    let creds_table = record_table(Credential::TABLE);
    let mut fresh = Vec::new();
    let mut user_ids = HashSet::new();
    for old in legacy::all::<UserV1>(raw)? {
        user_ids.insert(old.id);
        // The uid from before a `migrate down`, if this is still the same account.
        let same = saved
            .get(&old.id)
            .filter(|s| s.email == old.email && s.created_at == old.created_at);
        let uid = same.and_then(|s| Uid::parse(&s.uid));
        let mut credential = old.credential(new_stamp()?);
        // The time the password was set, when it is still the password of that time.
        if let Some((at, digest)) = same.and_then(|s| s.password_set.as_ref())
            && *digest == hash_digest(&credential.password_hash)
        {
            credential.changed_at = Timestamp(*at);
        }
        let mut user = old.into_user();
        user.external_id = same.and_then(|s| s.external_id.clone());
        user.uid = match uid {
            Some(u) => u,
            None => {
                fresh.push(user.id);
                Uid::generate()?
            }
        };
        let key = user.id.to_bytes();
        raw.put(&users_table, &key, &crate::store::encode(tx, &user)?)?;
        raw.put(&creds_table, &key, &crate::store::encode(tx, &credential)?)?;
    }
    rekey_agent_sessions(tx, |raw_key| {
        std::str::from_utf8(raw_key)
            .ok()
            .map(|s| s.to_string().to_bytes())
    })?;
    let saved_orgs: BTreeMap<u64, SavedOrgId> = match tx.meta(SAVED_ORG_IDS)? {
        Some(text) => serde_json::from_slice(&text)
            .map_err(|e| json_err("reading saved org external ids", e))?,
        None => BTreeMap::new(),
    };
    let orgs_table = record_table(Org::TABLE);
    for (id, s) in &saved_orgs {
        let Some(old) = legacy::get::<OrgV1>(raw, &id.to_be_bytes())? else {
            continue;
        };
        if old.slug != s.slug || old.created_at != s.created_at {
            continue;
        }
        let mut org = Org::from(old);
        org.external_id = s.external_id.clone();
        // The user, if still there (an older build may have deleted them meanwhile).
        org.personal_user = s.personal_user.filter(|u| user_ids.contains(u));
        raw.put(
            &orgs_table,
            &id.to_bytes(),
            &crate::store::encode(tx, &org)?,
        )?;
    }
    for t in super::own_tables() {
        t.rebuild_indexes(tx)?;
    }
    tx.remove_meta(SAVED_UIDS)?;
    tx.remove_meta(SAVED_ORG_IDS)?;
    let unmarked = serde_json::to_vec(&UnmarkedFolders { fresh })
        .map_err(|e| json_err("writing the users to mark", e))?;
    tx.set_meta(FOLDERS_UNMARKED, &unmarked)
}

// Moves every agent session to the key `rekey` gives its old key; the values stay as they are.
fn rekey_agent_sessions(tx: &WriteTx<'_>, rekey: impl Fn(&[u8]) -> Option<Vec<u8>>) -> Result<()> {
    let raw = tx.raw_write()?;
    let table = record_table(AgentSession::TABLE);
    let mut rows = Vec::new();
    raw.range(&table, &KeyRange::all(), Order::Asc, &mut |k, v| {
        rows.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })?;
    for (k, _) in &rows {
        raw.remove(&table, k)?;
    }
    for (k, v) in rows {
        let new = rekey(&k).ok_or_else(|| Error::Corrupt {
            table: AgentSession::TABLE.into(),
            key: crate::bytes::hex(&k),
            reason: "malformed agent session id".into(),
        })?;
        raw.put(&table, &new, &v)?;
    }
    Ok(())
}

fn all<R: Record>(tx: &WriteTx<'_>) -> Result<Vec<R>> {
    tx.table::<R>()
        .range(KeyRange::all(), Order::Asc, usize::MAX)
}

fn identities_down(tx: &WriteTx<'_>, _now: Timestamp) -> Result<()> {
    legacy::delete_index_tables(tx)?;
    let credentials: BTreeMap<u64, Credential> = all::<Credential>(tx)?
        .into_iter()
        .map(|c| (c.user_id, c))
        .collect();
    let mut saved = BTreeMap::new();
    for u in all::<User>(tx)? {
        saved.insert(
            u.id,
            SavedUid {
                uid: u.uid.to_string(),
                email: u.email.clone(),
                created_at: u.created_at.0,
                external_id: u.external_id.clone(),
                password_set: credentials
                    .get(&u.id)
                    .map(|c| (c.changed_at.0, hash_digest(&c.password_hash))),
            },
        );
        legacy::put(tx, &UserV1::from_parts(&u, credentials.get(&u.id)))?;
    }
    let text = serde_json::to_vec(&saved).map_err(|e| json_err("saving uids", e))?;
    tx.set_meta(SAVED_UIDS, &text)?;
    tx.raw_write()?
        .delete_table(&record_table(Credential::TABLE))?;
    for i in all::<Invite>(tx)? {
        legacy::put(tx, &InviteV1::from(&i))?;
    }
    for r in all::<Role>(tx)? {
        legacy::put(tx, &RoleV1::from(&r))?;
    }
    for r in all::<UserRole>(tx)? {
        legacy::put(tx, &UserRoleV1::from(&r))?;
    }
    for s in all::<Session>(tx)? {
        legacy::put(tx, &SessionV1::from(&s))?;
    }
    let agents = all::<AgentSession>(tx)?;
    tx.raw_write()?
        .delete_table(&record_table(AgentSession::TABLE))?;
    for a in &agents {
        legacy::put(tx, &AgentSessionV1::from(a))?;
    }
    let mut saved_orgs = BTreeMap::new();
    for o in all::<Org>(tx)? {
        if o.external_id.is_some() || o.personal_user.is_some() {
            saved_orgs.insert(
                o.id,
                SavedOrgId {
                    external_id: o.external_id.clone(),
                    personal_user: o.personal_user,
                    slug: o.slug.clone(),
                    created_at: o.created_at.0,
                },
            );
        }
        legacy::put(tx, &OrgV1::from(&o))?;
    }
    if saved_orgs.is_empty() {
        tx.remove_meta(SAVED_ORG_IDS)?;
    } else {
        let text =
            serde_json::to_vec(&saved_orgs).map_err(|e| json_err("saving org external ids", e))?;
        tx.set_meta(SAVED_ORG_IDS, &text)?;
    }
    for m in all::<OrgMember>(tx)? {
        legacy::put(tx, &OrgMemberV1::from(&m))?;
    }
    for k in all::<ApiKey>(tx)? {
        legacy::put(tx, &ApiKeyV1::from(&k))?;
    }
    for e in all::<AuditEvent>(tx)? {
        legacy::put(tx, &AuditEventV1::from(&e))?;
    }
    for a in all::<Avatar>(tx)? {
        legacy::put(tx, &AvatarV1::from(&a))?;
    }
    tx.remove_meta(FOLDERS_UNMARKED)?;
    legacy::rebuild_v2_indexes(tx)
}
