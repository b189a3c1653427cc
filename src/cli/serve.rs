//! Live administration: the process that holds the store exclusively listens on
//! `<data>/redkeep.sock` (0600, in the 0700 data dir) and runs CLI requests with the very same
//! [`execute`](super::execute) function the CLI uses locally.
//!
//! Wire format, both ways: a 4-byte big-endian length, then a JSON document
//! `{"version": 1, …}`. Only peers with the owner's uid (or root) are served, checked with
//! `SO_PEERCRED`. Requests are capped in size and in the time to send them; each connection
//! has its own thread, at most [`MAX_CONNECTIONS`] at once, so a slow client cannot hold up
//! the application or other clients.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Reply, Request};
use crate::error::{Error, Result};

/// The socket's file name in the data dir.
pub const SOCKET_FILE: &str = "redkeep.sock";
/// The protocol version; a peer speaking another is refused.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest request accepted, in bytes.
pub const MAX_REQUEST_BYTES: u32 = 64 * 1024 * 1024;
/// Largest reply accepted by the client, in bytes.
pub const MAX_REPLY_BYTES: u32 = 1024 * 1024 * 1024;
/// Connections served at once; more are refused until one ends.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Busy refusals being answered at once, beyond [`MAX_CONNECTIONS`].
const MAX_REFUSALS: usize = 8;

#[derive(Serialize, Deserialize)]
struct WireRequest {
    version: u32,
    request: Request,
}

/// What the owner answers.
#[derive(Debug, Serialize, Deserialize)]
struct WireReply {
    version: u32,
    result: std::result::Result<Reply, WireError>,
}

/// An error as the owner rendered it, so the client prints exactly the same line.
#[derive(Debug, Serialize, Deserialize)]
struct WireError {
    message: String,
    exit_code: u8,
}

fn write_frame(stream: &mut UnixStream, value: &impl Serialize) -> std::io::Result<()> {
    let body = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(|_| std::io::Error::other("message too large"))?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}

enum Frame {
    Body(Vec<u8>),
    TooLarge(u32),
}

fn read_frame(stream: &mut UnixStream, cap: u32) -> std::io::Result<Frame> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > cap {
        return Ok(Frame::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body)?;
    Ok(Frame::Body(body))
}

/// The uid of the process at the other end of `stream`.
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes passed, and the fd is open
    // for the duration of the call because `stream` is borrowed.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(cred.uid)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A running admin socket; stops and removes its file when dropped.
#[derive(Debug)]
pub struct AdminSocket {
    path: PathBuf,
    inode: u64,
    stop: Arc<AtomicBool>,
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread ends, then remove the file if it is still ours.
        let _ = UnixStream::connect(&self.path);
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Starts serving on `<dir>/redkeep.sock` for the handle behind `rk`. A socket file left by a
/// crashed owner is replaced, but only after checking that nobody answers on it.
///
/// # Errors
/// `InUse` when another process answers on the socket; `Io` when it cannot be created.
pub(crate) fn start(dir: &Path, rk: Weak<crate::handle::Shared>) -> Result<AdminSocket> {
    let path = dir.join(SOCKET_FILE);
    if std::fs::symlink_metadata(&path).is_ok() {
        if UnixStream::connect(&path).is_ok() {
            return Err(Error::InUse {
                path: path.clone(),
                holder: "another process answers on the admin socket".into(),
            });
        }
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("removing stale {}", path.display()), e))?;
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("securing {}", path.display()), e))?;
    let inode = std::fs::metadata(&path).map(|m| m.ino()).unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("redkeep-admin".into())
        .spawn(move || accept_loop(listener, rk, flag))
        .map_err(|e| Error::io("starting the admin socket thread", e))?;
    Ok(AdminSocket { path, inode, stop })
}

