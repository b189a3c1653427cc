//! Export and import of a whole store, the way `redkeep export` / `redkeep import` run them.
//!
//! - `cargo bench --bench transfer` runs criterion on a store of `REDKEEP_BENCH_USERS` users
//!   (default 10000): one import into an empty store, one export to a sink.
//! - `REDKEEP_TRANSFER_ONCE=1000000 cargo bench --bench transfer` imports and then exports
//!   that many users once, each step in its own process, and prints its time and peak RSS
//!   (`VmHWM`): memory must not grow with the store, as both stream. Set
//!   `REDKEEP_TRANSFER_CACHE_MIB=64` to fix the store's cache and see that nothing else grows.
//!
//! The input is an export file made by taking a real export of a one-user store and
//! repeating its user, credential, role-grant, personal-org and membership lines with fresh
//! ids, emails, slugs and uids.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use criterion::{BatchSize, Criterion};
use redkeep::{InitSpec, Options, PasswordParams, Redkeep, Secret};
use serde_json::Value;

const ROLE_ENV: &str = "REDKEEP_TRANSFER_ROLE";
const ONCE_ENV: &str = "REDKEEP_TRANSFER_ONCE";

/// Cheap hashing (no password is checked here); the store's cache from
/// `REDKEEP_TRANSFER_CACHE_MIB` when set, else redkeep's default (a quarter of the file, 64 MiB
/// to 1 GiB), which is most of what the export step holds.
fn options() -> Options {
    let mut o = Options::default().password(PasswordParams::INSECURE_FAST);
    o.cache_bytes = std::env::var("REDKEEP_TRANSFER_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map(|mib| mib << 20);
    o
}

/// A well-mixed 64-bit value from `n` (splitmix64), for uids and stamps.
fn mix(mut n: u64) -> u64 {
    n = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    n = (n ^ (n >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    n = (n ^ (n >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    n ^ (n >> 31)
}

fn hex128(n: u64) -> String {
    format!("{:016x}{:016x}", mix(n), mix(n ^ 0xabcdef))
}

/// Writes an export file of `users` users to `path`.
fn make_export(path: &Path, users: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let rk = Redkeep::open(tmp.path(), options()).unwrap();
    rk.init(InitSpec {
        no_admin: false,
        admin_email: Some("template@example.com".into()),
        admin_password: Some(Secret::new("template password")),
        keep_password: false,
    })
    .unwrap();
    let mut template = Vec::new();
    redkeep::ops::export(&rk, &mut template, &|_| {}).unwrap();
    drop(rk);

    let lines: Vec<Value> = template
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let line_of = |table: &str| {
        lines
            .iter()
            .find(|l| l["table"] == table)
            .unwrap_or_else(|| panic!("the template has a {table} record"))
            .clone()
    };
    let (user, credential, grant, org, member) = (
        line_of("users"),
        line_of("credentials"),
        line_of("user_roles"),
        line_of("orgs"),
        line_of("org_members"),
    );
    let role = grant["record"]["role_id"].as_u64().unwrap();
    let mut out = BufWriter::new(File::create(path).unwrap());
    // Lines written, for the end line that counts them.
    let written = std::cell::Cell::new(0u64);
    let mut emit = |v: &Value| {
        serde_json::to_writer(&mut out, v).unwrap();
        out.write_all(b"\n").unwrap();
        written.set(written.get() + 1);
    };
    emit(&lines[0]);
    for id in 1..=users {
        let mut l = user.clone();
        l["key"] = format!("{id:016x}").into();
        let r = &mut l["record"];
        r["id"] = id.into();
        r["uid"] = hex128(id).into();
        r["email"] = format!("user{id}@example.com").into();
        r["name"] = format!("User {id}").into();
        r["is_admin"] = false.into();
        r["must_change_password"] = false.into();
        r["current_org_id"] = id.into();
        emit(&l);
    }
    for id in 1..=users {
        let mut l = credential.clone();
        l["key"] = format!("{id:016x}").into();
        l["record"]["user_id"] = id.into();
        l["record"]["stamp"] = hex128(!id).into();
        emit(&l);
    }
    for l in lines.iter().filter(|l| l["table"] == "roles") {
        emit(l);
    }
    for id in 1..=users {
        let mut l = grant.clone();
        l["key"] = format!("{id:016x}{role:016x}").into();
        l["record"]["user_id"] = id.into();
        emit(&l);
    }
    // Each user owns a personal org with the same id.
    for id in 1..=users {
        let mut l = org.clone();
        l["key"] = format!("{id:016x}").into();
        l["record"]["id"] = id.into();
        l["record"]["name"] = format!("User {id}'s Workspace").into();
        l["record"]["slug"] = format!("user-{id}-workspace").into();
        emit(&l);
    }
    for id in 1..=users {
        let mut l = member.clone();
        l["key"] = format!("{id:016x}{id:016x}").into();
        l["record"]["org_id"] = id.into();
        l["record"]["user_id"] = id.into();
        emit(&l);
    }
    for l in &lines[1..] {
        let skip = l["table"].is_string()
            || l.get("workspace").is_some()
            || l.get("piece").is_some()
            || l.get("redkeep_export_end").is_some()
            || matches!(l["sequence"].as_str(), Some("users" | "orgs" | "audit"));
        if !skip {
            emit(l);
        }
    }
    emit(&serde_json::json!({"sequence": "users", "value": users}));
    emit(&serde_json::json!({"sequence": "orgs", "value": users}));
    let before = written.get();
    emit(&serde_json::json!({"redkeep_export_end": true, "lines": before}));
    out.flush().unwrap();
}

fn import(dir: &Path, file: &Path) -> Redkeep {
    let rk = Redkeep::open(dir, options()).unwrap();
    let mut input = BufReader::new(File::open(file).unwrap());
    redkeep::ops::import(&rk, &mut input, &|_| {}).unwrap();
    rk
}

/// Peak resident set size of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// One step in its own process, so its peak RSS is its own.
fn child(role: &str) {
    let dir = PathBuf::from(std::env::var("REDKEEP_TRANSFER_DIR").unwrap());
    let file = PathBuf::from(std::env::var("REDKEEP_TRANSFER_FILE").unwrap());
    let start = Instant::now();
    let lines = match role {
        "import" => {
            let rk = import(&dir, &file);
            rk.users().count().unwrap()
        }
        "export" => {
            let rk = Redkeep::open(&dir, options()).unwrap();
            let mut out = BufWriter::new(File::create(&file).unwrap());
            let s = redkeep::ops::export(&rk, &mut out, &|_| {}).unwrap();
            out.flush().unwrap();
            s.lines
        }
        "inspect" => {
            // `redkeep inspect dump users`, as the CLI runs it, into a sink that notes when
            // the first line arrives.
            use redkeep::admin::commands::{DumpArgs, InspectCmd};
            use redkeep::admin::{Command, Io, Quiet, Request};
            struct FirstLine {
                start: Instant,
                first: Option<f64>,
                lines: u64,
            }
            impl Write for FirstLine {
                fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                    let n = buf.iter().filter(|b| **b == b'\n').count() as u64;
                    if n > 0 && self.first.is_none() {
                        self.first = Some(self.start.elapsed().as_secs_f64() * 1000.0);
                    }
                    self.lines += n;
                    Ok(buf.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            let rk = Redkeep::open(&dir, options()).unwrap();
            let mut sink = FirstLine {
                start,
                first: None,
                lines: 0,
            };
            let req = Request::new(Command::Inspect(InspectCmd::Dump(DumpArgs {
                table: "users".into(),
                limit: None,
                after: None,
                filters: Vec::new(),
                fields: Vec::new(),
                show_secrets: false,
            })));
            redkeep::admin::execute(
                &rk,
                &req,
                Io {
                    input: &mut std::io::empty(),
                    output: &mut sink,
                    feedback: &Quiet,
                },
            )
            .unwrap();
            println!(
                "inspect dump users: first line after {:.1} ms (opening the store included)",
                sink.first.unwrap_or(f64::NAN)
            );
            sink.lines
        }
        other => panic!("unknown role {other}"),
    };
    println!(
        "{role}: {:.1} s, peak RSS {:.0} MiB ({lines} {})",
        start.elapsed().as_secs_f64(),
        peak_rss_mib(),
        match role {
            "import" => "users",
            "inspect" => "records",
            _ => "lines",
        }
    );
}

fn once(users: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input.jsonl");
    let start = Instant::now();
    make_export(&input, users);
    let size = std::fs::metadata(&input).unwrap().len();
    println!(
        "made an export of {users} users ({:.0} MiB) in {:.1} s",
        size as f64 / (1 << 20) as f64,
        start.elapsed().as_secs_f64()
    );
    let output = tmp.path().join("output.jsonl");
    let dir = tmp.path().join("data");
    for (role, file) in [
        ("import", &input),
        ("export", &output),
        ("inspect", &output),
    ] {
        let status = Command::new(std::env::current_exe().unwrap())
            .env(ROLE_ENV, role)
            .env("REDKEEP_TRANSFER_DIR", &dir)
            .env("REDKEEP_TRANSFER_FILE", file)
            .status()
            .unwrap();
        assert!(status.success(), "the {role} step failed");
    }
    println!(
        "store file {:.0} MiB; export {:.0} MiB",
        std::fs::metadata(dir.join(redkeep::STORE_FILE))
            .unwrap()
            .len() as f64
            / (1 << 20) as f64,
        std::fs::metadata(&output).unwrap().len() as f64 / (1 << 20) as f64
    );
}

fn bench(c: &mut Criterion) {
    let users = std::env::var("REDKEEP_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("input.jsonl");
    make_export(&file, users);
    let mut g = c.benchmark_group(format!("transfer_{users}_users"));
    g.sample_size(10);
    g.bench_function("import", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| import(dir.path(), &file),
            BatchSize::PerIteration,
        )
    });
    let source = tmp.path().join("source");
    let rk = import(&source, &file);
    g.bench_function("export", |b| {
        b.iter(|| redkeep::ops::export(&rk, &mut std::io::sink(), &|_| {}).unwrap())
    });
    g.finish();
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        return child(&role);
    }
    if let Some(users) = std::env::var(ONCE_ENV).ok().and_then(|v| v.parse().ok()) {
        return once(users);
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
