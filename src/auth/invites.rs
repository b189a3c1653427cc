//! Invite codes: random, shown once, stored as SHA-256 with a short display prefix; optional
//! expiry and use limit; revocable; consumed in the same transaction that creates the user.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Accounts;
use super::audit::{self, Event};
use super::token::{self, Secret, TokenHash};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{Index, KeyRange, Order, Record, Stored, WriteTx};

/// The type prefix of invite codes.
pub const INVITE_PREFIX: &str = "rki";

/// The most registrations one invite allows: an invite keeps the id of every user who
/// registered with it, in its own record, rewritten at each registration. Make several
/// invites for more.
pub const MAX_INVITE_USES: u32 = 100_000;
/// The most invites [`Invites::create_many`] makes in one transaction.
pub const MAX_INVITES_AT_ONCE: usize = 1000;

/// The stored state of an invite. `Expired` is never stored: it is derived from the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteStatus {
    /// Can still be used (unless expired).
    Active,
    /// Every allowed use is taken.
    UsedUp,
    /// Revoked by an operator.
    Revoked,
    /// Past its expiry time.
    Expired,
}

impl InviteStatus {
    /// The lower-case name (`active`, `used_up`, `revoked`, `expired`).
    pub fn as_str(self) -> &'static str {
        match self {
            InviteStatus::Active => "active",
            InviteStatus::UsedUp => "used_up",
            InviteStatus::Revoked => "revoked",
            InviteStatus::Expired => "expired",
        }
    }

    pub(crate) fn byte(self) -> u8 {
        self as u8
    }
}

/// An invite code's record. The code itself is never stored, and its hash is kept out of
/// `Debug` and `Serialize` (it is the record's key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// SHA-256 of the code: the record's key.
    #[serde(skip)]
    pub hash: TokenHash,
    /// Non-secret display prefix (`rki_ab12cd34`).
    pub prefix: String,
    /// The user who created it, if created by a user.
    pub created_by: Option<u64>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Unusable after this time.
    pub expires_at: Option<Timestamp>,
    /// How many registrations it allows.
    pub max_uses: u32,
    /// How many it has had.
    pub uses: u32,
    /// The users it registered, in order; 0 (which no account has) for a use spent on an
    /// attempt whose email or username had an account.
    pub used_by: Vec<u64>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// Stored status (never `Expired`).
    pub stored_status: InviteStatus,
}

impl Invite {
    /// The status at `now`.
    pub fn status(&self, now: Timestamp) -> InviteStatus {
        match self.stored_status {
            InviteStatus::Active if self.expires_at.is_some_and(|e| now >= e) => {
                InviteStatus::Expired
            }
            s => s,
        }
    }

    /// Unique: the display prefix.
    pub const PREFIX: Index<Invite> = Index::unique("prefix", |i| Some(key!(i.prefix)));
    /// By stored status.
    pub const STATUS: Index<Invite> = Index::many("status", |i| Some(vec![i.stored_status.byte()]));
}

impl Record for Invite {
    const TABLE: &'static str = "invites";
    type Key = TokenHash;
    const SECRET_KEY: bool = true;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::PREFIX, &Self::STATUS];
    const VERSION: u32 = 2;
    fn key(&self) -> TokenHash {
        self.hash
    }
    fn restore_key(&mut self, key: &TokenHash) {
        self.hash = *key;
    }
    fn upgrade(old: Stored<'_>) -> std::result::Result<Self, String> {
        match old.version() {
            1 => Ok(old.decode::<InviteV1>()?.into()),
            v => Err(format!("unknown invites record version {v}")),
        }
    }
}

/// How long an invite lasts unless told otherwise: a week ([`InviteSpec::default`], `redkeep
/// invite create` without `--expires`).
pub const DEFAULT_INVITE_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// What invite to create. The default (`InviteSpec::default()`) is one use that expires after
/// a week ([`DEFAULT_INVITE_LIFETIME`]): a code pasted in a chat or a ticket does not stay a
/// way in for good. [`InviteSpec::never_expires`] makes one that lasts until used or
/// revoked.
#[derive(Debug, Clone)]
pub struct InviteSpec {
    /// Lifetime from now (1 s to 100 years); `None` never expires. The default is
    /// [`DEFAULT_INVITE_LIFETIME`].
    pub expires_in: Option<Duration>,
    /// Allowed registrations (default 1).
    pub max_uses: u32,
    /// The creating user, if any.
    pub created_by: Option<u64>,
}

