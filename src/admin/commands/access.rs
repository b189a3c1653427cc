//! `redkeep role | login | session | agent | apikey | audit`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::common::{Stdin, parse_duration};
use crate::admin::io::{Io, MAX_INPUT_BYTES, read_text};
use crate::admin::reply::{Reply, user_json};
use crate::admin::reply::{opt, yes_no};
use crate::auth::agents::{AgentSession, AgentSpec, AgentState};
use crate::auth::api_keys::{ApiKey, ApiKeySpec, Holdup, KeyOwner};
use crate::auth::audit::AuditEvent;
use crate::auth::roles::{ADMIN_ROLE, ALL_PERMISSIONS, Role, RoleSpec};
use crate::auth::sessions::{LoginMeta, Session};
use crate::clock::Timestamp;
use crate::{Error, Redkeep, Result};

/// Role commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum RoleCmd {
    /// List roles, highest priority first.
    List,
    /// Show one role and its users.
    Show {
        /// Role name.
        name: String,
    },
    /// Create a custom role.
    Create {
        /// Role name (a-z 0-9 _ -).
        name: String,
        /// A permission it grants; repeat for more.
        #[cfg_attr(feature = "cli", arg(long = "permission", required = true))]
        permissions: Vec<String>,
        /// Priority (higher ranks first; -1000000 to 99).
        #[cfg_attr(
            feature = "cli",
            arg(
                long,
                default_value_t = 0,
                allow_negative_numbers = true,
                value_parser = clap::value_parser!(i64).range(crate::auth::roles::CUSTOM_PRIORITIES)
            )
        )]
        priority: i64,
        /// What it is for.
        #[cfg_attr(feature = "cli", arg(long, default_value = ""))]
        description: String,
    },
    /// Delete a custom role and its assignments.
    Delete {
        /// Role name.
        name: String,
    },
    /// Grant a role to a user.
    Grant {
        /// Id, email or username.
        user: String,
        /// Role name.
        role: String,
    },
    /// Revoke a role from a user.
    Revoke {
        /// Id, email or username.
        user: String,
        /// Role name.
        role: String,
    },
}

/// Arguments of `redkeep login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct LoginArgs {
    /// The account's email or username.
    pub login: String,
    /// Read the password from stdin (required).
    #[cfg_attr(feature = "cli", arg(long, required = true))]
    pub password_stdin: bool,
    /// Session lifetime, e.g. 12h (1s to 100 years; an unused session still ends at the
    /// idle timeout).
    #[cfg_attr(feature = "cli", arg(long, value_parser = super::common::duration_arg))]
    pub ttl: Option<String>,
}

/// Session commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum SessionCmd {
    /// Check a session token read from stdin: exit 0 with the user, or 1.
    Validate {
        /// Read the token from stdin (required).
        #[cfg_attr(feature = "cli", arg(long, required = true))]
        token_stdin: bool,
    },
    /// List sessions (short ids only, never tokens).
    List {
        /// Only this user's.
        #[cfg_attr(feature = "cli", arg(long))]
        user: Option<String>,
    },
    /// Revoke one session by short id or token, all of a user's, or every session.
    // One of the four, named all four ways when none is given.
    #[cfg_attr(
        feature = "cli",
        command(group(
            clap::ArgGroup::new("which")
                .required(true)
                .args(["id", "user", "token_stdin", "all"])
        ))
    )]
    Revoke {
        /// The session's short id (rks_xxxxxxxx); a full token is taken too, but better read
        /// with --token-stdin (a command line shows in the process list and shell history).
        id: Option<String>,
        /// Revoke every session of this user.
        #[cfg_attr(feature = "cli", arg(long))]
        user: Option<String>,
        /// Read the session's full token from stdin.
        #[cfg_attr(feature = "cli", arg(long))]
        #[serde(default)]
        token_stdin: bool,
        /// Revoke every login session of every user (browser logins too), e.g. after a
        /// restore brought back the sessions of the backup's time.
        #[cfg_attr(feature = "cli", arg(long))]
        #[serde(default)]
        all: bool,
    },
    /// Delete every expired session.
    Sweep,
}

/// Agent session commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum AgentCmd {
    /// List agent sessions, most recently updated first.
    List {
        /// Only this user's.
        #[cfg_attr(feature = "cli", arg(long))]
        user: Option<String>,
    },
    /// Show one agent session.
    Show {
        /// The agent session id.
        id: String,
    },
    /// Delete one agent session.
    Delete {
        /// The agent session id.
        id: String,
    },
    /// Delete every expired agent session.
    Sweep,
    /// Create an agent session from JSON (`{"id", "user", "name", "goal", "ttl"}`; `user` is
    /// an id, email or username, `ttl` a duration like 7d) read from FILE or stdin.
    Create {
        /// The JSON file, or - for stdin.
        #[cfg_attr(feature = "cli", arg(default_value = "-"))]
        file: String,
    },
    /// Change an agent session's state with JSON read from FILE or stdin: any of `status`,
    /// `current_step`, `progress`, `failures`, `artifacts`, `context`, `escalation`, `goal`.
    Update {
        /// The agent session id.
        id: String,
        /// The JSON file, or - for stdin.
        #[cfg_attr(feature = "cli", arg(default_value = "-"))]
        file: String,
    },
}

