//! Damaged records and files from other schema versions give clear errors, never panics.

mod common;

use common::TestDir;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use redkeep::{Error, NewUser, Redkeep, STORE_FILE};

const USERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("r:users");
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

fn poke(path: &std::path::Path, table: TableDefinition<&[u8], &[u8]>, key: &[u8], value: &[u8]) {
    let db = redb::Database::open(path).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(table).unwrap().insert(key, value).unwrap();
    tx.commit().unwrap();
}

/// Creates a user for each email; returns their ids.
fn create_users(rk: &Redkeep, emails: &[&str]) -> Vec<u64> {
    emails
        .iter()
        .map(|email| {
            rk.users()
                .create(NewUser {
                    email: (*email).into(),
                    password: Some("correct horse".into()),
                    ..NewUser::default()
                })
                .unwrap()
                .user
                .id
        })
        .collect()
}

#[test]
fn corrupt_record_bytes_name_the_table_and_key() {
    let t = TestDir::new();
    let rk = t.open();
    let id = rk
        .users()
        .create(NewUser {
            email: "a@example.com".into(),
            password: Some("correct horse".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id;
    drop(rk);
    let db = t.path().join(STORE_FILE);
    for garbage in [&b""[..], &[1, 0xFF, 0xFF, 0xFF][..], &[42, 1, 2][..]] {
        poke(&db, USERS, &id.to_be_bytes(), garbage);
        let rk = t.open();
        match rk.users().get(id) {
            Err(Error::Corrupt { table, key, .. }) => {
                assert_eq!(table, "users");
                assert_eq!(key, id.to_string());
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let report = rk.check(false).unwrap();
        assert!(!report.ok);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("record 1 of table users is corrupt")),
            "{:?}",
            report.problems
        );
    }
}

#[test]
fn a_newer_schema_is_refused_and_keeps_its_version() {
    let t = TestDir::new();
    drop(t.open());
    let db = t.path().join(STORE_FILE);
    poke(&db, META, b"schema_version", &99u64.to_be_bytes());
    match Redkeep::open(t.path(), t.options()) {
        Err(Error::NewerSchema {
            found: 99,
            supported,
        }) => assert_eq!(supported, redkeep::SCHEMA_VERSION),
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let db_handle = redb::Database::open(&db).unwrap();
    let v = db_handle
        .begin_read()
        .unwrap()
        .open_table(META)
        .unwrap()
        .get(&b"schema_version"[..])
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(v, 99u64.to_be_bytes());
}

#[test]
fn a_dangling_index_entry_is_found_and_repaired() {
    let t = TestDir::new();
    let rk = t.open();
    rk.users()
        .create(NewUser {
            email: "a@example.com".into(),
            password: Some("correct horse".into()),
            ..NewUser::default()
        })
        .unwrap();
    drop(rk);
    let db = t.path().join(STORE_FILE);
    let email_index: TableDefinition<&[u8], &[u8]> = TableDefinition::new("i:users:email");
    poke(
        &db,
        email_index,
        b"ghost@example.com\0\0",
        &7u64.to_be_bytes(),
    );
    let rk = t.open();
    let report = rk.check(false).unwrap();
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("stale entry pointing at 7")),
        "{:?}",
        report.problems
    );
    let repaired = rk.check(true).unwrap();
    assert!(repaired.ok, "{:?}", repaired.problems);
    assert_eq!(repaired.repaired.len(), 1);
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn every_kind_of_index_damage_is_named_and_mended_by_a_repair() {
    let t = TestDir::new();
    let rk = t.open();
    for email in ["a@example.com", "b@example.com"] {
        rk.users()
            .create(NewUser {
                email: email.into(),
                password: Some("correct horse".into()),
                ..NewUser::default()
            })
            .unwrap();
    }
    drop(rk);
    let db = redb::Database::open(t.path().join(STORE_FILE)).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let email: TableDefinition<&[u8], &[u8]> = TableDefinition::new("i:users:email");
        let mut email = tx.open_table(email).unwrap();
        email.remove(&b"a@example.com\0\0"[..]).unwrap();
        email
            .insert(&b"b@example.com\0\0"[..], &1u64.to_be_bytes()[..])
            .unwrap();
        email
            .insert(&b"ghost@example.com\0\0"[..], &7u64.to_be_bytes()[..])
            .unwrap();
        let admin: TableDefinition<&[u8], &[u8]> = TableDefinition::new("i:users:is_admin");
        let mut admin = tx.open_table(admin).unwrap();
        let mut claims_admin = vec![1u8];
        claims_admin.extend_from_slice(&1u64.to_be_bytes());
        admin.insert(&claims_admin[..], &b""[..]).unwrap();
        admin.insert(&[0u8][..], &b""[..]).unwrap();
    }
    tx.commit().unwrap();
    drop(db);

    let rk = t.open();
    let report = rk.check(false).unwrap();
    let mut problems = report.problems.clone();
    problems.sort();
    assert_eq!(
        problems,
        [
            "users.email: entry for record 1 is missing",
            "users.email: entry points at 1 instead of 2",
            "users.email: stale entry pointing at 7",
            "users.is_admin: malformed entry 00",
            "users.is_admin: stale entry pointing at 1",
        ]
    );
    let repaired = rk.check(true).unwrap();
    assert_eq!(repaired.repaired.len(), 5, "{:?}", repaired.repaired);
    assert!(repaired.ok, "{:?}", repaired.problems);
    assert!(rk.check(false).unwrap().ok);
    assert_eq!(rk.users().by_email("a@example.com").unwrap().unwrap().id, 1);
    assert_eq!(rk.users().by_email("b@example.com").unwrap().unwrap().id, 2);
    assert_eq!(rk.users().admins(10).unwrap(), vec![]);
}

#[test]
fn opening_without_create_on_an_empty_dir_says_to_init() {
    let t = TestDir::new();
    let err = Redkeep::open(t.path().join("none"), t.options().create(false)).unwrap_err();
    assert!(matches!(err, Error::NotInitialized { .. }));
    assert!(err.to_string().contains("redkeep init"), "{err}");
    assert!(!t.path().join("none").exists());
}

/// Another program's file where the store should be (here a SQLite database's first page) is
/// reported as not a store, with what to do, and left as it is.
#[test]
fn a_file_that_is_not_a_store_is_named_as_such() {
    let t = TestDir::new();
    let db = t.path().join(STORE_FILE);
    let mut other = b"SQLite format 3\0".to_vec();
    other.resize(4096, 0);
    std::fs::write(&db, &other).unwrap();
    match Redkeep::open(t.path(), t.options()) {
        Err(e @ Error::Damaged { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("not a redb store file") && text.contains(&db.display().to_string()),
                "{text}"
            );
            assert!(text.contains("restore"), "{text}");
        }
        other => panic!("another program's file opened: {other:?}"),
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        other,
        "nothing was written over it"
    );
}

#[test]
fn an_empty_store_file_is_reported_never_recreated() {
    let t = TestDir::new();
    drop(t.open());
    let db = t.path().join(STORE_FILE);
    std::fs::write(&db, b"").unwrap();
    // An ordinary open never takes it for a new store (a store cut short to nothing would
    // pass for an empty one); it points to `init`, which replaces it when the data dir holds
    // no users' folders, and to a backup when it did hold a store.
    for _ in 0..2 {
        match Redkeep::open(t.path(), t.options()) {
            Err(Error::Unwritten { found, .. }) => assert_eq!(found, "0 bytes"),
            other => panic!("an empty file opened: {other:?}"),
        }
    }
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "nothing was written over it"
    );
    let message = Redkeep::open(t.path(), t.options())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("run `redkeep init`") && message.contains("restore a backup"),
        "{message}"
    );
    // With a user's folder, the data dir held a store: the file is a store that was lost.
    std::fs::create_dir_all(t.path().join("workspaces/users/1")).unwrap();
    match Redkeep::open(t.path(), t.options()) {
        Err(e @ Error::Damaged { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("0 bytes") && message.contains("restore"),
                "{message}"
            );
        }
        other => panic!("an empty file opened: {other:?}"),
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
}

#[test]
fn after_a_corruption_is_seen_writes_wait_for_a_repair_that_sets_it_aside() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = rk
        .users()
        .create(NewUser {
            email: "ann@example.com".into(),
            password: Some("correct horse".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id;
    drop(rk);
    let avatars: TableDefinition<&[u8], &[u8]> = TableDefinition::new("r:avatars");
    // An avatar record whose bytes are garbage.
    poke(
        &t.path().join(STORE_FILE),
        avatars,
        &ann.to_be_bytes(),
        &[2, 1, 0xFF, 0x13],
    );
    let rk = t.open();
    assert!(matches!(rk.users().avatar(ann), Err(Error::Corrupt { .. })));
    let refused = rk.users().create(NewUser {
        email: "bob@example.com".into(),
        password: Some("correct horse".into()),
        ..NewUser::default()
    });
    match refused {
        Err(Error::Damaged { reason, .. }) => assert!(reason.contains("refused"), "{reason}"),
        other => panic!("a write went on after the corruption: {other:?}"),
    }
    let report = rk.check(false).unwrap();
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("quarantine:avatars")),
        "{:?}",
        report.problems
    );
    let repaired = rk.check(true).unwrap();
    assert!(repaired.ok, "{:?}", repaired.problems);
    assert!(
        repaired
            .repaired
            .iter()
            .any(|r| r.contains("quarantine:avatars"))
    );
    // The bytes are kept aside; the store works again.
    let db = redb::Database::open(t.path().join(STORE_FILE));
    assert!(db.is_err(), "the handle still holds the file");
    assert_eq!(rk.users().avatar(ann).unwrap(), None);
    rk.users()
        .create(NewUser {
            email: "bob@example.com".into(),
            password: Some("correct horse".into()),
            ..NewUser::default()
        })
        .unwrap();
    drop(rk);
    let db = redb::Database::open(t.path().join(STORE_FILE)).unwrap();
    let tx = db.begin_read().unwrap();
    let aside: TableDefinition<&[u8], &[u8]> = TableDefinition::new("r:quarantine:avatars");
    let kept = tx.open_table(aside).unwrap();
    assert_eq!(
        kept.get(&ann.to_be_bytes()[..]).unwrap().unwrap().value(),
        &[2, 1, 0xFF, 0x13]
    );
}

#[test]
fn a_record_of_a_newer_application_version_is_not_damage() {
    let t = TestDir::new();
    let rk = t.open();
    let ann = rk
        .users()
        .create(NewUser {
            email: "ann@example.com".into(),
            password: Some("correct horse".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id;
    drop(rk);
    let avatars: TableDefinition<&[u8], &[u8]> = TableDefinition::new("r:avatars");
    // Format 2, record version 9: written by a newer build.
    poke(
        &t.path().join(STORE_FILE),
        avatars,
        &ann.to_be_bytes(),
        &[2, 9, 0x44],
    );
    let rk = t.open();
    match rk.users().avatar(ann) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("newer version"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(rk.store().damage().is_none());
    rk.users()
        .create(NewUser {
            email: "bob@example.com".into(),
            password: Some("correct horse".into()),
            ..NewUser::default()
        })
        .unwrap();
}

#[test]
fn two_records_claiming_one_unique_key_are_reported_and_the_damaged_one_set_aside() {
    let t = TestDir::new();
    let rk = t.open();
    let ids = create_users(&rk, &["ann@example.com", "bob@example.com"]);
    drop(rk);
    // Damage turns bob's stored email into ann's (same length, so the record still decodes).
    let users: TableDefinition<&[u8], &[u8]> = TableDefinition::new("r:users");
    let path = t.path().join(STORE_FILE);
    let bob_key = ids[1].to_be_bytes();
    let bytes = {
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let table = tx.open_table(users).unwrap();
        table.get(&bob_key[..]).unwrap().unwrap().value().to_vec()
    };
    let from = b"bob@example.com";
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the email is stored as written");
    let mut damaged = bytes.clone();
    damaged[at..at + from.len()].copy_from_slice(b"ann@example.com");
    poke(&path, users, &bob_key, &damaged);

    let rk = t.open();
    let report = rk.check(false).unwrap();
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("claim the same unique key") && p.contains("quarantine:users")),
        "{:?}",
        report.problems
    );
    let repaired = rk.check(true).unwrap();
    assert!(repaired.ok, "{:?}", repaired.problems);
    assert!(rk.check(false).unwrap().ok);
    // Ann, whom the index named, keeps her account; bob's bytes are kept aside.
    assert_eq!(
        rk.users().get(ids[0]).unwrap().unwrap().email,
        "ann@example.com"
    );
    assert!(rk.users().get(ids[1]).unwrap().is_none());
    drop(rk);
    let db = redb::Database::open(&path).unwrap();
    let tx = db.begin_read().unwrap();
    let aside: TableDefinition<&[u8], &[u8]> = TableDefinition::new("r:quarantine:users");
    let kept = tx.open_table(aside).unwrap();
    assert_eq!(
        kept.get(&bob_key[..]).unwrap().unwrap().value(),
        &damaged[..]
    );
}

/// A system role whose record does not decode (opening checks the system roles) does not
/// keep the store from opening: `check` names the damage, `check --repair` moves the record
/// aside, and the next open makes the role again.
#[test]
fn a_damaged_system_role_leaves_the_store_open_for_check_and_repair() {
    let t = TestDir::new();
    let rk = t.open();
    let admin = rk.roles().get("admin").unwrap();
    drop(rk);
    let roles: TableDefinition<&[u8], &[u8]> = TableDefinition::new("r:roles");
    poke(
        &t.path().join(STORE_FILE),
        roles,
        &admin.id.to_be_bytes(),
        &[2, 1, 0xA4, 0x13],
    );
    let rk = t.open();
    let report = rk.check(false).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("table roles is corrupt")),
        "{:?}",
        report.problems
    );
    assert!(
        rk.store().damage().is_some(),
        "a damaged store takes no writes"
    );
    let repaired = rk.check(true).unwrap();
    assert!(
        repaired
            .repaired
            .iter()
            .any(|r| r.contains("quarantine:roles")),
        "{:?}",
        repaired.repaired
    );
    drop(rk);
    let rk = t.open();
    assert_eq!(rk.roles().get("admin").unwrap().name, "admin");
    assert!(rk.check(false).unwrap().ok);
}

/// What a repair of an earlier version set aside (a table `quarantine:<t>` nothing read) is
/// moved by the next repair to where repairs keep it now, which inspect and export read.
#[test]
fn a_repair_moves_what_earlier_versions_set_aside_where_it_can_be_read() {
    let t = TestDir::new();
    drop(t.open());
    let db = t.path().join(STORE_FILE);
    let old: TableDefinition<&[u8], &[u8]> = TableDefinition::new("quarantine:users");
    poke(&db, old, &7u64.to_be_bytes(), &[2, 1, 0xFF]);
    let rk = t.open();
    let report = rk.check(true).unwrap();
    assert!(
        report
            .repaired
            .iter()
            .any(|r| r.contains("quarantine:users") && r.contains("now readable")),
        "{:?}",
        report.repaired
    );
    drop(rk);
    let file = redb::Database::open(&db).unwrap();
    let tx = file.begin_read().unwrap();
    let new: TableDefinition<&[u8], &[u8]> = TableDefinition::new("r:quarantine:users");
    let kept = tx.open_table(new).unwrap();
    assert_eq!(
        kept.get(&7u64.to_be_bytes()[..]).unwrap().unwrap().value(),
        &[2, 1, 0xFF][..]
    );
    assert!(tx.open_table(old).is_err(), "the old table is gone");
}

/// A record whose stored key was damaged (it says its key is another, free one) goes back
/// to its own key in a repair, with its index entries; one whose own key another record
/// holds is moved aside.
#[test]
fn a_repair_moves_a_record_under_a_damaged_key_back_to_its_own() {
    let t = TestDir::new();
    let rk = t.open();
    let ids = create_users(&rk, &["a@example.com", "b@example.com"]);
    drop(rk);
    let path = t.path().join(STORE_FILE);
    let (b, stray) = (ids[1].to_be_bytes(), 999u64.to_be_bytes());
    {
        // b's record leaves its key for 999; a copy of a's goes to 1000, while a stays.
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut users = tx.open_table(USERS).unwrap();
            let b_bytes = users.remove(&b[..]).unwrap().unwrap().value().to_vec();
            users.insert(&stray[..], &b_bytes[..]).unwrap();
            let a_bytes = users
                .get(&ids[0].to_be_bytes()[..])
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            users
                .insert(&1000u64.to_be_bytes()[..], &a_bytes[..])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let rk = t.open();
    let report = rk.check(false).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains(&format!(
            "the record stored under key 999 says its key is {}",
            ids[1]
        )) && p
            .contains("moves it there if no record holds that key")),
        "{:#?}",
        report.problems
    );
    let repaired = rk.check(true).unwrap();
    assert!(
        repaired.repaired.iter().any(|c| c.contains(&format!(
            "the record stored under key 999 says its key is {}, which was free; it was moved \
             there",
            ids[1]
        ))),
        "{:#?}",
        repaired.repaired
    );
    assert!(
        repaired
            .repaired
            .iter()
            .any(|c| c.contains("key 1000") && c.contains("moved to quarantine:users")),
        "{:#?}",
        repaired.repaired
    );
    assert!(rk.check(false).unwrap().ok);
    assert_eq!(rk.users().find("b@example.com").unwrap().id, ids[1]);
    assert_eq!(rk.users().find("a@example.com").unwrap().id, ids[0]);
    assert_eq!(rk.users().count().unwrap(), 2);
    drop(rk);

    // Misplaced again, holding a username another account has taken since: b's own key is
    // free, its username is not, so b is moved aside rather than back.
    let rk = t.open();
    rk.users()
        .rename(ids[1], None, Some(Some("bob".into())))
        .unwrap();
    drop(rk);
    let old_b = {
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let users = tx.open_table(USERS).unwrap();
        users.get(&b[..]).unwrap().unwrap().value().to_vec()
    };
    let rk = t.open();
    rk.users()
        .rename(ids[1], None, Some(Some("bobby".into())))
        .unwrap();
    rk.users()
        .rename(ids[0], None, Some(Some("bob".into())))
        .unwrap();
    drop(rk);
    {
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut users = tx.open_table(USERS).unwrap();
            users.remove(&b[..]).unwrap();
            users.insert(&stray[..], &old_b[..]).unwrap();
        }
        tx.commit().unwrap();
    }
    let rk = t.open();
    let repaired = rk.check(true).unwrap();
    assert!(
        repaired
            .repaired
            .iter()
            .any(|c| c.contains("key 999") && c.contains("moved to quarantine:users")),
        "{:#?}",
        repaired.repaired
    );
    assert!(rk.check(false).unwrap().ok);
    assert_eq!(rk.users().count().unwrap(), 1);
}

