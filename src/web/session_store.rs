//! A tower-sessions `SessionStore` on redkeep's `web_sessions` table: the session id is
//! stored only as its SHA-256, the record keeps the session's data and expiry (counted on the
//! handle's clock, so an injected one moves web sessions as it moves logins), a new id that
//! collides with a stored one is drawn again, and expired sessions are removed by
//! `ExpiredDeletion` (or `redkeep session sweep`). It is implemented for tower-sessions 0.15
//! (feature `tower-sessions`) and for the 0.14 that axum-login 0.18 uses (feature
//! `axum-login`).
//!
//! A cookie session that names a redkeep login (axum-login's data, written by
//! [`Backend`](super::Backend)) takes that login with it: deleting the cookie session
//! (axum-login's `logout`, a login whose auth hash no longer matches, a new session id) ends
//! the login's redkeep session, and so does saving it with another login in its place (a bare
//! `auth.login` over a signed-in cookie). A login no cookie names any more is out of reach,
//! and ends rather than living on until it expires.

use crate::asynch::AsyncRedkeep;
use crate::clock::Timestamp;

/// A tower-sessions session store in a redkeep data dir.
#[derive(Debug, Clone)]
pub struct RedkeepSessionStore {
    ark: AsyncRedkeep,
}

impl RedkeepSessionStore {
    /// A store on this handle's data dir.
    pub fn new(ark: AsyncRedkeep) -> RedkeepSessionStore {
        RedkeepSessionStore { ark }
    }
}

fn id_bytes(id: i128) -> Vec<u8> {
    id.to_le_bytes().to_vec()
}

/// The expiry tower-sessions set (`unix_secs`, by the system clock) in the handle's time:
/// as far from the handle's clock as it is from the system's. With the system clock that is
/// the same time; with an injected clock (`ManualClock` in tests), a web session then
/// expires when that clock passes its lifetime, as the redkeep login behind it does, not
/// at once (a clock ahead of the system's) or never (one behind it).
fn in_handle_time(ark: &AsyncRedkeep, unix_secs: i64) -> Timestamp {
    Timestamp(
        ark.sync()
            .now()
            .0
            .saturating_add(unix_secs.saturating_sub(system_now())),
    )
}

/// The redkeep login (user id, session short id) that a cookie session's data names:
/// axum-login keeps the signed-in user's [`LoginId`](super::LoginId) beside its auth hash,
/// in one value of the session, under a key the application may choose.
fn login_named<'a>(
    values: impl IntoIterator<Item = &'a serde_json::Value>,
) -> Option<(u64, String)> {
    values.into_iter().find_map(|value| {
        let value = value.as_object()?;
        value.get("auth_hash")?;
        let id = value.get("user_id")?.as_object()?;
        let user = id.get("user")?.as_u64()?;
        let session = id.get("session")?.as_str()?;
        (!session.is_empty()).then(|| (user, session.to_string()))
    })
}

/// [`login_named`] in a stored cookie session (the record's JSON, without its id).
fn login_stored(text: &str) -> Option<(u64, String)> {
    // Most sessions name no login: those are not parsed.
    if !text.contains("\"auth_hash\"") {
        return None;
    }
    let stored: serde_json::Value = serde_json::from_str(text).ok()?;
    login_named(stored.get("data")?.as_object()?.values())
}

/// Ends the redkeep login a stored cookie session names, if any (and if it lives).
fn end_login_of(rk: &crate::Redkeep, stored: &str) -> crate::Result<()> {
    if let Some((user, short_id)) = login_stored(stored) {
        rk.sessions().end_login(&short_id, user)?;
    }
    Ok(())
}

/// How the store's `Busy` starts in the session layer's error (a string there), so that
/// [`busy_in`] tells it apart again.
const STORE_BUSY: &str = "the session store is busy: ";

/// A store error as the session layer's backend error (a string): the store's `Busy` is
/// marked, for [`busy_in`].
fn backend_message(e: &crate::Error) -> String {
    match e {
        crate::Error::Busy { what } => format!("{STORE_BUSY}{what}"),
        e => e.to_string(),
    }
}

/// What was busy, when `message` (a session layer's backend error) is the store's `Busy`.
#[cfg(feature = "axum-login")]
pub(super) fn busy_in(message: &str) -> Option<&str> {
    message.strip_prefix(STORE_BUSY)
}

/// `at` (the handle's time) by the system clock, the inverse of [`in_handle_time`]: when a
/// cookie set now should end to end with a login whose session expires at `at`.
#[cfg(feature = "axum-login")]
pub(super) fn in_system_time(ark: &AsyncRedkeep, at: Timestamp) -> i64 {
    system_now().saturating_add(at.0.saturating_sub(ark.sync().now().0))
}

