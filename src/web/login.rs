//! An axum-login backend on redkeep: users log in with an email or username and a password
//! under redkeep's lockout rules, permissions come from their roles, and a cookie session
//! ends when the password changes, every session of the user is revoked, or the account is
//! disabled — but not when redkeep merely rehashes the password with new parameters.

use std::collections::HashSet;
use std::fmt;

use axum_login::{AuthUser, AuthnBackend, AuthzBackend};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::asynch::AsyncRedkeep;
use crate::auth::users::{Credential, User};
use crate::error::{Error, Result};

/// A redkeep user as axum-login sees it.
#[derive(Clone)]
pub struct WebUser {
    /// The account.
    pub user: User,
    auth_hash: [u8; 32],
}

impl fmt::Debug for WebUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebUser")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl AuthUser for WebUser {
    type Id = u64;

    fn id(&self) -> u64 {
        self.user.id
    }

    /// A digest of the credential's stamp, which changes with the password, when every
    /// session is revoked and when the account is disabled; never the password hash.
    fn session_auth_hash(&self) -> &[u8] {
        &self.auth_hash
    }
}

/// What a login form sends: an email or username, and the password.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    /// Email or username.
    pub login: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The axum-login backend (`AuthnBackend` + `AuthzBackend`) on a redkeep store.
#[derive(Debug, Clone)]
pub struct Backend {
    ark: AsyncRedkeep,
}

impl Backend {
    /// A backend on this store.
    pub fn new(ark: AsyncRedkeep) -> Backend {
        Backend { ark }
    }

    /// The axum-login user of an active account, with its current stamp; `None` for a missing
    /// or disabled account.
    ///
    /// # Errors
    /// `Storage` when the engine fails; `Cancelled`.
    pub async fn web_user(&self, id: u64) -> Result<Option<WebUser>> {
        self.ark
            .read(move |tx| {
                let Some(user) = tx.table::<User>().get(&id)?.filter(|u| u.is_active) else {
                    return Ok(None);
                };
                let Some(cred) = tx.table::<Credential>().get(&id)? else {
                    return Ok(None);
                };
                let mut h = Sha256::new();
                h.update(b"redkeep web session\0");
                h.update(id.to_be_bytes());
                h.update(cred.stamp);
                Ok(Some(WebUser {
                    user,
                    auth_hash: h.finalize().into(),
                }))
            })
            .await
    }
}

impl AuthnBackend for Backend {
    type User = WebUser;
    type Credentials = Credentials;
    type Error = Error;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<WebUser>> {
        match self
            .ark
            .users()
            .authenticate(creds.login, creds.password)
            .await
        {
            Ok(user) => self.web_user(user.id).await,
            Err(Error::Unauthorized) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_user(&self, id: &u64) -> Result<Option<WebUser>> {
        self.web_user(*id).await
    }
}

impl AuthzBackend for Backend {
    type Permission = String;

    async fn get_user_permissions(&self, user: &WebUser) -> Result<HashSet<String>> {
        Ok(self
            .ark
            .roles()
            .permissions(user.user.id)
            .await?
            .into_iter()
            .collect())
    }

    /// Uses redkeep's rule, in which `*` grants every permission.
    async fn has_perm(&self, user: &WebUser, perm: String) -> Result<bool> {
        self.ark.roles().has_permission(user.user.id, perm).await
    }
}
