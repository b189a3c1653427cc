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

    /// The secrets of `flags`, one a line of what stdin gave, in that order (see
    /// [`stdin_lines`]); none for no flag.
    pub(crate) fn lines(&self, flags: &[&str]) -> Result<Vec<&str>> {
        if flags.is_empty() {
            return Ok(Vec::new());
        }
        stdin_lines(self.secret(&flags.join(" with "))?, flags)
    }
}

/// Splits `text`, what stdin gave, into the secrets of `flags` (the flags that asked for
/// them): one a line, in that order, without line endings; lines past them are ignored.
///
/// # Errors
/// `InvalidInput` for a line missing or empty, saying which line should hold what.
pub(crate) fn stdin_lines<'a>(text: &'a str, flags: &[&str]) -> Result<Vec<&'a str>> {
    let mut lines = text.lines();
    let mut out = Vec::with_capacity(flags.len());
    for n in 0..flags.len() {
        match lines.next() {
            Some(line) if !line.is_empty() => out.push(line),
            found => {
                let state = if found.is_some() { "empty" } else { "missing" };
                return Err(Error::invalid("stdin", missing_line(flags, n, state)));
            }
        }
    }
    Ok(out)
}

/// What a secret's flag asks for, in words.
fn asks_for(flag: &str) -> &'static str {
    match flag {
        "--invite-stdin" => "the invite code",
        "--password-stdin" | "--admin-password-stdin" => "the password",
        "--token-stdin" => "the token",
        "--key-stdin" => "the key",
        _ => "the secret",
    }
}

/// The refusal of stdin whose line `n` (from 0) of the secrets of `flags` is `state`
/// (missing or empty).
fn missing_line(flags: &[&str], n: usize, state: &str) -> String {
    const NTH: [&str; 3] = ["first", "second", "third"];
    let nth = |i: usize| NTH.get(i).copied().unwrap_or("next");
    if let [flag] = flags {
        return format!(
            "{flag} expects {} on the first line of stdin, which is {state}",
            asks_for(flag)
        );
    }
    let order = flags
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{} on the {}", asks_for(f), nth(i)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} read one secret a line from stdin: {order}; the {} line ({}) is {state}",
        flags.join(" with "),
        nth(n),
        asks_for(flags[n])
    )
}

/// Refuses a `--limit` of 0. Every command with `--limit` means by it "at most this many",
/// and 0 would show nothing: it is refused alike everywhere (leaving `--limit` out gives the
/// command's default).
///
/// # Errors
/// `InvalidInput` for 0.
pub(crate) fn check_limit(limit: u64) -> Result<()> {
    if limit == 0 {
        return Err(Error::invalid(
            "limit",
            "0 shows nothing; give at least 1, or leave --limit out for the default",
        ));
    }
    Ok(())
}

/// Clap's check of `--limit`: a whole number of at least 1 ([`check_limit`]); a bad one is a
/// usage error (exit 2).
#[cfg(feature = "cli")]
pub(crate) fn limit_arg<T: std::str::FromStr>(text: &str) -> std::result::Result<T, String> {
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number; give at least 1"))?;
    check_limit(n).map_err(|e| match e {
        Error::InvalidInput { reason, .. } => reason,
        e => e.to_string(),
    })?;
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is too large"))
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
    let d = match humantime::parse_duration(text.trim()) {
        Ok(d) => d,
        // A duration all the same, too long to count: refused as one over the bound is.
        Err(humantime::DurationError::NumberOverflow) => std::time::Duration::MAX,
        Err(_) => {
            return Err(Error::invalid(
                field,
                format!("{text:?} is not a duration; write it like 30s, 12h, 7d or 1h 30m"),
            ));
        }
    };
    crate::clock::lifetime(field, d)
}

/// The operator's view of a refused login or password check. The library answers every
/// failure alike, so that a client cannot learn which accounts are disabled or locked; the
/// operator, who can read every account anyway, is told when the account could not log in
/// whatever the password, and how to let it. Other errors, and refusals of accounts that can
/// log in (a wrong password, no such account), are returned as they are.
pub(crate) fn why_refused(rk: &crate::Redkeep, login: &str, e: Error) -> Error {
    if !matches!(e, Error::Unauthorized) {
        return e;
    }
    let Ok(u) = rk.users().find(login) else {
        return e;
    };
    if !u.is_active {
        return Error::denied(format!(
            "user {id} is disabled, so no password logs in (the password was not checked); \
             `redkeep user enable {id}` lets it log in again",
            id = u.id
        ));
    }
    let Ok(l) = rk.users().lockout(u.id) else {
        return e;
    };
    let now = rk.now();
    if let Some(until) = l.locked_until.filter(|&t| now < t) {
        return Error::denied(format!(
            "user {id} is locked until {until} after repeated failed logins, so no password \
             logs in until then; `redkeep user unlock {id}` lifts the lock",
            id = u.id
        ));
    }
    if l.failures_in_window >= rk.options().lockout.max_failures_per_hour {
        return Error::denied(format!(
            "user {id} has had {n} failed logins this hour, the most an hour allows, so no \
             password logs in until the hour is over; `redkeep user unlock {id}` clears the \
             count",
            id = u.id,
            n = l.failures_in_window
        ));
    }
    e
}

/// A revoke run again: the outcome of `revoke`, or, when it was refused (`Denied`) and
/// `find` shows the thing revoked already, that thing and `true`. A second revoke reaches
/// the state asked for, so it succeeds and a runbook can run it again; other refusals stand.
pub(crate) fn revoked_once<T>(
    revoke: Result<T>,
    find: impl FnOnce() -> Result<T>,
    is_revoked: impl Fn(&T) -> bool,
) -> Result<(T, bool)> {
    match revoke {
        Ok(t) => Ok((t, false)),
        Err(e @ Error::Denied { .. }) => match find()? {
            t if is_revoked(&t) => Ok((t, true)),
            _ => Err(e),
        },
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::stdin_lines;

    #[test]
    fn secrets_come_one_a_line_in_the_order_of_their_flags() {
        let flags = ["--invite-stdin", "--password-stdin"];
        assert_eq!(
            stdin_lines("rki_x\r\npass word\nignored", &flags).unwrap(),
            ["rki_x", "pass word"]
        );
        for (text, says) in [
            ("rki_x", "the second line (the password) is missing"),
            ("rki_x\n\n", "the second line (the password) is empty"),
            ("\npass", "the first line (the invite code) is empty"),
        ] {
            let e = stdin_lines(text, &flags).unwrap_err().to_string();
            assert!(
                e.contains(says) && !e.contains("pass word"),
                "{text:?}: {e}"
            );
        }
        let e = stdin_lines("", &["--key-stdin"]).unwrap_err().to_string();
        assert!(
            e.contains("--key-stdin expects the key on the first line"),
            "{e}"
        );
    }
}
