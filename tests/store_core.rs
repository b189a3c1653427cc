//! The store core under concurrency: what a write shares a commit with never costs a fresh
//! handle the shapes and catalog entries it needs to read the records, and calls that would
//! wait for the transaction they run in (a read or write inside a read, a file check inside
//! a transaction) are refused with an error instead of hanging. Every test runs its body on a
//! thread of its own and fails after 30 s rather than hang the suite.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use redkeep::store::{
    FaultKind, FaultPlan, KeyRange, Meta, Order, Store, StoreOptions, format::shape_id,
};
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

/// `Item` one release later: an optional field added, which needs no migration (fields are
/// read by name, through the shapes registered in the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ItemV2 {
    id: u64,
    name: String,
    note: Option<String>,
}

impl ItemV2 {
    const NAME: Index<ItemV2> = Index::unique("name", |i| Some(key!(i.name)));
}

impl Record for ItemV2 {
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

fn put(store: &Store, id: u64, name: &str) {
    store
        .write(|tx| tx.table::<Item>().insert(&item(id, name)))
        .unwrap();
}

/// Runs `body` on a thread of its own and returns what it returns; fails the test when it
/// has not finished after 30 s (it hangs), or re-raises its panic.
fn within_30s<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the body sends its value before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("still waiting after 30 s: it hangs"),
    }
}

/// Spins until `ready` says so (another thread reached a state the test waits for).
fn until(ready: impl Fn() -> bool) {
    while !ready() {
        thread::yield_now();
    }
}

/// Seeds `store`, then runs a write, a wipe and another write in one shared commit: the
/// first holds its batch open until the other two wait behind it. Returns the ids left.
fn wipe_between_two_writes(store: &Store) -> Vec<u64> {
    // The handle now knows the shape and the catalog entry as committed.
    put(store, 1, "seed");
    let inside = std::sync::Arc::new(AtomicBool::new(false));
    let holder = {
        let (s, inside) = (store.clone(), inside.clone());
        thread::spawn(move || {
            s.write(|tx| {
                tx.table::<Item>().insert(&item(2, "held"))?;
                inside.store(true, Ordering::SeqCst);
                until(|| s.waiting_writers() >= 2);
                Ok(())
            })
            .unwrap();
        })
    };
    until(|| inside.load(Ordering::SeqCst));
    let wiper = {
        let s = store.clone();
        thread::spawn(move || s.wipe(1).unwrap())
    };
    until(|| store.waiting_writers() >= 1);
    let after = {
        let s = store.clone();
        thread::spawn(move || put(&s, 3, "after"))
    };
    for t in [holder, wiper, after] {
        t.join().unwrap();
    }
    store
        .read(|tx| tx.table::<Item>().range(KeyRange::all(), Order::Asc, 10))
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect()
}

/// A write that shares its commit with a wipe, after it, stores the shape and catalog entry
/// of its record in the file, although this handle knew both as registered before the wipe:
/// a fresh handle, with the next release of the type, reads the record and writes again.
#[test]
fn a_write_batched_after_a_wipe_leaves_what_a_fresh_handle_needs_to_read_its_record() {
    // The two writes that wait behind the first are handed to the committing thread, which
    // nearly always takes them in the order they came; a round where the last came first
    // (the wipe took its record) is run again.
    let (dir, path) = within_30s(|| {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let store = open(&dir);
            if wipe_between_two_writes(&store) == vec![3] {
                let path = dir.path().join("s.redb");
                return (dir, path);
            }
        }
        panic!("in 20 rounds the wipe never came between the two writes");
    });
    // A fresh handle: the shape and the catalog entry are in the file.
    let fresh = Store::open(&path, &StoreOptions::default()).unwrap();
    let (shape, catalogued) = fresh
        .read(|tx| {
            Ok((
                tx.shapes()?
                    .iter()
                    .any(|(id, _)| *id == shape_id(&["id", "name"])),
                tx.catalog()?.iter().any(|t| t.name == "items"),
            ))
        })
        .unwrap();
    assert!(
        shape && catalogued,
        "shape: {shape}, catalogued: {catalogued}"
    );
    let read = fresh.read(|tx| tx.table::<ItemV2>().get(&3)).unwrap();
    assert_eq!(read.map(|i| (i.name, i.note)), Some(("after".into(), None)));
    fresh
        .write(|tx| {
            tx.table::<ItemV2>().insert(&ItemV2 {
                id: 4,
                name: "next release".into(),
                note: Some("n".into()),
            })
        })
        .unwrap();
    assert_eq!(fresh.damage(), None);
    drop(dir);
}

/// While a file check waits for a read to end (as a check in place does), a read inside
/// that read goes ahead, and a write inside it is refused at once instead of waiting for the
/// check that waits for it: the read ends, then the check, which finds the file sound.
#[test]
fn a_read_inside_a_read_goes_ahead_and_a_write_is_refused_while_a_file_check_waits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    put(&store, 1, "a");
    let (nested, checked) = within_30s(move || {
        let (inside_tx, inside_rx) = mpsc::channel();
        let reader = {
            let s = store.clone();
            thread::spawn(move || {
                s.read(|_| {
                    inside_tx.send(()).unwrap();
                    // The check now waits to have the file alone.
                    until(|| s.waiting_checks() >= 1);
                    let read = s.read(|tx| tx.table::<Item>().count());
                    let write = s.write(|tx| tx.table::<Item>().insert(&item(2, "b")));
                    Ok((read, write))
                })
                .unwrap()
            })
        };
        inside_rx.recv().unwrap();
        let checker = {
            let s = store.clone();
            thread::spawn(move || s.check_file())
        };
        let nested = reader.join().unwrap();
        let checked = checker.join().unwrap();
        // Afterwards both work again, and the refused write left nothing.
        assert_eq!(store.read(|tx| tx.table::<Item>().count()).unwrap(), 1);
        put(&store, 3, "c");
        (nested, checked)
    });
    let (read, write) = nested;
    assert_eq!(read.unwrap(), 1);
    let write = write.unwrap_err();
    assert!(
        matches!(&write, Error::InvalidInput { reason, .. } if reason.contains("inside a read")),
        "{write}"
    );
    assert!(checked.unwrap(), "the file is sound");
}

