//! Serde adapters for byte fields: hex (hashes) or base64 (blobs) in human-readable formats
//! such as the JSON export, and the unchanged compact form in the store's binary encoding.

/// `[u8; 32]` as lower-case hex in JSON.
pub mod hash {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serialises a hash.
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            s.serialize_str(&hex)
        } else {
            v.serialize(s)
        }
    }

    /// Deserialises a hash.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            let bad = || serde::de::Error::custom(format!("{text:?} is not 64 hex digits"));
            if text.len() != 64 || !text.is_ascii() {
                return Err(bad());
            }
            let mut out = [0u8; 32];
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
            }
            Ok(out)
        } else {
            <[u8; 32]>::deserialize(d)
        }
    }
}

/// `Vec<u8>` as standard base64 in JSON.
pub mod base64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serialises bytes.
    pub fn serialize<S: Serializer>(v: &Vec<u8>, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&STANDARD.encode(v))
        } else {
            v.serialize(s)
        }
    }

    /// Deserialises bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            STANDARD
                .decode(text.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
        } else {
            Vec::<u8>::deserialize(d)
        }
    }
}
