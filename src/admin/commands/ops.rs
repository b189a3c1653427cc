//! `redkeep migrate | backup | restore | export | import | reset | stats`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::io::{Feedback, Io};
use crate::admin::reply::Reply;
use crate::{Error, Redkeep, Result, Timestamp, ops};

/// Migration commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum MigrateCmd {
    /// The store's schema version and every step: applied, pending, reversible.
    Status,
    /// Apply every pending step (a copy of the store is taken first).
    Up,
    /// Revert steps (a copy of the store is taken first).
    Down {
        /// The schema version to go back to (default: one step down; 0: as far back as the
        /// steps go, the first version).
        #[cfg_attr(feature = "cli", arg(long))]
        to: Option<u64>,
    },
}

/// Arguments of `redkeep export`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ExportArgs {
    /// Write to this new file (mode 0600) instead of stdout.
    #[cfg_attr(feature = "cli", arg(short = 'o', long = "output"))]
    pub output: Option<PathBuf>,
}

fn steps_json(run: &crate::store::MigrationRun) -> serde_json::Value {
    json!(
        run.applied
            .iter()
            .map(|(v, n)| json!({"version": v, "name": n}))
            .collect::<Vec<_>>()
    )
}

/// A migration that meets a record it cannot read stops there; `check`, which reads records
/// as today's, may find nothing wrong with it, so the way out is a salvage.
fn unreadable_by_migration(e: Error) -> Error {
    match e {
        Error::Corrupt { table, key, reason } => Error::denied(format!(
            "`migrate up` stopped at record {key} of table {table}, which it cannot read as \
             the store's schema version wrote it ({reason}): the record is damaged, or the \
             recorded schema version is; `redkeep salvage --to NEW_DIR` copies what reads into \
             a new data dir and sets aside what does not"
        )),
        e => e,
    }
}

pub fn migrate(rk: &Redkeep, cmd: &MigrateCmd, feedback: &dyn Feedback) -> Result<Reply> {
    match cmd {
        MigrateCmd::Status => {
            let s = rk.migration_status()?;
            let mut lines = vec![format!(
                "schema version {}, this build writes {}",
                s.current, s.target
            )];
            for step in &s.steps {
                lines.push(format!(
                    "{} v{} {}{}",
                    if step.applied { "applied:" } else { "pending:" },
                    step.version,
                    step.name,
                    if step.reversible {
                        " (reversible)"
                    } else {
                        " (cannot be reversed)"
                    }
                ));
            }
            if s.current >= s.target {
                lines.push("up to date".into());
            }
            let mut json = serde_json::to_value(&s).unwrap_or_default();
            json["pending"] = json!(
                s.steps
                    .iter()
                    .filter(|s| !s.applied)
                    .map(|s| json!({"version": s.version, "name": s.name, "reversible": s.reversible}))
                    .collect::<Vec<_>>()
            );
            Ok(Reply::text(json, lines))
        }
        MigrateCmd::Up => {
            let run = {
                let _meter = feedback.start("migrating", None);
                rk.migrate().map_err(unreadable_by_migration)?
            };
            let mut lines: Vec<String> = run
                .applied
                .iter()
                .map(|(v, n)| format!("applied v{v} {n}"))
                .collect();
            match &run.backup {
                Some(b) => lines.push(format!(
                    "copy of the store as it was before this run: {}",
                    b.display()
                )),
                None => lines.push(format!(
                    "already at schema version {}; nothing to do",
                    run.version
                )),
            }
            Ok(Reply::text(
                json!({"applied": steps_json(&run), "backup": run.backup.as_ref().map(|b| b.display().to_string()), "schema_version": run.version}),
                lines,
            ))
        }
        MigrateCmd::Down { to } => {
            let run = {
                let _meter = feedback.start("reverting", None);
                rk.migrate_down(*to)?
            };
            let mut lines: Vec<String> = run
                .applied
                .iter()
                .map(|(v, n)| format!("reverted v{v} {n}"))
                .collect();
            if let Some(b) = &run.backup {
                lines.push(format!(
                    "copy of the store as it was before this run: {}",
                    b.display()
                ));
            }
            lines.push(format!(
                "the store is at schema version {}; use a redkeep of that version, or `redkeep migrate up`",
                run.version
            ));
            Ok(Reply::text(
                json!({"reverted": steps_json(&run), "backup": run.backup.as_ref().map(|b| b.display().to_string()), "schema_version": run.version}),
                lines,
            ))
        }
    }
}

