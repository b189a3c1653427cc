//! A loop of hot reads for profilers: `cargo run --release --example read_profile -- WHAT N`
//! reads N users from a 20,000-user store, where WHAT is `id` (redkeep, by id), `email`
//! (redkeep, by email), `validate` (redkeep, N session validations over 1,000 sessions),
//! `page` (redkeep, N pages of 50 users by creation time), `perm` (redkeep, N permission
//! checks, each user holding the roles `user` and `editor`), `bare` (bare redb by id: a u64
//! key and a bincode value, the work `benches/compare.rs` gives bare redb), `bare-email`
//! (bare redb through an email table), `bare-page` (bare redb, pages of 50 through a
//! `(created, id)` index table), `bare-perm` (bare redb, the permission check of
//! `benches/compare.rs`) or `bare-validate` (bare redb, its session validation over 1,000
//! sessions). Under `valgrind --tool=callgrind`, the difference
//! between N = 100,001 and N = 1 divided by 100,000 is the instruction count of one read:
//! a figure that, unlike time, does not move with whatever else the machine is doing.

#[path = "../benches/common/sessions.rs"]
mod sessions;
#[path = "../benches/common/users.rs"]
mod users;

use std::hint::black_box;
use std::time::Instant;

use redb::{ReadableDatabase, TableDefinition};
use redkeep::{Durability, Mode, Options, PasswordParams, Redkeep, Timestamp, User};
use sessions::SessionRow;
use users::{email, user};

const USERS: u64 = 20_000;

