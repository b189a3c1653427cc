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
    cli.expect(
        &["apikey", "create", "--org", "second", "--scope", "read"],
        None,
        0,
    );
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
    cli.expect(
        &["apikey", "create", "--org", "acme", "--scope", "read"],
        None,
        0,
    );
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

/// `gallery add` reads a piece up to the limit `--max-doc-bytes` (or REDKEEP_MAX_DOC_BYTES)
/// gives, as `show`, `check`, `export` and `import` do, and a piece over it is refused with
/// the flag that raises it; an import's piece over the limit names it too.
#[test]
fn gallery_add_and_import_heed_max_doc_bytes_and_name_it() {
    let cli = Cli::new();
    cli.init();
    user(&cli, "ann@example.com", &[]);
    let small = json!({"img": "A".repeat(3000)}).to_string();
    let (_, err) = cli.expect(
        &[
            "--max-doc-bytes",
            "1024",
            "gallery",
            "add",
            "ann@example.com",
            "-",
        ],
        Some(&small),
        1,
    );
    assert!(
        err.contains("larger than 1024 bytes") && err.contains("--max-doc-bytes"),
        "{err}"
    );
    // Over the default 16 MiB: refused without the flag, saying which flag raises it, and
    // saved with it.
    let big = json!({"img": "A".repeat(17 << 20)}).to_string();
    let file = cli.dir.path().join("big.json");
    std::fs::write(&file, &big).unwrap();
    let file = file.to_str().unwrap();
    let (_, err) = cli.expect(&["gallery", "add", "ann@example.com", file], None, 1);
    assert!(err.contains("--max-doc-bytes"), "{err}");
    let raised = ["--max-doc-bytes", "20000000"];
    cli.expect(
        &[&raised[..], &["gallery", "add", "ann@example.com", file]].concat(),
        None,
        0,
    );
    let shown = cli.json(
        &[&raised[..], &["gallery", "show", "ann@example.com", "1"]].concat(),
        None,
    );
    assert_eq!(shown["img"].as_str().map(str::len), Some(17 << 20));
    // Its export, imported without the flag: the piece's line names it.
    let export = cli.dir.path().join("x.jsonl");
    cli.expect(
        &[&raised[..], &["export", "-o", export.to_str().unwrap()]].concat(),
        None,
        0,
    );
    let other = Cli::new();
    let (_, err) = other.expect(&["import", export.to_str().unwrap()], None, 1);
    assert!(err.contains("--max-doc-bytes"), "{err}");
}

