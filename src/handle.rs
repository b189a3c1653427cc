//! `Redkeep`: the handle an application opens on its data dir, holding the store and the
//! account rules (clock, password parameters, policies).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::password::{PasswordParams, Passwords};
use crate::auth::register::Registration;
use crate::auth::sessions::{LockoutPolicy, SessionPolicy};
use crate::auth::users::{CreatedUser, NewUser, User};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{Error, Result};
use crate::store::{
    CheckReport, Durability, Meta, Mode, Store, StoreOptions, TableCheck, check_table,
};
use crate::workspace::{WorkspaceOptions, Workspaces};

/// The file name of the store inside a data dir.
pub const STORE_FILE: &str = "redkeep.redb";
/// The folder of per-user workspaces inside a data dir.
pub const WORKSPACES_DIR: &str = "workspaces";
/// The schema version this build writes.
pub const SCHEMA_VERSION: u64 = 2;

/// How to open a data dir.
#[derive(Debug, Clone)]
pub struct Options {
    /// Exclusive (default, fastest) or shared between processes.
    pub mode: Mode,
    /// Durability of each commit (default: immediate).
    pub durability: Durability,
    /// argon2id parameters (default: OWASP's).
    pub password: PasswordParams,
    /// Where "now" comes from (default: the system clock).
    pub clock: Arc<dyn Clock>,
    /// Create the data dir and store when missing (default true). The CLI turns this off for
    /// every command but `init`.
    pub create: bool,
    /// Open a store with an older schema without migrating it, so its migrations can be
    /// inspected and run (`redkeep migrate`). Other operations may fail on such a store.
    pub open_outdated: bool,
    /// Let [`Redkeep::register`] work without an invite code (default false).
    pub open_registration: bool,
    /// Options of the workspaces folder.
    pub workspace: WorkspaceOptions,
    /// Session lifetimes.
    pub sessions: SessionPolicy,
    /// Lockout after failed logins.
    pub lockout: LockoutPolicy,
    /// `last_used_at` of an API key is written at most this often (default 60 s).
    pub api_key_touch_interval: Duration,
    /// With `Mode::Exclusive`, serve the CLI on `<dir>/redkeep.sock` (default true), so
    /// operators can administer the store while the application runs.
    pub admin_socket: bool,
    /// Apply pending schema migrations on open (default false: opening an older store is
    /// `Error::MigrationNeeded`, and `redkeep migrate up` upgrades it).
    pub auto_migrate: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Exclusive,
            durability: Durability::Immediate,
            password: PasswordParams::OWASP,
            clock: Arc::new(SystemClock),
            create: true,
            open_outdated: false,
            open_registration: false,
            workspace: WorkspaceOptions::default(),
            sessions: SessionPolicy::default(),
            lockout: LockoutPolicy::default(),
            api_key_touch_interval: Duration::from_secs(60),
            auto_migrate: false,
            admin_socket: true,
        }
    }
}

impl Options {
    /// Sets the sharing mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the argon2id parameters.
    pub fn password(mut self, params: PasswordParams) -> Self {
        self.password = params;
        self
    }

    /// Sets the clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets whether a missing store is created.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
}

/// An open data dir: the account store and the workspaces root. Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Redkeep {
    inner: Arc<Shared>,
}

/// What every clone of a handle shares.
#[derive(Debug)]
pub(crate) struct Shared {
    // First, so the socket is gone before the store's lock is released.
    admin: std::sync::Mutex<Option<crate::cli::serve::AdminSocket>>,
    store: Store,
    dir: PathBuf,
    options: Options,
    passwords: Passwords,
    workspaces: Workspaces,
}

/// What `init` did.
#[derive(Debug)]
pub struct InitOutcome {
    /// False when the store was already initialised (nothing changed).
    pub created: bool,
    /// The first administrator, if one was created.
    pub admin: Option<CreatedUser>,
}

/// The first administrator to create at `init`.
#[derive(Debug, Clone, Default)]
pub struct InitSpec {
    /// Create no administrator.
    pub no_admin: bool,
    /// The admin's email (default `admin@localhost.localdomain`).
    pub admin_email: Option<String>,
    /// The admin's password; `None` generates one, printed once.
    pub admin_password: Option<String>,
}

const INITIALIZED: &str = "initialized_at";

