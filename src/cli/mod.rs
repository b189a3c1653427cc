//! The `redkeep` command line: clap parsing of the command set of [`crate::admin`], opening the
//! data dir (shared, or through the owning application's admin socket), rendering replies as
//! tables or JSON, and progress bars on a terminal. Only the public library API is used.

/// Writes one line to stderr, as `eprintln!` does, but never panics: a stderr whose reader
/// went away (`redkeep … 2>&1 | head -1`) loses the line instead of ending the process with
/// a panic and exit code 101.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod progress;
mod render;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::admin::commands::Input;
use crate::admin::{self, Command, Io, Reply, Request};
use crate::{Error, Mode, Options, PasswordParams, Redkeep, Result};

pub use render::render;

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
    /// Where the store is: unset for the redb file in the data dir; `postgres://…` (or a
    /// libpq key/value string; `schema=NAME` picks the schema) for PostgreSQL. Workspaces
    /// stay in the data dir.
    #[arg(long, global = true, env = "REDKEEP_STORE_URL", hide_env_values = true)]
    pub store: Option<String>,
    /// The size limit of workspace files (`workspace.json`, a gallery piece), in bytes: give
    /// the limit the application opens its store with (`Options::workspace.max_doc_bytes`)
    /// when it raised it, so that `check`, `workspace show` and `gallery show` read what it
    /// wrote. Default 16 MiB. A file over the limit is reported, never moved or replaced.
    /// (Through the application's admin socket, its own limit holds.)
    #[arg(
        long,
        global = true,
        env = "REDKEEP_MAX_DOC_BYTES",
        value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_doc_bytes: Option<u64>,
    /// The most pieces `gallery add` leaves in one user's gallery (the cap the application
    /// holds its users to, `Options::workspace.max_pieces`). Default 10,000. Pieces already
    /// past it stay readable and removable. (Through the application's admin socket, its
    /// own cap holds.)
    #[arg(long, global = true, env = "REDKEEP_MAX_PIECES", value_name = "N")]
    pub max_pieces: Option<u64>,
    /// The most bytes one user's pieces take together after `gallery add`
    /// (`Options::workspace.max_gallery_bytes`). Default 1 GiB. (Through the application's
    /// admin socket, its own cap holds.)
    #[arg(
        long,
        global = true,
        env = "REDKEEP_MAX_GALLERY_BYTES",
        value_name = "BYTES"
    )]
    pub max_gallery_bytes: Option<u64>,
    /// How long a command handed to the application holding the store (through its admin
    /// socket) waits for it to begin answering, in seconds, before giving up with exit 1.
    /// Default: an hour. A stopped or hung application otherwise keeps a script (a nightly
    /// backup, a monitoring check) waiting that long. On giving up, a command the application
    /// had not begun is dropped; a backup or export it had begun stops; another command it
    /// had begun goes on there.
    #[arg(
        long,
        global = true,
        env = "REDKEEP_ADMIN_TIMEOUT",
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub admin_timeout: Option<u64>,
    /// Print one JSON document instead of a table (`inspect dump` and `export` stream one
    /// compact JSON line per record instead).
    #[arg(long, global = true)]
    pub json: bool,
    /// Show what redkeep does on stderr (repeat for more); `RUST_LOG` also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Reads the secrets of `flags` from stdin, one a line in that order (without line
/// endings), as one secret: the lines joined by `\n`, which is how a request carries them
/// (see [`Command::stdin_secrets`]). `None` for no flag.
fn read_secrets(flags: &[&str]) -> Result<Option<crate::Secret>> {
    const CAP: u64 = 64 * 1024;
    if flags.is_empty() {
        return Ok(None);
    }
    let named = flags.join(" with ");
    // What was read may hold a secret: wiped when dropped, as the secret is.
    let mut buf = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .take(CAP)
        .read_to_string(&mut buf)
        .map_err(|e| Error::io(format!("reading {named} from stdin"), e))?;
    if buf.len() as u64 >= CAP && buf.matches('\n').count() < flags.len() {
        let reason = match flags.len() {
            1 => format!(
                "{named} reads the secret from the first line of stdin, which is longer than {CAP} bytes; give a short secret on a line of its own"
            ),
            n => format!(
                "{named} read one secret a line from stdin, and the first {n} lines are longer than {CAP} bytes together; give each secret on a short line of its own"
            ),
        };
        return Err(Error::invalid("stdin", reason));
    }
    let lines = admin::commands::stdin_lines(&buf, flags)?;
    Ok(Some(crate::Secret::new(lines.join("\n"))))
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

/// OWASP's argon2id settings of equal strength (memory in KiB, iterations; one lane each):
/// parameters at or above one of them in both are not weaker than OWASP's.
const OWASP_ARGON2: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

/// The warning for a command that makes a new password hash here (init, user create, user
/// set-password) with `REDKEEP_ARGON2` below OWASP's settings (the test suites' cheap ones
/// left set in a shell, say): such a hash is quick to crack, and nothing else would tell.
/// A login never rehashes a stored hash down to them, so only new hashes are weaker.
fn weak_hashing_warning(command: &Command) -> Option<String> {
    use admin::commands::UserCmd;
    let makes_hash = matches!(
        command,
        Command::Init(admin::commands::InitArgs {
            no_admin: false,
            ..
        }) | Command::User(UserCmd::Create(_) | UserCmd::SetPassword { .. })
    );
    let text = std::env::var(ARGON2_ENV).ok()?;
    let p = password_params().ok()?;
    let strong = OWASP_ARGON2
        .iter()
        .any(|&(m, t)| p.memory_kib >= m && p.iterations >= t);
    (makes_hash && !strong).then(|| {
        format!(
            "warning: {ARGON2_ENV}={} is below OWASP's argon2id settings (m=19456,t=2,p=1 or \
             equal): password hashes made with it are quick to crack; use it for tests only",
            render::printable(&text)
        )
    })
}

/// Explains a data dir that cannot hold a store before anything is opened.
fn check_data_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_file() => {
            let hint = if dir.file_name().is_some_and(|n| n == crate::STORE_FILE) {
                format!(
                    "; pass the folder that holds it: --data-dir {}",
                    dir.parent().unwrap_or(Path::new(".")).display()
                )
            } else {
                "; --data-dir names a folder (it holds redkeep.redb and workspaces/)".into()
            };
            Err(Error::invalid(
                "data dir",
                format!("{} is a file{hint}", dir.display()),
            ))
        }
        _ => Ok(()),
    }
}

