//! Roles and permissions: named permission sets, assigned to users; the system roles
//! `admin` (every permission), `user` and `guest` always exist and cannot be deleted.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Accounts;
use super::audit::{self, Event};
use super::users::User;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{Index, KeyRange, Order, ReadTx, Record, Source, Table, WriteTx};

/// The most roles a store holds: roles are a vocabulary, listed and checked whole.
pub const MAX_ROLES: u64 = 1000;

/// The permission that stands for every permission (held by `admin`).
pub const ALL_PERMISSIONS: &str = "*";
/// The role every new user gets.
pub const DEFAULT_ROLE: &str = "user";
/// The role of administrators; `User::is_admin` follows it.
pub const ADMIN_ROLE: &str = "admin";

/// A named set of permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Numeric id.
    pub id: u64,
    /// Unique name (lower case).
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Permissions granted.
    pub permissions: BTreeSet<String>,
    /// Higher wins when an application ranks roles.
    pub priority: i64,
    /// Built in: cannot be deleted.
    pub is_system: bool,
    /// Creation time.
    pub created_at: Timestamp,
}

impl Role {
    /// Unique: the name.
    pub const NAME: Index<Role> = Index::unique("name", |r| Some(key!(r.name)));
}

impl Record for Role {
    const TABLE: &'static str = "roles";
    type Key = u64;
    const ID_SEQUENCE: bool = true;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::NAME];
    fn key(&self) -> u64 {
        self.id
    }
    fn validate(&self) -> std::result::Result<(), String> {
        validate_name(&self.name).map_err(|e| e.to_string())?;
        self.permissions
            .iter()
            .try_for_each(|p| validate_permission(p).map_err(|e| e.to_string()))
    }
}

/// A role held by a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRole {
    /// The user.
    pub user_id: u64,
    /// The role.
    pub role_id: u64,
    /// Who granted it (`None`: an operator or the system).
    pub assigned_by: Option<u64>,
    /// Inactive assignments grant nothing.
    pub active: bool,
    /// When it was granted.
    pub assigned_at: Timestamp,
}

impl UserRole {
    /// Assignments of a role. (Those of a user are a prefix of the primary key.)
    pub const BY_ROLE: Index<UserRole> = Index::many("by_role", |a| Some(key!(a.role_id)));
}

impl Record for UserRole {
    const TABLE: &'static str = "user_roles";
    type Key = (u64, u64);
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_ROLE];
    fn key(&self) -> (u64, u64) {
        (self.user_id, self.role_id)
    }
}

/// The admin role's priority: the highest, so an application that ranks roles puts it first.
pub const ADMIN_PRIORITY: i64 = 100;
/// The priorities a custom role may have: below [`ADMIN_PRIORITY`], so no custom role
/// outranks an administrator.
pub const CUSTOM_PRIORITIES: std::ops::RangeInclusive<i64> = -1_000_000..=ADMIN_PRIORITY - 1;

/// What role to create.
#[derive(Debug, Clone, Default)]
pub struct RoleSpec {
    /// Unique name: 1 to 64 of `a-z 0-9 _ -`, not all digits.
    pub name: String,
    /// Description.
    pub description: String,
    /// Permissions: 1 to 128 of `a-z 0-9 _ - . :`, or `*`.
    pub permissions: Vec<String>,
    /// Priority: within [`CUSTOM_PRIORITIES`] (higher ranks first).
    pub priority: i64,
}

pub(crate) const SYSTEM_ROLES: [(&str, &str, &[&str], i64); 3] = [
    (
        "admin",
        "Full system administrator",
        &[ALL_PERMISSIONS],
        ADMIN_PRIORITY,
    ),
    (
        "user",
        "Standard user: basic access, own sessions and profile",
        &["basic_access", "session_management", "profile_management"],
        10,
    ),
    ("guest", "Limited access", &["basic_access"], 0),
];

pub(crate) fn validate_name(name: &str) -> Result<()> {
    validate_given_name(name, name)
}

/// [`validate_name`] of `name`, the form of `given` that is stored (trimmed, lower case); a
/// refusal quotes `given`, as the caller wrote it.
fn validate_given_name(name: &str, given: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "role",
            format!(
                "{:?} is not a role name: use 1 to 64 of a-z 0-9 _ - (capitals are made \
                 lower case)",
                super::users::cut_input(given)
            ),
        ))
    }
}

