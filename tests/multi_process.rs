//! Several processes on one data dir: a `Shared` holder sees the CLI's writes; an `Exclusive`
//! holder is named in the CLI's error; concurrent registrations with one single-use invite give
//! exactly one user.
//!
//! The holding process is this test binary started again with `REDKEEP_TEST_HOLD` set; it
//! runs only `helper_process_holding_the_store`, which then opens the store and answers
//! `count` on stdin until stdin closes.
#![cfg(feature = "cli")]

mod common;

use common::HelperProcess;

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use redkeep::{Mode, Options, PasswordParams, Redkeep};

const HOLD_ENV: &str = "REDKEEP_TEST_HOLD";

#[test]
fn helper_process_holding_the_store() {
    let Ok(spec) = std::env::var(HOLD_ENV) else {
        return; // Only meaningful when started by the tests below.
    };
    let (mode, dir) = spec.split_once(':').unwrap();
    // Without the admin socket, so the CLI cannot go through this process and must say who
    // holds the store (tests/live_admin.rs covers the socket).
    let options = match mode {
        "exclusive" => exclusive(),
        "reader" => shared_reader(),
        _ => Options::default()
            .mode(Mode::Shared)
            .password(PasswordParams::INSECURE_FAST),
    };
    let rk = Redkeep::open(dir, options).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        // `release`: answers, then closes the store and exits.
        if line.trim() == "release" {
            writeln!(out, "0").unwrap();
            out.flush().unwrap();
            drop(rk);
            return;
        }
        // `spin PATH`: reads and writes until PATH exists (a minute at most), then answers
        // how many rounds it made and how many of them failed.
        if let Some(stop) = line.trim().strip_prefix("spin ") {
            let (mut rounds, mut failed) = (0u64, 0u64);
            let began = std::time::Instant::now();
            while !std::path::Path::new(stop).exists()
                && began.elapsed() < std::time::Duration::from_secs(60)
            {
                rounds += 1;
                let read = rk.users().count().and_then(|_| {
                    rk.invites()
                        .list(redkeep::InviteFilter::All, usize::MAX)
                        .map(|_| ())
                });
                let wrote = rk.invites().create(redkeep::InviteSpec::default());
                if read.is_err() || wrote.is_err() {
                    failed += 1;
                }
            }
            writeln!(out, "{rounds} {failed}").unwrap();
            out.flush().unwrap();
        }
        if line.trim() == "invite" {
            rk.invites().create(redkeep::InviteSpec::default()).unwrap();
            writeln!(out, "0").unwrap();
            out.flush().unwrap();
        }
        if line.trim() == "count" {
            let users = rk.users().count().unwrap();
            let invites = rk
                .invites()
                .list(redkeep::InviteFilter::All, usize::MAX)
                .unwrap()
                .len();
            writeln!(out, "{users} {invites}").unwrap();
            out.flush().unwrap();
        }
    }
}

fn start_holder(mode: &str, dir: &std::path::Path) -> HelperProcess {
    HelperProcess::start(
        "helper_process_holding_the_store",
        HOLD_ENV,
        format!("{mode}:{}", dir.display()),
    )
}

fn redkeep(dir: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("redkeep").unwrap();
    c.env("REDKEEP_DATA_DIR", dir)
        .env("REDKEEP_ARGON2", common::FAST_ARGON2);
    c
}