/// Opens the store for `cli`'s command ([`open_store`]), saying at `-v` which store and how.
fn open(cli: &Cli) -> Result<Redkeep> {
    let rk = open_store(cli)?;
    let store = rk.store();
    let how = if rk.options().read_only {
        "read-only"
    } else {
        match store.mode() {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    };
    let engine = match store.engine() {
        "postgres" => "PostgreSQL",
        other => other,
    };
    // (The location of a PostgreSQL store is shown without its password.)
    tracing::info!(
        "opened the store {} ({engine}, {how}) in this process",
        store.location()
    );
    Ok(rk)
}

/// The options a command opens the store with. An exclusive open (a migration, an import,
/// a move) waits only a moment for other processes that have the store open, not the half
/// minute an application waits: an application in shared mode holds it for good, and the
/// operator is better told at once who holds it.
fn operator_options() -> Options {
    Options::default().wait_for_readers(crate::StoreOptions::default().wait_for_readers)
}

fn open_store(cli: &Cli) -> Result<Redkeep> {
    check_data_dir(&cli.data_dir)?;
    // A migration needs the store to itself: an exclusive open is refused while anyone else
    // has it open. So does an import, whose one write transaction lasts as long as its
    // input (a pipe from another machine, say): held shared, every other command would wait
    // for it without a word; held alone, they are told at once who holds the store.
    // (On PostgreSQL the store is opened shared: the import itself then takes the store's
    // lock exclusively, and is refused while another process has it open.)
    let importing_a_file =
        matches!(cli.command, Command::Import { .. }) && store_url(cli).is_none();
    let mode = if cli.command.changes_schema() || importing_a_file {
        Mode::Exclusive
    } else {
        Mode::Shared
    };
    let mut options = operator_options()
        .mode(mode)
        .create(cli.command.creates_store())
        .password(password_params_for(&cli.command)?);
    options.store_url = store_url(cli);
    options.open_outdated = cli.command.accepts_outdated();
    options.open_unfinished = cli.command.accepts_unfinished();
    options.workspace.max_doc_bytes = cli.max_doc_bytes;
    options.workspace.max_pieces = cli.max_pieces;
    options.workspace.max_gallery_bytes = cli.max_gallery_bytes;
    options.workspace.on_wait = Some(std::sync::Arc::new(|path: &Path| {
        say!("waiting for the lock on {} …", path.display());
    }));
    let creates = options.create;
    // A command that only reads leaves the store file as it was: opened for writing, redb
    // rewrites some of its bytes even when nothing is written (what matters for backups that
    // copy changed files, and for a file kept as evidence). The open for writing follows
    // when this one cannot do: a file whose last writer was killed needs the repair only
    // that open makes, a damaged file is explained there as for every command, and a store
    // just emptied (a reset) gets its system roles back there before it is read.
    if cli.command.only_reads() && options.store_url.is_none() {
        match Redkeep::open(&cli.data_dir, options.clone().read_only(true)) {
            Ok(rk) if !rk.needs_settling().unwrap_or(true) => return Ok(rk),
            Ok(_) => tracing::debug!("the store needs settling: opening it for writing"),
            Err(e) if crate::store::opened_for_writing_instead(&e) => {
                tracing::debug!(error = %e, "opening the store only to read it failed");
            }
            Err(e) => return Err(e),
        }
    }
    // On a server, `status` writes nothing; nor does a command that only reads (`check`,
    // `inspect`, `backup`) on a store a move, import or adoption stopped part way in (which
    // an open for writing would change, if only by its own tables' new columns).
    let only_reads = cli.command.only_reads() || matches!(cli.command, Command::Status);
    if only_reads && options.store_url.is_some() && options.open_unfinished {
        match Redkeep::open(&cli.data_dir, options.clone().read_only(true)) {
            // (A backup reads, and makes nothing in a data dir it was wrongly given.)
            Ok(rk) if matches!(cli.command, Command::Status | Command::Backup { .. }) => {
                return Ok(rk);
            }
            Ok(rk) if rk.is_not_whole().unwrap_or(false) => return Ok(rk),
            Ok(_) => {}
            Err(e) if crate::store::opened_for_writing_instead(&e) => {
                tracing::debug!(error = %e, "opening the store only to read it failed");
            }
            Err(e) => return Err(e),
        }
    }
    // `init` alone replaces a store file that an interrupted init left holding nothing.
    let opened = if matches!(cli.command, Command::Init(_)) {
        Redkeep::open_to_init(&cli.data_dir, options.clone())
    } else {
        Redkeep::open(&cli.data_dir, options.clone())
    };
    match opened {
        // A data dir this user may read but not write: read what it holds; writes are
        // refused with a sentence saying so. A file its last writer did not close cannot be
        // read so, nor a damaged one: that is the reason given (with the way out, a salvage,
        // which needs only to read the file).
        Err(e) if !creates && e.is_permission_denied() => {
            Redkeep::open(&cli.data_dir, options.read_only(true)).map_err(|read| {
                if crate::store::not_closed_cleanly(&read) || matches!(read, Error::Damaged { .. })
                {
                    read
                } else {
                    e
                }
            })
        }
        Err(e) if creates && e.is_permission_denied() => Err(Error::ReadOnly {
            what: format!(
                "this user may not write {} ({}), so nothing can be made or changed there; \
                 run this as the data dir's owner (a user who may write it)",
                cli.data_dir.display(),
                e.full_message()
            ),
        }),
        other => other,
    }
}

/// The store URL of the global flags, if one is set (an empty one means none).
fn store_url(cli: &Cli) -> Option<String> {
    cli.store
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A usage error as one line: clap's message and tips, then the usage in parentheses.
fn usage_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = Vec::new();
    let mut usage = None;
    for paragraph in text.split("\n\n") {
        let flat = paragraph
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if flat.is_empty() || flat.starts_with("For more information") {
            continue;
        }
        match flat.strip_prefix("Usage: ") {
            Some(u) => usage = Some(u.to_string()),
            None => parts.push(flat.strip_prefix("error: ").unwrap_or(&flat).to_string()),
        }
    }
    let mut line = parts.join("; ");
    match usage {
        Some(u) => line.push_str(&format!(" (usage: {u}; more with --help)")),
        // A value clap's parser refused: its message says what to write.
        None => line.push_str(" (more with --help)"),
    }
    line
}

/// `line`, clap's refusal `e` of a value, blaming the environment variable the value came
/// from when it was not given on the command line (clap names only the flag it stands for).
fn from_environment(e: &clap::Error, line: String) -> String {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return line;
    };
    let given = |long: &str| {
        std::env::args_os().skip(1).any(|a| {
            let a = a.to_string_lossy();
            a == format!("--{long}") || a.starts_with(&format!("--{long}="))
        })
    };
    let command = Cli::command();
    let Some((long, env)) = command.get_arguments().find_map(|a| {
        let long = a.get_long()?;
        let env = a.get_env()?;
        arg.starts_with(&format!("--{long}"))
            .then(|| (long, env.to_string_lossy().into_owned()))
    }) else {
        return line;
    };
    if given(long) || std::env::var_os(&env).is_none() {
        return line;
    }
    line.replacen(
        &format!("for '{arg}'"),
        &format!("in the environment variable {env} (read for '{arg}', which was not given)"),
        1,
    )
}

