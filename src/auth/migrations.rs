//! The schema history of redkeep's own tables.
//!
//! - v1: users, avatars, invites (and, created on demand, roles, sessions, agent sessions,
//!   API keys, audit).
//! - v2: tenancy and default roles. Stores written before organizations get a "Default
//!   Workspace" (slug `default`) holding every user without an org, as admins, with it as
//!   their current org. So that it keeps an owner, the first administrator (or else the first
//!   user) owns it. Users without any role get `user` (and `admin` when `is_admin`).

use super::orgs::{Org, OrgMember, OrgRole};
use super::roles::{Role, UserRole};
use super::users::User;
use crate::clock::Timestamp;
use crate::error::Result;
use crate::store::{KeyRange, Migration, WriteTx};

/// Every migration step, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 2,
    name: "tenancy: default workspace for users without an org; default roles",
    run: introduce_tenancy,
}];

fn introduce_tenancy(tx: &WriteTx, now: Timestamp) -> Result<()> {
    grant_default_roles(tx, now)?;
    let members = tx.table::<OrgMember>();
    let mut orphans = Vec::new();
    for u in tx.table::<User>().all()? {
        let has_org = !super::orgs::memberships_of(tx, u.id)?.is_empty();
        if !has_org {
            orphans.push(u);
        }
    }
    if orphans.is_empty() {
        return Ok(());
    }
    let owner = orphans
        .iter()
        .find(|u| u.is_admin)
        .unwrap_or(&orphans[0])
        .id;
    let orgs = tx.table::<Org>();
    let mut slug = "default".to_string();
    let mut n = 2;
    while orgs.get_by("slug", &crate::key!(slug))?.is_some() {
        slug = format!("default-{n}");
        n += 1;
    }
    let org = Org {
        id: orgs.next_id()?,
        name: "Default Workspace".into(),
        slug,
        description: "Created when organizations were introduced".into(),
        is_personal: false,
        is_default: true,
        created_at: now,
        updated_at: now,
    };
    orgs.insert(&org)?;
    for u in orphans {
        members.insert(&OrgMember {
            org_id: org.id,
            user_id: u.id,
            role: if u.id == owner {
                OrgRole::Owner
            } else {
                OrgRole::Admin
            },
            joined_at: now,
        })?;
        tx.table::<User>().modify(&u.id, |u| {
            u.current_org_id = Some(org.id);
            Ok(())
        })?;
    }
    Ok(())
}

fn grant_default_roles(tx: &WriteTx, now: Timestamp) -> Result<()> {
    let roles = tx.table::<Role>();
    let assignments = tx.table::<UserRole>();
    for u in tx.table::<User>().all()? {
        let held = assignments.count_by("by_user", KeyRange::prefix(crate::key!(u.id)))?;
        if held > 0 {
            continue;
        }
        let names: &[&str] = if u.is_admin {
            &["user", "admin"]
        } else {
            &["user"]
        };
        for name in names {
            if let Some(role) = roles.get_by("name", &crate::key!(*name))? {
                assignments.insert(&UserRole {
                    user_id: u.id,
                    role_id: role.id,
                    assigned_by: None,
                    active: true,
                    assigned_at: now,
                })?;
            }
        }
    }
    Ok(())
}
