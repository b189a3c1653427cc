//! The budget of audit rows a minute for requests no one signed in to (failed logins,
//! password-reset requests): how many this minute wrote, and the summary row of each action
//! past it. Whether an event gets a row of its own depends only on the count, never on the
//! account.

use crate::clock::Timestamp;

/// The audit rows a minute that requests no one signed in to may write one by one
/// (`audit::record_unauthenticated`), and this minute's count of them. Kept per handle: the
/// bound is per process.
#[derive(Debug)]
pub(crate) struct Budget {
    per_minute: u32,
    minute: std::sync::Mutex<Minute>,
}

/// This minute's rows, and its summary rows (one per action) once past the budget.
#[derive(Debug, Default)]
struct Minute {
    start: i64,
    rows: u32,
    summaries: Vec<Summary>,
}

/// The row that counts one action's events beyond the budget in a minute.
#[derive(Debug)]
struct Summary {
    action: String,
    seq: Option<u64>,
    count: u64,
    first: Timestamp,
}

/// What [`Budget::take`] decided for one event.
pub(crate) enum Row {
    /// Written as it is.
    Own,
    /// Counted: the action's summary row (when it has one already), its count with this
    /// event, and when its first event was.
    Counted {
        seq: Option<u64>,
        count: u64,
        first: Timestamp,
    },
}

impl Budget {
    pub(crate) fn new(per_minute: u32) -> Budget {
        Budget {
            per_minute,
            minute: std::sync::Mutex::new(Minute {
                start: i64::MIN,
                ..Minute::default()
            }),
        }
    }

    /// The rows a minute written one by one.
    pub(crate) fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes a row of this minute's budget for an event of `action` at `at`, or counts the
    /// event in the action's summary.
    pub(crate) fn take(&self, action: &str, at: Timestamp) -> Row {
        // A poisoned lock only means a panic elsewhere while counting: the count stays usable.
        let mut m = self.minute.lock().unwrap_or_else(|p| p.into_inner());
        // Saturating: the minute of the earliest timestamps starts before `i64::MIN`.
        let start = at.0.saturating_sub(at.0.rem_euclid(60));
        if m.start != start {
            *m = Minute {
                start,
                ..Minute::default()
            };
        }
        if m.rows < self.per_minute {
            m.rows += 1;
            return Row::Own;
        }
        let i = match m.summaries.iter().position(|s| s.action == action) {
            Some(i) => i,
            None => {
                m.summaries.push(Summary {
                    action: action.to_string(),
                    seq: None,
                    count: 0,
                    first: at,
                });
                m.summaries.len() - 1
            }
        };
        let s = &mut m.summaries[i];
        s.count += 1;
        Row::Counted {
            seq: s.seq,
            count: s.count,
            first: s.first,
        }
    }

    /// Notes the summary row of `action` written this minute (`start`: its first event).
    pub(crate) fn summary_written(&self, action: &str, first: Timestamp, seq: u64) {
        let mut m = self.minute.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = m
            .summaries
            .iter_mut()
            .find(|s| s.action == action && s.first == first && s.seq.is_none())
        {
            s.seq = Some(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minutes start on a multiple of 60 s for every timestamp an injected clock can give,
    /// the earliest included (no overflow).
    #[test]
    fn a_minute_is_found_for_every_timestamp() {
        let budget = Budget::new(1);
        for at in [i64::MIN, -61, -1, 0, 60, i64::MAX] {
            assert!(matches!(budget.take("a", Timestamp(at)), Row::Own), "{at}");
            assert!(matches!(
                budget.take("a", Timestamp(at)),
                Row::Counted { count: 1, .. }
            ));
        }
    }
}
