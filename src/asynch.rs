//! The tokio facade: the same handle, with every blocking call (storage, hashing, files) run
//! on tokio's blocking pool so async tasks never stall a runtime thread.
//!
//! It mirrors the synchronous API noun by noun: `ark.users().create(spec).await` is
//! `rk.users().create(spec)` on the blocking pool, and so on for sessions, roles, orgs,
//! invites, API keys, agents, the audit log, recovery tokens, web sessions and workspaces.
//! Every method is one generated line that calls the synchronous one: no logic lives here.
//! Arguments the synchronous API borrows (`&str`, `&[u8]`) are owned here (`String`,
//! `Vec<u8>`), since the work outlives the caller's stack frame. Passwords are taken as
//! `impl Into<`[`Secret`]`>` (a `String`, a `&str` or a `Secret`): the copy that travels
//! to the blocking thread is wiped from memory when dropped, and never shown by `Debug`.
//!
//! **Dropping a future does not cancel its work.** Once a call is made, the blocking work
//! runs to its end whether or not anyone awaits the future (a `tokio::time::timeout` that
//! fires, a `select!` that takes another branch, a client that hangs up): a user is created,
//! a session opened, a key made. What the call returns (a generated password, a token shown
//! once) is then lost with the future. Await calls that create secrets to their end, and put
//! timeouts around whole requests only where the work is safe to finish unseen.
//!
//! **Password hashing waits as a future.** The calls that hash a password (logins, password
//! checks and changes, creating or registering a user, resets, `init`) first take one of as
//! many places as the handle may hash at once ([`Options::max_concurrent_hashes`]), and
//! only then a thread of the blocking pool. A flood of logins therefore waits as futures,
//! not as pool threads parked on the hash limit, and every other call (validating a
//! session, loading a web session) still finds a thread. Such a call whose future is
//! dropped while it still waits for its place does nothing; once it has its place, it runs
//! to its end as above. Run your own hashing work through [`AsyncRedkeep::run_hashing`] for
//! the same reason.
//!
//! **Who made a change.** The audit events of writes made through a handle from
//! [`AsyncRedkeep::with_origin`] carry its origin, as [`Redkeep::with_origin`] gives one to
//! a thread's writes: the origin goes with each call to the blocking thread that runs it.
//!
//! **Closing.** Dropping the last handle closes the store on the dropping thread (for a redb
//! file a commit and an fsync); [`AsyncRedkeep::close`] does it on the blocking pool.
//!
//! The noun views (`ark.users()`) borrow the handle: `ark.users().create(spec).await` works
//! as one expression; to keep a future, keep the view first (`let users = ark.users();`).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::agents::{AgentSession, AgentSpec, AgentState};
use crate::auth::api_keys::{ApiKey, ApiKeySpec, CreatedApiKey, KeyOwner};
use crate::auth::audit::AuditEvent;
use crate::auth::invites::{CreatedInvite, Invite, InviteFilter, InviteSpec};
use crate::auth::orgs::{DeletedOrg, Org, OrgMember, OrgRole, OrgSpec, RemovedMember, RoleChanged};
use crate::auth::recovery::{IssuedToken, RecoveryToken};
use crate::auth::roles::{Role, RoleSpec};
use crate::auth::sessions::{Login, LoginMeta, Session};
use crate::auth::token::Secret;
use crate::auth::users::{
    CreatedUser, DeletedUser, DisabledUser, Lockout, NewUser, PasswordInfo, Registration, User,
    UserFilter,
};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::handle::{InitOutcome, InitSpec, MigrationStatus, Options, Redkeep};
use crate::ops::{BackupReport, Stats, TransferSummary};
use crate::store::{CheckReport, MigrationRun, Origin, ReadTx, WriteTx};
use crate::workspace::{FolderOwner, PieceInfo, WorkspaceDoc, WorkspaceInfo, WorkspaceProblem};