pub(crate) fn validate_permission(p: &str) -> Result<()> {
    let ok = p == ALL_PERMISSIONS
        || (!p.is_empty()
            && p.len() <= 128
            && p.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'.' | b':')
            }));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "permission",
            format!(
                "{:?} must be 1 to 128 of a-z 0-9 _ - . : (or * for all)",
                super::users::cut_input(p)
            ),
        ))
    }
}

/// Records that a role was created or deleted, with its permissions.
fn role_event(tx: &WriteTx<'_>, now: Timestamp, action: &str, role: &Role) -> Result<()> {
    audit::record(
        tx,
        now,
        Event {
            action,
            subject: format!("role {}", role.name),
            outcome: "ok",
            detail: format!(
                "permissions {}",
                role.permissions
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            ..Event::default()
        },
    )
}

pub(crate) fn role_by_name<S: Source>(t: &Table<'_, Role, S>, name: &str) -> Result<Role> {
    t.get_by(&Role::NAME, &key!(name.trim().to_lowercase()))?
        .ok_or_else(|| Error::not_found(format!("role {}", super::users::shown_input(name.trim()))))
}

/// The active assignments of `user`, read through the primary key's user prefix.
pub(crate) fn assignments_of<S: Source>(tx: &S, user: u64) -> Result<Vec<UserRole>> {
    Table::<UserRole, S>::new(tx).range(KeyRange::prefix(key!(user)), Order::Asc, usize::MAX)
}

/// Calls `f` with each permission `user` holds through an active assignment (nothing for a
/// disabled user), until it returns `false`.
fn each_permission<S: Source>(tx: &S, user: &User, mut f: impl FnMut(&str) -> bool) -> Result<()> {
    if !user.is_active {
        return Ok(());
    }
    let roles = Table::<Role, S>::new(tx);
    Table::<UserRole, S>::new(tx).for_each(KeyRange::prefix(key!(user.id)), Order::Asc, |a| {
        // Roles are few and read by every check: each stays decoded per thread while its
        // stored bytes stay the same (see `Table::get_memo`).
        if a.active
            && let Some(role) = roles.get_memo(&a.role_id)?
        {
            for p in &role.permissions {
                if !f(p) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })
}

/// Effective permissions of `user` inside a snapshot: the union over active assignments, or
/// nothing for a disabled user.
pub(crate) fn permissions_in<S: Source>(tx: &S, user: &User) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    each_permission(tx, user, |p| {
        out.insert(p.to_string());
        true
    })?;
    Ok(out)
}

/// Whether `user` holds `permission` (directly or through `*`): the same answer as
/// [`permissions_in`], stopping at the first grant and collecting nothing.
pub(crate) fn holds_in<S: Source>(tx: &S, user: &User, permission: &str) -> Result<bool> {
    let mut found = false;
    each_permission(tx, user, |p| {
        found = p == ALL_PERMISSIONS || p == permission;
        !found
    })?;
    Ok(found)
}

/// Creates the system roles that are missing.
pub(crate) fn ensure_system_roles(acc: &Accounts) -> Result<()> {
    if !system_roles_missing(acc)? {
        return Ok(());
    }
    let now = acc.now();
    acc.store.write(|tx| put_system_roles(tx, now))
}

/// Makes the system roles that `tx`'s store lacks (a store just emptied by a reset holds
/// none).
pub(crate) fn put_system_roles(tx: &WriteTx<'_>, now: Timestamp) -> Result<()> {
    let t = tx.table::<Role>();
    for (name, description, perms, priority) in SYSTEM_ROLES {
        if t.get_by(&Role::NAME, &key!(name))?.is_some() {
            continue;
        }
        let id = t.next_id()?;
        t.insert(&Role {
            id,
            name: name.into(),
            description: description.into(),
            permissions: perms.iter().map(|p| p.to_string()).collect(),
            priority,
            is_system: true,
            created_at: now,
        })?;
    }
    Ok(())
}

/// Whether a system role is missing (a store just emptied by a reset, say), which the next
/// open for writing makes again.
pub(crate) fn system_roles_missing(acc: &Accounts) -> Result<bool> {
    acc.read(|tx| {
        let t = tx.table::<Role>();
        for (name, ..) in SYSTEM_ROLES {
            if t.get_by(&Role::NAME, &key!(name))?.is_none() {
                return Ok(true);
            }
        }
        Ok(false)
    })
}

/// Sets `is_admin` to whether `user` holds the `admin` role (the role is the source of truth).
pub(crate) fn sync_admin_flag(tx: &WriteTx<'_>, now: Timestamp, user: u64) -> Result<()> {
    let admin = role_by_name(&tx.table::<Role>(), ADMIN_ROLE)?;
    let holds = tx
        .table::<UserRole>()
        .get(&(user, admin.id))?
        .is_some_and(|a| a.active);
    let users = tx.table::<User>();
    if let Some(u) = users.get(&user)?
        && u.is_admin != holds
    {
        users.modify(&user, |u| {
            u.is_admin = holds;
            u.updated_at = now;
            Ok(())
        })?;
    }
    Ok(())
}

/// Grants `role` to `user` inside `tx` (idempotent; reactivates an inactive assignment).
pub(crate) fn grant_in(
    tx: &WriteTx<'_>,
    now: Timestamp,
    user: u64,
    role: &str,
    by: Option<u64>,
) -> Result<Role> {
    if !tx.table::<User>().contains(&user)? {
        return Err(Error::not_found(format!("user {user}")));
    }
    let role = role_by_name(&tx.table::<Role>(), role)?;
    let t = tx.table::<UserRole>();
    let assignment = UserRole {
        user_id: user,
        role_id: role.id,
        assigned_by: by,
        active: true,
        assigned_at: now,
    };
    match t.get(&(user, role.id))? {
        Some(a) if a.active => return Ok(role),
        Some(_) => t.update(&assignment)?,
        None => t.insert(&assignment)?,
    }
    audit_role(tx, now, "role_granted", user, &role, by)?;
    if role.name == ADMIN_ROLE {
        sync_admin_flag(tx, now, user)?;
    }
    Ok(role)
}

/// Revokes `role` from `user` inside `tx`.
pub(crate) fn revoke_in(
    tx: &WriteTx<'_>,
    now: Timestamp,
    user: u64,
    role: &str,
    by: Option<u64>,
) -> Result<Role> {
    let role = role_by_name(&tx.table::<Role>(), role)?;
    if role.name == ADMIN_ROLE {
        keep_an_admin(tx, user, "taking the admin role away")?;
    }
    if tx.table::<UserRole>().delete(&(user, role.id))?.is_none() {
        return Err(Error::not_found(format!(
            "role {} of user {user}",
            role.name
        )));
    }
    audit_role(tx, now, "role_revoked", user, &role, by)?;
    if role.name == ADMIN_ROLE {
        sync_admin_flag(tx, now, user)?;
    }
    Ok(role)
}

/// Refuses to take away the last active administrator (by `doing`: revoking the role,
/// disabling, deleting): the store would be left with nobody who may administer it from the
/// application. A store without one to begin with is left as it is.
///
/// # Errors
/// `Denied` when `user` is the only active administrator.
pub(crate) fn keep_an_admin(tx: &WriteTx<'_>, user: u64, doing: &str) -> Result<()> {
    let users = tx.table::<User>();
    let Some(u) = users.get(&user)? else {
        return Ok(());
    };
    if !(u.is_admin && u.is_active) {
        return Ok(());
    }
    let admins = users.range_by(
        &User::IS_ADMIN,
        KeyRange::prefix(key!(true)),
        Order::Asc,
        usize::MAX,
    )?;
    if admins.iter().any(|a| a.id != user && a.is_active) {
        return Ok(());
    }
    Err(Error::denied(format!(
        "user {user} is the last active administrator, and {doing} would leave none; make \
         another user an administrator first (`redkeep role grant USER admin`)"
    )))
}

fn audit_role(
    tx: &WriteTx<'_>,
    now: Timestamp,
    action: &str,
    user: u64,
    role: &Role,
    by: Option<u64>,
) -> Result<()> {
    audit::record(
        tx,
        now,
        Event {
            actor: by,
            action,
            subject_user: Some(user),
            subject: format!("user {user}"),
            outcome: "ok",
            detail: format!("role {}", role.name),
        },
    )
}

/// Operations on roles and their assignments.
#[derive(Debug, Clone, Copy)]
pub struct Roles<'a> {
    pub(crate) acc: &'a Accounts,
}

impl Roles<'_> {
    /// Creates a custom role.
    ///
    /// # Errors
    /// `InvalidInput` for a bad name (all digits among them) or permission, a priority outside
    /// [`CUSTOM_PRIORITIES`], or when the store holds [`MAX_ROLES`]; `Conflict` when the name
    /// is taken.
    pub fn create(&self, spec: RoleSpec) -> Result<Role> {
        let name = spec.name.trim().to_lowercase();
        validate_given_name(&name, spec.name.trim())?;
        // As usernames and slugs: a number would read as an id. Only a new name is held to
        // this; a stored one (made before, or imported) still reads and imports.
        if name.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid(
                "role",
                format!(
                    "{:?} is all digits, which would read as an id; give a name with a letter \
                     in it",
                    super::users::cut_input(spec.name.trim())
                ),
            ));
        }
        if spec.permissions.is_empty() {
            return Err(Error::invalid("permission", "give at least one permission"));
        }
        for p in &spec.permissions {
            validate_permission(p)?;
        }
        if !CUSTOM_PRIORITIES.contains(&spec.priority) {
            return Err(Error::invalid(
                "priority",
                format!(
                    "give a priority from {} to {}: a custom role ranks below the admin \
                     role ({ADMIN_PRIORITY})",
                    CUSTOM_PRIORITIES.start(),
                    CUSTOM_PRIORITIES.end()
                ),
            ));
        }
        if spec.description.chars().count() > 500
            || spec.description.chars().any(super::users::unshowable)
        {
            return Err(Error::invalid(
                "description",
                "use at most 500 characters, without control or direction-changing characters \
                 (a line break, a tab, an escape)",
            ));
        }
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let t = tx.table::<Role>();
            if t.count()? >= MAX_ROLES {
                return Err(Error::invalid(
                    "role",
                    format!(
                        "a store holds at most {MAX_ROLES} roles; delete one you no longer use"
                    ),
                ));
            }
            if t.get_by(&Role::NAME, &key!(name))?.is_some() {
                return Err(Error::Conflict {
                    table: Role::TABLE,
                    index: "name",
                    detail: format!("a role named {name} exists"),
                });
            }
            let role = Role {
                id: t.next_id()?,
                name: name.clone(),
                description: spec.description.clone(),
                permissions: spec.permissions.iter().cloned().collect(),
                priority: spec.priority,
                is_system: false,
                created_at: now,
            };
            t.insert(&role)?;
            role_event(tx, now, "role_created", &role)?;
            Ok(role)
        })
    }

    /// Every role (at most [`MAX_ROLES`]), highest priority first.
    ///
    /// # Errors
    /// `Corrupt` when a role cannot be read.
    pub fn list(&self) -> Result<Vec<Role>> {
        let mut roles = self.acc.read(|tx| {
            tx.table::<Role>()
                .range(KeyRange::all(), Order::Asc, usize::MAX)
        })?;
        roles.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        Ok(roles)
    }

    /// The role with this name.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn get(&self, name: &str) -> Result<Role> {
        self.acc.read(|tx| role_by_name(&tx.table::<Role>(), name))
    }

    /// Deletes a custom role and every assignment of it.
    ///
    /// # Errors
    /// `Denied` for a system role; `NotFound`.
    pub fn delete(&self, name: &str) -> Result<Role> {
        self.delete_revoking(name).map(|(role, _)| role)
    }

    /// Deletes a custom role and every assignment of it, as [`delete`](Self::delete) does,
    /// and returns the ids of the users who held it (in the same transaction, so exactly
    /// those who lost it), in ascending order.
    ///
    /// # Errors
    /// `Denied` for a system role; `NotFound`.
    pub fn delete_revoking(&self, name: &str) -> Result<(Role, Vec<u64>)> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let role = role_by_name(&tx.table::<Role>(), name)?;
            if role.is_system {
                return Err(Error::denied(format!(
                    "role {} is a system role and cannot be deleted",
                    role.name
                )));
            }
            let assignments = tx.table::<UserRole>();
            let holders = assignments.range_by(
                &UserRole::BY_ROLE,
                KeyRange::prefix(key!(role.id)),
                Order::Asc,
                usize::MAX,
            )?;
            let mut revoked = Vec::with_capacity(holders.len());
            for a in holders {
                revoked.push(a.user_id);
                assignments.delete(&(a.user_id, a.role_id))?;
                audit::record(
                    tx,
                    now,
                    Event {
                        action: "role_revoked",
                        subject_user: Some(a.user_id),
                        subject: format!("user {}", a.user_id),
                        outcome: "ok",
                        detail: format!("role {} deleted", role.name),
                        ..Event::default()
                    },
                )?;
            }
            tx.table::<Role>().delete(&role.id)?;
            role_event(tx, now, "role_deleted", &role)?;
            revoked.sort_unstable();
            Ok((role, revoked))
        })
    }

    /// Grants a role to a user (idempotent). Granting `admin` makes the user an administrator.
    ///
    /// # Errors
    /// `NotFound` for an unknown user or role.
    pub fn grant(&self, user: u64, role: &str, by: Option<u64>) -> Result<Role> {
        let now = self.acc.now();
        self.acc.store.write(|tx| grant_in(tx, now, user, role, by))
    }

    /// Revokes a role from a user. Revoking `admin` ends the user's administrator status.
    ///
    /// # Errors
    /// `NotFound` when the user does not hold it; `Denied` for `admin` of the last active
    /// administrator.
    pub fn revoke(&self, user: u64, role: &str, by: Option<u64>) -> Result<Role> {
        let now = self.acc.now();
        self.acc
            .store
            .write(|tx| revoke_in(tx, now, user, role, by))
    }

    /// The roles a user holds (active assignments), highest priority first.
    ///
    /// # Errors
    /// `Corrupt` when a record cannot be read.
    pub fn of_user(&self, user: u64) -> Result<Vec<Role>> {
        let mut out = self.acc.read(|tx| {
            let roles = tx.table::<Role>();
            let mut out = Vec::new();
            for a in assignments_of(tx, user)? {
                if let (true, Some(r)) = (a.active, roles.get(&a.role_id)?) {
                    out.push(r);
                }
            }
            Ok(out)
        })?;
        out.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Ids of up to `limit` users holding `role`.
    ///
    /// # Errors
    /// `NotFound` for an unknown role.
    pub fn users_in(&self, role: &str, limit: usize) -> Result<Vec<u64>> {
        self.acc.read(|tx| {
            let role = role_by_name(&tx.table::<Role>(), role)?;
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            tx.table::<UserRole>().for_each_by(
                &UserRole::BY_ROLE,
                KeyRange::prefix(key!(role.id)),
                Order::Asc,
                |a| {
                    if a.active {
                        out.push(a.user_id);
                    }
                    Ok(out.len() < limit)
                },
            )?;
            Ok(out)
        })
    }

    /// A user's effective permissions (empty for a disabled user).
    ///
    /// # Errors
    /// `NotFound` for an unknown user.
    pub fn permissions(&self, user: u64) -> Result<BTreeSet<String>> {
        self.with_user(user, |tx, u| permissions_in(tx, u))
    }

    /// An active user's record and effective permissions, read in one snapshot; `None` for
    /// a user who is disabled or unknown (a credential of theirs opens nothing).
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    #[cfg(feature = "axum")]
    pub(crate) fn of_active_user(&self, user: u64) -> Result<Option<(User, BTreeSet<String>)>> {
        self.acc.read(|tx| match tx.table::<User>().get(&user)? {
            Some(u) if u.is_active => {
                let granted = permissions_in(tx, &u)?;
                Ok(Some((u, granted)))
            }
            _ => Ok(None),
        })
    }

    /// Runs `f` on `user`'s record inside one read snapshot.
    fn with_user<T>(
        &self,
        user: u64,
        f: impl FnOnce(&ReadTx<'_>, &User) -> Result<T>,
    ) -> Result<T> {
        self.acc.read(|tx| {
            let u = tx
                .table::<User>()
                .get(&user)?
                .ok_or_else(|| Error::not_found(format!("user {user}")))?;
            f(tx, &u)
        })
    }

    /// Whether a user holds `permission` (directly or through `*`).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// # let alice = rk.users().create(redkeep::NewUser { email: "alice@example.com".into(), name: None, username: None, password: None, is_admin: false, invite: None })?.user;
    /// use redkeep::auth::roles::RoleSpec;
    /// rk.roles().create(RoleSpec {
    ///     name: "editor".into(),
    ///     description: "writes posts".into(),
    ///     permissions: vec!["posts:write".into()],
    ///     priority: 10,
    /// })?;
    /// assert!(!rk.roles().has_permission(alice.id, "posts:write")?);
    /// rk.roles().grant(alice.id, "editor", None)?;
    /// assert!(rk.roles().has_permission(alice.id, "posts:write")?);
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `NotFound` for an unknown user.
    pub fn has_permission(&self, user: u64, permission: &str) -> Result<bool> {
        self.with_user(user, |tx, u| holds_in(tx, u, permission))
    }
}
