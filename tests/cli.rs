//! The `redkeep` CLI, command by command, in human and JSON form.
#![cfg(feature = "cli")]

mod common;

use common::Cli;
use serde_json::Value;

#[test]
fn init_creates_an_admin_with_a_password_shown_once_and_is_idempotent() {
    let cli = Cli::new();
    let v = cli.json(&["init"], None);
    assert_eq!(v["created"], true);
    let password = v["admin"]["password"].as_str().unwrap().to_string();
    assert_eq!(v["admin"]["must_change_password"], true);
    assert_eq!(v["admin"]["is_admin"], true);
    let (out, _) = cli.expect(&["init"], None, 0);
    assert!(
        out.contains("already initialised; nothing changed"),
        "{out}"
    );
    // It names where the store is: the data dir, or the server (a data dir made just now
    // for the workspaces says nothing of a store on a server).
    let place = match &cli.store {
        Some(_) => "the store on postgres (".to_string(),
        None => cli.data().display().to_string(),
    };
    assert!(out.starts_with(&place), "{out}");
    assert!(!out.contains(&password));
    let email = v["admin"]["email"].as_str().unwrap();
    cli.expect(
        &["user", "check-password", email, "--password-stdin"],
        Some(&format!("{password}\n")),
        0,
    );
    let (show, _) = cli.expect(&["user", "show", "1"], None, 0);
    assert!(
        !show.contains(&password) && !show.contains("argon2"),
        "{show}"
    );
}

#[test]
fn init_takes_the_admin_email_and_password_from_the_caller() {
    let cli = Cli::new();
    let v = cli.json(
        &[
            "init",
            "--admin-email",
            "root@example.com",
            "--admin-password-stdin",
        ],
        Some("my admin password\n"),
    );
    assert_eq!(v["admin"]["email"], "root@example.com");
    assert!(v["admin"].get("password").is_none());
    cli.expect(
        &[
            "user",
            "check-password",
            "root@example.com",
            "--password-stdin",
        ],
        Some("my admin password\n"),
        0,
    );
}

#[test]
fn a_refused_init_leaves_no_store_behind() {
    let cli = Cli::new();
    let (_, err) = cli.expect(&["init", "--admin-email", "not an email"], None, 1);
    assert!(err.contains("has no @"), "{err}");
    if cli.store.is_none() {
        assert!(!cli.data().exists(), "the refused init left its data dir");
        // A data dir that was there stays, without the store the failed init made.
        std::fs::create_dir_all(cli.data().join("workspaces/users")).unwrap();
        cli.expect(&["init", "--admin-email", "x"], None, 1);
        let left: Vec<_> = std::fs::read_dir(cli.data())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["workspaces"]);
    }
    // The next init starts clean and succeeds.
    let v = cli.json(&["init", "--admin-email", "root@example.com"], None);
    assert_eq!(v["created"], true);
}

#[test]
fn init_makes_a_private_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    cli.init();
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(cli.data()), 0o700);
    match &cli.store {
        None => assert_eq!(mode(cli.data().join("redkeep.redb")), 0o600),
        Some(_) => assert!(!cli.data().join("redkeep.redb").exists()),
    }
}

