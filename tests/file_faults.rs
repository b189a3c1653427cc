//! I/O failures injected into the workspace files: the nth write, fsync or rename of an
//! operation fails, for n = 1, 2, … until the operation gets through. Every failure is a
//! clean `Io` error; the folders hold either the state before the operation (always, when
//! the failure came before the file was renamed into place) or the state after it, whole —
//! never a partial file and never a temp file left behind — and the operation then succeeds.
//! A user's folder made ready (its owner marker) before a failed first write counts as no
//! folder: reading it gives the same empty document.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::TestDir;
use redkeep::store::{FaultKind, FaultPlan};
use redkeep::{Clock, Error, NewUser, Redkeep, Timestamp};

type Op = fn(&Redkeep, &[u64]) -> redkeep::Result<()>;

/// Every file under the workspaces folder (path → bytes), and the temp files and folders found.
fn snapshot(root: &Path) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    fn walk(dir: &Path, root: &Path, files: &mut BTreeMap<String, Vec<u8>>, tmp: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if e.file_name().to_string_lossy().starts_with(".rk-tmp-") {
                tmp.push(rel.clone());
            }
            if e.file_type().unwrap().is_dir() {
                // Folders count by their files: an empty trash folder left is no change.
                walk(&path, root, files, tmp);
            } else {
                let mut bytes = std::fs::read(&path).unwrap();
                if e.file_name() == ".owner" {
                    // It names the user's random uid: different in every store, whole or not.
                    assert!(!bytes.is_empty(), "an empty {rel}");
                    bytes = b"(a uid)".to_vec();
                }
                files.insert(rel, bytes);
            }
        }
    }
    let (mut files, mut tmp) = (BTreeMap::new(), Vec::new());
    walk(root, root, &mut files, &mut tmp);
    // A folder holding only its owner marker and lock file is a user's folder made ready
    // and not yet written: the same, to its user, as no folder.
    let bare: Vec<String> = files
        .keys()
        .filter_map(|k| k.strip_suffix("/.owner"))
        .filter(|dir| {
            files.keys().all(|k| {
                !k.starts_with(&format!("{dir}/"))
                    || k.ends_with("/.owner")
                    || k.ends_with("/.lock")
            })
        })
        .map(str::to_string)
        .collect();
    for dir in bare {
        files.remove(&format!("{dir}/.owner"));
        files.remove(&format!("{dir}/.lock"));
    }
    (files, tmp)
}

