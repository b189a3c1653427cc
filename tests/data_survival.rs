//! Data that survives change: records that evolve without migrations, upgrades and their
//! reverses on stores written by earlier releases, backups and restores that hold every
//! workspace, exports that round-trip, and identities that never pass to a new account.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{TestDir, copy_tree};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use redkeep::auth::api_keys::ApiKeySpec;
use redkeep::auth::sessions::LoginMeta;
use redkeep::store::{KeyRange, Order, Store, StoreOptions, check_table};
use redkeep::{
    Error, Index, NewUser, Options, PasswordParams, Record, Redkeep, Timestamp, UserFilter, key,
};
use serde::{Deserialize, Serialize};

/// Every record table of a store file, as raw key → value bytes.
type Tables = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

fn raw_tables(db: &Path, prefix: &str) -> Tables {
    let db = redb::Database::open(db).unwrap();
    let tx = db.begin_read().unwrap();
    let mut out = Tables::new();
    for h in tx.list_tables().unwrap() {
        let name = h.name().to_string();
        if !name.starts_with(prefix) {
            continue;
        }
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
        let t = tx.open_table(def).unwrap();
        let rows: BTreeMap<Vec<u8>, Vec<u8>> = t
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect();
        if !rows.is_empty() {
            out.insert(name, rows);
        }
    }
    out
}

mod v1 {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Note {
        pub id: u64,
        pub text: String,
    }
    impl Record for Note {
        const TABLE: &'static str = "notes";
        type Key = u64;
        fn key(&self) -> u64 {
            self.id
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Tag {
        pub id: u64,
        pub label: String,
    }
    impl Tag {
        pub const LABEL: Index<Tag> = Index::unique("label", |t| Some(key!(t.label)));
    }
    impl Record for Tag {
        const TABLE: &'static str = "tags";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::LABEL];
        fn key(&self) -> u64 {
            self.id
        }
    }
}

mod v2 {
    use super::*;

    /// Gained an optional field: no version change, no upgrade, no migration.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Note {
        pub id: u64,
        pub text: String,
        pub pinned: Option<bool>,
    }
    impl Record for Note {
        const TABLE: &'static str = "notes";
        type Key = u64;
        fn key(&self) -> u64 {
            self.id
        }
    }

    /// Renamed `label` to `name`: version 2, reading version 1 through its frozen shape.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Tag {
        pub id: u64,
        pub name: String,
    }
    #[derive(Deserialize)]
    struct TagV1 {
        id: u64,
        label: String,
    }
    impl Tag {
        pub const NAME: Index<Tag> = Index::unique("label", |t| Some(key!(t.name)));
    }
    impl Record for Tag {
        const TABLE: &'static str = "tags";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::NAME];
        const VERSION: u32 = 2;
        fn key(&self) -> u64 {
            self.id
        }
        fn upgrade(old: redkeep::store::Stored<'_>) -> Result<Self, String> {
            let t: TagV1 = old.decode()?;
            Ok(Tag {
                id: t.id,
                name: t.label,
            })
        }
    }
}

#[test]
fn records_gain_a_field_and_rename_one_without_migration_or_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.redb");
    {
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        store
            .write(|tx| {
                for id in 1..=3 {
                    tx.table::<v1::Note>().insert(&v1::Note {
                        id,
                        text: format!("note {id}"),
                    })?;
                    tx.table::<v1::Tag>().insert(&v1::Tag {
                        id,
                        label: format!("tag{id}"),
                    })?;
                }
                Ok(())
            })
            .unwrap();
    }
    let before = raw_tables(&path, "r:");
    {
        // The application's next release reads every record with its new types.
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let (notes, tags) = store
            .read(|tx| {
                Ok((
                    tx.table::<v2::Note>()
                        .range(KeyRange::all(), Order::Asc, 10)?,
                    tx.table::<v2::Tag>()
                        .range(KeyRange::all(), Order::Asc, 10)?,
                ))
            })
            .unwrap();
        assert_eq!(notes.len(), 3);
        assert!(notes.iter().all(|n| n.pinned.is_none()));
        assert_eq!(tags[1].name, "tag2");
        let found = store
            .read(|tx| tx.table::<v2::Tag>().get_by(&v2::Tag::NAME, &key!("tag3")))
            .unwrap();
        assert_eq!(found.unwrap().id, 3);
        let mut report = redkeep::store::CheckReport::new();
        store
            .read(|tx| {
                check_table::<v2::Note>().check(tx, &mut report)?;
                check_table::<v2::Tag>().check(tx, &mut report)
            })
            .unwrap();
        assert!(report.ok, "{:?}", report.problems);
    }
    // Reading rewrote nothing: every stored record is byte for byte what version 1 wrote.
    assert_eq!(raw_tables(&path, "r:"), before);
    {
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        store
            .write(|tx| {
                tx.table::<v2::Tag>().modify(&2, |t| {
                    t.name = "renamed".into();
                    Ok(())
                })
            })
            .unwrap();
    }
    let after = raw_tables(&path, "r:");
    let changed: Vec<&Vec<u8>> = after["r:tags"]
        .iter()
        .filter(|(k, v)| before["r:tags"].get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        changed,
        vec![&2u64.to_be_bytes().to_vec()],
        "only the updated record"
    );
    assert_eq!(after["r:notes"], before["r:notes"]);
}

mod v3 {
    use super::*;

    /// Dropped `pinned` for good, and says so.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Note {
        pub id: u64,
        pub text: String,
    }
    impl Record for Note {
        const TABLE: &'static str = "notes";
        type Key = u64;
        const DROPPED_FIELDS: &'static [&'static str] = &["pinned"];
        fn key(&self) -> u64 {
            self.id
        }
    }

    /// Version 2's note with `pinned` left out of the value while it is `None`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct SparseNote {
        pub id: u64,
        pub text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pinned: Option<bool>,
    }
    impl Record for SparseNote {
        const TABLE: &'static str = "notes";
        type Key = u64;
        fn key(&self) -> u64 {
            self.id
        }
    }

    /// A secret, and a later release's copy of it with a second hash derived from it.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Secret {
        pub id: u64,
        pub hash: String,
    }
    impl Record for Secret {
        const TABLE: &'static str = "secrets";
        type Key = u64;
        const SECRET_FIELDS: &'static [&'static str] = &["hash"];
        fn key(&self) -> u64 {
            self.id
        }
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct SecretV2 {
        pub id: u64,
        pub hash: String,
        pub hash2: Option<String>,
    }
    impl Record for SecretV2 {
        const TABLE: &'static str = "secrets";
        type Key = u64;
        const SECRET_FIELDS: &'static [&'static str] = &["hash", "hash2"];
        fn key(&self) -> u64 {
            self.id
        }
    }

    /// A later release's note with a secret field.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct SecretNote {
        pub id: u64,
        pub text: String,
        pub token: Option<String>,
    }
    impl Record for SecretNote {
        const TABLE: &'static str = "notes";
        type Key = u64;
        const SECRET_FIELDS: &'static [&'static str] = &["token"];
        fn key(&self) -> u64 {
            self.id
        }
    }

    /// A later release's note, with a field none of the others know.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ColorNote {
        pub id: u64,
        pub text: String,
        pub pinned: Option<bool>,
        pub color: Option<String>,
    }
    impl Record for ColorNote {
        const TABLE: &'static str = "notes";
        type Key = u64;
        fn key(&self) -> u64 {
            self.id
        }
    }
}

/// A rollback: the previous release (v1, without `pinned`) changes notes the next one (v2)
/// wrote, by each way of rewriting a record. The next release, back again, finds `pinned`
/// as it left it, also after the store is opened again (the kept field's shape is in the
/// file's registry), and a check finds nothing wrong.
#[test]
fn an_older_build_that_rewrites_a_record_keeps_the_fields_a_newer_one_added() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.redb");
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    store
        .write(|tx| {
            for id in 1..=4 {
                tx.table::<v2::Note>().insert(&v2::Note {
                    id,
                    text: format!("note {id}"),
                    pinned: Some(id % 2 == 1),
                })?;
            }
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| {
            let t = tx.table::<v1::Note>();
            t.modify(&1, |n| {
                n.text = "modified".into();
                Ok(())
            })?;
            t.update(&v1::Note {
                id: 2,
                text: "updated".into(),
            })?;
            t.put(&v1::Note {
                id: 3,
                text: "put".into(),
            })?;
            // Twice: what the first rewrite kept is kept again.
            t.modify(&3, |n| {
                n.text.push('!');
                Ok(())
            })
        })
        .unwrap();
    drop(store);
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    let notes = store
        .read(|tx| {
            tx.table::<v2::Note>()
                .range(KeyRange::all(), Order::Asc, 10)
        })
        .unwrap();
    let got: Vec<(&str, Option<bool>)> =
        notes.iter().map(|n| (n.text.as_str(), n.pinned)).collect();
    assert_eq!(
        got,
        [
            ("modified", Some(true)),
            ("updated", Some(false)),
            ("put!", Some(true)),
            ("note 4", Some(false)),
        ]
    );
    let mut report = redkeep::store::CheckReport::new();
    store
        .read(|tx| check_table::<v2::Note>().check(tx, &mut report))
        .unwrap();
    assert!(report.ok, "{:?}", report.problems);
    // The older build's export carries what it keeps (an import into it refuses the field,
    // naming it, rather than lose it).
    let mut exported = Vec::new();
    store
        .read(|tx| {
            check_table::<v1::Note>().export(tx, &mut |_, json| {
                exported.push(json);
                Ok(())
            })
        })
        .unwrap();
    let pinned: Vec<&serde_json::Value> = exported.iter().map(|j| &j["pinned"]).collect();
    assert_eq!(pinned, [true, false, true, false], "{exported:?}");
}

/// What a type declares is written as the type has it: a field it leaves out of the value
/// while `None` is cleared by a rewrite (not brought back from the stored record, while a
/// field it does not know is), and a field it lists in `DROPPED_FIELDS` goes with the next
/// rewrite.
#[test]
fn a_rewrite_clears_declared_fields_and_drops_the_fields_a_type_gave_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.redb");
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    store
        .write(|tx| {
            for id in 1..=2 {
                tx.table::<v3::ColorNote>().insert(&v3::ColorNote {
                    id,
                    text: format!("note {id}"),
                    pinned: Some(true),
                    color: Some("red".into()),
                })?;
            }
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| {
            tx.table::<v3::SparseNote>().modify(&1, |n| {
                n.pinned = None;
                Ok(())
            })?;
            tx.table::<v3::Note>().modify(&2, |n| {
                n.text = "without pinned".into();
                Ok(())
            })
        })
        .unwrap();
    let notes = store
        .read(|tx| {
            tx.table::<v3::ColorNote>()
                .range(KeyRange::all(), Order::Asc, 10)
        })
        .unwrap();
    assert_eq!(
        notes[0].pinned, None,
        "cleared by the type that declares it"
    );
    assert_eq!(notes[1].pinned, None, "dropped by the type that gave it up");
    assert_eq!(notes[1].text, "without pinned");
    let colors: Vec<Option<&str>> = notes.iter().map(|n| n.color.as_deref()).collect();
    assert_eq!(colors, [Some("red"); 2], "kept by both");
    // A record with secrets keeps nothing it does not declare: the newer build's second hash
    // of the old secret goes when the older build changes the secret.
    store
        .write(|tx| {
            tx.table::<v3::SecretV2>().insert(&v3::SecretV2 {
                id: 1,
                hash: "old".into(),
                hash2: Some("derived from old".into()),
            })?;
            tx.table::<v3::Secret>().modify(&1, |s| {
                s.hash = "new".into();
                Ok(())
            })
        })
        .unwrap();
    let secret = store
        .read(|tx| tx.table::<v3::SecretV2>().get(&1))
        .unwrap()
        .unwrap();
    assert_eq!((secret.hash.as_str(), secret.hash2), ("new", None));
    // A newer build's secret field, kept by an older build that knows no secrets, stays
    // secret in the catalog that `inspect` and PostgreSQL's readable column go by.
    store
        .write(|tx| {
            tx.table::<v3::SecretNote>().insert(&v3::SecretNote {
                id: 9,
                text: "t".into(),
                token: Some("a secret".into()),
            })?;
            tx.table::<v1::Note>().modify(&9, |n| {
                n.text = "rewritten".into();
                Ok(())
            })
        })
        .unwrap();
    let kept = store
        .read(|tx| tx.table::<v3::SecretNote>().get(&9))
        .unwrap()
        .unwrap();
    assert_eq!(kept.token.as_deref(), Some("a secret"));
    let catalog = store.read(|tx| redkeep::store::Meta::catalog(tx)).unwrap();
    let notes = catalog.iter().find(|t| t.name == "notes").unwrap();
    assert_eq!(notes.secret_fields, ["token"]);
}

/// A type that gained a field without a default reads its old records as an error that says
/// how to fix the type, not as damage: the store goes on taking writes.
#[test]
fn a_record_type_that_does_not_fit_its_data_is_an_error_not_damage() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Note {
        id: u64,
        text: String,
        priority: u32,
    }
    impl Record for Note {
        const TABLE: &'static str = "notes";
        type Key = u64;
        fn key(&self) -> u64 {
            self.id
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("app.redb"), &StoreOptions::default()).unwrap();
    store
        .write(|tx| {
            tx.table::<v1::Note>().insert(&v1::Note {
                id: 1,
                text: "old".into(),
            })
        })
        .unwrap();
    let err = store.read(|tx| tx.table::<Note>().get(&1)).unwrap_err();
    match &err {
        Error::Corrupt { reason, .. } => assert!(
            reason.contains("missing field `priority`")
                && reason.contains("does not fit the record type")
                && reason.contains("#[serde(default)]"),
            "{reason}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(store.damage(), None);
    store
        .write(|tx| {
            tx.table::<v1::Note>().insert(&v1::Note {
                id: 2,
                text: "new".into(),
            })
        })
        .unwrap();
}

/// `check` on an application table whose type gained a field without a default reports each
/// old record with how to fix the type, and `check --repair` leaves the records and their
/// index entries where they are (it moved them to quarantine, emptying the table): once the
/// type reads them again, every record and index lookup is there.
#[test]
fn a_repair_leaves_records_that_do_not_fit_the_applications_type() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Tag {
        id: u64,
        label: String,
        colour: String,
    }
    impl Tag {
        const LABEL: Index<Tag> = Index::unique("label", |t| Some(key!(t.label)));
    }
    impl Record for Tag {
        const TABLE: &'static str = "tags";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::LABEL];
        fn key(&self) -> u64 {
            self.id
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        rk.store()
            .write(|tx| {
                for id in 1..=2 {
                    tx.table::<v1::Tag>().insert(&v1::Tag {
                        id,
                        label: format!("t{id}"),
                    })?;
                }
                Ok(())
            })
            .unwrap();
    }
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        rk.register_table::<Tag>().unwrap();
        let report = rk.check(false).unwrap();
        let about: Vec<&String> = report
            .problems
            .iter()
            .filter(|p| p.contains("tags"))
            .collect();
        assert_eq!(about.len(), 2, "{:?}", report.problems);
        assert!(
            about
                .iter()
                .all(|p| p.contains("#[serde(default)]") && p.contains("leaves it in place")),
            "{about:?}"
        );
        let repaired = rk.check(true).unwrap();
        assert!(
            !repaired.repaired.iter().any(|r| r.contains("tags")),
            "{:?}",
            repaired.repaired
        );
    }
    let rk = Redkeep::open(dir.path(), options()).unwrap();
    let (tags, found) = rk
        .store()
        .read(|tx| {
            let t = tx.table::<v1::Tag>();
            Ok((
                t.range(KeyRange::all(), Order::Asc, 10)?,
                t.get_by(&v1::Tag::LABEL, &key!("t2"))?,
            ))
        })
        .unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(found.map(|t| t.id), Some(2));
    rk.register_table::<v1::Tag>().unwrap();
    assert!(rk.check(false).unwrap().ok);
}

/// An application type whose records gained indexes: `Member` v1 had none, v2 looks
/// members up by email (unique) and by team.
mod indexed {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Plain {
        pub id: u64,
        pub email: String,
        pub team: u64,
    }
    impl Record for Plain {
        const TABLE: &'static str = "members";
        type Key = u64;
        fn key(&self) -> u64 {
            self.id
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Member {
        pub id: u64,
        pub email: String,
        pub team: u64,
    }
    impl Member {
        pub const EMAIL: Index<Member> = Index::unique("email", |m| Some(key!(m.email)));
        pub const TEAM: Index<Member> = Index::many("team", |m| Some(key!(m.team)));
    }
    impl Record for Member {
        const TABLE: &'static str = "members";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::EMAIL, &Self::TEAM];
        fn key(&self) -> u64 {
            self.id
        }
    }

    pub fn plain(id: u64, email: &str, team: u64) -> Plain {
        Plain {
            id,
            email: email.into(),
            team,
        }
    }

    pub fn write_plain(rk: &Redkeep, members: &[Plain]) {
        rk.store()
            .write(|tx| {
                for m in members {
                    tx.table::<Plain>().put(m)?;
                }
                Ok(())
            })
            .unwrap();
    }

    /// The ids found by email for each of `emails`, and the ids in `team`.
    pub fn lookups(rk: &Redkeep, emails: &[&str], team: u64) -> (Vec<Option<u64>>, Vec<u64>) {
        rk.store()
            .read(|tx| {
                let t = tx.table::<Member>();
                let mut by_email = Vec::new();
                for e in emails {
                    by_email.push(t.get_by(&Member::EMAIL, &key!(*e))?.map(|m| m.id));
                }
                let in_team = t
                    .range_by(&Member::TEAM, KeyRange::prefix(key!(team)), Order::Asc, 100)?
                    .into_iter()
                    .map(|m| m.id)
                    .collect();
                Ok((by_email, in_team))
            })
            .unwrap()
    }
}

#[test]
fn an_index_added_to_a_type_finds_the_records_written_before_it() {
    use indexed::*;
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        write_plain(
            &rk,
            &[plain(1, "a@x", 7), plain(2, "b@x", 7), plain(3, "c@x", 8)],
        );
    }
    // Registered at start-up: the new indexes are built before anything reads them.
    let rk = Redkeep::open(dir.path(), options()).unwrap();
    rk.register_table::<Member>().unwrap();
    assert_eq!(
        lookups(&rk, &["a@x", "b@x", "c@x"], 7),
        (vec![Some(1), Some(2), Some(3)], vec![1, 2])
    );
    assert!(rk.check(false).unwrap().ok);
    // Uniqueness holds across the old records and new ones.
    let clash = rk.store().write(|tx| {
        tx.table::<Member>().insert(&Member {
            id: 4,
            email: "b@x".into(),
            team: 9,
        })
    });
    assert!(
        matches!(clash, Err(Error::Conflict { index: "email", .. })),
        "{clash:?}"
    );
    drop(rk);

    // The type loses its indexes and changes records, then gains them again: the rebuilt
    // indexes follow the records, with no entry left from their earlier life.
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        write_plain(&rk, &[plain(1, "z@x", 8), plain(5, "e@x", 7)]);
    }
    // No registration this time: the first write of the type builds them.
    let rk = Redkeep::open(dir.path(), options()).unwrap();
    rk.store()
        .write(|tx| {
            tx.table::<Member>().insert(&Member {
                id: 6,
                email: "f@x".into(),
                team: 7,
            })
        })
        .unwrap();
    assert_eq!(
        lookups(&rk, &["a@x", "z@x", "e@x", "f@x"], 7),
        (vec![None, Some(1), Some(5), Some(6)], vec![2, 5, 6])
    );
    rk.register_table::<Member>().unwrap();
    let report = rk.check(false).unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

#[test]
fn a_new_unique_index_two_old_records_share_is_refused_until_one_goes() {
    use indexed::*;
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        write_plain(
            &rk,
            &[
                plain(1, "a@x", 7),
                plain(2, "same@x", 7),
                plain(3, "same@x", 8),
            ],
        );
    }
    let rk = Redkeep::open(dir.path(), options()).unwrap();
    let err = rk.register_table::<Member>().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::Denied { .. })
            && text.contains("members.email")
            && text.contains("records 2 and 3 share its key")
            && text.contains("delete one of them"),
        "{text}"
    );
    // Writes of the type are refused the same way (not as a clash of the record written),
    // and nothing was half built.
    let write = rk.store().write(|tx| {
        tx.table::<Member>().insert(&Member {
            id: 4,
            email: "d@x".into(),
            team: 7,
        })
    });
    assert!(matches!(write, Err(Error::Denied { .. })), "{write:?}");
    assert_eq!(lookups(&rk, &["a@x"], 7), (vec![None], vec![]));
    assert_eq!(
        rk.store().read(|tx| tx.table::<Plain>().count()).unwrap(),
        3
    );
    // The type stayed registered: a repair moves the later record aside, and the index is
    // built at the next write.
    let repaired = rk.check(true).unwrap();
    assert!(
        repaired
            .repaired
            .iter()
            .any(|r| r.contains("records 2 and 3") && r.contains("quarantine:members")),
        "{:?}",
        repaired.repaired
    );
    rk.register_table::<Member>().unwrap();
    assert_eq!(
        lookups(&rk, &["a@x", "same@x"], 7),
        (vec![Some(1), Some(2)], vec![1, 2])
    );
    assert!(rk.check(false).unwrap().ok);
    // Written again by a type without the index (an earlier release: one handle refuses
    // it once it has the type with the index), a record takes an email another holds;
    // deleting it (the type's delete needs no index built) lets the index build.
    let refused = rk
        .store()
        .write(|tx| tx.table::<Plain>().put(&plain(5, "a@x", 9)));
    assert!(
        matches!(&refused, Err(Error::InvalidInput { reason, .. }) if reason.contains("one table holds the records of one type")),
        "{refused:?}"
    );
    drop(rk);
    let rk = Redkeep::open(dir.path(), options()).unwrap();
    write_plain(&rk, &[plain(5, "a@x", 9)]);
    drop(rk);
    let rk = Redkeep::open(dir.path(), options()).unwrap();
    assert!(matches!(
        rk.register_table::<Member>(),
        Err(Error::Denied { .. })
    ));
    rk.store()
        .write(|tx| tx.table::<Member>().delete(&5))
        .unwrap();
    rk.register_table::<Member>().unwrap();
    assert_eq!(lookups(&rk, &["a@x"], 9), (vec![Some(1)], vec![]));
}

