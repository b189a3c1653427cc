//! A request: a command with the secret it read from stdin, and the one function that runs
//! it.

use serde::{Deserialize, Serialize};

use super::commands::{self, Command, Stdin};
use super::io::Io;
use super::reply::Reply;
use crate::Redkeep;
use crate::auth::token::Secret;
use crate::error::Result;

/// A parsed command with the secret it read from stdin, if any. This is what the admin
/// socket carries (the secret only over that trusted channel, never in `Debug`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// A password or token read from stdin.
    #[serde(with = "crate::auth::token::wire")]
    pub secret: Option<Secret>,
}

impl Request {
    /// A request without a secret.
    pub fn new(command: Command) -> Request {
        Request {
            command,
            secret: None,
        }
    }
}

/// Runs one request against an open handle: the one execution path of every command, local
/// or through the admin socket.
///
/// # Errors
/// The command's error, as the CLI prints it.
pub fn execute(rk: &Redkeep, req: &Request, io: Io<'_>) -> Result<Reply> {
    commands::run(rk, &req.command, Stdin(req.secret.as_ref()), io)
}
