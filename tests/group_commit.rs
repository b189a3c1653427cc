//! Group commit: concurrent writes of one handle share commits. A write that fails (or
//! panics) inside a shared commit is taken back alone; the others in it are committed; each
//! write sees the ones before it; and many concurrent writers all land, with `check` clean.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use redkeep::store::{Store, StoreOptions, check_table};
use redkeep::{Error, Index, Record, key};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    name: String,
}

impl Item {
    const NAME: Index<Item> = Index::unique("name", |i| Some(key!(i.name)));
}

impl Record for Item {
    const TABLE: &'static str = "items";
    type Key = u64;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::NAME];
    fn key(&self) -> u64 {
        self.id
    }
}

fn item(id: u64, name: &str) -> Item {
    Item {
        id,
        name: name.into(),
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path().join("s.redb"), &StoreOptions::default()).unwrap()
}

fn clean(store: &Store) {
    let t = check_table::<Item>();
    let mut report = redkeep::store::CheckReport::new();
    store.read(|tx| t.check(tx, &mut report)).unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

/// The first write holds its batch open until `joiners` more writers wait for it, so they
/// run in the same commit. `inside` tells the joiners the first write is running.
fn hold_until_joined(store: &Store, inside: &AtomicBool, joiners: usize, first: Item) {
    store
        .write(|tx| {
            tx.table::<Item>().insert(&first)?;
            inside.store(true, Ordering::SeqCst);
            while store.waiting_writers() < joiners {
                thread::yield_now();
            }
            Ok(())
        })
        .unwrap();
}

/// Waits until the first write of the batch is running.
fn until_inside(inside: &AtomicBool) {
    while !inside.load(Ordering::SeqCst) {
        thread::yield_now();
    }
}

#[test]
fn a_failed_write_in_a_shared_commit_is_taken_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .write(|tx| tx.table::<Item>().insert(&item(1, "old")))
        .unwrap();
    let inside = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            hold_until_joined(&store, &inside, 2, item(2, "first"));
        });
        let failing = s.spawn(|| {
            until_inside(&inside);
            // Changes a record, adds one, then fails: all of it must be taken back.
            store.write(|tx| {
                let t = tx.table::<Item>();
                t.update(&item(1, "changed"))?;
                t.insert(&item(3, "doomed"))?;
                t.delete(&2)?;
                Err::<(), _>(Error::invalid("test", "this write fails on purpose"))
            })
        });
        let other = s.spawn(|| {
            until_inside(&inside);
            store.write(|tx| {
                let t = tx.table::<Item>();
                // The failed write is invisible to its neighbours, the first one visible.
                assert!(t.get(&3)?.is_none());
                assert_eq!(t.get(&1)?.unwrap().name, "old");
                assert!(t.get(&2)?.is_some());
                t.insert(&item(4, "neighbour"))
            })
        });
        assert!(matches!(
            failing.join().unwrap(),
            Err(Error::InvalidInput { .. })
        ));
        other.join().unwrap().unwrap();
    });
    store
        .read(|tx| {
            let t = tx.table::<Item>();
            assert_eq!(t.get(&1)?.unwrap().name, "old");
            assert_eq!(t.get(&2)?.unwrap().name, "first");
            assert!(t.get(&3)?.is_none());
            assert_eq!(t.get(&4)?.unwrap().name, "neighbour");
            assert!(t.get_by(&Item::NAME, &key!("doomed"))?.is_none());
            Ok(())
        })
        .unwrap();
    clean(&store);
}

