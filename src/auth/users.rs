//! Users and avatars: records, validation of emails and usernames, and the user repository.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Index, KeyRange, Order, Record, WriteTx};
use crate::{Redkeep, key};

/// Longest accepted email, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Largest accepted avatar, in bytes.
pub const MAX_AVATAR_BYTES: usize = 1024 * 1024;

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Numeric id from the `users` sequence.
    pub id: u64,
    /// Email as given (trimmed); unique after normalisation.
    pub email: String,
    /// Optional unique handle (compared case-insensitively).
    pub username: Option<String>,
    /// Display name.
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Administrator flag.
    pub is_admin: bool,
    /// False once disabled: cannot log in, has no permissions.
    pub is_active: bool,
    /// Whether the email address was confirmed.
    pub email_verified: bool,
    /// The password must be changed at next login (generated passwords).
    pub must_change_password: bool,
    /// Failed logins in a row.
    pub failed_logins: u32,
    /// Logins are refused until then.
    pub locked_until: Option<Timestamp>,
    /// How many times the account has been locked since its last successful login.
    pub lock_count: u32,
    /// Start of the current one-hour window of failed attempts.
    pub failure_window_start: Option<Timestamp>,
    /// Failed attempts that reached the hash in the current window.
    pub failures_in_window: u32,
    /// Last successful login.
    pub last_login_at: Option<Timestamp>,
    /// The organization the user works in.
    pub current_org_id: Option<u64>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl Record for User {
    const TABLE: &'static str = "users";
    type Key = u64;
    const INDEXES: &'static [Index<Self>] = &[
        Index::unique("email", |u| {
            Some(key!(
                normalize_email(&u.email).unwrap_or_else(|_| u.email.to_lowercase())
            ))
        }),
        Index::unique("username", |u| {
            u.username.as_ref().map(|n| key!(n.to_lowercase()))
        }),
        Index::many("is_admin", |u| Some(key!(u.is_admin))),
        Index::many("created_at", |u| Some(key!(u.created_at.0))),
    ];
    fn key(&self) -> u64 {
        self.id
    }
}

/// A user's avatar image (JPEG), kept apart so user reads stay small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Avatar {
    /// The user.
    pub user_id: u64,
    /// JPEG bytes.
    #[serde(with = "crate::bytes::base64")]
    pub jpeg: Vec<u8>,
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
/// # Errors
/// `InvalidInput` naming what is wrong.
pub fn normalize_email(raw: &str) -> Result<String> {
    let email = raw.trim().to_lowercase();
    let bad = |why: &str| Error::invalid("email", format!("{raw:?} {why}"));
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
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(bad("needs a domain like example.com after the @"));
    }
    Ok(email)
}

/// Validates a username: 3 to 32 of `A-Z a-z 0-9 _ . -`, not all digits.
pub fn validate_username(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(3..=32).contains(&name.len()) || !ok_chars {
        return Err(Error::invalid(
            "username",
            format!("{name:?} must be 3 to 32 of letters, digits, _ . -"),
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

fn validate_name(name: &str) -> Result<()> {
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "use at most 200 characters and no control characters",
        ));
    }
    Ok(())
}

/// Checks that `bytes` is a JPEG of at most [`MAX_AVATAR_BYTES`].
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

/// What to create: the input of [`Users::create`] and of registration.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Email address (validated, unique).
    pub email: String,
    /// Display name; defaults to the part of the email before the @.
    pub name: Option<String>,
    /// Optional unique username.
    pub username: Option<String>,
    /// The password; `None` generates one, returned once, with `must_change_password` set.
    pub password: Option<String>,
    /// Make the user an administrator.
    pub is_admin: bool,
    /// An invite code to consume in the same transaction.
    pub invite: Option<String>,
}

/// A created user and, if one was generated, the password (shown once).
#[derive(Debug)]
pub struct CreatedUser {
    /// The new user.
    pub user: User,
    /// The generated password, if none was given.
    pub password: Option<crate::Secret>,
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

/// A user record ready to insert: validated, with its password hashed.
pub(crate) struct PreparedUser {
    pub(crate) user: User,
    pub(crate) generated: Option<crate::Secret>,
}

impl Redkeep {
    /// Validates `spec` and hashes its password, outside any transaction (hashing is slow and
    /// must not hold the write lock).
    pub(crate) fn prepare_user(&self, spec: &NewUser) -> Result<PreparedUser> {
        let normalized = normalize_email(&spec.email)?;
        if let Some(u) = &spec.username {
            validate_username(u)?;
        }
        let name = match &spec.name {
            Some(n) => n.trim().to_string(),
            None => normalized.split('@').next().unwrap_or_default().to_string(),
        };
        validate_name(&name)?;
        let (password, generated) = match &spec.password {
            Some(p) => (p.clone(), None),
            None => {
                let g = crate::auth::token::generate_password()?;
                (g.expose().to_string(), Some(g))
            }
        };
        let password_hash = self.passwords().hash(&password)?;
        let now = self.now();
        Ok(PreparedUser {
            user: User {
                id: 0,
                email: spec.email.trim().to_string(),
                username: spec.username.clone(),
                name,
                password_hash,
                is_admin: spec.is_admin,
                is_active: true,
                email_verified: false,
                must_change_password: generated.is_some(),
                failed_logins: 0,
                locked_until: None,
                lock_count: 0,
                failure_window_start: None,
                failures_in_window: 0,
                last_login_at: None,
                current_org_id: None,
                created_at: now,
                updated_at: now,
            },
            generated,
        })
    }

