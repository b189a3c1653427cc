//! Per-user workspace folders: concurrency across threads and processes, crash safety under
//! SIGKILL, adoption of folders written by another program, and bad input.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use redkeep::workspace::{FolderOwner, Owners};
use redkeep::{Error, Timestamp, WorkspaceOptions, Workspaces};
use serde_json::{Value, json};

const CHILD_ENV: &str = "REDKEEP_TEST_WORKSPACE_CHILD";

/// The user that does not exist in these tests; every other id does.
const MISSING: u64 = 9;

fn owner(id: u64) -> FolderOwner {
    FolderOwner {
        uid: [id as u8; 16],
        since: 1_800_000_000,
    }
}

/// Folders stand alone here: every user id but [`MISSING`] exists, with its own identity.
fn owners() -> Owners {
    Arc::new(|id| Ok((id != MISSING).then(|| owner(id))))
}

fn open_with(root: &Path, options: WorkspaceOptions) -> Workspaces {
    Workspaces::open(root, options, owners()).unwrap()
}

fn open(root: &Path) -> Workspaces {
    open_with(root, WorkspaceOptions::default())
}

/// Makes folders 0700 and files 0600, as redkeep makes its own: what a test plants in a
/// folder stands for what redkeep (or a crash of it) left, not for a looser program's.
fn private(paths: &[&Path]) {
    use std::os::unix::fs::PermissionsExt;
    for p in paths {
        let mode = if p.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// A handle that calls `notice` each time one of its writers is about to wait for a lock.
fn open_noticing(root: &Path, notice: impl Fn() + Send + Sync + 'static) -> Workspaces {
    let on_wait: redkeep::workspace::lock::WaitNotice = Arc::new(move |_: &Path| notice());
    open_with(
        root,
        WorkspaceOptions {
            on_wait: Some(on_wait),
            ..Default::default()
        },
    )
}

/// Every piece parses, numbers are 1..=N without gaps, and piece_count equals N.
fn assert_gallery_is_exact(ws: &Workspaces, user: u64, n: u64) {
    let pieces = ws.list_pieces(user).unwrap();
    let numbers: Vec<u64> = pieces.iter().map(|p| p.piece).collect();
    assert_eq!(numbers, (1..=n).collect::<Vec<_>>());
    for p in &pieces {
        ws.load_piece(user, p.piece).unwrap();
    }
    assert_eq!(ws.read(user).unwrap().piece_count, n);
}

/// A child process: `save:<root>:<count>` saves pieces; `crash:<root>` saves and rewrites in a
/// loop, printing each acknowledged step, until killed.
#[test]
fn helper_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful when started by the tests below.
    };
    let mut parts = spec.splitn(3, ':');
    let (kind, root) = (parts.next().unwrap(), parts.next().unwrap());
    let ws = open(Path::new(root));
    let mut out = std::io::stdout().lock();
    match kind {
        "save" => {
            let count: u64 = parts.next().unwrap().parse().unwrap();
            for i in 0..count {
                ws.save_piece(
                    1,
                    json!({"pid": std::process::id(), "i": i})
                        .to_string()
                        .as_bytes(),
                )
                .unwrap();
            }
        }
        "crash" => {
            let round: u64 = parts.next().unwrap().parse().unwrap();
            for seq in 0.. {
                let n = ws
                    .save_piece(
                        1,
                        json!({"round": round, "seq": seq}).to_string().as_bytes(),
                    )
                    .unwrap();
                writeln!(out, "saved {n} {seq}").unwrap();
                out.flush().unwrap();
                ws.update(1, |d| {
                    d.add_note(json!({"round": round, "seq": seq}))?;
                    d.canvas = json!({"big": "x".repeat(64 * 1024), "seq": seq});
                    Ok(())
                })
                .unwrap();
                writeln!(out, "noted {seq}").unwrap();
                out.flush().unwrap();
            }
        }
        other => panic!("unknown child kind {other}"),
    }
}

fn child(spec: String) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "helper_child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, spec);
    c
}

#[test]
fn eight_threads_saving_fifty_pieces_each_get_distinct_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Arc::new(open(tmp.path()));
    ws.update(1, |_| Ok(())).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let ws = ws.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        ws.save_piece(1, json!({"t": t, "i": i}).to_string().as_bytes())
                            .unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
    assert_gallery_is_exact(&ws, 1, 400);
}

#[test]
fn four_processes_saving_fifty_pieces_each_get_distinct_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |_| Ok(())).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            child(format!("save:{}:50", tmp.path().display()))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_gallery_is_exact(&ws, 1, 200);
}

/// A cheap pseudo-random sequence; the kill points only need to vary.
fn kill_points(seed: u64) -> impl Iterator<Item = usize> {
    let mut x = seed | 1;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 12) as usize + 1
    })
}

#[test]
fn sigkill_during_saves_and_rewrites_never_tears_a_file_or_reuses_a_number() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |_| Ok(())).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // piece number → (round, seq) of every acknowledged save
    let mut acked: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (round, steps) in kill_points(seed).take(24).enumerate() {
        let mut c = child(format!("crash:{}:{round}", tmp.path().display()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < steps {
            let line = lines.next().expect("child ended early").unwrap();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [.., "saved", n, seq] => {
                    let (n, seq) = (n.parse().unwrap(), seq.parse().unwrap());
                    assert!(
                        acked.insert(n, (round as u64, seq)).is_none(),
                        "piece {n} handed out twice"
                    );
                    seen += 1;
                }
                [.., "noted", _] => seen += 1,
                _ => {}
            }
        }
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        // Every file parses; every acknowledged piece still holds what was saved under its number.
        let doc = ws.read(1).unwrap();
        assert!(doc.notes.is_array());
        for (&n, &(r, seq)) in &acked {
            assert_eq!(
                ws.load_piece(1, n).unwrap(),
                json!({"round": r, "seq": seq}),
                "piece {n}"
            );
        }
        for p in ws.list_pieces(1).unwrap() {
            ws.load_piece(1, p.piece).unwrap();
        }
        ws.check(true, Timestamp(1_800_000_000)).unwrap();
        assert_eq!(
            ws.check(false, Timestamp(1_800_000_000)).unwrap(),
            vec![],
            "round {round}"
        );
    }
    assert!(acked.len() >= 20);
}

fn adopted_copy() -> (tempfile::TempDir, Workspaces) {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/adopted");
    copy_dir(&src, tmp.path());
    let ws = open(tmp.path());
    // Adopting a folder is an explicit act: it is given to its user.
    assert!(ws.mark(7, owner(7)).unwrap());
    (tmp, ws)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn a_folder_written_by_another_program_is_adopted_with_unknown_fields_kept() {
    let (tmp, ws) = adopted_copy();
    let original: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("users/7/workspace.json")).unwrap())
            .unwrap();
    let doc = ws.read(7).unwrap();
    assert_eq!(doc.piece_count, 2);
    assert_eq!(doc.note_count(), 2);
    assert_eq!(doc.canvas["width"], 800);
    assert_eq!(ws.load_piece(7, 1).unwrap()["title"], "Sunset");
    assert_eq!(ws.list_pieces(7).unwrap().len(), 2);
    ws.update(7, |d| d.add_note("third")).unwrap();
    let n = ws.save_piece(7, br#"{"title": "Dawn"}"#).unwrap();
    assert_eq!(n, 3);
    let after: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("users/7/workspace.json")).unwrap())
            .unwrap();
    for (k, v) in original.as_object().unwrap() {
        match k.as_str() {
            "notes" | "piece_count" => {}
            _ => assert_eq!(&after[k], v, "field {k} changed"),
        }
    }
    // The file's count is the one of its last write (the note): the save after it wrote
    // only the piece and `.pieces`; a read gives the gallery's count.
    assert_eq!(after["piece_count"], 2);
    assert_eq!(ws.read(7).unwrap().piece_count, 3);
    assert_eq!(after["notes"][2], "third");
    assert_eq!(after["notes"][1], json!({"text": "second", "pinned": true}));
    // The other program left its folder open to the machine's other users (0755, set here
    // whatever the umask): `check` says so, and a repair makes it private; nothing else is
    // wrong.
    {
        use std::os::unix::fs::PermissionsExt;
        let folder = tmp.path().join("users/7");
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let now = Timestamp(1_800_000_000);
    let found = ws.check(false, now).unwrap();
    assert!(
        found.len() == 1 && found[0].problem.contains("open to other users"),
        "{found:?}"
    );
    ws.check(true, now).unwrap();
    assert_eq!(ws.check(false, now).unwrap(), vec![]);
}

fn expect_corrupt_naming(err: Error, path: &Path) {
    match &err {
        Error::DamagedFile { path: p, .. } => assert_eq!(p, path),
        other => panic!("expected DamagedFile for {}, got {other:?}", path.display()),
    }
}

/// The largest size limit an application can give (`u64::MAX`, "no limit") reads and
/// writes as a limit: it wrapped to 0, and every document and piece then read as empty,
/// damaged, for a repair to move aside.
#[test]
fn the_largest_size_limit_reads_documents_and_pieces_back() {
    let tmp = tempfile::tempdir().unwrap();
    let unlimited = || WorkspaceOptions {
        max_doc_bytes: Some(u64::MAX),
        ..Default::default()
    };
    let ws = open_with(tmp.path(), unlimited());
    ws.update(1, |d| d.add_note("kept")).unwrap();
    let n = ws.save_piece(1, br#"{"title":"dawn"}"#).unwrap();
    drop(ws);
    // A new handle reads the files (the first one remembers what it wrote).
    let ws = open_with(tmp.path(), unlimited());
    assert_eq!(ws.read(1).unwrap().notes, serde_json::json!(["kept"]));
    assert_eq!(ws.load_piece(1, n).unwrap()["title"], "dawn");
}

#[test]
fn a_damaged_workspace_file_is_reported_with_its_path_and_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open_with(
        tmp.path(),
        WorkspaceOptions {
            max_doc_bytes: Some(1024),
            ..Default::default()
        },
    );
    ws.update(1, |_| Ok(())).unwrap();
    let file = tmp.path().join("users/1/workspace.json");
    for bad in [
        &b"{\"canvas\": {\"a\": 1"[..],
        b"hello",
        b"[1, 2]",
        b"{\"piece_count\": \"many\"}",
    ] {
        std::fs::write(&file, bad).unwrap();
        expect_corrupt_naming(ws.read(1).unwrap_err(), &file);
        expect_corrupt_naming(ws.update(1, |d| d.add_note("x")).unwrap_err(), &file);
        // A piece is saved beside it: a save never reads nor writes the document.
        let n = ws.save_piece(1, b"{}").unwrap();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            bad,
            "the damaged file was overwritten"
        );
        assert_eq!(ws.load_piece(1, n).unwrap(), json!({}));
        let problems = ws.check(false, Timestamp(1_800_000_000)).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].problem.matches("check --repair").count(),
            1,
            "{problems:?}"
        );
        let problems = ws.check(true, Timestamp(1_800_000_000)).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}