/// An async handle on a data dir. Cheap to clone, `Send + Sync + 'static`.
#[derive(Clone, Debug)]
pub struct AsyncRedkeep {
    rk: Redkeep,
    /// One place per hash the handle may run at once, taken before a hashing call goes to
    /// the blocking pool (shared by every wrapper of the handle).
    hashes: Arc<tokio::sync::Semaphore>,
    /// Named as the origin of the writes of every call made through this handle (on the
    /// blocking thread that runs it: the origin is thread-scoped).
    origin: Option<Origin>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        // A panic in the closure is the caller's bug: let it surface as one.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Cancelled {
            what: "the blocking task (the runtime is shutting down)".into(),
        }),
    }
}

/// Generates async methods that run one synchronous method on the blocking pool. Each line
/// reads `fn name(owned args) -> Output => (arguments of the synchronous call);`; the lines
/// after `hashing:` are of methods that hash a password, which go through
/// [`AsyncRedkeep::run_hashing`]. A hashing line may name its password arguments after the
/// output (`-> Output, secret a, b =>`): those are declared `impl Into<Secret>` and made
/// a [`Secret`] before the work leaves for the blocking pool.
macro_rules! forward {
    (
        $sync:literal, $handle:ident;
        $( fn $name:ident($($arg:ident : $ty:ty),*) -> $ret:ty => ($($call:expr),*); )*
        $( hashing: $( fn $hname:ident($($harg:ident : $hty:ty),*) -> $hret:ty $(, secret $($secret:ident),+)? => ($($hcall:expr),*); )* )?
    ) => {
        $(
            #[doc = concat!("[`", stringify!($name), "`](", $sync, "::", stringify!($name), ") on the blocking pool.")]
            ///
            /// # Errors
            /// As the synchronous method's; `Cancelled` when the runtime shuts down first.
            pub async fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                self.ark.run(move |rk| rk.$handle().$name($($call),*)).await
            }
        )*
        $($(
            #[doc = concat!("[`", stringify!($hname), "`](", $sync, "::", stringify!($hname), ") on the blocking pool, once one of the handle's places to hash is free (see [`AsyncRedkeep::run_hashing`]).")]
            $(
                ///
                #[doc = concat!("The password", $(" `", stringify!($secret), "`",)+ " is taken as a [`Secret`] (give a `String`, a `&str` or a `Secret`): wiped from memory when dropped, never shown by `Debug`.")]
            )?
            ///
            /// # Errors
            /// As the synchronous method's; `Cancelled` when the runtime shuts down first.
            pub async fn $hname(&self, $($harg: $hty),*) -> Result<$hret> {
                $($(let $secret: Secret = $secret.into();)+)?
                self.ark.run_hashing(move |rk| rk.$handle().$hname($($hcall),*)).await
            }
        )*)?
    };
}

/// Declares an async noun handle borrowing the facade.
macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            ark: &'a AsyncRedkeep,
        }
    };
}

handle!(
    /// Users on the blocking pool (see [`crate::Users`]).
    AsyncUsers
);
handle!(
    /// Login sessions on the blocking pool (see [`crate::auth::sessions::Sessions`]).
    AsyncSessions
);
handle!(
    /// Roles on the blocking pool (see [`crate::auth::roles::Roles`]).
    AsyncRoles
);
handle!(
    /// Organizations on the blocking pool (see [`crate::auth::orgs::Orgs`]).
    AsyncOrgs
);
handle!(
    /// Invite codes on the blocking pool (see [`crate::Invites`]).
    AsyncInvites
);
handle!(
    /// API keys on the blocking pool (see [`crate::auth::api_keys::ApiKeys`]).
    AsyncApiKeys
);
handle!(
    /// Agent sessions on the blocking pool (see [`crate::auth::agents::Agents`]).
    AsyncAgents
);
handle!(
    /// The audit log on the blocking pool (see [`crate::auth::audit::AuditLog`]).
    AsyncAudit
);
handle!(
    /// Password resets and email verification on the blocking pool (see
    /// [`crate::auth::recovery::Recovery`]).
    AsyncRecovery
);
handle!(
    /// A web framework's session store on the blocking pool (see
    /// [`crate::auth::web_sessions::WebSessions`]).
    AsyncWebSessions
);
handle!(
    /// Workspace folders on the blocking pool (see [`crate::Workspaces`]).
    AsyncWorkspaces
);