/// An index turned unique under the same name. When its build is refused, the other
/// version's index stays whole for that version, and a read of the new version through it
/// fails alone (never a wrong record): the store goes on taking writes. A refused build of
/// an index no version lists leaves no entry of its earlier life to be read.
#[test]
fn an_index_made_unique_never_reads_its_old_entries_nor_stops_writes() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Many {
        id: u64,
        tag: String,
    }
    impl Many {
        const BY_TAG: Index<Many> = Index::many("by_tag", |m| Some(key!(m.tag)));
    }
    impl Record for Many {
        const TABLE: &'static str = "tagged";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_TAG];
        fn key(&self) -> u64 {
            self.id
        }
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Unique {
        id: u64,
        tag: String,
    }
    impl Unique {
        const BY_TAG: Index<Unique> = Index::unique("by_tag", |m| Some(key!(m.tag)));
    }
    impl Record for Unique {
        const TABLE: &'static str = "tagged";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_TAG];
        fn key(&self) -> u64 {
            self.id
        }
    }
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let seeded = |tags: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        rk.store()
            .write(|tx| {
                for (i, tag) in tags.iter().enumerate() {
                    tx.table::<Many>().insert(&Many {
                        id: i as u64 + 1,
                        tag: tag.to_string(),
                    })?;
                }
                Ok(())
            })
            .unwrap();
        drop(rk);
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        (dir, rk)
    };
    let found = |rk: &Redkeep, tag: &str| {
        rk.store().read(|tx| {
            let t = tx.table::<Unique>();
            Ok((
                t.get_by(&Unique::BY_TAG, &key!(tag))?.map(|u| u.id),
                t.range_by(&Unique::BY_TAG, KeyRange::all(), Order::Asc, 10)?
                    .len(),
            ))
        })
    };
    let writes_go_on = |rk: &Redkeep, email: &str| {
        assert_eq!(rk.store().damage(), None);
        rk.users()
            .create(NewUser {
                email: email.into(),
                name: None,
                username: None,
                password: None,
                is_admin: false,
                invite: None,
            })
            .unwrap();
    };
    let in_many = |rk: &Redkeep, tag: &str| {
        rk.store()
            .read(|tx| {
                Ok(tx
                    .table::<Many>()
                    .range_by(&Many::BY_TAG, KeyRange::prefix(key!(tag)), Order::Asc, 10)?
                    .into_iter()
                    .map(|m| m.id)
                    .collect::<Vec<_>>())
            })
            .unwrap()
    };
    // Refused at registration: the old version's index stays whole; the new one's reads
    // fail, and nothing else does.
    let (_dir, rk) = seeded(&["t1", "t2", "t1"]);
    assert!(matches!(
        rk.register_table::<Unique>(),
        Err(Error::Denied { .. })
    ));
    assert_eq!(in_many(&rk, "t1"), vec![1, 3]);
    assert!(matches!(
        found(&rk, "t2"),
        Ok((None, _)) | Err(Error::Corrupt { .. })
    ));
    writes_go_on(&rk, "a@example.com");
    // Refused at the type's first write, which fails: the same.
    let (_dir, rk) = seeded(&["t1", "t2", "t1"]);
    let write = rk.store().write(|tx| {
        tx.table::<Unique>().insert(&Unique {
            id: 9,
            tag: "t9".into(),
        })
    });
    assert!(matches!(write, Err(Error::Denied { .. })), "{write:?}");
    assert_eq!(in_many(&rk, "t1"), vec![1, 3]);
    writes_go_on(&rk, "b@example.com");
    // Read through before any build: that read fails, and only it.
    let (_dir, rk) = seeded(&["t1", "t2", "t3"]);
    let early = found(&rk, "t2");
    assert!(matches!(early, Err(Error::Corrupt { .. })), "{early:?}");
    writes_go_on(&rk, "c@example.com");
    rk.register_table::<Unique>().unwrap();
    assert_eq!(found(&rk, "t2").unwrap(), (Some(2), 3));
    assert!(rk.check(false).unwrap().ok);
    // An index no version lists any more (a type without it wrote since), with entries of
    // its earlier life that no longer match: its refused build empties it, so no lookup
    // finds a record under a key it left.
    #[derive(Debug, Serialize, Deserialize)]
    struct Bare {
        id: u64,
        tag: String,
    }
    impl Record for Bare {
        const TABLE: &'static str = "tagged";
        type Key = u64;
        fn key(&self) -> u64 {
            self.id
        }
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        rk.register_table::<Unique>().unwrap();
        rk.store()
            .write(|tx| {
                for (id, tag) in [(1, "t1"), (2, "t2")] {
                    tx.table::<Unique>().insert(&Unique {
                        id,
                        tag: tag.into(),
                    })?;
                }
                Ok(())
            })
            .unwrap();
    }
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        rk.store()
            .write(|tx| {
                tx.table::<Bare>().put(&Bare {
                    id: 2,
                    tag: "t1".into(),
                })
            })
            .unwrap();
    }
    let rk = Redkeep::open(dir.path(), options()).unwrap();
    let write = rk.store().write(|tx| {
        tx.table::<Unique>().insert(&Unique {
            id: 9,
            tag: "t9".into(),
        })
    });
    assert!(matches!(write, Err(Error::Denied { .. })), "{write:?}");
    assert_eq!(found(&rk, "t2").unwrap(), (None, 0));
    writes_go_on(&rk, "d@example.com");
}

/// A table keyed by secret material (a token's hash) never shows its keys in what a check,
/// a repair or a refused index build says.
#[test]
fn secret_keys_stay_out_of_checks_repairs_and_refused_builds() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Plain {
        hash: String,
        label: String,
    }
    impl Record for Plain {
        const TABLE: &'static str = "tokens";
        type Key = String;
        const SECRET_KEY: bool = true;
        fn key(&self) -> String {
            self.hash.clone()
        }
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Labelled {
        hash: String,
        label: String,
    }
    impl Labelled {
        const LABEL: Index<Labelled> = Index::unique("label", |t| Some(key!(t.label)));
    }
    impl Record for Labelled {
        const TABLE: &'static str = "tokens";
        type Key = String;
        const SECRET_KEY: bool = true;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::LABEL];
        fn key(&self) -> String {
            self.hash.clone()
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        rk.store()
            .write(|tx| {
                for hash in ["SECRETHASHAAAA", "SECRETHASHBBBB"] {
                    tx.table::<Plain>().insert(&Plain {
                        hash: hash.into(),
                        label: "same".into(),
                    })?;
                }
                Ok(())
            })
            .unwrap();
    }
    let rk = Redkeep::open(dir.path(), options()).unwrap();
    let refused = rk.register_table::<Labelled>().unwrap_err().to_string();
    let checked = rk.check(false).unwrap();
    let repaired = rk.check(true).unwrap();
    let said = format!("{refused} {:?} {:?}", checked.problems, repaired.repaired);
    assert!(said.contains("<redacted>"), "{said}");
    assert!(!said.contains("SECRETHASH"), "{said}");
    assert!(!checked.ok && !repaired.repaired.is_empty(), "{said}");
}

/// The same mismatch in one of redkeep's own tables is no application's type change but a
/// damaged record (or a bug): the store refuses writes, as for any damage.
#[test]
fn a_whole_record_that_does_not_fit_in_redkeeps_own_table_is_damage() {
    let t = TestDir::new();
    if t.store.is_some() {
        return; // The raw redb file is planted below; PostgreSQL stores are checked apart.
    }
    let rk = t.open();
    init_root(&rk);
    drop(rk);
    // A whole format-2 value (a role's, its shape registered) under the first user's key.
    let db = t.path().join(redkeep::STORE_FILE);
    let role = {
        let d = redb::Database::open(&db).unwrap();
        let r = d.begin_read().unwrap();
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new("r:roles");
        let roles = r.open_table(def).unwrap();
        let found = roles.get(&1u64.to_be_bytes()[..]).unwrap().unwrap();
        found.value().to_vec()
    };
    common::plant_entry(None, t.path(), "r:users", &1u64.to_be_bytes(), &role);
    let rk = t.open();
    assert!(matches!(rk.users().get(1), Err(Error::Corrupt { .. })));
    assert!(rk.store().damage().is_some());
}

/// An application type whose table is named like one of redkeep's own is refused before it
/// writes there (it made every read of the accounts fail, and the store refuse writes).
#[test]
fn an_application_type_cannot_take_a_table_of_redkeeps() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Note {
        id: u64,
        text: String,
    }
    impl Record for Note {
        const TABLE: &'static str = "users";
        type Key = u64;
        fn key(&self) -> u64 {
            self.id
        }
    }
    let t = TestDir::new();
    let rk = t.open();
    init_root(&rk);
    let err = rk
        .store()
        .write(|tx| {
            tx.table::<Note>().insert(&Note {
                id: 2,
                text: "hi".into(),
            })
        })
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { reason, .. } if reason.contains("one of redkeep's own tables")),
        "{err:?}"
    );
    // Nor replace a user there, nor delete there, nor take its ids.
    let root = Note {
        id: 1,
        text: "mine now".into(),
    };
    for err in [
        rk.store()
            .write(|tx| tx.table::<Note>().update(&root))
            .unwrap_err(),
        rk.store()
            .write(|tx| tx.table::<Note>().put(&root))
            .unwrap_err(),
        rk.store()
            .write(|tx| tx.table::<Note>().delete(&1).map(drop))
            .unwrap_err(),
        rk.store()
            .write(|tx| tx.table::<Note>().next_id().map(drop))
            .unwrap_err(),
        rk.store()
            .write(|tx| tx.table::<Note>().clear().map(drop))
            .unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::InvalidInput { reason, .. } if reason.contains("one of redkeep's own tables")),
            "{err:?}"
        );
    }
    let err = rk.register_table::<Note>().unwrap_err();
    assert!(err.to_string().contains("another Record::TABLE"), "{err}");
    assert_eq!(rk.users().list(UserFilter::All, None, 10).unwrap().len(), 1);
    assert_eq!(rk.store().damage(), None);
    assert!(rk.check(false).unwrap().ok);
}

/// Reading one of redkeep's own tables through an application type is refused as writing
/// is, naming the table (it was a `Corrupt` that blamed a newer version of the application,
/// and a type that happened to fit would have read the accounts).
#[test]
fn an_application_type_cannot_read_a_table_of_redkeeps() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Clash {
        id: u64,
    }
    impl Record for Clash {
        const TABLE: &'static str = "users";
        type Key = u64;
        fn key(&self) -> u64 {
            self.id
        }
    }
    let t = TestDir::new();
    let rk = t.open();
    init_root(&rk);
    let refused = |err: Error| {
        assert!(
            matches!(&err, Error::InvalidInput { reason, .. }
                if reason.contains("one of redkeep's own tables") && reason.contains("\"users\"")),
            "{err:?}"
        );
    };
    refused(
        rk.store()
            .read(|tx| tx.table::<Clash>().range(KeyRange::all(), Order::Asc, 1))
            .unwrap_err(),
    );
    refused(
        rk.store()
            .read(|tx| tx.table::<Clash>().get(&1))
            .unwrap_err(),
    );
    assert_eq!(rk.users().list(UserFilter::All, None, 10).unwrap().len(), 1);
    assert_eq!(rk.store().damage(), None);
}

/// Two application types naming one table (a `Record::TABLE` copied from another type)
/// that declare different keys or indexes: the second is refused, naming both, before it
/// writes (its records broke every read of the first's, as `Corrupt`, and left the first's
/// unique index without them, while `check` said the store was fine). A second type that
/// declares the same key and indexes is let through, and so is a type that gains an index
/// from one handle to the next (a new release).
#[test]
fn a_second_type_on_an_application_table_is_refused() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Thing {
        id: u64,
        name: String,
    }
    impl Thing {
        const NAME: Index<Thing> = Index::unique("name", |t| Some(key!(t.name)));
    }
    impl Record for Thing {
        const TABLE: &'static str = "things";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::NAME];
        const ID_SEQUENCE: bool = true;
        fn key(&self) -> u64 {
            self.id
        }
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Size {
        id: u64,
        size: i32,
    }
    impl Record for Size {
        const TABLE: &'static str = "things";
        type Key = u64;
        fn key(&self) -> u64 {
            self.id
        }
    }
    // The same key and index as `Thing`, and fields of its own.
    #[derive(Debug, Serialize, Deserialize)]
    struct ThingAlike {
        id: u64,
        name: String,
        #[serde(default)]
        colour: Option<String>,
    }
    impl ThingAlike {
        const NAME: Index<ThingAlike> = Index::unique("name", |t| Some(key!(t.name)));
    }
    impl Record for ThingAlike {
        const TABLE: &'static str = "things";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::NAME];
        fn key(&self) -> u64 {
            self.id
        }
    }

    let t = TestDir::new();
    let rk = t.open();
    rk.store()
        .write(|tx| {
            let things = tx.table::<Thing>();
            let id = things.next_id()?;
            things.insert(&Thing {
                id,
                name: "x".into(),
            })
        })
        .unwrap();
    let refused = |err: Error| {
        let said = err.to_string();
        assert!(
            matches!(err, Error::InvalidInput { .. })
                && said.contains("\"things\"")
                && said.contains("Thing (an 8-byte key, indexes name (unique))")
                && said.contains("Size (an 8-byte key, no index)")
                && said.contains("give one of them another Record::TABLE"),
            "{said}"
        );
    };
    for size in [1, 2] {
        refused(
            rk.store()
                .write(|tx| tx.table::<Size>().insert(&Size { id: size, size: 5 }))
                .unwrap_err(),
        );
    }
    refused(
        rk.store()
            .write(|tx| tx.table::<Size>().put(&Size { id: 1, size: 5 }))
            .unwrap_err(),
    );
    refused(rk.register_table::<Size>().unwrap_err());
    refused(
        rk.store()
            .read(|tx| tx.table::<Size>().get(&1))
            .unwrap_err(),
    );
    let things = rk
        .store()
        .read(|tx| tx.table::<Thing>().range(KeyRange::all(), Order::Asc, 10))
        .unwrap();
    assert_eq!(things.len(), 1);
    assert!(rk.check(false).unwrap().ok);

    rk.store()
        .write(|tx| {
            tx.table::<ThingAlike>().insert(&ThingAlike {
                id: 2,
                name: "y".into(),
                colour: None,
            })
        })
        .unwrap();
    let by_name = rk
        .store()
        .read(|tx| tx.table::<Thing>().get_by(&Thing::NAME, &key!("y")))
        .unwrap();
    assert_eq!(by_name.map(|t| t.id), Some(2));
    drop(rk);

    // The next release's `Thing` has one index more: one type per handle, it is taken.
    #[derive(Debug, Serialize, Deserialize)]
    struct ThingV2 {
        id: u64,
        name: String,
    }
    impl ThingV2 {
        const NAME: Index<ThingV2> = Index::unique("name", |t| Some(key!(t.name)));
        const FIRST: Index<ThingV2> = Index::many("first", |t| {
            t.name.chars().next().map(|c| key!(c.to_string()))
        });
    }
    impl Record for ThingV2 {
        const TABLE: &'static str = "things";
        type Key = u64;
        const INDEXES: &'static [&'static Index<Self>] = &[&Self::NAME, &Self::FIRST];
        const ID_SEQUENCE: bool = true;
        fn key(&self) -> u64 {
            self.id
        }
    }
    let rk = t.open();
    rk.register_table::<ThingV2>().unwrap();
    let found = rk
        .store()
        .read(|tx| {
            tx.table::<ThingV2>().range_by(
                &ThingV2::FIRST,
                KeyRange::prefix(key!("x".to_string())),
                Order::Asc,
                10,
            )
        })
        .unwrap();
    assert_eq!(found.iter().map(|t| t.id).collect::<Vec<_>>(), [1]);
}

