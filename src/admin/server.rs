//! The owner's side of the admin socket: a thread accepting connections on
//! `<data>/redkeep.sock` (0600, in the 0700 data dir) and running each request with the very
//! same [`execute`](super::execute) function the CLI uses locally.
//!
//! Only peers with the owner's uid (or root) are served, checked with `SO_PEERCRED`.
//! Requests are capped in size and in the time to send them, counted from the moment a
//! connection is taken up; each connection has its own thread, at most [`MAX_CONNECTIONS`] at
//! once, so a slow client cannot hold up the application or other clients. Connections past
//! them wait for a thread, in the order they came, up to [`MAX_WAITING`] (a script running
//! commands in parallel has them run in turn instead of refused). A refusal reads the request first, so
//! the peer always gets the owner's message; a request that panics is answered with an error
//! and frees its slot. Stopping the server cuts every connection's input and waits for its
//! thread, which holds the store open: a command running goes on to its end and answers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::deadline::{Peer, Until};
use super::io::{Io, Quiet};
use super::protocol::SOCKET_FILE;
use super::protocol::{
    ANSWER, ChunkReader, ChunkWriter, Frame, MAX_CHUNK_BYTES, MAX_REQUEST_BYTES, PROTOCOL_VERSION,
    REQUEST, WireError, WireReply, WireRequest, drain, read_frame, socket_address, write_json,
};
use crate::Redkeep;
use crate::error::{Error, Result};

/// Admin connections served at once; more wait for one of them to end ([`MAX_WAITING`]).
pub const MAX_CONNECTIONS: usize = 32;
/// Admin connections waiting for one of the [`MAX_CONNECTIONS`] to end; more are refused as
/// busy. Each holds a file descriptor of the application and no thread.
pub const MAX_WAITING: usize = 256;
/// Time a client has to send its request, from its connection on; and, after a command, to
/// send the rest of the input the command did not read.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most input read and dropped after a command that did not read all of it, or with a
/// refused request, frame headers included.
const DRAIN_BUDGET: u64 = 64 * 1024 * 1024;
/// The pause after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// Busy refusals being answered at once, beyond [`MAX_CONNECTIONS`] and [`MAX_WAITING`].
const MAX_REFUSALS: usize = 8;
/// How long stopping the server waits for its connection threads: a command that was running
/// goes on to its end (a long `check`, a backup), which may take a while.
const STOP_PATIENCE: Duration = Duration::from_secs(60);

