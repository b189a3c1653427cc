//! The append-only audit log of security events, written in the same transaction as the
//! change it records. Passwords, tokens and codes never appear in it.
//!
//! Requests no one signed in to (failed logins, password-reset requests) write under a
//! budget of rows a minute (`Budget`): beyond it, one row per action counts the rest of the
//! minute, rewritten by each, so that a flood cannot grow the log by a row a request. The
//! only rows ever rewritten are those counts.

use serde::{Deserialize, Serialize};

use super::Accounts;
use super::budget::{Budget, Row};
use crate::clock::Timestamp;
use crate::error::Result;
use crate::key;
use crate::store::{Index, KeyRange, Order, Record, Stored, WriteTx};

/// One security event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Sequence number: the order of events.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// The user who acted, if known (`None`: an operator or the application; [`origin`](Self::origin)
    /// tells an operator's command apart).
    pub actor: Option<u64>,
    /// What happened, e.g. `login_failed`, `role_granted`.
    pub action: String,
    /// The user the event is about, if any.
    pub subject_user: Option<u64>,
    /// What the event is about, e.g. `user 5`, `invite rki_ab12cd34`.
    pub subject: String,
    /// `ok`, `denied`, `locked`, ….
    pub outcome: String,
    /// Extra non-secret detail.
    pub detail: String,
    /// Where the change came from, when whoever made it said: an operator's `redkeep` command
    /// run on the store (`redkeep CLI, uid 0`), one sent through the application's admin
    /// socket (`admin socket, peer uid 1000, pid 4242`), or the application's own writes made
    /// inside [`Redkeep::with_origin`](crate::Redkeep::with_origin) (`web, 203.0.113.7`).
    /// `None` for the application's other events, and for events recorded before release
    /// 0.4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl AuditEvent {
    /// Events about a user, by user then sequence.
    pub const BY_SUBJECT_USER: Index<AuditEvent> =
        Index::many("by_subject_user", |e| e.subject_user.map(|u| key!(u)));
}

impl Record for AuditEvent {
    const TABLE: &'static str = "audit";
    type Key = u64;
    const ID_SEQUENCE: bool = true;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_SUBJECT_USER];
    fn key(&self) -> u64 {
        self.seq
    }
    fn upgrade(old: Stored<'_>) -> std::result::Result<Self, String> {
        // Format 1 stores fields by position: the first release's shape, without `origin`.
        if old.is_legacy() {
            return Ok(old.decode::<AuditEventV1>()?.into());
        }
        old.decode()
    }
}

/// The audit event as the first release stored it (format 1, fields in order): read by
/// `upgrade` and written by the migrations down. Never change it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditEventV1 {
    pub seq: u64,
    pub at: i64,
    pub actor: Option<u64>,
    pub action: String,
    pub subject_user: Option<u64>,
    pub subject: String,
    pub outcome: String,
    pub detail: String,
}

impl From<&AuditEvent> for AuditEventV1 {
    /// The origin, which that shape has no field for, is kept at the end of the detail.
    fn from(e: &AuditEvent) -> AuditEventV1 {
        let detail = match (&e.origin, e.detail.is_empty()) {
            (None, _) => e.detail.clone(),
            (Some(origin), true) => format!("origin: {origin}"),
            (Some(origin), false) => format!("{}; origin: {origin}", e.detail),
        };
        AuditEventV1 {
            seq: e.seq,
            at: e.at.0,
            actor: e.actor,
            action: e.action.clone(),
            subject_user: e.subject_user,
            subject: e.subject.clone(),
            outcome: e.outcome.clone(),
            detail,
        }
    }
}

impl From<AuditEventV1> for AuditEvent {
    fn from(e: AuditEventV1) -> AuditEvent {
        AuditEvent {
            seq: e.seq,
            at: Timestamp(e.at),
            actor: e.actor,
            action: e.action,
            subject_user: e.subject_user,
            subject: e.subject,
            outcome: e.outcome,
            detail: e.detail,
            origin: None,
        }
    }
}

/// What to record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Event<'a> {
    pub actor: Option<u64>,
    pub action: &'a str,
    pub subject_user: Option<u64>,
    pub subject: String,
    pub outcome: &'a str,
    pub detail: String,
}

