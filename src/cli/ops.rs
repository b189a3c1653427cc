//! `redkeep migrate | backup | restore | export | import | reset | stats | status`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Request;
use super::render::Reply;
use crate::{Error, Redkeep, Result};

/// Migration commands.
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum MigrateCmd {
    /// The store's schema version and the pending steps.
    Status,
    /// Apply every pending step (a backup is taken first).
    Up,
}

/// Arguments of `redkeep export`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct ExportArgs {
    /// Write to this file (mode 0600) instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// A progress indicator on stderr, drawn only when stderr is a terminal.
pub struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    /// A spinner with a message; hidden unless `show`.
    pub fn spinner(show: bool, message: &str) -> Progress {
        let bar = if show {
            indicatif::ProgressBar::new_spinner()
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_message(message.to_string());
        if show {
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
        }
        Progress { bar }
    }

    /// A bar towards `total` lines; hidden unless `show`.
    pub fn bar(show: bool, total: u64, message: &str) -> Progress {
        if !show {
            return Progress::spinner(false, message);
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} lines")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_string());
        Progress { bar }
    }

    /// Sets the count of lines done.
    pub fn set(&self, n: u64) {
        self.bar.set_position(n);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

pub fn migrate(rk: &Redkeep, cmd: &MigrateCmd, progress: bool) -> Result<Reply> {
    let steps = crate::auth::migrations::MIGRATIONS;
    let current = rk.store().schema_version()?.unwrap_or(0);
    match cmd {
        MigrateCmd::Status => {
            let pending: Vec<_> = steps.iter().filter(|s| s.version > current).collect();
            let mut lines = vec![format!(
                "schema version {current}, this build writes {}",
                crate::SCHEMA_VERSION
            )];
            if pending.is_empty() {
                lines.push("up to date".into());
            }
            lines.extend(
                pending
                    .iter()
                    .map(|s| format!("pending: v{} {}", s.version, s.name)),
            );
            let json = json!({
                "current": current,
                "target": crate::SCHEMA_VERSION,
                "pending": pending.iter().map(|s| json!({"version": s.version, "name": s.name})).collect::<Vec<_>>(),
            });
            Ok(Reply::text(json, lines))
        }
        MigrateCmd::Up => {
            let _p = Progress::spinner(progress, "migrating");
            let run = rk.migrate()?;
            let mut lines: Vec<String> = run
                .applied
                .iter()
                .map(|(v, n)| format!("applied v{v} {n}"))
                .collect();
            match &run.backup {
                Some(b) => lines.push(format!("backup of the previous version: {}", b.display())),
                None => lines.push(format!(
                    "already at schema version {current}; nothing to do"
                )),
            }
            let json = json!({
                "applied": run.applied.iter().map(|(v, n)| json!({"version": v, "name": n})).collect::<Vec<_>>(),
                "backup": run.backup,
                "schema_version": rk.store().schema_version()?,
            });
            Ok(Reply::text(json, lines))
        }
    }
}

pub fn backup(rk: &Redkeep, path: &std::path::Path, progress: bool) -> Result<Reply> {
    let report = {
        let _p = Progress::spinner(progress, "backing up");
        rk.backup(path)?
    };
    let mut lines = vec![format!(
        "wrote {} ({} bytes)",
        report.path.display(),
        report.bytes
    )];
    lines.push(if report.check.ok {
        "the backup passes check".to_string()
    } else {
        format!(
            "the backup FAILS check: {}",
            report.check.problems.join("; ")
        )
    });
    let mut reply = Reply::text(
        json!({"path": report.path, "bytes": report.bytes, "ok": report.check.ok, "problems": report.check.problems}),
        lines,
    );
    reply.exit_code = u8::from(!report.check.ok);
    Ok(reply)
}

pub fn export(rk: &Redkeep, a: &ExportArgs, progress: bool) -> Result<Reply> {
    // Roughly one line a record; the bar ends at the true count.
    let total = if progress {
        rk.stats()?.tables.values().map(|t| t.records).sum::<u64>() + 1
    } else {
        0
    };
    let p = Progress::bar(progress, total, "exporting");
    let mut buf = Vec::new();
    let summary = rk.export(&mut buf, &|n| p.set(n))?;
    drop(p);
    let text = String::from_utf8(buf).map_err(|e| Error::invalid("export", e.to_string()))?;
    let json = json!({"lines": summary.lines, "records": summary.records, "output": a.output});
    let mut reply = Reply::text(json, vec![format!("exported {} lines", summary.lines)]);
    reply.raw = Some(text);
    Ok(reply)
}

pub fn import(rk: &Redkeep, req: &Request) -> Result<Reply> {
    let input = req
        .input
        .as_deref()
        .ok_or_else(|| Error::invalid("file", "import needs the export's content"))?;
    let p = Progress::bar(req.progress, input.lines().count() as u64, "importing");
    let summary = rk.import(&mut input.as_bytes(), &|n| p.set(n))?;
    drop(p);
    let total: u64 = summary.records.values().sum();
    Ok(Reply::text(
        json!({"lines": summary.lines, "records": summary.records}),
        vec![format!(
            "imported {total} records from {} lines",
            summary.lines
        )],
    ))
}

pub fn stats(rk: &Redkeep) -> Result<Reply> {
    let s = rk.stats()?;
    let rows = s
        .tables
        .iter()
        .map(|(name, t)| {
            vec![
                name.clone(),
                t.records.to_string(),
                t.index_entries.to_string(),
                t.bytes.to_string(),
            ]
        })
        .collect();
    let mut reply = Reply::table(
        serde_json::to_value(&s).unwrap_or_default(),
        &["table", "records", "index entries", "bytes"],
        rows,
    );
    if let super::render::Human::Table { footer, .. } = &mut reply.human {
        footer.push(format!(
            "file {}: {} bytes, schema version {}",
            s.path.display(),
            s.file_bytes,
            s.schema_version
        ));
    }
    Ok(reply)
}

/// `redkeep restore PATH [--force]`: runs on the files, without opening the store first.
pub fn restore(data_dir: &std::path::Path, backup: &std::path::Path, force: bool) -> Result<Reply> {
    let safety = crate::ops::restore(data_dir, backup, force)?;
    let mut lines = vec![format!(
        "restored {} from {}",
        data_dir.display(),
        backup.display()
    )];
    if let Some(s) = &safety {
        lines.push(format!("the previous store is kept at {}", s.display()));
    }
    Ok(Reply::text(
        json!({"restored": true, "from": backup, "safety_copy": safety}),
        lines,
    ))
}

/// `redkeep reset --force`.
pub fn reset(data_dir: &std::path::Path, force: bool) -> Result<Reply> {
    if !force {
        return Err(Error::Refused(
            "reset deletes every account; a backup is taken first; pass --force to go ahead".into(),
        ));
    }
    let backup = crate::ops::reset(data_dir)?;
    Ok(Reply::text(
        json!({"reset": true, "backup": backup}),
        vec![
            format!(
                "the store is empty; its previous contents are in {}",
                backup.display()
            ),
            "workspace folders are kept; `redkeep check` lists them as orphans".into(),
            "run `redkeep init` to create an administrator".into(),
        ],
    ))
}
