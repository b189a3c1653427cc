//! Agent sessions: persisted state of an agent run (goal, current step, progress, failures,
//! artifacts, context, escalation) that survives a browser reload, keyed by the caller's
//! session id and owned by a user.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::users::User;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Index, KeyRange, Order, Record};
use crate::{Redkeep, key};

/// Largest `context` or `escalation` JSON text, in bytes.
pub const MAX_AGENT_JSON_BYTES: usize = 256 * 1024;
const MAX_LIST_ITEMS: usize = 10_000;
const MAX_TEXT: usize = 4096;

/// A persisted agent session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSession {
    /// The caller's session id (1 to 128 printable ASCII characters).
    pub id: String,
    /// The owner.
    pub user_id: u64,
    /// Display name.
    pub name: String,
    /// The agent's state: goal, status, step, progress, failures, artifacts, context,
    /// escalation.
    pub state: AgentState,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Removed by `sweep` after this time.
    pub expires_at: Option<Timestamp>,
}

impl Record for AgentSession {
    const TABLE: &'static str = "agent_sessions";
    type Key = String;
    const INDEXES: &'static [Index<Self>] = &[
        Index::many("by_user", |a| Some(key!(a.user_id, a.updated_at.0))),
        Index::many("by_updated", |a| Some(key!(a.updated_at.0))),
    ];
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// What agent session to create.
#[derive(Debug, Clone, Default)]
pub struct AgentSpec {
    /// The caller's session id.
    pub id: String,
    /// The owner.
    pub user_id: u64,
    /// Display name.
    pub name: String,
    /// The goal.
    pub goal: String,
    /// Lifetime; `None` keeps it until deleted.
    pub ttl: Option<Duration>,
}

/// The state of an agent session; what an update may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// Status.
    pub status: String,
    /// Current step.
    pub current_step: Option<String>,
    /// Progress.
    pub progress: Vec<String>,
    /// Failures.
    pub failures: Vec<String>,
    /// Artifacts.
    pub artifacts: Vec<String>,
    /// Context (JSON text).
    pub context: String,
    /// Escalation (JSON text).
    pub escalation: Option<String>,
    /// Goal.
    pub goal: String,
}

fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "agent session id",
            "use 1 to 128 printable ASCII characters",
        ));
    }
    Ok(())
}

fn validate_json(field: &'static str, text: &str) -> Result<()> {
    if text.len() > MAX_AGENT_JSON_BYTES {
        return Err(Error::invalid(
            field,
            format!("use at most {MAX_AGENT_JSON_BYTES} bytes"),
        ));
    }
    serde_json::from_str::<serde_json::Value>(text)
        .map(|_| ())
        .map_err(|e| Error::invalid(field, format!("it is not valid JSON ({e})")))
}

fn validate_state(s: &AgentState) -> Result<()> {
    validate_json("context", &s.context)?;
    if let Some(e) = &s.escalation {
        validate_json("escalation", e)?;
    }
    for (field, list) in [
        ("progress", &s.progress),
        ("failures", &s.failures),
        ("artifacts", &s.artifacts),
    ] {
        if list.len() > MAX_LIST_ITEMS || list.iter().any(|x| x.len() > MAX_TEXT) {
            return Err(Error::invalid(
                field,
                format!("use at most {MAX_LIST_ITEMS} entries of at most {MAX_TEXT} bytes"),
            ));
        }
    }
    for (field, text) in [("status", &s.status), ("goal", &s.goal)] {
        if text.len() > MAX_TEXT {
            return Err(Error::invalid(
                field,
                format!("use at most {MAX_TEXT} bytes"),
            ));
        }
    }
    Ok(())
}

impl Redkeep {
    /// The agent session repository.
    pub fn agents(&self) -> Agents<'_> {
        Agents { rk: self }
    }
}

