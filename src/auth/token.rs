//! Secrets: random tokens with a type prefix, their SHA-256 hashes, and the `Secret` wrapper
//! that is shown once and never printed in full by `Debug`.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::store::{Record, WriteTx};

/// Random bytes in each token: 192 bits, of which the 40-bit display prefix reveals part,
/// leaving more than 128 secret bits.
const TOKEN_BYTES: usize = 24;
/// Characters of the encoded body kept as the display prefix.
const PREFIX_CHARS: usize = 8;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A secret shown to its owner once: an invite code, a session token, an API key, a
/// password. `Debug` shows none of it, the memory is wiped when it is dropped, `==` compares
/// in constant time, and it has no `Serialize`: it leaves the process only through
/// [`Secret::expose`]. It reads from a string with `Deserialize` (request bodies).
#[derive(Clone)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(zeroize::Zeroizing::new(value.into()))
    }

    /// The full secret. Handle with care: show it once, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Default for Secret {
    fn default() -> Self {
        Secret::new(String::new())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

/// Reads a secret from a string (a password in a request body, a form field), moving the
/// text in without a copy. There is no `Serialize`: a secret leaves the process only
/// through [`Secret::expose`].
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(Secret::new)
    }
}

/// Serde for a secret that must cross a trusted channel (the admin socket): the value itself.
/// Never use it for output meant for logs or users.
pub mod wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::auth::token::Secret;

    /// Writes the secret's value.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(Secret::expose).serialize(s)
    }

    /// Reads a secret's value.
    ///
    /// # Errors
    /// The deserializer's, when the value is not a string or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Secret::new))
    }
}

/// The SHA-256 of a token: what is stored, and the key of the token's record. It is never
/// shown: `Debug` redacts it, and records holding one keep it out of their `Serialize`.
/// `==` compares in constant time (as [`hashes_equal`]).
#[derive(Clone, Copy, Eq, Hash, Default, PartialOrd, Ord)]
#[allow(clippy::derived_hash_with_manual_eq)] // Equal exactly when the bytes are: as derived.
pub struct TokenHash(pub [u8; 32]);

impl PartialEq for TokenHash {
    fn eq(&self, other: &TokenHash) -> bool {
        hashes_equal(self, other)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

impl crate::store::KeyPart for TokenHash {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl crate::store::Key for TokenHash {
    const FIXED_LEN: Option<usize> = Some(32);
    const SECRET: bool = true;
    fn take(input: &mut &[u8]) -> Option<Self> {
        <[u8; 32] as crate::store::Key>::take(input).map(TokenHash)
    }
}

/// SHA-256 of a token's text.
pub fn hash_token(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// Compares two hashes in constant time.
pub fn hashes_equal(a: &TokenHash, b: &TokenHash) -> bool {
    a.0.ct_eq(&b.0).into()
}

/// Fills `buf` from the OS CSPRNG.
///
/// # Errors
/// `Io` when the operating system has no randomness to give.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        Error::io(
            "reading the OS random number generator",
            std::io::Error::other(e.to_string()),
        )
    })
}

pub(crate) fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// A freshly generated token.
pub struct NewToken {
    /// The full token, shown once.
    pub secret: Secret,
    /// Its SHA-256, stored.
    pub hash: TokenHash,
    /// The non-secret display prefix (`rki_ab12cd34`).
    pub prefix: String,
}

/// Generates a token `<kind>_<39 base32 chars>` from 192 random bits.
///
/// # Errors
/// `Io` when the operating system has no randomness to give.
pub fn generate(kind: &str) -> Result<NewToken> {
    let mut raw = [0u8; TOKEN_BYTES];
    random_bytes(&mut raw)?;
    let body = base32(&raw);
    let text = format!("{kind}_{body}");
    Ok(NewToken {
        hash: hash_token(&text),
        prefix: format!("{kind}_{}", &body[..PREFIX_CHARS]),
        secret: Secret::new(text),
    })
}

/// Whether `text` has the shape of a full token of `kind` (without checking it exists).
pub fn looks_like(kind: &str, text: &str) -> bool {
    text.strip_prefix(kind)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|body| body.len() > PREFIX_CHARS && body.bytes().all(in_alphabet))
}

/// Whether `b` is a character of [`ALPHABET`] (a range test, not a search: it runs for every
/// character of every token validated).
fn in_alphabet(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'2'..=b'7')
}

