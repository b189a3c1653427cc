//! An axum-login backend on redkeep: users log in with an email or username and a password
//! under redkeep's lockout rules, permissions come from their roles, and every cookie login
//! is one of redkeep's login sessions. The cookie session names that session (by its short
//! id, never by a secret), so it ends with it: on logout with the session's bearer token,
//! `redkeep session revoke`, its idle or absolute expiry, a password change elsewhere, a
//! revocation of all the user's sessions, or the account being disabled or deleted. It shows
//! in `redkeep session list` with the other logins.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use axum_login::tower_sessions;
use axum_login::{AuthUser, AuthnBackend, AuthzBackend};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::asynch::AsyncRedkeep;
use crate::auth::sessions::{Login, LoginMeta, Session};
use crate::auth::token::Secret;
use crate::auth::users::User;
use crate::error::{Error, Result};
use crate::store::Origin;

/// What a cookie session stores to name its login: the user and the short id of the
/// redkeep session (not a secret: it opens nothing by itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "StoredLoginId")]
pub struct LoginId {
    /// The user's id.
    pub user: u64,
    /// The short id of the user's redkeep session (empty for a cookie made before logins
    /// were sessions, which is signed out).
    pub session: String,
}

impl fmt::Display for LoginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {} (session {})", self.user, self.session)
    }
}

/// A [`LoginId`] as cookie sessions hold it: earlier releases stored the bare user id,
/// which reads as a login that no longer exists.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredLoginId {
    Login { user: u64, session: String },
    UserOnly(u64),
}

impl From<StoredLoginId> for LoginId {
    fn from(stored: StoredLoginId) -> LoginId {
        match stored {
            StoredLoginId::Login { user, session } => LoginId { user, session },
            StoredLoginId::UserOnly(user) => LoginId {
                user,
                session: String::new(),
            },
        }
    }
}

/// A signed-in redkeep user as axum-login sees it: the account and its login session.
///
/// # Security
/// One that `auth.authenticate` (or [`Backend::web_login`]) returns is signed in on a
/// cookie with [`Backend::sign_in_user`] (or [`Backend::sign_in`]), not with axum-login's
/// bare `auth.login(&user)`: until then it is not bound to a cookie, and a cookie a bare
/// `login` signs it in on is signed out (and the login ended) on its next request. A logout
/// is axum-login's `auth.logout()` (with [`RedkeepSessionStore`](super::RedkeepSessionStore),
/// which ends the redkeep login with the cookie session; with another session store, call
/// [`Backend::logout`] too).
#[doc(alias = "login")]
#[derive(Clone)]
pub struct WebUser {
    /// The account.
    pub user: User,
    /// The login's redkeep session (its short id, times and client details; the token is
    /// not kept).
    pub session: Session,
    auth: Bound,
}

/// Whether a [`WebUser`] may sign a cookie in, as the auth hash axum-login keeps in it says.
#[derive(Clone, Copy)]
enum Bound {
    /// A live login as a cookie carries it: the digest of its session, never shown.
    Cookie([u8; 32]),
    /// A login not yet signed in the safe way ([`Backend::sign_in_user`]): its hash
    /// matches no live login's, so a cookie a bare `auth.login` gave it to is signed out.
    NotYet,
    /// A login that ended: its hash matches no cookie's.
    Ended,
}

/// The auth hash of a login not yet bound ([`Bound::NotYet`]): not 32 bytes long, so no
/// live login's digest.
const NOT_BOUND: &[u8] = b"redkeep: sign in with Backend::sign_in_user";

impl WebUser {
    /// The login as a cookie carries it once bound ([`Backend::sign_in_user`], and
    /// [`AuthnBackend::get_user`] for a live one).
    fn new(user: User, session: Session) -> WebUser {
        let mut h = Sha256::new();
        h.update(b"redkeep web login\0");
        h.update(user.id.to_be_bytes());
        h.update(session.hash.0);
        WebUser {
            user,
            session,
            auth: Bound::Cookie(h.finalize().into()),
        }
    }

    /// The login before it is signed in on a cookie: what the application gets to hand to
    /// [`Backend::sign_in_user`].
    fn not_yet_bound(user: User, session: Session) -> WebUser {
        WebUser {
            user,
            session,
            auth: Bound::NotYet,
        }
    }

    /// This login, bound (to sign a cookie in on).
    fn bound(&self) -> WebUser {
        WebUser::new(self.user.clone(), self.session.clone())
    }

