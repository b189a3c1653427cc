//! The admin socket's wire format. Both ways, a frame is one kind byte, a 4-byte big-endian
//! length and the payload:
//!
//! - client → owner: `R` the request (JSON `{"version": 6, "release": "0.3.0", "request": …}`;
//!   the version is read first, so a client of another release is told so whatever its
//!   request's shape), then the command's input as `I` chunks, then `E`;
//! - owner → client: the command's raw output as `O` chunks, then `A` the answer (JSON
//!   `{"version": 6, "result": {"Ok": reply} | {"Err": {"message", "exit_code"}}}`).
//!
//! Requests and chunks are capped in size. The socket is a file in the data dir (0700),
//! itself 0600; a data dir whose path is too long for a socket address is reached through
//! `/proc/self/fd/<dir>/redkeep.sock`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::deadline::{Patient, Peer, Until};
use super::reply::Reply;
use super::request::Request;

/// The socket's file name in the data dir.
pub const SOCKET_FILE: &str = crate::ops::files::SOCKET_NAME;

/// The protocol version; a peer speaking another is refused. Version 3 added request fields
/// an owner of version 2 would ignore, changing what the command does (`user create
/// --invite-stdin` would make the user without the invite). Version 4 changed what a
/// request's secret holds: one line per flag that reads stdin (`user create --invite-stdin
/// --password-stdin` sends the code and the password joined by a newline), where an owner
/// of version 3 takes the whole secret for each flag (the code would not be found, or the
/// user made with a password that holds the code). Version 5 added `user disable
/// --revoke-keys`, which an owner of version 4 would ignore (the keys would stay, only
/// suspended), and `invite create --expires never`. Version 6 added `user set-password
/// --must-change`, which an owner of version 5 would ignore (the user would keep a password
/// the operator knows).
pub(crate) const PROTOCOL_VERSION: u32 = 6;
/// Largest request frame accepted, in bytes.
pub(crate) const MAX_REQUEST_BYTES: u32 = 1024 * 1024;
/// Largest input or output chunk.
pub(crate) const MAX_CHUNK_BYTES: u32 = 1024 * 1024;
/// How long the owner waits, in all, for a command's input to arrive. The CLI has its input
/// at hand before it connects and sends it at once; a client that sends it a few bytes now
/// and then would hold a connection slot and its buffers for as long as it liked.
pub(crate) const INPUT_PATIENCE: Duration = Duration::from_secs(60);
/// Largest answer the client accepts.
pub(crate) const MAX_ANSWER_BYTES: u32 = 1024 * 1024 * 1024;

pub(crate) const REQUEST: u8 = b'R';
pub(crate) const INPUT: u8 = b'I';
pub(crate) const END: u8 = b'E';
pub(crate) const OUTPUT: u8 = b'O';
pub(crate) const ANSWER: u8 = b'A';

/// What to do about a CLI speaking protocol version `cli` (of release `cli_release`, when
/// known) and an application speaking `app` (of `app_release`, when known): upgrade the
/// older side, or use the CLI installed with the application. Two builds of one release may
/// speak two versions, so the releases alone do not say which is older.
pub(crate) fn upgrade_advice(
    cli: u32,
    cli_release: Option<&str>,
    app: u32,
    app_release: Option<&str>,
) -> String {
    let named = |who: &str, release: Option<&str>| match release {
        Some(r) => format!("{who} (redkeep {r})"),
        None => who.to_string(),
    };
    let (cli_named, app_named) = (
        named("this CLI", cli_release),
        named("the application", app_release),
    );
    if cli < app {
        format!(
            "{cli_named} is older than {app_named}: upgrade the CLI to the application's \
             build, or use the redkeep CLI installed with the application"
        )
    } else {
        format!(
            "{app_named} is older than {cli_named}: upgrade the application to this CLI's \
             build and restart it, or use the redkeep CLI installed with the application"
        )
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct WireRequest {
    pub version: u32,
    /// The client's release of redkeep (the crate's version), to name a mismatch.
    #[serde(default)]
    pub release: Option<String>,
    pub request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireReply {
    pub version: u32,
    pub result: std::result::Result<Reply, WireError>,
}

/// An error as the owner rendered it, so the client prints exactly the same line.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub message: String,
    pub exit_code: u8,
}

pub(crate) fn write_frame(w: &mut impl Write, kind: u8, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("frame too large"))?;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head)?;
    w.write_all(body)?;
    Ok(())
}

/// Writes `value` as one JSON frame. The JSON may carry a secret (a password sent to the
/// owner, a token it made): it is written into a buffer of the right size from the start
/// (no smaller copy is left behind in freed memory by growing it), wiped once sent.
pub(crate) fn write_json(w: &mut impl Write, kind: u8, value: &impl Serialize) -> io::Result<()> {
    let mut counted = Counted(0);
    serde_json::to_writer(&mut counted, value).map_err(io::Error::other)?;
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(counted.0));
    serde_json::to_writer(&mut *body, value).map_err(io::Error::other)?;
    write_frame(w, kind, &body)?;
    w.flush()
}

