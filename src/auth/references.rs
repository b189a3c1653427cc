//! Cross-table rules of the account domain, checked by `redkeep check`: every reference (the
//! user of a session, the org of a membership, the owner of a key, …) resolves, every org has
//! an owner, every user has a credential and a role, belongs to an org and works in one of
//! theirs, and a user's admin mark follows the `admin` role (the role decides).
//! Damaged records are reported by the table checks and skipped here.

use super::agents::AgentSession;
use super::api_keys::{ApiKey, KeyOwner};
use super::invites::Invite;
use super::orgs::{Org, OrgMember, OrgRole};
use super::recovery::RecoveryToken;
use super::roles::{ADMIN_ROLE, DEFAULT_ROLE, Role, UserRole};
use super::sessions::Session;
use super::users::{Avatar, Credential, User, is_decoy_owner};
use crate::error::{Error, Result};
use crate::key;
use crate::store::{CheckReport, KeyRange, Record, Source, Table};

// Calls `f` with each record of `R` that decodes; damaged ones are left to the table checks.
fn each<R: Record>(tx: &dyn Source, mut f: impl FnMut(R) -> Result<()>) -> Result<()> {
    Table::<R, dyn Source>::new(tx).for_each_sound(KeyRange::all(), |r| f(r).map(|()| true))
}

/// The id of the `admin` role, when the store holds it.
fn admin_role(tx: &dyn Source) -> Result<Option<u64>> {
    Ok(Table::<Role, dyn Source>::new(tx)
        .get_by(&Role::NAME, &key!(ADMIN_ROLE))?
        .map(|r| r.id))
}

/// Whether `user` holds the admin role (`admin`) through an active grant; `None` when their
/// grant of it is damaged (the table check reports that), so it cannot be told.
fn holds_admin(tx: &dyn Source, admin: Option<u64>, user: u64) -> Result<Option<bool>> {
    let Some(admin) = admin else {
        return Ok(Some(false));
    };
    admin_by_grant(Table::<UserRole, dyn Source>::new(tx).get(&(user, admin)))
}

