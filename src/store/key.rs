//! The one order-preserving key encoding, for primary keys and index keys alike.
//!
//! Key bytes sort the way the values they encode sort, and every part is self-delimiting, so
//! composite keys (`key!(org_id, &name)`) support range and prefix scans: integers are
//! big-endian (signed ones with the sign bit flipped), strings and byte strings escape `0x00`
//! as `0x00 0xFF` and end with `0x00 0x00`, fixed-size byte arrays are written as they are.

/// A value that can be written as part of an order-preserving key.
pub trait KeyPart {
    /// Appends the encoding of `self` to `out`.
    fn put(&self, out: &mut Vec<u8>);
}

/// A primary key: a [`KeyPart`] that can also be read back from its bytes.
pub trait Key: KeyPart + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The encoded length when it is always the same (integers, fixed arrays, tuples of
    /// them); `None` for keys holding strings.
    const FIXED_LEN: Option<usize>;
    /// Whether keys of this type are secret material (a token's hash): a record keyed by one
    /// is [`Record::SECRET_KEY`](crate::Record::SECRET_KEY) unless it says otherwise.
    const SECRET: bool = false;

    /// Reads one key from the front of `input`, advancing it; `None` when malformed.
    fn take(input: &mut &[u8]) -> Option<Self>;

    /// The key's bytes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::FIXED_LEN.unwrap_or(16));
        self.put(&mut out);
        out
    }

    /// The key as a numeric id, when it is one (`u64` keys), for raising sequences.
    fn as_id(&self) -> Option<u64> {
        None
    }

    /// Parses the bytes of exactly one key; `None` when malformed or followed by more bytes.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut input = bytes;
        let k = Self::take(&mut input)?;
        input.is_empty().then_some(k)
    }
}