fn accept_loop(listener: UnixListener, rk: Weak<crate::handle::Shared>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    let refusing = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            // Refusing still reads the request (in a thread of its own, so a slow client
            // cannot stall this loop); past a second allowance the connection is just closed.
            if refusing.load(Ordering::SeqCst) < MAX_REFUSALS {
                refusing.fetch_add(1, Ordering::SeqCst);
                let counter = refusing.clone();
                let spawned = std::thread::Builder::new()
                    .name("redkeep-admin-busy".into())
                    .spawn(move || {
                        refuse(
                            &mut stream,
                            "the owner is busy with other admin requests; try again",
                        );
                        counter.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    refusing.fetch_sub(1, Ordering::SeqCst);
                }
            }
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (rk, counter) = (rk.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("redkeep-admin-conn".into())
            .spawn(move || {
                serve(&mut stream, &rk);
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            // The closure, and its count, were dropped with the failed spawn.
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn write_error(stream: &mut UnixStream, message: &str) -> std::io::Result<()> {
    write_frame(
        stream,
        &WireReply {
            version: PROTOCOL_VERSION,
            result: Err(WireError {
                message: message.to_string(),
                exit_code: 1,
            }),
        },
    )
}

/// Answers `message` as an error after reading the peer's request, so the peer is never cut
/// off while still writing (it would see `Broken pipe` instead of the answer). Unix sockets
/// reset the peer when closed with unread data, so the request is drained first, within the
/// size cap and the request timeout.
fn refuse(stream: &mut UnixStream, message: &str) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).is_ok() {
        let len = u64::from(u32::from_be_bytes(len).min(MAX_REQUEST_BYTES));
        let _ = std::io::copy(&mut Read::by_ref(stream).take(len), &mut std::io::sink());
    }
    let _ = write_error(stream, message);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn serve(stream: &mut UnixStream, rk: &Weak<crate::handle::Shared>) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    match peer_uid(stream) {
        Ok(uid) if uid == own_uid() || uid == 0 => {}
        Ok(uid) => {
            refuse(
                stream,
                &format!("refused: peer uid {uid} is not the store owner's uid"),
            );
            return;
        }
        Err(e) => {
            refuse(
                stream,
                &format!("refused: cannot read the peer's credentials ({e})"),
            );
            return;
        }
    }
    let body = match read_frame(stream, MAX_REQUEST_BYTES) {
        Ok(Frame::Body(b)) => b,
        Ok(Frame::TooLarge(n)) => {
            let _ = write_error(
                stream,
                &format!("request of {n} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit"),
            );
            return;
        }
        Err(_) => return, // the client went away or was too slow
    };
    let request: WireRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let _ = write_error(stream, &format!("malformed request: {e}"));
            return;
        }
    };
    if request.version != PROTOCOL_VERSION {
        let _ = write_error(
            stream,
            &format!(
                "protocol version {} is not {PROTOCOL_VERSION}; use the redkeep CLI of the same version as the application",
                request.version
            ),
        );
        return;
    }
    let Some(shared) = rk.upgrade() else {
        let _ = write_error(stream, "the store is closing");
        return;
    };
    let handle = crate::Redkeep::from_shared(shared);
    let mut req = request.request;
    req.progress = false;
    let result = super::execute(&handle, &req).map_err(|e| WireError {
        message: super::error_chain(&e),
        exit_code: 1,
    });
    // Replies can be large (exports): give the client time to read them.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(600)));
    let _ = write_frame(
        stream,
        &WireReply {
            version: PROTOCOL_VERSION,
            result,
        },
    );
}

/// What the client got from the owner.
pub enum Remote {
    /// The command ran; here is its reply.
    Reply(Reply),
    /// The command failed in the owner; print this line and exit with this code.
    Failed(String, u8),
}

/// A connection to the owner listening in a data dir.
pub struct Connection {
    stream: UnixStream,
    path: PathBuf,
}

/// Connects to the owner listening in `dir`; `None` when nobody answers there.
pub fn connect(dir: &Path) -> Option<Connection> {
    let path = dir.join(SOCKET_FILE);
    let stream = UnixStream::connect(&path).ok()?;
    Some(Connection { stream, path })
}

/// Whether something answers on the socket in `dir`.
pub fn reachable(dir: &Path) -> bool {
    connect(dir).is_some()
}

impl Connection {
    /// Sends `req` and waits for the owner's answer.
    ///
    /// # Errors
    /// `Io` when the owner dies before answering; `InvalidInput` for a malformed answer.
    pub fn send(self, req: &Request) -> Result<Remote> {
        let Connection { mut stream, path } = self;
        send_on(&mut stream, &path, req)
    }
}

fn send_on(stream: &mut UnixStream, path: &Path, req: &Request) -> Result<Remote> {
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(3600))))
        .map_err(|e| Error::io("configuring the admin socket", e))?;
    let sent = write_frame(
        stream,
        &WireRequest {
            version: PROTOCOL_VERSION,
            request: req.clone(),
        },
    );
    let died = |e: std::io::Error| {
        Error::io(
            "the application holding the store closed the connection before answering; its store is consistent (each command is one transaction)",
            e,
        )
    };
    // An owner that refuses (busy, too large) may answer before reading everything: its
    // answer is still there to read even when sending failed.
    let frame = match (sent, read_frame(stream, MAX_REPLY_BYTES)) {
        (_, Ok(frame)) => frame,
        (Err(e), Err(_)) => {
            return Err(Error::io(
                format!("sending the command to {}", path.display()),
                e,
            ));
        }
        (Ok(()), Err(e)) => return Err(died(e)),
    };
    let body = match frame {
        Frame::Body(b) => b,
        Frame::TooLarge(n) => {
            return Err(Error::invalid(
                "reply",
                format!("{n} bytes is more than this client accepts"),
            ));
        }
    };
    let reply: WireReply = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid("reply", format!("malformed answer from the owner: {e}")))?;
    Ok(match reply.result {
        Ok(r) => Remote::Reply(r),
        Err(e) => Remote::Failed(e.message, e.exit_code),
    })
}
