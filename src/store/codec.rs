//! Record encoding: one format byte, then bincode 2 (standard configuration, with a size limit).
//!
//! This is the only file that knows bincode. Swapping the encoding means a new format byte here
//! plus a migration; nothing else changes.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format byte written before every record.
pub const FORMAT_BINCODE_V1: u8 = 1;

/// Largest encoded record accepted, in bytes (format byte excluded).
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// Encodes a record: the format byte, then the bincode bytes.
///
/// Fails with a message when the record is larger than [`MAX_RECORD_BYTES`] or cannot be encoded.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = vec![FORMAT_BINCODE_V1];
    let body = bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())?;
    if body.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "record of {} bytes exceeds the {MAX_RECORD_BYTES}-byte limit",
            body.len()
        ));
    }
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes bytes written by [`encode`]. Never panics: bad bytes give a message.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        None => Err("empty value".into()),
        Some((&FORMAT_BINCODE_V1, body)) => {
            let (value, read) = bincode::serde::decode_from_slice::<T, _>(body, config())
                .map_err(|e| e.to_string())?;
            if read != body.len() {
                return Err(format!("{} trailing bytes", body.len() - read));
            }
            Ok(value)
        }
        Some((other, _)) => Err(format!("unknown format byte {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let v = (7u64, "x".to_string(), vec![1u8, 2]);
        let bytes = encode(&v).unwrap();
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes).unwrap(), v);
        assert!(decode::<(u64, String)>(&[]).is_err());
        assert!(decode::<(u64, String)>(&[9, 1, 2]).is_err());
        assert!(decode::<(u64, String)>(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode::<(u64, String, Vec<u8>)>(&long).is_err());
    }
}
