//! Turning the old database's rows into redkeep records, inside one write transaction: each
//! row either becomes its records or one problem naming the row and the reason. Nothing is
//! written unless there is no problem at all (the caller aborts the transaction otherwise).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::mapping::Mapping;
use super::settings::{Settings, WithoutPassword};
use super::source::{Row, Source, SourceId};
use crate::auth::agents::{self, AgentSession, AgentState};
use crate::auth::audit::{self, Event};
use crate::auth::invites::{self, Invite, InviteStatus};
use crate::auth::orgs::{self, Org, OrgMember, OrgRole};
use crate::auth::password::{self, PasswordParams, Passwords};
use crate::auth::roles::{self, ADMIN_ROLE, DEFAULT_ROLE, Role, UserRole};
use crate::auth::token::{self, TokenHash};
use crate::auth::users::{
    Avatar, Credential, Uid, User, normalize_email, validate_avatar, validate_name,
    validate_username,
};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{MAX_ID, Meta, Record, WriteTx};
use crate::workspace::{FoundPiece, GALLERY_DIR, WORKSPACE_FILE, WorkspaceDoc};

/// How many records of each kind an adoption made (or would make).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdoptCounts {
    /// Users.
    pub users: u64,
    /// Roles taken from the old system (merged into redkeep's built-in ones by name).
    pub roles: u64,
    /// Role grants.
    pub role_grants: u64,
    /// Organizations (personal orgs made for users without one included).
    pub orgs: u64,
    /// Memberships.
    pub memberships: u64,
    /// Invite codes.
    pub invites: u64,
    /// Agent sessions.
    pub agent_sessions: u64,
    /// Users taken without a password that logs in (`--accounts-without-password=reset`, or
    /// an account still on the old system's published default password): counted among the
    /// users too.
    pub without_password: u64,
    /// Avatars.
    pub avatars: u64,
    /// Files of the old workspaces and avatars left out (`--leave-out-bad-files`), each
    /// named in the notes.
    pub left_out: u64,
    /// Workspace folders.
    pub workspaces: u64,
    /// Gallery pieces.
    pub pieces: u64,
}

/// A user's old folder and where its contents go.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    pub(crate) user: u64,
    /// The document and its file's time.
    pub(crate) doc: Option<Dated<WorkspaceDoc>>,
    pub(crate) pieces: Pieces,
}

/// What the rows became.
pub(crate) struct Outcome {
    pub(crate) counts: AdoptCounts,
    pub(crate) problems: Vec<String>,
    pub(crate) notes: Vec<String>,
    pub(crate) folders: Vec<Folder>,
}

const USER_COLUMNS: &[&str] = &[
    "id",
    "email",
    "username",
    "name",
    "password_hash",
    "salt",
    "is_admin",
    "is_active",
    "email_verified",
    "must_change_password",
    "avatar",
    "current_org",
    "last_login_at",
    "created_at",
    "updated_at",
];
const ROLE_COLUMNS: &[&str] = &[
    "id",
    "name",
    "description",
    "permissions",
    "priority",
    "is_system",
    "created_at",
];
const GRANT_COLUMNS: &[&str] = &["user", "role", "active", "assigned_at", "assigned_by"];
const ORG_COLUMNS: &[&str] = &[
    "id",
    "name",
    "slug",
    "description",
    "is_default",
    "created_at",
    "updated_at",
];
const MEMBER_COLUMNS: &[&str] = &["org", "user", "role", "joined_at"];
const INVITE_COLUMNS: &[&str] = &[
    "code",
    "created_at",
    "expires_at",
    "max_uses",
    "uses",
    "used_by",
    "revoked",
];
const AGENT_COLUMNS: &[&str] = &[
    "id",
    "user",
    "name",
    "goal",
    "status",
    "current_step",
    "progress",
    "failures",
    "artifacts",
    "context",
    "escalation",
    "created_at",
    "updated_at",
    "expires_at",
];

/// The state of one adoption.
struct Adoption<'t, 'a> {
    tx: &'t WriteTx<'a>,
    now: Timestamp,
    problems: Vec<String>,
    notes: Vec<String>,
    counts: AdoptCounts,
    users: HashMap<SourceId, u64>,
    orgs: HashMap<SourceId, u64>,
    roles: HashMap<SourceId, u64>,
    // The old id of each user and the current org the old system gave them.
    user_source: BTreeMap<u64, SourceId>,
    current_org: BTreeMap<u64, SourceId>,
    admins: BTreeSet<u64>,
    without_password: WithoutPassword,
    leave_out_bad_files: bool,
    settings_cap: u64,
    /// The row and old id that took each email (normalized) and username (lower case).
    emails: HashMap<String, (usize, SourceId)>,
    usernames: HashMap<String, (usize, SourceId)>,
}

/// Reads a section's rows, reporting columns the section does not know once.
fn section(
    source: &Source,
    what: &str,
    sql: &str,
    known: &[&str],
    problems: &mut Vec<String>,
) -> Result<Vec<Row>> {
    let rows = source.rows(what, sql)?;
    if let Some(first) = rows.first() {
        let unknown = first.unknown_columns(known);
        if !unknown.is_empty() {
            problems.push(format!(
                "[{what}]: the query returns column(s) {} that redkeep does not know; name the columns {} (rename with AS)",
                unknown.join(", "),
                known.join(", ")
            ));
        }
    }
    Ok(rows)
}

/// New ids for the old ids that are not numbers, above every numeric one. A text id left
/// out of the map has no number left to take (the numeric ids reach [`MAX_ID`]).
fn assign_ids(ids: &[SourceId], floor: u64) -> HashMap<SourceId, u64> {
    let mut next = ids
        .iter()
        .filter_map(|i| match i {
            SourceId::Num(n) => Some(*n),
            SourceId::Text(_) => None,
        })
        .max()
        .unwrap_or(0)
        .max(floor);
    let mut out = HashMap::new();
    for i in ids {
        let id = match i {
            SourceId::Num(n) => *n,
            SourceId::Text(_) => match next.checked_add(1).filter(|n| *n <= MAX_ID) {
                Some(n) => {
                    next = n;
                    n
                }
                None => continue,
            },
        };
        out.insert(i.clone(), id);
    }
    out
}

/// Why no number is left for a record whose old id is text.
fn no_id_left(what: &str) -> String {
    format!(
        "no id is left to number it: the old {what} ids reach {MAX_ID}, the largest redkeep \
         keeps; renumber the largest ones in the old database"
    )
}

/// Refuses a text user id that would not name a folder of its own: one holding `/`, `\` or
/// NUL, or `.` or `..` (`5/` and `./5` name the folder of user 5).
fn folder_safe(id: &SourceId) -> std::result::Result<(), String> {
    let SourceId::Text(t) = id else {
        return Ok(());
    };
    if t == "." || t == ".." || t.contains(['/', '\\', '\0']) {
        return Err(format!(
            "the id {t:?} holds `/`, `\\` or NUL, or is `.` or `..`: an id names the user's \
             workspace folder, and this one would name another (`./5` and `5/` name user 5's); \
             give each user an id without them (in the query: `replace(id, '/', '-') AS id`)"
        ));
    }
    Ok(())
}

fn external(id: &SourceId) -> Option<String> {
    match id {
        SourceId::Num(_) => None,
        SourceId::Text(t) => Some(t.clone()),
    }
}

