//! Model-based test of the typed store: random inserts, updates and deletes (with unique
//! clashes) on a record with a unique and a non-unique index, compared after every step with
//! an in-memory model; the store is closed and reopened midway and must check clean.

use std::collections::BTreeMap;

use proptest::prelude::*;
use redkeep::store::{KeyRange, Order, Store, StoreOptions, check_table};
use redkeep::{Error, Index, Record, key};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Item {
    id: u64,
    name: String,
    group: u8,
}

impl Item {
    const NAME: Index<Item> = Index::unique("name", |i| Some(key!(i.name)));
    const GROUP: Index<Item> = Index::many("group", |i| Some(key!(u64::from(i.group))));
}

impl Record for Item {
    const TABLE: &'static str = "items";
    type Key = u64;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::NAME, &Self::GROUP];
    fn key(&self) -> u64 {
        self.id
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, String, u8),
    Update(u64, String, u8),
    Delete(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    // Few ids and names so clashes are frequent.
    let id = 1u64..8;
    let name =
        prop::sample::select(vec!["a", "b", "c", "d", "e", "a\0", ""]).prop_map(String::from);
    prop_oneof![
        4 => (id.clone(), name.clone(), 0u8..3).prop_map(|(i, n, g)| Op::Insert(i, n, g)),
        3 => (id.clone(), name, 0u8..3).prop_map(|(i, n, g)| Op::Update(i, n, g)),
        2 => id.prop_map(Op::Delete),
        1 => Just(Op::Reopen),
    ]
}

fn open(path: &std::path::Path) -> Store {
    Store::open(path, &StoreOptions::default()).unwrap()
}

fn assert_matches_model(store: &Store, model: &BTreeMap<u64, Item>) {
    store
        .read(|tx| {
            let t = tx.table::<Item>();
            let all = t.range(KeyRange::all(), Order::Asc, usize::MAX)?;
            assert_eq!(all, model.values().cloned().collect::<Vec<_>>());
            for item in model.values() {
                assert_eq!(
                    t.get_by(&Item::NAME, &key!(item.name))?.as_ref(),
                    Some(item)
                );
            }
            for g in 0u8..3 {
                let got = t.range_by(
                    &Item::GROUP,
                    KeyRange::prefix(key!(u64::from(g))),
                    Order::Asc,
                    usize::MAX,
                )?;
                let want: Vec<Item> = model.values().filter(|i| i.group == g).cloned().collect();
                assert_eq!(got, want);
            }
            assert_eq!(t.count()?, model.len() as u64);
            Ok(())
        })
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn store_matches_a_model_through_random_operations(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let mut store = open(&path);
        let mut model: BTreeMap<u64, Item> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(id, name, group) => {
                    let item = Item { id, name: name.clone(), group };
                    let clash = model.contains_key(&id) || model.values().any(|i| i.name == name);
                    let got = store.write(|tx| tx.table::<Item>().insert(&item));
                    if clash {
                        prop_assert!(matches!(got, Err(Error::Conflict { .. })), "{got:?}");
                    } else {
                        got.unwrap();
                        model.insert(id, item);
                    }
                }
                Op::Update(id, name, group) => {
                    let item = Item { id, name: name.clone(), group };
                    let got = store.write(|tx| tx.table::<Item>().update(&item));
                    if !model.contains_key(&id) {
                        prop_assert!(matches!(got, Err(Error::NotFound { .. })), "{got:?}");
                    } else if model.values().any(|i| i.name == name && i.id != id) {
                        let is_name_clash = matches!(got, Err(Error::Conflict { index: "name", .. }));
                        prop_assert!(is_name_clash, "{:?}", got);
                    } else {
                        got.unwrap();
                        model.insert(id, item);
                    }
                }
                Op::Delete(id) => {
                    let got = store.write(|tx| tx.table::<Item>().delete(&id)).unwrap();
                    prop_assert_eq!(got, model.remove(&id));
                }
                Op::Reopen => {
                    drop(store);
                    store = open(&path);
                }
            }
            assert_matches_model(&store, &model);
        }
        let report = store.read(|tx| {
            let mut r = redkeep::store::CheckReport { ok: true, ..Default::default() };
            check_table::<Item>().check(tx, &mut r)?;
            Ok(r)
        }).unwrap();
        prop_assert!(report.ok, "{:?}", report.problems);
    }
}

