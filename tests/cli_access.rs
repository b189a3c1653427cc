//! The CLI of roles, logins, sessions, agent sessions, API keys, audit and organizations.
#![cfg(feature = "cli")]

mod common;

use common::Cli;
use redkeep::auth::agents::AgentSpec;
use serde_json::json;

fn with_user(cli: &Cli) -> u64 {
    cli.init();
    cli.json(
        &[
            "user",
            "create",
            "ann@example.com",
            "--name",
            "Ann",
            "--password-stdin",
        ],
        Some("ann password\n"),
    )["id"]
        .as_u64()
        .unwrap()
}

#[test]
fn role_commands() {
    let cli = Cli::new();
    with_user(&cli);
    let roles = cli.json(&["role", "list"], None);
    let names: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["admin", "user", "guest"]);
    let created = cli.json(
        &[
            "role",
            "create",
            "editor",
            "--permission",
            "docs.edit",
            "--permission",
            "docs.view",
            "--priority",
            "5",
            "--description",
            "Edits docs",
        ],
        None,
    );
    assert_eq!(created["permissions"], json!(["docs.edit", "docs.view"]));
    assert_eq!(created["priority"], 5);
    cli.json(&["role", "grant", "ann@example.com", "editor"], None);
    assert_eq!(
        cli.json(&["role", "show", "editor"], None)["users"],
        json!([1])
    );
    let perms = cli.json(&["user", "permissions", "ann@example.com"], None);
    assert_eq!(perms["roles"], json!(["user", "editor"]));
    assert!(
        perms["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("docs.edit"))
    );
    let revoked = cli.json(&["role", "revoke", "1", "editor"], None);
    assert_eq!(
        (&revoked["revoked"], &revoked["already"]),
        (&json!(true), &json!(false))
    );
    // A second revoke, like a second grant, finds the state asked for: exit 0, and it says so.
    let again = cli.json(&["role", "revoke", "1", "editor"], None);
    assert_eq!(
        (&again["revoked"], &again["already"]),
        (&json!(false), &json!(true))
    );
    let (out, _) = cli.expect(&["role", "revoke", "1", "editor"], None, 0);
    assert!(out.contains("does not hold role editor"), "{out}");
    assert_eq!(
        cli.json(&["user", "permissions", "1"], None)["roles"],
        json!(["user"])
    );
    let (_, err) = cli.expect(&["role", "revoke", "1", "nosuch"], None, 1);
    assert!(err.contains("role nosuch not found"), "{err}");
    let (_, err) = cli.expect(&["role", "delete", "admin"], None, 1);
    assert!(err.contains("system role"), "{err}");
    // Deleting a role says who lost it.
    cli.json(&["role", "grant", "1", "editor"], None);
    let deleted = cli.json(&["role", "delete", "editor"], None);
    assert_eq!(deleted["revoked_from"], json!([1]), "{deleted}");
    assert_eq!(
        cli.json(&["user", "permissions", "1"], None)["roles"],
        json!(["user"])
    );
    cli.json(
        &["role", "create", "viewer", "--permission", "docs.view"],
        None,
    );
    let (out, _) = cli.expect(&["role", "delete", "viewer"], None, 0);
    assert!(
        out.contains("deleted role viewer (nobody held it)"),
        "{out}"
    );
    cli.json(
        &["role", "create", "viewer", "--permission", "docs.view"],
        None,
    );
    cli.json(&["role", "grant", "1", "viewer"], None);
    let (out, _) = cli.expect(&["role", "delete", "viewer"], None, 0);
    assert!(out.contains("deleted role viewer; user 1 lost it"), "{out}");
    let (_, err) = cli.expect(&["role", "show", "editor"], None, 1);
    assert!(err.contains("role editor not found"), "{err}");
    cli.expect(&["role", "create", "x"], None, 2); // --permission is required
}

#[test]
fn login_session_and_unlock_commands() {
    let cli = Cli::new();
    let id = with_user(&cli);
    let login = cli.json(
        &[
            "login",
            "ann@example.com",
            "--password-stdin",
            "--ttl",
            "2h",
        ],
        Some("ann password\n"),
    );
    let token = login["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("rks_"));
    assert_eq!(login["user_id"], id);
    assert!(login["expires_at"].as_str().unwrap().ends_with('Z'));
    let valid = cli.json(&["session", "validate", "--token-stdin"], Some(&token));
    assert_eq!(valid["user"]["email"], "ann@example.com");
    let list = cli.json(&["session", "list", "--user", "ann@example.com"], None);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&token), "a token was listed");
    let short = list[0]["id"].as_str().unwrap().to_string();
    cli.json(&["session", "revoke", &short], None);
    let (_, err) = cli.expect(&["session", "validate", "--token-stdin"], Some(&token), 1);
    assert!(err.contains("session token is not valid"), "{err}");
    // A session named by its full token is revoked; an unknown token, or one mistyped by a
    // character, is not found, and the message repeats no more of it than a short id.
    let login = || {
        cli.json(
            &["login", "ann@example.com", "--password-stdin"],
            Some("ann password\n"),
        )["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let second = login();
    let last = if second.ends_with('a') { 'b' } else { 'a' };
    let mistyped = format!("{}{last}", &second[..second.len() - 1]);
    for wrong in [
        mistyped.as_str(),
        &token,
        &format!("{}X", &second[..second.len() - 1]),
    ] {
        let (_, err) = cli.expect(&["session", "revoke", wrong], None, 1);
        assert!(err.contains(&format!("session {}…", &wrong[..12])), "{err}");
        assert!(
            !err.contains(&wrong[12..]),
            "the message repeats the token: {err}"
        );
    }
    let revoked = cli.json(&["session", "revoke", &second], None);
    assert_eq!(revoked["id"], second[..12]);
    let (_, err) = cli.expect(&["session", "validate", "--token-stdin"], Some(&second), 1);
    assert!(err.contains("session token is not valid"), "{err}");
    // Read from stdin, the token stays out of the process list and shell history.
    let third = login();
    let revoked = cli.json(&["session", "revoke", "--token-stdin"], Some(&third));
    assert_eq!(revoked["id"], third[..12]);
    cli.expect(&["session", "validate", "--token-stdin"], Some(&third), 1);
    cli.expect(&["session", "revoke", "rks_x", "--token-stdin"], None, 2);
    cli.json(
        &["login", "ann@example.com", "--password-stdin"],
        Some("ann password\n"),
    );
    assert_eq!(
        cli.json(&["session", "revoke", "--user", "1"], None)["revoked"],
        1
    );
    assert_eq!(cli.json(&["session", "sweep"], None)["removed"], 0);
    // Ten wrong passwords lock the account; the answer stays the same; unlock lifts it.
    let (_, wrong) = cli.expect(
        &["login", "ann@example.com", "--password-stdin"],
        Some("bad password\n"),
        1,
    );
    for _ in 0..9 {
        cli.expect(
            &["login", "ann@example.com", "--password-stdin"],
            Some("bad password\n"),
            1,
        );
    }
    let shown = cli.json(&["user", "show", "1"], None);
    assert!(shown["locked_until"].is_string(), "{shown}");
    let (_, locked) = cli.expect(
        &["login", "ann@example.com", "--password-stdin"],
        Some("ann password\n"),
        1,
    );
    // The operator learns why the right password was refused.
    assert!(locked.contains("is locked until"), "{locked}");
    assert_ne!(locked, wrong);
    assert_eq!(
        cli.json(&["user", "unlock", "ann@example.com"], None)["locked_until"],
        json!(null)
    );
    cli.json(
        &["login", "ann@example.com", "--password-stdin"],
        Some("ann password\n"),
    );
}

#[test]
fn agent_commands() {
    let cli = Cli::new();
    let id = with_user(&cli);
    {
        let rk = redkeep::Redkeep::open(cli.data(), cli.options()).unwrap();
        for (sid, ttl) in [
            ("run-1", None),
            // Long enough to be live whatever the machine's load (a list leaves out
            // expired sessions, and this runs on the real clock).
            ("run-2", Some(std::time::Duration::from_secs(3600))),
        ] {
            rk.agents()
                .create(AgentSpec {
                    id: sid.into(),
                    user_id: id,
                    name: "Agent".into(),
                    goal: "g".into(),
                    ttl,
                })
                .unwrap();
        }
        rk.agents()
            .update("run-1", |s| {
                s.context = r#"{"k":1}"#.into();
                Ok(())
            })
            .unwrap();
    }
    let list = cli.json(&["agent", "list", "--user", "ann@example.com"], None);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let shown = cli.json(&["agent", "show", "run-1"], None);
    assert_eq!(shown["context"], json!({"k": 1}));
    let (text, _) = cli.expect(&["agent", "show", "run-1"], None, 0);
    assert!(
        text.lines().count() > 3 && !text.contains("\\u{a}"),
        "one field a line: {text}"
    );
    assert_eq!(shown["status"], "active");
    cli.json(&["agent", "delete", "run-1"], None);
    cli.expect(&["agent", "show", "run-1"], None, 1);
    // run-2 lives an hour: a sweep (on the real clock) leaves it.
    assert_eq!(cli.json(&["agent", "sweep"], None)["removed"], 0);
    let list = cli.json(&["agent", "list", "--user", "ann@example.com"], None);
    assert_eq!(list[0]["id"], "run-2");
}

#[test]
fn apikey_commands() {
    let cli = Cli::new();
    with_user(&cli);
    let created = cli.json(
        &[
            "apikey",
            "create",
            "--user",
            "ann@example.com",
            "--scope",
            "read",
            "--scope",
            "write",
            "--expires",
            "30d",
        ],
        None,
    );
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["scopes"], json!(["read", "write"]));
    assert!(created["expires_at"].is_string());
    // Ann holds neither as a permission: the key grants nothing for them, and says so.
    assert_eq!(created["scopes_not_held"], json!(["read", "write"]));
    let (out, err) = cli.expect(
        &[
            "apikey",
            "create",
            "--user",
            "ann@example.com",
            "--scope",
            "basic_access",
            "--scope",
            "raed",
        ],
        None,
        0,
    );
    // The key alone on stdout (`key=$(…)`), the notes on stderr.
    assert!(
        out.starts_with("rkk_") && out.lines().count() == 1,
        "the key alone on stdout: {out}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("note:") && l.contains("raed") && !l.contains("basic_access")),
        "{err}"
    );
    // `*` asks for whatever the owner holds: nothing to note.
    let all = cli.json(
        &[
            "apikey",
            "create",
            "--user",
            "ann@example.com",
            "--scope",
            "*",
        ],
        None,
    );
    assert!(all.get("scopes_not_held").is_none(), "{all}");
    let listed = cli.json(&["apikey", "list", "--user", "1"], None);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(!listed.to_string().contains(&key));
    let v = cli.json(&["apikey", "verify", "--key-stdin"], Some(&key));
    assert_eq!(v["owner"], json!({"kind": "user", "id": 1}));
    // A key mistyped by a character is not found, and the message repeats only its prefix.
    let typo = format!("{}X", &key[..key.len() - 1]);
    let (_, err) = cli.expect(&["apikey", "revoke", &typo], None, 1);
    assert!(err.contains(&format!("api key {}…", &typo[..12])), "{err}");
    assert!(
        !err.contains(&typo[12..]),
        "the message repeats the key: {err}"
    );
    let prefix = created["prefix"].as_str().unwrap();
    let revoked = cli.json(&["apikey", "revoke", prefix], None);
    assert_eq!(revoked["already"], false, "{revoked}");
    // A second revoke is no failure (a runbook runs again): it says when the first was.
    let (out, _) = cli.expect(&["apikey", "revoke", prefix], None, 0);
    assert_eq!(
        out.trim_end(),
        format!(
            "api key {prefix} was revoked already, at {}",
            revoked["revoked_at"].as_str().unwrap()
        )
    );
    assert_eq!(cli.json(&["apikey", "revoke", &key], None)["already"], true);
    let (_, err) = cli.expect(&["apikey", "revoke", " "], None, 1);
    assert!(err.contains("it is empty; give"), "{err}");
    let (_, err) = cli.expect(&["apikey", "verify", "--key-stdin"], Some(&key), 1);
    assert!(err.contains("api key is not valid"), "{err}");
    // The listing says which keys still work.
    let listed = cli.json(&["apikey", "list", "--user", "1"], None);
    let status = |prefix: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["prefix"] == prefix)
            .map(|k| k["status"].clone())
    };
    assert_eq!(
        status(created["prefix"].as_str().unwrap()),
        Some(json!("revoked"))
    );
    assert_eq!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["status"] == "active")
            .count(),
        2
    );
    let (out, _) = cli.expect(&["apikey", "list", "--user", "1"], None, 0);
    assert!(out.lines().next().unwrap().contains("status"), "{out}");
    let org = cli.json(
        &[
            "apikey",
            "create",
            "--org",
            "anns-workspace",
            "--scope",
            "read",
        ],
        None,
    );
    assert_eq!(org["owner"]["kind"], "org");
    // Every key of a user at once (a password reset keeps them): the two still active go,
    // the org's key stays; run again, there is none left, and that is no failure.
    let all_of = cli.json(&["apikey", "revoke", "--user", "ann@example.com"], None);
    assert_eq!(
        all_of["owner"],
        json!({"kind": "user", "id": 1}),
        "{all_of}"
    );
    assert_eq!(all_of["revoked"].as_array().unwrap().len(), 2, "{all_of}");
    let (out, _) = cli.expect(&["apikey", "revoke", "--user", "1"], None, 0);
    assert_eq!(out.trim_end(), "user 1 has no key left to revoke");
    let listed = cli.json(&["apikey", "list"], None);
    let active: Vec<&serde_json::Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["status"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "{listed}");
    assert_eq!(active[0]["prefix"], org["prefix"]);
    let (out, _) = cli.expect(&["apikey", "revoke", "--org", "anns-workspace"], None, 0);
    assert!(
        out.starts_with(&format!(
            "revoked 1 api key(s) of org {}: {}",
            org["owner"]["id"],
            org["prefix"].as_str().unwrap()
        )),
        "{out}"
    );
    // One of the three ways, exactly.
    cli.expect(&["apikey", "revoke"], None, 2);
    cli.expect(&["apikey", "revoke", "rkk_x", "--user", "1"], None, 2);
    let (_, err) = cli.expect(
        &["apikey", "revoke", "--user", "nobody@example.com"],
        None,
        1,
    );
    assert!(err.contains("nobody@example.com"), "{err}");
}

