//! Roles and permissions, login sessions, lockout, agent sessions, API keys and the audit log,
//! with an injected clock (no sleeping).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::TestDir;
use proptest::prelude::*;
use redkeep::auth::agents::{AgentSpec, AgentState};
use redkeep::auth::api_keys::{ApiKeySpec, KeyOwner};
use redkeep::auth::roles::{ADMIN_PRIORITY, CUSTOM_PRIORITIES, RoleSpec};
use redkeep::auth::sessions::{LockoutPolicy, LoginMeta};
use redkeep::{Error, InviteSpec, NewUser, Redkeep};

const PW: &str = "correct horse";

fn user(rk: &Redkeep, email: &str) -> u64 {
    rk.users()
        .create(NewUser {
            email: email.into(),
            password: Some(PW.into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

#[test]
fn system_roles_exist_and_new_users_get_user() {
    let t = TestDir::new();
    let rk = t.open();
    let names: Vec<String> = rk
        .roles()
        .list()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["admin", "user", "guest"]);
    let a = user(&rk, "a@example.com");
    assert!(rk.roles().has_permission(a, "basic_access").unwrap());
    assert!(rk.roles().has_permission(a, "profile_management").unwrap());
    assert!(!rk.roles().has_permission(a, "user_management").unwrap());
    rk.roles().grant(a, "admin", None).unwrap();
    assert!(rk.roles().has_permission(a, "anything:at_all").unwrap());
    assert_eq!(rk.roles().users_in("admin", usize::MAX).unwrap(), vec![a]);
    for system in ["admin", "user", "guest"] {
        assert!(matches!(
            rk.roles().delete(system),
            Err(Error::Denied { .. })
        ));
    }
    // The only administrator cannot be disabled until another user is one.
    assert!(matches!(rk.users().disable(a), Err(Error::Denied { .. })));
    let b = user(&rk, "b@example.com");
    rk.roles().grant(b, "admin", None).unwrap();
    rk.users().disable(a).unwrap();
    assert!(matches!(
        rk.roles().revoke(b, "admin", None),
        Err(Error::Denied { .. })
    ));
    assert!(rk.roles().permissions(a).unwrap().is_empty());
    assert!(!rk.roles().has_permission(a, "basic_access").unwrap());
}

#[test]
fn custom_roles_grant_and_their_deletion_revokes() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    rk.roles()
        .create(RoleSpec {
            name: "editor".into(),
            permissions: vec!["docs.edit".into()],
            priority: 5,
            ..RoleSpec::default()
        })
        .unwrap();
    assert!(matches!(
        rk.roles().create(RoleSpec {
            name: "Editor".into(),
            permissions: vec!["x".into()],
            ..RoleSpec::default()
        }),
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        rk.roles().create(RoleSpec {
            name: "bad name".into(),
            permissions: vec!["x".into()],
            ..RoleSpec::default()
        }),
        Err(Error::InvalidInput { .. })
    ));
    // No custom role outranks admin, whose priority is the top one; the edges hold.
    for (priority, ok) in [
        (i64::MAX, false),
        (ADMIN_PRIORITY, false),
        (ADMIN_PRIORITY - 1, true),
        (*CUSTOM_PRIORITIES.start(), true),
        (CUSTOM_PRIORITIES.start() - 1, false),
        (i64::MIN, false),
    ] {
        let got = rk.roles().create(RoleSpec {
            name: format!("p{}", priority.unsigned_abs()),
            permissions: vec!["x".into()],
            priority,
            ..RoleSpec::default()
        });
        match got {
            Ok(_) => assert!(ok, "{priority} taken"),
            Err(Error::InvalidInput { field, reason, .. }) => {
                assert!(!ok, "{priority} refused: {reason}");
                assert_eq!(field, "priority");
                assert!(reason.contains("below the admin role"), "{reason}");
            }
            Err(e) => panic!("{priority}: {e}"),
        }
    }
    assert_eq!(rk.roles().list().unwrap()[0].name, "admin");
    rk.roles().grant(a, "editor", None).unwrap();
    assert!(rk.roles().has_permission(a, "docs.edit").unwrap());
    rk.roles().delete("editor").unwrap();
    assert!(!rk.roles().has_permission(a, "docs.edit").unwrap());
    assert!(rk.check(false).unwrap().ok);
}

/// A user holding a role `editor` made with `permissions`; returns the user's and the
/// role's ids.
fn editor_user(rk: &Redkeep, permissions: &[&str]) -> (u64, u64) {
    let a = user(rk, "a@example.com");
    let role = rk
        .roles()
        .create(RoleSpec {
            name: "editor".into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            ..RoleSpec::default()
        })
        .unwrap();
    rk.roles().grant(a, "editor", None).unwrap();
    (a, role.id)
}

#[test]
fn a_role_changed_in_place_is_seen_by_the_next_check() {
    use redkeep::auth::roles::Role;
    let t = TestDir::new();
    let rk = t.open();
    let (a, role) = editor_user(&rk, &["docs.edit"]);
    // Checked twice, so the role's decoded copy is kept by this thread.
    for _ in 0..2 {
        assert!(rk.roles().has_permission(a, "docs.edit").unwrap());
    }
    // The same role (same id) loses the permission and gains another.
    let set = |perms: &[&str]| {
        rk.store()
            .write(|tx| {
                tx.table::<Role>().modify(&role, |r| {
                    r.permissions = perms.iter().map(|p| p.to_string()).collect();
                    Ok(())
                })
            })
            .unwrap()
    };
    set(&["docs.read"]);
    assert!(!rk.roles().has_permission(a, "docs.edit").unwrap());
    assert!(rk.roles().has_permission(a, "docs.read").unwrap());
    assert!(rk.roles().permissions(a).unwrap().contains("docs.read"));
    // And back: the earlier bytes again give the earlier answer.
    set(&["docs.edit"]);
    assert!(rk.roles().has_permission(a, "docs.edit").unwrap());
    assert!(!rk.roles().has_permission(a, "docs.read").unwrap());
}

#[test]
fn two_stores_with_the_same_role_id_keep_their_own_permissions() {
    let (t1, t2) = (TestDir::new(), TestDir::new());
    let (rk1, rk2) = (t1.open(), t2.open());
    let (a, role) = editor_user(&rk1, &["docs.edit"]);
    // The same user and role ids in both stores, read in turn by this thread.
    assert_eq!(editor_user(&rk2, &["docs.read"]), (a, role));
    for _ in 0..3 {
        assert!(rk1.roles().has_permission(a, "docs.edit").unwrap());
        assert!(!rk1.roles().has_permission(a, "docs.read").unwrap());
        assert!(!rk2.roles().has_permission(a, "docs.edit").unwrap());
        assert!(rk2.roles().has_permission(a, "docs.read").unwrap());
    }
}

#[derive(Debug, Clone)]
enum RoleOp {
    Grant(usize, usize),
    Revoke(usize, usize),
    DeleteRole(usize),
    CreateRole(usize),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn has_permission_matches_a_model(ops in prop::collection::vec(
        prop_oneof![
            (0usize..3, 0usize..4).prop_map(|(u, r)| RoleOp::Grant(u, r)),
            (0usize..3, 0usize..4).prop_map(|(u, r)| RoleOp::Revoke(u, r)),
            (0usize..4).prop_map(RoleOp::DeleteRole),
            (0usize..4).prop_map(RoleOp::CreateRole),
        ], 1..40)) {
        let t = TestDir::new();
        let rk = t.open();
        let users: Vec<u64> = (0..3).map(|i| user(&rk, &format!("u{i}@example.com"))).collect();
        let role_name = |r: usize| format!("role{r}");
        let perm = |r: usize| format!("perm{r}");
        // model: role → exists; (user, role) → held
        let mut roles: BTreeSet<usize> = BTreeSet::new();
        let mut held: BTreeSet<(usize, usize)> = BTreeSet::new();
        for op in ops {
            match op {
                RoleOp::CreateRole(r) => {
                    let got = rk.roles().create(RoleSpec { name: role_name(r), permissions: vec![perm(r)], ..RoleSpec::default() });
                    prop_assert_eq!(got.is_ok(), roles.insert(r));
                }
                RoleOp::Grant(u, r) => {
                    let got = rk.roles().grant(users[u], &role_name(r), None);
                    prop_assert_eq!(got.is_ok(), roles.contains(&r));
                    if roles.contains(&r) { held.insert((u, r)); }
                }
                RoleOp::Revoke(u, r) => {
                    let got = rk.roles().revoke(users[u], &role_name(r), None);
                    prop_assert_eq!(got.is_ok(), held.remove(&(u, r)));
                }
                RoleOp::DeleteRole(r) => {
                    let got = rk.roles().delete(&role_name(r));
                    prop_assert_eq!(got.is_ok(), roles.remove(&r));
                    held.retain(|&(_, x)| x != r);
                }
            }
            for (u, &id) in users.iter().enumerate() {
                for r in 0..4 {
                    prop_assert_eq!(rk.roles().has_permission(id, &perm(r)).unwrap(), held.contains(&(u, r)));
                }
            }
        }
        let report = rk.check(false).unwrap();
        prop_assert!(report.ok, "{:?}", report.problems);
    }
}

#[test]
fn every_login_makes_a_new_token_that_validates() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let l1 = rk
        .sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap();
    let l2 = rk
        .sessions()
        .login(
            "A@example.com ",
            PW,
            LoginMeta {
                ip: Some("127.0.0.1".into()),
                ..LoginMeta::default()
            },
        )
        .unwrap();
    assert_ne!(l1.token, l2.token);
    assert!(l1.token.expose().starts_with("rks_"));
    assert_eq!(rk.sessions().validate(l1.token.expose()).unwrap().0.id, a);
    assert_eq!(rk.sessions().list(Some(a), usize::MAX).unwrap().len(), 2);
    assert!(rk.sessions().logout(l1.token.expose()).unwrap());
    assert!(matches!(
        rk.sessions().validate(l1.token.expose()),
        Err(Error::InvalidCredential { .. })
    ));
    assert!(rk.sessions().validate(l2.token.expose()).is_ok());
    assert!(matches!(
        rk.sessions().validate("rks_nonsense"),
        Err(Error::InvalidCredential { .. })
    ));
}

#[test]
fn client_details_are_kept_cleaned_and_never_fail_a_login() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    // A header may hold a tab (legal in HTTP); a forwarded address may hold anything.
    let long = format!("Mozilla/5.0\t(X11){}", "é".repeat(400));
    let l = rk
        .sessions()
        .login(
            "a@example.com",
            PW,
            LoginMeta {
                ip: Some("10.0.0.1\nforged line\0\x1b[31m".into()),
                user_agent: Some(long),
                ..LoginMeta::default()
            },
        )
        .unwrap();
    let kept = rk.sessions().list(Some(a), 1).unwrap().remove(0);
    assert_eq!(kept.short_id, l.session.short_id);
    assert_eq!(kept.ip.as_deref(), Some("10.0.0.1 forged line  [31m"));
    let ua = kept.user_agent.unwrap();
    assert!(ua.starts_with("Mozilla/5.0 (X11)éé"), "{ua}");
    // Cut at a character boundary: 17 bytes, then two-byte characters up to 512.
    assert_eq!(ua.len(), 511);
    assert!(!ua.chars().any(char::is_control));
}

