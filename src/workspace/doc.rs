//! `workspace.json`: typed access to the fields redkeep knows, every other field kept as it
//! was. Numbers are kept exactly as written (integers of any size, floats digit for digit),
//! so rewriting a document never changes a value the application stored.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A user's `workspace.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceDoc {
    /// Canvas state: any JSON value.
    pub canvas: Value,
    /// Notes: usually an array, kept as whatever JSON the app stored.
    pub notes: Value,
    /// Number of pieces in the gallery.
    pub piece_count: u64,
    /// Fields redkeep does not know, in their original order, preserved on rewrite.
    pub other: Map<String, Value>,
}

impl Default for WorkspaceDoc {
    fn default() -> Self {
        WorkspaceDoc {
            canvas: Value::Null,
            notes: Value::Array(Vec::new()),
            piece_count: 0,
            other: Map::new(),
        }
    }
}

impl WorkspaceDoc {
    /// Reads a document from a JSON object.
    ///
    /// # Errors
    /// A message when it is not a JSON object or `piece_count` is not a count.
    pub fn from_map(mut map: Map<String, Value>) -> std::result::Result<Self, String> {
        let canvas = map.shift_remove("canvas").unwrap_or(Value::Null);
        let notes = map
            .shift_remove("notes")
            .unwrap_or(Value::Array(Vec::new()));
        let piece_count = match map.shift_remove("piece_count") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| format!("piece_count is {v}, not a count"))?,
        };
        Ok(WorkspaceDoc {
            canvas,
            notes,
            piece_count,
            other: map,
        })
    }

    /// Parses the bytes of a document.
    ///
    /// # Errors
    /// A message when they are not a JSON object of the right shape.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON ({e})"))?;
        match value {
            Value::Object(map) => Self::from_map(map),
            _ => Err("not a JSON object".into()),
        }
    }

    /// The document as a JSON object: `canvas`, `notes`, `piece_count`, then the other
    /// fields in their order.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("canvas".into(), self.canvas.clone());
        map.insert("notes".into(), self.notes.clone());
        map.insert("piece_count".into(), Value::from(self.piece_count));
        for (k, v) in &self.other {
            map.insert(k.clone(), v.clone());
        }
        map
    }

    /// Appends a note (turning a missing or null `notes` into an array first).
    ///
    /// # Errors
    /// `InvalidInput` when `notes` holds something other than an array.
    pub fn add_note(&mut self, note: impl Into<Value>) -> Result<()> {
        if self.notes.is_null() {
            self.notes = Value::Array(Vec::new());
        }
        match &mut self.notes {
            Value::Array(a) => {
                a.push(note.into());
                Ok(())
            }
            _ => Err(Error::invalid(
                "notes",
                "this workspace keeps notes as something other than a list",
            )),
        }
    }

    /// The number of notes (0 when `notes` is not an array).
    pub fn note_count(&self) -> usize {
        self.notes.as_array().map_or(0, Vec::len)
    }

    /// Merges the fields of `patch` into the document (the known fields included; a
    /// `piece_count` in the patch is ignored: the gallery decides it).
    ///
    /// # Errors
    /// `InvalidInput` when a known field has the wrong type.
    pub fn merge(&mut self, patch: Map<String, Value>) -> Result<()> {
        for (k, v) in patch {
            match k.as_str() {
                "canvas" => self.canvas = v,
                "notes" => self.notes = v,
                "piece_count" => {}
                _ => {
                    self.other.insert(k, v);
                }
            }
        }
        Ok(())
    }
}

impl Serialize for WorkspaceDoc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_map().serialize(s)
    }
}

impl<'de> Deserialize<'de> for WorkspaceDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        WorkspaceDoc::from_map(map).map_err(serde::de::Error::custom)
    }
}

/// How deep a document written through redkeep may nest (objects and arrays): the most
/// that serde_json reads back at its default limit, so every document written reads again.
pub const MAX_DOC_DEPTH: usize = 127;

/// How much deeper than a document the JSON wrapped around it (an export line, a request or
/// reply on the admin socket) may nest.
const WRAPPING: usize = 8;