#[test]
fn audit_command() {
    let cli = Cli::new();
    with_user(&cli);
    cli.expect(
        &["login", "ann@example.com", "--password-stdin"],
        Some("bad password\n"),
        1,
    );
    let events = cli.json(
        &["audit", "list", "--user", "ann@example.com", "--limit", "2"],
        None,
    );
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["action"], "login_failed");
    assert_eq!(events[0]["outcome"], "denied");
    let all = cli.json(&["audit", "list"], None);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "user_created")
    );
}

/// `audit list` says on stderr when older events exist and how to reach them; `--before SEQ`
/// pages on until no hint is given. `--limit 0` is refused as a usage error, as in every
/// command with `--limit`.
#[test]
fn audit_list_says_when_older_events_exist_and_pages_with_before() {
    let cli = Cli::new();
    with_user(&cli);
    let all = cli.json(&["audit", "list", "--limit", "1000"], None);
    let seqs: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.len() >= 3, "{seqs:?}");
    let (out, err) = cli.expect(&["audit", "list", "--limit", "2"], None, 0);
    assert_eq!(out.lines().count(), 3, "{out}");
    let hint = format!("the next page: --before {}", seqs[1]);
    assert!(err.contains(&hint), "{err}");
    let mut shown: Vec<u64> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut args = vec!["audit", "list", "--limit", "2"];
        if let Some(b) = &before {
            args.extend(["--before", b.as_str()]);
        }
        let (_, err) = cli.expect(&args, None, 0);
        let page = cli.json(&args, None);
        let page: Vec<u64> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        shown.extend(&page);
        match err.split("--before ").nth(1) {
            Some(next) => before = Some(next.trim().to_string()),
            None => break,
        }
    }
    assert_eq!(shown, seqs);
    for args in [
        vec!["audit", "list", "--limit", "0"],
        vec!["inspect", "dump", "users", "--limit", "0"],
        vec!["inspect", "index", "users", "email", "--limit", "0"],
    ] {
        let (_, err) = cli.expect(&args, None, 2);
        assert!(err.contains("0 shows nothing"), "{args:?}: {err}");
    }
}

/// `audit prune` deletes the events recorded before a time and keeps the rest; one
/// `audit_pruned` event says so. Events written by the library with a clock in 2020 stand
/// for old ones; the CLI's own are from now.
#[test]
fn audit_prune_deletes_old_events_and_says_so() {
    let cli = Cli::new();
    cli.init();
    {
        let clock = std::sync::Arc::new(redkeep::ManualClock::new(redkeep::Timestamp(
            1_580_000_000, // 2020-01-26
        )));
        let rk = redkeep::Redkeep::open(cli.data(), cli.options().clock(clock)).unwrap();
        rk.users()
            .create(redkeep::NewUser {
                email: "old@example.com".into(),
                ..redkeep::NewUser::default()
            })
            .unwrap();
    }
    with_user(&cli);
    let all = cli.json(&["audit", "list", "--limit", "1000"], None);
    let all = all.as_array().unwrap();
    let old = all
        .iter()
        .filter(|e| e["at"].as_str().unwrap().starts_with("2020-"))
        .count();
    assert!(old >= 3, "{all:?}");
    // Refused: neither or both, a time that is not one, a time to come.
    cli.expect(&["audit", "prune"], None, 2);
    cli.expect(
        &[
            "audit",
            "prune",
            "--before",
            "2021-01-01",
            "--older-than",
            "1d",
        ],
        None,
        2,
    );
    // A time that is not one is a usage error, as a duration that is not one is.
    let (_, err) = cli.expect(&["audit", "prune", "--before", "last tuesday"], None, 2);
    assert!(err.contains("RFC 3339"), "{err}");
    let (_, err) = cli.expect(&["audit", "prune", "--before", "2999-01-01"], None, 1);
    assert!(err.contains("later than now"), "{err}");
    assert_eq!(
        cli.json(&["audit", "list", "--limit", "1000"], None)
            .as_array()
            .unwrap()
            .len(),
        all.len(),
        "a refused prune deletes nothing"
    );
    let pruned = cli.json(&["audit", "prune", "--before", "2021-01-01"], None);
    assert_eq!(pruned["deleted"], old);
    let left = cli.json(&["audit", "list", "--limit", "1000"], None);
    let left = left.as_array().unwrap();
    assert_eq!(left.len(), all.len() - old + 1);
    assert_eq!(left[0]["action"], "audit_pruned");
    assert!(
        left.iter()
            .all(|e| !e["at"].as_str().unwrap().starts_with("2020-"))
    );
    // Nothing left that old: a second run deletes none; --older-than works on its own.
    let (out, _) = cli.expect(&["audit", "prune", "--older-than", "365d"], None, 0);
    assert!(out.starts_with("deleted 0 audit event(s)"), "{out}");
    cli.expect(&["check"], None, 0);
}

/// The operator is told why an account cannot log in: the library says "wrong email,
/// username or password" for every failure (a client must not learn which accounts are
/// locked or disabled), and the CLI used to pass that on for the right password of a
/// disabled or locked account.
#[test]
fn a_refused_login_tells_the_operator_why_the_account_cannot_log_in() {
    let cli = Cli::new();
    let ann = with_user(&cli).to_string();
    cli.expect(&["user", "disable", &ann], None, 0);
    let check = [
        "user",
        "check-password",
        "ann@example.com",
        "--password-stdin",
    ];
    let (out, err) = cli.expect(
        &["login", "ann@example.com", "--password-stdin"],
        Some("ann password\n"),
        1,
    );
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("user {ann} is disabled"))
            && err.contains(&format!("redkeep user enable {ann}")),
        "{err}"
    );
    // An operator's check is no login: the password is right, and why it does not log in
    // now is said beside it.
    let (out, _) = cli.expect(&check, Some("ann password\n"), 0);
    assert!(
        out.starts_with("password is correct")
            && out.contains(&format!("user {ann} is disabled"))
            && out.contains(&format!("redkeep user enable {ann}")),
        "{out}"
    );
    cli.expect(&["user", "enable", &ann], None, 0);
    // Ten wrong passwords lock the account (the default policy); then the right one is
    // refused, and the operator learns of the lock.
    for _ in 0..10 {
        let (_, err) = cli.expect(
            &["login", "ann@example.com", "--password-stdin"],
            Some("not the password\n"),
            1,
        );
        assert!(
            err.contains("wrong email, username or password") || err.contains("locked"),
            "{err}"
        );
    }
    let (_, err) = cli.expect(
        &["login", "ann@example.com", "--password-stdin"],
        Some("ann password\n"),
        1,
    );
    assert!(
        err.contains(&format!("user {ann} is locked until"))
            && err.contains(&format!("redkeep user unlock {ann}")),
        "{err}"
    );
    let (out, _) = cli.expect(&check, Some("ann password\n"), 0);
    assert!(
        out.contains(&format!("user {ann} is locked until"))
            && out.contains(&format!("redkeep user unlock {ann}")),
        "{out}"
    );
    cli.expect(&["user", "unlock", &ann], None, 0);
    let (out, _) = cli.expect(&check, Some("ann password\n"), 0);
    assert_eq!(out.trim_end(), "password is correct");
    // A wrong password of an account that can log in says so; no account is not found.
    let (_, err) = cli.expect(&check, Some("not the password\n"), 1);
    assert!(
        err.contains(&format!("the password is not user {ann}'s")),
        "{err}"
    );
    let (_, err) = cli.expect(
        &[
            "user",
            "check-password",
            "nobody@example.com",
            "--password-stdin",
        ],
        Some("not the password\n"),
        1,
    );
    assert!(
        err.contains("user nobody@example.com (no user has this email;"),
        "{err}"
    );
}

/// A user named by something that is neither their id, email nor username (`dan` for
/// `dan@example.com`, who has no username) was "user dan not found", and the operator was
/// left to guess how a user is named.
#[test]
fn an_unknown_user_name_says_how_a_user_is_named() {
    let cli = Cli::new();
    cli.init();
    cli.json(
        &["user", "create", "dan@example.com", "--password-stdin"],
        Some("pw-dan-12345\n"),
    );
    cli.json(
        &["role", "create", "editor", "--permission", "docs.edit"],
        None,
    );
    let (_, err) = cli.expect(&["role", "grant", "dan", "editor"], None, 1);
    assert!(
        err.contains(
            "user dan (no user has this username; name a user by id, email or username) not found"
        ),
        "{err}"
    );
    let (_, err) = cli.expect(&["user", "show", "7"], None, 1);
    assert!(
        err.contains("user 7 (no user has this id; name a user by id, email or username)"),
        "{err}"
    );
}

