//! Sizes of a store, per table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::Redkeep;
use crate::error::Result;
use crate::handle::SCHEMA_VERSION;
use crate::store::TableStats;

/// Sizes of a store.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Per table.
    pub tables: BTreeMap<String, TableStats>,
    /// The store's size in bytes: the file's, or its tables' on the PostgreSQL server.
    pub file_bytes: u64,
    /// The store file, or the server and schema of a PostgreSQL store.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub path: PathBuf,
    /// Its schema version.
    pub schema_version: u64,
    /// The storage engine: `redb` or `postgres`.
    pub engine: &'static str,
}

/// Records, index entries and bytes per table, and the file size.
///
/// # Errors
/// `Storage` when the store cannot be read.
pub fn stats(rk: &Redkeep) -> Result<Stats> {
    let tables = rk.tables();
    let per_table = rk.store().read(|tx| {
        let mut out = BTreeMap::new();
        for t in &tables {
            out.insert(t.name().to_string(), t.stats(tx)?);
        }
        Ok(out)
    })?;
    let path = rk.store().path().to_path_buf();
    Ok(Stats {
        tables: per_table,
        file_bytes: rk.store().size_bytes().unwrap_or(0),
        schema_version: rk.store().schema_version()?.unwrap_or(SCHEMA_VERSION),
        engine: rk.store().engine(),
        path,
    })
}
