//! Secondary indexes and the order-preserving key encoding they use.
//!
//! Key bytes sort the same way as the values they encode, and every part is self-delimiting, so
//! composite keys (`key!(org_id, &name)`) support both range and prefix scans.

/// A value that can be written as part of an order-preserving key.
pub trait KeyPart {
    /// Appends the encoding of `self` to `out`.
    fn put(&self, out: &mut Vec<u8>);
}

impl KeyPart for u64 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

impl KeyPart for u32 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

impl KeyPart for i64 {
    fn put(&self, out: &mut Vec<u8>) {
        // Flipping the sign bit makes two's complement sort as unsigned bytes.
        out.extend_from_slice(&((*self as u64) ^ (1 << 63)).to_be_bytes());
    }
}

impl KeyPart for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl KeyPart for str {
    fn put(&self, out: &mut Vec<u8>) {
        self.as_bytes().put(out);
    }
}

impl KeyPart for String {
    fn put(&self, out: &mut Vec<u8>) {
        self.as_str().put(out);
    }
}

impl KeyPart for [u8] {
    /// Variable-length bytes: `0x00` is escaped as `0x00 0xFF` and the part ends with
    /// `0x00 0x00`, which keeps order and makes the part self-delimiting.
    fn put(&self, out: &mut Vec<u8>) {
        for &b in self {
            out.push(b);
            if b == 0 {
                out.push(0xFF);
            }
        }
        out.extend_from_slice(&[0, 0]);
    }
}

impl<const N: usize> KeyPart for [u8; N] {
    /// Fixed-length bytes are written as they are.
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn put(&self, out: &mut Vec<u8>) {
        (**self).put(out);
    }
}

/// Builds order-preserving key bytes from one or more [`KeyPart`]s: `key!(org_id, &name)`.
#[macro_export]
macro_rules! key {
    ($($part:expr),+ $(,)?) => {{
        let mut out = ::std::vec::Vec::new();
        $( $crate::KeyPart::put(&$part, &mut out); )+
        out
    }};
}

/// One secondary index of a record type: a name and a function deriving key bytes.
///
/// The function returns `None` when the record has no entry in this index (an optional field
/// that is unset).
pub struct Index<R> {
    /// Name, unique within the record's table.
    pub name: &'static str,
    /// Whether two records may share a key.
    pub unique: bool,
    /// Derives the index key from the record.
    pub key: fn(&R) -> Option<Vec<u8>>,
}

impl<R> Index<R> {
    /// A unique index: a second record with the same key is a `Conflict`.
    pub const fn unique(name: &'static str, key: fn(&R) -> Option<Vec<u8>>) -> Self {
        Index {
            name,
            unique: true,
            key,
        }
    }

    /// A non-unique index: many records may share a key.
    pub const fn many(name: &'static str, key: fn(&R) -> Option<Vec<u8>>) -> Self {
        Index {
            name,
            unique: false,
            key,
        }
    }
}

/// The upper bound of every key that starts with `prefix`, or `None` when there is none
/// (the prefix is all `0xFF`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn string_pairs_sort_like_their_values(a: (String, u64), b: (String, u64)) {
            let ka = key!(a.0, a.1);
            let kb = key!(b.0, b.1);
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
        }

        #[test]
        fn signed_integers_sort_like_their_values(a: i64, b: i64) {
            prop_assert_eq!(a.cmp(&b), key!(a).cmp(&key!(b)));
        }
    }

    #[test]
    fn prefix_end_bounds_every_extension() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
