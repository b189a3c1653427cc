//! `redkeep user …`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::access;
use super::common::Stdin;
use super::orgs;
use super::workspaces;
use crate::admin::io::{Io, read_bytes};
use crate::admin::reply::{Reply, user_json};
use crate::admin::reply::{count, opt, yes_no};
use crate::auth::users::{Lockout, MAX_AVATAR_BYTES, normalize_email};
use crate::{Error, NewUser, Redkeep, Result, Secret, User, UserFilter};

/// User commands. USER is a numeric id, an email or a username.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum UserCmd {
    /// Create a user (operator path; no invite needed).
    Create(CreateArgs),
    /// List users (active ones unless --all), with their workspace's pieces and last change.
    /// A folder that cannot be read (permissions, an I/O error, an owner marker that does
    /// not name the user) shows `?`, is named on stderr with its error, and in --json its
    /// `workspace` is `{"error": "…"}` (a user without a folder has `"exists": false`).
    List {
        /// Include disabled users.
        #[cfg_attr(feature = "cli", arg(long))]
        all: bool,
    },
    /// Show one user.
    Show {
        /// Id, email or username.
        user: String,
    },
    /// Set a user's password, read from stdin. Their sessions end; with --must-change they
    /// must change it at their next login (for a user who lost theirs: you know this one).
    SetPassword {
        /// Id, email or username.
        user: String,
        /// Read the new password from stdin (required).
        #[cfg_attr(feature = "cli", arg(long, required = true))]
        password_stdin: bool,
        /// The user must change it at their next login: until then they hold no permission.
        #[cfg_attr(feature = "cli", arg(long))]
        #[serde(default)]
        must_change: bool,
    },
    /// Disable a user: no more logins. Without --revoke-keys their API keys, and the org keys
    /// they made, are only suspended, not revoked: `user enable` brings them back. After a
    /// takeover, give --revoke-keys.
    Disable {
        /// Id, email or username.
        user: String,
        /// Also revoke for good their API keys and the org keys they made (`user enable`
        /// then brings none back; make new ones with `redkeep apikey create`). Works on a
        /// user disabled already.
        #[cfg_attr(feature = "cli", arg(long))]
        revoke_keys: bool,
    },
    /// Enable a disabled user. The API keys that `user disable` suspended (theirs, and the
    /// org keys they made) work again, unless revoked meanwhile (`redkeep apikey revoke`, or
    /// `user disable --revoke-keys`); it says how many.
    Enable {
        /// Id, email or username.
        user: String,
    },
    /// The user's effective permissions and roles.
    Permissions {
        /// Id, email or username.
        user: String,
    },
    /// Lift a lockout after failed logins.
    Unlock {
        /// Id, email or username.
        user: String,
    },
    /// The orgs a user belongs to.
    Orgs {
        /// Id, email or username.
        user: String,
    },
    /// Set the org a user works in.
    SwitchOrg {
        /// Id, email or username.
        user: String,
        /// Id or slug.
        org: String,
    },
    /// Show a user with their workspace: notes, piece count, last change, size.
    Workspace {
        /// Id, email or username.
        user: String,
    },
    /// Delete a user; their workspace folder moves to the trash.
    Delete {
        /// Id, email or username.
        user: String,
    },
    /// Set, get or remove a user's avatar (a JPEG of at most 1 MiB).
    #[cfg_attr(feature = "cli", command(subcommand))]
    Avatar(AvatarCmd),
    /// Whether a user has a permission (through their roles): exit 0 yes, 1 no.
    Can {
        /// Id, email or username.
        user: String,
        /// The permission.
        permission: String,
    },
    /// Issue a password-reset token and print it once, alone on stdout (for operators who
    /// send mail themselves); it replaces any earlier one.
    ResetToken {
        /// Id, email or username.
        user: String,
    },
    /// Mark a user's email verified (or, with --undo, not verified).
    VerifyEmail {
        /// Id, email or username.
        user: String,
        /// Mark it not verified instead.
        #[cfg_attr(feature = "cli", arg(long))]
        undo: bool,
    },
    /// Change a user's email; it must be verified again.
    ChangeEmail {
        /// Id, email or username.
        user: String,
        /// The new email.
        email: String,
    },
    /// Change a user's display name or username (give at least one of the three options).
    #[cfg_attr(
        feature = "cli",
        command(group(
            clap::ArgGroup::new("change")
                .required(true)
                .multiple(true)
                .args(["name", "username", "no_username"])
        ))
    )]
    Rename {
        /// Id, email or username.
        user: String,
        /// The new display name.
        #[cfg_attr(feature = "cli", arg(long))]
        name: Option<String>,
        /// The new username (3 to 32 of A-Z a-z 0-9 _ . -).
        #[cfg_attr(feature = "cli", arg(long, conflicts_with = "no_username"))]
        username: Option<String>,
        /// Remove the username (the user then logs in by email only).
        #[cfg_attr(feature = "cli", arg(long))]
        #[serde(default)]
        no_username: bool,
    },
    /// Check a password read from stdin: exit 0 if right, 1 if not. No login: it is not
    /// counted toward the lockout, works on a locked or disabled user (and says that they
    /// cannot log in now), and is audited as `password_checked`.
    CheckPassword {
        /// Id, email or username.
        user: String,
        /// Read the password from stdin (required).
        #[cfg_attr(feature = "cli", arg(long, required = true))]
        password_stdin: bool,
    },
}

