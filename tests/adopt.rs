//! `redkeep adopt`: SQLite databases built with each seed app's documented tables, holding
//! bcrypt hashes made at cost 12, move in through the CLI; users log in with their original
//! passwords (and get argon2id), ids are kept (UUIDs as external ids), folders are served,
//! and `check` is clean. A dry run lists bad rows and creates nothing.
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::Cli;
use redkeep::auth::sessions::LoginMeta;
use redkeep::{Options, PasswordParams, Redkeep, Registration};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

/// bcrypt at cost 12, made once per password (each costs a quarter of a second).
fn bcrypt12(password: &str) -> String {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    cache
        .lock()
        .unwrap()
        .entry(password.to_string())
        .or_insert_with(|| bcrypt::hash(password, 12).unwrap())
        .clone()
}

fn database(cli: &Cli, ddl: &str) -> (PathBuf, Connection) {
    let path = cli.dir.path().join("old.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(ddl).unwrap();
    (path, conn)
}

fn adopt(cli: &Cli, db: &Path, extra: &[&str], code: i32) -> (Value, String) {
    let from = format!("sqlite:{}", db.display());
    let mut args = vec!["adopt", "--from", &from];
    args.extend_from_slice(extra);
    args.push("--json");
    let (out, err) = cli.expect(&args, None, code);
    (serde_json::from_str(&out).unwrap_or(Value::Null), err)
}

fn open(cli: &Cli) -> Redkeep {
    Redkeep::open(
        cli.data(),
        Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .create(false),
    )
    .unwrap()
}

fn login_ok(rk: &Redkeep, login: &str, password: &str) {
    rk.sessions()
        .login(login, password, LoginMeta::default())
        .unwrap_or_else(|e| panic!("{login} cannot log in with the old password: {e}"));
}

// Seed 000 (code-monet): users and invite codes; a folder per user.
const CODE_MONET: &str = "
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT 1,
    created_at DATETIME NOT NULL,
    updated_at DATETIME
);
CREATE TABLE invite_codes (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    created_at DATETIME NOT NULL,
    used_at DATETIME,
    used_by_user_id INTEGER REFERENCES users(id),
    is_revoked BOOLEAN NOT NULL DEFAULT 0
);";

#[test]
fn code_monet_users_invites_and_folders_move_in() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    let users = [
        // Shorter than redkeep asks of a new password: the old app allowed it, and it
        // keeps working, the first login's rehash included.
        (3, "alice@example.com", "alice1", true),
        (7, "bob@example.com", "bob password", false),
    ];
    for (id, email, pw, active) in users {
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, ?4, '2024-03-01 09:00:00', NULL)",
            params![id, email, bcrypt12(pw), active],
        )
        .unwrap();
    }
    conn.execute_batch(
        "INSERT INTO invite_codes VALUES (1, 'WELCOME-2024', '2024-03-02 10:00:00', NULL, NULL, 0);
         INSERT INTO invite_codes VALUES (2, 'USED-CODE-1', '2024-03-02 10:00:00', '2024-03-03', 3, 0);
         INSERT INTO invite_codes VALUES (3, 'REVOKED-CODE', '2024-03-02 10:00:00', NULL, NULL, 1);",
    )
    .unwrap();
    drop(conn);
    // agent_workspace/users/{id}/ as the app keeps it.
    let old = cli.dir.path().join("agent_workspace");
    let alice = old.join("users/3");
    std::fs::create_dir_all(alice.join("gallery")).unwrap();
    let doc = r#"{"canvas":{"strokes":[1,2]},"notes":["first"],"piece_count":2,"big":92233720368547775808}"#;
    std::fs::write(alice.join("workspace.json"), doc).unwrap();
    std::fs::write(
        alice.join("gallery/piece_000001.json"),
        r#"{"title":"dawn"}"#,
    )
    .unwrap();
    std::fs::write(
        alice.join("gallery/piece_000002.json"),
        r#"{"title":"dusk"}"#,
    )
    .unwrap();

    let workspaces = old.to_str().unwrap().to_string();
    let (report, _) = adopt(
        &cli,
        &db,
        &["--preset", "code-monet", "--workspaces", &workspaces],
        0,
    );
    assert_eq!(report["adopted"], true, "{report}");
    assert_eq!(report["counts"]["users"], 2);
    assert_eq!(report["counts"]["invites"], 3);
    assert_eq!(report["counts"]["pieces"], 2);

    let rk = open(&cli);
    let a = rk.users().get(3).unwrap().expect("ids are kept");
    assert_eq!(a.email, "alice@example.com");
    assert!(!rk.users().get(7).unwrap().unwrap().is_active);
    assert_eq!(rk.users().password_info(3).unwrap().algorithm, "bcrypt");
    login_ok(&rk, "alice@example.com", "alice1");
    assert_eq!(
        rk.users().password_info(3).unwrap().algorithm,
        "argon2id",
        "the hash is replaced at the first login"
    );
    login_ok(&rk, "alice@example.com", "alice1");
    assert!(
        rk.users()
            .authenticate("bob@example.com", "bob password")
            .is_err()
    );

    let ws = rk.workspaces().read(3).unwrap();
    assert_eq!(ws.notes, json!(["first"]));
    assert_eq!(ws.piece_count, 2);
    assert_eq!(ws.other["big"].to_string(), "92233720368547775808");
    assert_eq!(rk.workspaces().load_piece(3, 2).unwrap()["title"], "dusk");

    // The unused code registers; the used and revoked ones do not.
    let reg = |code: &str, email: &str| {
        rk.users().register(Registration {
            email: email.into(),
            password: "new user password".into(),
            invite: Some(code.into()),
            ..Registration::default()
        })
    };
    let carol = reg("WELCOME-2024", "carol@example.com").unwrap();
    assert!(carol.id > 7, "new ids come after the adopted ones");
    assert!(reg("USED-CODE-1", "dan@example.com").is_err());
    assert!(reg("REVOKED-CODE", "eve@example.com").is_err());
    assert!(rk.check(false).unwrap().ok);
    drop(rk);
    cli.expect(&["check"], None, 0);
}

/// A symlink in the old workspace tree (a user's folder, a gallery, a piece, pointing at
/// another folder or at any file the operator may read) is never followed: a dry run names
/// it, the real run refuses and makes nothing, and no file it points at reaches an account.
#[test]
fn symlinks_in_the_old_workspaces_are_refused_not_followed() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    for (id, email) in [
        (1, "a@example.com"),
        (2, "b@example.com"),
        (3, "c@example.com"),
    ] {
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, 1, '2024-03-01 09:00:00', NULL)",
            params![id, email, bcrypt12("a password")],
        )
        .unwrap();
    }
    drop(conn);
    let base = cli.dir.path();
    let elsewhere = base.join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("gallery")).unwrap();
    std::fs::write(
        elsewhere.join("workspace.json"),
        r#"{"notes":["not yours"]}"#,
    )
    .unwrap();
    std::fs::write(
        elsewhere.join("gallery/piece_000001.json"),
        r#"{"private":"elsewhere"}"#,
    )
    .unwrap();
    let secret = base.join("secret.json");
    std::fs::write(&secret, r#"{"api_token":"OTHER-TENANT-SECRET"}"#).unwrap();
    let old = base.join("aw/users");
    std::fs::create_dir_all(old.join("2/gallery")).unwrap();
    std::fs::create_dir_all(old.join("3")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, old.join("1")).unwrap();
    std::fs::write(old.join("2/workspace.json"), r#"{"notes":[]}"#).unwrap();
    std::os::unix::fs::symlink(&secret, old.join("2/gallery/piece_000001.json")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("gallery"), old.join("3/gallery")).unwrap();
    let workspaces = base.join("aw").to_str().unwrap().to_string();
    for dry in [true, false] {
        let mut args = vec!["--preset", "code-monet", "--workspaces", &workspaces];
        if dry {
            args.push("--dry-run");
        }
        let (report, _) = adopt(&cli, &db, &args, 1);
        assert_eq!(report["adopted"], false, "{report}");
        let problems = report["problems"].to_string();
        for link in [
            "users/1 is a symlink",
            "users/2/gallery/piece_000001.json is a symlink",
            "users/3/gallery is a symlink",
        ] {
            assert!(
                problems.contains(link),
                "dry run {dry}: no {link:?} in {problems}"
            );
        }
        assert!(!problems.contains("OTHER-TENANT-SECRET"));
        assert!(
            !cli.data().join(redkeep::STORE_FILE).exists(),
            "dry run {dry}"
        );
    }
    // With the links gone, the same adoption goes through.
    for link in ["1", "2/gallery/piece_000001.json", "3/gallery"] {
        std::fs::remove_file(old.join(link)).unwrap();
    }
    // A piece numbered past what the store's galleries hold is named, and nothing adopted:
    // it was taken, and the adopted store's export then did not import, and the gallery
    // saved no more pieces.
    let huge = old.join("2/gallery/piece_9007199254740993.json");
    std::fs::write(&huge, r#"{"title":"far"}"#).unwrap();
    let (report, _) = adopt(
        &cli,
        &db,
        &["--preset", "code-monet", "--workspaces", &workspaces],
        1,
    );
    assert_eq!(report["adopted"], false, "{report}");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("piece_9007199254740993.json") && problems.contains("outside 1 to"),
        "{problems}"
    );
    assert!(!cli.data().join(redkeep::STORE_FILE).exists());
    std::fs::remove_file(&huge).unwrap();
    let (report, _) = adopt(
        &cli,
        &db,
        &["--preset", "code-monet", "--workspaces", &workspaces],
        0,
    );
    assert_eq!(report["adopted"], true, "{report}");
}

/// An old folder whose `piece_count` drifted from its gallery moves in with the gallery's
/// count (a repair would set it so; adopt said "nothing was adopted" and left the store),
/// and its files keep their times, as a move or an import keeps them.
#[test]
fn old_folders_move_in_with_the_gallerys_count_and_their_files_times() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    conn.execute(
        "INSERT INTO users VALUES (1, 'a@example.com', ?1, 1, '2024-03-01 09:00:00', NULL)",
        params![bcrypt12("a password")],
    )
    .unwrap();
    drop(conn);
    let old = cli.dir.path().join("aw/users/1");
    std::fs::create_dir_all(old.join("gallery")).unwrap();
    std::fs::write(
        old.join("workspace.json"),
        r#"{"notes":["kept"],"piece_count":0}"#,
    )
    .unwrap();
    std::fs::write(old.join("gallery/piece_000001.json"), r#"{"a":1}"#).unwrap();
    let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    for f in ["workspace.json", "gallery/piece_000001.json"] {
        std::fs::File::options()
            .write(true)
            .open(old.join(f))
            .and_then(|file| file.set_modified(then))
            .unwrap();
    }
    let workspaces = cli.dir.path().join("aw").to_str().unwrap().to_string();
    let (report, _) = adopt(
        &cli,
        &db,
        &["--preset", "code-monet", "--workspaces", &workspaces],
        0,
    );
    assert_eq!(report["adopted"], true, "{report}");
    let rk = open(&cli);
    let doc = rk.workspaces().read(1).unwrap();
    assert_eq!((doc.piece_count, doc.notes.clone()), (1, json!(["kept"])));
    assert!(rk.check(false).unwrap().ok);
    let new = cli.data().join("workspaces/users/1");
    for f in ["workspace.json", "gallery/piece_000001.json"] {
        assert_eq!(
            std::fs::metadata(new.join(f)).unwrap().modified().unwrap(),
            then,
            "{f}"
        );
    }
}

/// A mapping whose folder pattern does not name the user's id would give every account the
/// one folder it names: refused with what to write instead.
#[test]
fn a_folder_pattern_without_the_id_is_refused() {
    let text = redkeep::ops::adopt::PRESETS
        .iter()
        .find(|(n, _)| *n == "code-monet")
        .unwrap()
        .1
        .to_string();
    assert!(text.contains("folder = \"users/{id}\""), "{text}");
    redkeep::ops::adopt::Mapping::parse(&text).unwrap();
    let err = redkeep::ops::adopt::Mapping::parse(
        &text.replace("folder = \"users/{id}\"", "folder = \"users/shared\""),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("has no {id}"), "{err}");
}

// Seed 001 (puntini): usernames, roles with JSON permissions, user_roles, agent sessions.
const PUNTINI: &str = "
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username VARCHAR(50) NOT NULL UNIQUE,
    email VARCHAR(255) NOT NULL UNIQUE,
    hashed_password VARCHAR(255) NOT NULL,
    full_name VARCHAR(255),
    is_active BOOLEAN NOT NULL DEFAULT 1,
    is_verified BOOLEAN NOT NULL DEFAULT 0,
    created_at DATETIME NOT NULL,
    updated_at DATETIME,
    last_login DATETIME
);
CREATE TABLE roles (
    id INTEGER PRIMARY KEY,
    name VARCHAR(50) NOT NULL UNIQUE,
    description TEXT,
    permissions JSON NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    is_system BOOLEAN NOT NULL DEFAULT 0,
    created_at DATETIME NOT NULL
);
CREATE TABLE user_roles (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    role_id INTEGER NOT NULL REFERENCES roles(id),
    assigned_at DATETIME NOT NULL,
    assigned_by INTEGER REFERENCES users(id),
    is_active BOOLEAN NOT NULL DEFAULT 1
);
CREATE TABLE agent_sessions (
    id INTEGER PRIMARY KEY,
    session_id VARCHAR(255) NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users(id),
    name VARCHAR(255),
    goal TEXT,
    status VARCHAR(50),
    current_step VARCHAR(255),
    progress JSON,
    failures JSON,
    artifacts JSON,
    context JSON,
    escalation JSON,
    created_at DATETIME NOT NULL,
    updated_at DATETIME
);";

