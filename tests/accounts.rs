//! Users, passwords, avatars and invite codes through the library: every flow and its bad
//! inputs, each with its clear error and nothing partial written.

mod common;

use std::time::Duration;

use common::TestDir;
use redkeep::auth::sessions::LoginMeta;
use redkeep::{
    Error, InviteFilter, InviteSpec, InviteStatus, NewUser, Origin, PasswordParams, Redkeep,
    Registration, UserFilter,
};

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: email.into(),
        password: Some("correct horse".into()),
        ..NewUser::default()
    }
}

#[test]
fn duplicate_email_in_any_case_or_spacing_is_a_conflict() {
    let t = TestDir::new();
    let rk = t.open();
    rk.users().create(new_user("Ann@Example.com")).unwrap();
    for dup in ["ann@example.com", "  ANN@EXAMPLE.COM ", "ann@EXAMPLE.com"] {
        let err = rk.users().create(new_user(dup)).unwrap_err();
        assert!(
            matches!(err, Error::Conflict { index: "email", .. }),
            "{dup}: {err}"
        );
    }
    assert_eq!(rk.users().count().unwrap(), 1);
    assert_eq!(
        rk.users()
            .by_email(" ANN@example.COM")
            .unwrap()
            .unwrap()
            .email,
        "Ann@Example.com"
    );
}

#[test]
fn bad_emails_are_refused_with_the_reason() {
    let t = TestDir::new();
    let rk = t.open();
    let long = format!("{}@example.com", "a".repeat(250));
    for bad in [
        "",
        "plain",
        "a@b",
        "a b@example.com",
        "@example.com",
        "a@-x.com",
        long.as_str(),
    ] {
        let err = rk.users().create(new_user(bad)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput { field: "email", .. }),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(rk.users().count().unwrap(), 0);
}

#[test]
fn short_and_oversize_passwords_are_refused() {
    let t = TestDir::new();
    let rk = t.open();
    for bad in ["1234567".to_string(), "x".repeat(1025)] {
        let mut spec = new_user("a@example.com");
        spec.password = Some(bad.into());
        let err = rk.users().create(spec).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidInput {
                    field: "password",
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(rk.users().count().unwrap(), 0);
}

#[test]
fn usernames_are_unique_case_insensitively_and_validated() {
    let t = TestDir::new();
    let rk = t.open();
    let mut a = new_user("a@example.com");
    a.username = Some("Alice".into());
    rk.users().create(a).unwrap();
    let mut b = new_user("b@example.com");
    b.username = Some("alice".into());
    let err = rk.users().create(b).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                index: "username",
                ..
            }
        ) && err
            .to_string()
            .contains("a user with username alice exists"),
        "{err}"
    );
    for bad in ["ab", "12345", "has space", "a@b"] {
        let mut c = new_user("c@example.com");
        c.username = Some(bad.into());
        assert!(matches!(
            rk.users().create(c).unwrap_err(),
            Error::InvalidInput {
                field: "username",
                ..
            }
        ));
    }
    assert_eq!(rk.users().find("ALICE").unwrap().email, "a@example.com");
}

#[test]
fn generated_passwords_are_returned_once_and_must_be_changed() {
    let t = TestDir::new();
    let rk = t.open();
    let mut spec = new_user("g@example.com");
    spec.password = None;
    let created = rk.users().create(spec).unwrap();
    let pw = created.password.expect("a generated password");
    assert!(created.user.must_change_password);
    let user = rk
        .users()
        .authenticate("g@example.com", pw.expose())
        .unwrap();
    assert_eq!(user.id, created.user.id);
    let changed = rk.users().set_password(user.id, "a new password").unwrap();
    assert!(!changed.must_change_password);
    assert!(matches!(
        rk.users().authenticate("g@example.com", pw.expose()),
        Err(Error::Unauthorized)
    ));
}

#[test]
fn authenticate_gives_one_answer_for_every_failure() {
    let t = TestDir::new();
    let rk = t.open();
    let u = rk.users().create(new_user("a@example.com")).unwrap().user;
    let unknown = rk
        .users()
        .authenticate("nobody@example.com", "correct horse")
        .unwrap_err();
    let wrong = rk
        .users()
        .authenticate("a@example.com", "wrong horse")
        .unwrap_err();
    let malformed = rk
        .users()
        .authenticate("not an email", "correct horse")
        .unwrap_err();
    rk.users().disable(u.id).unwrap();
    let disabled = rk
        .users()
        .authenticate("a@example.com", "correct horse")
        .unwrap_err();
    let texts: Vec<String> = [unknown, wrong, malformed, disabled]
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(texts.iter().all(|t| t == &texts[0]), "{texts:?}");
    rk.users().enable(u.id).unwrap();
    let ok = rk
        .users()
        .authenticate(" A@EXAMPLE.COM", "correct horse")
        .unwrap();
    assert_eq!(ok.last_login_at, Some(rk.now()));
    assert_eq!(rk.users().lockout(ok.id).unwrap().failed_logins, 0);
}

