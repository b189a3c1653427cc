//! Sessions of a web framework's session layer (tower-sessions and the like): opaque data
//! under a random id, with an expiry. The id is stored only as its SHA-256, like every token,
//! so a copy of the store does not let anyone take over a session. Expired ones are removed by
//! [`Sessions::sweep`](super::sessions::Sessions::sweep).

use serde::{Deserialize, Serialize};

use super::Accounts;
use super::token::TokenHash;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::key;
use crate::store::{Index, Record};

/// The largest session data accepted, in bytes.
pub const MAX_WEB_SESSION_BYTES: usize = 1 << 20;

/// One web session. Its id is never stored: the record's key is the id's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSession {
    /// SHA-256 of the session id: the record's key.
    #[serde(skip)]
    pub hash: TokenHash,
    /// The session layer's data, as it gave it (JSON for tower-sessions).
    pub data: String,
    /// Unusable from this time on.
    pub expires_at: Timestamp,
}

impl WebSession {
    /// By expiry, for the sweep.
    pub const BY_EXPIRY: Index<WebSession> =
        Index::many("by_expiry", |s| Some(key!(s.expires_at.0)));
}

impl Record for WebSession {
    const TABLE: &'static str = "web_sessions";
    type Key = TokenHash;
    const INDEXES: &'static [&'static Index<Self>] = &[&Self::BY_EXPIRY];
    fn key(&self) -> TokenHash {
        self.hash
    }
    fn restore_key(&mut self, key: &TokenHash) {
        self.hash = *key;
    }
}

fn hash_id(id: &[u8]) -> TokenHash {
    use sha2::{Digest, Sha256};
    TokenHash(Sha256::digest(id).into())
}

fn checked(data: &str) -> Result<()> {
    if data.len() > MAX_WEB_SESSION_BYTES {
        return Err(Error::invalid(
            "session data",
            format!("use at most {MAX_WEB_SESSION_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A web framework's session store; each call runs in its own transaction.
#[derive(Debug, Clone, Copy)]
pub struct WebSessions<'a> {
    pub(crate) acc: &'a Accounts,
}

impl WebSessions<'_> {
    /// Stores a new session under `id` unless one exists; returns whether it did (on `false`
    /// draw another id).
    ///
    /// # Errors
    /// `InvalidInput` when `data` is over [`MAX_WEB_SESSION_BYTES`].
    pub fn create(&self, id: &[u8], data: &str, expires_at: Timestamp) -> Result<bool> {
        checked(data)?;
        let hash = hash_id(id);
        self.acc.store.write(|tx| {
            let t = tx.table::<WebSession>();
            if t.contains(&hash)? {
                return Ok(false);
            }
            t.insert(&WebSession {
                hash,
                data: data.to_string(),
                expires_at,
            })?;
            Ok(true)
        })
    }

    /// Stores the session under `id`, replacing what was there, or creating it. (A session
    /// layer saving at the end of a request wants [`update`](Self::update).)
    ///
    /// # Errors
    /// `InvalidInput` when `data` is over [`MAX_WEB_SESSION_BYTES`].
    pub fn save(&self, id: &[u8], data: &str, expires_at: Timestamp) -> Result<()> {
        checked(data)?;
        let record = WebSession {
            hash: hash_id(id),
            data: data.to_string(),
            expires_at,
        };
        self.acc
            .store
            .write(|tx| tx.table::<WebSession>().put(&record))
    }

    /// Replaces the data and expiry of the session under `id`, only if it is still there;
    /// returns whether it was. A session deleted meanwhile (a logout, a sweep, a new id)
    /// stays deleted: what a session layer saving at the end of a request wants, where
    /// [`save`](Self::save) would bring back a session the user logged out of while the
    /// request ran.
    ///
    /// # Errors
    /// `InvalidInput` when `data` is over [`MAX_WEB_SESSION_BYTES`].
    pub fn update(&self, id: &[u8], data: &str, expires_at: Timestamp) -> Result<bool> {
        Ok(self.replace(id, data, expires_at)?.is_some())
    }

    /// [`update`](Self::update), returning the data it replaced (`None` when the session
    /// was not there, and is not stored).
    pub(crate) fn replace(
        &self,
        id: &[u8],
        data: &str,
        expires_at: Timestamp,
    ) -> Result<Option<String>> {
        checked(data)?;
        let record = WebSession {
            hash: hash_id(id),
            data: data.to_string(),
            expires_at,
        };
        self.acc.store.write(|tx| {
            let t = tx.table::<WebSession>();
            let Some(old) = t.get(&record.hash)? else {
                return Ok(None);
            };
            t.put(&record)?;
            Ok(Some(old.data))
        })
    }

    /// The data and expiry of the session under `id`, unless it is missing or expired.
    ///
    /// # Errors
    /// `Corrupt` when it cannot be read.
    pub fn load(&self, id: &[u8]) -> Result<Option<(String, Timestamp)>> {
        let hash = hash_id(id);
        let now = self.acc.now();
        let found = self.acc.read(|tx| tx.table::<WebSession>().get(&hash))?;
        Ok(found
            .filter(|s| now < s.expires_at)
            .map(|s| (s.data, s.expires_at)))
    }

    /// Deletes the session under `id`; returns whether there was one.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn delete(&self, id: &[u8]) -> Result<bool> {
        let hash = hash_id(id);
        self.acc
            .store
            .write(|tx| Ok(tx.table::<WebSession>().delete(&hash)?.is_some()))
    }

    /// Deletes every expired web session; returns how many.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn sweep(&self) -> Result<usize> {
        let now = self.acc.now();
        super::sweep::sweep_table::<WebSession>(self.acc, &WebSession::BY_EXPIRY, now)
    }

    /// Number of stored web sessions, expired ones included until swept.
    ///
    /// # Errors
    /// `Storage` when the engine fails.
    pub fn count(&self) -> Result<u64> {
        self.acc.read(|tx| tx.table::<WebSession>().count())
    }
}