impl AsyncRedkeep {
    /// Opens the data dir on the blocking pool (see [`Redkeep::open`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> redkeep::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use redkeep::{AsyncRedkeep, Options, PasswordParams};
    /// let ark = AsyncRedkeep::open(tmp.path(), Options::default().password(PasswordParams::INSECURE_FAST)).await?;
    /// assert_eq!(ark.users().count().await?, 0);
    /// // Anything else of the synchronous API runs on the blocking pool through `run`.
    /// assert!(ark.run(|rk| rk.is_initialized()).await.is_ok());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Redkeep::open`]; `Cancelled` when the runtime shuts down first.
    pub async fn open(dir: impl Into<PathBuf>, options: Options) -> Result<AsyncRedkeep> {
        let dir = dir.into();
        let rk = blocking(move || Redkeep::open(dir, options)).await?;
        Ok(AsyncRedkeep::new(rk))
    }

    /// Wraps an open handle. Every wrapper of the handle (and of its clones) shares one
    /// bound on the password hashes sent to the blocking pool at once
    /// ([`Options::max_concurrent_hashes`]).
    pub fn new(rk: Redkeep) -> AsyncRedkeep {
        let hashes = rk.hash_places();
        AsyncRedkeep {
            rk,
            hashes,
            origin: None,
        }
    }

    /// This handle, naming `origin` as the origin of the writes of every call made through
    /// it: each audit event they record carries it in
    /// [`AuditEvent::origin`](crate::auth::audit::AuditEvent::origin), as
    /// [`Redkeep::with_origin`] does for a thread. It runs inside [`AsyncRedkeep::run`] and
    /// [`AsyncRedkeep::run_hashing`] too; a [`Redkeep::with_origin`] inside their closure
    /// takes precedence. The handle it is made from keeps its own origin (usually none).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let tmp = tempfile::tempdir()?;
    /// use redkeep::{AsyncRedkeep, NewUser, Options, Origin, PasswordParams};
    /// let ark = AsyncRedkeep::open(tmp.path(), Options::default().password(PasswordParams::INSECURE_FAST)).await?;
    /// // One per request, say: cheap (it shares the store and its bound on hashes).
    /// let web = ark.with_origin(Origin::new("web, 203.0.113.7")?);
    /// let new_user = NewUser { email: "ann@example.com".into(), ..NewUser::default() };
    /// let ann = web.users().create(new_user).await?;
    /// let created = &ark.audit().list(Some(ann.user.id), None, 1).await?[0];
    /// assert_eq!(created.origin.as_deref(), Some("web, 203.0.113.7"));
    /// # Ok(()) }
    /// ```
    pub fn with_origin(&self, origin: Origin) -> AsyncRedkeep {
        AsyncRedkeep {
            origin: Some(origin),
            ..self.clone()
        }
    }

    /// The origin the writes of this handle's calls name ([`AsyncRedkeep::with_origin`]).
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// `f` on `rk`, naming `origin` (when there is one) as the origin of its writes; on the
    /// thread that runs the work.
    fn in_origin<T>(rk: &Redkeep, origin: Option<&Origin>, f: impl FnOnce(&Redkeep) -> T) -> T {
        match origin {
            Some(origin) => Redkeep::with_origin(origin, || f(rk)),
            None => f(rk),
        }
    }

    /// Drops this handle on the blocking pool, and returns once that is done. When it is the
    /// last handle on the data dir (no clone of it, nor of its synchronous handle, is left),
    /// the store closes there, completely, before this returns: the data dir can be opened
    /// again at once. Dropping the last handle instead closes the store on the dropping
    /// thread, which for a redb file is a commit and an fsync on a runtime thread.
    ///
    /// # Errors
    /// `Cancelled` when the runtime shuts down first (the handle is dropped all the same).
    pub async fn close(self) -> Result<()> {
        let rk = self.rk;
        blocking(move || {
            drop(rk);
            Ok(())
        })
        .await
    }

