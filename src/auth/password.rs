//! Password hashing with argon2id: PHC strings, OWASP parameters by default, rehash detection,
//! and equal work for unknown accounts so response time does not reveal which emails exist.
//!
//! Hashes adopted from other systems keep working until the next successful login replaces
//! them with argon2id: bcrypt (`$2a$`, `$2b$`, `$2y$`), bcrypt over the password followed by a
//! separately stored salt (kept as `$rk-salted-bcrypt$<salt hex>$<bcrypt hash>`), and PHC
//! strings of argon2 (`argon2id`, `argon2i`, `argon2d`) and PBKDF2 (`pbkdf2-sha256`,
//! `pbkdf2-sha512`), and Werkzeug's scrypt form (`scrypt:N:r:p$SALT$HEX`, the default of
//! Flask/Werkzeug 2.3 and later).

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
/// The highest bcrypt cost an adopted hash may have. Cost `c` is 2^c rounds: cost 12 (the
/// usual default) takes about a quarter of a second, so 16 takes about four, in line with the
/// argon2 and PBKDF2 caps below and above; 31, which bcrypt itself allows, would take a day
/// and a half per login. The least is bcrypt's own (4): no verifier takes less.
const MAX_BCRYPT_COST: u32 = 16;
const MIN_BCRYPT_COST: u32 = 4;

/// The most memory (KiB) an argon2 hash may ask for: 1 GiB, libsodium's "sensitive" level.
const MAX_ARGON2_KIB: u32 = 1 << 20;
/// The most argon2 work (memory in KiB times passes) one login may cost: libsodium's
/// "sensitive" level (1 GiB, 4 passes). Bounds what a stored hash can make a login do.
const MAX_ARGON2_WORK: u64 = 4 << 20;

/// A decimal parameter of a PHC string as written (wider than the crates' `u32`, so that a
/// value past it is still named as too costly rather than malformed).
fn raw_param(parsed: &PasswordHash, name: &str) -> Option<u64> {
    parsed
        .params
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .and_then(|(_, v)| v.as_str().parse::<u64>().ok())
}

/// Why an argon2 hash asks for more than a login may cost, if it does (its parameters as
/// written; those left out take argon2's defaults, which are far below the limits).
fn argon2_too_costly(parsed: &PasswordHash) -> Option<String> {
    let m = raw_param(parsed, "m").unwrap_or(u64::from(argon2::Params::DEFAULT_M_COST));
    let t = raw_param(parsed, "t").unwrap_or(u64::from(argon2::Params::DEFAULT_T_COST));
    let work = m.saturating_mul(t);
    (m > u64::from(MAX_ARGON2_KIB) || work > MAX_ARGON2_WORK).then(|| {
        format!(
            "the argon2 hash asks for m={m} KiB and t={t}; at most {MAX_ARGON2_KIB} KiB and \
             {MAX_ARGON2_WORK} KiB×passes are accepted (every login would pay for them)"
        )
    })
}

/// The bytes of a password bcrypt reads; it ignores the rest.
const BCRYPT_MAX_BYTES: usize = 72;

/// A stored hash, taken apart.
enum Scheme<'a> {
    Bcrypt(&'a str),
    SaltedBcrypt {
        salt: Vec<u8>,
        hash: &'a str,
    },
    Argon2(PasswordHash),
    Pbkdf2(PasswordHash),
    /// Werkzeug's `scrypt:N:r:p$SALT$HEX`: the salt is used as its UTF-8 text.
    Scrypt {
        params: scrypt::Params,
        salt: &'a str,
        hash: Vec<u8>,
    },
}

/// The most memory (bytes) a scrypt hash may ask for (`128·N·r`): 1 GiB, as for argon2.
const MAX_SCRYPT_BYTES: u64 = 1 << 30;
/// The most scrypt work (`128·N·r·p`, bytes mixed) one login may cost: 4 GiB, as argon2's
/// limit in memory times passes.
const MAX_SCRYPT_WORK: u64 = 4 << 30;

/// Takes Werkzeug's scrypt form apart (`scrypt:N:r:p$SALT$HEX`, as `generate_password_hash`
/// writes it: `hashlib.scrypt` of the password over the salt's UTF-8 text, output in hex).
fn werkzeug_scrypt(stored: &str) -> std::result::Result<Scheme<'_>, String> {
    let malformed = || {
        "the Werkzeug scrypt hash is malformed (scrypt:N:r:p$SALT$HEX with a hex output); \
         copy the whole string from the source"
            .to_string()
    };
    let mut parts = stored.splitn(3, '$');
    let (Some(method), Some(salt), Some(out)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed());
    };
    let nums: Vec<u64> = method
        .strip_prefix("scrypt:")
        .unwrap_or_default()
        .split(':')
        .map(|n| n.parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| malformed())?;
    let [n, r, p] = nums[..] else {
        return Err(malformed());
    };
    let hash = unhex(out).ok_or_else(malformed)?;
    // hashlib's output is 64 bytes; shorter ones are still checked in full.
    if salt.is_empty() || !(16..=64).contains(&hash.len()) {
        return Err(malformed());
    }
    if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
        return Err(format!(
            "no password can match the Werkzeug scrypt hash: N={n}, r={r}, p={p} (N must be a \
             power of two above 1, r and p at least 1); copy the whole string from the source"
        ));
    }
    let memory = n.saturating_mul(128).saturating_mul(r);
    if memory > MAX_SCRYPT_BYTES || memory.saturating_mul(p) > MAX_SCRYPT_WORK {
        return Err(format!(
            "the Werkzeug scrypt hash asks for N={n}, r={r}, p={p}; at most {MAX_SCRYPT_BYTES} \
             bytes (128·N·r) and {MAX_SCRYPT_WORK} bytes of work (128·N·r·p) are accepted \
             (every login would pay for them)"
        ));
    }
    // Within the limits above, r and p are far below what `Params` refuses.
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r as u32, p as u32)
        .map_err(|_| malformed())?;
    Ok(Scheme::Scrypt { params, salt, hash })
}