fn bare(dir: &std::path::Path, n: u64, what: &str) {
    const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
    const CREATED: TableDefinition<(i64, u64), ()> = TableDefinition::new("users_created");
    const EMAILS: TableDefinition<&str, u64> = TableDefinition::new("users_email");
    const ROLES: TableDefinition<u64, &[u8]> = TableDefinition::new("roles");
    const USER_ROLES: TableDefinition<(u64, u64), bool> = TableDefinition::new("user_roles");
    let db = redb::Database::create(dir.join("bare.redb")).unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(TABLE).unwrap();
        let mut c = w.open_table(CREATED).unwrap();
        let mut e = w.open_table(EMAILS).unwrap();
        for id in 1..=USERS {
            let u = user(id);
            e.insert(u.email.as_str(), id).unwrap();
            let bytes = bincode::serde::encode_to_vec(&u, bincode::config::standard());
            t.insert(id, bytes.unwrap().as_slice()).unwrap();
            c.insert((u.created_at.0, id), ()).unwrap();
        }
        let mut roles = w.open_table(ROLES).unwrap();
        let user_perms = vec!["basic_access", "session_management", "profile_management"];
        let enc = |v: &(&str, Vec<&str>)| {
            bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
        };
        roles
            .insert(1, enc(&("user", user_perms)).as_slice())
            .unwrap();
        let editor = vec!["docs.read", "docs.edit"];
        roles
            .insert(2, enc(&("editor", editor)).as_slice())
            .unwrap();
        let mut grants = w.open_table(USER_ROLES).unwrap();
        for id in 1..=USERS {
            grants.insert((id, 1), true).unwrap();
            grants.insert((id, 2), true).unwrap();
        }
    }
    w.commit().unwrap();
    let started = Instant::now();
    if what == "bare-email" {
        let mut k = 1;
        for _ in 0..n {
            k = (k + 7919) % USERS + 1;
            let tx = db.begin_read().unwrap();
            let address = email(k);
            let id = tx
                .open_table(EMAILS)
                .unwrap()
                .get(address.as_str())
                .unwrap()
                .unwrap()
                .value();
            let got = tx.open_table(TABLE).unwrap().get(id).unwrap().unwrap();
            let decoded: (User, usize) =
                bincode::serde::decode_from_slice(got.value(), bincode::config::standard())
                    .unwrap();
            black_box(decoded);
        }
        eprintln!(
            "bare-email: {:?} per read",
            started.elapsed() / n.max(1) as u32
        );
        return;
    }
    if what == "bare-perm" {
        let mut k = 1;
        for _ in 0..n {
            k = (k + 7919) % USERS + 1;
            let tx = db.begin_read().unwrap();
            let got = tx.open_table(TABLE).unwrap().get(k).unwrap().unwrap();
            let (u, _): (User, usize) =
                bincode::serde::decode_from_slice(got.value(), bincode::config::standard())
                    .unwrap();
            let mut found = false;
            if u.is_active {
                let roles = tx.open_table(ROLES).unwrap();
                for row in tx
                    .open_table(USER_ROLES)
                    .unwrap()
                    .range((k, 0)..=(k, u64::MAX))
                    .unwrap()
                {
                    let (key, active) = row.unwrap();
                    if !active.value() {
                        continue;
                    }
                    let role = roles.get(key.value().1).unwrap().unwrap();
                    let ((_, perms), _): ((String, Vec<String>), usize) =
                        bincode::serde::decode_from_slice(
                            role.value(),
                            bincode::config::standard(),
                        )
                        .unwrap();
                    if perms.iter().any(|p| p == "docs.edit" || p == "*") {
                        found = true;
                        break;
                    }
                }
            }
            assert!(black_box(found));
        }
        eprintln!(
            "bare-perm: {:?} per check",
            started.elapsed() / n.max(1) as u32
        );
        return;
    }
    if what == "bare-validate" {
        // As `benches/compare.rs`'s bare validation, with its session row.
        const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
        use sha2::Digest;
        let hash = |t: &str| -> [u8; 32] { sha2::Sha256::digest(t.as_bytes()).into() };
        let now = 1_900_000_000;
        // Tokens as long as redkeep's (the kind, `_` and 39 characters; digits here), so the
        // hash costs the same.
        let tokens: Vec<String> = (1..=1_000u64)
            .map(|k| format!("rks_{:039}", k * 7_777_777))
            .collect();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(SESSIONS).unwrap();
            for (k, token) in (1..=1_000u64).zip(&tokens) {
                let row = SessionRow::new(k, k, now, now + 86_400);
                let bytes = bincode::serde::encode_to_vec(&row, bincode::config::standard());
                t.insert(hash(token).as_slice(), bytes.unwrap().as_slice())
                    .unwrap();
            }
        }
        w.commit().unwrap();
        let started = Instant::now();
        for i in 0..n {
            let token = tokens[(i * 7919 % 1_000) as usize].trim();
            let h = hash(token);
            let tx = db.begin_read().unwrap();
            let got = tx
                .open_table(SESSIONS)
                .unwrap()
                .get(h.as_slice())
                .unwrap()
                .unwrap();
            let (s, _): (SessionRow, usize) =
                bincode::serde::decode_from_slice(got.value(), bincode::config::standard())
                    .unwrap();
            let got = tx
                .open_table(TABLE)
                .unwrap()
                .get(s.user_id)
                .unwrap()
                .unwrap();
            let (u, _): (User, usize) =
                bincode::serde::decode_from_slice(got.value(), bincode::config::standard())
                    .unwrap();
            assert!(black_box(u.is_active && now < s.deadline()));
            black_box((u, s));
        }
        eprintln!(
            "bare-validate: {:?} per validation",
            started.elapsed() / n.max(1) as u32
        );
        return;
    }
    if what == "bare-page" {
        for i in 0..n {
            let from = 1_800_000_000 + (i * 7919 % (USERS - 50)) as i64;
            let tx = db.begin_read().unwrap();
            let users = tx.open_table(TABLE).unwrap();
            let got: Vec<User> = tx
                .open_table(CREATED)
                .unwrap()
                .range((from, 0)..)
                .unwrap()
                .take(50)
                .map(|r| {
                    let id = r.unwrap().0.value().1;
                    let v = users.get(id).unwrap().unwrap();
                    bincode::serde::decode_from_slice(v.value(), bincode::config::standard())
                        .unwrap()
                        .0
                })
                .collect();
            black_box(got);
        }
        eprintln!(
            "bare-page: {:?} per page",
            started.elapsed() / n.max(1) as u32
        );
        return;
    }
    let mut k = 1;
    for _ in 0..n {
        k = (k + 7919) % USERS + 1;
        let tx = db.begin_read().unwrap();
        let got = tx.open_table(TABLE).unwrap().get(k).unwrap().unwrap();
        let decoded: (User, usize) =
            bincode::serde::decode_from_slice(got.value(), bincode::config::standard()).unwrap();
        black_box(decoded);
    }
    eprintln!("bare: {:?} per read", started.elapsed() / n.max(1) as u32);
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
            for _ in 0..USERS {
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
                for user_id in 1..=USERS {
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
            k = (k + 7919) % USERS + 1;
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
            let from = 1_800_000_000 + (i * 7919 % (USERS - 50)) as i64;
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
        k = (k + 7919) % USERS + 1;
        let found = if what == "email" {
            rk.users().by_email(&email(k)).unwrap()
        } else {
            rk.users().get(k).unwrap()
        };
        black_box(found.expect("every user is there"));
    }
    eprintln!("{what}: {:?} per read", started.elapsed() / n.max(1) as u32);
}
