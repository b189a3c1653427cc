//! The PostgreSQL engine against a real server (started by `common::pg` in a temp dir):
//! concurrency across threads and processes, the move to PostgreSQL and back, and the locks
//! that keep whole-store commands away from running applications.
//!
//! These tests need the `postgres` feature and PostgreSQL's binaries; without the binaries
//! they fail with a one-line instruction. The shared behaviour suites also run on PostgreSQL
//! with `REDKEEP_TEST_ENGINE=postgres` (see `.ci/run`).
#![cfg(feature = "postgres")]

mod common;

use std::sync::{Arc, Barrier};

use common::{HelperProcess, TestDir, pg};
use redkeep::auth::sessions::LoginMeta;
use redkeep::store::Meta;
use redkeep::{Error, InviteSpec, NewUser, Options, PasswordParams, Redkeep, Registration};

const PW: &str = "correct horse battery";

/// A user with `email` and the test password, in any engine's store.
fn user(rk: &Redkeep, email: impl Into<String>) -> redkeep::Result<redkeep::User> {
    rk.users()
        .create(NewUser {
            email: email.into(),
            password: Some(PW.into()),
            ..NewUser::default()
        })
        .map(|c| c.user)
}

fn on_postgres(url: &str) -> (tempfile::TempDir, Redkeep) {
    let dir = tempfile::tempdir().unwrap();
    let rk = Redkeep::open(
        dir.path(),
        Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .store(url),
    )
    .unwrap();
    (dir, rk)
}

/// Registers with `code` from `threads` threads at once; returns how many succeeded, and
/// fails on any error but the invite being used up.
fn register_race(rk: &Redkeep, code: &str, tag: &str, threads: usize) -> usize {
    let gate = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (rk, gate, code) = (rk.clone(), gate.clone(), code.to_string());
            let email = format!("{tag}-{i}@example.com");
            std::thread::spawn(move || {
                gate.wait();
                rk.users().register(Registration {
                    email,
                    password: PW.into(),
                    invite: Some(code.as_str().into()),
                    ..Registration::default()
                })
            })
        })
        .collect();
    let mut won = 0;
    for h in handles {
        match h.join().unwrap() {
            Ok(_) => won += 1,
            // The invite is used up (or its row was taken by a concurrent winner).
            Err(Error::Revoked { .. } | Error::Conflict { .. }) => {}
            Err(e) => panic!("a registration failed otherwise: {e}"),
        }
    }
    won
}

/// The helper process of the two-process race: opens the store its environment names,
/// prints `ready`, registers from 8 threads when told `go`, and prints how many won.
#[test]
fn helper_registers_from_another_process() {
    let Ok(url) = std::env::var("RK_PG_HELPER_URL") else {
        return;
    };
    let code = std::env::var("RK_PG_HELPER_CODE").unwrap();
    let (_dir, rk) = on_postgres(&url);
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    println!("{}", register_race(&rk, &code, "other", 8));
}

