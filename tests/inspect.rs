//! `redkeep inspect`: an operator looks at any table, record and index entry of a store, its
//! own tables and the application's, as with `sqlite3`; reads only, secrets redacted.
//!
//! The owner of the application-table tests is this test binary started again with
//! `REDKEEP_TEST_APP_OWNER` set: it runs only `helper_app_owner`, which registers the
//! application's record type, serves the admin socket and waits for its stdin to close.
#![cfg(feature = "cli")]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use assert_cmd::cargo::CommandCargoExt;
use common::{Cli, HelperProcess};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use redkeep::{Index, Options, PasswordParams, Record, Redkeep, key};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const OWNER_ENV: &str = "REDKEEP_TEST_APP_OWNER";

/// The application's notes as its first release wrote them.
mod v1 {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Note {
        pub id: u64,
        pub owner: u64,
        pub text: String,
    }
    impl Note {
        pub const BY_OWNER: Index<Note> = Index::many("by_owner", |n| Some(key!(n.owner)));
    }
    impl Record for Note {
        const TABLE: &'static str = "notes";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_OWNER];
        fn key(&self) -> u64 {
            self.id
        }
    }
}

/// Its next release: `text` renamed `body` (version 2), a new optional field.
mod v2 {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Note {
        pub id: u64,
        pub owner: u64,
        pub body: String,
        pub pinned: Option<bool>,
    }
    impl Note {
        pub const BY_OWNER: Index<Note> = Index::many("by_owner", |n| Some(key!(n.owner)));
    }
    impl Record for Note {
        const TABLE: &'static str = "notes";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_OWNER];
        const VERSION: u32 = 2;
        fn key(&self) -> u64 {
            self.id
        }
        fn upgrade(old: redkeep::store::Stored<'_>) -> Result<Self, String> {
            let n: v1::Note = old.decode()?;
            Ok(Note {
                id: n.id,
                owner: n.owner,
                body: n.text,
                pinned: None,
            })
        }
    }
}

fn open(dir: &Path) -> Redkeep {
    Redkeep::open(
        dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap()
}

#[test]
fn helper_app_owner() {
    let Ok(dir) = std::env::var(OWNER_ENV) else {
        return; // Only meaningful when started by the tests below.
    };
    let rk = open(Path::new(&dir));
    rk.register_table::<v2::Note>().unwrap();
    let _admin = redkeep::admin::serve(&rk).unwrap();
    println!("ready");
    // Serve until the test closes our stdin.
    for _ in std::io::stdin().lock().lines() {}
}

/// Runs with `--json`, expects success, returns stdout's JSON lines.
fn lines(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut full = args.to_vec();
    full.push("--json");
    let (out, _) = cli.expect(&full, None, 0);
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn keys(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["key"].as_str().unwrap()).collect()
}

fn table<'v>(tables: &'v Value, name: &str) -> &'v Value {
    tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {tables}"))
}

fn create_user(cli: &Cli, email: &str, extra: &[&str]) {
    let mut args = vec!["user", "create", email, "--password-stdin"];
    args.extend_from_slice(extra);
    cli.expect(&args, Some("a fine password\n"), 0);
}

/// An initialised store with an administrator (1), ann (2) and bob (3).
fn three_users() -> Cli {
    let cli = Cli::new();
    cli.expect(
        &[
            "init",
            "--admin-email",
            "admin@example.com",
            "--admin-password-stdin",
        ],
        Some("admin password\n"),
        0,
    );
    create_user(&cli, "ann@example.com", &["--username", "ann"]);
    create_user(&cli, "bob@example.com", &[]);
    cli
}

/// Changes the store behind redkeep's back, as damage would.
fn tamper(cli: &Cli, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(cli.data().join(redkeep::STORE_FILE)).unwrap();
    let tx = db.begin_write().unwrap();
    f(&tx);
    tx.commit().unwrap();
}

fn def(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// Every table of the store file, as raw key → value bytes.
type Tables = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

fn raw_tables(cli: &Cli) -> Tables {
    let db = redb::Database::open(cli.data().join(redkeep::STORE_FILE)).unwrap();
    let tx = db.begin_read().unwrap();
    let mut out = BTreeMap::new();
    for h in tx.list_tables().unwrap() {
        let t = tx.open_table(def(h.name())).unwrap();
        let rows = t
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect();
        out.insert(h.name().to_string(), rows);
    }
    out
}

#[test]
fn tables_lists_every_table_with_records_bytes_versions_and_index_entries() {
    let cli = three_users();
    let t = cli.json(&["inspect", "tables"], None);
    let users = table(&t, "users");
    assert_eq!(users["records"], 3);
    assert_eq!(users["reads_as"], "its type");
    assert_eq!(
        users["versions"],
        serde_json::json!([{"version": 2, "format": 2, "records": 3}])
    );
    assert!(users["bytes"].as_u64().unwrap() > 0);
    let email = users["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "email")
        .unwrap();
    assert_eq!(email["unique"], true);
    assert_eq!(email["entries"], 3);
    let username = &users["indexes"][1];
    assert_eq!(
        (&username["name"], &username["entries"]),
        (&"username".into(), &1.into())
    );
    assert_eq!(
        table(&t, "credentials")["secret_fields"][0],
        "password_hash"
    );
    assert_eq!(table(&t, "sessions")["secret_key"], true);
    // People get an aligned table, indexes under their table.
    let (human, _) = cli.expect(&["inspect", "tables"], None, 0);
    let header = human.lines().next().unwrap();
    assert!(
        header.starts_with("name") && header.contains("versions"),
        "{human}"
    );
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("users.email") && l.contains("unique index")),
        "{human}"
    );
}

