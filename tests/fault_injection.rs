//! I/O failures, injected one at a time into the storage engine: the nth write, sync,
//! set_len or read of an operation fails, for n = 1, 2, … until the operation gets through.
//! Every failure is a clean error (never a panic), the reopened store holds exactly the last
//! committed state, and a handle that met a failure works again for the next operation.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::TestDir;
use redkeep::auth::roles::RoleSpec;
use redkeep::auth::sessions::LoginMeta;
use redkeep::store::{FaultKind, FaultPlan};
use redkeep::{NewUser, Options, PasswordParams, Redkeep};

const PW: &str = "correct horse battery";

fn options(faults: Option<Arc<FaultPlan>>) -> Options {
    let mut o = Options::default().password(PasswordParams::INSECURE_FAST);
    o.faults = faults;
    o
}

fn export(rk: &Redkeep) -> String {
    let mut out = Vec::new();
    redkeep::ops::export(rk, &mut out, &|_| {}).unwrap();
    String::from_utf8(out).unwrap()
}

/// A store with a user, a role and a piece, to run the operations on.
fn template(dir: &Path) {
    let rk = Redkeep::open(dir, options(None)).unwrap();
    let id = rk
        .users()
        .create(NewUser {
            email: "ann@example.com".into(),
            password: Some(PW.into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id;
    rk.roles()
        .create(RoleSpec {
            name: "editor".into(),
            description: String::new(),
            permissions: vec!["docs.edit".into()],
            priority: 1,
        })
        .unwrap();
    rk.workspaces().save_piece(id, b"{}").unwrap();
}

type Op = fn(&Redkeep) -> redkeep::Result<()>;
type Applied = fn(&Redkeep) -> bool;

fn operations() -> Vec<(&'static str, Op, Applied)> {
    vec![
        (
            "create a user",
            |rk| {
                rk.users()
                    .create(NewUser {
                        email: "bob@example.com".into(),
                        password: Some(PW.into()),
                        ..NewUser::default()
                    })
                    .map(|_| ())
            },
            |rk| rk.users().by_email("bob@example.com").unwrap().is_some(),
        ),
        (
            "log in",
            |rk| {
                rk.sessions()
                    .login("ann@example.com", PW, LoginMeta::default())
                    .map(|_| ())
            },
            |rk| !rk.sessions().list(Some(1), 10).unwrap().is_empty(),
        ),
        (
            // One commit for all of them: a failure leaves none (or, after the commit
            // reached the disk, all), never some.
            "create invites at once",
            |rk| {
                rk.invites()
                    .create_many(redkeep::InviteSpec::default(), 3)
                    .map(|_| ())
            },
            |rk| {
                let n = rk
                    .invites()
                    .list(redkeep::InviteFilter::All, usize::MAX)
                    .unwrap()
                    .len();
                assert!(n == 0 || n == 3, "{n} of 3 invites stored");
                n == 3
            },
        ),
        (
            "grant a role",
            |rk| rk.roles().grant(1, "editor", None).map(|_| ()),
            |rk| rk.roles().has_permission(1, "docs.edit").unwrap(),
        ),
        (
            "delete a user",
            |rk| rk.users().delete(1).map(|_| ()),
            |rk| rk.users().get(1).unwrap().is_none(),
        ),
    ]
}

#[test]
fn every_injected_io_failure_is_a_clean_error_and_loses_nothing_committed() {
    let base = TestDir::new();
    template(base.path());
    let before = export(&Redkeep::open(base.path(), options(None)).unwrap());
    let mut runs = 0;
    let mut failures = 0;
    let mut repaired = 0;
    for (name, op, applied) in operations() {
        for kind in [
            FaultKind::Write,
            FaultKind::Sync,
            FaultKind::SetLen,
            FaultKind::Read,
        ] {
            for nth in 1u64.. {
                assert!(nth < 10_000, "{name}: {kind:?} calls never end");
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().join("data");
                common::copy_tree(base.path(), &dir);
                let plan = FaultPlan::new(kind, nth);
                runs += 1;
                let outcome =
                    Redkeep::open(&dir, options(Some(plan.clone()))).and_then(|rk| op(&rk));
                if outcome.is_err() {
                    failures += 1;
                }
                let rk = Redkeep::open(&dir, options(None))
                    .unwrap_or_else(|e| panic!("{name}, {kind:?} #{nth}: reopening: {e}"));
                let report = rk.check(false).unwrap();
                if !report.ok {
                    // A deletion whose commit reached the disk although its sync failed
                    // leaves the folder behind, as a crash there would: the records are
                    // whole, and a repair moves the folder to the trash.
                    assert!(
                        report.problems.iter().all(|p| p.contains("(orphan)")),
                        "{name}, {kind:?} #{nth}: {:?}",
                        report.problems
                    );
                    assert!(rk.check(true).unwrap().ok);
                    repaired += 1;
                }
                match &outcome {
                    Ok(()) => assert!(
                        applied(&rk),
                        "{name}, {kind:?} #{nth}: acknowledged but lost"
                    ),
                    // A failure after the commit reached the disk may leave it applied;
                    // anything else must be exactly the state before.
                    Err(e) => {
                        assert!(
                            applied(&rk) || export(&rk) == before,
                            "{name}, {kind:?} #{nth}: a failed operation left a partial change"
                        );
                        // Stored although it failed: the error says it may have been, so a
                        // retry looks first.
                        if applied(&rk) {
                            let text = e.to_string();
                            assert!(
                                text.contains("may have been stored")
                                    || text.contains("was deleted"),
                                "{name}, {kind:?} #{nth}: {text}"
                            );
                        }
                    }
                }
                if !plan.fired() {
                    break;
                }
            }
        }
    }
    println!(
        "{runs} runs, {failures} clean failures, {repaired} orphan folders repaired, 0 divergent"
    );
    assert!(failures > 0, "no failure was ever injected");
}

#[test]
fn a_handle_works_again_after_an_io_failure() {
    for kind in [FaultKind::Write, FaultKind::Sync, FaultKind::SetLen] {
        let t = TestDir::new();
        template(t.path());
        // Find a call that fails inside a write (a set_len fails as an insert grows the file,
        // before the commit), then go on with the same handle. Which writes grow or shrink
        // the file depends on the pages free (many in a row may need neither), so a handle
        // makes writes until its plan fires; the next handle fails the call after it.
        let mut seen_failure = false;
        let mut nth = 1u64;
        let mut tried = 0u32;
        'handles: for _ in 0..200 {
            let plan = FaultPlan::new(kind, nth);
            let rk = match Redkeep::open(t.path(), options(Some(plan.clone()))) {
                Ok(rk) => rk,
                Err(_) => {
                    nth += 1;
                    continue;
                }
            };
            for _ in 0..64 {
                tried += 1;
                let first = rk.users().create(NewUser {
                    email: format!("try{tried}@example.com"),
                    password: Some(PW.into()),
                    ..NewUser::default()
                });
                if first.is_err() && plan.fired() {
                    seen_failure = true;
                    let again = rk.users().create(NewUser {
                        email: format!("again{nth}@example.com"),
                        password: Some(PW.into()),
                        ..NewUser::default()
                    });
                    assert!(
                        again.is_ok(),
                        "{kind:?} #{nth}: the handle stayed unusable: {again:?}"
                    );
                    assert!(rk.check(false).unwrap().ok);
                    break 'handles;
                }
                assert!(
                    plan.fired() || first.is_ok(),
                    "{kind:?}: a write failed with no failure injected: {first:?}"
                );
                if plan.fired() {
                    // The commit got through the failure: fail a later call.
                    nth += 1;
                    continue 'handles;
                }
            }
        }
        assert!(
            seen_failure,
            "{kind:?}: no failure inside a write was found"
        );
    }
}

/// Creating a user (its password, role grant, personal org and membership, audit rows) costs
/// the database the syncs of one durable commit, as many as a commit of a single role: the
/// records share one commit (a second durable commit would double the syncs), and no
/// workspace file is written or synced then. The folder is made, durably, at the user's first
/// workspace write, with syncs of its own and none through the database.
#[test]
fn creating_a_user_costs_the_database_the_syncs_of_one_commit() {
    let t = TestDir::new();
    template(t.path());
    let plan = FaultPlan::new(FaultKind::Sync, u64::MAX);
    let rk = Redkeep::open(t.path(), options(Some(plan.clone()))).unwrap();
    let syncs = |op: &dyn Fn()| {
        let before = plan.calls();
        op();
        plan.calls() - before
    };
    let role = |name: &str| {
        rk.roles()
            .create(RoleSpec {
                name: name.into(),
                description: String::new(),
                permissions: vec!["docs.read".into()],
                priority: 2,
            })
            .unwrap();
    };
    // The first commit after opening also clears the file's recovery flag (a sync of its
    // own); the ones after it are what an operation costs.
    role("viewer");
    // A commit that grows the file syncs once more (redb starts a file small and grows it
    // as it is written); the first user does, so it is created before the measurement.
    rk.users()
        .create(NewUser {
            email: "first@example.com".into(),
            password: Some(PW.into()),
            ..NewUser::default()
        })
        .unwrap();
    let one_record = syncs(&|| role("reader"));
    assert!(one_record >= 1, "a commit made no sync");
    let folder_syncs = FaultPlan::new(FaultKind::FileSync, u64::MAX);
    let _armed = folder_syncs.arm_files();
    let before = plan.calls();
    let id = rk
        .users()
        .create(NewUser {
            email: "carol@example.com".into(),
            password: Some(PW.into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id;
    let user = plan.calls() - before;
    assert_eq!(
        user, one_record,
        "creating a user synced the database {user} times; one commit syncs it {one_record}"
    );
    assert_eq!(
        folder_syncs.calls(),
        0,
        "creating a user synced workspace files"
    );
    assert!(!rk.workspaces().exists(id));
    let first_write = syncs(&|| {
        rk.workspaces()
            .update(id, |doc| {
                doc.notes = serde_json::json!(["first"]);
                Ok(())
            })
            .unwrap();
    });
    assert!(rk.workspaces().exists(id));
    assert_eq!(first_write, 0, "a workspace write synced the database");
    assert!(
        folder_syncs.calls() >= 3,
        "the new folder, its owner marker and workspace.json were not all made durable ({} syncs)",
        folder_syncs.calls()
    );
}

/// An I/O error in a migration step (its commit's write or sync fails) is not a refusal:
/// what reached the disk is unknown, so the copy taken before the run is kept, whole and at
/// the version the run began at, for the operator to go back to.
#[test]
fn an_io_error_in_a_migration_step_keeps_the_copy_taken_before_it() {
    use redkeep::store::{Migration, StoreOptions, WriteTx};
    use redkeep::{Error, Store, Timestamp};
    fn up(tx: &WriteTx<'_>, _: Timestamp) -> redkeep::Result<()> {
        tx.set_meta("migrated", &[7; 64 * 1024])
    }
    let steps = [Migration {
        version: 2,
        name: "fill",
        up,
        down: None,
    }];
    let mut failed = 0;
    for kind in [FaultKind::Write, FaultKind::Sync] {
        for nth in 1u64.. {
            assert!(nth < 1_000, "{kind:?} calls never end");
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("s.redb");
            let at_one = StoreOptions {
                schema_version: 1,
                ..StoreOptions::default()
            };
            drop(Store::open(&path, &at_one).unwrap());
            let plan = FaultPlan::new(kind, nth);
            let faulty = StoreOptions {
                faults: Some(plan.clone()),
                ..at_one.clone()
            };
            let copy = tmp.path().join("s.redb.pre-v1.bak");
            // A failure while opening the file comes before any copy is taken.
            let Ok(store) = Store::open(&path, &faulty) else {
                continue;
            };
            let outcome = store.migrate(&steps, Timestamp(1));
            if !plan.fired() {
                outcome.unwrap();
                break;
            }
            match outcome {
                Err(e) => {
                    assert!(matches!(e, Error::Storage { .. }), "{kind:?} #{nth}: {e}");
                    failed += 1;
                    let existing = StoreOptions {
                        create: false,
                        ..at_one.clone()
                    };
                    let kept = Store::open(&copy, &existing)
                        .unwrap_or_else(|e| panic!("{kind:?} #{nth}: the copy: {e}"));
                    assert_eq!(kept.schema_version().unwrap(), Some(1), "{kind:?} #{nth}");
                }
                // A failure the engine got past (a write retried, a sync of the copy's
                // pages) still leaves the copy of a run that applied a step.
                Ok(run) => assert_eq!(run.backup.as_deref(), Some(copy.as_path())),
            }
        }
    }
    assert!(failed > 0, "no step ever failed on an I/O error");
}

/// What redb 4 writes into a new file before its first sync: the file's first size in
/// zeros under a header whose magic number is still zero (two empty commit records).
/// An `init` killed or failing at that sync leaves exactly this.
fn header_before_first_sync() -> Vec<u8> {
    let mut bytes = vec![0u8; 73_728];
    bytes[9] = 0x04;
    bytes[13] = 0x10;
    bytes[22] = 0x10;
    bytes[28] = 0x11;
    let checksum = [
        0x1a, 0x6a, 0xb5, 0xef, 0x61, 0xd1, 0x80, 0x8d, 0x07, 0x2c, 0x03, 0x93, 0x86, 0xfb, 0xbc,
        0x3f,
    ];
    for slot in [64, 192] {
        bytes[slot] = 0x03;
        bytes[slot + 112..slot + 128].copy_from_slice(&checksum);
    }
    bytes
}

/// The store files an interrupted `init` leaves: made but never grown (killed at once),
/// grown in zeros (killed at, or failing, its first write), and given its header without
/// the magic number (killed at, or failing, its first sync).
fn leftovers_of_an_interrupted_init() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("0 bytes", Vec::new()),
        ("every byte is zero", vec![0; 73_728]),
        ("only the header", header_before_first_sync()),
    ]
}

#[test]
fn a_new_store_whose_first_write_or_sync_fails_is_taken_away_so_a_retry_works() {
    for kind in [FaultKind::Write, FaultKind::Sync, FaultKind::SetLen] {
        let dir = TestDir::new();
        let plan = FaultPlan::new(kind, 1);
        let err = Redkeep::open(dir.path(), options(Some(plan.clone()))).unwrap_err();
        assert!(plan.fired(), "{kind:?}");
        assert!(
            err.to_string().contains("injected failure"),
            "{kind:?}: {err}"
        );
        let db = dir.path().join(redkeep::STORE_FILE);
        assert!(!db.exists(), "{kind:?}: the file made stays behind");
        let rk = Redkeep::open_to_init(dir.path(), options(None)).unwrap();
        let outcome = rk.init(redkeep::InitSpec::default()).unwrap();
        assert!(outcome.created && !outcome.replaced_unwritten, "{kind:?}");
    }
}

#[test]
fn init_replaces_a_store_file_that_holds_nothing_and_other_opens_point_to_init() {
    for (what, bytes) in leftovers_of_an_interrupted_init() {
        let dir = TestDir::new();
        let db = dir.path().join(redkeep::STORE_FILE);
        std::fs::write(&db, &bytes).unwrap();
        for read_only in [false, true] {
            let err = Redkeep::open(dir.path(), options(None).read_only(read_only)).unwrap_err();
            assert!(
                matches!(err, redkeep::Error::Unwritten { .. }),
                "{what}: {err}"
            );
            assert!(err.to_string().contains("run `redkeep init`"), "{err}");
        }
        // Left as it was: an ordinary open never takes it for a new store.
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "{what}");
        let rk = Redkeep::open_to_init(dir.path(), options(None)).unwrap();
        let outcome = rk.init(redkeep::InitSpec::default()).unwrap();
        assert!(outcome.created && outcome.replaced_unwritten, "{what}");
        drop(rk);
        let rk = Redkeep::open(dir.path(), options(None)).unwrap();
        assert!(rk.is_initialized().unwrap(), "{what}");
    }
}

#[test]
fn init_keeps_a_store_file_that_may_hold_something_or_whose_data_dir_held_a_store() {
    // One byte past the header that is not zero: a page may hold a record.
    let mut past_header = vec![0u8; 73_728];
    past_header[5000] = 1;
    // A header without its magic number whose commit record names a tree.
    let mut names_a_tree = header_before_first_sync();
    names_a_tree[65] = 1;
    for (what, bytes) in [
        ("a byte past the header", past_header),
        ("a tree", names_a_tree),
    ] {
        let dir = TestDir::new();
        let db = dir.path().join(redkeep::STORE_FILE);
        std::fs::write(&db, &bytes).unwrap();
        let err = Redkeep::open_to_init(dir.path(), options(None)).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, redkeep::Error::Damaged { .. }),
            "{what}: {text}"
        );
        assert!(
            text.contains("it may be the leftover of an interrupted `redkeep init`: if this data dir never held a store, delete"),
            "{what}: {text}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "{what}");
    }
    // Users' folders say the data dir held a store: one that holds nothing was lost.
    let dir = TestDir::new();
    let db = dir.path().join(redkeep::STORE_FILE);
    std::fs::create_dir_all(dir.path().join("workspaces/users/1")).unwrap();
    std::fs::write(&db, vec![0u8; 73_728]).unwrap();
    let err = Redkeep::open_to_init(dir.path(), options(None)).unwrap_err();
    assert!(matches!(err, redkeep::Error::Damaged { .. }), "{err}");
    assert!(
        err.to_string().contains("the store it held was lost"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), vec![0u8; 73_728]);
}

#[cfg(feature = "cli")]
#[test]
fn cli_init_after_a_failed_first_write_works() {
    let cli = common::Cli::new();
    let plan = FaultPlan::new(FaultKind::Write, 1);
    let mut o = cli.options();
    o.faults = Some(plan.clone());
    assert!(Redkeep::open(cli.data(), o).is_err() && plan.fired());
    let (out, _) = cli.expect(&["init", "--no-admin"], None, 0);
    assert!(
        out.contains("initialised") && !out.contains("replaced"),
        "{out}"
    );
}

#[cfg(feature = "cli")]
#[test]
fn cli_init_replaces_what_an_interrupted_init_left_and_other_commands_point_to_init() {
    for (what, bytes) in leftovers_of_an_interrupted_init() {
        let cli = common::Cli::new();
        std::fs::create_dir_all(cli.data()).unwrap();
        let db = cli.data().join(redkeep::STORE_FILE);
        std::fs::write(&db, &bytes).unwrap();
        for args in [
            &["check"][..],
            &["check", "--repair"],
            &["status"],
            &["reset", "--force"],
            &["user", "list"],
        ] {
            let (_, err) = cli.expect(args, None, 1);
            assert!(
                err.contains("holds nothing") && err.contains("run `redkeep init`"),
                "{what}, {args:?}: {err}"
            );
            assert!(!err.contains("is damaged"), "{what}, {args:?}: {err}");
        }
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "{what}");
        let (out, _) = cli.expect(&["init", "--no-admin"], None, 0);
        assert!(
            out.contains("replaced an empty store file left by an interrupted init"),
            "{what}: {out}"
        );
        cli.expect(&["user", "list"], None, 0);
    }
}