impl Adoption<'_, '_> {
    fn problem(&mut self, what: &str, row: &Row, id: Option<&SourceId>, reason: impl Into<String>) {
        let at = match id {
            Some(i) => format!("{what} row {} (id {i})", row.n),
            None => format!("{what} row {}", row.n),
        };
        self.problems.push(format!("{at}: {}", reason.into()));
    }

    fn roles(&mut self, rows: &[Row]) -> Result<()> {
        let t = self.tx.table::<Role>();
        let mut seen = BTreeSet::new();
        for row in rows {
            let id = match row.required_id("id") {
                Ok(i) => i,
                Err(e) => {
                    self.problem("roles", row, None, e);
                    continue;
                }
            };
            let built = (|| -> std::result::Result<Role, String> {
                let name = row.required("name")?.trim().to_lowercase();
                roles::validate_name(&name).map_err(|e| e.to_string())?;
                let permissions: BTreeSet<String> = row.list("permissions")?.into_iter().collect();
                for p in &permissions {
                    roles::validate_permission(p).map_err(|e| e.to_string())?;
                }
                Ok(Role {
                    id: 0,
                    name,
                    description: row.text("description")?.unwrap_or_default(),
                    permissions,
                    priority: row.int("priority")?.unwrap_or(0),
                    is_system: row.flag("is_system", false)?,
                    created_at: row.time("created_at")?.unwrap_or(self.now),
                })
            })();
            let mut role = match built {
                Ok(r) => r,
                Err(e) => {
                    self.problem("roles", row, Some(&id), e);
                    continue;
                }
            };
            if !seen.insert(role.name.clone()) {
                self.problem(
                    "roles",
                    row,
                    Some(&id),
                    format!("a role named {} came before", role.name),
                );
                continue;
            }
            match t.get_by(&Role::NAME, &key!(role.name.clone()))? {
                // redkeep's built-in role of that name keeps its own permissions and gains
                // the old ones.
                Some(mut existing) => {
                    existing.permissions.extend(role.permissions);
                    t.update(&existing)?;
                    self.roles.insert(id, existing.id);
                }
                // A new role ranks below admin, as one made by `role create` does.
                None if !roles::CUSTOM_PRIORITIES.contains(&role.priority) => {
                    self.problem(
                        "roles",
                        row,
                        Some(&id),
                        format!(
                            "priority {} is outside {}..={}, the priorities a role below \
                             admin ({}) may have; map it into that range in the mapping's \
                             query (such as `min(priority, {})`)",
                            role.priority,
                            roles::CUSTOM_PRIORITIES.start(),
                            roles::CUSTOM_PRIORITIES.end(),
                            roles::ADMIN_PRIORITY,
                            roles::CUSTOM_PRIORITIES.end(),
                        ),
                    );
                    continue;
                }
                None => {
                    role.id = t.next_id()?;
                    role.is_system = false;
                    t.insert(&role)?;
                    self.roles.insert(id, role.id);
                }
            }
            self.counts.roles += 1;
        }
        Ok(())
    }