#[test]
fn sessions_expire_when_idle_and_absolutely() {
    let t = TestDir::new();
    let rk = t.open(); // idle 30 min, ttl 12 h, touch every 60 s
    user(&rk, "a@example.com");
    let l = rk
        .sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap();
    // Kept alive by use every 20 minutes, up to the absolute expiry.
    for _ in 0..35 {
        t.clock.advance(minutes(20));
        rk.sessions().validate(l.token.expose()).unwrap();
    }
    t.clock.advance(minutes(20)); // 12 h passed
    assert!(rk.sessions().validate(l.token.expose()).is_err());
    let idle = rk
        .sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap();
    t.clock.advance(minutes(29));
    rk.sessions().validate(idle.token.expose()).unwrap();
    t.clock.advance(minutes(30));
    assert!(rk.sessions().validate(idle.token.expose()).is_err());
    assert_eq!(rk.sessions().sweep().unwrap(), 2);
    assert!(rk.sessions().list(None, usize::MAX).unwrap().is_empty());
}

/// An expired session whose record does not read does not stop the sweep (it did: every
/// sweep failed from then on, and nothing expired was removed again): the others go, it is
/// left for `check --repair`, which sets it aside.
#[test]
fn a_sweep_goes_past_an_expired_session_it_cannot_read() {
    let t = TestDir::new();
    let rk = t.open();
    user(&rk, "a@example.com");
    for _ in 0..3 {
        rk.sessions()
            .login("a@example.com", PW, LoginMeta::default())
            .unwrap();
    }
    let damaged = rk.sessions().list(None, usize::MAX).unwrap()[1].hash.0;
    drop(rk);
    common::plant_entry(
        t.store.as_deref(),
        t.path(),
        "r:sessions",
        &damaged,
        b"\x01not a session",
    );
    let rk = t.open();
    t.clock.advance(Duration::from_secs(13 * 3600));
    assert_eq!(rk.sessions().sweep().unwrap(), 2);
    assert!(!rk.check(false).unwrap().ok);
    rk.check(true).unwrap();
    assert!(rk.check(false).unwrap().ok);
    assert_eq!(rk.sessions().sweep().unwrap(), 0);
    assert!(rk.sessions().list(None, usize::MAX).unwrap().is_empty());
    // A backlog larger than one batch goes whole, batch after batch; what has not expired
    // stays.
    use redkeep::Clock;
    let expires = redkeep::Timestamp(t.clock.now().0 + 60);
    for i in 0..2500u32 {
        rk.web_sessions()
            .save(&i.to_be_bytes(), "{}", expires)
            .unwrap();
    }
    rk.web_sessions()
        .save(b"later", "{}", redkeep::Timestamp(expires.0 + 3600))
        .unwrap();
    t.clock.advance(Duration::from_secs(61));
    assert_eq!(rk.sessions().sweep().unwrap(), 2500);
    assert_eq!(rk.web_sessions().count().unwrap(), 1);
}

#[test]
fn validate_writes_last_seen_at_most_once_per_interval() {
    let t = TestDir::new();
    let rk = t.open();
    user(&rk, "a@example.com");
    let l = rk
        .sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap();
    let start = rk.now();
    t.clock.advance(Duration::from_secs(30));
    for _ in 0..5 {
        assert_eq!(
            rk.sessions()
                .validate(l.token.expose())
                .unwrap()
                .1
                .last_seen_at,
            start
        );
    }
    assert_eq!(
        rk.sessions().list(None, usize::MAX).unwrap()[0].last_seen_at,
        start
    );
    t.clock.advance(Duration::from_secs(30));
    let now = rk.now();
    assert_eq!(
        rk.sessions()
            .validate(l.token.expose())
            .unwrap()
            .1
            .last_seen_at,
        now
    );
    assert_eq!(
        rk.sessions().list(None, usize::MAX).unwrap()[0].last_seen_at,
        now
    );
}

/// An idle timeout no longer than the touch interval used to end a session in use: the idle
/// deadline counts from the last recorded use, which the interval kept from moving. A use is
/// now recorded at least every half idle timeout.
#[test]
fn a_session_in_use_outlives_an_idle_timeout_shorter_than_the_touch_interval() {
    let t = TestDir::new();
    let mut o = t.options();
    o.sessions.idle_timeout = Duration::from_secs(60); // touch interval: 60 s
    let rk = Redkeep::open(t.path(), o).unwrap();
    user(&rk, "a@example.com");
    let l = rk
        .sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap();
    for _ in 0..10 {
        t.clock.advance(Duration::from_secs(20));
        rk.sessions().validate(l.token.expose()).unwrap();
    }
    // Unused for the idle timeout, it ends.
    t.clock.advance(Duration::from_secs(60));
    assert!(rk.sessions().validate(l.token.expose()).is_err());
}

