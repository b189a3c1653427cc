//! Reading a domain label's `xn--` form (RFC 3492 punycode) back into its letters, so an
//! error about such a domain can name the domain as it reads. Only decoding: redkeep never
//! writes this form. Every step is checked; a label that does not decode gives `None`.

const BASE: u32 = 36;
const T_MIN: u32 = 1;
const T_MAX: u32 = 26;
const SKEW: u32 = 38;
const DAMP: u32 = 700;
const INITIAL_BIAS: u32 = 72;
const INITIAL_N: u32 = 128;

/// The letters of one label's punycode text (what follows `xn--`), or `None` when it is not
/// valid punycode or decodes to plain ASCII (which no `xn--` label may).
pub(crate) fn decode_label(encoded: &str) -> Option<String> {
    if !encoded.is_ascii() {
        return None;
    }
    // The basic (ASCII) letters come before the last `-`, the encoded insertions after it.
    let (basic, insertions) = match encoded.rfind('-') {
        Some(at) => (&encoded[..at], &encoded[at + 1..]),
        None => ("", encoded),
    };
    let mut out: Vec<char> = basic.chars().collect();
    let (mut n, mut i, mut bias) = (INITIAL_N, 0u32, INITIAL_BIAS);
    let mut digits = insertions.bytes();
    let mut pending = !insertions.is_empty();
    while pending {
        let old_i = i;
        let mut weight = 1u32;
        let mut k = BASE;
        loop {
            let digit = match digits.next()? {
                b @ b'a'..=b'z' => b - b'a',
                b @ b'A'..=b'Z' => b - b'A',
                b @ b'0'..=b'9' => b - b'0' + 26,
                _ => return None,
            } as u32;
            i = i.checked_add(digit.checked_mul(weight)?)?;
            let t = k.saturating_sub(bias).clamp(T_MIN, T_MAX);
            if digit < t {
                break;
            }
            weight = weight.checked_mul(BASE - t)?;
            k = k.checked_add(BASE)?;
        }
        let len = u32::try_from(out.len()).ok()?.checked_add(1)?;
        bias = adapt(i - old_i, len, old_i == 0);
        n = n.checked_add(i / len)?;
        i %= len;
        out.insert(usize::try_from(i).ok()?, char::from_u32(n)?);
        i += 1;
        pending = digits.len() > 0;
    }
    let label: String = out.into_iter().collect();
    (!label.is_ascii()).then_some(label)
}

/// RFC 3492's bias adaptation after each insertion.
fn adapt(delta: u32, points: u32, first: bool) -> u32 {
    let mut delta = if first { delta / DAMP } else { delta / 2 };
    delta += delta / points;
    let mut k = 0;
    while delta > ((BASE - T_MIN) * T_MAX) / 2 {
        delta /= BASE - T_MIN;
        k += BASE;
    }
    k + (BASE - T_MIN + 1) * delta / (delta + SKEW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn labels_decode_to_their_letters() {
        for (encoded, letters) in [
            ("exmple-cua", "exämple"),
            ("bcher-kva", "bücher"),
            ("mnchen-ost-9db", "münchen-ost"),
            ("wgv71a119e", "日本語"),
            ("p1ai", "рф"),
            ("BCHER-KVA", "BüCHER"),
        ] {
            assert_eq!(decode_label(encoded).as_deref(), Some(letters), "{encoded}");
        }
    }

    #[test]
    fn what_is_not_punycode_does_not_decode() {
        for bad in ["", "abc-", "exmple-cu!", "exmple-c", "99999999999", "é-cua"] {
            assert_eq!(decode_label(bad), None, "{bad:?}");
        }
    }

    proptest! {
        /// No text makes decoding panic (overflow, an index out of range, a bad char).
        #[test]
        fn any_text_decodes_or_gives_none(text in "[a-zA-Z0-9\\-]{0,63}") {
            let _ = decode_label(&text);
        }
    }
}