    /// The synchronous handle, for calls that do not block (or inside [`AsyncRedkeep::run`]).
    pub fn sync(&self) -> &Redkeep {
        &self.rk
    }

    /// Runs any synchronous operation on the blocking pool (naming this handle's origin, if
    /// any, as the origin of its writes).
    ///
    /// # Errors
    /// `f`'s error; `Cancelled` when the runtime shuts down first. A panic in `f` is resumed
    /// here.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Redkeep) -> Result<T> + Send + 'static,
    {
        let (rk, origin) = (self.rk.clone(), self.origin.clone());
        blocking(move || Self::in_origin(&rk, origin.as_ref(), f)).await
    }

    /// Runs a synchronous operation that hashes a password (or verifies one) on the blocking
    /// pool, once one of the handle's places to hash is free: at most
    /// [`Options::max_concurrent_hashes`] such operations hold a pool thread at once, and
    /// the others wait as futures. The hashing calls of this facade and of the web layer
    /// go through here; with [`AsyncRedkeep::run`] instead, a flood of them fills the
    /// blocking pool with threads waiting for their turn to hash, and every other call
    /// waits behind them.
    ///
    /// # Errors
    /// `f`'s error; `Cancelled` when the runtime shuts down first. A panic in `f` is resumed
    /// here.
    pub async fn run_hashing<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Redkeep) -> Result<T> + Send + 'static,
    {
        // The semaphore is never closed, so `acquire_owned` cannot fail; were it closed, the
        // call would run unbounded rather than fail.
        let place = self.hashes.clone().acquire_owned().await.ok();
        let (rk, origin) = (self.rk.clone(), self.origin.clone());
        // The place goes with the work, not with this future: a future dropped while the
        // work runs (which still runs to its end) keeps the place taken until it ends.
        blocking(move || {
            let _place = place;
            Self::in_origin(&rk, origin.as_ref(), f)
        })
        .await
    }

    /// One read transaction on the blocking pool (see [`crate::Store::read`]).
    ///
    /// # Errors
    /// `f`'s error; `Storage` when the engine fails; `Cancelled`.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTx<'_>) -> Result<T> + Send + 'static,
    {
        self.run(move |rk| rk.store().read(f)).await
    }

    /// One write transaction on the blocking pool (see [`crate::Store::write`]); `f` may run
    /// more than once.
    ///
    /// # Errors
    /// `f`'s error (nothing written); `Conflict`; `Storage`; `Cancelled`.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&WriteTx<'_>) -> Result<T> + Send + 'static,
    {
        self.run(move |rk| rk.store().write(f)).await
    }

    /// Users.
    pub fn users(&self) -> AsyncUsers<'_> {
        AsyncUsers { ark: self }
    }
    /// Login sessions.
    pub fn sessions(&self) -> AsyncSessions<'_> {
        AsyncSessions { ark: self }
    }
    /// Roles and permissions.
    pub fn roles(&self) -> AsyncRoles<'_> {
        AsyncRoles { ark: self }
    }
    /// Organizations.
    pub fn orgs(&self) -> AsyncOrgs<'_> {
        AsyncOrgs { ark: self }
    }
    /// Invite codes.
    pub fn invites(&self) -> AsyncInvites<'_> {
        AsyncInvites { ark: self }
    }
    /// API keys.
    pub fn api_keys(&self) -> AsyncApiKeys<'_> {
        AsyncApiKeys { ark: self }
    }
    /// Agent sessions.
    pub fn agents(&self) -> AsyncAgents<'_> {
        AsyncAgents { ark: self }
    }
    /// The audit log.
    pub fn audit(&self) -> AsyncAudit<'_> {
        AsyncAudit { ark: self }
    }
    /// Password resets and email verification.
    pub fn recovery(&self) -> AsyncRecovery<'_> {
        AsyncRecovery { ark: self }
    }
    /// A web framework's session store.
    pub fn web_sessions(&self) -> AsyncWebSessions<'_> {
        AsyncWebSessions { ark: self }
    }
    /// Workspace folders.
    pub fn workspaces(&self) -> AsyncWorkspaces<'_> {
        AsyncWorkspaces { ark: self }
    }

    /// [`Redkeep::init`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Redkeep::init`]; `Cancelled`.
    pub async fn init(&self, spec: InitSpec) -> Result<InitOutcome> {
        self.run_hashing(move |rk| rk.init(spec)).await
    }

    /// [`Redkeep::is_initialized`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Redkeep::is_initialized`]; `Cancelled`.
    pub async fn is_initialized(&self) -> Result<bool> {
        self.run(|rk| rk.is_initialized()).await
    }

    /// [`Redkeep::check`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Redkeep::check`]; `Cancelled`.
    pub async fn check(&self, repair: bool) -> Result<CheckReport> {
        self.run(move |rk| rk.check(repair)).await
    }

    /// [`Redkeep::migrate`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Redkeep::migrate`]; `Cancelled`.
    pub async fn migrate(&self) -> Result<MigrationRun> {
        self.run(|rk| rk.migrate()).await
    }

    /// [`Redkeep::migrate_down`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Redkeep::migrate_down`]; `Cancelled`.
    pub async fn migrate_down(&self, to: Option<u64>) -> Result<MigrationRun> {
        self.run(move |rk| rk.migrate_down(to)).await
    }

    /// [`Redkeep::migration_status`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Redkeep::migration_status`]; `Cancelled`.
    pub async fn migration_status(&self) -> Result<MigrationStatus> {
        self.run(|rk| rk.migration_status()).await
    }

    /// [`crate::ops::backup`] on the blocking pool.
    ///
    /// # Errors
    /// As [`crate::ops::backup`]; `Cancelled`.
    pub async fn backup(&self, dest: PathBuf) -> Result<BackupReport> {
        self.run(move |rk| crate::ops::backup(rk, &dest)).await
    }

    /// [`crate::ops::stats`] on the blocking pool.
    ///
    /// # Errors
    /// As [`crate::ops::stats`]; `Cancelled`.
    pub async fn stats(&self) -> Result<Stats> {
        self.run(crate::ops::stats).await
    }

    /// [`crate::ops::export`] on the blocking pool, into `out`, which is handed back.
    ///
    /// # Errors
    /// As [`crate::ops::export`]; `Cancelled`.
    pub async fn export<W: Write + Send + 'static>(
        &self,
        mut out: W,
    ) -> Result<(W, TransferSummary)> {
        self.run(move |rk| {
            let summary = crate::ops::export(rk, &mut out, &|_| {})?;
            Ok((out, summary))
        })
        .await
    }

    /// [`crate::ops::import`] on the blocking pool, from `input`.
    ///
    /// # Errors
    /// As [`crate::ops::import`]; `Cancelled`.
    pub async fn import<R: BufRead + Send + 'static>(
        &self,
        mut input: R,
    ) -> Result<TransferSummary> {
        self.run(move |rk| crate::ops::import(rk, &mut input, &|_| {}))
            .await
    }
}

