//! Record values: a format byte, the record's version, then the value.
//!
//! - Format 2 (written today): `0x02`, the record version (LEB128), then the value in the
//!   self-describing format of `format.rs`, whose fields are matched by name.
//! - Format 1 (read only): `0x01`, then bincode 2 (standard configuration), written by the
//!   first release; its records are version 1 and are read through the frozen shapes their
//!   types declare in `Record::upgrade`.
//!
//! This is the only file that knows bincode.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::format::{self, Resolve, UsedShapes};

/// The format byte of records written by the first release (bincode, version 1).
pub const FORMAT_LEGACY: u8 = 1;
/// The format byte of records written today.
pub const FORMAT_CURRENT: u8 = 2;

/// Largest encoded record accepted, in bytes.
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

fn legacy_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// Encodes a record of `version`, noting the struct shapes it used.
///
/// # Errors
/// A message when the record cannot be encoded or is larger than [`MAX_RECORD_BYTES`].
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    version: u32,
    shapes: &mut UsedShapes,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(128);
    out.push(FORMAT_CURRENT);
    format::put_varint(&mut out, u64::from(version));
    // Stopped as soon as it grows past the limit, so a huge field is not copied first.
    format::to_vec_within(value, &mut out, shapes, MAX_RECORD_BYTES).map_err(|e| e.to_string())?;
    if out.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "record of {} bytes exceeds the {MAX_RECORD_BYTES}-byte limit",
            out.len()
        ));
    }
    Ok(out)
}

/// Encodes a value in format 1 (bincode), for migrating down to the versions that read only
/// that format.
///
/// # Errors
/// A message when the value cannot be encoded.
pub(crate) fn encode_legacy<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = vec![FORMAT_LEGACY];
    out.extend(bincode::serde::encode_to_vec(value, legacy_config()).map_err(|e| e.to_string())?);
    Ok(out)
}

/// Why a format-1 value does not read, in words (bincode's own text is its `Debug` form).
fn legacy_error(e: bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as E;
    match e {
        E::UnexpectedEnd { .. } => "the value ends before its last field".into(),
        E::LimitExceeded => format!("the value claims more than {MAX_RECORD_BYTES} bytes"),
        E::Utf8 { .. } => "a text field is not valid UTF-8".into(),
        E::InvalidCharEncoding(_) => "a character field is not valid UTF-8".into(),
        E::UnexpectedVariant {
            type_name, found, ..
        } => format!("{type_name} has no variant number {found}"),
        E::InvalidBooleanValue(b) => format!("a true/false field holds {b}"),
        E::InvalidIntegerType { .. } | E::NonZeroTypeIsZero { .. } => {
            "a number field is malformed".into()
        }
        E::OutsideUsizeRange(n) => format!("a length of {n} is too large"),
        // What serde's side said (an unknown variant, a value out of range), in its words.
        E::OtherString(text) => text,
        E::Other(text) => text.into(),
        other => format!("the value does not read ({other:?})"),
    }
}

/// A stored value as found, before it is read as a type: what `Record::upgrade` receives
/// for a record written by an older version of its type.
#[derive(Clone, Copy)]
pub struct Stored<'a> {
    version: u32,
    legacy: bool,
    body: &'a [u8],
    resolve: Resolve<'a>,
}

impl std::fmt::Debug for Stored<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("version", &self.version)
            .field("legacy", &self.legacy)
            .field("bytes", &self.body.len())
            .finish()
    }
}

