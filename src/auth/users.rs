//! Users, their credentials and avatars: records, validation of emails, usernames and names,
//! and the `Users` handle.
//!
//! A user's password hash and lockout counters live in a separate record (`Credential`,
//! private to the crate), so a [`User`] can be logged, serialised or sent to a client without
//! carrying secret material.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Accounts;
use super::token::{self, Secret};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{Index, KeyRange, Order, Record, Stored};

/// Longest accepted email, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Largest accepted avatar, in bytes.
pub const MAX_AVATAR_BYTES: usize = 1024 * 1024;

/// A random 128-bit identity given to each user at creation and never given again. It binds
/// the user's workspace folder, so a folder left by a deleted or restored-away account is
/// never served to a new account that reuses its number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Uid(pub [u8; 16]);

impl Uid {
    /// A fresh identity from the OS random number generator.
    ///
    /// # Errors
    /// `Io` when the random number generator fails.
    pub fn generate() -> Result<Uid> {
        let mut b = [0u8; 16];
        token::random_bytes(&mut b)?;
        Ok(Uid(b))
    }

    /// Whether this is the all-zero placeholder of records written before identities existed.
    pub fn is_unset(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Parses 32 hex digits.
    pub fn parse(text: &str) -> Option<Uid> {
        let text = text.trim();
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Uid(out))
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uid({self})")
    }
}

impl Serialize for Uid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Uid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Uid;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a user uid (32 hex digits or 16 bytes)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Uid, E> {
                Uid::parse(v).ok_or_else(|| E::custom(format!("{v:?} is not 32 hex digits")))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Uid, E> {
                v.try_into()
                    .map(Uid)
                    .map_err(|_| E::custom("a uid has 16 bytes"))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            d.deserialize_bytes(V)
        }
    }
}

/// An account. Holds no secret material (see the crate-private `Credential`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Numeric id from the `users` sequence.
    pub id: u64,
    /// Random identity that binds the user's workspace folder; never reused.
    pub uid: Uid,
    /// Email as given (trimmed); unique after normalisation.
    pub email: String,
    /// Optional unique handle (compared case-insensitively).
    pub username: Option<String>,
    /// Display name.
    pub name: String,
    /// The user's id in the system it was adopted from (a UUID, say), unique when set.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Administrator flag; follows the `admin` role.
    pub is_admin: bool,
    /// False once disabled: cannot log in, has no permissions.
    pub is_active: bool,
    /// Whether the email address was confirmed.
    pub email_verified: bool,
    /// The password must be changed at next login (generated passwords).
    pub must_change_password: bool,
    /// Last successful login.
    pub last_login_at: Option<Timestamp>,
    /// The organization the user works in.
    pub current_org_id: Option<u64>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl User {
    /// Unique: the normalised email.
    pub const EMAIL: Index<User> = Index::unique("email", |u| {
        Some(key!(
            normalize_email(&u.email).unwrap_or_else(|_| u.email.to_lowercase())
        ))
    });
    /// Unique: the lower-cased username, when set.
    pub const USERNAME: Index<User> = Index::unique("username", |u| {
        u.username.as_ref().map(|n| key!(n.to_lowercase()))
    });
    /// Unique: the id in the system the user was adopted from, when set.
    pub const EXTERNAL_ID: Index<User> =
        Index::unique("external_id", |u| u.external_id.as_ref().map(|n| key!(n)));
    /// Administrators and the others.
    pub const IS_ADMIN: Index<User> = Index::many("is_admin", |u| Some(key!(u.is_admin)));
    /// By creation time.
    pub const CREATED_AT: Index<User> = Index::many("created_at", |u| Some(key!(u.created_at.0)));
}

impl Record for User {
    const TABLE: &'static str = "users";
    type Key = u64;
    const INDEXES: &'static [&'static Index<Self>] = &[
        &Self::EMAIL,
        &Self::USERNAME,
        &Self::EXTERNAL_ID,
        &Self::IS_ADMIN,
        &Self::CREATED_AT,
    ];
    const ID_SEQUENCE: bool = true;
    const VERSION: u32 = 2;
    fn key(&self) -> u64 {
        self.id
    }
    fn upgrade(old: Stored<'_>) -> std::result::Result<Self, String> {
        match old.version() {
            1 => Ok(old.decode::<UserV1>()?.into_user()),
            v => Err(format!("unknown users record version {v}")),
        }
    }
    fn validate(&self) -> std::result::Result<(), String> {
        // From 2^63 up, ids are the decoys' (`DECOY_OWNERS`), which no account may have.
        if is_decoy_owner(self.id) {
            return Err(format!(
                "user id {} is too large (ids of accounts stay below 2^63)",
                self.id
            ));
        }
        normalize_email(&self.email).map_err(|e| e.to_string())?;
        validate_name(&self.name).map_err(|e| e.to_string())?;
        if let Some(u) = &self.username {
            validate_username(u).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A user's password hash and the lockout counters, kept apart from [`User`] so that nothing
/// that shows a user can show these. Crate-private; `Debug` redacts the hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Credential {
    pub(crate) user_id: u64,
    /// PHC string: argon2id, or an adopted bcrypt / PBKDF2 hash replaced at the next login.
    pub(crate) password_hash: String,
    pub(crate) failed_logins: u32,
    pub(crate) locked_until: Option<Timestamp>,
    pub(crate) lock_count: u32,
    pub(crate) failure_window_start: Option<Timestamp>,
    pub(crate) failures_in_window: u32,
    /// Changes when the password changes or every session is revoked, never on a mere
    /// rehash: what a login in flight compares, once its hash has run, to tell a change of
    /// password made meanwhile from a rehash.
    #[serde(with = "crate::bytes::array")]
    pub(crate) stamp: [u8; 16],
    pub(crate) changed_at: Timestamp,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("user_id", &self.user_id)
            .field("password_hash", &"<redacted>")
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

impl Record for Credential {
    const TABLE: &'static str = "credentials";
    type Key = u64;
    const SECRET_FIELDS: &'static [&'static str] = &["password_hash", "stamp"];
    fn key(&self) -> u64 {
        self.user_id
    }
}

impl Credential {
    pub(crate) fn new(user_id: u64, password_hash: String, now: Timestamp) -> Result<Credential> {
        Ok(Credential {
            user_id,
            password_hash,
            failed_logins: 0,
            locked_until: None,
            lock_count: 0,
            failure_window_start: None,
            failures_in_window: 0,
            stamp: new_stamp()?,
            changed_at: now,
        })
    }

    /// Clears the lockout of a credential whose password was just given right; the hour's
    /// count loses only the attempt `admit` counted for it (a right password does not wipe
    /// the rate limit).
    pub(crate) fn passed(&mut self) {
        self.failed_logins = 0;
        self.lock_count = 0;
        self.locked_until = None;
        self.failures_in_window = self.failures_in_window.saturating_sub(1);
    }

    /// Clears the lockout counters.
    pub(crate) fn clear_failures(&mut self) {
        self.failed_logins = 0;
        self.lock_count = 0;
        self.locked_until = None;
        self.failures_in_window = 0;
        self.failure_window_start = None;
    }
}

/// Decoys' owners: numbers from 2^63 up, which no account has (ids count up from 1, and
/// adopted ones are SQLite's, below 2^63).
pub(crate) const DECOY_OWNERS: u64 = 1 << 63;

/// Whether a recovery token's or a credential's `user_id` is a decoy's rather than an
/// account's (see `Recovery::request_password_reset` and the login's decoy credential,
/// `flows::decoy_credential`): such a record points at no user by design.
pub(crate) fn is_decoy_owner(user_id: u64) -> bool {
    user_id >= DECOY_OWNERS
}

pub(crate) fn new_stamp() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    token::random_bytes(&mut b)?;
    Ok(b)
}