impl AgentCmd {
    pub(super) fn input_file(&self) -> Option<&str> {
        match self {
            AgentCmd::Create { file } | AgentCmd::Update { file, .. } => Some(file),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentCreate {
    id: String,
    user: serde_json::Value,
    #[serde(default)]
    name: String,
    #[serde(default)]
    goal: String,
    ttl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentPatch {
    status: Option<String>,
    current_step: Option<Option<String>>,
    progress: Option<Vec<String>>,
    failures: Option<Vec<String>>,
    artifacts: Option<Vec<String>>,
    context: Option<serde_json::Value>,
    escalation: Option<Option<serde_json::Value>>,
    goal: Option<String>,
}

impl AgentPatch {
    fn apply(&self, s: &mut AgentState) {
        if let Some(v) = &self.status {
            s.status = v.clone();
        }
        if let Some(v) = &self.current_step {
            s.current_step = v.clone();
        }
        if let Some(v) = &self.progress {
            s.progress = v.clone();
        }
        if let Some(v) = &self.failures {
            s.failures = v.clone();
        }
        if let Some(v) = &self.artifacts {
            s.artifacts = v.clone();
        }
        if let Some(v) = &self.context {
            s.context = v.to_string();
        }
        if let Some(v) = &self.escalation {
            s.escalation = v.as_ref().map(|e| e.to_string());
        }
        if let Some(v) = &self.goal {
            s.goal = v.clone();
        }
    }
}

/// The JSON document a command reads from its input.
fn json_input<T: serde::de::DeserializeOwned>(io: Io<'_>, what: &str) -> Result<T> {
    let text = read_text(io.input, what, MAX_INPUT_BYTES)?;
    serde_json::from_str(&text).map_err(|e| Error::invalid("input", format!("{what}: {e}")))
}

/// API key commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum ApiKeyCmd {
    /// Create a key for a user or an org; the key is printed once, alone on stdout (its
    /// prefix and notes on stderr).
    #[cfg_attr(
        feature = "cli",
        command(group(clap::ArgGroup::new("owner").required(true).args(["user", "org"])))
    )]
    Create {
        /// The owning user.
        #[cfg_attr(feature = "cli", arg(long))]
        user: Option<String>,
        /// The owning org (id or slug).
        #[cfg_attr(feature = "cli", arg(long))]
        org: Option<String>,
        /// A scope (a permission name, or `*` for all); repeat for more. A user's key with
        /// none grants all of the user's permissions; an org's key grants exactly its scopes,
        /// so it needs at least one.
        #[cfg_attr(feature = "cli", arg(long = "scope"))]
        scopes: Vec<String>,
        /// Lifetime, e.g. 90d.
        #[cfg_attr(feature = "cli", arg(long, value_parser = super::common::duration_arg))]
        expires: Option<String>,
        /// The user who asked for it (for an org's key, an owner or admin of the org who
        /// holds every scope given: the key is revoked when they leave the org, are made a
        /// plain member of it, or are deleted).
        #[cfg_attr(feature = "cli", arg(long))]
        created_by: Option<String>,
    },
    /// List keys (prefixes only).
    List {
        /// Only this user's.
        #[cfg_attr(feature = "cli", arg(long, conflicts_with = "org"))]
        user: Option<String>,
        /// Only this org's (id or slug).
        #[cfg_attr(feature = "cli", arg(long))]
        org: Option<String>,
        /// Only those this user made (whoever owns them).
        #[cfg_attr(feature = "cli", arg(long, conflicts_with_all = ["user", "org"]))]
        created_by: Option<String>,
    },
    /// Revoke a key by its prefix (a key revoked already: exit 0, saying when), or every
    /// key of a user or an org.
    #[cfg_attr(
        feature = "cli",
        command(group(
            clap::ArgGroup::new("which")
                .required(true)
                .args(["prefix", "user", "org", "key_stdin"])
        ))
    )]
    Revoke {
        /// The prefix (rkk_xxxxxxxx); a full key is taken too, but better read with
        /// --key-stdin (a command line shows in the process list and shell history).
        prefix: Option<String>,
        /// Revoke every key of this user (a password reset keeps them).
        #[cfg_attr(feature = "cli", arg(long))]
        #[serde(default)]
        user: Option<String>,
        /// Revoke every key of this org (id or slug).
        #[cfg_attr(feature = "cli", arg(long))]
        #[serde(default)]
        org: Option<String>,
        /// Read the full key to revoke from stdin.
        #[cfg_attr(feature = "cli", arg(long))]
        #[serde(default)]
        key_stdin: bool,
    },
    /// Check a key read from stdin: exit 0 with owner and scopes, or 1 with why not. With
    /// `--json`, a key that verifies gives `"valid": true` with its record, and one that does
    /// not gives `{"valid": false, "reason", "prefix", "message"}`, `reason` being one of
    /// `malformed` (not the shape of a key), `unknown` (no key has its prefix),
    /// `wrong_secret` (a key has its prefix, but this is not its secret), `revoked`,
    /// `expired`, `owner_disabled`, `owner_missing`, `maker_disabled` (the member who made an
    /// org's key is disabled), or `changed` (it verifies now); a key that verifies but whose
    /// maker no longer holds some of its scopes says so, and `"narrowed"` lists them;
    /// `prefix` is null for a malformed key, and `message` is the line on stderr.
    Verify {
        /// Read the key from stdin (required).
        #[cfg_attr(feature = "cli", arg(long, required = true))]
        key_stdin: bool,
    },
}

/// Audit commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum AuditCmd {
    /// Security events, newest first. When older ones exist, a line on stderr says how to
    /// see them (`--before` the last `seq` shown). With `--json`, the array alone: when it
    /// holds `--limit` events, page on with `--before` its last `seq`.
    List {
        /// Only events about this user (a numeric id works for deleted users too).
        #[cfg_attr(feature = "cli", arg(long))]
        user: Option<String>,
        /// At most this many (at least 1).
        #[cfg_attr(
            feature = "cli",
            arg(long, value_name = "N", default_value_t = 100, value_parser = super::common::limit_arg::<usize>)
        )]
        limit: usize,
        /// Only events older than the one with this sequence number: the next page.
        #[cfg_attr(feature = "cli", arg(long, value_name = "SEQ"))]
        #[serde(default)]
        before: Option<u64>,
    },
    /// Delete the events recorded before a time, or older than a duration (the log keeps
    /// every event otherwise, every failed login included). One `audit_pruned` event records
    /// how many went.
    #[cfg_attr(
        feature = "cli",
        command(group(
            clap::ArgGroup::new("when")
                .required(true)
                .args(["before", "older_than"])
        ))
    )]
    Prune {
        /// Events recorded before this time: RFC 3339 (`2026-01-01T00:00:00Z`) or a date
        /// (`2026-01-01`, midnight UTC).
        #[cfg_attr(feature = "cli", arg(long, value_parser = before_arg))]
        before: Option<String>,
        /// Events older than this, e.g. 90d.
        #[cfg_attr(feature = "cli", arg(long, value_parser = super::common::duration_arg))]
        older_than: Option<String>,
    },
}

fn role_json(r: &Role) -> Value {
    json!({
        "id": r.id, "name": r.name, "description": r.description,
        "permissions": r.permissions, "priority": r.priority, "is_system": r.is_system,
        "created_at": r.created_at,
    })
}