impl AsyncUsers<'_> {
    forward! { "crate::Users", users;
        fn get(id: u64) -> Option<User> => (id);
        fn by_email(email: String) -> Option<User> => (&email);
        fn by_username(username: String) -> Option<User> => (&username);
        fn by_external_id(external_id: String) -> Option<User> => (&external_id);
        fn find(who: String) -> User => (&who);
        fn list(filter: UserFilter, after: Option<u64>, limit: usize) -> Vec<User> => (filter, after, limit);
        fn created_between(from: Timestamp, to: Timestamp, limit: usize) -> Vec<User> => (from, to, limit);
        fn admins(limit: usize) -> Vec<User> => (limit);
        fn count() -> u64 => ();
        fn rename(id: u64, name: Option<String>, username: Option<Option<String>>) -> User => (id, name, username);
        fn change_email(id: u64, email: String) -> User => (id, &email);
        fn set_email_verified(id: u64, verified: bool) -> User => (id, verified);
        fn disable(id: u64) -> DisabledUser => (id);
        fn disable_revoking_keys(id: u64) -> DisabledUser => (id);
        fn enable(id: u64) -> User => (id);
        fn unlock(id: u64) -> User => (id);
        fn delete(id: u64) -> DeletedUser => (id);
        fn lockout(id: u64) -> Lockout => (id);
        fn password_info(id: u64) -> PasswordInfo => (id);
        fn set_avatar(id: u64, jpeg: Vec<u8>) -> () => (id, jpeg);
        fn avatar(id: u64) -> Option<Vec<u8>> => (id);
        fn remove_avatar(id: u64) -> bool => (id);
        hashing:
        fn create(spec: NewUser) -> CreatedUser => (spec);
        fn register(reg: Registration) -> User => (reg);
        fn authenticate(login: String, password: impl Into<Secret>) -> User, secret password => (&login, password.expose());
        fn check_password(id: u64, password: impl Into<Secret>) -> (), secret password => (id, password.expose());
        fn password_matches(id: u64, password: impl Into<Secret>) -> bool, secret password => (id, password.expose());
        fn set_password(id: u64, password: impl Into<Secret>) -> User, secret password => (id, password.expose());
        fn set_temporary_password(id: u64, password: impl Into<Secret>) -> User, secret password => (id, password.expose());
        fn change_password(session_token: String, current: impl Into<Secret>, new: impl Into<Secret>) -> User, secret current, new => (&session_token, current.expose(), new.expose());
        fn change_password_of(id: u64, current: impl Into<Secret>, new: impl Into<Secret>) -> User, secret current, new => (id, current.expose(), new.expose());
    }
}

