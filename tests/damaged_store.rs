//! A damaged store never crashes the process: 200 copies of a store, each with seeded random
//! byte flips or a truncation, go through check, list, create, repair and salvage. Nothing
//! panics; every copy whose data changed is reported by `check`; salvage always produces a
//! store that passes `check`.

mod common;

use std::path::Path;

use redkeep::auth::orgs::OrgSpec;
use redkeep::{InviteSpec, NewUser, Options, PasswordParams, Redkeep, Timestamp, UserFilter};

fn options() -> Options {
    common::quiet_engine_panics();
    Options::default()
        .password(PasswordParams::INSECURE_FAST)
        .create(false)
}

fn build(dir: &Path) {
    let rk = Redkeep::open(dir, options().create(true)).unwrap();
    for i in 0..40 {
        let u = rk
            .users()
            .create(NewUser {
                email: format!("user{i}@example.com"),
                password: Some("correct horse battery".into()),
                ..NewUser::default()
            })
            .unwrap()
            .user;
        if i % 5 == 0 {
            rk.orgs()
                .create(OrgSpec {
                    name: format!("Team {i}"),
                    slug: None,
                    description: "a team".into(),
                    owner: u.id,
                })
                .unwrap();
            rk.workspaces().save_piece(u.id, br#"{"t":1}"#).unwrap();
        }
    }
    for _ in 0..5 {
        rk.invites().create(InviteSpec::default()).unwrap();
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn export(rk: &Redkeep) -> Option<String> {
    let mut out = Vec::new();
    redkeep::ops::export(rk, &mut out, &|_| {}).ok()?;
    String::from_utf8(out).ok()
}

// The 200 copies, in four parts of 50 (the same seeds as one run of 200), so they run on
// every core at once instead of one after another in a single test.
#[test]
fn damaged_copies_0_to_49_are_reported_and_salvaged_without_a_panic() {
    damaged_copies(0..50);
}

#[test]
fn damaged_copies_50_to_99_are_reported_and_salvaged_without_a_panic() {
    damaged_copies(50..100);
}

#[test]
fn damaged_copies_100_to_149_are_reported_and_salvaged_without_a_panic() {
    damaged_copies(100..150);
}

#[test]
fn damaged_copies_150_to_199_are_reported_and_salvaged_without_a_panic() {
    damaged_copies(150..200);
}

/// Damages a copy of one built store for each of `rounds` (seeded by the round's number) and
/// puts it through check, list, create, repair and salvage.
fn damaged_copies(rounds: std::ops::Range<u64>) {
    let base = tempfile::tempdir().unwrap();
    let original = base.path().join("original");
    build(&original);
    let pristine = export(&Redkeep::open(&original, options()).unwrap()).unwrap();
    let bytes = std::fs::read(original.join(redkeep::STORE_FILE)).unwrap();
    let (mut unopenable, mut reported, mut harmless, mut partial, mut nothing) = (0, 0, 0, 0, 0);
    for round in rounds.clone() {
        let mut rng = Rng(0xA076_1D64_78BD_642F ^ (round + 1).wrapping_mul(0xE703_7ED1_A0B4_28DB));
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("copy");
        common::copy_tree(&original, &dir);
        let mut damaged = bytes.clone();
        if round % 4 == 3 {
            damaged.truncate(4096 + rng.below(damaged.len() as u64 - 4096) as usize);
        } else {
            // From one flip to 400: light damage leaves most pages readable, heavy damage few.
            let scale = 1 << rng.below(9);
            let flips = 1 + rng.below(scale).min(399);
            for _ in 0..flips {
                let at = 4096 + rng.below(damaged.len() as u64 - 4096) as usize;
                damaged[at] ^= 1 << rng.below(8);
            }
        }
        let db = dir.join(redkeep::STORE_FILE);
        std::fs::write(&db, &damaged).unwrap();

        match Redkeep::open(&dir, options()) {
            Err(_) => unopenable += 1,
            Ok(rk) => {
                let report = rk.check(false);
                if report.as_ref().is_ok_and(|r| r.ok) {
                    // Nothing was found wrong: then nothing the store holds changed.
                    let mut out = Vec::new();
                    let exported = redkeep::ops::export(&rk, &mut out, &|_| {});
                    assert!(
                        exported.is_ok() && out == pristine.as_bytes(),
                        "round {round}: check found nothing, yet the data changed: {:?}",
                        exported.err()
                    );
                    harmless += 1;
                } else {
                    reported += 1;
                }
                let _ = rk.users().list(UserFilter::All, None, 1000);
                let _ = rk.users().create(NewUser {
                    email: "late@example.com".into(),
                    password: Some("correct horse battery".into()),
                    ..NewUser::default()
                });
                let _ = rk.check(true);
            }
        }
        // The damaged file is never written by salvage.
        let before = std::fs::read(&db).unwrap();
        let to = tmp.path().join("salvaged");
        let salvaged = match redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)) {
            Ok(s) => s,
            Err(e) => {
                // Only a file nothing can be read from is refused, and then nothing is made.
                assert!(
                    e.to_string().contains("cannot be opened at all"),
                    "round {round}: salvage failed: {e}"
                );
                // It names the damaged store, not salvage's working copy, and does not
                // advise the salvage that just failed.
                assert!(
                    !e.to_string().contains("salvage --to")
                        && e.to_string().matches("redkeep.redb").count() == 1,
                    "round {round}: {e}"
                );
                assert!(!to.exists(), "round {round}: a refused salvage left {to:?}");
                assert_eq!(std::fs::read(&db).unwrap(), before, "round {round}");
                assert!(
                    Redkeep::open(&dir, options()).is_err(),
                    "round {round}: salvage refused a store that opens"
                );
                nothing += 1;
                continue;
            }
        };
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "round {round}: salvage wrote the source"
        );
        let rk = Redkeep::open(&to, options()).unwrap();
        // A copy left without any account says so; any other problem is a failure.
        let accountless = rk.users().count().unwrap() == 0;
        assert!(
            salvaged
                .problems
                .iter()
                .all(|p| accountless && p.starts_with("no account could be salvaged")),
            "round {round}: the salvaged copy fails check: {:?}",
            salvaged.problems
        );
        assert!(rk.check(false).unwrap().ok, "round {round}");
        if rk.users().count().unwrap() < 40 {
            partial += 1;
        }
    }
    println!(
        "copies {rounds:?}: {unopenable} refused to open, {reported} reported by check, {harmless} unharmed, {partial} salvaged with losses, {nothing} with nothing to salvage"
    );
}

