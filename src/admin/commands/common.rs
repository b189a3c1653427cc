//! Helpers shared by the commands.

use crate::auth::token::Secret;
use crate::error::{Error, Result};

/// The secret a command read from stdin, if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stdin<'a>(pub(crate) Option<&'a Secret>);

impl Stdin<'_> {
    /// The secret, or an error naming the `flag` that needs it.
    pub(crate) fn secret(&self, flag: &str) -> Result<&str> {
        self.0
            .map(Secret::expose)
            .ok_or_else(|| Error::invalid("stdin", format!("{flag} needs the secret on stdin")))
    }
}

/// Clap's check of a duration argument: a bad one is a usage error (exit 2) with the
/// sentence [`parse_duration`] gives; the text is kept as written (it travels to a running
/// application's admin socket as it is).
#[cfg(feature = "cli")]
pub(crate) fn duration_arg(text: &str) -> std::result::Result<String, String> {
    match parse_duration("duration", text) {
        Ok(_) => Ok(text.to_string()),
        Err(crate::Error::InvalidInput { reason, .. }) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a duration argument (`7d`, `12h`) for `field`, within the lifetime bounds.
pub(crate) fn parse_duration(field: &'static str, text: &str) -> Result<std::time::Duration> {
    let d = crate::clock::parse_duration(text).ok_or_else(|| {
        Error::invalid(
            field,
            format!("{text:?} is not a duration; write it like 30s, 12h, 7d or 1h 30m"),
        )
    })?;
    crate::clock::lifetime(field, d)
}