/// A password reset keeps the account's API keys (documented); `revoke_all_of` ends every
/// one of them at once, with an audit event each, and leaves other owners' keys alone.
#[test]
fn revoke_all_of_ends_every_key_of_one_owner() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let b = user(&rk, "b@example.com");
    let key = |owner| {
        rk.api_keys()
            .create(ApiKeySpec {
                owner,
                scopes: vec![],
                expires_in: None,
                created_by: None,
            })
            .unwrap()
    };
    let (a1, a2, b1) = (
        key(KeyOwner::User(a)),
        key(KeyOwner::User(a)),
        key(KeyOwner::User(b)),
    );
    rk.api_keys().revoke(&a2.api_key.prefix).unwrap();
    rk.users().set_password(a, "another long password").unwrap();
    rk.api_keys().verify(a1.key.expose()).unwrap();
    let revoked = rk.api_keys().revoke_all_of(KeyOwner::User(a)).unwrap();
    assert_eq!(
        revoked.iter().map(|k| &k.prefix).collect::<Vec<_>>(),
        [&a1.api_key.prefix],
        "the key revoked before is not revoked again"
    );
    assert!(rk.api_keys().verify(a1.key.expose()).is_err());
    rk.api_keys().verify(b1.key.expose()).unwrap();
    let events = rk.audit().list(Some(a), None, 1).unwrap();
    assert_eq!(events[0].action, "api_key_revoked");
    assert_eq!(events[0].subject, format!("api key {}", a1.api_key.prefix));
    assert!(
        rk.api_keys()
            .revoke_all_of(KeyOwner::User(a))
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        rk.api_keys().revoke_all_of(KeyOwner::Org(999)),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn disabling_a_user_stops_sessions_and_keys_at_once() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let l = rk
        .sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap();
    let k = rk
        .api_keys()
        .create(ApiKeySpec {
            owner: KeyOwner::User(a),
            scopes: vec!["read".into()],
            expires_in: None,
            created_by: None,
        })
        .unwrap();
    rk.api_keys().verify(k.key.expose()).unwrap();
    rk.users().disable(a).unwrap();
    assert!(rk.sessions().validate(l.token.expose()).is_err());
    assert!(matches!(
        rk.api_keys().verify(k.key.expose()),
        Err(Error::InvalidCredential { .. })
    ));
    assert!(matches!(
        rk.sessions()
            .login("a@example.com", PW, LoginMeta::default()),
        Err(Error::Unauthorized)
    ));
}

#[test]
fn a_password_change_revokes_the_other_sessions() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let keep = rk
        .sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap();
    let other = rk
        .sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap();
    assert!(matches!(
        rk.users()
            .change_password(keep.token.expose(), "wrong one", "new password 1"),
        Err(Error::Unauthorized)
    ));
    // A "change" to the same password is refused (a generated one must really change),
    // and ends no session.
    let same = rk
        .users()
        .change_password(keep.token.expose(), PW, PW)
        .unwrap_err();
    assert!(matches!(same, Error::InvalidInput { .. }), "{same}");
    assert!(same.to_string().contains("the current one"), "{same}");
    assert!(rk.sessions().validate(other.token.expose()).is_ok());
    rk.users()
        .change_password(keep.token.expose(), PW, "new password 1")
        .unwrap();
    assert!(rk.sessions().validate(keep.token.expose()).is_ok());
    assert!(rk.sessions().validate(other.token.expose()).is_err());
    rk.users().set_password(a, "new password 2").unwrap();
    assert!(rk.sessions().validate(keep.token.expose()).is_err());
}

#[test]
fn lockout_locks_doubles_and_looks_like_a_wrong_password() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let wrong = rk
        .sessions()
        .login("a@example.com", "bad password", LoginMeta::default())
        .unwrap_err()
        .to_string();
    for _ in 0..9 {
        let _ = rk
            .sessions()
            .login("a@example.com", "bad password", LoginMeta::default());
    }
    let u = rk.users().lockout(a).unwrap();
    assert_eq!(u.locked_until, Some(rk.now().plus(minutes(1))));
    let locked = rk
        .sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap_err()
        .to_string();
    assert_eq!(locked, wrong);
    t.clock.advance(minutes(1));
    for _ in 0..10 {
        let _ = rk
            .sessions()
            .login("a@example.com", "bad password", LoginMeta::default());
    }
    assert_eq!(
        rk.users().lockout(a).unwrap().locked_until,
        Some(rk.now().plus(minutes(2)))
    );
    let unlocks = || {
        rk.audit()
            .list(Some(a), None, 1000)
            .unwrap()
            .iter()
            .filter(|e| e.action == "user_unlocked")
            .count()
    };
    rk.users().unlock(a).unwrap();
    assert_eq!(unlocks(), 1);
    rk.sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap();
    let u = rk.users().lockout(a).unwrap();
    assert_eq!(
        (u.failed_logins, u.lock_count, u.locked_until),
        (0, 0, None)
    );
    // The hour's failures still count toward the hourly cap after a right login: an
    // unlock clears them (audited); a second one has nothing to clear, and audits nothing.
    rk.users().unlock(a).unwrap();
    assert_eq!(unlocks(), 2);
    rk.users().unlock(a).unwrap();
    assert_eq!(unlocks(), 2);
    // Disabling or enabling an account already so writes nothing either.
    let toggles = || {
        rk.audit()
            .list(Some(a), None, 1000)
            .unwrap()
            .iter()
            .filter(|e| e.action == "user_disabled" || e.action == "user_enabled")
            .count()
    };
    rk.users().enable(a).unwrap();
    assert_eq!(toggles(), 0);
    rk.users().disable(a).unwrap();
    rk.users().disable(a).unwrap();
    assert_eq!(toggles(), 1);
    rk.users().enable(a).unwrap();
    rk.users().enable(a).unwrap();
    assert_eq!(toggles(), 2);
}

/// Asking for the password again (`check_password`) follows the lockout rules of a login:
/// it is no way to guess without limit, nor to test a locked account's password.
#[test]
fn a_password_check_counts_toward_the_lockout_and_honours_it() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    rk.users().check_password(a, PW).unwrap();
    for _ in 0..9 {
        assert!(matches!(
            rk.users().check_password(a, "bad password"),
            Err(Error::Unauthorized)
        ));
    }
    assert_eq!(rk.users().lockout(a).unwrap().failed_logins, 9);
    // A right one clears the count, as a login does.
    rk.users().check_password(a, PW).unwrap();
    assert_eq!(rk.users().lockout(a).unwrap().failed_logins, 0);
    for _ in 0..10 {
        let _ = rk.users().check_password(a, "bad password");
    }
    assert!(rk.users().lockout(a).unwrap().locked_until.is_some());
    assert!(matches!(
        rk.users().check_password(a, PW),
        Err(Error::Unauthorized)
    ));
    assert!(rk.users().authenticate("a@example.com", PW).is_err());
    t.clock.advance(minutes(1));
    rk.users().check_password(a, PW).unwrap();
}

#[test]
fn at_most_100_failures_an_hour_reach_the_hash() {
    let t = TestDir::new();
    let mut opts = t.options();
    opts.lockout = LockoutPolicy {
        threshold: 10_000,
        ..LockoutPolicy::default()
    };
    let rk = Redkeep::open(t.path(), opts).unwrap();
    let a = user(&rk, "a@example.com");
    for _ in 0..100 {
        let _ = rk.users().authenticate("a@example.com", "bad password");
    }
    assert_eq!(rk.users().lockout(a).unwrap().failures_in_window, 100);
    // The right password is not even checked now, and the failure is not counted again.
    assert!(matches!(
        rk.users().authenticate("a@example.com", PW),
        Err(Error::Unauthorized)
    ));
    assert_eq!(rk.users().lockout(a).unwrap().failures_in_window, 100);
    t.clock.advance(minutes(60));
    rk.users().authenticate("a@example.com", PW).unwrap();
}