    fn orgs(&mut self, rows: &[Row]) -> Result<()> {
        let mut ids = Vec::new();
        let mut ok_rows = Vec::new();
        for row in rows {
            match row.required_id("id") {
                Ok(i) => {
                    ids.push(i.clone());
                    ok_rows.push((row, i));
                }
                Err(e) => self.problem("orgs", row, None, e),
            }
        }
        let floor = self.tx.sequence(Org::TABLE)?;
        let assigned = assign_ids(&ids, floor);
        let t = self.tx.table::<Org>();
        for (row, sid) in ok_rows {
            let Some(&id) = assigned.get(&sid) else {
                self.problem("orgs", row, Some(&sid), no_id_left("org"));
                continue;
            };
            let built = (|| -> std::result::Result<(Org, Option<String>), String> {
                let name = row.required("name")?.trim().to_string();
                orgs::validate_org_name(&name).map_err(|e| e.to_string())?;
                Ok((
                    Org {
                        id,
                        name,
                        slug: String::new(),
                        description: row.text("description")?.unwrap_or_default(),
                        is_personal: false,
                        personal_user: None,
                        is_default: row.flag("is_default", false)?,
                        created_at: row.time("created_at")?.unwrap_or(self.now),
                        updated_at: row
                            .time("updated_at")?
                            .or(row.time("created_at")?)
                            .unwrap_or(self.now),
                        external_id: external(&sid),
                    },
                    row.text("slug")?,
                ))
            })();
            let (mut org, slug) = match built {
                Ok(o) => o,
                Err(e) => {
                    self.problem("orgs", row, Some(&sid), e);
                    continue;
                }
            };
            org.slug = match slug.map(|s| s.trim().to_lowercase()) {
                Some(s) if orgs::validate_slug(&s).is_ok() => {
                    if t.get_by(&Org::SLUG, &key!(s.clone()))?.is_some() {
                        self.problem("orgs", row, Some(&sid), format!("the slug {s} came before"));
                        continue;
                    }
                    s
                }
                Some(bad) => {
                    let derived = orgs::free_slug(self.tx, &orgs::slugify(&bad))?;
                    self.notes.push(format!(
                        "org {sid}: the slug {bad:?} is not a valid slug; it became {derived}"
                    ));
                    derived
                }
                None => orgs::free_slug(self.tx, &orgs::slugify(&org.name))?,
            };
            match t.insert(&org) {
                Ok(()) => {
                    self.orgs.insert(sid, org.id);
                    self.counts.orgs += 1;
                }
                Err(Error::Conflict { detail, .. }) => {
                    self.problem("orgs", row, Some(&sid), detail)
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(max) = self.orgs.values().max() {
            self.tx.raise_sequence(Org::TABLE, *max)?;
        }
        Ok(())
    }

    fn users(&mut self, rows: &[Row], mapping: &Mapping, checker: &Passwords) -> Result<()> {
        let mut ids = Vec::new();
        let mut ok_rows = Vec::new();
        for row in rows {
            match row.required_id("id") {
                Ok(i) => match folder_safe(&i) {
                    Ok(()) => {
                        ids.push(i.clone());
                        ok_rows.push((row, i));
                    }
                    // Not named in the row's heading: the reason quotes it, escaped.
                    Err(e) => self.problem("users", row, None, e),
                },
                Err(e) => self.problem("users", row, None, e),
            }
        }
        let floor = self.tx.sequence(User::TABLE)?;
        let assigned = assign_ids(&ids, floor);
        for (row, sid) in ok_rows {
            let Some(&id) = assigned.get(&sid) else {
                self.problem("users", row, Some(&sid), no_id_left("user"));
                continue;
            };
            match self.user(row, &sid, id, mapping, checker) {
                Ok(()) => {
                    self.users.insert(sid.clone(), id);
                    self.user_source.insert(id, sid);
                    self.counts.users += 1;
                }
                Err(Problem::Row(e)) => self.problem("users", row, Some(&sid), e),
                Err(Problem::Fatal(e)) => return Err(e),
            }
        }
        if let Some(max) = self.users.values().max() {
            self.tx.raise_sequence(User::TABLE, *max)?;
        }
        Ok(())
    }

    fn user(
        &mut self,
        row: &Row,
        sid: &SourceId,
        id: u64,
        mapping: &Mapping,
        checker: &Passwords,
    ) -> std::result::Result<(), Problem> {
        let email = row.required("email")?;
        let normalized = normalize_email(&email).map_err(|e| e.to_string())?;
        let username = match row.text("username")? {
            Some(u) if !u.trim().is_empty() => {
                let u = u.trim().to_string();
                validate_username(&u).map_err(|e| e.to_string())?;
                Some(u)
            }
            _ => None,
        };
        let name = match row.text("name")? {
            Some(n) if !n.trim().is_empty() => n.trim().to_string(),
            _ => username
                .clone()
                .unwrap_or_else(|| normalized.split('@').next().unwrap_or_default().to_string()),
        };
        validate_name(&name).map_err(|e| e.to_string())?;
        let given = row.text("password_hash")?.unwrap_or_default();
        // A hash redkeep cannot verify is refused, or (when asked) the account comes without
        // a password: an empty hash, which no password matches, until they set one.
        let mut unusable = match password::recognise(&given) {
            Ok(()) => None,
            Err(_) if given.trim().is_empty() => Some("the password hash is NULL or empty".into()),
            Err(why) => Some(why),
        };
        if let Some(why) = &unusable
            && self.without_password == WithoutPassword::Refuse
        {
            return Err(Problem::Row(format!(
                "{why}; to adopt such accounts without a password (no password logs in until \
                 they set one through a password reset or `redkeep user set-password`), adopt \
                 with --accounts-without-password=reset; or give them a hash redkeep reads in \
                 the mapping's query"
            )));
        }
        let mut hash = match row.text("salt")?.filter(|s| !s.is_empty()) {
            _ if unusable.is_some() => String::new(),
            // A salt column that only repeats the bcrypt hash's own salt adds nothing; any
            // other salt was appended to the password before hashing.
            Some(salt) if given.starts_with(salt.as_str()) => given,
            Some(salt) if given.starts_with("$2") => password::salted_bcrypt(&salt, &given),
            Some(_) => {
                return Err(Problem::Row(
                    "a salt column goes with bcrypt hashes only; this hash carries its own salt"
                        .into(),
                ));
            }
            None => given,
        };
        // A password the old system published (its documented default for this username) is
        // known to anyone who read its source or manual: kept, it would let the first comer
        // log in as this account and set a password of their own. The account comes without
        // a password instead, like one whose hash redkeep cannot read; its owner or an
        // operator sets one. Usernames are compared without case, as redkeep compares them
        // (`Admin` is `admin`).
        if let Some(default) = username.as_ref().and_then(|u| {
            let u = u.to_lowercase();
            mapping
                .users
                .default_passwords
                .iter()
                .find(|(name, _)| name.trim().to_lowercase() == u)
                .map(|(_, pw)| pw)
        }) && unusable.is_none()
            && checker.verify(default, &hash)
        {
            hash = String::new();
            unusable = Some(
                "it still held the old system's published default password, which anyone may \
                 know, so it is not kept"
                    .into(),
            );
        }
        let must_change = row.flag("must_change_password", false)? || unusable.is_some();
        let created_at = row.time("created_at")?.unwrap_or(self.now);
        let user = User {
            id,
            uid: Uid::generate().map_err(Problem::Fatal)?,
            email: email.trim().to_string(),
            username,
            name,
            external_id: external(sid),
            is_admin: false,
            is_active: row.flag("is_active", true)?,
            email_verified: row.flag("email_verified", false)?,
            must_change_password: must_change,
            last_login_at: row.time("last_login_at")?,
            current_org_id: None,
            created_at,
            updated_at: row.time("updated_at")?.unwrap_or(created_at),
        };
        let avatar = match row.blob("avatar")? {
            Some(b) if !b.is_empty() => match validate_avatar(&b) {
                Ok(()) => Some(b),
                Err(e) if self.leave_out_bad_files => {
                    self.counts.left_out += 1;
                    self.notes.push(format!(
                        "user {id} ({normalized}): the avatar is left out \
                         (--leave-out-bad-files): {e}"
                    ));
                    None
                }
                Err(e) => {
                    return Err(Problem::Row(format!(
                        "{e}; convert it to a JPEG in the mapping's query, or adopt with \
                         --leave-out-bad-files to take the user without it"
                    )));
                }
            },
            _ => None,
        };
        if row.flag("is_admin", false)? {
            self.admins.insert(id);
        }
        if let Some(org) = row.id("current_org")? {
            self.current_org.insert(id, org);
        }
        let earlier = |seen: &HashMap<String, (usize, SourceId)>, key: &str| {
            seen.get(key).map_or_else(String::new, |(n, sid)| {
                format!(" in users row {n} (id {sid})")
            })
        };
        let username_key = user.username.as_deref().map(str::to_lowercase);
        match self.tx.table::<User>().insert(&user) {
            Ok(()) => {
                self.emails.insert(normalized.clone(), (row.n, sid.clone()));
                if let Some(u) = username_key {
                    self.usernames.insert(u, (row.n, sid.clone()));
                }
            }
            Err(Error::Conflict { index, .. }) => {
                let what = match index {
                    "email" => format!(
                        "the email {normalized} came before{} (emails are compared without \
                         case and Unicode form): merge the two accounts in the old database, \
                         or give one another email in the mapping's query",
                        earlier(&self.emails, &normalized)
                    ),
                    "username" => format!(
                        "the username came before{} (usernames are compared without case): \
                         merge the two accounts, or rename one in the mapping's query",
                        earlier(&self.usernames, username_key.as_deref().unwrap_or_default())
                    ),
                    "primary" => format!(
                        "the id {id} came before (two rows share it; ids are compared as numbers, \
                         so \"001\" and \"1\" are one id)"
                    ),
                    _ => format!("the {index} came before"),
                };
                return Err(Problem::Row(what));
            }
            Err(e) => return Err(Problem::Fatal(e)),
        }
        self.tx
            .table::<Credential>()
            .insert(&Credential::new(id, hash, user.created_at).map_err(Problem::Fatal)?)
            .map_err(Problem::Fatal)?;
        if let Some(why) = unusable {
            self.counts.without_password += 1;
            self.notes.push(format!(
                "user {id} ({normalized}, old id {sid}) is adopted without a password ({why}): \
                 no password logs in until they set one through a password reset (the \
                 application's, or a token from `redkeep user reset-token {id}`) or an \
                 operator's `redkeep user set-password {id}`; they must change it"
            ));
        }
        if let Some(jpeg) = avatar {
            self.tx
                .table::<Avatar>()
                .insert(&Avatar { user_id: id, jpeg })
                .map_err(Problem::Fatal)?;
            self.counts.avatars += 1;
        }
        Ok(())
    }

    fn members(&mut self, rows: &[Row]) -> Result<()> {
        let t = self.tx.table::<OrgMember>();
        for row in rows {
            let built = (|| -> std::result::Result<OrgMember, String> {
                let org = row.required_id("org")?;
                let user = row.required_id("user")?;
                let org_id = *self
                    .orgs
                    .get(&org)
                    .ok_or(format!("org {org} is not among the adopted orgs"))?;
                let user_id = *self
                    .users
                    .get(&user)
                    .ok_or(format!("user {user} is not among the adopted users"))?;
                let role = match row
                    .text("role")?
                    .map(|r| r.trim().to_lowercase())
                    .as_deref()
                {
                    None | Some("member") | Some("") => OrgRole::Member,
                    Some("owner") => OrgRole::Owner,
                    Some("admin") => OrgRole::Admin,
                    Some(other) => {
                        return Err(format!("the role {other:?} is not owner, admin or member"));
                    }
                };
                Ok(OrgMember {
                    org_id,
                    user_id,
                    role,
                    joined_at: row.time("joined_at")?.unwrap_or(self.now),
                })
            })();
            match built {
                Ok(m) => match t.insert(&m) {
                    Ok(()) => self.counts.memberships += 1,
                    Err(Error::Conflict { .. }) => self.problem(
                        "org_members",
                        row,
                        None,
                        format!("user {} is already a member of org {}", m.user_id, m.org_id),
                    ),
                    Err(e) => return Err(e),
                },
                Err(e) => self.problem("org_members", row, None, e),
            }
        }
        Ok(())
    }

    fn grants(&mut self, rows: &[Row]) -> Result<()> {
        let t = self.tx.table::<UserRole>();
        for row in rows {
            let built = (|| -> std::result::Result<UserRole, String> {
                let user = row.required_id("user")?;
                let role = row.required_id("role")?;
                let user_id = *self
                    .users
                    .get(&user)
                    .ok_or(format!("user {user} is not among the adopted users"))?;
                let role_id = *self
                    .roles
                    .get(&role)
                    .ok_or(format!("role {role} is not among the adopted roles"))?;
                let assigned_by = match row.id("assigned_by")? {
                    Some(b) => self.users.get(&b).copied(),
                    None => None,
                };
                Ok(UserRole {
                    user_id,
                    role_id,
                    assigned_by,
                    active: row.flag("active", true)?,
                    assigned_at: row.time("assigned_at")?.unwrap_or(self.now),
                })
            })();
            match built {
                Ok(g) => match t.insert(&g) {
                    Ok(()) => self.counts.role_grants += 1,
                    Err(Error::Conflict { .. }) => self.problem(
                        "user_roles",
                        row,
                        None,
                        format!("user {} holds role {} twice", g.user_id, g.role_id),
                    ),
                    Err(e) => return Err(e),
                },
                Err(e) => self.problem("user_roles", row, None, e),
            }
        }
        Ok(())
    }

    fn invites(&mut self, rows: &[Row]) -> Result<()> {
        let t = self.tx.table::<Invite>();
        for row in rows {
            let built = (|| -> std::result::Result<Invite, String> {
                let code = row.required("code")?.trim().to_string();
                if !invites::plausible_code(&code) {
                    return Err("the code must be 4 to 256 printable ASCII characters".into());
                }
                let hash: TokenHash = token::hash_token(&code);
                let max_uses = row.int("max_uses")?.unwrap_or(1);
                if max_uses < 1 {
                    return Err(format!(
                        "max_uses {max_uses} allows no use; put how many registrations the code \
                         allows there (1 or more; NULL is 1), such as `CASE WHEN max_uses <= 0 \
                         THEN 1 ELSE max_uses END AS max_uses` for a code meant for one use"
                    ));
                }
                let used_by: Vec<u64> = match row.text("used_by")? {
                    None => Vec::new(),
                    Some(_) => {
                        let mut out = Vec::new();
                        for u in row.list("used_by")? {
                            let sid = match u.parse::<u64>() {
                                Ok(n) => SourceId::Num(n),
                                Err(_) => SourceId::Text(u.clone()),
                            };
                            out.push(*self.users.get(&sid).ok_or(format!(
                                "used_by names user {u}, who is not among the adopted users"
                            ))?);
                        }
                        out
                    }
                };
                let uses = row.int("uses")?.unwrap_or(used_by.len() as i64);
                if uses != used_by.len() as i64 {
                    return Err(format!(
                        "it counts {uses} uses but names {} users; give used_by",
                        used_by.len()
                    ));
                }
                let (max_uses, uses) = (
                    u32::try_from(max_uses).map_err(|_| "max_uses is too large")?,
                    u32::try_from(uses).map_err(|_| "uses is out of range")?,
                );
                let revoked = row.flag("revoked", false)?;
                let created_at = row.time("created_at")?.unwrap_or(self.now);
                Ok(Invite {
                    hash,
                    prefix: format!(
                        "{}_{}",
                        invites::INVITE_PREFIX,
                        &token::base32(&hash.0[..5])
                    ),
                    created_by: None,
                    created_at,
                    expires_at: row.time("expires_at")?,
                    max_uses,
                    uses,
                    used_by,
                    revoked_at: revoked.then_some(self.now),
                    stored_status: if revoked {
                        InviteStatus::Revoked
                    } else if uses >= max_uses {
                        InviteStatus::UsedUp
                    } else {
                        InviteStatus::Active
                    },
                })
            })();
            match built {
                Ok(i) => match t.insert(&i) {
                    Ok(()) => self.counts.invites += 1,
                    Err(Error::Conflict { .. }) => {
                        self.problem("invites", row, None, "the same code came before")
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => self.problem("invites", row, None, e),
            }
        }
        Ok(())
    }

    fn agents(&mut self, rows: &[Row]) -> Result<()> {
        let t = self.tx.table::<AgentSession>();
        for row in rows {
            let built = (|| -> std::result::Result<AgentSession, String> {
                let id = row.required("id")?.trim().to_string();
                agents::validate_id(&id).map_err(|e| e.to_string())?;
                let user = row.required_id("user")?;
                let user_id = *self
                    .users
                    .get(&user)
                    .ok_or(format!("user {user} is not among the adopted users"))?;
                let state = AgentState {
                    status: row.text("status")?.unwrap_or_else(|| "active".into()),
                    current_step: row.text("current_step")?,
                    progress: row.list("progress")?,
                    failures: row.list("failures")?,
                    artifacts: row.list("artifacts")?,
                    context: row.json("context")?.unwrap_or_else(|| "{}".into()),
                    escalation: row.json("escalation")?,
                    goal: row.text("goal")?.unwrap_or_default(),
                };
                agents::validate_state(&state).map_err(|e| e.to_string())?;
                let created_at = row.time("created_at")?.unwrap_or(self.now);
                Ok(AgentSession {
                    id,
                    user_id,
                    name: row.text("name")?.unwrap_or_default(),
                    state,
                    created_at,
                    updated_at: row.time("updated_at")?.unwrap_or(created_at),
                    expires_at: row.time("expires_at")?,
                })
            })();
            match built {
                Ok(a) => match t.insert(&a) {
                    Ok(()) => self.counts.agent_sessions += 1,
                    Err(Error::Conflict { .. }) => self.problem(
                        "agent_sessions",
                        row,
                        None,
                        format!("the id {} came before", a.id),
                    ),
                    Err(e) => return Err(e),
                },
                Err(e) if e.contains("is not JSON") => self.problem(
                    "agent_sessions",
                    row,
                    None,
                    format!(
                        "{e}; fix it in the old database, or leave such sessions out in the \
                         mapping's [agent_sessions] query (`WHERE json_valid(context)`)"
                    ),
                ),
                Err(e) => self.problem("agent_sessions", row, None, e),
            }
        }
        Ok(())
    }

    /// What redkeep requires of every account once the rows are in: a role (`user` for
    /// those the old system gave none), the admin flag and role in step, an org (a personal
    /// one when the old system had none), a current org among theirs, and an owner for every
    /// org.
    fn settle(&mut self) -> Result<()> {
        let user_ids: Vec<u64> = self.user_source.keys().copied().collect();
        let mut given_default = 0_u64;
        for &id in &user_ids {
            let grants = roles::assignments_of(self.tx, id)?;
            if self.admins.contains(&id) {
                roles::grant_in(self.tx, self.now, id, ADMIN_ROLE, None)?;
            } else if grants.iter().any(|g| {
                self.tx
                    .table::<Role>()
                    .get(&g.role_id)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.name == ADMIN_ROLE && g.active)
            }) {
                self.tx.table::<User>().modify(&id, |u| {
                    u.is_admin = true;
                    Ok(())
                })?;
            }
            if grants.is_empty() {
                roles::grant_in(self.tx, self.now, id, DEFAULT_ROLE, None)?;
                given_default += 1;
            }
        }
        let mut admin = false;
        for id in &user_ids {
            admin |= self
                .tx
                .table::<User>()
                .get(id)?
                .is_some_and(|u| u.is_admin && u.is_active);
        }
        if !admin {
            self.notes.push(
                "no adopted account is an active administrator; `redkeep role grant USER admin` \
                 makes one"
                    .into(),
            );
        }
        if given_default > 0 {
            self.notes.push(format!(
                "{given_default} user(s) held no role in the old database and were given \
                 redkeep's default role `{DEFAULT_ROLE}` (not counted among the role grants)"
            ));
        }
        // Orgs without an owner get one: their first admin, else their first member.
        let org_ids: Vec<u64> = self.orgs.values().copied().collect();
        for org in org_ids {
            let members = orgs::members_of(self.tx, org)?;
            if members.iter().any(|m| m.role == OrgRole::Owner) {
                continue;
            }
            let pick = members
                .iter()
                .filter(|m| m.role == OrgRole::Admin)
                .min_by_key(|m| (m.joined_at, m.user_id))
                .or_else(|| members.iter().min_by_key(|m| (m.joined_at, m.user_id)));
            match pick {
                Some(m) => {
                    let mut owner = m.clone();
                    owner.role = OrgRole::Owner;
                    self.tx.table::<OrgMember>().update(&owner)?;
                    self.notes.push(format!(
                        "org {org} had no owner; user {} became its owner",
                        m.user_id
                    ));
                }
                None => {
                    let name = self
                        .tx
                        .table::<Org>()
                        .get(&org)?
                        .map(|o| o.name)
                        .unwrap_or_default();
                    self.problems.push(format!(
                        "org {org} ({name}) has no members; every org needs an owner (add its members, or leave it out of the [orgs] query)"
                    ));
                }
            }
        }
        for &id in &user_ids {
            let mine = orgs::memberships_of(self.tx, id)?;
            if mine.is_empty() {
                let user = self
                    .tx
                    .table::<User>()
                    .get(&id)?
                    .ok_or_else(|| Error::not_found(format!("user {id}")))?;
                orgs::create_in(self.tx, self.now, &orgs::personal_spec(&user), true, false)
                    .and_then(|org| {
                        self.counts.orgs += 1;
                        self.counts.memberships += 1;
                        self.tx.table::<User>().modify(&id, |u| {
                            u.current_org_id = Some(org.id);
                            Ok(())
                        })
                    })?;
                continue;
            }
            let wanted = self
                .current_org
                .get(&id)
                .and_then(|o| self.orgs.get(o))
                .copied();
            let current = match wanted {
                Some(o) if mine.iter().any(|m| m.org_id == o) => o,
                Some(o) => {
                    self.notes.push(format!(
                        "user {id}: the current org {o} is not one of theirs; they work in org {} instead",
                        mine[0].org_id
                    ));
                    mine[0].org_id
                }
                None => mine[0].org_id,
            };
            self.tx.table::<User>().modify(&id, |u| {
                u.current_org_id = Some(current);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The old folder of every adopted user, read and checked (copied after the commit).
    /// What the old tree holds that is not copied (files beside the layout, folders no
    /// adopted user has) is named in the notes.
    fn folders(&mut self, root: &Path, mapping: &Mapping) -> Result<Vec<Folder>> {
        let mut out = Vec::new();
        let mut left = Vec::new();
        let sources: Vec<(u64, SourceId)> = self
            .user_source
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        // Users whose folders are one (the same path, a symlink to another's, names the
        // file system takes as one) get none of it: whose it is cannot be told.
        let mut claims = Claims::default();
        let mut groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let mut dirs: BTreeMap<u64, PathBuf> = BTreeMap::new();
        for (user, sid) in &sources {
            let rel = PathBuf::from(mapping.folder_of(&sid.to_string()));
            let dir = root.join(&rel);
            if let Some(first) = claims.claim(&rel, &dir, *user) {
                groups
                    .entry(first)
                    .or_insert_with(|| vec![first])
                    .push(*user);
            }
            dirs.insert(*user, dir);
        }
        let mut apart: BTreeSet<u64> = groups.values().flatten().copied().collect();
        for group in groups.values() {
            self.shared_folder(group, &dirs, "they are one folder on disk");
        }
        let mut reads = Vec::new();
        for (user, sid) in sources {
            let rel = PathBuf::from(mapping.folder_of(&sid.to_string()));
            let dir = root.join(&rel);
            if apart.contains(&user) {
                continue;
            }
            // Nothing outside the old tree, and no symlink, is read: a link there (to another
            // user's folder, to any file the operator may read) would hand what it points at
            // to this account.
            if let Err(e) = plain_path_below(root, &rel) {
                self.bad_file(&dir, &e);
                continue;
            }
            if !dir.is_dir() {
                continue;
            }
            match read_folder(&dir, self.settings_cap) {
                Ok(read) => reads.push((user, rel, dir, read)),
                Err(e) => self.bad_file(&dir, &e),
            }
        }
        // A file that is one file in two users' folders (a hard link) is whose?
        let mut holders: BTreeMap<(u64, u64), BTreeMap<u64, PathBuf>> = BTreeMap::new();
        for (user, _, _, read) in &reads {
            for (path, seen) in read.files() {
                holders
                    .entry((seen.dev, seen.ino))
                    .or_default()
                    .entry(*user)
                    .or_insert_with(|| path.to_path_buf());
            }
        }
        let mut linked: BTreeMap<Vec<u64>, Vec<PathBuf>> = BTreeMap::new();
        for by_user in holders.into_values().filter(|h| h.len() > 1) {
            let users = by_user.keys().copied().collect();
            linked
                .entry(users)
                .or_default()
                .extend(by_user.into_values());
        }
        for (users, files) in linked {
            let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let how = format!(
                "they hold one file between them, hard linked ({})",
                files.join(", ")
            );
            self.shared_folder(&users, &dirs, &how);
            apart.extend(users);
        }
        for (user, rel, dir, read) in reads {
            if apart.contains(&user) {
                continue;
            }
            self.counts.workspaces += 1;
            self.counts.pieces += read.pieces.len() as u64;
            left.extend(
                read.not_copied
                    .into_iter()
                    .map(|(p, why)| (rel.join(p).display().to_string(), why)),
            );
            let at = dir.display();
            for e in read.bad {
                self.bad_file(&dir, &e);
            }
            self.notes.extend(
                read.changed
                    .into_iter()
                    .map(|c| format!("workspace folder {at}: {c}")),
            );
            let n = read.pieces.len() as u64;
            if let Some(old) = read.old_count.filter(|old| *old != n) {
                self.notes.push(format!(
                    "workspace folder {at}: piece_count {old} became {n}, the number of \
                     pieces in its gallery (adopt sets it so; the highest piece number \
                     is kept, so new pieces still come after it)"
                ));
            }
            out.push(Folder {
                user,
                doc: read.doc,
                pieces: read.pieces,
            });
        }
        left.extend(unclaimed_folders(root, mapping, &self.user_source));
        left.extend(outside_layout(root, mapping));
        self.note_left_behind(root, left);
        Ok(out)
    }

    /// The folders of `users` (at `dirs`), which are one or share files (`how`): a problem
    /// naming each, or with `--leave-out-bad-files` a note that each is left out. Adopt
    /// gives no user another's files.
    fn shared_folder(&mut self, users: &[u64], dirs: &BTreeMap<u64, PathBuf>, how: &str) {
        let named: Vec<String> = users
            .iter()
            .map(|u| match dirs.get(u) {
                Some(d) => format!("{} (user {u})", d.display()),
                None => format!("user {u}'s"),
            })
            .collect();
        let named = named.join(", ");
        if self.leave_out_bad_files {
            self.counts.left_out += users.len() as u64;
            self.notes.push(format!(
                "workspace folders {named}: left out for each of these users \
                 (--leave-out-bad-files): {how}, and adopt gives no user another's files"
            ));
        } else {
            self.problems.push(format!(
                "workspace folders {named}: {how}; adopt gives no user another's files: give \
                 each user a folder of their own (check their ids, the mapping's folder \
                 pattern, symlinks and hard links), or leave these folders out with \
                 --leave-out-bad-files"
            ));
        }
    }

    /// A file (or folder) of the old folder `dir` that cannot be taken: a problem, or with
    /// `--leave-out-bad-files` a note that it is left out.
    fn bad_file(&mut self, dir: &Path, why: &str) {
        let at = dir.display();
        if self.leave_out_bad_files {
            self.counts.left_out += 1;
            self.notes.push(format!(
                "workspace folder {at}: left out (--leave-out-bad-files): {why}"
            ));
        } else {
            self.problems.push(format!("workspace folder {at}: {why}"));
        }
    }

    /// Names what of the old tree stays behind: a count, and the first paths.
    fn note_left_behind(&mut self, root: &Path, mut left: Vec<(String, &'static str)>) {
        const LISTED: usize = 20;
        if left.is_empty() {
            return;
        }
        left.sort();
        let n = left.len();
        let listed = if n > LISTED {
            format!("; the first {LISTED} follow")
        } else {
            String::new()
        };
        self.notes.push(format!(
            "{n} path(s) in the old workspaces ({}) are not copied: adopt copies each adopted \
             user's {WORKSPACE_FILE} and {GALLERY_DIR}/piece_NNNNNN.json only; copy what is \
             still needed by hand{listed}",
            root.display()
        ));
        for (path, why) in left.into_iter().take(LISTED) {
            self.notes.push(format!("not copied: {path} ({why})"));
        }
    }
}

/// The old folders taken so far, each by one user: two users resolving to one (`users/5`
/// and `users/./5`, or names a case-blind file system takes as one) would share its files.
#[derive(Default)]
struct Claims {
    by_path: HashMap<PathBuf, u64>,
    by_inode: HashMap<(u64, u64), u64>,
}

impl Claims {
    /// Takes the folder `rel` (at `dir`) for `user`, or names the user who took it first:
    /// the same path once `.` and repeated or trailing `/` are dropped, or the same folder
    /// on disk.
    fn claim(&mut self, rel: &Path, dir: &Path, user: u64) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        use std::path::Component;
        let path: PathBuf = rel
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        if let Some(first) = self.by_path.get(&path) {
            return Some(*first);
        }
        let inode = std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()));
        if let Some(first) = inode.and_then(|i| self.by_inode.get(&i)) {
            return Some(*first);
        }
        self.by_path.insert(path, user);
        if let Some(i) = inode {
            self.by_inode.insert(i, user);
        }
        None
    }
}

/// The folders the mapping's pattern could name (the entries beside the users' folders that
/// fit it: `users/99` for `users/{id}`) that no adopted user has, as paths below `root`.
fn unclaimed_folders(
    root: &Path,
    mapping: &Mapping,
    users: &BTreeMap<u64, SourceId>,
) -> Vec<(String, &'static str)> {
    let pattern = mapping.folder_of("{id}");
    let segments: Vec<&str> = pattern.split('/').collect();
    let Some(at) = segments.iter().position(|s| s.contains("{id}")) else {
        return Vec::new();
    };
    let parent: PathBuf = segments[..at].iter().collect();
    let (prefix, suffix) = segments[at].split_once("{id}").unwrap_or_default();
    let claimed: BTreeSet<String> = users
        .values()
        .map(|sid| segments[at].replace("{id}", &sid.to_string()))
        .collect();
    // Never through a symlink: the users' folders themselves refuse one.
    let dir = root.join(&parent);
    if plain_path_below(root, &parent).is_err()
        || !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir())
    {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let fits = name.len() > prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix);
            (fits && !claimed.contains(&name)).then(|| {
                (
                    parent.join(&name).display().to_string(),
                    "no adopted user has this folder",
                )
            })
        })
        .collect()
}

/// The entries at the top of the old workspaces that the mapping's folder pattern does not
/// reach (`README.txt` or `shared/` beside `users/`), as paths below `root`.
fn outside_layout(root: &Path, mapping: &Mapping) -> Vec<(String, &'static str)> {
    let pattern = mapping.folder_of("{id}");
    let Some(top) = pattern.split('/').find(|s| !s.is_empty() && *s != ".") else {
        return Vec::new();
    };
    // A pattern whose first part holds the id (`{id}`, `u-{id}`) reaches every entry;
    // `unclaimed_folders` names the ones no user has.
    if top.contains("{id}") {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy() != top)
        .map(|e| {
            let why = if e.file_type().is_ok_and(|t| t.is_dir()) {
                "a folder, with all it holds, outside the users' folders"
            } else {
                "a file outside the users' folders"
            };
            (e.file_name().to_string_lossy().into_owned(), why)
        })
        .collect()
}

/// Why a row was not taken: its own fault, or a failure of the store.
enum Problem {
    Row(String),
    Fatal(Error),
}

impl From<String> for Problem {
    fn from(s: String) -> Problem {
        Problem::Row(s)
    }
}

impl From<&str> for Problem {
    fn from(s: &str) -> Problem {
        Problem::Row(s.to_string())
    }
}

/// Something read from a file, with the file's time.
pub(crate) type Dated<T> = (T, Option<std::time::SystemTime>);

/// Gallery pieces by number, as read.
type Pieces = Vec<Piece>;

/// A gallery piece of the old tree: read and checked when planned, and read again when it is
/// copied, so that a gallery of any size is never held in memory at once.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    /// Its number.
    pub(crate) n: u64,
    path: PathBuf,
    /// Its file when it was read.
    seen: Seen,
}

impl Piece {
    /// The piece's bytes (without a byte order mark) and time, read again: an error when
    /// its file is no longer the one that was read and checked (another file, or changed
    /// since).
    ///
    /// # Errors
    /// `InvalidInput` naming the file when it changed, went away or cannot be read.
    pub(crate) fn read_again(&self, cap: u64) -> Result<FoundPiece> {
        let shown = self.path.display();
        let changed = |what: String| {
            Error::invalid(
                "workspaces",
                format!(
                    "{shown} {what} since adopt read it: stop the old application (nothing may \
                     change the old tree while adopt copies it), then adopt again"
                ),
            )
        };
        let (bytes, seen) = read_regular(&self.path, cap)
            .map_err(|e| changed(format!("cannot be read ({e})")))?
            .ok_or_else(|| changed("went away".into()))?;
        if seen != self.seen {
            return Err(changed("changed".into()));
        }
        Ok(FoundPiece {
            n: self.n,
            json: strip_bom(bytes).0,
            modified: seen.modified,
        })
    }
}

/// What identifies a file as read: a file changed, replaced or touched since has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
    /// The change time (seconds, nanoseconds), which no writer can set back.
    changed: (i64, i64),
}

impl Seen {
    fn of(m: &std::fs::Metadata) -> Seen {
        use std::os::unix::fs::MetadataExt;
        Seen {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            modified: m.modified().ok(),
            changed: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Refuses a folder path of the old tree that leaves `root` (a source id holding `..` or a
/// `/`) or passes through a symlink on the way.
fn plain_path_below(root: &Path, rel: &Path) -> std::result::Result<(), String> {
    use std::path::Component;
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "{} is not a plain path below the workspaces folder (no `..`, no leading `/`); \
             the user's source id or the mapping's folder pattern makes it so",
            rel.display()
        ));
    }
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(symlink_refused(&at));
        }
    }
    Ok(())
}

