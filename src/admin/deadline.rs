//! Reading from a peer against an overall deadline. A read timeout bounds one read only: a
//! client sending a few bytes every few seconds, each within it, could hold a connection and
//! its thread for as long as it liked. Here no read starts once the deadline has passed, and
//! each waits at most for the time left.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// What a deadline reads from: a stream whose reads can be bounded in time, and the clock
/// that tells the time. A trait so that tests drive time instead of waiting for it.
pub(crate) trait Peer: Read {
    /// Makes the next reads wait at most `d` (more than zero) for data.
    fn wait_at_most(&mut self, d: Duration) -> io::Result<()>;
    /// The time now.
    fn now(&self) -> Instant;
}

impl Peer for &UnixStream {
    fn wait_at_most(&mut self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A peer read until a deadline; a read after it fails with `TimedOut`.
pub(crate) struct Until<P> {
    peer: P,
    deadline: Instant,
}

impl<P: Peer> Until<P> {
    pub(crate) fn new(peer: P, deadline: Instant) -> Self {
        Until { peer, deadline }
    }
}

impl<P: Peer> Read for Until<P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(self.peer.now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer's time to send is over",
            ));
        }
        self.peer.wait_at_most(left)?;
        self.peer.read(buf)
    }
}

/// A peer read within a budget of waiting: the time its reads spend waiting for the peer's
/// bytes is taken from the budget, and no read starts once it is spent (`TimedOut`). Unlike
/// [`Until`], the time the reader spends on other things (a command working between two
/// reads of its input) does not count: only a peer that keeps it waiting runs out.
pub(crate) struct Patient<'b, P> {
    peer: P,
    left: &'b mut Duration,
}

impl<'b, P: Peer> Patient<'b, P> {
    pub(crate) fn new(peer: P, left: &'b mut Duration) -> Self {
        Patient { peer, left }
    }
}

impl<P: Peer> Read for Patient<'_, P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer kept the command waiting for its input too long in all",
            ));
        }
        self.peer.wait_at_most(*self.left)?;
        let start = self.peer.now();
        let read = self.peer.read(buf);
        let waited = self.peer.now().saturating_duration_since(start);
        *self.left = self.left.saturating_sub(waited);
        read
    }
}

/// A peer for tests: it sends the given bytes a few at a time, and each read takes the time
/// given (the clock moves by it, nothing waits).
#[cfg(test)]
pub(crate) struct Drip {
    bytes: Box<dyn Iterator<Item = u8>>,
    piece: usize,
    step: Duration,
    now: Instant,
    /// The bytes read so far.
    pub(crate) sent: u64,
}

#[cfg(test)]
impl Drip {
    /// Sends `bytes`, `piece` of them per read, each read taking `step`.
    pub(crate) fn new(
        bytes: impl Iterator<Item = u8> + 'static,
        piece: usize,
        step: Duration,
        start: Instant,
    ) -> Drip {
        Drip {
            bytes: Box::new(bytes),
            piece,
            step,
            now: start,
            sent: 0,
        }
    }
}

#[cfg(test)]
impl Read for Drip {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.now += self.step;
        let mut n = 0;
        for (slot, byte) in buf.iter_mut().take(self.piece).zip(&mut self.bytes) {
            *slot = byte;
            n += 1;
        }
        self.sent += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
impl Peer for &mut Drip {
    fn wait_at_most(&mut self, _d: Duration) -> io::Result<()> {
        Ok(())
    }

    fn now(&self) -> Instant {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_read_starts_after_the_deadline() {
        let start = Instant::now();
        let step = Duration::from_secs(8);
        let mut drip = Drip::new(std::iter::repeat(b'x'), 11, step, start);
        let mut until = Until::new(&mut drip, start + 2 * step);
        let mut buf = [0u8; 100];
        assert_eq!(until.read(&mut buf).unwrap(), 11); // read at 0 s, done at 8
        assert_eq!(until.read(&mut buf).unwrap(), 11); // at 8 s
        let late = until.read(&mut buf).unwrap_err(); // at 16 s
        assert_eq!(late.kind(), io::ErrorKind::TimedOut);
        assert_eq!(drip.sent, 22);
    }

    /// A peer that sends its input a byte now and then runs out of patience in all, however
    /// short each wait: the waits add up.
    #[test]
    fn the_waits_of_all_reads_add_up_to_the_budget() {
        let start = Instant::now();
        let step = Duration::from_secs(8);
        let mut drip = Drip::new(std::iter::repeat(b'x'), 1, step, start);
        let mut left = 3 * step;
        let mut buf = [0u8; 100];
        for _ in 0..3 {
            assert_eq!(
                Patient::new(&mut drip, &mut left).read(&mut buf).unwrap(),
                1
            );
        }
        let late = Patient::new(&mut drip, &mut left)
            .read(&mut buf)
            .unwrap_err();
        assert_eq!(late.kind(), io::ErrorKind::TimedOut);
        assert_eq!(drip.sent, 3);
        assert!(left.is_zero());
    }
}