/// Appends an event inside `tx`, with the origin of the write, if its caller gave one (an
/// operator's command, an application's request: see `Redkeep::with_origin`).
pub(crate) fn record(tx: &WriteTx<'_>, at: Timestamp, e: Event<'_>) -> Result<()> {
    let t = tx.table::<AuditEvent>();
    let seq = t.next_id()?;
    t.insert(&AuditEvent {
        seq,
        at,
        actor: e.actor,
        action: e.action.to_string(),
        subject_user: e.subject_user,
        subject: e.subject,
        outcome: if e.outcome.is_empty() {
            "ok"
        } else {
            e.outcome
        }
        .to_string(),
        detail: e.detail,
        origin: tx.origin().map(str::to_string),
    })
}

/// Appends the event of a request no one signed in to (a failed login, a password-reset
/// request), within `budget`: past it, the event is counted in its action's summary row of
/// the minute instead (written when missing, rewritten otherwise: one write either way).
/// Whether the row is the event's own or a count depends only on how many came this
/// minute, never on the account, so every request of a kind does the same work.
pub(crate) fn record_unauthenticated(
    tx: &WriteTx<'_>,
    budget: &Budget,
    at: Timestamp,
    e: Event<'_>,
) -> Result<()> {
    let Row::Counted { seq, count, first } = budget.take(e.action, at) else {
        return record(tx, at, e);
    };
    let t = tx.table::<AuditEvent>();
    let summary = |seq| AuditEvent {
        seq,
        at: first,
        actor: None,
        action: e.action.to_string(),
        subject_user: None,
        subject: "requests beyond the audit budget".into(),
        outcome: "summarized".into(),
        detail: format!(
            "{count} more {} event(s) in this minute ({first} to {at}), past the budget of \
             {} rows a minute for requests no one signed in to; their subjects were not \
             kept. Rate-limit the login and password-reset routes in front of the \
             application",
            e.action,
            budget.per_minute()
        ),
        origin: tx.origin().map(str::to_string),
    };
    // The summary row, unless pruned or rolled back since (then a new one).
    if let Some(seq) = seq
        && t.get(&seq)?
            .is_some_and(|old| old.outcome == "summarized" && old.action == e.action)
    {
        return t.update(&summary(seq));
    }
    let seq = t.next_id()?;
    t.insert(&summary(seq))?;
    budget.summary_written(e.action, first, seq);
    Ok(())
}

/// Appends an event about a user, done by an operator or the application, outcome `ok`.
pub(crate) fn user_event(
    tx: &WriteTx<'_>,
    at: Timestamp,
    action: &str,
    user: u64,
    detail: String,
) -> Result<()> {
    record(tx, at, user_event_of(action, user, detail))
}

/// The event [`user_event`] appends.
pub(crate) fn user_event_of(action: &str, user: u64, detail: String) -> Event<'_> {
    Event {
        action,
        subject_user: Some(user),
        subject: format!("user {user}"),
        outcome: "ok",
        detail,
        ..Event::default()
    }
}

/// Events read per transaction by [`AuditLog::prune`]: each holds the store's writes back
/// only that long. (Three in unit tests, so that a test covers many.)
#[cfg(not(test))]
const PRUNE_BATCH: usize = 10_000;
#[cfg(test)]
const PRUNE_BATCH: usize = 3;

/// Reading the audit log, and pruning it.
#[derive(Debug, Clone, Copy)]
pub struct AuditLog<'a> {
    pub(crate) acc: &'a Accounts,
}

