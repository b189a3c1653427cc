//! API keys: machine credentials for a user or an organization, with scopes and an optional
//! expiry. The secret (`rkk_…`) is shown once; its prefix names the key; SHA-256 is stored.
//! A key may record the user who made it; an org's key made by a member is revoked when
//! they leave the org or are deleted.

use std::cmp::Reverse;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Accounts;
use super::audit::{self, Event};
use super::orgs::{Org, OrgMember, OrgRole};
use super::token::{self, Secret, TokenHash};
use super::users::User;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{Index, KeyRange, Order, Record, Source, Stored, Table, WriteTx};
use crate::top::Top;

/// The most scopes one key takes.
pub const MAX_SCOPES: usize = 64;

/// The type prefix of API keys.
pub const API_KEY_PREFIX: &str = "rkk";

/// Who a key acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOwner {
    /// A user.
    User(u64),
    /// An organization.
    Org(u64),
}

impl KeyOwner {
    pub(crate) fn index_key(self) -> Vec<u8> {
        match self {
            KeyOwner::User(id) => key!(0u32, id),
            KeyOwner::Org(id) => key!(1u32, id),
        }
    }

    /// The owner an entry of [`ApiKey::BY_OWNER`] names (what [`KeyOwner::index_key`]
    /// wrote), as `inspect` shows it: `user,2` or `org,5`. `None` for other bytes. (Its
    /// 4-byte kind before an 8-byte id is not a shape the entries' look tells.)
    #[cfg(feature = "admin")]
    pub(crate) fn index_entry_text(bytes: &[u8]) -> Option<String> {
        let (kind, id) = bytes.split_first_chunk::<4>()?;
        let id = u64::from_be_bytes(<[u8; 8]>::try_from(id).ok()?);
        match u32::from_be_bytes(*kind) {
            0 => Some(format!("user,{id}")),
            1 => Some(format!("org,{id}")),
            _ => None,
        }
    }

    /// Reads a prefix of [`ApiKey::BY_OWNER`]'s entries as `inspect` shows them: `user` or
    /// `org` (or `0` or `1`, the kinds as stored), then optionally `,ID`. `None` when `text`
    /// is not of that form.
    #[cfg(feature = "admin")]
    pub(crate) fn index_prefix(text: &str) -> Option<Vec<u8>> {
        let (kind, id) = match text.split_once(',') {
            Some((kind, id)) => (kind.trim(), Some(id.trim())),
            None => (text.trim(), None),
        };
        let kind = match kind {
            "user" | "0" => 0u32,
            "org" | "1" => 1u32,
            _ => return None,
        };
        match id {
            None => Some(key!(kind)),
            Some(id) => Some(key!(kind, id.parse::<u64>().ok()?)),
        }
    }
}

impl std::fmt::Display for KeyOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyOwner::User(id) => write!(f, "user {id}"),
            KeyOwner::Org(id) => write!(f, "org {id}"),
        }
    }
}

/// A stored API key. The secret itself is never stored; its hash is the key, kept out of
/// `Debug` and `Serialize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// SHA-256 of the secret: the record's key.
    #[serde(skip)]
    pub hash: TokenHash,
    /// Public prefix naming the key (`rkk_ab12cd34`).
    pub prefix: String,
    /// Who it acts for.
    pub owner: KeyOwner,
    /// The user who made it, if it was recorded ([`ApiKeySpec::created_by`]; `None` on keys
    /// made before it was). They may since have been deleted.
    #[serde(default)]
    pub created_by: Option<u64>,
    /// What it may do.
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Unusable after this time.
    pub expires_at: Option<Timestamp>,
    /// Last successful verification that was recorded.
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// Unique: the public prefix.
    pub const PREFIX: Index<ApiKey> = Index::unique("prefix", |k| Some(key!(k.prefix)));
    /// Keys of an owner.
    pub const BY_OWNER: Index<ApiKey> = Index::many("by_owner", |k| Some(k.owner.index_key()));
    /// Keys by the user who made them (keys with no recorded creator have no entry).
    pub const BY_CREATOR: Index<ApiKey> =
        Index::many("by_creator", |k| k.created_by.map(|u| key!(u)));
}