/// What a message may repeat of `text`, given where a token of `kind` or its display prefix
/// was expected: at most as much as a display prefix (`kind`, `_` and 8 characters), then
/// `…` and how long the text was, so a cut text does not read as a display prefix that
/// exists. A full token, or one mistyped by a character, is thus never written back whole.
pub(crate) fn shown(kind: &str, text: &str) -> String {
    let limit = kind.chars().count() + 1 + PREFIX_CHARS;
    let mut out: String = text.chars().take(limit).collect();
    if text.chars().nth(limit).is_some() {
        let n = text.chars().count();
        out.push_str(&format!("… ({n} characters given, shown cut)"));
    }
    out
}

/// The display prefix of `text`, a full token of `kind` (`kind`, `_` and 8 characters): what
/// listings show of it.
#[cfg(feature = "admin")]
pub(crate) fn display_prefix(kind: &str, text: &str) -> String {
    text.chars()
        .take(kind.chars().count() + 1 + PREFIX_CHARS)
        .collect()
}

/// Whether `text`, of the shape of a token of `kind` ([`looks_like`]), is as long as one
/// (not a part of one, cut short or run on).
#[cfg(feature = "admin")]
pub(crate) fn whole_length(kind: &str, text: &str) -> bool {
    text.strip_prefix(kind)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|body| body.len() == (TOKEN_BYTES * 8).div_ceil(5))
}

/// Whether `text` has the shape of a display prefix of `kind`.
pub fn looks_like_prefix(kind: &str, text: &str) -> bool {
    text.strip_prefix(kind)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|body| body.len() == PREFIX_CHARS && body.bytes().all(in_alphabet))
}

/// A random password of 20 characters (about 119 bits) from an unambiguous alphabet.
///
/// # Errors
/// `Io` when the operating system has no randomness to give.
pub fn generate_password() -> Result<Secret> {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut out = String::with_capacity(20);
    while out.len() < 20 {
        let mut b = [0u8; 32];
        random_bytes(&mut b)?;
        // Rejection sampling keeps the distribution uniform.
        let limit = 256 - 256 % CHARS.len();
        for x in b {
            if (x as usize) < limit && out.len() < 20 {
                out.push(char::from(CHARS[x as usize % CHARS.len()]));
            }
        }
    }
    Ok(Secret::new(out))
}

/// Inserts a record keyed by a freshly drawn `kind` token, built by `make` from the token's
/// hash and display prefix; draws again on the rare prefix clash. Returns the secret, shown
/// once, and the record.
pub(crate) fn insert_with_token<R: Record>(
    tx: &WriteTx<'_>,
    kind: &str,
    make: impl Fn(TokenHash, String) -> R,
) -> Result<(Secret, R)> {
    let table = tx.table::<R>();
    for _ in 0..8 {
        let tok = generate(kind)?;
        let record = make(tok.hash, tok.prefix);
        match table.insert(&record) {
            Ok(()) => return Ok((tok.secret, record)),
            Err(Error::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Busy {
        what: format!("drawing an unused {kind} prefix failed eight times"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_test_matches_the_alphabet() {
        for b in 0..=255u8 {
            assert_eq!(in_alphabet(b), ALPHABET.contains(&b), "{b}");
        }
    }

    #[test]
    fn tokens_are_unique_prefixed_and_recognised() {
        let a = generate("rki").unwrap();
        let b = generate("rki").unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.expose().starts_with(&a.prefix));
        assert_eq!(a.secret.expose().len(), 4 + 39);
        assert!(looks_like("rki", a.secret.expose()));
        assert!(looks_like_prefix("rki", &a.prefix));
        assert!(!looks_like("rks", a.secret.expose()));
        assert_eq!(hash_token(a.secret.expose()), a.hash);
        assert!(!format!("{:?}", a.secret).contains(&a.secret.expose()[4..]));
        assert_eq!(format!("{:?}", Secret::new("pw")), "Secret(<redacted>)");
    }

    #[test]
    fn a_cut_text_says_it_was_cut() {
        let t = generate("rks").unwrap();
        let shown_token = shown("rks", t.secret.expose());
        assert!(shown_token.starts_with(&t.prefix), "{shown_token}");
        assert!(!shown_token.contains(&t.secret.expose()[t.prefix.len()..]));
        assert!(
            shown_token.ends_with("… (43 characters given, shown cut)"),
            "{shown_token}"
        );
        // A short id typed with a character too many does not read as a short id.
        assert_eq!(
            shown("rks", "rks_abcdefghi"),
            "rks_abcdefgh… (13 characters given, shown cut)"
        );
        assert_eq!(shown("rks", "rks_abcdefgh"), "rks_abcdefgh");
    }

    #[test]
    fn base32_matches_rfc4648_lowercase() {
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn generated_passwords_are_valid() {
        let p = generate_password().unwrap();
        assert_eq!(p.expose().len(), 20);
        assert!(crate::auth::password::validate_password(p.expose()).is_ok());
    }
}