/// `user avatar …`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum AvatarCmd {
    /// Set the avatar from a JPEG file, or - for stdin.
    Set {
        /// Id, email or username.
        user: String,
        /// The JPEG file, or - for stdin.
        file: String,
    },
    /// Write the avatar's JPEG bytes to stdout (`> out.jpg`).
    Get {
        /// Id, email or username.
        user: String,
    },
    /// Remove the avatar.
    Remove {
        /// Id, email or username.
        user: String,
    },
}

/// The order of the lines on stdin of `user create --invite-stdin --password-stdin`.
const INVITE_THEN_PASSWORD: &[&str] = &["--invite-stdin", "--password-stdin"];

/// Arguments of `user create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CreateArgs {
    /// Email address.
    pub email: String,
    /// Display name.
    #[cfg_attr(feature = "cli", arg(long))]
    pub name: Option<String>,
    /// Unique username.
    #[cfg_attr(feature = "cli", arg(long))]
    pub username: Option<String>,
    /// Make the user an administrator.
    #[cfg_attr(feature = "cli", arg(long))]
    pub admin: bool,
    /// Read the password from stdin; otherwise one is generated and printed once, alone on
    /// stdout. With --invite-stdin, stdin holds two lines: the invite code first, then the
    /// password.
    #[cfg_attr(feature = "cli", arg(long))]
    pub password_stdin: bool,
    /// Consume this invite code (better read with --invite-stdin: a command line shows in
    /// the process list and shell history).
    #[cfg_attr(feature = "cli", arg(long, value_name = "CODE"))]
    pub invite: Option<String>,
    /// Read the invite code to consume from stdin. With --password-stdin, stdin holds two
    /// lines: the invite code first, then the password.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "invite"))]
    #[serde(default)]
    pub invite_stdin: bool,
}

impl UserCmd {
    pub(super) fn input_file(&self) -> Option<&str> {
        match self {
            UserCmd::Avatar(AvatarCmd::Set { file, .. }) => Some(file),
            _ => None,
        }
    }

    pub(super) fn stdin_secrets(&self) -> &'static [&'static str] {
        match self {
            UserCmd::Create(a) => match (a.invite_stdin, a.password_stdin) {
                (true, true) => INVITE_THEN_PASSWORD,
                (true, false) => &["--invite-stdin"],
                (false, true) => &["--password-stdin"],
                (false, false) => &[],
            },
            UserCmd::SetPassword { .. } | UserCmd::CheckPassword { .. } => &["--password-stdin"],
            _ => &[],
        }
    }
}

