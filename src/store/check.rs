//! Whole-table operations on a record type without knowing the type at the call site:
//! integrity checks (every record decodes, is stored under its own key, and every index
//! mirrors the records exactly), index rebuilds, sizes, and JSON export / import.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use serde::Serialize;
use zeroize::Zeroize;

use super::bulk::{NewRecord, NewRecords, Refused};
use super::engine::{Entries, KeyRange, Order, Visit};
use super::engine::{RawRead, get_owned};
use super::format;
use super::key::Key;
use super::table::{
    Record, corrupt, decode_record, entry_target, entry_value, index_entry, index_table,
    key_in_report, record_table, undeclared_fields, unless_secret,
};
use super::tx::{Source, TableInfo, WriteTx, resolve_shape};
use crate::bytes::{hex, unhex};
use crate::error::{Error, Result};

/// Record and index-entry counts of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    /// Records in the table.
    pub records: u64,
    /// Index entries, all indexes together.
    pub index_entries: u64,
}

/// What a check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// True when no problem was found.
    pub ok: bool,
    /// Counts per table.
    pub tables: BTreeMap<String, TableCounts>,
    /// One sentence per problem.
    pub problems: Vec<String>,
    /// What a repair changed (empty without `--repair`).
    pub repaired: Vec<String>,
    /// Findings that are no problem, said all the same (`ok` stays true): the group bits
    /// that let a read-only operator, who is not the data dir's owner, read it.
    pub notes: Vec<String>,
}

impl CheckReport {
    /// An empty report of a sound store.
    pub fn new() -> CheckReport {
        CheckReport {
            ok: true,
            ..CheckReport::default()
        }
    }

    /// Adds a problem and clears `ok`.
    pub fn problem(&mut self, text: impl Into<String>) {
        self.problems.push(text.into());
        self.ok = false;
    }
}

/// Size of one table: records, index entries and the bytes of both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableStats {
    /// Records.
    pub records: u64,
    /// Index entries, all indexes together.
    pub index_entries: u64,
    /// Bytes of keys and values, records and index entries.
    pub bytes: u64,
}

/// The entry one index should hold for a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedEntry {
    /// The index.
    pub index: &'static str,
    /// Whether it is unique.
    pub unique: bool,
    /// The entry's key and value; `None` when the record has no entry in this index.
    pub entry: Option<(Vec<u8>, Vec<u8>)>,
}

