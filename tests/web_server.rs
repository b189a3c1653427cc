//! The example server (`examples/axum_server.rs`) driven over real HTTP on a loopback port:
//! accounts, cookie and bearer sessions, workspaces and pieces, permissions, password change
//! and reset, and API keys.
#![cfg(all(feature = "axum-login", feature = "tower-sessions"))]

#[allow(dead_code)]
#[path = "../examples/axum_server.rs"]
mod server;

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redkeep::auth::api_keys::{ApiKeySpec, KeyOwner};
use redkeep::auth::orgs::OrgSpec;
use redkeep::{
    AsyncRedkeep, Clock, InviteSpec, ManualClock, Options, PasswordParams, Secret, SystemClock,
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// Keeps the mails the server sends (beside its answers), and says when one arrives.
#[derive(Default)]
struct Outbox(Mutex<Vec<(String, String)>>, tokio::sync::Notify);

impl server::Mailer for Outbox {
    fn password_reset(&self, email: &str, token: &Secret) {
        self.0
            .lock()
            .unwrap()
            .push((email.to_string(), token.expose().to_string()));
        self.1.notify_one();
    }
}

impl Outbox {
    /// The mails sent, once there are at least `n`.
    async fn at_least(&self, n: usize) -> Vec<(String, String)> {
        loop {
            let arrived = self.1.notified();
            let mails = self.0.lock().unwrap().clone();
            if mails.len() >= n {
                return mails;
            }
            arrived.await;
        }
    }
}

struct Site {
    _dir: tempfile::TempDir,
    ark: AsyncRedkeep,
    clock: Arc<ManualClock>,
    outbox: Arc<Outbox>,
    base: String,
    http: Client,
}

/// A response: status, the session cookie it set (if any) with its attributes, and the body.
struct Answer {
    status: StatusCode,
    set_cookie: Option<String>,
    body: Value,
}

impl Answer {
    /// `name=value` of the cookie it set.
    fn cookie(&self) -> String {
        let c = self.set_cookie.as_deref().expect("a Set-Cookie header");
        c.split(';').next().unwrap().trim().to_string()
    }
}

impl Site {
    async fn start() -> Site {
        Site::start_with(|_| {}).await
    }

    async fn start_with(tune: impl FnOnce(&mut Options)) -> Site {
        let dir = tempfile::tempdir().unwrap();
        // The cookie layer keeps real time; redkeep's clock starts there and moves by hand.
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let mut options = Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .clock(clock.clone());
        tune(&mut options);
        let ark = AsyncRedkeep::open(dir.path().to_path_buf(), options)
            .await
            .unwrap();
        ark.init(redkeep::InitSpec {
            no_admin: false,
            admin_email: Some("root@example.com".into()),
            admin_password: Some(Secret::new("root password")),
            keep_password: false,
        })
        .await
        .unwrap();
        let outbox = Arc::new(Outbox::default());
        let app = server::router(server::AppState {
            ark: ark.clone(),
            mailer: outbox.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // As the example's `main` serves it: handlers see the connection's peer address.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Site {
            _dir: dir,
            ark,
            clock,
            outbox,
            base,
            http: Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, auth: &str, body: Option<Value>) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = auth.strip_prefix("cookie:") {
            req = req.header("Cookie", cookie);
        } else if !auth.is_empty() {
            req = req.bearer_auth(auth);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let set_cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string());
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Answer {
            status,
            set_cookie,
            body,
        }
    }

    async fn invite(&self) -> String {
        let created = self
            .ark
            .invites()
            .create(InviteSpec::default())
            .await
            .unwrap();
        created.code.expose().to_string()
    }

    async fn register(&self, email: &str, password: &str) -> Value {
        let code = self.invite().await;
        let a = self
            .call(
                Method::POST,
                "/register",
                "",
                Some(json!({"email": email, "password": password, "invite": code})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body
    }

    /// Logs in; returns the cookie (`cookie:name=value`) and the bearer token.
    async fn login(&self, login: &str, password: &str) -> (String, String) {
        let a = self
            .call(
                Method::POST,
                "/login",
                "",
                Some(json!({"login": login, "password": password})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let token = a.body["token"].as_str().unwrap().to_string();
        (format!("cookie:{}", a.cookie()), token)
    }
}

/// A workspace merged past the size limit is refused with 400 saying the limit, without
/// the advice meant for the operator (which option or flag raises it), and keeps what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_past_its_limit_is_refused_without_the_operators_advice() {
    let site = Site::start_with(|o| o.workspace.max_doc_bytes = Some(1024)).await;
    site.register("ann@example.com", "correct horse").await;
    let (cookie, _) = site.login("ann@example.com", "correct horse").await;
    let small = site
        .call(Method::PUT, "/workspace", &cookie, Some(json!({"a": "x"})))
        .await;
    assert_eq!(small.status, StatusCode::OK, "{}", small.body);
    let big = site
        .call(
            Method::PUT,
            "/workspace",
            &cookie,
            Some(json!({"b": "y".repeat(2000)})),
        )
        .await;
    assert_eq!(big.status, StatusCode::BAD_REQUEST, "{}", big.body);
    let said = big.body["error"].as_str().unwrap();
    assert!(
        said.contains("the limit for workspace files is 1024"),
        "{said}"
    );
    for operators in ["raise", "max_doc_bytes", "--max-doc-bytes", "REDKEEP_"] {
        assert!(!said.contains(operators), "{said}");
    }
    let ws = site.call(Method::GET, "/workspace", &cookie, None).await;
    assert_eq!(ws.body["a"], "x");
    assert!(ws.body.get("b").is_none(), "{}", ws.body);
}

/// No answer may be kept by a cache (RFC 6749 asks it of answers holding tokens), and a
/// request that changes something with the session cookie must come from the application's
/// own pages: a forged form on a sibling subdomain (same site, so `SameSite=Strict` lets the
/// cookie go along) is refused, a bearer client and a same-origin page are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_not_cached_and_cookie_writes_come_from_the_apps_own_pages() {
    let site = Site::start().await;
    site.register("ann@example.com", "correct horse").await;
    let http = &site.http;
    let login = http
        .post(format!("{}/login", site.base))
        .json(&json!({"login": "ann@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(login.headers()["cache-control"], "no-store");
    let missing = http
        .get(format!("{}/no-such-route", site.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.headers()["cache-control"], "no-store");
    let (cookie, token) = site.login("ann@example.com", "correct horse").await;
    let cookie = cookie.strip_prefix("cookie:").unwrap().to_string();
    let host = site.base.strip_prefix("http://").unwrap().to_string();
    let put = |headers: &[(&str, &str)]| {
        let mut req = http
            .put(format!("{}/workspace", site.base))
            .header("Cookie", &cookie)
            .json(&json!({"notes": ["n"]}));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    for foreign in [
        vec![("Sec-Fetch-Site", "same-site")],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", "https://evil.example.com")],
        vec![("Origin", "null")],
    ] {
        let resp = put(&foreign).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{foreign:?}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("own pages"),
            "{body}"
        );
    }
    let same_origin = format!("http://{host}");
    for own in [
        vec![("Sec-Fetch-Site", "same-origin")],
        vec![("Origin", same_origin.as_str())],
        vec![],
    ] {
        let resp = put(&own).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{own:?}");
    }
    // A cookie read is never refused; a bearer write carries no ambient credential.
    let read = http
        .get(format!("{}/workspace", site.base))
        .header("Cookie", &cookie)
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let bearer = http
        .put(format!("{}/workspace", site.base))
        .bearer_auth(&token)
        .header("Origin", "https://evil.example.com")
        .json(&json!({"notes": ["b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_register_to_logout() {
    let site = Site::start().await;
    let ann = site.register("ann@example.com", "correct horse").await;
    assert_eq!(ann["email"], "ann@example.com");
    assert!(ann.get("password_hash").is_none());

    let a = site
        .call(
            Method::POST,
            "/login",
            "",
            Some(json!({"login": "ann@example.com", "password": "correct horse"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body["token"].as_str().unwrap().starts_with("rks_"));
    let set = a.set_cookie.clone().unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "the cookie lacks {flag}: {set}");
    }
    let cookie = format!("cookie:{}", a.cookie());
    let token = a.body["token"].as_str().unwrap().to_string();
    // The session keeps where the login came from: the connection's peer; so do the audit
    // events of a registration and of a failed login (their origin).
    let ann_id = ann["id"].as_u64().unwrap();
    let sessions = site.ark.sessions().list(Some(ann_id), 10).await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].ip.as_deref(), Some("127.0.0.1"));
    let wrong = site
        .call(
            Method::POST,
            "/login",
            "",
            Some(json!({"login": "ann@example.com", "password": "not it"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let events = site.ark.audit().list(Some(ann_id), None, 50).await.unwrap();
    for action in ["user_created", "login_ok", "login_failed"] {
        assert!(
            events
                .iter()
                .any(|e| e.action == action && e.origin.as_deref() == Some("web, 127.0.0.1")),
            "{action}: {events:?}"
        );
    }

    let me = site.call(Method::GET, "/me", &cookie, None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user"]["email"], "ann@example.com");
    assert!(
        me.body["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "basic_access")
    );
    let by_token = site.call(Method::GET, "/me", &token, None).await;
    assert_eq!(by_token.body["user"]["id"], me.body["user"]["id"]);

    let put = site
        .call(
            Method::PUT,
            "/workspace",
            &cookie,
            Some(json!({"notes": ["first"], "theme": "dark"})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let ws = site.call(Method::GET, "/workspace", &cookie, None).await;
    assert_eq!(ws.body["theme"], "dark");
    assert_eq!(ws.body["notes"], json!(["first"]));
    let not_object = site
        .call(Method::PUT, "/workspace", &cookie, Some(json!([1, 2])))
        .await;
    assert_eq!(not_object.status, StatusCode::BAD_REQUEST);
    assert!(not_object.body["error"].is_string());

    for (i, title) in ["sunrise", "sunset"].iter().enumerate() {
        let p = site
            .call(
                Method::POST,
                "/pieces",
                &token,
                Some(json!({"title": title})),
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED);
        assert_eq!(p.body["number"], i as u64 + 1);
    }
    let list = site.call(Method::GET, "/pieces", &cookie, None).await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    let second = site.call(Method::GET, "/pieces/2", &cookie, None).await;
    assert_eq!(second.body["title"], "sunset");
    assert_eq!(
        site.call(Method::GET, "/pieces/3", &cookie, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        site.call(Method::GET, "/pieces/x", &cookie, None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let admin = site.call(Method::GET, "/admin/users", &cookie, None).await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN);
    assert!(
        admin.body["error"]
            .as_str()
            .unwrap()
            .contains("user_management")
    );
    // The first administrator must change the password `init` set before anything else.
    let (root_cookie, _) = site.login("root@example.com", "root password").await;
    let early = site
        .call(Method::GET, "/admin/users", &root_cookie, None)
        .await;
    assert_eq!(early.status, StatusCode::FORBIDDEN);
    assert!(
        early.body["error"]
            .as_str()
            .unwrap()
            .contains("change your password first"),
        "{}",
        early.body
    );
    assert_eq!(
        site.call(Method::GET, "/me", &root_cookie, None)
            .await
            .status,
        StatusCode::OK
    );
    let changed = site
        .call(
            Method::POST,
            "/password",
            &root_cookie,
            Some(json!({"old": "root password", "new": "root password 2"})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    // The cookie login was renewed with the change: the new cookie reaches the rest.
    let root_cookie = format!("cookie:{}", changed.cookie());
    let users = site
        .call(Method::GET, "/admin/users", &root_cookie, None)
        .await;
    assert_eq!(users.status, StatusCode::OK);
    assert_eq!(users.body.as_array().unwrap().len(), 2);
    // A malformed page is a JSON error like the rest, not axum's plain text.
    let bad = site
        .call(Method::GET, "/admin/users?limit=many", &root_cookie, None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("limit")),
        "{}",
        bad.body
    );

    let out = site.call(Method::POST, "/logout", &cookie, None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let gone = site.call(Method::GET, "/me", &cookie, None).await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gone.body["error"], "sign in first");
    let out = site.call(Method::POST, "/logout", &token, None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        site.call(Method::GET, "/me", &token, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A bearer client's logout, as the cookie's above and the password change, names where
    // it came from in the audit log.
    let (_, bearer) = site.login("ann@example.com", "correct horse").await;
    let out = site.call(Method::POST, "/logout", &bearer, None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let from_web = |events: &[redkeep::auth::audit::AuditEvent], action: &str| {
        events
            .iter()
            .filter(|e| e.action == action && e.origin.as_deref() == Some("web, 127.0.0.1"))
            .count()
    };
    let events = site.ark.audit().list(Some(ann_id), None, 50).await.unwrap();
    assert_eq!(from_web(&events, "session_revoked"), 2, "{events:?}");
    let root = site.ark.users().by_email("root@example.com".into()).await;
    let root_id = root.unwrap().unwrap().id;
    let events = site
        .ark
        .audit()
        .list(Some(root_id), None, 50)
        .await
        .unwrap();
    assert_eq!(from_web(&events, "password_changed"), 1, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_with_fitting_statuses() {
    let site = Site::start().await;
    site.register("bob@example.com", "correct horse").await;
    let cases = [
        (
            Method::POST,
            "/login",
            json!({"login": "bob@example.com", "password": "wrong"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::POST,
            "/login",
            json!({"login": "bob@example.com"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/register",
            json!({"email": "bob@example.com", "password": "correct horse", "invite": "rki_nope"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/register",
            json!({"email": "not-an-email", "password": "correct horse"}),
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, "/nowhere", Value::Null, StatusCode::NOT_FOUND),
        (Method::GET, "/me", Value::Null, StatusCode::UNAUTHORIZED),
        (
            Method::GET,
            "/register",
            Value::Null,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (method, path, body, status) in cases {
        let body = (!body.is_null()).then_some(body);
        let a = site.call(method.clone(), path, "", body).await;
        assert_eq!(a.status, status, "{method} {path}: {}", a.body);
        assert!(a.body["error"].is_string(), "{method} {path}: {}", a.body);
    }
    // Over the body limit: 413, and the limit said, from the declared length alone. The
    // client sends only its headers: the server answers without reading a body it refuses,
    // so a client still writing 3 MiB could find the connection closed before the answer.
    let address = site.base.trim_start_matches("http://").to_string();
    let raw = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(address).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "POST /password-reset/request HTTP/1.1\r\nHost: test\r\nContent-Type: \
             application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            3 << 20
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    let body: Value = serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap_or_default())
        .unwrap_or_else(|_| panic!("not JSON: {raw}"));
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("over the limit of 2097152 bytes")),
        "{body}"
    );
    // Nested past what serde reads: 400 with the limit said, not the parser's path.
    let (cookie, _) = site.login("bob@example.com", "correct horse").await;
    let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
    let resp = site
        .http
        .post(format!("{}/pieces", site.base))
        .header("Cookie", cookie.strip_prefix("cookie:").unwrap())
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"],
        "the body nests objects and arrays deeper than 127 levels"
    );
    let code = site.invite().await;
    let taken = site
        .call(
            Method::POST,
            "/register",
            "",
            Some(json!({"email": "BOB@example.com", "password": "correct horse", "invite": code})),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert_eq!(taken.body["error"], "an account with this email exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_from_request_to_new_login() {
    let site = Site::start().await;
    site.register("cat@example.com", "old password").await;
    let (cookie, token) = site.login("cat@example.com", "old password").await;

    for email in ["cat@example.com", "nobody@example.com", "not an email"] {
        let a = site
            .call(
                Method::POST,
                "/password-reset/request",
                "",
                Some(json!({"email": email})),
            )
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{email}");
    }
    let mails = site.outbox.at_least(1).await;
    assert_eq!(mails.len(), 1, "only the account's owner gets mail");
    assert_eq!(mails[0].0, "cat@example.com");
    let reset = mails[0].1.clone();
    assert!(reset.starts_with("rkr_"));

    let weak = site
        .call(
            Method::POST,
            "/password-reset/confirm",
            "",
            Some(json!({"token": reset, "password": "short"})),
        )
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    let ok = site
        .call(
            Method::POST,
            "/password-reset/confirm",
            "",
            Some(json!({"token": reset, "password": "new password!"})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let again = site
        .call(
            Method::POST,
            "/password-reset/confirm",
            "",
            Some(json!({"token": reset, "password": "other password"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "single use");

    for auth in [&cookie, &token] {
        assert_eq!(
            site.call(Method::GET, "/me", auth, None).await.status,
            StatusCode::UNAUTHORIZED,
            "sessions from before the reset end"
        );
    }
    let old = site
        .call(
            Method::POST,
            "/login",
            "",
            Some(json!({"login": "cat@example.com", "password": "old password"})),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    site.login("cat@example.com", "new password!").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_renews_a_cookie_login_and_ends_the_others() {
    let site = Site::start().await;
    site.register("dan@example.com", "first password").await;
    let (this, this_token) = site.login("dan@example.com", "first password").await;
    let (other, other_token) = site.login("dan@example.com", "first password").await;
    let wrong = site
        .call(
            Method::POST,
            "/password",
            &this,
            Some(json!({"old": "not it", "new": "second password"})),
        )
        .await;
    // Signed in, but the current password is wrong: 403 that says so (a 401 would tell the
    // client its session is gone).
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(
        wrong.body["error"]
            .as_str()
            .unwrap()
            .starts_with("the current password is wrong"),
        "{}",
        wrong.body
    );
    let changed = site
        .call(
            Method::POST,
            "/password",
            &this,
            Some(json!({"old": "first password", "new": "second password"})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    // The cookie login is renewed: a new cookie id and a new session, whose token comes
    // back. Nothing of the old login works: not its cookie id, not the token `/login`
    // handed out with it (a leak the user changes the password over), nor the others.
    let renewed = format!("cookie:{}", changed.cookie());
    assert_ne!(renewed, this);
    let new_token = changed.body["token"].as_str().unwrap().to_string();
    assert_ne!(new_token, this_token);
    for auth in [&renewed, &new_token] {
        let me = site.call(Method::GET, "/me", auth, None).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.body);
        assert_eq!(me.body["user"]["email"], "dan@example.com", "{}", me.body);
    }
    for auth in [&this, &this_token, &other, &other_token] {
        assert_eq!(
            site.call(Method::GET, "/me", auth, None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let this = renewed;
    // Through a bearer session: that session stays.
    let (_, token) = site.login("dan@example.com", "second password").await;
    let changed = site
        .call(
            Method::POST,
            "/password",
            &token,
            Some(json!({"old": "second password", "new": "third password"})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(
        site.call(Method::GET, "/me", &token, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        site.call(Method::GET, "/me", &this, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_account_signs_its_cookie_sessions_out() {
    let site = Site::start().await;
    let eve = site.register("eve@example.com", "correct horse").await;
    let (cookie, _) = site.login("eve@example.com", "correct horse").await;
    site.ark
        .users()
        .disable(eve["id"].as_u64().unwrap())
        .await
        .unwrap();
    assert_eq!(
        site.call(Method::GET, "/me", &cookie, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_work_until_revoked_or_expired() {
    let site = Site::start().await;
    let fay = site.register("fay@example.com", "correct horse").await;
    let fay_id = fay["id"].as_u64().unwrap();
    let key = |expires_in, owner, scopes: Vec<&'static str>| {
        let ark = site.ark.clone();
        async move {
            ark.api_keys()
                .create(ApiKeySpec {
                    owner,
                    scopes: scopes.into_iter().map(String::from).collect(),
                    expires_in,
                    created_by: None,
                })
                .await
                .unwrap()
                .key
                .expose()
                .to_string()
        }
    };
    let valid = key(None, KeyOwner::User(fay_id), vec![]).await;
    let who = site.call(Method::GET, "/api/whoami", &valid, None).await;
    assert_eq!(who.status, StatusCode::OK, "{}", who.body);
    assert_eq!(who.body["kind"], "user_key");
    assert_eq!(who.body["user"]["email"], "fay@example.com");
    assert!(
        who.body["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "basic_access")
    );

    let scoped = key(None, KeyOwner::User(fay_id), vec!["basic_access"]).await;
    let who = site.call(Method::GET, "/api/whoami", &scoped, None).await;
    assert_eq!(who.body["permissions"], json!(["basic_access"]));

    let revoked = key(None, KeyOwner::User(fay_id), vec![]).await;
    site.ark.api_keys().revoke(revoked.clone()).await.unwrap();
    let expiring = key(
        Some(Duration::from_secs(60)),
        KeyOwner::User(fay_id),
        vec![],
    )
    .await;
    assert_eq!(
        site.call(Method::GET, "/api/whoami", &expiring, None)
            .await
            .status,
        StatusCode::OK
    );
    site.clock.advance(Duration::from_secs(61));
    for bad in [
        &revoked,
        &expiring,
        &"rkk_not_a_key".to_string(),
        &"Basic abc".to_string(),
    ] {
        let a = site.call(Method::GET, "/api/whoami", bad, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(a.body["error"].is_string());
    }
    let none = site.call(Method::GET, "/api/whoami", "", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);

    let org = site
        .ark
        .orgs()
        .create(OrgSpec {
            name: "Acme".into(),
            slug: None,
            description: String::new(),
            owner: fay_id,
        })
        .await
        .unwrap();
    let org_key = key(None, KeyOwner::Org(org.id), vec!["reports:read"]).await;
    let who = site.call(Method::GET, "/api/whoami", &org_key, None).await;
    assert_eq!(who.body["kind"], "org_key");
    assert_eq!(who.body["org"]["slug"], "acme");
    assert_eq!(who.body["permissions"], json!(["reports:read"]));
    assert_eq!(
        site.call(Method::GET, "/me", &org_key, None).await.status,
        StatusCode::FORBIDDEN,
        "an org's key has no user"
    );
    // A key is not logged out (that would look like a revocation that did not happen).
    let out = site.call(Method::POST, "/logout", &valid, None).await;
    assert_eq!(out.status, StatusCode::BAD_REQUEST);
    assert!(
        out.body["error"]
            .as_str()
            .unwrap()
            .contains("apikey revoke"),
        "{}",
        out.body
    );
    // A user's key reaches the /api/ routes only, whatever its scopes: the user's own
    // routes act as the user in full.
    for (method, path, body) in [
        (Method::GET, "/me", None),
        (Method::PUT, "/workspace", Some(json!({"w": 1}))),
        (Method::POST, "/pieces", Some(json!({"title": "by key"}))),
    ] {
        let a = site.call(method, path, &valid, body).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            a.body["error"].as_str().unwrap().contains("/api/ routes"),
            "{}",
            a.body
        );
    }
    // A user's key opens nothing once its owner is disabled.
    site.ark.users().disable(fay_id).await.unwrap();
    let a = site.call(Method::GET, "/api/whoami", &valid, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    let refused = redkeep::web::Caller::from_token(&site.ark, &scoped).await;
    assert!(
        matches!(refused, Err(redkeep::Error::InvalidCredential { .. })),
        "{refused:?}"
    );
}

/// The cookie of a login lives as long as the login's session may (its absolute expiry),
/// whatever the session layer's own expiry: with a session lifetime of two days, the cookie
/// used to end 12 hours after login (the example layer's `OnInactivity`, counted from the
/// last save, which comes only at login), however active the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_lives_as_long_as_its_login() {
    let site = Site::start_with(|o| {
        o.sessions.ttl = std::time::Duration::from_secs(2 * 86_400);
    })
    .await;
    site.register("hal@example.com", "correct horse").await;
    let a = site
        .call(
            Method::POST,
            "/login",
            "",
            Some(json!({"login": "hal@example.com", "password": "correct horse"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let set = a.set_cookie.expect("a Set-Cookie header");
    let max_age: i64 = set
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("no Max-Age: {set}"))
        .parse()
        .unwrap();
    // Real seconds pass between the login and the header (a slow machine): a minute's slack.
    assert!(
        (2 * 86_400 - 60..=2 * 86_400).contains(&max_age),
        "the cookie ends with the login: {set}"
    );
    let session = &site.ark.sessions().list(None, 10).await.unwrap()[0];
    assert_eq!(
        session.expires_at.0 - session.created_at.0,
        2 * 86_400,
        "{session:?}"
    );
}

/// A layer whose cookies last the browser session (`Expiry::OnSessionEnd`) keeps them so
/// after `sign_in`: pinning every cookie to the login's expiry made them outlive the
/// browser, for days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_session_cookie_stays_one_after_sign_in() {
    use axum::Router;
    use axum::extract::State;
    use axum::routing::post;
    use axum_login::tower_sessions::{Expiry, SessionManagerLayer};
    use axum_login::{AuthManagerLayerBuilder, AuthSession};
    use redkeep::web::{Backend, RedkeepSessionStore};

    async fn login(State(ark): State<AsyncRedkeep>, mut auth: AuthSession<Backend>) -> StatusCode {
        let login = ark
            .sessions()
            .login(
                "ann@example.com".into(),
                "correct horse",
                redkeep::auth::sessions::LoginMeta::default(),
            )
            .await
            .unwrap();
        Backend::sign_in(&mut auth, &login).await.unwrap();
        StatusCode::NO_CONTENT
    }

    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().password(PasswordParams::INSECURE_FAST);
    let ark = AsyncRedkeep::open(dir.path().to_path_buf(), options)
        .await
        .unwrap();
    ark.users()
        .create(redkeep::NewUser {
            email: "ann@example.com".into(),
            password: Some("correct horse".into()),
            ..redkeep::NewUser::default()
        })
        .await
        .unwrap();
    let sessions = SessionManagerLayer::new(RedkeepSessionStore::new(ark.clone()))
        .with_secure(false)
        .with_expiry(Expiry::OnSessionEnd);
    let auth = AuthManagerLayerBuilder::new(Backend::new(ark.clone()), sessions).build();
    let app = Router::new()
        .route("/login", post(login))
        .layer(auth)
        .with_state(ark.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let resp = Client::new()
        .post(format!("{base}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let set = resp
        .headers()
        .get("set-cookie")
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        !set.contains("Max-Age") && !set.contains("Expires"),
        "a browser-session cookie: {set}"
    );
}

/// A cookie login is one of redkeep's login sessions: the token `/login` hands out is the
/// same session, it shows in the session list, and ending it any way (a revocation by the
/// operator, a logout through either credential, its idle deadline) ends both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_login_ends_with_its_redkeep_session() {
    let site = Site::start().await;
    let gil = site.register("gil@example.com", "correct horse").await;
    let gil_id = gil["id"].as_u64().unwrap();
    let status = |auth: String| {
        let site = &site;
        async move { site.call(Method::GET, "/me", &auth, None).await.status }
    };

    // Revoked by its short id (as `redkeep session revoke` does): the cookie is out too.
    let (cookie, token) = site.login("gil@example.com", "correct horse").await;
    let listed = site.ark.sessions().list(Some(gil_id), 10).await.unwrap();
    assert_eq!(listed.len(), 1, "one login, one session: {listed:?}");
    assert!(token.starts_with(&listed[0].short_id), "{listed:?}");
    assert_eq!(status(cookie.clone()).await, StatusCode::OK);
    site.ark
        .sessions()
        .revoke(listed[0].short_id.clone())
        .await
        .unwrap();
    assert_eq!(status(cookie).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(token).await, StatusCode::UNAUTHORIZED);

    // A logout with the bearer token signs the cookie out.
    let (cookie, token) = site.login("gil@example.com", "correct horse").await;
    let out = site.call(Method::POST, "/logout", &token, None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(status(cookie).await, StatusCode::UNAUTHORIZED);

    // A logout with the cookie ends the token's session.
    let (cookie, token) = site.login("gil@example.com", "correct horse").await;
    let out = site.call(Method::POST, "/logout", &cookie, None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(status(token).await, StatusCode::UNAUTHORIZED);
    assert!(
        site.ark
            .sessions()
            .list(Some(gil_id), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A cookie whose login ended is cleared, not kept signed-in-but-stale (axum-login gives
    // a new id only to a cookie without auth data); the next login gets a new id anyway.
    let (cookie, token) = site.login("gil@example.com", "correct horse").await;
    let web_sessions = || site.ark.sync().web_sessions().count().unwrap();
    let before = web_sessions();
    site.call(Method::POST, "/logout", &token, None).await;
    assert_eq!(status(cookie.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        web_sessions(),
        before - 1,
        "the ended cookie's data is dropped"
    );
    let again = site
        .call(
            Method::POST,
            "/login",
            &cookie,
            Some(json!({"login": "gil@example.com", "password": "correct horse"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_ne!(format!("cookie:{}", again.cookie()), cookie, "a new id");

    // Signing in again over a signed-in cookie replaces that login: its token ends too.
    site.call(
        Method::POST,
        "/logout",
        &format!("cookie:{}", again.cookie()),
        None,
    )
    .await;
    let (first_cookie, first_token) = site.login("gil@example.com", "correct horse").await;
    let over = site
        .call(
            Method::POST,
            "/login",
            &first_cookie,
            Some(json!({"login": "gil@example.com", "password": "correct horse"})),
        )
        .await;
    assert_eq!(over.status, StatusCode::OK);
    // A new session id (a cookie planted before the login gains nothing), and the old one
    // is signed in no more.
    assert_ne!(format!("cookie:{}", over.cookie()), first_cookie);
    let old = site.call(Method::GET, "/me", &first_cookie, None).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    assert_eq!(status(first_token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        site.ark
            .sessions()
            .list(Some(gil_id), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    site.call(
        Method::POST,
        "/logout",
        &format!("cookie:{}", over.cookie()),
        None,
    )
    .await;

    // Used within its idle timeout, the login lives on; left idle past it, it ends.
    let (cookie, _) = site.login("gil@example.com", "correct horse").await;
    for _ in 0..3 {
        site.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(status(cookie.clone()).await, StatusCode::OK);
    }
    site.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(status(cookie).await, StatusCode::UNAUTHORIZED);

    // The cookie of an account deleted since is cleared too: its data kept, a cookie planted
    // in a browser would keep its id through its victim's next login.
    let hal = site.register("hal@example.com", "correct horse").await;
    let (cookie, _) = site.login("hal@example.com", "correct horse").await;
    let web_sessions = || site.ark.sync().web_sessions().count().unwrap();
    let before = web_sessions();
    site.ark
        .users()
        .delete(hal["id"].as_u64().unwrap())
        .await
        .unwrap();
    assert_eq!(status(cookie).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        web_sessions(),
        before - 1,
        "the deleted account's cookie data is dropped"
    );
}

/// A small app on `ark`, as a handler following axum-login's own idiom writes it: `/login`
/// takes the form (JSON) to `auth.authenticate` and signs the user it returns in with
/// `Backend::sign_in_user`; `/bare-login` and `/bare-logout` are axum-login's bare
/// `auth.login(&user)` and `auth.logout()`; `/me` answers the signed-in email (401
/// without); `/` is a public page that says whether the cookie is signed in.
fn idiom_app(ark: AsyncRedkeep) -> axum::Router {
    use axum::Json;
    use axum::routing::{get, post};
    use axum_login::tower_sessions::SessionManagerLayer;
    use axum_login::{AuthManagerLayerBuilder, AuthSession};
    use redkeep::web::{Backend, Credentials, RedkeepSessionStore};

    async fn login(mut auth: AuthSession<Backend>, Json(creds): Json<Credentials>) -> StatusCode {
        match auth.authenticate(creds).await {
            Ok(Some(user)) => match Backend::sign_in_user(&mut auth, &user).await {
                Ok(()) => StatusCode::NO_CONTENT,
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Ok(None) => StatusCode::UNAUTHORIZED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    // As axum-login's own examples write them: a bare `auth.login`, a bare `auth.logout`.
    async fn bare_login(
        mut auth: AuthSession<Backend>,
        Json(creds): Json<Credentials>,
    ) -> StatusCode {
        match auth.authenticate(creds).await {
            Ok(Some(user)) => match auth.login(&user).await {
                Ok(()) => StatusCode::NO_CONTENT,
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Ok(None) => StatusCode::UNAUTHORIZED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    async fn bare_logout(mut auth: AuthSession<Backend>) -> StatusCode {
        match auth.logout().await {
            Ok(_) => StatusCode::NO_CONTENT,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    async fn me(auth: AuthSession<Backend>) -> (StatusCode, String) {
        match auth.user {
            Some(u) => (StatusCode::OK, u.user.email),
            None => (StatusCode::UNAUTHORIZED, String::new()),
        }
    }
    async fn public(auth: AuthSession<Backend>) -> String {
        format!("public page; signed in: {}", auth.user.is_some())
    }

    let sessions =
        SessionManagerLayer::new(RedkeepSessionStore::new(ark.clone())).with_secure(false);
    let auth = AuthManagerLayerBuilder::new(Backend::new(ark), sessions).build();
    axum::Router::new()
        .route("/login", post(login))
        .route("/bare-login", post(bare_login))
        .route("/bare-logout", post(bare_logout))
        .route("/me", get(me))
        .route("/", get(public))
        .layer(auth)
}

/// A server of `app` on a loopback port: its base URL, and what stops it (awaited, every
/// handle it held is dropped).
async fn serve(app: axum::Router) -> (String, impl std::future::Future<Output = ()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .await
            .unwrap()
    });
    let shutdown = async move {
        stop.send(()).unwrap();
        server.await.unwrap();
    };
    (base, shutdown)
}

/// A request to `url`, with the cookie `cookie` (`name=value`) if any: the status, the
/// cookie the answer set (`name=value`) and the body.
async fn request(
    method: Method,
    url: String,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> (StatusCode, Option<String>, String) {
    let mut req = Client::new().request(method, url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    if let Some(f) = form {
        let body: serde_json::Map<String, Value> =
            f.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let set = resp.headers().get("set-cookie").map(|v| {
        v.to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_string()
    });
    (status, set, resp.text().await.unwrap())
}

async fn store_with(emails: &[&str], options: Options) -> (tempfile::TempDir, AsyncRedkeep) {
    let dir = tempfile::tempdir().unwrap();
    let ark = AsyncRedkeep::open(dir.path().to_path_buf(), options)
        .await
        .unwrap();
    for email in emails {
        ark.users()
            .create(redkeep::NewUser {
                email: email.to_string(),
                password: Some("correct horse".into()),
                ..redkeep::NewUser::default()
            })
            .await
            .unwrap();
    }
    (dir, ark)
}

/// Session fixation through axum-login's idiom: an attacker signs in to their own account
/// and plants that cookie in the victim's browser; the victim then signs in over it. The
/// victim's login gets a new cookie id, the planted one carries nothing (the attacker's
/// login ended with it), and only the victim's redkeep session is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_signed_in_cookie_never_carries_the_next_login() {
    let options = Options::default().password(PasswordParams::INSECURE_FAST);
    let (_dir, ark) = store_with(&["eve@example.com", "vic@example.com"], options).await;
    let (base, _stop) = serve(idiom_app(ark.clone())).await;
    let form = |who: &'static str| [("login", who), ("password", "correct horse")];

    let (status, planted, _) = request(
        Method::POST,
        format!("{base}/login"),
        None,
        Some(&form("eve@example.com")),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let planted = planted.expect("the attacker's cookie");
    let (status, _, who) = request(Method::GET, format!("{base}/me"), Some(&planted), None).await;
    assert_eq!((status, who.as_str()), (StatusCode::OK, "eve@example.com"));

    // The victim's browser, holding the planted cookie, signs in.
    let (status, set, _) = request(
        Method::POST,
        format!("{base}/login"),
        Some(&planted),
        Some(&form("vic@example.com")),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let victims = set.expect("the victim's login sets a cookie");
    assert_ne!(victims, planted, "the login gets a new cookie id");
    let (status, _, who) = request(Method::GET, format!("{base}/me"), Some(&victims), None).await;
    assert_eq!((status, who.as_str()), (StatusCode::OK, "vic@example.com"));

    // The attacker's copy carries nothing: not the victim's login, nor their own.
    let (status, _, who) = request(Method::GET, format!("{base}/me"), Some(&planted), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the planted cookie signed in as {who}"
    );
    let left = ark.sessions().list(None, 10).await.unwrap();
    assert_eq!(left.len(), 1, "only the victim's login is left: {left:?}");
    let vic = ark
        .users()
        .by_email("vic@example.com".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left[0].user_id, vic.id);
}

/// axum-login's bare `auth.login(&user)` (as its own examples show) fails closed: the
/// cookie is signed out on its next request and the login ends, on a fresh cookie and on
/// one signed in before (whose id it kept, known to whoever planted it, and whose earlier
/// login used to live on). Nothing signs a cookie in but `Backend::sign_in_user`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_axum_login_signs_nobody_in_and_ends_the_logins() {
    let options = Options::default().password(PasswordParams::INSECURE_FAST);
    let (_dir, ark) = store_with(&["eve@example.com", "vic@example.com"], options).await;
    let (base, _stop) = serve(idiom_app(ark.clone())).await;
    let form = |who: &'static str| [("login", who), ("password", "correct horse")];

    let (status, fresh, _) = request(
        Method::POST,
        format!("{base}/bare-login"),
        None,
        Some(&form("vic@example.com")),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let fresh = fresh.expect("the bare login sets a cookie");
    let (status, _, who) = request(Method::GET, format!("{base}/me"), Some(&fresh), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "signed in as {who}");
    let left = ark.sessions().list(None, 10).await.unwrap();
    assert!(left.is_empty(), "the bare login's session ended: {left:?}");

    // A signed-in cookie (planted by eve), then a bare login of vic over it.
    let (status, planted, _) = request(
        Method::POST,
        format!("{base}/login"),
        None,
        Some(&form("eve@example.com")),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let planted = planted.unwrap();
    let (status, _, _) = request(
        Method::POST,
        format!("{base}/bare-login"),
        Some(&planted),
        Some(&form("vic@example.com")),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left = ark.sessions().list(None, 10).await.unwrap();
    assert_eq!(
        left.len(),
        1,
        "eve's login ended with the bare login: {left:?}"
    );
    let (status, _, who) = request(Method::GET, format!("{base}/me"), Some(&planted), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the planted cookie is {who}"
    );
    let left = ark.sessions().list(None, 10).await.unwrap();
    assert!(left.is_empty(), "no login lives on: {left:?}");
}

/// axum-login's bare `auth.logout()` (without `Backend::logout`) ends the cookie's redkeep
/// session too: it used to stay, in `session list` and with its token working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_axum_logout_ends_the_redkeep_session() {
    let options = Options::default().password(PasswordParams::INSECURE_FAST);
    let (_dir, ark) = store_with(&["ann@example.com", "bob@example.com"], options).await;
    let (base, _stop) = serve(idiom_app(ark.clone())).await;
    let mut cookies = Vec::new();
    for who in ["ann@example.com", "bob@example.com"] {
        let (status, cookie, _) = request(
            Method::POST,
            format!("{base}/login"),
            None,
            Some(&[("login", who), ("password", "correct horse")]),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        cookies.push(cookie.unwrap());
    }
    assert_eq!(ark.sessions().list(None, 10).await.unwrap().len(), 2);

    let (status, _, _) = request(
        Method::POST,
        format!("{base}/bare-logout"),
        Some(&cookies[0]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left = ark.sessions().list(None, 10).await.unwrap();
    let bob = ark
        .users()
        .by_email("bob@example.com".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.len(), 1, "ann's login ended, bob's lives: {left:?}");
    assert_eq!(left[0].user_id, bob.id);
    let (status, _, _) = request(Method::GET, format!("{base}/me"), Some(&cookies[0]), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, who) =
        request(Method::GET, format!("{base}/me"), Some(&cookies[1]), None).await;
    assert_eq!((status, who.as_str()), (StatusCode::OK, "bob@example.com"));
}

/// On a store opened read-only (a maintenance window), a browser whose cookie login ended
/// still gets the public pages, signed out: the session layer cannot remove the ended
/// login's record, and that is no error (it used to answer 500 to every request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_cookie_login_on_a_read_only_store_reads_as_signed_out() {
    let options = Options::default().password(PasswordParams::INSECURE_FAST);
    let (dir, ark) = store_with(&["ann@example.com"], options.clone()).await;
    let (base, stop) = serve(idiom_app(ark.clone())).await;
    let (status, cookie, _) = request(
        Method::POST,
        format!("{base}/login"),
        None,
        Some(&[("login", "ann@example.com"), ("password", "correct horse")]),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cookie = cookie.unwrap();
    let session = ark.sessions().list(None, 10).await.unwrap().remove(0);
    ark.sessions().revoke(session.short_id).await.unwrap();
    stop.await;
    ark.close().await.unwrap();

    let ark = AsyncRedkeep::open(dir.path().to_path_buf(), options.read_only(true))
        .await
        .unwrap();
    let (base, _stop) = serve(idiom_app(ark.clone())).await;
    for _ in 0..2 {
        let (status, _, body) = request(Method::GET, format!("{base}/"), Some(&cookie), None).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "public page; signed in: false")
        );
    }
    let (status, _, _) = request(Method::GET, format!("{base}/me"), Some(&cookie), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A clock that stops every caller while it is held: a call blocked in it stands for one
/// whose hash takes long, holding its thread of the blocking pool.
#[derive(Debug, Default)]
struct HeldClock {
    held: Mutex<bool>,
    released: std::sync::Condvar,
}

impl Clock for HeldClock {
    fn now(&self) -> redkeep::Timestamp {
        let mut held = self.held.lock().unwrap();
        while *held {
            held = self.released.wait(held).unwrap();
        }
        SystemClock.now()
    }
}

impl HeldClock {
    fn hold(&self, hold: bool) {
        *self.held.lock().unwrap() = hold;
        self.released.notify_all();
    }
}

/// A flood of logins (through the facade and through the web backend) waits for its turn
/// to hash as futures, not as threads of the blocking pool: with more logins waiting than
/// the pool has threads, a cheap call still gets a thread and completes. (It used to queue
/// behind every login, and the whole site with it.) No timing: the logins are held inside
/// their work until the cheap call is done; the timeout only ends a test that would hang.
#[test]
fn a_login_flood_leaves_the_blocking_pool_to_other_calls() {
    use axum_login::AuthnBackend;
    use redkeep::web::{Backend, Credentials};

    const POOL: usize = 4;
    const LOGINS: usize = 3 * POOL;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(POOL)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let clock = Arc::new(HeldClock::default());
        let options = Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .max_concurrent_hashes(1)
            .clock(clock.clone());
        let (_dir, ark) = store_with(&["ann@example.com"], options).await;
        let backend = Backend::new(ark.clone());

        clock.hold(true);
        // Each login says when its first poll is done: it then holds a pool thread, or
        // waits for its turn to hash.
        let polled = Arc::new(tokio::sync::Semaphore::new(0));
        let mut logins = tokio::task::JoinSet::new();
        for i in 0..LOGINS {
            let (ark, backend, polled) = (ark.clone(), backend.clone(), polled.clone());
            logins.spawn(async move {
                let login: std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> =
                    if i % 2 == 0 {
                        Box::pin(async move {
                            ark.sessions()
                                .login(
                                    "ann@example.com".into(),
                                    "correct horse",
                                    redkeep::auth::sessions::LoginMeta::default(),
                                )
                                .await
                                .is_ok()
                        })
                    } else {
                        Box::pin(async move {
                            let creds = Credentials {
                                login: "ann@example.com".into(),
                                password: "correct horse".into(),
                                meta: redkeep::auth::sessions::LoginMeta::default(),
                            };
                            matches!(backend.authenticate(creds).await, Ok(Some(_)))
                        })
                    };
                let mut login = login;
                let mut first = true;
                std::future::poll_fn(|cx| {
                    let out = login.as_mut().poll(cx);
                    if std::mem::take(&mut first) {
                        polled.add_permits(1);
                    }
                    out
                })
                .await
            });
        }
        let all = u32::try_from(LOGINS).unwrap();
        polled.acquire_many(all).await.unwrap().forget();

        let cheap = tokio::time::timeout(Duration::from_secs(30), async {
            ark.users().count().await.unwrap()
        })
        .await;
        // Released before any assertion: the held logins must end for the runtime to stop.
        clock.hold(false);
        assert_eq!(
            cheap.ok(),
            Some(1),
            "a cheap call waited behind {LOGINS} held logins (the pool has {POOL} threads)"
        );
        let mut signed_in = 0;
        while let Some(ok) = logins.join_next().await {
            signed_in += usize::from(ok.unwrap());
        }
        assert_eq!(signed_in, LOGINS);
    });
}

/// A user at the cap on pieces is answered 409 with what to do (remove pieces), and their
/// pieces stay listed, loadable and removable; `GET /pieces` lists a page at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_gallery_is_refused_409_and_pieces_are_listed_by_page() {
    let site = Site::start_with(|o| o.workspace.max_pieces = Some(3)).await;
    site.register("ann@example.com", "correct horse").await;
    let (_, token) = site.login("ann@example.com", "correct horse").await;
    let save = || {
        site.call(
            Method::POST,
            "/pieces",
            &token,
            Some(json!({"title": "sunset"})),
        )
    };
    for n in 1..=3 {
        let saved = save().await;
        assert_eq!(
            (saved.status, saved.body["number"].as_u64()),
            (StatusCode::CREATED, Some(n))
        );
    }
    let full = save().await;
    assert_eq!(full.status, StatusCode::CONFLICT, "{}", full.body);
    let said = full.body["error"].as_str().unwrap();
    assert!(
        said.contains("may hold at most 3")
            && said.contains("remove pieces")
            && !said.contains("max_pieces")
            && !said.contains("Options"),
        "{said}"
    );
    let page = |query: &'static str| site.call(Method::GET, query, &token, None);
    let numbers = |a: Answer| -> Vec<u64> {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["number"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(numbers(page("/pieces").await), [1, 2, 3]);
    assert_eq!(numbers(page("/pieces?limit=2").await), [1, 2]);
    assert_eq!(numbers(page("/pieces?after=2&limit=2").await), [3]);
    assert_eq!(numbers(page("/pieces?after=3").await), Vec::<u64>::new());
    assert_eq!(
        page("/pieces?after=x").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        site.call(Method::GET, "/pieces/3", &token, None).await.body["title"],
        "sunset"
    );
    // Removing a piece makes room (through the library: the example has no delete route).
    let ann = site
        .ark
        .users()
        .by_email("ann@example.com".into())
        .await
        .unwrap()
        .unwrap()
        .id;
    site.ark.workspaces().delete_piece(ann, 1).await.unwrap();
    assert_eq!(save().await.status, StatusCode::CREATED);
}

/// A page of pieces is 100 unless the client asks for fewer (and never more than 1000): a
/// gallery of thousands is not sent in one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_are_listed_100_at_a_time_unless_asked() {
    let site = Site::start().await;
    site.register("ann@example.com", "correct horse").await;
    let (_, token) = site.login("ann@example.com", "correct horse").await;
    let ann = site
        .ark
        .users()
        .by_email("ann@example.com".into())
        .await
        .unwrap()
        .unwrap()
        .id;
    for _ in 0..101 {
        site.ark
            .workspaces()
            .save_piece(ann, b"{}".to_vec())
            .await
            .unwrap();
    }
    let count = |a: Answer| a.body.as_array().unwrap().len();
    assert_eq!(
        count(site.call(Method::GET, "/pieces", &token, None).await),
        100
    );
    assert_eq!(
        count(
            site.call(Method::GET, "/pieces?limit=100000", &token, None)
                .await
        ),
        101
    );
    assert_eq!(
        count(
            site.call(Method::GET, "/pieces?after=100", &token, None)
                .await
        ),
        1
    );
}

/// Set in the helper process that runs the example server on this data dir.
const EXAMPLE_DIR_ENV: &str = "REDKEEP_TEST_EXAMPLE_SERVER_DIR";

/// Set in the helper process to run the example server with `--demo-mailer`.
const EXAMPLE_DEMO_MAILER_ENV: &str = "REDKEEP_TEST_EXAMPLE_DEMO_MAILER";

/// Not a test of its own: the example server, run in a process of its own by
/// `the_example_server_stops_cleanly_on_sigterm` (does nothing without its variable).
#[test]
fn helper_example_server() {
    let Some(dir) = std::env::var_os(EXAMPLE_DIR_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(server::serve(server::Arguments {
            dir: dir.into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            init: true,
            demo_mailer: std::env::var_os(EXAMPLE_DEMO_MAILER_ENV).is_some(),
            grace: Duration::ZERO,
        }))
        .unwrap();
}

/// The example server run with `--init` on `dir` in a process of its own, stdout piped (no
/// terminal, as under a service manager) and stderr to `log`: the process, the rest of its
/// stdout, what it printed up to "listening on", and the address it listens on.
fn spawn_example(
    dir: &std::path::Path,
    demo_mailer: bool,
    log: std::process::Stdio,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    String,
    String,
) {
    use std::io::BufRead;
    let mut start = std::process::Command::new(std::env::current_exe().unwrap());
    start
        .args([
            "--exact",
            "helper_example_server",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EXAMPLE_DIR_ENV, dir)
        .env_remove(EXAMPLE_DEMO_MAILER_ENV)
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    if demo_mailer {
        start.env(EXAMPLE_DEMO_MAILER_ENV, "1");
    }
    let mut child = start.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("listening on") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("the server ended before listening: {seen}");
        }
        seen.push_str(&line);
    }
    let address = seen
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    (child, out, seen, address)
}

/// Stops the example server `child` with SIGTERM; what it printed on stdout after `out` had
/// been read to, once it exited 0.
fn stop_example(
    mut child: std::process::Child,
    mut out: std::io::BufReader<std::process::ChildStdout>,
) -> String {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(status.success(), "{status:?}: {rest}");
    rest
}

/// The example server under a service manager (stdout no terminal, kept in a log) prints
/// no secret there: `--init` leaves the first administrator's password in a 0600 file of
/// the data dir and prints its path, and a password reset prints no token unless
/// `--demo-mailer` asks for it, which the server then says loudly at start; without it, it
/// says at start that resets send nothing and how to wire a mailer.
#[test]
fn the_example_server_prints_no_secret_to_its_stdout_unless_asked() {
    use std::os::unix::fs::PermissionsExt;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for demo in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("stderr");
        let (child, out, seen, address) = spawn_example(
            dir.path(),
            demo,
            std::fs::File::create(&log).unwrap().into(),
        );
        let file = dir.path().join(server::FIRST_PASSWORD_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
        assert!(password.len() >= 16, "{password:?}");
        assert!(
            !seen.contains(&password) && seen.contains(&file.display().to_string()),
            "{seen}"
        );
        let email = seen
            .split("created the first administrator ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_string();
        let (login, reset) = runtime.block_on(async {
            let http = Client::new();
            let post = |path: &str, body: Value| {
                http.post(format!("http://{address}{path}"))
                    .json(&body)
                    .send()
            };
            let login = post("/login", json!({"login": email, "password": password}));
            let login = login.await.unwrap().status();
            let reset = post("/password-reset/request", json!({"email": email}));
            (login, reset.await.unwrap().status())
        });
        assert_eq!((login, reset), (StatusCode::OK, StatusCode::ACCEPTED));
        let printed = seen + &stop_example(child, out);
        let said = std::fs::read_to_string(&log).unwrap();
        if demo {
            assert!(
                printed.contains(&format!("mail to {email}: reset your password with ")),
                "{printed}"
            );
            assert!(
                said.contains("WARNING: --demo-mailer prints every password-reset token"),
                "{said}"
            );
        } else {
            assert!(!printed.contains("reset your password"), "{printed}");
            assert!(
                said.contains("password resets send no mail")
                    && said.contains("wire a real mailer"),
                "{said}"
            );
        }
    }
}

/// The example server stopped by SIGTERM (what a service manager sends) finishes, closes
/// its admin socket and releases the store: neither the socket file nor the store's owner
/// marker is left behind, and it exits 0.
#[test]
fn the_example_server_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (child, out, _, address) = spawn_example(dir.path(), false, std::process::Stdio::null());
    let socket = dir.path().join(redkeep::admin::SOCKET_FILE);
    let owner = dir.path().join("redkeep.redb.owner");
    assert!(socket.exists() && owner.exists());
    // A client that sent half a request and waits: the stop does not wait for it past the
    // grace period (none here).
    let mut stalled = std::net::TcpStream::connect(address).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    let rest = stop_example(child, out);
    assert!(rest.contains("stopped"), "{rest}");
    assert!(!socket.exists(), "the admin socket is left");
    assert!(!owner.exists(), "the owner marker is left");
}

/// A login form's password is a `Secret`: wiped from memory when the credentials are
/// dropped, and never shown by `Debug`.
#[test]
fn login_credentials_keep_the_password_in_a_secret_never_shown() {
    let creds: redkeep::web::Credentials =
        serde_json::from_str(r#"{"login": "ann@example.com", "password": "hunter2 horse"}"#)
            .unwrap();
    let password: &redkeep::Secret = &creds.password;
    assert_eq!(password.expose(), "hunter2 horse");
    let shown = format!("{creds:?} {creds:#?} {:?}", creds.clone());
    assert!(
        !shown.contains("hunter2") && shown.contains("ann@example.com"),
        "{shown}"
    );
}

/// The example server on a data dir whose store was moved to a server said "no store in
/// DIR; pass --init to make one", advice that would make a second store on the moved
/// store's folders: it gives the library's refusal, which says where the store went. A data
/// dir that never held a store still gets the advice to pass --init.
#[test]
fn the_example_server_says_where_a_moved_store_went() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let serve = |dir: &std::path::Path| {
        runtime
            .block_on(server::serve(server::Arguments {
                dir: dir.to_path_buf(),
                listen: "127.0.0.1:0".parse().unwrap(),
                init: false,
                demo_mailer: false,
                grace: Duration::ZERO,
            }))
            .unwrap_err()
            .to_string()
    };
    let moved = tempfile::tempdir().unwrap();
    // The note a move to PostgreSQL leaves in place of the store file it renamed.
    std::fs::write(
        moved.path().join("redkeep.moved"),
        r#"{"to":"postgres://db.internal/app (schema redkeep)","kept":"redkeep.redb.moved-to-postgres-1"}"#,
    )
    .unwrap();
    let err = serve(moved.path());
    assert!(
        err.contains("was moved to postgres://db.internal/app (schema redkeep)")
            && !err.contains("--init"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    let err = serve(empty.path());
    assert!(
        err.starts_with("no store in ") && err.contains("pass --init"),
        "{err}"
    );
}

/// A data dir whose restore stopped part way (a crash or a kill) before the backup's
/// workspace folders were in place: the example server warns as it starts, naming the
/// state and `redkeep check --repair`, and answers the workspace routes 503 "not ready"
/// with a generic body (the cause goes to its log), where it answered 403 with the
/// operator's instruction and said nothing.
#[test]
fn a_stopped_restore_is_warned_at_start_and_answered_not_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let backup = tmp.path().join("b.tar");
    let options = Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = redkeep::Redkeep::open(&data, options.clone()).unwrap();
        rk.users()
            .create(redkeep::NewUser {
                email: "ann@example.com".into(),
                password: Some("a password 1".into()),
                ..redkeep::NewUser::default()
            })
            .unwrap();
        redkeep::ops::backup(&rk, &backup).unwrap();
    }
    common::stop_a_restore(&data, &backup, &options);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ark = AsyncRedkeep::open(data.clone(), options).await.unwrap();
        let warnings = server::unfinished_warnings(&ark, &data).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("warning: a restore stopped part way here")
                && warnings[0].contains("`redkeep check --repair`")
                && warnings[0].contains(&data.display().to_string()),
            "{}",
            warnings[0]
        );
        let app = server::router(server::AppState {
            ark: ark.clone(),
            mailer: Arc::new(Outbox::default()),
        });
        let (base, stop) = serve(app).await;
        let http = Client::new();
        let login: Value = http
            .post(format!("{base}/login"))
            .json(&json!({"login": "ann@example.com", "password": "a password 1"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().expect("a token").to_string();
        for (method, path) in [(Method::GET, "/workspace"), (Method::GET, "/pieces")] {
            let resp = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(
                body,
                json!({"error": "the service is not ready; try again later"}),
                "{path}"
            );
        }
        stop.await;
    });
}

/// Set in the helper process that starts the example server as its `main` does, runtime
/// included, on this data dir.
const EXAMPLE_START_ENV: &str = "REDKEEP_TEST_EXAMPLE_START_DIR";

/// Not a test of its own: the example server's start, run by
/// `the_example_server_short_of_file_descriptors_fails_in_one_line` in a process of its
/// own (does nothing without its variable). Exits with the server's exit code.
#[test]
fn helper_example_start() {
    let Some(dir) = std::env::var_os(EXAMPLE_START_ENV) else {
        return;
    };
    // No new descriptor fits: the lowest free one (the next to be given) is the limit, so
    // the runtime's first one (its epoll) fails. (Set here rather than before exec: the
    // dynamic loader needs a few of its own.)
    let lowest_free = {
        use std::os::fd::AsRawFd;
        let probe = std::fs::File::open("/dev/null").unwrap();
        u64::try_from(probe.as_raw_fd()).unwrap()
    };
    let limit = libc::rlimit {
        rlim_cur: lowest_free,
        rlim_max: lowest_free,
    };
    // SAFETY: `setrlimit` reads the struct it is given, which lives across the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let code = server::start(server::Arguments {
        dir: dir.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        init: false,
        demo_mailer: false,
        grace: Duration::ZERO,
    });
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

/// Short of file descriptors (`ulimit -n`), the example server cannot build its async
/// runtime: it says so in one line and exits 1, where it panicked with a backtrace.
#[test]
fn the_example_server_short_of_file_descriptors_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut start = std::process::Command::new(std::env::current_exe().unwrap());
    start
        .args([
            "--exact",
            "helper_example_start",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EXAMPLE_START_ENV, dir.path())
        .env("RUST_BACKTRACE", "1")
        .stdin(std::process::Stdio::null());
    let out = start.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("axum_server: cannot start its async runtime: ")
            && err.contains("Too many open files"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// What a test's tracing subscriber writes, kept to be read.
#[derive(Clone, Default)]
struct Logged(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A bearer client's `POST /logout` (no session cookie) ends its session without a
/// warning in the server's log: tower-sessions logged "called delete with no session id"
/// at each, noise that hid real warnings. A cookie logout still ends the cookie's session.
#[test]
fn a_bearer_logout_ends_its_session_without_a_warning() {
    let logged = Logged::default();
    let subscriber = {
        let logged = logged.clone();
        tracing_subscriber::fmt()
            .with_writer(move || logged.clone())
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .finish()
    };
    // One thread runs the server and the client, so the subscriber sees every event.
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let site = Site::start().await;
            site.register("ann@example.com", "ann password 1").await;
            let (cookie, token) = site.login("ann@example.com", "ann password 1").await;
            let out = site.call(Method::POST, "/logout", &token, None).await;
            assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
            let me = site.call(Method::GET, "/me", &token, None).await;
            assert_eq!(me.status, StatusCode::UNAUTHORIZED);
            // (One redkeep session: the cookie's login ended with it.)
            let me = site.call(Method::GET, "/me", &cookie, None).await;
            assert_eq!(me.status, StatusCode::UNAUTHORIZED);
            let (cookie, _) = site.login("ann@example.com", "ann password 1").await;
            let out = site.call(Method::POST, "/logout", &cookie, None).await;
            assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
            let me = site.call(Method::GET, "/me", &cookie, None).await;
            assert_eq!(me.status, StatusCode::UNAUTHORIZED);
        });
    });
    let text = String::from_utf8_lossy(&logged.0.lock().unwrap()).into_owned();
    assert!(!text.contains("called delete with no session id"), "{text}");
}

/// axum-login's permission checks (`permission_required!`, `has_perm`) give a user who must
/// change their password (here the first administrator, with a generated one) nothing until
/// they change it, and their roles' permissions afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_user_who_must_change_their_password_holds_nothing_until_they_do() {
    use axum_login::AuthzBackend;
    use redkeep::web::Backend;
    let options = Options::default().password(PasswordParams::INSECURE_FAST);
    let (_dir, ark) = store_with(&[], options).await;
    let created = ark
        .users()
        .create(redkeep::NewUser {
            email: "root@example.com".into(),
            is_admin: true,
            ..redkeep::NewUser::default()
        })
        .await
        .unwrap();
    let generated = created.password.unwrap();
    let backend = Backend::new(ark.clone());
    let signed_in = |password: String| {
        let (ark, backend) = (ark.clone(), backend.clone());
        async move {
            let login = ark
                .sessions()
                .login("root@example.com".into(), password, Default::default())
                .await
                .unwrap();
            backend.web_login(&login)
        }
    };
    let user = signed_in(generated.expose().to_string()).await;
    assert!(user.user.must_change_password);
    for perm in ["*", "user_management"] {
        assert!(
            !backend.has_perm(&user, perm.into()).await.unwrap(),
            "{perm}"
        );
    }
    let held = backend.get_user_permissions(&user).await.unwrap();
    assert!(held.is_empty(), "{held:?}");

    const NEW: &str = "a password of my own";
    backend
        .change_password(&user, generated.expose(), NEW)
        .await
        .unwrap();
    let user = signed_in(NEW.into()).await;
    assert!(!user.user.must_change_password);
    assert!(
        backend
            .has_perm(&user, "user_management".into())
            .await
            .unwrap()
    );
    let held = backend.get_user_permissions(&user).await.unwrap();
    assert!(held.contains("*"), "{held:?}");
}