/// A writer that only counts the bytes written to it.
struct Counted(usize);

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One frame read; `TooLarge` when the length passes the cap (the body is not read).
pub(crate) enum Frame {
    Body(u8, Vec<u8>),
    TooLarge(u8, u32),
}

pub(crate) fn read_frame(r: &mut impl Read, cap: u32) -> io::Result<Frame> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let kind = head[0];
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len > cap {
        return Ok(Frame::TooLarge(kind, len));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok(Frame::Body(kind, body))
}

/// The command's input on the owner's side: `I` chunks until `E`.
pub(crate) struct ChunkReader<'a> {
    stream: &'a mut UnixStream,
    /// How long the reader may still wait for the client's bytes, in all (see [`Patient`]).
    patience: Duration,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
    /// The body of a chunk over the limit, whose header was read: [`drain`](Self::drain)
    /// drops it first, so that its bytes are not taken for frame headers.
    unread: u64,
}

impl<'a> ChunkReader<'a> {
    pub(crate) fn new(stream: &'a mut UnixStream) -> Self {
        ChunkReader {
            stream,
            patience: INPUT_PATIENCE,
            buf: Vec::new(),
            pos: 0,
            done: false,
            unread: 0,
        }
    }

    /// Reads and drops whatever input the command left, as [`drain`] does (what this reader
    /// holds counts against the budget): `true` when it was read to its end.
    pub(crate) fn drain(&mut self, deadline: Instant, budget: u64) -> bool {
        if self.done {
            return true;
        }
        let held = self.buf.len().saturating_sub(self.pos) as u64;
        self.pos = self.buf.len();
        let unread = std::mem::take(&mut self.unread);
        budget
            .checked_sub(held)
            .is_some_and(|left| drain(&*self.stream, deadline, unread, left))
    }
}

/// Reads and drops what a peer still sends, up to the end of its input: first `unread` bytes
/// (the body of a frame whose header was read), then frames up to the end marker. No more
/// than `budget` bytes are read, each frame's header counted (endless empty frames end too),
/// and nothing after `deadline`. `true` when the end marker was read; `false` when the input
/// went on past the budget or the deadline, or broke off.
pub(crate) fn drain(peer: impl Peer, deadline: Instant, unread: u64, budget: u64) -> bool {
    let mut from = BufReader::new(Until::new(peer, deadline));
    let Some(mut left) = budget.checked_sub(unread) else {
        return false;
    };
    if skip(&mut from, unread).is_err() {
        return false;
    }
    loop {
        let mut head = [0u8; 5];
        if from.read_exact(&mut head).is_err() {
            return false;
        }
        if head[0] == END {
            return true;
        }
        let len = u64::from(u32::from_be_bytes([head[1], head[2], head[3], head[4]]));
        match left.checked_sub(head.len() as u64 + len) {
            Some(rest) => left = rest,
            None => return false,
        }
        if skip(&mut from, len).is_err() {
            return false;
        }
    }
}

/// Reads and drops `n` bytes.
fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    if io::copy(&mut r.take(n), &mut io::sink())? < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(out.len());
            out[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.buf.len() && !self.done {
            let mut from = Patient::new(&*self.stream, &mut self.patience);
            match read_frame(&mut from, MAX_CHUNK_BYTES)? {
                Frame::Body(INPUT, body) => {
                    self.buf = body;
                    self.pos = 0;
                }
                Frame::Body(END, _) => self.done = true,
                Frame::TooLarge(INPUT, len) => {
                    self.unread = u64::from(len);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "an input chunk of {len} bytes is over the limit of \
                             {MAX_CHUNK_BYTES} bytes a chunk; send the input in smaller chunks"
                        ),
                    ));
                }
                Frame::Body(kind, _) | Frame::TooLarge(kind, _) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected frame {:?} in the input", kind as char),
                    ));
                }
            }
        }
        Ok(&self.buf[self.pos.min(self.buf.len())..])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

/// The command's raw output on the owner's side, sent as `O` chunks.
pub(crate) struct ChunkWriter<'a> {
    stream: &'a mut UnixStream,
    buf: Vec<u8>,
}

impl<'a> ChunkWriter<'a> {
    pub(crate) fn new(stream: &'a mut UnixStream) -> Self {
        ChunkWriter {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        }
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            write_frame(self.stream, OUTPUT, &self.buf)?;
            self.buf.clear();
        }
        self.stream.flush()
    }
}

/// The longest socket path used as it is; longer ones go through `/proc/self/fd`.
const MAX_DIRECT_PATH: usize = 100;

