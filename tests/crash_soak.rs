//! Crash soak: a worker process does mixed durable work (register, login, grant, org create,
//! save piece, update workspace, delete user) and is SIGKILLed at a random moment, often in
//! the middle of an operation. Every operation it acknowledged must be there afterwards,
//! nothing half-done may be visible, and `check` is clean (after `check --repair` at most).
//!
//! 25 rounds by default; `REDKEEP_CRASH_ROUNDS=1000` runs more.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use common::HelperProcess;
use redkeep::auth::orgs::OrgSpec;
use redkeep::auth::roles::RoleSpec;
use redkeep::auth::sessions::LoginMeta;
use redkeep::{NewUser, Options, PasswordParams, Redkeep};

const WORKER_ENV: &str = "REDKEEP_TEST_CRASH_DIR";
const PW: &str = "correct horse battery";

fn open(dir: &Path) -> Redkeep {
    Redkeep::open(
        dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap()
}

/// The worker: for each line `OP ARGS…` on stdin, does it durably and prints `ack …` with
/// what it made.
#[test]
fn helper_crash_worker() {
    let Ok(dir) = std::env::var(WORKER_ENV) else {
        return; // Only meaningful when started by the soak below.
    };
    let rk = open(Path::new(&dir));
    let _ = rk.roles().create(RoleSpec {
        name: "editor".into(),
        description: String::new(),
        permissions: vec!["docs.edit".into()],
        priority: 1,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let parts: Vec<&str> = line.split(' ').collect();
        let answer = match parts.as_slice() {
            ["register", email] => {
                let u = rk
                    .users()
                    .create(NewUser {
                        email: (*email).into(),
                        password: Some(PW.into()),
                        ..NewUser::default()
                    })
                    .unwrap()
                    .user;
                format!("ack user {email} {}", u.id)
            }
            ["login", email] => {
                let l = rk
                    .sessions()
                    .login(email, PW, LoginMeta::default())
                    .unwrap();
                format!("ack session {} {}", l.token.expose(), l.user.id)
            }
            ["grant", id] => {
                rk.roles()
                    .grant(id.parse().unwrap(), "editor", None)
                    .unwrap();
                format!("ack grant {id}")
            }
            ["org", slug, owner] => {
                rk.orgs()
                    .create(OrgSpec {
                        name: (*slug).into(),
                        slug: Some((*slug).into()),
                        description: String::new(),
                        owner: owner.parse().unwrap(),
                    })
                    .unwrap();
                format!("ack org {slug}")
            }
            ["piece", id, text] => {
                let n = rk
                    .workspaces()
                    .save_piece(
                        id.parse().unwrap(),
                        format!("{{\"t\":\"{text}\"}}").as_bytes(),
                    )
                    .unwrap();
                format!("ack piece {id} {n} {text}")
            }
            ["note", id, text] => {
                let text = text.to_string();
                rk.workspaces()
                    .update(id.parse().unwrap(), move |d| d.add_note(text.clone()))
                    .unwrap();
                format!("ack note {id} {}", parts[2])
            }
            ["delete", id] => {
                rk.users().delete(id.parse().unwrap()).unwrap();
                format!("ack delete {id}")
            }
            other => panic!("unknown operation {other:?}"),
        };
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
}

/// A small deterministic generator (xorshift), so a failing round can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the acknowledged operations promise.
#[derive(Default)]
struct Model {
    users: BTreeMap<String, u64>,
    deleted: BTreeSet<u64>,
    sessions: Vec<(String, u64)>,
    grants: BTreeSet<u64>,
    orgs: BTreeMap<String, u64>,
    pieces: BTreeMap<(u64, u64), String>,
    notes: BTreeMap<u64, Vec<String>>,
}

impl Model {
    fn live(&self) -> Vec<u64> {
        self.users
            .values()
            .copied()
            .filter(|id| !self.deleted.contains(id))
            .collect()
    }

    fn record(&mut self, ack: &str) {
        let p: Vec<&str> = ack.split(' ').collect();
        match p.as_slice() {
            ["ack", "user", email, id] => {
                self.users.insert((*email).into(), id.parse().unwrap());
            }
            ["ack", "session", token, id] => {
                self.sessions.push(((*token).into(), id.parse().unwrap()))
            }
            ["ack", "grant", id] => {
                self.grants.insert(id.parse().unwrap());
            }
            ["ack", "org", slug] => {
                self.orgs.insert((*slug).into(), 0);
            }
            ["ack", "piece", id, n, text] => {
                self.pieces
                    .insert((id.parse().unwrap(), n.parse().unwrap()), (*text).into());
            }
            ["ack", "note", id, text] => self
                .notes
                .entry(id.parse().unwrap())
                .or_default()
                .push((*text).into()),
            ["ack", "delete", id] => {
                self.deleted.insert(id.parse().unwrap());
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// The next operation to ask for.
    fn next_op(&self, rng: &mut Rng, n: u64) -> String {
        let live = self.live();
        let pick = |rng: &mut Rng| live[rng.below(live.len() as u64) as usize];
        match (live.is_empty(), rng.below(10)) {
            (true, _) | (_, 0 | 1) => format!("register u{n}@example.com"),
            (_, 2) => {
                let id = pick(rng);
                let email = self.users.iter().find(|(_, v)| **v == id).unwrap().0;
                format!("login {email}")
            }
            (_, 3) => format!("grant {}", pick(rng)),
            (_, 4) => format!("org o{n} {}", pick(rng)),
            (_, 5 | 6) => format!("piece {} p{n}", pick(rng)),
            (_, 7 | 8) => format!("note {} n{n}", pick(rng)),
            _ if live.len() > 2 => format!("delete {}", pick(rng)),
            _ => format!("register u{n}@example.com"),
        }
    }

    /// Checks every promise; `in_flight` is the operation killed midway, which may or may
    /// not have happened (wholly).
    fn verify(&mut self, rk: &Redkeep, round: u64, in_flight: &str) {
        if let Some(id) = in_flight.strip_prefix("delete ") {
            let id: u64 = id.parse().unwrap();
            if rk.users().get(id).unwrap().is_none() {
                self.deleted.insert(id);
            }
        }
        let ctx = |what: String| format!("round {round} (killed during {in_flight:?}): {what}");
        for (email, id) in &self.users {
            let found = rk.users().get(*id).unwrap();
            if self.deleted.contains(id) {
                assert!(
                    found.is_none(),
                    "{}",
                    ctx(format!("deleted user {id} is back"))
                );
                assert!(
                    !rk.workspaces().exists(*id),
                    "{}",
                    ctx(format!("folder of deleted user {id}"))
                );
            } else {
                let u = found.unwrap_or_else(|| panic!("{}", ctx(format!("user {email} lost"))));
                assert_eq!(&u.email, email);
                assert!(
                    u.current_org_id.is_some(),
                    "{}",
                    ctx(format!("user {id} half-made"))
                );
            }
        }
        for (token, id) in &self.sessions {
            if !self.deleted.contains(id) {
                assert!(
                    rk.sessions().validate(token).is_ok(),
                    "{}",
                    ctx(format!("session of user {id} lost"))
                );
            }
        }
        for id in &self.grants {
            if !self.deleted.contains(id) {
                assert!(
                    rk.roles().has_permission(*id, "docs.edit").unwrap(),
                    "{}",
                    ctx(format!("grant to {id} lost"))
                );
            }
        }
        for slug in self.orgs.keys() {
            if let Some(o) = rk.orgs().by_slug(slug).unwrap() {
                assert!(rk.orgs().member_count(o.id).unwrap() > 0);
            }
            // An org whose owner was deleted later goes with them.
        }
        for ((id, n), text) in &self.pieces {
            if !self.deleted.contains(id) {
                let piece = rk.workspaces().load_piece(*id, *n).unwrap_or_else(|e| {
                    panic!("{}", ctx(format!("piece {n} of user {id} lost: {e}")))
                });
                assert_eq!(
                    piece["t"],
                    text.as_str(),
                    "{}",
                    ctx(format!("piece {n} of {id}"))
                );
            }
        }
        for (id, notes) in &self.notes {
            if !self.deleted.contains(id) {
                let doc = rk.workspaces().read(*id).unwrap();
                let stored: Vec<String> = doc
                    .notes
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect();
                for note in notes {
                    assert!(
                        stored.contains(note),
                        "{}",
                        ctx(format!("note {note} of {id} lost"))
                    );
                }
            }
        }
    }
}

#[test]
fn acknowledged_work_survives_sigkill_at_random_moments() {
    let rounds: u64 = std::env::var("REDKEEP_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let (mut acknowledged, mut repaired) = (0u64, 0u64);
    let mut kinds = BTreeMap::<String, u64>::new();
    for round in 0..rounds {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (round + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut model = Model::default();
        let mut worker = HelperProcess::start("helper_crash_worker", WORKER_ENV, &dir);
        let ops = 5 + rng.below(40);
        for n in 0..ops {
            let op = model.next_op(&mut rng, n);
            worker.send(&op);
            model.record(&worker.line());
            acknowledged += 1;
        }
        // One more operation, killed somewhere along the way.
        let op = model.next_op(&mut rng, ops);
        worker.send(&op);
        let spin = rng.below(200_000);
        let mut x = 0u64;
        for i in 0..spin {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        worker.child.kill().unwrap();
        worker.child.wait().unwrap();
        drop(worker);

        let rk = open(&dir);
        let report = rk.check(false).unwrap();
        if !report.ok {
            let fixed = rk.check(true).unwrap();
            assert!(
                fixed.ok,
                "round {round}: repair left {:?} (found {:?})",
                fixed.problems, report.problems
            );
            repaired += 1;
            for p in &report.problems {
                // The kind of problem, without the ids.
                let kind: String = p.chars().filter(|c| !c.is_ascii_digit()).collect();
                *kinds.entry(kind).or_default() += 1;
            }
        }
        model.verify(&rk, round, &op);
        assert!(rk.check(false).unwrap().ok, "round {round}");
    }
    println!(
        "{rounds} rounds, {acknowledged} acknowledged operations, {repaired} repaired, 0 lost"
    );
    for (kind, n) in kinds {
        println!("  repaired {n}x: {kind}");
    }
}
