//! Entry points of the fuzz targets (`fuzz/`), kept in the library so `cargo test` replays
//! the committed corpus through exactly the same code on stable Rust. Each must never panic.

use serde::Serialize;

use crate::auth::agents::AgentSession;
use crate::auth::api_keys::ApiKey;
use crate::auth::audit::AuditEvent;
use crate::auth::invites::Invite;
use crate::auth::orgs::{Org, OrgMember};
use crate::auth::recovery::RecoveryToken;
use crate::auth::roles::{Role, UserRole};
use crate::auth::sessions::Session;
use crate::auth::users::{Avatar, Credential, User, normalize_email};
use crate::auth::web_sessions::WebSession;
use crate::store::format::{self, Shape, UsedShapes};
use crate::store::{Key, Record, decode_record as decode};

fn no_shapes(id: u64) -> Result<Shape, format::FormatError> {
    format::cached_shape(id).ok_or_else(|| format::FormatError(format!("no shape {id:016x}")))
}

/// Decodes `data` as a record of `R` under `key`; what decodes is rendered as the CLI and
/// the export render it (JSON, `Debug`), encoded again and decoded again: the round trip is
/// stable.
fn round_trip<R: Record + PartialEq + std::fmt::Debug + Serialize>(key: &[u8], data: &[u8]) {
    let Ok(r) = decode::<R>(key, data, &no_shapes) else {
        return;
    };
    let json = serde_json::to_value(&r).expect("a decoded record renders as JSON");
    let _ = serde_json::to_string_pretty(&json);
    let _ = format!("{r:?}");
    let mut used = UsedShapes::default();
    let bytes = crate::store::codec::encode(&r, R::VERSION, &mut used)
        .expect("a decoded record encodes again");
    for (id, names) in used.0 {
        format::remember_shape(id, names.iter().map(|n| Box::<str>::from(*n)).collect());
    }
    let again = decode::<R>(key, &bytes, &no_shapes).expect("a re-encoded record decodes");
    assert_eq!(again, r, "the round trip changed a {} record", R::TABLE);
}

/// Decodes arbitrary bytes as each record type; must return errors, never panic.
pub fn decode_record(data: &[u8]) {
    records(data);
}

/// Every record type, from the same bytes: decoded, rendered, re-encoded, decoded again.
pub fn records(data: &[u8]) {
    let id = 1u64.to_bytes();
    let pair = (1u64, 2u64).to_bytes();
    let hash = [7u8; 32];
    round_trip::<User>(&id, data);
    round_trip::<Credential>(&id, data);
    round_trip::<Avatar>(&id, data);
    round_trip::<Role>(&id, data);
    round_trip::<UserRole>(&pair, data);
    round_trip::<Org>(&id, data);
    round_trip::<OrgMember>(&pair, data);
    round_trip::<AuditEvent>(&id, data);
    round_trip::<Invite>(&hash, data);
    round_trip::<Session>(&hash, data);
    round_trip::<ApiKey>(&hash, data);
    round_trip::<RecoveryToken>(&hash, data);
    round_trip::<WebSession>(&hash, data);
    round_trip::<AgentSession>(&"agent-1".to_string().to_bytes(), data);
}

/// Normalises arbitrary text as an email; a success must be stable and within limits.
pub fn email(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = normalize_email(text) {
        assert!(n.len() <= crate::auth::users::MAX_EMAIL_BYTES);
        assert_eq!(normalize_email(&n).ok(), Some(n.clone()));
    }
}

/// Classifies arbitrary text as tokens and prefixes.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in ["rki", "rks", "rkk"] {
        let full = crate::auth::token::looks_like(kind, text);
        let prefix = crate::auth::token::looks_like_prefix(kind, text);
        assert!(!(full && prefix), "{text:?} is both a token and a prefix");
    }
    let _ = crate::auth::token::hash_token(text);
}

