//! Agent sessions: persisted state of an agent run (goal, current step, progress, failures,
//! artifacts, context, escalation) that survives a browser reload, keyed by the caller's
//! session id and owned by a user.
//!
//! The id is a name, not a secret: it is stored as given and shown by `redkeep agent list`,
//! so never use a login session's token (or anything else that grants access) as the id.
//! A request made on a user's behalf reaches their agent sessions through the `_of` methods
//! ([`Agents::get_of`], [`Agents::update_of`], [`Agents::delete_of`]), which treat another
//! user's session as absent; the others are for operators and the application's own jobs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Accounts;
use super::users::User;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{Index, KeyRange, Order, Record, Source, Table};

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

impl AgentSession {
    /// Sessions of a user, by last change.
    pub const BY_USER: Index<AgentSession> =
        Index::many("by_user", |a| Some(key!(a.user_id, a.updated_at.0)));
    /// By last change.
    pub const BY_UPDATED: Index<AgentSession> =
        Index::many("by_updated", |a| Some(key!(a.updated_at.0)));
}

impl Record for AgentSession {
    const TABLE: &'static str = "agent_sessions";
    type Key = String;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_USER, &Self::BY_UPDATED];
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
    /// Lifetime (1 s to 100 years); `None` keeps it until deleted.
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

