//! Flows that span tables, each one write transaction that normalises its input once:
//! creating a user (credential, invite use, roles, personal org, audit), logging in under the
//! lockout rules, changing passwords, disabling, unlocking, deleting a user with everything
//! that is theirs, and deleting an org with its keys.
//!
//! Lockout is decided inside a write transaction *before* the password is hashed: each
//! attempt is counted as a failure when it is admitted and the count is cleared only when the
//! password proves right, so however many guesses arrive at once, no more than the policy's
//! threshold ever reach the hash.
//!
//! A failed login makes the same storage calls whatever the account (a wrong password, no
//! account, a disabled or a locked one): one read (the login's index entry, a user record, a
//! credential), a commit that reads a credential and writes it back, one hash, and a commit
//! with its audit row. On PostgreSQL each call is a round trip, and a count that differed
//! would tell which logins have an account. Where there is none, the credential is a decoy
//! that no user has ([`decoy_credential`]). The one attempt that locks an account writes a
//! second audit row (`account_locked`).

use super::Accounts;
use super::agents::AgentSession;
use super::api_keys::{self, KeyOwner};
use super::audit::{self, Event};
use super::invites;
use super::orgs::{self, Org, OrgMember, OrgRole, Orgs};
use super::recovery::{self, Purpose, Recovery};
use super::roles::{self, ADMIN_ROLE, DEFAULT_ROLE, UserRole};
use super::sessions::{self, Login, LoginMeta, Sessions};
use super::token::{self, Secret, TokenHash};
use super::users::{
    Avatar, CreatedUser, Credential, DeletedUser, DisabledUser, NewUser, Registration, Uid, User,
    Users, new_stamp, normalize_email, validate_name, validate_new_username,
};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{Durability, KeyRange, Order, WriteTx};

/// A user record ready to insert: validated, with its password hashed.
pub(crate) struct PreparedUser {
    pub(crate) user: User,
    pub(crate) hash: String,
    pub(crate) generated: Option<Secret>,
}

/// Validates `spec` and hashes its password, outside any transaction (hashing is slow and
/// must not hold the write lock).
pub(crate) fn prepare_user(acc: &Accounts, spec: &NewUser) -> Result<PreparedUser> {
    let normalized = crate::auth::users::normalize_new_email(&spec.email)?;
    if let Some(u) = &spec.username {
        validate_new_username(u)?;
    }
    let name = match &spec.name {
        Some(n) => crate::auth::users::given_name(n)?,
        None => normalized.split('@').next().unwrap_or_default().to_string(),
    };
    validate_name(&name)?;
    let (password, generated) = match &spec.password {
        Some(p) => (p.clone(), None),
        None => {
            let g = token::generate_password()?;
            (g.clone(), Some(g))
        }
    };
    let hash = acc.passwords.hash(password.expose())?;
    let now = acc.now();
    Ok(PreparedUser {
        user: User {
            id: 0,
            uid: Uid::generate()?,
            email: spec.email.trim().to_string(),
            username: spec.username.clone(),
            name,
            external_id: None,
            is_admin: spec.is_admin,
            is_active: true,
            email_verified: false,
            must_change_password: generated.is_some(),
            last_login_at: None,
            current_org_id: None,
            created_at: now,
            updated_at: now,
        },
        hash,
        generated,
    })
}

/// Inserts a prepared user and the records a user starts with, inside `tx`: the credential,
/// the invite's use, the `user` role (and `admin` for administrators), a personal org as
/// current org, and the audit event.
pub(crate) fn insert_new_user(
    tx: &WriteTx<'_>,
    now: Timestamp,
    mut user: User,
    hash: String,
    invite: Option<&str>,
) -> Result<User> {
    let users = tx.table::<User>();
    user.id = users.next_id()?;
    // The invite first: without a valid one, nobody learns whether the email is taken.
    if let Some(code) = invite {
        let inv = invites::consume(tx, now, code, user.id)?;
        audit::record(
            tx,
            now,
            Event {
                action: "invite_used",
                subject_user: Some(user.id),
                subject: format!("invite {}", inv.prefix),
                outcome: "ok",
                ..Event::default()
            },
        )?;
    }
    // The user is written once, already pointing at the personal org made below.
    user.current_org_id = Some(orgs::reserve_personal(tx)?);
    users
        .insert(&user)
        .map_err(|e| crate::auth::users::name_the_clash(e, &user))?;
    tx.table::<Credential>()
        .insert(&Credential::new(user.id, hash, now)?)?;
    roles::grant_in(tx, now, user.id, DEFAULT_ROLE, None)?;
    if user.is_admin {
        roles::grant_in(tx, now, user.id, ADMIN_ROLE, None)?;
    }
    orgs::create_personal(tx, now, &user)?;
    audit::user_event(tx, now, "user_created", user.id, String::new())?;
    Ok(user)
}

/// Creates a user with all their records in one transaction.
pub(crate) fn create_user(acc: &Accounts, spec: NewUser) -> Result<CreatedUser> {
    // A bad invite is refused before the password is hashed (no hashing for anyone who
    // posts a made-up code); the transaction checks it again when it uses it.
    if let Some(code) = &spec.invite {
        invites::Invites { acc }.validate(code.expose())?;
    }
    let prepared = prepare_user(acc, &spec)?;
    let invite = spec.invite.as_ref().map(Secret::expose);
    let now = acc.now();
    let user = match acc.store.write(|tx| {
        insert_new_user(
            tx,
            now,
            prepared.user.clone(),
            prepared.hash.clone(),
            invite,
        )
    }) {
        Err(Error::Conflict {
            table,
            index: index @ ("email" | "username"),
            detail,
        }) if invite.is_some() => {
            let detail = spend_on_clash(acc, now, invite.unwrap_or_default(), index, detail);
            return Err(Error::Conflict {
                table,
                index,
                detail,
            });
        }
        out => out?,
    };
    Ok(CreatedUser {
        user,
        password: prepared.generated,
    })
}

/// Counts a use of invite `code` for an attempt whose email or username (`index`) has an
/// account: listed as user 0, which no account has. A clash that left the invite as it was
/// let one code ask about any number of addresses. Returns the clash's `detail` saying what
/// became of the invite.
fn spend_on_clash(
    acc: &Accounts,
    now: Timestamp,
    code: &str,
    index: &str,
    detail: String,
) -> String {
    let spent = acc.store.write(|tx| {
        let inv = invites::consume(tx, now, code, 0)?;
        audit::record(
            tx,
            now,
            Event {
                action: "invite_used",
                subject: format!("invite {}", inv.prefix),
                outcome: "conflict",
                detail: format!("the {index} given has an account; the use counts all the same"),
                ..Event::default()
            },
        )?;
        Ok(inv)
    });
    match spent {
        Ok(inv) => format!(
            "{detail}; invite code {} counts this attempt as a use ({} of {} used): log in \
             to that account, or register with another {index}",
            inv.prefix, inv.uses, inv.max_uses
        ),
        // Used up, revoked or expired meanwhile, or a failing store: the clash is the answer.
        Err(e) => {
            tracing::warn!(error = %e, "a registration's clash could not be counted against its invite");
            detail
        }
    }
}

