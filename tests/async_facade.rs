//! The tokio facade runs the same operations off the async threads.
#![cfg(feature = "tokio")]

mod common;

use common::TestDir;
use redkeep::auth::sessions::LoginMeta;
use redkeep::{AsyncRedkeep, Error, InviteSpec, NewUser, Origin, Registration, Secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_validate_and_workspace_through_tokio() {
    let t = TestDir::new();
    let rk = AsyncRedkeep::open(t.path().to_path_buf(), t.options())
        .await
        .unwrap();
    let code = rk
        .invites()
        .create(InviteSpec::default())
        .await
        .unwrap()
        .code;
    let user = rk
        .users()
        .register(Registration {
            email: "a@example.com".into(),
            password: "correct horse".into(),
            invite: Some(code.expose().into()),
            ..Registration::default()
        })
        .await
        .unwrap();
    let login = rk
        .sessions()
        .login(
            "a@example.com".into(),
            "correct horse",
            LoginMeta::default(),
        )
        .await
        .unwrap();
    let (who, _) = rk
        .sessions()
        .validate(login.token.expose().into())
        .await
        .unwrap();
    assert_eq!(who.id, user.id);
    // Many concurrent tasks save pieces; numbers stay distinct.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let rk = rk.clone();
            tokio::spawn(async move {
                rk.workspaces()
                    .save_piece(user.id, b"{}".to_vec())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=16).collect::<Vec<_>>());
    assert_eq!(rk.workspaces().read(user.id).await.unwrap().piece_count, 16);
    assert!(
        rk.sessions()
            .logout(login.token.expose().into())
            .await
            .unwrap()
    );
    assert!(matches!(
        rk.sessions().validate(login.token.expose().into()).await,
        Err(Error::InvalidCredential { .. })
    ));
    assert!(matches!(
        rk.users()
            .authenticate("a@example.com".into(), "wrong horse")
            .await,
        Err(Error::Unauthorized)
    ));
}

/// Hashing and commits run on the blocking pool: on a one-thread runtime, a ticker task keeps
/// running while 8 logins (OWASP's argon2 parameters) and 8 durable commits are in flight.
/// An operation sees the ticker move between its start and its end, which cannot happen if
/// the work runs on the runtime's only thread (then every one sees it stand still). Counted
/// ticks, not timing; on a loaded machine a blocking call can end before the scheduler next
/// polls the ticker, so a few standing still are allowed.
#[tokio::test(flavor = "current_thread")]
async fn hashing_and_commits_leave_the_async_thread_free() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let t = TestDir::new();
    let options = t.options().password(redkeep::PasswordParams::OWASP);
    let rk = AsyncRedkeep::open(t.path().to_path_buf(), options)
        .await
        .unwrap();
    rk.users()
        .create(redkeep::NewUser {
            email: "a@example.com".into(),
            password: Some("correct horse".into()),
            ..redkeep::NewUser::default()
        })
        .await
        .unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                ticks.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let mut work = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (rk, ticks) = (rk.clone(), ticks.clone());
        work.spawn(async move {
            let before = ticks.load(Ordering::Relaxed);
            if i % 2 == 0 {
                rk.sessions()
                    .login(
                        "a@example.com".into(),
                        "correct horse",
                        LoginMeta::default(),
                    )
                    .await
                    .unwrap();
            } else {
                rk.users()
                    .rename(1, Some(format!("name {i}")), None)
                    .await
                    .unwrap();
            }
            ticks.load(Ordering::Relaxed) - before
        });
    }
    let mut moved = Vec::new();
    while let Some(r) = work.join_next().await {
        moved.push(r.unwrap());
    }
    ticker.abort();
    assert_eq!(moved.len(), 16);
    let still = moved.iter().filter(|&&n| n == 0).count();
    assert!(
        still <= 4,
        "the ticker stood still during {still} of 16 operations: {moved:?}"
    );
}

