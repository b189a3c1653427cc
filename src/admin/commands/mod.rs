//! Every command of `redkeep`, as data (clap parses it when the `cli` feature is on), and the
//! dispatch to the function that runs it against a handle.

mod access;
mod common;
mod init;
mod inspect;
mod invite;
mod ops;
mod orgs;
pub mod status;
mod users;
mod workspaces;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use access::{AgentCmd, ApiKeyCmd, AuditCmd, LoginArgs, RoleCmd, SessionCmd};
#[cfg(feature = "cli")]
pub(crate) use common::stdin_lines;
pub use init::{CheckArgs, InitArgs};
pub use inspect::{DEFAULT_INDEX_LIMIT, DumpArgs, InspectCmd};
pub use invite::InviteCmd;
#[cfg(feature = "adopt")]
pub use ops::adopt;
pub use ops::{
    AdoptArgs, ExportArgs, MigrateCmd, move_store, reset, reset_store, restore, restore_store,
    restore_store_with_folders, salvage,
};
pub use orgs::OrgCmd;
pub use users::{AvatarCmd, CreateArgs, UserCmd};
pub use workspaces::{GalleryCmd, WorkspaceCmd};

pub(crate) use common::Stdin;

use super::io::{Io, absolute};
use super::reply::Reply;
use crate::{Error, Redkeep, Result};

/// Every command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum Command {
    /// Create the data dir, the store and the first administrator.
    Init(InitArgs),
    /// Verify the store: file integrity, records, indexes, references, workspace folders.
    Check(CheckArgs),
    /// Manage invite codes.
    #[cfg_attr(feature = "cli", command(subcommand))]
    Invite(InviteCmd),
    /// Manage users.
    #[cfg_attr(feature = "cli", command(subcommand))]
    User(UserCmd),
    /// Manage roles and their assignments.
    #[cfg_attr(feature = "cli", command(subcommand))]
    Role(RoleCmd),
    /// Log in (by email or username) and print a session token once (alone on stdout; the
    /// session's id and expiry on stderr).
    Login(LoginArgs),
    /// Validate, list, revoke and sweep login sessions.
    #[cfg_attr(feature = "cli", command(subcommand))]
    Session(SessionCmd),
    /// Inspect and clean up agent sessions.
    #[cfg_attr(feature = "cli", command(subcommand))]
    Agent(AgentCmd),
    /// Manage API keys.
    #[cfg_attr(feature = "cli", command(subcommand))]
    Apikey(ApiKeyCmd),
    /// Read the audit log.
    #[cfg_attr(feature = "cli", command(subcommand))]
    Audit(AuditCmd),
    /// Manage organizations and members.
    #[cfg_attr(feature = "cli", command(subcommand))]
    Org(OrgCmd),
    /// Show, apply or revert schema migrations.
    #[cfg_attr(feature = "cli", command(subcommand))]
    Migrate(MigrateCmd),
    /// Write a backup: the store and every workspace folder in one new file.
    Backup {
        /// The file to create.
        path: PathBuf,
    },
    /// Replace the store and the workspace folders with a backup (safety copies are kept;
    /// needs the store free).
    Restore {
        /// The backup file (an archive from `backup`, or a plain store file).
        path: PathBuf,
        /// Replace an existing store.
        #[cfg_attr(feature = "cli", arg(long))]
        force: bool,
        /// With a plain store file (a restore's or reset's safety copy): put back the
        /// workspace folders of this trash entry too (`reset-<time>`, its path or its name as
        /// `workspace trash` lists it). Undoes a restore or a reset; both print the command.
        #[cfg_attr(feature = "cli", arg(long, value_name = "TRASH_ENTRY"))]
        #[serde(default)]
        folders: Option<PathBuf>,
    },
    /// Copy the whole store, from one snapshot, to a new data dir or a PostgreSQL server
    /// (`postgres://…`); then check the copy and compare every table's count (needs both
    /// stores free). A store that `check` finds problems in is not moved, unless
    /// --with-problems is given.
    Move {
        /// The target: a data dir without a store, or a store URL whose schema is empty.
        /// Give a URL holding a password through REDKEEP_MOVE_TO rather than here: a command
        /// line is visible to every user of the machine (`ps`) while the move runs.
        #[cfg_attr(
            feature = "cli",
            arg(
                long,
                env = "REDKEEP_MOVE_TO",
                hide_env_values = true,
                value_parser = clap::builder::NonEmptyStringValueParser::new()
            )
        )]
        to: String,
        /// Move a store that `check` finds problems in as it is: its problems are carried
        /// over unchanged, and the move succeeds when the copy has no other.
        #[cfg_attr(feature = "cli", arg(long))]
        #[serde(default)]
        with_problems: bool,
    },
    /// Copy everything that can still be read out of a damaged store into a new data dir
    /// (the damaged file is not written); `check` runs on the copy.
    Salvage {
        /// The new data dir.
        #[cfg_attr(feature = "cli", arg(long))]
        to: PathBuf,
    },
    /// Create a new store from an existing deployment's SQLite database (and its workspace
    /// folders): passwords keep working, ids are kept (UUIDs as external ids).
    Adopt(AdoptArgs),
    /// Write every record, workspace document and piece as JSON lines. The export holds
    /// every account's password hash: it is refused on a terminal, and a file stdout is
    /// redirected to is made private (0600) before it is written.
    Export(ExportArgs),
    /// Load an export into an empty store (created if missing).
    Import {
        /// The export file, or `-` for stdin.
        file: String,
    },
    /// Empty the store and move the workspace folders to the trash, after backing the store
    /// up (needs --force and the store free).
    Reset {
        /// Really do it.
        #[cfg_attr(feature = "cli", arg(long))]
        force: bool,
    },
    /// Records, index entries and bytes per table, and the file size.
    Stats,
    /// Look at the store itself: its tables, records and index entries (reads only).
    #[cfg_attr(feature = "cli", command(subcommand))]
    Inspect(InspectCmd),
    /// Whether the store is free, shared or held exclusively (by which process), its schema
    /// version, the path of each file, and temp files an operation under way (or killed)
    /// left in the data dir. Where there is no store (no file in the data dir, or no store in
    /// the `--store` schema), it fails with exit code 1 and one line saying so, and creates
    /// nothing.
    Status,
    /// Inspect per-user workspace folders.
    #[cfg_attr(feature = "cli", command(subcommand))]
    Workspace(WorkspaceCmd),
    /// Manage a user's gallery pieces.
    #[cfg_attr(feature = "cli", command(subcommand))]
    Gallery(GalleryCmd),
}