#[test]
fn puntini_users_roles_and_agent_sessions_move_in() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, PUNTINI);
    for (id, username, email, pw) in [
        (1, "admin", "admin@puntini.dev", "admin123"),
        (2, "user", "user@puntini.dev", "user123"),
        (3, "carol", "carol@example.com", "carol's own password"),
    ] {
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, ?4, ?5, 1, 1, '2024-01-01T08:00:00', NULL, NULL)",
            params![id, username, email, bcrypt12(pw), username.to_uppercase()],
        )
        .unwrap();
    }
    conn.execute_batch(r#"
        INSERT INTO roles VALUES (1, 'admin', 'Admin', '["user_management","role_management","system_admin"]', 100, 1, '2024-01-01');
        INSERT INTO roles VALUES (2, 'user', 'User', '["basic_access","session_management","profile_management"]', 10, 1, '2024-01-01');
        INSERT INTO roles VALUES (3, 'editor', 'Edits', '["docs.edit","docs.view"]', 50, 0, '2024-01-01');
        INSERT INTO user_roles VALUES (1, 1, 1, '2024-01-01', NULL, 1);
        INSERT INTO user_roles VALUES (2, 2, 2, '2024-01-01', 1, 1);
        INSERT INTO user_roles VALUES (3, 3, 3, '2024-01-01', 1, 1);
        INSERT INTO agent_sessions VALUES (1, 'sess-abc', 3, 'Research', 'find papers', 'active', 'planning',
            '["step 1 done","step 2"]', '[]', '["notes.md"]', '{"topic":"graphs"}', NULL, '2024-02-01 12:00:00', '2024-02-01 12:30:00');
    "#).unwrap();
    drop(conn);
    let (report, _) = adopt(&cli, &db, &["--preset", "puntini"], 0);
    assert_eq!(report["adopted"], true, "{report}");
    let notes = report["notes"].to_string();
    assert!(notes.contains("published default password"), "{notes}");
    // admin and user were on the published defaults: adopted without a password.
    assert_eq!(report["counts"]["without_password"], 2, "{report}");
    // Every account held a role and one is an administrator: neither is noted.
    assert!(!notes.contains("active administrator"), "{notes}");
    assert!(!notes.contains("default role"), "{notes}");

    let rk = open(&cli);
    let admin = rk.users().find("admin").unwrap();
    assert!(admin.is_admin, "the admin role sets the flag");
    assert!(
        admin.must_change_password,
        "admin123 is a documented default"
    );
    assert!(!rk.users().find("carol").unwrap().must_change_password);
    // A published default password is not kept: anyone could log in with it and make the
    // account theirs by changing it. An operator sets one.
    for (login, published) in [("admin", "admin123"), ("user", "user123")] {
        assert!(
            rk.sessions()
                .login(login, published, LoginMeta::default())
                .is_err(),
            "{login} still logs in with the published {published}"
        );
    }
    rk.users()
        .set_password(admin.id, "a password of the operator's")
        .unwrap();
    login_ok(&rk, "admin", "a password of the operator's");
    login_ok(&rk, "carol", "carol's own password");
    assert!(rk.roles().has_permission(admin.id, "anything").unwrap());
    let carol = rk.users().find("carol").unwrap();
    assert!(rk.roles().has_permission(carol.id, "docs.edit").unwrap());
    assert!(!rk.roles().has_permission(carol.id, "basic_access").unwrap());
    let editor = rk.roles().get("editor").unwrap();
    assert_eq!(editor.priority, 50);
    let user_role = rk.roles().get("user").unwrap();
    assert!(user_role.is_system);
    let agent = rk.agents().get("sess-abc").unwrap().unwrap();
    assert_eq!(agent.user_id, carol.id);
    assert_eq!(agent.state.progress, vec!["step 1 done", "step 2"]);
    assert_eq!(agent.state.current_step.as_deref(), Some("planning"));
    assert!(agent.state.context.contains("graphs"));
    assert!(rk.check(false).unwrap().ok);
}

// Seed 002 (tenancy): workspaces with slugs, members, current_workspace_id.
const TENANCY: &str = "
CREATE TABLE workspaces (
    id INTEGER PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    slug VARCHAR(255) NOT NULL UNIQUE,
    description TEXT,
    created_at DATETIME NOT NULL
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username VARCHAR(50) NOT NULL UNIQUE,
    email VARCHAR(255) NOT NULL UNIQUE,
    hashed_password VARCHAR(255) NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT 1,
    created_at DATETIME NOT NULL,
    current_workspace_id INTEGER REFERENCES workspaces(id)
);
CREATE TABLE workspace_members (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL REFERENCES workspaces(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    role VARCHAR(20) NOT NULL,
    created_at DATETIME NOT NULL
);";

#[test]
fn tenancy_workspaces_become_orgs_with_owners_and_current_orgs() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, TENANCY);
    let hash = bcrypt12("tenant password");
    conn.execute_batch(
        "INSERT INTO workspaces VALUES (1, 'Default Workspace', 'default', NULL, '2024-01-01');
         INSERT INTO workspaces VALUES (2, 'ann''s Workspace', 'ann-workspace', NULL, '2024-01-02');",
    )
    .unwrap();
    for (id, name, current) in [(1, "ann", Some(2)), (2, "ben", Some(1)), (3, "cid", None)] {
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, ?4, 1, '2024-01-01', ?5)",
            params![id, name, format!("{name}@example.com"), hash, current],
        )
        .unwrap();
    }
    conn.execute_batch(
        "INSERT INTO workspace_members VALUES (1, 1, 1, 'admin', '2024-01-01');
         INSERT INTO workspace_members VALUES (2, 1, 2, 'admin', '2024-01-02');
         INSERT INTO workspace_members VALUES (3, 1, 3, 'member', '2024-01-03');
         INSERT INTO workspace_members VALUES (4, 2, 1, 'admin', '2024-01-02');",
    )
    .unwrap();
    drop(conn);
    let (report, _) = adopt(&cli, &db, &["--preset", "tenancy"], 0);
    assert_eq!(report["adopted"], true, "{report}");
    let rk = open(&cli);
    let default = rk.orgs().by_slug("default").unwrap().unwrap();
    assert!(default.is_default);
    assert_eq!(default.id, 1);
    assert_eq!(
        rk.orgs().role_in(1, 1).unwrap(),
        Some(redkeep::auth::orgs::OrgRole::Owner),
        "the first admin owns a workspace that had no owner"
    );
    assert_eq!(rk.users().find("ann").unwrap().current_org_id, Some(2));
    assert_eq!(rk.users().find("ben").unwrap().current_org_id, Some(1));
    assert_eq!(
        rk.users().find("cid").unwrap().current_org_id,
        Some(1),
        "without a current workspace: their first one"
    );
    login_ok(&rk, "ben", "tenant password");
    assert!(rk.check(false).unwrap().ok);
    // Personal orgs made later get slugs after the adopted ones.
    assert_eq!(rk.orgs().member_count(1).unwrap(), 3);
}