#[test]
fn a_unique_clash_fails_only_the_write_that_clashes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let inside = AtomicBool::new(false);
    let results = thread::scope(|s| {
        s.spawn(|| {
            hold_until_joined(&store, &inside, 3, item(1, "taken"));
        });
        let writers: Vec<_> = [(2, "taken"), (3, "free"), (4, "also free")]
            .into_iter()
            .map(|(id, name)| {
                let (store, inside) = (&store, &inside);
                s.spawn(move || {
                    until_inside(inside);
                    store.write(|tx| tx.table::<Item>().insert(&item(id, name)))
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(
        matches!(results[0], Err(Error::Conflict { .. })),
        "{results:?}"
    );
    assert!(results[1].is_ok() && results[2].is_ok(), "{results:?}");
    store
        .read(|tx| {
            let t = tx.table::<Item>();
            assert!(t.get(&2)?.is_none());
            assert_eq!(t.get_by(&Item::NAME, &key!("taken"))?.unwrap().id, 1);
            assert!(t.get(&3)?.is_some() && t.get(&4)?.is_some());
            Ok(())
        })
        .unwrap();
    clean(&store);
}

#[test]
fn a_panicking_write_is_taken_back_and_its_neighbours_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let inside = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            hold_until_joined(&store, &inside, 2, item(1, "first"));
        });
        let panicking = s.spawn(|| {
            until_inside(&inside);
            store.write(|tx| {
                tx.table::<Item>().insert(&item(2, "half done"))?;
                panic!("a bug in the caller's closure");
                #[allow(unreachable_code)]
                Ok(())
            })
        });
        let other = s.spawn(|| {
            until_inside(&inside);
            store.write(|tx| tx.table::<Item>().insert(&item(3, "neighbour")))
        });
        assert!(panicking.join().is_err(), "the panic reaches its caller");
        other.join().unwrap().unwrap();
    });
    store
        .read(|tx| {
            let t = tx.table::<Item>();
            assert!(t.get(&1)?.is_some());
            assert!(t.get(&2)?.is_none());
            assert!(t.get(&3)?.is_some());
            Ok(())
        })
        .unwrap();
    clean(&store);
    // The store goes on working.
    store
        .write(|tx| tx.table::<Item>().insert(&item(4, "after")))
        .unwrap();
}

#[test]
fn sixteen_concurrent_writers_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    thread::scope(|s| {
        for t in 0..16u64 {
            let store = &store;
            s.spawn(move || {
                for i in 0..40u64 {
                    let id = t * 1000 + i;
                    store
                        .write(|tx| tx.table::<Item>().insert(&item(id, &format!("n{id}"))))
                        .unwrap();
                }
            });
        }
    });
    let n = store.read(|tx| tx.table::<Item>().count()).unwrap();
    assert_eq!(n, 16 * 40);
    clean(&store);
    drop(store);
    // Durable: a fresh handle reads all of it.
    assert_eq!(
        open(&dir).read(|tx| tx.table::<Item>().count()).unwrap(),
        16 * 40
    );
}

/// Counts a writer thread as finished when dropped, a panic included, so readers that run
/// until every writer is done never wait forever.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Reads share the latest commit's snapshot between commits: a write is seen by every read
/// that begins after it returns, on any thread, and what a reader sees never goes back.
#[test]
fn reads_on_every_thread_see_each_write_once_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let finished = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..3u64 {
            let (store, finished) = (&store, &finished);
            s.spawn(move || {
                let _finished = Finished(finished);
                for i in 1..=60u64 {
                    let id = t * 1000 + i;
                    store
                        .write(|tx| tx.table::<Item>().insert(&item(id, &format!("n{id}"))))
                        .unwrap();
                    // Its own write, by id and through the index, right after it returns.
                    let (by_id, by_name) = store
                        .read(|tx| {
                            let t = tx.table::<Item>();
                            Ok((t.get(&id)?, t.get_by(&Item::NAME, &key!(format!("n{id}")))?))
                        })
                        .unwrap();
                    assert_eq!(by_id, Some(item(id, &format!("n{id}"))));
                    assert_eq!(by_name, by_id);
                }
            });
        }
        for _ in 0..2 {
            let (store, finished) = (&store, &finished);
            s.spawn(move || {
                let mut seen = 0;
                while finished.load(Ordering::SeqCst) < 3 {
                    let n = store.read(|tx| tx.table::<Item>().count()).unwrap();
                    assert!(n >= seen, "a read saw {n} items after one saw {seen}");
                    seen = n;
                }
            });
        }
    });
    assert_eq!(store.read(|tx| tx.table::<Item>().count()).unwrap(), 180);
    clean(&store);
}