/// The files of the folder of user 1 under `root`, path and bytes, the lock file aside.
fn files_of(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.join("users/1")];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if e.file_name() != ".lock" {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A document or piece larger than the handle's limit is whole: every call names it with its
/// size, the limit and how to raise it, and a repair leaves it where it is (no fresh
/// document in its place, no piece in the trash); a handle with the larger limit reads it.
#[test]
fn a_file_over_the_size_limit_is_reported_and_left_in_place_never_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let limited = |n| WorkspaceOptions {
        max_doc_bytes: Some(n),
        ..Default::default()
    };
    let ws = open_with(tmp.path(), limited(1024));
    ws.save_piece(1, br#"{"small": 1}"#).unwrap();
    let doc = tmp.path().join("users/1/workspace.json");
    let big_doc = json!({
        "canvas": {"layers": ["x".repeat(2000)]},
        "notes": ["important note"],
        "piece_count": 2,
        "app_field": 42,
    });
    std::fs::write(&doc, big_doc.to_string()).unwrap();
    let piece = ws.piece_path(1, 2);
    let big_piece = json!({"img": "A".repeat(3000)}).to_string();
    std::fs::write(&piece, &big_piece).unwrap();
    private(&[&doc, &piece]);
    let before = files_of(tmp.path());
    match ws.read(1).unwrap_err() {
        Error::TooLarge { path, size, limit } => {
            assert_eq!((path, limit), (doc.clone(), 1024));
            assert_eq!(size, std::fs::metadata(&doc).unwrap().len());
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(ws.load_piece(1, 2), Err(Error::TooLarge { .. })));
    for repair in [false, true, false] {
        let problems = ws.check(repair, Timestamp(1_800_000_000)).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        for p in &problems {
            assert!(
                !p.problem.starts_with("fixed:")
                    && p.problem.contains("1024-byte limit")
                    && p.problem.contains("--max-doc-bytes")
                    && !p.problem.contains("moves it aside"),
                "{problems:?}"
            );
        }
        assert!(
            problems
                .iter()
                .any(|p| p.problem.contains("workspace.json"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.problem.contains("piece_000002.json"))
        );
        assert_eq!(files_of(tmp.path()), before, "repair: {repair}");
    }
    // With the application's larger limit, all of it reads, and nothing is wrong.
    let wide = open_with(tmp.path(), limited(1 << 20));
    let read = wide.read(1).unwrap();
    assert_eq!(read.notes, json!(["important note"]));
    assert_eq!(read.other["app_field"], 42);
    assert_eq!(
        wide.load_piece(1, 2).unwrap()["img"]
            .as_str()
            .unwrap()
            .len(),
        3000
    );
    assert!(
        wide.check(true, Timestamp(1_800_000_000))
            .unwrap()
            .is_empty()
    );
}

/// Python's `json.dumps` writes NaN and Infinity unless told not to: such a document or
/// piece is named with the token and where it is, never read as something else, and a
/// repair leaves it in place (no fresh document for one bad token); a piece given with one
/// is refused saying so.
#[test]
fn files_holding_nan_or_infinity_are_reported_and_left_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.save_piece(1, br#"{"title": "sunset"}"#).unwrap();
    let doc = tmp.path().join("users/1/workspace.json");
    std::fs::write(
        &doc,
        br#"{"canvas": {"strokes": [[0.5, NaN]]}, "notes": ["my long notes"], "piece_count": 1}"#,
    )
    .unwrap();
    let piece = ws.piece_path(1, 1);
    std::fs::write(&piece, b"{\"title\": \"sunset\",\n \"x\": -Infinity}").unwrap();
    private(&[&doc, &piece]);
    let before = files_of(tmp.path());
    match ws.read(1).unwrap_err() {
        Error::NotStrictJson {
            path,
            token,
            line,
            column,
        } => assert_eq!(
            (path, token.as_str(), line, column),
            (doc.clone(), "NaN", 1, 31)
        ),
        other => panic!("expected NotStrictJson, got {other:?}"),
    }
    let err = ws.load_piece(1, 1).unwrap_err();
    assert!(
        matches!(&err, Error::NotStrictJson { token, line: 2, .. } if token == "-Infinity"),
        "{err:?}"
    );
    assert!(matches!(
        ws.update(1, |d| d.add_note("x")),
        Err(Error::NotStrictJson { .. })
    ));
    for repair in [false, true] {
        let problems = ws.check(repair, Timestamp(1_800_000_000)).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        for p in &problems {
            assert!(
                !p.problem.starts_with("fixed:")
                    && p.problem.contains("JSON does not allow")
                    && p.problem.contains("left as it is"),
                "{problems:?}"
            );
        }
        assert_eq!(files_of(tmp.path()), before, "repair: {repair}");
    }
    let err = ws.save_piece(1, b"{\"x\": NaN}").unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { .. }) && err.to_string().contains("holds NaN"),
        "{err}"
    );
}

#[test]
fn oversized_documents_and_pieces_are_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open_with(
        tmp.path(),
        WorkspaceOptions {
            max_doc_bytes: Some(1024),
            ..Default::default()
        },
    );
    ws.update(1, |_| Ok(())).unwrap();
    let big = format!("{{\"x\": \"{}\"}}", "y".repeat(2000));
    assert!(matches!(
        ws.save_piece(1, big.as_bytes()),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        ws.update(1, |d| {
            d.canvas = json!("z".repeat(2000));
            Ok(())
        }),
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(ws.read(1).unwrap(), redkeep::WorkspaceDoc::default());
    assert!(matches!(
        ws.save_piece(1, b"not json"),
        Err(Error::InvalidInput { field: "piece", .. })
    ));
    // A text editor's byte order mark: said so, not "expected value at line 1".
    let bom = ws.save_piece(1, b"\xEF\xBB\xBF{\"a\": 1}").unwrap_err();
    assert!(bom.to_string().contains("byte order mark"), "{bom}");
    assert!(ws.list_pieces(1).unwrap().is_empty());
}

/// Reading and updating the document of `user` refuse with `UnsafePath`; a piece is still
/// saved, as a save does not open the document.
fn read_and_update_are_refused(ws: &Workspaces, user: u64) {
    assert!(matches!(ws.read(user), Err(Error::UnsafePath { .. })));
    assert!(matches!(
        ws.update(user, |_| Ok(())),
        Err(Error::UnsafePath { .. })
    ));
    let n = ws.save_piece(user, b"{}").unwrap();
    assert_eq!(ws.load_piece(user, n).unwrap(), json!({}));
}

#[test]
fn symlinks_planted_in_a_workspace_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |_| Ok(())).unwrap();
    let outside = tmp.path().join("outside.json");
    std::fs::write(&outside, b"{\"secret\": true}").unwrap();
    let file = tmp.path().join("users/1/workspace.json");
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&outside, &file).unwrap();
    read_and_update_are_refused(&ws, 1);
    assert_eq!(std::fs::read(&outside).unwrap(), b"{\"secret\": true}");
    assert!(
        std::fs::symlink_metadata(&file)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A symlinked user directory is refused as well.
    std::os::unix::fs::symlink(tmp.path().join("users/1"), tmp.path().join("users/2")).unwrap();
    assert!(matches!(ws.read(2), Err(Error::UnsafePath { .. })));
    // A piece that is a symlink is not read through.
    let piece = ws.piece_path(1, 7);
    std::os::unix::fs::symlink(&outside, &piece).unwrap();
    assert!(ws.load_piece(1, 7).is_err());
}

#[test]
fn entries_that_only_bear_a_pieces_name_are_skipped_kept_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 1);
    let outside = tmp.path().join("keep.json");
    std::fs::write(&outside, b"{\"mine\": true}").unwrap();
    let link = ws.piece_path(1, 2);
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let folder = ws.piece_path(1, 4);
    std::fs::create_dir(&folder).unwrap();
    private(&[&folder]);
    // A fresh handle lists the gallery: both numbers are taken, neither is touched.
    let ws = open(tmp.path());
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 5);
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 6);
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(folder.is_dir());
    assert_eq!(std::fs::read(&outside).unwrap(), b"{\"mine\": true}");
    assert_eq!(ws.read(1).unwrap().piece_count, 3);
    let problems = ws.check(false, Timestamp(1_800_000_000)).unwrap();
    assert_eq!(
        problems
            .iter()
            .filter(|p| p.problem.contains("is not a regular file"))
            .count(),
        2,
        "{problems:?}"
    );
    let fixed = ws.check(true, Timestamp(1_800_000_000)).unwrap();
    assert_eq!(fixed.len(), 2, "{fixed:?}");
    assert!(
        fixed.iter().all(|p| p.problem.starts_with("fixed:")),
        "{fixed:?}"
    );
    assert!(std::fs::symlink_metadata(&link).is_err() && !folder.exists());
    assert_eq!(std::fs::read(&outside).unwrap(), b"{\"mine\": true}");
    assert!(
        ws.check(false, Timestamp(1_800_000_000))
            .unwrap()
            .is_empty()
    );
    // Their numbers stay used.
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 7);
}

#[test]
fn a_symlink_in_place_of_a_users_folder_is_reported_and_moved_away() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |_| Ok(())).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("workspace.json"), b"{}").unwrap();
    let link = tmp.path().join("users/3");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    assert!(matches!(ws.read(3), Err(Error::UnsafePath { .. })));
    let problems = ws.check(false, Timestamp(1_800_000_000)).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.user_id == 3 && p.problem.contains("not a real directory")),
        "{problems:?}"
    );
    let fixed = ws.check(true, Timestamp(1_800_000_000)).unwrap();
    assert!(
        fixed
            .iter()
            .any(|p| p.user_id == 3 && p.problem.starts_with("fixed:")),
        "{fixed:?}"
    );
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(elsewhere.join("workspace.json").exists());
    assert!(
        ws.check(false, Timestamp(1_800_000_000))
            .unwrap()
            .is_empty()
    );
    // The user's folder is made afresh at the next write.
    ws.update(3, |_| Ok(())).unwrap();
}

/// A gallery that is a symlink (to another user's, say) is refused by every piece
/// operation; `check` reports it and a repair moves the link aside, leaving what it pointed
/// at alone, so the user's gallery works again.
#[test]
fn a_symlinked_gallery_is_reported_and_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    assert_eq!(ws.save_piece(1, b"{\"of\": 1}").unwrap(), 1);
    ws.update(2, |_| Ok(())).unwrap();
    let gallery = tmp.path().join("users/2/gallery");
    let _ = std::fs::remove_dir_all(&gallery);
    std::os::unix::fs::symlink(tmp.path().join("users/1/gallery"), &gallery).unwrap();
    let ws = open(tmp.path());
    assert!(ws.save_piece(2, b"{}").is_err());
    let problems = ws.check(false, Timestamp(1_800_000_000)).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.user_id == 2 && p.problem.contains("is not a real folder")),
        "{problems:?}"
    );
    let fixed = ws.check(true, Timestamp(1_800_000_000)).unwrap();
    assert!(
        fixed
            .iter()
            .any(|p| p.user_id == 2 && p.problem.starts_with("fixed:")),
        "{fixed:?}"
    );
    assert!(std::fs::symlink_metadata(&gallery).is_err());
    assert_eq!(ws.load_piece(1, 1).unwrap()["of"], 1);
    assert!(
        ws.check(false, Timestamp(1_800_000_000))
            .unwrap()
            .is_empty()
    );
    assert_eq!(ws.save_piece(2, b"{}").unwrap(), 1);
}

