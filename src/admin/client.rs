//! The CLI's side of the admin socket: connect to the owner of a data dir, send a request and
//! its input, copy the raw output as it arrives, and return the answer.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::commands::Command;
use super::protocol::{
    ANSWER, END, Frame, INPUT, MAX_ANSWER_BYTES, MAX_CHUNK_BYTES, OUTPUT, PROTOCOL_VERSION,
    REQUEST, WireReply, WireRequest, read_frame, socket_address, write_frame, write_json,
};
use super::reply::Reply;
use super::request::Request;
use crate::error::{Error, Result};

/// What the client got from the owner.
#[derive(Debug)]
pub enum Remote {
    /// The command ran; here is its reply.
    Reply(Reply),
    /// The command failed in the owner; print this line and exit with this code.
    Failed(String, u8),
}

/// A connection to the owner listening in a data dir.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    path: PathBuf,
    patience: Patience,
}

/// What a client does while the owner has not begun to answer (a stopped or hung process
/// accepts connections and reads nothing).
#[derive(Debug, Clone, Copy)]
enum Patience {
    /// Waits as long as a command may take.
    Wait,
    /// Waits at most this long, saying on stderr after a few seconds that no answer came
    /// yet.
    WaitAndSay(Duration),
    /// Gives up after this long: the caller reports the owner as not answering.
    GiveUpAfter(Duration),
}

/// How long a client waits for the first sign of an answer before saying that it waits.
const NOTICE_AFTER: Duration = Duration::from_secs(5);

/// How long a client that says when the owner is slow waits for the first sign of an answer
/// unless told otherwise ([`Connection::say_when_slow_for`]): the socket's read timeout.
const ANSWER_PATIENCE: Duration = Duration::from_secs(3600);

/// Connects to the owner listening in `dir`; `None` when nobody answers there.
pub fn connect(dir: &Path) -> Option<Connection> {
    let (address, _handle) = socket_address(dir).ok()?;
    let stream = UnixStream::connect(&address).ok()?;
    Some(Connection {
        stream,
        path: dir.join(super::protocol::SOCKET_FILE),
        patience: Patience::Wait,
    })
}

/// Whether something arrives on `stream` within `d` (nothing is read).
fn readable_within(stream: &UnixStream, d: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    };
    let mut fds = [PollFd::new(stream, PollFlags::IN)];
    loop {
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            // Whatever went wrong shows again on the read that follows.
            Err(_) => return true,
        }
    }
}

/// Whether something answers on the socket in `dir`.
pub fn reachable(dir: &Path) -> bool {
    connect(dir).is_some()
}

/// Whether a process listens on the admin socket of `dir` though its file is gone (removed
/// by a temp-file cleaner or by hand): Linux still lists the socket in `/proc/net/unix`
/// under the path it was bound to, and nothing can connect to it. `false` when it cannot
/// tell (no `/proc`, or a socket bound through a short alias of a long data dir path).
pub fn listening_without_file(dir: &Path) -> bool {
    let path = dir.join(super::protocol::SOCKET_FILE);
    if std::fs::symlink_metadata(&path).is_ok() {
        return false;
    }
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    // An application binds its data dir's absolute path (see `Redkeep::open`).
    let bound = std::path::absolute(&path).unwrap_or(path);
    // `Num RefCount Protocol Flags Type St Inode Path`; a listening socket's flags hold
    // `__SO_ACCEPTCON` (0x10000).
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & 0x10000 != 0)
            && Path::new(&fields[7..].join(" ")) == bound
    })
}

impl Connection {
    /// Gives up on an owner that has not begun to answer after `d` ([`Connection::send`]
    /// then fails with `Busy`).
    #[must_use]
    pub fn give_up_after(mut self, d: Duration) -> Connection {
        self.patience = Patience::GiveUpAfter(d);
        self
    }

    /// The path of the socket connected to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The process that listens on the socket (the store's owner), as the kernel names it
    /// (`SO_PEERCRED`); `None` when it cannot tell.
    pub fn owner_pid(&self) -> Option<u32> {
        let cred = rustix::net::sockopt::socket_peercred(&self.stream).ok()?;
        u32::try_from(cred.pid.as_raw_nonzero().get()).ok()
    }