/// A store that cannot be opened is what a restore is for: the backup replaces it, its bytes
/// are kept as they were, and no undo is offered (nothing could go back to it). A running
/// process that owns it keeps it.
#[test]
fn a_restore_replaces_a_store_that_cannot_be_opened_and_keeps_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    build(&dir);
    let backup = tmp.path().join("b.tar");
    let users = {
        let rk = Redkeep::open(&dir, options()).unwrap();
        assert!(redkeep::ops::backup(&rk, &backup).unwrap().check.ok);
        rk.users().count().unwrap()
    };
    let db = dir.join(redkeep::STORE_FILE);
    for damaged in [&b""[..], &b"not a store, just some bytes"[..]] {
        std::fs::write(&db, damaged).unwrap();
        assert!(Redkeep::open(&dir, options()).is_err());
        // Owned by another running process, by its marker: left alone.
        let owner = common::Reaped(
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap(),
        );
        let marker = redkeep::store::owner_path(&db);
        std::fs::write(&marker, format!("{{\"pid\":{},\"since\":0}}", owner.0.id())).unwrap();
        let owned = redkeep::ops::restore(&dir, &backup, true, Timestamp(1_800_000_000));
        drop(owner);
        assert!(
            matches!(&owned, Err(redkeep::Error::InUse { holder, .. }) if holder.contains("delete the marker")),
            "{owned:?}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), damaged);
        // A marker left by a process that is gone, or naming this one, is no owner.
        std::fs::write(
            &marker,
            format!("{{\"pid\":{},\"since\":0}}", std::process::id()),
        )
        .unwrap();
        // A folder of a user past the backup's ids: new users go past it.
        let stray = dir.join("workspaces/users/9000");
        std::fs::create_dir_all(&stray).unwrap();
        let report = redkeep::ops::restore(&dir, &backup, true, Timestamp(1_800_000_000)).unwrap();
        assert!(report.previous_damaged.is_some(), "{report:?}");
        let kept = report.safety_copy.unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), damaged);
        let rk = Redkeep::open(&dir, options()).unwrap();
        assert_eq!(rk.users().count().unwrap(), users);
        let next = rk
            .users()
            .create(NewUser {
                email: format!("new{}@example.com", damaged.len()),
                ..NewUser::default()
            })
            .unwrap()
            .user;
        assert!(next.id > 9000, "{}", next.id);
        drop(rk);
        let _ = std::fs::remove_dir_all(&stray);
        let _ = std::fs::remove_file(&marker);
    }
}

/// A salvage whose copy holds no account, of a store that had some (user records read but
/// none usable, their folders left as orphans), does not call itself clean: it names the
/// loss and points at a backup.
#[test]
fn a_salvage_that_saves_no_account_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options().create(true)).unwrap();
    let u = rk
        .users()
        .create(NewUser {
            email: "a@example.com".into(),
            ..NewUser::default()
        })
        .unwrap()
        .user;
    rk.workspaces()
        .update(u.id, |d| d.add_note("mine"))
        .unwrap();
    drop(rk);
    // The only user record holds bytes that are no user.
    common::plant_entry(
        None,
        &dir,
        "r:users",
        &u.id.to_be_bytes(),
        b"\x01not a user",
    );
    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert_eq!(report.tables["users"].read, 1);
    assert!(
        report.problems.len() == 1
            && report.problems[0].starts_with("no account could be salvaged")
            && report.problems[0].contains("restore a backup"),
        "{:?}",
        report.problems
    );
    // An empty store salvages clean: nothing was lost.
    let empty = tmp.path().join("empty");
    drop(Redkeep::open(&empty, options().create(true)).unwrap());
    let report = redkeep::ops::salvage(
        &empty,
        &tmp.path().join("empty-salvaged"),
        options(),
        Timestamp(1_800_000_000),
    )
    .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn raw_value(dir: &Path, table: &str, key: &[u8]) -> Option<Vec<u8>> {
    use redb::ReadableDatabase;
    let db = redb::Database::open(dir.join(redkeep::STORE_FILE)).unwrap();
    let tx = db.begin_read().unwrap();
    let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(table);
    let t = tx.open_table(def).ok()?;
    t.get(key).unwrap().map(|v| v.value().to_vec())
}