/// A login for an address no account has costs the commits a wrong password costs (their
/// time would tell which addresses have accounts): one of them keeps an audit row, without
/// the login given (it may be a password typed in the wrong field).
#[test]
fn a_login_for_no_account_is_audited_without_what_was_typed() {
    let t = TestDir::new();
    let rk = t.open();
    let before = rk.audit().list(None, None, usize::MAX).unwrap().len();
    let _ = rk
        .users()
        .authenticate("nobody@example.com", "correct horse");
    let _ = rk.users().authenticate("my secret pass", "correct horse");
    let events = rk.audit().list(None, None, usize::MAX).unwrap();
    assert_eq!(events.len(), before + 2, "{events:?}");
    for e in &events[..2] {
        assert_eq!(
            (e.action.as_str(), e.outcome.as_str()),
            ("login_failed", "no_account")
        );
        let shown = format!("{e:?}");
        assert!(
            !shown.contains("nobody") && !shown.contains("secret"),
            "{shown}"
        );
    }
}

/// A flood of requests no one signed in to (failed logins, reset requests) writes its audit
/// rows within a budget a minute: past it, each action's further events are counted in one
/// row, whatever the account (a wrong password for an account and a login no account has
/// alike, so the rows tell no more than the answers), and the next minute has a budget of
/// its own.
#[test]
fn unauthenticated_requests_past_the_audit_budget_are_counted_in_one_row_per_action() {
    let t = TestDir::new();
    let mut options = t.options();
    options.unauthenticated_audit_per_minute = 3;
    let rk = Redkeep::open(t.path(), options).unwrap();
    rk.users().create(new_user("ann@example.com")).unwrap();
    // The start of a minute, so that every request below falls in it.
    assert_eq!(rk.now().0 % 60, 0);
    let audit = || rk.audit().list(None, None, usize::MAX).unwrap();
    let before = audit().len();
    for i in 0..5 {
        let login = format!("nobody{i}@example.com");
        let _ = rk.users().authenticate(&login, "wrong password");
    }
    for _ in 0..2 {
        let _ = rk.users().authenticate("ann@example.com", "wrong password");
    }
    t.clock.advance(Duration::from_secs(30));
    for i in 0..4 {
        let email = format!("nobody{i}@example.com");
        assert!(
            rk.recovery()
                .request_password_reset(&email)
                .unwrap()
                .is_none()
        );
    }
    // Past the budget, the account's request still gets its token.
    assert!(
        rk.recovery()
            .request_password_reset("ann@example.com")
            .unwrap()
            .is_some()
    );
    let events = audit();
    let new = &events[..events.len() - before];
    let summary = |action: &str| {
        let rows: Vec<_> = new
            .iter()
            .filter(|e| e.action == action && e.outcome == "summarized")
            .collect();
        assert_eq!(rows.len(), 1, "{action}: {new:#?}");
        rows[0].detail.clone()
    };
    assert!(
        summary("login_failed").starts_with("4 more login_failed event(s) in this minute"),
        "{new:#?}"
    );
    let resets = summary("password_reset_requested");
    assert!(
        resets.starts_with("5 more password_reset_requested"),
        "{resets}"
    );
    assert!(resets.contains("Rate-limit"), "{resets}");
    // The three the budget wrote one by one, and the two counts.
    assert_eq!(new.len(), 5, "{new:#?}");
    let own = new.iter().filter(|e| e.outcome == "no_account").count();
    assert_eq!(own, 3, "{new:#?}");
    // The next minute writes rows one by one again.
    t.clock.advance(Duration::from_secs(30));
    let _ = rk.users().authenticate("ann@example.com", "wrong password");
    let events = audit();
    assert_eq!(events.len(), before + 6);
    assert_eq!(
        (events[0].action.as_str(), events[0].outcome.as_str()),
        ("login_failed", "denied")
    );
    assert!(rk.check(false).unwrap().ok);
}

/// A new password that is the current one typed in another Unicode form (a Kelvin sign for
/// `K`) is the current one: hashes are made of the NFC form.
#[test]
fn a_change_to_the_same_password_in_another_unicode_form_is_refused() {
    let t = TestDir::new();
    let rk = t.open();
    let mut spec = new_user("k@example.com");
    spec.password = Some("Kitten horse".into());
    let u = rk.users().create(spec).unwrap().user;
    match rk
        .users()
        .change_password_of(u.id, "Kitten horse", "\u{212A}itten horse")
    {
        Err(Error::InvalidInput { reason, .. }) => {
            assert!(reason.contains("current one"), "{reason}")
        }
        other => panic!("the same password was taken as a new one: {other:?}"),
    }
    rk.users()
        .change_password_of(u.id, "Kitten horse", "Kitten horse 2")
        .unwrap();
}

#[test]
fn failed_logins_are_counted_and_reset_by_success() {
    let t = TestDir::new();
    let rk = t.open();
    let u = rk.users().create(new_user("a@example.com")).unwrap().user;
    for _ in 0..3 {
        let _ = rk.users().authenticate("a@example.com", "wrong horse");
    }
    assert_eq!(rk.users().lockout(u.id).unwrap().failed_logins, 3);
    rk.users()
        .authenticate("a@example.com", "correct horse")
        .unwrap();
    assert_eq!(rk.users().lockout(u.id).unwrap().failed_logins, 0);
}

