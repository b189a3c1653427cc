//! New records written in batches, as an import writes them: each record is checked and
//! encoded when it is staged, and a batch is checked against the store and itself with a
//! few lookups, then written with one statement per table. On a server a row at a time is
//! a round trip per record and index entry; a batch is a handful of round trips.
//!
//! A batch is refused as a whole: the clashes are found before anything of it is written,
//! and the record refused is the one a record-by-record insert would have refused first.

use std::collections::{BTreeMap, HashMap};

use zeroize::Zeroize;

use super::tx::WriteTx;
use crate::error::{Error, Result};

/// Keys in engine tables (a primary key, a unique value) with what holds them (the primary
/// key of their record).
type Claims = HashMap<(&'static str, Vec<u8>), Vec<u8>>;

/// An entry of an engine table: key and value.
type Entry = (Vec<u8>, Vec<u8>);

/// One new record, checked and encoded, with its index entries: what
/// [`Table::insert`](crate::store::Table::insert) would write. Made by
/// [`TableCheck::stage`](crate::store::TableCheck::stage); wiped when let go (a value may
/// hold a password hash).
pub struct NewRecord {
    /// The record type's table name, for messages.
    pub(super) table: &'static str,
    /// The engine table of the records.
    pub(super) records: &'static str,
    pub(super) pk: Vec<u8>,
    pub(super) value: Vec<u8>,
    pub(super) entries: Vec<NewEntry>,
    /// The primary key as a message shows it (`<redacted>` for a secret one).
    pub(super) shown: fn(&[u8]) -> String,
}

/// An index entry of a [`NewRecord`].
pub(super) struct NewEntry {
    /// The engine table of the index.
    pub(super) table: &'static str,
    /// The index's name, for messages.
    pub(super) index: &'static str,
    pub(super) unique: bool,
    pub(super) key: Vec<u8>,
    pub(super) value: Vec<u8>,
}

impl NewRecord {
    fn bytes(&self) -> usize {
        self.pk.len()
            + self.value.len()
            + self
                .entries
                .iter()
                .map(|e| e.key.len() + e.value.len())
                .sum::<usize>()
    }

    /// The clash that refuses this record: its primary key held in the store or by an
    /// earlier record of the batch; else, in index order, a unique value held for another
    /// record. The same check, in the same order, as an insert makes.
    fn clash(&self, stored: &Claims, earlier: &Claims) -> Option<Error> {
        let held = |table: &'static str, key: &[u8]| {
            let k = (table, key.to_vec());
            earlier.get(&k).or_else(|| stored.get(&k)).cloned()
        };
        if held(self.records, &self.pk).is_some() {
            return Some(Error::Conflict {
                table: self.table,
                index: "primary",
                detail: format!(
                    "{} already holds a record with key {}",
                    self.table,
                    (self.shown)(&self.pk)
                ),
            });
        }
        for e in self.entries.iter().filter(|e| e.unique) {
            match held(e.table, &e.key) {
                Some(holder) if holder != self.pk => {
                    return Some(Error::Conflict {
                        table: self.table,
                        index: e.index,
                        detail: format!(
                            "{}.{} already holds that value (held by {})",
                            self.table,
                            e.index,
                            (self.shown)(&holder)
                        ),
                    });
                }
                _ => {}
            }
        }
        None
    }
}

impl Drop for NewRecord {
    fn drop(&mut self) {
        self.pk.zeroize();
        self.value.zeroize();
        for e in &mut self.entries {
            e.key.zeroize();
            e.value.zeroize();
        }
    }
}

/// Why a batch of [`NewRecords`] was not written.
#[derive(Debug)]
pub enum Refused<T> {
    /// The record staged with tag `T` clashes (`Conflict`); nothing of the batch was
    /// written.
    Record(T, Error),
    /// The store failed; what the batch wrote is in the transaction, which the caller
    /// should roll back.
    Store(Error),
}

/// A batch of new records, each staged with a tag (an import's line number), written
/// together by [`NewRecords::write`].
pub struct NewRecords<T> {
    staged: Vec<(T, NewRecord)>,
    bytes: usize,
}

