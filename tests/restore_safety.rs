//! Restores and backups against the data dir around them: workspace folders on another file
//! system, operations stopped part way (a restore, a reset) that other whole-store operations
//! must not pair with the folders, two restores at once, folders that are no data dir, and
//! what a backup leaves where.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod common;

use redkeep::store::{FaultKind, FaultPlan};
use redkeep::{NewUser, Options, PasswordParams, Redkeep, Timestamp};

fn options() -> Options {
    Options::default().password(PasswordParams::INSECURE_FAST)
}

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

/// A data dir with one user holding one piece, and a backup of it at `backup`; then a second
/// piece and a second user, which a restore of the backup takes away.
fn data_dir_with_backup(dir: &Path, backup: &Path) -> u64 {
    let rk = Redkeep::open(dir, options()).unwrap();
    let ann = account(&rk, "ann@example.com");
    rk.workspaces().save_piece(ann, br#"{"n": 1}"#).unwrap();
    redkeep::ops::backup(&rk, backup).unwrap();
    rk.workspaces().save_piece(ann, br#"{"n": 2}"#).unwrap();
    account(&rk, "bea@example.com");
    ann
}

fn temp_entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".rk-tmp-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// A folder on another file system than the temp dir (`/dev/shm`, a tmpfs, on Linux); the
/// test fails, saying what it needs, on a machine without one.
fn other_file_system(near: &Path) -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    assert!(
        dev(shm).is_some() && dev(shm) != dev(near),
        "this test needs /dev/shm on another file system than the temp dir (mount a tmpfs \
         there, or set TMPDIR to a folder on another file system)"
    );
    tempfile::tempdir_in(shm).expect("a folder in /dev/shm")
}

/// The stopped restore every whole-store operation is tried against.
fn stopped_restore(dir: &Path, backup: &Path) {
    common::stop_a_restore(dir, backup, &options());
}

/// A reset of `dir` stopped after emptying the store (its folders not yet in the trash):
/// the reset's renames fail in turn until one stops it so. The handle opened to see it.
fn stopped_reset(dir: &Path) -> Redkeep {
    (1..)
        .find_map(|nth| {
            let plan = FaultPlan::new(FaultKind::FileRename, nth);
            let result = {
                let _armed = plan.arm_files();
                redkeep::ops::reset(dir, Timestamp(1_900_000_000 + nth as i64))
            };
            assert!(
                plan.fired() && result.is_err(),
                "no rename stopped the reset"
            );
            let rk = Redkeep::open(dir, options()).unwrap();
            let problems = rk.check(false).unwrap().problems;
            problems
                .iter()
                .any(|p| p.contains("a reset stopped"))
                .then_some(rk)
        })
        .unwrap()
}

/// A restore or a reset that stopped part way is reported by the handle that opens the
/// data dir (what an application says as it starts), with the command that finishes it;
/// while the restore is unfinished, workspace reads and writes fail as `NotReady` (the
/// server's state, not a rule of the caller's); once repaired, nothing is reported.
#[test]
fn an_open_reports_a_restore_or_a_reset_stopped_part_way() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let backup = tmp.path().join("b.tar");
    let ann = data_dir_with_backup(&dir, &backup);
    {
        let rk = Redkeep::open(&dir, options()).unwrap();
        assert!(rk.unfinished().unwrap().is_empty());
    }
    stopped_restore(&dir, &backup);
    let rk = Redkeep::open(&dir, options()).unwrap();
    let unfinished = rk.unfinished().unwrap();
    assert_eq!(unfinished.len(), 1, "{unfinished:?}");
    assert_eq!(unfinished[0].operation, "a restore");
    assert!(unfinished[0].refuses_workspaces);
    let said = unfinished[0].to_string();
    assert!(
        said.starts_with("a restore stopped part way here")
            && said.ends_with("until `redkeep check --repair` finishes it"),
        "{said}"
    );
    let refused = rk.workspaces().list_pieces(ann).unwrap_err();
    assert!(
        matches!(&refused, redkeep::Error::NotReady { reason } if reason.contains("check --repair")),
        "{refused:?}"
    );
    assert!(rk.check(true).unwrap().ok);
    assert!(rk.unfinished().unwrap().is_empty());
    drop(rk);

    let rk = stopped_reset(&dir);
    let unfinished = rk.unfinished().unwrap();
    assert_eq!(unfinished.len(), 1, "{unfinished:?}");
    assert_eq!(unfinished[0].operation, "a reset");
    assert!(!unfinished[0].refuses_workspaces);
    let said = unfinished[0].to_string();
    assert!(
        said.contains("`redkeep check` says how to undo it, `redkeep check --repair` finishes it"),
        "{said}"
    );
    assert!(rk.check(true).unwrap().ok);
    assert!(rk.unfinished().unwrap().is_empty());
}

