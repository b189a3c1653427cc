//! `Authorization: Bearer` with redkeep's own credentials: `rks_` session tokens and `rkk_` API
//! keys. The extractor gives the handler who is calling and what they may do; a missing or bad
//! token is 401, and [`Caller::require`] turns a missing permission into 403.

use std::collections::BTreeSet;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::error::WebError;
use crate::asynch::AsyncRedkeep;
use crate::auth::api_keys::{API_KEY_PREFIX, ApiKey, KeyOwner};
use crate::auth::orgs::Org;
use crate::auth::roles::ALL_PERMISSIONS;
use crate::auth::sessions::{SESSION_PREFIX, Session};
use crate::auth::users::User;
use crate::error::{Error, Result};
use crate::handle::Redkeep;

/// Who presented the token.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A user, with a login session token.
    Session {
        /// The user.
        user: User,
        /// Their session.
        session: Session,
    },
    /// A user's API key.
    UserKey {
        /// The key's owner.
        user: User,
        /// The key.
        key: ApiKey,
    },
    /// An organization's API key.
    OrgKey {
        /// The key's org.
        org: Org,
        /// The key.
        key: ApiKey,
    },
}

/// An authenticated caller and what they may do: a user's permissions come from their roles;
/// a user's API key never grants more than its owner has, and only its scopes when it has
/// any; an org's API key grants its scopes, and never more than the member who made it
/// (`created_by`) holds at the time of the request. `*` grants everything.
///
/// A user who must change their password (a generated or adopted one, or one an operator
/// set) holds no permission until they do, through a session token and through their API
/// keys alike: [`Caller::allows`] is false for every permission, [`Caller::permissions`] is
/// empty and [`Caller::require`] answers 403 saying to change the password first. The
/// application tests [`Caller::must_change_password`] to send the user to its password
/// change, the one thing such a caller may do.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who it is.
    pub principal: Principal,
    granted: BTreeSet<String>,
    scopes: Option<BTreeSet<String>>,
}

/// Whether `set` grants `permission`, directly or through `*`.
pub(super) fn grants(set: &BTreeSet<String>, permission: &str) -> bool {
    set.contains(ALL_PERMISSIONS) || set.contains(permission)
}

impl Caller {
    /// Resolves a bearer token (`rks_…` or `rkk_…`).
    ///
    /// # Errors
    /// `InvalidCredential` for an unknown, expired or revoked token, or one of another kind.
    pub async fn from_token(ark: &AsyncRedkeep, token: &str) -> Result<Caller> {
        let token = token.trim().to_string();
        if token.starts_with(&format!("{SESSION_PREFIX}_")) {
            // The session, its user and what the user may do, in one trip to the pool; the
            // user and the permissions in one snapshot, refused when the user was disabled
            // or deleted after the session was checked.
            return ark
                .run(move |rk| {
                    let (_, session) = rk.sessions().validate(&token)?;
                    session_caller(rk, session)
                })
                .await;
        }
        if token.starts_with(&format!("{API_KEY_PREFIX}_")) {
            // The key, its owner and what the owner may do, in one trip to the pool.
            return ark
                .run(move |rk| {
                    let key = rk.api_keys().verify(&token)?;
                    key_caller(rk, key)
                })
                .await;
        }
        Err(Error::InvalidCredential {
            what: "bearer token",
        })
    }

    /// The user behind the token, if it is a user's.
    pub fn user(&self) -> Option<&User> {
        match &self.principal {
            Principal::Session { user, .. } | Principal::UserKey { user, .. } => Some(user),
            Principal::OrgKey { .. } => None,
        }
    }

    /// Whether the caller is a user (by session or API key) who must change their password
    /// before anything else: such a caller holds no permission until they do.
    pub fn must_change_password(&self) -> bool {
        self.user().is_some_and(|u| u.must_change_password)
    }

    /// Whether the caller may do `permission` (never, while [`Caller::must_change_password`]).
    pub fn allows(&self, permission: &str) -> bool {
        grants(&self.granted, permission)
            && self.scopes.as_ref().is_none_or(|s| grants(s, permission))
    }

    /// The permissions the caller has (`*` stands for all); none while
    /// [`Caller::must_change_password`].
    pub fn permissions(&self) -> BTreeSet<String> {
        match &self.scopes {
            None => self.granted.clone(),
            Some(scopes) => {
                if self.granted.contains(ALL_PERMISSIONS) {
                    scopes.clone()
                } else {
                    self.granted
                        .iter()
                        .filter(|p| grants(scopes, p))
                        .cloned()
                        .collect()
                }
            }
        }
    }