/// A FIFO at `workspace.json` once hung reads, saves and `check` (the last while holding the
/// user's lock): every one of them must now refuse it at once, leaving it in place.
/// A gallery's `.trash` that is a file or a symlink refuses every save and removal: `check`
/// names it, and a repair moves it into a fresh one that keeps the highest number it
/// recorded, so saves go on without giving a number twice; what a symlink pointed at stays.
#[test]
fn a_piece_trash_that_is_not_a_folder_is_reported_and_replaced_keeping_its_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    let now = Timestamp(1_800_000_000);
    // User 1: pieces 1 to 3, 3 removed, and the trash then moved elsewhere and linked back.
    for _ in 0..3 {
        ws.save_piece(1, b"{}").unwrap();
    }
    ws.delete_piece(1, 3).unwrap();
    let trash = tmp.path().join("users/1/.trash");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::rename(&trash, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &trash).unwrap();
    // User 2: a file in its place.
    ws.save_piece(2, b"{}").unwrap();
    let trash2 = tmp.path().join("users/2/.trash");
    std::fs::write(&trash2, b"junk").unwrap();
    private(&[&trash2]);
    // With the count to be worked out (as an import leaves it), a save lists the gallery
    // and its trash.
    for user in [1, 2] {
        std::fs::write(
            tmp.path().join(format!("users/{user}/.pieces")),
            br#"{"piece_count":null,"next_piece":null}"#,
        )
        .unwrap();
        assert!(ws.save_piece(user, b"{}").is_err());
        assert!(ws.delete_piece(user, 1).is_err());
    }
    let problems = ws.check(false, now).unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.problem.contains(".trash is not a real folder")
                && p.problem.contains("check --repair")),
        "{problems:?}"
    );
    let fixed = ws.check(true, now).unwrap();
    assert!(
        fixed.len() == 2 && fixed.iter().all(|p| p.problem.starts_with("fixed:")),
        "{fixed:?}"
    );
    assert!(
        fixed[0].problem.contains("keeping piece number 3"),
        "{fixed:?}"
    );
    // Kept by a marker named like no piece: nothing there to put back as piece 3.
    assert!(trash.join("numbers_used_up_to_000003").is_file());
    assert!(!trash.join("piece_000003.json").exists());
    assert!(ws.check(false, now).unwrap().is_empty());
    // Numbers go on past those the old trash recorded.
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 4);
    assert_eq!(ws.save_piece(2, b"{}").unwrap(), 2);
    ws.delete_piece(1, 1).unwrap();
    ws.delete_piece(2, 1).unwrap();
    assert_eq!(ws.read(1).unwrap().piece_count, 2);
    // The old trash is kept: the link in the new one, its target whole; the file too.
    assert!(elsewhere.join("piece_000003.json").is_file());
    let kept = trash.join("trash.not-a-folder-1800000000");
    assert!(std::fs::symlink_metadata(&kept).unwrap().is_symlink());
    assert_eq!(
        std::fs::read(trash2.join("trash.not-a-folder-1800000000")).unwrap(),
        b"junk"
    );
    assert!(ws.check(false, now).unwrap().is_empty());
}

#[test]
fn a_fifo_planted_as_workspace_json_or_a_piece_is_refused_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |_| Ok(())).unwrap();
    ws.save_piece(1, b"{}").unwrap();
    let file = tmp.path().join("users/1/workspace.json");
    std::fs::remove_file(&file).unwrap();
    let made = Command::new("mkfifo").arg(&file).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    read_and_update_are_refused(&ws, 1);
    let problems = ws.check(false, Timestamp(1_800_000_000)).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.problem.contains("not a regular file")),
        "{problems:?}"
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&file)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // A piece that is a FIFO is not read either.
    let piece = ws.piece_path(1, 1);
    std::fs::remove_file(&piece).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(&piece)
            .status()
            .unwrap()
            .success()
    );
    assert!(ws.load_piece(1, 1).is_err());
}

#[test]
fn a_piece_that_is_not_json_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |_| Ok(())).unwrap();
    ws.save_piece(1, b"{}").unwrap();
    let path = ws.piece_path(1, 1);
    std::fs::write(&path, b"{oops").unwrap();
    expect_corrupt_naming(ws.load_piece(1, 1).unwrap_err(), &path);
    let problems = ws.check(false, Timestamp(1_800_000_000)).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].problem.contains("piece_000001.json"),
        "{problems:?}"
    );
    // The advice to repair is given once, and the repair does what it says.
    assert_eq!(
        problems[0].problem.matches("check --repair").count(),
        1,
        "{problems:?}"
    );
    ws.save_piece(1, b"{}").unwrap();
    let fixed = ws.check(true, Timestamp(1_800_000_000)).unwrap();
    assert!(
        fixed.len() == 2
            && fixed.iter().all(|p| p.problem.starts_with("fixed:"))
            && fixed.iter().all(|p| !p.problem.contains("check --repair")),
        "{fixed:?}"
    );
    assert!(!path.exists());
    assert_eq!(ws.read(1).unwrap().piece_count, 1);
    assert!(
        ws.check(false, Timestamp(1_800_000_000))
            .unwrap()
            .is_empty()
    );
    // Its number is not handed out again.
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 3);
}

#[test]
fn a_missing_user_is_not_found_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    assert!(matches!(ws.read(9), Err(Error::NotFound { .. })));
    assert!(matches!(
        ws.update(9, |_| Ok(())),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        ws.save_piece(9, b"{}"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(ws.load_piece(9, 1), Err(Error::NotFound { .. })));
    assert!(!ws.dir(9).exists());
}

#[test]
fn numbering_continues_past_999999_and_lists_in_numeric_order() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |_| Ok(())).unwrap();
    std::fs::write(ws.piece_path(1, 999_999), b"{}").unwrap();
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 1_000_000);
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 1_000_001);
    assert!(ws.piece_path(1, 1_000_000).ends_with("piece_1000000.json"));
    let numbers: Vec<u64> = ws.list_pieces(1).unwrap().iter().map(|p| p.piece).collect();
    assert_eq!(numbers, vec![999_999, 1_000_000, 1_000_001]);
    assert_eq!(ws.read(1).unwrap().piece_count, 3);
}

#[test]
fn deleting_a_piece_keeps_numbers_unique_and_the_count_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |_| Ok(())).unwrap();
    for _ in 0..3 {
        ws.save_piece(1, b"{}").unwrap();
    }
    ws.delete_piece(1, 2).unwrap();
    assert_eq!(ws.read(1).unwrap().piece_count, 2);
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 4);
    assert!(matches!(ws.delete_piece(1, 2), Err(Error::NotFound { .. })));
}

/// A piece the library is given a number for is numbered within what leaves the gallery
/// room to save after it.
#[test]
fn a_given_piece_number_leaves_room_for_saves() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |_| Ok(())).unwrap();
    for n in [0, redkeep::workspace::MAX_GIVEN_PIECE + 1, u64::MAX] {
        let err = ws.put_piece(1, n, b"{}").unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput { field: "piece", .. })
                && err.to_string().contains("is outside 1 to 4503599627370495"),
            "{n}: {err}"
        );
    }
    assert!(ws.list_pieces(1).unwrap().is_empty());
    ws.put_piece(1, redkeep::workspace::MAX_GIVEN_PIECE, b"{}")
        .unwrap();
    assert_eq!(
        ws.save_piece(1, b"{}").unwrap(),
        redkeep::workspace::MAX_GIVEN_PIECE + 1
    );
}

#[test]
fn stale_temp_files_are_ignored_by_readers_and_cleaned_by_writers() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |_| Ok(())).unwrap();
    let stale: PathBuf = tmp.path().join("users/1/.rk-tmp-crashed");
    std::fs::write(&stale, b"{half").unwrap();
    assert_eq!(ws.read(1).unwrap().piece_count, 0);
    // A handle removes a folder's leftovers the first time it writes there: after a crash,
    // that is the restarted process's first write.
    let restarted = open(tmp.path());
    restarted.update(1, |d| d.add_note("x")).unwrap();
    assert!(!stale.exists());
    // In the gallery, the listing that picks the next piece number cleans up too: the first
    // save of a gallery by a handle (after a crash, the restarted process's) lists it.
    ws.save_piece(1, b"{}").unwrap();
    let stale_piece: PathBuf = tmp.path().join("users/1/gallery/.rk-tmp-crashed");
    std::fs::write(&stale_piece, b"{half").unwrap();
    assert_eq!(ws.list_pieces(1).unwrap().len(), 1);
    let restarted = open(tmp.path());
    assert_eq!(restarted.save_piece(1, b"{}").unwrap(), 2);
    assert!(!stale_piece.exists());
}

/// `piece_count` is the gallery's: an update that sets it keeps the gallery's count, so the
/// folder still passes `check`.
#[test]
fn an_update_cannot_set_the_piece_count() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.save_piece(1, b"{}").unwrap();
    ws.update(1, |d| {
        d.piece_count = 1000;
        d.add_note("kept")
    })
    .unwrap();
    let doc = ws.read(1).unwrap();
    assert_eq!(doc.piece_count, 1);
    assert_eq!(doc.notes.as_array().map(Vec::len), Some(1));
    assert!(ws.check(false, Timestamp(0)).unwrap().is_empty());
}

/// Temp folders (and files) a write or an import killed part way left in a user's folder or
/// gallery: `check` names them in notes (harmless, they fail no check), `check --repair`
/// removes them; the user's files stay.
#[test]
fn check_names_and_repair_removes_temp_entries_in_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.save_piece(1, b"{}").unwrap();
    let gallery = tmp.path().join("users/1/gallery");
    let folder = gallery.join(".rk-tmp-import1");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("piece_000002.json"), b"{}").unwrap();
    let file = tmp.path().join("users/1/.rk-tmp-doc");
    std::fs::write(&file, b"{half").unwrap();
    // Private, as redkeep makes its temp entries.
    private(&[&folder, &folder.join("piece_000002.json"), &file]);
    let problems = ws.check(false, Timestamp(0)).unwrap();
    let texts: Vec<&str> = problems.iter().map(|p| p.problem.as_str()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains(".rk-tmp-import1 is a temp folder")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .all(|t| t.starts_with("note: ") && t.contains("--repair")),
        "{texts:?}"
    );
    assert!(folder.exists() && file.exists());
    let fixed = ws.check(true, Timestamp(0)).unwrap();
    assert_eq!(fixed.len(), 2, "{fixed:?}");
    assert!(
        fixed
            .iter()
            .all(|p| p.problem.starts_with("fixed: removed"))
    );
    assert!(!folder.exists() && !file.exists());
    assert!(ws.check(false, Timestamp(0)).unwrap().is_empty());
    assert_eq!(ws.list_pieces(1).unwrap().len(), 1);

    // A gallery that is a symlink is never followed: what it points at stays.
    let elsewhere = tmp.path().join("elsewhere");
    let theirs = elsewhere.join(".rk-tmp-theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    ws.update(2, |_| Ok(())).unwrap();
    let _ = std::fs::remove_dir(tmp.path().join("users/2/gallery"));
    std::os::unix::fs::symlink(&elsewhere, tmp.path().join("users/2/gallery")).unwrap();
    let problems = ws.check(true, Timestamp(0)).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.user_id == 2 && p.problem.contains("symlink")),
        "{problems:?}"
    );
    assert!(theirs.exists());
}

/// Owners that change after their first `n` answers: what a deletion (or a restore) that
/// commits while a call makes or waits for a folder looks like to that call.
fn owners_changing_after(n: usize, then: Option<FolderOwner>) -> Owners {
    let asked = std::sync::atomic::AtomicUsize::new(0);
    Arc::new(move |id| {
        let k = asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(if k < n { Some(owner(id)) } else { then })
    })
}