// Seed 004 (chat): UUID ids, bcrypt + salt, admin flag, avatars, organizations.
const CHAT: &str = "
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT,
    password_hash TEXT NOT NULL,
    salt TEXT,
    is_admin INTEGER NOT NULL DEFAULT 0,
    avatar BLOB,
    last_login_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_users_is_admin ON users(is_admin);
CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE organization_members (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    created_at TEXT NOT NULL
);";

const ANN: &str = "0b6f6a8e-5c0e-4b8a-9a57-1c2d3e4f5a6b";
const BEA: &str = "7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6";
const ACME: &str = "c0ffee00-1111-4222-8333-444455556666";

#[test]
fn chat_users_with_uuids_salts_and_avatars_move_in() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, CHAT);
    // Ann's salt column repeats the bcrypt salt; Bea's was appended to the password.
    let ann_hash = bcrypt12("ann password");
    let ann_salt = ann_hash[..29].to_string();
    let bea_hash = bcrypt12("bea passwordpepper-42");
    let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F'];
    conn.execute(
        "INSERT INTO users VALUES (?1, 'ann@example.com', 'Ann', ?2, ?3, 1, ?4, NULL, '2024-05-01T10:00:00Z', '2024-05-01T10:00:00Z')",
        params![ANN, ann_hash, ann_salt, jpeg.to_vec()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO users VALUES (?1, 'bea@example.com', 'Bea', ?2, 'pepper-42', 0, NULL, '2024-06-01 08:00:00', '2024-05-02 10:00:00', '2024-05-02 10:00:00')",
        params![BEA, bea_hash],
    )
    .unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO organizations VALUES ('{ACME}', 'Acme Labs', 'R&D', 0, '2024-05-01', '2024-05-01');
         INSERT INTO organization_members VALUES ('m1', '{ACME}', '{ANN}', 'owner', '2024-05-01');
         INSERT INTO organization_members VALUES ('m2', '{ACME}', '{BEA}', 'member', '2024-05-03');"
    ))
    .unwrap();
    drop(conn);
    let (report, _) = adopt(&cli, &db, &["--preset", "chat"], 0);
    assert_eq!(report["adopted"], true, "{report}");
    assert_eq!(report["counts"]["avatars"], 1);

    let rk = open(&cli);
    let ann = rk
        .users()
        .by_external_id(ANN)
        .unwrap()
        .expect("UUIDs are kept");
    let bea = rk.users().by_external_id(BEA).unwrap().unwrap();
    assert!(ann.is_admin);
    assert!(rk.roles().has_permission(ann.id, "anything").unwrap());
    assert!(!bea.is_admin);
    assert_eq!(rk.users().avatar(ann.id).unwrap().unwrap(), jpeg.to_vec());
    assert_eq!(
        rk.users().password_info(bea.id).unwrap().algorithm,
        "bcrypt+salt"
    );
    login_ok(&rk, "ann@example.com", "ann password");
    login_ok(&rk, "bea@example.com", "bea password");
    assert_eq!(
        rk.users().password_info(bea.id).unwrap().algorithm,
        "argon2id"
    );
    login_ok(&rk, "bea@example.com", "bea password");
    let acme = rk.orgs().by_external_id(ACME).unwrap().unwrap();
    assert_eq!(acme.slug, "acme-labs");
    assert_eq!(bea.current_org_id, Some(acme.id));
    assert_eq!(
        rk.orgs().role_in(bea.id, acme.id).unwrap(),
        Some(redkeep::auth::orgs::OrgRole::Member)
    );
    assert_eq!(
        bea.last_login_at.unwrap().to_string(),
        "2024-06-01T08:00:00Z"
    );
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn a_dry_run_lists_every_bad_row_and_creates_nothing() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, PUNTINI);
    let hash = bcrypt12("whatever pw");
    for (id, username, email, pw) in [
        (1, "ann", "ann@example.com", hash.as_str()),
        (2, "ann2", "ANN@example.com", hash.as_str()),
        (3, "cyd", "cyd@example.com", ""),
        (4, "dee", "dee@example.com", "plain text password"),
    ] {
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, ?4, NULL, 1, 0, '2024-01-01', NULL, NULL)",
            params![id, username, email, pw],
        )
        .unwrap();
    }
    conn.execute_batch(
        r#"INSERT INTO roles VALUES (1, 'editor', NULL, '["docs.edit", ', 0, 0, '2024-01-01');
           INSERT INTO roles VALUES (2, 'owner', NULL, '["all"]', 1000, 0, '2024-01-01');
           INSERT INTO roles VALUES (3, 'admin', NULL, '["all"]', 1000, 1, '2024-01-01');"#,
    )
    .unwrap();
    drop(conn);
    let (report, err) = adopt(&cli, &db, &["--preset", "puntini", "--dry-run"], 1);
    // Exit code 1 comes with its one line on stderr.
    assert_eq!(
        err.trim(),
        "error: the dry run found rows or files that cannot be taken, listed in the report"
    );
    assert_eq!(report["adopted"], false);
    assert_eq!(report["dry_run"], true);
    let problems: Vec<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let has = |row: &str, words: &str| {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(row) && p.contains(words)),
            "no problem for {row} about {words:?} in {problems:#?}"
        )
    };
    has(
        "users row 2 (id 2)",
        "ann@example.com came before in users row 1 (id 1)",
    );
    has("users row 3 (id 3)", "empty");
    has("users row 4 (id 4)", "never stored");
    has("roles row 1 (id 1)", "JSON array");
    // A new role would outrank admin; redkeep's own admin keeps its rank, and takes the
    // old permissions.
    has("roles row 2 (id 2)", "priority 1000 is outside");
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(!cli.data().exists(), "a dry run creates nothing");

    // The real run refuses the same rows and leaves nothing behind either.
    let (report, err) = adopt(&cli, &db, &["--preset", "puntini"], 1);
    assert_eq!(
        err.trim(),
        "error: nothing was adopted: some rows or files cannot be taken, as listed in the report"
    );
    assert_eq!(report["adopted"], false);
    assert_eq!(report["problems"].as_array().unwrap().len(), 5);
    assert!(!cli.data().join(redkeep::STORE_FILE).exists());
}

#[test]
fn any_schema_moves_in_with_a_mapping_file_and_mistakes_are_named() {
    let cli = Cli::new();
    let (db, conn) = database(
        &cli,
        "CREATE TABLE accounts (pk INTEGER PRIMARY KEY, mail TEXT, secret TEXT, since INTEGER);",
    );
    let pbkdf2 = {
        use pbkdf2::password_hash::PasswordHasher;
        pbkdf2::Pbkdf2::new(
            pbkdf2::Algorithm::Pbkdf2Sha256,
            pbkdf2::Params::new(1000).unwrap(),
        )
        .hash_password_with_salt(b"mapped password", b"0123456789abcdef")
        .unwrap()
        .to_string()
    };
    conn.execute(
        "INSERT INTO accounts VALUES (41, 'map@example.com', ?1, 1700000000)",
        params![pbkdf2],
    )
    .unwrap();
    drop(conn);
    let map = cli.dir.path().join("map.toml");
    std::fs::write(
        &map,
        "[users]\nquery = \"SELECT pk AS id, mail AS email, secret AS password_hash, since AS created_at, 1 AS colour FROM accounts\"\n",
    )
    .unwrap();
    let map_arg = map.to_str().unwrap().to_string();
    let (report, _) = adopt(&cli, &db, &["--map", &map_arg, "--dry-run"], 1);
    assert!(
        report["problems"][0].as_str().unwrap().contains("colour"),
        "{report}"
    );
    std::fs::write(
        &map,
        "[users]\nquery = \"SELECT pk AS id, mail AS email, secret AS password_hash, since AS created_at FROM accounts\"\n",
    )
    .unwrap();
    let (report, _) = adopt(&cli, &db, &["--map", &map_arg], 0);
    assert_eq!(report["adopted"], true, "{report}");
    let rk = open(&cli);
    login_ok(&rk, "map@example.com", "mapped password");
    assert_eq!(
        rk.users().get(41).unwrap().unwrap().created_at.0,
        1_700_000_000
    );
    drop(rk);

    // Mistakes an operator makes get a sentence that says what to do.
    let fresh = cli.dir.path().join("fresh");
    let fresh = fresh.to_str().unwrap();
    let from = format!("sqlite:{}", db.display());
    let garbage = cli.dir.path().join("garbage.db");
    std::fs::write(&garbage, b"garbage, not a database\n").unwrap();
    let garbage = format!("sqlite:{}", garbage.display());
    for (args, says) in [
        (
            vec!["--from", "sqlite:/nonexistent.db", "--preset", "chat"],
            "/nonexistent.db does not exist",
        ),
        // The old database's own problems are named, never hidden behind another error.
        (vec!["--from", &garbage, "--preset", "chat"], "garbage.db"),
        (
            vec!["--from", &from, "--preset", "chat"],
            "query fails: no such table",
        ),
        (
            vec!["--from", &from, "--preset", "chat", "--dry-run"],
            "query fails: no such table",
        ),
        (vec!["--from", &from, "--preset", "nope"], "code-monet"),
        (
            vec!["--from", "postgres://x", "--preset", "chat"],
            "sqlite:PATH",
        ),
    ] {
        let mut all = vec!["--data-dir", fresh, "adopt"];
        all.extend(args);
        let (_, err) = cli.expect(&all, None, 1);
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("internal error"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let (_, err) = cli.expect(&["adopt", "--from", &from, "--preset", "chat"], None, 1);
    assert!(err.contains("already holds a store"), "{err}");
    assert!(!std::path::Path::new(fresh).exists());
}

#[test]
fn adoptions_into_one_new_data_dir_at_once_leave_exactly_one_store() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    for id in 1..=20 {
        conn.execute(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, '2024-01-01 00:00:00')",
            params![id, format!("u{id}@example.com"), bcrypt12("old password")],
        )
        .unwrap();
    }
    drop(conn);
    let target = cli.dir.path().join("new");
    let from = format!("sqlite:{}", db.display());
    let runs: Vec<_> = (0..3)
        .map(|_| {
            use assert_cmd::cargo::CommandCargoExt;
            std::process::Command::cargo_bin("redkeep")
                .unwrap()
                .env("REDKEEP_ARGON2", common::FAST_ARGON2)
                .env_remove("REDKEEP_STORE_URL")
                .args([
                    "--data-dir",
                    target.to_str().unwrap(),
                    "adopt",
                    "--from",
                    &from,
                    "--preset",
                    "code-monet",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outcomes: Vec<_> = runs
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "exactly one adoption succeeds: {outcomes:?}");
    for o in outcomes.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("already holds a store"), "{err}");
    }
    let rk = Redkeep::open(
        &target,
        Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .create(false),
    )
    .unwrap();
    assert_eq!(rk.users().count().unwrap(), 20);
    assert!(rk.check(false).unwrap().ok);
}

/// An old database another program holds locked for writing is named as locked, with the
/// way out (stop that program), not as an unreadable file; nothing is created.
#[test]
fn a_locked_source_is_named_as_locked() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    // A rollback-journal database under an exclusive lock: no reader gets in.
    conn.execute_batch(
        "PRAGMA journal_mode=DELETE; PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;
         INSERT INTO invite_codes VALUES (1, 'HELD', '2024-03-02 10:00:00', NULL, NULL, 0);",
    )
    .unwrap();
    let (_, err) = adopt(&cli, &db, &["--preset", "code-monet"], 1);
    assert!(
        err.contains("is locked by a program writing it") && err.contains("stop the application"),
        "{err}"
    );
    assert!(!err.contains("not a readable"), "{err}");
    assert!(!cli.data().join(redkeep::STORE_FILE).exists());
    conn.execute_batch("COMMIT;").unwrap();
    drop(conn);
    adopt(&cli, &db, &["--preset", "code-monet"], 0);
}