impl AsyncSessions<'_> {
    forward! { "crate::auth::sessions::Sessions", sessions;
        fn validate(token: String) -> (User, Session) => (&token);
        fn logout(token: String) -> bool => (&token);
        fn revoke(short_id: String) -> Session => (&short_id);
        fn revoke_all(user: u64) -> usize => (user);
        fn revoke_everyone() -> usize => ();
        fn list(user: Option<u64>, limit: usize) -> Vec<Session> => (user, limit);
        fn sweep() -> usize => ();
        hashing:
        fn login(login: String, password: impl Into<Secret>, meta: LoginMeta) -> Login, secret password => (&login, password.expose(), meta);
    }
}

impl AsyncRoles<'_> {
    forward! { "crate::auth::roles::Roles", roles;
        fn create(spec: RoleSpec) -> Role => (spec);
        fn list() -> Vec<Role> => ();
        fn get(name: String) -> Role => (&name);
        fn delete(name: String) -> Role => (&name);
        fn delete_revoking(name: String) -> (Role, Vec<u64>) => (&name);
        fn grant(user: u64, role: String, by: Option<u64>) -> Role => (user, &role, by);
        fn revoke(user: u64, role: String, by: Option<u64>) -> Role => (user, &role, by);
        fn of_user(user: u64) -> Vec<Role> => (user);
        fn users_in(role: String, limit: usize) -> Vec<u64> => (&role, limit);
        fn permissions(user: u64) -> BTreeSet<String> => (user);
        fn has_permission(user: u64, permission: String) -> bool => (user, &permission);
    }
}

impl AsyncOrgs<'_> {
    forward! { "crate::auth::orgs::Orgs", orgs;
        fn create(spec: OrgSpec) -> Org => (spec);
        fn list(after: Option<u64>, limit: usize) -> Vec<Org> => (after, limit);
        fn get(id: u64) -> Option<Org> => (id);
        fn by_slug(slug: String) -> Option<Org> => (&slug);
        fn by_external_id(external_id: String) -> Option<Org> => (&external_id);
        fn find(org: String) -> Org => (&org);
        fn members(org: u64, after: Option<u64>, limit: usize) -> Vec<OrgMember> => (org, after, limit);
        fn member_count(org: u64) -> u64 => (org);
        fn of_user(user: u64) -> Vec<(Org, OrgRole)> => (user);
        fn role_in(user: u64, org: u64) -> Option<OrgRole> => (user, org);
        fn is_member(user: u64, org: u64) -> bool => (user, org);
        fn add_member(org: u64, user: u64, role: OrgRole) -> OrgMember => (org, user, role);
        fn add_members(org: u64, users: Vec<u64>, role: OrgRole) -> Vec<OrgMember> => (org, &users, role);
        fn create_default(spec: OrgSpec) -> Org => (spec);
        fn set_default(org: u64) -> Org => (org);
        fn remove_member(org: u64, user: u64) -> RemovedMember => (org, user);
        fn set_role(org: u64, user: u64, role: OrgRole) -> RoleChanged => (org, user, role);
        fn switch(user: u64, org: u64) -> User => (user, org);
        fn delete(org: u64, force: bool) -> DeletedOrg => (org, force);
    }
}