/// A user's avatar image (JPEG), kept apart so user reads stay small.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Avatar {
    /// The user.
    pub user_id: u64,
    /// JPEG bytes.
    #[serde(with = "crate::bytes::base64")]
    pub jpeg: Vec<u8>,
}

impl fmt::Debug for Avatar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Avatar")
            .field("user_id", &self.user_id)
            .field("bytes", &self.jpeg.len())
            .finish()
    }
}

impl Record for Avatar {
    const TABLE: &'static str = "avatars";
    type Key = u64;
    fn key(&self) -> u64 {
        self.user_id
    }
}

/// Trims, lower-cases and validates an email address.
///
/// The result is the key an account is found by, so two addresses are one account exactly
/// when this gives both the same text. A domain in its `xn--` (punycode) form is read as
/// written, not decoded: `jose@xn--exmple-cua.com` is another address than
/// `jose@exämple.com`. New accounts cannot take the `xn--` form (see
/// [`Users::create`]); an account stored with it is found by that form only.
///
/// # Errors
/// `InvalidInput` naming what is wrong.
pub fn normalize_email(raw: &str) -> Result<String> {
    // Compatibility forms (fullwidth letters, ligatures) become their plain letters first,
    // so they cannot make a second account that looks like the first.
    // ASCII (nearly every address) is its own NFKC form and a single script: the Unicode
    // work is skipped for it.
    let trimmed = raw.trim();
    if trimmed.is_ascii() && plain_ascii_email(trimmed) {
        return Ok(trimmed.to_ascii_lowercase());
    }
    checked_email(raw)
}

/// [`normalize_email`]'s general path: every check, in order, naming the first that fails.
fn checked_email(raw: &str) -> Result<String> {
    use unicode_normalization::UnicodeNormalization;
    use unicode_security::MixedScript;
    let trimmed = raw.trim();
    let ascii = trimmed.is_ascii();
    let email: String = if ascii {
        trimmed.to_ascii_lowercase()
    } else {
        trimmed.nfkc().collect::<String>().to_lowercase()
    };
    // The address as given, cut to 100 characters: a megabyte of it is not sent back.
    let bad = |why: &str| Error::invalid("email", format!("{:?} {why}", cut_input(raw)));
    if let Some(c) = email.chars().find(|&c| invisible(c)) {
        return Err(bad(&format!(
            "contains the invisible or direction-changing character U+{:04X}; type the address without it",
            c as u32
        )));
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(bad(&format!("is longer than {MAX_EMAIL_BYTES} bytes")));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(bad("has no @"));
    };
    if local.is_empty() || local.len() > 64 {
        return Err(bad("needs 1 to 64 characters before the @"));
    }
    if local.contains('@') || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains a space, a control character or a second @"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some(long) = labels.iter().find(|l| l.len() > 63) {
        return Err(bad(&format!(
            "has a part of its domain longer than 63 bytes ({} bytes: {}…); each part between dots may have at most 63",
            long.len(),
            long.chars().take(12).collect::<String>()
        )));
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(bad("needs a domain like example.com after the @"));
    }
    if let Some(part) = std::iter::once(local)
        .chain(labels.iter().copied())
        .find(|p| !ascii && !p.is_single_script())
    {
        return Err(bad(&format!(
            "mixes scripts in {part:?} (a Cyrillic or Greek letter among Latin ones, say), which makes it look like another address"
        )));
    }
    Ok(email)
}

/// [`normalize_email`] for an address an account is about to take (a new account, a change
/// of email): also refuses
/// - one that only looks like a plain-letter address, in letters of one script that read as
///   others (`bıll@example.com` with a dotless i, `ɡreg@…` with a script g, an all-Cyrillic
///   `сосо@…`, or `ВОВ@…` in Cyrillic capitals), which would make a second account that
///   shows as the first. An address in another script's own letters (`иван@пример.рф`,
///   `müller@…`) is taken;
/// - a domain in its `xn--` (punycode) form (`jose@xn--exmple-cua.com`): it is another
///   account key than the domain in its letters (`jose@exämple.com`), so one inbox could
///   hold two accounts.
///
/// Addresses already stored are not checked again: their owners still log in.
///
/// # Errors
/// `InvalidInput` naming what is wrong.
pub(crate) fn normalize_new_email(raw: &str) -> Result<String> {
    use unicode_normalization::UnicodeNormalization;
    let email = normalize_email(raw)?;
    refuse_xn_domain(raw, &email)?;
    refuse_specials(raw, &email)?;
    if email.is_ascii() {
        return Ok(email);
    }
    // The address is compared lower-cased but kept and shown as typed, and either form may
    // be the one that reads as plain letters: `ВОВ` (Cyrillic capitals) shows as `BOB`,
    // though its lower case, `вов`, does not read as `bob`. The typed form first, so an
    // error names the letters as they were typed.
    let typed: String = raw.trim().nfkc().collect();
    for form in [&typed, &email] {
        if let Some(lookalikes) = plain_lookalikes(form) {
            return Err(Error::invalid(
                "email",
                format!(
                    "{:?} looks like an address in plain letters: {}; type the address in plain letters",
                    cut_input(raw),
                    lookalikes.join(", ")
                ),
            ));
        }
    }
    Ok(email)
}

