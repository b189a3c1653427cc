//! Any table of a store as an operator looks at it (`redkeep inspect`): found by name, its
//! records read through their type when the handle knows it, else through the self-describing
//! values of format 2 (a format-1 value without its type shows only its key and size), and its
//! index entries with the record each points at and whether that record agrees. Everything
//! reads inside the caller's one snapshot and nothing writes; scans call back record by record,
//! so memory does not grow with the table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::check::TableCheck;
use super::codec::{FORMAT_CURRENT, FORMAT_LEGACY, Stored};
use super::engine::{KeyRange, Order, get_owned};
use super::key_text;
use super::table::{entry_target_raw, index_table, record_table};
use super::tx::{Meta, ReadTx, Source, TableInfo, resolve_shape};
use crate::error::{Error, Result};

/// One table of a store, found by name, as `redkeep inspect` reads it.
#[derive(Clone)]
pub struct TableView {
    info: TableInfo,
    typed: Option<Arc<dyn TableCheck>>,
    catalogued: bool,
    indexes: Vec<IndexView>,
}

impl std::fmt::Debug for TableView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableView")
            .field("info", &self.info)
            .field("typed", &self.typed.is_some())
            .field("indexes", &self.indexes)
            .finish()
    }
}

/// One index of a [`TableView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexView {
    /// Its name.
    pub name: String,
    /// Whether it is unique; `None` for an index table that neither the record type nor the
    /// catalog names (an index the application dropped).
    pub unique: Option<bool>,
}

/// Records, bytes and record versions of a table, and the entries of each index.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableSummary {
    /// Records.
    pub records: u64,
    /// Bytes of the records' keys and values.
    pub bytes: u64,
    /// How many records each (version, format) holds, oldest first.
    pub versions: Vec<VersionCount>,
    /// Values whose format byte or version cannot be read.
    pub unreadable: u64,
    /// Each index.
    pub indexes: Vec<IndexSummary>,
}

/// How many records of one version and format a table holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionCount {
    /// The record version written with them.
    pub version: u32,
    /// The value format: 1 (the first release's bincode) or 2 (self-describing).
    pub format: u8,
    /// How many records.
    pub records: u64,
}

/// The entries of one index.
#[derive(Debug, Clone, Serialize)]
pub struct IndexSummary {
    /// The index.
    #[serde(flatten)]
    pub index: IndexView,
    /// Entries.
    pub entries: u64,
    /// Bytes of the entries' keys and values.
    pub bytes: u64,
}

/// What a stored record holds, as far as it can be read.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Read through the record type the handle knows (older versions upgraded).
    Typed(Value),
    /// Read from the self-describing value (format 2) without the type.
    Stored {
        /// The value's fields.
        json: Value,
        /// Why the type, when there is one, could not read it.
        problem: Option<String>,
    },
    /// A value of the first release's format (1), which only its type can read, and the
    /// handle has no type for the table.
    Opaque,
    /// The value cannot be read: why.
    Corrupt(String),
}

impl Content {
    /// The record's fields, when they could be read.
    pub fn json(&self) -> Option<&Value> {
        match self {
            Content::Typed(json) | Content::Stored { json, .. } => Some(json),
            Content::Opaque | Content::Corrupt(_) => None,
        }
    }
}

/// One stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    /// The primary key bytes.
    pub key: Vec<u8>,
    /// Size of the stored value in bytes.
    pub bytes: usize,
    /// The record version it was written with (`None` when unreadable).
    pub version: Option<u32>,
    /// The value format, 1 or 2 (`None` when unreadable).
    pub format: Option<u8>,
    /// What it holds.
    pub content: Content,
}

/// Where an index entry a record should have stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// The index holds it, pointing at the record.
    Present,
    /// The index does not hold it.
    Missing,
    /// The (unique) index holds the value, for another record.
    PointsElsewhere,
    /// The index holds it with a malformed value.
    Malformed,
    /// The record has no entry in this index (the indexed field is unset).
    None,
}

