//! redkeep on PostgreSQL (a throwaway server on a unix socket, with PostgreSQL's durable
//! defaults) side by side with redkeep on its redb file, in one run and on the same data:
//! the hot reads (user by email, by id, session validate, permission check, page of 50), the
//! durable writes (create user, login) and logins from 16 threads at once.
//!
//! `cargo bench --features postgres --bench postgres`; `REDKEEP_BENCH_USERS` sets the
//! preloaded user count (default 10000). SQLite's figures for the same operations come from
//! `--bench compare` (BENCHMARKS.md).

#[allow(dead_code)]
#[path = "../tests/common/pg.rs"]
mod pg;

#[path = "common/users.rs"]
mod users;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use redkeep::auth::roles::RoleSpec;
use redkeep::auth::sessions::LoginMeta;
use redkeep::{NewUser, Options, PasswordParams, Redkeep, Timestamp, User};
use users::{email, user};

const PASSWORD: &str = "bench password 1";
/// Users with a password, a role and a session.
const ACCOUNTS: u64 = 64;

fn user_count() -> u64 {
    std::env::var("REDKEEP_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn options() -> Options {
    Options::default().password(PasswordParams::INSECURE_FAST)
}

struct Systems {
    _dir: tempfile::TempDir,
    redb: Redkeep,
    pg: Redkeep,
    // The same schema opened with `readable=off`: records not also written as jsonb.
    pg_bytea: Redkeep,
    tokens: Vec<String>,
    n: u64,
}

/// Fills a redb store, moves a copy of it to PostgreSQL, and opens both.
fn setup() -> Systems {
    let n = user_count();
    let dir = tempfile::tempdir().unwrap();
    let (source, redb_dir) = (dir.path().join("source"), dir.path().join("redb"));
    let mut tokens = Vec::new();
    {
        let rk = Redkeep::open(&source, options()).unwrap();
        rk.roles()
            .create(RoleSpec {
                name: "editor".into(),
                description: String::new(),
                permissions: vec!["docs.read".into(), "docs.edit".into()],
                priority: 1,
            })
            .unwrap();
        for i in 1..=ACCOUNTS {
            let u = rk
                .users()
                .create(NewUser {
                    email: email(i),
                    password: Some(PASSWORD.into()),
                    ..NewUser::default()
                })
                .unwrap()
                .user;
            rk.roles().grant(u.id, "editor", None).unwrap();
            let l = rk
                .sessions()
                .login(&email(i), PASSWORD, LoginMeta::default())
                .unwrap();
            tokens.push(l.token.expose().to_string());
        }
        rk.store()
            .write(|tx| {
                let t = tx.table::<User>();
                for _ in ACCOUNTS + 1..=n {
                    let id = t.next_id()?;
                    t.insert(&user(id))?;
                }
                Ok(())
            })
            .unwrap();
    }
    let url = pg::durable_server().fresh_url();
    let started = Instant::now();
    redkeep::ops::move_store(&source, None, &url, options()).unwrap();
    eprintln!("moved {n} users to PostgreSQL in {:?}", started.elapsed());
    let bytea_url = format!("{} readable=off", pg::durable_server().fresh_url());
    let started = Instant::now();
    redkeep::ops::move_store(&source, None, &bytea_url, options()).unwrap();
    eprintln!(
        "moved {n} users to PostgreSQL with readable=off in {:?}",
        started.elapsed()
    );
    for (what, u) in [("readable", &url), ("readable=off", &bytea_url)] {
        let rk = Redkeep::open(&source, options().store(u.as_str())).unwrap();
        eprintln!(
            "PostgreSQL tables, {what}: {} bytes",
            rk.store().size_bytes().unwrap()
        );
    }
    redkeep::ops::move_store(&source, None, redb_dir.to_str().unwrap(), options()).unwrap();
    Systems {
        redb: Redkeep::open(&redb_dir, options()).unwrap(),
        pg: Redkeep::open(&source, options().store(url.as_str())).unwrap(),
        pg_bytea: Redkeep::open(&source, options().store(format!("{url} readable=off"))).unwrap(),
        _dir: dir,
        tokens,
        n,
    }
}

fn systems(s: &Systems) -> [(&'static str, &Redkeep); 2] {
    [("redb", &s.redb), ("postgres", &s.pg)]
}

/// The systems the write groups compare: also PostgreSQL without the jsonb column filled.
fn writers(s: &Systems) -> [(&'static str, &Redkeep); 3] {
    [
        ("redb", &s.redb),
        ("postgres", &s.pg),
        ("postgres_readable_off", &s.pg_bytea),
    ]
}

/// What the jsonb column costs durable writes, in interleaved rounds: criterion's groups run
/// one system after the other, and PostgreSQL's durable writes drift between groups by more
/// than the difference. Prints the median time per write of each, and the median of the
/// per-round ratios.
fn readable_cost(s: &Systems) {
    let rounds: usize = std::env::var("REDKEEP_PG_AB_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    const PER_ROUND: u32 = 40;
    let fresh = AtomicU64::new(0);
    let create = |rk: &Redkeep| {
        let i = fresh.fetch_add(1, Ordering::Relaxed);
        rk.users()
            .create(NewUser {
                email: format!("ab{i}@example.com"),
                password: Some(PASSWORD.into()),
                ..NewUser::default()
            })
            .unwrap();
    };
    let login = |rk: &Redkeep| {
        let who = fresh.fetch_add(1, Ordering::Relaxed) % ACCOUNTS + 1;
        rk.sessions()
            .login(&email(who), PASSWORD, LoginMeta::default())
            .unwrap();
    };
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    type Op<'a> = (&'static str, &'a dyn Fn(&Redkeep));
    let ops: [Op<'_>; 2] = [("create user", &create), ("login", &login)];
    for (what, op) in ops {
        let mut times = [Vec::new(), Vec::new()];
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let mut this = [0.0; 2];
            for i in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                let rk = [&s.pg, &s.pg_bytea][i];
                let started = Instant::now();
                for _ in 0..PER_ROUND {
                    op(rk);
                }
                this[i] = started.elapsed().as_secs_f64() * 1e3 / f64::from(PER_ROUND);
                times[i].push(this[i]);
            }
            ratios.push(this[0] / this[1]);
        }
        eprintln!(
            "jsonb column, durable {what}: {:.2} ms with it, {:.2} ms with readable=off; \
             median ratio {:.2} over {rounds} interleaved rounds of {PER_ROUND}",
            median(&mut times[0]),
            median(&mut times[1]),
            median(&mut ratios)
        );
    }
}

fn bench(c: &mut Criterion) {
    let s = setup();
    readable_cost(&s);
    let counter = AtomicU64::new(0);
    let next = |m: u64| counter.fetch_add(7919, Ordering::Relaxed) % m + 1;

    let mut g = c.benchmark_group("user_by_email");
    for (name, rk) in systems(&s) {
        g.bench_function(name, |b| {
            b.iter(|| black_box(rk.users().by_email(&email(next(s.n))).unwrap()))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("user_by_id");
    for (name, rk) in systems(&s) {
        g.bench_function(name, |b| {
            b.iter(|| black_box(rk.users().get(next(s.n)).unwrap()))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("session_validate");
    for (name, rk) in systems(&s) {
        g.bench_function(name, |b| {
            b.iter(|| {
                let t = &s.tokens[(next(ACCOUNTS) - 1) as usize];
                black_box(rk.sessions().validate(t).unwrap())
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("permission_check");
    for (name, rk) in systems(&s) {
        g.bench_function(name, |b| {
            b.iter(|| {
                assert!(
                    rk.roles()
                        .has_permission(next(ACCOUNTS), "docs.edit")
                        .unwrap()
                )
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("page_of_50_by_created");
    let to = Timestamp(i64::MAX);
    for (name, rk) in systems(&s) {
        g.bench_function(name, |b| {
            b.iter(|| {
                let from = 1_800_000_000 + next(s.n.saturating_sub(60).max(1)) as i64;
                black_box(rk.users().created_between(Timestamp(from), to, 50).unwrap())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("durable_create_user");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    let created = AtomicU64::new(0);
    for (name, rk) in writers(&s) {
        g.bench_function(name, |b| {
            b.iter(|| {
                let i = created.fetch_add(1, Ordering::Relaxed);
                rk.users()
                    .create(NewUser {
                        email: format!("new{i}@example.com"),
                        password: Some(PASSWORD.into()),
                        ..NewUser::default()
                    })
                    .unwrap()
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("durable_login");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for (name, rk) in writers(&s) {
        g.bench_function(name, |b| {
            b.iter(|| {
                rk.sessions()
                    .login(&email(next(ACCOUNTS)), PASSWORD, LoginMeta::default())
                    .unwrap()
            })
        });
    }
    g.finish();
    // Time per login with 16 threads logging in at once (throughput = 1 / time).
    let mut g = c.benchmark_group("login_16_writers");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, rk) in writers(&s) {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(16);
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for t in 0..16u64 {
                        scope.spawn(move || {
                            for i in 0..per_thread {
                                let who = (t * 31 + i) % ACCOUNTS + 1;
                                rk.sessions()
                                    .login(&email(who), PASSWORD, LoginMeta::default())
                                    .unwrap();
                            }
                        });
                    }
                });
                // The run made 16 × per_thread logins; scale to the `iters` asked for.
                started
                    .elapsed()
                    .mul_f64(iters as f64 / (per_thread * 16).max(1) as f64)
            })
        });
    }
    g.finish();
    // Every login above unwrapped (none failed, retries allowed); the store is still sound.
    for (name, rk) in systems(&s) {
        let report = rk.check(false).unwrap();
        // The bulk-loaded users are bare records by design of the setup (no credential, no
        // org): `check` names them, and nothing else may show up.
        let bulk = |p: &str| {
            p.strip_prefix("user ")
                .and_then(|r| r.split_once(' '))
                .and_then(|(id, _)| id.parse::<u64>().ok())
                .is_some_and(|id| id > ACCOUNTS && id <= s.n)
        };
        let unexpected: Vec<&String> = report.problems.iter().filter(|p| !bulk(p)).collect();
        assert!(unexpected.is_empty(), "{name}: {unexpected:?}");
        eprintln!("{name}: check after the runs finds nothing but the bare bulk-loaded users");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