    /// Refuses with 403 unless the caller may do one of `permissions`.
    ///
    /// # Errors
    /// A 403 [`WebError`] naming the permissions needed, or saying to change the password
    /// first while [`Caller::must_change_password`].
    pub fn require(&self, permissions: &[&str]) -> std::result::Result<(), WebError> {
        if permissions.iter().any(|p| self.allows(p)) {
            return Ok(());
        }
        if self.must_change_password() {
            return Err(WebError::forbidden(
                "this account must change its password first: it holds no permission until \
                 it sets a new one",
            ));
        }
        Err(WebError::forbidden(format!(
            "this needs the {} permission",
            permissions.join(" or ")
        )))
    }
}

/// The caller of an API key `verify` accepted: an owner disabled or deleted since (the key is
/// checked in a transaction of its own) makes the key invalid, and the owner's record and
/// permissions are read in one snapshot, so that a user key's caller never carries a
/// disabled user.
fn key_caller(rk: &Redkeep, key: ApiKey) -> Result<Caller> {
    let invalid = || Error::InvalidCredential { what: "API key" };
    let scopes: BTreeSet<String> = key.scopes.iter().cloned().collect();
    match key.owner {
        KeyOwner::User(id) => {
            let (user, granted) = rk.roles().of_active_user(id)?.ok_or_else(invalid)?;
            let granted = held_back(&user, granted);
            Ok(Caller {
                principal: Principal::UserKey { user, key },
                granted,
                scopes: (!scopes.is_empty()).then_some(scopes),
            })
        }
        KeyOwner::Org(id) => {
            let org = rk.orgs().get(id)?.ok_or_else(invalid)?;
            // A key a member made grants no more than they hold now (a role taken from
            // them since takes it from the key too); one whose maker was disabled since
            // `verify` opens nothing. A maker deleted took their keys with them (revoked);
            // a key with no maker recorded is an operator's, and grants its scopes.
            let maker = match key.created_by {
                None => None,
                Some(by) => match rk.roles().of_active_user(by)? {
                    Some((maker, held)) => Some(held_back(&maker, held)),
                    None if rk.users().get(by)?.is_some() => return Err(invalid()),
                    None => None,
                },
            };
            let principal = Principal::OrgKey { org, key };
            Ok(match maker {
                Some(held) => Caller {
                    principal,
                    granted: held,
                    scopes: Some(scopes),
                },
                None => Caller {
                    principal,
                    granted: scopes,
                    scopes: None,
                },
            })
        }
    }
}

/// The caller of a session checked a moment ago: its user and the user's permissions in
/// one snapshot, refused (401) when the user was disabled or deleted in between.
fn session_caller(rk: &Redkeep, session: Session) -> Result<Caller> {
    let (user, granted) =
        rk.roles()
            .of_active_user(session.user_id)?
            .ok_or(Error::InvalidCredential {
                what: "session token",
            })?;
    let granted = held_back(&user, granted);
    Ok(Caller {
        principal: Principal::Session { user, session },
        granted,
        scopes: None,
    })
}

/// What `user` may do through any credential: nothing while they must change their password
/// (whoever set it, an operator, `init` or an adoption, may know it), else `granted`.
pub(super) fn held_back(user: &User, granted: BTreeSet<String>) -> BTreeSet<String> {
    if user.must_change_password {
        BTreeSet::new()
    } else {
        granted
    }
}

