//! The session row the bare redb versions keep, one definition for the benchmark and the
//! profiling example (included with `#[path]`): the fields of redkeep's `Session` except the
//! hash, which is the key.
#![allow(dead_code)]

/// A session as bare redb keeps it: the fields of redkeep's `Session` except the hash (the
/// key).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SessionRow {
    pub short_id: String,
    pub user_id: u64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub idle_timeout_secs: u64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl SessionRow {
    /// A session of `user_id` last seen at `seen`, its display prefix drawn from `n`.
    pub fn new(n: u64, user_id: u64, seen: i64, expires_at: i64) -> SessionRow {
        SessionRow {
            short_id: short_id(n),
            user_id,
            created_at: seen,
            last_seen_at: seen,
            expires_at,
            idle_timeout_secs: IDLE_SECS as u64,
            ip: None,
            user_agent: None,
        }
    }

    /// As `Session::deadline`: the earlier of the expiry and the idle deadline.
    pub fn deadline(&self) -> i64 {
        self.expires_at.min(
            self.last_seen_at
                .saturating_add(i64::try_from(self.idle_timeout_secs).unwrap_or(i64::MAX)),
        )
    }
}

/// The idle timeout of the bare systems' sessions.
pub const IDLE_SECS: i64 = 86_400;

/// A display prefix shaped like redkeep's (`rks_` and eight characters).
pub fn short_id(n: u64) -> String {
    format!("rks_{:08x}", n & 0xffff_ffff)
}
