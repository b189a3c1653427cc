//! Secondary indexes. A record type declares each index once, as an associated constant
//! (`User::EMAIL`), and lists them in `Record::INDEXES`; lookups name the constant, so a
//! misspelt index does not compile.
//!
//! Storage, in the table `i:<table>:<index>`: a unique index maps index key → primary key; a
//! non-unique index stores index key ++ primary key with an empty value (or the primary key's
//! length, when keys vary in length), so the primary key is stored once.

/// One secondary index of a record type: a name and a function deriving its key bytes
/// (built with [`key!`](crate::key)), `None` when the record has no entry (an unset field).
pub struct Index<R> {
    /// Name, unique within the record's table.
    pub name: &'static str,
    /// Whether two records may share a key.
    pub unique: bool,
    /// Derives the index key from the record.
    pub key: fn(&R) -> Option<Vec<u8>>,
}

impl<R> Index<R> {
    /// A unique index: a second record with the same key is a `Conflict`.
    pub const fn unique(name: &'static str, key: fn(&R) -> Option<Vec<u8>>) -> Self {
        Index {
            name,
            unique: true,
            key,
        }
    }

    /// A non-unique index: many records may share a key.
    pub const fn many(name: &'static str, key: fn(&R) -> Option<Vec<u8>>) -> Self {
        Index {
            name,
            unique: false,
            key,
        }
    }
}

impl<R> std::fmt::Debug for Index<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("name", &self.name)
            .field("unique", &self.unique)
            .finish()
    }
}
