//! `redkeep salvage --to DIR`: copies out of a damaged store everything that can still be
//! read, into a new data dir, and leaves the damaged file untouched (it works on a byte copy
//! of it). Each table is read forward until the file gives way, then backward from its end,
//! then, for numeric keys, key by key across the gap; what reads is written to the new store,
//! whose indexes are rebuilt (after the damaged store's own index entries are weighed
//! against its records: see `contradicted`), sequences set past every id seen, and
//! references made whole
//! (records pointing at lost ones go; users keep an org and a credential). The workspace
//! folders are copied as they are. `check` runs on the result. A file whose header keeps
//! redb out (a damaged commit record, magic number or geometry) is read through a mended
//! header (see `store::engine::header`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::auth::legacy;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::handle::{Options, Redkeep, SCHEMA_VERSION, STORE_FILE, WORKSPACES_DIR};
use crate::store::{
    KeyRange, Meta, Mode, Order, Source, Store, StoreOptions, TableCheck, WriteTx, get_owned,
    index_table, record_table,
};

mod folders;

use folders::{check_target, copy_folders};

/// What salvage got out of one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SalvagedTable {
    /// Entries read and copied.
    pub read: u64,
    /// Entries the copy holds in the end: fewer than `read` where records were set aside
    /// into quarantine or dropped (`suspects` and `changes` say which), more where the
    /// repair wrote some (the store's metadata).
    pub kept: u64,
    /// Key ranges that could not be read (empty when the whole table read).
    pub skipped: Vec<String>,
}

/// What a salvage did.
#[derive(Debug, Clone, Serialize)]
pub struct SalvageReport {
    /// The new data dir.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub to: PathBuf,
    /// Per table (records, and the store's metadata as `meta`).
    pub tables: BTreeMap<String, SalvagedTable>,
    /// Workspace folders copied.
    pub folders: u64,
    /// Entries of the workspace trash copied (deleted users' folders, `reset-…` entries).
    pub trash: u64,
    /// Workspace files and folders (of users' folders and the trash) that could not be
    /// listed, opened or read, so are not in the copy: a line each, naming the path and
    /// the cause. Any makes the salvage one with problems.
    pub left_behind: Vec<String>,
    /// What was changed to make the copy consistent (records dropped, owners given,
    /// workspace documents written fresh, …).
    pub changes: Vec<String>,
    /// Records kept as they read though the damaged store's own index entries contradict
    /// them (a damaged byte in the record or in the index), and records set aside into
    /// `quarantine:<table>` because they cannot be mended (bytes that do not decode, a
    /// second claim to a unique key), which the copy lacks: each is to be checked by hand.
    /// Records of tables that let their holder in or grant a right (sessions, API keys,
    /// invites, reset tokens, role grants, memberships) that the indexes contradict are not
    /// kept: they go to quarantine, and `changes` says so.
    pub suspects: Vec<String>,
    /// Problems left in the result: those `check` still finds (none, normally), workspace
    /// files left behind, no account saved.
    pub problems: Vec<String>,
}

const BATCH: usize = 1000;
/// The highest schema version a newer redkeep is taken to have written; a version read
/// above it is a damaged byte.
const NEWEST_PLAUSIBLE: u64 = 64;
/// Keys tried one by one across an unreadable gap of numeric keys, at most.
const PROBES: u64 = 100_000;

type Entry = (Vec<u8>, Vec<u8>);