/// Parses arbitrary NUL-separated arguments as a `redkeep` command line.
#[cfg(feature = "cli")]
pub fn cli_args(data: &[u8]) {
    use clap::Parser;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args = std::iter::once("redkeep").chain(text.split('\0'));
    let _ = crate::cli::Cli::try_parse_from(args);
}

/// A fresh data dir with cheap hashing, removed when dropped.
fn scratch() -> (tempfile::TempDir, crate::Redkeep) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let rk = crate::Redkeep::open(
        dir.path(),
        crate::Options::default().password(crate::PasswordParams::INSECURE_FAST),
    )
    .expect("a fresh store opens");
    (dir, rk)
}

fn export(rk: &crate::Redkeep) -> Vec<u8> {
    let mut out = Vec::new();
    crate::ops::export(rk, &mut out, &|_| {}).expect("an export of a sound store");
    out
}

/// Arbitrary bytes as `workspace.json`: whatever reads must survive rewrites with every
/// unknown field unchanged in value (exact integers of any size, floats as written).
pub fn workspace_doc(data: &[u8]) {
    use crate::workspace::WorkspaceDoc;
    let Ok(doc) = WorkspaceDoc::parse(data) else {
        return;
    };
    let (_dir, rk) = scratch();
    let id = rk
        .users()
        .create(crate::NewUser {
            email: "fuzz@example.com".into(),
            password: Some("fuzz password".into()),
            ..crate::NewUser::default()
        })
        .expect("a user")
        .user
        .id;
    let ws = rk.workspaces();
    if ws.put_doc(id, &doc).is_err() {
        return; // Over the size cap, say.
    }
    let shown = |d: &WorkspaceDoc| -> Vec<(String, String)> {
        d.other
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    };
    let first = ws.read(id).expect("a document just written reads");
    assert_eq!(
        shown(&first),
        shown(&doc),
        "unknown fields changed on the first write"
    );
    for round in 0..3 {
        match ws.update(id, |d| d.add_note(format!("note {round}"))) {
            Ok(_) => {}
            // A document whose `notes` is not a list refuses a note, and keeps what it has.
            Err(crate::Error::InvalidInput { .. }) => {
                ws.update(id, |_| Ok(())).expect("a rewrite");
            }
            Err(e) => panic!("an update failed: {e}"),
        }
        let _ = ws.save_piece(id, b"{}");
        let again = ws.read(id).expect("a rewritten document reads");
        assert_eq!(
            shown(&again),
            shown(&doc),
            "unknown fields changed on rewrite {round}"
        );
    }
}

/// Arbitrary lines as an import into a fresh store: a success leaves a store that passes
/// `check`; a failure leaves the store as it was.
pub fn import_lines(data: &[u8]) {
    let (_dir, rk) = scratch();
    let before = export(&rk);
    match crate::ops::import(&rk, &mut std::io::Cursor::new(data), &|_| {}) {
        Ok(_) => {
            let report = rk.check(false).expect("check runs");
            assert!(
                report.ok,
                "an accepted import fails check: {:?}",
                report.problems
            );
        }
        Err(_) => assert_eq!(export(&rk), before, "a refused import changed the store"),
    }
}

#[cfg(feature = "fuzzing")]
mod structured {
    use std::collections::BTreeMap;

    use arbitrary::{Arbitrary, Unstructured};

    use crate::auth::orgs::{OrgRole, OrgSpec};
    use crate::auth::roles::RoleSpec;
    use crate::auth::sessions::LoginMeta;
    use crate::error::Error;
    use crate::{InviteSpec, NewUser, Registration};

    /// One operation of the model fuzzer.
    #[derive(Debug, Arbitrary)]
    enum Op {
        Create { user: u8, username: bool },
        Register { user: u8, invite: u8 },
        Invite { uses: u8 },
        RevokeInvite { invite: u8 },
        Login { user: u8, right: bool },
        Logout { session: u8 },
        Disable { user: u8 },
        Enable { user: u8 },
        Delete { user: u8 },
        Grant { user: u8 },
        Revoke { user: u8 },
        OrgCreate { owner: u8, name: u8 },
        OrgJoin { org: u8, user: u8 },
        OrgLeave { org: u8, user: u8 },
        Piece { user: u8 },
        DeletePiece { user: u8, n: u8 },
        Note { user: u8 },
    }