#[test]
fn agent_sessions_persist_state_and_expire() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let spec = |id: &str| AgentSpec {
        id: id.into(),
        user_id: a,
        name: "Planner".into(),
        goal: "plan".into(),
        ttl: Some(minutes(60)),
    };
    rk.agents().create(spec("s-1")).unwrap();
    t.clock.advance(minutes(1));
    rk.agents().create(spec("s-2")).unwrap();
    assert!(matches!(
        rk.agents().create(spec("s-1")),
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        rk.agents().create(AgentSpec {
            user_id: 999,
            ..spec("s-3")
        }),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        rk.agents().create(spec("bad id")),
        Err(Error::InvalidInput { .. })
    ));
    t.clock.advance(minutes(1));
    let updated = rk
        .agents()
        .update("s-1", |s| {
            s.current_step = Some("planning".into());
            s.progress.push("step 1 done".into());
            s.context = r#"{"k": [1, 2]}"#.into();
            s.escalation = Some(r#"{"reason": "needs approval"}"#.into());
            Ok(())
        })
        .unwrap();
    assert_eq!(updated.state.progress, vec!["step 1 done"]);
    let bad = rk.agents().update("s-1", |s| {
        s.progress.push("lost".into());
        s.context = "{not json".into();
        Ok(())
    });
    assert!(matches!(
        bad,
        Err(Error::InvalidInput {
            field: "context",
            ..
        })
    ));
    assert_eq!(rk.agents().get("s-1").unwrap().unwrap(), updated);
    let order: Vec<String> = rk
        .agents()
        .list_by_user(a, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(order, vec!["s-1", "s-2"]);
    t.clock.advance(minutes(58)); // s-1 reaches its hour, s-2 is a minute younger
    assert!(rk.agents().get("s-1").unwrap().is_none());
    assert_eq!(
        rk.agents().get("s-2").unwrap().map(|s| s.id),
        Some("s-2".to_string())
    );
    // Lists agree with `get`: an expired session is gone from them before the sweep, and a
    // limit counts the live ones.
    let ids = |list: Vec<redkeep::auth::agents::AgentSession>| -> Vec<String> {
        list.into_iter().map(|s| s.id).collect()
    };
    assert_eq!(
        ids(rk.agents().list_by_user(a, usize::MAX).unwrap()),
        ["s-2"]
    );
    assert_eq!(ids(rk.agents().list(1).unwrap()), ["s-2"]);
    assert!(rk.agents().list(0).unwrap().is_empty());
    t.clock.advance(minutes(1));
    assert!(rk.agents().list(usize::MAX).unwrap().is_empty());
    assert_eq!(rk.agents().sweep().unwrap(), 2);
    assert!(rk.check(false).unwrap().ok);
}

/// A request made on a user's behalf reaches only that user's agent sessions through the
/// `_of` calls: another user's is absent (not found, not changed, not deleted), as one that
/// does not exist, so it cannot be read or even confirmed.
#[test]
fn agent_sessions_on_a_users_behalf_reach_only_their_own() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let b = user(&rk, "b@example.com");
    rk.agents()
        .create(AgentSpec {
            id: "a-run".into(),
            user_id: a,
            name: "Planner".into(),
            goal: "plan".into(),
            ttl: None,
        })
        .unwrap();
    assert_eq!(
        rk.agents().get_of(a, "a-run").unwrap().map(|s| s.user_id),
        Some(a)
    );
    assert!(rk.agents().get_of(b, "a-run").unwrap().is_none());
    let mut ran = false;
    let theirs = rk.agents().update_of(b, "a-run", |s| {
        ran = true;
        s.status = "taken".into();
        Ok(())
    });
    assert!(matches!(theirs, Err(Error::NotFound { .. })), "{theirs:?}");
    assert!(!ran, "the closure ran on another user's session");
    let nowhere = rk.agents().update_of(b, "no-such-run", |_| Ok(()));
    assert_eq!(
        theirs.unwrap_err().to_string(),
        nowhere
            .unwrap_err()
            .to_string()
            .replace("no-such-run", "a-run"),
        "another user's session reads as one that does not exist"
    );
    assert!(!rk.agents().delete_of(b, "a-run").unwrap());
    let kept = rk.agents().get("a-run").unwrap().unwrap();
    assert_eq!(kept.state.status, "active");
    let mine = rk
        .agents()
        .update_of(a, "a-run", |s| {
            s.status = "done".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(mine.state.status, "done");
    assert!(rk.agents().delete_of(a, "a-run").unwrap());
    assert!(rk.agents().get("a-run").unwrap().is_none());
}

/// The fields an agent session shows on one line refuse control and direction-changing
/// characters, as user, org and role names do; a session stored with one before (by an
/// earlier release) can still be updated in its other fields.
#[test]
fn agent_session_names_and_goals_refuse_terminal_controls() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let spec = |name: &str, goal: &str| AgentSpec {
        id: "s-1".into(),
        user_id: a,
        name: name.into(),
        goal: goal.into(),
        ttl: None,
    };
    for (name, goal, field) in [
        ("\u{202e}evil", "plan", "name"),
        ("Planner", "x\u{1b}[31m", "goal"),
        ("Planner", "x\0y", "goal"),
        ("Planner", "two\u{2029}paragraphs", "goal"),
    ] {
        let got = rk.agents().create(spec(name, goal));
        assert!(
            matches!(&got, Err(Error::InvalidInput { field: f, .. }) if *f == field),
            "{got:?}"
        );
    }
    assert!(rk.agents().list(usize::MAX).unwrap().is_empty());
    let ok = rk.agents().create(spec("Planner", "plan")).unwrap();
    type Change = fn(&mut AgentState);
    let changes: [(&str, Change); 2] = [
        ("status", |s| s.status = "done\n".into()),
        ("current_step", |s| {
            s.current_step = Some("\u{2066}step".into())
        }),
    ];
    for (what, change) in changes {
        let got = rk.agents().update("s-1", |s| {
            change(s);
            Ok(())
        });
        assert!(
            matches!(&got, Err(Error::InvalidInput { field: f, .. }) if *f == what),
            "{got:?}"
        );
    }
    assert_eq!(rk.agents().get("s-1").unwrap().unwrap(), ok);
    // Stored before the rule (as an earlier release could): other fields still change.
    let mut old = ok.clone();
    old.state.goal = "old \u{1b} goal".into();
    rk.store()
        .write(|tx| tx.table::<redkeep::auth::agents::AgentSession>().put(&old))
        .unwrap();
    let updated = rk
        .agents()
        .update("s-1", |s| {
            s.progress.push("went on".into());
            Ok(())
        })
        .unwrap();
    assert_eq!(updated.state.goal, old.state.goal);
}

#[test]
fn api_keys_verify_expire_revoke_and_touch_sparingly() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let k = rk
        .api_keys()
        .create(ApiKeySpec {
            owner: KeyOwner::User(a),
            scopes: vec!["write".into(), "read".into()],
            expires_in: Some(minutes(120)),
            created_by: None,
        })
        .unwrap();
    assert!(k.key.expose().starts_with(&k.api_key.prefix));
    let v = rk.api_keys().verify(k.key.expose()).unwrap();
    assert_eq!(
        (v.owner, v.scopes.clone()),
        (
            KeyOwner::User(a),
            vec!["read".to_string(), "write".to_string()]
        )
    );
    let first_use = v.last_used_at;
    t.clock.advance(Duration::from_secs(30));
    assert_eq!(
        rk.api_keys().verify(k.key.expose()).unwrap().last_used_at,
        first_use
    );
    t.clock.advance(Duration::from_secs(30));
    assert_eq!(
        rk.api_keys().verify(k.key.expose()).unwrap().last_used_at,
        Some(rk.now())
    );
    let unknown = rk
        .api_keys()
        .verify("rkk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        .unwrap_err()
        .to_string();
    t.clock.advance(minutes(120));
    assert_eq!(
        rk.api_keys()
            .verify(k.key.expose())
            .unwrap_err()
            .to_string(),
        unknown
    );
    let new_key = || {
        rk.api_keys()
            .create(ApiKeySpec {
                owner: KeyOwner::User(a),
                scopes: vec![],
                expires_in: None,
                created_by: None,
            })
            .unwrap()
    };
    let k2 = new_key();
    // A full key that is wrong (a character changed, one added) revokes nothing, though
    // its prefix names a key; the real key keeps working.
    let real = k2.key.expose();
    let mut changed = real[..real.len() - 1].to_string();
    changed.push(if real.ends_with('a') { 'b' } else { 'a' });
    for wrong in [changed, format!("{real}x")] {
        assert!(matches!(
            rk.api_keys().revoke(&wrong),
            Err(Error::NotFound { .. })
        ));
        rk.api_keys().verify(real).unwrap();
    }
    // The full key itself revokes it.
    let k3 = new_key();
    rk.api_keys().revoke(k3.key.expose()).unwrap();
    assert!(rk.api_keys().verify(k3.key.expose()).is_err());
    rk.api_keys().revoke(&k2.api_key.prefix).unwrap();
    assert_eq!(
        rk.api_keys()
            .verify(k2.key.expose())
            .unwrap_err()
            .to_string(),
        unknown
    );
    assert!(matches!(
        rk.api_keys().create(ApiKeySpec {
            owner: KeyOwner::Org(99),
            scopes: vec![],
            expires_in: None,
            created_by: None,
        }),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        rk.api_keys().create(ApiKeySpec {
            owner: KeyOwner::User(a),
            scopes: vec!["Bad Scope".into()],
            expires_in: None,
            created_by: None,
        }),
        Err(Error::InvalidInput { .. })
    ));
    // A disabled user gets no new key (it would wake up with an `enable`); enabled again,
    // they do.
    let b = user(&rk, "b@example.com");
    rk.users().disable(b).unwrap();
    let for_b = || {
        rk.api_keys().create(ApiKeySpec {
            owner: KeyOwner::User(b),
            scopes: vec![],
            expires_in: None,
            created_by: None,
        })
    };
    match for_b() {
        Err(Error::Denied { reason }) => assert!(reason.contains("is disabled"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(
        rk.api_keys()
            .list(Some(KeyOwner::User(b)), 10)
            .unwrap()
            .is_empty()
    );
    rk.users().enable(b).unwrap();
    for_b().unwrap();
}

#[test]
fn tokens_codes_and_keys_are_not_stored_in_clear() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let mut secrets = vec![
        rk.invites()
            .create(InviteSpec::default())
            .unwrap()
            .code
            .expose()
            .to_string(),
    ];
    secrets.push(
        rk.sessions()
            .login("a@example.com", PW, LoginMeta::default())
            .unwrap()
            .token
            .expose()
            .to_string(),
    );
    secrets.push(
        rk.api_keys()
            .create(ApiKeySpec {
                owner: KeyOwner::User(a),
                scopes: vec![],
                expires_in: None,
                created_by: None,
            })
            .unwrap()
            .key
            .expose()
            .to_string(),
    );
    secrets.push(PW.to_string());
    drop(rk);
    let bytes = common::stored_bytes(t.store.as_deref(), t.path());
    for s in secrets {
        let tail = &s.as_bytes()[s.len().min(12)..];
        let needle = if tail.len() >= 8 { tail } else { s.as_bytes() };
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{s} is in the file"
        );
    }
}

#[test]
fn every_audited_event_is_written_once_with_its_change() {
    let t = TestDir::new();
    let rk = t.open();
    let inv = rk.invites().create(InviteSpec::default()).unwrap();
    let a = rk
        .users()
        .create(NewUser {
            email: "a@example.com".into(),
            password: Some(PW.into()),
            invite: Some(inv.code.expose().into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id;
    let revoked = rk.invites().create(InviteSpec::default()).unwrap();
    rk.invites().revoke(&revoked.invite.prefix).unwrap();
    let l = rk
        .sessions()
        .login("a@example.com", PW, LoginMeta::default())
        .unwrap();
    let _ = rk
        .sessions()
        .login("a@example.com", "wrong password", LoginMeta::default());
    rk.roles().grant(a, "guest", None).unwrap();
    rk.roles().revoke(a, "guest", None).unwrap();
    let k = rk
        .api_keys()
        .create(ApiKeySpec {
            owner: KeyOwner::User(a),
            scopes: vec![],
            expires_in: None,
            created_by: None,
        })
        .unwrap();
    rk.api_keys().revoke(&k.api_key.prefix).unwrap();
    rk.sessions().logout(l.token.expose()).unwrap();
    rk.users().set_password(a, "another password").unwrap();
    rk.users().disable(a).unwrap();
    rk.users().enable(a).unwrap();
    for _ in 0..10 {
        let _ = rk
            .sessions()
            .login("a@example.com", "wrong password", LoginMeta::default());
    }
    let _ = rk
        .sessions()
        .login("a@example.com", "another password", LoginMeta::default());
    rk.users().delete(a).unwrap();
    let events = rk.audit().list(None, None, usize::MAX).unwrap();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *counts.entry(e.action.clone()).or_default() += 1;
    }
    let expect = [
        ("invite_created", 2),
        ("invite_used", 1),
        ("invite_revoked", 1),
        ("user_created", 1),
        ("login_ok", 1),
        ("login_failed", 11),
        ("login_locked", 1),
        ("account_locked", 1),
        ("role_granted", 2),
        ("role_revoked", 1),
        ("api_key_created", 1),
        ("api_key_revoked", 1),
        ("session_revoked", 1),
        ("password_changed", 1),
        ("user_disabled", 1),
        ("user_enabled", 1),
        ("user_deleted", 1),
    ];
    for (action, n) in expect {
        assert_eq!(
            counts.get(action).copied().unwrap_or(0),
            n,
            "{action}: {counts:?}"
        );
    }
    // Newest first, and by subject.
    assert_eq!(events[0].action, "user_deleted");
    let about_a = rk.audit().list(Some(a), None, 3).unwrap();
    assert_eq!(about_a.len(), 3);
    assert!(about_a.windows(2).all(|w| w[0].seq > w[1].seq));
    let text = format!("{events:?}");
    assert!(
        !text.contains(PW) && !text.contains(inv.code.expose()) && !text.contains(l.token.expose())
    );
}

#[test]
fn session_and_key_lists_give_the_newest_first_up_to_the_limit() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let b = user(&rk, "b@example.com");
    let mut sessions = Vec::new();
    let mut keys = Vec::new();
    for i in 0..6 {
        t.clock.advance(minutes(1));
        let who = if i % 2 == 0 {
            "a@example.com"
        } else {
            "b@example.com"
        };
        let login = rk.sessions().login(who, PW, LoginMeta::default()).unwrap();
        sessions.push(login.session.short_id);
        let key = rk
            .api_keys()
            .create(ApiKeySpec {
                owner: KeyOwner::User(if i % 2 == 0 { a } else { b }),
                scopes: vec![],
                expires_in: None,
                created_by: None,
            })
            .unwrap();
        keys.push(key.api_key.prefix);
    }
    let newest: Vec<String> = sessions.iter().rev().cloned().collect();
    let listed = |user, limit| -> Vec<String> {
        rk.sessions()
            .list(user, limit)
            .unwrap()
            .into_iter()
            .map(|s| s.short_id)
            .collect()
    };
    assert_eq!(listed(None, 3), newest[..3]);
    assert_eq!(listed(None, 100), newest);
    assert_eq!(listed(Some(a), 2), [newest[1].clone(), newest[3].clone()]);
    assert!(listed(None, 0).is_empty());

    let newest: Vec<String> = keys.iter().rev().cloned().collect();
    let listed = |owner, limit| -> Vec<String> {
        rk.api_keys()
            .list(owner, limit)
            .unwrap()
            .into_iter()
            .map(|k| k.prefix)
            .collect()
    };
    assert_eq!(listed(None, 4), newest[..4]);
    assert_eq!(
        listed(Some(KeyOwner::User(b)), 10),
        [newest[0].clone(), newest[2].clone(), newest[4].clone()]
    );
}

/// However many wrong guesses arrive at once, no more than the lockout threshold reach the
/// password hash, and the right password is refused while the account is locked.
#[test]
fn forty_simultaneous_wrong_logins_reach_the_hash_at_most_ten_times() {
    let t = TestDir::new();
    let rk = t.open();
    let id = user(&rk, "target@example.com");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(40));
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let (rk, barrier) = (rk.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                rk.sessions()
                    .login(
                        "target@example.com",
                        &format!("guess number {i}"),
                        LoginMeta::default(),
                    )
                    .is_err()
            })
        })
        .collect();
    for g in guesses {
        assert!(g.join().unwrap(), "a wrong guess logged in");
    }
    let events = rk.audit().list(Some(id), None, usize::MAX).unwrap();
    let verified = events
        .iter()
        .filter(|e| e.action == "login_failed" && e.outcome == "denied")
        .count();
    let refused = events.iter().filter(|e| e.action == "login_locked").count();
    assert!(verified <= 10, "{verified} guesses reached the hash");
    assert_eq!(verified + refused, 40, "every guess is accounted for");
    assert!(rk.users().lockout(id).unwrap().locked_until.is_some());
    assert!(
        matches!(
            rk.sessions()
                .login("target@example.com", PW, LoginMeta::default()),
            Err(Error::Unauthorized)
        ),
        "the right password is refused while locked"
    );
    t.clock.advance(minutes(2));
    assert!(
        rk.sessions()
            .login("target@example.com", PW, LoginMeta::default())
            .is_ok()
    );
}