/// The token of an `Authorization: Bearer …` header (the scheme in any case, the token
/// trimmed of spaces), if the request has one: what a logout handler ends, and what
/// [`Caller`] resolves. `None` without the header, for another scheme, or for a value that
/// is not visible ASCII.
///
/// ```
/// use axum::http::{HeaderMap, HeaderValue, header};
/// let mut headers = HeaderMap::new();
/// assert_eq!(redkeep::web::bearer_token(&headers), None);
/// headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer rks_abc"));
/// assert_eq!(redkeep::web::bearer_token(&headers), Some("rks_abc"));
/// ```
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    AsyncRedkeep: FromRef<S>,
{
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WebError> {
        let Some(token) = bearer_token(&parts.headers) else {
            return Err(WebError::unauthorized(
                "send `Authorization: Bearer` with a session token or an API key",
            ));
        };
        let ark = AsyncRedkeep::from_ref(state);
        Caller::from_token(&ark, token)
            .await
            .map_err(WebError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user disabled after their key was verified (another request, between the two
    /// reads): the key's caller is refused, and never carries the disabled user.
    #[test]
    fn a_key_whose_owner_was_disabled_after_its_check_opens_nothing() {
        use crate::auth::api_keys::ApiKeySpec;
        let tmp = tempfile::tempdir().unwrap();
        let options = crate::Options::default().password(crate::PasswordParams::INSECURE_FAST);
        let rk = Redkeep::open(tmp.path(), options).unwrap();
        let owner = |email: &str| crate::NewUser {
            email: email.into(),
            ..crate::NewUser::default()
        };
        // Another user, so that disabling this one leaves an active administrator.
        rk.users().create(owner("root@example.com")).unwrap();
        let id = rk.users().create(owner("fay@example.com")).unwrap().user.id;
        let created = rk
            .api_keys()
            .create(ApiKeySpec {
                owner: KeyOwner::User(id),
                scopes: Vec::new(),
                expires_in: None,
                created_by: None,
            })
            .unwrap();
        let key = rk.api_keys().verify(created.key.expose()).unwrap();
        assert!(key_caller(&rk, key.clone()).is_ok());
        rk.users().disable(id).unwrap();
        let refused = key_caller(&rk, key).map(|c| c.principal);
        assert!(
            matches!(refused, Err(Error::InvalidCredential { what: "API key" })),
            "{refused:?}"
        );
    }

    /// A user disabled or deleted after their session token was checked (another request,
    /// between the two reads): 401 for the token, never a caller carrying the user, nor a
    /// 404 naming the user's id.
    #[test]
    fn a_session_whose_user_was_disabled_or_deleted_after_its_check_opens_nothing() {
        const PW: &str = "a password long enough";
        let tmp = tempfile::tempdir().unwrap();
        let options = crate::Options::default().password(crate::PasswordParams::INSECURE_FAST);
        let rk = Redkeep::open(tmp.path(), options).unwrap();
        let user = |email: &str| crate::NewUser {
            email: email.into(),
            password: Some(PW.into()),
            ..crate::NewUser::default()
        };
        rk.users().create(user("root@example.com")).unwrap();
        let id = rk.users().create(user("fay@example.com")).unwrap().user.id;
        let checked = || {
            let login = rk
                .sessions()
                .login(
                    "fay@example.com",
                    PW,
                    crate::auth::sessions::LoginMeta::default(),
                )
                .unwrap();
            rk.sessions().validate(login.token.expose()).unwrap().1
        };
        let session = checked();
        assert!(session_caller(&rk, session.clone()).is_ok());
        rk.users().disable(id).unwrap();
        let refused = session_caller(&rk, session).map(|c| c.principal);
        assert!(
            matches!(
                refused,
                Err(Error::InvalidCredential {
                    what: "session token"
                })
            ),
            "{refused:?}"
        );
        rk.users().enable(id).unwrap();
        let session = checked();
        rk.users().delete(id).unwrap();
        let gone = session_caller(&rk, session)
            .map(|c| c.principal)
            .unwrap_err();
        let web = WebError::from(gone);
        assert_eq!(web.status, axum::http::StatusCode::UNAUTHORIZED);
        assert_eq!(web.message, "session token is not valid");
    }

    /// A user who must change their password (here the first administrator, with a
    /// generated one) holds no permission through a session token nor through an API key
    /// until they change it; then they hold their roles' again.
    #[test]
    fn a_user_who_must_change_their_password_holds_nothing_until_they_do() {
        use crate::auth::api_keys::ApiKeySpec;
        use crate::auth::sessions::LoginMeta;
        let tmp = tempfile::tempdir().unwrap();
        let options = crate::Options::default().password(crate::PasswordParams::INSECURE_FAST);
        let rk = Redkeep::open(tmp.path(), options).unwrap();
        let created = rk
            .users()
            .create(crate::NewUser {
                email: "root@example.com".into(),
                is_admin: true,
                ..crate::NewUser::default()
            })
            .unwrap();
        let (id, generated) = (created.user.id, created.password.unwrap());
        assert!(created.user.must_change_password);
        let key = rk
            .api_keys()
            .create(ApiKeySpec {
                owner: KeyOwner::User(id),
                scopes: Vec::new(),
                expires_in: None,
                created_by: None,
            })
            .unwrap();
        let callers = |password: &str| {
            let login = rk
                .sessions()
                .login("root@example.com", password, LoginMeta::default())
                .unwrap();
            let (_, session) = rk.sessions().validate(login.token.expose()).unwrap();
            let by_key = rk.api_keys().verify(key.key.expose()).unwrap();
            [
                session_caller(&rk, session).unwrap(),
                key_caller(&rk, by_key).unwrap(),
            ]
        };
        for caller in callers(generated.expose()) {
            assert!(caller.must_change_password(), "{:?}", caller.principal);
            assert!(!caller.allows("user_management"));
            assert!(!caller.allows(ALL_PERMISSIONS));
            assert!(
                caller.permissions().is_empty(),
                "{:?}",
                caller.permissions()
            );
            let refused = caller.require(&["user_management"]).unwrap_err();
            assert_eq!(refused.status, axum::http::StatusCode::FORBIDDEN);
            assert!(
                refused.message.contains("must change its password first"),
                "{}",
                refused.message
            );
        }
        const NEW: &str = "a password of my own";
        rk.users()
            .change_password_of(id, generated.expose(), NEW)
            .unwrap();
        for caller in callers(NEW) {
            assert!(!caller.must_change_password());
            assert!(caller.allows("user_management"), "{:?}", caller.principal);
            assert!(caller.permissions().contains(ALL_PERMISSIONS));
        }
    }
}