pub fn backup(rk: &Redkeep, path: &std::path::Path, feedback: &dyn Feedback) -> Result<Reply> {
    let report = {
        let _meter = feedback.start("backing up", None);
        ops::backup(rk, path)?
    };
    let mut lines = vec![format!(
        "wrote {} ({} bytes): the store (schema version {}) and {} workspace folder(s), {} file(s)",
        report.path.display(),
        report.bytes,
        report.schema_version,
        report.folders,
        report.files
    )];
    // `users/{id}`: a whole folder, each with its own reason; deeper: a file in a folder.
    let files_left: Vec<_> = report
        .not_kept
        .iter()
        .filter(|p| p.components().count() > 2)
        .collect();
    if !report.folders_not_kept.is_empty() {
        let mut shown: Vec<String> = report
            .folders_not_kept
            .iter()
            .take(3)
            .map(|(p, why)| format!("{}: {why}", p.display()))
            .collect();
        if report.folders_not_kept.len() > 3 {
            shown.push(format!("and {} more", report.folders_not_kept.len() - 3));
        }
        lines.push(format!(
            "not kept: {} workspace folder(s) ({}); copy what matters by hand",
            report.folders_not_kept.len(),
            shown.join("; ")
        ));
    }
    if !files_left.is_empty() {
        let shown: Vec<_> = files_left.iter().map(|p| p.display()).collect();
        lines.push(format!(
            "not kept: {} symlink(s) or special file(s) in workspace folders ({}); copy what \
             they point at by hand if it matters",
            files_left.len(),
            crate::top::first_few(&shown, 3)
        ));
    }
    if !report.leftovers_removed.is_empty() {
        let shown: Vec<_> = report
            .leftovers_removed
            .iter()
            .map(|p| p.display())
            .collect();
        lines.push(format!(
            "removed {} redkeep temp entr(ies) an interrupted operation left beside it ({})",
            report.leftovers_removed.len(),
            crate::top::first_few(&shown, 3)
        ));
    }
    if !report.leftovers_kept.is_empty() {
        let shown: Vec<_> = report.leftovers_kept.iter().map(|p| p.display()).collect();
        lines.push(format!(
            "left {} redkeep temp entr(ies) beside it ({}): under an hour old or in use by a \
             running operation; a later backup there removes them once neither",
            report.leftovers_kept.len(),
            crate::top::first_few(&shown, 3)
        ));
    }
    for (path, why) in &report.leftovers_failed {
        lines.push(format!(
            "could not remove {}, a redkeep temp entry an interrupted operation left ({why}); \
             it may hold a copy of the store: delete it",
            path.display()
        ));
    }
    lines.push(
        if report.check.ok && report.schema_version != crate::SCHEMA_VERSION {
            // Only the file's pages were checked: the records are of another schema.
            format!(
                "the file in the backup passes redb's page check; its records (schema version {}) \
             are checked once a store of it is at version {} (`migrate up`, then `check`)",
                report.schema_version,
                crate::SCHEMA_VERSION
            )
        } else if report.check.ok {
            "the store in the backup passes check".to_string()
        } else {
            format!(
                "the store in the backup FAILS check: {}",
                report.check.problems.join("; ")
            )
        },
    );
    let mut json = serde_json::to_value(&report).unwrap_or_default();
    json["ok"] = json!(report.check.ok);
    json["problems"] = json!(report.check.problems);
    let reply = Reply::text(json, lines);
    Ok(if report.check.ok {
        reply
    } else {
        reply.failed("the backup was written, but the store in it fails check, as the report says")
    })
}

