//! Entry points of the fuzz targets (`fuzz/`), kept in the library so `cargo test` replays
//! the committed corpus through exactly the same code on stable Rust. Each must never panic.

use crate::auth::invites::Invite;
use crate::auth::users::{User, normalize_email};
use crate::store::format::{self, Shape, UsedShapes};
use crate::store::{Key, Record, decode_record as decode};

fn no_shapes(id: u64) -> Result<Shape, format::FormatError> {
    format::cached_shape(id).ok_or_else(|| format::FormatError(format!("no shape {id:016x}")))
}

fn round_trip<R: Record + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let key = 1u64.to_bytes();
    if let Ok(r) = decode::<R>(&key, data, &no_shapes) {
        // Whatever decodes must survive a round trip unchanged.
        let mut used = UsedShapes::default();
        let bytes = crate::store::codec::encode(&r, R::VERSION, &mut used).ok();
        for (id, names) in used.0 {
            format::remember_shape(id, names.iter().map(|n| Box::<str>::from(*n)).collect());
        }
        let again = bytes.and_then(|b| decode::<R>(&key, &b, &no_shapes).ok());
        let _ = again;
    }
}

/// Decodes arbitrary bytes as each record type; must return errors, never panic.
pub fn decode_record(data: &[u8]) {
    round_trip::<User>(data);
    let _ = decode::<Invite>(&[0; 32], data, &no_shapes);
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
#[cfg(feature = "cli")]
pub fn cli_args(data: &[u8]) {
    use clap::Parser;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args = std::iter::once("redkeep").chain(text.split('\0'));
    let _ = crate::cli::Cli::try_parse_from(args);
}
