//! Typed tables: the `Record` trait, primary keys, and the table view over a transaction.
//!
//! A record lives in the redb table `r:<TABLE>` under its primary key bytes. Each index lives in
//! `i:<TABLE>:<index>`: a unique index maps index key → primary key; a non-unique index maps
//! index key ++ primary key → primary key. Every write of a record rewrites its index entries in
//! the same write transaction, so records and indexes never disagree.

use std::marker::PhantomData;
use std::ops::Bound;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::index::{Index, prefix_end};
use super::{RawTable, ReadTx, Source, WriteTx, codec};
use crate::error::{Error, Result};

/// A primary key: turned into bytes that sort like the key.
pub trait RecordKey: Sized + Clone {
    /// The key's bytes.
    fn to_bytes(&self) -> Vec<u8>;
    /// Parses bytes written by [`RecordKey::to_bytes`]; `None` when they are malformed.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

impl RecordKey for u64 {
    fn to_bytes(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

impl RecordKey for (u64, u64) {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.0.to_bytes();
        out.extend_from_slice(&self.1.to_be_bytes());
        out
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 16 {
            return None;
        }
        Some((u64::from_bytes(&bytes[..8])?, u64::from_bytes(&bytes[8..])?))
    }
}

impl RecordKey for [u8; 32] {
    fn to_bytes(&self) -> Vec<u8> {
        self.to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok()
    }
}

impl RecordKey for String {
    fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// A type stored in its own table with a primary key and secondary indexes.
///
/// ```
/// use redkeep::{Index, Record, key};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Project { id: u64, org_id: u64, name: String }
/// impl Record for Project {
///     const TABLE: &'static str = "projects";
///     type Key = u64;
///     const INDEXES: &'static [Index<Self>] = &[
///         Index::unique("name_in_org", |p| Some(key!(p.org_id, p.name))),
///         Index::many("by_org", |p| Some(key!(p.org_id))),
///     ];
///     fn key(&self) -> u64 { self.id }
/// }
/// ```
pub trait Record: Serialize + DeserializeOwned + 'static {
    /// The table's name; must be unique in the store.
    const TABLE: &'static str;
    /// The primary key type.
    type Key: RecordKey;
    /// The secondary indexes, kept exact by every write.
    const INDEXES: &'static [Index<Self>] = &[];
    /// The record's primary key.
    fn key(&self) -> Self::Key;
}

/// Which way a scan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest key first.
    Asc,
    /// Largest key first.
    Desc,
}

/// A range of key bytes to scan.
#[derive(Debug, Clone)]
pub struct KeyRange {
    pub(crate) start: Bound<Vec<u8>>,
    pub(crate) end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: Vec<u8>) -> Self {
        let end = match prefix_end(&prefix) {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        KeyRange {
            start: Bound::Included(prefix),
            end,
        }
    }

    /// Keys in `[start, end)`.
    pub fn between(start: Vec<u8>, end: Vec<u8>) -> Self {
        KeyRange {
            start: Bound::Included(start),
            end: Bound::Excluded(end),
        }
    }

    /// Keys strictly below `end`.
    pub fn below(end: Vec<u8>) -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Excluded(end),
        }
    }
}

pub(crate) fn record_table(table: &str) -> String {
    format!("r:{table}")
}

pub(crate) fn index_table(table: &str, index: &str) -> String {
    format!("i:{table}:{index}")
}

/// Shows a primary key in errors: as a number when it is 8 bytes, else hex.
pub(crate) fn show_key(bytes: &[u8]) -> String {
    match <[u8; 8]>::try_from(bytes) {
        Ok(b) => u64::from_be_bytes(b).to_string(),
        Err(_) => match std::str::from_utf8(bytes) {
            Ok(s) if s.chars().all(|c| c.is_ascii_graphic()) => s.to_string(),
            _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        },
    }
}

pub(crate) fn decode_record<R: Record>(key: &[u8], value: &[u8]) -> Result<R> {
    codec::decode(value).map_err(|reason| Error::Corrupt {
        table: R::TABLE.to_string(),
        key: show_key(key),
        reason,
    })
}

fn find_index<R: Record>(name: &str) -> Result<&'static Index<R>> {
    R::INDEXES
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| Error::invalid("index", format!("table {} has no index {name}", R::TABLE)))
}

/// A typed view of one table inside a transaction. Read methods work in both read and write
/// transactions; write methods only in write transactions.
pub struct Table<'tx, R, S> {
    tx: &'tx S,
    _record: PhantomData<fn() -> R>,
}

