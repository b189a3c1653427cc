//! Login sessions and lockout policy. A login verifies the password, applies the lockout rules
//! and creates a session (`flows.rs`); the token (`rks_…`) is shown once and stored as
//! SHA-256. Validation checks idle and absolute expiry and writes `last_seen_at` at most once
//! per interval, so reads stay reads.

use std::cmp::Reverse;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Accounts;
pub use super::accounts::{LockoutPolicy, SessionPolicy};
use super::audit::{self, Event};
use super::token::{self, Secret, TokenHash};
use super::users::User;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{Index, KeyRange, Order, ReadTx, Record, Source, Stored, Table, WriteTx};
use crate::top::Top;

/// The type prefix of session tokens.
pub const SESSION_PREFIX: &str = "rks";

/// A login session. The token itself is never stored; its hash is the key, kept out of
/// `Debug` and `Serialize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// SHA-256 of the token: the record's key.
    #[serde(skip)]
    pub hash: TokenHash,
    /// Non-secret short id (the token's prefix), for listing and revoking.
    pub short_id: String,
    /// The user.
    pub user_id: u64,
    /// Login time.
    pub created_at: Timestamp,
    /// Last validation that was recorded.
    pub last_seen_at: Timestamp,
    /// Absolute expiry.
    pub expires_at: Timestamp,
    /// Idle timeout in seconds.
    pub idle_timeout_secs: u64,
    /// Client address, if the application gave one.
    pub ip: Option<String>,
    /// Client user agent, if the application gave one.
    pub user_agent: Option<String>,
}

impl Session {
    /// When it expires: the earlier of the absolute expiry and the idle deadline.
    pub fn deadline(&self) -> Timestamp {
        self.expires_at.min(self.idle_deadline())
    }

    /// When it expires if unused: the last recorded use plus the idle timeout.
    pub fn idle_deadline(&self) -> Timestamp {
        self.last_seen_at
            .plus(Duration::from_secs(self.idle_timeout_secs))
    }

    /// Unique: the short id.
    pub const SHORT_ID: Index<Session> = Index::unique("short_id", |s| Some(key!(s.short_id)));
    /// Sessions of a user.
    pub const BY_USER: Index<Session> = Index::many("by_user", |s| Some(key!(s.user_id)));
    /// By deadline, for the sweep.
    pub const BY_DEADLINE: Index<Session> =
        Index::many("by_deadline", |s| Some(key!(s.deadline().0)));
}

impl Record for Session {
    const TABLE: &'static str = "sessions";
    type Key = TokenHash;
    const SECRET_KEY: bool = true;
    const INDEXES: &'static [&'static Index<Self>] =
        &[&Self::SHORT_ID, &Self::BY_USER, &Self::BY_DEADLINE];
    const VERSION: u32 = 2;
    fn key(&self) -> TokenHash {
        self.hash
    }
    fn restore_key(&mut self, key: &TokenHash) {
        self.hash = *key;
    }
    fn upgrade(old: Stored<'_>) -> std::result::Result<Self, String> {
        match old.version() {
            1 => Ok(old.decode::<SessionV1>()?.into()),
            v => Err(format!("unknown sessions record version {v}")),
        }
    }
}

/// The most bytes of a client detail ([`LoginMeta::ip`], [`LoginMeta::user_agent`]) kept.
pub const MAX_CLIENT_TEXT: usize = 512;

/// Client details recorded with a session. They are what a client sent, so they are kept
/// cleaned rather than refused: every control character (a tab, line break, NUL, escape)
/// becomes a space and the text is cut to [`MAX_CLIENT_TEXT`] bytes at a character boundary.
/// Pass header values as they come.
#[derive(Debug, Clone, Default)]
pub struct LoginMeta {
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Absolute lifetime instead of the policy's (1 s to 100 years).
    pub ttl: Option<Duration>,
}

/// A successful login: the token, shown once, and what it opens.
#[derive(Debug)]
pub struct Login {
    /// The session token (`rks_…`).
    pub token: Secret,
    /// The session record.
    pub session: Session,
    /// The user.
    pub user: User,
}

