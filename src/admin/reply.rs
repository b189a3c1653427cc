//! What a command produced, before rendering: a JSON document for `--json` and a human form
//! (lines or a table). It travels over the admin socket as it is; the CLI renders it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::users::User;

/// What a command produced. A reply that shows a secret once (`unseen` is set) keeps it out
/// of its `Debug` form.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The machine form, printed with `--json`.
    pub json: Value,
    /// The human form.
    pub human: Human,
    /// The process exit code (0 ok, 1 failure such as a failed check).
    pub exit_code: u8,
    /// Whether the command wrote its result to the raw output (an export): then nothing else
    /// goes to stdout.
    #[serde(default)]
    pub raw: bool,
    /// When the command failed (exit code 1) though it produced a reply: the one line the
    /// CLI prints on stderr, saying what failed (the reply itself shows the details).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Lines the human form prints on stderr, not stdout: what a command says about the
    /// secret it prints, so that stdout holds the secret alone (`tok=$(redkeep login …)`).
    /// `--json` shows neither: its document says the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// For a reply that shows a secret once: which one it is and how to revoke or replace
    /// it (`the api key rkk_… was not seen: revoke it with …`), said when stdout cannot be
    /// written. Never the secret itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseen: Option<String>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Reply");
        if self.unseen.is_some() {
            d.field("json", &"<holds a secret shown once>")
                .field("human", &"<holds a secret shown once>");
        } else {
            d.field("json", &self.json).field("human", &self.human);
        }
        d.field("exit_code", &self.exit_code)
            .field("raw", &self.raw)
            .field("failure", &self.failure)
            .field("notes", &self.notes)
            .field("unseen", &self.unseen)
            .finish()
    }
}

impl Reply {
    /// Wipes the text of a reply that shows a secret once (the owner does, once it sent
    /// it); other replies are left as they are.
    pub(crate) fn wipe_secret(&mut self) {
        use zeroize::Zeroize;
        if self.unseen.is_none() {
            return;
        }
        wipe(&mut self.json);
        match &mut self.human {
            Human::Text(lines) => lines.iter_mut().for_each(Zeroize::zeroize),
            Human::Table {
                headers,
                rows,
                footer,
            } => headers
                .iter_mut()
                .chain(rows.iter_mut().flatten())
                .chain(footer.iter_mut())
                .for_each(Zeroize::zeroize),
        }
    }
}

/// Wipes the text of every string in `value` (keys are names, not secrets).
fn wipe(value: &mut Value) {
    use zeroize::Zeroize;
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(fields) => fields.values_mut().for_each(wipe),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The human form of a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Human {
    /// Lines of text.
    Text(Vec<String>),
    /// A table: headers and rows, then lines of text after it.
    Table {
        /// Column titles.
        headers: Vec<String>,
        /// Cells, row by row.
        rows: Vec<Vec<String>>,
        /// Text printed after the table.
        footer: Vec<String>,
    },
}

impl Reply {
    /// A reply shown as lines of text.
    pub fn text(json: Value, lines: Vec<String>) -> Reply {
        Reply {
            json,
            human: Human::Text(lines),
            exit_code: 0,
            raw: false,
            failure: None,
            notes: Vec::new(),
            unseen: None,
        }
    }

    /// A reply shown as a table.
    pub fn table(json: Value, headers: &[&str], rows: Vec<Vec<String>>) -> Reply {
        Reply {
            json,
            human: Human::Table {
                headers: headers.iter().map(|h| h.to_string()).collect(),
                rows,
                footer: Vec::new(),
            },
            exit_code: 0,
            raw: false,
            failure: None,
            notes: Vec::new(),
            unseen: None,
        }
    }

    /// Marks the reply as a failure: exit code 1, and `line` on stderr (what failed and
    /// what to do; the reply's own lines show the details).
    pub fn failed(mut self, line: impl Into<String>) -> Reply {
        self.exit_code = 1;
        self.failure = Some(line.into());
        self
    }

    /// A reply that shows a secret once: `lines` (the secret, or one per line) alone on
    /// stdout, `notes` on stderr, and `unseen` (which secret, and how to revoke or replace
    /// it) in the error when stdout cannot be written.
    pub fn secret(
        json: Value,
        lines: Vec<String>,
        notes: Vec<String>,
        unseen: impl Into<String>,
    ) -> Reply {
        let mut reply = Reply::text(json, lines);
        reply.notes = notes;
        reply.unseen = Some(unseen.into());
        reply
    }

    /// Adds a line after the table or text.
    pub fn footer(mut self, line: impl Into<String>) -> Reply {
        match &mut self.human {
            Human::Text(lines) => lines.push(line.into()),
            Human::Table { footer, .. } => footer.push(line.into()),
        }
        self
    }
}

/// Shows an optional value, or `-`.
pub fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |x| x.to_string())
}

/// `n` and `noun`, with an `s` unless `n` is 1: `1 API key`, `2 API keys`.
pub fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Shows a flag as `yes` / `no`.
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// The JSON form of a user (a `User` holds no secret material).
pub(crate) fn user_json(u: &User) -> Value {
    serde_json::to_value(u).unwrap_or_default()
}

/// `value` as pretty JSON, one reply line per line. Each line of a text reply is shown as one
/// line (a line break inside it is shown, not obeyed), so multi-line output is given as
/// lines; pretty JSON writes a line break inside a string as `\n`, so no value can add one.
pub(crate) fn pretty_json_lines(value: &Value) -> Vec<String> {
    serde_json::to_string_pretty(value)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply showing a secret once keeps it out of `Debug` (a log line, a test failure);
    /// any other reply shows what it holds.
    #[test]
    fn the_debug_form_of_a_reply_with_a_secret_leaves_it_out() {
        let token = "rks_0123456789abcdef";
        let mut shown = Reply::text(serde_json::json!({ "token": token }), vec![token.into()]);
        assert!(format!("{shown:?}").contains(token));
        shown.unseen = Some("the token of session x was not seen".into());
        let debug = format!("{shown:?}");
        assert!(!debug.contains(token), "{debug}");
        assert!(debug.contains("was not seen"), "{debug}");
    }
}
