//! A data dir this user may read but not write: the library opens it read-only on request
//! and the CLI falls back to that, so listing, showing, checking and backing up work, and
//! every change is refused with a sentence saying why, leaving the files as they were.

mod common;

#[cfg(feature = "cli")]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::TestDir;
use redkeep::{Error, NewUser, Redkeep};

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        if entry.is_file() {
            out.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
        }
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn populated(t: &TestDir) {
    let rk = t.open();
    let u = rk
        .users()
        .create(NewUser {
            email: "ann@example.com".into(),
            password: Some("correct horse battery".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user;
    rk.workspaces()
        .update(u.id, |d| {
            d.notes = serde_json::json!(["kept"]);
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_store_opened_read_only_reads_and_refuses_every_change() {
    let t = TestDir::new();
    populated(&t);
    let before = snapshot(t.path());
    let rk = Redkeep::open(t.path(), t.options().read_only(true)).unwrap();
    let ann = rk.users().by_email("ann@example.com").unwrap().unwrap();
    assert_eq!(rk.workspaces().read(ann.id).unwrap().notes[0], "kept");
    let report = rk.check(false).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    let refused = rk.users().create(NewUser {
        email: "bob@example.com".into(),
        ..NewUser::default()
    });
    match refused {
        Err(Error::ReadOnly { what }) => {
            assert!(what.contains("read-only"), "{what}");
            assert!(what.contains("owner"), "{what}");
        }
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    assert!(matches!(rk.check(true), Err(Error::ReadOnly { .. })));
    assert!(rk.users().rename(ann.id, Some("Ann".into()), None).is_err());
    // The workspace folders are part of the data dir: every change to them is refused too.
    let ws = rk.workspaces();
    let refusals = [
        ws.update(ann.id, |d| d.add_note("not kept")).err(),
        ws.save_piece(ann.id, b"{}").err(),
        ws.delete_piece(ann.id, 1).err(),
        ws.trash_folder(ann.id, rk.now()).err(),
        ws.trash_all(rk.now()).err(),
    ];
    for (i, refused) in refusals.into_iter().enumerate() {
        match refused {
            Some(Error::ReadOnly { what }) => assert!(what.contains("read-only"), "{what}"),
            other => panic!("change {i}: expected ReadOnly, got {other:?}"),
        }
    }
    drop(rk);
    assert_eq!(
        snapshot(t.path()),
        before,
        "nothing in the data dir changed"
    );
}

/// A store that refuses writes refuses a login for an address without an account as it
/// refuses one for an account (counting the attempt is a write): the answer does not tell
/// which addresses have accounts.
#[test]
fn a_read_only_handle_answers_logins_alike_whether_the_account_exists() {
    let t = TestDir::new();
    populated(&t);
    {
        let rk = t.open();
        let bob = NewUser {
            email: "bob@example.com".into(),
            password: Some("correct horse battery".into()),
            ..NewUser::default()
        };
        let bob = rk.users().create(bob).unwrap().user;
        rk.users().disable(bob.id).unwrap();
    }
    let rk = Redkeep::open(t.path(), t.options().read_only(true)).unwrap();
    let answers: Vec<String> = [
        ("ann@example.com", "wrong horse battery"),
        ("ann@example.com", "correct horse battery"),
        ("bob@example.com", "correct horse battery"),
        ("nobody@example.com", "correct horse battery"),
        ("not an email", "correct horse battery"),
    ]
    .iter()
    .map(
        |(login, password)| match rk.users().authenticate(login, password) {
            Err(e @ Error::ReadOnly { .. }) => e.to_string(),
            other => panic!("{login}: expected ReadOnly, got {other:?}"),
        },
    )
    .collect();
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
}

#[test]
fn read_only_needs_an_existing_store() {
    let t = TestDir::new();
    let missing = t.path().join("nothing-here");
    assert!(matches!(
        Redkeep::open(&missing, t.options().read_only(true)),
        Err(Error::NotInitialized { .. })
    ));
    assert!(!missing.exists(), "a read-only open creates nothing");
}

/// A data dir for the CLI run by a user who may not write it. As root (CI) permissions do
/// not bind, so the binary runs as `nobody`, from a copy in a folder everybody may enter,
/// on a data dir `nobody` owns.
#[cfg(feature = "cli")]
struct AnotherUser {
    outer: tempfile::TempDir,
    data: std::path::PathBuf,
    root: bool,
    bin: Option<std::path::PathBuf>,
}

#[cfg(feature = "cli")]
impl AnotherUser {
    fn new() -> AnotherUser {
        let outer = tempfile::tempdir().unwrap();
        std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = outer.path().join("data");
        std::fs::create_dir(&data).unwrap();
        AnotherUser {
            outer,
            data,
            root: rustix::process::geteuid().is_root(),
            bin: None,
        }
    }

    /// Hands the data dir to the other user (as root: to `nobody`, all but `kept`, which
    /// stays root's), with the binary it runs.
    fn hand_over(&mut self, kept: Option<&Path>) {
        self.bin = Some(if self.root {
            let copy = self.outer.path().join("redkeep");
            // A hard link where it can be: a copy is written through a file descriptor,
            // which a process another test forks meanwhile inherits until it execs, and
            // running the copy then fails with "Text file busy".
            let bin = assert_cmd::cargo::cargo_bin("redkeep");
            if std::fs::hard_link(&bin, &copy).is_err() {
                std::fs::copy(&bin, &copy).unwrap();
            }
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            for p in walk(&self.data) {
                if Some(p.as_path()) != kept {
                    std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
                }
            }
            copy
        } else {
            assert_cmd::cargo::cargo_bin("redkeep")
        });
    }

    /// Makes the data dir readable only: folders 0500, files 0400.
    fn read_only(&self) {
        for p in walk(&self.data) {
            let mode = if p.is_dir() { 0o500 } else { 0o400 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    /// Runs the CLI on the data dir as the other user: exit code, stdout, stderr.
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        use std::os::unix::process::CommandExt;
        let bin = self.bin.as_ref().expect("hand_over first");
        let mut c = std::process::Command::new(bin);
        c.arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env("REDKEEP_ARGON2", common::FAST_ARGON2)
            .env_remove("RUST_LOG");
        if self.root {
            c.uid(65534).gid(65534);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The CLI on a data dir the running user cannot write. As root (CI) permissions do not
/// bind, so the binary runs as `nobody` from a copy it can reach.
#[cfg(feature = "cli")]
#[test]
fn the_cli_reads_a_data_dir_it_cannot_write_and_says_why_changes_fail() {
    let t = TestDir::new();
    let mut other = AnotherUser::new();
    let data = other.data.clone();
    {
        let rk = Redkeep::open(&data, t.options()).unwrap();
        let ann = rk
            .users()
            .create(NewUser {
                email: "ann@example.com".into(),
                ..NewUser::default()
            })
            .unwrap()
            .user;
        rk.workspaces()
            .save_piece(ann.id, br#"{"title":"dawn"}"#)
            .unwrap();
    }
    other.hand_over(None);
    other.read_only();
    let before = snapshot(&data);
    let run = |args: &[&str]| other.run(args);
    let (code, out, err) = run(&["user", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ann@example.com"), "{out}");
    let (code, out, err) = run(&["check"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["state"], "read-only", "{out}");
    assert_eq!(status["schema_version"], redkeep::SCHEMA_VERSION);
    // Folders are read under a shared lock taken through a read-only lock file.
    let (code, out, err) = run(&["gallery", "list", "ann@example.com"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.lines().any(|l| l.starts_with('1')), "{out}");
    let (code, out, err) = run(&["workspace", "show", "ann@example.com"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("pieces:      1"), "{out}");
    let (code, _, err) = run(&["user", "create", "bob@example.com"]);
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("read-only") && err.contains("owner"), "{err}");
    // What needs the store alone says the same, not that it is open in shared mode, nor a
    // bare "permission denied".
    let (code, _, err) = run(&["migrate", "down", "--to", "1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("read-only") && err.contains("owner") && !err.contains("shared mode"),
        "{err}"
    );
    for args in [&["reset", "--force"][..], &["init", "--no-admin"]] {
        let (code, _, err) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("data dir's owner"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // A data dir this user may not even enter hides the store: that is said, not that
    // there is no store.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o000)).unwrap();
    for args in [&["status"][..], &["user", "list"]] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!(
                "the data dir {} is this user's, but its mode (0000) keeps this user out of \
                 it; nothing was opened: `chmod 700 ",
                data.display()
            )) && !err.contains("init"),
            "{args:?}: {err}"
        );
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o500)).unwrap();
    // Put the permissions back so the temp dir can be removed.
    for p in walk(&data) {
        let mode = if p.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    assert_eq!(snapshot(&data), before);
}

/// A second open in the process that holds the store, for writing or only to read, is
/// `InUse` and says the holder is this process (not "stop process N", N being itself);
/// once the first handle is dropped, the data dir opens again.
#[test]
fn a_second_open_in_the_same_process_says_this_process_holds_it() {
    let t = TestDir::new();
    let rk = t.open();
    for read_only in [false, true] {
        match Redkeep::open(t.path(), t.options().read_only(read_only)) {
            Err(Error::InUse { holder, .. }) => {
                assert!(
                    holder.contains("this process has it open already"),
                    "{holder}"
                )
            }
            other => panic!("read_only {read_only}: expected InUse, got {other:?}"),
        }
    }
    drop(rk);
    let again = Redkeep::open(t.path(), t.options().read_only(true)).unwrap();
    // A read-only handle holds the file too: an open for writing is told the same.
    match Redkeep::open(t.path(), t.options()) {
        Err(Error::InUse { holder, .. }) => {
            assert!(
                holder.contains("this process has it open already"),
                "{holder}"
            )
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    drop(again);
    t.open();
}

/// A session validated through a read-only handle after the touch interval is valid: the
/// use it cannot record is left unrecorded, not turned into an error.
#[test]
fn a_session_validates_through_a_read_only_handle() {
    let t = TestDir::new();
    let clock = std::sync::Arc::new(redkeep::ManualClock::new(redkeep::Timestamp(1_900_000_000)));
    let rk = Redkeep::open(t.path(), t.options().clock(clock.clone())).unwrap();
    rk.users()
        .create(NewUser {
            email: "ann@example.com".into(),
            password: Some("correct horse battery".into()),
            ..NewUser::default()
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
    drop(rk);
    clock.advance(std::time::Duration::from_secs(600));
    let ro = Redkeep::open(t.path(), t.options().clock(clock).read_only(true)).unwrap();
    // A handle that only reads does not try the write at all: a server on it used to log a
    // warning for every request (the write failing each time).
    let logs = Logs::default();
    let writer = logs.clone();
    let quiet = {
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .set_default()
    };
    for _ in 0..3 {
        let (user, _) = ro.sessions().validate(login.token.expose()).unwrap();
        assert_eq!(user.email, "ann@example.com");
    }
    drop(quiet);
    let logged = logs.text();
    assert!(!logged.contains("could not be recorded"), "{logged}");
}

/// What a test's log subscriber wrote.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A valid API key verifies through a handle that takes no writes, as a session does: its
/// use is due to be recorded (the first use, and again past the touch interval), and that
/// record is all a read-only handle leaves out. It used to fail the verification with
/// `ReadOnly`, and `redkeep apikey verify` by a user who may only read the data dir with it.
#[test]
fn an_api_key_verifies_through_a_read_only_handle() {
    use redkeep::auth::api_keys::{ApiKeySpec, KeyOwner};
    let t = TestDir::new();
    let clock = std::sync::Arc::new(redkeep::ManualClock::new(redkeep::Timestamp(1_900_000_000)));
    let rk = Redkeep::open(t.path(), t.options().clock(clock.clone())).unwrap();
    let ann = rk
        .users()
        .create(NewUser {
            email: "ann@example.com".into(),
            ..NewUser::default()
        })
        .unwrap()
        .user;
    let key = rk
        .api_keys()
        .create(ApiKeySpec {
            owner: KeyOwner::User(ann.id),
            scopes: vec![],
            expires_in: None,
            created_by: None,
        })
        .unwrap();
    let revoked = rk
        .api_keys()
        .create(ApiKeySpec {
            owner: KeyOwner::User(ann.id),
            scopes: vec![],
            expires_in: None,
            created_by: None,
        })
        .unwrap();
    rk.api_keys().revoke(&revoked.api_key.prefix).unwrap();
    drop(rk);
    clock.advance(std::time::Duration::from_secs(600));
    let ro = Redkeep::open(t.path(), t.options().clock(clock).read_only(true)).unwrap();
    let k = ro.api_keys().verify(key.key.expose()).unwrap();
    assert_eq!(k.prefix, key.api_key.prefix);
    assert_eq!(k.last_used_at, None, "nothing was recorded");
    // What the read shows still decides: a revoked key stays refused.
    assert!(matches!(
        ro.api_keys().verify(revoked.key.expose()),
        Err(redkeep::Error::InvalidCredential { .. })
    ));
}

/// An owner marker the repairing user cannot read says nothing about whose folder it is:
/// `check --repair` reports it and leaves the folder where it is. It used to take the read
/// error for a foreign folder, move the user's whole folder (document and gallery) to the
/// trash, and end its report with "ok".
#[cfg(feature = "cli")]
#[test]
fn a_repair_leaves_a_folder_whose_owner_marker_it_cannot_read() {
    let t = TestDir::new();
    let mut other = AnotherUser::new();
    let data = other.data.clone();
    let (marker, doc) = {
        let rk = Redkeep::open(&data, t.options()).unwrap();
        let ann = rk
            .users()
            .create(NewUser {
                email: "ann@example.com".into(),
                ..NewUser::default()
            })
            .unwrap()
            .user;
        rk.workspaces()
            .update(ann.id, |d| {
                d.notes = serde_json::json!(["keep me"]);
                Ok(())
            })
            .unwrap();
        let dir = data.join(format!("workspaces/users/{}", ann.id));
        (dir.join(".owner"), dir.join("workspace.json"))
    };
    let before = std::fs::read(&doc).unwrap();
    other.hand_over(Some(&marker));
    if !other.root {
        std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let (code, stdout, stderr) = other.run(&["check", "--repair"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("owner marker cannot be read, so a repair leaves it"),
        "{stdout}{stderr}"
    );
    std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        std::fs::read(&doc).unwrap(),
        before,
        "the folder is in place"
    );
}

/// A workspace document the repairing user cannot read (left root's by a `sudo` import, say)
/// is not damage: `check --repair` reports it and leaves it whole, where it used to move it
/// aside and start an empty document. As root (CI) permissions do not bind, so the binary
/// runs as `nobody` on a data dir it owns, the document root's.
#[cfg(feature = "cli")]
#[test]
fn a_repair_leaves_a_workspace_document_it_cannot_read() {
    let t = TestDir::new();
    let mut other = AnotherUser::new();
    let data = other.data.clone();
    let doc = {
        let rk = Redkeep::open(&data, t.options()).unwrap();
        let ann = rk
            .users()
            .create(NewUser {
                email: "ann@example.com".into(),
                ..NewUser::default()
            })
            .unwrap()
            .user;
        rk.workspaces()
            .update(ann.id, |d| {
                d.notes = serde_json::json!(["keep me"]);
                Ok(())
            })
            .unwrap();
        data.join(format!("workspaces/users/{}/workspace.json", ann.id))
    };
    let before = std::fs::read(&doc).unwrap();
    other.hand_over(Some(&doc));
    if !other.root {
        std::fs::set_permissions(&doc, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let (code, stdout, stderr) = other.run(&["check", "--repair"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("cannot be read is not damaged"),
        "{stdout}{stderr}"
    );
    // As root, the cause is the file's owner, and `check` says so.
    if other.root {
        assert!(
            stdout.contains(&format!(
                "the cause: {} belongs to uid 0, not to uid 65534",
                doc.display()
            )) && stdout.contains("chown -R 65534"),
            "{stdout}{stderr}"
        );
    }
    std::fs::set_permissions(&doc, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        std::fs::read(&doc).unwrap(),
        before,
        "the document is whole"
    );
}

/// A folder's lock file left root's (a command run with `sudo` while the application was
/// stopped) keeps the application's user out of the whole folder: `check` names that owner as
/// the cause, with the `chown` that gives the file back, where it said only "Permission
/// denied". As root (CI) the binary runs as `nobody`; as another user permissions do not let
/// the test make a file of another owner, so it checks nothing there.
#[cfg(feature = "cli")]
#[test]
fn check_names_a_file_of_another_owner_as_why_a_folder_cannot_be_opened() {
    let t = TestDir::new();
    let mut other = AnotherUser::new();
    if !other.root {
        return;
    }
    let data = other.data.clone();
    let lock = {
        let rk = Redkeep::open(&data, t.options()).unwrap();
        let ann = rk
            .users()
            .create(NewUser {
                email: "ann@example.com".into(),
                ..NewUser::default()
            })
            .unwrap()
            .user;
        rk.workspaces()
            .update(ann.id, |d| {
                d.notes = serde_json::json!(["keep me"]);
                Ok(())
            })
            .unwrap();
        data.join(format!("workspaces/users/{}/.lock", ann.id))
    };
    other.hand_over(Some(&lock));
    let (code, stdout, stderr) = other.run(&["check"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "the cause: {} belongs to uid 0, not to uid 65534",
            lock.display()
        )) && stdout.contains("chown -R 65534"),
        "{stdout}{stderr}"
    );
}

/// A damaged store is called damaged to a user who may read the data dir but not write it
/// (with the way out, a salvage, which only reads the file): the open for writing was
/// refused first, and "permission denied" was all that user was told.
#[cfg(feature = "cli")]
#[test]
fn a_reader_who_may_not_write_is_told_the_store_is_damaged() {
    let t = TestDir::new();
    let mut other = AnotherUser::new();
    let data = other.data.clone();
    drop(Redkeep::open(&data, t.options()).unwrap());
    // The format byte of the latest commit record in the file's header: redb's open finds
    // it, after the open for writing was refused.
    let db = data.join(redkeep::STORE_FILE);
    let mut bytes = std::fs::read(&db).unwrap();
    let primary = 64 + 128 * usize::from(bytes[9] & 1);
    bytes[primary] ^= 1;
    std::fs::write(&db, &bytes).unwrap();
    other.hand_over(None);
    other.read_only();
    let (code, _, err) = other.run(&["user", "list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("a commit record in its header is damaged") && err.contains("salvage"),
        "{err}"
    );
    for p in walk(&data) {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
}

/// A trash folder the running user may not change: deleting a user, a reset and a restore
/// (which move folders there) are refused before the store changes, and say which folder
/// and what to do. They used to change the store and then fail moving the folders, exit 1
/// with accounts deleted, the store emptied, or replaced.
#[cfg(feature = "cli")]
#[test]
fn a_trash_this_user_may_not_change_refuses_before_the_store_changes() {
    let t = TestDir::new();
    let mut other = AnotherUser::new();
    let data = other.data.clone();
    let backup = other.outer.path().join("b.bak");
    {
        let rk = Redkeep::open(&data, t.options()).unwrap();
        for email in ["ann@example.com", "bea@example.com"] {
            let id = rk
                .users()
                .create(NewUser {
                    email: email.into(),
                    ..NewUser::default()
                })
                .unwrap()
                .user
                .id;
            rk.workspaces().save_piece(id, b"{}").unwrap();
        }
        redkeep::ops::backup(&rk, &backup).unwrap();
    }
    std::fs::create_dir(data.join("workspaces/trash")).unwrap();
    other.hand_over(None);
    if other.root {
        std::os::unix::fs::chown(&backup, Some(65534), Some(65534)).unwrap();
    }
    std::fs::set_permissions(
        data.join("workspaces/trash"),
        std::fs::Permissions::from_mode(0o500),
    )
    .unwrap();
    let listed = |other: &AnotherUser| {
        let (code, out, err) = other.run(&["user", "list"]);
        assert_eq!(code, Some(0), "{err}");
        ["ann@example.com", "bea@example.com"]
            .iter()
            .all(|e| out.contains(e))
    };
    let bak = backup.to_str().unwrap();
    for args in [
        vec!["user", "delete", "ann@example.com"],
        vec!["reset", "--force"],
        vec!["restore", "--force", bak],
    ] {
        let (code, out, err) = other.run(&args);
        assert_eq!(code, Some(1), "{args:?}: {out}{err}");
        assert!(
            err.contains("trash may not be changed by this user")
                && err.contains("nothing was changed")
                && err.lines().count() == 1,
            "{args:?}: {err}"
        );
        assert!(listed(&other), "{args:?} changed the store");
    }
    let left: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".pre-"))
        .collect();
    assert!(
        left.is_empty(),
        "no safety copy of a refused change: {left:?}"
    );
}

/// A read-only operator, who reads the data dir through its group (README: a user who may
/// read the data dir but not write it still gets `check`), always had `check` exit 1: the
/// group bits that let them read were themselves problems. Open to the group only, they are
/// a note to such a checker; open to other users, they stay a problem; and a check by the
/// owner still counts the group bits as a problem (`--repair` makes them 0700 / 0600).
#[cfg(feature = "cli")]
#[test]
fn a_group_reader_is_not_failed_for_the_group_bits_that_let_it_read() {
    let setpriv = Path::new("/usr/bin/setpriv");
    if rustix::process::geteuid().as_raw() != 0
        || !setpriv.exists()
        || common::pg::engine_is_postgres()
    {
        eprintln!("skipped: needs root and setpriv, and a store file, to check as another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(tmp.path(), 0o755).unwrap();
    let dir = tmp.path().join("d");
    {
        let rk = Redkeep::open(
            &dir,
            redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST),
        )
        .unwrap();
        let ann = rk
            .users()
            .create(NewUser {
                email: "ann@example.com".into(),
                password: Some("ann password 1".into()),
                ..NewUser::default()
            })
            .unwrap()
            .user
            .id;
        rk.workspaces().save_piece(ann, b"{}").unwrap();
    }
    let open_to = |dirs: u32, files: u32| {
        for p in walk(&dir) {
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                mode(&p, dirs).unwrap();
            } else if m.is_file() {
                mode(&p, files).unwrap();
            }
        }
    };
    let check = |as_reader: bool| {
        let mut c = if as_reader {
            let mut c = std::process::Command::new(setpriv);
            c.args(["--reuid=65534", "--regid=0", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_redkeep"));
            c
        } else {
            std::process::Command::new(env!("CARGO_BIN_EXE_redkeep"))
        };
        let o = c.arg("--data-dir").arg(&dir).arg("check").output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    open_to(0o750, 0o640);
    let (code, out, err) = check(true);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("ok: no problems found"), "{out}{err}");
    assert!(
        err.contains("is open to its group (mode 0750), which lets this user (uid 65534) read it")
            && err.contains("entr(ies) are open to their group"),
        "{err}"
    );
    // The owner's check: the same bits are a problem.
    let (code, out, err) = check(false);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("open to other users"), "{out}");
    // Open to every user: a problem to the reader too.
    open_to(0o755, 0o644);
    let (code, out, err) = check(true);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("open to other users"), "{out}");
}

/// A bind mount of a folder onto itself, remounted read-only; unmounted when dropped (a
/// failed assertion leaves no mount behind).
#[cfg(feature = "cli")]
struct ReadOnlyMount(std::path::PathBuf);

#[cfg(feature = "cli")]
impl ReadOnlyMount {
    fn new(dir: &Path) -> ReadOnlyMount {
        let mount = |args: &[&str]| {
            let ok = std::process::Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "needs root with the right to mount (as CI runs): mount {args:?} failed"
            );
        };
        mount(&["--bind"]);
        let guard = ReadOnlyMount(dir.to_path_buf());
        mount(&["-o", "remount,ro,bind"]);
        guard
    }
}

#[cfg(feature = "cli")]
impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// On a read-only file system, `status` says the file system is why nothing can be
/// changed (not that this user may not write the store), and a change to a workspace says
/// to remount it read-write, as a change to the store does.
#[cfg(feature = "cli")]
#[test]
fn on_a_read_only_file_system_status_and_every_refusal_say_to_remount() {
    let cli = common::Cli {
        dir: tempfile::tempdir().unwrap(),
        store: None,
    };
    cli.init();
    cli.json(&["user", "create", "ann@example.com"], None);
    cli.expect(
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"v\":1}"),
        0,
    );
    let before = snapshot(&cli.data());
    let mounted = ReadOnlyMount::new(&cli.data());
    let status = cli.json(&["status"], None);
    assert_eq!(
        (&status["state"], &status["read_only_file_system"]),
        (&serde_json::json!("read-only"), &serde_json::json!(true)),
        "{status}"
    );
    let (out, _) = cli.expect(&["status"], None, 0);
    assert!(
        out.starts_with("the store is on a read-only file system"),
        "{out}"
    );
    let (_, err) = cli.expect(&["user", "create", "bob@example.com"], None, 1);
    assert!(err.contains("remount it read-write"), "{err}");
    let (_, err) = cli.expect(
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"v\":2}"),
        1,
    );
    assert!(
        err.contains(
            "is on a read-only file system, so workspace folders cannot be changed; \
             remount it read-write"
        ),
        "{err}"
    );
    drop(mounted);
    assert_eq!(snapshot(&cli.data()), before);
    assert_eq!(cli.json(&["status"], None)["state"], "free");
}

/// A tmpfs of `size` mounted on the folder `dir`; unmounted when dropped.
#[cfg(feature = "cli")]
struct SmallMount(std::path::PathBuf);

#[cfg(feature = "cli")]
impl SmallMount {
    fn new(dir: &Path, size: &str) -> SmallMount {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "needs root with the right to mount (as CI runs): mounting a tmpfs failed"
        );
        SmallMount(dir.to_path_buf())
    }
}

#[cfg(feature = "cli")]
impl Drop for SmallMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A backup into a file system that runs full names the backup and the folder to free space
/// in (it said "storage error while writing the copy", naming neither), and leaves nothing
/// there; the same backup elsewhere then succeeds.
#[cfg(feature = "cli")]
#[test]
fn a_backup_into_a_full_file_system_names_where_to_free_space() {
    let cli = common::Cli {
        dir: tempfile::tempdir().unwrap(),
        store: None,
    };
    cli.init();
    cli.json(&["user", "create", "ann@example.com"], None);
    let full = cli.dir.path().join("full");
    let mounted = SmallMount::new(&full, "64k");
    let dest = full.join("b.tar");
    let (_, err) = cli.expect(&["backup", &dest.display().to_string()], None, 1);
    assert!(
        err.contains(&format!("error: writing the backup {}: ", dest.display()))
            && err.contains("No space left on device")
            && err.contains(&format!(
                "free some space on the file system of {}, which the backup and its copy of \
                 the store are written to",
                full.display()
            )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 0);
    drop(mounted);
    cli.expect(&["backup", &dest.display().to_string()], None, 0);
}