/// Creates a session for `user` inside `tx`.
pub(crate) fn create_in(
    tx: &WriteTx<'_>,
    now: Timestamp,
    user: u64,
    ttl: Duration,
    idle: Duration,
    meta: &LoginMeta,
) -> Result<(Secret, Session)> {
    super::insert_with_token(tx, SESSION_PREFIX, |hash, short_id| Session {
        hash,
        short_id,
        user_id: user,
        created_at: now,
        last_seen_at: now,
        expires_at: now.plus(ttl),
        idle_timeout_secs: idle.as_secs(),
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.clone(),
    })
}

/// Revokes every session of `user` inside `tx` except `keep`; returns how many.
pub(crate) fn revoke_all_in(
    tx: &WriteTx<'_>,
    now: Timestamp,
    user: u64,
    keep: Option<TokenHash>,
) -> Result<usize> {
    let t = tx.table::<Session>();
    let mine = t.range_by(
        &Session::BY_USER,
        KeyRange::prefix(key!(user)),
        Order::Asc,
        usize::MAX,
    )?;
    let mut n = 0;
    for s in mine {
        if Some(s.hash) == keep {
            continue;
        }
        t.delete(&s.hash)?;
        n += 1;
    }
    if n > 0 {
        audit::record(
            tx,
            now,
            Event {
                action: "session_revoked",
                subject_user: Some(user),
                subject: format!("user {user}"),
                outcome: "ok",
                detail: format!("{n} session(s)"),
                ..Event::default()
            },
        )?;
    }
    Ok(n)
}

/// Operations on login sessions.
#[derive(Debug, Clone, Copy)]
pub struct Sessions<'a> {
    pub(crate) acc: &'a Accounts,
}

