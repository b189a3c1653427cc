//! No secret leaves through ordinary Rust habits: every public record and response type is
//! debug-printed and (where it can be) serialised, and the output holds no password, token,
//! invite code, API key, password hash or token hash.

mod common;

use std::fmt::Debug;
use std::time::Duration;

use common::TestDir;
use redkeep::auth::api_keys::{ApiKeySpec, KeyOwner};
use redkeep::auth::orgs::{OrgRole, OrgSpec};
use redkeep::auth::roles::RoleSpec;
use redkeep::auth::sessions::LoginMeta;
use redkeep::{InitSpec, InviteSpec, NewUser, Options, Redkeep, Registration, Secret};
use serde::Serialize;
use sha2::{Digest, Sha256};

const PASSWORD: &str = "correct horse battery staple";
const OTHER_PASSWORD: &str = "a second secret password";

/// Everything that must never show, and every rendering of what was printed.
#[derive(Default)]
struct Leaks {
    secrets: Vec<(String, String)>,
    printed: Vec<(String, String)>,
}

impl Leaks {
    fn secret(&mut self, what: &str, value: &str) {
        assert!(value.len() >= 8, "{what} is too short to search for");
        self.secrets.push((what.to_string(), value.to_string()));
    }

    /// A token, and every form its SHA-256 could take in output (hex, JSON array, Debug array).
    fn token(&mut self, what: &str, token: &str) {
        self.secret(what, token);
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        self.secret(&format!("hex hash of {what}"), &hex);
        self.secret(
            &format!("JSON hash of {what}"),
            &serde_json::to_string(&hash).unwrap(),
        );
        self.secret(&format!("Debug hash of {what}"), &format!("{hash:?}"));
        self.secret(
            &format!("first bytes of the hash of {what}"),
            format!("{:?}", &hash[..4]).trim_end_matches(']'),
        );
    }

    fn debug<T: Debug>(&mut self, name: &str, value: &T) {
        self.printed
            .push((format!("{name} (Debug)"), format!("{value:?}")));
        self.printed
            .push((format!("{name} (Debug, pretty)"), format!("{value:#?}")));
    }

    fn both<T: Debug + Serialize>(&mut self, name: &str, value: &T) {
        self.debug(name, value);
        self.printed.push((
            format!("{name} (JSON)"),
            serde_json::to_string(value).unwrap(),
        ));
    }

    fn assert_none_leaked(&self) {
        assert!(
            self.printed.len() > 40,
            "too little was printed to mean anything"
        );
        let mut found = Vec::new();
        for (what, value) in &self.secrets {
            for (name, text) in &self.printed {
                if text.contains(value.as_str()) {
                    found.push(format!("{what} in {name}: {text}"));
                }
            }
        }
        assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
    }
}

/// The PHC strings of every stored credential, and their salt and hash parts.
fn password_hashes(rk: &Redkeep) -> Vec<String> {
    let mut out = Vec::new();
    redkeep::ops::export(rk, &mut out, &|_| {}).unwrap();
    let mut found = Vec::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(phc) = v["record"]["password_hash"].as_str() {
            found.push(phc.to_string());
            // $argon2id$v=19$m=…,t=…,p=…$SALT$HASH
            found.extend(phc.rsplit('$').take(2).map(str::to_string));
        }
    }
    assert!(found.len() >= 6, "the export holds the credentials");
    found
}