/// `gallery add` past a cap on a user's gallery is refused with exit 1, saying what to do
/// and the flag that raises the cap here (`--max-pieces`, `--max-gallery-bytes`, or their
/// variables); the pieces there stay, and a raised cap saves.
#[test]
fn gallery_add_heeds_the_caps_on_a_users_gallery() {
    let cli = Cli::new();
    cli.init();
    user(&cli, "ann@example.com", &[]);
    let add = ["gallery", "add", "ann@example.com", "-"];
    cli.expect(&add, Some("{}"), 0);
    let with = |flags: &[&'static str]| [flags, &add[..]].concat();
    let (_, err) = cli.expect(&with(&["--max-pieces", "1"]), Some("{}"), 1);
    assert!(
        err.contains("may hold at most 1") && err.contains("--max-pieces"),
        "{err}"
    );
    let (_, err) = cli.expect(&with(&["--max-gallery-bytes", "3"]), Some("{}"), 1);
    assert!(
        err.contains("may take at most 3") && err.contains("--max-gallery-bytes"),
        "{err}"
    );
    cli.expect(&with(&["--max-pieces", "2"]), Some("{}"), 0);
    let shown = cli.json(&["gallery", "list", "ann@example.com"], None);
    assert_eq!(shown.as_array().map(Vec::len), Some(2), "{shown}");
}

/// A folder without its owner marker that bears a live user's number may be theirs or an
/// earlier account's: `check --repair` leaves it and names it (it was moved to the trash,
/// leaving them an empty workspace without a word), saying so when a file in it is older than
/// their account, and `workspace bind` gives it to them when the operator knows it is theirs.
#[test]
fn a_folder_without_its_owner_marker_is_left_until_the_operator_binds_it() {
    let cli = Cli::new();
    cli.init();
    let bob = user(&cli, "bob@example.com", &[]);
    let carl = user(&cli, "carl@example.com", &[]);
    let folder = |id: u64| cli.data().join(format!("workspaces/users/{id}"));
    let plant = |id: u64, mine: &str| {
        std::fs::create_dir_all(folder(id)).unwrap();
        let doc = folder(id).join("workspace.json");
        std::fs::write(
            &doc,
            json!({"notes": [], "piece_count": 0, "mine": mine}).to_string(),
        )
        .unwrap();
        doc
    };
    // Its number is all that names its owner: never given away on a guess, nor moved.
    plant(bob, "bob's");
    cli.expect(&["check", "--repair"], None, 1);
    let (out, _) = cli.expect(&["check"], None, 1);
    assert!(
        out.contains("no owner marker") && out.contains(&format!("workspace bind {bob}")),
        "{out}"
    );
    assert!(!folder(bob).join(".owner").exists());
    cli.expect(&["workspace", "show", "bob@example.com"], None, 1);
    let first = cli.json(&["workspace", "bind", "bob@example.com"], None);
    assert_eq!(first["bound"], json!(true), "{first}");
    // The binding is audited, with the folder it gave them; a bind that changes nothing is
    // not.
    let bound = |id: u64| -> Vec<Value> {
        let events = cli.json(&["audit", "list", "--user", &id.to_string()], None);
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "workspace_bound")
            .cloned()
            .collect()
    };
    let events = bound(bob);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subject"], format!("user {bob}"));
    assert_eq!(
        events[0]["detail"],
        format!("folder {}", folder(bob).display())
    );
    assert!(
        events[0]["origin"]
            .as_str()
            .is_some_and(|o| o.starts_with("redkeep CLI, uid ")),
        "{events:?}"
    );
    let (out, _) = cli.expect(&["workspace", "show", "bob@example.com"], None, 0);
    assert!(out.contains("bob's"), "{out}");

    // Older than carl's account: left in place, named, and served to no one.
    let doc = plant(carl, "an earlier account's?");
    std::fs::File::options()
        .write(true)
        .open(&doc)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(946_684_800))
        .unwrap();
    let (out, _) = cli.expect(&["check", "--repair"], None, 1);
    assert!(
        out.contains("older than their account") && out.contains(&format!("workspace bind {carl}")),
        "{out}"
    );
    assert!(doc.is_file(), "the folder stays");
    cli.expect(&["workspace", "show", "carl@example.com"], None, 1);
    let (out, _) = cli.expect(&["workspace", "bind", "carl@example.com"], None, 0);
    assert!(out.contains("bound"), "{out}");
    // (Made by hand, the folder is open to other users: the repair makes it private.)
    cli.expect(&["check", "--repair"], None, 0);
    let (out, _) = cli.expect(&["workspace", "show", "carl@example.com"], None, 0);
    assert!(out.contains("an earlier account's?"), "{out}");
    // Bound already: nothing to do; a folder of another account is never bound.
    let (out, _) = cli.expect(&["workspace", "bind", "carl@example.com"], None, 0);
    assert!(out.contains("nothing changed"), "{out}");
    let again = cli.json(&["workspace", "bind", "carl@example.com"], None);
    assert_eq!(again["bound"], json!(false), "{again}");
    assert_eq!(bound(carl).len(), 1);
    assert_eq!(bound(bob).len(), 1);
}