/// With `workspaces/` on another file system than the data dir (a symlink to a tmpfs, as a
/// mount would have it), a restore from an archive puts the backup's folders in place: they
/// are unpacked beside `users/`, not in the data dir. And one stopped between the store and
/// the folders is finished by `check --repair` there too.
#[test]
fn a_restore_puts_folders_in_place_when_workspaces_is_on_another_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    let other = other_file_system(tmp.path());
    let dir = tmp.path().join("data");
    let backup = tmp.path().join("b.tar");
    std::fs::create_dir(&dir).unwrap();
    let ws = other.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::os::unix::fs::symlink(&ws, dir.join("workspaces")).unwrap();
    let ann = data_dir_with_backup(&dir, &backup);

    let report = redkeep::ops::restore(&dir, &backup, true, Timestamp(1_900_000_000)).unwrap();
    assert_eq!(report.folders, Some(1));
    let rk = Redkeep::open(&dir, options()).unwrap();
    assert_eq!(rk.workspaces().list_pieces(ann).unwrap().len(), 1);
    assert!(rk.users().find("bea@example.com").is_err());
    let check = rk.check(false).unwrap();
    assert!(check.ok, "{:?}", check.problems);
    drop(rk);
    assert!(temp_entries(&ws).is_empty(), "{:?}", temp_entries(&ws));

    // Stopped part way, then finished by a repair, on the same layout.
    {
        let rk = Redkeep::open(&dir, options()).unwrap();
        rk.workspaces().save_piece(ann, br#"{"n": 3}"#).unwrap();
    }
    stopped_restore(&dir, &backup);
    let rk = Redkeep::open(&dir, options()).unwrap();
    let repaired = rk.check(true).unwrap();
    assert!(repaired.ok, "{:?}", repaired.problems);
    assert!(
        repaired
            .repaired
            .iter()
            .any(|r| r.contains("finished a restore")),
        "{:?}",
        repaired.repaired
    );
    assert_eq!(rk.workspaces().list_pieces(ann).unwrap().len(), 1);
    assert!(rk.check(false).unwrap().ok);
}

/// After `check --repair` finishes a stopped restore, its empty staging folder is gone, and
/// the report names the safety copy of the store with the trash entry: the undo.
#[test]
fn a_repaired_restore_leaves_no_staging_folder_and_names_its_undo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let backup = tmp.path().join("b.tar");
    data_dir_with_backup(&dir, &backup);
    stopped_restore(&dir, &backup);
    let rk = Redkeep::open(&dir, options()).unwrap();
    let repaired = rk.check(true).unwrap();
    let line = repaired
        .repaired
        .iter()
        .find(|r| r.contains("finished a restore"))
        .unwrap_or_else(|| panic!("{:?}", repaired.repaired));
    assert!(
        line.contains(".pre-restore-") && line.contains("restore --force --folders"),
        "{line}"
    );
    let left = temp_entries(&dir.join("workspaces"));
    assert!(left.is_empty(), "{left:?}");
    assert!(temp_entries(&dir).is_empty(), "{:?}", temp_entries(&dir));
}

