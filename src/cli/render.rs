//! Rendering of command results: aligned tables for people, one JSON document for scripts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a command produced, before rendering. Travels over the admin socket as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The machine form, printed with `--json`.
    pub json: Value,
    /// The human form.
    pub human: Human,
    /// The process exit code (0 ok, 1 failure such as a failed check).
    pub exit_code: u8,
    /// Output printed as it is in both modes (an export's JSON lines).
    #[serde(default)]
    pub raw: Option<String>,
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
            raw: None,
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
            raw: None,
        }
    }

    /// Renders for stdout.
    pub fn render(&self, json: bool) -> String {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        if json {
            let mut s = serde_json::to_string_pretty(&self.json).unwrap_or_default();
            s.push('\n');
            return s;
        }
        match &self.human {
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

/// Shows an optional value, or `-`.
pub fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |x| x.to_string())
}

/// Shows a flag as `yes` / `no`.
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(r.render(false), "id  email\n1   a@b.co\n10  c@d.co\n");
    }
}