/// The failures of the hour are counted for that hour only: an hour after the first of
/// them, the count reads 0 though it is kept until the next failure.
#[test]
fn failures_this_hour_read_zero_once_the_hour_is_over() {
    let t = TestDir::new();
    let clock = std::sync::Arc::new(redkeep::ManualClock::new(redkeep::Timestamp(1_900_000_000)));
    let rk = redkeep::Redkeep::open(t.path(), t.options().clock(clock.clone())).unwrap();
    let u = rk.users().create(new_user("a@example.com")).unwrap().user;
    for _ in 0..3 {
        let _ = rk.users().authenticate("a@example.com", "wrong horse");
    }
    assert_eq!(rk.users().lockout(u.id).unwrap().failures_in_window, 3);
    clock.advance(std::time::Duration::from_secs(3599));
    assert_eq!(rk.users().lockout(u.id).unwrap().failures_in_window, 3);
    clock.advance(std::time::Duration::from_secs(1));
    assert_eq!(rk.users().lockout(u.id).unwrap().failures_in_window, 0);
}

#[test]
fn hashes_are_upgraded_when_parameters_change() {
    let t = TestDir::new();
    let rk = t.open();
    let u = rk.users().create(new_user("a@example.com")).unwrap().user;
    drop(rk);
    let stronger = PasswordParams {
        memory_kib: 64,
        ..PasswordParams::INSECURE_FAST
    };
    let rk = redkeep::Redkeep::open(t.path(), t.options().password(stronger)).unwrap();
    let before = rk.users().password_info(u.id).unwrap();
    assert_eq!(before.parameters, "m=8,t=1,p=1");
    rk.users()
        .authenticate("a@example.com", "correct horse")
        .unwrap();
    let after = rk.users().password_info(u.id).unwrap();
    assert_eq!(after.algorithm, "argon2id");
    assert_eq!(after.parameters, "m=64,t=1,p=1");
    rk.users()
        .authenticate("a@example.com", "correct horse")
        .unwrap();
}

/// A handle opened with cheaper parameters than a hash was made with (a worker on the
/// defaults, a shell with test settings) never rehashes it down to them at login; a handle
/// with stronger ones still upgrades it.
#[test]
fn a_login_never_rehashes_a_password_down_to_weaker_parameters() {
    let t = TestDir::new();
    let strong = PasswordParams {
        memory_kib: 256,
        iterations: 4,
        parallelism: 1,
    };
    let rk = redkeep::Redkeep::open(t.path(), t.options().password(strong)).unwrap();
    let u = rk.users().create(new_user("a@example.com")).unwrap().user;
    let made = rk.users().password_info(u.id).unwrap();
    assert_eq!(made.parameters, "m=256,t=4,p=1");
    drop(rk);
    // Cheaper in memory and work, or in memory alone, or in work alone, or with other lanes.
    for weaker in [
        PasswordParams::INSECURE_FAST,
        PasswordParams {
            memory_kib: 128,
            iterations: 8,
            parallelism: 1,
        },
        PasswordParams {
            memory_kib: 256,
            iterations: 2,
            parallelism: 1,
        },
        PasswordParams {
            memory_kib: 256,
            iterations: 4,
            parallelism: 2,
        },
    ] {
        let rk = redkeep::Redkeep::open(t.path(), t.options().password(weaker)).unwrap();
        rk.users()
            .authenticate("a@example.com", "correct horse")
            .unwrap();
        assert_eq!(
            rk.users().password_info(u.id).unwrap(),
            made,
            "{weaker:?} rehashed it"
        );
    }
    // More work than stored (same memory): upgraded.
    let stronger = PasswordParams {
        memory_kib: 256,
        iterations: 5,
        parallelism: 1,
    };
    let rk = redkeep::Redkeep::open(t.path(), t.options().password(stronger)).unwrap();
    rk.users()
        .authenticate("a@example.com", "correct horse")
        .unwrap();
    assert_eq!(
        rk.users().password_info(u.id).unwrap().parameters,
        "m=256,t=5,p=1"
    );
}