pub fn role(rk: &Redkeep, cmd: &RoleCmd) -> Result<Reply> {
    match cmd {
        RoleCmd::List => {
            let roles = rk.roles().list()?;
            let rows = roles
                .iter()
                .map(|r| {
                    let perms: Vec<&str> = r.permissions.iter().map(String::as_str).collect();
                    vec![
                        r.name.clone(),
                        r.priority.to_string(),
                        yes_no(r.is_system),
                        perms.join(","),
                        r.description.clone(),
                    ]
                })
                .collect();
            let json = Value::Array(roles.iter().map(role_json).collect());
            Ok(Reply::table(
                json,
                &["name", "priority", "system", "permissions", "description"],
                rows,
            ))
        }
        RoleCmd::Show { name } => {
            let r = rk.roles().get(name)?;
            let users = rk.roles().users_in(&r.name, usize::MAX)?;
            let mut json = role_json(&r);
            json["users"] = json!(users);
            let perms: Vec<&str> = r.permissions.iter().map(String::as_str).collect();
            Ok(Reply::text(
                json,
                vec![
                    format!(
                        "role {} (id {}){}",
                        r.name,
                        r.id,
                        if r.is_system { ", system" } else { "" }
                    ),
                    format!("description: {}", r.description),
                    format!("priority:    {}", r.priority),
                    format!("permissions: {}", perms.join(", ")),
                    format!("users:       {users:?}"),
                ],
            ))
        }
        RoleCmd::Create {
            name,
            permissions,
            priority,
            description,
        } => {
            let r = rk.roles().create(RoleSpec {
                name: name.clone(),
                description: description.clone(),
                permissions: permissions.clone(),
                priority: *priority,
            })?;
            let mut json = role_json(&r);
            let mut lines = vec![format!("created role {}", r.name)];
            every_permission_note(&r, &mut json, &mut lines);
            Ok(Reply::text(json, lines))
        }
        RoleCmd::Delete { name } => {
            // (What keys a change narrows is said when it can be read; it never stops it.)
            let before = working_made_keys(rk, None).unwrap_or_default();
            let (r, revoked) = rk.roles().delete_revoking(name)?;
            let mut json = role_json(&r);
            json["revoked_from"] = json!(revoked);
            let line = match revoked.as_slice() {
                [] => format!("deleted role {} (nobody held it)", r.name),
                [one] => format!("deleted role {}; user {one} lost it", r.name),
                many => {
                    const SHOWN: usize = 20;
                    let named: Vec<String> = many.iter().take(SHOWN).map(u64::to_string).collect();
                    let more = many.len().saturating_sub(SHOWN);
                    format!(
                        "deleted role {}; {} users lost it: {}{}",
                        r.name,
                        many.len(),
                        named.join(", "),
                        if more > 0 {
                            format!(" and {more} more (see `--json`)")
                        } else {
                            String::new()
                        }
                    )
                }
            };
            let mut lines = vec![line];
            lines.extend(keys_narrowed(rk, &before).ok().flatten());
            Ok(Reply::text(json, lines))
        }
        RoleCmd::Grant { user, role } => {
            let u = rk.users().find(user)?;
            let before = rk.roles().of_user(u.id)?;
            let r = rk.roles().grant(u.id, role, None)?;
            let held = before.iter().any(|b| b.id == r.id);
            let line = if held {
                format!("user {} holds role {} already", u.id, r.name)
            } else {
                format!("granted role {} to user {}", r.name, u.id)
            };
            let mut json =
                json!({"user_id": u.id, "role": r.name, "granted": true, "already": held});
            let mut lines = vec![line];
            every_permission_note(&r, &mut json, &mut lines);
            Ok(Reply::text(json, lines))
        }
        RoleCmd::Revoke { user, role } => {
            let u = rk.users().find(user)?;
            let r = rk.roles().get(role)?;
            // Like a second grant, a second revoke reaches the state asked for: it says so
            // and succeeds, so a script can run it again. (An assignment that is there,
            // active or not, is removed.)
            let before = working_made_keys(rk, Some(u.id)).unwrap_or_default();
            let r = match rk.roles().revoke(u.id, role, None) {
                Err(Error::NotFound { .. }) => {
                    return Ok(Reply::text(
                        json!({"user_id": u.id, "role": r.name, "revoked": false, "already": true}),
                        vec![format!(
                            "user {} does not hold role {}; nothing to revoke",
                            u.id, r.name
                        )],
                    ));
                }
                other => other?,
            };
            let mut lines = vec![format!("revoked role {} from user {}", r.name, u.id)];
            lines.extend(keys_narrowed(rk, &before).ok().flatten());
            Ok(Reply::text(
                json!({"user_id": u.id, "role": r.name, "revoked": true, "already": false}),
                lines,
            ))
        }
    }
}

/// The org keys made by a member (by `maker`, or by anyone) that verify now, whole.
fn working_made_keys(rk: &Redkeep, maker: Option<u64>) -> Result<Vec<ApiKey>> {
    let keys = match maker {
        Some(by) => rk.api_keys().list_made_by(by, usize::MAX)?,
        None => rk.api_keys().list(None, usize::MAX)?,
    };
    let now = rk.now();
    let mut working = Vec::new();
    for k in keys {
        if k.created_by.is_some()
            && matches!(k.owner, KeyOwner::Org(_))
            && key_status(&k, now, rk.api_keys().holdup(&k)?.as_ref()) == "active"
        {
            working.push(k);
        }
    }
    Ok(working)
}

/// A line naming the keys of `before` that a change of roles narrowed, their makers no
/// longer holding some of their scopes (none when it left them whole).
fn keys_narrowed(rk: &Redkeep, before: &[ApiKey]) -> Result<Option<String>> {
    let mut narrowed = Vec::new();
    for k in before {
        if let Some(Holdup::MakerLacks(by, lacks)) = rk.api_keys().holdup(k)? {
            narrowed.push(format!(
                "{} (user {by} lacks {})",
                k.prefix,
                lacks.join(", ")
            ));
        }
    }
    Ok((!narrowed.is_empty()).then(|| {
        format!(
            "{} org API key(s) now grant less, their makers no longer holding some of their \
             scopes: {}; a key grants no more than its maker holds, and the rest again once \
             they hold it (`redkeep apikey revoke PREFIX` ends one for good)",
            narrowed.len(),
            crate::top::first_few(&narrowed, 5)
        )
    }))
}

/// Whether `r` is a role other than `admin` that holds `*`: it lets its users do everything,
/// though they are not admins (`admin: no` in `user show` and `user list`).
pub(super) fn grants_every_permission(r: &Role) -> bool {
    r.name != ADMIN_ROLE && r.permissions.contains(ALL_PERMISSIONS)
}