/// The key of the decoy credential that a login no account has (`login`: what was given, or
/// a user id's digits) reads and writes back where an account's attempt reads and writes the
/// account's credential (see [`admit_uncounted`]): one of [`DECOY_CREDENTIALS`] numbers no
/// account has (numbers from 2^63 up are decoys', see `users::is_decoy_owner`). A decoy
/// holds no password (an empty hash matches none) and no user points at it; the first such
/// login that comes to it makes it. `check`, its repair and an import's check of the store
/// it replaces pass over the decoys; a backup, export or move carries them.
pub(crate) fn decoy_credential(login: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("redkeep decoy login {login}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    super::users::DECOY_OWNERS + u64::from_be_bytes(first) % DECOY_CREDENTIALS
}

/// How many decoy credentials there are: logins no account has share them (each login
/// always the same one), so that on PostgreSQL concurrent ones seldom write the same row,
/// which would make them wait on each other and stand out from logins to accounts.
const DECOY_CREDENTIALS: u64 = 64;

/// Finds the account an email or a username names, with its credential. A login no account
/// has (or a malformed one) makes the same reads: the index, a user record (user 0, which no
/// account has) and a credential (the decoy's).
fn find_login(acc: &Accounts, login: &str) -> Result<Option<(User, Credential)>> {
    let login = login.trim();
    let (index, k) = if login.contains('@') {
        match normalize_email(login) {
            Ok(n) => (&User::EMAIL, key!(n)),
            // No account has an empty email.
            Err(_) => (&User::EMAIL, key!("")),
        }
    } else {
        // Nor an empty username.
        (&User::USERNAME, key!(login.to_lowercase()))
    };
    acc.read(|tx| {
        let users = tx.table::<User>();
        let creds = tx.table::<Credential>();
        let Some(user) = users.get_by(index, &k)? else {
            // The record read a found entry costs, and the credential's.
            users.get(&0)?;
            creds.get(&decoy_credential(login))?;
            return Ok(None);
        };
        Ok(creds.get(&user.id)?.map(|c| (user, c)))
    })
}

enum Verdict {
    Locked,
    RateLimited,
    Check,
}

fn verdict(acc: &Accounts, c: &Credential, now: Timestamp) -> Verdict {
    let policy = acc.policy.lockout;
    if c.locked_until.is_some_and(|t| now < t) {
        return Verdict::Locked;
    }
    let window_open = c.failure_window_start.is_some_and(|s| now.since(s) < 3600);
    if window_open && c.failures_in_window >= policy.max_failures_per_hour {
        return Verdict::RateLimited;
    }
    Verdict::Check
}

/// Counts a failed attempt that reaches the hash; returns whether it locked the account.
fn record_failure(acc: &Accounts, c: &mut Credential, now: Timestamp) -> bool {
    let policy = acc.policy.lockout;
    if c.failure_window_start.is_none_or(|s| now.since(s) >= 3600) {
        c.failure_window_start = Some(now);
        c.failures_in_window = 0;
    }
    c.failures_in_window = c.failures_in_window.saturating_add(1);
    c.failed_logins = c.failed_logins.saturating_add(1);
    if c.failed_logins < policy.threshold {
        return false;
    }
    c.lock_count = c.lock_count.saturating_add(1);
    let factor = 1u32
        .checked_shl(c.lock_count.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let lock = policy.base_lock.saturating_mul(factor).min(policy.max_lock);
    c.locked_until = Some(now.plus(lock));
    c.failed_logins = 0;
    true
}

fn login_event<'a>(user: u64, action: &'a str, outcome: &'a str) -> Event<'a> {
    Event {
        action,
        subject_user: Some(user),
        subject: format!("user {user}"),
        outcome,
        ..Event::default()
    }
}

/// Why [`admit`] lets an attempt go no further.
#[derive(Debug)]
enum Refused {
    /// Locked or rate-limited: the outcome to audit (`locked`, `rate_limited`) once the
    /// hash's time has passed.
    Locked(&'static str),
    /// The account has no credential (a damaged store): nothing to count or audit.
    NoCredential,
}

/// Admits one attempt on `user`'s password, deciding on the lockout inside the write
/// transaction that counts it: reads the credential and writes it back, counted, or, for a
/// locked or rate-limited account, as it was (the same calls; the refusal is audited after
/// the hash's time, in the commit where a wrong password's failure is). Returns the hash to
/// verify against, or why the attempt goes no further.
fn admit(acc: &Accounts, user: u64, now: Timestamp) -> Result<Result<Admitted, Refused>> {
    // What the attempt stored, for a commit that fails yet may have landed.
    let mut counted: Option<(Credential, Option<Timestamp>)> = None;
    // Not durable: a crash can only forget a failure, never grant an extra guess in this run.
    let out = acc.store.write_with(Durability::None, |tx| {
        counted = None;
        let creds = tx.table::<Credential>();
        let Some(mut c) = creds.get(&user)? else {
            return Ok(Err(Refused::NoCredential));
        };
        match verdict(acc, &c, now) {
            Verdict::Check => {
                // Counted before the hash runs, so that guesses in flight together cannot
                // pass the threshold; the lock is announced only once the password proves
                // wrong (a right one clears it).
                let locks = record_failure(acc, &mut c, now);
                creds.update(&c)?;
                counted = Some((c.clone(), locks.then(|| c.locked_until.unwrap_or(now))));
                Ok(Ok(Admitted {
                    hash: c.password_hash,
                    stamp: c.stamp,
                    locks_until: locks.then(|| c.locked_until.unwrap_or(now)),
                    typed_form: false,
                }))
            }
            v => {
                // Written back as it was: the write a counted attempt makes.
                creds.update(&c)?;
                Ok(Err(Refused::Locked(match v {
                    Verdict::RateLimited => "rate_limited",
                    _ => "locked",
                })))
            }
        }
    });
    match (out, counted) {
        // A commit that failed at the disk may have landed all the same (its error says so):
        // if the store shows this very count, the attempt goes on, and a right password
        // clears it as usual. Left as an error, a right password's attempt stayed counted,
        // and ten of them locked the account with no failed login audited.
        (Err(e), Some((c, locks_until))) => {
            let landed = acc
                .read(|tx| tx.table::<Credential>().get(&user))
                .is_ok_and(|now_stored| now_stored.as_ref() == Some(&c));
            if !landed {
                return Err(e);
            }
            tracing::warn!(error = %e, "a login attempt's count landed although its commit failed");
            Ok(Ok(Admitted {
                hash: c.password_hash,
                stamp: c.stamp,
                locks_until,
                typed_form: false,
            }))
        }
        (out, _) => out,
    }
}

/// [`admit`]'s commit for an attempt that counts nothing (a disabled account, or no account:
/// `key` a decoy's, [`decoy_credential`]): the credential read and written back as it was (the
/// decoy made when missing, with the same calls). A round trip on PostgreSQL, or a disk
/// write, would otherwise tell which logins have an account. It fails as a write fails (a
/// store that refuses writes), as the commit it stands for would.
fn admit_uncounted(acc: &Accounts, key: u64, now: Timestamp) -> Result<()> {
    acc.store.write_with(Durability::None, |tx| {
        let creds = tx.table::<Credential>();
        let c = match creds.get(&key)? {
            Some(c) => c,
            None if super::users::is_decoy_owner(key) => Credential::new(key, String::new(), now)?,
            // An account without a credential (a damaged store): nothing to write back.
            None => return Ok(()),
        };
        // `put` reads the stored record as `update` does, then writes.
        creds.put(&c)
    })
}

/// What [`admit`] lets through: the hash to check, the credential's stamp then, and the
/// lock this attempt set when it reached the threshold (announced if the password is wrong).
/// Once the password matched (see [`verify_user`]), the caller ends the attempt with
/// [`settle_right`].
struct Admitted {
    hash: String,
    stamp: [u8; 16],
    locks_until: Option<Timestamp>,
    // The password matched only as typed, not in its NFC form: a rehash moves it.
    typed_form: bool,
}

/// Ends, inside `tx`, an attempt on `id` whose password matched `right.hash`: clears the
/// lockout counters (the failure it was counted as, and the lock it may have set), as a right
/// password does, and gives back the user and credential to store. `None`: the attempt fails.
///
/// - The password changed while the hash ran: the one given is no longer right. The failure
///   is audited, and the lock the attempt set, if still in force, announced. (A rehash of
///   the same password changes the hash but keeps the stamp; a disable or "revoke all"
///   renews the stamp but keeps the hash; a change renews both.)
/// - The account was disabled meanwhile: it fails, audited, as for a disabled account; the
///   counters are stored cleared, since the password proved right.
/// - The user was deleted meanwhile: it fails; there is no one to audit.
fn settle_right(
    tx: &WriteTx<'_>,
    acc: &Accounts,
    now: Timestamp,
    id: u64,
    right: &Admitted,
) -> Result<Option<(User, Credential)>> {
    let (Some(u), Some(mut c)) = (
        tx.table::<User>().get(&id)?,
        tx.table::<Credential>().get(&id)?,
    ) else {
        return Ok(None);
    };
    if c.password_hash != right.hash && c.stamp != right.stamp {
        // The lock this attempt set, if still in force.
        let lock = right
            .locks_until
            .filter(|&until| c.locked_until == Some(until));
        failure_in(tx, acc, now, id, "changed", lock)?;
        return Ok(None);
    }
    c.passed();
    if u.is_active {
        return Ok(Some((u, c)));
    }
    tx.table::<Credential>().update(&c)?;
    failure_in(tx, acc, now, id, "disabled", None)?;
    Ok(None)
}

/// Audits a failed attempt on `user` inside `tx` (within the budget of requests no one
/// signed in to), and the lock it set, if any (always: one per lock).
fn failure_in(
    tx: &WriteTx<'_>,
    acc: &Accounts,
    now: Timestamp,
    user: u64,
    outcome: &str,
    locked_until: Option<Timestamp>,
) -> Result<()> {
    audit::record_unauthenticated(
        tx,
        &acc.unauthenticated,
        now,
        login_event(user, "login_failed", outcome),
    )?;
    if let Some(until) = locked_until {
        tracing::warn!(user, "account locked after repeated failed logins");
        let mut e = login_event(user, "account_locked", "locked");
        e.detail = format!("until {until}");
        audit::record(tx, now, e)?;
    }
    Ok(())
}

fn audit_failure(
    acc: &Accounts,
    user: u64,
    now: Timestamp,
    outcome: &str,
    locked_until: Option<Timestamp>,
) -> Result<()> {
    acc.store.write_with(Durability::None, |tx| {
        failure_in(tx, acc, now, user, outcome, locked_until)
    })
}

/// The commit that stands in for [`audit_failure`]'s where there is nothing to audit (an
/// account without a credential, in a damaged store). It writes nothing, but fails as a
/// write fails (a store that refuses writes), as the commit it stands for would.
fn stand_in_commit(acc: &Accounts) -> Result<()> {
    acc.store.write_with(Durability::None, |_| Ok(()))
}

/// An attempt on a login no account has (or a malformed one): the work of a wrong password
/// on one, a commit that reads and writes back a credential (the decoy's), the hash, and a
/// commit with its audit row (`login_failed`, `no_account`, filed under user 0, which no
/// account ever has, as an account's row is filed under the account; the login given is not
/// kept, it may be a password typed in the wrong field). Always an error: `Unauthorized`,
/// or the store's error when it refuses writes, as it would for an account.
fn no_account(acc: &Accounts, decoy: u64, password: &str) -> Error {
    let now = acc.now();
    let attempt = admit_uncounted(acc, decoy, now).and_then(|()| {
        acc.passwords.burn_for(password);
        acc.store.write_with(Durability::None, |tx| {
            audit::record_unauthenticated(
                tx,
                &acc.unauthenticated,
                now,
                Event {
                    action: "login_failed",
                    subject_user: Some(0),
                    subject: "no account".into(),
                    outcome: "no_account",
                    ..Event::default()
                },
            )
        })
    });
    attempt.err().unwrap_or(Error::Unauthorized)
}

/// Verifies `password` for `user` under the lockout rules. Returns the hash it matched and
/// the lock the attempt set, for [`settle_right`] to end the attempt with.
fn verify_user(acc: &Accounts, user: &User, password: &str) -> Result<Admitted> {
    let now = acc.now();
    if !user.is_active {
        // The work of a wrong password, and nothing counted: the account cannot log in
        // anyway. The password is not checked: a right guess costs one hash where a wrong
        // one typed in another Unicode form costs two, and the time would tell it, with no
        // lockout to stop the guessing.
        admit_uncounted(acc, user.id, now)?;
        acc.passwords.burn_for(password);
        audit_failure(acc, user.id, now, "disabled", None)?;
        return Err(Error::Unauthorized);
    }
    let mut admitted = match admit(acc, user.id, now)? {
        Ok(a) => a,
        Err(refused) => {
            acc.passwords.burn_for(password);
            match refused {
                Refused::Locked(outcome) => acc.store.write_with(Durability::None, |tx| {
                    audit::record_unauthenticated(
                        tx,
                        &acc.unauthenticated,
                        now,
                        login_event(user.id, "login_locked", outcome),
                    )
                })?,
                Refused::NoCredential => stand_in_commit(acc)?,
            }
            return Err(Error::Unauthorized);
        }
    };
    let matched = acc.passwords.verify_form(password, &admitted.hash);
    acc.passwords.burn_rest(password, &admitted.hash);
    match matched {
        Some(normal) => admitted.typed_form = !normal,
        None => {
            audit_failure(acc, user.id, now, "denied", admitted.locks_until)?;
            return Err(Error::Unauthorized);
        }
    }
    Ok(admitted)
}

/// Reads the cost profiles of the store's password hashes, once per handle (at its first
/// login, before the attempt's own reads: every attempt after costs the same): a failed
/// login does the work of each ([`Passwords::burn_for`]).
///
/// [`Passwords::burn_for`]: super::password::Passwords::burn_for
fn learn_profiles(acc: &Accounts) -> Result<()> {
    if acc.passwords.knows_profiles() {
        return Ok(());
    }
    let hashes = acc.read(|tx| {
        let mut hashes = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        tx.table::<Credential>()
            .for_each_sound(crate::store::KeyRange::all(), |c| {
                let (algorithm, params) = super::password::scheme(&c.password_hash);
                if seen.insert((algorithm, params)) {
                    hashes.push(c.password_hash);
                }
                Ok(true)
            })?;
        Ok(hashes)
    })?;
    acc.passwords.learn(hashes.iter().map(String::as_str));
    Ok(())
}

/// [`settle_right`] in a write of its own (an attempt that records no login).
fn settle_right_alone(acc: &Accounts, id: u64, right: &Admitted) -> Result<()> {
    let now = acc.now();
    acc.store.write_with(Durability::None, |tx| {
        Ok(match settle_right(tx, acc, now, id, right)? {
            Some((_, c)) => {
                tx.table::<Credential>().update(&c)?;
                Ok(())
            }
            None => Err(Error::Unauthorized),
        })
    })?
}

/// Verifies an email or username and a password under the lockout rules and, on success,
/// runs `on_success` in the same write transaction that clears the failure count. Every
/// failure is `Unauthorized`, after the same work.
pub(crate) fn verify_login<T: Send>(
    acc: &Accounts,
    login: &str,
    password: &str,
    mut on_success: impl FnMut(&WriteTx<'_>, &User) -> Result<T> + Send,
) -> Result<(User, T)> {
    learn_profiles(acc)?;
    let Some((user, _)) = find_login(acc, login)? else {
        return Err(no_account(acc, decoy_credential(login), password));
    };
    let right = verify_user(acc, &user, password)?;
    // (Not a password a bcrypt hash read only the start of: see `bcrypt_cut_short`.)
    let rehash = if (right.typed_form || acc.passwords.needs_rehash(&right.hash))
        && !super::password::Passwords::bcrypt_cut_short(password, &right.hash)
    {
        Some(acc.passwords.hash_verified(password)?)
    } else {
        None
    };
    let now = acc.now();
    let out = acc.store.write(|tx| {
        // The password or the account changed while the hash ran: a failure.
        let Some((mut u, mut c)) = settle_right(tx, acc, now, user.id, &right)? else {
            return Ok(Err(Error::Unauthorized));
        };
        if let Some(h) = &rehash {
            // A new hash of the same password: the stamp stays, so no session is logged out.
            c.password_hash = h.clone();
        }
        tx.table::<Credential>().update(&c)?;
        u.last_login_at = Some(now);
        tx.table::<User>().update(&u)?;
        let mut e = login_event(u.id, "login_ok", "ok");
        e.actor = Some(u.id);
        audit::record(tx, now, e)?;
        let extra = on_success(tx, &u)?;
        Ok(Ok((u, extra)))
    });
    if out.is_err() {
        // The password was right, but the login did not commit (a failing disk, say): take
        // back the failure `admit` counted, as the login would have, so that such errors
        // never add up to a lock. Best effort: a store that refused the login may refuse
        // this too, and the login's own error is the one to report.
        if let Err(e) = settle_right_alone(acc, user.id, &right) {
            tracing::warn!(error = %e, "a failed login's attempt could not be taken back");
        }
    }
    out?
}

/// Client details as kept: what the client sent (a header, say) with every control
/// character made a space, so `session list` can show it without a forged line, cut to
/// [`MAX_CLIENT_TEXT`](sessions::MAX_CLIENT_TEXT) bytes at a character boundary. A login never
/// fails over what a client put in its headers.
fn client_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(sessions::MAX_CLIENT_TEXT));
    for c in s.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if out.len() + c.len_utf8() > sessions::MAX_CLIENT_TEXT {
            break;
        }
        out.push(c);
    }
    out
}

/// Logs in and creates a session.
fn log_in(acc: &Accounts, login: &str, password: &str, meta: LoginMeta) -> Result<Login> {
    let ttl = crate::clock::lifetime("ttl", meta.ttl.unwrap_or(acc.policy.sessions.ttl))?;
    let meta = LoginMeta {
        ip: meta.ip.as_deref().map(client_text),
        user_agent: meta.user_agent.as_deref().map(client_text),
        ..meta
    };
    let idle = acc.policy.sessions.idle_timeout;
    let now = acc.now();
    let (user, (token, session)) = verify_login(acc, login, password, |tx, u| {
        sessions::create_in(tx, now, u.id, ttl, idle, &meta)
    })?;
    Ok(Login {
        token,
        session,
        user,
    })
}

/// Checks a password for a user id without recording a login; the same hashing work is done
/// for an unknown or disabled user.
pub(crate) fn check_password(acc: &Accounts, id: u64, password: &str) -> Result<()> {
    learn_profiles(acc)?;
    let found = acc.read(|tx| {
        let creds = tx.table::<Credential>();
        let Some(u) = tx.table::<User>().get(&id)? else {
            // The credential read an account costs (a decoy's: see `find_login`).
            creds.get(&decoy_credential(&id.to_string()))?;
            return Ok(None);
        };
        Ok(creds.get(&id)?.map(|c| (u, c)))
    })?;
    let Some((user, _)) = found else {
        return Err(no_account(acc, decoy_credential(&id.to_string()), password));
    };
    // Under the lockout rules, as a login: a route that asks for the password again must not
    // be a way around them.
    let right = verify_user(acc, &user, password)?;
    match settle_right_alone(acc, id, &right) {
        // Not a failure of the password: once more, so that a failing disk's errors never
        // add up to a lock (as for a login).
        Err(e) if !matches!(e, Error::Unauthorized) => {
            if let Err(again) = settle_right_alone(acc, id, &right) {
                tracing::warn!(error = %again, "a checked password's attempt could not be taken back");
            }
            Err(e)
        }
        done => done,
    }
}

/// Checks a password for an operator: no login, nothing counted toward the lockout and no
/// lockout applied; audited as `password_checked` (outcome `ok` or `mismatch`).
pub(crate) fn operator_check(acc: &Accounts, id: u64, password: &str) -> Result<bool> {
    let found = acc.read(|tx| {
        let Some(_) = tx.table::<User>().get(&id)? else {
            return Ok(None);
        };
        Ok(Some(tx.table::<Credential>().get(&id)?))
    })?;
    let Some(credential) = found else {
        return Err(Error::not_found(format!("user {id}")));
    };
    let right = credential.is_some_and(|c| {
        acc.passwords
            .verify_form(password, &c.password_hash)
            .is_some()
    });
    let now = acc.now();
    acc.store.write(|tx| {
        audit::record(
            tx,
            now,
            Event {
                action: "password_checked",
                subject_user: Some(id),
                subject: format!("user {id}"),
                outcome: if right { "ok" } else { "mismatch" },
                detail: "by an operator: no login, not counted toward the lockout".into(),
                ..Event::default()
            },
        )
    })?;
    Ok(right)
}

/// What an org event's detail adds for the org keys a member's change revoked: nothing when
/// none was.
fn keys_revoked_detail(revoked: &[String]) -> String {
    if revoked.is_empty() {
        String::new()
    } else {
        format!("; {} API key(s) they made for it revoked", revoked.len())
    }
}

/// Stores a new password hash: sets `must_change_password` to `must_change` (true for one an
/// operator chose, which they know), clears the lockout, changes the credential's stamp,
/// revokes every session of the user but `keep`, and deletes their outstanding
/// password-reset tokens.
fn store_password(
    tx: &WriteTx<'_>,
    now: Timestamp,
    id: u64,
    hash: &str,
    keep: Option<TokenHash>,
    must_change: bool,
) -> Result<User> {
    let user = tx.table::<User>().modify(&id, |u| {
        u.must_change_password = must_change;
        u.updated_at = now;
        Ok(u.clone())
    })?;
    let creds = tx.table::<Credential>();
    let stamp = new_stamp()?;
    match creds.get(&id)? {
        Some(mut c) => {
            c.password_hash = hash.to_string();
            c.clear_failures();
            c.stamp = stamp;
            c.changed_at = now;
            creds.update(&c)?;
        }
        None => creds.insert(&Credential::new(id, hash.to_string(), now)?)?,
    }
    sessions::revoke_all_in(tx, now, id, keep)?;
    // A reset link sent before would set another password over this one.
    recovery::delete_tokens_of(tx, id, Some(Purpose::PasswordReset))?;
    let detail = if must_change {
        "to change at the next login".to_string()
    } else {
        String::new()
    };
    audit::user_event(tx, now, "password_changed", id, detail)?;
    Ok(user)
}

/// Sets a new password (operator path), one the user must change at their next login when
/// `must_change`.
fn set_password(acc: &Accounts, id: u64, password: &str, must_change: bool) -> Result<User> {
    let hash = acc.passwords.hash(password)?;
    let now = acc.now();
    acc.store
        .write(|tx| store_password(tx, now, id, &hash, None, must_change))
}

/// Changes a user's password after checking the current one (under the lockout rules);
/// revokes every session of the user but `keep`.
fn change_password_checked(
    acc: &Accounts,
    user: &User,
    current: &str,
    new: &str,
    keep: Option<TokenHash>,
) -> Result<User> {
    let right = admit_change(acc, user, current, new)?;
    store_if_settled(acc, user.id, &right, new, keep)
}

/// Checks a password change of `user` (the new password's rules, the current one under the
/// lockout rules); returns the attempt its current password was admitted as.
fn admit_change(acc: &Accounts, user: &User, current: &str, new: &str) -> Result<Admitted> {
    super::password::validate_password(new)?;
    acc.read(|tx| tx.table::<Credential>().get(&user.id))?
        .ok_or(Error::Unauthorized)?;
    let right = verify_user(acc, user, current)?;
    // Checked once the current one is known right: a "change" to the same password would
    // keep a generated one (printed once, maybe still in a terminal's scrollback) for good.
    // Compared in NFC, the form hashes are made of: the same password typed in another
    // Unicode form (a Kelvin sign for `K`) is the same password.
    // The right password still ends the attempt, clearing the failure it was counted as.
    if super::password::nfc(new) == super::password::nfc(current) {
        settle_right_alone(acc, user.id, &right)?;
        return Err(Error::invalid(
            "password",
            "the new password is the current one; choose a different one",
        ));
    }
    Ok(right)
}

/// Stores `new` as the password of `id`, in the write that ends the attempt `right` whose
/// current password matched ([`settle_right`]): a change or a disable made while the hash ran
/// is not overwritten by someone holding the old password.
fn store_if_settled(
    acc: &Accounts,
    id: u64,
    right: &Admitted,
    new: &str,
    keep: Option<TokenHash>,
) -> Result<User> {
    store_then(acc, id, right, new, keep, |_, _, user| Ok(user))
}

/// [`store_if_settled`], then `then` in the same write, with the changed user.
fn store_then<T: Send>(
    acc: &Accounts,
    id: u64,
    right: &Admitted,
    new: &str,
    keep: Option<TokenHash>,
    then: impl Fn(&WriteTx<'_>, Timestamp, User) -> Result<T> + Send + Sync,
) -> Result<T> {
    let hash = acc.passwords.hash(new)?;
    let now = acc.now();
    acc.store.write(|tx| {
        if settle_right(tx, acc, now, id, right)?.is_none() {
            return Ok(Err(Error::Unauthorized));
        }
        let user = store_password(tx, now, id, &hash, keep, false)?;
        then(tx, now, user).map(Ok)
    })?
}

/// Changes the password of `user` after checking the current one (under the lockout rules),
/// ends every session of the user, the one making the change too, and opens a new one in
/// the same write (with `meta`, the client the old one was opened for): a token or cookie
/// of the old one, leaked or planted, does not outlive the change.
#[cfg(feature = "axum-login")]
pub(crate) fn change_password_renewing(
    acc: &Accounts,
    user: &User,
    current: &str,
    new: &str,
    meta: &LoginMeta,
) -> Result<Login> {
    let right = admit_change(acc, user, current, new)?;
    let (ttl, idle) = (acc.policy.sessions.ttl, acc.policy.sessions.idle_timeout);
    store_then(acc, user.id, &right, new, None, |tx, now, user| {
        let (token, session) = sessions::create_in(tx, now, user.id, ttl, idle, meta)?;
        Ok(Login {
            token,
            session,
            user,
        })
    })
}

/// Changes the password of a session's user after checking the current one (under the
/// lockout rules); keeps that session, revokes the others.
pub(crate) fn change_password(
    acc: &Accounts,
    session_token: &str,
    current: &str,
    new: &str,
) -> Result<User> {
    let (user, session) = super::sessions::Sessions { acc }.validate(session_token)?;
    change_password_checked(acc, &user, current, new, Some(session.hash))
}

/// Disables or enables an account; disabling revokes its sessions, recovery tokens and the
/// invites it made (returned: their prefixes), and changes its stamp (its agent sessions are
/// paused: see `Agents::get`).
pub(crate) fn set_active(acc: &Accounts, id: u64, active: bool) -> Result<(User, Vec<String>)> {
    let now = acc.now();
    acc.store.write(|tx| set_active_in(tx, now, id, active))
}

/// Disables `id` ([`set_active`]) and revokes for good, in the same transaction, their own
/// API keys and the org keys they made, also when they were disabled already. Returns the
/// user, the invites revoked and the prefixes of the keys revoked (their own first).
pub(crate) fn disable_revoking_keys(
    acc: &Accounts,
    id: u64,
) -> Result<(User, Vec<String>, Vec<String>)> {
    let now = acc.now();
    acc.store.write(|tx| {
        let (user, invites) = set_active_in(tx, now, id, false)?;
        let why = "their user was disabled, revoking their keys";
        let mut keys: Vec<String> = api_keys::revoke_keys_of(tx, now, KeyOwner::User(id), why)?
            .into_iter()
            .map(|k| k.prefix)
            .collect();
        keys.extend(api_keys::revoke_org_keys_made_by(tx, now, id, None, why)?);
        Ok((user, invites, keys))
    })
}

/// [`set_active`] inside `tx`.
fn set_active_in(
    tx: &WriteTx<'_>,
    now: Timestamp,
    id: u64,
    active: bool,
) -> Result<(User, Vec<String>)> {
    // Already so: nothing is written, and nothing audited.
    if let Some(user) = tx.table::<User>().get(&id)?
        && user.is_active == active
    {
        return Ok((user, Vec::new()));
    }
    if !active {
        roles::keep_an_admin(tx, id, "disabling them")?;
    }
    let user = tx.table::<User>().modify(&id, |u| {
        u.is_active = active;
        u.updated_at = now;
        Ok(u.clone())
    })?;
    let mut invites_revoked = Vec::new();
    if active {
        audit::user_event(tx, now, "user_enabled", id, String::new())?;
    } else {
        sessions::revoke_all_in(tx, now, id, None)?;
        renew_stamp(tx, id)?;
        // A reset link sent before would otherwise set a password once the account is
        // enabled again, long after the operator who disabled it forgot it was out.
        recovery::delete_tokens_of(tx, id, None)?;
        // (Enabling them again does not bring these back: make new ones.)
        invites_revoked = invites::revoke_made_by(tx, now, id, "their creator was disabled")?;
        audit::user_event(tx, now, "user_disabled", id, String::new())?;
    }
    Ok((user, invites_revoked))
}

fn renew_stamp(tx: &WriteTx<'_>, id: u64) -> Result<()> {
    let creds = tx.table::<Credential>();
    if creds.contains(&id)? {
        let stamp = new_stamp()?;
        creds.modify(&id, |c| {
            c.stamp = stamp;
            Ok(())
        })?;
    }
    Ok(())
}

/// Revokes every session of a user and changes the credential's stamp.
pub(crate) fn revoke_all_sessions(acc: &Accounts, user: u64) -> Result<usize> {
    let now = acc.now();
    acc.store.write(|tx| {
        let n = sessions::revoke_all_in(tx, now, user, None)?;
        renew_stamp(tx, user)?;
        Ok(n)
    })
}

/// Lifts a lockout and clears the failure counters.
pub(crate) fn unlock(acc: &Accounts, id: u64) -> Result<User> {
    let now = acc.now();
    acc.store.write(|tx| {
        let user = tx
            .table::<User>()
            .get(&id)?
            .ok_or_else(|| Error::not_found(format!("user {id}")))?;
        let creds = tx.table::<Credential>();
        let Some(mut c) = creds.get(&id)? else {
            return Ok(user);
        };
        let before = c.clone();
        c.clear_failures();
        // An account with nothing to clear is left as it is, and no unlock is audited.
        if c != before {
            creds.update(&c)?;
            audit::user_event(tx, now, "user_unlocked", id, String::new())?;
        }
        Ok(user)
    })
}

/// What [`delete_user_records`] deleted besides the user: the slugs of the orgs that went
/// with them, how many API keys and agent sessions.
pub(crate) struct DeletedWith {
    pub(crate) orgs: Vec<String>,
    pub(crate) api_keys: usize,
    pub(crate) agent_sessions: usize,
    pub(crate) invites_revoked: Vec<String>,
    pub(crate) org_api_keys_revoked: Vec<String>,
}

/// Deletes a user and every record that belongs to them inside `tx`: credential, sessions,
/// roles, memberships and personal org, API keys, agent sessions, avatar; audited. Revokes
/// the invites they made and the org API keys they made (kept, as revoked, for the record).
/// Returns the user as it was.
pub(crate) fn delete_user_records(
    acc: &Accounts,
    tx: &WriteTx<'_>,
    id: u64,
) -> Result<(User, DeletedWith)> {
    let now = acc.now();
    let user = tx
        .table::<User>()
        .get(&id)?
        .ok_or_else(|| Error::not_found(format!("user {id}")))?;
    roles::keep_an_admin(tx, id, "deleting them")?;
    let mut with = remove_user_from_orgs(tx, now, id)?;
    sessions::revoke_all_in(tx, now, id, None)?;
    let roles = tx.table::<UserRole>();
    for a in roles::assignments_of(tx, id)? {
        roles.delete(&(a.user_id, a.role_id))?;
    }
    with.api_keys += api_keys::delete_keys_of(tx, KeyOwner::User(id))?.len();
    let agents = tx.table::<AgentSession>();
    for a in agents.range_by(
        &AgentSession::BY_USER,
        KeyRange::prefix(key!(id)),
        Order::Asc,
        usize::MAX,
    )? {
        agents.delete(&a.id)?;
        with.agent_sessions += 1;
    }
    recovery::delete_tokens_of(tx, id, None)?;
    with.invites_revoked = invites::revoke_made_by(tx, now, id, "their creator was deleted")?;
    // (Those of the orgs deleted with them went with the orgs.)
    with.org_api_keys_revoked =
        api_keys::revoke_org_keys_made_by(tx, now, id, None, "their creator was deleted")?;
    tx.table::<Avatar>().delete(&id)?;
    tx.table::<Credential>().delete(&id)?;
    tx.table::<User>().delete(&id)?;
    audit::user_event(tx, now, "user_deleted", id, String::new())?;
    Ok((user, with))
}

/// Removes every membership of a user being deleted, deleting the orgs they alone belong
/// to (and their keys: returned). Their personal org, when others stay in it, stops being
/// personal. Refuses when they are the last owner of an org with other members.
fn remove_user_from_orgs(tx: &WriteTx<'_>, now: Timestamp, user: u64) -> Result<DeletedWith> {
    let mut with = DeletedWith {
        orgs: Vec::new(),
        api_keys: 0,
        agent_sessions: 0,
        invites_revoked: Vec::new(),
        org_api_keys_revoked: Vec::new(),
    };
    for m in orgs::memberships_of(tx, user)? {
        let (members, owners) = orgs::headcount(tx, m.org_id, 2)?;
        if members == 1 {
            let deleted = delete_org_in(tx, now, m.org_id)?;
            with.orgs.push(deleted.org.slug);
            with.api_keys += deleted.api_keys_deleted.len();
            continue;
        }
        if m.role == OrgRole::Owner && owners == 1 {
            let slug = tx
                .table::<Org>()
                .get(&m.org_id)?
                .map(|o| o.slug)
                .unwrap_or_default();
            return Err(Error::denied(format!(
                "user {user} is the last owner of org {slug}, which has other members; make another member owner first"
            )));
        }
        tx.table::<OrgMember>().delete(&(m.org_id, user))?;
        orgs::unmake_personal(tx, now, m.org_id, user)?;
    }
    Ok(with)
}

/// The most API key prefixes an `org_deleted` audit detail lists (the count is always there).
const AUDITED_PREFIXES: usize = 20;

/// The detail of an `org_deleted` event: how many members left, and the API keys deleted.
fn deleted_org_detail(members: usize, keys: &[String]) -> String {
    let mut detail = format!(
        "{members} member{} removed, {} API key{} deleted",
        if members == 1 { "" } else { "s" },
        keys.len(),
        if keys.len() == 1 { "" } else { "s" }
    );
    if !keys.is_empty() {
        let shown = keys[..keys.len().min(AUDITED_PREFIXES)].join(", ");
        let more = keys.len().saturating_sub(AUDITED_PREFIXES);
        if more > 0 {
            detail.push_str(&format!(" ({shown} and {more} more)"));
        } else {
            detail.push_str(&format!(" ({shown})"));
        }
    }
    detail
}

/// Deletes an org, its memberships (moving members' current org elsewhere, each removal
/// audited) and its keys, and audits what went with it. Members left in no org are the
/// caller's to place (`new_personal_orgs` is empty).
fn delete_org_in(tx: &WriteTx<'_>, now: Timestamp, org: u64) -> Result<orgs::DeletedOrg> {
    let o = tx
        .table::<Org>()
        .get(&org)?
        .ok_or_else(|| Error::not_found(format!("org {org}")))?;
    let members = orgs::members_of(tx, org)?;
    for m in &members {
        tx.table::<OrgMember>().delete(&(org, m.user_id))?;
        orgs::move_current_org(tx, m.user_id, org)?;
        orgs::org_event(
            tx,
            now,
            "org_member_removed",
            &o.slug,
            Some(m.user_id),
            format!("was {}; the org was deleted", m.role.as_str()),
        )?;
    }
    let keys = api_keys::delete_keys_of(tx, KeyOwner::Org(org))?;
    tx.table::<Org>().delete(&org)?;
    audit::record(
        tx,
        now,
        Event {
            action: "org_deleted",
            subject: format!("org {}", o.slug),
            outcome: "ok",
            detail: deleted_org_detail(members.len(), &keys),
            ..Event::default()
        },
    )?;
    Ok(orgs::DeletedOrg {
        org: o,
        members_removed: members,
        api_keys_deleted: keys,
        new_personal_orgs: Vec::new(),
    })
}

/// Why a personal org is not deleted without `force`, in words that fit whether its user is
/// still there.
fn personal_org_refusal(tx: &WriteTx<'_>, o: &Org) -> Result<Error> {
    Ok(Error::denied(match o.personal_user {
        Some(u) if tx.table::<User>().contains(&u)? => format!(
            "org {} is the personal org of user {u}; delete that user instead, or pass --force",
            o.slug
        ),
        Some(u) => format!(
            "org {} was the personal org of user {u}, who is gone; pass --force to delete it",
            o.slug
        ),
        // Made before personal orgs recorded their user.
        None => format!(
            "org {} is a personal org; delete its user instead, or pass --force (also when \
             that user is gone)",
            o.slug
        ),
    }))
}

/// Deletes an org; refused when it has members other than one owner, or is a personal org,
/// unless `force`. A member left in no org gets a new personal org.
pub(crate) fn delete_org(acc: &Accounts, org: u64, force: bool) -> Result<orgs::DeletedOrg> {
    let now = acc.now();
    acc.store.write(|tx| {
        let o = tx
            .table::<Org>()
            .get(&org)?
            .ok_or_else(|| Error::not_found(format!("org {org}")))?;
        let members = tx
            .table::<OrgMember>()
            .count_in(KeyRange::prefix(key!(org)))?;
        if !force && members > 1 {
            return Err(Error::denied(format!(
                "org {} has {members} members; remove them first or pass --force",
                o.slug
            )));
        }
        if !force && o.is_personal {
            return Err(personal_org_refusal(tx, &o)?);
        }
        let mut deleted = delete_org_in(tx, now, org)?;
        for m in &deleted.members_removed {
            if let Some(p) = orgs::keep_in_an_org(tx, now, m.user_id)? {
                deleted.new_personal_orgs.push(p);
            }
        }
        Ok(deleted)
    })
}

impl Users<'_> {
    /// Creates a user (the operator path): the account, its credential, the `user` role (and
    /// `admin`), a personal org as current org, and the audit event, in one transaction. With
    /// `spec.invite`, consumes the invite in the same transaction.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// use redkeep::{NewUser, Secret};
    /// let created = rk.users().create(NewUser {
    ///     email: "alice@example.com".into(),
    ///     name: Some("Alice".into()),
    ///     username: None,
    ///     password: Some(Secret::new("correct horse battery staple")),
    ///     is_admin: false,
    ///     invite: None,
    /// })?;
    /// assert_eq!(rk.users().by_email("ALICE@example.com")?, Some(created.user));
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` for a bad email, username, name or password (an email is bad too when
    /// it only looks like a plain-letter address, `ВОВ@example.com` in Cyrillic capitals, or
    /// has its domain in the `xn--` form); `Conflict` when the email or username is taken;
    /// invite errors as in [`crate::auth::invites::Invites`].
    pub fn create(&self, spec: NewUser) -> Result<CreatedUser> {
        create_user(self.acc, spec)
    }

    /// Registers a user with an invite code (self-service): as [`Users::create`], but an
    /// invite is required unless the policy allows open registration.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// use redkeep::{InviteSpec, Registration, Secret};
    /// let invite = rk.invites().create(InviteSpec::default())?;
    /// let user = rk.users().register(Registration {
    ///     email: "bob@example.com".into(),
    ///     password: Secret::new("a long enough password"),
    ///     name: None,
    ///     username: Some("bob".into()),
    ///     invite: Some(invite.code),
    /// })?;
    /// assert_eq!(rk.users().find("bob")?.id, user.id);
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` (bad email or password, or no invite when one is required),
    /// `InvalidCredential` (unknown code), `Expired`, `Revoked` (revoked or used up),
    /// `Conflict` (email or username taken).
    pub fn register(&self, reg: Registration) -> Result<User> {
        if reg.invite.is_none() && !self.acc.policy.open_registration {
            return Err(Error::invalid(
                "invite",
                "registration needs an invite code",
            ));
        }
        let created = create_user(
            self.acc,
            NewUser {
                email: reg.email,
                name: reg.name,
                username: reg.username,
                password: Some(reg.password),
                is_admin: false,
                invite: reg.invite,
            },
        )?;
        Ok(created.user)
    }

    /// Checks an email or username and a password under the lockout rules, without creating
    /// a session. Unknown account, wrong password, disabled and locked account all give the
    /// same `Unauthorized`, after the same hashing work and the same storage calls (on
    /// PostgreSQL, the same round trips). Success resets the failure count, sets
    /// `last_login_at` and upgrades the hash if its parameters or algorithm changed.
    ///
    /// # Errors
    /// `Unauthorized` for every failure.
    pub fn authenticate(&self, login: &str, password: &str) -> Result<User> {
        Ok(verify_login(self.acc, login, password, |_, _| Ok(()))?.0)
    }

    /// Checks a password for a user without recording a login (same work whether the user
    /// exists, is disabled or not), under the lockout rules of a login: a wrong password
    /// counts toward the lockout, a locked or rate-limited account is refused whatever the
    /// password, and a right one clears the count.
    ///
    /// # Errors
    /// `Unauthorized` when it does not match, the account is locked or the user cannot log
    /// in; `ReadOnly` on a read-only handle (the attempt is counted in the store);
    /// `MigrationNeeded` after a `migrate_down` through this handle; `Storage`.
    pub fn check_password(&self, id: u64, password: &str) -> Result<()> {
        check_password(self.acc, id, password)
    }

    /// Checks a password for an operator (`redkeep user check-password`): whether it is the
    /// user's, whatever their lockout or whether they are active. Unlike
    /// [`Users::check_password`] it is no login attempt: nothing is counted toward the
    /// lockout and a lock does not refuse it. Audited as `password_checked`, outcome `ok` or
    /// `mismatch`. Not for a route a user can reach: it is a way to guess without limit.
    ///
    /// # Errors
    /// `NotFound` for an unknown user; `ReadOnly` on a read-only handle (the check is
    /// audited); `Storage`.
    pub fn password_matches(&self, id: u64, password: &str) -> Result<bool> {
        operator_check(self.acc, id, password)
    }

    /// Sets a new password (operator path): clears `must_change_password` and the lockout,
    /// and revokes every session of the user. The user's API keys are kept: after an account
    /// was taken over, revoke them too with [`ApiKeys::revoke_all_of`](crate::auth::api_keys::ApiKeys::revoke_all_of).
    ///
    /// # Errors
    /// `InvalidInput` for a bad password; `NotFound`.
    pub fn set_password(&self, id: u64, password: &str) -> Result<User> {
        set_password(self.acc, id, password, false)
    }

    /// Sets a password the user must change at their next login (operator path, for a user
    /// who lost theirs: the operator knows the one they set). As [`Users::set_password`]
    /// (the lockout cleared, every session revoked, API keys kept), but
    /// `must_change_password` is set: until the user sets their own, they hold no permission
    /// (the web layer's `Caller` grants none while it is set).
    ///
    /// # Errors
    /// `InvalidInput` for a bad password; `NotFound`.
    pub fn set_temporary_password(&self, id: u64, password: &str) -> Result<User> {
        set_password(self.acc, id, password, true)
    }

    /// Changes the password of the user of a session after checking the current one; every
    /// other session of the user is revoked, this one is kept. API keys are kept (see
    /// [`ApiKeys::revoke_all_of`](crate::auth::api_keys::ApiKeys::revoke_all_of)).
    ///
    /// # Errors
    /// `InvalidCredential` for a bad session; `Unauthorized` for a wrong current password;
    /// `InvalidInput` for a bad new one.
    pub fn change_password(&self, session_token: &str, current: &str, new: &str) -> Result<User> {
        change_password(self.acc, session_token, current, new)
    }

    /// Changes a user's password after checking the current one (under the lockout rules)
    /// and revokes every session of the user: for applications whose sessions are not
    /// redkeep's. A cookie login of `redkeep::web::Backend` is a redkeep session and ends
    /// too; `Backend::change_password` keeps it. API keys are kept (see
    /// [`ApiKeys::revoke_all_of`](crate::auth::api_keys::ApiKeys::revoke_all_of)).
    ///
    /// # Errors
    /// `NotFound`; `Unauthorized` for a wrong current password or a disabled user;
    /// `InvalidInput` for a bad new one.
    pub fn change_password_of(&self, id: u64, current: &str, new: &str) -> Result<User> {
        let user = self
            .get(id)?
            .ok_or_else(|| Error::not_found(format!("user {id}")))?;
        change_password_checked(self.acc, &user, current, new, None)
    }

    /// [`Users::change_password_of`] keeping the session with the hash `keep` (a web
    /// login's, whose token the server does not hold).
    #[cfg(feature = "axum-login")]
    pub(crate) fn change_password_keeping(
        &self,
        id: u64,
        current: &str,
        new: &str,
        keep: TokenHash,
    ) -> Result<User> {
        let user = self
            .get(id)?
            .ok_or_else(|| Error::not_found(format!("user {id}")))?;
        change_password_checked(self.acc, &user, current, new, Some(keep))
    }

    /// [`Users::change_password_of`] renewing the login making the change (see
    /// `change_password_renewing`): for `redkeep::web::Backend`.
    #[cfg(feature = "axum-login")]
    pub(crate) fn change_password_renewing(
        &self,
        id: u64,
        current: &str,
        new: &str,
        meta: &LoginMeta,
    ) -> Result<Login> {
        let user = self
            .get(id)?
            .ok_or_else(|| Error::not_found(format!("user {id}")))?;
        change_password_renewing(self.acc, &user, current, new, meta)
    }

    /// Changes a user's email: it must be free, and it is unverified until verified again
    /// (outstanding reset and verification tokens stop working). The address the user has
    /// already, as given (trimmed), is left as it is: nothing is written or audited and a
    /// verified address stays verified (compare the returned email with the one before to
    /// tell). The same address in other letter case (`Bob@example.com` for
    /// `bob@example.com`) is a change: it is kept as given and must be verified again, since
    /// the part before the @ may be case-sensitive for its mail server.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed email, one that only looks like a plain-letter address
    /// or has its domain in the `xn--` form (the rules of [`Users::create`]); `Conflict` when
    /// another account has it; `NotFound`.
    pub fn change_email(&self, id: u64, email: &str) -> Result<User> {
        // Checked in its normal form (which the unique index holds), kept as given, as
        // `create` keeps it.
        normalize_email(email)?;
        let email = email.trim().to_string();
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let users = tx.table::<User>();
            let mut u = users
                .get(&id)?
                .ok_or_else(|| Error::not_found(format!("user {id}")))?;
            if u.email == email {
                return Ok(u);
            }
            // Only a new address meets the rules for new ones: a user's own, stored before a
            // rule, is still theirs.
            crate::auth::users::normalize_new_email(&email)?;
            let old = std::mem::replace(&mut u.email, email.clone());
            u.email_verified = false;
            u.updated_at = now;
            users
                .update(&u)
                .map_err(|e| crate::auth::users::name_the_clash(e, &u))?;
            recovery::delete_tokens_of(tx, id, None)?;
            audit::user_event(tx, now, "email_changed", id, format!("from {old}"))?;
            Ok(u)
        })
    }

    /// Marks a user's email verified or not (the operator path; users prove it with
    /// [`Recovery::verify_email`]).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn set_email_verified(&self, id: u64, verified: bool) -> Result<User> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let u = tx.table::<User>().modify(&id, |u| {
                u.email_verified = verified;
                u.updated_at = now;
                Ok(u.clone())
            })?;
            if verified {
                recovery::delete_tokens_of(tx, id, Some(Purpose::EmailVerification))?;
            }
            let action = if verified {
                "email_verified"
            } else {
                "email_unverified"
            };
            audit::user_event(tx, now, action, id, "by an operator".into())?;
            Ok(u)
        })
    }

    /// Disables an account: no more logins; its sessions are revoked, its API keys stop
    /// verifying at once, its password-reset and email-verification tokens are voided, and
    /// the invites it made that could still admit someone are revoked (listed in the result;
    /// enabling it again does not bring any of these back). An account disabled already is
    /// left as it is (nothing audited, nothing listed).
    ///
    /// # Errors
    /// `NotFound`; `Denied` for the last active administrator (make another user one first).
    ///
    /// Their API keys, and the org keys they made, are suspended, not revoked: enabling the
    /// account brings them back. After a takeover use [`Users::disable_revoking_keys`].
    pub fn disable(&self, id: u64) -> Result<DisabledUser> {
        let (user, invites_revoked) = set_active(self.acc, id, false)?;
        Ok(DisabledUser {
            user,
            invites_revoked,
            api_keys_revoked: Vec::new(),
        })
    }

    /// [`Users::disable`], and in the same transaction revokes for good the account's own
    /// API keys and the org keys it made (each audited `api_key_revoked`; listed in
    /// `api_keys_revoked`): enabling it again brings none back. For an account taken over,
    /// whose keys an attacker may hold. An account disabled already stays so, and its keys
    /// still usable once enabled are revoked.
    ///
    /// # Errors
    /// `NotFound`; `Denied` for the last active administrator (make another user one first).
    pub fn disable_revoking_keys(&self, id: u64) -> Result<DisabledUser> {
        let (user, invites_revoked, api_keys_revoked) = disable_revoking_keys(self.acc, id)?;
        Ok(DisabledUser {
            user,
            invites_revoked,
            api_keys_revoked,
        })
    }

    /// Re-enables a disabled account. An active account is left as it is (nothing audited).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn enable(&self, id: u64) -> Result<User> {
        Ok(set_active(self.acc, id, true)?.0)
    }

    /// Lifts a lockout and clears the failure counters, auditing `user_unlocked`. An account
    /// with no lockout and no failures counted is left as it is (nothing is audited).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn unlock(&self, id: u64) -> Result<User> {
        unlock(self.acc, id)
    }

    /// Deletes a user and everything that belongs to them in one transaction (credential,
    /// sessions, roles, memberships and personal org, API keys, agent sessions, avatar), then
    /// moves their workspace folder to the trash (never deleting files). The invites and the
    /// org API keys they made that could still be used are revoked, and listed in the result.
    ///
    /// # Errors
    /// `NotFound`; `Denied` when the user is the last owner of an org with other members or
    /// the last active administrator, or the data dir is read-only; `UnsafePath` when the
    /// workspace trash is a symlink; `InvalidInput` inside a workspace call for the same user
    /// (the folder could not move). These come before anything is deleted; an I/O error
    /// moving the folder comes after the records are gone (`check --repair` moves it).
    pub fn delete(&self, id: u64) -> Result<DeletedUser> {
        self.acc.files.before_delete(id)?;
        let (user, with) = self
            .acc
            .store
            .write(|tx| delete_user_records(self.acc, tx, id))?;
        // Past the commit: the error says the account is gone, lest the delete be taken for
        // refused and tried again (it would say "not found").
        let trash = self.acc.files.user_deleted(user.id).map_err(|e| {
            e.io_context(|context| {
                format!(
                    "user {id} was deleted, but their workspace folder was not moved to the \
                     trash ({context}); `redkeep check --repair` moves it"
                )
            })
        })?;
        Ok(DeletedUser {
            user,
            trash,
            orgs_deleted: with.orgs,
            api_keys_deleted: with.api_keys,
            agent_sessions_deleted: with.agent_sessions,
            invites_revoked: with.invites_revoked,
            org_api_keys_revoked: with.org_api_keys_revoked,
        })
    }
}