impl Record for ApiKey {
    const TABLE: &'static str = "api_keys";
    type Key = TokenHash;
    const SECRET_KEY: bool = true;
    // `created_by` came later, without a new version: the format matches fields by name, so
    // a key stored before reads with `None` (and has no `by_creator` entry).
    const INDEXES: &'static [&'static Index<Self>] =
        &[&Self::PREFIX, &Self::BY_OWNER, &Self::BY_CREATOR];
    const VERSION: u32 = 2;
    fn key(&self) -> TokenHash {
        self.hash
    }
    fn restore_key(&mut self, key: &TokenHash) {
        self.hash = *key;
    }
    fn upgrade(old: Stored<'_>) -> std::result::Result<Self, String> {
        match old.version() {
            1 => Ok(old.decode::<ApiKeyV1>()?.into()),
            v => Err(format!("unknown api_keys record version {v}")),
        }
    }
}

/// What key to create.
#[derive(Debug, Clone)]
pub struct ApiKeySpec {
    /// Who it acts for.
    pub owner: KeyOwner,
    /// Scopes (each 1 to 128 of `a-z 0-9 _ - . : *`). A user's key is bounded by the
    /// user's permissions: no scopes, or `*`, is all of them. An org's key grants its
    /// scopes, and `*` every permission; one made by a member ([`ApiKeySpec::created_by`])
    /// may be given only scopes they hold (`*` only if they hold `*`), and `web::Caller`
    /// also bounds it by what they hold at each use. An org's key needs at least one scope
    /// ([`ApiKeys::create`] refuses one with none, which would grant nothing; keys stored
    /// before still verify, and grant nothing).
    pub scopes: Vec<String>,
    /// Lifetime (1 s to 100 years); `None` never expires.
    pub expires_in: Option<Duration>,
    /// The user making it, if the application knows (recorded in [`ApiKey::created_by`] and
    /// as the actor of the `api_key_created` audit event): an active user, and for an org's
    /// key an owner or admin of that org who holds every scope given. An org's key made by a
    /// member is revoked when they leave the org
    /// ([`Orgs::remove_member`](crate::auth::orgs::Orgs::remove_member)), are made a plain
    /// member of it ([`Orgs::set_role`](crate::auth::orgs::Orgs::set_role)) or are deleted, and
    /// does not verify while they are disabled, nor grant a scope they no longer hold, so
    /// that no key outlives its maker's access unnoticed; `None` (an operator, the application itself) makes a key that stays until
    /// it is revoked, with whatever scopes the operator gives it.
    pub created_by: Option<u64>,
}

/// What keeps a key from verifying now though it is neither revoked nor expired (its owner:
/// a user who is gone or disabled, an org that is gone; for an org's key made by a member,
/// that maker disabled), or, with `scopes`, what narrows it: the scopes of an org's key its
/// maker no longer holds, which it does not grant (`redkeep::web::Caller` grants an org's
/// key no more than its maker holds at each request). Each lifts by itself when the cause
/// does (the user enabled, the role granted again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Holdup {
    /// The owner no longer exists.
    OwnerMissing,
    /// The owning user is disabled.
    OwnerDisabled,
    /// The member who made the org's key is disabled.
    MakerDisabled(u64),
    /// The member who made the org's key no longer holds these of its scopes: the key
    /// verifies, and grants the rest.
    MakerLacks(u64, Vec<String>),
}