#[test]
fn whose_a_folder_is_is_decided_under_its_lock() {
    // Deleted while the folder was being made: the new folder goes to the trash and the
    // write is refused.
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspaces::open(
        tmp.path(),
        WorkspaceOptions::default(),
        owners_changing_after(1, None),
    )
    .unwrap();
    assert!(matches!(
        ws.update(1, |d| d.add_note("too late")),
        Err(Error::NotFound { .. })
    ));
    assert!(!ws.dir(1).exists());
    let trashed: Vec<_> = std::fs::read_dir(tmp.path().join("trash"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        trashed.len() == 1 && trashed[0].starts_with("1-"),
        "{trashed:?}"
    );

    // An existing folder: the owner is read once the lock is held, so a deletion that
    // committed meanwhile refuses both reads and writes, and nothing is written.
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path()).update(1, |d| d.add_note("mine")).unwrap();
    let doc = tmp.path().join("users/1/workspace.json");
    let before = std::fs::read(&doc).unwrap();
    let ws = Workspaces::open(
        tmp.path(),
        WorkspaceOptions::default(),
        owners_changing_after(0, None),
    )
    .unwrap();
    assert!(matches!(ws.read(1), Err(Error::NotFound { .. })));
    assert!(matches!(
        ws.update(1, |d| d.add_note("not theirs")),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(std::fs::read(&doc).unwrap(), before);

    // Restored away (the id now names another account): never served to it.
    let ws = Workspaces::open(
        tmp.path(),
        WorkspaceOptions::default(),
        owners_changing_after(0, Some(owner(7))),
    )
    .unwrap();
    assert!(matches!(ws.read(1), Err(Error::UnsafePath { .. })));
    assert!(matches!(
        ws.update(1, |d| d.add_note("not theirs")),
        Err(Error::UnsafePath { .. })
    ));
    assert_eq!(std::fs::read(&doc).unwrap(), before);
}

#[test]
fn a_marker_replaced_under_a_handle_that_read_it_is_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |d| d.add_note("mine")).unwrap();
    ws.read(1).unwrap();
    // Another account's marker put in its place (by hand, or a restore from elsewhere):
    // the same handle, which has read the old marker, refuses the folder from now on.
    let marker = tmp.path().join("users/1/.owner");
    let other = format!("{}\n1700000000\n", "ab".repeat(16));
    std::fs::write(tmp.path().join("other-marker"), &other).unwrap();
    std::fs::rename(tmp.path().join("other-marker"), &marker).unwrap();
    assert!(matches!(ws.read(1), Err(Error::UnsafePath { .. })));
    assert!(matches!(
        ws.update(1, |d| d.add_note("not theirs")),
        Err(Error::UnsafePath { .. })
    ));
    // Rewritten in place (same inode) with another uid: read again too.
    ws.update(2, |_| Ok(())).unwrap();
    let marker2 = tmp.path().join("users/2/.owner");
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&marker2).unwrap());
    std::fs::write(&marker2, format!("{}\n17000000000\n", "cd".repeat(16))).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&marker2).unwrap()),
        ino
    );
    assert!(matches!(ws.read(2), Err(Error::UnsafePath { .. })));
}

#[test]
fn piece_numbers_stay_exact_when_other_handles_and_hands_change_the_gallery() {
    let tmp = tempfile::tempdir().unwrap();
    // Two handles on one root: two processes of one application.
    let (a, b) = (open(tmp.path()), open(tmp.path()));
    assert_eq!(a.save_piece(1, b"{}").unwrap(), 1);
    assert_eq!(a.save_piece(1, b"{}").unwrap(), 2);
    // The other process saves and deletes between this one's saves.
    assert_eq!(b.save_piece(1, b"{}").unwrap(), 3);
    assert_eq!(a.save_piece(1, b"{}").unwrap(), 4);
    b.delete_piece(1, 4).unwrap();
    assert_eq!(
        a.save_piece(1, b"{}").unwrap(),
        5,
        "a trashed number is not given again"
    );
    assert_eq!(a.read(1).unwrap().piece_count, 4);
    // An update between saves keeps the numbering.
    a.update(1, |d| d.add_note("n")).unwrap();
    assert_eq!(a.save_piece(1, b"{}").unwrap(), 6);
    // A piece put there by hand, with the document untouched, is never replaced.
    let planted = tmp.path().join("users/1/gallery/piece_000007.json");
    std::fs::write(&planted, br#"{"by":"hand"}"#).unwrap();
    assert_eq!(a.save_piece(1, b"{}").unwrap(), 8);
    assert_eq!(std::fs::read(&planted).unwrap(), br#"{"by":"hand"}"#);
    let numbers: Vec<u64> = a.list_pieces(1).unwrap().iter().map(|p| p.piece).collect();
    assert_eq!(numbers, vec![1, 2, 3, 5, 6, 7, 8]);
    assert_eq!(a.read(1).unwrap().piece_count, 7);
    assert_eq!(b.save_piece(1, b"{}").unwrap(), 9);
}

#[test]
fn folders_are_private_and_remove_moves_to_trash() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(5, |_| Ok(())).unwrap();
    ws.save_piece(5, b"{}").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ws.dir(5)), 0o700);
    assert_eq!(mode(&ws.dir(5).join("gallery")), 0o700);
    assert_eq!(mode(&ws.dir(5).join("workspace.json")), 0o600);
    assert_eq!(mode(&ws.piece_path(5, 1)), 0o600);
    ws.update(5, |_| Ok(())).unwrap(); // keeps the piece
    assert_eq!(ws.read(5).unwrap().piece_count, 1);
    let trash = ws
        .trash_folder(5, Timestamp(1_800_000_000))
        .unwrap()
        .unwrap();
    assert_eq!(trash, tmp.path().join("trash/5-1800000000"));
    assert!(trash.join("gallery/piece_000001.json").exists());
    assert!(!ws.exists(5));
    ws.update(5, |_| Ok(())).unwrap();
    let again = ws
        .trash_folder(5, Timestamp(1_800_000_000))
        .unwrap()
        .unwrap();
    assert_ne!(again, trash);
}

#[test]
fn a_waiting_writer_is_told_it_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let waits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = waits.clone();
    let ws = Arc::new(open_noticing(tmp.path(), move || {
        w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    ws.update(1, |_| Ok(())).unwrap();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let ws = ws.clone();
        std::thread::spawn(move || {
            ws.update(1, |_| {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(())
            })
            .unwrap()
        })
    };
    entered_rx.recv().unwrap();
    let writer = {
        let ws = ws.clone();
        std::thread::spawn(move || ws.save_piece(1, b"{}").unwrap())
    };
    // The writer announces the wait before blocking; then let the holder finish.
    while waits.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(writer.join().unwrap(), 1);
}

#[test]
fn unknown_numbers_survive_every_rewrite_exactly() {
    // The inputs the workspace_doc fuzz target first found changing on rewrite, and friends.
    let numbers = [
        "92233720368547775808",
        "9.223372036854777e+19",
        "9.223372036854776e+19",
        "-170141183460469231731687303715884105728",
        "0.1",
        "1e400",
        "2.5E-7",
    ];
    let (tmp, ws) = adopted_copy();
    let path = tmp.path().join("users/7/workspace.json");
    let mut text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    let fields: Vec<String> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| format!("\"n{i}\": {n}"))
        .collect();
    text = text.replacen('{', &format!("{{{},", fields.join(",")), 1);
    std::fs::write(&path, text).unwrap();
    // The same number, written the way serde_json writes it (`1e400` as `1e+400`): the
    // digits and exponent are kept as text, never rounded through f64.
    let kept = |what: &str| {
        let now: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (i, n) in numbers.iter().enumerate() {
            let want = serde_json::from_str::<Value>(n).unwrap().to_string();
            if i < 5 {
                // Written as given: no f64 rounding on the way in either.
                assert_eq!(want, *n);
            }
            assert_eq!(now[format!("n{i}")].to_string(), want, "after {what}: {n}");
        }
    };
    ws.update(7, |d| d.add_note("again")).unwrap();
    kept("update");
    let n = ws
        .save_piece(7, br#"{"big": 18446744073709551617}"#)
        .unwrap();
    kept("save_piece");
    assert_eq!(
        ws.load_piece(7, n).unwrap()["big"].to_string(),
        "18446744073709551617"
    );
    ws.delete_piece(7, 1).unwrap();
    kept("delete_piece");
    ws.check(true, Timestamp(1_800_000_000)).unwrap();
    kept("check --repair");
    ws.update(7, |_| Ok(())).unwrap();
    kept("a second update");
}

#[test]
fn a_document_changed_by_another_handle_or_by_hand_is_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    // Two handles on one root: two processes of one application.
    let (a, b) = (open(tmp.path()), open(tmp.path()));
    let notes = |ws: &Workspaces| ws.read(1).unwrap().notes;
    a.update(1, |d| d.add_note("a1")).unwrap();
    assert_eq!(notes(&a), json!(["a1"]));
    // The other process changes the document: this handle sees it, and its next update
    // builds on it rather than on what it wrote before.
    b.update(1, |d| d.add_note("b1")).unwrap();
    assert_eq!(notes(&a), json!(["a1", "b1"]));
    a.update(1, |d| d.add_note("a2")).unwrap();
    assert_eq!(notes(&b), json!(["a1", "b1", "a2"]));
    // Replaced by hand (a new file renamed into place) and rewritten in place (same inode,
    // another size): read again both times.
    let doc = tmp.path().join("users/1/workspace.json");
    let by_hand = tmp.path().join("by-hand.json");
    std::fs::write(&by_hand, br#"{"notes": ["by hand"], "piece_count": 0}"#).unwrap();
    std::fs::rename(&by_hand, &doc).unwrap();
    assert_eq!(notes(&a), json!(["by hand"]));
    std::fs::write(
        &doc,
        br#"{"notes": ["in place, longer"], "piece_count": 0}"#,
    )
    .unwrap();
    assert_eq!(notes(&a), json!(["in place, longer"]));
    a.update(1, |d| d.add_note("a3")).unwrap();
    assert_eq!(notes(&b), json!(["in place, longer", "a3"]));
    // Removed: an empty document again, for both.
    std::fs::remove_file(&doc).unwrap();
    assert_eq!(notes(&a), json!([]));
    assert_eq!(a.read(1).unwrap().piece_count, 0);
    // A large document (past what a handle keeps in memory) behaves the same.
    let big = "x".repeat(40 * 1024);
    a.update(1, |d| d.add_note(big.as_str())).unwrap();
    b.update(1, |d| d.add_note("b2")).unwrap();
    assert_eq!(notes(&a), json!([big, "b2"]));
}

/// A handle keeps a folder's lock file open between its locks. When another handle moves the
/// folder away and makes a new one, the kept file is the old folder's: the handle must lock
/// the new folder's file instead, so it still waits for the other handle's writer.
#[test]
fn a_kept_lock_file_of_a_folder_moved_away_locks_the_new_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<&str>();
    let waiting = tx.clone();
    let a = Arc::new(open_noticing(tmp.path(), move || {
        let _ = waiting.send("waits");
    }));
    let b = Arc::new(open(tmp.path()));
    // `a` locks the folder twice (the second time with the file it kept), then `b` moves the
    // folder to the trash and writes a new one.
    a.update(1, |d| d.add_note("a1")).unwrap();
    a.update(1, |d| d.add_note("a2")).unwrap();
    b.trash_folder(1, Timestamp(1_800_000_000))
        .unwrap()
        .unwrap();
    b.update(1, |d| d.add_note("b1")).unwrap();
    // `b` holds the new folder's lock while `a` writes: `a` must wait for it.
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let b = b.clone();
        std::thread::spawn(move || {
            b.update(1, |d| {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                d.add_note("b2")
            })
            .unwrap()
        })
    };
    entered_rx.recv().unwrap();
    let writer = {
        let a = a.clone();
        std::thread::spawn(move || {
            a.update(1, |d| d.add_note("a3")).unwrap();
            let _ = tx.send("wrote");
        })
    };
    assert_eq!(
        rx.recv().unwrap(),
        "waits",
        "a wrote without waiting for b's lock"
    );
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    writer.join().unwrap();
    assert_eq!(rx.recv().unwrap(), "wrote");
    assert_eq!(a.read(1).unwrap().notes, json!(["b1", "b2", "a3"]));
    // The old folder, in the trash, is as `a` left it.
    let old = std::fs::read(tmp.path().join("trash/1-1800000000/workspace.json")).unwrap();
    let old: Value = serde_json::from_slice(&old).unwrap();
    assert_eq!(old["notes"], json!(["a1", "a2"]));
}