impl Redkeep {
    /// Opens the data dir `dir` (creating it, mode 0700, and its store, mode 0600, when
    /// `options.create` is set).
    ///
    /// # Errors
    /// `NotInitialized` when there is no store and `create` is off; `InUse` when another
    /// process holds the store; `NewerSchema` / `MigrationNeeded`; `Io` / `Storage`.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Redkeep> {
        let dir = dir.as_ref().to_path_buf();
        let db = dir.join(STORE_FILE);
        if !db.exists() && !options.create {
            return Err(Error::NotInitialized { path: db });
        }
        crate::fsutil::create_private_dir(&dir)?;
        let passwords = Passwords::new(options.password)?;
        let store = Store::open(
            &db,
            &StoreOptions {
                mode: options.mode,
                durability: options.durability,
                create: options.create,
                schema_version: SCHEMA_VERSION,
                allow_outdated: true,
                ..StoreOptions::default()
            },
        )?;
        let workspaces = Workspaces::open(dir.join(WORKSPACES_DIR), options.workspace.clone())?;
        let rk = Redkeep {
            inner: Arc::new(Shared {
                admin: std::sync::Mutex::new(None),
                store,
                dir,
                options,
                passwords,
                workspaces,
            }),
        };
        rk.migrate_on_open()?;
        if rk.options().mode == Mode::Exclusive && rk.options().admin_socket {
            let socket = crate::cli::serve::start(rk.dir(), Arc::downgrade(&rk.inner))?;
            *rk.inner.admin.lock().unwrap_or_else(|e| e.into_inner()) = Some(socket);
        }
        Ok(rk)
    }

    fn migrate_on_open(&self) -> Result<()> {
        let store = self.store();
        let options = self.options();
        let found = store.schema_version()?.unwrap_or(SCHEMA_VERSION);
        let outdated = found < SCHEMA_VERSION;
        if outdated && !options.auto_migrate && !options.open_outdated {
            return Err(Error::MigrationNeeded {
                found,
                needed: SCHEMA_VERSION,
            });
        }
        // Migrations may grant the system roles, so they exist first.
        self.ensure_system_roles()?;
        if outdated && options.auto_migrate {
            self.migrate()?;
        }
        Ok(())
    }

    /// Applies every pending schema migration (a copy of the file is taken first); a no-op
    /// when the store is up to date.
    pub fn migrate(&self) -> Result<crate::store::MigrationRun> {
        self.store()
            .migrate(crate::auth::migrations::MIGRATIONS, self.now())
    }

    pub(crate) fn from_shared(inner: Arc<Shared>) -> Redkeep {
        Redkeep { inner }
    }

    /// Whether this handle serves the admin socket.
    pub fn serves_admin_socket(&self) -> bool {
        self.inner
            .admin
            .lock()
            .map(|a| a.is_some())
            .unwrap_or(false)
    }

    /// The underlying store, for an application's own tables and composed transactions.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The per-user workspace folders.
    pub fn workspaces(&self) -> &Workspaces {
        &self.inner.workspaces
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the handle was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The current time from the configured clock.
    pub fn now(&self) -> Timestamp {
        self.inner.options.clock.now()
    }

    pub(crate) fn passwords(&self) -> &Passwords {
        &self.inner.passwords
    }

    /// Whether `init` has run on this store.
    pub fn is_initialized(&self) -> Result<bool> {
        Ok(self.store().read(|tx| tx.meta(INITIALIZED))?.is_some())
    }

    /// Initialises the store once: records the time and creates the first administrator with
    /// `must_change_password` set (a generated password unless one is given). A second call
    /// changes nothing and returns `created: false`.
    pub fn init(&self, spec: InitSpec) -> Result<InitOutcome> {
        if self.is_initialized()? {
            return Ok(InitOutcome {
                created: false,
                admin: None,
            });
        }
        let prepared = if spec.no_admin {
            None
        } else {
            let new = NewUser {
                email: spec
                    .admin_email
                    .unwrap_or_else(|| "admin@localhost.localdomain".to_string()),
                name: Some("Administrator".into()),
                password: spec.admin_password,
                is_admin: true,
                ..NewUser::default()
            };
            Some(self.prepare_user(&new)?)
        };
        let now = self.now();
        let outcome = self.store().write(|tx| {
            if tx.meta(INITIALIZED)?.is_some() {
                return Ok(None);
            }
            tx.set_meta(INITIALIZED, &now.0.to_be_bytes())?;
            match prepared {
                Some(p) => {
                    let mut user = p.user;
                    user.must_change_password = true;
                    let user = self.insert_new_user(tx, user, None)?;
                    self.workspaces().create(user.id)?;
                    Ok(Some(Some(CreatedUser {
                        user,
                        password: p.generated,
                    })))
                }
                None => Ok(Some(None)),
            }
        })?;
        Ok(match outcome {
            None => InitOutcome {
                created: false,
                admin: None,
            },
            Some(admin) => InitOutcome {
                created: true,
                admin,
            },
        })
    }

    /// Creates a user with their records (see `insert_new_user`) and workspace folder, in one
    /// write transaction. The folder is made last, so a failure there aborts the user; an
    /// aborted transaction leaves at most an empty folder, which the next user with that id
    /// adopts.
    pub(crate) fn create_user(&self, spec: NewUser) -> Result<CreatedUser> {
        let prepared = self.prepare_user(&spec)?;
        let user = self.store().write(|tx| {
            let user = self.insert_new_user(tx, prepared.user, spec.invite.as_deref())?;
            self.workspaces().create(user.id)?;
            Ok(user)
        })?;
        Ok(CreatedUser {
            user,
            password: prepared.generated,
        })
    }

    /// Registers a user with an invite code: invite, user, role, personal org and audit are
    /// written in one transaction, so a single-use code registers exactly one user and a
    /// failure at any step leaves nothing.
    ///
    /// # Errors
    /// `InvalidInput` (bad email or password, or no invite when one is required),
    /// `InvalidCredential` (unknown code), `Expired`, `Refused` (revoked or used up),
    /// `Conflict` (email or username taken).
    pub fn register(&self, reg: Registration) -> Result<User> {
        if reg.invite.is_none() && !self.options().open_registration {
            return Err(Error::invalid(
                "invite",
                "registration needs an invite code",
            ));
        }
        let created = self.create_user(NewUser {
            email: reg.email,
            name: reg.name,
            username: reg.username,
            password: Some(reg.password),
            is_admin: false,
            invite: reg.invite,
        })?;
        Ok(created.user)
    }

    /// Deletes a user and everything that belongs to them in one transaction (sessions, roles,
    /// memberships and personal org, API keys, agent sessions, avatar), then moves their
    /// workspace folder to the trash (never deleting files). Returns the trash path.
    ///
    /// # Errors
    /// `NotFound`; `Refused` when the user is the last owner of an org with other members.
    pub fn delete_user(&self, id: u64) -> Result<Option<PathBuf>> {
        self.store().write(|tx| self.delete_user_records(tx, id))?;
        if self.workspaces().exists(id) {
            Ok(Some(self.workspaces().remove(id, self.now())?))
        } else {
            Ok(None)
        }
    }

    pub(crate) fn tables() -> Vec<Box<dyn TableCheck>> {
        use crate::auth::{agents, api_keys, audit, invites, orgs, roles, sessions, users};
        vec![
            check_table::<User>(),
            check_table::<users::Avatar>(),
            check_table::<invites::Invite>(),
            check_table::<roles::Role>(),
            check_table::<roles::UserRole>(),
            check_table::<sessions::Session>(),
            check_table::<agents::AgentSession>(),
            check_table::<orgs::Org>(),
            check_table::<orgs::OrgMember>(),
            check_table::<api_keys::ApiKey>(),
            check_table::<audit::AuditEvent>(),
        ]
    }

    /// Checks the whole data dir: redb's own integrity check, every record decodes, every
    /// index mirrors its records, references resolve, and the workspace folders match the
    /// users. With `repair`, indexes are rebuilt from records, missing workspace folders
    /// created and piece counts fixed; the changes are listed in `repaired`.
    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        let mut report = check_store(self.store(), repair)?;
        let user_ids = self.store().read(|tx| tx.table::<User>().keys())?;
        self.check_workspaces(&user_ids, repair, &mut report)?;
        Ok(report)
    }

    fn check_workspaces(
        &self,
        users: &[u64],
        repair: bool,
        report: &mut CheckReport,
    ) -> Result<()> {
        let ws = self.workspaces();
        let folders = ws.user_ids()?;
        for id in &folders {
            if users.binary_search(id).is_err() {
                report.problem(format!(
                    "workspace folder of user {id} has no user (orphan)"
                ));
            }
        }
        for id in users {
            if folders.binary_search(id).is_err() {
                if repair {
                    ws.create(*id)?;
                    report
                        .repaired
                        .push(format!("fixed: created the missing workspace of user {id}"));
                } else {
                    report.problem(format!("user {id} has no workspace folder"));
                }
            }
        }
        for p in ws.check(repair)? {
            let text = format!("workspace of user {}: {}", p.user_id, p.problem);
            if p.problem.starts_with("fixed:") {
                report.repaired.push(text);
            } else {
                report.problem(text);
            }
        }
        Ok(())
    }
}