/// The entry one index should hold for a record, and whether it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCheck {
    /// The index.
    pub index: String,
    /// Whether it is unique.
    pub unique: bool,
    /// The indexed value (the entry's key without the record's primary key); `None` when
    /// the record has no entry.
    pub value: Option<Vec<u8>>,
    /// Whether the index holds it.
    pub state: EntryState,
    /// The record the entry points at instead, for `PointsElsewhere`.
    pub points_at: Option<Vec<u8>>,
}

/// One index entry, with the record it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    /// The indexed value (the entry's key without the primary key).
    pub value: Vec<u8>,
    /// The primary key it points at; `None` when the entry is malformed.
    pub target: Option<Vec<u8>>,
    /// Whether a record is stored under that key.
    pub exists: bool,
    /// Whether that record derives this very entry; `None` when that cannot be told (no
    /// record type here, or a record that does not decode).
    pub agrees: Option<bool>,
    /// What is wrong, in a few words.
    pub problem: Option<String>,
}

/// The field names a table's records are known to use.
#[derive(Debug, Clone, Default)]
pub struct FieldNames {
    /// The fields of the first record, in its order.
    pub first: Vec<String>,
    /// Every field name of every struct shape in the store's registry: records of other
    /// versions may use fields the first one lacks.
    pub registered: BTreeSet<String>,
}

impl FieldNames {
    /// Whether any record may have the field `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.first.iter().any(|f| f == name) || self.registered.contains(name)
    }
}

fn version_of(value: &[u8]) -> Option<(u32, u8)> {
    // Only the header is read: no shape is needed.
    let none = |id: u64| -> std::result::Result<super::format::Shape, super::format::FormatError> {
        Err(super::format::FormatError(format!("shape {id:016x}")))
    };
    let s = Stored::parse(value, &none).ok()?;
    let format = if s.is_legacy() {
        FORMAT_LEGACY
    } else {
        FORMAT_CURRENT
    };
    Some((s.version(), format))
}