/// Refuses, for a new address, what mail programs read otherwise than as one address: a
/// character before the @ that RFC 5322 allows only inside quotes (`,` makes
/// `victim,attacker@evil.example` two recipients in a `To:` header; `<`, `>`, `(`, `)`, `;`,
/// `:`, `[`, `]`, `\` and `"` end or comment an address), and a domain whose last part is
/// all digits (`x@a.1`: no top-level domain is).
fn refuse_specials(raw: &str, email: &str) -> Result<()> {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Ok(());
    };
    if let Some(c) = local.chars().find(|c| "(),:;<>[]\\\"".contains(*c)) {
        return Err(Error::invalid(
            "email",
            format!(
                "{:?} has {c:?} before the @, which an address holds only inside quotes, and \
                 mail programs read it as the end of the address or a list of addresses; \
                 type the address without it",
                cut_input(raw)
            ),
        ));
    }
    if domain
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(Error::invalid(
            "email",
            format!(
                "{:?} ends in a top-level domain of digits, which no domain has; give a \
                 domain like example.com after the @",
                cut_input(raw)
            ),
        ));
    }
    Ok(())
}

/// When all of `form` reads as plain (ASCII) letters, its letters that are not plain, each
/// named with what it reads as (at most four); `None` when some letter reads as its own.
fn plain_lookalikes(form: &str) -> Option<Vec<String>> {
    // A dot above an `i` or a `j` (`İ` lower-cased, or typed as a combining mark) adds
    // nothing to the eye: `i̇van` is `ivan`.
    let mut previous = ' ';
    // Small capitals are folded before the skeleton, which would turn some into letters
    // other scripts' own letters also become (`ᴍ` and Cyrillic `м` both into `ʍ`).
    let folded: String = form.chars().map(small_capital).collect();
    let looks_plain = unicode_security::skeleton(&folded).all(|c| {
        let plain = c.is_ascii() || (c == '\u{0307}' && matches!(previous, 'i' | 'j'));
        previous = c;
        plain
    });
    if !looks_plain {
        return None;
    }
    let mut seen = Vec::new();
    for c in form.chars().filter(|c| !c.is_ascii()) {
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    let named = seen
        .into_iter()
        .map(|c| {
            if c == '\u{0307}' {
                return "U+0307 (a dot above) adds nothing to the i or j it is on".to_string();
            }
            let plain: String = match small_capital(c) {
                folded if folded != c => folded.to_string(),
                _ => unicode_security::skeleton(c.encode_utf8(&mut [0; 4])).collect(),
            };
            format!("{c:?} (U+{:04X}) looks like {plain:?}", c as u32)
        })
        .take(4)
        .collect();
    Some(named)
}

/// Refuses an address (`email`, normalised) whose domain has a label in its `xn--`
/// (punycode) form, naming the domain as it reads when that form decodes.
fn refuse_xn_domain(raw: &str, email: &str) -> Result<()> {
    let Some((_, domain)) = email.rsplit_once('@') else {
        return Ok(());
    };
    if !domain.split('.').any(|label| label.starts_with("xn--")) {
        return Ok(());
    }
    let as_it_reads = match unicode_form(email) {
        Some(unicode) => unicode
            .rsplit_once('@')
            .map_or(unicode.clone(), |(_, d)| d.to_string()),
        None => "in its own letters".to_string(),
    };
    Err(Error::invalid(
        "email",
        format!(
            "{:?} has its domain in the xn-- (punycode) form, which would make a second account for the same mailbox; write the domain as it reads, {as_it_reads}, not its xn-- form",
            cut_input(raw)
        ),
    ))
}

/// `email` (normalised) with each `xn--` label of its domain decoded into its letters, when
/// there is one, each decodes, and the result is a valid address (nothing invisible, no mix
/// of scripts: it may be shown).
fn unicode_form(email: &str) -> Option<String> {
    let (local, domain) = email.rsplit_once('@')?;
    let mut decoded = false;
    let mut labels = Vec::new();
    for label in domain.split('.') {
        match label.strip_prefix("xn--") {
            Some(encoded) => {
                labels.push(super::punycode::decode_label(encoded)?);
                decoded = true;
            }
            None => labels.push(label.to_string()),
        }
    }
    let unicode = format!("{local}@{}", labels.join("."));
    (decoded && normalize_email(&unicode).is_ok()).then_some(unicode)
}

/// The plain letter a Latin small capital (or the kra, `ĸ`) stands for: in an address
/// typed in lower case, `ʙob` reads as `bob`. UTS #39's skeleton leaves these as they are
/// (it maps some: `ᴏ`, `ᴄ`, `ɪ`), so they are folded here, before it.
fn small_capital(c: char) -> char {
    match c {
        'ᴀ' => 'a',
        'ʙ' => 'b',
        'ᴅ' => 'd',
        'ᴇ' => 'e',
        'ɢ' => 'g',
        'ʜ' => 'h',
        'ᴊ' => 'j',
        'ĸ' | 'ᴋ' => 'k',
        'ʟ' => 'l',
        'ᴍ' => 'm',
        'ɴ' => 'n',
        'ᴘ' => 'p',
        'ꞯ' => 'q',
        'ʀ' => 'r',
        'ᴛ' => 't',
        other => other,
    }
}

/// Whether an ASCII address passes every check of [`normalize_email`] (checked in one pass
/// over the bytes, without the general path's allocations). `false` sends the address down
/// the general path, which names what is wrong.
fn plain_ascii_email(email: &str) -> bool {
    let b = email.as_bytes();
    if b.len() > MAX_EMAIL_BYTES {
        return false;
    }
    let Some(at) = b.iter().position(|&c| c == b'@') else {
        return false;
    };
    let (local, domain) = (&b[..at], &b[at + 1..]);
    if local.is_empty() || local.len() > 64 || local.iter().any(|&c| c <= b' ' || c == 0x7F) {
        return false;
    }
    let mut labels = 0;
    for label in domain.split(|&c| c == b'.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label[0] != b'-'
            && label[label.len() - 1] != b'-'
            && label
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-');
        if !ok {
            return false;
        }
        labels += 1;
    }
    labels >= 2
}

pub(crate) use crate::bytes::invisible;

/// Bidirectional controls: they reorder what follows them on screen.
fn bidi_control(c: char) -> bool {
    matches!(c as u32, 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)
}

/// A character that names and descriptions shown on one line may not hold: a control
/// character (a line break, a tab, an escape) or a direction-changing one.
pub(crate) fn unshowable(c: char) -> bool {
    c.is_control() || bidi_control(c)
}

/// Validates a username: 3 to 32 of `A-Z a-z 0-9 _ . -`, not all digits.
///
/// # Errors
/// `InvalidInput` naming what is wrong.
pub fn validate_username(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(3..=32).contains(&name.len()) || !ok_chars {
        return Err(Error::invalid(
            "username",
            format!(
                "{:?} must be 3 to 32 of A-Z, a-z, 0-9, _ . - (ASCII only)",
                cut_input(name)
            ),
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(
            "username",
            format!("{name:?} is all digits, which would read as a user id"),
        ));
    }
    Ok(())
}

/// Validates a username being set now: [`validate_username`], and at least one letter or
/// digit (`...` is no handle). Stored usernames are held to `validate_username` only, so an
/// export of an earlier release still imports.
pub(crate) fn validate_new_username(name: &str) -> Result<()> {
    validate_username(name)?;
    if name.starts_with('-') {
        return Err(Error::invalid(
            "username",
            format!("{name:?} starts with -, which a command line reads as an option"),
        ));
    }
    if !name.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::invalid(
            "username",
            format!("{name:?} has no letter or digit; a handle must hold at least one"),
        ));
    }
    Ok(())
}