#[test]
fn avatars_must_be_small_jpegs() {
    let t = TestDir::new();
    let rk = t.open();
    let u = rk.users().create(new_user("a@example.com")).unwrap().user;
    let png = b"\x89PNG\r\n\x1a\n....".to_vec();
    assert!(matches!(
        rk.users().set_avatar(u.id, png),
        Err(Error::InvalidInput {
            field: "avatar",
            ..
        })
    ));
    let mut huge = vec![0xFF, 0xD8, 0xFF];
    huge.resize(1024 * 1024 + 1, 0);
    assert!(matches!(
        rk.users().set_avatar(u.id, huge),
        Err(Error::InvalidInput {
            field: "avatar",
            ..
        })
    ));
    assert_eq!(rk.users().avatar(u.id).unwrap(), None);
    let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
    rk.users().set_avatar(u.id, jpeg.clone()).unwrap();
    assert_eq!(rk.users().avatar(u.id).unwrap(), Some(jpeg));
    assert!(matches!(
        rk.users().set_avatar(999, vec![0xFF, 0xD8, 0xFF]),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn register_consumes_the_invite_with_the_user() {
    let t = TestDir::new();
    let rk = t.open();
    let inv = rk.invites().create(InviteSpec::default()).unwrap();
    let reg = |email: &str| Registration {
        email: email.into(),
        password: "correct horse".into(),
        invite: Some(inv.code.clone()),
        ..Registration::default()
    };
    let user = rk.users().register(reg("a@example.com")).unwrap();
    let stored = rk.invites().find(&inv.invite.prefix).unwrap();
    assert_eq!(stored.used_by, vec![user.id]);
    assert_eq!(stored.status(rk.now()), InviteStatus::UsedUp);
    let err = rk.users().register(reg("b@example.com")).unwrap_err();
    assert!(matches!(err, Error::Revoked { .. }), "{err}");
    assert!(err.to_string().contains("used 1 of 1"), "{err}");
    assert_eq!(rk.users().count().unwrap(), 1);
}

/// A registration whose email or username has an account uses the invite all the same
/// (listed as user 0, which no account has): one code answers as many such questions as it
/// has uses, not any number.
#[test]
fn a_registration_that_clashes_with_an_account_uses_the_invite() {
    let t = TestDir::new();
    let rk = t.open();
    let mut ann = new_user("ann@example.com");
    ann.username = Some("ann".into());
    let ann = rk.users().create(ann).unwrap().user;
    let inv = rk.invites().create(InviteSpec::default().uses(3)).unwrap();
    let reg = |email: &str, username: Option<&str>| Registration {
        email: email.into(),
        password: "correct horse".into(),
        username: username.map(str::to_string),
        invite: Some(inv.code.clone()),
        ..Registration::default()
    };
    let err = rk
        .users()
        .register(reg("ann@example.com", None))
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { index: "email", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("(1 of 3 used)"), "{err}");
    let err = rk
        .users()
        .register(reg("bob@example.com", Some("ann")))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                index: "username",
                ..
            }
        ),
        "{err}"
    );
    let stored = rk.invites().find(&inv.invite.prefix).unwrap();
    assert_eq!((stored.uses, stored.used_by.clone()), (2, vec![0, 0]));
    let bob = rk.users().register(reg("bob@example.com", None)).unwrap();
    let stored = rk.invites().find(&inv.invite.prefix).unwrap();
    assert_eq!(stored.used_by, vec![0, 0, bob.id]);
    assert_eq!(stored.status(rk.now()), InviteStatus::UsedUp);
    // Used up: the next question gets no answer about the address.
    let err = rk
        .users()
        .register(reg("ann@example.com", None))
        .unwrap_err();
    assert!(matches!(err, Error::Revoked { .. }), "{err}");
    assert_eq!(rk.users().count().unwrap(), 2);
    assert_ne!(ann.id, 0);
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn registration_without_invite_or_with_a_bad_one_writes_nothing() {
    let t = TestDir::new();
    let rk = t.open();
    let mut reg = Registration {
        email: "a@example.com".into(),
        password: "correct horse".into(),
        ..Registration::default()
    };
    assert!(matches!(
        rk.users().register(reg.clone()),
        Err(Error::InvalidInput {
            field: "invite",
            ..
        })
    ));
    reg.invite = Some("rki_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into());
    assert!(matches!(
        rk.users().register(reg.clone()),
        Err(Error::InvalidCredential { .. })
    ));
    reg.invite = Some("garbage".into());
    assert!(matches!(
        rk.users().register(reg),
        Err(Error::InvalidCredential { .. })
    ));
    assert_eq!(rk.users().count().unwrap(), 0);
}

/// The insert that fails rolls back with the user it would have made: the invite lists no
/// user of it (the clash's use counts as user 0, see
/// `a_registration_that_clashes_with_an_account_uses_the_invite`).
#[test]
fn a_failed_user_insert_leaves_no_user_behind_on_the_invite() {
    let t = TestDir::new();
    let rk = t.open();
    rk.users().create(new_user("a@example.com")).unwrap();
    let inv = rk.invites().create(InviteSpec::default()).unwrap();
    let mut dup = new_user("A@example.com");
    dup.invite = Some(inv.code.clone());
    assert!(matches!(
        rk.users().create(dup),
        Err(Error::Conflict { .. })
    ));
    let stored = rk.invites().find(&inv.invite.prefix).unwrap();
    assert_eq!(stored.used_by, vec![0]);
    assert_eq!(rk.users().count().unwrap(), 1);
}

#[test]
fn expired_and_revoked_invites_are_refused() {
    let t = TestDir::new();
    let rk = t.open();
    let expiring = rk
        .invites()
        .create(InviteSpec::default().expires_in(Duration::from_secs(3600)))
        .unwrap();
    let revoked = rk.invites().create(InviteSpec::default()).unwrap();
    rk.invites().revoke(&revoked.invite.prefix).unwrap();
    rk.invites().validate(expiring.code.expose()).unwrap();
    t.clock.advance(Duration::from_secs(3600));
    assert!(matches!(
        rk.invites().validate(expiring.code.expose()),
        Err(Error::Expired { .. })
    ));
    let err = rk.invites().validate(revoked.code.expose()).unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    assert!(
        rk.invites()
            .list(InviteFilter::Usable, usize::MAX)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        rk.invites()
            .list(InviteFilter::All, usize::MAX)
            .unwrap()
            .len(),
        2
    );
    let again = rk.invites().revoke(revoked.code.expose()).unwrap_err();
    assert!(again.to_string().contains("already revoked"), "{again}");
}

/// A code pasted in a chat or a ticket does not stay a way in for good: the default invite
/// lasts a week, and one that never expires must be asked for (security review S6).
#[test]
fn a_default_invite_expires_after_a_week_and_a_never_expiring_one_is_asked_for() {
    let t = TestDir::new();
    let rk = t.open();
    let default = rk.invites().create(InviteSpec::default()).unwrap();
    let forever = rk
        .invites()
        .create(InviteSpec::default().never_expires())
        .unwrap();
    assert_eq!(
        default.invite.expires_at,
        Some(
            default
                .invite
                .created_at
                .plus(Duration::from_secs(7 * 86_400))
        )
    );
    assert_eq!(forever.invite.expires_at, None);
    t.clock.advance(Duration::from_secs(7 * 86_400 - 1));
    rk.invites().validate(default.code.expose()).unwrap();
    t.clock.advance(Duration::from_secs(1));
    assert!(matches!(
        rk.invites().validate(default.code.expose()),
        Err(Error::Expired { .. })
    ));
    t.clock.advance(Duration::from_secs(365 * 86_400));
    rk.invites().validate(forever.code.expose()).unwrap();
    let listed = rk.invites().list(InviteFilter::Usable, usize::MAX).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].prefix, forever.invite.prefix);
}

