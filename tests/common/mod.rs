//! Helpers shared by the integration tests: a data dir in a temp folder, cheap argon2
//! parameters and a manual clock.
#![allow(dead_code)]

use std::sync::Arc;

use redkeep::{ManualClock, Options, PasswordParams, Redkeep, Timestamp};

pub mod pg;

/// The argon2 parameters the CLI tests pass through `REDKEEP_ARGON2`.
pub const FAST_ARGON2: &str = "m=8,t=1,p=1";

pub struct TestDir {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    /// The store URL when the tests run against PostgreSQL (`REDKEEP_TEST_ENGINE=postgres`).
    pub store: Option<String>,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(Timestamp(1_800_000_000))),
            store: pg::engine_is_postgres().then(|| pg::server().fresh_url()),
        }
    }

    pub fn options(&self) -> Options {
        let mut o = Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .clock(self.clock.clone());
        o.store_url = self.store.clone();
        o
    }

    pub fn open(&self) -> Redkeep {
        Redkeep::open(self.dir.path(), self.options()).unwrap()
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Runs the `redkeep` binary on a temp data dir with cheap hashing.
pub struct Cli {
    pub dir: tempfile::TempDir,
    /// The store URL when the tests run against PostgreSQL (`REDKEEP_TEST_ENGINE=postgres`).
    pub store: Option<String>,
}

impl Cli {
    pub fn new() -> Cli {
        Cli {
            dir: tempfile::tempdir().unwrap(),
            store: pg::engine_is_postgres().then(|| pg::server().fresh_url()),
        }
    }

    pub fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Options that open the same store as the commands (cheap hashing, shared mode).
    pub fn options(&self) -> Options {
        let mut o = Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .mode(redkeep::Mode::Shared);
        o.store_url = self.store.clone();
        o
    }

    pub fn cmd(&self, args: &[&str]) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("redkeep").unwrap();
        c.env("REDKEEP_DATA_DIR", self.data())
            .env("REDKEEP_ARGON2", FAST_ARGON2)
            .env_remove("REDKEEP_STORE_URL")
            .env_remove("REDKEEP_MOVE_TO")
            .args(args);
        if let Some(url) = &self.store {
            c.env("REDKEEP_STORE_URL", url);
        }
        c
    }

    /// Runs with `--json`, expects success, returns the parsed output.
    pub fn json(&self, args: &[&str], stdin: Option<&str>) -> serde_json::Value {
        let mut c = self.cmd(args);
        c.arg("--json");
        if let Some(s) = stdin {
            c.write_stdin(s);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs, expects exit code `code`, returns (stdout, stderr).
    pub fn expect(&self, args: &[&str], stdin: Option<&str>, code: i32) -> (String, String) {
        let mut c = self.cmd(args);
        if let Some(s) = stdin {
            c.write_stdin(s);
        }
        let out = c.output().unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\nstdout: {o}\nstderr: {e}"
        );
        (o, e)
    }

    pub fn init(&self) {
        self.expect(&["init", "--no-admin"], None, 0);
    }
}

/// This test binary started again to run one helper test (selected by `test`, switched on by
/// the environment variable `env`), which prints `ready` and then answers one line on stdout
/// for each line it reads on stdin. Dropping it closes stdin and waits for the process.
pub struct HelperProcess {
    pub child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl HelperProcess {
    pub fn start(test: &str, env: &str, value: impl AsRef<std::ffi::OsStr>) -> HelperProcess {
        Self::start_with(test, &[(env, value.as_ref().to_os_string())])
    }

    /// [`HelperProcess::start`] with several environment variables.
    pub fn start_with<V: AsRef<std::ffi::OsStr>>(test: &str, env: &[(&str, V)]) -> HelperProcess {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        // libtest prints its own lines first; wait for ours.
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "{test} exited early"
            );
            if line.trim_end().ends_with("ready") {
                break;
            }
        }
        HelperProcess {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one line without waiting for an answer.
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line the helper prints, without its line ending.
    pub fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    /// Sends one line and returns the numbers of the answer line.
    pub fn ask(&mut self, question: &str) -> Vec<u64> {
        use std::io::{BufRead, Write};
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{question}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

/// A child process killed and waited for when dropped: a failed assertion leaves none
/// behind (holding the test runner's output open).
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Every byte the store holds: the redb file of `data_dir`, or with a store URL
/// (PostgreSQL), every key and value of every table of its schema. For tests that look for
/// secrets stored in clear.
pub fn stored_bytes(store: Option<&str>, data_dir: &std::path::Path) -> Vec<u8> {
    let Some(url) = store else {
        return std::fs::read(data_dir.join(redkeep::STORE_FILE)).unwrap();
    };
    pg::schema_bytes(url)
}

/// Writes one raw entry behind the store's back (to plant a problem for `check`): into the
/// redb file of `data_dir`, or with a store URL into its PostgreSQL table.
pub fn plant_entry(
    store: Option<&str>,
    data_dir: &std::path::Path,
    table: &str,
    key: &[u8],
    value: &[u8],
) {
    let Some(url) = store else {
        let db = redb::Database::open(data_dir.join(redkeep::STORE_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(table);
        tx.open_table(def).unwrap().insert(key, value).unwrap();
        tx.commit().unwrap();
        return;
    };
    pg::plant_entry(url, table, key, value);
}

/// Every entry under `root` (itself included), not following symlinks.
pub fn tree(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut todo = vec![root.to_path_buf()];
    let mut out = Vec::new();
    while let Some(p) = todo.pop() {
        if p.is_dir() && !p.is_symlink() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        out.push(p);
    }
    out
}

/// Gives every entry under `root` (itself included) to `uid` (user and group), not
/// following symlinks. Needs root.
pub fn give_all(root: &std::path::Path, uid: u32) {
    for p in tree(root) {
        std::os::unix::fs::lchown(&p, Some(uid), Some(uid)).unwrap();
    }
}

/// Copies the folder `from` to `to`, keeping each file's time and each folder's mode as
/// `cp -rp` does: an export carries the workspace files' times, so copies whose exports are
/// compared keep them, and `check` names folders open to other users.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let modified = entry.metadata().unwrap().modified().unwrap();
            std::fs::File::options()
                .write(true)
                .open(&target)
                .and_then(|f| f.set_modified(modified))
                .unwrap();
        }
    }
}

/// Leaves a restore of `backup` into `dir` stopped part way (a crash or a kill, as a failed
/// rename stands for here) with the restored store in place beside the old folders: the
/// restore's renames fail in turn until one leaves it so.
pub fn stop_a_restore(dir: &std::path::Path, backup: &std::path::Path, options: &Options) {
    use redkeep::store::{FaultKind, FaultPlan};
    for nth in 1.. {
        let plan = FaultPlan::new(FaultKind::FileRename, nth);
        let result = {
            let _armed = plan.arm_files();
            redkeep::ops::restore(dir, backup, true, Timestamp(1_900_000_000 + nth as i64))
        };
        assert!(plan.fired(), "no rename left the restore stopped");
        if result.is_err() {
            let rk = Redkeep::open(dir, options.clone()).unwrap();
            let stopped = rk
                .check(false)
                .unwrap()
                .problems
                .iter()
                .any(|p| p.contains("a restore stopped after replacing the store"));
            if stopped {
                return;
            }
        }
    }
}

/// Keeps the default panic hook from printing the panics redkeep contains (a storage engine
/// call failing on a damaged page becomes an error): a salvage of a badly damaged copy meets
/// up to 100,000 of them, and with `RUST_BACKTRACE=1` printing each took minutes. Any other
/// panic is printed as before.
pub fn quiet_engine_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !redkeep::store::containing() {
                default_hook(info);
            }
        }));
    });
}