/// A malformed owner marker (a hand edit, a bad block, a copy cut short) names no account, as
/// a missing one does not: a live user's folder bearing it is left by `check --repair` (it was
/// moved to the trash, leaving them an empty workspace), named with `workspace bind`, which
/// replaces the marker, and never with the repair as its remedy.
#[test]
fn a_folder_with_a_malformed_owner_marker_is_left_until_the_operator_binds_it() {
    let cli = Cli::new();
    cli.init();
    let ann = user(&cli, "ann@example.com", &[]);
    let piece = cli.dir.path().join("piece.json");
    std::fs::write(&piece, r#"{"title":"dawn"}"#).unwrap();
    let add = ["gallery", "add", "ann@example.com", piece.to_str().unwrap()];
    cli.expect(&add, None, 0);
    let folder = cli.data().join(format!("workspaces/users/{ann}"));
    let bind = format!("`redkeep workspace bind {ann}`");
    // Garbled, and too long to be a marker: both are malformed.
    for garbage in ["garbage\n".to_string(), "f".repeat(300)] {
        std::fs::write(folder.join(".owner"), &garbage).unwrap();
        let (out, _) = cli.expect(&["check", "--repair"], None, 1);
        assert!(
            out.contains("is malformed") && out.contains(&bind) && !out.contains("moved to"),
            "{out}"
        );
        assert!(!out.contains("--repair` moves it to the trash"), "{out}");
        assert!(
            folder.join("gallery/piece_000001.json").is_file(),
            "the folder stays"
        );
        // Its requests are refused, pointing to the binding, not to the repair.
        let (_, err) = cli.expect(&["workspace", "show", "ann@example.com"], None, 1);
        assert!(
            err.contains("malformed") && err.contains(&bind) && !err.contains("--repair"),
            "{err}"
        );
    }
    let (out, _) = cli.expect(&["workspace", "bind", "ann@example.com"], None, 0);
    assert!(out.contains("malformed owner marker is replaced"), "{out}");
    cli.expect(&["check"], None, 0);
    let shown = cli.json(&["workspace", "show", "ann@example.com"], None);
    assert_eq!(shown["pieces"], json!(1), "{shown}");
}

/// `user list` names a workspace folder it could not read, on stderr with the folder and the
/// error and in JSON as `{"error": …}`: it showed `?` and `null` (the same as nothing to show)
/// without a word, so a report built on it lost the workspace silently.
#[test]
fn user_list_names_a_workspace_folder_it_could_not_read() {
    let cli = Cli::new();
    cli.init();
    let ann = user(&cli, "ann@example.com", &[]);
    let bob = user(&cli, "bob@example.com", &[]);
    let piece = cli.dir.path().join("piece.json");
    std::fs::write(&piece, r#"{"title":"dawn"}"#).unwrap();
    let add = ["gallery", "add", "ann@example.com", piece.to_str().unwrap()];
    cli.expect(&add, None, 0);
    let (_, err) = cli.expect(&["user", "list"], None, 0);
    assert_eq!(err, "");
    // A folder redkeep refuses to read (here: its owner marker is gone).
    let folder = cli.data().join(format!("workspaces/users/{ann}"));
    std::fs::remove_file(folder.join(".owner")).unwrap();
    let (out, err) = cli.expect(&["user", "list"], None, 0);
    assert!(out.contains("ann@example.com"), "{out}");
    assert!(
        err.contains(&format!(
            "the workspace folder {} of user {ann} was not read: ",
            folder.display()
        )) && err.contains("no owner marker"),
        "{err}"
    );
    let list = cli.json(&["user", "list"], None);
    let of = |id: u64| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == json!(id))
            .unwrap()["workspace"]
            .clone()
    };
    assert!(
        of(ann)["error"]
            .as_str()
            .is_some_and(|e| e.contains("no owner marker")),
        "{list}"
    );
    // A user without a folder is no failure.
    assert_eq!(of(bob)["exists"], json!(false), "{list}");
    assert!(of(bob).get("error").is_none(), "{list}");
}