/// Reads one table of `src` as far as it goes; returns the entries and the gaps (named by
/// the keys around them, unless the keys are secret material: a token's hash).
fn read_table(src: &Store, name: &str, secret: bool) -> (Vec<Entry>, Vec<String>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut skipped = Vec::new();
    let mut failed = false;
    // Forward, a batch per snapshot, resuming after the last key read.
    loop {
        let after = entries.last().map(|(k, _)| k.clone());
        let mut batch = Vec::new();
        // Keys must rise: a page that lists itself (or one before it) as a child would
        // give the same keys again and again, and each batch starts from the root anew, so
        // the read would never end (and hold ever more entries).
        let mut looped = false;
        let outcome = src.read(|tx| {
            let range = match &after {
                Some(k) => KeyRange::all().after(k),
                None => KeyRange::all(),
            };
            tx.raw().range(name, &range, Order::Asc, &mut |k, v| {
                let prev = batch
                    .last()
                    .map(|(p, _): &Entry| p.as_slice())
                    .or(after.as_deref());
                if prev.is_some_and(|p| k <= p) {
                    looped = true;
                    return Ok(false);
                }
                batch.push((k.to_vec(), v.to_vec()));
                Ok(batch.len() < BATCH)
            })
        });
        let done = batch.len() < BATCH && !looped;
        entries.extend(batch);
        if outcome.is_err() || looped {
            failed = true;
            break;
        }
        if done {
            break;
        }
    }
    if !failed {
        return (entries, skipped);
    }
    // Backward from the end, down to where the forward read stopped.
    let low = entries.last().map(|(k, _)| k.clone());
    let mut tail: Vec<Entry> = Vec::new();
    loop {
        let before = tail.last().map(|(k, _)| k.clone());
        let mut batch = Vec::new();
        let mut looped = false;
        let outcome = src.read(|tx| {
            let mut range = match &before {
                Some(k) => KeyRange::all().before(k),
                None => KeyRange::all(),
            };
            if let Some(l) = &low {
                range = range.after(l);
            }
            tx.raw().range(name, &range, Order::Desc, &mut |k, v| {
                // Keys must fall (see above).
                let prev = batch
                    .last()
                    .map(|(p, _): &Entry| p.as_slice())
                    .or(before.as_deref());
                if prev.is_some_and(|p| k >= p) {
                    looped = true;
                    return Ok(false);
                }
                batch.push((k.to_vec(), v.to_vec()));
                Ok(batch.len() < BATCH)
            })
        });
        let done = batch.len() < BATCH;
        tail.extend(batch);
        if outcome.is_err() || done || looped {
            break;
        }
    }
    let high = tail.last().map(|(k, _)| k.clone());
    // Numeric keys: try each key in the gap on its own.
    let gap_from = low
        .as_deref()
        .and_then(be_u64)
        .map_or(1, |n| n.saturating_add(1));
    let gap_to = high.as_deref().and_then(be_u64);
    let numeric =
        low.as_deref().is_none_or(|k| k.len() == 8) && high.as_deref().is_none_or(|k| k.len() == 8);
    let mut probed = Vec::new();
    if numeric && let Some(to) = gap_to {
        for id in (gap_from..to).take(PROBES as usize) {
            let key = id.to_be_bytes();
            let mut got = None;
            let _ = src.read(|tx| {
                tx.raw().get(name, &key, &mut |v| {
                    got = Some(v.to_vec());
                    Ok(())
                })
            });
            if let Some(v) = got {
                probed.push((key.to_vec(), v));
            }
        }
    }
    let show = |k: &[u8]| {
        if secret {
            "<redacted>".to_string()
        } else {
            crate::store::show_key(k)
        }
    };
    let stretch = match (low.as_deref(), high.as_deref()) {
        (None, None) => "the whole table".to_string(),
        (None, Some(h)) => format!("the records before key {}", show(h)),
        (Some(l), None) => format!("the records after key {}", show(l)),
        (Some(l), Some(h)) => format!("the records between keys {} and {}", show(l), show(h)),
    };
    skipped.push(format!(
        "{stretch}{}",
        if probed.is_empty() {
            String::new()
        } else {
            format!(" ({} of them were then read one by one)", probed.len())
        }
    ));
    entries.extend(probed);
    entries.extend(tail);
    (entries, skipped)
}

/// Tables whose records let their holder in or grant a right. One that the damaged store's
/// own indexes contradict is not copied (its bytes go to quarantine): a damaged byte in it
/// may hand the right to someone else (a session's user id flipped to the administrator's).
/// Its holder logs in again, or is given the right again.
const BEARERS: [&str; 8] = [
    "sessions",
    "web_sessions",
    "agent_sessions",
    "api_keys",
    "invites",
    "recovery_tokens",
    "user_roles",
    "org_members",
];

/// A record that the damaged store's own index entries contradict.
struct Contradicted {
    key: Vec<u8>,
    /// Its fields name another key than the one it is stored under (which its index
    /// entries name): the index rebuild would move it there, to another account's id, say.
    misplaced: bool,
    /// Its key as reports show it (`<redacted>` for a token's hash).
    shown: String,
    /// What the index held.
    why: String,
}

