//! `redkeep invite create | list | revoke`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::common::parse_duration;
use crate::admin::reply::Reply;
use crate::{Error, Invite, InviteFilter, InviteSpec, Redkeep, Result, Timestamp};

/// Invite commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum InviteCmd {
    /// Create invite codes, all or none; each is printed once, one a line on stdout (what
    /// they allow on stderr). They expire after 7 days unless --expires says otherwise.
    Create(CreateArgs),
    /// List invites (usable ones unless --all), with when each expires (`never` for a code
    /// made with --expires never). Never shows full codes.
    List {
        /// Include used-up, revoked and expired invites.
        #[cfg_attr(feature = "cli", arg(long))]
        all: bool,
    },
    /// Revoke an invite by its code or its prefix (one revoked already: exit 0, saying when).
    Revoke {
        /// The code or its prefix (rki_xxxxxxxx).
        code: String,
    },
}

/// Arguments of `invite create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CreateArgs {
    /// How many codes to create (1 to 1000).
    #[cfg_attr(
        feature = "cli",
        arg(short = 'c', long = "count", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH)))
    )]
    pub count: u32,
    /// Lifetime, e.g. 7d, 12h, 30m (default 7d), or `never` for a code that stays good until
    /// used up or revoked, also if it leaks.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DURATION|never", value_parser = expires_arg))]
    pub expires: Option<String>,
    /// Registrations each code allows (at most 100,000).
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32)
            .range(1..=i64::from(crate::auth::invites::MAX_INVITE_USES)))
    )]
    pub uses: u32,
}

// Bounded by the library's limit; clap checks it, so the CLI refuses a larger count as a
// usage error.
#[cfg(feature = "cli")]
const MAX_BATCH: u32 = crate::auth::invites::MAX_INVITES_AT_ONCE as u32;

/// The `--expires` value that makes a code without expiry.
const NEVER: &str = "never";

/// Checks an `--expires` value for clap: a duration or `never` (kept as written: it travels
/// to a running application's admin socket as it is).
#[cfg(feature = "cli")]
fn expires_arg(text: &str) -> std::result::Result<String, String> {
    if text.trim().eq_ignore_ascii_case(NEVER) {
        return Ok(text.to_string());
    }
    super::common::duration_arg(text)
}

