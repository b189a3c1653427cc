//! Password hashing with argon2id: PHC strings, OWASP parameters by default, rehash detection,
//! and equal work for unknown accounts so response time does not reveal which emails exist.
//!
//! Hashes adopted from other systems keep working until the next successful login replaces
//! them with argon2id: bcrypt (`$2a$`, `$2b$`, `$2y$`), bcrypt over the password followed by a
//! separately stored salt (kept as `$rk-salted-bcrypt$<salt hex>$<bcrypt hash>`), and PHC
//! strings of argon2 (`argon2id`, `argon2i`, `argon2d`) and PBKDF2 (`pbkdf2-sha256`,
//! `pbkdf2-sha512`).

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, PasswordHasher, PasswordVerifier, Version};

use crate::bytes::{hex, unhex};

use crate::error::{Error, Result};

/// Shortest accepted password, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Longest accepted password, in bytes (bounds hashing work per request).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl PasswordParams {
    /// OWASP's recommendation for argon2id: 19 MiB, 2 iterations, 1 lane. The default.
    pub const OWASP: PasswordParams = PasswordParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// The cheapest parameters argon2 accepts. For tests only: never use in production.
    pub const INSECURE_FAST: PasswordParams = PasswordParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for PasswordParams {
    fn default() -> Self {
        PasswordParams::OWASP
    }
}

/// Checks a new password: 8 to 1024 bytes, not only spaces, and no control characters (a
/// NUL, a line break, an escape: what no keyboard types and other systems cut at). No
/// composition rules, per NIST SP 800-63B.
///
/// # Errors
/// `InvalidInput` when it is shorter than 8 or longer than 1024 bytes, holds only
/// whitespace, or holds a control character.
pub fn validate_password(password: &str) -> Result<()> {
    if password.chars().any(char::is_control) {
        return Err(Error::invalid(
            "password",
            "it holds a control character (a NUL, a line break, a tab or an escape); use printable characters and spaces",
        ));
    }
    if !password.is_empty()
        && password
            .chars()
            .all(|c| c.is_whitespace() || crate::bytes::invisible(c))
    {
        return Err(Error::invalid(
            "password",
            "it is only spaces (or invisible characters); use a passphrase of words or a generated password",
        ));
    }
    let n = password.len();
    if n < MIN_PASSWORD_BYTES {
        return Err(Error::invalid(
            "password",
            format!("it has {n} bytes; use at least {MIN_PASSWORD_BYTES}"),
        ));
    }
    if n > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(
            "password",
            format!("it has {n} bytes; use at most {MAX_PASSWORD_BYTES}"),
        ));
    }
    Ok(())
}

const BCRYPT_PREFIXES: [&str; 3] = ["$2a$", "$2b$", "$2y$"];
const SALTED_BCRYPT: &str = "$rk-salted-bcrypt$";
/// The most PBKDF2 rounds an adopted hash may ask for (bounds the work of one login).
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

/// The most memory (KiB) an argon2 hash may ask for: 1 GiB, libsodium's "sensitive" level.
const MAX_ARGON2_KIB: u32 = 1 << 20;
/// The most argon2 work (memory in KiB times passes) one login may cost: libsodium's
/// "sensitive" level (1 GiB, 4 passes). Bounds what a stored hash can make a login do.
const MAX_ARGON2_WORK: u64 = 4 << 20;

/// Why an argon2 hash asks for more than a login may cost, if it does.
fn argon2_too_costly(parsed: &PasswordHash) -> Option<String> {
    let params = argon2::Params::try_from(parsed).ok()?;
    let (m, t) = (params.m_cost(), params.t_cost());
    let work = u64::from(m) * u64::from(t);
    (m > MAX_ARGON2_KIB || work > MAX_ARGON2_WORK).then(|| {
        format!(
            "the argon2 hash asks for m={m} KiB and t={t}; at most {MAX_ARGON2_KIB} KiB and \
             {MAX_ARGON2_WORK} KiB×passes are accepted (every login would pay for them)"
        )
    })
}