fn symlink_refused(path: &Path) -> String {
    format!(
        "{} is a symlink; adopt never follows one (it would give what it points at to this \
         account): put the folder or file itself there, or remove the link",
        path.display()
    )
}

/// The bytes of the regular file `path` and what identifies the file, never through a
/// symlink; `None` when nothing is there. A file over `cap` bytes is refused, and one whose
/// size changes while it is read.
type Read = (Vec<u8>, Seen);

fn read_regular(path: &Path, cap: u64) -> std::result::Result<Option<Read>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {name}: {e}")),
    };
    if meta.file_type().is_symlink() {
        return Err(symlink_refused(path));
    }
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > cap {
        return Err(format!(
            "{} has {} bytes, more than the {cap} a workspace document or piece may hold \
             (raise it with --max-doc-bytes or REDKEEP_MAX_DOC_BYTES, for the adoption and \
             for the application after it)",
            path.display(),
            meta.len()
        ));
    }
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let mut bytes = Vec::new();
    let seen = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .and_then(|f| {
            let seen = Seen::of(&f.metadata()?);
            f.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
            Ok(seen)
        })
        .map_err(|e| format!("reading {name}: {e}"))?;
    if bytes.len() as u64 != seen.len {
        return Err(format!(
            "{} changed size while it was read; stop the old application, then adopt again",
            path.display()
        ));
    }
    Ok(Some((bytes, seen)))
}