fn run(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut c = redkeep(dir);
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(s) = stdin {
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn init(dir: &std::path::Path) {
    assert!(run(dir, &["init", "--no-admin"], None).status.success());
}

#[test]
fn cli_writes_while_another_process_holds_the_store_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let mut holder = start_holder("shared", &dir);
    assert_eq!(holder.ask("count"), vec![0, 0]);
    let out = run(&dir, &["invite", "create", "-c", "2"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &dir,
        &["user", "create", "a@example.com", "--password-stdin"],
        Some("password one\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(holder.ask("count"), vec![1, 2]);
    let out = run(&dir, &["status", "--json"], None);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "shared");
    assert_eq!(status["schema_version"], redkeep::SCHEMA_VERSION);
}

#[test]
fn cli_names_the_process_holding_the_store_exclusively() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let holder = start_holder("exclusive", &dir);
    let pid = holder.child.id();
    let out = run(&dir, &["user", "list"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("process {pid} holds it exclusively")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    drop(holder);
    // Once the holder is gone, the CLI works again.
    assert!(run(&dir, &["user", "list"], None).status.success());
}

/// A process that has the store open without holding it alone (an operator's command that
/// only reads it, such as `redkeep backup`; here a read-only handle) delays an exclusive
/// open (an application starting) until it lets go, up to `Options::wait_for_readers` (30 s
/// by default), rather than failing it; the open says what it waits for, naming the process.
/// An application holding the store, which leaves a marker, is named at once
/// (`cli_names_the_process_holding_the_store_exclusively`).
#[test]
fn an_exclusive_open_waits_for_a_reader_to_let_go() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let mut reader = start_holder("reader", &dir);
    assert_eq!(reader.ask("count"), vec![0, 0]);
    let (told, waiting) = std::sync::mpsc::channel();
    let opener = {
        let dir = dir.clone();
        let options = exclusive().on_wait_for_readers(move |wait| {
            let _ = told.send(wait.clone());
        });
        std::thread::spawn(move || Redkeep::open(&dir, options).map(drop))
    };
    // The reader holds the store until it is told: the open waits for it, and says so
    // (an open that does not wait drops the sender, and this fails).
    let wait = waiting
        .recv()
        .expect("the open did not wait for the reader");
    assert_eq!(wait.limit, std::time::Duration::from_secs(30));
    assert!(
        !opener.is_finished(),
        "the open did not wait for the reader"
    );
    let pid = reader.child.id();
    assert_eq!(wait.pids, vec![pid]);
    let said = wait.to_string();
    assert!(
        said.contains(&format!(
            "is open in process {pid}, to read it or in shared mode; waiting up to 30 s"
        )),
        "{said}"
    );
    assert_eq!(reader.ask("release"), vec![0]);
    let opened = opener.join().unwrap();
    assert!(opened.is_ok(), "{:?}", opened.err());
    drop(reader);
}

/// With `Options::wait_for_readers` zero, an exclusive open is refused at once while
/// another process has the store open, and the refusal names that process.
#[test]
fn an_exclusive_open_that_may_not_wait_names_the_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let mut reader = start_holder("reader", &dir);
    assert_eq!(reader.ask("count"), vec![0, 0]);
    let refused = Redkeep::open(
        &dir,
        exclusive()
            .wait_for_readers(std::time::Duration::ZERO)
            .on_wait_for_readers(|wait| panic!("the open waited: {wait}")),
    )
    .map(drop)
    .expect_err("the open should be refused while the reader has the store open");
    let pid = reader.child.id();
    let said = refused.to_string();
    assert!(
        matches!(&refused, redkeep::Error::InUse { holder, .. }
            if holder.starts_with(&format!("process {pid} has it open, to read it or in shared mode; "))),
        "{said}"
    );
    assert!(!said.contains("after waiting"), "{said}");
    assert_eq!(reader.ask("release"), vec![0]);
    // (It answers before it closes the store: its exit is the sign.)
    assert!(reader.child.wait().unwrap().success());
    // Once it let go, the same open succeeds.
    let opened = Redkeep::open(
        &dir,
        exclusive().wait_for_readers(std::time::Duration::ZERO),
    );
    assert!(opened.is_ok(), "{:?}", opened.err());
    drop(opened);
    // A wait too long to add to the clock is no deadline, not a panic.
    let opened = Redkeep::open(&dir, exclusive().wait_for_readers(std::time::Duration::MAX));
    assert!(opened.is_ok(), "{:?}", opened.err());
}

/// Exclusive opens refused because a shared-mode application holds the store (each tried
/// again for half a second here, as such an application leaves no owner marker) leave that
/// application's reads and writes alone.
#[test]
fn refused_exclusive_opens_do_not_disturb_a_shared_application() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let mut app = start_holder("shared", &dir);
    let stop = tmp.path().join("stop");
    let opener = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            // The application stops spinning however this thread ends.
            struct Stop(std::path::PathBuf);
            impl Drop for Stop {
                fn drop(&mut self) {
                    let _ = std::fs::write(&self.0, b"");
                }
            }
            let _stop = Stop(stop);
            let briefly = || exclusive().wait_for_readers(std::time::Duration::from_millis(500));
            (0..4)
                .map(|_| Redkeep::open(&dir, briefly()).map(drop))
                .collect::<Vec<_>>()
        })
    };
    let answer = app.ask(&format!("spin {}", stop.display()));
    let opens = opener.join().unwrap();
    assert!(
        opens
            .iter()
            .all(|o| matches!(o, Err(redkeep::Error::InUse { .. }))),
        "each exclusive open should be refused as in use: {opens:?}"
    );
    assert!(answer[0] > 0, "{answer:?}");
    assert_eq!(answer[1], 0, "{} of {} rounds failed", answer[1], answer[0]);
    let count = app.ask("count");
    assert_eq!(count[1], answer[0], "one invite per round: {count:?}");
}