/// `init` on a folder that holds other things and nothing of redkeep's (a mistyped
/// `--data-dir ~`) is refused, changing nothing: it would make the folder 0700, locking
/// other users out, and put every password hash among those files. An empty folder is
/// taken, and a mode it changes is said.
#[test]
fn init_refuses_a_folder_of_other_files_and_says_when_it_makes_one_private() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    std::fs::create_dir(cli.data()).unwrap();
    std::fs::set_permissions(cli.data(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(cli.data().join("other.txt"), b"hi").unwrap();
    let (_, err) = cli.expect(&["init", "--no-admin"], None, 1);
    assert!(
        err.contains("holds other files (other.txt) and is no redkeep data dir")
            && err.contains("give a new or empty folder"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(mode(cli.data()), 0o755);
    let left: Vec<_> = std::fs::read_dir(cli.data())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["other.txt"]);
    // Any other command there says the folder is no data dir, rather than send the user to
    // the `init` just refused.
    if !common::pg::engine_is_postgres() {
        let (_, err) = cli.expect(&["user", "list"], None, 1);
        assert!(
            err.contains(
                "holds other files (other.txt), so it is no redkeep data dir: give the data dir \
                 that holds redkeep.redb (--data-dir or REDKEEP_DATA_DIR), or a new or empty \
                 folder to `redkeep init`"
            ) && !err.contains("run `redkeep init` first"),
            "{err}"
        );
    }
    // A name that merely starts with "redkeep" (a checkout in a home folder) makes it no
    // data dir.
    std::fs::create_dir(cli.data().join("redkeep-src")).unwrap();
    let (_, err) = cli.expect(&["init", "--no-admin"], None, 1);
    assert!(
        err.contains("holds other files (other.txt, redkeep-src)"),
        "{err}"
    );
    assert_eq!(mode(cli.data()), 0o755);
    std::fs::remove_dir(cli.data().join("redkeep-src")).unwrap();
    // Emptied, it is taken, and the change of its mode is said.
    std::fs::remove_file(cli.data().join("other.txt")).unwrap();
    let (out, _) = cli.expect(&["init", "--no-admin"], None, 0);
    assert!(
        out.contains(&format!(
            "the data dir {} was open to other users of this machine (mode 0755); made it 0700",
            cli.data().display()
        )),
        "{out}"
    );
    assert_eq!(mode(cli.data()), 0o700);
    // A data dir with a store takes files beside it (an operator's notes): init again.
    std::fs::write(cli.data().join("NOTES"), b"hi").unwrap();
    let (out, _) = cli.expect(&["init", "--no-admin"], None, 0);
    assert!(
        out.contains("already initialised; nothing changed"),
        "{out}"
    );
}

/// `check` reports a data dir and a store file open to other users of the machine, as it
/// reports workspace folders (the store holds every password hash); `check --repair`
/// makes them 0700 and 0600 and says so.
#[test]
fn check_reports_and_repairs_a_data_dir_and_store_file_open_to_others() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    cli.init();
    let set = |p: std::path::PathBuf, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let db = cli.data().join("redkeep.redb");
    set(cli.data(), 0o755);
    if cli.store.is_none() {
        set(db.clone(), 0o644);
        // `check` alone only reads (a redb store is opened read-only): it reports both.
        let (out, err) = cli.expect(&["check"], None, 1);
        assert!(
            out.contains(&format!(
                "the data dir {} is open to other users of this machine (mode 0755); `redkeep check --repair` makes it 0700",
                cli.data().display()
            )) && out.contains(&format!(
                "the store file {} is open to other users of this machine (mode 0644); `redkeep check --repair` makes it 0600",
                db.display()
            )),
            "{out}"
        );
        assert!(err.contains("the check found problems"), "{err}");
        assert_eq!(mode(cli.data()), 0o755);
        assert_eq!(mode(db.clone()), 0o644);
        let (out, _) = cli.expect(&["check", "--repair"], None, 0);
        assert!(
            out.contains(&format!("fixed: the store file {} was open", db.display())),
            "{out}"
        );
        assert_eq!(mode(db.clone()), 0o600);
    } else {
        // On a server, the store is opened for writing, which makes the data dir private
        // at once; `check` says so.
        let (out, _) = cli.expect(&["check"], None, 0);
        assert!(out.contains("fixed: the data dir"), "{out}");
        set(cli.data(), 0o755);
        cli.expect(&["check", "--repair"], None, 0);
    }
    assert_eq!(mode(cli.data()), 0o700);
    let (out, _) = cli.expect(&["check"], None, 0);
    assert!(
        out.contains("ok: no problems found") && !out.contains("fixed"),
        "{out}"
    );
}

#[test]
fn commands_on_a_missing_store_say_to_run_init_and_create_nothing() {
    let cli = Cli::new();
    for args in [
        &["user", "list"][..],
        &["invite", "list"],
        &["check"],
        &["invite", "create"],
    ] {
        let (_, err) = cli.expect(args, None, 1);
        assert!(err.contains("redkeep init"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(!cli.data().exists());
}

#[test]
fn usage_errors_exit_2() {
    let cli = Cli::new();
    cli.expect(&["user", "frobnicate"], None, 2);
    cli.expect(&["invite", "create", "-c", "many"], None, 2);
    cli.expect(&["user", "set-password", "1"], None, 2);
}

/// `invite create` makes codes that expire after a week unless `--expires` says otherwise;
/// `--expires never` makes one without expiry, which `invite list` shows as `never`, and
/// `--help` tells both (security review S6).
#[test]
fn invite_codes_expire_after_a_week_unless_made_with_expires_never() {
    let cli = Cli::new();
    cli.init();
    let at = |v: &Value| redkeep::Timestamp::parse(v.as_str().unwrap()).unwrap().0;
    let week = &cli.json(&["invite", "create"], None)[0];
    assert_eq!(
        at(&week["expires_at"]) - at(&week["created_at"]),
        7 * 86_400
    );
    let (_, err) = cli.expect(&["invite", "create"], None, 0);
    assert!(err.contains("until 20"), "{err}");
    let (out, err) = cli.expect(&["invite", "create", "--expires", "never"], None, 0);
    assert!(out.starts_with("rki_"), "{out}");
    assert!(
        err.contains("with no expiry (good until used up or revoked)"),
        "{err}"
    );
    let never = cli.json(&["invite", "create", "--expires", "NEVER"], None);
    assert_eq!(never[0]["expires_at"], Value::Null);
    let (table, _) = cli.expect(&["invite", "list"], None, 0);
    let never_rows = table.lines().filter(|l| l.trim_end().ends_with(" never"));
    assert_eq!(never_rows.count(), 2, "{table}");
    let (help, _) = cli.expect(&["invite", "create", "--help"], None, 0);
    assert!(
        help.contains("default 7d") && help.contains("never"),
        "{help}"
    );
}

#[test]
fn invite_create_list_and_revoke() {
    let cli = Cli::new();
    cli.init();
    let created = cli.json(
        &[
            "invite",
            "create",
            "-c",
            "3",
            "--expires",
            "7d",
            "--uses",
            "2",
        ],
        None,
    );
    let items = created.as_array().unwrap();
    assert_eq!(items.len(), 3);
    for i in items {
        assert!(i["code"].as_str().unwrap().starts_with("rki_"));
        assert!(
            i["code"]
                .as_str()
                .unwrap()
                .starts_with(i["prefix"].as_str().unwrap())
        );
        assert_eq!(i["max_uses"], 2);
        assert_eq!(i["uses"], 0);
        assert_eq!(i["status"], "active");
        assert!(i["expires_at"].as_str().unwrap().ends_with('Z'));
    }
    let codes: Vec<&str> = items.iter().map(|i| i["code"].as_str().unwrap()).collect();
    let (human, _) = cli.expect(&["invite", "list"], None, 0);
    let listed = cli.json(&["invite", "list"], None);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    for code in &codes {
        assert!(
            !human.contains(code) && !listed.to_string().contains(code),
            "full code listed"
        );
    }
    // Revoke one by prefix and one by full code.
    let prefix = items[0]["prefix"].as_str().unwrap();
    assert_eq!(
        cli.json(&["invite", "revoke", prefix], None)["status"],
        "revoked"
    );
    assert_eq!(
        cli.json(&["invite", "revoke", codes[1]], None)["status"],
        "revoked"
    );
    assert_eq!(
        cli.json(&["invite", "list"], None)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        cli.json(&["invite", "list", "--all"], None)
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // A second revoke is no failure (a runbook runs again): it says when the first was.
    let (out, _) = cli.expect(&["invite", "revoke", prefix], None, 0);
    assert!(
        out.starts_with(&format!("invite {prefix} was revoked already, at 20")),
        "{out}"
    );
    let again = cli.json(&["invite", "revoke", codes[1]], None);
    assert_eq!(
        (&again["status"], &again["already"]),
        (&"revoked".into(), &true.into())
    );
    let (_, err) = cli.expect(&["invite", "revoke", "nonsense"], None, 1);
    assert!(err.contains("prefix"), "{err}");
    let (_, err) = cli.expect(&["invite", "create", "--expires", "soon"], None, 2);
    assert!(err.contains("duration"), "{err}");
    // A human create prints the codes alone on stdout, one a line (`codes=$(…)`), and
    // what goes with them on stderr.
    let (out, err) = cli.expect(&["invite", "create", "-c", "2", "--expires", "1d"], None, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for code in lines {
        cli.expect(
            &[
                "user",
                "create",
                &format!("{}@example.com", &code[4..12]),
                "--invite",
                code,
            ],
            None,
            0,
        );
    }
    assert!(
        err.starts_with("2 invite codes for 1 registration each, until 20")
            && err.contains("shown once"),
        "{err}"
    );
}

#[test]
fn user_create_list_show_and_lifecycle() {
    let cli = Cli::new();
    cli.init();
    let generated = cli.json(
        &[
            "user",
            "create",
            "gen@example.com",
            "--name",
            "Gen",
            "--username",
            "gen",
        ],
        None,
    );
    assert_eq!(generated["name"], "Gen");
    assert_eq!(generated["username"], "gen");
    assert_eq!(generated["must_change_password"], true);
    let pw = generated["password"].as_str().unwrap().to_string();
    cli.expect(
        &["user", "check-password", "gen", "--password-stdin"],
        Some(&pw),
        0,
    );

    let given = cli.json(
        &[
            "user",
            "create",
            "Ann@Example.com",
            "--admin",
            "--password-stdin",
        ],
        Some("ann password\n"),
    );
    assert!(given.get("password").is_none());
    assert_eq!(given["is_admin"], true);
    assert_eq!(given["email"], "Ann@Example.com");
    let id = given["id"].as_u64().unwrap().to_string();

    let (_, err) = cli.expect(
        &["user", "create", "ann@example.com", "--password-stdin"],
        Some("whatever123\n"),
        1,
    );
    assert!(
        err.contains("ann@example.com") && err.contains("exists"),
        "{err}"
    );
    let (_, err) = cli.expect(
        &["user", "create", "bad-email", "--password-stdin"],
        Some("whatever123\n"),
        1,
    );
    assert!(err.contains("invalid email"), "{err}");
    let (_, err) = cli.expect(
        &["user", "create", "short@example.com", "--password-stdin"],
        Some("short\n"),
        1,
    );
    assert!(err.contains("at least 8"), "{err}");

    let shown = cli.json(&["user", "show", "ANN@example.com"], None);
    assert_eq!(shown["id"].as_u64().unwrap().to_string(), id);
    assert!(shown.get("password_hash").is_none());
    assert_eq!(
        cli.json(&["user", "show", &id], None)["email"],
        "Ann@Example.com"
    );

    cli.expect(
        &["user", "set-password", &id, "--password-stdin"],
        Some("new ann password\n"),
        0,
    );
    cli.expect(
        &["user", "check-password", &id, "--password-stdin"],
        Some("new ann password\n"),
        0,
    );
    cli.expect(
        &["user", "check-password", &id, "--password-stdin"],
        Some("ann password\n"),
        1,
    );

    // The only administrator is kept: disabling or deleting them, or taking the role away,
    // is refused until another user is one.
    for args in [
        vec!["user", "disable", &id],
        vec!["user", "delete", &id],
        vec!["role", "revoke", &id, "admin"],
    ] {
        let (_, err) = cli.expect(&args, None, 1);
        assert!(err.contains("last active administrator"), "{args:?}: {err}");
    }
    cli.expect(&["role", "grant", "gen", "admin"], None, 0);
    assert_eq!(
        cli.json(&["user", "disable", &id], None)["is_active"],
        false
    );
    cli.expect(&["role", "revoke", "gen", "admin"], None, 1);
    assert_eq!(
        cli.json(&["user", "list"], None).as_array().unwrap().len(),
        1
    );
    assert_eq!(
        cli.json(&["user", "list", "--all"], None)
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (out, _) = cli.expect(
        &["user", "check-password", &id, "--password-stdin"],
        Some("new ann password\n"),
        0,
    );
    // The password is right, and the operator learns why it does not log in: the account
    // is disabled.
    assert!(out.contains("is disabled"), "{out}");
    assert_eq!(
        cli.json(&["user", "enable", "ann@example.com"], None)["is_active"],
        true
    );
    let (table, _) = cli.expect(&["user", "list"], None, 0);
    assert!(
        table.starts_with("id") && table.contains("Ann@Example.com"),
        "{table}"
    );
    let (_, err) = cli.expect(&["user", "show", "404"], None, 1);
    assert!(
        err.contains(
            "user 404 (no user has this id; name a user by id, email or username) not found"
        ),
        "{err}"
    );
}

/// `user check-password` is an operator's check, not a login: wrong passwords neither count
/// toward the lockout nor lock the user out, each check is audited as `password_checked`
/// (not as an anonymous failed login), and an unknown user is "not found".
#[test]
fn check_password_neither_locks_out_nor_reads_as_an_attack() {
    let cli = Cli::new();
    cli.init();
    cli.json(
        &["user", "create", "a@example.com", "--password-stdin"],
        Some("right password\n"),
    );
    for _ in 0..11 {
        let (_, err) = cli.expect(
            &[
                "user",
                "check-password",
                "a@example.com",
                "--password-stdin",
            ],
            Some("wrong password\n"),
            1,
        );
        assert!(err.contains("the password is not user"), "{err}");
    }
    let shown = cli.json(&["user", "show", "a@example.com"], None);
    assert_eq!(shown["locked_until"], serde_json::Value::Null, "{shown}");
    cli.expect(
        &["login", "a@example.com", "--password-stdin"],
        Some("right password\n"),
        0,
    );
    let audit = cli.json(&["audit", "list", "--limit", "1000"], None);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "password_checked").count(),
        11
    );
    assert!(!actions.contains(&"login_failed"), "{actions:?}");
    for who in ["b@example.com", "999"] {
        let (_, err) = cli.expect(
            &["user", "check-password", who, "--password-stdin"],
            Some("wrong password\n"),
            1,
        );
        assert!(
            err.contains(&format!("user {who} (no user has this ")),
            "{err}"
        );
    }
}

#[test]
fn user_create_with_an_invite_consumes_it() {
    let cli = Cli::new();
    cli.init();
    let inv = cli.json(&["invite", "create"], None);
    let code = inv[0]["code"].as_str().unwrap();
    cli.json(
        &[
            "user",
            "create",
            "a@example.com",
            "--invite",
            code,
            "--password-stdin",
        ],
        Some("password one\n"),
    );
    let (_, err) = cli.expect(
        &[
            "user",
            "create",
            "b@example.com",
            "--invite",
            code,
            "--password-stdin",
        ],
        Some("password two\n"),
        1,
    );
    assert!(err.contains("used 1 of 1"), "{err}");
    let all = cli.json(&["invite", "list", "--all"], None);
    assert_eq!(all[0]["status"], "used_up");
    assert_eq!(all[0]["used_by"], serde_json::json!([1]));
    assert_eq!(
        cli.json(&["user", "list"], None).as_array().unwrap().len(),
        1
    );
}

/// The origin every `redkeep` command records: the CLI and the uid that ran it.
fn cli_origin(cli: &Cli) -> String {
    use std::os::unix::fs::MetadataExt;
    // (The temp dir was made by this process, whose uid the commands it starts run as.)
    let uid = std::fs::metadata(cli.dir.path()).unwrap().uid();
    format!("redkeep CLI, uid {uid}")
}

/// Every change a `redkeep` command makes is recorded with its origin, told apart from the
/// application's own changes (which record none); the origin shows in both listings and
/// survives an export and an import.
#[test]
fn audit_events_of_cli_commands_name_their_origin() {
    let cli = Cli::new();
    cli.init();
    let ann = cli.json(
        &["user", "create", "ann@example.com", "--password-stdin"],
        Some("pass word 1\n"),
    )["id"]
        .as_u64()
        .unwrap();
    cli.expect(&["role", "grant", "ann@example.com", "admin"], None, 0);
    cli.expect(&["user", "disable", "ann@example.com"], None, 1);
    // The application's own change, made through the library.
    let app = {
        let rk = redkeep::Redkeep::open(cli.data(), cli.options()).unwrap();
        rk.users()
            .create(redkeep::NewUser {
                email: "app@example.com".into(),
                ..redkeep::NewUser::default()
            })
            .unwrap()
            .user
            .id
    };
    let origin = cli_origin(&cli);
    let events = cli.json(&["audit", "list", "--limit", "1000"], None);
    let events = events.as_array().unwrap();
    assert!(events.len() >= 5, "{events:?}");
    for e in events {
        if e["subject_user"] == app {
            assert_eq!(e["origin"], Value::Null, "{e}");
        } else {
            assert_eq!(e["origin"], origin.as_str(), "{e}");
        }
    }
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "role_granted" && e["subject_user"] == ann)
    );
    let (out, _) = cli.expect(&["audit", "list"], None, 0);
    let header = out.lines().next().unwrap();
    assert!(
        header.contains(" actor ") && header.contains(" origin "),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("role_granted") && l.contains(&origin)),
        "{out}"
    );
    // Through an export and an import, every event keeps its origin (or none).
    let file = cli.dir.path().join("all.jsonl");
    cli.expect(&["export", "-o", file.to_str().unwrap()], None, 0);
    let copy = Cli::new();
    copy.expect(&["import", file.to_str().unwrap()], None, 0);
    let imported = copy.json(&["audit", "list", "--limit", "1000"], None);
    let of = |list: &[Value]| -> Vec<(u64, Value)> {
        list.iter()
            .map(|e| (e["seq"].as_u64().unwrap(), e["origin"].clone()))
            .collect()
    };
    let imported = imported.as_array().unwrap();
    let kept: Vec<_> = of(imported)
        .into_iter()
        .filter(|(seq, _)| events.iter().any(|e| e["seq"] == *seq))
        .collect();
    assert_eq!(kept, of(events));
}

/// `-v` says which store a command opened and how, `-vv` adds the command and how long it
/// took; no level shows a password or token read from stdin, nor a store URL's password.
#[test]
fn verbose_runs_say_what_was_opened_and_never_a_secret() {
    let cli = Cli::new();
    cli.init();
    let password = "pass word 1 not to be seen";
    let run = |args: &[&str], stdin: Option<&str>| -> (String, String) {
        let mut c = cli.cmd(args);
        c.env_remove("RUST_LOG");
        if let Some(s) = stdin {
            c.write_stdin(s);
        }
        let out = c.output().unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{args:?}: {e}");
        (o, e)
    };
    let (_, err) = run(
        &[
            "-v",
            "user",
            "create",
            "ann@example.com",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    );
    let (engine, place) = match &cli.store {
        // The server, then the schema (the URL is shown without a password).
        Some(_) => ("PostgreSQL", String::new()),
        None => (
            "redb",
            cli.data().join("redkeep.redb").display().to_string(),
        ),
    };
    assert!(
        err.contains(&format!("opened the store {place}"))
            && err.contains(&format!("({engine}, shared) in this process")),
        "{err}"
    );
    assert_eq!(
        cli.store.is_some(),
        err.contains(") (PostgreSQL, "),
        "{err}"
    );
    assert!(!err.contains("running `"), "debug lines at -v: {err}");
    let (_, err) = run(&["-vv", "user", "list"], None);
    if cli.store.is_none() {
        assert!(err.contains("(redb, read-only)"), "{err}");
    }
    assert!(err.contains("running `redkeep user list`"), "{err}");
    assert!(err.contains("`redkeep user list` ended after "), "{err}");
    // Every level, every command that reads a secret: none of it on stderr.
    let (token, err) = run(
        &["-vvv", "login", "ann@example.com", "--password-stdin"],
        Some(&format!("{password}\n")),
    );
    let token = token.trim().to_string();
    assert!(token.starts_with("rks_"), "{token}");
    let mut logs = err;
    for (args, stdin) in [
        (
            vec!["-vvv", "session", "validate", "--token-stdin"],
            format!("{token}\n"),
        ),
        (
            vec![
                "-vvv",
                "user",
                "check-password",
                "ann@example.com",
                "--password-stdin",
            ],
            format!("{password}\n"),
        ),
        (
            vec!["-vvv", "session", "revoke", "--token-stdin"],
            format!("{token}\n"),
        ),
        (
            vec![
                "-vvv",
                "user",
                "set-password",
                "ann@example.com",
                "--password-stdin",
            ],
            format!("{password} 2\n"),
        ),
    ] {
        let (_, err) = run(&args, Some(&stdin));
        assert!(err.contains("opened the store"), "{args:?}: {err}");
        logs.push_str(&err);
    }
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "{logs}");
    for secret in [password, token.as_str(), &token[12..]] {
        assert!(!logs.contains(secret), "{secret:?} in {logs}");
    }
    if let Some(url) = &cli.store
        && redkeep::store::redact(url) != *url
    {
        assert!(!logs.contains(url.as_str()), "{logs}");
    }
}

#[test]
fn check_reports_counts_and_problems() {
    let cli = Cli::new();
    cli.init();
    cli.json(
        &["user", "create", "a@example.com", "--password-stdin"],
        Some("password one\n"),
    );
    let v = cli.json(&["check"], None);
    assert_eq!(v["ok"], true);
    assert_eq!(v["tables"]["users"]["records"], 1);
    assert_eq!(v["tables"]["users"]["index_entries"], 3);
    assert_eq!(v["problems"], serde_json::json!([]));
    // Plant a stale index entry: check fails with exit 1, --repair fixes it.
    common::plant_entry(
        cli.store.as_deref(),
        &cli.data(),
        "i:users:email",
        b"zz\0\0",
        &9u64.to_be_bytes(),
    );
    let (out, _) = cli.expect(&["check", "--json"], None, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1);
    let (out, _) = cli.expect(&["check", "--repair"], None, 0);
    assert!(
        out.contains("fixed:") && out.contains("ok: no problems"),
        "{out}"
    );
}

#[test]
fn gallery_and_workspace_commands() {
    let cli = Cli::new();
    cli.init();
    let u = cli.json(
        &["user", "create", "a@example.com", "--password-stdin"],
        Some("password one\n"),
    );
    let id = u["id"].as_u64().unwrap();
    let added = cli.json(
        &["gallery", "add", "a@example.com", "-"],
        Some("{\"title\": \"Sunset\"}"),
    );
    assert_eq!(added["user_id"], id);
    assert_eq!(added["piece"], 1);
    assert!(
        added["path"]
            .as_str()
            .unwrap()
            .ends_with("gallery/piece_000001.json")
    );
    let file = cli.dir.path().join("piece.json");
    std::fs::write(&file, "{\"title\": \"Harbour\"}").unwrap();
    assert_eq!(
        cli.json(
            &["gallery", "add", &id.to_string(), file.to_str().unwrap()],
            None
        )["piece"],
        2
    );
    let (out, _) = cli.expect(&["gallery", "add", "1", "-"], Some("not json"), 1);
    assert!(out.is_empty());
    let list = cli.json(&["gallery", "list", "a@example.com"], None);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        cli.json(&["gallery", "show", "a@example.com", "2"], None)["title"],
        "Harbour"
    );
    assert_eq!(
        cli.json(&["gallery", "remove", "a@example.com", "1"], None)["removed"],
        true
    );
    let (_, err) = cli.expect(&["gallery", "show", "a@example.com", "1"], None, 1);
    assert!(err.contains("piece 1 of user"), "{err}");
    // For people, a piece and a workspace are pretty JSON over several lines.
    for args in [
        &["gallery", "show", "a@example.com", "2"][..],
        &["workspace", "show", "a@example.com"],
    ] {
        let (out, _) = cli.expect(args, None, 0);
        assert!(
            out.lines().any(|l| l.trim_start().starts_with('"')) && !out.contains("\\u{a}"),
            "{args:?}: {out}"
        );
    }

    let uw = cli.json(&["user", "workspace", "a@example.com"], None);
    assert_eq!(uw["user"]["email"], "a@example.com");
    assert_eq!(uw["workspace"]["piece_count"], 1);
    assert_eq!(uw["workspace"]["pieces"], 1);
    let ws = cli.json(&["workspace", "show", "a@example.com"], None);
    assert_eq!(ws["workspace"]["piece_count"], 1);
    let all = cli.json(&["workspace", "list"], None);
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(
        cli.json(&["workspace", "list", "--orphans"], None),
        serde_json::json!([])
    );

    // Deleting the user moves the folder to the trash; it is then no orphan either.
    let deleted = cli.json(&["user", "delete", "a@example.com"], None);
    assert!(deleted["trash"].as_str().unwrap().contains("trash"));
    assert!(
        std::path::Path::new(deleted["trash"].as_str().unwrap())
            .join("gallery/piece_000002.json")
            .exists()
    );
    assert_eq!(
        cli.json(&["workspace", "list"], None),
        serde_json::json!([])
    );
    assert_eq!(cli.json(&["check"], None)["ok"], true);
}

#[test]
fn check_reports_workspace_problems_and_repair_fixes_counts() {
    let cli = Cli::new();
    cli.init();
    cli.json(
        &["user", "create", "a@example.com", "--password-stdin"],
        Some("password one\n"),
    );
    cli.json(&["gallery", "add", "1", "-"], Some("{}"));
    let users = cli.data().join("workspaces/users");
    std::fs::create_dir(users.join("42")).unwrap();
    std::fs::write(users.join("1/gallery/piece_000009.json"), "{}").unwrap();
    let orphans = cli.json(&["workspace", "list", "--orphans"], None);
    assert_eq!(orphans[0]["user_id"], 42);
    let (out, _) = cli.expect(&["check", "--json"], None, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    let problems: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("user 42: the folder has no user")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains(".pieces says 1 pieces") && p.contains("the gallery holds 2")),
        "{problems:?}"
    );
    // The repair fixes the count and moves the orphan to the trash.
    let v = cli.json(&["check", "--repair"], None);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    let repaired = v["repaired"].to_string();
    assert!(
        repaired.contains(
            "said 1 pieces of 2 bytes with number 2 next; set it to the gallery's 2 pieces \
             of 4 bytes with number 10 next"
        ),
        "{v}"
    );
    assert!(repaired.contains("moved to"), "{v}");
    assert!(!users.join("42").exists());
    assert!(
        cli.data()
            .join("workspaces/trash")
            .read_dir()
            .unwrap()
            .count()
            == 1
    );
    // A user without a folder is fine: it is made at their first write.
    std::fs::remove_dir_all(users.join("1")).unwrap();
    cli.expect(&["check"], None, 0);
    assert_eq!(
        cli.json(&["user", "workspace", "1"], None)["workspace"]["pieces"],
        0
    );
}