    /// Inserts a prepared user inside `tx`, giving it the next id.
    pub(crate) fn insert_user(&self, tx: &WriteTx, mut user: User) -> Result<User> {
        let users = tx.table::<User>();
        user.id = users.next_id()?;
        users.insert(&user).map_err(|e| match e {
            // Name the email rather than the id that holds it.
            Error::Conflict { index: "email", .. } => Error::Conflict {
                table: User::TABLE,
                index: "email",
                detail: format!(
                    "a user with email {} exists",
                    normalize_email(&user.email).unwrap_or_else(|_| user.email.clone())
                ),
            },
            e => e,
        })?;
        Ok(user)
    }

    /// The user repository.
    pub fn users(&self) -> Users<'_> {
        Users { rk: self }
    }
}

/// Operations on users; each runs in its own transaction.
#[derive(Debug, Clone, Copy)]
pub struct Users<'a> {
    rk: &'a Redkeep,
}

impl Users<'_> {
    /// Creates a user (the operator path). With `spec.invite`, consumes the invite in the same
    /// transaction.
    ///
    /// # Errors
    /// `InvalidInput` for a bad email, username, name or password; `Conflict` when the email
    /// or username is taken; invite errors as in [`crate::Invites`].
    pub fn create(&self, spec: NewUser) -> Result<CreatedUser> {
        self.rk.create_user(spec)
    }

    /// The user with this id.
    pub fn get(&self, id: u64) -> Result<Option<User>> {
        self.rk.store().read(|tx| tx.table::<User>().get(&id))
    }

    /// The user with this email (any case and surrounding spaces).
    pub fn by_email(&self, email: &str) -> Result<Option<User>> {
        let normalized = normalize_email(email)?;
        self.rk
            .store()
            .read(|tx| tx.table::<User>().get_by("email", &key!(normalized)))
    }

    /// The user with this username (any case).
    pub fn by_username(&self, username: &str) -> Result<Option<User>> {
        self.rk.store().read(|tx| {
            tx.table::<User>()
                .get_by("username", &key!(username.to_lowercase()))
        })
    }

    /// Resolves what an operator typed: a numeric id, an email or a username.
    ///
    /// # Errors
    /// `NotFound` when no user matches.
    pub fn find(&self, who: &str) -> Result<User> {
        let who = who.trim();
        let found = if !who.is_empty() && who.bytes().all(|b| b.is_ascii_digit()) {
            let id = who
                .parse::<u64>()
                .map_err(|_| Error::invalid("user", format!("{who} is not a valid id")))?;
            self.get(id)?
        } else if who.contains('@') {
            self.by_email(who)?
        } else {
            self.by_username(who)?
        };
        found.ok_or_else(|| Error::not_found(format!("user {who}")))
    }

    /// Users in id order.
    pub fn list(&self, filter: UserFilter) -> Result<Vec<User>> {
        let all = self.rk.store().read(|tx| tx.table::<User>().all())?;
        Ok(all
            .into_iter()
            .filter(|u| filter == UserFilter::All || u.is_active)
            .collect())
    }

    /// Users created in `[from, to)`, oldest first.
    pub fn created_between(&self, from: Timestamp, to: Timestamp) -> Result<Vec<User>> {
        self.rk.store().read(|tx| {
            tx.table::<User>().scan_by(
                "created_at",
                KeyRange::between(key!(from.0), key!(to.0)),
                Order::Asc,
                None,
            )
        })
    }

    /// Administrators, in id order.
    pub fn admins(&self) -> Result<Vec<User>> {
        self.rk.store().read(|tx| {
            tx.table::<User>()
                .scan_by("is_admin", KeyRange::prefix(key!(true)), Order::Asc, None)
        })
    }

    /// Number of users.
    pub fn count(&self) -> Result<u64> {
        self.rk.store().read(|tx| tx.table::<User>().count())
    }

    /// Changes a user's name or username.
    pub fn rename(
        &self,
        id: u64,
        name: Option<String>,
        username: Option<Option<String>>,
    ) -> Result<User> {
        if let Some(n) = &name {
            validate_name(n)?;
        }
        if let Some(Some(u)) = &username {
            validate_username(u)?;
        }
        let now = self.rk.now();
        self.rk.store().write(|tx| {
            tx.table::<User>().modify(&id, |u| {
                if let Some(n) = name {
                    u.name = n;
                }
                if let Some(un) = username {
                    u.username = un;
                }
                u.updated_at = now;
                Ok(u.clone())
            })
        })
    }

    /// Sets or replaces the user's avatar (JPEG, at most 1 MiB).
    pub fn set_avatar(&self, id: u64, jpeg: Vec<u8>) -> Result<()> {
        validate_avatar(&jpeg)?;
        self.rk.store().write(|tx| {
            if tx.table::<User>().get(&id)?.is_none() {
                return Err(Error::not_found(format!("user {id}")));
            }
            let avatars = tx.table::<Avatar>();
            let avatar = Avatar { user_id: id, jpeg };
            if avatars.get(&id)?.is_some() {
                avatars.update(&avatar)
            } else {
                avatars.insert(&avatar)
            }
        })
    }

    /// The user's avatar bytes, if any.
    pub fn avatar(&self, id: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .rk
            .store()
            .read(|tx| tx.table::<Avatar>().get(&id))?
            .map(|a| a.jpeg))
    }

    /// Removes the user's avatar; returns whether there was one.
    pub fn remove_avatar(&self, id: u64) -> Result<bool> {
        Ok(self
            .rk
            .store()
            .write(|tx| tx.table::<Avatar>().delete(&id))?
            .is_some())
    }
}