#[test]
fn no_public_type_shows_a_password_token_code_key_or_hash() {
    let t = TestDir::new();
    let rk = t.open();
    let mut leaks = Leaks::default();
    leaks.secret("password", PASSWORD);
    leaks.secret("other password", OTHER_PASSWORD);

    // A store URL's password, in either form libpq reads.
    leaks.secret("store URL password", "store-url-secret");
    for url in [
        "postgres://app:store-url-secret@db/app",
        "host=db password='store-url-secret' dbname=app",
    ] {
        let options = Options {
            store_url: Some(url.into()),
            ..Options::default()
        };
        leaks.debug("Options", &options);
    }

    let init_spec = InitSpec {
        no_admin: false,
        admin_email: Some("root@example.com".into()),
        admin_password: Some(Secret::new(OTHER_PASSWORD)),
        keep_password: false,
    };
    leaks.debug("InitSpec", &init_spec);
    let init = rk.init(init_spec).unwrap();
    leaks.debug("InitOutcome", &init);

    let invite = rk.invites().create(InviteSpec::default().uses(2)).unwrap();
    leaks.token("invite code", invite.code.expose());
    leaks.debug("CreatedInvite", &invite);
    leaks.both("Invite", &invite.invite);

    let new_user = NewUser {
        email: "alice@example.com".into(),
        name: Some("Alice".into()),
        username: Some("alice".into()),
        password: Some(Secret::new(PASSWORD)),
        is_admin: false,
        invite: Some(invite.code.clone()),
    };
    leaks.debug("NewUser", &new_user);
    let alice = rk.users().create(new_user).unwrap();
    leaks.debug("CreatedUser", &alice);
    leaks.both("User", &alice.user);

    let generated = rk
        .users()
        .create(NewUser {
            email: "bob@example.com".into(),
            name: None,
            username: None,
            password: None,
            is_admin: true,
            invite: None,
        })
        .unwrap();
    let bob_password = generated.password.clone().unwrap();
    leaks.secret("generated password", bob_password.expose());
    leaks.debug("CreatedUser with a generated password", &generated);

    let registration = Registration {
        email: "carol@example.com".into(),
        password: Secret::new(PASSWORD),
        name: None,
        username: None,
        invite: Some(invite.code.clone()),
    };
    leaks.debug("Registration", &registration);
    let carol = rk.users().register(registration).unwrap();
    leaks.both("registered User", &carol);

    let login = rk
        .sessions()
        .login("alice", PASSWORD, LoginMeta::default())
        .unwrap();
    leaks.token("session token", login.token.expose());
    leaks.debug("Login", &login);
    leaks.both("Session", &login.session);
    let (u, s) = rk.sessions().validate(login.token.expose()).unwrap();
    leaks.both("validated User", &u);
    leaks.both("validated Session", &s);
    leaks.both(
        "session list",
        &rk.sessions().list(Some(alice.user.id), 10).unwrap(),
    );
    let second = rk
        .sessions()
        .login(
            "bob@example.com",
            bob_password.expose(),
            LoginMeta::default(),
        )
        .unwrap();
    leaks.token("second session token", second.token.expose());

    let key = rk
        .api_keys()
        .create(ApiKeySpec {
            owner: KeyOwner::User(alice.user.id),
            scopes: vec!["read".into()],
            expires_in: Some(Duration::from_secs(3600)),
            created_by: None,
        })
        .unwrap();
    leaks.token("API key", key.key.expose());
    leaks.debug("CreatedApiKey", &key);
    leaks.both("ApiKey", &key.api_key);
    leaks.both(
        "verified ApiKey",
        &rk.api_keys().verify(key.key.expose()).unwrap(),
    );
    leaks.both("API key list", &rk.api_keys().list(None, 10).unwrap());

    let org = rk
        .orgs()
        .create(OrgSpec {
            name: "Acme".into(),
            slug: None,
            description: String::new(),
            owner: alice.user.id,
        })
        .unwrap();
    leaks.both("Org", &org);
    leaks.both(
        "OrgMember",
        &rk.orgs()
            .add_member(org.id, carol.id, OrgRole::Member)
            .unwrap(),
    );
    leaks.both("org members", &rk.orgs().members(org.id, None, 10).unwrap());
    let org_key = rk
        .api_keys()
        .create(ApiKeySpec {
            owner: KeyOwner::Org(org.id),
            scopes: vec!["read".into()],
            expires_in: None,
            created_by: None,
        })
        .unwrap();
    leaks.token("org API key", org_key.key.expose());

    leaks.both(
        "Role",
        &rk.roles()
            .create(RoleSpec {
                name: "editor".into(),
                description: "edits".into(),
                permissions: vec!["posts:write".to_string()],
                priority: 10,
            })
            .unwrap(),
    );
    leaks.both(
        "roles of alice",
        &rk.roles().of_user(alice.user.id).unwrap(),
    );
    leaks.both("Lockout", &rk.users().lockout(alice.user.id).unwrap());
    leaks.both(
        "PasswordInfo",
        &rk.users().password_info(alice.user.id).unwrap(),
    );
    leaks.both(
        "user list",
        &rk.users()
            .list(redkeep::UserFilter::All, None, 100)
            .unwrap(),
    );

    // Failures must not echo what was typed either.
    let errors = [
        rk.sessions()
            .login("alice", OTHER_PASSWORD, LoginMeta::default())
            .unwrap_err(),
        rk.users()
            .check_password(alice.user.id, OTHER_PASSWORD)
            .unwrap_err(),
        rk.users()
            .change_password(login.token.expose(), OTHER_PASSWORD, "short")
            .unwrap_err(),
        rk.users().set_password(alice.user.id, "x").unwrap_err(),
        rk.invites().validate(invite.code.expose()).unwrap_err(), // used up
    ];
    rk.sessions().logout(second.token.expose()).unwrap();
    let revoked_key = rk.api_keys().revoke(org_key.key.expose()).unwrap();
    leaks.both("revoked ApiKey", &revoked_key);
    let errors = errors.into_iter().chain([
        rk.sessions().validate(second.token.expose()).unwrap_err(),
        rk.api_keys().verify(org_key.key.expose()).unwrap_err(),
    ]);
    for (i, e) in errors.enumerate() {
        leaks
            .printed
            .push((format!("error {i} (Display)"), e.full_message()));
        leaks.debug(&format!("error {i}"), &e);
    }

    let events = rk.audit().list(None, None, 1000).unwrap();
    assert!(events.len() > 5);
    leaks.both("audit events", &events);

    for phc in password_hashes(&rk) {
        leaks.secret("password hash", &phc);
    }

    #[cfg(feature = "cli")]
    admin_replies(&rk, &mut leaks, &login.token, &key.key);

    leaks.assert_none_leaked();
}