#[test]
fn waiting_writers_take_their_turns_in_the_order_they_came() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let inside = AtomicBool::new(false);
    let order = std::sync::Mutex::new(Vec::new());
    const JOINERS: u64 = 6;
    thread::scope(|s| {
        s.spawn(|| hold_until_joined(&store, &inside, JOINERS as usize, item(100, "first")));
        until_inside(&inside);
        for k in 0..JOINERS {
            let (store, order) = (&store, &order);
            s.spawn(move || {
                // On its own thread, so that it is in line once `waiting_writers` counts it.
                // (A write handed to the committing thread is counted on its way, and takes
                // its place in line when that thread picks it up: two handed over at the
                // same moment may swap.)
                store
                    .write_here(|tx| {
                        order.lock().unwrap().push(k);
                        tx.table::<Item>().insert(&item(k, &format!("joiner {k}")))
                    })
                    .unwrap();
            });
            // The next joiner comes only once this one waits in line. (Once the last one
            // waits, the first write ends and the line moves on.)
            while k + 1 < JOINERS && store.waiting_writers() < k as usize + 1 {
                thread::yield_now();
            }
        }
    });
    assert_eq!(*order.lock().unwrap(), (0..JOINERS).collect::<Vec<_>>());
    let n = store.read(|tx| tx.table::<Item>().count()).unwrap();
    assert_eq!(n, JOINERS + 1);
    clean(&store);
}

#[test]
fn a_file_check_between_concurrent_writers_waits_its_turn_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    thread::scope(|s| {
        for t in 0..8u64 {
            let store = &store;
            s.spawn(move || {
                for i in 0..25u64 {
                    let id = t * 1000 + i;
                    store
                        .write(|tx| tx.table::<Item>().insert(&item(id, &format!("n{id}"))))
                        .unwrap();
                }
            });
        }
        let store = &store;
        s.spawn(move || {
            for _ in 0..5 {
                assert!(store.check_file().unwrap(), "the file is sound");
            }
        });
    });
    assert_eq!(store.read(|tx| tx.table::<Item>().count()).unwrap(), 8 * 25);
    clean(&store);
}

/// The writes of a batch share its open tables: inside a scan, a read of the scanned table
/// works and a write to it is refused with an error (not a hang), in the batch's first write
/// and in a write that joined it; the refused write is taken back and the batch goes on.
#[test]
fn a_write_to_a_table_being_scanned_is_refused_and_reads_inside_a_scan_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .write(|tx| tx.table::<Item>().insert(&item(1, "one")))
        .unwrap();
    let scan_and_write = |id: u64| {
        store.write(|tx| {
            let t = tx.table::<Item>();
            let mut names = Vec::new();
            let mut refused = None;
            t.for_each(
                redkeep::store::KeyRange::all(),
                redkeep::store::Order::Asc,
                |r| {
                    names.push(t.get(&r.id)?.unwrap().name);
                    refused = Some(t.insert(&item(id, "inside a scan")));
                    Ok(true)
                },
            )?;
            assert!(!names.is_empty());
            match refused {
                Some(Err(Error::Invariant { what })) => {
                    assert!(what.contains("scan"), "{what}");
                }
                other => panic!("a write inside a scan of its table was not refused: {other:?}"),
            }
            t.insert(&item(id, &format!("after the scan {id}")))
        })
    };
    // Alone: the batch's first write.
    scan_and_write(10).unwrap();
    // Joining a batch whose first write opened the table.
    let inside = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| hold_until_joined(&store, &inside, 1, item(2, "first")));
        let joined = s.spawn(|| {
            until_inside(&inside);
            scan_and_write(11)
        });
        joined.join().unwrap().unwrap();
    });
    store
        .read(|tx| {
            let t = tx.table::<Item>();
            assert_eq!(t.get(&10)?.unwrap().name, "after the scan 10");
            assert_eq!(t.get(&11)?.unwrap().name, "after the scan 11");
            assert_eq!(t.get(&2)?.unwrap().name, "first");
            assert_eq!(t.count()?, 4);
            Ok(())
        })
        .unwrap();
    clean(&store);
}