impl TableView {
    /// Every table of the store, by name: the record tables present, the tables of the
    /// catalog and those of `known` (the types the handle reads), with their indexes.
    ///
    /// # Errors
    /// `Storage` when the store cannot be read.
    pub fn all(tx: &ReadTx<'_>, known: &[Arc<dyn TableCheck>]) -> Result<Vec<TableView>> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut index_tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for raw in tx.table_names()? {
            if let Some(name) = raw.strip_prefix("r:") {
                names.insert(name.to_string());
            } else if let Some((table, index)) =
                raw.strip_prefix("i:").and_then(|r| r.split_once(':'))
            {
                index_tables
                    .entry(table.to_string())
                    .or_default()
                    .push(index.to_string());
            }
        }
        let catalog: BTreeMap<String, TableInfo> = tx
            .catalog()?
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        names.extend(catalog.keys().cloned());
        names.extend(known.iter().map(|t| t.name().to_string()));
        let id_key_len = |tx: &ReadTx<'_>, name: &str| -> Option<usize> {
            // A table nothing describes (written before the catalog): when its first and
            // last keys are ids (8 bytes) or pairs of ids (16), take its keys to be.
            let mut ends = [None, None];
            for (end, order) in ends.iter_mut().zip([Order::Asc, Order::Desc]) {
                let _ =
                    tx.raw()
                        .range(&record_table(name), &KeyRange::all(), order, &mut |k, _| {
                            *end = Some(k.len());
                            Ok(false)
                        });
            }
            match ends {
                [Some(a), Some(b)] if a == b && (a == 8 || a == 16) => Some(a),
                _ => None,
            }
        };
        Ok(names
            .into_iter()
            .map(|name| {
                let typed = known.iter().find(|t| t.name() == name).cloned();
                let catalogued = catalog.contains_key(&name);
                // A quarantine table holds records set aside from the table it is named
                // after: their secrets are that table's.
                let base = name.strip_prefix("quarantine:").and_then(|b| {
                    known
                        .iter()
                        .find(|t| t.name() == b)
                        .map(|t| t.info())
                        .or_else(|| catalog.get(b).cloned())
                });
                let info = match (&typed, catalog.get(&name)) {
                    (Some(t), _) => t.info(),
                    (None, Some(info)) => info.clone(),
                    (None, None) => TableInfo {
                        name: name.clone(),
                        version: 0,
                        key_len: id_key_len(tx, &name),
                        indexes: Vec::new(),
                        secret_fields: base
                            .as_ref()
                            .map(|b| b.secret_fields.clone())
                            .unwrap_or_default(),
                        secret_key: base.as_ref().is_some_and(|b| b.secret_key),
                    },
                };
                let mut indexes: Vec<IndexView> = info
                    .indexes
                    .iter()
                    .map(|i| IndexView {
                        name: i.name.clone(),
                        unique: Some(i.unique),
                    })
                    .collect();
                for orphan in index_tables.remove(&name).unwrap_or_default() {
                    if !indexes.iter().any(|i| i.name == orphan) {
                        indexes.push(IndexView {
                            name: orphan,
                            unique: None,
                        });
                    }
                }
                TableView {
                    info,
                    typed,
                    catalogued,
                    indexes,
                }
            })
            .collect())
    }

    /// The table named `name`.
    ///
    /// # Errors
    /// `InvalidInput` naming every table when the store has none of that name.
    pub fn find(tx: &ReadTx<'_>, known: &[Arc<dyn TableCheck>], name: &str) -> Result<TableView> {
        let all = Self::all(tx, known)?;
        let names: Vec<String> = all.iter().map(|t| t.name().to_string()).collect();
        all.into_iter().find(|t| t.name() == name).ok_or_else(|| {
            Error::invalid(
                "table",
                format!(
                    "the store has no table {name:?}; its tables are {}",
                    names.join(", ")
                ),
            )
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// What the record type or, without one, the catalog says of the table.
    pub fn info(&self) -> &TableInfo {
        &self.info
    }

    /// Whether the handle knows the record type (records read through it).
    pub fn is_typed(&self) -> bool {
        self.typed.is_some()
    }

    /// Whether the store's catalog names the table.
    pub fn is_catalogued(&self) -> bool {
        self.catalogued
    }

    /// The indexes: those of the type or catalog, then index tables nothing names.
    pub fn indexes(&self) -> &[IndexView] {
        &self.indexes
    }

    /// The index named `name`.
    ///
    /// # Errors
    /// `InvalidInput` naming the table's indexes when it has none of that name.
    pub fn index(&self, name: &str) -> Result<&IndexView> {
        self.indexes.iter().find(|i| i.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.indexes.iter().map(|i| i.name.as_str()).collect();
            Error::invalid(
                "index",
                if names.is_empty() {
                    format!("{} has no index", self.name())
                } else {
                    format!(
                        "{} has no index {name:?}; its indexes are {}",
                        self.name(),
                        names.join(", ")
                    )
                },
            )
        })
    }

    /// A primary key of this table as text an operator can type back ([`key_text`]).
    pub fn key_text(&self, key: &[u8]) -> String {
        key_text::key_text(key, self.info.key_len)
    }

    /// Reads a primary key of this table typed by an operator.
    ///
    /// # Errors
    /// `InvalidInput` saying what a key of this table looks like.
    pub fn parse_key(&self, text: &str) -> Result<Vec<u8>> {
        key_text::parse_key(text, self.info.key_len).map_err(|e| Error::invalid("key", e))
    }

    /// Counts records, bytes and versions, and the entries of each index (reads every value's
    /// header).
    ///
    /// # Errors
    /// `Storage` when the store cannot be read.
    pub fn summary(&self, tx: &ReadTx<'_>) -> Result<TableSummary> {
        let raw = tx.raw();
        let mut s = TableSummary::default();
        let mut versions: BTreeMap<(u32, u8), u64> = BTreeMap::new();
        raw.range(
            &record_table(self.name()),
            &KeyRange::all(),
            Order::Asc,
            &mut |k, v| {
                s.records += 1;
                s.bytes += (k.len() + v.len()) as u64;
                match version_of(v) {
                    Some(at) => *versions.entry(at).or_default() += 1,
                    None => s.unreadable += 1,
                }
                Ok(true)
            },
        )?;
        s.versions = versions
            .into_iter()
            .map(|((version, format), records)| VersionCount {
                version,
                format,
                records,
            })
            .collect();
        for index in &self.indexes {
            let (mut entries, mut bytes) = (0u64, 0u64);
            raw.range(
                &index_table(self.name(), &index.name),
                &KeyRange::all(),
                Order::Asc,
                &mut |k, v| {
                    entries += 1;
                    bytes += (k.len() + v.len()) as u64;
                    Ok(true)
                },
            )?;
            s.indexes.push(IndexSummary {
                index: index.clone(),
                entries,
                bytes,
            });
        }
        Ok(s)
    }

    /// Reads one stored value: through the type when there is one, else through its
    /// self-describing form.
    pub fn record(&self, tx: &ReadTx<'_>, key: &[u8], value: &[u8]) -> RecordView {
        let raw = tx.raw();
        let resolve = |id| resolve_shape(raw, id);
        let stored = Stored::parse(value, &resolve);
        let (version, format) = match &stored {
            Ok(s) if s.is_legacy() => (Some(s.version()), Some(FORMAT_LEGACY)),
            Ok(s) => (Some(s.version()), Some(FORMAT_CURRENT)),
            Err(_) => (None, None),
        };
        let content = match (&self.typed, stored) {
            (_, Err(why)) => Content::Corrupt(why),
            (Some(t), Ok(s)) => match t.record_json(tx, key, value) {
                Ok(json) => Content::Typed(json),
                Err(e) => match s.to_json() {
                    Ok(json) => Content::Stored {
                        json,
                        problem: Some(e.to_string()),
                    },
                    Err(_) => Content::Corrupt(e.to_string()),
                },
            },
            (None, Ok(s)) if s.is_legacy() => Content::Opaque,
            (None, Ok(s)) => match s.to_json() {
                Ok(json) => Content::Stored {
                    json,
                    problem: None,
                },
                Err(why) => Content::Corrupt(why),
            },
        };
        RecordView {
            key: key.to_vec(),
            bytes: value.len(),
            version,
            format,
            content,
        }
    }

    /// Calls `f` with each record whose key falls in `range`, in key order, until it returns
    /// `false`.
    ///
    /// # Errors
    /// `f`'s error; `Storage` when the store cannot be read.
    pub fn for_each(
        &self,
        tx: &ReadTx<'_>,
        range: &KeyRange,
        f: &mut dyn FnMut(RecordView) -> Result<bool>,
    ) -> Result<()> {
        tx.raw().range(
            &record_table(self.name()),
            range,
            Order::Asc,
            &mut |k, v| f(self.record(tx, k, v)),
        )
    }

    /// The record stored under `key`.
    ///
    /// # Errors
    /// `Storage` when the store cannot be read.
    pub fn get(&self, tx: &ReadTx<'_>, key: &[u8]) -> Result<Option<RecordView>> {
        let value = get_owned(tx.raw(), &record_table(self.name()), key)?;
        Ok(value.map(|v| self.record(tx, key, &v)))
    }

    /// The field names the table's records are known to use.
    ///
    /// # Errors
    /// `Corrupt` for a malformed shape registry; `Storage` when the store cannot be read.
    pub fn field_names(&self, tx: &ReadTx<'_>) -> Result<FieldNames> {
        let mut first = Vec::new();
        self.for_each(tx, &KeyRange::all(), &mut |r| {
            if let Some(Value::Object(map)) = r.content.json() {
                first = map.keys().cloned().collect();
                return Ok(false);
            }
            Ok(true)
        })?;
        let registered = tx
            .shapes()?
            .into_iter()
            .flat_map(|(_, names)| names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .collect();
        Ok(FieldNames { first, registered })
    }

    /// The entry each index should hold for the record stored under `key`, and whether it
    /// does. `Err` holds why they cannot be derived: without the record type (or when the
    /// record does not decode) the indexes' functions are unknown.
    ///
    /// # Errors
    /// `Storage` when the store cannot be read.
    pub fn entries_of(
        &self,
        tx: &ReadTx<'_>,
        key: &[u8],
    ) -> Result<std::result::Result<Vec<EntryCheck>, String>> {
        let Some(typed) = &self.typed else {
            return Ok(Err(format!(
                "the entries a record should have are computed by the application's code; this process has no type for {} (run the command inside the application, through its admin socket)",
                self.name()
            )));
        };
        let Some(value) = get_owned(tx.raw(), &record_table(self.name()), key)? else {
            return Ok(Err("no record is stored under that key".into()));
        };
        let expected = match typed.expected_entries(tx, key, &value) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let mut out = Vec::with_capacity(expected.len());
        for e in expected {
            let Some((entry, want)) = e.entry else {
                out.push(EntryCheck {
                    index: e.index.to_string(),
                    unique: e.unique,
                    value: None,
                    state: EntryState::None,
                    points_at: None,
                });
                continue;
            };
            let value = if e.unique {
                entry.clone()
            } else {
                entry[..entry.len().saturating_sub(key.len())].to_vec()
            };
            let got = get_owned(tx.raw(), &index_table(self.name(), e.index), &entry)?;
            let (state, points_at) = match got {
                None => (EntryState::Missing, None),
                Some(g) if g == want => (EntryState::Present, None),
                Some(g) if e.unique => (EntryState::PointsElsewhere, Some(g)),
                Some(_) => (EntryState::Malformed, None),
            };
            out.push(EntryCheck {
                index: e.index.to_string(),
                unique: e.unique,
                value: Some(value),
                state,
                points_at,
            });
        }
        Ok(Ok(out))
    }

    /// Calls `f` with each entry of `index` whose key falls in `range`, in index order, with
    /// the record it points at, until it returns `false`.
    ///
    /// # Errors
    /// `f`'s error; `Storage` when the store cannot be read.
    pub fn for_each_entry(
        &self,
        tx: &ReadTx<'_>,
        index: &IndexView,
        range: &KeyRange,
        f: &mut dyn FnMut(EntryView) -> Result<bool>,
    ) -> Result<()> {
        let raw = tx.raw();
        let records = record_table(self.name());
        let key_len = self.info.key_len;
        raw.range(
            &index_table(self.name(), &index.name),
            range,
            Order::Asc,
            &mut |entry, stored| {
                // An index nothing names is taken as unique when its values are whole keys.
                let unique = index
                    .unique
                    .unwrap_or(key_len.is_some_and(|n| n == stored.len()));
                let Some(target) = entry_target_raw(unique, key_len, entry, stored) else {
                    return f(EntryView {
                        value: entry.to_vec(),
                        target: None,
                        exists: false,
                        agrees: Some(false),
                        problem: Some("malformed entry".into()),
                    });
                };
                let value = if unique {
                    entry
                } else {
                    &entry[..entry.len() - target.len()]
                };
                let record = get_owned(raw, &records, target)?;
                let (agrees, problem) = match (&record, &self.typed) {
                    (None, _) => (Some(false), Some("no such record".to_string())),
                    (Some(_), None) => (None, None),
                    (Some(v), Some(t)) => match t.expected_entries(tx, target, v) {
                        Ok(expected) => {
                            let own = expected
                                .into_iter()
                                .find(|e| e.index == index.name)
                                .and_then(|e| e.entry);
                            match own {
                                Some((k, want)) if k == entry && want == stored => {
                                    (Some(true), None)
                                }
                                Some((k, _)) if k == entry => {
                                    (Some(false), Some("malformed entry value".into()))
                                }
                                Some(_) => {
                                    (Some(false), Some("the record derives another entry".into()))
                                }
                                None => (
                                    Some(false),
                                    Some("the record has no entry in this index".into()),
                                ),
                            }
                        }
                        Err(e) => (None, Some(format!("the record does not decode: {e}"))),
                    },
                };
                f(EntryView {
                    value: value.to_vec(),
                    target: Some(target.to_vec()),
                    exists: record.is_some(),
                    agrees,
                    problem,
                })
            },
        )
    }
}