#[test]
fn eight_threads_in_two_processes_with_one_single_use_invite_make_exactly_one_user() {
    let url = pg::server().fresh_url();
    let (_dir, rk) = on_postgres(&url);
    let invite = rk
        .invites()
        .create(InviteSpec {
            max_uses: 1,
            ..InviteSpec::default()
        })
        .unwrap();
    let code = invite.code.expose().to_string();
    let mut helper = HelperProcess::start_with(
        "helper_registers_from_another_process",
        &[("RK_PG_HELPER_CODE", &code), ("RK_PG_HELPER_URL", &url)],
    );
    helper.send("go");
    let here = register_race(&rk, &code, "here", 8);
    let there: usize = helper.line().parse().unwrap();
    assert_eq!(
        here + there,
        1,
        "{here} here and {there} in the other process"
    );
    assert_eq!(rk.users().count().unwrap(), 1);
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn eight_threads_racing_on_one_email_give_one_winner_and_clean_conflicts() {
    let url = pg::server().fresh_url();
    let (_dir, rk) = on_postgres(&url);
    let gate = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (rk, gate) = (rk.clone(), gate.clone());
            std::thread::spawn(move || {
                gate.wait();
                user(&rk, "same@example.com")
            })
        })
        .collect();
    let (mut won, mut clashed) = (0, 0);
    for h in handles {
        match h.join().unwrap() {
            Ok(_) => won += 1,
            Err(Error::Conflict { index, .. }) => {
                assert_eq!(index, "email");
                clashed += 1;
            }
            Err(e) => panic!("not a clean conflict: {e}"),
        }
    }
    assert_eq!((won, clashed), (1, 7));
    assert_eq!(rk.users().count().unwrap(), 1);
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn sixteen_writers_logging_in_all_succeed_and_check_stays_clean() {
    let url = pg::server().fresh_url();
    let (_dir, rk) = on_postgres(&url);
    for i in 0..4 {
        user(&rk, format!("u{i}@example.com")).unwrap();
    }
    let handles: Vec<_> = (0..16)
        .map(|t| {
            let rk = rk.clone();
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                for _ in 0..25 {
                    // Four writers per user: sessions, counters and audit rows of one user
                    // clash on purpose.
                    let email = format!("u{}@example.com", t % 4);
                    if let Err(e) = rk.sessions().login(&email, PW, LoginMeta::default()) {
                        failed.push(e.to_string());
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed logins: {failed:?}",
        failed.len()
    );
    let report = rk.check(false).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(rk.store().engine(), "postgres");
}

fn schema_of(url: &str) -> String {
    url.split_whitespace()
        .find_map(|t| t.strip_prefix("schema="))
        .expect("a test store URL names its schema")
        .to_string()
}

fn export(rk: &Redkeep) -> String {
    let mut out = Vec::new();
    redkeep::ops::export(rk, &mut out, &|_| {}).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn moving_to_postgres_and_back_leaves_the_export_byte_identical() {
    let t = TestDir::new();
    assert!(t.store.is_none() || pg::engine_is_postgres());
    let source = tempfile::tempdir().unwrap();
    let options = || {
        Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .clock(t.clock.clone())
    };
    let before = {
        let rk = Redkeep::open(source.path(), options()).unwrap();
        for i in 0..30 {
            let u = user(&rk, format!("user{i}@example.com")).unwrap();
            rk.workspaces()
                .save_piece(u.id, format!("{{\"title\": \"piece {i}\"}}").as_bytes())
                .unwrap();
        }
        rk.invites().create(InviteSpec::default()).unwrap();
        rk.sessions()
            .login("user3@example.com", PW, LoginMeta::default())
            .unwrap();
        export(&rk)
    };
    let url = pg::server().fresh_url();
    let there = redkeep::ops::move_store(source.path(), None, &url, options()).unwrap();
    assert!(there.check.ok, "{:?}", there.check.problems);
    assert!(there.tables.iter().any(|(t, n)| t == "r:users" && *n == 30));
    // The moved records are readable as jsonb too (rendered from the copied bytes).
    let readable: i64 = pg::server()
        .client()
        .query_one(
            &format!(
                "select count(*) from \"{}\".users where v->>'email' like 'user%@example.com'",
                schema_of(&url)
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(readable, 30);
    {
        let rk = Redkeep::open(source.path(), options().store(url.as_str())).unwrap();
        assert_eq!(rk.store().engine(), "postgres");
        assert_eq!(export(&rk), before);
    }
    let back = tempfile::tempdir().unwrap();
    let target = back.path().join("data");
    let home = redkeep::ops::move_store(
        source.path(),
        Some(&url),
        target.to_str().unwrap(),
        options(),
    )
    .unwrap();
    assert!(home.check.ok, "{:?}", home.check.problems);
    assert_eq!(home.folders, 30);
    let rk = Redkeep::open(&target, options()).unwrap();
    assert_eq!(rk.store().engine(), "redb");
    assert_eq!(export(&rk), before);
    // A second move into a store that holds records is refused and changes nothing.
    drop(rk);
    let again = redkeep::ops::move_store(&target, None, &url, options()).unwrap_err();
    assert!(
        again.to_string().contains("already holds records"),
        "{again}"
    );
}

#[test]
fn whole_store_commands_refuse_while_an_application_has_the_store_open() {
    let url = pg::server().fresh_url();
    let (dir, rk) = on_postgres(&url);
    user(&rk, "a@example.com").unwrap();
    let now = rk.now();
    let refused = redkeep::ops::reset_store(dir.path(), Some(&url), now).unwrap_err();
    assert!(matches!(refused, Error::InUse { .. }), "{refused}");
    let elsewhere = tempfile::tempdir().unwrap();
    let refused = redkeep::ops::move_store(
        dir.path(),
        Some(&url),
        elsewhere.path().to_str().unwrap(),
        Options::default(),
    )
    .unwrap_err();
    assert!(matches!(refused, Error::InUse { .. }), "{refused}");
    assert_eq!(rk.users().count().unwrap(), 1);
    // Once the application is gone, reset goes through, keeping a copy and the sequences.
    drop(rk);
    let report = redkeep::ops::reset_store(dir.path(), Some(&url), now).unwrap();
    assert!(report.backup.is_file());
    let (_d, rk) = on_postgres(&url);
    assert_eq!(rk.users().count().unwrap(), 0);
    let next = user(&rk, "b@example.com").unwrap();
    assert!(next.id > 1, "ids never go back across a reset");
}

#[test]
fn a_store_url_names_its_schema_and_stores_in_two_schemas_are_apart() {
    let (a, b) = (pg::server().fresh_url(), pg::server().fresh_url());
    let (_da, rka) = on_postgres(&a);
    let (_db, rkb) = on_postgres(&b);
    user(&rka, "a@example.com").unwrap();
    assert_eq!(rka.users().count().unwrap(), 1);
    assert_eq!(rkb.users().count().unwrap(), 0);
    let missing = Redkeep::open(
        tempfile::tempdir().unwrap().path().join("d"),
        Options::default()
            .create(false)
            .store(pg::server().fresh_url()),
    )
    .unwrap_err();
    assert!(matches!(missing, Error::NotInitialized { .. }), "{missing}");
    let bad = Redkeep::open(
        tempfile::tempdir().unwrap().path(),
        Options::default().store("host=/nowhere schema=Not-Valid"),
    )
    .unwrap_err();
    assert!(bad.to_string().contains("schema"), "{bad}");
}

#[test]
fn records_read_as_jsonb_in_psql_with_secrets_redacted_and_kept_current() {
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let (_d, rk) = on_postgres(&url);
    let ada = user(&rk, "ada@example.com").unwrap();
    let mut c = pg::server().client();
    let one = |c: &mut pg::postgres_client::Client, sql: &str| -> Option<String> {
        c.query_one(sql.replace("S.", &format!("\"{schema}\".")).as_str(), &[])
            .unwrap()
            .get(0)
    };
    let id = "select (v->>'id') from S.users where v->>'email' = 'ada@example.com'";
    assert_eq!(one(&mut c, id), Some(ada.id.to_string()));
    // Times are unix seconds, so they compare in SQL.
    let at = "select (v->>'created_at')::bigint::text from S.users";
    assert_eq!(one(&mut c, at), Some(ada.created_at.0.to_string()));
    // Secret fields are shown redacted; the hash is nowhere in the readable column.
    let hash = "select v->>'password_hash' from S.credentials";
    assert_eq!(one(&mut c, hash).as_deref(), Some("<redacted>"));
    let all = "select string_agg(v::text, ' ') from S.credentials";
    assert!(!one(&mut c, all).unwrap().contains("argon2"));
    // An update is seen at once.
    rk.users()
        .rename(ada.id, Some("Ada L".into()), None)
        .unwrap();
    let name = "select v->>'name' from S.users";
    assert_eq!(one(&mut c, name).as_deref(), Some("Ada L"));
    // With readable=off nothing is rendered, and what was there is cleared, never left stale.
    drop(rk);
    let (_d2, quiet) = on_postgres(&format!("{url} readable=off"));
    quiet
        .users()
        .rename(ada.id, Some("Ada M".into()), None)
        .unwrap();
    let raw_name = "select v::text from S.users";
    assert_eq!(one(&mut c, raw_name), None);
    assert_eq!(quiet.users().get(ada.id).unwrap().unwrap().name, "Ada M");
    user(&quiet, "bob@example.com").unwrap();
    let rendered = "select count(v)::text from S.users";
    assert_eq!(one(&mut c, rendered).as_deref(), Some("0"));
    // A store whose record tables predate the column gains it when next opened to write.
    drop(quiet);
    c.batch_execute(&format!(
        "drop view \"{schema}\".users; alter table \"{schema}\".\"r:users\" drop column j"
    ))
    .unwrap();
    let (_d3, again) = on_postgres(&url);
    user(&again, "cy@example.com").unwrap();
    let cy = "select v->>'email' from S.users where v is not null";
    assert_eq!(one(&mut c, cy).as_deref(), Some("cy@example.com"));
}

#[test]
fn check_runs_amcheck_on_every_index_when_the_extension_is_installed() {
    // A database of its own: the extension (and the stand-in below) are per database.
    let (url, mut c) = pg::server().fresh_database();
    let (_d, rk) = on_postgres(&url);
    for i in 0..20 {
        user(&rk, format!("u{i}@example.com")).unwrap();
    }
    c.batch_execute("create extension amcheck").unwrap();
    let report = rk.check(false).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    // An index that amcheck finds corrupt is reported, with what to do. (A stand-in for
    // bt_index_check that always reports corruption, found first on the search path, shows
    // that every check goes through it and its verdict is read.)
    c.batch_execute(
        "drop extension amcheck; create schema ext; create extension amcheck schema ext;
         create function public.bt_index_check(regclass, boolean) returns void
           language plpgsql as $$ begin
             raise exception 'index % is corrupt', $1 using errcode = 'XX002';
           end $$",
    )
    .unwrap();
    let report = rk.check(false).unwrap();
    assert!(!report.ok);
    assert!(
        report.problems.iter().any(|p| p.contains("REINDEX")),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_restore_that_fails_part_way_leaves_the_store_as_it_was() {
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let (dir, rk) = on_postgres(&url);
    user(&rk, "a@example.com").unwrap();
    user(&rk, "b@example.com").unwrap();
    let archive = dir.path().join("before.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    user(&rk, "c@example.com").unwrap();
    drop(rk);
    // The server refuses to take b's record back part way through the copy.
    let mut c = pg::server().client();
    c.batch_execute(&format!(
        "create function \"{schema}\".refuse_b() returns trigger language plpgsql as $$
         begin
           if new.j->>'email' = 'b@example.com' then raise exception 'refused for the test'; end if;
           return new;
         end $$;
         create trigger refuse_b before insert on \"{schema}\".\"r:users\"
           for each row execute function \"{schema}\".refuse_b()"
    ))
    .unwrap();
    let now = redkeep::Timestamp(2_000_000_000);
    // Without force, the refusal names the server's store (no file of the data dir).
    let err = redkeep::ops::restore_store(dir.path(), Some(&url), &archive, false, now)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the store on postgres") && err.contains("holds data; restoring replaces it"),
        "{err}"
    );
    assert!(!err.contains("redb"), "{err}");
    let failed = redkeep::ops::restore_store(dir.path(), Some(&url), &archive, true, now);
    assert!(failed.is_err(), "the restore went through");
    let (_d, rk) = on_postgres(&url);
    let emails: Vec<String> = rk
        .users()
        .list(Default::default(), None, 10)
        .unwrap()
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(emails, ["a@example.com", "b@example.com", "c@example.com"]);
    assert!(rk.check(false).unwrap().ok);
    drop(rk);
    c.batch_execute(&format!(
        "drop trigger refuse_b on \"{schema}\".\"r:users\""
    ))
    .unwrap();
    let later = redkeep::Timestamp(2_000_000_100);
    redkeep::ops::restore_store(dir.path(), Some(&url), &archive, true, later).unwrap();
    let (_d, rk) = on_postgres(&url);
    assert_eq!(rk.users().count().unwrap(), 2);
    assert!(
        user(&rk, "d@example.com").unwrap().id > 3,
        "ids never go back"
    );
}

/// A restore onto a server that goes away part way (here: the server ends the restore's
/// session as it writes b's record) says that the connection was lost, that the store was
/// not changed, and that the same restore can run again; the safety copy it took of that
/// unchanged store is not left behind.
#[test]
fn a_restore_whose_server_goes_away_part_way_says_the_store_was_not_changed() {
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let (dir, rk) = on_postgres(&url);
    user(&rk, "a@example.com").unwrap();
    user(&rk, "b@example.com").unwrap();
    let archive = dir.path().join("before.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    user(&rk, "c@example.com").unwrap();
    drop(rk);
    let mut c = pg::server().client();
    c.batch_execute(&format!(
        "create function \"{schema}\".cut_b() returns trigger language plpgsql as $$
         begin
           if new.j->>'email' = 'b@example.com' then
             perform pg_terminate_backend(pg_backend_pid());
           end if;
           return new;
         end $$;
         create trigger cut_b before insert on \"{schema}\".\"r:users\"
           for each row execute function \"{schema}\".cut_b()"
    ))
    .unwrap();
    let now = redkeep::Timestamp(2_000_000_000);
    let e = redkeep::ops::restore_store(dir.path(), Some(&url), &archive, true, now).unwrap_err();
    let said = e.full_message();
    for part in [
        "the connection to the PostgreSQL server was lost",
        "the store was not changed",
        "the safety copy taken before it was removed",
        "run the same restore again once the server is back",
    ] {
        assert!(said.contains(part), "{part:?} is not in: {said}");
    }
    let copies: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("pre-restore"))
        .collect();
    assert!(copies.is_empty(), "{copies:?}");
    let (_d, rk) = on_postgres(&url);
    assert_eq!(rk.users().count().unwrap(), 3);
    assert!(rk.check(false).unwrap().ok);
    drop(rk);
    c.batch_execute(&format!("drop trigger cut_b on \"{schema}\".\"r:users\""))
        .unwrap();
    let later = redkeep::Timestamp(2_000_000_100);
    redkeep::ops::restore_store(dir.path(), Some(&url), &archive, true, later).unwrap();
    let (_d, rk) = on_postgres(&url);
    assert_eq!(rk.users().count().unwrap(), 2);
}

/// A server that does not answer is named where it was looked for (the socket file, or
/// host and port), with the question whether it runs there; a password in the URL is never
/// shown. A server that answers and refuses is not asked about.
#[test]
fn a_server_that_does_not_answer_is_named_where_it_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let open = |url: &str| {
        Redkeep::open(
            dir.path(),
            Options::default()
                .password(PasswordParams::INSECURE_FAST)
                .store(url),
        )
        .unwrap_err()
        .full_message()
    };
    let sockets = tempfile::tempdir().unwrap();
    let said = open(&format!(
        "host={} port=5999 user=postgres password=S3cretPW dbname=postgres schema=x",
        sockets.path().display()
    ));
    let socket = format!("socket {}/.s.PGSQL.5999", sockets.path().display());
    assert!(said.contains(&socket), "{said}");
    assert!(
        said.contains("is a PostgreSQL server running there?"),
        "{said}"
    );
    assert!(!said.contains("S3cretPW"), "{said}");
    // The same folder given in a URL, percent-encoded.
    let encoded = sockets.path().display().to_string().replace('/', "%2F");
    let said = open(&format!(
        "postgres://postgres:S3cretPW@{encoded}:5999/postgres?schema=x"
    ));
    assert!(said.contains(&socket), "{said}");
    assert!(!said.contains("S3cretPW"), "{said}");
    // Over TCP, where nothing listens.
    let said = open("postgres://app:S3cretPW@127.0.0.1:1/db?schema=x");
    assert!(
        said.contains("at 127.0.0.1:1:") && said.contains("running there"),
        "{said}"
    );
    assert!(!said.contains("S3cretPW"), "{said}");
    let nodb = open(
        &pg::server()
            .fresh_url()
            .replace("dbname=postgres", "dbname=no_such_db"),
    );
    assert!(
        nodb.contains("does not exist") && !nodb.contains("running there"),
        "{nodb}"
    );
}

/// What an operator meets typing a store URL: libpq's own syntax (spaces around `=`, quoted
/// values) works; a password is never repeated in an error; the server's or the parser's
/// reason is shown; a schema without a store (one made empty, or left with empty tables) is
/// no store and stays as it was; a role that may only read can read; a data dir that does
/// not exist is not made by a command that only uses the store.
#[test]
fn store_urls_schemas_and_roles_as_an_operator_meets_them() {
    let server = pg::server();
    let url = server.fresh_url();
    let schema = schema_of(&url);
    let (dir, rk) = on_postgres(&url);
    user(&rk, "a@example.com").unwrap();
    drop(rk);
    let reopen = |url: &str| {
        Redkeep::open(
            dir.path(),
            Options::default()
                .create(false)
                .password(PasswordParams::INSECURE_FAST)
                .store(url),
        )
    };
    // libpq's syntax: spaces around `=`, a quoted value holding spaces and a quote.
    let spaced = url
        .replace(
            "user=postgres",
            "user = postgres password = 'not \\'used\\' here'",
        )
        .replace(&format!("schema={schema}"), &format!("schema = '{schema}'"));
    assert_eq!(reopen(&spaced).unwrap().users().count().unwrap(), 1);
    // A bad setting is named, and the password is not repeated.
    let bad = reopen(&format!("{url} port=abc password=S3cretPW")).unwrap_err();
    let said = bad.full_message();
    assert!(
        said.contains("port") && !said.contains("S3cretPW"),
        "{said}"
    );
    let bad = reopen(&format!("{url} password = S3cretPW oops")).unwrap_err();
    assert!(!bad.full_message().contains("S3cretPW"), "{bad}");
    // The server's reason for refusing the connection.
    let nodb = reopen(&url.replace("dbname=postgres", "dbname=no_such_db")).unwrap_err();
    assert!(
        nodb.full_message().contains("does not exist"),
        "{}",
        nodb.full_message()
    );
    // A schema without a store: nothing is read, and nothing is made there.
    let mut su = server.client();
    let empty = format!("{schema}_empty");
    su.batch_execute(&format!("create schema {empty}")).unwrap();
    let none = reopen(&server.url(&empty)).unwrap_err();
    assert!(matches!(none, Error::NotInitialized { .. }), "{none}");
    let tables: i64 = su
        .query_one(
            "select count(*) from pg_tables where schemaname = $1",
            &[&empty],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
    // A role that may only read opens the store and reads it.
    let ro = format!("{schema}_ro");
    su.batch_execute(&format!(
        "create role {ro} login; grant usage on schema {schema} to {ro};
         grant select on all tables in schema {schema} to {ro};
         grant select on all sequences in schema {schema} to {ro};"
    ))
    .unwrap();
    let as_ro = url.replace("user=postgres", &format!("user={ro}"));
    assert_eq!(reopen(&as_ro).unwrap().users().count().unwrap(), 1);
    // A whole-store command the owner runs afterwards (it leaves its mark in the schema)
    // does not lock that role out.
    reopen(&url)
        .unwrap()
        .store()
        .alone_with("be checked", || Ok(()))
        .unwrap();
    assert_eq!(reopen(&as_ro).unwrap().users().count().unwrap(), 1);
    let reading = Redkeep::open(
        dir.path(),
        Options::default()
            .create(false)
            .read_only(true)
            .store(as_ro.as_str()),
    )
    .unwrap();
    assert_eq!(reading.users().count().unwrap(), 1);
    drop(reading);
    // A data dir that is not there: refused, and not made.
    let typo = dir.path().join("typo");
    let refused = Redkeep::open(
        &typo,
        Options::default()
            .create(false)
            .password(PasswordParams::INSECURE_FAST)
            .store(url.as_str()),
    )
    .unwrap_err();
    assert!(refused.to_string().contains("does not exist"), "{refused}");
    assert!(!typo.exists());
    // Reading only makes nothing, so it needs no data dir.
    let reader = Redkeep::open(
        &typo,
        Options::default()
            .create(false)
            .read_only(true)
            .store(url.as_str()),
    )
    .unwrap();
    assert_eq!(reader.users().count().unwrap(), 1);
    assert!(!typo.exists());
}

/// A move has its source and its target to itself from start to end: an open of either
/// while it runs is refused (it is not held back to write after the copy, into a store
/// being left). A target that holds only what a new store starts with (its built-in roles)
/// takes the move.
#[test]
fn a_move_has_both_stores_alone_and_fills_a_new_store() {
    let url = pg::server().fresh_url();
    let (dir, rk) = on_postgres(&url);
    user(&rk, "a@example.com").unwrap();
    let other = tempfile::tempdir().unwrap();
    let refused = rk
        .store()
        .alone_with("be moved", || {
            Redkeep::open(
                other.path(),
                Options::default()
                    .password(PasswordParams::INSECURE_FAST)
                    .store(url.as_str()),
            )
            .map(drop)
        })
        .unwrap_err();
    assert!(
        matches!(&refused, Error::InUse { holder, .. } if holder.contains("alone")),
        "{refused}"
    );
    drop(rk);
    // A new store on the server (its built-in roles only) takes a move from a data dir.
    let target = pg::server().fresh_url();
    drop(on_postgres(&target));
    let moved = redkeep::ops::move_store(
        dir.path(),
        Some(&url),
        &target,
        Options::default().password(PasswordParams::INSECURE_FAST),
    );
    // Source and target on the same server: the source's data dir keeps the folders.
    let moved = moved.unwrap();
    assert!(moved.check.ok, "{:?}", moved.check.problems);
    let (_d, there) = on_postgres(&target);
    assert_eq!(there.users().count().unwrap(), 1);
    drop(there);
    // A new store whose application has kept a setting in it has something to lose.
    let kept = pg::server().fresh_url();
    let (_k, app) = on_postgres(&kept);
    app.store()
        .write(|tx| tx.set_meta("tenant", b"acme"))
        .unwrap();
    drop(app);
    // (From the store moved to: the one moved from is marked as moved, and refused.)
    let refused = redkeep::ops::move_store(
        dir.path(),
        Some(&target),
        &kept,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap_err();
    assert!(refused.to_string().contains("already holds"), "{refused}");
    let (_k2, app) = on_postgres(&kept);
    assert_eq!(
        app.store().read(|tx| tx.meta("tenant")).unwrap().as_deref(),
        Some(&b"acme"[..])
    );
}

/// Ends the sessions of application `app` holding any of a store's locks (the session
/// holding each process's hold on the store, or a whole-store command's); returns how many.
fn end_lock_sessions(su: &mut pg::postgres_client::Client, app: &str) -> i64 {
    su.query_one(
        "select count(*) filter (where pg_terminate_backend(pid, 10000)) from (
             select distinct l.pid from pg_locks l join pg_stat_activity a on a.pid = l.pid
             where l.locktype = 'advisory' and a.application_name = $1) s",
        &[&app],
    )
    .unwrap()
    .get(0)
}

/// A process whose session holding the store open was ended by the server (a restart,
/// `idle_session_timeout`, a dropped connection) while another process took the store alone
/// (a move, a restore, a reset) does not write where that command no longer looks: its
/// writes are refused and say the store was taken over, then and after that command ends.
#[test]
fn a_process_that_lost_its_hold_on_the_store_cannot_write_while_another_has_it_alone() {
    let url = pg::server().fresh_url();
    let app = format!("held_{}", schema_of(&url));
    let (_d, rk) = on_postgres(&format!("{url} application_name={app}"));
    user(&rk, "a@example.com").unwrap();
    // The session holding the process's locks is the only one of it holding any between
    // writes; the server ends it (waiting, at most 10 s, until it is gone).
    assert_eq!(end_lock_sessions(&mut pg::server().client(), &app), 1);
    let (_d2, other) = on_postgres(&url);
    other
        .store()
        .alone_with("be moved", || {
            let refused = user(&rk, "b@example.com").unwrap_err();
            assert!(
                matches!(&refused, Error::InUse { holder, .. } if holder.contains("took the store over")),
                "{refused}"
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(other.users().count().unwrap(), 1);
    // That command has finished, yet what it did is unknown to this process: it stays out.
    let refused = user(&rk, "c@example.com").unwrap_err();
    assert!(
        matches!(&refused, Error::InUse { holder, .. } if holder.contains("restart this application")),
        "{refused}"
    );
    assert!(rk.users().count().is_err());
    assert_eq!(other.users().count().unwrap(), 1);
}

/// A process whose session holding the store was cut takes its hold again before its next
/// write: whole-store commands from elsewhere are refused again, and its writes go on.
#[test]
fn a_process_whose_hold_was_cut_takes_it_again_before_its_next_write() {
    let url = pg::server().fresh_url();
    let app = format!("again_{}", schema_of(&url));
    let (dir, rk) = on_postgres(&format!("{url} application_name={app}"));
    user(&rk, "a@example.com").unwrap();
    assert_eq!(end_lock_sessions(&mut pg::server().client(), &app), 1);
    user(&rk, "b@example.com").unwrap();
    let refused = redkeep::ops::reset_store(dir.path(), Some(&url), rk.now()).unwrap_err();
    assert!(matches!(refused, Error::InUse { .. }), "{refused}");
    let elsewhere = tempfile::tempdir().unwrap();
    let refused = redkeep::ops::move_store(
        dir.path(),
        Some(&url),
        elsewhere.path().join("moved").to_str().unwrap(),
        Options::default(),
    )
    .unwrap_err();
    assert!(matches!(refused, Error::InUse { .. }), "{refused}");
    user(&rk, "c@example.com").unwrap();
    assert_eq!(rk.users().count().unwrap(), 3);
    // Cut again, it takes its hold again again; and a handle's own whole-store command
    // leaves it holding the store.
    assert_eq!(end_lock_sessions(&mut pg::server().client(), &app), 1);
    rk.store().alone_with("be checked", || Ok(())).unwrap();
    user(&rk, "d@example.com").unwrap();
    let refused = redkeep::ops::reset_store(dir.path(), Some(&url), rk.now()).unwrap_err();
    assert!(matches!(refused, Error::InUse { .. }), "{refused}");
}

/// A whole-store command that ran and finished while a process's hold was cut leaves its
/// mark: when that process takes its hold again it finds the store taken over and refuses
/// every operation, instead of writing into a store that was reset (or moved away from).
#[test]
fn a_process_finds_a_reset_run_while_its_hold_was_cut_and_stops() {
    let url = pg::server().fresh_url();
    let app = format!("over_{}", schema_of(&url));
    let (dir, rk) = on_postgres(&format!("{url} application_name={app}"));
    user(&rk, "a@example.com").unwrap();
    assert_eq!(end_lock_sessions(&mut pg::server().client(), &app), 1);
    redkeep::ops::reset_store(dir.path(), Some(&url), rk.now()).unwrap();
    for _ in 0..2 {
        let refused = user(&rk, "b@example.com").unwrap_err();
        assert!(
            matches!(&refused, Error::InUse { holder, .. } if holder.contains("took the store over")),
            "{refused}"
        );
    }
    // Holding nothing, it keeps no whole-store command out.
    redkeep::ops::reset_store(dir.path(), Some(&url), rk.now()).unwrap();
    let (_d, fresh) = on_postgres(&url);
    assert_eq!(fresh.users().count().unwrap(), 0);
}

/// After a server restart every pooled connection is gone, which the client learns only when
/// it next uses one: the operation that draws such a connection begins again on a new one
/// (nothing of it had run), so no caller's read or write fails for it.
#[test]
fn pooled_connections_the_server_ended_fail_no_operation() {
    let url = pg::server().fresh_url();
    let app = format!("pool_{}", schema_of(&url));
    let (_d, rk) = on_postgres(&format!("{url} application_name={app}"));
    user(&rk, "a@example.com").unwrap();
    // Six reads at once leave six connections in the pool.
    let gate = Arc::new(Barrier::new(6));
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let (rk, gate) = (rk.clone(), gate.clone());
            std::thread::spawn(move || {
                rk.store()
                    .read(|tx| {
                        gate.wait();
                        tx.meta("x")
                    })
                    .unwrap();
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    let ended: i64 = pg::server()
        .client()
        .query_one(
            "select count(*) filter (where pg_terminate_backend(pid, 10000))
             from pg_stat_activity where application_name = $1
               and pid not in (select pid from pg_locks where locktype = 'advisory')",
            &[&app],
        )
        .unwrap()
        .get(0);
    assert!(ended >= 6, "{ended}");
    for i in 0..4 {
        assert_eq!(rk.users().count().unwrap(), 1 + i);
        user(&rk, format!("u{i}@example.com")).unwrap();
    }
    for _ in 0..8 {
        rk.store().read(|tx| tx.meta("x")).unwrap();
    }
}

/// The process that has the store alone checks, at every write, that it still does: once
/// its session holding the lock has ended, its writes are refused and say why (another
/// process may have taken the store by then), and the command that had it alone fails.
#[test]
fn a_process_whose_exclusive_hold_ended_stops_writing() {
    let url = pg::server().fresh_url();
    let app = format!("alone_{}", schema_of(&url));
    let (_d, rk) = on_postgres(&format!("{url} application_name={app}"));
    user(&rk, "a@example.com").unwrap();
    let lost = rk
        .store()
        .alone_with("be reset", || {
            user(&rk, "b@example.com")?;
            let ended: bool = pg::server()
                .client()
                .query_one(
                    "select bool_and(pg_terminate_backend(pid, 10000)) from (
                         select distinct l.pid from pg_locks l
                         join pg_stat_activity a on a.pid = l.pid
                         where l.locktype = 'advisory' and a.application_name = $1) s",
                    &[&app],
                )
                .unwrap()
                .get(0);
            assert!(ended);
            let refused = user(&rk, "c@example.com").unwrap_err();
            assert!(
                matches!(&refused, Error::InUse { holder, .. } if holder.contains("had it alone")),
                "{refused}"
            );
            Ok(())
        })
        .unwrap_err();
    // Nor does the command report success: others may have written meanwhile.
    assert!(
        matches!(&lost, Error::InUse { holder, .. }
            if holder.contains("be reset") && holder.contains("ended part way")),
        "{lost}"
    );
    assert_eq!(rk.users().count().unwrap(), 2);
}

/// After a statement fails on the server, its transaction is over: PostgreSQL answers the
/// COMMIT by rolling back. A write whose code swallowed that error and returned success is
/// reported as failed, not as written.
#[test]
fn a_write_that_went_on_after_a_failed_statement_reports_failure_not_success() {
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let (_d, rk) = on_postgres(&url);
    rk.store().write(|tx| tx.set_meta("before", b"1")).unwrap();
    // The server refuses one metadata entry.
    let mut su = pg::server().client();
    su.batch_execute(&format!(
        "create function \"{schema}\".refuse() returns trigger language plpgsql as $$
         begin
           if position(convert_to('refused', 'UTF8') in new.k) > 0 then
             raise exception 'refused for the test';
           end if;
           return new;
         end $$;
         create trigger refuse before insert on \"{schema}\".meta
           for each row execute function \"{schema}\".refuse()"
    ))
    .unwrap();
    let out = rk.store().write(|tx| {
        tx.set_meta("kept", b"1")?;
        assert!(tx.set_meta("refused", b"1").is_err());
        Ok(())
    });
    let err = out.unwrap_err();
    assert!(
        matches!(err, Error::Storage { .. }) && err.to_string().contains("nothing was written"),
        "{err}"
    );
    assert!(err.full_message().contains("refused for the test"), "{err}");
    assert_eq!(rk.store().read(|tx| tx.meta("kept")).unwrap(), None);
    // Writes that do not fail still commit.
    rk.store().write(|tx| tx.set_meta("after", b"1")).unwrap();
    assert!(rk.store().read(|tx| tx.meta("after")).unwrap().is_some());
}

/// A password holding `?` (which a URL reserves) works unescaped, as the client reads it:
/// the settings after it are taken, and it is shown nowhere.
#[test]
fn a_url_whose_password_holds_a_question_mark_opens_and_hides_it() {
    let plain = pg::server().fresh_url();
    let part = |key: &str| {
        plain
            .split_whitespace()
            .find_map(|t| t.strip_prefix(key))
            .unwrap()
            .to_string()
    };
    let (host, port, schema) = (part("host="), part("port="), part("schema="));
    // The test server trusts every local connection: the password is sent and not checked.
    let url = format!(
        "postgres://postgres:s3cr?t@{}:{port}/postgres?schema={schema}",
        host.replace('/', "%2F")
    );
    let (_d, rk) = on_postgres(&url);
    user(&rk, "a@example.com").unwrap();
    assert!(
        rk.store().location().contains(&schema),
        "{}",
        rk.store().location()
    );
    for shown in [
        rk.store().location(),
        format!("{rk:?}"),
        format!("{:?}", rk.store()),
    ] {
        assert!(!shown.contains("s3cr"), "{shown}");
    }
    let (_d, same) = on_postgres(&plain);
    assert_eq!(same.users().count().unwrap(), 1);
}

/// The export of `rk` with `extra` lines added before its end line (whose count follows).
fn export_with(rk: &Redkeep, extra: &[&str]) -> String {
    let full = export(rk);
    let mut lines: Vec<&str> = full.lines().collect();
    lines.pop();
    lines.extend(extra);
    format!(
        "{}\n{{\"redkeep_export_end\":true,\"lines\":{}}}\n",
        lines.join("\n"),
        lines.len()
    )
}

fn import(rk: &Redkeep, input: &str) -> redkeep::Result<redkeep::ops::TransferSummary> {
    redkeep::ops::import(rk, &mut input.as_bytes(), &|_| {})
}

/// An import replaces the store's records in one long transaction: on PostgreSQL it has the
/// store alone, like restore and reset, so no application writes beside it; and a clash
/// that rolls its transaction back is reported as such (its input was read, so it is not
/// retried by itself), not as an internal error.
#[test]
fn an_import_has_the_store_alone_and_a_clash_is_reported_as_busy() {
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let (_d, app) = on_postgres(&url);
    let input = export_with(&app, &[]);
    let (_d2, importer) = on_postgres(&url);
    let refused = import(&importer, &input).unwrap_err();
    assert!(
        matches!(&refused, Error::InUse { holder, .. } if holder.contains("be imported")),
        "{refused}"
    );
    drop(app);
    // The server reports a serialization failure on the import's first write of metadata.
    let mut su = pg::server().client();
    su.batch_execute(&format!(
        "create function \"{schema}\".clash() returns trigger language plpgsql as $$
         begin raise exception 'a clash for the test' using errcode = 'serialization_failure'; end $$;
         create trigger clash before insert on \"{schema}\".meta
           for each row execute function \"{schema}\".clash()"
    ))
    .unwrap();
    let clashed = import(&importer, &input).unwrap_err();
    assert!(
        matches!(&clashed, Error::Busy { what } if what.contains("nothing was imported")),
        "{clashed}"
    );
    su.batch_execute(&format!("drop trigger clash on \"{schema}\".meta"))
        .unwrap();
    import(&importer, &input).unwrap();
    assert!(importer.check(false).unwrap().ok);
}

/// Sequence names in an import name tables: one no table could have is refused by line, and
/// nothing is made for it on the server.
#[test]
fn an_import_refuses_a_sequence_name_no_table_could_have() {
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let (_d, rk) = on_postgres(&url);
    for bad in [
        r#"{"sequence":"a:b","value":3}"#,
        r#"{"sequence":"","value":3}"#,
    ] {
        let input = export_with(&rk, &[bad]);
        let refused = import(&rk, &input).unwrap_err();
        assert!(
            matches!(&refused, Error::InvalidInput { .. })
                && refused.to_string().contains("sequence name"),
            "{refused}"
        );
    }
    // A name with a quote is a table's name like any other.
    let quoted = export_with(&rk, &[r#"{"sequence":"it's","value":7}"#]);
    import(&rk, &quoted).unwrap();
    let made: Vec<String> = pg::server()
        .client()
        .query(
            &format!("select name from \"{schema}\"._objects where kind = 's' order by name"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(made.contains(&"it's".to_string()), "{made:?}");
    assert!(
        !made.iter().any(|n| n.is_empty() || n.contains(':')),
        "{made:?}"
    );
    let exported = export(&rk);
    assert!(
        exported.contains(r#"{"sequence":"it's","value":7}"#),
        "{exported}"
    );
}

/// Tables and sequences are listed in the order of their names' bytes, as on redb, whatever
/// the database's collation: an export lists them the same way on both engines.
#[test]
fn tables_and_sequences_export_in_byte_order_under_any_collation() {
    let db = format!("icu_{}", schema_of(&pg::server().fresh_url()));
    let mut su = pg::server().client();
    su.batch_execute(&format!(
        "create database {db} template template0 encoding 'UTF8'
         locale_provider icu icu_locale 'en' locale 'C.UTF-8'"
    ))
    .unwrap();
    let url = pg::server()
        .url("redkeep")
        .replace("dbname=postgres", &format!("dbname={db}"));
    let (_d, rk) = on_postgres(&url);
    let input = export_with(
        &rk,
        &[
            r#"{"table":"alpha","key":"01","value":"AQ=="}"#,
            r#"{"table":"Zeta","key":"01","value":"AQ=="}"#,
            r#"{"sequence":"alpha","value":3}"#,
            r#"{"sequence":"Zeta","value":3}"#,
        ],
    );
    import(&rk, &input).unwrap();
    let exported = export(&rk);
    let at = |needle: &str| {
        exported
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} not in {exported}"))
    };
    assert!(
        at(r#"{"table":"Zeta""#) < at(r#"{"table":"alpha""#),
        "{exported}"
    );
    assert!(
        at(r#"{"sequence":"Zeta""#) < at(r#"{"sequence":"alpha""#),
        "{exported}"
    );
}

/// A move from a server to a new data dir copies the folders of the `--data-dir` given: one
/// holding no workspace folders at all, beside a store holding users, is another folder (the
/// command run from elsewhere), and is refused with nothing copied; from the application's
/// data dir, the files come along.
#[test]
fn a_move_from_a_server_needs_the_data_dir_holding_its_folders() {
    let url = pg::server().fresh_url();
    let (dir, rk) = on_postgres(&url);
    let ann = user(&rk, "ann@example.com").unwrap();
    rk.workspaces()
        .save_piece(ann.id, br#"{"by": "ann"}"#)
        .unwrap();
    drop(rk);
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let elsewhere = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let to = target.path().join("moved");
    let err = redkeep::ops::move_store(
        elsewhere.path(),
        Some(&url),
        to.to_str().unwrap(),
        options(),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { .. })
            && err.to_string().contains("holds no workspace folders"),
        "{err}"
    );
    assert!(!to.exists(), "nothing was copied");
    assert!(!elsewhere.path().join("workspaces").exists());
    let moved =
        redkeep::ops::move_store(dir.path(), Some(&url), to.to_str().unwrap(), options()).unwrap();
    assert_eq!(moved.folders, 1);
    let there = Redkeep::open(&to, options()).unwrap();
    assert_eq!(there.workspaces().list_pieces(ann.id).unwrap().len(), 1);
}

/// Waits (spinning on the server's lock table, not on time) until a session waits for a
/// lock on `table` of `schema`.
fn until_blocked_on(su: &mut pg::postgres_client::Client, schema: &str, table: &str) {
    let rel = format!("\"{schema}\".\"{table}\"");
    loop {
        let waiting: i64 = su
            .query_one(
                "select count(*) from pg_locks where not granted
                 and relation = to_regclass($1)",
                &[&rel],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        std::thread::yield_now();
    }
}

/// Ends the sessions of application `app` holding a store's lock exclusively.
fn end_exclusive_holders(su: &mut pg::postgres_client::Client, app: &str) -> i64 {
    su.query_one(
        "select count(*) filter (where pg_terminate_backend(l.pid, 10000))
         from pg_locks l join pg_stat_activity a on a.pid = l.pid
         where l.locktype = 'advisory' and l.mode = 'ExclusiveLock' and l.granted
           and l.objsubid = 2 and a.application_name = $1",
        &[&app],
    )
    .unwrap()
    .get(0)
}

/// A move from a server has the store alone through its lock session. When that session
/// ends part way (a server restart, `idle_session_timeout`, a proxy's idle cut), other
/// processes may write to the store after the move's snapshot: the move then fails and says
/// to run it again (it takes back the data dir it made), instead of reporting a copy that
/// misses those writes as clean; run again, it copies them.
#[test]
fn a_move_whose_lock_session_ended_fails_then_runs_again_with_what_was_written_meanwhile() {
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let app = format!("mover_{schema}");
    let source = format!("{url} application_name={app}");
    let (dir, rk) = on_postgres(&url);
    let ann = user(&rk, "ann@example.com").unwrap();
    rk.workspaces()
        .save_piece(ann.id, br#"{"by": "ann"}"#)
        .unwrap();
    drop(rk);
    let target = tempfile::tempdir().unwrap();
    let to = target.path().join("moved");
    // The move's snapshot is taken, then its read of the users waits behind this lock.
    let mut su = pg::server().client();
    let mut held = pg::server().client();
    let mut hold = held.transaction().unwrap();
    hold.batch_execute(&format!(
        "lock table \"{schema}\".\"r:users\" in access exclusive mode"
    ))
    .unwrap();
    let moving = {
        let (dir, source, to) = (dir.path().to_path_buf(), source.clone(), to.clone());
        std::thread::spawn(move || {
            redkeep::ops::move_store(
                &dir,
                Some(&source),
                to.to_str().unwrap(),
                Options::default().password(PasswordParams::INSECURE_FAST),
            )
        })
    };
    until_blocked_on(&mut su, &schema, "r:users");
    assert_eq!(end_exclusive_holders(&mut su, &app), 1);
    // The store is open to others again: they write after the snapshot.
    let current = redkeep::store::StoreOptions {
        schema_version: redkeep::SCHEMA_VERSION,
        ..Default::default()
    };
    redkeep::store::Store::open_postgres(&url, &current, false)
        .unwrap()
        .write(|tx| tx.set_meta("during", b"1"))
        .unwrap();
    hold.rollback().unwrap();
    let err = moving.join().unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::InUse { holder, .. }
            if holder.contains("ended part way") && holder.contains("a copy it made (a move, a backup) may miss their writes, so run it again")),
        "{err}"
    );
    assert!(!to.exists(), "the data dir the move made is taken back");
    let moved = redkeep::ops::move_store(
        dir.path(),
        Some(&url),
        to.to_str().unwrap(),
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    assert!(moved.check.ok, "{:?}", moved.check.problems);
    let there = Redkeep::open(
        &to,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    assert!(
        there
            .store()
            .read(|tx| tx.meta("during"))
            .unwrap()
            .is_some()
    );
}

/// A move from a data dir to a server that stops part way (here the move's first record
/// waits behind a lock, and the server stops) says what is left: the source untouched and
/// still the store, the target schema marked, and the two ways out (run the same move
/// again, or drop the schema). It said only "storage error while …: connection closed".
/// Run again once the server is back, the move finishes.
#[test]
fn a_move_to_a_server_that_goes_away_part_way_says_what_is_left_and_what_to_do() {
    let server = pg::own_server();
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        user(&rk, "ann@example.com").unwrap();
    }
    let file = dir.path().join("redkeep.redb");
    let before = std::fs::read(&file).unwrap();
    let url = server.fresh_url();
    let schema = schema_of(&url);
    drop(on_postgres(&url));
    let mut su = server.client();
    let mut held = server.client();
    let mut hold = held.transaction().unwrap();
    hold.batch_execute(&format!(
        "lock table \"{schema}\".\"r:roles\" in access exclusive mode"
    ))
    .unwrap();
    let moving = {
        let (dir, url) = (dir.path().to_path_buf(), url.clone());
        std::thread::spawn(move || redkeep::ops::move_store(&dir, None, &url, options()))
    };
    until_blocked_on(&mut su, &schema, "r:roles");
    server.stop();
    let err = moving.join().unwrap().unwrap_err();
    drop(hold);
    drop((held, su));
    let said = err.full_message();
    assert!(
        matches!(err, Error::Storage { .. })
            && said.contains("the move stopped part way, as the connection to the server was lost")
            && said.contains(&format!(
                "the source, {}",
                file.canonicalize().unwrap().display()
            ))
            && said.contains("is unchanged and still the store")
            && said.contains("run the same `redkeep move` again once the server is back")
            && said.contains(&format!("drop schema {schema} there")),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the source is as it was"
    );
    assert!(!dir.path().join("redkeep.moved").exists());
    assert!(
        !redkeep::store::owner_path(&file).exists(),
        "no owner marker is left"
    );
    server.start_again();
    let moved = redkeep::ops::move_store(dir.path(), None, &url, options()).unwrap();
    assert!(moved.check.ok, "{:?}", moved.check.problems);
    let (_d, rk) = on_postgres(&url);
    assert!(rk.users().by_email("ann@example.com").unwrap().is_some());
}

/// A move from a server to a data dir whose server stops part way says that nothing is
/// left in the target, that the store on the server is unchanged, and that the same move
/// can run again (it said only "storage error while scanning: connection closed"); it does,
/// once the server is back.
#[test]
fn a_move_from_a_server_that_goes_away_part_way_says_nothing_is_left() {
    let server = pg::own_server();
    let url = server.fresh_url();
    let schema = schema_of(&url);
    let (dir, rk) = on_postgres(&url);
    user(&rk, "ann@example.com").unwrap();
    drop(rk);
    let target = tempfile::tempdir().unwrap();
    let to = target.path().join("moved");
    let mut su = server.client();
    let mut held = server.client();
    let mut hold = held.transaction().unwrap();
    hold.batch_execute(&format!(
        "lock table \"{schema}\".\"r:users\" in access exclusive mode"
    ))
    .unwrap();
    let moving = {
        let (dir, url, to) = (dir.path().to_path_buf(), url.clone(), to.clone());
        std::thread::spawn(move || {
            redkeep::ops::move_store(
                &dir,
                Some(&url),
                to.to_str().unwrap(),
                Options::default().password(PasswordParams::INSECURE_FAST),
            )
        })
    };
    until_blocked_on(&mut su, &schema, "r:users");
    server.stop();
    let err = moving.join().unwrap().unwrap_err();
    drop(hold);
    drop((held, su));
    let said = err.full_message();
    assert!(
        said.contains("the move stopped part way, as the connection to the server was lost")
            && said.contains("is unchanged and still the store")
            && said.contains(&format!("nothing is left in {}", to.display()))
            && said.contains("run the same `redkeep move` again once the server is back"),
        "{said}"
    );
    assert!(!to.exists(), "nothing is left");
    server.start_again();
    let moved = redkeep::ops::move_store(
        dir.path(),
        Some(&url),
        to.to_str().unwrap(),
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    assert!(moved.check.ok, "{:?}", moved.check.problems);
}

/// A move from a data dir to a server, which keeps using the data dir's folders, retires
/// the redb file: renamed to a kept copy, so no command run without the store URL (an old
/// cron job, a shell without REDKEEP_STORE_URL) works on the stale store and trashes the
/// folders of users made on the server since; such an open, and `init`, are refused and
/// say where the store went and how to use it or move it back.
#[test]
fn a_move_to_a_server_retires_the_redb_file_so_the_data_dir_opens_only_with_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        user(&rk, "ann@example.com").unwrap();
    }
    let url = pg::server().fresh_url();
    let secret = format!("{url} password=hunter2");
    let moved = redkeep::ops::move_store(dir.path(), None, &secret, options()).unwrap();
    let kept = moved
        .source_kept_as
        .clone()
        .expect("the source file is kept");
    assert!(kept.is_file(), "{}", kept.display());
    assert!(
        kept.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("redkeep.redb.moved-to-postgres-")
    );
    assert!(!dir.path().join("redkeep.redb").exists());
    for err in [
        Redkeep::open(dir.path(), options()).unwrap_err(),
        Redkeep::open_to_init(dir.path(), options()).unwrap_err(),
        redkeep::ops::move_store(dir.path(), None, &url, options()).unwrap_err(),
    ] {
        let said = err.to_string();
        assert!(matches!(err, Error::Denied { .. }), "{said}");
        assert!(
            said.contains("was moved to")
                && said.contains(&schema_of(&url))
                && said.contains("--store URL")
                && said.contains("move --to")
                && said.contains(&kept.display().to_string())
                && !said.contains("hunter2"),
            "{said}"
        );
    }
    assert!(
        !dir.path().join("redkeep.redb").exists(),
        "init made nothing"
    );
    // The commands an operator (or an old cron job) runs say the same, in one line.
    for (args, code) in [
        (&["status"][..], None),
        (&["check", "--repair"][..], Some(1)),
    ] {
        let out = assert_cmd::Command::cargo_bin("redkeep")
            .unwrap()
            .env_remove("REDKEEP_STORE_URL")
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("was moved to"), "{args:?}: {said}");
        if let Some(code) = code {
            assert_eq!(out.status.code(), Some(code), "{args:?}: {said}");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr).lines().count(),
                1,
                "{said}"
            );
        }
    }
    assert!(
        !dir.path().join("redkeep.redb").exists(),
        "nothing made a store there"
    );
    // A restore of a store file into it is refused the same way: it would be a second
    // store on the folders the server's store uses.
    let archive = dir.path().join("old-backup.tar");
    {
        let rk = Redkeep::open(dir.path(), options().store(url.as_str())).unwrap();
        redkeep::ops::backup(&rk, &archive).unwrap();
    }
    let err = redkeep::ops::restore(
        dir.path(),
        &archive,
        true,
        redkeep::Timestamp(2_000_000_000),
    )
    .unwrap_err();
    assert!(err.to_string().contains("was moved to"), "{err}");
    assert!(!dir.path().join("redkeep.redb").exists());
    // With the URL, the data dir's folders serve the store on the server.
    let rk = Redkeep::open(dir.path(), options().store(url.as_str())).unwrap();
    assert!(rk.users().by_email("ann@example.com").unwrap().is_some());
}

/// A move from one server to another on the same data dir's folders marks the source as
/// moved: every open of it is refused, naming the new store. It stayed usable, a second
/// store on the folders the new one uses (a `check --repair` there would trash the folders
/// of users made on the new one).
#[test]
fn a_move_between_servers_on_one_data_dir_marks_the_source_as_moved() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let old_url = pg::server().fresh_url();
    let ann = {
        let rk = Redkeep::open(dir.path(), options().store(old_url.as_str())).unwrap();
        let ann = user(&rk, "ann@example.com").unwrap().id;
        rk.workspaces()
            .update(ann, |d| {
                d.notes = serde_json::json!(["kept"]);
                Ok(())
            })
            .unwrap();
        ann
    };
    let new_url = pg::server().fresh_url();
    let moved = redkeep::ops::move_store(dir.path(), Some(&old_url), &new_url, options()).unwrap();
    assert!(moved.check.ok, "{:?}", moved.check.problems);
    assert!(moved.source_marked_moved);
    let err = Redkeep::open(dir.path(), options().store(old_url.as_str())).unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    let said = err.to_string();
    assert!(
        said.contains("was moved to") && said.contains(&schema_of(&new_url)),
        "{said}"
    );
    let again = redkeep::ops::move_store(dir.path(), Some(&old_url), &new_url, options());
    assert!(matches!(again, Err(Error::Denied { .. })), "{again:?}");
    {
        let rk = Redkeep::open(dir.path(), options().store(new_url.as_str())).unwrap();
        assert_eq!(rk.workspaces().read(ann).unwrap().notes[0], "kept");
    }
    // A move to a data dir of its own leaves the source as it was.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("copy");
    let out = redkeep::ops::move_store(
        dir.path(),
        Some(&new_url),
        copy.to_str().unwrap(),
        options(),
    )
    .unwrap();
    assert!(!out.source_marked_moved);
    assert!(Redkeep::open(dir.path(), options().store(new_url.as_str())).is_ok());
}

/// A move into a server killed after it retired the data dir's file and before it cleared
/// the target's mark runs again: it puts the file back and finishes. The note refused that
/// move, and the target's mark asked for it, so no command could finish it.
#[test]
fn a_move_stopped_after_retiring_its_source_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        user(&rk, "ann@example.com").unwrap();
    }
    let url = pg::server().fresh_url();
    let moved = redkeep::ops::move_store(dir.path(), None, &url, options()).unwrap();
    let kept = moved.source_kept_as.clone().unwrap();
    assert!(kept.is_absolute(), "{}", kept.display());
    // What the kill leaves: the note and the kept file, and the target's mark.
    let source = dir.path().canonicalize().unwrap().join("redkeep.redb");
    let current = redkeep::store::StoreOptions {
        schema_version: redkeep::SCHEMA_VERSION,
        ..Default::default()
    };
    redkeep::store::Store::open_postgres(&url, &current, false)
        .unwrap()
        .write(|tx| tx.set_meta("move_unfinished", source.to_str().unwrap().as_bytes()))
        .unwrap();
    let again = redkeep::ops::move_store(dir.path(), None, &url, options()).unwrap();
    assert!(again.check.ok, "{:?}", again.check.problems);
    let kept_again = again.source_kept_as.unwrap();
    assert!(kept_again.is_file());
    assert!(!dir.path().join("redkeep.redb").exists());
    let rk = Redkeep::open(dir.path(), options().store(url.as_str())).unwrap();
    assert!(rk.users().by_email("ann@example.com").unwrap().is_some());
    // Without the target's mark, the note stands: the move is refused, naming it.
    let err = redkeep::ops::move_store(dir.path(), None, &url, options()).unwrap_err();
    assert!(err.to_string().contains("was moved to"), "{err}");
}

/// A server store into which a move from a data dir stopped part way shares that data dir's
/// folders with the move's source, which is still the live store: `check --repair`, `reset`
/// and `restore --force` there are refused with the move's ways out, `check` does not call
/// the live users' folders orphans, and the folders and the mark stay. (They went to the
/// trash, and a reset or restore cleared the mark, so the half-filled store opened for use.)
#[test]
fn a_half_filled_move_target_on_a_server_is_not_repaired_reset_or_restored() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let backup = dir.path().join("b.tar");
    let ann = {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        let ann = user(&rk, "ann@example.com").unwrap().id;
        rk.workspaces().save_piece(ann, b"{}").unwrap();
        redkeep::ops::backup(&rk, &backup).unwrap();
        ann
    };
    // What a move killed part way leaves: a target holding some records and the mark (here
    // no user yet), beside the live data dir.
    let url = pg::server().fresh_url();
    let source = dir.path().join("redkeep.redb");
    let current = redkeep::store::StoreOptions {
        schema_version: redkeep::SCHEMA_VERSION,
        ..Default::default()
    };
    redkeep::store::Store::open_postgres(&url, &current, false)
        .unwrap()
        .write(|tx| tx.set_meta("move_unfinished", source.to_str().unwrap().as_bytes()))
        .unwrap();
    let refused = |e: Error| {
        assert!(
            matches!(e, Error::Denied { .. })
                && e.to_string().contains("stopped part way")
                && e.to_string().contains("drop its schema"),
            "{e}"
        );
    };
    {
        let there = Redkeep::open(
            dir.path(),
            options().store(url.as_str()).open_unfinished(true),
        )
        .unwrap();
        let check = there.check(false).unwrap();
        assert!(
            !check
                .problems
                .iter()
                .any(|p| p.contains("orphan") || p.contains("--repair")),
            "{:?}",
            check.problems
        );
        refused(there.check(true).unwrap_err());
    }
    let now = redkeep::Timestamp(1_900_000_000);
    refused(redkeep::ops::reset_store(dir.path(), Some(&url), now).unwrap_err());
    refused(redkeep::ops::restore_store(dir.path(), Some(&url), &backup, true, now).unwrap_err());
    let rk = Redkeep::open(dir.path(), options()).unwrap();
    assert_eq!(
        rk.workspaces().list_pieces(ann).unwrap().len(),
        1,
        "ann keeps her piece"
    );
    drop(rk);
    let target = redkeep::store::Store::open_postgres(&url, &current, false).unwrap();
    assert!(
        target
            .read(|tx| tx.meta("move_unfinished"))
            .unwrap()
            .is_some()
    );
}

/// A data dir whose store moved to a server is tied to that store (its note names it): a
/// mistyped schema is refused there, with nothing made in it, naming the store the folders
/// belong to, and the real users' folders are untouched. (It made a second store there,
/// whose user 1 took the live user 1's folder, and whose `check --repair` trashed it.)
#[test]
fn a_mistyped_schema_on_a_data_dir_tied_to_a_server_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let ann = {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        let ann = user(&rk, "ann@example.com").unwrap().id;
        rk.workspaces().save_piece(ann, b"{}").unwrap();
        ann
    };
    let url = pg::server().fresh_url();
    redkeep::ops::move_store(dir.path(), None, &url, options()).unwrap();
    let note = std::fs::read_to_string(dir.path().join("redkeep.store")).unwrap();
    assert!(note.contains(&schema_of(&url)), "{note}");
    let typo = pg::server().fresh_url();
    let err = Redkeep::open(dir.path(), options().store(typo.as_str())).unwrap_err();
    assert!(
        matches!(err, Error::Denied { .. })
            && err.to_string().contains("belong to the store on")
            && err.to_string().contains(&schema_of(&url))
            && err.to_string().contains("holds no store"),
        "{err}"
    );
    let made: i64 = pg::server()
        .client()
        .query_one(
            "select count(*) from information_schema.schemata where schema_name = $1",
            &[&schema_of(&typo)],
        )
        .unwrap()
        .get(0);
    assert_eq!(made, 0, "nothing is made in the mistyped schema");
    // A store that exists on the server but is not the data dir's is refused too.
    drop(on_postgres(&typo));
    let err = Redkeep::open(dir.path(), options().store(typo.as_str())).unwrap_err();
    assert!(err.to_string().contains("belong to the store on"), "{err}");
    let rk = Redkeep::open(dir.path(), options().store(url.as_str())).unwrap();
    assert_eq!(rk.workspaces().list_pieces(ann).unwrap().len(), 1);
    assert!(rk.check(true).unwrap().ok);
}

/// A data dir whose store was made on a server is tied to it: without the URL, an open
/// (an `init`) and a restore are refused, naming the store to pass, instead of saying "run
/// `redkeep init`" and putting a redb store on its folders (whose restore trashed them).
#[test]
fn a_data_dir_tied_to_a_server_store_refuses_a_store_without_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = pg::server().fresh_url();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    let ann = {
        let rk = Redkeep::open(dir.path(), options().store(url.as_str())).unwrap();
        let ann = user(&rk, "ann@example.com").unwrap().id;
        rk.workspaces().save_piece(ann, b"{}").unwrap();
        ann
    };
    let other = tempfile::tempdir().unwrap();
    let backup = other.path().join("old.tar");
    {
        let rk = Redkeep::open(other.path().join("x"), options()).unwrap();
        redkeep::ops::backup(&rk, &backup).unwrap();
    }
    let named = |e: &Error| {
        let text = e.to_string();
        assert!(
            matches!(e, Error::Denied { .. })
                && text.contains("belong to the store on")
                && text.contains("--store")
                && !text.contains("redkeep init"),
            "{text}"
        );
    };
    named(&Redkeep::open(dir.path(), options()).unwrap_err());
    assert!(!dir.path().join("redkeep.redb").exists());
    let now = redkeep::Timestamp(1_900_000_000);
    named(&redkeep::ops::restore(dir.path(), &backup, true, now).unwrap_err());
    assert!(!dir.path().join("redkeep.redb").exists());
    let rk = Redkeep::open(dir.path(), options().store(url.as_str())).unwrap();
    assert_eq!(rk.workspaces().list_pieces(ann).unwrap().len(), 1);
}

/// A backup of a server store through a data dir that is not its own (no note, none of its
/// users' folders) is refused, and makes nothing there; it wrote a backup without any folder
/// and said it passed its check, and its restore trashed every folder. A data dir tied to
/// another store is refused at the open.
#[test]
fn a_backup_of_a_server_store_through_another_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = pg::server().fresh_url();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options().store(url.as_str())).unwrap();
        let ann = user(&rk, "ann@example.com").unwrap().id;
        rk.workspaces().save_piece(ann, b"{}").unwrap();
    }
    let cli = common::Cli {
        dir: tempfile::tempdir().unwrap(),
        store: Some(url.clone()),
    };
    std::fs::create_dir(cli.data()).unwrap();
    let out = cli.dir.path().join("nightly.tar");
    let (_, err) = cli.expect(&["backup", out.to_str().unwrap()], None, 1);
    assert!(err.contains("holds no workspace folder"), "{err}");
    assert!(!out.exists());
    assert!(
        !cli.data().join("workspaces").exists(),
        "nothing made there"
    );
    // Its own data dir backs it up.
    let rk = Redkeep::open(dir.path(), options().store(url.as_str()).read_only(true)).unwrap();
    let report = redkeep::ops::backup(&rk, &dir.path().join("b.tar")).unwrap();
    assert!(report.folders >= 1, "{report:?}");
    // Tied to another store: refused.
    let other = tempfile::tempdir().unwrap();
    drop(Redkeep::open(other.path(), options()).unwrap());
    let err =
        Redkeep::open(other.path(), options().store(url.as_str()).read_only(true)).unwrap_err();
    assert!(err.to_string().contains("belong to the redb file"), "{err}");
}

/// The undo line `reset` prints for a store on a server carries `--store` (the URL, which
/// holds no password here): pasted as printed, it restores that store, not a new redb file
/// in the data dir.
#[test]
fn the_undo_line_of_a_reset_on_a_server_names_the_store() {
    let url = pg::server().fresh_url();
    let cli = common::Cli {
        dir: tempfile::tempdir().unwrap(),
        store: Some(url.clone()),
    };
    cli.init();
    let (out, _) = cli.expect(&["reset", "--force"], None, 0);
    let undo = out.lines().find(|l| l.starts_with("to undo:")).unwrap();
    assert!(
        undo.contains(&format!("--store '{url}' restore --force")),
        "{undo}"
    );
}

/// A move into a server marks the target as being filled before it holds any record, and
/// clears the mark only once the copy is whole: a move that stops part way (here the server
/// refuses a record; a kill leaves the same) leaves a target that `check` and `status` name
/// as not whole, never one passing for a new, empty store; the same move then runs again.
#[test]
fn a_move_stopped_part_way_leaves_a_target_marked_as_being_filled_and_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        user(&rk, "ann@example.com").unwrap();
    }
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    drop(on_postgres(&url));
    let mut su = pg::server().client();
    su.batch_execute(&format!(
        "create function \"{schema}\".refuse() returns trigger language plpgsql as $$
         begin raise exception 'refused for the test'; end $$;
         create trigger refuse before insert on \"{schema}\".\"r:roles\"
           for each row execute function \"{schema}\".refuse()"
    ))
    .unwrap();
    let err = redkeep::ops::move_store(dir.path(), None, &url, options()).unwrap_err();
    assert!(err.full_message().contains("refused for the test"), "{err}");
    assert!(
        dir.path().join("redkeep.redb").is_file(),
        "the source stays"
    );
    {
        // Not opened for use; opened to be checked, it is named.
        let plain = Redkeep::open(
            tempfile::tempdir().unwrap().path(),
            Options::default()
                .password(PasswordParams::INSECURE_FAST)
                .store(&url),
        );
        assert!(
            matches!(&plain, Err(redkeep::Error::Denied { .. })),
            "{plain:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let there = Redkeep::open(
            dir.path(),
            Options::default()
                .password(PasswordParams::INSECURE_FAST)
                .store(&url)
                .open_unfinished(true),
        )
        .unwrap();
        let report = there.check(false).unwrap();
        assert!(
            !report.ok
                && report
                    .problems
                    .iter()
                    .any(|p| p.contains("stopped part way") && p.contains("not a whole store")),
            "{:?}",
            report.problems
        );
    }
    su.batch_execute(&format!("drop trigger refuse on \"{schema}\".\"r:roles\""))
        .unwrap();
    let moved = redkeep::ops::move_store(dir.path(), None, &url, options()).unwrap();
    assert!(moved.check.ok, "{:?}", moved.check.problems);
    let (_d, there) = on_postgres(&url);
    assert!(there.check(false).unwrap().ok);
    assert!(there.users().by_email("ann@example.com").unwrap().is_some());
}

/// A schema holding another application's tables is not a redkeep store: creating a store
/// there is refused with nothing written into it; a view redkeep did not make is never
/// replaced by the one it makes beside a record table.
#[test]
fn a_schema_of_another_application_is_refused_and_its_views_are_left_alone() {
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let mut su = pg::server().client();
    su.batch_execute(&format!(
        "create schema \"{schema}\"; create table \"{schema}\".users (id int primary key);
         create view \"{schema}\".roles as select 1 as x"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = Redkeep::open(
        dir.path(),
        Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .store(url.as_str()),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Denied { .. })
            && err.to_string().contains("not a redkeep store")
            && err.to_string().contains("schema="),
        "{err}"
    );
    let tables: i64 = su
        .query_one(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relkind in ('r', 'v')",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 2, "nothing was created");
    // In a store of its own, a view made by hand where redkeep would put one stays.
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let (_d, rk) = on_postgres(&url);
    su.batch_execute(&format!(
        "create view \"{schema}\".invites as select 'mine'::text as note"
    ))
    .unwrap();
    rk.invites().create(InviteSpec::default()).unwrap();
    let note: String = su
        .query_one(&format!("select note from \"{schema}\".invites"), &[])
        .unwrap()
        .get(0);
    assert_eq!(note, "mine");
}

/// A move onto the store being moved, named by another spelling of its URL, is refused as
/// that (not as a store another process holds), and changes nothing.
#[test]
fn a_move_onto_its_own_store_under_another_spelling_says_so() {
    let url = pg::server().fresh_url();
    let (dir, rk) = on_postgres(&url);
    user(&rk, "ann@example.com").unwrap();
    rk.workspaces()
        .save_piece(
            rk.users().by_email("ann@example.com").unwrap().unwrap().id,
            b"{}",
        )
        .unwrap();
    let ann = rk.users().by_email("ann@example.com").unwrap().unwrap().id;
    drop(rk);
    // A source with problems too: the target being the source is what is said first.
    let doc = dir
        .path()
        .join(format!("workspaces/users/{ann}/workspace.json"));
    let sound = std::fs::read(&doc).unwrap();
    std::fs::write(&doc, "{\"notes\":[1,2").unwrap();
    let other_spelling = format!("application_name=again {url}");
    let err = redkeep::ops::move_store(
        dir.path(),
        Some(&url),
        &other_spelling,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap_err();
    // Said as the target being the source, not as a store someone holds: no application is
    // involved, so "stop the application first" would send the operator looking for one.
    let said = err.to_string();
    assert!(
        matches!(err, Error::InvalidInput { .. })
            && said.contains("is the store being moved")
            && said.contains("choose another schema or database, or a data dir")
            && said.contains("nothing was changed")
            && !said.contains("already has it alone"),
        "{err}"
    );
    std::fs::write(&doc, &sound).unwrap();
    let (_d, rk) = on_postgres(&url);
    assert_eq!(rk.users().count().unwrap(), 1);
    assert!(rk.check(false).unwrap().ok);
    drop(rk);
    // The command says the same.
    let out = assert_cmd::Command::cargo_bin("redkeep")
        .unwrap()
        .env("REDKEEP_ARGON2", "m=8,t=1,p=1")
        .args(["--data-dir", dir.path().to_str().unwrap(), "--store", &url])
        .args(["move", "--to", &other_spelling])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is the store being moved") && !err.contains("stop the application"),
        "{err}"
    );
}

/// After a move from a data dir's redb file to a server, then from that server to another
/// on the same folders, the data dir's `redkeep.moved` names the last store: opened without
/// the URL, the data dir sends the operator straight to it (it named the first server store,
/// which then refused, naming the second), and agrees with the data dir's `redkeep.store`.
#[test]
fn a_second_move_between_servers_updates_the_data_dirs_moved_note() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        user(&rk, "ann@example.com").unwrap();
    }
    let (hop1, hop2) = (pg::server().fresh_url(), pg::server().fresh_url());
    let first = redkeep::ops::move_store(dir.path(), None, &hop1, options()).unwrap();
    let kept = first.source_kept_as.unwrap();
    let second = redkeep::ops::move_store(dir.path(), Some(&hop1), &hop2, options()).unwrap();
    assert!(second.source_marked_moved && second.check.ok);
    let note: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("redkeep.moved")).unwrap()).unwrap();
    assert_eq!(note["to"], redkeep::store::redact(&hop2), "{note}");
    assert_eq!(
        note["kept"],
        kept.to_str().unwrap(),
        "the kept file stays named"
    );
    let tie: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("redkeep.store")).unwrap()).unwrap();
    assert_eq!(tie["store"], note["to"], "{tie}");
    let err = Redkeep::open(dir.path(), options())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("was moved to {}", redkeep::store::redact(&hop2))),
        "{err}"
    );
    let rk = Redkeep::open(dir.path(), options().store(hop2.as_str())).unwrap();
    assert!(rk.users().by_email("ann@example.com").unwrap().is_some());
}