/// Where a command's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// It reads none.
    None,
    /// A file, or stdin for `-`.
    File(&'a str),
}

impl Command {
    /// The command's name as typed (`user create`), for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::Check(_) => "check",
            Command::Invite(_) => "invite",
            Command::User(_) => "user",
            Command::Role(_) => "role",
            Command::Login(_) => "login",
            Command::Session(_) => "session",
            Command::Agent(_) => "agent",
            Command::Apikey(_) => "apikey",
            Command::Audit(_) => "audit",
            Command::Org(_) => "org",
            Command::Migrate(_) => "migrate",
            Command::Backup { .. } => "backup",
            Command::Restore { .. } => "restore",
            Command::Move { .. } => "move",
            Command::Adopt(_) => "adopt",
            Command::Salvage { .. } => "salvage",
            Command::Export(_) => "export",
            Command::Import { .. } => "import",
            Command::Reset { .. } => "reset",
            Command::Stats => "stats",
            Command::Inspect(_) => "inspect",
            Command::Status => "status",
            Command::Workspace(_) => "workspace",
            Command::Gallery(_) => "gallery",
        }
    }

    /// The secrets this command reads from stdin, one a line in this order, each named by
    /// the flag that asked for it; empty when it reads none. A [`Request`](crate::admin::Request) carries them as
    /// one secret, these lines joined by `\n`.
    pub fn stdin_secrets(&self) -> &'static [&'static str] {
        match self {
            Command::Init(a) if a.admin_password_stdin => &["--admin-password-stdin"],
            Command::User(u) => u.stdin_secrets(),
            Command::Login(_) => &["--password-stdin"],
            Command::Session(
                SessionCmd::Validate { .. }
                | SessionCmd::Revoke {
                    token_stdin: true, ..
                },
            ) => &["--token-stdin"],
            Command::Apikey(
                ApiKeyCmd::Verify { .. }
                | ApiKeyCmd::Revoke {
                    key_stdin: true, ..
                },
            ) => &["--key-stdin"],
            _ => &[],
        }
    }

    /// A warning for a secret given as an argument, which shell history and the process
    /// list keep: `user create --invite CODE`, or a revoke given a whole token, key or code
    /// where its prefix names it. The command still runs (scripts rely on these forms); the
    /// CLI prints this on stderr first. `None` for every other command.
    pub fn secret_in_arguments(&self) -> Option<String> {
        use crate::auth::{api_keys::API_KEY_PREFIX, invites::INVITE_PREFIX};
        use crate::auth::{sessions::SESSION_PREFIX, token};
        let whole = |kind: &str, text: &str, what: &str, stdin: Option<&str>| {
            let text = text.trim();
            token::looks_like(kind, text).then(|| {
                let or_stdin = stdin.map_or(String::new(), |flag| format!(" (or {flag})"));
                // Longer or shorter than one, it is part of one at most (a code cut short).
                let given = if token::whole_length(kind, text) {
                    format!("the full {what} is")
                } else {
                    "what was given is".to_string()
                };
                format!(
                    "pass only the prefix, {}{or_stdin}; {given} now in your shell history and \
                     was in the process list",
                    token::display_prefix(kind, text)
                )
            })
        };
        match self {
            Command::User(UserCmd::Create(a)) if a.invite.is_some() => Some(
                "the invite code given with --invite is now in your shell history and was in \
                 the process list; give it with --invite-stdin instead"
                    .into(),
            ),
            Command::Session(SessionCmd::Revoke { id: Some(id), .. }) => {
                whole(SESSION_PREFIX, id, "token", Some("--token-stdin"))
            }
            Command::Apikey(ApiKeyCmd::Revoke {
                prefix: Some(prefix),
                ..
            }) => whole(API_KEY_PREFIX, prefix, "key", Some("--key-stdin")),
            Command::Invite(InviteCmd::Revoke { code }) => {
                whole(INVITE_PREFIX, code, "invite code", None)
            }
            _ => None,
        }
    }

    /// What the command reads besides its arguments.
    pub fn input(&self) -> Input<'_> {
        match self {
            Command::Import { file } => Input::File(file),
            Command::Gallery(g) => g.input_file().map_or(Input::None, Input::File),
            Command::Agent(a) => a.input_file().map_or(Input::None, Input::File),
            Command::User(u) => u.input_file().map_or(Input::None, Input::File),
            _ => Input::None,
        }
    }

    /// Whether the command's raw output is JSON lines meant for people too (`inspect dump`):
    /// the CLI pretty-prints each line unless `--json` is given.
    pub fn json_lines(&self) -> bool {
        matches!(self, Command::Inspect(InspectCmd::Dump(_)))
    }

    /// Whether the command's output is binary (`user avatar get`), which `--json` cannot
    /// carry.
    pub fn writes_binary(&self) -> bool {
        matches!(
            self,
            Command::User(users::UserCmd::Avatar(users::AvatarCmd::Get { .. }))
        )
    }

    /// Whether the command may create a missing store (the others need `init` first).
    pub fn creates_store(&self) -> bool {
        matches!(self, Command::Init(_) | Command::Import { .. })
    }

    /// Whether the command changes the stored format (`migrate up`, `migrate down`): it runs
    /// only in a process that holds the store alone, never through an application's admin
    /// socket, since whoever holds the store would go on with its own code on the new format.
    pub fn changes_schema(&self) -> bool {
        matches!(
            self,
            Command::Migrate(MigrateCmd::Up | MigrateCmd::Down { .. })
        )
    }

    /// Whether the command needs the store to itself, so it never runs through an
    /// application's admin socket: a migration ([`changes_schema`](Self::changes_schema)),
    /// and an import, which fills the store in one write transaction that lasts as long as
    /// its input (a pipe from another machine), so every write of the application would
    /// wait on it, for ever on a stalled pipe.
    pub fn needs_store_alone(&self) -> bool {
        self.changes_schema() || matches!(self, Command::Import { .. })
    }

    /// Why the command needs the store to itself (see [`needs_store_alone`](Self::needs_store_alone)),
    /// as a clause that a refusal goes on from (`…, so this command cannot run while …`).
    pub fn why_alone(&self) -> &'static str {
        if self.changes_schema() {
            "a migration changes the stored format"
        } else {
            "an import fills the store in one write that lasts as long as its input, and every \
             other write would wait for it"
        }
    }

    /// Whether the command only reads: the CLI opens a redb store read-only for it, so the
    /// store file's bytes stay as they were (an open for writing changes them, even when
    /// nothing is written). `check` without `--repair` is one: redb's page check, which needs
    /// a file to write, runs on a byte copy.
    pub fn only_reads(&self) -> bool {
        match self {
            Command::Stats
            | Command::Check(CheckArgs { repair: false })
            | Command::Inspect(_)
            | Command::Export(_)
            | Command::Backup { .. }
            | Command::Migrate(MigrateCmd::Status)
            | Command::Invite(InviteCmd::List { .. })
            | Command::Audit(AuditCmd::List { .. })
            | Command::Apikey(ApiKeyCmd::List { .. })
            | Command::Session(SessionCmd::List { .. })
            | Command::Agent(AgentCmd::List { .. } | AgentCmd::Show { .. })
            | Command::Role(RoleCmd::List | RoleCmd::Show { .. })
            | Command::Org(OrgCmd::List | OrgCmd::Show { .. })
            | Command::Workspace(
                WorkspaceCmd::List { .. } | WorkspaceCmd::Show { .. } | WorkspaceCmd::Trash,
            )
            | Command::Gallery(GalleryCmd::List { .. } | GalleryCmd::Show { .. }) => true,
            Command::User(u) => matches!(
                u,
                UserCmd::List { .. }
                    | UserCmd::Show { .. }
                    | UserCmd::Permissions { .. }
                    | UserCmd::Orgs { .. }
                    | UserCmd::Workspace { .. }
                    | UserCmd::Can { .. }
                    | UserCmd::Avatar(AvatarCmd::Get { .. })
            ),
            _ => false,
        }
    }

    /// Whether the command works on an outdated store (the others ask for `migrate up`).
    pub fn accepts_outdated(&self) -> bool {
        matches!(
            self,
            Command::Migrate(_)
                | Command::Backup { .. }
                | Command::Status
                | Command::Stats
                | Command::Inspect(_)
        )
    }

    /// Whether the command works on a store an import or an adoption stopped part way left
    /// (the others are refused, saying how to finish or redo it): `check` and `status` name
    /// it, `inspect` and `backup` read it, and `import` finishes the stopped import.
    pub fn accepts_unfinished(&self) -> bool {
        matches!(
            self,
            Command::Check(_)
                | Command::Status
                | Command::Inspect(_)
                | Command::Backup { .. }
                | Command::Import { .. }
        )
    }

    /// Makes every path in the command absolute, before it is sent to an owner that may run
    /// in another directory.
    ///
    /// # Errors
    /// `Io` when the current directory cannot be read.
    pub fn absolutize(&mut self) -> Result<()> {
        if let Command::Backup { path } = self {
            *path = absolute(path)?;
        }
        Ok(())
    }
}