/// A running admin socket; stops, and removes its file, when dropped. Dropping it waits for
/// the commands under way to end (a minute at most): in async code, drop it on the blocking
/// pool (`tokio::task::spawn_blocking(move || drop(server))`), as the example server does.
///
/// Unused, it is a warning: `serve(&rk)?;` alone, or `let _ = serve(&rk)?;`, would stop the
/// socket at once.
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn main() -> redkeep::Result<()> {
///     let dir = tempfile::tempdir().unwrap();
///     let rk = redkeep::Redkeep::open(dir.path(), redkeep::Options::default())?;
///     redkeep::admin::serve(&rk)?; // dropped at once: the socket stops
///     Ok(())
/// }
/// ```
#[derive(Debug)]
#[must_use = "the admin socket stops when this guard is dropped; keep it in a binding such as `let _admin = …`"]
pub struct AdminServer {
    path: PathBuf,
    dir: PathBuf,
    inode: u64,
    stop: Arc<AtomicBool>,
    // The accept loop's listening socket, shut down to wake it when no connection can.
    waker: Option<UnixListener>,
    thread: Option<JoinHandle<()>>,
    // The connection threads, ended when the server stops.
    served: Arc<Threads>,
    refused: Arc<Threads>,
}

impl AdminServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many admin connections wait for their turn: [`MAX_CONNECTIONS`] are served at
    /// once, and the others wait for one of them to end.
    pub fn waiting(&self) -> usize {
        self.served.lock().waiting.len()
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread ends, then remove the file if it is still ours.
        // Shutting the listening socket down makes a waiting accept fail at once (Linux),
        // even where nothing can connect: the file removed, the data dir moved, a relative
        // path after a change of directory. The connection is the way elsewhere.
        if let Some(listener) = self.waker.take() {
            let _ = rustix::net::shutdown(&listener, rustix::net::Shutdown::Read);
        }
        if let Ok((address, _dir)) = socket_address(&self.dir) {
            let _ = UnixStream::connect(&address);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Commands waiting for their turn are not begun now: their clients are told so.
        for mut stream in self.served.close() {
            refuse_at_once(
                &mut stream,
                "the application stopped its admin socket before this command's turn came, so \
                 it was not run; run it again once the application is back",
            );
        }
        // No connection starts now. Those open are ended and waited for: each served one
        // holds the store, and an idle client kept it open after the application let go of
        // it and exited (the store then said it was not closed cleanly). Only their input is
        // cut: a command already running still writes its output and its answer (a password
        // it made, "wrote backup"), which its client would otherwise never see although the
        // command was carried out.
        let until = Instant::now() + STOP_PATIENCE;
        self.served.cut_off_input();
        self.refused.cut_off_input();
        let running = self.served.wait_until(until) + self.refused.wait_until(until);
        if running > 0 {
            // A client that does not read its answer no longer holds the stop up.
            self.served.cut_off();
            self.refused.cut_off();
            tracing::warn!(
                running,
                "admin connections still running after {}s; the admin socket stops without them",
                STOP_PATIENCE.as_secs()
            );
        }
        let _turn = take_turn(&self.dir);
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Starts serving live administration for `rk` on `<data-dir>/redkeep.sock` until the
/// returned guard is dropped. A socket file left by a crashed owner is replaced, but only
/// after checking that nobody answers on it. Meant for a store opened `Exclusive` (in
/// `Shared` mode the CLI opens the store itself).
///
/// # Errors
/// `InUse` when another process answers on the socket; `Io` when it cannot be created.
#[must_use = "the admin socket stops when the guard it returns is dropped; keep it in a binding such as `let _admin = …`"]
pub fn serve(rk: &Redkeep) -> Result<AdminServer> {
    let dir = rk.dir().to_path_buf();
    let path = dir.join(SOCKET_FILE);
    let (address, _dir_handle) =
        socket_address(&dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    let turn = take_turn(&dir);
    if std::fs::symlink_metadata(&path).is_ok() {
        if UnixStream::connect(&address).is_ok() {
            return Err(Error::InUse {
                path: path.clone(),
                holder: "another process answers on the admin socket".into(),
            });
        }
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("removing stale {}", path.display()), e))?;
    }
    let listener = UnixListener::bind(&address)
        .map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("securing {}", path.display()), e))?;
    let inode = std::fs::metadata(&path).map(|m| m.ino()).unwrap_or(0);
    drop(turn);
    let waker = listener.try_clone().ok();
    let stop = Arc::new(AtomicBool::new(false));
    let (served, refused) = (Arc::new(Threads::default()), Arc::new(Threads::default()));
    let (flag, handle) = (stop.clone(), rk.clone());
    let (conns, refusals) = (served.clone(), refused.clone());
    let thread = std::thread::Builder::new()
        .name("redkeep-admin".into())
        .spawn(move || accept_loop(listener, handle, flag, conns, refusals))
        .map_err(|e| Error::io("starting the admin socket thread", e))?;
    tracing::info!(socket = %path.display(), "serving live administration");
    Ok(AdminServer {
        path,
        dir,
        inode,
        stop,
        waker,
        thread: Some(thread),
        served,
        refused,
    })
}

/// Takes turns with other processes at the socket file of `dir` until dropped: checking that
/// a socket is stale and replacing it is one step, else two owners starting together after a
/// crash could each remove the other's new socket. Best effort: a file system that cannot
/// lock goes without.
fn take_turn(dir: &Path) -> Option<File> {
    let handle = File::open(dir).ok()?;
    loop {
        match rustix::fs::flock(&handle, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return Some(handle),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "admin socket set up unlocked");
                return None;
            }
        }
    }
}

/// The connection threads of one kind (served, or refused as busy), each with a clone of its
/// stream, so that stopping the server can cut them off and wait for them; and the
/// connections waiting for one of them to end.
#[derive(Debug, Default)]
struct Threads {
    running: Mutex<Running>,
    ended: Condvar,
}

#[derive(Debug, Default)]
struct Running {
    next: u64,
    streams: HashMap<u64, UnixStream>,
    // Connections waiting for a thread, oldest first; a thread that ends its connection
    // takes up the next.
    waiting: VecDeque<UnixStream>,
    // Threads that found no connection waiting and are ending: they no longer count as
    // taken, but are still waited for (they hold the store until they end).
    leaving: HashSet<u64>,
    // Set when the server stops: no waiting connection is taken up any more.
    closed: bool,
}

/// What becomes of a new connection ([`Threads::admit`]).
enum Admission {
    /// It gets a thread now (the one that waited longest, when some wait).
    Thread(UnixStream),
    /// It waits for a thread to end.
    Waits,
    /// Too many wait already: it is refused.
    Refused(UnixStream),
}