/// The name of a hash form redkeep does not verify but can tell, when `stored` is one: named
/// in the refusal rather than "plain text or an unknown format".
fn foreign_form(stored: &str) -> Option<&'static str> {
    const FORMS: [(&str, &str); 9] = [
        (
            "pbkdf2_sha256$",
            "Django's PBKDF2 form (pbkdf2_sha256$ROUNDS$SALT$HASH)",
        ),
        (
            "pbkdf2_sha1$",
            "Django's PBKDF2 form (pbkdf2_sha1$ROUNDS$SALT$HASH)",
        ),
        (
            "pbkdf2:",
            "Werkzeug's PBKDF2 form (pbkdf2:sha256:ROUNDS$SALT$HASH)",
        ),
        ("$6$", "SHA-512 crypt ($6$, glibc's crypt(3))"),
        ("$5$", "SHA-256 crypt ($5$, glibc's crypt(3))"),
        ("$1$", "MD5 crypt ($1$)"),
        (
            "$bcrypt-sha256$",
            "passlib's bcrypt-sha256 form ($bcrypt-sha256$…)",
        ),
        (
            "bcrypt_sha256$",
            "Django's bcrypt-sha256 form (bcrypt_sha256$…)",
        ),
        ("argon2$", "Django's argon2 form (argon2$argon2id$…)"),
    ];
    if let Some((_, name)) = FORMS.iter().find(|(p, _)| stored.starts_with(p)) {
        return Some(name);
    }
    let mut parts = stored.split('$');
    let passlib = parts.next() == Some("")
        && parts.next().is_some_and(|id| id.starts_with("pbkdf2"))
        && parts
            .next()
            .is_some_and(|rounds| !rounds.is_empty() && rounds.bytes().all(|b| b.is_ascii_digit()));
    passlib.then_some("passlib's PBKDF2 form ($pbkdf2-sha256$ROUNDS$SALT$HASH, its own base64)")
}

/// `hash` if it is a bcrypt hash the verifier takes (the same parsing: 60 characters, a
/// cost, a salt and a hash in bcrypt's base64) at a cost a login may pay; else why not.
fn bcrypt_hash(hash: &str) -> std::result::Result<&str, String> {
    let Some(prefix) = BCRYPT_PREFIXES.iter().find(|p| hash.starts_with(*p)) else {
        return Err(
            "the salted bcrypt hash does not end in a bcrypt hash ($2a$, $2b$ or $2y$); copy the whole string from the source"
                .into(),
        );
    };
    let name = &prefix[1..3];
    let parts: bcrypt::HashParts = hash.parse().map_err(|e| {
        format!(
            "the {name} hash is malformed ({e}); copy the whole string from the source (60 characters)"
        )
    })?;
    let cost = parts.get_cost();
    if cost < MIN_BCRYPT_COST {
        return Err(format!(
            "the bcrypt hash has cost {cost}, below bcrypt's least ({MIN_BCRYPT_COST}): no \
             password can match it"
        ));
    }
    if cost > MAX_BCRYPT_COST {
        return Err(format!(
            "the bcrypt hash has cost {cost}; at most {MAX_BCRYPT_COST} is accepted (every \
             login would pay 2^{cost} rounds)"
        ));
    }
    Ok(hash)
}

