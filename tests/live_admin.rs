//! Live administration: while a process holds the store exclusively, the CLI runs through its
//! admin socket with the same output, exit codes and errors as locally.
//!
//! The owner is this test binary started again with `REDKEEP_TEST_OWNER` set; it runs only
//! `helper_owner_process`, which opens the data dir exclusively and answers `count` on stdin.
#![cfg(feature = "cli")]

mod common;

use common::HelperProcess;

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use redkeep::store::{FaultKind, FaultPlan};
use redkeep::{Options, PasswordParams, Redkeep};
use serde_json::Value;

const OWNER_ENV: &str = "REDKEEP_TEST_OWNER";
const PROBE_ENV: &str = "REDKEEP_TEST_PROBE";
const SYNC_FAULT_ENV: &str = "REDKEEP_TEST_OWNER_SYNC_FAULT";

#[test]
fn helper_owner_process() {
    if let Ok(socket) = std::env::var(PROBE_ENV) {
        // Connect as whoever we run as and print the owner's answer.
        let answer = raw_request(
            Path::new(&socket),
            br#"{"version":6,"request":{"command":{"User":{"List":{"all":true}}},"secret":null}}"#,
        );
        println!("answer: {answer}");
        return;
    }
    let Ok(dir) = std::env::var(OWNER_ENV) else {
        return; // Only meaningful when started by the tests below.
    };
    let mut options = Options::default().password(PasswordParams::INSECURE_FAST);
    // With SYNC_FAULT_ENV=n, the n-th sync of the storage engine fails (once); `fired`
    // tells whether it did. An open that fails answers `open failed` to every line.
    let plan = std::env::var(SYNC_FAULT_ENV)
        .ok()
        .map(|n| FaultPlan::new(FaultKind::Sync, n.parse().unwrap()));
    options.faults = plan.clone();
    let rk = match Redkeep::open(&dir, options) {
        Ok(rk) => rk,
        Err(_) if plan.is_some() => {
            println!("ready");
            for _ in std::io::stdin().lock().lines() {
                println!("open failed");
            }
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let _admin = redkeep::admin::serve(&rk).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        if line.trim() == "fired" {
            let fired = plan.as_ref().is_some_and(|p| p.fired());
            writeln!(out, "{}", u8::from(fired)).unwrap();
            out.flush().unwrap();
        }
        if line.trim() == "count" {
            let users = rk.users().count().unwrap();
            let active = rk
                .users()
                .list(redkeep::UserFilter::Active, None, usize::MAX)
                .unwrap()
                .len();
            let invites = rk
                .invites()
                .list(redkeep::InviteFilter::All, usize::MAX)
                .unwrap()
                .len();
            writeln!(out, "{users} {active} {invites}").unwrap();
            out.flush().unwrap();
        }
    }
}

fn start_owner(dir: &Path) -> HelperProcess {
    HelperProcess::start("helper_owner_process", OWNER_ENV, dir)
}

fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut c = Command::cargo_bin("redkeep").unwrap();
    c.env("REDKEEP_DATA_DIR", dir)
        .env("REDKEEP_ARGON2", common::FAST_ARGON2)
        .args(args)
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
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Removes what differs between two runs by nature: times and generated secrets.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive(|c: char| c.is_whitespace() || c == '"') {
        let w = word.trim_end_matches(|c: char| c.is_whitespace() || c == '"');
        let rest = &word[w.len()..];
        let masked = if w.len() == 20 && w.chars().all(|c| c.is_ascii_alphanumeric()) {
            "<password>"
        } else if w.len() == 32 && w.chars().all(|c| c.is_ascii_hexdigit()) {
            "<uid>"
        } else if w.starts_with("rki_") {
            "<code>"
        } else if w.len() == 20 && w.ends_with('Z') && w.contains('T') {
            "<time>"
        } else {
            w
        };
        out.push_str(masked);
        out.push_str(rest);
    }
    out
}

fn init(dir: &Path) {
    assert_eq!(
        run(
            dir,
            &[
                "init",
                "--admin-email",
                "root@example.com",
                "--admin-password-stdin"
            ],
            Some("root password\n")
        )
        .0,
        0
    );
}

fn script() -> Vec<(Vec<&'static str>, Option<&'static str>)> {
    vec![
        (vec!["invite", "create", "-c", "2", "--json"], None),
        (
            vec![
                "user",
                "create",
                "ann@example.com",
                "--name",
                "Ann",
                "--password-stdin",
                "--json",
            ],
            Some("ann password\n"),
        ),
        (vec!["user", "create", "gen@example.com"], None),
        (
            vec!["user", "create", "ANN@example.com", "--password-stdin"],
            Some("other password\n"),
        ),
        (vec!["user", "list", "--json"], None),
        (vec!["user", "disable", "ann@example.com"], None),
        (
            vec![
                "user",
                "check-password",
                "ann@example.com",
                "--password-stdin",
            ],
            Some("ann password\n"),
        ),
        (vec!["user", "show", "nobody@example.com"], None),
        (vec!["invite", "list"], None),
        (vec!["check", "--json"], None),
        (vec!["role", "list"], None),
        (vec!["stats", "--json"], None),
    ]
}