impl Sessions<'_> {
    fn invalid() -> Error {
        Error::InvalidCredential {
            what: "session token",
        }
    }

    /// Checks a token: it must exist, be within its absolute and idle expiry, and belong to an
    /// active user. Writes `last_seen_at` only when the last write is older than the touch
    /// interval.
    ///
    /// # Errors
    /// `InvalidCredential` for every failure, alike.
    pub fn validate(&self, token: &str) -> Result<(User, Session)> {
        let token = token.trim();
        if !token::looks_like(SESSION_PREFIX, token) {
            return Err(Self::invalid());
        }
        let hash = token::hash_token(token);
        self.check(Some(&hash), true, |t| t.get(&hash))
    }

    /// [`Sessions::validate`] for an operator's look (`redkeep session validate`): the same
    /// answer, but no use recorded, so the check neither makes the session look used nor
    /// keeps it from its idle timeout.
    #[cfg(feature = "admin")]
    pub(crate) fn validate_quietly(&self, token: &str) -> Result<(User, Session)> {
        let token = token.trim();
        if !token::looks_like(SESSION_PREFIX, token) {
            return Err(Self::invalid());
        }
        let hash = token::hash_token(token);
        self.check(Some(&hash), false, |t| t.get(&hash))
    }

    /// [`Sessions::validate`] of the session with this short id, which must be `user`'s: a
    /// web login's cookie session names its redkeep session so (see
    /// `redkeep::web::Backend`), never with a secret.
    #[cfg(feature = "axum-login")]
    pub(crate) fn validate_login(&self, short_id: &str, user: u64) -> Result<(User, Session)> {
        self.check(None, true, |t| {
            Ok(t.get_by(&Session::SHORT_ID, &key!(short_id))?
                .filter(|s| s.user_id == user))
        })
    }

    /// Validation of the session `find` reads (whose hash must equal `hash`, when given),
    /// recording the use when `record_use`.
    fn check(
        &self,
        hash: Option<&TokenHash>,
        record_use: bool,
        find: impl FnOnce(&Table<Session, ReadTx<'_>>) -> Result<Option<Session>>,
    ) -> Result<(User, Session)> {
        let now = self.acc.now();
        let (session, user) = self.acc.read(|tx| {
            let s = find(&tx.table::<Session>())?;
            let u = match &s {
                Some(s) => tx.table::<User>().get(&s.user_id)?,
                None => None,
            };
            Ok((s, u))
        })?;
        let (Some(session), Some(user)) = (session, user) else {
            return Err(Self::invalid());
        };
        if hash.is_some_and(|h| !token::hashes_equal(&session.hash, h))
            || now >= session.deadline()
            || !user.is_active
        {
            return Err(Self::invalid());
        }
        let hash = session.hash;
        // A use is recorded at most every touch interval, but at least every half idle
        // timeout: the idle deadline counts from the last recorded use, so an interval as
        // long as the timeout would end a session in use.
        let interval = self
            .acc
            .policy
            .sessions
            .touch_interval
            .as_secs()
            .min(session.idle_timeout_secs / 2);
        if record_use
            && now.since(session.last_seen_at) >= i64::try_from(interval).unwrap_or(i64::MAX)
            && self.acc.records_uses()
        {
            let touched = self.acc.store.write(|tx| {
                let t = tx.table::<Session>();
                match t.get(&hash)? {
                    Some(mut s) => {
                        s.last_seen_at = now;
                        t.update(&s)?;
                        Ok(Some(s))
                    }
                    None => Ok(None),
                }
            });
            return match touched {
                Ok(Some(s)) => Ok((user, s)),
                Ok(None) => Err(Self::invalid()),
                // The session is valid; a store that takes no writes now (opened read-only,
                // behind its schema, damaged, a failing disk) only leaves its last use
                // unrecorded.
                Err(e) => {
                    self.acc.use_unrecorded("a session", &e);
                    Ok((user, session))
                }
            };
        }
        Ok((user, session))
    }

    /// Ends the session of this token. Returns whether there was one.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn logout(&self, token: &str) -> Result<bool> {
        self.end(&token::hash_token(token.trim()))
    }

    /// Ends the session with this hash, as its user's logout. Returns whether there was one.
    pub(crate) fn end(&self, hash: &TokenHash) -> Result<bool> {
        let hash = *hash;
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let Some(s) = tx.table::<Session>().delete(&hash)? else {
                return Ok(false);
            };
            audit::record(
                tx,
                now,
                Event {
                    actor: Some(s.user_id),
                    action: "session_revoked",
                    subject_user: Some(s.user_id),
                    subject: format!("session {}", s.short_id),
                    outcome: "ok",
                    detail: "logout".into(),
                },
            )?;
            Ok(true)
        })
    }

    /// Ends the session with this short id if it is `user`'s, as its user's logout: what a
    /// web login's cookie session names (see `redkeep::web::Backend`). Returns whether
    /// there was one.
    #[cfg(any(feature = "axum-login", feature = "tower-sessions"))]
    pub(crate) fn end_login(&self, short_id: &str, user: u64) -> Result<bool> {
        // Looked up in a read first: the session layer asks this of every cookie session it
        // deletes, most of them naming a login that ended already.
        let found = self.acc.read(|tx| {
            Ok(tx
                .table::<Session>()
                .get_by(&Session::SHORT_ID, &key!(short_id))?
                .filter(|s| s.user_id == user))
        })?;
        match found {
            Some(s) => self.end(&s.hash),
            None => Ok(false),
        }
    }

    /// Revokes one session, named by its short id or by its full token.
    ///
    /// # Errors
    /// `InvalidInput` for an empty text; `NotFound` (the message repeats no more of the
    /// text than a short id).
    pub fn revoke(&self, token_or_short_id: &str) -> Result<Session> {
        let text = named_session(token_or_short_id)?;
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let t = tx.table::<Session>();
            let s = session_named(&t, text)?;
            t.delete(&s.hash)?;
            audit::record(
                tx,
                now,
                Event {
                    action: "session_revoked",
                    subject_user: Some(s.user_id),
                    subject: format!("session {}", s.short_id),
                    outcome: "ok",
                    ..Event::default()
                },
            )?;
            Ok(s)
        })
    }

    /// Finds a session by its short id or its full token, expired ones too (a revoked one
    /// is gone), whoever its user is: for an operator asking why a token is refused.
    /// [`validate`](Self::validate) alone decides whether a session may be used.
    ///
    /// # Errors
    /// `InvalidInput` for an empty text; `NotFound` (the message repeats no more of the
    /// text than a short id).
    pub fn find(&self, token_or_short_id: &str) -> Result<Session> {
        let text = named_session(token_or_short_id)?;
        self.acc
            .read(|tx| session_named(&tx.table::<Session>(), text))
    }

    /// Up to `limit` sessions, newest first, optionally of one user.
    ///
    /// # Errors
    /// `Corrupt` when a session cannot be read.
    pub fn list(&self, user: Option<u64>, limit: usize) -> Result<Vec<Session>> {
        // Newest first: the table is in another order, so the newest `limit` are kept
        // while it is read, never the whole table.
        let mut top = Top::new(limit);
        let mut offer = |x: Session| {
            top.offer((Reverse(x.created_at), x.short_id.clone()), x);
            Ok(true)
        };
        self.acc.read(|tx| {
            let t = tx.table::<Session>();
            match user {
                Some(u) => t.for_each_by(
                    &Session::BY_USER,
                    KeyRange::prefix(key!(u)),
                    Order::Asc,
                    &mut offer,
                ),
                None => t.for_each(KeyRange::all(), Order::Asc, &mut offer),
            }
        })?;
        Ok(top.into_sorted())
    }

    /// Deletes every login session past its absolute or idle expiry, and every expired web
    /// session and recovery token; returns how many in all. Only the expired records are read
    /// (through their expiry indexes), a batch per write, each table on its own: a backlog
    /// is never held whole, and one table failing does not keep the others from being swept.
    /// An expired record that cannot be read is left for `redkeep check --repair` (and
    /// logged), not an error: the sweep goes on past it.
    ///
    /// # Errors
    /// `Storage` when the engine fails (the first failure, after every table was tried).
    pub fn sweep(&self) -> Result<usize> {
        let now = self.acc.now();
        let results = [
            super::sweep::sweep_table::<Session>(self.acc, &Session::BY_DEADLINE, now),
            super::sweep::sweep_table::<super::web_sessions::WebSession>(
                self.acc,
                &super::web_sessions::WebSession::BY_EXPIRY,
                now,
            ),
            super::sweep::sweep_table::<super::recovery::RecoveryToken>(
                self.acc,
                &super::recovery::RecoveryToken::BY_EXPIRY,
                now,
            ),
        ];
        let mut total = 0;
        let mut failed = None;
        for r in results {
            match r {
                Ok(n) => total += n,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(total), Err)
    }
}