/// The records of `t`, as copied into `tx`, that the damaged store's own index entries
/// (copied with them; `whole` says which index tables read to their end) contradict: an
/// entry the record should have is missing from an index that read whole, the entry for
/// one of its unique keys names another record that claims that key too, or an entry
/// names the record under a key it does not claim. Either the record or the index took a
/// damaged byte: redb reads a page without checking it, so a flipped byte in a record
/// reads back as a record that decodes. Records that do not decode are left to the index
/// rebuild, which sets them aside.
///
/// # Errors
/// `Storage` when the copy cannot be read.
fn contradicted(
    tx: &WriteTx<'_>,
    t: &dyn TableCheck,
    whole: &BTreeMap<String, bool>,
) -> Result<Vec<Contradicted>> {
    let info = t.info();
    let raw = tx.raw();
    let table = record_table(t.name());
    let show = |k: &[u8]| {
        if info.secret_key {
            "<redacted>".to_string()
        } else {
            crate::store::show_key(k)
        }
    };
    // A unique key's value is shown where nothing in the table is secret.
    let show_value = |k: &[u8]| {
        if info.secret_key || !info.secret_fields.is_empty() {
            String::new()
        } else {
            format!(" {}", crate::store::show_key(k))
        }
    };
    let mut why: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    let mut misplaced: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut claimed: BTreeSet<(&'static str, Vec<u8>)> = BTreeSet::new();
    raw.range(&table, &KeyRange::all(), Order::Asc, &mut |pk, value| {
        let Ok(expected) = t.expected_entries(tx, pk, value) else {
            return Ok(true);
        };
        // A damaged byte in a key field (a grant's user id): the record reads as one stored
        // under another key, and its entries (made from the key it is stored under) agree.
        let own = t.own_key(tx, pk, value)?;
        if own != pk {
            misplaced.insert(pk.to_vec());
            why.entry(pk.to_vec()).or_default().push(format!(
                "its fields name key {}, but it is stored under this one, as its index \
                 entries say",
                show(&own)
            ));
        }
        for e in expected {
            let name = index_table(t.name(), e.index);
            let (Some(read_whole), Some((ik, iv))) = (whole.get(&name), e.entry) else {
                continue;
            };
            let problem = match get_owned(raw, &name, &ik)? {
                Some(got) if got == iv => None,
                Some(got) if e.unique => {
                    // Another record holds it: evidence only when that one claims it too
                    // (else the entry is the damaged one).
                    let rival = get_owned(raw, &table, &got)?
                        .and_then(|v| t.expected_entries(tx, &got, &v).ok())
                        .is_some_and(|r| {
                            r.iter().any(|x| {
                                x.index == e.index && x.entry.as_ref().map(|(k, _)| k) == Some(&ik)
                            })
                        });
                    rival.then(|| {
                        format!(
                            "the damaged store's {} index gives its key{} to record {}",
                            e.index,
                            show_value(&ik),
                            show(&got)
                        )
                    })
                }
                Some(_) => None,
                None if *read_whole => Some(format!(
                    "the damaged store's {} index has no entry for it",
                    e.index
                )),
                None => None,
            };
            if let Some(problem) = problem {
                why.entry(pk.to_vec()).or_default().push(problem);
            }
            claimed.insert((e.index, ik));
        }
        Ok(true)
    })?;
    for idx in &info.indexes {
        let name = index_table(t.name(), &idx.name);
        if !whole.contains_key(&name) {
            continue;
        }
        let mut stray = Vec::new();
        raw.range(&name, &KeyRange::all(), Order::Asc, &mut |k, v| {
            let own = claimed
                .range((idx.name.as_str(), k.to_vec())..)
                .next()
                .is_some_and(|(i, c)| *i == idx.name && c.as_slice() == k);
            if !own && let Some(pk) = crate::store::entry_target_raw(idx.unique, info.key_len, k, v)
            {
                stray.push((k.to_vec(), pk.to_vec()));
            }
            Ok(true)
        })?;
        for (k, pk) in stray {
            if get_owned(raw, &table, &pk)?.is_none() {
                continue;
            }
            let held = if idx.unique {
                show_value(&k)
            } else {
                String::new()
            };
            why.entry(pk).or_default().push(format!(
                "the damaged store's {} index names it under a key{held} it does not claim",
                idx.name
            ));
        }
    }
    Ok(why
        .into_iter()
        .map(|(key, why)| Contradicted {
            shown: show(&key),
            misplaced: misplaced.contains(&key),
            key,
            why: why.join(", and "),
        })
        .collect())
}

/// Moves the records `found` of `table` (their bytes as stored) to its quarantine table.
///
/// # Errors
/// `Storage` when the copy cannot be written.
fn set_aside(tx: &WriteTx<'_>, table: &str, found: &[Contradicted]) -> Result<()> {
    let raw = tx.raw_write()?;
    let (records, aside) = (
        record_table(table),
        record_table(&crate::store::quarantine_table(table)),
    );
    for c in found {
        if let Some(bytes) = get_owned(raw, &records, &c.key)? {
            raw.put(&aside, &c.key, &bytes)?;
            raw.remove(&records, &c.key)?;
        }
    }
    Ok(())
}

/// Moves the records of the bearer table `t` in `found` to its quarantine table; returns
/// what it did, in one line.
///
/// # Errors
/// `Storage` when the copy cannot be written.
fn drop_contradicted(
    tx: &WriteTx<'_>,
    t: &dyn TableCheck,
    found: Vec<Contradicted>,
) -> Result<Vec<String>> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    set_aside(tx, t.name(), &found)?;
    let aside = crate::store::quarantine_table(t.name());
    let after = match t.name() {
        "sessions" | "web_sessions" => "their users log in again",
        "agent_sessions" => "their agents start new sessions",
        "api_keys" => "those keys no longer verify: issue new ones",
        "invites" => "those codes no longer register: create new ones",
        "recovery_tokens" => "those reset tokens no longer work: issue new ones",
        "user_roles" => "those grants are gone: grant the roles again",
        _ => "those memberships are gone: add the members again",
    };
    let first = &found[0];
    Ok(vec![format!(
        "{}: {} record(s) that the damaged store's own indexes contradict (a damaged byte \
         in the record or in the index; which, the indexes alone cannot tell) were moved to \
         {aside}, as a damaged one may hand a right to someone else; {after} (first: record \
         {}: {})",
        t.name(),
        found.len(),
        first.shown,
        first.why
    )])
}