impl<'tx, R: Record, S: Source> Table<'tx, R, S> {
    pub(crate) fn new(tx: &'tx S) -> Self {
        Table {
            tx,
            _record: PhantomData,
        }
    }

    fn records(&self) -> Result<RawTable<'tx>> {
        self.tx.raw(&record_table(R::TABLE))
    }

    fn index(&self, index: &Index<R>) -> Result<RawTable<'tx>> {
        self.tx.raw(&index_table(R::TABLE, index.name))
    }

    /// The record with this primary key.
    pub fn get(&self, key: &R::Key) -> Result<Option<R>> {
        self.get_raw(&key.to_bytes())
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<R>> {
        match self.records()?.get(key)? {
            Some(v) => decode_record::<R>(key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The record whose unique index `index` holds `key` (built with [`key!`](crate::key)).
    pub fn get_by(&self, index: &str, key: &[u8]) -> Result<Option<R>> {
        let idx = find_index::<R>(index)?;
        if !idx.unique {
            return Err(Error::invalid(
                "index",
                format!("{}.{index} is not unique; scan it instead", R::TABLE),
            ));
        }
        match self.index(idx)?.get(key)? {
            Some(pk) => self.get_raw(&pk),
            None => Ok(None),
        }
    }

    /// Records whose entry in `index` falls in `range`, in index order, at most `limit`.
    pub fn scan_by(
        &self,
        index: &str,
        range: KeyRange,
        order: Order,
        limit: Option<usize>,
    ) -> Result<Vec<R>> {
        let idx = find_index::<R>(index)?;
        let entries = self.index(idx)?.range(&range, order, limit)?;
        let records = self.records()?;
        let mut out = Vec::with_capacity(entries.len());
        for (_, pk) in entries {
            let value = records.get(&pk)?.ok_or_else(|| Error::Corrupt {
                table: R::TABLE.to_string(),
                key: show_key(&pk),
                reason: format!("index {index} points at a missing record"),
            })?;
            out.push(decode_record::<R>(&pk, &value)?);
        }
        Ok(out)
    }

    /// Records whose primary key falls in `range` (bytes of [`RecordKey::to_bytes`]).
    pub fn scan(&self, range: KeyRange, order: Order, limit: Option<usize>) -> Result<Vec<R>> {
        self.records()?
            .range(&range, order, limit)?
            .into_iter()
            .map(|(k, v)| decode_record::<R>(&k, &v))
            .collect()
    }

    /// Every record, in primary-key order.
    pub fn all(&self) -> Result<Vec<R>> {
        self.scan(KeyRange::all(), Order::Asc, None)
    }

    /// Every record that decodes, in primary-key order; damaged ones are skipped (for checks,
    /// which report them separately).
    pub fn readable(&self) -> Result<Vec<R>> {
        Ok(self
            .records()?
            .range(&KeyRange::all(), Order::Asc, None)?
            .into_iter()
            .filter_map(|(k, v)| decode_record::<R>(&k, &v).ok())
            .collect())
    }

    /// Every primary key, ascending, without decoding the records (works on damaged ones).
    pub fn keys(&self) -> Result<Vec<R::Key>> {
        self.records()?
            .range(&KeyRange::all(), Order::Asc, None)?
            .into_iter()
            .map(|(k, _)| {
                R::Key::from_bytes(&k).ok_or_else(|| Error::Corrupt {
                    table: R::TABLE.to_string(),
                    key: show_key(&k),
                    reason: "malformed primary key".into(),
                })
            })
            .collect()
    }

    /// Number of records.
    pub fn count(&self) -> Result<u64> {
        self.records()?.len()
    }

    /// Number of entries of `index` in `range`.
    pub fn count_by(&self, index: &str, range: KeyRange) -> Result<u64> {
        let idx = find_index::<R>(index)?;
        Ok(self.index(idx)?.range(&range, Order::Asc, None)?.len() as u64)
    }
}

/// The entry of each index for one record, in `R::INDEXES` order.
fn index_entries<R: Record>(record: &R, pk: &[u8]) -> Vec<Option<Vec<u8>>> {
    R::INDEXES
        .iter()
        .map(|idx| index_entry(idx, record, pk))
        .collect()
}

/// The bytes of an index entry and its value, for one record.
pub(crate) fn index_entry<R: Record>(idx: &Index<R>, record: &R, pk: &[u8]) -> Option<Vec<u8>> {
    let mut key = (idx.key)(record)?;
    if !idx.unique {
        key.extend_from_slice(pk);
    }
    Some(key)
}

impl<'tx, R: Record> Table<'tx, R, WriteTx> {
    /// The next id of this table's sequence (1, 2, …); ids are never reused.
    pub fn next_id(&self) -> Result<u64> {
        self.tx.next_sequence(R::TABLE)
    }

    /// Inserts a new record. A record with the same primary key, or a clash in a unique index,
    /// is a `Conflict` and writes nothing.
    pub fn insert(&self, record: &R) -> Result<()> {
        let pk = record.key().to_bytes();
        if self.records()?.get(&pk)?.is_some() {
            return Err(Error::Conflict {
                table: R::TABLE,
                index: "primary",
                detail: format!("key {}", show_key(&pk)),
            });
        }
        self.write(&pk, &vec![None; R::INDEXES.len()], record)
    }

    /// Replaces the stored record with the same primary key, moving its index entries.
    /// A missing record is `NotFound`; a unique clash is a `Conflict` and writes nothing.
    pub fn update(&self, record: &R) -> Result<()> {
        let pk = record.key().to_bytes();
        let old = self
            .get_raw(&pk)?
            .ok_or_else(|| Error::not_found(format!("{} {}", R::TABLE, show_key(&pk))))?;
        self.write(&pk, &index_entries(&old, &pk), record)
    }

    /// Reads the record, lets `f` change it, and writes it back: one read-modify-write.
    pub fn modify<T>(&self, key: &R::Key, f: impl FnOnce(&mut R) -> Result<T>) -> Result<T> {
        let pk = key.to_bytes();
        let bytes = self
            .records()?
            .get(&pk)?
            .ok_or_else(|| Error::not_found(format!("{} {}", R::TABLE, show_key(&pk))))?;
        let mut record = decode_record::<R>(&pk, &bytes)?;
        let old_entries = index_entries(&record, &pk);
        let out = f(&mut record)?;
        if record.key().to_bytes() != pk {
            return Err(Error::invalid(
                "key",
                "a modification must keep the primary key",
            ));
        }
        self.write(&pk, &old_entries, &record)?;
        Ok(out)
    }

    /// Removes the record and its index entries; returns it, or `None` if it did not exist.
    pub fn delete(&self, key: &R::Key) -> Result<Option<R>> {
        let pk = key.to_bytes();
        let Some(old) = self.get_raw(&pk)? else {
            return Ok(None);
        };
        for idx in R::INDEXES {
            if let Some(k) = index_entry(idx, &old, &pk) {
                self.index(idx)?.remove(&k)?;
            }
        }
        self.records()?.remove(&pk)?;
        Ok(Some(old))
    }

    // Checks every unique index first, so a clash leaves nothing behind, then writes.
    // `old` holds the stored record's entry of each index (all `None` for a new record).
    fn write(&self, pk: &[u8], old: &[Option<Vec<u8>>], new: &R) -> Result<()> {
        let value = codec::encode(new).map_err(encode_err::<R>)?;
        let mut moves = Vec::new();
        for (idx, old_key) in R::INDEXES.iter().zip(old.iter().cloned()) {
            let new_key = index_entry(idx, new, pk);
            if old_key == new_key {
                continue;
            }
            if let (true, Some(k)) = (idx.unique, &new_key)
                && let Some(holder) = self.index(idx)?.get(k)?
                && holder != pk
            {
                return Err(Error::Conflict {
                    table: R::TABLE,
                    index: idx.name,
                    detail: format!("held by {}", show_key(&holder)),
                });
            }
            moves.push((idx, old_key, new_key));
        }
        for (idx, old_key, new_key) in moves {
            let mut table = self.index(idx)?;
            if let Some(k) = old_key {
                table.remove(&k)?;
            }
            if let Some(k) = new_key {
                table.insert(&k, pk)?;
            }
        }
        self.records()?.insert(pk, &value)
    }
}

fn encode_err<R: Record>(reason: String) -> Error {
    Error::invalid(
        "record",
        format!("cannot store a {} record: {reason}", R::TABLE),
    )
}

impl ReadTx {
    /// A typed view of the table of `R`.
    pub fn table<R: Record>(&self) -> Table<'_, R, ReadTx> {
        Table::new(self)
    }
}

impl WriteTx {
    /// A typed view of the table of `R`.
    pub fn table<R: Record>(&self) -> Table<'_, R, WriteTx> {
        Table::new(self)
    }
}