    /// A login of `user` that ended (session `short_id` revoked, expired, logged out, or a
    /// cookie from before logins were sessions). Its auth hash matches no cookie, so
    /// axum-login clears the cookie's data, and the next login on it gets a new session id
    /// (axum-login cycles the id only for a cookie without auth data; `None` from
    /// `get_user` would keep that data, and a stale cookie planted in a browser would then
    /// carry its victim's next login).
    fn ended(user: User, short_id: &str) -> WebUser {
        let session = Session {
            hash: crate::auth::token::TokenHash::default(),
            short_id: short_id.to_string(),
            user_id: user.id,
            created_at: crate::clock::Timestamp(0),
            last_seen_at: crate::clock::Timestamp(0),
            expires_at: crate::clock::Timestamp(0),
            idle_timeout_secs: 0,
            ip: None,
            user_agent: None,
        };
        WebUser {
            user,
            session,
            auth: Bound::Ended,
        }
    }
}

/// An account that is no more, known by its id alone: what a cookie of a deleted account
/// logs in as, long enough for axum-login to sign it out.
fn gone(id: u64) -> User {
    User {
        id,
        uid: crate::auth::users::Uid::default(),
        email: String::new(),
        username: None,
        name: String::new(),
        external_id: None,
        is_admin: false,
        is_active: false,
        email_verified: false,
        must_change_password: false,
        last_login_at: None,
        current_org_id: None,
        created_at: crate::clock::Timestamp(0),
        updated_at: crate::clock::Timestamp(0),
    }
}

impl fmt::Debug for WebUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebUser")
            .field("user", &self.user)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl AuthUser for WebUser {
    type Id = LoginId;

    fn id(&self) -> LoginId {
        LoginId {
            user: self.user.id,
            session: self.session.short_id.clone(),
        }
    }

    /// A digest of the login's session (of its key, never shown); it never changes while
    /// the session lives, and a session that ends takes the cookie login with it. Before
    /// [`Backend::sign_in_user`] binds the login, a value that matches no live login's.
    fn session_auth_hash(&self) -> &[u8] {
        match &self.auth {
            Bound::Cookie(h) => h.as_slice(),
            Bound::NotYet => NOT_BOUND,
            Bound::Ended => &[],
        }
    }
}

/// What a login form sends: an email or username, and the password; `meta` (not read from
/// the form) carries the client's address and user agent for the session list. The
/// password is a [`Secret`]: wiped from memory when dropped, and never shown by `Debug`.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    /// Email or username.
    pub login: String,
    /// The password (`"…".into()` makes one from text).
    pub password: Secret,
    /// Client details recorded with the session.
    #[serde(skip)]
    pub meta: LoginMeta,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .field("meta", &self.meta)
            .finish()
    }
}

/// The axum-login backend (`AuthnBackend` + `AuthzBackend`) on a redkeep store.
///
/// A login handler signs a login in with [`Backend::sign_in`] (a login made with
/// `sessions().login`) or [`Backend::sign_in_user`] (the user `auth.authenticate` returns),
/// not with a bare `auth.login(&user)`: axum-login gives a new session id only to a cookie
/// without auth data, so a signed-in cookie planted in a browser beforehand (session
/// fixation) would keep its id, known to whoever planted it, through the next login. Both
/// helpers end the login the cookie carried and give every login a new id. A bare
/// `auth.login` fails closed: the user it signs in is not bound to the cookie, which is
/// signed out on its next request (its login ended), so the mistake shows at the first try.
///
/// A logout handler calls axum-login's `auth.logout()`: with [`RedkeepSessionStore`]
/// (`crate::web::RedkeepSessionStore`) deleting the cookie session ends its redkeep login
/// too. With another session store, which knows nothing of logins, also call
/// [`Backend::logout`], or the redkeep session lives on until it expires.
///
/// [`RedkeepSessionStore`]: super::RedkeepSessionStore
#[derive(Debug, Clone)]
pub struct Backend {
    ark: AsyncRedkeep,
}

impl Backend {
    /// A backend on this store.
    pub fn new(ark: AsyncRedkeep) -> Backend {
        Backend { ark }
    }

    /// This backend with its writes naming `origin` in the audit log (as
    /// [`AsyncRedkeep::with_origin`]): set on a request's `auth.backend`, the logins it
    /// ends and the password it changes say where the request came from.
    ///
    /// ```no_run
    /// # async fn handler(mut auth: axum_login::AuthSession<redkeep::web::Backend>, peer: std::net::SocketAddr) -> redkeep::Result<()> {
    /// use redkeep::Origin;
    /// auth.backend = auth.backend.with_origin(Origin::new(format!("web, {}", peer.ip()))?);
    /// # Ok(()) }
    /// ```
    pub fn with_origin(&self, origin: Origin) -> Backend {
        Backend {
            ark: self.ark.with_origin(origin),
        }
    }