/// A delete or a clear refused part-way (here: inside a scan of the records, which cannot be
/// written then) leaves the table as it was, index entries included, even when the caller
/// handles the error and commits; alone and in a write that joined a batch.
#[test]
fn a_delete_or_clear_refused_inside_a_scan_leaves_the_table_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .write(|tx| tx.table::<Item>().insert(&item(1, "one")))
        .unwrap();
    let refuse_both = || {
        store.write(|tx| {
            let t = tx.table::<Item>();
            let mut tried = Vec::new();
            t.for_each(
                redkeep::store::KeyRange::all(),
                redkeep::store::Order::Asc,
                |r| {
                    tried.push(t.delete(&r.id).map(|_| ()));
                    tried.push(t.clear().map(|_| ()));
                    Ok(false)
                },
            )?;
            for outcome in tried {
                match outcome {
                    Err(Error::Invariant { what }) => assert!(what.contains("scan"), "{what}"),
                    other => panic!("a delete or clear inside a scan went through: {other:?}"),
                }
            }
            Ok(())
        })
    };
    let whole = || {
        store
            .read(|tx| {
                let t = tx.table::<Item>();
                assert_eq!(t.get(&1)?.map(|i| i.name), Some("one".to_string()));
                assert_eq!(t.get_by(&Item::NAME, &key!("one"))?.map(|i| i.id), Some(1));
                Ok(())
            })
            .unwrap();
        clean(&store);
    };
    // Alone.
    refuse_both().unwrap();
    whole();
    // Joining a batch.
    let inside = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| hold_until_joined(&store, &inside, 1, item(2, "two")));
        let joined = s.spawn(|| {
            until_inside(&inside);
            refuse_both()
        });
        joined.join().unwrap().unwrap();
    });
    whole();
}

/// Writes that find others at work are run one after another by the handle's committing
/// thread, not each on its own thread in turn; a `write_here` closure (here holding an `Rc`,
/// which cannot leave its thread) runs on its caller's thread in the same line. Every write
/// sees the ones before it and all of them land.
#[test]
fn writes_that_find_others_at_work_run_on_the_committing_thread_and_write_here_stays_home() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let inside = AtomicBool::new(false);
    const HANDED: u64 = 3;
    let ran_on = std::sync::Mutex::new(Vec::new());
    thread::scope(|s| {
        s.spawn(|| hold_until_joined(&store, &inside, HANDED as usize + 1, item(100, "first")));
        until_inside(&inside);
        for k in 0..HANDED {
            let (store, ran_on) = (&store, &ran_on);
            s.spawn(move || {
                let caller = thread::current().id();
                let runner = store
                    .write(|tx| {
                        let t = tx.table::<Item>();
                        assert!(t.get(&100)?.is_some(), "the first write is seen");
                        t.insert(&item(k, &format!("handed {k}")))?;
                        Ok(thread::current().id())
                    })
                    .unwrap();
                ran_on.lock().unwrap().push((caller, runner));
            });
        }
        s.spawn(|| {
            let calls = std::rc::Rc::new(std::cell::Cell::new(0));
            let caller = thread::current().id();
            let runner = store
                .write_here(|tx| {
                    calls.set(calls.get() + 1);
                    let t = tx.table::<Item>();
                    assert!(t.get(&100)?.is_some(), "the first write is seen");
                    t.insert(&item(50, "here"))?;
                    Ok(thread::current().id())
                })
                .unwrap();
            assert_eq!(runner, caller);
            assert_eq!(calls.get(), 1);
        });
    });
    let ran_on = ran_on.into_inner().unwrap();
    assert_eq!(ran_on.len(), HANDED as usize);
    for (caller, runner) in &ran_on {
        assert_ne!(
            caller, runner,
            "a write handed over runs on the committing thread"
        );
        assert_eq!(*runner, ran_on[0].1, "one committing thread runs them all");
    }
    assert_eq!(
        store.read(|tx| tx.table::<Item>().count()).unwrap(),
        HANDED + 2
    );
    clean(&store);
}

/// More writers wait than one commit carries (128): the committing thread runs them nested,
/// commits the full batch and goes on with the rest; all land, durably.
#[test]
fn more_waiting_writers_than_one_commit_carries_all_land() {
    const JOINERS: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let inside = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| hold_until_joined(&store, &inside, JOINERS as usize, item(1000, "first")));
        until_inside(&inside);
        for k in 0..JOINERS {
            let store = &store;
            s.spawn(move || {
                store
                    .write(|tx| tx.table::<Item>().insert(&item(k, &format!("joiner {k}"))))
                    .unwrap();
            });
        }
    });
    clean(&store);
    drop(store);
    assert_eq!(
        open(&dir).read(|tx| tx.table::<Item>().count()).unwrap(),
        JOINERS + 1
    );
}