#[test]
fn commands_through_the_owner_match_local_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (local, live) = (tmp.path().join("local"), tmp.path().join("live"));
    init(&local);
    init(&live);
    let mut owner = start_owner(&live);
    for (args, stdin) in script() {
        let a = run(&local, &args, stdin);
        let b = run(&live, &args, stdin);
        assert_eq!(a.0, b.0, "{args:?} exit codes: {a:?} vs {b:?}");
        let (sa, sb) = (normalise(&a.1), normalise(&b.1));
        let stats = args.contains(&"stats");
        if stats {
            // File sizes differ between two files; the table counts must not. (Nor the
            // bytes, but the audit log's: each event names its origin, the CLI here and the
            // admin socket there.)
            let (mut ja, mut jb): (Value, Value) = (
                serde_json::from_str(&a.1).unwrap(),
                serde_json::from_str(&b.1).unwrap(),
            );
            for j in [&mut ja, &mut jb] {
                j["tables"]["audit"]["bytes"] = Value::Null;
            }
            assert_eq!(ja["tables"], jb["tables"]);
        } else {
            assert_eq!(sa, sb, "{args:?} stdout");
        }
        // A local run warns about the cheap REDKEEP_ARGON2 it hashes with; the owner
        // hashes with its own settings.
        let local_err: String =
            a.2.lines()
                .filter(|l| !l.starts_with("warning: REDKEEP_ARGON2="))
                .map(|l| format!("{l}\n"))
                .collect();
        assert_eq!(normalise(&local_err), normalise(&b.2), "{args:?} stderr");
    }
    // The owner saw every change at once: 3 users (root, ann, gen), ann disabled, 2 invites.
    assert_eq!(owner.ask("count"), vec![3, 2, 2]);
    // Status names the owner and reaches its socket.
    let (code, out, _) = run(&live, &["status", "--json"], None);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["state"], "exclusive");
    assert_eq!(status["pid"], owner.child.id());
    assert_eq!(status["socket"], "reachable");
    assert_eq!(status["schema_version"], redkeep::SCHEMA_VERSION);
    // Whole-file commands refuse to run under the owner.
    let backup = tmp.path().join("b.redb");
    assert_eq!(run(&live, &["backup", backup.to_str().unwrap()], None).0, 0);
    for args in [
        vec!["restore", backup.to_str().unwrap(), "--force"],
        vec!["reset", "--force"],
    ] {
        let (code, _, err) = run(&live, &args, None);
        assert_eq!(code, 1);
        assert!(err.contains("stop the application first"), "{err}");
        assert!(
            err.contains(&format!(
                "this command replaces the whole store, so it cannot run while the store is \
                 held: process {} holds it exclusively; ",
                owner.child.id()
            )),
            "{err}"
        );
    }
    drop(owner);
    let (_, out, _) = run(&live, &["status", "--json"], None);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["state"],
        "free"
    );
    assert!(
        !live.join("redkeep.sock").exists(),
        "the socket was not removed on close"
    );
}