    /// The axum-login user of a login the application made itself (with
    /// `sessions().login`, to hand its token out for bearer use too): signing it in with
    /// [`Backend::sign_in_user`] binds the cookie to that session, so ending either ends
    /// both. (Signed in with a bare `auth.login`, the cookie is signed out on its next
    /// request; see [`WebUser`].)
    pub fn web_login(&self, login: &Login) -> WebUser {
        WebUser::not_yet_bound(login.user.clone(), login.session.clone())
    }

    /// Signs `login` (made with `sessions().login`) in on the cookie of `auth`, the safe
    /// way in one call: [`Backend::sign_in_user`] of its [`Backend::web_login`].
    ///
    /// # Errors
    /// `Storage` when the session store fails (the cookie then carries no login); `Cancelled`.
    pub async fn sign_in(auth: &mut axum_login::AuthSession<Backend>, login: &Login) -> Result<()> {
        let user = auth.backend.web_login(login);
        Self::sign_in_user(auth, &user).await
    }

    /// Signs `user` (what `auth.authenticate(creds)` returned, or [`Backend::web_login`]) in
    /// on the cookie of `auth`, the safe way in one call, in place of axum-login's
    /// `auth.login(&user)`: ends the login the cookie carried, if any (its redkeep session
    /// and token, with [`Backend::logout`]); gives the cookie session a new id (axum-login
    /// does that only for a cookie without auth data, and a new id for every login keeps a
    /// cookie planted beforehand, session fixation, from carrying it); then binds the
    /// cookie to `user`'s login, so ending either ends both, and has the cookie end when
    /// the login's session expires (its absolute expiry), whatever the session layer's own
    /// expiry.
    ///
    /// ```no_run
    /// # async fn handler(mut auth: axum_login::AuthSession<redkeep::web::Backend>, creds: redkeep::web::Credentials) -> redkeep::Result<bool> {
    /// use redkeep::web::Backend;
    /// let Ok(Some(user)) = auth.authenticate(creds).await else {
    ///     return Ok(false); // a refused login (or a failing store)
    /// };
    /// Backend::sign_in_user(&mut auth, &user).await?; // not `auth.login(&user)`
    /// # Ok(true) }
    /// ```
    ///
    /// # Errors
    /// `Storage` when the session store fails (the cookie then carries no login); `Cancelled`.
    pub async fn sign_in_user(
        auth: &mut axum_login::AuthSession<Backend>,
        user: &WebUser,
    ) -> Result<()> {
        if let Some(previous) = auth.user.clone() {
            if previous.session.short_id == user.session.short_id {
                // The cookie carries this very login already: nothing to end or renew.
                return Ok(());
            }
            auth.backend.logout(&previous).await?;
        }
        Self::bind(auth, user).await
    }

    /// Binds the cookie of `auth` to `user`'s login under a new cookie session id, and has
    /// the cookie (and the web session behind it) end when the login's session does at the
    /// latest: at its absolute expiry. (The layer's `OnInactivity` expiry is counted from
    /// the last save, which axum-login makes only at login and logout: it cut a longer
    /// login short, and never followed the activity. Inactivity is the redkeep session's
    /// idle timeout, renewed by every validation.) A cookie for the browser session only
    /// (`OnSessionEnd`, or no expiry) stays one, and an expiry set at an earlier time stays.
    /// The new id deletes the cookie's old session, which ends the login it named (with
    /// [`RedkeepSessionStore`](super::RedkeepSessionStore)): the caller ended it already,
    /// or the cookie carried none.
    async fn bind(auth: &mut axum_login::AuthSession<Backend>, user: &WebUser) -> Result<()> {
        let user = &user.bound();
        auth.session
            .cycle_id()
            .await
            .map_err(|e| session_error("giving the cookie session a new id", e))?;
        let ends = super::session_store::in_system_time(&auth.backend.ark, user.session.expires_at);
        if let Ok(at) = tower_sessions::cookie::time::OffsetDateTime::from_unix_timestamp(ends) {
            use tower_sessions::Expiry;
            // A cookie for the browser session only stays so (it would outlive the
            // browser); an expiry the layer set at a time is kept if earlier.
            let pinned = match auth.session.expiry() {
                None | Some(Expiry::OnSessionEnd) => None,
                Some(Expiry::AtDateTime(set)) => Some(set.min(at)),
                Some(Expiry::OnInactivity(_)) => Some(at),
            };
            if let Some(at) = pinned {
                auth.session.set_expiry(Some(Expiry::AtDateTime(at)));
            }
        }
        auth.login(user).await.map_err(|e| match e {
            axum_login::Error::Session(e) => session_error("signing the cookie session in", e),
            axum_login::Error::Backend(e) => e,
        })
    }