/// The command as typed, its words only (`redkeep user create`), for logs: never an argument's
/// value, which may be a secret. Read from the command's variant names, as clap derives the
/// words from them.
fn command_words(command: &Command) -> String {
    let mut words = vec!["redkeep".to_string()];
    let mut value = serde_json::to_value(command).unwrap_or_default();
    let is_word = |name: &str| name.starts_with(|c: char| c.is_ascii_uppercase());
    loop {
        let name = match value {
            serde_json::Value::String(name) if is_word(&name) => {
                words.push(kebab(&name));
                break;
            }
            serde_json::Value::Object(map) if map.len() == 1 => {
                let Some((name, inner)) = map.into_iter().next().filter(|(n, _)| is_word(n)) else {
                    break;
                };
                value = inner;
                name
            }
            _ => break,
        };
        words.push(kebab(&name));
    }
    words.join(" ")
}

/// `SetPassword` as clap spells a command: `set-password`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Whether `command` may hash a password, and so needs `REDKEEP_ARGON2` to be right: it makes
/// one (init, user create, set-password) or checks one, which may rehash it (login,
/// check-password).
fn hashes_passwords(command: &Command) -> bool {
    use admin::commands::UserCmd;
    matches!(
        command,
        Command::Init(admin::commands::InitArgs {
            no_admin: false,
            ..
        }) | Command::Login(_)
            | Command::User(
                UserCmd::Create(_) | UserCmd::SetPassword { .. } | UserCmd::CheckPassword { .. }
            )
    )
}

/// The argon2 parameters for `command`: a bad `REDKEEP_ARGON2` fails a command that may hash
/// a password; any other is warned, and goes on (it hashes none).
fn password_params_for(command: &Command) -> Result<PasswordParams> {
    match password_params() {
        Err(e) if !hashes_passwords(command) => {
            say!(
                "warning: {}; ignored, as this command hashes no password",
                render::printable(&e.full_message())
            );
            Ok(PasswordParams::OWASP)
        }
        other => other,
    }
}

/// Parses arguments, runs the command and prints the result; the whole CLI.
pub fn main() -> ExitCode {
    // A panic inside the storage engine on a damaged file becomes an error with advice;
    // the default hook would print it first.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !crate::store::containing() {
            default_hook(info);
        }
    }));
    if let Some(line) = repeated_option(std::env::args_os().skip(1)) {
        say!("error: {}", render::error_line(&line));
        return ExitCode::from(2);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and a command group given without its command: the help.
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            // Printed here rather than by clap's `exit`, which takes a failed write (a full
            // disk) for success.
            let printed = e.print().and_then(|()| std::io::stdout().flush());
            if let Err(err) = printed
                && err.kind() != std::io::ErrorKind::BrokenPipe
            {
                say!("error: writing the help: {err}");
                return ExitCode::from(1);
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        Err(e) => {
            let line = from_environment(&e, usage_error_line(&e));
            say!("error: {}", render::error_line(&line));
            return ExitCode::from(2);
        }
    };
    if let Some(warning) = cli.command.secret_in_arguments() {
        say!("warning: {}", render::error_line(&warning));
    }
    init_logging(cli.verbose);
    // What the command records in the audit log says it came from an operator's shell, and
    // whose (a command sent to the application is recorded there with the socket's peer).
    // (Cannot be refused: a short line of ASCII letters, digits and spaces.)
    let origin = crate::Origin::new(format!(
        "redkeep CLI, uid {}",
        rustix::process::getuid().as_raw()
    ))
    .expect("the CLI's origin is one short line");
    let words = command_words(&cli.command);
    tracing::debug!("running `{words}`");
    let started = std::time::Instant::now();
    let ran = Redkeep::with_origin(&origin, || run(&cli));
    tracing::debug!(
        "`{words}` {} after {:.1?}",
        if ran.is_ok() { "ended" } else { "failed" },
        started.elapsed()
    );
    match ran.map_err(|e| in_data_dir(&cli.data_dir, e)) {
        Ok(code) => code,
        // A reader that stopped early (`redkeep inspect dump users | head`) is not a failure
        // of a command that shows what is there. An export cut short is: what its reader got
        // is not the whole store. (A broken pipe elsewhere, the admin socket's, is an error.)
        Err(e) if Watched::reader_left() && !matches!(cli.command, Command::Export(_)) => {
            tracing::debug!(error = %e, "the reader of stdout stopped early");
            ExitCode::SUCCESS
        }
        Err(e) if Watched::reader_left() => {
            say!(
                "error: {}",
                render::error_line(&format!(
                    "the export was cut short: the reader of stdout closed it before the end \
                     ({}), so what it got is not the whole store (an import refuses it); \
                     export again, to a file (`-o FILE`) or into a reader that takes all of it",
                    e.full_message()
                ))
            );
            ExitCode::from(1)
        }
        Err(e) => {
            say!("error: {}", render::error_line(&e.full_message()));
            ExitCode::from(1)
        }
    }
}

