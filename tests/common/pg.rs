//! A throwaway PostgreSQL server for the tests: initialised and started in a temp dir the
//! first time a test of this binary asks for it, listening on a unix socket only, and stopped
//! (its folder removed) by a watchdog when this test process exits. Each caller gets its own
//! schema, so tests running at once never see each other's data.
//!
//! `REDKEEP_TEST_ENGINE=postgres` runs the shared test sources (`TestDir`, `Cli`) against it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that switches the shared test sources to PostgreSQL.
pub const ENGINE_ENV: &str = "REDKEEP_TEST_ENGINE";

/// Whether the shared test sources run against PostgreSQL in this run.
pub fn engine_is_postgres() -> bool {
    std::env::var(ENGINE_ENV).is_ok_and(|v| v == "postgres")
}

pub struct Server {
    socket_dir: PathBuf,
    port: u16,
    // pg_ctl, the data folder and the options the server was started with.
    pg_ctl: PathBuf,
    data: PathBuf,
    opts: String,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static DURABLE: OnceLock<Result<Server, String>> = OnceLock::new();
static SCHEMAS: AtomicU64 = AtomicU64::new(0);

/// The test server, started on first use. Panics with a one-line instruction when
/// PostgreSQL is not installed.
pub fn server() -> &'static Server {
    match SERVER.get_or_init(|| start(Some(false))) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// A server of the calling test's own, which it may stop and start again (to see what a
/// command does when its server goes away part way). Stopped when the test binary ends.
#[allow(dead_code)]
pub fn own_server() -> Server {
    start(None).unwrap_or_else(|e| panic!("{e}"))
}

/// A server that waits for the disk on every commit (PostgreSQL's defaults), for benchmarks.
pub fn durable_server() -> &'static Server {
    match DURABLE.get_or_init(|| start(Some(true))) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

impl Server {
    /// A store URL for a fresh schema of its own.
    pub fn fresh_url(&self) -> String {
        let n = SCHEMAS.fetch_add(1, Ordering::Relaxed);
        self.url(&format!("t{}_{n}", std::process::id()))
    }

