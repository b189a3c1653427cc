//! The append-only audit log of security events, written in the same transaction as the
//! change it records. Passwords, tokens and codes never appear in it.

use serde::{Deserialize, Serialize};

use super::Accounts;
use crate::clock::Timestamp;
use crate::error::Result;
use crate::key;
use crate::store::{Index, KeyRange, Order, Record, WriteTx};

/// One security event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Sequence number: the order of events.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// The user who acted, if known (`None`: an operator or the application).
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

/// Appends an event inside `tx`.
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
    })
}

/// Appends an event about a user, done by an operator or the application, outcome `ok`.
pub(crate) fn user_event(
    tx: &WriteTx<'_>,
    at: Timestamp,
    action: &str,
    user: u64,
    detail: String,
) -> Result<()> {
    record(
        tx,
        at,
        Event {
            action,
            subject_user: Some(user),
            subject: format!("user {user}"),
            outcome: "ok",
            detail,
            ..Event::default()
        },
    )
}

/// Reading the audit log.
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
}