/// What a user's grant of the admin role (as read) says: whether it is active; `None` when
/// it is damaged (the table check reports that), so it cannot be told.
fn admin_by_grant(grant: Result<Option<UserRole>>) -> Result<Option<bool>> {
    match grant {
        Ok(grant) => Ok(Some(grant.is_some_and(|g| g.active))),
        Err(Error::Corrupt { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an active user holds the admin role through an active grant. Only then does a
/// repair take away an admin mark the role does not back: mending never leaves a store
/// without an administrator.
fn an_admin_holds_the_role(tx: &dyn Source, admin: Option<u64>) -> Result<bool> {
    let Some(admin) = admin else {
        return Ok(false);
    };
    let users = Table::<User, dyn Source>::new(tx);
    let mut found = false;
    Table::<UserRole, dyn Source>::new(tx).for_each_sound(KeyRange::all(), |g| {
        if g.role_id == admin && g.active {
            found = users
                .get(&g.user_id)
                .ok()
                .flatten()
                .is_some_and(|u| u.is_active);
        }
        Ok(!found)
    })?;
    Ok(found)
}

/// Calls `f` with what `pick` takes of the records of `R` that decode (only what the checks
/// need: a record may be large, an avatar), as many at a time as the engine looks up in one
/// go (one at a time on redb, hundreds on a server, where a lookup is a round trip), so
/// that `f` can make their lookups together.
fn each_chunk<R: Record, T>(
    tx: &dyn Source,
    pick: impl Fn(R) -> T,
    mut f: impl FnMut(&[T]) -> Result<()>,
) -> Result<()> {
    let n = tx.raw().lookups_per_trip().max(1);
    let mut chunk = Vec::with_capacity(n);
    Table::<R, dyn Source>::new(tx).for_each_sound(KeyRange::all(), |r| {
        chunk.push(pick(r));
        if chunk.len() >= n {
            f(&chunk)?;
            chunk.clear();
        }
        Ok(true)
    })?;
    if chunk.is_empty() { Ok(()) } else { f(&chunk) }
}

/// What the check of API keys takes of one.
struct ApiKeyRef {
    owner: KeyOwner,
    prefix: String,
}

/// Adds every broken reference to `report`. Each record looks up what it refers to (a chunk
/// of records at a time, see [`each_chunk`]), so memory does not grow with the store.
pub(crate) fn check(tx: &dyn Source, report: &mut CheckReport) -> Result<()> {
    let users = Table::<User, dyn Source>::new(tx);
    let orgs = Table::<Org, dyn Source>::new(tx);
    let roles = Table::<Role, dyn Source>::new(tx);
    let members = Table::<OrgMember, dyn Source>::new(tx);
    let credentials = Table::<Credential, dyn Source>::new(tx);
    let grants = Table::<UserRole, dyn Source>::new(tx);
    let mut problems = Vec::new();
    // Adds a problem for each record of `chunk` whose user (`user`) is missing; `what` names
    // the record.
    let mut missing = |chunk_users: Vec<u64>, what: &dyn Fn(usize) -> String| -> Result<()> {
        for (i, there) in users.contains_many(&chunk_users)?.into_iter().enumerate() {
            if !there {
                let user = chunk_users.get(i).copied().unwrap_or_default();
                problems.push(format!("{} points at missing user {user}", what(i)));
            }
        }
        Ok(())
    };
    each_chunk(
        tx,
        |c: Credential| c.user_id,
        |c| {
            // The decoy a login with no account reads and writes points at no user by design.
            let c: Vec<u64> = c.iter().copied().filter(|&u| !is_decoy_owner(u)).collect();
            missing(c, &|_| "a credential".into())
        },
    )?;
    each_chunk(
        tx,
        |a: Avatar| a.user_id,
        |a| missing(a.to_vec(), &|_| "an avatar".into()),
    )?;
    each_chunk(
        tx,
        |r: UserRole| (r.user_id, r.role_id),
        |r| {
            missing(r.iter().map(|r| r.0).collect(), &|i| {
                format!("role assignment of role {}", r[i].1)
            })
        },
    )?;
    each_chunk(
        tx,
        |s: Session| (s.user_id, s.short_id),
        |s| {
            missing(s.iter().map(|s| s.0).collect(), &|i| {
                format!("session {}", s[i].1)
            })
        },
    )?;
    each_chunk(
        tx,
        |a: AgentSession| (a.user_id, a.id),
        |a| {
            missing(a.iter().map(|a| a.0).collect(), &|i| {
                format!("agent session {}", a[i].1)
            })
        },
    )?;
    each_chunk(
        tx,
        |m: OrgMember| (m.user_id, m.org_id),
        |m| {
            missing(m.iter().map(|m| m.0).collect(), &|i| {
                format!("membership of org {}", m[i].1)
            })
        },
    )?;
    each_chunk(
        tx,
        |t: RecoveryToken| (t.user_id, t.prefix),
        |t| {
            // A decoy (a reset asked for an email no account has) points at no user by design.
            let t: Vec<_> = t.iter().filter(|t| !is_decoy_owner(t.0)).collect();
            missing(t.iter().map(|t| t.0).collect(), &|i| {
                format!("recovery token {}", t[i].1)
            })
        },
    )?;
    each_chunk(
        tx,
        |r: UserRole| (r.user_id, r.role_id),
        |rs| {
            let ids: Vec<u64> = rs.iter().map(|r| r.1).collect();
            for (&(user, role), there) in rs.iter().zip(roles.contains_many(&ids)?) {
                if !there {
                    problems.push(format!("user {user} holds missing role {role}"));
                }
            }
            Ok(())
        },
    )?;
    each_chunk(
        tx,
        |m: OrgMember| (m.user_id, m.org_id),
        |ms| {
            let ids: Vec<u64> = ms.iter().map(|m| m.1).collect();
            for (&(user, org), there) in ms.iter().zip(orgs.contains_many(&ids)?) {
                if !there {
                    problems.push(format!(
                        "membership of user {user} points at missing org {org}"
                    ));
                }
            }
            Ok(())
        },
    )?;
    each_chunk(
        tx,
        |k: ApiKey| ApiKeyRef {
            owner: k.owner,
            prefix: k.prefix,
        },
        |ks| {
            let owned_by = |org: bool| -> Vec<u64> {
                ks.iter()
                    .filter_map(|k| match k.owner {
                        KeyOwner::User(u) if !org => Some(u),
                        KeyOwner::Org(o) if org => Some(o),
                        _ => None,
                    })
                    .collect()
            };
            let mut user_there = users.contains_many(&owned_by(false))?.into_iter();
            let mut org_there = orgs.contains_many(&owned_by(true))?.into_iter();
            for k in ks {
                let there = match k.owner {
                    KeyOwner::User(_) => user_there.next(),
                    KeyOwner::Org(_) => org_there.next(),
                };
                if there != Some(true) {
                    problems.push(format!(
                        "api key {} belongs to missing {}",
                        k.prefix, k.owner
                    ));
                }
            }
            Ok(())
        },
    )?;
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
    each_chunk(
        tx,
        |o: Org| o,
        |os| {
            // One scan of the memberships of the chunk's orgs (ids rise through a chunk), not
            // one per org.
            let (Some(first), Some(last)) = (os.first(), os.last()) else {
                return Ok(());
            };
            let mut owned = std::collections::BTreeSet::new();
            let span = KeyRange {
                start: KeyRange::prefix(key!(first.id)).start,
                end: KeyRange::prefix(key!(last.id)).end,
            };
            members.for_each_sound(span, |m| {
                if m.role == OrgRole::Owner {
                    owned.insert(m.org_id);
                }
                Ok(true)
            })?;
            for o in os {
                if !owned.contains(&o.id) {
                    problems.push(format!("org {} has no owner", o.slug));
                }
            }
            Ok(())
        },
    )?;
    let admin = admin_role(tx)?;
    let admin_kept = an_admin_holds_the_role(tx, admin)?;
    let mut uids = std::collections::HashMap::new();
    each_chunk(
        tx,
        |u: User| u,
        |us| {
            let ids: Vec<u64> = us.iter().map(|u| u.id).collect();
            let mut admin_grants = match admin {
                Some(admin) => {
                    let keys: Vec<(u64, u64)> = ids.iter().map(|&id| (id, admin)).collect();
                    grants.get_many(&keys)?
                }
                None => Vec::new(),
            }
            .into_iter();
            let mut creds = credentials.get_many(&ids)?.into_iter();
            let current: Vec<(u64, u64)> = us
                .iter()
                .filter_map(|u| Some((u.current_org_id?, u.id)))
                .collect();
            let mut in_current = members.contains_many(&current)?.into_iter();
            for u in us {
                let id = u.id;
                // Whether they hold the admin role through an active grant; `None` when their
                // grant of it is damaged (the table check reports that), so it cannot be told.
                let holds = match (admin, admin_grants.next()) {
                    (None, _) => Some(false),
                    (Some(_), Some(grant)) => admin_by_grant(grant)?,
                    (Some(_), None) => None,
                };
                match holds {
                Some(false) if u.is_admin && admin_kept => problems.push(format!(
                    "user {id} is marked admin but does not hold the admin role; `redkeep check \
                     --repair` takes the mark away (the role decides): if they are an \
                     administrator, grant it first with `redkeep role grant {id} admin`"
                )),
                Some(false) if u.is_admin => problems.push(format!(
                    "user {id} is marked admin but does not hold the admin role, and no active \
                     user holds it: `redkeep check --repair` keeps the mark rather than leave the \
                     store without an administrator; grant the role to the right user with \
                     `redkeep role grant USER admin`, then run `redkeep check --repair` again"
                )),
                Some(true) if !u.is_admin => problems.push(format!(
                    "user {id} holds the admin role but is not marked admin; `redkeep check \
                     --repair` marks them (the role decides)"
                )),
                _ => {}
            }
                match creds.next() {
                Some(Err(e)) => return Err(e),
                None | Some(Ok(None)) => problems.push(format!(
                    "user {id} has no credential; set a password with `redkeep user set-password {id}`"
                )),
                // Empty: no password set yet (a repaired credential); the user resets it.
                Some(Ok(Some(c))) if !c.password_hash.is_empty() => {
                    if let Err(why) = super::password::recognise(&c.password_hash) {
                        problems.push(format!(
                            "user {id}'s password hash cannot be verified ({why}), so they cannot \
                             log in; set a password with `redkeep user set-password {id}`"
                        ));
                    }
                }
                Some(Ok(Some(_))) => {}
            }
                // The uid binds a workspace folder to its user: two users must never share one.
                if let Some(first) = uids.insert(u.uid, id) {
                    problems.push(format!(
                    "users {first} and {id} share one uid, which binds a workspace folder to its \
                     user; one of them was copied by hand"
                ));
                }
                // A membership of their current org is one: only without it are they counted.
                let current_ok = u.current_org_id.map(|_| in_current.next() == Some(true));
                if current_ok != Some(true)
                    && members.count_by(&OrgMember::BY_USER, KeyRange::prefix(key!(id)))? == 0
                {
                    problems.push(format!("user {id} belongs to no org"));
                }
                match (u.current_org_id, current_ok) {
                    (None, _) => problems.push(format!("user {id} has no current org")),
                    (Some(o), Some(false)) => {
                        problems.push(format!("user {id}'s current org {o} is not one of theirs"))
                    }
                    _ => {}
                }
            }
            Ok(())
        },
    )?;
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

/// The table of redkeep's record type `R`, kept for it.
fn own<R: crate::store::Record>() -> (&'static str, std::any::TypeId) {
    (R::TABLE, std::any::TypeId::of::<R>())
}

/// The tables of redkeep's own record types, each with its type: a store handle keeps these
/// names for them, so an application's type cannot write into one.
pub(crate) fn own_table_types() -> [(&'static str, std::any::TypeId); 14] {
    [
        own::<super::users::User>(),
        own::<super::users::Credential>(),
        own::<super::users::Avatar>(),
        own::<super::invites::Invite>(),
        own::<super::roles::Role>(),
        own::<super::roles::UserRole>(),
        own::<super::sessions::Session>(),
        own::<super::agents::AgentSession>(),
        own::<super::orgs::Org>(),
        own::<super::orgs::OrgMember>(),
        own::<super::api_keys::ApiKey>(),
        own::<super::audit::AuditEvent>(),
        own::<super::recovery::RecoveryToken>(),
        own::<super::web_sessions::WebSession>(),
    ]
}

/// Makes every reference resolve again after records were lost (a salvage, a repair that set
/// records aside): records that point at a missing user, org or role are set aside into
/// quarantine tables; so is an org without members; one without an
/// owner gets one; a user without a credential gets one that no password matches (they
/// reset it), without an org a personal one, without a current org one of theirs, and, when
/// `salvaging` (grants may have been lost with a damaged page), without any role the `user`
/// role; a user's admin mark follows the `admin` role (the role decides),
/// except that a mark no grant backs stays while no active user holds the role, so a store is
/// never left without an administrator (`check` says so); a lost system role is made again;
/// an invite's use count follows the users it lists. Returns one line per change.
pub(crate) fn settle(
    tx: &crate::store::WriteTx<'_>,
    now: crate::clock::Timestamp,
    salvaging: bool,
) -> Result<Vec<String>> {
    use super::orgs;
    use super::recovery::RecoveryToken;
    let mut changes = Vec::new();
    let users = Table::<User, dyn Source>::new(tx as &dyn Source);
    let orgs_t = Table::<Org, dyn Source>::new(tx as &dyn Source);
    let roles = Table::<Role, dyn Source>::new(tx as &dyn Source);

    // Collect first (a table is not written while it is scanned), then delete.
    macro_rules! drop_where {
        ($ty:ty, $what:expr, $gone:expr) => {{
            let mut doomed = Vec::new();
            each::<$ty>(tx, |r| {
                if $gone(&r)? {
                    doomed.push(r);
                }
                Ok(())
            })?;
            if !doomed.is_empty() {
                changes.push(format!(
                    "moved {} {} that pointed at a missing record to {}",
                    doomed.len(),
                    $what,
                    crate::store::quarantine_table(<$ty as Record>::TABLE)
                ));
            }
            for r in doomed {
                crate::store::set_aside::<$ty>(tx, &r.key())?;
            }
        }};
    }
    let no_user = |id: u64| -> Result<bool> { Ok(!users.contains(&id)?) };
    drop_where!(Credential, "credential(s)", |c: &Credential| Ok(
        !is_decoy_owner(c.user_id) && no_user(c.user_id)?
    ));
    drop_where!(Avatar, "avatar(s)", |a: &Avatar| no_user(a.user_id));
    drop_where!(UserRole, "role grant(s)", |r: &UserRole| Ok(no_user(
        r.user_id
    )? || !roles
        .contains(
        &r.role_id
    )?));
    drop_where!(Session, "session(s)", |s: &Session| no_user(s.user_id));
    drop_where!(
        AgentSession,
        "agent session(s)",
        |a: &AgentSession| no_user(a.user_id)
    );
    drop_where!(RecoveryToken, "recovery token(s)", |t: &RecoveryToken| {
        Ok(!is_decoy_owner(t.user_id) && no_user(t.user_id)?)
    });
    drop_where!(OrgMember, "membership(s)", |m: &OrgMember| Ok(no_user(
        m.user_id
    )?
        || !orgs_t.contains(&m.org_id)?));
    drop_where!(ApiKey, "API key(s)", |k: &ApiKey| Ok(match k.owner {
        KeyOwner::User(u) => no_user(u)?,
        KeyOwner::Org(o) => !orgs_t.contains(&o)?,
    }));

    let mut invites = Vec::new();
    each::<Invite>(tx, |i| {
        if i.uses as usize != i.used_by.len() {
            invites.push(i);
        }
        Ok(())
    })?;
    for mut i in invites {
        i.uses = i.used_by.len() as u32;
        changes.push(format!(
            "invite {}: its use count now matches the users it lists",
            i.prefix
        ));
        tx.table::<Invite>().update(&i)?;
    }

    let mut org_list = Vec::new();
    each::<Org>(tx, |o| {
        org_list.push(o);
        Ok(())
    })?;
    for o in org_list {
        let members = orgs::members_of(tx, o.id)?;
        if members.is_empty() {
            crate::store::set_aside::<Org>(tx, &o.id)?;
            changes.push(format!(
                "moved org {}, which had no members left, to {}",
                o.slug,
                crate::store::quarantine_table(Org::TABLE)
            ));
            continue;
        }
        if !members.iter().any(|m| m.role == OrgRole::Owner) {
            let pick = members
                .iter()
                .filter(|m| m.role == OrgRole::Admin)
                .chain(members.iter())
                .next()
                .cloned();
            if let Some(mut m) = pick {
                m.role = OrgRole::Owner;
                tx.table::<OrgMember>().update(&m)?;
                changes.push(format!(
                    "org {}: user {} became its owner",
                    o.slug, m.user_id
                ));
            }
        }
    }

    // After the grants of lost roles went: the system roles every user needs, made again.
    for (name, ..) in super::roles::SYSTEM_ROLES {
        if roles.get_by(&Role::NAME, &key!(name))?.is_none() {
            changes.push(format!(
                "the system role `{name}` was lost; it was made again"
            ));
        }
    }
    super::roles::put_system_roles(tx, now)?;
    let admin = admin_role(tx)?;
    let grants = Table::<UserRole, dyn Source>::new(tx as &dyn Source);

    let mut user_list = Vec::new();
    each::<User>(tx, |u| {
        user_list.push(u);
        Ok(())
    })?;
    // A user without a role is a state the API makes (`role revoke` of the last one) and
    // `check` lets be; a salvage, whose grants may have been lost with a damaged page, gives
    // such users the default role.
    for u in user_list.iter().filter(|_| salvaging) {
        if grants.count_in(KeyRange::prefix(key!(u.id)))? == 0 {
            super::roles::grant_in(tx, now, u.id, DEFAULT_ROLE, None)?;
            changes.push(format!(
                "user {}: held no role; they were given the `{DEFAULT_ROLE}` role",
                u.id
            ));
        }
    }
    // Marks the role backs first, so the count of administrators below is the final one.
    let admin_kept = an_admin_holds_the_role(tx, admin)?;
    for u in &user_list {
        match holds_admin(tx, admin, u.id)? {
            Some(true) if !u.is_admin => {
                super::roles::sync_admin_flag(tx, now, u.id)?;
                changes.push(format!(
                    "user {}: holds the admin role, so they are now marked admin",
                    u.id
                ));
            }
            Some(false) if u.is_admin && admin_kept => {
                super::roles::sync_admin_flag(tx, now, u.id)?;
                changes.push(format!(
                    "user {}: was marked admin without holding the admin role; the mark was \
                     taken away (the role decides; `redkeep role grant {} admin` makes them \
                     an administrator again)",
                    u.id, u.id
                ));
            }
            // No active user holds the role: the mark stays, and `check` says why.
            _ => {}
        }
    }
    for u in user_list {
        match tx.table::<Credential>().get(&u.id)? {
            None => {
                // No password matches an empty hash: the user resets theirs.
                tx.table::<Credential>()
                    .insert(&Credential::new(u.id, String::new(), now)?)?;
                changes.push(format!(
                    "user {}: the credential was lost; they must reset their password",
                    u.id
                ));
            }
            // A hash no login can verify (damaged bytes): the same, keeping the counters.
            Some(mut c)
                if !c.password_hash.is_empty()
                    && super::password::recognise(&c.password_hash).is_err() =>
            {
                c.password_hash.clear();
                tx.table::<Credential>().update(&c)?;
                changes.push(format!(
                    "user {}: the password hash could not be verified; they must reset their \
                     password",
                    u.id
                ));
            }
            Some(_) => {}
        }
        let mine = orgs::memberships_of(tx, u.id)?;
        let current = match mine.first() {
            None => {
                let org = orgs::create_in(tx, now, &orgs::personal_spec(&u), true, false)?;
                changes.push(format!(
                    "user {}: belonged to no org; a personal one was made",
                    u.id
                ));
                org.id
            }
            Some(first) => match u.current_org_id {
                Some(c) if mine.iter().any(|m| m.org_id == c) => c,
                _ => first.org_id,
            },
        };
        if u.current_org_id != Some(current) {
            tx.table::<User>().modify(&u.id, |x| {
                x.current_org_id = Some(current);
                Ok(())
            })?;
            changes.push(format!("user {}: now works in org {current}", u.id));
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod record_versions {
    use crate::store::Record;

    fn version<R: Record>() -> (&'static str, u32) {
        (R::TABLE, R::VERSION)
    }

    /// A build reads a record of one of its own tables written at a newer version as
    /// damage (`check --repair` would set it aside): what keeps an older build off such
    /// records is the store's schema version, which it refuses when newer than its own. So a
    /// new version of an own record type comes with a new schema version (a migration step,
    /// even one that rewrites nothing). Change this list together with `SCHEMA_VERSION`.
    #[test]
    fn an_own_record_version_changes_only_with_the_schema_version() {
        use super::super::*;
        let versions = [
            version::<users::User>(),
            version::<users::Credential>(),
            version::<users::Avatar>(),
            version::<invites::Invite>(),
            version::<roles::Role>(),
            version::<roles::UserRole>(),
            version::<sessions::Session>(),
            version::<agents::AgentSession>(),
            version::<orgs::Org>(),
            version::<orgs::OrgMember>(),
            version::<api_keys::ApiKey>(),
            version::<audit::AuditEvent>(),
            version::<recovery::RecoveryToken>(),
            version::<web_sessions::WebSession>(),
        ];
        let pinned = [
            ("users", 2),
            ("credentials", 1),
            ("avatars", 1),
            ("invites", 2),
            ("roles", 1),
            ("user_roles", 1),
            ("sessions", 2),
            ("agent_sessions", 1),
            ("orgs", 1),
            ("org_members", 1),
            ("api_keys", 2),
            ("audit", 1),
            ("recovery_tokens", 1),
            ("web_sessions", 1),
        ];
        assert_eq!(
            (crate::SCHEMA_VERSION, versions.to_vec()),
            (3, pinned.to_vec()),
            "an own record version changed: raise SCHEMA_VERSION with a migration step, then \
             pin both here"
        );
    }
}
