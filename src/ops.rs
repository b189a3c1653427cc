//! Operations on a whole store: backup, restore, export and import as JSON lines, reset and
//! statistics.
//!
//! Backups are logical copies taken from one read snapshot, so other processes may keep
//! writing. Restore and reset replace the whole store and need it to be free (no application
//! holding it).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::users::User;
use crate::error::{Error, Result};
use crate::handle::{SCHEMA_VERSION, STORE_FILE, check_store};
use crate::store::{CheckReport, Meta, Mode, Store, StoreOptions, TableStats};
use crate::{Redkeep, fsutil};

/// The export format's version, in the first line.
pub const EXPORT_FORMAT: u64 = 1;

/// What a backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The backup file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The check of the backup file.
    pub check: CheckReport,
}

/// Sizes of a store.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Per table.
    pub tables: BTreeMap<String, TableStats>,
    /// The store file's size in bytes.
    pub file_bytes: u64,
    /// The store file.
    pub path: PathBuf,
    /// Its schema version.
    pub schema_version: u64,
}

/// What an import or export handled.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransferSummary {
    /// Records per table.
    pub records: BTreeMap<String, u64>,
    /// Lines read or written.
    pub lines: u64,
}

fn open_file_store(path: &Path, mode: Mode) -> Result<Store> {
    Store::open(
        path,
        &StoreOptions {
            mode,
            create: false,
            schema_version: SCHEMA_VERSION,
            allow_outdated: true,
            ..StoreOptions::default()
        },
    )
}

fn unix_suffix() -> i64 {
    crate::clock::unix_now()
}

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    db.with_file_name(name)
}

/// Opens a backup (or any store file) and checks it, without changing it: redb may repair a
/// file it opens, so the check runs on a private copy.
///
/// # Errors
/// `Storage` when it is not a readable redb file (truncated, corrupt); `NewerSchema`.
pub fn check_file(path: &Path) -> Result<CheckReport> {
    if !path.is_file() {
        return Err(Error::not_found(format!("file {}", path.display())));
    }
    let tmp = fsutil::private_temp_in(&std::env::temp_dir())?;
    std::fs::copy(path, tmp.path())
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    check_in_place(tmp.path())
}

fn check_in_place(path: &Path) -> Result<CheckReport> {
    check_store(&open_file_store(path, Mode::Exclusive)?, false)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename), mode 0600: for exports and
/// other files that hold account data.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fsutil::write_private(path, bytes)
}

impl Redkeep {
    /// Writes a consistent snapshot of the whole store to `dest` (a new file, 0600) and checks
    /// the result. Other processes may keep writing meanwhile.
    pub fn backup(&self, dest: &Path) -> Result<BackupReport> {
        self.store().copy_to(dest)?;
        let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        // The copy is ours and new: check it where it is.
        let check = check_in_place(dest)?;
        Ok(BackupReport {
            path: dest.to_path_buf(),
            bytes,
            check,
        })
    }

    /// Records, index entries and bytes per table, and the file size.
    pub fn stats(&self) -> Result<Stats> {
        let tables = self.store().read(|tx| {
            let mut out = BTreeMap::new();
            for t in Self::tables() {
                out.insert(t.name().to_string(), t.stats(tx)?);
            }
            Ok(out)
        })?;
        let path = self.store().path().to_path_buf();
        Ok(Stats {
            tables,
            file_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            schema_version: self.store().schema_version()?.unwrap_or(SCHEMA_VERSION),
            path,
        })
    }