    /// The store URL of `schema`.
    pub fn url(&self, schema: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres schema={schema}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// Stops the server at once, as a crash or `pg_ctl -m immediate stop` does.
    #[allow(dead_code)]
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    /// Starts the server again after [`Server::stop`].
    #[allow(dead_code)]
    pub fn start_again(&self) {
        let log = self.data.with_file_name("log");
        self.pg_ctl(&["-o", &self.opts, "-w", "-l", log.to_str().unwrap(), "start"]);
    }

    /// Runs `pg_ctl -D DATA ARGS` as the server's user, expecting success.
    #[allow(dead_code)]
    fn pg_ctl(&self, args: &[&str]) {
        let out = as_server_user(&self.pg_ctl)
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs SQL as the superuser (for tests that look at the server's own tables).
    pub fn client(&self) -> postgres_client::Client {
        postgres_client::connect(&self.socket_dir, self.port, "postgres")
    }

    #[cfg(feature = "postgres")]
    /// A database of its own (for tests that change what the whole database sees), with a
    /// store URL into it and a superuser client of it.
    pub fn fresh_database(&self) -> (String, postgres_client::Client) {
        let n = SCHEMAS.fetch_add(1, Ordering::Relaxed);
        let db = format!("d{}_{n}", std::process::id());
        self.client()
            .batch_execute(&format!("create database {db}"))
            .unwrap();
        let url = self
            .url("redkeep")
            .replace("dbname=postgres", &format!("dbname={db}"));
        (
            url,
            postgres_client::connect(&self.socket_dir, self.port, &db),
        )
    }
}

fn bindir() -> Result<PathBuf, String> {
    const HOW: &str = "PostgreSQL is not installed: the postgres tests need initdb and pg_ctl \
                       (apt-get install postgresql, or set REDKEEP_PG_BINDIR to their folder)";
    if let Ok(dir) = std::env::var("REDKEEP_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .filter(|d| d.join("initdb").is_file())
        .ok_or_else(|| HOW.to_string())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs `program` as the `postgres` account when this process is root (initdb refuses root).
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Starts a server: the shared test server (`Some(durable)`), or one of a test's own
/// (`None`).
fn start(shared: Option<bool>) -> Result<Server, String> {
    static OWN: AtomicU64 = AtomicU64::new(0);
    let durable = shared == Some(true);
    let own = if shared.is_none() {
        2 + OWN.fetch_add(1, Ordering::Relaxed) as u16
    } else {
        0
    };
    let bin = bindir()?;
    // In memory when the machine has a tmpfs: a test server writes nothing worth keeping,
    // and every test's schema creates and drops dozens of files (on a disk's file system,
    // a third of the suites' time on PostgreSQL went to allocating their inodes).
    let shm = Path::new("/dev/shm");
    let mut folder = tempfile::Builder::new();
    folder.prefix("redkeep-pg-");
    let base = if !durable && shm.is_dir() {
        folder.tempdir_in(shm).or_else(|_| folder.tempdir())
    } else {
        folder.tempdir()
    }
    .map_err(|e| format!("creating the server's folder: {e}"))?
    .keep();
    let (data, socket_dir) = (base.join("data"), base.join("sock"));
    std::fs::create_dir(&socket_dir).map_err(|e| e.to_string())?;
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&base)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err("cannot give the test server's folder to the postgres account".into());
        }
    }
    let run = |c: &mut Command, what: &str| -> Result<(), String> {
        let out = c.output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(
        as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]),
        "initdb",
    )?;
    // The port only names the socket file; spread test binaries (and the two kinds) apart.
    let port = 20_000 + (std::process::id() % 40_000) as u16 + u16::from(durable) + own;
    let speed = if durable {
        ""
    } else {
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    };
    let opts = format!(
        "-k {} -p {port} -c listen_addresses='' {speed} -c max_connections=400 \
         -c shared_buffers=64MB",
        socket_dir.display()
    );
    run(
        as_server_user(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-w", "-l"])
            .arg(base.join("log"))
            .arg("start"),
        "pg_ctl start",
    )?;
    // Stops the server and removes its folder once this process is gone.
    let watchdog = format!(
        "while [ -d /proc/{pid} ]; do sleep 0.2; done; '{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{base}'",
        pid = std::process::id(),
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        base = base.display(),
    );
    as_server_user(Path::new("/bin/sh"))
        .args(["-c", &watchdog])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the watchdog: {e}"))?;
    Ok(Server {
        socket_dir,
        port,
        pg_ctl: bin.join("pg_ctl"),
        data,
        opts,
    })
}

/// A plain client for the server (the `postgres` crate redkeep uses).
#[cfg(feature = "postgres")]
pub mod postgres_client {
    pub use postgres::Client;

    pub fn connect(socket_dir: &std::path::Path, port: u16, db: &str) -> Client {
        postgres::Config::new()
            .host_path(socket_dir)
            .port(port)
            .user("postgres")
            .dbname(db)
            .connect(postgres::NoTls)
            .unwrap()
    }
}

#[cfg(not(feature = "postgres"))]
pub mod postgres_client {
    pub struct Client;

    pub fn connect(_: &std::path::Path, _: u16, _: &str) -> Client {
        panic!("the postgres tests need the `postgres` feature")
    }
}

/// Every key and value of every table in the schema a test store URL names.
#[cfg(feature = "postgres")]
pub fn schema_bytes(url: &str) -> Vec<u8> {
    let schema = url
        .split_whitespace()
        .find_map(|t| t.strip_prefix("schema="))
        .expect("a test store URL names its schema");
    let mut client = server().client();
    let tables: Vec<String> = client
        .query(
            &format!("select relname from \"{schema}\"._objects where kind = 't'"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for t in tables {
        for row in client
            .query(&format!("select k, v from \"{schema}\".\"{t}\""), &[])
            .unwrap()
        {
            out.extend_from_slice(row.get::<_, &[u8]>(0));
            out.extend_from_slice(row.get::<_, &[u8]>(1));
        }
    }
    assert!(!out.is_empty(), "schema {schema} holds nothing");
    out
}

#[cfg(not(feature = "postgres"))]
pub fn schema_bytes(_: &str) -> Vec<u8> {
    panic!("the postgres tests need the `postgres` feature")
}

/// Writes one raw entry into the PostgreSQL table behind redkeep table `table`.
#[cfg(feature = "postgres")]
pub fn plant_entry(url: &str, table: &str, key: &[u8], value: &[u8]) {
    let schema = url
        .split_whitespace()
        .find_map(|t| t.strip_prefix("schema="))
        .expect("a test store URL names its schema");
    let mut client = server().client();
    let rel: String = client
        .query_one(
            &format!("select relname from \"{schema}\"._objects where name = $1 and kind = 't'"),
            &[&table],
        )
        .unwrap()
        .get(0);
    client
        .execute(
            &format!("insert into \"{schema}\".\"{rel}\" (k, v) values ($1, $2)"),
            &[&key, &value],
        )
        .unwrap();
}

#[cfg(not(feature = "postgres"))]
pub fn plant_entry(_: &str, _: &str, _: &[u8], _: &[u8]) {
    panic!("the postgres tests need the `postgres` feature")
}