impl<T: Copy> Default for NewRecords<T> {
    fn default() -> Self {
        NewRecords {
            staged: Vec::new(),
            bytes: 0,
        }
    }
}

impl<T: Copy> NewRecords<T> {
    /// Records per batch: a few statements of a few hundred rows each.
    pub const RECORDS: usize = 500;
    /// About the most bytes a batch holds.
    pub const BYTES: usize = 4 << 20;

    /// Adds a record; returns whether the batch is full (time to [`write`](Self::write)).
    pub fn push(&mut self, tag: T, record: NewRecord) -> bool {
        self.bytes += record.bytes();
        self.staged.push((tag, record));
        self.staged.len() >= Self::RECORDS || self.bytes >= Self::BYTES
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Writes the records staged so far, which leaves the batch empty: first looks up, per
    /// table, the primary keys and unique values the batch claims, then refuses the first
    /// record (in the order staged) that an insert would refuse, or writes them all, one
    /// statement per table on an engine that batches.
    ///
    /// # Errors
    /// [`Refused::Record`] with the tag of the first record that clashes with the store or an
    /// earlier record of the batch (nothing written); [`Refused::Store`] when the engine
    /// fails.
    pub fn write(&mut self, tx: &WriteTx<'_>) -> std::result::Result<(), Refused<T>> {
        let staged = std::mem::take(&mut self.staged);
        self.bytes = 0;
        if staged.is_empty() {
            return Ok(());
        }
        let stored = held_now(tx, &staged).map_err(Refused::Store)?;
        // What the batch's records before the one checked claim: key -> the primary key.
        let mut earlier: Claims = HashMap::new();
        for (tag, r) in &staged {
            if let Some(clash) = r.clash(&stored, &earlier) {
                wipe(earlier);
                return Err(Refused::Record(*tag, clash));
            }
            earlier.insert((r.records, r.pk.clone()), r.pk.clone());
            for e in r.entries.iter().filter(|e| e.unique) {
                earlier.insert((e.table, e.key.clone()), r.pk.clone());
            }
        }
        wipe(earlier);
        wipe(stored);
        write_all(tx, &staged).map_err(Refused::Store)
    }
}

/// The values the store holds under the keys `staged` claims (primary keys, unique
/// values): one lookup per table for the lot on an engine where a lookup is a round trip.
fn held_now<T>(tx: &WriteTx<'_>, staged: &[(T, NewRecord)]) -> Result<Claims> {
    let mut wanted: BTreeMap<&'static str, Vec<&[u8]>> = BTreeMap::new();
    for (_, r) in staged {
        wanted.entry(r.records).or_default().push(&r.pk);
        for e in r.entries.iter().filter(|e| e.unique) {
            wanted.entry(e.table).or_default().push(&e.key);
        }
    }
    let raw = tx.raw_records();
    let mut held = HashMap::new();
    for (table, keys) in wanted {
        raw.get_each(table, &mut keys.into_iter(), &mut |key, value| {
            if let Some(v) = value {
                held.insert((table, key.to_vec()), v.to_vec());
            }
            Ok(true)
        })?;
    }
    Ok(held)
}

/// Writes the records and index entries of `staged`, table by table.
fn write_all<T>(tx: &WriteTx<'_>, staged: &[(T, NewRecord)]) -> Result<()> {
    let mut tables: BTreeMap<&'static str, Vec<Entry>> = BTreeMap::new();
    for (_, r) in staged {
        tables
            .entry(r.records)
            .or_default()
            .push((r.pk.clone(), r.value.clone()));
        for e in &r.entries {
            tables
                .entry(e.table)
                .or_default()
                .push((e.key.clone(), e.value.clone()));
        }
    }
    let raw = tx.raw_records();
    let mut out = Ok(());
    for (table, entries) in &tables {
        if out.is_ok() {
            out = raw.put_all(table, entries);
        }
    }
    for entries in tables.values_mut() {
        for (k, v) in entries {
            k.zeroize();
            v.zeroize();
        }
    }
    out
}

fn wipe(map: Claims) {
    for ((_, mut k), mut v) in map {
        k.zeroize();
        v.zeroize();
    }
}
