//! Rendering of replies: aligned tables for people, one JSON document for scripts. What a
//! user stored is shown, never obeyed: control characters (a terminal escape sequence) and
//! invisible or direction-changing characters are written as `\u{…}`, and columns are
//! aligned by display width, so CJK text keeps its columns straight.

use std::borrow::Cow;

use unicode_width::UnicodeWidthStr;

use std::io::Write;

use crate::admin::{Human, Reply};

/// Characters that change how text shows without showing themselves: controls, the line
/// and paragraph separators, and the invisible and direction-changing ones.
fn hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || crate::bytes::invisible(c)
}

/// `text` with every hidden character written out as `\u{…}`.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// An error message for stderr: hidden characters written out, and a long input repeated
/// in it (a 100,000-character email, say) cut to its first 60 and last 40 characters (a
/// long path keeps its file name), so the advice after it stays in sight. A message still
/// over 2,000 characters keeps its start and end.
pub fn error_line(message: &str) -> String {
    const WORD: usize = 120;
    const HEAD: usize = 60;
    const TAIL: usize = 40;
    let shown = printable(message);
    let mut out = String::with_capacity(shown.len().min(4096));
    for (i, word) in shown.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let n = word.chars().count();
        if n > WORD {
            out.extend(word.chars().take(HEAD));
            out.push('…');
            out.extend(word.chars().skip(n - TAIL));
        } else {
            out.push_str(word);
        }
    }
    let chars = out.chars().count();
    if chars > 2000 {
        let head: String = out.chars().take(1200).collect();
        let tail: String = out.chars().skip(chars - 600).collect();
        return format!("{head} … {tail}");
    }
    out
}

/// Renders a reply for stdout: pretty JSON with `json`, else its lines or an aligned table.
pub fn render(reply: &Reply, json: bool) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(&reply.json).unwrap_or_default();
        s.push('\n');
        return s;
    }
    match &reply.human {
        // One line each: a line break inside one (from a stored value) is shown, not obeyed,
        // so a value cannot add a line that looks like the command's own.
        Human::Text(lines) => lines
            .iter()
            .map(|l| format!("{}\n", printable(l)))
            .collect(),
        Human::Table {
            headers,
            rows,
            footer,
        } => {
            let mut out = table(headers, rows);
            for l in footer {
                out.push_str(&printable(l));
                out.push('\n');
            }
            out
        }
    }
}

/// A writer that pretty-prints each JSON line passing through it (lines that are not JSON
/// pass as they are), for raw output meant for people. Holds one line at a time.
pub struct PrettyLines<W: Write> {
    inner: W,
    line: Vec<u8>,
}

impl<W: Write> PrettyLines<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        PrettyLines {
            inner,
            line: Vec::new(),
        }
    }

    fn emit(&mut self) -> std::io::Result<()> {
        match serde_json::from_slice::<serde_json::Value>(&self.line) {
            Ok(v) => {
                serde_json::to_writer_pretty(&mut self.inner, &v)?;
                self.inner.write_all(b"\n")?;
            }
            Err(_) => {
                self.inner.write_all(&self.line)?;
                self.inner.write_all(b"\n")?;
            }
        }
        self.line.clear();
        Ok(())
    }
}

impl<W: Write> Write for PrettyLines<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..at]);
            self.emit()?;
            rest = &rest[at + 1..];
        }
        self.line.extend_from_slice(rest);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            self.emit()?;
        }
        self.inner.flush()
    }
}

/// Formats rows as columns padded to their widest cell.
fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_string();
    }
    let shown: Vec<Vec<Cow<'_, str>>> = std::iter::once(headers)
        .chain(rows.iter().map(Vec::as_slice))
        .map(|r| r.iter().map(|c| printable(c)).collect())
        .collect();
    let mut widths: Vec<usize> = vec![0; headers.len()];
    for row in &shown {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.width());
            }
        }
    }
    let mut out = String::new();
    for row in &shown {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.push_str(&" ".repeat(w.saturating_sub(cell.width())));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn json_lines_are_pretty_printed_one_at_a_time() {
        let mut p = PrettyLines::new(Vec::new());
        p.write_all(b"{\"key\":\"1\",\"rec").unwrap();
        p.write_all(b"ord\":{\"a\":1}}\nnot json\n").unwrap();
        p.flush().unwrap();
        let text = String::from_utf8(p.inner).unwrap();
        assert_eq!(
            text,
            "{\n  \"key\": \"1\",\n  \"record\": {\n    \"a\": 1\n  }\n}\nnot json\n"
        );
    }

    #[test]
    fn long_inputs_in_errors_are_cut_and_the_advice_kept() {
        let long = "a".repeat(100_000);
        let line = error_line(&format!(
            "invalid email: {long}@example.com is not an address; give one like ann@example.com"
        ));
        assert!(line.len() < 300, "{}", line.len());
        let cut = format!("{}…{}@example.com", "a".repeat(60), "a".repeat(28));
        assert!(
            line.starts_with(&format!("invalid email: {cut} ")),
            "{line}"
        );
        assert!(line.ends_with("give one like ann@example.com"), "{line}");
        // A long path keeps its file name.
        let path = format!("/srv/{}/piece_000042.json", "deep/".repeat(40));
        let line = error_line(&format!("{path} is damaged: not JSON"));
        assert!(line.contains("piece_000042.json is damaged"), "{line}");
        // Many long words, and one long run of short ones: the start and end stay.
        let many = format!("start {}end", "word ".repeat(10_000));
        let line = error_line(&many);
        assert!(
            line.starts_with("start word") && line.ends_with("word end"),
            "{line}"
        );
        assert!(line.chars().count() < 2000);
        assert_eq!(error_line("short \u{1b} one"), "short \\u{1b} one");
        assert_eq!(error_line("an escape \u{1b}"), "an escape \\u{1b}");
        assert_eq!(printable("a\u{2028}b\u{34f}c"), "a\\u{2028}b\\u{34f}c");
        assert_eq!(error_line("bell \u{7}"), "bell \\u{7}");
    }

    #[test]
    fn tables_align_columns() {
        let r = Reply::table(
            Value::Null,
            &["id", "email"],
            vec![
                vec!["1".into(), "a@b.co".into()],
                vec!["10".into(), "c@d.co".into()],
            ],
        );
        assert_eq!(render(&r, false), "id  email\n1   a@b.co\n10  c@d.co\n");
    }

    #[test]
    fn wide_characters_keep_columns_and_escapes_are_shown_not_obeyed() {
        let r = Reply::table(
            Value::Null,
            &["name", "id"],
            vec![
                vec!["山田太郎".into(), "1".into()],
                vec!["ann".into(), "2".into()],
                vec!["\u{1b}[31mred".into(), "3".into()],
                vec!["evil\u{202e}txt".into(), "4".into()],
            ],
        );
        assert_eq!(
            render(&r, false),
            "name             id\n山田太郎         1\nann              2\n\\u{1b}[31mred    3\nevil\\u{202e}txt  4\n"
        );
        let t = Reply::text(Value::Null, vec!["role \u{1b}]0;pwned\u{7}".into()]);
        assert_eq!(render(&t, false), "role \\u{1b}]0;pwned\\u{7}\n");
        let t = Reply::text(Value::Null, vec!["description: x\nstatus: admin".into()]);
        assert_eq!(render(&t, false), "description: x\\u{a}status: admin\n");
    }
}