#[test]
fn org_commands() {
    let cli = Cli::new();
    let ann = with_user(&cli);
    let bob = cli.json(
        &[
            "user",
            "create",
            "bob@example.com",
            "--name",
            "Bob",
            "--password-stdin",
        ],
        Some("bob password\n"),
    )["id"]
        .as_u64()
        .unwrap();
    let orgs = cli.json(&["user", "orgs", "ann@example.com"], None);
    assert_eq!(orgs[0]["slug"], "anns-workspace");
    assert_eq!(orgs[0]["role"], "owner");
    assert_eq!(orgs[0]["current"], true);
    let acme = cli.json(
        &[
            "org",
            "create",
            "Acme Inc",
            "--owner",
            "ann@example.com",
            "--description",
            "d",
        ],
        None,
    );
    assert_eq!(acme["slug"], "acme-inc");
    let custom = cli.json(
        &["org", "create", "Other", "--slug", "team-x", "--owner", "1"],
        None,
    );
    assert_eq!(custom["slug"], "team-x");
    let (_, err) = cli.expect(
        &["org", "create", "Again", "--slug", "team-x", "--owner", "1"],
        None,
        1,
    );
    assert!(err.contains("slug"), "{err}");
    cli.json(
        &[
            "org",
            "add-member",
            "acme-inc",
            "bob@example.com",
            "--role",
            "admin",
        ],
        None,
    );
    let shown = cli.json(&["org", "show", "acme-inc"], None);
    assert_eq!(shown["members"].as_array().unwrap().len(), 2);
    cli.json(&["user", "switch-org", "bob@example.com", "acme-inc"], None);
    assert_eq!(
        cli.json(
            &["org", "set-role", "acme-inc", "bob@example.com", "owner"],
            None
        )["role"],
        "owner"
    );
    cli.json(
        &["org", "set-role", "acme-inc", "ann@example.com", "member"],
        None,
    );
    let (_, err) = cli.expect(
        &["org", "set-role", "acme-inc", "bob@example.com", "member"],
        None,
        1,
    );
    assert!(err.contains("last owner"), "{err}");
    let (_, err) = cli.expect(&["org", "delete", "acme-inc"], None, 1);
    assert!(err.contains("--force"), "{err}");
    cli.json(
        &["org", "remove-member", "acme-inc", "ann@example.com"],
        None,
    );
    let (_, err) = cli.expect(
        &["org", "remove-member", "acme-inc", "bob@example.com"],
        None,
        1,
    );
    assert!(
        err.contains(&format!("user {bob} is the last owner")),
        "{err}"
    );
    let _ = ann;
    cli.json(&["org", "delete", "acme-inc", "--force"], None);
    let bob_now = cli.json(&["user", "show", "bob@example.com"], None);
    let bob_orgs = cli.json(&["user", "orgs", "bob@example.com"], None);
    assert_eq!(bob_now["current_org_id"], bob_orgs[0]["id"]);
    let (_, err) = cli.expect(
        &["org", "add-member", "team-x", "1", "--role", "boss"],
        None,
        1,
    );
    assert!(err.contains("owner, admin or member"), "{err}");
    assert_eq!(
        cli.json(&["org", "list"], None).as_array().unwrap().len(),
        3
    );
    cli.expect(&["check"], None, 0);
}

#[test]
fn operators_issue_reset_tokens_verify_and_change_emails() {
    let cli = Cli::new();
    with_user(&cli);
    let (out, err) = cli.expect(&["user", "reset-token", "ann@example.com"], None, 0);
    // The token alone on stdout (`token=$(…)`), what goes with it on stderr.
    assert!(out.starts_with("rkr_") && out.lines().count() == 1, "{out}");
    let token = out.trim_end().to_string();
    assert!(
        err.contains("ann@example.com") && err.contains("shown once"),
        "{err}"
    );
    let open = || redkeep::Redkeep::open(cli.data(), cli.options()).unwrap();
    {
        let rk = open();
        rk.recovery()
            .reset_password(&token, "operator reset pw")
            .unwrap();
    }
    cli.expect(
        &[
            "user",
            "check-password",
            "ann@example.com",
            "--password-stdin",
        ],
        Some("operator reset pw\n"),
        0,
    );

    let shown = cli.json(
        &[
            "user",
            "change-email",
            "ann@example.com",
            "anne@example.com",
        ],
        None,
    );
    assert_eq!(shown["email"], "anne@example.com");
    assert_eq!(shown["email_verified"], false);
    let shown = cli.json(&["user", "verify-email", "anne@example.com"], None);
    assert_eq!(shown["email_verified"], true);
    let shown = cli.json(
        &["user", "verify-email", "anne@example.com", "--undo"],
        None,
    );
    assert_eq!(shown["email_verified"], false);

    let (_, err) = cli.expect(
        &["user", "change-email", "anne@example.com", "nope"],
        None,
        1,
    );
    assert!(err.contains("email"), "{err}");
    cli.expect(&["user", "disable", "anne@example.com"], None, 0);
    let (_, err) = cli.expect(&["user", "reset-token", "anne@example.com"], None, 1);
    assert!(err.contains("disabled"), "{err}");
}

/// `change-email` says what it did: nothing for the address the user has (which stays
/// verified), a change of letter case only, or a change. A new address that reads as
/// another (capitals of another script) or gives its domain in the xn-- form is refused
/// with what to type instead, and `user show` of the xn-- form names the form kept.
#[test]
fn change_email_says_what_it_did_and_new_addresses_say_what_to_type() {
    let cli = Cli::new();
    let id = with_user(&cli);
    cli.expect(&["user", "verify-email", "ann@example.com"], None, 0);
    let ann = id.to_string();
    let change = |to: &str| cli.expect(&["user", "change-email", &ann, to], None, 0).0;
    let verified = || cli.json(&["user", "show", &ann], None)["email_verified"].clone();

    let out = change(" ann@example.com");
    assert!(
        out.contains(&format!(
            "email of user {id} is ann@example.com already (verified); nothing changed"
        )),
        "{out}"
    );
    assert_eq!(verified(), true);
    let out = change("Ann@example.com");
    assert!(
        out.contains(
            "changed from ann@example.com to Ann@example.com, only in letter case; it is not verified"
        ),
        "{out}"
    );
    assert_eq!(verified(), false);
    let out = change("anne@example.com");
    assert!(
        out.contains("changed from Ann@example.com to anne@example.com; it is not verified"),
        "{out}"
    );

    for (email, says) in [
        (
            "\u{0412}\u{041e}\u{0412}@example.com",
            "'В' (U+0412) looks like \"B\"",
        ),
        (
            "\u{0392}\u{039f}\u{0392}@example.com",
            "'Β' (U+0392) looks like \"B\"",
        ),
        (
            "jose@xn--exmple-cua.com",
            "write the domain as it reads, exämple.com, not its xn-- form",
        ),
    ] {
        let (_, err) = cli.expect(&["user", "create", email], None, 1);
        assert!(err.contains(says), "{email}: {err}");
        let (_, err) = cli.expect(&["user", "change-email", &ann, email], None, 1);
        assert!(err.contains(says), "{email}: {err}");
    }
    cli.expect(&["user", "create", "jose@exämple.com"], None, 0);
    let (_, err) = cli.expect(&["user", "show", "jose@xn--exmple-cua.com"], None, 1);
    assert!(err.contains("try jose@exämple.com"), "{err}");
}

