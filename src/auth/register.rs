//! Flows that span tables, each in one write transaction: the records of a new user (invite →
//! user → default role → personal org → current org → audit), checking and changing
//! passwords, disabling, enabling, unlocking and deleting accounts. The workspace folders
//! that go with creating and deleting users are added by the handle (`handle.rs`).

use super::agents::AgentSession;
use super::api_keys::KeyOwner;
use super::audit::Event;
use super::roles::{DEFAULT_ROLE, UserRole};
use super::users::{Avatar, User};
use crate::error::{Error, Result};
use crate::store::{KeyRange, Order, WriteTx};
use crate::{Redkeep, key};

/// A self-service registration.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// Email address.
    pub email: String,
    /// Password (8..=1024 bytes).
    pub password: String,
    /// Display name.
    pub name: Option<String>,
    /// Optional username.
    pub username: Option<String>,
    /// The invite code; required unless the options allow open registration.
    pub invite: Option<String>,
}

impl Redkeep {
    /// Inserts a prepared user and the records a user starts with, inside `tx`: the invite's
    /// use, the `user` role (and `admin` for administrators), a personal org as current org,
    /// and the audit event. The workspace folder is the handle's business (`create_user`).
    pub(crate) fn insert_new_user(
        &self,
        tx: &WriteTx,
        user: User,
        invite: Option<&str>,
    ) -> Result<User> {
        let mut user = self.insert_user(tx, user)?;
        if let Some(code) = invite {
            let inv = self.consume_invite(tx, code, user.id)?;
            self.audit(
                tx,
                Event {
                    action: "invite_used",
                    subject_user: Some(user.id),
                    subject: format!("invite {}", inv.prefix),
                    outcome: "ok",
                    ..Event::default()
                },
            )?;
        }
        self.grant_in(tx, user.id, DEFAULT_ROLE, None)?;
        if user.is_admin {
            self.grant_in(tx, user.id, "admin", None)?;
        }
        user.current_org_id = Some(self.create_personal_org(tx, &user)?.id);
        self.audit_user(tx, "user_created", user.id, String::new())?;
        Ok(user)
    }

    /// Checks an email and password under the lockout rules, without creating a session.
    /// Unknown email, wrong password, disabled and locked account all give the same
    /// `Unauthorized`, after the same hashing work. Success resets the failure count, sets
    /// `last_login_at` and upgrades the hash if the parameters changed.
    pub fn authenticate(&self, email: &str, password: &str) -> Result<User> {
        Ok(self.verify_login(email, password, |_, _| Ok(()))?.0)
    }

    /// Checks a password for a user id without recording a login.
    pub fn check_password(&self, id: u64, password: &str) -> Result<()> {
        match self.users().get(id)? {
            Some(u) if u.is_active && self.passwords().verify(password, &u.password_hash) => Ok(()),
            Some(_) => Err(Error::Unauthorized),
            None => {
                self.passwords().burn();
                Err(Error::Unauthorized)
            }
        }
    }

    fn store_password(
        &self,
        tx: &WriteTx,
        id: u64,
        hash: String,
        keep: Option<[u8; 32]>,
    ) -> Result<User> {
        let now = self.now();
        let user = tx.table::<User>().modify(&id, |u| {
            u.password_hash = hash;
            u.must_change_password = false;
            u.failed_logins = 0;
            u.lock_count = 0;
            u.locked_until = None;
            u.updated_at = now;
            Ok(u.clone())
        })?;
        self.revoke_sessions_in(tx, id, keep)?;
        self.audit_user(tx, "password_changed", id, String::new())?;
        Ok(user)
    }

    /// Sets a new password (operator path): clears `must_change_password` and the lockout,
    /// and revokes every session of the user.
    pub fn set_password(&self, id: u64, password: &str) -> Result<User> {
        let hash = self.passwords().hash(password)?;
        self.store()
            .write(|tx| self.store_password(tx, id, hash, None))
    }

    /// Changes the password of the user of a session after checking the current one; every
    /// other session of the user is revoked, this one is kept.
    ///
    /// # Errors
    /// `InvalidCredential` for a bad session; `Unauthorized` for a wrong current password;
    /// `InvalidInput` for a bad new one.
    pub fn change_password(&self, session_token: &str, current: &str, new: &str) -> Result<User> {
        let (user, session) = self.sessions().validate(session_token)?;
        if !self.passwords().verify(current, &user.password_hash) {
            return Err(Error::Unauthorized);
        }
        let hash = self.passwords().hash(new)?;
        self.store()
            .write(|tx| self.store_password(tx, user.id, hash, Some(session.hash)))
    }

    /// Disables an account: no more logins; its sessions are revoked and its API keys stop
    /// verifying at once.
    pub fn disable_user(&self, id: u64) -> Result<User> {
        self.set_active(id, false)
    }

    /// Re-enables a disabled account.
    pub fn enable_user(&self, id: u64) -> Result<User> {
        self.set_active(id, true)
    }

    fn set_active(&self, id: u64, active: bool) -> Result<User> {
        let now = self.now();
        self.store().write(|tx| {
            let user = tx.table::<User>().modify(&id, |u| {
                u.is_active = active;
                u.updated_at = now;
                Ok(u.clone())
            })?;
            if active {
                self.audit_user(tx, "user_enabled", id, String::new())?;
            } else {
                self.revoke_sessions_in(tx, id, None)?;
                self.audit_user(tx, "user_disabled", id, String::new())?;
            }
            Ok(user)
        })
    }

    /// Lifts a lockout and clears the failure counters.
    pub fn unlock_user(&self, id: u64) -> Result<User> {
        let now = self.now();
        self.store().write(|tx| {
            let user = tx.table::<User>().modify(&id, |u| {
                u.failed_logins = 0;
                u.lock_count = 0;
                u.locked_until = None;
                u.failures_in_window = 0;
                u.failure_window_start = None;
                u.updated_at = now;
                Ok(u.clone())
            })?;
            self.audit_user(tx, "user_unlocked", id, String::new())?;
            Ok(user)
        })
    }

    /// Deletes a user and every record that belongs to them inside `tx`: sessions, roles,
    /// memberships and personal org, API keys, agent sessions, avatar; audited.
    ///
    /// # Errors
    /// `NotFound`; `Refused` when the user is the last owner of an org with other members.
    pub(crate) fn delete_user_records(&self, tx: &WriteTx, id: u64) -> Result<()> {
        if tx.table::<User>().get(&id)?.is_none() {
            return Err(Error::not_found(format!("user {id}")));
        }
        self.remove_user_from_orgs(tx, id)?;
        self.revoke_sessions_in(tx, id, None)?;
        let roles = tx.table::<UserRole>();
        for a in roles.scan_by("by_user", KeyRange::prefix(key!(id)), Order::Asc, None)? {
            roles.delete(&(a.user_id, a.role_id))?;
        }
        self.delete_keys_of(tx, KeyOwner::User(id))?;
        let agents = tx.table::<AgentSession>();
        for a in agents.scan_by("by_user", KeyRange::prefix(key!(id)), Order::Asc, None)? {
            agents.delete(&a.id)?;
        }
        tx.table::<Avatar>().delete(&id)?;
        tx.table::<User>().delete(&id)?;
        self.audit_user(tx, "user_deleted", id, String::new())
    }
}