impl Default for InviteSpec {
    fn default() -> Self {
        InviteSpec {
            expires_in: Some(DEFAULT_INVITE_LIFETIME),
            max_uses: 1,
            created_by: None,
        }
    }
}

impl InviteSpec {
    /// Sets the lifetime.
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = Some(d);
        self
    }

    /// Makes a code that never expires: it stays good until used up or revoked, also when
    /// it leaks.
    pub fn never_expires(mut self) -> Self {
        self.expires_in = None;
        self
    }

    /// Sets the number of allowed uses.
    pub fn uses(mut self, n: u32) -> Self {
        self.max_uses = n;
        self
    }
}

/// A new invite and its code, shown once.
#[derive(Debug)]
pub struct CreatedInvite {
    /// The stored record.
    pub invite: Invite,
    /// The code to hand out.
    pub code: Secret,
}

/// Which invites to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InviteFilter {
    /// Only invites that can still be used (the default).
    #[default]
    Usable,
    /// Every invite.
    All,
}

/// Consumes one use of `code` for `user_id` inside `tx`.
pub(crate) fn consume(
    tx: &WriteTx<'_>,
    now: Timestamp,
    code: &str,
    user_id: u64,
) -> Result<Invite> {
    let code = code.trim();
    let invalid = || Error::InvalidCredential {
        what: "invite code",
    };
    if !plausible_code(code) {
        return Err(invalid());
    }
    let invites = tx.table::<Invite>();
    let hash = token::hash_token(code);
    let mut invite = invites.get(&hash)?.ok_or_else(invalid)?;
    ensure_usable(&invite, now)?;
    // An invite made before the limit (or imported) with more uses stops at it, with an
    // error that names it, rather than at the record size limit with one that does not.
    if invite.used_by.len() >= MAX_INVITE_USES as usize {
        return Err(Error::denied(format!(
            "invite code {} has been used {} times, the most an invite records; make \
             another invite",
            invite.prefix,
            invite.used_by.len()
        )));
    }
    // Saturating: a count at its limit (imported data) reads as used up, never as unused.
    invite.uses = invite.uses.saturating_add(1);
    invite.used_by.push(user_id);
    if invite.uses >= invite.max_uses {
        invite.stored_status = InviteStatus::UsedUp;
    }
    invites.update(&invite)?;
    Ok(invite)
}

fn ensure_usable(invite: &Invite, now: Timestamp) -> Result<()> {
    let name = || format!("invite code {}", invite.prefix);
    match invite.status(now) {
        InviteStatus::Active => Ok(()),
        InviteStatus::Expired => Err(Error::Expired { what: name() }),
        InviteStatus::Revoked => Err(Error::Revoked {
            what: format!("{} was revoked", name()),
        }),
        InviteStatus::UsedUp => Err(Error::Revoked {
            what: format!(
                "{} has been used {} of {} times",
                name(),
                invite.uses,
                invite.max_uses
            ),
        }),
    }
}

/// Operations on invite codes.
#[derive(Debug, Clone, Copy)]
pub struct Invites<'a> {
    pub(crate) acc: &'a Accounts,
}

