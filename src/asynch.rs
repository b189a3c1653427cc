//! The tokio facade: the same handle, with every blocking call (storage, hashing, files) run
//! on tokio's blocking pool so async tasks never stall a runtime thread.

use std::path::PathBuf;

use crate::auth::api_keys::ApiKey;
use crate::auth::sessions::{Login, LoginMeta, Session};
use crate::error::{Error, Result};
use crate::{Options, Redkeep, Registration, User, WorkspaceDoc};

/// An async handle on a data dir. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AsyncRedkeep {
    rk: Redkeep,
}

impl AsyncRedkeep {
    /// Opens the data dir on the blocking pool (see [`Redkeep::open`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> redkeep::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use redkeep::{AsyncRedkeep, Options, PasswordParams};
    /// let rk = AsyncRedkeep::open(tmp.path(), Options::default().password(PasswordParams::INSECURE_FAST)).await?;
    /// // Any synchronous call runs on the blocking pool through `run`.
    /// assert_eq!(rk.run(|rk| rk.users().count()).await?, 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Redkeep::open`]; `Cancelled` when the runtime shuts down first.
    pub async fn open(dir: impl Into<PathBuf>, options: Options) -> Result<AsyncRedkeep> {
        let dir = dir.into();
        let rk = blocking(move || Redkeep::open(dir, options)).await?;
        Ok(AsyncRedkeep { rk })
    }

    /// Wraps an open handle.
    pub fn new(rk: Redkeep) -> AsyncRedkeep {
        AsyncRedkeep { rk }
    }

    /// The synchronous handle, for calls that do not block (or inside [`AsyncRedkeep::run`]).
    pub fn sync(&self) -> &Redkeep {
        &self.rk
    }

    /// Runs any synchronous operation on the blocking pool.
    ///
    /// # Errors
    /// `f`'s error; `Cancelled` when the runtime shuts down first. A panic in `f` is resumed here.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Redkeep) -> Result<T> + Send + 'static,
    {
        let rk = self.rk.clone();
        blocking(move || f(&rk)).await
    }

    /// [`crate::Users::register`].
    ///
    /// # Errors
    /// As the synchronous call; `Cancelled` when the runtime shuts down first.
    pub async fn register(&self, reg: Registration) -> Result<User> {
        self.run(move |rk| rk.users().register(reg)).await
    }

    /// [`crate::auth::sessions::Sessions::login`].
    ///
    /// # Errors
    /// As the synchronous call; `Cancelled` when the runtime shuts down first.
    pub async fn login(&self, email: String, password: String, meta: LoginMeta) -> Result<Login> {
        self.run(move |rk| rk.sessions().login(&email, &password, meta))
            .await
    }

    /// [`crate::Users::authenticate`].
    ///
    /// # Errors
    /// As the synchronous call; `Cancelled` when the runtime shuts down first.
    pub async fn authenticate(&self, email: String, password: String) -> Result<User> {
        self.run(move |rk| rk.users().authenticate(&email, &password))
            .await
    }

    /// [`crate::auth::sessions::Sessions::validate`].
    ///
    /// # Errors
    /// As the synchronous call; `Cancelled` when the runtime shuts down first.
    pub async fn validate_session(&self, token: String) -> Result<(User, Session)> {
        self.run(move |rk| rk.sessions().validate(&token)).await
    }

    /// [`crate::auth::sessions::Sessions::logout`].
    ///
    /// # Errors
    /// As the synchronous call; `Cancelled` when the runtime shuts down first.
    pub async fn logout(&self, token: String) -> Result<bool> {
        self.run(move |rk| rk.sessions().logout(&token)).await
    }

    /// [`crate::auth::api_keys::ApiKeys::verify`].
    ///
    /// # Errors
    /// As the synchronous call; `Cancelled` when the runtime shuts down first.
    pub async fn verify_api_key(&self, key: String) -> Result<ApiKey> {
        self.run(move |rk| rk.api_keys().verify(&key)).await
    }

    /// [`crate::Workspaces::read`].
    ///
    /// # Errors
    /// As the synchronous call; `Cancelled` when the runtime shuts down first.
    pub async fn read_workspace(&self, user: u64) -> Result<WorkspaceDoc> {
        self.run(move |rk| rk.workspaces().read(user)).await
    }

    /// [`crate::Workspaces::update`].
    ///
    /// # Errors
    /// As the synchronous call; `Cancelled` when the runtime shuts down first.
    pub async fn update_workspace<T, F>(&self, user: u64, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WorkspaceDoc) -> Result<T> + Send + 'static,
    {
        self.run(move |rk| rk.workspaces().update(user, f)).await
    }

    /// [`crate::Workspaces::save_piece`].
    ///
    /// # Errors
    /// As the synchronous call; `Cancelled` when the runtime shuts down first.
    pub async fn save_piece(&self, user: u64, json: Vec<u8>) -> Result<u64> {
        self.run(move |rk| rk.workspaces().save_piece(user, &json))
            .await
    }
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