impl Threads {
    fn lock(&self) -> MutexGuard<'_, Running> {
        // Nothing panics while holding it: a poisoned lock holds a sound map all the same.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many threads run.
    fn count(&self) -> usize {
        self.lock().streams.len()
    }

    /// Takes `stream` up: a thread while fewer than `threads` run, else a place among those
    /// waiting while fewer than `waiting` wait, else back to be refused. Under one lock with
    /// [`Threads::next_waiting`], so a connection never waits with no thread left to take it.
    fn admit(&self, stream: UnixStream, threads: usize, waiting: usize) -> Admission {
        let mut running = self.lock();
        if running.streams.len() - running.leaving.len() < threads {
            // The oldest first: the new one waits behind those already waiting.
            match running.waiting.pop_front() {
                Some(oldest) => {
                    running.waiting.push_back(stream);
                    Admission::Thread(oldest)
                }
                None => Admission::Thread(stream),
            }
        } else if running.waiting.len() < waiting && !running.closed {
            running.waiting.push_back(stream);
            Admission::Waits
        } else {
            Admission::Refused(stream)
        }
    }

    /// The connection that waited longest, for the thread `id` whose connection ended; `None`
    /// when none waits or the server stops, and the thread's place is then given back under
    /// the same lock (see [`Threads::admit`]), though it is counted as running until it ends.
    fn next_waiting(&self, id: u64) -> Option<UnixStream> {
        let mut running = self.lock();
        while !running.closed {
            let Some(stream) = running.waiting.pop_front() else {
                break;
            };
            match stream.try_clone() {
                Ok(kept) => {
                    running.streams.insert(id, kept);
                    return Some(stream);
                }
                // Closed unanswered: its client says the application closed the connection.
                Err(e) => tracing::warn!(error = %e, "cannot serve an admin connection"),
            }
        }
        running.leaving.insert(id);
        None
    }

    /// Stops taking waiting connections up, and hands them back.
    fn close(&self) -> Vec<UnixStream> {
        let mut running = self.lock();
        running.closed = true;
        running.waiting.drain(..).collect()
    }

    /// Runs `f` with `stream` on a new thread, then with each waiting connection it takes up
    /// ([`Threads::next_waiting`]), counted (with a clone of its stream) until it ends, panics
    /// included. `None` when it cannot start; the connection is then closed. The handle is
    /// for tests; the server lets its threads go.
    fn spawn(
        self: &Arc<Self>,
        name: &str,
        stream: UnixStream,
        f: impl FnMut(UnixStream) + Send + 'static,
    ) -> Option<JoinHandle<()>> {
        let kept = match stream.try_clone() {
            Ok(kept) => kept,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serve an admin connection");
                return None;
            }
        };
        let id = {
            let mut running = self.lock();
            running.next += 1;
            let id = running.next;
            running.streams.insert(id, kept);
            id
        };
        let slot = Slot {
            threads: self.clone(),
            id,
        };
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Dropped in reverse order, panics included: the store handle in `f` goes
                // before the slot, so the thread holds the store no longer once it is not
                // waited for.
                let slot = slot;
                let mut f = f;
                let mut stream = stream;
                loop {
                    f(stream);
                    match slot.threads.next_waiting(slot.id) {
                        Some(next) => stream = next,
                        None => break,
                    }
                }
            });
        match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                // The closure, and its slot, were dropped with the failed spawn.
                tracing::warn!(error = %e, "cannot start an admin connection thread");
                None
            }
        }
    }

    /// Shuts the reading side of every stream: a thread waiting for its client wakes at
    /// once, and one running a command finds the input at its end but can still answer.
    fn cut_off_input(&self) {
        self.shutdown(std::net::Shutdown::Read);
    }

    /// Shuts every stream both ways: a thread writing to a client that does not read fails
    /// at once instead of waiting for it.
    fn cut_off(&self) {
        self.shutdown(std::net::Shutdown::Both);
    }

    fn shutdown(&self, how: std::net::Shutdown) {
        for stream in self.lock().streams.values() {
            let _ = stream.shutdown(how);
        }
    }

    /// Waits for every thread to end, until `deadline`: how many still run then.
    fn wait_until(&self, deadline: Instant) -> usize {
        let mut running = self.lock();
        while !running.streams.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            running = self
                .ended
                .wait_timeout(running, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        running.streams.len()
    }
}

// Gives a thread's place back when dropped, panics included. The thread's closure, and the
// store handle in it, are gone by then.
struct Slot {
    threads: Arc<Threads>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let kept = {
            let mut running = self.threads.lock();
            running.leaving.remove(&self.id);
            running.streams.remove(&self.id)
        };
        drop(kept);
        self.threads.ended.notify_all();
    }
}