fn copy_fixture(name: &str, to: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    copy_dir(&src, to);
}

/// Copies a fixture with the modes the release that wrote it gave (folders 0700, files
/// 0600; git keeps 0755 and 0644, which `check` would name as open to other users).
fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "make_fixture.rs.txt" {
            std::fs::copy(e.path(), &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

fn open_with_clock(dir: &Path, at: i64, auto_migrate: bool) -> Redkeep {
    let clock = std::sync::Arc::new(redkeep::ManualClock::new(Timestamp(at)));
    let options = Options {
        auto_migrate,
        open_outdated: true,
        ..Options::default()
    }
    .password(PasswordParams::INSECURE_FAST)
    .clock(clock);
    Redkeep::open(dir, options).unwrap()
}

/// The v2 fixture's secrets (tests/data/README.md).
const FIXTURE_TIME: i64 = 1_800_000_000;
const ANN_SESSION: &str = "rks_2czoazvu6sofqa7czekmuwxyk7ozwtgvk3cf5ua";
const ANN_KEY: &str = "rkk_ix7ufbua5auldwrd6kohbvmv3ler7uk5o4qco3y";
const INVITE: &str = "rki_mnsmtk5o6v7wx23ejsxb4t2rxzeuqm4vrc2ajhy";

#[test]
fn a_store_of_the_previous_release_upgrades_with_everything_working() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v2-full", tmp.path());
    let rk = open_with_clock(tmp.path(), FIXTURE_TIME + 60, true);
    assert_eq!(
        rk.store().schema_version().unwrap(),
        Some(redkeep::SCHEMA_VERSION)
    );
    let report = rk.check(false).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    // Accounts, passwords, sessions, keys and invites written by the old release still work.
    let ann = rk.users().find("ann").unwrap();
    assert_eq!(ann.email, "Ann@Example.com");
    rk.users()
        .authenticate("ann@example.com", "ann password")
        .unwrap();
    let (user, _) = rk.sessions().validate(ANN_SESSION).unwrap();
    assert_eq!(user.id, ann.id);
    assert_eq!(
        rk.api_keys().verify(ANN_KEY).unwrap().prefix,
        "rkk_ix7ufbua"
    );
    assert!(
        rk.users()
            .authenticate("carol@example.com", "carol password")
            .is_err()
    );
    assert_eq!(rk.users().lockout(3).unwrap().failed_logins, 1);
    assert!(rk.roles().has_permission(ann.id, "docs:write").unwrap());
    assert!(rk.agents().get("agent-run-1").unwrap().is_some());
    assert!(rk.users().avatar(3).unwrap().is_some());
    // Ann's folder was bound to her and is served, unknown fields and pieces intact.
    let doc = rk.workspaces().read(ann.id).unwrap();
    assert_eq!(doc.other["theme"], "dark");
    assert_eq!(
        rk.workspaces().load_piece(ann.id, 1).unwrap()["title"],
        "Sunrise"
    );
    assert_eq!(rk.workspaces().save_piece(ann.id, b"{}").unwrap(), 3);
    // The invite registers a new user, who gets a new id and a folder of their own.
    let new = rk
        .users()
        .register(redkeep::Registration {
            email: "dan@example.com".into(),
            password: "dan password".into(),
            invite: Some(INVITE.into()),
            ..redkeep::Registration::default()
        })
        .unwrap();
    assert_eq!(new.id, 5);
    assert!(rk.check(false).unwrap().ok);
}

/// Upgrading and then reverting gives back the old release's records byte for byte.
fn up_then_down_restores(fixture: &str) {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture(fixture, tmp.path());
    let db = tmp.path().join(redkeep::STORE_FILE);
    let original = raw_tables(&db, "r:");
    let original_version = {
        let rk = open_with_clock(tmp.path(), FIXTURE_TIME + 60, false);
        let found = rk.store().schema_version().unwrap().unwrap();
        let run = rk.migrate().unwrap();
        assert_eq!(run.version, redkeep::SCHEMA_VERSION);
        assert!(rk.check(false).unwrap().ok, "{fixture} after migrate up");
        let status = rk.migration_status().unwrap();
        assert!(status.steps.iter().all(|s| s.reversible));
        let down = rk.migrate_down(Some(found)).unwrap();
        assert_eq!(down.version, found);
        assert!(down.backup.unwrap().exists());
        found
    };
    assert_eq!(
        raw_tables(&db, "r:"),
        original,
        "{fixture}: records after up and down"
    );
    // The reverted store is what its own release expects, and upgrades again.
    let rk = open_with_clock(tmp.path(), FIXTURE_TIME + 120, false);
    assert_eq!(rk.store().schema_version().unwrap(), Some(original_version));
    rk.migrate().unwrap();
    assert!(
        rk.check(false).unwrap().ok,
        "{fixture} after the second upgrade"
    );
}

#[test]
fn migrating_up_and_down_gives_back_the_first_releases_store() {
    up_then_down_restores("v1-with-users");
    up_then_down_restores("v1-empty");
}

#[test]
fn migrating_up_and_down_gives_back_the_previous_releases_store() {
    up_then_down_restores("v2-full");
}

#[test]
fn after_a_round_trip_down_and_up_users_keep_their_folders() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v2-full", tmp.path());
    let rk = open_with_clock(tmp.path(), FIXTURE_TIME + 60, true);
    let uid = rk.users().get(2).unwrap().unwrap().uid;
    rk.migrate_down(None).unwrap();
    rk.migrate().unwrap();
    assert_eq!(rk.users().get(2).unwrap().unwrap().uid, uid);
    assert_eq!(rk.workspaces().read(2).unwrap().other["theme"], "dark");
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn a_handle_that_migrated_down_writes_nothing_of_its_own_until_migrated_up() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v2-full", tmp.path());
    let rk = open_with_clock(tmp.path(), FIXTURE_TIME + 60, true);
    let run = rk.migrate_down(None).unwrap();
    let new_user = || NewUser {
        email: "late@example.com".into(),
        ..NewUser::default()
    };
    // Its records are of this build's schema, which the store no longer is.
    match rk.users().create(new_user()) {
        Err(Error::MigrationNeeded { found, needed }) => {
            assert_eq!((found, needed), (run.version, redkeep::SCHEMA_VERSION));
        }
        other => panic!("expected MigrationNeeded, got {other:?}"),
    }
    // Reads of the accounts too: the tables hold the older layout (no credentials table, no
    // uids), so they would answer wrong ("wrong password", "user not found").
    let behind = |what: &str, r: Result<(), Error>| match r {
        Err(Error::MigrationNeeded { .. }) => {}
        other => panic!("{what}: expected MigrationNeeded, got {other:?}"),
    };
    behind("get", rk.users().get(2).map(drop));
    behind(
        "by email",
        rk.users().by_email("late@example.com").map(drop),
    );
    behind(
        "login",
        rk.sessions()
            .login("bob@example.com", "x", LoginMeta::default())
            .map(drop),
    );
    behind("workspace", rk.workspaces().read(2).map(drop));
    // Migrating up lets reads and writes through again.
    rk.migrate().unwrap();
    assert!(rk.users().get(2).unwrap().is_some());
    assert!(rk.users().by_email("late@example.com").unwrap().is_none());
    rk.users().create(new_user()).unwrap();
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn a_store_shared_with_other_processes_is_not_migrated_down() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v2-full", tmp.path());
    open_with_clock(tmp.path(), FIXTURE_TIME + 60, true);
    let shared = Redkeep::open(
        tmp.path(),
        Options::default()
            .mode(redkeep::Mode::Shared)
            .password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    assert!(matches!(
        shared.migrate_down(None),
        Err(Error::InUse { .. })
    ));
    assert_eq!(
        shared.store().schema_version().unwrap(),
        Some(redkeep::SCHEMA_VERSION)
    );
}

#[test]
fn a_restored_copy_from_before_identities_finds_its_folders_again() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v2-full", tmp.path());
    let rk = open_with_clock(tmp.path(), FIXTURE_TIME + 60, true);
    let copy = rk.migrate().unwrap().backup;
    assert!(copy.is_none(), "already migrated on open");
    drop(rk);
    // Restore the automatic pre-v2 copy (an older schema, not a broken file), then upgrade.
    let pre = tmp.path().join("redkeep.redb.pre-v2.bak");
    assert!(pre.exists());
    redkeep::ops::restore(tmp.path(), &pre, true, Timestamp(FIXTURE_TIME + 90)).unwrap();
    let rk = open_with_clock(tmp.path(), FIXTURE_TIME + 120, true);
    assert_eq!(rk.workspaces().read(2).unwrap().other["theme"], "dark");
    assert!(rk.check(false).unwrap().ok);
}

/// A round trip down to the first schema and up again keeps when each password was set
/// (format 1 has no place for it), where it used to become the time the user last changed.
#[test]
fn a_round_trip_down_and_up_keeps_when_each_password_was_set() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(redkeep::ManualClock::new(Timestamp(FIXTURE_TIME)));
    let options = Options {
        auto_migrate: false,
        ..Options::default()
    }
    .password(PasswordParams::INSECURE_FAST)
    .clock(clock.clone());
    let rk = Redkeep::open(tmp.path(), options).unwrap();
    let id = rk
        .users()
        .create(NewUser {
            email: "ann@example.com".into(),
            password: Some("correct horse battery".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id;
    clock.set(Timestamp(FIXTURE_TIME + 500));
    rk.users().rename(id, Some("Ann".into()), None).unwrap();
    rk.migrate_down(Some(1)).unwrap();
    rk.migrate().unwrap();
    assert_eq!(
        rk.users().password_info(id).unwrap().changed_at,
        Timestamp(FIXTURE_TIME)
    );
    rk.users()
        .authenticate("ann@example.com", "correct horse battery")
        .unwrap();
}

/// A store this build made (never migrated) goes down to the first schema and up again:
/// the steps below the version it was made at created nothing in it to take out. Each run
/// keeps its own copy, numbered when an earlier one has the name.
#[test]
fn a_store_made_at_this_version_goes_down_to_the_first_and_up_again() {
    let t = TestDir::new();
    let rk = t.open();
    init_root(&rk);
    // Records per table, from an export (either engine); audit events aside, as the login
    // below adds one.
    let counts = |rk: &Redkeep| {
        let mut n: BTreeMap<String, usize> = BTreeMap::new();
        for line in String::from_utf8(export(rk)).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(table) = v["table"].as_str().filter(|t| *t != "audit") {
                *n.entry(table.to_string()).or_default() += 1;
            }
        }
        n
    };
    let before = counts(&rk);
    let down = rk.migrate_down(Some(1)).unwrap();
    assert_eq!(down.version, 1);
    assert_eq!(down.applied.len(), redkeep::SCHEMA_VERSION as usize - 1);
    let up = rk.migrate().unwrap();
    assert_eq!(up.version, redkeep::SCHEMA_VERSION);
    assert!(rk.check(false).unwrap().ok);
    rk.users()
        .authenticate("root@example.com", "root password")
        .unwrap();
    assert_eq!(counts(&rk), before);
    // The second run's copy is numbered after the first's.
    let again = rk.migrate_down(Some(1)).unwrap();
    let first = down.backup.unwrap();
    assert!(
        first
            .to_string_lossy()
            .ends_with(&format!(".pre-v{}.bak", redkeep::SCHEMA_VERSION)),
        "{first:?}"
    );
    // Numbered before `.bak`, so that a `*.bak` rule finds it too.
    let second = first.to_string_lossy().replace(".bak", ".2.bak");
    assert_eq!(again.backup, Some(PathBuf::from(second)));
}

/// The version a store says it was made at is its data's: data brought in from a store an
/// earlier release made (and migrated without a record of what step v2 created) keeps the
/// refusal below version 2, after an import as in place. A reset store holds nothing an
/// earlier step made, so it goes down to version 1.
#[test]
fn the_version_a_store_was_made_at_goes_with_its_data() {
    let refused = |rk: &Redkeep| {
        let err = rk.migrate_down(Some(1)).unwrap_err();
        assert!(matches!(err, Error::Denied { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("no record of what step v2 created"),
            "{err}"
        );
        // A refused run changes nothing: step v3, above the refusing one, is not reverted
        // either.
        assert_eq!(
            rk.store().schema_version().unwrap(),
            Some(redkeep::SCHEMA_VERSION)
        );
    };
    let old = tempfile::tempdir().unwrap();
    copy_fixture("v2-full", old.path());
    let rk = open_with_clock(old.path(), FIXTURE_TIME + 60, true);
    let text = export(&rk);
    refused(&rk);
    drop(rk);
    // Imported into a store this build made, it is still the old release's data.
    let new = tempfile::tempdir().unwrap();
    let rk = open_with_clock(new.path(), FIXTURE_TIME + 60, true);
    redkeep::ops::import(&rk, &mut text.as_slice(), &|_| {}).unwrap();
    refused(&rk);
    drop(rk);
    // Emptied by a reset, it goes all the way down.
    redkeep::ops::reset(new.path(), Timestamp(FIXTURE_TIME + 90)).unwrap();
    let rk = open_with_clock(new.path(), FIXTURE_TIME + 120, true);
    assert_eq!(rk.migrate_down(Some(1)).unwrap().version, 1);
}

/// A reverse step that refuses leaves the store and the folder as they were: the copy taken
/// before it is removed again.
#[test]
fn a_refused_step_down_leaves_no_copy_behind() {
    use redkeep::store::Migration;
    fn up(_: &redkeep::store::WriteTx<'_>, _: Timestamp) -> redkeep::Result<()> {
        Ok(())
    }
    fn refuse(_: &redkeep::store::WriteTx<'_>, _: Timestamp) -> redkeep::Result<()> {
        Err(Error::denied("this step keeps its data"))
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb"), &StoreOptions::default()).unwrap();
    let steps = [Migration {
        version: 2,
        name: "kept",
        up,
        down: Some(refuse),
    }];
    store.migrate(&steps, Timestamp(0)).unwrap();
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    for _ in 0..2 {
        let err = store.migrate_down(&steps, None, Timestamp(0)).unwrap_err();
        assert!(err.to_string().contains("keeps its data"), "{err}");
        assert_eq!(listing(), before);
        assert_eq!(store.schema_version().unwrap(), Some(2));
    }
}

#[test]
fn migrate_down_says_so_when_a_step_cannot_be_reversed() {
    use redkeep::store::Migration;
    fn up(_: &redkeep::store::WriteTx<'_>, _: Timestamp) -> redkeep::Result<()> {
        Ok(())
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb"), &StoreOptions::default()).unwrap();
    let steps = [Migration {
        version: 2,
        name: "one way",
        up,
        down: None,
    }];
    store.migrate(&steps, Timestamp(0)).unwrap();
    let err = store.migrate_down(&steps, None, Timestamp(0)).unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    assert!(err.to_string().contains("cannot be reversed"), "{err}");
    assert_eq!(store.schema_version().unwrap(), Some(2));
    // A version above the store's, one below the first, and the store's own: each says
    // what it is, with the versions right.
    let err = store
        .migrate_down(&steps, Some(5), Timestamp(0))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert!(err.to_string().contains("version 2, below 5"), "{err}");
    // Below the first (0 for "all the way"): to the first, which needs the one-way step
    // reversed.
    let err = store
        .migrate_down(&steps, Some(0), Timestamp(0))
        .unwrap_err();
    assert!(err.to_string().contains("cannot be reversed"), "{err}");
    let err = store
        .migrate_down(&steps, Some(2), Timestamp(0))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("at schema version 2, as asked; there is nothing to revert"),
        "{err}"
    );
}

/// Every file under a folder, relative path → bytes.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if e.file_name() != ".lock" {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn all_records(rk: &Redkeep) -> BTreeMap<String, Vec<(String, serde_json::Value)>> {
    let mut out = BTreeMap::new();
    rk.store()
        .read(|tx| {
            for t in rk.tables() {
                let mut rows = Vec::new();
                t.export(tx, &mut |k, v| {
                    rows.push((k, v));
                    Ok(())
                })?;
                out.insert(t.name().to_string(), rows);
            }
            Ok(())
        })
        .unwrap();
    out
}

fn populated(t: &TestDir) -> Redkeep {
    let rk = t.open();
    for (i, email) in ["ann@example.com", "bob@example.com"].iter().enumerate() {
        let u = rk
            .users()
            .create(NewUser {
                email: email.to_string(),
                password: Some("a long password".into()),
                ..NewUser::default()
            })
            .unwrap()
            .user;
        rk.workspaces()
            .update(u.id, |d| {
                d.add_note(format!("note of {email}"))?;
                d.other.insert(
                    "big".into(),
                    serde_json::from_str("92233720368547775808").unwrap(),
                );
                Ok(())
            })
            .unwrap();
        for n in 0..=i {
            rk.workspaces()
                .save_piece(u.id, format!("{{\"n\":{n},\"f\":0.1}}").as_bytes())
                .unwrap();
        }
    }
    rk.sessions()
        .login("ann@example.com", "a long password", LoginMeta::default())
        .unwrap();
    rk.api_keys()
        .create(ApiKeySpec {
            owner: redkeep::auth::api_keys::KeyOwner::User(1),
            scopes: vec!["read".into()],
            expires_in: None,
            created_by: None,
        })
        .unwrap();
    rk
}

#[test]
fn a_backup_restored_into_a_new_data_dir_holds_every_record_and_file() {
    let t = TestDir::new();
    let rk = populated(&t);
    // The files were saved long ago: a restore keeps when (lists show it), for the pieces and
    // for the folder.
    let saved_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let dated = |path: PathBuf| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(saved_at)
            .unwrap();
    };
    for p in rk.workspaces().list_pieces(2).unwrap() {
        dated(rk.workspaces().piece_path(2, p.piece));
    }
    dated(
        rk.workspaces()
            .dir(2)
            .join(redkeep::workspace::WORKSPACE_FILE),
    );
    let pieces = rk.workspaces().list_pieces(2).unwrap();
    assert_eq!(pieces[0].modified, Some(Timestamp(1_000_000_000)));
    let info = rk.workspaces().info(2).unwrap();
    assert_eq!(info.modified, Some(Timestamp(1_000_000_000)));
    let archive = t.path().join("backup.tar");
    let report = redkeep::ops::backup(&rk, &archive).unwrap();
    assert!(report.check.ok);
    assert_eq!(report.folders, 2);
    let records = all_records(&rk);
    let folders = files(&rk.workspaces().root().join("users"));
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("new-data");
    let restored = restore_elsewhere(&t, &target, &archive);
    assert_eq!(all_records(&restored), records);
    assert_eq!(files(&restored.workspaces().root().join("users")), folders);
    assert!(restored.check(false).unwrap().ok);
    assert_eq!(restored.workspaces().read(2).unwrap().note_count(), 1);
    assert_eq!(restored.workspaces().list_pieces(2).unwrap(), pieces);
    assert_eq!(
        restored.workspaces().info(2).unwrap().modified,
        info.modified
    );
    use redkeep::Clock;
    let _ = t.clock.now();
}

#[test]
fn a_backup_taken_while_pieces_are_saved_holds_whole_pieces() {
    let t = TestDir::new();
    let rk = populated(&t);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let (rk, stop) = (rk.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut saved = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) || saved < 5 {
                    let body = format!("{{\"writer\":{i},\"pad\":\"{}\"}}", "x".repeat(4096));
                    rk.workspaces()
                        .save_piece(1 + i % 2, body.as_bytes())
                        .unwrap();
                    saved += 1;
                }
            })
        })
        .collect();
    let archive = t.path().join("during.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    let mut pieces = 0;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if path.contains("/gallery/") {
            pieces += 1;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .unwrap_or_else(|e| panic!("{path} is not whole: {e}"));
        }
    }
    assert!(pieces >= 3);
    // The backup restores to a store whose folders check clean. (Closed first: on
    // PostgreSQL the options name the same store, which a repair needs alone.)
    drop(rk);
    let target = tempfile::tempdir().unwrap();
    let restored = restore_elsewhere(&t, target.path(), &archive);
    let report = restored.check(true).unwrap();
    assert!(restored.check(false).unwrap().ok, "{report:?}");
}