    /// Says on stderr when the owner has not begun to answer after a few seconds (it may be
    /// busy with a long command, or stopped), then goes on waiting: for a terminal.
    #[must_use]
    pub fn say_when_slow(self) -> Connection {
        self.say_when_slow_for(ANSWER_PATIENCE)
    }

    /// As [`Connection::say_when_slow`], giving up after `limit` without the first sign of an
    /// answer ([`Connection::send`] then fails with `Busy`, and the connection closes: a
    /// command the owner has not begun is dropped).
    #[must_use]
    pub fn say_when_slow_for(mut self, limit: Duration) -> Connection {
        self.patience = Patience::WaitAndSay(limit.min(ANSWER_PATIENCE));
        self
    }

    /// Sends `req` with the command's `input` (if any) and waits for the owner's answer,
    /// copying the command's raw output to `output` as it arrives.
    ///
    /// # Errors
    /// `Io` when the owner dies before answering; `InvalidInput` for a malformed answer.
    pub fn send(
        self,
        req: &Request,
        input: Option<&mut dyn Read>,
        output: &mut dyn Write,
    ) -> Result<Remote> {
        let Connection {
            mut stream,
            path,
            patience,
        } = self;
        refuse_untrusted_listener(&stream, &path)?;
        stream
            .set_write_timeout(Some(Duration::from_secs(600)))
            .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(3600))))
            .map_err(|e| Error::io("configuring the admin socket", e))?;
        // Said while the input is still being sent too: an owner that is stopped reads none
        // of it, and sending waits.
        let notice = matches!(patience, Patience::WaitAndSay(_)).then(|| {
            let (answered, waiting) = std::sync::mpsc::channel::<()>();
            let path = path.clone();
            let notice = std::thread::spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    waiting.recv_timeout(NOTICE_AFTER)
                {
                    // A stderr whose reader went away loses the notice, nothing more.
                    let _ = writeln!(
                        std::io::stderr(),
                        "no answer yet after {}s from the application holding the store \
                         (through {}); it may be busy with a long command, running as many \
                         admin commands as it takes at once (this one then waits for its turn), \
                         or stopped or hung; waiting (Ctrl-C stops waiting: a command the application has \
                         not begun is then dropped, a backup or export it has begun stops, \
                         another command it has begun goes on; see what it did with \
                         `redkeep` before running it again)",
                        NOTICE_AFTER.as_secs(),
                        path.display()
                    );
                }
            });
            (answered, notice)
        });
        // An owner that refuses may answer before reading everything, and one that dies
        // makes sending fail: either way, what it said (or that it went away) is read next.
        if let Err(e) = send_request(&mut stream, req, input) {
            tracing::debug!(socket = %path.display(), error = %e, "sending to the owner failed");
        }
        match patience {
            Patience::Wait => {}
            Patience::WaitAndSay(limit) => {
                // The first sign of an answer ends the notice's wait (an answer before it
                // says nothing); an hour without one is the read timeout's hour.
                let answering = readable_within(&stream, limit);
                if let Some((answered, notice)) = notice {
                    drop(answered);
                    let _ = notice.join();
                }
                if !answering && limit >= ANSWER_PATIENCE {
                    return Err(no_answer(std::io::ErrorKind::TimedOut.into(), &req.command));
                }
                if !answering {
                    return Err(Error::Busy {
                        what: format!(
                            "the application holding the store did not begin to answer within \
                             {}s (through {}; --admin-timeout): it may be stopped or hung \
                             (`redkeep status` says whether its socket answers), or busy with a \
                             long command or with as many admin commands as it takes at once \
                             (this one waited for its turn); a command it had not begun is dropped, a backup or \
                             export it had begun stops, another command it had begun goes on \
                             there: see what it did with `redkeep` before running it again",
                            limit.as_secs(),
                            path.display()
                        ),
                    });
                }
            }
            Patience::GiveUpAfter(d) => {
                if !readable_within(&stream, d) {
                    return Err(Error::Busy {
                        what: format!(
                            "the application holding the store did not answer within {}s \
                             (through {})",
                            d.as_secs(),
                            path.display()
                        ),
                    });
                }
            }
        }
        read_answer(&mut stream, output, &req.command)
    }
}