impl Invites<'_> {
    /// Creates an invite and returns its code once.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// use std::time::Duration;
    /// use redkeep::InviteSpec;
    /// let created = rk.invites().create(InviteSpec::default().uses(5).expires_in(Duration::from_secs(7 * 86400)))?;
    /// // The code is shown once; only its hash is stored.
    /// let invite = rk.invites().validate(created.code.expose())?;
    /// assert_eq!(invite.max_uses, 5);
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` when `max_uses` is 0 or over [`MAX_INVITE_USES`], or the lifetime is
    /// under 1 s or over 100 years;
    /// `NotFound` when `created_by` names no user.
    pub fn create(&self, spec: InviteSpec) -> Result<CreatedInvite> {
        let mut made = self.create_many(spec, 1)?;
        // `create_many` makes exactly the number asked for, here one.
        made.pop()
            .ok_or_else(|| Error::invalid("count", "no invite was made"))
    }

    /// Creates `count` invites alike in one write transaction, so either all of them are
    /// stored or none is (a failure part way leaves no code that was never shown), and
    /// returns their codes once, in the order made.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// use redkeep::InviteSpec;
    /// let made = rk.invites().create_many(InviteSpec::default(), 3)?;
    /// assert_eq!(made.len(), 3);
    /// for c in &made {
    ///     rk.invites().validate(c.code.expose())?;
    /// }
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` when `count` is 0 or over [`MAX_INVITES_AT_ONCE`], `max_uses` is 0 or
    /// over [`MAX_INVITE_USES`], or the lifetime is under 1 s or over 100 years; `NotFound` when `created_by` names no
    /// user. Nothing is stored then.
    pub fn create_many(&self, spec: InviteSpec, count: usize) -> Result<Vec<CreatedInvite>> {
        if count == 0 || count > MAX_INVITES_AT_ONCE {
            return Err(Error::invalid(
                "count",
                format!("create between 1 and {MAX_INVITES_AT_ONCE} invites at a time"),
            ));
        }
        if spec.max_uses == 0 {
            return Err(Error::invalid("uses", "an invite needs at least 1 use"));
        }
        if spec.max_uses > MAX_INVITE_USES {
            return Err(Error::invalid(
                "uses",
                format!(
                    "{} uses asked for; an invite allows at most {MAX_INVITE_USES} (make \
                     several invites for more)",
                    spec.max_uses
                ),
            ));
        }
        let expires_in = spec
            .expires_in
            .map(|d| crate::clock::lifetime("expires", d))
            .transpose()?;
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            if let Some(by) = spec.created_by
                && !tx.table::<crate::auth::users::User>().contains(&by)?
            {
                return Err(Error::not_found(format!(
                    "user {by} (the invite's creator)"
                )));
            }
            let mut made = Vec::with_capacity(count);
            for _ in 0..count {
                let (code, invite) =
                    super::insert_with_token(tx, INVITE_PREFIX, |hash, prefix| Invite {
                        hash,
                        prefix,
                        created_by: spec.created_by,
                        created_at: now,
                        expires_at: expires_in.map(|d| now.plus(d)),
                        max_uses: spec.max_uses,
                        uses: 0,
                        used_by: Vec::new(),
                        revoked_at: None,
                        stored_status: InviteStatus::Active,
                    })?;
                audit::record(
                    tx,
                    now,
                    Event {
                        actor: spec.created_by,
                        action: "invite_created",
                        subject: format!("invite {}", invite.prefix),
                        ..Event::default()
                    },
                )?;
                made.push(CreatedInvite { invite, code });
            }
            Ok(made)
        })
    }

    /// Up to `limit` invites, newest first.
    ///
    /// # Errors
    /// `Corrupt` when an invite cannot be read.
    pub fn list(&self, filter: InviteFilter, limit: usize) -> Result<Vec<Invite>> {
        let now = self.acc.now();
        let mut out = Vec::new();
        self.acc.read(|tx| {
            let t = tx.table::<Invite>();
            let mut keep = |i: Invite| {
                if filter == InviteFilter::All || i.status(now) == InviteStatus::Active {
                    out.push(i);
                }
                Ok(true)
            };
            match filter {
                InviteFilter::All => t.for_each(KeyRange::all(), Order::Asc, &mut keep),
                InviteFilter::Usable => t.for_each_by(
                    &Invite::STATUS,
                    KeyRange::prefix(vec![InviteStatus::Active.byte()]),
                    Order::Asc,
                    &mut keep,
                ),
            }
        })?;
        out.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(a.prefix.cmp(&b.prefix))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// Finds an invite by its full code or its display prefix.
    ///
    /// # Errors
    /// `InvalidInput` when the text is neither; `NotFound` when no invite matches.
    pub fn find(&self, code_or_prefix: &str) -> Result<Invite> {
        let text = code_or_prefix.trim();
        let found = if token::looks_like_prefix(INVITE_PREFIX, text) {
            self.acc
                .read(|tx| tx.table::<Invite>().get_by(&Invite::PREFIX, &key!(text)))?
        } else if plausible_code(text) {
            let hash = token::hash_token(text);
            self.acc.read(|tx| tx.table::<Invite>().get(&hash))?
        } else {
            return Err(Error::invalid(
                "invite",
                format!("give the full code or its prefix ({INVITE_PREFIX}_ and 8 characters)"),
            ));
        };
        // The prefix is enough to name an invite, not to use one; say nothing more.
        found.ok_or_else(|| {
            if token::looks_like(INVITE_PREFIX, text) || token::looks_like_prefix(INVITE_PREFIX, text) {
                Error::not_found(format!("invite {}", short(text)))
            } else {
                Error::invalid(
                    "invite",
                    format!("no invite has this code; give the full code or its prefix ({INVITE_PREFIX}_ and 8 characters)"),
                )
            }
        })
    }

    /// Checks that a code could register a user now, without using it.
    ///
    /// # Errors
    /// `InvalidCredential`, `Expired` or `Revoked`.
    pub fn validate(&self, code: &str) -> Result<Invite> {
        let invalid = Error::InvalidCredential {
            what: "invite code",
        };
        if !plausible_code(code.trim()) {
            return Err(invalid);
        }
        let hash = token::hash_token(code.trim());
        let invite = self
            .acc
            .read(|tx| tx.table::<Invite>().get(&hash))?
            .ok_or(invalid)?;
        ensure_usable(&invite, self.acc.now())?;
        Ok(invite)
    }

    /// Revokes an invite named by code or prefix.
    ///
    /// # Errors
    /// `Denied` when it is already revoked or used up; `NotFound`.
    pub fn revoke(&self, code_or_prefix: &str) -> Result<Invite> {
        let found = self.find(code_or_prefix)?;
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let inv = tx.table::<Invite>().modify(&found.hash, |inv| {
                match inv.stored_status {
                    InviteStatus::Revoked => {
                        return Err(Error::denied(format!(
                            "invite {} is already revoked",
                            inv.prefix
                        )));
                    }
                    InviteStatus::UsedUp => {
                        return Err(Error::denied(format!(
                            "invite {} is used up; there is nothing to revoke",
                            inv.prefix
                        )));
                    }
                    _ => {}
                }
                inv.stored_status = InviteStatus::Revoked;
                inv.revoked_at = Some(now);
                Ok(inv.clone())
            })?;
            audit::record(
                tx,
                now,
                Event {
                    action: "invite_revoked",
                    subject: format!("invite {}", inv.prefix),
                    ..Event::default()
                },
            )?;
            Ok(inv)
        })
    }
}

