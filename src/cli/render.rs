//! Rendering of replies: aligned tables for people, one JSON document for scripts.

use std::io::Write;

use crate::admin::{Human, Reply};

/// Renders a reply for stdout: pretty JSON with `json`, else its lines or an aligned table.
pub fn render(reply: &Reply, json: bool) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(&reply.json).unwrap_or_default();
        s.push('\n');
        return s;
    }
    match &reply.human {
        Human::Text(lines) => lines.iter().map(|l| format!("{l}\n")).collect(),
        Human::Table {
            headers,
            rows,
            footer,
        } => {
            let mut out = table(headers, rows);
            for l in footer {
                out.push_str(l);
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
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers);
    for row in rows {
        out.push_str(&line(row));
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
}