/// Says, for a role that holds `*` (other than `admin`), that it grants every permission,
/// in `lines` and as `grants_every_permission` in `json`.
fn every_permission_note(r: &Role, json: &mut Value, lines: &mut Vec<String>) {
    let every = grants_every_permission(r);
    json["grants_every_permission"] = json!(every);
    if every {
        lines.push(format!(
            "note: role {} holds {ALL_PERMISSIONS}, so it grants every permission, as admin \
             does, to users who are not admins",
            r.name
        ));
    }
}

/// `redkeep user permissions USER`.
pub fn permissions(rk: &Redkeep, who: &str) -> Result<Reply> {
    let u = rk.users().find(who)?;
    let perms = rk.roles().permissions(u.id)?;
    let roles: Vec<String> = rk
        .roles()
        .of_user(u.id)?
        .into_iter()
        .map(|r| r.name)
        .collect();
    let mut lines = vec![format!("user {} roles: {}", u.id, roles.join(", "))];
    if !u.is_active {
        lines.push("disabled: no permissions".into());
    } else if u.must_change_password {
        lines.push(
            "must change their password first: no permissions until they do (their roles give \
             these then)"
                .into(),
        );
    }
    lines.extend(perms.iter().cloned());
    Ok(Reply::text(
        json!({
            "user_id": u.id, "roles": roles, "permissions": perms,
            "is_active": u.is_active, "must_change_password": u.must_change_password,
        }),
        lines,
    ))
}

pub fn login(rk: &Redkeep, a: &LoginArgs, stdin: Stdin<'_>) -> Result<Reply> {
    let password = stdin.secret("--password-stdin")?;
    let ttl = a
        .ttl
        .as_deref()
        .map(|t| parse_duration("ttl", t))
        .transpose()?;
    let l = rk
        .sessions()
        .login(
            &a.login,
            password,
            LoginMeta {
                ttl,
                ..LoginMeta::default()
            },
        )
        .map_err(|e| super::common::why_refused(rk, &a.login, e))?;
    let id = &l.session.short_id;
    let mut notes = vec![format!(
        "session {id} of user {} until {}; the token is shown once",
        l.user.id, l.session.expires_at
    )];
    if l.user.must_change_password {
        notes.push(
            "this password must be changed now (`redkeep user set-password`, or the application's change-password page)"
                .into(),
        );
    }
    Ok(Reply::secret(
        json!({"token": l.token.expose(), "user_id": l.user.id, "expires_at": l.session.expires_at, "session": id, "must_change_password": l.user.must_change_password}),
        vec![l.token.expose().to_string()],
        notes,
        format!(
            "the token of session {id} was not seen: revoke it with `redkeep session revoke {id}`"
        ),
    ))
}

/// Whether a listed session still works (`active`) or only waits for a sweep (`expired`).
fn session_status(s: &Session, now: Timestamp) -> &'static str {
    if now < s.deadline() {
        "active"
    } else {
        "expired"
    }
}

/// Whether a listed key still verifies: `active`, `expired`, `revoked`, or, for a key that
/// would verify but for its owner or maker (`holdup`), `owner_disabled` (a disabled user),
/// `owner_missing` or `maker_disabled` (the member who made an org's key is disabled); and
/// `narrowed` for one that verifies but whose maker no longer holds some of its scopes,
/// which it then does not grant.
fn key_status(k: &ApiKey, now: Timestamp, holdup: Option<&Holdup>) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        match holdup {
            None => "active",
            Some(Holdup::OwnerDisabled) => "owner_disabled",
            Some(Holdup::OwnerMissing) => "owner_missing",
            Some(Holdup::MakerDisabled(_)) => "maker_disabled",
            Some(Holdup::MakerLacks(..)) => "narrowed",
        }
    }
}

/// A refused token or key (`e`) with why, for an operator: the library's answer is the
/// same for every failure, as a web caller must get it; the operator, who may list the
/// records anyway, is told which rule refused it (`why`, never repeating the secret). Other
/// errors pass as they are.
fn said_why(e: Error, why: impl FnOnce() -> Result<String>) -> Error {
    match &e {
        Error::InvalidCredential { .. } => match why() {
            Ok(why) => Error::denied(format!("{e}: {why}")),
            Err(_) => e,
        },
        _ => e,
    }
}

/// Why an API key does not verify, as far as its record tells: what `apikey verify` says,
/// on stderr and in its JSON.
struct KeyInvalid {
    /// One word for scripts (see `ApiKeyCmd::Verify`).
    reason: &'static str,
    /// The key's display prefix; `None` for text that is not the shape of a key.
    prefix: Option<String>,
    /// The reason as a sentence.
    why: String,
}

/// Why the API key `key` does not verify, as far as its record tells.
fn why_key_invalid(rk: &Redkeep, key: &str) -> Result<KeyInvalid> {
    use crate::auth::api_keys::API_KEY_PREFIX;
    use crate::auth::token;
    let key = key.trim();
    if !token::looks_like(API_KEY_PREFIX, key) {
        return Ok(KeyInvalid {
            reason: "malformed",
            prefix: None,
            why: format!(
                "it does not have the shape of an API key ({API_KEY_PREFIX}_ and 39 letters \
                 and digits, as `redkeep apikey create` printed it)"
            ),
        });
    }
    let prefix = token::display_prefix(API_KEY_PREFIX, key);
    let said = |reason, why| {
        Ok(KeyInvalid {
            reason,
            prefix: Some(prefix.clone()),
            why,
        })
    };
    let k = match rk.api_keys().find(key) {
        Ok(k) => k,
        Err(Error::NotFound { .. }) => {
            return match rk.api_keys().find(&prefix) {
                Ok(_) => said(
                    "wrong_secret",
                    format!(
                        "a key with the prefix {prefix} exists, but this is not its secret \
                         (mistyped or cut short?)"
                    ),
                ),
                Err(_) => said(
                    "unknown",
                    format!(
                        "no key has the prefix {prefix} (never made in this store, or its \
                         owner was deleted)"
                    ),
                ),
            };
        }
        Err(e) => return Err(e),
    };
    let holdup = rk.api_keys().holdup(&k)?;
    match key_status(&k, rk.now(), holdup.as_ref()) {
        "revoked" => said(
            "revoked",
            format!("it was revoked at {}", opt(&k.revoked_at)),
        ),
        "expired" => said("expired", format!("it expired at {}", opt(&k.expires_at))),
        "owner_disabled" => said(
            "owner_disabled",
            format!("its owner, {}, is disabled", k.owner),
        ),
        "owner_missing" => said(
            "owner_missing",
            format!("its owner, {}, no longer exists", k.owner),
        ),
        "maker_disabled" => said(
            "maker_disabled",
            format!(
                "user {}, who made this key of {}, is disabled; it verifies again once they \
                 are enabled (or revoke it and make another)",
                k.created_by.unwrap_or_default(),
                k.owner
            ),
        ),
        _ => said(
            "changed",
            "it is valid now (it changed since it was checked); verify it again".into(),
        ),
    }
}