    #[derive(Default)]
    struct Model {
        users: BTreeMap<u8, (u64, bool)>,
        invites: Vec<(String, u32, u32, bool)>,
        sessions: Vec<(String, u64)>,
        editors: std::collections::BTreeSet<u64>,
        orgs: Vec<(u64, BTreeMap<u64, OrgRole>)>,
        pieces: BTreeMap<u64, std::collections::BTreeSet<u64>>,
        notes: BTreeMap<u64, usize>,
    }

    const PW: &str = "model password";

    fn email(n: u8) -> String {
        format!("m{n}@example.com")
    }

    /// Arbitrary sequences of account, invite, role, org, session and piece operations against
    /// a model of what each should do; every result is compared, and `check` runs at the end.
    pub fn store_ops(data: &[u8]) {
        let mut u = Unstructured::new(data);
        let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
            return;
        };
        let (_dir, rk) = super::scratch();
        rk.roles()
            .create(RoleSpec {
                name: "editor".into(),
                description: String::new(),
                permissions: vec!["docs.edit".into()],
                priority: 1,
            })
            .expect("a role");
        let mut m = Model::default();
        for op in ops.into_iter().take(64) {
            step(&rk, &mut m, op);
        }
        let report = rk.check(false).expect("check runs");
        assert!(report.ok, "{:?}", report.problems);
        for (id, set) in &m.pieces {
            if m.users.values().any(|(u, _)| u == id) {
                let listed: Vec<u64> = rk
                    .workspaces()
                    .list_pieces(*id)
                    .expect("pieces list")
                    .iter()
                    .map(|p| p.piece)
                    .collect();
                assert_eq!(listed, set.iter().copied().collect::<Vec<_>>());
            }
        }
    }

    fn step(rk: &crate::Redkeep, m: &mut Model, op: Op) {
        let user_of = |m: &Model, n: u8| m.users.get(&(n % 8)).copied();
        match op {
            Op::Create { user, username } => {
                let n = user % 8;
                let r = rk.users().create(NewUser {
                    email: email(n),
                    username: username.then(|| format!("user{n}")),
                    password: Some(PW.into()),
                    ..NewUser::default()
                });
                match (m.users.contains_key(&n), r) {
                    (false, Ok(c)) => {
                        m.users.insert(n, (c.user.id, true));
                    }
                    (true, Err(Error::Conflict { .. })) => {}
                    (exists, r) => panic!("create {n} (exists {exists}): {r:?}"),
                }
            }
            Op::Register { user, invite } => {
                let n = user % 8;
                let Some(i) = m
                    .invites
                    .len()
                    .checked_sub(1)
                    .map(|l| (invite as usize) % (l + 1))
                else {
                    return;
                };
                let (code, max, uses, revoked) = m.invites[i].clone();
                let r = rk.users().register(Registration {
                    email: email(n),
                    password: PW.into(),
                    invite: Some(code.as_str().into()),
                    ..Registration::default()
                });
                let usable = !revoked && uses < max;
                match (usable, m.users.contains_key(&n), r) {
                    (true, false, Ok(u)) => {
                        m.users.insert(n, (u.id, true));
                        m.invites[i].2 += 1;
                    }
                    (true, true, Err(Error::Conflict { .. })) => {}
                    (false, _, Err(Error::Revoked { .. } | Error::InvalidCredential { .. })) => {}
                    (usable, exists, r) => {
                        panic!("register {n} (usable {usable}, exists {exists}): {r:?}")
                    }
                }
            }
            Op::Invite { uses } => {
                let max = u32::from(uses % 3) + 1;
                let c = rk
                    .invites()
                    .create(InviteSpec::default().uses(max))
                    .expect("an invite");
                m.invites.push((c.code.expose().to_string(), max, 0, false));
            }
            Op::RevokeInvite { invite } => {
                if m.invites.is_empty() {
                    return;
                }
                let i = invite as usize % m.invites.len();
                let r = rk.invites().revoke(&m.invites[i].0);
                let (_, max, uses, revoked) = m.invites[i];
                // A used-up invite has nothing left to revoke: refused, like a revoked one.
                match (!revoked && uses < max, r) {
                    (true, Ok(_)) => m.invites[i].3 = true,
                    (false, Err(Error::Denied { .. })) => {}
                    (usable, r) => panic!("revoke (usable {usable}): {r:?}"),
                }
            }
            Op::Login { user, right } => {
                let n = user % 8;
                let pw = if right { PW } else { "wrong password" };
                let r = rk.sessions().login(&email(n), pw, LoginMeta::default());
                match (user_of(m, n), right, r) {
                    (Some((id, true)), true, Ok(l)) => {
                        m.sessions.push((l.token.expose().into(), id))
                    }
                    (_, _, Err(Error::Unauthorized)) => {}
                    (who, right, r) => panic!("login {n} {who:?} right={right}: {r:?}"),
                }
            }
            Op::Logout { session } => {
                if m.sessions.is_empty() {
                    return;
                }
                let i = session as usize % m.sessions.len();
                let (token, _) = m.sessions.remove(i);
                let _ = rk.sessions().logout(&token).expect("logout");
                assert!(rk.sessions().validate(&token).is_err());
            }
            Op::Disable { user } | Op::Enable { user } => {
                let active = matches!(op, Op::Enable { .. });
                let Some((id, _)) = user_of(m, user) else {
                    return;
                };
                let r = if active {
                    rk.users().enable(id)
                } else {
                    rk.users().disable(id).map(|d| d.user)
                };
                r.expect("enable/disable");
                m.users.insert(user % 8, (id, active));
                if !active {
                    m.sessions.retain(|(_, u)| *u != id);
                }
            }
            Op::Delete { user } => {
                let Some((id, _)) = user_of(m, user) else {
                    return;
                };
                match rk.users().delete(id) {
                    Ok(_) => {
                        m.users.remove(&(user % 8));
                        m.sessions.retain(|(_, u)| *u != id);
                        m.editors.remove(&id);
                        m.pieces.remove(&id);
                        m.notes.remove(&id);
                        for (_, members) in &mut m.orgs {
                            members.remove(&id);
                        }
                        m.orgs.retain(|(_, members)| !members.is_empty());
                        assert!(!rk.workspaces().exists(id));
                    }
                    Err(Error::Denied { .. }) => {
                        // The last owner of an org with other members stays.
                        assert!(m.orgs.iter().any(|(_, ms)| ms.get(&id) == Some(&OrgRole::Owner) && ms.len() > 1));
                    }
                    Err(e) => panic!("delete {id}: {e}"),
                }
            }
            Op::Grant { user } | Op::Revoke { user } => {
                let grant = matches!(op, Op::Grant { .. });
                let Some((id, active)) = user_of(m, user) else {
                    return;
                };
                let r = if grant {
                    rk.roles().grant(id, "editor", None)
                } else {
                    rk.roles().revoke(id, "editor", None)
                };
                match (grant, m.editors.contains(&id), r) {
                    (true, _, Ok(_)) => {
                        m.editors.insert(id);
                    }
                    (false, true, Ok(_)) => {
                        m.editors.remove(&id);
                    }
                    (false, false, Err(_)) => {}
                    (g, had, r) => panic!("grant={g} had={had}: {r:?}"),
                }
                assert_eq!(
                    rk.roles()
                        .has_permission(id, "docs.edit")
                        .expect("permission"),
                    // A disabled user holds no permissions, whatever its roles.
                    active && m.editors.contains(&id)
                );
            }
            Op::OrgCreate { owner, name } => {
                let Some((id, _)) = user_of(m, owner) else {
                    return;
                };
                let o = rk
                    .orgs()
                    .create(OrgSpec {
                        name: format!("Org {name}"),
                        slug: None,
                        description: String::new(),
                        owner: id,
                    })
                    .expect("an org");
                m.orgs.push((o.id, BTreeMap::from([(id, OrgRole::Owner)])));
            }
            Op::OrgJoin { org, user } | Op::OrgLeave { org, user } => {
                let join = matches!(op, Op::OrgJoin { .. });
                if m.orgs.is_empty() {
                    return;
                }
                let i = org as usize % m.orgs.len();
                let Some((id, _)) = user_of(m, user) else {
                    return;
                };
                let (oid, members) = &mut m.orgs[i];
                if join {
                    let r = rk.orgs().add_member(*oid, id, OrgRole::Member);
                    match (members.contains_key(&id), r) {
                        (false, Ok(_)) => {
                            members.insert(id, OrgRole::Member);
                        }
                        (true, Err(Error::Denied { .. })) => {}
                        (had, r) => panic!("join had={had}: {r:?}"),
                    }
                } else {
                    let owners = members.values().filter(|r| **r == OrgRole::Owner).count();
                    let r = rk.orgs().remove_member(*oid, id);
                    match (members.get(&id).copied(), r) {
                        (Some(OrgRole::Owner), Err(Error::Denied { .. })) if owners == 1 => {}
                        (Some(_), Ok(_)) => {
                            members.remove(&id);
                        }
                        (None, Err(Error::NotFound { .. })) => {}
                        (role, r) => panic!("leave {role:?}: {r:?}"),
                    }
                }
            }
            Op::Piece { user } => {
                let Some((id, _)) = user_of(m, user) else {
                    return;
                };
                let n = rk
                    .workspaces()
                    .save_piece(id, b"{\"fuzz\":1}")
                    .expect("a piece");
                let set = m.pieces.entry(id).or_default();
                assert!(set.iter().all(|p| *p < n), "piece number {n} given again");
                set.insert(n);
            }
            Op::DeletePiece { user, n } => {
                let Some((id, _)) = user_of(m, user) else {
                    return;
                };
                let n = u64::from(n % 8) + 1;
                let r = rk.workspaces().delete_piece(id, n);
                let set = m.pieces.entry(id).or_default();
                match (set.contains(&n), r) {
                    (true, Ok(())) => {
                        set.remove(&n);
                    }
                    (false, Err(Error::NotFound { .. })) => {}
                    (had, r) => panic!("delete piece {n} had={had}: {r:?}"),
                }
            }
            Op::Note { user } => {
                let Some((id, _)) = user_of(m, user) else {
                    return;
                };
                rk.workspaces()
                    .update(id, |d| d.add_note("n"))
                    .expect("a note");
                let count = m.notes.entry(id).or_default();
                *count += 1;
                assert_eq!(rk.workspaces().read(id).expect("doc").note_count(), *count);
            }
        }
    }
}