/// A workspace call for a user inside an update's closure for the same user would wait for
/// the lock the update holds: it is refused with InvalidInput instead, and the folder works
/// on afterwards. A call for another user inside the closure goes through.
#[test]
fn a_call_for_the_same_user_inside_an_update_is_refused_not_a_deadlock() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Arc::new(open(tmp.path()));
    let (done, finished) = std::sync::mpsc::channel();
    let worker = ws.clone();
    std::thread::spawn(move || {
        let ws = &*worker;
        let mut errors = Vec::new();
        let nested: [(&str, &dyn Fn() -> redkeep::Result<()>); 5] = [
            ("read", &|| ws.read(1).map(drop)),
            ("update", &|| ws.update(1, |_| Ok(()))),
            ("save_piece", &|| ws.save_piece(1, b"{}").map(drop)),
            ("trash_folder", &|| {
                ws.trash_folder(1, Timestamp(1)).map(drop)
            }),
            ("copy_folder", &|| ws.copy_folder(1, &mut |_, _| Ok(()))),
        ];
        for (name, call) in nested {
            let outcome = ws.update(1, |_| call());
            errors.push((name, outcome.err()));
        }
        let other = ws.update(1, |_| ws.update(2, |d| d.add_note("from inside")));
        // Inside a shared hold (a copy's callback): a read goes through (two shared locks go
        // together), a change is refused.
        ws.save_piece(1, b"{}").unwrap();
        let mut inner = Vec::new();
        ws.copy_folder(1, &mut |_, _| {
            inner.push((ws.read(1).is_ok(), ws.update(1, |_| Ok(())).err()));
            Ok(())
        })
        .unwrap();
        assert!(!inner.is_empty());
        for (read, update) in inner {
            assert!(read, "a read inside a shared hold");
            errors.push(("update inside copy_folder", update));
        }
        done.send((errors, other.err())).unwrap();
    });
    // A deadlock would never answer: the wait turns it into a failure instead of a hung run.
    let (errors, other) = finished
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("a nested workspace call hung");
    for (name, err) in errors {
        match err {
            Some(Error::InvalidInput { reason, .. }) => {
                assert!(reason.contains("inside another"), "{name}: {reason}")
            }
            other => panic!("{name}: expected InvalidInput, got {other:?}"),
        }
    }
    assert!(other.is_none(), "{other:?}");
    assert_eq!(ws.read(2).unwrap().notes, json!(["from inside"]));
    ws.update(1, |d| d.add_note("after")).unwrap();
    assert_eq!(ws.read(1).unwrap().notes, json!(["after"]));
    assert_eq!(ws.list_pieces(1).unwrap().len(), 1);
}

/// A user of `rk` (with a password), for the tests that need an account behind a folder.
fn account(rk: &redkeep::Redkeep) -> u64 {
    rk.users()
        .create(redkeep::NewUser {
            email: "a@example.com".into(),
            password: Some("password123".into()),
            ..Default::default()
        })
        .unwrap()
        .user
        .id
}

/// The same nesting through a store write made inside the update: with other threads
/// writing, the write's closure runs on the committing thread of a batch, which must see the
/// update's lock as held for the caller (it waited for itself, and every writer of the store
/// with it).
#[test]
fn a_call_for_the_same_user_inside_an_update_and_a_write_is_refused_under_load() {
    let t = common::TestDir::new();
    let rk = t.open();
    let id = account(&rk);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let (rk, stop) = (rk.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    rk.store().write(|_| Ok(())).unwrap();
                }
            })
        })
        .collect();
    let (done, finished) = std::sync::mpsc::channel();
    let nested = rk.clone();
    std::thread::spawn(move || {
        let rk = &nested;
        let outcomes: Vec<_> = (0..50)
            .map(|_| {
                rk.workspaces()
                    .update(id, |_| {
                        rk.store().write(|_| rk.workspaces().read(id).map(drop))
                    })
                    .err()
            })
            .collect();
        done.send(outcomes).unwrap();
    });
    // A deadlock would never answer: the wait turns it into a failure instead of a hung run.
    let outcomes = finished
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("a workspace call inside a write inside an update hung");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    for err in outcomes {
        match err {
            Some(Error::InvalidInput { reason, .. }) => {
                assert!(reason.contains("inside another"), "{reason}")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
    rk.users().rename(id, Some("After".into()), None).unwrap();
}

/// After a crash mid-write, a temp file left in a user's folder does not fail `check` (a
/// monitoring job would page someone for a harmless leftover): it is a note; the user's
/// next write, by the process that opens the store after the crash, removes it.
#[test]
fn a_temp_file_of_an_interrupted_write_is_a_note_not_a_problem() {
    let t = common::TestDir::new();
    let rk = t.open();
    let id = account(&rk);
    rk.workspaces().save_piece(id, b"{}").unwrap();
    let left = rk.workspaces().dir(id).join("gallery/.rk-tmp-crashed");
    // The process that was writing it is gone: the store is opened again.
    drop(rk);
    std::fs::write(&left, b"{half").unwrap();
    std::fs::set_permissions(&left, std::fs::Permissions::from_mode(0o600)).unwrap();
    let rk = t.open();
    let report = rk.check(false).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains(".rk-tmp-crashed is a temp file of an interrupted write")),
        "{:?}",
        report.notes
    );
    rk.workspaces().save_piece(id, b"{}").unwrap();
    assert!(!left.exists());
    assert!(rk.check(false).unwrap().notes.is_empty());
}

/// Deleting a user from inside a workspace call for them is refused before anything is
/// deleted: the folder could not move to the trash afterwards, and the account would be gone
/// while the call said it failed.
#[test]
fn deleting_a_user_inside_their_workspace_call_deletes_nothing() {
    let t = common::TestDir::new();
    let rk = t.open();
    let id = account(&rk);
    rk.workspaces().update(id, |d| d.add_note("kept")).unwrap();
    let err = rk
        .workspaces()
        .update(id, |_| rk.users().delete(id).map(drop))
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { reason, .. } if reason.contains("inside another")),
        "{err:?}"
    );
    assert!(rk.users().get(id).unwrap().is_some());
    assert_eq!(rk.workspaces().read(id).unwrap().notes, json!(["kept"]));
    assert!(rk.check(false).unwrap().ok);
    // A trash folder that is a symlink (the folder could not move there): refused first too.
    let trash = rk.workspaces().root().join("trash");
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let _ = std::fs::remove_dir(&trash);
    std::os::unix::fs::symlink(&elsewhere, &trash).unwrap();
    assert!(matches!(
        rk.users().delete(id),
        Err(Error::UnsafePath { .. })
    ));
    assert!(rk.users().get(id).unwrap().is_some());
    std::fs::remove_file(&trash).unwrap();
    let deleted = rk.users().delete(id).unwrap();
    assert!(deleted.trash.is_some());
    assert!(rk.check(false).unwrap().ok);
}

/// `other` holds the fields redkeep does not know: one named like a field of its own would
/// be written over that field, so the write is refused and the document stays as it was.
#[test]
fn a_known_field_in_other_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |d| d.add_note("kept")).unwrap();
    for name in ["notes", "canvas", "piece_count"] {
        let err = ws
            .update(1, |d| {
                d.other.insert(name.into(), json!("over"));
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert!(err.to_string().contains(name), "{err}");
    }
    assert_eq!(ws.read(1).unwrap().notes, json!(["kept"]));
}

/// Purging the trash never deletes outside it: a trash folder that is a symlink is refused,
/// and an entry that is a symlink is removed as a link, its target kept.
#[test]
fn purging_the_trash_never_follows_a_symlink_out_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("inner")).unwrap();
    std::fs::write(outside.join("inner/precious"), b"keep").unwrap();
    let trash = ws.root().join("trash");
    std::fs::create_dir_all(&trash).unwrap();
    std::os::unix::fs::symlink(outside.join("inner"), trash.join("7-1000")).unwrap();
    let purged = ws.purge_trash(&|_| true).unwrap();
    assert_eq!(purged.len(), 1);
    assert!(std::fs::symlink_metadata(trash.join("7-1000")).is_err());
    assert_eq!(
        std::fs::read(outside.join("inner/precious")).unwrap(),
        b"keep"
    );
    std::fs::remove_dir(&trash).unwrap();
    std::os::unix::fs::symlink(&outside, &trash).unwrap();
    assert!(matches!(ws.trash(), Err(Error::UnsafePath { .. })));
    assert!(matches!(
        ws.purge_trash(&|_| true),
        Err(Error::UnsafePath { .. })
    ));
    assert_eq!(
        std::fs::read(outside.join("inner/precious")).unwrap(),
        b"keep"
    );
}

/// Folders 0700 and files 0600: a folder put back by hand or by another tool with looser
/// modes is reported by `check`, and `check --repair` makes it private again.
#[test]
fn folders_and_files_open_to_other_users_are_reported_and_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.update(1, |d| d.add_note("mine")).unwrap();
    ws.save_piece(1, b"{\"a\":1}").unwrap();
    let now = Timestamp(1_800_000_000);
    assert!(ws.check(false, now).unwrap().is_empty(), "made private");
    let user = tmp.path().join("users/1");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let set =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    set(&user, 0o755);
    set(&user.join("workspace.json"), 0o644);
    set(&user.join("gallery/piece_000001.json"), 0o604);
    let problems = ws.check(false, now).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .problem
            .contains("3 entr(ies) are open to other users"),
        "{problems:?}"
    );
    assert_eq!(mode(&user), 0o755, "a check alone changes nothing");
    let fixed = ws.check(true, now).unwrap();
    assert!(
        fixed.len() == 1 && fixed[0].problem.starts_with("fixed: 3 entr(ies)"),
        "{fixed:?}"
    );
    assert_eq!(mode(&user), 0o700);
    assert_eq!(mode(&user.join("workspace.json")), 0o600);
    assert_eq!(mode(&user.join("gallery/piece_000001.json")), 0o600);
    assert!(ws.check(false, now).unwrap().is_empty());
    assert_eq!(ws.read(1).unwrap().notes, serde_json::json!(["mine"]));
}

