//! Whether a password-reset request takes as long for an email with no account as for one
//! with an account (its time must not tell which emails have accounts): `cargo bench --bench
//! reset_timing`. The two rows are requests for known and unknown emails on a store of 200
//! accounts; their medians should match within the noise.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use redkeep::{NewUser, Options, PasswordParams, Redkeep};

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let rk = Redkeep::open(
        dir.path(),
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .expect("a store");
    for i in 0..200 {
        rk.users()
            .create(NewUser {
                email: format!("u{i}@example.com"),
                password: Some("correct horse battery".into()),
                ..NewUser::default()
            })
            .expect("an account");
    }
    let next = AtomicU64::new(0);
    let mut g = c.benchmark_group("password_reset_request");
    g.bench_function("known_email", |b| {
        b.iter(|| {
            let i = next.fetch_add(1, Ordering::Relaxed) % 200;
            black_box(
                rk.recovery()
                    .request_password_reset(&format!("u{i}@example.com"))
                    .expect("a request"),
            )
        })
    });
    g.bench_function("unknown_email", |b| {
        b.iter(|| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            black_box(
                rk.recovery()
                    .request_password_reset(&format!("nobody{i}@example.com"))
                    .expect("a request"),
            )
        })
    });
    g.finish();
}

criterion_group!(reset_timing, benches);
criterion_main!(reset_timing);