/// A stored hash, taken apart.
enum Scheme<'a> {
    Bcrypt(&'a str),
    SaltedBcrypt { salt: Vec<u8>, hash: &'a str },
    Argon2(PasswordHash),
    Pbkdf2(PasswordHash),
}

fn is_bcrypt(hash: &str) -> bool {
    hash.len() == 60 && BCRYPT_PREFIXES.iter().any(|p| hash.starts_with(p))
}

fn parse(stored: &str) -> Option<Scheme<'_>> {
    if is_bcrypt(stored) {
        return Some(Scheme::Bcrypt(stored));
    }
    if let Some(rest) = stored.strip_prefix(SALTED_BCRYPT) {
        // `<salt hex>$2b$…`: the bcrypt hash keeps its own leading `$`.
        let salt = rest.split('$').next()?;
        let hash = &rest[salt.len()..];
        return is_bcrypt(hash).then(|| Scheme::SaltedBcrypt {
            salt: unhex(salt).unwrap_or_default(),
            hash,
        });
    }
    let parsed = PasswordHash::new(stored).ok()?;
    // The PHC grammar allows a string without salt or hash; no password matches such a one.
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return None;
    }
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => {
            (argon2_too_costly(&parsed).is_none()).then_some(Scheme::Argon2(parsed))
        }
        "pbkdf2-sha256" | "pbkdf2-sha512" => {
            let rounds = parsed
                .params
                .iter()
                .find(|(k, _)| k.as_str() == "i")
                .and_then(|(_, v)| v.as_str().parse::<u32>().ok())?;
            (rounds <= MAX_PBKDF2_ROUNDS).then_some(Scheme::Pbkdf2(parsed))
        }
        _ => None,
    }
}

/// Checks that `stored` is a password hash redkeep can verify (argon2, bcrypt, PBKDF2 PHC),
/// for hashes adopted from another system.
///
/// # Errors
/// A sentence naming what the hash looks like instead (plain text, an unknown scheme).
pub(crate) fn recognise(stored: &str) -> std::result::Result<(), String> {
    if parse(stored).is_some() {
        return Ok(());
    }
    if stored.is_empty() {
        return Err("the password hash is empty".into());
    }
    if !stored.starts_with('$') {
        return Err(
            "the password field does not hold a hash (plain text or an unknown format); it is never stored as it is"
                .into(),
        );
    }
    let name = stored
        .trim_start_matches('$')
        .split('$')
        .next()
        .unwrap_or("");
    // A scheme redkeep reads, in a string it cannot: say the string is malformed (or, for
    // PBKDF2 and argon2, that it asks for too much work).
    if let Some(why) = PasswordHash::new(stored)
        .ok()
        .filter(|p| p.algorithm.as_str().starts_with("argon2"))
        .and_then(|p| argon2_too_costly(&p))
    {
        return Err(why);
    }
    if let Some(rounds) = PasswordHash::new(stored)
        .ok()
        .filter(|p| matches!(p.algorithm.as_str(), "pbkdf2-sha256" | "pbkdf2-sha512"))
        .and_then(|p| {
            p.params
                .iter()
                .find(|(k, _)| k.as_str() == "i")
                .and_then(|(_, v)| v.as_str().parse::<u64>().ok())
        })
        .filter(|&i| i > u64::from(MAX_PBKDF2_ROUNDS))
    {
        return Err(format!(
            "the {name} hash asks for {rounds} rounds; at most {MAX_PBKDF2_ROUNDS} are accepted (every login would pay for them)"
        ));
    }
    let known = matches!(
        name,
        "argon2id" | "argon2i" | "argon2d" | "2a" | "2b" | "2y" | "pbkdf2-sha256" | "pbkdf2-sha512"
    );
    if known {
        return Err(format!(
            "the {name} hash is malformed (a part is missing, cut short or out of range); copy the whole string from the source"
        ));
    }
    Err(format!(
        "the hash scheme {name:?} is not supported (use bcrypt, argon2 or PBKDF2 PHC strings)"
    ))
}

/// The stored form of a bcrypt hash of the password followed by `salt`.
#[cfg_attr(not(feature = "adopt"), allow(dead_code))]
pub(crate) fn salted_bcrypt(salt: &str, bcrypt_hash: &str) -> String {
    format!("{SALTED_BCRYPT}{}{bcrypt_hash}", hex(salt.as_bytes()))
}