/// Root running a command that writes on a data dir of another user (the application's),
/// with no application holding the store, is refused before anything is made: the folders
/// and files it made were root's, and the application could not open them after its next
/// start. Commands that only read still run. Only root can make the data dir another's, so
/// the test checks nothing as another user.
#[test]
fn root_is_refused_a_write_into_another_users_data_dir() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let cli = Cli::new();
    cli.init();
    user(&cli, "ann@example.com", &[]);
    common::give_all(&cli.data(), 65534);
    let piece = cli.dir.path().join("piece.json");
    std::fs::write(&piece, r#"{"title":"dawn"}"#).unwrap();
    let add = ["gallery", "add", "ann@example.com", piece.to_str().unwrap()];
    let (_, err) = cli.expect(&add, None, 1);
    assert!(
        err.contains("belongs to uid 65534, not to the user running this command (root)")
            && err.contains("sudo -u '#65534'")
            && err.contains("nothing was changed"),
        "{err}"
    );
    cli.expect(&["reset", "--force"], None, 1);
    use std::os::unix::fs::MetadataExt;
    let roots: Vec<_> = common::tree(&cli.data())
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok_and(|m| m.uid() == 0))
        .collect();
    assert!(roots.is_empty(), "made as root: {roots:?}");
    // Reading is harmless, and still served.
    let (out, _) = cli.expect(&["user", "list"], None, 0);
    assert!(out.contains("ann@example.com"), "{out}");
}

/// A password the operator chose at `init` is not to be changed at first login (as with
/// `user create --password-stdin`); a generated one is.
#[test]
fn init_with_a_chosen_password_does_not_ask_for_a_change() {
    let cli = Cli::new();
    cli.expect(
        &[
            "init",
            "--admin-email",
            "root@example.com",
            "--admin-password-stdin",
        ],
        Some("long enough pw\n"),
        0,
    );
    let shown = cli.json(&["user", "show", "root@example.com"], None);
    assert_eq!(shown["must_change_password"], json!(false), "{shown}");
    let other = Cli::new();
    other.expect(&["init", "--admin-email", "root@example.com"], None, 0);
    let shown = other.json(&["user", "show", "root@example.com"], None);
    assert_eq!(shown["must_change_password"], json!(true), "{shown}");
}

/// `apikey verify` and `session validate` say why a key or a token is refused (the library
/// answers every failure alike, for web callers), exiting 1 as before.
#[test]
fn verify_and_validate_say_why_a_secret_is_refused() {
    let cli = Cli::new();
    cli.init();
    user(&cli, "ann@example.com", &[]);
    user(&cli, "bob@example.com", &[]);
    let key = |owner: &str| {
        let (out, _) = cli.expect(&["apikey", "create", "--user", owner], None, 0);
        format!("{}\n", out.trim())
    };
    let verify = |k: &str| {
        cli.expect(&["apikey", "verify", "--key-stdin"], Some(k), 1)
            .1
    };
    let ann_key = key("ann@example.com");
    cli.expect(&["apikey", "verify", "--key-stdin"], Some(&ann_key), 0);
    cli.expect(&["apikey", "revoke", &ann_key[..12]], None, 0);
    let err = verify(&ann_key);
    assert!(
        err.contains("not valid") && err.contains("revoked at"),
        "{err}"
    );
    let bob_key = key("bob@example.com");
    cli.expect(&["user", "disable", "bob@example.com"], None, 0);
    let err = verify(&bob_key);
    assert!(err.contains("is disabled"), "{err}");
    let err = verify(&format!("rkk_{}\n", "a".repeat(39)));
    assert!(err.contains("no key has the prefix rkk_aaaaaaaa"), "{err}");
    assert!(!err.contains(&"a".repeat(20)), "{err}");
    let mut cut = ann_key.trim().to_string();
    cut.pop();
    let err = verify(&format!("{cut}\n"));
    assert!(err.contains("not its secret"), "{err}");
    // Made on a clock of 2020: expired now (the CLI runs on the real clock).
    let (old_key, old_token) = {
        let clock =
            std::sync::Arc::new(redkeep::ManualClock::new(redkeep::Timestamp(1_600_000_000)));
        let rk = redkeep::Redkeep::open(cli.data(), cli.options().clock(clock)).unwrap();
        let ann = rk.users().find("ann@example.com").unwrap();
        let key = rk
            .api_keys()
            .create(redkeep::auth::api_keys::ApiKeySpec {
                owner: redkeep::auth::api_keys::KeyOwner::User(ann.id),
                scopes: Vec::new(),
                expires_in: Some(std::time::Duration::from_secs(86_400)),
                created_by: None,
            })
            .unwrap();
        let login = rk
            .sessions()
            .login(
                "ann@example.com",
                "correct horse battery",
                redkeep::auth::sessions::LoginMeta::default(),
            )
            .unwrap();
        (
            format!("{}\n", key.key.expose()),
            format!("{}\n", login.token.expose()),
        )
    };
    let err = verify(&old_key);
    assert!(err.contains("expired at 2020-09-14"), "{err}");
    let validate = |t: &str| {
        cli.expect(&["session", "validate", "--token-stdin"], Some(t), 1)
            .1
    };
    let err = validate(&old_token);
    assert!(
        err.contains("not valid") && err.contains("expired at 2020-09"),
        "{err}"
    );
    let (token, _) = cli.expect(
        &["login", "ann@example.com", "--password-stdin"],
        Some("correct horse battery\n"),
        0,
    );
    let token = format!("{}\n", token.trim());
    cli.expect(&["session", "validate", "--token-stdin"], Some(&token), 0);
    cli.expect(&["session", "revoke", "--token-stdin"], Some(&token), 0);
    let err = validate(&token);
    assert!(
        err.contains("no session rks_") && err.contains("revoked"),
        "{err}"
    );
    assert!(!err.contains(token.trim()), "{err}");
}