/// A key revoked, or whose owner is disabled, while a use of it runs is refused: a use that
/// records when the key was last used decides again in that write. (Verifications race a
/// revoke and a disable; before, some returned the key with `revoked_at` set.)
#[test]
fn a_key_revoked_or_disabled_during_a_use_is_refused() {
    let t = TestDir::new();
    let mut options = t.options();
    options.api_key_touch_interval = Duration::ZERO;
    let rk = std::sync::Arc::new(Redkeep::open(t.path(), options).unwrap());
    for round in 0..20 {
        let id = user(&rk, &format!("k{round}@example.com"));
        let k = rk
            .api_keys()
            .create(ApiKeySpec {
                owner: KeyOwner::User(id),
                scopes: vec!["read".into()],
                expires_in: None,
                created_by: None,
            })
            .unwrap();
        let key = k.key.expose().to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let uses = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let users = {
            let (rk, stop, uses) = (rk.clone(), stop.clone(), uses.clone());
            std::thread::spawn(move || {
                let mut bad = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(k) = rk.api_keys().verify(&key)
                        && k.revoked_at.is_some()
                    {
                        bad.push("a revoked key was accepted");
                    }
                    uses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                bad
            })
        };
        // The change lands while uses run.
        while uses.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        if round % 2 == 0 {
            rk.api_keys().revoke(&k.api_key.prefix).unwrap();
        } else {
            rk.users().disable(id).unwrap();
        }
        // Once the change commits, no later use passes.
        assert!(
            rk.api_keys().verify(k.key.expose()).is_err(),
            "round {round}"
        );
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let bad = users.join().unwrap();
        assert!(bad.is_empty(), "round {round}: {bad:?}");
    }
}

