//! `redkeep org …`, `redkeep user orgs`, `redkeep user switch-org`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin::reply::{Reply, count, user_json, yes_no};
use crate::auth::orgs::{DeletedOrg, Org, OrgRole, OrgSpec, RemovedMember};
use crate::{Error, Redkeep, Result};

/// The orgs made before `made` under its name (compared in any case) whose slugs its own
/// derived slug had to step past (`acme`, `acme-2`, … before `acme-3`): what a repeated
/// `org create` without `--slug` leaves. Orgs of that name with slugs of their own are not
/// sought (that would read every org).
fn same_name(rk: &Redkeep, made: &Org) -> Result<Vec<Org>> {
    let base = crate::auth::orgs::slugify(&made.name);
    let mut found = Vec::new();
    for n in 1u64..=100 {
        let slug = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        if slug == made.slug {
            break;
        }
        if let Some(o) = rk.orgs().by_slug(&slug)?
            && o.name.trim().to_lowercase() == made.name.trim().to_lowercase()
        {
            found.push(o);
        }
    }
    Ok(found)
}

/// Organization commands. ORG is a numeric id or a slug.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum OrgCmd {
    /// List organizations.
    List,
    /// Show one org and its members.
    Show {
        /// Id or slug.
        org: String,
    },
    /// Create an org with an owner.
    Create {
        /// Display name.
        name: String,
        /// Explicit slug (otherwise derived from the name).
        #[cfg_attr(feature = "cli", arg(long))]
        slug: Option<String>,
        /// The first owner: id, email or username.
        #[cfg_attr(feature = "cli", arg(long))]
        owner: String,
        /// Description.
        #[cfg_attr(feature = "cli", arg(long, default_value = ""))]
        description: String,
        /// Make it the default org (the one that was stops being it).
        #[cfg_attr(feature = "cli", arg(long))]
        default: bool,
    },
    /// Delete an org (refused with other members unless --force).
    Delete {
        /// Id or slug.
        org: String,
        /// Delete even with members, or a personal org.
        #[cfg_attr(feature = "cli", arg(long))]
        force: bool,
    },
    /// Add a member.
    AddMember {
        /// Id or slug.
        org: String,
        /// Ids, emails or usernames (all join, or none).
        #[cfg_attr(feature = "cli", arg(required = true, num_args = 1..))]
        users: Vec<String>,
        /// owner, admin or member.
        #[cfg_attr(feature = "cli", arg(long, default_value = "member"))]
        role: String,
    },
    /// Remove a member (the last owner cannot leave).
    RemoveMember {
        /// Id or slug.
        org: String,
        /// Id, email or username.
        user: String,
    },
    /// Change a member's role.
    SetRole {
        /// Id or slug.
        org: String,
        /// Id, email or username.
        user: String,
        /// owner, admin or member.
        role: String,
    },
}

pub fn org_json(o: &Org) -> Value {
    json!({
        "id": o.id, "name": o.name, "slug": o.slug, "description": o.description,
        "is_personal": o.is_personal, "personal_user": o.personal_user,
        "is_default": o.is_default, "created_at": o.created_at, "updated_at": o.updated_at,
    })
}

/// The most items an output line lists (the JSON has them all).
const LISTED: usize = 20;

