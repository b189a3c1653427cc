//! A loop of hot reads for profilers: `cargo run --release --example read_profile -- WHAT N`
//! makes N calls on a store of 20,000 users (`REDKEEP_PROFILE_USERS` changes that), where
//! WHAT is `id` (redkeep, by id), `email` (redkeep, by email), `validate` (redkeep, session
//! validations over 1,000 sessions), `page` (redkeep, pages of 50 users by creation time),
//! `perm` (redkeep, permission checks, each user holding the roles `user` and `editor`), or
//! `bare`, `bare-email`, `bare-validate`, `bare-page`, `bare-perm`: the same on bare redb,
//! through the functions `benches/compare.rs` times (`benches/common/bare.rs`). Under
//! `valgrind --tool=callgrind`, the difference between N = 20,001 and N = 1 divided by 20,000
//! is the instruction count of one call: a figure that, unlike time, does not move with
//! whatever else the machine is doing.

#[path = "../benches/common/bare.rs"]
mod bare;
#[path = "../benches/common/sessions.rs"]
mod sessions;
#[path = "../benches/common/users.rs"]
mod users;

use std::hint::black_box;
use std::time::Instant;

use redkeep::{Durability, Mode, Options, PasswordParams, Redkeep, Timestamp, User};
use sessions::SessionRow;
use users::{email, user};

/// Users in the store: `REDKEEP_PROFILE_USERS`, 20,000 by default.
static USERS: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    std::env::var("REDKEEP_PROFILE_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 50)
        .unwrap_or(20_000)
});