pub fn export(rk: &Redkeep, io: Io<'_>) -> Result<Reply> {
    let total = ops::stats(rk)?
        .tables
        .values()
        .map(|t| t.records)
        .sum::<u64>()
        + 1;
    let meter = io.feedback.start("exporting", Some(total));
    let summary = ops::export(rk, io.output, &|n| meter.set(n))?;
    drop(meter);
    let records: u64 = summary.records.values().sum();
    let mut lines = vec![format!(
        "exported {records} records, {} workspace(s) and {} piece(s) in {} lines",
        summary.workspaces, summary.pieces, summary.lines
    )];
    if !summary.left_out.is_empty() {
        let shown: Vec<_> = summary.left_out.iter().map(|p| p.display()).collect();
        lines.push(format!(
            "left out {} entr{} of the workspace folders ({}): files that are neither \
             documents nor pieces (`redkeep backup` keeps the regular files among them), and \
             what in `users/` is no user's folder",
            shown.len(),
            if shown.len() == 1 { "y" } else { "ies" },
            crate::top::first_few(&shown, 3)
        ));
    }
    let mut reply = Reply::text(serde_json::to_value(&summary).unwrap_or_default(), lines);
    reply.raw = true;
    Ok(reply)
}

pub fn import(rk: &Redkeep, io: Io<'_>) -> Result<Reply> {
    let meter = io.feedback.start("importing", None);
    let summary = ops::import(rk, io.input, &|n| meter.set(n))?;
    drop(meter);
    let total: u64 = summary.records.values().sum();
    let mut lines = vec![format!(
        "imported {total} records, {} workspace(s) and {} piece(s) from {} lines",
        summary.workspaces, summary.pieces, summary.lines
    )];
    if let Some(admin) = &summary.replaced_admin {
        lines.push(format!(
            "the administrator `redkeep init` made ({admin}) was replaced with the rest of what \
             init made: the export's accounts are the store's now"
        ));
    }
    if !rk.users().admins(usize::MAX)?.iter().any(|u| u.is_active) {
        lines.push(
            "no imported account is an active administrator; `redkeep role grant USER admin` \
             makes one"
                .into(),
        );
    }
    Ok(Reply::text(
        serde_json::to_value(&summary).unwrap_or_default(),
        lines,
    ))
}

pub fn stats(rk: &Redkeep) -> Result<Reply> {
    let s = ops::stats(rk)?;
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
    Ok(Reply::table(
        serde_json::to_value(&s).unwrap_or_default(),
        &["table", "records", "index entries", "bytes"],
        rows,
    )
    .footer(format!(
        "{} {}: {} bytes, schema version {}, engine {}",
        if s.engine == "redb" { "file" } else { "store" },
        s.path.display(),
        s.file_bytes,
        s.schema_version,
        s.engine
    )))
}

/// Arguments of `adopt`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct AdoptArgs {
    /// The old database: sqlite:PATH.
    #[cfg_attr(feature = "cli", arg(long, value_name = "sqlite:PATH"))]
    pub from: String,
    /// A built-in mapping: chat, code-monet, puntini or tenancy.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "NAME", required_unless_present = "map")
    )]
    pub preset: Option<String>,
    /// A mapping file (TOML) for any other schema; with --preset, its sections replace the
    /// preset's.
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
    pub map: Option<PathBuf>,
    /// The old workspace folders (the folder that holds users/); they are copied.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub workspaces: Option<PathBuf>,
    /// Create nothing: list what would be created and every row that cannot be taken.
    #[cfg_attr(feature = "cli", arg(long))]
    pub dry_run: bool,
    /// An account whose old password hash redkeep cannot verify (NULL, empty, plain text,
    /// an unread form): refuse (the row is a problem; the default) or reset (adopted with no
    /// password that logs in and named in the report; they set one through a password reset
    /// or `user set-password`).
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "refuse|reset",
            default_value = "refuse",
            value_parser = ["refuse", "reset"]
        )
    )]
    #[serde(default)]
    pub accounts_without_password: Option<String>,
    /// Leave out the old workspace files (and avatars) that cannot be taken as they are
    /// (not JSON, empty, numbered outside the gallery's range, over --max-doc-bytes, a
    /// symlink), each named in the report, rather than refuse the adoption. The old tree is
    /// only read.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub leave_out_bad_files: bool,
}

