//! Threads started once that run their work together on every call (included with
//! `#[path]`), so the concurrency rows of `benches/compare.rs` and `examples/writers.rs`
//! time the work and not the starting of threads. (In `examples/writers`, 16 threads started
//! anew for every iteration made 10-15% fewer commits a second than 16 started once; in the
//! full comparison the two gave the same rates within its noise.)
#![allow(dead_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

/// One thread's work: called `times` times per run.
pub type Job<'a> = Box<dyn FnMut() + Send + 'a>;

/// One thread's setup, for work that must be made on its thread (a SQLite statement, which
/// cannot move between threads): it makes what the work needs, untimed, then hands the work
/// to the function it is given, which runs it on every run until the crew ends.
pub type Setup<'a> = Box<dyn FnOnce(&mut dyn FnMut(&mut dyn FnMut())) + Send + 'a>;

/// Starts a thread for each of `jobs`, then calls `body` with a function that makes every
/// thread call its job `times` times, all at once, and returns once all are done. The
/// threads end when `body` returns (or panics). A job that panics makes that run panic.
pub fn with_crew<R>(jobs: Vec<Job<'_>>, times: u64, body: impl FnOnce(&mut dyn FnMut()) -> R) -> R {
    let setups = jobs
        .into_iter()
        .map(|mut job| {
            Box::new(move |serve: &mut dyn FnMut(&mut dyn FnMut())| serve(&mut job)) as Setup<'_>
        })
        .collect();
    with_crew_set_up(setups, times, body)
}

/// [`with_crew`] with work made on each thread by its [`Setup`]. A setup that panics, or
/// returns without handing over its work, makes every run panic.
pub fn with_crew_set_up<R>(
    setups: Vec<Setup<'_>>,
    times: u64,
    body: impl FnOnce(&mut dyn FnMut()) -> R,
) -> R {
    let start = Barrier::new(setups.len() + 1);
    let end = Barrier::new(setups.len() + 1);
    let stop = AtomicBool::new(false);
    let failed = AtomicBool::new(false);
    std::thread::scope(|sc| {
        for setup in setups {
            let (start, end, stop, failed) = (&start, &end, &stop, &failed);
            sc.spawn(move || {
                let serve = |job: &mut dyn FnMut()| {
                    loop {
                        start.wait();
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        let ran = catch_unwind(AssertUnwindSafe(|| {
                            for _ in 0..times {
                                job();
                            }
                        }));
                        if ran.is_err() {
                            failed.store(true, Ordering::Release);
                        }
                        end.wait();
                    }
                };
                let mut served = false;
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    setup(&mut |job| {
                        served = true;
                        serve(job);
                    })
                }));
                if !served {
                    // Still at every barrier, so the crew neither hangs nor ends early.
                    failed.store(true, Ordering::Release);
                    serve(&mut || ());
                }
            });
        }
        // Lets the threads go however `body` ends; between runs they all wait at `start`.
        struct Release<'a>(&'a Barrier, &'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.1.store(true, Ordering::Release);
                self.0.wait();
            }
        }
        let _release = Release(&start, &stop);
        body(&mut || {
            start.wait();
            end.wait();
            assert!(
                !failed.load(Ordering::Acquire),
                "a thread's work panicked (its message is above)"
            );
        })
    })
}

/// `n` jobs that each call `work`.
pub fn alike<'a>(n: u64, work: &'a (dyn Fn() + Sync)) -> Vec<Job<'a>> {
    (0..n).map(|_| Box::new(work) as Job<'a>).collect()
}
