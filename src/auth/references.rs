//! Cross-table rules of the account domain, checked by `redkeep check`: every reference (the
//! user of a session, the org of a membership, the owner of a key, …) resolves, every org has
//! an owner, every user has a credential, belongs to an org and works in one of theirs.
//! Damaged records are reported by the table checks and skipped here.

use std::collections::{BTreeMap, BTreeSet};

use super::agents::AgentSession;
use super::api_keys::{ApiKey, KeyOwner};
use super::invites::Invite;
use super::orgs::{Org, OrgMember, OrgRole};
use super::roles::{Role, UserRole};
use super::sessions::Session;
use super::users::{Avatar, Credential, User};
use crate::error::{Error, Result};
use crate::store::{CheckReport, KeyRange, Order, Record, Source, Table};

// Calls `f` with each record of `R` that decodes; damaged ones are left to the table checks.
fn each<R: Record>(tx: &dyn Source, mut f: impl FnMut(R)) -> Result<()> {
    let t = Table::<R, dyn Source>::new(tx);
    let mut keys = Vec::new();
    t.for_each_key(KeyRange::all(), Order::Asc, |k| {
        keys.push(k);
        Ok(true)
    })?;
    for k in keys {
        match t.get(&k) {
            Ok(Some(r)) => f(r),
            Ok(None) | Err(Error::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Adds every broken reference to `report`.
pub(crate) fn check(tx: &dyn Source, report: &mut CheckReport) -> Result<()> {
    let mut users: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    each::<User>(tx, |u| {
        users.insert(u.id, u.current_org_id);
    })?;
    let mut orgs = BTreeSet::new();
    each::<Org>(tx, |o| {
        orgs.insert((o.id, o.slug));
    })?;
    let org_ids: BTreeSet<u64> = orgs.iter().map(|(id, _)| *id).collect();
    let mut role_ids = BTreeSet::new();
    each::<Role>(tx, |r| {
        role_ids.insert(r.id);
    })?;
    let mut problems = Vec::new();
    let mut missing = |what: String, user: u64| {
        if !users.contains_key(&user) {
            problems.push(format!("{what} points at missing user {user}"));
        }
    };
    let mut credentials = BTreeSet::new();
    each::<Credential>(tx, |c| {
        missing("a credential".into(), c.user_id);
        credentials.insert(c.user_id);
    })?;
    each::<Avatar>(tx, |a| missing("an avatar".into(), a.user_id))?;
    let mut held_roles = Vec::new();
    each::<UserRole>(tx, |r| {
        missing(format!("role assignment of role {}", r.role_id), r.user_id);
        held_roles.push((r.user_id, r.role_id));
    })?;
    each::<Session>(tx, |s| {
        missing(format!("session {}", s.short_id), s.user_id)
    })?;
    each::<AgentSession>(tx, |a| {
        missing(format!("agent session {}", a.id), a.user_id)
    })?;
    let mut member_of: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut owned = BTreeSet::new();
    let mut dangling_members = Vec::new();
    each::<OrgMember>(tx, |m| {
        missing(format!("membership of org {}", m.org_id), m.user_id);
        if !org_ids.contains(&m.org_id) {
            dangling_members.push((m.user_id, m.org_id));
        }
        if m.role == OrgRole::Owner {
            owned.insert(m.org_id);
        }
        member_of.entry(m.user_id).or_default().push(m.org_id);
    })?;
    let mut keys = Vec::new();
    each::<ApiKey>(tx, |k| keys.push((k.prefix, k.owner)))?;
    let mut invites = Vec::new();
    each::<Invite>(tx, |i| invites.push(i))?;

    for (user, role) in held_roles {
        if !role_ids.contains(&role) {
            problems.push(format!("user {user} holds missing role {role}"));
        }
    }
    for (user, org) in dangling_members {
        problems.push(format!(
            "membership of user {user} points at missing org {org}"
        ));
    }
    for (prefix, owner) in keys {
        let ok = match owner {
            KeyOwner::User(u) => users.contains_key(&u),
            KeyOwner::Org(o) => org_ids.contains(&o),
        };
        if !ok {
            problems.push(format!("api key {prefix} belongs to missing {owner}"));
        }
    }
    for invite in invites {
        if invite.uses as usize != invite.used_by.len() {
            problems.push(format!(
                "invite {} counts {} uses but lists {} users",
                invite.prefix,
                invite.uses,
                invite.used_by.len()
            ));
        }
    }
    for (id, slug) in &orgs {
        if !owned.contains(id) {
            problems.push(format!("org {slug} has no owner"));
        }
    }
    for (id, current) in &users {
        if !credentials.contains(id) {
            problems.push(format!(
                "user {id} has no credential; set a password with `redkeep user set-password {id}`"
            ));
        }
        let mine = member_of.get(id).map(Vec::as_slice).unwrap_or(&[]);
        if mine.is_empty() {
            problems.push(format!("user {id} belongs to no org"));
        }
        match current {
            None => problems.push(format!("user {id} has no current org")),
            Some(o) if !mine.contains(o) => {
                problems.push(format!("user {id}'s current org {o} is not one of theirs"))
            }
            Some(_) => {}
        }
    }
    for p in problems {
        report.problem(p);
    }
    Ok(())
}

/// The whole-table operations of redkeep's own record types.
pub(crate) fn own_tables() -> Vec<Box<dyn crate::store::TableCheck>> {
    use crate::store::check_table;
    vec![
        check_table::<super::users::User>(),
        check_table::<super::users::Credential>(),
        check_table::<super::users::Avatar>(),
        check_table::<super::invites::Invite>(),
        check_table::<super::roles::Role>(),
        check_table::<super::roles::UserRole>(),
        check_table::<super::sessions::Session>(),
        check_table::<super::agents::AgentSession>(),
        check_table::<super::orgs::Org>(),
        check_table::<super::orgs::OrgMember>(),
        check_table::<super::api_keys::ApiKey>(),
        check_table::<super::audit::AuditEvent>(),
    ]
}