/// The mapping `adopt` uses: the preset, with the sections of the map file over it.
#[cfg(feature = "adopt")]
fn adopt_mapping(a: &AdoptArgs) -> Result<crate::ops::adopt::Mapping> {
    use crate::ops::adopt::Mapping;
    let file = match &a.map {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| crate::Error::io(format!("reading {}", path.display()), e))?;
            Some((path, text))
        }
        None => None,
    };
    match (&a.preset, file) {
        (Some(p), None) => Mapping::preset(p),
        (None, Some((_, text))) => Mapping::parse(&text),
        (Some(p), Some((path, text))) => {
            Mapping::preset(p)?;
            let table = |what: &str, text: &str| {
                toml::from_str::<toml::Table>(text)
                    .map_err(|e| crate::Error::invalid("mapping", format!("{what}: {e}")))
            };
            let preset = crate::ops::adopt::PRESETS
                .iter()
                .find(|(n, _)| n == p)
                .map_or("", |(_, t)| *t);
            let mut merged = table(p, preset)?;
            merged.extend(table(&path.display().to_string(), &text)?);
            let text = toml::to_string(&merged)
                .map_err(|e| crate::Error::invalid("mapping", e.to_string()))?;
            Mapping::parse(&text)
        }
        (None, None) => Err(crate::Error::invalid(
            "adopt",
            "give --preset NAME or --map FILE",
        )),
    }
}