/// The refusal of a global option that takes a value given twice (`args`: the arguments
/// after the program's name): clap refuses that at one level, but takes the last of two
/// given at different levels (`redkeep --data-dir A user delete X --data-dir B` acted on B),
/// and a wrapper script adding its own `--data-dir` would be overridden without a word.
fn repeated_option(args: impl Iterator<Item = std::ffi::OsString>) -> Option<String> {
    use clap::CommandFactory;
    // The long options given more than once (what follows `--` is no option); only then is
    // the command's definition built to tell the global ones (clap builds it again to parse).
    let mut seen = std::collections::HashSet::new();
    let mut twice = Vec::new();
    for arg in args {
        let arg = arg.to_string_lossy().into_owned();
        if arg == "--" {
            break;
        }
        let name = arg.split('=').next().unwrap_or(&arg).to_string();
        if name.starts_with("--") && !seen.insert(name.clone()) {
            twice.push(name);
        }
    }
    if twice.is_empty() {
        return None;
    }
    let command = Cli::command();
    let name = twice.into_iter().find(|name| {
        command.get_arguments().any(|a| {
            a.is_global_set()
                && a.get_action().takes_values()
                && a.get_long()
                    .is_some_and(|l| name.strip_prefix("--") == Some(l))
        })
    })?;
    Some(format!(
        "{name} is given more than once (before and after the command, say); give it once, \
         so that it is clear which one counts"
    ))
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    // Without -v, stderr carries only the one-line error of a failure.
    let default = match verbose {
        0 => "off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Where raw output goes: stdout (its JSON lines pretty-printed for people when the command
/// writes them), or a new file written atomically at the end.
enum Sink {
    Stdout(Watched),
    Pretty(render::PrettyLines<Watched>),
    File(tempfile::NamedTempFile, PathBuf),
}

/// Whether the reader of stdout closed it while raw output was written to it.
static READER_LEFT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// stdout for raw output, noting when its reader closed it (a broken pipe): the error the
/// command then returns is the reader's stopping, told apart from a broken pipe of its own
/// (the admin socket's).
struct Watched(std::io::StdoutLock<'static>);

impl Watched {
    fn new() -> Watched {
        Watched(std::io::stdout().lock())
    }

    /// Whether the reader of stdout closed it while raw output was written.
    fn reader_left() -> bool {
        READER_LEFT.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn noted<T>(r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            READER_LEFT.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
}

impl Write for Watched {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Self::noted(self.0.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Self::noted(self.0.flush())
    }
}

/// When stdout is a regular file that other users may read, makes it 0600 (saying so on
/// stderr); a pipe, a terminal or a private file is left as it is.
///
/// # Errors
/// `InvalidInput` when the file's mode cannot be changed (another user's file): nothing has
/// been written to it then.
fn private_stdout_file() -> Result<()> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return Ok(());
    };
    let file = std::fs::File::from(fd);
    let Ok(meta) = file.metadata() else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.file_type().is_file() || mode & 0o077 == 0 {
        return Ok(());
    }
    match file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700)) {
        Ok(()) => {
            say!(
                "note: the file stdout goes to was open to other users of this machine (mode \
                 {mode:04o}); made it {:04o}, as the export holds every account's password hash",
                mode & 0o700
            );
            Ok(())
        }
        Err(e) => Err(Error::invalid(
            "output",
            format!(
                "an export holds every account's password hash, and the file stdout goes to is \
                 open to other users (mode {mode:04o}) and cannot be made private ({e}); write \
                 it with `-o FILE`, which makes a file only you may read"
            ),
        )),
    }
}

impl Sink {
    fn for_command(cmd: &Command, json: bool, data_dir: &Path) -> Result<Sink> {
        // An export holds every password hash: not for a screen (or a terminal's scrollback
        // and logs), as `inspect` shows none without `--show-secrets`.
        if let Command::Export(admin::commands::ExportArgs { output }) = cmd
            && output.as_ref().is_none_or(|p| p.as_os_str() == "-")
            && std::io::IsTerminal::is_terminal(&std::io::stdout())
        {
            return Err(Error::invalid(
                "output",
                "an export holds every account's password hash; write it to a file (`-o FILE`) \
                 or into a pipe, not to a terminal",
            ));
        }
        // Redirected to a file (`redkeep export > FILE`), the file has the shell's umask, which
        // commonly lets every user of the machine read it: made private before a byte is
        // written, or refused when this process may not change its mode.
        if let Command::Export(admin::commands::ExportArgs { output }) = cmd
            && output.as_ref().is_none_or(|p| p.as_os_str() == "-")
        {
            private_stdout_file()?;
        }
        // An image's bytes on a terminal are garbage, and may be taken for its escape codes.
        if cmd.writes_binary() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return Err(Error::invalid(
                "output",
                "this command writes the image's JPEG bytes, which a terminal cannot show; \
                 redirect stdout to a file (`> avatar.jpg`) or into a pipe",
            ));
        }
        match cmd {
            cmd if cmd.json_lines() && !json => {
                Ok(Sink::Pretty(render::PrettyLines::new(Watched::new())))
            }
            // `-o -` is stdout, as without `-o` (`./-` is a file of that name).
            Command::Export(admin::commands::ExportArgs { output: Some(path) })
                if path.as_os_str() == "-" =>
            {
                Ok(Sink::Stdout(Watched::new()))
            }
            Command::Export(admin::commands::ExportArgs { output: Some(path) }) => {
                crate::fsutil::existing_folder_of(path, "output", "export")?;
                // A dangling symlink is something there too.
                if path.symlink_metadata().is_ok() {
                    return Err(Error::invalid(
                        "output",
                        format!("{} exists; choose a new file", path.display()),
                    ));
                }
                crate::ops::files::refuse_own_file_name(data_dir, path, "output")?;
                let workspaces = data_dir.join(crate::WORKSPACES_DIR);
                if crate::fsutil::within(&workspaces, path) {
                    return Err(Error::invalid(
                        "output",
                        format!(
                            "{} is among the workspace folders ({}); write the export \
                             elsewhere: it holds every account's records and password hashes, \
                             and there it would become a user's file",
                            path.display(),
                            workspaces.display()
                        ),
                    ));
                }
                Ok(Sink::File(
                    crate::fsutil::held_temp_sibling(path)?,
                    path.clone(),
                ))
            }
            _ => Ok(Sink::Stdout(Watched::new())),
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(s) => s,
            Sink::Pretty(p) => p,
            Sink::File(f, _) => f.as_file_mut(),
        }
    }

    /// Finishes the output; returns whether the reply's summary may go to stdout.
    fn finish(self) -> Result<bool> {
        let flushed = |r: std::io::Result<()>| {
            r.map(|()| false)
                .map_err(|e| Error::io("writing the output", e))
        };
        match self {
            Sink::Stdout(mut s) => flushed(s.flush()),
            Sink::Pretty(mut p) => flushed(p.flush()),
            Sink::File(tmp, path) => {
                crate::fsutil::persist_new(tmp, &path)?;
                Ok(true)
            }
        }
    }
}