pub(crate) fn validate_id(id: &str) -> Result<()> {
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

pub(crate) fn validate_state(s: &AgentState) -> Result<()> {
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

/// Refuses control, line-separator and direction-changing characters in the fields shown on
/// one line (the name, the goal, the status, the current step), as user, org and role names
/// refuse them.
/// Only what `before` (the stored state, on an update) does not hold already is checked, so
/// a session stored by an earlier release can still be updated.
fn validate_one_line(
    name: Option<&str>,
    state: &AgentState,
    before: Option<&AgentState>,
) -> Result<()> {
    let fields = [
        ("name", name, None),
        (
            "goal",
            Some(state.goal.as_str()),
            before.map(|b| b.goal.as_str()),
        ),
        (
            "status",
            Some(state.status.as_str()),
            before.map(|b| b.status.as_str()),
        ),
        (
            "current_step",
            state.current_step.as_deref(),
            before.and_then(|b| b.current_step.as_deref()),
        ),
    ];
    for (field, text, was) in fields {
        if let Some(text) = text
            && Some(text) != was
            && text
                .chars()
                .any(|c| super::users::unshowable(c) || matches!(c, '\u{2028}' | '\u{2029}'))
        {
            return Err(Error::invalid(
                field,
                "it holds a control, line-separator or direction-changing character; these fields are shown on one line",
            ));
        }
    }
    Ok(())
}

/// Whether the user owning an agent session is active (a disabled user's are paused).
fn owner_active(tx: &dyn Source, user: u64) -> Result<bool> {
    Ok(Table::<User, dyn Source>::new(tx)
        .get(&user)?
        .is_some_and(|u| u.is_active))
}

/// Operations on agent sessions.
#[derive(Debug, Clone, Copy)]
pub struct Agents<'a> {
    pub(crate) acc: &'a Accounts,
}

impl Agents<'_> {
    /// Creates an agent session with status `active` and an empty state.
    ///
    /// # Errors
    /// `InvalidInput` for a bad id, or a name or goal holding a control, line-separator or
    /// direction-changing character; `NotFound` for an unknown user; `Denied` for a disabled
    /// one; `Conflict` when the id exists.
    pub fn create(&self, spec: AgentSpec) -> Result<AgentSession> {
        validate_id(&spec.id)?;
        let ttl = spec
            .ttl
            .map(|d| crate::clock::lifetime("ttl", d))
            .transpose()?;
        let now = self.acc.now();
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
            expires_at: ttl.map(|d| now.plus(d)),
        };
        validate_state(&a.state)?;
        validate_one_line(Some(&a.name), &a.state, None)?;
        if a.name.len() > MAX_TEXT {
            return Err(Error::invalid(
                "name",
                format!("use at most {MAX_TEXT} bytes"),
            ));
        }
        self.acc.store.write(|tx| {
            match tx.table::<User>().get(&a.user_id)? {
                None => return Err(Error::not_found(format!("user {}", a.user_id))),
                Some(u) if !u.is_active => {
                    // Its agent would be paused from the start (see `get`).
                    return Err(Error::denied(format!(
                        "user {} is disabled; enable them first (`redkeep user enable {}`), \
                         then start the agent",
                        a.user_id, a.user_id
                    )));
                }
                Some(_) => {}
            }
            tx.table::<AgentSession>().insert(&a).map_err(|e| match e {
                Error::Conflict { table, index, .. } => {
                    // One that expired reads as absent everywhere else, until a sweep.
                    let expired = tx
                        .table::<AgentSession>()
                        .get(&a.id)
                        .ok()
                        .flatten()
                        .and_then(|old| old.expires_at.filter(|&e| now >= e))
                        .map_or(String::new(), |e| {
                            format!(
                                ": it expired at {e} and waits for a sweep, which frees the id \
                                 (`redkeep agent sweep`, or `redkeep agent delete {}`)",
                                a.id
                            )
                        });
                    Error::Conflict {
                        table,
                        index,
                        detail: format!("an agent session with id {} exists{expired}", a.id),
                    }
                }
                e => e,
            })?;
            Ok(a.clone())
        })
    }

    /// The agent session with this id, unless expired or its user is disabled. A disabled
    /// user's agent sessions are paused, not deleted: absent for [`Agents::get`] and
    /// [`Agents::update`] (so an agent run on their behalf stops), listed by [`Agents::list`]
    /// (the operators' view), and back, state and all, once the user is enabled again.
    ///
    /// # Errors
    /// `InvalidInput` for an id that no agent session can have (1 to 128 printable ASCII
    /// characters); `Corrupt` when it cannot be read.
    pub fn get(&self, id: &str) -> Result<Option<AgentSession>> {
        validate_id(id)?;
        let now = self.acc.now();
        self.acc.read(|tx| {
            let Some(a) = tx.table::<AgentSession>().get(&id.to_string())? else {
                return Ok(None);
            };
            let live = a.expires_at.is_none_or(|e| now < e) && owner_active(tx, a.user_id)?;
            Ok(live.then_some(a))
        })
    }

    /// [`Agents::get`] on behalf of `user`: another user's agent session is `None`, as an
    /// absent one is, so a request cannot read it or learn that it exists.
    ///
    /// # Errors
    /// As [`Agents::get`].
    pub fn get_of(&self, user: u64, id: &str) -> Result<Option<AgentSession>> {
        Ok(self.get(id)?.filter(|a| a.user_id == user))
    }

    /// Up to `limit` agent sessions of a user, most recently updated first. Expired ones
    /// are left out, as [`Agents::get`] leaves them out (`sweep` removes them); all of a
    /// disabled user's are paused, and listed (see [`Agents::get`]).
    ///
    /// # Errors
    /// `Corrupt` when one cannot be read.
    pub fn list_by_user(&self, user: u64, limit: usize) -> Result<Vec<AgentSession>> {
        self.live(&AgentSession::BY_USER, KeyRange::prefix(key!(user)), limit)
    }

    /// Up to `limit` agent sessions, most recently updated first. Expired ones are left
    /// out, as [`Agents::get`] leaves them out (`sweep` removes them).
    ///
    /// # Errors
    /// `Corrupt` when one cannot be read.
    pub fn list(&self, limit: usize) -> Result<Vec<AgentSession>> {
        self.live(&AgentSession::BY_UPDATED, KeyRange::all(), limit)
    }

    /// Up to `limit` unexpired sessions in `range` of `index`, newest first.
    fn live(
        &self,
        index: &Index<AgentSession>,
        range: KeyRange,
        limit: usize,
    ) -> Result<Vec<AgentSession>> {
        let now = self.acc.now();
        self.acc.read(|tx| {
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            tx.table::<AgentSession>()
                .for_each_by(index, range.clone(), Order::Desc, |a| {
                    if a.expires_at.is_none_or(|e| now < e) {
                        out.push(a);
                    }
                    Ok(out.len() < limit)
                })?;
            Ok(out)
        })
    }

    /// Changes the state in one read-modify-write transaction; `f` sees the current state
    /// (and may run again if the engine retries the transaction).
    ///
    /// # Errors
    /// `NotFound` for an unknown or expired id, or a session of a disabled user (paused: see
    /// [`Agents::get`]); `InvalidInput` for an id no agent session can have, or when the new
    /// state is invalid (nothing written); `f`'s error.
    pub fn update(
        &self,
        id: &str,
        f: impl FnMut(&mut AgentState) -> Result<()> + Send,
    ) -> Result<AgentSession> {
        self.update_owned(None, id, f)
    }

    /// [`Agents::update`] on behalf of `user`: another user's agent session is `NotFound`,
    /// as an absent one is, and `f` does not run.
    ///
    /// # Errors
    /// As [`Agents::update`].
    pub fn update_of(
        &self,
        user: u64,
        id: &str,
        f: impl FnMut(&mut AgentState) -> Result<()> + Send,
    ) -> Result<AgentSession> {
        self.update_owned(Some(user), id, f)
    }

    /// `update`, limited to `owner`'s sessions when given.
    fn update_owned(
        &self,
        owner: Option<u64>,
        id: &str,
        mut f: impl FnMut(&mut AgentState) -> Result<()> + Send,
    ) -> Result<AgentSession> {
        validate_id(id)?;
        let now = self.acc.now();
        let absent = || Error::not_found(format!("agent session {id}"));
        self.acc.store.write(|tx| {
            let t = tx.table::<AgentSession>();
            let Some(current) = t.get(&id.to_string())? else {
                return Err(absent());
            };
            if owner.is_some_and(|u| u != current.user_id) || !owner_active(tx, current.user_id)? {
                return Err(absent());
            }
            t.modify(&id.to_string(), |a| {
                if a.expires_at.is_some_and(|e| now >= e) {
                    return Err(absent());
                }
                let mut state = a.state.clone();
                f(&mut state)?;
                validate_state(&state)?;
                validate_one_line(None, &state, Some(&a.state))?;
                a.state = state;
                a.updated_at = now;
                Ok(a.clone())
            })
        })
    }

    /// Deletes one agent session (a paused one too); returns whether it existed.
    ///
    /// # Errors
    /// `InvalidInput` for an id no agent session can have; `Corrupt` when it cannot be read.
    pub fn delete(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        Ok(self
            .acc
            .store
            .write(|tx| tx.table::<AgentSession>().delete(&id.to_string()))?
            .is_some())
    }

    /// [`Agents::delete`] on behalf of `user`: another user's agent session is left as it is
    /// and reported absent (`false`).
    ///
    /// # Errors
    /// As [`Agents::delete`].
    pub fn delete_of(&self, user: u64, id: &str) -> Result<bool> {
        validate_id(id)?;
        self.acc.store.write(|tx| {
            let t = tx.table::<AgentSession>();
            match t.get(&id.to_string())? {
                Some(a) if a.user_id == user => Ok(t.delete(&id.to_string())?.is_some()),
                _ => Ok(false),
            }
        })
    }

    /// Deletes every expired agent session; returns how many.
    ///
    /// # Errors
    /// `Corrupt` when one cannot be read.
    pub fn sweep(&self) -> Result<usize> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let t = tx.table::<AgentSession>();
            let mut expired = Vec::new();
            t.for_each(KeyRange::all(), Order::Asc, |a| {
                if a.expires_at.is_some_and(|e| now >= e) {
                    expired.push(a.id);
                }
                Ok(true)
            })?;
            for id in &expired {
                t.delete(id)?;
            }
            Ok(expired.len())
        })
    }
}