/// Validates a display name: at most 200 characters, no control or bidirectional-control
/// characters.
///
/// # Errors
/// `InvalidInput`.
pub fn validate_name(name: &str) -> Result<()> {
    if name.chars().count() > 200 || name.chars().any(|c| c.is_control() || bidi_control(c)) {
        return Err(Error::invalid(
            "name",
            "use at most 200 characters, without control or direction-changing characters",
        ));
    }
    Ok(())
}

/// A display name given by a caller, trimmed; one that is empty or only spaces is refused
/// (leaving it out picks the email's local part).
pub(crate) fn given_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid(
            "name",
            "it is empty; give a name, or leave it out to use the email's local part",
        ));
    }
    Ok(name.to_string())
}

/// Checks that `bytes` is a JPEG of at most [`MAX_AVATAR_BYTES`].
///
/// # Errors
/// `InvalidInput`.
pub fn validate_avatar(bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_AVATAR_BYTES {
        return Err(Error::invalid(
            "avatar",
            format!(
                "it has {} bytes; the limit is {MAX_AVATAR_BYTES}",
                bytes.len()
            ),
        ));
    }
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(Error::invalid("avatar", "it is not a JPEG image"));
    }
    Ok(())
}

/// What to create: the input of [`Users::create`].
#[derive(Clone, Default)]
pub struct NewUser {
    /// Email address (validated, unique).
    pub email: String,
    /// Display name; defaults to the part of the email before the @.
    pub name: Option<String>,
    /// Optional unique username.
    pub username: Option<String>,
    /// The password; `None` generates one, returned once, with `must_change_password` set.
    pub password: Option<Secret>,
    /// Make the user an administrator (grants the `admin` role).
    pub is_admin: bool,
    /// An invite code to consume in the same transaction.
    pub invite: Option<Secret>,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("name", &self.name)
            .field("username", &self.username)
            .field("is_admin", &self.is_admin)
            .finish_non_exhaustive()
    }
}

/// A self-service registration: the input of [`Users::register`].
#[derive(Clone, Default)]
pub struct Registration {
    /// Email address.
    pub email: String,
    /// Password (8..=1024 bytes).
    pub password: Secret,
    /// Display name.
    pub name: Option<String>,
    /// Optional username.
    pub username: Option<String>,
    /// The invite code; required unless the policy allows open registration.
    pub invite: Option<Secret>,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("email", &self.email)
            .field("name", &self.name)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A created user and, if one was generated, the password (shown once).
#[derive(Debug)]
pub struct CreatedUser {
    /// The new user.
    pub user: User,
    /// The generated password, if none was given.
    pub password: Option<Secret>,
}

/// What disabling a user did ([`Users::disable`]).
#[derive(Debug, Clone, Serialize)]
pub struct DisabledUser {
    /// The account, now disabled.
    pub user: User,
    /// The prefixes of the invites they made that could still admit someone: revoked as
    /// they were disabled (and audited); enabling them again does not bring these back.
    /// Empty when the account was disabled already.
    pub invites_revoked: Vec<String>,
    /// The prefixes of the API keys revoked for good
    /// ([`Users::disable_revoking_keys`](crate::auth::users::Users::disable_revoking_keys)):
    /// the account's own, then the org keys it made. Always empty from
    /// [`Users::disable`](crate::auth::users::Users::disable), which only suspends them.
    pub api_keys_revoked: Vec<String>,
}

/// What deleting a user did.
#[derive(Debug, Clone, Serialize)]
pub struct DeletedUser {
    /// The account as it was.
    pub user: User,
    /// Where their workspace folder went, if they had one.
    #[serde(serialize_with = "crate::fsutil::lossy::option")]
    pub trash: Option<std::path::PathBuf>,
    /// The slugs of the orgs deleted with them: those they alone belonged to (their
    /// personal org, and any other org left without members).
    pub orgs_deleted: Vec<String>,
    /// How many API keys were deleted with them: their own, and those of the orgs deleted.
    pub api_keys_deleted: usize,
    /// How many of their agent sessions were deleted with them.
    pub agent_sessions_deleted: usize,
    /// The prefixes of the invites they made that could still admit someone: revoked with
    /// them (and audited).
    pub invites_revoked: Vec<String>,
    /// The prefixes of the API keys they made for orgs that stay (see
    /// [`ApiKeySpec::created_by`](crate::auth::api_keys::ApiKeySpec::created_by)) that could
    /// still verify: revoked with them (and audited).
    pub org_api_keys_revoked: Vec<String>,
}

/// Where a user stands with the lockout rules (not secret: shown to operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lockout {
    /// Failed logins in a row toward the next lock: back to 0 when a lock begins (the
    /// attempts that caused it are in `lock_count` and `failures_in_window`) and at a
    /// successful login.
    pub failed_logins: u32,
    /// Logins are refused until then.
    pub locked_until: Option<Timestamp>,
    /// Locks since the last successful login (each doubles the next lock).
    pub lock_count: u32,
    /// Failed attempts that reached the hash in the hour that began with the first of them
    /// (0 once that hour is over).
    pub failures_in_window: u32,
}