#[cfg(feature = "fuzzing")]
pub use structured::store_ops;

/// Arbitrary command lines (one per line, words split on whitespace), parsed like the CLI
/// parses them and executed against a fresh data dir with cheap hashing; each result is
/// rendered as text and as JSON, and `check` is clean at the end. Commands that name files
/// outside the data dir (backup, restore, export -o, adopt, input files) and migrations are
/// skipped.
#[cfg(feature = "cli")]
pub fn commands(data: &[u8]) {
    use clap::Parser;

    use crate::admin::commands::Input;
    use crate::admin::{Command, Io, Quiet, Request, execute};

    let text = String::from_utf8_lossy(data);
    let (_dir, rk) = scratch();
    rk.init(crate::InitSpec {
        no_admin: true,
        ..crate::InitSpec::default()
    })
    .expect("init");
    for line in text.lines().take(16) {
        let words = line.split_whitespace();
        let Ok(cli) = crate::cli::Cli::try_parse_from(std::iter::once("redkeep").chain(words))
        else {
            continue;
        };
        let command = cli.command;
        let outside = matches!(
            command,
            Command::Backup { .. }
                | Command::Restore { .. }
                | Command::Reset { .. }
                | Command::Adopt(_)
                | Command::Salvage { .. }
                | Command::Migrate(_)
                | Command::Export(crate::admin::commands::ExportArgs { output: Some(_) })
        ) || matches!(command.input(), Input::File(f) if f != "-");
        if outside {
            continue;
        }
        let secrets = command.stdin_secrets();
        let secret = (!secrets.is_empty())
            .then(|| crate::Secret::new(vec!["fuzz password 1"; secrets.len()].join("\n")));
        let req = Request { command, secret };
        let mut input = std::io::Cursor::new(br#"{"id":"a1","user":1,"status":"x"}"#.to_vec());
        let mut output = Vec::new();
        let io = Io {
            input: &mut input,
            output: &mut output,
            feedback: &Quiet,
        };
        match execute(&rk, &req, io) {
            Ok(reply) => {
                let _ = crate::cli::render(&reply, false);
                let _ = crate::cli::render(&reply, true);
            }
            Err(e) => {
                let _ = e.full_message();
            }
        }
    }
    let report = rk.check(false).expect("check runs");
    assert!(report.ok, "{:?}", report.problems);
}

/// Arbitrary bytes sent as one request to an admin server running in this process: each gets
/// an answer or a clean close within the server's limits, and the server keeps serving.
#[cfg(feature = "admin")]
pub fn admin_protocol(data: &[u8]) {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::OnceLock;
    use std::time::Duration;

    use crate::admin::{AdminServer, Command, Remote, Request, SOCKET_FILE};

    struct Served {
        dir: tempfile::TempDir,
        _rk: crate::Redkeep,
        _server: AdminServer,
    }
    static SERVED: OnceLock<Served> = OnceLock::new();
    let served = SERVED.get_or_init(|| {
        let (dir, rk) = scratch();
        rk.init(crate::InitSpec {
            no_admin: true,
            ..crate::InitSpec::default()
        })
        .expect("init");
        let server = crate::admin::serve(&rk).expect("the admin server starts");
        Served {
            dir,
            _rk: rk,
            _server: server,
        }
    });
    let path = served.dir.path().join(SOCKET_FILE);
    let mut s = UnixStream::connect(&path).expect("the server accepts");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a timeout");
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .expect("a timeout");
    // The server may answer and close before taking everything: that is a clean refusal.
    let _ = s.write_all(data);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no answer and no close: {e}"),
    }
    let conn = crate::admin::connect(served.dir.path()).expect("the server still listens");
    match conn.send(&Request::new(Command::Stats), None, &mut std::io::sink()) {
        Ok(Remote::Reply(_)) => {}
        other => panic!("the server stopped serving: {other:?}"),
    }
}