#[test]
fn dump_pages_in_key_order_filters_on_fields_and_projects_them() {
    let cli = three_users();
    create_user(&cli, "cid@example.com", &["--admin"]);
    create_user(&cli, "dee@example.com", &[]);
    let first = lines(&cli, &["inspect", "dump", "users", "--limit", "2"]);
    assert_eq!(keys(&first), ["1", "2"]);
    assert_eq!(first[1]["record"]["email"], "ann@example.com");
    assert_eq!(first[1]["version"], 2);
    // The summary, on stderr, names the next page.
    let (_, err) = cli.expect(&["inspect", "dump", "users", "--limit", "2"], None, 0);
    assert!(err.contains("--after 2"), "{err}");
    let second = lines(
        &cli,
        &["inspect", "dump", "users", "--limit", "2", "--after", "2"],
    );
    assert_eq!(keys(&second), ["3", "4"]);
    let last = lines(&cli, &["inspect", "dump", "users", "--after", "4"]);
    assert_eq!(keys(&last), ["5"]);
    // Several --where are ANDed; booleans, numbers and strings are understood.
    let admins = lines(
        &cli,
        &[
            "inspect",
            "dump",
            "users",
            "--where",
            "is_admin=true",
            "--where",
            "must_change_password=true",
        ],
    );
    // (None: `init` and `user create` were given their passwords, which they keep.)
    assert!(keys(&admins).is_empty(), "{admins:?}");
    let admins = lines(
        &cli,
        &[
            "inspect",
            "dump",
            "users",
            "--where",
            "is_admin=true",
            "--where",
            "must_change_password=false",
            "--where",
            "email=cid@example.com",
        ],
    );
    assert_eq!(keys(&admins), ["4"]);
    let by_id = lines(&cli, &["inspect", "dump", "users", "--where", "id=3"]);
    assert_eq!(by_id[0]["record"]["email"], "bob@example.com");
    let by_name = lines(
        &cli,
        &[
            "inspect",
            "dump",
            "users",
            "--where",
            "username=ann",
            "--fields",
            "id,email",
        ],
    );
    assert_eq!(by_name.len(), 1);
    assert_eq!(
        by_name[0]["record"],
        serde_json::json!({"id": 2, "email": "ann@example.com"})
    );
    // Pairs of ids are keys too.
    let members = lines(&cli, &["inspect", "dump", "org_members", "--after", "2,2"]);
    assert_eq!(keys(&members), ["3,3", "4,4", "5,5"]);
    // People get pretty JSON.
    let (human, _) = cli.expect(&["inspect", "dump", "users", "--limit", "1"], None, 0);
    assert!(human.starts_with("{\n  \"key\": \"1\",\n"), "{human}");
}

#[test]
fn the_seed_runbook_queries_have_an_inspect_form() {
    let cli = three_users();
    // The runbook's `current_workspace_id IS NULL`: nobody, even once bob's only org goes
    // (he gets a new personal org)…
    cli.expect(&["org", "delete", "bobs-workspace", "--force"], None, 0);
    let null_of = |field: &str| {
        lines(
            &cli,
            &[
                "inspect",
                "dump",
                "users",
                "--where",
                &format!("{field}=null"),
                "--fields",
                &format!("id,{field}"),
            ],
        )
    };
    assert_eq!(null_of("current_org_id"), Vec::<serde_json::Value>::new());
    // …while a field that is null matches: the users without a username.
    assert_eq!(
        null_of("username"),
        [
            serde_json::json!({"key": "1", "version": 2, "record": {"id": 1, "username": null}}),
            serde_json::json!({"key": "3", "version": 2, "record": {"id": 3, "username": null}})
        ]
    );
    // `GROUP BY slug HAVING COUNT(*) > 1`: none while the unique index holds…
    let none = cli.json(
        &["inspect", "count", "orgs", "--by", "slug", "--min", "2"],
        None,
    );
    assert_eq!(none["groups"], serde_json::json!([]));
    assert_eq!(none["records"], 3);
    // …and the duplicate when damage wrote a second org with ann's slug.
    tamper(&cli, |tx| {
        let mut orgs = tx.open_table(def("r:orgs")).unwrap();
        let ann = orgs
            .get(&2u64.to_be_bytes()[..])
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        orgs.insert(&99u64.to_be_bytes()[..], &ann[..]).unwrap();
    });
    let dup = cli.json(
        &["inspect", "count", "orgs", "--by", "slug", "--min", "2"],
        None,
    );
    assert_eq!(
        dup["groups"],
        serde_json::json!([{"value": "anns-workspace", "count": 2}])
    );
    let (human, _) = cli.expect(&["inspect", "count", "orgs", "--by", "slug"], None, 0);
    let rows: Vec<&str> = human.lines().collect();
    assert!(
        rows[0].starts_with("slug") && rows[1].starts_with("anns-workspace"),
        "{human}"
    );
    assert!(rows[1].trim_end().ends_with('2'), "{human}");
}

