//! The CLI of migrations, backup, restore, export, import, reset and stats.
#![cfg(feature = "cli")]

mod common;

use std::os::unix::ffi::OsStrExt;

use common::Cli;
use serde_json::json;

fn populated() -> Cli {
    let cli = Cli::new();
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
    );
    cli.json(&["invite", "create", "-c", "2"], None);
    cli.json(
        &["login", "ann@example.com", "--password-stdin"],
        Some("ann password\n"),
    );
    cli
}

/// A store whose recorded schema version reads older than its records are (a damaged byte)
/// stops `migrate up` at the first record it cannot read as that version wrote it; `check`
/// reads records as today's and would send the operator back to `migrate up`, so the error
/// points to salvage, which takes the version the records show.
#[test]
fn migrate_up_stopped_by_a_record_it_cannot_read_points_to_salvage() {
    let cli = Cli::new();
    cli.expect(&["init", "--no-admin"], None, 0);
    cli.expect(
        &["user", "create", "ann@example.com"],
        Some("ann password\n"),
        0,
    );
    common::plant_entry(
        None,
        &cli.data(),
        "meta",
        b"schema_version",
        &2u64.to_be_bytes(),
    );
    let (_, err) = cli.expect(&["migrate", "up"], None, 1);
    assert!(
        err.contains("`migrate up` stopped at record 1 of table users")
            && err.contains("redkeep salvage --to NEW_DIR"),
        "{err}"
    );
    let to = cli.dir.path().join("saved");
    let (out, _) = cli.expect(&["salvage", "--to", to.to_str().unwrap()], None, 0);
    assert!(
        out.contains("the schema version read 2, but the records are those of version 3"),
        "{out}"
    );
}

#[test]
fn migrate_status_and_up_on_an_old_store() {
    let cli = Cli::new();
    std::fs::create_dir_all(cli.data()).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/v1-with-users/redkeep.redb");
    std::fs::copy(src, cli.data().join("redkeep.redb")).unwrap();
    let (_, err) = cli.expect(&["user", "list"], None, 1);
    assert!(err.contains("redkeep migrate up"), "{err}");
    // A backup of it checks the file's pages, and says its records wait for `migrate up`.
    let backup = cli.dir.path().join("old.rkb");
    let (out, _) = cli.expect(&["backup", backup.to_str().unwrap()], None, 0);
    assert!(
        out.contains("passes redb's page check") && out.contains("schema version 1"),
        "{out}"
    );
    let status = cli.json(&["migrate", "status"], None);
    assert_eq!(status["current"], 1);
    assert_eq!(status["pending"].as_array().unwrap().len(), 2);
    let up = cli.json(&["migrate", "up"], None);
    assert_eq!(up["applied"][0]["version"], 2);
    assert_eq!(up["applied"][1]["version"], 3);
    assert!(std::path::Path::new(up["backup"].as_str().unwrap()).exists());
    let again = cli.json(&["migrate", "up"], None);
    assert_eq!(again["applied"], json!([]));
    assert_eq!(cli.json(&["migrate", "status"], None)["pending"], json!([]));
    assert_eq!(
        cli.json(&["user", "orgs", "bob@example.com"], None)[0]["slug"],
        "default"
    );
    cli.expect(&["check", "--repair"], None, 0);
}

/// The undo command of a restore or reset's JSON: `undo` for a store in the data dir; for a
/// store on a server, which the command cannot name (its URL may hold a password),
/// `undo_without_store` with `undo_needs_same_store`, and no `undo` a script could run by
/// mistake.
fn undo_of<'a>(cli: &Cli, r: &'a serde_json::Value) -> &'a str {
    if cli.store.is_some() {
        assert_eq!(r["undo_needs_same_store"], true, "{r}");
        assert!(r.get("undo").is_none(), "{r}");
        r["undo_without_store"].as_str().unwrap()
    } else {
        assert!(r.get("undo_needs_same_store").is_none(), "{r}");
        r["undo"].as_str().unwrap()
    }
}

#[test]
fn backup_restore_and_stats() {
    let cli = populated();
    let backup = cli.dir.path().join("backup.tar");
    let b = cli.json(&["backup", backup.to_str().unwrap()], None);
    assert_eq!(b["ok"], true);
    let (_, err) = cli.expect(&["backup", backup.to_str().unwrap()], None, 1);
    assert!(err.contains("already exists"), "{err}");
    cli.json(
        &["user", "create", "late@example.com", "--password-stdin"],
        Some("late password\n"),
    );
    let (_, err) = cli.expect(&["restore", backup.to_str().unwrap()], None, 1);
    assert!(err.contains("--force"), "{err}");
    let r = cli.json(&["restore", backup.to_str().unwrap(), "--force"], None);
    assert!(std::path::Path::new(r["safety_copy"].as_str().unwrap()).exists());
    // The JSON holds what the text says: the undo as a command, whether `migrate up` is
    // needed, and that revoked logins work again.
    let undo = undo_of(&cli, &r);
    assert!(
        undo.starts_with("redkeep --data-dir ") && undo.contains(" restore --force --folders "),
        "{r}"
    );
    assert_eq!(r["migrate_up_needed"], false, "{r}");
    assert!(r["warning"].as_str().unwrap().contains("work again"), "{r}");
    cli.expect(&["user", "show", "late@example.com"], None, 1);
    let garbage = cli.dir.path().join("garbage.redb");
    std::fs::write(&garbage, b"nope").unwrap();
    cli.expect(&["restore", garbage.to_str().unwrap(), "--force"], None, 1);
    // A folder given as the backup, and a file given as the data dir, say what to give.
    let (_, err) = cli.expect(
        &["restore", cli.dir.path().to_str().unwrap(), "--force"],
        None,
        1,
    );
    assert!(err.contains("is a folder; give the backup file"), "{err}");
    let file_dir = garbage.to_str().unwrap();
    for args in [
        &["--data-dir", file_dir, "status"][..],
        &["--data-dir", file_dir, "restore", backup.to_str().unwrap()],
    ] {
        let (_, err) = cli.expect(args, None, 1);
        assert!(err.contains("is a file"), "{args:?}: {err}");
    }
    cli.json(&["user", "show", "ann@example.com"], None);
    let stats = cli.json(&["stats"], None);
    assert_eq!(stats["tables"]["users"]["records"], 1); // ann; `late` came after the backup
    assert_eq!(stats["tables"]["invites"]["records"], 2);
    assert!(stats["file_bytes"].as_u64().unwrap() > 0);
    let (table, _) = cli.expect(&["stats"], None, 0);
    // The footer names the file, or the server's store (which is no file).
    let place = if cli.store.is_some() {
        "store "
    } else {
        "file "
    };
    assert!(
        table.contains("index entries") && table.contains(place),
        "{table}"
    );
    // A new machine: restore creates the store.
    let fresh = Cli::new();
    fresh.json(&["restore", backup.to_str().unwrap()], None);
    assert_eq!(
        fresh
            .json(&["user", "list"], None)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A plain store (the safety copy) restored where there are no folders says so, and
    // claims to keep none.
    let safety = r["safety_copy"].as_str().unwrap();
    let bare = Cli::new();
    let (out, _) = bare.expect(&["restore", safety], None, 0);
    assert!(
        out.contains("this data dir holds no workspace folders") && !out.contains("were kept"),
        "{out}"
    );
    std::fs::create_dir_all(bare.data().join("workspaces/users/1")).unwrap();
    let (out, _) = bare.expect(&["restore", safety, "--force"], None, 0);
    assert!(out.contains("the workspace folders were kept"), "{out}");
}

/// A refused import into a data dir without a store: the store it made is taken back, so the
/// data dir is as before and a next import or init starts clean (a PostgreSQL schema stays,
/// empty).
fn imported_nothing(cli: &Cli, what: &str) {
    if cli.store.is_none() {
        assert!(
            !cli.data().exists(),
            "{what}: a refused import left its store"
        );
        let (_, err) = cli.expect(&["user", "list"], None, 1);
        assert!(err.contains("redkeep init"), "{what}: {err}");
    } else {
        assert_eq!(cli.json(&["user", "list"], None), json!([]), "{what}");
    }
}

#[test]
fn export_import_round_trip_and_bad_lines() {
    let cli = populated();
    let file = cli.dir.path().join("export.jsonl");
    // `-o -` is stdout, as without `-o`: no file named `-` appears.
    let to_stdout = cli
        .cmd(&["--json", "export", "-o", "-"])
        .current_dir(cli.dir.path())
        .output()
        .unwrap();
    assert!(to_stdout.status.success());
    let plain = cli.cmd(&["--json", "export"]).output().unwrap();
    assert_eq!(to_stdout.stdout, plain.stdout);
    assert!(!cli.dir.path().join("-").exists());
    let summary = cli.json(&["export", "-o", file.to_str().unwrap()], None);
    assert!(summary["lines"].as_u64().unwrap() > 5);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (stdout, _) = cli.expect(&["export"], None, 0);
    assert_eq!(stdout.as_bytes(), std::fs::read(&file).unwrap().as_slice());
    let other = Cli::new();
    other.json(&["import", file.to_str().unwrap()], None);
    let (again, _) = other.expect(&["export"], None, 0);
    assert_eq!(again, stdout);
    let third = Cli::new();
    third.init();
    third.json(&["import", "-"], Some(&stdout));
    // A bad line is reported by number and nothing is imported.
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines[2] = "{\"table\":\"nope\",\"record\":{}}";
    let bad = Cli::new();
    let (_, err) = bad.expect(&["import", "-"], Some(&lines.join("\n")), 1);
    assert!(
        err.contains("line 3") && err.contains("unknown table"),
        "{err}"
    );
    imported_nothing(&bad, "a bad line");
    let (_, err) = cli.expect(&["import", file.to_str().unwrap()], None, 1);
    assert!(err.contains("holds data"), "{err}");

    // The export ends with a line counting the lines before it, so one cut short (at a line
    // boundary too), missing a line or with a line added is refused and imports nothing.
    let lines: Vec<&str> = stdout.lines().collect();
    let end: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(
        end,
        json!({"redkeep_export_end": true, "lines": lines.len() - 1})
    );
    let without = |i: usize| {
        let mut l = lines.clone();
        l.remove(i);
        l.join("\n")
    };
    let cut = lines[..lines.len() - 3].join("\n");
    let extra = format!("{stdout}{}\n", lines[1]);
    for (what, text, says) in [
        ("cut short", cut.as_str(), "without its end line"),
        (
            "without its end line",
            &without(lines.len() - 1),
            "without its end line",
        ),
        ("missing a line", &without(3), "lines are missing"),
        (
            "with a line after its end",
            &extra,
            "after the export's end",
        ),
    ] {
        let target = Cli::new();
        let (_, err) = target.expect(&["import", "-"], Some(text), 1);
        assert!(err.contains(says), "{what}: {err}");
        imported_nothing(&target, what);
    }
    // An export of format 2 (an earlier redkeep, without the end line) is still read.
    let old = lines[..lines.len() - 1].join("\n").replacen(
        "\"redkeep_export\":3",
        "\"redkeep_export\":2",
        1,
    );
    let target = Cli::new();
    target.json(&["import", "-"], Some(&old));
    let (again, _) = target.expect(&["export"], None, 0);
    assert_eq!(again, stdout);
}

/// Hand-edited exports whose folder lines or password hashes would leave a store failing
/// `check` (or its users unable to log in) are refused before anything commits: a store
/// fresh from `init` keeps its administrator.
#[test]
fn hand_edited_folder_lines_and_hashes_are_refused_before_anything_changes() {
    let cli = populated();
    cli.json(&["user", "create", "bob@example.com"], None);
    cli.expect(
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"v\":1}"),
        0,
    );
    let (stdout, _) = cli.expect(&["export"], None, 0);
    let lines: Vec<String> = stdout.lines().map(String::from).collect();
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        lines
            .iter()
            .position(|l| pred(&serde_json::from_str(l).unwrap()))
            .unwrap()
    };
    let workspace = find(&|v| v.get("workspace").is_some());
    let piece = find(&|v| v.get("piece").is_some());
    let ann = cli.json(&["user", "show", "ann@example.com"], None);
    let ann_id = ann["id"].as_u64().unwrap();
    let user_line = |email: &str| find(&|v| v["table"] == "users" && v["record"]["email"] == email);
    let credential = find(&|v| v["table"] == "credentials" && v["record"]["user_id"] == ann_id);
    // Rewrites line `i` through `f` (or, with `twice`, adds a copy of it), and the end line
    // to count what is now there.
    let edited = |i: usize, twice: bool, f: &dyn Fn(&mut serde_json::Value)| {
        let mut out = lines.clone();
        let mut v: serde_json::Value = serde_json::from_str(&out[i]).unwrap();
        f(&mut v);
        if twice {
            out.insert(i + 1, v.to_string());
        } else {
            out[i] = v.to_string();
        }
        let n = out.len() - 1;
        out[n] = json!({"redkeep_export_end": true, "lines": n}).to_string();
        out.join("\n")
    };
    let bob_uid = {
        let v: serde_json::Value =
            serde_json::from_str(&lines[user_line("bob@example.com")]).unwrap();
        v["record"]["uid"].clone()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a folder line of no user",
            edited(workspace, false, &|v| v["workspace"] = json!(42)),
            "user 42 has no record",
        ),
        (
            "a second document",
            edited(workspace, true, &|_| {}),
            "a second workspace document",
        ),
        (
            "a second piece",
            edited(piece, true, &|_| {}),
            "a second piece 1",
        ),
        (
            "a removed pieces' number of 0",
            edited(workspace, false, &|v| v["trashed_up_to"] = json!(0)),
            "\"trashed_up_to\" belongs on a workspace line",
        ),
        (
            "a removed pieces' number on a piece line",
            edited(piece, false, &|v| v["trashed_up_to"] = json!(5)),
            "\"trashed_up_to\" belongs on a workspace line",
        ),
        (
            "a piece numbered below zero",
            edited(piece, false, &|v| v["piece"] = json!(-1)),
            "a piece line needs \"user\" (a user id), \"piece\" (its number, a whole number)",
        ),
        (
            "a piece numbered past what a JSON client reads exactly",
            edited(piece, false, &|v| v["piece"] = json!(u64::MAX)),
            "is outside 1 to 9007199254740991",
        ),
        (
            "a piece text that is not its doc",
            edited(piece, false, &|v| v["text"] = json!("{\"v\": 2}\n")),
            "\"text\" and \"doc\" differ",
        ),
        (
            "a piece text that is not JSON",
            edited(piece, false, &|v| v["text"] = json!("{\"v\": ")),
            "must be its JSON file",
        ),
        (
            "a piece text that is not a string",
            edited(piece, false, &|v| v["text"] = json!({"v": 1})),
            "must be a string",
        ),
        (
            "a password in plain text",
            edited(credential, false, &|v| {
                v["record"]["password_hash"] = json!("plain")
            }),
            "cannot be verified",
        ),
        (
            "an argon2 hash asking for years of work",
            edited(credential, false, &|v| {
                v["record"]["password_hash"] = json!(
                    "$argon2id$v=19$m=8,t=4000000000,p=1$5br1r7Ke1wFH6UFVLtJJ0g$qX/84hjmrtWcDGASCZurzpxhC0I8/Seu7TP54raaww0"
                )
            }),
            "asks for m=8 KiB and t=4000000000",
        ),
        (
            "two users with one uid",
            edited(user_line("ann@example.com"), false, &|v| {
                v["record"]["uid"] = bob_uid.clone()
            }),
            "share one uid",
        ),
    ];
    // A count that is off (an export taken while a piece was saved) is set to the pieces
    // the export holds, as a repair would: the store passes `check`.
    let target = Cli::new();
    let text = edited(workspace, false, &|v| v["doc"]["piece_count"] = json!(7));
    target.json(&["import", "-"], Some(&text));
    let doc = target.json(&["workspace", "show", "ann@example.com"], None);
    assert_eq!(doc["workspace"]["piece_count"], 1, "{doc}");
    target.expect(&["check"], None, 0);
    for (what, text, says) in cases {
        let target = Cli::new();
        target.expect(
            &[
                "init",
                "--admin-email",
                "boss@example.com",
                "--admin-password-stdin",
            ],
            Some("boss password 1\n"),
            0,
        );
        let (_, err) = target.expect(&["import", "-"], Some(&text), 1);
        assert!(err.contains(says), "{what}: {err}");
        assert!(err.contains("nothing was imported"), "{what}: {err}");
        target.json(&["user", "show", "boss@example.com"], None);
        target.expect(&["user", "show", "ann@example.com"], None, 1);
        target.expect(&["check"], None, 0);
    }
}

