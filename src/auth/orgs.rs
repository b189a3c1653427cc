//! Organizations and their members. Rules kept by every operation: an org always has at
//! least one owner; a member's current org is one of their memberships; every user has a
//! personal org from registration on.

use serde::{Deserialize, Serialize};

use super::Accounts;
use super::audit::{self, Event};
use super::users::User;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{Index, KeyRange, Order, Record, Source, Stored, Table, WriteTx};

/// An organization (a tenant, a workspace of people).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    /// Numeric id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Unique lower-case slug.
    pub slug: String,
    /// Description.
    pub description: String,
    /// A user's own org, made at registration (or when they were left in no org). It stops
    /// being personal when that user leaves it or is deleted while others stay in it.
    pub is_personal: bool,
    /// The user whose personal org this is (`None` on other orgs, and on personal orgs made
    /// before 0.4, which did not record it).
    #[serde(default)]
    pub personal_user: Option<u64>,
    /// The org users were put in when tenancy was introduced.
    pub is_default: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// The org's id in the system it was adopted from (`redkeep adopt`), when that was not a
    /// number.
    #[serde(default)]
    pub external_id: Option<String>,
}

impl Org {
    /// Unique: the slug.
    pub const SLUG: Index<Org> = Index::unique("slug", |o| Some(key!(o.slug)));
    /// Unique: the id in the system it was adopted from.
    pub const EXTERNAL_ID: Index<Org> = Index::unique("external_id", |o| {
        o.external_id.as_ref().map(|e| key!(e.clone()))
    });
}

impl Record for Org {
    const TABLE: &'static str = "orgs";
    type Key = u64;
    const ID_SEQUENCE: bool = true;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::SLUG, &Self::EXTERNAL_ID];
    fn key(&self) -> u64 {
        self.id
    }
    fn upgrade(old: Stored<'_>) -> std::result::Result<Self, String> {
        if old.is_legacy() {
            return Ok(old.decode::<OrgV1>()?.into());
        }
        old.decode()
    }
    fn validate(&self) -> std::result::Result<(), String> {
        // What every stored org must hold (an export of an earlier release imports): no
        // control characters in the name. New orgs get the stricter rules at creation.
        if self.name.trim().is_empty()
            || self.name.chars().count() > MAX_ORG_NAME
            || self.name.chars().any(char::is_control)
        {
            return Err("the name must be 1 to 200 characters without control characters".into());
        }
        validate_slug(&self.slug).map_err(|e| e.to_string())
    }
}

/// A member's role in an org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgRole {
    /// Can do everything, including deleting the org.
    Owner,
    /// Can manage members.
    Admin,
    /// Belongs to it.
    Member,
}

impl OrgRole {
    /// `owner`, `admin` or `member`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
        }
    }
}

impl std::str::FromStr for OrgRole {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_lowercase().as_str() {
            "owner" => Ok(OrgRole::Owner),
            "admin" => Ok(OrgRole::Admin),
            "member" => Ok(OrgRole::Member),
            other => Err(Error::invalid(
                "role",
                format!(
                    "{:?} is not owner, admin or member",
                    super::users::cut_input(other)
                ),
            )),
        }
    }
}

/// A user's membership of an org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMember {
    /// The org.
    pub org_id: u64,
    /// The user.
    pub user_id: u64,
    /// Their role in it.
    pub role: OrgRole,
    /// When they joined.
    pub joined_at: Timestamp,
}

impl OrgMember {
    /// Memberships of a user. (The members of an org are a prefix of the primary key.)
    pub const BY_USER: Index<OrgMember> = Index::many("by_user", |m| Some(key!(m.user_id)));
}

impl Record for OrgMember {
    const TABLE: &'static str = "org_members";
    type Key = (u64, u64);
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_USER];
    fn key(&self) -> (u64, u64) {
        (self.org_id, self.user_id)
    }
}

const MAX_SLUG: usize = 48;

