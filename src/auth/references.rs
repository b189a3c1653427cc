//! Cross-table rules of the account domain, checked by `redkeep check`: every reference (the
//! user of a session, the org of a membership, the owner of a key, …) resolves, every org has
//! an owner, every user has a credential, belongs to an org and works in one of theirs.
//! Damaged records are reported by the table checks and skipped here.

use super::agents::AgentSession;
use super::api_keys::{ApiKey, KeyOwner};
use super::invites::Invite;
use super::orgs::{Org, OrgMember, OrgRole};
use super::recovery::RecoveryToken;
use super::roles::{Role, UserRole};
use super::sessions::Session;
use super::users::{Avatar, Credential, User};
use crate::error::Result;
use crate::key;
use crate::store::{CheckReport, KeyRange, Record, Source, Table};

// Calls `f` with each record of `R` that decodes; damaged ones are left to the table checks.
fn each<R: Record>(tx: &dyn Source, mut f: impl FnMut(R) -> Result<()>) -> Result<()> {
    Table::<R, dyn Source>::new(tx).for_each_sound(KeyRange::all(), |r| f(r).map(|()| true))
}

/// Adds every broken reference to `report`. Each record looks up what it refers to, so
/// memory does not grow with the store.
pub(crate) fn check(tx: &dyn Source, report: &mut CheckReport) -> Result<()> {
    let users = Table::<User, dyn Source>::new(tx);
    let orgs = Table::<Org, dyn Source>::new(tx);
    let roles = Table::<Role, dyn Source>::new(tx);
    let members = Table::<OrgMember, dyn Source>::new(tx);
    let credentials = Table::<Credential, dyn Source>::new(tx);
    let mut problems = Vec::new();
    let mut missing = |what: String, user: u64| -> Result<()> {
        if !users.contains(&user)? {
            problems.push(format!("{what} points at missing user {user}"));
        }
        Ok(())
    };
    each::<Credential>(tx, |c| missing("a credential".into(), c.user_id))?;
    each::<Avatar>(tx, |a| missing("an avatar".into(), a.user_id))?;
    each::<UserRole>(tx, |r| {
        missing(format!("role assignment of role {}", r.role_id), r.user_id)
    })?;
    each::<Session>(tx, |s| {
        missing(format!("session {}", s.short_id), s.user_id)
    })?;
    each::<AgentSession>(tx, |a| {
        missing(format!("agent session {}", a.id), a.user_id)
    })?;
    each::<OrgMember>(tx, |m| {
        missing(format!("membership of org {}", m.org_id), m.user_id)
    })?;
    each::<RecoveryToken>(tx, |t| {
        missing(format!("recovery token {}", t.prefix), t.user_id)
    })?;
    each::<UserRole>(tx, |r| {
        if !roles.contains(&r.role_id)? {
            problems.push(format!(
                "user {} holds missing role {}",
                r.user_id, r.role_id
            ));
        }
        Ok(())
    })?;
    each::<OrgMember>(tx, |m| {
        if !orgs.contains(&m.org_id)? {
            problems.push(format!(
                "membership of user {} points at missing org {}",
                m.user_id, m.org_id
            ));
        }
        Ok(())
    })?;
    each::<ApiKey>(tx, |k| {
        let ok = match k.owner {
            KeyOwner::User(u) => users.contains(&u)?,
            KeyOwner::Org(o) => orgs.contains(&o)?,
        };
        if !ok {
            problems.push(format!(
                "api key {} belongs to missing {}",
                k.prefix, k.owner
            ));
        }
        Ok(())
    })?;
    each::<Invite>(tx, |invite| {
        if invite.uses as usize != invite.used_by.len() {
            problems.push(format!(
                "invite {} counts {} uses but lists {} users",
                invite.prefix,
                invite.uses,
                invite.used_by.len()
            ));
        }
        Ok(())
    })?;
    each::<Org>(tx, |o| {
        let mut owned = false;
        members.for_each_sound(KeyRange::prefix(key!(o.id)), |m| {
            owned = m.role == OrgRole::Owner;
            Ok(!owned)
        })?;
        if !owned {
            problems.push(format!("org {} has no owner", o.slug));
        }
        Ok(())
    })?;
    each::<User>(tx, |u| {
        let id = u.id;
        if !credentials.contains(&id)? {
            problems.push(format!(
                "user {id} has no credential; set a password with `redkeep user set-password {id}`"
            ));
        }
        if members.count_by(&OrgMember::BY_USER, KeyRange::prefix(key!(id)))? == 0 {
            problems.push(format!("user {id} belongs to no org"));
        }
        match u.current_org_id {
            None => problems.push(format!("user {id} has no current org")),
            Some(o) if !members.contains(&(o, id))? => {
                problems.push(format!("user {id}'s current org {o} is not one of theirs"))
            }
            Some(_) => {}
        }
        Ok(())
    })?;
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
        check_table::<super::recovery::RecoveryToken>(),
        check_table::<super::web_sessions::WebSession>(),
    ]
}
