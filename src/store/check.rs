//! Integrity checks of typed tables: every record decodes and every index mirrors its records
//! exactly (no missing entry, no dangling entry, no entry pointing at the wrong record).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::Serialize;

use super::table::{decode_record, index_entry, index_table, record_table, show_key};
use super::{KeyRange, Order, ReadTx, Record, Source, WriteTx};
use crate::error::Result;

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

/// Whole-table operations on a record type, without knowing the type: check, rebuild
/// indexes, size, and JSON export / import.
pub trait TableCheck: Send + Sync {
    /// The table's name.
    fn name(&self) -> &'static str;
    /// Checks records and indexes, adding counts and problems to `report`.
    fn check(&self, tx: &ReadTx, report: &mut CheckReport) -> Result<()>;
    /// Rewrites index entries to mirror the records; returns one line per change.
    fn rebuild_indexes(&self, tx: &WriteTx) -> Result<Vec<String>>;
    /// Records, index entries and bytes.
    fn stats(&self, tx: &ReadTx) -> Result<TableStats>;
    /// Every record as JSON, in primary-key order.
    fn export_json(&self, tx: &ReadTx) -> Result<Vec<serde_json::Value>>;
    /// Checks that a JSON value is a record of this table.
    fn validate_json(&self, value: &serde_json::Value) -> std::result::Result<(), String>;
    /// Inserts a record given as JSON (with its indexes).
    fn import_json(&self, tx: &WriteTx, value: &serde_json::Value) -> Result<()>;
    /// Deletes every record and index entry.
    fn clear(&self, tx: &WriteTx) -> Result<()>;
}

struct Checker<R>(PhantomData<fn() -> R>);

/// The [`TableCheck`] of record type `R`.
pub fn check_table<R: Record + 'static>() -> Box<dyn TableCheck> {
    Box::new(Checker::<R>(PhantomData))
}

type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

// Index name → expected entries (index key → primary key), from the records.
fn expected<R: Record, S: Source>(
    tx: &S,
    problems: &mut Vec<String>,
) -> Result<(u64, BTreeMap<&'static str, Entries>)> {
    let mut want: BTreeMap<&'static str, Entries> = R::INDEXES
        .iter()
        .map(|i| (i.name, Entries::new()))
        .collect();
    let rows = tx
        .raw(&record_table(R::TABLE))?
        .range(&KeyRange::all(), Order::Asc, None)?;
    let count = rows.len() as u64;
    for (pk, value) in rows {
        let record = match decode_record::<R>(&pk, &value) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        for idx in R::INDEXES {
            if let Some(k) = index_entry(idx, &record, &pk) {
                let entries = want.entry(idx.name).or_default();
                if let Some(other) = entries.insert(k, pk.clone()) {
                    problems.push(format!(
                        "{}.{}: records {} and {} claim the same unique key",
                        R::TABLE,
                        idx.name,
                        show_key(&other),
                        show_key(&pk)
                    ));
                }
            }
        }
    }
    Ok((count, want))
}

fn actual<S: Source>(tx: &S, table: &str, index: &str) -> Result<Entries> {
    Ok(tx
        .raw(&index_table(table, index))?
        .range(&KeyRange::all(), Order::Asc, None)?
        .into_iter()
        .collect())
}

// Differences between expected and actual entries of one index, as sentences.
fn diff(table: &str, index: &str, want: &Entries, have: &Entries) -> Vec<String> {
    let mut out = Vec::new();
    for (k, pk) in want {
        match have.get(k) {
            None => out.push(format!(
                "{table}.{index}: entry for record {} is missing",
                show_key(pk)
            )),
            Some(got) if got != pk => out.push(format!(
                "{table}.{index}: entry points at {} instead of {}",
                show_key(got),
                show_key(pk)
            )),
            Some(_) => {}
        }
    }
    for (k, pk) in have {
        if !want.contains_key(k) {
            out.push(format!(
                "{table}.{index}: stale entry pointing at {}",
                show_key(pk)
            ));
        }
    }
    out
}

impl<R: Record + 'static> TableCheck for Checker<R> {
    fn name(&self) -> &'static str {
        R::TABLE
    }

    fn stats(&self, tx: &ReadTx) -> Result<TableStats> {
        let size = |name: &str| -> Result<(u64, u64)> {
            let rows = tx.raw(name)?.range(&KeyRange::all(), Order::Asc, None)?;
            let bytes = rows.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
            Ok((rows.len() as u64, bytes))
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

    fn export_json(&self, tx: &ReadTx) -> Result<Vec<serde_json::Value>> {
        tx.table::<R>()
            .all()?
            .iter()
            .map(|r| {
                serde_json::to_value(r).map_err(|e| {
                    crate::Error::invalid(
                        "record",
                        format!("cannot export a {} record: {e}", R::TABLE),
                    )
                })
            })
            .collect()
    }

    fn validate_json(&self, value: &serde_json::Value) -> std::result::Result<(), String> {
        serde_json::from_value::<R>(value.clone())
            .map(|_| ())
            .map_err(|e| format!("not a {} record: {e}", R::TABLE))
    }

    fn import_json(&self, tx: &WriteTx, value: &serde_json::Value) -> Result<()> {
        let record: R = serde_json::from_value(value.clone()).map_err(|e| {
            crate::Error::invalid("record", format!("not a {} record: {e}", R::TABLE))
        })?;
        tx.table::<R>().insert(&record)
    }

    fn clear(&self, tx: &WriteTx) -> Result<()> {
        let t = tx.table::<R>();
        for k in t.keys()? {
            t.delete(&k)?;
        }
        Ok(())
    }

    fn check(&self, tx: &ReadTx, report: &mut CheckReport) -> Result<()> {
        let mut problems = Vec::new();
        let (records, want) = expected::<R, _>(tx, &mut problems)?;
        let mut index_entries = 0;
        for idx in R::INDEXES {
            let have = actual(tx, R::TABLE, idx.name)?;
            index_entries += have.len() as u64;
            problems.extend(diff(R::TABLE, idx.name, &want[idx.name], &have));
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

    fn rebuild_indexes(&self, tx: &WriteTx) -> Result<Vec<String>> {
        let mut ignored = Vec::new();
        let (_, want) = expected::<R, _>(tx, &mut ignored)?;
        let mut changes = Vec::new();
        for idx in R::INDEXES {
            let have = actual(tx, R::TABLE, idx.name)?;
            let want = &want[idx.name];
            let found = diff(R::TABLE, idx.name, want, &have);
            if found.is_empty() {
                continue;
            }
            let mut table = tx.raw(&index_table(R::TABLE, idx.name))?;
            for (k, pk) in &have {
                if want.get(k) != Some(pk) {
                    table.remove(k)?;
                }
            }
            for (k, pk) in want {
                if have.get(k) != Some(pk) {
                    table.insert(k, pk)?;
                }
            }
            changes.extend(found.into_iter().map(|p| format!("fixed: {p}")));
        }
        Ok(changes)
    }
}
