//! Bad input, case by case: each is refused with the error kind a caller acts on and a
//! message that names the problem, and leaves the store and the workspace files exactly as
//! they were (the whole export, records and files, is compared before and after).

mod common;

use std::time::Duration;

use common::TestDir;
use redkeep::auth::agents::AgentSpec;
use redkeep::auth::api_keys::{ApiKeySpec, KeyOwner};
use redkeep::auth::orgs::{OrgRole, OrgSpec};
use redkeep::auth::roles::RoleSpec;
use redkeep::auth::sessions::LoginMeta;
use redkeep::{Error, InviteSpec, NewUser, Redkeep, Registration, Result, Secret};

const PW: &str = "correct horse battery";

struct Fixture {
    rk: Redkeep,
    ann: u64,
    acme: u64,
}

fn fixture(t: &TestDir) -> Fixture {
    let rk = t.open();
    let ann = rk
        .users()
        .create(NewUser {
            email: "ann@example.com".into(),
            username: Some("ann".into()),
            password: Some(PW.into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id;
    let bob = rk
        .users()
        .create(NewUser {
            email: "bob@example.com".into(),
            password: Some(PW.into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id;
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
    rk.orgs().add_member(acme, bob, OrgRole::Member).unwrap();
    rk.workspaces()
        .save_piece(ann, br#"{"title":"first"}"#)
        .unwrap();
    rk.agents()
        .create(AgentSpec {
            id: "job-1".into(),
            user_id: ann,
            name: "Job".into(),
            goal: "g".into(),
            ttl: None,
        })
        .unwrap();
    Fixture { rk, ann, acme }
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "NotFound",
        Error::Conflict { .. } => "Conflict",
        Error::InvalidInput { .. } => "InvalidInput",
        Error::Unauthorized => "Unauthorized",
        Error::InvalidCredential { .. } => "InvalidCredential",
        Error::Expired { .. } => "Expired",
        Error::Revoked { .. } => "Revoked",
        Error::Denied { .. } => "Denied",
        Error::UnsafePath { .. } => "UnsafePath",
        Error::DamagedFile { .. } => "DamagedFile",
        _ => "other",
    }
}

type Run = Box<dyn Fn(&Fixture) -> Result<()>>;

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: email.into(),
        password: Some(PW.into()),
        ..NewUser::default()
    }
}

fn create(user: NewUser) -> Run {
    Box::new(move |f| f.rk.users().create(user.clone()).map(|_| ()))
}

fn role(name: &str, permissions: &[&str]) -> Run {
    let spec = RoleSpec {
        name: name.into(),
        description: String::new(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        priority: 0,
    };
    Box::new(move |f| f.rk.roles().create(spec.clone()).map(|_| ()))
}

fn org(name: &str, slug: Option<&str>, owner: Option<u64>) -> Run {
    let (name, slug) = (name.to_string(), slug.map(String::from));
    Box::new(move |f| {
        f.rk.orgs()
            .create(OrgSpec {
                name: name.clone(),
                slug: slug.clone(),
                description: String::new(),
                owner: owner.unwrap_or(f.ann),
            })
            .map(|_| ())
    })
}

fn import(text: &'static str) -> Run {
    Box::new(move |f| {
        let mut input = std::io::Cursor::new(text.as_bytes());
        redkeep::ops::import(&f.rk, &mut input, &|_| {}).map(|_| ())
    })
}

fn library_cases() -> Vec<(&'static str, &'static str, &'static str, Run)> {
    let long_email = format!("{}@example.com", "a".repeat(300));
    vec![
        (
            "email without @",
            "InvalidInput",
            "has no @",
            create(new_user("no-at-sign")),
        ),
        (
            "email too long",
            "InvalidInput",
            "longer than",
            create(new_user(&long_email)),
        ),
        (
            "an empty display name",
            "InvalidInput",
            "it is empty",
            create(NewUser {
                name: Some("   ".into()),
                ..new_user("blank@example.com")
            }),
        ),
        (
            "renaming to an empty display name",
            "InvalidInput",
            "it is empty",
            Box::new(|f| {
                f.rk.users()
                    .rename(f.ann, Some(String::new()), None)
                    .map(|_| ())
            }),
        ),
        (
            "email with a space",
            "InvalidInput",
            "space",
            create(new_user("a b@example.com")),
        ),
        (
            "email with a zero-width space",
            "InvalidInput",
            "U+200B",
            create(new_user("ann\u{200b}@example.com")),
        ),
        (
            "email mixing scripts",
            "InvalidInput",
            "mixes scripts",
            create(new_user("\u{0430}nn@example.com")),
        ),
        (
            "email in Cyrillic capitals that read as Latin ones",
            "InvalidInput",
            "'В' (U+0412) looks like \"B\"",
            create(new_user("\u{0412}\u{041e}\u{0412}@example.com")),
        ),
        (
            "email in Greek capitals that read as Latin ones",
            "InvalidInput",
            "'Β' (U+0392) looks like \"B\"",
            create(new_user("\u{0392}\u{039f}\u{0392}@example.com")),
        ),
        (
            "email with its domain in the xn-- form",
            "InvalidInput",
            "write the domain as it reads, exämple.com, not its xn-- form",
            create(new_user("jose@xn--exmple-cua.com")),
        ),
        (
            "changing an email to Cyrillic capitals that read as Latin ones",
            "InvalidInput",
            "(U+0412) looks like",
            Box::new(|f| {
                f.rk.users()
                    .change_email(f.ann, "\u{0412}\u{041e}\u{0412}@example.com")
                    .map(|_| ())
            }),
        ),
        (
            "changing an email to a domain in the xn-- form",
            "InvalidInput",
            "write the domain as it reads, exämple.com",
            Box::new(|f| {
                f.rk.users()
                    .change_email(f.ann, "ann@XN--exmple-cua.com")
                    .map(|_| ())
            }),
        ),
        (
            "looking up the xn-- form of a domain",
            "NotFound",
            "try ann@exämple.com",
            Box::new(|f| f.rk.users().find("ann@xn--exmple-cua.com").map(|_| ())),
        ),
        (
            "email with a direction override",
            "InvalidInput",
            "U+202E",
            create(new_user("a\u{202e}b@example.com")),
        ),
        (
            "email without a domain dot",
            "InvalidInput",
            "example.com",
            create(new_user("a@localhost")),
        ),
        (
            "email with a domain label over 63",
            "InvalidInput",
            "longer than 63 bytes (64 bytes",
            create(new_user(&format!("y@{}.com", "b".repeat(64)))),
        ),
        (
            "email local part over 64",
            "InvalidInput",
            "64",
            create(new_user(&format!("{}@example.com", "x".repeat(65)))),
        ),
        (
            "password too short",
            "InvalidInput",
            "at least 8",
            create(NewUser {
                password: Some("short".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "password too long",
            "InvalidInput",
            "at most 1024",
            create(NewUser {
                password: Some("x".repeat(1025).into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "username too short",
            "InvalidInput",
            "3 to 32",
            create(NewUser {
                username: Some("ab".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "username all digits",
            "InvalidInput",
            "all digits",
            create(NewUser {
                username: Some("12345".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "username with a space",
            "InvalidInput",
            "3 to 32",
            create(NewUser {
                username: Some("a b c".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "username of dots only",
            "InvalidInput",
            "no letter or digit",
            create(NewUser {
                username: Some("...".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "renaming to a username of dots and underscores only",
            "InvalidInput",
            "no letter or digit",
            Box::new(|f| {
                f.rk.users()
                    .rename(f.ann, None, Some(Some("_._".into())))
                    .map(|_| ())
            }),
        ),
        (
            "username that reads as an option",
            "InvalidInput",
            "starts with -",
            create(NewUser {
                username: Some("-1-".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "password of spaces only",
            "InvalidInput",
            "only spaces",
            create(NewUser {
                password: Some("          ".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "password with a NUL",
            "InvalidInput",
            "control character",
            create(NewUser {
                password: Some("correct\0horse".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "revoking an API key named by nothing",
            "InvalidInput",
            "it is empty",
            Box::new(|f| f.rk.api_keys().revoke("  ").map(|_| ())),
        ),
        (
            "name over 200 characters",
            "InvalidInput",
            "200",
            create(NewUser {
                name: Some("n".repeat(201)),
                ..new_user("c@example.com")
            }),
        ),
        (
            "name with a control character",
            "InvalidInput",
            "control",
            create(NewUser {
                name: Some("a\u{7}b".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "name turning text around",
            "InvalidInput",
            "direction",
            create(NewUser {
                name: Some("a\u{202e}b".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "email taken in another case",
            "Conflict",
            "exists",
            create(new_user("ANN@example.com")),
        ),
        (
            "username taken in another case",
            "Conflict",
            "username",
            create(NewUser {
                username: Some("ANN".into()),
                ..new_user("c@example.com")
            }),
        ),
        (
            "registration without an invite",
            "InvalidInput",
            "invite",
            Box::new(|f| {
                f.rk.users()
                    .register(Registration {
                        email: "c@example.com".into(),
                        password: PW.into(),
                        ..Registration::default()
                    })
                    .map(|_| ())
            }),
        ),
        (
            "registration with an unknown invite",
            "InvalidCredential",
            "invite",
            Box::new(|f| {
                f.rk.users()
                    .register(Registration {
                        email: "c@example.com".into(),
                        password: PW.into(),
                        invite: Some(Secret::new("rki_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")),
                        ..Registration::default()
                    })
                    .map(|_| ())
            }),
        ),
        (
            "invite dead at birth",
            "InvalidInput",
            "at least 1s",
            Box::new(|f| {
                f.rk.invites()
                    .create(InviteSpec::default().expires_in(Duration::from_nanos(1)))
                    .map(|_| ())
            }),
        ),
        (
            "invite beyond 100 years",
            "InvalidInput",
            "100 years",
            Box::new(|f| {
                f.rk.invites()
                    .create(InviteSpec::default().expires_in(Duration::MAX))
                    .map(|_| ())
            }),
        ),
        (
            "invite with no uses",
            "InvalidInput",
            "use",
            Box::new(|f| {
                f.rk.invites()
                    .create(InviteSpec::default().uses(0))
                    .map(|_| ())
            }),
        ),
        (
            "revoking an unknown invite",
            "NotFound",
            "invite",
            Box::new(|f| f.rk.invites().revoke("rki_aaaaaaaa").map(|_| ())),
        ),
        (
            "revoking something that is no code",
            "InvalidInput",
            "prefix",
            Box::new(|f| f.rk.invites().revoke("?").map(|_| ())),
        ),
        (
            "role with a bad name",
            "InvalidInput",
            "name",
            role("Bad Name!", &["x"]),
        ),
        (
            "role without permissions",
            "InvalidInput",
            "permission",
            role("empty", &[]),
        ),
        (
            "role with a bad permission",
            "InvalidInput",
            "permission",
            role("spaced", &["has space"]),
        ),
        (
            "role named like a system role",
            "Conflict",
            "admin",
            role("admin", &["x"]),
        ),
        (
            "a role description with a terminal escape and a line break",
            "InvalidInput",
            "without control",
            Box::new(|f| {
                f.rk.roles()
                    .create(RoleSpec {
                        name: "painted".into(),
                        description: "evil\u{1b}[31mred\nstatus: admin".into(),
                        permissions: ["x".to_string()].into(),
                        priority: 0,
                    })
                    .map(|_| ())
            }),
        ),
        (
            "deleting a system role",
            "Denied",
            "system role",
            Box::new(|f| f.rk.roles().delete("user").map(|_| ())),
        ),
        (
            "granting an unknown role",
            "NotFound",
            "nope",
            Box::new(|f| f.rk.roles().grant(f.ann, "nope", None).map(|_| ())),
        ),
        (
            "granting to an unknown user",
            "NotFound",
            "user 999",
            Box::new(|f| f.rk.roles().grant(999, "user", None).map(|_| ())),
        ),
        (
            "org without a name",
            "InvalidInput",
            "name",
            org("", None, None),
        ),
        (
            "org with a bad slug",
            "InvalidInput",
            "slug",
            org("Org", Some("Bad Slug"), None),
        ),
        (
            "org with a taken slug",
            "Conflict",
            "slug",
            org("Acme again", Some("acme"), None),
        ),
        (
            "org with an unknown owner",
            "NotFound",
            "user 999",
            org("Org", None, Some(999)),
        ),
        (
            "the last owner leaving",
            "Denied",
            "last owner",
            Box::new(|f| f.rk.orgs().remove_member(f.acme, f.ann).map(|_| ())),
        ),
        (
            "deleting an org with members",
            "Denied",
            "members",
            Box::new(|f| f.rk.orgs().delete(f.acme, false).map(|_| ())),
        ),
        (
            "joining twice",
            "Denied",
            "already a member",
            Box::new(|f| {
                f.rk.orgs()
                    .add_member(f.acme, f.ann, OrgRole::Member)
                    .map(|_| ())
            }),
        ),
        (
            "role of a non-member",
            "NotFound",
            "member",
            Box::new(|f| {
                f.rk.orgs()
                    .set_role(f.acme, 999, OrgRole::Admin)
                    .map(|_| ())
            }),
        ),
        (
            "a made-up session token",
            "InvalidCredential",
            "session",
            Box::new(|f| f.rk.sessions().validate("rks_madeup").map(|_| ())),
        ),
        (
            "a login lasting no time",
            "InvalidInput",
            "ttl",
            Box::new(|f| {
                f.rk.sessions()
                    .login(
                        "ann",
                        PW,
                        LoginMeta {
                            ttl: Some(Duration::ZERO),
                            ..LoginMeta::default()
                        },
                    )
                    .map(|_| ())
            }),
        ),
        (
            "an API key with 65 scopes",
            "InvalidInput",
            "at most 64",
            Box::new(|f| {
                f.rk.api_keys()
                    .create(ApiKeySpec {
                        owner: KeyOwner::User(f.ann),
                        scopes: (0..65).map(|i| format!("scope{i}")).collect(),
                        expires_in: None,
                        created_by: None,
                    })
                    .map(|_| ())
            }),
        ),
        (
            "an org name that turns the text after it around",
            "InvalidInput",
            "direction-changing",
            org("Evil\u{202E}Org", None, None),
        ),
        (
            "an org description with a line break and an escape",
            "InvalidInput",
            "without control",
            Box::new(|f| {
                f.rk.orgs()
                    .create(OrgSpec {
                        name: "Fine".into(),
                        slug: None,
                        description: "l1\nl2\u{1b}[31m".into(),
                        owner: f.ann,
                    })
                    .map(|_| ())
            }),
        ),
        (
            "a role description that turns the text after it around",
            "InvalidInput",
            "direction-changing",
            Box::new(|f| {
                f.rk.roles()
                    .create(RoleSpec {
                        name: "turned".into(),
                        permissions: vec!["x".into()],
                        description: "a\u{202E}b".into(),
                        priority: 0,
                    })
                    .map(|_| ())
            }),
        ),
        (
            "an API key scope with a * inside",
            "InvalidInput",
            "* alone",
            Box::new(|f| {
                f.rk.api_keys()
                    .create(ApiKeySpec {
                        owner: KeyOwner::User(f.ann),
                        scopes: vec!["docs:*".into()],
                        expires_in: None,
                        created_by: None,
                    })
                    .map(|_| ())
            }),
        ),
        (
            "an invite made by a user who does not exist",
            "NotFound",
            "creator",
            Box::new(|f| {
                f.rk.invites()
                    .create(redkeep::InviteSpec {
                        created_by: Some(u64::MAX),
                        ..redkeep::InviteSpec::default()
                    })
                    .map(|_| ())
            }),
        ),
        (
            "an API key dead at birth",
            "InvalidInput",
            "at least 1s",
            Box::new(|f| {
                f.rk.api_keys()
                    .create(ApiKeySpec {
                        owner: KeyOwner::User(f.ann),
                        scopes: vec![],
                        expires_in: Some(Duration::ZERO),
                        created_by: None,
                    })
                    .map(|_| ())
            }),
        ),
        (
            "an API key of an unknown user",
            "NotFound",
            "user 999",
            Box::new(|f| {
                f.rk.api_keys()
                    .create(ApiKeySpec {
                        owner: KeyOwner::User(999),
                        scopes: vec![],
                        expires_in: None,
                        created_by: None,
                    })
                    .map(|_| ())
            }),
        ),
        (
            "a made-up API key",
            "InvalidCredential",
            "key",
            Box::new(|f| f.rk.api_keys().verify("rkk_madeup").map(|_| ())),
        ),
        (
            "an agent id with a space",
            "InvalidInput",
            "id",
            Box::new(|f| {
                f.rk.agents()
                    .create(AgentSpec {
                        id: "a b".into(),
                        user_id: f.ann,
                        name: String::new(),
                        goal: String::new(),
                        ttl: None,
                    })
                    .map(|_| ())
            }),
        ),
        (
            "an agent of an unknown user",
            "NotFound",
            "user 999",
            Box::new(|f| {
                f.rk.agents()
                    .create(AgentSpec {
                        id: "job-2".into(),
                        user_id: 999,
                        name: String::new(),
                        goal: String::new(),
                        ttl: None,
                    })
                    .map(|_| ())
            }),
        ),
        (
            "an agent id taken",
            "Conflict",
            "agent",
            Box::new(|f| {
                f.rk.agents()
                    .create(AgentSpec {
                        id: "job-1".into(),
                        user_id: f.ann,
                        name: String::new(),
                        goal: String::new(),
                        ttl: None,
                    })
                    .map(|_| ())
            }),
        ),
        (
            // Six characters make an eight-byte key, once shown as a number.
            "updating an unknown agent session with a six-character id",
            "NotFound",
            "agent session nosuch not found",
            Box::new(|f| f.rk.agents().update("nosuch", |_| Ok(())).map(|_| ())),
        ),
        (
            "agent context that is not JSON",
            "InvalidInput",
            "context",
            Box::new(|f| {
                f.rk.agents()
                    .update("job-1", |s| {
                        s.context = "{nope".into();
                        Ok(())
                    })
                    .map(|_| ())
            }),
        ),
        (
            "an avatar that is not a JPEG",
            "InvalidInput",
            "JPEG",
            Box::new(|f| f.rk.users().set_avatar(f.ann, b"\x89PNG\r\n".to_vec())),
        ),
        (
            "an avatar over 1 MiB",
            "InvalidInput",
            "limit",
            Box::new(|f| f.rk.users().set_avatar(f.ann, vec![0xFF; (1 << 20) + 1])),
        ),
        (
            "a piece that is not JSON",
            "InvalidInput",
            "JSON",
            Box::new(|f| f.rk.workspaces().save_piece(f.ann, b"{nope").map(|_| ())),
        ),
        (
            "a piece over the cap",
            "InvalidInput",
            "limit",
            Box::new(|f| {
                let big = format!("\"{}\"", "x".repeat(17 << 20));
                f.rk.workspaces()
                    .save_piece(f.ann, big.as_bytes())
                    .map(|_| ())
            }),
        ),
        (
            "a piece for an unknown user",
            "NotFound",
            "user 999",
            Box::new(|f| f.rk.workspaces().save_piece(999, b"{}").map(|_| ())),
        ),
        (
            "an update that fails halfway",
            "InvalidInput",
            "half",
            Box::new(|f| {
                f.rk.workspaces().update(f.ann, |doc| {
                    doc.notes = serde_json::json!(["lost"]);
                    Err(Error::invalid("update", "failed halfway"))
                })
            }),
        ),
        (
            "a piece that does not exist",
            "NotFound",
            "piece 9",
            Box::new(|f| f.rk.workspaces().load_piece(f.ann, 9).map(|_| ())),
        ),
        (
            "a made-up reset token",
            "InvalidCredential",
            "reset",
            Box::new(|f| {
                f.rk.recovery()
                    .reset_password("rkr_madeupmadeupmadeupmadeupmadeupmadeupmad", PW)
                    .map(|_| ())
            }),
        ),
        (
            "a weak password with a reset",
            "InvalidInput",
            "at least 8",
            Box::new(|f| {
                f.rk.recovery()
                    .reset_password("rkr_madeupmadeupmadeupmadeupmadeupmadeupmad", "weak")
                    .map(|_| ())
            }),
        ),
        (
            "a made-up verification token",
            "InvalidCredential",
            "verification",
            Box::new(|f| f.rk.recovery().verify_email("rkv_madeup").map(|_| ())),
        ),
        (
            "changing to a taken email",
            "Conflict",
            "email",
            Box::new(|f| {
                f.rk.users()
                    .change_email(f.ann, "bob@example.com")
                    .map(|_| ())
            }),
        ),
        (
            "importing into a store with data",
            "Denied",
            "holds data",
            import("{\"redkeep_export\":2,\"schema_version\":3}\n"),
        ),
        (
            "deleting an unknown user",
            "NotFound",
            "user 999",
            Box::new(|f| f.rk.users().delete(999).map(|_| ())),
        ),
        (
            "disabling an unknown user",
            "NotFound",
            "user 999",
            Box::new(|f| f.rk.users().disable(999).map(|_| ())),
        ),
    ]
}

/// Everything in the data dir as one text: every record, workspace document and piece.
fn snapshot(rk: &Redkeep) -> String {
    let mut out = Vec::new();
    redkeep::ops::export(rk, &mut out, &|_| {}).unwrap();
    let text = String::from_utf8(out).unwrap();
    if rk.store().engine() == "postgres" {
        // A PostgreSQL sequence keeps the number a rolled-back write drew (ids may have gaps,
        // never repeat): everything else must stay as it was.
        return text
            .lines()
            .filter(|l| !l.starts_with("{\"sequence\""))
            .collect::<Vec<_>>()
            .join("\n");
    }
    text
}

#[test]
fn every_bad_input_is_refused_by_kind_with_its_reason_and_changes_nothing() {
    let t = TestDir::new();
    let f = fixture(&t);
    let cases = library_cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (name, want, says, run) in &cases {
        let before = snapshot(&f.rk);
        match run(&f) {
            Ok(()) => failures.push(format!("{name}: accepted")),
            Err(e) => {
                if kind(&e) != *want {
                    failures.push(format!("{name}: {} instead of {want}: {e}", kind(&e)));
                }
                if !e.to_string().contains(says) {
                    failures.push(format!("{name}: the message does not say {says:?}: {e}"));
                }
            }
        }
        if snapshot(&f.rk) != before {
            failures.push(format!("{name}: the store or its files changed"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An import of something that is no export, or with a record that breaks the rules, is
/// refused whole, on an empty store.
#[test]
fn an_import_with_a_bad_record_imports_nothing() {
    let t = TestDir::new();
    let f = fixture(&t);
    let export = snapshot(&f.rk);
    let bad = export.replace("\"ann@example.com\"", "\"not an email\"");
    let fresh = TestDir::new();
    let rk = fresh.open();
    let before = snapshot(&rk);
    let err =
        redkeep::ops::import(&rk, &mut std::io::Cursor::new(&b"hello\n"[..]), &|_| {}).unwrap_err();
    assert_eq!(kind(&err), "InvalidInput", "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
    assert_eq!(snapshot(&rk), before);
    let err =
        redkeep::ops::import(&rk, &mut std::io::Cursor::new(bad.as_bytes()), &|_| {}).unwrap_err();
    assert_eq!(kind(&err), "InvalidInput", "{err}");
    assert!(err.to_string().contains("email"), "{err}");
    assert_eq!(snapshot(&rk), before);
    assert!(!rk.workspaces().exists(f.ann));
    // A field this build's records do not have (a newer build's, or a misspelt name) would
    // be lost on the way in: refused, naming it.
    assert!(export.contains("\"external_id\":null"), "{export}");
    // An account numbered where the decoys are (2^63 up).
    let ann_id = format!("\"id\":{}", f.ann);
    assert!(export.contains(&ann_id), "{export}");
    let ann_key = format!("\"{:016x}\"", f.ann);
    let decoy = export
        .lines()
        .map(|l| {
            if l.contains("\"table\":\"users\"") && l.contains(&ann_id) {
                l.replacen(&ann_id, "\"id\":9223372036854775808", 1)
                    .replacen(&ann_key, "\"8000000000000000\"", 1)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(decoy, export);
    let err = redkeep::ops::import(&rk, &mut std::io::Cursor::new(decoy.as_bytes()), &|_| {})
        .unwrap_err();
    assert_eq!(kind(&err), "InvalidInput", "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
    assert_eq!(snapshot(&rk), before);
    for field in ["pronouns", "usrname"] {
        let newer = export.replacen(
            "\"external_id\":null",
            &format!("\"external_id\":null,\"{field}\":\"x\""),
            1,
        );
        let err = redkeep::ops::import(&rk, &mut std::io::Cursor::new(newer.as_bytes()), &|_| {})
            .unwrap_err();
        assert_eq!(kind(&err), "InvalidInput", "{err}");
        assert!(
            err.to_string().contains(&format!("no field \"{field}\"")),
            "{err}"
        );
        assert_eq!(snapshot(&rk), before);
    }
    // A sequence below zero or past what any engine numbers.
    let header = export.lines().next().unwrap();
    for value in ["-5", "18446744073709551615", "\"7\""] {
        let text = format!("{header}\n{{\"sequence\":\"users\",\"value\":{value}}}\n");
        let err = redkeep::ops::import(&rk, &mut std::io::Cursor::new(text.as_bytes()), &|_| {})
            .unwrap_err();
        assert_eq!(kind(&err), "InvalidInput", "{err}");
        assert!(err.to_string().contains("whole number"), "{value}: {err}");
        assert_eq!(snapshot(&rk), before);
    }
}

#[cfg(feature = "cli")]
#[test]
fn bad_command_lines_exit_with_one_line_that_says_what_to_fix() {
    let cli = common::Cli::new();
    cli.init();
    cli.expect(
        &["user", "create", "ann@example.com", "--password-stdin"],
        Some("correct horse\n"),
        0,
    );
    let rk_snapshot = || {
        let rk = Redkeep::open(cli.data(), cli.options().create(false)).unwrap();
        snapshot(&rk)
    };
    let existing = cli.dir.path().join("exists.txt");
    std::fs::write(&existing, "x").unwrap();
    let existing = existing.to_str().unwrap();
    let data = cli.data().to_str().unwrap().to_string();
    let mut cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["frobnicate"], 2, "unrecognized subcommand"),
        (vec!["user", "create"], 2, "required"),
        (vec!["user", "can", "ann@example.com"], 2, "required"),
        (
            vec!["user", "craete"],
            2,
            "tip: a similar subcommand exists",
        ),
        (vec!["apikey", "create"], 2, "<--user <USER>|--org <ORG>>"),
        (
            vec!["session", "revoke"],
            2,
            "<ID|--user <USER>|--token-stdin|--all>",
        ),
        (
            vec!["session", "revoke", "rks_abcdefgh", "--all"],
            2,
            "cannot be used with",
        ),
        // A duration is checked with the command line: a usage error.
        (vec!["invite", "create", "--expires", "soon"], 2, "duration"),
        (
            vec!["invite", "create", "--expires", "0s"],
            2,
            "at least 1s",
        ),
        (
            vec!["workspace", "purge-trash", "--older-than", "30x"],
            2,
            "write it like 30s",
        ),
        (vec!["move", "--to", ""], 2, "a value is required"),
        (vec!["invite", "create", "-c", "0"], 2, "0 is not in 1.."),
        (
            vec!["invite", "create", "--uses", "0"],
            2,
            "0 is not in 1..",
        ),
        (
            vec!["gallery", "add", "1", "/nonexistent/piece.json"],
            1,
            "opening",
        ),
        (vec!["backup", existing], 1, "exists"),
        (
            vec!["move", "--to", existing],
            1,
            "is a file, not a data dir",
        ),
        (vec!["export", "-o", existing], 1, "exists"),
        (
            vec!["export", "-o", "/nonexistent-folder/x.jsonl"],
            1,
            "does not exist; make it first",
        ),
        (vec!["user", "show", "nobody@example.com"], 1, "not found"),
        (
            vec!["user", "show", " "],
            1,
            "give the user's id, email or username",
        ),
        (
            vec!["org", "set-role", "nope", "ann@example.com", "admin"],
            1,
            "org nope",
        ),
        (
            vec!["restore", existing, "--force"],
            1,
            "nothing was changed",
        ),
        (vec!["role", "grant", "ann@example.com", "nope"], 1, "nope"),
        (
            vec![
                "login",
                "ann@example.com",
                "--ttl",
                "1000y",
                "--password-stdin",
            ],
            2,
            "give a shorter one",
        ),
        (
            vec!["inspect", "get", "users", "--", "-5"],
            1,
            "its keys are numbers (ids), 0 to",
        ),
    ];
    if cli.store.is_none() {
        // (A store on a server moves into the data dir's file, which is allowed.)
        cases.push((
            vec!["move", "--to", &data],
            1,
            "is the data dir being moved",
        ));
    }
    // A secret on stdin whose first line is too long to read whole.
    let (_, err) = cli.expect(
        &[
            "user",
            "set-password",
            "ann@example.com",
            "--password-stdin",
        ],
        Some(&"x".repeat(200_000)),
        1,
    );
    assert!(err.contains("longer than 65536 bytes"), "{err}");
    for (args, code, says) in cases {
        let before = rk_snapshot();
        let stdin = args.contains(&"login").then_some("correct horse\n");
        let (out, err) = cli.expect(&args, stdin, code);
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        if code == 2 {
            assert!(
                err.contains("(usage: redkeep") || err.contains("(more with --help)"),
                "{args:?}: {err}"
            );
        }
        assert_eq!(rk_snapshot(), before, "{args:?} changed the store");
    }
}

/// Policies no login could live with are refused when the store is opened, naming the
/// option, rather than failing every login (or every validation) later.
#[test]
fn policies_no_login_could_live_with_are_refused_at_open() {
    let t = TestDir::new();
    type Change = fn(&mut redkeep::Options);
    let cases: [(&str, Change); 9] = [
        ("sessions.ttl", |o| o.sessions.ttl = Duration::ZERO),
        ("sessions.idle_timeout", |o| {
            o.sessions.idle_timeout = Duration::from_millis(10)
        }),
        ("recovery.reset_ttl", |o| {
            o.recovery.reset_ttl = Duration::ZERO
        }),
        ("lockout.threshold", |o| o.lockout.threshold = 0),
        ("lockout.max_failures_per_hour", |o| {
            o.lockout.max_failures_per_hour = 0
        }),
        ("lockout.base_lock", |o| {
            o.lockout.base_lock = Duration::ZERO
        }),
        ("lockout.max_lock", |o| {
            o.lockout.max_lock = Duration::from_millis(500)
        }),
        ("max_concurrent_hashes", |o| o.max_concurrent_hashes = 0),
        ("workspace.max_doc_bytes", |o| {
            o.workspace.max_doc_bytes = Some(0)
        }),
    ];
    for (field, change) in cases {
        let mut options = t.options();
        change(&mut options);
        match Redkeep::open(t.path(), options) {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected InvalidInput, got {:?}", other.map(drop)),
        }
    }
    assert!(
        !t.path().join(redkeep::STORE_FILE).exists(),
        "a refused open made the store"
    );
    t.open();
}

/// A data dir that is a file is refused with a sentence saying so (it was "File exists").
#[test]
fn a_data_dir_that_is_a_file_is_refused_as_such() {
    let t = TestDir::new();
    let file = t.path().join("afile");
    std::fs::write(&file, b"x").unwrap();
    match Redkeep::open(&file, t.options()) {
        Err(Error::InvalidInput { field, reason }) => {
            assert_eq!(field, "data dir");
            assert!(reason.contains("is a file"), "{reason}");
        }
        other => panic!("expected InvalidInput, got {:?}", other.map(drop)),
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// A name, id or value that an error repeats comes back escaped and cut: no control
/// character (a forged log line, a terminal escape) and no megabyte of input in the message
/// an application logs or returns.
#[test]
fn errors_repeat_caller_input_escaped_and_cut() {
    let t = TestDir::new();
    let f = fixture(&t);
    let rk = &f.rk;
    let huge = format!("x\u{1b}[31m\n{}", "a".repeat(1 << 20));
    let errors: Vec<(&str, Error)> = vec![
        ("role get", rk.roles().get(&huge).unwrap_err()),
        (
            "role grant",
            rk.roles().grant(f.ann, &huge, None).unwrap_err(),
        ),
        (
            "role revoke",
            rk.roles().revoke(f.ann, &huge, None).unwrap_err(),
        ),
        ("role delete", rk.roles().delete(&huge).unwrap_err()),
        ("role users", rk.roles().users_in(&huge, 10).unwrap_err()),
        (
            "role name",
            rk.roles()
                .create(RoleSpec {
                    name: huge.clone(),
                    ..RoleSpec::default()
                })
                .unwrap_err(),
        ),
        (
            "role permission",
            rk.roles()
                .create(RoleSpec {
                    name: "editor".into(),
                    permissions: vec![huge.clone()],
                    ..RoleSpec::default()
                })
                .unwrap_err(),
        ),
        ("org find", rk.orgs().find(&huge).unwrap_err()),
        ("agent get", rk.agents().get(&huge).unwrap_err()),
        (
            "agent update",
            rk.agents().update(&huge, |_| Ok(())).unwrap_err(),
        ),
        ("agent delete", rk.agents().delete(&huge).unwrap_err()),
        (
            "username",
            rk.users()
                .rename(f.ann, None, Some(Some(huge.clone())))
                .unwrap_err(),
        ),
        (
            "api key scope",
            rk.api_keys()
                .create(ApiKeySpec {
                    owner: KeyOwner::User(f.ann),
                    scopes: vec![huge.clone()],
                    expires_in: None,
                    created_by: None,
                })
                .unwrap_err(),
        ),
    ];
    for (what, e) in errors {
        let text = e.to_string();
        assert!(text.len() < 400, "{what}: {} bytes", text.len());
        assert!(!text.chars().any(char::is_control), "{what}: {text:?}");
    }
    // An unknown role or org is still named, as typed.
    let e = rk.roles().get("no-such-role").unwrap_err().to_string();
    assert!(e.contains("role no-such-role"), "{e}");
    let e = rk.orgs().find("no-such-org").unwrap_err().to_string();
    assert!(e.contains("org no-such-org"), "{e}");
    let e = rk.agents().update("no-such-agent", |_| Ok(())).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("agent session no-such-agent"), "{e}");
}
