//! Login sessions and lockout. A login verifies the password, applies the lockout rules and
//! creates a session in one write transaction; the token (`rks_…`) is shown once and stored as
//! SHA-256. Validation checks idle and absolute expiry and writes `last_seen_at` at most once
//! per interval, so reads stay reads.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::audit::Event;
use super::token::{self, Secret};
use super::users::{User, normalize_email};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Index, KeyRange, Order, Record, WriteTx};
use crate::{Redkeep, key};

/// The type prefix of session tokens.
pub const SESSION_PREFIX: &str = "rks";

/// How sessions expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Absolute lifetime from login (default 12 h); a login may ask for less or more.
    pub ttl: Duration,
    /// A session unused this long expires (default 30 min).
    pub idle_timeout: Duration,
    /// `last_seen_at` is written at most this often (default 60 s).
    pub touch_interval: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            ttl: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(30 * 60),
            touch_interval: Duration::from_secs(60),
        }
    }
}

/// How password guessing is slowed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failed logins in a row that lock the account (default 10).
    pub threshold: u32,
    /// The first lock's length (default 1 min); each further lock doubles it.
    pub base_lock: Duration,
    /// The longest lock (default 24 h).
    pub max_lock: Duration,
    /// Failed attempts per hour that may reach the password hash (default 100).
    pub max_failures_per_hour: u32,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            threshold: 10,
            base_lock: Duration::from_secs(60),
            max_lock: Duration::from_secs(24 * 3600),
            max_failures_per_hour: 100,
        }
    }
}

/// A login session. The token itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// SHA-256 of the token.
    #[serde(with = "crate::bytes::hash")]
    pub hash: [u8; 32],
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
        self.expires_at.min(
            self.last_seen_at
                .plus(Duration::from_secs(self.idle_timeout_secs)),
        )
    }
}

impl Record for Session {
    const TABLE: &'static str = "sessions";
    type Key = [u8; 32];
    const INDEXES: &'static [Index<Self>] = &[
        Index::unique("short_id", |s| Some(key!(s.short_id))),
        Index::many("by_user", |s| Some(key!(s.user_id))),
        Index::many("by_expires", |s| Some(key!(s.expires_at.0))),
    ];
    fn key(&self) -> [u8; 32] {
        self.hash
    }
}

/// Client details recorded with a session.
#[derive(Debug, Clone, Default)]
pub struct LoginMeta {
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Absolute lifetime instead of the policy's.
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

enum Verdict {
    Locked,
    RateLimited,
    Check,
}

impl Redkeep {
    fn verdict(&self, u: &User, now: Timestamp) -> Verdict {
        let policy = self.options().lockout;
        if u.locked_until.is_some_and(|t| now < t) {
            return Verdict::Locked;
        }
        let window_open = u.failure_window_start.is_some_and(|s| now.since(s) < 3600);
        if window_open && u.failures_in_window >= policy.max_failures_per_hour {
            return Verdict::RateLimited;
        }
        Verdict::Check
    }

    /// Applies a failed attempt to `u` (inside the write transaction); returns whether this
    /// failure locked the account.
    fn record_failure(&self, u: &mut User, now: Timestamp, reached_hash: bool) -> bool {
        let policy = self.options().lockout;
        if reached_hash {
            if u.failure_window_start.is_none_or(|s| now.since(s) >= 3600) {
                u.failure_window_start = Some(now);
                u.failures_in_window = 0;
            }
            u.failures_in_window += 1;
        }
        u.failed_logins = u.failed_logins.saturating_add(1);
        if u.failed_logins < policy.threshold {
            return false;
        }
        u.lock_count = u.lock_count.saturating_add(1);
        let factor = 1u32.checked_shl(u.lock_count - 1).unwrap_or(u32::MAX);
        let lock = policy.base_lock.saturating_mul(factor).min(policy.max_lock);
        u.locked_until = Some(now.plus(lock));
        u.failed_logins = 0;
        true
    }