/// The right password on the attempt that would reach the lockout threshold logs in and
/// locks nothing: no `account_locked` event, no lock left, the count starts again. The
/// wrong one there locks and says so once.
#[test]
fn the_right_password_at_the_threshold_locks_nothing() {
    let t = TestDir::new();
    let rk = t.open();
    let id = user(&rk, "edge@example.com");
    for _ in 0..9 {
        let _ = rk
            .sessions()
            .login("edge@example.com", "wrong password", LoginMeta::default());
    }
    rk.sessions()
        .login("edge@example.com", PW, LoginMeta::default())
        .unwrap();
    rk.users().check_password(id, PW).unwrap();
    let locks = |rk: &Redkeep| {
        rk.audit()
            .list(Some(id), None, usize::MAX)
            .unwrap()
            .iter()
            .filter(|e| e.action == "account_locked")
            .count()
    };
    assert_eq!(locks(&rk), 0);
    assert!(rk.users().lockout(id).unwrap().locked_until.is_none());
    for _ in 0..10 {
        let _ = rk.users().check_password(id, "wrong password");
    }
    assert_eq!(locks(&rk), 1);
    assert!(rk.users().lockout(id).unwrap().locked_until.is_some());

    // A "change" to the same password is refused, but the right current password still
    // ends the attempt: it neither counts as a failure nor leaves a lock behind.
    let other = user(&rk, "same@example.com");
    for _ in 0..9 {
        let _ = rk.users().check_password(other, "wrong password");
    }
    let err = rk.users().change_password_of(other, PW, PW).unwrap_err();
    assert!(matches!(err, redkeep::Error::InvalidInput { .. }), "{err}");
    let lockout = rk.users().lockout(other).unwrap();
    assert!(lockout.locked_until.is_none(), "{lockout:?}");
    assert_eq!(lockout.failed_logins, 0);
}

/// Changes to orgs, roles, names and avatars are in the audit log, each with what changed.
#[test]
fn org_role_name_and_avatar_changes_are_audited() {
    use redkeep::auth::orgs::{OrgRole, OrgSpec};
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let b = user(&rk, "b@example.com");
    let org = rk
        .orgs()
        .create(OrgSpec {
            name: "Team".into(),
            slug: Some("team".into()),
            description: String::new(),
            owner: a,
        })
        .unwrap();
    // A user named twice joins once.
    assert_eq!(
        rk.orgs()
            .add_members(org.id, &[b, b], OrgRole::Member)
            .unwrap()
            .len(),
        1
    );
    // Repeated, each change is one event: the second call changes nothing.
    for _ in 0..2 {
        rk.orgs().set_role(org.id, b, OrgRole::Admin).unwrap();
        rk.orgs().switch(b, org.id).unwrap();
    }
    rk.orgs().set_default(org.id).unwrap();
    rk.orgs().remove_member(org.id, b).unwrap();
    assert!(matches!(
        rk.orgs().remove_member(org.id, b),
        Err(Error::NotFound { .. })
    ));
    rk.roles()
        .create(RoleSpec {
            name: "auditors".into(),
            description: String::new(),
            permissions: ["audit.read".to_string()].into(),
            priority: 0,
        })
        .unwrap();
    rk.roles().delete("auditors").unwrap();
    rk.users().rename(a, Some("Ann".into()), None).unwrap();
    rk.users().rename(a, Some("Ann".into()), None).unwrap();
    rk.users()
        .set_avatar(a, vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3])
        .unwrap();
    assert!(rk.users().remove_avatar(a).unwrap());
    assert!(!rk.users().remove_avatar(a).unwrap());
    let events = rk.audit().list(None, None, usize::MAX).unwrap();
    let seen: Vec<(String, String, String)> = events
        .iter()
        .rev()
        .map(|e| (e.action.clone(), e.subject.clone(), e.detail.clone()))
        .collect();
    let expect = [
        (
            "org_member_added",
            format!("org team user {b}"),
            "as member",
        ),
        (
            "org_role_changed",
            format!("org team user {b}"),
            "member to admin",
        ),
        ("org_switched", format!("org team user {b}"), ""),
        ("org_made_default", "org team".into(), ""),
        (
            "org_member_removed",
            format!("org team user {b}"),
            "was admin",
        ),
        (
            "role_created",
            "role auditors".into(),
            "permissions audit.read",
        ),
        (
            "role_deleted",
            "role auditors".into(),
            "permissions audit.read",
        ),
        ("user_renamed", format!("user {a}"), "name"),
        ("avatar_set", format!("user {a}"), "7 bytes"),
        ("avatar_removed", format!("user {a}"), ""),
    ];
    let mut at = 0;
    for (action, subject, detail) in expect {
        let found = seen[at..]
            .iter()
            .position(|(x, s, d)| x == action && *s == subject && d == detail)
            .unwrap_or_else(|| {
                panic!("no {action} {subject} {detail:?} after event {at}: {seen:?}")
            });
        at += found + 1;
    }
    // Each change once: the duplicate join, the repeated calls, the refused removal and the
    // second avatar removal wrote nothing.
    let count = |action: &str| seen.iter().filter(|(x, _, _)| x == action).count();
    for action in [
        "org_member_added",
        "org_role_changed",
        "org_switched",
        "user_renamed",
        "org_member_removed",
        "avatar_removed",
    ] {
        assert_eq!(count(action), 1, "{action}: {seen:?}");
    }
}