/// Why the session token `token` does not validate, as far as its record tells.
fn why_session_invalid(rk: &Redkeep, token: &str) -> Result<String> {
    use crate::auth::sessions::SESSION_PREFIX;
    use crate::auth::token;
    let token = token.trim();
    if !token::looks_like(SESSION_PREFIX, token) {
        return Ok(format!(
            "it does not have the shape of a session token ({SESSION_PREFIX}_ and 39 letters \
             and digits, as `redkeep login` printed it)"
        ));
    }
    let short = token::display_prefix(SESSION_PREFIX, token);
    let s = match rk.sessions().find(token) {
        Ok(s) => s,
        Err(Error::NotFound { .. }) => {
            return Ok(match rk.sessions().find(&short) {
                Ok(_) => format!(
                    "session {short} exists, but this is not its token (mistyped or cut short?)"
                ),
                Err(_) => format!(
                    "no session {short}: it was logged out or revoked (its user's password \
                     changed, or the user was disabled), swept after it expired, or never \
                     made in this store"
                ),
            });
        }
        Err(e) => return Err(e),
    };
    let now = rk.now();
    if now >= s.deadline() {
        let which = if s.deadline() == s.expires_at {
            "its lifetime ended"
        } else {
            "it was idle too long"
        };
        return Ok(format!("it expired at {} ({which})", s.deadline()));
    }
    Ok(match rk.users().get(s.user_id)? {
        None => format!("its user {} no longer exists", s.user_id),
        Some(u) if !u.is_active => format!("its user {} ({}) is disabled", u.id, u.email),
        Some(_) => "it is valid now (it changed since it was checked); validate it again".into(),
    })
}

fn session_json(s: &Session) -> Value {
    json!({
        "id": s.short_id, "user_id": s.user_id, "created_at": s.created_at,
        "last_seen_at": s.last_seen_at, "idle_until": s.idle_deadline(), "expires_at": s.expires_at,
        "deadline": s.deadline(),
        "ip": s.ip, "user_agent": s.user_agent,
    })
}

pub fn session(rk: &Redkeep, cmd: &SessionCmd, stdin: Stdin<'_>) -> Result<Reply> {
    match cmd {
        SessionCmd::Validate { .. } => {
            let token = stdin.secret("--token-stdin")?;
            let (u, s) = rk
                .sessions()
                .validate_quietly(token)
                .map_err(|e| said_why(e, || why_session_invalid(rk, token)))?;
            let mut json = session_json(&s);
            json["user"] = user_json(&u);
            Ok(Reply::text(
                json,
                vec![format!(
                    "valid: session {} of user {} ({})",
                    s.short_id, u.id, u.email
                )],
            ))
        }
        SessionCmd::List { user } => {
            let uid = user
                .as_deref()
                .map(|w| rk.users().find(w))
                .transpose()?
                .map(|u| u.id);
            let list = rk.sessions().list(uid, usize::MAX)?;
            let now = rk.now();
            let rows = list
                .iter()
                .map(|s| {
                    vec![
                        s.short_id.clone(),
                        session_status(s, now).to_string(),
                        s.user_id.to_string(),
                        s.created_at.to_string(),
                        s.last_seen_at.to_string(),
                        s.idle_deadline().to_string(),
                        s.expires_at.to_string(),
                    ]
                })
                .collect();
            let json = Value::Array(
                list.iter()
                    .map(|s| {
                        let mut j = session_json(s);
                        j["status"] = session_status(s, now).into();
                        j
                    })
                    .collect(),
            );
            // Two deadlines: idle (moves with use) and absolute (what `login` prints).
            Ok(Reply::table(
                json,
                &[
                    "id",
                    "status",
                    "user_id",
                    "created_at",
                    "last_seen_at",
                    "idle_until",
                    "expires_at",
                ],
                rows,
            ))
        }
        SessionCmd::Revoke {
            token_stdin: true, ..
        } => {
            let token = stdin.secret("--token-stdin")?;
            let s = rk.sessions().revoke(token)?;
            Ok(Reply::text(
                json!({"id": s.short_id, "user_id": s.user_id, "revoked": 1}),
                vec![format!("revoked session {}", s.short_id)],
            ))
        }
        SessionCmd::Revoke { all: true, .. } => {
            let n = rk.sessions().revoke_everyone()?;
            Ok(Reply::text(
                json!({"revoked": n}),
                vec![format!("revoked {n} session(s) of every user")],
            ))
        }
        SessionCmd::Revoke { id, user, .. } => match (id, user) {
            (_, Some(w)) => {
                let u = rk.users().find(w)?;
                let n = rk.sessions().revoke_all(u.id)?;
                Ok(Reply::text(
                    json!({"user_id": u.id, "revoked": n}),
                    vec![format!("revoked {n} session(s) of user {}", u.id)],
                ))
            }
            (Some(id), None) => {
                let s = rk.sessions().revoke(id)?;
                Ok(Reply::text(
                    json!({"id": s.short_id, "user_id": s.user_id, "revoked": 1}),
                    vec![format!("revoked session {}", s.short_id)],
                ))
            }
            (None, None) => Err(Error::invalid(
                "session",
                "give a session id, --user or --all",
            )),
        },
        SessionCmd::Sweep => {
            let n = rk.sessions().sweep()?;
            Ok(Reply::text(
                json!({"removed": n}),
                vec![format!("removed {n} expired session(s)")],
            ))
        }
    }
}