/// What keeps `k` from verifying, or with `scopes` narrows it, as [`Holdup`] says, if
/// anything. (A maker deleted took their org keys with them.) In a read or a write
/// transaction alike.
pub(crate) fn holdup<S: Source>(tx: &S, k: &ApiKey, scopes: bool) -> Result<Option<Holdup>> {
    let users = Table::<User, S>::new(tx);
    Ok(match k.owner {
        KeyOwner::User(id) => match users.get(&id)? {
            None => Some(Holdup::OwnerMissing),
            Some(u) if !u.is_active => Some(Holdup::OwnerDisabled),
            Some(_) => None,
        },
        KeyOwner::Org(id) if !Table::<Org, S>::new(tx).contains(&id)? => Some(Holdup::OwnerMissing),
        KeyOwner::Org(_) => match k.created_by.map(|by| users.get(&by)).transpose()?.flatten() {
            None => None,
            Some(maker) if !maker.is_active => Some(Holdup::MakerDisabled(maker.id)),
            Some(_) if !scopes => None,
            Some(maker) => {
                // A maker who must change their password holds nothing until they do.
                let held = if maker.must_change_password {
                    Default::default()
                } else {
                    super::roles::permissions_in(tx, &maker)?
                };
                let lacks: Vec<String> = if held.contains(super::roles::ALL_PERMISSIONS) {
                    Vec::new()
                } else {
                    k.scopes
                        .iter()
                        .filter(|s| !held.contains(*s))
                        .cloned()
                        .collect()
                };
                (!lacks.is_empty()).then_some(Holdup::MakerLacks(maker.id, lacks))
            }
        },
    })
}

/// Revokes `k` inside `tx` (stores it revoked at `now`) with its `api_key_revoked` event.
fn revoke_in(tx: &WriteTx<'_>, k: &mut ApiKey, now: Timestamp, detail: String) -> Result<()> {
    k.revoked_at = Some(now);
    tx.table::<ApiKey>().update(k)?;
    audit::record(
        tx,
        now,
        Event {
            action: "api_key_revoked",
            subject_user: match k.owner {
                KeyOwner::User(u) => Some(u),
                KeyOwner::Org(_) => None,
            },
            subject: format!("api key {}", k.prefix),
            outcome: "ok",
            detail,
            ..Event::default()
        },
    )
}

/// Refuses, inside `tx`, a creator `by` who cannot make a key for `owner`: a user who does
/// not exist or is disabled; for an org's key, one who is not an owner or admin of that org
/// (a member who left would keep a key nobody revokes, and making the org's credentials is
/// its managers' business), or who does not hold every one of `scopes` (`*` only if they
/// hold `*`): a key made on someone's behalf never grants more than they hold.
fn check_creator(tx: &WriteTx<'_>, by: u64, owner: KeyOwner, scopes: &[String]) -> Result<()> {
    let creator = match tx.table::<User>().get(&by)? {
        None => return Err(Error::not_found(format!("user {by} (created_by)"))),
        Some(u) if !u.is_active => {
            return Err(Error::denied(format!(
                "user {by} is disabled and cannot make a key; enable them first (`redkeep \
                 user enable {by}`) or leave created_by out"
            )));
        }
        Some(u) => u,
    };
    let KeyOwner::Org(org) = owner else {
        // A user's key is bounded by its owner's permissions at every use.
        return Ok(());
    };
    match tx.table::<OrgMember>().get(&(org, by))? {
        None => {
            return Err(Error::denied(format!(
                "user {by} is not a member of org {org}, so they cannot make its key; add them \
                 (`redkeep org add-member`) or leave created_by out"
            )));
        }
        Some(m) if m.role == OrgRole::Member => {
            return Err(Error::denied(format!(
                "user {by} is a plain member of org {org}; only its owners and admins make its \
                 keys: make them one (`redkeep org set-role {org} {by} admin`) or leave \
                 created_by out"
            )));
        }
        Some(_) => {}
    }
    // Read once: a key may carry up to 64 scopes.
    let held = super::roles::permissions_in(tx, &creator)?;
    for scope in scopes {
        if !(held.contains(super::roles::ALL_PERMISSIONS) || held.contains(scope)) {
            let what = if scope == super::roles::ALL_PERMISSIONS {
                "every permission (`*`)".to_string()
            } else {
                format!("the {scope} permission")
            };
            return Err(Error::denied(format!(
                "user {by} does not hold {what}, so an org key they make cannot grant it; \
                 give the key only scopes they hold, grant them a role that has it, or leave \
                 created_by out (an operator's key)"
            )));
        }
    }
    Ok(())
}

