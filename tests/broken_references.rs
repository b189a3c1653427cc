//! `check` finds every reference that points nowhere: records whose user, org or role is gone,
//! orgs without an owner, users without a credential, an org, or a current org of theirs.
//! The damage is made the way a buggy application table write or a hand edit would make it:
//! by deleting or changing records directly, around the flows that keep them consistent.

mod common;

use common::TestDir;
use redkeep::auth::api_keys::{ApiKeySpec, KeyOwner};
use redkeep::auth::orgs::{Org, OrgMember, OrgRole, OrgSpec};
use redkeep::auth::roles::{Role, RoleSpec};
use redkeep::auth::sessions::LoginMeta;
use redkeep::{NewUser, Redkeep, User};

fn user(rk: &Redkeep, email: &str) -> User {
    rk.users()
        .create(NewUser {
            email: email.into(),
            password: Some("correct horse battery".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
}

fn problems(rk: &Redkeep) -> Vec<String> {
    let report = rk.check(false).unwrap();
    assert_eq!(report.ok, report.problems.is_empty());
    report.problems
}

fn assert_found(problems: &[String], expected: &str) {
    assert!(
        problems.iter().any(|p| p == expected),
        "`check` should report {expected:?}; it reported {problems:#?}"
    );
}

#[test]
fn check_names_every_reference_that_points_nowhere() {
    let t = TestDir::new();
    let rk = t.open();
    let alice = user(&rk, "alice@example.com");
    let bob = user(&rk, "bob@example.com");
    let carol = user(&rk, "carol@example.com");
    let acme = rk
        .orgs()
        .create(OrgSpec {
            name: "Acme".into(),
            slug: None,
            description: String::new(),
            owner: alice.id,
        })
        .unwrap();
    rk.orgs()
        .add_member(acme.id, bob.id, OrgRole::Member)
        .unwrap();
    let doomed = rk
        .orgs()
        .create(OrgSpec {
            name: "Doomed".into(),
            slug: None,
            description: String::new(),
            owner: alice.id,
        })
        .unwrap();
    let org_key = rk
        .api_keys()
        .create(ApiKeySpec {
            owner: KeyOwner::Org(doomed.id),
            scopes: vec!["read".into()],
            expires_in: None,
            created_by: None,
        })
        .unwrap();
    let editor = rk
        .roles()
        .create(RoleSpec {
            name: "editor".into(),
            description: String::new(),
            permissions: vec!["posts:write".into()],
            priority: 1,
        })
        .unwrap();
    rk.roles().grant(bob.id, "editor", None).unwrap();
    let login = rk
        .sessions()
        .login(
            "carol@example.com",
            "correct horse battery",
            LoginMeta::default(),
        )
        .unwrap();
    assert_eq!(problems(&rk), Vec::<String>::new(), "a sound store");

    rk.store()
        .write(|tx| {
            // An org vanishes with its membership and key still pointing at it.
            tx.table::<Org>().delete(&doomed.id)?;
            // Acme loses its only owner's membership.
            tx.table::<OrgMember>().delete(&(acme.id, alice.id))?;
            // A role vanishes while bob holds it.
            tx.table::<Role>().delete(&editor.id)?;
            // Bob works in an org he is not a member of.
            tx.table::<User>().modify(&bob.id, |u| {
                u.current_org_id = Some(doomed.id);
                Ok(())
            })?;
            // Carol's user record vanishes, leaving her credential, session and memberships.
            tx.table::<User>().delete(&carol.id)?;
            Ok(())
        })
        .unwrap();
    let found = problems(&rk);
    let short_id = &login.session.short_id;
    let (c, d, a) = (carol.id, doomed.id, alice.id);
    for expected in [
        format!("a credential points at missing user {c}"),
        format!("session {short_id} points at missing user {c}"),
        format!(
            "membership of org {} points at missing user {c}",
            carol.current_org_id.unwrap()
        ),
        format!(
            "role assignment of role {} points at missing user {c}",
            rk.roles().get("user").unwrap().id
        ),
        format!("user {} holds missing role {}", bob.id, editor.id),
        format!("membership of user {a} points at missing org {d}"),
        format!(
            "api key {} belongs to missing org {d}",
            org_key.api_key.prefix
        ),
        format!("org {} has no owner", acme.slug),
        format!("user {}'s current org {d} is not one of theirs", bob.id),
    ] {
        assert_found(&found, &expected);
    }

    // A user left with no org, no current org and no credential.
    rk.store()
        .write(|tx| {
            let personal = alice.current_org_id.unwrap();
            tx.table::<OrgMember>().delete(&(personal, alice.id))?;
            tx.table::<OrgMember>().delete(&(d, alice.id))?;
            tx.table::<User>().modify(&alice.id, |u| {
                u.current_org_id = None;
                Ok(())
            })?;
            Ok(())
        })
        .unwrap();
    // And its credential goes (a table only the crate writes; removed with redb itself).
    drop(rk);
    let db = redb::Database::open(t.path().join(redkeep::STORE_FILE)).unwrap();
    let tx = db.begin_write().unwrap();
    let credentials: redb::TableDefinition<&[u8], &[u8]> =
        redb::TableDefinition::new("r:credentials");
    assert!(
        tx.open_table(credentials)
            .unwrap()
            .remove(&a.to_be_bytes()[..])
            .unwrap()
            .is_some()
    );
    tx.commit().unwrap();
    drop(db);
    let rk = t.open();
    let found = problems(&rk);
    assert_found(
        &found,
        &format!("user {a} has no credential; set a password with `redkeep user set-password {a}`"),
    );
    assert_found(&found, &format!("user {a} belongs to no org"));
    assert_found(&found, &format!("user {a} has no current org"));
}

/// The admin role decides who is an administrator: `check` names a user whose admin mark
/// disagrees with their grants, and a repair makes the mark follow the role (a user without
/// a role, as `role revoke` makes, is let be). A mark no grant backs
/// stays while nobody else holds the role (a repair never leaves a store without an
/// administrator), until one is given it.
#[test]
fn the_admin_mark_follows_the_role_and_every_user_holds_one() {
    use redkeep::auth::roles::UserRole;
    let t = TestDir::new();
    let rk = t.open();
    let root = user(&rk, "root@example.com");
    let alice = user(&rk, "alice@example.com");
    let bob = user(&rk, "bob@example.com");
    let carol = user(&rk, "carol@example.com");
    for u in [&root, &alice, &carol] {
        rk.roles().grant(u.id, "admin", None).unwrap();
    }
    assert_eq!(problems(&rk), Vec::<String>::new(), "a sound store");
    let (admin, plain) = (
        rk.roles().get("admin").unwrap().id,
        rk.roles().get("user").unwrap().id,
    );
    let (r, a, b, c) = (root.id, alice.id, bob.id, carol.id);
    rk.store()
        .write(|tx| {
            // Alice's grant is lost, her mark stays; Bob loses his only role (a state
            // `role revoke` makes too, which `check` lets be); Carol's mark is lost, her
            // grant stays.
            tx.table::<UserRole>().delete(&(a, admin))?;
            tx.table::<UserRole>().delete(&(b, plain))?;
            tx.table::<User>().modify(&c, |u| {
                u.is_admin = false;
                Ok(())
            })?;
            Ok(())
        })
        .unwrap();
    let found = problems(&rk);
    assert_found(
        &found,
        &format!(
            "user {a} is marked admin but does not hold the admin role; `redkeep check \
             --repair` takes the mark away (the role decides): if they are an administrator, \
             grant it first with `redkeep role grant {a} admin`"
        ),
    );
    assert_found(
        &found,
        &format!(
            "user {c} holds the admin role but is not marked admin; `redkeep check --repair` \
             marks them (the role decides)"
        ),
    );
    assert_eq!(found.len(), 2, "{found:#?}");
    let report = rk.check(true).unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.repaired.len(), 2, "{:#?}", report.repaired);
    let is_admin = |id| rk.users().get(id).unwrap().unwrap().is_admin;
    assert!(!is_admin(a) && is_admin(c) && is_admin(r));
    // The repair does not undo an operator's revoke.
    assert!(!rk.roles().has_permission(b, "basic_access").unwrap());

    // Every grant of the admin role is lost: the marks stay, and `check` says why.
    rk.store()
        .write(|tx| {
            tx.table::<UserRole>().delete(&(r, admin))?;
            tx.table::<UserRole>().delete(&(c, admin))?;
            Ok(())
        })
        .unwrap();
    let report = rk.check(true).unwrap();
    assert!(report.repaired.is_empty(), "{:#?}", report.repaired);
    for id in [r, c] {
        assert!(is_admin(id));
        assert_found(
            &report.problems,
            &format!(
                "user {id} is marked admin but does not hold the admin role, and no active \
                 user holds it: `redkeep check --repair` keeps the mark rather than leave the \
                 store without an administrator; grant the role to the right user with \
                 `redkeep role grant USER admin`, then run `redkeep check --repair` again"
            ),
        );
    }
    // The operator settles it: root is the administrator, Carol's mark goes.
    rk.roles().grant(r, "admin", None).unwrap();
    let report = rk.check(true).unwrap();
    assert!(report.ok, "{report:#?}");
    assert!(is_admin(r) && !is_admin(c));
}

/// On a server, `check` looks references up hundreds at a time: a store with more records
/// than one such batch is judged record by record all the same, whichever batch (and which
/// place in it) a record falls in. (On redb each record is looked up alone.)
#[test]
fn check_judges_each_record_of_a_store_larger_than_one_batch_of_lookups() {
    use redkeep::clock::Timestamp;
    const ORGS: u64 = 1_300;
    let t = TestDir::new();
    let rk = t.open();
    let alice = user(&rk, "alice@example.com");
    let first = rk.store().write(|tx| {
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
                created_at: Timestamp(1_800_000_000),
                updated_at: Timestamp(1_800_000_000),
                external_id: None,
            })?;
            // Every third org has an owner; the others a mere member, or nobody.
            let role = match i % 3 {
                0 => Some(OrgRole::Owner),
                1 => Some(OrgRole::Member),
                _ => None,
            };
            if let Some(role) = role {
                tx.table::<OrgMember>().insert(&OrgMember {
                    org_id: id,
                    user_id: alice.id,
                    role,
                    joined_at: Timestamp(1_800_000_000),
                })?;
            }
            // Some memberships name a user who does not exist, some an org that does not.
            if i % 5 == 0 {
                tx.table::<OrgMember>().insert(&OrgMember {
                    org_id: id,
                    user_id: 900_000 + i,
                    role: OrgRole::Member,
                    joined_at: Timestamp(1_800_000_000),
                })?;
            }
            if i % 7 == 0 {
                tx.table::<OrgMember>().insert(&OrgMember {
                    org_id: 800_000 + i,
                    user_id: alice.id,
                    role: OrgRole::Member,
                    joined_at: Timestamp(1_800_000_000),
                })?;
            }
            tx.table::<Org>().next_id()?;
        }
        Ok(first)
    });
    let first = first.unwrap();
    let mut expected: Vec<String> = Vec::new();
    for i in 0..ORGS {
        let id = first + i;
        if i % 3 != 0 {
            expected.push(format!("org org-{id} has no owner"));
        }
        if i % 5 == 0 {
            expected.push(format!(
                "membership of org {id} points at missing user {}",
                900_000 + i
            ));
        }
        if i % 7 == 0 {
            expected.push(format!(
                "membership of user {} points at missing org {}",
                alice.id,
                800_000 + i
            ));
        }
    }
    let mut found = problems(&rk);
    found.sort();
    expected.sort();
    assert_eq!(
        found.len(),
        expected.len(),
        "{:#?}",
        &found[..found.len().min(20)]
    );
    assert_eq!(found, expected);
}