#[test]
fn multi_use_invites_count_down() {
    let t = TestDir::new();
    let rk = t.open();
    let inv = rk.invites().create(InviteSpec::default().uses(2)).unwrap();
    for (i, email) in ["a@example.com", "b@example.com"].iter().enumerate() {
        let mut spec = new_user(email);
        spec.invite = Some(inv.code.clone());
        rk.users().create(spec).unwrap();
        assert_eq!(
            rk.invites().find(&inv.invite.prefix).unwrap().uses,
            i as u32 + 1
        );
    }
    assert!(rk.invites().validate(inv.code.expose()).is_err());
    assert!(matches!(
        rk.invites().create(InviteSpec::default().uses(0)),
        Err(Error::InvalidInput { .. })
    ));
}

#[test]
fn invite_codes_are_stored_only_as_hashes() {
    let t = TestDir::new();
    let rk = t.open();
    let codes: Vec<String> = (0..5)
        .map(|_| {
            rk.invites()
                .create(InviteSpec::default())
                .unwrap()
                .code
                .expose()
                .to_string()
        })
        .collect();
    drop(rk);
    let bytes = common::stored_bytes(t.store.as_deref(), t.path());
    for code in codes {
        let secret_part = &code.as_bytes()[12..];
        assert!(
            !bytes.windows(secret_part.len()).any(|w| w == secret_part),
            "{code} found in the file"
        );
    }
}

#[test]
fn disabled_users_are_listed_only_with_all() {
    let t = TestDir::new();
    let rk = t.open();
    let a = rk.users().create(new_user("a@example.com")).unwrap().user;
    rk.users().create(new_user("b@example.com")).unwrap();
    rk.users().disable(a.id).unwrap();
    assert_eq!(
        rk.users()
            .list(UserFilter::Active, None, usize::MAX)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        rk.users()
            .list(UserFilter::All, None, usize::MAX)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn init_creates_one_admin_once() {
    let t = TestDir::new();
    let rk = t.open();
    let first = rk.init(redkeep::InitSpec::default()).unwrap();
    assert!(first.created);
    let admin = first.admin.unwrap();
    assert!(admin.user.is_admin && admin.user.must_change_password);
    assert!(admin.password.is_some());
    let second = rk.init(redkeep::InitSpec::default()).unwrap();
    assert!(!second.created && second.admin.is_none());
    assert_eq!(rk.users().admins(usize::MAX).unwrap().len(), 1);
}

#[test]
fn data_dir_and_store_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestDir::new();
    let dir = t.path().join("data");
    redkeep::Redkeep::open(&dir, t.options()).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    match &t.store {
        None => assert_eq!(mode(&dir.join(redkeep::STORE_FILE)), 0o600),
        // The store is on the server; the data dir holds the workspaces only.
        Some(_) => assert!(!dir.join(redkeep::STORE_FILE).exists()),
    }
    // Loosened afterwards (copied in, a umask, a chmod): the next open makes them private.
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let workspaces = dir.join(redkeep::WORKSPACES_DIR);
    set(&dir, 0o755);
    set(&workspaces, 0o777);
    set(&workspaces.join("users"), 0o777);
    if t.store.is_none() {
        set(&dir.join(redkeep::STORE_FILE), 0o644);
    }
    redkeep::Redkeep::open(&dir, t.options()).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&workspaces), 0o700);
    assert_eq!(mode(&workspaces.join("users")), 0o700);
    if t.store.is_none() {
        assert_eq!(mode(&dir.join(redkeep::STORE_FILE)), 0o600);
    }
}

#[test]
fn secrets_do_not_debug_print_in_full() {
    let t = TestDir::new();
    let rk = t.open();
    let inv = rk.invites().create(InviteSpec::default()).unwrap();
    let shown = format!("{inv:?}");
    assert!(!shown.contains(inv.code.expose()), "{shown}");
}