/// A backup whose workspace files carry a time no clock can hold (a crafted or damaged
/// header) restores without a panic: the files arrive, undated.
#[test]
fn a_backup_with_an_impossible_file_time_restores_without_a_panic() {
    let t = TestDir::new();
    let rk = populated(&t);
    let archive = t.path().join("backup.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    let crafted = t.path().join("crafted.tar");
    let mut out = tar::Builder::new(std::fs::File::create(&crafted).unwrap());
    let mut input = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut header = entry.header().clone();
        if path.starts_with(redkeep::WORKSPACES_DIR) {
            header.set_mtime(u64::MAX);
            header.set_cksum();
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        out.append_data(&mut header, &path, &bytes[..]).unwrap();
    }
    out.into_inner().unwrap();
    let target = tempfile::tempdir().unwrap();
    let restored = restore_elsewhere(&t, target.path(), &crafted);
    assert_eq!(restored.workspaces().list_pieces(2).unwrap().len(), 2);
}

/// What [`crafted_archive`] does to an entry: its path and bytes in, the entries to write out.
type EntryEdit = dyn Fn(&str, Vec<u8>) -> Vec<(String, Vec<u8>)>;

/// Copies the archive `from` to `to`, entry by entry through `edit` (which may change an
/// entry's bytes, drop it (no entry), or add entries after it). With `recount`, the
/// manifest counts the entries before it as they are now, as a hand-made archive would.
fn crafted_archive(from: &std::path::Path, to: &std::path::Path, recount: bool, edit: &EntryEdit) {
    let mut out = tar::Builder::new(std::fs::File::create(to).unwrap());
    let mut input = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut written = 0u64;
    // The checksums of what is written, for the manifest (a crafted archive whose manifest
    // agrees with its entries, as one written so would).
    let mut sums = serde_json::Map::new();
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().to_string();
        let header = entry.header().clone();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if recount && path == "redkeep-backup.json" {
            let mut m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            m["entries"] = serde_json::json!(written);
            if m.get("sha256").is_some() {
                m["sha256"] = serde_json::Value::Object(sums.clone());
            }
            bytes = serde_json::to_vec(&m).unwrap();
        }
        let edited = edit(&path, bytes);
        written += edited.len() as u64;
        for (path, bytes) in &edited {
            use sha2::Digest;
            let sum: String = sha2::Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            sums.insert(path.clone(), serde_json::json!(sum));
        }
        for (path, bytes) in edited {
            let mut h = header.clone();
            h.set_size(bytes.len() as u64);
            h.set_cksum();
            out.append_data(&mut h, &path, &bytes[..]).unwrap();
        }
    }
    out.into_inner().unwrap();
}

/// A hand-made archive whose folders could be served to the wrong account (a folder of no
/// user, one carrying another account's owner marker) is refused before anything changes:
/// the store and the folders in place stay as they were. One whose folders only need what
/// `check --repair` mends (a damaged piece, a count off) restores, and `check` names it.
#[test]
fn an_archive_whose_folders_fail_their_check_is_refused_and_changes_nothing() {
    let t = TestDir::new();
    let rk = populated(&t);
    let archive = t.path().join("backup.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    let marker_of =
        |id: u64| std::fs::read(t.path().join(format!("workspaces/users/{id}/.owner"))).unwrap();
    let bob_marker = marker_of(2);
    type Edit = Box<EntryEdit>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "a folder of no user",
            Box::new(move |p, b| {
                let mut out = vec![(p.to_string(), b.clone())];
                if p == "workspaces/users/2/.owner" {
                    out.push(("workspaces/users/99/.owner".into(), b));
                }
                out
            }),
            "workspace of user 99: the folder has no user (orphan)",
        ),
        (
            "another account's owner marker",
            Box::new(move |p, b| {
                if p == "workspaces/users/1/.owner" {
                    vec![(p.to_string(), bob_marker.clone())]
                } else {
                    vec![(p.to_string(), b)]
                }
            }),
            "workspace of user 1: the folder belongs to another account",
        ),
    ];
    use redkeep::Clock;
    // Every entry under `dir` with its bytes (files) or `None` (folders).
    fn listing(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Option<Vec<u8>>)> {
        let mut all = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if e.file_type().unwrap().is_dir() {
                    todo.push(p.clone());
                    all.push((p, None));
                } else {
                    all.push((p.clone(), Some(std::fs::read(&p).unwrap())));
                }
            }
        }
        all.sort();
        all
    }
    for (what, edit, says) in cases {
        let crafted = t.path().join("crafted.tar");
        crafted_archive(&archive, &crafted, true, &*edit);
        // Over a data dir in use: refused, both kept.
        let target = TestDir::new();
        let there = target.open();
        there
            .users()
            .create(NewUser {
                email: "keep@example.com".into(),
                ..NewUser::default()
            })
            .unwrap();
        there.workspaces().save_piece(1, b"{\"mine\":1}").unwrap();
        drop(there);
        let before = listing(target.path());
        let err = redkeep::ops::restore_store(
            target.path(),
            target.store.as_deref(),
            &crafted,
            true,
            t.clock.now(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("could be served to the wrong account")
                && err.contains(says)
                && err.contains("nothing was changed")
                && !err.contains(".rk-tmp"),
            "{what}: {err}"
        );
        let after = listing(target.path());
        let differ: Vec<_> = before
            .iter()
            .filter(|e| !after.contains(e))
            .chain(after.iter().filter(|e| !before.contains(e)))
            .map(|(p, _)| p.clone())
            // The layout's own trash folder, made empty before anything else is looked at.
            .filter(|p| !p.ends_with("workspaces/trash"))
            .collect();
        assert!(
            differ.is_empty(),
            "{what}: the data dir changed: {differ:?}"
        );
        let there = target.open();
        assert_eq!(there.users().count().unwrap(), 1, "{what}");
        assert!(there.check(false).unwrap().ok, "{what}");
        // Into a new data dir: no store is left behind.
        let empty = tempfile::tempdir().unwrap();
        redkeep::ops::restore(empty.path(), &crafted, false, t.clock.now()).unwrap_err();
        assert!(!empty.path().join(redkeep::STORE_FILE).exists(), "{what}");
    }
    // The archive as `backup` wrote it restores, and checks clean.
    let target = tempfile::tempdir().unwrap();
    redkeep::ops::restore(target.path(), &archive, false, t.clock.now()).unwrap();
    // Into this data dir's own file, whatever engine the tests run on.
    let mut file_options = t.options();
    file_options.store_url = None;
    assert!(
        Redkeep::open(target.path(), file_options.clone())
            .unwrap()
            .check(false)
            .unwrap()
            .ok
    );
    // A damaged piece restores; `check` names it and a repair moves it aside.
    let damaged = t.path().join("damaged.tar");
    crafted_archive(&archive, &damaged, true, &|p, b| {
        if p == "workspaces/users/2/gallery/piece_000002.json" {
            vec![(p.to_string(), b"{\"n\": ".to_vec())]
        } else {
            vec![(p.to_string(), b)]
        }
    });
    let target = tempfile::tempdir().unwrap();
    redkeep::ops::restore(target.path(), &damaged, false, t.clock.now()).unwrap();
    let there = Redkeep::open(target.path(), file_options).unwrap();
    let report = there.check(false).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("piece_000002")),
        "{:?}",
        report.problems
    );
    assert!(there.check(true).unwrap().ok);
}

/// An archive cut short at an entry's boundary (an interrupted copy, a full disk) lacks the
/// manifest a backup writes last, and one that lost an entry counts wrong: both are refused
/// and change nothing. An archive of an earlier build (manifest first, no count) restores.
#[test]
fn an_archive_cut_short_or_missing_an_entry_is_refused() {
    let t = TestDir::new();
    let rk = populated(&t);
    let archive = t.path().join("backup.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    // Where each entry's header starts.
    let mut starts = Vec::new();
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for entry in tar.entries().unwrap() {
        starts.push(entry.unwrap().raw_header_position() as usize);
    }
    assert!(starts.len() >= 5, "{starts:?}");
    use redkeep::Clock;
    let target = TestDir::new();
    target.open();
    let cut = t.path().join("cut.tar");
    for &at in &starts[1..] {
        std::fs::write(&cut, &bytes[..at]).unwrap();
        let err = redkeep::ops::restore_store(
            target.path(),
            target.store.as_deref(),
            &cut,
            true,
            t.clock.now(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("was cut short"), "cut at {at}: {err}");
    }
    // An entry left out (a piece), the manifest kept.
    let dropped = t.path().join("dropped.tar");
    crafted_archive(&archive, &dropped, false, &|p, b| {
        if p == "workspaces/users/2/gallery/piece_000001.json" {
            vec![]
        } else {
            vec![(p.to_string(), b)]
        }
    });
    let err = redkeep::ops::restore_store(
        target.path(),
        target.store.as_deref(),
        &dropped,
        true,
        t.clock.now(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("entries were lost or added"), "{err}");
    let there = target.open();
    assert_eq!(there.users().count().unwrap(), 0, "nothing was restored");
    drop(there);
    // As an earlier build wrote it: the manifest first, without the count.
    let earlier = t.path().join("earlier.tar");
    {
        let mut out = tar::Builder::new(std::fs::File::create(&earlier).unwrap());
        let mut entries: Vec<(String, tar::Header, Vec<u8>)> = Vec::new();
        let mut input = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        for entry in input.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().to_string();
            let header = entry.header().clone();
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut b).unwrap();
            if path == "redkeep-backup.json" {
                let mut m: serde_json::Value = serde_json::from_slice(&b).unwrap();
                m.as_object_mut().unwrap().remove("entries").unwrap();
                b = serde_json::to_vec(&m).unwrap();
                entries.insert(0, (path, header, b));
            } else {
                entries.push((path, header, b));
            }
        }
        for (path, mut h, b) in entries {
            h.set_size(b.len() as u64);
            h.set_cksum();
            out.append_data(&mut h, &path, &b[..]).unwrap();
        }
        out.into_inner().unwrap();
    }
    redkeep::ops::restore_store(
        target.path(),
        target.store.as_deref(),
        &earlier,
        true,
        t.clock.now(),
    )
    .unwrap();
    let there = target.open();
    assert_eq!(there.users().count().unwrap(), 2);
    assert!(there.check(false).unwrap().ok);
}

/// A backup holds the folders of the users its store snapshot holds, and names the others
/// (a user created while it ran, an orphan) as not kept: restored, its folders check clean
/// and the next new user gets no folder of an account the snapshot never had.
#[test]
fn a_backup_keeps_only_the_folders_of_users_in_its_snapshot() {
    let t = TestDir::new();
    let rk = populated(&t);
    let users = t.path().join("workspaces/users");
    // A folder of no user, as a user created after the snapshot leaves one.
    copy_tree(&users.join("2"), &users.join("3"));
    // A user's place taken by a symlink (a folder moved to another disk, linked back).
    let elsewhere = t.path().join("elsewhere");
    copy_tree(&users.join("2"), &elsewhere);
    std::os::unix::fs::symlink(&elsewhere, users.join("4")).unwrap();
    // A folder no user id names (an operator's): no user's, so not kept either.
    std::fs::create_dir(users.join("notes")).unwrap();
    let archive = t.path().join("backup.tar");
    let report = redkeep::ops::backup(&rk, &archive).unwrap();
    assert_eq!(
        report.not_kept,
        [
            std::path::PathBuf::from("users/3"),
            std::path::PathBuf::from("users/4"),
            std::path::PathBuf::from("users/notes")
        ]
    );
    assert_eq!(report.folders, 2);
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for entry in tar.entries().unwrap() {
        let path = entry.unwrap().path().unwrap().to_string_lossy().to_string();
        assert!(
            !path.starts_with("workspaces/users/3") && !path.starts_with("workspaces/users/4"),
            "{path}"
        );
    }
    let target = TestDir::new();
    use redkeep::Clock;
    redkeep::ops::restore_store(
        target.path(),
        target.store.as_deref(),
        &archive,
        false,
        t.clock.now(),
    )
    .unwrap();
    let there = target.open();
    assert!(there.check(false).unwrap().ok);
    let next = there
        .users()
        .create(NewUser {
            email: "new@example.com".into(),
            ..NewUser::default()
        })
        .unwrap()
        .user;
    there
        .workspaces()
        .update(next.id, |d| d.add_note("mine"))
        .unwrap();
}

/// An application's own table, for the export round trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Project {
    id: u64,
    owner: u64,
    name: String,
    budget: f64,
}

impl Project {
    const BY_OWNER: Index<Project> = Index::many("by_owner", |p| Some(key!(p.owner)));
}

impl Record for Project {
    const TABLE: &'static str = "projects";
    type Key = u64;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_OWNER];
    const ID_SEQUENCE: bool = true;
    fn key(&self) -> u64 {
        self.id
    }
}

/// `init` with the administrator root@example.com.
fn init_root(rk: &Redkeep) {
    rk.init(redkeep::InitSpec {
        admin_email: Some("root@example.com".into()),
        admin_password: Some("root password".into()),
        ..redkeep::InitSpec::default()
    })
    .unwrap();
}

fn export(rk: &Redkeep) -> Vec<u8> {
    let mut out = Vec::new();
    redkeep::ops::export(rk, &mut out, &|_| {}).unwrap();
    out
}