/// When `check --repair` cannot finish a stopped restore (here every rename fails), its
/// problem still gives the way back: the command that undoes the restore instead.
#[test]
fn a_stopped_restore_repair_cannot_finish_still_names_its_undo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let backup = tmp.path().join("b.tar");
    data_dir_with_backup(&dir, &backup);
    stopped_restore(&dir, &backup);
    let rk = Redkeep::open(&dir, options()).unwrap();
    let report = {
        let plan = FaultPlan::new(FaultKind::FileRename, 1);
        let _armed = plan.arm_files();
        rk.check(true).unwrap()
    };
    let line = report
        .problems
        .iter()
        .find(|p| p.contains("finishing it failed"))
        .unwrap_or_else(|| panic!("{:?}", report.problems));
    assert!(
        line.contains("to undo: `redkeep --data-dir")
            && line.contains("restore --force")
            && line.contains(".pre-restore-"),
        "{line}"
    );
}

/// While a restore that stopped part way has the restored store beside the old folders,
/// a backup, a move, a reset and a salvage are refused with the sentence every workspace
/// read gives, naming `check --repair`; once repaired, they run.
#[test]
fn whole_store_operations_refuse_while_a_restore_is_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let backup = tmp.path().join("b.tar");
    data_dir_with_backup(&dir, &backup);
    stopped_restore(&dir, &backup);
    let refused = |e: redkeep::Error| {
        let text = e.to_string();
        assert!(
            text.contains("a restore stopped part way") && text.contains("check --repair"),
            "{text}"
        );
    };
    {
        let rk = Redkeep::open(&dir, options()).unwrap();
        refused(redkeep::ops::backup(&rk, &tmp.path().join("again.tar")).unwrap_err());
    }
    assert!(!tmp.path().join("again.tar").exists());
    let to = tmp.path().join("moved");
    refused(redkeep::ops::move_store(&dir, None, to.to_str().unwrap(), options()).unwrap_err());
    refused(redkeep::ops::reset(&dir, Timestamp(1_900_000_100)).unwrap_err());
    refused(
        redkeep::ops::salvage(
            &dir,
            &tmp.path().join("salvaged"),
            options(),
            Timestamp(1_900_000_100),
        )
        .unwrap_err(),
    );
    assert!(!to.join(redkeep::STORE_FILE).exists());
    let rk = Redkeep::open(&dir, options()).unwrap();
    assert!(rk.check(true).unwrap().ok);
    redkeep::ops::backup(&rk, &tmp.path().join("again.tar")).unwrap();
}

/// A reset stopped after emptying the store (its folders not yet in the trash) holds a
/// backup and a move off the same way.
#[test]
fn whole_store_operations_refuse_while_a_reset_is_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    data_dir_with_backup(&dir, &tmp.path().join("b.tar"));
    let rk = stopped_reset(&dir);
    let text = redkeep::ops::backup(&rk, &tmp.path().join("after.tar"))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("a reset stopped part way") && text.contains("check --repair"),
        "{text}"
    );
    drop(rk);
    let to = tmp.path().join("moved");
    let text = redkeep::ops::move_store(&dir, None, to.to_str().unwrap(), options())
        .unwrap_err()
        .to_string();
    assert!(text.contains("a reset stopped part way"), "{text}");
}