/// Derives a slug from a name: lower case, runs of other characters become `-`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    // Letters of any script become ASCII (`山田` → `shan tian`, `Zoë` → `zoe`) first.
    let ascii = deunicode::deunicode_with_tofu(name, "-");
    for c in ascii.chars().flat_map(char::to_lowercase) {
        if c == '\'' || c == '\u{2019}' {
            continue;
        }
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out
        .trim_end_matches('-')
        .chars()
        .take(MAX_SLUG - 4)
        .collect();
    out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "org".to_string()
    } else if out.bytes().all(|b| b.is_ascii_digit()) {
        // An all-digit slug would read as an id (`org show 123`): it is refused as a slug.
        format!("org-{}", &out[..out.len().min(MAX_SLUG - 8)])
    } else {
        out
    }
}

/// Checks an explicit slug: 1 to 48 of `a-z 0-9 -`, not starting or ending with `-`.
///
/// # Errors
/// `InvalidInput` naming what to change.
pub fn validate_slug(slug: &str) -> Result<()> {
    let ok = !slug.is_empty()
        && slug.len() <= MAX_SLUG
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok && !slug.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Error::invalid(
            "slug",
            format!(
                "{:?} must be 1 to {MAX_SLUG} of a-z 0-9 -, not all digits, not starting or ending with -",
                super::users::cut_input(slug)
            ),
        ))
    }
}

/// The most characters of an org's name.
const MAX_ORG_NAME: usize = 200;
/// The most characters of an org's description.
const MAX_ORG_DESCRIPTION: usize = 500;

pub(crate) fn validate_org_name(name: &str) -> Result<()> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_ORG_NAME
        || name.chars().any(super::users::unshowable)
    {
        return Err(Error::invalid(
            "name",
            "use 1 to 200 characters, without control or direction-changing characters",
        ));
    }
    Ok(())
}

/// An org's description: shown on one line by the CLI, like a role's.
pub(crate) fn validate_org_description(description: &str) -> Result<()> {
    if description.chars().count() > MAX_ORG_DESCRIPTION
        || description.chars().any(super::users::unshowable)
    {
        return Err(Error::invalid(
            "description",
            "use at most 500 characters, without control or direction-changing characters \
             (a line break, a tab, an escape)",
        ));
    }
    Ok(())
}

/// The members of `org`, read through the primary key's org prefix.
pub(crate) fn members_of<S: Source>(tx: &S, org: u64) -> Result<Vec<OrgMember>> {
    Table::<OrgMember, S>::new(tx).range(KeyRange::prefix(key!(org)), Order::Asc, usize::MAX)
}

/// Members and owners of `org`, each counted up to `cap`: the scan stops once both reach it,
/// so "is there another owner" costs little in a large org with several owners.
pub(crate) fn headcount<S: Source>(tx: &S, org: u64, cap: u64) -> Result<(u64, u64)> {
    let (mut members, mut owners) = (0u64, 0u64);
    Table::<OrgMember, S>::new(tx).for_each(KeyRange::prefix(key!(org)), Order::Asc, |m| {
        members += 1;
        if m.role == OrgRole::Owner {
            owners += 1;
        }
        Ok(members < cap || owners < cap)
    })?;
    Ok((members, owners))
}

/// The memberships of `user`.
pub(crate) fn memberships_of<S: Source>(tx: &S, user: u64) -> Result<Vec<OrgMember>> {
    Table::<OrgMember, S>::new(tx).range_by(
        &OrgMember::BY_USER,
        KeyRange::prefix(key!(user)),
        Order::Asc,
        usize::MAX,
    )
}

/// Refuses when `user` is not a member of `org`, or is its last owner and would stop being
/// an owner (removed: `new_role` is `None`; or given another role).
pub(crate) fn ensure_owner_remains(
    tx: &WriteTx<'_>,
    org: u64,
    user: u64,
    new_role: Option<OrgRole>,
) -> Result<()> {
    let m = tx
        .table::<OrgMember>()
        .get(&(org, user))?
        .ok_or_else(|| Error::not_found(format!("member user {user} of org {org}")))?;
    if m.role == OrgRole::Owner && new_role != Some(OrgRole::Owner) && headcount(tx, org, 2)?.1 == 1
    {
        return Err(Error::denied(format!(
            "user {user} is the last owner of org {org}; make another member owner first"
        )));
    }
    Ok(())
}

/// What org to create.
#[derive(Debug, Clone, Default)]
pub struct OrgSpec {
    /// Display name.
    pub name: String,
    /// Explicit slug; derived from the name (and made unique) when `None`.
    pub slug: Option<String>,
    /// Description.
    pub description: String,
    /// The first owner.
    pub owner: u64,
}