    /// Writes every record, sequence and metadata entry as JSON lines, from one snapshot, in
    /// a fixed order (so exporting the same data twice gives the same bytes). Calls
    /// `progress` with the number of lines written so far.
    pub fn export(&self, out: &mut dyn Write, progress: &dyn Fn(u64)) -> Result<TransferSummary> {
        let mut summary = TransferSummary::default();
        let lines = self.store().read(|tx| {
            let mut lines = vec![json!({"redkeep_export": EXPORT_FORMAT, "schema_version": tx.schema_version()?.unwrap_or(SCHEMA_VERSION)})];
            for t in Self::tables() {
                let records = t.export_json(tx)?;
                summary.records.insert(t.name().to_string(), records.len() as u64);
                lines.extend(records.into_iter().map(|r| json!({"table": t.name(), "record": r})));
            }
            for (table, value) in tx.sequences()? {
                lines.push(json!({"sequence": table, "value": value}));
            }
            for (key, value) in tx.meta_entries()? {
                lines.push(json!({"meta": key, "value": STANDARD.encode(value)}));
            }
            Ok(lines)
        })?;
        for line in lines {
            let text = serde_json::to_string(&line)
                .map_err(|e| Error::invalid("export", e.to_string()))?;
            writeln!(out, "{text}").map_err(|e| Error::io("writing the export", e))?;
            summary.lines += 1;
            if summary.lines % 1000 == 0 {
                progress(summary.lines);
            }
        }
        out.flush()
            .map_err(|e| Error::io("writing the export", e))?;
        progress(summary.lines);
        Ok(summary)
    }

    /// Reads an export and replaces the store's contents with it, in one transaction. Every
    /// line is validated first; a bad one is reported by number and nothing is written. The
    /// store must be empty or fresh from `init` (at most its administrator).
    pub fn import(
        &self,
        input: &mut dyn BufRead,
        progress: &dyn Fn(u64),
    ) -> Result<TransferSummary> {
        let tables = Self::tables();
        let by_name: BTreeMap<&str, usize> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name(), i))
            .collect();
        let mut records: Vec<(usize, Value)> = Vec::new();
        let mut sequences = Vec::new();
        let mut metas = Vec::new();
        let mut summary = TransferSummary::default();
        let mut header = false;
        for (i, line) in input.lines().enumerate() {
            let n = i + 1;
            let bad = |why: String| Error::invalid("import", format!("line {n}: {why}"));
            let line = line.map_err(|e| Error::io(format!("reading line {n}"), e))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(&line).map_err(|e| bad(format!("not JSON ({e})")))?;
            summary.lines += 1;
            if !header {
                let version = v.get("schema_version").and_then(Value::as_u64);
                if v.get("redkeep_export").and_then(Value::as_u64) != Some(EXPORT_FORMAT) {
                    return Err(bad(
                        "the first line must be the redkeep export header".into()
                    ));
                }
                if version != Some(SCHEMA_VERSION) {
                    return Err(bad(format!(
                        "the export has schema version {version:?}; this build imports version {SCHEMA_VERSION} (migrate the source first)"
                    )));
                }
                header = true;
                continue;
            }
            if let (Some(table), Some(record)) =
                (v.get("table").and_then(Value::as_str), v.get("record"))
            {
                let idx = *by_name
                    .get(table)
                    .ok_or_else(|| bad(format!("unknown table {table:?}")))?;
                tables[idx].validate_json(record).map_err(bad)?;
                *summary.records.entry(table.to_string()).or_default() += 1;
                records.push((idx, record.clone()));
            } else if let (Some(seq), Some(value)) = (
                v.get("sequence").and_then(Value::as_str),
                v.get("value").and_then(Value::as_u64),
            ) {
                sequences.push((seq.to_string(), value));
            } else if let (Some(key), Some(value)) = (
                v.get("meta").and_then(Value::as_str),
                v.get("value").and_then(Value::as_str),
            ) {
                let bytes = STANDARD
                    .decode(value)
                    .map_err(|e| bad(format!("meta value is not base64 ({e})")))?;
                metas.push((key.to_string(), bytes));
            } else {
                return Err(bad(
                    "expected a table record, a sequence or a meta line".into()
                ));
            }
            if summary.lines % 1000 == 0 {
                progress(summary.lines);
            }
        }
        if !header {
            return Err(Error::invalid(
                "import",
                "the input is empty; expected a redkeep export",
            ));
        }
        self.store().write(|tx| {
            let users = tx.table::<User>().all()?;
            let fresh = users.len() <= 1 && users.iter().all(|u| u.is_admin);
            use crate::auth::{agents::AgentSession, api_keys::ApiKey, invites::Invite, sessions::Session};
            let busy = [
                tx.table::<Invite>().count()?,
                tx.table::<Session>().count()?,
                tx.table::<ApiKey>().count()?,
                tx.table::<AgentSession>().count()?,
            ];
            if !fresh || busy.iter().any(|&n| n > 0) {
                return Err(Error::Refused(
                    "the store holds data; import needs an empty store or one fresh from `redkeep init` (see `redkeep reset`)".into(),
                ));
            }
            for t in &tables {
                t.clear(tx)?;
            }
            for (idx, record) in &records {
                tables[*idx].import_json(tx, record)?;
            }
            for (table, value) in &sequences {
                tx.set_sequence(table, *value)?;
            }
            for (key, value) in &metas {
                tx.set_meta(key, value)?;
            }
            Ok(())
        })?;
        // Every imported user gets a workspace folder (existing folders are kept as they are).
        for id in self.store().read(|tx| tx.table::<User>().keys())? {
            self.workspaces().create(id)?;
        }
        progress(summary.lines);
        Ok(summary)
    }
}