/// What a command prints that cannot be shown again (a generated password, an invite code,
/// a key) is not lost without a word: an unwritable stdout is an error (exit 1, one line
/// that says the change is kept, so the secret can be revoked).
#[test]
fn an_unwritable_stdout_fails_the_command_instead_of_losing_its_secret() {
    let cli = Cli::new();
    with_user(&cli);
    let run = |shell: &str| {
        let mut c = std::process::Command::new("sh");
        c.arg("-c")
            .arg(shell)
            .arg(assert_cmd::cargo::cargo_bin("redkeep"))
            .env("REDKEEP_DATA_DIR", cli.data())
            .env("REDKEEP_ARGON2", "m=8,t=1,p=1")
            .env_remove("REDKEEP_STORE_URL");
        if let Some(url) = &cli.store {
            c.env("REDKEEP_STORE_URL", url);
        }
        c.output().unwrap()
    };
    // The one error line names the secret that was not seen (never the secret itself) and
    // the command that revokes or replaces it.
    let unseen = |shell: &str| {
        let full = run(shell);
        let err = String::from_utf8_lossy(&full.stderr).to_string();
        assert_eq!(full.status.code(), Some(1), "{shell}: {err}");
        assert!(
            err.starts_with("error: writing the output (anything the command changed is kept; "),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        err
    };
    let err = unseen(r#""$0" invite create -c 2 > /dev/full"#);
    // The codes were made (and are kept, to be revoked): each is named.
    let invites = cli.json(&["invite", "list"], None);
    assert_eq!(invites.as_array().unwrap().len(), 2);
    for i in invites.as_array().unwrap() {
        assert!(err.contains(i["prefix"].as_str().unwrap()), "{err}");
    }
    assert!(
        err.contains("were not seen: revoke each with `redkeep invite revoke PREFIX`"),
        "{err}"
    );
    let err = unseen(r#""$0" apikey create --user ann@example.com > /dev/full"#);
    let key = &cli.json(&["apikey", "list"], None)[0]["prefix"];
    let key = key.as_str().unwrap();
    assert!(
        err.contains(&format!(
            "the api key {key} was not seen: revoke it with `redkeep apikey revoke {key}`"
        )),
        "{err}"
    );
    let err =
        unseen(r#"echo 'ann password' | "$0" login ann@example.com --password-stdin > /dev/full"#);
    let session = &cli.json(&["session", "list"], None)[0]["id"];
    let session = session.as_str().unwrap();
    assert!(
        err.contains(&format!(
            "the token of session {session} was not seen: revoke it with `redkeep session revoke {session}`"
        )),
        "{err}"
    );
    let err = unseen(r#""$0" user reset-token ann@example.com > /dev/full"#);
    assert!(
        err.contains("issue another with `redkeep user reset-token 1`, which replaces it"),
        "{err}"
    );
    let err = unseen(r#""$0" user create gen@example.com > /dev/full"#);
    assert!(
        err.contains(
            "the generated password of user 2 was not seen: set another with `redkeep user set-password 2 --password-stdin`"
        ),
        "{err}"
    );
    // The help too fails rather than vanish.
    let help = run(r#""$0" --help > /dev/full"#);
    assert_eq!(help.status.code(), Some(1), "{help:?}");
    assert!(run(r#""$0" --help > /dev/null"#).status.success());
    // A reader that stops early is still no failure, and the answer's own exit code stays:
    // "may not" is 1 whether or not anybody read it.
    let closed_reader = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("redkeep"));
        c.args(args)
            .env("REDKEEP_DATA_DIR", cli.data())
            .env("REDKEEP_ARGON2", "m=8,t=1,p=1")
            .env_remove("REDKEEP_STORE_URL")
            .stdout(writer)
            .stderr(std::process::Stdio::piped());
        if let Some(url) = &cli.store {
            c.env("REDKEEP_STORE_URL", url);
        }
        c.output().unwrap()
    };
    let allowed = closed_reader(&["user", "can", "ann@example.com", "anything.at.all"]);
    assert_eq!(allowed.status.code(), Some(1), "{allowed:?}");
    assert!(allowed.stderr.is_empty(), "{allowed:?}");
    let listed = closed_reader(&["user", "list"]);
    assert_eq!(listed.status.code(), Some(0), "{listed:?}");
}

/// A reader that closed the pipe (`redkeep apikey create … | ssh host 'cat > key'` where
/// ssh failed) is no success for a command that shows a secret once: the secret was made
/// and nobody has it, so the command fails (exit 1, one line naming what was made and how
/// to revoke or replace it, never the secret). An export cut short fails too: its reader
/// did not get the whole store. A listing or a dump read by `head` stays a success. The
/// process is never killed by SIGPIPE, even when it starts with SIGPIPE's default action.
#[test]
fn a_closed_pipe_fails_a_command_that_shows_a_secret_once_or_exports() {
    let cli = Cli::new();
    with_user(&cli);
    // `env --default-signal=PIPE` (coreutils 8.31) starts it with SIGPIPE's default action,
    // which kills a process that writes to a closed pipe and does not ignore the signal.
    let reset_sigpipe = std::process::Command::new("env")
        .args(["--default-signal=PIPE", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let closed_reader = |args: &[&str], stdin: Option<&str>| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let redkeep = assert_cmd::cargo::cargo_bin("redkeep");
        let mut c = if reset_sigpipe {
            let mut c = std::process::Command::new("env");
            c.arg("--default-signal=PIPE").arg(redkeep);
            c
        } else {
            std::process::Command::new(redkeep)
        };
        c.args(args)
            .env("REDKEEP_DATA_DIR", cli.data())
            .env("REDKEEP_ARGON2", "m=8,t=1,p=1")
            .env_remove("REDKEEP_STORE_URL")
            .stdin(std::process::Stdio::piped())
            .stdout(writer)
            .stderr(std::process::Stdio::piped());
        if let Some(url) = &cli.store {
            c.env("REDKEEP_STORE_URL", url);
        }
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code(), err)
    };
    let unseen = |args: &[&str], stdin: Option<&str>| {
        let (code, err) = closed_reader(args, stdin);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: writing the output (anything the command changed is kept; "),
            "{err}"
        );
        err
    };
    let err = unseen(&["apikey", "create", "--user", "ann@example.com"], None);
    let key = &cli.json(&["apikey", "list"], None)[0]["prefix"];
    let key = key.as_str().unwrap();
    assert!(
        err.contains(&format!(
            "the api key {key} was not seen: revoke it with `redkeep apikey revoke {key}`"
        )),
        "{err}"
    );
    let err = unseen(&["user", "create", "lost@example.com"], None);
    assert!(
        err.contains("the generated password of user 2 was not seen: set another with `redkeep user set-password 2 --password-stdin`"),
        "{err}"
    );
    let err = unseen(&["invite", "create"], None);
    let code = &cli.json(&["invite", "list"], None)[0]["prefix"];
    let code = code.as_str().unwrap();
    assert!(
        err.contains(&format!(
            "the invite code {code} was not seen: revoke it with `redkeep invite revoke {code}`"
        )),
        "{err}"
    );
    let err = unseen(
        &["login", "ann@example.com", "--password-stdin"],
        Some("ann password\n"),
    );
    let session = &cli.json(&["session", "list"], None)[0]["id"];
    let session = session.as_str().unwrap();
    assert!(
        err.contains(&format!("the token of session {session} was not seen")),
        "{err}"
    );
    // The same with --json, whose document carries the secret.
    let err = unseen(
        &["--json", "apikey", "create", "--user", "ann@example.com"],
        None,
    );
    assert!(err.contains("was not seen: revoke it with"), "{err}");
    // An export cut short.
    let (code, err) = closed_reader(&["export"], None);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: the export was cut short") && err.contains("export again"),
        "{err}"
    );
    // What only shows what is there: the reader stopped early, which is no failure.
    for args in [
        &["user", "list"][..],
        &["inspect", "dump", "users"],
        &["--json", "user", "show", "ann@example.com"],
        &["user", "create", "pw@example.com", "--password-stdin"],
    ] {
        let stdin = args
            .contains(&"--password-stdin")
            .then_some("long enough password\n");
        let (code, err) = closed_reader(args, stdin);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        // (A new hash made with the suites' cheap REDKEEP_ARGON2 is warned about.)
        assert!(
            err.lines()
                .all(|l| l.starts_with("warning: REDKEEP_ARGON2=")),
            "{args:?}: {err}"
        );
    }
}

/// A stderr whose reader went away (`redkeep … 2>&1 | head -1`, a log pipe that died) loses
/// the error line but not the exit code: a failure exits 1 and a usage error 2, never 101
/// from a panic while writing the line; a success stays 0.
#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    let cli = Cli::new();
    with_user(&cli);
    let closed_stderr = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("redkeep"));
        c.args(args)
            .env("REDKEEP_DATA_DIR", cli.data())
            .env("REDKEEP_ARGON2", "m=8,t=1,p=1")
            .env_remove("REDKEEP_STORE_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(writer);
        if let Some(url) = &cli.store {
            c.env("REDKEEP_STORE_URL", url);
        }
        c.output().unwrap()
    };
    for (args, code) in [
        (&["user", "show", "nobody@example.com"][..], 1),
        (&["user", "frobnicate"], 2),
        (&["user", "list", "--limit", "0"], 2),
        (&["user", "show", "ann@example.com"], 0),
    ] {
        let out = closed_stderr(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
    }
}

/// A command that only reads and cannot write its output (a full disk) says only that: it
/// changed nothing and printed no secret, so the message speaks of neither.
#[test]
fn a_read_only_command_that_cannot_write_says_nothing_of_changes_or_secrets() {
    let cli = Cli::new();
    with_user(&cli);
    for shell in [
        r#""$0" user list > /dev/full"#,
        r#""$0" status > /dev/full"#,
        r#""$0" --json audit list > /dev/full"#,
    ] {
        let mut c = std::process::Command::new("sh");
        c.arg("-c")
            .arg(shell)
            .arg(assert_cmd::cargo::cargo_bin("redkeep"))
            .env("REDKEEP_DATA_DIR", cli.data())
            .env("REDKEEP_ARGON2", "m=8,t=1,p=1")
            .env_remove("REDKEEP_STORE_URL");
        if let Some(url) = &cli.store {
            c.env("REDKEEP_STORE_URL", url);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{shell}: {err}");
        assert!(
            err.starts_with("error: writing the output: "),
            "{shell}: {err}"
        );
        assert!(
            !err.contains("secret") && !err.contains("changed"),
            "{shell}: {err}"
        );
    }
}

/// Changing something to what it is already says so, and audits nothing.
#[test]
fn repeated_changes_say_they_changed_nothing() {
    let cli = Cli::new();
    let ann = with_user(&cli);
    let audited = || cli.json(&["audit", "list"], None).as_array().unwrap().len();
    let (first, _) = cli.expect(&["user", "disable", "ann@example.com"], None, 0);
    assert!(
        first.starts_with(&format!("user {ann} disabled")),
        "{first}"
    );
    let before = audited();
    let (again, _) = cli.expect(&["user", "disable", "ann@example.com"], None, 0);
    assert!(
        again.starts_with(&format!("user {ann} was disabled already")),
        "{again}"
    );
    cli.expect(&["user", "enable", "ann@example.com"], None, 0);
    let (again, _) = cli.expect(&["user", "enable", "ann@example.com"], None, 0);
    assert!(
        again.starts_with(&format!("user {ann} was enabled already")),
        "{again}"
    );
    let (granted, _) = cli.expect(&["role", "grant", "ann@example.com", "admin"], None, 0);
    assert!(granted.contains("granted role admin"), "{granted}");
    let after = audited();
    let again = cli.json(&["role", "grant", "ann@example.com", "admin"], None);
    assert_eq!(again["already"], true, "{again}");
    let (held, _) = cli.expect(&["role", "grant", "ann@example.com", "admin"], None, 0);
    assert!(held.contains("holds role admin already"), "{held}");
    // enable, grant: two events; the repeats none.
    assert_eq!(after, before + 2);
    assert_eq!(audited(), after);
}

/// A login with a password that must change says so, in words and in the JSON: a generated
/// one, and one an operator set with `user set-password --must-change`.
#[test]
fn a_login_says_when_the_password_must_change() {
    let cli = Cli::new();
    cli.init();
    let made = cli.json(&["user", "create", "gen@example.com"], None);
    let password = made["password"].as_str().unwrap().to_string();
    let (out, err) = cli.expect(
        &["login", "gen@example.com", "--password-stdin"],
        Some(&format!("{password}\n")),
        0,
    );
    assert!(out.starts_with("rks_") && out.lines().count() == 1, "{out}");
    assert!(err.contains("must be changed"), "{err}");
    let shown = cli.json(
        &["login", "gen@example.com", "--password-stdin"],
        Some(&format!("{password}\n")),
    );
    assert_eq!(shown["must_change_password"], true, "{shown}");
    cli.expect(
        &[
            "user",
            "set-password",
            "gen@example.com",
            "--password-stdin",
        ],
        Some("a chosen password\n"),
        0,
    );
    let shown = cli.json(
        &["login", "gen@example.com", "--password-stdin"],
        Some("a chosen password\n"),
    );
    assert_eq!(shown["must_change_password"], false, "{shown}");
    // One the operator sets for a user who lost theirs, which the operator knows: with
    // --must-change the user must replace it, and the change is audited as such.
    let (out, _) = cli.expect(
        &[
            "user",
            "set-password",
            "gen@example.com",
            "--password-stdin",
            "--must-change",
        ],
        Some("an operator's password\n"),
        0,
    );
    assert!(
        out.contains("they must change it at their next login"),
        "{out}"
    );
    let shown = cli.json(
        &["login", "gen@example.com", "--password-stdin"],
        Some("an operator's password\n"),
    );
    assert_eq!(shown["must_change_password"], true, "{shown}");
    let events = cli.json(&["audit", "list", "--user", "gen@example.com"], None);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "password_changed"
                && e["detail"] == "to change at the next login"),
        "{events}"
    );
}

/// Bad values that used to pass: a password of spaces or with a NUL, a count past the
/// batch limit (a usage error, like 0), and a 100,000-character input repeated whole in
/// the error.
#[test]
fn weak_passwords_large_counts_and_long_inputs_get_short_clear_errors() {
    let cli = Cli::new();
    with_user(&cli);
    for (password, says) in [("        \n", "only spaces"), ("pass\0word\n", "control")] {
        let (_, err) = cli.expect(
            &["user", "create", "weak@example.com", "--password-stdin"],
            Some(password),
            1,
        );
        assert!(err.contains(says), "{err}");
    }
    let (_, err) = cli.expect(&["invite", "create", "-c", "1001"], None, 2);
    assert!(err.contains("1001"), "{err}");
    let long = format!("{}@example.com", "a".repeat(100_000));
    let (_, err) = cli.expect(
        &["user", "create", &long, "--password-stdin"],
        Some("long enough password\n"),
        1,
    );
    assert!(err.len() < 1_000, "{} bytes", err.len());
    assert_eq!(err.lines().count(), 1, "{err}");
    // A usage error repeats it short too (clap's message, twice for a duration).
    let long = "a".repeat(100_000);
    for args in [
        &["audit", "list", "--limit", &long][..],
        &["invite", "create", "--expires", &long][..],
    ] {
        let (_, err) = cli.expect(args, None, 2);
        assert!(err.len() < 1_000, "{} bytes", err.len());
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// A secret is the only thing on stdout (`tok=$(redkeep login …)`), one a line for several
/// codes; what goes with it is said on stderr. `--json` keeps its one document.
#[test]
fn secrets_are_alone_on_stdout_and_their_notes_on_stderr() {
    let cli = Cli::new();
    let (out, err) = cli.expect(&["init", "--admin-email", "root@example.com"], None, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    let root_password = out.trim_end().to_string();
    assert!(
        err.contains("administrator: root@example.com (id 1)") && err.contains("shown once"),
        "{err}"
    );
    let (out, err) = cli.expect(&["user", "create", "gen@example.com"], None, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        err.starts_with("created user gen@example.com (id 2)\n"),
        "{err}"
    );
    // The password is the one made.
    cli.expect(
        &[
            "user",
            "check-password",
            "gen@example.com",
            "--password-stdin",
        ],
        Some(&out),
        0,
    );
    let (out, err) = cli.expect(
        &["login", "root@example.com", "--password-stdin"],
        Some(&format!("{root_password}\n")),
        0,
    );
    assert!(out.starts_with("rks_") && out.lines().count() == 1, "{out}");
    assert!(
        err.contains("the token is shown once") && err.contains("must be changed"),
        "{err}"
    );
    let valid = cli.json(&["session", "validate", "--token-stdin"], Some(&out));
    assert_eq!(valid["user"]["id"], 1);
    let (out, err) = cli.expect(&["apikey", "create", "--user", "root@example.com"], None, 0);
    assert!(out.starts_with("rkk_") && out.lines().count() == 1, "{out}");
    assert!(err.contains("the key is shown once"), "{err}");
    cli.expect(&["apikey", "verify", "--key-stdin"], Some(&out), 0);
    let (out, err) = cli.expect(&["invite", "create", "-c", "3"], None, 0);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().all(|l| l.starts_with("rki_")), "{out}");
    assert!(err.starts_with("3 invite codes"), "{err}");
    // A password given on stdin is no secret to show: the note stays on stdout.
    let (out, err) = cli.expect(
        &["user", "create", "ann@example.com", "--password-stdin"],
        Some("ann password\n"),
        0,
    );
    assert_eq!(out.as_str(), "created user ann@example.com (id 3)\n");
    // Nothing on stderr but the warning about the suites' cheap REDKEEP_ARGON2.
    assert!(
        err.starts_with("warning: REDKEEP_ARGON2=") && err.lines().count() == 1,
        "{err}"
    );
    // --json: one document on stdout with the secret in it, nothing on stderr.
    let out = cli
        .cmd(&[
            "--json",
            "apikey",
            "create",
            "--user",
            "ann@example.com",
            "--scope",
            "x",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["key"].as_str().unwrap().starts_with("rkk_"));
    assert_eq!(v["scopes_not_held"], json!(["x"]));
}

/// Revoking what is revoked already reaches the state asked for: exit 0 with a word (a
/// runbook run again after a partial failure goes on). A session that is not there is
/// still an error (revoking deletes it, so "not found" cannot tell a typo from a repeat),
/// and an empty name says what to give.
#[test]
fn revoking_twice_succeeds_and_says_when_and_an_empty_session_says_what_to_give() {
    let cli = Cli::new();
    with_user(&cli);
    let code = cli.json(&["invite", "create"], None)[0]["code"]
        .as_str()
        .unwrap()
        .to_string();
    let first = cli.json(&["invite", "revoke", &code], None);
    assert_eq!(first["already"], false);
    let (out, _) = cli.expect(&["invite", "revoke", &code], None, 0);
    assert_eq!(
        out.trim_end(),
        format!(
            "invite {} was revoked already, at {}",
            first["prefix"].as_str().unwrap(),
            first["revoked_at"].as_str().unwrap()
        )
    );
    // Used up is not revoked: still refused.
    let used = cli.json(&["invite", "create"], None)[0]["code"]
        .as_str()
        .unwrap()
        .to_string();
    cli.expect(
        &["user", "create", "bob@example.com", "--invite", &used],
        None,
        0,
    );
    let (_, err) = cli.expect(&["invite", "revoke", &used], None, 1);
    assert!(err.contains("used up"), "{err}");
    for empty in ["", "  "] {
        let (_, err) = cli.expect(&["session", "revoke", empty], None, 1);
        assert!(
            err.contains("it is empty; give the session's short id (rks_…) or its token"),
            "{err}"
        );
    }
    let (_, err) = cli.expect(&["session", "revoke", "rks_aaaaaaaa"], None, 1);
    assert!(err.contains("session rks_aaaaaaaa not found"), "{err}");
}

/// A negative priority is written as any other number (`--priority -1`), not only as
/// `--priority=-1`.
#[test]
fn role_priorities_may_be_negative_on_the_command_line() {
    let cli = Cli::new();
    cli.init();
    let r = cli.json(
        &[
            "role",
            "create",
            "ops",
            "--permission",
            "deploy",
            "--priority",
            "-1",
        ],
        None,
    );
    assert_eq!(r["priority"], -1);
    let (_, err) = cli.expect(
        &[
            "role",
            "create",
            "low",
            "--permission",
            "x",
            "--priority",
            "-1000001",
        ],
        None,
        2,
    );
    assert!(err.contains("priority"), "{err}");
    // Out of range either way is a usage error, as `invite create -c 1001` is.
    let (_, err) = cli.expect(
        &[
            "role",
            "create",
            "high",
            "--permission",
            "x",
            "--priority",
            "100",
        ],
        None,
        2,
    );
    assert!(err.contains("-1000000..=99"), "{err}");
}

/// A custom role that holds `*` lets its users do everything, as an admin: granting it
/// says so, and `user show` says so beside `admin: no`.
#[test]
fn a_role_holding_every_permission_is_named_where_admins_are_looked_for() {
    let cli = Cli::new();
    let ann = with_user(&cli);
    let (out, _) = cli.expect(
        &["role", "create", "superuser", "--permission", "*"],
        None,
        0,
    );
    assert!(
        out.contains("note: role superuser holds *, so it grants every permission, as admin does"),
        "{out}"
    );
    let (out, _) = cli.expect(
        &["role", "create", "ops", "--permission", "deploy"],
        None,
        0,
    );
    assert!(!out.contains("note"), "{out}");
    let (out, _) = cli.expect(&["role", "grant", "ann@example.com", "superuser"], None, 0);
    assert!(out.contains("grants every permission"), "{out}");
    let granted = cli.json(&["role", "grant", "ann@example.com", "ops"], None);
    assert_eq!(granted["grants_every_permission"], false);
    let (out, _) = cli.expect(&["user", "show", "ann@example.com"], None, 0);
    assert!(
        out.contains("admin:                no (but role superuser grants every permission)"),
        "{out}"
    );
    let shown = cli.json(&["user", "show", "ann@example.com"], None);
    assert_eq!(shown["is_admin"], false);
    assert_eq!(
        shown["roles_granting_every_permission"],
        json!(["superuser"])
    );
    // An admin is just an admin.
    cli.expect(&["role", "grant", "ann@example.com", "admin"], None, 0);
    let (out, _) = cli.expect(&["user", "show", &ann.to_string()], None, 0);
    assert!(
        out.contains("admin:                yes (but role superuser"),
        "{out}"
    );
    cli.expect(&["role", "revoke", "ann@example.com", "superuser"], None, 0);
    let (out, _) = cli.expect(&["user", "show", "ann@example.com"], None, 0);
    assert!(out.contains("admin:                yes\n"), "{out}");
}

/// A key whose owner is disabled does not verify, and the listing says so instead of
/// `active`.
#[test]
fn keys_of_a_disabled_user_are_listed_as_such() {
    let cli = Cli::new();
    with_user(&cli);
    let key = cli.json(&["apikey", "create", "--user", "ann@example.com"], None)["key"]
        .as_str()
        .unwrap()
        .to_string();
    cli.json(
        &[
            "apikey",
            "create",
            "--org",
            "anns-workspace",
            "--scope",
            "read",
        ],
        None,
    );
    cli.expect(&["user", "disable", "ann@example.com"], None, 0);
    cli.expect(&["apikey", "verify", "--key-stdin"], Some(&key), 1);
    let listed = cli.json(&["apikey", "list"], None);
    let status: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["owner"]["kind"].as_str().unwrap(),
                k["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(status.contains(&("user", "owner_disabled")), "{listed}");
    assert!(status.contains(&("org", "active")), "{listed}");
    let (out, _) = cli.expect(&["apikey", "list", "--user", "ann@example.com"], None, 0);
    assert!(out.contains("owner_disabled"), "{out}");
    cli.expect(&["user", "enable", "ann@example.com"], None, 0);
    let listed = cli.json(&["apikey", "list", "--user", "ann@example.com"], None);
    assert_eq!(listed[0]["status"], "active");
}

/// `user rename` changes the display name or the username (or removes the username),
/// audited, and says what it changed; given nothing to change it is a usage error.
#[test]
fn user_rename_changes_the_name_or_username_and_says_what() {
    let cli = Cli::new();
    let ann = with_user(&cli);
    let (_, err) = cli.expect(&["user", "rename", "ann@example.com"], None, 2);
    assert!(err.contains("--name"), "{err}");
    cli.expect(
        &[
            "user",
            "rename",
            "ann@example.com",
            "--username",
            "a1",
            "--no-username",
        ],
        None,
        2,
    );
    let (out, _) = cli.expect(
        &[
            "user",
            "rename",
            "ann@example.com",
            "--name",
            "Ann B",
            "--username",
            "annb",
        ],
        None,
        0,
    );
    assert!(
        out.starts_with(&format!(
            "user {ann} renamed: name from \"Ann\" to \"Ann B\", username from (none) to annb\n"
        )),
        "{out}"
    );
    // The new username names the user.
    let shown = cli.json(&["user", "show", "annb"], None);
    assert_eq!(
        (&shown["name"], &shown["username"]),
        (&json!("Ann B"), &json!("annb"))
    );
    let (out, _) = cli.expect(&["user", "rename", "annb", "--name", "Ann B"], None, 0);
    assert!(out.contains("nothing changed"), "{out}");
    let renamed = cli.json(&["user", "rename", "annb", "--no-username"], None);
    assert_eq!(renamed["username"], serde_json::Value::Null);
    let audit = cli.json(&["audit", "list", "--user", &ann.to_string()], None);
    let renames: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "user_renamed")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(renames, ["username", "name,username"]);
    let (_, err) = cli.expect(
        &["user", "rename", "ann@example.com", "--name", " "],
        None,
        1,
    );
    assert!(err.contains("it is empty"), "{err}");
    let (_, err) = cli.expect(
        &["user", "rename", "ann@example.com", "--username", "x"],
        None,
        1,
    );
    assert!(err.contains("username"), "{err}");
    cli.expect(
        &["user", "rename", "nobody@example.com", "--name", "X"],
        None,
        1,
    );
}

/// `org remove-member`, `org delete --force` and `user delete` say on lines of their own,
/// and in JSON, what went with them; `org list --json` has the member count of the table.
#[test]
fn org_and_user_deletes_say_what_went_with_them() {
    let cli = Cli::new();
    let ann = with_user(&cli);
    let bob = cli.json(
        &["user", "create", "bob@example.com", "--name", "Bob"],
        None,
    )["id"]
        .as_u64()
        .unwrap();
    // Ann leaves her personal org to bob: she is in no org, and gets a new personal one.
    cli.json(
        &[
            "org",
            "add-member",
            "anns-workspace",
            "bob@example.com",
            "--role",
            "owner",
        ],
        None,
    );
    let (out, _) = cli.expect(
        &["org", "remove-member", "anns-workspace", "ann@example.com"],
        None,
        0,
    );
    assert!(
        out.contains(&format!("user {ann} left org anns-workspace")),
        "{out}"
    );
    assert!(
        out.contains("org anns-workspace is no longer personal"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with(&format!(
            "gave user {ann} a new personal org, anns-workspace-2"
        ))),
        "{out}"
    );
    cli.expect(&["check"], None, 0);
    let shown = cli.json(&["user", "show", "ann@example.com"], None);
    let new = cli.json(&["org", "show", "anns-workspace-2"], None);
    assert_eq!(shown["current_org_id"], new["id"]);
    assert_eq!(new["personal_user"], ann);
    // The same in JSON, for bob's removal from ann's new org (he has other orgs).
    cli.json(
        &["org", "add-member", "anns-workspace-2", "bob@example.com"],
        None,
    );
    let removed = cli.json(
        &[
            "org",
            "remove-member",
            "anns-workspace-2",
            "bob@example.com",
        ],
        None,
    );
    assert_eq!(removed["role"], "member");
    assert_eq!(removed["new_personal_org"], json!(null));
    assert_eq!(removed["org_no_longer_personal"], false);

    // org list --json: the member count the table shows.
    let listed = cli.json(&["org", "list"], None);
    let old = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["slug"] == "anns-workspace")
        .unwrap();
    assert_eq!(old["member_count"], 1);

    // org delete --force: the members, the keys with their prefixes, the new personal orgs.
    cli.json(
        &["org", "add-member", "anns-workspace", "ann@example.com"],
        None,
    );
    let key = cli.json(
        &[
            "apikey",
            "create",
            "--org",
            "anns-workspace",
            "--scope",
            "read",
        ],
        None,
    );
    let prefix = key["prefix"].as_str().unwrap().to_string();
    cli.expect(&["org", "delete", "bobs-workspace", "--force"], None, 0);
    let (out, _) = cli.expect(&["org", "delete", "anns-workspace", "--force"], None, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "deleted org anns-workspace", "{out}");
    assert!(
        lines.contains(
            &format!("removed 2 members: user {ann} (member), user {bob} (owner)").as_str()
        ),
        "{out}"
    );
    assert!(
        lines.contains(&format!("deleted 1 API key with it: {prefix}").as_str()),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("gave user {bob} a new personal org"))),
        "{out}"
    );
    let audit = cli.json(&["audit", "list", "--limit", "10"], None);
    let gone = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "org_deleted")
        .unwrap();
    assert!(gone["detail"].as_str().unwrap().contains(&prefix), "{gone}");
    cli.expect(&["check"], None, 0);

    // JSON of org delete.
    cli.json(
        &["org", "create", "Acme", "--owner", "ann@example.com"],
        None,
    );
    cli.json(&["org", "add-member", "acme", "bob@example.com"], None);
    let key = cli.json(
        &["apikey", "create", "--org", "acme", "--scope", "read"],
        None,
    );
    let deleted = cli.json(&["org", "delete", "acme", "--force"], None);
    assert_eq!(deleted["slug"], "acme");
    assert_eq!(
        deleted["members_removed"],
        json!([{"user_id": ann, "role": "owner"}, {"user_id": bob, "role": "member"}])
    );
    assert_eq!(deleted["api_keys_deleted"], 1);
    assert_eq!(deleted["api_key_prefixes_deleted"], json!([key["prefix"]]));
    assert_eq!(deleted["new_personal_orgs"], json!([]));

    // user delete names the agent sessions that go with the user.
    {
        let rk = redkeep::Redkeep::open(cli.data(), cli.options()).unwrap();
        rk.agents()
            .create(AgentSpec {
                id: "run-1".into(),
                user_id: bob,
                name: "Agent".into(),
                goal: "g".into(),
                ttl: None,
            })
            .unwrap();
        rk.invites()
            .create(redkeep::InviteSpec {
                created_by: Some(bob),
                ..redkeep::InviteSpec::default()
            })
            .unwrap();
    }
    let (out, _) = cli.expect(&["user", "delete", "bob@example.com"], None, 0);
    assert!(
        out.lines().any(|l| l == "deleted their 1 agent session"),
        "{out}"
    );
    // And the invites they made, revoked with them.
    assert!(
        out.lines()
            .any(|l| l.starts_with("revoked the 1 invite they made that could still admit")),
        "{out}"
    );
    let (_, _) = cli.expect(&["agent", "show", "run-1"], None, 1);
}

/// An org's API key made with `--created-by` names its maker in `apikey list` (text and
/// JSON; `--created-by` lists the keys a user made). `org remove-member`, `org set-role …
/// member` and `user delete` name the keys they made for the org that were revoked (text and
/// JSON); a promotion revokes nothing.
#[test]
fn member_removal_demotion_and_user_delete_name_the_org_keys_revoked_with_their_maker() {
    let cli = Cli::new();
    with_user(&cli);
    let id = |email: &str| {
        cli.json(&["user", "create", email], None)["id"]
            .as_u64()
            .unwrap()
    };
    let [bob, cat, dan, eve, fay, gus, hal] = [
        "bob@example.com",
        "cat@example.com",
        "dan@example.com",
        "eve@example.com",
        "fay@example.com",
        "gus@example.com",
        "hal@example.com",
    ]
    .map(id);
    cli.json(
        &["org", "create", "Acme", "--owner", "ann@example.com"],
        None,
    );
    for who in [bob, cat, dan, eve, gus, hal] {
        let who = who.to_string();
        cli.json(
            &["org", "add-member", "acme", &who, "--role", "admin"],
            None,
        );
    }
    let key_by = |who: u64| {
        let k = cli.json(
            &[
                "apikey",
                "create",
                "--org",
                "acme",
                "--scope",
                "basic_access",
                "--created-by",
                &who.to_string(),
            ],
            None,
        );
        assert_eq!(k["created_by"], who, "{k}");
        k["prefix"].as_str().unwrap().to_string()
    };
    let [bobs, cats, dans, eves, guss, hals] = [bob, cat, dan, eve, gus, hal].map(key_by);
    let (_, err) = cli.expect(
        &[
            "apikey",
            "create",
            "--org",
            "acme",
            "--scope",
            "read",
            "--created-by",
            &fay.to_string(),
        ],
        None,
        1,
    );
    assert!(err.contains("not a member of org"), "{err}");

    let listed = cli.json(&["apikey", "list", "--created-by", "bob@example.com"], None);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["prefix"], bobs.as_str());
    assert_eq!(listed[0]["created_by"], bob);
    let (out, _) = cli.expect(&["apikey", "list", "--org", "acme"], None, 0);
    let header = out.lines().next().unwrap();
    assert!(header.contains("created_by"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&bobs) && l.contains(&format!("user {bob}"))),
        "{out}"
    );

    let (out, _) = cli.expect(
        &["org", "remove-member", "acme", "bob@example.com"],
        None,
        0,
    );
    assert!(
        out.lines().any(|l| l
            == format!(
                "revoked the 1 API key they made for org acme that could still be used ({bobs})"
            )),
        "{out}"
    );
    let removed = cli.json(&["org", "remove-member", "acme", "cat@example.com"], None);
    assert_eq!(removed["api_keys_revoked"], json!([cats]));
    let (out, _) = cli.expect(&["user", "delete", "dan@example.com"], None, 0);
    assert!(
        out.lines().any(|l| l
            == format!(
                "revoked the 1 API key they made for orgs that could still be used ({dans})"
            )),
        "{out}"
    );
    let deleted = cli.json(&["user", "delete", "eve@example.com"], None);
    assert_eq!(deleted["org_api_keys_revoked"], json!([eves]));

    // A promotion keeps the key; a plain member makes no org keys, so a demotion to one
    // revokes those they made.
    let promoted = cli.json(
        &["org", "set-role", "acme", "gus@example.com", "owner"],
        None,
    );
    assert_eq!(
        (&promoted["was"], &promoted["api_keys_revoked"]),
        (&json!("admin"), &json!([]))
    );
    let (out, _) = cli.expect(
        &["org", "set-role", "acme", "gus@example.com", "member"],
        None,
        0,
    );
    assert!(
        out.lines().any(|l| l
            == format!(
                "revoked the 1 API key they made for org acme that could still be used \
                 ({guss}): a plain member makes no org keys"
            )),
        "{out}"
    );
    let demoted = cli.json(
        &["org", "set-role", "acme", "hal@example.com", "member"],
        None,
    );
    assert_eq!(
        (
            &demoted["was"],
            &demoted["role"],
            &demoted["api_keys_revoked"]
        ),
        (&json!("admin"), &json!("member"), &json!([hals]))
    );
    let listed = cli.json(&["apikey", "list", "--org", "acme"], None);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["status"] == "revoked"),
        "{listed}"
    );
    cli.expect(&["check"], None, 0);
}