#[test]
fn a_users_folder_is_made_at_the_first_write_and_deleting_moves_it_to_trash() {
    let t = TestDir::new();
    let rk = t.open();
    let u = rk.users().create(new_user("a@example.com")).unwrap().user;
    // Nothing on disk until the user writes; reads see an empty workspace.
    assert!(!rk.workspaces().exists(u.id));
    assert_eq!(
        rk.workspaces().read(u.id).unwrap(),
        redkeep::WorkspaceDoc::default()
    );
    rk.workspaces().save_piece(u.id, b"{\"k\": 1}").unwrap();
    assert!(rk.workspaces().exists(u.id));
    rk.users()
        .set_avatar(u.id, vec![0xFF, 0xD8, 0xFF, 0])
        .unwrap();
    let trash = rk.users().delete(u.id).unwrap().trash.unwrap();
    assert!(trash.join("gallery/piece_000001.json").exists());
    assert!(rk.users().get(u.id).unwrap().is_none());
    assert!(rk.users().avatar(u.id).unwrap().is_none());
    assert!(!rk.workspaces().exists(u.id));
    assert!(rk.check(false).unwrap().ok);
    assert!(matches!(
        rk.users().delete(u.id),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_bad_invite_is_refused_before_anyone_learns_the_email_is_taken() {
    let t = TestDir::new();
    let rk = t.open();
    rk.users().create(new_user("taken@example.com")).unwrap();
    let err = rk
        .users()
        .register(Registration {
            email: "taken@example.com".into(),
            password: "correct horse".into(),
            invite: Some("rki_madeupmadeupmadeupmadeupmadeupmadeupmad".into()),
            ..Registration::default()
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCredential { .. }), "{err}");
}

/// A piece saved while its user is being deleted never brings the folder back: the save
/// checks, under the folder's lock, that the user is still there.
#[test]
fn saving_a_piece_while_the_user_is_deleted_never_recreates_the_folder() {
    for round in 0..20 {
        let t = TestDir::new();
        let rk = t.open();
        let id = rk
            .users()
            .create(new_user("racer@example.com"))
            .unwrap()
            .user
            .id;
        rk.workspaces().save_piece(id, b"{}").unwrap();
        let saver = {
            let rk = rk.clone();
            std::thread::spawn(move || {
                let mut saved = 0;
                while rk.workspaces().save_piece(id, b"{\"n\":1}").is_ok() {
                    saved += 1;
                }
                saved
            })
        };
        rk.users().delete(id).unwrap();
        saver.join().unwrap();
        assert!(
            !rk.workspaces().exists(id),
            "round {round}: the deleted user's folder came back"
        );
        let report = rk.check(false).unwrap();
        assert!(report.ok, "round {round}: {:?}", report.problems);
    }
}

/// A crash between a user's deletion and the move of their folder to the trash leaves an
/// orphan folder: `check` reports it and `check --repair` moves it to the trash.
#[test]
fn an_orphan_folder_left_by_a_crash_is_reported_and_moved_to_the_trash() {
    let t = TestDir::new();
    let rk = t.open();
    let id = rk
        .users()
        .create(new_user("orphan@example.com"))
        .unwrap()
        .user
        .id;
    rk.workspaces()
        .save_piece(id, b"{\"private\":true}")
        .unwrap();
    // The deletion committed; the process died before the folder moved.
    rk.store()
        .write(|tx| {
            tx.table::<redkeep::User>().delete(&id)?;
            Ok(())
        })
        .unwrap();
    let report = rk.check(false).unwrap();
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("user {id}"))),
        "{:?}",
        report.problems
    );
    let repaired = rk.check(true).unwrap();
    assert!(!repaired.repaired.is_empty(), "{repaired:?}");
    assert!(!rk.workspaces().exists(id));
    assert!(
        repaired.repaired.iter().any(|r| r.contains("trash")),
        "{:?}",
        repaired.repaired
    );
}