/// A document whose only fault is its `piece_count` (a string, a negative number) keeps
/// its canvas, notes and other fields through `check --repair`, with the gallery's count;
/// the file as it was is kept aside.
#[test]
fn a_repair_of_a_bad_piece_count_keeps_the_rest_of_the_document() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.save_piece(1, b"{\"p\":1}").unwrap();
    ws.update(1, |_| Ok(())).unwrap();
    let file = tmp.path().join("users/1/workspace.json");
    let now = Timestamp(1_800_000_000);
    for bad in ["\"1\"", "-3", "1.5"] {
        std::fs::write(
            &file,
            format!(
                r#"{{"canvas":{{"big":"drawing"}},"notes":["important"],"piece_count":{bad},"extra":"keep me"}}"#
            ),
        )
        .unwrap();
        let fixed = ws.check(true, now).unwrap();
        assert!(
            fixed.len() == 1 && fixed[0].problem.contains("every other field kept"),
            "{bad}: {fixed:?}"
        );
        let doc = ws.read(1).unwrap();
        assert_eq!(doc.piece_count, 1, "{bad}");
        assert_eq!(doc.canvas, serde_json::json!({"big": "drawing"}), "{bad}");
        assert_eq!(doc.notes, serde_json::json!(["important"]), "{bad}");
        assert_eq!(doc.other["extra"], "keep me", "{bad}");
    }
    // Not an object at all: a fresh document, as before.
    std::fs::write(&file, "[1, 2]").unwrap();
    let fixed = ws.check(true, now).unwrap();
    assert!(
        fixed[0].problem.contains("started a fresh document"),
        "{fixed:?}"
    );
    assert_eq!(ws.read(1).unwrap().piece_count, 1);
}

/// Piece numbers stop where a JSON client stops reading them exactly (2^53 − 1): a gallery
/// holding that number (imported or adopted) refuses the next save instead of handing out
/// a number its own export could not carry.
#[test]
fn saves_stop_at_the_largest_piece_number_a_json_client_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.save_piece(1, b"{}").unwrap();
    let last = redkeep::workspace::MAX_JSON_PIECE;
    let gallery = tmp.path().join("users/1/gallery");
    let name = format!("piece_{last:06}.json");
    std::fs::write(gallery.join(&name), b"{}").unwrap();
    private(&[&gallery.join(&name)]);
    // As an import or an adoption leaves it: the count to be worked out from the gallery.
    std::fs::remove_file(tmp.path().join("users/1/.pieces")).unwrap();
    let fresh = open(tmp.path());
    match fresh.save_piece(1, b"{}") {
        Err(Error::Denied { reason }) => assert!(reason.contains("every piece number"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fresh.list_pieces(1).unwrap().len(), 2);
}

/// The trash holds deleted users' files: an entry open to other users of this machine (put
/// back by hand, say) is reported by `check`, and `check --repair` makes it private.
#[test]
fn trash_entries_open_to_other_users_are_reported_and_made_private() {
    let t = common::TestDir::new();
    let rk = t.open();
    let u = rk
        .users()
        .create(redkeep::NewUser {
            email: "gone@example.com".into(),
            ..redkeep::NewUser::default()
        })
        .unwrap()
        .user;
    rk.workspaces().save_piece(u.id, b"{\"a\":1}").unwrap();
    let entry = rk.users().delete(u.id).unwrap().trash.unwrap();
    assert!(rk.check(false).unwrap().ok);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let piece = entry.join("gallery/piece_000001.json");
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&piece, std::fs::Permissions::from_mode(0o644)).unwrap();
    let report = rk.check(false).unwrap();
    assert!(!report.ok);
    assert!(
        report.problems.len() == 1
            && report.problems[0].starts_with("the workspace trash: 2 entr(ies) are open"),
        "{:?}",
        report.problems
    );
    assert_eq!(mode(&entry), 0o755, "a check alone changes nothing");
    let repaired = rk.check(true).unwrap();
    assert!(
        repaired
            .repaired
            .iter()
            .any(|r| r.starts_with("the workspace trash: fixed: 2 entr(ies)")),
        "{repaired:?}"
    );
    assert_eq!(mode(&entry), 0o700);
    assert_eq!(mode(&piece), 0o600);
    assert!(rk.check(false).unwrap().ok);
}