/// An import replaces only what `init` makes. A store that also holds anything an operator
/// made (a role, an org, a second user) is refused, names what it holds, and keeps it.
#[test]
fn import_refuses_a_store_holding_more_than_init_made() {
    let source = populated();
    let (export, _) = source.expect(&["export"], None, 0);
    let with_admin = |c: &Cli| {
        c.json(
            &[
                "init",
                "--admin-email",
                "admin@example.com",
                "--admin-password-stdin",
            ],
            Some("admin password 1\n"),
        );
    };
    type Setup = Box<dyn Fn(&Cli)>;
    let cases: [(&str, Setup, &str); 5] = [
        (
            "a role",
            Box::new(|c| {
                c.init();
                c.json(
                    &["role", "create", "auditors", "--permission", "audit.read"],
                    None,
                );
            }),
            "role auditors",
        ),
        (
            "an org beside the administrator's own",
            Box::new(move |c| {
                with_admin(c);
                c.json(
                    &["org", "create", "Team", "--slug", "team-x", "--owner", "1"],
                    None,
                );
            }),
            "org team-x",
        ),
        (
            "a user who is not an administrator",
            Box::new(|c| {
                c.init();
                c.json(
                    &["user", "create", "u@example.com", "--password-stdin"],
                    Some("u password 1\n"),
                );
            }),
            "not an administrator",
        ),
        (
            "the log of a user made and deleted again",
            Box::new(|c| {
                c.init();
                c.json(
                    &["user", "create", "gone@example.com", "--password-stdin"],
                    Some("gone password 1\n"),
                );
                c.json(&["user", "delete", "gone@example.com"], None);
            }),
            "audit event",
        ),
        (
            "an invite",
            Box::new(move |c| {
                with_admin(c);
                c.json(&["invite", "create"], None);
            }),
            "record(s) in table invites",
        ),
    ];
    for (what, setup, named) in cases {
        let cli = Cli::new();
        setup(&cli);
        let (before, _) = cli.expect(&["export"], None, 0);
        let (_, err) = cli.expect(&["import", "-"], Some(&export), 1);
        assert!(
            err.contains("holds data") && err.contains(named),
            "{what}: {err}"
        );
        let (after, _) = cli.expect(&["export"], None, 0);
        assert_eq!(after, before, "{what}: a refused import changed the store");
    }
    // What `init` makes alone (the administrator included) is replaced.
    let cli = Cli::new();
    with_admin(&cli);
    cli.json(&["import", "-"], Some(&export));
    let (again, _) = cli.expect(&["export"], None, 0);
    assert_eq!(again, export);
}

/// A login tried with an email no account has leaves a decoy credential (no user's, see the
/// login's docs). `check` passes over it, and an import refused for the attempt names the
/// attempt's audit row, not a credential of a user nobody has.
#[test]
fn import_and_check_pass_over_the_decoy_credential_of_a_login_with_no_account() {
    let source = populated();
    let (export, _) = source.expect(&["export"], None, 0);
    let cli = Cli::new();
    cli.json(
        &[
            "init",
            "--admin-email",
            "admin@example.com",
            "--admin-password-stdin",
        ],
        Some("admin password 1\n"),
    );
    let (_, err) = cli.expect(
        &["login", "nobody@example.com", "--password-stdin"],
        Some("a guess 1\n"),
        1,
    );
    assert!(!err.contains("nobody"), "{err}");
    cli.expect(&["check"], None, 0);
    let (_, err) = cli.expect(&["import", "-"], Some(&export), 1);
    assert!(
        err.contains("holds data") && err.contains("login_failed no account"),
        "{err}"
    );
}

#[test]
fn reset_needs_force_and_backs_up_first() {
    let cli = populated();
    let (_, err) = cli.expect(&["reset"], None, 1);
    assert!(err.contains("--force"), "{err}");
    let r = cli.json(&["reset", "--force"], None);
    assert!(std::path::Path::new(r["backup"].as_str().unwrap()).exists());
    // The JSON holds the undo command the text prints.
    let undo = undo_of(&cli, &r);
    assert!(
        undo.starts_with("redkeep --data-dir ") && undo.contains("restore --force"),
        "{r}"
    );
    assert_eq!(cli.json(&["user", "list"], None), json!([]));
    assert!(cli.json(&["init"], None)["created"].as_bool().unwrap());
}