fn agent_json(a: &AgentSession) -> Value {
    let s = &a.state;
    json!({
        "id": a.id, "user_id": a.user_id, "name": a.name, "goal": s.goal, "status": s.status,
        "current_step": s.current_step, "progress": s.progress, "failures": s.failures,
        "artifacts": s.artifacts,
        "context": serde_json::from_str::<Value>(&s.context).unwrap_or(Value::Null),
        "escalation": s.escalation.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()),
        "created_at": a.created_at, "updated_at": a.updated_at, "expires_at": a.expires_at,
    })
}

pub fn agent(rk: &Redkeep, cmd: &AgentCmd, io: Io<'_>) -> Result<Reply> {
    match cmd {
        AgentCmd::Create { .. } => {
            let spec: AgentCreate = json_input(io, "the agent session JSON")?;
            let who = match &spec.user {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => {
                    return Err(Error::invalid(
                        "user",
                        "give the user's id, email or username",
                    ));
                }
            };
            let user = rk.users().find(&who)?;
            let ttl = spec
                .ttl
                .as_deref()
                .map(|t| parse_duration("ttl", t))
                .transpose()?;
            let a = rk.agents().create(AgentSpec {
                id: spec.id,
                user_id: user.id,
                name: spec.name,
                goal: spec.goal,
                ttl,
            })?;
            Ok(Reply::text(
                agent_json(&a),
                vec![format!(
                    "created agent session {} of user {}",
                    a.id, a.user_id
                )],
            ))
        }
        AgentCmd::Update { id, .. } => {
            let patch: AgentPatch = json_input(io, "the agent state JSON")?;
            let a = rk.agents().update(id, |s| {
                patch.apply(s);
                Ok(())
            })?;
            let json = agent_json(&a);
            let mut lines = vec![format!("updated agent session {}", a.id)];
            lines.extend(crate::admin::reply::pretty_json_lines(&json));
            Ok(Reply::text(json, lines))
        }
        AgentCmd::List { user } => {
            let list = match user {
                Some(w) => rk
                    .agents()
                    .list_by_user(rk.users().find(w)?.id, usize::MAX)?,
                None => rk.agents().list(usize::MAX)?,
            };
            let rows = list
                .iter()
                .map(|a| {
                    vec![
                        a.id.clone(),
                        a.user_id.to_string(),
                        a.name.clone(),
                        a.state.status.clone(),
                        opt(&a.state.current_step),
                        a.updated_at.to_string(),
                    ]
                })
                .collect();
            let json = Value::Array(list.iter().map(agent_json).collect());
            Ok(Reply::table(
                json,
                &[
                    "id",
                    "user_id",
                    "name",
                    "status",
                    "current_step",
                    "updated_at",
                ],
                rows,
            ))
        }
        AgentCmd::Show { id } => {
            let a = rk
                .agents()
                .get(id)?
                .ok_or_else(|| Error::not_found(format!("agent session {id}")))?;
            let json = agent_json(&a);
            let lines = crate::admin::reply::pretty_json_lines(&json);
            Ok(Reply::text(json, lines))
        }
        AgentCmd::Delete { id } => {
            if !rk.agents().delete(id)? {
                return Err(Error::not_found(format!("agent session {id}")));
            }
            Ok(Reply::text(
                json!({"id": id, "deleted": true}),
                vec![format!("deleted agent session {id}")],
            ))
        }
        AgentCmd::Sweep => {
            let n = rk.agents().sweep()?;
            Ok(Reply::text(
                json!({"removed": n}),
                vec![format!("removed {n} expired agent session(s)")],
            ))
        }
    }
}

/// An API key's owner in JSON: `{"kind": "org", "id": 5}`.
fn owner_json(owner: KeyOwner) -> Value {
    let (kind, id) = match owner {
        KeyOwner::User(u) => ("user", u),
        KeyOwner::Org(o) => ("org", o),
    };
    json!({"kind": kind, "id": id})
}

/// What a key grants, for JSON (`grants`) and for the text of its scopes: a user's key with
/// no scopes, or `*`, grants all of its owner's permissions (`owner_permissions`); an org's
/// key grants exactly its scopes (`scopes`; `*` is `every_permission`), so one with none
/// (made before `apikey create` refused it) grants `nothing`. The two empty cases would
/// otherwise look alike.
fn key_grants(k: &ApiKey) -> (&'static str, String) {
    let star = k.scopes.iter().any(|s| s == "*");
    let listed = || k.scopes.join(",");
    match k.owner {
        KeyOwner::User(u) if k.scopes.is_empty() => {
            ("owner_permissions", format!("(all of user {u}'s)"))
        }
        KeyOwner::User(_) if star => ("owner_permissions", listed()),
        KeyOwner::Org(_) if k.scopes.is_empty() => ("nothing", "(none: grants nothing)".into()),
        KeyOwner::Org(_) if star => ("every_permission", listed()),
        _ => ("scopes", listed()),
    }
}

fn key_json(k: &ApiKey) -> Value {
    json!({
        "prefix": k.prefix, "owner": owner_json(k.owner), "created_by": k.created_by,
        "scopes": k.scopes, "grants": key_grants(k).0,
        "created_at": k.created_at, "expires_at": k.expires_at, "last_used_at": k.last_used_at,
        "revoked_at": k.revoked_at,
    })
}

