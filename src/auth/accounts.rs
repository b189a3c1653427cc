//! The account domain's shared state: the store, the clock, the password hasher, the
//! policies, and what to do with a user's files when the account changes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::password::Passwords;
use crate::clock::{Clock, Timestamp};
use crate::error::{Error, Result};
use crate::store::Store;

/// The rules of the account domain that an application may tune.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Session lifetimes.
    pub sessions: SessionPolicy,
    /// Lockout after failed logins.
    pub lockout: LockoutPolicy,
    /// `last_used_at` of an API key is written at most this often (default 60 s).
    pub api_key_touch_interval: Duration,
    /// Let registration work without an invite code (default false).
    pub open_registration: bool,
    /// Lifetimes of password-reset and email-verification tokens.
    pub recovery: RecoveryPolicy,
    /// Audit rows a minute, at most, for events of requests no one signed in to (see
    /// [`Options::unauthenticated_audit_per_minute`](crate::Options::unauthenticated_audit_per_minute)).
    pub unauthenticated_audit_per_minute: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            sessions: SessionPolicy::default(),
            lockout: LockoutPolicy::default(),
            api_key_touch_interval: Duration::from_secs(60),
            open_registration: false,
            recovery: RecoveryPolicy::default(),
            unauthenticated_audit_per_minute: 60,
        }
    }
}

/// What happens to a user's files when the account changes. The handle provides it with the
/// workspaces folder; a store without files uses [`NoFiles`].
pub trait UserFiles: Send + Sync + std::fmt::Debug {
    /// The user `id` was deleted (committed): move their files out of reach. Returns where
    /// they went, if anywhere.
    ///
    /// # Errors
    /// When the files cannot be moved; the account is deleted regardless.
    fn user_deleted(&self, id: u64) -> Result<Option<PathBuf>>;

    /// The user `id` is about to be deleted: refuse, before anything is written, when their
    /// files could not be moved afterwards (from inside a call that holds them, say).
    ///
    /// # Errors
    /// Why the files could not be moved; nothing is deleted.
    fn before_delete(&self, id: u64) -> Result<()> {
        let _ = id;
        Ok(())
    }
}

/// [`UserFiles`] for a store without per-user files.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFiles;

impl UserFiles for NoFiles {
    fn user_deleted(&self, _id: u64) -> Result<Option<PathBuf>> {
        Ok(None)
    }
}

/// How sessions expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Absolute lifetime from login (default 12 h); a login may ask for less or more.
    pub ttl: Duration,
    /// A session unused this long expires (default 30 min).
    pub idle_timeout: Duration,
    /// `last_seen_at` is written at most this often (default 60 s), and at least every half
    /// of the session's idle timeout. The idle deadline counts from the last *recorded* use,
    /// so a session may expire up to this long (or half its idle timeout, if less) before
    /// its idle timeout has passed since its last use.
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
    /// The first lock's length (default 1 min, at least 1 s); each further lock doubles it.
    pub base_lock: Duration,
    /// The longest lock (default 24 h, at least 1 s).
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

/// How long recovery tokens live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// Lifetime of a password-reset token (default 1 h).
    pub reset_ttl: Duration,
    /// Lifetime of an email-verification token (default 7 days).
    pub verification_ttl: Duration,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        RecoveryPolicy {
            reset_ttl: Duration::from_secs(3600),
            verification_ttl: Duration::from_secs(7 * 86_400),
        }
    }
}

/// The account domain's state shared by every handle.
#[derive(Debug)]
pub(crate) struct Accounts {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) passwords: Passwords,
    pub(crate) policy: Policy,
    pub(crate) files: Arc<dyn UserFiles>,
    /// When (the handle's clock) a use of a session or key that could not be recorded was
    /// last logged: a store that takes no writes would otherwise log once per request.
    pub(crate) unrecorded_logged: AtomicI64,
    /// How many audit rows requests no one signed in to wrote this minute.
    pub(crate) unauthenticated: super::budget::Budget,
}

/// A use that could not be recorded is logged at most this often (seconds).
const UNRECORDED_LOG_EVERY: i64 = 60;

impl Accounts {
    pub(crate) fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        passwords: Passwords,
        policy: Policy,
        files: Arc<dyn UserFiles>,
    ) -> Accounts {
        Accounts {
            unauthenticated: super::budget::Budget::new(policy.unauthenticated_audit_per_minute),
            store,
            clock,
            passwords,
            policy,
            files,
            unrecorded_logged: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether a use of a session or API key (`last_seen_at`, `last_used_at`) should be
    /// written now: not on a handle opened only to read, whose every write fails.
    pub(crate) fn records_uses(&self) -> bool {
        !self.store.is_read_only()
    }

    /// Logs that the use of `what` could not be recorded: once a minute at most, since a
    /// store that stopped taking writes fails every request's attempt alike. The session or
    /// key stays usable; only its last use is not written.
    pub(crate) fn use_unrecorded(&self, what: &str, e: &Error) {
        if due(&self.unrecorded_logged, self.now().0, UNRECORDED_LOG_EVERY) {
            tracing::warn!(
                error = %e,
                "{what}'s use could not be recorded (logged once a minute at most while \
                 this lasts)"
            );
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// [`Store::read`] of the account tables: refused while this handle has migrated the
    /// store below the schema this build reads (their records have the older layout).
    ///
    /// # Errors
    /// `MigrationNeeded` then; the closure's error; `Storage`.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&crate::store::ReadTx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.store.refuse_behind()?;
        self.store.read(f)
    }
}

/// Whether `every` seconds have passed since `last`, or the clock went back before it (then
/// `now` is taken as the new `last`; of callers racing, one gets `true`).
fn due(last: &AtomicI64, now: i64, every: i64) -> bool {
    let seen = last.load(Ordering::Relaxed);
    (now.saturating_sub(seen) >= every || now < seen)
        && last
            .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unrecorded_use_is_logged_once_a_minute_at_most() {
        let last = AtomicI64::new(i64::MIN);
        assert!(due(&last, 1_000, 60), "the first is logged");
        assert!(!due(&last, 1_000, 60));
        assert!(!due(&last, 1_059, 60));
        assert!(due(&last, 1_060, 60), "a minute later it is logged again");
        assert!(!due(&last, 1_061, 60));
        // A clock set back does not silence it until it catches up.
        assert!(due(&last, 10, 60));
        assert!(!due(&last, 11, 60));
    }
}