impl<'a> Stored<'a> {
    /// Splits a stored value into its version and body.
    ///
    /// # Errors
    /// A message for an empty value, an unknown format byte or a malformed version.
    pub(crate) fn parse(bytes: &'a [u8], resolve: Resolve<'a>) -> Result<Stored<'a>, String> {
        match bytes.split_first() {
            None => Err("empty value".into()),
            Some((&FORMAT_LEGACY, body)) => Ok(Stored {
                version: 1,
                legacy: true,
                body,
                resolve,
            }),
            Some((&FORMAT_CURRENT, rest)) => {
                let (version, body) = read_version(rest)?;
                Ok(Stored {
                    version,
                    legacy: false,
                    body,
                    resolve,
                })
            }
            Some((other, _)) => Err(format!("unknown format byte {other}")),
        }
    }

    /// The version of the record type that wrote this value.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether the value was written by the first release's binary format (format 1). Such a
    /// value can only be read as the exact type that wrote it (its fields in order).
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// Reads the value as `T`: a frozen copy of an older shape of the record, or any type
    /// whose named fields match (fields missing from the value take their serde defaults).
    ///
    /// # Errors
    /// A message when the bytes do not fit `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, String> {
        if self.legacy {
            let (value, read) =
                bincode::serde::decode_from_slice::<T, _>(self.body, legacy_config())
                    .map_err(legacy_error)?;
            if read != self.body.len() {
                return Err(format!("{} trailing bytes", self.body.len() - read));
            }
            Ok(value)
        } else {
            format::from_slice(self.body, self.resolve).map_err(|e| e.to_string())
        }
    }

    /// Whether the value's bytes are well formed (format 2: every tag, length and shape in
    /// place), whatever type reads them; a format-1 value cannot be told without its type.
    pub(crate) fn whole(&self) -> bool {
        !self.legacy && format::validate(self.body, self.resolve).is_ok()
    }

    /// The value as JSON, without knowing its type (format 2 only).
    ///
    /// # Errors
    /// A message for a format-1 value (not self-describing) or malformed bytes.
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        if self.legacy {
            return Err(
                "a format-1 value (first release) is not self-describing; read it as its type"
                    .into(),
            );
        }
        format::to_json(self.body, self.resolve).map_err(|e| e.to_string())
    }
}

impl<'a> Stored<'a> {
    /// The shape id of the struct the value holds (format 2); `None` otherwise.
    pub(crate) fn struct_shape(&self) -> Option<u64> {
        if self.legacy {
            return None;
        }
        format::struct_shape(self.body)
    }

    /// The value's struct fields whose names `keep` accepts, with their bytes as stored
    /// (format 2; none for a format-1 value or one that holds no struct).
    ///
    /// # Errors
    /// A message when the bytes are malformed.
    pub(crate) fn struct_fields(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<format::StoredField<'a>>, String> {
        if self.legacy {
            return Ok(Vec::new());
        }
        format::struct_fields(self.body, self.resolve, keep).map_err(|e| e.to_string())
    }
}

/// `value`, as [`encode`] wrote it, with the struct fields of `extra` it lacks added to its
/// struct. Returns the new value and the id and names of its shape, for the registry.
///
/// # Errors
/// A message when `value` holds no struct of a known shape, or the result is larger than
/// [`MAX_RECORD_BYTES`].
pub(crate) fn with_fields(
    value: &[u8],
    extra: &[format::StoredField<'_>],
    resolve: Resolve<'_>,
) -> Result<(Vec<u8>, u64, format::Shape), String> {
    let body = match value.split_first() {
        Some((&FORMAT_CURRENT, rest)) => read_version(rest)?.1,
        _ => return Err("not a format-2 value".into()),
    };
    let head = &value[..value.len() - body.len()];
    let (struct_bytes, id, names) =
        format::with_fields(body, extra, resolve).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(head.len() + struct_bytes.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&struct_bytes);
    if out.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "record of {} bytes with the fields kept from the stored one exceeds the \
             {MAX_RECORD_BYTES}-byte limit",
            out.len()
        ));
    }
    Ok((out, id, names))
}

