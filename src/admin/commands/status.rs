//! `redkeep status`: who holds the store, its schema version, and where each file is.

use std::path::Path;

use serde_json::{Value, json};

use crate::admin::protocol::SOCKET_FILE;
use crate::admin::reply::{Human, Reply};
use crate::store::{Mode, owner_path};
use crate::{Redkeep, Result, SCHEMA_VERSION, STORE_FILE, WORKSPACES_DIR};

fn files(dir: &Path) -> Value {
    let db = dir.join(STORE_FILE);
    json!({
        "store": db.display().to_string(),
        "owner_marker": owner_path(&db).display().to_string(),
        "socket": dir.join(SOCKET_FILE).display().to_string(),
        "workspaces": dir.join(WORKSPACES_DIR).display().to_string(),
    })
}

pub(crate) fn reply(
    state: &str,
    pid: Option<u32>,
    socket: Option<&str>,
    schema: Option<u64>,
    dir: &Path,
) -> Reply {
    let mut lines = vec![match (state, pid) {
        ("free", _) => "the store is free".to_string(),
        ("shared", _) => {
            "the store is open in shared mode by another process (reading or writing it)"
                .to_string()
        }
        ("read-only", _) if crate::fsutil::on_read_only_fs(dir) => {
            "the store is on a read-only file system, so nothing can be changed until it is \
             remounted read-write; no other process has it open"
                .to_string()
        }
        ("read-only", _) => {
            "this user may read the store but not write it; no other process has it open"
                .to_string()
        }
        (_, Some(pid)) => format!("the store is held exclusively by process {pid}"),
        _ => "the store is held exclusively by another process".to_string(),
    }];
    let socket_file = dir.join(SOCKET_FILE);
    match socket {
        Some("none") => lines.push(
            "admin socket: none (the holder serves none, so commands cannot run through it)"
                .to_string(),
        ),
        Some("missing") => lines.push(format!(
            "admin socket: missing (the application listens on {}, but the file was removed, \
             by a temp-file cleaner or by hand, so no command can reach it; restart the \
             application to recreate it)",
            socket_file.display()
        )),
        Some(s) => lines.push(format!("admin socket: {s}")),
        None => {}
    }
    match schema {
        Some(v) if v < SCHEMA_VERSION => lines.push(format!(
            "schema version {v} (this build: {SCHEMA_VERSION}); `redkeep migrate up` brings it \
             up to date"
        )),
        Some(v) => lines.push(format!("schema version {v} (this build: {SCHEMA_VERSION})")),
        None => {}
    }
    let f = files(dir);
    for key in ["store", "owner_marker", "socket", "workspaces"] {
        lines.push(format!("{key}: {}", f[key].as_str().unwrap_or_default()));
    }
    // Nothing has the store open: no backup or restore runs, and a young temp entry is a
    // leftover all the same.
    let free = matches!(state, "free" | "read-only");
    let leftovers = leftovers(dir, free, &mut lines);
    let copies = copies(dir, &mut lines);
    let mut json = json!({"state": state, "pid": pid, "socket": socket, "schema_version": schema, "build_schema_version": SCHEMA_VERSION, "not_closed_cleanly": matches!(state, "free" | "shared" | "read-only").then_some(false), "files": f, "leftovers": leftovers, "copies": copies});
    if state == "read-only" {
        json["read_only_file_system"] = json!(crate::fsutil::on_read_only_fs(dir));
    }
    Reply::text(json, lines)
}

/// The copies of the store that operations keep in the data dir (before a migration, a
/// restore or a reset: `<store>.pre-….bak`, `redkeep-postgres.redb.pre-vN.bak` for a store
/// on a server; the file a move to a server retired:
/// `<store>.moved-to-postgres-<time>`), each also numbered past an earlier one
/// (`….pre-v3.2.bak`, `….bak.2`, `…-<time>.2`), one line each, and their JSON list: each
/// holds every password hash and token hash as it was then, so the operator should know
/// they are there.
fn copies(dir: &Path, lines: &mut Vec<String>) -> Value {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return json!([]);
    };
    let prefixes = [
        format!("{STORE_FILE}."),
        format!("{}.", crate::handle::POSTGRES_COPIES),
    ];
    let mut found: Vec<(String, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let rest = prefixes
                .iter()
                .find_map(|p| name.strip_prefix(p.as_str()))?;
            // `fsutil::free_path` numbers a name that is taken: `….bak.2`.
            let unnumbered = match rest.rsplit_once('.') {
                Some((name, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => rest,
            };
            let kept = (rest.starts_with("pre-") && unnumbered.ends_with(".bak"))
                || rest.starts_with("moved-to-postgres-");
            let meta = e.path().symlink_metadata().ok()?;
            (kept && meta.is_file()).then_some((name, meta.len()))
        })
        .collect();
    found.sort();
    let mut listed = Vec::new();
    for (name, bytes) in found {
        let path = dir.join(&name);
        lines.push(format!(
            "kept copy of the store {} ({bytes} bytes): it holds the password and token hashes \
             of its time; delete it once it is not needed",
            path.display()
        ));
        listed.push(json!({"path": path.display().to_string(), "bytes": bytes}));
    }
    Value::Array(listed)
}