/// A mapping reading `accounts` (TEXT ids) with the default folder pattern `users/{id}`.
const ACCOUNTS: &str =
    "CREATE TABLE accounts (id TEXT PRIMARY KEY, mail TEXT, secret TEXT, name TEXT);";

fn accounts_map(cli: &Cli, extra: &str) -> String {
    let map = cli.dir.path().join("accounts.toml");
    std::fs::write(
        &map,
        format!(
            "[users]\nquery = \"SELECT id, mail AS email, secret AS password_hash, name FROM accounts\"\n{extra}"
        ),
    )
    .unwrap();
    map.to_str().unwrap().to_string()
}

fn problems_of(report: &Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems in {report}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn notes_of(report: &Value) -> Vec<String> {
    report["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes in {report}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// A text id written as a path (`./5`, `5/`) named user 5's folder, and its account got
/// user 5's files: such ids are refused by row (the dry run and the real run alike), and
/// nothing is made.
#[test]
fn text_ids_naming_another_users_folder_are_refused() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, ACCOUNTS);
    let hash = bcrypt12("a password");
    for (id, mail) in [
        ("5", "five@example.com"),
        ("./5", "dot@example.com"),
        ("5/", "slash@example.com"),
        ("..", "up@example.com"),
        ("a\\b", "back@example.com"),
        ("nul\0x", "nul@example.com"),
    ] {
        conn.execute(
            "INSERT INTO accounts VALUES (?1, ?2, ?3, NULL)",
            params![id, mail, hash],
        )
        .unwrap();
    }
    drop(conn);
    let old = cli.dir.path().join("aw/users/5");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("workspace.json"), r#"{"notes":["five's own"]}"#).unwrap();
    let map = accounts_map(&cli, "");
    let workspaces = cli.dir.path().join("aw").to_str().unwrap().to_string();
    for dry in [true, false] {
        let mut args = vec!["--map", &map, "--workspaces", &workspaces];
        if dry {
            args.push("--dry-run");
        }
        let (report, _) = adopt(&cli, &db, &args, 1);
        assert_eq!(report["adopted"], false, "{report}");
        let problems = problems_of(&report);
        for (row, id) in [
            (2, r#""./5""#),
            (3, r#""5/""#),
            (4, r#""..""#),
            (5, r#""a\\b""#),
            (6, r#""nul\0x""#),
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("users row {row}:"))
                        && p.contains(&format!("the id {id} holds"))),
                "dry run {dry}: no problem for row {row} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(!cli.data().join(redkeep::STORE_FILE).exists());
    }
}

/// Ids past the largest redkeep keeps (which overflowed the numbering of text ids, or raised
/// the sequence past it so that no one could register), hashes no password can match or
/// that cost too much, text that is not UTF-8 and invites allowing no use are refused by
/// row, each naming why.
#[test]
fn ids_past_the_largest_hashes_that_never_verify_and_bad_values_are_refused_by_row() {
    let cli = Cli::new();
    let (db, conn) = database(
        &cli,
        &format!("{ACCOUNTS} CREATE TABLE codes (code TEXT, max_uses INTEGER);"),
    );
    let hash = bcrypt12("a password");
    let pbkdf2_999 = {
        use pbkdf2::password_hash::PasswordHasher;
        pbkdf2::Pbkdf2::new(
            pbkdf2::Algorithm::Pbkdf2Sha256,
            pbkdf2::Params::new(1000).unwrap(),
        )
        .hash_password_with_salt(b"a password", b"0123456789abcdef")
        .unwrap()
        .to_string()
        .replace("i=1000", "i=999")
    };
    let costly = format!("$2b$31${}", &hash[7..]);
    for (id, mail, secret) in [
        ("9223372036854775807", "max@example.com", hash.as_str()),
        ("uuid-a", "uuid@example.com", hash.as_str()),
        ("9223372036854775808", "past@example.com", hash.as_str()),
        ("99999999999999999999", "far@example.com", hash.as_str()),
        ("6", "pbkdf2@example.com", pbkdf2_999.as_str()),
        ("7", "costly@example.com", costly.as_str()),
        ("3", "three@example.com", hash.as_str()),
        ("003", "twin@example.com", hash.as_str()),
    ] {
        conn.execute(
            "INSERT INTO accounts VALUES (?1, ?2, ?3, NULL)",
            params![id, mail, secret],
        )
        .unwrap();
    }
    conn.execute_batch(
        "INSERT INTO accounts SELECT '8', 'latin1@example.com', secret, CAST(X'416e6e' || X'e9' AS TEXT)
             FROM accounts WHERE id = 'uuid-a';
         INSERT INTO codes VALUES ('CODE-ZERO', 0);
         INSERT INTO codes VALUES ('CODE-NEG', -1);
         INSERT INTO codes VALUES ('CODE-ONE', 1);",
    )
    .unwrap();
    drop(conn);
    let map = accounts_map(
        &cli,
        "[invites]\nquery = \"SELECT code, max_uses FROM codes\"\n",
    );
    let (report, err) = adopt(&cli, &db, &["--map", &map, "--dry-run"], 1);
    assert!(!err.contains("panicked"), "{err}");
    let problems = problems_of(&report);
    let has = |row: &str, words: &str| {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(row) && p.contains(words)),
            "no problem for {row} about {words:?} in {problems:#?}"
        )
    };
    has("users row 2 (id uuid-a)", "no id is left");
    has(
        "users row 3:",
        "id 9223372036854775808 is larger than the largest id redkeep keeps (9223372036854775807)",
    );
    has("users row 4:", "id 99999999999999999999 is larger");
    has("users row 5 (id 6)", "\"i=999,l=32\"");
    has("users row 5 (id 6)", "no password can match");
    has("users row 6 (id 7)", "at most 16");
    has(
        "users row 8 (id 3)",
        "the id 3 came before (two rows share it; ids are compared as numbers",
    );
    has("users row 9 (id 8)", "name holds bytes that are not UTF-8");
    has("invites row 1", "max_uses 0 allows no use");
    has("invites row 2", "max_uses -1 allows no use");
    assert_eq!(problems.len(), 9, "{problems:#?}");
    assert!(!problems.iter().any(|p| p.contains(&hash[7..])));
}

/// What of the old workspaces adopt does not copy (files beside the workspace, gallery
/// files that are not pieces, folders no adopted user has) was dropped without a word: it
/// is named in the notes, a bounded list with the count, alike in the dry run and the real
/// run.
#[test]
fn workspace_files_adopt_does_not_copy_are_named_in_the_notes() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    conn.execute(
        "INSERT INTO users VALUES (5, 'five@example.com', ?1, 1, '2024-03-01 09:00:00', NULL)",
        params![bcrypt12("a password")],
    )
    .unwrap();
    drop(conn);
    let aw = cli.dir.path().join("aw");
    let five = aw.join("users/5");
    std::fs::create_dir_all(five.join("gallery")).unwrap();
    std::fs::create_dir_all(five.join("uploads")).unwrap();
    std::fs::create_dir_all(aw.join("users/99")).unwrap();
    for (path, text) in [
        ("users/5/workspace.json", r#"{"notes":[]}"#),
        ("users/5/gallery/piece_000001.json", "{}"),
        ("users/5/gallery/piece_1.json", "{}"),
        ("users/5/gallery/x.png", "png"),
        ("users/5/uploads/report.pdf", "pdf"),
        ("users/5/todo.txt", "todo"),
        ("users/99/workspace.json", "{}"),
        ("README.txt", "readme"),
    ] {
        std::fs::write(aw.join(path), text).unwrap();
    }
    std::fs::create_dir_all(aw.join("shared")).unwrap();
    std::fs::write(aw.join("shared/palette.json"), "{}").unwrap();
    let workspaces = aw.to_str().unwrap().to_string();
    let args = ["--preset", "code-monet", "--workspaces", &workspaces];
    let (report, _) = adopt(&cli, &db, &[&args[..], &["--dry-run"]].concat(), 0);
    let notes = notes_of(&report);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("7 path(s) in the old workspaces")),
        "{notes:#?}"
    );
    // The old database had no roles and no administrator: both said, the dry run included.
    assert!(
        notes.contains(
            &"1 user(s) held no role in the old database and were given redkeep's default \
              role `user` (not counted among the role grants)"
                .to_string()
        ),
        "{notes:#?}"
    );
    assert!(
        notes.iter().any(|n| n.starts_with(
            "no adopted account is an active administrator; `redkeep role grant USER admin`"
        )),
        "{notes:#?}"
    );
    for path in [
        "users/5/gallery/piece_1.json",
        "users/5/gallery/x.png",
        "users/5/todo.txt",
        "users/5/uploads",
        "users/99",
        "README.txt",
        "shared",
    ] {
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with(&format!("not copied: {path} ("))),
            "no note for {path} in {notes:#?}"
        );
    }
    assert_eq!(notes.len(), 10, "{notes:#?}");
    assert_eq!(report["counts"]["pieces"], 1);

    // Many: the count, and the first twenty.
    for i in 0..25 {
        std::fs::write(five.join(format!("gallery/thumb_{i:02}.png")), "png").unwrap();
    }
    let (dry, _) = adopt(&cli, &db, &[&args[..], &["--dry-run"]].concat(), 0);
    let notes = notes_of(&dry);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("32 path(s) in the old workspaces")
                && n.contains("the first 20 follow")),
        "{notes:#?}"
    );
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.starts_with("not copied: "))
            .count(),
        20,
        "{notes:#?}"
    );
    let (report, _) = adopt(&cli, &db, &args, 0);
    assert_eq!(report["adopted"], true, "{report}");
    assert_eq!(report["notes"], dry["notes"], "the dry run says the same");
}