/// Two restores without `--force` into a data dir without a store: the one that places its
/// store second finds the first one's there, and is refused as any restore over a store
/// without `--force` is, replacing nothing.
#[test]
fn a_second_restore_into_a_new_data_dir_without_force_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one.tar"), tmp.path().join("two.tar"));
    data_dir_with_backup(&tmp.path().join("a"), &one);
    {
        let rk = Redkeep::open(tmp.path().join("b"), options()).unwrap();
        account(&rk, "zoe@example.com");
        redkeep::ops::backup(&rk, &two).unwrap();
    }
    let dir = tmp.path().join("new");
    // The first restore is held just before it puts its store in place.
    let plan = FaultPlan::pausing(FaultKind::FileRename, 1);
    let first = {
        let (plan, dir, one) = (Arc::clone(&plan), dir.clone(), one.clone());
        std::thread::spawn(move || {
            let _armed = plan.arm_files();
            redkeep::ops::restore(&dir, &one, false, Timestamp(1_900_000_000))
        })
    };
    plan.wait_paused();
    redkeep::ops::restore(&dir, &two, false, Timestamp(1_900_000_001)).unwrap();
    plan.resume();
    let text = first.join().unwrap().unwrap_err().to_string();
    assert!(
        text.contains("exists") && text.contains("pass --force"),
        "{text}"
    );
    let rk = Redkeep::open(&dir, options()).unwrap();
    assert!(rk.users().find("zoe@example.com").is_ok());
    assert!(rk.users().find("ann@example.com").is_err());
    assert!(rk.check(false).unwrap().ok);
    // No safety copy: nothing was replaced.
    let copies: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("pre-restore"))
        .collect();
    assert!(copies.is_empty());
}

/// A restore into a folder that holds other files and nothing of redkeep's is refused, as
/// `init` refuses it, and so is a move into one; a folder a restore fills is made private.
#[test]
fn a_restore_or_move_into_a_folder_of_other_files_is_refused_and_a_filled_one_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let backup = tmp.path().join("b.tar");
    let source = tmp.path().join("data");
    data_dir_with_backup(&source, &backup);
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(other.join("notes.txt"), "important").unwrap();
    for text in [
        redkeep::ops::restore(&other, &backup, false, Timestamp(1_900_000_000))
            .unwrap_err()
            .to_string(),
        redkeep::ops::move_store(&source, None, other.to_str().unwrap(), options())
            .unwrap_err()
            .to_string(),
    ] {
        assert!(
            text.contains("holds other files (notes.txt)") && text.contains("no redkeep data dir"),
            "{text}"
        );
    }
    let names: Vec<_> = std::fs::read_dir(&other).unwrap().flatten().collect();
    assert_eq!(names.len(), 1);
    assert_eq!(
        std::fs::metadata(&other).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // A freshly made file system's `lost+found` is no one's files: the usual restore after
    // a disk was lost goes on.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::create_dir(empty.join("lost+found")).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).unwrap();
    redkeep::ops::restore(&empty, &backup, false, Timestamp(1_900_000_000)).unwrap();
    assert_eq!(
        std::fs::metadata(&empty).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

/// While a backup runs, the copy of the store it stages is in the data dir (where `status`
/// and `check --repair` look), not beside the archive; beside the archive is only the
/// unfinished archive, named after it.
#[test]
fn a_backup_stages_its_store_copy_in_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let rk = Redkeep::open(&dir, options()).unwrap();
    let ann = account(&rk, "ann@example.com");
    rk.workspaces().save_piece(ann, b"{}").unwrap();
    // Held when the archive is renamed into place: the last rename a backup makes.
    let renames = {
        let count = FaultPlan::new(FaultKind::FileRename, u64::MAX);
        let _armed = count.arm_files();
        redkeep::ops::backup(&rk, &out.join("first.tar")).unwrap();
        count.calls()
    };
    std::fs::remove_file(out.join("first.tar")).unwrap();
    let plan = FaultPlan::pausing(FaultKind::FileRename, renames);
    let running = {
        let (plan, rk, dest) = (Arc::clone(&plan), rk.clone(), out.join("b.tar"));
        std::thread::spawn(move || {
            let _armed = plan.arm_files();
            redkeep::ops::backup(&rk, &dest)
        })
    };
    plan.wait_paused();
    // (Only files: the archive being written, no staging folder.)
    let beside: Vec<PathBuf> = temp_entries(&out);
    let all_files = beside.iter().all(|p| p.is_file());
    let staged: Vec<PathBuf> = temp_entries(&dir)
        .into_iter()
        .filter(|p| p.join(redkeep::STORE_FILE).is_file())
        .collect();
    plan.resume();
    running.join().unwrap().unwrap();
    assert_eq!(beside.len(), 1, "{beside:?}");
    assert!(all_files, "{beside:?}");
    assert!(
        beside[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".rk-tmp-b.tar."),
        "{beside:?}"
    );
    assert_eq!(staged.len(), 1, "{staged:?}");

    // A handle opened read-only writes nothing in the data dir: its copy is staged beside
    // the archive.
    drop(rk);
    let rk = Redkeep::open(&dir, options().read_only(true)).unwrap();
    let renames = {
        let count = FaultPlan::new(FaultKind::FileRename, u64::MAX);
        let _armed = count.arm_files();
        redkeep::ops::backup(&rk, &out.join("second.tar")).unwrap();
        count.calls()
    };
    let plan = FaultPlan::pausing(FaultKind::FileRename, renames);
    let running = {
        let (plan, rk, dest) = (Arc::clone(&plan), rk.clone(), out.join("c.tar"));
        std::thread::spawn(move || {
            let _armed = plan.arm_files();
            redkeep::ops::backup(&rk, &dest)
        })
    };
    plan.wait_paused();
    let in_data_dir = temp_entries(&dir);
    let beside: Vec<PathBuf> = temp_entries(&out)
        .into_iter()
        .filter(|p| p.join(redkeep::STORE_FILE).is_file())
        .collect();
    plan.resume();
    running.join().unwrap().unwrap();
    assert_eq!(in_data_dir, Vec::<PathBuf>::new());
    assert_eq!(beside.len(), 1, "{beside:?}");
}

/// A backup that leaves folders out gives each its own reason.
#[test]
fn a_backup_says_why_each_folder_was_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options()).unwrap();
    let ann = account(&rk, "ann@example.com");
    rk.workspaces().save_piece(ann, b"{}").unwrap();
    let users = dir.join("workspaces/users");
    std::fs::create_dir(users.join("99")).unwrap();
    std::fs::create_dir(users.join("notes")).unwrap();
    let report = redkeep::ops::backup(&rk, &tmp.path().join("b.tar")).unwrap();
    let why: std::collections::BTreeMap<String, String> = report
        .folders_not_kept
        .iter()
        .map(|(p, w)| (p.display().to_string(), w.clone()))
        .collect();
    assert!(why["users/99"].starts_with("of no user"), "{why:?}");
    assert!(!why["users/99"].contains("owner marker"), "{why:?}");
    assert!(
        why["users/notes"].starts_with("not named for a user"),
        "{why:?}"
    );
    assert_eq!(why.len(), 2, "{why:?}");
}