impl Sessions<'_> {
    /// Logs in with an email or a username: verifies the password (with lockout and rehash)
    /// and creates a session. Every login makes a new token, shown once.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let rk = redkeep::Redkeep::open(tmp.path(), redkeep::Options::default().password(redkeep::PasswordParams::INSECURE_FAST))?;
    /// # rk.users().create(redkeep::NewUser { email: "alice@example.com".into(), name: None, username: None, password: Some("correct horse battery staple".into()), is_admin: false, invite: None })?;
    /// use redkeep::auth::sessions::LoginMeta;
    /// let login = rk.sessions().login("alice@example.com", "correct horse battery staple", LoginMeta::default())?;
    /// // Hand `login.token.expose()` to the client once; later requests present it.
    /// let (user, _session) = rk.sessions().validate(login.token.expose())?;
    /// assert_eq!(user.email, "alice@example.com");
    /// assert!(rk.sessions().login("alice@example.com", "wrong password", LoginMeta::default()).is_err());
    /// # Ok::<(), redkeep::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Unauthorized` for every failure: unknown account, wrong password, disabled or locked
    /// account; `InvalidInput` for a lifetime out of bounds. Client details are never
    /// refused: they are kept cleaned (control characters made spaces, cut to 512 bytes).
    pub fn login(&self, login: &str, password: &str, meta: LoginMeta) -> Result<Login> {
        log_in(self.acc, login, password, meta)
    }

    /// Revokes every session of a user; returns how many.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn revoke_all(&self, user: u64) -> Result<usize> {
        revoke_all_sessions(self.acc, user)
    }

    /// Revokes every login session of every user in one transaction (after a restore from a
    /// backup, which brings back the sessions of its time, or when tokens may have leaked);
    /// cookie logins end with them. Returns how many. Agent sessions and API keys stay.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn revoke_everyone(&self) -> Result<usize> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let users: std::collections::BTreeSet<u64> = tx
                .table::<sessions::Session>()
                .range(KeyRange::all(), Order::Asc, usize::MAX)?
                .into_iter()
                .map(|s| s.user_id)
                .collect();
            let mut n = 0;
            for user in users {
                n += sessions::revoke_all_in(tx, now, user, None)?;
            }
            Ok(n)
        })
    }
}

