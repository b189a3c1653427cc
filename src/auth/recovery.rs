//! Account recovery and email verification: single-use, expiring tokens, `rkr_` for a
//! password reset and `rkv_` for an email check, stored only as their SHA-256 like every
//! token. A token is bound to the email it was sent to: once the account's email changes, its
//! outstanding tokens no longer work. Asking for a reset gives the same answer and makes the
//! same storage calls (one durable commit writing a token) whether or not the email has an
//! account: where none is active, the token is a decoy nobody is given.
//!
//! Using a reset token lives in `flows.rs` (it sets the password and revokes sessions).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Accounts;
pub use super::accounts::RecoveryPolicy;
use super::audit::{self, Event};
use super::token::{self, Secret, TokenHash};
use super::users::{DECOY_OWNERS, User, normalize_email};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{Index, KeyRange, Order, Record, WriteTx};

/// The type prefix of password-reset tokens.
pub const RESET_PREFIX: &str = "rkr";
/// The type prefix of email-verification tokens.
pub const VERIFY_PREFIX: &str = "rkv";

/// What a recovery token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// Setting a new password without the old one.
    PasswordReset,
    /// Proving the account's email address.
    EmailVerification,
}

impl Purpose {
    fn prefix(self) -> &'static str {
        match self {
            Purpose::PasswordReset => RESET_PREFIX,
            Purpose::EmailVerification => VERIFY_PREFIX,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "password reset token",
            Purpose::EmailVerification => "email verification token",
        }
    }
}

/// A recovery token's record. The token itself is never stored; its hash is the key, kept out
/// of `Debug` and `Serialize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryToken {
    /// SHA-256 of the token: the record's key.
    #[serde(skip)]
    pub hash: TokenHash,
    /// Non-secret display prefix (`rkr_ab12cd34`).
    pub prefix: String,
    /// What it is for.
    pub purpose: Purpose,
    /// The account.
    pub user_id: u64,
    /// The email it was sent to; it works only while the account still has this email.
    pub email: String,
    /// When it was issued.
    pub created_at: Timestamp,
    /// Unusable from this time on.
    pub expires_at: Timestamp,
}

impl RecoveryToken {
    /// By account.
    pub const BY_USER: Index<RecoveryToken> = Index::many("by_user", |t| Some(key!(t.user_id)));
    /// By expiry, for the sweep.
    pub const BY_EXPIRY: Index<RecoveryToken> =
        Index::many("by_expiry", |t| Some(key!(t.expires_at.0)));
}

impl Record for RecoveryToken {
    const TABLE: &'static str = "recovery_tokens";
    type Key = TokenHash;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_USER, &Self::BY_EXPIRY];
    fn key(&self) -> TokenHash {
        self.hash
    }
    fn restore_key(&mut self, key: &TokenHash) {
        self.hash = *key;
    }
}

/// A token just issued: hand `token` to the account's owner (by mail) once.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token (`rkr_…` or `rkv_…`); shown once, stored hashed.
    pub token: Secret,
    /// The account it is for, with the email to send it to.
    pub user: User,
    /// Unusable from this time on.
    pub expires_at: Timestamp,
}

/// Deletes the outstanding tokens of `user` (of one purpose, or all); returns how many.
pub(crate) fn delete_tokens_of(
    tx: &WriteTx<'_>,
    user: u64,
    purpose: Option<Purpose>,
) -> Result<usize> {
    let t = tx.table::<RecoveryToken>();
    let mine = t.range_by(
        &RecoveryToken::BY_USER,
        KeyRange::prefix(key!(user)),
        Order::Asc,
        usize::MAX,
    )?;
    let mut n = 0;
    for tok in mine
        .iter()
        .filter(|x| purpose.is_none_or(|p| x.purpose == p))
    {
        t.delete(&tok.hash)?;
        n += 1;
    }
    Ok(n)
}