/// A small sound store, built once per process: users, orgs, invites, sessions, API keys and
/// workspace pieces. Its file is the starting point of every
/// `damaged_store` run.
fn sound_store() -> &'static (Vec<u8>, Vec<u8>) {
    use std::sync::OnceLock;

    use crate::auth::api_keys::{ApiKeySpec, KeyOwner};
    use crate::auth::orgs::OrgSpec;

    static BASE: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let (dir, rk) = scratch();
        for i in 0..12 {
            let user = rk
                .users()
                .create(crate::NewUser {
                    email: format!("user{i}@example.com"),
                    password: Some("correct horse battery".into()),
                    ..crate::NewUser::default()
                })
                .expect("a user")
                .user;
            if i % 4 == 0 {
                rk.orgs()
                    .create(OrgSpec {
                        name: format!("Team {i}"),
                        slug: None,
                        description: String::new(),
                        owner: user.id,
                    })
                    .expect("an org");
                rk.workspaces()
                    .save_piece(user.id, br#"{"t":1}"#)
                    .expect("a piece");
            }
            if i % 3 == 0 {
                rk.sessions()
                    .login(
                        &user.email,
                        "correct horse battery",
                        crate::auth::sessions::LoginMeta::default(),
                    )
                    .expect("a login");
                rk.api_keys()
                    .create(ApiKeySpec {
                        owner: KeyOwner::User(user.id),
                        scopes: vec!["read".into()],
                        expires_in: None,
                        created_by: None,
                    })
                    .expect("an API key");
            }
        }
        for _ in 0..3 {
            rk.invites()
                .create(crate::InviteSpec::default())
                .expect("an invite");
        }
        drop(rk);
        let bytes = std::fs::read(dir.path().join(crate::STORE_FILE)).expect("the store file");
        // The reference export, of the store file alone (the damaged copies have no folders).
        let alone = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(alone.path().join(crate::STORE_FILE), &bytes).expect("a copy");
        let rk = crate::Redkeep::open(
            alone.path(),
            crate::Options::default()
                .password(crate::PasswordParams::INSECURE_FAST)
                .create(false),
        )
        .expect("the sound copy opens");
        (bytes, export(&rk))
    })
}

