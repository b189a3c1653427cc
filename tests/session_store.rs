//! redkeep's tower-sessions store keeps the `SessionStore` contract: the same behaviour tests
//! run against tower-sessions' own `MemoryStore` (proving the tests) and against
//! `RedkeepSessionStore`. Then what only redkeep's does: ids stored hashed, expired sessions
//! swept, and the store shared with the accounts in one data dir.
#![cfg(feature = "tower-sessions")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::TestDir;
use redkeep::web::RedkeepSessionStore;
use redkeep::{AsyncRedkeep, Clock, ManualClock, SystemClock};
use serde_json::json;
use tower_sessions::cookie::time::{Duration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::{ExpiredDeletion, MemoryStore, SessionStore};

fn record(expires_in: Duration) -> Record {
    let mut data = HashMap::new();
    data.insert("user".to_string(), json!(42));
    data.insert("cart".to_string(), json!(["apple", {"n": 1.5}]));
    Record {
        id: Id::default(),
        data,
        // Whole seconds: the stores compare expiries at second precision.
        expiry_date: OffsetDateTime::from_unix_timestamp(
            (OffsetDateTime::now_utc() + expires_in).unix_timestamp(),
        )
        .unwrap(),
    }
}

/// The documented contract of a session store.
async fn contract<S: SessionStore>(store: &S) {
    // create, then load returns the same record.
    let mut a = record(Duration::hours(1));
    store.create(&mut a).await.unwrap();
    assert_eq!(store.load(&a.id).await.unwrap(), Some(a.clone()));

    // create never overwrites: a colliding id is replaced with a fresh one.
    let mut b = record(Duration::hours(1));
    b.id = a.id;
    b.data.insert("user".into(), json!(7));
    store.create(&mut b).await.unwrap();
    assert_ne!(b.id, a.id, "a colliding id is drawn again");
    assert_eq!(store.load(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.load(&b.id).await.unwrap(), Some(b.clone()));

    // save overwrites.
    a.data.insert("user".into(), json!(43));
    store.save(&a).await.unwrap();
    assert_eq!(
        store.load(&a.id).await.unwrap().unwrap().data["user"],
        json!(43)
    );

    // Unknown and expired sessions do not load.
    assert_eq!(store.load(&Id::default()).await.unwrap(), None);
    let mut old = record(Duration::hours(-1));
    store.create(&mut old).await.unwrap();
    assert_eq!(store.load(&old.id).await.unwrap(), None);

    // delete removes; deleting twice is fine.
    store.delete(&a.id).await.unwrap();
    assert_eq!(store.load(&a.id).await.unwrap(), None);
    store.delete(&a.id).await.unwrap();
    assert_eq!(store.load(&b.id).await.unwrap(), Some(b));
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    contract(&MemoryStore::default()).await;
}

async fn open(t: &TestDir, clock: Arc<ManualClock>) -> AsyncRedkeep {
    AsyncRedkeep::open(t.path().to_path_buf(), t.options().clock(clock))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_redkeep_store_keeps_the_contract() {
    let t = TestDir::new();
    let ark = open(&t, Arc::new(ManualClock::new(SystemClock.now()))).await;
    contract(&RedkeepSessionStore::new(ark)).await;
}

/// One request loads the session and is still running when another logs out (deleting the
/// session); the first then saves it at its end (a CSRF token, a flash message). Returns
/// whether the session is back in the store.
async fn saved_after_a_logout<S: SessionStore>(store: Arc<S>) -> bool {
    let mut r = record(Duration::hours(1));
    store.create(&mut r).await.unwrap();
    let slow = tower_sessions::Session::new(Some(r.id), store.clone(), None);
    assert_eq!(slow.get::<i64>("user").await.unwrap(), Some(42));
    let logout = tower_sessions::Session::new(Some(r.id), store.clone(), None);
    logout.flush().await.unwrap();
    slow.insert("flash", "saved").await.unwrap();
    slow.save().await.unwrap();
    store.load(&r.id).await.unwrap().is_some()
}

/// A session deleted while a request ran stays deleted when that request saves it: a save
/// only updates. (`MemoryStore`'s save creates the session again, signed in as before the
/// logout, and a copy of the cookie works again; redkeep's store did the same.)
#[tokio::test]
async fn a_save_after_a_logout_does_not_bring_the_session_back() {
    assert!(
        saved_after_a_logout(Arc::new(MemoryStore::default())).await,
        "the race is real: MemoryStore brings the session back"
    );
    let t = TestDir::new();
    let ark = open(&t, Arc::new(ManualClock::new(SystemClock.now()))).await;
    let store = Arc::new(RedkeepSessionStore::new(ark.clone()));
    assert!(!saved_after_a_logout(store.clone()).await);
    assert_eq!(ark.web_sessions().count().await.unwrap(), 0);
    // A live session's save still updates it.
    let mut live = record(Duration::hours(1));
    store.create(&mut live).await.unwrap();
    live.data.insert("user".into(), json!(7));
    store.save(&live).await.unwrap();
    assert_eq!(store.load(&live.id).await.unwrap(), Some(live));
}

#[tokio::test]
async fn ids_are_stored_hashed_and_expired_sessions_are_swept() {
    let t = TestDir::new();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let ark = open(&t, clock.clone()).await;
    let store = RedkeepSessionStore::new(ark.clone());
    let mut short = record(Duration::minutes(10));
    let mut long = record(Duration::days(1));
    store.create(&mut short).await.unwrap();
    store.create(&mut long).await.unwrap();

    let (export, _) = ark.export(Vec::new()).await.unwrap();
    let export = String::from_utf8(export).unwrap();
    for r in [&short, &long] {
        assert!(!export.contains(&r.id.to_string()), "the id is not stored");
        assert!(!export.contains(&r.id.0.to_string()));
    }
    assert!(export.contains("apple"), "the data is");

    clock.advance(std::time::Duration::from_secs(11 * 60));
    assert_eq!(store.load(&short.id).await.unwrap(), None);
    store.delete_expired().await.unwrap();
    assert_eq!(ark.web_sessions().count().await.unwrap(), 1);
    assert!(store.load(&long.id).await.unwrap().is_some());
    // The accounts' sweep covers them too.
    clock.advance(std::time::Duration::from_secs(86_400));
    assert_eq!(ark.sessions().sweep().await.unwrap(), 1);
    assert_eq!(ark.web_sessions().count().await.unwrap(), 0);
    assert!(ark.check(false).await.unwrap().ok);
}

/// A handle whose clock is not the system's (a `ManualClock` set ahead or behind, as tests
/// do) keeps a web session for its lifetime by that clock: tower-sessions dates the record
/// by the system clock, and the store counts its lifetime from the handle's. (Judged by the
/// handle's clock as given, a session died at once with the clock ahead, and never with
/// it behind.)
#[tokio::test]
async fn a_web_session_lives_its_lifetime_by_the_handles_clock() {
    for offset in [13 * 3600, -13 * 3600, 20 * 365 * 86_400] {
        let t = TestDir::new();
        let start = redkeep::Timestamp(SystemClock.now().0 + offset);
        let clock = Arc::new(ManualClock::new(start));
        let store = RedkeepSessionStore::new(open(&t, clock.clone()).await);
        let mut r = record(Duration::minutes(10));
        store.create(&mut r).await.unwrap();
        assert_eq!(
            store.load(&r.id).await.unwrap(),
            Some(r.clone()),
            "{offset}"
        );
        clock.advance(std::time::Duration::from_secs(9 * 60));
        assert!(store.load(&r.id).await.unwrap().is_some(), "{offset}");
        clock.advance(std::time::Duration::from_secs(2 * 60));
        assert_eq!(store.load(&r.id).await.unwrap(), None, "{offset}");
    }
}

/// Session data nested deeper than a read takes is refused when saved (the record stored
/// before stays), and a stored record that does not read is no session: the browser gets a
/// new one, rather than an error on every request until the record expires.
#[tokio::test]
async fn a_session_that_would_not_read_back_is_never_an_error_on_every_request() {
    let t = TestDir::new();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let ark = open(&t, clock.clone()).await;
    let store = RedkeepSessionStore::new(ark.clone());
    let mut r = record(Duration::hours(1));
    store.create(&mut r).await.unwrap();
    // 127 levels of arrays: valid JSON any app may put in a session, 129 deep once stored.
    let deep: serde_json::Value =
        serde_json::from_str(&format!("{}{}", "[".repeat(127), "]".repeat(127))).unwrap();
    let mut nested = r.clone();
    nested.data.insert("draft".into(), deep);
    let err = store.save(&nested).await.unwrap_err();
    assert!(err.to_string().contains("levels deep"), "{err}");
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));
    // A record that does not read (damaged): no session, and it is removed.
    let key = r.id.0.to_le_bytes();
    let expires = redkeep::Timestamp(SystemClock.now().0 + 3600);
    ark.web_sessions()
        .save(key.to_vec(), "{\"data\": [".into(), expires)
        .await
        .unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), None);
    assert_eq!(ark.web_sessions().count().await.unwrap(), 0);
    // On a store that takes no writes, it cannot be removed: still no session, no error.
    ark.web_sessions()
        .save(key.to_vec(), "{\"data\": [".into(), expires)
        .await
        .unwrap();
    drop(store);
    drop(ark);
    let options = t.options().clock(clock).read_only(true);
    let ark = AsyncRedkeep::open(t.path().to_path_buf(), options)
        .await
        .unwrap();
    let store = RedkeepSessionStore::new(ark.clone());
    assert_eq!(store.load(&r.id).await.unwrap(), None);
    assert_eq!(ark.web_sessions().count().await.unwrap(), 1);
}
