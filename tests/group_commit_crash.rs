//! Group commit under SIGKILL: a worker process runs 8 threads of durable writes that share
//! commits, printing `ack` for each write only after `write` returned, and is killed at a
//! varying moment. Every acknowledged write must be in the store afterwards, and no write may
//! be half there: each write inserts an item and moves its thread's `last` pointer to it, so a
//! pointer must name an item that exists and be at least the thread's last acknowledged one.
//!
//! 12 rounds by default; `REDKEEP_GROUP_CRASH_ROUNDS=200` runs more.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use common::HelperProcess;
use redkeep::store::{CheckReport, Store, StoreOptions, check_table};
use redkeep::{Index, Record, key};
use serde::{Deserialize, Serialize};

const WORKER_ENV: &str = "REDKEEP_TEST_GROUP_CRASH";
const THREADS: u64 = 8;

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

/// The newest item of one writer thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Last {
    thread: u64,
    item: u64,
}

impl Record for Last {
    const TABLE: &'static str = "last";
    type Key = u64;
    fn key(&self) -> u64 {
        self.thread
    }
}

fn open(dir: &Path) -> Store {
    Store::open(dir.join("s.redb"), &StoreOptions::default()).unwrap()
}

/// The worker: `GO ROUND` starts THREADS writers that write until the process is killed.
#[test]
fn helper_group_crash_worker() {
    let Ok(dir) = std::env::var(WORKER_ENV) else {
        return; // Only meaningful when started by the soak below.
    };
    let store = open(Path::new(&dir));
    let out = Mutex::new(std::io::stdout());
    {
        let mut o = out.lock().unwrap();
        writeln!(o, "ready").unwrap();
        o.flush().unwrap();
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let round: u64 = line.trim().strip_prefix("GO ").unwrap().parse().unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (store, out) = (&store, &out);
            s.spawn(move || {
                for i in 0.. {
                    let id = round * 1_000_000_000 + t * 1_000_000 + i;
                    store
                        .write(|tx| {
                            tx.table::<Item>().insert(&Item {
                                id,
                                name: format!("n{id}"),
                            })?;
                            tx.table::<Last>().put(&Last {
                                thread: t,
                                item: id,
                            })
                        })
                        .unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {t} {id}").unwrap();
                    o.flush().unwrap();
                }
            });
        }
    });
}

#[test]
fn acknowledged_grouped_writes_survive_sigkill() {
    let rounds: u64 = std::env::var("REDKEEP_GROUP_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut total = 0u64;
    for round in 1..=rounds {
        let mut worker = HelperProcess::start("helper_group_crash_worker", WORKER_ENV, dir.path());
        worker.send(&format!("GO {round}"));
        // Kill after a varying number of acknowledgements (1 to 400).
        let kill_after = (round * 7919) % 400 + 1;
        let mut seen = Vec::new();
        while (seen.len() as u64) < kill_after {
            let line = worker.line();
            assert!(!line.is_empty(), "the worker stopped on its own");
            seen.push(line);
        }
        worker.child.kill().unwrap();
        // Acknowledgements already in the pipe were given before the kill: they count too.
        loop {
            let line = worker.line();
            if line.is_empty() {
                break;
            }
            seen.push(line);
        }
        worker.child.wait().unwrap();
        let store = open(dir.path());
        for line in &seen {
            let parts: Vec<&str> = line.split(' ').collect();
            let ["ack", t, id] = parts.as_slice() else {
                continue; // libtest's own output
            };
            let (t, id): (u64, u64) = (t.parse().unwrap(), id.parse().unwrap());
            let best = acked.entry(t).or_default();
            *best = (*best).max(id);
            total += 1;
            let found = store.read(|tx| tx.table::<Item>().get(&id)).unwrap();
            assert_eq!(
                found.map(|i| i.name),
                Some(format!("n{id}")),
                "round {round}: acknowledged item {id} is missing"
            );
        }
        store
            .read(|tx| {
                for (&t, &best) in &acked {
                    let last = tx.table::<Last>().get(&t)?.expect("a pointer");
                    assert!(last.item >= best, "thread {t} went back to {last:?}");
                    assert!(
                        tx.table::<Item>().get(&last.item)?.is_some(),
                        "a pointer to a missing item: half a write is visible"
                    );
                }
                Ok(())
            })
            .unwrap();
        let mut report = CheckReport::new();
        store
            .read(|tx| {
                check_table::<Item>().check(tx, &mut report)?;
                check_table::<Last>().check(tx, &mut report)
            })
            .unwrap();
        assert!(report.ok, "round {round}: {:?}", report.problems);
    }
    assert!(total >= rounds, "too few acknowledgements: {total}");
    eprintln!("{rounds} rounds, {total} acknowledged grouped writes, none lost");
}