/// A store with two users: the first has a workspace with a note and one piece, the second
/// has no folder yet.
fn setup(t: &TestDir) -> (Redkeep, Vec<u64>) {
    let rk = t.open();
    let mut ids = Vec::new();
    for email in ["ann@example.com", "bob@example.com"] {
        ids.push(
            rk.users()
                .create(NewUser {
                    email: email.into(),
                    password: Some("correct horse battery".into()),
                    ..NewUser::default()
                })
                .unwrap()
                .user
                .id,
        );
    }
    rk.workspaces()
        .update(ids[0], |d| d.add_note("before"))
        .unwrap();
    rk.workspaces()
        .save_piece(ids[0], br#"{"piece":1}"#)
        .unwrap();
    (rk, ids)
}

/// An export of [`setup`]'s store.
fn exported_setup() -> Vec<u8> {
    let t = TestDir::new();
    let (rk, _) = setup(&t);
    let mut text = Vec::new();
    redkeep::ops::export(&rk, &mut text, &|_| {}).unwrap();
    text
}

fn operations() -> Vec<(&'static str, Op)> {
    vec![
        ("rewrite workspace.json", |rk, ids| {
            rk.workspaces().update(ids[0], |d| d.add_note("after"))
        }),
        ("save a piece", |rk, ids| {
            rk.workspaces()
                .save_piece(ids[0], br#"{"piece":2}"#)
                .map(|_| ())
        }),
        // (No number remembered from an earlier save: the gallery is listed, and the piece
        // written as any file, then its folder synced.)
        ("save a first piece to a new folder", |rk, ids| {
            rk.workspaces()
                .save_piece(ids[1], br#"{"piece":1}"#)
                .map(|_| ())
        }),
        ("delete a piece", |rk, ids| {
            rk.workspaces().delete_piece(ids[0], 1)
        }),
        ("first write to a new folder", |rk, ids| {
            rk.workspaces().update(ids[1], |d| d.add_note("first"))
        }),
        ("trash a folder", |rk, ids| {
            rk.workspaces()
                .trash_folder(ids[0], Timestamp(1_800_000_100))
                .map(|_| ())
        }),
    ]
}

#[test]
fn every_injected_file_failure_is_clean_and_leaves_the_old_or_the_new_state_whole() {
    let mut runs = 0;
    for (name, op) in operations() {
        // The state the operation leads to, without faults.
        let t = TestDir::new();
        let (rk, ids) = setup(&t);
        let root = rk.workspaces().root().to_path_buf();
        let (before, _) = snapshot(&root);
        op(&rk, &ids).unwrap();
        let (after, _) = snapshot(&root);
        assert_ne!(before, after, "{name} changes nothing");
        drop(rk);

        for kind in [
            FaultKind::FileWrite,
            FaultKind::FileSync,
            FaultKind::FileRename,
        ] {
            for nth in 1.. {
                assert!(nth < 100, "{name}: {kind:?} never got through");
                let t = TestDir::new();
                let (rk, ids) = setup(&t);
                let root = rk.workspaces().root().to_path_buf();
                let plan = FaultPlan::new(kind, nth);
                let armed = plan.arm_files();
                let outcome = op(&rk, &ids);
                drop(armed);
                runs += 1;
                if !plan.fired() {
                    outcome.unwrap_or_else(|e| panic!("{name}: failed without a fault: {e}"));
                    assert_eq!(snapshot(&root).0, after, "{name}");
                    break;
                }
                let e = outcome.expect_err("a failed call is reported");
                assert!(
                    matches!(e, Error::Io { .. }),
                    "{name}, {kind:?} #{nth}: {e:?}"
                );
                let (files, tmp) = snapshot(&root);
                assert!(
                    tmp.is_empty(),
                    "{name}, {kind:?} #{nth}: temp files left: {tmp:?}"
                );
                assert!(
                    files == before || files == after,
                    "{name}, {kind:?} #{nth}: a state that is neither before nor after: {:?}",
                    files.keys().collect::<Vec<_>>()
                );
                if files == after && name.starts_with("save") {
                    // Saved, but not known durable: the error says so, lest it be saved twice.
                    assert!(e.to_string().contains("was saved"), "{name}: {e}");
                }
                if kind != FaultKind::FileSync {
                    // Nothing was renamed into place: the old state is whole.
                    assert_eq!(files, before, "{name}, {kind:?} #{nth}");
                }
                if files == before {
                    op(&rk, &ids).unwrap_or_else(|e| panic!("{name}: the retry failed: {e}"));
                    assert_eq!(snapshot(&root).0, after, "{name}: the retry");
                }
                let report = rk.check(false).unwrap();
                assert!(report.ok, "{name}, {kind:?} #{nth}: {:?}", report.problems);
            }
        }
    }
    println!("{runs} runs");
}

/// An import whose folders cannot all be written takes itself back: the records go out
/// again and the folders written go to the trash, so the store is empty (never accounts
/// without their files), the error says so, and the same import then goes through.
#[test]
fn an_import_whose_folders_fail_is_taken_back_whole() {
    let text = exported_setup();
    let mut failures = 0;
    for kind in [FaultKind::FileWrite, FaultKind::FileRename] {
        for nth in 1.. {
            assert!(nth < 100, "{kind:?} never got through");
            let target = TestDir::new();
            let rk = target.open();
            let plan = FaultPlan::new(kind, nth);
            let armed = plan.arm_files();
            let outcome = redkeep::ops::import(&rk, &mut text.as_slice(), &|_| {});
            drop(armed);
            if !plan.fired() {
                outcome.unwrap();
                break;
            }
            failures += 1;
            let e = outcome.expect_err("a failed folder write is reported");
            assert!(
                e.to_string().contains("the import was taken back"),
                "{kind:?} #{nth}: {e}"
            );
            assert!(
                rk.users().count().unwrap() == 0,
                "{kind:?} #{nth}: accounts left"
            );
            assert!(rk.workspaces().user_ids().unwrap_or_default().is_empty());
            redkeep::ops::import(&rk, &mut text.as_slice(), &|_| {})
                .unwrap_or_else(|e| panic!("{kind:?} #{nth}: importing again: {e}"));
            assert_eq!(rk.workspaces().list_pieces(1).unwrap().len(), 1);
            assert!(rk.check(false).unwrap().ok);
        }
    }
    assert!(failures > 0, "no folder write ever failed");
}

/// Folders already in the data dir (another deployment's, or a user's from before) would
/// be refused half-way: the import refuses before writing anything, and names them.
#[test]
fn an_import_refuses_a_data_dir_that_holds_folders_already() {
    let text = exported_setup();
    let target = TestDir::new();
    let copy = target.open();
    let stray = copy.workspaces().root().join("users/1");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("workspace.json"), b"{}").unwrap();
    let e = redkeep::ops::import(&copy, &mut text.as_slice(), &|_| {}).unwrap_err();
    assert!(matches!(e, Error::Denied { .. }), "{e}");
    assert!(e.to_string().contains("users/1"), "{e}");
    assert!(e.to_string().contains("nothing was imported"), "{e}");
    assert_eq!(copy.users().count().unwrap(), 0);
    std::fs::remove_dir_all(&stray).unwrap();
    redkeep::ops::import(&copy, &mut text.as_slice(), &|_| {}).unwrap();
    assert!(copy.check(false).unwrap().ok);
}

/// An import killed after its records were committed and before its folders were written
/// (simulated here: the records in, the marker the import sets with them, no folders) is
/// reported by check, and the store is not opened for use until the import is finished:
/// its users' folders are missing, and what an application wrote into it would be lost
/// when the import runs again. (Running it again: `ops::transfer`'s unit tests, which
/// plant the marker as the import writes it.)
#[test]
fn an_import_stopped_after_its_records_is_reported_and_not_opened_for_use() {
    let text = exported_setup();
    let target = TestDir::new();
    let rk = target.open();
    redkeep::ops::import(&rk, &mut text.as_slice(), &|_| {}).unwrap();
    assert!(rk.check(false).unwrap().ok);
    // As a kill between the two leaves it: the marker set, a folder missing.
    rk.store()
        .write(|tx| tx.set_meta("import_unfinished", b"1"))
        .unwrap();
    rk.workspaces().trash_all(rk.now()).unwrap();
    drop(rk);
    let e = Redkeep::open(target.path(), target.options()).unwrap_err();
    assert!(matches!(e, Error::Denied { .. }), "{e}");
    assert!(
        e.to_string().contains("an import stopped part way")
            && e.to_string()
                .contains("run the same `redkeep import` again"),
        "{e}"
    );
    let e = Redkeep::open(target.path(), target.options().read_only(true)).unwrap_err();
    assert!(matches!(e, Error::Denied { .. }), "{e}");
    let rk = Redkeep::open(target.path(), target.options().open_unfinished(true)).unwrap();
    let report = rk.check(false).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("an import stopped after writing its records")),
        "{report:?}"
    );
}