/// `REDKEEP_ARGON2` below OWASP's settings is taken (the test suites use it) but a command
/// that makes a password hash with it says so on stderr, after its output; settings of
/// OWASP's strength, or a command that hashes nothing, say nothing.
#[test]
fn cheap_argon2_settings_are_warned_about_where_a_hash_is_made() {
    let cli = Cli::new();
    let warned = |err: &str| err.contains("warning: REDKEEP_ARGON2=m=8,t=1,p=1 is below OWASP");
    let (_, err) = cli.expect(&["init"], None, 0);
    assert!(warned(&err), "{err}");
    assert!(err.trim_end().ends_with("use it for tests only"), "{err}");
    let (_, err) = cli.expect(
        &["user", "create", "a@example.com", "--password-stdin"],
        Some("correct horse\n"),
        0,
    );
    assert!(warned(&err), "{err}");
    let (_, err) = cli.expect(
        &["user", "set-password", "a@example.com", "--password-stdin"],
        Some("another horse\n"),
        0,
    );
    assert!(warned(&err), "{err}");
    let (_, err) = cli.expect(&["user", "list"], None, 0);
    assert!(!err.contains("warning"), "{err}");
    // A refused command made no hash: its one error line only.
    let (_, err) = cli.expect(
        &["user", "create", "not an email", "--password-stdin"],
        Some("correct horse\n"),
        1,
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // OWASP's strength in another of its forms (less memory, more passes): no warning.
    let mut c = cli.cmd(&["user", "create", "b@example.com", "--password-stdin"]);
    c.env("REDKEEP_ARGON2", "m=7168,t=5,p=1")
        .write_stdin("correct horse\n");
    let out = c.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{out:?}"
    );
}