/// A damaged byte that makes the recorded schema version read older than the records are
/// does not turn salvage into a migration of today's records (which would set every one of
/// them aside): the version the user records show is taken, and said.
#[test]
fn salvage_takes_the_schema_version_the_records_show_over_a_damaged_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    build(&dir);
    common::plant_entry(None, &dir, "meta", b"schema_version", &2u64.to_be_bytes());
    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert!(
        report
            .changes
            .iter()
            .any(|c| c
                == "the schema version read 2, but the records are those of version 3; set to 3"),
        "{:#?}",
        report.changes
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let rk = Redkeep::open(&to, options()).unwrap();
    assert_eq!(rk.users().count().unwrap(), 40);
    assert_eq!(
        rk.store().schema_version().unwrap(),
        Some(redkeep::SCHEMA_VERSION)
    );
    assert!(rk.check(false).unwrap().ok);
}

/// Salvaging a store of an older schema migrates the copy; a record the migration cannot
/// read as its version wrote it (here a user in today's format among format-1 ones) is set
/// aside, its bytes kept, and the rest migrates.
#[test]
fn salvage_of_an_old_store_sets_aside_what_its_migration_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    common::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v2-full"),
        &dir,
    );
    // A user record of today's format with the key of the fixture's user 4.
    let today = tmp.path().join("today");
    let rk = Redkeep::open(&today, options().create(true)).unwrap();
    for i in 1..=4 {
        rk.users()
            .create(NewUser {
                email: format!("today{i}@example.com"),
                ..NewUser::default()
            })
            .unwrap();
    }
    drop(rk);
    let key = 4u64.to_be_bytes();
    let value = raw_value(&today, "r:users", &key).unwrap();
    common::plant_entry(None, &dir, "r:users", &key, &value);

    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert!(
        report.changes.iter().any(|c| c.starts_with(
            "fixed: record 4 of table users is corrupt: expected a record of the first \
             release's format"
        )),
        "{:#?}",
        report.changes
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let rk = Redkeep::open(&to, options()).unwrap();
    assert_eq!(
        rk.store().schema_version().unwrap(),
        Some(redkeep::SCHEMA_VERSION)
    );
    let emails: Vec<String> = rk
        .users()
        .list(UserFilter::All, None, 10)
        .unwrap()
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(
        emails,
        ["admin@example.com", "Ann@Example.com", "bob@example.com"]
    );
    assert!(rk.check(false).unwrap().ok);
    drop(rk);
    assert_eq!(
        raw_value(&to, "r:quarantine:users", &key).as_deref(),
        Some(&value[..])
    );
}

fn remove_entry(dir: &Path, table: &str, key: &[u8]) {
    let db = redb::Database::open(dir.join(redkeep::STORE_FILE)).unwrap();
    let tx = db.begin_write().unwrap();
    let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(table);
    assert!(tx.open_table(def).unwrap().remove(key).unwrap().is_some());
    tx.commit().unwrap();
}

/// An intact store of an older schema salvages as `migrate up` upgrades it: nothing is set
/// aside (an agent session's key of that version used to be, read as today's).
#[test]
fn salvage_of_an_intact_old_store_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    common::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v2-full"),
        &dir,
    );
    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert!(
        report.changes.iter().all(|c| !c.contains("quarantine")),
        "{:#?}",
        report.changes
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let rk = Redkeep::open(&to, options()).unwrap();
    assert_eq!(rk.users().count().unwrap(), 4);
    assert!(rk.agents().get("agent-run-1").unwrap().is_some());
    assert!(rk.check(false).unwrap().ok);
}

/// A version-1 store whose recorded schema version cannot be read is migrated from the
/// version its records show (1: users in the old format, no organization), so its users get
/// the roles and organization version 2 gives them.
#[test]
fn salvage_of_an_old_store_without_its_version_migrates_from_what_the_records_show() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1-with-users/redkeep.redb"),
        dir.join(redkeep::STORE_FILE),
    )
    .unwrap();
    remove_entry(&dir, "meta", b"schema_version");
    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert!(
        report
            .changes
            .iter()
            .any(|c| c == "the schema version could not be read; set to 1, as the records show"),
        "{:#?}",
        report.changes
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let rk = Redkeep::open(&to, options()).unwrap();
    assert_eq!(rk.users().count().unwrap(), 3);
    let admin = rk.users().find("admin@example.com").unwrap().id;
    assert!(rk.roles().has_permission(admin, "users.manage").unwrap());
    assert_eq!(
        rk.orgs().list(None, 10).unwrap().len(),
        1,
        "the default workspace"
    );
}

/// A salvage builds its copy beside the target and renames it into place when whole: none
/// is left over after one, and the folder a salvage cut short (killed) would leave is named
/// and refused, rather than a half copy passing for a whole one.
#[test]
fn a_salvage_builds_its_copy_aside_and_refuses_a_leftover_of_one_cut_short() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    build(&dir);
    let to = tmp.path().join("saved");
    let leftover = tmp.path().join("saved.incomplete-salvage");
    std::fs::create_dir(&leftover).unwrap();
    let err = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("saved.incomplete-salvage is there: a salvage into")
            && err.contains("was cut short, or runs now; once none runs, remove it"),
        "{err}"
    );
    assert!(!to.exists());
    std::fs::remove_dir(&leftover).unwrap();
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert_eq!(report.to, to);
    assert!(!leftover.exists());
    assert_eq!(
        Redkeep::open(&to, options())
            .unwrap()
            .users()
            .count()
            .unwrap(),
        40
    );
}