/// `user avatar get` refuses to write the image's bytes to a terminal, as `export` refuses
/// its records, saying to redirect stdout.
#[test]
fn avatar_get_refuses_a_terminal() {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let cli = Cli::new();
    cli.init();
    user(&cli, "ann@example.com", &[]);
    let jpeg = [
        0xff_u8, 0xd8, 0xff, 0xe0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 0xff, 0xd9,
    ];
    let file = cli.dir.path().join("a.jpg");
    std::fs::write(&file, jpeg).unwrap();
    cli.expect(
        &[
            "user",
            "avatar",
            "set",
            "ann@example.com",
            file.to_str().unwrap(),
        ],
        None,
        0,
    );
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let terminal = std::fs::File::options()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("redkeep"))
        .env("REDKEEP_DATA_DIR", cli.data())
        .env("REDKEEP_ARGON2", common::FAST_ARGON2)
        .env_remove("REDKEEP_STORE_URL")
        .envs(cli.store.iter().map(|u| ("REDKEEP_STORE_URL", u)))
        .args(["user", "avatar", "get", "ann@example.com"])
        .stdout(terminal)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("redirect stdout"), "{err}");
    drop(master);
    // Into a pipe, as before.
    cli.expect(&["user", "avatar", "get", "ann@example.com"], None, 0);
}

/// Messages that name what to fix: the environment variable a bad value came from, a bad
/// REDKEEP_ARGON2 only where a password is hashed, a lifetime too long to count, an export
/// given to `restore`, a role name as it was typed.
#[test]
fn mistakes_are_blamed_on_what_to_fix() {
    let cli = Cli::new();
    cli.init();
    user(&cli, "ann@example.com", &[]);
    let out = cli
        .cmd(&["workspace", "show", "ann@example.com"])
        .env("REDKEEP_MAX_DOC_BYTES", "")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("environment variable REDKEEP_MAX_DOC_BYTES"),
        "{err}"
    );
    let (_, err) = cli.expect(&["--max-doc-bytes", "", "check"], None, 2);
    assert!(!err.contains("environment variable"), "{err}");

    let garbage = |args: &[&str], stdin: Option<&str>| {
        let mut c = cli.cmd(args);
        c.env("REDKEEP_ARGON2", "garbage");
        if let Some(s) = stdin {
            c.write_stdin(s);
        }
        c.output().unwrap()
    };
    let out = garbage(&["user", "list"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning") && err.contains("REDKEEP_ARGON2"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ann@example.com"));
    let out = garbage(
        &["user", "create", "x@example.com", "--password-stdin"],
        Some("correct horse battery\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REDKEEP_ARGON2"));

    let (_, err) = cli.expect(
        &[
            "login",
            "ann@example.com",
            "--password-stdin",
            "--ttl",
            "99999999999999999999d",
        ],
        Some("correct horse battery\n"),
        2,
    );
    assert!(err.contains("more than 100 years"), "{err}");

    let export = cli.dir.path().join("x.jsonl");
    cli.expect(&["export", "-o", export.to_str().unwrap()], None, 0);
    let (_, err) = cli.expect(&["restore", "--force", export.to_str().unwrap()], None, 1);
    assert!(
        err.contains("is an export") && err.contains("redkeep import"),
        "{err}"
    );

    let (_, err) = cli.expect(&["role", "create", "Ed itor", "--permission", "x"], None, 1);
    assert!(err.contains("\"Ed itor\""), "{err}");
}