/// The algorithm and cost parameters a stored hash records, never the hash itself:
/// `("argon2id", "m=19456,t=2,p=1")`, `("bcrypt", "cost=12")`.
pub(crate) fn scheme(phc: &str) -> (String, String) {
    let bcrypt_cost = |h: &str| format!("cost={}", h.get(4..6).unwrap_or("?"));
    match parse(phc) {
        Some(Scheme::Bcrypt(h)) => return ("bcrypt".into(), bcrypt_cost(h)),
        Some(Scheme::SaltedBcrypt { hash, .. }) => {
            return ("bcrypt+salt".into(), bcrypt_cost(hash));
        }
        _ => {}
    }
    match PasswordHash::new(phc) {
        Ok(h) => {
            let params: Vec<String> = h
                .params
                .iter()
                .map(|(k, v)| format!("{}={}", k.as_str(), v.as_str()))
                .collect();
            (h.algorithm.as_str().to_string(), params.join(","))
        }
        Err(_) => ("unknown".into(), String::new()),
    }
}

/// `password` in Unicode normalization form C; ASCII (and text already in NFC) as it is. A
/// form longer than a password may be (NFC can lengthen some scripts' text) is not taken:
/// the text stays as typed, so what is hashed can always be verified again.
pub(crate) fn nfc(password: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::UnicodeNormalization;
    if password.is_ascii() || unicode_normalization::is_nfc(password) {
        return std::borrow::Cow::Borrowed(password);
    }
    let normal: String = password.nfc().collect();
    if normal.len() > MAX_PASSWORD_BYTES {
        std::borrow::Cow::Borrowed(password)
    } else {
        std::borrow::Cow::Owned(normal)
    }
}

/// Hashes and verifies passwords with the configured parameters.
#[derive(Debug)]
pub(crate) struct Passwords {
    params: argon2::Params,
    // A PHC string with the configured parameters and an arbitrary salt and output: verifying
    // against it costs one real hash, and building it costs none.
    dummy: String,
}