/// A data dir path holding `=` is a path, not a PostgreSQL key/value string.
#[test]
fn a_move_to_a_path_holding_an_equals_sign_makes_that_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().password(PasswordParams::INSECURE_FAST);
    {
        let rk = Redkeep::open(dir.path(), options()).unwrap();
        user(&rk, "ann@example.com").unwrap();
    }
    let target = tempfile::tempdir().unwrap();
    let to = target.path().join("copy=2024");
    let moved =
        redkeep::ops::move_store(dir.path(), None, to.to_str().unwrap(), options()).unwrap();
    assert!(moved.check.ok, "{:?}", moved.check.problems);
    assert_eq!(
        moved.source_kept_as, None,
        "a move to a data dir leaves the source"
    );
    let rk = Redkeep::open(&to, options()).unwrap();
    assert!(rk.users().by_email("ann@example.com").unwrap().is_some());
}

/// `check` looks index entries and records up hundreds at a time on a server: in a table
/// larger than one batch, each missing and each stale entry is still named, wherever it
/// falls, and nothing sound is.
#[test]
fn check_names_each_broken_index_entry_of_a_table_larger_than_one_batch_of_lookups() {
    use redkeep::auth::orgs::{Org, OrgMember, OrgRole};
    use redkeep::clock::Timestamp;
    const ORGS: u64 = 1_300;
    let (url, mut c) = pg::server().fresh_database();
    let (_d, rk) = on_postgres(&url);
    let alice = user(&rk, "alice@example.com").unwrap();
    let at = Timestamp(1_800_000_000);
    let first = rk
        .store()
        .write(|tx| {
            let first = tx.table::<Org>().next_id()?;
            for i in 0..ORGS {
                let id = first + i;
                tx.table::<Org>().insert(&Org {
                    id,
                    name: format!("Org {id}"),
                    slug: format!("org-{id}"),
                    description: String::new(),
                    is_personal: false,
                    personal_user: None,
                    is_default: false,
                    created_at: at,
                    updated_at: at,
                    external_id: None,
                })?;
                tx.table::<OrgMember>().insert(&OrgMember {
                    org_id: id,
                    user_id: alice.id,
                    role: OrgRole::Owner,
                    joined_at: at,
                })?;
                tx.table::<Org>().next_id()?;
            }
            Ok(first)
        })
        .unwrap();
    assert!(rk.check(false).unwrap().ok);
    // Behind the store's back: some entries of the slug index go, some stale ones come.
    let schema = "redkeep";
    let rel: String = c
        .query_one(
            &format!("select relname from {schema}._objects where name = 'i:orgs:slug'"),
            &[],
        )
        .unwrap()
        .get(0);
    let index = format!("{schema}.\"{rel}\"");
    let (mut gone, mut ghosts) = (Vec::new(), Vec::new());
    for i in 0..ORGS {
        let id = first + i;
        let pk = id.to_be_bytes().to_vec();
        if i % 4 == 0 {
            let n = c
                .execute(&format!("delete from {index} where v = $1"), &[&pk])
                .unwrap();
            assert_eq!(n, 1);
            gone.push(id);
        }
        if i % 9 == 0 {
            c.execute(
                &format!("insert into {index} (k, v) values ($1, $2)"),
                &[&format!("zz-ghost-{id}").into_bytes(), &pk],
            )
            .unwrap();
            ghosts.push(id);
        }
    }
    let mut expected: Vec<String> = gone
        .iter()
        .map(|id| format!("orgs.slug: entry for record {id} is missing"))
        .chain(
            ghosts
                .iter()
                .map(|id| format!("orgs.slug: stale entry pointing at {id}")),
        )
        .collect();
    expected.sort();
    let mut found = rk.check(false).unwrap().problems;
    found.sort();
    assert_eq!(found, expected);
}