fn accept_loop(
    listener: UnixListener,
    rk: Redkeep,
    stop: Arc<AtomicBool>,
    served: Arc<Threads>,
    refused: Arc<Threads>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                // A failure that lasts (no file descriptors left) would fail every accept at
                // once: a pause keeps the loop from spinning and flooding the log.
                tracing::warn!(error = %e, "admin socket accept failed");
                std::thread::sleep(ACCEPT_PAUSE);
                continue;
            }
        };
        let accepted = Instant::now();
        let stream = match served.admit(stream, MAX_CONNECTIONS, MAX_WAITING) {
            Admission::Thread(stream) => stream,
            Admission::Waits => continue,
            Admission::Refused(stream) => {
                tracing::warn!("admin request refused: too many at once");
                let busy = format!(
                    "the application is running {MAX_CONNECTIONS} admin commands and {MAX_WAITING} \
                     more wait for their turn, so this one was not run; run it again later"
                );
                if refused.count() < MAX_REFUSALS {
                    let _ = refused.spawn("redkeep-admin-busy", stream, move |mut stream| {
                        refuse(&mut stream, accepted + REQUEST_TIMEOUT, &busy);
                    });
                } else {
                    refuse_at_once(&mut { stream }, &busy);
                }
                continue;
            }
        };
        let rk = rk.clone();
        // The time to send a request counts from the moment its connection is taken up: a
        // connection that waited has had its request read by nobody.
        let mut accepted = Some(accepted);
        let _ = served.spawn("redkeep-admin-conn", stream, move |mut stream| {
            serve_one(
                &mut stream,
                &rk,
                accepted.take().unwrap_or_else(Instant::now),
            );
        });
    }
}

/// Answers `message` as an error with no thread to read the request: the answer goes out at
/// once, without waiting (it fits in the socket's buffer), so the client is told why rather
/// than that the application closed the connection before answering.
fn refuse_at_once(stream: &mut UnixStream, message: &str) {
    if stream.set_nonblocking(true).is_ok() {
        answer(stream, Err(error(message)));
    }
}

fn answer(stream: &mut UnixStream, result: std::result::Result<super::reply::Reply, WireError>) {
    let mut reply = WireReply {
        version: PROTOCOL_VERSION,
        result,
    };
    let _ = write_json(stream, ANSWER, &reply);
    // A secret it showed is not left in the application's memory.
    if let Ok(r) = &mut reply.result {
        r.wipe_secret();
    }
}

fn error(message: impl Into<String>) -> WireError {
    WireError {
        message: message.into(),
        exit_code: 1,
    }
}

/// Answers `message` as an error after reading the rest of the peer's request and input,
/// so the peer is never cut off while still writing (Unix sockets reset a peer whose data was
/// left unread, and it would see `Broken pipe` instead of the answer). Reading is bounded by
/// the drain budget and `deadline`.
fn refuse(stream: &mut UnixStream, deadline: Instant, message: &str) {
    refuse_after(stream, deadline, 0, message);
}

/// [`refuse`] after first dropping `unread` bytes: the body of a frame whose header was read.
fn refuse_after(stream: &mut UnixStream, deadline: Instant, unread: u64, message: &str) {
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let whole = drain(&*stream, deadline, unread, DRAIN_BUDGET);
    finish(stream, Err(error(message)), whole);
}

/// Sends the answer and ends the connection. When the input was not read to its end (it went
/// on past the budget or the deadline), the reading side is shut after the answer, so the
/// client's next write fails and it reads the answer.
fn finish(
    stream: &mut UnixStream,
    result: std::result::Result<super::reply::Reply, WireError>,
    whole: bool,
) {
    answer(stream, result);
    if !whole {
        let _ = stream.shutdown(std::net::Shutdown::Read);
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Reads the request frame, in the time a client has from its connection (`accepted`) on.
fn read_request(peer: impl Peer, accepted: Instant) -> std::io::Result<Frame> {
    read_frame(
        &mut Until::new(peer, accepted + REQUEST_TIMEOUT),
        MAX_REQUEST_BYTES,
    )
}

/// What is read of a request before the rest: which protocol version and release of redkeep
/// the client speaks (a client older than the release field sends none).
#[derive(serde::Deserialize)]
struct Header {
    version: u32,
    #[serde(default)]
    release: Option<String>,
}

/// The advice for a client of another release than the application's.
fn use_the_same_release(client: Option<&str>) -> String {
    let app = env!("CARGO_PKG_VERSION");
    match client {
        Some(cli) if cli != app => format!(
            "this CLI is redkeep {cli} and the application runs redkeep {app}: use the \
             redkeep CLI of release {app}"
        ),
        _ => format!("the application runs redkeep {app}: use the redkeep CLI of release {app}"),
    }
}

/// Whether the client closed its end (it was stopped or gave up waiting): nothing waits for
/// the answer, and a command it asked for that has not begun should not.
fn client_left(stream: &UnixStream) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // `HUP`: both directions shut, as when the client closed its socket or ended. A client
    // that only shut its writing side (`RDHUP`) still waits for the answer.
    let mut fds = [PollFd::new(stream, PollFlags::empty())];
    loop {
        match poll(&mut fds, Some(&now)) {
            Ok(_) => {
                return fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR);
            }
            Err(rustix::io::Errno::INTR) => {}
            // Whatever went wrong shows when the command's output is written.
            Err(_) => return false,
        }
    }
}

