//! Keys as text: the form `redkeep inspect` prints keys and index entries in, and reads back
//! from an operator (`get TABLE KEY`, `--after KEY`, `--prefix VALUE`).
//!
//! A key is one or more parts separated by commas. A part is a number (an 8-byte unsigned
//! integer, as ids are stored), `+N` or `-N` (a signed one), an RFC 3339 time (a signed
//! integer of Unix seconds, as timestamps are indexed), `true` / `false` (one byte), `0x…`
//! (bytes as they are), a JSON string in double quotes, or any other text. Key bytes carry no
//! types, so printing reads them by the table's key length (ids for 8 and 16 bytes, hex for
//! other fixed lengths) or, for keys of varying length and index entries, by their look; what
//! is printed always parses back to the same bytes, and anything that would not is printed as
//! `0x` and hex.

use super::key::{Key, KeyPart};
use crate::bytes::{hex, unhex};
use crate::clock::Timestamp;

/// The last instant shown as a time (2100-01-01): larger signed integers are shown as `+N`.
const LAST_TIME: i64 = 4_102_444_800;

/// One part of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// An 8-byte big-endian unsigned integer.
    Unsigned(u64),
    /// An 8-byte signed integer, its sign bit flipped (timestamps).
    Signed(i64),
    /// One byte, 0 or 1.
    Bool(bool),
    /// A string: escaped, ended by `0x00 0x00` unless it ends a prefix.
    Text(String),
    /// Bytes as they are.
    Raw(Vec<u8>),
}

impl Part {
    fn put(&self, out: &mut Vec<u8>, last_of_prefix: bool) {
        match self {
            Part::Unsigned(n) => n.put(out),
            Part::Signed(n) => n.put(out),
            Part::Bool(b) => b.put(out),
            Part::Text(s) if last_of_prefix => {
                // Without its terminator, a string matches every string it begins.
                for &b in s.as_bytes() {
                    out.push(b);
                    if b == 0 {
                        out.push(0xFF);
                    }
                }
            }
            Part::Text(s) => s.put(out),
            Part::Raw(b) => out.extend_from_slice(b),
        }
    }

    fn show(&self) -> String {
        match self {
            Part::Unsigned(n) => n.to_string(),
            Part::Signed(n) if (0..=LAST_TIME).contains(n) => Timestamp(*n).to_string(),
            Part::Signed(n) => format!("{n:+}"),
            Part::Bool(b) => b.to_string(),
            Part::Text(s) if read_part(s) == *self && plain(s) => s.clone(),
            Part::Text(s) => serde_json::Value::String(s.clone()).to_string(),
            Part::Raw(b) => format!("0x{}", hex(b)),
        }
    }
}

// Whether text can stand unquoted between commas.
fn plain(s: &str) -> bool {
    !s.is_empty() && !s.contains([',', '"']) && s.trim() == s
}

fn looks_like_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 11 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

/// Reads one unquoted part by its look.
fn read_part(s: &str) -> Part {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    match s {
        "true" => return Part::Bool(true),
        "false" => return Part::Bool(false),
        _ => {}
    }
    if let Some(bytes) = s.strip_prefix("0x").and_then(unhex) {
        return Part::Raw(bytes);
    }
    if digits(s)
        && let Ok(n) = s.parse()
    {
        return Part::Unsigned(n);
    }
    if (s.starts_with('+') || s.starts_with('-'))
        && digits(&s[1..])
        && let Ok(n) = s.parse()
    {
        return Part::Signed(n);
    }
    if looks_like_time(s)
        && let Some(t) = Timestamp::parse(s)
    {
        return Part::Signed(t.0);
    }
    Part::Text(s.to_string())
}

/// Splits text into parts at commas outside double quotes; quoted parts are JSON strings.
fn split(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        if trimmed.starts_with('"') {
            let end = closing_quote(trimmed)
                .ok_or_else(|| format!("{text:?} has a quote that is not closed"))?;
            let s: String = serde_json::from_str(&trimmed[..=end])
                .map_err(|e| format!("{text:?} has a malformed quoted part ({e})"))?;
            parts.push(Part::Text(s));
            let after = trimmed[end + 1..].trim_start();
            match after.strip_prefix(',') {
                Some(r) => rest = r,
                None if after.is_empty() => return Ok(parts),
                None => return Err(format!("{text:?}: expected a comma after a quoted part")),
            }
        } else {
            let (part, more) = match rest.split_once(',') {
                Some((p, m)) => (p, Some(m)),
                None => (rest, None),
            };
            parts.push(read_part(part.trim()));
            match more {
                Some(m) => rest = m,
                None => return Ok(parts),
            }
        }
    }
}