#[test]
fn an_oversized_or_malformed_request_is_refused_without_harming_the_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let mut owner = start_owner(&dir);
    let socket = dir.join("redkeep.sock");
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(b"R").unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert!(
        String::from_utf8_lossy(&answer).contains("exceeds"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(b"R").unwrap();
    s.write_all(&5u32.to_be_bytes()).unwrap();
    s.write_all(b"hello").unwrap();
    s.write_all(b"E\0\0\0\0").unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("malformed request"));
    // A client that connects and sends nothing does not block others.
    let _idle = UnixStream::connect(&socket).unwrap();
    let (code, _, err) = run(&dir, &["invite", "create"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(owner.ask("count")[2], 1);
    drop(owner);
}

/// Past the connections the application serves, those waiting for their turn and those it
/// answers busy (each with a thread), one more is still told the application is busy: it was
/// closed unanswered, and the CLI said the application "closed the connection before
/// answering".
#[test]
fn a_client_past_every_slot_and_place_in_line_is_told_the_application_is_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let mut owner = start_owner(&dir);
    let socket = dir.join("redkeep.sock");
    // Idle clients hold every slot (until the owner's request deadline) and every place in
    // line, and 8 more are answered busy.
    let idle: Vec<UnixStream> =
        (0..redkeep::admin::MAX_CONNECTIONS + redkeep::admin::MAX_WAITING + 8)
            .map(|_| UnixStream::connect(&socket).unwrap())
            .collect();
    let (code, out, err) = run(&dir, &["invite", "create"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("the application is running 32 admin commands and 256 more wait for their turn, so this one was not run"),
        "{err}"
    );
    drop(idle);
    assert_eq!(owner.ask("count")[2], 0, "nothing was made");
}

/// More commands at once than the application serves (a script running `xargs -P 64`) wait
/// for their turn and all run: those past the 32 served were refused at once, "the owner is
/// busy with other admin requests; try again".
#[test]
fn more_commands_at_once_than_the_application_serves_all_run_in_turn() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let rk = Redkeep::open(
        &dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let server = redkeep::admin::serve(&rk).unwrap();
    // Idle clients take every slot, until they leave.
    let idle: Vec<UnixStream> = (0..redkeep::admin::MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(server.path()).unwrap())
        .collect();
    // As a script would run them (one fork of this process: a child forked here holds a
    // copy of every socket of the other tests until it runs the CLI).
    let extra = 40;
    let outs = tmp.path().join("outs");
    std::fs::create_dir(&outs).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("redkeep");
    let mut xargs = Command::new("xargs")
        .args(["-P", "0", "-I{}", "sh", "-c"])
        .arg(r#""$0" invite create >"$1/{}.out" 2>&1; echo $? >"$1/{}.tmp"; mv "$1/{}.tmp" "$1/{}.rc""#)
        .arg(&bin)
        .arg(&outs)
        .env("REDKEEP_DATA_DIR", &dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let numbers: String = (0..extra).map(|i| format!("{i}\n")).collect();
    let mut stdin = xargs.stdin.take().unwrap();
    stdin.write_all(numbers.as_bytes()).unwrap();
    drop(stdin);
    let ended = |i: usize| {
        let rc = std::fs::read_to_string(outs.join(format!("{i}.rc"))).ok()?;
        let out = std::fs::read_to_string(outs.join(format!("{i}.out"))).unwrap_or_default();
        Some((rc.trim().to_string(), out))
    };
    // Every command is in line before a slot frees (a bound on a failure, not a wait for the
    // clock); one that ends first was refused.
    let until = Instant::now() + Duration::from_secs(120);
    while server.waiting() < extra {
        if let Some((rc, out)) = (0..extra).find_map(ended) {
            panic!("a command ended (exit {rc}) before its turn came: {out}");
        }
        assert!(
            Instant::now() < until,
            "{} of {extra} in line",
            server.waiting()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(idle);
    assert!(xargs.wait().unwrap().success());
    for i in 0..extra {
        let (rc, out) = ended(i).unwrap();
        assert!(rc == "0" && out.contains("rki_"), "exit {rc}: {out}");
    }
    let made = rk.invites().list(redkeep::InviteFilter::All, 100).unwrap();
    assert_eq!(made.len(), extra);
}

/// A command waiting for its turn when the application stops its socket is not run, and its
/// client is told so (not that the application closed the connection, which says the command
/// may have been carried out).
#[test]
fn a_command_waiting_for_its_turn_when_the_socket_stops_is_told_it_was_not_run() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let rk = Redkeep::open(
        &dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let server = redkeep::admin::serve(&rk).unwrap();
    let socket = server.path().to_path_buf();
    let idle: Vec<UnixStream> = (0..redkeep::admin::MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    let body = br#"{"version":6,"request":{"command":{"Invite":{"Create":{"count":1,"expires":null,"uses":1}}},"secret":null}}"#;
    let waiting = std::thread::spawn(move || raw_request(&socket, body));
    // A bound on a failure, not a wait for the clock.
    let until = Instant::now() + Duration::from_secs(60);
    while server.waiting() < 1 {
        assert!(Instant::now() < until, "the request never waited");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(server);
    let answer = waiting.join().unwrap();
    assert!(
        answer.contains("before this command's turn came, so it was not run"),
        "{answer}"
    );
    drop(idle);
    let made = rk.invites().list(redkeep::InviteFilter::All, 10).unwrap();
    assert_eq!(made.len(), 0);
}

/// With the application's socket file removed by hand (or a temp-file cleaner), `status`
/// said the holder serves no socket, which was untrue, and commands said only that its
/// socket does not answer: both now say the file is missing and to restart the application
/// to recreate it. (The application does not recreate it by itself: it would need to
/// watch the file, and a data dir moved under it (see F5) would get a socket in whatever
/// folder is at the old path.)
#[test]
fn a_removed_socket_file_is_named_with_how_to_get_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let rk = Redkeep::open(
        &dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let server = redkeep::admin::serve(&rk).unwrap();
    std::fs::remove_file(server.path()).unwrap();
    let (code, out, err) = run(&dir, &["status"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("admin socket: missing (the application listens on")
            && out.contains("restart the application to recreate it"),
        "{out}"
    );
    let (_, json, _) = run(&dir, &["status", "--json"], None);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["socket"], "missing", "{json}");
    let (code, out, err) = run(&dir, &["invite", "create"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("it serves an admin socket, but its file")
            && err.contains("restart the application to recreate it"),
        "{err}"
    );
    drop(server);
}

/// An import never runs through the owner: it fills the store in one write transaction that
/// lasts as long as its input, so every write of the application waited on it, for ever on a
/// stalled pipe (an endless input here). The CLI says at once to stop the application, and
/// the owner refuses a client that asks anyway, dropping what it sends within its limits.
/// A change sent through the owner's socket is recorded with the socket's peer (its uid and
/// pid) as its origin, one made by a local run with the CLI's; `-v` says where the command
/// went.
#[test]
fn changes_through_the_owner_are_audited_with_the_socket_peer() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    // (Made by this process, whose uid the commands it starts run as.)
    let uid = std::fs::metadata(tmp.path()).unwrap().uid();
    let owner = start_owner(&dir);
    let (code, _, err) = run(&dir, &["-v", "invite", "create"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "the store is held by process {}: the command is sent to it through {}",
            owner.child.id(),
            dir.join("redkeep.sock").display()
        )),
        "{err}"
    );
    assert!(!err.contains("opened the store"), "{err}");
    let (code, out, err) = run(&dir, &["audit", "list", "--json", "--limit", "1000"], None);
    assert_eq!(code, 0, "{err}");
    let events: Value = serde_json::from_str(&out).unwrap();
    let origin_of = |action: &str| {
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action)
            .and_then(|e| e["origin"].as_str())
            .unwrap_or_else(|| panic!("{action} in {events}"))
            .to_string()
    };
    let sent = origin_of("invite_created");
    let prefix = format!("admin socket, peer uid {uid}, pid ");
    let pid: u32 = sent
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{sent}"))
        .parse()
        .unwrap();
    assert!(
        pid != owner.child.id() && pid != std::process::id(),
        "{sent}"
    );
    // `init` ran here, before the owner started.
    assert_eq!(origin_of("user_created"), format!("redkeep CLI, uid {uid}"));
    let (_, out, _) = run(&dir, &["audit", "list"], None);
    assert!(out.lines().next().unwrap().contains(" origin "), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("invite_created") && l.contains(&sent)),
        "{out}"
    );
}

#[test]
fn an_import_never_runs_through_the_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let mut owner = start_owner(&dir);
    let mut c = Command::cargo_bin("redkeep").unwrap();
    c.env("REDKEEP_DATA_DIR", &dir)
        .env("REDKEEP_ARGON2", common::FAST_ARGON2)
        .args(["import", "-"])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id();
    let (done, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    // A bound on a failure, not a wait for the clock: a command that never ends fails here.
    let Ok(out) = ended.recv_timeout(std::time::Duration::from_secs(120)) else {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        panic!("`import -` from /dev/zero under the owner did not end");
    };
    let out = out.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("an import fills the store"), "{err}");
    assert!(err.contains("stop the application first"), "{err}");
    // One sentence, not two clauses run together ("… would wait for it and cannot run …"),
    // nor an "it" that may be either ("… would wait for it, so it cannot run …").
    assert!(
        err.contains("would wait for it, so this command cannot run while the store is held"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // A client that sends the request anyway is refused, its endless input dropped.
    let socket = dir.join("redkeep.sock");
    let mut s = UnixStream::connect(&socket).unwrap();
    let body = br#"{"version":6,"request":{"command":{"Import":{"file":"-"}},"secret":null}}"#;
    s.write_all(b"R").unwrap();
    s.write_all(&u32::try_from(body.len()).unwrap().to_be_bytes())
        .unwrap();
    s.write_all(body).unwrap();
    let mut reader = s.try_clone().unwrap();
    let answer = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = reader.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let chunk = vec![b'{'; 64 * 1024];
    while s.write_all(b"I").is_ok()
        && s.write_all(&u32::try_from(chunk.len()).unwrap().to_be_bytes())
            .is_ok()
        && s.write_all(&chunk).is_ok()
    {}
    let answer = answer.join().unwrap();
    assert!(answer.contains("an import fills the store"), "{answer}");
    // The owner serves on, and nothing was imported.
    let (code, _, err) = run(&dir, &["invite", "create"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(owner.ask("count")[2], 1);
}

/// `invite create -c N` makes its codes in one commit: a storage failure at any step
/// leaves none of them (or, when the commit reached the disk before the failure, all of
/// them, as the error says it may), never some whose codes were never shown. It made one
/// commit per code, and a failure part way left live codes nobody saw.
#[test]
fn invite_create_of_several_codes_is_all_or_nothing_under_storage_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    init(&base);
    let mut failed = 0;
    for n in 1u64.. {
        assert!(n < 200, "the syncs of `invite create -c 3` never end");
        let dir = tmp.path().join(format!("d{n}"));
        common::copy_tree(&base, &dir);
        let n_text = std::ffi::OsString::from(n.to_string());
        let mut owner = HelperProcess::start_with(
            "helper_owner_process",
            &[
                (OWNER_ENV, dir.as_os_str()),
                (SYNC_FAULT_ENV, n_text.as_os_str()),
            ],
        );
        // A sync of the open itself: not this test's business.
        owner.send("fired");
        if owner.line() != "0" {
            continue;
        }
        let (code, out, err) = run(&dir, &["invite", "create", "-c", "3"], None);
        owner.send("fired");
        let fired = owner.line() == "1";
        drop(owner);
        let stored = Redkeep::open(
            &dir,
            Options::default().password(PasswordParams::INSECURE_FAST),
        )
        .unwrap()
        .invites()
        .list(redkeep::InviteFilter::All, usize::MAX)
        .unwrap()
        .len();
        if !fired {
            assert_eq!(code, 0, "{err}");
            assert_eq!((stored, out.lines().count()), (3, 3), "{out}");
            break;
        }
        if code != 0 {
            failed += 1;
            assert!(
                stored == 0 || (stored == 3 && err.contains("may have been stored")),
                "sync {n}: {stored} of 3 invites stored after: {err}"
            );
        } else {
            assert_eq!(stored, 3, "sync {n}: {out}");
        }
    }
    assert!(failed > 0, "no failure was injected");
}

#[test]
fn a_stale_socket_from_a_killed_owner_blocks_neither_the_cli_nor_a_new_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let mut owner = start_owner(&dir);
    owner.child.kill().unwrap(); // SIGKILL: no cleanup
    owner.child.wait().unwrap();
    assert!(dir.join("redkeep.sock").exists());
    let (code, _, err) = run(&dir, &["user", "list"], None);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(&dir, &["status", "--json"], None);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["state"],
        "free"
    );
    let mut again = start_owner(&dir);
    let (code, _, err) = run(&dir, &["invite", "create"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again.ask("count")[2], 1);
    drop(again);
}

/// Stopping the admin socket returns though nothing can connect to it any more (its file
/// removed by a cleanup, the data dir moved): it used to wait for a connection for ever, and
/// the application hung at shutdown.
#[test]
fn the_admin_socket_stops_when_its_file_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let rk = Redkeep::open(
        &dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    for gone in ["removed", "moved"] {
        let server = redkeep::admin::serve(&rk).unwrap();
        match gone {
            "removed" => std::fs::remove_file(server.path()).unwrap(),
            _ => std::fs::rename(server.path(), tmp.path().join("elsewhere.sock")).unwrap(),
        }
        let (done, stopped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(server);
            let _ = done.send(());
        });
        // A bound on a failure, not a wait for the clock: a hang fails the test.
        assert!(
            stopped
                .recv_timeout(std::time::Duration::from_secs(30))
                .is_ok(),
            "the server with its socket {gone} did not stop"
        );
    }
    // The store serves a new socket afterwards.
    let server = redkeep::admin::serve(&rk).unwrap();
    assert!(server.path().exists());
}

#[test]
fn four_clients_times_25_commands_through_one_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let mut owner = start_owner(&dir);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let dir: PathBuf = dir.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let email = format!("w{w}-{i}@example.com");
                    let (code, _, err) = match i % 3 {
                        0 => run(
                            &dir,
                            &["user", "create", &email, "--password-stdin"],
                            Some("some password\n"),
                        ),
                        1 => run(&dir, &["invite", "create"], None),
                        _ => run(&dir, &["user", "list", "--json"], None),
                    };
                    assert_eq!(code, 0, "{err}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let counts = owner.ask("count");
    assert_eq!(counts[0], 1 + 4 * 9); // root + 9 creations per worker (i = 0, 3, …, 24)
    assert_eq!(counts[2], 4 * 8);
    let (code, _, err) = run(&dir, &["check"], None);
    assert_eq!(code, 0, "{err}");
    drop(owner);
}

/// Sends one request straight to an owner's socket (as another client would: a request frame
/// of kind R, length and JSON, then the end of its empty input) and returns the raw answer.
fn raw_request(socket: &Path, body: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(b"R").unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
    s.write_all(b"E\0\0\0\0").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_migration_never_runs_under_a_live_application() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let mut owner = start_owner(&dir);
    let (code, out, err) = run(&dir, &["migrate", "down"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("stop the application first"), "{err}");
    assert!(!err.contains("shared mode"), "{err}");
    // Up to date: `migrate up` has nothing to do, so nothing to stop the application for.
    let (code, out, err) = run(&dir, &["migrate", "up"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already at schema version"), "{out}");
    let answer = raw_request(
        &dir.join("redkeep.sock"),
        br#"{"version":6,"request":{"command":{"Migrate":{"Down":{"to":null}}},"secret":null}}"#,
    );
    assert!(
        answer.contains("a migration changes the stored format"),
        "{answer}"
    );
    // Nothing changed: the application keeps writing, and the store is at this build's
    // version once it stops.
    let (code, _, err) = run(&dir, &["invite", "create"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(owner.ask("count")[2], 1);
    drop(owner);
    let (code, out, err) = run(&dir, &["migrate", "status"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("up to date"), "{out}");
    // Nor under another process that has it open shared.
    let shared = Redkeep::open(
        &dir,
        Options::default()
            .mode(redkeep::Mode::Shared)
            .password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let (code, out, err) = run(&dir, &["migrate", "down"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("stop the application first"), "{err}");
    drop(shared);
    let (code, out, err) = run(&dir, &["migrate", "status"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("up to date"), "{out}");
}

#[test]
fn a_peer_with_another_uid_is_refused() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!(
            "not root: cannot start a process with another uid; the check runs in CI as root"
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::Builder::new()
        .prefix("rk-uid")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let owner = start_owner(&dir);
    // Open the way on the file system so that only the peer-credential check stands.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("redkeep.sock"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    // The checkout may sit where uid 65534 cannot reach (under /root): run a copy from /tmp.
    let probe = tmp.path().join("probe");
    std::fs::copy(std::env::current_exe().unwrap(), &probe).unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Another test thread forking while the copy was open for writing leaves the child with
    // that descriptor until it execs: exec then fails with ETXTBSY for a moment. Retry.
    let mut attempts = 0;
    let out = loop {
        let run = Command::new(&probe)
            .args([
                "--exact",
                "helper_owner_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROBE_ENV, dir.join("redkeep.sock"))
            .current_dir(tmp.path())
            .uid(65534)
            .gid(65534)
            .output();
        match run {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            other => break other.unwrap(),
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("refused: peer uid 65534"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("root@example.com"));
    drop(owner);
}

#[test]
fn an_owner_that_dies_mid_request_is_reported_and_the_store_stays_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    // Hold the store exclusively without a socket, and stand in for an owner that reads the
    // request and dies before answering.
    let held = Redkeep::open(
        &dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.join("redkeep.sock")).unwrap();
    let fake = std::thread::spawn(move || {
        // The CLI first checks that something answers, then sends its request.
        loop {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = [0u8; 5];
            if conn.read_exact(&mut head).is_err() {
                continue;
            }
            let mut body =
                vec![0u8; u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize];
            conn.read_exact(&mut body).unwrap();
            return String::from_utf8(body).unwrap(); // dropping `conn` without answering
        }
    });
    let (code, out, err) = run(
        &dir,
        &["user", "create", "x@example.com", "--password-stdin"],
        Some("x password\n"),
    );
    let request = fake.join().unwrap();
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("closed the connection before answering")
            && err.contains("may have been carried out")
            && !err.contains("failed to fill whole buffer"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    // The secret travelled inside the request, not on a command line.
    assert!(request.contains("x password"));
    assert!(held.users().by_email("x@example.com").unwrap().is_none());
    assert!(held.check(false).unwrap().ok);
}

#[test]
fn a_data_dir_path_of_300_bytes_is_served_and_the_cli_works_against_it() {
    let tmp = tempfile::tempdir().unwrap();
    // Nested so no single name passes NAME_MAX; far beyond the ~108 bytes a socket address holds.
    let mut dir = tmp.path().to_path_buf();
    while dir.as_os_str().len() < 300 {
        dir.push("a-rather-long-folder-name-for-a-data-dir");
    }
    let dir = PathBuf::from(&dir.to_str().unwrap()[..300]);
    assert_eq!(dir.as_os_str().len(), 300);
    init(&dir);
    let mut owner = start_owner(&dir);
    let (code, out, err) = run(&dir, &["status", "--json"], None);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["state"], "exclusive", "{out}");
    assert_eq!(status["socket"], "reachable", "{out}");
    let (code, _, err) = run(
        &dir,
        &["user", "create", "long@example.com", "--password-stdin"],
        Some("long path password\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(owner.ask("count")[0], 2, "the owner made the user");
    let (code, out, err) = run(&dir, &["user", "list", "--json"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("long@example.com"), "{out}");
}

/// A piece as deep as a document may nest goes through the owner's socket both ways (the
/// request and the reply wrap it deeper than serde_json's default limit).
#[test]
fn the_deepest_piece_goes_through_the_owner_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    init(&dir);
    let _owner = start_owner(&dir);
    let depth = redkeep::workspace::MAX_DOC_DEPTH;
    let doc = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let (code, out, err) = run(
        &dir,
        &["gallery", "add", "root@example.com", "-"],
        Some(&doc),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&dir, &["gallery", "show", "root@example.com", "1"], None);
    assert_eq!(code, 0, "{err}");
    let shown: String = out.split_whitespace().collect();
    assert_eq!(shown, doc);
    // One level more is refused with the limit said.
    let deeper = format!("[{doc}]");
    let (code, _, err) = run(
        &dir,
        &["gallery", "add", "root@example.com", "-"],
        Some(&deeper),
    );
    assert_eq!(code, 1);
    assert!(err.contains("the limit is 127"), "{err}");
}

/// An application that holds the store but does not answer (stopped with SIGSTOP, or hung)
/// accepts connections and reads nothing: `status` says so within seconds instead of waiting
/// with it, and a command that waits says on stderr whom it waits for.
#[test]
fn a_holder_that_does_not_answer_is_reported_not_waited_for() {
    let cli = common::Cli::new();
    cli.init();
    let data = cli.data();
    // The holder: this test process, with the store open alone and a socket that answers
    // nothing.
    let _held = Redkeep::open(
        &data,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let _listener =
        std::os::unix::net::UnixListener::bind(data.join(redkeep::admin::SOCKET_FILE)).unwrap();
    let v = cli.json(&["status"], None);
    assert_eq!(v["state"], "exclusive", "{v}");
    assert_eq!(v["pid"], std::process::id(), "{v}");
    assert_eq!(v["socket"], "not answering", "{v}");
    let mut waiting = Command::cargo_bin("redkeep")
        .unwrap()
        .env("REDKEEP_DATA_DIR", &data)
        .args(["user", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = waiting.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stderr).read_line(&mut line);
        let _ = tx.send(line);
    });
    // Without the notice this would wait for the CLI's hour-long read timeout.
    let line = rx.recv_timeout(std::time::Duration::from_secs(120));
    let _ = waiting.kill();
    let _ = waiting.wait();
    let line = line.expect("no notice on stderr");
    assert!(line.contains("no answer yet"), "{line}");
}

/// With `--admin-timeout` (or `REDKEEP_ADMIN_TIMEOUT`), a command gives up on an application
/// that holds the store and does not begin to answer (stopped or hung): it exits 1 saying so
/// and what became of the command, where it waited up to an hour (a cron job hung with it).
#[test]
fn a_command_gives_up_on_a_silent_holder_after_its_admin_timeout() {
    let cli = common::Cli::new();
    cli.init();
    let data = cli.data();
    let _held = Redkeep::open(
        &data,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let _listener =
        std::os::unix::net::UnixListener::bind(data.join(redkeep::admin::SOCKET_FILE)).unwrap();
    let (_, err) = cli.expect(&["--admin-timeout", "1", "user", "list"], None, 1);
    assert!(
        err.contains("did not begin to answer within 1s")
            && err.contains("a command it had not begun is dropped"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let out = cli
        .cmd(&["user", "list"])
        .env("REDKEEP_ADMIN_TIMEOUT", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("did not begin to answer within 1s"), "{err}");
    let (_, err) = cli.expect(&["--admin-timeout", "0", "user", "list"], None, 2);
    assert!(err.contains("--admin-timeout"), "{err}");
}

/// A request of a kind every build answers (`stats`), as raw JSON.
const STATS: &[u8] = br#"{"version":6,"request":{"command":"Stats","secret":null}}"#;

/// An application that stops its admin socket while a client is connected and idle lets go
/// of its store: each connection's thread held a handle to it and was left running, so the
/// store stayed open after the application dropped its own handle, and an application that
/// then exited left it "not closed cleanly".
#[test]
fn an_idle_client_does_not_keep_the_store_open_after_the_socket_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let rk = Redkeep::open(&dir, options()).unwrap();
    let server = redkeep::admin::serve(&rk).unwrap();
    let _idle = UnixStream::connect(server.path()).unwrap();
    // One thread accepts connections in turn: once a later one is answered, the idle one has
    // its own thread.
    let answer = raw_request(server.path(), STATS);
    assert!(answer.contains("\"Ok\""), "{answer}");
    drop(server);
    drop(rk);
    let marker = redkeep::store::owner_path(&dir.join(redkeep::STORE_FILE));
    assert!(!marker.exists(), "the store is still open");
    Redkeep::open(&dir, options()).expect("the store is still held");
}

/// A request too large to read is read to its end before the refusal: its body was read as
/// frames, and one whose first byte was the end marker's ended the reading there, so the
/// client, still sending the rest, got `Broken pipe` instead of the answer.
#[test]
fn a_request_too_large_is_read_to_its_end_before_it_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let rk = Redkeep::open(
        tmp.path().join("d"),
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let server = redkeep::admin::serve(&rk).unwrap();
    let mut s = UnixStream::connect(server.path()).unwrap();
    // Far more than a socket holds, so the client is still sending when the owner answers.
    let body = vec![b'E'; 2 * 1024 * 1024];
    let mut sending = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        sending.write_all(b"R")?;
        sending.write_all(&(body.len() as u32).to_be_bytes())?;
        sending.write_all(&body)?;
        sending.write_all(b"E\0\0\0\0")
    });
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    let sent = sender.join().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(sent.is_ok(), "{sent:?}; answer: {answer}");
    read.unwrap();
    assert!(answer.contains("exceeds"), "{answer}");
}

/// Owners starting together over the socket a killed one left each found it stale: one
/// could remove the socket another had just made, and serve on a file that was gone (or
/// fail removing it). Now exactly one serves and the others are told it answers.
#[test]
fn owners_starting_together_over_a_stale_socket_leave_one_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let rk = Redkeep::open(
        &dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let socket = dir.join(redkeep::admin::SOCKET_FILE);
    for round in 0..50 {
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap()); // left behind
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let owners: Vec<_> = (0..4)
            .map(|_| {
                let (rk, start) = (rk.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    redkeep::admin::serve(&rk)
                })
            })
            .collect();
        let results: Vec<_> = owners.into_iter().map(|o| o.join().unwrap()).collect();
        let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(refused.len(), 3, "round {round}: {refused:?}");
        assert!(
            refused
                .iter()
                .all(|e| matches!(e, redkeep::Error::InUse { .. })),
            "round {round}: {refused:?}"
        );
        let answer = raw_request(&socket, STATS);
        assert!(answer.contains("\"Ok\""), "round {round}: {answer}");
    }
}

/// `path` as a relative path from this process's working directory.
fn relative_to_cwd(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut relative = PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.push(path.strip_prefix("/").unwrap());
    relative
}

/// An application that opened its data dir by a relative path hands out absolute paths, so
/// a path in an answer through its socket means the same to a CLI run from anywhere (it was
/// relative to the application's working directory).
#[test]
fn paths_in_answers_through_the_owner_are_absolute_whatever_its_working_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let relative = relative_to_cwd(&dir);
    assert!(relative.is_relative());
    let rk = Redkeep::open(
        &relative,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    // Absolute, kept as given otherwise (`..` is not resolved: it may follow a symlink).
    assert!(rk.dir().is_absolute(), "{}", rk.dir().display());
    assert_eq!(
        rk.dir().canonicalize().unwrap(),
        dir.canonicalize().unwrap()
    );
    let _admin = redkeep::admin::serve(&rk).unwrap();
    let out = Command::cargo_bin("redkeep")
        .unwrap()
        .current_dir("/")
        .env("REDKEEP_DATA_DIR", &dir)
        .args(["--json", "workspace", "show", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["path"].as_str(),
        rk.dir().join("workspaces/users/1").to_str(),
        "{shown}"
    );
    let (code, status, _) = run(&dir, &["status", "--json"], None);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["socket"], "reachable");
}

/// `gallery add` through the owner: the client reads a piece as large as its
/// `--max-doc-bytes` and sends it whole (it was cut at the default 16 MiB), and the owner's
/// own limit decides, refusing a piece over it with the flag that raises the limit.
#[test]
fn gallery_add_through_the_owner_sends_the_whole_piece_and_names_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let _owner = start_owner(&dir);
    let (code, _, err) = run(
        &dir,
        &["user", "create", "ann@example.com", "--password-stdin"],
        Some("correct horse battery\n"),
    );
    assert_eq!(code, 0, "{err}");
    let big = format!("{{\"img\":\"{}\"}}", "A".repeat(17 << 20));
    let file = tmp.path().join("big.json");
    std::fs::write(&file, &big).unwrap();
    let (code, out, err) = run(
        &dir,
        &[
            "--max-doc-bytes",
            "20000000",
            "gallery",
            "add",
            "ann@example.com",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("larger than 16777216 bytes") && err.contains("--max-doc-bytes"),
        "{err}"
    );
}

/// A command the application has begun when it stops its admin socket answers before the
/// socket goes: stopping shut every connection both ways, so a `user create` or `invite
/// create` was carried out while its client got "closed the connection before answering"
/// and never saw the password or code it made.
#[test]
fn a_command_running_when_the_socket_stops_still_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    init(&dir);
    // How many syncs an open of the store costs (not its close): the next one is the
    // command's commit, held there.
    let counting = FaultPlan::new(FaultKind::Sync, u64::MAX);
    let mut counted = options();
    counted.faults = Some(counting.clone());
    let opened = Redkeep::open(&dir, counted).unwrap();
    let syncs = counting.calls();
    drop(opened);
    let mut held = options();
    let plan = FaultPlan::pausing(FaultKind::Sync, syncs + 1);
    held.faults = Some(plan.clone());
    let rk = Redkeep::open(&dir, held).unwrap();
    let server = redkeep::admin::serve(&rk).unwrap();
    let body = br#"{"version":6,"request":{"command":{"Invite":{"Create":{"count":1,"expires":null,"uses":1}}},"secret":null}}"#;
    let mut client = UnixStream::connect(server.path()).unwrap();
    client.write_all(b"R").unwrap();
    client
        .write_all(&(body.len() as u32).to_be_bytes())
        .unwrap();
    client.write_all(body).unwrap();
    let (cut, cut_seen) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        // Empty input chunks until the owner stops reading (its input is cut): from then on,
        // only its answer is to come.
        while client.write_all(b"I\0\0\0\0").is_ok() {}
        cut.send(()).unwrap();
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    plan.wait_paused();
    let stopping = std::thread::spawn(move || drop(server));
    cut_seen.recv().unwrap();
    plan.resume();
    stopping.join().unwrap();
    let answer = client.join().unwrap();
    assert!(answer.contains("rki_"), "no code in the answer: {answer:?}");
    assert_eq!(
        rk.invites()
            .list(redkeep::InviteFilter::All, 10)
            .unwrap()
            .len(),
        1
    );
}

/// Through a running application's socket, `user disable --revoke-keys` revokes the user's
/// keys for good (`user enable` brings none back), plain `user disable` says the keys are
/// only suspended and `user enable` how many it brings back, and `invite create` makes
/// codes that expire after a week unless `--expires never` (security review S6, S7).
#[test]
fn disable_revoke_keys_and_invite_expiry_go_through_the_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init(&dir);
    let json = |args: &[&str], stdin: Option<&str>| {
        let (code, out, err) = run(&dir, args, stdin);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    json(&["user", "create", "bob@example.com", "--json"], None);
    let key = || {
        json(
            &["apikey", "create", "--user", "bob@example.com", "--json"],
            None,
        )["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (first, second) = (key(), key());
    let _owner = start_owner(&dir);
    let (code, out, err) = run(&dir, &["user", "disable", "bob@example.com"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("2 API keys they answer for") && out.contains("only suspended"),
        "{out}"
    );
    let (code, out, err) = run(&dir, &["user", "enable", "bob@example.com"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("2 API keys they answer for") && out.contains("can be used again"),
        "{out}"
    );
    let revoked = json(
        &[
            "user",
            "disable",
            "bob@example.com",
            "--revoke-keys",
            "--json",
        ],
        None,
    );
    assert_eq!(revoked["api_keys_revoked"].as_array().unwrap().len(), 2);
    let (code, out, err) = run(&dir, &["user", "enable", "bob@example.com"], None);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("API key"), "{out}");
    for k in [&first, &second] {
        let (code, _, _) = run(&dir, &["apikey", "verify", "--key-stdin"], Some(k));
        assert_eq!(code, 1);
    }
    let at = |v: &Value| redkeep::Timestamp::parse(v.as_str().unwrap()).unwrap().0;
    let week = &json(&["invite", "create", "--json"], None)[0];
    assert_eq!(
        at(&week["expires_at"]) - at(&week["created_at"]),
        7 * 86_400
    );
    let never = &json(&["invite", "create", "--expires", "never", "--json"], None)[0];
    assert_eq!(never["expires_at"], Value::Null);
}