    /// Verifies email and password under the lockout rules and, on success, runs `on_success`
    /// in the same write transaction. Every failure is `Unauthorized`, after the same work.
    pub(crate) fn verify_login<T>(
        &self,
        email: &str,
        password: &str,
        on_success: impl FnOnce(&WriteTx, &User) -> Result<T>,
    ) -> Result<(User, T)> {
        let found = match normalize_email(email) {
            Ok(n) => self
                .store()
                .read(|tx| tx.table::<User>().get_by("email", &key!(n)))?,
            Err(_) => None,
        };
        let Some(user) = found else {
            self.passwords().burn();
            return Err(Error::Unauthorized);
        };
        let now = self.now();
        let verdict = self.verdict(&user, now);
        let ok = match verdict {
            Verdict::Check => self.passwords().verify(password, &user.password_hash),
            Verdict::Locked | Verdict::RateLimited => {
                self.passwords().burn();
                false
            }
        };
        let rehash = if ok && self.passwords().needs_rehash(&user.password_hash) {
            Some(self.passwords().hash(password)?)
        } else {
            None
        };
        self.store().write(|tx| {
            let users = tx.table::<User>();
            // Re-read: the counters may have moved since the snapshot above.
            let Some(mut u) = users.get(&user.id)? else {
                return Ok(Err(Error::Unauthorized));
            };
            let subject = format!("user {}", u.id);
            if !ok || !u.is_active || u.password_hash != user.password_hash {
                let (action, outcome) = match verdict {
                    Verdict::Locked => ("login_locked", "locked"),
                    Verdict::RateLimited => ("login_locked", "rate_limited"),
                    Verdict::Check if !ok => ("login_failed", "denied"),
                    Verdict::Check => ("login_failed", "disabled"),
                };
                let mut locked_now = false;
                if !ok && matches!(verdict, Verdict::Check) {
                    locked_now = self.record_failure(&mut u, now, true);
                    u.updated_at = now;
                    users.update(&u)?;
                }
                self.audit(
                    tx,
                    Event {
                        action,
                        subject_user: Some(u.id),
                        subject: subject.clone(),
                        outcome,
                        ..Event::default()
                    },
                )?;
                if locked_now {
                    self.audit(
                        tx,
                        Event {
                            action: "account_locked",
                            subject_user: Some(u.id),
                            subject,
                            outcome: "locked",
                            detail: format!("until {}", u.locked_until.unwrap_or(now)),
                            ..Event::default()
                        },
                    )?;
                }
                return Ok(Err(Error::Unauthorized));
            }
            u.failed_logins = 0;
            u.lock_count = 0;
            u.locked_until = None;
            u.last_login_at = Some(now);
            if let Some(h) = &rehash {
                u.password_hash = h.clone();
            }
            users.update(&u)?;
            self.audit(
                tx,
                Event {
                    actor: Some(u.id),
                    action: "login_ok",
                    subject_user: Some(u.id),
                    subject,
                    outcome: "ok",
                    ..Event::default()
                },
            )?;
            let extra = on_success(tx, &u)?;
            Ok(Ok((u, extra)))
        })?
    }

    /// Logs in: verifies the password (with lockout and rehash) and creates a session. Every
    /// login makes a new token, shown once.
    ///
    /// # Errors
    /// `Unauthorized` for every failure: unknown email, wrong password, disabled or locked
    /// account.
    pub fn login(&self, email: &str, password: &str, meta: LoginMeta) -> Result<Login> {
        let ttl = meta.ttl.unwrap_or(self.options().sessions.ttl);
        if ttl.is_zero() {
            return Err(Error::invalid("ttl", "a session needs a positive lifetime"));
        }
        for (field, v) in [("ip", &meta.ip), ("user_agent", &meta.user_agent)] {
            if v.as_ref().is_some_and(|s| s.len() > 512) {
                return Err(Error::invalid(field, "use at most 512 bytes"));
            }
        }
        let (user, (token, session)) = self.verify_login(email, password, |tx, u| {
            self.create_session(tx, u.id, ttl, &meta)
        })?;
        Ok(Login {
            token,
            session,
            user,
        })
    }