/// Revokes, inside `tx`, the org keys `user` made (for the org `org`, or for every org) that
/// could still verify (not revoked, not expired), one `api_key_revoked` audit event each with
/// `why` as its detail; returns their prefixes, oldest first. (Expired ones verify for no
/// one and are left as they are.) For a member who leaves an org or a user deleted: a key
/// made by someone who no longer answers for it would act for the org unnoticed.
pub(crate) fn revoke_org_keys_made_by(
    tx: &WriteTx<'_>,
    now: Timestamp,
    user: u64,
    org: Option<u64>,
    why: &str,
) -> Result<Vec<String>> {
    let t = tx.table::<ApiKey>();
    let mut theirs = t.range_by(
        &ApiKey::BY_CREATOR,
        KeyRange::prefix(key!(user)),
        Order::Asc,
        usize::MAX,
    )?;
    theirs.retain(|k| {
        matches!(k.owner, KeyOwner::Org(o) if org.is_none_or(|org| org == o))
            && k.revoked_at.is_none()
            && k.expires_at.is_none_or(|e| now < e)
    });
    theirs.sort_by_key(|k| (k.created_at, k.prefix.clone()));
    let mut prefixes = Vec::with_capacity(theirs.len());
    for mut k in theirs {
        revoke_in(tx, &mut k, now, why.to_string())?;
        prefixes.push(k.prefix);
    }
    Ok(prefixes)
}

/// Revokes, inside `tx`, every key of `owner` not revoked yet (expired ones too), each with
/// an `api_key_revoked` audit event saying `why`. Returns them, oldest first.
pub(crate) fn revoke_keys_of(
    tx: &WriteTx<'_>,
    now: Timestamp,
    owner: KeyOwner,
    why: &str,
) -> Result<Vec<ApiKey>> {
    let mut keys = tx.table::<ApiKey>().range_by(
        &ApiKey::BY_OWNER,
        KeyRange::prefix(owner.index_key()),
        Order::Asc,
        usize::MAX,
    )?;
    keys.retain(|k| k.revoked_at.is_none());
    keys.sort_by_key(|k| (k.created_at, k.prefix.clone()));
    for k in &mut keys {
        revoke_in(tx, k, now, why.to_string())?;
    }
    Ok(keys)
}

/// A new key and its secret, shown once.
#[derive(Debug)]
pub struct CreatedApiKey {
    /// The full key.
    pub key: Secret,
    /// The record.
    pub api_key: ApiKey,
}

/// A scope is a permission name, or `*` alone: every permission of a user owner (as in a
/// role), and every permission whatever for an org owner, which holds no roles to bound
/// it. A `*` inside a name would match nothing.
fn validate_scope(s: &str) -> Result<()> {
    super::roles::validate_permission(s).map_err(|_| {
        Error::invalid(
            "scope",
            format!(
                "{:?} must be 1 to 128 of a-z 0-9 _ - . : (or * alone, for all)",
                super::users::cut_input(s)
            ),
        )
    })
}
/// Deletes every key of `owner` inside `tx`; returns their prefixes.
/// Deletes every key of `owner` inside `tx`; returns how many.
pub(crate) fn delete_keys_of(tx: &WriteTx<'_>, owner: KeyOwner) -> Result<Vec<String>> {
    let t = tx.table::<ApiKey>();
    let keys = t.range_by(
        &ApiKey::BY_OWNER,
        KeyRange::prefix(owner.index_key()),
        Order::Asc,
        usize::MAX,
    )?;
    for k in &keys {
        t.delete(&k.hash)?;
    }
    Ok(keys.into_iter().map(|k| k.prefix).collect())
}