/// A removed piece is in the trash: `trash` lists it, dated by the store's clock when it was
/// removed, so it ages as a removed folder does; `purge_trash` deletes its content for good,
/// and its number is still never given again (an empty `numbers_used_up_to_<n>` keeps the
/// highest one, and is not listed).
#[test]
fn removed_pieces_are_listed_in_the_trash_age_and_are_purged_without_freeing_their_numbers() {
    let t = common::TestDir::new();
    let rk = t.open();
    let id = account(&rk);
    let ws = rk.workspaces();
    for body in [br#"{"a":1}"#, br#"{"b":2}"#, br#"{"c":3}"#] {
        ws.save_piece(id, body).unwrap();
    }
    ws.delete_piece(id, 3).unwrap();
    t.clock.advance(std::time::Duration::from_secs(40 * 86_400));
    let later = Timestamp(1_800_000_000 + 40 * 86_400);
    ws.delete_piece(id, 1).unwrap();
    let trash = ws.trash().unwrap();
    let pieces: Vec<_> = trash
        .iter()
        .map(|e| (e.user, e.piece, e.moved_at))
        .collect();
    assert_eq!(
        pieces,
        [
            (Some(id), Some(3), Some(Timestamp(1_800_000_000))),
            (Some(id), Some(1), Some(later)),
        ]
    );
    assert_eq!(
        trash[0].name,
        format!("users/{id}/.trash/piece_000003.json")
    );
    // Older than 30 days: the first removal only.
    let cutoff = Timestamp(later.0 - 30 * 86_400);
    let purged = ws
        .purge_trash(&|e| e.moved_at.is_some_and(|m| m < cutoff))
        .unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(purged[0].piece, Some(3));
    let left: Vec<_> = ws.trash().unwrap().iter().map(|e| e.piece).collect();
    assert_eq!(left, [Some(1)]);
    ws.purge_trash(&|_| true).unwrap();
    assert!(ws.trash().unwrap().is_empty());
    // No content is left anywhere in the folder's trash: only the empty marker that keeps
    // number 3, named like no piece.
    let trash_dir = ws.dir(id).join(".trash");
    let left: Vec<_> = std::fs::read_dir(&trash_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["numbers_used_up_to_000003"]);
    assert_eq!(std::fs::read(trash_dir.join(&left[0])).unwrap(), b"");
    assert_eq!(ws.save_piece(id, br#"{"d":4}"#).unwrap(), 4);
}

/// A `.lock` that is a symlink (to a file outside the folder) or a directory, as another
/// tool's lock may be, is refused by every operation with an error that names it and the
/// fix; a backup's copy of the folder goes on without it; `check` names it and a repair
/// moves it into the folder's trash (a symlink as a link, its target untouched), after which
/// the folder works again.
#[test]
fn a_lock_file_that_is_a_symlink_or_a_directory_is_named_and_moved_aside_by_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Timestamp(1_800_000_000);
    let ws = open(tmp.path());
    ws.save_piece(1, br#"{"a":1}"#).unwrap();
    ws.save_piece(2, br#"{"b":2}"#).unwrap();
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, b"precious").unwrap();
    let lock1 = tmp.path().join("users/1/.lock");
    std::fs::remove_file(&lock1).unwrap();
    std::os::unix::fs::symlink(&outside, &lock1).unwrap();
    let lock2 = tmp.path().join("users/2/.lock");
    std::fs::remove_file(&lock2).unwrap();
    std::fs::create_dir(&lock2).unwrap();
    private(&[&lock2]);
    // A new handle: this one keeps the old lock files open.
    let ws = open(tmp.path());
    for (user, kind) in [(1, "a symlink"), (2, "a directory")] {
        for err in [
            ws.read(user).unwrap_err(),
            ws.save_piece(user, b"{}").unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(matches!(err, Error::UnsafePath { .. }), "{text}");
            assert!(
                text.contains(&format!("users/{user}/.lock"))
                    && text.contains(kind)
                    && text.contains("check --repair"),
                "{text}"
            );
        }
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    // A backup copies the folder's files, and names the lock it did not keep.
    let mut copied = Vec::new();
    let skipped = ws
        .copy_folder_timed(1, &mut |rel, _, _| {
            copied.push(rel.to_path_buf());
            Ok(())
        })
        .unwrap();
    assert!(
        copied.contains(&PathBuf::from("1/gallery/piece_000001.json")),
        "{copied:?}"
    );
    assert_eq!(skipped, [PathBuf::from("1/.lock")]);
    let problems = ws.check(false, now).unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.problem.contains(".lock is a") && p.problem.contains("check --repair")),
        "{problems:?}"
    );
    let fixed = ws.check(true, now).unwrap();
    assert!(
        fixed.len() == 2 && fixed.iter().all(|p| p.problem.starts_with("fixed:")),
        "{fixed:?}"
    );
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    let kept = tmp.path().join("users/1/.trash/lock.not-a-file-1800000000");
    assert!(std::fs::symlink_metadata(&kept).unwrap().is_symlink());
    assert!(
        tmp.path()
            .join("users/2/.trash/lock.not-a-file-1800000000")
            .is_dir()
    );
    assert!(ws.check(false, now).unwrap().is_empty());
    assert_eq!(ws.load_piece(1, 1).unwrap()["a"], 1);
    assert_eq!(ws.save_piece(2, b"{}").unwrap(), 2);
}

/// JSON nested deeper than redkeep reads (Python's `json` writes up to about 1000 levels) is
/// valid: such a document or piece is named as too deep, never as damaged, and a repair
/// leaves it where it is (no fresh document in its place, no piece in the trash). A hostile
/// file of a million open brackets costs no stack: it is refused, and, never closed, is
/// taken for damaged.
#[test]
fn deeply_nested_documents_and_pieces_are_reported_and_left_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Timestamp(1_800_000_000);
    let ws = open(tmp.path());
    ws.save_piece(1, br#"{"a": 1}"#).unwrap();
    let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
    let doc = tmp.path().join("users/1/workspace.json");
    std::fs::write(
        &doc,
        format!(
            r#"{{"canvas":{{"k":1}},"notes":["keep me"],"piece_count":2,"app":"x","tree":{deep}}}"#
        ),
    )
    .unwrap();
    let piece = ws.piece_path(1, 2);
    std::fs::write(&piece, &deep).unwrap();
    private(&[&doc, &piece]);
    let before = files_of(tmp.path());
    match ws.read(1).unwrap_err() {
        Error::TooDeep { path, depth, limit } => {
            assert_eq!((path, depth, limit), (doc.clone(), 151, 127));
        }
        other => panic!("expected TooDeep, got {other:?}"),
    }
    match ws.load_piece(1, 2).unwrap_err() {
        Error::TooDeep { path, depth, .. } => assert_eq!((path, depth), (piece.clone(), 150)),
        other => panic!("expected TooDeep, got {other:?}"),
    }
    for repair in [false, true, false] {
        let problems = ws.check(repair, now).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        for p in &problems {
            assert!(
                !p.problem.starts_with("fixed:")
                    && p.problem.contains("levels deep")
                    && !p.problem.contains("not valid JSON")
                    && !p.problem.contains("damaged:"),
                "{problems:?}"
            );
        }
        assert_eq!(files_of(tmp.path()), before, "repair: {repair}");
    }
    // Hostile: a million brackets opened, none closed. No stack overflow; it is damaged.
    std::fs::write(&piece, "[".repeat(1_000_000)).unwrap();
    assert!(matches!(
        ws.load_piece(1, 2),
        Err(Error::DamagedFile { .. })
    ));
    // A million opened and closed: too deep, read without recursing that deep either.
    let hostile = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    std::fs::write(&piece, &hostile).unwrap();
    std::fs::write(&doc, format!(r#"{{"t":{hostile}}}"#)).unwrap();
    assert!(matches!(
        ws.load_piece(1, 2),
        Err(Error::TooDeep {
            depth: 1_000_000,
            ..
        })
    ));
    assert!(matches!(ws.read(1), Err(Error::TooDeep { .. })));
    let before = files_of(tmp.path());
    assert_eq!(ws.check(true, now).unwrap().len(), 2);
    assert_eq!(files_of(tmp.path()), before);
}

/// What `check --repair` keeps in a user folder's `.trash/` (a damaged `workspace.json`, a
/// gallery or a piece trash that was no real folder) is listed by `trash`, dated by the
/// repair, and purged like the rest, by age or all at once; the numbers the trash keeps are
/// still never given again.
#[test]
fn copies_a_repair_keeps_in_a_folders_trash_are_listed_and_purged() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Timestamp(1_800_000_000);
    let ws = open(tmp.path());
    ws.save_piece(1, br#"{"a": 1}"#).unwrap();
    ws.save_piece(1, br#"{"b": 2}"#).unwrap();
    ws.delete_piece(1, 2).unwrap();
    ws.save_piece(2, b"{}").unwrap();
    let doc = tmp.path().join("users/1/workspace.json");
    std::fs::write(&doc, b"garbage").unwrap();
    let gallery = tmp.path().join("users/2/gallery");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::rename(&gallery, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &gallery).unwrap();
    let trash2 = tmp.path().join("users/2/.trash");
    std::fs::write(&trash2, b"junk").unwrap();
    private(&[&doc, &trash2]);
    let ws = open(tmp.path());
    let fixed = ws.check(true, now).unwrap();
    assert!(
        fixed.len() >= 3 && fixed.iter().all(|p| p.problem.starts_with("fixed:")),
        "{fixed:?}"
    );
    let listed: Vec<_> = ws
        .trash()
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.name.clone(),
                e.user,
                e.piece,
                e.moved_at,
                e.in_user_folder(),
            )
        })
        .collect();
    let copy = |user: u64, name: &str| {
        (
            format!("users/{user}/.trash/{name}-1800000000"),
            Some(user),
            None,
            Some(now),
            true,
        )
    };
    for expected in [
        copy(1, "workspace.json.corrupt"),
        copy(2, "gallery.not-a-folder"),
        copy(2, "trash.not-a-folder"),
    ] {
        assert!(listed.contains(&expected), "{expected:?} in {listed:?}");
    }
    // And user 1's removed piece 2.
    assert_eq!(listed.len(), 4, "{listed:?}");
    // Not older than the repair: a purge by age keeps them.
    assert!(
        ws.purge_trash(&|e| e.piece.is_none() && e.moved_at.is_some_and(|t| t < now))
            .unwrap()
            .is_empty()
    );
    let purged = ws.purge_trash(&|e| e.user == Some(2)).unwrap();
    assert_eq!(purged.len(), 2, "{purged:?}");
    // The link went, never what it pointed at.
    assert!(elsewhere.join("piece_000001.json").is_file());
    assert_eq!(ws.purge_trash(&|_| true).unwrap().len(), 2);
    assert!(ws.trash().unwrap().is_empty());
    // Only the marker that keeps user 1's number 2 is left, named like no piece.
    let left: Vec<_> = std::fs::read_dir(ws.dir(1).join(".trash"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["numbers_used_up_to_000002"]);
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 3);
}

/// A piece a repair moves to the trash (damaged, or no regular file) ages there from the
/// repair, as a removed piece does from its removal: a purge of entries older than some
/// days, run after the repair, does not delete it at once for its old modification time.
#[test]
fn a_piece_a_repair_moves_to_the_trash_ages_from_the_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Timestamp(1_800_000_000);
    let ws = open(tmp.path());
    ws.save_piece(1, br#"{"a": 1}"#).unwrap();
    ws.save_piece(1, br#"{"b": 2}"#).unwrap();
    let piece = ws.piece_path(1, 1);
    std::fs::write(&piece, b"garbage").unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_577_836_800);
    std::fs::File::options()
        .write(true)
        .open(&piece)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let ws = open(tmp.path());
    let fixed = ws.check(true, now).unwrap();
    assert!(
        fixed
            .iter()
            .any(|p| p.problem.contains("piece_000001.json")),
        "{fixed:?}"
    );
    let trash = ws.trash().unwrap();
    assert_eq!(trash.len(), 1, "{trash:?}");
    assert_eq!((trash[0].piece, trash[0].moved_at), (Some(1), Some(now)));
    let cutoff = Timestamp(now.0 - 30 * 86_400);
    assert!(
        ws.purge_trash(&|e| e.moved_at.is_some_and(|t| t < cutoff))
            .unwrap()
            .is_empty()
    );
    assert_eq!(std::fs::read(&trash[0].path).unwrap(), b"garbage");
}

/// Purging the removed piece with the highest number leaves an empty
/// `numbers_used_up_to_<n>` in its place, never a file named like the piece (anyone putting
/// that back got `{}`): the trash lists nothing, `check` finds nothing, and the number is
/// never given again. A later purge of a higher number replaces the marker.
#[test]
fn purging_the_highest_removed_piece_leaves_a_number_marker_not_a_piece() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Timestamp(1_800_000_000);
    let ws = open(tmp.path());
    for body in [r#"{"p":1}"#, r#"{"p":2}"#, r#"{"p":3}"#] {
        ws.save_piece(1, body.as_bytes()).unwrap();
    }
    ws.delete_piece(1, 2).unwrap();
    ws.delete_piece(1, 3).unwrap();
    assert_eq!(ws.purge_trash(&|_| true).unwrap().len(), 2);
    let trash = ws.dir(1).join(".trash");
    let names = || {
        let mut n: Vec<_> = std::fs::read_dir(&trash)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(), ["numbers_used_up_to_000003"]);
    assert_eq!(
        std::fs::read(trash.join("numbers_used_up_to_000003")).unwrap(),
        b""
    );
    assert!(ws.trash().unwrap().is_empty());
    assert!(ws.check(false, now).unwrap().is_empty());
    // A handle that looks afresh still skips the number.
    let ws = open(tmp.path());
    assert_eq!(ws.save_piece(1, br#"{"p":4}"#).unwrap(), 4);
    ws.delete_piece(1, 4).unwrap();
    assert_eq!(ws.purge_trash(&|_| true).unwrap().len(), 1);
    assert_eq!(names(), ["numbers_used_up_to_000004"]);
    assert_eq!(open(tmp.path()).save_piece(1, b"{}").unwrap(), 5);
}

/// Data dirs of earlier versions keep numbers with a `{}` named like the removed piece: it
/// is still no entry of the trash, and still keeps its number (and a purge next to it keeps
/// working).
#[test]
fn an_old_empty_object_number_keeper_still_keeps_its_number() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.save_piece(1, br#"{"p":1}"#).unwrap();
    ws.delete_piece(1, 1).unwrap();
    let trash = ws.dir(1).join(".trash");
    std::fs::write(trash.join("piece_000007.json"), b"{}").unwrap();
    private(&[&trash.join("piece_000007.json")]);
    let listed: Vec<_> = ws.trash().unwrap().into_iter().map(|e| e.piece).collect();
    assert_eq!(listed, [Some(1)]);
    assert_eq!(ws.purge_trash(&|_| true).unwrap().len(), 1);
    assert!(trash.join("piece_000007.json").is_file());
    // A folder of those versions has no `.pieces`: a save lists the gallery and its trash.
    std::fs::remove_file(ws.dir(1).join(".pieces")).unwrap();
    let ws = open(tmp.path());
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 8);
}

/// A `.trash` that is no real folder, whose highest number only a marker recorded (left by
/// an import or a purge), is replaced by a fresh one that keeps that number.
#[test]
fn a_piece_trash_replaced_by_a_repair_keeps_the_number_of_its_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Timestamp(1_800_000_000);
    let ws = open(tmp.path());
    for _ in 0..5 {
        ws.save_piece(1, br#"{"p":0}"#).unwrap();
    }
    ws.delete_piece(1, 5).unwrap();
    assert_eq!(ws.purge_trash(&|_| true).unwrap().len(), 1);
    let trash = tmp.path().join("users/1/.trash");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::rename(&trash, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &trash).unwrap();
    let ws = open(tmp.path());
    let fixed = ws.check(true, now).unwrap();
    assert!(
        fixed.len() == 1 && fixed[0].problem.contains("keeping piece number 5"),
        "{fixed:?}"
    );
    assert!(trash.join("numbers_used_up_to_000005").is_file());
    assert!(ws.trash().unwrap().iter().all(|e| e.piece.is_none()));
    assert_eq!(open(tmp.path()).save_piece(1, b"{}").unwrap(), 6);
}

/// The version of the file at `path`: its inode, bytes and modification time.
fn file_version(path: &Path) -> (u64, Vec<u8>, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.ino(), std::fs::read(path).unwrap(), m.modified().unwrap())
}