/// Alice's private piece, saved after the backup, must never reach the next user: not after
/// a restore of the older backup, and not after a reset.
fn privacy_scenario(wipe: &[&str]) {
    let cli = populated();
    let backup = cli.dir.path().join("before-alice.tar");
    cli.json(&["backup", backup.to_str().unwrap()], None);
    cli.json(
        &["user", "create", "alice@example.com", "--password-stdin"],
        Some("alice password\n"),
    );
    cli.json(
        &["gallery", "add", "alice@example.com", "-"],
        Some(r#"{"secret": "alice's private piece"}"#),
    );
    let mut args = wipe.to_vec();
    if wipe[0] == "restore" {
        args.insert(1, backup.to_str().unwrap());
    }
    cli.json(&args, None);
    let mallory = cli.json(
        &["user", "create", "mallory@example.com", "--password-stdin"],
        Some("mallory password\n"),
    );
    let (out, err) = cli.expect(&["gallery", "show", "mallory@example.com", "1"], None, 1);
    assert!(!out.contains("alice"), "{out}");
    assert!(err.contains("not found"), "{err}");
    assert_eq!(
        cli.json(&["gallery", "list", "mallory@example.com"], None),
        json!([])
    );
    assert_ne!(mallory["id"], 2, "mallory never takes alice's id");
    // Alice's piece waits in the trash; nothing is lost and nothing leaks.
    let trash = cli.data().join("workspaces/trash");
    let found = walk(&trash)
        .iter()
        .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("alice's private piece")));
    assert!(found, "alice's piece is in {}", trash.display());
    cli.expect(&["check"], None, 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_restore_never_hands_a_users_files_to_a_new_user() {
    privacy_scenario(&["restore", "--force"]);
}

#[test]
fn a_reset_never_hands_a_users_files_to_a_new_user() {
    privacy_scenario(&["reset", "--force"]);
}

/// A plain `check` of a file with a damaged page says so and leaves every byte of it as it
/// was. (redb's page check ran in place: failing, it left the file marked as not closed
/// cleanly, `status` then blamed a killed writer, and the next command that only reads opened
/// the file for writing and rewrote the damaged file.)
#[test]
fn check_of_a_damaged_file_leaves_its_bytes_and_status_blames_no_writer() {
    let cli = populated();
    let store = cli.data().join(redkeep::STORE_FILE);
    let mut bytes = std::fs::read(&store).unwrap();
    // Every copy of Ann's email (her record, the index leaf): the live pages among them no
    // longer match the checksums their parents hold.
    let email = b"ann@example.com";
    let found: Vec<usize> = (0..bytes.len() - email.len())
        .filter(|&i| &bytes[i..i + email.len()] == email)
        .collect();
    assert!(!found.is_empty());
    for i in found {
        bytes[i] = b'x';
    }
    std::fs::write(&store, &bytes).unwrap();
    let unchanged = |after: &str| {
        assert!(
            std::fs::read(&store).unwrap() == bytes,
            "{after} changed the damaged file"
        );
    };
    let (out, _) = cli.expect(&["check"], None, 1);
    assert!(
        out.contains("the file: the store") && out.contains("is damaged"),
        "{out}"
    );
    unchanged("check");
    let (status, _) = cli.expect(&["status"], None, 0);
    assert!(status.starts_with("the store is free"), "{status}");
    assert!(!status.contains("not closed cleanly"), "{status}");
    for args in [&["stats"][..], &["check"]] {
        cli.cmd(args).output().unwrap();
        unchanged(args[0]);
    }
    // Nothing of the copy is left beside the store.
    let mut left: Vec<_> = std::fs::read_dir(cli.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, [redkeep::STORE_FILE, "redkeep.store", "workspaces"]);

    // A file marked as not closed cleanly: `status` says so without guessing who left it.
    bytes[9] |= 0x02;
    std::fs::write(&store, &bytes).unwrap();
    let (status, _) = cli.expect(&["status"], None, 0);
    assert!(
        status.contains("marked as not closed cleanly") && status.contains("does not say which"),
        "{status}"
    );
    assert!(!status.contains("its last writer stopped"), "{status}");
}

#[test]
fn check_reports_a_damaged_store_and_salvage_copies_what_reads() {
    use redb::TableDefinition;
    let cli = populated();
    let ann = cli.json(&["user", "show", "ann@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    cli.json(
        &["user", "create", "bob@example.com", "--password-stdin"],
        Some("bob password\n"),
    );
    // A piece of Bob's, saved long ago: the copy keeps its time.
    cli.expect(&["gallery", "add", "bob@example.com", "-"], Some("{}"), 0);
    let bob = cli.json(&["user", "show", "bob@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    let piece = format!("workspaces/users/{bob}/gallery/piece_000001.json");
    let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(cli.data().join(&piece))
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let store = cli.data().join(redkeep::STORE_FILE);
    {
        // Ann's record becomes bytes nothing decodes.
        let db = redb::Database::open(&store).unwrap();
        let tx = db.begin_write().unwrap();
        let users: TableDefinition<&[u8], &[u8]> = TableDefinition::new("r:users");
        tx.open_table(users)
            .unwrap()
            .insert(&ann.to_be_bytes()[..], &[2u8, 1, 0xFF, 0x13][..])
            .unwrap();
        tx.commit().unwrap();
    }
    let (out, err) = cli.expect(&["check"], None, 1);
    assert!(out.contains("quarantine:users"), "{out}");
    // The exit code's reason on stderr too, in one line.
    assert_eq!(
        err,
        "error: the check found problems, listed in the report\n"
    );

    let before = std::fs::read(&store).unwrap();
    let to = cli.dir.path().join("saved");
    let to_arg = to.to_str().unwrap();
    // Ann's account is not in the copy: the salvage fails, saying so (a script that moves
    // over on success would lose it unseen).
    let (out, err) = cli.expect(&["salvage", "--to", to_arg], None, 1);
    let copied = std::fs::metadata(to.join(&piece))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(copied, long_ago);
    assert_eq!(
        err,
        "error: some records were set aside or may be damaged; check each one the report lists\n"
    );
    // Both records read, one of them not in the copy.
    assert!(out.contains("users: 2 read, 1 in the copy"), "{out}");
    assert!(
        out.contains(&format!(
            "check by hand: record {ann} of table users is corrupt"
        )) && out.contains("moved to quarantine:users, so the copy's users table lacks it"),
        "{out}"
    );
    assert!(
        out.contains(
            "`redkeep check` is clean on the copy, but 1 record(s) in it need checking by hand"
        ),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&store).unwrap(),
        before,
        "salvage wrote the source"
    );
    let saved = |args: &[&str], code| {
        let mut c = cli.cmd(args);
        c.env("REDKEEP_DATA_DIR", &to);
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    saved(&["check"], 0);
    assert!(saved(&["user", "list"], 0).contains("bob@example.com"));
    // The bytes it set aside are there to read, where it said.
    let aside = saved(&["inspect", "dump", "quarantine:users"], 0);
    assert!(
        aside.contains(&format!("\"key\": \"{ann}\"")) && aside.contains("\"bytes\": 4"),
        "{aside}"
    );
    // An export carries them, and an import brings them back.
    let exported = saved(&["export"], 0);
    assert!(exported.contains("quarantine:users"));
    let other = Cli::new();
    other.expect(&["import", "-"], Some(&exported), 0);
    let (again, _) = other.expect(&["inspect", "dump", "quarantine:users"], None, 0);
    assert_eq!(again, aside);
    // Bob logs in with his password in the new store.
    let mut login = cli.cmd(&["login", "bob@example.com", "--password-stdin"]);
    login
        .env("REDKEEP_DATA_DIR", &to)
        .write_stdin("bob password\n");
    assert!(login.output().unwrap().status.success());

    // Never over an existing store.
    let (_, err) = cli.expect(&["salvage", "--to", to_arg], None, 1);
    assert!(err.contains("already holds a store"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // A file cut to its first page: nothing can be read, so nothing is made.
    std::fs::write(&store, &before[..4096]).unwrap();
    let (_, err) = cli.expect(&["check"], None, 1);
    assert!(
        err.contains("cannot be opened")
            && err.contains("restore a backup")
            && !err.contains("salvage"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Any other command gives the same way out, not a `check` that cannot open it either.
    let (_, err) = cli.expect(&["user", "list"], None, 1);
    assert!(
        err.contains("cannot be opened")
            && err.contains("restore a backup")
            && !err.contains("redkeep check"),
        "{err}"
    );
    // `status` describes it, with the same way out, and fails (a health check sees it).
    let (out, _) = cli.expect(&["status"], None, 1);
    assert!(
        out.contains("damaged and cannot be opened")
            && out.contains("restore a backup")
            && !out.contains("redkeep check"),
        "{out}"
    );
    let mut status = cli.cmd(&["--json", "status"]);
    let shown = status.output().unwrap();
    assert_eq!(shown.status.code(), Some(1));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["state"], "damaged", "{shown}");
    assert_eq!(shown["salvage_can_read"], false, "{shown}");
    assert!(
        shown["damage"].as_str().is_some_and(|d| !d.is_empty()),
        "{shown}"
    );
    let nothing = cli.dir.path().join("nothing");
    let (_, err) = cli.expect(&["salvage", "--to", nothing.to_str().unwrap()], None, 1);
    assert!(err.contains("restore a backup"), "{err}");
    assert!(!nothing.exists());
}

/// A store whose header is damaged (one bit of its latest commit record) opens for no
/// command, but its pages are intact: `status` and `check` point to a salvage, which reads
/// it through a mended header (the record's checksum tells the bit back) and says so.
#[test]
fn a_store_with_a_damaged_header_points_to_salvage_which_reads_it() {
    let cli = populated();
    let store = cli.data().join(redkeep::STORE_FILE);
    let mut bytes = std::fs::read(&store).unwrap();
    // The page number of the latest commit's user tree.
    let primary = 64 + 128 * usize::from(bytes[9] & 1);
    bytes[primary + 8] ^= 1;
    std::fs::write(&store, &bytes).unwrap();
    let (out, _) = cli.expect(&["status"], None, 1);
    assert!(
        out.contains("damaged and cannot be opened") && out.contains("redkeep salvage --to DIR"),
        "{out}"
    );
    let (_, err) = cli.expect(&["check"], None, 1);
    assert!(err.contains("redkeep salvage --to DIR"), "{err}");
    let to = cli.dir.path().join("saved");
    let (out, err) = cli.expect(&["salvage", "--to", to.to_str().unwrap()], None, 0);
    assert!(err.is_empty(), "{err}");
    assert!(
        out.contains(
            "changed: the store's header is damaged; it was read through a mended header, \
             at its latest commit"
        ) && out.contains("`redkeep check` is clean on the copy"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&store).unwrap(),
        bytes,
        "salvage wrote the source"
    );
    let mut list = cli.cmd(&["user", "list"]);
    list.env("REDKEEP_DATA_DIR", &to);
    let listed = list.output().unwrap();
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("ann@example.com"));

    // Damaged region counts (a high bit of the number of full regions) are advised a
    // salvage too, which recomputes them from the file's length. The salvage makes nothing
    // outside its target: no temp folder (with a copy of the store) is left in a shared
    // one if it is killed.
    bytes[primary + 8] ^= 1;
    bytes[27] ^= 0x80;
    std::fs::write(&store, &bytes).unwrap();
    let (out, _) = cli.expect(&["status"], None, 1);
    assert!(out.contains("redkeep salvage --to DIR"), "{out}");
    let to = cli.dir.path().join("saved-again");
    let mut salvage = cli.cmd(&["salvage", "--to", to.to_str().unwrap()]);
    salvage.env("TMPDIR", cli.dir.path().join("no-such-folder"));
    let salvaged = salvage.output().unwrap();
    let out = String::from_utf8_lossy(&salvaged.stdout);
    assert!(salvaged.status.success(), "{salvaged:?}");
    assert!(
        out.contains("read through a mended header, at its latest commit"),
        "{out}"
    );
    // Its working copy of the damaged store went with it.
    let left: Vec<_> = std::fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".rk-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // The other commit record damaged (its format byte), the latest one sound: redb
    // refuses the file all the same, and every command said nothing could be read, with a
    // backup as the only way out, though a salvage reads it all.
    bytes[27] ^= 0x80;
    let other = 64 + 128 * usize::from(bytes[9] & 1 == 0);
    bytes[other] ^= 1;
    std::fs::write(&store, &bytes).unwrap();
    let (out, err) = cli.expect(&["status"], None, 1);
    assert!(out.contains("redkeep salvage --to DIR"), "{out}");
    // Its exit code 1 comes with its line on stderr, as every failure's.
    assert_eq!(
        err.trim(),
        "error: the store is damaged, as the report says"
    );
    let (_, err) = cli.expect(&["user", "list"], None, 1);
    assert!(
        err.contains("redkeep salvage --to DIR") && !err.contains("nothing in it can be read"),
        "{err}"
    );
    let to = cli.dir.path().join("saved-a-third-time");
    let (out, _) = cli.expect(&["salvage", "--to", to.to_str().unwrap()], None, 0);
    assert!(
        out.contains("`redkeep check` is clean on the copy"),
        "{out}"
    );
}

/// A store file cut short (a copy that stopped part way, a full disk) opens to be read,
/// and read as far as it goes it passed for a sound one: `status` said "free" and a list
/// showed what it found. Its header tells its length: both say it is damaged, and
/// `status --json` says whether a salvage can read anything (here it can).
#[test]
fn a_store_cut_short_is_damaged_for_status_and_every_command() {
    let cli = populated();
    let store = cli.data().join(redkeep::STORE_FILE);
    let bytes = std::fs::read(&store).unwrap();
    std::fs::write(&store, &bytes[..bytes.len() - 4096]).unwrap();
    let (out, _) = cli.expect(&["status"], None, 1);
    assert!(
        out.contains("damaged and cannot be opened") && out.contains("truncated"),
        "{out}"
    );
    let shown = cli.cmd(&["--json", "status"]).output().unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["state"], "damaged", "{shown}");
    // Only its last page is gone: a salvage reads the rest, as `status` says.
    assert_eq!(shown["salvage_can_read"], true, "{shown}");
    assert!(out.contains("redkeep salvage --to DIR"), "{out}");
    let (_, err) = cli.expect(&["user", "list"], None, 1);
    assert!(err.contains("damaged"), "{err}");
    let to = cli.dir.path().join("saved");
    cli.expect(&["salvage", "--to", to.to_str().unwrap()], None, 0);
    // Whole again, it is sound again.
    std::fs::write(&store, &bytes).unwrap();
    let (out, _) = cli.expect(&["status"], None, 0);
    assert!(out.contains("the store is free"), "{out}");
}

/// A store whose registry of record shapes (in `meta`) was lost, as a damaged page loses
/// it: salvage still reads every record written by this build's types (a shape's id is a
/// hash of its field names, so a type's own list tells it), registers the shapes again in
/// the copy, and loses no account. Run in a new process, which has no shape cached.
#[test]
fn salvage_reads_records_whose_shapes_were_lost() {
    use redb::{ReadableTable, TableDefinition};
    let cli = populated();
    let store = cli.data().join(redkeep::STORE_FILE);
    let meta: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
    let shapes_of = |file: &std::path::Path| -> Vec<(Vec<u8>, Vec<u8>)> {
        let db = redb::Database::open(file).unwrap();
        let tx = db.begin_write().unwrap();
        let found = tx
            .open_table(meta)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .filter(|(k, _)| k.starts_with(b"shape:"))
            .collect();
        tx.abort().unwrap();
        found
    };
    let shapes = shapes_of(&store);
    assert!(shapes.len() > 3, "{}", shapes.len());
    {
        let db = redb::Database::open(&store).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(meta).unwrap();
            for (k, _) in &shapes {
                t.remove(&k[..]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let to = cli.dir.path().join("saved");
    let (out, err) = cli.expect(&["salvage", "--to", to.to_str().unwrap()], None, 0);
    assert!(err.is_empty(), "{err}");
    assert!(
        !out.contains("quarantine") && out.contains("`redkeep check` is clean on the copy"),
        "{out}"
    );
    let saved = |args: &[&str]| {
        let mut c = cli.cmd(args);
        c.env("REDKEEP_DATA_DIR", &to);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(saved(&["user", "list"]).contains("ann@example.com"));
    // The copy has its registry again: what reads without a type (an export, `inspect`)
    // reads.
    assert!(saved(&["export"]).contains("ann@example.com"));
    assert!(saved(&["inspect", "dump", "users"]).contains("ann@example.com"));
    // The registry is whole again, for a build whose types have other fields.
    let registered = shapes_of(&to.join(redkeep::STORE_FILE));
    for shape in &shapes {
        assert!(registered.contains(shape), "{:?} not registered", shape.0);
    }
}

/// `status` only looks: it creates no data dir where there is none, and leaves the mode of
/// one it finds (opening a store for use tightens it to 0700; a look must not).
#[test]
fn status_creates_no_data_dir_and_leaves_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    // Where there is no store, on either engine: a failure a health check sees, in one line
    // that says so and how to make one; nothing on stdout, even for `--json`.
    let look = || {
        for args in [&["status"][..], &["--json", "status"]] {
            let out = cli.cmd(args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(
                err.contains("no store") && err.contains("redkeep init"),
                "{args:?}: {err}"
            );
        }
    };
    look();
    assert!(!cli.data().exists(), "status made {}", cli.data().display());
    std::fs::create_dir(cli.data()).unwrap();
    std::fs::set_permissions(cli.data(), std::fs::Permissions::from_mode(0o755)).unwrap();
    look();
    let mode = std::fs::metadata(cli.data()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
    assert_eq!(std::fs::read_dir(cli.data()).unwrap().count(), 0);
}

/// `status` names the temp files and folders in the data dir, with their age: a young one
/// may be a backup or restore under way, an old one is a leftover that `check --repair`
/// removes.
#[test]
fn status_names_temp_folders_left_in_the_data_dir() {
    let cli = Cli::new();
    cli.init();
    let (out, _) = cli.expect(&["status"], None, 0);
    assert!(!out.contains("temp"), "{out}");
    assert_eq!(cli.json(&["status"], None)["leftovers"], json!([]));
    let young = cli.data().join(".rk-tmp-young1");
    std::fs::create_dir(&young).unwrap();
    let old = cli.data().join(".rk-tmp-old123");
    std::fs::write(&old, b"half a copy").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let (out, _) = cli.expect(&["status"], None, 0);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line names {name}: {out}"))
            .to_string()
    };
    // Nothing has the store file open: a young one is a leftover too, not "an operation
    // under way, or one interrupted". (A store on a server is open to `status` itself, and
    // cannot tell.)
    let y = line(".rk-tmp-young1");
    if cli.store.is_none() {
        assert!(
            y.contains("leftover temp folder")
                && y.contains("as no process has the store open")
                && !y.contains("under way"),
            "{y}"
        );
    } else {
        assert!(y.contains("temp folder") && y.contains("under way"), "{y}");
    }
    let o = line(".rk-tmp-old123");
    assert!(
        o.contains("leftover temp file") && o.contains("2 h ago"),
        "{o}"
    );
    assert!(o.contains("redkeep check --repair"), "{o}");
    let json = cli.json(&["status"], None);
    let listed = json["leftovers"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{json}");
    assert_eq!(listed[0]["folder"], false);
    assert!(listed[0]["age_secs"].as_i64().unwrap() >= 7200, "{json}");
    assert_eq!(listed[1]["folder"], true);
    // A user folder being made (or left half-made by a crash) is named too.
    let staging = cli.data().join("workspaces/users/.rk-tmp-stage1");
    std::fs::create_dir_all(&staging).unwrap();
    let (out, _) = cli.expect(&["status"], None, 0);
    assert!(out.contains(".rk-tmp-stage1"), "{out}");
    // A name that is not UTF-8 is shown lossily, never a crash.
    let odd = cli
        .data()
        .join(std::ffi::OsStr::from_bytes(b".rk-tmp-odd\xff"));
    std::fs::write(&odd, b"x").unwrap();
    let (out, _) = cli.expect(&["status"], None, 0);
    assert!(out.contains(".rk-tmp-odd\u{fffd}"), "{out}");
    assert_eq!(
        cli.json(&["status"], None)["leftovers"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    std::fs::remove_file(&odd).unwrap();
    // A symlink or a FIFO is called what it is.
    let link = cli.data().join(".rk-tmp-link01");
    std::os::unix::fs::symlink("/nowhere", &link).unwrap();
    let fifo = cli.data().join(".rk-tmp-fifo01");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (out, _) = cli.expect(&["status"], None, 0);
    assert!(
        out.contains("temp symlink") && out.contains("temp FIFO"),
        "{out}"
    );
    let kinds: Vec<String> = cli.json(&["status"], None)["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains(&"symlink".to_string()) && kinds.contains(&"FIFO".to_string()),
        "{kinds:?}"
    );
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&fifo).unwrap();
    // An old one a running operation holds (a lock on it) is named as in use, and stays.
    let held = cli.data().join(".rk-tmp-held01");
    std::fs::write(&held, b"a restore still running").unwrap();
    let lock = std::fs::File::open(&held).unwrap();
    lock.set_modified(two_hours_ago).unwrap();
    lock.lock().unwrap();
    let (out, _) = cli.expect(&["status"], None, 0);
    let h = out
        .lines()
        .find(|l| l.contains(".rk-tmp-held01"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(h.contains("in use by a running operation"), "{h}");
    let json = cli.json(&["status"], None);
    let entry = json["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| {
            l["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(".rk-tmp-held01"))
        })
        .cloned()
        .unwrap();
    assert_eq!(entry["in_use"], true, "{json}");
    // The old one goes with a repair; the young ones, and the held one, stay.
    cli.expect(&["check", "--repair"], None, 0);
    assert!(!old.exists() && young.exists() && staging.exists() && held.exists());
}

/// A data dir that bears the temp prefix, beside the backup it writes, is never taken for a
/// leftover, however old.
#[test]
fn a_backup_never_removes_the_data_dir_it_backs_up() {
    let cli = populated();
    let live = cli.dir.path().join(".rk-tmp-live");
    std::fs::rename(cli.data(), &live).unwrap();
    std::os::unix::fs::symlink(&live, cli.data()).unwrap();
    let touched = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&live)
        .status()
        .unwrap();
    assert!(touched.success());
    let target = cli.dir.path().join("b.tar");
    let (out, _) = cli.expect(&["backup", target.to_str().unwrap()], None, 0);
    assert!(!out.contains("removed"), "{out}");
    assert!(live.join("workspaces").is_dir() && target.is_file());
    cli.json(&["user", "show", "ann@example.com"], None);
}

/// A backup killed part way leaves its staging folder (a copy of the store) and its
/// unfinished archive beside the target: the next backup into that folder removes those an
/// hour old and says so; a young one, or one a running operation holds, is named and left.
#[test]
fn a_backup_removes_what_a_killed_backup_left_beside_it() {
    let cli = populated();
    let out_dir = cli.dir.path().join("backups");
    std::fs::create_dir(&out_dir).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    let aged = |p: &std::path::Path| {
        std::fs::File::open(p)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    };
    let staging = out_dir.join(".rk-tmp-Stage1");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join("redkeep.redb"), b"a copy of the store").unwrap();
    aged(&staging);
    let archive = out_dir.join(".rk-tmp-Arch01");
    std::fs::write(&archive, b"half an archive").unwrap();
    aged(&archive);
    let held = out_dir.join(".rk-tmp-Held01");
    std::fs::write(&held, b"an operation still running").unwrap();
    aged(&held);
    let lock = std::fs::File::open(&held).unwrap();
    lock.lock().unwrap();
    let young = out_dir.join(".rk-tmp-Young1");
    std::fs::write(&young, b"just begun").unwrap();
    let mine = out_dir.join("keep-me.txt");
    std::fs::write(&mine, b"not redkeep's").unwrap();
    aged(&mine);
    // A FIFO and a dangling symlink under the temp prefix (planted, say): removed, never
    // opened or followed (opening the FIFO would hang the backup).
    let fifo = out_dir.join(".rk-tmp-Fifo01");
    let link = out_dir.join(".rk-tmp-Link01");
    std::os::unix::fs::symlink(cli.dir.path().join("nowhere"), &link).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for p in [&fifo, &link] {
        let touched = std::process::Command::new("touch")
            .args(["-h", "-d", "2 hours ago"])
            .arg(p)
            .status()
            .unwrap();
        assert!(touched.success());
    }

    let target = out_dir.join("b.tar");
    let (out, _) = cli.expect(&["backup", target.to_str().unwrap()], None, 0);
    assert!(
        out.contains("removed 4 redkeep temp entr(ies) an interrupted operation left"),
        "{out}"
    );
    assert!(out.contains("left 2 redkeep temp entr(ies)"), "{out}");
    assert!(!staging.exists() && !archive.exists(), "{out}");
    assert!(fifo.symlink_metadata().is_err() && link.symlink_metadata().is_err());
    assert!(held.exists() && young.exists() && mine.exists() && target.is_file());
    // Its own temp entries are gone too: only what was there, and the backup.
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [".rk-tmp-Held01", ".rk-tmp-Young1", "b.tar", "keep-me.txt"]
    );
    // A name that is not UTF-8 is shown, lossily, in text and JSON alike.
    let odd = out_dir.join(std::ffi::OsStr::from_bytes(b".rk-tmp-bad\xff"));
    std::fs::write(&odd, b"x").unwrap();
    aged(&odd);
    let json = cli.json(&["backup", out_dir.join("odd.tar").to_str().unwrap()], None);
    assert!(
        json["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("odd.tar")),
        "{json}"
    );
    assert_eq!(
        json["leftovers_removed"],
        json!([odd.to_string_lossy()]),
        "{json}"
    );
    // A dangling symlink at the target is something there: refused up front.
    let dangling = out_dir.join("dangling.tar");
    std::os::unix::fs::symlink(cli.dir.path().join("nowhere.tar"), &dangling).unwrap();
    let (_, err) = cli.expect(&["backup", dangling.to_str().unwrap()], None, 1);
    assert!(err.contains("already exists"), "{err}");
    // A finished backup never takes the temp prefix: a later cleanup would remove it.
    let (_, err) = cli.expect(
        &["backup", out_dir.join(".rk-tmp-mine").to_str().unwrap()],
        None,
        1,
    );
    assert!(err.contains("prefix of redkeep's temp files"), "{err}");
    assert!(!out_dir.join(".rk-tmp-mine").exists());
    drop(lock);
    let json = cli.json(&["backup", out_dir.join("c.tar").to_str().unwrap()], None);
    assert_eq!(
        json["leftovers_removed"],
        json!([held.to_str().unwrap()]),
        "{json}"
    );
    assert_eq!(
        json["leftovers_kept"],
        json!([young.to_str().unwrap()]),
        "{json}"
    );
}

/// A backup written among the workspace folders would become a user's file (with every
/// account's hashes in it) and go into every later backup: refused, nothing written.
#[test]
fn a_backup_into_a_workspace_folder_is_refused() {
    let cli = populated();
    cli.json(
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"t\": 1}"),
    );
    let ann = cli.json(&["user", "show", "ann@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    let inside = cli
        .data()
        .join(format!("workspaces/users/{ann}/inside.rkb"));
    assert!(inside.parent().unwrap().is_dir());
    let (_, err) = cli.expect(&["backup", inside.to_str().unwrap()], None, 1);
    assert!(err.contains("among the workspace folders"), "{err}");
    assert!(!inside.exists());
    let leftovers: Vec<_> = std::fs::read_dir(inside.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".rk-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Nor an export, nor a move or a salvage into the data dir (a copy of the folders there
    // would copy itself, level under level).
    let export = inside.with_file_name("e.jsonl");
    let (_, err) = cli.expect(&["export", "-o", export.to_str().unwrap()], None, 1);
    assert!(err.contains("among the workspace folders"), "{err}");
    let nested = inside.with_file_name("nd");
    let (_, err) = cli.expect(&["move", "--to", nested.to_str().unwrap()], None, 1);
    assert!(err.contains("inside the data dir"), "{err}");
    cli.expect(&["salvage", "--to", nested.to_str().unwrap()], None, 1);
    assert!(!export.exists() && !nested.exists());
    // Beside the store, outside the folders, a backup is fine.
    let beside = cli.data().join("beside.rkb");
    cli.expect(&["backup", beside.to_str().unwrap()], None, 0);
}

/// A backup goes to a new file in a folder that exists: `-` (stdout) and a missing folder
/// are refused with what to do, and write nothing.
#[test]
fn backup_refuses_stdout_and_a_missing_folder() {
    let cli = populated();
    let (_, err) = cli.expect(&["backup", "-"], None, 1);
    assert!(err.contains("not to stdout"), "{err}");
    let missing = cli.dir.path().join("nope/inner/b.rkb");
    let (_, err) = cli.expect(&["backup", missing.to_str().unwrap()], None, 1);
    assert!(
        err.contains("does not exist") && err.contains("nope/inner"),
        "{err}"
    );
    assert!(!cli.dir.path().join("nope").exists());
    assert!(!std::env::current_dir().unwrap().join("-").exists());
    // A folder given as input is refused as one (through an application's socket it read
    // as "Resource temporarily unavailable").
    let (_, err) = cli.expect(&["import", cli.dir.path().to_str().unwrap()], None, 1);
    assert!(err.contains("is a folder"), "{err}");
    // A permission no role could grant is a typo, not a "no".
    let (_, err) = cli.expect(&["user", "can", "ann@example.com", "NOT A PERM!"], None, 1);
    assert!(err.contains("invalid permission"), "{err}");
}

/// Under a file-size limit smaller than the archive, a backup fails with one line naming the
/// limit and leaves nothing beside the target: the binary ignores SIGXFSZ, so the kernel does
/// not kill it part way with its temp files left behind.
#[test]
fn a_backup_past_a_file_size_limit_fails_cleanly() {
    let cli = populated();
    let out_dir = cli.dir.path().join("backups");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("b.tar");
    // `ulimit -f` counts 512-byte blocks: 16 KiB, less than any store's archive.
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(r#"ulimit -f 32 && exec "$0" "$@""#)
        .arg(assert_cmd::cargo::cargo_bin("redkeep"))
        .args(["backup", target.to_str().unwrap()])
        .env("REDKEEP_DATA_DIR", cli.data())
        .env("REDKEEP_ARGON2", common::FAST_ARGON2)
        .env_remove("REDKEEP_STORE_URL")
        .env_remove("REDKEEP_MOVE_TO");
    if let Some(url) = &cli.store {
        c.env("REDKEEP_STORE_URL", url);
    }
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{:?}: {err}", out.status);
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // The store still works and a backup without the limit goes through.
    cli.json(&["backup", target.to_str().unwrap()], None);
}

/// A restore brings back the logins of the backup's time, revoked ones included: it says so
/// and names `session revoke --all`, which ends every login of every user.
#[test]
fn a_restore_says_logins_come_back_and_revoke_all_ends_them() {
    let cli = populated();
    let backup = cli.dir.path().join("b.tar");
    cli.json(&["backup", backup.to_str().unwrap()], None);
    assert_eq!(
        cli.json(&["session", "revoke", "--user", "ann@example.com"], None)["revoked"],
        1
    );
    let (out, _) = cli.expect(&["restore", backup.to_str().unwrap(), "--force"], None, 0);
    assert!(out.contains("session revoke --all"), "{out}");
    assert_eq!(
        cli.json(&["session", "list"], None)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    cli.json(
        &["login", "ann@example.com", "--password-stdin"],
        Some("ann password\n"),
    );
    assert_eq!(
        cli.json(&["session", "revoke", "--all"], None)["revoked"],
        2
    );
    assert_eq!(cli.json(&["session", "list"], None), json!([]));
    cli.expect(&["session", "revoke", "--all", "--user", "1"], None, 2);
}

/// An import into a store fresh from `init` replaces init's administrator along with the
/// rest of what init made, and says so.
#[test]
fn an_import_over_init_says_its_administrator_was_replaced() {
    let source = populated();
    let (export, _) = source.expect(&["export"], None, 0);
    let target = Cli::new();
    target.json(&["init", "--admin-email", "boss@example.com"], None);
    let (out, _) = target.expect(&["import", "-"], Some(&export), 0);
    assert!(
        out.contains("boss@example.com") && out.contains("replaced"),
        "{out}"
    );
    target.expect(&["user", "show", "boss@example.com"], None, 1);
    // The export held no administrator (`init --no-admin`): the store now has none, and
    // the import says how to make one; with one, it says nothing of it.
    assert!(
        out.contains("no imported account is an active administrator"),
        "{out}"
    );
    let with_admin = Cli::new();
    with_admin.json(&["init", "--admin-email", "root@example.com"], None);
    let (admin_export, _) = with_admin.expect(&["export"], None, 0);
    let fresh = Cli::new();
    fresh.init();
    let (out, _) = fresh.expect(&["import", "-"], Some(&admin_export), 0);
    assert!(!out.contains("administrator"), "{out}");
    let again = Cli::new();
    again.init();
    let v = again.json(&["import", "-"], Some(&export));
    assert!(v.get("replaced_admin").is_none(), "{v}");
}

/// A deleted user's files stay in the trash until purged: `workspace trash` lists them and
/// `workspace purge-trash --user ID` deletes them for good (an erasure request); a user who
/// still exists is refused, and `--older-than` keeps what is recent.
#[test]
fn a_deleted_users_files_can_be_purged_from_the_trash() {
    let cli = Cli::new();
    cli.init();
    let mut ids = Vec::new();
    for email in ["gone@example.com", "kept@example.com", "live@example.com"] {
        let u = cli.json(&["user", "create", email], None);
        ids.push(u["id"].as_u64().unwrap());
        cli.expect(
            &["gallery", "add", email, "-"],
            Some("{\"private\":\"data\"}"),
            0,
        );
    }
    cli.json(&["user", "delete", "gone@example.com"], None);
    cli.json(&["user", "delete", "kept@example.com"], None);
    let trash = cli.json(&["workspace", "trash"], None);
    assert_eq!(trash.as_array().unwrap().len(), 2, "{trash}");
    assert_eq!(trash[0]["user"], ids[0]);
    let (_, err) = cli.expect(
        &["workspace", "purge-trash", "--user", &ids[2].to_string()],
        None,
        1,
    );
    assert!(err.contains("exists"), "{err}");
    // A deleted user has no email any more: one given is a usage error that says what to
    // give instead (not a parser's "invalid digit").
    let (_, err) = cli.expect(
        &["workspace", "purge-trash", "--user", "gone@example.com"],
        None,
        2,
    );
    assert!(
        err.contains("\"gone@example.com\" is not a user id; give the user's numeric id")
            && !err.contains("invalid digit"),
        "{err}"
    );
    // Nothing is older than a day yet.
    let none = cli.json(&["workspace", "purge-trash", "--older-than", "1d"], None);
    assert_eq!(none["purged"], json!([]));
    let purged = cli.json(
        &["workspace", "purge-trash", "--user", &ids[0].to_string()],
        None,
    );
    assert_eq!(purged["purged"].as_array().unwrap().len(), 1);
    let trash = cli.json(&["workspace", "trash"], None);
    assert_eq!(trash.as_array().unwrap().len(), 1);
    assert_eq!(trash[0]["user"], ids[1]);
    let left = std::fs::read_dir(cli.data().join("workspaces/trash"))
        .unwrap()
        .count();
    assert_eq!(left, 1);
    cli.expect(&["workspace", "purge-trash"], None, 2);
    cli.json(&["workspace", "purge-trash", "--all"], None);
    assert_eq!(cli.json(&["workspace", "trash"], None), json!([]));
    cli.expect(&["check"], None, 0);
}

/// A removed gallery piece waits in the user's trash: `workspace trash` lists it,
/// `purge-trash --user ID` (of a user who exists) and `--all` delete it for good, and its
/// number is still never given again.
#[test]
fn removed_pieces_are_in_the_trash_until_purged() {
    let cli = Cli::new();
    cli.init();
    let id = cli.json(&["user", "create", "ann@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    for body in ["{\"secret\":1}", "{\"secret\":2}", "{\"kept\":3}"] {
        cli.expect(&["gallery", "add", "ann@example.com", "-"], Some(body), 0);
    }
    let (out, _) = cli.expect(&["gallery", "remove", "ann@example.com", "2"], None, 0);
    assert!(out.contains("purge-trash --user"), "{out}");
    cli.expect(&["gallery", "remove", "ann@example.com", "1"], None, 0);
    let trash = cli.json(&["workspace", "trash"], None);
    let pieces: Vec<_> = trash
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["user"].as_u64().unwrap(), e["piece"].as_u64().unwrap()))
        .collect();
    assert_eq!(pieces.len(), 2, "{trash}");
    assert!(
        pieces.contains(&(id, 1)) && pieces.contains(&(id, 2)),
        "{trash}"
    );
    // Nothing is older than a day yet.
    let none = cli.json(&["workspace", "purge-trash", "--older-than", "1d"], None);
    assert_eq!(none["purged"], json!([]));
    let purged = cli.json(
        &["workspace", "purge-trash", "--user", &id.to_string()],
        None,
    );
    assert_eq!(purged["purged"].as_array().unwrap().len(), 2, "{purged}");
    assert_eq!(cli.json(&["workspace", "trash"], None), json!([]));
    let trash_dir = cli.data().join(format!("workspaces/users/{id}/.trash"));
    for e in std::fs::read_dir(&trash_dir).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("secret"));
    }
    cli.expect(&["gallery", "remove", "ann@example.com", "3"], None, 0);
    cli.json(&["workspace", "purge-trash", "--all"], None);
    assert_eq!(cli.json(&["workspace", "trash"], None), json!([]));
    let n = cli.json(&["gallery", "add", "ann@example.com", "-"], Some("{}"));
    assert_eq!(n["piece"], 4);
    // Nothing of theirs left in the trash: a user who exists is refused.
    let (_, err) = cli.expect(
        &["workspace", "purge-trash", "--user", &id.to_string()],
        None,
        1,
    );
    assert!(err.contains("exists"), "{err}");
    cli.expect(&["check"], None, 0);
}

/// A restore, and a reset, print the command that undoes them: the safety copy of the store
/// with `--folders` and the trash entry that holds the folders they replaced. Running it
/// brings back the accounts and their files as they were; `--folders` that is not such an
/// entry, or given with an archive, is refused and changes nothing.
#[test]
fn a_restore_or_reset_is_undone_with_its_safety_copy_and_folders() {
    let cli = populated();
    cli.expect(
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"v\":1}"),
        0,
    );
    let backup = cli.dir.path().join("b.tar");
    cli.json(&["backup", backup.to_str().unwrap()], None);
    cli.expect(
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"v\":2}"),
        0,
    );
    cli.json(&["user", "create", "bob@example.com"], None);
    cli.expect(
        &["gallery", "add", "bob@example.com", "-"],
        Some("{\"v\":3}"),
        0,
    );
    let pieces = |who: &str| {
        cli.json(&["gallery", "list", who], None)
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(pieces("ann@example.com"), 2);

    let (out, _) = cli.expect(&["restore", backup.to_str().unwrap(), "--force"], None, 0);
    assert_eq!(pieces("ann@example.com"), 1);
    cli.expect(&["user", "show", "bob@example.com"], None, 1);
    let trash = cli.json(&["workspace", "trash"], None);
    let entry = trash[0]["path"].as_str().unwrap().to_string();
    let safety = std::fs::read_dir(cli.data())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(".pre-restore-"))
        .unwrap();
    // (A store on a server is named in the line.)
    let store = cli
        .store
        .as_ref()
        .map_or(String::new(), |u| format!("--store '{u}' "));
    let undo = format!(
        "to undo: `redkeep --data-dir {} {store}restore --force --folders {entry} {}`",
        cli.data().display(),
        safety.display()
    );
    assert!(out.contains(&undo), "{out}\nexpected: {undo}");

    // Refused, nothing changed: an archive brings its own folders; a folder outside the
    // trash; a deleted user's own folder (not a set of users' folders).
    let (_, err) = cli.expect(
        &[
            "restore",
            "--force",
            "--folders",
            &entry,
            backup.to_str().unwrap(),
        ],
        None,
        1,
    );
    assert!(err.contains("brings its own workspace folders"), "{err}");
    let outside = cli.dir.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    let (_, err) = cli.expect(
        &[
            "restore",
            "--force",
            "--folders",
            outside.to_str().unwrap(),
            safety.to_str().unwrap(),
        ],
        None,
        1,
    );
    assert!(err.contains("is not an entry of"), "{err}");
    let gone = cli.json(&["user", "create", "gone@example.com"], None);
    cli.expect(&["gallery", "add", "gone@example.com", "-"], Some("{}"), 0);
    cli.json(&["user", "delete", "gone@example.com"], None);
    let trash = cli.json(&["workspace", "trash"], None);
    let own = trash
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["user"] == gone["id"])
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, err) = cli.expect(
        &[
            "restore",
            "--force",
            "--folders",
            &own,
            safety.to_str().unwrap(),
        ],
        None,
        1,
    );
    assert!(err.contains("is one user's folder"), "{err}");
    assert_eq!(pieces("ann@example.com"), 1);

    // The undo: the accounts and files from before the restore (the entry named as
    // `workspace trash` lists it).
    let name = std::path::Path::new(&entry)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    cli.expect(
        &[
            "restore",
            "--force",
            "--folders",
            &name,
            safety.to_str().unwrap(),
        ],
        None,
        0,
    );
    assert_eq!(pieces("ann@example.com"), 2);
    assert_eq!(pieces("bob@example.com"), 1);
    assert!(!std::path::Path::new(&entry).exists());
    cli.expect(&["check"], None, 0);

    // A reset says how to undo it the same way. A folder not named for a user (an
    // operator's) goes to the trash with the rest, and comes back with the undo.
    let stray = cli.data().join("workspaces/users/tmp");
    std::fs::create_dir(&stray).unwrap();
    std::fs::write(stray.join("notes.txt"), "mine").unwrap();
    let (out, _) = cli.expect(&["reset", "--force"], None, 0);
    assert!(!stray.exists());
    let undo = out
        .lines()
        .find_map(|l| l.strip_prefix("to undo: `"))
        .and_then(|l| l.split('`').next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let undo = without_store(&undo);
    let words: Vec<&str> = undo.split(' ').skip(1).collect();
    let data = cli.data().display().to_string();
    assert_eq!(
        words[..5],
        ["--data-dir", &data, "restore", "--force", "--folders"],
        "{undo}"
    );
    cli.expect(&["user", "show", "bob@example.com"], None, 1);
    cli.expect(&words[2..], None, 0);
    assert_eq!(pieces("bob@example.com"), 1);
    assert_eq!(pieces("ann@example.com"), 2);
    assert_eq!(
        std::fs::read_to_string(stray.join("notes.txt")).unwrap(),
        "mine"
    );
    cli.expect(&["check"], None, 0);

    // A trash that is a symlink is another folder: its entries are refused.
    let trash = cli.data().join("workspaces/trash");
    let moved = cli.dir.path().join("moved-trash");
    std::fs::rename(&trash, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &trash).unwrap();
    std::fs::create_dir(moved.join("reset-1")).unwrap();
    let (_, err) = cli.expect(
        &[
            "restore",
            "--force",
            "--folders",
            trash.join("reset-1").to_str().unwrap(),
            safety.to_str().unwrap(),
        ],
        None,
        1,
    );
    assert!(err.contains("symlink"), "{err}");

    // A plain store file leaves the folders: its undo is the safety copy alone.
    let (out, _) = cli.expect(&["restore", "--force", safety.to_str().unwrap()], None, 0);
    let undo = out
        .lines()
        .find(|l| l.starts_with("to undo: `redkeep --data-dir"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        undo.contains("restore --force ") && !undo.contains("--folders"),
        "{undo}"
    );
}

/// A store just emptied by a reset reads as a new one: its built-in roles are there for
/// the commands that only read it (the open for writing that follows a reset makes them).
#[test]
fn after_a_reset_the_listings_show_the_built_in_roles() {
    let cli = populated();
    cli.expect(&["reset", "--force"], None, 0);
    let roles = cli.json(&["role", "list"], None);
    let names: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"admin") && names.contains(&"user"),
        "{roles}"
    );
    cli.expect(&["role", "show", "admin"], None, 0);
    // They are in the store itself: a handle that only reads it finds them too.
    if cli.store.is_none() {
        cli.expect(&["reset", "--force"], None, 0);
        let reader =
            redkeep::Redkeep::open(cli.data(), redkeep::Options::default().read_only(true))
                .unwrap();
        assert_eq!(reader.roles().get("admin").unwrap().name, "admin");
    }
}

/// An output file never takes a name redkeep gives its own files in the data dir: the next
/// command that makes such a file would replace or remove it.
#[test]
fn backup_and_export_refuse_the_names_of_redkeeps_own_files() {
    let cli = populated();
    for name in ["redkeep.redb.owner", "redkeep.redb.copy", "redkeep.sock"] {
        let dest = cli.data().join(name);
        let dest = dest.to_str().unwrap();
        let (_, err) = cli.expect(&["backup", dest], None, 1);
        assert!(err.contains("a name redkeep gives its own files"), "{err}");
        let (_, err) = cli.expect(&["export", "-o", dest], None, 1);
        assert!(err.contains("a name redkeep gives its own files"), "{err}");
        assert!(!std::path::Path::new(dest).exists());
    }
    // Beside them, any other name is fine.
    let fine = cli.data().join("nightly.tar");
    cli.expect(&["backup", fine.to_str().unwrap()], None, 0);
}

/// A refused restore leaves the data dir's folders as they were: no empty folder it made
/// for the workspaces (the trash) stays behind.
#[test]
fn a_refused_restore_leaves_no_folder_it_made() {
    let cli = populated();
    let trash = cli.data().join("workspaces/trash");
    assert!(!trash.exists());
    let inside = cli.dir.path().join("bad");
    std::fs::create_dir(&inside).unwrap();
    std::fs::write(inside.join(redkeep::STORE_FILE), b"not a store").unwrap();
    let bad = cli.dir.path().join("bad.tar");
    let tar = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&bad)
        .arg("-C")
        .arg(&inside)
        .arg(redkeep::STORE_FILE)
        .status()
        .unwrap();
    assert!(tar.success());
    let (_, err) = cli.expect(&["restore", "--force", bad.to_str().unwrap()], None, 1);
    assert!(err.contains("cannot be read as a redkeep backup"), "{err}");
    assert!(
        !trash.exists(),
        "the refused restore left {}",
        trash.display()
    );
    cli.expect(&["check"], None, 0);
}

/// `restore --folders` puts back folders only with the store they belong to: a trash entry
/// whose folders are another store's accounts (their owner markers name other accounts) is
/// refused before anything changes. A folder of no user (an orphan the data dir held) does
/// not stop an undo, and the entry of the same reset restores.
#[test]
fn restore_folders_refuses_a_trash_entry_made_with_another_store() {
    let undo_of = |out: &str| -> Vec<String> {
        let undo = out
            .lines()
            .find_map(|l| l.strip_prefix("to undo: `"))
            .and_then(|l| l.split('`').next())
            .unwrap_or_else(|| panic!("{out}"));
        without_store(undo)
            .split(' ')
            .skip(3)
            .map(str::to_string)
            .collect()
    };
    let cli = populated();
    cli.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
    // An orphan folder: it goes to the trash with the rest, and comes back with the undo.
    let orphan = cli.data().join("workspaces/users/999");
    std::fs::create_dir(&orphan).unwrap();
    let (out, _) = cli.expect(&["reset", "--force"], None, 0);
    let own = undo_of(&out);
    assert_eq!(own[..3], ["restore", "--force", "--folders"], "{own:?}");

    // Another data dir made the same way: the same ids, other accounts. Its reset's entry,
    // copied into this trash (modes kept), holds its Ann's folder.
    let other = populated();
    other.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
    let (out, _) = other.expect(&["reset", "--force"], None, 0);
    let theirs = std::path::PathBuf::from(&undo_of(&out)[3]);
    let copied = cli.data().join("workspaces/trash").join(format!(
        "{}-other",
        theirs.file_name().unwrap().to_string_lossy()
    ));
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&theirs)
        .arg(&copied)
        .status()
        .unwrap();
    assert!(cp.success());

    let before = cli.json(&["user", "list"], None);
    let mixed = [
        "restore",
        "--force",
        "--folders",
        copied.to_str().unwrap(),
        &own[4],
    ];
    let (_, err) = cli.expect(&mixed, None, 1);
    assert!(
        err.contains("could be served to the wrong account")
            && err.contains("another account")
            && err.contains("without --folders"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(cli.json(&["user", "list"], None), before);
    assert!(copied.is_dir());

    // Its own entry restores it, Ann's piece and the orphan with it; `check` names the
    // orphan, and a repair moves it to the trash.
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    cli.expect(&own, None, 0);
    let pieces = cli.json(&["gallery", "list", "ann@example.com"], None);
    assert_eq!(pieces.as_array().map_or(0, Vec::len), 1, "{pieces}");
    assert!(orphan.is_dir());
    let (out, err) = cli.expect(&["check"], None, 1);
    assert!(format!("{out}{err}").contains("orphan"), "{out}{err}");
    cli.expect(&["check", "--repair"], None, 0);
    cli.expect(&["check"], None, 0);
}

/// A restore of an archive into a data dir that had no workspace folders still prints its
/// undo: the trash entry that stands for "no folders" is empty, and putting it back removes
/// the folders the backup brought along with its accounts.
#[test]
fn a_restore_over_no_folders_is_undone_too() {
    let cli = populated();
    cli.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
    let backup = cli.dir.path().join("b.tar");
    cli.json(&["backup", backup.to_str().unwrap()], None);
    cli.json(&["user", "create", "bob@example.com"], None);
    let users = cli.data().join("workspaces/users");
    for e in std::fs::read_dir(&users).unwrap().flatten() {
        std::fs::remove_dir_all(e.path()).unwrap();
    }

    let (out, _) = cli.expect(&["restore", backup.to_str().unwrap(), "--force"], None, 0);
    assert!(
        out.contains("there were no workspace folders before; the undo below puts back"),
        "{out}"
    );
    let undo = out
        .lines()
        .find_map(|l| l.strip_prefix("to undo: `"))
        .and_then(|l| l.split('`').next())
        .unwrap_or_else(|| panic!("no undo line: {out}"))
        .to_string();
    assert!(undo.contains(" --folders "), "{undo}");
    assert_eq!(
        cli.json(&["gallery", "list", "ann@example.com"], None)
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    cli.expect(&["user", "show", "bob@example.com"], None, 1);
    cli.expect(&["check"], None, 0);

    let undo = without_store(&undo);
    let words: Vec<&str> = undo.split(' ').skip(1).collect();
    cli.expect(&words[2..], None, 0);
    cli.json(&["user", "show", "bob@example.com"], None);
    assert_eq!(std::fs::read_dir(&users).unwrap().count(), 0);
    let trash = cli.json(&["workspace", "trash"], None);
    assert_eq!(trash.as_array().map(Vec::len), Some(1), "{trash}");

    // Into a fresh data dir there is nothing to undo: no undo line, no empty entry.
    let fresh = Cli::new();
    let (out, _) = fresh.expect(&["restore", backup.to_str().unwrap()], None, 0);
    assert!(
        !out.contains("to undo") && !out.contains("no workspace folders before"),
        "{out}"
    );
    assert_eq!(fresh.json(&["workspace", "trash"], None), json!([]));
}

/// A restore or a reset whose workspace folders could not follow it (a file where the trash
/// belongs, a users' folder that is a symlink) is refused before the store changes: the
/// accounts and files stay as they were.
#[test]
fn restore_and_reset_refuse_before_the_store_changes_when_folders_cannot_follow() {
    let cli = populated();
    cli.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
    let backup = cli.dir.path().join("b.tar");
    cli.json(&["backup", backup.to_str().unwrap()], None);
    cli.json(&["user", "create", "bob@example.com"], None);
    let trash = cli.data().join("workspaces/trash");
    let _ = std::fs::remove_dir_all(&trash);
    std::fs::write(&trash, "not a folder").unwrap();
    let (_, err) = cli.expect(&["restore", "--force", backup.to_str().unwrap()], None, 1);
    assert!(err.contains("trash"), "{err}");
    let (_, err) = cli.expect(&["reset", "--force"], None, 1);
    assert!(err.contains("trash"), "{err}");
    cli.json(&["user", "show", "bob@example.com"], None);
    std::fs::remove_file(&trash).unwrap();
    let users = cli.data().join("workspaces/users");
    let moved = cli.dir.path().join("users-elsewhere");
    std::fs::rename(&users, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &users).unwrap();
    let (_, err) = cli.expect(&["reset", "--force"], None, 1);
    assert!(err.contains("symlink"), "{err}");
    cli.json(&["user", "show", "bob@example.com"], None);
    let left: Vec<_> = std::fs::read_dir(cli.data())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".pre-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `move --to` and `salvage --to` never write into workspace folders a target already holds
/// (another deployment's files would be served as the source's users', a foreign trash entry
/// could be restored) nor through a symlink there: refused, nothing made, the target as it
/// was.
#[test]
fn move_and_salvage_refuse_a_target_holding_workspace_folders() {
    let cli = populated();
    cli.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
    let elsewhere = cli.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    type Plant = fn(&std::path::Path, &std::path::Path);
    let targets: [(&str, Plant); 4] = [
        ("users/1", |ws, _| {
            std::fs::create_dir_all(ws.join("users/1")).unwrap();
            std::fs::write(ws.join("users/1/workspace.json"), "{\"theirs\":true}").unwrap();
        }),
        ("users/.hidden", |ws, _| {
            std::fs::create_dir_all(ws.join("users/.hidden")).unwrap();
        }),
        ("trash/reset-1", |ws, _| {
            std::fs::create_dir_all(ws.join("trash/reset-1/1")).unwrap();
        }),
        ("users", |ws, away| {
            std::fs::create_dir_all(ws).unwrap();
            std::os::unix::fs::symlink(away, ws.join("users")).unwrap();
        }),
    ];
    let mut commands = vec!["move"];
    if cli.store.is_none() {
        commands.push("salvage");
    }
    for (i, (names, plant)) in targets.into_iter().enumerate() {
        let target = cli.dir.path().join(format!("target{i}"));
        let ws = target.join("workspaces");
        plant(&ws, &elsewhere);
        for command in &commands {
            let (_, err) = cli.expect(&[command, "--to", target.to_str().unwrap()], None, 1);
            assert!(
                err.contains("already holds workspace folders") && err.contains(names),
                "{command} {names}: {err}"
            );
            assert!(!target.join(redkeep::STORE_FILE).exists(), "{command}");
        }
    }
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    // Empty folders are no one's: the move goes ahead.
    let empty = cli.dir.path().join("empty");
    std::fs::create_dir_all(empty.join("workspaces/users")).unwrap();
    cli.json(&["move", "--to", empty.to_str().unwrap()], None);
}

/// A refused import or init into a data dir without a store takes back the store it made,
/// and nothing that was there before: folders (empty or not) and their files stay.
#[test]
fn a_refused_import_or_init_keeps_what_the_data_dir_held() {
    let cli = populated();
    let export = cli.dir.path().join("e.jsonl");
    cli.json(&["export", "-o", export.to_str().unwrap()], None);
    let fresh = Cli::new();
    if fresh.store.is_some() {
        // A PostgreSQL store is a schema, not a file of the data dir: nothing to take back.
        return;
    }
    let ws = fresh.data().join("workspaces");
    std::fs::create_dir_all(ws.join("users/2")).unwrap();
    std::fs::create_dir_all(ws.join("users/3")).unwrap();
    std::fs::write(ws.join("users/3/workspace.json"), "{\"theirs\":true}").unwrap();
    let (_, err) = fresh.expect(&["import", export.to_str().unwrap()], None, 1);
    assert!(err.contains("already holds workspace folders"), "{err}");
    let (_, err) = fresh.expect(&["init", "--admin-password-stdin"], Some("short\n"), 1);
    assert!(!err.is_empty());
    assert!(!fresh.data().join(redkeep::STORE_FILE).exists());
    assert!(ws.join("users/2").is_dir());
    assert_eq!(
        std::fs::read_to_string(ws.join("users/3/workspace.json")).unwrap(),
        "{\"theirs\":true}"
    );
}

/// `move` of a store that already fails `check` (a damaged workspace document) is refused
/// before anything is made, saying how to see the problems and how to move anyway; it
/// copied everything, retired a redb source for a server, then exited 1 saying "the copy
/// fails check", as if the move had done the damage. With `--with-problems` it moves the
/// store, says the problems were carried over unchanged, and exits 0.
#[test]
fn move_of_a_store_with_problems_is_refused_unless_asked_and_carries_them_over() {
    let cli = populated();
    cli.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
    let users = cli.data().join("workspaces/users");
    let folder = std::fs::read_dir(&users).unwrap().next().unwrap().unwrap();
    std::fs::write(folder.path().join("workspace.json"), "{\"notes\":[1,2").unwrap();
    cli.expect(&["check"], None, 1);
    let store_before = common::stored_bytes(cli.store.as_deref(), &cli.data());
    let target = cli.dir.path().join("target");
    let to = target.to_str().unwrap();
    let (_, err) = cli.expect(&["move", "--to", to], None, 1);
    assert!(
        err.contains("the store to move has problems")
            && err.contains("workspace.json")
            && err.contains("run `redkeep check`")
            && err.contains("--with-problems")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(!target.exists(), "nothing is made");
    assert_eq!(
        common::stored_bytes(cli.store.as_deref(), &cli.data()),
        store_before,
        "the source is as it was"
    );
    let (out, err) = cli.expect(&["move", "--to", to, "--with-problems"], None, 0);
    assert!(
        out.contains("1 problem(s) the store had before the move were carried over unchanged")
            && out.contains("carried over: ")
            && out.contains("workspace.json")
            && !out.contains("  problem: ")
            && !err.contains("fails check"),
        "{out}\n{err}"
    );
    let moved = target.join("workspaces/users").join(folder.file_name());
    assert_eq!(
        std::fs::read(moved.join("workspace.json")).unwrap(),
        b"{\"notes\":[1,2",
        "carried over unchanged"
    );
}

/// `move` reads the store it copies without opening it for writing: its bytes are as they
/// were, and no owner marker is left (a redb file opened for writing has bytes rewritten,
/// and a move killed part way left it "not closed cleanly" with a stale owner marker).
#[test]
fn a_move_leaves_the_store_it_copies_as_it_was() {
    let cli = populated();
    cli.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
    let before = common::stored_bytes(cli.store.as_deref(), &cli.data());
    let target = cli.dir.path().join("target");
    cli.json(&["move", "--to", target.to_str().unwrap()], None);
    assert!(
        common::stored_bytes(cli.store.as_deref(), &cli.data()) == before,
        "the source's bytes changed"
    );
    let owner = redkeep::store::owner_path(&cli.data().join(redkeep::STORE_FILE));
    assert!(!owner.exists(), "{}", owner.display());
}

/// `move` of a store behind the schema says to migrate first (its copy would be checked as
/// a current store and read as damaged), and makes nothing.
#[test]
fn move_of_an_outdated_store_says_to_migrate_first() {
    let cli = populated();
    cli.json(&["migrate", "down"], None);
    let target = cli.dir.path().join("target");
    let (_, err) = cli.expect(&["move", "--to", target.to_str().unwrap()], None, 1);
    assert!(err.contains("redkeep migrate up"), "{err}");
    assert!(!target.join(redkeep::STORE_FILE).exists());
    cli.json(&["migrate", "up"], None);
    cli.json(&["move", "--to", target.to_str().unwrap()], None);
}

/// An export carries documents and pieces only: it names what else the workspace folders
/// hold (an operator's file, a folder of the application's), which `backup` keeps.
#[test]
fn an_export_names_the_files_it_leaves_out() {
    let cli = populated();
    cli.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
    let (out, err) = cli.expect(&["export"], None, 0);
    assert!(!err.contains("left out"), "{err}");
    let ann = cli.json(&["user", "show", "ann@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    let folder = cli.data().join(format!("workspaces/users/{ann}"));
    std::fs::write(folder.join("notes.txt"), "x").unwrap();
    std::fs::create_dir(folder.join("extra")).unwrap();
    std::fs::write(folder.join("gallery/cover.png"), "x").unwrap();
    let (again, err) = cli.expect(&["export"], None, 0);
    assert_eq!(again.lines().count(), out.lines().count());
    assert!(
        err.contains("left out 3 entries")
            && err.contains(&format!("users/{ann}/notes.txt"))
            && err.contains("backup` keeps the regular files"),
        "{err}"
    );
    // In `users/`, what is no user's folder is named too: an operator's folder, a folder
    // of no user.
    std::fs::remove_file(folder.join("notes.txt")).unwrap();
    std::fs::remove_dir(folder.join("extra")).unwrap();
    std::fs::remove_file(folder.join("gallery/cover.png")).unwrap();
    let users = cli.data().join("workspaces/users");
    std::fs::create_dir(users.join("notes")).unwrap();
    std::fs::create_dir(users.join("999")).unwrap();
    let (third, err) = cli.expect(&["export"], None, 0);
    assert_eq!(third.lines().count(), out.lines().count());
    assert!(
        err.contains("left out 2 entries")
            && err.contains("users/999")
            && err.contains("users/notes"),
        "{err}"
    );
}

/// A backup keeps regular files and folders; it names what it does not keep (a symlink, a
/// pipe) instead of claiming every file.
#[test]
fn a_backup_names_the_links_and_special_files_it_does_not_keep() {
    let cli = populated();
    cli.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
    let backup = cli.dir.path().join("plain.tar");
    let (out, _) = cli.expect(&["backup", backup.to_str().unwrap()], None, 0);
    assert!(!out.contains("not kept"), "{out}");
    let ann = cli.json(&["user", "show", "ann@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    let folder = cli.data().join(format!("workspaces/users/{ann}"));
    std::os::unix::fs::symlink("/etc/hostname", folder.join("link")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(folder.join("pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let again = cli.dir.path().join("again.tar");
    let (out, _) = cli.expect(&["backup", again.to_str().unwrap()], None, 0);
    assert!(
        out.contains("not kept: 2 symlink(s) or special file(s)")
            && out.contains(&format!("users/{ann}/link")),
        "{out}"
    );
}

/// An import holds the store alone for as long as its input lasts (one write transaction):
/// every other command answers at once meanwhile, `status` naming the importing process and
/// the rest saying who holds the store, instead of waiting without a word.
#[test]
fn commands_answer_at_once_while_an_import_reads_a_slow_pipe() {
    use std::io::Write;
    let source = populated();
    let (export, _) = source.expect(&["export"], None, 0);
    let lines: Vec<&str> = export.lines().collect();
    // The store file's own lock is what this is about, on either engine's test run.
    let mut target = Cli::new();
    target.store = None;
    let mut import = std::process::Command::new(assert_cmd::cargo::cargo_bin!("redkeep"));
    import
        .env("REDKEEP_DATA_DIR", target.data())
        .env("REDKEEP_ARGON2", common::FAST_ARGON2)
        .env_remove("REDKEEP_STORE_URL")
        .args(["import", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = import.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "{}", lines[..3].join("\n")).unwrap();
    input.flush().unwrap();
    // Until the import has the store (a bounded wait for a state, not for time).
    let pid = child.id();
    let mut held = false;
    for _ in 0..2000 {
        // (A timeout, so that a command waiting for the store fails the test, not hangs it.)
        let out = target
            .cmd(&["status", "--json"])
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        assert!(out.status.code().is_some(), "status waited for the store");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["state"] == "exclusive" && v["pid"] == pid {
            held = true;
            break;
        }
    }
    assert!(held, "the import never held the store alone");
    // `status` names the command as the errors do, and a redkeep command's lack of an
    // admin socket is no fault ("unreachable").
    let status = |json: bool| {
        let mut c = target.cmd(&["status"]);
        if json {
            c.arg("--json");
        }
        let out = c
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let said = status(false);
    assert!(
        said.contains(&format!(
            "process {pid} (`redkeep import`, a redkeep command)"
        )) && said.contains("wait for it to finish")
            && said.contains("admin socket: none")
            && !said.contains("unreachable"),
        "{said}"
    );
    let v: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(v["socket"], "none", "{v}");
    assert_eq!(v["command"], "redkeep import", "{v}");
    // What needs the store alone waits for the command, not for "the application".
    let out = target
        .cmd(&["reset", "--force"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("redkeep import")
            && err.contains("wait for it to finish, then run this again")
            && !err.contains("application"),
        "{err}"
    );
    for args in [vec!["user", "list"], vec!["check"], vec!["export"]] {
        let out = target
            .cmd(&args)
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("process {pid}")) && err.contains("redkeep import"),
            "{args:?}: {err}"
        );
    }
    writeln!(input, "{}", lines[3..].join("\n")).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (again, _) = target.expect(&["export"], None, 0);
    assert_eq!(again, export);
}

/// An export holds every password hash: to a terminal it is refused (as `inspect` shows no
/// secret without `--show-secrets`); to a file or a pipe it is written.
#[test]
fn an_export_is_not_printed_on_a_terminal() {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let cli = populated();
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    for args in [vec!["export"], vec!["export", "-o", "-"]] {
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin!("redkeep"))
            .env("REDKEEP_DATA_DIR", cli.data())
            .env("REDKEEP_ARGON2", common::FAST_ARGON2)
            .env_remove("REDKEEP_STORE_URL")
            .envs(cli.store.iter().map(|u| ("REDKEEP_STORE_URL", u)))
            .args(&args)
            .stdout(terminal.try_clone().unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not to a terminal"), "{args:?}: {err}");
    }
    // Into a pipe, as before.
    let (text, _) = cli.expect(&["export"], None, 0);
    assert!(text.contains("argon2id"));
}

/// `redkeep export > FILE` gets a file made with the shell's umask, often readable by every
/// user of the machine: it is made 0600 before the export is written, and the CLI says so.
#[test]
fn an_export_redirected_to_a_file_others_may_read_makes_it_private() {
    use std::os::unix::fs::PermissionsExt;
    let cli = populated();
    let export_into = |file: std::fs::File| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin!("redkeep"))
            .env("REDKEEP_DATA_DIR", cli.data())
            .env("REDKEEP_ARGON2", common::FAST_ARGON2)
            .env_remove("REDKEEP_STORE_URL")
            .envs(cli.store.iter().map(|u| ("REDKEEP_STORE_URL", u)))
            .arg("export")
            .stdout(file)
            .output()
            .unwrap()
    };
    let path = cli.dir.path().join("redirected.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let out = export_into(file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("was open to other users") && err.contains("0644"),
        "{err}"
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&path).unwrap().contains("argon2id"));
    // A private file is left as it is, without a word.
    let private = cli.dir.path().join("private.jsonl");
    let file = std::fs::File::create(&private).unwrap();
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    let out = export_into(file);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("open to other users"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Targets and arguments said plainly: a move or salvage into a folder whose parent does
/// not exist makes no tree; a move names the symlinks it did not copy; a backup that is a
/// device is no "not found";
/// an archive holding the store twice says so, and a new data dir is left without a trace.
#[test]
fn move_salvage_migrate_and_restore_arguments_are_checked_and_named() {
    let cli = populated();
    cli.expect(
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"v\":1}"),
        0,
    );
    let base = cli.dir.path();
    let nowhere = base.join("no/such/parent/target");
    // (Salvage reads a redb file only.)
    let commands: &[&str] = if cli.store.is_none() {
        &["move", "salvage"]
    } else {
        &["move"]
    };
    for &cmd in commands {
        let (_, err) = cli.expect(&[cmd, "--to", nowhere.to_str().unwrap()], None, 1);
        assert!(
            err.contains("does not exist; make it first"),
            "{cmd}: {err}"
        );
        assert!(!base.join("no").exists(), "{cmd} made a tree");
        // A symlink (here a dangling one) is refused, and left where it is.
        let link = base.join(format!("{cmd}-link"));
        std::os::unix::fs::symlink(base.join("nowhere"), &link).unwrap();
        let (_, err) = cli.expect(&[cmd, "--to", link.to_str().unwrap()], None, 1);
        assert!(err.contains("is a symlink"), "{cmd}: {err}");
        assert!(link.is_symlink(), "{cmd} removed the operator's link");
    }
    if cli.store.is_none() {
        // A symlink in a folder is not copied, and the move names it.
        let ann = cli.json(&["user", "show", "ann@example.com"], None)["id"].clone();
        let folder = cli.data().join(format!("workspaces/users/{ann}"));
        std::os::unix::fs::symlink("/etc/hostname", folder.join("link.json")).unwrap();
        let to = base.join("moved");
        let (out, _) = cli.expect(&["move", "--to", to.to_str().unwrap()], None, 0);
        assert!(
            out.contains("not copied: 1 entr(ies)")
                && out.contains(&format!("users/{ann}/link.json")),
            "{out}"
        );
        // A copy, said so; index key spaces are counted as index entries, not tables, in
        // the text and the JSON alike.
        assert!(out.starts_with("copied "), "{out}");
        assert!(out.contains("the source is unchanged"), "{out}");
        let again = cli.json(
            &["move", "--to", base.join("moved-again").to_str().unwrap()],
            None,
        );
        let (records, index) = (&again["records"], &again["index_entries"]);
        assert!(
            records.as_u64().unwrap() > 0 && index.as_u64().unwrap() > 0,
            "{again}"
        );
        let tables = again["tables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| !t[0].as_str().unwrap().starts_with("i:"))
            .count();
        assert!(
            out.contains(&format!(
                ": {tables} tables, {records} records and {index} index entries"
            )),
            "{out} against {again}"
        );
        assert!(
            !to.join(format!("workspaces/users/{ann}/link.json"))
                .exists()
        );
        std::fs::remove_file(folder.join("link.json")).unwrap();
    }
    let (_, err) = cli.expect(&["restore", "--force", "/dev/null"], None, 1);
    assert!(err.contains("is not a regular file"), "{err}");
    // An archive with the store twice.
    let archive = base.join("b.tar");
    cli.expect(&["backup", archive.to_str().unwrap()], None, 0);
    let twice = base.join("twice.tar");
    {
        let mut out = tar::Builder::new(std::fs::File::create(&twice).unwrap());
        let mut input = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        for entry in input.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            let mut h = entry.header().clone();
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut b).unwrap();
            let n = if path == std::path::Path::new("redkeep.redb") {
                2
            } else {
                1
            };
            for _ in 0..n {
                out.append_data(&mut h, &path, &b[..]).unwrap();
            }
        }
        out.into_inner().unwrap();
    }
    let fresh = base.join("fresh");
    let (_, err) = cli.expect(
        &[
            "--data-dir",
            fresh.to_str().unwrap(),
            "restore",
            "--force",
            twice.to_str().unwrap(),
        ],
        None,
        1,
    );
    assert!(err.contains("holds redkeep.redb twice"), "{err}");
    assert!(!fresh.exists(), "a refused restore left its new data dir");
}

/// Records set aside in a quarantine table keep their secrets hidden: `inspect` shows a
/// quarantined credential's hash as `<redacted>`, as it does for the live table.
#[test]
fn inspect_hides_the_secrets_of_quarantined_records() {
    let mut cli = populated();
    if cli.store.is_some() {
        // (The redb file is planted below; the PostgreSQL run covers its own tables.)
        cli = Cli {
            store: None,
            ..Cli::new()
        };
        cli.init();
        cli.json(&["user", "create", "ann@example.com"], None);
    }
    let db = cli.data().join(redkeep::STORE_FILE);
    let record = {
        use redb::ReadableDatabase;
        let d = redb::Database::open(&db).unwrap();
        let r = d.begin_read().unwrap();
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("r:credentials");
        let t = r.open_table(def).unwrap();
        t.get(&1u64.to_be_bytes()[..])
            .unwrap()
            .unwrap()
            .value()
            .to_vec()
    };
    common::plant_entry(
        None,
        &cli.data(),
        "r:quarantine:credentials",
        &1u64.to_be_bytes(),
        &record,
    );
    for args in [
        vec!["--json", "inspect", "dump", "quarantine:credentials"],
        vec!["inspect", "get", "quarantine:credentials", "1"],
    ] {
        let (out, _) = cli.expect(&args, None, 0);
        assert!(!out.contains("argon2"), "{args:?}: {out}");
        assert!(out.contains("<redacted>"), "{args:?}: {out}");
    }
    let (out, _) = cli.expect(
        &[
            "inspect",
            "get",
            "quarantine:credentials",
            "1",
            "--show-secrets",
        ],
        None,
        0,
    );
    assert!(out.contains("argon2"), "{out}");
}

/// A restore given `--folders` (a trash entry) that stopped before putting them in place
/// leaves them waiting in the trash: they are the restored users' only copy, so
/// `purge-trash` keeps that entry, says why, and `check --repair` still finishes the restore.
#[test]
fn purge_trash_keeps_the_folders_a_stopped_restore_waits_on() {
    let cli = Cli::new();
    cli.init();
    cli.json(&["user", "create", "ann@example.com"], None);
    cli.expect(
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"drawn\":\"a harbour\"}"),
        0,
    );
    cli.json(&["user", "create", "bob@example.com"], None);
    cli.expect(&["gallery", "add", "bob@example.com", "-"], Some("{}"), 0);
    cli.json(&["user", "delete", "bob@example.com"], None);
    // As a stopped `restore --folders trash/reset-…` leaves it: the store restored, its
    // folders waiting in the trash entry, the replaced ones still in `users/`.
    let ws = cli.data().join("workspaces");
    let entry = ws.join("trash/reset-1900000000");
    common::copy_tree(&ws.join("users"), &entry);
    let mark = json!({
        "users": "workspaces/trash/reset-1900000000",
        "at": 1_900_000_100,
        "keep_empty": false,
    });
    {
        let rk = redkeep::Redkeep::open(
            cli.data(),
            redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST),
        )
        .unwrap();
        rk.store()
            .write(|tx| tx.set_meta("restore_unfinished", mark.to_string().as_bytes()))
            .unwrap();
    }
    let (out, _) = cli.expect(&["workspace", "purge-trash", "--all"], None, 0);
    assert!(
        out.contains("deleted 1 trash entry")
            && out.contains("kept reset-1900000000")
            && out.contains("check --repair"),
        "{out}"
    );
    let v = cli.json(&["workspace", "purge-trash", "--all"], None);
    assert_eq!(v["kept"], json!(["reset-1900000000"]), "{v}");
    // The deleted user's entry went with the first purge; the waiting one is whole.
    assert_eq!(v["purged"], json!([]), "{v}");
    assert!(entry.is_dir());
    cli.expect(&["check", "--repair"], None, 0);
    cli.expect(&["check"], None, 0);
    assert!(
        !entry.exists(),
        "the repair put the waiting folders in place"
    );
    let pieces = cli.json(&["gallery", "list", "ann@example.com"], None);
    assert_eq!(pieces.as_array().map(Vec::len), Some(1), "{pieces}");
}

/// While a restore that stopped part way has its mark in the store, the folders in place are
/// not the restored store's: every workspace read and write is refused, saying that
/// `check --repair` finishes it, so no write is acknowledged into a folder the repair then
/// moves away. The repair names the trash entries it really used: the one holding the
/// folders the restore replaced, and one beside it for folders made meanwhile.
#[test]
fn workspace_calls_wait_for_a_stopped_restore_and_its_repair_names_the_real_entries() {
    let cli = Cli::new();
    cli.init();
    let ann = cli.json(&["user", "create", "ann@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    cli.expect(
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"drawn\":\"a harbour\"}"),
        0,
    );
    // As a `restore --folders trash/reset-1900000000` killed after moving the folders in
    // place to the trash (`reset-1900000100`) leaves it: the store restored, `users/` empty,
    // the backup's folders waiting in the entry given.
    let ws = cli.data().join("workspaces");
    let waiting = ws.join("trash/reset-1900000000");
    common::copy_tree(&ws.join("users"), &waiting);
    let replaced = ws.join("trash/reset-1900000100");
    std::fs::rename(ws.join("users"), &replaced).unwrap();
    std::fs::create_dir(ws.join("users")).unwrap();
    let mark = json!({
        "users": "workspaces/trash/reset-1900000000",
        "at": 1_900_000_100,
        "keep_empty": false,
    });
    {
        let rk = redkeep::Redkeep::open(cli.data(), cli.options()).unwrap();
        rk.store()
            .write(|tx| tx.set_meta("restore_unfinished", mark.to_string().as_bytes()))
            .unwrap();
    }
    for (args, stdin) in [
        (&["gallery", "list", "ann@example.com"][..], None),
        (
            &["gallery", "add", "ann@example.com", "-"][..],
            Some("{\"during\":1}"),
        ),
        (&["workspace", "show", "ann@example.com"][..], None),
    ] {
        let (_, err) = cli.expect(args, stdin, 1);
        assert!(
            err.contains("a restore stopped part way") && err.contains("check --repair"),
            "{args:?}: {err}"
        );
    }
    assert!(
        !ws.join(format!("users/{ann}")).exists(),
        "a folder was made"
    );
    // A folder made meanwhile (by a build that wrote then): the repair keeps it apart.
    common::copy_tree(
        &waiting.join(ann.to_string()),
        &ws.join(format!("users/{ann}")),
    );
    let (out, _) = cli.expect(&["check", "--repair"], None, 0);
    assert!(
        out.contains("1 folder(s) put in place")
            && out.contains(&format!("{}", replaced.display()))
            && out.contains(&format!("{}-2", replaced.display()))
            && out.contains("made while the restore was stopped"),
        "{out}"
    );
    assert!(ws.join(format!("trash/reset-1900000100-2/{ann}")).is_dir());
    cli.expect(&["check"], None, 0);
    let pieces = cli.json(&["gallery", "list", "ann@example.com"], None);
    assert_eq!(pieces.as_array().map(Vec::len), Some(1), "{pieces}");
    cli.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
}

/// Salvage prints each workspace file it could not copy, fails (exit 1, one line on
/// stderr), and does not call the copy clean; a target folder holding other files is
/// refused, in one line.
#[test]
fn salvage_prints_the_workspace_files_it_left_behind_and_fails() {
    let cli = populated();
    for p in ["{\"p\":1}", "{\"p\":2}"] {
        cli.expect(&["gallery", "add", "ann@example.com", "-"], Some(p), 0);
    }
    let ann = cli.json(&["user", "show", "ann@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    let piece = cli
        .data()
        .join(format!("workspaces/users/{ann}/gallery/piece_000001.json"));
    std::fs::remove_file(&piece).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&piece)
        .status()
        .unwrap();
    assert!(made.success());

    let filled = cli.dir.path().join("filled");
    std::fs::create_dir(&filled).unwrap();
    std::fs::write(filled.join("notes.txt"), b"mine").unwrap();
    let (_, err) = cli.expect(&["salvage", "--to", filled.to_str().unwrap()], None, 1);
    assert!(
        err.contains("is not empty (it holds notes.txt)") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let to = cli.dir.path().join("saved");
    let (out, err) = cli.expect(&["salvage", "--to", to.to_str().unwrap()], None, 1);
    assert!(
        out.contains(&format!(
            "  left behind: {} is not a regular file or a folder",
            piece.display()
        )) && out.contains("1 workspace folder(s) and 0 trash entries copied")
            && out.contains("  problem: 1 workspace file(s) or folder(s) could not be read")
            && !out.contains("clean on the copy"),
        "{out}"
    );
    assert_eq!(
        err,
        "error: the salvaged copy has problems, listed in the report\n"
    );
}

/// After a crash the owner marker stays behind, and its process number may since belong to
/// another process: salvage does not refuse then (nor tell the operator to stop an innocent
/// process), and says it did not heed the marker. While the file is open elsewhere, a live
/// marker is heeded.
#[test]
fn salvage_heeds_an_owner_marker_only_while_its_process_has_the_file_open() {
    let cli = populated();
    let store = cli.data().join(redkeep::STORE_FILE);
    let marker = redkeep::store::owner_path(&store);
    // An innocent live process, which never opened the store.
    let innocent = common::Reaped(
        std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap(),
    );
    let pid = innocent.0.id();
    std::fs::write(&marker, format!("{{\"pid\":{pid},\"since\":1796540000}}")).unwrap();
    let to = cli.dir.path().join("salvaged");
    let (out, _) = cli.expect(&["salvage", "--to", to.to_str().unwrap()], None, 0);
    drop(innocent);
    assert!(
        out.contains(&format!(
            "names process {pid}, which does not have the store open"
        )),
        "{out}"
    );
    assert!(to.join(redkeep::STORE_FILE).is_file());

    // The marker names this test's process, which has the file open: refused.
    std::fs::write(
        &marker,
        format!("{{\"pid\":{},\"since\":1796540000}}", std::process::id()),
    )
    .unwrap();
    let held = redb::Database::open(&store).unwrap();
    let again = cli.dir.path().join("salvaged-again");
    let (_, err) = cli.expect(&["salvage", "--to", again.to_str().unwrap()], None, 1);
    drop(held);
    assert!(
        err.contains(&format!(
            "process {} holds the store; stop it first",
            std::process::id()
        )),
        "{err}"
    );
    assert!(!again.exists());
}

/// `status` lists the copies of the store that operations keep in the data dir (before a
/// migration, a restore or a reset): each holds the password and token hashes of its time,
/// and nothing showed they were there.
#[test]
fn status_lists_the_kept_copies_of_the_store() {
    let cli = Cli::new();
    cli.init();
    assert_eq!(cli.json(&["status"], None)["copies"], json!([]));
    cli.expect(&["migrate", "down"], None, 0);
    cli.expect(&["migrate", "up"], None, 0);
    let (out, _) = cli.expect(&["status"], None, 0);
    let copies = cli.json(&["status"], None)["copies"].clone();
    let listed = copies.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{copies}");
    for c in listed {
        let path = c["path"].as_str().unwrap();
        assert!(path.contains(".pre-v") && path.ends_with(".bak"), "{path}");
        assert!(std::path::Path::new(path).is_file(), "{path}");
        let line = out
            .lines()
            .find(|l| l.contains(path))
            .unwrap_or_else(|| panic!("no line names {path}: {out}"));
        assert!(line.contains("password and token hashes"), "{line}");
    }
    // Other files beside the store are not copies of it.
    std::fs::write(cli.data().join("notes.bak"), b"x").unwrap();
    let again = cli.json(&["status"], None)["copies"].clone();
    assert_eq!(again, copies);
    // Copies numbered past an earlier one of the same name, as each operation names them:
    // a migration's `….pre-vN.2.bak`, and `fsutil::free_path`'s `….bak.2` (a restore's or a
    // reset's) and `…-<time>.2` (the file a move retired). Each is listed.
    let first = listed[0]["path"].as_str().unwrap();
    let base = first
        .strip_suffix(".bak")
        .and_then(|p| p.rsplit_once(".pre-v"))
        .map(|(store, _)| store.to_string())
        .unwrap();
    let numbered = [
        format!("{base}.pre-v1.2.bak"),
        format!("{base}.pre-reset-1796568832.bak.2"),
        format!("{base}.pre-restore-1796568832.bak.13"),
        format!("{base}.moved-to-postgres-1796568832.2"),
    ];
    for path in &numbered {
        std::fs::copy(first, path).unwrap();
    }
    // A name that only looks numbered is not one.
    std::fs::copy(first, format!("{base}.pre-reset-1796568832.bak.old")).unwrap();
    let (out, _) = cli.expect(&["status"], None, 0);
    let now = cli.json(&["status"], None)["copies"].clone();
    let paths: Vec<&str> = now
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 2 + numbered.len(), "{now}");
    for path in &numbered {
        assert!(paths.contains(&path.as_str()), "{path} not in {now}");
        assert!(
            out.lines()
                .any(|l| l.contains(path.as_str()) && l.contains("password and token hashes")),
            "{path}: {out}"
        );
    }
}

/// An undo line without its `--store '…'` (which names a store on a server, the one the
/// test runs the line against through REDKEEP_STORE_URL anyway).
fn without_store(undo: &str) -> String {
    match undo.split_once(" --store '") {
        Some((head, rest)) => match rest.split_once("' ") {
            Some((_, tail)) => format!("{head} {tail}"),
            None => undo.to_string(),
        },
        None => undo.to_string(),
    }
}