#[test]
fn get_shows_key_bytes_version_and_whether_each_index_entry_is_there() {
    let cli = three_users();
    let ann = cli.json(&["inspect", "get", "users", "2"], None);
    assert_eq!(ann["key"], "2");
    assert_eq!(ann["key_hex"], "0000000000000002");
    assert_eq!((&ann["version"], &ann["format"]), (&2.into(), &2.into()));
    assert_eq!(ann["read_as"], "type");
    assert_eq!(ann["record"]["username"], "ann");
    let state = |v: &Value, index: &str| {
        v["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["index"] == index)
            .unwrap()
            .clone()
    };
    assert_eq!(state(&ann, "email")["entry"], "ann@example.com");
    assert_eq!(state(&ann, "email")["state"], "present");
    assert_eq!(state(&ann, "is_admin")["entry"], "false");
    assert_eq!(state(&ann, "external_id")["state"], "none");
    // Damage: ann's email entry gone, bob's pointing at ann, a stale entry for user 99.
    tamper(&cli, |tx| {
        let mut email = tx.open_table(def("i:users:email")).unwrap();
        email.remove(&key!("ann@example.com")[..]).unwrap();
        email
            .insert(&key!("bob@example.com")[..], &2u64.to_be_bytes()[..])
            .unwrap();
        let mut admin = tx.open_table(def("i:users:is_admin")).unwrap();
        admin.insert(&key!(false, 99u64)[..], &[][..]).unwrap();
    });
    let ann = cli.json(&["inspect", "get", "users", "2"], None);
    assert_eq!(state(&ann, "email")["state"], "missing");
    let bob = cli.json(&["inspect", "get", "users", "3"], None);
    assert_eq!(state(&bob, "email")["state"], "points_elsewhere");
    assert_eq!(state(&bob, "email")["points_at"], "2");
    let (human, _) = cli.expect(&["inspect", "get", "users", "2"], None, 0);
    assert!(
        human.contains("email (unique) ann@example.com: MISSING"),
        "{human}"
    );
    // The index shows each entry with the record it points at.
    let email = cli.json(&["inspect", "index", "users", "email"], None);
    let entries = email["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["entry"], "bob@example.com");
    assert_eq!(entries[1]["points_at"], "2");
    assert_eq!(
        (&entries[1]["exists"], &entries[1]["agrees"]),
        (&true.into(), &false.into())
    );
    let stale = cli.json(
        &["inspect", "index", "users", "is_admin", "--prefix", "false"],
        None,
    );
    let stale: Vec<&Value> = stale["entries"].as_array().unwrap().iter().collect();
    assert_eq!(stale.len(), 3);
    assert_eq!(stale[2]["points_at"], "99");
    assert_eq!(
        (&stale[2]["exists"], &stale[2]["agrees"]),
        (&false.into(), &false.into())
    );
    assert!(stale[..2].iter().all(|e| e["agrees"] == true));
    // What `check` reports can be looked at.
    let (report, err) = cli.expect(&["check"], None, 1);
    assert!(
        report.contains("stale entry pointing at 99"),
        "{report}{err}"
    );
    cli.expect(&["inspect", "get", "users", "99"], None, 1);
}

#[test]
fn index_prefixes_select_entries_and_limits_say_that_more_follow() {
    let cli = three_users();
    let ann = cli.json(
        &["inspect", "index", "users", "email", "--prefix", "ann"],
        None,
    );
    assert_eq!(ann["entries"].as_array().unwrap().len(), 1);
    assert_eq!(ann["entries"][0]["points_at"], "2");
    let members = cli.json(
        &[
            "inspect",
            "index",
            "org_members",
            "by_user",
            "--prefix",
            "3",
        ],
        None,
    );
    assert_eq!(members["entries"][0]["points_at"], "3,3");
    assert_eq!(members["entries"][0]["agrees"], true);
    let one = cli.json(
        &["inspect", "index", "users", "created_at", "--limit", "1"],
        None,
    );
    assert_eq!(one["entries"].as_array().unwrap().len(), 1);
    assert_eq!(one["more"], true);
    // A time prints as it is typed back.
    let when = one["entries"][0]["entry"].as_str().unwrap().to_string();
    assert!(when.ends_with('Z'), "{when}");
    let again = cli.json(
        &["inspect", "index", "users", "created_at", "--prefix", &when],
        None,
    );
    let again = again["entries"].as_array().unwrap();
    assert!(!again.is_empty() && again.iter().all(|e| e["entry"] == when.as_str()));
    let admins = cli.json(
        &["inspect", "index", "users", "is_admin", "--prefix", "true"],
        None,
    );
    assert_eq!(admins["entries"][0]["points_at"], "1");
    assert_eq!(admins["entries"].as_array().unwrap().len(), 1);
    let (human, _) = cli.expect(&["inspect", "index", "users", "email"], None, 0);
    assert!(human.starts_with("entry"), "{human}");
    assert!(
        human.contains("3 entries of users.email (unique)"),
        "{human}"
    );
}

#[test]
fn secrets_are_redacted_unless_asked_for_and_tokens_are_never_shown() {
    let cli = three_users();
    let login = cli.json(
        &["login", "ann@example.com", "--password-stdin"],
        Some("a fine password\n"),
    );
    let token = login["token"].as_str().unwrap().to_string();
    let hash = redkeep::store::key_text(&redkeep::auth::token::hash_token(&token).0, Some(32));
    // Every other table keyed by a token's hash: a password reset token and a web session.
    let reset = cli.json(&["user", "reset-token", "ann@example.com"], None)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let reset_hash =
        redkeep::store::key_text(&redkeep::auth::token::hash_token(&reset).0, Some(32));
    let web_id = b"a web session id";
    {
        let rk = Redkeep::open(cli.data(), cli.options().create(false)).unwrap();
        assert!(
            rk.web_sessions()
                .create(web_id, "{}", redkeep::Timestamp(4_000_000_000))
                .unwrap()
        );
    }
    let web_hash = {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(web_id).into();
        redkeep::store::key_text(&digest, Some(32))
    };
    let creds = lines(&cli, &["inspect", "dump", "credentials"]);
    assert!(
        creds
            .iter()
            .all(|c| c["record"]["password_hash"] == "<redacted>"
                && c["record"]["stamp"] == "<redacted>")
    );
    let sessions = lines(&cli, &["inspect", "dump", "sessions"]);
    assert_eq!(sessions[0]["key"], "<redacted>");
    assert_eq!(sessions[0]["record"]["user_id"], 2);
    let mut everything = String::new();
    for args in [
        vec!["inspect", "dump", "sessions"],
        vec!["inspect", "dump", "credentials"],
        vec!["inspect", "index", "sessions", "by_user"],
        vec!["inspect", "index", "sessions", "short_id"],
        vec!["inspect", "dump", "recovery_tokens"],
        vec!["inspect", "index", "recovery_tokens", "by_user"],
        vec!["inspect", "index", "recovery_tokens", "by_expiry"],
        vec!["inspect", "dump", "web_sessions"],
        vec!["inspect", "index", "web_sessions", "by_expiry"],
        vec!["inspect", "tables"],
    ] {
        for json in [false, true] {
            let mut a = args.clone();
            if json {
                a.push("--json");
            }
            let (out, err) = cli.expect(&a, None, 0);
            everything.push_str(&out);
            everything.push_str(&err);
        }
    }
    assert!(!everything.contains(&hash), "a token hash was shown");
    assert!(
        !everything.contains(&reset_hash),
        "a reset token's hash was shown"
    );
    assert!(
        !everything.contains(&web_hash),
        "a web session's hash was shown"
    );
    assert!(everything.contains("<redacted>"));
    assert!(!everything.contains("$argon2"), "a password hash was shown");
    assert!(!everything.contains(&token[4..]), "a token was shown");
    cli.expect(
        &["inspect", "count", "credentials", "--by", "password_hash"],
        None,
        1,
    );
    // Nor can a secret be guessed by filtering on it.
    let hash_of_ann = lines(
        &cli,
        &[
            "inspect",
            "dump",
            "credentials",
            "--show-secrets",
            "--limit",
            "2",
        ],
    )[1]["record"]["password_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let filter = format!("password_hash={hash_of_ann}");
    let (_, err) = cli.expect(
        &["inspect", "dump", "credentials", "--where", &filter],
        None,
        1,
    );
    assert!(err.contains("holds secret material"), "{err}");
    let found = lines(
        &cli,
        &[
            "inspect",
            "dump",
            "credentials",
            "--where",
            &filter,
            "--show-secrets",
        ],
    );
    assert_eq!(found.len(), 1);
    let (_, err) = cli.expect(&["inspect", "dump", "users", "--limit", "0"], None, 2);
    assert!(err.contains("at least 1"), "{err}");
    // With --show-secrets: the hashes, still never the token.
    let shown = lines(&cli, &["inspect", "dump", "sessions", "--show-secrets"]);
    assert_eq!(shown[0]["key"], hash.as_str());
    let creds = lines(&cli, &["inspect", "dump", "credentials", "--show-secrets"]);
    assert!(
        creds[1]["record"]["password_hash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$")
    );
    let session = cli.json(
        &["inspect", "get", "sessions", &hash, "--show-secrets"],
        None,
    );
    assert_eq!(session["key"], hash.as_str());
    let redacted = cli.json(&["inspect", "get", "sessions", &hash], None);
    assert_eq!(
        (&redacted["key"], &redacted["key_hex"]),
        (&"<redacted>".into(), &"<redacted>".into())
    );
    assert!(!redacted.to_string().contains(&hash));
    let (out, err) = cli.expect(&["inspect", "dump", "sessions", "--show-secrets"], None, 0);
    assert!(!out.contains(&token[4..]) && !err.contains(&token[4..]));
}

/// Writes notes 1–3 as the application's first release did and 4–5 as its next one.
fn notes_of_two_versions(cli: &Cli) {
    let rk = open(&cli.data());
    rk.store()
        .write(|tx| {
            for id in 1..=3 {
                tx.table::<v1::Note>().insert(&v1::Note {
                    id,
                    owner: 2,
                    text: format!("note {id}"),
                })?;
            }
            Ok(())
        })
        .unwrap();
    drop(rk);
    let rk = open(&cli.data());
    rk.store()
        .write(|tx| {
            for id in 4..=5 {
                tx.table::<v2::Note>().insert(&v2::Note {
                    id,
                    owner: 3,
                    body: format!("note {id}"),
                    pinned: Some(true),
                })?;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn an_application_table_of_two_versions_reads_without_its_type_and_through_its_owner() {
    let cli = three_users();
    notes_of_two_versions(&cli);

    // Without the application: the values describe themselves, each in its own version.
    let t = cli.json(&["inspect", "tables"], None);
    let notes = table(&t, "notes");
    assert_eq!(notes["typed"], false);
    assert_eq!(notes["reads_as"], "self-describing");
    assert_eq!(
        notes["versions"],
        serde_json::json!([{"version": 1, "format": 2, "records": 3}, {"version": 2, "format": 2, "records": 2}])
    );
    assert_eq!(notes["indexes"][0]["entries"], 5);
    let dump = lines(&cli, &["inspect", "dump", "notes"]);
    assert_eq!(keys(&dump), ["1", "2", "3", "4", "5"]);
    assert_eq!(dump[0]["version"], 1);
    assert_eq!(
        dump[0]["record"],
        serde_json::json!({"id": 1, "owner": 2, "text": "note 1"})
    );
    assert_eq!(dump[4]["version"], 2);
    assert_eq!(
        dump[4]["record"],
        serde_json::json!({"id": 5, "owner": 3, "body": "note 5", "pinned": true})
    );
    // A field of either version can be filtered on.
    let pinned = lines(
        &cli,
        &["inspect", "dump", "notes", "--where", "pinned=true"],
    );
    assert_eq!(keys(&pinned), ["4", "5"]);
    let texts = lines(
        &cli,
        &["inspect", "dump", "notes", "--where", "text=note 2"],
    );
    assert_eq!(keys(&texts), ["2"]);
    let count = cli.json(&["inspect", "count", "notes", "--by", "owner"], None);
    assert_eq!(
        count["groups"],
        serde_json::json!([{"value": 2, "count": 3}, {"value": 3, "count": 2}])
    );
    let one = cli.json(&["inspect", "get", "notes", "2"], None);
    assert_eq!(one["read_as"], "stored");
    assert_eq!(one["indexes"], Value::Null);
    assert!(
        one["indexes_unknown"]
            .as_str()
            .unwrap()
            .contains("admin socket")
    );
    let by_owner = cli.json(&["inspect", "index", "notes", "by_owner"], None);
    let entries = by_owner["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert!(
        entries
            .iter()
            .all(|e| e["exists"] == true && e["agrees"] == Value::Null)
    );
    assert_eq!(entries[4]["entry"], "3");
    assert_eq!(entries[4]["points_at"], "5");

    // Inside the application, through its admin socket: read through its type, version 1
    // upgraded, and the index entries each record derives.
    let owner = HelperProcess::start("helper_app_owner", OWNER_ENV, cli.data());
    let t = cli.json(&["inspect", "tables"], None);
    assert_eq!(table(&t, "notes")["typed"], true);
    let dump = lines(&cli, &["inspect", "dump", "notes"]);
    assert_eq!(dump.len(), 5);
    assert_eq!(dump[0]["version"], 1);
    assert_eq!(
        dump[0]["record"],
        serde_json::json!({"id": 1, "owner": 2, "body": "note 1", "pinned": null})
    );
    let one = cli.json(&["inspect", "get", "notes", "2"], None);
    assert_eq!(one["read_as"], "type");
    assert_eq!(one["indexes"][0]["state"], "present");
    assert_eq!(one["indexes"][0]["entry"], "2");
    let by_owner = cli.json(
        &["inspect", "index", "notes", "by_owner", "--prefix", "3"],
        None,
    );
    let entries = by_owner["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e["agrees"] == true));
    let (_, err) = cli.expect(&["inspect", "dump", "notes", "--limit", "2"], None, 0);
    assert!(err.contains("--after 2"), "{err}");
    drop(owner);
}

#[test]
fn a_redkeep_table_of_two_record_versions_reads_both() {
    let cli = Cli::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v2-full/redkeep.redb");
    std::fs::create_dir_all(cli.data()).unwrap();
    std::fs::copy(src, cli.data().join(redkeep::STORE_FILE)).unwrap();
    // An outdated store can be looked at before it is migrated.
    let t = cli.json(&["inspect", "tables"], None);
    assert_eq!(
        table(&t, "sessions")["versions"],
        serde_json::json!([{"version": 1, "format": 1, "records": 1}])
    );
    cli.expect(&["migrate", "up"], None, 0);
    cli.json(
        &["login", "ann", "--password-stdin"],
        Some("ann password\n"),
    );
    let t = cli.json(&["inspect", "tables"], None);
    assert_eq!(
        table(&t, "sessions")["versions"],
        serde_json::json!([{"version": 1, "format": 1, "records": 1}, {"version": 2, "format": 2, "records": 1}])
    );
    let sessions = lines(&cli, &["inspect", "dump", "sessions", "--show-secrets"]);
    let versions: Vec<&Value> = sessions.iter().map(|s| &s["version"]).collect();
    let mut sorted = versions.clone();
    sorted.sort_by_key(|v| v.as_u64());
    assert_eq!(sorted, [&Value::from(1), &Value::from(2)]);
    assert!(sessions.iter().all(|s| s["record"]["user_id"] == 2));
    let old = sessions.iter().find(|s| s["version"] == 1).unwrap();
    let got = cli.json(
        &[
            "inspect",
            "get",
            "sessions",
            old["key"].as_str().unwrap(),
            "--show-secrets",
        ],
        None,
    );
    assert_eq!(
        (&got["format"], &got["read_as"]),
        (&1.into(), &"type".into())
    );
    assert!(
        got["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"] == "present")
    );
}

#[test]
fn format_one_values_without_their_type_show_keys_and_sizes_and_say_why() {
    let cli = three_users();
    tamper(&cli, |tx| {
        let mut t = tx.open_table(def("r:legacy_notes")).unwrap();
        for id in 1..=3u64 {
            // A format-1 value: the format byte, then bincode only its type can read.
            t.insert(&id.to_be_bytes()[..], &[1, 7, 2, b'h', b'i'][..])
                .unwrap();
        }
    });
    let t = cli.json(&["inspect", "tables"], None);
    let legacy = table(&t, "legacy_notes");
    assert_eq!(legacy["reads_as"], "keys and sizes");
    assert_eq!(legacy["catalogued"], false);
    let (out, err) = cli.expect(&["inspect", "dump", "legacy_notes", "--json"], None, 0);
    let dump: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        dump[0],
        serde_json::json!({"key": "1", "version": 1, "format": 1, "bytes": 5})
    );
    assert_eq!(dump.len(), 3);
    let reason: Vec<&str> = err.lines().filter(|l| l.contains("format 1")).collect();
    assert_eq!(reason.len(), 1, "{err}");
    assert!(reason[0].contains("register_table"), "{err}");
    let one = cli.json(&["inspect", "get", "legacy_notes", "2"], None);
    assert_eq!(one["record"], Value::Null);
    assert!(
        one["problem"]
            .as_str()
            .unwrap()
            .contains("not self-describing")
    );
}

#[test]
fn mistakes_are_explained_with_what_is_valid() {
    let cli = three_users();
    let (_, err) = cli.expect(&["inspect", "dump", "user"], None, 1);
    assert!(
        err.contains("no table \"user\"") && err.contains(", users"),
        "{err}"
    );
    let (_, err) = cli.expect(&["inspect", "index", "users", "mail"], None, 1);
    assert!(err.contains("email, username"), "{err}");
    let (_, err) = cli.expect(
        &[
            "inspect",
            "dump",
            "users",
            "--where",
            "current_workspace_id=null",
        ],
        None,
        1,
    );
    assert!(
        err.contains("no field \"current_workspace_id\"") && err.contains("current_org_id"),
        "{err}"
    );
    let (_, err) = cli.expect(&["inspect", "count", "orgs", "--by", "owner"], None, 1);
    assert!(err.contains("slug"), "{err}");
    let (_, err) = cli.expect(
        &["inspect", "dump", "users", "--where", "is_admin"],
        None,
        1,
    );
    assert!(err.contains("FIELD=VALUE"), "{err}");
    let (_, err) = cli.expect(&["inspect", "get", "users", "ann"], None, 1);
    assert!(err.contains("numbers (ids)"), "{err}");
    let (_, err) = cli.expect(&["inspect", "get", "org_members", "3"], None, 1);
    assert!(err.contains("3,7"), "{err}");
    let (_, err) = cli.expect(&["inspect", "get", "users", "42"], None, 1);
    assert!(err.contains("users record 42 not found"), "{err}");
}

#[test]
fn inspecting_writes_nothing() {
    let cli = three_users();
    cli.json(
        &["login", "ann@example.com", "--password-stdin"],
        Some("a fine password\n"),
    );
    let before = raw_tables(&cli);
    for args in [
        vec!["inspect", "tables"],
        vec!["inspect", "dump", "users"],
        vec!["inspect", "dump", "sessions", "--show-secrets"],
        vec!["inspect", "get", "users", "2"],
        vec!["inspect", "index", "users", "email"],
        vec!["inspect", "count", "orgs", "--by", "slug"],
    ] {
        cli.expect(&args, None, 0);
    }
    assert_eq!(raw_tables(&cli), before);
}

#[test]
fn a_dump_read_by_a_reader_that_stops_early_ends_quietly() {
    let cli = three_users();
    let rk = Redkeep::open(cli.data(), cli.options()).unwrap();
    rk.store()
        .write(|tx| {
            for id in 1..=20_000 {
                tx.table::<v2::Note>().insert(&v2::Note {
                    id,
                    owner: id % 7,
                    body: "a note long enough to fill a pipe".into(),
                    pinned: None,
                })?;
            }
            Ok(())
        })
        .unwrap();
    drop(rk);
    let mut dump = std::process::Command::cargo_bin("redkeep").unwrap();
    dump.env("REDKEEP_DATA_DIR", cli.data())
        .env_remove("REDKEEP_STORE_URL")
        .args(["inspect", "dump", "notes", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = &cli.store {
        dump.env("REDKEEP_STORE_URL", url);
    }
    let mut child = dump.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone (`| head -1`).
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("{\"key\":\"1\""), "{first}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("error"), "{err}");
}

/// An application's table with secret fields: a token's hash behind a unique index, backup
/// codes (an array) and a recovery object (nested), beside an owner that is not secret.
mod vault {
    use super::*;

    pub const TOKEN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015";
    pub const CODES: [&str; 2] = ["AAAA-1111-code", "BBBB-2222-code"];
    pub const PIN: &str = "pin-31415926";

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Recovery {
        pub pin: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Entry {
        pub id: u64,
        pub owner: String,
        pub token_hash: String,
        pub codes: Vec<String>,
        pub recovery: Recovery,
    }
    impl Entry {
        pub const BY_TOKEN: Index<Entry> = Index::unique("by_token", |e| Some(key!(e.token_hash)));
        pub const BY_OWNER: Index<Entry> = Index::many("by_owner", |e| Some(key!(e.owner)));
    }
    impl Record for Entry {
        const TABLE: &'static str = "vault";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_TOKEN, &Self::BY_OWNER];
        const SECRET_FIELDS: &'static [&'static str] = &["token_hash", "codes", "recovery"];
        fn key(&self) -> u64 {
            self.id
        }
    }

    /// A later build's type that no longer reads the stored records: its `token_hash` is a
    /// number, so reading one quotes the stored string in serde's error.
    pub mod misfit {
        use super::*;

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Entry {
            pub id: u64,
            pub owner: String,
            pub token_hash: u64,
        }
        impl Entry {
            pub const BY_TOKEN: Index<Entry> =
                Index::unique("by_token", |e| Some(key!(e.token_hash)));
            pub const BY_OWNER: Index<Entry> = Index::many("by_owner", |e| Some(key!(e.owner)));
        }
        impl Record for Entry {
            const TABLE: &'static str = "vault";
            type Key = u64;
            const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_TOKEN, &Self::BY_OWNER];
            const SECRET_FIELDS: &'static [&'static str] = &["token_hash", "codes", "recovery"];
            fn key(&self) -> u64 {
                self.id
            }
        }
    }

    fn hex(text: &str) -> String {
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Every secret of the vault, each as text and as the hex of its bytes (an index
    /// entry's `entry_hex`).
    pub fn secrets() -> Vec<String> {
        [TOKEN_HASH, CODES[0], CODES[1], PIN]
            .iter()
            .flat_map(|s| [s.to_string(), hex(s)])
            .collect()
    }

    /// What `--show-secrets` shows: every secret, and the hex of the one an index holds.
    pub fn shown() -> Vec<String> {
        [TOKEN_HASH, &hex(TOKEN_HASH), CODES[0], CODES[1], PIN]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// The store of `cli` with one vault record, written through its type.
    pub fn fill(cli: &Cli) {
        let rk = Redkeep::open(cli.data(), cli.options().create(false)).unwrap();
        rk.register_table::<Entry>().unwrap();
        rk.store()
            .write(|tx| {
                tx.table::<Entry>().insert(&Entry {
                    id: 1,
                    owner: "ann".into(),
                    token_hash: TOKEN_HASH.into(),
                    codes: CODES.iter().map(|c| c.to_string()).collect(),
                    recovery: Recovery { pin: PIN.into() },
                })
            })
            .unwrap();
    }

    /// Runs `redkeep inspect ARGS` inside the application (through `rk`, which registered
    /// its type), as its admin socket would: all it printed (the raw output, the reply for
    /// people and as JSON), or its error.
    pub fn inside(rk: &Redkeep, args: &[&str]) -> Result<String, String> {
        use clap::Parser;
        use redkeep::admin::{Io, Quiet, Request, execute};

        let cli = redkeep::cli::Cli::try_parse_from(
            ["redkeep", "inspect"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .unwrap();
        let req = Request {
            command: cli.command,
            secret: None,
        };
        let mut output = Vec::new();
        let reply = execute(
            rk,
            &req,
            Io {
                input: &mut std::io::empty(),
                output: &mut output,
                feedback: &Quiet,
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(format!(
            "{}\n{}\n{}",
            String::from_utf8_lossy(&output),
            redkeep::cli::render(&reply, false),
            redkeep::cli::render(&reply, true)
        ))
    }
}

/// Which of the vault's secrets `text` shows.
fn vault_secrets_in(text: &str) -> Vec<String> {
    vault::secrets()
        .into_iter()
        .filter(|s| text.contains(s.as_str()))
        .collect()
}

/// The commands that show the vault, each as people and scripts see it, as the operator
/// would type them after `redkeep inspect` (`--show-secrets` added when `show`).
fn vault_commands(show: bool) -> Vec<Vec<&'static str>> {
    let mut out = Vec::new();
    for args in [
        vec!["dump", "vault"],
        vec![
            "dump",
            "vault",
            "--fields",
            "codes.0,codes.1,recovery.pin,token_hash,owner",
        ],
        vec![
            "dump",
            "vault",
            "--fields",
            "recovery",
            "--where",
            "owner=ann",
        ],
        vec!["get", "vault", "1"],
        vec!["index", "vault", "by_token"],
        vec!["index", "vault", "by_owner"],
    ] {
        for json in [false, true] {
            let mut a = args.clone();
            a.extend(json.then_some("--json"));
            a.extend(show.then_some("--show-secrets"));
            out.push(a);
        }
    }
    out
}

#[test]
fn secret_fields_show_in_no_projection_or_index_entry_of_an_application_table() {
    let cli = Cli::new();
    cli.init();
    vault::fill(&cli);

    create_user(&cli, "ann@example.com", &[]);

    // Without the application: only the catalog says which fields are secret.
    for args in vault_commands(false) {
        let mut full = vec!["inspect"];
        full.extend(args);
        let (out, err) = cli.expect(&full, None, 0);
        let text = format!("{out}{err}");
        assert_eq!(
            vault_secrets_in(&text),
            Vec::<String>::new(),
            "{full:?}: {text}"
        );
    }
    // What is not secret still shows, and what is says so.
    let fields = lines(
        &cli,
        &[
            "inspect",
            "dump",
            "vault",
            "--fields",
            "codes.0,recovery.pin,owner",
        ],
    );
    assert_eq!(
        fields[0]["record"],
        serde_json::json!({"codes.0": "<redacted>", "recovery.pin": "<redacted>", "owner": "ann"})
    );
    let owners = cli.json(&["inspect", "index", "vault", "by_owner"], None);
    assert_eq!(owners["entries"][0]["entry"], "<redacted>");
    assert_eq!(owners["entries"][0]["points_at"], "1");
    // redkeep's own tables keep their entries: `users` has no secret field.
    let emails = cli.json(&["inspect", "index", "users", "email"], None);
    assert_eq!(emails["entries"][0]["entry"], "ann@example.com", "{emails}");
    // Which entries a prefix selects would tell what they start with.
    let (_, err) = cli.expect(
        &["inspect", "index", "vault", "by_token", "--prefix", "9f86"],
        None,
        1,
    );
    assert!(err.contains("secret material"), "{err}");
    assert!(vault_secrets_in(&err).is_empty(), "{err}");

    // With --show-secrets, every one of them.
    let mut shown = String::new();
    for args in vault_commands(true) {
        let mut full = vec!["inspect"];
        full.extend(args);
        let (out, err) = cli.expect(&full, None, 0);
        shown.push_str(&out);
        shown.push_str(&err);
    }
    assert_eq!(vault_secrets_in(&shown), vault::shown());
    let found = cli.json(
        &[
            "inspect",
            "index",
            "vault",
            "by_token",
            "--prefix",
            "9f86",
            "--show-secrets",
        ],
        None,
    );
    assert_eq!(found["entries"][0]["entry"], vault::TOKEN_HASH);

    // Inside the application, read through its type: `get` lists each entry too.
    let rk = Redkeep::open(cli.data(), cli.options().create(false)).unwrap();
    rk.register_table::<vault::Entry>().unwrap();
    let got = vault::inside(&rk, &["get", "vault", "1", "--json"]).unwrap();
    assert!(
        got.contains("by_token (unique) <redacted>: present"),
        "{got}"
    );
    for args in vault_commands(false) {
        let text = vault::inside(&rk, &args).unwrap();
        assert_eq!(
            vault_secrets_in(&text),
            Vec::<String>::new(),
            "{args:?}: {text}"
        );
    }
    let err = vault::inside(&rk, &["index", "vault", "by_token", "--prefix", "9f86"]);
    assert!(
        err.as_ref().is_err_and(|e| e.contains("secret material")),
        "{err:?}"
    );
    let mut shown = String::new();
    for args in vault_commands(true) {
        shown.push_str(&vault::inside(&rk, &args).unwrap());
    }
    assert_eq!(vault_secrets_in(&shown), vault::shown());
}

#[test]
fn why_a_record_does_not_read_quotes_none_of_its_secret_values() {
    let cli = Cli::new();
    cli.init();
    vault::fill(&cli);
    // A build whose type no longer reads the records: serde's error quotes the stored
    // `token_hash`.
    let rk = Redkeep::open(cli.data(), cli.options().create(false)).unwrap();
    rk.register_table::<vault::misfit::Entry>().unwrap();
    let dump = vault::inside(&rk, &["dump", "vault", "--json"]).unwrap();
    assert!(dump.contains("invalid type: string <redacted>"), "{dump}");
    let get = vault::inside(&rk, &["get", "vault", "1"]).unwrap();
    assert!(get.contains("problem: "), "{get}");
    assert!(get.contains("index entries: cannot be derived: "), "{get}");
    let index = vault::inside(&rk, &["index", "vault", "by_token"]).unwrap();
    assert!(index.contains("the record does not decode"), "{index}");
    for args in vault_commands(false) {
        let text = vault::inside(&rk, &args).unwrap();
        assert_eq!(
            vault_secrets_in(&text),
            Vec::<String>::new(),
            "{args:?}: {text}"
        );
    }
    // The operator who asks sees what the type choked on.
    let shown = vault::inside(&rk, &["dump", "vault", "--show-secrets"]).unwrap();
    assert!(
        shown.contains(&format!(
            "invalid type: string \\\"{}\\\"",
            vault::TOKEN_HASH
        )),
        "{shown}"
    );
}

#[test]
fn a_malformed_entry_of_an_index_of_token_hashes_shows_no_part_of_a_hash() {
    let cli = three_users();
    let login = cli.json(
        &["login", "ann@example.com", "--password-stdin"],
        Some("a fine password\n"),
    );
    let hash = redkeep::auth::token::hash_token(login["token"].as_str().unwrap()).0;
    // Damage: an entry of `sessions.by_user` cut short, too short to end in a whole key,
    // holding ann's id and half of her session's hash.
    let mut entry = 2u64.to_be_bytes().to_vec();
    entry.extend_from_slice(&hash[..16]);
    common::plant_entry(
        cli.store.as_deref(),
        &cli.data(),
        "i:sessions:by_user",
        &entry,
        &[],
    );
    let half: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    let listed = cli.json(&["inspect", "index", "sessions", "by_user"], None);
    let malformed = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["problem"] == "malformed entry")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        (&malformed["entry"], &malformed["entry_hex"]),
        (&"<redacted>".into(), &"<redacted>".into())
    );
    let (text, _) = cli.expect(&["inspect", "index", "sessions", "by_user"], None, 0);
    assert!(
        !listed.to_string().contains(&half) && !text.contains(&half),
        "{text}"
    );
    let shown = cli.json(
        &["inspect", "index", "sessions", "by_user", "--show-secrets"],
        None,
    );
    assert!(shown.to_string().contains(&half), "{shown}");
}

/// On a store at an older schema version (`migrate down` leaves one), an index of that
/// version's layout is one neither the type nor the catalog names: its entries are shown as
/// `<redacted>` on a table keyed by token hashes (the entry of `sessions.by_expires` held the
/// session's token hash, shown whole though `points at` was redacted), and the listing says
/// why its entries may look malformed.
#[test]
fn an_older_layouts_index_shows_no_token_hash() {
    let cli = three_users();
    let login = cli.json(
        &["login", "ann@example.com", "--password-stdin"],
        Some("a fine password\n"),
    );
    let token = login["token"].as_str().unwrap().to_string();
    let hash = redkeep::auth::token::hash_token(&token).0;
    let hash_hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    cli.expect(&["migrate", "down"], None, 0);
    let (out, _) = cli.expect(
        &["--json", "inspect", "index", "sessions", "by_expires"],
        None,
        0,
    );
    assert!(!out.contains(&hash_hex), "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let entries = listed["entries"].as_array().unwrap();
    assert!(!entries.is_empty(), "{out}");
    for e in entries {
        assert_eq!(e["entry_hex"], "<redacted>", "{out}");
    }
    let (human, _) = cli.expect(&["inspect", "index", "sessions", "by_expires"], None, 0);
    assert!(human.contains("at schema version 2"), "{human}");
    assert!(!human.contains(&hash_hex), "{human}");
}

/// The entries of `api_keys.by_owner` (a 4-byte kind, then the owner's id) show as
/// `user,ID` and `org,ID`, and `--prefix` takes back what is shown (or the kind alone).
#[test]
fn api_key_owner_entries_show_their_owner_and_prefix_finds_them() {
    let cli = Cli::new();
    cli.init();
    let ann = cli.json(&["user", "create", "ann@example.com"], None)["id"]
        .as_u64()
        .unwrap();
    let org = cli.json(
        &["org", "create", "Acme", "--owner", "ann@example.com"],
        None,
    )["id"]
        .as_u64()
        .unwrap();
    cli.expect(&["apikey", "create", "--user", "ann@example.com"], None, 0);
    cli.expect(
        &["apikey", "create", "--org", "acme", "--scope", "read"],
        None,
        0,
    );
    let (user_entry, org_entry) = (format!("user,{ann}"), format!("org,{org}"));
    let all = cli.json(&["inspect", "index", "api_keys", "by_owner"], None);
    let shown: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].as_str().unwrap())
        .collect();
    assert_eq!(shown, [user_entry.as_str(), org_entry.as_str()]);
    for (prefix, want) in [
        (user_entry.as_str(), &user_entry),
        (org_entry.as_str(), &org_entry),
        ("user", &user_entry),
        ("org", &org_entry),
    ] {
        let found = cli.json(
            &[
                "inspect", "index", "api_keys", "by_owner", "--prefix", prefix,
            ],
            None,
        );
        let entries = found["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{prefix}: {found}");
        assert_eq!(entries[0]["entry"], want.as_str());
    }
    // An owner that is none is refused, saying what one looks like (it listed nothing).
    for bad in ["user,x", "user,-1", "team,2"] {
        let (_, err) = cli.expect(
            &["inspect", "index", "api_keys", "by_owner", "--prefix", bad],
            None,
            1,
        );
        assert!(
            err.contains("is no owner; give `user` or `org`"),
            "{bad}: {err}"
        );
    }
}

/// `--fields` with a nested path no record has is refused, naming the fields there, as an
/// unknown top-level field is (it printed `null` on every line); the example the error for a
/// malformed path gives is one that exists.
#[test]
fn unknown_nested_fields_are_refused_and_the_example_path_exists() {
    let cli = Cli::new();
    cli.init();
    cli.json(&["user", "create", "ann@example.com"], None);
    cli.expect(&["apikey", "create", "--user", "ann@example.com"], None, 0);
    let (_, err) = cli.expect(
        &["inspect", "dump", "api_keys", "--fields", "owner.User"],
        None,
        1,
    );
    assert!(err.contains("owner.User") && err.contains("user"), "{err}");
    let (_, err) = cli.expect(&["inspect", "dump", "users", "--fields", ""], None, 1);
    let example = err.rsplit(" or ").next().unwrap().trim();
    assert_eq!(example, "owner.user", "{err}");
    let found = lines(&cli, &["inspect", "dump", "api_keys", "--fields", example]);
    assert!(found[0]["record"][example].is_u64(), "{found:?}");
}