/// Takes a stored hash apart with the parsing its verifier uses, so that what is taken can
/// be verified: a hash no password can ever match (parameters the verifier refuses, an
/// output of the wrong length) or one asking for more work than a login may cost is refused
/// with a sentence saying why.
fn parse(stored: &str) -> std::result::Result<Scheme<'_>, String> {
    if stored.is_empty() {
        return Err("the password hash is empty".into());
    }
    if stored.starts_with("scrypt:") {
        return werkzeug_scrypt(stored);
    }
    if let Some(form) = foreign_form(stored) {
        let rewrite = if form.contains("PBKDF2") {
            " (or write it in the PHC form in the mapping's query: \
             $pbkdf2-sha256$i=ROUNDS,l=32$SALT$HASH, salt and hash in base64 without padding)"
        } else {
            ""
        };
        return Err(format!(
            "the password hash is {form}, which redkeep cannot verify{rewrite}"
        ));
    }
    if !stored.starts_with('$') {
        return Err(
            "the password field does not hold a hash (plain text or an unknown format); it is never stored as it is"
                .into(),
        );
    }
    if BCRYPT_PREFIXES.iter().any(|p| stored.starts_with(p)) {
        return bcrypt_hash(stored).map(Scheme::Bcrypt);
    }
    if let Some(rest) = stored.strip_prefix(SALTED_BCRYPT) {
        // `<salt hex>$2b$…`: the bcrypt hash keeps its own leading `$`.
        let salt_hex = rest.split('$').next().unwrap_or_default();
        let salt = unhex(salt_hex).filter(|s| !s.is_empty()).ok_or_else(|| {
            "the salted bcrypt hash's salt is not hex text; copy the whole string from the source"
                .to_string()
        })?;
        let hash = bcrypt_hash(&rest[salt_hex.len()..])?;
        return Ok(Scheme::SaltedBcrypt { salt, hash });
    }
    let name = stored
        .trim_start_matches('$')
        .split('$')
        .next()
        .unwrap_or("");
    let argon2 = matches!(name, "argon2id" | "argon2i" | "argon2d");
    if !argon2 && !matches!(name, "pbkdf2-sha256" | "pbkdf2-sha512") {
        return Err(format!(
            "the hash scheme {name:?} is not supported (use bcrypt, argon2 or PBKDF2 PHC strings)"
        ));
    }
    let malformed = || {
        format!(
            "the {name} hash is malformed (a part is missing, cut short or out of range); copy the whole string from the source"
        )
    };
    let parsed = PasswordHash::new(stored).map_err(|_| malformed())?;
    // The PHC grammar allows a string without salt or hash; no password matches such a one.
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(malformed());
    }
    // The parameters are named (never the salt or the output).
    let never = |e: &dyn std::fmt::Display| {
        format!(
            "no password can match the {name} hash: its verifier refuses it ({e}; the hash \
             says {:?}); copy the whole string from the source",
            parsed.params.as_str()
        )
    };
    if argon2 {
        if let Some(why) = argon2_too_costly(&parsed) {
            return Err(why);
        }
        // What `verify_password` parses: the parameters, the version, the salt's length.
        argon2::Params::try_from(&parsed).map_err(|e| never(&e))?;
        if let Some(v) = parsed.version {
            Version::try_from(v).map_err(|e| never(&e))?;
        }
        if parsed
            .salt
            .as_ref()
            .is_some_and(|s| s.as_ref().len() < argon2::MIN_SALT_LEN)
        {
            return Err(never(&"the salt is too short"));
        }
        return Ok(Scheme::Argon2(parsed));
    }
    // The round count is required: without it, the verifier would guess its default.
    let Some(rounds) = raw_param(&parsed, "i") else {
        return Err(format!(
            "the {name} hash does not say its rounds (i=…); copy the whole string from the source"
        ));
    };
    if rounds > u64::from(MAX_PBKDF2_ROUNDS) {
        return Err(format!(
            "the {name} hash asks for {rounds} rounds; at most {MAX_PBKDF2_ROUNDS} are accepted (every login would pay for them)"
        ));
    }
    // What `verify_password` parses: at least 1000 rounds, an output of the length `l`
    // says (32 bytes without it), no version.
    pbkdf2::Params::try_from(&parsed).map_err(|e| never(&e))?;
    Ok(Scheme::Pbkdf2(parsed))
}