/// `check` takes the same locks as writers: while users are created and pieces saved, it
/// reports nothing wrong.
#[test]
fn check_is_right_while_others_write() {
    let t = TestDir::new();
    let rk = t.open();
    let first = rk
        .users()
        .create(new_user("busy@example.com"))
        .unwrap()
        .user
        .id;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (rk, stop) = (rk.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if w == 0 {
                        rk.workspaces().save_piece(first, b"{}").unwrap();
                    } else {
                        let id = rk
                            .users()
                            .create(new_user(&format!("u{n}@example.com")))
                            .unwrap()
                            .user
                            .id;
                        rk.workspaces().save_piece(id, b"{}").unwrap();
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    for round in 0..15 {
        let report = rk.check(false).unwrap();
        assert!(report.ok, "round {round}: {:?}", report.problems);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        assert!(w.join().unwrap() > 0);
    }
}

/// Emails that only look like another account's are refused: invisible characters, mixed
/// scripts, direction controls; compatibility forms fold into the plain address.
#[test]
fn lookalike_emails_are_refused_or_folded() {
    let t = TestDir::new();
    let rk = t.open();
    rk.users().create(new_user("ann@example.com")).unwrap();
    for (email, says) in [
        ("ann\u{200b}@example.com", "U+200B"),
        ("a\u{00ad}nn@example.com", "U+00AD"),
        ("\u{0430}nn@example.com", "mixes scripts"),
        ("ann@ex\u{0430}mple.com", "mixes scripts"),
        ("ann\u{202e}@example.com", "U+202E"),
        // One script, letters that read as plain ones: a dotless i, an all-Cyrillic name.
        ("b\u{0131}ll@example.com", "U+0131"),
        // Small capitals read as the plain letters in a lower-case address.
        ("\u{0299}ob@example.com", "(U+0299) looks like \"b\""),
        ("\u{0138}im@example.com", "looks like \"k\""),
        ("\u{1D00}\u{0274}\u{0274}@example.com", "U+1D00"),
        ("\u{1D0D}ax@example.com", "(U+1D0D) looks like \"m\""),
        ("\u{1D0D}ax@example.com", "(U+1D0D) looks like \"m\""),
        (
            "\u{0430}\u{0441}\u{0435}@example.com",
            "looks like an address in plain letters",
        ),
        // Capitals of another script that read as Latin ones, though their lower case
        // (`вов`, `βοβ`) does not: the address is kept and shown as typed.
        (
            "\u{0412}\u{041e}\u{0412}@example.com",
            "(U+0412) looks like \"B\"",
        ),
        (
            "\u{0392}\u{039f}\u{0392}@example.com",
            "(U+0392) looks like \"B\"",
        ),
        (
            "\u{041c}\u{0410}\u{041c}\u{0410}@example.com",
            "(U+041C) looks like \"M\"",
        ),
        // The xn-- form of a domain would be a second account for the same mailbox.
        (
            "jose@xn--exmple-cua.com",
            "write the domain as it reads, exämple.com, not its xn-- form",
        ),
    ] {
        match rk.users().create(new_user(email)) {
            Err(Error::InvalidInput { reason, .. }) => {
                assert!(reason.contains(says), "{email:?}: {reason}")
            }
            other => panic!("{email:?} was not refused: {other:?}"),
        }
    }
    // Fullwidth letters are the same address.
    assert!(matches!(
        rk.users().create(new_user("ａｎｎ@example.com")),
        Err(Error::Conflict { .. })
    ));
    assert!(rk.users().by_email("ＡＮＮ@EXAMPLE.COM").unwrap().is_some());
    // A whole address in one other script is a different, honest address.
    let anna = rk.users().create(new_user("анна@пример.рф")).unwrap().user;
    // A change of email meets the same rules.
    match rk
        .users()
        .change_email(anna.id, "\u{0441}\u{043e}\u{0441}\u{043e}@example.com")
    {
        Err(Error::InvalidInput { reason, .. }) => {
            assert!(reason.contains("looks like"), "{reason}")
        }
        other => panic!("a lookalike change of email was not refused: {other:?}"),
    }
    match rk
        .users()
        .change_email(anna.id, "\u{0412}\u{041e}\u{0412}@example.com")
    {
        Err(Error::InvalidInput { reason, .. }) => {
            assert!(reason.contains("(U+0412) looks like"), "{reason}")
        }
        other => panic!("a change of email to capital lookalikes was not refused: {other:?}"),
    }
    match rk.users().change_email(anna.id, "anna@XN--P1AI.xn--p1ai") {
        Err(Error::InvalidInput { reason, .. }) => {
            assert!(reason.contains("as it reads, рф.рф, not"), "{reason}")
        }
        other => panic!("a change of email to an xn-- domain was not refused: {other:?}"),
    }
    // Names may not turn text around either.
    let mut u = new_user("named@example.com");
    u.name = Some("evil\u{202e}gpj.exe".into());
    assert!(matches!(
        rk.users().create(u),
        Err(Error::InvalidInput { .. })
    ));
}

/// Addresses stored before the rules for new ones (here, from an export of an earlier
/// build) still log in and are found as they are stored: capitals that read as Latin ones,
/// and a domain in its xn-- form, which is matched as written (the domain in its own
/// letters finds nothing). Such an account's own address, given again, changes nothing.
#[test]
fn addresses_stored_before_the_rules_for_new_ones_still_log_in() {
    let earlier = TestDir::new();
    let rk = earlier.open();
    for email in ["bob@example.com", "jose@example.com"] {
        rk.users().create(new_user(email)).unwrap();
    }
    let mut out = Vec::new();
    redkeep::ops::export(&rk, &mut out, &|_| {}).unwrap();
    drop(rk);
    let lines = String::from_utf8(out)
        .unwrap()
        .replace(
            "\"bob@example.com\"",
            "\"\u{0412}\u{041e}\u{0412}@example.com\"",
        )
        .replace("\"jose@example.com\"", "\"jose@xn--exmple-cua.com\"");
    let t = TestDir::new();
    let rk = t.open();
    redkeep::ops::import(&rk, &mut std::io::Cursor::new(lines.as_bytes()), &|_| {}).unwrap();
    for email in [
        "\u{0412}\u{041e}\u{0412}@example.com",
        "\u{0432}\u{043e}\u{0432}@example.com",
        "jose@xn--exmple-cua.com",
        "JOSE@XN--EXMPLE-CUA.COM",
    ] {
        let login = rk
            .sessions()
            .login(email, "correct horse", LoginMeta::default());
        assert!(login.is_ok(), "{email}: {login:?}");
        let found = rk.users().find(email).unwrap();
        assert_eq!(
            rk.users().change_email(found.id, &found.email).unwrap(),
            found
        );
    }
    assert_eq!(rk.users().by_email("jose@exämple.com").unwrap(), None);
    assert!(matches!(
        rk.sessions()
            .login("jose@exämple.com", "correct horse", LoginMeta::default()),
        Err(Error::Unauthorized)
    ));
}

/// Any name a user may have fits their personal org's name: the name is cut to leave room for
/// "'s Workspace" (a 190-character name was refused at create, though rename took it).
#[test]
fn the_longest_names_still_get_a_personal_org() {
    let t = TestDir::new();
    let rk = t.open();
    let name = "N".repeat(200);
    let u = rk
        .users()
        .create(NewUser {
            name: Some(name.clone()),
            ..new_user("long@example.com")
        })
        .unwrap()
        .user;
    assert_eq!(u.name, name);
    let orgs = rk.orgs().of_user(u.id).unwrap();
    let personal = &orgs.iter().find(|(o, _)| o.is_personal).unwrap().0;
    assert_eq!(personal.name.chars().count(), 200);
    assert!(
        personal.name.ends_with("NN's Workspace"),
        "{}",
        personal.name
    );
}

/// A clash on a change names the value, not the id of the account that holds it (which an
/// application may pass on to whoever asked), nor the store's table and index names.
#[test]
fn clashes_name_the_value_not_the_holder_or_the_index() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = rk.users().create(new_user("ann@example.com")).unwrap().user;
    let bob = rk.users().create(new_user("bob@example.com")).unwrap().user;
    rk.users()
        .rename(ann.id, None, Some(Some("ann".into())))
        .unwrap();
    let e = rk
        .users()
        .change_email(bob.id, "ANN@example.com")
        .unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
    assert_eq!(e.to_string(), "a user with email ann@example.com exists");
    let e = rk
        .users()
        .rename(bob.id, None, Some(Some("Ann".into())))
        .unwrap_err();
    assert_eq!(e.to_string(), "a user with username Ann exists");
    let spec = || redkeep::auth::agents::AgentSpec {
        id: "a1".into(),
        user_id: ann.id,
        name: "helper".into(),
        goal: "tidy".into(),
        ttl: None,
    };
    rk.agents().create(spec()).unwrap();
    let e = rk.agents().create(spec()).unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
    assert_eq!(e.to_string(), "an agent session with id a1 exists");
    // Nothing changed.
    assert_eq!(
        rk.users().get(bob.id).unwrap().unwrap().email,
        "bob@example.com"
    );
}

/// An application names where its writes come from (`web, 203.0.113.7`) with
/// `Redkeep::with_origin`: the events its writes record inside carry that origin, those
/// outside carry none, and an origin that would not show as one honest line is refused.
#[test]
fn events_written_inside_with_origin_carry_it_and_those_outside_do_not() {
    let t = TestDir::new();
    let rk = t.open();
    let web = Origin::new("web, 203.0.113.7").unwrap();
    let ann = Redkeep::with_origin(&web, || rk.users().create(new_user("ann@example.com")))
        .unwrap()
        .user
        .id;
    let wrong = Redkeep::with_origin(&web, || {
        rk.sessions()
            .login("ann@example.com", "wrong horse", LoginMeta::default())
    });
    assert!(matches!(wrong, Err(Error::Unauthorized)), "{wrong:?}");
    let bob = rk
        .users()
        .create(new_user("bob@example.com"))
        .unwrap()
        .user
        .id;
    rk.sessions()
        .login("bob@example.com", "wrong horse", LoginMeta::default())
        .unwrap_err();
    let events = rk.audit().list(None, None, usize::MAX).unwrap();
    let origin = |user: u64, action: &str| {
        let e = events
            .iter()
            .find(|e| e.subject_user == Some(user) && e.action == action)
            .unwrap_or_else(|| panic!("no {action} of user {user} in {events:?}"));
        e.origin.clone()
    };
    let said = Some("web, 203.0.113.7".to_string());
    assert_eq!(origin(ann, "user_created"), said);
    assert_eq!(origin(ann, "login_failed"), said);
    assert_eq!(origin(bob, "user_created"), None);
    assert_eq!(origin(bob, "login_failed"), None);
    for bad in ["web\n203.0.113.7", "web \u{202e}7.113.0.302", ""] {
        let e = Origin::new(bad).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{bad:?}: {e}");
    }
    let e = Origin::new("x".repeat(Origin::MAX_CHARS + 1)).unwrap_err();
    assert!(e.to_string().contains("at most 200 characters"), "{e}");
}

/// Creating an agent session under the id of one that expired and waits for its sweep (it
/// reads as absent everywhere else) says so and how to free the id, rather than only that
/// one "exists"; after the sweep the id is taken.
#[test]
fn an_agent_id_held_by_an_expired_session_says_how_to_free_it() {
    let t = TestDir::new();
    let clock = std::sync::Arc::new(redkeep::ManualClock::new(redkeep::Timestamp(1_900_000_000)));
    let rk = redkeep::Redkeep::open(t.path(), t.options().clock(clock.clone())).unwrap();
    let ann = rk.users().create(new_user("a@example.com")).unwrap().user;
    let spec = || redkeep::auth::agents::AgentSpec {
        id: "job1".into(),
        user_id: ann.id,
        name: "job".into(),
        goal: "tidy".into(),
        ttl: Some(Duration::from_secs(1)),
    };
    rk.agents().create(spec()).unwrap();
    clock.advance(Duration::from_secs(2));
    assert!(rk.agents().get("job1").unwrap().is_none());
    let e = rk.agents().create(spec()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "an agent session with id job1 exists: it expired at {} and waits for a sweep, \
             which frees the id (`redkeep agent sweep`, or `redkeep agent delete job1`)",
            redkeep::Timestamp(1_900_000_001)
        )
    );
    rk.agents().sweep().unwrap();
    rk.agents().create(spec()).unwrap();
}