/// Which scheme a user's password hash uses: what operators need to know (has everyone moved
/// off an adopted bcrypt hash yet?) without any of the hash itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasswordInfo {
    /// The algorithm: `argon2id`, `bcrypt`, `pbkdf2-sha256`, ….
    pub algorithm: String,
    /// Its cost parameters as the hash records them (`m=19456,t=2,p=1`, `cost=12`).
    pub parameters: String,
    /// When the password was last set (or the hash replaced by a login).
    pub changed_at: Timestamp,
}

/// Which users to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserFilter {
    /// Active users only (the default).
    #[default]
    Active,
    /// Active and disabled users.
    All,
}

/// Operations on users; each runs in its own transaction.
#[derive(Debug, Clone, Copy)]
pub struct Users<'a> {
    pub(crate) acc: &'a Accounts,
}

impl Users<'_> {
    /// The user with this id.
    ///
    /// # Errors
    /// `Corrupt` or `Storage` when the record cannot be read.
    pub fn get(&self, id: u64) -> Result<Option<User>> {
        self.acc.read(|tx| tx.table::<User>().get(&id))
    }

    /// The user with this email (any case and surrounding spaces), matched as
    /// [`normalize_email`] reads it: a domain in its `xn--` form does not find an account
    /// stored with the domain in its own letters.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed email.
    pub fn by_email(&self, email: &str) -> Result<Option<User>> {
        let normalized = normalize_email(email)?;
        self.acc
            .read(|tx| tx.table::<User>().get_by(&User::EMAIL, &key!(normalized)))
    }

    /// The user with this username (any case).
    ///
    /// # Errors
    /// `Corrupt` or `Storage` when the record cannot be read.
    pub fn by_username(&self, username: &str) -> Result<Option<User>> {
        let k = key!(username.trim().to_lowercase());
        self.acc
            .read(|tx| tx.table::<User>().get_by(&User::USERNAME, &k))
    }

    /// The user with this id in the system it was adopted from.
    ///
    /// # Errors
    /// `Corrupt` or `Storage` when the record cannot be read.
    pub fn by_external_id(&self, external_id: &str) -> Result<Option<User>> {
        let k = key!(external_id.trim());
        self.acc
            .read(|tx| tx.table::<User>().get_by(&User::EXTERNAL_ID, &k))
    }

    /// Resolves what an operator typed: a numeric id, an email or a username.
    ///
    /// # Errors
    /// `InvalidInput` when `who` is empty (or only spaces); `NotFound` when no user matches,
    /// saying whether `who` was taken for an id, an email or a username and that a user is
    /// named by any of the three (given a domain in its `xn--` form, it names the address
    /// with the domain as it reads, the form accounts are created with, without looking that
    /// one up).
    pub fn find(&self, who: &str) -> Result<User> {
        let who = who.trim();
        if who.is_empty() {
            return Err(Error::invalid(
                "user",
                "it is empty; give the user's id, email or username",
            ));
        }
        let found = if !who.is_empty() && who.bytes().all(|b| b.is_ascii_digit()) {
            match who.parse::<u64>() {
                Ok(id) => self.get(id)?,
                Err(_) => None,
            }
        } else if who.contains('@') {
            match normalize_email(who) {
                Ok(_) => self.by_email(who)?,
                Err(_) => None,
            }
        } else {
            self.by_username(who)?
        };
        found.ok_or_else(|| {
            // An operator given the `xn--` form of a domain is told the form that is kept;
            // any other is told what was looked up and the three ways to name a user (one
            // who typed `dan` for `dan@example.com` had only "user dan not found").
            let hint = normalize_email(who)
                .ok()
                .and_then(|n| unicode_form(&n))
                .map(|u| format!("addresses are kept with the domain as it reads: try {u}"))
                .unwrap_or_else(|| {
                    let tried = if who.bytes().all(|b| b.is_ascii_digit()) {
                        "id"
                    } else if who.contains('@') {
                        "email"
                    } else {
                        "username"
                    };
                    format!("no user has this {tried}; name a user by id, email or username")
                });
            Error::not_found(format!("user {} ({hint})", shown_input(who)))
        })
    }

    /// Up to `limit` users with ids above `after`, in id order (a page; pass the last id for
    /// the next one).
    ///
    /// # Errors
    /// `Corrupt` when a record cannot be read.
    pub fn list(&self, filter: UserFilter, after: Option<u64>, limit: usize) -> Result<Vec<User>> {
        let range = match after {
            Some(id) => KeyRange::all().after(&key!(id)),
            None => KeyRange::all(),
        };
        self.acc.read(|tx| {
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            tx.table::<User>().for_each(range, Order::Asc, |u| {
                if filter == UserFilter::All || u.is_active {
                    out.push(u);
                }
                Ok(out.len() < limit)
            })?;
            Ok(out)
        })
    }

    /// Up to `limit` users created in `[from, to)`, oldest first.
    ///
    /// # Errors
    /// `Corrupt` when a record cannot be read.
    pub fn created_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<User>> {
        self.acc.read(|tx| {
            tx.table::<User>().range_by(
                &User::CREATED_AT,
                KeyRange::between(key!(from.0), key!(to.0)),
                Order::Asc,
                limit,
            )
        })
    }

    /// Up to `limit` administrators, in id order.
    ///
    /// # Errors
    /// `Corrupt` when a record cannot be read.
    pub fn admins(&self, limit: usize) -> Result<Vec<User>> {
        self.acc.read(|tx| {
            tx.table::<User>().range_by(
                &User::IS_ADMIN,
                KeyRange::prefix(key!(true)),
                Order::Asc,
                limit,
            )
        })
    }

    /// Number of users.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn count(&self) -> Result<u64> {
        self.acc.read(|tx| tx.table::<User>().count())
    }

    /// Changes a user's name or username (`Some(None)` removes the username).
    ///
    /// # Errors
    /// `InvalidInput`; `Conflict` when the username is taken; `NotFound`.
    pub fn rename(
        &self,
        id: u64,
        name: Option<String>,
        username: Option<Option<String>>,
    ) -> Result<User> {
        let name = name.as_deref().map(given_name).transpose()?;
        if let Some(n) = &name {
            validate_name(n)?;
        }
        if let Some(Some(u)) = &username {
            validate_new_username(u)?;
        }
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let mut changed = Vec::new();
            let u = tx
                .table::<User>()
                .modify(&id, |u| {
                    if let Some(n) = name.as_ref().filter(|n| **n != u.name) {
                        u.name = n.clone();
                        changed.push("name");
                    }
                    if let Some(un) = username.as_ref().filter(|un| **un != u.username) {
                        u.username = un.clone();
                        changed.push("username");
                    }
                    u.updated_at = now;
                    Ok(u.clone())
                })
                .map_err(|e| match (e, &username) {
                    (
                        Error::Conflict {
                            index: "username", ..
                        },
                        Some(Some(taken)),
                    ) => Error::Conflict {
                        table: User::TABLE,
                        index: "username",
                        detail: format!("a user with username {taken} exists"),
                    },
                    (e, _) => e,
                })?;
            if !changed.is_empty() {
                super::audit::user_event(tx, now, "user_renamed", id, changed.join(","))?;
            }
            Ok(u)
        })
    }

    /// Where the user stands with the lockout rules.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn lockout(&self, id: u64) -> Result<Lockout> {
        let c = self.acc.read(|tx| {
            if !tx.table::<User>().contains(&id)? {
                return Err(Error::not_found(format!("user {id}")));
            }
            tx.table::<Credential>().get(&id)
        })?;
        // The window's count is kept until the next failure: an hour on, it counts nothing.
        let now = self.acc.now();
        let in_window = c.as_ref().map_or(0, |c| {
            if c.failure_window_start.is_some_and(|s| now.since(s) < 3600) {
                c.failures_in_window
            } else {
                0
            }
        });
        Ok(Lockout {
            failed_logins: c.as_ref().map_or(0, |c| c.failed_logins),
            locked_until: c.as_ref().and_then(|c| c.locked_until),
            lock_count: c.as_ref().map_or(0, |c| c.lock_count),
            failures_in_window: in_window,
        })
    }

    /// The scheme of the user's password hash (never the hash).
    ///
    /// # Errors
    /// `NotFound` for an unknown user or one without a password.
    pub fn password_info(&self, id: u64) -> Result<PasswordInfo> {
        let c = self
            .acc
            .read(|tx| tx.table::<Credential>().get(&id))?
            // (Not the decoy credential a login with no account uses: no user's.)
            .filter(|_| !is_decoy_owner(id))
            .ok_or_else(|| Error::not_found(format!("password of user {id}")))?;
        let (algorithm, parameters) = super::password::scheme(&c.password_hash);
        Ok(PasswordInfo {
            algorithm,
            parameters,
            changed_at: c.changed_at,
        })
    }

    /// Sets or replaces the user's avatar (JPEG, at most 1 MiB).
    ///
    /// # Errors
    /// `InvalidInput` for a bad image; `NotFound`.
    pub fn set_avatar(&self, id: u64, jpeg: Vec<u8>) -> Result<()> {
        validate_avatar(&jpeg)?;
        let avatar = Avatar { user_id: id, jpeg };
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            if !tx.table::<User>().contains(&id)? {
                return Err(Error::not_found(format!("user {id}")));
            }
            tx.table::<Avatar>().put(&avatar)?;
            let detail = format!("{} bytes", avatar.jpeg.len());
            super::audit::user_event(tx, now, "avatar_set", id, detail)
        })
    }

    /// The user's avatar bytes, if any.
    ///
    /// # Errors
    /// `Corrupt` when the record cannot be read.
    pub fn avatar(&self, id: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .acc
            .read(|tx| tx.table::<Avatar>().get(&id))?
            .map(|a| a.jpeg))
    }

    /// Removes the user's avatar; returns whether there was one.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn remove_avatar(&self, id: u64) -> Result<bool> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let had = tx.table::<Avatar>().delete(&id)?.is_some();
            if had {
                super::audit::user_event(tx, now, "avatar_removed", id, String::new())?;
            }
            Ok(had)
        })
    }
}