/// A recorded schema version no redkeep writes (a damaged high byte) is not taken for a
/// newer store's: the records tell the version. A folder that exists already (a mount
/// point) is filled in place, not replaced.
#[test]
fn salvage_takes_an_absurd_schema_version_for_damage_and_fills_an_existing_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    build(&dir);
    common::plant_entry(
        None,
        &dir,
        "meta",
        b"schema_version",
        &(1u64 << 40 | 3).to_be_bytes(),
    );
    let to = tmp.path().join("mounted");
    std::fs::create_dir(&to).unwrap();
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert!(
        report.changes.iter().any(|c| c
            == &format!(
                "the schema version read {}, which no redkeep writes (a damaged byte); set to 3, \
                 as the records show",
                1u64 << 40 | 3
            )),
        "{:#?}",
        report.changes
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(!tmp.path().join("mounted.incomplete-salvage").exists());
    assert_eq!(
        Redkeep::open(&to, options())
            .unwrap()
            .users()
            .count()
            .unwrap(),
        40
    );
}

/// One or two damaged bits in the file's header (its magic number, its geometry, or a
/// commit record) keep redb from opening a store whose pages are all intact. Salvage reads
/// it through a mended header, at the latest commit: a commit record's checksum tells which
/// bits flipped. A damaged record's format byte reads as damage, not as a file of an older
/// format.
#[test]
fn salvage_reads_past_a_damaged_header_at_the_latest_commit() {
    let base = tempfile::tempdir().unwrap();
    let original = base.path().join("original");
    build(&original);
    {
        // The last commit: one user more.
        let rk = Redkeep::open(&original, options()).unwrap();
        rk.users()
            .create(NewUser {
                email: "last@example.com".into(),
                ..NewUser::default()
            })
            .unwrap();
    }
    let bytes = std::fs::read(original.join(redkeep::STORE_FILE)).unwrap();
    let primary = 64 + 128 * usize::from(bytes[9] & 1);
    let secondary = 64 + 128 * usize::from(bytes[9] & 1 == 0);
    // The magic number, page size, region geometry; each part of the latest commit record
    // (format, root flags, user root, system root, transaction id, checksum), two bits of
    // its user root at once; the other record's format byte.
    let mut flips = vec![vec![(2, 0)], vec![(13, 0)], vec![(16, 3)], vec![(22, 1)]];
    flips.extend((0..128).step_by(4).map(|i| vec![(primary + i, i % 8)]));
    flips.push(vec![(primary + 9, 1), (primary + 30, 6)]);
    flips.push(vec![(secondary, 0)]);
    let mut mended = 0;
    let cases = flips.len();
    for flip in flips {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("copy");
        common::copy_tree(&original, &dir);
        let db = dir.join(redkeep::STORE_FILE);
        let mut damaged = bytes.clone();
        for &(at, bit) in &flip {
            damaged[at] ^= 1 << bit;
        }
        std::fs::write(&db, &damaged).unwrap();
        let to = tmp.path().join("salvaged");
        let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000))
            .unwrap_or_else(|e| panic!("{flip:?}: {e}"));
        assert_eq!(
            std::fs::read(&db).unwrap(),
            damaged,
            "{flip:?}: source written"
        );
        assert!(
            report.problems.is_empty(),
            "{flip:?}: {:?}",
            report.problems
        );
        let rk = Redkeep::open(&to, options()).unwrap();
        assert!(rk.check(false).unwrap().ok, "{flip:?}");
        // Nothing lost: every user, the last one too.
        assert!(
            rk.users().by_email("last@example.com").unwrap().is_some()
                && rk.users().count().unwrap() == 41,
            "{flip:?}: {:?}",
            report.changes
        );
        // Read through a mended header, and it says so.
        let said = report.changes.iter().find(|c| c.contains("mended header"));
        assert!(
            said.is_some_and(
                |s| s.contains("at its latest commit") && s.contains("every page of it checked")
            ),
            "{flip:?}: {said:?}"
        );
        mended += 1;
    }
    assert_eq!(mended, cases);

    // A damaged format byte reads as damage, not as a file of an older format.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("copy");
    common::copy_tree(&original, &dir);
    let mut damaged = bytes.clone();
    damaged[primary] ^= 1;
    std::fs::write(dir.join(redkeep::STORE_FILE), &damaged).unwrap();
    let e = Redkeep::open(&dir, options()).err().unwrap().to_string();
    assert!(
        e.contains("a commit record in its header is damaged") && !e.contains("upgrade"),
        "{e}"
    );

    // A damaged geometry is refused by every open, one only to read too: read at the wrong
    // places, the store read as empty and sound.
    let mut damaged = bytes.clone();
    damaged[16] ^= 8;
    std::fs::write(dir.join(redkeep::STORE_FILE), &damaged).unwrap();
    for read_only in [true, false] {
        let e = Redkeep::open(&dir, options().read_only(read_only))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("its header's page geometry is damaged"), "{e}");
    }
    // A file shorter than a header says so; one shorter than its header says (closed
    // cleanly), opened only to read, too: it would read as far as it goes.
    std::fs::write(dir.join(redkeep::STORE_FILE), &bytes[..100]).unwrap();
    let e = Redkeep::open(&dir, options()).err().unwrap().to_string();
    assert!(e.contains("the file is cut short (100 bytes"), "{e}");
    std::fs::write(dir.join(redkeep::STORE_FILE), &bytes[..bytes.len() - 4096]).unwrap();
    let e = Redkeep::open(&dir, options().read_only(true))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("shorter than the"), "{e}");

    // The latest record past mending (three bits of its user root, or wiped out): what
    // salvage reads is the commit before, and it says so. Every user it keeps is one of
    // the store's.
    let emails: Vec<String> = {
        let rk = Redkeep::open(&original, options().read_only(true)).unwrap();
        let users = rk.users().list(UserFilter::All, None, 100).unwrap();
        users.into_iter().map(|u| u.email).collect()
    };
    for (n, wipe) in [(0, false), (1, true)] {
        let mut damaged = bytes.clone();
        if wipe {
            damaged[primary..primary + 128].fill(0);
        } else {
            for at in [9, 10, 11] {
                damaged[primary + at] ^= 1;
            }
        }
        std::fs::write(dir.join(redkeep::STORE_FILE), &damaged).unwrap();
        let to = tmp.path().join(format!("salvaged{n}"));
        let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
        let said = report.changes.iter().find(|c| c.contains("mended header"));
        assert!(
            said.is_some_and(|s| s.contains("at the commit before its latest one")
                && s.contains("is not in the copy")),
            "{said:?}"
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let rk = Redkeep::open(&to, options()).unwrap();
        assert!(rk.check(false).unwrap().ok);
        let kept = rk.users().list(UserFilter::All, None, 100).unwrap();
        assert!(kept.len() >= 40, "{}", kept.len());
        assert!(kept.iter().all(|u| emails.contains(&u.email)));
    }
}