impl Orgs<'_> {
    /// Deletes an org with its memberships and API keys, and says what went with it. Refused
    /// when it has members other than one owner, or is someone's personal org, unless
    /// `force`. A member left in no org gets a new personal org, which becomes their current
    /// one. The audit log gets an `org_member_removed` event per member and an `org_deleted`
    /// one with the counts and the keys' prefixes.
    ///
    /// # Errors
    /// `NotFound`; `Denied` as above; `InvalidInput` when a member left in no org has a name
    /// that makes no valid org name (nothing changes then).
    pub fn delete(&self, org: u64, force: bool) -> Result<orgs::DeletedOrg> {
        delete_org(self.acc, org, force)
    }

    /// Changes a member's role; the last owner cannot be demoted. A member made a plain
    /// member (from owner or admin) no longer makes the org's API keys, so the org keys they
    /// made that could still verify are revoked, each audited (see
    /// [`ApiKeySpec::created_by`](crate::auth::api_keys::ApiKeySpec::created_by)). All in
    /// one transaction; a role set to the one held changes nothing.
    ///
    /// # Errors
    /// `NotFound`; `Denied` for the last owner.
    pub fn set_role(&self, org: u64, user: u64, role: OrgRole) -> Result<orgs::RoleChanged> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            orgs::ensure_owner_remains(tx, org, user, Some(role))?;
            let mut was = role;
            let member = tx.table::<OrgMember>().modify(&(org, user), |m| {
                was = m.role;
                m.role = role;
                Ok(m.clone())
            })?;
            if was == role {
                return Ok(orgs::RoleChanged {
                    member,
                    was,
                    api_keys_revoked: Vec::new(),
                });
            }
            let api_keys_revoked = if role == OrgRole::Member {
                api_keys::revoke_org_keys_made_by(
                    tx,
                    now,
                    user,
                    Some(org),
                    "their creator was made a plain member of the org",
                )?
            } else {
                Vec::new()
            };
            let detail = format!(
                "{} to {}{}",
                was.as_str(),
                role.as_str(),
                keys_revoked_detail(&api_keys_revoked)
            );
            orgs::org_event(
                tx,
                now,
                "org_role_changed",
                &orgs::slug_of(tx, org)?,
                Some(user),
                detail,
            )?;
            Ok(orgs::RoleChanged {
                member,
                was,
                api_keys_revoked,
            })
        })
    }

    /// Removes a member. The last owner cannot leave; a member whose current org this was is
    /// moved to another of their orgs (their own personal org first). A member left in no
    /// org gets a new personal org, which becomes their current one; an org that was the
    /// leaving user's own personal org stops being personal. The org's API keys they made
    /// that could still verify are revoked (see
    /// [`ApiKeySpec::created_by`](crate::auth::api_keys::ApiKeySpec::created_by)), each
    /// audited. All in one transaction.
    ///
    /// # Errors
    /// `NotFound`; `Denied` for the last owner; `InvalidInput` when a new personal org is
    /// needed and the user's name does not make a valid org name (nothing changes then).
    pub fn remove_member(&self, org: u64, user: u64) -> Result<orgs::RemovedMember> {
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            orgs::ensure_owner_remains(tx, org, user, None)?;
            let Some(member) = tx.table::<OrgMember>().delete(&(org, user))? else {
                return Err(Error::not_found(format!("member user {user} of org {org}")));
            };
            let org_no_longer_personal = orgs::unmake_personal(tx, now, org, user)?;
            orgs::move_current_org(tx, user, org)?;
            let new_personal_org = orgs::keep_in_an_org(tx, now, user)?;
            let api_keys_revoked = api_keys::revoke_org_keys_made_by(
                tx,
                now,
                user,
                Some(org),
                "their creator left the org",
            )?;
            let mut detail = format!("was {}", member.role.as_str());
            if let Some(p) = &new_personal_org {
                detail.push_str(&format!(
                    "; they belonged to no other org, so a new personal org, {}, was made \
                     for them",
                    p.slug
                ));
            }
            detail.push_str(&keys_revoked_detail(&api_keys_revoked));
            orgs::org_event(
                tx,
                now,
                "org_member_removed",
                &orgs::slug_of(tx, org)?,
                Some(user),
                detail,
            )?;
            Ok(orgs::RemovedMember {
                member,
                new_personal_org,
                org_no_longer_personal,
                api_keys_revoked,
            })
        })
    }
}