fn be_u64(k: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(k).ok().map(u64::from_be_bytes)
}

/// Copies what can be read of the data dir `data_dir` into the new data dir `to`. A `to`
/// that does not exist yet is built beside it, as `<to>.incomplete-salvage`, and renamed
/// into place when whole, so a salvage cut short leaves no copy that passes for a complete
/// one; an existing (empty) folder is filled in place.
///
/// # Errors
/// `Denied` when `to` holds a store or anything but empty `workspaces/users` and
/// `workspaces/trash` folders, `<to>.incomplete-salvage` is there (a salvage cut
/// short: remove it), the source is held by a running process, or the source cannot be
/// opened at all (nothing can be read; `to` is left untouched); `Io` / `Storage` when the
/// new store cannot be written. What cannot be read of a file that opens, and workspace
/// files that cannot be read, are reported, not an error.
pub fn salvage(
    data_dir: &Path,
    to: &Path,
    options: Options,
    now: Timestamp,
) -> Result<SalvageReport> {
    if to.is_symlink() {
        return Err(Error::invalid(
            "to",
            format!(
                "{} is a symlink; give the new data dir itself (a new folder)",
                to.display()
            ),
        ));
    }
    let made = super::files::Made::before(to);
    if !made.existed {
        // A new data dir is made in a folder that exists: a mistyped path makes no tree.
        crate::fsutil::existing_folder_of(to, "to", "copy")?;
    }
    let source = data_dir.join(STORE_FILE);
    if !crate::fsutil::is_there(&source)? || !source.is_file() {
        return Err(Error::NotInitialized { path: source });
    }
    check_target(data_dir, to)?;
    // A new target is made beside it and renamed into place once whole: a salvage cut
    // short (killed) leaves no copy that passes for a complete one. A folder that is there
    // already (a mount point, one set up with its owner and mode) is filled in place.
    let name = to.components().next_back().and_then(|c| match c {
        std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
        _ => None,
    });
    let Some(name) = name.filter(|_| !made.existed) else {
        let salvaged = salvage_into(data_dir, to, options, now);
        // One that failed part way (a full disk) takes away what it made: a half-written
        // store there would pass for a damaged one, and block a new attempt.
        if salvaged.is_err() {
            made.take_back();
        }
        return salvaged;
    };
    // Without a trailing slash, as the report's lines name it.
    let to: PathBuf = to.components().collect();
    let to = to.as_path();
    let staging = to.with_file_name(format!("{name}.incomplete-salvage"));
    let staged = super::files::Made::before(&staging);
    // Made here, not found: a salvage cut short left it, or another one runs into it now.
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&staging) {
        return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::denied(format!(
                "{} is there: a salvage into {} was cut short, or runs now; once none runs, \
                 remove it, then salvage again",
                staging.display(),
                to.display()
            ))
        } else {
            Error::io(format!("creating directory {}", staging.display()), e)
        });
    }
    let salvaged = salvage_into(data_dir, &staging, options, now).and_then(|mut report| {
        std::fs::rename(&staging, to).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", staging.display(), to.display()),
                e,
            )
        })?;
        // What the report says of the staging folder, it says of the target.
        let (from, into) = (staging.display().to_string(), to.display().to_string());
        for line in report.changes.iter_mut().chain(report.problems.iter_mut()) {
            *line = line.replace(&from, &into);
        }
        report.to = to.to_path_buf();
        Ok(report)
    });
    if salvaged.is_err() {
        staged.take_back();
    }
    salvaged
}

