//! A small account server on redkeep, axum, axum-login and tower-sessions.
//!
//! ```text
//! cargo run --example axum_server -- --data-dir ./redkeep-data --listen 127.0.0.1:3000 --init
//! ```
//!
//! It opens the store in the data dir (with `--init`, made with its first administrator when
//! missing, whose password is shown once: on a terminal, else in a file only its owner reads
//! in the data dir, whose path it prints, so that it never lands in a service's log; without
//! `--init`, a missing store is refused, so a mistyped `--data-dir` makes nothing), serves
//! live administration so the `redkeep` CLI works while it runs, and answers JSON:
//!
//! | route | what |
//! |---|---|
//! | `POST /register {email, password, invite}` | a new account (201) |
//! | `POST /login {login, password}` | email or username; sets the session cookie and returns `{"token": "rks_…"}` for bearer use |
//! | `POST /logout` | ends the cookie session and, with `Authorization: Bearer rks_…`, that session |
//! | `GET /me` | the caller and their permissions |
//! | `POST /password {old, new}` | changes the password; other sessions end (a cookie login is renewed: new cookie id, and `{"token": "rks_…"}` of its new session) |
//! | `POST /password-reset/request {email}` | always 202; mails a token when the account exists |
//! | `POST /password-reset/confirm {token, password}` | sets the password with a mailed token |
//! | `GET /workspace`, `PUT /workspace` | the caller's workspace.json; PUT merges a JSON object |
//! | `POST /pieces`, `GET /pieces?after=N&limit=M`, `GET /pieces/{n}` | gallery pieces: save (`{"number": N}`; 409 when the gallery is at its cap, 10,000 pieces or 1 GiB), list a page (100 unless `limit`, at most 1000, past number `after`), load |
//! | `GET /admin/users` | needs `user_management` (or `*`); 403 otherwise |
//! | `GET /api/whoami` | `Authorization: Bearer rkk_…` or `Bearer rks_…` |
//!
//! A signed-in request carries either the session cookie or `Authorization: Bearer rks_…`;
//! both come from one redkeep session, so a logout with either (or `redkeep session revoke`)
//! ends both. API keys (`rkk_…`) reach the `/api/` routes only. A user who must change their
//! password (the first administrator, after `init`) reaches only `/me`, `/password`,
//! `/logout` and `/api/whoami` until they do. Every login gets a new cookie session id.
//! The cookie is `HttpOnly`, `Secure` and `SameSite=Strict`, so browsers send it only to this
//! site over HTTPS; a request that changes something and carries it must also come from this
//! application's own pages (`Sec-Fetch-Site` or `Origin`), which refuses a sibling
//! subdomain's forged form (the CSRF defence). No answer may be cached (`Cache-Control:
//! no-store`): answers carry tokens and personal data. Errors
//! are `{"error": "…"}` with 400, 401, 403, 404, 405, 409, 413 or 503; failures answered
//! with 500, and the 503 "not ready" of a data dir whose restore stopped part way (also
//! said as a warning at start), are logged on stderr with their cause.
//!
//! Password-reset tokens go to a [`Mailer`]: wire a real one in [`serve`]. Until then a reset
//! request is answered as always but sends nothing (the server says so at start), unless
//! `--demo-mailer` prints each mail, token included, to stdout, for trying the server out:
//! under a service manager that is its log, which anyone who reads it can use to reset any
//! account, so it says so loudly at start.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use axum_login::tower_sessions::cookie::SameSite;
use axum_login::tower_sessions::cookie::time::Duration as CookieDuration;
use axum_login::tower_sessions::{Expiry, SessionManagerLayer};
use axum_login::{AuthManagerLayerBuilder, AuthSession};
use redkeep::auth::sessions::LoginMeta;
use redkeep::web::{
    Backend, Caller, Principal, RedkeepSessionStore, WebError, WebUser, bearer_token,
};
use redkeep::{
    AsyncRedkeep, Error, InitSpec, Options, Origin, Registration, Secret, User, UserFilter,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Where password-reset tokens go: a mail server in a real deployment.
pub trait Mailer: Send + Sync + 'static {
    /// Sends `token` to `email`.
    fn password_reset(&self, email: &str, token: &Secret);
}