/// `user disable` names the invites it revoked (those the user made that could still admit
/// someone), as `user delete` does: a line of text, and `invites_revoked` in JSON (empty for
/// a user disabled already).
#[test]
fn user_disable_names_the_invites_it_revoked() {
    let cli = Cli::new();
    with_user(&cli);
    let id = |email: &str| {
        cli.json(&["user", "create", email], None)["id"]
            .as_u64()
            .unwrap()
    };
    let [fay, gus] = ["fay@example.com", "gus@example.com"].map(id);
    // user disable names the invites it revoked.
    let invite_by = |who: u64| {
        let rk = redkeep::Redkeep::open(cli.data(), cli.options()).unwrap();
        rk.invites()
            .create(redkeep::InviteSpec {
                created_by: Some(who),
                ..redkeep::InviteSpec::default()
            })
            .unwrap()
            .invite
            .prefix
    };
    let fays = invite_by(fay);
    let (out, _) = cli.expect(&["user", "disable", "fay@example.com"], None, 0);
    assert!(
        out.lines().any(|l| l
            == format!("revoked the 1 invite they made that could still admit someone ({fays})")),
        "{out}"
    );
    let guss = invite_by(gus);
    let disabled = cli.json(&["user", "disable", "gus@example.com"], None);
    assert_eq!(disabled["invites_revoked"], json!([guss]));
    assert_eq!(disabled["is_active"], false);
    let again = cli.json(&["user", "disable", "gus@example.com"], None);
    assert_eq!(again["invites_revoked"], json!([]));
    cli.expect(&["check"], None, 0);
}