/// The spec `invite create` asks for: a week unless `--expires` says otherwise.
fn create_spec(a: &CreateArgs) -> Result<InviteSpec> {
    let spec = InviteSpec::default().uses(a.uses);
    Ok(match a.expires.as_deref().map(str::trim) {
        None => spec,
        Some(e) if e.eq_ignore_ascii_case(NEVER) => spec.never_expires(),
        Some(e) => spec.expires_in(parse_duration("expires", e)?),
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The words for invite codes made but not seen (stdout failed): their prefixes (the first
/// ten, then how many more were made at that time), and how to revoke them.
fn unseen(prefixes: &[&str], at: Timestamp) -> String {
    const SHOWN: usize = 10;
    if let [one] = prefixes {
        return format!(
            "the invite code {one} was not seen: revoke it with `redkeep invite revoke {one}`"
        );
    }
    let mut named = prefixes
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if prefixes.len() > SHOWN {
        named.push_str(&format!(
            " and {} more made at {at} (`redkeep invite list --all` shows them)",
            prefixes.len() - SHOWN
        ));
    }
    format!(
        "the invite codes {named} were not seen: revoke each with `redkeep invite revoke PREFIX`"
    )
}

fn invite_json(i: &Invite, now: Timestamp) -> Value {
    json!({
        "prefix": i.prefix,
        "status": i.status(now).as_str(),
        "created_at": i.created_at,
        "created_by": i.created_by,
        "expires_at": i.expires_at,
        "uses": i.uses,
        "max_uses": i.max_uses,
        "used_by": i.used_by,
        "revoked_at": i.revoked_at,
    })
}

pub fn run(rk: &Redkeep, cmd: &InviteCmd) -> Result<Reply> {
    let now = rk.now();
    match cmd {
        InviteCmd::Create(a) => {
            let spec = create_spec(a)?;
            // One transaction: all the codes are stored, or none is (a failure part way
            // leaves no live code that was never shown).
            let made = rk.invites().create_many(spec, a.count as usize)?;
            let items = made
                .iter()
                .map(|c| {
                    let mut v = invite_json(&c.invite, now);
                    v["code"] = json!(c.code.expose());
                    v
                })
                .collect();
            let codes = made.iter().map(|c| c.code.expose().to_string()).collect();
            let prefixes: Vec<&str> = made.iter().map(|c| c.invite.prefix.as_str()).collect();
            // `create_many` made `a.count` invites, at least one (clap and the library
            // both refuse 0).
            let Some(first) = made.first().map(|c| &c.invite) else {
                return Err(Error::invalid("count", "no invite was made"));
            };
            let expiry = match &first.expires_at {
                Some(t) => format!("until {t}"),
                None => "with no expiry (good until used up or revoked)".into(),
            };
            let notes = vec![format!(
                "{} invite code{} for {} registration{} each, {expiry}; each code is shown \
                 once (only its hash is stored)",
                made.len(),
                plural(made.len()),
                first.max_uses,
                plural(first.max_uses as usize),
            )];
            Ok(Reply::secret(
                Value::Array(items),
                codes,
                notes,
                unseen(&prefixes, first.created_at),
            ))
        }
        InviteCmd::List { all } => {
            let filter = if *all {
                InviteFilter::All
            } else {
                InviteFilter::Usable
            };
            let invites = rk.invites().list(filter, usize::MAX)?;
            let rows = invites
                .iter()
                .map(|i| {
                    vec![
                        i.prefix.clone(),
                        i.status(now).as_str().to_string(),
                        format!("{}/{}", i.uses, i.max_uses),
                        i.created_at.to_string(),
                        i.expires_at
                            .map_or_else(|| NEVER.to_string(), |t| t.to_string()),
                    ]
                })
                .collect();
            let json = Value::Array(invites.iter().map(|i| invite_json(i, now)).collect());
            Ok(Reply::table(
                json,
                &["prefix", "status", "uses", "created_at", "expires_at"],
                rows,
            ))
        }
        InviteCmd::Revoke { code } => {
            // A second revoke says when the first was, and succeeds. (A used-up invite is
            // refused still: it was never revoked.)
            let revoked = super::common::revoked_once(
                rk.invites().revoke(code),
                || rk.invites().find(code),
                |i| i.revoked_at.is_some(),
            );
            // More than a prefix, and no invite's code: one whose prefix it starts with is
            // named (the operator may list them), with the way to revoke it.
            let (i, already) = match revoked {
                Err(Error::NotFound { .. })
                    if crate::auth::token::looks_like(
                        crate::auth::invites::INVITE_PREFIX,
                        code.trim(),
                    ) =>
                {
                    let prefix = crate::auth::token::display_prefix(
                        crate::auth::invites::INVITE_PREFIX,
                        code.trim(),
                    );
                    return Err(match rk.invites().find(&prefix) {
                        Ok(_) => Error::invalid(
                            "invite",
                            format!(
                                "{prefix} names an invite, but the rest of what was given is \
                                 not its code (cut short or mistyped?); to revoke that invite, \
                                 give its prefix alone: `redkeep invite revoke {prefix}`"
                            ),
                        ),
                        Err(Error::NotFound { .. }) => Error::not_found(format!("invite {prefix}")),
                        Err(e) => e,
                    });
                }
                other => other?,
            };
            let line = match (already, &i.revoked_at) {
                (true, Some(at)) => format!("invite {} was revoked already, at {at}", i.prefix),
                _ => format!("revoked invite {}", i.prefix),
            };
            let mut json = invite_json(&i, now);
            json["already"] = json!(already);
            Ok(Reply::text(json, vec![line]))
        }
    }
}