/// Checks that `stored` is a password hash redkeep can verify (argon2, bcrypt, PBKDF2 PHC),
/// for hashes adopted from another system: the verifier's own parsing takes it, and it asks
/// for no more work than a login may cost.
///
/// # Errors
/// A sentence naming what the hash looks like instead (plain text, an unknown scheme, a
/// malformed string, parameters no verification can use or that cost too much).
pub(crate) fn recognise(stored: &str) -> std::result::Result<(), String> {
    parse(stored).map(|_| ())
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
        Ok(Scheme::Bcrypt(h)) => return ("bcrypt".into(), bcrypt_cost(h)),
        Ok(Scheme::SaltedBcrypt { hash, .. }) => {
            return ("bcrypt+salt".into(), bcrypt_cost(hash));
        }
        Ok(Scheme::Scrypt { params, .. }) => {
            return (
                "scrypt".into(),
                format!("n={},r={},p={}", params.n(), params.r(), params.p()),
            );
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

/// The form of `password` other than [`nfc`]'s that a hash may hold: the text as typed when
/// that is not the NFC form, else its NFD form (`e` and a combining accent for `é`, as some
/// keyboards send it) when that differs and is not longer than a password may be. `None`
/// for ASCII and other text with one form.
fn other_form(password: &str) -> Option<std::borrow::Cow<'_, str>> {
    use unicode_normalization::UnicodeNormalization;
    if password.is_ascii() {
        return None;
    }
    if nfc(password) != password {
        return Some(std::borrow::Cow::Borrowed(password));
    }
    if unicode_normalization::is_nfd(password) {
        return None;
    }
    let decomposed: String = password.nfd().collect();
    (decomposed.len() <= MAX_PASSWORD_BYTES).then_some(std::borrow::Cow::Owned(decomposed))
}

/// How many password hashes may run at once by default: one per core. Each argon2 hash
/// holds its `m` KiB (19 MiB at OWASP's parameters) while it runs; more at once than cores
/// finish no sooner, and a flood of logins would otherwise hold one allocation per thread
/// (the async facade's blocking pool grows to 512).
pub fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A counting gate: at most `limit` closures run through it at once, the others wait.
#[derive(Debug)]
pub(crate) struct HashGate {
    limit: usize,
    /// Running, and waiting.
    counts: std::sync::Mutex<(usize, usize)>,
    freed: std::sync::Condvar,
}

impl HashGate {
    pub(crate) fn new(limit: usize) -> HashGate {
        HashGate {
            limit: limit.max(1),
            counts: std::sync::Mutex::new((0, 0)),
            freed: std::sync::Condvar::new(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` once fewer than `limit` others run. `f` must not wait on anything another
    /// holder of the gate may wait for (it hashes; it takes no lock), so the gate never
    /// deadlocks whatever its callers hold.
    pub(crate) fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Leave<'g>(&'g HashGate);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.counts().0 -= 1;
                self.0.freed.notify_one();
            }
        }
        {
            let mut counts = self.counts();
            counts.1 += 1;
            while counts.0 >= self.limit {
                counts = self.freed.wait(counts).unwrap_or_else(|e| e.into_inner());
            }
            counts.1 -= 1;
            counts.0 += 1;
        }
        let _leave = Leave(self);
        f()
    }

    /// How many wait to run (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.counts().1
    }
}

/// Hashes and verifies passwords with the configured parameters.
#[derive(Debug)]
pub(crate) struct Passwords {
    params: argon2::Params,
    // A PHC string with the configured parameters and an arbitrary salt and output: verifying
    // against it costs one real hash, and building it costs none.
    dummy: String,
    /// The cost profiles of the store's other hashes (see [`Profiles`]).
    others: Profiles,
    /// Bounds the hashes running at once (and so the memory they hold).
    gate: HashGate,
}

/// The cost profiles (scheme and parameters: bcrypt's cost, PBKDF2's rounds, scrypt's N, r
/// and p, argon2's m, t and p) the store's hashes have besides the handle's own argon2, each
/// with one stored hash of that profile to verify a throwaway password against. A failed
/// login verifies one hash of every profile (its own and a stand-in of each other), so its
/// time does not tell an adopted account, or an unknown login, from the others. `None`
/// until the store's credentials were read (at the first login): a profile left here after
/// its last hash was rehashed costs time, never a leak.
#[derive(Default)]
struct Profiles(std::sync::RwLock<Option<std::collections::BTreeMap<String, String>>>);

impl std::fmt::Debug for Profiles {
    // The profiles, never the hashes standing for them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.0.read().unwrap_or_else(|e| e.into_inner());
        f.debug_list()
            .entries(held.iter().flat_map(|m| m.keys()))
            .finish()
    }
}

/// The cost profile of a stored hash (`scheme` and parameters), `None` for one no scheme
/// reads (verifying it costs the handle's own dummy: see [`Passwords::verify_exact`]).
fn profile(stored: &str) -> Option<String> {
    parse(stored).ok()?;
    let (algorithm, params) = scheme(stored);
    Some(format!("{algorithm} {params}"))
}

#[cfg(test)]
thread_local! {
    /// The cost profile of each hash this thread verified, in order (for tests that count
    /// the work of a login).
    pub(crate) static HASHES_VERIFIED: std::cell::RefCell<Vec<String>> =
        const { std::cell::RefCell::new(Vec::new()) };
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
        Ok(Passwords {
            params,
            dummy,
            others: Profiles::default(),
            gate: HashGate::new(default_hash_concurrency()),
        })
    }

    /// These passwords with at most `limit` hashes running at once (at least one).
    pub(crate) fn limited(mut self, limit: usize) -> Self {
        self.gate = HashGate::new(limit);
        self
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
        let password = nfc(password);
        self.gate
            .run(|| self.argon2().hash_password(password.as_bytes()))
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
    /// NFC form (the one hashes are made of), `Some(false)` in the other form
    /// ([`other_form`]: a hash made before passwords were normalised, or by an adopted
    /// application, of text typed decomposed or composed; a rehash moves it to NFC). The
    /// same text typed composed or decomposed (`ä` as one character or as `a` and a
    /// combining mark, as some keyboards send it) is thus one password, whichever form the
    /// old hash holds. An adopted hash (bcrypt, PBKDF2, scrypt) is tried with the bytes as
    /// typed first, as the old application hashed them; an argon2 hash with the NFC form
    /// first, as redkeep makes them.
    pub(crate) fn verify_form(&self, password: &str, stored: &str) -> Option<bool> {
        let normal = nfc(password);
        let other = other_form(password);
        let adopted = !matches!(parse(stored), Ok(Scheme::Argon2(_)));
        let forms = match &other {
            Some(o) if adopted && o == password => [Some(o), Some(&normal)],
            _ => [Some(&normal), other.as_ref()],
        };
        forms
            .into_iter()
            .flatten()
            .find(|form| self.verify_exact(form, stored))
            .map(|form| *form == normal)
    }

    fn verify_exact(&self, password: &str, stored: &str) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            self.burn();
            return false;
        }
        let scheme = parse(stored);
        // A hash no password matches (an account adopted or repaired without a password)
        // costs a verification all the same: its refusal is not told apart by its time.
        if scheme.is_err() {
            self.burn();
            return false;
        }
        #[cfg(test)]
        HASHES_VERIFIED.with_borrow_mut(|v| v.push(profile(stored).unwrap_or_default()));
        self.gate.run(|| match scheme {
            Ok(Scheme::Argon2(parsed)) => self
                .argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Ok(Scheme::Bcrypt(hash)) => bcrypt::verify(password, hash).unwrap_or(false),
            Ok(Scheme::SaltedBcrypt { salt, hash }) => {
                let mut salted = password.as_bytes().to_vec();
                salted.extend_from_slice(&salt);
                bcrypt::verify(&salted, hash).unwrap_or(false)
            }
            Ok(Scheme::Pbkdf2(parsed)) => pbkdf2::Pbkdf2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Ok(Scheme::Scrypt { params, salt, hash }) => {
                use subtle::ConstantTimeEq;
                let mut out = vec![0_u8; hash.len()];
                scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut out).is_ok()
                    && bool::from(out.ct_eq(&hash))
            }
            Err(_) => false,
        })
    }

    /// Whether the bcrypt hash `stored` (an adopted one) ignored part of `password`: bcrypt
    /// reads only the first 72 bytes (the salt appended included), so another password
    /// sharing them matched too. Such a password is not rehashed at login: the new hash
    /// would hold the password as typed, and the owner's own would stop working.
    /// Any form a login may have matched in counts ([`Passwords::verify_form`]).
    pub(crate) fn bcrypt_cut_short(password: &str, stored: &str) -> bool {
        let longest = [Some(nfc(password)), other_form(password)]
            .into_iter()
            .flatten()
            .map(|f| f.len())
            .max()
            .unwrap_or(0)
            .max(password.len());
        match parse(stored) {
            Ok(Scheme::Bcrypt(_)) => longest > BCRYPT_MAX_BYTES,
            Ok(Scheme::SaltedBcrypt { salt, .. }) => longest + salt.len() > BCRYPT_MAX_BYTES,
            _ => false,
        }
    }

    /// Whether `phc` is weaker than what the configured parameters make, so that a login
    /// should replace it: an adopted format (bcrypt, PBKDF2, argon2i or argon2d), an argon2id
    /// hash of an older argon2 version, or one the configured parameters beat in memory or
    /// in work (memory times iterations) without losing in the other. Any other hash is
    /// kept: a handle opened with cheaper parameters (a worker on the defaults, a shell with
    /// test settings) never rehashes a stored password down to them, and two deployments
    /// with different settings do not rehash the same accounts back and forth.
    ///
    /// Parallelism is not compared: every lane is computed for each guess, so an attacker's
    /// memory and work per guess are `m` and `m×t` whatever the lane count; it only decides
    /// how many cores the defender spreads them on. (A rehash for a lane count alone could
    /// lower the memory of a hash stronger in every other way.)
    pub(crate) fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        if parsed.algorithm.as_str() != "argon2id" || parsed.version != Some(0x13) {
            return true;
        }
        match argon2::Params::try_from(&parsed) {
            Ok(p) => {
                // Only a rehash that gives up nothing: the configured parameters at least
                // the stored ones in memory and in work, and more in one of them. A hash
                // stronger in one and weaker in the other is kept.
                let work = |m: u32, t: u32| u64::from(m) * u64::from(t);
                let (m, w) = (p.m_cost(), work(p.m_cost(), p.t_cost()));
                let (cm, cw) = (
                    self.params.m_cost(),
                    work(self.params.m_cost(), self.params.t_cost()),
                );
                cm >= m && cw >= w && (cm > m || cw > w)
            }
            Err(_) => true,
        }
    }

    /// Does the work of one verification against a throwaway hash, so an unknown account
    /// costs the same time as a known one.
    pub(crate) fn burn(&self) {
        let _ = self.verify_exact("not-the-password", &self.dummy);
    }

    /// Whether the cost profiles of the store's hashes are known ([`Passwords::learn`]).
    pub(crate) fn knows_profiles(&self) -> bool {
        self.others
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Takes the cost profiles of `stored` (the store's hashes) as the ones a failed login
    /// does the work of, besides the handle's own.
    pub(crate) fn learn<'a>(&self, stored: impl IntoIterator<Item = &'a str>) {
        let own = profile(&self.dummy);
        let mut others = std::collections::BTreeMap::new();
        for hash in stored {
            if let Some(p) = profile(hash).filter(|p| Some(p) != own.as_ref()) {
                others.entry(p).or_insert_with(|| hash.to_string());
            }
        }
        *self.others.0.write().unwrap_or_else(|e| e.into_inner()) = Some(others);
    }

    /// Forgets the cost profiles, for the next login to read them again (after hashes of
    /// other profiles were written: an import).
    pub(crate) fn forget_profiles(&self) {
        *self.others.0.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The work a wrong `password` costs a known account ([`Passwords::verify_form`]: two
    /// verifications for text with two forms, one otherwise), against a throwaway hash of
    /// each cost profile: an unknown or locked account is not told apart by the time a guess
    /// takes.
    pub(crate) fn burn_for(&self, password: &str) {
        self.burn_besides(password, None);
    }

    /// After [`Passwords::verify_form`] of `password` against `stored`: the work of the
    /// cost profiles `stored` does not have, so that the attempt costs what
    /// [`Passwords::burn_for`] does.
    pub(crate) fn burn_rest(&self, password: &str, stored: &str) {
        self.burn_besides(password, Some(stored));
    }

    /// For each form of `password`, a verification of every cost profile but the one
    /// verifying that form against `stored` cost.
    fn burn_besides(&self, password: &str, stored: Option<&str>) {
        let own = profile(&self.dummy);
        let normal = nfc(password);
        let other = other_form(password);
        let others = self
            .others
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for form in std::iter::once(&normal).chain(other.as_ref()) {
            // What verifying this form cost: a hash no scheme reads, or an overlong
            // password, costs the handle's own dummy.
            let done = stored.map(|s| {
                profile(s)
                    .filter(|_| form.len() <= MAX_PASSWORD_BYTES)
                    .or_else(|| own.clone())
            });
            if done.as_ref() != Some(&own) {
                self.burn();
            }
            for (p, hash) in others.iter().flatten() {
                if !matches!(&done, Some(Some(d)) if d == p) {
                    let _ = self.verify_exact("not-the-password", hash);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At most `limit` closures run through the gate at once; the next one runs when one of
    /// them ends.
    #[test]
    fn the_hash_gate_runs_at_most_its_limit_at_once() {
        let gate = std::sync::Arc::new(HashGate::new(2));
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let mut releases = Vec::new();
        let mut threads = Vec::new();
        for i in 0..3 {
            let (release_tx, release) = std::sync::mpsc::channel::<()>();
            releases.push(release_tx);
            let (gate, entered_tx) = (gate.clone(), entered_tx.clone());
            threads.push(std::thread::spawn(move || {
                gate.run(|| {
                    entered_tx.send(i).unwrap();
                    release.recv().unwrap();
                });
            }));
        }
        let first: Vec<i32> = (0..2).map(|_| entered.recv().unwrap()).collect();
        // The third waits at the gate, not inside it.
        while gate.waiting() < 1 {
            if let Ok(third) = entered.try_recv() {
                panic!("{third} ran beside {first:?}");
            }
            std::thread::yield_now();
        }
        assert!(entered.try_recv().is_err(), "a third ran beside {first:?}");
        releases[usize::try_from(first[0]).unwrap()]
            .send(())
            .unwrap();
        let third = entered.recv().unwrap();
        assert!(!first.contains(&third));
        for r in &releases {
            let _ = r.send(());
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(gate.waiting(), 0);
    }

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
        use argon2::password_hash::PasswordHasher as _;
        // Never downward: a hash with more memory, or as much and more passes, or other
        // lanes, is kept by cheaper settings.
        let strong = other.hash("correct horse").unwrap();
        assert!(!fast.needs_rehash(&strong));
        for (m, t, p) in [(16, 1, 2), (8, 2, 1), (16, 1, 1)] {
            let params = argon2::Params::new(m, t, p, None).unwrap();
            let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_with_salt(b"correct horse", b"saltsaltsaltsalt")
                .unwrap()
                .to_string();
            assert!(!fast.needs_rehash(&stored), "{stored}");
        }
        // Settings neither stronger nor weaker than the stored hash's (less memory, more
        // work) keep it: two deployments sharing a store do not rewrite each other's
        // hashes back and forth.
        let slow = Passwords::new(PasswordParams {
            memory_kib: 8,
            iterations: 4,
            parallelism: 1,
        })
        .unwrap();
        assert!(!slow.needs_rehash(&strong));
        assert!(!other.needs_rehash(&slow.hash("correct horse").unwrap()));
        // Settings at least as strong in both, and stronger in one, upgrade it.
        let stronger = Passwords::new(PasswordParams {
            memory_kib: 16,
            iterations: 4,
            parallelism: 1,
        })
        .unwrap();
        assert!(stronger.needs_rehash(&strong));
        assert!(stronger.needs_rehash(&slow.hash("correct horse").unwrap()));
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
            ("$pbkdf2$1000$c2FsdA$aGFzaA", "passlib's PBKDF2 form"),
            (
                "$pbkdf2$i=1000$c2FsdA$aGFzaA",
                "\"pbkdf2\" is not supported",
            ),
            (
                "$pbkdf2-sha256$i=99999999$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
                "99999999 rounds",
            ),
        ] {
            let why = recognise(bad).unwrap_err();
            assert!(why.contains(says), "{bad}: {why}");
        }
    }

    /// A hash its verifier refuses (parameters out of its range, an output of another length
    /// than the one it computes, a bcrypt string with a bad cost or alphabet) or a bcrypt
    /// cost past what a login may pay is refused by `recognise`, naming why, and never
    /// matches: adopting it would have left a user whose password silently stops working.
    /// The PBKDF2 forms of Python frameworks are named, with the form that is read: they
    /// were "plain text or an unknown format", or a PHC string that "does not say its rounds".
    #[test]
    fn python_frameworks_pbkdf2_forms_are_named() {
        for (stored, form) in [
            (
                "pbkdf2_sha256$600000$c2FsdA$q0j1i0lE0V3r2mT0n9l7j4u6y1t8w5e3r2q1p0o9i8u=",
                "Django's",
            ),
            ("pbkdf2:sha256:600000$salt$0a1b2c", "Werkzeug's"),
            (
                "$pbkdf2-sha256$29000$N2YuDoRwbg$Hu8qv6ZSKlJkf4Eu1gvh1dA",
                "passlib's",
            ),
        ] {
            let e = recognise(stored).unwrap_err();
            assert!(
                e.contains(form) && e.contains("$pbkdf2-sha256$i=ROUNDS"),
                "{e}"
            );
        }
        assert!(recognise("plain words").unwrap_err().contains("plain text"));
    }

    /// Werkzeug's scrypt form (Flask's default since Werkzeug 2.3) was "plain text or an
    /// unknown format": it verifies as `hashlib.scrypt` made it (the salt as UTF-8 text, a
    /// 64-byte output in hex), asks for a rehash, and broken or too costly ones are refused.
    /// Other forms redkeep does not verify are named.
    #[test]
    fn werkzeug_scrypt_hashes_verify_and_other_known_forms_are_named() {
        let fast = Passwords::new(PasswordParams::INSECURE_FAST).unwrap();
        // Made by python3: hashlib.scrypt(pw, salt=salt.encode(), n=n, r=r, p=p).hex().
        let small = "scrypt:16:1:2$ab$f5e012b23d2b2ddf2b3e292aade69444cb636e6d5d53878696c39d301f1efa0acf10e127cda7bbb234ba48c05bf99eefebf72912424c7e612b2191bb2af468b0";
        let werkzeug = "scrypt:16384:8:1$Xk3pQ9rT2bN7vLm4$ff806c36fcc851c9cc519c99ef05f3825724293ef060e797914faae24ed32750297980e8774d13b5fdef7a23c5c144aa3bbb257de8ee72a154edf66546504298";
        assert!(recognise(small).is_ok());
        assert!(fast.verify("pw-\u{fc}", small));
        assert!(!fast.verify("pw-u", small));
        assert!(recognise(werkzeug).is_ok());
        assert!(fast.verify("correct horse", werkzeug));
        assert!(!fast.verify("correct horsE", werkzeug));
        assert!(fast.needs_rehash(werkzeug));
        assert!(!Passwords::bcrypt_cut_short(&"x".repeat(100), werkzeug));
        assert_eq!(
            scheme(werkzeug),
            ("scrypt".to_string(), "n=16384,r=8,p=1".to_string())
        );
        let tail = &werkzeug["scrypt:16384:8:1".len()..];
        for (bad, says) in [
            (format!("scrypt:16384:8{tail}"), "malformed"),
            (format!("scrypt:x:8:1{tail}"), "malformed"),
            ("scrypt:16384:8:1$salt$zz".to_string(), "malformed"),
            (
                "scrypt:16384:8:1$$00112233445566778899aabbccddeeff".to_string(),
                "malformed",
            ),
            (format!("scrypt:1000:8:1{tail}"), "power of two"),
            (format!("scrypt:16384:0:1{tail}"), "no password can match"),
            (format!("scrypt:1048576:16:1{tail}"), "at most"),
            (format!("scrypt:16384:8:99999{tail}"), "at most"),
        ] {
            let why = recognise(&bad).unwrap_err();
            assert!(why.contains(says), "{bad}: {why}");
            assert!(
                !why.contains(&tail[20..]),
                "the output is never shown: {why}"
            );
            assert!(!fast.verify("correct horse", &bad));
        }
        for (stored, form) in [
            ("$6$rounds=5000$salt$abc", "SHA-512 crypt"),
            ("$5$salt$abc", "SHA-256 crypt"),
            ("$bcrypt-sha256$v=2,t=2b,r=12$n79VH$1234", "bcrypt-sha256"),
            ("bcrypt_sha256$$2b$12$abc", "bcrypt-sha256"),
        ] {
            let why = recognise(stored).unwrap_err();
            assert!(why.contains(form) && why.contains("cannot verify"), "{why}");
        }
    }

    #[test]
    fn hashes_no_password_can_match_or_too_costly_bcrypt_are_refused() {
        use argon2::password_hash::{CustomizedPasswordHasher as _, PasswordHasher as _};
        let fast = Passwords::new(PasswordParams::INSECURE_FAST).unwrap();
        let pw = "old secret";
        let pbkdf2 = |rounds, len| {
            pbkdf2::Pbkdf2::default()
                .hash_password_customized(
                    pw.as_bytes(),
                    b"saltsaltsaltsalt",
                    None,
                    None,
                    pbkdf2::Params::new_with_output_len(rounds, len).unwrap(),
                )
                .unwrap()
                .to_string()
        };
        let p32 = pbkdf2(1000, 32);
        let p20 = pbkdf2(1000, 20);
        assert!(p20.contains("i=1000,l=20"), "{p20}");
        let argon2 = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            argon2::Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password_with_salt(pw.as_bytes(), b"saltsaltsaltsalt")
        .unwrap()
        .to_string();
        assert!(argon2.contains("$v=19$m=8,t=1,p=1$"), "{argon2}");
        let bcrypt = bcrypt::hash(pw, 4).unwrap();
        let tail = &bcrypt[7..];
        // Taken as they are: each verifies.
        for good in [&p32, &p20, &argon2, &bcrypt] {
            assert!(recognise(good).is_ok(), "{good}");
            assert!(fast.verify(pw, good), "{good}");
        }
        // The cap itself is taken (not verified here: it costs seconds).
        assert!(recognise(&format!("$2b$16${tail}")).is_ok());
        let mut bad_b64 = bcrypt.clone().into_bytes();
        bad_b64[10] = b'!';
        let bad_b64 = String::from_utf8(bad_b64).unwrap();
        for (bad, says) in [
            // PBKDF2 below the crate's least rounds (1000).
            (p32.replace("i=1000", "i=999"), "verifier refuses"),
            // 20 bytes of output without `l=20`: the verifier computes 32.
            (p20.replace(",l=20", ""), "verifier refuses"),
            (p32.replace("l=32", "l=20"), "verifier refuses"),
            // Less memory than argon2 takes, and a version it does not know.
            (argon2.replace("m=8,", "m=4,"), "verifier refuses"),
            (argon2.replace("v=19", "v=20"), "verifier refuses"),
            (argon2.replace("p=1", "p=2"), "verifier refuses"),
            // bcrypt below its least cost, with a cost that is no number, with a character
            // outside its alphabet.
            (format!("$2b$03${tail}"), "below bcrypt's least"),
            (format!("$2b$1x${tail}"), "2b hash is malformed"),
            (bad_b64, "2b hash is malformed"),
            // Past the cap: cost 31 would take days per login.
            (format!("$2b$17${tail}"), "at most 16"),
            (format!("$2y$31${tail}"), "at most 16"),
            // A salted bcrypt whose salt is not hex would verify without the salt.
            (format!("{SALTED_BCRYPT}zz{bcrypt}"), "salt is not hex"),
            (format!("{SALTED_BCRYPT}{bcrypt}"), "salt is not hex"),
            (
                format!("{SALTED_BCRYPT}7070$md5$x"),
                "does not end in a bcrypt hash",
            ),
        ] {
            // Refused first: were a costly one taken, verifying it would run for days.
            let why = recognise(&bad).unwrap_err();
            assert!(why.contains(says), "{bad}: {why}");
            assert!(!why.contains(tail), "{why}");
            assert!(!fast.verify(pw, &bad), "{bad}");
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

    /// A password bcrypt read whole as typed composed (70 bytes) may have matched in its
    /// decomposed form (105 bytes), of which bcrypt read 72: not rehashed, as a password
    /// too long as typed is not.
    #[test]
    fn a_bcrypt_hash_that_read_only_the_start_of_another_form_is_cut_short() {
        let composed = "\u{e9}".repeat(35);
        assert_eq!(composed.len(), 70);
        let hash = bcrypt::hash("x", 4).unwrap();
        assert!(Passwords::bcrypt_cut_short(&composed, &hash));
        assert!(!Passwords::bcrypt_cut_short(&"\u{e9}".repeat(20), &hash));
        assert!(!Passwords::bcrypt_cut_short(&"e".repeat(70), &hash));
    }

    /// Each form is tried once, the other only when it differs: a legacy hash of the
    /// decomposed text lets the composed one in (in the other form), and the other way round.
    #[test]
    fn a_legacy_hash_matches_the_other_form_of_what_is_typed() {
        let pw = Passwords::new(PasswordParams::INSECURE_FAST).unwrap();
        let (composed, decomposed) = ("caf\u{e9} cr\u{e8}me", "cafe\u{301} cre\u{300}me");
        let of_decomposed = bcrypt::hash(decomposed, 4).unwrap();
        let of_composed = bcrypt::hash(composed, 4).unwrap();
        assert_eq!(pw.verify_form(decomposed, &of_decomposed), Some(false));
        assert_eq!(pw.verify_form(composed, &of_decomposed), Some(false));
        assert_eq!(pw.verify_form(composed, &of_composed), Some(true));
        assert_eq!(pw.verify_form(decomposed, &of_composed), Some(true));
        assert_eq!(pw.verify_form("cafe creme", &of_composed), None);
        assert!(other_form("plain ascii").is_none());
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
