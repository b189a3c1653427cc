//! Organizations and registration, schema migrations from committed old files, and whole-
//! store operations: backup under concurrent writes, restore, export/import, reset.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::TestDir;
use proptest::prelude::*;
use redkeep::auth::agents::AgentSpec;
use redkeep::auth::api_keys::{ApiKeySpec, KeyOwner};
use redkeep::auth::orgs::{OrgRole, OrgSpec};
use redkeep::auth::sessions::LoginMeta;
use redkeep::{Error, InviteSpec, Mode, NewUser, Options, PasswordParams, Redkeep, Registration};

const PW: &str = "correct horse";
/// The time operations name their safety copies by.
const NOW: redkeep::Timestamp = redkeep::Timestamp(1_800_000_100);
const CHILD_ENV: &str = "REDKEEP_TEST_WRITER";

fn user(rk: &Redkeep, email: &str, name: &str) -> u64 {
    rk.users()
        .create(NewUser {
            email: email.into(),
            name: Some(name.into()),
            password: Some(PW.into()),
            ..NewUser::default()
        })
        .unwrap()
        .user
        .id
}

#[test]
fn registration_creates_a_personal_org_as_current_org() {
    let t = TestDir::new();
    let rk = t.open();
    let inv = rk.invites().create(InviteSpec::default()).unwrap();
    let u = rk
        .users()
        .register(Registration {
            email: "ann@example.com".into(),
            password: PW.into(),
            name: Some("Ann".into()),
            invite: Some(inv.code.expose().into()),
            ..Registration::default()
        })
        .unwrap();
    let orgs = rk.orgs().of_user(u.id).unwrap();
    assert_eq!(orgs.len(), 1);
    let (org, role) = &orgs[0];
    assert_eq!(
        (org.name.as_str(), org.slug.as_str(), org.is_personal, *role),
        ("Ann's Workspace", "anns-workspace", true, OrgRole::Owner)
    );
    assert_eq!(u.current_org_id, Some(org.id));
    // The user is stored as returned, pointing at the personal org.
    assert_eq!(rk.users().get(u.id).unwrap().as_ref(), Some(&u));
    // A second Ann gets a unique slug.
    let b = user(&rk, "ann2@example.com", "Ann");
    assert_eq!(rk.orgs().of_user(b).unwrap()[0].0.slug, "anns-workspace-2");
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn a_failed_registration_leaves_no_org_behind() {
    let t = TestDir::new();
    let rk = t.open();
    let inv = rk.invites().create(InviteSpec::default()).unwrap();
    rk.invites().revoke(&inv.invite.prefix).unwrap();
    let got = rk.users().register(Registration {
        email: "ann@example.com".into(),
        password: PW.into(),
        invite: Some(inv.code.expose().into()),
        ..Registration::default()
    });
    assert!(got.is_err());
    assert!(rk.orgs().list(None, usize::MAX).unwrap().is_empty());
    assert_eq!(rk.users().count().unwrap(), 0);
    assert!(
        rk.audit()
            .list(None, None, usize::MAX)
            .unwrap()
            .iter()
            .all(|e| e.action != "user_created" && e.action != "org_created")
    );
}

#[test]
fn slugs_are_derived_validated_and_unique() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com", "A");
    let mk = |name: &str, slug: Option<&str>| {
        rk.orgs().create(OrgSpec {
            name: name.into(),
            slug: slug.map(String::from),
            description: String::new(),
            owner: a,
        })
    };
    assert_eq!(mk("Acme, Inc.", None).unwrap().slug, "acme-inc");
    assert_eq!(mk("ACME inc", None).unwrap().slug, "acme-inc-2");
    let team_x = mk("x", Some("team-x")).unwrap();
    assert_eq!(team_x.slug, "team-x");
    // A taken slug is said as the org that has it, not as an index.
    match mk("y", Some("team-x")) {
        Err(e @ Error::Conflict { index: "slug", .. }) => assert_eq!(
            e.to_string(),
            format!(
                "an org with slug team-x exists (id {}); give another slug",
                team_x.id
            )
        ),
        other => panic!("{other:?}"),
    }
    for bad in ["Team", "-x", "x-", "a b", "123", ""] {
        assert!(
            matches!(
                mk("z", Some(bad)),
                Err(Error::InvalidInput { field: "slug", .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        mk("", None),
        Err(Error::InvalidInput { field: "name", .. })
    ));
    assert_eq!(rk.orgs().find("acme-inc").unwrap().name, "Acme, Inc.");
}

#[test]
fn org_rules_hold_for_members_and_deletion() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com", "A");
    let b = user(&rk, "b@example.com", "B");
    let org = rk
        .orgs()
        .create(OrgSpec {
            name: "Team".into(),
            owner: a,
            ..OrgSpec::default()
        })
        .unwrap();
    rk.orgs().add_member(org.id, b, OrgRole::Member).unwrap();
    assert!(matches!(
        rk.orgs().add_member(org.id, b, OrgRole::Admin),
        Err(Error::Denied { .. })
    ));
    assert_eq!(rk.orgs().role_in(b, org.id).unwrap(), Some(OrgRole::Member));
    assert!(rk.orgs().is_member(b, org.id).unwrap());
    // The last owner can neither leave nor be demoted.
    assert!(matches!(
        rk.orgs().remove_member(org.id, a),
        Err(Error::Denied { .. })
    ));
    assert!(matches!(
        rk.orgs().set_role(org.id, a, OrgRole::Admin),
        Err(Error::Denied { .. })
    ));
    rk.orgs().set_role(org.id, b, OrgRole::Owner).unwrap();
    rk.orgs().set_role(org.id, a, OrgRole::Admin).unwrap();
    // Removing a member whose current org it is moves them to their personal org.
    rk.orgs().switch(a, org.id).unwrap();
    rk.orgs().remove_member(org.id, a).unwrap();
    let personal = rk.orgs().of_user(a).unwrap()[0].0.clone();
    assert!(personal.is_personal);
    assert_eq!(
        rk.users().get(a).unwrap().unwrap().current_org_id,
        Some(personal.id)
    );
    assert!(matches!(
        rk.orgs().switch(a, org.id),
        Err(Error::Denied { .. })
    ));
    // Deleting needs no other members, or force.
    rk.orgs().add_member(org.id, a, OrgRole::Member).unwrap();
    assert!(matches!(
        rk.orgs().delete(org.id, false),
        Err(Error::Denied { .. })
    ));
    assert!(matches!(
        rk.orgs().delete(personal.id, false),
        Err(Error::Denied { .. })
    ));
    rk.orgs().delete(org.id, true).unwrap();
    assert!(rk.orgs().get(org.id).unwrap().is_none());
    assert!(rk.check(false).unwrap().ok);
}

#[test]
fn deleting_the_last_owner_of_a_shared_org_is_refused() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com", "A");
    let b = user(&rk, "b@example.com", "B");
    let org = rk
        .orgs()
        .create(OrgSpec {
            name: "Team".into(),
            owner: a,
            ..OrgSpec::default()
        })
        .unwrap();
    rk.orgs().add_member(org.id, b, OrgRole::Member).unwrap();
    assert!(matches!(rk.users().delete(a), Err(Error::Denied { .. })));
    assert!(rk.users().get(a).unwrap().is_some());
    rk.orgs().set_role(org.id, b, OrgRole::Owner).unwrap();
    rk.users().delete(a).unwrap();
    assert_eq!(rk.orgs().list(None, usize::MAX).unwrap().len(), 2); // b's personal org and the team
    assert!(rk.check(false).unwrap().ok);
}

#[derive(Debug, Clone)]
enum OrgOp {
    NewUser,
    NewOrg(usize),
    Add(usize, usize, u8),
    Remove(usize, usize),
    SetRole(usize, usize, u8),
    Switch(usize, usize),
    DeleteOrg(usize, bool),
    DeleteUser(usize),
}

fn role(n: u8) -> OrgRole {
    [OrgRole::Owner, OrgRole::Admin, OrgRole::Member][n as usize % 3]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_org_operations_keep_the_rules(ops in prop::collection::vec(prop_oneof![
        1 => Just(OrgOp::NewUser),
        2 => (0usize..6).prop_map(OrgOp::NewOrg),
        4 => (0usize..6, 0usize..6, 0u8..3).prop_map(|(o, u, r)| OrgOp::Add(o, u, r)),
        3 => (0usize..6, 0usize..6).prop_map(|(o, u)| OrgOp::Remove(o, u)),
        3 => (0usize..6, 0usize..6, 0u8..3).prop_map(|(o, u, r)| OrgOp::SetRole(o, u, r)),
        2 => (0usize..6, 0usize..6).prop_map(|(u, o)| OrgOp::Switch(u, o)),
        1 => (0usize..6, any::<bool>()).prop_map(|(o, f)| OrgOp::DeleteOrg(o, f)),
        1 => (0usize..6).prop_map(OrgOp::DeleteUser),
    ], 1..40)) {
        let t = TestDir::new();
        let rk = t.open();
        let mut users: Vec<u64> = (0..2).map(|i| user(&rk, &format!("u{i}@example.com"), "U")).collect();
        // Every org, the personal ones included (those made at sign-up and those given to a
        // user left in no org): operations on them are where a user could end up in none.
        let all_orgs = |rk: &Redkeep| rk.orgs().list(None, usize::MAX).unwrap().iter().map(|o| o.id).collect::<Vec<u64>>();
        let mut orgs: Vec<u64> = all_orgs(&rk);
        let mut next = 2;
        for op in ops {
            let pick = |v: &Vec<u64>, i: usize| v.get(i % v.len().max(1)).copied();
            // Errors are allowed (refusals); the invariants must hold after every step.
            let _ = match op {
                OrgOp::NewUser => { users.push(user(&rk, &format!("u{next}@example.com"), "U")); next += 1; Ok(()) }
                OrgOp::NewOrg(u) => match pick(&users, u) {
                    Some(owner) => rk.orgs().create(OrgSpec { name: "Org".into(), owner, ..OrgSpec::default() }).map(|o| orgs.push(o.id)),
                    None => Ok(()),
                },
                OrgOp::Add(o, u, r) => match (pick(&orgs, o), pick(&users, u)) { (Some(o), Some(u)) => rk.orgs().add_member(o, u, role(r)).map(|_| ()), _ => Ok(()) },
                OrgOp::Remove(o, u) => match (pick(&orgs, o), pick(&users, u)) { (Some(o), Some(u)) => rk.orgs().remove_member(o, u).map(|_| ()), _ => Ok(()) },
                OrgOp::SetRole(o, u, r) => match (pick(&orgs, o), pick(&users, u)) { (Some(o), Some(u)) => rk.orgs().set_role(o, u, role(r)).map(|_| ()), _ => Ok(()) },
                OrgOp::Switch(u, o) => match (pick(&users, u), pick(&orgs, o)) { (Some(u), Some(o)) => rk.orgs().switch(u, o).map(|_| ()), _ => Ok(()) },
                OrgOp::DeleteOrg(o, force) => match pick(&orgs, o) {
                    Some(id) => rk.orgs().delete(id, force).map(|_| ()),
                    None => Ok(()),
                },
                OrgOp::DeleteUser(u) => match pick(&users, u) {
                    Some(id) if users.len() > 1 => rk.users().delete(id).map(|_| users.retain(|&x| x != id)),
                    _ => Ok(()),
                },
            };
            orgs = all_orgs(&rk);
            let report = rk.check(false).unwrap();
            prop_assert!(report.ok, "{:?}", report.problems);
            // A personal org is its user's own: they are in it (it stops being personal when
            // they leave it).
            for &o in &orgs {
                let org = rk.orgs().get(o).unwrap().unwrap();
                if org.is_personal {
                    let u = org.personal_user;
                    prop_assert!(u.is_some_and(|u| rk.orgs().is_member(u, o).unwrap()), "{org:?}");
                }
            }
        }
    }
}

/// Deleting a personal org with `force` leaves no user in no org: its owner gets a new
/// personal org, which becomes their current one, and the store passes `check`.
#[test]
fn a_forced_delete_of_a_personal_org_gives_its_user_a_new_one() {
    let t = TestDir::new();
    let rk = t.open();
    let id = user(&rk, "zed@example.com", "Zed");
    let before = rk.users().get(id).unwrap().unwrap().current_org_id.unwrap();
    assert!(matches!(
        rk.orgs().delete(before, false),
        Err(Error::Denied { .. })
    ));
    rk.orgs().delete(before, true).unwrap();
    let now = rk.users().get(id).unwrap().unwrap().current_org_id.unwrap();
    assert_ne!(now, before);
    let org = rk.orgs().get(now).unwrap().unwrap();
    assert!(org.is_personal, "{org:?}");
    let report = rk.check(false).unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

fn current_org(rk: &Redkeep, user: u64) -> u64 {
    rk.users()
        .get(user)
        .unwrap()
        .unwrap()
        .current_org_id
        .unwrap()
}

/// A user removed from their only org (their personal org, after another member became its
/// owner) gets a new personal org in the same transaction: the store passes `check`, so its
/// backups restore and its exports import.
#[test]
fn a_member_removed_from_their_only_org_gets_a_new_personal_org() {
    let t = TestDir::new();
    let rk = t.open();
    let alice = user(&rk, "alice@example.com", "Alice");
    let bob = user(&rk, "bob@example.com", "Bob");
    let personal = current_org(&rk, alice);
    rk.orgs().add_member(personal, bob, OrgRole::Owner).unwrap();
    let removed = rk.orgs().remove_member(personal, alice).unwrap();
    assert_eq!(removed.member.role, OrgRole::Owner);
    let report = rk.check(false).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    let new = removed.new_personal_org.expect("a new personal org");
    assert!(
        new.is_personal && new.personal_user == Some(alice),
        "{new:?}"
    );
    assert_eq!(current_org(&rk, alice), new.id);
    assert_eq!(
        rk.orgs().role_in(alice, new.id).unwrap(),
        Some(OrgRole::Owner)
    );
    // The org alice left is bob's now, and nobody's personal org.
    assert!(removed.org_no_longer_personal);
    let old = rk.orgs().get(personal).unwrap().unwrap();
    assert!(!old.is_personal && old.personal_user.is_none(), "{old:?}");
    let audit = rk.audit().list(Some(alice), None, 10).unwrap();
    let event = audit
        .iter()
        .find(|e| e.action == "org_member_removed")
        .unwrap();
    assert!(event.detail.contains(&new.slug), "{event:?}");
    // A member with another org is only moved, their own personal org first.
    let team = rk
        .orgs()
        .create(OrgSpec {
            name: "Team".into(),
            owner: bob,
            ..OrgSpec::default()
        })
        .unwrap();
    rk.orgs()
        .add_member(team.id, alice, OrgRole::Member)
        .unwrap();
    let removed = rk.orgs().remove_member(team.id, alice).unwrap();
    assert!(removed.new_personal_org.is_none() && !removed.org_no_longer_personal);
    assert_eq!(rk.orgs().of_user(alice).unwrap().len(), 1);
}

/// A member leaving an org goes to their own personal org, not to another member's
/// personal org they were added to (which has the lower id here).
#[test]
fn a_member_leaving_an_org_goes_to_their_own_personal_org() {
    let t = TestDir::new();
    let rk = t.open();
    let alice = user(&rk, "alice@example.com", "Alice");
    let bob = user(&rk, "bob@example.com", "Bob");
    let alices = current_org(&rk, alice);
    let bobs = current_org(&rk, bob);
    assert!(alices < bobs);
    rk.orgs().add_member(alices, bob, OrgRole::Member).unwrap();
    let team = rk
        .orgs()
        .create(OrgSpec {
            name: "Team".into(),
            owner: alice,
            ..OrgSpec::default()
        })
        .unwrap();
    rk.orgs().add_member(team.id, bob, OrgRole::Member).unwrap();
    rk.orgs().switch(bob, team.id).unwrap();
    rk.orgs().remove_member(team.id, bob).unwrap();
    assert_eq!(current_org(&rk, bob), bobs);
    // The same when the org goes.
    rk.orgs().add_member(team.id, bob, OrgRole::Member).unwrap();
    rk.orgs().switch(bob, team.id).unwrap();
    rk.orgs().delete(team.id, true).unwrap();
    assert_eq!(current_org(&rk, bob), bobs);
}

/// `Orgs::delete` says what went with the org, and the audit log records it: each member's
/// removal, and the count of members and the prefixes of the keys on `org_deleted`.
#[test]
fn deleting_an_org_reports_and_audits_its_members_and_keys() {
    let t = TestDir::new();
    let rk = t.open();
    let bob = user(&rk, "bob@example.com", "Bob");
    let ann = user(&rk, "ann@example.com", "Ann");
    let bobs = current_org(&rk, bob);
    rk.orgs().add_member(bobs, ann, OrgRole::Member).unwrap();
    let key = rk
        .api_keys()
        .create(ApiKeySpec {
            owner: KeyOwner::Org(bobs),
            scopes: vec!["deploy".into()],
            expires_in: None,
            created_by: None,
        })
        .unwrap()
        .api_key;
    let deleted = rk.orgs().delete(bobs, true).unwrap();
    assert_eq!(deleted.org.id, bobs);
    let removed: Vec<(u64, OrgRole)> = deleted
        .members_removed
        .iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert_eq!(removed, vec![(bob, OrgRole::Owner), (ann, OrgRole::Member)]);
    assert_eq!(deleted.api_keys_deleted, vec![key.prefix.clone()]);
    // Bob belonged nowhere else; ann has her own personal org.
    assert_eq!(deleted.new_personal_orgs.len(), 1);
    let new = &deleted.new_personal_orgs[0];
    assert_eq!(new.personal_user, Some(bob));
    assert_eq!(current_org(&rk, bob), new.id);
    let events = rk.audit().list(None, None, 20).unwrap();
    let gone = events.iter().find(|e| e.action == "org_deleted").unwrap();
    assert!(
        gone.detail.contains("2 members removed")
            && gone.detail.contains("1 API key deleted")
            && gone.detail.contains(&key.prefix),
        "{gone:?}"
    );
    for u in [bob, ann] {
        assert!(
            rk.audit()
                .list(Some(u), None, 20)
                .unwrap()
                .iter()
                .any(|e| e.action == "org_member_removed"),
            "user {u}"
        );
    }
    assert!(rk.check(false).unwrap().ok);
}

/// An org's API key records the member who made it (and its `api_key_created` event names
/// them as actor). When they leave the org, or are deleted, the keys they made for an org
/// that could still verify are revoked and reported; keys made by others, or by no one
/// recorded, stay, and an expired one is left as it is; so do the ones an owner or admin made
/// when they are made a plain member. A creator must be an active owner or admin of the org.
#[test]
fn an_org_key_goes_when_the_member_who_made_it_leaves_is_demoted_or_is_deleted() {
    let t = TestDir::new();
    let rk = t.open();
    let owner = user(&rk, "owner@example.com", "Owner");
    let bob = user(&rk, "bob@example.com", "Bob");
    let cat = user(&rk, "cat@example.com", "Cat");
    let dan = user(&rk, "dan@example.com", "Dan");
    let acme = current_org(&rk, owner);
    for m in [bob, cat] {
        rk.orgs().add_member(acme, m, OrgRole::Admin).unwrap();
    }
    let key = |by: Option<u64>, owner: KeyOwner, expires: Option<u64>| {
        rk.api_keys().create(ApiKeySpec {
            owner,
            scopes: vec!["basic_access".into()],
            expires_in: expires.map(std::time::Duration::from_secs),
            created_by: by,
        })
    };
    let bobs_expired = key(Some(bob), KeyOwner::Org(acme), Some(60)).unwrap();
    let bobs = key(Some(bob), KeyOwner::Org(acme), None).unwrap();
    let bobs_own = key(Some(bob), KeyOwner::User(bob), None).unwrap();
    let cats = key(Some(cat), KeyOwner::Org(acme), None).unwrap();
    let nobodys = key(None, KeyOwner::Org(acme), None).unwrap();
    assert_eq!(bobs.api_key.created_by, Some(bob));
    assert_eq!(nobodys.api_key.created_by, None);
    let made = rk.api_keys().find(&bobs.api_key.prefix).unwrap();
    assert_eq!(made.created_by, Some(bob));
    let created = rk
        .audit()
        .list(None, None, 50)
        .unwrap()
        .into_iter()
        .find(|e| e.action == "api_key_created" && e.subject.contains(&cats.api_key.prefix))
        .unwrap();
    assert_eq!(created.actor, Some(cat));
    let prefixes = |keys: Vec<redkeep::auth::api_keys::ApiKey>| -> Vec<String> {
        keys.into_iter().map(|k| k.prefix).collect()
    };
    let mut bobs_all = prefixes(rk.api_keys().list_made_by(bob, usize::MAX).unwrap());
    bobs_all.sort();
    let mut want = vec![
        bobs_expired.api_key.prefix.clone(),
        bobs.api_key.prefix.clone(),
        bobs_own.api_key.prefix.clone(),
    ];
    want.sort();
    assert_eq!(bobs_all, want);
    assert_eq!(
        prefixes(rk.api_keys().list_made_by(cat, 1).unwrap()),
        vec![cats.api_key.prefix.clone()]
    );

    // Who may be recorded as the maker: an active owner or admin of the owning org.
    assert!(matches!(
        key(Some(dan), KeyOwner::Org(acme), None),
        Err(Error::Denied { .. })
    ));
    assert!(matches!(
        key(Some(999), KeyOwner::Org(acme), None),
        Err(Error::NotFound { .. })
    ));
    rk.orgs().add_member(acme, dan, OrgRole::Member).unwrap();
    rk.users().disable(dan).unwrap();
    assert!(matches!(
        key(Some(dan), KeyOwner::Org(acme), None),
        Err(Error::Denied { .. })
    ));

    t.clock.advance(std::time::Duration::from_secs(120));
    let removed = rk.orgs().remove_member(acme, bob).unwrap();
    assert_eq!(removed.api_keys_revoked, vec![bobs.api_key.prefix.clone()]);
    assert!(rk.api_keys().verify(bobs.key.expose()).is_err());
    let revoked = rk.api_keys().find(&bobs.api_key.prefix).unwrap();
    assert!(revoked.revoked_at.is_some());
    let expired = rk.api_keys().find(&bobs_expired.api_key.prefix).unwrap();
    assert_eq!(expired.revoked_at, None, "an expired key is left as it is");
    // Bob's own key acts for him, not the org: it stays.
    rk.api_keys().verify(bobs_own.key.expose()).unwrap();
    assert!(
        rk.audit()
            .list(None, None, 50)
            .unwrap()
            .iter()
            .any(|e| e.action == "api_key_revoked"
                && e.subject.contains(&bobs.api_key.prefix)
                && e.detail == "their creator left the org")
    );

    // Made a plain member (who makes no org keys), an admin's org keys go; a promotion, or
    // a role set to the one held, takes none.
    let eve = user(&rk, "eve@example.com", "Eve");
    rk.orgs().add_member(acme, eve, OrgRole::Admin).unwrap();
    let eves = key(Some(eve), KeyOwner::Org(acme), None).unwrap();
    for role in [OrgRole::Owner, OrgRole::Owner, OrgRole::Admin] {
        let changed = rk.orgs().set_role(acme, eve, role).unwrap();
        assert_eq!(changed.member.role, role);
        assert_eq!(changed.api_keys_revoked, Vec::<String>::new());
        rk.api_keys().verify(eves.key.expose()).unwrap();
    }
    let demoted = rk.orgs().set_role(acme, eve, OrgRole::Member).unwrap();
    assert_eq!(
        (demoted.was, demoted.api_keys_revoked),
        (OrgRole::Admin, vec![eves.api_key.prefix.clone()])
    );
    assert!(rk.api_keys().verify(eves.key.expose()).is_err());
    let events = rk.audit().list(Some(eve), None, 50).unwrap();
    assert!(
        events.iter().any(|e| e.action == "org_role_changed"
            && e.detail == "admin to member; 1 API key(s) they made for it revoked"),
        "{events:?}"
    );
    assert!(rk.audit().list(None, None, 100).unwrap().iter().any(|e| {
        e.action == "api_key_revoked"
            && e.subject.contains(&eves.api_key.prefix)
            && e.detail == "their creator was made a plain member of the org"
    }));

    let deleted = rk.users().delete(cat).unwrap();
    assert_eq!(
        deleted.org_api_keys_revoked,
        vec![cats.api_key.prefix.clone()]
    );
    assert!(rk.api_keys().verify(cats.key.expose()).is_err());
    // Keys nobody was recorded as making stay.
    rk.api_keys().verify(nobodys.key.expose()).unwrap();
    let report = rk.check(false).unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

/// A personal org whose user is deleted while another member stays stops being personal:
/// `org delete` then no longer says to delete a user who is gone.
#[test]
fn a_personal_org_that_outlives_its_user_is_no_longer_personal() {
    let t = TestDir::new();
    let rk = t.open();
    let alice = user(&rk, "alice@example.com", "Alice");
    let bob = user(&rk, "bob@example.com", "Bob");
    let alices = current_org(&rk, alice);
    let bobs = current_org(&rk, bob);
    rk.orgs().add_member(alices, bob, OrgRole::Owner).unwrap();
    match rk.orgs().delete(alices, false) {
        Err(Error::Denied { reason }) => assert!(reason.contains("has 2 members"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match rk.orgs().delete(bobs, false) {
        Err(Error::Denied { reason }) => assert!(
            reason.contains(&format!("personal org of user {bob}; delete that user")),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    rk.users().delete(alice).unwrap();
    let org = rk.orgs().get(alices).unwrap().unwrap();
    assert!(!org.is_personal && org.personal_user.is_none(), "{org:?}");
    // Bob alone in it: an ordinary org of one owner, deleted without --force.
    let deleted = rk.orgs().delete(alices, false).unwrap();
    assert!(deleted.new_personal_orgs.is_empty());
    assert_eq!(current_org(&rk, bob), bobs);
    assert!(rk.check(false).unwrap().ok);
}

/// `user delete` says how many agent sessions went with the user.
#[test]
fn deleting_a_user_counts_their_agent_sessions() {
    let t = TestDir::new();
    let rk = t.open();
    let a = user(&rk, "a@example.com", "A");
    for id in ["agent-1", "agent-2"] {
        rk.agents()
            .create(AgentSpec {
                id: id.into(),
                user_id: a,
                name: "n".into(),
                goal: "g".into(),
                ttl: None,
            })
            .unwrap();
    }
    assert_eq!(rk.users().delete(a).unwrap().agent_sessions_deleted, 2);
}

fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .join(redkeep::STORE_FILE);
    std::fs::copy(src, to.join(redkeep::STORE_FILE)).unwrap();
}

fn cheap() -> Options {
    Options::default().password(PasswordParams::INSECURE_FAST)
}

#[test]
fn an_old_store_is_refused_until_migrated_then_upgraded_once() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v1-with-users", tmp.path());
    assert!(matches!(
        Redkeep::open(tmp.path(), cheap()),
        Err(Error::MigrationNeeded {
            found: 1,
            needed: redkeep::SCHEMA_VERSION
        })
    ));
    let clock = std::sync::Arc::new(redkeep::ManualClock::new(redkeep::Timestamp(1_900_000_000)));
    let options = Options {
        auto_migrate: true,
        ..cheap()
    }
    .clock(clock);
    let rk = Redkeep::open(tmp.path(), options).unwrap();
    let default = rk.orgs().by_slug("default").unwrap().unwrap();
    assert!(default.is_default && default.name == "Default Workspace");
    assert_eq!(
        default.created_at,
        redkeep::Timestamp(1_900_000_000),
        "migrations use the injected clock"
    );
    let members = rk.orgs().members(default.id, None, 100).unwrap();
    assert_eq!(members.len(), 3);
    let admin = rk.users().by_email("admin@example.com").unwrap().unwrap();
    for m in &members {
        let want = if m.user_id == admin.id {
            OrgRole::Owner
        } else {
            OrgRole::Admin
        };
        assert_eq!(m.role, want);
        assert_eq!(
            rk.users().get(m.user_id).unwrap().unwrap().current_org_id,
            Some(default.id)
        );
    }
    assert!(rk.roles().has_permission(admin.id, "anything").unwrap());
    // Old data still works: passwords and the invite.
    rk.users()
        .authenticate("bob@example.com", "bob password")
        .unwrap();
    assert_eq!(
        rk.invites()
            .list(redkeep::InviteFilter::All, usize::MAX)
            .unwrap()
            .len(),
        1
    );
    // The pre-migration copy exists and opens at version 1.
    let backup = tmp.path().join("redkeep.redb.pre-v1.bak");
    let copy = redkeep::Store::open(
        &backup,
        &redkeep::StoreOptions {
            create: false,
            allow_outdated: true,
            schema_version: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(copy.schema_version().unwrap(), Some(1));
    drop(copy);
    // Running again is a no-op.
    assert!(rk.migrate().unwrap().applied.is_empty());
    assert_eq!(rk.orgs().list(None, usize::MAX).unwrap().len(), 1);
    let report = rk.check(true).unwrap(); // creates the workspace folders the fixture lacks
    assert!(report.ok, "{:?}", report.problems);
}

#[test]
fn migrating_an_empty_old_store_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("v1-empty", tmp.path());
    let rk = Redkeep::open(
        tmp.path(),
        Options {
            auto_migrate: true,
            ..cheap()
        },
    )
    .unwrap();
    assert_eq!(
        rk.store().schema_version().unwrap(),
        Some(redkeep::SCHEMA_VERSION)
    );
    assert!(rk.orgs().list(None, usize::MAX).unwrap().is_empty());
    assert!(rk.check(false).unwrap().ok);
}

/// A child that creates users `w0@…`, `w1@…`, … in shared mode and prints each once committed.
#[test]
fn helper_writer_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful when started by the test below.
    };
    let rk = Redkeep::open(&dir, cheap().mode(Mode::Shared)).unwrap();
    let mut out = std::io::stdout().lock();
    let start: u64 = std::env::var("REDKEEP_TEST_WRITER_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for i in start.. {
        rk.users()
            .create(NewUser {
                email: format!("w{i}@example.com"),
                password: Some(PW.into()),
                ..NewUser::default()
            })
            .unwrap();
        writeln!(out, "acked {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_backup_under_concurrent_writes_passes_check_and_holds_a_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    drop(Redkeep::open(&dir, cheap()).unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_writer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0;
    let mut wait_for = |n: u64, acked: &mut u64| {
        while *acked < n {
            let line = lines.next().unwrap().unwrap();
            let number = line
                .split_whitespace()
                .last()
                .and_then(|w| w.parse::<u64>().ok());
            if let (true, Some(i)) = (line.contains("acked"), number) {
                *acked = i + 1;
            }
        }
    };
    wait_for(10, &mut acked);
    let before = acked;
    let rk = Redkeep::open(&dir, cheap().mode(Mode::Shared)).unwrap();
    let report = redkeep::ops::backup(&rk, &tmp.path().join("snap.redb")).unwrap();
    wait_for(before + 5, &mut acked);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(report.check.ok, "{:?}", report.check.problems);
    let restored = tmp.path().join("restored");
    redkeep::ops::restore(&restored, &tmp.path().join("snap.redb"), false, NOW).unwrap();
    let snap = Redkeep::open(&restored, cheap()).unwrap();
    let emails: Vec<String> = snap
        .users()
        .list(redkeep::UserFilter::All, None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|u| u.email)
        .collect();
    let k = emails.len() as u64;
    assert!(
        k >= before,
        "the snapshot misses acknowledged writes: {k} < {before}"
    );
    let prefix: Vec<String> = (0..k).map(|i| format!("w{i}@example.com")).collect();
    assert_eq!(emails, prefix);
}

fn populated() -> (TestDir, Redkeep) {
    let t = TestDir::new();
    let rk = t.open();
    rk.init(redkeep::InitSpec {
        admin_email: Some("root@example.com".into()),
        admin_password: Some(PW.into()),
        ..Default::default()
    })
    .unwrap();
    let inv = rk.invites().create(InviteSpec::default().uses(2)).unwrap();
    let a = rk
        .users()
        .register(Registration {
            email: "a@example.com".into(),
            password: PW.into(),
            invite: Some(inv.code.expose().into()),
            ..Registration::default()
        })
        .unwrap()
        .id;
    rk.users()
        .set_avatar(a, vec![0xFF, 0xD8, 0xFF, 0, 1, 2, 255])
        .unwrap();
    let org = rk
        .orgs()
        .create(OrgSpec {
            name: "Team".into(),
            owner: a,
            ..OrgSpec::default()
        })
        .unwrap();
    rk.orgs().add_member(org.id, 1, OrgRole::Member).unwrap();
    rk.sessions()
        .login(
            "a@example.com",
            PW,
            LoginMeta {
                ip: Some("10.0.0.1".into()),
                ..LoginMeta::default()
            },
        )
        .unwrap();
    rk.api_keys()
        .create(ApiKeySpec {
            owner: KeyOwner::Org(org.id),
            scopes: vec!["read".into()],
            expires_in: None,
            created_by: None,
        })
        .unwrap();
    rk.agents()
        .create(AgentSpec {
            id: "agent-1".into(),
            user_id: a,
            name: "n".into(),
            goal: "g".into(),
            ttl: None,
        })
        .unwrap();
    rk.roles()
        .create(redkeep::auth::roles::RoleSpec {
            name: "ops".into(),
            permissions: vec!["deploy".into()],
            ..Default::default()
        })
        .unwrap();
    rk.roles().grant(a, "ops", Some(1)).unwrap();
    (t, rk)
}

#[test]
fn export_import_export_is_byte_identical() {
    let (_t, rk) = populated();
    let mut first = Vec::new();
    let summary = redkeep::ops::export(&rk, &mut first, &|_| {}).unwrap();
    for table in [
        "users",
        "avatars",
        "invites",
        "roles",
        "user_roles",
        "sessions",
        "agent_sessions",
        "orgs",
        "org_members",
        "api_keys",
        "audit",
    ] {
        assert!(
            summary.records.get(table).copied().unwrap_or(0) > 0,
            "{table} is empty in the fixture"
        );
    }
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(
        text.contains("\"jpeg\":\"/9j/AAEC/w==\""),
        "avatars are base64"
    );
    // Into a data dir with no store, and into one fresh from init.
    for init in [false, true] {
        let t2 = TestDir::new();
        let rk2 = t2.open();
        if init {
            rk2.init(redkeep::InitSpec::default()).unwrap();
        }
        redkeep::ops::import(&rk2, &mut first.as_slice(), &|_| {}).unwrap();
        let mut second = Vec::new();
        redkeep::ops::export(&rk2, &mut second, &|_| {}).unwrap();
        assert!(first == second, "exports differ (init: {init})");
        let report = rk2.check(false).unwrap(); // imported users got their folders
        assert!(report.ok, "{:?}", report.problems);
        rk2.users().authenticate("a@example.com", PW).unwrap();
    }
}

#[test]
fn a_bad_import_line_is_reported_by_number_and_nothing_is_imported() {
    let (_t, rk) = populated();
    let mut export = Vec::new();
    redkeep::ops::export(&rk, &mut export, &|_| {}).unwrap();
    let text = String::from_utf8(export).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[4] = r#"{"table":"users","record":{"id":"not a number"}}"#.into();
    let t2 = TestDir::new();
    let rk2 = t2.open();
    let err = redkeep::ops::import(&rk2, &mut lines.join("\n").as_bytes(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("line 5"), "{err}");
    lines[4] = "{not json".into();
    let err = redkeep::ops::import(&rk2, &mut lines.join("\n").as_bytes(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("line 5"), "{err}");
    // Records of a table the handle reads come as JSON, which is checked: raw bytes are not
    // taken, whatever they hold.
    lines[4] = r#"{"table":"users","key":"0000000000000063","value":"AAAA"}"#.into();
    let err = redkeep::ops::import(&rk2, &mut lines.join("\n").as_bytes(), &|_| {}).unwrap_err();
    assert!(
        err.to_string().contains("line 5")
            && err.to_string().contains("raw bytes")
            && err
                .to_string()
                .contains("export from a handle that registered"),
        "{err}"
    );
    assert_eq!(rk2.users().count().unwrap(), 0);
    assert_eq!(rk2.roles().list().unwrap().len(), 3);
    // A store holding data refuses an import.
    let err = redkeep::ops::import(&rk, &mut text.as_bytes(), &|_| {}).unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
}

#[test]
fn restore_refuses_damaged_backups_and_keeps_a_safety_copy() {
    let (t, rk) = populated();
    let backup = t.path().join("b.redb");
    assert!(redkeep::ops::backup(&rk, &backup).unwrap().check.ok);
    let users_before = rk.users().count().unwrap();
    drop(rk);
    let dir = t.path();
    let bytes = std::fs::read(&backup).unwrap();
    let truncated = t.path().join("truncated.redb");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let garbage = t.path().join("garbage.redb");
    std::fs::write(&garbage, b"this is not a database").unwrap();
    let live_before = std::fs::read(dir.join(redkeep::STORE_FILE)).unwrap();
    for bad in [&truncated, &garbage] {
        let err = redkeep::ops::restore(dir, bad, true, NOW).unwrap_err();
        // Said of the backup, without the staged copy's path or advice for the live store.
        let text = err.to_string();
        assert!(text.contains(&bad.display().to_string()), "{text}");
        assert!(
            !text.contains(".rk-tmp") && !text.contains("salvage"),
            "{text}"
        );
        assert!(
            std::fs::read(dir.join(redkeep::STORE_FILE)).unwrap() == live_before,
            "live store touched"
        );
    }
    assert!(matches!(
        redkeep::ops::restore(dir, &backup, false, NOW),
        Err(Error::Denied { .. })
    ));
    // Change the live store, then restore the backup over it.
    let rk = t.open();
    user(&rk, "late@example.com", "Late");
    drop(rk);
    let safety = redkeep::ops::restore(dir, &backup, true, NOW)
        .unwrap()
        .safety_copy
        .unwrap();
    assert!(safety.exists());
    let rk = t.open();
    assert_eq!(rk.users().count().unwrap(), users_before);
    assert!(rk.users().by_email("late@example.com").unwrap().is_none());
    // Restore is refused while another handle holds the store.
    assert!(matches!(
        redkeep::ops::restore(dir, &backup, true, NOW),
        Err(Error::InUse { .. })
    ));
}

#[test]
fn reset_backs_up_then_empties() {
    let (t, rk) = populated();
    drop(rk);
    let backup = redkeep::ops::reset(t.path(), NOW).unwrap().backup;
    assert!(backup.exists());
    let rk = t.open();
    assert_eq!(rk.users().count().unwrap(), 0);
    assert!(!rk.is_initialized().unwrap());
    let stats = redkeep::ops::stats(&rk).unwrap();
    assert_eq!(stats.tables["users"].records, 0);
    assert_eq!(stats.tables["roles"].records, 3);
}

#[test]
fn stats_count_records_index_entries_and_bytes() {
    let (_t, rk) = populated();
    let s = redkeep::ops::stats(&rk).unwrap();
    assert_eq!(s.tables["users"].records, 2);
    assert_eq!(s.tables["users"].index_entries, 2 + 2 + 2); // email, is_admin, created_at
    assert!(s.tables["users"].bytes > 0);
    assert!(s.file_bytes > 0);
    assert_eq!(s.schema_version, redkeep::SCHEMA_VERSION);
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_user() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    drop(Redkeep::open(&dir, cheap()).unwrap());
    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_writer_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .env("REDKEEP_TEST_WRITER_START", (round * 1000).to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        while acked.len() < 5 + 3 * round as usize {
            let line = lines.next().unwrap().unwrap();
            if let Some(i) = line
                .strip_prefix("acked ")
                .or_else(|| line.split("acked ").nth(1))
            {
                acked.push(i.trim().parse::<u64>().unwrap());
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let rk = Redkeep::open(&dir, cheap()).unwrap();
        for i in acked {
            assert!(
                rk.users()
                    .by_email(&format!("w{i}@example.com"))
                    .unwrap()
                    .is_some(),
                "acknowledged user w{i} lost"
            );
        }
        // A kill after a user's folder was made but before the commit leaves that folder,
        // which the next user (who gets the same id) adopts; nothing else may be wrong.
        let next_id = rk
            .users()
            .list(redkeep::UserFilter::All, None, usize::MAX)
            .unwrap()
            .iter()
            .map(|u| u.id)
            .max()
            .unwrap_or(0)
            + 1;
        let report = rk.check(false).unwrap();
        let orphan = format!("workspace folder of user {next_id} has no user (orphan)");
        assert!(
            report.problems.iter().all(|p| *p == orphan),
            "{:?}",
            report.problems
        );
    }
}

#[test]
fn a_failed_migration_step_keeps_the_old_version_and_can_be_retried() {
    use redkeep::store::{Migration, StoreOptions};
    fn boom(_: &redkeep::store::WriteTx, _: redkeep::Timestamp) -> redkeep::Result<()> {
        Err(Error::denied("step failed"))
    }
    fn ok(tx: &redkeep::store::WriteTx, _: redkeep::Timestamp) -> redkeep::Result<()> {
        tx.set_meta("migrated", b"yes")
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.redb");
    let opts = StoreOptions {
        schema_version: 1,
        ..StoreOptions::default()
    };
    let store = redkeep::Store::open(&path, &opts).unwrap();
    let failing = [Migration {
        version: 2,
        name: "boom",
        up: boom,
        down: None,
    }];
    assert!(store.migrate(&failing, redkeep::Timestamp(1)).is_err());
    assert_eq!(store.schema_version().unwrap(), Some(1));
    // The file is as it was, so the copy taken before the step is not kept.
    assert!(!tmp.path().join("s.redb.pre-v1.bak").exists());
    let fixed = [Migration {
        version: 2,
        name: "ok",
        up: ok,
        down: None,
    }];
    let run = store.migrate(&fixed, redkeep::Timestamp(2)).unwrap();
    assert_eq!(run.applied.len(), 1);
    assert_eq!(run.backup, Some(tmp.path().join("s.redb.pre-v1.bak")));
    assert!(tmp.path().join("s.redb.pre-v1.bak").exists());
    assert_eq!(store.schema_version().unwrap(), Some(2));
}

#[test]
fn org_members_come_in_pages_and_are_counted_without_a_list() {
    let t = TestDir::new();
    let rk = t.open();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            rk.users()
                .create(NewUser {
                    email: format!("m{i}@example.com"),
                    password: Some("correct horse battery".into()),
                    ..NewUser::default()
                })
                .unwrap()
                .user
                .id,
        );
    }
    let org = rk
        .orgs()
        .create(redkeep::auth::orgs::OrgSpec {
            name: "Big".into(),
            slug: None,
            description: String::new(),
            owner: ids[0],
        })
        .unwrap();
    for id in &ids[1..] {
        rk.orgs()
            .add_member(org.id, *id, redkeep::auth::orgs::OrgRole::Member)
            .unwrap();
    }
    assert_eq!(rk.orgs().member_count(org.id).unwrap(), 5);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = rk.orgs().members(org.id, after, 2).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        assert!(page.iter().all(|m| m.org_id == org.id));
        after = page.last().map(|m| m.user_id);
        seen.extend(page.into_iter().map(|m| m.user_id));
    }
    assert_eq!(seen, ids, "every member once, in user id order");
}

#[test]
fn slugs_of_any_script_are_transliterated() {
    use redkeep::auth::orgs::slugify;
    assert_eq!(slugify("Zoë Ünïcode's Workspace"), "zoe-unicodes-workspace");
    assert_eq!(
        slugify("山田 太郎's Workspace"),
        "shan-tian-tai-lang-s-workspace"
    );
    assert_eq!(slugify("Ærø Café"), "aero-cafe");
    assert_eq!(slugify("🙂"), "slight-smile");
    assert_eq!(slugify("--- !!"), "org");
    // All digits would read as an id, and is refused as a slug.
    assert_eq!(slugify("123"), "org-123");
    assert!(redkeep::auth::orgs::validate_slug(&slugify("2024")).is_ok());
    let t = TestDir::new();
    let rk = t.open();
    let u = rk
        .users()
        .create(NewUser {
            email: "taro@example.com".into(),
            name: Some("山田 太郎".into()),
            password: Some("correct horse battery".into()),
            ..NewUser::default()
        })
        .unwrap()
        .user;
    let personal = rk.orgs().get(u.current_org_id.unwrap()).unwrap().unwrap();
    assert_eq!(personal.slug, "shan-tian-tai-lang-s-workspace");
}

#[test]
fn leftovers_of_interrupted_operations_are_reported_once_old_and_removed_by_a_repair() {
    let tmp = tempfile::tempdir().unwrap();
    // Far from the files' times: ages go by the system's clock, which stamped the files.
    let clock = std::sync::Arc::new(redkeep::ManualClock::new(redkeep::Timestamp(0)));
    let rk = Redkeep::open(tmp.path(), cheap().clock(clock)).unwrap();
    // As a SIGKILL during a copy or a restore leaves them: a temp file and a temp folder.
    let file = tmp.path().join(".rk-tmp-AbC123");
    std::fs::write(&file, vec![7u8; 4096]).unwrap();
    let folder = tmp.path().join(".rk-tmp-DeF456");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("redkeep.redb"), b"half a store").unwrap();
    // And a user folder a crash left half-made.
    let staging = rk.workspaces().root().join("users/.rk-tmp-GhI789");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join(".owner"), b"half a folder").unwrap();
    // Young: an operation may be writing them; they are left alone.
    let report = rk.check(true).unwrap();
    assert!(report.ok, "{report:?}");
    assert!(file.exists() && folder.exists() && staging.exists());
    // Two hours old: reported, then removed by a repair.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    for path in [&file, &folder, &staging] {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    // One a running operation holds (flock) is no leftover, however old.
    let held = tmp.path().join(".rk-tmp-Held01");
    std::fs::write(&held, b"a restore still running").unwrap();
    let lock = std::fs::File::open(&held).unwrap();
    lock.set_modified(old).unwrap();
    lock.lock().unwrap();
    let report = rk.check(false).unwrap();
    assert!(!report.ok);
    assert_eq!(
        report
            .problems
            .iter()
            .filter(|p| p.contains("leftover of an interrupted operation"))
            .count(),
        3,
        "{report:?}"
    );
    assert!(file.exists() && folder.exists());
    let report = rk.check(true).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.repaired.len(), 3, "{report:?}");
    assert!(!file.exists() && !folder.exists() && !staging.exists());
    assert!(held.exists());
    assert!(rk.check(false).unwrap().ok);
    drop(lock);
    assert!(!rk.check(false).unwrap().ok);
    assert_eq!(rk.check(true).unwrap().repaired.len(), 1);
    assert!(!held.exists());
}

/// Deleting a user deletes the orgs they were the only member of (not only their personal
/// org) and those orgs' API keys: the result names them, so an operator learns it from the
/// answer rather than from the audit log.
#[test]
fn deleting_a_user_names_the_orgs_and_keys_that_went_with_them() {
    let t = TestDir::new();
    let rk = t.open();
    let bob = user(&rk, "bob@example.com", "Bob");
    let ann = user(&rk, "ann@example.com", "Ann");
    let team = rk
        .orgs()
        .create(OrgSpec {
            name: "Team".into(),
            owner: bob,
            ..OrgSpec::default()
        })
        .unwrap();
    // Shared with ann: it stays.
    let shared = rk
        .orgs()
        .create(OrgSpec {
            name: "Shared".into(),
            owner: ann,
            ..OrgSpec::default()
        })
        .unwrap();
    rk.orgs()
        .add_member(shared.id, bob, OrgRole::Member)
        .unwrap();
    for owner in [
        KeyOwner::Org(team.id),
        KeyOwner::User(bob),
        KeyOwner::Org(shared.id),
    ] {
        rk.api_keys()
            .create(ApiKeySpec {
                owner,
                scopes: vec!["read".into()],
                expires_in: None,
                created_by: None,
            })
            .unwrap();
    }
    let personal = rk
        .users()
        .get(bob)
        .unwrap()
        .unwrap()
        .current_org_id
        .unwrap();
    let personal = rk.orgs().get(personal).unwrap().unwrap().slug;
    let deleted = rk.users().delete(bob).unwrap();
    let mut orgs = deleted.orgs_deleted.clone();
    orgs.sort();
    let mut expected = vec![personal, team.slug];
    expected.sort();
    assert_eq!(orgs, expected);
    assert_eq!(deleted.api_keys_deleted, 2, "bob's key and the team's");
    assert!(rk.orgs().get(shared.id).unwrap().is_some());
    assert!(rk.check(false).unwrap().ok);
}