/// A damaged entry of the shape registry in `meta` is found by `check`: an export reads
/// every entry and failed on it, where `check` (which takes this build's shapes from
/// memory) found nothing wrong. A repair writes this build's own shapes again; one no
/// type of this build has is named with the way out.
#[test]
fn a_damaged_shape_registry_entry_is_found_and_mended() {
    let t = TestDir::new();
    let rk = t.open();
    create_users(&rk, &["a@example.com", "b@example.com"]);
    drop(rk);
    let db = t.path().join(STORE_FILE);
    let shape_keys: Vec<Vec<u8>> = {
        let file = redb::Database::open(&db).unwrap();
        let tx = file.begin_read().unwrap();
        tx.open_table(META)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| e.unwrap().0.value().to_vec())
            .filter(|k| k.starts_with(b"shape:"))
            .collect()
    };
    assert!(!shape_keys.is_empty());
    // One name of invalid UTF-8: count 1, length 2, two bytes that are no text.
    poke(&db, META, &shape_keys[0], &[1, 2, 0xFF, 0xFE]);
    let rk = t.open();
    let report = rk.check(false).unwrap();
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("registry entry of shape")
                && p.contains("--repair` writes it again")),
        "{:?}",
        report.problems
    );
    let mut out = Vec::new();
    assert!(redkeep::ops::export(&rk, &mut out, &|_| {}).is_err());
    let repaired = rk.check(true).unwrap();
    assert!(
        repaired
            .repaired
            .iter()
            .any(|c| c.contains("wrote it again")),
        "{:?}",
        repaired.repaired
    );
    assert!(rk.check(false).unwrap().ok);
    let mut out = Vec::new();
    redkeep::ops::export(&rk, &mut out, &|_| {}).unwrap();
    drop(rk);

    // A shape no type of this build has cannot be written again: named, with salvage.
    let mut unknown = b"shape:".to_vec();
    unknown.extend_from_slice(&0x0123_4567_89ab_cdef_u64.to_be_bytes());
    poke(&db, META, &unknown, &[1, 2, 0xFF, 0xFE]);
    let rk = t.open();
    let report = rk.check(true).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("0123456789abcdef") && p.contains("salvage")),
        "{:?}",
        report.problems
    );
}

