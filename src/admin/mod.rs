//! Live administration: the command set of `redkeep` as plain data, the one function that
//! executes a command against a [`Redkeep`](crate::Redkeep) handle, and the admin socket that lets the CLI run
//! those commands inside an application that holds the store exclusively.
//!
//! A command is parsed (by the CLI, with clap when the `cli` feature is on) into a
//! [`Request`] and executed by [`execute`], locally or in the owning process through the
//! socket: one code path, identical output. Commands that stream (export, import, gallery
//! add) read from an input stream and write raw output to a sink, which the socket carries in
//! chunks, so memory stays flat either way.
//!
//! An application turns the socket on in one line; it stops when the guard is dropped:
//!
//! ```no_run
//! # fn main() -> redkeep::Result<()> {
//! let rk = redkeep::Redkeep::open("./redkeep-data", redkeep::Options::default())?;
//! let _admin = redkeep::admin::serve(&rk)?;
//! # Ok(()) }
//! ```

mod client;
pub mod commands;
mod deadline;
mod io;
mod probe;
mod protocol;
mod reply;
mod request;
mod server;

pub use client::{Connection, Remote, connect, listening_without_file, reachable};
pub use commands::Command;
pub use io::{Feedback, Io, MAX_INPUT_BYTES, Meter, Quiet};
pub use probe::probe;
pub use protocol::SOCKET_FILE;
pub use reply::{Human, Reply};
pub use request::{Request, execute};
pub use server::{AdminServer, MAX_CONNECTIONS, MAX_WAITING, serve};