    fn create_session(
        &self,
        tx: &WriteTx,
        user: u64,
        ttl: Duration,
        meta: &LoginMeta,
    ) -> Result<(Secret, Session)> {
        let now = self.now();
        super::insert_with_token(tx, SESSION_PREFIX, |hash, short_id| Session {
            hash,
            short_id,
            user_id: user,
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus(ttl),
            idle_timeout_secs: self.options().sessions.idle_timeout.as_secs(),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        })
    }

    /// Revokes every session of `user` inside `tx` except `keep`; returns how many.
    pub(crate) fn revoke_sessions_in(
        &self,
        tx: &WriteTx,
        user: u64,
        keep: Option<[u8; 32]>,
    ) -> Result<usize> {
        let t = tx.table::<Session>();
        let mut n = 0;
        for s in t.scan_by("by_user", KeyRange::prefix(key!(user)), Order::Asc, None)? {
            if Some(s.hash) == keep {
                continue;
            }
            t.delete(&s.hash)?;
            n += 1;
        }
        if n > 0 {
            self.audit(
                tx,
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

    /// The session repository.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { rk: self }
    }
}

/// Operations on login sessions.
#[derive(Debug, Clone, Copy)]
pub struct Sessions<'a> {
    rk: &'a Redkeep,
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
        let now = self.rk.now();
        let (session, user) = self.rk.store().read(|tx| {
            let s = tx.table::<Session>().get(&hash)?;
            let u = match &s {
                Some(s) => tx.table::<User>().get(&s.user_id)?,
                None => None,
            };
            Ok((s, u))
        })?;
        let (Some(session), Some(user)) = (session, user) else {
            return Err(Self::invalid());
        };
        if !token::hashes_equal(&session.hash, &hash)
            || now >= session.deadline()
            || !user.is_active
        {
            return Err(Self::invalid());
        }
        let interval = self.rk.options().sessions.touch_interval.as_secs();
        if now.since(session.last_seen_at) >= i64::try_from(interval).unwrap_or(i64::MAX) {
            let touched = self.rk.store().write(|tx| {
                let t = tx.table::<Session>();
                match t.get(&hash)? {
                    Some(mut s) => {
                        s.last_seen_at = now;
                        t.update(&s)?;
                        Ok(Some(s))
                    }
                    None => Ok(None),
                }
            })?;
            return touched.map(|s| (user, s)).ok_or_else(Self::invalid);
        }
        Ok((user, session))
    }

    /// Ends the session of this token. Returns whether there was one.
    pub fn logout(&self, token: &str) -> Result<bool> {
        let hash = token::hash_token(token.trim());
        self.rk.store().write(|tx| {
            let Some(s) = tx.table::<Session>().delete(&hash)? else {
                return Ok(false);
            };
            self.rk.audit(
                tx,
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

    /// Revokes one session by its short id.
    pub fn revoke(&self, short_id: &str) -> Result<Session> {
        self.rk.store().write(|tx| {
            let t = tx.table::<Session>();
            let s = t
                .get_by("short_id", &key!(short_id.trim()))?
                .ok_or_else(|| Error::not_found(format!("session {}", short_id.trim())))?;
            t.delete(&s.hash)?;
            self.rk.audit(
                tx,
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

    /// Revokes every session of a user; returns how many.
    pub fn revoke_all(&self, user: u64) -> Result<usize> {
        self.rk
            .store()
            .write(|tx| self.rk.revoke_sessions_in(tx, user, None))
    }

    /// Sessions, newest first, optionally of one user.
    pub fn list(&self, user: Option<u64>) -> Result<Vec<Session>> {
        let mut out = self.rk.store().read(|tx| {
            let t = tx.table::<Session>();
            match user {
                Some(u) => t.scan_by("by_user", KeyRange::prefix(key!(u)), Order::Asc, None),
                None => t.all(),
            }
        })?;
        out.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(a.short_id.cmp(&b.short_id))
        });
        Ok(out)
    }

    /// Deletes every session past its absolute or idle expiry; returns how many.
    pub fn sweep(&self) -> Result<usize> {
        let now = self.rk.now();
        self.rk.store().write(|tx| {
            let t = tx.table::<Session>();
            let mut n = 0;
            for s in t.all()? {
                if now >= s.deadline() {
                    t.delete(&s.hash)?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}