/// Refuses the process listening on the socket `path` unless it runs as this user (the
/// euid), root, or the owner of the data dir that holds the socket: whoever else listens
/// there (a socket planted by someone who may write the data dir) would get the request,
/// and with it the passwords, keys and tokens a command sends. Mirrors the server, which
/// serves only its own uid and root. Nothing has been sent when it refuses.
///
/// # Errors
/// `Denied` naming the uid found, or saying its credentials cannot be read.
fn refuse_untrusted_listener(stream: &UnixStream, path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir_owner = std::fs::metadata(dir).ok().map(|m| m.uid());
    let uid = match rustix::net::sockopt::socket_peercred(stream) {
        Ok(cred) => cred.uid.as_raw(),
        Err(e) => {
            return Err(Error::denied(format!(
                "cannot tell who listens on the admin socket {} (its credentials: {e}), so \
                 nothing was sent to it; run the command again, or stop the application and \
                 run it on the store directly",
                path.display()
            )));
        }
    };
    if uid == me || uid == 0 || Some(uid) == dir_owner {
        return Ok(());
    }
    let owner = dir_owner.map_or_else(|| "unknown".to_string(), |o| o.to_string());
    Err(Error::denied(format!(
        "the admin socket {} is served by a process of uid {uid}, which is neither this user \
         (uid {me}), root, nor the data dir's owner (uid {owner}); nothing was sent to it: \
         someone who may write the data dir may have put it there, so find out who (`ss -xp`), \
         stop that process, remove the socket file and make the data dir private (`chmod 700 \
         {}`)",
        path.display(),
        dir.display()
    )))
}

fn send_request(
    stream: &mut UnixStream,
    req: &Request,
    input: Option<&mut dyn Read>,
) -> std::io::Result<()> {
    write_json(
        stream,
        REQUEST,
        &WireRequest {
            version: PROTOCOL_VERSION,
            release: Some(env!("CARGO_PKG_VERSION").to_owned()),
            request: req.clone(),
        },
    )?;
    if let Some(input) = input {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            write_frame(stream, INPUT, &buf[..n])?;
        }
    }
    write_frame(stream, END, &[])?;
    stream.flush()
}

/// Why no answer came: the owner went away, or kept silent past the client's read timeout
/// (an hour), while the command may still run there. Either way the command may have been
/// carried out: the message says how to find out, rather than the raw error of the read.
fn no_answer(e: std::io::Error, command: &Command) -> Error {
    let what = if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ) {
        "the application holding the store has not answered for an hour; the command may \
         still be running there, and its result will not be shown here"
    } else {
        "the application holding the store closed the connection before answering (it \
         stopped or was killed while it had the command)"
    };
    Error::io(
        what,
        std::io::Error::new(e.kind(), after_no_answer(command)),
    )
}

/// What an operator does about a command whose answer was lost.
fn after_no_answer(command: &Command) -> String {
    let name = command.name();
    match command {
        Command::Backup { path } => format!(
            "the backup may have been written, whole or not: look at {} (and `.rk-tmp-*` \
             beside it) before running `redkeep backup` again",
            path.display()
        ),
        _ if command.only_reads() => {
            format!("`{name}` only reads the store: run it again once the application answers")
        }
        _ => format!(
            "the `{name}` command may have been carried out, or not (each command is one \
             transaction): see what it did with `redkeep` (`user show`, `invite list`, \
             `apikey list`, …) before running it again; a secret it made (a password, key or \
             code) was never shown here, so replace or revoke it"
        ),
    }
}

