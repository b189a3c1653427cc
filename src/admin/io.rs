//! What a command reads and writes besides its arguments, and how it shows progress.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use crate::{Error, Result};

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

/// The largest input a command reads from stdin or a file that is not an import.
pub const MAX_INPUT_BYTES: u64 = crate::workspace::DEFAULT_MAX_DOC_BYTES;

/// Reads at most `cap` bytes of `input`.
pub(crate) fn read_bytes(input: &mut dyn BufRead, what: &str, cap: u64) -> Result<Vec<u8>> {
    read_capped(input, what, cap, "")
}

/// Reads at most `cap` bytes of `input`; more is refused, saying `raise` (how to raise the
/// cap, if it can be: `; raise it with …`, or empty).
fn read_capped(input: &mut dyn BufRead, what: &str, cap: u64, raise: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(input, cap.saturating_add(1)),
        &mut buf,
    )
    .map_err(|e| Error::io(format!("reading {what}"), e))?;
    if buf.len() as u64 > cap {
        return Err(Error::invalid(
            "input",
            format!("{what} is larger than {cap} bytes{raise}"),
        ));
    }
    Ok(buf)
}

/// Reads at most `cap` bytes of `input` as UTF-8 text.
pub(crate) fn read_text(input: &mut dyn BufRead, what: &str, cap: u64) -> Result<String> {
    read_text_raising(input, what, cap, "")
}

/// [`read_text`] of a workspace file, whose `cap` is the store's size limit for them; more is
/// refused with `raise` (how to raise that limit).
pub(crate) fn read_text_raising(
    input: &mut dyn BufRead,
    what: &str,
    cap: u64,
    raise: &str,
) -> Result<String> {
    let raise = if raise.is_empty() {
        String::new()
    } else {
        format!(", the limit for workspace files; raise it with {raise}")
    };
    let buf = read_capped(input, what, cap, &raise)?;
    String::from_utf8(buf).map_err(|_| Error::invalid("input", format!("{what} is not UTF-8 text")))
}

/// A path sent to the owner, made absolute on the client side (the owner may run elsewhere).
pub(crate) fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(format!("resolving {}", path.display()), e))
}