/// A B-tree whose branch pages list themselves as a child loops: every other command refuses
/// the file ("Cycle detected"), and salvage, the tool left, read the same keys again and
/// again (each batch starts from the root anew) until memory ran out. Keys must now rise
/// (fall, reading backwards): salvage stops at the loop, says so, and copies what it read.
#[test]
fn salvage_stops_at_a_btree_that_loops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options().create(true)).unwrap();
    for i in 0..600 {
        rk.users()
            .create(NewUser {
                email: format!("u{i}@example.com"),
                ..NewUser::default()
            })
            .unwrap();
    }
    drop(rk);
    // Each branch page of a table keyed by 8 bytes gets its last child pointed at itself
    // (the layout of redb 4's branch pages: a header of 8 bytes, a checksum of 16 and a
    // page number of 8 per child, then the keys' end offsets).
    let file = dir.join(redkeep::STORE_FILE);
    let mut d = std::fs::read(&file).unwrap();
    let u16_at = |d: &[u8], o: usize| usize::from(u16::from_le_bytes([d[o], d[o + 1]]));
    let u32_at = |d: &[u8], o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap()) as usize;
    let mut patched = 0;
    for p in 1..d.len() / 4096 {
        let o = p * 4096;
        if d[o] != 2 {
            continue;
        }
        let n = u16_at(&d, o + 2);
        let base = o + 8 + 16 * (n + 1);
        let ko = base + 8 * (n + 1);
        if u32_at(&d, ko).wrapping_sub(ko - o + 4 * n) != 8 {
            continue;
        }
        d[base + 8 * n..base + 8 * n + 8].copy_from_slice(&(p as u64 - 1).to_le_bytes());
        patched += 1;
    }
    assert!(patched > 0, "no branch page found to damage");
    std::fs::write(&file, &d).unwrap();
    assert!(
        Redkeep::open(&dir, options()).is_err(),
        "the damage is seen"
    );
    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    let users = &report.tables["users"];
    assert!(users.read > 0 && users.read <= 600, "{users:?}");
    assert!(
        report.tables.values().any(|t| !t.skipped.is_empty()),
        "the loop is reported as a part not read"
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
}

/// Two users with a note and two pieces each, and one deleted user's folder in the trash.
fn build_with_folders(dir: &Path) -> (Redkeep, Vec<u64>) {
    let rk = Redkeep::open(dir, options().create(true)).unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let u = rk
            .users()
            .create(NewUser {
                email: format!("u{i}@example.com"),
                ..NewUser::default()
            })
            .unwrap()
            .user;
        rk.workspaces()
            .update(u.id, |d| d.add_note("keep me"))
            .unwrap();
        for p in 0..2 {
            rk.workspaces()
                .save_piece(u.id, format!(r#"{{"p":{p}}}"#).as_bytes())
                .unwrap();
        }
        ids.push(u.id);
    }
    rk.users().delete(ids[2]).unwrap();
    (rk, ids)
}

/// Workspace files salvage cannot read (a piece, a `workspace.json`, a trash entry's file,
/// here FIFOs, which cannot be copied whoever runs it) are named in the report, which then
/// has a problem, and the document the repair wrote fresh for the unreadable one is said
/// to be fresh; what reads (the trash among it) is copied.
#[test]
fn salvage_names_the_workspace_files_it_cannot_read_and_is_not_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (rk, ids) = build_with_folders(&dir);
    let trash = rk.workspaces().trash().unwrap();
    assert_eq!(trash.len(), 1);
    drop(rk);
    let users = dir.join("workspaces").join("users");
    let piece = users
        .join(ids[0].to_string())
        .join("gallery")
        .join("piece_000001.json");
    let doc = users.join(ids[1].to_string()).join("workspace.json");
    let trashed = trash[0].path.join("workspace.json");
    for path in [&piece, &doc, &trashed] {
        mkfifo(path);
    }
    let to = tmp.path().join("saved");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    let mut left = report.left_behind.clone();
    left.sort();
    let mut expected: Vec<String> = [&piece, &doc, &trashed]
        .iter()
        .map(|p| {
            format!(
                "{} is not a regular file or a folder (a FIFO, socket or device), so it was not copied",
                p.display()
            )
        })
        .collect();
    expected.sort();
    assert_eq!(left, expected);
    assert!(
        report.problems.iter().any(|p| p.starts_with(
            "3 workspace file(s) or folder(s) could not be read and are not in the copy"
        )),
        "{:?}",
        report.problems
    );
    let fresh = to
        .join("workspaces/users")
        .join(ids[1].to_string())
        .join("workspace.json");
    assert!(
        report.changes.iter().any(|c| c
            == &format!(
                "workspace of user {}: {} could not be read, so the copy has none at {}: it \
                 reads as an empty document (its canvas, notes and fields are lost)",
                ids[1],
                doc.display(),
                fresh.display()
            )),
        "{:#?}",
        report.changes
    );
    assert_eq!((report.folders, report.trash), (2, 1));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["left_behind"].as_array().unwrap().len(), 3);
    assert_eq!(json["trash"], 1);
    // The rest is there: the other piece, the trash entry (as `workspace trash` lists it)
    // with the files that read.
    let copy = Redkeep::open(&to, options()).unwrap();
    assert_eq!(copy.workspaces().list_pieces(ids[0]).unwrap().len(), 1);
    let copied_trash = copy.workspaces().trash().unwrap();
    assert_eq!(copied_trash.len(), 1);
    assert_eq!(copied_trash[0].name, trash[0].name);
    assert_eq!(copied_trash[0].user, Some(ids[2]));
    assert!(
        copied_trash[0]
            .path
            .join("gallery/piece_000002.json")
            .is_file()
    );
}

