//! Password resets and email verification: single-use, expiring tokens stored hashed, bound to
//! the email they were sent to; asking for a reset looks the same for every email.

mod common;

use std::time::Duration;

use common::TestDir;
use redkeep::auth::recovery::Purpose;
use redkeep::auth::sessions::LoginMeta;
use redkeep::{Error, NewUser, Redkeep, User};

const PW: &str = "correct horse battery";

fn user(rk: &Redkeep, email: &str) -> User {
    rk.users()
        .create(NewUser {
            email: email.into(),
            password: Some(PW.into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
}

fn audit_len(rk: &Redkeep) -> usize {
    rk.audit().list(None, None, usize::MAX).unwrap().len()
}

#[test]
fn a_reset_token_sets_the_password_once_and_ends_every_session() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = user(&rk, "ann@example.com");
    let login = rk
        .sessions()
        .login("ann@example.com", PW, LoginMeta::default())
        .unwrap();
    for _ in 0..3 {
        let _ = rk
            .sessions()
            .login("ann@example.com", "wrong guess!", LoginMeta::default());
    }
    assert_eq!(rk.users().lockout(ann.id).unwrap().failed_logins, 3);

    let issued = rk
        .recovery()
        .request_password_reset(" ANN@example.com ")
        .unwrap()
        .unwrap();
    assert_eq!(issued.user.id, ann.id);
    assert!(issued.token.expose().starts_with("rkr_"));
    let reset = rk
        .recovery()
        .reset_password(issued.token.expose(), "a new password")
        .unwrap();
    assert!(reset.email_verified, "the token was mailed to the address");
    assert_eq!(
        rk.users().lockout(ann.id).unwrap().failed_logins,
        0,
        "lockout lifted"
    );
    assert!(
        rk.users()
            .authenticate("ann@example.com", "a new password")
            .is_ok()
    );
    assert!(matches!(
        rk.users().authenticate("ann@example.com", PW),
        Err(Error::Unauthorized)
    ));
    assert!(
        rk.sessions().validate(login.token.expose()).is_err(),
        "sessions from before the reset end"
    );
    assert!(matches!(
        rk.recovery()
            .reset_password(issued.token.expose(), "another password"),
        Err(Error::InvalidCredential { .. })
    ));
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn asking_for_a_reset_looks_the_same_for_unknown_and_disabled_accounts() {
    let t = TestDir::new();
    let rk = t.open();
    let bob = user(&rk, "bob@example.com");
    let before = audit_len(&rk);
    assert!(
        rk.recovery()
            .request_password_reset("bob@example.com")
            .unwrap()
            .is_some()
    );
    assert_eq!(audit_len(&rk), before + 1);
    assert!(
        rk.recovery()
            .request_password_reset("nobody@example.com")
            .unwrap()
            .is_none()
    );
    assert_eq!(audit_len(&rk), before + 2, "one durable commit either way");
    let last = |rk: &Redkeep| rk.audit().list(None, None, 1).unwrap().remove(0);
    let unknown = last(&rk);
    assert_eq!(
        (unknown.outcome.as_str(), unknown.subject_user),
        ("no_account", Some(0))
    );
    // The unknown email's commit wrote a decoy token, as an issue writes one; nobody holds
    // it, it points at no account (and `check` knows it), and the sweep takes it at expiry.
    let tokens = |rk: &Redkeep| {
        rk.store()
            .read(|tx| tx.table::<redkeep::auth::recovery::RecoveryToken>().count())
            .unwrap()
    };
    assert_eq!(tokens(&rk), 2);
    // Asked again, the email's decoy is replaced, as an account's token is.
    rk.recovery()
        .request_password_reset("nobody@example.com")
        .unwrap();
    assert_eq!(tokens(&rk), 2);
    assert!(rk.check(false).unwrap().ok);
    assert!(rk.check(true).unwrap().ok, "a repair leaves decoys alone");
    assert_eq!(tokens(&rk), 2);
    rk.users().disable(bob.id).unwrap();
    assert!(
        rk.recovery()
            .request_password_reset("bob@example.com")
            .unwrap()
            .is_none()
    );
    // Audited as what it was: a request for bob, who is disabled (not "no account").
    let disabled = last(&rk);
    assert_eq!(
        (
            disabled.action.as_str(),
            disabled.outcome.as_str(),
            disabled.subject_user
        ),
        ("password_reset_requested", "disabled", Some(bob.id))
    );
    assert!(
        rk.audit()
            .list(Some(bob.id), None, 1)
            .unwrap()
            .first()
            .is_some_and(|e| e.outcome == "disabled")
    );
    assert!(rk.recovery().tokens_of(bob.id).unwrap().is_empty());
    t.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(rk.sessions().sweep().unwrap(), 2, "the two decoys, expired");
    assert_eq!(tokens(&rk), 0);
    assert!(matches!(
        rk.recovery().request_password_reset("not an email"),
        Err(Error::InvalidInput { .. })
    ));
}

#[test]
fn reset_tokens_expire_are_replaced_and_die_with_an_email_change() {
    let t = TestDir::new();
    let rk = t.open();
    let cat = user(&rk, "cat@example.com");
    let first = rk
        .recovery()
        .request_password_reset("cat@example.com")
        .unwrap()
        .unwrap();
    let second = rk
        .recovery()
        .request_password_reset("cat@example.com")
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            rk.recovery()
                .reset_password(first.token.expose(), "a new password"),
            Err(Error::InvalidCredential { .. })
        ),
        "a new request replaces the earlier token"
    );
    t.clock.advance(Duration::from_secs(3600));
    assert!(matches!(
        rk.recovery()
            .reset_password(second.token.expose(), "a new password"),
        Err(Error::Expired { .. })
    ));
    let third = rk
        .recovery()
        .request_password_reset("cat@example.com")
        .unwrap()
        .unwrap();
    rk.users().change_email(cat.id, "kat@example.com").unwrap();
    assert!(matches!(
        rk.recovery()
            .reset_password(third.token.expose(), "a new password"),
        Err(Error::InvalidCredential { .. })
    ));
    assert!(rk.users().authenticate("kat@example.com", PW).is_ok());
    // A password set any other way (the operator's, the user's own change) ends a reset link
    // sent before, which would set another password over it.
    let changes: [&dyn Fn(); 2] = [
        &|| {
            drop(
                rk.users()
                    .set_password(cat.id, "set by the operator")
                    .unwrap(),
            )
        },
        &|| {
            drop(
                rk.users()
                    .change_password_of(cat.id, "set by the operator", PW)
                    .unwrap(),
            )
        },
    ];
    for change in changes {
        let before = rk
            .recovery()
            .request_password_reset("kat@example.com")
            .unwrap()
            .unwrap();
        change();
        assert!(matches!(
            rk.recovery()
                .reset_password(before.token.expose(), "a new password"),
            Err(Error::InvalidCredential { .. })
        ));
    }
    // Disabling the account voids a link sent before: enabling it again does not bring
    // the link back.
    let before = rk
        .recovery()
        .request_password_reset("kat@example.com")
        .unwrap()
        .unwrap();
    rk.users().disable(cat.id).unwrap();
    rk.users().enable(cat.id).unwrap();
    assert!(matches!(
        rk.recovery()
            .reset_password(before.token.expose(), "a new password"),
        Err(Error::InvalidCredential { .. })
    ));
    // A bad password is refused before the token is touched.
    let fourth = rk
        .recovery()
        .request_password_reset("kat@example.com")
        .unwrap()
        .unwrap();
    assert!(matches!(
        rk.recovery().reset_password(fourth.token.expose(), "short"),
        Err(Error::InvalidInput { .. })
    ));
    assert!(
        rk.recovery()
            .reset_password(fourth.token.expose(), "long enough now")
            .is_ok()
    );
    // Tokens of one kind do not work as the other.
    let reset = rk
        .recovery()
        .request_password_reset("kat@example.com")
        .unwrap()
        .unwrap();
    assert!(matches!(
        rk.recovery().verify_email(reset.token.expose()),
        Err(Error::InvalidCredential { .. })
    ));
}

#[test]
fn verification_marks_the_email_and_a_new_email_must_be_verified_again() {
    let t = TestDir::new();
    let rk = t.open();
    let dan = user(&rk, "dan@example.com");
    assert!(!dan.email_verified);
    let issued = rk.recovery().request_email_verification(dan.id).unwrap();
    assert!(issued.token.expose().starts_with("rkv_"));
    assert_eq!(issued.user.email, "dan@example.com");
    let stale = rk.recovery().request_email_verification(dan.id).unwrap();
    let fresh = rk.recovery().request_email_verification(dan.id).unwrap();
    assert!(rk.recovery().verify_email(stale.token.expose()).is_err());
    assert!(
        rk.recovery()
            .verify_email(fresh.token.expose())
            .unwrap()
            .email_verified
    );
    assert!(matches!(
        rk.recovery().request_email_verification(dan.id),
        Err(Error::Denied { .. })
    ));

    let changed = rk
        .users()
        .change_email(dan.id, "daniel@example.com")
        .unwrap();
    assert!(!changed.email_verified, "a new email is unverified");
    let pending = rk.recovery().request_email_verification(dan.id).unwrap();
    rk.users().change_email(dan.id, "dan2@example.com").unwrap();
    assert!(
        rk.recovery().verify_email(pending.token.expose()).is_err(),
        "a token proves only the address it was sent to"
    );
    let other = user(&rk, "eve@example.com");
    assert!(matches!(
        rk.users().change_email(other.id, "DAN2@example.com"),
        Err(Error::Conflict { .. })
    ));
    // The new address is kept as given (trimmed), as `create` keeps one, and found in any case.
    let kept = rk
        .users()
        .change_email(dan.id, " Dan.Two@Example.COM ")
        .unwrap();
    assert_eq!(kept.email, "Dan.Two@Example.COM");
    assert_eq!(
        rk.users()
            .by_email("dan.two@example.com")
            .unwrap()
            .unwrap()
            .id,
        dan.id
    );
    assert!(
        rk.users()
            .set_email_verified(dan.id, true)
            .unwrap()
            .email_verified
    );
    assert!(rk.recovery().tokens_of(dan.id).unwrap().is_empty());
}

/// A change to the address the user has (as given, trimmed) changes nothing: it stays
/// verified, its tokens stay, nothing is audited. The same address in other letter case is
/// a change: kept as given, audited, to be verified again.
#[test]
fn a_change_to_the_current_email_changes_nothing_but_one_of_case_is_a_change() {
    let t = TestDir::new();
    let rk = t.open();
    let bob = user(&rk, "bob@example.com");
    let bob = rk.users().set_email_verified(bob.id, true).unwrap();
    rk.recovery()
        .request_password_reset("bob@example.com")
        .unwrap()
        .unwrap();
    let events = audit_len(&rk);
    let same = rk
        .users()
        .change_email(bob.id, " bob@example.com ")
        .unwrap();
    assert_eq!(same, bob);
    assert_eq!(rk.users().get(bob.id).unwrap().unwrap(), bob);
    assert_eq!(audit_len(&rk), events);
    assert_eq!(rk.recovery().tokens_of(bob.id).unwrap().len(), 1);

    let cased = rk.users().change_email(bob.id, "Bob@example.com").unwrap();
    assert_eq!(cased.email, "Bob@example.com");
    assert!(!cased.email_verified);
    assert_eq!(audit_len(&rk), events + 1);
    assert!(rk.recovery().tokens_of(bob.id).unwrap().is_empty());
}

#[test]
fn tokens_are_stored_hashed_swept_when_expired_and_deleted_with_their_user() {
    let t = TestDir::new();
    let rk = t.open();
    let fay = user(&rk, "fay@example.com");
    let issued = rk
        .recovery()
        .request_password_reset("fay@example.com")
        .unwrap()
        .unwrap();
    let stored = rk.recovery().tokens_of(fay.id).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].purpose, Purpose::PasswordReset);
    assert!(issued.token.expose().starts_with(&stored[0].prefix));
    let mut export = Vec::new();
    redkeep::ops::export(&rk, &mut export, &|_| {}).unwrap();
    assert!(
        !String::from_utf8(export)
            .unwrap()
            .contains(issued.token.expose())
    );

    rk.recovery().request_email_verification(fay.id).unwrap();
    t.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(rk.sessions().sweep().unwrap(), 1, "the expired reset token");
    assert_eq!(rk.recovery().tokens_of(fay.id).unwrap().len(), 1);
    rk.users().delete(fay.id).unwrap();
    assert!(rk.recovery().tokens_of(fay.id).unwrap().is_empty());
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn a_password_change_by_id_needs_the_current_password_and_ends_sessions() {
    let t = TestDir::new();
    let rk = t.open();
    let gus = user(&rk, "gus@example.com");
    let login = rk
        .sessions()
        .login("gus@example.com", PW, LoginMeta::default())
        .unwrap();
    assert!(matches!(
        rk.users()
            .change_password_of(gus.id, "not the password", "a new password"),
        Err(Error::Unauthorized)
    ));
    assert_eq!(rk.users().lockout(gus.id).unwrap().failed_logins, 1);
    rk.users()
        .change_password_of(gus.id, PW, "a new password")
        .unwrap();
    assert!(rk.sessions().validate(login.token.expose()).is_err());
    assert!(
        rk.users().authenticate("gus", "a new password").is_err(),
        "no username"
    );
    assert!(
        rk.users()
            .authenticate("gus@example.com", "a new password")
            .is_ok()
    );
}