fn bare(dir: &std::path::Path, n: u64, what: &str) {
    let db = redb::Database::create(dir.join("bare.redb")).unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(bare::USERS).unwrap();
        let mut c = w.open_table(bare::BY_CREATED).unwrap();
        let mut e = w.open_table(bare::BY_EMAIL).unwrap();
        for id in 1..=*USERS {
            let u = user(id);
            e.insert(u.email.as_str(), id).unwrap();
            t.insert(id, bare::enc(&u).as_slice()).unwrap();
            c.insert((u.created_at.0, id), ()).unwrap();
        }
        bare::put_roles(&w);
        let mut grants = w.open_table(bare::USER_ROLES).unwrap();
        for id in 1..=*USERS {
            grants.insert((id, 1), true).unwrap();
            grants.insert((id, 2), true).unwrap();
        }
    }
    w.commit().unwrap();
    // The session validation's sessions (as `benches/compare.rs`'s bare ones), with tokens as
    // long as redkeep's (the kind, `_` and 39 characters; digits here), so the hash costs
    // the same.
    let now = 1_900_000_000;
    let tokens: Vec<String> = (1..=1_000u64)
        .map(|k| format!("rks_{:039}", k * 7_777_777))
        .collect();
    if what == "bare-validate" {
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(bare::SESSIONS).unwrap();
            for (k, token) in (1..=1_000u64).zip(&tokens) {
                let row = SessionRow::new(k, k, now, now + 86_400);
                t.insert(
                    bare::token_hash(token).as_slice(),
                    bare::enc(&row).as_slice(),
                )
                .unwrap();
            }
        }
        w.commit().unwrap();
    }
    let started = Instant::now();
    let mut k = 1;
    for i in 0..n {
        k = (k + 7919) % *USERS + 1;
        match what {
            "bare-email" => {
                black_box(bare::by_email(&db, &email(k)).unwrap());
            }
            "bare-validate" => {
                let token = &tokens[(i * 7919 % 1_000) as usize];
                black_box(bare::validate(&db, token, now).unwrap());
            }
            "bare-page" => {
                let from = 1_800_000_000 + (i * 7919 % (*USERS - 50)) as i64;
                black_box(bare::page(&db, from));
            }
            "bare-perm" => assert!(black_box(bare::has_permission(&db, k, "docs.edit"))),
            _ => {
                black_box(bare::by_id(&db, k).unwrap());
            }
        }
    }
    eprintln!("{what}: {:?} per call", started.elapsed() / n.max(1) as u32);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "id".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    if what.starts_with("bare") {
        return bare(dir.path(), n, &what);
    }
    let mut options = Options {
        durability: Durability::Immediate,
        ..Options::default()
    };
    // A validation records the session's use once a minute; under a profiler's slowdown that
    // would be a write every few calls, which is not the read being measured. The idle
    // timeout goes up with it, or the sessions would expire during a long run.
    options.sessions.touch_interval = std::time::Duration::from_secs(24 * 3600);
    options.sessions.idle_timeout = std::time::Duration::from_secs(24 * 3600);
    options = options
        .mode(Mode::Exclusive)
        .password(PasswordParams::INSECURE_FAST);
    let rk = Redkeep::open(dir.path(), options).unwrap();
    rk.store()
        .write(|tx| {
            let t = tx.table::<User>();
            for _ in 0..*USERS {
                t.insert(&user(t.next_id()?))?;
            }
            Ok(())
        })
        .unwrap();
    if what == "validate" {
        let tokens: Vec<String> = (1..=1_000)
            .map(|k| {
                rk.users().set_password(k, "correct horse battery").unwrap();
                let l = rk
                    .sessions()
                    .login(&email(k), "correct horse battery", Default::default())
                    .unwrap();
                l.token.expose().to_string()
            })
            .collect();
        let started = Instant::now();
        for i in 0..n {
            let t = &tokens[(i * 7919 % 1_000) as usize];
            black_box(rk.sessions().validate(t).unwrap());
        }
        eprintln!(
            "validate: {:?} per read",
            started.elapsed() / n.max(1) as u32
        );
        return;
    }
    if what == "perm" {
        use redkeep::auth::roles::{RoleSpec, UserRole};
        rk.roles()
            .create(RoleSpec {
                name: "editor".into(),
                description: "edits documents".into(),
                permissions: vec!["docs.read".into(), "docs.edit".into()],
                priority: 10,
            })
            .unwrap();
        let ids: Vec<u64> = ["user", "editor"]
            .iter()
            .map(|r| rk.roles().get(r).unwrap().id)
            .collect();
        rk.store()
            .write(|tx| {
                let t = tx.table::<UserRole>();
                for user_id in 1..=*USERS {
                    for &role_id in &ids {
                        t.insert(&UserRole {
                            user_id,
                            role_id,
                            assigned_by: None,
                            active: true,
                            assigned_at: Timestamp(1_800_000_000),
                        })?;
                    }
                }
                Ok(())
            })
            .unwrap();
        let started = Instant::now();
        let mut k = 1;
        for _ in 0..n {
            k = (k + 7919) % *USERS + 1;
            assert!(black_box(
                rk.roles().has_permission(k, "docs.edit").unwrap()
            ));
        }
        eprintln!("perm: {:?} per check", started.elapsed() / n.max(1) as u32);
        return;
    }
    if what == "page" {
        let started = Instant::now();
        for i in 0..n {
            let from = 1_800_000_000 + (i * 7919 % (*USERS - 50)) as i64;
            let page = rk
                .users()
                .created_between(Timestamp(from), Timestamp(i64::MAX), 50)
                .unwrap();
            black_box(page);
        }
        eprintln!("page: {:?} per page", started.elapsed() / n.max(1) as u32);
        return;
    }
    let started = Instant::now();
    let mut k = 1;
    for _ in 0..n {
        k = (k + 7919) % *USERS + 1;
        let found = if what == "email" {
            rk.users().by_email(&email(k)).unwrap()
        } else {
            rk.users().get(k).unwrap()
        };
        black_box(found.expect("every user is there"));
    }
    eprintln!("{what}: {:?} per read", started.elapsed() / n.max(1) as u32);
}