/// A slug not yet taken: `base`, then `base-2`, `base-3`, ….
pub(crate) fn free_slug(tx: &WriteTx<'_>, base: &str) -> Result<String> {
    let t = tx.table::<Org>();
    for n in 1u64..=100_000 {
        let candidate = if n == 1 {
            base.to_string()
        } else {
            format!("{base}-{n}")
        };
        if t.get_by(&Org::SLUG, &key!(candidate))?.is_none() {
            return Ok(candidate);
        }
    }
    Err(Error::denied(format!(
        "every slug from {base} to {base}-100000 is taken; give one"
    )))
}

/// Clears `is_default` on every org but `keep`.
fn clear_default_in(tx: &WriteTx<'_>, now: Timestamp, keep: u64) -> Result<()> {
    let t = tx.table::<Org>();
    let mut others = Vec::new();
    t.for_each(KeyRange::all(), Order::Asc, |o| {
        if o.is_default && o.id != keep {
            others.push(o.id);
        }
        Ok(true)
    })?;
    for id in others {
        t.modify(&id, |o| {
            o.is_default = false;
            o.updated_at = now;
            Ok(())
        })?;
    }
    Ok(())
}

/// Creates an org with `spec.owner` as owner inside `tx`.
pub(crate) fn create_in(
    tx: &WriteTx<'_>,
    now: Timestamp,
    spec: &OrgSpec,
    personal: bool,
    default: bool,
) -> Result<Org> {
    validate_org_name(&spec.name)?;
    validate_org_description(&spec.description)?;
    if !tx.table::<User>().contains(&spec.owner)? {
        return Err(Error::not_found(format!("user {}", spec.owner)));
    }
    let id = tx.table::<Org>().next_id()?;
    insert_org(tx, now, id, spec, personal, default)
}

/// Inserts the org `id` with its owner's membership and an audit row. The caller has checked
/// the name and that the owner exists.
fn insert_org(
    tx: &WriteTx<'_>,
    now: Timestamp,
    id: u64,
    spec: &OrgSpec,
    personal: bool,
    default: bool,
) -> Result<Org> {
    let slug = match &spec.slug {
        Some(s) => {
            validate_slug(s)?;
            s.clone()
        }
        None => free_slug(tx, &slugify(&spec.name))?,
    };
    let org = Org {
        id,
        name: spec.name.trim().to_string(),
        slug,
        description: spec.description.clone(),
        is_personal: personal,
        personal_user: personal.then_some(spec.owner),
        is_default: default,
        created_at: now,
        updated_at: now,
        external_id: None,
    };
    tx.table::<Org>().insert(&org).map_err(|e| match e {
        // Said as the user's and the role's are, not as the index it is.
        Error::Conflict {
            table,
            index: "slug",
            ..
        } => {
            let held = tx
                .table::<Org>()
                .get_by(&Org::SLUG, &key!(org.slug.as_str()))
                .ok()
                .flatten()
                .map_or(String::new(), |o| format!(" (id {})", o.id));
            Error::Conflict {
                table,
                index: "slug",
                detail: format!(
                    "an org with slug {} exists{held}; give another slug",
                    org.slug
                ),
            }
        }
        e => e,
    })?;
    tx.table::<OrgMember>().insert(&OrgMember {
        org_id: org.id,
        user_id: spec.owner,
        role: OrgRole::Owner,
        joined_at: now,
    })?;
    audit::record(
        tx,
        now,
        Event {
            action: "org_created",
            subject_user: Some(spec.owner),
            subject: format!("org {}", org.slug),
            outcome: "ok",
            detail: format!("owner user {}", spec.owner),
            ..Event::default()
        },
    )?;
    Ok(org)
}

/// What the personal org of `user` is made from: "{name}'s Workspace", owned by them (the
/// name cut so that the whole fits an org name's 200 characters).
pub(crate) fn personal_spec(user: &User) -> OrgSpec {
    const SUFFIX: &str = "'s Workspace";
    let name: String = user
        .name
        .chars()
        .take(MAX_ORG_NAME - SUFFIX.len())
        .collect();
    OrgSpec {
        name: format!("{}{SUFFIX}", name.trim_end()),
        slug: None,
        description: String::new(),
        owner: user.id,
    }
}