/// A store whose schema version was lost (its entry in `meta` gone with a damaged page) but
/// which holds records is damaged, and an open leaves it as it is: it was taken for a new
/// store and given today's version, and the write copied the damaged page into a sound one,
/// where nothing could find the damage again (found by fuzzing). A salvage takes the version
/// its records show.
#[test]
fn a_store_that_lost_its_schema_version_is_damaged_and_left_as_it_is() {
    let t = TestDir::new();
    let rk = t.open();
    create_users(&rk, &["a@example.com", "b@example.com"]);
    drop(rk);
    let db = t.path().join(STORE_FILE);
    {
        let file = redb::Database::open(&db).unwrap();
        let tx = file.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .remove(&b"schema_version"[..])
            .unwrap();
        tx.commit().unwrap();
    }
    let version = || {
        let file = redb::Database::open(&db).unwrap();
        let tx = file.begin_read().unwrap();
        let meta = tx.open_table(META).unwrap();
        meta.get(&b"schema_version"[..])
            .unwrap()
            .map(|v| v.value().to_vec())
    };
    match Redkeep::open(t.path(), t.options()) {
        Err(Error::Damaged { reason, .. }) => {
            assert!(
                reason.contains("no schema version: the version's entry in meta was lost"),
                "{reason}"
            )
        }
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
    assert!(version().is_none(), "a version was written into the store");
    let to = t.path().with_extension("salvaged");
    redkeep::ops::salvage(
        t.path(),
        &to,
        t.options(),
        redkeep::Timestamp(1_800_000_000),
    )
    .unwrap();
    let saved = Redkeep::open(&to, t.options()).unwrap();
    assert_eq!(saved.users().count().unwrap(), 2);
    assert!(saved.check(false).unwrap().ok);
}

/// `status` names an operation that stopped part way (its mark is in the store), so an
/// operator sees it without running `check`; `check --repair` (or running it again) clears
/// it, and `status` is quiet again.
#[cfg(feature = "cli")]
#[test]
fn status_names_an_operation_stopped_part_way() {
    let cli = common::Cli::new();
    cli.expect(&["init", "--no-admin"], None, 0);
    {
        let rk = Redkeep::open(cli.data(), cli.options()).unwrap();
        rk.store()
            .write(|tx| tx.set_meta("import_unfinished", b"1"))
            .unwrap();
    }
    let status = cli.json(&["status"], None);
    assert_eq!(
        status["stopped"],
        serde_json::json!(["an import"]),
        "{status}"
    );
    let (out, _) = cli.expect(&["status"], None, 0);
    assert!(
        out.contains("an import stopped part way") && out.contains("`redkeep check`"),
        "{out}"
    );
    {
        let rk = Redkeep::open(cli.data(), cli.options().open_unfinished(true)).unwrap();
        rk.store()
            .write(|tx| tx.remove_meta("import_unfinished"))
            .unwrap();
    }
    let status = cli.json(&["status"], None);
    assert!(status.get("stopped").is_none(), "{status}");
}