/// A `workspaces/users` that cannot be listed (here a file where the folder should be) is
/// named, not taken for a data dir without folders.
#[test]
fn salvage_names_a_users_folder_it_cannot_list() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    drop(build_with_folders(&dir));
    let users = dir.join("workspaces").join("users");
    std::fs::rename(&users, tmp.path().join("users-aside")).unwrap();
    std::fs::write(&users, b"not a folder").unwrap();
    let report = redkeep::ops::salvage(
        &dir,
        &tmp.path().join("saved"),
        options(),
        Timestamp(1_800_000_000),
    )
    .unwrap();
    assert_eq!(report.left_behind.len(), 1, "{:?}", report.left_behind);
    assert!(
        report.left_behind[0].starts_with(&format!("listing {}: ", users.display())),
        "{:?}",
        report.left_behind
    );
    assert_eq!(report.folders, 0);
    assert!(!report.problems.is_empty());
}

/// A read that fails part way through a file (a failing disk) leaves that file out, named
/// with the error, and the salvage has a problem; the other files are copied.
#[test]
fn salvage_names_a_file_whose_read_fails() {
    use redkeep::store::{FaultKind, FaultPlan};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    drop(build_with_folders(&dir));
    let to = tmp.path().join("saved");
    let plan = FaultPlan::new(FaultKind::FileRead, 3);
    let armed = plan.arm_files();
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    drop(armed);
    assert!(plan.fired());
    assert_eq!(report.left_behind.len(), 1, "{:?}", report.left_behind);
    let line = &report.left_behind[0];
    assert!(
        line.starts_with(&format!("reading {}", dir.join("workspaces").display()))
            && line.ends_with("injected failure of FileRead call 3"),
        "{line}"
    );
    let path = line
        .strip_prefix("reading ")
        .and_then(|l| l.split(": ").next())
        .unwrap();
    let copied = to.join(
        Path::new(path)
            .strip_prefix(dir.join("workspaces"))
            .unwrap(),
    );
    assert!(!copied.exists(), "{}", copied.display());
    assert!(!report.problems.is_empty());
}

/// Salvage writes into a new or empty folder: one holding anything else is refused, named,
/// and left as it was; empty `workspaces/users` and `workspaces/trash` folders are fine.
#[test]
fn salvage_refuses_a_folder_that_is_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    build(&dir);
    let to = tmp.path().join("filled");
    std::fs::create_dir(&to).unwrap();
    std::fs::write(to.join("important.txt"), b"x").unwrap();
    let err = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!(
            "{} is not empty (it holds important.txt); salvage writes a new data dir into a \
             new or empty folder",
            to.display()
        )),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&to).unwrap().collect();
    assert_eq!(left.len(), 1);
    let ready = tmp.path().join("ready");
    std::fs::create_dir_all(ready.join("workspaces/users")).unwrap();
    std::fs::create_dir_all(ready.join("workspaces/trash")).unwrap();
    let report = redkeep::ops::salvage(&dir, &ready, options(), Timestamp(1_800_000_000)).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn raw_entries(dir: &Path, table: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb::Database::open(dir.join(redkeep::STORE_FILE)).unwrap();
    let tx = db.begin_read().unwrap();
    let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(table);
    let t = tx.open_table(def).unwrap();
    t.iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.value().to_vec(), v.value().to_vec())
        })
        .collect()
}

/// `value` with the bytes `from` (found once, asserted) replaced by `to`: the damaged byte
/// of a record that still decodes, which redb reads back without a word.
fn flipped(value: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at: Vec<usize> = value
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "{from:?} in {value:?}");
    let mut out = value.to_vec();
    out.splice(at[0]..at[0] + from.len(), to.iter().copied());
    out
}