/// An export holding a table no type is registered for (raw bytes) whose import fails at
/// the folders is taken back whole, raw table included: the import runs again (it found the
/// raw records and refused the store as holding data).
#[test]
fn an_import_with_raw_tables_taken_back_imports_again() {
    let mut lines: Vec<String> = String::from_utf8(exported_setup())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let end: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let counted = end["lines"].as_u64().unwrap();
    let last = lines.len() - 1;
    lines.insert(
        last,
        r#"{"table":"projects","key":"01","value":"eA=="}"#.to_string(),
    );
    lines.insert(
        last + 1,
        r#"{"index":"projects:by_name","key":"78","value":"01"}"#.to_string(),
    );
    *lines.last_mut().unwrap() =
        serde_json::json!({"redkeep_export_end": true, "lines": counted + 2}).to_string();
    let text = lines.join("\n") + "\n";
    let target = TestDir::new();
    let rk = target.open();
    let plan = FaultPlan::new(FaultKind::FileWrite, 1);
    let armed = plan.arm_files();
    let e = redkeep::ops::import(&rk, &mut text.as_bytes(), &|_| {}).unwrap_err();
    drop(armed);
    assert!(plan.fired());
    assert!(e.to_string().contains("the import was taken back"), "{e}");
    let summary = redkeep::ops::import(&rk, &mut text.as_bytes(), &|_| {})
        .unwrap_or_else(|e| panic!("importing again: {e}"));
    assert_eq!(summary.records.get("projects"), Some(&1));
    assert_eq!(rk.workspaces().list_pieces(1).unwrap().len(), 1);
}

/// A user whose records are deleted but whose folder then fails to move to the trash: the
/// error says the account is gone and how to finish (a retry would only say "not found"),
/// and `check --repair` moves the folder.
#[test]
fn a_delete_whose_folder_cannot_move_says_the_user_was_deleted() {
    let t = TestDir::new();
    let (rk, ids) = setup(&t);
    let plan = FaultPlan::new(FaultKind::FileRename, 1);
    let outcome = {
        let _armed = plan.arm_files();
        rk.users().delete(ids[0])
    };
    assert!(plan.fired());
    let e = outcome.unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("user {} was deleted", ids[0])) && text.contains("check --repair"),
        "{text}"
    );
    assert!(rk.users().get(ids[0]).unwrap().is_none());
    rk.check(true).unwrap();
    assert!(rk.check(false).unwrap().ok);
    assert_eq!(rk.workspaces().trash().unwrap().len(), 1);
}