pub fn apikey(rk: &Redkeep, cmd: &ApiKeyCmd, stdin: Stdin<'_>) -> Result<Reply> {
    match cmd {
        ApiKeyCmd::Create {
            user,
            org,
            scopes,
            expires,
            created_by,
        } => {
            let owner = match (user, org) {
                (Some(w), _) => KeyOwner::User(rk.users().find(w)?.id),
                (None, Some(o)) => KeyOwner::Org(rk.orgs().find(o)?.id),
                (None, None) => return Err(Error::invalid("owner", "give --user or --org")),
            };
            let expires_in = expires
                .as_deref()
                .map(|e| parse_duration("expires", e))
                .transpose()?;
            let created_by = created_by
                .as_deref()
                .map(|w| rk.users().find(w).map(|u| u.id))
                .transpose()?;
            let c = rk.api_keys().create(ApiKeySpec {
                owner,
                scopes: scopes.clone(),
                expires_in,
                created_by,
            })?;
            let mut json = key_json(&c.api_key);
            json["key"] = json!(c.key.expose());
            let prefix = &c.api_key.prefix;
            let mut notes = vec![format!(
                "api key {prefix} for {owner}; the key is shown once"
            )];
            // A user's key grants only scopes its owner holds: a scope the owner lacks (a
            // typo, or a permission no role of theirs has) grants nothing until they get it.
            if let KeyOwner::User(id) = owner {
                let held = rk.roles().permissions(id)?;
                let idle: Vec<&String> = c
                    .api_key
                    .scopes
                    .iter()
                    // `*` asks for everything the owner holds, whatever that is.
                    .filter(|s| *s != "*" && !held.contains(*s) && !held.contains("*"))
                    .collect();
                if !idle.is_empty() {
                    let names: Vec<&str> = idle.iter().map(|s| s.as_str()).collect();
                    notes.push(format!(
                        "note: the user holds no permission {}, so the key grants nothing for it \
                         until a role of theirs does",
                        names.join(", ")
                    ));
                    json["scopes_not_held"] = json!(names);
                }
            }
            Ok(Reply::secret(
                json,
                vec![c.key.expose().to_string()],
                notes,
                format!(
                    "the api key {prefix} was not seen: revoke it with `redkeep apikey revoke {prefix}`"
                ),
            ))
        }
        ApiKeyCmd::List {
            user,
            org,
            created_by,
        } => {
            let owner = match (user, org) {
                (Some(w), _) => Some(KeyOwner::User(rk.users().find(w)?.id)),
                (None, Some(o)) => Some(KeyOwner::Org(rk.orgs().find(o)?.id)),
                (None, None) => None,
            };
            let list = match created_by {
                Some(w) => {
                    if owner.is_some() {
                        return Err(Error::invalid(
                            "apikey",
                            "give --created-by alone, without --user or --org",
                        ));
                    }
                    let by = rk.users().find(w)?.id;
                    rk.api_keys().list_made_by(by, usize::MAX)?
                }
                None => rk.api_keys().list(owner, usize::MAX)?,
            };
            let now = rk.now();
            let holdups = list
                .iter()
                .map(|k| rk.api_keys().holdup(k))
                .collect::<Result<Vec<_>>>()?;
            let statuses: Vec<&str> = list
                .iter()
                .zip(&holdups)
                .map(|(k, h)| key_status(k, now, h.as_ref()))
                .collect();
            let rows = list
                .iter()
                .zip(&statuses)
                .map(|(k, status)| {
                    vec![
                        k.prefix.clone(),
                        status.to_string(),
                        k.owner.to_string(),
                        k.created_by
                            .map_or_else(|| "-".into(), |u| format!("user {u}")),
                        key_grants(k).1,
                        opt(&k.expires_at),
                        opt(&k.last_used_at),
                        opt(&k.revoked_at),
                    ]
                })
                .collect();
            let json = Value::Array(
                list.iter()
                    .zip(&statuses)
                    .map(|(k, status)| {
                        let mut j = key_json(k);
                        j["status"] = (*status).into();
                        j
                    })
                    .collect(),
            );
            Ok(Reply::table(
                json,
                &[
                    "prefix",
                    "status",
                    "owner",
                    "created_by",
                    "scopes",
                    "expires_at",
                    "last_used_at",
                    "revoked_at",
                ],
                rows,
            ))
        }
        ApiKeyCmd::Revoke {
            key_stdin: true, ..
        } => revoke_key(rk, stdin.secret("--key-stdin")?),
        ApiKeyCmd::Revoke {
            prefix: None,
            user,
            org,
            ..
        } => {
            let owner = match (user, org) {
                (Some(w), None) => KeyOwner::User(rk.users().find(w)?.id),
                (None, Some(o)) => KeyOwner::Org(rk.orgs().find(o)?.id),
                _ => {
                    return Err(Error::invalid(
                        "apikey",
                        "give one of: a key's prefix, --user or --org",
                    ));
                }
            };
            let keys = rk.api_keys().revoke_all_of(owner)?;
            let prefixes: Vec<&str> = keys.iter().map(|k| k.prefix.as_str()).collect();
            let line = if prefixes.is_empty() {
                format!("{owner} has no key left to revoke")
            } else {
                format!(
                    "revoked {} api key(s) of {owner}: {}",
                    keys.len(),
                    prefixes.join(", ")
                )
            };
            Ok(Reply::text(
                json!({"owner": owner_json(owner), "revoked": prefixes}),
                vec![line],
            ))
        }
        ApiKeyCmd::Revoke {
            prefix: Some(prefix),
            user: None,
            org: None,
            ..
        } => revoke_key(rk, prefix),
        ApiKeyCmd::Revoke { .. } => Err(Error::invalid(
            "apikey",
            "give one of: a key's prefix, --user or --org",
        )),
        ApiKeyCmd::Verify { .. } => {
            let key = stdin.secret("--key-stdin")?;
            let k = match rk.api_keys().verify_as(key, false) {
                Ok(k) => k,
                // Said as a failed reply, whose JSON says why in one word.
                Err(e @ Error::InvalidCredential { .. }) => {
                    let Ok(invalid) = why_key_invalid(rk, key) else {
                        return Err(e);
                    };
                    let line = format!("{e}: {}", invalid.why);
                    return Ok(Reply::text(
                        json!({
                            "valid": false, "reason": invalid.reason,
                            "prefix": invalid.prefix, "message": line,
                        }),
                        Vec::new(),
                    )
                    .failed(line));
                }
                Err(e) => return Err(e),
            };
            let mut json = key_json(&k);
            json["valid"] = json!(true);
            let narrowed = match rk.api_keys().holdup(&k)? {
                Some(Holdup::MakerLacks(by, lacks)) => {
                    json["narrowed"] = json!({"maker": by, "lacks": lacks});
                    format!(
                        "; but user {by}, who made it, no longer holds {}, so it does not grant \
                         {} (a key grants no more than its maker holds; again once they do)",
                        lacks.join(", "),
                        if lacks.len() == 1 { "it" } else { "them" }
                    )
                }
                _ => String::new(),
            };
            // A user's key grants nothing while its owner must change their password (as
            // the web layer's `Caller` answers).
            let must_change = match k.owner {
                KeyOwner::User(u) => rk.users().get(u)?.is_some_and(|u| u.must_change_password),
                KeyOwner::Org(_) => false,
            };
            json["owner_must_change_password"] = json!(must_change);
            let narrowed = if must_change {
                format!(
                    "{narrowed}; but its owner must change their password first, so it grants \
                     nothing until they do"
                )
            } else {
                narrowed
            };
            Ok(Reply::text(
                json,
                vec![format!(
                    "valid: api key {} for {}, scopes {}{narrowed}",
                    k.prefix,
                    k.owner,
                    key_grants(&k).1
                )],
            ))
        }
    }
}