/// An operator's password check (`password_matches`) is no login: wrong passwords never
/// count toward the lockout, a locked account is still checked, each check is audited as
/// `password_checked`, and an unknown user is `NotFound`.
#[test]
fn an_operators_password_check_neither_counts_nor_locks_and_is_audited_as_such() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    for _ in 0..15 {
        assert!(!rk.users().password_matches(a, "bad password").unwrap());
    }
    let l = rk.users().lockout(a).unwrap();
    assert_eq!((l.failed_logins, l.locked_until), (0, None));
    assert!(rk.users().password_matches(a, PW).unwrap());
    rk.users().authenticate("a@example.com", PW).unwrap();
    // Locked by real failed logins: the check still answers.
    for _ in 0..10 {
        let _ = rk.users().authenticate("a@example.com", "bad password");
    }
    assert!(rk.users().lockout(a).unwrap().locked_until.is_some());
    assert!(rk.users().password_matches(a, PW).unwrap());
    let checks: Vec<_> = rk
        .audit()
        .list(Some(a), None, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "password_checked")
        .map(|e| (e.outcome, e.actor))
        .collect();
    assert_eq!(checks.len(), 17);
    assert_eq!(checks[0], ("ok".to_string(), None));
    assert_eq!(checks[16], ("mismatch".to_string(), None));
    assert!(matches!(
        rk.users().password_matches(999, PW),
        Err(Error::NotFound { .. })
    ));
}

/// A disabled user's agent sessions are paused: absent for `get` and `update`, kept with
/// their state, and back once the user is enabled; no new one starts for them.
#[test]
fn a_disabled_users_agent_sessions_are_paused_and_none_can_start() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let spec = |id: &str| AgentSpec {
        id: id.into(),
        user_id: a,
        name: "Planner".into(),
        goal: "plan".into(),
        ttl: None,
    };
    let made = rk.agents().create(spec("ag1")).unwrap();
    rk.users().disable(a).unwrap();
    assert_eq!(rk.agents().get("ag1").unwrap(), None);
    assert!(matches!(
        rk.agents().update("ag1", |s| {
            s.current_step = Some("still running".into());
            Ok(())
        }),
        Err(Error::NotFound { .. })
    ));
    let refused = rk.agents().create(spec("ag2")).unwrap_err();
    assert!(matches!(refused, Error::Denied { .. }), "{refused:?}");
    assert!(
        refused
            .to_string()
            .contains(&format!("user {a} is disabled")),
        "{refused}"
    );
    assert_eq!(rk.agents().list(10).unwrap(), vec![made.clone()]);
    rk.users().enable(a).unwrap();
    assert_eq!(rk.agents().get("ag1").unwrap(), Some(made));
    rk.agents().update("ag1", |_| Ok(())).unwrap();
}

/// The invites a user made stop admitting anyone once the user is disabled or deleted:
/// revoked, audited, and listed in what the disable or delete reports.
#[test]
fn invites_die_with_the_user_who_made_them() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let b = user(&rk, "b@example.com");
    let made_by = |u: u64| {
        rk.invites()
            .create(InviteSpec {
                created_by: Some(u),
                ..InviteSpec::default()
            })
            .unwrap()
    };
    let (of_a, of_b, of_nobody) = (
        made_by(a),
        made_by(b),
        rk.invites().create(InviteSpec::default()).unwrap(),
    );
    let disabled = rk.users().disable(a).unwrap();
    assert_eq!(disabled.invites_revoked, vec![of_a.invite.prefix.clone()]);
    assert!(!disabled.user.is_active);
    assert!(rk.invites().validate(of_a.code.expose()).is_err());
    let revoked = rk.audit().list(Some(a), None, 2).unwrap();
    assert_eq!(
        (revoked[1].action.as_str(), revoked[1].subject.clone()),
        ("invite_revoked", format!("invite {}", of_a.invite.prefix))
    );
    // One of b's invites has expired by the time b goes: it admits no one, so it is not
    // among those revoked.
    let expired = rk
        .invites()
        .create(InviteSpec {
            created_by: Some(b),
            ..InviteSpec::default().expires_in(std::time::Duration::from_secs(60))
        })
        .unwrap();
    t.clock.advance(std::time::Duration::from_secs(61));
    let deleted = rk.users().delete(b).unwrap();
    assert_eq!(deleted.invites_revoked, vec![of_b.invite.prefix.clone()]);
    assert!(!deleted.invites_revoked.contains(&expired.invite.prefix));
    assert!(rk.invites().validate(of_b.code.expose()).is_err());
    rk.invites().validate(of_nobody.code.expose()).unwrap();
    assert!(rk.check(false).unwrap().ok);
}