/// The old system's default accounts are found whatever the case of their username, as
/// redkeep compares usernames: `Admin` still on `admin123` is adopted without a password.
#[test]
fn default_passwords_match_usernames_without_case() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, PUNTINI);
    for (id, username, pw) in [(1, "Admin", "admin123"), (2, "USER", "user123")] {
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, ?4, NULL, 1, 1, '2024-01-01', NULL, NULL)",
            params![id, username, format!("{id}@example.com"), bcrypt12(pw)],
        )
        .unwrap();
    }
    drop(conn);
    let (report, _) = adopt(&cli, &db, &["--preset", "puntini"], 0);
    assert_eq!(report["adopted"], true, "{report}");
    let rk = open(&cli);
    for (id, (login, published)) in [(1, ("Admin", "admin123")), (2, ("USER", "user123"))] {
        assert!(
            rk.users().get(id).unwrap().unwrap().must_change_password,
            "user {id}: {report}"
        );
        assert!(
            rk.sessions()
                .login(login, published, LoginMeta::default())
                .is_err(),
            "user {id} still logs in with the published {published}"
        );
    }
    assert_eq!(report["counts"]["without_password"], 2, "{report}");
}

/// The library's `adopt` with a store URL would write into that PostgreSQL store (a live
/// one too) and could not take it back: refused before anything is read or made.
#[test]
fn adopt_refuses_a_store_url() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    drop(conn);
    let spec = redkeep::ops::adopt::AdoptSpec {
        from: format!("sqlite:{}", db.display()),
        mapping: redkeep::ops::adopt::Mapping::preset("code-monet").unwrap(),
        workspaces: None,
        dry_run: false,
        accounts_without_password: Default::default(),
        leave_out_bad_files: false,
    };
    for dry_run in [false, true] {
        let spec = redkeep::ops::adopt::AdoptSpec {
            dry_run,
            ..spec.clone()
        };
        let options = Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .store("postgres://redkeep:pw@127.0.0.1:1/live");
        let err = redkeep::ops::adopt::adopt(&cli.data(), &spec, options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PostgreSQL") && err.contains("redkeep move --to"),
            "{err}"
        );
        assert!(!err.contains("pw@"), "{err}");
        assert!(!cli.data().exists());
    }
}

/// An adoption marks the store it makes until the workspace folders are written too. One
/// that stopped after its rows (a kill: emulated by its mark) is named by `check` and
/// `status`, and a new adoption into that data dir says what to remove; one that stopped
/// before adopting any row left nothing worth keeping, and the new adoption replaces it.
#[test]
fn an_adoption_stopped_part_way_is_named_and_the_next_one_knows_it() {
    use redkeep::store::Meta;
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    conn.execute(
        "INSERT INTO users VALUES (3, 'alice@example.com', ?1, 1, '2024-03-01 09:00:00', NULL)",
        params![bcrypt12("alice pw 1")],
    )
    .unwrap();
    drop(conn);
    // Stopped before any row: its store holds the mark and no user.
    {
        let rk = Redkeep::open(
            cli.data(),
            Options::default().password(PasswordParams::INSECURE_FAST),
        )
        .unwrap();
        rk.store()
            .write(|tx| tx.set_meta("adopt_unfinished", b"1"))
            .unwrap();
    }
    let (report, err) = adopt(&cli, &db, &["--preset", "code-monet"], 0);
    assert_eq!(report["adopted"], true, "{err}");
    let rk = open(&cli);
    assert!(rk.check(false).unwrap().ok);
    assert!(
        rk.store()
            .read(|tx| tx.meta("adopt_unfinished"))
            .unwrap()
            .is_none()
    );
    // Stopped after its rows: named, and the next adoption says what to do.
    rk.store()
        .write(|tx| tx.set_meta("adopt_unfinished", b"1"))
        .unwrap();
    let report = rk.check(false).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("an adoption stopped part way")),
        "{:?}",
        report.problems
    );
    drop(rk);
    let status = cli.json(&["status"], None);
    assert_eq!(
        status["stopped"],
        serde_json::json!(["an adoption"]),
        "{status}"
    );
    // Not used as if whole meanwhile: logins and writes would find folders missing, and a
    // new adoption would throw away what they wrote. `check` still names it.
    for args in [
        &["user", "list"][..],
        &["login", "alice@example.com", "--password-stdin"],
        &["gallery", "add", "1", "-"],
    ] {
        let (_, err) = cli.expect(args, Some("alice pw 1\n"), 1);
        assert!(
            err.contains("an adoption stopped part way")
                && err.contains("then adopt again")
                && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    let (out, _) = cli.expect(&["check"], None, 1);
    assert!(out.contains("an adoption stopped part way"), "{out}");
    let (_, err) = adopt(&cli, &db, &["--preset", "code-monet"], 1);
    assert!(
        err.contains("stopped part way") && err.contains("then adopt again"),
        "{err}"
    );
    let rk = Redkeep::open(cli.data(), cli.options().open_unfinished(true)).unwrap();
    assert_eq!(rk.users().count().unwrap(), 1, "nothing was removed");
}

/// bcrypt reads only a password's first 72 bytes, so an adopted bcrypt hash lets in another
/// password that shares them (as the old app did). Such a login is not rehashed: the new
/// hash would hold the other password, and the owner's own would stop working. A password
/// bcrypt read whole is rehashed at its first login as before.
#[test]
fn a_login_bcrypt_read_only_the_start_of_does_not_lock_the_owner_out() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    let long = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored";
    let other = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789XXXXXX";
    for (id, email, pw) in [
        (3, "alice@example.com", long),
        (4, "bob@example.com", "bob pw 1"),
    ] {
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, 1, '2024-03-01 09:00:00', NULL)",
            params![id, email, bcrypt12(pw)],
        )
        .unwrap();
    }
    drop(conn);
    let (report, err) = adopt(&cli, &db, &["--preset", "code-monet"], 0);
    assert_eq!(report["adopted"], true, "{err}");
    let rk = open(&cli);
    login_ok(&rk, "alice@example.com", other);
    login_ok(&rk, "alice@example.com", long);
    login_ok(&rk, "alice@example.com", long);
    login_ok(&rk, "bob@example.com", "bob pw 1");
    login_ok(&rk, "bob@example.com", "bob pw 1");
}

/// Werkzeug's scrypt hash, made by python3's `hashlib.scrypt` as Werkzeug makes it (the salt
/// as UTF-8 text, 64 bytes in hex), for "correct horse".
const WERKZEUG_SCRYPT: &str = "scrypt:16384:8:1$Xk3pQ9rT2bN7vLm4$ff806c36fcc851c9cc519c99ef05f3825724293ef060e797914faae24ed32750297980e8774d13b5fdef7a23c5c144aa3bbb257de8ee72a154edf66546504298";