    /// Ends a cookie login's redkeep session (call it with axum-login's `logout`, which only
    /// forgets the cookie's data). Returns whether the session was still there.
    ///
    /// # Errors
    /// `Storage` when the engine fails; `Cancelled`.
    pub async fn logout(&self, user: &WebUser) -> Result<bool> {
        let hash = user.session.hash;
        self.ark.run(move |rk| rk.sessions().end(&hash)).await
    }

    /// Changes the password of the user signed in on the cookie of `auth` after checking the
    /// current one (under the lockout rules), and renews the login: every session of the
    /// user ends, the cookie's too (and with it a token of it the application handed out),
    /// and the cookie is signed in on a new one, under a new cookie session id, in one
    /// call. Returns the new login, whose token the application may hand out as at login.
    /// What a user changing a password after a leak expects: nothing of the old login works
    /// afterwards. (`change_password` keeps the cookie's login instead.) The passwords are
    /// taken as [`Secret`]s (give `String`s, `&str`s or `Secret`s).
    ///
    /// # Errors
    /// `Unauthorized` when the cookie carries no login, for a wrong current password or a
    /// disabled user; `InvalidInput` for a bad new one; `NotFound`; `Storage` when the
    /// session store fails (the password is changed then, and the cookie carries no login:
    /// the user signs in again); `Cancelled`.
    pub async fn change_password_and_sign_in(
        auth: &mut axum_login::AuthSession<Backend>,
        current: impl Into<Secret>,
        new: impl Into<Secret>,
    ) -> Result<Login> {
        let (current, new): (Secret, Secret) = (current.into(), new.into());
        let user = auth.user.clone().ok_or(Error::Unauthorized)?;
        let id = user.user.id;
        let meta = LoginMeta {
            ip: user.session.ip.clone(),
            user_agent: user.session.user_agent.clone(),
            ..LoginMeta::default()
        };
        let login = auth
            .backend
            .ark
            .run_hashing(move |rk| {
                rk.users()
                    .change_password_renewing(id, current.expose(), new.expose(), &meta)
            })
            .await?;
        // The cookie's old login ended with the change: signed in afresh, under a new id.
        let user = auth.backend.web_login(&login);
        Self::bind(auth, &user).await?;
        Ok(login)
    }

    /// Changes the password of a cookie login's user after checking the current one (under
    /// the lockout rules): this login stays, the user's other sessions end. A token of this
    /// login the application handed out keeps working, and the cookie keeps its id: prefer
    /// [`Backend::change_password_and_sign_in`], which renews both. The passwords are taken
    /// as [`Secret`]s (give `String`s, `&str`s or `Secret`s).
    ///
    /// # Errors
    /// `Unauthorized` for a wrong current password or a disabled user; `InvalidInput` for a
    /// bad new one; `NotFound`; `Cancelled`.
    pub async fn change_password(
        &self,
        user: &WebUser,
        current: impl Into<Secret>,
        new: impl Into<Secret>,
    ) -> Result<User> {
        let (current, new): (Secret, Secret) = (current.into(), new.into());
        let (id, keep) = (user.user.id, user.session.hash);
        self.ark
            .run_hashing(move |rk| {
                rk.users()
                    .change_password_keeping(id, current.expose(), new.expose(), keep)
            })
            .await
    }
}

impl AuthnBackend for Backend {
    type User = WebUser;
    type Credentials = Credentials;
    type Error = Error;