/// An application record keyed and indexed by text of any length.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Page {
    url: String,
    title: String,
    tag: String,
}

impl Page {
    const TITLE: redkeep::Index<Page> =
        redkeep::Index::unique("title", |p| Some(redkeep::key!(p.title)));
    const TAG: redkeep::Index<Page> = redkeep::Index::many("tag", |p| Some(redkeep::key!(p.tag)));
}

impl redkeep::Record for Page {
    const TABLE: &'static str = "pages";
    type Key = String;
    const INDEXES: &'static [&'static redkeep::Index<Self>] = &[&Self::TITLE, &Self::TAG];
    fn key(&self) -> String {
        self.url.clone()
    }
}

/// Printable text that does not compress, whose key is `key_len` bytes long.
fn text_with_key_len(key_len: usize, seed: u64) -> String {
    let mut x = seed | 1;
    let mut s = String::new();
    while redkeep::key!(s.clone()).len() < key_len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(char::from(b'!' + (x % 94) as u8));
    }
    s
}

/// One limit on key length on both engines: a primary key or index entry key up to
/// `MAX_KEY_BYTES` is stored (on PostgreSQL too, in text that does not compress), a longer
/// one is refused before anything is written, as bad input that names the limit, not as an
/// internal error.
#[test]
fn keys_up_to_the_limit_work_on_both_engines_and_longer_ones_are_refused_alike() {
    use redkeep::store::MAX_KEY_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let on_file = Redkeep::open(
        dir.path(),
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let (_d, on_server) = on_postgres(&pg::server().fresh_url());
    for rk in [&on_file, &on_server] {
        let insert = |p: Page| rk.store().write(|tx| tx.table::<Page>().insert(&p));
        let short = |s: &str| s.to_string();
        let pk = short("p");
        let pk_len = redkeep::key!(pk.clone()).len();
        let cases = [
            // The tag's entry holds the primary key too: together at the limit.
            (
                "primary",
                text_with_key_len(MAX_KEY_BYTES - redkeep::key!(short("g1")).len(), 1),
                short("t1"),
                short("g1"),
            ),
            (
                "title",
                short("u2"),
                text_with_key_len(MAX_KEY_BYTES, 2),
                short("g2"),
            ),
            (
                "tag",
                pk.clone(),
                short("t3"),
                text_with_key_len(MAX_KEY_BYTES - pk_len, 3),
            ),
        ];
        for (what, url, title, tag) in cases {
            insert(Page {
                url: url.clone(),
                title: title.clone(),
                tag: tag.clone(),
            })
            .unwrap_or_else(|e| panic!("{what} at the limit: {e}"));
            let longer = |s: &str| format!("{s}x");
            let page = match what {
                "primary" => Page {
                    url: text_with_key_len(MAX_KEY_BYTES + 1, 5),
                    title: longer(&title),
                    tag,
                },
                "title" => Page {
                    url: longer(&url),
                    title: longer(&title),
                    tag,
                },
                _ => Page {
                    url: short("p4"),
                    title: short("t4"),
                    tag: longer(&tag),
                },
            };
            let refused = insert(page).unwrap_err();
            let said = refused.to_string();
            assert!(
                matches!(refused, Error::InvalidInput { .. })
                    && said.contains(&MAX_KEY_BYTES.to_string())
                    && (what == "primary" || said.contains(&format!("pages.{what}"))),
                "{what}: {said}"
            );
        }
        let count = rk.store().read(|tx| tx.table::<Page>().count()).unwrap();
        assert_eq!(count, 3);
    }
}

/// The CLI on data dir `dir`, on the store `url` when given, with output and exit code.
fn redkeep_in(
    dir: &std::path::Path,
    url: Option<&str>,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = assert_cmd::Command::cargo_bin("redkeep").unwrap();
    cmd.env_remove("REDKEEP_STORE_URL")
        .env_remove("REDKEEP_MOVE_TO")
        .env("REDKEEP_ARGON2", common::FAST_ARGON2)
        .arg("--data-dir")
        .arg(dir);
    if let Some(url) = url {
        cmd.arg("--store").arg(url);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The CLI on a server store, with output and exit code.
fn redkeep_on(dir: &std::path::Path, url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    redkeep_in(dir, Some(url), args)
}

/// A server store a move into stopped part way in (before it held any record): `status`
/// names the stopped move, as it does for a data dir's file, and neither `status` nor
/// `check` writes into it (they wrote the system roles there, making it pass for a store).
#[test]
fn status_of_a_half_filled_server_store_names_the_stopped_move_and_writes_nothing() {
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let current = redkeep::store::StoreOptions {
        schema_version: redkeep::SCHEMA_VERSION,
        ..Default::default()
    };
    redkeep::store::Store::open_postgres(&url, &current, false)
        .unwrap()
        .write(|tx| tx.set_meta("move_unfinished", b"/gone/redkeep.redb"))
        .unwrap();
    let mut su = pg::server().client();
    let roles = |su: &mut pg::postgres_client::Client| -> i64 {
        let there: Option<String> = su
            .query_one(
                "select to_regclass($1)::text",
                &[&format!("\"{schema}\".\"r:roles\"")],
            )
            .unwrap()
            .get(0);
        match there {
            None => 0,
            Some(t) => su
                .query_one(&format!("select count(*) from {t}"), &[])
                .unwrap()
                .get(0),
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = redkeep_on(dir.path(), &url, &["status"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("a move into this store stopped part way"),
        "{out}"
    );
    let (code, out, err) = redkeep_on(dir.path(), &url, &["--json", "status"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["stopped"][0], "a move into this store", "{json}");
    assert_eq!(roles(&mut su), 0, "status wrote into the store");
    let (code, out, err) = redkeep_on(dir.path(), &url, &["check"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("not a whole store"), "{out}");
    assert_eq!(roles(&mut su), 0, "check wrote into the store");
    // Opened through the library to be checked, it is not written either.
    let there = Redkeep::open(
        dir.path(),
        Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .store(&url)
            .open_unfinished(true),
    )
    .unwrap();
    assert!(!there.check(false).unwrap().ok);
    assert_eq!(roles(&mut su), 0, "opening it wrote into the store");
}

/// No value of a connection key but those saying where the store is shows in an error:
/// not `sslpassword`'s, not a mistyped key's; a target written `postgres:/…` is a
/// malformed URL (not a folder to make, named with its password); `passfile` is refused
/// as not read; and a move's target may come from `REDKEEP_MOVE_TO`, off the command line.
#[test]
fn connection_secrets_never_show_and_a_move_target_may_come_from_the_environment() {
    let url = pg::server().fresh_url();
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("from");
    {
        let rk = Redkeep::open(
            &from,
            Options::default().password(PasswordParams::INSECURE_FAST),
        )
        .unwrap();
        user(&rk, "ann@example.com").unwrap();
    }
    let sslpassword = format!("{url} sslpassword=hunter2");
    let mistyped = format!("{url} pasword=hunter8");
    for (store, args) in [
        (Some(sslpassword.as_str()), vec!["status"]),
        (Some(mistyped.as_str()), vec!["status"]),
        (None, vec!["move", "--to", "postgres:/app:hunter6@db/app"]),
        (None, vec!["move", "--to", "PostgreSQL:app:hunter6@db/app"]),
        (
            None,
            vec!["move", "--to", "host=/tmp pasword=hunter8 schema=m1"],
        ),
    ] {
        let (code, out, err) = redkeep_in(&from, store, &args);
        assert_eq!(code, Some(1), "{args:?}: {out}{err}");
        assert!(!format!("{out}{err}").contains("hunter"), "{args:?}: {err}");
        if args[0] == "move" {
            assert!(from.join("redkeep.redb").is_file(), "{args:?}");
        }
    }
    let (_, _, err) = redkeep_in(
        &from,
        None,
        &["move", "--to", "postgres:/app:hunter6@db/app"],
    );
    assert!(err.contains("not a store URL"), "{err}");
    assert!(!from.join("postgres:").exists() && !std::path::Path::new("postgres:").exists());
    let (code, _, err) = redkeep_on(&from, &format!("{url} passfile=/tmp/x"), &["status"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("passfile is not read"), "{err}");
    // The target from the environment: the data dir's file moved to the server.
    let out = assert_cmd::Command::cargo_bin("redkeep")
        .unwrap()
        .env_remove("REDKEEP_STORE_URL")
        .env("REDKEEP_MOVE_TO", &url)
        .env("REDKEEP_ARGON2", common::FAST_ARGON2)
        .arg("--data-dir")
        .arg(&from)
        .arg("move")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_d, rk) = on_postgres(&url);
    assert!(rk.users().by_email("ann@example.com").unwrap().is_some());
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Note {
    id: u64,
    text: String,
}

impl redkeep::Record for Note {
    const TABLE: &'static str = "notes";
    type Key = u64;
    const INDEXES: &'static [&'static redkeep::Index<Self>] = &[];
    fn key(&self) -> u64 {
        self.id
    }
}

/// The readable `jsonb` column is left empty (NULL) for a record whose rendering would hold
/// its write's transaction (over 1 MiB, or escaped to several times its size) and for one
/// holding NUL, which `jsonb` cannot hold; text that only reads `\u0000` is shown. The
/// records themselves read back whole either way.
#[test]
fn the_readable_column_skips_large_records_and_nul_but_shows_a_literal_backslash_u0000() {
    let url = pg::server().fresh_url();
    let schema = schema_of(&url);
    let (_d, rk) = on_postgres(&url);
    let notes = [
        (1, "\\u0000".to_string(), true),
        (2, "a\0b".to_string(), false),
        (3, "\u{1}".repeat(100_000), false),
        (4, "x".repeat(1_100_000), false),
        (5, "x".repeat(500_000), true),
        (6, "\u{1}".repeat(1000), true),
    ];
    for (id, text, _) in &notes {
        rk.store()
            .write(|tx| {
                tx.table::<Note>().insert(&Note {
                    id: *id,
                    text: text.clone(),
                })
            })
            .unwrap();
    }
    let mut su = pg::server().client();
    for (id, text, shown) in &notes {
        let row = su
            .query_one(
                &format!(
                    "select j is not null, j->>'text' from \"{schema}\".\"r:notes\"
                     where k = $1"
                ),
                &[&redkeep::key!(*id)],
            )
            .unwrap();
        let (there, json_text): (bool, Option<String>) = (row.get(0), row.get(1));
        assert_eq!(there, *shown, "note {id}");
        if *shown {
            assert_eq!(json_text.as_deref(), Some(text.as_str()), "note {id}");
        }
        let read = rk
            .store()
            .read(|tx| tx.table::<Note>().get(id))
            .unwrap()
            .unwrap();
        assert_eq!(&read.text, text, "note {id}");
    }
    assert!(rk.check(false).unwrap().ok);
}

/// A table name holding NUL (which PostgreSQL's `text` cannot hold) is refused when its
/// type is registered, as bad input, on a server store as on a file.
#[test]
fn a_table_name_with_nul_is_refused_at_registration() {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Odd {
        id: u64,
    }
    impl redkeep::Record for Odd {
        const TABLE: &'static str = "nul\0name";
        type Key = u64;
        const INDEXES: &'static [&'static redkeep::Index<Self>] = &[];
        fn key(&self) -> u64 {
            self.id
        }
    }
    let file = tempfile::tempdir().unwrap();
    let on_file = Redkeep::open(
        file.path(),
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let (_d, on_server) = on_postgres(&pg::server().fresh_url());
    for rk in [&on_file, &on_server] {
        let err = rk.register_table::<Odd>().unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { .. }) && err.to_string().contains("control"),
            "{err}"
        );
    }
}

/// `check --repair` on a server store needs it alone, as a restore does: while another
/// process (here another handle) has it open, it is refused at once with a sentence saying
/// to stop the applications, instead of one transaction over every table starting over at
/// each of their writes; once they are gone, it repairs.
#[test]
fn a_repair_on_a_server_needs_the_store_alone() {
    let url = pg::server().fresh_url();
    let (_d, rk) = on_postgres(&url);
    user(&rk, "ann@example.com").unwrap();
    let (_d2, other) = on_postgres(&url);
    let err = rk.check(true).unwrap_err();
    assert!(
        matches!(&err, Error::InUse { .. })
            && err.to_string().contains("cannot be repaired")
            && err.to_string().contains("stop the applications"),
        "{err}"
    );
    assert!(rk.check(false).unwrap().ok, "a check alone still runs");
    drop(other);
    let report = rk.check(true).unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

/// A refusal for want of the store alone counted the connections that had it open ("1
/// other connection(s) have the store open") and named none, so the operator could not tell
/// what to stop: it names each by backend pid, where it comes from, its `application_name`
/// (the URL's, or redkeep's: the program and its pid) and since when.
#[test]
fn a_refusal_names_the_connections_that_hold_the_store() {
    let url = pg::server().fresh_url();
    let (dir, rk) = on_postgres(&format!("{url} application_name=billing-app"));
    user(&rk, "a@example.com").unwrap();
    let (_d, unnamed) = on_postgres(&url);
    let now = rk.now();
    let refused = redkeep::ops::reset_store(dir.path(), Some(&url), now).unwrap_err();
    let text = refused.to_string();
    assert!(matches!(refused, Error::InUse { .. }), "{text}");
    assert!(
        text.contains("2 other connections have the store open, so it cannot")
            && text.contains("backend pid ")
            && text.contains("(local socket, application_name \"billing-app\", connected since 20")
            && text.contains(&format!("(redkeep, pid {})\"", std::process::id())),
        "{text}"
    );
    drop((rk, unnamed));
    redkeep::ops::reset_store(dir.path(), Some(&url), now).unwrap();
}

/// `status` on a server said "any number of processes may have it open" even while one
/// had: it lists each connection that has the store open (here a CLI `export` stuck on a
/// full pipe, named `redkeep export (pid N)`), in `--json` as `holders`, and says when
/// none has.
#[test]
fn status_on_a_server_lists_who_has_the_store_open() {
    use std::io::Read;
    let url = pg::server().fresh_url();
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("redkeep"));
        c.env("REDKEEP_DATA_DIR", data.path().join("d"))
            .env("REDKEEP_STORE_URL", &url)
            .env("REDKEEP_ARGON2", "m=8,t=1,p=1")
            .env_remove("REDKEEP_MOVE_TO")
            .args(args);
        c
    };
    let cli = |args: &[&str]| assert_cmd::Command::from_std(run(args));
    cli(&["init", "--no-admin"]).assert().success();
    cli(&["user", "create", "ann@example.com", "--password-stdin"])
        .write_stdin("pw-ann-12345\n")
        .assert()
        .success();
    // A piece larger than a pipe holds: the export blocks on its output, the store open.
    let piece = format!("{{\"big\":\"{}\"}}", "x".repeat(300_000));
    cli(&["gallery", "add", "ann@example.com", "-"])
        .write_stdin(piece)
        .assert()
        .success();
    let mut export = run(&["export"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    export
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    let out = cli(&["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = String::from_utf8(cli(&["status"]).output().unwrap().stdout).unwrap();
    export.kill().unwrap();
    export.wait().unwrap();
    let holders = status["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{status}");
    assert_eq!(
        holders[0]["application_name"],
        format!("redkeep export (pid {})", export.id()),
        "{status}"
    );
    assert_eq!(holders[0]["client"], "local socket", "{status}");
    assert!(holders[0]["backend_pid"].as_i64().unwrap() > 0, "{status}");
    assert!(
        holders[0]["since"].as_str().unwrap().ends_with('Z'),
        "{status}"
    );
    assert!(
        text.contains("; 1 other connection has it open (any number may):\n  backend pid ")
            && text.contains(&format!(
                "application_name \"redkeep export (pid {})\"",
                export.id()
            )),
        "{text}"
    );
    let out = cli(&["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["holders"], serde_json::json!([]), "{status}");
    let text = String::from_utf8(cli(&["status"]).output().unwrap().stdout).unwrap();
    assert!(text.contains("; no other connection has it open"), "{text}");
}

/// A store lost and restored from its backup into a new schema on the same data dir (the
/// README's way back after losing a server): the old schema, should it come back, shares
/// the store's id but is refused on the data dir, so its `check --repair` cannot move the
/// restored store's folders to the trash, nor its users take them.
#[test]
fn the_store_a_restore_into_a_new_schema_came_from_no_longer_opens_on_its_data_dir() {
    let old = pg::server().fresh_url();
    let new = pg::server().fresh_url();
    let (dir, rk) = on_postgres(&old);
    user(&rk, "a@example.com").unwrap();
    let archive = dir.path().join("before.tar");
    redkeep::ops::backup(&rk, &archive).unwrap();
    drop(rk);
    let now = redkeep::Timestamp(2_000_000_000);
    redkeep::ops::restore_store(dir.path(), Some(&new), &archive, false, now).unwrap();
    let options = |url: &str| {
        Options::default()
            .password(PasswordParams::INSECURE_FAST)
            .store(url)
    };
    let restored = Redkeep::open(dir.path(), options(&new)).unwrap();
    let b = user(&restored, "b@example.com").unwrap();
    restored
        .workspaces()
        .save_piece(b.id, br#"{"mine": 1}"#)
        .unwrap();
    drop(restored);
    let err = Redkeep::open(dir.path(), options(&old)).unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err:?}");
    let said = err.to_string();
    assert!(
        said.contains("a restored copy of the store on")
            && said.contains("open the restored copy instead"),
        "{said}"
    );
    let restored = Redkeep::open(dir.path(), options(&new)).unwrap();
    assert_eq!(restored.workspaces().list_pieces(b.id).unwrap().len(), 1);
    assert!(restored.check(false).unwrap().ok);
}