/// The status of a store file that cannot be opened (not a redb file, cut short): what is
/// wrong and the way out, exiting 1. `check` cannot open it either, so it is not advised.
pub(crate) fn damaged(reason: &str, dir: &Path) -> Reply {
    let mut out = reply("damaged", None, None, None, dir);
    let readable = crate::store::Store::can_be_read(&dir.join(STORE_FILE));
    if let Human::Text(lines) = &mut out.human
        && let Some(first) = lines.first_mut()
    {
        *first = format!(
            "the store is damaged and cannot be opened: {reason}; {}",
            way_out_for(readable)
        );
    }
    out.json["damage"] = json!(reason);
    out.json["salvage_can_read"] = json!(readable);
    out.failed("the store is damaged, as the report says")
}

/// The way out of a store file that cannot be opened: a restore, and a salvage only when
/// something of the file can still be read (of an empty file, or one that is no redb file,
/// a salvage copies nothing and says so).
#[cfg(feature = "cli")]
pub(crate) fn way_out(db: &Path) -> &'static str {
    way_out_for(crate::store::Store::can_be_read(db))
}

/// The way out of a store file that cannot be opened, knowing whether a salvage can read
/// anything of it.
fn way_out_for(readable: bool) -> &'static str {
    if readable {
        "restore a backup (`redkeep restore`) or copy out what can be read (`redkeep salvage --to DIR`)"
    } else {
        "nothing in it can be read, so restore a backup (`redkeep restore`)"
    }
}

/// What a temp entry is, in a word, as found (never following a symlink).
fn entry_kind(path: &Path, is_dir: bool) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if is_dir {
        return "folder";
    }
    match std::fs::symlink_metadata(path).map(|m| m.file_type()) {
        Ok(t) if t.is_symlink() => "symlink",
        Ok(t) if t.is_fifo() => "FIFO",
        Ok(t) if t.is_socket() => "socket",
        Ok(t) if t.is_block_device() || t.is_char_device() => "device",
        _ => "file",
    }
}

/// Temp files and folders in the data dir (a backup or restore under way, or one killed
/// half-way), one line each with its age, and their JSON list. `check --repair` removes
/// those an hour old; a younger one may belong to an operation still running, unless the
/// store is `free` (no process has it open).
fn leftovers(dir: &Path, free: bool, lines: &mut Vec<String>) -> Value {
    let now = crate::clock::unix_now();
    let mut listed = Vec::new();
    for left in crate::handle::data_dir_leftovers(dir) {
        let (age, old) = (left.age(now), left.old(now));
        // Only an old one is probed: a young one may be taking its lock (or a store its
        // own) right now, and a probe could get in its way.
        let held = old && crate::fsutil::in_use(&left.path);
        let kind = entry_kind(&left.path, left.is_dir);
        let path = left.path.display();
        lines.push(if held {
            format!(
                "temp {kind} {path} (changed {} ago): in use by a running operation",
                ago(age)
            )
        } else if old {
            format!(
                "leftover temp {kind} {path} (changed {} ago): an interrupted operation's; `redkeep check --repair` removes it",
                ago(age)
            )
        } else if free {
            format!(
                "leftover temp {kind} {path} (changed {} ago): an interrupted operation's, as no process has the store open; `redkeep check --repair` removes it once it is an hour old",
                ago(age)
            )
        } else {
            format!(
                "temp {kind} {path} (changed {} ago): an operation under way, or one interrupted; if none runs, `redkeep check --repair` removes it once it is an hour old",
                ago(age)
            )
        });
        listed.push(json!({
            "path": left.path.display().to_string(),
            "folder": left.is_dir,
            "kind": kind,
            // Only an old entry is probed: a young one's is not known.
            "in_use": if old { json!(held) } else { Value::Null },
            "age_secs": age,
        }));
    }
    Value::Array(listed)
}