/// Whole-table operations on one record type, usable without naming the type.
pub trait TableCheck: Send + Sync {
    /// The table's name.
    fn name(&self) -> &'static str;
    /// The catalog entry of the table.
    fn info(&self) -> TableInfo;
    /// Checks records and indexes, adding counts and problems to `report`.
    ///
    /// # Errors
    /// `Storage` when the engine fails (problems in the data are reported, not returned).
    fn check(&self, tx: &dyn Source, report: &mut CheckReport) -> Result<()>;
    /// Rewrites index entries to mirror the records whose key is intact; returns one line
    /// per change.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn rebuild_indexes(&self, tx: &WriteTx<'_>) -> Result<Vec<String>>;
    /// Records, index entries and bytes.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn stats(&self, tx: &dyn Source) -> Result<TableStats>;
    /// Calls `f` with each record as `(key hex, JSON)`, in primary-key order.
    ///
    /// # Errors
    /// `Corrupt` for an unreadable record; `f`'s error.
    fn export(
        &self,
        tx: &dyn Source,
        f: &mut dyn FnMut(String, serde_json::Value) -> Result<()>,
    ) -> Result<()>;
    /// The record stored under `key` as JSON, read through the type (older versions
    /// upgraded), as `export` writes it.
    ///
    /// # Errors
    /// `Corrupt` when the value does not decode.
    fn record_json(&self, tx: &dyn Source, key: &[u8], value: &[u8]) -> Result<serde_json::Value>;
    /// The entry each index should hold for the record stored under `key`, in index order.
    ///
    /// # Errors
    /// `Corrupt` when the value does not decode.
    fn expected_entries(
        &self,
        tx: &dyn Source,
        key: &[u8],
        value: &[u8],
    ) -> Result<Vec<ExpectedEntry>>;
    /// The primary key the record stored under `key` names by its own fields (`key` itself
    /// for a record that does not decode, and for implementations that cannot tell).
    ///
    /// # Errors
    /// None from the default; `Storage` when the engine fails.
    fn own_key(&self, tx: &dyn Source, key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
        let _ = (tx, value);
        Ok(key.to_vec())
    }
    /// The highest primary key, for tables whose keys come from their id sequence.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn highest_id(&self, tx: &dyn Source) -> Result<Option<u64>>;
    /// Inserts a record given as key hex and JSON (with its indexes).
    ///
    /// # Errors
    /// `InvalidInput` when the JSON is not a record of this table or the key disagrees;
    /// `Conflict` on a duplicate.
    fn import(&self, tx: &WriteTx<'_>, key: &str, value: &serde_json::Value) -> Result<()> {
        let mut batch = NewRecords::default();
        batch.push((), self.stage(tx, key, value)?);
        batch.write(tx).map_err(|refused| match refused {
            Refused::Record((), e) | Refused::Store(e) => e,
        })
    }
    /// A record given as key hex and JSON, checked and encoded as [`TableCheck::import`]
    /// would insert it, for a batch of new records ([`NewRecords`]) to write.
    ///
    /// # Errors
    /// `InvalidInput` when the JSON is not a record of this table or the key disagrees.
    fn stage(&self, tx: &WriteTx<'_>, key: &str, value: &serde_json::Value) -> Result<NewRecord>;
    /// Deletes every record and index entry.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn clear(&self, tx: &WriteTx<'_>) -> Result<()>;
}

struct Checker<R> {
    /// An application's table: a record whose bytes are whole but do not fit `R` is a
    /// mismatch between the type and the data, reported and left in place, never damage.
    app: bool,
    _record: PhantomData<fn() -> R>,
}

/// The [`TableCheck`] of record type `R`, one of redkeep's own: a record that does not
/// decode into `R` is damage, which a repair moves aside.
pub fn check_table<R: Record + 'static>() -> Box<dyn TableCheck> {
    Box::new(Checker::<R> {
        app: false,
        _record: PhantomData,
    })
}

/// The [`TableCheck`] of an application's record type `R` (what
/// [`crate::Redkeep::register_table`] uses): a stored record whose bytes are whole but do not
/// fit `R` (a field `R` gained without a default) or that a newer version of `R` wrote is
/// reported with how to fix the type, and a repair leaves it and its index entries in place;
/// records whose bytes are damaged are moved aside as in [`check_table`].
pub fn check_app_table<R: Record + 'static>() -> Box<dyn TableCheck> {
    Box::new(Checker::<R> {
        app: true,
        _record: PhantomData,
    })
}

/// Whether `e`, from decoding a stored record of an application's table (`app`), is a
/// mismatch between the type and whole bytes or a record a newer version of the type wrote:
/// not damage. In redkeep's own tables both are damage (a newer redkeep has a newer schema,
/// which this build refuses before any read).
fn mismatch(e: &Error, app: bool) -> bool {
    match e {
        Error::Corrupt { reason, .. } if app => {
            reason.contains(super::table::NEWER_VERSION)
                || reason.contains(super::table::DOES_NOT_FIT)
        }
        _ => false,
    }
}

/// One thing wrong with a table or its indexes, and how an index rebuild mends it.
enum Finding {
    /// An index entry to (re)write.
    Put {
        index: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
        problem: String,
    },
    /// An index entry to remove.
    Remove {
        index: &'static str,
        key: Vec<u8>,
        problem: String,
    },
    /// A record a rebuild cannot mend (its bytes do not decode, it is stored under another
    /// key, or it claims a unique key another record holds): a repair moves its raw bytes
    /// aside, or, `misplaced` (stored under another key than its own), to its own key when
    /// that is free.
    Unreadable {
        key: Vec<u8>,
        problem: String,
        misplaced: bool,
    },
    /// A record that does not fit the type (see [`mismatch`]): the type is to be fixed; a
    /// repair leaves the record and its index entries as they are.
    Mismatch { problem: String },
}