/// A command that reads a small input from a pipe (`gallery add USER -`) reads it before it
/// opens the store: while the pipe is slow to come, it holds nothing, so a migration or a
/// restore is not kept out by a holder nobody can name.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_command_waiting_for_its_input_does_not_hold_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    ok(&run(&dir, &["user", "create", "ann@example.com"], None));
    let mut child = redkeep(&dir)
        .args(["gallery", "add", "ann@example.com", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Until it blocks reading its stdin (syscall 0, `read`, on fd 0), a minute at most.
    let syscall = format!("/proc/{}/syscall", child.id());
    let began = std::time::Instant::now();
    loop {
        let state = std::fs::read_to_string(&syscall)
            .unwrap_or_else(|e| panic!("reading {syscall} (it needs ptrace access): {e}"));
        if state.starts_with("0 0x0 ") {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!("it ended first: {}", String::from_utf8_lossy(&out.stderr));
        }
        assert!(
            began.elapsed() < std::time::Duration::from_secs(60),
            "never read stdin"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let store = dir.join(redkeep::STORE_FILE).canonicalize().unwrap();
    let holds = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| target == store);
    assert!(
        !holds,
        "the command holds the store while it waits for its input"
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"title":"late"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out);
}

#[test]
fn eight_processes_racing_for_one_single_use_invite_make_one_user() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let out = run(&dir, &["invite", "create", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = v[0]["code"].as_str().unwrap().to_string();
    let children: Vec<Child> = (0..8)
        .map(|i| {
            let mut c = redkeep(&dir);
            c.args([
                "user",
                "create",
                &format!("racer{i}@example.com"),
                "--invite",
                &code,
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            let mut child = c.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"racing password\n")
                .unwrap();
            child
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        winners,
        1,
        "{:?}",
        outputs
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
            .collect::<Vec<_>>()
    );
    for o in outputs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("has been used 1 of 1 times"), "{err}");
    }
    let out = run(&dir, &["user", "list", "--json"], None);
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert!(run(&dir, &["check"], None).status.success());
}

/// The store file's bytes and modification time.
fn file_state(dir: &std::path::Path) -> (Vec<u8>, std::time::SystemTime) {
    let path = dir.join(redkeep::STORE_FILE);
    let bytes = std::fs::read(&path).unwrap();
    (bytes, std::fs::metadata(&path).unwrap().modified().unwrap())
}

/// `redkeep status --json` of `dir`, which must succeed.
fn status_json(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&ok(&run(dir, &["status", "--json"], None))).unwrap()
}

/// Options of an application that wants the store to itself.
fn exclusive() -> Options {
    Options::default()
        .mode(Mode::Exclusive)
        .password(PasswordParams::INSECURE_FAST)
}

/// Options of a handle that only reads, beside shared-mode writers.
fn shared_reader() -> Options {
    Options::default()
        .mode(Mode::Shared)
        .read_only(true)
        .password(PasswordParams::INSECURE_FAST)
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn commands_that_only_read_leave_the_store_file_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    ok(&run(
        &dir,
        &["user", "create", "ann@example.com", "--password-stdin"],
        Some("password one\n"),
    ));
    ok(&run(
        &dir,
        &["gallery", "add", "ann@example.com", "-"],
        Some("{\"t\":1}"),
    ));
    let jpeg = tmp.path().join("a.jpg");
    std::fs::write(&jpeg, [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]).unwrap();
    ok(&run(
        &dir,
        &[
            "user",
            "avatar",
            "set",
            "ann@example.com",
            jpeg.to_str().unwrap(),
        ],
        None,
    ));
    let org = run(&dir, &["org", "list", "--json"], None);
    let slug = serde_json::from_slice::<serde_json::Value>(&org.stdout).unwrap()[0]["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let before = file_state(&dir);
    let backup = tmp.path().join("b.tar");
    let export = tmp.path().join("e.jsonl");
    let reading: Vec<Vec<&str>> = vec![
        vec!["stats"],
        vec!["status"],
        vec!["user", "list"],
        vec!["user", "show", "ann@example.com"],
        vec!["user", "permissions", "ann@example.com"],
        vec!["user", "orgs", "ann@example.com"],
        vec!["user", "workspace", "ann@example.com"],
        vec!["user", "can", "ann@example.com", "users.read"],
        vec!["user", "avatar", "get", "ann@example.com"],
        vec!["role", "list"],
        vec!["role", "show", "admin"],
        vec!["org", "list"],
        vec!["org", "show", &slug],
        vec!["audit", "list"],
        vec!["session", "list"],
        vec!["apikey", "list"],
        vec!["invite", "list"],
        vec!["agent", "list"],
        vec!["workspace", "list"],
        vec!["workspace", "show", "ann@example.com"],
        vec!["workspace", "trash"],
        vec!["gallery", "list", "ann@example.com"],
        vec!["gallery", "show", "ann@example.com", "1"],
        vec!["migrate", "status"],
        vec!["inspect", "tables"],
        vec!["inspect", "dump", "users"],
        vec!["inspect", "get", "users", "1"],
        vec!["inspect", "index", "users", "email"],
        vec!["inspect", "count", "users", "--by", "email"],
        vec!["backup", backup.to_str().unwrap()],
        vec!["export", "-o", export.to_str().unwrap()],
    ];
    for args in &reading {
        // The list and the CLI's own notion of a reading command agree.
        let argv = std::iter::once("redkeep").chain(args.iter().copied());
        let parsed = <redkeep::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        assert!(
            parsed.command.only_reads() || args[0] == "status",
            "{args:?}"
        );
        let out = run(&dir, args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        // `user can` answers "no" with exit 1.
        let answered =
            out.status.success() || (args.get(1) == Some(&"can") && out.status.code() == Some(1));
        assert!(answered, "{args:?}: {err}");
        assert!(!out.stdout.is_empty() || args[0] == "backup", "{args:?}");
        assert!(
            file_state(&dir) == before,
            "`{}` changed the store file",
            args.join(" ")
        );
    }
    // What was read is what is there: the backup restores the user and her piece.
    let copy = tmp.path().join("copy");
    ok(&run(&copy, &["restore", backup.to_str().unwrap()], None));
    let list = ok(&run(&copy, &["gallery", "list", "ann@example.com"], None));
    assert!(list.lines().any(|l| l.starts_with('1')), "{list}");

    // A store to migrate: a reading command that refuses it (migrate up first) leaves it as
    // it was too.
    ok(&run(&dir, &["migrate", "down"], None));
    let outdated = file_state(&dir);
    let out = run(&dir, &["user", "list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("migrate up"));
    assert!(
        file_state(&dir) == outdated,
        "a refused `user list` changed the store file"
    );
    ok(&run(&dir, &["stats"], None));
    assert!(
        file_state(&dir) == outdated,
        "`stats` changed an outdated store file"
    );
}

#[test]
fn a_reading_command_reads_beside_a_shared_writer_and_sees_its_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let mut holder = start_holder("shared", &dir);
    ok(&run(&dir, &["invite", "create"], None));
    assert_eq!(holder.ask("count"), vec![0, 1]);
    let out = redkeep(&dir)
        .args(["invite", "list", "--json", "-vv"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let list = ok(&out);
    let invites: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(invites.as_array().unwrap().len(), 1, "{list}");
    // Read through the read-only open, not an open for writing that followed it.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains("only to read it failed") && !log.contains("needs settling"),
        "{log}"
    );
    // A handle opened only to read, in shared mode, follows the writers' commits, and the
    // store reads as shared while it is open, though no one else writes.
    let reader = Redkeep::open(&dir, shared_reader()).unwrap();
    assert_eq!(reader.users().count().unwrap(), 0);
    ok(&run(
        &dir,
        &["user", "create", "ann@example.com", "--password-stdin"],
        Some("password one\n"),
    ));
    assert_eq!(reader.users().count().unwrap(), 1);
    drop(holder);
    let status = status_json(&dir);
    assert_eq!(status["state"], "shared", "{status}");
    // Nobody may take the store to itself while the reader reads.
    let out = run(&dir, &["migrate", "down", "--to", "1"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot run while the store is held"), "{err}");
    drop(reader);
    let status = status_json(&dir);
    assert_eq!(status["state"], "free", "{status}");
    assert_eq!(status["schema_version"], redkeep::SCHEMA_VERSION);
}

/// Every command that needs the store to itself (an import, a migration) says why and that
/// it cannot run in one sentence, naming the holder, while another process has it open.
#[test]
fn a_command_that_needs_the_store_alone_says_so_in_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let export = tmp.path().join("all.jsonl");
    ok(&run(
        &dir,
        &["export", "-o", export.to_str().unwrap()],
        None,
    ));
    let mut holder = start_holder("shared", &dir);
    assert_eq!(holder.ask("count"), vec![0, 0]);
    for (args, why) in [
        (
            vec!["import", export.to_str().unwrap()],
            "an import fills the store in one write that lasts as long as its input, and \
             every other write would wait for it",
        ),
        (
            vec!["migrate", "down", "--to", "1"],
            "a migration changes the stored format",
        ),
    ] {
        let out = run(&dir, &args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        // The holder follows, said once (this process leaves no owner marker; it is named
        // by the file lock it holds), without a parenthesis inside another.
        let expected = format!(
            "error: {why}, so this command cannot run while the store is held: process {} \
             has it open, to read it or in shared mode, still after waiting 0.5 s",
            holder.child.id()
        );
        assert!(err.starts_with(&expected), "{args:?}: {err}");
        assert!(!err.contains("))"), "{args:?}: {err}");
        assert!(
            err.trim_end().ends_with("; stop the application first"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(holder.ask("count"), vec![0, 0], "nothing changed");
}

#[test]
fn a_reading_command_on_a_store_whose_writer_was_killed_still_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let mut holder = start_holder("shared", &dir);
    // The holder writes last, and is killed before it closes the file.
    assert_eq!(holder.ask("invite"), vec![0]);
    assert_eq!(holder.ask("count"), vec![0, 1]);
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    // `status` says so, and leaves the file to the next open for writing.
    let before = file_state(&dir);
    let status = status_json(&dir);
    assert_eq!(status["state"], "free", "{status}");
    assert_eq!(status["not_closed_cleanly"], true, "{status}");
    // Whether an operation stopped part way cannot be read without that repair: `status`
    // says where to look (a reset killed part way went unsaid).
    let (code, text, _) = {
        let out = run(&dir, &["status"], None);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            (),
        )
    };
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("whether an operation (a reset, a restore) stopped part way: `redkeep check` opens it and says"),
        "{text}"
    );
    assert!(
        file_state(&dir) == before,
        "`status` changed the store file"
    );
    // Only an open for writing repairs such a file; one to read it is refused, and says why.
    let refused = Redkeep::open(&dir, shared_reader())
        .expect_err("a read-only open of a file not closed cleanly is refused");
    assert!(
        refused.full_message().contains("not closed cleanly"),
        "{}",
        refused.full_message()
    );
    let list = ok(&run(&dir, &["invite", "list", "--json"], None));
    let invites: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(invites.as_array().unwrap().len(), 1, "{list}");
    let status = status_json(&dir);
    assert_eq!(status["state"], "free", "{status}");
    assert_eq!(status["not_closed_cleanly"], false, "{status}");
    assert!(run(&dir, &["check"], None).status.success());
}