fn take_array<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
    if input.len() < N {
        return None;
    }
    let (head, rest) = input.split_at(N);
    *input = rest;
    head.try_into().ok()
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
        }
        impl Key for $t {
            const FIXED_LEN: Option<usize> = Some(size_of::<$t>());
            fn take(input: &mut &[u8]) -> Option<Self> {
                take_array(input).map(<$t>::from_be_bytes)
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u128);

impl KeyPart for u64 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

impl Key for u64 {
    const FIXED_LEN: Option<usize> = Some(8);
    fn take(input: &mut &[u8]) -> Option<Self> {
        take_array(input).map(u64::from_be_bytes)
    }
    fn as_id(&self) -> Option<u64> {
        Some(*self)
    }
}

impl KeyPart for i64 {
    fn put(&self, out: &mut Vec<u8>) {
        // Flipping the sign bit makes two's complement sort as unsigned bytes.
        out.extend_from_slice(&((*self as u64) ^ (1 << 63)).to_be_bytes());
    }
}

impl Key for i64 {
    const FIXED_LEN: Option<usize> = Some(8);
    fn take(input: &mut &[u8]) -> Option<Self> {
        take_array(input).map(|b| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
    }
}

impl KeyPart for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Key for bool {
    const FIXED_LEN: Option<usize> = Some(1);
    fn take(input: &mut &[u8]) -> Option<Self> {
        match take_array::<1>(input)? {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
}

impl KeyPart for [u8] {
    /// Variable-length bytes: `0x00` is escaped as `0x00 0xFF` and the part ends with
    /// `0x00 0x00`, which keeps order and makes the part self-delimiting.
    fn put(&self, out: &mut Vec<u8>) {
        out.reserve(self.len() + 2);
        let mut rest = self;
        while let Some(at) = rest.iter().position(|&b| b == 0) {
            out.extend_from_slice(&rest[..=at]);
            out.push(0xFF);
            rest = &rest[at + 1..];
        }
        out.extend_from_slice(rest);
        out.extend_from_slice(&[0, 0]);
    }
}

fn take_escaped(input: &mut &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b != 0 {
            out.push(b);
            i += 1;
            continue;
        }
        match input.get(i + 1)? {
            0xFF => {
                out.push(0);
                i += 2;
            }
            0 => {
                *input = &input[i + 2..];
                return Some(out);
            }
            _ => return None,
        }
    }
    None
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

impl Key for String {
    const FIXED_LEN: Option<usize> = None;
    fn take(input: &mut &[u8]) -> Option<Self> {
        String::from_utf8(take_escaped(input)?).ok()
    }
}

impl<const N: usize> KeyPart for [u8; N] {
    /// Fixed-length bytes are written as they are.
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<const N: usize> Key for [u8; N] {
    const FIXED_LEN: Option<usize> = Some(N);
    fn take(input: &mut &[u8]) -> Option<Self> {
        take_array(input)
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn put(&self, out: &mut Vec<u8>) {
        (**self).put(out);
    }
}

const fn sum(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    }
}

impl<A: KeyPart, B: KeyPart> KeyPart for (A, B) {
    fn put(&self, out: &mut Vec<u8>) {
        self.0.put(out);
        self.1.put(out);
    }
}

impl<A: Key, B: Key> Key for (A, B) {
    const FIXED_LEN: Option<usize> = sum(A::FIXED_LEN, B::FIXED_LEN);
    fn take(input: &mut &[u8]) -> Option<Self> {
        Some((A::take(input)?, B::take(input)?))
    }
}

impl<A: KeyPart, B: KeyPart, C: KeyPart> KeyPart for (A, B, C) {
    fn put(&self, out: &mut Vec<u8>) {
        self.0.put(out);
        self.1.put(out);
        self.2.put(out);
    }
}

impl<A: Key, B: Key, C: Key> Key for (A, B, C) {
    const FIXED_LEN: Option<usize> = sum(sum(A::FIXED_LEN, B::FIXED_LEN), C::FIXED_LEN);
    fn take(input: &mut &[u8]) -> Option<Self> {
        Some((A::take(input)?, B::take(input)?, C::take(input)?))
    }
}

/// Builds order-preserving key bytes from one or more [`KeyPart`]s: `key!(org_id, &name)`.
#[macro_export]
macro_rules! key {
    ($($part:expr),+ $(,)?) => {{
        // Room for the usual key (an email or a number or two) and the primary key an index
        // entry appends, so building it does not grow the buffer step by step.
        let mut out = ::std::vec::Vec::with_capacity(48);
        $( $crate::store::KeyPart::put(&$part, &mut out); )+
        out
    }};
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

/// Shows key bytes in messages: a number when they are 8 bytes, text when printable, else hex.
pub(crate) fn show_key(bytes: &[u8]) -> String {
    match <[u8; 8]>::try_from(bytes) {
        Ok(b) => u64::from_be_bytes(b).to_string(),
        Err(_) => {
            let mut input = bytes;
            match String::take(&mut input) {
                Some(s) if input.is_empty() && s.chars().all(|c| c.is_ascii_graphic()) => s,
                _ => crate::bytes::hex(bytes),
            }
        }
    }
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

        #[test]
        fn keys_read_back_what_they_wrote(a: (String, u64), b: (u64, u64), c: [u8; 32], s: i64) {
            prop_assert_eq!(<(String, u64)>::from_bytes(&a.to_bytes()), Some(a.clone()));
            prop_assert_eq!(<(u64, u64)>::from_bytes(&b.to_bytes()), Some(b));
            prop_assert_eq!(<[u8; 32]>::from_bytes(&c.to_bytes()), Some(c));
            prop_assert_eq!(i64::from_bytes(&s.to_bytes()), Some(s));
        }

        #[test]
        fn byte_parts_keep_their_stored_encoding(
            v in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xFFu8), any::<u8>()], 0..40),
        ) {
            // The format: each 0x00 becomes 0x00 0xFF, and 0x00 0x00 ends the part.
            let mut expected = Vec::new();
            for &b in &v {
                expected.push(b);
                if b == 0 {
                    expected.push(0xFF);
                }
            }
            expected.extend_from_slice(&[0, 0]);
            let mut out = vec![9];
            v.as_slice().put(&mut out);
            prop_assert_eq!(&out[1..], &expected[..]);
            prop_assert_eq!(take_escaped(&mut &out[1..]), Some(v));
        }

        #[test]
        fn malformed_key_bytes_are_refused_not_panics(bytes: Vec<u8>) {
            let _ = <(String, u64)>::from_bytes(&bytes);
            let _ = String::from_bytes(&bytes);
            let _ = show_key(&bytes);
        }
    }

    #[test]
    fn prefix_end_bounds_every_extension() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
        assert_eq!(u64::FIXED_LEN, Some(8));
        assert_eq!(<(u64, u64)>::FIXED_LEN, Some(16));
        assert_eq!(<(u64, String)>::FIXED_LEN, None);
    }
}
