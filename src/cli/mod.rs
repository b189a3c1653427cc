//! The `redkeep` command line. A command is parsed into a [`Request`] (the command plus any
//! secret read from stdin), executed by [`execute`] against a [`Redkeep`] handle, and its
//! [`Reply`] rendered as a table or JSON. Only the public library API is used here.

mod access;
mod admin;
mod invite;
mod ops;
mod orgs;
pub mod render;
pub mod serve;
mod status;
mod user;
mod workspace;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

pub use render::Reply;

use crate::{Error, Mode, Options, PasswordParams, Redkeep, Result};

/// redkeep: accounts, invite codes and workspaces in one embedded store.
#[derive(Debug, Parser)]
#[command(name = "redkeep", version, about, propagate_version = true)]
pub struct Cli {
    /// The data dir holding redkeep.redb and workspaces/.
    #[arg(
        long,
        global = true,
        env = "REDKEEP_DATA_DIR",
        default_value = "./redkeep-data"
    )]
    pub data_dir: PathBuf,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum Command {
    /// Create the data dir, the store and the first administrator.
    Init(admin::InitArgs),
    /// Verify the store: file integrity, records, indexes, references.
    Check(admin::CheckArgs),
    /// Manage invite codes.
    #[command(subcommand)]
    Invite(invite::InviteCmd),
    /// Manage users.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Manage roles and their assignments.
    #[command(subcommand)]
    Role(access::RoleCmd),
    /// Log in and print a session token once.
    Login(access::LoginArgs),
    /// Validate, list, revoke and sweep login sessions.
    #[command(subcommand)]
    Session(access::SessionCmd),
    /// Inspect and clean up agent sessions.
    #[command(subcommand)]
    Agent(access::AgentCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(access::ApiKeyCmd),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(access::AuditCmd),
    /// Manage organizations and members.
    #[command(subcommand)]
    Org(orgs::OrgCmd),
    /// Show or apply schema migrations.
    #[command(subcommand)]
    Migrate(ops::MigrateCmd),
    /// Write a consistent copy of the store to a new file.
    Backup {
        /// The file to create.
        path: PathBuf,
    },
    /// Replace the store with a backup (keeps a safety copy; needs the store free).
    Restore {
        /// The backup file.
        path: PathBuf,
        /// Replace an existing store.
        #[arg(long)]
        force: bool,
    },
    /// Write every record as JSON lines.
    Export(ops::ExportArgs),
    /// Load an export into an empty store (created if missing).
    Import {
        /// The export file, or `-` for stdin.
        file: String,
    },
    /// Empty the store after backing it up (needs --force and the store free).
    Reset {
        /// Really do it.
        #[arg(long)]
        force: bool,
    },
    /// Records, index entries and bytes per table, and the file size.
    Stats,
    /// Whether the store is free, shared or held exclusively (by which process), its schema
    /// version and the path of each file.
    Status,
    /// Inspect per-user workspace folders.
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCmd),
    /// Manage a user's gallery pieces.
    #[command(subcommand)]
    Gallery(workspace::GalleryCmd),
}

impl Command {
    /// Whether this command reads a secret from stdin, and which flag asked for it.
    fn stdin_secret(&self) -> Option<&'static str> {
        match self {
            Command::Init(a) if a.admin_password_stdin => Some("--admin-password-stdin"),
            Command::User(u) => u.stdin_secret(),
            Command::Login(_) => Some("--password-stdin"),
            Command::Session(access::SessionCmd::Validate { .. }) => Some("--token-stdin"),
            Command::Apikey(access::ApiKeyCmd::Verify { .. }) => Some("--key-stdin"),
            _ => None,
        }
    }
}

/// A parsed command with the secret it read from stdin, if any. This is what the admin
/// socket carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// A password or token read from stdin (redacted in `Debug`).
    pub secret: Option<crate::Secret>,
    /// Content the command reads from a file or stdin on the client side (`gallery add`,
    /// `import`).
    pub input: Option<String>,
    /// Draw progress bars on stderr (only when running locally on a terminal).
    #[serde(default)]
    pub progress: bool,
}