/// The widest name `user list` shows whole, in characters.
const LIST_NAME_CHARS: usize = 40;

/// Why `u` cannot log in now, with the command that lets them, if they cannot.
fn cannot_log_in(rk: &Redkeep, u: &User) -> Result<Option<String>> {
    let id = u.id;
    if !u.is_active {
        return Ok(Some(format!(
            "user {id} is disabled; `redkeep user enable {id}` lets it log in again"
        )));
    }
    let l = rk.users().lockout(id)?;
    if let Some(until) = l.locked_until.filter(|&t| rk.now() < t) {
        return Ok(Some(format!(
            "user {id} is locked until {until}; `redkeep user unlock {id}` lifts the lock"
        )));
    }
    if l.failures_in_window >= rk.options().lockout.max_failures_per_hour {
        return Ok(Some(format!(
            "user {id} has had {} failed logins this hour, the most an hour allows; `redkeep \
             user unlock {id}` clears the count",
            l.failures_in_window
        )));
    }
    Ok(None)
}

/// A user's lines for `user show` and the commands that show the user they changed;
/// `every` names the roles other than `admin` that grant them every permission.
fn user_lines(u: &User, lockout: &Lockout, every: &[String]) -> Vec<String> {
    let admin = match every {
        [] => yes_no(u.is_admin),
        [one] => format!(
            "{} (but role {one} grants every permission)",
            yes_no(u.is_admin)
        ),
        many => format!(
            "{} (but roles {} grant every permission)",
            yes_no(u.is_admin),
            many.join(", ")
        ),
    };
    vec![
        format!("id:                   {}", u.id),
        format!("email:                {}", u.email),
        format!("username:             {}", opt(&u.username)),
        format!("name:                 {}", u.name),
        format!("admin:                {admin}"),
        format!("active:               {}", yes_no(u.is_active)),
        format!("email verified:       {}", yes_no(u.email_verified)),
        format!("must change password: {}", yes_no(u.must_change_password)),
        format!(
            "failed logins:        {} in a row toward the next lock, {} this hour",
            lockout.failed_logins, lockout.failures_in_window
        ),
        format!("locked until:         {}", opt(&lockout.locked_until)),
        format!("last login:           {}", opt(&u.last_login_at)),
        format!("created:              {}", u.created_at),
    ]
}

fn user_reply(rk: &Redkeep, u: &User, first: String) -> Result<Reply> {
    let (json, lines) = user_parts(rk, u, first)?;
    Ok(Reply::text(json, lines))
}

/// What [`user_reply`] shows: the JSON and the lines, for a reply that adds to them.
/// How many API keys `user` answers for that could still be used (not revoked, not
/// expired): their own, and the org keys they made; what `disable` suspends and `enable`
/// brings back.
fn usable_keys_of(rk: &Redkeep, user: u64) -> Result<usize> {
    use crate::auth::api_keys::KeyOwner;
    let now = rk.now();
    let live = |k: &crate::auth::api_keys::ApiKey| {
        k.revoked_at.is_none() && k.expires_at.is_none_or(|e| now < e)
    };
    let own = rk.api_keys().list(Some(KeyOwner::User(user)), usize::MAX)?;
    let made = rk.api_keys().list_made_by(user, usize::MAX)?;
    Ok(own.iter().filter(|k| live(k)).count()
        + made
            .iter()
            .filter(|k| matches!(k.owner, KeyOwner::Org(_)) && live(k))
            .count())
}