/// A key as an operator names it: by its full key (found by its hash: a wrong key names
/// none, as for sessions and invites) or by its prefix (found through the prefix index).
struct Named<'a> {
    text: &'a str,
    full: Option<TokenHash>,
}

impl<'a> Named<'a> {
    fn new(prefix_or_key: &'a str) -> Result<Named<'a>> {
        let text = prefix_or_key.trim();
        if text.is_empty() {
            return Err(Error::invalid(
                "api key",
                format!("it is empty; give the key's prefix ({API_KEY_PREFIX}_…) or the whole key"),
            ));
        }
        let full = token::looks_like(API_KEY_PREFIX, text).then(|| token::hash_token(text));
        Ok(Named { text, full })
    }

    fn get<S: Source + ?Sized>(&self, t: &Table<'_, ApiKey, S>) -> Result<ApiKey> {
        let found = match &self.full {
            Some(hash) => t.get(hash)?.filter(|k| token::hashes_equal(&k.hash, hash)),
            None => t.get_by(&ApiKey::PREFIX, &key!(self.text))?,
        };
        found.ok_or_else(|| {
            Error::not_found(format!(
                "api key {}",
                token::shown(API_KEY_PREFIX, self.text)
            ))
        })
    }
}

/// Operations on API keys.
#[derive(Debug, Clone, Copy)]
pub struct ApiKeys<'a> {
    pub(crate) acc: &'a Accounts,
}

