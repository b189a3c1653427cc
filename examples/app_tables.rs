//! An application that keeps its own table beside redkeep's and changes both in one atomic
//! write transaction.
//!
//! Run with `cargo run --example app_tables`.

use redkeep::store::{KeyRange, Order};
use redkeep::{Error, Index, NewUser, Options, PasswordParams, Record, Redkeep, key};
use serde::{Deserialize, Serialize};

/// The application's own record: a project owned by a user, name unique per owner.
#[derive(Debug, Serialize, Deserialize)]
struct Project {
    id: u64,
    owner: u64,
    name: String,
}

impl Project {
    /// A name is unique per owner.
    const NAME_PER_OWNER: Index<Project> =
        Index::unique("name_per_owner", |p| Some(key!(p.owner, p.name)));
    /// The projects of an owner.
    const BY_OWNER: Index<Project> = Index::many("by_owner", |p| Some(key!(p.owner)));
}

impl Record for Project {
    const TABLE: &'static str = "projects";
    type Key = u64;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::NAME_PER_OWNER, &Self::BY_OWNER];
    const ID_SEQUENCE: bool = true;
    fn key(&self) -> u64 {
        self.id
    }
}

fn main() -> redkeep::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("creating a temp dir", e))?;
    // Cheap hashing keeps the example fast; applications keep the OWASP default.
    let rk = Redkeep::open(
        dir.path(),
        Options::default().password(PasswordParams::INSECURE_FAST),
    )?;
    let ann = rk
        .users()
        .create(NewUser {
            email: "ann@example.com".into(),
            password: Some("correct horse battery".into()),
            ..NewUser::default()
        })?
        .user;

    rk.store().write(|tx| {
        let projects = tx.table::<Project>();
        for name in ["Roadmap", "Budget"] {
            let id = projects.next_id()?;
            projects.insert(&Project {
                id,
                owner: ann.id,
                name: name.into(),
            })?;
        }
        Ok(())
    })?;

    // A clash aborts the whole transaction: nothing of it is written.
    let clash = rk.store().write(|tx| {
        let projects = tx.table::<Project>();
        let id = projects.next_id()?;
        projects.insert(&Project {
            id,
            owner: ann.id,
            name: "Hiring".into(),
        })?;
        let id = projects.next_id()?;
        projects.insert(&Project {
            id,
            owner: ann.id,
            name: "Roadmap".into(),
        })
    });
    assert!(matches!(clash, Err(Error::Conflict { .. })));

    let mine = rk.store().read(|tx| {
        tx.table::<Project>().range_by(
            &Project::BY_OWNER,
            KeyRange::prefix(key!(ann.id)),
            Order::Asc,
            100,
        )
    })?;
    for p in &mine {
        println!("project {} {:?} owned by {}", p.id, p.name, p.owner);
    }
    assert_eq!(mine.len(), 2);
    Ok(())
}