// The shape versions 1 and 2 stored (format 1, fields in order), read by `upgrade` and by
// the migrations. Never change it.

/// A user as versions 1 and 2 stored it, password hash and lockout counters included (so
/// no `Debug`: it would show the hash).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserV1 {
    pub id: u64,
    pub email: String,
    pub username: Option<String>,
    pub name: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub email_verified: bool,
    pub must_change_password: bool,
    pub failed_logins: u32,
    pub locked_until: Option<i64>,
    pub lock_count: u32,
    pub failure_window_start: Option<i64>,
    pub failures_in_window: u32,
    pub last_login_at: Option<i64>,
    pub current_org_id: Option<u64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl UserV1 {
    /// Today's user (with an unset uid, given by the v3 migration).
    pub(crate) fn into_user(self) -> User {
        User {
            id: self.id,
            uid: Uid::default(),
            email: self.email,
            username: self.username,
            name: self.name,
            external_id: None,
            is_admin: self.is_admin,
            is_active: self.is_active,
            email_verified: self.email_verified,
            must_change_password: self.must_change_password,
            last_login_at: self.last_login_at.map(Timestamp),
            current_org_id: self.current_org_id,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        }
    }

    /// Today's credential of this user.
    pub(crate) fn credential(&self, stamp: [u8; 16]) -> Credential {
        Credential {
            user_id: self.id,
            password_hash: self.password_hash.clone(),
            failed_logins: self.failed_logins,
            locked_until: self.locked_until.map(Timestamp),
            lock_count: self.lock_count,
            failure_window_start: self.failure_window_start.map(Timestamp),
            failures_in_window: self.failures_in_window,
            stamp,
            changed_at: Timestamp(self.updated_at),
        }
    }

    /// The old shape of today's user and credential.
    pub(crate) fn from_parts(u: &User, c: Option<&Credential>) -> UserV1 {
        UserV1 {
            id: u.id,
            email: u.email.clone(),
            username: u.username.clone(),
            name: u.name.clone(),
            password_hash: c.map(|c| c.password_hash.clone()).unwrap_or_default(),
            is_admin: u.is_admin,
            is_active: u.is_active,
            email_verified: u.email_verified,
            must_change_password: u.must_change_password,
            failed_logins: c.map_or(0, |c| c.failed_logins),
            locked_until: c.and_then(|c| c.locked_until).map(|t| t.0),
            lock_count: c.map_or(0, |c| c.lock_count),
            failure_window_start: c.and_then(|c| c.failure_window_start).map(|t| t.0),
            failures_in_window: c.map_or(0, |c| c.failures_in_window),
            last_login_at: u.last_login_at.map(|t| t.0),
            current_org_id: u.current_org_id,
            created_at: u.created_at.0,
            updated_at: u.updated_at.0,
        }
    }
}

