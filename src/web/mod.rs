//! redkeep in a web server: a JSON error type and bearer-token extractors for axum (feature
//! `axum`), an axum-login backend on redkeep's users and roles (feature `axum-login`), and a
//! tower-sessions session store on a redkeep table (feature `tower-sessions`; `axum-login`
//! brings the one for the tower-sessions version axum-login uses). Everything runs through
//! [`AsyncRedkeep`](crate::AsyncRedkeep), so hashing and commits stay off the async threads.
//!
//! Cookies that carry a session should be `HttpOnly`, `Secure` and `SameSite=Strict` (or
//! `Lax` when other sites link into signed-in pages); a state-changing request authenticated
//! by a cookie must also prove it comes from the application's own pages (a same-site cookie
//! plus a check of `Origin`, or a CSRF token), while `Authorization: Bearer` tokens are not
//! sent by browsers on their own and need no such check.

#[cfg(feature = "axum")]
mod bearer;
#[cfg(feature = "axum")]
mod error;
#[cfg(feature = "axum-login")]
mod login;
#[cfg(any(feature = "tower-sessions", feature = "axum-login"))]
mod session_store;

#[cfg(feature = "axum")]
pub use bearer::{Caller, Principal, bearer_token};
#[cfg(feature = "axum")]
pub use error::WebError;
#[cfg(feature = "axum-login")]
pub use login::{Backend, Credentials, LoginId, WebUser};
#[cfg(any(feature = "tower-sessions", feature = "axum-login"))]
pub use session_store::RedkeepSessionStore;