/// `redkeep adopt --from sqlite:PATH --preset NAME [--map FILE] [--workspaces DIR]
/// [--dry-run]`: runs on the files, without a store.
///
/// # Errors
/// As [`crate::ops::adopt::adopt`]; `InvalidInput` for a bad mapping.
#[cfg(feature = "adopt")]
pub fn adopt(data_dir: &std::path::Path, a: &AdoptArgs, options: crate::Options) -> Result<Reply> {
    use crate::ops::adopt::{AdoptSpec, WithoutPassword};
    let accounts_without_password = match a.accounts_without_password.as_deref() {
        None | Some("refuse") => WithoutPassword::Refuse,
        Some("reset") => WithoutPassword::Reset,
        Some(other) => {
            return Err(crate::Error::invalid(
                "accounts-without-password",
                format!("{other:?} is neither refuse nor reset"),
            ));
        }
    };
    let spec = AdoptSpec {
        from: a.from.clone(),
        mapping: adopt_mapping(a)?,
        workspaces: a.workspaces.clone(),
        dry_run: a.dry_run,
        accounts_without_password,
        leave_out_bad_files: a.leave_out_bad_files,
    };
    let r = crate::ops::adopt::adopt(data_dir, &spec, options)?;
    let c = &r.counts;
    let verb = if r.adopted {
        "adopted"
    } else if r.problems.is_empty() {
        "would adopt"
    } else {
        "cannot adopt"
    };
    let without = if c.without_password > 0 {
        format!(" ({} without a password)", c.without_password)
    } else {
        String::new()
    };
    let mut lines = vec![format!(
        "{verb}: {} users{without}, {} orgs, {} memberships, {} roles, {} role grants, {} invites, {} agent sessions, {} avatars, {} workspaces, {} pieces",
        c.users,
        c.orgs,
        c.memberships,
        c.roles,
        c.role_grants,
        c.invites,
        c.agent_sessions,
        c.avatars,
        c.workspaces,
        c.pieces
    )];
    if c.left_out > 0 {
        lines[0].push_str(&format!(
            ", {} file(s) left out (named in the notes)",
            c.left_out
        ));
    }
    lines.extend(r.notes.iter().map(|n| format!("note: {n}")));
    lines.extend(r.problems.iter().map(|p| format!("problem: {p}")));
    let failed_check = r
        .problems
        .iter()
        .filter(|p| p.starts_with("check: "))
        .count();
    if failed_check > 0 {
        lines.push(format!(
            "the adopted store failed {failed_check} check(s), so it was taken away again; \
             nothing was adopted (fix what each check problem above names, in the old data or \
             the data dir, then adopt again)"
        ));
    } else if !r.problems.is_empty() {
        let files = r
            .problems
            .iter()
            .filter(|p| p.starts_with("workspace folder "))
            .count();
        let rows = r.problems.len() - files;
        let mut fix = Vec::new();
        if rows > 0 {
            fix.push(format!(
                "{rows} row(s) cannot be taken: fix them in the database or the mapping"
            ));
        }
        if files > 0 {
            fix.push(format!(
                "{files} file(s) of the old workspaces cannot be taken: fix or move them (the \
                 old tree is only read), or leave them out with --leave-out-bad-files"
            ));
        }
        lines.push(format!("{}; nothing was adopted", fix.join("; ")));
    } else if r.adopted {
        lines.push(format!(
            "the new store is in {}; `redkeep check` is clean",
            data_dir.display()
        ));
    }
    let reply = Reply::text(serde_json::to_value(&r).unwrap_or_default(), lines);
    Ok(if failed_check > 0 {
        reply.failed("nothing was adopted: the adopted store failed check, as listed in the report")
    } else if !r.problems.is_empty() && r.dry_run {
        reply.failed("the dry run found rows or files that cannot be taken, listed in the report")
    } else if !r.problems.is_empty() {
        reply.failed(
            "nothing was adopted: some rows or files cannot be taken, as listed in the report",
        )
    } else {
        reply
    })
}

/// `redkeep salvage --to DIR`: runs on the files, without opening the damaged store.
///
/// # Errors
/// As [`crate::ops::salvage`].
pub fn salvage(
    data_dir: &std::path::Path,
    to: &std::path::Path,
    options: crate::Options,
    now: Timestamp,
) -> Result<Reply> {
    let r = ops::salvage(data_dir, to, options, now)?;
    let mut lines = vec![format!(
        "salvaged {} into {}",
        data_dir.display(),
        r.to.display()
    )];
    for (name, t) in &r.tables {
        let skipped = if t.skipped.is_empty() {
            String::new()
        } else {
            format!("; could not read {}", t.skipped.join(", "))
        };
        // Records set aside or dropped are read, but not in the copy.
        let kept = if t.kept < t.read && name != "meta" {
            format!(", {} in the copy", t.kept)
        } else {
            String::new()
        };
        lines.push(format!("  {name}: {} read{kept}{skipped}", t.read));
    }
    lines.push(format!(
        "  {} workspace folder(s) and {} trash entr{} copied",
        r.folders,
        r.trash,
        if r.trash == 1 { "y" } else { "ies" }
    ));
    lines.extend(r.left_behind.iter().map(|l| format!("  left behind: {l}")));
    lines.extend(r.changes.iter().map(|c| format!("  changed: {c}")));
    lines.extend(r.suspects.iter().map(|p| format!("  check by hand: {p}")));
    lines.extend(r.problems.iter().map(|p| format!("  problem: {p}")));
    if r.problems.is_empty() && r.suspects.is_empty() {
        lines.push("`redkeep check` is clean on the copy".into());
    } else if r.problems.is_empty() {
        lines.push(format!(
            "`redkeep check` is clean on the copy, but {} record(s) in it need checking by hand (above)",
            r.suspects.len()
        ));
    }
    let reply = Reply::text(serde_json::to_value(&r).unwrap_or_default(), lines);
    Ok(if !r.problems.is_empty() {
        reply.failed("the salvaged copy has problems, listed in the report")
    } else if !r.suspects.is_empty() {
        reply.failed(
            "some records were set aside or may be damaged; check each one the report lists",
        )
    } else {
        reply
    })
}