/// An org holds no roles, so its key grants exactly its scopes: one asked for with none
/// would authenticate and be refused everything, and `create` refuses it (stores nothing),
/// saying how to give scopes; `*` is every permission. A user's key with none is all of its
/// owner's permissions, as before.
#[test]
fn an_org_key_with_no_scopes_is_refused() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com");
    let org = rk.users().get(a).unwrap().unwrap().current_org_id.unwrap();
    let spec = |owner, scopes: &[&str]| ApiKeySpec {
        owner,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_in: None,
        created_by: None,
    };
    match rk.api_keys().create(spec(KeyOwner::Org(org), &[])) {
        Err(Error::InvalidInput { field, reason }) => {
            assert_eq!(field, "scopes");
            assert!(
                reason.contains("grants exactly its scopes") && reason.contains("`*`"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        rk.api_keys()
            .list(Some(KeyOwner::Org(org)), 10)
            .unwrap()
            .is_empty()
    );
    let every = rk
        .api_keys()
        .create(spec(KeyOwner::Org(org), &["*"]))
        .unwrap();
    assert_eq!(every.api_key.scopes, ["*"]);
    let users = rk.api_keys().create(spec(KeyOwner::User(a), &[])).unwrap();
    assert!(users.api_key.scopes.is_empty());
}

/// A new role's name may not be digits alone (it would read as an id, as a username or a
/// slug would); a letter makes it a name.
#[test]
fn a_role_name_of_digits_alone_is_refused() {
    let t = TestDir::new();
    let rk = t.open();
    let spec = |name: &str| RoleSpec {
        name: name.into(),
        description: String::new(),
        permissions: vec!["x".into()],
        priority: 5,
    };
    match rk.roles().create(spec(" 42 ")) {
        Err(Error::InvalidInput { field, reason }) => {
            assert_eq!(field, "role");
            assert!(reason.contains("\"42\" is all digits"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rk.roles().create(spec("42b")).unwrap().name, "42b");
}

/// An org's key made on a member's behalf never grants more than they hold: its maker must
/// be an owner or admin of the org, and hold every scope given (`*` only if they hold `*`);
/// a refusal names the role or the scope they lack, and stores nothing. An operator's key
/// (no maker recorded) takes whatever scopes it is given.
#[test]
fn an_org_key_made_for_a_member_grants_no_more_than_they_hold() {
    use redkeep::auth::orgs::{OrgRole, OrgSpec};
    let t = TestDir::new();
    let rk = t.open();
    let ann = user(&rk, "ann@example.com");
    let dan = user(&rk, "dan@example.com");
    let root = user(&rk, "root@example.com");
    rk.roles().grant(root, "admin", None).unwrap();
    let acme = rk
        .orgs()
        .create(OrgSpec {
            name: "Acme".into(),
            slug: None,
            description: String::new(),
            owner: ann,
        })
        .unwrap()
        .id;
    rk.orgs().add_member(acme, dan, OrgRole::Member).unwrap();
    rk.orgs().add_member(acme, root, OrgRole::Admin).unwrap();
    let key = |by: Option<u64>, scopes: &[&str]| {
        rk.api_keys().create(ApiKeySpec {
            owner: KeyOwner::Org(acme),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_in: None,
            created_by: by,
        })
    };
    let refused = |by: u64, scopes: &[&str]| match key(Some(by), scopes) {
        Err(Error::Denied { reason }) => reason,
        other => panic!("{scopes:?} by user {by}: {other:?}"),
    };

    let plain = refused(dan, &["basic_access"]);
    assert!(
        plain.contains(&format!("user {dan} is a plain member of org {acme}"))
            && plain.contains(&format!("redkeep org set-role {acme} {dan} admin")),
        "{plain}"
    );
    let star = refused(ann, &["*"]);
    assert!(
        star.contains(&format!("user {ann} does not hold every permission (`*`)")),
        "{star}"
    );
    let admin = refused(ann, &["basic_access", "user_management"]);
    assert!(
        admin.contains(&format!(
            "user {ann} does not hold the user_management permission"
        )),
        "{admin}"
    );
    assert_eq!(
        rk.api_keys().list(Some(KeyOwner::Org(acme)), 10).unwrap(),
        vec![]
    );

    // What they hold, they may give; `*` takes a maker who holds `*`; an operator's key
    // takes anything.
    key(Some(ann), &["basic_access", "profile_management"]).unwrap();
    key(Some(root), &["*"]).unwrap();
    key(None, &["*", "user_management"]).unwrap();
    assert_eq!(
        rk.api_keys()
            .list(Some(KeyOwner::Org(acme)), 10)
            .unwrap()
            .len(),
        3
    );
}

/// An org's key grants no more than its maker holds at each request: a role taken from them
/// is taken from the key they made; an operator's key keeps its scopes.
#[cfg(feature = "axum")]
#[test]
fn an_org_keys_caller_holds_no_more_than_its_maker_does_now() {
    use redkeep::web::Caller;
    let t = TestDir::new();
    let rk = t.open();
    let ann = user(&rk, "ann@example.com");
    let acme = rk
        .users()
        .get(ann)
        .unwrap()
        .unwrap()
        .current_org_id
        .unwrap();
    let key = |by: Option<u64>| {
        rk.api_keys()
            .create(ApiKeySpec {
                owner: KeyOwner::Org(acme),
                scopes: vec!["basic_access".into(), "session_management".into()],
                expires_in: None,
                created_by: by,
            })
            .unwrap()
            .key
    };
    let (anns, operators) = (key(Some(ann)), key(None));
    let ark = redkeep::AsyncRedkeep::new(rk.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let permissions = |key: &redkeep::Secret| {
        let caller = runtime
            .block_on(Caller::from_token(&ark, key.expose()))
            .unwrap();
        let held = caller.permissions();
        assert_eq!(
            caller.allows("session_management"),
            held.contains("session_management")
        );
        held
    };
    let both = BTreeSet::from(["basic_access".to_string(), "session_management".to_string()]);
    assert_eq!(permissions(&anns), both);
    // Ann becomes a guest (basic_access only): her key loses session_management with her.
    rk.roles().grant(ann, "guest", None).unwrap();
    rk.roles().revoke(ann, "user", None).unwrap();
    assert_eq!(
        permissions(&anns),
        BTreeSet::from(["basic_access".to_string()])
    );
    assert_eq!(permissions(&operators), both);
}

/// An org's key made by a member stops verifying while that member is disabled (it acts for
/// the org on their word), and works again when they are enabled; an operator's key of the
/// same org is not touched.
#[test]
fn an_org_key_stops_while_the_member_who_made_it_is_disabled() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = user(&rk, "ann@example.com");
    let acme = rk
        .users()
        .get(ann)
        .unwrap()
        .unwrap()
        .current_org_id
        .unwrap();
    let key = |by: Option<u64>| {
        rk.api_keys()
            .create(ApiKeySpec {
                owner: KeyOwner::Org(acme),
                scopes: vec!["basic_access".into()],
                expires_in: None,
                created_by: by,
            })
            .unwrap()
            .key
    };
    let (anns, operators) = (key(Some(ann)), key(None));
    rk.api_keys().verify(anns.expose()).unwrap();
    rk.users().disable(ann).unwrap();
    let refused = rk.api_keys().verify(anns.expose());
    assert!(
        matches!(refused, Err(Error::InvalidCredential { .. })),
        "{refused:?}"
    );
    rk.api_keys().verify(operators.expose()).unwrap();
    rk.users().enable(ann).unwrap();
    rk.api_keys().verify(anns.expose()).unwrap();
}

/// `disable` only suspends a user's keys (`enable` brings them back); after a takeover
/// `disable_revoking_keys` revokes for good their own keys and the org keys they made, in
/// the same transaction, also for a user disabled already; an operator's key of the org
/// stays (security review S7).
#[test]
fn disabling_with_revoked_keys_leaves_no_key_for_enable_to_bring_back() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = user(&rk, "ann@example.com");
    let acme = rk
        .users()
        .get(ann)
        .unwrap()
        .unwrap()
        .current_org_id
        .unwrap();
    let key = |owner: KeyOwner, by: Option<u64>| {
        rk.api_keys()
            .create(ApiKeySpec {
                owner,
                scopes: vec!["basic_access".into()],
                expires_in: None,
                created_by: by,
            })
            .unwrap()
    };
    let own = key(KeyOwner::User(ann), None);
    let made = key(KeyOwner::Org(acme), Some(ann));
    let operators = key(KeyOwner::Org(acme), None);
    let suspended = rk.users().disable(ann).unwrap();
    assert!(suspended.api_keys_revoked.is_empty());
    rk.users().enable(ann).unwrap();
    rk.api_keys().verify(own.key.expose()).unwrap();
    rk.api_keys().verify(made.key.expose()).unwrap();
    rk.users().disable(ann).unwrap();
    let revoked = rk.users().disable_revoking_keys(ann).unwrap();
    assert!(!revoked.user.is_active);
    assert_eq!(
        revoked.api_keys_revoked,
        vec![own.api_key.prefix.clone(), made.api_key.prefix.clone()]
    );
    rk.users().enable(ann).unwrap();
    for k in [&own, &made] {
        let refused = rk.api_keys().verify(k.key.expose());
        assert!(
            matches!(refused, Err(Error::InvalidCredential { .. })),
            "{refused:?}"
        );
    }
    rk.api_keys().verify(operators.key.expose()).unwrap();
    let again = rk.users().disable_revoking_keys(ann).unwrap();
    assert!(again.api_keys_revoked.is_empty());
}
