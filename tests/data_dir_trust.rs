//! Whom opening a data dir trusts: whoever owns the data dir can replace the store in it, so
//! a data dir, store file or store note of an owner the process was not meant to trust, or
//! one others may write, is refused before anything is opened; and the admin client sends
//! nothing to a socket served by such a user.
//!
//! Most of these need root (to give files to uid 65534), as CI runs; as another user each
//! asserts the refusal that user gets, or fails saying it needs root.
#![cfg(feature = "cli")]

mod common;

use std::io::{BufRead, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Cli, Reaped, give_all};
use redkeep::{Error, Redkeep};

const NOBODY: u32 = 65534;
const LISTEN_ENV: &str = "REDKEEP_TEST_FOREIGN_LISTENER";

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The one line of a refusal on stderr.
/// Runs the `redkeep` command on `cli`'s data dir as uid 65534 (from `/`, which it may
/// enter); returns its exit code and stderr.
fn as_nobody(cli: &Cli, args: &[&str]) -> (Option<i32>, String) {
    let (code, _, err) = as_nobody_out(cli, args);
    (code, err)
}

/// As [`as_nobody`], with stdout too: (exit code, stdout, stderr).
fn as_nobody_out(cli: &Cli, args: &[&str]) -> (Option<i32>, String, String) {
    use std::os::unix::process::CommandExt;
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_redkeep"))
        .arg("--data-dir")
        .arg(cli.data())
        .args(args)
        .env("REDKEEP_ARGON2", common::FAST_ARGON2)
        .env_remove("REDKEEP_STORE_URL")
        .envs(cli.store.iter().map(|u| ("REDKEEP_STORE_URL", u)))
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn one_line(err: &str) -> &str {
    assert_eq!(err.lines().count(), 1, "{err}");
    err.trim_end()
}

/// A data dir that others may write and that this user does not own (so cannot make
/// private) is refused, to the library and the CLI, before anything is opened or made: an
/// `init` there made the store, and whoever owned the data dir could swap it for their own.
/// As another user than root: `/tmp` (root's, mode 1777) is such a data dir.
#[test]
fn a_data_dir_others_may_write_is_refused_when_it_is_not_ours() {
    if !is_root() {
        let e = Redkeep::open("/tmp", Cli::new().options().read_only(true)).unwrap_err();
        assert!(matches!(e, Error::Denied { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("may be written by other users (mode 1777)"),
            "{e}"
        );
        return;
    }
    let cli = Cli::new();
    std::fs::create_dir(cli.data()).unwrap();
    give_all(&cli.data(), NOBODY);
    chmod(&cli.data(), 0o777);
    let (_, err) = cli.expect(&["init", "--no-admin"], None, 1);
    let line = one_line(&err);
    assert!(
        line.contains("may be written by other users (mode 0777), and it belongs to uid 65534")
            && line.contains("nothing was opened or changed")
            && line.contains(&format!("`chmod 700 {}`", cli.data().display())),
        "{line}"
    );
    let left: Vec<_> = std::fs::read_dir(cli.data()).unwrap().collect();
    assert!(left.is_empty(), "made: {left:?}");
    assert_eq!(
        std::fs::metadata(cli.data()).unwrap().permissions().mode() & 0o777,
        0o777,
        "not ours to change"
    );
    // A store in it, as its owner made it: refused to open, to read as well.
    give_all(&cli.data(), 0);
    chmod(&cli.data(), 0o700);
    cli.init();
    give_all(&cli.data(), NOBODY);
    chmod(&cli.data(), 0o770);
    for read_only in [false, true] {
        let e = Redkeep::open(cli.data(), cli.options().read_only(read_only)).unwrap_err();
        assert!(matches!(e, Error::Denied { .. }), "{e}");
        assert!(e.to_string().contains("(mode 0770)"), "{e}");
    }
    let (_, err) = cli.expect(&["user", "list"], None, 1);
    assert!(one_line(&err).contains("(mode 0770)"), "{err}");
    // Its owner made it private: root runs the operator's commands on it again.
    chmod(&cli.data(), 0o700);
    cli.expect(&["user", "list"], None, 0);
}

/// Root on the data dir of another user (the application's), whose files are that user's:
/// the operator's `sudo redkeep …`, which trusts the data dir's owner, works as before (a
/// command that reads runs; the library opens it to write too).
#[test]
fn root_opens_the_data_dir_of_another_user_whose_files_are_theirs() {
    assert!(
        is_root(),
        "needs root (as CI runs) to give a data dir to uid 65534"
    );
    let cli = Cli::new();
    cli.init();
    cli.expect(&["user", "create", "ann@example.com"], None, 0);
    give_all(&cli.data(), NOBODY);
    let (out, _) = cli.expect(&["user", "list"], None, 0);
    assert!(out.contains("ann@example.com"), "{out}");
    cli.expect(&["check"], None, 0);
    let rk = Redkeep::open(cli.data(), cli.options()).unwrap();
    assert_eq!(rk.users().count().unwrap(), 1);
}

/// A store file or store note in the data dir that belongs to a third user (neither this
/// one, root, nor the data dir's owner) is refused: that user could have put any store there.
#[test]
fn a_store_file_of_another_user_in_our_data_dir_is_refused() {
    assert!(
        is_root(),
        "needs root (as CI runs) to give a file to uid 65534"
    );
    let cli = Cli::new();
    cli.init();
    let files: Vec<PathBuf> = ["redkeep.redb", "redkeep.store"]
        .iter()
        .map(|n| cli.data().join(n))
        .filter(|p| p.exists())
        .collect();
    assert!(!files.is_empty());
    for file in files {
        std::os::unix::fs::lchown(&file, Some(NOBODY), None).unwrap();
        let e = Redkeep::open(cli.data(), cli.options()).unwrap_err();
        assert!(matches!(e, Error::Denied { .. }), "{e}");
        let (_, err) = cli.expect(&["user", "list"], None, 1);
        let line = one_line(&err);
        assert!(
            line.contains(&format!(
                "{} belongs to uid 65534, not to this user (uid 0)",
                file.display()
            )) && line.contains("`chown 0 "),
            "{line}"
        );
        cli.expect(&["init", "--no-admin"], None, 1);
        std::os::unix::fs::lchown(&file, Some(0), None).unwrap();
        cli.expect(&["user", "list"], None, 0);
    }
    // Root on the data dir of uid 65534 trusts uid 65534, not a third user.
    give_all(&cli.data(), NOBODY);
    std::os::unix::fs::lchown(cli.data().join("redkeep.store"), Some(4242), None).unwrap();
    let (_, err) = cli.expect(&["user", "list"], None, 1);
    assert!(
        one_line(&err).contains("not to this user (uid 0) nor the data dir's owner (uid 65534)"),
        "{err}"
    );
}

/// The note naming the store, or the store file, replaced by a symlink (which whoever may
/// write the data dir could point at any file, for root to open or write) is refused.
#[test]
fn a_symlink_in_place_of_the_store_note_is_refused() {
    let cli = Cli::new();
    cli.init();
    let note = cli.data().join("redkeep.store");
    let kept = cli.dir.path().join("note");
    std::fs::rename(&note, &kept).unwrap();
    std::os::unix::fs::symlink(&kept, &note).unwrap();
    let e = Redkeep::open(cli.data(), cli.options()).unwrap_err();
    assert!(matches!(e, Error::Denied { .. }), "{e}");
    let (_, err) = cli.expect(&["user", "list"], None, 1);
    assert!(
        one_line(&err).contains(&format!("{} is a symlink", note.display())),
        "{err}"
    );
    std::fs::remove_file(&note).unwrap();
    std::fs::rename(&kept, &note).unwrap();
    cli.expect(&["user", "list"], None, 0);
}

/// A user who may not look inside the data dir (root's, 0700) is told so, whose it is and
/// whom to run the command as, for a command that reads and one that writes alike, rather
/// than "Permission denied" of a file path.
#[test]
fn a_user_who_may_not_enter_the_data_dir_is_told_whom_to_run_as() {
    assert!(
        is_root(),
        "needs root (as CI runs) to run redkeep as uid 65534 on a data dir of root"
    );
    let cli = Cli::new();
    cli.init();
    chmod(cli.dir.path(), 0o755);
    chmod(&cli.data(), 0o700);
    for args in [
        &["user", "list"][..],
        &["status"],
        &["user", "create", "x@example.com"],
    ] {
        let (code, err) = as_nobody(&cli, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            one_line(&err).contains(&format!(
                "this user (uid 65534) may not look inside the data dir {} (it belongs to uid \
                 0, mode 0700); nothing was opened: run the command as root",
                cli.data().display()
            )),
            "{args:?}: {err}"
        );
    }
    cli.expect(&["user", "list"], None, 0);
}

/// A user other than root who would write in a data dir of another user (neither this one
/// nor root) is refused, `init` included: the data dir's owner could swap the store.
#[test]
fn a_writer_is_refused_the_data_dir_of_another_user() {
    assert!(
        is_root(),
        "needs root (as CI runs) to run redkeep as uid 65534 on a data dir of uid 4242"
    );
    let cli = Cli::new();
    chmod(cli.dir.path(), 0o755);
    let run = |args: &[&str]| as_nobody(&cli, args);
    std::fs::create_dir(cli.data()).unwrap();
    give_all(&cli.data(), 4242);
    chmod(&cli.data(), 0o755);
    let (code, err) = run(&["init", "--no-admin"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        one_line(&err).contains(&format!(
            "the data dir {} belongs to uid 4242, not to this user (uid 65534) nor to root",
            cli.data().display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(cli.data()).unwrap().count(), 0);
}

/// Stands in for a process of another user listening on a data dir's admin socket: binds
/// the path it is given, then prints how many bytes each connection sent first, until one
/// sends `stop`.
#[test]
fn helper_foreign_listener() {
    let Ok(at) = std::env::var(LISTEN_ENV) else {
        return; // Only meaningful when started by the test below.
    };
    let listener = std::os::unix::net::UnixListener::bind(&at).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for conn in listener.incoming() {
        // One read: nothing when the client went away without sending; the first bytes of
        // a request otherwise (the connection then closes, as an owner that dies would).
        let mut got = [0u8; 4096];
        let n = conn.unwrap().read(&mut got).unwrap();
        if &got[..n] == b"stop" {
            return;
        }
        writeln!(out, "got {n} bytes").unwrap();
        out.flush().unwrap();
    }
}

/// The admin client checks who listens on the socket before it sends a request: a socket
/// served by another uid (neither this user, root, nor the data dir's owner), such as one
/// planted by someone who may write the data dir, gets nothing, not the password of a
/// `--password-stdin`, and the command fails saying whose it is.
#[test]
fn the_admin_client_sends_nothing_to_a_socket_of_another_uid() {
    assert!(
        is_root(),
        "needs root (as CI runs) to start a listener as uid 65534"
    );
    use std::os::unix::process::CommandExt;
    // On a store file, which a process holds alone (a PostgreSQL store is never held so).
    let cli = Cli {
        dir: tempfile::tempdir().unwrap(),
        store: None,
    };
    cli.init();
    // Held by this process (without a socket): the CLI then sends its command to the socket.
    let held = Redkeep::open(cli.data(), cli.options().mode(redkeep::Mode::Exclusive)).unwrap();
    chmod(cli.dir.path(), 0o711);
    let spot = cli.dir.path().join("spot");
    std::fs::create_dir(&spot).unwrap();
    std::os::unix::fs::chown(&spot, Some(NOBODY), Some(NOBODY)).unwrap();
    // The checkout may sit where uid 65534 cannot reach (under /root): run a copy.
    let exe = cli.dir.path().join("listener");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    chmod(&exe, 0o755);
    let mut attempts = 0;
    let spawned = loop {
        let spawned = std::process::Command::new(&exe)
            .args([
                "--exact",
                "helper_foreign_listener",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LISTEN_ENV, spot.join("sock"))
            .current_dir("/")
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(std::process::Stdio::piped())
            .spawn();
        match spawned {
            // Another test thread forking while the copy was open for writing leaves the
            // child that descriptor until it execs: exec then fails for a moment. Retry.
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            other => break other.unwrap(),
        }
    };
    // Stopped however the test ends: a failed assertion leaves no listener behind.
    let mut child = Reaped(spawned);
    let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the listener started").unwrap();
        if line.ends_with("ready") {
            break;
        }
    }
    std::fs::rename(spot.join("sock"), cli.data().join("redkeep.sock")).unwrap();
    let (_, err) = cli.expect(
        &["user", "create", "ann@example.com", "--password-stdin"],
        Some("planted secret 1234\n"),
        1,
    );
    let line = one_line(&err);
    assert!(
        line.contains(&format!(
            "the admin socket {} is served by a process of uid 65534",
            cli.data().join("redkeep.sock").display()
        )) && line.contains("nothing was sent to it")
            && !line.contains("  "),
        "{line}"
    );
    // `status` asks the socket nothing either, and says why rather than "unreachable".
    let status = cli.json(&["status"], None);
    assert_eq!(status["socket"], "refused", "{status}");
    assert!(
        status["socket_refused"]
            .as_str()
            .unwrap()
            .contains("is served by a process of uid 65534"),
        "{status}"
    );
    let (out, _) = cli.expect(&["status"], None, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("admin socket: refused (the admin socket ")),
        "{out}"
    );
    // Done: the listener says what each connection sent.
    let mut stop =
        std::os::unix::net::UnixStream::connect(cli.data().join("redkeep.sock")).unwrap();
    stop.write_all(b"stop").unwrap();
    drop(stop);
    let said: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.0.wait().unwrap().success());
    let got: Vec<&String> = said.iter().filter(|l| l.starts_with("got ")).collect();
    assert!(!got.is_empty(), "the client never connected: {said:?}");
    assert!(got.iter().all(|l| *l == "got 0 bytes"), "{said:?}");
    drop(held);
}

/// A user folder (or file in it) whose mode shuts out its own owner (a `chmod 000`) is named
/// as the cause by `check`, rather than the first file a read was refused (the owner marker),
/// and `check --repair` run by that owner gives the modes back (folders 0700, files 0600), so
/// the application reads the folder again. Root's check finds it too (root itself could read
/// the files).
#[test]
fn a_user_folder_that_shuts_out_its_owner_is_named_and_repaired() {
    use std::os::unix::fs::MetadataExt;
    assert!(
        is_root(),
        "needs root (as CI runs) to run redkeep as uid 65534 on a data dir of its own"
    );
    let cli = Cli::new();
    cli.init();
    cli.expect(&["user", "create", "ann@example.com"], None, 0);
    cli.expect(&["gallery", "add", "1", "-"], Some("{\"x\": 1}"), 0);
    chmod(cli.dir.path(), 0o755);
    give_all(&cli.data(), NOBODY);
    let folder = cli.data().join("workspaces/users/1");
    let doc = folder.join("workspace.json");
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o777;
    chmod(&doc, 0o000);
    chmod(&folder, 0o000);
    let (code, out, _) = as_nobody_out(&cli, &["check"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "1 entr(ies) shut out their own owner (such as {}, mode 0000), so the application \
             cannot read them, and nothing else in the folder is checked until then; \
             `redkeep check --repair` makes folders 0700 and files 0600",
            folder.display()
        )) && !out.contains(".owner"),
        "{out}"
    );
    let (code, err) = as_nobody(&cli, &["check", "--repair"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!((mode(&folder), mode(&doc)), (0o700, 0o600));
    let (code, err) = as_nobody(&cli, &["workspace", "show", "1"]);
    assert_eq!(code, Some(0), "{err}");
    // Root's check sees what shuts out the application.
    chmod(&doc, 0o000);
    let (out, _) = cli.expect(&["check"], None, 1);
    assert!(
        out.contains(&format!(
            "1 entr(ies) shut out their own owner (such as {}, mode 0000), so the application \
             cannot read them, and nothing else in the folder is checked until then",
            doc.display()
        )),
        "{out}"
    );
    let (code, err) = as_nobody(&cli, &["check", "--repair"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(mode(&doc), 0o600);
    cli.expect(&["check"], None, 0);
    // A shut file that a later step of the check takes (the lock) is named too, not left
    // to fail that step with a bare "Permission denied".
    let lock = folder.join(".lock");
    chmod(&lock, 0o000);
    let (code, out, _) = as_nobody_out(&cli, &["check"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "1 entr(ies) shut out their own owner (such as {}, mode 0000)",
            lock.display()
        )),
        "{out}"
    );
    let (code, err) = as_nobody(&cli, &["check", "--repair"]);
    assert_eq!(code, Some(0), "{err}");
}

/// A backup written by a process that may not write in the folder it is given (the
/// application's uid, for a backup handed to it through its admin socket) says which uid
/// was refused and to give a folder it may write, for a folder it may not enter as for one
/// it may not write in: it said "Permission denied", or that a folder there did not exist.
#[test]
fn a_backup_into_a_folder_its_writer_may_not_write_names_that_uid() {
    assert!(
        is_root(),
        "needs root (as CI runs) to run redkeep as uid 65534 on a data dir of its own"
    );
    let cli = Cli::new();
    cli.init();
    cli.expect(&["user", "create", "ann@example.com"], None, 0);
    chmod(cli.dir.path(), 0o755);
    give_all(&cli.data(), NOBODY);
    let open = cli.dir.path().join("open");
    let shut = cli.dir.path().join("shut");
    for (folder, mode) in [(&open, 0o755), (&shut, 0o700)] {
        std::fs::create_dir(folder).unwrap();
        chmod(folder, mode);
    }
    for (dest, how) in [
        (open.join("b.tar"), format!("write in {}", open.display())),
        (
            shut.join("in/b.tar"),
            format!("reach {}", shut.join("in").display()),
        ),
    ] {
        let (code, err) = as_nobody(&cli, &["backup", &dest.display().to_string()]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            one_line(&err).contains(&format!(
                "the process writing the backup (uid 65534; the application, when the backup \
                 ran through its admin socket) may not {how}: give a folder uid 65534 may write"
            )),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
}