/// Reserves the id of the personal org of a user about to be inserted, so the user is
/// written once, already pointing at it (see [`create_personal`]). On PostgreSQL a sign-up
/// that fails afterwards (a taken email) leaves this id unused, as it does the user's.
pub(crate) fn reserve_personal(tx: &WriteTx<'_>) -> Result<u64> {
    tx.table::<Org>().next_id()
}

/// Creates the personal org of a user just inserted in `tx` whose `current_org_id` holds
/// the id [`reserve_personal`] gave.
pub(crate) fn create_personal(tx: &WriteTx<'_>, now: Timestamp, user: &User) -> Result<Org> {
    let id = user.current_org_id.ok_or_else(|| Error::Invariant {
        what: format!("user {} was inserted without a personal org id", user.id),
    })?;
    let spec = personal_spec(user);
    validate_org_name(&spec.name)?;
    insert_org(tx, now, id, &spec, true, false)
}

/// Whether `o` is the personal org of `m`'s user: recorded as theirs or, on a personal org
/// made before 0.4 (which did not record its user), one they own.
fn is_own_personal(o: &Org, m: &OrgMember) -> bool {
    o.is_personal
        && match o.personal_user {
            Some(u) => u == m.user_id,
            None => m.role == OrgRole::Owner,
        }
}

/// Points `user`'s current org at another membership (their own personal org first) when it
/// points at `leaving`; at none when they belong nowhere else (see [`keep_in_an_org`]).
pub(crate) fn move_current_org(tx: &WriteTx<'_>, user: u64, leaving: u64) -> Result<()> {
    let users = tx.table::<User>();
    let Some(u) = users.get(&user)? else {
        return Ok(());
    };
    if u.current_org_id != Some(leaving) {
        return Ok(());
    }
    let orgs = tx.table::<Org>();
    let mut next = None;
    for m in memberships_of(tx, user)? {
        if m.org_id == leaving {
            continue;
        }
        // Someone else's personal org (one the user was added to) is no better than any
        // other: only their own is preferred.
        let own = orgs
            .get(&m.org_id)?
            .is_some_and(|o| is_own_personal(&o, &m));
        if next.is_none() || own {
            next = Some(m.org_id);
        }
        if own {
            break;
        }
    }
    users.modify(&user, |u| {
        u.current_org_id = next;
        Ok(())
    })
}

/// Every user belongs to an org (`check` holds to it): when `user` (still existing) belongs
/// to none after leaving one, gives them a new personal org, "{name}'s Workspace", and makes
/// it their current one, as `check --repair` would. Returns it when one was made.
pub(crate) fn keep_in_an_org(tx: &WriteTx<'_>, now: Timestamp, user: u64) -> Result<Option<Org>> {
    if !memberships_of(tx, user)?.is_empty() {
        return Ok(None);
    }
    let Some(u) = tx.table::<User>().get(&user)? else {
        return Ok(None);
    };
    let personal = create_in(tx, now, &personal_spec(&u), true, false)?;
    tx.table::<User>().modify(&user, |x| {
        x.current_org_id = Some(personal.id);
        Ok(())
    })?;
    Ok(Some(personal))
}

/// When `org` is `user`'s personal org and they leave it (removed, or deleted) while others
/// stay, it stops being personal: it is nobody's own org any more, so `org delete` no longer
/// says to delete its user, and no member is moved into it as if it were theirs. Audited;
/// returns whether it did.
pub(crate) fn unmake_personal(
    tx: &WriteTx<'_>,
    now: Timestamp,
    org: u64,
    user: u64,
) -> Result<bool> {
    let t = tx.table::<Org>();
    let Some(o) = t.get(&org)? else {
        return Ok(false);
    };
    if !o.is_personal || o.personal_user != Some(user) {
        return Ok(false);
    }
    t.modify(&org, |o| {
        o.is_personal = false;
        o.personal_user = None;
        o.updated_at = now;
        Ok(())
    })?;
    org_event(
        tx,
        now,
        "org_no_longer_personal",
        &o.slug,
        Some(user),
        "its user left it; the other members stay".into(),
    )?;
    Ok(true)
}

