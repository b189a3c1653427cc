//! `init` and `check`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::Stdin;
use crate::admin::io::Feedback;
use crate::admin::reply::{Human, Reply, user_json};
use crate::{InitSpec, Redkeep, Result, Secret};

/// Arguments of `redkeep init`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct InitArgs {
    /// Email of the first administrator.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "no_admin"))]
    pub admin_email: Option<String>,
    /// Read the administrator's password from stdin instead of generating one.
    #[cfg_attr(feature = "cli", arg(long, conflicts_with = "no_admin"))]
    pub admin_password_stdin: bool,
    /// Create no administrator.
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_admin: bool,
}

pub fn init(rk: &Redkeep, a: &InitArgs, stdin: Stdin<'_>) -> Result<Reply> {
    let password = if a.admin_password_stdin {
        Some(Secret::new(stdin.secret("--admin-password-stdin")?))
    } else {
        None
    };
    let outcome = rk.init(InitSpec {
        no_admin: a.no_admin,
        admin_email: a.admin_email.clone(),
        // The operator chose it: theirs to keep, as with `user create --password-stdin`.
        keep_password: password.is_some(),
        admin_password: password,
    })?;
    let dir = rk.dir().display().to_string();
    let place = rk.store_place();
    // A data dir (or store file) open to other users was made private: said, not silent.
    let tightened: Vec<String> = rk
        .take_tightened()
        .into_iter()
        .map(|l| l.trim_start_matches("fixed: ").to_string())
        .collect();
    if !outcome.created {
        let unchanged = if tightened.is_empty() {
            "nothing changed"
        } else {
            "the store is unchanged"
        };
        let mut lines = vec![format!("{place} is already initialised; {unchanged}")];
        lines.extend(tightened);
        return Ok(Reply::text(
            json!({"created": false, "data_dir": dir}),
            lines,
        ));
    }
    let mut lines = tightened;
    if outcome.replaced_unwritten {
        lines.push(format!(
            "replaced an empty store file left by an interrupted init ({})",
            rk.store().location()
        ));
    }
    lines.push(format!("initialised {place}"));
    let admin = outcome.admin.as_ref().map(|c| {
        lines.push(format!(
            "administrator: {} (id {})",
            c.user.email, c.user.id
        ));
        let mut v = user_json(&c.user);
        if let Some(p) = &c.password {
            v["password"] = json!(p.expose());
        }
        v
    });
    let json = json!({"created": true, "data_dir": dir, "admin": admin, "replaced_unwritten": outcome.replaced_unwritten});
    match outcome
        .admin
        .as_ref()
        .and_then(|c| Some((c.user.id, c.password.as_ref()?)))
    {
        // The generated password alone on stdout; what goes with it on stderr.
        Some((id, p)) => {
            lines.push("this password is shown once; it must be changed at first login".into());
            Ok(Reply::secret(
                json,
                vec![p.expose().to_string()],
                lines,
                super::users::unseen_password(id),
            ))
        }
        None => Ok(Reply::text(json, lines)),
    }
}

/// Arguments of `redkeep check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct CheckArgs {
    /// Rebuild every index from its records, then check. On PostgreSQL this needs the
    /// store to itself: stop the applications that have it open first.
    #[cfg_attr(feature = "cli", arg(long))]
    pub repair: bool,
}

pub fn check(rk: &Redkeep, a: &CheckArgs, feedback: &dyn Feedback) -> Result<Reply> {
    let report = {
        let _meter = feedback.start("checking", None);
        rk.check(a.repair)?
    };
    let rows = report
        .tables
        .iter()
        .map(|(name, c)| {
            vec![
                name.clone(),
                c.records.to_string(),
                c.index_entries.to_string(),
            ]
        })
        .collect();
    let mut footer: Vec<String> = report.repaired.clone();
    if report.ok {
        footer.push("ok: no problems found".into());
    } else {
        footer.push(format!("{} problem(s):", report.problems.len()));
        footer.extend(report.problems.iter().map(|p| format!("  {p}")));
    }
    let json = serde_json::to_value(&report).unwrap_or_default();
    let reply = Reply {
        json,
        human: Human::Table {
            headers: vec!["table".into(), "records".into(), "index entries".into()],
            rows,
            footer,
        },
        exit_code: 0,
        raw: false,
        failure: None,
        notes: report.notes.clone(),
        unseen: None,
    };
    Ok(if report.ok {
        reply
    } else if a.repair {
        reply.failed("the check found problems that --repair could not mend, listed in the report")
    } else {
        reply.failed("the check found problems, listed in the report")
    })
}