#[test]
fn export_import_export_is_byte_identical_with_app_tables_workspaces_and_pieces() {
    let t = TestDir::new();
    let rk = populated(&t);
    rk.store()
        .write(|tx| {
            let p = tx.table::<Project>();
            for (owner, name) in [(1, "Roadmap"), (2, "Budget")] {
                let id = p.next_id()?;
                p.insert(&Project {
                    id,
                    owner,
                    name: name.into(),
                    budget: 0.1 + id as f64,
                })?;
            }
            Ok(())
        })
        .unwrap();
    // A piece as an application wrote it (spaced, on lines, ending in a newline) comes back
    // byte for byte, not as the compact JSON of its document.
    let pretty: &[u8] = b"{\n  \"title\": \"pretty\",\t\"n\": 1.50\n}\n";
    // A removed piece numbered below a live one: its number travels as `trashed_up_to`,
    // which the second export lost (the live piece's higher number already kept it).
    let removed = rk.workspaces().save_piece(2, b"{}").unwrap();
    let pretty_n = rk.workspaces().save_piece(2, pretty).unwrap();
    rk.workspaces().delete_piece(2, removed).unwrap();
    // The files' times travel too (`user list` and `gallery list` show them): dated long
    // ago, they must come back dated so, not at the import's time.
    let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let users = t.path().join("workspaces/users");
    for folder in std::fs::read_dir(&users).unwrap().flatten() {
        let gallery = std::fs::read_dir(folder.path().join("gallery"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path());
        for file in gallery.chain([folder.path().join("workspace.json")]) {
            if file.is_file() {
                std::fs::File::options()
                    .write(true)
                    .open(&file)
                    .and_then(|f| f.set_modified(long_ago))
                    .unwrap();
            }
        }
    }
    // Registered: exported as JSON records; unregistered: as raw bytes with index entries.
    for register in [false, true] {
        if register {
            rk.register_table::<Project>().unwrap();
        }
        let first = export(&rk);
        let text = String::from_utf8(first.clone()).unwrap();
        assert!(
            text.contains("\"modified\":1000000000"),
            "file times exported"
        );
        assert!(text.contains("\"workspace\":2"), "workspaces exported");
        assert!(
            text.contains(&format!("\"trashed_up_to\":{removed}")),
            "removed pieces' numbers exported"
        );
        assert!(text.contains("\"piece\":2"), "pieces exported");
        assert!(
            text.contains("92233720368547775808"),
            "numbers kept exactly"
        );
        assert_eq!(text.contains("\"Roadmap\""), register);
        let other = TestDir::new();
        let rk2 = other.open();
        if register {
            rk2.register_table::<Project>().unwrap();
        }
        let summary = redkeep::ops::import(&rk2, &mut first.as_slice(), &|_| {}).unwrap();
        assert_eq!(summary.records["projects"], 2);
        assert_eq!(summary.pieces, 4);
        assert!(rk2.check(false).unwrap().ok);
        assert_eq!(export(&rk2), first, "register: {register}");
        let piece_file = |root: &std::path::Path| {
            std::fs::read(root.join(format!(
                "workspaces/users/2/gallery/piece_{pretty_n:06}.json"
            )))
            .unwrap()
        };
        assert_eq!(piece_file(other.path()), pretty);
        assert_eq!(piece_file(other.path()), piece_file(t.path()));
        let mine = rk2
            .store()
            .read(|tx| {
                tx.table::<Project>().range_by(
                    &Project::BY_OWNER,
                    KeyRange::prefix(key!(2u64)),
                    Order::Asc,
                    10,
                )
            })
            .unwrap();
        assert_eq!(mine[0].name, "Budget");
        assert_eq!(
            rk2.workspaces().load_piece(2, 2).unwrap()["f"].to_string(),
            "0.1"
        );
        rk2.users()
            .authenticate("bob@example.com", "a long password")
            .unwrap();
    }
}

#[test]
fn a_failed_import_changes_nothing() {
    let t = TestDir::new();
    let rk = populated(&t);
    let text = String::from_utf8(export(&rk)).unwrap();
    let other = TestDir::new();
    let rk2 = other.open();
    init_root(&rk2);
    let before = export(&rk2);
    // A dangling reference is found by the check at the end, and nothing is kept (the end
    // line counts the lines left, so the import reaches that check).
    let mut broken: Vec<String> = text
        .lines()
        .filter(|l| {
            !l.contains("\"table\":\"org_members\"") && !l.contains("\"redkeep_export_end\"")
        })
        .map(String::from)
        .collect();
    broken.push(format!(
        "{{\"redkeep_export_end\":true,\"lines\":{}}}",
        broken.len()
    ));
    let err = redkeep::ops::import(&rk2, &mut broken.join("\n").as_bytes(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("fails its check"), "{err}");
    // A PostgreSQL sequence keeps what a rolled-back import set (ids may have gaps, never
    // repeat); everything else is as it was.
    let kept = |bytes: Vec<u8>| {
        let text = String::from_utf8(bytes).unwrap();
        if rk2.store().engine() != "postgres" {
            return text;
        }
        text.lines()
            .filter(|l| !l.starts_with("{\"sequence\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(kept(export(&rk2)), kept(before));
    assert!(!rk2.workspaces().exists(1));
}

/// An application's table with a unique index, for imports larger than a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ticket {
    id: u64,
    code: String,
}

impl Ticket {
    const BY_CODE: Index<Ticket> = Index::unique("by_code", |t| Some(key!(t.code.as_str())));
}

impl Record for Ticket {
    const TABLE: &'static str = "tickets";
    type Key = u64;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_CODE];
    const ID_SEQUENCE: bool = true;
    fn key(&self) -> u64 {
        self.id
    }
}

/// Records of each table in [`large_export`]: more than an import writes at once (a few
/// hundred).
const RECORDS: u64 = 700;

/// The export of a store holding more records than an import writes at once: tickets
/// (registered, imported through their type) and projects (unregistered, imported as raw
/// records and index entries), with the users of [`populated`].
fn large_export(t: &TestDir) -> String {
    let rk = populated(t);
    rk.register_table::<Ticket>().unwrap();
    rk.store()
        .write(|tx| {
            let (tickets, projects) = (tx.table::<Ticket>(), tx.table::<Project>());
            for i in 0..RECORDS {
                let id = tickets.next_id()?;
                tickets.insert(&Ticket {
                    id,
                    code: format!("T-{i:05}"),
                })?;
                let id = projects.next_id()?;
                projects.insert(&Project {
                    id,
                    owner: i % 7,
                    name: format!("project {i}"),
                    budget: i as f64 / 4.0,
                })?;
            }
            Ok(())
        })
        .unwrap();
    String::from_utf8(export(&rk)).unwrap()
}

/// A handle on a fresh store that knows the tickets' type.
fn ticket_store(t: &TestDir) -> Redkeep {
    let rk = t.open();
    rk.register_table::<Ticket>().unwrap();
    rk
}

/// `lines` with the export's end line counting them again.
fn with_end(mut lines: Vec<String>) -> String {
    lines.retain(|l| !l.contains("\"redkeep_export_end\""));
    let n = lines.len();
    lines.push(format!("{{\"redkeep_export_end\":true,\"lines\":{n}}}"));
    lines.join("\n")
}

#[test]
fn an_import_of_more_records_than_a_batch_comes_back_exactly() {
    let text = large_export(&TestDir::new());
    let other = TestDir::new();
    let rk = ticket_store(&other);
    let summary = redkeep::ops::import(&rk, &mut text.as_bytes(), &|_| {}).unwrap();
    assert_eq!(summary.records["tickets"], RECORDS);
    assert_eq!(summary.records["projects"], RECORDS);
    assert!(rk.check(false).unwrap().ok);
    assert!(
        String::from_utf8(export(&rk)).unwrap() == text,
        "the export changed"
    );
    // The index entries came with the records: a unique lookup, and an index scan of the
    // raw table's entries through its type.
    let found = rk
        .store()
        .read(|tx| {
            tx.table::<Ticket>()
                .get_by(&Ticket::BY_CODE, &key!("T-00555"))
        })
        .unwrap()
        .unwrap();
    assert_eq!(found.code, "T-00555");
    let owned = rk
        .store()
        .read(|tx| {
            tx.table::<Project>().range_by(
                &Project::BY_OWNER,
                KeyRange::prefix(key!(3u64)),
                Order::Asc,
                1_000,
            )
        })
        .unwrap();
    assert_eq!(owned.len(), (0..RECORDS).filter(|i| i % 7 == 3).count());
    // New records get ids past the imported ones.
    let next = rk
        .store()
        .write(|tx| tx.table::<Ticket>().next_id())
        .unwrap();
    assert!(next > RECORDS, "{next}");
}

/// A record refused in the middle of a batch (its key or a unique value taken by an earlier
/// line, in the same batch or an earlier one) is named by its line, before a later bad
/// line, and nothing is imported; the same store then takes the export whole.
#[test]
fn a_clash_in_the_middle_of_a_batch_names_its_line_and_imports_nothing() {
    let text = large_export(&TestDir::new());
    let lines: Vec<String> = text.lines().map(String::from).collect();
    let tickets: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("\"table\":\"tickets\""))
        .collect();
    assert_eq!(tickets.len() as u64, RECORDS);
    let (middle, later) = (tickets[250], tickets[650]);
    let with_code = |i: usize, id: u64| {
        let mut v: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
        v["key"] = format!("{id:016x}").into();
        v["record"]["id"] = id.into();
        v.to_string()
    };
    let cases: Vec<(&str, Vec<String>, usize, String)> = vec![
        {
            // The same record twice, side by side: a clash inside one batch.
            let mut l = lines.clone();
            l.insert(middle + 1, lines[middle].clone());
            (
                "same batch",
                l,
                middle + 2,
                "already holds a record with key".into(),
            )
        },
        {
            // A record of a new key whose code an earlier batch wrote.
            let mut l = lines.clone();
            l.insert(later + 1, with_code(middle, 90_000));
            (
                "earlier batch",
                l,
                later + 2,
                "tickets.by_code already holds that value".into(),
            )
        },
        {
            // The clash waits in its batch when a later line is bad: the clash comes first.
            let mut l = lines.clone();
            l.insert(middle + 3, "not json".into());
            l.insert(middle + 1, with_code(middle, 90_001));
            (
                "before a bad line",
                l,
                middle + 2,
                "tickets.by_code already holds that value".into(),
            )
        },
    ];
    for (case, edited, line, said) in cases {
        let other = TestDir::new();
        let rk = ticket_store(&other);
        init_root(&rk);
        let before = export(&rk);
        let err = redkeep::ops::import(&rk, &mut with_end(edited).as_bytes(), &|_| {}).unwrap_err();
        let message = err.full_message();
        assert!(
            message.contains(&format!("line {line}: ")) && message.contains(&said),
            "{case}: {message}"
        );
        // (A PostgreSQL sequence keeps what the rolled-back import set: ids may skip.)
        let kept = |bytes: Vec<u8>| {
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .filter(|l| rk.store().engine() != "postgres" || !l.starts_with("{\"sequence\""))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            kept(export(&rk)) == kept(before),
            "{case}: the store changed"
        );
        drop(rk);
        let rk = ticket_store(&other);
        let summary = redkeep::ops::import(&rk, &mut text.as_bytes(), &|_| {}).unwrap();
        assert_eq!(summary.records["tickets"], RECORDS, "{case}");
        assert!(rk.check(false).unwrap().ok, "{case}");
    }
}

/// A file without line breaks (a wrong file, `/dev/zero`) is refused at the longest line
/// an export can hold, not read into memory whole; nothing is imported. A line that is not
/// UTF-8 is refused by number.
#[test]
fn an_import_refuses_a_line_longer_than_any_export_holds() {
    let t = TestDir::new();
    let mut options = t.options();
    options.workspace.max_doc_bytes = Some(1024);
    let rk = Redkeep::open(t.path(), options).unwrap();
    // 4 KiB and a MiB: past it, not far.
    let cap = 4 * 1024 + (1 << 20);
    let mut endless = std::io::BufReader::new(std::io::Read::take(std::io::repeat(b'x'), 64 << 20));
    let err = redkeep::ops::import(&rk, &mut endless, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 1") && err.contains(&format!("longer than {cap} bytes")),
        "{err}"
    );
    assert_eq!(rk.users().count().unwrap(), 0);
    let other = TestDir::new();
    let mut text = export(&populated(&other));
    text.extend_from_slice(b"\xff\xfe\n");
    let err = redkeep::ops::import(&rk, &mut text.as_slice(), &|_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("not UTF-8"), "{err}");
}

/// Ids stop at 2^63 − 1 (what a PostgreSQL sequence and an export's sequence line hold): a
/// store whose sequence reached it refuses the next id, and its export imports.
#[test]
fn ids_stop_at_the_largest_every_store_holds() {
    let t = TestDir::new();
    let rk = t.open();
    rk.store()
        .write(|tx| tx.raise_sequence("users", redkeep::store::MAX_ID - 1))
        .unwrap();
    let new = |email: &str| {
        rk.users().create(NewUser {
            email: email.into(),
            ..NewUser::default()
        })
    };
    assert_eq!(
        new("last@example.com").unwrap().user.id,
        redkeep::store::MAX_ID
    );
    match new("past@example.com") {
        Err(Error::Denied { reason }) => assert!(reason.contains("exhausted"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let other = TestDir::new();
    redkeep::ops::import(&other.open(), &mut export(&rk).as_slice(), &|_| {}).unwrap();
    assert!(
        other
            .open()
            .users()
            .by_email("last@example.com")
            .unwrap()
            .is_some()
    );
}

/// Two restores in the same second each keep their safety copy of the store they replace
/// (the second was refused: its copy's name was taken).
#[test]
fn restores_and_resets_in_the_same_second_keep_every_safety_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let rk = Redkeep::open(&dir, options()).unwrap();
    init_root(&rk);
    let archive = tmp.path().join("b.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    drop(rk);
    let at = Timestamp(1_900_000_000);
    let first = redkeep::ops::restore(&dir, &archive, true, at).unwrap();
    let second = redkeep::ops::restore(&dir, &archive, true, at).unwrap();
    let (first, second) = (first.safety_copy.unwrap(), second.safety_copy.unwrap());
    assert_ne!(first, second);
    assert!(first.exists() && second.exists());
    assert!(
        second.to_string_lossy().ends_with(".bak.2"),
        "{}",
        second.display()
    );
    // Resets too: the second one in the same second keeps its own copy of the store.
    let first = redkeep::ops::reset(&dir, at).unwrap().backup;
    let second = redkeep::ops::reset(&dir, at).unwrap().backup;
    assert_ne!(first, second);
    assert!(first.exists() && second.exists());
}

#[test]
fn ids_never_go_back_across_reset_and_restore() {
    let t = TestDir::new();
    let rk = populated(&t);
    let archive = t.path().join("early.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    for email in ["c@example.com", "d@example.com"] {
        rk.users()
            .create(NewUser {
                email: email.into(),
                password: Some("a long password".into()),
                ..NewUser::default()
            })
            .unwrap();
    }
    drop(rk);
    use redkeep::Clock;
    redkeep::ops::restore_store(t.path(), t.store.as_deref(), &archive, true, t.clock.now())
        .unwrap();
    let rk = t.open();
    let e = rk
        .users()
        .create(NewUser {
            email: "e@example.com".into(),
            password: Some("a long password".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user;
    assert_eq!(e.id, 5, "ids 3 and 4 were handed out before the restore");
    drop(rk);
    redkeep::ops::reset_store(t.path(), t.store.as_deref(), t.clock.now()).unwrap();
    let rk = t.open();
    let f = rk
        .users()
        .create(NewUser {
            email: "f@example.com".into(),
            password: Some("a long password".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user;
    assert_eq!(f.id, 6);
}

#[test]
fn a_folder_of_another_account_is_never_served_and_repair_moves_it_away() {
    let t = TestDir::new();
    let rk = populated(&t);
    let dir = rk.workspaces().dir(1);
    // A folder whose marker names someone else (left by an account that had this number).
    std::fs::write(dir.join(".owner"), format!("{}\n0\n", "ab".repeat(16))).unwrap();
    for err in [
        rk.workspaces().read(1).unwrap_err(),
        rk.workspaces().save_piece(1, b"{}").unwrap_err(),
        rk.workspaces().load_piece(1, 1).unwrap_err(),
    ] {
        assert!(matches!(err, Error::UnsafePath { .. }), "{err}");
        assert!(err.to_string().contains("another account"), "{err}");
    }
    let report = rk.check(false).unwrap();
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("belongs to another account"))
    );
    let report = rk.check(true).unwrap();
    assert!(
        report.repaired.iter().any(|p| p.contains("moved to")),
        "{report:?}"
    );
    assert!(rk.check(false).unwrap().ok);
    // The user starts afresh; the other account's files wait in the trash.
    assert_eq!(rk.workspaces().read(1).unwrap().note_count(), 0);
    assert_eq!(rk.workspaces().save_piece(1, b"{}").unwrap(), 1);
}

/// A JSON value nested `depth` levels deep (objects and arrays in turn).
fn nested(depth: usize) -> serde_json::Value {
    let mut v = serde_json::json!(1);
    for level in 0..depth {
        v = if level % 2 == 0 {
            serde_json::json!([v])
        } else {
            serde_json::json!({ "d": v })
        };
    }
    v
}

/// Documents as deep as serde_json reads back (127 levels) are kept, and an export holding
/// them, whose lines wrap them one level deeper, imports again; one level more is refused
/// when written, with the limit said, and nothing changes.
#[test]
fn the_deepest_documents_kept_survive_an_export_and_import() {
    let t = TestDir::new();
    let rk = t.open();
    init_root(&rk);
    let deepest = nested(redkeep::workspace::MAX_DOC_DEPTH);
    let bytes = serde_json::to_vec(&deepest).unwrap();
    rk.workspaces().save_piece(1, &bytes).unwrap();
    // The workspace document is an object: its field adds a level.
    let field = nested(redkeep::workspace::MAX_DOC_DEPTH - 1);
    rk.workspaces()
        .update(1, |doc| {
            doc.other.insert("deep".into(), field.clone());
            Ok(())
        })
        .unwrap();
    let too_deep = serde_json::to_vec(&nested(redkeep::workspace::MAX_DOC_DEPTH + 1)).unwrap();
    let err = rk.workspaces().save_piece(1, &too_deep).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert!(err.to_string().contains("the limit is 127"), "{err}");
    let err = rk
        .workspaces()
        .update(1, |doc| {
            doc.other.insert("deeper".into(), deepest.clone());
            Ok(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("the limit is 127"), "{err}");
    assert!(
        rk.workspaces()
            .read(1)
            .unwrap()
            .other
            .get("deeper")
            .is_none()
    );
    assert_eq!(rk.workspaces().list_pieces(1).unwrap().len(), 1);

    let text = export(&rk);
    let other = TestDir::new();
    let copy = other.open();
    redkeep::ops::import(&copy, &mut text.as_slice(), &|_| {}).unwrap();
    assert_eq!(
        copy.workspaces().load_piece(1, 1).unwrap(),
        deepest,
        "the piece came back whole"
    );
    assert_eq!(copy.workspaces().read(1).unwrap().other["deep"], field);
    assert!(copy.check(false).unwrap().ok);

    // A line whose document is one level deeper than a read takes is refused before
    // anything is imported: it imported, then every read of that workspace failed.
    let field_text = serde_json::to_string(&field).unwrap();
    let deeper_text = serde_json::to_string(&deepest).unwrap();
    let edited: String = String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with(r#"{"workspace":"#) {
                assert!(
                    l.contains(&field_text),
                    "the document's field is in its line"
                );
                l.replace(&field_text, &deeper_text)
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    let third = TestDir::new();
    let fresh = third.open();
    let err = redkeep::ops::import(&fresh, &mut edited.as_bytes(), &|_| {}).unwrap_err();
    assert!(
        err.to_string().contains("the limit is 127")
            && err.to_string().contains("nothing was imported"),
        "{err}"
    );
    assert_eq!(fresh.users().count().unwrap(), 0, "nothing was imported");
    // The same document given to `put_doc` is refused as an update's is.
    let mut doc = copy.workspaces().read(1).unwrap();
    doc.other.insert("deep".into(), deepest.clone());
    let err = copy.workspaces().put_doc(1, &doc).unwrap_err();
    assert!(err.to_string().contains("the limit is 127"), "{err}");
    assert_eq!(copy.workspaces().read(1).unwrap().other["deep"], field);
}

/// A reset killed after emptying the store, before its folders moved to the trash, is
/// named by `check` with both ways out; `check --repair` finishes it (the folders go to one
/// trash entry, not one by one as orphans), and that entry and the reset's copy undo it.
#[test]
fn an_interrupted_reset_is_seen_finished_and_undone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let copy = tmp.path().join("copy.redb");
    let at = Timestamp(1_900_000_000);
    {
        let rk = Redkeep::open(&dir, options()).unwrap();
        init_root(&rk);
        let ann = rk
            .users()
            .create(NewUser {
                email: "ann@example.com".into(),
                password: Some("ann password 1".into()),
                ..NewUser::default()
            })
            .unwrap()
            .user
            .id;
        rk.workspaces()
            .save_piece(ann, br#"{"drawn": "by ann"}"#)
            .unwrap();
        // What a reset does before it is killed: its copy, the store emptied and marked.
        rk.store().copy_to(&copy).unwrap();
        rk.store().wipe(redkeep::SCHEMA_VERSION).unwrap();
        rk.store()
            .write(|tx| tx.set_meta("reset_unfinished", copy.to_string_lossy().as_bytes()))
            .unwrap();
    }
    let rk = Redkeep::open(&dir, options()).unwrap();
    let report = rk.check(false).unwrap();
    let undo = format!(
        "to undo: `redkeep --data-dir {} restore --force",
        dir.display()
    );
    assert!(
        report.problems.iter().any(|p| p.contains("a reset stopped")
            && p.contains("check --repair` finishes it")
            && p.contains(&undo)
            && p.contains(&*copy.to_string_lossy())),
        "{:?}",
        report.problems
    );
    // Another reset now would copy the emptied store: it is refused, and says why.
    drop(rk);
    let err = redkeep::ops::reset(&dir, at).unwrap_err();
    assert!(err.to_string().contains("stopped part way"), "{err}");
    let rk = Redkeep::open(&dir, options()).unwrap();
    // A user made since keeps their folder through the repair.
    let bea = rk
        .users()
        .create(NewUser {
            email: "bea@example.com".into(),
            password: Some("bea password 1".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id;
    rk.workspaces().save_piece(bea, b"{}").unwrap();
    let repaired = rk.check(true).unwrap();
    assert_eq!(rk.workspaces().list_pieces(bea).unwrap().len(), 1);
    assert!(repaired.ok, "{:?}", repaired.problems);
    assert!(
        repaired
            .repaired
            .iter()
            .any(|r| r.contains("finished a reset") && r.contains("--folders")),
        "{:?}",
        repaired.repaired
    );
    let trash = rk.workspaces().trash().unwrap();
    assert_eq!(trash.len(), 1, "{trash:?}");
    assert!(trash[0].name.starts_with("reset-"), "{trash:?}");
    drop(rk);
    redkeep::ops::restore_store_with_folders(&dir, None, &copy, Some(&trash[0].path), true, at)
        .unwrap();
    let rk = Redkeep::open(&dir, options()).unwrap();
    let ann = rk.users().find("ann@example.com").unwrap();
    assert_eq!(rk.workspaces().list_pieces(ann.id).unwrap().len(), 1);
    assert!(rk.check(false).unwrap().ok);
}

/// A reset killed after its folders reached the trash: `check` points the undo at that
/// trash entry (the store's copy alone would bring back accounts without their files).
#[test]
fn a_reset_stopped_after_moving_the_folders_undoes_with_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let copy = tmp.path().join("copy.redb");
    {
        let rk = Redkeep::open(&dir, options()).unwrap();
        init_root(&rk);
        let root = rk.users().find("root@example.com").unwrap().id;
        rk.workspaces().save_piece(root, b"{}").unwrap();
        rk.store().copy_to(&copy).unwrap();
        rk.store().wipe(redkeep::SCHEMA_VERSION).unwrap();
        let mark = format!("{}\n1900000000", copy.display());
        rk.store()
            .write(|tx| tx.set_meta("reset_unfinished", mark.as_bytes()))
            .unwrap();
    }
    let ws = dir.join("workspaces");
    std::fs::create_dir_all(ws.join("trash")).unwrap();
    std::fs::rename(ws.join("users"), ws.join("trash/reset-1900000000")).unwrap();
    let rk = Redkeep::open(&dir, options()).unwrap();
    let report = rk.check(false).unwrap();
    let entry = ws.join("trash/reset-1900000000");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("after moving the workspace folders")
                && p.contains(&format!("--folders {}", entry.display()))),
        "{:?}",
        report.problems
    );
    assert!(rk.check(true).unwrap().ok);
    drop(rk);
    redkeep::ops::restore_store_with_folders(
        &dir,
        None,
        &copy,
        Some(&entry),
        true,
        Timestamp(1_900_000_100),
    )
    .unwrap();
    let rk = Redkeep::open(&dir, options()).unwrap();
    let root = rk.users().find("root@example.com").unwrap().id;
    assert_eq!(rk.workspaces().list_pieces(root).unwrap().len(), 1);
}

/// An entry reached through a trash that is a symlink is no entry of this data dir's trash:
/// `restore --folders` would otherwise put another folder's contents in place of the users'.
#[test]
fn a_trash_entry_through_a_symlinked_trash_is_refused() {
    let t = TestDir::new();
    let rk = t.open();
    let away = tempfile::tempdir().unwrap();
    std::fs::create_dir(away.path().join("reset-1")).unwrap();
    let trash = t.path().join("workspaces/trash");
    let _ = std::fs::remove_dir_all(&trash);
    std::os::unix::fs::symlink(away.path(), &trash).unwrap();
    let err = rk
        .workspaces()
        .trash_entry_of_folders(&trash.join("reset-1"))
        .unwrap_err();
    assert!(err.to_string().contains("is not an entry of"), "{err}");
    // Through the real trash, the same entry is taken.
    std::fs::remove_file(&trash).unwrap();
    std::fs::create_dir(&trash).unwrap();
    std::fs::create_dir(trash.join("reset-1")).unwrap();
    rk.workspaces()
        .trash_entry_of_folders(&trash.join("reset-1"))
        .unwrap();
}

/// A file in a user's folder larger than a backup used to hold in memory (1 GiB: one such
/// file failed every backup) is kept, streamed into the archive and out again: a sparse
/// file here, so it costs the disk what the archive takes.
#[test]
fn a_backup_keeps_a_user_file_over_a_gibibyte() {
    use std::io::{Seek, SeekFrom, Write};
    let t = TestDir::new();
    let rk = populated(&t);
    rk.workspaces().update(2, |d| d.add_note("kept")).unwrap();
    let big = rk.workspaces().dir(2).join("upload.bin");
    let len = (1u64 << 30) + 4096;
    {
        let mut f = std::fs::File::create(&big).unwrap();
        f.seek(SeekFrom::Start(len - 4)).unwrap();
        f.write_all(b"tail").unwrap();
    }
    let archive = t.path().join("backup.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("new-data");
    let restored = restore_elsewhere(&t, &target, &archive);
    std::fs::remove_file(&archive).unwrap();
    let copy = restored.workspaces().dir(2).join("upload.bin");
    let mut f = std::fs::File::open(&copy).unwrap();
    assert_eq!(f.metadata().unwrap().len(), len);
    f.seek(SeekFrom::Start(len - 4)).unwrap();
    let mut tail = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut tail).unwrap();
    assert_eq!(tail, b"tail");
    assert_eq!(restored.workspaces().read(2).unwrap().note_count(), 2);
}

/// Restores `archive` into the data dir `target` and opens it, on the engine the tests run
/// on: into a new store (a fresh schema on PostgreSQL) tied to that data dir. (Restored into
/// a redb file there, the data dir is that file's: another store is refused on it.)
fn restore_elsewhere(t: &TestDir, target: &Path, archive: &Path) -> Redkeep {
    use redkeep::Clock;
    let fresh = t.store.as_ref().map(|_| common::pg::server().fresh_url());
    redkeep::ops::restore_store(target, fresh.as_deref(), archive, false, t.clock.now()).unwrap();
    let mut options = t.options();
    options.store_url = fresh;
    Redkeep::open(target, options).unwrap()
}

/// Creates an account with `email` (and a password no test logs in with); returns its id.
fn account(rk: &Redkeep, email: &str) -> u64 {
    rk.users()
        .create(NewUser {
            email: email.into(),
            password: Some("a password 1".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id
}

/// A move to a new data dir takes the workspace trash along: a deleted user's files, and the
/// folders a reset put aside, so the undo a reset printed works in the new data dir. What
/// redkeep never follows (a symlink in a trash entry) is named, not copied.
#[test]
fn a_move_takes_the_trash_along_so_undos_work_in_the_new_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let at = Timestamp(1_900_000_000);
    let (ann, bea) = {
        let rk = Redkeep::open(&dir, options()).unwrap();
        init_root(&rk);
        let mut ids = Vec::new();
        for (email, drawn) in [("ann@example.com", "by ann"), ("bea@example.com", "by bea")] {
            let id = account(&rk, email);
            rk.workspaces()
                .save_piece(id, format!(r#"{{"drawn": "{drawn}"}}"#).as_bytes())
                .unwrap();
            ids.push(id);
        }
        let trashed = rk.users().delete(ids[1]).unwrap().trash.unwrap();
        // A symlink in the deleted user's folder, pointing out of the data dir.
        let secret = tmp.path().join("secret.txt");
        std::fs::write(&secret, "OUTSIDE").unwrap();
        std::os::unix::fs::symlink(&secret, trashed.join("link.json")).unwrap();
        (ids[0], ids[1])
    };
    let reset = redkeep::ops::reset(&dir, at).unwrap();
    let reset_entry = reset.folders.unwrap();

    let to = tmp.path().join("moved");
    let report = redkeep::ops::move_store(&dir, None, to.to_str().unwrap(), options()).unwrap();
    assert_eq!(report.trash_entries, 2, "{report:?}");
    assert!(report.check.ok, "{:?}", report.check.problems);
    let link = report
        .not_kept
        .iter()
        .find(|p| p.ends_with("link.json"))
        .unwrap_or_else(|| panic!("the symlink is named: {:?}", report.not_kept));
    assert!(link.starts_with("trash"), "{link:?}");

    let rk = Redkeep::open(&to, options()).unwrap();
    let trash = rk.workspaces().trash().unwrap();
    assert_eq!(trash.len(), 2, "{trash:?}");
    let bea_entry = trash.iter().find(|e| e.user == Some(bea)).unwrap();
    assert!(!bea_entry.path.join("link.json").exists());
    let mut files = Vec::new();
    let mut stack = vec![bea_entry.path.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            if e.file_type().unwrap().is_dir() {
                assert_eq!(mode, 0o700, "{:?}", e.path());
                stack.push(e.path());
            } else {
                assert_eq!(mode, 0o600, "{:?}", e.path());
                files.push(std::fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    assert!(files.iter().any(|f| f.contains("by bea")), "{files:?}");
    assert!(files.iter().all(|f| !f.contains("OUTSIDE")), "{files:?}");
    drop(rk);

    // The reset's undo, in the new data dir: its store copy stayed beside the old store, its
    // folders came along in the trash.
    let name = reset_entry.file_name().unwrap();
    redkeep::ops::restore_store_with_folders(
        &to,
        None,
        &reset.backup,
        Some(Path::new(name)),
        true,
        Timestamp(1_900_000_100),
    )
    .unwrap();
    let rk = Redkeep::open(&to, options()).unwrap();
    let found = rk.users().find("ann@example.com").unwrap();
    assert_eq!(found.id, ann);
    let pieces = rk.workspaces().list_pieces(ann).unwrap();
    assert_eq!(pieces.len(), 1);
    assert!(rk.check(false).unwrap().ok);
}

/// External ids (set by `adopt` from an old app's UUIDs) have no place in the first format:
/// `migrate down` keeps them aside and the next upgrade gives them back, to users and orgs
/// still the same.
#[test]
fn external_ids_survive_a_round_trip_down_and_up() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v2-full", tmp.path());
    let rk = open_with_clock(tmp.path(), FIXTURE_TIME + 60, true);
    let org = rk.orgs().of_user(2).unwrap()[0].0.id;
    rk.store()
        .write(|tx| {
            tx.table::<redkeep::User>().modify(&2, |u| {
                u.external_id = Some("9b2f-user".into());
                Ok(())
            })?;
            tx.table::<redkeep::auth::orgs::Org>().modify(&org, |o| {
                o.external_id = Some("9b2f-org".into());
                Ok(())
            })
        })
        .unwrap();
    rk.migrate_down(None).unwrap();
    rk.migrate().unwrap();
    assert_eq!(
        rk.users()
            .by_external_id("9b2f-user")
            .unwrap()
            .map(|u| u.id),
        Some(2)
    );
    assert_eq!(
        rk.orgs().by_external_id("9b2f-org").unwrap().map(|o| o.id),
        Some(org)
    );
    assert!(rk.check(false).unwrap().ok);
}

/// Step v2's reverse takes away the Default Workspace it made; not while others use it
/// (a member who joined since, an API key it owns): they would point at no org. Nothing
/// changes, and the refusal names what uses it.
#[test]
fn the_default_workspace_in_use_keeps_step_v2_from_being_reversed() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v1-with-users", tmp.path());
    let rk = open_with_clock(tmp.path(), FIXTURE_TIME + 60, true);
    let default = rk.orgs().by_slug("default").unwrap().unwrap().id;
    let late = account(&rk, "late@example.com");
    rk.orgs()
        .add_member(default, late, redkeep::auth::orgs::OrgRole::Member)
        .unwrap();
    let before = export(&rk);
    let err = rk.migrate_down(Some(1)).unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("1 member(s) who joined it since") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(
        rk.store().schema_version().unwrap(),
        Some(redkeep::SCHEMA_VERSION)
    );
    assert!(export(&rk) == before, "the refused step changed records");
    // Once the member has left, the step reverses.
    rk.orgs().remove_member(default, late).unwrap();
    assert_eq!(rk.migrate_down(Some(1)).unwrap().version, 1);
}

/// A store of another deployment, taken down to an older schema and restored here, then
/// upgraded: its user with the same id and creation second keeps its own uid (saved by
/// `migrate down`), and is not given the folder of this deployment's user, whose marker
/// names another uid.
#[test]
fn an_upgrade_never_gives_a_user_the_folder_of_another_deployments_account() {
    let tmp = tempfile::tempdir().unwrap();
    let (here, there) = (tmp.path().join("here"), tmp.path().join("there"));
    let at = FIXTURE_TIME + 60;
    let make = |dir: &Path, email: &str| {
        let rk = open_with_clock(dir, at, true);
        let id = account(&rk, email);
        (rk, id)
    };
    let (rk, alice) = make(&here, "alice@example.com");
    rk.workspaces()
        .save_piece(alice, br#"{"diary": "alice's own"}"#)
        .unwrap();
    drop(rk);
    let (rk, zoe) = make(&there, "zoe@example.com");
    assert_eq!(zoe, alice, "the same id in both deployments");
    rk.migrate_down(None).unwrap();
    drop(rk);
    redkeep::ops::restore(
        &here,
        &there.join(redkeep::STORE_FILE),
        true,
        Timestamp(at + 30),
    )
    .unwrap();
    let rk = open_with_clock(&here, at + 60, true);
    let zoe_now = rk.users().find("zoe@example.com").unwrap();
    match rk.workspaces().list_pieces(zoe_now.id) {
        Ok(pieces) => assert!(pieces.is_empty(), "zoe was given alice's pieces"),
        Err(e) => assert!(
            matches!(e, Error::UnsafePath { .. } | Error::Denied { .. }),
            "{e}"
        ),
    }
    let report = rk.check(false).unwrap();
    assert!(!report.ok, "the folder of another account is reported");
}

/// A store of an older schema opened as it is (`open_outdated`, for `migrate` and
/// inspection) refuses work on this build's records until it is upgraded: a write would put
/// today's format into the old tables, and the upgrade would then fail on it.
#[test]
fn an_outdated_store_opened_as_it_is_takes_no_records_until_upgraded() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v2-full", tmp.path());
    let rk = open_with_clock(tmp.path(), FIXTURE_TIME + 60, false);
    let found = rk.store().schema_version().unwrap().unwrap();
    assert!(found < redkeep::SCHEMA_VERSION);
    let new_user = || NewUser {
        email: "late@example.com".into(),
        ..NewUser::default()
    };
    match rk.users().create(new_user()) {
        Err(Error::MigrationNeeded { found: f, needed }) => {
            assert_eq!((f, needed), (found, redkeep::SCHEMA_VERSION));
        }
        other => panic!("expected MigrationNeeded, got {other:?}"),
    }
    assert!(matches!(
        rk.users().get(2),
        Err(Error::MigrationNeeded { .. })
    ));
    rk.migrate().unwrap();
    rk.users().create(new_user()).unwrap();
    assert!(rk.users().get(2).unwrap().is_some());
    assert!(rk.check(false).unwrap().ok);
}

/// A move copies the workspace folders after the store's records commit. One that stops
/// between the two (a crash, a kill: emulated here by what it leaves) is named by `check`
/// on the target, and the same move runs again over it, copying the folders afresh; a move
/// from another store is refused there.
#[test]
fn a_move_stopped_before_its_folders_is_named_and_runs_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let mut ids = Vec::new();
    {
        let rk = Redkeep::open(&dir, options()).unwrap();
        for email in ["ann@example.com", "bea@example.com"] {
            let id = account(&rk, email);
            rk.workspaces()
                .save_piece(id, format!(r#"{{"by": "{email}"}}"#).as_bytes())
                .unwrap();
            ids.push(id);
        }
        // A deleted user's folder in the trash: copied again over its first copy.
        let cid = account(&rk, "cid@example.com");
        rk.workspaces().save_piece(cid, b"{}").unwrap();
        rk.users().delete(cid).unwrap();
    }
    let to = tmp.path().join("moved");
    let to_text = to.to_str().unwrap();
    let report = redkeep::ops::move_store(&dir, None, to_text, options()).unwrap();
    // What a move killed after its commit leaves: its mark, and a folder not copied yet.
    {
        let rk = Redkeep::open(&to, options()).unwrap();
        rk.store()
            .write(|tx| tx.set_meta("move_unfinished", report.from.as_bytes()))
            .unwrap();
    }
    std::fs::remove_dir_all(to.join("workspaces/users").join(ids[1].to_string())).unwrap();
    assert!(
        matches!(Redkeep::open(&to, options()), Err(Error::Denied { .. })),
        "not opened for use"
    );
    {
        let rk = Redkeep::open(&to, options().open_unfinished(true)).unwrap();
        let check = rk.check(false).unwrap();
        assert!(!check.ok);
        assert!(
            check.problems.iter().any(|p| p.contains("a move from")
                && p.contains(&report.from)
                && p.contains("run the same move again")),
            "{:?}",
            check.problems
        );
    }
    // Another store's move is refused there.
    let other = tmp.path().join("other");
    drop(Redkeep::open(&other, options()).unwrap());
    let err = redkeep::ops::move_store(&other, None, to_text, options()).unwrap_err();
    assert!(
        matches!(err, Error::Denied { .. }) && err.to_string().contains("run that move again"),
        "{err}"
    );
    // The source changed since; the same move runs again and copies every folder afresh.
    {
        let rk = Redkeep::open(&dir, options()).unwrap();
        rk.workspaces()
            .save_piece(ids[0], br#"{"second": 2}"#)
            .unwrap();
    }
    // (Its source named another way, as from another folder: the same store still.)
    let spelled = tmp.path().join(".").join("data");
    let again = redkeep::ops::move_store(&spelled, None, to_text, options()).unwrap();
    assert!(again.check.ok, "{:?}", again.check.problems);
    assert_eq!(again.trash_entries, 1);
    let rk = Redkeep::open(&to, options()).unwrap();
    assert_eq!(rk.workspaces().list_pieces(ids[0]).unwrap().len(), 2);
    assert_eq!(rk.workspaces().list_pieces(ids[1]).unwrap().len(), 1);
    assert!(rk.check(false).unwrap().ok);
    use redkeep::store::Meta;
    assert!(
        rk.store()
            .read(|tx| tx.meta("move_unfinished"))
            .unwrap()
            .is_none()
    );
}

/// A data dir is tied to its store by a note naming the store's id: a data dir made
/// before the note (and a store without an id) still opens, and gets both on its first open
/// for writing; an open only to read writes nothing.
#[test]
fn a_data_dir_without_a_note_opens_and_gets_one() {
    use redkeep::store::Meta;
    let t = TestDir::new();
    let note = t.path().join("redkeep.store");
    {
        let rk = t.open();
        account(&rk, "ann@example.com");
        rk.store().write(|tx| tx.remove_meta("store_id")).unwrap();
    }
    std::fs::remove_file(&note).unwrap();
    drop(Redkeep::open(t.path(), t.options().read_only(true)).unwrap());
    assert!(!note.exists(), "a read-only open writes nothing");
    let rk = t.open();
    let id = rk.store().read(|tx| tx.meta("store_id")).unwrap().unwrap();
    let text = std::fs::read_to_string(&note).unwrap();
    assert!(text.contains(std::str::from_utf8(&id).unwrap()), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&note).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(rk.users().by_email("ann@example.com").unwrap().is_some());
    // A reset keeps the store's id: the data dir stays tied to it.
    drop(rk);
    redkeep::ops::reset_store(t.path(), t.store.as_deref(), Timestamp(1_900_000_000)).unwrap();
    let rk = t.open();
    assert_eq!(
        rk.store().read(|tx| tx.meta("store_id")).unwrap().unwrap(),
        id
    );
}

/// A data dir tied to one store refuses another (here a store file of another data dir
/// copied in; on a server, another schema), naming the store its folders belong to, and a
/// reset of that other store is refused before anything moves. The folders stay.
#[test]
fn a_data_dir_tied_to_another_store_refuses_it() {
    let t = TestDir::new();
    let ann = {
        let rk = t.open();
        let ann = account(&rk, "ann@example.com");
        rk.workspaces().save_piece(ann, b"{}").unwrap();
        ann
    };
    let other = TestDir::new();
    drop(other.open());
    let options = match &other.store {
        Some(_) => other.options(),
        None => {
            std::fs::copy(
                other.path().join("redkeep.redb"),
                t.path().join("redkeep.redb"),
            )
            .unwrap();
            t.options()
        }
    };
    let err = Redkeep::open(t.path(), options.clone()).unwrap_err();
    assert!(
        matches!(err, Error::Denied { .. }) && err.to_string().contains("belong to the"),
        "{err}"
    );
    let err = redkeep::ops::reset_store(
        t.path(),
        options.store_url.as_deref(),
        Timestamp(1_900_000_000),
    )
    .unwrap_err();
    assert!(err.to_string().contains("belong to the"), "{err}");
    assert!(
        t.path()
            .join(format!("workspaces/users/{ann}/workspace.json"))
            .is_file()
    );
}

/// A store into which a move stopped part way is not repaired, reset or restored: the
/// folders in its data dir are the move's source's, still the live store's. `check` names
/// the stopped move without advising a repair of the folders; `check --repair`, `reset` and
/// `restore --force` are refused with the move's ways out, and leave the folders and the
/// mark as they were. (They moved the folders to the trash and cleared the mark.)
#[test]
fn a_store_a_move_stopped_filling_is_not_repaired_reset_or_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let backup = tmp.path().join("b.tar");
    {
        let rk = Redkeep::open(&dir, options()).unwrap();
        let id = account(&rk, "ann@example.com");
        rk.workspaces().save_piece(id, b"{}").unwrap();
        redkeep::ops::backup(&rk, &backup).unwrap();
    }
    let to = tmp.path().join("moved");
    let report = redkeep::ops::move_store(&dir, None, to.to_str().unwrap(), options()).unwrap();
    {
        let rk = Redkeep::open(&to, options()).unwrap();
        rk.store()
            .write(|tx| tx.set_meta("move_unfinished", report.from.as_bytes()))
            .unwrap();
    }
    // A folder of a user the stopped move had not copied yet.
    let folder = to.join("workspaces/users/7");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("workspace.json"), b"{}").unwrap();
    let refused = |e: Error| {
        assert!(
            matches!(e, Error::Denied { .. })
                && e.to_string().contains("stopped part way")
                && e.to_string().contains("run the same move again"),
            "{e}"
        );
    };
    {
        let rk = Redkeep::open(&to, options().open_unfinished(true)).unwrap();
        let check = rk.check(false).unwrap();
        assert!(!check.ok);
        assert!(
            !check.problems.iter().any(|p| p.contains("--repair")),
            "{:?}",
            check.problems
        );
        refused(rk.check(true).unwrap_err());
    }
    refused(redkeep::ops::reset(&to, Timestamp(1_900_000_000)).unwrap_err());
    refused(redkeep::ops::restore(&to, &backup, true, Timestamp(1_900_000_000)).unwrap_err());
    assert!(folder.join("workspace.json").is_file(), "the folder stays");
    let rk = Redkeep::open(&to, options().open_unfinished(true)).unwrap();
    use redkeep::store::Meta;
    assert!(
        rk.store()
            .read(|tx| tx.meta("move_unfinished"))
            .unwrap()
            .is_some(),
        "the mark stays"
    );
}

/// A restore replaces the store, then the workspace folders. One that stops between the two
/// (each rename failing in turn, as a crash or a kill there would leave it) leaves the
/// restored store's mark: `check` names it, and `check --repair` puts the backup's folders
/// in place, so the data dir ends whole, before or after the restore, never the backup's
/// accounts beside the replaced folders.
#[test]
fn a_restore_stopped_before_its_folders_is_named_and_finished_by_a_repair() {
    use redkeep::store::{FaultKind, FaultPlan};
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let mut stopped_between = 0;
    for nth in 1.. {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let backup = tmp.path().join("b.bak");
        let ann = {
            let rk = Redkeep::open(&dir, options()).unwrap();
            init_root(&rk);
            let ann = account(&rk, "ann@example.com");
            rk.workspaces().save_piece(ann, br#"{"n": 1}"#).unwrap();
            redkeep::ops::backup(&rk, &backup).unwrap();
            // After the backup: a second piece, and a new user.
            rk.workspaces().save_piece(ann, br#"{"n": 2}"#).unwrap();
            rk.users()
                .create(NewUser {
                    email: "bea@example.com".into(),
                    password: Some("a password 1".into()),
                    ..NewUser::default()
                })
                .unwrap();
            ann
        };
        let plan = FaultPlan::new(FaultKind::FileRename, nth);
        let result = {
            let _armed = plan.arm_files();
            redkeep::ops::restore(&dir, &backup, true, Timestamp(1_900_000_000))
        };
        if !plan.fired() {
            result.unwrap();
            break;
        }
        // A failure once the folders are in place (removing the mark) is no failure of the
        // restore: its mark stays for `check --repair`.
        let finished = result.is_ok();
        let rk = Redkeep::open(&dir, options()).unwrap();
        let report = rk.check(false).unwrap();
        let named = report.problems.iter().any(|p| {
            p.contains("a restore stopped after replacing the store")
                || (finished && p.contains("a restore left its mark"))
        });
        if named && !finished {
            stopped_between += 1;
        }
        // Hours later: the staging folder is old enough to pass for a leftover, yet the
        // repair puts its folders in place rather than removing it.
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with(".rk-tmp-") {
                std::fs::File::open(e.path())
                    .unwrap()
                    .set_modified(long_ago)
                    .unwrap();
            }
        }
        let repaired = rk.check(true).unwrap();
        assert!(
            rk.check(false).unwrap().ok,
            "{nth}: {:?} then {:?}",
            report.problems,
            repaired.problems
        );
        let restored = rk.users().find("bea@example.com").is_err();
        let pieces = rk.workspaces().list_pieces(ann).unwrap().len();
        assert_eq!(
            pieces,
            if restored { 1 } else { 2 },
            "{nth}: the store and the folders are of one state (restored: {restored}); {:?}",
            report.problems
        );
        assert_eq!(named, restored, "{nth}: {:?}", report.problems);
        // One trash entry holds the folders the restore replaced; the repair makes no
        // second, empty one beside it.
        let trash: Vec<String> = std::fs::read_dir(dir.join("workspaces/trash"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("reset-"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(trash.len() <= 1, "{nth}: {trash:?}");
    }
    assert!(
        stopped_between > 0,
        "no failure fell between the store and the folders"
    );
}

/// A folder whose owner marker names another account (left by restoring another store's
/// file over this data dir) is left out of a backup, and named: a restore refuses an archive
/// holding one, so a backup with it passed its check and then did not restore anywhere.
#[test]
fn a_backup_leaves_out_a_folder_of_another_account_so_it_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let make = |dir: &Path, email: &str| {
        let rk = Redkeep::open(dir, options()).unwrap();
        let id = account(&rk, email);
        (rk, id)
    };
    let (here, there) = (tmp.path().join("here"), tmp.path().join("there"));
    let (rk, alice) = make(&here, "alice@example.com");
    rk.workspaces().save_piece(alice, b"{}").unwrap();
    drop(rk);
    let (rk, zoe) = make(&there, "zoe@example.com");
    assert_eq!(zoe, alice);
    drop(rk);
    redkeep::ops::restore(
        &here,
        &there.join(redkeep::STORE_FILE),
        true,
        Timestamp(1_900_000_000),
    )
    .unwrap();
    let rk = Redkeep::open(&here, options()).unwrap();
    let archive = tmp.path().join("b.bak");
    let report = redkeep::ops::backup(&rk, &archive).unwrap();
    assert_eq!(report.folders, 0);
    assert!(
        report
            .not_kept
            .contains(&Path::new("users").join(alice.to_string())),
        "{:?}",
        report.not_kept
    );
    let fresh = tmp.path().join("fresh");
    redkeep::ops::restore(&fresh, &archive, false, Timestamp(1_900_000_060)).unwrap();
    let rk = Redkeep::open(&fresh, options()).unwrap();
    assert!(rk.users().find("zoe@example.com").is_ok());
    assert!(rk.workspaces().list_pieces(zoe).unwrap().is_empty());
    assert!(rk.check(false).unwrap().ok);
}

/// A backup records each file's SHA-256: a byte changed inside a piece after the backup was
/// written (tar checks only its headers) makes the restore refuse the archive, naming the
/// entry, with nothing changed.
#[test]
fn a_backup_damaged_inside_a_file_is_refused_by_the_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options()).unwrap();
    let ann = account(&rk, "ann@example.com");
    rk.workspaces()
        .save_piece(ann, br#"{"drawn": "a quiet harbour at dawn"}"#)
        .unwrap();
    let archive = tmp.path().join("b.bak");
    redkeep::ops::backup(&rk, &archive).unwrap();
    drop(rk);
    // The intact archive restores.
    redkeep::ops::restore(
        &tmp.path().join("first"),
        &archive,
        false,
        Timestamp(1_900_000_000),
    )
    .unwrap();
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes
        .windows(7)
        .position(|w| w == b"harbour")
        .expect("the piece is in the archive");
    bytes[at] = b'H';
    std::fs::write(&archive, &bytes).unwrap();
    let fresh = tmp.path().join("fresh");
    let err = redkeep::ops::restore(&fresh, &archive, false, Timestamp(1_900_000_000)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::InvalidInput { .. })
            && text.contains("do not match the checksums")
            && text.contains("piece_000001.json"),
        "{text}"
    );
    assert!(
        !fresh.join(redkeep::STORE_FILE).exists(),
        "nothing was restored"
    );
}

/// A restore's mark travels with copies of the store: one that names folders outside this
/// data dir is never acted on. `check` names it, and `check --repair` removes the mark and
/// moves nothing.
#[test]
fn a_restore_mark_naming_folders_outside_the_data_dir_is_never_acted_on() {
    let tmp = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let elsewhere = tmp.path().join("elsewhere/users/1");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("workspace.json"), b"{}").unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options()).unwrap();
    let mark = serde_json::json!({
        "users": tmp.path().join("elsewhere/users"),
        "at": 1_900_000_000,
        "keep_empty": false,
    });
    rk.store()
        .write(|tx| tx.set_meta("restore_unfinished", mark.to_string().as_bytes()))
        .unwrap();
    let report = rk.check(false).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("not in this data dir")),
        "{:?}",
        report.problems
    );
    let repaired = rk.check(true).unwrap();
    assert!(
        repaired
            .repaired
            .iter()
            .any(|r| r.contains("removed the mark")),
        "{:?}",
        repaired
    );
    assert!(
        elsewhere.join("workspace.json").exists(),
        "nothing was moved"
    );
    assert!(rk.check(false).unwrap().ok);
}

/// Piece numbers survive an export and an import: a removed piece's number (its bytes stay
/// out of the export) is not given again in the new store, and a piece 0 (a gallery holds
/// one when an adopted deployment did) comes back rather than refusing the import.
#[test]
fn piece_numbers_survive_an_export_and_an_import() {
    let tmp = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let rk = Redkeep::open(tmp.path().join("old"), options()).unwrap();
    let ann = account(&rk, "ann@example.com");
    for i in 1..=3 {
        assert_eq!(
            rk.workspaces()
                .save_piece(ann, format!(r#"{{"n": {i}}}"#).as_bytes())
                .unwrap(),
            i
        );
    }
    rk.workspaces().delete_piece(ann, 3).unwrap();
    let gallery = rk.workspaces().dir(ann).join("gallery");
    std::fs::write(gallery.join("piece_000000.json"), br#"{"n": 0}"#).unwrap();
    rk.check(true).unwrap();
    assert!(rk.check(false).unwrap().ok);
    let mut export = Vec::new();
    redkeep::ops::export(&rk, &mut export, &|_| {}).unwrap();
    assert_eq!(rk.workspaces().save_piece(ann, b"{}").unwrap(), 4);

    let new = Redkeep::open(tmp.path().join("new"), options()).unwrap();
    redkeep::ops::import(&new, &mut export.as_slice(), &|_| {}).unwrap();
    let numbers: Vec<u64> = new
        .workspaces()
        .list_pieces(ann)
        .unwrap()
        .iter()
        .map(|p| p.piece)
        .collect();
    assert_eq!(numbers, [0, 1, 2]);
    assert_eq!(new.workspaces().load_piece(ann, 0).unwrap()["n"], 0);
    assert!(new.check(false).unwrap().ok);
    // As in the old store: 3 was given once, so the next is 4.
    assert_eq!(new.workspaces().save_piece(ann, b"{}").unwrap(), 4);
    // And the export of the new store tells the same.
    let mut again = Vec::new();
    redkeep::ops::export(&new, &mut again, &|_| {}).unwrap();
    let line = String::from_utf8(again).unwrap();
    assert!(line.contains("\"trashed_up_to\":3"), "{line}");
}

/// A backup of many files restores: its manifest names each file with its checksum, and a
/// restore read only its first 64 KiB, so any backup of more than some 500 files was
/// refused as malformed (found by the backup benchmark).
#[test]
fn a_backup_of_many_files_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let rk = Redkeep::open(tmp.path().join("data"), options()).unwrap();
    let ann = account(&rk, "ann@example.com");
    rk.workspaces().save_piece(ann, b"{}").unwrap();
    // Written by hand (quicker than a save each), then counted by a repair.
    let gallery = rk.workspaces().dir(ann).join("gallery");
    const PIECES: u64 = 1200;
    for n in 2..=PIECES {
        std::fs::write(
            gallery.join(format!("piece_{n:06}.json")),
            format!(r#"{{"n": {n}}}"#),
        )
        .unwrap();
    }
    rk.check(true).unwrap();
    assert!(rk.check(false).unwrap().ok);
    let archive = tmp.path().join("b.bak");
    redkeep::ops::backup(&rk, &archive).unwrap();
    let fresh = tmp.path().join("fresh");
    redkeep::ops::restore(&fresh, &archive, false, Timestamp(1_900_000_000)).unwrap();
    let rk = Redkeep::open(&fresh, options()).unwrap();
    assert_eq!(
        rk.workspaces().list_pieces(ann).unwrap().len() as u64,
        PIECES
    );
    assert_eq!(
        rk.workspaces().load_piece(ann, PIECES).unwrap()["n"],
        PIECES
    );
    assert!(rk.check(false).unwrap().ok);
}

/// The marks an operation stopped part way leaves hold for their own data dir only: an
/// export leaves them out, an import refuses a line that sets one (nothing is imported),
/// and a restore removes every one its backup's store carried.
#[test]
fn marks_of_stopped_operations_stay_in_their_own_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let options = || {
        Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .open_unfinished(true)
    };
    let marks = [
        "reset_unfinished",
        "restore_unfinished",
        "move_unfinished",
        "import_unfinished",
        "adopt_unfinished",
    ];
    let rk = Redkeep::open(tmp.path().join("old"), options()).unwrap();
    account(&rk, "ann@example.com");
    let archive = tmp.path().join("old.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    let mut clean = Vec::new();
    redkeep::ops::export(&rk, &mut clean, &|_| {}).unwrap();
    rk.store()
        .write(|tx| {
            for m in marks {
                tx.set_meta(m, b"{}")?;
            }
            Ok(())
        })
        .unwrap();
    let mut text = Vec::new();
    redkeep::ops::export(&rk, &mut text, &|_| {}).unwrap();
    assert_eq!(text, clean, "the marks stay out of the export");
    // A backup of it is refused while a restore's or a reset's mark says the folders are
    // out of step with the store: the store file itself goes (as a plain store backup).
    let refused = redkeep::ops::backup(&rk, &tmp.path().join("marked.tar")).unwrap_err();
    assert!(refused.to_string().contains("check --repair"), "{refused}");
    drop(rk);
    let marked = tmp.path().join("marked.redb");
    std::fs::copy(tmp.path().join("old").join(redkeep::STORE_FILE), &marked).unwrap();

    // A meta line that sets a mark (as a crafted export would): refused, nothing imported.
    let mut lines: Vec<String> = String::from_utf8(clean)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let counted = lines.len() as u64;
    let last = lines.len() - 1;
    lines.insert(
        last,
        r#"{"meta":"adopt_unfinished","value":"MQ=="}"#.to_string(),
    );
    *lines.last_mut().unwrap() =
        serde_json::json!({"redkeep_export_end": true, "lines": counted}).to_string();
    let crafted = lines.join("\n") + "\n";
    let new = Redkeep::open(tmp.path().join("new"), options()).unwrap();
    let e = redkeep::ops::import(&new, &mut crafted.as_bytes(), &|_| {}).unwrap_err();
    assert!(
        e.to_string().contains("adopt_unfinished") && e.to_string().contains("remove this line"),
        "{e}"
    );
    assert_eq!(new.users().count().unwrap(), 0, "nothing was imported");
    drop(new);

    let restored = tmp.path().join("restored");
    redkeep::ops::restore(&restored, &marked, false, Timestamp(1_900_000_000)).unwrap();
    // The store's records are as an import or adoption stopped part way left them: not
    // opened for use. The marks about the data dir the backup was taken in are gone.
    let plain = Redkeep::open(
        &restored,
        Options::default().password(PasswordParams::INSECURE_FAST),
    );
    assert!(
        matches!(plain, Err(redkeep::Error::Denied { .. })),
        "{plain:?}"
    );
    let rk = Redkeep::open(&restored, options()).unwrap();
    for m in marks {
        use redkeep::store::Meta;
        let kept = rk.store().read(|tx| tx.meta(m)).unwrap().is_some();
        let content = m == "import_unfinished" || m == "adopt_unfinished";
        assert_eq!(kept, content, "{m}");
    }
    assert_eq!(rk.users().count().unwrap(), 1);
}

/// A backup whose user folder is not named by an id as redkeep writes it
/// (`workspaces/users/0002/…`, which no user owns) is refused whole, saying so, and
/// nothing is restored; it was put in place beside `users/2` and reported as restored.
#[test]
fn a_backup_with_a_user_folder_not_named_by_an_id_is_refused() {
    let t = TestDir::new();
    let rk = populated(&t);
    let archive = t.path().join("backup.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    for name in ["0002", "0"] {
        let crafted = t.path().join(format!("crafted-{name}.tar"));
        let planted = format!("workspaces/users/{name}/workspace.json");
        let plant = planted.clone();
        crafted_archive(&archive, &crafted, true, &move |path, bytes| {
            let mut out = vec![(path.to_string(), bytes)];
            if path == redkeep::STORE_FILE {
                out.push((plant.clone(), b"{}".to_vec()));
            }
            out
        });
        let target = t.path().join(format!("restored-{name}"));
        use redkeep::Clock;
        let e = redkeep::ops::restore(&target, &crafted, false, t.clock.now()).unwrap_err();
        assert!(
            e.to_string().contains(&planted) && e.to_string().contains("without leading zeros"),
            "{e}"
        );
        assert!(!target.exists(), "nothing was restored");
    }
}

/// `migrate down --to 1` and `migrate up` give back the same store, export line for export
/// line (but for the credentials' stamps, made anew). A user an operator left without a role
/// got the `user` role back from the upgrade (the step for users from before roles), and
/// personal orgs lost whose they were.
#[test]
fn a_round_trip_down_and_up_gives_back_the_same_store() {
    let tmp = tempfile::tempdir().unwrap();
    let rk = open_with_clock(tmp.path(), FIXTURE_TIME, false);
    account(&rk, "ann@example.com");
    let eve = account(&rk, "eve@example.com");
    rk.roles().revoke(eve, "user", None).unwrap();
    assert!(rk.roles().of_user(eve).unwrap().is_empty());
    let personal = rk.orgs().of_user(eve).unwrap()[0].0.clone();
    assert_eq!(personal.personal_user, Some(eve));
    let export = |rk: &Redkeep| {
        let mut out = Vec::new();
        redkeep::ops::export(rk, &mut out, &|_| {}).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| {
                let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
                if v["table"] == "credentials" {
                    let record = v["record"].as_object_mut().unwrap();
                    record.remove("stamp");
                }
                v.to_string()
            })
            .collect::<Vec<_>>()
    };
    let before = export(&rk);
    assert_eq!(rk.migrate_down(Some(1)).unwrap().version, 1);
    rk.migrate().unwrap();
    let after = export(&rk);
    let gone: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
    let new: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        gone.is_empty() && new.is_empty(),
        "lost: {gone:#?}\nnew: {new:#?}"
    );
    assert!(rk.roles().of_user(eve).unwrap().is_empty());
    assert!(rk.check(false).unwrap().ok);
}

/// A store a move into it stopped part way left is not opened for use, as one an import or
/// an adoption left: its records or folders may be missing, and what is written into it
/// would be lost when the move runs again. It was opened as if whole.
#[test]
fn a_store_a_move_stopped_filling_is_not_opened_for_use() {
    let tmp = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let rk = Redkeep::open(tmp.path(), options()).unwrap();
    account(&rk, "ann@example.com");
    rk.store()
        .write(|tx| tx.set_meta("move_unfinished", b"/srv/old-data"))
        .unwrap();
    drop(rk);
    match Redkeep::open(tmp.path(), options()) {
        Err(redkeep::Error::Denied { reason }) => {
            assert!(
                reason.contains("a move into this store stopped"),
                "{reason}"
            );
            assert!(reason.contains("run the same move again"), "{reason}");
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    let rk = Redkeep::open(tmp.path(), options().open_unfinished(true)).unwrap();
    let report = rk.check(false).unwrap();
    assert!(!report.ok, "check names it");
}

/// A table is not written while a scan of it runs, on either engine: an update or a clear
/// from inside a walk of the table is refused, and the table is left as it was. (On
/// PostgreSQL the scan's snapshot would have let it through, so code written there broke on
/// redb.) Once the scan is over, the same writes go through.
#[test]
fn a_table_written_or_cleared_during_a_scan_of_it_is_refused_alike_on_every_engine() {
    use indexed::Member;
    let t = TestDir::new();
    let rk = t.open();
    let member = |id: u64, team: u64| Member {
        id,
        email: format!("m{id}@example.com"),
        team,
    };
    rk.store()
        .write(|tx| {
            for id in 1..=3 {
                tx.table::<Member>().insert(&member(id, 1))?;
            }
            Ok(())
        })
        .unwrap();
    let teams = || -> Vec<u64> {
        rk.store()
            .read(|tx| tx.table::<Member>().range(KeyRange::all(), Order::Asc, 10))
            .unwrap()
            .into_iter()
            .map(|m| m.team)
            .collect()
    };
    let updated = rk.store().write(|tx| {
        tx.table::<Member>()
            .for_each(KeyRange::all(), Order::Asc, |m| {
                tx.table::<Member>().update(&member(m.id, 2))?;
                Ok(true)
            })
    });
    assert!(
        matches!(&updated, Err(Error::Invariant { what }) if what.contains("while a scan")),
        "{updated:?}"
    );
    let cleared = rk.store().write(|tx| {
        tx.table::<Member>()
            .for_each(KeyRange::all(), Order::Asc, |_| {
                tx.table::<Member>().clear()?;
                Ok(true)
            })
    });
    assert!(
        matches!(&cleared, Err(Error::Invariant { what }) if what.contains("while a scan")),
        "{cleared:?}"
    );
    assert_eq!(teams(), vec![1, 1, 1]);
    // Collected first, then written: what the refusal asks for.
    rk.store()
        .write(|tx| {
            let all = tx
                .table::<Member>()
                .range(KeyRange::all(), Order::Asc, 10)?;
            for m in all {
                tx.table::<Member>().update(&member(m.id, 2))?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(teams(), vec![2, 2, 2]);
    assert!(rk.check(false).unwrap().ok);
}

/// A `workspace.json` as an application wrote it (compact, fields in its own order, a number
/// spelled `1.50`) comes back byte for byte after an export and an import into a new data
/// dir, not pretty-printed by redkeep.
#[test]
fn a_workspace_file_comes_back_byte_for_byte_after_export_and_import() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = account(&rk, "ann@example.com");
    rk.workspaces()
        .save_piece(ann, br#"{"title":"p1"}"#)
        .unwrap();
    let own: &[u8] = br#"{"extra":1.50,"canvas":{"w":10},"notes":["n1"],"piece_count":1}"#;
    let path = rk
        .workspaces()
        .dir(ann)
        .join(redkeep::workspace::WORKSPACE_FILE);
    std::fs::write(&path, own).unwrap();
    let exported = export(&rk);
    let other = TestDir::new();
    let rk2 = other.open();
    redkeep::ops::import(&rk2, &mut exported.as_slice(), &|_| {}).unwrap();
    let back = rk2
        .workspaces()
        .dir(ann)
        .join(redkeep::workspace::WORKSPACE_FILE);
    assert_eq!(std::fs::read(&back).unwrap(), own);
    assert!(rk2.check(false).unwrap().ok);
    // And the next export gives the same lines.
    assert_eq!(export(&rk2), exported);
}

/// A workspace line's `text` must hold the line's `doc`: an edited one is refused by line,
/// and nothing is imported.
#[test]
fn a_workspace_text_that_differs_from_its_doc_is_refused_by_line() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = account(&rk, "ann@example.com");
    rk.workspaces().update(ann, |d| d.add_note("n1")).unwrap();
    let path = rk
        .workspaces()
        .dir(ann)
        .join(redkeep::workspace::WORKSPACE_FILE);
    std::fs::write(&path, br#"{"notes":["n1"]}"#).unwrap();
    let exported = String::from_utf8(export(&rk)).unwrap();
    assert!(
        exported.contains(r#""text":"{\"notes\":[\"n1\"]}""#),
        "{exported}"
    );
    let edited = exported.replace(
        r#""text":"{\"notes\":[\"n1\"]}""#,
        r#""text":"{\"notes\":[\"n2\"]}""#,
    );
    let line = edited.lines().position(|l| l.contains("\"text\"")).unwrap() + 1;
    let other = TestDir::new();
    let rk2 = other.open();
    let e = redkeep::ops::import(&rk2, &mut edited.as_bytes(), &|_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&format!("line {line}")), "{msg}");
    assert!(msg.contains("\"text\" and \"doc\" differ"), "{msg}");
    assert!(rk2.users().by_email("ann@example.com").unwrap().is_none());
    assert!(!rk2.workspaces().exists(ann));
}

/// Dates `path` at 2020-01-02 03:04:05.5 plus `nanos`; false when the file system does not
/// keep the part of a second (the tests of it have nothing to compare then).
fn dated_to_the_nanosecond(path: &Path, nanos: u32) -> bool {
    let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_577_934_245, 500_000_000 + nanos);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(at))
        .unwrap();
    std::fs::metadata(path).unwrap().modified().unwrap() == at
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// The times of a user's files come back to the nanosecond after an export and an import,
/// and after a backup and a restore (the export's `modified` and a tar header hold whole
/// seconds only).
#[test]
fn file_times_come_back_to_the_nanosecond_after_export_import_and_backup_restore() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = account(&rk, "ann@example.com");
    let n = rk
        .workspaces()
        .save_piece(ann, br#"{"title":"p1"}"#)
        .unwrap();
    let doc = rk
        .workspaces()
        .dir(ann)
        .join(redkeep::workspace::WORKSPACE_FILE);
    let piece = rk.workspaces().piece_path(ann, n);
    if !dated_to_the_nanosecond(&doc, 0) || !dated_to_the_nanosecond(&piece, 123_457) {
        eprintln!("this file system does not keep the part of a second; nothing to compare");
        return;
    }
    let (doc_at, piece_at) = (modified(&doc), modified(&piece));
    let exported = export(&rk);
    assert!(
        String::from_utf8(exported.clone())
            .unwrap()
            .contains("\"modified_nanos\":500123457"),
        "the part of a second exported"
    );
    let other = TestDir::new();
    let rk2 = other.open();
    redkeep::ops::import(&rk2, &mut exported.as_slice(), &|_| {}).unwrap();
    assert_eq!(
        modified(
            &rk2.workspaces()
                .dir(ann)
                .join(redkeep::workspace::WORKSPACE_FILE)
        ),
        doc_at
    );
    assert_eq!(modified(&rk2.workspaces().piece_path(ann, n)), piece_at);

    let archive = t.path().join("backup.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("new-data");
    use redkeep::Clock;
    redkeep::ops::restore(&target, &archive, false, t.clock.now()).unwrap();
    let users = target.join("workspaces/users").join(ann.to_string());
    assert_eq!(
        modified(&users.join(redkeep::workspace::WORKSPACE_FILE)),
        doc_at
    );
    assert_eq!(
        modified(
            &users
                .join("gallery")
                .join(redkeep::workspace::piece_file_name(n))
        ),
        piece_at
    );
}

/// A `modified_nanos` that is no part of a second, or without its `modified`, is refused by
/// line.
#[test]
fn a_part_of_a_second_out_of_range_is_refused_by_line() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = account(&rk, "ann@example.com");
    rk.workspaces().update(ann, |d| d.add_note("n1")).unwrap();
    let doc = rk
        .workspaces()
        .dir(ann)
        .join(redkeep::workspace::WORKSPACE_FILE);
    std::fs::File::options()
        .write(true)
        .open(&doc)
        .and_then(|f| {
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
        })
        .unwrap();
    let exported = String::from_utf8(export(&rk)).unwrap();
    for bad in [
        "\"modified\":1000000000,\"modified_nanos\":1000000000",
        "\"modified_nanos\":5",
    ] {
        let edited = exported.replace("\"modified\":1000000000", bad);
        assert_ne!(edited, exported);
        let other = TestDir::new();
        let rk2 = other.open();
        let e = redkeep::ops::import(&rk2, &mut edited.as_bytes(), &|_| {}).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"modified_nanos\" is the part of a second"),
            "{e}"
        );
    }
}

/// A removed piece stays out of an export, but its number does not: after the import, no
/// file named like the removed piece (an empty `{}` that anyone putting it back would get)
/// is in the user's `.trash`, the trash lists nothing, and the number is never given again.
#[test]
fn an_import_keeps_a_removed_pieces_number_without_a_false_removed_piece() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = account(&rk, "ann@example.com");
    let removed = rk
        .workspaces()
        .save_piece(ann, br#"{"title":"p1"}"#)
        .unwrap();
    let kept = rk
        .workspaces()
        .save_piece(ann, br#"{"title":"p2"}"#)
        .unwrap();
    rk.workspaces().delete_piece(ann, kept).unwrap();
    rk.workspaces().delete_piece(ann, removed).unwrap();
    assert_eq!(rk.workspaces().trash().unwrap().len(), 2);
    let exported = export(&rk);
    let other = TestDir::new();
    let rk2 = other.open();
    redkeep::ops::import(&rk2, &mut exported.as_slice(), &|_| {}).unwrap();
    let trash = rk2.workspaces().dir(ann).join(".trash");
    for n in [removed, kept] {
        let name = redkeep::workspace::piece_file_name(n);
        assert!(!trash.join(&name).exists(), "{name} in {}", trash.display());
    }
    assert_eq!(rk2.workspaces().trash().unwrap(), []);
    assert!(rk2.check(false).unwrap().ok);
    // The next export says the same, and no number is given twice.
    assert_eq!(export(&rk2), exported);
    assert_eq!(rk2.workspaces().save_piece(ann, b"{}").unwrap(), kept + 1);
}

/// After a purge, the marker that keeps a removed piece's number (`numbers_used_up_to_<n>`)
/// goes wherever the folder goes: the export says `trashed_up_to`, and an import, a backup
/// restored elsewhere and a move to another data dir each leave that marker alone in the
/// user's `.trash` (no file named like the piece), list nothing in the trash, pass `check`,
/// and never give the number again.
#[test]
fn a_purged_pieces_number_marker_survives_export_backup_and_move() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = account(&rk, "ann@example.com");
    for body in [r#"{"p":1}"#, r#"{"p":2}"#] {
        rk.workspaces().save_piece(ann, body.as_bytes()).unwrap();
    }
    rk.workspaces().delete_piece(ann, 2).unwrap();
    assert_eq!(rk.workspaces().purge_trash(&|_| true).unwrap().len(), 1);
    let exported = export(&rk);
    assert!(
        String::from_utf8_lossy(&exported).contains(r#""trashed_up_to":2"#),
        "{}",
        String::from_utf8_lossy(&exported)
    );
    let archive = t.path().join("nightly.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    drop(rk);

    let imported = TestDir::new();
    let by_import = imported.open();
    redkeep::ops::import(&by_import, &mut exported.as_slice(), &|_| {}).unwrap();
    let restored = tempfile::tempdir().unwrap();
    let by_restore = restore_elsewhere(&t, restored.path(), &archive);
    let moved = tempfile::tempdir().unwrap();
    let to = moved.path().join("data");
    let mut options = t.options();
    options.store_url = None;
    redkeep::ops::move_store(
        t.path(),
        t.store.as_deref(),
        to.to_str().unwrap(),
        options.clone(),
    )
    .unwrap();
    let by_move = Redkeep::open(&to, options).unwrap();

    for (how, rk) in [
        ("import", &by_import),
        ("restore", &by_restore),
        ("move", &by_move),
    ] {
        let trash = rk.workspaces().dir(ann).join(".trash");
        let names: Vec<_> = std::fs::read_dir(&trash)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["numbers_used_up_to_000002"], "after the {how}");
        assert_eq!(rk.workspaces().trash().unwrap(), [], "after the {how}");
        let report = rk.check(false).unwrap();
        assert!(report.ok, "after the {how}: {report:?}");
        assert_eq!(
            rk.workspaces().save_piece(ann, br#"{"p":3}"#).unwrap(),
            3,
            "after the {how}"
        );
    }
}
