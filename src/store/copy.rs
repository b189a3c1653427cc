//! Copying a whole store into another, whatever engine each runs on: the redb snapshot of a
//! PostgreSQL store that backups, resets and migrations take, and the one-transaction
//! replacement that `redkeep move` and a PostgreSQL restore make.

#[cfg(feature = "postgres")]
use super::db::Durability;
use super::db::Store;
use super::engine::{Entries, KeyRange, Order};
use super::tx::{META, Meta, SEQ_PREFIX, Source};
use crate::error::Result;

/// Entries written in one statement (`RawWrite::put_all`) on an engine that batches.
const ENTRIES_PER_STATEMENT: usize = 1_000;

impl Store {
    /// Copies every table of one snapshot of this store into `dest`, in batches, then raises
    /// `dest`'s id sequences to this store's. Returns how many entries each table had. Meant
    /// for a `dest` that holds nothing yet: entries already there are overwritten, others
    /// stay.
    ///
    /// # Errors
    /// `Storage` when either store fails; what was copied before stays in `dest`.
    #[cfg(feature = "postgres")]
    pub(crate) fn copy_into(&self, dest: &Store) -> Result<Vec<(String, u64)>> {
        // The data is this store's, so is the version it was made at (if it says): `dest`'s
        // own, set when its file was made, would claim steps never ran on this data.
        dest.write(|tx| tx.remove_meta(crate::store::BORN_AT))?;
        let counts = self.read(|src| {
            let mut counts = Vec::new();
            let mut buf = Entries::new(ENTRIES_PER_STATEMENT);
            for name in src.raw().table_names()? {
                let mut n = 0u64;
                src.raw()
                    .range(&name, &KeyRange::all(), Order::Asc, &mut |k, v| {
                        n += 1;
                        // Sequences are copied below, in the form the destination keeps them.
                        if name == META && k.starts_with(SEQ_PREFIX) {
                            return Ok(true);
                        }
                        if buf.push(k, v) {
                            flush(dest, &name, &mut buf)?;
                        }
                        Ok(true)
                    })?;
                flush(dest, &name, &mut buf)?;
                counts.push((name, n));
            }
            let sequences = src.sequences()?;
            dest.write(|tx| {
                for (name, value) in &sequences {
                    tx.raise_sequence(name, *value)?;
                }
                Ok(())
            })?;
            Ok(counts)
        })?;
        // Catalog entries were overwritten with this store's.
        dest.registry().forget();
        Ok(counts)
    }

    /// Replaces everything in `dest` with one snapshot of this store, in a single transaction
    /// on `dest`: an error or a crash part way leaves `dest` exactly as it was. `dest`'s id
    /// sequences end at the higher of its own and this store's, so no id is handed out
    /// twice. The meta entries `marks` (key, value) are set in the same transaction (what an
    /// operation still has to do once the records are there, a new store id). Returns how many
    /// entries each table had.
    ///
    /// # Errors
    /// `Storage` when either store fails; `dest` is then unchanged.
    pub(crate) fn replace_into_marked(
        &self,
        dest: &Store,
        schema_version: u64,
        marks: &[(&str, &[u8])],
    ) -> Result<Vec<(String, u64)>> {
        let counts = self.read(|src| {
            let names = src.raw().table_names()?;
            let incoming = src.sequences()?;
            dest.write_here(|tx| {
                let kept = tx.sequences()?;
                tx.delete_all_tables()?;
                let raw = tx.raw_write()?;
                let mut counts = Vec::new();
                let mut buf = Entries::new(ENTRIES_PER_STATEMENT);
                for name in &names {
                    let mut n = 0u64;
                    src.raw()
                        .range(name, &KeyRange::all(), Order::Asc, &mut |k, v| {
                            n += 1;
                            if !(name == META && k.starts_with(SEQ_PREFIX)) && buf.push(k, v) {
                                buf.write(raw, name)?;
                            }
                            Ok(true)
                        })?;
                    buf.write(raw, name)?;
                    counts.push((name.clone(), n));
                }
                tx.set_schema_version(schema_version)?;
                for (table, value) in kept.iter().chain(incoming.iter()) {
                    tx.raise_sequence(table, *value)?;
                }
                // The marks of an operation stopped part way on this store's own data dir
                // (its staging folder, its folders) do not hold for `dest`'s.
                tx.remove_meta(super::tx::RESTORE_UNFINISHED)?;
                tx.remove_meta(super::tx::MOVE_UNFINISHED)?;
                for (key, value) in marks {
                    tx.set_meta(key, value)?;
                }
                Ok(counts)
            })
        })?;
        Ok(counts)
    }
}

#[cfg(feature = "postgres")]
fn flush(dest: &Store, table: &str, buf: &mut Entries) -> Result<()> {
    let batch = buf.take();
    if batch.list.is_empty() {
        return Ok(());
    }
    dest.write_with(Durability::None, |tx| {
        tx.raw_write()?.put_all(table, &batch.list)
    })
}