/// The address of the socket in `dir`, and the directory handle that must stay open while
/// the address is used (when the path is too long to use directly).
pub(crate) fn socket_address(dir: &Path) -> io::Result<(PathBuf, Option<File>)> {
    let path = dir.join(SOCKET_FILE);
    if path.as_os_str().len() < MAX_DIRECT_PATH {
        return Ok((path, None));
    }
    let handle = File::open(dir)?;
    let short = PathBuf::from(format!(
        "/proc/self/fd/{}/{}",
        handle.as_raw_fd(),
        SOCKET_FILE
    ));
    Ok((short, Some(handle)))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{END, INPUT, drain};
    use crate::admin::deadline::Drip;

    /// Operations name the socket without using this module: the two names are one.
    #[test]
    fn operations_know_the_socket_by_its_name() {
        assert_eq!(crate::ops::files::SOCKET_NAME, super::SOCKET_FILE);
    }

    /// Frames of `len` bytes of input, `count` of them (or endless), then the end marker.
    fn input(len: u8, count: Option<usize>) -> Box<dyn Iterator<Item = u8>> {
        let mut frame = vec![INPUT, 0, 0, 0, len];
        frame.resize(5 + usize::from(len), b'x');
        let end = [END, 0, 0, 0, 0];
        match count {
            Some(n) => Box::new(frame.repeat(n).into_iter().chain(end)),
            None => Box::new(frame.into_iter().cycle()),
        }
    }

    /// A client sent millions of empty input frames after its request: they cost the drain
    /// nothing, and the owner read them for ever without answering.
    #[test]
    fn empty_frames_count_against_the_drain_budget() {
        let start = Instant::now();
        let budget = 1000;
        let mut within = Drip::new(input(0, Some(100)), 64, Duration::ZERO, start);
        assert!(drain(
            &mut within,
            start + Duration::from_secs(1),
            0,
            budget
        ));
        let mut past = Drip::new(input(0, Some(300)), 64, Duration::ZERO, start);
        assert!(!drain(&mut past, start + Duration::from_secs(1), 0, budget));
        assert!(past.sent <= budget + 64, "{} bytes read", past.sent);
    }

    /// A client sending its input a few bytes every 8 s held the owner's thread for as long
    /// as it liked: the drain now ends at its deadline.
    #[test]
    fn a_drain_ends_at_its_deadline() {
        let start = Instant::now();
        let step = Duration::from_secs(8);
        let mut slow = Drip::new(input(1, None), 64, step, start);
        assert!(!drain(&mut slow, start + 2 * step, 0, 1024 * 1024));
        assert_eq!(slow.sent, 2 * 64);
    }

    /// An input chunk over the limit is named as such (it was "unexpected frame 'I'"), and
    /// its body is dropped as a body before the frames after it: it was read as frame
    /// headers, so its first byte could pass for the end marker.
    #[test]
    fn an_input_chunk_over_the_limit_is_named_and_its_body_dropped() {
        use std::io::{Read, Write};
        let (mut owner, mut client) = std::os::unix::net::UnixStream::pair().unwrap();
        let len = super::MAX_CHUNK_BYTES + 1;
        let sender = std::thread::spawn(move || {
            client.write_all(&[INPUT]).unwrap();
            client.write_all(&len.to_be_bytes()).unwrap();
            // A body of end markers, then one input chunk of 3 bytes and the end.
            client.write_all(&vec![END; len as usize]).unwrap();
            client
                .write_all(&[INPUT, 0, 0, 0, 3, b'x', b'y', b'z'])
                .unwrap();
            client.write_all(&[END, 0, 0, 0, 0]).unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            client
        });
        let mut reader = super::ChunkReader::new(&mut owner);
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("input chunk of"), "{err}");
        let deadline = Instant::now() + Duration::from_secs(60);
        assert!(reader.drain(deadline, 4 * 1024 * 1024), "read to its end");
        drop(reader);
        // Nothing is left after the end marker: the drain stopped at the true end.
        let mut rest = Vec::new();
        owner.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes left", rest.len());
        sender.join().unwrap();
    }

    /// The body of a frame whose header was read (a request too large to read) is dropped as
    /// such: its bytes were read as frame headers, and one that looked like the end marker
    /// ended the drain with the rest of the input unread.
    #[test]
    fn the_unread_body_of_a_frame_is_dropped_before_the_frames_after_it() {
        let start = Instant::now();
        let body = [END; 10];
        let bytes = body.into_iter().chain(input(3, Some(2)));
        // A byte a read, so that what was read is what the drain took.
        let mut peer = Drip::new(bytes, 1, Duration::ZERO, start);
        assert!(drain(&mut peer, start + Duration::from_secs(1), 10, 1000));
        assert_eq!(peer.sent, 10 + 2 * 8 + 5, "the drain ended early");
        // More unread than the budget allows is not read at all.
        let mut peer = Drip::new(body.into_iter(), 64, Duration::ZERO, start);
        assert!(!drain(&mut peer, start + Duration::from_secs(1), 10, 9));
        assert_eq!(peer.sent, 0);
    }
}