/// `bytes` without a leading UTF-8 byte order mark, and whether there was one.
fn strip_bom(mut bytes: Vec<u8>) -> (Vec<u8>, bool) {
    let had = bytes.starts_with(BOM);
    if had {
        bytes.drain(..BOM.len());
    }
    (bytes, had)
}

/// What of an old folder is not copied, each with why: paths relative to the folder.
type NotCopied = Vec<(PathBuf, &'static str)>;

/// An old folder, as read.
#[derive(Default)]
struct FolderRead {
    doc: Option<Dated<WorkspaceDoc>>,
    /// The document's file, when it was read.
    doc_file: Option<(PathBuf, Seen)>,
    /// The document's `piece_count` as the old app wrote it, when it wrote a count.
    old_count: Option<u64>,
    pieces: Pieces,
    not_copied: NotCopied,
    /// Files that cannot be taken as they are, each with why (naming the file).
    bad: Vec<String>,
    /// What was changed to carry a file over (a byte order mark dropped, a `piece_count`
    /// that was no count), naming the file.
    changed: Vec<String>,
}

/// The UTF-8 byte order mark some editors put before JSON, which JSON parsers refuse.
const BOM: &[u8] = b"\xEF\xBB\xBF";

impl FolderRead {
    /// The files read (the document and the pieces), each with what identifies it.
    fn files(&self) -> impl Iterator<Item = (&Path, &Seen)> {
        let doc = self.doc_file.iter().map(|(p, s)| (p.as_path(), s));
        doc.chain(self.pieces.iter().map(|p| (p.path.as_path(), &p.seen)))
    }

    /// `bytes` without a leading byte order mark, saying so.
    fn without_bom(&mut self, rel: &str, bytes: Vec<u8>) -> Vec<u8> {
        let (bytes, had) = strip_bom(bytes);
        if had {
            self.changed.push(format!(
                "{rel}: the UTF-8 byte order mark at its start was dropped (JSON has none); \
                 the rest is copied as it is"
            ));
        }
        bytes
    }

    /// The workspace document of `bytes`; a `piece_count` that is no count is dropped (adopt
    /// sets it to the gallery's count anyway), saying so.
    fn doc(&mut self, bytes: &[u8]) -> std::result::Result<WorkspaceDoc, String> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("{WORKSPACE_FILE} is not valid JSON ({e})"))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(format!("{WORKSPACE_FILE} is not a JSON object"));
        };
        match map.get("piece_count") {
            None | Some(serde_json::Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) => self.old_count = Some(n),
                None => {
                    self.changed.push(format!(
                        "{WORKSPACE_FILE}: piece_count {v} is not a count; it becomes the \
                         number of pieces in the gallery"
                    ));
                    map.shift_remove("piece_count");
                }
            },
        }
        WorkspaceDoc::from_map(map).map_err(|e| format!("{WORKSPACE_FILE}: {e}"))
    }

    /// Reads piece `n` (file `name`) at `path`, or says why it cannot be taken.
    fn piece(&mut self, n: u64, name: &str, path: &Path, cap: u64) {
        let rel = format!("{GALLERY_DIR}/{name}");
        // The numbers a gallery of this store can hold: past them, an export of the
        // adopted store would not import, and the gallery could save no more pieces.
        if n == 0 {
            self.bad.push(format!(
                "{rel}: pieces are numbered from 1, so piece 0 has no number here (moving the \
                 gallery up by one would change the numbers the old app and its users know)"
            ));
            return;
        }
        if let Err(e) = crate::workspace::piece_within(n, crate::workspace::MAX_GIVEN_PIECE) {
            self.bad.push(format!("{rel}: {e}"));
            return;
        }
        let (bytes, seen) = match read_regular(path, cap) {
            Ok(Some(read)) => read,
            Ok(None) => {
                self.bad.push(format!("{rel} went away while it was read"));
                return;
            }
            Err(e) => {
                self.bad.push(e);
                return;
            }
        };
        if bytes.is_empty() {
            self.bad.push(format!("{rel} is empty (0 bytes), not JSON"));
            return;
        }
        let bytes = self.without_bom(&rel, bytes);
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            // Read again when copied: only what identifies the file is kept.
            Ok(_) => self.pieces.push(Piece {
                n,
                path: path.to_path_buf(),
                seen,
            }),
            Err(e) => self.bad.push(format!("{rel} is not JSON ({e})")),
        }
    }
}

