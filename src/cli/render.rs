//! Rendering of replies: aligned tables for people, one JSON document for scripts.

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