impl Passwords {
    pub(crate) fn new(p: PasswordParams) -> Result<Self> {
        let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, None)
            .map_err(|e| Error::invalid("password parameters", e.to_string()))?;
        // Its own hashes must stay within what a stored hash may ask of a login.
        let work = u64::from(p.memory_kib) * u64::from(p.iterations);
        if p.memory_kib > MAX_ARGON2_KIB || work > MAX_ARGON2_WORK {
            return Err(Error::invalid(
                "password parameters",
                format!(
                    "m={} KiB and t={} ask for more than a login may cost: at most \
                     {MAX_ARGON2_KIB} KiB and {MAX_ARGON2_WORK} KiB×passes",
                    p.memory_kib, p.iterations
                ),
            ));
        }
        let dummy = format!(
            "$argon2id$v=19$m={},t={},p={}$cmVka2VlcC10aW1pbmc$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            p.memory_kib, p.iterations, p.parallelism
        );
        Ok(Passwords { params, dummy })
    }

    pub(crate) fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string for `password` (in its NFC form), after checking it against the rules
    /// for new passwords.
    pub(crate) fn hash(&self, password: &str) -> Result<String> {
        let password = nfc(password);
        validate_password(&password)?;
        self.hash_verified(&password)
    }

    /// A PHC string for a password that was just verified against its stored hash (a login
    /// moving an adopted or older hash to the current parameters, or to the NFC form). The
    /// rules for new passwords are not applied: an application adopted with shorter
    /// passwords keeps them.
    pub(crate) fn hash_verified(&self, password: &str) -> Result<String> {
        self.argon2()
            .hash_password(nfc(password).as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::invalid("password", format!("cannot hash it: {e}")))
    }

    /// Whether `password` matches the stored hash, whichever scheme made it. A malformed
    /// hash never matches. The verifiers compare outputs in constant time.
    #[cfg(any(test, feature = "adopt"))]
    pub(crate) fn verify(&self, password: &str, stored: &str) -> bool {
        self.verify_form(password, stored).is_some()
    }

    /// [`Passwords::verify`], saying in which form the password matched: `Some(true)` in its
    /// NFC form (the one hashes are made of), `Some(false)` only as typed (a hash made
    /// before passwords were normalised, or by an adopted application, of text typed in
    /// another form: a rehash moves it to NFC). The same text typed composed or decomposed
    /// (`ä` as one character or as `a` and a combining mark, as some keyboards send it) is
    /// thus one password.
    pub(crate) fn verify_form(&self, password: &str, stored: &str) -> Option<bool> {
        let normal = nfc(password);
        if self.verify_exact(&normal, stored) {
            return Some(true);
        }
        if normal != password && self.verify_exact(password, stored) {
            return Some(false);
        }
        None
    }

    fn verify_exact(&self, password: &str, stored: &str) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            self.burn();
            return false;
        }
        match parse(stored) {
            Some(Scheme::Argon2(parsed)) => self
                .argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Some(Scheme::Bcrypt(hash)) => bcrypt::verify(password, hash).unwrap_or(false),
            Some(Scheme::SaltedBcrypt { salt, hash }) => {
                let mut salted = password.as_bytes().to_vec();
                salted.extend_from_slice(&salt);
                bcrypt::verify(&salted, hash).unwrap_or(false)
            }
            Some(Scheme::Pbkdf2(parsed)) => pbkdf2::Pbkdf2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            None => false,
        }
    }

    /// Whether `phc` was made with other parameters or algorithm than the configured ones.
    pub(crate) fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        if parsed.algorithm.as_str() != "argon2id" {
            return true;
        }
        match argon2::Params::try_from(&parsed) {
            Ok(p) => {
                p.m_cost() != self.params.m_cost()
                    || p.t_cost() != self.params.t_cost()
                    || p.p_cost() != self.params.p_cost()
            }
            Err(_) => true,
        }
    }

    /// Does the work of one verification against a throwaway hash, so an unknown account
    /// costs the same time as a known one.
    pub(crate) fn burn(&self) {
        let _ = self.verify_exact("not-the-password", &self.dummy);
    }

    /// The work a wrong `password` costs a known account ([`Passwords::verify_form`]: two
    /// verifications for text not in NFC, one otherwise), against a throwaway hash: an
    /// unknown or locked account is not told apart by the time a guess takes.
    pub(crate) fn burn_for(&self, password: &str) {
        self.burn();
        if nfc(password) != password {
            self.burn();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored argon2 hash asking for more work than a login may cost never matches (so a
    /// login cannot be made to spin or to allocate without bound) and is not recognised.
    #[test]
    fn an_argon2_hash_beyond_the_cost_limits_is_refused() {
        let fast = Passwords::new(PasswordParams::INSECURE_FAST).unwrap();
        let phc = fast.hash("correct horse").unwrap();
        assert!(recognise(&phc).is_ok());
        let parsed = PasswordHash::new(&phc).unwrap();
        let (salt, hash) = (parsed.salt.unwrap(), parsed.hash.unwrap());
        for params in [
            "m=8,t=4000000000,p=1",
            "m=2097152,t=1,p=1",
            "m=1048576,t=5,p=1",
        ] {
            let costly = format!("$argon2id$v=19${params}${salt}${hash}");
            assert!(PasswordHash::new(&costly).is_ok(), "{costly}");
            assert!(!fast.verify("correct horse", &costly));
            let why = recognise(&costly).unwrap_err();
            assert!(why.contains("at most"), "{why}");
        }
        // libsodium's "sensitive" level is the limit itself.
        let sensitive = format!("$argon2id$v=19$m=1048576,t=4,p=1${salt}${hash}");
        assert!(recognise(&sensitive).is_ok());
        // Its own parameters must stay within it: every hash it wrote would never match.
        for (m, t) in [(2_097_152, 1), (262_144, 20)] {
            let params = PasswordParams {
                memory_kib: m,
                iterations: t,
                parallelism: 1,
            };
            let err = Passwords::new(params).unwrap_err();
            assert!(
                err.to_string().contains("more than a login may cost"),
                "{err}"
            );
        }
        assert!(
            Passwords::new(PasswordParams {
                memory_kib: 1_048_576,
                iterations: 4,
                parallelism: 1
            })
            .is_ok()
        );
    }

    #[test]
    fn hashes_verify_and_detect_parameter_changes() {
        let fast = Passwords::new(PasswordParams::INSECURE_FAST).unwrap();
        let phc = fast.hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(fast.verify("correct horse", &phc));
        assert!(!fast.verify("wrong horse!", &phc));
        assert!(!fast.needs_rehash(&phc));
        let other = Passwords::new(PasswordParams {
            memory_kib: 16,
            ..PasswordParams::INSECURE_FAST
        })
        .unwrap();
        assert!(other.needs_rehash(&phc));
        assert!(other.verify("correct horse", &phc));
        assert!(!fast.verify("x", "not a phc string"));
        // The equaliser's string parses, so it costs a real verification.
        assert!(PasswordHash::new(&fast.dummy).is_ok());
    }

    #[test]
    fn adopted_hashes_verify_and_ask_for_a_rehash() {
        use argon2::password_hash::PasswordHasher as _;
        let fast = Passwords::new(PasswordParams::INSECURE_FAST).unwrap();
        let bcrypt = bcrypt::hash("old secret", 4).unwrap();
        let salted = salted_bcrypt("pepper", &bcrypt::hash("old secretpepper", 4).unwrap());
        let pbkdf2 = pbkdf2::Pbkdf2::new(
            pbkdf2::Algorithm::Pbkdf2Sha256,
            pbkdf2::Params::new(1000).unwrap(),
        )
        .hash_password_with_salt(b"old secret", b"saltsaltsaltsalt")
        .unwrap()
        .to_string();
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            argon2::Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password_with_salt(b"old secret", b"saltsaltsaltsalt")
        .unwrap()
        .to_string();
        for stored in [&bcrypt, &salted, &pbkdf2, &argon2i] {
            assert!(recognise(stored).is_ok(), "{stored}");
            assert!(fast.verify("old secret", stored), "{stored}");
            assert!(!fast.verify("old secreT", stored), "{stored}");
            assert!(fast.needs_rehash(stored), "{stored}");
        }
        assert_eq!(scheme(&bcrypt).0, "bcrypt");
        assert_eq!(
            scheme(&salted),
            ("bcrypt+salt".to_string(), "cost=04".to_string())
        );
        assert_eq!(scheme(&pbkdf2).0, "pbkdf2-sha256");
        for bad in ["", "hunter2", "$md5$abc$def", "$2b$12$short"] {
            assert!(recognise(bad).is_err(), "{bad:?}");
            assert!(!fast.verify("hunter2", bad));
        }
        // A scheme redkeep reads, in a broken string, is called malformed, not unsupported.
        for (bad, says) in [
            ("$argon2id$v=19$m=19456", "argon2id hash is malformed"),
            ("$2b$12$short", "2b hash is malformed"),
            ("$md5$abc$def", "scheme \"md5\" is not supported"),
            (
                "$2x$12$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE",
                "\"2x\" is not supported",
            ),
            ("$pbkdf2$1000$c2FsdA$aGFzaA", "\"pbkdf2\" is not supported"),
            (
                "$pbkdf2-sha256$i=99999999$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
                "99999999 rounds",
            ),
        ] {
            let why = recognise(bad).unwrap_err();
            assert!(why.contains(says), "{bad}: {why}");
        }
    }

    /// Text whose NFC form is longer than a password may be (U+0958 is 3 bytes, and 6 in
    /// NFC) is hashed as typed, and verifies again: it never locks its user out.
    #[test]
    fn a_password_whose_nfc_form_is_too_long_is_kept_as_typed() {
        let pw = Passwords::new(PasswordParams::INSECURE_FAST).unwrap();
        let typed = "\u{958}".repeat(300);
        assert_eq!(typed.len(), 900);
        let long: String = {
            use unicode_normalization::UnicodeNormalization;
            typed.nfc().collect()
        };
        assert!(long.len() > MAX_PASSWORD_BYTES, "{}", long.len());
        let hash = pw.hash(&typed).unwrap();
        assert_eq!(pw.verify_form(&typed, &hash), Some(true));
        // A shorter text of the same kind takes its NFC form, and both forms verify.
        let short = "\u{958}".repeat(100);
        let short_nfc: String = {
            use unicode_normalization::UnicodeNormalization;
            short.nfc().collect()
        };
        let hash = pw.hash(&short).unwrap();
        assert_eq!(pw.verify_form(&short_nfc, &hash), Some(true));
        assert_eq!(pw.verify_form(&short, &hash), Some(true));
    }

    #[test]
    fn length_rules_hold() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("        ").is_err());
        assert!(validate_password(&"\u{200b}".repeat(10)).is_err());
        assert!(validate_password("\u{3000}\u{3000}\u{3000}").is_err());
        assert!(validate_password("correct\0horse").is_err());
        assert!(validate_password("correct\thorse").is_err());
        assert!(validate_password(" correct horse ").is_ok());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"x".repeat(1024)).is_ok());
        assert!(validate_password(&"x".repeat(1025)).is_err());
    }
}