/// An age in seconds as words: `42 s`, `5 min`, `3 h`, `2 days`.
fn ago(secs: i64) -> String {
    match secs {
        ..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// The status of a store that is not a file in the data dir (PostgreSQL): where it is, the
/// other connections that have it open (any number may), its schema version, where the
/// workspaces are, and the operations that stopped part way in it (a move into it, an
/// import, a restore).
///
/// # Errors
/// `Storage` when the store cannot be read.
pub fn of_server(rk: &Redkeep) -> Result<Reply> {
    let schema = rk.store().schema_version()?;
    let dir = rk.dir();
    let held = rk.store().holders();
    let (open_in, holders) = match &held {
        Ok(Some(list)) => (
            open_in(list),
            json!(list.iter().map(holder_json).collect::<Vec<_>>()),
        ),
        Ok(None) => (String::new(), Value::Null),
        Err(e) => (
            format!("; which other connections have it open cannot be read ({e})"),
            Value::Null,
        ),
    };
    let mut lines = vec![format!(
        "the store is on {} ({}){open_in}",
        rk.store().engine(),
        rk.store().location()
    )];
    if let Ok(Some(list)) = &held {
        lines.extend(list.iter().map(|h| format!("  {h}")));
    }
    lines.extend([
        format!(
            "schema version {} (this build: {SCHEMA_VERSION})",
            schema.map_or_else(|| "none".to_string(), |v| v.to_string())
        ),
        format!("workspaces: {}", dir.join(WORKSPACES_DIR).display()),
    ]);
    let leftovers = leftovers(dir, false, &mut lines);
    let copies = copies(dir, &mut lines);
    let out = Reply::text(
        json!({
            "state": "server",
            "engine": rk.store().engine(),
            "store": rk.store().location(),
            "schema_version": schema,
            "build_schema_version": SCHEMA_VERSION,
            "files": {"workspaces": dir.join(WORKSPACES_DIR)},
            "holders": holders,
            "leftovers": leftovers,
            "copies": copies,
        }),
        lines,
    );
    Ok(with_stopped(out, &stopped_operations(rk.store())))
}

/// Who else has a server store open, after its location: none, or how many, listed on
/// the lines that follow.
fn open_in(holders: &[crate::store::Holder]) -> String {
    match holders.len() {
        0 => "; no other connection has it open".to_string(),
        1 => "; 1 other connection has it open (any number may):".to_string(),
        n => format!("; {n} other connections have it open (any number may):"),
    }
}

/// A connection holding a server store, as `status --json` lists it.
fn holder_json(h: &crate::store::Holder) -> Value {
    json!({
        "backend_pid": h.backend_pid,
        "client": h.client,
        "application_name": h.application_name,
        "since": h.since,
    })
}

/// The status as the owning process sees it (run through the socket).
///
/// # Errors
/// `Storage` when the store cannot be read.
pub fn in_owner(rk: &Redkeep) -> Result<Reply> {
    let schema = rk.store().schema_version()?;
    let state = if rk.store().mode() == Mode::Exclusive {
        "exclusive"
    } else {
        "shared"
    };
    if rk.store().engine() != "redb" {
        return of_server(rk);
    }
    let out = reply(
        state,
        Some(std::process::id()),
        Some("reachable"),
        schema,
        rk.dir(),
    );
    Ok(with_stopped(out, &stopped_operations(rk.store())))
}

/// The operations that stopped part way in `store` (a crash, a kill), by the marks they
/// leave until done: `check` names each and says how to finish it.
pub(crate) fn stopped_operations(store: &crate::store::Store) -> Vec<&'static str> {
    store
        .read(|tx| crate::store::stopped_operations(tx))
        .unwrap_or_default()
}

/// `out` with a line (and the JSON field `stopped`) naming the operations that stopped
/// part way, when any did.
pub(crate) fn with_stopped(mut out: Reply, stopped: &[&str]) -> Reply {
    if stopped.is_empty() {
        return out;
    }
    if let Human::Text(lines) = &mut out.human {
        lines.insert(
            1.min(lines.len()),
            format!(
                "{} stopped part way (a crash or a kill): `redkeep check` says what is \
                 missing and how to finish it",
                stopped.join(" and ")
            ),
        );
    }
    out.json["stopped"] = json!(stopped);
    out
}