fn user_parts(rk: &Redkeep, u: &User, first: String) -> Result<(Value, Vec<String>)> {
    let mut lockout = rk.users().lockout(u.id)?;
    // A lock that has run out is none (the record keeps its time until the next login).
    let now = rk.now();
    lockout.locked_until = lockout.locked_until.filter(|&t| now < t);
    // A custom role that holds `*` makes its user able to do everything, as an admin: said
    // beside `admin: no`, so an operator who looks for admins there does not miss them.
    let every: Vec<String> = rk
        .roles()
        .of_user(u.id)?
        .into_iter()
        .filter(access::grants_every_permission)
        .map(|r| r.name)
        .collect();
    let mut lines = vec![first];
    lines.extend(user_lines(u, &lockout, &every));
    let mut json = user_json(u);
    json["roles_granting_every_permission"] = json!(every);
    json["failed_logins"] = json!(lockout.failed_logins);
    json["failures_this_hour"] = json!(lockout.failures_in_window);
    json["locked_until"] = json!(lockout.locked_until);
    Ok((json, lines))
}

/// What `change-email` did, truthfully: nothing (the address the user has), a change of
/// letter case or form only (still a change: it must be verified again), or a new address.
fn email_change(before: &str, after: &User) -> String {
    let (id, now) = (after.id, &after.email);
    if now == before {
        let verified = if after.email_verified {
            "verified"
        } else {
            "not verified"
        };
        return format!("email of user {id} is {before} already ({verified}); nothing changed");
    }
    let how = if now.to_lowercase() == before.to_lowercase() {
        ", only in letter case"
    } else if normalize_email(now).ok() == normalize_email(before).ok() {
        ", the same address in other characters"
    } else {
        ""
    };
    format!("email of user {id} changed from {before} to {now}{how}; it is not verified")
}

/// What `rename` did: each change, from what to what, or that nothing changed.
fn renamed(before: &User, after: &User) -> String {
    let id = after.id;
    let mut changes = Vec::new();
    if before.name != after.name {
        changes.push(format!("name from {:?} to {:?}", before.name, after.name));
    }
    if before.username != after.username {
        let shown = |n: &Option<String>| n.as_deref().map_or("(none)".into(), |n| n.to_string());
        changes.push(format!(
            "username from {} to {}",
            shown(&before.username),
            shown(&after.username)
        ));
    }
    if changes.is_empty() {
        return format!("user {id} has that name and username already; nothing changed");
    }
    format!("user {id} renamed: {}", changes.join(", "))
}

/// The words for a generated password that was not seen (stdout failed), and how to
/// replace it.
pub(super) fn unseen_password(id: u64) -> String {
    format!(
        "the generated password of user {id} was not seen: set another with \
         `redkeep user set-password {id} --password-stdin`"
    )
}

