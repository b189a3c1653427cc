//! `redkeep invite create | list | revoke`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::common::parse_duration;
use crate::admin::reply::Reply;
use crate::admin::reply::opt;
use crate::{Error, Invite, InviteFilter, InviteSpec, Redkeep, Result, Timestamp};

/// Invite commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum InviteCmd {
    /// Create invite codes; each is printed once.
    Create(CreateArgs),
    /// List invites (usable ones unless --all). Never shows full codes.
    List {
        /// Include used-up, revoked and expired invites.
        #[cfg_attr(feature = "cli", arg(long))]
        all: bool,
    },
    /// Revoke an invite by its code or its prefix.
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
    /// Lifetime, e.g. 7d, 12h, 30m.
    #[cfg_attr(feature = "cli", arg(long, value_parser = super::common::duration_arg))]
    pub expires: Option<String>,
    /// Registrations each code allows (at most 100,000).
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32)
            .range(1..=i64::from(crate::auth::invites::MAX_INVITE_USES)))
    )]
    pub uses: u32,
}

const MAX_BATCH: u32 = 1000;

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
            if a.count == 0 || a.count > MAX_BATCH {
                return Err(Error::invalid(
                    "count",
                    format!("create between 1 and {MAX_BATCH} codes at a time"),
                ));
            }
            let mut spec = InviteSpec::default().uses(a.uses);
            if let Some(e) = &a.expires {
                spec = spec.expires_in(parse_duration("expires", e)?);
            }
            let mut items = Vec::new();
            let mut rows = Vec::new();
            for _ in 0..a.count {
                let c = rk.invites().create(spec.clone())?;
                let mut v = invite_json(&c.invite, now);
                v["code"] = json!(c.code.expose());
                items.push(v);
                rows.push(vec![
                    c.code.expose().to_string(),
                    opt(&c.invite.expires_at),
                    c.invite.max_uses.to_string(),
                ]);
            }
            Ok(Reply::table(
                Value::Array(items),
                &["code", "expires_at", "max_uses"],
                rows,
            )
            .footer("each code is shown once; only its hash is stored"))
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
                        opt(&i.expires_at),
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
            let i = rk.invites().revoke(code)?;
            Ok(Reply::text(
                invite_json(&i, now),
                vec![format!("revoked invite {}", i.prefix)],
            ))
        }
    }
}
