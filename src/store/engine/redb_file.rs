//! The redb engine: byte tables in one file. Each transaction opens a table at most once and
//! keeps it open until it ends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Bound;
use std::rc::Rc;

use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
    TableHandle,
};

use super::{KeyRange, Order, RawRead, RawWrite, Visit};
use crate::error::{Error, Result};

type Bytes = &'static [u8];

fn def(name: &str) -> TableDefinition<'_, Bytes, Bytes> {
    TableDefinition::new(name)
}

fn bounds(range: &KeyRange) -> (Bound<&[u8]>, Bound<&[u8]>) {
    fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(v) => Bound::Included(v.as_slice()),
            Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (as_ref(&range.start), as_ref(&range.end))
}

fn get_in<T: ReadableTable<Bytes, Bytes>>(
    t: &T,
    key: &[u8],
    f: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<bool> {
    match t.get(key).map_err(|e| Error::storage("reading", e))? {
        Some(v) => {
            f(v.value())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn range_in<T: ReadableTable<Bytes, Bytes>>(
    t: &T,
    range: &KeyRange,
    order: Order,
    f: Visit<'_>,
) -> Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    let iter = t
        .range::<&[u8]>(bounds(range))
        .map_err(|e| Error::storage("scanning", e))?;
    let mut visit = |item: std::result::Result<_, redb::StorageError>| -> Result<bool> {
        let (k, v): (redb::AccessGuard<Bytes>, redb::AccessGuard<Bytes>) =
            item.map_err(|e| Error::storage("scanning", e))?;
        f(k.value(), v.value())
    };
    match order {
        Order::Asc => {
            for item in iter {
                if !visit(item)? {
                    break;
                }
            }
        }
        Order::Desc => {
            for item in iter.rev() {
                if !visit(item)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

fn names<I: Iterator<Item = redb::UntypedTableHandle>>(
    listed: std::result::Result<I, redb::StorageError>,
) -> Result<Vec<String>> {
    Ok(listed
        .map_err(|e| Error::storage("listing tables", e))?
        .map(|h| h.name().to_string())
        .collect())
}

type ReadTable = Rc<redb::ReadOnlyTable<Bytes, Bytes>>;

/// A read transaction on the file.
pub(crate) struct FileRead {
    txn: redb::ReadTransaction,
    // `None`: the table does not exist in this snapshot.
    tables: RefCell<HashMap<String, Option<ReadTable>>>,
}

impl FileRead {
    pub(crate) fn begin(db: &redb::Database) -> Result<FileRead> {
        let txn = db
            .begin_read()
            .map_err(|e| Error::storage("beginning a read transaction", e))?;
        Ok(FileRead {
            txn,
            tables: RefCell::default(),
        })
    }

    fn table(&self, name: &str) -> Result<Option<ReadTable>> {
        if let Some(t) = self.tables.borrow().get(name) {
            return Ok(t.clone());
        }
        let t = match self.txn.open_table(def(name)) {
            Ok(t) => Some(Rc::new(t)),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(Error::storage("opening a table", e)),
        };
        self.tables.borrow_mut().insert(name.to_string(), t.clone());
        Ok(t)
    }
}

impl RawRead for FileRead {
    fn get(&self, table: &str, key: &[u8], f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        match self.table(table)? {
            Some(t) => get_in(&*t, key, f),
            None => Ok(false),
        }
    }

    fn range(&self, table: &str, range: &KeyRange, order: Order, f: Visit<'_>) -> Result<()> {
        match self.table(table)? {
            Some(t) => range_in(&*t, range, order, f),
            None => Ok(()),
        }
    }

    fn len(&self, table: &str) -> Result<u64> {
        match self.table(table)? {
            Some(t) => t.len().map_err(|e| Error::storage("counting", e)),
            None => Ok(0),
        }
    }

    fn table_names(&self) -> Result<Vec<String>> {
        names(self.txn.list_tables())
    }
}

type WriteTable<'t> = Rc<RefCell<redb::Table<'t, Bytes, Bytes>>>;

/// A write transaction on the file; everything done through it commits or aborts together.
pub(crate) struct FileWrite<'t> {
    txn: &'t redb::WriteTransaction,
    tables: RefCell<HashMap<String, WriteTable<'t>>>,
}

/// Runs `f` in one write transaction of `db` and commits when it returns `Ok`.
pub(crate) fn write<T>(
    db: &redb::Database,
    durable: bool,
    f: impl FnOnce(&FileWrite<'_>) -> Result<T>,
) -> Result<T> {
    let mut txn = db
        .begin_write()
        .map_err(|e| Error::storage("beginning a write transaction", e))?;
    if !durable {
        txn.set_durability(redb::Durability::None)
            .map_err(|e| Error::storage("setting durability", redb::Error::from(e)))?;
    }
    let value = {
        let raw = FileWrite {
            txn: &txn,
            tables: RefCell::default(),
        };
        f(&raw)?
        // Every table closes here, before the commit.
    };
    txn.commit().map_err(|e| Error::storage("committing", e))?;
    Ok(value)
}

impl<'t> FileWrite<'t> {
    fn table(&self, name: &str) -> Result<WriteTable<'t>> {
        if let Some(t) = self.tables.borrow().get(name) {
            return Ok(t.clone());
        }
        let t = self
            .txn
            .open_table(def(name))
            .map_err(|e| Error::storage("opening a table", e))?;
        let t = Rc::new(RefCell::new(t));
        self.tables.borrow_mut().insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn with_mut<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut redb::Table<'t, Bytes, Bytes>) -> Result<T>,
    ) -> Result<T> {
        let t = self.table(name)?;
        let mut t = t.try_borrow_mut().map_err(|_| Error::Invariant {
            what: format!("table {name} was written while a scan of it was running"),
        })?;
        f(&mut t)
    }
}

impl RawRead for FileWrite<'_> {
    fn get(&self, table: &str, key: &[u8], f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        let t = self.table(table)?;
        let t = t.borrow();
        get_in(&*t, key, f)
    }

    fn range(&self, table: &str, range: &KeyRange, order: Order, f: Visit<'_>) -> Result<()> {
        let t = self.table(table)?;
        let t = t.borrow();
        range_in(&*t, range, order, f)
    }

    fn len(&self, table: &str) -> Result<u64> {
        let t = self.table(table)?;
        let t = t.borrow();
        t.len().map_err(|e| Error::storage("counting", e))
    }

    fn table_names(&self) -> Result<Vec<String>> {
        names(self.txn.list_tables())
    }
}

impl RawWrite for FileWrite<'_> {
    fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.with_mut(table, |t| {
            t.insert(key, value)
                .map_err(|e| Error::storage("writing", e))?;
            Ok(())
        })
    }

    fn insert_new(&self, table: &str, key: &[u8], value: &[u8]) -> Result<bool> {
        self.with_mut(table, |t| {
            if t.get(key)
                .map_err(|e| Error::storage("reading", e))?
                .is_some()
            {
                return Ok(false);
            }
            t.insert(key, value)
                .map_err(|e| Error::storage("writing", e))?;
            Ok(true)
        })
    }

    fn remove(&self, table: &str, key: &[u8]) -> Result<bool> {
        self.with_mut(table, |t| {
            Ok(t.remove(key)
                .map_err(|e| Error::storage("deleting", e))?
                .is_some())
        })
    }

    fn delete_table(&self, table: &str) -> Result<()> {
        if let Some(t) = self.tables.borrow_mut().remove(table)
            && Rc::strong_count(&t) > 1
        {
            return Err(Error::Invariant {
                what: format!("table {table} was deleted while in use"),
            });
        }
        self.txn
            .delete_table(def(table))
            .map_err(|e| Error::storage("deleting a table", e))?;
        Ok(())
    }
}