/// Opens the working copy as it is: for writing, else to read what can be read. The
/// reason it cannot be opened, when it cannot.
fn open_as_it_is(copy: &Path, options: &StoreOptions) -> std::result::Result<Store, String> {
    Store::open_unchecked(copy, options).or_else(|first| {
        Store::open_to_salvage(copy, options).map_err(|_| {
            // The reason only: the error itself names the working copy and advises a
            // salvage.
            match first {
                Error::Damaged { reason, .. } => reason,
                Error::Unwritten { found, .. } => format!("it holds nothing ({found})"),
                e => e.to_string(),
            }
        })
    })
}

/// What the report says of a store read through a rewritten header: one found damaged
/// (`why` is `None`), or one that would not open (`why`).
fn said_of_header(why: Option<&str>, mended: crate::store::MendedHeader) -> String {
    let commit = format!(
        "{} (transaction {})",
        if mended.previous {
            "the commit before its latest one"
        } else {
            "its latest commit"
        },
        mended.transaction
    );
    let pages = if mended.verified {
        "every page of it checked against its checksum"
    } else {
        "its pages read as they come"
    };
    let missing = if mended.previous {
        ": what the latest commit changed is not in the copy (often nothing: redb also \
         commits when a store is closed)"
    } else {
        ""
    };
    let header = if mended.damaged {
        "mended"
    } else {
        "rewritten"
    };
    let read = format!("it was read through a {header} header, at {commit}, {pages}{missing}");
    match why {
        Some(why) => format!("the store could not be opened ({why}); {read}"),
        None => format!("the store's header is damaged; {read}"),
    }
}

