//! Entry points of the fuzz targets (`fuzz/`), kept in the library so `cargo test` replays
//! the committed corpus through exactly the same code on stable Rust. Each must never panic.

use clap::Parser;

use crate::auth::invites::Invite;
use crate::auth::users::{User, normalize_email};
use crate::store::codec;

/// Decodes arbitrary bytes as each record type; must return errors, never panic.
pub fn decode_record(data: &[u8]) {
    let _ = codec::decode::<User>(data);
    let _ = codec::decode::<Invite>(data);
    if let Ok(u) = codec::decode::<User>(data) {
        // Whatever decodes must survive a round trip unchanged. (Bytes may differ: the
        // varint decoder accepts non-minimal encodings.)
        let again = codec::encode(&u)
            .ok()
            .and_then(|b| codec::decode::<User>(&b).ok());
        assert_eq!(again.as_ref(), Some(&u));
    }
}

/// Normalises arbitrary text as an email; a success must be stable and within limits.
pub fn email(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = normalize_email(text) {
        assert!(n.len() <= crate::auth::users::MAX_EMAIL_BYTES);
        assert_eq!(normalize_email(&n).ok(), Some(n.clone()));
    }
}

/// Classifies arbitrary text as tokens and prefixes.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in ["rki", "rks", "rkk"] {
        let full = crate::auth::token::looks_like(kind, text);
        let prefix = crate::auth::token::looks_like_prefix(kind, text);
        assert!(!(full && prefix), "{text:?} is both a token and a prefix");
    }
    let _ = crate::auth::token::hash_token(text);
}

/// Parses arbitrary NUL-separated arguments as a `redkeep` command line.
pub fn cli_args(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args = std::iter::once("redkeep").chain(text.split('\0'));
    let _ = crate::cli::Cli::try_parse_from(args);
}