fn make_user(rk: &Redkeep, email: &str, admin: bool) -> u64 {
    rk.users()
        .create(NewUser {
            email: email.into(),
            password: Some("correct horse battery".into()),
            is_admin: admin,
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id
}

/// A session whose user id took a damaged byte (pointing at the administrator) reads back
/// as a sound record; the damaged store's own `by_user` index still names its real user.
/// Salvage takes that as evidence: the session is not copied (its user logs in again), so
/// its token does not validate as the administrator in the copy.
#[test]
fn salvage_drops_a_session_the_damaged_store_s_own_index_contradicts() {
    use redkeep::auth::sessions::LoginMeta;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options().create(true)).unwrap();
    let admin = make_user(&rk, "admin@example.com", true);
    let bob = make_user(&rk, "bob@example.com", false);
    let other = make_user(&rk, "carol@example.com", false);
    let login = |email: &str| {
        rk.sessions()
            .login(email, "correct horse battery", LoginMeta::default())
            .unwrap()
    };
    let bobs = login("bob@example.com");
    let carols = login("carol@example.com");
    let short = rk
        .sessions()
        .validate(bobs.token.expose())
        .unwrap()
        .1
        .short_id;
    drop(rk);
    let (key, value) = raw_entries(&dir, "r:sessions")
        .into_iter()
        .find(|(_, v)| v.windows(short.len()).any(|w| w == short.as_bytes()))
        .unwrap();
    let mut from = short.as_bytes().to_vec();
    from.push(u8::try_from(bob).unwrap());
    let mut to = short.as_bytes().to_vec();
    to.push(u8::try_from(admin).unwrap());
    common::plant_entry(None, &dir, "r:sessions", &key, &flipped(&value, &from, &to));

    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert!(
        report.changes.iter().any(|c| c
            .starts_with("sessions: 1 record(s) that the damaged store's own indexes contradict")
            && c.contains("quarantine:sessions")
            && c.contains("log in again")),
        "{:?}",
        report.changes
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let copy = Redkeep::open(&to, options()).unwrap();
    assert!(copy.sessions().validate(bobs.token.expose()).is_err());
    // The session the indexes agree with is copied as it was.
    assert_eq!(
        copy.sessions()
            .validate(carols.token.expose())
            .unwrap()
            .0
            .id,
        other
    );
    // Its bytes are kept, not lost.
    drop(copy);
    assert!(raw_value(&to, "r:quarantine:sessions", &key).is_some());
}

/// A user whose email took a damaged byte and now reads as another user's address: the
/// damaged store's own email index names the intact account, which stays; the damaged one
/// is set aside (it was taken first, in key order, and the intact account quarantined). A
/// user record whose email changed to an address no one holds stays as it reads, and the
/// report names it to be checked by hand, with the address the index held for it.
#[test]
fn salvage_keeps_the_account_the_damaged_store_s_index_names_and_names_what_it_cannot_tell() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options().create(true)).unwrap();
    let ann = make_user(&rk, "ann@example.com", false);
    let bea = make_user(&rk, "bea@example.com", false);
    let cid = make_user(&rk, "cid@example.com", false);
    drop(rk);
    // ann's record now says bea's address; cid's says an address no one holds.
    let value = raw_value(&dir, "r:users", &ann.to_be_bytes()).unwrap();
    let damaged = flipped(&value, b"ann@example.com", b"bea@example.com");
    common::plant_entry(None, &dir, "r:users", &ann.to_be_bytes(), &damaged);
    let value = raw_value(&dir, "r:users", &cid.to_be_bytes()).unwrap();
    let damaged = flipped(&value, b"cid@example.com", b"cod@example.com");
    common::plant_entry(None, &dir, "r:users", &cid.to_be_bytes(), &damaged);

    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    let copy = Redkeep::open(&to, options()).unwrap();
    let found = copy.users().by_email("bea@example.com").unwrap();
    assert_eq!(found.map(|u| u.id), Some(bea));
    assert!(copy.users().get(ann).unwrap().is_none());
    // Three user records read, two in the copy.
    let users = &report.tables["users"];
    assert_eq!((users.read, users.kept), (3, 2));
    // Both are named: the damaged account set aside (the copy lacks it), and the one kept.
    assert_eq!(report.suspects.len(), 2, "{:?}", report.suspects);
    assert!(
        report.suspects.iter().any(|s| s.contains(&format!("{ann}"))
            && s.contains("quarantine:users, so the copy's users table lacks it")),
        "{:?}",
        report.suspects
    );
    assert!(
        report.suspects.iter().any(|s| s
            .starts_with(&format!("users: record {cid} was kept as it reads"))
            && s.contains("cid@example.com")),
        "{:?}",
        report.suspects
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Salvage names a stretch of a table it could not read by the keys around it, except in
/// tables keyed by a token's hash (sessions here): those keys are secret material, shown as
/// `<redacted>`, as `check` shows them.
#[test]
fn salvage_does_not_show_token_hashes_around_a_stretch_it_could_not_read() {
    use redkeep::auth::sessions::LoginMeta;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options().create(true)).unwrap();
    make_user(&rk, "ann@example.com", false);
    for _ in 0..150 {
        rk.sessions()
            .login(
                "ann@example.com",
                "correct horse battery",
                LoginMeta::default(),
            )
            .unwrap();
    }
    drop(rk);
    let hashes: Vec<Vec<u8>> = raw_entries(&dir, "r:sessions")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(hashes.iter().all(|h| h.len() == 32));
    let (lowest, highest) = (hashes.first().unwrap(), hashes.last().unwrap());
    // The leaves of the sessions table: redb leaf pages (type 1) whose first key is a
    // session's hash (keys start after the entry count and the key and value ends).
    let db = dir.join(redkeep::STORE_FILE);
    let mut bytes = std::fs::read(&db).unwrap();
    let mut damaged = 0;
    for page in bytes.chunks_mut(4096).skip(1) {
        let n = usize::from(u16::from_le_bytes([page[2], page[3]]));
        let start = 4 + 8 * n;
        if page[0] != 1 || n == 0 || start + 32 > page.len() {
            continue;
        }
        let first = &page[start..start + 32];
        let holds_highest = page.windows(32).any(|w| w == highest.as_slice());
        if hashes.iter().any(|h| h == first) && first != lowest.as_slice() && !holds_highest {
            page[0] = 7;
            damaged += 1;
        }
    }
    assert!(
        damaged > 0,
        "no leaf of the sessions table between its first and last"
    );
    std::fs::write(&db, &bytes).unwrap();

    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    let sessions = &report.tables["sessions"];
    assert!(
        sessions.skipped.len() == 1 && sessions.skipped[0].contains("<redacted>"),
        "{sessions:?}"
    );
    let json = serde_json::to_string(&report).unwrap();
    for h in &hashes {
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!json.contains(&hex[..16]), "a token hash in {json}");
    }
}