/// The system clock, in Unix seconds.
fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Implements the store for the tower-sessions crate at `$ts` (its session and store
/// modules are alike across 0.14 and 0.15).
macro_rules! session_store {
    ($($ts:ident)::+) => {
        const _: () = {
            use $($ts)::+::session::{Id, Record};
            use $($ts)::+::session_store::{Error, ExpiredDeletion, Result, SessionStore};

            fn backend(e: crate::Error) -> Error {
                Error::Backend(backend_message(&e))
            }

            /// The record as stored: everything but the id, which is the key (hashed), and
            /// when it expires, in the handle's time.
            fn encode(ark: &AsyncRedkeep, record: &Record) -> Result<(String, Timestamp)> {
                let mut value =
                    serde_json::to_value(record).map_err(|e| Error::Encode(e.to_string()))?;
                if let Some(map) = value.as_object_mut() {
                    map.remove("id");
                }
                let text = value.to_string();
                // Written only if it reads back: session data nested past what a read
                // takes (serde_json's 128 levels, counting the record around it) would
                // make the session unreadable, and every request of that browser fail.
                serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                    Error::Encode(format!(
                        "the session's data could not be stored: it would not read back \
                         ({e}); keep values in a session under 120 levels deep"
                    ))
                })?;
                let expires = in_handle_time(ark, record.expiry_date.unix_timestamp());
                Ok((text, expires))
            }

            fn decode(id: &Id, data: &str) -> Result<Record> {
                let mut value: serde_json::Value =
                    serde_json::from_str(data).map_err(|e| Error::Decode(e.to_string()))?;
                let id = serde_json::to_value(id).map_err(|e| Error::Decode(e.to_string()))?;
                value
                    .as_object_mut()
                    .ok_or_else(|| Error::Decode("a stored session is not an object".into()))?
                    .insert("id".into(), id);
                serde_json::from_value(value).map_err(|e| Error::Decode(e.to_string()))
            }

            #[async_trait::async_trait]
            impl SessionStore for RedkeepSessionStore {
                async fn create(&self, record: &mut Record) -> Result<()> {
                    let (data, expires) = encode(&self.ark, record)?;
                    loop {
                        let stored = self
                            .ark
                            .web_sessions()
                            .create(id_bytes(record.id.0), data.clone(), expires)
                            .await
                            .map_err(backend)?;
                        if stored {
                            return Ok(());
                        }
                        // Another session has this id: draw a new one.
                        record.id = Id::default();
                    }
                }

                /// Updates the session only if it is still there: one deleted while the
                /// request ran (a logout in another request, a sweep) stays deleted, unlike
                /// `MemoryStore`, whose save would bring it back, signed in again. A login
                /// the stored session named and this one does not (a bare `auth.login` of
                /// another over it) ends.
                async fn save(&self, record: &Record) -> Result<()> {
                    let (data, expires) = encode(&self.ark, record)?;
                    let key = id_bytes(record.id.0);
                    let named = login_named(record.data.values());
                    self.ark
                        .run(move |rk| {
                            let Some(replaced) = rk.web_sessions().replace(&key, &data, expires)?
                            else {
                                return Ok(());
                            };
                            match login_stored(&replaced) {
                                Some(before) if Some(&before) != named.as_ref() => {
                                    rk.sessions().end_login(&before.1, before.0).map(|_| ())
                                }
                                _ => Ok(()),
                            }
                        })
                        .await
                        .map_err(backend)
                }

                async fn load(&self, id: &Id) -> Result<Option<Record>> {
                    let found = self
                        .ark
                        .web_sessions()
                        .load(id_bytes(id.0))
                        .await
                        .map_err(backend)?;
                    let Some((data, _)) = found else {
                        return Ok(None);
                    };
                    match decode(id, &data) {
                        Ok(record) => Ok(Some(record)),
                        // A record that does not read (damaged, or written by a build that
                        // stored what it could not read back) is no session: the browser
                        // gets a new one, rather than an error on every request until the
                        // record expires.
                        Err(e) => {
                            tracing::warn!(
                                error = %e,
                                "a stored web session does not read; it is removed and the \
                                 browser starts a new session"
                            );
                            // Best effort: on a store that takes no writes (read-only, or
                            // refusing them) it stays, and is no session all the same.
                            if let Err(e) =
                                self.ark.web_sessions().delete(id_bytes(id.0)).await
                            {
                                tracing::warn!(
                                    error = %e,
                                    "the web session that does not read could not be removed"
                                );
                            }
                            Ok(None)
                        }
                    }
                }

                /// Ends the redkeep login the session names, if any, then deletes it.
                ///
                /// On a store opened read-only, the record stays and this is done all the
                /// same (logged): what the session layer deletes is a session it forgets
                /// (axum-login's flush of a cookie whose login ended, a logout, a new id),
                /// and an error would fail every request of that browser, public pages
                /// included, until the record expires. A record kept so signs nobody in
                /// once its login has ended (the login's hash no longer matches it).
                async fn delete(&self, id: &Id) -> Result<()> {
                    let key = id_bytes(id.0);
                    let deleted = self
                        .ark
                        .run(move |rk| {
                            // The login first: should the rest fail, the record names a
                            // login that ended, and signs nobody in.
                            if let Some((stored, _)) = rk.web_sessions().load(&key)? {
                                end_login_of(rk, &stored)?;
                            }
                            rk.web_sessions().delete(&key)
                        })
                        .await;
                    match deleted {
                        Ok(_) => Ok(()),
                        Err(e @ crate::Error::ReadOnly { .. }) => {
                            tracing::warn!(
                                error = %e,
                                "a web session could not be removed (the store is read-only); \
                                 the browser's cookie is cleared, and the record stays until \
                                 it expires"
                            );
                            Ok(())
                        }
                        Err(e) => Err(backend(e)),
                    }
                }
            }

            #[async_trait::async_trait]
            impl ExpiredDeletion for RedkeepSessionStore {
                async fn delete_expired(&self) -> Result<()> {
                    self.ark
                        .web_sessions()
                        .sweep()
                        .await
                        .map(|_| ())
                        .map_err(backend)
                }
            }
        };
    };
}

#[cfg(feature = "tower-sessions")]
session_store!(tower_sessions);
#[cfg(feature = "axum-login")]
session_store!(axum_login::tower_sessions);

#[cfg(all(test, feature = "axum-login"))]
pub(super) fn backend_message_of(e: &crate::Error) -> String {
    backend_message(e)
}