/// Prints the mail it would send, token included (`--demo-mailer`, for trying the server
/// out): whoever reads stdout can reset any account.
struct StdoutMailer;

impl Mailer for StdoutMailer {
    fn password_reset(&self, email: &str, token: &Secret) {
        println!(
            "mail to {email}: reset your password with {}",
            token.expose()
        );
    }
}

/// Sends nothing (no mailer wired): a reset is answered as always, and only logged, without
/// its token or address.
struct NoMailer;

impl Mailer for NoMailer {
    fn password_reset(&self, _email: &str, _token: &Secret) {
        tracing::warn!(
            "a password reset was asked for an account, and no mail was sent: no mailer is \
             wired (see the warning at start)"
        );
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub ark: AsyncRedkeep,
    /// Where reset tokens are sent.
    pub mailer: Arc<dyn Mailer>,
}

impl FromRef<AppState> for AsyncRedkeep {
    fn from_ref(state: &AppState) -> AsyncRedkeep {
        state.ark.clone()
    }
}

type Auth = AuthSession<Backend>;
type Answer = Result<Response, WebError>;

/// The largest request body accepted (axum's default).
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// A JSON body whose rejections are JSON errors too.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, WebError> {
        let too_large = || {
            WebError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over the limit of {BODY_LIMIT} bytes"),
            )
        };
        // A declared length over the limit is refused before any of the body is read.
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(too_large());
        }
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            // A body over the limit is 413 and says the limit; other rejections are 400.
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            // Past serde_json's nesting limit: said with the limit, not the parser's path.
            Err(e) if e.body_text().contains("recursion limit exceeded") => {
                Err(WebError::bad_request(format!(
                    "the body nests objects and arrays deeper than {} levels",
                    redkeep::workspace::MAX_DOC_DEPTH
                )))
            }
            Err(e) => Err(WebError::bad_request(e.body_text())),
        }
    }
}

/// The signed-in user: from the session cookie, or from `Authorization: Bearer` with a
/// session token. API keys are for the `/api/` routes, which check the key's permissions;
/// these routes act as the user in full, so they refuse keys. A user who must change their
/// password reaches only `/me`, `/password` and `/logout` until they do.
struct Me {
    user: User,
    caller: Option<Caller>,
    // The cookie login, when the request came with the cookie.
    web: Option<WebUser>,
}

/// The routes a user who must change their password may use.
const BEFORE_PASSWORD_CHANGE: [&str; 3] = ["/me", "/password", "/logout"];

impl FromRequestParts<AppState> for Me {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let me = if parts.headers.contains_key(header::AUTHORIZATION) {
            let caller = Caller::from_request_parts(parts, state).await?;
            let Principal::Session { user, .. } = &caller.principal else {
                return Err(WebError::forbidden(
                    "API keys reach the /api/ routes only; sign in with a session (the cookie \
                     or Authorization: Bearer rks_…)",
                ));
            };
            Me {
                user: user.clone(),
                caller: Some(caller),
                web: None,
            }
        } else {
            let auth = Auth::from_request_parts(parts, state)
                .await
                .map_err(|(status, msg)| WebError::new(status, msg))?;
            match auth.user {
                Some(web) => Me {
                    user: web.user.clone(),
                    caller: None,
                    web: Some(web),
                },
                None => return Err(WebError::unauthorized("sign in first")),
            }
        };
        if me.user.must_change_password && !BEFORE_PASSWORD_CHANGE.contains(&parts.uri.path()) {
            return Err(WebError::forbidden(
                "change your password first (POST /password {old, new})",
            ));
        }
        Ok(me)
    }
}

impl Me {
    async fn permissions(&self, ark: &AsyncRedkeep) -> Result<Vec<String>, WebError> {
        Ok(match &self.caller {
            Some(c) => c.permissions().into_iter().collect(),
            None => ark
                .roles()
                .permissions(self.user.id)
                .await?
                .into_iter()
                .collect(),
        })
    }

    async fn allows(&self, ark: &AsyncRedkeep, permission: &str) -> Result<bool, WebError> {
        Ok(match &self.caller {
            Some(c) => c.allows(permission),
            None => {
                ark.roles()
                    .has_permission(self.user.id, permission.into())
                    .await?
            }
        })
    }
}