// The index of the quote that closes the JSON string starting `s`.
fn closing_quote(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn encode(parts: &[Part], prefix: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        p.put(&mut out, prefix && i + 1 == parts.len());
    }
    out
}

/// Reads key bytes as parts by their look (types are not stored): a printable string where
/// one is, else an 8-byte integer, else a flag byte, else raw bytes.
fn guess_parts(bytes: &[u8]) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest[0] != 0 {
            let mut input = rest;
            if let Some(s) = String::take(&mut input)
                && !s.chars().any(char::is_control)
            {
                parts.push(Part::Text(s));
                rest = input;
                continue;
            }
        }
        if let Some((head, tail)) = rest.split_first_chunk::<8>() {
            let n = u64::from_be_bytes(*head);
            parts.push(if n >> 63 == 1 {
                Part::Signed((n ^ (1 << 63)) as i64)
            } else {
                Part::Unsigned(n)
            });
            rest = tail;
            continue;
        }
        parts.push(match rest {
            [b] if *b <= 1 => Part::Bool(*b == 1),
            _ => Part::Raw(rest.to_vec()),
        });
        break;
    }
    parts
}

fn join(parts: &[Part]) -> String {
    parts.iter().map(Part::show).collect::<Vec<_>>().join(",")
}

/// The primary key `bytes` of a table whose keys are `key_len` bytes long (`None` when they
/// vary) as text that [`parse_key`] reads back: ids in decimal (`42`, or `3,7` for a pair),
/// other fixed-length keys (token hashes) in hex, strings as they are.
pub fn key_text(bytes: &[u8], key_len: Option<usize>) -> String {
    let shown = match key_len {
        Some(8 | 16) => bytes
            .chunks(8)
            .map(|c| {
                <[u8; 8]>::try_from(c)
                    .map_or_else(|_| hex(c), |a| u64::from_be_bytes(a).to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(_) => hex(bytes),
        None => match guess_parts(bytes).as_slice() {
            // One string stands alone, unquoted unless a comma or quote would split it.
            [Part::Text(s)] if plain(s) && !s.starts_with("0x") => s.clone(),
            [Part::Text(s)] => serde_json::Value::String(s.clone()).to_string(),
            parts => join(parts),
        },
    };
    if parse_key(&shown, key_len).as_deref() == Ok(bytes) {
        shown
    } else {
        format!("0x{}", hex(bytes))
    }
}

/// Reads a primary key typed by an operator for a table whose keys are `key_len` bytes long:
/// what [`key_text`] prints, `0x` and hex for any key, plain hex for fixed-length keys.
///
/// # Errors
/// A sentence saying what a key of that table looks like.
pub fn parse_key(text: &str, key_len: Option<usize>) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if let Some(bytes) = text.strip_prefix("0x").and_then(unhex) {
        return Ok(bytes);
    }
    match key_len {
        Some(n @ (8 | 16)) => {
            // Ids: a negative number is refused as one too large is, not looked up.
            let numbers = split(text).ok().filter(|parts| {
                parts.len() == n / 8 && parts.iter().all(|p| matches!(p, Part::Unsigned(_)))
            });
            match numbers {
                Some(parts) => Ok(encode(&parts, false)),
                None => unhex(text).filter(|b| b.len() == n).ok_or_else(|| {
                    if n == 8 {
                        format!(
                            "{text:?} is not a key of this table: its keys are numbers (ids), \
                             0 to {}",
                            u64::MAX
                        )
                    } else {
                        format!(
                            "{text:?} is not a key of this table: its keys are two numbers \
                             (each 0 to {}), written like 3,7",
                            u64::MAX
                        )
                    }
                }),
            }
        }
        Some(n) => unhex(text).filter(|b| b.len() == n).ok_or_else(|| {
            format!("{text:?} is not a key of this table: its keys are {n} bytes, written as {} hex digits", 2 * n)
        }),
        None => {
            // A key of varying length holds a string, so one bare part is text.
            let parts = split(text)?;
            match parts.as_slice() {
                [Part::Text(_)] => Ok(encode(&parts, false)),
                [_] => Ok(encode(&[Part::Text(text.to_string())], false)),
                _ => Ok(encode(&parts, false)),
            }
        }
    }
}

/// The indexed value of an index entry (its key without the primary key) as text, read by its
/// look: `ann@example.com`, `3`, `3,2027-01-15T08:00:00Z`, `true`. [`parse_prefix`] reads it
/// back.
pub fn entry_text(bytes: &[u8]) -> String {
    let shown = join(&guess_parts(bytes));
    match split(&shown) {
        Ok(parts) if encode(&parts, false) == bytes => shown,
        _ => format!("0x{}", hex(bytes)),
    }
}

/// Reads `--prefix VALUE`: the first parts of index entries, as [`entry_text`] prints them.
/// A string at the end matches every string it begins (`ann` matches `anna@example.com`).
///
/// # Errors
/// A sentence when a quoted part is malformed.
pub fn parse_prefix(text: &str) -> Result<Vec<u8>, String> {
    Ok(encode(&split(text)?, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key;
    use proptest::prelude::*;

    #[test]
    fn keys_print_as_operators_type_them() {
        assert_eq!(key_text(&key!(42u64), Some(8)), "42");
        assert_eq!(key_text(&key!(3u64, 7u64), Some(16)), "3,7");
        assert_eq!(key_text(&[0xab; 32], Some(32)), "ab".repeat(32));
        assert_eq!(key_text(&key!("agent-run-1"), None), "agent-run-1");
        assert_eq!(key_text(&key!("42"), None), "42");
        assert_eq!(key_text(&key!(3u64, "a,b"), None), "3,\"a,b\"");
        assert_eq!(parse_key("42", Some(8)).unwrap(), key!(42u64));
        assert_eq!(parse_key("3, 7", Some(16)).unwrap(), key!(3u64, 7u64));
        assert_eq!(
            parse_key(&hex(&key!(3u64, 7u64)), Some(16)).unwrap(),
            key!(3u64, 7u64)
        );
        assert_eq!(parse_key("0x2a", Some(8)).unwrap(), vec![0x2a]);
        assert_eq!(parse_key("42", None).unwrap(), key!("42"));
        assert!(parse_key("ann", Some(8)).unwrap_err().contains("numbers"));
        // Negative and oversized ids are refused alike.
        assert!(parse_key("-1", Some(8)).unwrap_err().contains("0 to"));
        assert!(
            parse_key("99999999999999999999", Some(8))
                .unwrap_err()
                .contains("0 to")
        );
        assert!(parse_key("2,-1", Some(16)).unwrap_err().contains("3,7"));
        assert!(
            parse_key("abc", Some(32))
                .unwrap_err()
                .contains("64 hex digits")
        );
    }

    #[test]
    fn index_entries_print_by_their_look_and_prefixes_match_them() {
        let t = Timestamp(1_800_000_000);
        assert_eq!(entry_text(&key!("ann@example.com")), "ann@example.com");
        assert_eq!(entry_text(&key!(3u64, t.0)), "3,2027-01-15T08:00:00Z");
        assert_eq!(entry_text(&key!(true)), "true");
        assert_eq!(entry_text(&key!("12")), "\"12\"");
        assert_eq!(entry_text(&[7]), "0x07");
        assert_eq!(parse_prefix("3").unwrap(), key!(3u64));
        assert_eq!(
            parse_prefix("3,2027-01-15T08:00:00Z").unwrap(),
            key!(3u64, t.0)
        );
        let ann = parse_prefix("ann").unwrap();
        assert!(key!("anna@example.com").starts_with(&ann));
        assert!(!key!("bob").starts_with(&ann));
        assert!(parse_prefix("\"open").is_err());
    }

    proptest! {
        #[test]
        fn every_key_reads_back_to_its_bytes(bytes: Vec<u8>, len in prop::sample::select(vec![None, Some(8), Some(16), Some(32)])) {
            let shown = key_text(&bytes, len);
            prop_assert_eq!(parse_key(&shown, len).unwrap(), bytes.clone());
            let entry = entry_text(&bytes);
            prop_assert_eq!(encode(&split(&entry).unwrap(), false), bytes);
        }

        #[test]
        fn typed_keys_read_back(a: (String, u64), b: (u64, u64), n: u64) {
            prop_assert_eq!(parse_key(&key_text(&a.to_bytes(), None), None).unwrap(), a.to_bytes());
            prop_assert_eq!(parse_key(&key_text(&b.to_bytes(), Some(16)), Some(16)).unwrap(), b.to_bytes());
            prop_assert_eq!(key_text(&n.to_bytes(), Some(8)), n.to_string());
        }

        #[test]
        fn any_text_parses_without_panicking(text: String, len in prop::sample::select(vec![None, Some(8), Some(16), Some(32)])) {
            let _ = parse_key(&text, len);
            let _ = parse_prefix(&text);
        }
    }
}