/// Reads `input` to its end, or one byte past the largest input a command other than
/// `import` takes (so the command still says it is too large): a piece of `gallery add` as
/// large as `--max-doc-bytes` (or the default limit, when it is lower).
fn read_ahead(cli: &Cli, input: &mut dyn BufRead) -> Result<Vec<u8>> {
    let cap = read_ahead_cap(cli);
    let mut buf = Vec::new();
    Read::take(input, cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("reading the input", e))?;
    // A piece past it is refused here: an application that runs with a higher limit would
    // get it cut, and take it for a damaged piece.
    if buf.len() as u64 > cap
        && matches!(
            cli.command,
            Command::Gallery(admin::commands::GalleryCmd::Add { .. })
        )
    {
        return Err(Error::invalid(
            "input",
            format!(
                "the piece is larger than {} bytes, the limit for workspace files; raise it \
                 with {}",
                cli.max_doc_bytes
                    .unwrap_or(crate::workspace::DEFAULT_MAX_DOC_BYTES),
                crate::workspace::RAISE_LIMIT
            ),
        ));
    }
    Ok(buf)
}

/// A refusal by a cap on a user's gallery, naming the flag that raises it here (the caps
/// this process opened the store with; through an admin socket, the application's hold).
fn with_cap_flag(e: Error) -> Error {
    match e {
        Error::QuotaExceeded { limit, reason } => {
            let flag = match limit {
                "max_pieces" => "--max-pieces (or REDKEEP_MAX_PIECES)",
                _ => "--max-gallery-bytes (or REDKEEP_MAX_GALLERY_BYTES)",
            };
            Error::QuotaExceeded {
                limit,
                reason: format!("{reason}; or raise the cap with {flag}"),
            }
        }
        e => e,
    }
}

/// The most [`read_ahead`] reads.
fn read_ahead_cap(cli: &Cli) -> u64 {
    admin::MAX_INPUT_BYTES
        .max(crate::auth::users::MAX_AVATAR_BYTES as u64)
        .max(cli.max_doc_bytes.unwrap_or(0))
}

