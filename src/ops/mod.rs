//! Operations on a whole data dir: backups and restores (the store and every workspace
//! folder in one archive), streamed export and import of JSON lines, reset and statistics.
//! Functions that replace the whole store (`restore`, `reset`) work on a data dir that no
//! process holds; the others take an open handle.

#[cfg(feature = "adopt")]
pub mod adopt;
mod backup;
pub(crate) mod files;
mod guards;
mod moving;
mod reset;
mod salvage;
mod stats;
mod transfer;

pub use backup::{
    BackupReport, RestoreReport, backup, check_file, restore, restore_store,
    restore_store_with_folders,
};
pub use files::{discard_unused_store, discard_unused_store_except, workspace_entries, write_file};
#[cfg(feature = "cli")]
pub(crate) use guards::{foreign_files, refuse_foreign_folder};
pub use moving::{MoveReport, move_store, move_store_with_problems};
pub use reset::{ResetReport, reset, reset_store};
pub use salvage::{SalvageReport, SalvagedTable, salvage};
pub use stats::{Stats, stats};
pub use transfer::{EXPORT_FORMAT, TransferSummary, export, import};