/// `close` drops the handle on the blocking pool and returns once the store is closed: the
/// data dir opens again at once, alone. While another clone is left, it stays open.
#[tokio::test(flavor = "current_thread")]
async fn close_returns_once_the_store_is_closed() {
    let t = TestDir::new();
    let rk = AsyncRedkeep::open(t.path().to_path_buf(), t.options())
        .await
        .unwrap();
    rk.users()
        .create(redkeep::NewUser {
            email: "a@example.com".into(),
            ..redkeep::NewUser::default()
        })
        .await
        .unwrap();
    let other = rk.clone();
    rk.close().await.unwrap();
    assert_eq!(
        other.users().count().await.unwrap(),
        1,
        "a clone keeps it open"
    );
    other.close().await.unwrap();
    let alone = AsyncRedkeep::open(
        t.path().to_path_buf(),
        t.options().mode(redkeep::Mode::Exclusive),
    )
    .await
    .unwrap();
    assert_eq!(alone.users().count().await.unwrap(), 1);
    alone.close().await.unwrap();
}

/// A handle made by `with_origin` names its origin in the audit events of every write it
/// makes, on the blocking thread that runs it: a call that hashes a password, one that does
/// not, and `run`. The handle it was made from names none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_with_an_origin_names_it_in_the_audit_events_of_its_writes() {
    let t = TestDir::new();
    let ark = AsyncRedkeep::open(t.path().to_path_buf(), t.options())
        .await
        .unwrap();
    let web = ark.with_origin(Origin::new("web, 203.0.113.7").unwrap());
    assert_eq!(web.origin().map(Origin::as_str), Some("web, 203.0.113.7"));
    assert!(ark.origin().is_none());
    let ann = web
        .users()
        .create(NewUser {
            email: "ann@example.com".into(),
            password: Some("correct horse".into()),
            ..NewUser::default()
        })
        .await
        .unwrap()
        .user
        .id;
    web.users().disable(ann).await.unwrap();
    web.run(move |rk| rk.users().enable(ann)).await.unwrap();
    ark.users().disable(ann).await.unwrap();
    let mut events = ark.audit().list(Some(ann), None, 100).await.unwrap();
    events.sort_by_key(|e| e.seq);
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.action.as_str(), e.origin.as_deref()))
        .collect();
    let web_origin = Some("web, 203.0.113.7");
    // Creating the first account records more (its roles, its org): those carry it too.
    let (created, changed) = seen.split_at(seen.len() - 4);
    assert!(created.iter().all(|&(_, o)| o == web_origin), "{seen:?}");
    assert_eq!(
        changed,
        [
            ("user_created", web_origin),
            ("user_disabled", web_origin),
            ("user_enabled", web_origin),
            ("user_disabled", None),
        ]
    );
}

/// The calls that take a password take it as a `Secret`, made from a `String`, a `&str` or
/// a `Secret` read from a request body (whose `Debug` never shows it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_reach_the_async_facade_as_secrets() {
    #[derive(Debug, serde::Deserialize)]
    struct LoginBody {
        login: String,
        password: Secret,
    }
    let t = TestDir::new();
    let ark = AsyncRedkeep::open(t.path().to_path_buf(), t.options())
        .await
        .unwrap();
    let ann = ark
        .users()
        .create(NewUser {
            email: "ann@example.com".into(),
            password: Some("correct horse".into()),
            ..NewUser::default()
        })
        .await
        .unwrap()
        .user
        .id;
    let body: LoginBody =
        serde_json::from_str(r#"{"login":"ann@example.com","password":"correct horse"}"#).unwrap();
    assert!(!format!("{body:?}").contains("correct horse"), "{body:?}");
    let meta = LoginMeta::default;
    let login = ark
        .sessions()
        .login(body.login, body.password, meta())
        .await
        .unwrap();
    assert_eq!(login.user.id, ann);
    let typed = String::from("correct horse");
    ark.sessions()
        .login("ann@example.com".into(), typed, meta())
        .await
        .unwrap();
    ark.users()
        .check_password(ann, "correct horse")
        .await
        .unwrap();
    ark.users()
        .change_password_of(ann, Secret::from("correct horse"), "battery staple")
        .await
        .unwrap();
    assert!(
        ark.users()
            .password_matches(ann, "battery staple")
            .await
            .unwrap()
    );
    assert!(matches!(
        ark.users()
            .authenticate("ann@example.com".into(), "correct horse")
            .await,
        Err(Error::Unauthorized)
    ));
}