fn input_for(cmd: &Command) -> Result<Option<Box<dyn BufRead>>> {
    match cmd.input() {
        Input::None => Ok(None),
        Input::File("-") => Ok(Some(Box::new(BufReader::new(std::io::stdin())))),
        Input::File(path) => {
            let f =
                std::fs::File::open(path).map_err(|e| Error::io(format!("opening {path}"), e))?;
            // Said here, the same whether the command runs here or in the application.
            if f.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(Error::invalid(
                    "input",
                    format!("{path} is a folder; give a file (or - for stdin)"),
                ));
            }
            Ok(Some(Box::new(BufReader::new(f))))
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let now = crate::clock::SystemClock.now();
    // What `status` and the refusals of whole-store commands show of this process on a
    // server (`pg_stat_activity`), unless the URL names its connections.
    crate::store::name_connections(&format!(
        "redkeep {} (pid {})",
        cli.command.name(),
        std::process::id()
    ));
    // Said last, after the command's own output and notes.
    let mut warning = None;
    // The commands that open the data dir's files themselves, not through `Redkeep::open`:
    // they trust its owners as it does (a salvage and a status only read).
    let opens_files = matches!(
        cli.command,
        Command::Restore { .. }
            | Command::Reset { .. }
            | Command::Move { .. }
            | Command::Salvage { .. }
            | Command::Adopt(_)
            | Command::Status
    );
    if opens_files && !matches!(cli.command, Command::Status) {
        // (A store URL is shown without its password.)
        let store = store_url(cli).map_or_else(
            || cli.data_dir.join(crate::STORE_FILE).display().to_string(),
            |url| crate::store::redact(&url),
        );
        tracing::info!("working on the store {store} in this process, with the store alone");
    }
    if opens_files {
        let writes = !matches!(cli.command, Command::Salvage { .. } | Command::Status);
        crate::handle::refuse_untrusted(&cli.data_dir, writes)?;
    }
    let reply = match &cli.command {
        Command::Restore {
            path,
            force,
            folders,
        } => {
            check_data_dir(&cli.data_dir)?;
            refuse_foreign_writer(&cli.data_dir)?;
            admin::commands::restore_store_with_folders(
                &cli.data_dir,
                store_url(cli).as_deref(),
                path,
                folders.as_deref(),
                *force,
                now,
            )
            .map_err(|e| whole_file(&cli.data_dir, e))?
        }
        Command::Reset { force } => {
            check_data_dir(&cli.data_dir)?;
            refuse_foreign_writer(&cli.data_dir)?;
            admin::commands::reset_store(&cli.data_dir, store_url(cli).as_deref(), *force, now)
                .map_err(|e| whole_file(&cli.data_dir, e))?
        }
        Command::Move { to, with_problems } => {
            check_data_dir(&cli.data_dir)?;
            let mut options = operator_options().password(password_params()?);
            options.workspace.max_doc_bytes = cli.max_doc_bytes;
            admin::commands::move_store(
                &cli.data_dir,
                store_url(cli).as_deref(),
                to,
                options,
                *with_problems,
            )
            .map_err(|e| whole_copy(&cli.data_dir, e))?
        }
        Command::Status if store_url(cli).is_some() => {
            admin::commands::status::of_server(&open(cli)?)?
        }
        Command::Status => {
            check_data_dir(&cli.data_dir)?;
            admin::probe(&cli.data_dir)?
        }
        Command::Salvage { .. } if store_url(cli).is_some() => {
            return Err(Error::invalid(
                "store",
                "salvage reads a damaged redb file; a PostgreSQL store is checked with \
                 `redkeep check` and repaired by the server's own tools or a restore",
            ));
        }
        Command::Adopt(_) if store_url(cli).is_some() => {
            return Err(Error::invalid(
                "store",
                "adopt fills the redb file of a new data dir; adopt there, then `redkeep move \
                 --to postgres://…`",
            ));
        }
        Command::Salvage { to } => {
            check_data_dir(&cli.data_dir)?;
            let mut options = operator_options().password(password_params()?);
            options.workspace.max_doc_bytes = cli.max_doc_bytes;
            admin::commands::salvage(&cli.data_dir, to, options, now)
                .map_err(|e| whole_copy(&cli.data_dir, e))?
        }
        Command::Adopt(a) => {
            check_data_dir(&cli.data_dir)?;
            let mut options = operator_options().password(password_params()?);
            options.workspace.max_doc_bytes = cli.max_doc_bytes;
            admin::commands::adopt(&cli.data_dir, a, options)
                .map_err(|e| whole_file(&cli.data_dir, e))?
        }
        command if cli.json && command.writes_binary() => {
            return Err(Error::invalid(
                "--json",
                "this command writes the image's bytes, which are not JSON; leave out --json and redirect stdout to a file",
            ));
        }
        command => {
            let secret = read_secrets(command.stdin_secrets())?;
            let mut input = input_for(command)?;
            // A command that reads a small input (a piece, an avatar, an agent's JSON) reads
            // it before it opens the store, so it does not hold the store, keeping migrations
            // and restores out unnamed, while it waits for a pipe. An import streams.
            if !matches!(command, Command::Import { .. })
                && let Some(mut whole) = input.take()
            {
                input = Some(Box::new(std::io::Cursor::new(read_ahead(cli, &mut whole)?)));
            }
            let mut sink = Sink::for_command(command, cli.json, &cli.data_dir)?;
            let mut command = command.clone();
            command.absolutize()?;
            let req = Request { command, secret };
            if matches!(req.command, Command::Init(_)) {
                refuse_foreign_folder(&cli.data_dir)?;
            }
            let made = Made::before(cli, &req.command);
            let opened = open(cli);
            if let (Err(_), Some(made)) = (&opened, &made) {
                made.take_back_dir();
            }
            let reply = match opened {
                Ok(rk) => {
                    let writes = !req.command.only_reads() && !rk.options().read_only;
                    if writes && let Err(e) = refuse_foreign_writer(&cli.data_dir) {
                        drop(rk);
                        if let Some(made) = &made {
                            made.take_back();
                        }
                        return Err(e);
                    }
                    let feedback = progress::Bars::new();
                    let mut empty = std::io::empty();
                    let io = Io {
                        input: match input.as_mut() {
                            Some(i) => i.as_mut(),
                            None => &mut empty,
                        },
                        output: sink.writer(),
                        feedback: &feedback,
                    };
                    let done = admin::execute(&rk, &req, io);
                    drop(rk);
                    if let (Err(_), Some(made)) = (&done, &made) {
                        made.take_back();
                    }
                    let reply = done.map_err(with_cap_flag)?;
                    // (Not for a command the store's owner ran: it hashes with its own.)
                    if reply.exit_code == 0 {
                        warning = weak_hashing_warning(&req.command);
                    }
                    reply
                }
                // Up to date already (the owner says so): nothing to migrate, nothing to
                // stop the application for.
                Err(Error::InUse { .. })
                    if matches!(
                        req.command,
                        Command::Migrate(admin::commands::MigrateCmd::Up)
                    ) && admin::probe(&cli.data_dir).is_ok_and(|r| {
                        r.json["schema_version"].as_u64() == Some(crate::SCHEMA_VERSION)
                    }) =>
                {
                    admin::Reply::text(
                        serde_json::json!({"applied": [], "backup": null, "schema_version": crate::SCHEMA_VERSION}),
                        vec![format!(
                            "already at schema version {}; nothing to do",
                            crate::SCHEMA_VERSION
                        )],
                    )
                }
                Err(Error::InUse { holder, .. }) if req.command.needs_store_alone() => {
                    return Err(Error::denied(format!(
                        "{}, so this command cannot run while the store is held: {}; {}",
                        req.command.why_alone(),
                        who_holds(&holder),
                        what_then(&holder)
                    )));
                }
                Err(Error::InUse { path, holder }) => {
                    match remote(cli, &req, path, holder, input, sink.writer())? {
                        Ok(reply) => reply,
                        Err(code) => return Ok(code),
                    }
                }
                // Not opened at all: `check` could not read it either, so the advice goes
                // to a backup or salvage.
                Err(Error::Damaged { path, reason }) => {
                    let nothing = if matches!(req.command, Command::Check(_)) {
                        "it cannot be opened for writing, so nothing was checked or repaired; "
                    } else {
                        ""
                    };
                    return Err(cannot_be_opened(&path, &reason, nothing));
                }
                Err(e) => return Err(e),
            };
            let summary_to_stdout = sink.finish()?;
            if reply.raw && !summary_to_stdout {
                // stdout carries the data; the summary is a message.
                let _ = write!(std::io::stderr(), "{}", render(&reply, false));
                if reply.exit_code != 0 {
                    say!("error: {}", failure_line(&cli.command, &reply));
                }
                return Ok(ExitCode::from(reply.exit_code));
            }
            reply
        }
    };
    let reads_only = cli.command.only_reads() || matches!(cli.command, Command::Status);
    print(
        &render(&reply, cli.json),
        reply.unseen.as_deref(),
        reads_only,
    )?;
    // What a command says about the secret it printed goes beside it, on stderr, so that
    // stdout holds the secret alone.
    if !cli.json {
        for note in &reply.notes {
            say!("{}", render::printable(note));
        }
    }
    // A failure told on stdout (the problems a check or a salvage found) also gets its one
    // line on stderr, where scripts and operators look when the exit code is 1. `user can`
    // answers "no" with exit code 1 (documented, like `test`): that is an answer, not a
    // failure.
    if reply.exit_code != 0
        && !matches!(
            &cli.command,
            Command::User(admin::commands::UserCmd::Can { .. })
        )
    {
        say!("error: {}", failure_line(&cli.command, &reply));
    }
    if let Some(warning) = warning {
        say!("{warning}");
    }
    Ok(ExitCode::from(reply.exit_code))
}

/// Refuses, for `init`, a data dir that holds other things and nothing of redkeep's (see
/// [`crate::ops::refuse_foreign_folder`]).
fn refuse_foreign_folder(dir: &Path) -> Result<()> {
    crate::ops::refuse_foreign_folder(dir, "init")
}

/// The stderr line of a reply that failed: the one the command gave, or (from an older
/// server over the admin socket, which sends none) one by command.
fn failure_line<'a>(command: &Command, reply: &'a Reply) -> &'a str {
    if let Some(line) = &reply.failure {
        return line;
    }
    match command {
        Command::Check(_) => "the check found problems, listed in the report",
        Command::Salvage { .. } => "the salvaged copy has problems, listed in the report",
        Command::Status => "the store is damaged, as the report says",
        _ => "the command failed, as its report says",
    }
}