/// Password resets and email verification; each call runs in its own transaction.
#[derive(Debug, Clone, Copy)]
pub struct Recovery<'a> {
    pub(crate) acc: &'a Accounts,
}

impl Recovery<'_> {
    /// Issues a password-reset token for the account with this email, replacing any earlier
    /// one. Returns `None` when no active account has the email, after the same work: the
    /// same reads and writes, in the same order, in one durable commit (so that neither its
    /// time nor, on PostgreSQL, its round trips tell which emails have accounts). Such a
    /// request writes a decoy token that nobody is given, owned by a number derived from the
    /// email that no account has, replacing the email's earlier decoy as an issue replaces an
    /// earlier token; the sweep removes decoys once they expire. It is audited as
    /// `password_reset_requested` with outcome `no_account` (filed under user 0, which no
    /// account ever has) or, for a disabled account, `disabled` (under the account). Rate-limit
    /// the route where the time of a durable commit matters.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// # rk.users().create(redkeep::NewUser { email: "ann@example.com".into(), name: None, username: None, password: Some("old password".into()), is_admin: false, invite: None })?;
    /// let issued = rk.recovery().request_password_reset("ann@example.com")?;
    /// // Mail `issued.token` to `issued.user.email`; answer "check your mail" in any case.
    /// let issued = issued.expect("ann has an account");
    /// rk.recovery().reset_password(issued.token.expose(), "a brand new password")?;
    /// assert!(rk.users().authenticate("ann@example.com", "a brand new password").is_ok());
    /// assert!(rk.recovery().request_password_reset("nobody@example.com")?.is_none());
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` for a malformed email.
    pub fn request_password_reset(&self, email: &str) -> Result<Option<IssuedToken>> {
        let email = normalize_email(email)?;
        let now = self.acc.now();
        let ttl = crate::clock::lifetime("reset_ttl", self.acc.policy.recovery.reset_ttl)?;
        self.acc.store.write(|tx| {
            let users = tx.table::<User>();
            let found = users.get_by(&User::EMAIL, &key!(email.clone()))?;
            match found {
                Some(user) if user.is_active => {
                    let budget = Some(&self.acc.unauthenticated);
                    issue_in(tx, now, &user, Purpose::PasswordReset, ttl, budget).map(Some)
                }
                found => {
                    if found.is_none() {
                        // The record read a found email costs (user 0: never an account).
                        users.get(&0)?;
                    }
                    let budget = &self.acc.unauthenticated;
                    issue_decoy(tx, budget, now, &email, ttl, found.as_ref())?;
                    Ok(None)
                }
            }
        })
    }

    /// Issues an email-verification token for the account's current email, replacing any
    /// earlier one.
    ///
    /// # Errors
    /// `NotFound`; `Denied` when the email is already verified or the account is disabled.
    pub fn request_email_verification(&self, user: u64) -> Result<IssuedToken> {
        let now = self.acc.now();
        let ttl = crate::clock::lifetime(
            "verification_ttl",
            self.acc.policy.recovery.verification_ttl,
        )?;
        self.acc.store.write(|tx| {
            let u = tx
                .table::<User>()
                .get(&user)?
                .ok_or_else(|| Error::not_found(format!("user {user}")))?;
            if u.email_verified {
                return Err(Error::denied(format!(
                    "the email of user {user} is already verified"
                )));
            }
            if !u.is_active {
                return Err(Error::denied(format!("user {user} is disabled")));
            }
            issue_in(tx, now, &u, Purpose::EmailVerification, ttl, None)
        })
    }

    /// Uses an email-verification token: marks the account's email verified. The token works
    /// once, before it expires, and only while the account still has the email it was sent
    /// to.
    ///
    /// # Errors
    /// `InvalidCredential` for an unknown, used or mismatched token; `Expired`.
    pub fn verify_email(&self, token: &str) -> Result<User> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let (tok, mut user) = redeem_in(tx, now, token, Purpose::EmailVerification)?;
            user.email_verified = true;
            user.updated_at = now;
            tx.table::<User>().update(&user)?;
            delete_tokens_of(tx, user.id, Some(Purpose::EmailVerification))?;
            audit::user_event(tx, now, "email_verified", user.id, tok.prefix)?;
            Ok(user)
        })
    }

    /// Outstanding tokens of an account, newest first (their hashes are never shown).
    ///
    /// # Errors
    /// `Corrupt` when a token cannot be read.
    pub fn tokens_of(&self, user: u64) -> Result<Vec<RecoveryToken>> {
        let mut out = self.acc.read(|tx| {
            tx.table::<RecoveryToken>().range_by(
                &RecoveryToken::BY_USER,
                KeyRange::prefix(key!(user)),
                Order::Asc,
                usize::MAX,
            )
        })?;
        out.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        Ok(out)
    }
}

/// The owner of the decoy reset token of `email` (normalised): a number no account has,
/// the same for every request for that email.
fn decoy_owner(email: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("redkeep decoy reset {email}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    DECOY_OWNERS | (u64::from_be_bytes(first) >> 1)
}

/// What [`issue_in`] does for an account, for an email with no active account (`user`: the
/// disabled one it has, if any): the email's earlier decoy goes, a new one goes in with its
/// index entries, and the request is audited with an index entry, as an issue's is. The
/// decoy stays until the next request for the email or its expiry (the sweep): deleting it
/// here would be writes an issue does not make.
fn issue_decoy(
    tx: &WriteTx<'_>,
    budget: &super::budget::Budget,
    now: Timestamp,
    email: &str,
    ttl: Duration,
    user: Option<&User>,
) -> Result<()> {
    let owner = decoy_owner(email);
    delete_tokens_of(tx, owner, Some(Purpose::PasswordReset))?;
    token::insert_with_token(tx, Purpose::PasswordReset.prefix(), |hash, prefix| {
        RecoveryToken {
            hash,
            prefix,
            purpose: Purpose::PasswordReset,
            user_id: owner,
            email: email.to_string(),
            created_at: now,
            expires_at: now.plus(ttl),
        }
    })?;
    let (subject_user, subject, outcome) = match user {
        Some(u) => (u.id, format!("user {}", u.id), "disabled"),
        None => (0, format!("email {email}"), "no_account"),
    };
    audit::record_unauthenticated(
        tx,
        budget,
        now,
        Event {
            action: "password_reset_requested",
            subject_user: Some(subject_user),
            subject,
            outcome,
            ..Event::default()
        },
    )
}

// Replaces the account's outstanding tokens of `purpose` with a new one. `unauthenticated`:
// the budget its audit row is written within, for a request no one signed in to.
fn issue_in(
    tx: &WriteTx<'_>,
    now: Timestamp,
    user: &User,
    purpose: Purpose,
    ttl: Duration,
    unauthenticated: Option<&super::budget::Budget>,
) -> Result<IssuedToken> {
    delete_tokens_of(tx, user.id, Some(purpose))?;
    let expires_at = now.plus(ttl);
    let (secret, tok) =
        token::insert_with_token(tx, purpose.prefix(), |hash, prefix| RecoveryToken {
            hash,
            prefix,
            purpose,
            user_id: user.id,
            email: user.email.clone(),
            created_at: now,
            expires_at,
        })?;
    let action = match purpose {
        Purpose::PasswordReset => "password_reset_requested",
        Purpose::EmailVerification => "email_verification_requested",
    };
    match unauthenticated {
        Some(budget) => {
            let e = audit::user_event_of(action, user.id, tok.prefix);
            audit::record_unauthenticated(tx, budget, now, e)?
        }
        None => audit::user_event(tx, now, action, user.id, tok.prefix)?,
    }
    Ok(IssuedToken {
        token: secret,
        user: user.clone(),
        expires_at,
    })
}

/// Finds a live token of `purpose` and its account, and deletes the token (single use).
/// Every failure but expiry is the same `InvalidCredential`.
pub(crate) fn redeem_in(
    tx: &WriteTx<'_>,
    now: Timestamp,
    token: &str,
    purpose: Purpose,
) -> Result<(RecoveryToken, User)> {
    let invalid = || Error::InvalidCredential {
        what: purpose.what(),
    };
    let token = token.trim();
    if !token::looks_like(purpose.prefix(), token) {
        return Err(invalid());
    }
    let hash = token::hash_token(token);
    let t = tx.table::<RecoveryToken>();
    let tok = t.get(&hash)?.ok_or_else(invalid)?;
    if !token::hashes_equal(&tok.hash, &hash) || tok.purpose != purpose {
        return Err(invalid());
    }
    if now >= tok.expires_at {
        // Left for the sweep: the error ends this transaction, which undoes its writes.
        return Err(Error::Expired {
            what: purpose.what().into(),
        });
    }
    let user = tx
        .table::<User>()
        .get(&tok.user_id)?
        .filter(|u| u.is_active && u.email == tok.email)
        .ok_or_else(invalid)?;
    t.delete(&hash)?;
    Ok((tok, user))
}

/// Checks, without using it, that `token` is a live token of `purpose`.
pub(crate) fn peek(acc: &Accounts, token: &str, purpose: Purpose) -> Result<RecoveryToken> {
    let invalid = || Error::InvalidCredential {
        what: purpose.what(),
    };
    let token = token.trim();
    if !token::looks_like(purpose.prefix(), token) {
        return Err(invalid());
    }
    let hash = token::hash_token(token);
    let now = acc.now();
    let tok = acc
        .read(|tx| tx.table::<RecoveryToken>().get(&hash))?
        .filter(|t| token::hashes_equal(&t.hash, &hash) && t.purpose == purpose)
        .ok_or_else(invalid)?;
    if now >= tok.expires_at {
        return Err(Error::Expired {
            what: purpose.what().into(),
        });
    }
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use crate::store::ENGINE_CALLS;
    use crate::{NewUser, Options, PasswordParams, Redkeep};

    /// The engine calls (each a round trip on PostgreSQL) `f` makes.
    fn calls(f: impl FnOnce()) -> Vec<&'static str> {
        ENGINE_CALLS.with_borrow_mut(Vec::clear);
        f();
        ENGINE_CALLS.with_borrow_mut(std::mem::take)
    }

    /// A reset asked for an active account, a disabled one and an email no account has makes
    /// the same engine calls in the same order, the first time and again (an account's
    /// earlier token replaced, and an email's earlier decoy).
    #[test]
    fn a_reset_request_makes_the_same_engine_calls_whatever_the_email() {
        let tmp = tempfile::tempdir().unwrap();
        let rk = Redkeep::open(
            tmp.path(),
            Options::default().password(PasswordParams::INSECURE_FAST),
        )
        .unwrap();
        for email in ["ann@example.com", "bob@example.com", "warm@example.com"] {
            rk.users()
                .create(NewUser {
                    email: email.into(),
                    password: Some("correct horse".into()),
                    ..NewUser::default()
                })
                .unwrap();
        }
        rk.users().disable(2).unwrap();
        // First uses of the tables, out of the way.
        rk.recovery()
            .request_password_reset("warm@example.com")
            .unwrap();
        rk.recovery()
            .request_password_reset("cold@example.com")
            .unwrap();
        let request = |email: &str| calls(|| drop(rk.recovery().request_password_reset(email)));
        for round in ["first", "again"] {
            let active = request("ann@example.com");
            let disabled = request("bob@example.com");
            let unknown = request("nobody@example.com");
            assert!(active.contains(&"write"), "{active:?}");
            assert_eq!(active, unknown, "{round}: active vs unknown");
            assert_eq!(active, disabled, "{round}: active vs disabled");
        }
    }
}