/// A login with the right password whose commit fails at the disk leaves no failed attempt
/// counted: the attempt is counted before the hash (so that guesses in flight together
/// cannot pass the threshold) and cleared by the login's commit, and when that commit
/// failed, the count stayed. Ten such logins locked the account, with no failed login in
/// the audit log.
#[test]
fn a_right_password_whose_login_fails_at_the_disk_counts_no_failure() {
    let base = TestDir::new();
    {
        let rk = Redkeep::open(base.path(), options(None)).unwrap();
        rk.users()
            .create(NewUser {
                email: "ann@example.com".into(),
                password: Some(PW.into()),
                ..NewUser::default()
            })
            .unwrap();
    }
    let mut failed = 0;
    // Both modes: in Shared mode (the CLI's) every commit reaches the disk, the count
    // before the hash included.
    for (mode, kind) in [
        (redkeep::Mode::Exclusive, FaultKind::Write),
        (redkeep::Mode::Exclusive, FaultKind::Sync),
        (redkeep::Mode::Shared, FaultKind::Write),
        (redkeep::Mode::Shared, FaultKind::Sync),
    ] {
        for nth in 1u64.. {
            assert!(nth < 10_000, "{kind:?} calls never end");
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("data");
            common::copy_tree(base.path(), &dir);
            let plan = FaultPlan::new(kind, nth);
            let outcome =
                Redkeep::open(&dir, options(Some(plan.clone())).mode(mode)).and_then(|rk| {
                    rk.sessions()
                        .login(
                            "ann@example.com",
                            PW,
                            redkeep::auth::sessions::LoginMeta::default(),
                        )
                        .map(|_| ())
                });
            let rk = Redkeep::open(&dir, options(None)).unwrap();
            if outcome.is_err() {
                failed += 1;
                let l = rk.users().lockout(1).unwrap();
                assert_eq!(
                    (l.failed_logins, l.failures_in_window),
                    (0, 0),
                    "{mode:?} {kind:?} #{nth}: {outcome:?}"
                );
            }
            if !plan.fired() {
                break;
            }
        }
    }
    assert!(failed > 0, "no failure was ever injected");
}