pub fn run(rk: &Redkeep, cmd: &UserCmd, stdin: Stdin<'_>, io: Io<'_>) -> Result<Reply> {
    match cmd {
        UserCmd::Avatar(AvatarCmd::Set { user, .. }) => {
            let u = rk.users().find(user)?;
            let jpeg = read_bytes(io.input, "the avatar", MAX_AVATAR_BYTES as u64)?;
            let n = jpeg.len();
            rk.users().set_avatar(u.id, jpeg)?;
            Ok(Reply::text(
                json!({"user_id": u.id, "avatar_bytes": n}),
                vec![format!("avatar of user {} set ({n} bytes)", u.id)],
            ))
        }
        UserCmd::Avatar(AvatarCmd::Get { user }) => {
            let u = rk.users().find(user)?;
            let jpeg = rk
                .users()
                .avatar(u.id)?
                .ok_or_else(|| Error::not_found(format!("avatar of user {}", u.id)))?;
            io.output
                .write_all(&jpeg)
                .map_err(|e| Error::io("writing the avatar", e))?;
            let mut reply = Reply::text(
                json!({"user_id": u.id, "avatar_bytes": jpeg.len()}),
                vec![format!(
                    "wrote the avatar of user {} ({} bytes)",
                    u.id,
                    jpeg.len()
                )],
            );
            reply.raw = true;
            Ok(reply)
        }
        UserCmd::Avatar(AvatarCmd::Remove { user }) => {
            let u = rk.users().find(user)?;
            if !rk.users().remove_avatar(u.id)? {
                return Err(Error::not_found(format!("avatar of user {}", u.id)));
            }
            Ok(Reply::text(
                json!({"user_id": u.id, "removed": true}),
                vec![format!("avatar of user {} removed", u.id)],
            ))
        }
        UserCmd::Create(a) => {
            // One line of stdin per flag, in the order `stdin_secrets` gives.
            let mut lines = stdin
                .lines(cmd.stdin_secrets())?
                .into_iter()
                .map(Secret::new);
            let invite = if a.invite_stdin {
                lines.next()
            } else {
                a.invite.clone().map(Secret::new)
            };
            let password = if a.password_stdin { lines.next() } else { None };
            let created = rk.users().create(NewUser {
                email: a.email.clone(),
                name: a.name.clone(),
                username: a.username.clone(),
                password,
                is_admin: a.admin,
                invite,
            })?;
            let u = &created.user;
            let mut json = user_json(u);
            let done = format!("created user {} (id {})", u.email, u.id);
            match &created.password {
                // The generated password alone on stdout; what goes with it on stderr.
                Some(p) => {
                    json["password"] = json!(p.expose());
                    Ok(Reply::secret(
                        json,
                        vec![p.expose().to_string()],
                        vec![
                            done,
                            "this password is shown once; it must be changed at first login".into(),
                        ],
                        unseen_password(u.id),
                    ))
                }
                None => Ok(Reply::text(json, vec![done])),
            }
        }
        UserCmd::List { all } => {
            let filter = if *all {
                UserFilter::All
            } else {
                UserFilter::Active
            };
            let users = rk.users().list(filter, None, usize::MAX)?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            let mut cut = false;
            let mut unread = Vec::new();
            for u in &users {
                // The workspace summary: pieces in the gallery and the last change. A folder
                // that cannot be read shows `?` here, and is named on stderr with its error
                // (in JSON, `{"error": …}`): a report built on the list must not take it
                // for a user without a folder.
                let ws = rk.workspaces().info(u.id).map_err(|e| e.to_string());
                if let Err(e) = &ws {
                    unread.push((u.id, e.clone()));
                }
                let pieces = ws.as_ref().map_or("?".into(), |w| w.pieces.to_string());
                let modified = ws.as_ref().map_or("?".into(), |w| opt(&w.modified));
                // A long name (up to 200 characters) would widen every row: cut here.
                let name = if u.name.chars().count() > LIST_NAME_CHARS {
                    cut = true;
                    let head: String = u.name.chars().take(LIST_NAME_CHARS - 1).collect();
                    format!("{head}…")
                } else {
                    u.name.clone()
                };
                rows.push(vec![
                    u.id.to_string(),
                    u.email.clone(),
                    name,
                    yes_no(u.is_admin),
                    yes_no(u.is_active),
                    u.created_at.to_string(),
                    opt(&u.last_login_at),
                    pieces,
                    modified,
                ]);
                let mut j = user_json(u);
                j["workspace"] = match &ws {
                    Ok(w) => {
                        json!({"exists": w.exists, "pieces": w.pieces, "modified": w.modified})
                    }
                    Err(e) => json!({"error": e}),
                };
                json.push(j);
            }
            let mut reply = Reply::table(
                Value::Array(json),
                &[
                    "id",
                    "email",
                    "name",
                    "admin",
                    "active",
                    "created_at",
                    "last_login_at",
                    "pieces",
                    "workspace_modified",
                ],
                rows,
            );
            if cut {
                reply = reply.footer(format!(
                    "names longer than {LIST_NAME_CHARS} characters are cut (…); `redkeep user \
                     show` and --json give them whole"
                ));
            }
            reply.notes = unread_folders(rk, &unread);
            Ok(reply)
        }
        UserCmd::Show { user } => {
            let u = rk.users().find(user)?;
            user_reply(rk, &u, format!("user {}", u.id))
        }
        UserCmd::SetPassword {
            user, must_change, ..
        } => {
            let password = stdin.secret("--password-stdin")?;
            let u = rk.users().find(user)?;
            if *must_change {
                let u = rk.users().set_temporary_password(u.id, password)?;
                user_reply(
                    rk,
                    &u,
                    format!(
                        "password of user {} changed; they must change it at their next login",
                        u.id
                    ),
                )
            } else {
                let u = rk.users().set_password(u.id, password)?;
                user_reply(rk, &u, format!("password of user {} changed", u.id))
            }
        }
        UserCmd::Disable { user, revoke_keys } => {
            let u = rk.users().find(user)?;
            let was = u.is_active;
            let disabled = if *revoke_keys {
                rk.users().disable_revoking_keys(u.id)?
            } else {
                rk.users().disable(u.id)?
            };
            let u = disabled.user;
            let what = if was {
                "disabled"
            } else {
                "was disabled already"
            };
            let (mut json, mut lines) = user_parts(rk, &u, format!("user {} {what}", u.id))?;
            if !disabled.invites_revoked.is_empty() {
                lines.push(format!(
                    "revoked the {} they made that could still admit someone ({})",
                    count(disabled.invites_revoked.len(), "invite"),
                    crate::top::first_few(&disabled.invites_revoked, 3)
                ));
            }
            json["invites_revoked"] = json!(disabled.invites_revoked);
            if *revoke_keys {
                let revoked = &disabled.api_keys_revoked;
                lines.push(match revoked.len() {
                    0 => "they had no API key to revoke (of their own, or an org key they made)"
                        .to_string(),
                    n => format!(
                        "revoked {} for good, their own and org keys they made ({}); \
                         `redkeep user enable` brings none back: make new ones with `redkeep \
                         apikey create`",
                        count(n, "API key"),
                        crate::top::first_few(revoked, 3)
                    ),
                });
            }
            json["api_keys_revoked"] = json!(disabled.api_keys_revoked);
            let keys = usable_keys_of(rk, u.id)?;
            if was && keys > 0 {
                lines.push(format!(
                    "{} they answer for (their own, and org keys they made) will not work while \
                     they are disabled, but are only suspended, not revoked: `redkeep user enable \
                     {}` brings them back; `redkeep user disable {} --revoke-keys` revokes them \
                     for good",
                    count(keys, "API key"),
                    u.id,
                    u.id
                ));
            }
            json["api_keys_suspended"] = json!(keys);
            Ok(Reply::text(json, lines))
        }
        UserCmd::Enable { user } => {
            let u = rk.users().find(user)?;
            let was = u.is_active;
            let u = rk.users().enable(u.id)?;
            let what = if was {
                "was enabled already"
            } else {
                "enabled"
            };
            let (mut json, mut lines) = user_parts(rk, &u, format!("user {} {what}", u.id))?;
            let keys = usable_keys_of(rk, u.id)?;
            if !was && keys > 0 {
                lines.push(format!(
                    "{} they answer for (their own, and org keys they made) can be used again: \
                     `redkeep apikey revoke PREFIX` revokes one, `redkeep apikey revoke --user {}` \
                     all of their own",
                    count(keys, "API key"),
                    u.id
                ));
            }
            json["api_keys_usable"] = json!(keys);
            Ok(Reply::text(json, lines))
        }
        UserCmd::Permissions { user } => access::permissions(rk, user),
        UserCmd::Unlock { user } => {
            let u = rk.users().find(user)?;
            let before = rk.users().lockout(u.id)?;
            let u = rk.users().unlock(u.id)?;
            let locked = before.locked_until.is_some_and(|t| rk.now() < t);
            let counted =
                before.failed_logins > 0 || before.failures_in_window > 0 || before.lock_count > 0;
            let line = if locked {
                format!("user {} unlocked", u.id)
            } else if counted {
                format!(
                    "user {} was not locked; its count of failed logins is cleared",
                    u.id
                )
            } else {
                format!("user {} was not locked; nothing changed", u.id)
            };
            user_reply(rk, &u, line)
        }
        UserCmd::Orgs { user } => orgs::user_orgs(rk, user),
        UserCmd::SwitchOrg { user, org } => orgs::switch_org(rk, user, org),
        UserCmd::Workspace { user } => workspaces::user_workspace(rk, user),
        UserCmd::Delete { user } => {
            let u = rk.users().find(user)?;
            let deleted = rk.users().delete(u.id)?;
            let trash = deleted.trash;
            let mut lines = vec![format!("deleted user {} ({})", u.id, u.email)];
            if let Some(t) = &trash {
                lines.push(format!("workspace moved to {}", t.display()));
            }
            if !deleted.orgs_deleted.is_empty() {
                lines.push(format!(
                    "deleted with them, as they were their only member: org{} {}",
                    if deleted.orgs_deleted.len() == 1 {
                        ""
                    } else {
                        "s"
                    },
                    deleted.orgs_deleted.join(", ")
                ));
            }
            if deleted.api_keys_deleted > 0 {
                lines.push(format!(
                    "deleted {} (theirs and those orgs')",
                    count(deleted.api_keys_deleted, "API key")
                ));
            }
            if deleted.agent_sessions_deleted > 0 {
                lines.push(format!(
                    "deleted their {}",
                    count(deleted.agent_sessions_deleted, "agent session")
                ));
            }
            if !deleted.invites_revoked.is_empty() {
                lines.push(format!(
                    "revoked the {} they made that could still admit someone ({})",
                    count(deleted.invites_revoked.len(), "invite"),
                    crate::top::first_few(&deleted.invites_revoked, 3)
                ));
            }
            if !deleted.org_api_keys_revoked.is_empty() {
                lines.push(format!(
                    "revoked the {} they made for orgs that could still be used ({})",
                    count(deleted.org_api_keys_revoked.len(), "API key"),
                    crate::top::first_few(&deleted.org_api_keys_revoked, 3)
                ));
            }
            Ok(Reply::text(
                json!({
                    "id": u.id,
                    "email": u.email,
                    "deleted": true,
                    "trash": trash.as_ref().map(|t| t.display().to_string()),
                    "orgs_deleted": deleted.orgs_deleted,
                    "api_keys_deleted": deleted.api_keys_deleted,
                    "agent_sessions_deleted": deleted.agent_sessions_deleted,
                    "invites_revoked": deleted.invites_revoked,
                    "org_api_keys_revoked": deleted.org_api_keys_revoked,
                }),
                lines,
            ))
        }
        UserCmd::Can { user, permission } => {
            // A name no role could grant is a typo, not a "no".
            crate::auth::roles::validate_permission(permission)?;
            let u = rk.users().find(user)?;
            let granted = u.is_active && rk.roles().has_permission(u.id, permission)?;
            // Until they change their password, a user holds no permission (as the web
            // layer's `Caller` answers), whatever their roles give.
            let yes = granted && !u.must_change_password;
            let verb = if yes { "may" } else { "may not" };
            let why = if granted && !yes {
                " (they must change their password first; their roles give it once they do)"
            } else {
                ""
            };
            let mut reply = Reply::text(
                json!({"user_id": u.id, "permission": permission, "allowed": yes}),
                vec![format!("user {} {verb} {permission}{why}", u.id)],
            );
            reply.exit_code = u8::from(!yes);
            Ok(reply)
        }
        UserCmd::ResetToken { user } => {
            let u = rk.users().find(user)?;
            if !u.is_active {
                return Err(Error::denied(format!(
                    "user {} is disabled; enable them first",
                    u.id
                )));
            }
            let issued = rk
                .recovery()
                .request_password_reset(&u.email)?
                .ok_or_else(|| Error::not_found(format!("user {user}")))?;
            Ok(Reply::secret(
                json!({"user_id": u.id, "email": u.email, "token": issued.token.expose(), "expires_at": issued.expires_at}),
                vec![issued.token.expose().to_string()],
                vec![format!(
                    "password reset token for {} (id {}); it works once, until {}; this token \
                     is shown once",
                    u.email, u.id, issued.expires_at
                )],
                format!(
                    "the password reset token of user {} was not seen: issue another with \
                     `redkeep user reset-token {}`, which replaces it",
                    u.id, u.id
                ),
            ))
        }
        UserCmd::VerifyEmail { user, undo } => {
            let u = rk.users().find(user)?;
            let u = rk.users().set_email_verified(u.id, !undo)?;
            let state = if *undo { "not verified" } else { "verified" };
            user_reply(rk, &u, format!("email of user {} marked {state}", u.id))
        }
        UserCmd::ChangeEmail { user, email } => {
            let before = rk.users().find(user)?;
            let u = rk.users().change_email(before.id, email)?;
            user_reply(rk, &u, email_change(&before.email, &u))
        }
        UserCmd::Rename {
            user,
            name,
            username,
            no_username,
        } => {
            let username = match (username, no_username) {
                (Some(n), _) => Some(Some(n.clone())),
                (None, true) => Some(None),
                (None, false) => None,
            };
            if name.is_none() && username.is_none() {
                return Err(Error::invalid(
                    "rename",
                    "give --name, --username or --no-username",
                ));
            }
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return Err(Error::invalid(
                    "name",
                    "it is empty; give a name, or leave --name out to keep the one the user has",
                ));
            }
            let before = rk.users().find(user)?;
            let u = rk.users().rename(before.id, name.clone(), username)?;
            user_reply(rk, &u, renamed(&before, &u))
        }
        UserCmd::CheckPassword { user, .. } => {
            let password = stdin.secret("--password-stdin")?;
            let u = rk.users().find(user)?;
            // No login: nothing counted toward the lockout, audited as `password_checked`.
            if !rk.users().password_matches(u.id, password)? {
                return Err(Error::denied(format!(
                    "the password is not user {}'s (an operator's check: not counted toward \
                     the lockout)",
                    u.id
                )));
            }
            // Right, but whether it logs in now is another matter: say why not.
            let why_not = cannot_log_in(rk, &u)?;
            let mut line = "password is correct".to_string();
            if let Some(why) = &why_not {
                line.push_str(&format!(", but no password logs in now: {why}"));
            }
            Ok(Reply::text(
                json!({"ok": true, "user_id": u.id, "logs_in": why_not.is_none()}),
                vec![line],
            ))
        }
    }
}

/// How many folders `user list` names on stderr when it cannot read them: past a few (every
/// folder, when the process is out of file descriptors) the rest are counted.
const UNREAD_NAMED: usize = 5;

/// The lines `user list` prints on stderr for the workspace folders it could not read.
fn unread_folders(rk: &Redkeep, unread: &[(u64, String)]) -> Vec<String> {
    let mut lines: Vec<String> = unread
        .iter()
        .take(UNREAD_NAMED)
        .map(|(id, e)| {
            format!(
                "the workspace folder {} of user {id} was not read: {e}",
                rk.workspaces().dir(*id).display()
            )
        })
        .collect();
    if unread.len() > UNREAD_NAMED {
        lines.push(format!(
            "and {} more folders were not read",
            unread.len() - UNREAD_NAMED
        ));
    }
    if !lines.is_empty() {
        lines.push(
            "their pieces and last change show `?`; `redkeep check` says what is wrong".into(),
        );
    }
    lines
}