impl Request {
    fn secret(&self, flag: &str) -> Result<&str> {
        self.secret
            .as_ref()
            .map(crate::Secret::expose)
            .ok_or_else(|| Error::invalid("stdin", format!("{flag} needs the secret on stdin")))
    }
}

/// Reads one line from stdin (without its line ending) as a secret.
fn read_secret(flag: &str) -> Result<String> {
    let mut buf = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut buf)
        .map_err(|e| Error::io(format!("reading {flag} from stdin"), e))?;
    let line = buf.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(Error::invalid(
            "stdin",
            format!("{flag} expects the secret on the first line of stdin, which is empty"),
        ));
    }
    Ok(line)
}

/// Largest export `import` reads.
const MAX_IMPORT_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Reads a file, or stdin for `-`, as UTF-8 text (capped at the document limit).
fn read_input(path: &str) -> Result<String> {
    read_input_capped(path, crate::workspace::DEFAULT_MAX_DOC_BYTES)
}

fn read_input_capped(path: &str, cap: u64) -> Result<String> {
    let mut buf = Vec::new();
    let read = if path == "-" {
        std::io::stdin().take(cap + 1).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(cap + 1).read_to_end(&mut buf))
    };
    read.map_err(|e| Error::io(format!("reading {path}"), e))?;
    if buf.len() as u64 > cap {
        return Err(Error::invalid(
            "file",
            format!("{path} is larger than {cap} bytes"),
        ));
    }
    String::from_utf8(buf).map_err(|_| Error::invalid("file", format!("{path} is not UTF-8 text")))
}

/// Runs one request against an open handle. The one execution path of every command.
pub fn execute(rk: &Redkeep, req: &Request) -> Result<Reply> {
    match &req.command {
        Command::Init(a) => admin::init(rk, a, req),
        Command::Check(a) => admin::check(rk, a, req.progress),
        Command::Migrate(c) => ops::migrate(rk, c, req.progress),
        Command::Backup { path } => ops::backup(rk, path, req.progress),
        Command::Export(a) => ops::export(rk, a, req.progress),
        Command::Import { .. } => ops::import(rk, req),
        Command::Stats => ops::stats(rk),
        Command::Status => status::in_owner(rk),
        Command::Restore { .. } | Command::Reset { .. } => Err(Error::Refused(
            "restore and reset replace the whole store; stop the application that holds it first"
                .into(),
        )),
        Command::Invite(c) => invite::run(rk, c),
        Command::User(c) => user::run(rk, c, req),
        Command::Role(c) => access::role(rk, c),
        Command::Login(a) => access::login(rk, a, req),
        Command::Session(c) => access::session(rk, c, req),
        Command::Agent(c) => access::agent(rk, c),
        Command::Apikey(c) => access::apikey(rk, c, req),
        Command::Audit(c) => access::audit(rk, c),
        Command::Org(c) => orgs::run(rk, c),
        Command::Workspace(c) => workspace::run(rk, c),
        Command::Gallery(c) => workspace::gallery(rk, c, req),
    }
}

/// The environment variable that overrides the argon2id parameters, as `m=19456,t=2,p=1`.
pub const ARGON2_ENV: &str = "REDKEEP_ARGON2";

fn password_params() -> Result<PasswordParams> {
    let Ok(text) = std::env::var(ARGON2_ENV) else {
        return Ok(PasswordParams::OWASP);
    };
    let mut p = PasswordParams::OWASP;
    for part in text.split(',') {
        let (k, v) = part.trim().split_once('=').unwrap_or((part, ""));
        let n: u32 = v.parse().map_err(|_| {
            Error::invalid(
                ARGON2_ENV,
                format!("{part:?} should look like m=19456,t=2,p=1"),
            )
        })?;
        match k {
            "m" => p.memory_kib = n,
            "t" => p.iterations = n,
            "p" => p.parallelism = n,
            _ => {
                return Err(Error::invalid(
                    ARGON2_ENV,
                    format!("unknown key {k:?}; use m, t and p"),
                ));
            }
        }
    }
    Ok(p)
}