/// An import the store fails under part way (a lost connection to the PostgreSQL server, a
/// store file that cannot grow) says so, as the store's error, not as a bad line of the
/// input nor as a bug: nothing was imported, the store is as it was, and the same import
/// runs again.
#[test]
fn an_import_the_store_fails_under_part_way_imports_nothing_and_runs_again() {
    let src = TestDir::new();
    let rk = src.open();
    for i in 0..150 {
        rk.users()
            .create(NewUser {
                email: format!("u{i}@example.com"),
                password: Some(PW.into()),
                ..NewUser::default()
            })
            .unwrap();
    }
    let exported = export(&rk);
    drop(rk);
    let on_server = common::pg::engine_is_postgres();
    // (A small cache has redb read pages from the file inside the import's transaction.)
    let kind = if on_server {
        FaultKind::Statement
    } else {
        FaultKind::Read
    };
    let import = |t: &TestDir, plan: Option<Arc<FaultPlan>>| {
        let mut o = t.options();
        o.faults = plan;
        o.cache_bytes = Some(64 * 1024);
        let rk = Redkeep::open(t.path(), o).unwrap();
        redkeep::ops::import(&rk, &mut exported.as_bytes(), &|_| {}).map(|_| ())
    };
    // How many such calls a whole import makes; the failure comes half way through.
    let counting = FaultPlan::new(kind, u64::MAX);
    import(&TestDir::new(), Some(counting.clone())).unwrap();
    let calls = counting.calls();
    assert!(calls >= 4, "{kind:?}: an import makes only {calls} calls");
    // Calls in a row: one of them fails a later step of a record's write (an index entry
    // after the record), whose earlier steps are then taken back on a dead connection.
    for nth in calls / 2..calls / 2 + 3 {
        let t = TestDir::new();
        let before = export(&t.open());
        let plan = FaultPlan::new(kind, nth);
        let e = import(&t, Some(plan.clone())).unwrap_err();
        assert!(plan.fired(), "{e}");
        let said = e.full_message();
        assert!(
            matches!(e, redkeep::Error::Storage { .. }),
            "#{nth}: {said}"
        );
        for part in [
            "nothing was imported",
            "the store is as it was",
            "run the same import again",
        ] {
            assert!(said.contains(part), "#{nth}: {part:?} is not in: {said}");
        }
        for wrong in [
            "invalid",
            "line ",
            "internal error",
            "please report",
            "closure",
        ] {
            assert!(!said.contains(wrong), "#{nth}: {wrong:?} is in: {said}");
        }
        if on_server {
            assert!(
                said.contains("the connection to the PostgreSQL server was lost"),
                "#{nth}: {said}"
            );
        }
        assert_eq!(export(&t.open()), before, "#{nth}: the store changed");
        import(&t, None).unwrap();
        assert_eq!(t.open().users().count().unwrap(), 150);
    }
}