/// One account whose hash is NULL, empty, plain text or a form redkeep does not read stopped
/// the whole adoption, and "leave the password out" could not be followed. By default such
/// rows are still refused, each naming `--accounts-without-password=reset`; with it they are
/// adopted with no password that logs in (the plain text one included), must change it, are
/// named in the report (the dry run's too), and get in once an operator sets a password.
/// Werkzeug's scrypt form logs in with the old password and becomes argon2id.
#[test]
fn accounts_without_a_usable_hash_are_refused_or_adopted_without_a_password() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, ACCOUNTS);
    let hash = bcrypt12("a password");
    for (id, mail, secret) in [
        ("1", "ok@example.com", Some(hash.as_str())),
        ("2", "null@example.com", None),
        ("3", "empty@example.com", Some("")),
        ("4", "plain@example.com", Some("hunter2hunter2")),
        (
            "5",
            "sha512@example.com",
            Some("$6$rounds=5000$salt$abcdef"),
        ),
        ("6", "scrypt@example.com", Some(WERKZEUG_SCRYPT)),
    ] {
        conn.execute(
            "INSERT INTO accounts VALUES (?1, ?2, ?3, NULL)",
            params![id, mail, secret],
        )
        .unwrap();
    }
    drop(conn);
    let map = accounts_map(&cli, "");
    let (report, _) = adopt(&cli, &db, &["--map", &map, "--dry-run"], 1);
    let problems = problems_of(&report);
    for (row, says) in [
        ("users row 2 (id 2)", "NULL or empty"),
        ("users row 3 (id 3)", "NULL or empty"),
        ("users row 4 (id 4)", "plain text"),
        ("users row 5 (id 5)", "SHA-512 crypt"),
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(row)
                && p.contains(says)
                && p.contains("--accounts-without-password=reset")),
            "no problem for {row} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(!problems.iter().any(|p| p.contains("hunter2")));

    let (out, _) = cli.expect(
        &[
            "adopt",
            "--from",
            &format!("sqlite:{}", db.display()),
            "--map",
            &map,
            "--accounts-without-password=reset",
            "--dry-run",
        ],
        None,
        0,
    );
    assert!(out.contains("6 users (4 without a password)"), "{out}");
    let reset = ["--map", &map, "--accounts-without-password", "reset"];
    for dry in [true, false] {
        let mut args = reset.to_vec();
        if dry {
            args.push("--dry-run");
        }
        let (report, _) = adopt(&cli, &db, &args, 0);
        assert_eq!(report["adopted"], !dry, "{report}");
        assert_eq!(report["counts"]["users"], 6);
        assert_eq!(report["counts"]["without_password"], 4);
        let notes = notes_of(&report);
        for id in 2..=5 {
            assert!(
                notes.iter().any(|n| n.starts_with(&format!("user {id} ("))
                    && n.contains("without a password")
                    && n.contains(&format!("user set-password {id}"))),
                "dry run {dry}: no note for user {id} in {notes:#?}"
            );
        }
        assert!(!notes.iter().any(|n| n.contains("hunter2")));
    }

    let rk = open(&cli);
    login_ok(&rk, "ok@example.com", "a password");
    for (id, mail, tried) in [
        (2, "null@example.com", ""),
        (3, "empty@example.com", ""),
        (4, "plain@example.com", "hunter2hunter2"),
        (5, "sha512@example.com", "$6$rounds=5000$salt$abcdef"),
    ] {
        assert!(rk.users().get(id).unwrap().unwrap().must_change_password);
        assert!(
            rk.sessions()
                .login(mail, tried, LoginMeta::default())
                .is_err(),
            "{mail} logs in with {tried:?}"
        );
    }
    rk.users().set_password(4, "a new password 4").unwrap();
    login_ok(&rk, "plain@example.com", "a new password 4");
    assert_eq!(rk.users().password_info(6).unwrap().algorithm, "scrypt");
    login_ok(&rk, "scrypt@example.com", "correct horse");
    assert_eq!(rk.users().password_info(6).unwrap().algorithm, "argon2id");
    login_ok(&rk, "scrypt@example.com", "correct horse");
    assert!(rk.check(false).unwrap().ok);
}

/// One bad file blocked everything, only the first problem of a folder was named, and the
/// advice spoke of rows: the dry run names every file that cannot be taken (an empty or cut
/// short piece, a piece numbered 0, one over `--max-doc-bytes`, which was ignored) as files
/// to fix or leave out; a byte order mark is dropped and a `piece_count` that is no count
/// replaced, each with a note. With `--leave-out-bad-files` the rest is adopted, each file
/// left out is named, and the old tree is untouched.
#[test]
fn bad_workspace_files_are_all_named_and_can_be_left_out() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    for id in 1..=4 {
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, 1, '2024-03-01 09:00:00', NULL)",
            params![id, format!("u{id}@example.com"), bcrypt12("a password")],
        )
        .unwrap();
    }
    drop(conn);
    let old = cli.dir.path().join("aw");
    let write = |rel: &str, bytes: &[u8]| {
        let path = old.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    write(
        "users/1/workspace.json",
        b"\xEF\xBB\xBF{\"notes\":[\"bom\"],\"piece_count\":\"3\"}",
    );
    write(
        "users/1/gallery/piece_000001.json",
        b"\xEF\xBB\xBF{\"title\":\"one\"}",
    );
    write("users/1/gallery/piece_000002.json", b"");
    write("users/1/gallery/piece_000003.json", b"{\"title\":");
    write("users/2/gallery/piece_000000.json", b"{\"title\":\"zero\"}");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300));
    write("users/2/gallery/piece_000001.json", big.as_bytes());
    write("users/3/workspace.json", b"{\"piece_count\":7}");
    write("users/3/gallery/piece_000001.json", b"{}");
    write("users/3/gallery/piece_000003.json", b"{}");
    // A symlinked folder is never followed: with the option it is left out whole. (A link
    // to another user's folder leaves out both: see
    // `a_folder_two_users_resolve_to_is_refused_or_left_out_for_both`.)
    write("elsewhere/workspace.json", b"{}");
    std::os::unix::fs::symlink(old.join("elsewhere"), old.join("users/4")).unwrap();
    let sums = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    };
    let before = sums(&old);
    let workspaces = old.to_str().unwrap().to_string();
    let from = format!("sqlite:{}", db.display());
    let base = [
        "--max-doc-bytes",
        "200",
        "adopt",
        "--from",
        &from,
        "--preset",
        "code-monet",
        "--workspaces",
        &workspaces,
    ];
    let mut dry = base.to_vec();
    dry.extend(["--dry-run", "--json"]);
    let (out, err) = cli.expect(&dry, None, 1);
    assert!(err.contains("rows or files"), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let problems = problems_of(&report);
    for (user, says) in [
        ("users/1", "piece_000002.json is empty"),
        ("users/1", "piece_000003.json is not JSON"),
        ("users/2", "piece_000000.json: pieces are numbered from 1"),
        ("users/2", "more than the 200"),
        ("users/4", "is a symlink"),
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with("workspace folder ")
                && p.contains(user)
                && p.contains(says)),
            "no problem for {user} about {says:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 5, "{problems:#?}");
    let notes = notes_of(&report);
    for says in [
        "workspace.json: the UTF-8 byte order mark at its start was dropped",
        "piece_000001.json: the UTF-8 byte order mark at its start was dropped",
        "piece_count \"3\" is not a count",
        "piece_count 7 became 2",
    ] {
        assert!(
            notes.iter().any(|n| n.contains(says)),
            "no note {says:?} in {notes:#?}"
        );
    }
    let mut text = base.to_vec();
    text.push("--dry-run");
    let (out, _) = cli.expect(&text, None, 1);
    assert!(
        out.contains("5 file(s) of the old workspaces cannot be taken: fix or move them")
            && out.contains("--leave-out-bad-files")
            && !out.contains("row(s)"),
        "{out}"
    );

    let mut real = base.to_vec();
    real.extend(["--leave-out-bad-files", "--json"]);
    let (out, _) = cli.expect(&real, None, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["adopted"], true, "{report}");
    assert_eq!(report["counts"]["left_out"], 5);
    assert_eq!(report["counts"]["pieces"], 3);
    let notes = notes_of(&report);
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.contains("left out (--leave-out-bad-files)"))
            .count(),
        5,
        "{notes:#?}"
    );
    let piece = cli
        .data()
        .join("workspaces/users/1/gallery/piece_000001.json");
    assert_eq!(std::fs::read(piece).unwrap(), b"{\"title\":\"one\"}");
    let rk = open(&cli);
    assert_eq!(rk.workspaces().read(1).unwrap().piece_count, 1);
    assert_eq!(sums(&old), before, "the old tree is only read");
}

/// An avatar that is not a JPEG (a PNG upload) refused its user, and so the adoption: the
/// refusal says how to go on, and `--leave-out-bad-files` takes the user without it, noted.
#[test]
fn an_avatar_that_is_not_a_jpeg_can_be_left_out() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, ACCOUNTS);
    conn.execute(
        "INSERT INTO accounts VALUES ('1', 'png@example.com', ?1, NULL)",
        params![bcrypt12("a password")],
    )
    .unwrap();
    drop(conn);
    let map = cli.dir.path().join("png.toml");
    std::fs::write(
        &map,
        "[users]\nquery = \"SELECT id, mail AS email, secret AS password_hash, \
         X'89504E470D0A1A0A0000' AS avatar FROM accounts\"\n",
    )
    .unwrap();
    let map = map.to_str().unwrap();
    let (report, _) = adopt(&cli, &db, &["--map", map, "--dry-run"], 1);
    let problems = problems_of(&report);
    assert!(
        problems[0].starts_with("users row 1 (id 1)")
            && problems[0].contains("--leave-out-bad-files"),
        "{problems:#?}"
    );
    let (report, _) = adopt(&cli, &db, &["--map", map, "--leave-out-bad-files"], 0);
    assert_eq!(report["counts"]["avatars"], 0);
    assert_eq!(report["counts"]["left_out"], 1);
    assert!(
        notes_of(&report)
            .iter()
            .any(|n| n.starts_with("user 1 (png@example.com): the avatar is left out")),
        "{report}"
    );
    login_ok(&open(&cli), "png@example.com", "a password");
}

