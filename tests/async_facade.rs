//! The tokio facade runs the same operations off the async threads.
#![cfg(feature = "tokio")]

mod common;

use common::TestDir;
use redkeep::auth::sessions::LoginMeta;
use redkeep::{AsyncRedkeep, Error, InviteSpec, Registration};

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
            "correct horse".into(),
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
            .authenticate("a@example.com".into(), "wrong horse".into())
            .await,
        Err(Error::Unauthorized)
    ));
}