/// A salvage whose copy lost a user's role grants (with a damaged page) gives that user the
/// default `user` role, and says so; `check` on a store lets such a user be.
#[test]
fn salvage_gives_a_user_whose_grants_were_lost_the_user_role() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options().create(true)).unwrap();
    let bob = make_user(&rk, "bob@example.com", false);
    drop(rk);
    let grants: Vec<Vec<u8>> = raw_entries(&dir, "r:user_roles")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(&bob.to_be_bytes()))
        .collect();
    assert_eq!(grants.len(), 1);
    {
        let db = redb::Database::open(dir.join(redkeep::STORE_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("r:user_roles");
        tx.open_table(def)
            .unwrap()
            .remove(grants[0].as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert!(
        report
            .changes
            .iter()
            .any(|c| c == &format!("user {bob}: held no role; they were given the `user` role")),
        "{:?}",
        report.changes
    );
    let copy = Redkeep::open(&to, options()).unwrap();
    assert!(copy.roles().has_permission(bob, "basic_access").unwrap());
}

/// A grant whose key fields took a damaged byte reads as another user's grant (the index
/// entries, made from the key it is stored under, agree with that key). Salvage does not
/// move it to the key its fields name, which would make that other user an administrator:
/// it is set aside.
#[test]
fn salvage_does_not_move_a_grant_whose_key_fields_were_damaged_to_another_user() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options().create(true)).unwrap();
    let alice = make_user(&rk, "alice@example.com", true);
    let bob = make_user(&rk, "bob@example.com", false);
    let admin_role = rk.roles().get("admin").unwrap().id;
    let key = |user: u64| [user.to_be_bytes(), admin_role.to_be_bytes()].concat();
    // The bytes of a grant of the admin role to bob, which is then taken back.
    rk.roles().grant(bob, "admin", None).unwrap();
    drop(rk);
    let bobs = raw_value(&dir, "r:user_roles", &key(bob)).unwrap();
    let rk = Redkeep::open(&dir, options()).unwrap();
    rk.roles().revoke(bob, "admin", None).unwrap();
    drop(rk);
    // Alice's grant now reads as bob's.
    common::plant_entry(None, &dir, "r:user_roles", &key(alice), &bobs);

    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert!(
        report.changes.iter().any(|c| c.starts_with(
            "user_roles: 1 record(s) that the damaged store's own indexes contradict"
        ) && c.contains("its fields name key")),
        "{:?}",
        report.changes
    );
    let copy = Redkeep::open(&to, options()).unwrap();
    assert!(!copy.users().get(bob).unwrap().unwrap().is_admin);
    assert!(!copy.roles().has_permission(bob, "*").unwrap());
}

/// A user record stored under a key its own fields do not name (a damaged byte in its id):
/// salvage sets it aside rather than move it onto the account its fields name, and lists it
/// to be put back by hand; the account it would have clashed with stays whole.
#[test]
fn salvage_sets_aside_a_user_whose_id_field_was_damaged_and_lists_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options().create(true)).unwrap();
    make_user(&rk, "ann@example.com", false);
    let bob = make_user(&rk, "bob@example.com", false);
    drop(rk);
    let bobs = raw_value(&dir, "r:users", &bob.to_be_bytes()).unwrap();
    common::plant_entry(None, &dir, "r:users", &99u64.to_be_bytes(), &bobs);

    let to = tmp.path().join("salvaged");
    let report = redkeep::ops::salvage(&dir, &to, options(), Timestamp(1_800_000_000)).unwrap();
    assert!(
        report.suspects.iter().any(|s| s.starts_with(
            "users: record 99 was set aside into quarantine:users, as its fields name key"
        )),
        "{:?}",
        report.suspects
    );
    let copy = Redkeep::open(&to, options()).unwrap();
    assert!(copy.users().get(99).unwrap().is_none());
    assert_eq!(
        copy.users().get(bob).unwrap().map(|u| u.email),
        Some("bob@example.com".to_string())
    );
    drop(copy);
    assert_eq!(
        raw_value(&to, "r:quarantine:users", &99u64.to_be_bytes()),
        Some(bobs)
    );
}