/// The peer's uid and pid.
fn peer(stream: &UnixStream) -> std::io::Result<(u32, i32)> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    Ok((cred.uid.as_raw(), cred.pid.as_raw_nonzero().get()))
}

fn serve_one(stream: &mut UnixStream, rk: &Redkeep, accepted: Instant) {
    let deadline = accepted + REQUEST_TIMEOUT;
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let own = rustix::process::geteuid().as_raw();
    let (uid, pid) = match peer(stream) {
        Ok((uid, pid)) if uid == own || uid == 0 => (uid, pid),
        Ok((uid, _)) => {
            tracing::warn!(peer_uid = uid, "admin request refused: another uid");
            refuse(
                stream,
                deadline,
                &format!("refused: peer uid {uid} is not the store owner's uid"),
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "admin request refused: no peer credentials");
            refuse(
                stream,
                deadline,
                &format!("refused: cannot read the peer's credentials ({e})"),
            );
            return;
        }
    };
    // The request may carry a password or token: wiped once read.
    let body = match read_request(&*stream, accepted) {
        Ok(Frame::Body(REQUEST, b)) => zeroize::Zeroizing::new(b),
        Ok(Frame::TooLarge(_, n)) => {
            // Its body is unread: dropped as such, never read as frames.
            refuse_after(
                stream,
                deadline,
                u64::from(n),
                &format!("request of {n} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit"),
            );
            return;
        }
        Ok(Frame::Body(kind, _)) => {
            refuse(
                stream,
                deadline,
                &format!("expected a request frame, got {:?}", kind as char),
            );
            return;
        }
        Err(_) => return, // the client went away or was too slow
    };
    // The version first: a client of another release may send a request of another shape,
    // which is not "malformed" but spoken in another version.
    let header: Option<Header> = serde_json::from_slice(&body).ok();
    if let Some(header) = &header
        && header.version != PROTOCOL_VERSION
    {
        refuse(
            stream,
            deadline,
            &format!(
                "this redkeep CLI speaks admin protocol version {} and the application \
                 version {PROTOCOL_VERSION}; {}",
                header.version,
                super::protocol::upgrade_advice(
                    header.version,
                    header.release.as_deref(),
                    PROTOCOL_VERSION,
                    Some(env!("CARGO_PKG_VERSION"))
                )
            ),
        );
        return;
    }
    // A request may carry a document as deep as a document may nest.
    let request: WireRequest = match crate::workspace::parse_wrapped(&body) {
        Ok(r) => r,
        Err(e) => {
            let release = header.as_ref().and_then(|h| h.release.as_deref());
            let skew = if release == Some(env!("CARGO_PKG_VERSION")) {
                String::new()
            } else {
                format!(" ({})", use_the_same_release(release))
            };
            refuse(stream, deadline, &format!("malformed request: {e}{skew}"));
            return;
        }
    };
    drop(body);
    let req = request.request;
    if req.command.needs_store_alone() {
        tracing::warn!(
            command = req.command.name(),
            "admin request refused: it needs the store alone"
        );
        let why = if req.command.changes_schema() {
            "a migration changes the stored format, and this application would go on running its own code on it"
        } else {
            req.command.why_alone()
        };
        refuse(
            stream,
            deadline,
            &format!("{why}; stop the application, then run the command again"),
        );
        return;
    }
    // A client that left before its command began (an operator who pressed Ctrl-C while
    // the application was stopped or busy) does not have it run behind its back.
    if client_left(stream) {
        tracing::info!(
            peer_uid = uid,
            command = req.command.name(),
            "admin request dropped: the client left before it began"
        );
        return;
    }
    tracing::info!(
        peer_uid = uid,
        peer_pid = pid,
        command = req.command.name(),
        "admin request"
    );
    run_request(stream, rk, &req, uid, pid);
}

