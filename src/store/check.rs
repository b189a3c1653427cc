//! Whole-table operations on a record type without knowing the type at the call site:
//! integrity checks (every record decodes, is stored under its own key, and every index
//! mirrors the records exactly), index rebuilds, sizes, and JSON export / import.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::Serialize;

use super::engine::{KeyRange, Order};
use super::key::{Key, show_key};
use super::table::{Record, decode_record, entry_value, index_entry, index_table, record_table};
use super::tx::{Source, TableInfo, WriteTx, resolve_shape};
use crate::bytes::hex;
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
    fn import(&self, tx: &WriteTx<'_>, key: &str, value: &serde_json::Value) -> Result<()>;
    /// Deletes every record and index entry.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    fn clear(&self, tx: &WriteTx<'_>) -> Result<()>;
}

struct Checker<R>(PhantomData<fn() -> R>);

/// The [`TableCheck`] of record type `R`.
pub fn check_table<R: Record + 'static>() -> Box<dyn TableCheck> {
    Box::new(Checker::<R>(PhantomData))
}

type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

/// What the records say the indexes should hold: index name → (entry key → entry value),
/// for the records that decode and are stored under their own key. Problems found on the way
/// are added to `problems`.
fn expected<R: Record, S: Source + ?Sized>(
    tx: &S,
    problems: &mut Vec<String>,
) -> Result<(u64, BTreeMap<&'static str, Entries>)> {
    let mut want: BTreeMap<&'static str, Entries> = R::INDEXES
        .iter()
        .map(|i| (i.name, Entries::new()))
        .collect();
    let raw = tx.raw();
    let resolve = |id| resolve_shape(raw, id);
    let mut count = 0u64;
    raw.range(&record_table(R::TABLE), &KeyRange::all(), Order::Asc, &mut |pk, value| {
        count += 1;
        let record = match decode_record::<R>(pk, value, &resolve) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e.to_string());
                return Ok(true);
            }
        };
        let own = record.key().to_bytes();
        if own != pk {
            problems.push(format!(
                "{}: the record stored under key {} says its key is {}; its index entries are not rebuilt (restore a backup, or delete it)",
                R::TABLE,
                show_key(pk),
                show_key(&own)
            ));
            return Ok(true);
        }
        for idx in R::INDEXES {
            if let Some(k) = index_entry(idx, &record, pk) {
                let entries = want.entry(idx.name).or_default();
                if let Some(other) = entries.insert(k, entry_value(idx, pk))
                    && idx.unique
                {
                    problems.push(format!(
                        "{}.{}: records {} and {} claim the same unique key",
                        R::TABLE,
                        idx.name,
                        show_key(&other),
                        show_key(pk)
                    ));
                }
            }
        }
        Ok(true)
    })?;
    Ok((count, want))
}

fn actual<S: Source + ?Sized>(tx: &S, table: &str, index: &str) -> Result<Entries> {
    let mut out = Entries::new();
    tx.raw().range(
        &index_table(table, index),
        &KeyRange::all(),
        Order::Asc,
        &mut |k, v| {
            out.insert(k.to_vec(), v.to_vec());
            Ok(true)
        },
    )?;
    Ok(out)
}

// Differences between expected and actual entries of one index, as sentences.
fn diff<R: Record>(index: &str, unique: bool, want: &Entries, have: &Entries) -> Vec<String> {
    let table = R::TABLE;
    let target = |k: &[u8], v: &[u8]| -> String {
        if unique {
            return show_key(v);
        }
        match R::Key::FIXED_LEN {
            Some(n) if k.len() >= n => show_key(&k[k.len() - n..]),
            _ => hex(k),
        }
    };
    let mut out = Vec::new();
    for (k, v) in want {
        match have.get(k) {
            None => out.push(format!(
                "{table}.{index}: entry for record {} is missing",
                target(k, v)
            )),
            Some(got) if got != v => out.push(format!(
                "{table}.{index}: entry points at {} instead of {}",
                target(k, got),
                target(k, v)
            )),
            Some(_) => {}
        }
    }
    for (k, v) in have {
        if !want.contains_key(k) {
            out.push(format!(
                "{table}.{index}: stale entry pointing at {}",
                target(k, v)
            ));
        }
    }
    out
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
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
        let raw = tx.raw();
        let resolve = |id| resolve_shape(raw, id);
        raw.range(
            &record_table(R::TABLE),
            &KeyRange::all(),
            Order::Asc,
            &mut |k, v| {
                let record = decode_record::<R>(k, v, &resolve)?;
                let json = serde_json::to_value(&record).map_err(|e| {
                    Error::invalid(
                        "record",
                        format!("cannot export a {} record: {e}", R::TABLE),
                    )
                })?;
                f(hex(k), json)?;
                Ok(true)
            },
        )
    }

    fn import(&self, tx: &WriteTx<'_>, key: &str, value: &serde_json::Value) -> Result<()> {
        let bad =
            |why: String| Error::invalid("record", format!("not a {} record: {why}", R::TABLE));
        let mut record: R =
            serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
        let bytes = parse_hex(key).ok_or_else(|| bad(format!("key {key:?} is not hex")))?;
        let k = R::Key::from_bytes(&bytes).ok_or_else(|| bad(format!("key {key} is malformed")))?;
        record.restore_key(&k);
        if record.key().to_bytes() != bytes {
            return Err(bad(format!("key {key} is not the record's own key")));
        }
        tx.table::<R>().insert(&record)
    }

    fn clear(&self, tx: &WriteTx<'_>) -> Result<()> {
        tx.table::<R>().clear().map(|_| ())
    }

    fn check(&self, tx: &dyn Source, report: &mut CheckReport) -> Result<()> {
        let mut problems = Vec::new();
        let (records, want) = expected::<R, _>(tx, &mut problems)?;
        let mut index_entries = 0;
        for idx in R::INDEXES {
            let have = actual(tx, R::TABLE, idx.name)?;
            index_entries += have.len() as u64;
            problems.extend(diff::<R>(idx.name, idx.unique, &want[idx.name], &have));
        }
        for p in problems {
            report.problem(p);
        }
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
        let mut ignored = Vec::new();
        let (_, want) = expected::<R, _>(tx, &mut ignored)?;
        let mut changes = Vec::new();
        let raw = tx.raw_write();
        for idx in R::INDEXES {
            let have = actual(tx, R::TABLE, idx.name)?;
            let want = &want[idx.name];
            let found = diff::<R>(idx.name, idx.unique, want, &have);
            if found.is_empty() {
                continue;
            }
            let name = index_table(R::TABLE, idx.name);
            for (k, v) in &have {
                if want.get(k) != Some(v) {
                    raw.remove(&name, k)?;
                }
            }
            for (k, v) in want {
                if have.get(k) != Some(v) {
                    raw.put(&name, k, v)?;
                }
            }
            changes.extend(found.into_iter().map(|p| format!("fixed: {p}")));
        }
        Ok(changes)
    }
}