/// The workspace document and the pieces of an old folder, each checked to parse (at most
/// `cap` bytes each), the entries beside them that are not copied, and every file that
/// cannot be taken. A symlink on the way to the document or a piece is refused.
fn read_folder(dir: &Path, cap: u64) -> std::result::Result<FolderRead, String> {
    let mut r = FolderRead::default();
    match read_regular(&dir.join(WORKSPACE_FILE), cap) {
        Ok(None) => {}
        Ok(Some((bytes, seen))) => {
            r.doc_file = Some((dir.join(WORKSPACE_FILE), seen));
            let bytes = r.without_bom(WORKSPACE_FILE, bytes);
            match r.doc(&bytes) {
                Ok(doc) => r.doc = Some((doc, seen.modified)),
                Err(e) => r.bad.push(e),
            }
        }
        Err(e) => r.bad.push(e),
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading the folder: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading the folder: {e}"))?;
        let name = entry.file_name();
        if name == WORKSPACE_FILE || name == GALLERY_DIR {
            continue;
        }
        let why = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            "a folder, with all it holds, beside the workspace"
        } else {
            "a file beside the workspace"
        };
        r.not_copied.push((PathBuf::from(name), why));
    }
    let gallery: PathBuf = dir.join(GALLERY_DIR);
    if std::fs::symlink_metadata(&gallery).is_ok_and(|m| m.file_type().is_symlink()) {
        r.bad.push(symlink_refused(&gallery));
    } else if gallery.is_dir() {
        match std::fs::read_dir(&gallery) {
            Err(e) => r.bad.push(format!("reading {GALLERY_DIR}: {e}")),
            Ok(entries) => {
                for entry in entries {
                    let entry = match entry {
                        Ok(e) => e,
                        Err(e) => {
                            r.bad.push(format!("reading {GALLERY_DIR}: {e}"));
                            break;
                        }
                    };
                    let name = entry.file_name().to_string_lossy().into_owned();
                    match crate::workspace::parse_piece_name(&name) {
                        Some(n) => r.piece(n, &name, &entry.path(), cap),
                        None => r.not_copied.push((
                            Path::new(GALLERY_DIR).join(entry.file_name()),
                            "not a piece's name (piece_NNNNNN.json)",
                        )),
                    }
                }
            }
        }
    } else if gallery.exists() {
        r.not_copied
            .push((PathBuf::from(GALLERY_DIR), "not a folder"));
    }
    r.pieces.sort_by_key(|p| p.n);
    r.bad.sort();
    Ok(r)
}