/// How far a walk got: what an interrupted check reports.
#[derive(Default)]
struct Progress {
    records: u64,
    last_key: Option<Vec<u8>>,
}

/// What is stored under a primary key, as an index check sees it.
enum Stored<R> {
    /// A record that decodes and is stored under its own key.
    Sound(R),
    /// A record that does not fit the type (see [`mismatch`]): its entries cannot be
    /// checked, and are kept.
    Mismatch,
    /// No record, or one that is damaged or under another key.
    Broken,
}

fn stored_record<R: Record>(raw: &dyn RawRead, pk: &[u8], app: bool) -> Result<Stored<R>> {
    let Some(bytes) = get_owned(raw, &record_table(R::TABLE), pk)? else {
        return Ok(Stored::Broken);
    };
    let resolve = |id| resolve_shape(raw, id);
    Ok(match decode_record::<R>(pk, &bytes, &resolve) {
        Ok(r) if r.key().to_bytes() == pk => Stored::Sound(r),
        Ok(_) => Stored::Broken,
        Err(e) if mismatch(&e, app) => Stored::Mismatch,
        Err(_) => Stored::Broken,
    })
}

/// Walks `R`'s records and indexes with memory that does not grow with the table: each
/// record looks up the entries it should have, each entry looks up the record it points at.
/// Calls `found` with each finding (while the records are being read; the removals of stale
/// entries after each index was read). Returns the record and index-entry counts.
///
/// With `batch` above 1 the lookups of that many records (or entries) are made together,
/// before any of them is judged (a round trip each on a server engine would be most of the
/// time): only for a walk that changes nothing as it goes, since a repair's `found` writes
/// the entries later records look up.
fn walk<R: Record, S: Source + ?Sized>(
    tx: &S,
    app: bool,
    batch: usize,
    progress: &mut Progress,
    found: &mut dyn FnMut(Finding) -> Result<()>,
) -> Result<(u64, u64)> {
    let raw = tx.raw();
    let resolve = |id| resolve_shape(raw, id);
    let table = R::TABLE;
    let batch = batch.max(1);
    let mut records = 0u64;
    let mut unreadable = Vec::new();
    // Entries found pointing at the wrong record: reported (and mended) once, here, not
    // again as stale when their index is read. Only broken entries are kept.
    let mut misdirected: BTreeSet<(&'static str, Vec<u8>)> = BTreeSet::new();
    // One record, judged with what `got` looked up for it.
    let mut judge = |pk: &[u8],
                     decoded: Result<R>,
                     got: &dyn RawRead,
                     found: &mut dyn FnMut(Finding) -> Result<()>|
     -> Result<()> {
        records += 1;
        progress.records = records;
        progress.last_key = Some(pk.to_vec());
        let record = match decoded {
            Ok(r) => r,
            Err(e) if mismatch(&e, app) => {
                // The type's to fix, not the data: reported, left in place.
                return found(Finding::Mismatch {
                    problem: e.to_string(),
                });
            }
            Err(e) => {
                // Moved aside (by a repair) once the scan is over.
                let problem = match e {
                    Error::Corrupt { table, key, reason } => {
                        format!("record {key} of table {table} is corrupt: {reason}")
                    }
                    other => other.to_string(),
                };
                unreadable.push((pk.to_vec(), problem, false));
                return Ok(());
            }
        };
        let own = record.key().to_bytes();
        if own != pk {
            // Moved aside by a repair, like a record that does not decode.
            unreadable.push((
                pk.to_vec(),
                format!(
                    "{table}: the record stored under key {} says its key is {}; its index entries are not rebuilt",
                    key_in_report::<R>(pk),
                    key_in_report::<R>(&own)
                ),
                true,
            ));
            return Ok(());
        }
        for idx in R::INDEXES {
            let Some(key) = index_entry(idx, &record, pk) else {
                continue;
            };
            let value = entry_value(idx, pk);
            let index = idx.name;
            let problem = match get_owned(got, &index_table(table, index), &key)? {
                Some(got) if got == value => continue,
                None => format!(
                    "{table}.{index}: entry for record {} is missing",
                    key_in_report::<R>(pk)
                ),
                Some(got) if idx.unique => {
                    let rival = match stored_record::<R>(raw, &got, app)? {
                        Stored::Sound(r) => Some(r),
                        // What it claims is unknown until its type reads it: the entry
                        // stays, and the clash waits for the type to be fixed.
                        Stored::Mismatch => continue,
                        Stored::Broken => None,
                    };
                    if rival.is_some_and(|r| index_entry(idx, &r, &got).as_ref() == Some(&key)) {
                        // Writes never let this happen: one of the two was altered by
                        // damage. The index entry was written with the record it names, so
                        // the other one is moved aside by a repair.
                        return found(Finding::Unreadable {
                            misplaced: false,
                            key: pk.to_vec(),
                            problem: format!(
                                "{table}.{index}: records {} and {} claim the same unique key; record {} (not the one the index names) is taken as the damaged one",
                                key_in_report::<R>(&got),
                                key_in_report::<R>(pk),
                                key_in_report::<R>(pk)
                            ),
                        });
                    }
                    misdirected.insert((index, key.clone()));
                    format!(
                        "{table}.{index}: entry points at {} instead of {}",
                        key_in_report::<R>(&got),
                        key_in_report::<R>(pk)
                    )
                }
                Some(_) => format!(
                    "{table}.{index}: entry of record {} is malformed",
                    key_in_report::<R>(pk)
                ),
            };
            found(Finding::Put {
                index,
                key,
                value,
                problem,
            })?;
        }
        Ok(())
    };
    let mut pending = Entries::new(batch);
    // Judges the records in `pending`, their index entries looked up together.
    let judge_pending = |pending: Entries,
                         judge: &mut JudgeRecord<'_, R>,
                         found: &mut dyn FnMut(Finding) -> Result<()>|
     -> Result<()> {
        let decoded: Vec<Result<R>> = pending
            .list
            .iter()
            .map(|(pk, value)| decode_record::<R>(pk, value, &resolve))
            .collect();
        let mut got = Prefetched::new(raw);
        for idx in R::INDEXES {
            let keys: Vec<Vec<u8>> = pending
                .list
                .iter()
                .zip(&decoded)
                .filter_map(|((pk, _), r)| index_entry(idx, r.as_ref().ok()?, pk))
                .collect();
            got.fetch(&index_table(table, idx.name), &keys)?;
        }
        for ((pk, _), decoded) in pending.list.iter().zip(decoded) {
            judge(pk, decoded, &got, found)?;
        }
        Ok(())
    };
    // A table without indexes has nothing to look up for its records.
    let record_batch = if R::INDEXES.is_empty() { 1 } else { batch };
    let scanned = raw.range(
        &record_table(table),
        &KeyRange::all(),
        Order::Asc,
        &mut |pk, value| {
            if record_batch == 1 {
                judge(pk, decode_record::<R>(pk, value, &resolve), raw, found)?;
            } else if pending.push(pk, value) {
                judge_pending(pending.take(), &mut judge, found)?;
            }
            Ok(true)
        },
    );
    // What was read before a failure is judged too (and counted), as it is one at a time.
    let judged = judge_pending(pending.take(), &mut judge, found);
    scanned?;
    judged?;
    for (key, problem, misplaced) in unreadable {
        found(Finding::Unreadable {
            key,
            problem,
            misplaced,
        })?;
    }
    let mut entries = 0u64;
    for idx in R::INDEXES {
        // Only broken entries are kept, to be removed once the index has been read.
        let mut stale = Vec::new();
        // One entry, judged with the record `got` looked up for it.
        let mut judge = |k: &[u8], v: &[u8], got: &dyn RawRead| -> Result<()> {
            entries += 1;
            if misdirected.contains(&(idx.name, k.to_vec())) {
                return Ok(());
            }
            let Some(pk) = entry_target(idx, k, v) else {
                stale.push((
                    k.to_vec(),
                    format!(
                        "{table}.{}: malformed entry {}",
                        idx.name,
                        unless_secret::<R>(|| hex(k))
                    ),
                ));
                return Ok(());
            };
            let claims = match stored_record::<R>(got, pk, app)? {
                Stored::Sound(r) => index_entry(idx, &r, pk).as_deref() == Some(k),
                // Kept: what the record claims is known once its type reads it.
                Stored::Mismatch => true,
                Stored::Broken => false,
            };
            if !claims {
                stale.push((
                    k.to_vec(),
                    format!(
                        "{table}.{}: stale entry pointing at {}",
                        idx.name,
                        key_in_report::<R>(pk)
                    ),
                ));
            }
            Ok(())
        };
        let judge_pending = |pending: Entries, judge: &mut JudgeEntry<'_>| -> Result<()> {
            let mut got = Prefetched::new(raw);
            let targets: Vec<Vec<u8>> = pending
                .list
                .iter()
                .filter_map(|(k, v)| entry_target(idx, k, v).map(<[u8]>::to_vec))
                .collect();
            got.fetch(&record_table(table), &targets)?;
            for (k, v) in &pending.list {
                judge(k, v, &got)?;
            }
            Ok(())
        };
        let scanned = raw.range(
            &index_table(table, idx.name),
            &KeyRange::all(),
            Order::Asc,
            &mut |k, v| {
                if batch == 1 {
                    judge(k, v, raw)?;
                } else if pending.push(k, v) {
                    judge_pending(pending.take(), &mut judge)?;
                }
                Ok(true)
            },
        );
        let judged = judge_pending(pending.take(), &mut judge);
        scanned?;
        judged?;
        for (key, problem) in stale {
            found(Finding::Remove {
                index: idx.name,
                key,
                problem,
            })?;
        }
    }
    Ok((records, entries))
}