/// Requests carry secrets to the owner; their `Debug`, and the replies of the commands that
/// show records, must not.
#[cfg(feature = "cli")]
fn admin_replies(rk: &Redkeep, leaks: &mut Leaks, session: &Secret, key: &Secret) {
    use clap::Parser;
    use redkeep::admin::{Io, Quiet, Request, execute};
    use redkeep::cli::Cli;

    let run = |args: &[&str], secret: Option<&Secret>| {
        let cli =
            Cli::try_parse_from(std::iter::once("redkeep").chain(args.iter().copied())).unwrap();
        let req = Request {
            command: cli.command,
            secret: secret.cloned(),
        };
        let mut output = Vec::new();
        let reply = execute(
            rk,
            &req,
            Io {
                input: &mut std::io::empty(),
                output: &mut output,
                feedback: &Quiet,
            },
        )
        .unwrap();
        (req, reply)
    };
    for (args, secret) in [
        (&["user", "show", "alice"][..], None),
        (&["user", "list", "--all"], None),
        (&["session", "list"], None),
        (&["session", "validate", "--token-stdin"], Some(session)),
        (&["apikey", "list"], None),
        (&["apikey", "verify", "--key-stdin"], Some(key)),
        (&["invite", "list", "--all"], None),
        (&["audit", "list"], None),
        (&["org", "show", "acme"], None),
        (
            &[
                "user",
                "set-password",
                "carol@example.com",
                "--password-stdin",
            ],
            Some(&Secret::new(OTHER_PASSWORD)),
        ),
    ] {
        let (req, reply) = run(args, secret);
        let name = args.join(" ");
        leaks.debug(&format!("Request `{name}`"), &req);
        leaks.both(&format!("Reply of `{name}`"), &reply);
    }
}