/// Runs one request.
pub(crate) fn run(rk: &Redkeep, command: &Command, stdin: Stdin<'_>, io: Io<'_>) -> Result<Reply> {
    match command {
        Command::Init(a) => init::init(rk, a, stdin),
        Command::Check(a) => init::check(rk, a, io.feedback),
        Command::Migrate(c) => ops::migrate(rk, c, io.feedback),
        Command::Backup { path } => ops::backup(rk, path, io.feedback),
        Command::Export(_) => ops::export(rk, io),
        Command::Import { .. } => ops::import(rk, io),
        Command::Stats => ops::stats(rk),
        Command::Inspect(c) => inspect::run(rk, c, io),
        Command::Status => status::in_owner(rk),
        Command::Salvage { .. } => Err(Error::denied(
            "salvage reads a store nobody writes; stop the application that holds it first",
        )),
        Command::Adopt(_) => Err(Error::denied(
            "adopt creates a new store in an empty data dir; run it before any application opens it",
        )),
        Command::Move { .. } => Err(Error::denied(
            "move copies the whole store and needs it free; stop the application that holds it first",
        )),
        Command::Restore { .. } | Command::Reset { .. } => Err(Error::denied(
            "restore and reset replace the whole store; stop the application that holds it first",
        )),
        Command::Invite(c) => invite::run(rk, c),
        Command::User(c) => users::run(rk, c, stdin, io),
        Command::Role(c) => access::role(rk, c),
        Command::Login(a) => access::login(rk, a, stdin),
        Command::Session(c) => access::session(rk, c, stdin),
        Command::Agent(c) => access::agent(rk, c, io),
        Command::Apikey(c) => access::apikey(rk, c, stdin),
        Command::Audit(c) => access::audit(rk, c),
        Command::Org(c) => orgs::run(rk, c),
        Command::Workspace(c) => workspaces::run(rk, c),
        Command::Gallery(c) => workspaces::gallery(rk, c, io),
    }
}