/// What judges one record of a walk: its key, what decoding it gave, where its index
/// entries are looked up, and where findings go.
type JudgeRecord<'j, R> = dyn FnMut(&[u8], Result<R>, &dyn RawRead, &mut dyn FnMut(Finding) -> Result<()>) -> Result<()>
    + 'j;

/// What judges one index entry of a walk: its key and value, and where its record is looked
/// up.
type JudgeEntry<'j> = dyn FnMut(&[u8], &[u8], &dyn RawRead) -> Result<()> + 'j;

/// Reads that answer the keys fetched ahead from what [`RawRead::get_each`] gave for them,
/// and everything else from the transaction.
struct Prefetched<'a> {
    raw: &'a dyn RawRead,
    got: BTreeMap<(String, Vec<u8>), Option<Vec<u8>>>,
}

impl<'a> Prefetched<'a> {
    fn new(raw: &'a dyn RawRead) -> Self {
        Prefetched {
            raw,
            got: BTreeMap::new(),
        }
    }

    /// Looks `keys` of `table` up, all together.
    fn fetch(&mut self, table: &str, keys: &[Vec<u8>]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut iter = keys.iter().map(Vec::as_slice);
        let got = &mut self.got;
        self.raw.get_each(table, &mut iter, &mut |k, v| {
            got.insert((table.to_string(), k.to_vec()), v.map(<[u8]>::to_vec));
            Ok(true)
        })
    }
}