/// A write begun inside a write of the same store would wait for the transaction it runs
/// in; it is refused with an error instead, on the writer's own thread and on the
/// committing thread alike, and the outer write decides what happens. A write to another
/// store inside a write goes ahead.
#[test]
fn a_write_inside_a_write_of_the_same_store_is_refused_instead_of_waiting_forever() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(&other_dir);
    let nested = |store: &Store| store.write(|tx| tx.table::<Item>().insert(&item(9, "nested")));
    // Alone, and through write_here.
    let inner = store
        .write(|tx| {
            tx.table::<Item>().insert(&item(1, "outer"))?;
            Ok(nested(&store))
        })
        .unwrap();
    assert!(
        matches!(inner, Err(Error::InvalidInput { .. })),
        "{inner:?}"
    );
    let inner = store.write_here(|_| Ok(nested(&store))).unwrap();
    assert!(
        matches!(inner, Err(Error::InvalidInput { .. })),
        "{inner:?}"
    );
    // On the committing thread: a write that joins a batch in progress.
    let inside = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| hold_until_joined(&store, &inside, 1, item(2, "first")));
        until_inside(&inside);
        let joined = store.write(|tx| {
            tx.table::<Item>().insert(&item(3, "joiner"))?;
            nested(&store)
        });
        assert!(
            matches!(joined, Err(Error::InvalidInput { .. })),
            "{joined:?}"
        );
    });
    // Another store's write inside a write goes ahead; back to the first store from inside
    // it is refused all the same.
    let back = store
        .write(|tx| {
            tx.table::<Item>().insert(&item(4, "outer again"))?;
            other.write(|tx| {
                tx.table::<Item>().insert(&item(9, "nested"))?;
                Ok(nested(&store))
            })
        })
        .unwrap();
    assert!(matches!(back, Err(Error::InvalidInput { .. })), "{back:?}");
    store
        .read(|tx| {
            let t = tx.table::<Item>();
            assert!(t.get(&1)?.is_some() && t.get(&2)?.is_some() && t.get(&4)?.is_some());
            assert!(t.get(&3)?.is_none(), "the failed joiner is taken back");
            assert!(t.get(&9)?.is_none());
            Ok(())
        })
        .unwrap();
    assert!(
        other
            .read(|tx| tx.table::<Item>().get(&9))
            .unwrap()
            .is_some()
    );
    clean(&store);
}

/// A write handed to one store's committing thread that writes to a second store, busy at
/// that moment, waits for its turn there without stalling the first store: a write handed
/// to the first store meanwhile is not started inside the waiting one (where it would wait
/// for the very batch it sits on).
#[test]
fn a_handed_over_write_that_waits_for_another_store_does_not_stall_its_own() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(&dir_a), open(&dir_b));
    let (a_inside, b_inside) = (AtomicBool::new(false), AtomicBool::new(false));
    thread::scope(|s| {
        s.spawn(|| hold_until_joined(&a, &a_inside, 1, item(1, "a first")));
        until_inside(&a_inside);
        // B stays busy until a write waits for it and another write waits for A.
        s.spawn(|| {
            b.write(|tx| {
                tx.table::<Item>().insert(&item(1, "b first"))?;
                b_inside.store(true, Ordering::SeqCst);
                while b.waiting_writers() < 1 || a.waiting_writers() < 1 {
                    thread::yield_now();
                }
                Ok(())
            })
            .unwrap();
        });
        until_inside(&b_inside);
        s.spawn(|| {
            a.write(|tx| {
                tx.table::<Item>().insert(&item(2, "a second"))?;
                b.write(|tx| tx.table::<Item>().insert(&item(2, "b second")))
            })
            .unwrap();
        });
        while b.waiting_writers() < 1 {
            thread::yield_now();
        }
        a.write(|tx| tx.table::<Item>().insert(&item(3, "a third")))
            .unwrap();
    });
    assert_eq!(a.read(|tx| tx.table::<Item>().count()).unwrap(), 3);
    assert_eq!(b.read(|tx| tx.table::<Item>().count()).unwrap(), 2);
    clean(&a);
    clean(&b);
}