fn read_answer(
    stream: &mut UnixStream,
    output: &mut dyn Write,
    command: &Command,
) -> Result<Remote> {
    let died = |e| no_answer(e, command);
    loop {
        let cap = MAX_ANSWER_BYTES.max(MAX_CHUNK_BYTES);
        match read_frame(stream, cap).map_err(died)? {
            Frame::Body(OUTPUT, chunk) => output
                .write_all(&chunk)
                .map_err(|e| Error::io("writing the command's output", e))?,
            Frame::Body(ANSWER, body) => {
                // It may carry a secret made for this command: wiped once read.
                let body = zeroize::Zeroizing::new(body);
                let reply: WireReply = crate::workspace::parse_wrapped(&body).map_err(|e| {
                    Error::invalid(
                        "reply",
                        format!(
                            "malformed answer from the owner: {e} (the application may run \
                             another release of redkeep than this CLI, {}: use the redkeep CLI \
                             of the application's release)",
                            env!("CARGO_PKG_VERSION")
                        ),
                    )
                })?;
                if reply.version != PROTOCOL_VERSION {
                    // (The application's release is not in its answer: only its version.)
                    return Err(Error::invalid(
                        "reply",
                        format!(
                            "the application answers in admin protocol version {} and this \
                             CLI speaks version {PROTOCOL_VERSION}, so the command was not \
                             run; {}",
                            reply.version,
                            super::protocol::upgrade_advice(
                                PROTOCOL_VERSION,
                                Some(env!("CARGO_PKG_VERSION")),
                                reply.version,
                                None
                            )
                        ),
                    ));
                }
                output
                    .flush()
                    .map_err(|e| Error::io("writing the command's output", e))?;
                return Ok(match reply.result {
                    Ok(r) => Remote::Reply(r),
                    Err(e) => Remote::Failed(e.message, e.exit_code),
                });
            }
            Frame::Body(kind, _) | Frame::TooLarge(kind, _) => {
                return Err(Error::invalid(
                    "reply",
                    format!("unexpected frame {:?} from the owner", kind as char),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error as IoError, ErrorKind};

    /// A command that outlasts the client's read timeout is not reported as the owner gone
    /// away: it may still be running there, and its result is lost to this client.
    #[test]
    fn a_silent_owner_is_not_taken_for_one_that_went_away() {
        let stats = super::Command::Stats;
        let timed_out = super::no_answer(IoError::from(ErrorKind::WouldBlock), &stats).to_string();
        assert!(
            timed_out.contains("has not answered for an hour"),
            "{timed_out}"
        );
        assert!(!timed_out.contains("closed the connection"), "{timed_out}");
        let gone = super::no_answer(IoError::from(ErrorKind::UnexpectedEof), &stats).to_string();
        assert!(
            gone.contains("closed the connection before answering"),
            "{gone}"
        );
    }

    /// An application of an older build answers a CLI of this one in its own version (it
    /// refused the request): the CLI says the command did not run and that the application
    /// is the side to upgrade (it said "use the redkeep CLI of the application's release",
    /// the same release as its own).
    #[test]
    fn an_older_application_is_named_as_the_side_to_upgrade() {
        use crate::admin::protocol::{ANSWER, PROTOCOL_VERSION, write_frame};
        let answer = |version: u32| {
            let (mut owner, mut client) = std::os::unix::net::UnixStream::pair().unwrap();
            let body = format!(
                r#"{{"version":{version},"result":{{"Err":{{"message":"refused","exit_code":1}}}}}}"#
            );
            write_frame(&mut owner, ANSWER, body.as_bytes()).unwrap();
            match super::read_answer(&mut client, &mut Vec::new(), &super::Command::Stats) {
                Err(e) => e.to_string(),
                Ok(_) => String::from("answered"),
            }
        };
        let older = answer(PROTOCOL_VERSION - 1);
        assert!(
            older.contains("so the command was not run")
                && older.contains("the application is older than this CLI (redkeep ")
                && older.contains("upgrade the application to this CLI's build"),
            "{older}"
        );
        let newer = answer(PROTOCOL_VERSION + 1);
        assert!(
            newer.contains("this CLI (redkeep ")
                && newer.contains("is older than the application: upgrade the CLI"),
            "{newer}"
        );
    }

    /// An owner that stopped or was killed with the command in hand may have carried it out:
    /// the message says so and how to find out, not the read's raw `failed to fill whole
    /// buffer` after "its store is consistent" (which read as "nothing happened").
    #[test]
    fn a_lost_answer_says_the_command_may_have_been_carried_out() {
        let eof = || IoError::new(ErrorKind::UnexpectedEof, "failed to fill whole buffer");
        let backup = super::Command::Backup {
            path: "/tmp/b.tar".into(),
        };
        let text = crate::Error::full_message(&super::no_answer(eof(), &backup));
        assert!(
            text.contains("the backup may have been written") && text.contains("/tmp/b.tar"),
            "{text}"
        );
        assert!(!text.contains("failed to fill"), "{text}");
        let stats = crate::Error::full_message(&super::no_answer(eof(), &super::Command::Stats));
        assert!(
            stats.contains("only reads the store: run it again"),
            "{stats}"
        );
    }
}