impl ApiKeys<'_> {
    fn invalid() -> Error {
        Error::InvalidCredential { what: "api key" }
    }

    /// Creates a key and returns its secret once.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// # let alice = rk.users().create(redkeep::NewUser { email: "alice@example.com".into(), name: None, username: None, password: None, is_admin: false, invite: None })?.user;
    /// use redkeep::auth::api_keys::{ApiKeySpec, KeyOwner};
    /// let created = rk.api_keys().create(ApiKeySpec {
    ///     owner: KeyOwner::User(alice.id),
    ///     scopes: vec!["read".into()],
    ///     expires_in: None,
    ///     created_by: Some(alice.id),
    /// })?;
    /// let key = rk.api_keys().verify(created.key.expose())?;
    /// assert_eq!(key.owner, KeyOwner::User(alice.id));
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `NotFound` for an unknown owner or creator; `Denied` for a disabled owner or creator,
    /// a creator who is not an owner or admin of the owning org, or one who does not hold a
    /// scope given to an org's key (the message names it); `InvalidInput` for a bad scope,
    /// more than [`MAX_SCOPES`] of them, or an org's key with none (it would grant
    /// nothing).
    pub fn create(&self, spec: ApiKeySpec) -> Result<CreatedApiKey> {
        if spec.scopes.len() > MAX_SCOPES {
            return Err(Error::invalid(
                "scopes",
                format!(
                    "{} scopes given; a key takes at most {MAX_SCOPES} (give it a role's \
                     permissions through its owner instead)",
                    spec.scopes.len()
                ),
            ));
        }
        for s in &spec.scopes {
            validate_scope(s)?;
        }
        let mut scopes = spec.scopes.clone();
        scopes.sort();
        scopes.dedup();
        let expires_in = spec
            .expires_in
            .map(|d| crate::clock::lifetime("expires", d))
            .transpose()?;
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            match spec.owner {
                KeyOwner::User(id) => match tx.table::<User>().get(&id)? {
                    None => return Err(Error::not_found(spec.owner.to_string())),
                    // The key would not verify while the user is disabled; one made now
                    // would wake up with an `enable` nobody connected to it.
                    Some(u) if !u.is_active => {
                        return Err(Error::denied(format!(
                            "user {id} is disabled; enable them first (`redkeep user enable \
                             {id}`), then make the key"
                        )));
                    }
                    Some(_) => {}
                },
                KeyOwner::Org(id) => {
                    if !tx.table::<Org>().contains(&id)? {
                        return Err(Error::not_found(spec.owner.to_string()));
                    }
                    // An org holds no roles: its key grants exactly its scopes, so one with
                    // none would authenticate and be refused everything, unnoticed.
                    if scopes.is_empty() {
                        return Err(Error::invalid(
                            "scopes",
                            "an org's key grants exactly its scopes, and none were given, so \
                             it would grant nothing; give the permissions it needs (`--scope \
                             PERMISSION`, repeated, for the `redkeep` command), or `*` for \
                             every permission",
                        ));
                    }
                }
            }
            if let Some(by) = spec.created_by {
                check_creator(tx, by, spec.owner, &scopes)?;
            }
            let (key, api_key) =
                super::insert_with_token(tx, API_KEY_PREFIX, |hash, prefix| ApiKey {
                    hash,
                    prefix,
                    owner: spec.owner,
                    created_by: spec.created_by,
                    scopes: scopes.clone(),
                    created_at: now,
                    expires_at: expires_in.map(|d| now.plus(d)),
                    last_used_at: None,
                    revoked_at: None,
                })?;
            audit::record(
                tx,
                now,
                Event {
                    actor: spec.created_by,
                    action: "api_key_created",
                    subject_user: match spec.owner {
                        KeyOwner::User(u) => Some(u),
                        KeyOwner::Org(_) => None,
                    },
                    subject: format!("api key {}", api_key.prefix),
                    outcome: "ok",
                    detail: format!("for {}", spec.owner),
                },
            )?;
            Ok(CreatedApiKey { key, api_key })
        })
    }

    /// Checks a key: it must exist, not be revoked or expired, and its owner must exist (and,
    /// for a user, be active); an org's key made by a member does not verify while that
    /// member is disabled (it does again once they are enabled). Such a key grants no more
    /// than that member holds at each use: `redkeep::web::Caller` narrows it so; an
    /// application that reads the scopes of the key returned here must do the same.
    /// Refreshes `last_used_at` at most once per interval.
    ///
    /// # Errors
    /// `InvalidCredential` for every failure, alike.
    pub fn verify(&self, key: &str) -> Result<ApiKey> {
        self.verify_as(key, true)
    }

    /// [`ApiKeys::verify`], recording the use only when `record_use`: an operator's look
    /// (`redkeep apikey verify`) is no use of the key.
    pub(crate) fn verify_as(&self, key: &str, record_use: bool) -> Result<ApiKey> {
        let key = key.trim();
        if !token::looks_like(API_KEY_PREFIX, key) {
            return Err(Self::invalid());
        }
        let hash = token::hash_token(key);
        let now = self.acc.now();
        let found = self.acc.read(|tx| {
            let Some(k) = tx.table::<ApiKey>().get(&hash)? else {
                return Ok(None);
            };
            Ok(holdup(tx, &k, false)?.is_none().then_some(k))
        })?;
        let k = found.ok_or_else(Self::invalid)?;
        let usable = token::hashes_equal(&k.hash, &hash)
            && k.revoked_at.is_none()
            && k.expires_at.is_none_or(|e| now < e);
        if !usable {
            return Err(Self::invalid());
        }
        let interval =
            i64::try_from(self.acc.policy.api_key_touch_interval.as_secs()).unwrap_or(i64::MAX);
        if record_use
            && k.last_used_at.is_none_or(|t| now.since(t) >= interval)
            && self.acc.records_uses()
        {
            let touched = self.acc.store.write(|tx| {
                let t = tx.table::<ApiKey>();
                let Some(mut k) = t.get(&hash)? else {
                    return Ok(None);
                };
                // Decided again here: a revoke, or its owner disabled or deleted, since the
                // read above must not let this use through.
                if holdup(tx, &k, false)?.is_some()
                    || k.revoked_at.is_some()
                    || k.expires_at.is_some_and(|e| now >= e)
                {
                    return Ok(None);
                }
                k.last_used_at = Some(now);
                t.update(&k)?;
                Ok(Some(k))
            });
            return match touched {
                Ok(Some(k)) => Ok(k),
                Ok(None) => Err(Self::invalid()),
                // The key is valid (checked on the read above); a store that takes no writes
                // now (opened read-only, behind its schema, damaged, a failing disk) only
                // leaves its last use unrecorded, as for sessions.
                Err(e) => {
                    self.acc.use_unrecorded("an API key", &e);
                    Ok(k)
                }
            };
        }
        Ok(k)
    }

    /// What keeps `k` from verifying besides its revocation or expiry (its owner, or the
    /// member who made an org's key), or narrows what it grants, if anything.
    #[cfg(feature = "admin")]
    pub(crate) fn holdup(&self, k: &ApiKey) -> Result<Option<Holdup>> {
        self.acc.read(|tx| holdup(tx, k, true))
    }

    /// Finds a key by its prefix (or full key), revoked and expired ones too.
    ///
    /// # Errors
    /// `InvalidInput` for an empty text; `NotFound`.
    pub fn find(&self, prefix_or_key: &str) -> Result<ApiKey> {
        let named = Named::new(prefix_or_key)?;
        self.acc.read(|tx| named.get(&tx.table::<ApiKey>()))
    }

    /// Revokes a key by its prefix (or full key).
    ///
    /// # Errors
    /// `InvalidInput` for an empty text; `NotFound`; `Denied` when already revoked
    /// ([`find`](Self::find) tells when).
    pub fn revoke(&self, prefix_or_key: &str) -> Result<ApiKey> {
        let named = Named::new(prefix_or_key)?;
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let t = tx.table::<ApiKey>();
            let mut k = named.get(&t)?;
            if k.revoked_at.is_some() {
                return Err(Error::denied(format!(
                    "api key {} is already revoked",
                    k.prefix
                )));
            }
            revoke_in(tx, &mut k, now, String::new())?;
            Ok(k)
        })
    }

    /// Revokes every key of `owner` that is not revoked yet (expired ones too: an expiry
    /// can be lifted by no one, but the record then says it was revoked), each with an
    /// `api_key_revoked` audit event, in one transaction. Returns the keys revoked, oldest
    /// first. For an account that was taken over: a password reset keeps the keys.
    ///
    /// # Errors
    /// `NotFound` for an owner that does not exist (a user or an org); `Storage` when the
    /// engine fails (then none is revoked).
    pub fn revoke_all_of(&self, owner: KeyOwner) -> Result<Vec<ApiKey>> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let exists = match owner {
                KeyOwner::User(u) => tx.table::<User>().contains(&u)?,
                KeyOwner::Org(o) => tx.table::<Org>().contains(&o)?,
            };
            if !exists {
                return Err(Error::not_found(owner.to_string()));
            }
            revoke_keys_of(tx, now, owner, "all of its owner's keys")
        })
    }

    /// Up to `limit` keys, newest first, optionally of one owner.
    ///
    /// # Errors
    /// `Corrupt` when a key cannot be read.
    pub fn list(&self, owner: Option<KeyOwner>, limit: usize) -> Result<Vec<ApiKey>> {
        // Newest first: the table is in another order, so the newest `limit` are kept
        // while it is read, never the whole table.
        let mut top = Top::new(limit);
        let mut offer = |x: ApiKey| {
            top.offer((Reverse(x.created_at), x.prefix.clone()), x);
            Ok(true)
        };
        self.acc.read(|tx| {
            let t = tx.table::<ApiKey>();
            match owner {
                Some(o) => t.for_each_by(
                    &ApiKey::BY_OWNER,
                    KeyRange::prefix(o.index_key()),
                    Order::Asc,
                    &mut offer,
                ),
                None => t.for_each(KeyRange::all(), Order::Asc, &mut offer),
            }
        })?;
        Ok(top.into_sorted())
    }

    /// Up to `limit` keys that `user` made ([`ApiKey::created_by`]), newest first, whoever
    /// owns them, revoked and expired ones too. Keys made before creators were recorded are
    /// in no one's list.
    ///
    /// # Errors
    /// `Corrupt` when a key cannot be read.
    pub fn list_made_by(&self, user: u64, limit: usize) -> Result<Vec<ApiKey>> {
        let mut top = Top::new(limit);
        self.acc.read(|tx| {
            tx.table::<ApiKey>().for_each_by(
                &ApiKey::BY_CREATOR,
                KeyRange::prefix(key!(user)),
                Order::Asc,
                |x| {
                    top.offer((Reverse(x.created_at), x.prefix.clone()), x);
                    Ok(true)
                },
            )
        })?;
        Ok(top.into_sorted())
    }
}