/// A file check called inside a read or a write of the same store would wait for that very
/// transaction: it is refused with an error, on the writer's thread and on the committing
/// thread alike (a write that joined a batch), and the transaction goes on. Inside another
/// store's transaction it runs; a read inside a write still works.
#[test]
fn a_file_check_inside_a_transaction_of_the_same_store_is_refused_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let (store, other) = (open(&dir), open(&other_dir));
    put(&store, 1, "a");
    let refusals = within_30s(move || {
        let mut refusals = Vec::new();
        refusals.push(store.read(|_| Ok(store.check_file_copy())).unwrap());
        refusals.push(store.read(|_| Ok(store.check_file())).unwrap());
        refusals.push(
            store
                .write(|tx| {
                    tx.table::<Item>().insert(&item(2, "b"))?;
                    Ok(store.check_file())
                })
                .unwrap(),
        );
        // On the committing thread: a write that joins a batch in progress.
        let inside = std::sync::Arc::new(AtomicBool::new(false));
        let holder = {
            let (s, inside) = (store.clone(), inside.clone());
            thread::spawn(move || {
                s.write(|tx| {
                    tx.table::<Item>().insert(&item(3, "held"))?;
                    inside.store(true, Ordering::SeqCst);
                    until(|| s.waiting_writers() >= 1);
                    Ok(())
                })
                .unwrap();
            })
        };
        until(|| inside.load(Ordering::SeqCst));
        refusals.push(
            store
                .write(|tx| {
                    tx.table::<Item>().insert(&item(4, "joined"))?;
                    Ok(store.check_file_copy())
                })
                .unwrap(),
        );
        holder.join().unwrap();
        // Through another store's write, from inside a read of this one.
        refusals.push(
            store
                .read(|_| other.write(|_| Ok(store.check_file_copy())))
                .unwrap(),
        );
        // Another store's check inside a read of this one runs; so does a read inside a
        // write.
        assert!(store.read(|_| other.check_file_copy()).unwrap());
        let seen = store
            .write(|tx| {
                tx.table::<Item>().insert(&item(5, "e"))?;
                store.read(|tx| tx.table::<Item>().count())
            })
            .unwrap();
        assert_eq!(seen, 4, "a read inside a write sees what was committed");
        assert_eq!(store.read(|tx| tx.table::<Item>().count()).unwrap(), 5);
        assert!(store.check_file().unwrap());
        refusals
    });
    assert_eq!(refusals.len(), 5);
    for r in refusals {
        assert!(
            matches!(&r, Err(Error::InvalidInput { reason, .. }) if reason.contains("cannot be checked inside")),
            "{r:?}"
        );
    }
}

/// Many threads read, each with reads nested inside, while file checks come and go: every
/// nested read goes ahead, every check waits for the reads under way and runs, and nothing
/// hangs.
#[test]
fn nested_reads_on_many_threads_and_repeated_file_checks_all_finish() {
    const READERS: usize = 4;
    const ROUNDS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    put(&store, 1, "a");
    within_30s(move || {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(READERS + 1));
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (s, barrier) = (store.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..ROUNDS {
                        let n = s
                            .read(|_| s.read(|_| s.read(|tx| tx.table::<Item>().count())))
                            .unwrap();
                        assert_eq!(n, 1);
                    }
                })
            })
            .collect();
        barrier.wait();
        for _ in 0..10 {
            assert!(store.check_file_copy().unwrap());
            assert!(store.check_file().unwrap());
        }
        for r in readers {
            r.join().unwrap();
        }
    });
}

/// A live `redkeep check` checks a byte copy of the file. The running app's reads go on while
/// the file is copied (they waited for the whole copy and check before); a write waits for
/// the copy, then commits; the copy is found sound.
#[test]
fn reads_go_on_while_a_live_file_check_copies_the_file_and_a_write_waits_for_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    put(&store, 1, "a");
    let (during, checked, after) = within_30s(move || {
        let plan = FaultPlan::pausing(FaultKind::FileRead, 1);
        let checker = {
            let (s, plan) = (store.clone(), plan.clone());
            thread::spawn(move || {
                let _armed = plan.arm_files();
                s.check_file_copy()
            })
        };
        // The check is copying the file.
        plan.wait_paused();
        let during = store.read(|tx| tx.table::<Item>().count()).unwrap();
        let writer = {
            let s = store.clone();
            thread::spawn(move || put(&s, 2, "b"))
        };
        until(|| store.waiting_writers() >= 1);
        let waited = !writer.is_finished();
        plan.resume();
        writer.join().unwrap();
        let checked = checker.join().unwrap();
        let after = store.read(|tx| tx.table::<Item>().count()).unwrap();
        assert!(waited, "a write committed while the file was copied");
        (during, checked, after)
    });
    assert_eq!(during, 1);
    assert!(checked.unwrap(), "the copy is sound");
    assert_eq!(after, 2);
}
