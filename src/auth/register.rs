//! Flows that span tables, each in one write transaction: create and register users, check
//! passwords, change them, disable and enable accounts.

use super::users::{CreatedUser, NewUser, User, normalize_email};
use crate::error::{Error, Result};
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
    /// Creates a user, consuming `spec.invite` if given, in one write transaction.
    pub(crate) fn create_user(&self, spec: NewUser) -> Result<CreatedUser> {
        let prepared = self.prepare_user(&spec)?;
        let user = self.store().write(|tx| {
            let user = self.insert_user(tx, prepared.user)?;
            if let Some(code) = &spec.invite {
                self.consume_invite(tx, code, user.id)?;
            }
            // Last, so a failure here aborts the user; an aborted transaction leaves at most an
            // empty folder, which the next user with this id adopts.
            self.workspaces().create(user.id)?;
            Ok(user)
        })?;
        Ok(CreatedUser {
            user,
            password: prepared.generated,
        })
    }

    /// Registers a user with an invite code: the invite is consumed and the user created in
    /// one transaction, so a single-use code registers exactly one user.
    ///
    /// # Errors
    /// `InvalidInput` (bad email or password, or no invite when one is required),
    /// `InvalidCredential` (unknown code), `Expired`, `Refused` (revoked or used up),
    /// `Conflict` (email or username taken).
    pub fn register(&self, reg: Registration) -> Result<User> {
        if reg.invite.is_none() && !self.options().open_registration {
            return Err(Error::invalid(
                "invite",
                "registration needs an invite code",
            ));
        }
        let created = self.create_user(NewUser {
            email: reg.email,
            name: reg.name,
            username: reg.username,
            password: Some(reg.password),
            is_admin: false,
            invite: reg.invite,
        })?;
        Ok(created.user)
    }

    /// Checks an email and password. Unknown email, wrong password and disabled account all
    /// give the same `Unauthorized`, after the same hashing work.
    ///
    /// On success the failure count is reset, `last_login_at` set, and the hash upgraded if
    /// the configured parameters changed.
    pub fn authenticate(&self, email: &str, password: &str) -> Result<User> {
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
        let ok = self.passwords().verify(password, &user.password_hash);
        let rehash = if ok && self.passwords().needs_rehash(&user.password_hash) {
            Some(self.passwords().hash(password)?)
        } else {
            None
        };
        let now = self.now();
        let id = user.id;
        let outcome = self.store().write(|tx| {
            tx.table::<User>().modify(&id, |u| {
                if !ok || !u.is_active {
                    if !ok {
                        u.failed_logins = u.failed_logins.saturating_add(1);
                    }
                    return Ok(None);
                }
                u.failed_logins = 0;
                u.last_login_at = Some(now);
                if let Some(h) = &rehash {
                    u.password_hash = h.clone();
                }
                Ok(Some(u.clone()))
            })
        })?;
        outcome.ok_or(Error::Unauthorized)
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

    /// Sets a new password and clears `must_change_password`.
    pub fn set_password(&self, id: u64, password: &str) -> Result<User> {
        let hash = self.passwords().hash(password)?;
        let now = self.now();
        self.store().write(|tx| {
            tx.table::<User>().modify(&id, |u| {
                u.password_hash = hash;
                u.must_change_password = false;
                u.failed_logins = 0;
                u.locked_until = None;
                u.updated_at = now;
                Ok(u.clone())
            })
        })
    }

    /// Deletes a user and everything that belongs to them in one transaction, then moves
    /// their workspace folder to the trash (never deleting files). Returns the trash path.
    pub fn delete_user(&self, id: u64) -> Result<Option<std::path::PathBuf>> {
        self.store().write(|tx| {
            if tx.table::<User>().delete(&id)?.is_none() {
                return Err(Error::not_found(format!("user {id}")));
            }
            tx.table::<crate::auth::users::Avatar>().delete(&id)?;
            Ok(())
        })?;
        if self.workspaces().exists(id) {
            Ok(Some(self.workspaces().remove(id, self.now())?))
        } else {
            Ok(None)
        }
    }

    /// Disables an account: it can no longer log in.
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
            tx.table::<User>().modify(&id, |u| {
                u.is_active = active;
                u.updated_at = now;
                Ok(u.clone())
            })
        })
    }
}