impl AuditLog<'_> {
    /// Up to `limit` events, newest first, optionally only those about `user`, and only those
    /// older than the event `before` (for the next page).
    ///
    /// # Errors
    /// `Corrupt` when an event cannot be read.
    pub fn list(
        &self,
        user: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        self.acc.read(|tx| {
            let t = tx.table::<AuditEvent>();
            match user {
                Some(u) => {
                    let mut range = KeyRange::prefix(key!(u));
                    if let Some(b) = before {
                        range = range.before(&key!(u, b));
                    }
                    t.range_by(&AuditEvent::BY_SUBJECT_USER, range, Order::Desc, limit)
                }
                None => {
                    let mut range = KeyRange::all();
                    if let Some(b) = before {
                        range = range.before(&key!(b));
                    }
                    t.range(range, Order::Desc, limit)
                }
            }
        })
    }

    /// Deletes every event recorded before `before` (the log otherwise keeps every event,
    /// every failed login by anyone included), then records one `audit_pruned` event saying
    /// how many went and up to when, so the log shows that it was pruned. Returns how many
    /// were deleted.
    ///
    /// Every event is read, in transactions of up to 10,000 events, so that writes made
    /// meanwhile wait only for one of them; an event recorded with a clock set back is
    /// found wherever it stands. Events about a user go with their index entries.
    ///
    /// # Errors
    /// `InvalidInput` for a `before` later than now (it would delete what is being
    /// recorded); `Corrupt` when an event cannot be read; `Storage` when the engine fails
    /// (the transactions committed before stay: the events they deleted are gone, and a
    /// second run deletes the rest).
    pub fn prune(&self, before: Timestamp) -> Result<u64> {
        let now = self.acc.now();
        if before > now {
            return Err(crate::error::Error::invalid(
                "before",
                format!(
                    "{before} is later than now ({now}); give a time in the past (pruning \
                     deletes the events recorded before it)"
                ),
            ));
        }
        let mut deleted = 0u64;
        let mut after: Option<u64> = None;
        loop {
            let (seen, last, gone) = self.acc.store.write(|tx| {
                let t = tx.table::<AuditEvent>();
                let mut range = KeyRange::all();
                if let Some(a) = after {
                    range = range.after(&key!(a));
                }
                let page = t.range(range, Order::Asc, PRUNE_BATCH)?;
                let mut gone = 0u64;
                for e in page.iter().filter(|e| e.at < before) {
                    t.delete(&e.seq)?;
                    gone += 1;
                }
                Ok((page.len(), page.last().map(|e| e.seq), gone))
            })?;
            deleted += gone;
            match last {
                Some(seq) if seen == PRUNE_BATCH => after = Some(seq),
                _ => break,
            }
        }
        self.acc.store.write(|tx| {
            record(
                tx,
                now,
                Event {
                    action: "audit_pruned",
                    subject: "audit log".into(),
                    outcome: "ok",
                    detail: format!("{deleted} event(s) recorded before {before} deleted"),
                    ..Event::default()
                },
            )
        })?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::{ManualClock, NewUser, Options, PasswordParams, Redkeep, Timestamp};

    /// Pruning reads the log in many transactions (three events each here) and finds every
    /// event before the cutoff, one recorded after a clock was set back included.
    #[test]
    fn prune_deletes_every_event_before_the_cutoff_across_batches() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000)));
        let rk = Redkeep::open(
            tmp.path(),
            Options::default()
                .password(PasswordParams::INSECURE_FAST)
                .clock(clock.clone()),
        )
        .unwrap();
        let user = |email: &str| {
            rk.users()
                .create(NewUser {
                    email: email.into(),
                    ..NewUser::default()
                })
                .unwrap()
                .user
                .id
        };
        for i in 0..4 {
            user(&format!("old{i}@example.com"));
        }
        let old = rk.audit().list(None, None, usize::MAX).unwrap().len();
        clock.advance(Duration::from_secs(86_400));
        let cutoff = rk.now();
        let kept = user("new@example.com");
        // A clock set back: its events stand after the ones above, yet are older.
        clock.set(Timestamp(1_700_000_000));
        let late = user("late@example.com");
        clock.set(cutoff.plus(Duration::from_secs(3600)));
        let all = rk.audit().list(None, None, usize::MAX).unwrap();
        let before = all.iter().filter(|e| e.at < cutoff).count();
        assert!(before > old, "the late events count too");
        assert_eq!(rk.audit().prune(cutoff).unwrap(), before as u64);
        let left = rk.audit().list(None, None, usize::MAX).unwrap();
        assert!(left.iter().all(|e| e.at >= cutoff), "{left:?}");
        assert_eq!(left.len(), all.len() - before + 1);
        assert_eq!(left[0].action, "audit_pruned");
        assert!(!rk.audit().list(Some(kept), None, 10).unwrap().is_empty());
        // The index went with the events.
        assert!(rk.audit().list(Some(late), None, 10).unwrap().is_empty());
        assert!(rk.check(false).unwrap().ok);
    }
}