/// An org's key grants exactly its scopes, so one made with none would authenticate and be
/// refused everything: `apikey create --org` refuses it, saying how to give scopes. A user's
/// key with none grants all of its owner's permissions, and `list` and `verify` say which of
/// the two an empty scope list means (text and `--json` `grants`), for org keys made before
/// too (planted here through an export, as an older build stored them).
#[test]
fn an_org_key_needs_scopes_and_listings_tell_all_from_nothing() {
    let cli = Cli::new();
    let ann = with_user(&cli);
    let (_, err) = cli.expect(&["apikey", "create", "--org", "anns-workspace"], None, 1);
    assert!(
        err.contains("an org's key grants exactly its scopes") && err.contains("--scope"),
        "{err}"
    );
    assert_eq!(cli.json(&["apikey", "list"], None), json!([]));
    let every = cli.json(
        &[
            "apikey",
            "create",
            "--org",
            "anns-workspace",
            "--scope",
            "*",
        ],
        None,
    );
    assert_eq!(every["grants"], "every_permission", "{every}");
    let org_key = cli.json(
        &[
            "apikey",
            "create",
            "--org",
            "anns-workspace",
            "--scope",
            "read",
        ],
        None,
    );
    assert_eq!(org_key["grants"], "scopes", "{org_key}");
    cli.expect(&["apikey", "revoke", "--org", "anns-workspace"], None, 0);
    let users = cli.json(&["apikey", "create", "--user", "ann@example.com"], None);
    assert_eq!(users["grants"], "owner_permissions", "{users}");
    let user_key = users["key"].as_str().unwrap().to_string();
    let (out, _) = cli.expect(&["apikey", "verify", "--key-stdin"], Some(&user_key), 0);
    assert!(
        out.contains(&format!("scopes (all of user {ann}'s)")),
        "{out}"
    );

    // An org key with no scopes, as stored before the refusal: made with a scope, then its
    // scopes emptied in an export loaded into another store.
    let org_key = cli.json(
        &[
            "apikey",
            "create",
            "--org",
            "anns-workspace",
            "--scope",
            "read",
        ],
        None,
    );
    let export = cli.dir.path().join("x.jsonl");
    cli.expect(&["export", "-o", export.to_str().unwrap()], None, 0);
    let lines = std::fs::read_to_string(&export).unwrap();
    let prefix = org_key["prefix"].as_str().unwrap();
    let planted: String = lines
        .lines()
        .map(|l| {
            if l.contains(r#""table":"api_keys""#) && l.contains(prefix) {
                assert!(l.contains(r#""scopes":["read"]"#), "{l}");
                l.replace(r#""scopes":["read"]"#, r#""scopes":[]"#)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&export, planted + "\n").unwrap();
    let other = Cli::new();
    other.json(&["import", export.to_str().unwrap()], None);
    let (out, _) = other.expect(&["apikey", "list"], None, 0);
    let row = |p: &str| out.lines().find(|l| l.starts_with(p)).unwrap().to_string();
    assert!(row(prefix).contains("(none: grants nothing)"), "{out}");
    let user_prefix = users["prefix"].as_str().unwrap();
    assert!(
        row(user_prefix).contains(&format!("(all of user {ann}'s)")),
        "{out}"
    );
    let listed = other.json(&["apikey", "list"], None);
    let grants: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["status"] == "active")
        .map(|k| (k["prefix"].as_str().unwrap(), k["grants"].as_str().unwrap()))
        .collect();
    assert!(grants.contains(&(prefix, "nothing")), "{listed}");
    assert!(
        grants.contains(&(user_prefix, "owner_permissions")),
        "{listed}"
    );
    let (out, _) = other.expect(
        &["apikey", "verify", "--key-stdin"],
        Some(org_key["key"].as_str().unwrap()),
        0,
    );
    assert!(out.contains("scopes (none: grants nothing)"), "{out}");
    let verified = other.json(
        &["apikey", "verify", "--key-stdin"],
        Some(org_key["key"].as_str().unwrap()),
    );
    assert_eq!(verified["grants"], "nothing", "{verified}");
}

/// `user create --invite-stdin --password-stdin` registers with an invite code and a
/// password, neither on the command line: stdin holds the code on its first line and the
/// password on its second. A second line missing or empty is refused, naming the order,
/// and consumes no invite; neither secret is ever printed.
#[test]
fn invite_and_password_both_come_from_stdin_in_that_order() {
    let cli = Cli::new();
    with_user(&cli);
    let code = cli.json(&["invite", "create"], None)[0]["code"]
        .as_str()
        .unwrap()
        .to_string();
    let args = [
        "user",
        "create",
        "bob@example.com",
        "--invite-stdin",
        "--password-stdin",
    ];
    let active = |cli: &Cli| {
        cli.json(&["invite", "list"], None)
            .as_array()
            .unwrap()
            .len()
    };
    for stdin in [format!("{code}\n"), code.clone(), format!("{code}\n\n")] {
        let (out, err) = cli.expect(&args, Some(&stdin), 1);
        let state = if stdin.ends_with("\n\n") {
            "empty"
        } else {
            "missing"
        };
        assert!(
            err.contains("--invite-stdin with --password-stdin")
                && err.contains("the invite code on the first, the password on the second")
                && err.contains(&format!("the second line (the password) is {state}")),
            "{stdin:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.is_empty() && !err.contains(&code), "{out}{err}");
        assert_eq!(active(&cli), 1, "a refused create used the invite");
    }
    let (out, err) = cli.expect(&args, Some(&format!("{code}\nbob's pass phrase\n")), 0);
    let said = format!("{out}{err}");
    assert!(
        !said.contains(&code) && !said.contains("bob's pass phrase"),
        "{said}"
    );
    assert!(out.contains("bob@example.com"), "{out}");
    // The invite is used, and the password is the second line.
    assert_eq!(active(&cli), 0);
    cli.expect(
        &["login", "bob@example.com", "--password-stdin"],
        Some("bob's pass phrase\n"),
        0,
    );
    // `--help` says the order.
    let (help, _) = cli.expect(&["user", "create", "--help"], None, 0);
    assert!(
        help.contains("the invite code first, then the password"),
        "{help}"
    );
}

/// Secrets on the command line: `user create --invite-stdin` reads the invite code from
/// stdin; `--invite CODE` still works, with a warning that the code is in the shell's
/// history; a revoke given a whole token, key or code works and warns, naming the prefix
/// to give instead, and `apikey revoke --key-stdin` revokes by the key itself. A prefix
/// alone brings no warning.
#[test]
fn secrets_given_as_arguments_are_warned_about_and_stdin_forms_exist() {
    let cli = Cli::new();
    with_user(&cli);
    let codes = cli.json(&["invite", "create", "-c", "3"], None);
    let code = |i: usize| codes[i]["code"].as_str().unwrap().to_string();
    let (_, err) = cli.expect(
        &["user", "create", "bob@example.com", "--invite-stdin"],
        Some(&format!("{}\n", code(0))),
        0,
    );
    assert!(!err.contains("warning: the invite code"), "{err}");
    let invites = cli.json(&["invite", "list", "--all"], None);
    let used: Vec<&str> = invites
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] != "active")
        .map(|i| i["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(used, [&code(0)[..12]], "{invites}");
    let (_, err) = cli.expect(
        &["user", "create", "cat@example.com", "--invite", &code(1)],
        None,
        0,
    );
    assert!(
        err.contains("warning: the invite code given with --invite is now in your shell history")
            && err.contains("--invite-stdin"),
        "{err}"
    );
    let (_, err) = cli.expect(&["invite", "revoke", &code(2)], None, 0);
    assert!(
        err.contains(&format!(
            "warning: pass only the prefix, {}",
            &code(2)[..12]
        )),
        "{err}"
    );

    let token = cli
        .expect(
            &["login", "ann@example.com", "--password-stdin"],
            Some("ann password\n"),
            0,
        )
        .0
        .trim()
        .to_string();
    let (out, err) = cli.expect(&["session", "revoke", &token], None, 0);
    assert!(out.starts_with("revoked session"), "{out}");
    assert!(
        err.contains(&format!(
            "warning: pass only the prefix, {} (or --token-stdin); the full token is now in \
             your shell history",
            &token[..12]
        )),
        "{err}"
    );

    let key = |cli: &Cli| {
        cli.json(&["apikey", "create", "--user", "ann@example.com"], None)["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let whole = key(&cli);
    let (_, err) = cli.expect(&["apikey", "revoke", &whole], None, 0);
    assert!(
        err.contains("warning: pass only the prefix") && err.contains("(or --key-stdin)"),
        "{err}"
    );
    let by_stdin = key(&cli);
    let (out, err) = cli.expect(&["apikey", "revoke", "--key-stdin"], Some(&by_stdin), 0);
    assert_eq!(out.trim(), format!("revoked api key {}", &by_stdin[..12]));
    assert!(!err.contains("warning: pass only"), "{err}");
    cli.expect(&["apikey", "verify", "--key-stdin"], Some(&by_stdin), 1);
    let by_prefix = key(&cli);
    let (_, err) = cli.expect(&["apikey", "revoke", &by_prefix[..12]], None, 0);
    assert!(!err.contains("warning: pass only"), "{err}");
}

/// `org create` of a name an org has already makes another (`acme-corp-2`), as before, and
/// says so on stderr naming the first (`--json`: `same_name`), so that a retried script is
/// noticed; an explicit `--slug` is the operator's choice, and brings no note.
#[test]
fn org_create_of_a_name_taken_names_the_org_that_has_it() {
    let cli = Cli::new();
    with_user(&cli);
    let create = ["org", "create", "Acme Corp", "--owner", "ann@example.com"];
    let (_, err) = cli.expect(&create, None, 0);
    assert!(!err.contains("note:"), "{err}");
    let first = cli.json(&["org", "show", "acme-corp"], None);
    let id = first["id"]
        .as_u64()
        .unwrap_or_else(|| first["org"]["id"].as_u64().unwrap());
    let (out, err) = cli.expect(&create, None, 0);
    assert!(out.starts_with("created org acme-corp-2"), "{out}");
    assert!(
        err.contains(&format!(
            "note: an org named \"Acme Corp\" existed already: acme-corp (id {id}); this is \
             one more, acme-corp-2"
        )) && err.contains("--slug"),
        "{err}"
    );
    let third = cli.json(&create, None);
    assert_eq!(third["slug"], "acme-corp-3");
    let twins: Vec<&str> = third["same_name"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["slug"].as_str().unwrap())
        .collect();
    assert_eq!(twins, ["acme-corp", "acme-corp-2"], "{third}");
    let (_, err) = cli.expect(&[&create[..], &["--slug", "acme-own"]].concat(), None, 0);
    assert!(!err.contains("note:"), "{err}");
    let other = cli.json(
        &["org", "create", "Other", "--owner", "ann@example.com"],
        None,
    );
    assert_eq!(other["same_name"], json!([]));
}

/// A role name of digits alone is refused when the role is made (it would read as an id, as
/// usernames and slugs would), quoting it; one stored before, here loaded from an export,
/// still reads and is granted.
#[test]
fn an_all_digit_role_name_is_refused_when_made_but_a_stored_one_works() {
    let cli = Cli::new();
    with_user(&cli);
    let (_, err) = cli.expect(&["role", "create", "42", "--permission", "x"], None, 1);
    assert!(err.contains("\"42\" is all digits"), "{err}");
    cli.expect(&["role", "create", "r42", "--permission", "x"], None, 0);
    let export = cli.dir.path().join("x.jsonl");
    cli.expect(&["export", "-o", export.to_str().unwrap()], None, 0);
    let lines = std::fs::read_to_string(&export).unwrap();
    assert!(lines.contains(r#""name":"r42""#), "{lines}");
    std::fs::write(&export, lines.replace(r#""name":"r42""#, r#""name":"42""#)).unwrap();
    let other = Cli::new();
    other.json(&["import", export.to_str().unwrap()], None);
    let (out, _) = other.expect(&["role", "show", "42"], None, 0);
    assert!(out.starts_with("role 42"), "{out}");
    other.expect(&["role", "grant", "ann@example.com", "42"], None, 0);
    other.expect(&["user", "can", "ann@example.com", "x"], None, 0);
}

/// `apikey verify --json` says in one word why a key does not verify (`unknown`,
/// `wrong_secret`, `revoked`, `expired`, `malformed`), with the line stderr gives, and no
/// more of the key than its prefix; a key that verifies says `"valid": true`.
#[test]
fn apikey_verify_json_says_why_a_key_does_not_verify() {
    use redkeep::auth::api_keys::{ApiKeySpec, KeyOwner};
    let cli = Cli::new();
    let ann = with_user(&cli);
    let create = || {
        let k = cli.json(&["apikey", "create", "--user", "ann@example.com"], None);
        k["key"].as_str().unwrap().to_string()
    };
    let good = create();
    let revoked = create();
    cli.expect(&["apikey", "revoke", &revoked[..12]], None, 0);
    // Made on a clock in the past, its hour ended long before now.
    let expired = {
        let past =
            std::sync::Arc::new(redkeep::ManualClock::new(redkeep::Timestamp(1_000_000_000)));
        let rk = redkeep::Redkeep::open(cli.data(), cli.options().clock(past)).unwrap();
        let spec = ApiKeySpec {
            owner: KeyOwner::User(ann),
            scopes: Vec::new(),
            expires_in: Some(std::time::Duration::from_secs(3600)),
            created_by: None,
        };
        let made = rk.api_keys().create(spec).unwrap();
        made.key.expose().to_string()
    };
    let last = if good.ends_with('a') { "b" } else { "a" };
    let wrong = format!("{}{last}", &good[..good.len() - 1]);
    let unknown = format!("rkk_{}", "a".repeat(good.len() - 4));
    let verify = |key: &str| {
        let out = cli
            .cmd(&["--json", "apikey", "verify", "--key-stdin"])
            .write_stdin(format!("{key}\n"))
            .output()
            .unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        let v: serde_json::Value = serde_json::from_str(&o).unwrap_or_else(|_| panic!("{o}{e}"));
        (out.status.code(), v, o, e)
    };
    let (code, v, _, _) = verify(&good);
    assert_eq!((code, &v["valid"]), (Some(0), &json!(true)), "{v}");
    for (key, reason, prefix) in [
        (&unknown, "unknown", Some(&unknown[..12])),
        (&wrong, "wrong_secret", Some(&good[..12])),
        (&revoked, "revoked", Some(&revoked[..12])),
        (&expired, "expired", Some(&expired[..12])),
        (&"nope".to_string(), "malformed", None),
    ] {
        let (code, v, out, err) = verify(key);
        assert_eq!(code, Some(1), "{reason}: {out}{err}");
        assert_eq!(v["valid"], false, "{v}");
        assert_eq!(v["reason"], reason, "{v}");
        assert_eq!(v["prefix"], json!(prefix), "{v}");
        assert_eq!(
            err.trim_end(),
            format!("error: {}", v["message"].as_str().unwrap())
        );
        assert!(
            key.len() < 12 || !format!("{out}{err}").contains(&key[12..]),
            "{reason}: the key is repeated: {out}{err}"
        );
    }
    let (help, _) = cli.expect(&["apikey", "verify", "--help"], None, 0);
    assert!(
        help.contains("wrong_secret") && help.contains("expired"),
        "{help}"
    );
}

/// `user disable` says the user's API keys are suspended, not revoked, and how to revoke
/// them; `user enable` says they work again (text, and a count in JSON).
#[test]
fn user_disable_and_enable_say_what_becomes_of_the_api_keys() {
    let cli = Cli::new();
    with_user(&cli);
    let bob = cli.json(&["user", "create", "bob@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    cli.json(&["apikey", "create", "--user", "bob@example.com"], None);
    let (out, _) = cli.expect(&["user", "disable", "bob@example.com"], None, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("1 API key they answer for ")
                && l.contains("only suspended, not revoked")
                && l.contains(&format!("`redkeep user enable {bob}` brings them back"))
                && l.contains(&format!("`redkeep user disable {bob} --revoke-keys`"))),
        "{out}"
    );
    let (out, _) = cli.expect(&["user", "enable", "bob@example.com"], None, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("1 API key they answer for") && l.contains("used again")),
        "{out}"
    );
    let disabled = cli.json(&["user", "disable", "bob@example.com"], None);
    assert_eq!(disabled["api_keys_suspended"], 1, "{disabled}");
    let enabled = cli.json(&["user", "enable", "bob@example.com"], None);
    assert_eq!(enabled["api_keys_usable"], 1, "{enabled}");
}

/// `user disable --revoke-keys` revokes for good the user's own API keys and the org keys
/// they made (named, and listed in JSON), also for a user disabled already: `user enable`
/// has none to bring back. The help says that without the flag keys are only suspended
/// (security review S7).
#[test]
fn user_disable_revoke_keys_revokes_them_for_good() {
    let cli = Cli::new();
    with_user(&cli);
    let bob = cli.json(&["user", "create", "bob@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    cli.json(
        &["org", "create", "Acme", "--owner", "bob@example.com"],
        None,
    );
    let own = cli.json(&["apikey", "create", "--user", "bob@example.com"], None);
    let made = cli.json(
        &[
            "apikey",
            "create",
            "--org",
            "acme",
            "--scope",
            "basic_access",
            "--created-by",
            "bob@example.com",
        ],
        None,
    );
    let prefix = |k: &serde_json::Value| k["prefix"].as_str().unwrap().to_string();
    cli.expect(&["user", "disable", "bob@example.com"], None, 0);
    let (out, _) = cli.expect(
        &["user", "disable", "bob@example.com", "--revoke-keys"],
        None,
        0,
    );
    assert!(
        out.lines().any(|l| l.starts_with(&format!(
            "revoked 2 API keys for good, their own and org keys they made ({}, {})",
            prefix(&own),
            prefix(&made)
        )) && l.contains("`redkeep user enable` brings none back")),
        "{out}"
    );
    let (out, _) = cli.expect(&["user", "enable", "bob@example.com"], None, 0);
    assert!(!out.contains("API key"), "{out}");
    for k in [&own, &made] {
        cli.expect(
            &["apikey", "verify", "--key-stdin"],
            Some(k["key"].as_str().unwrap()),
            1,
        );
    }
    let again = cli.json(
        &["user", "disable", &bob.to_string(), "--revoke-keys"],
        None,
    );
    assert_eq!(again["api_keys_revoked"], json!([]), "{again}");
    assert_eq!(again["api_keys_suspended"], 0, "{again}");
    let (help, _) = cli.expect(&["user", "disable", "--help"], None, 0);
    assert!(
        help.contains("only suspended") && help.contains("--revoke-keys"),
        "{help}"
    );
}

/// An org key made by a member grants no more than they hold now: when a role revoke takes
/// a scope from its maker, the revoke names the key, `apikey verify` says the key no longer
/// grants that scope and `apikey list` shows it `narrowed` (it said "valid … scopes *" as
/// if nothing changed); while its maker is disabled, verify gives the reason
/// `maker_disabled` (it said "it is valid now … verify it again"), and list says so too.
/// An operator's verify records no use of the key.
#[test]
fn an_org_key_whose_maker_lost_a_scope_or_was_disabled_says_so() {
    let cli = Cli::new();
    cli.init();
    let id = |v: serde_json::Value| v["id"].as_u64().unwrap();
    // (With a password of their own: one generated must be changed, and until then they
    // hold nothing, so a key of theirs would be narrowed from the start.)
    let wes = id(cli.json(
        &["user", "create", "wes@example.com", "--password-stdin"],
        Some("wes password\n"),
    ));
    cli.json(&["user", "create", "bea@example.com"], None);
    cli.expect(
        &["role", "create", "writer", "--permission", "posts.write"],
        None,
        0,
    );
    cli.expect(&["role", "grant", "wes@example.com", "writer"], None, 0);
    cli.expect(
        &[
            "org",
            "create",
            "Team",
            "--slug",
            "team",
            "--owner",
            "bea@example.com",
        ],
        None,
        0,
    );
    cli.expect(
        &[
            "org",
            "add-member",
            "team",
            "wes@example.com",
            "--role",
            "admin",
        ],
        None,
        0,
    );
    let (key, _) = cli.expect(
        &[
            "apikey",
            "create",
            "--org",
            "team",
            "--scope",
            "posts.write",
            "--created-by",
            "wes@example.com",
        ],
        None,
        0,
    );
    let key = key.trim().to_string();
    let verify = || cli.json(&["apikey", "verify", "--key-stdin"], Some(&key));
    assert!(verify().get("narrowed").is_none());
    let (out, _) = cli.expect(&["role", "revoke", "wes@example.com", "writer"], None, 0);
    assert!(
        out.contains(&format!(
            "1 org API key(s) now grant less, their makers no longer holding some of their \
             scopes: {} (user {wes} lacks posts.write)",
            &key[..12]
        )),
        "{out}"
    );
    let v = verify();
    assert_eq!(
        v["narrowed"],
        json!({"maker": wes, "lacks": ["posts.write"]}),
        "{v}"
    );
    let (out, _) = cli.expect(&["apikey", "verify", "--key-stdin"], Some(&key), 0);
    assert!(
        out.contains(&format!(
            "but user {wes}, who made it, no longer holds posts.write, so it does not grant it"
        )),
        "{out}"
    );
    let list = cli.json(&["apikey", "list", "--org", "team"], None);
    assert_eq!(list[0]["status"], "narrowed", "{list}");
    // An operator's look is no use of the key.
    assert_eq!(list[0]["last_used_at"], json!(null), "{list}");
    cli.expect(&["role", "grant", "wes@example.com", "writer"], None, 0);
    cli.expect(&["user", "disable", "wes@example.com"], None, 0);
    let (_, err) = cli.expect(&["apikey", "verify", "--key-stdin"], Some(&key), 1);
    assert!(
        err.contains(&format!("user {wes}, who made this key of org "))
            && err.contains("is disabled; it verifies again once they are enabled"),
        "{err}"
    );
    let list = cli.json(&["apikey", "list", "--org", "team"], None);
    assert_eq!(list[0]["status"], "maker_disabled", "{list}");
    cli.expect(&["user", "enable", "wes@example.com"], None, 0);
    assert!(verify().get("narrowed").is_none());
    // A maker who must change their password holds nothing until they do, nor does the key.
    cli.expect(
        &[
            "user",
            "set-password",
            "wes@example.com",
            "--password-stdin",
            "--must-change",
        ],
        Some("another password\n"),
        0,
    );
    let v = verify();
    assert_eq!(
        v["narrowed"],
        json!({"maker": wes, "lacks": ["posts.write"]}),
        "{v}"
    );
}

/// A user who must change their password holds no permission until they do (as the web
/// layer answers): `user can` says no and why, `user permissions` says so above what their
/// roles give, and `apikey verify` of their key says it grants nothing until then.
#[test]
fn a_user_who_must_change_their_password_holds_no_permission_for_the_operator_either() {
    let cli = Cli::new();
    let ann = with_user(&cli);
    let (key, _) = cli.expect(&["apikey", "create", "--user", "ann@example.com"], None, 0);
    cli.expect(&["user", "can", "ann@example.com", "basic_access"], None, 0);
    cli.expect(
        &[
            "user",
            "set-password",
            "ann@example.com",
            "--password-stdin",
            "--must-change",
        ],
        Some("a new password\n"),
        0,
    );
    let (out, _) = cli.expect(&["user", "can", "ann@example.com", "basic_access"], None, 1);
    assert!(
        out.contains(&format!(
            "user {ann} may not basic_access (they must change their password first"
        )),
        "{out}"
    );
    let (out, _) = cli.expect(&["user", "permissions", "ann@example.com"], None, 0);
    assert!(
        out.contains("must change their password first: no permissions until they do"),
        "{out}"
    );
    let (out, _) = cli.expect(&["apikey", "verify", "--key-stdin"], Some(key.trim()), 0);
    assert!(
        out.contains("but its owner must change their password first, so it grants nothing"),
        "{out}"
    );
}

/// `user show` says no lock once the lock has run out (it kept printing the past time, and
/// `--json` kept it, while `user unlock` said the user was not locked).
#[test]
fn user_show_gives_no_lock_once_it_has_run_out() {
    use redkeep::admin::commands::UserCmd;
    use redkeep::admin::{Command, Io, Quiet, Request, execute};
    let t = common::TestDir::new();
    let clock = std::sync::Arc::new(redkeep::ManualClock::new(redkeep::Timestamp(1_900_000_000)));
    let rk = redkeep::Redkeep::open(t.path(), t.options().clock(clock.clone())).unwrap();
    rk.users()
        .create(redkeep::NewUser {
            email: "ann@example.com".into(),
            password: Some(redkeep::Secret::new(String::from("correct horse"))),
            ..redkeep::NewUser::default()
        })
        .unwrap();
    for _ in 0..10 {
        let _ = rk.users().authenticate("ann@example.com", "wrong horse");
    }
    let show = || {
        let req = Request::new(Command::User(UserCmd::Show {
            user: "ann@example.com".into(),
        }));
        let (mut input, mut output) = (std::io::empty(), Vec::new());
        let io = Io {
            input: &mut input,
            output: &mut output,
            feedback: &Quiet,
        };
        execute(&rk, &req, io).unwrap()
    };
    let locked = show();
    assert!(locked.json["locked_until"].is_string(), "{}", locked.json);
    clock.advance(std::time::Duration::from_secs(61));
    let free = show();
    assert_eq!(free.json["locked_until"], json!(null), "{}", free.json);
}

/// `invite revoke` given more than a prefix but not the code (cut short, or mistyped) names
/// the invite its prefix names and how to revoke it, and its warning does not call what was
/// given the full code; a prefix no invite has is not found.
#[test]
fn invite_revoke_of_a_code_cut_short_names_the_invite_and_the_way_to_revoke_it() {
    let cli = Cli::new();
    cli.init();
    let (code, _) = cli.expect(&["invite", "create"], None, 0);
    let code = code.trim();
    let prefix = &code[..12];
    let (_, err) = cli.expect(&["invite", "revoke", &code[..16]], None, 1);
    assert_eq!(
        err,
        format!(
            "warning: pass only the prefix, {prefix}; what was given is now in your shell \
             history and was in the process list\nerror: invalid invite: {prefix} names an \
             invite, but the rest of what was given is not its code (cut short or \
             mistyped?); to revoke that invite, give its prefix alone: `redkeep invite revoke \
             {prefix}`\n"
        )
    );
    let (_, err) = cli.expect(&["invite", "revoke", "rki_aaaaaaaaaaaaaa"], None, 1);
    assert!(
        err.ends_with("error: invite rki_aaaaaaaa not found\n"),
        "{err}"
    );
    let (_, err) = cli.expect(&["invite", "revoke", code], None, 0);
    assert!(
        err.contains("the full invite code is now in your shell history"),
        "{err}"
    );
}