/// Repeats and leftovers said as they are: unlocking a user who is not locked, a repeated
/// `org add-member` (a success that changes nothing, as a repeated `role grant` is), and a
/// stray file among the users' folders, which `check` names.
#[test]
fn repeats_and_strays_are_said_as_they_are() {
    let cli = Cli::new();
    cli.init();
    user(&cli, "ann@example.com", &[]);
    user(&cli, "bob@example.com", &[]);
    let (out, _) = cli.expect(&["user", "unlock", "bob@example.com"], None, 0);
    assert!(out.contains("was not locked"), "{out}");

    cli.expect(
        &["org", "create", "Acme", "--owner", "ann@example.com"],
        None,
        0,
    );
    let (out, _) = cli.expect(&["org", "add-member", "acme", "bob@example.com"], None, 0);
    assert!(out.contains("joined"), "{out}");
    let (out, _) = cli.expect(&["org", "add-member", "acme", "bob@example.com"], None, 0);
    assert!(
        out.contains("already") && out.contains("nothing changed"),
        "{out}"
    );
    let (_, err) = cli.expect(
        &[
            "org",
            "add-member",
            "acme",
            "bob@example.com",
            "--role",
            "admin",
        ],
        None,
        1,
    );
    assert!(err.contains("org set-role"), "{err}");

    cli.expect(&["check"], None, 0);
    let users = cli.data().join("workspaces/users");
    std::fs::create_dir_all(&users).unwrap();
    std::fs::write(users.join("stray.txt"), "x").unwrap();
    let (out, _) = cli.expect(&["check"], None, 1);
    assert!(
        out.contains("stray.txt") && out.contains("not a user's folder"),
        "{out}"
    );
}

/// A `workspace.json` removed by hand from a folder whose gallery holds pieces is named by
/// `check` as a note (the canvas and notes it held are lost unless put back; the check does
/// not fail, as the folder reads), and `workspace show` says the document it shows is an
/// empty one rather than show it as the file's.
#[test]
fn a_removed_workspace_document_is_noted_and_shown_as_empty() {
    let cli = Cli::new();
    cli.init();
    let id = user(&cli, "ann@example.com", &[]);
    cli.expect(
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"v\":1}"),
        0,
    );
    let doc = cli
        .data()
        .join(format!("workspaces/users/{id}/workspace.json"));
    let (text, _) = cli.expect(&["workspace", "show", "ann@example.com"], None, 0);
    assert!(!text.contains("no workspace.json"), "{text}");
    cli.expect(&["check"], None, 0);
    std::fs::remove_file(&doc).unwrap();
    let (out, err) = cli.expect(&["check"], None, 0);
    assert!(
        format!("{out}{err}").contains(&format!(
            "{} is missing though the gallery holds 1 piece(s): the user's document reads as \
             an empty one (no canvas, no notes); if it was removed by mistake, put it back \
             from a backup",
            doc.display()
        )),
        "{out}{err}"
    );
    let (text, _) = cli.expect(&["workspace", "show", "ann@example.com"], None, 0);
    assert!(
        text.contains("(no workspace.json: the document below is an empty one)"),
        "{text}"
    );
}