fn read_version(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            let version = u32::try_from(v).map_err(|_| "record version too large".to_string())?;
            return Ok((version, &bytes[i + 1..]));
        }
    }
    Err("malformed record version".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(id: u64) -> Result<format::Shape, format::FormatError> {
        Err(format::FormatError(format!("no shape {id}")))
    }

    #[test]
    fn legacy_values_read_as_their_type_and_current_ones_round_trip() {
        let v = (7u64, "x".to_string(), vec![1u8, 2]);
        let mut legacy = vec![FORMAT_LEGACY];
        legacy.extend(bincode::serde::encode_to_vec(&v, legacy_config()).unwrap());
        let s = Stored::parse(&legacy, &none).unwrap();
        assert!(s.is_legacy());
        assert_eq!(s.version(), 1);
        assert_eq!(s.decode::<(u64, String, Vec<u8>)>().unwrap(), v);
        assert!(s.to_json().is_err());

        let mut used = UsedShapes::default();
        let cur = encode(&v, 3, &mut used).unwrap();
        let s = Stored::parse(&cur, &none).unwrap();
        assert_eq!(s.version(), 3);
        assert_eq!(s.decode::<(u64, String, Vec<u8>)>().unwrap(), v);

        assert!(Stored::parse(&[], &none).is_err());
        assert!(Stored::parse(&[9, 1], &none).is_err());
        assert!(Stored::parse(&[FORMAT_CURRENT, 0x80], &none).is_err());
        let mut truncated = legacy.clone();
        truncated.pop();
        assert!(
            Stored::parse(&truncated, &none)
                .unwrap()
                .decode::<(u64, String, Vec<u8>)>()
                .is_err()
        );
    }

    /// A sequence of `n` one-byte numbers, counting those it hands to the encoder.
    struct Counting<'a> {
        n: usize,
        handed: &'a std::cell::Cell<usize>,
    }

    impl Serialize for Counting<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(self.n))?;
            for _ in 0..self.n {
                self.handed.set(self.handed.get() + 1);
                seq.serialize_element(&1u8)?;
            }
            seq.end()
        }
    }

    /// A value far over the limit is refused as soon as the encoding passes it, not once it
    /// is encoded whole; a text or byte string over it is never copied.
    #[test]
    fn a_record_over_the_size_limit_stops_being_encoded_at_the_limit() {
        let handed = std::cell::Cell::new(0);
        let huge = Counting {
            n: 8 * MAX_RECORD_BYTES,
            handed: &handed,
        };
        let e = encode(&huge, 1, &mut UsedShapes::default()).unwrap_err();
        assert!(e.contains("byte limit"), "{e}");
        assert!(
            handed.get() <= MAX_RECORD_BYTES + 1,
            "{} elements were encoded before the refusal",
            handed.get()
        );
        // Just under the limit is fine; a string or bytes over it are refused.
        let fits = Counting {
            n: MAX_RECORD_BYTES - 64,
            handed: &handed,
        };
        assert!(encode(&fits, 1, &mut UsedShapes::default()).is_ok());
        let text = "x".repeat(MAX_RECORD_BYTES);
        let e = encode(&(1u64, text.as_str()), 1, &mut UsedShapes::default()).unwrap_err();
        assert!(e.contains("byte limit"), "{e}");
        let bytes = serde_bytes_of(&text);
        assert!(encode(&bytes, 1, &mut UsedShapes::default()).is_err());
    }

    /// Bytes serialized as bytes (not a sequence of numbers).
    fn serde_bytes_of(text: &str) -> impl Serialize + '_ {
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bytes(text.as_bytes())
    }

    #[test]
    fn a_format_one_value_that_does_not_read_says_why_in_words() {
        let why = |body: &[u8]| {
            let mut bytes = vec![FORMAT_LEGACY];
            bytes.extend_from_slice(body);
            Stored::parse(&bytes, &none)
                .unwrap()
                .decode::<(String, bool)>()
                .unwrap_err()
        };
        // A string of 2 bytes that are not UTF-8, then a bool.
        assert_eq!(why(&[2, 0xFF, 0xFE, 0]), "a text field is not valid UTF-8");
        assert_eq!(why(&[1, b'a', 7]), "a true/false field holds 7");
        assert_eq!(why(&[5, b'a']), "the value ends before its last field");
    }
}