#[test]
fn web_sessions_are_stored_under_a_hash_and_expire() {
    let t = TestDir::new();
    let rk = t.open();
    let ws = rk.web_sessions();
    let id = 0x1234_5678_9abc_def0_u128.to_le_bytes();
    let later = rk.now().plus(Duration::from_secs(60));
    assert!(ws.create(&id, r#"{"a":1}"#, later).unwrap());
    assert!(
        !ws.create(&id, r#"{"b":2}"#, later).unwrap(),
        "an id is never reused"
    );
    assert_eq!(ws.load(&id).unwrap().unwrap().0, r#"{"a":1}"#);
    ws.save(&id, r#"{"a":2}"#, later).unwrap();
    assert_eq!(ws.load(&id).unwrap().unwrap().0, r#"{"a":2}"#);
    t.clock.advance(Duration::from_secs(60));
    assert!(ws.load(&id).unwrap().is_none(), "expired");
    assert_eq!(ws.count().unwrap(), 1);
    assert_eq!(rk.sessions().sweep().unwrap(), 1);
    assert_eq!(ws.count().unwrap(), 0);
    let other = 7u128.to_le_bytes();
    ws.save(&other, "{}", rk.now().plus(Duration::from_secs(5)))
        .unwrap();
    assert!(ws.delete(&other).unwrap());
    assert!(!ws.delete(&other).unwrap());
    assert!(matches!(
        ws.save(&other, &"x".repeat(2 << 20), later),
        Err(Error::InvalidInput { .. })
    ));
}