/// Revokes the key named by its prefix or its full key; a second revoke says when the first
/// was, and succeeds.
fn revoke_key(rk: &Redkeep, prefix_or_key: &str) -> Result<Reply> {
    let (k, already) = super::common::revoked_once(
        rk.api_keys().revoke(prefix_or_key),
        || rk.api_keys().find(prefix_or_key),
        |k| k.revoked_at.is_some(),
    )?;
    let line = match (already, &k.revoked_at) {
        (true, Some(at)) => format!("api key {} was revoked already, at {at}", k.prefix),
        _ => format!("revoked api key {}", k.prefix),
    };
    let mut json = key_json(&k);
    json["already"] = json!(already);
    Ok(Reply::text(json, vec![line]))
}

fn audit_json(e: &AuditEvent) -> Value {
    json!({
        "seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action,
        "subject_user": e.subject_user, "subject": e.subject, "outcome": e.outcome, "detail": e.detail,
        "origin": e.origin,
    })
}

pub fn audit(rk: &Redkeep, cmd: &AuditCmd) -> Result<Reply> {
    let (user, limit, before) = match cmd {
        AuditCmd::List {
            user,
            limit,
            before,
        } => (user, *limit, *before),
        AuditCmd::Prune { before, older_than } => {
            return audit_prune(rk, before.as_deref(), older_than.as_deref());
        }
    };
    // A numeric id works for deleted users too: their events stay in the log.
    let uid = match user.as_deref().map(str::trim) {
        None => None,
        Some(w) => match w.parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => Some(rk.users().find(w)?.id),
        },
    };
    super::common::check_limit(limit as u64)?;
    // One more than shown tells whether older events exist.
    let mut events = rk.audit().list(uid, before, limit.saturating_add(1))?;
    let more = events.len() > limit;
    events.truncate(limit);
    let rows = events
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.at.to_string(),
                e.action.clone(),
                e.subject.clone(),
                e.outcome.clone(),
                opt(&e.actor),
                opt(&e.origin),
                e.detail.clone(),
            ]
        })
        .collect();
    let json = Value::Array(events.iter().map(audit_json).collect());
    let mut reply = Reply::table(
        json,
        &[
            "seq", "at", "action", "subject", "outcome", "actor", "origin", "detail",
        ],
        rows,
    );
    if let Some(last) = events.last().filter(|_| more) {
        reply.notes.push(format!(
            "older events follow; the next page: --before {}",
            last.seq
        ));
    }
    Ok(reply)
}

/// The time of `audit prune --before`: RFC 3339, or a date alone (its midnight, UTC).
fn parse_before(t: &str) -> Result<Timestamp> {
    let t = t.trim();
    let full = if t.len() == 10 && !t.contains('T') {
        format!("{t}T00:00:00Z")
    } else {
        t.to_string()
    };
    Timestamp::parse(&full).ok_or_else(|| {
        Error::invalid(
            "before",
            format!(
                "{t:?} is not a time; give RFC 3339 (2026-01-01T00:00:00Z) or a date (2026-01-01)"
            ),
        )
    })
}

/// Clap's check of `--before`: a bad time is a usage error (exit 2), as a bad duration is;
/// the text is kept as written.
#[cfg(feature = "cli")]
fn before_arg(text: &str) -> std::result::Result<String, String> {
    match parse_before(text) {
        Ok(_) => Ok(text.to_string()),
        Err(Error::InvalidInput { reason, .. }) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

fn audit_prune(rk: &Redkeep, before: Option<&str>, older_than: Option<&str>) -> Result<Reply> {
    let cutoff = match (before, older_than) {
        (Some(t), None) => parse_before(t)?,
        (None, Some(d)) => {
            let d = parse_duration("older-than", d)?;
            Timestamp(
                rk.now()
                    .0
                    .saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            )
        }
        // Clap asks for exactly one; a request built otherwise must not guess.
        _ => {
            return Err(Error::invalid(
                "prune",
                "say which events to delete: --before TIME or --older-than DURATION (one of them)",
            ));
        }
    };
    let deleted = rk.audit().prune(cutoff)?;
    Ok(Reply::text(
        json!({ "deleted": deleted, "before": cutoff }),
        vec![format!(
            "deleted {deleted} audit event(s) recorded before {cutoff}; an audit_pruned \
             event records it"
        )],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::TokenHash;

    /// A listing says which entries still work: an expired session or key, kept until a
    /// sweep, must not look live.
    #[test]
    fn listed_sessions_and_keys_say_whether_they_still_work() {
        let session = Session {
            hash: TokenHash([0; 32]),
            short_id: "rks_abcdefgh".into(),
            user_id: 1,
            created_at: Timestamp(100),
            last_seen_at: Timestamp(100),
            expires_at: Timestamp(1_000),
            idle_timeout_secs: 60,
            ip: None,
            user_agent: None,
        };
        assert_eq!(session_status(&session, Timestamp(159)), "active");
        assert_eq!(session_status(&session, Timestamp(160)), "expired");
        let mut key = ApiKey {
            hash: TokenHash([0; 32]),
            prefix: "rkk_abcdefgh".into(),
            owner: KeyOwner::User(1),
            scopes: vec![],
            created_at: Timestamp(100),
            expires_at: Some(Timestamp(200)),
            last_used_at: None,
            revoked_at: None,
            created_by: None,
        };
        assert_eq!(key_status(&key, Timestamp(199), None), "active");
        assert_eq!(key_status(&key, Timestamp(200), None), "expired");
        key.revoked_at = Some(Timestamp(150));
        assert_eq!(key_status(&key, Timestamp(160), None), "revoked");
        key.revoked_at = None;
        key.expires_at = None;
        assert_eq!(key_status(&key, Timestamp(i64::MAX), None), "active");
        // A key that would verify but for its owner or maker says why it does not.
        for (holdup, status) in [
            (Holdup::OwnerDisabled, "owner_disabled"),
            (Holdup::OwnerMissing, "owner_missing"),
            (Holdup::MakerDisabled(2), "maker_disabled"),
            (
                Holdup::MakerLacks(2, vec!["posts.write".into()]),
                "narrowed",
            ),
        ] {
            assert_eq!(key_status(&key, Timestamp(160), Some(&holdup)), status);
        }
    }
}