impl Drop for Prefetched<'_> {
    fn drop(&mut self) {
        for ((_, mut key), value) in std::mem::take(&mut self.got) {
            key.zeroize();
            if let Some(mut value) = value {
                value.zeroize();
            }
        }
    }
}

impl RawRead for Prefetched<'_> {
    fn get(&self, table: &str, key: &[u8], f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        match self.got.get(&(table.to_string(), key.to_vec())) {
            Some(Some(v)) => f(v).map(|()| true),
            Some(None) => Ok(false),
            None => self.raw.get(table, key, f),
        }
    }

    fn range(&self, table: &str, range: &KeyRange, order: Order, f: Visit<'_>) -> Result<()> {
        self.raw.range(table, range, order, f)
    }

    fn len(&self, table: &str) -> Result<u64> {
        self.raw.len(table)
    }

    fn table_names(&self) -> Result<Vec<String>> {
        self.raw.table_names()
    }
}

impl<R: Record + 'static> TableCheck for Checker<R> {
    fn name(&self) -> &'static str {
        R::TABLE
    }

    fn info(&self) -> TableInfo {
        TableInfo::of::<R>()
    }

    fn highest_id(&self, tx: &dyn Source) -> Result<Option<u64>> {
        let mut out = None;
        if !R::ID_SEQUENCE {
            return Ok(None);
        }
        tx.raw().range(
            &record_table(R::TABLE),
            &KeyRange::all(),
            Order::Desc,
            &mut |k, _| {
                out = R::Key::from_bytes(k).and_then(|k| k.as_id());
                Ok(false)
            },
        )?;
        Ok(out)
    }

    fn stats(&self, tx: &dyn Source) -> Result<TableStats> {
        let size = |name: &str| -> Result<(u64, u64)> {
            let (mut n, mut bytes) = (0u64, 0u64);
            tx.raw()
                .range(name, &KeyRange::all(), Order::Asc, &mut |k, v| {
                    n += 1;
                    bytes += (k.len() + v.len()) as u64;
                    Ok(true)
                })?;
            Ok((n, bytes))
        };
        let (records, mut bytes) = size(&record_table(R::TABLE))?;
        let mut index_entries = 0;
        for idx in R::INDEXES {
            let (n, b) = size(&index_table(R::TABLE, idx.name))?;
            index_entries += n;
            bytes += b;
        }
        Ok(TableStats {
            records,
            index_entries,
            bytes,
        })
    }

    fn export(
        &self,
        tx: &dyn Source,
        f: &mut dyn FnMut(String, serde_json::Value) -> Result<()>,
    ) -> Result<()> {
        tx.raw().range(
            &record_table(R::TABLE),
            &KeyRange::all(),
            Order::Asc,
            &mut |k, v| {
                f(hex(k), self.record_json(tx, k, v)?)?;
                Ok(true)
            },
        )
    }

    fn record_json(&self, tx: &dyn Source, key: &[u8], value: &[u8]) -> Result<serde_json::Value> {
        let raw = tx.raw();
        let resolve = |id| resolve_shape(raw, id);
        let record = decode_record::<R>(key, value, &resolve)?;
        let mut json = serde_json::to_value(&record).map_err(|e| {
            Error::invalid("record", format!("cannot show a {} record: {e}", R::TABLE))
        })?;
        // The fields a rewrite keeps though the type does not know them (a newer build's):
        // shown, so an export carries them (and an import into this build refuses them,
        // naming them, rather than losing them).
        if let serde_json::Value::Object(fields) = &mut json {
            for (name, bytes) in undeclared_fields::<R>(key, value, &resolve)? {
                let shown = format::to_json(&bytes, &resolve)
                    .map_err(|r| corrupt::<R>(key, r.to_string()))?;
                fields.insert(name.into(), shown);
            }
        }
        Ok(json)
    }

    fn expected_entries(
        &self,
        tx: &dyn Source,
        key: &[u8],
        value: &[u8],
    ) -> Result<Vec<ExpectedEntry>> {
        let raw = tx.raw();
        let resolve = |id| resolve_shape(raw, id);
        let record = decode_record::<R>(key, value, &resolve)?;
        Ok(R::INDEXES
            .iter()
            .map(|idx| ExpectedEntry {
                index: idx.name,
                unique: idx.unique,
                entry: index_entry(idx, &record, key).map(|k| (k, entry_value(idx, key))),
            })
            .collect())
    }

    fn own_key(&self, tx: &dyn Source, key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
        let raw = tx.raw();
        let resolve = |id| resolve_shape(raw, id);
        Ok(decode_record::<R>(key, value, &resolve)
            .map_or_else(|_| key.to_vec(), |r| r.key().to_bytes()))
    }

    fn stage(&self, tx: &WriteTx<'_>, key: &str, value: &serde_json::Value) -> Result<NewRecord> {
        let bad =
            |why: String| Error::invalid("record", format!("not a {} record: {why}", R::TABLE));
        // A field the type does not know would be dropped without a word (a newer build's
        // export, a misspelt name in an edited one); one it gave up is dropped as a rewrite
        // drops it.
        if let (serde_json::Value::Object(fields), Some(known)) =
            (value, format::declared_fields::<R>())
            && let Some(name) = fields
                .keys()
                .find(|k| !known.contains(&k.as_str()) && !R::DROPPED_FIELDS.contains(&k.as_str()))
        {
            let shown: String = name.chars().take(60).collect();
            return Err(bad(format!(
                "this build's {} records have no field {shown:?} (an export made by a newer \
                 build, or a misspelt name); import it with a build that knows the field, \
                 or take the field out",
                R::TABLE
            )));
        }
        let mut record: R =
            serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
        let bytes = unhex(key).ok_or_else(|| bad(format!("key {key:?} is not hex")))?;
        let k = R::Key::from_bytes(&bytes).ok_or_else(|| bad(format!("key {key} is malformed")))?;
        record.restore_key(&k);
        if record.key().to_bytes() != bytes {
            return Err(bad(format!("key {key} is not the record's own key")));
        }
        record.validate().map_err(bad)?;
        tx.table::<R>().stage(&record)
    }

    fn clear(&self, tx: &WriteTx<'_>) -> Result<()> {
        tx.table::<R>().clear().map(|_| ())
    }

    fn check(&self, tx: &dyn Source, report: &mut CheckReport) -> Result<()> {
        let mut progress = Progress::default();
        let batch = tx.raw().lookups_per_trip();
        let walked = walk::<R, _>(tx, self.app, batch, &mut progress, &mut |f| {
            report.problem(match f {
                Finding::Put { problem: p, .. } | Finding::Remove { problem: p, .. } => p,
                Finding::Mismatch { problem } => {
                    format!("{problem} (`redkeep check --repair` leaves it in place: fix the type)")
                }
                Finding::Unreadable {
                    problem,
                    misplaced: true,
                    ..
                } => format!(
                    "{problem} (`redkeep check --repair` moves it there if no record holds that \
                     key, else aside, into quarantine:{})",
                    R::TABLE
                ),
                Finding::Unreadable { problem, .. } => format!(
                    "{problem} (`redkeep check --repair` moves it aside, into quarantine:{})",
                    R::TABLE
                ),
            });
            Ok(())
        });
        let (records, index_entries) = match walked {
            Ok(counts) => counts,
            // The file itself gave way: say how far the table could be read.
            Err(e @ (Error::Damaged { .. } | Error::Storage { .. })) => {
                let at = progress
                    .last_key
                    .as_deref()
                    .map_or("its first record".to_string(), |k| {
                        format!("record {}", key_in_report::<R>(k))
                    });
                report.problem(format!(
                    "{}: {} record(s) read, then reading stopped after {at}: {e}",
                    R::TABLE,
                    progress.records
                ));
                (progress.records, 0)
            }
            Err(e) => return Err(e),
        };
        report.tables.insert(
            R::TABLE.to_string(),
            TableCounts {
                records,
                index_entries,
            },
        );
        Ok(())
    }

    fn rebuild_indexes(&self, tx: &WriteTx<'_>) -> Result<Vec<String>> {
        let raw = tx.raw_write()?;
        let mut changes = Vec::new();
        let mut unreadable = Vec::new();
        let mut progress = Progress::default();
        // Writes or removes the index entry a finding names; hands back any other finding.
        let mend = |f: Finding, changes: &mut Vec<String>| -> Result<Option<Finding>> {
            match f {
                Finding::Put {
                    index,
                    key,
                    value,
                    problem,
                } => {
                    raw.put(&index_table(R::TABLE, index), &key, &value)?;
                    changes.push(format!("fixed: {problem}"));
                }
                Finding::Remove {
                    index,
                    key,
                    problem,
                } => {
                    raw.remove(&index_table(R::TABLE, index), &key)?;
                    changes.push(format!("fixed: {problem}"));
                }
                other => return Ok(Some(other)),
            }
            Ok(None)
        };
        walk::<R, _>(tx, self.app, 1, &mut progress, &mut |f| {
            if let Some(Finding::Unreadable {
                key,
                problem,
                misplaced,
            }) = mend(f, &mut changes)?
            {
                unreadable.push((key, problem, misplaced));
            }
            Ok(())
        })?;
        if unreadable.is_empty() {
            return Ok(changes);
        }
        // A record stored under a key that is not its own (a damaged key) goes back to its
        // own key when that is free. Other unreadable records leave the table, their bytes
        // kept for whoever can read them. A second pass then mends the index entries: the
        // moved records' are written, those that pointed at what left are removed.
        let aside = quarantine_table(R::TABLE);
        let table = record_table(R::TABLE);
        let resolve = |id| resolve_shape(raw, id);
        // Whether another record holds a unique key `record` would take under `own`.
        let clashes = |record: &R, own: &[u8]| -> Result<bool> {
            for idx in R::INDEXES.iter().filter(|i| i.unique) {
                let Some(entry) = index_entry(idx, record, own) else {
                    continue;
                };
                if let Some(holder) = get_owned(raw, &index_table(R::TABLE, idx.name), &entry)?
                    && holder != own
                    && get_owned(raw, &table, &holder)?.is_some()
                {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        // What cannot be read leaves first, so that a misplaced record finds its key free
        // of it.
        unreadable.sort_by_key(|(_, _, misplaced)| *misplaced);
        for (key, problem, misplaced) in unreadable {
            let bytes = get_owned(raw, &table, &key)?;
            let back = bytes
                .as_deref()
                .filter(|_| misplaced)
                .and_then(|b| decode_record::<R>(&key, b, &resolve).ok())
                .map(|r| (r.key().to_bytes(), r))
                .filter(|(own, _)| *own != key);
            if let (Some((own, record)), Some(bytes)) = (back, &bytes)
                && get_owned(raw, &table, &own)?.is_none()
                && !clashes(&record, &own)?
            {
                raw.put(&table, &own, bytes)?;
                raw.remove(&table, &key)?;
                changes.push(format!(
                    "fixed: {}: the record stored under key {} says its key is {}, which was \
                     free; it was moved there",
                    R::TABLE,
                    key_in_report::<R>(&key),
                    key_in_report::<R>(&own)
                ));
                continue;
            }
            if let Some(bytes) = bytes {
                raw.put(&record_table(&aside), &key, &bytes)?;
            }
            raw.remove(&table, &key)?;
            changes.push(format!("fixed: {problem}; its bytes were moved to {aside}"));
        }
        walk::<R, _>(tx, self.app, 1, &mut Progress::default(), &mut |f| {
            mend(f, &mut changes).map(drop)
        })?;
        Ok(changes)
    }
}

/// Moves what repairs of redkeep 0.3 and earlier set aside (tables named `quarantine:<t>`,
/// which no tool read) into the record tables where repairs keep them now
/// (`r:quarantine:<t>`, read by `inspect`, carried by exports). Returns what it moved.
///
/// # Errors
/// `Storage` when the store cannot be written.
pub(crate) fn move_old_quarantine(tx: &WriteTx<'_>) -> Result<Vec<String>> {
    let raw = tx.raw_write()?;
    let mut changes = Vec::new();
    for name in raw.table_names()? {
        if !name.starts_with("quarantine:") {
            continue;
        }
        let mut rows = Vec::new();
        raw.range(&name, &KeyRange::all(), Order::Asc, &mut |k, v| {
            rows.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })?;
        let to = record_table(&name);
        for (k, v) in &rows {
            raw.put(&to, k, v)?;
        }
        raw.delete_table(&name)?;
        changes.push(format!(
            "fixed: {} record(s) an earlier version set aside in {name} are now readable there \
             (`redkeep inspect dump {name}`)",
            rows.len()
        ));
    }
    Ok(changes)
}

/// The table where a repair keeps the raw bytes of records it takes out of `table`.
pub(crate) fn quarantine_table(table: &str) -> String {
    format!("quarantine:{table}")
}

/// Takes the record of `R` under `key` out of its table (index entries too) and keeps its
/// stored bytes in [`quarantine_table`], where they stay readable. Returns whether there was
/// one.
///
/// # Errors
/// `Storage` when the store cannot be written.
pub(crate) fn set_aside<R: Record>(tx: &WriteTx<'_>, key: &R::Key) -> Result<bool> {
    let pk = key.to_bytes();
    let raw = tx.raw_write()?;
    let Some(bytes) = get_owned(raw, &record_table(R::TABLE), &pk)? else {
        return Ok(false);
    };
    raw.put(&record_table(&quarantine_table(R::TABLE)), &pk, &bytes)?;
    tx.table::<R>().delete(key)?;
    Ok(true)
}