/// What removing a member did ([`Orgs::remove_member`]).
#[derive(Debug, Clone, Serialize)]
pub struct RemovedMember {
    /// The membership as it was.
    pub member: OrgMember,
    /// The new personal org the user was given, as they were left in no org; it is now their
    /// current one.
    pub new_personal_org: Option<Org>,
    /// Whether the org stopped being personal: it was this user's own, and they left it.
    pub org_no_longer_personal: bool,
    /// The prefixes of the org's API keys the user made that could still verify: revoked as
    /// they left (and audited). See [`ApiKeySpec::created_by`](crate::auth::api_keys::ApiKeySpec::created_by).
    pub api_keys_revoked: Vec<String>,
}

/// What changing a member's role did ([`Orgs::set_role`]).
#[derive(Debug, Clone, Serialize)]
pub struct RoleChanged {
    /// The membership as it is now.
    pub member: OrgMember,
    /// The role they had before (the same as now when nothing changed).
    pub was: OrgRole,
    /// The prefixes of the org's API keys the member made that could still verify, revoked
    /// (and audited) because they were made a plain member, who makes no org keys: an owner
    /// or admin demoted keeps no key that acts for the org. See
    /// [`ApiKeySpec::created_by`](crate::auth::api_keys::ApiKeySpec::created_by).
    pub api_keys_revoked: Vec<String>,
}

/// What deleting an org took with it ([`Orgs::delete`]).
#[derive(Debug, Clone, Serialize)]
pub struct DeletedOrg {
    /// The org as it was.
    pub org: Org,
    /// Its memberships as they were (each of those users has left it).
    pub members_removed: Vec<OrgMember>,
    /// The prefixes of its API keys, which were deleted with it (they no longer verify and
    /// `apikey list` no longer shows them).
    pub api_keys_deleted: Vec<String>,
    /// The new personal orgs of former members who were left in no org (each owned by that
    /// member, recorded in [`Org::personal_user`]; now their current org).
    pub new_personal_orgs: Vec<Org>,
}

/// Operations on organizations.
#[derive(Debug, Clone, Copy)]
pub struct Orgs<'a> {
    pub(crate) acc: &'a Accounts,
}