#[test]
fn a_failed_write_closure_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("t.redb"));
    let got: Result<(), Error> = store.write(|tx| {
        tx.table::<Item>().insert(&Item {
            id: 1,
            name: "x".into(),
            group: 0,
        })?;
        Err(Error::denied("changed my mind"))
    });
    assert!(got.is_err());
    store
        .read(|tx| {
            assert_eq!(tx.table::<Item>().count()?, 0);
            assert_eq!(tx.table::<Item>().get_by(&Item::NAME, &key!("x"))?, None);
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_unique_clash_in_a_later_index_writes_no_earlier_one() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Two {
        id: u64,
        a: String,
        b: String,
    }
    impl Two {
        const A: Index<Two> = Index::unique("a", |t| Some(key!(t.a)));
        const B: Index<Two> = Index::unique("b", |t| Some(key!(t.b)));
    }
    impl Record for Two {
        const TABLE: &'static str = "two";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::A, &Self::B];
        fn key(&self) -> u64 {
            self.id
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("t.redb"));
    store
        .write(|tx| {
            tx.table::<Two>().insert(&Two {
                id: 1,
                a: "a1".into(),
                b: "b1".into(),
            })
        })
        .unwrap();
    // Inside one transaction that goes on after the clash, the failed insert left nothing.
    store
        .write(|tx| {
            let t = tx.table::<Two>();
            let err = t
                .insert(&Two {
                    id: 2,
                    a: "a2".into(),
                    b: "b1".into(),
                })
                .unwrap_err();
            assert!(matches!(err, Error::Conflict { index: "b", .. }));
            assert_eq!(t.get_by(&Two::A, &key!("a2"))?, None);
            assert_eq!(t.get(&2)?, None);
            Ok(())
        })
        .unwrap();
    let mut r = redkeep::store::CheckReport {
        ok: true,
        ..Default::default()
    };
    store
        .read(|tx| check_table::<Two>().check(tx, &mut r))
        .unwrap();
    assert!(r.ok, "{:?}", r.problems);
}

#[test]
fn sequences_never_reuse_ids_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let store = open(&path);
    let a = store.write(|tx| tx.table::<Item>().next_id()).unwrap();
    let b = store.write(|tx| tx.table::<Item>().next_id()).unwrap();
    drop(store);
    let store = open(&path);
    let c = store.write(|tx| tx.table::<Item>().next_id()).unwrap();
    assert_eq!((a, b, c), (1, 2, 3));
}

#[test]
fn sequences_advanced_several_times_in_one_write_stay_exact() {
    use redkeep::store::Meta;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let store = open(&path);
    store
        .write(|tx| {
            let t = tx.table::<Item>();
            assert_eq!((t.next_id()?, t.next_id()?, t.next_id()?), (1, 2, 3));
            // What this write reads of the sequence is what it advanced to.
            assert_eq!(tx.sequence("items")?, 3);
            assert_eq!(tx.sequences()?, vec![("items".to_string(), 3)]);
            // Raised past what it handed out: the next id follows the raise.
            tx.raise_sequence("items", 10)?;
            assert_eq!(t.next_id()?, 11);
            // A raise below the value changes nothing.
            tx.raise_sequence("items", 5)?;
            assert_eq!(t.next_id()?, 12);
            Ok(())
        })
        .unwrap();
    // A write that fails after advancing leaves the sequence where it was.
    let failed: redkeep::Result<()> = store.write(|tx| {
        tx.table::<Item>().next_id()?;
        tx.table::<Item>().next_id()?;
        Err(Error::invalid("test", "refused on purpose"))
    });
    assert!(failed.is_err());
    assert_eq!(store.read(|tx| tx.sequence("items")).unwrap(), 12);
    // A wipe (raw table deletes) keeps the sequence; ids go on from it after a reopen.
    store.wipe(1).unwrap();
    drop(store);
    let store = open(&path);
    assert_eq!(store.write(|tx| tx.table::<Item>().next_id()).unwrap(), 13);
}

#[test]
fn ids_handed_out_between_inserts_are_kept_by_the_commit() {
    use redkeep::store::Meta;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let store = open(&path);
    let ids = store
        .write(|tx| {
            let t = tx.table::<Item>();
            let mut ids = Vec::new();
            for i in 0..5u8 {
                let id = t.next_id()?;
                t.insert(&Item {
                    id,
                    name: format!("item {i}"),
                    group: i,
                })?;
                ids.push(id);
            }
            Ok(ids)
        })
        .unwrap();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    assert_eq!(store.read(|tx| tx.sequence("items")).unwrap(), 5);
    drop(store);
    let store = open(&path);
    assert_eq!(store.write(|tx| tx.table::<Item>().next_id()).unwrap(), 6);
    assert_eq!(store.read(|tx| tx.sequence("items")).unwrap(), 6);
}

/// Names that would share storage with another type's are refused before anything is
/// written: a table name with `:` (`a` with index `b:c`, and `a:b` with index `c`, were both
/// stored as `i:a:b:c`), an empty one, and two indexes of one type with one name. So are
/// names holding a control character, which PostgreSQL cannot store (NUL) or which garble
/// what `check` prints: on every engine alike.
#[test]
fn table_and_index_names_that_would_share_storage_are_refused() {
    macro_rules! record {
        ($ty:ident, $table:expr, $($index:expr),*) => {
            #[derive(Debug, Clone, Serialize, Deserialize)]
            struct $ty {
                id: u64,
                v: String,
            }
            impl Record for $ty {
                const TABLE: &'static str = $table;
                type Key = u64;
                const INDEXES: &'static [&'static Index<Self>] =
                    &[$(&Index::unique($index, |r: &$ty| Some(key!(r.v)))),*];
                fn key(&self) -> u64 {
                    self.id
                }
            }
        };
    }
    record!(Colon, "a:b", "c");
    record!(IndexColon, "a", "b:c");
    record!(Empty, "", "c");
    record!(Twice, "twice", "k", "k");
    record!(Fine, "fine", "k");
    record!(Nul, "nul\0name", "k");
    record!(LineBreak, "line\nbreak", "k");
    record!(IndexNul, "indexed", "a\0b");
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("t.redb"));
    // One record of type `$ty` inserted.
    macro_rules! insert {
        ($ty:ident) => {
            store.write(|tx| {
                tx.table::<$ty>().insert(&$ty {
                    id: 1,
                    v: "x".into(),
                })
            })
        };
    }
    for (result, what) in [
        (insert!(Colon), "a table name with a colon"),
        (insert!(IndexColon), "an index name with a colon"),
        (insert!(Empty), "an empty table name"),
        (insert!(Twice), "two indexes with one name"),
        (insert!(Nul), "a table name with NUL"),
        (insert!(LineBreak), "a table name with a line break"),
        (insert!(IndexNul), "an index name with NUL"),
    ] {
        match result {
            Err(Error::InvalidInput { reason, .. }) => assert!(
                reason.contains("rename") || reason.contains("own name"),
                "{what}: {reason}"
            ),
            other => panic!("{what}: {other:?}"),
        }
    }
    insert!(Fine).unwrap();
    let fine = store.read(|tx| tx.table::<Fine>().count()).unwrap();
    assert_eq!(fine, 1);
}
