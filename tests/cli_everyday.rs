//! The operator's everyday commands of the seed apps, and the mistakes operators make getting
//! an answer that says what to do.
#![cfg(feature = "cli")]

mod common;

use common::Cli;
use serde_json::{Value, json};

fn user(cli: &Cli, email: &str, extra: &[&str]) -> u64 {
    let mut args = vec!["user", "create", email, "--password-stdin"];
    args.extend_from_slice(extra);
    cli.json(&args, Some("correct horse battery\n"))["id"]
        .as_u64()
        .unwrap()
}

fn table_lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn user_and_workspace_lists_show_what_the_seed_clis_showed() {
    let cli = Cli::new();
    cli.init();
    let ann = user(&cli, "ann@example.com", &["--name", "山田太郎"]);
    user(&cli, "bob@example.com", &["--name", "Bob"]);
    let piece = cli.dir.path().join("piece.json");
    std::fs::write(&piece, r#"{"title":"dawn"}"#).unwrap();
    cli.expect(
        &["gallery", "add", "ann@example.com", piece.to_str().unwrap()],
        None,
        0,
    );

    let (out, _) = cli.expect(&["user", "list"], None, 0);
    let lines = table_lines(&out);
    assert!(
        lines[0].contains("pieces") && lines[0].contains("workspace_modified"),
        "{out}"
    );
    // Columns line up by display width: the CJK name takes two cells a character.
    let col = |line: &str, header: &str| {
        let at = lines[0].find(header).unwrap();
        let prefix_width = unicode_width::UnicodeWidthStr::width(&lines[0][..at]);
        let mut w = 0;
        for (i, c) in line.char_indices() {
            if w >= prefix_width {
                return line[i..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
            }
            w += unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        }
        String::new()
    };
    assert_eq!(col(lines[1], "admin"), "no", "{out}");
    assert_eq!(col(lines[1], "pieces"), "1", "{out}");
    assert_eq!(col(lines[2], "pieces"), "0", "{out}");
    let json = cli.json(&["user", "list"], None);
    assert_eq!(json[0]["workspace"]["pieces"], 1);
    assert_eq!(json[0]["id"], ann);

    let (out, _) = cli.expect(&["workspace", "list"], None, 0);
    assert!(out.lines().next().unwrap().contains("email"), "{out}");
    assert!(out.contains("ann@example.com"), "{out}");
}

#[test]
fn logins_admins_and_permission_checks() {
    let cli = Cli::new();
    cli.init();
    user(&cli, "root@example.com", &["--username", "root"]);
    let (out, _) = cli.expect(
        &["login", "root", "--password-stdin"],
        Some("correct horse battery\n"),
        0,
    );
    assert!(out.contains("rks_"), "login by username: {out}");

    // The admin flag follows the admin role.
    cli.expect(&["role", "grant", "root", "admin"], None, 0);
    assert_eq!(cli.json(&["user", "show", "root"], None)["is_admin"], true);
    cli.expect(&["user", "can", "root", "anything.at_all"], None, 0);
    // The last administrator keeps the role until another user has it.
    let (_, err) = cli.expect(&["role", "revoke", "root", "admin"], None, 1);
    assert!(err.contains("last active administrator"), "{err}");
    let helper = user(&cli, "helper@example.com", &["--admin"]);
    cli.expect(&["role", "revoke", "root", "admin"], None, 0);
    cli.expect(&["user", "delete", &helper.to_string()], None, 1);
    assert_eq!(cli.json(&["user", "show", "root"], None)["is_admin"], false);
    let (out, _) = cli.expect(&["user", "can", "root", "anything.at_all"], None, 1);
    assert!(out.contains("may not"), "{out}");
    cli.expect(&["user", "can", "root", "basic_access"], None, 0);
    let admin = user(&cli, "boss@example.com", &["--admin"]);
    let perms = cli.json(&["user", "permissions", &admin.to_string()], None);
    assert!(perms.to_string().contains("admin"), "{perms}");

    // Session list shows both deadlines.
    let (out, _) = cli.expect(&["session", "list"], None, 0);
    let head = out.lines().next().unwrap();
    assert!(
        head.contains("idle_until") && head.contains("expires_at"),
        "{out}"
    );
}

#[test]
fn orgs_agents_avatars_and_keys_from_the_command_line() {
    let cli = Cli::new();
    cli.init();
    let a = user(&cli, "a@example.com", &["--name", "Zoë Ünïcode"]);
    let b = user(&cli, "b@example.com", &[]);
    user(&cli, "c@example.com", &[]);
    let personal = cli.json(&["user", "orgs", "a@example.com"], None);
    assert!(
        personal.to_string().contains("zoe-unicodes-workspace"),
        "{personal}"
    );

    let first = cli.json(
        &[
            "org",
            "create",
            "First",
            "--owner",
            "a@example.com",
            "--default",
        ],
        None,
    );
    assert_eq!(first["is_default"], true);
    let second = cli.json(
        &[
            "org",
            "create",
            "Second",
            "--owner",
            "a@example.com",
            "--default",
        ],
        None,
    );
    assert_eq!(second["is_default"], true);
    assert_eq!(
        cli.json(&["org", "show", "first"], None)["is_default"],
        false,
        "one default org at a time"
    );
    let (_, err) = cli.expect(
        &[
            "org",
            "add-member",
            "second",
            "b@example.com",
            "nobody@example.com",
        ],
        None,
        1,
    );
    assert!(err.contains("nobody@example.com"), "{err}");
    assert_eq!(
        cli.json(&["org", "show", "second"], None)["members"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "all or none"
    );
    let added = cli.json(
        &[
            "org",
            "add-member",
            "second",
            &b.to_string(),
            "c@example.com",
            "--role",
            "admin",
        ],
        None,
    );
    assert_eq!(added.as_array().unwrap().len(), 2);

    // Agent sessions from JSON on stdin.
    let created = cli.json(
        &["agent", "create"],
        Some(r#"{"id": "job-1", "user": "a@example.com", "name": "Research", "goal": "read", "ttl": "7d"}"#),
    );
    assert_eq!(created["user_id"], a);
    let updated = cli.json(
        &["agent", "update", "job-1"],
        Some(r#"{"status": "planning", "progress": ["one"], "context": {"k": 1}}"#),
    );
    assert_eq!(updated["status"], "planning");
    assert_eq!(updated["progress"], json!(["one"]));
    assert_eq!(updated["context"], json!({"k": 1}));
    let (_, err) = cli.expect(&["agent", "update", "job-1"], Some(r#"{"colour": 1}"#), 1);
    assert!(err.contains("colour"), "{err}");

    // Avatars in and out as bytes.
    let jpeg: Vec<u8> = [
        0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0xFF, 0xD9,
    ]
    .to_vec();
    let file = cli.dir.path().join("me.jpg");
    std::fs::write(&file, &jpeg).unwrap();
    cli.expect(
        &[
            "user",
            "avatar",
            "set",
            "a@example.com",
            file.to_str().unwrap(),
        ],
        None,
        0,
    );
    let out = cli
        .cmd(&["user", "avatar", "get", "a@example.com"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        out.stdout, jpeg,
        "exactly the bytes, nothing else on stdout"
    );
    // --json cannot carry them: refused, with nothing on stdout.
    let (out, err) = cli.expect(
        &["user", "avatar", "get", "a@example.com", "--json"],
        None,
        1,
    );
    assert!(out.is_empty() && err.contains("not JSON"), "{out}{err}");
    let png = cli.dir.path().join("me.png");
    std::fs::write(&png, b"\x89PNG\r\n").unwrap();
    let (_, err) = cli.expect(
        &[
            "user",
            "avatar",
            "set",
            "a@example.com",
            png.to_str().unwrap(),
        ],
        None,
        1,
    );
    assert!(err.contains("JPEG"), "{err}");
    cli.expect(&["user", "avatar", "remove", "a@example.com"], None, 0);
    cli.expect(&["user", "avatar", "get", "a@example.com"], None, 1);

    // API keys of one org.
    cli.expect(&["apikey", "create", "--org", "second"], None, 0);
    cli.expect(&["apikey", "create", "--user", "b@example.com"], None, 0);
    let org_keys = cli.json(&["apikey", "list", "--org", "second"], None);
    assert_eq!(org_keys.as_array().unwrap().len(), 1, "{org_keys}");
    assert_eq!(
        cli.json(&["apikey", "list"], None)
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn mistakes_get_answers_that_say_what_to_do() {
    let cli = Cli::new();
    cli.init();
    let data = cli.data();
    let a_file = cli.dir.path().join("not-a-dir");
    std::fs::write(&a_file, "x").unwrap();
    let (_, err) = cli.expect(
        &["--data-dir", a_file.to_str().unwrap(), "user", "list"],
        None,
        1,
    );
    assert!(err.contains("names a folder"), "{err}");
    if cli.store.is_none() {
        // (A store on a server leaves no file in the data dir to mistake for it.)
        let store = data.join(redkeep::STORE_FILE);
        let (_, err) = cli.expect(
            &["--data-dir", store.to_str().unwrap(), "user", "list"],
            None,
            1,
        );
        assert!(err.contains("pass the folder that holds it"), "{err}");
    }

    let (_, err) = cli.expect(&["init", "--admin-email", "x@example.com"], None, 1);
    assert!(
        err.contains("already initialised") && err.contains("user create"),
        "{err}"
    );

    let id = user(&cli, "gone@example.com", &[]);
    cli.expect(&["user", "delete", "gone@example.com"], None, 0);
    let events: Value = cli.json(&["audit", "list", "--user", &id.to_string()], None);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "user_deleted"),
        "{events}"
    );

    user(&cli, "ttl@example.com", &[]);
    let (_, err) = cli.expect(
        &[
            "login",
            "ttl@example.com",
            "--password-stdin",
            "--ttl",
            "0s",
        ],
        Some("correct horse battery\n"),
        2,
    );
    assert!(err.contains("at least 1s"), "{err}");

    // A damaged workspace.json: named, and `check --repair` sets it aside.
    let piece = cli.dir.path().join("p.json");
    std::fs::write(&piece, "{}").unwrap();
    cli.expect(
        &["gallery", "add", "ttl@example.com", piece.to_str().unwrap()],
        None,
        0,
    );
    let folder = std::fs::read_dir(data.join("workspaces/users"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::write(folder.join("workspace.json"), "{broken").unwrap();
    let (_, err) = cli.expect(&["user", "workspace", "ttl@example.com"], None, 1);
    assert!(
        err.contains("is damaged") && err.contains("check --repair"),
        "{err}"
    );
    let (out, _) = cli.expect(&["check"], None, 1);
    assert!(out.contains("check --repair"), "{out}");
    cli.expect(&["check", "--repair"], None, 0);
    cli.expect(&["check"], None, 0);
    cli.expect(&["user", "workspace", "ttl@example.com"], None, 0);

    // A description with a terminal escape or a line break is refused, a role's as an
    // org's (how the CLI shows stored text it never obeys is `cli::render`'s own test).
    for kind in ["role", "org"] {
        let (_, err) = cli.expect(
            &[
                kind,
                "create",
                "tricky",
                "--permission",
                "x",
                "--owner",
                "ttl@example.com",
                "--description",
                "\u{1b}[2Jgone\nstatus: owner",
            ]
            .into_iter()
            .filter(|a| match kind {
                "role" => !["--owner", "ttl@example.com"].contains(a),
                _ => !["--permission", "x"].contains(a),
            })
            .collect::<Vec<_>>(),
            None,
            1,
        );
        assert!(err.contains("without control"), "{kind}: {err}");
    }
}

/// A workspace file over the size limit is named with its size, the limit and the flag that
/// raises it; `check --repair` leaves it in place, and `--max-doc-bytes` (or
/// `REDKEEP_MAX_DOC_BYTES`), given the application's limit, reads it.
#[test]
fn a_file_over_the_size_limit_is_left_and_max_doc_bytes_reads_it() {
    let cli = Cli::new();
    cli.init();
    let id = user(&cli, "ann@example.com", &[]);
    cli.expect(&["gallery", "add", "ann@example.com", "-"], Some("{}"), 0);
    let folder = cli.data().join(format!("workspaces/users/{id}"));
    let piece = folder.join("gallery/piece_000001.json");
    let big = json!({"img": "A".repeat(3000)}).to_string();
    std::fs::write(&piece, &big).unwrap();
    let doc = std::fs::read(folder.join("workspace.json")).unwrap();
    let small = ["--max-doc-bytes", "1024"];
    let (_, err) = cli.expect(
        &[&small[..], &["gallery", "show", "ann@example.com", "1"]].concat(),
        None,
        1,
    );
    assert!(
        err.contains("piece_000001.json") && err.contains("1024-byte limit"),
        "{err}"
    );
    let (out, _) = cli.expect(&[&small[..], &["check", "--repair"]].concat(), None, 1);
    assert!(
        out.contains("piece_000001.json")
            && out.contains(&format!("has {} bytes", big.len()))
            && out.contains("--max-doc-bytes")
            && !out.contains("fixed:"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&piece).unwrap(), big);
    assert_eq!(std::fs::read(folder.join("workspace.json")).unwrap(), doc);
    // The limit from the environment, as the application's deployment may set it.
    let out = cli
        .cmd(&["check"])
        .env("REDKEEP_MAX_DOC_BYTES", "1024")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    cli.expect(&["--max-doc-bytes", "4096", "check"], None, 0);
    let shown = cli.json(&["gallery", "show", "ann@example.com", "1"], None);
    assert_eq!(shown["img"].as_str().map(str::len), Some(3000), "{shown}");
    cli.expect(&["--max-doc-bytes", "0", "check"], None, 2);
}

/// The table and `--json` hold the same things: `workspace show` gives the email and the
/// path in both (and says when there is no folder yet), `apikey revoke --org` names the
/// owner as `apikey list` does, flags read yes/no in every table, and `user list` cuts a
/// long name (saying so) instead of widening every row.
#[test]
fn tables_and_json_hold_the_same_things() {
    let cli = Cli::new();
    cli.init();
    let long = "N".repeat(200);
    let id = user(&cli, "ann@example.com", &["--name", &long]);
    let (text, _) = cli.expect(&["workspace", "show", "ann@example.com"], None, 0);
    assert!(text.contains("no folder yet"), "{text}");
    let v = cli.json(&["workspace", "show", "ann@example.com"], None);
    assert_eq!(v["email"], "ann@example.com");
    assert!(
        v["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("users/{id}")),
        "{v}"
    );
    assert_eq!(v["exists"], false);
    cli.json(
        &["org", "create", "Acme", "--owner", "ann@example.com"],
        None,
    );
    cli.expect(&["apikey", "create", "--org", "acme"], None, 0);
    let listed = cli.json(&["apikey", "list"], None);
    let revoked = cli.json(&["apikey", "revoke", "--org", "acme"], None);
    assert_eq!(revoked["owner"], listed[0]["owner"]);
    assert_eq!(revoked["owner"]["kind"], "org");
    for args in [
        vec!["user", "workspace", "ann@example.com"],
        vec!["role", "list"],
        vec!["org", "list"],
        vec!["user", "orgs", "ann@example.com"],
    ] {
        let (out, _) = cli.expect(&args, None, 0);
        assert!(
            !out.contains("true") && !out.contains("false"),
            "{args:?}: {out}"
        );
        assert!(out.contains("yes") || out.contains("no"), "{args:?}: {out}");
    }
    let (list, _) = cli.expect(&["user", "list"], None, 0);
    assert!(list.lines().all(|l| l.chars().count() < 200), "{list}");
    assert!(list.contains("cut"), "{list}");
    assert_eq!(cli.json(&["user", "list"], None)[0]["name"], long.as_str());
}