/// Revokes, inside `tx`, the invites `user` made that could still admit someone (active and
/// not expired), one `invite_revoked` audit row each with `why` as its detail; returns their
/// prefixes. (Expired ones admit no one and are left as they are.) For a user disabled or deleted: invites handed out by someone removed would
/// keep admitting people, under a creator who no longer answers for them.
pub(crate) fn revoke_made_by(
    tx: &WriteTx<'_>,
    now: Timestamp,
    user: u64,
    why: &str,
) -> Result<Vec<String>> {
    let t = tx.table::<Invite>();
    let mut theirs = Vec::new();
    t.for_each_by(
        &Invite::STATUS,
        KeyRange::prefix(vec![InviteStatus::Active.byte()]),
        Order::Asc,
        |i| {
            if i.created_by == Some(user) && i.status(now) == InviteStatus::Active {
                theirs.push(i);
            }
            Ok(true)
        },
    )?;
    let mut prefixes = Vec::with_capacity(theirs.len());
    for mut inv in theirs {
        inv.stored_status = InviteStatus::Revoked;
        inv.revoked_at = Some(now);
        t.update(&inv)?;
        audit::record(
            tx,
            now,
            Event {
                action: "invite_revoked",
                subject_user: Some(user),
                subject: format!("invite {}", inv.prefix),
                detail: why.to_string(),
                ..Event::default()
            },
        )?;
        prefixes.push(inv.prefix);
    }
    Ok(prefixes)
}