impl AsyncInvites<'_> {
    forward! { "crate::Invites", invites;
        fn create(spec: InviteSpec) -> CreatedInvite => (spec);
        fn create_many(spec: InviteSpec, count: usize) -> Vec<CreatedInvite> => (spec, count);
        fn list(filter: InviteFilter, limit: usize) -> Vec<Invite> => (filter, limit);
        fn find(code_or_prefix: String) -> Invite => (&code_or_prefix);
        fn validate(code: String) -> Invite => (&code);
        fn revoke(code_or_prefix: String) -> Invite => (&code_or_prefix);
    }
}

impl AsyncApiKeys<'_> {
    forward! { "crate::auth::api_keys::ApiKeys", api_keys;
        fn create(spec: ApiKeySpec) -> CreatedApiKey => (spec);
        fn verify(key: String) -> ApiKey => (&key);
        fn find(prefix_or_key: String) -> ApiKey => (&prefix_or_key);
        fn revoke(prefix_or_key: String) -> ApiKey => (&prefix_or_key);
        fn revoke_all_of(owner: KeyOwner) -> Vec<ApiKey> => (owner);
        fn list(owner: Option<KeyOwner>, limit: usize) -> Vec<ApiKey> => (owner, limit);
        fn list_made_by(user: u64, limit: usize) -> Vec<ApiKey> => (user, limit);
    }
}

impl AsyncAgents<'_> {
    forward! { "crate::auth::agents::Agents", agents;
        fn create(spec: AgentSpec) -> AgentSession => (spec);
        fn get(id: String) -> Option<AgentSession> => (&id);
        fn get_of(user: u64, id: String) -> Option<AgentSession> => (user, &id);
        fn list_by_user(user: u64, limit: usize) -> Vec<AgentSession> => (user, limit);
        fn list(limit: usize) -> Vec<AgentSession> => (limit);
        fn delete(id: String) -> bool => (&id);
        fn delete_of(user: u64, id: String) -> bool => (user, &id);
        fn sweep() -> usize => ();
    }

    /// [`update`](crate::auth::agents::Agents::update) on the blocking pool.
    ///
    /// # Errors
    /// As the synchronous method's; `Cancelled` when the runtime shuts down first.
    pub async fn update<F>(&self, id: String, f: F) -> Result<AgentSession>
    where
        F: FnMut(&mut AgentState) -> Result<()> + Send + 'static,
    {
        self.ark.run(move |rk| rk.agents().update(&id, f)).await
    }

    /// [`update_of`](crate::auth::agents::Agents::update_of) on the blocking pool.
    ///
    /// # Errors
    /// As the synchronous method's; `Cancelled` when the runtime shuts down first.
    pub async fn update_of<F>(&self, user: u64, id: String, f: F) -> Result<AgentSession>
    where
        F: FnMut(&mut AgentState) -> Result<()> + Send + 'static,
    {
        self.ark
            .run(move |rk| rk.agents().update_of(user, &id, f))
            .await
    }
}

impl AsyncAudit<'_> {
    forward! { "crate::auth::audit::AuditLog", audit;
        fn list(user: Option<u64>, before: Option<u64>, limit: usize) -> Vec<AuditEvent> => (user, before, limit);
        fn prune(before: Timestamp) -> u64 => (before);
    }
}