/// `items` joined by ", ", the first [`LISTED`] of them and how many more.
fn listed(items: impl ExactSizeIterator<Item = String>) -> String {
    let more = items.len().saturating_sub(LISTED);
    let shown: Vec<String> = items.take(LISTED).collect();
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The line saying a user left in no org was given a new personal org.
fn new_personal_line(p: &Org) -> String {
    format!(
        "gave user {} a new personal org, {} (id {}), as they belonged to no other org; it is \
         now their current org",
        p.personal_user
            .map_or_else(|| "?".into(), |u| u.to_string()),
        p.slug,
        p.id
    )
}

/// `org delete`: the org, then what went with it, each on a line of its own.
fn deleted_org_reply(d: &DeletedOrg) -> Reply {
    let o = &d.org;
    let mut lines = vec![format!("deleted org {}", o.slug)];
    if !d.members_removed.is_empty() {
        lines.push(format!(
            "removed {}: {}",
            count(d.members_removed.len(), "member"),
            listed(d.members_removed.iter().map(|m| format!(
                "user {} ({})",
                m.user_id,
                m.role.as_str()
            )))
        ));
    }
    if !d.api_keys_deleted.is_empty() {
        lines.push(format!(
            "deleted {} with it: {}",
            count(d.api_keys_deleted.len(), "API key"),
            listed(d.api_keys_deleted.iter().cloned())
        ));
    }
    lines.extend(d.new_personal_orgs.iter().map(new_personal_line));
    let mut json = org_json(o);
    json["members_removed"] = d
        .members_removed
        .iter()
        .map(|m| json!({"user_id": m.user_id, "role": m.role.as_str()}))
        .collect();
    json["api_keys_deleted"] = json!(d.api_keys_deleted.len());
    json["api_key_prefixes_deleted"] = json!(d.api_keys_deleted);
    json["new_personal_orgs"] = d
        .new_personal_orgs
        .iter()
        .map(|p| json!({"user_id": p.personal_user, "org_id": p.id, "slug": p.slug}))
        .collect();
    Reply::text(json, lines)
}

/// The line naming the org keys a member's removal or demotion revoked (a few prefixes).
fn org_keys_revoked(o: &Org, revoked: &[String]) -> String {
    format!(
        "revoked the {} they made for org {} that could still be used ({})",
        crate::admin::reply::count(revoked.len(), "API key"),
        o.slug,
        crate::top::first_few(revoked, 3)
    )
}

/// `org remove-member`: the removal, then what it led to.
fn removed_member_reply(o: &Org, r: &RemovedMember) -> Reply {
    let user = r.member.user_id;
    let mut lines = vec![format!("user {user} left org {}", o.slug)];
    if r.org_no_longer_personal {
        lines.push(format!(
            "org {} is no longer personal: it was user {user}'s own, and its other members stay",
            o.slug
        ));
    }
    lines.extend(r.new_personal_org.iter().map(new_personal_line));
    if !r.api_keys_revoked.is_empty() {
        lines.push(org_keys_revoked(o, &r.api_keys_revoked));
    }
    Reply::text(
        json!({
            "org_id": o.id,
            "user_id": user,
            "removed": true,
            "role": r.member.role.as_str(),
            "org_no_longer_personal": r.org_no_longer_personal,
            "new_personal_org": r.new_personal_org.as_ref().map(org_json),
            "api_keys_revoked": r.api_keys_revoked,
        }),
        lines,
    )
}

pub fn run(rk: &Redkeep, cmd: &OrgCmd) -> Result<Reply> {
    match cmd {
        OrgCmd::List => {
            let orgs = rk.orgs().list(None, usize::MAX)?;
            let counts = orgs
                .iter()
                .map(|o| rk.orgs().member_count(o.id))
                .collect::<Result<Vec<u64>>>()?;
            let rows = orgs
                .iter()
                .zip(&counts)
                .map(|(o, n)| {
                    vec![
                        o.id.to_string(),
                        o.slug.clone(),
                        o.name.clone(),
                        n.to_string(),
                        yes_no(o.is_personal),
                        yes_no(o.is_default),
                    ]
                })
                .collect();
            // `member_count`, as `org show`'s `members` is the list of them.
            let json = orgs
                .iter()
                .zip(&counts)
                .map(|(o, n)| {
                    let mut v = org_json(o);
                    v["member_count"] = json!(n);
                    v
                })
                .collect();
            Ok(Reply::table(
                json,
                &["id", "slug", "name", "members", "personal", "default"],
                rows,
            ))
        }
        OrgCmd::Show { org } => {
            let o = rk.orgs().find(org)?;
            let members = rk.orgs().members(o.id, None, usize::MAX)?;
            let mut json = org_json(&o);
            json["members"] = members.iter().map(|m| json!({"user_id": m.user_id, "role": m.role.as_str(), "joined_at": m.joined_at})).collect();
            let mut lines = vec![format!("org {} {:?} (id {})", o.slug, o.name, o.id)];
            if !o.description.is_empty() {
                lines.push(format!("  description: {}", o.description));
            }
            lines.extend(
                members
                    .iter()
                    .map(|m| format!("  user {} {}", m.user_id, m.role.as_str())),
            );
            Ok(Reply::text(json, lines))
        }
        OrgCmd::Create {
            name,
            slug,
            owner,
            description,
            default,
        } => {
            let owner = rk.users().find(owner)?.id;
            let spec = OrgSpec {
                name: name.clone(),
                slug: slug.clone(),
                description: description.clone(),
                owner,
            };
            let o = if *default {
                rk.orgs().create_default(spec)?
            } else {
                rk.orgs().create(spec)?
            };
            let twins = if slug.is_none() {
                same_name(rk, &o)?
            } else {
                Vec::new()
            };
            let mut json = org_json(&o);
            json["same_name"] = twins
                .iter()
                .map(|t| json!({"id": t.id, "slug": t.slug}))
                .collect();
            let mut reply =
                Reply::text(json, vec![format!("created org {} (id {})", o.slug, o.id)]);
            if !twins.is_empty() {
                let named: Vec<String> = twins
                    .iter()
                    .map(|t| format!("{} (id {})", t.slug, t.id))
                    .collect();
                reply.notes.push(format!(
                    "note: an org named {:?} existed already: {}; this is one more, {}. A \
                     repeated `org create` adds one each time: give --slug to make a repeat \
                     fail instead",
                    o.name,
                    crate::top::first_few(&named, 3),
                    o.slug
                ));
            }
            Ok(reply)
        }
        OrgCmd::Delete { org, force } => {
            let o = rk.orgs().find(org)?;
            Ok(deleted_org_reply(&rk.orgs().delete(o.id, *force)?))
        }
        OrgCmd::AddMember { org, users, role } => {
            let o = rk.orgs().find(org)?;
            let ids = users
                .iter()
                .map(|u| rk.users().find(u).map(|u| u.id))
                .collect::<Result<Vec<u64>>>()?;
            let role = role.parse::<OrgRole>()?;
            // A member with that role already is what was asked: said, and left (as a
            // repeated `role grant` is), so a script can run again. One with another role is
            // refused: which role they should have is for `org set-role` to say.
            let mut already = Vec::new();
            for &id in &ids {
                match rk.orgs().role_in(id, o.id)? {
                    Some(r) if r == role => already.push(id),
                    Some(r) => {
                        return Err(Error::denied(format!(
                            "user {id} is a member of org {} already, as {}, so nobody joined; \
                             `redkeep org set-role {} {id} {}` changes their role",
                            o.slug,
                            r.as_str(),
                            o.slug,
                            role.as_str()
                        )));
                    }
                    None => {}
                }
            }
            let joining: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|u| !already.contains(u))
                .collect();
            let added = if joining.is_empty() {
                Vec::new()
            } else {
                rk.orgs().add_members(o.id, &joining, role)?
            };
            let mut lines: Vec<String> = added
                .iter()
                .map(|m| {
                    format!(
                        "user {} joined org {} as {}",
                        m.user_id,
                        o.slug,
                        m.role.as_str()
                    )
                })
                .collect();
            let mut json: Vec<Value> = added
                .iter()
                .map(|m| {
                    json!({"org_id": o.id, "user_id": m.user_id, "role": m.role.as_str(), "already": false})
                })
                .collect();
            let mut seen = std::collections::BTreeSet::new();
            for id in already.into_iter().filter(|id| seen.insert(*id)) {
                lines.push(format!(
                    "user {id} is a member of org {} as {} already; nothing changed",
                    o.slug,
                    role.as_str()
                ));
                json.push(
                    json!({"org_id": o.id, "user_id": id, "role": role.as_str(), "already": true}),
                );
            }
            Ok(Reply::text(Value::Array(json), lines))
        }
        OrgCmd::RemoveMember { org, user } => {
            let (o, u) = (rk.orgs().find(org)?, rk.users().find(user)?);
            let removed = rk.orgs().remove_member(o.id, u.id)?;
            Ok(removed_member_reply(&o, &removed))
        }
        OrgCmd::SetRole { org, user, role } => {
            let (o, u) = (rk.orgs().find(org)?, rk.users().find(user)?);
            let role = role.parse::<OrgRole>()?;
            let changed = rk.orgs().set_role(o.id, u.id, role)?;
            let already = changed.was == role;
            let now = if already { "was already" } else { "is now" };
            let mut lines = vec![format!(
                "user {} {now} {} of org {}",
                u.id,
                changed.member.role.as_str(),
                o.slug
            )];
            if !changed.api_keys_revoked.is_empty() {
                lines.push(format!(
                    "{}: a plain member makes no org keys",
                    org_keys_revoked(&o, &changed.api_keys_revoked)
                ));
            }
            Ok(Reply::text(
                json!({
                    "org_id": o.id,
                    "user_id": u.id,
                    "role": changed.member.role.as_str(),
                    "was": changed.was.as_str(),
                    "already": already,
                    "api_keys_revoked": changed.api_keys_revoked,
                }),
                lines,
            ))
        }
    }
}