/// Operations on agent sessions.
#[derive(Debug, Clone, Copy)]
pub struct Agents<'a> {
    rk: &'a Redkeep,
}

impl Agents<'_> {
    /// Creates an agent session with status `active` and an empty state.
    ///
    /// # Errors
    /// `InvalidInput` for a bad id; `NotFound` for an unknown user; `Conflict` when the id exists.
    pub fn create(&self, spec: AgentSpec) -> Result<AgentSession> {
        validate_id(&spec.id)?;
        let now = self.rk.now();
        let a = AgentSession {
            id: spec.id,
            user_id: spec.user_id,
            name: spec.name,
            state: AgentState {
                goal: spec.goal,
                status: "active".into(),
                current_step: None,
                progress: Vec::new(),
                failures: Vec::new(),
                artifacts: Vec::new(),
                context: "{}".into(),
                escalation: None,
            },
            created_at: now,
            updated_at: now,
            expires_at: spec.ttl.map(|d| now.plus(d)),
        };
        validate_state(&a.state)?;
        if a.name.len() > MAX_TEXT {
            return Err(Error::invalid(
                "name",
                format!("use at most {MAX_TEXT} bytes"),
            ));
        }
        self.rk.store().write(|tx| {
            if tx.table::<User>().get(&a.user_id)?.is_none() {
                return Err(Error::not_found(format!("user {}", a.user_id)));
            }
            tx.table::<AgentSession>().insert(&a)?;
            Ok(a)
        })
    }

    /// The agent session with this id, unless expired.
    pub fn get(&self, id: &str) -> Result<Option<AgentSession>> {
        let now = self.rk.now();
        let a = self
            .rk
            .store()
            .read(|tx| tx.table::<AgentSession>().get(&id.to_string()))?;
        Ok(a.filter(|a| a.expires_at.is_none_or(|e| now < e)))
    }

    /// A user's agent sessions, most recently updated first.
    pub fn list_by_user(&self, user: u64) -> Result<Vec<AgentSession>> {
        self.rk.store().read(|tx| {
            tx.table::<AgentSession>().scan_by(
                "by_user",
                KeyRange::prefix(key!(user)),
                Order::Desc,
                None,
            )
        })
    }

    /// Every agent session, most recently updated first.
    pub fn list(&self) -> Result<Vec<AgentSession>> {
        self.rk.store().read(|tx| {
            tx.table::<AgentSession>()
                .scan_by("by_updated", KeyRange::all(), Order::Desc, None)
        })
    }

    /// Changes the state in one read-modify-write transaction; `f` sees the current state.
    ///
    /// # Errors
    /// `NotFound` for an unknown or expired id; `InvalidInput` when the new state is invalid
    /// (nothing written); `f`'s error.
    pub fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut AgentState) -> Result<()>,
    ) -> Result<AgentSession> {
        let now = self.rk.now();
        self.rk.store().write(|tx| {
            tx.table::<AgentSession>().modify(&id.to_string(), |a| {
                if a.expires_at.is_some_and(|e| now >= e) {
                    return Err(Error::not_found(format!("agent session {id}")));
                }
                let mut state = a.state.clone();
                f(&mut state)?;
                validate_state(&state)?;
                a.state = state;
                a.updated_at = now;
                Ok(a.clone())
            })
        })
    }

    /// Deletes one agent session; returns whether it existed.
    pub fn delete(&self, id: &str) -> Result<bool> {
        Ok(self
            .rk
            .store()
            .write(|tx| tx.table::<AgentSession>().delete(&id.to_string()))?
            .is_some())
    }

    /// Deletes every expired agent session; returns how many.
    pub fn sweep(&self) -> Result<usize> {
        let now = self.rk.now();
        self.rk.store().write(|tx| {
            let t = tx.table::<AgentSession>();
            let mut n = 0;
            for a in t.all()? {
                if a.expires_at.is_some_and(|e| now >= e) {
                    t.delete(&a.id)?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}
