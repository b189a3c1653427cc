//! Live administration: the command set of `redkeep` as plain data, the one function that
//! executes a command against a [`Redkeep`] handle, and the admin socket that lets the CLI run
//! those commands inside an application that holds the store exclusively.
//!
//! A command is parsed (by the CLI, with clap when the `cli` feature is on) into a
//! [`Request`] and executed by [`execute`], locally or in the owning process through the
//! socket: one code path, identical output. Commands that stream (export, import, gallery
//! add) read from an input stream and write raw output to a sink, which the socket carries in
//! chunks, so memory stays flat either way.
//!
//! An application turns the socket on in one line; it stops when the guard is dropped:
//!
//! ```no_run
//! # fn main() -> redkeep::Result<()> {
//! let rk = redkeep::Redkeep::open("./redkeep-data", redkeep::Options::default())?;
//! let _admin = redkeep::admin::serve(&rk)?;
//! # Ok(()) }
//! ```

mod client;
pub mod commands;
mod protocol;
mod reply;
mod server;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use client::{Connection, Remote, connect, reachable};
pub use commands::Command;
pub use reply::{Human, Reply};
pub use server::{AdminServer, SOCKET_FILE, serve};

use crate::auth::token::Secret;
use crate::{Error, Redkeep, Result};

/// A parsed command with the secret it read from stdin, if any. This is what the admin
/// socket carries (the secret only over that trusted channel, never in `Debug`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// A password or token read from stdin.
    #[serde(with = "crate::auth::token::wire")]
    pub secret: Option<Secret>,
}

impl Request {
    /// A request without a secret.
    pub fn new(command: Command) -> Request {
        Request {
            command,
            secret: None,
        }
    }

    fn secret(&self, flag: &str) -> Result<&str> {
        self.secret
            .as_ref()
            .map(Secret::expose)
            .ok_or_else(|| Error::invalid("stdin", format!("{flag} needs the secret on stdin")))
    }
}

/// Shows progress of long commands (a bar on a terminal in the CLI; nothing in the socket
/// server).
pub trait Feedback {
    /// Starts a task; `total` is the expected count when known. The meter ends when dropped.
    fn start(&self, message: &str, total: Option<u64>) -> Box<dyn Meter + '_>;
}

/// The progress of one task.
pub trait Meter {
    /// Sets the count done.
    fn set(&self, done: u64);
}

/// Feedback that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Feedback for Quiet {
    fn start(&self, _message: &str, _total: Option<u64>) -> Box<dyn Meter + '_> {
        Box::new(Quiet)
    }
}

impl Meter for Quiet {
    fn set(&self, _done: u64) {}
}

/// What a command reads and writes besides its arguments: an input stream (the import file,
/// the piece of `gallery add`, …; empty when the command reads nothing) and a sink for raw
/// output (the lines of `export`).
pub struct Io<'a> {
    /// The command's input.
    pub input: &'a mut dyn BufRead,
    /// Raw output, written as it is produced.
    pub output: &'a mut dyn Write,
    /// Progress.
    pub feedback: &'a dyn Feedback,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").finish_non_exhaustive()
    }
}

/// Runs one request against an open handle: the one execution path of every command, local
/// or through the admin socket.
///
/// # Errors
/// The command's error, as the CLI prints it.
pub fn execute(rk: &Redkeep, req: &Request, io: Io<'_>) -> Result<Reply> {
    commands::run(rk, req, io)
}

/// The largest input a command reads from stdin or a file that is not an import.
pub const MAX_INPUT_BYTES: u64 = crate::workspace::DEFAULT_MAX_DOC_BYTES;

/// Reads at most `cap` bytes of `input` as UTF-8 text.
pub(crate) fn read_text(input: &mut dyn BufRead, what: &str, cap: u64) -> Result<String> {
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(input, cap + 1), &mut buf)
        .map_err(|e| Error::io(format!("reading {what}"), e))?;
    if buf.len() as u64 > cap {
        return Err(Error::invalid(
            "input",
            format!("{what} is larger than {cap} bytes"),
        ));
    }
    String::from_utf8(buf).map_err(|_| Error::invalid("input", format!("{what} is not UTF-8 text")))
}

/// A path sent to the owner, made absolute on the client side (the owner may run elsewhere).
pub(crate) fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(format!("resolving {}", path.display()), e))
}