impl Recovery<'_> {
    /// Uses a password-reset token: sets the new password, revokes every session of the
    /// account, lifts a lockout and marks the email verified (the token was mailed to it).
    /// The account's API keys are kept (a forgotten password is not a stolen account): an
    /// application whose users reset after a takeover should offer to revoke them with
    /// [`ApiKeys::revoke_all_of`](crate::auth::api_keys::ApiKeys::revoke_all_of). The
    /// token works once, before it expires, and only while the account still has the email it
    /// was sent to. The token is checked before the password is hashed.
    ///
    /// # Errors
    /// `InvalidInput` for a bad password; `InvalidCredential` for an unknown, used or
    /// mismatched token; `Expired`.
    pub fn reset_password(&self, token: &str, password: &str) -> Result<User> {
        super::password::validate_password(password)?;
        recovery::peek(self.acc, token, Purpose::PasswordReset)?;
        let hash = self.acc.passwords.hash(password)?;
        let now = self.acc.now();
        self.acc.store.write(|tx| {
            let (tok, user) = recovery::redeem_in(tx, now, token, Purpose::PasswordReset)?;
            store_password(tx, now, user.id, &hash, None, false)?;
            recovery::delete_tokens_of(tx, user.id, None)?;
            let user = tx.table::<User>().modify(&user.id, |u| {
                u.email_verified = true;
                Ok(u.clone())
            })?;
            audit::user_event(tx, now, "password_reset", user.id, tok.prefix)?;
            Ok(user)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::RECORD_WRITES;
    use crate::{NewUser, Options, PasswordParams, Redkeep};

    /// A handle on a new store in `dir`, with cheap hashing.
    fn open(dir: &std::path::Path) -> Redkeep {
        Redkeep::open(
            dir,
            Options::default().password(PasswordParams::INSECURE_FAST),
        )
        .unwrap()
    }

    fn new_user(email: &str, password: Option<&str>) -> NewUser {
        NewUser {
            email: email.into(),
            name: None,
            username: None,
            password: password.map(Into::into),
            is_admin: false,
            invite: None,
        }
    }

    /// Creating a user writes each of its records once: the user already points at its
    /// personal org when it is written, rather than being written and then updated.
    #[test]
    fn creating_a_user_writes_each_record_once() {
        let tmp = tempfile::tempdir().unwrap();
        let rk = open(tmp.path());
        RECORD_WRITES.with_borrow_mut(|w| w.clear());
        let user = rk
            .users()
            .create(new_user("alice@example.com", None))
            .unwrap()
            .user;
        let mut writes: Vec<_> = RECORD_WRITES.with_borrow(|w| w.clone().into_iter().collect());
        writes.sort_unstable();
        // Three audit rows: the role granted, the org created, the user created.
        assert_eq!(
            writes,
            [
                ("audit", 3),
                ("credentials", 1),
                ("org_members", 1),
                ("orgs", 1),
                ("user_roles", 1),
                ("users", 1)
            ]
        );
        assert!(user.current_org_id.is_some());
    }

    /// An attempt at the lockout threshold whose password matched while the account changed
    /// during the hash. Disabled: the attempt fails and leaves no lock (a disabled account's
    /// attempts count nothing). Password changed: it fails. Rehashed (same password, same
    /// stamp): it passes. A password change after such a hash stores nothing.
    #[test]
    fn a_right_password_whose_account_changed_during_the_hash() {
        use super::Credential;
        let tmp = tempfile::tempdir().unwrap();
        let rk = open(tmp.path());
        let pw = "a right password 1";
        let mut ids = Vec::new();
        for email in ["a@example.com", "b@example.com", "c@example.com"] {
            let id = rk
                .users()
                .create(new_user(email, Some(pw)))
                .unwrap()
                .user
                .id;
            for _ in 0..9 {
                assert!(rk.users().check_password(id, "wrong").is_err());
            }
            ids.push(id);
        }
        let events = |id: u64, action: &str, outcome: &str| {
            rk.audit()
                .list(Some(id), None, usize::MAX)
                .unwrap()
                .iter()
                .filter(|e| e.action == action && e.outcome == outcome)
                .count()
        };
        let users = rk.users();
        let acc = users.acc;
        let credential = |id: u64| {
            acc.read(|tx| tx.table::<Credential>().get(&id))
                .unwrap()
                .unwrap()
        };
        let unauthorized = |r: crate::Result<()>| matches!(r, Err(crate::Error::Unauthorized));

        // Disabled while the hash ran: fails, and the lock it set is taken back.
        let right = super::admit(acc, ids[0], acc.now()).unwrap().unwrap();
        assert!(right.locks_until.is_some());
        rk.users().disable(ids[0]).unwrap();
        assert!(unauthorized(super::settle_right_alone(acc, ids[0], &right)));
        assert_eq!(events(ids[0], "login_failed", "disabled"), 1);
        assert_eq!(events(ids[0], "account_locked", "locked"), 0);
        let lockout = rk.users().lockout(ids[0]).unwrap();
        assert!(lockout.locked_until.is_none() && lockout.failed_logins == 0);
        // Nor does a password change through it store anything.
        let right = super::admit(acc, ids[0], acc.now()).unwrap().unwrap();
        let before = credential(ids[0]);
        assert!(matches!(
            super::store_if_settled(acc, ids[0], &right, "a new password 3", None),
            Err(crate::Error::Unauthorized)
        ));
        assert_eq!(credential(ids[0]).password_hash, before.password_hash);

        // Its password changed while the hash ran: fails.
        let right = super::admit(acc, ids[1], acc.now()).unwrap().unwrap();
        rk.users()
            .set_password(ids[1], "another password 2")
            .unwrap();
        assert!(unauthorized(super::settle_right_alone(acc, ids[1], &right)));
        assert_eq!(events(ids[1], "login_failed", "changed"), 1);

        // Rehashed while the hash ran (same password, same stamp): passes.
        let right = super::admit(acc, ids[2], acc.now()).unwrap().unwrap();
        let rehash = acc.passwords.hash(pw).unwrap();
        acc.store
            .write(|tx| {
                tx.table::<Credential>().modify(&ids[2], |c| {
                    c.password_hash = rehash.clone();
                    Ok(())
                })
            })
            .unwrap();
        super::settle_right_alone(acc, ids[2], &right).unwrap();
        let lockout = rk.users().lockout(ids[2]).unwrap();
        assert!(lockout.locked_until.is_none() && lockout.failed_logins == 0);

        // Every session revoked while the hash ran (new stamp, same hash): passes too, and
        // a password change through it is stored.
        let right = super::admit(acc, ids[2], acc.now()).unwrap().unwrap();
        rk.sessions().revoke_all(ids[2]).unwrap();
        super::store_if_settled(acc, ids[2], &right, "a new password 4", None).unwrap();
        let stored = credential(ids[2]);
        assert!(
            acc.passwords
                .verify("a new password 4", &stored.password_hash)
        );

        // Rehashed, then every session revoked, while the hash ran: both differ, so it
        // fails as a change would, and the lock it set at the threshold is announced.
        for _ in 0..9 {
            assert!(rk.users().check_password(ids[2], "wrong").is_err());
        }
        let right = super::admit(acc, ids[2], acc.now()).unwrap().unwrap();
        assert!(right.locks_until.is_some());
        let rehash = acc.passwords.hash("a new password 4").unwrap();
        acc.store
            .write(|tx| {
                tx.table::<Credential>().modify(&ids[2], |c| {
                    c.password_hash = rehash.clone();
                    Ok(())
                })
            })
            .unwrap();
        rk.sessions().revoke_all(ids[2]).unwrap();
        assert!(unauthorized(super::settle_right_alone(acc, ids[2], &right)));
        assert_eq!(events(ids[2], "account_locked", "locked"), 1);
    }

    /// A failed login makes the same engine calls (each a round trip on PostgreSQL), in the
    /// same order, whatever the account: a wrong password, a login no account has (the
    /// first, which makes the decoy credential, and again; an email, a username, a malformed
    /// one), a disabled account, a locked one and a rate-limited one. A password checked
    /// for a user id does the same for an id no user has. The decoy is no one's: `check`
    /// passes over it and no password shows for it.
    /// Logins no account has share a few decoy credentials, the same one for the same
    /// login, so that on PostgreSQL concurrent ones seldom write the same row.
    #[test]
    fn unknown_logins_spread_over_a_bounded_set_of_decoys() {
        use super::decoy_credential;
        let keys: std::collections::BTreeSet<u64> = (0..1000)
            .map(|i| decoy_credential(&format!("nobody{i}@example.com")))
            .collect();
        assert!(keys.len() > 32, "{} decoys", keys.len());
        let first = crate::auth::users::DECOY_OWNERS;
        assert!(keys.iter().all(|&k| (first..first + 64).contains(&k)));
        assert_eq!(
            decoy_credential("x@example.com"),
            decoy_credential("x@example.com")
        );
    }

    #[test]
    fn a_failed_login_makes_the_same_engine_calls_whatever_the_account() {
        use super::{Credential, decoy_credential};
        use crate::store::ENGINE_CALLS;
        let calls = |f: &dyn Fn()| {
            ENGINE_CALLS.with_borrow_mut(Vec::clear);
            f();
            ENGINE_CALLS.with_borrow_mut(std::mem::take)
        };
        let tmp = tempfile::tempdir().unwrap();
        let rk = open(tmp.path());
        let mut ids = Vec::new();
        for email in [
            "ann@example.com",
            "bob@example.com",
            "cat@example.com",
            "dan@example.com",
        ] {
            ids.push(
                rk.users()
                    .create(new_user(email, Some("correct horse")))
                    .unwrap()
                    .user
                    .id,
            );
        }
        rk.users().disable(ids[1]).unwrap();
        let users = rk.users();
        let acc = users.acc;
        let now = acc.now();
        // cat locked, dan at the hour's limit of failures.
        acc.store
            .write(|tx| {
                let creds = tx.table::<Credential>();
                creds.modify(&ids[2], |c| {
                    c.locked_until = Some(now.plus(std::time::Duration::from_secs(3600)));
                    Ok(())
                })?;
                creds.modify(&ids[3], |c| {
                    c.failure_window_start = Some(now);
                    c.failures_in_window = acc.policy.lockout.max_failures_per_hour;
                    Ok(())
                })
            })
            .unwrap();
        let login = |login: &str| {
            calls(&|| {
                assert!(matches!(
                    rk.users().authenticate(login, "wrong password"),
                    Err(crate::Error::Unauthorized)
                ));
            })
        };
        // A handle's first login reads the cost profiles of the stored hashes (once).
        login("ann@example.com");
        let wrong = login("ann@example.com");
        assert!(wrong.contains(&"put"), "{wrong:?}");
        assert_eq!(login("nobody@example.com"), wrong, "no account, the first");
        assert_eq!(login("nobody@example.com"), wrong, "no account, again");
        assert_eq!(login("nobody"), wrong, "no account, a username");
        assert_eq!(login("not@an@email"), wrong, "a malformed login");
        assert_eq!(login(""), wrong, "an empty login");
        assert_eq!(login("bob@example.com"), wrong, "disabled");
        assert_eq!(login("cat@example.com"), wrong, "locked");
        assert_eq!(login("dan@example.com"), wrong, "rate-limited");
        assert_eq!(login("ANN"), wrong, "wrong password, by username");
        let check =
            |id: u64| calls(&|| assert!(rk.users().check_password(id, "wrong password").is_err()));
        assert_eq!(check(999), check(ids[0]), "check_password: no such user");

        // The decoy: no one's, and no problem.
        assert!(
            acc.read(|tx| tx
                .table::<Credential>()
                .get(&decoy_credential("nobody@example.com")))
                .unwrap()
                .is_some()
        );
        assert!(
            rk.users()
                .password_info(decoy_credential("nobody@example.com"))
                .is_err()
        );
        let report = rk.check(false).unwrap();
        assert!(report.ok, "{:?}", report.problems);
        assert!(rk.check(true).unwrap().repaired.is_empty());
        assert_eq!(rk.users().count().unwrap(), 4, "no user to list");
    }

    /// A failed login verifies one hash of each cost profile the store holds, whatever the
    /// account: unknown, native, adopted (bcrypt, PBKDF2, scrypt), disabled or locked. Its
    /// time then does not tell an adopted account from an unknown login. A store of native
    /// hashes only costs one argon2 hash per form of the password.
    #[test]
    fn a_failed_login_verifies_the_same_hashes_whatever_the_account() {
        use super::Credential;
        use crate::auth::password::HASHES_VERIFIED;
        use argon2::password_hash::PasswordHasher as _;
        let tmp = tempfile::tempdir().unwrap();
        let rk = open(tmp.path());
        let mut ids = Vec::new();
        for email in [
            "ann@example.com",
            "bcrypt@example.com",
            "pbkdf2@example.com",
            "scrypt@example.com",
            "off@example.com",
            "held@example.com",
        ] {
            let created = rk.users().create(new_user(email, Some("correct horse")));
            ids.push(created.unwrap().user.id);
        }
        let hashes = |rk: &Redkeep, login: &str, password: &str| {
            HASHES_VERIFIED.with_borrow_mut(Vec::clear);
            assert!(matches!(
                rk.users().authenticate(login, password),
                Err(crate::Error::Unauthorized)
            ));
            let mut done = HASHES_VERIFIED.with_borrow_mut(std::mem::take);
            done.sort();
            done
        };
        let own = "argon2id m=8,t=1,p=1".to_string();
        // A native store: the handle's own argon2, once per form of the password.
        assert_eq!(
            hashes(&rk, "nobody@example.com", "wrong"),
            std::slice::from_ref(&own)
        );
        assert_eq!(
            hashes(&rk, "ann@example.com", "wrong"),
            std::slice::from_ref(&own)
        );
        assert_eq!(
            hashes(&rk, "nobody@example.com", "wr\u{f6}ng"),
            [own.clone(), own.clone()]
        );

        let pbkdf2 = pbkdf2::Pbkdf2::new(
            pbkdf2::Algorithm::Pbkdf2Sha256,
            pbkdf2::Params::new(1000).unwrap(),
        )
        .hash_password_with_salt(b"old secret", b"saltsaltsaltsalt")
        .unwrap()
        .to_string();
        let adopted = [
            bcrypt::hash("old secret", 4).unwrap(),
            pbkdf2,
            "scrypt:16:1:2$ab$f5e012b23d2b2ddf2b3e292aade69444cb636e6d5d53878696c39d301f1efa0acf10e127cda7bbb234ba48c05bf99eefebf72912424c7e612b2191bb2af468b0".to_string(),
        ];
        let acc = rk.users().acc;
        let now = acc.now();
        acc.store
            .write(|tx| {
                let creds = tx.table::<Credential>();
                for (id, hash) in ids[1..4].iter().zip(&adopted) {
                    creds.modify(id, |c| {
                        c.password_hash = hash.clone();
                        Ok(())
                    })?;
                }
                creds.modify(&ids[5], |c| {
                    c.password_hash = adopted[0].clone();
                    c.locked_until = Some(now.plus(std::time::Duration::from_secs(3600)));
                    Ok(())
                })?;
                creds.modify(&ids[4], |c| {
                    c.password_hash = adopted[2].clone();
                    Ok(())
                })
            })
            .unwrap();
        rk.users().disable(ids[4]).unwrap();
        // The hashes are written here by hand, as an adopt in another process would: a
        // handle opened after it reads them.
        drop(rk);
        let rk = open(tmp.path());
        let mut all = vec![
            own.clone(),
            "bcrypt cost=04".to_string(),
            "pbkdf2-sha256 i=1000,l=32".to_string(),
            "scrypt n=16,r=1,p=2".to_string(),
        ];
        all.sort();
        for (login, what) in [
            ("nobody@example.com", "no account"),
            ("ann@example.com", "native"),
            ("bcrypt@example.com", "bcrypt"),
            ("pbkdf2@example.com", "PBKDF2"),
            ("scrypt@example.com", "scrypt"),
            ("off@example.com", "disabled"),
            ("held@example.com", "locked"),
        ] {
            assert_eq!(hashes(&rk, login, "wrong"), all, "{what}");
            let twice: Vec<String> = {
                let mut t = [all.clone(), all.clone()].concat();
                t.sort();
                t
            };
            assert_eq!(hashes(&rk, login, "wr\u{f6}ng"), twice, "{what}, two forms");
            let long = "x".repeat(crate::auth::password::MAX_PASSWORD_BYTES + 1);
            assert_eq!(hashes(&rk, login, &long), all, "{what}, overlong");
        }

        // An import into a handle that read the profiles already (a login would have left
        // an audit row, which an import refuses) brings its hashes' profiles.
        let mut export = Vec::new();
        crate::ops::export(&rk, &mut export, &|_| {}).unwrap();
        let other = tempfile::tempdir().unwrap();
        let rk = open(other.path());
        super::learn_profiles(rk.users().acc).unwrap();
        assert!(rk.users().acc.passwords.knows_profiles());
        crate::ops::import(&rk, &mut export.as_slice(), &|_| {}).unwrap();
        assert_eq!(
            hashes(&rk, "nobody@example.com", "wrong"),
            all,
            "after an import"
        );
    }

    /// One password, however its accented letters are typed: composed (`ä`, NFC) or
    /// decomposed (`a` + U+0308, NFD, as some keyboards send it). A hash made of the
    /// decomposed text before passwords were normalised still takes it as typed, and the
    /// login moves that hash to the composed form, after which either form logs in.
    #[test]
    fn a_password_typed_composed_or_decomposed_is_one_password() {
        use super::Credential;
        use crate::auth::sessions::LoginMeta;
        use argon2::PasswordHasher;
        let composed = "p\u{e4}ssw\u{f6}rd \u{2615} kaffee";
        let decomposed = "pa\u{308}sswo\u{308}rd \u{2615} kaffee";
        assert_ne!(composed, decomposed);
        let tmp = tempfile::tempdir().unwrap();
        let rk = open(tmp.path());
        let a = rk
            .users()
            .create(new_user("a@example.com", Some(decomposed)))
            .unwrap()
            .user
            .id;
        for typed in [composed, decomposed] {
            rk.sessions()
                .login("a@example.com", typed, LoginMeta::default())
                .unwrap();
            rk.users().check_password(a, typed).unwrap();
        }
        assert!(rk.users().check_password(a, "passwo\u{308}rd").is_err());

        // A hash of the decomposed text as typed, as an older build made it.
        let users = rk.users();
        let acc = users.acc;
        let old = acc
            .passwords
            .argon2()
            .hash_password(decomposed.as_bytes())
            .unwrap()
            .to_string();
        let set = |hash: &str| {
            acc.store
                .write(|tx| {
                    tx.table::<Credential>().modify(&a, |c| {
                        c.password_hash = hash.to_string();
                        Ok(())
                    })
                })
                .unwrap()
        };
        set(&old);
        assert_eq!(acc.passwords.verify_form(decomposed, &old), Some(false));
        // Typed composed, it matches in the other form (decomposed) too.
        assert_eq!(acc.passwords.verify_form(composed, &old), Some(false));
        rk.sessions()
            .login("a@example.com", decomposed, LoginMeta::default())
            .unwrap();
        let now = acc
            .read(|tx| tx.table::<Credential>().get(&a))
            .unwrap()
            .unwrap()
            .password_hash;
        assert_ne!(now, old, "the login rehashed it");
        assert_eq!(acc.passwords.verify_form(composed, &now), Some(true));
        rk.sessions()
            .login("a@example.com", composed, LoginMeta::default())
            .unwrap();
    }
}