/// Replaces the store of `data_dir` with the backup at `backup`: the backup is checked first,
/// a safety copy of the current store is kept (`redkeep.redb.pre-restore-<time>.bak`), and the
/// file is swapped atomically. An existing store is only replaced with `force`. On a data dir
/// without a store, the store is created from the backup. Returns the safety copy's path.
///
/// # Errors
/// `Storage` / `Refused` for a backup that does not open or fails its check (the live store is
/// untouched); `InUse` when a process holds the store; `Refused` without `force`.
pub fn restore(data_dir: &Path, backup: &Path, force: bool) -> Result<Option<PathBuf>> {
    let report = check_file(backup)?;
    if !report.ok {
        return Err(Error::Refused(format!(
            "the backup {} fails its check ({}); nothing was changed",
            backup.display(),
            report.problems.join("; ")
        )));
    }
    let db = data_dir.join(STORE_FILE);
    fsutil::create_private_dir(data_dir)?;
    let mut safety = None;
    // Holding the live store exclusively during the swap keeps every other process out.
    let _held = if db.exists() {
        if !force {
            return Err(Error::Refused(format!(
                "{} exists; restoring replaces it (a safety copy is kept); pass --force",
                db.display()
            )));
        }
        let live = open_file_store(&db, Mode::Exclusive)?;
        let copy = with_suffix(&db, &format!(".pre-restore-{}.bak", unix_suffix()));
        live.copy_to(&copy)?;
        safety = Some(copy);
        Some(live)
    } else {
        None
    };
    let tmp = fsutil::temp_sibling(&db)?;
    std::fs::copy(backup, tmp.path())
        .map_err(|e| Error::io(format!("copying {}", backup.display()), e))?;
    fsutil::persist(tmp, &db)?;
    Ok(safety)
}

/// Empties the store of `data_dir` after taking a backup (`redkeep.redb.pre-reset-<time>.bak`);
/// returns the backup's path. Needs the store to be free.
pub fn reset(data_dir: &Path) -> Result<PathBuf> {
    let db = data_dir.join(STORE_FILE);
    if !db.exists() {
        return Err(Error::NotInitialized { path: db });
    }
    let store = open_file_store(&db, Mode::Exclusive)?;
    let backup = with_suffix(&db, &format!(".pre-reset-{}.bak", unix_suffix()));
    store.copy_to(&backup)?;
    store.wipe(SCHEMA_VERSION)?;
    Ok(backup)
}