// The shape versions 1 and 2 stored (format 1, fields in order), read by `upgrade` and by
// the migrations. Never change it.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionV1 {
    pub hash: [u8; 32],
    pub short_id: String,
    pub user_id: u64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub idle_timeout_secs: u64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl From<SessionV1> for Session {
    fn from(v: SessionV1) -> Session {
        Session {
            hash: TokenHash(v.hash),
            short_id: v.short_id,
            user_id: v.user_id,
            created_at: Timestamp(v.created_at),
            last_seen_at: Timestamp(v.last_seen_at),
            expires_at: Timestamp(v.expires_at),
            idle_timeout_secs: v.idle_timeout_secs,
            ip: v.ip,
            user_agent: v.user_agent,
        }
    }
}

impl From<&Session> for SessionV1 {
    fn from(v: &Session) -> SessionV1 {
        SessionV1 {
            hash: v.hash.0,
            short_id: v.short_id.clone(),
            user_id: v.user_id,
            created_at: v.created_at.0,
            last_seen_at: v.last_seen_at.0,
            expires_at: v.expires_at.0,
            idle_timeout_secs: v.idle_timeout_secs,
            ip: v.ip.clone(),
            user_agent: v.user_agent.clone(),
        }
    }
}

/// `text` trimmed, as a session's short id or token; refused when empty.
fn named_session(text: &str) -> Result<&str> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::invalid(
            "session",
            format!("it is empty; give the session's short id ({SESSION_PREFIX}_…) or its token"),
        ));
    }
    Ok(text)
}

/// The session `text` names in `t`: by its hash for a full token (which must match), else by
/// its short id.
fn session_named<S: Source + ?Sized>(t: &Table<'_, Session, S>, text: &str) -> Result<Session> {
    let found = if token::looks_like(SESSION_PREFIX, text) {
        let hash = token::hash_token(text);
        t.get(&hash)?
            .filter(|s| token::hashes_equal(&s.hash, &hash))
    } else {
        t.get_by(&Session::SHORT_ID, &key!(text))?
    };
    found.ok_or_else(|| Error::not_found(format!("session {}", token::shown(SESSION_PREFIX, text))))
}