/// A failure the client sees only as "internal error"; its cause goes to the log.
fn internal(e: impl std::fmt::Display) -> WebError {
    tracing::error!(error = %e, "request failed");
    WebError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

fn user_json(u: &User) -> Value {
    serde_json::to_value(u).unwrap_or(Value::Null)
}

#[derive(Deserialize)]
struct RegisterBody {
    email: String,
    // Secrets from the moment they are read: wiped when dropped, never in `Debug`.
    password: Secret,
    invite: Option<Secret>,
}

/// The connection's peer, when the server is served with connect info (as `main` does).
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// Where a request came from, as the audit log names it (`origin`: `web, 203.0.113.7`, the
/// connection's peer). Behind a reverse proxy the peer is the proxy (see `login`).
fn origin_of(peer: &Peer) -> Option<Origin> {
    peer.as_ref()
        .and_then(|Extension(ConnectInfo(addr))| Origin::new(format!("web, {}", addr.ip())).ok())
}

/// The handle for a request that writes to the audit log (a registration, a login, a
/// logout, a password change or reset), whose events then name where they came from: a run
/// of failed logins, say, shows its address.
fn from_peer(ark: &AsyncRedkeep, peer: &Peer) -> AsyncRedkeep {
    match origin_of(peer) {
        Some(origin) => ark.with_origin(origin),
        None => ark.clone(),
    }
}

/// Has the cookie login's writes (the login a new one replaces, a logout, a password
/// change) name where the request came from, as [`from_peer`] does for the store's.
fn backend_from_peer(auth: &mut Auth, peer: &Peer) {
    if let Some(origin) = origin_of(peer) {
        auth.backend = auth.backend.with_origin(origin);
    }
}

async fn register(State(s): State<AppState>, peer: Peer, Body(b): Body<RegisterBody>) -> Answer {
    let user = from_peer(&s.ark, &peer)
        .users()
        .register(Registration {
            email: b.email,
            password: b.password,
            invite: b.invite,
            ..Registration::default()
        })
        .await
        .map_err(|e| match e {
            // Said plainly, without the store's table and index names.
            Error::Conflict { index: "email", .. } => {
                WebError::new(StatusCode::CONFLICT, "an account with this email exists")
            }
            Error::Conflict {
                index: "username", ..
            } => WebError::new(StatusCode::CONFLICT, "this username is taken"),
            // An invite that does not work is a bad request, not a challenge for credentials.
            e => WebError::from_body_secret(e),
        })?;
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

#[derive(Deserialize)]
struct LoginBody {
    login: String,
    password: Secret,
}

async fn login(
    State(s): State<AppState>,
    mut auth: Auth,
    headers: HeaderMap,
    peer: Peer,
    Body(b): Body<LoginBody>,
) -> Answer {
    // The session keeps where the login came from (`redkeep session list`), and so do the
    // audit events of the attempt (their origin): the address of the connection's peer,
    // which behind a reverse proxy is the proxy's (take the client's from the proxy's
    // `X-Forwarded-For` only when every request comes through a proxy you run, or a client
    // names any address it likes). The user agent as sent: redkeep keeps it cleaned
    // (control characters made spaces, cut to 512 bytes).
    let meta = LoginMeta {
        ip: peer
            .as_ref()
            .map(|Extension(ConnectInfo(addr))| addr.ip().to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        ..LoginMeta::default()
    };
    // One password check and one redkeep session: its token is handed out for bearer use,
    // and the cookie login is bound to it, so ending either (logout, `redkeep session
    // revoke`, expiry) ends both.
    let login = from_peer(&s.ark, &peer)
        .sessions()
        .login(b.login, b.password, meta)
        .await?;
    // A login over a signed-in cookie replaces that login (its session and token end), and
    // every login gets a new session id: a cookie id planted before it (session fixation)
    // never carries it.
    backend_from_peer(&mut auth, &peer);
    Backend::sign_in(&mut auth, &login).await?;
    Ok(Json(json!({
        "token": login.token.expose(),
        "expires_at": login.session.expires_at,
        "user": user_json(&login.user),
    }))
    .into_response())
}

async fn logout(
    State(s): State<AppState>,
    mut auth: Auth,
    headers: HeaderMap,
    peer: Peer,
) -> Answer {
    match bearer_token(&headers) {
        Some(key) if key.starts_with("rkk_") => {
            return Err(WebError::bad_request(
                "an API key is not logged out; revoke it with `redkeep apikey revoke`",
            ));
        }
        Some(token) => {
            from_peer(&s.ark, &peer)
                .sessions()
                .logout(token.to_string())
                .await?;
        }
        None => {}
    }
    // The cookie's redkeep session is ended here, so that its audit event names where the
    // logout came from; deleting the cookie session from `RedkeepSessionStore` would end it
    // too. A request without one (a bearer client's) has none to delete: tower-sessions
    // would log a warning for each.
    if let Some(user) = auth.user.clone() {
        backend_from_peer(&mut auth, &peer);
        // A store opened read-only ends no session (as `RedkeepSessionStore` takes it): the
        // cookie is still forgotten below.
        match auth.backend.logout(&user).await {
            Ok(_) | Err(Error::ReadOnly { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if auth.session.id().is_some() {
        auth.logout().await.map_err(internal)?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn me(State(s): State<AppState>, me: Me) -> Answer {
    let permissions = me.permissions(&s.ark).await?;
    Ok(Json(json!({"user": user_json(&me.user), "permissions": permissions})).into_response())
}

#[derive(Deserialize)]
struct PasswordBody {
    old: Secret,
    new: Secret,
}

async fn password(
    State(s): State<AppState>,
    mut auth: Auth,
    headers: HeaderMap,
    peer: Peer,
    me: Me,
    Body(b): Body<PasswordBody>,
) -> Answer {
    // Every other session of the user ends. A cookie login is renewed: its old session
    // (and the token `/login` handed out with it, which page script could read) ends too,
    // and the cookie is signed in on a new one, whose token is returned as at login. A
    // bearer session making the change stays: its client holds the token.
    let changed = match &me.web {
        Some(_) => {
            backend_from_peer(&mut auth, &peer);
            Backend::change_password_and_sign_in(&mut auth, b.old, b.new)
                .await
                .map(|login| json!({"ok": true, "token": login.token.expose()}))
        }
        None => {
            let token = bearer_token(&headers).unwrap_or_default().to_string();
            from_peer(&s.ark, &peer)
                .users()
                .change_password(token, b.old, b.new)
                .await
                .map(|_| json!({"ok": true}))
        }
    };
    match changed {
        Ok(body) => Ok(Json(body).into_response()),
        // Also a lockout: after too many wrong passwords the right one is refused a while.
        Err(Error::Unauthorized) => Err(WebError::new(
            StatusCode::FORBIDDEN,
            "the current password is wrong, or too many wrong ones were tried; try again later",
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct ResetRequest {
    email: String,
}

async fn reset_request(
    State(s): State<AppState>,
    peer: Peer,
    Body(b): Body<ResetRequest>,
) -> Answer {
    let ark = from_peer(&s.ark, &peer);
    match ark.recovery().request_password_reset(b.email).await {
        // Sent beside the answer, never before it: a mail server's round trip would
        // otherwise make the answer slower for addresses that have an account (and would
        // hold a runtime thread meanwhile).
        Ok(Some(issued)) => {
            let mailer = s.mailer.clone();
            tokio::task::spawn_blocking(move || {
                mailer.password_reset(&issued.user.email, &issued.token);
            });
        }
        // Unknown, disabled and malformed addresses get the same answer.
        Ok(None) | Err(Error::InvalidInput { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "if an account has this email, a reset link was sent to it"})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ResetConfirm {
    token: String,
    password: Secret,
}

async fn reset_confirm(
    State(s): State<AppState>,
    peer: Peer,
    Body(b): Body<ResetConfirm>,
) -> Answer {
    from_peer(&s.ark, &peer)
        .recovery()
        .reset_password(b.token, b.password)
        .await
        .map_err(WebError::from_body_secret)?;
    Ok(Json(json!({"ok": true})).into_response())
}

async fn workspace(State(s): State<AppState>, me: Me) -> Answer {
    let doc = s.ark.workspaces().read(me.user.id).await?;
    Ok(Json(Value::Object(doc.to_map())).into_response())
}

async fn update_workspace(State(s): State<AppState>, me: Me, Body(patch): Body<Value>) -> Answer {
    let Value::Object(patch) = patch else {
        return Err(WebError::bad_request("send a JSON object to merge"));
    };
    let doc = s
        .ark
        .workspaces()
        .update(me.user.id, move |doc| {
            doc.merge(patch)?;
            Ok(doc.to_map())
        })
        .await?;
    Ok(Json(Value::Object(doc)).into_response())
}

async fn save_piece(State(s): State<AppState>, me: Me, Body(piece): Body<Value>) -> Answer {
    let bytes = serde_json::to_vec(&piece).map_err(|e| WebError::bad_request(e.to_string()))?;
    let n = s.ark.workspaces().save_piece(me.user.id, bytes).await?;
    Ok((StatusCode::CREATED, Json(json!({"number": n}))).into_response())
}

/// Pieces listed in one answer unless the client asks for fewer, and at most.
const PIECES_PAGE: usize = 100;
const MAX_PIECES_PAGE: usize = 1000;

/// A page of the caller's pieces: a gallery of thousands is not listed in one answer.
async fn list_pieces(
    State(s): State<AppState>,
    me: Me,
    page: Result<Query<Page>, QueryRejection>,
) -> Answer {
    let page = page_of(page)?;
    let limit = page.limit.unwrap_or(PIECES_PAGE).min(MAX_PIECES_PAGE);
    let pieces = s
        .ark
        .workspaces()
        .list_pieces_page(me.user.id, page.after, limit)
        .await?;
    let list: Vec<Value> = pieces
        .iter()
        .map(|p| json!({"number": p.piece, "size_bytes": p.size_bytes, "modified": p.modified}))
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

async fn load_piece(State(s): State<AppState>, me: Me, Path(n): Path<String>) -> Answer {
    let n: u64 = n
        .parse()
        .map_err(|_| WebError::bad_request(format!("{n:?} is not a piece number")))?;
    Ok(Json(s.ark.workspaces().load_piece(me.user.id, n).await?).into_response())
}

/// `?after=N&limit=M` of a listing.
#[derive(Deserialize)]
struct Page {
    after: Option<u64>,
    limit: Option<usize>,
}

/// The page a listing was asked for: a malformed query is a JSON error like the rest, not
/// axum's plain text.
fn page_of(page: Result<Query<Page>, QueryRejection>) -> Result<Page, WebError> {
    page.map(|Query(page)| page)
        .map_err(|e| WebError::bad_request(e.body_text()))
}

async fn admin_users(
    State(s): State<AppState>,
    me: Me,
    page: Result<Query<Page>, QueryRejection>,
) -> Answer {
    let page = page_of(page)?;
    if !me.allows(&s.ark, "user_management").await? {
        return Err(WebError::forbidden(
            "this needs the user_management permission",
        ));
    }
    let limit = page.limit.unwrap_or(100).min(1000);
    let users = s
        .ark
        .users()
        .list(UserFilter::All, page.after, limit)
        .await?;
    Ok(Json(Value::Array(users.iter().map(user_json).collect())).into_response())
}

async fn whoami(caller: Caller) -> Answer {
    let (kind, user, org, key) = match &caller.principal {
        Principal::Session { user, .. } => ("session", Some(user), None, None),
        Principal::UserKey { user, key } => ("user_key", Some(user), None, Some(key)),
        Principal::OrgKey { org, key } => ("org_key", None, Some(org), Some(key)),
    };
    Ok(Json(json!({
        "kind": kind,
        "user": user.map(user_json),
        "org": org,
        "key_prefix": key.map(|k| k.prefix.clone()),
        "permissions": caller.permissions(),
    }))
    .into_response())
}

async fn not_found() -> WebError {
    WebError::new(StatusCode::NOT_FOUND, "no such route")
}

async fn wrong_method() -> WebError {
    WebError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method",
    )
}

/// The application: routes, the cookie session layer on redkeep's `web_sessions` table, and
/// axum-login on redkeep's users.
pub fn router(state: AppState) -> Router {
    let sessions = SessionManagerLayer::new(RedkeepSessionStore::new(state.ark.clone()))
        // No `__Host-` prefix: tower-sessions clears a cookie (at logout, or when its login
        // has ended) without `Secure`, which browsers refuse for such a name, so the dead
        // cookie would stay. A planted cookie gains nothing: every login cycles the id.
        .with_name("redkeep_session")
        .with_http_only(true)
        .with_secure(true)
        .with_same_site(SameSite::Strict)
        .with_expiry(Expiry::OnInactivity(CookieDuration::hours(12)));
    let auth = AuthManagerLayerBuilder::new(Backend::new(state.ark.clone()), sessions).build();
    Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/password", post(password))
        .route("/password-reset/request", post(reset_request))
        .route("/password-reset/confirm", post(reset_confirm))
        .route("/workspace", get(workspace).put(update_workspace))
        .route("/pieces", post(save_piece).get(list_pieces))
        .route("/pieces/{n}", get(load_piece))
        .route("/admin/users", get(admin_users))
        .route("/api/whoami", get(whoami))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(auth)
        .layer(axum::middleware::from_fn(same_site_cookies_only))
        .layer(axum::middleware::map_response(no_store))
        .with_state(state)
}

/// No answer is kept by a browser's or a proxy's cache: answers carry tokens (`/login`,
/// `/password`) and personal data (`/me`, `/workspace`), and RFC 6749 asks `no-store` of
/// any answer holding a token.
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// A request that changes something and carries the session cookie must come from this
/// application's own pages: a browser says where a request comes from in `Sec-Fetch-Site`
/// (or, in older browsers, `Origin`), which a page cannot forge. `SameSite=Strict` keeps
/// other sites' requests from carrying the cookie, but not a sibling subdomain's (the same
/// site); this check refuses those too. Bearer-token requests carry no ambient credential,
/// so they are not checked; nor are reads (GET, HEAD), which change nothing.
async fn same_site_cookies_only(request: Request, next: axum::middleware::Next) -> Response {
    let headers = request.headers();
    let reads = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if reads || !headers.contains_key(header::COOKIE) {
        return next.run(request).await;
    }
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let foreign = match text(header::HeaderName::from_static("sec-fetch-site")) {
        // `none`: typed in by the user (a bookmark); `same-origin`: this application's pages.
        Some(site) => !matches!(site.as_str(), "same-origin" | "none"),
        None => match (text(header::ORIGIN), text(header::HOST)) {
            // `Origin: null` (a sandboxed page, a redirect across sites) matches no host.
            (Some(origin), Some(host)) => {
                let origin_host = origin
                    .split_once("://")
                    .map_or(origin.as_str(), |(_, rest)| rest);
                origin_host != host
            }
            // An origin and no `Host` to compare it with.
            (Some(_), None) => true,
            // No `Origin` and no `Sec-Fetch-Site`: not a browser's cross-site request (curl,
            // a script holding the cookie itself).
            (None, _) => false,
        },
    };
    if foreign {
        return WebError::new(
            StatusCode::FORBIDDEN,
            "a request with the session cookie must come from this application's own pages",
        )
        .into_response();
    }
    next.run(request).await
}

/// What the command line asks for.
pub struct Arguments {
    /// The data dir.
    pub dir: PathBuf,
    /// Where to answer HTTP.
    pub listen: SocketAddr,
    /// Make the store and its first administrator when the data dir has none.
    pub init: bool,
    /// Print password-reset mails, tokens included, to stdout (for trying the server out).
    pub demo_mailer: bool,
    /// How long a stop waits for requests under way before it closes them.
    pub grace: std::time::Duration,
}

const USAGE: &str = "usage: axum_server --data-dir DIR [--listen ADDR] [--init] [--demo-mailer] [--grace SECS]\n\
    \x20 --data-dir DIR  the data dir holding redkeep.redb and workspaces/\n\
    \x20 --listen ADDR   where to answer HTTP (default 127.0.0.1:3000)\n\
    \x20 --init          make the store and its first administrator when DIR has none (its\n\
    \x20                 password: on a terminal, else in DIR/first-admin-password, 0600)\n\
    \x20 --demo-mailer   print password-reset mails, tokens included, to stdout (trying out\n\
    \x20                 only: whoever reads the log can reset any account); without it no\n\
    \x20                 mail is sent until a real mailer is wired in\n\
    \x20 --grace SECS    how long SIGTERM or Ctrl-C waits for requests under way (default 10)";

fn arguments() -> Result<Option<Arguments>, String> {
    let mut dir = None;
    let mut listen = None;
    let mut init = false;
    let mut demo_mailer = false;
    let mut grace = std::time::Duration::from_secs(10);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--help" | "-h" => return Ok(None),
            "--init" => init = true,
            "--demo-mailer" => demo_mailer = true,
            "--grace" => {
                let v = args.next().ok_or("--grace needs a number of seconds")?;
                grace = std::time::Duration::from_secs(
                    v.parse()
                        .map_err(|e| format!("--grace {v}: {e} (give whole seconds)"))?,
                );
            }
            "--data-dir" => dir = args.next().map(PathBuf::from),
            "--listen" => {
                let v = args.next().ok_or("--listen needs an address")?;
                listen = Some(v.parse().map_err(|e| format!("--listen {v}: {e}"))?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(Arguments {
        dir: dir.ok_or("pass --data-dir DIR")?,
        listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000))),
        init,
        demo_mailer,
        grace,
    }))
}

fn main() -> std::process::ExitCode {
    // Under a file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`), a write past it should
    // fail that one request with "File too large" (redkeep removes its temp file), not have
    // the kernel kill the whole server with SIGXFSZ.
    // SAFETY: `SIG_IGN` is a disposition, not a handler: no code runs in signal context, and
    // setting it while the runtime's threads run is as safe as before they start.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Failures the client sees only as "internal error" are logged here, with their cause
    // (`RUST_LOG` changes the level).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = match arguments() {
        Ok(Some(a)) => a,
        Ok(None) => {
            // (Not `println!`: a closed pipe, `| head`, is no reason to panic.)
            let _ = writeln!(
                std::io::stdout(),
                "A small account server on redkeep.\n{USAGE}"
            );
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("axum_server: {e}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    start(args)
}

/// Builds the async runtime and serves `args` on it until stopped. A failure of either
/// (short of file descriptors under `ulimit -n`, say) is one line on stderr and exit 1.
pub fn start(args: Arguments) -> std::process::ExitCode {
    // Built here rather than by `#[tokio::main]`, which panics when it cannot.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("axum_server: cannot start its async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves until SIGTERM or Ctrl-C, then closes the admin socket and the store.
pub async fn serve(args: Arguments) -> Result<(), Box<dyn std::error::Error>> {
    let Arguments {
        dir,
        listen,
        init,
        demo_mailer,
        grace,
    } = args;
    // The port first: a server that cannot listen leaves no store behind (nor the first
    // administrator's password printed only here).
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listening on {listen}: {e}"))?;
    // The library says why a data dir holds no store it can open (one moved to a server
    // names where it went); only "none was ever made" gets this server's own advice.
    // An operator's command that reads the store (`redkeep check`, `backup`, `export`) has
    // it open for a while: the open waits for it (30 s at most) and says so.
    let options = Options::default()
        .create(init)
        .on_wait_for_readers(|wait| eprintln!("axum_server: {wait}"));
    let ark = match AsyncRedkeep::open(dir.clone(), options).await {
        Err(redkeep::Error::NotInitialized { .. }) if !init => {
            return Err(format!(
                "no store in {}; pass --init to make one with its first administrator (or \
                 run `redkeep --data-dir {} init`)",
                dir.display(),
                dir.display()
            )
            .into());
        }
        opened => opened?,
    };
    if init {
        let made = ark.init(InitSpec::default()).await?;
        if let Some(admin) = made.admin {
            println!("created the first administrator {}", admin.user.email);
            if let Some(p) = admin.password {
                show_first_password(&dir, &p).map_err(|e| {
                    format!(
                        "{e}; the store and its first administrator {} were made, but that \
                         password is lost: set one with `redkeep --data-dir {} user \
                         set-password {} --password-stdin`",
                        admin.user.email,
                        dir.display(),
                        admin.user.email
                    )
                })?;
            }
        }
    }
    // An operation on the whole data dir that stopped part way waits for the operator: said
    // now, since the requests it refuses are answered only "not ready" (503) and logged.
    for line in unfinished_warnings(&ark, &dir)? {
        eprintln!("axum_server: {line}");
    }
    // `redkeep --data-dir DIR …` works while the server runs.
    let admin = redkeep::admin::serve(ark.sync())?;
    let stop = stop_requested()?;
    println!("listening on http://{}", listener.local_addr()?);
    // Logins that time out instead of logging out leave their session rows (and the
    // cookie's record): removed every ten minutes, so the file does not grow without end.
    let sweeper = tokio::spawn(sweep_sessions(
        ark.clone(),
        std::time::Duration::from_secs(600),
    ));
    let mailer: Arc<dyn Mailer> = if demo_mailer {
        eprintln!(
            "axum_server: WARNING: --demo-mailer prints every password-reset token to stdout; \
             whoever reads this output (a service's log) can reset any account: for trying \
             the server out only"
        );
        Arc::new(StdoutMailer)
    } else {
        eprintln!(
            "axum_server: password resets send no mail: no mailer is wired in (a reset \
             request is answered as always, and its token is not shown); wire a real mailer \
             into `serve` in examples/axum_server.rs, or pass --demo-mailer to print tokens \
             to stdout when trying the server out"
        );
        Arc::new(NoMailer)
    };
    let state = AppState { ark, mailer };
    // SIGTERM or Ctrl-C: stop taking connections, let those under way finish (for `grace`
    // at most: a stalled client does not hold the stop), then close the admin socket and the
    // store (so neither the socket file nor the owner marker is left).
    let stopping = Arc::new(tokio::sync::Notify::new());
    let told = stopping.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop.await;
        told.notify_one();
    });
    tokio::select! {
        served = std::future::IntoFuture::into_future(server) => served?,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(grace).await;
        } => eprintln!("axum_server: requests still open after {grace:?} were closed"),
    }
    sweeper.abort();
    // Stopping the admin socket waits for a command under way: not on a runtime thread.
    tokio::task::spawn_blocking(move || drop(admin)).await?;
    println!("stopped");
    Ok(())
}

/// Where `--init` leaves the first administrator's password when stdout is no terminal.
pub const FIRST_PASSWORD_FILE: &str = "first-admin-password";

/// Shows the first administrator's password once: on stdout when it is a terminal (a person
/// reads it), else in [`FIRST_PASSWORD_FILE`] in the data dir, readable by its owner only,
/// and stdout names the file: a service manager keeps stdout in a log that others read.
fn show_first_password(dir: &std::path::Path, password: &Secret) -> std::io::Result<()> {
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        println!("password (shown once): {}", password.expose());
        return Ok(());
    }
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(FIRST_PASSWORD_FILE);
    // One left by an earlier store in this data dir no longer signs anyone in; a symlink
    // there is removed, never followed.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))?;
    writeln!(file, "{}", password.expose())?;
    file.sync_all()?;
    println!(
        "its password is in {} (readable by this user only): sign in with it, change it, \
         then delete the file",
        path.display()
    );
    Ok(())
}

/// A warning for each operation on the whole data dir `dir` that stopped part way (a
/// restore, a reset killed before its end), with the command that finishes it.
pub fn unfinished_warnings(
    ark: &AsyncRedkeep,
    dir: &std::path::Path,
) -> Result<Vec<String>, Error> {
    Ok(ark
        .sync()
        .unfinished()?
        .iter()
        .map(|u| format!("warning: {u} (the data dir is {})", dir.display()))
        .collect())
}

/// Removes expired login sessions, web sessions (cookie records) and recovery tokens every
/// `period`. A sweep that fails is logged and tried again next time.
async fn sweep_sessions(ark: AsyncRedkeep, period: std::time::Duration) {
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // (Login sessions, web sessions and recovery tokens: one sweep.)
        if let Err(e) = ark.sessions().sweep().await {
            eprintln!("axum_server: sweeping expired sessions failed: {e}");
        }
    }
}

/// A future that resolves on SIGTERM (a service manager stopping the server) or SIGINT
/// (Ctrl-C). The handlers are in place when this returns, before the server says it listens.
fn stop_requested() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
