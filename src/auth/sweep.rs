//! Sweeps: deleting what expired, a batch per write, past records that do not read.

use crate::clock::Timestamp;
use crate::error::Result;
use crate::key;
use crate::store::KeyRange;

use super::Accounts;

/// Records deleted per write by a sweep.
const SWEEP_BATCH: usize = 1000;

/// Deletes the records of `R` whose entry in `index` (a time first) is at or before `now`,
/// a batch per write; returns how many. Records that cannot be read are left, and logged.
///
/// # Errors
/// `Storage` when the engine fails.
pub(crate) fn sweep_table<R: crate::store::Record>(
    acc: &Accounts,
    index: &crate::store::Index<R>,
    now: Timestamp,
) -> Result<usize> {
    let (mut deleted, mut unread) = (0, 0);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (d, u, last) = acc.store.write(|tx| {
            let mut range = KeyRange::below(key!(now.0.saturating_add(1)));
            if let Some(a) = &after {
                range = range.after(a);
            }
            tx.table::<R>().delete_batch_by(index, range, SWEEP_BATCH)
        })?;
        deleted += d;
        unread += u;
        match last {
            Some(l) => after = Some(l),
            None => break,
        }
    }
    if unread > 0 {
        tracing::warn!(
            table = R::TABLE,
            unread,
            "expired records that do not read were left by the sweep; `redkeep check --repair` \
             sets them aside"
        );
    }
    Ok(deleted)
}