fn open(cli: &Cli) -> Result<Redkeep> {
    let create = matches!(cli.command, Command::Init(_) | Command::Import { .. });
    let mut options = Options::default()
        .mode(Mode::Shared)
        .create(create)
        .password(password_params()?);
    options.open_outdated = matches!(cli.command, Command::Migrate(_));
    options.workspace.on_wait = Some(std::sync::Arc::new(|path: &std::path::Path| {
        eprintln!("waiting for the lock on {} …", path.display());
    }));
    Redkeep::open(&cli.data_dir, options)
}

/// Parses arguments, runs the command and prints the result; the whole CLI.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line.
pub fn error_chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let secret = match cli.command.stdin_secret() {
        Some(flag) => Some(crate::Secret::new(read_secret(flag)?)),
        None => None,
    };
    let reply = match &cli.command {
        Command::Restore { path, force } => {
            ops::restore(&cli.data_dir, path, *force).map_err(whole_file)?
        }
        Command::Reset { force } => ops::reset(&cli.data_dir, *force).map_err(whole_file)?,
        Command::Status => status::probe(&cli.data_dir)?,
        _ => {
            let input = match &cli.command {
                Command::Gallery(g) => g.input_file().map(read_input).transpose()?,
                Command::Import { file } => Some(read_input_capped(file, MAX_IMPORT_BYTES)?),
                _ => None,
            };
            let mut command = cli.command.clone();
            // The owner may run in another directory: send it absolute paths.
            if let Command::Backup { path } = &mut command {
                *path = std::path::absolute(&*path)
                    .map_err(|e| Error::io("resolving the backup path", e))?;
            }
            let req = Request {
                command,
                secret,
                input,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            match open(cli) {
                Ok(rk) => execute(&rk, &req)?,
                Err(Error::InUse { path, holder }) => match remote(cli, &req, path, holder)? {
                    Ok(reply) => reply,
                    Err(code) => return Ok(code),
                },
                Err(e) => return Err(e),
            }
        }
    };
    if let (Command::Export(ops::ExportArgs { output: Some(path) }), Some(raw)) =
        (&cli.command, &reply.raw)
    {
        crate::ops::write_file(path, raw.as_bytes())?;
        let mut summary = reply.clone();
        summary.raw = None;
        print(&summary.render(cli.json));
    } else {
        print(&reply.render(cli.json));
    }
    Ok(ExitCode::from(reply.exit_code))
}

/// Restore and reset never go through the socket: they replace the file under the owner.
fn whole_file(e: Error) -> Error {
    match e {
        Error::InUse { holder, .. } => Error::Refused(format!(
            "this command replaces the whole store and cannot run while it is held ({holder}); stop the application first"
        )),
        e => e,
    }
}

/// Runs `req` in the process that holds the store, through its admin socket. `Err(code)`
/// means the owner reported a failure, already printed.
fn remote(
    cli: &Cli,
    req: &Request,
    path: PathBuf,
    holder: String,
) -> Result<Result<Reply, ExitCode>> {
    let Some(owner) = serve::connect(&cli.data_dir) else {
        return Err(Error::InUse {
            path,
            holder: format!("{holder}; its admin socket does not answer"),
        });
    };
    match owner.send(req)? {
        serve::Remote::Reply(r) => Ok(Ok(r)),
        serve::Remote::Failed(message, code) => {
            eprintln!("error: {message}");
            Ok(Err(ExitCode::from(code)))
        }
    }
}

// A closed stdout (`redkeep user list | head -1`) is not an error.
fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
