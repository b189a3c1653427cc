//! Durable commits per second from 1, 4 and 16 threads of one Exclusive handle, the shape of
//! `benches/compare.rs`'s concurrency rows (each thread makes 8 one-user commits, threads
//! started once write together) but many more iterations, for comparing group-commit changes
//! quickly: `cargo run --release --example writers -- [USERS] [ROUNDS]` loads USERS users first
//! (default 100,000) and runs ROUNDS rounds (default 3), then prints each round's rates and
//! the 16-thread rate divided by the 1-thread rate of the same round. It also prints the
//! ceiling of perfect grouping: users a second when one thread commits them 16 to a
//! transaction, divided by the 1-thread rate (the most 16 writers could reach if every commit
//! carried all 16, with no hand-over between threads).

#[path = "../benches/common/crew.rs"]
mod crew;
#[path = "../benches/common/users.rs"]
mod users;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crew::{alike, with_crew};
use redkeep::{Durability, Mode, Options, PasswordParams, Redkeep, User};
use users::{insert_user, user};

/// Commits per second with `threads` threads (started once), each making 8 commits,
/// `iterations` times.
fn rate(rk: &Redkeep, next: &AtomicU64, threads: u64, iterations: usize) -> f64 {
    const PER_THREAD: u64 = 8;
    let insert = || insert_user(rk, next.fetch_add(1, Ordering::Relaxed));
    let took = with_crew(alike(threads, &insert), PER_THREAD, |run| {
        let started = Instant::now();
        for _ in 0..iterations {
            run();
        }
        started.elapsed()
    });
    (threads * PER_THREAD) as f64 * iterations as f64 / took.as_secs_f64()
}

/// Users committed per second by one thread making `iterations` durable commits of `per` users.
fn packed_rate(rk: &Redkeep, next: &AtomicU64, per: u64, iterations: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..iterations {
        rk.store()
            .write(|tx| {
                let t = tx.table::<User>();
                for _ in 0..per {
                    let mut u = user(next.fetch_add(1, Ordering::Relaxed));
                    u.id = t.next_id()?;
                    t.insert(&u)?;
                }
                Ok(())
            })
            .expect("a durable commit of several users");
    }
    (per as f64 * iterations as f64) / started.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let users: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().expect("a temp dir");
    let options = Options {
        durability: Durability::Immediate,
        ..Options::default()
    }
    .mode(Mode::Exclusive)
    .password(PasswordParams::INSECURE_FAST);
    let rk = Redkeep::open(dir.path(), options).expect("a new store");
    rk.store()
        .write(|tx| {
            let t = tx.table::<User>();
            for _ in 0..users {
                t.insert(&user(t.next_id()?))?;
            }
            Ok(())
        })
        .expect("the users loaded");
    let next = AtomicU64::new(users + 1);
    for round in 1..=rounds {
        let one = rate(&rk, &next, 1, 40);
        let four = rate(&rk, &next, 4, 20);
        let sixteen = rate(&rk, &next, 16, 10);
        let packed = packed_rate(&rk, &next, 16, 80);
        println!(
            "round {round}: 1 thread {one:.0}/s, 4 threads {four:.0}/s, 16 threads {sixteen:.0}/s; 16 ÷ 1 = {:.2}; ceiling (16 users a commit, one thread) {packed:.0}/s = {:.2} × 1",
            sixteen / one,
            packed / one
        );
    }
}