// The shape versions 1 and 2 stored (format 1, fields in order), read by `upgrade` and by
// the migrations. Never change it.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum KeyOwnerV1 {
    User(u64),
    Org(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ApiKeyV1 {
    pub hash: [u8; 32],
    pub prefix: String,
    pub owner: KeyOwnerV1,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<ApiKeyV1> for ApiKey {
    fn from(v: ApiKeyV1) -> ApiKey {
        ApiKey {
            hash: TokenHash(v.hash),
            prefix: v.prefix,
            owner: match v.owner {
                KeyOwnerV1::User(u) => KeyOwner::User(u),
                KeyOwnerV1::Org(o) => KeyOwner::Org(o),
            },
            created_by: None,
            scopes: v.scopes,
            created_at: Timestamp(v.created_at),
            expires_at: v.expires_at.map(Timestamp),
            last_used_at: v.last_used_at.map(Timestamp),
            revoked_at: v.revoked_at.map(Timestamp),
        }
    }
}

impl From<&ApiKey> for ApiKeyV1 {
    fn from(v: &ApiKey) -> ApiKeyV1 {
        ApiKeyV1 {
            hash: v.hash.0,
            prefix: v.prefix.clone(),
            owner: match v.owner {
                KeyOwner::User(u) => KeyOwnerV1::User(u),
                KeyOwner::Org(o) => KeyOwnerV1::Org(o),
            },
            scopes: v.scopes.clone(),
            created_at: v.created_at.0,
            expires_at: v.expires_at.map(|t| t.0),
            last_used_at: v.last_used_at.map(|t| t.0),
            revoked_at: v.revoked_at.map(|t| t.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::{self, Stored};
    use crate::store::format::{self, FormatError, UsedShapes};

    /// A key stored before keys recorded their maker (the same version, without the field)
    /// reads with no maker (and so has no `by_creator` entry).
    #[test]
    fn a_key_stored_before_makers_were_recorded_reads_with_none() {
        #[derive(Serialize)]
        struct Before {
            prefix: String,
            owner: KeyOwner,
            scopes: Vec<String>,
            created_at: Timestamp,
            expires_at: Option<Timestamp>,
            last_used_at: Option<Timestamp>,
            revoked_at: Option<Timestamp>,
        }
        let before = Before {
            prefix: "rkk_abcdefgh".into(),
            owner: KeyOwner::Org(3),
            scopes: vec!["deploy".into()],
            created_at: Timestamp(100),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        let mut used = UsedShapes::default();
        let bytes = codec::encode(&before, ApiKey::VERSION, &mut used).unwrap();
        for (id, names) in used.0 {
            format::remember_shape(id, names.iter().map(|n| Box::<str>::from(*n)).collect());
        }
        let none = |id: u64| Err(FormatError(format!("no shape {id}")));
        let k: ApiKey = Stored::parse(&bytes, &none).unwrap().decode().unwrap();
        assert_eq!(
            (k.prefix.as_str(), k.owner, k.created_by),
            ("rkk_abcdefgh", KeyOwner::Org(3), None)
        );
    }
}