    /// Checks the password and opens a redkeep session for the cookie login (one password
    /// check); `None` for every refused login, alike.
    ///
    /// # Security
    /// Sign the user it returns in with [`Backend::sign_in_user`], not with axum-login's
    /// bare `auth.login(&user)`: that gives the cookie a new session id only when it carries
    /// no login yet, so a signed-in cookie planted in the browser beforehand (from a sibling
    /// subdomain, a plain-HTTP page) would keep the id its planter knows, and then carry
    /// this login. The user is therefore not bound to a cookie until `sign_in_user` binds
    /// it: a cookie a bare `auth.login` signs it in on is signed out on its next request,
    /// and the login ends. To check the password of a user already signed in, use
    /// `users().check_password`, which opens no session.
    async fn authenticate(&self, creds: Credentials) -> Result<Option<WebUser>> {
        // As `AsyncSessions::login`, but the password stays in its `Secret` until dropped.
        let Credentials {
            login,
            password,
            meta,
        } = creds;
        match self
            .ark
            .run_hashing(move |rk| rk.sessions().login(&login, password.expose(), meta))
            .await
        {
            Ok(login) => Ok(Some(self.web_login(&login))),
            Err(Error::Unauthorized) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The login while its session is valid (and its idle deadline pushed on, as a
    /// validation does). Once it ended, a user whose auth hash matches no cookie, so that
    /// axum-login clears the cookie's data and signs it out (see [`WebUser`]); the same when
    /// the account itself is gone (an empty account of that id stands for it: `None` would
    /// keep the cookie's data, and with it the cookie's id at its next login).
    async fn get_user(&self, id: &LoginId) -> Result<Option<WebUser>> {
        let LoginId { user, session } = id.clone();
        let found = if session.is_empty() {
            Err(Error::InvalidCredential {
                what: "session token",
            })
        } else {
            let short_id = session.clone();
            self.ark
                .run(move |rk| rk.sessions().validate_login(&short_id, user))
                .await
        };
        match found {
            Ok((user, session)) => Ok(Some(WebUser::new(user, session))),
            Err(Error::InvalidCredential { .. }) => {
                let found = self.ark.users().get(user).await?;
                Ok(Some(WebUser::ended(
                    found.unwrap_or_else(|| gone(user)),
                    &session,
                )))
            }
            Err(e) => Err(e),
        }
    }
}

impl Backend {
    /// What `user` may do now, with the account read in one snapshot: nothing while they
    /// must change their password, nor for an account disabled or deleted since.
    async fn granted(&self, user: &WebUser) -> Result<BTreeSet<String>> {
        let id = user.user.id;
        let found = self
            .ark
            .run(move |rk| rk.roles().of_active_user(id))
            .await?;
        Ok(found
            .map(|(user, granted)| super::bearer::held_back(&user, granted))
            .unwrap_or_default())
    }
}

/// Permissions for axum-login's `permission_required!`. A user who must change their
/// password holds none until they do (test `user.user.must_change_password` to send them to
/// the password change); a disabled or deleted account holds none either.
impl AuthzBackend for Backend {
    type Permission = String;

    async fn get_user_permissions(&self, user: &WebUser) -> Result<HashSet<String>> {
        Ok(self.granted(user).await?.into_iter().collect())
    }

    /// Uses redkeep's rule, in which `*` grants every permission.
    async fn has_perm(&self, user: &WebUser, perm: String) -> Result<bool> {
        Ok(super::bearer::grants(&self.granted(user).await?, &perm))
    }
}

/// A failure of the cookie's session layer as redkeep's error: the store's `Busy` (a
/// PostgreSQL write that kept clashing) stays `Busy`, answered 503 with `Retry-After`, not
/// taken for a fault of the server.
fn session_error(what: &'static str, e: tower_sessions::session::Error) -> Error {
    use tower_sessions::session::Error as Layer;
    use tower_sessions::session_store::Error as Store;
    if let Layer::Store(Store::Backend(message)) = &e
        && let Some(busy) = super::session_store::busy_in(message)
    {
        return Error::Busy { what: busy.into() };
    }
    Error::storage(what, e)
}

#[cfg(test)]
mod tests {
    use super::{Error, LoginId, session_error, tower_sessions};

    /// The store's `Busy` comes back out of the session layer as `Busy` (503 with
    /// `Retry-After`); any other failure as `Storage`.
    #[test]
    fn a_busy_store_stays_busy_through_the_session_layer() {
        use tower_sessions::session::Error as Layer;
        use tower_sessions::session_store::Error as Store;
        let through = |e: Error| {
            let message = crate::web::session_store::backend_message_of(&e);
            session_error("signing in", Layer::Store(Store::Backend(message)))
        };
        let busy = through(Error::Busy {
            what: "a write kept clashing with others".into(),
        });
        match busy {
            Error::Busy { what } => assert_eq!(what, "a write kept clashing with others"),
            other => panic!("expected Busy, got {other:?}"),
        }
        let other = through(Error::invalid("session data", "use at most 1 byte"));
        assert!(matches!(other, Error::Storage { .. }), "{other:?}");
    }

    /// A cookie session written by an earlier release holds the bare user id: it reads as a
    /// login without a session (signed out), never as an error that fails the request.
    #[test]
    fn a_login_id_reads_from_both_stored_forms() {
        let id = LoginId {
            user: 7,
            session: "rks_ab12cd34".into(),
        };
        let text = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<LoginId>(&text).unwrap(), id);
        let old: LoginId = serde_json::from_str("7").unwrap();
        assert_eq!(
            old,
            LoginId {
                user: 7,
                session: String::new()
            }
        );
    }
}
