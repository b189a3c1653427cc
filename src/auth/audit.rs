//! The append-only audit log of security events, written in the same transaction as the
//! change it records. Passwords, tokens and codes never appear in it.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::Result;
use crate::store::{Index, KeyRange, Order, Record, WriteTx};
use crate::{Redkeep, key};

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

impl Record for AuditEvent {
    const TABLE: &'static str = "audit";
    type Key = u64;
    const INDEXES: &'static [Index<Self>] = &[Index::many("by_subject_user", |e| {
        e.subject_user.map(|u| key!(u))
    })];
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

impl Redkeep {
    /// Appends an event inside `tx`.
    pub(crate) fn audit(&self, tx: &WriteTx, e: Event<'_>) -> Result<()> {
        let t = tx.table::<AuditEvent>();
        let seq = t.next_id()?;
        t.insert(&AuditEvent {
            seq,
            at: self.now(),
            actor: e.actor,
            action: e.action.to_string(),
            subject_user: e.subject_user,
            subject: e.subject,
            outcome: e.outcome.to_string(),
            detail: e.detail,
        })
    }

    /// Appends an event about a user, done by an operator, with outcome `ok`.
    pub(crate) fn audit_user(
        &self,
        tx: &WriteTx,
        action: &str,
        user: u64,
        detail: String,
    ) -> Result<()> {
        self.audit(
            tx,
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

    /// The audit log.
    pub fn audit_log(&self) -> AuditLog<'_> {
        AuditLog { rk: self }
    }
}

/// Reading the audit log.
#[derive(Debug, Clone, Copy)]
pub struct AuditLog<'a> {
    rk: &'a Redkeep,
}

impl AuditLog<'_> {
    /// Events, newest first, optionally only those about `user`, at most `limit`.
    pub fn list(&self, user: Option<u64>, limit: Option<usize>) -> Result<Vec<AuditEvent>> {
        self.rk.store().read(|tx| {
            let t = tx.table::<AuditEvent>();
            match user {
                Some(u) => t.scan_by(
                    "by_subject_user",
                    KeyRange::prefix(key!(u)),
                    Order::Desc,
                    limit,
                ),
                None => t.scan(KeyRange::all(), Order::Desc, limit),
            }
        })
    }
}