/// What a lookup was given, as an error may repeat it ([`cut_input`]), with every control,
/// line-separator, bidirectional or invisible character written as its escape (`\u{1b}`): an
/// application that logs or returns the error shows one plain line of bounded length.
pub(crate) fn shown_input(who: &str) -> String {
    let mut out = String::new();
    for c in cut_input(who).chars() {
        if c.is_control() || crate::bytes::invisible(c) || matches!(c, '\u{2028}' | '\u{2029}') {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// What a lookup was given, cut for an error that quotes it with `{:?}` (which escapes): a
/// token pasted by mistake (redkeep's tokens all read `rk<kind>_…`: sessions, API keys,
/// invites, recovery) shown by its public prefix only, anything else cut to 100 characters.
pub(crate) fn cut_input(who: &str) -> String {
    let kind = who.get(..3).filter(|k| {
        k.starts_with("rk") && k.as_bytes()[2].is_ascii_lowercase() && who[3..].starts_with('_')
    });
    if let Some(kind) = kind {
        return super::token::shown(kind, who);
    }
    let mut out: String = who.chars().take(100).collect();
    if who.chars().nth(100).is_some() {
        out.push('…');
    }
    out
}

/// A clash on a user's unique email or username, named by the value rather than by the id of
/// the account that holds it (which an application may pass on to whoever asked).
pub(crate) fn name_the_clash(e: Error, user: &User) -> Error {
    match e {
        Error::Conflict { index: "email", .. } => Error::Conflict {
            table: User::TABLE,
            index: "email",
            detail: format!(
                "a user with email {} exists",
                normalize_email(&user.email).unwrap_or_else(|_| user.email.clone())
            ),
        },
        Error::Conflict {
            index: "username", ..
        } => Error::Conflict {
            table: User::TABLE,
            index: "username",
            detail: format!(
                "a user with username {} exists",
                user.username.as_deref().unwrap_or_default()
            ),
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A token pasted where a user was expected is not repeated whole in the error.
    #[test]
    fn a_lookup_error_never_repeats_a_token() {
        let token = format!("rks_{}", "a".repeat(39));
        let shown = shown_input(&token);
        assert!(shown.starts_with("rks_aaaa"), "{shown}");
        assert!(!shown.contains(&token[4..]), "{shown}");
        assert_eq!(shown_input("ann@example.com"), "ann@example.com");
        assert_eq!(shown_input(&"x".repeat(300)).chars().count(), 101);
    }

    /// A new address whose letters only look like plain ones is refused; one in another
    /// script's own letters is taken.
    #[test]
    fn a_new_email_that_only_looks_like_plain_letters_is_refused() {
        for lookalike in [
            "bıll@example.com",
            "ɡreg@example.com",
            "сосо@example.com",
            "İvan@example.com",
            "i\u{0307}van@example.com",
        ] {
            assert!(
                normalize_email(lookalike).is_ok(),
                "{lookalike} is an address"
            );
            let e = normalize_new_email(lookalike).unwrap_err().to_string();
            assert!(e.contains("looks like"), "{lookalike}: {e}");
        }
        let e = normalize_new_email("bıll@example.com")
            .unwrap_err()
            .to_string();
        assert!(e.contains("U+0131") && e.contains("plain letters"), "{e}");
        for own in [
            "müller@example.com",
            "josé@example.com",
            "иван@пример.рф",
            "маша@example.com",
            "кира@example.com",
            "мама@example.com",
            "李@例子.中国",
            "Ann@Example.com",
        ] {
            assert_eq!(
                normalize_new_email(own).unwrap(),
                normalize_email(own).unwrap(),
                "{own} is taken"
            );
        }
    }

    /// Capitals of another script that read as Latin ones (Cyrillic `В`, Greek `Β`) are
    /// refused though their lower case is not a lookalike: the address is kept and shown
    /// as typed. Capitals of words that cannot be read as Latin are taken.
    #[test]
    fn a_new_email_in_capitals_that_read_as_plain_ones_is_refused() {
        let capitals = "АВЕКМНОРСТХУЅІЈ\
                        ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ";
        for c in capitals.chars() {
            let email = format!("{c}{c}@example.com");
            assert!(normalize_email(&email).is_ok(), "{email} is an address");
            let e = normalize_new_email(&email).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{c:?} (U+{:04X}) looks like", c as u32)),
                "{email}: {e}"
            );
        }
        for (email, says) in [
            ("ВОВ@example.org", "'В' (U+0412) looks like \"B\""),
            ("АВС@example.org", "'С' (U+0421) looks like \"C\""),
            ("ΒΟΒ@example.org", "'Β' (U+0392) looks like \"B\""),
            ("МАМА@example.com", "'М' (U+041C) looks like \"M\""),
            ("bob@ВОВ.com", "'В' (U+0412) looks like \"B\""),
        ] {
            let e = normalize_new_email(email).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.contains("plain letters"),
                "{email}: {e}"
            );
        }
        for own in [
            "БОРИС@example.com",
            "ИВАН@ПРИМЕР.РФ",
            "Вова@example.com",
            "ΔΗΜΗΤΡΗΣ@example.gr",
            "ΖΩΗ@example.gr",
            "Müller@example.com",
        ] {
            assert_eq!(
                normalize_new_email(own).unwrap(),
                normalize_email(own).unwrap(),
                "{own} is taken"
            );
        }
    }

    /// A domain in its xn-- form is refused for a new address, naming the domain as it
    /// reads when the form decodes; stored addresses with one are still read.
    #[test]
    fn a_new_email_with_an_xn_domain_is_refused_naming_the_domain_as_it_reads() {
        for (email, says) in [
            ("jose@xn--exmple-cua.com", "as it reads, exämple.com, not"),
            ("jose@XN--EXMPLE-CUA.COM", "as it reads, exämple.com, not"),
            ("ann@mail.xn--p1ai", "as it reads, mail.рф, not"),
            ("ann@xn--zz.com", "as it reads, in its own letters, not"),
            ("ann@xn--abc.com", "as it reads, in its own letters, not"),
        ] {
            assert!(normalize_email(email).is_ok(), "{email} is an address");
            let e = normalize_new_email(email).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.contains("xn-- (punycode)"),
                "{email}: {e}"
            );
        }
        // Only a label that starts with it: `xn--` elsewhere is a plain name.
        for plain in ["xn--jose@example.com", "ann@axn--b.com", "ann@ab--cd.com"] {
            assert!(normalize_new_email(plain).is_ok(), "{plain}");
        }
    }

    /// A new address with a character RFC 5322 allows only in quotes before the @ (one
    /// that makes `victim,attacker@evil.example` two recipients), or a top-level domain of
    /// digits, is refused naming it; a stored one still reads (its owner logs in), and the
    /// characters an unquoted address may hold are taken.
    #[test]
    fn a_new_email_that_mail_programs_read_as_something_else_is_refused() {
        for (email, says) in [
            ("victim,attacker@evil.example", "has ',' before the @"),
            ("a<b>@example.com", "has '<' before the @"),
            ("a\"b@example.com", "has '\"' before the @"),
            ("a\\b@example.com", "has '\\\\' before the @"),
            ("a;b@example.com", "has ';' before the @"),
            ("a(b)@example.com", "has '(' before the @"),
            ("x@a.1", "ends in a top-level domain of digits"),
            ("x@1.2.3.4", "ends in a top-level domain of digits"),
        ] {
            assert!(normalize_email(email).is_ok(), "{email} still reads");
            let e = normalize_new_email(email).unwrap_err().to_string();
            assert!(e.contains(says), "{email}: {e}");
        }
        for plain in [
            "o'neil@example.com",
            "a+tag@example.com",
            "a!#$%&*/=?^_`{|}~-@example.com",
            "ann@example.co1",
        ] {
            assert!(normalize_new_email(plain).is_ok(), "{plain}");
        }
    }

    /// A bad address is repeated in its error only cut short: a megabyte in is not a
    /// megabyte out (to a web client, or a log).
    #[test]
    fn a_long_bad_email_is_not_repeated_whole() {
        let raw = format!("{} @example.com", "a".repeat(1_500_000));
        let e = normalize_email(&raw).unwrap_err().to_string();
        assert!(e.len() < 250, "{} bytes", e.len());
        assert!(e.contains("\"aaaa") && e.contains('…'), "{e}");
        let short = normalize_email("ann@@example.com").unwrap_err().to_string();
        assert!(short.contains("\"ann@@example.com\""), "{short}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The one-pass ASCII check accepts exactly what the general path accepts, with the
        /// same result (addresses built from the characters that decide the checks).
        #[test]
        fn the_ascii_fast_path_agrees_with_the_general_path(
            pad in "[ \t]?",
            local in "[aZ9_.+@\\-\x00\x7F ]{0,4}",
            at in "@?",
            labels in proptest::collection::vec("[aZ9\\-@ ]{0,3}", 0..4),
            tail in "[ .]?",
        ) {
            let raw = format!("{pad}{local}{at}{}{tail}", labels.join("."));
            let general = checked_email(&raw).map_err(|e| e.to_string());
            prop_assert_eq!(plain_ascii_email(raw.trim()), general.is_ok(), "{:?}", raw);
            prop_assert_eq!(normalize_email(&raw).map_err(|e| e.to_string()), general);
        }
    }

    #[test]
    fn long_parts_go_the_general_way() {
        let local = "a".repeat(65);
        assert!(!plain_ascii_email(&format!("{local}@example.com")));
        assert!(plain_ascii_email(&format!("{}@example.com", &local[..64])));
        let label = "b".repeat(64);
        assert!(!plain_ascii_email(&format!("a@{label}.com")));
        assert!(plain_ascii_email(&format!("a@{}.com", &label[..63])));
        let long = format!("a@{}.com", vec!["c".repeat(60); 5].join("."));
        assert!(long.len() > MAX_EMAIL_BYTES);
        assert!(!plain_ascii_email(&long));
        assert!(checked_email(&long).is_err());
    }
}