/// `redkeep user orgs USER`.
pub fn user_orgs(rk: &Redkeep, who: &str) -> Result<Reply> {
    let u = rk.users().find(who)?;
    let list = rk.orgs().of_user(u.id)?;
    let rows = list
        .iter()
        .map(|(o, r)| {
            vec![
                o.id.to_string(),
                o.slug.clone(),
                o.name.clone(),
                r.as_str().to_string(),
                yes_no(u.current_org_id == Some(o.id)),
            ]
        })
        .collect();
    let json = Value::Array(
        list.iter()
            .map(|(o, r)| {
                let mut v = org_json(o);
                v["role"] = json!(r.as_str());
                v["current"] = json!(u.current_org_id == Some(o.id));
                v
            })
            .collect(),
    );
    Ok(Reply::table(
        json,
        &["id", "slug", "name", "role", "current"],
        rows,
    ))
}

/// `redkeep user switch-org USER ORG`.
pub fn switch_org(rk: &Redkeep, who: &str, org: &str) -> Result<Reply> {
    let (u, o) = (rk.users().find(who)?, rk.orgs().find(org)?);
    let u = rk.orgs().switch(u.id, o.id)?;
    Ok(Reply::text(
        user_json(&u),
        vec![format!("user {} now works in org {}", u.id, o.slug)],
    ))
}