/// The dry run never looked at the data dir: a real run copied everything and then failed on
/// its mode, advising a repair of a store it had taken away, and a failed adoption left the
/// data dir 0700. Now the dry run says what the adoption does to the data dir's mode, and a
/// failed adoption leaves the mode as it was.
#[test]
fn an_existing_data_dirs_mode_is_named_and_kept_when_nothing_is_adopted() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    conn.execute(
        "INSERT INTO users VALUES (1, 'one@example.com', 'plain text', 1, '2024-03-01', NULL)",
        [],
    )
    .unwrap();
    drop(conn);
    std::fs::create_dir(cli.data()).unwrap();
    std::fs::set_permissions(cli.data(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mode = || std::fs::metadata(cli.data()).unwrap().permissions().mode() & 0o777;
    let (report, _) = adopt(&cli, &db, &["--preset", "code-monet", "--dry-run"], 1);
    assert!(
        notes_of(&report)
            .iter()
            .any(|n| n.contains("is mode 0755; the adoption makes it 0700")),
        "{report}"
    );
    adopt(&cli, &db, &["--preset", "code-monet"], 1);
    assert_eq!(mode(), 0o755, "a failed adoption leaves the mode as it was");
    let (report, _) = adopt(
        &cli,
        &db,
        &[
            "--preset",
            "code-monet",
            "--accounts-without-password",
            "reset",
        ],
        0,
    );
    assert_eq!(report["adopted"], true);
    assert_eq!(mode(), 0o700);
}

/// Root adopting into the application user's data dir made a store owned by root that the
/// application could not open, and the check passed: refused before anything is read,
/// naming the owner (the dry run too).
#[test]
fn root_adopting_into_another_users_data_dir_is_refused() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    drop(conn);
    std::fs::create_dir(cli.data()).unwrap();
    std::os::unix::fs::chown(cli.data(), Some(65534), Some(65534)).unwrap();
    for dry in [true, false] {
        let mut args = vec!["--preset", "code-monet"];
        if dry {
            args.push("--dry-run");
        }
        let (_, err) = adopt(&cli, &db, &args, 1);
        assert!(
            err.contains("belongs to uid 65534") && err.contains("run adopt as uid 65534"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(cli.data()).unwrap().count(), 0);
    }
}

/// A WAL-mode database in a folder the adopting user cannot write (another user's, a
/// read-only snapshot) was "not a readable SQLite database": SQLite could not make its
/// `-shm` file. With no writes waiting in a `-wal` it is read as the file it is; with some,
/// the refusal says it is WAL mode and what to do.
#[test]
fn a_wal_database_in_a_folder_adopt_cannot_write_is_read() {
    use std::os::unix::fs::PermissionsExt;
    let setpriv = Path::new("/usr/bin/setpriv");
    if rustix::process::geteuid().as_raw() != 0 || !setpriv.exists() {
        eprintln!("skipped: needs root and setpriv, to run adopt as another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(base, 0o755).unwrap();
    let ro = base.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let db = ro.join("old.db");
    let conn = Connection::open(&db).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(CODE_MONET).unwrap();
    conn.execute(
        "INSERT INTO users VALUES (1, 'one@example.com', ?1, 1, '2024-03-01', NULL)",
        params![bcrypt12("a password")],
    )
    .unwrap();
    drop(conn);
    assert!(!ro.join("old.db-wal").exists());
    mode(&db, 0o644).unwrap();
    mode(&ro, 0o555).unwrap();
    let out = base.join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
    let from = format!("sqlite:{}", db.display());
    let data = out.join("d");
    let run = || {
        std::process::Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_redkeep"))
            .arg("--data-dir")
            .arg(&data)
            .args([
                "adopt",
                "--from",
                &from,
                "--preset",
                "code-monet",
                "--dry-run",
            ])
            .output()
            .unwrap()
    };
    let o = run();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("would adopt: 1 users"), "{stdout}");
    assert!(!ro.join("old.db-shm").exists() && !ro.join("old.db-wal").exists());
    // Writes waiting in the -wal: the file alone is not the database.
    std::fs::write(ro.join("old.db-wal"), vec![7_u8; 4096]).unwrap();
    let o = run();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in WAL mode") && stderr.contains("-shm"),
        "{stderr}"
    );
}

/// A source of code-monet users `ids` (adopted without a password) whose folders each hold
/// `pieces` gallery pieces of different sizes, each dated its own second; gives the
/// database and the old workspaces.
fn gallery_source(cli: &Cli, ids: &[u64], pieces: u64) -> (PathBuf, PathBuf) {
    let (db, conn) = database(cli, CODE_MONET);
    for id in ids {
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, '', 1, '2024-03-01 09:00:00', NULL)",
            params![*id as i64, format!("u{id}@example.com")],
        )
        .unwrap();
    }
    drop(conn);
    let old = cli.dir.path().join("aw");
    for id in ids {
        let gallery = old.join(format!("users/{id}/gallery"));
        std::fs::create_dir_all(&gallery).unwrap();
        for n in 1..=pieces {
            let path = gallery.join(format!("piece_{n:06}.json"));
            let fill = "x".repeat((n * 37 % 500) as usize);
            std::fs::write(&path, format!(r#"{{"user":{id},"n":{n},"fill":"{fill}"}}"#)).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(piece_time(*id, n)))
                .unwrap();
        }
    }
    (db, old)
}

/// The time `gallery_source` gives piece `n` of user `id`.
fn piece_time(id: u64, n: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000 + id * 10_000 + n, 7)
}

/// The library's spec for adopting `gallery_source`'s deployment.
fn gallery_spec(db: &Path, old: &Path) -> redkeep::ops::adopt::AdoptSpec {
    redkeep::ops::adopt::AdoptSpec {
        from: format!("sqlite:{}", db.display()),
        mapping: redkeep::ops::adopt::Mapping::preset("code-monet").unwrap(),
        workspaces: Some(old.to_path_buf()),
        dry_run: false,
        accounts_without_password: redkeep::ops::adopt::WithoutPassword::Reset,
        leave_out_bad_files: false,
    }
}

fn fast() -> Options {
    Options::default().password(PasswordParams::INSECURE_FAST)
}

/// A gallery of hundreds of pieces moves in whole: every piece with its bytes and its
/// file's time, the count set, `check` clean.
#[test]
fn a_big_gallery_moves_in_with_every_pieces_bytes_and_time() {
    let cli = Cli::new();
    let (db, old) = gallery_source(&cli, &[2, 5], 300);
    let workspaces = old.to_str().unwrap().to_string();
    let (report, err) = adopt(
        &cli,
        &db,
        &[
            "--preset",
            "code-monet",
            "--workspaces",
            &workspaces,
            "--accounts-without-password",
            "reset",
        ],
        0,
    );
    assert_eq!(report["adopted"], true, "{report} {err}");
    assert_eq!(report["counts"]["pieces"], 600);
    let rk = open(&cli);
    assert!(rk.check(false).unwrap().ok);
    for id in [2, 5] {
        assert_eq!(rk.workspaces().read(id).unwrap().piece_count, 300);
        let gallery = cli.data().join(format!("workspaces/users/{id}/gallery"));
        let copied = std::fs::read_dir(&gallery)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != ".trash")
            .count();
        assert_eq!(copied, 300, "no file but the pieces");
        for n in 1..=300 {
            let name = format!("piece_{n:06}.json");
            let (from, to) = (
                old.join(format!("users/{id}/gallery/{name}")),
                gallery.join(&name),
            );
            assert_eq!(
                std::fs::read(&to).unwrap(),
                std::fs::read(&from).unwrap(),
                "{name}"
            );
            let meta = std::fs::metadata(&to).unwrap();
            assert_eq!(meta.modified().unwrap(), piece_time(id, n), "{name}");
        }
    }
}

/// The pieces are not synced one by one (two fsyncs each made 8,000 pieces take 86 s): an
/// adoption costs as many syncs for a gallery of 200 pieces as for one of a single piece.
#[test]
fn an_adoptions_syncs_do_not_grow_with_its_galleries() {
    use redkeep::store::{FaultKind, FaultPlan};
    let syncs = |pieces: u64| {
        let cli = Cli::new();
        let (db, old) = gallery_source(&cli, &[1, 2], pieces);
        let count = FaultPlan::new(FaultKind::FileSync, u64::MAX);
        let _armed = count.arm_files();
        let report = redkeep::ops::adopt::adopt(&cli.data(), &gallery_spec(&db, &old), fast());
        assert!(report.unwrap().adopted);
        count.calls()
    };
    let (one, many) = (syncs(1), syncs(200));
    assert!(one > 0);
    assert_eq!(one, many);
}