/// Arbitrary damage to a sound store file, then everything an application or operator does
/// with it: open, check, list, log in, create, repair, salvage, drop. Any outcome but a panic
/// is acceptable, with two promises: what `check` calls sound exports exactly as before the
/// damage, and the store `salvage` writes passes `check`.
///
/// The input is a list of 5-byte edits `[kind, offset (3 bytes, big-endian, scaled to the
/// file), value]`: kind 0 flips the bits of `value` at the offset, 1 sets the byte, 2 zeroes
/// `value` bytes from the offset, 3 truncates the file at the offset.
pub fn damaged_store(data: &[u8]) {
    let (pristine, reference) = sound_store();
    let mut bytes = pristine.clone();
    for edit in data.chunks_exact(5).take(512) {
        if bytes.is_empty() {
            break;
        }
        let raw = u32::from_be_bytes([0, edit[1], edit[2], edit[3]]) as usize;
        let at = raw * bytes.len() / (1 << 24);
        match edit[0] % 4 {
            0 => bytes[at] ^= edit[4].max(1),
            1 => bytes[at] = edit[4],
            2 => {
                let end = (at + usize::from(edit[4])).min(bytes.len());
                bytes[at..end].fill(0);
            }
            _ => bytes.truncate(at),
        }
    }
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = tmp.path().join("damaged");
    std::fs::create_dir(&dir).expect("a data dir");
    std::fs::write(dir.join(crate::STORE_FILE), &bytes).expect("the damaged copy");
    let options = || {
        crate::Options::default()
            .password(crate::PasswordParams::INSECURE_FAST)
            .create(false)
    };
    if let Ok(rk) = crate::Redkeep::open(&dir, options()) {
        if rk.check(false).is_ok_and(|r| r.ok) {
            let mut out = Vec::new();
            let exported = crate::ops::export(&rk, &mut out, &|_| {});
            assert!(
                exported.is_ok() && out == *reference,
                "check found nothing wrong, yet the data changed: {:?}",
                exported.err()
            );
        }
        let _ = rk.users().list(crate::UserFilter::All, None, 100);
        let _ = rk.sessions().login(
            "user3@example.com",
            "correct horse battery",
            crate::auth::sessions::LoginMeta::default(),
        );
        let _ = rk.users().create(crate::NewUser {
            email: "late@example.com".into(),
            password: Some("correct horse battery".into()),
            ..crate::NewUser::default()
        });
        let _ = rk.check(true);
        let _ = rk.users().count();
    }
    let to = tmp.path().join("salvaged");
    if let Ok(report) = crate::ops::salvage(&dir, &to, options(), crate::Timestamp(1_800_000_000)) {
        let rk = crate::Redkeep::open(&to, options()).expect("the salvaged store opens");
        // A copy left without any account says so; any other problem is a failure.
        let accountless = rk.users().count().is_ok_and(|n| n == 0);
        assert!(
            report
                .problems
                .iter()
                .all(|p| accountless && p.starts_with("no account could be salvaged")),
            "the salvaged store fails check: {:?}",
            report.problems
        );
        assert!(
            rk.check(false).is_ok_and(|r| r.ok),
            "the salvaged store fails check"
        );
    }
}