/// `redkeep restore PATH [--force]`: runs on the files, without opening the store first.
///
/// # Errors
/// As [`crate::ops::restore`].
pub fn restore(
    data_dir: &std::path::Path,
    backup: &std::path::Path,
    force: bool,
    now: Timestamp,
) -> Result<Reply> {
    restore_store(data_dir, None, backup, force, now)
}

/// `redkeep restore` into the store at `store_url` (the redb file of the data dir when
/// `None`).
///
/// # Errors
/// As [`ops::restore_store`].
pub fn restore_store(
    data_dir: &std::path::Path,
    store_url: Option<&str>,
    backup: &std::path::Path,
    force: bool,
    now: Timestamp,
) -> Result<Reply> {
    restore_store_with_folders(data_dir, store_url, backup, None, force, now)
}

/// Refuses an export (JSON lines) given to `restore`, which takes a backup: it is loaded
/// with `import`.
fn refuse_export(path: &std::path::Path) -> Result<()> {
    use std::io::Read;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(64).read_to_end(&mut head));
    let text = String::from_utf8_lossy(&head);
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if read.is_ok() && compact.starts_with("{\"redkeep_export\"") {
        return Err(Error::invalid(
            "path",
            format!(
                "{} is an export (JSON lines), not a backup: load it into an empty store with \
                 `redkeep import {}`",
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

/// `redkeep restore [--folders TRASH_ENTRY]` into the store at `store_url` (the redb file of
/// the data dir when `None`).
///
/// # Errors
/// `InvalidInput` for an export (JSON lines); as [`ops::restore_store_with_folders`].
pub fn restore_store_with_folders(
    data_dir: &std::path::Path,
    store_url: Option<&str>,
    backup: &std::path::Path,
    folders: Option<&std::path::Path>,
    force: bool,
    now: Timestamp,
) -> Result<Reply> {
    refuse_export(backup)?;
    let r = ops::restore_store_with_folders(data_dir, store_url, backup, folders, force, now)?;
    let mut lines = vec![format!(
        "restored {} from {} (schema version {})",
        data_dir.display(),
        backup.display(),
        r.schema_version
    )];
    let users_dir = data_dir.join(crate::WORKSPACES_DIR).join("users");
    let no_folders = std::fs::read_dir(&users_dir).map_or(true, |mut d| d.next().is_none());
    match r.folders {
        Some(n) => lines.push(format!("{n} workspace folder(s) restored")),
        None if no_folders => lines.push(
            "the backup holds only the store, and this data dir holds no workspace folders"
                .into(),
        ),
        None => lines.push(
            "the backup holds only the store; the workspace folders were kept (folders whose owner is not in the restored store are never served; `redkeep check` lists them)"
                .into(),
        ),
    }
    match (&r.safety_copy, &r.previous_damaged) {
        (Some(s), Some(why)) => lines.push(format!(
            "the previous store could not be opened ({why}); its bytes are kept at {} (`redkeep salvage` reads what it can of them)",
            s.display()
        )),
        (Some(s), None) => lines.push(format!("the previous store is kept at {}", s.display())),
        _ => {}
    }
    if let Some(s) = &r.folders_safety {
        let none_before = std::fs::read_dir(s).is_ok_and(|mut d| d.next().is_none());
        lines.push(if none_before {
            format!(
                "there were no workspace folders before; the undo below puts back the empty trash entry {} (no folders)",
                s.display()
            )
        } else {
            format!("the previous workspace folders are kept at {}", s.display())
        });
    }
    let undo = match (&r.safety_copy, &r.folders_safety, r.folders) {
        // Nothing to go back to: the previous store could not be opened.
        _ if r.previous_damaged.is_some() => None,
        (Some(store), Some(folders), _) => Some((Some(folders.as_path()), store)),
        // A plain store file: the folders stayed, so the store alone goes back.
        (Some(store), None, None) => Some((None, store)),
        _ => None,
    };
    for t in &r.folders_in_trash {
        let users: Vec<String> = t.users.iter().map(u64::to_string).collect();
        lines.push(format!(
            "user(s) {} of the restored store have no folder here; theirs are in {} (set aside \
             by an earlier reset or restore): `{}` puts that entry's folders in place of all \
             the folders here (which go to the trash, and can be brought back the same way)",
            users.join(", "),
            t.entry.display(),
            crate::handle::undo_invocation(data_dir, Some(&t.entry), backup)
        ));
    }
    let mut json = serde_json::to_value(&r).unwrap_or_default();
    if let Some((folders, store)) = undo {
        lines.push(crate::handle::undo_command(
            data_dir, store_url, folders, store,
        ));
        set_undo(
            &mut json,
            store_url,
            crate::handle::undo_invocation(data_dir, folders, store),
        );
    }
    let migrate_up = r.schema_version < crate::SCHEMA_VERSION;
    if migrate_up {
        lines.push("run `redkeep migrate up` before using it".into());
    }
    json["migrate_up_needed"] = migrate_up.into();
    let warning = "logins, API keys and passwords are as they were when the backup was made: \
                   any revoked or changed since work again; `redkeep session revoke --all` ends \
                   every login, `redkeep apikey list` shows the keys";
    lines.push(warning.into());
    json["warning"] = warning.into();
    Ok(Reply::text(json, lines))
}

/// `redkeep reset --force`.
///
/// # Errors
/// `Denied` without `force`; otherwise as [`crate::ops::reset()`].
pub fn reset(data_dir: &std::path::Path, force: bool, now: Timestamp) -> Result<Reply> {
    reset_store(data_dir, None, force, now)
}

/// `redkeep reset` of the store at `store_url` (the redb file of the data dir when `None`).
///
/// # Errors
/// As [`ops::reset_store`].
pub fn reset_store(
    data_dir: &std::path::Path,
    store_url: Option<&str>,
    force: bool,
    now: Timestamp,
) -> Result<Reply> {
    if !force {
        return Err(crate::Error::denied(
            "reset deletes every account and moves every workspace folder to the trash; a backup of the store is taken first; pass --force to go ahead",
        ));
    }
    let r = ops::reset_store(data_dir, store_url, now)?;
    let mut lines = vec![format!(
        "the store is empty; its previous contents are in {}",
        r.backup.display()
    )];
    if let Some(f) = &r.folders {
        lines.push(format!(
            "the workspace folders were moved to {}",
            f.display()
        ));
    }
    lines.push("run `redkeep init` to create an administrator".into());
    lines.push(crate::handle::undo_command(
        data_dir,
        store_url,
        r.folders.as_deref(),
        &r.backup,
    ));
    let mut json = serde_json::to_value(&r).unwrap_or_default();
    set_undo(
        &mut json,
        store_url,
        crate::handle::undo_invocation(data_dir, r.folders.as_deref(), &r.backup),
    );
    Ok(Reply::text(json, lines))
}

/// Puts the undo `command` in a command's JSON: as `undo`, the command itself for a script
/// to run, when the store is the data dir's file. A store on a server needs the same
/// `--store`, which the command leaves out (its URL may hold a password): run as it is, it
/// would restore into a new file in the data dir. So it is `undo_without_store` then, beside
/// `undo_needs_same_store`, and no `undo` a script could run by mistake.
fn set_undo(json: &mut serde_json::Value, store_url: Option<&str>, command: String) {
    if store_url.is_some() {
        json["undo_without_store"] = command.into();
        json["undo_needs_same_store"] = true.into();
    } else {
        json["undo"] = command.into();
    }
}

/// `redkeep move --to TARGET`.
///
/// # Errors
/// As [`ops::move_store`].
pub fn move_store(
    data_dir: &std::path::Path,
    store_url: Option<&str>,
    to: &str,
    options: crate::Options,
    with_problems: bool,
) -> Result<Reply> {
    let r = if with_problems {
        ops::move_store_with_problems(data_dir, store_url, to, options)?
    } else {
        ops::move_store(data_dir, store_url, to, options)?
    };
    // Index key spaces (`i:…`) are no tables to an operator: counted as index entries.
    let (mut tables, mut records, mut index_entries) = (0_u64, 0_u64, 0_u64);
    for (name, n) in &r.tables {
        if name.starts_with("i:") {
            index_entries += n;
        } else {
            tables += 1;
            records += n;
        }
    }
    let mut lines = vec![format!(
        "copied {} to {}: {tables} tables, {records} records and {index_entries} index \
         entries, counts equal in both",
        r.from, r.to
    )];
    if r.folders > 0 {
        lines.push(format!("{} workspace folder(s) copied", r.folders));
    }
    if r.trash_entries > 0 {
        lines.push(format!(
            "{} trash entr(ies) copied (`redkeep workspace trash` lists them)",
            r.trash_entries
        ));
    }
    if !r.not_kept.is_empty() {
        let shown: Vec<_> = r.not_kept.iter().map(|p| p.display()).collect();
        lines.push(format!(
            "not copied: {} entr(ies) of the workspace folders ({}): symlinks, special files \
             and entries of `users/` no user id names; redkeep never follows a symlink: copy \
             what matters by hand, then run `redkeep check --repair` on the target",
            r.not_kept.len(),
            crate::top::first_few(&shown, 3)
        ));
    }
    if let Some(kept) = &r.source_kept_as {
        lines.push(format!(
            "the old store file was renamed to {} (kept, not deleted): the data dir's folders \
             now belong to the store on the server, so this data dir opens only with \
             `--store URL` (or REDKEEP_STORE_URL); without it, commands refuse and say where \
             the store went",
            kept.display()
        ));
    }
    if r.source_marked_moved {
        lines.push(format!(
            "the store on {} is marked as moved (kept, not emptied): the data dir's folders \
             now belong to {}, so every command on the old store refuses and says where it \
             went; drop it once it is not needed",
            r.from, r.to
        ));
    }
    if r.source_kept_as.is_none() && !r.source_marked_moved {
        lines.push(
            "the source is unchanged: point the application at the target, then remove the \
             source once it is not needed"
                .into(),
        );
    }
    if r.check.ok {
        lines.push("`redkeep check` is clean on the target".into());
    } else {
        let new = r
            .check
            .problems
            .iter()
            .filter(|p| !r.carried_over.contains(p));
        lines.extend(new.map(|p| format!("  problem: {p}")));
    }
    if !r.carried_over.is_empty() {
        lines.push(format!(
            "{} problem(s) the store had before the move were carried over unchanged (as \
             --with-problems asked); `redkeep check` on the target lists them:",
            r.carried_over.len()
        ));
        lines.extend(
            r.carried_over
                .iter()
                .map(|p| format!("  carried over: {p}")),
        );
    }
    let mut json = serde_json::to_value(&r).unwrap_or_default();
    json["records"] = records.into();
    json["index_entries"] = index_entries.into();
    let reply = Reply::text(json, lines);
    Ok(if r.copy_sound() {
        reply
    } else {
        reply.failed(
            "the store was moved, but the copy fails check with problems the source did not \
             have, as the report says",
        )
    })
}