impl Orgs<'_> {
    /// Creates an org owned by `spec.owner`.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// # let alice = rk.users().create(redkeep::NewUser { email: "alice@example.com".into(), name: None, username: None, password: None, is_admin: false, invite: None })?.user;
    /// use redkeep::auth::orgs::{OrgRole, OrgSpec};
    /// let org = rk.orgs().create(OrgSpec {
    ///     name: "Acme Inc".into(),
    ///     slug: None,
    ///     description: String::new(),
    ///     owner: alice.id,
    /// })?;
    /// assert_eq!(org.slug, "acme-inc");
    /// assert_eq!(rk.orgs().role_in(alice.id, org.id)?, Some(OrgRole::Owner));
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` for a bad name or slug; `Conflict` when an explicit slug is taken;
    /// `NotFound` for an unknown owner.
    pub fn create(&self, spec: OrgSpec) -> Result<Org> {
        let now = self.acc.now();
        self.acc
            .store
            .write(|tx| create_in(tx, now, &spec, false, false))
    }

    /// Up to `limit` orgs with ids above `after`, by id.
    ///
    /// # Errors
    /// `Corrupt` when an org cannot be read.
    pub fn list(&self, after: Option<u64>, limit: usize) -> Result<Vec<Org>> {
        let range = match after {
            Some(id) => KeyRange::all().after(&key!(id)),
            None => KeyRange::all(),
        };
        self.acc
            .read(|tx| tx.table::<Org>().range(range, Order::Asc, limit))
    }

    /// The org with this id.
    ///
    /// # Errors
    /// `Corrupt` when it cannot be read.
    pub fn get(&self, id: u64) -> Result<Option<Org>> {
        self.acc.read(|tx| tx.table::<Org>().get(&id))
    }

    /// The org with this slug.
    ///
    /// # Errors
    /// `Corrupt` when it cannot be read.
    pub fn by_slug(&self, slug: &str) -> Result<Option<Org>> {
        let k = key!(slug.trim().to_lowercase());
        self.acc.read(|tx| tx.table::<Org>().get_by(&Org::SLUG, &k))
    }

    /// The org with this id in the system it was adopted from.
    ///
    /// # Errors
    /// `Corrupt` or `Storage` when the record cannot be read.
    pub fn by_external_id(&self, external_id: &str) -> Result<Option<Org>> {
        let k = key!(external_id.trim());
        self.acc
            .read(|tx| tx.table::<Org>().get_by(&Org::EXTERNAL_ID, &k))
    }

    /// Resolves what an operator typed: a numeric id or a slug.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn find(&self, org: &str) -> Result<Org> {
        let org = org.trim();
        let found = match org.parse::<u64>() {
            Ok(id) => self.get(id)?,
            Err(_) => self.by_slug(org)?,
        };
        found.ok_or_else(|| Error::not_found(format!("org {}", super::users::shown_input(org))))
    }

    /// Up to `limit` members of an org with user ids above `after`, by user id (a page; pass
    /// the last user id for the next one).
    ///
    /// # Errors
    /// `Corrupt` when a membership cannot be read.
    pub fn members(&self, org: u64, after: Option<u64>, limit: usize) -> Result<Vec<OrgMember>> {
        let range = match after {
            Some(user) => KeyRange::prefix(key!(org)).after(&key!(org, user)),
            None => KeyRange::prefix(key!(org)),
        };
        self.acc
            .read(|tx| tx.table::<OrgMember>().range(range, Order::Asc, limit))
    }

    /// Number of members of an org, counted without reading them.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn member_count(&self, org: u64) -> Result<u64> {
        self.acc.read(|tx| {
            tx.table::<OrgMember>()
                .count_in(KeyRange::prefix(key!(org)))
        })
    }

    /// The orgs a user belongs to, with their role.
    ///
    /// # Errors
    /// `Corrupt` when a record cannot be read.
    pub fn of_user(&self, user: u64) -> Result<Vec<(Org, OrgRole)>> {
        self.acc.read(|tx| {
            let orgs = tx.table::<Org>();
            let mut out = Vec::new();
            for m in memberships_of(tx, user)? {
                if let Some(o) = orgs.get(&m.org_id)? {
                    out.push((o, m.role));
                }
            }
            Ok(out)
        })
    }

    /// The user's role in the org, if a member.
    ///
    /// # Errors
    /// `Corrupt` when the membership cannot be read.
    pub fn role_in(&self, user: u64, org: u64) -> Result<Option<OrgRole>> {
        Ok(self
            .acc
            .read(|tx| tx.table::<OrgMember>().get(&(org, user)))?
            .map(|m| m.role))
    }

    /// Whether the user belongs to the org.
    ///
    /// # Errors
    /// `Corrupt` when the membership cannot be read.
    pub fn is_member(&self, user: u64, org: u64) -> Result<bool> {
        Ok(self.role_in(user, org)?.is_some())
    }

    /// Adds a member.
    ///
    /// # Errors
    /// `NotFound` for an unknown org or user; `Denied` when already a member.
    pub fn add_member(&self, org: u64, user: u64, role: OrgRole) -> Result<OrgMember> {
        let now = self.acc.now();
        self.acc
            .store
            .write(|tx| add_member_in(tx, now, org, user, role))
    }

    /// Adds several users with one role, all or none.
    ///
    /// # Errors
    /// As [`Orgs::add_member`], for the first user that cannot join (nobody joins then).
    pub fn add_members(&self, org: u64, users: &[u64], role: OrgRole) -> Result<Vec<OrgMember>> {
        let now = self.acc.now();
        // A user named twice joins once (the second would read as "already a member").
        let mut seen = std::collections::BTreeSet::new();
        let users: Vec<u64> = users.iter().copied().filter(|u| seen.insert(*u)).collect();
        self.acc.store.write(|tx| {
            users
                .iter()
                .map(|&u| add_member_in(tx, now, org, u, role))
                .collect()
        })
    }

    /// Creates the default org (where users go who belong nowhere else, as the tenancy
    /// migration made it); the org that was the default stops being it.
    ///
    /// # Errors
    /// As [`Orgs::create`].
    pub fn create_default(&self, spec: OrgSpec) -> Result<Org> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let org = create_in(tx, now, &spec, false, true)?;
            clear_default_in(tx, now, org.id)?;
            Ok(org)
        })
    }

    /// Makes an org the default one; the org that was the default stops being it.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn set_default(&self, org: u64) -> Result<Org> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let o = tx.table::<Org>().modify(&org, |o| {
                o.is_default = true;
                o.updated_at = now;
                Ok(o.clone())
            })?;
            clear_default_in(tx, now, org)?;
            org_event(tx, now, "org_made_default", &o.slug, None, String::new())?;
            Ok(o)
        })
    }

    /// Sets the user's current org, which must be one of theirs.
    ///
    /// # Errors
    /// `Denied` when the user is not a member.
    pub fn switch(&self, user: u64, org: u64) -> Result<User> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            if !tx.table::<OrgMember>().contains(&(org, user))? {
                return Err(Error::denied(format!(
                    "user {user} is not a member of org {org}"
                )));
            }
            let mut was = None;
            let u = tx.table::<User>().modify(&user, |u| {
                was = u.current_org_id;
                u.current_org_id = Some(org);
                u.updated_at = now;
                Ok(u.clone())
            })?;
            if was != Some(org) {
                org_event(
                    tx,
                    now,
                    "org_switched",
                    &slug_of(tx, org)?,
                    Some(user),
                    String::new(),
                )?;
            }
            Ok(u)
        })
    }
}

/// Adds `user` to `org` with `role` inside `tx`; makes it their current org if they had none.
pub(crate) fn add_member_in(
    tx: &WriteTx<'_>,
    now: Timestamp,
    org: u64,
    user: u64,
    role: OrgRole,
) -> Result<OrgMember> {
    let Some(o) = tx.table::<Org>().get(&org)? else {
        return Err(Error::not_found(format!("org {org}")));
    };
    if !tx.table::<User>().contains(&user)? {
        return Err(Error::not_found(format!("user {user}")));
    }
    let m = OrgMember {
        org_id: org,
        user_id: user,
        role,
        joined_at: now,
    };
    tx.table::<OrgMember>().insert(&m).map_err(|e| match e {
        Error::Conflict { .. } => {
            Error::denied(format!("user {user} is already a member of org {org}"))
        }
        e => e,
    })?;
    tx.table::<User>().modify(&user, |u| {
        if u.current_org_id.is_none() {
            u.current_org_id = Some(org);
        }
        Ok(())
    })?;
    org_event(
        tx,
        now,
        "org_member_added",
        &o.slug,
        Some(user),
        format!("as {}", role.as_str()),
    )?;
    Ok(m)
}

/// The slug of an org known to exist (for an audit event's subject).
pub(crate) fn slug_of(tx: &WriteTx<'_>, org: u64) -> Result<String> {
    Ok(tx
        .table::<Org>()
        .get(&org)?
        .map_or_else(|| format!("#{org}"), |o| o.slug))
}

/// Records a change to org `slug` (and to `user`'s place in it, when given).
pub(crate) fn org_event(
    tx: &WriteTx<'_>,
    now: Timestamp,
    action: &str,
    slug: &str,
    user: Option<u64>,
    detail: String,
) -> Result<()> {
    audit::record(
        tx,
        now,
        Event {
            action,
            subject_user: user,
            subject: match user {
                Some(u) => format!("org {slug} user {u}"),
                None => format!("org {slug}"),
            },
            outcome: "ok",
            detail,
            ..Event::default()
        },
    )
}

// The shape versions 1 and 2 stored (format 1, fields in order), read by `upgrade` and by
// the migrations. Never change it.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrgV1 {
    pub id: u64,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub is_personal: bool,
    pub is_default: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The organization as versions 1 and 2 stored it (format 1, fields in order): read by
/// `upgrade` and by the migrations. Never change it.
#[allow(missing_docs)]
impl From<&Org> for OrgV1 {
    fn from(o: &Org) -> OrgV1 {
        OrgV1 {
            id: o.id,
            name: o.name.clone(),
            slug: o.slug.clone(),
            description: o.description.clone(),
            is_personal: o.is_personal,
            is_default: o.is_default,
            created_at: o.created_at.0,
            updated_at: o.updated_at.0,
        }
    }
}

impl From<OrgV1> for Org {
    fn from(v: OrgV1) -> Org {
        Org {
            id: v.id,
            name: v.name,
            slug: v.slug,
            description: v.description,
            is_personal: v.is_personal,
            personal_user: None,
            is_default: v.is_default,
            created_at: Timestamp(v.created_at),
            updated_at: Timestamp(v.updated_at),
            external_id: None,
        }
    }
}