/// Adopts every section of `mapping` into `tx`.
pub(crate) fn adopt_into(
    tx: &WriteTx<'_>,
    now: Timestamp,
    source: &Source,
    mapping: &Mapping,
    settings: &Settings,
) -> Result<Outcome> {
    let workspaces = settings.workspaces.as_deref();
    let mut a = Adoption {
        tx,
        now,
        problems: Vec::new(),
        notes: Vec::new(),
        counts: AdoptCounts::default(),
        users: HashMap::new(),
        orgs: HashMap::new(),
        roles: HashMap::new(),
        user_source: BTreeMap::new(),
        current_org: BTreeMap::new(),
        admins: BTreeSet::new(),
        without_password: settings.without_password,
        leave_out_bad_files: settings.leave_out_bad_files,
        settings_cap: settings.max_doc_bytes,
        emails: HashMap::new(),
        usernames: HashMap::new(),
    };
    // Verifying a default password costs what the old hash costs, whatever redkeep's own
    // parameters are.
    let checker = Passwords::new(PasswordParams::INSECURE_FAST)?;
    let mut problems = Vec::new();
    if let Some(q) = &mapping.roles {
        let rows = section(source, "roles", &q.query, ROLE_COLUMNS, &mut problems)?;
        a.roles(&rows)?;
    }
    if let Some(q) = &mapping.orgs {
        let rows = section(source, "orgs", &q.query, ORG_COLUMNS, &mut problems)?;
        a.orgs(&rows)?;
    }
    let rows = section(
        source,
        "users",
        &mapping.users.query,
        USER_COLUMNS,
        &mut problems,
    )?;
    a.users(&rows, mapping, &checker)?;
    if let Some(q) = &mapping.org_members {
        let rows = section(
            source,
            "org_members",
            &q.query,
            MEMBER_COLUMNS,
            &mut problems,
        )?;
        a.members(&rows)?;
    }
    if let Some(q) = &mapping.user_roles {
        let rows = section(source, "user_roles", &q.query, GRANT_COLUMNS, &mut problems)?;
        a.grants(&rows)?;
    }
    if let Some(q) = &mapping.invites {
        let rows = section(source, "invites", &q.query, INVITE_COLUMNS, &mut problems)?;
        a.invites(&rows)?;
    }
    if let Some(q) = &mapping.agent_sessions {
        let rows = section(
            source,
            "agent_sessions",
            &q.query,
            AGENT_COLUMNS,
            &mut problems,
        )?;
        a.agents(&rows)?;
    }
    a.settle()?;
    let folders = match workspaces {
        Some(root) => a.folders(root, mapping)?,
        None => Vec::new(),
    };
    audit::record(
        tx,
        now,
        Event {
            action: "adopted",
            subject: "store".into(),
            outcome: "ok",
            detail: format!(
                "{} users, {} orgs, {} roles, {} invites, {} agent sessions",
                a.counts.users,
                a.counts.orgs,
                a.counts.roles,
                a.counts.invites,
                a.counts.agent_sessions
            ),
            ..Event::default()
        },
    )?;
    problems.extend(a.problems);
    Ok(Outcome {
        counts: a.counts,
        problems,
        notes: a.notes,
        folders,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::Claims;

    /// Two users whose folders resolve to one place (a path spelled with `.` or a trailing
    /// `/`, or another name of the same folder on disk) are told apart from the first one's:
    /// the second would have been given the first one's files.
    #[test]
    fn one_folder_is_claimed_by_one_user() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("users/5")).unwrap();
        let mut claims = Claims::default();
        let at = |rel: &str| root.join(rel);
        assert_eq!(claims.claim(Path::new("users/5"), &at("users/5"), 5), None);
        for spelling in ["users/./5", "users/5/", "users//5", "./users/5"] {
            assert_eq!(
                claims.claim(Path::new(spelling), &at(spelling), 6),
                Some(5),
                "{spelling}"
            );
        }
        // Another path to the same folder on disk (as a case-blind file system gives).
        std::fs::create_dir_all(root.join("users/6")).unwrap();
        assert_eq!(claims.claim(Path::new("users/6"), &at("users/6"), 6), None);
        assert_eq!(
            claims.claim(Path::new("users/other"), &at("users/6"), 7),
            Some(6)
        );
        // Folders not there yet are told apart by their paths alone.
        assert_eq!(claims.claim(Path::new("users/8"), &at("users/8"), 8), None);
        assert_eq!(claims.claim(Path::new("users/9"), &at("users/9"), 9), None);
    }
}