/// After a reset, the natural "put the old store back" restores its safety copy alone: the
/// users come back without their folders, which the reset set aside in the trash. The
/// restore names that trash entry and its users (their owner markers match), and a restore
/// with `--folders` of it puts their files back.
#[test]
fn a_restore_of_a_store_file_alone_names_the_trash_entry_holding_its_users_folders() {
    let dir = tempfile::tempdir().unwrap();
    // Bea never wrote a file, so she has no folder (one is made at the first write).
    let ann = {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        let ann = account(&rk, "ann@example.com");
        rk.workspaces().save_piece(ann, br#"{"n": 1}"#).unwrap();
        account(&rk, "bea@example.com");
        ann
    };
    let reset = redkeep::ops::reset(dir.path(), Timestamp(1_900_000_000)).unwrap();
    let entry = reset.folders.clone().unwrap();
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        let zed = account(&rk, "zed@example.com");
        rk.workspaces().save_piece(zed, br#"{"z": 1}"#).unwrap();
    }
    let r =
        redkeep::ops::restore(dir.path(), &reset.backup, true, Timestamp(1_900_000_100)).unwrap();
    assert_eq!(r.folders, None);
    let found: Vec<(PathBuf, Vec<u64>)> = r
        .folders_in_trash
        .iter()
        .map(|t| (t.entry.clone(), t.users.clone()))
        .collect();
    assert_eq!(found, [(entry.clone(), vec![ann])]);
    let r = redkeep::ops::restore_store_with_folders(
        dir.path(),
        None,
        &reset.backup,
        Some(&entry),
        true,
        Timestamp(1_900_000_200),
    )
    .unwrap();
    assert!(r.folders_in_trash.is_empty());
    let rk = Redkeep::open(dir.path(), options()).unwrap();
    assert_eq!(rk.workspaces().list_pieces(ann).unwrap().len(), 1);
}

/// The refusal of every workspace call of a handle whose data dir moved away under it.
fn expect_moved_away(r: Result<impl std::fmt::Debug, redkeep::Error>, data_dir: &Path) {
    match r {
        Err(redkeep::Error::NotReady { reason }) => {
            let root = data_dir.join(redkeep::WORKSPACES_DIR);
            assert!(
                reason.contains(&format!(
                    "the workspace folders {} were moved, removed or replaced",
                    root.display()
                )) && reason.contains("restart the application on the data dir where it is now"),
                "{reason}"
            );
        }
        other => panic!("expected NotReady for a data dir moved away, got {other:?}"),
    }
}

#[test]
fn a_data_dir_moved_away_under_a_running_handle_serves_no_folder_and_writes_none_into_its_successor()
 {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("data");
    let rk = Redkeep::open(&dir, options()).unwrap();
    let ann = account(&rk, "ann@example.com");
    let bea = account(&rk, "bea@example.com");
    rk.workspaces()
        .update(ann, |d| {
            d.notes = serde_json::json!(["kept"]);
            Ok(())
        })
        .unwrap();
    let moved = top.path().join("data.moved");
    std::fs::rename(&dir, &moved).unwrap();
    // Ann's document is not read as the empty one of a user without a folder, nor is Bea's
    // (who has none yet); nothing is written or listed.
    expect_moved_away(rk.workspaces().read(ann), &dir);
    expect_moved_away(rk.workspaces().read(bea), &dir);
    expect_moved_away(rk.workspaces().update(ann, |_| Ok(())), &dir);
    expect_moved_away(rk.workspaces().save_piece(bea, b"{}"), &dir);
    expect_moved_away(rk.workspaces().list(), &dir);
    // A check would look at (and a repair change) whatever is at the old path.
    expect_moved_away(rk.check(true), &dir);
    // The store file went with the data dir and stays open: accounts still answer.
    assert_eq!(
        rk.users().get(ann).unwrap().unwrap().email,
        "ann@example.com"
    );
    // Another store made at the old path gets none of this handle's folders.
    let other = Redkeep::open(&dir, options()).unwrap();
    account(&other, "zed@example.com");
    expect_moved_away(rk.workspaces().save_piece(bea, b"{}"), &dir);
    expect_moved_away(rk.workspaces().read(ann), &dir);
    let users = dir.join(redkeep::WORKSPACES_DIR).join("users");
    assert_eq!(std::fs::read_dir(&users).unwrap().count(), 0);
    drop(other);
    // Put back where it was opened, the data dir serves again, Ann's note as she left it.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&moved, &dir).unwrap();
    assert_eq!(rk.workspaces().read(ann).unwrap().notes[0], "kept");
    rk.workspaces().save_piece(bea, b"{}").unwrap();
}

#[test]
fn a_workspaces_folder_removed_and_made_again_under_a_running_handle_is_not_taken_for_its_own() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("data");
    // No workspace call before the removal: the handle holds no file of a folder open.
    let rk = Redkeep::open(&dir, options()).unwrap();
    let ann = account(&rk, "ann@example.com");
    let root = dir.join(redkeep::WORKSPACES_DIR);
    std::fs::remove_dir_all(&root).unwrap();
    // Made again at once, the new folder would often get the old one's inode number.
    std::fs::create_dir_all(root.join("users")).unwrap();
    expect_moved_away(rk.workspaces().update(ann, |_| Ok(())), &dir);
    expect_moved_away(rk.workspaces().read(ann), &dir);
    assert_eq!(std::fs::read_dir(root.join("users")).unwrap().count(), 0);
}