/// Parses JSON that may wrap a document of up to [`MAX_DOC_DEPTH`] levels, which serde_json's
/// default limit would refuse: the nesting is counted first (refused beyond the document's
/// limit and its wrapping, so the parse's recursion stays bounded), then parsed without the
/// limit.
///
/// # Errors
/// A message when the text nests too deep or is not JSON of type `T`.
pub(crate) fn parse_wrapped<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> std::result::Result<T, String> {
    let depth = json_depth(bytes);
    if depth > MAX_DOC_DEPTH + WRAPPING {
        return Err(format!(
            "it nests objects and arrays {depth} levels deep; the limit is {}",
            MAX_DOC_DEPTH + WRAPPING
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.disable_recursion_limit();
    let value = T::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Follows JSON text byte by byte, telling the bytes of strings (their quotes included)
/// from the rest, without parsing.
#[derive(Default)]
struct Strings {
    open: bool,
    escaped: bool,
}

impl Strings {
    /// Whether `b`, the next byte, belongs to a string.
    fn within(&mut self, b: u8) -> bool {
        if self.open {
            match b {
                _ if self.escaped => self.escaped = false,
                b'\\' => self.escaped = true,
                b'"' => self.open = false,
                _ => {}
            }
            return true;
        }
        self.open = b == b'"';
        self.open
    }
}

/// The deepest nesting of objects and arrays in the JSON text `bytes` (0 for a scalar),
/// counted without parsing; brackets inside strings do not count.
pub(crate) fn json_depth(bytes: &[u8]) -> usize {
    json_nesting(bytes).0
}

/// [`json_depth`], and whether every object, array and string the text opens is closed
/// again (a text cut short is not).
pub(crate) fn json_nesting(bytes: &[u8]) -> (usize, bool) {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut strings = Strings::default();
    for &b in bytes {
        if strings.within(b) {
            continue;
        }
        match b {
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (deepest, depth == 0 && !strings.open)
}

/// The first `NaN`, `Infinity` or `-Infinity` outside a string in the JSON text `bytes`,
/// with its line and column (from 1; the column in bytes): tokens JSON does not allow, which
/// Python's `json.dumps` writes by default. Outside strings, JSON holds no other letters
/// than those of `true`, `false`, `null` and exponents, so any such word is that token.
pub(crate) fn non_finite_token(bytes: &[u8]) -> Option<(&'static str, usize, usize)> {
    let mut strings = Strings::default();
    let (mut line, mut line_start) = (1usize, 0usize);
    for (i, &b) in bytes.iter().enumerate() {
        if strings.within(b) {
            continue;
        }
        match b {
            b'\n' => {
                line += 1;
                line_start = i + 1;
            }
            b'N' | b'I' => {
                let rest = &bytes[i..];
                let minus = i > 0 && bytes[i - 1] == b'-';
                let token = if rest.starts_with(b"NaN") {
                    "NaN"
                } else if rest.starts_with(b"Infinity") {
                    if minus { "-Infinity" } else { "Infinity" }
                } else {
                    continue;
                };
                let start = if token.starts_with('-') { i - 1 } else { i };
                return Some((token, line, start - line_start + 1));
            }
            _ => {}
        }
    }
    None
}

/// Refuses a document (`what`, for the message) nested deeper than [`MAX_DOC_DEPTH`].
pub(crate) fn within_depth(what: &'static str, bytes: &[u8]) -> Result<()> {
    let depth = json_depth(bytes);
    if depth > MAX_DOC_DEPTH {
        return Err(Error::invalid(
            what,
            format!(
                "it nests objects and arrays {depth} levels deep; the limit is {MAX_DOC_DEPTH}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn depth_counts_objects_and_arrays_but_not_brackets_in_strings() {
        assert_eq!(super::json_depth(b"1"), 0);
        assert_eq!(super::json_depth(br#"{"a": [1, {"b": []}]}"#), 4);
        assert_eq!(super::json_depth(br#"["[[[", "\"[[", {"k\\": "]]]"}]"#), 2);
        assert_eq!(super::json_depth(br#"[[1], [[2]]]"#), 3);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(super::json_depth(deep.as_bytes()), 200);
        // Past the document's limit and its wrapping: refused before parsing.
        let err = super::parse_wrapped::<Value>(deep.as_bytes()).unwrap_err();
        assert!(err.contains("200 levels deep"), "{err}");
        let ok = format!("{}{}", "[".repeat(130), "]".repeat(130));
        assert!(super::parse_wrapped::<Value>(ok.as_bytes()).is_ok());
        assert!(super::parse_wrapped::<Value>(b"[1] x").is_err());
    }

    use super::*;

    #[test]
    fn unknown_numbers_survive_rewrites_exactly() {
        let text = br#"{"v":92233720368547775808,"f":9.223372036854777e+19,"g":0.1,"h":-0,"canvas":{"z":1e400},"notes":[],"piece_count":2}"#;
        let mut doc = WorkspaceDoc::parse(text).unwrap();
        for _ in 0..3 {
            let bytes = serde_json::to_vec(&doc).unwrap();
            doc = WorkspaceDoc::parse(&bytes).unwrap();
        }
        let out = String::from_utf8(serde_json::to_vec(&doc).unwrap()).unwrap();
        for exact in [
            "92233720368547775808",
            "9.223372036854777e+19",
            "0.1",
            "\"h\":-0",
            // The same value; serde_json spells the exponent's sign, once and for good.
            "1e+400",
        ] {
            assert!(out.contains(exact), "{exact} in {out}");
        }
        assert_eq!(doc.piece_count, 2);
    }

    #[test]
    fn non_finite_tokens_are_found_outside_strings_only() {
        assert_eq!(super::non_finite_token(br#"{"a": 1}"#), None);
        assert_eq!(super::non_finite_token(br#"{"NaN": "Infinity"}"#), None);
        assert_eq!(
            super::non_finite_token(b"{\"a\": [0.5, NaN]}"),
            Some(("NaN", 1, 13))
        );
        assert_eq!(
            super::non_finite_token(b"{\"s\": \"\\\"\",\n \"x\": -Infinity}"),
            Some(("-Infinity", 2, 7))
        );
    }

    #[test]
    fn malformed_documents_are_refused() {
        assert!(WorkspaceDoc::parse(b"[1]").is_err());
        assert!(WorkspaceDoc::parse(br#"{"piece_count":"three"}"#).is_err());
        assert!(WorkspaceDoc::parse(b"{").is_err());
    }
}