impl AsyncRecovery<'_> {
    forward! { "crate::auth::recovery::Recovery", recovery;
        fn request_password_reset(email: String) -> Option<IssuedToken> => (&email);
        fn request_email_verification(user: u64) -> IssuedToken => (user);
        fn verify_email(token: String) -> User => (&token);
        fn tokens_of(user: u64) -> Vec<RecoveryToken> => (user);
        hashing:
        fn reset_password(token: String, password: impl Into<Secret>) -> User, secret password => (&token, password.expose());
    }
}

impl AsyncWebSessions<'_> {
    forward! { "crate::auth::web_sessions::WebSessions", web_sessions;
        fn create(id: Vec<u8>, data: String, expires_at: Timestamp) -> bool => (&id, &data, expires_at);
        fn save(id: Vec<u8>, data: String, expires_at: Timestamp) -> () => (&id, &data, expires_at);
        fn update(id: Vec<u8>, data: String, expires_at: Timestamp) -> bool => (&id, &data, expires_at);
        fn load(id: Vec<u8>) -> Option<(String, Timestamp)> => (&id);
        fn delete(id: Vec<u8>) -> bool => (&id);
        fn sweep() -> usize => ();
        fn count() -> u64 => ();
    }
}

impl AsyncWorkspaces<'_> {
    forward! { "crate::Workspaces", workspaces;
        fn read(user: u64) -> WorkspaceDoc => (user);
        fn info(user: u64) -> WorkspaceInfo => (user);
        fn list() -> Vec<WorkspaceInfo> => ();
        fn save_piece(user: u64, json: Vec<u8>) -> u64 => (user, &json);
        fn load_piece(user: u64, n: u64) -> serde_json::Value => (user, n);
        fn list_pieces(user: u64) -> Vec<PieceInfo> => (user);
        fn list_pieces_page(user: u64, after: Option<u64>, limit: usize) -> Vec<PieceInfo> => (user, after, limit);
        fn delete_piece(user: u64, n: u64) -> () => (user, n);
        fn put_piece(user: u64, n: u64, json: Vec<u8>) -> () => (user, n, &json);
        fn put_doc(user: u64, doc: WorkspaceDoc) -> () => (user, &doc);
        fn user_ids() -> Vec<u64> => ();
        fn marker(user: u64) -> Option<FolderOwner> => (user);
        fn check(repair: bool, now: Timestamp) -> Vec<WorkspaceProblem> => (repair, now);
        fn trash_folder(user: u64, now: Timestamp) -> Option<PathBuf> => (user, now);
    }

    /// Whether the user's folder exists, checked on the blocking pool.
    ///
    /// # Errors
    /// `NotReady` when the data dir was moved away under the handle; `Cancelled` when the
    /// runtime shuts down first.
    pub async fn exists(&self, user: u64) -> Result<bool> {
        self.ark.run(move |rk| rk.workspaces().present(user)).await
    }

    /// [`update`](crate::Workspaces::update) on the blocking pool.
    ///
    /// # Errors
    /// As the synchronous method's; `Cancelled` when the runtime shuts down first.
    pub async fn update<T, F>(&self, user: u64, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WorkspaceDoc) -> Result<T> + Send + 'static,
    {
        self.ark
            .run(move |rk| rk.workspaces().update(user, f))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wrapping one handle twice (or a clone of it) does not double the bound on hashes:
    /// every wrapper takes its places from the handle's one count.
    #[test]
    fn every_wrapper_of_a_handle_shares_its_places_to_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let options = Options::default()
            .password(crate::PasswordParams::INSECURE_FAST)
            .max_concurrent_hashes(usize::MAX);
        let rk = Redkeep::open(tmp.path(), options).unwrap();
        let (a, b) = (AsyncRedkeep::new(rk.clone()), AsyncRedkeep::new(rk));
        assert!(Arc::ptr_eq(&a.hashes, &b.hashes));
        let other = tempfile::tempdir().unwrap();
        let c = AsyncRedkeep::new(Redkeep::open(other.path(), Options::default()).unwrap());
        assert!(!Arc::ptr_eq(&a.hashes, &c.hashes));
    }
}