// Refuses a target that holds a store or workspace folders, or lies inside the data dir.
fn salvage_into(
    data_dir: &Path,
    to: &Path,
    options: Options,
    now: Timestamp,
) -> Result<SalvageReport> {
    let source = data_dir.join(STORE_FILE);
    if !crate::fsutil::is_there(&source)? || !source.is_file() {
        return Err(Error::NotInitialized { path: source });
    }
    check_target(data_dir, to)?;
    // The owner marker names who holds the file, unless a crash left it behind and its
    // process number went to another process since: a live one is taken at its word only
    // when the file is open elsewhere too (or that cannot be told).
    let mut changes = Vec::new();
    let marker = crate::store::owner_path(&source);
    if let Some(o) = crate::store::read_owner(&marker)
        && crate::store::process_alive(o.pid)
    {
        if o.pid != std::process::id() && crate::store::open_elsewhere(&source) == Some(false) {
            changes.push(format!(
                "the owner marker {} names process {}, which does not have the store open \
                 (a marker a crash left behind, its number since taken by another process); \
                 it was not heeded, and is left as it is",
                marker.display(),
                o.pid
            ));
        } else {
            return Err(Error::denied(format!(
                "process {} holds the store; stop it first (salvage reads a file nobody writes)",
                o.pid
            )));
        }
    }
    // The damaged file is never written: the engine works on a byte copy of it, made in
    // the new data dir, not in a shared temp folder. A salvage killed part way leaves it
    // where the rest of what it made is: in a new folder's staging folder, refused until
    // removed; in an existing folder, as a temp folder `status` names and `check --repair`
    // removes once an hour old.
    let scratch = crate::fsutil::private_temp_dir_in(Some(to), "a temporary folder")?;
    let copy = scratch.path().join(STORE_FILE);
    std::fs::copy(&source, &copy)
        .map_err(|e| Error::io(format!("copying {}", source.display()), e))?;
    // The copy is this process's to repair: writable, whatever the original's mode (a
    // 0400 file would keep the repairing open out).
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| Error::io(format!("securing {}", copy.display()), e))?;
    let src_options = StoreOptions {
        mode: Mode::Exclusive,
        create: false,
        schema_version: SCHEMA_VERSION,
        allow_outdated: true,
        ..StoreOptions::default()
    };
    // redb may refuse to open a damaged file for writing (it checks the allocator state);
    // reading it without opening it for writing may still work.
    // A damaged header is mended first: as it is, redb would read the file at the wrong
    // places, at an older commit (which it may take without a word), or not at all.
    let damaged_header = Store::header_damaged(&copy);
    let mended = if damaged_header {
        Store::open_mended(&copy, &src_options)?
    } else {
        None
    };
    let src = match mended {
        Some((store, mended)) => {
            changes.push(said_of_header(None, mended));
            store
        }
        None => match open_as_it_is(&copy, &src_options) {
            Ok(s) => s,
            Err(why) => {
                // The header may hide pages that are all intact (one flipped bit in the latest
                // commit record is enough), or name a commit whose pages are damaged where
                // the one before it is whole: read through a rewritten one.
                let again = if damaged_header {
                    None
                } else {
                    Store::open_mended(&copy, &src_options)?
                };
                let Some((store, mended)) = again else {
                    // Nothing at all can be read: there is nothing to salvage, and no new
                    // store.
                    return Err(Error::denied(format!(
                        "the store {} cannot be opened at all ({why}): no record can be read from it, so nothing was salvaged; restore a backup (`redkeep restore`)",
                        source.display()
                    )));
                };
                changes.push(said_of_header(Some(&why), mended));
                store
            }
        },
    };
    // The folders are copied beside the store: not while a stopped restore or reset leaves
    // them out of step with it.
    super::guards::refuse_stopped_operation(&src)?;
    let listed = src.read(|tx| tx.table_names()).ok();
    let mut names = listed.clone().unwrap_or_else(|| {
        // The table list itself is gone: look for the tables redkeep knows.
        let mut known: Vec<String> = crate::auth::own_tables()
            .iter()
            .map(|t| format!("r:{}", t.name()))
            .collect();
        known.push("meta".into());
        known
    });
    // The indexes of redkeep's own tables are rebuilt from their records, after what they
    // held is taken as evidence against the records (see `contradicted`): they are copied
    // too, those of indexes this build knows. Those of tables this build has no type for
    // are copied as they are.
    let own_tables = crate::auth::own_tables();
    let own: Vec<String> = own_tables
        .iter()
        .map(|t| format!("i:{}:", t.name()))
        .collect();
    let known_indexes: BTreeSet<String> = own_tables
        .iter()
        .flat_map(|t| {
            t.info()
                .indexes
                .into_iter()
                .map(|i| index_table(t.name(), &i.name))
        })
        .collect();
    for name in &known_indexes {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names.retain(|n| known_indexes.contains(n) || !own.iter().any(|p| n.starts_with(p.as_str())));
    // Tables keyed by secret material (a token's hash): their keys are not shown.
    let mut secret: BTreeSet<String> = src
        .read(|tx| tx.catalog())
        .unwrap_or_default()
        .into_iter()
        .chain(own_tables.iter().map(|t| t.info()))
        .filter(|i| i.secret_key)
        .map(|i| i.name)
        .collect();
    secret.extend(
        secret
            .clone()
            .iter()
            .map(|t| crate::store::quarantine_table(t)),
    );
    // Per index table copied: whether it read whole (else a missing entry is no evidence).
    let mut index_whole: BTreeMap<String, bool> = BTreeMap::new();

    crate::fsutil::create_private_dir(to)?;
    let dest = Store::open(
        to.join(STORE_FILE),
        &StoreOptions {
            mode: Mode::Exclusive,
            create: true,
            schema_version: SCHEMA_VERSION,
            allow_outdated: true,
            ..StoreOptions::default()
        },
    )?;
    // The data is the damaged store's, and so are the versions it is at and was made at
    // (if it says).
    dest.write(|tx| {
        tx.remove_meta(crate::store::BORN_AT)?;
        tx.clear_schema_version()
    })?;
    let mut tables = BTreeMap::new();
    for name in &names {
        let label = name.strip_prefix("r:").unwrap_or(name).to_string();
        let (mut entries, skipped) = read_table(&src, name, secret.contains(&label));
        if name == "meta" {
            // A metadata entry that reads but no longer has its form (a damaged shape, a
            // sequence of the wrong length) is left behind: the indexes, sequences and
            // shapes are rebuilt from the records below.
            let before = entries.len();
            entries.retain(|(k, v)| crate::store::meta_entry_sound(k, v));
            if entries.len() < before {
                changes.push(format!(
                    "{} damaged metadata entries left behind",
                    before - entries.len()
                ));
            }
        }
        for chunk in entries.chunks(BATCH) {
            dest.write(|tx| {
                for (k, v) in chunk {
                    tx.raw_write()?.put(name, k, v)?;
                }
                Ok(())
            })?;
        }
        if known_indexes.contains(name) {
            // An index table the damaged store does not list (its name damaged, or a list
            // that could not be read) reads empty: that is no evidence that entries are
            // missing, only that those present stand.
            let whole =
                skipped.is_empty() && listed.as_ref().is_some_and(|l| l.iter().any(|n| n == name));
            index_whole.insert(name.clone(), whole);
            continue;
        }
        tables.insert(
            label,
            (
                name.clone(),
                SalvagedTable {
                    read: entries.len() as u64,
                    kept: 0,
                    skipped,
                },
            ),
        );
    }
    // The version the copy is migrated from: the recorded one, unless the records say
    // otherwise (a damaged byte can make it read older, newer, or not at all).
    let recorded = dest.read(|tx| tx.schema_version())?;
    let shown = dest.read(|tx| legacy::version_from_records(tx.raw()))?;
    let (version, said) = match (recorded, shown) {
        (Some(v), _) if v > SCHEMA_VERSION && v <= NEWEST_PLAUSIBLE => {
            return Err(Error::denied(format!(
                "the store was written by a newer redkeep (schema {v}, this build knows up to \
                 {SCHEMA_VERSION}); salvage it with that version"
            )));
        }
        (Some(v), shown) if v > SCHEMA_VERSION || v == 0 => {
            let r = shown.unwrap_or(SCHEMA_VERSION);
            (
                r,
                Some(format!(
                    "the schema version read {v}, which no redkeep writes (a damaged byte); \
                     set to {r}{}",
                    if shown.is_some() {
                        ", as the records show"
                    } else {
                        ""
                    }
                )),
            )
        }
        // Versions 1 and 2 wrote users in format 1, version 3 on in today's format; which
        // of 1 and 2 is left to the recorded version (a version-2 store whose organizations
        // were all deleted shows as 1).
        (Some(v), Some(r)) if (v > legacy::LAST_FORMAT_ONE) != (r > legacy::LAST_FORMAT_ONE) => (
            r,
            Some(format!(
                "the schema version read {v}, but the records are those of version {r}; set \
                 to {r}"
            )),
        ),
        (Some(v), _) => (v, None),
        (None, Some(r)) => (
            r,
            Some(format!(
                "the schema version could not be read; set to {r}, as the records show"
            )),
        ),
        (None, None) => (
            SCHEMA_VERSION,
            Some(format!(
                "the schema version could not be read, nor told from the records; set to \
                 {SCHEMA_VERSION}"
            )),
        ),
    };
    changes.extend(said.clone());
    // Indexes and sequences next: opening the handle below looks things up by index and
    // hands out ids.
    let mut suspects = Vec::new();
    changes.extend(dest.write_anyway(crate::Durability::Immediate, |tx| {
        let mut kept = Vec::new();
        if said.is_some() {
            tx.set_schema_version(version)?;
        }
        let mut changes = Vec::new();
        if version <= legacy::LAST_FORMAT_ONE {
            // An old copy is read as its migration reads it, through the frozen shapes of
            // its version (today's types would misread some of it, as an agent session's
            // key): what they cannot read is set aside, and its indexes are rebuilt in that
            // version's layout.
            changes.extend(legacy::set_aside_unreadable(tx)?);
        } else {
            for t in crate::auth::own_tables() {
                if version == SCHEMA_VERSION {
                    let found = contradicted(tx, t.as_ref(), &index_whole)?;
                    if BEARERS.contains(&t.name()) {
                        changes.extend(drop_contradicted(tx, t.as_ref(), found)?);
                    } else {
                        // One whose key fields took the damage is set aside, not moved to
                        // the key they name; the rest stay as they read.
                        let (aside, stay): (Vec<_>, Vec<_>) =
                            found.into_iter().partition(|c| c.misplaced);
                        set_aside(tx, t.name(), &aside)?;
                        for c in &aside {
                            suspects.push(format!(
                                "{}: record {} was set aside into quarantine:{}, as {}: a \
                                 byte of its key fields was damaged; put it back by hand",
                                t.name(),
                                c.shown,
                                t.name(),
                                c.why
                            ));
                        }
                        kept.extend(stay.into_iter().map(|c| (t.name(), c)));
                    }
                } else {
                    // An older version's indexes may be laid out otherwise: no evidence.
                    for i in t.info().indexes {
                        tx.raw_write()?.delete_table(&index_table(t.name(), &i.name))?;
                    }
                }
                // Records that read but cannot be mended go to quarantine tables here
                // (where two claim one unique key, the one the damaged store's index
                // names stays). The index entries it writes or removes mend the copied
                // ones, which the lines above have said what they tell; they go unsaid.
                // A record set aside is one the copy lacks (an account, say): to be put
                // back by hand, so the salvage says so and fails, as for a suspect.
                suspects.extend(
                    t.rebuild_indexes(tx)?
                        .into_iter()
                        .filter(|c| c.contains("quarantine:"))
                        .map(|c| {
                            format!(
                                "{}, so the copy's {} table lacks it: put it back by hand if \
                                 it can be mended",
                                c.strip_prefix("fixed: ").unwrap_or(&c),
                                t.name()
                            )
                        }),
                );
            }
            for (table, c) in &kept {
                if get_owned(tx.raw(), &record_table(table), &c.key)?.is_some() {
                    suspects.push(format!(
                        "{table}: record {} was kept as it reads, but {}: a byte of the \
                         record or of the index was damaged, and the indexes alone cannot \
                         tell which; check it by hand (`redkeep inspect get {table} {}` on \
                         the copy)",
                        c.shown, c.why, c.shown
                    ));
                }
            }
        }
        for t in crate::auth::own_tables() {
            if let Some(id) = t.highest_id(tx)? {
                tx.raise_sequence(t.name(), id)?;
            }
        }
        // Records whose shapes were lost with a damaged page read through their type's own
        // field list (above); their shapes go back in the registry, for what reads without
        // a type (an export, `inspect`).
        let shapes = tx.register_known_shapes()?;
        if shapes > 0 {
            changes.push(format!(
                "{shapes} record shape(s) registered again (their entries in meta were lost or damaged)"
            ));
        }
        Ok(changes)
    })?);
    drop(dest);
    drop(src);
    // Gone before the copy is opened and checked (a temp folder would be a leftover there).
    drop(scratch);
    let (ws_from, ws_to) = (data_dir.join(WORKSPACES_DIR), to.join(WORKSPACES_DIR));
    let copied = copy_folders(&ws_from, &ws_to)?;
    let folders = copied.folders;

    let mut opts = options;
    opts.open_outdated = true;
    // (Checked, not used: a mark the store carried is named by the check.)
    opts.open_unfinished = true;
    opts.create = false;
    let rk = Redkeep::open(to, opts)?;
    if rk
        .store()
        .schema_version()?
        .is_some_and(|v| v < SCHEMA_VERSION)
    {
        rk.migrate()?;
    }
    // Unreadable records aside and indexes whole, then references made whole.
    changes.extend(rk.check(true)?.repaired);
    changes.extend(
        rk.store()
            .write_anyway(crate::Durability::Immediate, |tx| {
                let changes = crate::auth::references::settle(tx, now, true)?;
                for t in rk.tables() {
                    if let Some(id) = t.highest_id(tx)? {
                        tx.raise_sequence(t.name(), id)?;
                    }
                }
                Ok(changes)
            })?,
    );
    changes.extend(rk.check(true)?.repaired);
    changes.extend(copied.written_fresh(&ws_from, &ws_to));
    let mut problems = rk.check(false)?.problems;
    problems.extend(copied.problem());
    let tables: BTreeMap<String, SalvagedTable> = tables
        .into_iter()
        .map(|(label, (name, mut t))| {
            t.kept = rk.store().read(|tx| tx.raw().len(&name))?;
            Ok((label, t))
        })
        .collect::<Result<_>>()?;
    // A copy without a single account, of a store that had some (user records read but
    // set aside, a users table that could not be read, records of users' credentials,
    // grants or memberships, or workspace folders that were theirs), is no recovery: it
    // checks clean only because there is nothing left to check.
    let users_read = tables.get("users").map_or(0, |t| t.read);
    let users_lost = tables.get("users").is_some_and(|t| !t.skipped.is_empty());
    let theirs = ["credentials", "user_roles", "org_members", "sessions"]
        .iter()
        .any(|n| tables.get(*n).is_some_and(|t| t.read > 0));
    if rk.users().count()? == 0 && (users_read > 0 || users_lost || theirs || folders > 0) {
        let orphans = if folders > 0 {
            format!(", and its {folders} workspace folder(s) went to its trash as orphans")
        } else {
            String::new()
        };
        problems.push(format!(
            "no account could be salvaged from {}: {}, so the copy holds no user{orphans}; \
             restore a backup (`redkeep restore`) if there is one",
            source.display(),
            if users_read > 0 {
                format!("{users_read} user record(s) read, none usable")
            } else {
                "no user record could be read".to_string()
            }
        ));
    }
    Ok(SalvageReport {
        to: to.to_path_buf(),
        tables,
        folders,
        trash: copied.trash,
        left_behind: copied.left_behind,
        changes,
        suspects,
        problems,
    })
}