/// A save or removal of a piece writes the piece and its count (`.pieces`), never the
/// document: a user with a large workspace pays what the piece costs. Every read gives the
/// gallery's count, and the document's own `piece_count` catches up at its next write.
#[test]
fn a_piece_save_or_removal_never_rewrites_the_document_yet_every_read_counts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    let big = "x".repeat(256 * 1024);
    ws.update(1, |d| {
        d.notes = json!([big]);
        Ok(())
    })
    .unwrap();
    let doc = ws.dir(1).join("workspace.json");
    let before = file_version(&doc);
    for n in 1..=3 {
        assert_eq!(ws.save_piece(1, br#"{"p": 1}"#).unwrap(), n);
    }
    ws.delete_piece(1, 2).unwrap();
    assert_eq!(file_version(&doc), before, "the document was rewritten");
    // Every way of reading gives the gallery's count, from this handle or a fresh one.
    for (next, ws) in [(4, &ws), (5, &open(tmp.path()))] {
        assert_eq!(ws.read(1).unwrap().piece_count, 2);
        assert_eq!(ws.info(1).unwrap().piece_count, Some(2));
        assert_eq!(ws.save_piece(1, b"{}").unwrap(), next);
        assert_eq!(ws.read(1).unwrap().piece_count, 3);
        ws.delete_piece(1, next).unwrap();
    }
    assert!(
        ws.check(false, Timestamp(1_800_000_000))
            .unwrap()
            .is_empty()
    );
    // The file says the count of its last write, until the next one.
    let raw: Value = serde_json::from_slice(&std::fs::read(&doc).unwrap()).unwrap();
    assert_eq!(raw["piece_count"], 0);
    ws.update(1, |d| d.add_note("later")).unwrap();
    let raw: Value = serde_json::from_slice(&std::fs::read(&doc).unwrap()).unwrap();
    assert_eq!(raw["piece_count"], 2);
    assert_eq!(ws.read(1).unwrap().piece_count, 2);
}

/// A crash between the steps of a save (after its piece, before its count) or of a removal
/// (the count made unknown, the piece moved) leaves a state every read counts right and
/// `check` accepts; a count gone wrong by hand is reported, and a repair sets it.
#[test]
fn a_crash_between_a_piece_and_its_count_is_counted_right_and_checked_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    let now = Timestamp(1_800_000_000);
    for _ in 0..2 {
        ws.save_piece(1, b"{}").unwrap();
    }
    let tally = ws.dir(1).join(".pieces");
    let said = std::fs::read(&tally).unwrap();
    // A save stopped after its piece: piece 3 is there, `.pieces` still says 2, 3 next.
    std::fs::write(ws.piece_path(1, 3), b"{}").unwrap();
    private(&[&ws.piece_path(1, 3)]);
    assert_eq!(std::fs::read(&tally).unwrap(), said);
    let fresh = open(tmp.path());
    assert_eq!(fresh.read(1).unwrap().piece_count, 3);
    assert!(fresh.check(false, now).unwrap().is_empty());
    assert_eq!(fresh.save_piece(1, b"{}").unwrap(), 4);
    assert_eq!(fresh.read(1).unwrap().piece_count, 4);
    // A removal stopped after its piece moved: the count was made unknown first.
    std::fs::write(&tally, br#"{"piece_count":null,"next_piece":null}"#).unwrap();
    std::fs::create_dir(ws.dir(1).join(".trash")).unwrap();
    private(&[&ws.dir(1).join(".trash")]);
    std::fs::rename(
        ws.piece_path(1, 4),
        ws.dir(1).join(".trash/piece_000004.json"),
    )
    .unwrap();
    assert_eq!(open(tmp.path()).read(1).unwrap().piece_count, 3);
    assert!(ws.check(false, now).unwrap().is_empty());
    // Numbers go on past the removed one.
    assert_eq!(open(tmp.path()).save_piece(1, b"{}").unwrap(), 5);
    assert_eq!(ws.read(1).unwrap().piece_count, 4);
    // A count that is wrong (a hand edit): reported, and set from the gallery by a repair.
    std::fs::write(&tally, br#"{"piece_count":9,"next_piece":6}"#).unwrap();
    let problems = ws.check(false, now).unwrap();
    assert!(
        problems.len() == 1
            && problems[0].problem.contains("says 9 pieces")
            && problems[0].problem.contains("check --repair"),
        "{problems:?}"
    );
    let fixed = ws.check(true, now).unwrap();
    assert!(
        fixed.len() == 1 && fixed[0].problem.starts_with("fixed:"),
        "{fixed:?}"
    );
    assert_eq!(ws.read(1).unwrap().piece_count, 4);
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 6);
    assert!(ws.check(false, now).unwrap().is_empty());
}

/// Caps on one user's gallery, for the quota tests.
fn capped(pieces: Option<u64>, bytes: Option<u64>) -> WorkspaceOptions {
    WorkspaceOptions {
        max_pieces: pieces,
        max_gallery_bytes: bytes,
        ..Default::default()
    }
}

/// The cap a refused save names, and that its message tells the user what to do.
fn refused_over(e: Error) -> &'static str {
    match e {
        Error::QuotaExceeded { limit, reason } => {
            assert!(
                reason.contains("nothing was saved") && reason.contains("remove pieces"),
                "{reason}"
            );
            limit
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
}

/// A save past the piece cap is refused, changes no file, and fits again once a piece is
/// removed; the count comes from `.pieces`, or from the gallery when `.pieces` says none.
#[test]
fn a_save_past_the_piece_cap_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open_with(tmp.path(), capped(Some(2), None));
    ws.save_piece(1, b"{}").unwrap();
    ws.save_piece(1, b"{}").unwrap();
    let before = files_of(tmp.path());
    assert_eq!(
        refused_over(ws.save_piece(1, b"{}").unwrap_err()),
        "max_pieces"
    );
    assert_eq!(files_of(tmp.path()), before);
    // Counted from the gallery: a count to be worked out, or no `.pieces` at all.
    let tally = tmp.path().join("users/1/.pieces");
    for unknown in [
        Some(&br#"{"piece_count":null,"next_piece":null}"#[..]),
        None,
    ] {
        match unknown {
            Some(bytes) => std::fs::write(&tally, bytes).unwrap(),
            None => std::fs::remove_file(&tally).unwrap(),
        }
        let before = files_of(tmp.path());
        assert_eq!(
            refused_over(ws.save_piece(1, b"{}").unwrap_err()),
            "max_pieces"
        );
        assert_eq!(files_of(tmp.path()), before);
    }
    assert_eq!(ws.list_pieces(1).unwrap().len(), 2);
    ws.delete_piece(1, 1).unwrap();
    assert_eq!(ws.save_piece(1, b"{}").unwrap(), 3);
    assert_eq!(
        refused_over(ws.save_piece(1, b"{}").unwrap_err()),
        "max_pieces"
    );
    // `Some(u64::MAX)` lifts it.
    let lifted = open_with(tmp.path(), capped(Some(u64::MAX), None));
    assert_eq!(lifted.save_piece(1, b"{}").unwrap(), 4);
}

/// Removed pieces wait in the folder's `.trash/`, which keeps at most the caps' worth of
/// them: saving and removing in turn cannot fill the disk past the caps. The oldest removed
/// go for good first, and their numbers are never given again.
#[test]
fn removed_pieces_past_the_caps_are_deleted_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let removed = |ws: &Workspaces| {
        let mut pieces: Vec<u64> = ws
            .trash()
            .unwrap()
            .iter()
            .filter(|e| e.user == Some(1))
            .filter_map(|e| e.piece)
            .collect();
        pieces.sort();
        pieces
    };
    let ws = open_with(tmp.path(), capped(Some(2), None));
    for n in 1..=5 {
        assert_eq!(ws.save_piece(1, br#"{"a":1}"#).unwrap(), n);
        ws.delete_piece(1, n).unwrap();
    }
    assert_eq!(removed(&ws), [4, 5]);
    assert_eq!(
        ws.save_piece(1, br#"{"a":1}"#).unwrap(),
        6,
        "a number is never given again"
    );
    // The bytes: 60 and 60 pass a cap of 100, so only the latest removed stays.
    let tmp = tempfile::tempdir().unwrap();
    let ws = open_with(tmp.path(), capped(None, Some(100)));
    let piece = format!("\"{}\"", "x".repeat(58)).into_bytes();
    for n in 1..=3 {
        assert_eq!(ws.save_piece(1, &piece).unwrap(), n);
        ws.delete_piece(1, n).unwrap();
    }
    assert_eq!(removed(&ws), [3]);
    assert_eq!(ws.save_piece(1, &piece).unwrap(), 4);
}

/// The bytes of a user's pieces together are capped: a piece that would pass the cap is
/// refused, one that fits exactly is saved, and a removal makes room; the bytes are kept in
/// `.pieces`, summed from the gallery when it does not say them (an older build's file).
#[test]
fn a_save_past_the_byte_cap_is_refused_and_a_removal_makes_room() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open_with(tmp.path(), capped(None, Some(100)));
    let piece = |len: usize| format!("\"{}\"", "x".repeat(len - 2)).into_bytes();
    assert_eq!(ws.save_piece(1, &piece(60)).unwrap(), 1);
    let before = files_of(tmp.path());
    assert_eq!(
        refused_over(ws.save_piece(1, &piece(41)).unwrap_err()),
        "max_gallery_bytes"
    );
    assert_eq!(files_of(tmp.path()), before);
    assert_eq!(ws.save_piece(1, &piece(40)).unwrap(), 2);
    let tally = tmp.path().join("users/1/.pieces");
    let said: Value = serde_json::from_slice(&std::fs::read(&tally).unwrap()).unwrap();
    assert_eq!(said["piece_bytes"], 100);
    // A new handle, a `.pieces` without bytes (summed), or none (the gallery listed).
    let again = open_with(tmp.path(), capped(None, Some(100)));
    assert_eq!(
        refused_over(again.save_piece(1, b"1").unwrap_err()),
        "max_gallery_bytes"
    );
    std::fs::write(&tally, br#"{"piece_count":2,"next_piece":3}"#).unwrap();
    assert_eq!(
        refused_over(again.save_piece(1, b"1").unwrap_err()),
        "max_gallery_bytes"
    );
    std::fs::remove_file(&tally).unwrap();
    assert_eq!(
        refused_over(again.save_piece(1, b"1").unwrap_err()),
        "max_gallery_bytes"
    );
    // Removing the 60-byte piece makes room for a 60-byte one, and no more.
    again.delete_piece(1, 1).unwrap();
    assert_eq!(
        refused_over(again.save_piece(1, &piece(61)).unwrap_err()),
        "max_gallery_bytes"
    );
    assert_eq!(again.save_piece(1, &piece(60)).unwrap(), 3);
    let said: Value = serde_json::from_slice(&std::fs::read(&tally).unwrap()).unwrap();
    assert_eq!(
        (said["piece_count"].clone(), said["piece_bytes"].clone()),
        (json!(2), json!(100))
    );
    assert!(
        again
            .check(false, Timestamp(1_800_000_000))
            .unwrap()
            .is_empty()
    );
}

/// Pieces past a cap (a deployment adopted with more, a cap lowered later) stay readable,
/// listed and removable; only new saves are refused, until removals bring the gallery under.
#[test]
fn pieces_past_a_lowered_cap_stay_readable_and_removable() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    for _ in 0..3 {
        ws.save_piece(1, br#"{"title": "sunset"}"#).unwrap();
    }
    for (pieces, bytes) in [(Some(2), None), (None, Some(20))] {
        let lowered = open_with(tmp.path(), capped(pieces, bytes));
        assert_eq!(lowered.list_pieces(1).unwrap().len(), 3);
        for n in 1..=3 {
            assert_eq!(lowered.load_piece(1, n).unwrap()["title"], "sunset");
        }
        assert_eq!(lowered.read(1).unwrap().piece_count, 3);
        refused_over(lowered.save_piece(1, b"{}").unwrap_err());
    }
    let lowered = open_with(tmp.path(), capped(Some(2), None));
    lowered.delete_piece(1, 1).unwrap();
    refused_over(lowered.save_piece(1, b"{}").unwrap_err());
    lowered.delete_piece(1, 2).unwrap();
    assert_eq!(lowered.save_piece(1, b"{}").unwrap(), 4);
}

/// Bytes `.pieces` says that are not the gallery's (pieces rewritten by hand or by another
/// program) never refuse a save that fits what is there: the gallery is summed first, and
/// the save writes its bytes; `check --repair` of a wrong count sets the bytes too.
#[test]
fn bytes_pieces_says_wrongly_never_refuse_a_save_that_fits() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = open(tmp.path());
    ws.save_piece(1, b"[1]").unwrap();
    ws.save_piece(1, b"[1,2]").unwrap();
    let tally = tmp.path().join("users/1/.pieces");
    let says = |text: &str| {
        std::fs::write(&tally, text).unwrap();
        private(&[&tally]);
    };
    let bytes_said = || {
        let v: Value = serde_json::from_slice(&std::fs::read(&tally).unwrap()).unwrap();
        v["piece_bytes"].clone()
    };
    says(r#"{"piece_count":2,"next_piece":3,"piece_bytes":999999}"#);
    let now = Timestamp(1_800_000_000);
    assert!(ws.check(false, now).unwrap().is_empty());
    let capped = open_with(tmp.path(), capped(None, Some(10)));
    assert_eq!(capped.save_piece(1, b"[]").unwrap(), 3);
    assert_eq!(bytes_said(), json!(10));
    assert_eq!(
        refused_over(capped.save_piece(1, b"1").unwrap_err()),
        "max_gallery_bytes"
    );
    // A wrong count is found and repaired, with the bytes.
    says(r#"{"piece_count":7,"next_piece":4,"piece_bytes":5}"#);
    let found = ws.check(false, now).unwrap();
    assert!(
        found.len() == 1
            && found[0].problem.contains("says 7 pieces of 5 bytes")
            && found[0]
                .problem
                .contains("the gallery holds 3 pieces of 10 bytes"),
        "{found:?}"
    );
    let fixed = ws.check(true, now).unwrap();
    assert!(
        fixed.len() == 1 && fixed[0].problem.starts_with("fixed:"),
        "{fixed:?}"
    );
    assert_eq!(bytes_said(), json!(10));
    assert!(ws.check(false, now).unwrap().is_empty());
}