// The first characters of something a user typed, so a mistyped full code is not echoed.
/// Whether `text` can be an invite code: one of redkeep's (`rki_…`), or a code adopted from
/// another system (4 to 256 printable ASCII characters), which is stored hashed the same way.
pub(crate) fn plausible_code(text: &str) -> bool {
    token::looks_like(INVITE_PREFIX, text)
        || ((4..=256).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()))
}

fn short(text: &str) -> String {
    text.chars().take(12).collect()
}

// The shape versions 1 and 2 stored (format 1, fields in order), read by `upgrade` and by
// the migrations. Never change it.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum InviteStatusV1 {
    Active,
    UsedUp,
    Revoked,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InviteV1 {
    pub hash: [u8; 32],
    pub prefix: String,
    pub created_by: Option<u64>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub max_uses: u32,
    pub uses: u32,
    pub used_by: Vec<u64>,
    pub revoked_at: Option<i64>,
    pub stored_status: InviteStatusV1,
}

impl From<InviteV1> for Invite {
    fn from(v: InviteV1) -> Invite {
        Invite {
            hash: TokenHash(v.hash),
            prefix: v.prefix,
            created_by: v.created_by,
            created_at: Timestamp(v.created_at),
            expires_at: v.expires_at.map(Timestamp),
            max_uses: v.max_uses,
            uses: v.uses,
            used_by: v.used_by,
            revoked_at: v.revoked_at.map(Timestamp),
            stored_status: match v.stored_status {
                InviteStatusV1::Active => InviteStatus::Active,
                InviteStatusV1::UsedUp => InviteStatus::UsedUp,
                InviteStatusV1::Revoked => InviteStatus::Revoked,
                InviteStatusV1::Expired => InviteStatus::Expired,
            },
        }
    }
}

impl From<&Invite> for InviteV1 {
    fn from(v: &Invite) -> InviteV1 {
        InviteV1 {
            hash: v.hash.0,
            prefix: v.prefix.clone(),
            created_by: v.created_by,
            created_at: v.created_at.0,
            expires_at: v.expires_at.map(|t| t.0),
            max_uses: v.max_uses,
            uses: v.uses,
            used_by: v.used_by.clone(),
            revoked_at: v.revoked_at.map(|t| t.0),
            stored_status: match v.stored_status {
                InviteStatus::Active => InviteStatusV1::Active,
                InviteStatus::UsedUp => InviteStatusV1::UsedUp,
                InviteStatus::Revoked => InviteStatusV1::Revoked,
                InviteStatus::Expired => InviteStatusV1::Expired,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewUser, Options, PasswordParams, Redkeep};

    /// An invite that has registered the most users an invite records (one made before the
    /// limit, or imported, with more uses) refuses the next with an error naming it, rather
    /// than failing at the record size limit with one that does not; and no new invite asks
    /// for more.
    #[test]
    fn an_invite_stops_at_the_most_uses_it_records() {
        let tmp = tempfile::tempdir().unwrap();
        let rk = Redkeep::open(
            tmp.path(),
            Options::default().password(PasswordParams::INSECURE_FAST),
        )
        .unwrap();
        assert!(matches!(
            rk.invites()
                .create(InviteSpec::default().uses(MAX_INVITE_USES + 1)),
            Err(Error::InvalidInput { .. })
        ));
        let made = rk
            .invites()
            .create(InviteSpec::default().uses(MAX_INVITE_USES))
            .unwrap();
        let hash = token::hash_token(made.code.expose());
        rk.store()
            .write(|tx| {
                let t = tx.table::<Invite>();
                let mut inv = t.get(&hash)?.unwrap();
                inv.max_uses = u32::MAX;
                inv.used_by = (1_000_000..1_000_000 + u64::from(MAX_INVITE_USES)).collect();
                inv.uses = MAX_INVITE_USES;
                t.update(&inv)
            })
            .unwrap();
        let e = rk
            .users()
            .create(NewUser {
                email: "late@example.com".into(),
                invite: Some(made.code.expose().into()),
                ..NewUser::default()
            })
            .unwrap_err();
        assert!(
            matches!(&e, Error::Denied { reason } if reason.contains(&made.invite.prefix)
                && reason.contains("make another invite")),
            "{e}"
        );
        assert!(rk.users().find("late@example.com").is_err());
    }
}