/// The data dir as a store-making command (`init`, `import`) found it when it had no store,
/// so that when the command fails, what opening the store made is taken away again: a
/// refused init or import leaves no empty store behind to trip up the next attempt.
struct Made {
    dir: PathBuf,
    dir_existed: bool,
    // What the workspaces folder held before (`None`: too much to list; nothing is taken
    // back then).
    found: Option<std::collections::BTreeSet<PathBuf>>,
}

impl Made {
    /// `Some` for a store-making command on a data dir without a store file.
    fn before(cli: &Cli, command: &Command) -> Option<Made> {
        let db = cli.data_dir.join(crate::STORE_FILE);
        // (A store file that holds nothing, which `init` replaces, is no store either.)
        let fresh = command.creates_store()
            && store_url(cli).is_none()
            && (!db.exists()
                || matches!(command, Command::Init(_))
                    && crate::store::Store::unwritten(&db).is_some());
        fresh.then(|| Made {
            dir: cli.data_dir.clone(),
            dir_existed: cli.data_dir.exists(),
            found: crate::ops::workspace_entries(&cli.data_dir),
        })
    }

    /// Takes back what opening the store made ([`crate::ops::discard_unused_store_except`]),
    /// leaving what the workspaces folder held before, and the data dir when this command
    /// made it.
    fn take_back(&self) {
        let Some(found) = &self.found else {
            return;
        };
        if crate::ops::discard_unused_store_except(&self.dir, found) && !self.dir_existed {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

impl Made {
    /// Takes back the data dir when this command made it and opening the store in it
    /// failed (which takes back the store file it made): only while it is empty.
    fn take_back_dir(&self) {
        if !self.dir_existed {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Refuses a command that writes, run on the store itself (no application holds it), by
/// another user than the data dir's owner: root under `sudo`, say. The folders and files it
/// made would be that user's, private to them, and the application, which runs as the data
/// dir's owner, could not open them (every request on that workspace would fail after its
/// next start). `adopt` refuses alike. A command sent through a running application's
/// admin socket is not refused: the application does the writing.
///
/// # Errors
/// `Denied`, saying whose the data dir is and as whom to run the command.
fn refuse_foreign_writer(data_dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(data_dir) else {
        return Ok(());
    };
    let (owner, me) = (meta.uid(), rustix::process::geteuid().as_raw());
    if owner == me {
        return Ok(());
    }
    let who = if me == 0 {
        "root".to_string()
    } else {
        format!("uid {me}")
    };
    Err(Error::denied(format!(
        "the data dir {} belongs to uid {owner}, not to the user running this command \
         ({who}), and no application holds the store: the files it would make there would be \
         {who}'s, which the application (uid {owner}) cannot open; run it as uid {owner} \
         (such as `sudo -u '#{owner}' redkeep …`); nothing was changed",
        data_dir.display()
    )))
}

/// A store file that holds nothing in a data dir that held a store (users' folders) is said
/// as a store that cannot be opened, with the way out, as when `open` finds it.
fn in_data_dir(dir: &Path, e: Error) -> Error {
    // No store in a folder of other files: a wrong `--data-dir` (or `REDKEEP_DATA_DIR`), and
    // `redkeep init` there is refused, so it is not the way out to give.
    if let Error::NotInitialized { path } = &e
        && path.file_name() == Some(crate::STORE_FILE.as_ref())
        && let Some(dir) = path.parent()
        && let Some(others) = crate::ops::foreign_files(dir)
    {
        return Error::invalid(
            "data dir",
            format!(
                "no store at {}, and {} holds other files ({others}), so it is no redkeep data \
                 dir: give the data dir that holds {} (--data-dir or REDKEEP_DATA_DIR), or a \
                 new or empty folder to `redkeep init`",
                path.display(),
                dir.display(),
                crate::STORE_FILE
            ),
        );
    }
    if !matches!(e, Error::Unwritten { .. }) {
        return e;
    }
    match crate::handle::in_data_dir(dir, e) {
        Error::Damaged { path, reason } => cannot_be_opened(&path, &reason, ""),
        e => e,
    }
}

/// A store that could not be opened at all, said with why and the way out (`nothing`: what
/// the command therefore did not do, as the start of a sentence, or empty).
fn cannot_be_opened(path: &Path, reason: &str, nothing: &str) -> Error {
    Error::denied(format!(
        "the store{} is damaged and cannot be opened: {reason}; {nothing}{}",
        crate::error::shown_path(path),
        crate::admin::commands::status::way_out(path)
    ))
}

/// Restore and reset never go through the socket: they replace the files under the owner.
fn whole_file(dir: &Path, e: Error) -> Error {
    needs_store_alone(dir, "replaces the whole store", e)
}

/// Move, salvage and adopt read the whole file from one snapshot, with the store to
/// themselves.
fn whole_copy(dir: &Path, e: Error) -> Error {
    needs_store_alone(dir, "copies the whole store from one snapshot", e)
}

/// `e` as the refusal of a command that needs the store alone (`what` it does), in the data
/// dir `dir`: who holds it, or, when this user may not write the data dir, whose command it
/// is. (A permission refused elsewhere, a backup this user may not read, is said as it is.)
fn needs_store_alone(dir: &Path, what: &str, e: Error) -> Error {
    let dir_writable = || {
        use rustix::fs::{Access, access};
        let store = access(dir.join(crate::STORE_FILE), Access::WRITE_OK);
        // A data dir not made yet is as writable as the nearest folder that is there.
        let there = dir
            .ancestors()
            .find(|a| a.as_os_str().is_empty() || a.exists())
            .map(|a| {
                if a.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    a
                }
            })
            .unwrap_or(dir);
        access(there, Access::WRITE_OK).is_ok()
            && matches!(store, Ok(()) | Err(rustix::io::Errno::NOENT))
    };
    match e {
        Error::InUse { holder, .. } => Error::denied(format!(
            "this command {what}, so it cannot run while the store is held: {}; {}",
            who_holds(&holder),
            what_then(&holder)
        )),
        Error::ReadOnly { .. } => e,
        e if e.is_permission_denied() && crate::fsutil::on_read_only_fs(dir) => Error::ReadOnly {
            what: format!(
                "{} is on a read-only file system, so this command cannot run: it {what}; \
                 remount it read-write; nothing was changed",
                dir.display()
            ),
        },
        e if e.is_permission_denied() && !dir_writable() => Error::ReadOnly {
            what: format!(
                "{}; this command {what}: run it as the data dir's owner (a user who may \
                 write it), who may also read what it is given",
                e.full_message()
            ),
        },
        e => e,
    }
}

/// Who holds the store, from an `InUse` error, without its advice (which suggests opening
/// the store in shared mode: no help to a command that needs it alone).
fn who_holds(holder: &str) -> &str {
    holder.split(';').next().unwrap_or(holder).trim()
}

/// What to do about the holder of the store, from an `InUse` error, for a command that
/// needs it alone: another redkeep command ends by itself; an application is stopped.
fn what_then(holder: &str) -> &'static str {
    if holder.contains("a redkeep command") {
        "wait for it to finish, then run this again"
    } else {
        "stop the application first"
    }
}

/// Runs `req` in the process that holds the store, through its admin socket. `Err(code)`
/// means the owner reported a failure, already printed.
fn remote(
    cli: &Cli,
    req: &Request,
    path: PathBuf,
    holder: String,
    mut input: Option<Box<dyn BufRead>>,
    output: &mut dyn Write,
) -> Result<std::result::Result<Reply, ExitCode>> {
    let Some(owner) = admin::connect(&cli.data_dir) else {
        // A redkeep command serves no socket; an application's that does not answer is news.
        let socket = cli.data_dir.join(admin::SOCKET_FILE);
        let holder = if holder.contains("a redkeep command") {
            holder
        } else if admin::listening_without_file(&cli.data_dir) {
            format!(
                "{holder}; it serves an admin socket, but its file {} was removed (by a \
                 temp-file cleaner or by hand), so no command can reach it: restart the \
                 application to recreate it",
                socket.display()
            )
        } else if std::fs::symlink_metadata(&socket).is_err() {
            format!(
                "{holder}; there is no admin socket file {}: if the application serves one, \
                 the file was removed (by a temp-file cleaner or by hand): restart the \
                 application to recreate it",
                socket.display()
            )
        } else {
            format!("{holder}; its admin socket does not answer")
        };
        return Err(Error::InUse { path, holder });
    };
    tracing::info!(
        "the store is held by {}: the command is sent to it through {}",
        owner
            .owner_pid()
            .map_or_else(|| "another process".to_string(), |p| format!("process {p}")),
        owner.socket_path().display()
    );
    let input = input.as_mut().map(|i| i as &mut dyn Read);
    let owner = match cli.admin_timeout {
        Some(secs) => owner.say_when_slow_for(std::time::Duration::from_secs(secs)),
        None => owner.say_when_slow(),
    };
    match owner.send(req, input, output)? {
        admin::Remote::Reply(r) => Ok(Ok(r)),
        admin::Remote::Failed(message, code) => {
            // As a local run prints its error: long words and lines cut.
            say!("error: {}", render::error_line(&message));
            Ok(Err(ExitCode::from(code)))
        }
    }
}

/// Writes the reply to stdout. A reader that stopped early (`redkeep user list | head -1`)
/// is no failure, and leaves the reply's exit code as it is, unless the reply shows a
/// secret once. Any other failure (a full disk) is an error: the command's change is made
/// by then, and a secret it printed (a generated password, an invite code, an API key) was
/// not seen, so the message names it (`unseen`, from the reply) and says how to revoke or
/// replace it; a command that only reads (`reads_only`) changed nothing and printed none.
fn print(text: &str, unseen: Option<&str>, reads_only: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe && unseen.is_none() => Ok(()),
        Err(e) if reads_only => Err(Error::io("writing the output", e)),
        Err(e) => {
            // An older application over the admin socket names no secret: the general word.
            let secret =
                unseen.unwrap_or("a secret it printed, if any, was not seen: revoke or replace it");
            Err(Error::io(
                format!("writing the output (anything the command changed is kept; {secret})"),
                e,
            ))
        }
        Ok(()) => Ok(()),
    }
}

use crate::clock::Clock;

#[cfg(test)]
mod tests {
    /// A command's words for the logs: every word as typed, never a value.
    #[test]
    fn command_words_are_the_words_typed_and_no_value() {
        use clap::Parser;
        let words = |args: &[&str]| {
            let cli = super::Cli::try_parse_from(args).unwrap();
            super::command_words(&cli.command)
        };
        assert_eq!(
            words(&["redkeep", "user", "set-password", "ann", "--password-stdin"]),
            "redkeep user set-password"
        );
        assert_eq!(
            words(&["redkeep", "user", "avatar", "get", "ann"]),
            "redkeep user avatar get"
        );
        assert_eq!(words(&["redkeep", "migrate", "up"]), "redkeep migrate up");
        assert_eq!(words(&["redkeep", "stats"]), "redkeep stats");
        assert_eq!(
            words(&["redkeep", "session", "revoke", "rks_secretsecret"]),
            "redkeep session revoke"
        );
    }

    /// The store names a CLI process holding it by its command words: the commands it
    /// takes a second word for are the CLI's command groups.
    #[test]
    fn the_store_knows_the_command_groups() {
        use clap::CommandFactory;
        let mut groups: Vec<String> = super::Cli::command()
            .get_subcommands()
            .filter(|c| c.has_subcommands())
            .map(|c| c.get_name().to_string())
            .collect();
        groups.sort();
        let mut known: Vec<String> = crate::store::COMMAND_GROUPS
            .iter()
            .map(|g| g.to_string())
            .collect();
        known.sort();
        assert_eq!(groups, known);
    }
}