/// A removal whose count reached the disk but whose last step (a folder's sync) failed says
/// that the piece was removed (as a save says it was saved), not a plain failure that would
/// have the caller remove it again; a failure before that puts the piece back.
#[test]
fn a_removal_whose_last_sync_failed_says_the_piece_was_removed() {
    use redkeep::workspace::FolderOwner;
    use redkeep::{WorkspaceOptions, Workspaces};
    let mut said_removed = 0;
    for nth in 1.. {
        let tmp = tempfile::tempdir().unwrap();
        let owners: redkeep::workspace::Owners = std::sync::Arc::new(|id| {
            Ok(Some(FolderOwner {
                uid: [id as u8; 16],
                since: 1_800_000_000,
            }))
        });
        let ws = Workspaces::open(tmp.path(), WorkspaceOptions::default(), owners).unwrap();
        ws.save_piece(1, b"{}").unwrap();
        ws.save_piece(1, b"{}").unwrap();
        let plan = FaultPlan::new(FaultKind::FileSync, nth);
        let result = {
            let _armed = plan.arm_files();
            ws.delete_piece(1, 2)
        };
        if !plan.fired() {
            result.unwrap();
            break;
        }
        let err = result.unwrap_err().to_string();
        let removed = !ws.piece_path(1, 2).exists();
        assert_eq!(
            ws.read(1).unwrap().piece_count,
            if removed { 1 } else { 2 },
            "{nth}: {err}"
        );
        assert_eq!(err.contains("piece 2 was removed"), removed, "{nth}: {err}");
        if removed {
            said_removed += 1;
            assert!(err.contains("do not remove it again"), "{err}");
        }
    }
    assert!(said_removed > 0);
}

/// A data dir (its own test dir) whose `folders` users each have a workspace folder with a
/// piece (two folders each: theirs and its gallery).
fn with_folders(folders: usize) -> TestDir {
    let t = TestDir::new();
    let rk = t.open();
    for i in 0..folders {
        let id = rk
            .users()
            .create(NewUser {
                email: format!("u{i}@example.com"),
                ..NewUser::default()
            })
            .unwrap()
            .user
            .id;
        rk.workspaces().save_piece(id, br#"{"p":1}"#).unwrap();
    }
    t
}

/// How many workspace file syncs `f` makes on this thread.
fn folder_syncs(f: impl FnOnce()) -> u64 {
    let plan = FaultPlan::new(FaultKind::FileSync, u64::MAX);
    let _armed = plan.arm_files();
    f();
    plan.calls()
}

/// A restore and a move make the folders they copy durable, not only their files: each
/// folder's entry in its parent is synced too (a crash could lose `users/N/` with the
/// synced files in it), so every folder more costs at least one sync more.
#[test]
fn restoring_and_moving_sync_each_folder_they_make() {
    let (few, many) = (with_folders(1), with_folders(4));
    let restore_syncs = |t: &TestDir| {
        let archive = t.path().join("backup.tar");
        redkeep::ops::backup(&t.open(), &archive).unwrap();
        let target = t.path().join("restored");
        folder_syncs(|| {
            redkeep::ops::restore(&target, &archive, false, t.clock.now()).unwrap();
        })
    };
    // Each of the 3 folders more: at least one sync for each of its 2 folders (unpacking
    // syncs its files through no seam the plan counts).
    let (a, b) = (restore_syncs(&few), restore_syncs(&many));
    assert!(b >= a + 3 * 2, "restore: {a} syncs for 1 folder, {b} for 4");
    let elsewhere = tempfile::tempdir().unwrap();
    let move_syncs = |t: &TestDir, name: &str| {
        let target = elsewhere.path().join(name);
        folder_syncs(|| {
            redkeep::ops::move_store(t.path(), None, target.to_str().unwrap(), t.options())
                .unwrap();
        })
    };
    // Each of the 3 folders more: two syncs for each of its 3 files (the file, and its
    // entry in its folder), and one for each of its 2 folders.
    let (a, b) = (move_syncs(&few, "a"), move_syncs(&many, "b"));
    assert!(
        b >= a + 3 * (3 * 2 + 2),
        "move: {a} syncs for 1 folder, {b} for 4"
    );
}

/// A check that runs short of space for its copy of the store file is an error of the check
/// ("the check could not run"), not a problem of the store: reported as one ("1 problem(s)
/// … the check found problems"), it sent the operator to `check --repair` or `salvage` over
/// a sound store.
#[test]
fn a_check_short_of_space_is_an_error_of_the_check_not_a_problem_of_the_store() {
    let t = TestDir::new();
    if t.store.is_some() {
        return; // PostgreSQL's check copies no file: amcheck runs on the server.
    }
    let (rk, _) = setup(&t);
    let plan = FaultPlan::new(FaultKind::FileRead, 1);
    let armed = plan.arm_files();
    let checked = rk.check(false);
    drop(armed);
    assert!(plan.fired());
    let text = checked
        .expect_err("a check short of space reported on the store")
        .full_message();
    assert!(
        text.starts_with("the check could not run: copying ")
            && text.contains("injected failure of FileRead call 1")
            && text.contains("this is no problem of the store")
            && text.contains("free some space"),
        "{text}"
    );
    assert!(rk.check(false).unwrap().ok, "the store is sound");
}
