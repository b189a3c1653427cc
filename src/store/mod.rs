//! The generic typed-table layer. Nothing here knows about users or files.
//!
//! A [`Store`] is one redb file. Work happens in closures: [`Store::write`] commits when the
//! closure returns `Ok` and aborts otherwise (including on panic); [`Store::read`] sees one
//! consistent snapshot. Typed tables ([`Table`]) keep their secondary indexes exact inside the
//! same write transaction as the record. The `meta` table holds the schema version, the id
//! sequences, the registry of struct shapes the records use (`format.rs`) and a catalog of the
//! tables written, so tools can read a store without the application's types.
//!
//! Files, from the bottom: `key` (the key encoding), `format` and `codec` (values), `engine`
//! (the storage boundary and redb behind it), `index`, `tx` (transactions and `meta`), `db`
//! (the store), `table` (records and typed tables), `check`, `migrate`, and for operators
//! `key_text` (keys as text) and `inspect` (any table read by name).

mod bulk;
mod check;
pub mod codec;
mod copy;
mod db;
mod engine;
pub mod format;
mod held;
mod index;
mod inspect;
mod key;
mod key_text;
mod migrate;
mod open_by;
mod origin;
mod table;
mod tx;

pub use bulk::{NewRecord, NewRecords, Refused};
pub use check::{
    CheckReport, ExpectedEntry, TableCheck, TableCounts, TableStats, check_app_table, check_table,
};
pub use codec::Stored;
#[cfg(all(test, feature = "cli"))]
pub(crate) use db::COMMAND_GROUPS;
pub(crate) use db::MendedHeader;
#[cfg(feature = "postgres")]
pub use db::is_postgres_url;
pub(crate) use db::opened_for_writing_instead;
#[cfg(feature = "admin")]
pub(crate) use db::redkeep_command;
pub use db::{
    Durability, Mode, Owner, ReadersNotice, ReadersWait, Store, StoreOptions, owner_path,
    process_alive, read_owner,
};
pub(crate) use db::{held_alone_here, lost_server};
pub use engine::faults::{FaultKind, FaultPlan, FileFaults};
#[cfg(feature = "admin")]
pub(crate) use engine::redb_file::not_closed_cleanly;
pub use engine::{KeyRange, Order, containing, name_connections, redact};
pub use index::Index;
pub use inspect::{
    Content, EntryCheck, EntryState, EntryView, FieldNames, IndexSummary, IndexView, RecordView,
    TableSummary, TableView, VersionCount,
};
pub use key::{Key, KeyPart};
pub use key_text::{entry_text, key_text, parse_key, parse_prefix};
pub use migrate::{Migration, MigrationRun};
pub use table::{MAX_KEY_BYTES, Record, Table};
pub use tx::{IndexInfo, MAX_ID, Meta, ReadTx, Source, TableInfo, WriteTx};

pub(crate) use check::{move_old_quarantine, quarantine_table, set_aside};
#[cfg(test)]
pub(crate) use engine::ENGINE_CALLS;
#[cfg(feature = "admin")]
pub(crate) use engine::Holder;
pub(crate) use engine::redb_file::INIT_HINT;
pub(crate) use engine::{Entries, RawRead, get_owned};
pub(crate) use engine::{failed_at_commit, with_outcome};
pub(crate) use held::{Held, clashes as lock_held_here};
pub(crate) use key::show_key;
pub(crate) use open_by::open_elsewhere;
pub use origin::Origin;
pub(crate) use origin::with_origin;
#[cfg(test)]
pub(crate) use table::RECORD_WRITES;
pub(crate) use table::{
    check_names, declare, decode_record, encode, entry_target_raw, index_table, indexes_behind,
    record_table,
};
pub(crate) use tx::damaged_shapes;
pub(crate) use tx::meta_entry_sound;
pub(crate) use tx::{
    ADOPT_UNFINISHED, BORN_AT, CONTENT_MARKS, IMPORT_UNFINISHED, MOVE_UNFINISHED, MOVED_TO,
    RESET_UNFINISHED, RESTORE_UNFINISHED, STORE_ID, STORE_INSTANCE, UNFINISHED_MARKS, born_at,
};
pub(crate) use tx::{metas, stopped_operations};