/// Pieces are read again as they are copied (a big gallery is never held in memory at
/// once): a piece changed since it was read and checked stops the adoption, naming it, and
/// nothing is left behind.
#[test]
fn a_piece_changed_while_adopt_copies_stops_the_adoption() {
    use redkeep::store::{FaultKind, FaultPlan};
    const PIECES: u64 = 20;
    let cli = Cli::new();
    let (db, old) = gallery_source(&cli, &[1], PIECES);
    let spec = gallery_spec(&db, &old);
    // How many renames a whole adoption makes: the pieces' are the last.
    let renames = {
        let scratch = cli.dir.path().join("scratch");
        let count = FaultPlan::new(FaultKind::FileRename, u64::MAX);
        let _armed = count.arm_files();
        assert!(
            redkeep::ops::adopt::adopt(&scratch, &spec, fast())
                .unwrap()
                .adopted
        );
        count.calls()
    };
    // Paused at the first piece's: the last piece is changed before it is copied.
    let plan = FaultPlan::pausing(FaultKind::FileRename, renames - PIECES + 1);
    let running = {
        let (plan, data, spec) = (plan.clone(), cli.data(), spec.clone());
        std::thread::spawn(move || {
            let _armed = plan.arm_files();
            redkeep::ops::adopt::adopt(&data, &spec, fast())
        })
    };
    plan.wait_paused();
    let last = old.join(format!("users/1/gallery/piece_{PIECES:06}.json"));
    std::fs::write(&last, r#"{"changed":true}"#).unwrap();
    plan.resume();
    let err = running.join().unwrap().unwrap_err().to_string();
    assert!(
        err.contains(&last.display().to_string()) && err.contains("changed since adopt read it"),
        "{err}"
    );
    assert!(!cli.data().join(redkeep::STORE_FILE).exists());
    assert!(!cli.data().join("workspaces").exists());
}

/// A failure at any sync of an adoption (the flush that makes the pieces durable
/// included) adopts nothing and leaves nothing behind: the store says it is unfinished
/// until every file is on disk.
#[test]
fn a_sync_that_fails_anywhere_in_an_adoption_leaves_nothing() {
    use redkeep::store::{FaultKind, FaultPlan};
    let cli = Cli::new();
    let (db, old) = gallery_source(&cli, &[1, 2], 5);
    let spec = gallery_spec(&db, &old);
    let syncs = {
        let scratch = cli.dir.path().join("scratch");
        let count = FaultPlan::new(FaultKind::FileSync, u64::MAX);
        let _armed = count.arm_files();
        assert!(
            redkeep::ops::adopt::adopt(&scratch, &spec, fast())
                .unwrap()
                .adopted
        );
        count.calls()
    };
    for n in 1..=syncs {
        let data = cli.dir.path().join(format!("d{n}"));
        let plan = FaultPlan::new(FaultKind::FileSync, n);
        let result = {
            let _armed = plan.arm_files();
            redkeep::ops::adopt::adopt(&data, &spec, fast())
        };
        assert!(plan.fired(), "sync {n}");
        assert!(result.is_err(), "sync {n} failed, and yet: {result:?}");
        assert!(!data.join(redkeep::STORE_FILE).exists(), "sync {n}");
        assert!(!data.join("workspaces").exists(), "sync {n}");
    }
}

/// A password with accents, composed (NFC: `é` as one character) and decomposed (NFD: `e`
/// and a combining accent, as macOS keyboards may send it).
const CREME_NFC: &str = "Cr\u{e8}me br\u{fb}l\u{e9}e \u{e0} l'\u{e9}t\u{e9}";
const CREME_NFD: &str = "Cre\u{300}me bru\u{302}le\u{301}e a\u{300} l'e\u{301}te\u{301}";

/// An old app hashed the bytes of the password as its user typed them, composed or
/// decomposed. Adopted, each legacy hash (bcrypt, PBKDF2, Werkzeug's scrypt, argon2i) lets
/// its user in typed either way (the bytes as typed first, then the other form), and the
/// first login makes it an argon2id hash, which lets them in either way after it.
#[test]
fn legacy_hashes_of_accented_passwords_verify_typed_composed_or_decomposed() {
    assert_ne!(CREME_NFC, CREME_NFD);
    let legacy = |scheme: &str, pw: &str| -> String {
        match scheme {
            "bcrypt" => bcrypt::hash(pw, 4).unwrap(),
            "pbkdf2" => {
                use pbkdf2::password_hash::PasswordHasher;
                pbkdf2::Pbkdf2::new(
                    pbkdf2::Algorithm::Pbkdf2Sha256,
                    pbkdf2::Params::new(1000).unwrap(),
                )
                .hash_password_with_salt(pw.as_bytes(), b"sixteen byte sal")
                .unwrap()
                .to_string()
            }
            "scrypt" => {
                let salt = "Xk3pQ9rT2bN7vLm4";
                let mut out = [0_u8; 64];
                let params = scrypt::Params::new(10, 8, 1).unwrap();
                scrypt::scrypt(pw.as_bytes(), salt.as_bytes(), &params, &mut out).unwrap();
                let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
                format!("scrypt:1024:8:1${salt}${hex}")
            }
            _ => {
                use argon2::PasswordHasher;
                let params = argon2::Params::new(8, 1, 1, None).unwrap();
                argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params)
                    .hash_password_with_salt(pw.as_bytes(), b"sixteen byte sal")
                    .unwrap()
                    .to_string()
            }
        }
    };
    let cli = Cli::new();
    let (db, conn) = database(&cli, CODE_MONET);
    // Per scheme and form hashed: one account first typed composed, one decomposed.
    let mut accounts = Vec::new();
    for scheme in ["bcrypt", "pbkdf2", "scrypt", "argon2"] {
        for (hashed, form) in [("nfc", CREME_NFC), ("nfd", CREME_NFD)] {
            let hash = legacy(scheme, form);
            for (first, typed) in [("nfc", CREME_NFC), ("nfd", CREME_NFD)] {
                let id = accounts.len() as i64 + 1;
                let email = format!("{scheme}-{hashed}-first-{first}@example.com");
                conn.execute(
                    "INSERT INTO users VALUES (?1, ?2, ?3, 1, '2024-03-01 09:00:00', NULL)",
                    params![id, email, hash],
                )
                .unwrap();
                accounts.push((id as u64, email, typed));
            }
        }
    }
    drop(conn);
    let (report, err) = adopt(&cli, &db, &["--preset", "code-monet"], 0);
    assert_eq!(report["adopted"], true, "{report} {err}");
    let rk = open(&cli);
    for (id, email, typed) in &accounts {
        let other = if *typed == CREME_NFC {
            CREME_NFD
        } else {
            CREME_NFC
        };
        assert_ne!(rk.users().password_info(*id).unwrap().algorithm, "argon2id");
        login_ok(&rk, email, typed);
        assert_eq!(
            rk.users().password_info(*id).unwrap().algorithm,
            "argon2id",
            "{email}: rehashed at its first login"
        );
        login_ok(&rk, email, other);
        login_ok(&rk, email, typed);
        assert!(
            rk.sessions()
                .login(email, "Creme brulee a l'ete", LoginMeta::default())
                .is_err(),
            "{email}: text without the accents is another password"
        );
    }
}

/// Adopts `gallery_source`'s deployment at `old` through the CLI (dry run, real run, and
/// with --leave-out-bad-files) and checks that users 3 and 7, whose folders are one or
/// share a file (`how`), are both named and neither gets the other's files.
fn shared_folders_are_refused_or_left_out_for_both(cli: &Cli, db: &Path, old: &Path, how: &str) {
    let workspaces = old.to_str().unwrap().to_string();
    let base = [
        "--preset",
        "code-monet",
        "--workspaces",
        &workspaces,
        "--accounts-without-password",
        "reset",
    ];
    let named = |text: &str| {
        text.contains(&format!("{} (user 3)", old.join("users/3").display()))
            && text.contains(&format!("{} (user 7)", old.join("users/7").display()))
            && text.contains(how)
    };
    for extra in [&["--dry-run"][..], &[]] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (report, _) = adopt(cli, db, &args, 1);
        assert_eq!(report["adopted"], false, "{report}");
        let problems = problems_of(&report);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(named(&problems[0]), "{problems:#?}");
        assert!(!cli.data().join(redkeep::STORE_FILE).exists());
    }
    let args: Vec<&str> = base
        .iter()
        .chain(&["--leave-out-bad-files"])
        .copied()
        .collect();
    let (report, err) = adopt(cli, db, &args, 0);
    assert_eq!(report["adopted"], true, "{report} {err}");
    assert_eq!(report["counts"]["workspaces"], 1, "{report}");
    assert!(
        notes_of(&report)
            .iter()
            .any(|n| named(n) && n.contains("left out")),
        "{report}"
    );
    let users = cli.data().join("workspaces/users");
    assert!(!users.join("3").exists() && !users.join("7").exists());
    assert!(users.join("1/gallery/piece_000002.json").is_file());
    let rk = open(cli);
    assert!(rk.check(false).unwrap().ok);
    assert_eq!(rk.workspaces().read(3).unwrap().piece_count, 0);
    assert_eq!(rk.workspaces().read(7).unwrap().piece_count, 0);
}

/// A symlinked `users/7` -> `users/3` gave user 7's account nothing and user 3 the folder
/// (or with --leave-out-bad-files named only the link): whose folder it is cannot be told,
/// so both are named, and left out for both.
#[test]
fn a_folder_two_users_resolve_to_is_refused_or_left_out_for_both() {
    let cli = Cli::new();
    let (db, old) = gallery_source(&cli, &[1, 3, 7], 2);
    std::fs::remove_dir_all(old.join("users/7")).unwrap();
    std::os::unix::fs::symlink(old.join("users/3"), old.join("users/7")).unwrap();
    shared_folders_are_refused_or_left_out_for_both(&cli, &db, &old, "one folder on disk");
}

/// A `workspace.json` (or a piece) hard linked between two users' folders was copied to
/// both: it is named, and both folders are refused or left out.
#[test]
fn a_file_hard_linked_between_two_users_folders_is_refused_or_left_out_for_both() {
    let cli = Cli::new();
    let (db, old) = gallery_source(&cli, &[1, 3, 7], 2);
    let doc = old.join("users/3/workspace.json");
    std::fs::write(&doc, r#"{"notes":["user 3's own"]}"#).unwrap();
    std::fs::hard_link(&doc, old.join("users/7/workspace.json")).unwrap();
    shared_folders_are_refused_or_left_out_for_both(&cli, &db, &old, "hard linked");
    // Hard links inside one user's own folder are theirs alone.
    let cli = Cli::new();
    let (db, old) = gallery_source(&cli, &[1, 3], 2);
    let gallery = old.join("users/3/gallery");
    std::fs::remove_file(gallery.join("piece_000002.json")).unwrap();
    std::fs::hard_link(
        gallery.join("piece_000001.json"),
        gallery.join("piece_000002.json"),
    )
    .unwrap();
    let workspaces = old.to_str().unwrap().to_string();
    let (report, err) = adopt(
        &cli,
        &db,
        &[
            "--preset",
            "code-monet",
            "--workspaces",
            &workspaces,
            "--accounts-without-password",
            "reset",
        ],
        0,
    );
    assert_eq!(report["adopted"], true, "{report} {err}");
    assert_eq!(report["counts"]["pieces"], 4, "{report}");
}

/// Text ids `3` and `03` are one id (compared as numbers, as the old app's numeric ids
/// are): the second row is refused, naming it, so `users/03` is never given to user 3 nor
/// `users/3` to another account.
#[test]
fn ids_3_and_03_are_one_id_and_the_second_row_is_refused() {
    let cli = Cli::new();
    let (db, conn) = database(&cli, ACCOUNTS);
    for (id, mail) in [("3", "three@example.com"), ("03", "zero-three@example.com")] {
        conn.execute(
            "INSERT INTO accounts VALUES (?1, ?2, '', NULL)",
            params![id, mail],
        )
        .unwrap();
    }
    drop(conn);
    let old = cli.dir.path().join("aw/users");
    for name in ["3", "03"] {
        std::fs::create_dir_all(old.join(name)).unwrap();
        std::fs::write(
            old.join(name).join("workspace.json"),
            format!(r#"{{"notes":["{name}'s own"]}}"#),
        )
        .unwrap();
    }
    let map = accounts_map(&cli, "");
    let workspaces = cli.dir.path().join("aw").to_str().unwrap().to_string();
    for dry in [true, false] {
        let mut args = vec![
            "--map",
            &map,
            "--workspaces",
            &workspaces,
            "--accounts-without-password",
            "reset",
        ];
        if dry {
            args.push("--dry-run");
        }
        let (report, _) = adopt(&cli, &db, &args, 1);
        let problems = problems_of(&report);
        assert!(
            problems.len() == 1
                && problems[0].starts_with("users row 2 ")
                && problems[0].contains("the id 3 came before"),
            "{problems:#?}"
        );
        assert!(!cli.data().join(redkeep::STORE_FILE).exists());
    }
}