/// Checks a store file's contents (not the workspaces): redb's integrity check, records,
/// indexes and references. With `repair`, rebuilds indexes first.
pub(crate) fn check_store(store: &Store, repair: bool) -> Result<CheckReport> {
    let mut report = CheckReport {
        ok: true,
        ..CheckReport::default()
    };
    match store.check_file() {
        Ok(true) => {}
        Ok(false) => report.problem("the file failed redb's integrity check and was repaired"),
        Err(e) => report.problem(format!("redb integrity check: {e}")),
    }
    let tables = Redkeep::tables();
    if repair {
        report.repaired = store.write(|tx| {
            let mut changes = Vec::new();
            for t in &tables {
                changes.extend(t.rebuild_indexes(tx)?);
            }
            Ok(changes)
        })?;
    }
    store.read(|tx| {
        for t in &tables {
            t.check(tx, &mut report)?;
        }
        check_references(tx, &mut report)
    })?;
    Ok(report)
}

fn check_references(tx: &crate::store::ReadTx, report: &mut CheckReport) -> Result<()> {
    use crate::auth::api_keys::{ApiKey, KeyOwner};
    use crate::auth::orgs::{Org, OrgMember, OrgRole};
    use crate::auth::{
        agents::AgentSession, invites::Invite, roles, sessions::Session, users::Avatar,
    };
    // Damaged records are reported by the table checks; here they are skipped.
    let users: std::collections::BTreeMap<u64, User> = tx
        .table::<User>()
        .readable()?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let orgs: std::collections::BTreeMap<u64, Org> = tx
        .table::<Org>()
        .readable()?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    let role_ids: std::collections::BTreeSet<u64> = tx
        .table::<roles::Role>()
        .readable()?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let members = tx.table::<OrgMember>().readable()?;
    let assignments = tx.table::<roles::UserRole>().readable()?;
    let mut missing = |what: String, user: u64| {
        if !users.contains_key(&user) {
            report.problem(format!("{what} points at missing user {user}"));
        }
    };
    for a in tx.table::<Avatar>().readable()? {
        missing("an avatar".into(), a.user_id);
    }
    for r in &assignments {
        missing(format!("role assignment of role {}", r.role_id), r.user_id);
    }
    for s in tx.table::<Session>().readable()? {
        missing(format!("session {}", s.short_id), s.user_id);
    }
    for a in tx.table::<AgentSession>().readable()? {
        missing(format!("agent session {}", a.id), a.user_id);
    }
    for m in &members {
        missing(format!("membership of org {}", m.org_id), m.user_id);
    }
    for r in &assignments {
        if !role_ids.contains(&r.role_id) {
            report.problem(format!(
                "user {} holds missing role {}",
                r.user_id, r.role_id
            ));
        }
    }
    for m in &members {
        if !orgs.contains_key(&m.org_id) {
            report.problem(format!(
                "membership of user {} points at missing org {}",
                m.user_id, m.org_id
            ));
        }
    }
    for k in tx.table::<ApiKey>().readable()? {
        let ok = match k.owner {
            KeyOwner::User(u) => users.contains_key(&u),
            KeyOwner::Org(o) => orgs.contains_key(&o),
        };
        if !ok {
            report.problem(format!(
                "api key {} belongs to missing {}",
                k.prefix, k.owner
            ));
        }
    }
    for invite in tx.table::<Invite>().readable()? {
        if invite.uses as usize != invite.used_by.len() {
            report.problem(format!(
                "invite {} counts {} uses but lists {} users",
                invite.prefix,
                invite.uses,
                invite.used_by.len()
            ));
        }
    }
    for o in orgs.values() {
        if !members
            .iter()
            .any(|m| m.org_id == o.id && m.role == OrgRole::Owner)
        {
            report.problem(format!("org {} has no owner", o.slug));
        }
    }
    for u in users.values() {
        let mine: Vec<u64> = members
            .iter()
            .filter(|m| m.user_id == u.id)
            .map(|m| m.org_id)
            .collect();
        if mine.is_empty() {
            report.problem(format!("user {} belongs to no org", u.id));
        }
        match u.current_org_id {
            None => report.problem(format!("user {} has no current org", u.id)),
            Some(o) if !mine.contains(&o) => report.problem(format!(
                "user {}'s current org {o} is not one of theirs",
                u.id
            )),
            Some(_) => {}
        }
    }
    Ok(())
}