/// Runs a request read from `stream` and answers it. Long work stops at its next step
/// when the client goes away (an operator's Ctrl-C), as it would in the client's own
/// process, rather than going on unseen to its end.
fn run_request(stream: &mut UnixStream, rk: &Redkeep, req: &super::Request, uid: u32, pid: i32) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    // Replies can be large (exports): give the client time to read them.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(600)));
    // One handle to read from, one to write to, one to see whether the client left.
    let clones = (|| {
        Ok::<_, std::io::Error>((
            stream.try_clone()?,
            stream.try_clone()?,
            stream.try_clone()?,
        ))
    })();
    let (mut reader_stream, mut writer_stream, watched) = match clones {
        Ok(clones) => clones,
        Err(e) => {
            let deadline = Instant::now() + REQUEST_TIMEOUT;
            refuse(stream, deadline, &format!("cannot serve the request: {e}"));
            return;
        }
    };
    let mut input = std::io::BufReader::with_capacity(
        MAX_CHUNK_BYTES as usize,
        ChunkReader::new(&mut reader_stream),
    );
    let mut output = ChunkWriter::new(&mut writer_stream);
    // What the command records in the audit log says who asked for it, through which way.
    // (Cannot be refused: a short line of ASCII letters, digits and spaces.)
    let origin = crate::Origin::new(format!("admin socket, peer uid {uid}, pid {pid}"))
        .expect("the admin socket's origin is one short line");
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::Redkeep::with_origin(&origin, || {
            crate::fsutil::watched(
                move || client_left(&watched),
                || {
                    super::request::execute(
                        rk,
                        req,
                        Io {
                            input: &mut input,
                            output: &mut output,
                            feedback: &Quiet,
                        },
                    )
                },
            )
        })
    }));
    let result = match run {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e @ Error::Cancelled { .. })) => {
            tracing::info!(
                peer_uid = uid,
                peer_pid = pid,
                command = req.command.name(),
                "admin request abandoned: {e}"
            );
            Err(error(e.full_message()))
        }
        Ok(Err(e)) => Err(error(e.full_message())),
        Err(_) => {
            tracing::error!(command = req.command.name(), "an admin request panicked");
            Err(error(
                "internal error: the command failed unexpectedly in the application; its store is consistent (each command is one transaction); please report it",
            ))
        }
    };
    if output.flush().is_err() {
        return; // the client went away
    }
    // The rest of the input is read before the answer (a peer is never cut off while it
    // writes), up to a budget and in the time a client has to send it: past them (an
    // endless input, a client that sends a few bytes now and then), the answer goes first.
    let whole = input
        .get_mut()
        .drain(Instant::now() + REQUEST_TIMEOUT, DRAIN_BUDGET);
    drop(input);
    finish(stream, result, whole);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::deadline::Drip;

    /// Far-future expiries once made admin requests panic, and each panic kept one of the 32
    /// connection slots: after 33, every command failed. A slot is now given back however its
    /// thread ends.
    #[test]
    fn a_request_thread_that_panics_gives_its_slot_back() {
        let threads = Arc::new(Threads::default());
        let panicking: Vec<_> = (0..(MAX_CONNECTIONS + 8))
            .filter_map(|i| {
                let (stream, _client) = UnixStream::pair().unwrap();
                threads.spawn("test-conn", stream, move |_| {
                    panic!("request {i} panics (expected in this test)")
                })
            })
            .collect();
        assert_eq!(panicking.len(), MAX_CONNECTIONS + 8);
        for handle in panicking {
            assert!(handle.join().is_err(), "the thread was meant to panic");
        }
        assert_eq!(threads.count(), 0, "slots were kept");
        let (stream, _client) = UnixStream::pair().unwrap();
        let fine = threads.spawn("test-conn", stream, |_| ()).unwrap();
        fine.join().unwrap();
        assert_eq!(threads.count(), 0);
    }

    /// A thread waiting for an idle client ends when the threads are cut off, so stopping
    /// the server does not wait for the client.
    #[test]
    fn cutting_connections_off_ends_a_thread_waiting_for_its_client() {
        let threads = Arc::new(Threads::default());
        let (stream, _idle_client) = UnixStream::pair().unwrap();
        let (started, waiting) = std::sync::mpsc::channel();
        let handle = threads
            .spawn("test-conn", stream, move |mut stream| {
                started.send(()).unwrap();
                let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
            })
            .unwrap();
        waiting.recv().unwrap();
        threads.cut_off_input();
        // A bound on a failure, not a wait for the clock.
        assert_eq!(threads.wait_until(Instant::now() + STOP_PATIENCE), 0);
        handle.join().unwrap();
    }

    /// A new data dir (removed when the first is dropped) and a handle on it.
    fn fresh() -> (tempfile::TempDir, Redkeep) {
        let tmp = tempfile::tempdir().unwrap();
        let options = crate::Options::default()
            .password(crate::PasswordParams::INSECURE_FAST)
            .create(true);
        let rk = Redkeep::open(tmp.path(), options).unwrap();
        (tmp, rk)
    }

    /// What the client of [`serve_request`] does once it sent its request.
    #[derive(PartialEq)]
    enum Client {
        /// Waits for the answer.
        Stays,
        /// Shuts its writing side, then waits for the answer.
        HalfCloses,
        /// Closes its socket before the owner begins.
        Leaves,
    }

    /// Runs one connection whose client sent `body` as its request with an empty input,
    /// then did as `client` says; returns what the owner answered.
    fn serve_request(rk: &Redkeep, body: &[u8], client_does: Client) -> Vec<u8> {
        use std::io::{Read, Write};
        let (mut stream, mut client) = UnixStream::pair().unwrap();
        client.write_all(&[REQUEST]).unwrap();
        client
            .write_all(&(body.len() as u32).to_be_bytes())
            .unwrap();
        client.write_all(body).unwrap();
        client
            .write_all(&[crate::admin::protocol::END, 0, 0, 0, 0])
            .unwrap();
        match client_does {
            Client::Leaves => {
                drop(client);
                serve_one(&mut stream, rk, Instant::now());
                return Vec::new();
            }
            Client::HalfCloses => client.shutdown(std::net::Shutdown::Write).unwrap(),
            Client::Stays => {}
        }
        serve_one(&mut stream, rk, Instant::now());
        drop(stream);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        answer
    }

    /// An operator who pressed Ctrl-C while the application was stopped or busy, before it
    /// began the command, does not have it run behind their back (the CLI says so); a
    /// client still there has it run, one that shut only its writing side too.
    #[test]
    fn a_command_whose_client_left_before_it_began_is_not_run() {
        let (_tmp, rk) = fresh();
        let create = br#"{"version":6,"request":{"command":{"Invite":{"Create":{"count":1,"expires":null,"uses":1}}},"secret":null}}"#;
        let invites = || {
            rk.invites()
                .list(crate::InviteFilter::All, 10)
                .unwrap()
                .len()
        };
        serve_request(&rk, create, Client::Leaves);
        assert_eq!(invites(), 0, "the command ran for a client that had left");
        let answer = serve_request(&rk, create, Client::Stays);
        assert_eq!(invites(), 1, "{}", String::from_utf8_lossy(&answer));
        // A client that only shut its writing side still waits for the answer.
        let answer = serve_request(&rk, create, Client::HalfCloses);
        assert_eq!(invites(), 2, "{}", String::from_utf8_lossy(&answer));
        assert!(String::from_utf8_lossy(&answer).contains("rki_"));
    }

    /// The names of redkeep's temp entries in `dir`.
    fn temp_entries(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(crate::fsutil::TEMP_PREFIX))
            .collect()
    }

    /// An operator who pressed Ctrl-C on a `backup` run through the socket (its client
    /// closed its end while the command ran) stopped nothing: the application went on and
    /// wrote the whole archive after the CLI had died. The backup now stops at its next
    /// step and leaves nothing behind; with its client there, it is written.
    #[test]
    fn a_backup_whose_client_left_while_it_ran_is_abandoned_and_leaves_nothing() {
        use std::io::Read;
        let (tmp, rk) = fresh();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("b.tar");
        let backup =
            super::super::Request::new(super::super::Command::Backup { path: dest.clone() });
        // The command is under way (the check before it began is past) when the client goes.
        let (mut stream, client) = UnixStream::pair().unwrap();
        drop(client);
        run_request(&mut stream, &rk, &backup, 0, 1);
        assert!(
            !dest.exists(),
            "the backup was written for a client that had left"
        );
        assert_eq!(temp_entries(out.path()), Vec::<String>::new());
        assert_eq!(temp_entries(tmp.path()), Vec::<String>::new());
        let (mut stream, mut client) = UnixStream::pair().unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        run_request(&mut stream, &rk, &backup, 0, 1);
        drop(stream);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains("wrote ") && dest.exists(), "{answer}");
    }

    /// A client of another release is told so, whatever the shape of its request: the
    /// version is read first (a request the application cannot parse was called malformed).
    #[test]
    fn a_client_of_another_protocol_version_is_told_so_before_its_request_is_parsed() {
        let (_tmp, rk) = fresh();
        let answer = |body: &[u8]| {
            String::from_utf8_lossy(&serve_request(&rk, body, Client::Stays)).into_owned()
        };
        let newer = answer(
            br#"{"version":7,"release":"9.9.9","request":{"command":"Frobnicate","secret":null}}"#,
        );
        assert!(
            newer.contains("this redkeep CLI speaks admin protocol version 7")
                && newer.contains("the application (redkeep ")
                && newer
                    .contains("is older than this CLI (redkeep 9.9.9): upgrade the application"),
            "{newer}"
        );
        // The same version, a shape this release does not know: malformed, with the releases
        // named when they differ.
        let odd = answer(
            br#"{"version":6,"release":"9.9.9","request":{"command":"Frobnicate","secret":null}}"#,
        );
        assert!(
            odd.contains("malformed request: unknown variant `Frobnicate`")
                && odd.contains("use the redkeep CLI of release"),
            "{odd}"
        );
        let same = format!(
            r#"{{"version":6,"release":"{}","request":{{"command":"Frobnicate","secret":null}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let same = answer(same.as_bytes());
        assert!(
            same.contains("malformed request") && !same.contains("release"),
            "{same}"
        );
    }

    /// `user create --invite-stdin --password-stdin` sends the code and the password as one
    /// secret of two lines, which an owner of version 3 took whole for each flag: the
    /// version went up, and a client of version 3 (the same release, an earlier build) is
    /// refused before its request runs, told to upgrade the CLI.
    #[test]
    fn a_client_of_the_version_before_the_two_line_secret_is_refused() {
        let (_tmp, rk) = fresh();
        let code = rk
            .invites()
            .create(crate::InviteSpec::default())
            .unwrap()
            .code;
        let body = format!(
            r#"{{"version":3,"release":"{}","request":{{"command":{{"User":{{"Create":{{"email":"cat@example.com","name":null,"username":null,"admin":false,"password_stdin":true,"invite":null,"invite_stdin":true}}}}}},"secret":"{}\npass phrase 1"}}}}"#,
            env!("CARGO_PKG_VERSION"),
            code.expose()
        );
        let answer = serve_request(&rk, body.as_bytes(), Client::Stays);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.contains("this redkeep CLI speaks admin protocol version 3")
                && answer.contains("is older than the application")
                && answer.contains("upgrade the CLI"),
            "{answer}"
        );
        assert!(rk.users().by_email("cat@example.com").unwrap().is_none());
    }

    /// `user disable --revoke-keys` is a field an owner of version 4 would not know: it would
    /// disable the user and leave their keys only suspended. The version went up, and a
    /// client of version 4 is refused before its request runs.
    #[test]
    fn a_client_of_the_version_before_revoke_keys_is_refused() {
        let (_tmp, rk) = fresh();
        let bob = rk
            .users()
            .create(crate::NewUser {
                email: "bob@example.com".into(),
                ..crate::NewUser::default()
            })
            .unwrap()
            .user;
        let body = format!(
            r#"{{"version":4,"release":"{}","request":{{"command":{{"User":{{"Disable":{{"user":"bob@example.com","revoke_keys":true}}}}}},"secret":null}}}}"#,
            env!("CARGO_PKG_VERSION"),
        );
        let answer = serve_request(&rk, body.as_bytes(), Client::Stays);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.contains("this redkeep CLI speaks admin protocol version 4")
                && answer.contains("upgrade the CLI"),
            "{answer}"
        );
        assert!(rk.users().get(bob.id).unwrap().unwrap().is_active);
    }

    /// A client sending its request a few bytes every 8 s, each piece within the time a read
    /// may wait, was answered after a minute: the time to send a request is now counted
    /// from the connection.
    #[test]
    fn a_request_sent_in_slow_pieces_is_cut_off_at_the_deadline() {
        let body = br#"{"version":6,"request":{"command":"Stats","secret":null}}"#;
        let frame = || {
            let mut frame = vec![REQUEST];
            frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
            frame.extend_from_slice(body);
            frame.into_iter()
        };
        let len = frame().len() as u64;
        let accepted = Instant::now();
        let mut drip = Drip::new(frame(), 11, Duration::from_secs(8), accepted);
        let late = read_request(&mut drip, accepted)
            .err()
            .expect("the request was read whole though it took a minute to arrive");
        assert_eq!(late.kind(), std::io::ErrorKind::TimedOut);
        assert!(drip.sent < len, "{} of {len} bytes read", drip.sent);
        // Sent at once, the same request is read.
        let mut quick = Drip::new(frame(), 11, Duration::ZERO, accepted);
        assert!(matches!(
            read_request(&mut quick, accepted),
            Ok(Frame::Body(REQUEST, b)) if b == body
        ));
    }
}