/// A global option given both before and after the command is refused (exit 2, nothing
/// done), as clap refuses it twice at one level: it took the last one, so `redkeep
/// --data-dir A user delete X --data-dir B` deleted X from B. A value after `--` is no
/// option.
#[test]
fn a_global_option_given_at_two_levels_is_refused() {
    let cli = Cli::new();
    cli.init();
    cli.json(&["user", "create", "ann@example.com"], None);
    let other = cli.dir.path().join("other");
    let data = cli.data().display().to_string();
    let (_, err) = cli.expect(
        &[
            "--data-dir",
            &other.display().to_string(),
            "user",
            "delete",
            "ann@example.com",
            "--data-dir",
            &data,
        ],
        None,
        2,
    );
    assert_eq!(
        err,
        "error: --data-dir is given more than once (before and after the command, say); give \
         it once, so that it is clear which one counts\n"
    );
    let (_, err) = cli.expect(
        &["--max-pieces=5", "user", "list", "--max-pieces", "6"],
        None,
        2,
    );
    assert!(
        err.contains("--max-pieces is given more than once"),
        "{err}"
    );
    let users = cli.json(&["user", "list"], None);
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
    // After `--`, the same words are values.
    let (_, err) = cli.expect(&["user", "create", "--", "--data-dir"], None, 1);
    assert!(err.contains("has no @"), "{err}");
}
