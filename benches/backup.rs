//! Backup and restore of a store with workspace folders, the way `redkeep backup` and
//! `redkeep restore` run them, beside the SHA-256 of the archive's bytes: a backup records
//! the checksum of every file it holds and a restore checks each, so that figure is what the
//! checksums add to each (each file is hashed once on either side).
//!
//! `cargo bench --bench backup`; `REDKEEP_BENCH_USERS` sets the user count (default 2000),
//! each with two gallery pieces of about 2 KiB. A first restore is timed once before the
//! rounds (see below why the rounds' restores are slower).

use std::hint::black_box;
use std::io::Read;

use criterion::{BatchSize, Criterion};
use redkeep::{NewUser, Options, PasswordParams, Redkeep, Timestamp};
use sha2::{Digest, Sha256};

fn options() -> Options {
    Options::default().password(PasswordParams::INSECURE_FAST)
}

fn main() {
    let users: u64 = std::env::var("REDKEEP_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rk = Redkeep::open(&dir, options()).unwrap();
    let piece = format!(
        r#"{{"title": "a harbour at dawn", "strokes": "{}"}}"#,
        "x".repeat(2000)
    );
    for i in 0..users {
        let u = rk
            .users()
            .create(NewUser {
                email: format!("user{i}@example.com"),
                password: Some("bench password 1".into()),
                ..NewUser::default()
            })
            .unwrap();
        for _ in 0..2 {
            rk.workspaces()
                .save_piece(u.user.id, piece.as_bytes())
                .unwrap();
        }
    }
    let archive = tmp.path().join("kept.bak");
    redkeep::ops::backup(&rk, &archive).unwrap();
    let bytes = std::fs::metadata(&archive).unwrap().len();
    println!(
        "{users} users, archive {:.1} MiB",
        bytes as f64 / f64::from(1 << 20)
    );

    // Once, before criterion: its rounds delete each restore's thousands of files before
    // the next makes as many, and ext4 then spends most of a round looking for free inodes
    // (`recently_deleted`, `find_inode_bit` in a profile), which a restore on its own does
    // not meet.
    let first = tempfile::tempdir().unwrap();
    let at = std::time::Instant::now();
    redkeep::ops::restore(
        &first.path().join("data"),
        &archive,
        false,
        Timestamp(1_900_000_000),
    )
    .unwrap();
    println!("a first restore: {:.2?}", at.elapsed());
    drop(first);

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group(format!("backup_{users}_users"));
    g.sample_size(10);
    g.bench_function("backup", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |out| redkeep::ops::backup(&rk, &out.path().join("b.bak")).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("restore", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |into| {
                redkeep::ops::restore(
                    &into.path().join("data"),
                    &archive,
                    false,
                    Timestamp(1_900_000_000),
                )
                .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("sha256_of_the_archive", |b| {
        b.iter(|| {
            let mut file = std::fs::File::open(&archive).unwrap();
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            black_box(hasher.finalize())
        })
    });
    g.finish();
    c.final_summary();
}
