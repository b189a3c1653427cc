//! The store: one redb file opened in a sharing mode, with the owner marker that names the
//! process holding it exclusively, and the transactions that run closures on it.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::engine::RawWrite;
#[cfg(feature = "postgres")]
pub use super::engine::pg::is_postgres_url;
use super::engine::redb_file::{
    self, CheckCopy, FileDb, FileRead, FileWrite, OpenSpec, OpenWrite, UndoLog,
};
use super::tx::{Meta, ReadTx, Registrations, Registry, WriteTx};
use crate::error::{Error, Result};

/// How the store file is shared between processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Mode {
    /// One process owns the file (redb `ExclusiveWriter`); the fastest mode.
    #[default]
    Exclusive,
    /// Several processes open the file at once, one write transaction at a time
    /// (redb `MultiWriter`). Each transaction costs about twice as much.
    Shared,
}

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is on disk when `write` returns (the default).
    #[default]
    Immediate,
    /// Commits are made durable by the next `Immediate` one; a crash may lose them, and so
    /// may an I/O error (the handle reopens the file at its last durable commit to go on).
    /// For bulk loads and benchmarks. A store in `Mode::Shared` commits durably regardless
    /// (redb shares a file between processes only that way).
    None,
}

/// Options for [`Store::open`].
#[derive(Clone)]
pub struct StoreOptions {
    /// Exclusive (default) or shared between processes.
    pub mode: Mode,
    /// Durability of each commit.
    pub durability: Durability,
    /// Create the file when it does not exist (the default). When false, a missing file is
    /// `Error::NotInitialized`.
    pub create: bool,
    /// The schema version this build writes. A file with a newer one is refused; an older one
    /// is `Error::MigrationNeeded` unless `allow_outdated` is set.
    pub schema_version: u64,
    /// Open a file with an older schema version anyway (to migrate it).
    pub allow_outdated: bool,
    /// Cache size in bytes.
    pub cache_bytes: usize,
    /// Where copies taken before migrations go, as the path of a store file next to which
    /// `<name>.pre-vN.bak` is written: the store file itself by default; a file in the data
    /// dir for a PostgreSQL store.
    pub copies_at: Option<PathBuf>,
    /// How long an open in [`Mode::Exclusive`] of a redb file waits while other processes
    /// have it open without holding it alone (a command that only reads it, such as
    /// `redkeep check`, `backup` or `export`; a process in [`Mode::Shared`]), before it is
    /// refused with `Error::InUse` naming them (default 0.5 s; `Duration::ZERO` refuses at
    /// once). A process that holds the file alone (it leaves an owner marker) is named at
    /// once, without waiting. The PostgreSQL engine does not wait: its opens share the store.
    pub wait_for_readers: Duration,
    /// Called once when an exclusive open begins to wait for such processes (see
    /// [`StoreOptions::wait_for_readers`]); without it the wait is logged as a `tracing`
    /// warning.
    pub on_wait_for_readers: Option<ReadersNotice>,
    /// Tests only: fail one chosen I/O call of the engine.
    #[doc(hidden)]
    pub faults: Option<Arc<super::engine::faults::FaultPlan>>,
}

/// Called with what an exclusive open waits for, as it begins to wait (see
/// [`StoreOptions::wait_for_readers`]).
pub type ReadersNotice = Arc<dyn Fn(&ReadersWait) + Send + Sync>;

/// What an exclusive open waits for: other processes that have the store file open without
/// holding it alone. Its `Display` is a sentence for a log or a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadersWait {
    /// The store file.
    pub path: PathBuf,
    /// The processes that have it open, by pid, where the system names them (empty when it
    /// does not).
    pub pids: Vec<u32>,
    /// How long the open waits at most.
    pub limit: Duration,
}

impl std::fmt::Display for ReadersWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the store {} is open in {}, to read it or in shared mode; waiting up to {} for \
             it to let go",
            self.path.display(),
            name_processes(&self.pids),
            seconds(self.limit)
        )
    }
}

/// `duration` as an operator reads it: `30 s`, `0.5 s`.
fn seconds(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{} s", duration.as_secs_f64())
    }
}

/// The processes `pids` for a message: `process 12 (`redkeep backup`)`, `processes 12, 13`,
/// or `another process` when none is named.
fn name_processes(pids: &[u32]) -> String {
    let one = |pid: u32| match redkeep_command(pid) {
        Some(command) => format!("{pid} (`{command}`)"),
        None => pid.to_string(),
    };
    match pids {
        [] => "another process".to_string(),
        [pid] => format!("process {}", one(*pid)),
        _ => format!(
            "processes {}",
            pids.iter().map(|p| one(*p)).collect::<Vec<_>>().join(", ")
        ),
    }
}

// By hand, for the callback.
impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("mode", &self.mode)
            .field("durability", &self.durability)
            .field("create", &self.create)
            .field("schema_version", &self.schema_version)
            .field("allow_outdated", &self.allow_outdated)
            .field("cache_bytes", &self.cache_bytes)
            .field("copies_at", &self.copies_at)
            .field("wait_for_readers", &self.wait_for_readers)
            .field("on_wait_for_readers", &self.on_wait_for_readers.is_some())
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            mode: Mode::Exclusive,
            durability: Durability::Immediate,
            create: true,
            schema_version: 1,
            allow_outdated: false,
            cache_bytes: 64 * 1024 * 1024,
            copies_at: None,
            wait_for_readers: BRIEF_HOLD,
            on_wait_for_readers: None,
            faults: None,
        }
    }
}

/// One redb file of typed tables. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    // Why the store refuses writes, once a corruption was seen (until a repair or restore).
    damaged: Mutex<Option<String>>,
    // After this handle migrated the store down: (the version it is at, the version this
    // build writes). Writes other than migrations are refused until it is migrated up.
    behind: Mutex<Option<(u64, u64)>>,
    // Whether `behind` holds a value: what every read of the account tables asks first.
    is_behind: std::sync::atomic::AtomicBool,
    path: PathBuf,
    mode: Mode,
    durability: Durability,
    owner_file: Option<PathBuf>,
    copies_at: Option<PathBuf>,
    registry: Registry,
    group: Group,
    // The file's reads under way (see [`ReadGate`]).
    reads: ReadGate,
    // The thread that runs the writes of a batch after its first (see [`Group`]), started by
    // the first write that finds others in the batch; `None` if it could not be started.
    committer: OnceLock<Option<rayon_core::ThreadPool>>,
}

impl Inner {
    fn committer(&self) -> Option<&rayon_core::ThreadPool> {
        self.committer
            .get_or_init(|| {
                rayon_core::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .stack_size(COMMITTER_STACK)
                    .thread_name(|_| "redkeep-commit".into())
                    .build()
                    .ok()
            })
            .as_ref()
    }
}

/// The engine behind a store.
enum Engine {
    /// A redb file. Transactions hold the read side of the lock for their lifetime (the
    /// read transaction an exclusive handle keeps until the next commit ends outlives it, and
    /// is let go by both); `check_integrity` and reopening need the write side because redb
    /// refuses to check while a transaction is alive.
    File(RwLock<FileDb>),
    /// A PostgreSQL server.
    #[cfg(feature = "postgres")]
    Pg(Box<super::engine::pg::PgDb>),
}

/// The committing thread's stack: the writes of a batch nest on it.
const COMMITTER_STACK: usize = 16 << 20;

/// The longest the last writer of a batch smaller than the previous one waits for writers
/// on their way before it commits (half the previous commit's time when that is shorter: a
/// wait longer than a commit gains nothing).
const ARRIVAL_WAIT: std::time::Duration = std::time::Duration::from_micros(200);

/// The most writes one commit carries.
const MAX_BATCH: usize = 128;

/// Group commit: writes that arrive while another commits wait; then they run one after
/// another in one transaction, and the last of them commits it once for all. Each write that
/// fails is taken back alone (an undo log of what it replaced), so its neighbours go on; the
/// first write of a batch needs no log (nothing else is in the transaction yet).
///
/// A write that finds the file idle runs on its own thread. One that finds others at work
/// is handed to the handle's committing thread (a one-thread pool, started at the first
/// contention), which runs the handed-over writes one after another: handing the batch from
/// thread to thread cost a wake-up of the next thread (10-13 µs on two cores) for each write
/// of 6-8 µs. While a batch is open, the committing thread runs each write it was handed
/// nested in the one before, so the callers it serves are woken once, when their batch is
/// committed (the writes handed over during a commit wait for its end, like everyone).
/// Writes that run on their own thread (the first of a batch, [`Store::write_here`], writes
/// from rayon threads or from inside another store's write) take their turns in the same
/// line, each woken for its turn and again for its batch's outcome.
///
/// Writers take their turns in the order they reached the line; a handed-over write reaches
/// it when the committing thread picks it up, so a write on its own thread that comes just
/// after may go first. Before the last writer commits a batch, it yields the processor a few times when
/// others share the batch, and while the batch holds fewer writes than the previous commit
/// did it waits a little for more ([`ARRIVAL_WAIT`]): the writers that commit woke come back one
/// by one, and without the wait the first of them to return committed alone while the rest
/// queued behind it. A lone writer, whose previous commit was its own, never waits.
///
/// Engine calls turn a panic into an error. Should redkeep's own code panic while a write
/// holds the batch, the batch is given up ([`BatchTurn`]): its other writes are told their
/// commit failed, nothing of it is committed, and the writers after it go on.
#[derive(Default)]
struct Group {
    state: Mutex<GroupState>,
    // Callers waiting to have the file alone.
    alone: Condvar,
    // Writers waiting for their batch's commit.
    done: Condvar,
    // The last writer of a batch, waiting for writers on their way.
    arrival: Condvar,
}

#[derive(Default)]
struct GroupState {
    // The open batch's transaction, while nobody is working in it.
    open: Option<OpenWrite>,
    // Somebody works in the open batch, begins one or commits one (or has the file alone).
    busy: bool,
    // The open batch's number.
    batch: u64,
    // Writes kept in the open batch, and whether any of them wants a durable commit.
    kept: usize,
    durable: bool,
    // Writers waiting for their turn, first come first, each with its wake-up; and how many
    // callers wait to have the file alone.
    queue: VecDeque<Arc<Condvar>>,
    exclusive: usize,
    // Outcomes of committed batches, with how many writers have still to read each.
    outcomes: HashMap<u64, (Option<String>, usize)>,
    // Writes in the batch committed last, and how long its commit took.
    last: usize,
    last_took: std::time::Duration,
    // Writes handed to the committing thread that have not taken their place in line yet.
    pending: usize,
    // The committing thread waits for a commit (and must be woken for a write handed to it).
    committer_waits: bool,
    // The last writer of a batch waits for writers on their way (and must be woken by one).
    arrival_awaited: bool,
}

impl GroupState {
    /// Closes the open batch, the next one beginning empty: its number, its kept writes and
    /// whether any of them asked for durability.
    fn close_batch(&mut self) -> (u64, usize, bool) {
        let closed = (self.batch, self.kept, self.durable);
        self.batch += 1;
        self.kept = 0;
        self.durable = false;
        closed
    }

    /// Leaves the outcome of `batch` (`None`: committed) for the `waiting` writes kept in it
    /// that wait for it.
    fn leave_outcome(&mut self, batch: u64, failed: Option<String>, waiting: usize) {
        if waiting > 0 {
            self.outcomes.insert(batch, (failed, waiting));
        }
    }

    /// Whether a write that arrives now would be alone: no batch open or being worked in,
    /// nobody in line or on the way to it.
    fn idle(&self) -> bool {
        !self.busy
            && self.open.is_none()
            && self.queue.is_empty()
            && self.pending == 0
            && self.exclusive == 0
    }

    /// The outcome of `batch` for one of the writes that waited for it, once it is
    /// committed (or given up).
    fn outcome(&mut self, batch: u64) -> Option<Result<()>> {
        let (failed, readers) = self.outcomes.get_mut(&batch)?;
        *readers -= 1;
        let failed = failed.clone();
        self.outcomes.retain(|_, (_, n)| *n > 0);
        Some(match failed {
            None => Ok(()),
            Some(reason) => Err(Error::storage(
                super::engine::GROUP_COMMIT_FAILED,
                GroupFailed(reason),
            )),
        })
    }

    /// Whether a write will come to the open batch after the one working in it.
    fn joining(&self) -> bool {
        !self.queue.is_empty() || self.pending > 0
    }
}

thread_local! {
    /// The stores whose transaction closures this thread runs (their `Inner`'s addresses,
    /// each with whether it is a write), outer first. While a write closure runs on a batch's
    /// committing thread, its caller's list is carried there ([`Carried`]).
    static INSIDE: std::cell::RefCell<Vec<(usize, bool)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A read or write closure running on this thread; dropping it says the closure ended.
///
/// What is refused inside a closure of the same store, because it would wait for that very
/// closure: a write inside a write (the batch's turn is taken) or inside a read (a file check
/// waiting for the read holds the turn the write needs), and a file check inside either. A
/// read inside a read goes ahead (see [`ReadGate`]).
struct Inside;

impl Inside {
    fn enter(inner: &Inner, write: bool) -> Inside {
        INSIDE.with_borrow_mut(|w| w.push((std::ptr::from_ref(inner) as usize, write)));
        Inside
    }

    /// Notes that a write closure of `inner`'s store runs on this thread.
    fn writing(inner: &Inner) -> Inside {
        Inside::enter(inner, true)
    }

    /// Notes that a read closure of `inner`'s store runs on this thread.
    fn reading(inner: &Inner) -> Inside {
        Inside::enter(inner, false)
    }

    /// Whether a write closure of any store runs on this thread.
    fn any_write() -> bool {
        INSIDE.with_borrow(|w| w.iter().any(|&(_, write)| write))
    }

    /// Whether a closure of `inner`'s store runs on this thread: `Some(true)` when one of
    /// them is a write.
    fn of(inner: &Inner) -> Option<bool> {
        let me = std::ptr::from_ref(inner) as usize;
        INSIDE.with_borrow(|w| {
            w.iter()
                .filter(|&&(store, _)| store == me)
                .map(|&(_, write)| write)
                .reduce(|a, b| a || b)
        })
    }

    /// Refuses a write from inside a read or write closure of the same store (directly or
    /// through another store's write): on a redb file it would wait for the transaction it
    /// runs in (or for a file check that waits for the read), on PostgreSQL it would commit
    /// apart from it.
    ///
    /// # Errors
    /// `InvalidInput` when such a closure runs on this thread.
    fn refuse_nested_write(inner: &Inner) -> Result<()> {
        match Inside::of(inner) {
            None => Ok(()),
            Some(true) => Err(Error::invalid(
                "write",
                "a write cannot begin inside another write of the same store; do its work in \
                 the transaction already open",
            )),
            Some(false) => Err(Error::invalid(
                "write",
                "a write cannot begin inside a read of the same store; end the read first, \
                 or do the reading in the write (it reads too)",
            )),
        }
    }

    /// Refuses to take the file alone (a check, a reopen) from inside a read or write
    /// closure of the same store: it would wait for the transaction it runs in.
    ///
    /// # Errors
    /// `InvalidInput` when such a closure runs on this thread.
    fn refuse_alone(inner: &Inner) -> Result<()> {
        match Inside::of(inner) {
            None => Ok(()),
            Some(_) => Err(Error::invalid(
                "check",
                "the file cannot be checked inside a read or write of the same store; call \
                 check_file after the transaction ends",
            )),
        }
    }

    /// This thread's list, to carry to where its write closure runs.
    fn snapshot() -> Vec<(usize, bool)> {
        INSIDE.with_borrow(Clone::clone)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with_borrow_mut(|w| w.pop());
    }
}

/// While alive, a caller's list ([`Inside::snapshot`]) is part of this thread's, so a write
/// closure run on the committing thread is refused what its caller would be.
struct Carried(usize);

impl Carried {
    fn install(caller: &[(usize, bool)]) -> Carried {
        INSIDE.with_borrow_mut(|w| {
            let own = w.len();
            w.extend_from_slice(caller);
            Carried(own)
        })
    }
}

impl Drop for Carried {
    fn drop(&mut self) {
        INSIDE.with_borrow_mut(|w| w.truncate(self.0));
    }
}

/// The reads of the file under way, and whether someone waits to have it alone (a file
/// check, a reopen after an I/O error).
///
/// A read holds the file's lock (`RwLock<FileDb>`, shared) for as long as its closure runs:
/// reopening the file and redb's integrity check need every read transaction of the handle
/// ended (redb refuses to check while one lives, and a file an old transaction still holds
/// cannot be opened again), so [`Store::alone`] takes the lock exclusively. That lock is not
/// recursive: a caller waiting for it makes every new shared hold wait behind it, so a read
/// inside a read (the library's own do that: an export reads folder owners inside its
/// snapshot) would wait for a check that waits for the read around it. So the check first
/// closes this gate and waits here for the reads under way to end, and only then asks for
/// the lock, which nobody holds by then; a read waits at the gate only when it is not inside
/// a transaction of the store on its thread (or its caller's, for a write closure run on the
/// committing thread). A nested read thus never waits, and keeps seeing the commits made
/// before it, as every read does. The outermost reads are counted, each once.
#[derive(Default)]
struct ReadGate {
    reads: std::sync::atomic::AtomicUsize,
    closed: std::sync::atomic::AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
}

impl ReadGate {
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, ()>) -> MutexGuard<'a, ()> {
        self.changed.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a read in, once nobody waits to have the file alone; it counts until the
    /// returned guard drops.
    fn enter(&self) -> GateRead<'_> {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            // Counted first, then the gate looked at; `close` does the reverse, so one of
            // the two sees the other.
            self.reads.fetch_add(1, SeqCst);
            if !self.closed.load(SeqCst) {
                return GateRead(self);
            }
            self.leave();
            let mut g = self.lock();
            while self.closed.load(SeqCst) {
                g = self.wait(g);
            }
        }
    }

    fn leave(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.reads.fetch_sub(1, SeqCst) == 1 && self.closed.load(SeqCst) {
            let _g = self.lock();
            self.changed.notify_all();
        }
    }

    /// Closes the gate to new reads and waits for those under way to end; it opens again
    /// when the returned guard drops. One caller at a time (the group's turn is held).
    fn close(&self) -> GateClosed<'_> {
        use std::sync::atomic::Ordering::SeqCst;
        self.closed.store(true, SeqCst);
        let closed = GateClosed(self);
        let mut g = self.lock();
        while self.reads.load(SeqCst) > 0 {
            g = self.wait(g);
        }
        closed
    }
}

/// A read counted in by [`ReadGate::enter`].
struct GateRead<'g>(&'g ReadGate);

impl Drop for GateRead<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// The gate closed by [`ReadGate::close`]; opens it again however the caller ends.
struct GateClosed<'g>(&'g ReadGate);

impl Drop for GateClosed<'_> {
    fn drop(&mut self) {
        self.0
            .closed
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let _g = self.0.lock();
        self.0.changed.notify_all();
    }
}

/// How a write's turn in a batch ended.
enum Step<T> {
    /// For good: committed (in a batch this write committed), failed or panicked.
    Over(Ran<T>),
    /// Kept in the numbered batch, which a later write commits (or gives up, if a failed
    /// write in it cannot be taken back).
    Joined(T, u64),
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(cv: &Condvar, st: MutexGuard<'a, GroupState>) -> MutexGuard<'a, GroupState> {
        cv.wait(st).unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the batch free and says whom to wake now: the first writer in line, and
    /// callers waiting to have the file alone. The wake-up is sent with [`Wake::send`] once
    /// the state's lock is dropped: a thread woken while the lock is still held would find
    /// it taken and sleep again, paying a second wake-up on every hand-off.
    #[must_use = "a release wakes nobody until the wake-up is sent"]
    fn release(&self, st: &mut GroupState) -> Wake<'_> {
        st.busy = false;
        Wake {
            next: st.queue.front().cloned(),
            alone: (st.exclusive > 0).then_some(&self.alone),
            done: None,
        }
    }
}

/// A turn with the file alone ([`Store::alone`]); dropping it gives the turn back and wakes
/// whoever may go next.
struct AloneTurn<'g>(&'g Group);

impl Drop for AloneTurn<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.exclusive -= 1;
        let wake = self.0.release(&mut st);
        drop(st);
        wake.send();
    }
}

/// One write's hold on its batch, from taking its turn until it hands the batch on, commits
/// it or gives it up ([`BatchTurn::end`]). Every engine call in between turns a panic into an
/// error, but should redkeep's own code panic there, dropping the turn unended gives the
/// batch up: the writes kept in it are told their commit failed, and the next in line may
/// go, instead of every writer after it waiting forever.
struct BatchTurn<'g> {
    group: &'g Group,
    ended: bool,
    // Whether this write is counted among the batch's kept writes.
    counted: bool,
    // Once the batch is being committed: its number and the writes kept in it.
    committing: Option<(u64, usize)>,
}

impl<'g> BatchTurn<'g> {
    fn new(group: &'g Group) -> BatchTurn<'g> {
        BatchTurn {
            group,
            ended: false,
            counted: false,
            committing: None,
        }
    }

    /// The turn ended as usual: the batch was handed on, committed or given up.
    fn end(&mut self) {
        self.ended = true;
    }
}

impl Drop for BatchTurn<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let g = self.group;
        let mut st = g.lock();
        let (batch, members) = self.committing.unwrap_or_else(|| {
            let (batch, members, _) = st.close_batch();
            (batch, members)
        });
        let why = if self.committing.is_some() {
            "redkeep failed inside the commit (a panic), so it was given up"
        } else {
            "redkeep failed while running a write of the batch (a panic), so the batch was given \
             up"
        };
        // This write's own caller learns of it from the panic.
        let others = members.saturating_sub(usize::from(self.counted));
        st.leave_outcome(batch, Some(why.into()), others);
        let wake = Wake {
            done: Some(&g.done),
            ..g.release(&mut st)
        };
        drop(st);
        wake.send();
    }
}

/// Whom a change of the group's state wakes, sent after its lock is dropped.
struct Wake<'g> {
    // The first writer in line.
    next: Option<Arc<Condvar>>,
    // Callers waiting to have the file alone.
    alone: Option<&'g Condvar>,
    // The writers of a batch just committed.
    done: Option<&'g Condvar>,
}

impl Wake<'_> {
    fn send(self) {
        if let Some(done) = self.done {
            done.notify_all();
        }
        if let Some(next) = self.next {
            next.notify_one();
        }
        if let Some(alone) = self.alone {
            alone.notify_all();
        }
    }
}

/// How one write in a batch ended.
enum Ran<T> {
    Kept(T),
    Failed(Error),
    Panicked(Box<dyn std::any::Any + Send>),
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(owner) = &self.owner_file {
            // Only remove the marker if it is still ours.
            if read_owner(owner).is_some_and(|o| o.pid == std::process::id()) {
                let _ = std::fs::remove_file(owner);
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("mode", &self.inner.mode)
            .finish()
    }
}

/// The commit [`Store::open_mended`] opened a damaged file at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MendedHeader {
    /// The header was damaged (else it was sound, and the file did not open for another
    /// reason).
    pub(crate) damaged: bool,
    /// The commit before the latest one (else the latest).
    pub(crate) previous: bool,
    /// Every page of its trees was checked against their checksums (else they are read as
    /// they come).
    pub(crate) verified: bool,
    /// Its transaction id, as the header reads.
    pub(crate) transaction: u64,
}

/// Who holds a store exclusively, as recorded in `<db>.owner` next to the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owner {
    /// Process id of the holder.
    pub pid: u32,
    /// When it opened the store (Unix seconds).
    pub since: i64,
}

/// The path of the owner marker of the store at `db`.
pub fn owner_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".owner");
    db.with_file_name(name)
}

/// Reads the owner marker, if any and well-formed.
pub fn read_owner(owner_file: &Path) -> Option<Owner> {
    let text = std::fs::read_to_string(owner_file).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether a process with this pid is running (signal 0 reaches it, or exists but is not ours).
pub fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// The CLI's commands that take a command of their own (`redkeep user list`).
pub(crate) const COMMAND_GROUPS: &[&str] = &[
    "invite",
    "user",
    "role",
    "session",
    "agent",
    "apikey",
    "audit",
    "org",
    "migrate",
    "inspect",
    "workspace",
    "gallery",
];

/// The `redkeep` command a process runs (`redkeep migrate up`), when it is the CLI: its
/// program name and up to two plain words of its arguments, the command's, before its
/// first option (a value may be a token). `None` for any other program, or where `/proc`
/// cannot tell.
pub(crate) fn redkeep_command(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    redkeep_command_in(&raw)
}

/// [`redkeep_command`] of a NUL-separated command line.
pub(crate) fn redkeep_command_in(cmdline: &[u8]) -> Option<String> {
    let mut args = cmdline.split(|&b| b == 0).map(String::from_utf8_lossy);
    let program = args.next()?;
    if Path::new(program.as_ref()).file_name()? != "redkeep" {
        return None;
    }
    // Plain lowercase words only: a path, an email, a token (`rks_…`) is never one. The
    // values of the global options that take one (`--data-dir sl`) are not command words,
    // and the command's words end at its first option (`adopt --preset code-monet`).
    let mut words: Vec<String> = Vec::new();
    let mut value_next = false;
    for a in args {
        let is_value = std::mem::replace(
            &mut value_next,
            matches!(a.as_ref(), "--data-dir" | "--store"),
        );
        if a.starts_with('-') {
            if words.is_empty() {
                continue;
            }
            break;
        }
        if is_value || a.is_empty() || !a.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            continue;
        }
        words.push(a.into_owned());
        // A command group takes a second word (`user list`); a command alone takes a plain
        // argument next (`backup nightly`), never shown.
        if words.len() == 2 || !COMMAND_GROUPS.contains(&words[0].as_str()) {
            break;
        }
    }
    Some(
        std::iter::once("redkeep".to_string())
            .chain(words)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// How long an exclusive open of a redb file waits by default while another process holds
/// it without an owner marker, before it is refused: such a holder may be a command that
/// only reads (`status`, a listing), which holds the file for a moment.
const BRIEF_HOLD: Duration = Duration::from_millis(500);

/// [`FileDb::open`], which in `Mode::Exclusive` tries again for `options.wait_for_readers`
/// while the file is held by another process that left no live owner marker (an
/// application holding it leaves one, and is named at once), saying so once as it begins
/// to wait.
fn open_waiting_for_readers(path: &Path, spec: OpenSpec, options: &StoreOptions) -> Result<FileDb> {
    // No deadline when the wait is too long to add to the clock (`Duration::MAX`).
    let deadline = std::time::Instant::now().checked_add(options.wait_for_readers);
    let mut pause = Duration::from_millis(5);
    let mut told = false;
    loop {
        match FileDb::open(path, spec.clone()) {
            Err(Error::InUse { .. })
                if options.mode == Mode::Exclusive
                    && deadline.is_none_or(|d| std::time::Instant::now() < d)
                    && !redb_file::open_here(path)
                    && !read_owner(&owner_path(path)).is_some_and(|o| process_alive(o.pid)) =>
            {
                if !told {
                    told = true;
                    let wait = ReadersWait {
                        path: path.to_path_buf(),
                        pids: super::open_by::pids_holding(path),
                        limit: options.wait_for_readers,
                    };
                    match &options.on_wait_for_readers {
                        Some(notice) => notice(&wait),
                        None if wait.limit > BRIEF_HOLD => tracing::warn!("{wait}"),
                        None => tracing::debug!("{wait}"),
                    }
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The first table other than `meta` that holds anything: a store that has one has been
/// written to.
fn populated_table(tx: &ReadTx<'_>) -> Result<Option<String>> {
    use super::tx::{Meta, Source};
    for name in tx.table_names()? {
        if name != super::tx::META && tx.raw().len(&name)? > 0 {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Whether `e` comes from a lost connection to a PostgreSQL server (it stopped or
/// restarted, the network or a proxy cut the connection, its session was ended), or from a
/// new connection to it that failed, not from a statement the server refused: for a
/// command that had the server, it went away.
pub(crate) fn lost_server(e: &Error) -> bool {
    #[cfg(feature = "postgres")]
    {
        if matches!(e, Error::Storage { context, .. } if *context == super::engine::pg::CONNECTING)
        {
            return true;
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if let Some(pg) = c.downcast_ref::<postgres::Error>() {
                return super::engine::pg::is_lost_connection(pg);
            }
            cause = c.source();
        }
    }
    let _ = e;
    false
}

/// Whether `e` refuses an open because this very process has the store alone, through
/// another handle (a PostgreSQL store's lock session): to a move, whose source is all this
/// process holds alone, its target is its source named another way.
pub(crate) fn held_alone_here(e: &Error) -> bool {
    #[cfg(feature = "postgres")]
    if let Error::InUse { holder, .. } = e {
        return holder.starts_with(super::engine::pg::HELD_ALONE_HERE);
    }
    let _ = e;
    false
}

/// Whether a refused read-only open is one an open for writing may get past, or explain in
/// the words every command uses: a file not closed cleanly (the write open repairs it), one
/// redb cannot read as it is (damaged, not a store), an I/O failure. Not a store another
/// process holds, one to migrate or a missing one: a write open fails the same way, after
/// rewriting some of the file's bytes.
pub(crate) fn opened_for_writing_instead(e: &Error) -> bool {
    matches!(
        e,
        Error::Storage { .. } | Error::Damaged { .. } | Error::Io { .. }
    )
}

fn describe_holder(db: &Path, waited: Duration) -> String {
    if redb_file::open_here(db) {
        return "this process has it open already, through another handle; use that handle \
                (its clones share it) rather than opening the data dir a second time, or, for \
                what needs the store to itself (restore, reset, move, migrations), drop every \
                handle and clone first"
            .to_string();
    }
    match read_owner(&owner_path(db)) {
        Some(o) if process_alive(o.pid) => match redkeep_command(o.pid) {
            Some(command) => format!(
                "process {} (`{command}`, a redkeep command) holds it exclusively; wait for it to finish",
                o.pid
            ),
            None => format!(
                "process {} holds it exclusively; stop that process, or open it in shared mode there",
                o.pid
            ),
        },
        _ => describe_readers(db, waited),
    }
}

/// Who has the store file at `db` open without holding it alone (no live owner marker),
/// named by pid where the system tells; `waited` is how long the open waited for them.
fn describe_readers(db: &Path, waited: Duration) -> String {
    let pids = super::open_by::pids_holding(db);
    let after = if waited.is_zero() {
        String::new()
    } else {
        format!(", still after waiting {}", seconds(waited))
    };
    if pids.is_empty() {
        return format!(
            "another process has it open (shared, or exclusively without a marker){after}; \
             wait for it to finish or stop it"
        );
    }
    let redkeep = pids.iter().all(|p| redkeep_command(*p).is_some());
    format!(
        "{} {} it open, to read it or in shared mode{after}; {}",
        name_processes(&pids),
        if pids.len() == 1 { "has" } else { "have" },
        if redkeep {
            "a redkeep command ends by itself: wait for it to finish"
        } else {
            "wait for it to finish or stop it"
        }
    )
}

impl Store {
    /// A store on `engine` that knows nothing of it yet.
    fn assemble(
        engine: Engine,
        path: PathBuf,
        mode: Mode,
        owner_file: Option<PathBuf>,
        options: &StoreOptions,
    ) -> Store {
        Store {
            inner: Arc::new(Inner {
                engine,
                damaged: Mutex::new(None),
                behind: Mutex::new(None),
                is_behind: std::sync::atomic::AtomicBool::new(false),
                path,
                mode,
                durability: options.durability,
                owner_file,
                copies_at: options.copies_at.clone(),
                registry: Registry::default(),
                group: Group::default(),
                reads: ReadGate::default(),
                committer: OnceLock::new(),
            }),
        }
    }

    /// Opens (and with `options.create`, creates) the store file at `path`.
    ///
    /// # Errors
    /// `NotInitialized` when the file is missing and `create` is off; `InUse` when another
    /// process holds it in an incompatible mode; `NewerSchema` / `MigrationNeeded` on a schema
    /// mismatch; `Storage` or `Io` when the file cannot be opened.
    pub fn open(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Store> {
        let store = Self::open_unchecked(path, options)?;
        store.check_schema(options)?;
        Ok(store)
    }

    /// Opens the store on the PostgreSQL server `url` names (`postgres://…` or a libpq
    /// key/value string; `schema=NAME` picks the schema, `redkeep` by default). With
    /// `read_only`, every write fails with `ReadOnly`.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed URL; `NotInitialized` when the schema is missing and
    /// `create` is off; `Storage` when the server cannot be reached; schema mismatches as
    /// [`Store::open`].
    #[cfg(feature = "postgres")]
    pub fn open_postgres(url: &str, options: &StoreOptions, read_only: bool) -> Result<Store> {
        let pg = super::engine::pg::PgDb::open(url, options.create, read_only)?
            .with_faults(options.faults.clone());
        let path = PathBuf::from(pg.shown());
        let store = Store::assemble(Engine::Pg(Box::new(pg)), path, Mode::Shared, None, options);
        if read_only {
            match store.schema_version()? {
                Some(v) if v > options.schema_version => {
                    return Err(Error::NewerSchema {
                        found: v,
                        supported: options.schema_version,
                    });
                }
                _ => {}
            }
        } else {
            store.check_schema(options)?;
        }
        Ok(store)
    }

    /// Opens (creating when missing) the store on the PostgreSQL server `url` names without
    /// looking at its schema version or writing one: a store made here holds nothing until
    /// its first write (what `move` makes its target with, so that its first write can say
    /// that the store is being filled).
    ///
    /// # Errors
    /// As [`Store::open_postgres`], without the schema mismatches.
    #[cfg(feature = "postgres")]
    pub(crate) fn open_postgres_unchecked(url: &str, options: &StoreOptions) -> Result<Store> {
        let pg = super::engine::pg::PgDb::open(url, true, false)?;
        let path = PathBuf::from(pg.shown());
        Ok(Store::assemble(
            Engine::Pg(Box::new(pg)),
            path,
            Mode::Shared,
            None,
            options,
        ))
    }

    /// Opens the file to read it only (no write, no repair on open); writes fail. In
    /// `Mode::Shared` it shares the file with shared writers and reads their commits; in
    /// `Mode::Exclusive` it keeps every writer out while it is open (what reading a file
    /// redb will not open for writing needs).
    pub(crate) fn open_read_only(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let spec = OpenSpec {
            cache_bytes: options.cache_bytes,
            shared: options.mode == Mode::Shared,
            faults: None,
        };
        let db = FileDb::open_read_only(&path, spec).map_err(|e| match e {
            Error::InUse { .. } => Error::InUse {
                holder: describe_holder(&path, Duration::ZERO),
                path: path.clone(),
            },
            e => with_path(e, &path),
        })?;
        Ok(Store::assemble(
            Engine::File(RwLock::new(db)),
            path,
            Mode::Shared,
            None,
            options,
        ))
    }

    /// Whether anything of the file at `path` can be read (opened to read only, or through
    /// a mended header: [`Store::open_mended`]), when it cannot be opened to write: what
    /// decides whether a salvage has anything to copy.
    #[cfg(feature = "admin")]
    pub(crate) fn can_be_read(path: &Path) -> bool {
        Self::open_to_salvage(path, &StoreOptions::default()).is_ok() || Self::header_damaged(path)
    }

    /// Opens the file to read what can be read of it: read-only, keeping every writer out,
    /// or failing that, in shared mode, which does not load the allocator state (damage
    /// there keeps the first open out, not the second). Opened so, a file is taken only
    /// when its list of tables or its schema version can be read: that open checks little.
    pub(crate) fn open_to_salvage(path: &Path, options: &StoreOptions) -> Result<Store> {
        let exclusive = StoreOptions {
            mode: Mode::Exclusive,
            ..options.clone()
        };
        Self::open_read_only(path, &exclusive).or_else(|first| {
            let shared = StoreOptions {
                mode: Mode::Shared,
                ..options.clone()
            };
            match Self::open_read_only(path, &shared) {
                Ok(store)
                    if store.read(|tx| tx.table_names()).is_ok()
                        || store.schema_version().is_ok() =>
                {
                    Ok(store)
                }
                _ => Err(first),
            }
        })
    }

    /// Whether the header of the file at `path` is damaged in a way a mended header gets
    /// past (a damaged magic number, geometry or region counts, or a commit record that is
    /// not sound, with a commit record left to mend from): then redb reads it at the wrong
    /// places, an older commit, or not at all (a damaged format byte in the record before
    /// the latest is enough for that). `false` when that cannot be told.
    pub(crate) fn header_damaged(path: &Path) -> bool {
        use super::engine::header::{self, CommitRecord};
        let damaged = || {
            let found = header::Header::read(path).ok().flatten()?;
            let fresh = header::fresh().ok()?;
            let record = !found.sound(CommitRecord::Previous);
            Some(
                (found.damaged(&fresh) || found.counts_damaged() || record)
                    && found.corrected().mendable(),
            )
        };
        damaged() == Some(true)
    }

    /// Opens the file at `path`, a byte copy of a damaged store that none of the other
    /// opens could open, through a header rewritten to name one commit record (see
    /// [`header`](super::engine::header)). The header is rewritten in place, so `path` must
    /// be a copy nobody else uses. Tried in turn: the latest commit, then the one before it,
    /// each with every page of its trees checked against their checksums; then, of a file
    /// whose magic number and geometry read as redb writes them, each record that reads as
    /// written (or was told back bit for bit) with its pages read as they come (a file with
    /// damaged pages too). `None` when none opens, or no commit record is left to mend from
    /// (then its header is as it was).
    ///
    /// # Errors
    /// `Io` when the header cannot be read or written; `Storage` when redb cannot make the
    /// new header the geometry is taken from.
    pub(crate) fn open_mended(
        path: &Path,
        options: &StoreOptions,
    ) -> Result<Option<(Store, MendedHeader)>> {
        use super::engine::header::{self, CommitRecord, Header};
        let Some(found) = Header::read(path)? else {
            return Ok(None);
        };
        let corrected = found.corrected();
        if !corrected.mendable() {
            return Ok(None);
        }
        let fresh = header::fresh()?;
        let layout_damaged = found.layout_damaged(&fresh);
        let counts_damaged = found.counts_damaged();
        let exclusive = StoreOptions {
            mode: Mode::Exclusive,
            ..options.clone()
        };
        // A geometry unlike a new file's is damaged (every open refuses it): a new file's
        // is taken.
        let fresh_geometry = !found.same_geometry(&fresh);
        let mut attempts = Vec::new();
        for record in [CommitRecord::Latest, CommitRecord::Previous] {
            attempts.push((record, true, fresh_geometry));
        }
        // Unchecked, only what reads as redb wrote it: a record that is sound, in a file
        // whose layout is.
        if !layout_damaged {
            for record in [CommitRecord::Latest, CommitRecord::Previous] {
                if corrected.sound(record) {
                    attempts.push((record, false, false));
                }
            }
        }
        for (record, verified, fresh_geometry) in attempts {
            let mended = corrected.mended(record, verified, &fresh, fresh_geometry);
            // A record of zeros mends into an empty store, which checks clean.
            if !mended.has_tables(record) {
                continue;
            }
            mended.write(path)?;
            let opened = if verified {
                Self::open_unchecked(path, &exclusive).ok()
            } else {
                // Taken only if its tables can be listed.
                Self::open_unchecked(path, &exclusive)
                    .or_else(|_| Self::open_to_salvage(path, options))
                    .ok()
                    .filter(|s| s.read(|tx| tx.table_names()).is_ok())
            };
            if let Some(store) = opened {
                let mended = MendedHeader {
                    damaged: layout_damaged
                        || counts_damaged
                        || !found.sound(CommitRecord::Latest)
                        || !found.sound(CommitRecord::Previous),
                    previous: record == CommitRecord::Previous,
                    verified,
                    transaction: corrected.transaction(record),
                };
                return Ok(Some((store, mended)));
            }
        }
        found.write(path)?;
        Ok(None)
    }

    /// Opens an existing store only to read it: its schema must not be newer than this
    /// build's; every write fails with `ReadOnly`.
    pub(crate) fn open_to_read(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Store> {
        // Opened only to read, a file cut short opens, and reads as far as it goes. (A
        // damaged geometry, which makes it look short, is said as such.)
        let path_ref = path.as_ref();
        if let Some(found) = super::engine::header::unwritten(path_ref) {
            return Err(Error::Unwritten {
                path: path_ref.to_path_buf(),
                found: found.into(),
            });
        }
        if let Some(reason) = super::engine::header::first_bytes_problem(path_ref)
            .or_else(|| super::engine::header::cut_short(path_ref))
        {
            return Err(Error::Damaged {
                path: path.as_ref().to_path_buf(),
                reason,
            });
        }
        let store = Self::open_read_only(path, options)?;
        match store.schema_version()? {
            Some(v) if v > options.schema_version => Err(Error::NewerSchema {
                found: v,
                supported: options.schema_version,
            }),
            _ => Ok(store),
        }
    }

    /// Opens the file without looking at its schema version (salvage reads what it can of
    /// any file).
    pub(crate) fn open_unchecked(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let exists = path.exists();
        if !exists && !options.create {
            return Err(Error::NotInitialized { path });
        }
        // A file that holds nothing (empty, or what redb's first writes of a new file leave
        // when they do not all reach the disk) is not a new store: it may be one that
        // something cut short, and redb would take an empty one for a new file. It is never
        // re-created here; only `init` replaces it (`Redkeep::open_to_init`), in a data dir
        // that shows no sign of having held a store.
        if exists && let Some(found) = super::engine::header::unwritten(&path) {
            return Err(Error::Unwritten {
                path,
                found: found.into(),
            });
        }
        let made = if exists {
            None
        } else {
            // Create the file ourselves so it is 0600 from the first byte.
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            Some(file)
        };
        let spec = OpenSpec {
            cache_bytes: options.cache_bytes,
            shared: options.mode == Mode::Shared,
            faults: options.faults.clone(),
        };
        let db = open_waiting_for_readers(&path, spec, options).map_err(|e| {
            // The file made here and left holding nothing (its first write or sync failed)
            // would stop every later open: it goes, so that a retry starts afresh.
            if let Some(file) = &made {
                Self::remove_unwritten(&path, Some(file));
            }
            match e {
                Error::InUse { .. } => Error::InUse {
                    holder: describe_holder(
                        &path,
                        if options.mode == Mode::Exclusive {
                            options.wait_for_readers
                        } else {
                            Duration::ZERO
                        },
                    ),
                    path: path.clone(),
                },
                e => with_path(e, &path),
            }
        })?;
        let owner_file = (options.mode == Mode::Exclusive).then(|| owner_path(&path));
        if let Some(owner) = &owner_file {
            let marker = Owner {
                pid: std::process::id(),
                since: crate::clock::unix_now(),
            };
            let text = serde_json::to_string(&marker).unwrap_or_default();
            crate::fsutil::write_private(owner, text.as_bytes())?;
        }
        let store = Store::assemble(
            Engine::File(RwLock::new(db)),
            path,
            options.mode,
            owner_file,
            options,
        );
        Ok(store)
    }

    /// What the store file at `path` holds when no store was ever written in it (see
    /// [`Error::Unwritten`]); `None` when it may hold anything else.
    pub(crate) fn unwritten(path: &Path) -> Option<&'static str> {
        super::engine::header::unwritten(path)
    }

    /// Removes the store file at `path` if it holds nothing ([`Store::unwritten`]), nobody
    /// has it open, and (with `made`, the handle of the file a caller created) it is still
    /// that file; returns whether it was removed. Best effort: what cannot be told keeps
    /// the file. Looked at while its lock is held, so no open of it (every redb open locks
    /// the file) writes a store into it meanwhile.
    pub(crate) fn remove_unwritten(path: &Path, made: Option<&std::fs::File>) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(file) = OpenOptions::new().read(true).open(path) else {
            return false;
        };
        let same =
            |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
        let (Ok(here), Ok(named)) = (file.metadata(), std::fs::symlink_metadata(path)) else {
            return false;
        };
        if !named.is_file()
            || !same(&here, &named)
            || made.is_some_and(|m| m.metadata().map_or(true, |m| !same(&m, &here)))
        {
            return false;
        }
        if file.try_lock().is_err() || Self::unwritten(path).is_none() {
            return false;
        }
        std::fs::remove_file(path).is_ok()
    }

    fn check_schema(&self, options: &StoreOptions) -> Result<()> {
        let found = self.schema_version()?;
        match found {
            // No version, yet records: the version's entry was lost (a damaged page), or the
            // file is another program's. Writing one would take the file for a new store,
            // and a write copies the damaged page into a sound one, where nothing finds the
            // damage again.
            None if let Some(table) = self.read(populated_table)? => Err(Error::Damaged {
                path: self.path().to_path_buf(),
                reason: format!(
                    "it holds records (in {table}) but no schema version: the version's \
                     entry in meta was lost, or this is not a redkeep store"
                ),
            }),
            None => self.write(|tx| {
                tx.set_schema_version(options.schema_version)?;
                // The version the file was made at: steps up to it never ran on it, so
                // reverting them has nothing of theirs to take out.
                tx.set_meta(crate::store::BORN_AT, &options.schema_version.to_be_bytes())
            }),
            Some(v) if v > options.schema_version => Err(Error::NewerSchema {
                found: v,
                supported: options.schema_version,
            }),
            Some(v) if v < options.schema_version && !options.allow_outdated => {
                Err(Error::MigrationNeeded {
                    found: v,
                    needed: options.schema_version,
                })
            }
            Some(_) => Ok(()),
        }
    }

    /// The file's schema version, or `None` on a brand-new file (or one whose version was
    /// lost: see [`Store::open`]).
    ///
    /// # Errors
    /// `Storage` when the file cannot be read.
    pub fn schema_version(&self) -> Result<Option<u64>> {
        self.read(|tx| tx.schema_version())
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The mode the store was opened in.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The path next to which copies taken before migrations are written.
    pub(crate) fn copies_base(&self) -> PathBuf {
        self.inner
            .copies_at
            .clone()
            .unwrap_or_else(|| self.inner.path.clone())
    }

    /// Which engine holds the store: `redb` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match &self.inner.engine {
            Engine::File(_) => "redb",
            #[cfg(feature = "postgres")]
            Engine::Pg(_) => "postgres",
        }
    }

    /// Where the store is: the file's path, or the server and schema (without password).
    pub fn location(&self) -> String {
        self.inner.path.display().to_string()
    }

    /// The schema of a store on a server; `None` for a redb file.
    pub(crate) fn schema(&self) -> Option<&str> {
        match &self.inner.engine {
            Engine::File(_) => None,
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => Some(pg.schema()),
        }
    }

    /// Why writes are refused, if a corruption was seen.
    pub fn damage(&self) -> Option<String> {
        self.inner
            .damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Marks the store as migrated down by this handle to `found`, below the `needed` version
    /// this build writes (`None`: migrated back up): writes other than migrations are refused
    /// meanwhile, so this build never writes its records into an older schema.
    pub(crate) fn set_behind(&self, behind: Option<(u64, u64)>) {
        let mut b = self.inner.behind.lock().unwrap_or_else(|e| e.into_inner());
        *b = behind;
        self.inner
            .is_behind
            .store(behind.is_some(), std::sync::atomic::Ordering::Release);
    }

    /// Refuses work on records of this build's schema while this handle has migrated the
    /// store below it (their tables hold the older layout).
    ///
    /// # Errors
    /// `MigrationNeeded` after a `migrate down` through this handle, until a `migrate up`.
    #[inline]
    pub(crate) fn refuse_behind(&self) -> Result<()> {
        if !self
            .inner
            .is_behind
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Ok(());
        }
        self.behind_error()
    }

    #[cold]
    #[inline(never)]
    fn behind_error(&self) -> Result<()> {
        match *self.inner.behind.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((found, needed)) => Err(Error::MigrationNeeded { found, needed }),
            None => Ok(()),
        }
    }

    /// Lets writes through again after a repair that left the store sound.
    pub(crate) fn clear_damage(&self) {
        *self.inner.damaged.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Empties, in a write of their own, the tables of index builds refused in writes that
    /// failed (their own emptying was rolled back with them), unless the catalog lists an
    /// index of that name: built by now, or kept by another version of the type (as not
    /// unique, say), whose entries must stay. Best effort: a failure leaves them for a
    /// repair, which `check` reports.
    #[cold]
    #[inline(never)]
    fn clear_refused_builds(&self) {
        let refused = self.inner.registry.take_refused_builds();
        if refused.is_empty() {
            return;
        }
        let cleared = self.write_anyway(self.inner.durability, |tx| {
            let catalog = tx.catalog()?;
            let raw = tx.raw_write()?;
            for build in &refused {
                let entry = catalog.iter().find(|t| t.name == build.table);
                for (name, _, table) in &build.indexes {
                    let listed = entry.is_some_and(|e| e.indexes.iter().any(|i| i.name == *name));
                    if !listed {
                        raw.delete_table(table)?;
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = cleared {
            tracing::warn!(error = %e, "the tables of a refused index build could not be emptied");
        }
    }

    /// Looks at the outcome of a transaction: a corruption seen makes the store refuse
    /// writes; an I/O failure that left the engine refusing work reopens the file.
    fn observe<T>(&self, outcome: Result<T>) -> Result<T> {
        outcome.map_err(|e| self.failed(e))
    }

    /// What a failed operation leaves behind: damage is remembered (writes are refused
    /// from then on), a file handle that an I/O failure made unusable is reopened. Out of
    /// line and cold, so every operation's own code stays small.
    #[cold]
    #[inline(never)]
    fn failed(&self, e: Error) -> Error {
        let e = with_path(e, &self.inner.path);
        if (is_damage(&e) && !self.app_index_astray(&e)) || self.own_misfit(&e) {
            let mut d = self.inner.damaged.lock().unwrap_or_else(|p| p.into_inner());
            if d.is_none() {
                tracing::error!(error = %e, "corruption seen; the store refuses writes until `redkeep check --repair` or a restore");
                *d = Some(e.to_string());
            }
        } else if redb_file::needs_reopen(&e)
            && let Engine::File(file) = &self.inner.engine
            // Inside a transaction of this store (a read inside a write) the reopen would wait
            // for it; the transaction's own failure reopens the file once it ends.
            && Inside::of(&self.inner).is_none()
        {
            match self.alone(file, FileDb::reopen) {
                Ok(()) => tracing::warn!(error = %e, "the store was reopened after an I/O failure"),
                Err(again) => tracing::error!(error = %again, "the store could not be reopened"),
            }
        }
        e
    }

    /// Whether `e` is an entry of an application's index that does not lead to its record:
    /// most likely the index was redefined (made unique, or given another key) without a
    /// build, which is the type's to settle (`register_table`, a repair), not damage to the
    /// file. Reads through it fail; writes go on.
    fn app_index_astray(&self, e: &Error) -> bool {
        match e {
            Error::Corrupt { table, reason, .. } => {
                super::table::INDEX_ENTRY_ASTRAY
                    .iter()
                    .any(|astray| reason.contains(astray))
                    && !self.inner.registry.is_reserved(table)
            }
            _ => false,
        }
    }

    /// Whether `e` is a whole record that does not fit its type in one of the tables kept
    /// for the handle's own types (redkeep's): not an application's type mismatch but a
    /// damaged record or a bug, so it counts as damage.
    fn own_misfit(&self, e: &Error) -> bool {
        match e {
            Error::Corrupt { table, reason, .. } if reason.contains(super::table::DOES_NOT_FIT) => {
                self.inner.registry.is_reserved(table)
            }
            _ => false,
        }
    }

    /// Runs `f` with the file to itself: no batch is open and none begins meanwhile. Never
    /// called inside a transaction of this store on this thread (it would wait for it).
    fn alone<T>(&self, file: &RwLock<FileDb>, f: impl FnOnce(&mut FileDb) -> T) -> T {
        let _turn = self.commits_wait();
        // The reads under way end first, new ones wait (see [`ReadGate`]); then nobody
        // holds the lock.
        let _closed = self.inner.reads.close();
        let mut db = file.write().unwrap_or_else(|p| p.into_inner());
        f(&mut db)
    }

    /// Takes the file's turn: no batch is open and none begins (no commit) until the turn
    /// is dropped; reads go on. Never called inside a transaction of this store on this
    /// thread (it would wait for it).
    fn commits_wait(&self) -> AloneTurn<'_> {
        let g = &self.inner.group;
        let mut st = g.lock();
        st.exclusive += 1;
        while st.busy || st.open.is_some() {
            st = Group::wait(&g.alone, st);
        }
        st.busy = true;
        drop(st);
        // The turn is given back however the caller ends, a panic included, or every
        // writer after it would wait forever.
        AloneTurn(g)
    }

    /// Callers that wait to have the file alone or have it (a file check, a reopen), for
    /// tests that need one to wait.
    #[doc(hidden)]
    pub fn waiting_checks(&self) -> usize {
        self.inner.group.lock().exclusive
    }

    /// Writers waiting for their turn in a batch (for tests that need a batch to form).
    #[doc(hidden)]
    pub fn waiting_writers(&self) -> usize {
        let st = self.inner.group.lock();
        st.queue.len() + st.pending
    }

    /// Runs `f` as one write of a batch (see [`Group`]) on the thread that commits the file's
    /// batches when others are in the batch or in line, else on this thread; returns once the
    /// batch it was kept in is committed.
    fn write_grouped<T: Send>(
        &self,
        file: &RwLock<FileDb>,
        durable: bool,
        f: impl FnOnce(&FileWrite<'_, '_>) -> Result<T> + Send,
    ) -> Result<T> {
        let g = &self.inner.group;
        let mut st = g.lock();
        // A write from inside another store's write, or from any rayon thread (this store's
        // committing thread included), runs where it is: handed over, it could wait for a
        // committing thread that waits for it (a rayon thread waiting for another pool runs
        // its own pool's jobs meanwhile).
        let committer =
            if st.idle() || Inside::any_write() || rayon_core::current_thread_index().is_some() {
                None
            } else {
                self.inner.committer()
            };
        let step = match committer {
            Some(committer) => {
                st.pending += 1;
                let (waits, awaited) = (st.committer_waits, st.arrival_awaited);
                drop(st);
                if waits {
                    g.done.notify_all();
                }
                if awaited {
                    g.arrival.notify_one();
                }
                committer.install(|| {
                    let mut st = g.lock();
                    st.pending -= 1;
                    match self.take_turn(st, file, durable, f) {
                        Step::Joined(value, batch) => {
                            Step::Over(match self.committed_meanwhile(committer, batch) {
                                Ok(()) => Ran::Kept(value),
                                Err(e) => Ran::Failed(e),
                            })
                        }
                        over => over,
                    }
                })
            }
            _ => self.take_turn(st, file, durable, f),
        };
        self.step_outcome(step)
    }

    /// [`Store::write_grouped`] for a write that cannot leave this thread: it runs here, in
    /// its turn.
    fn write_grouped_here<T>(
        &self,
        file: &RwLock<FileDb>,
        durable: bool,
        f: impl FnOnce(&FileWrite<'_, '_>) -> Result<T>,
    ) -> Result<T> {
        let st = self.inner.group.lock();
        let step = self.take_turn(st, file, durable, f);
        self.step_outcome(step)
    }

    /// On the committing thread, once a write there was kept in `batch`: runs the writes that
    /// come to the batch meanwhile (nested, so each returns to its caller only when the batch
    /// is committed, and each caller is woken once), then waits for the batch's outcome.
    fn committed_meanwhile(&self, committer: &rayon_core::ThreadPool, batch: u64) -> Result<()> {
        let g = &self.inner.group;
        let mut st = g.lock();
        loop {
            if let Some(outcome) = st.outcome(batch) {
                return outcome;
            }
            // Once the batch is being committed (or given up) its outcome comes without this
            // thread's help; running later writes now would keep this write's caller waiting
            // for their batch too.
            if st.batch == batch && st.pending > 0 {
                drop(st);
                if committer.yield_now() != Some(rayon_core::Yield::Executed) {
                    std::thread::yield_now();
                }
                st = g.lock();
            } else {
                st.committer_waits = true;
                st = Group::wait(&g.done, st);
                st.committer_waits = false;
            }
        }
    }

    /// What a write's [`Step`] comes to once the batch it was kept in is committed.
    fn step_outcome<T>(&self, step: Step<T>) -> Result<T> {
        let g = &self.inner.group;
        let (value, batch) = match step {
            Step::Over(Ran::Kept(v)) => return Ok(v),
            Step::Over(Ran::Failed(e)) => return Err(e),
            Step::Over(Ran::Panicked(p)) => resume_unwind(p),
            Step::Joined(value, batch) => (value, batch),
        };
        let mut st = g.lock();
        loop {
            if let Some(outcome) = st.outcome(batch) {
                return outcome.map(|()| value);
            }
            st = Group::wait(&g.done, st);
        }
    }

    /// Waits for this write's turn in line (`st` is the group's state, locked), runs `f` in
    /// the open batch or a new one, and either leaves the batch open for the next writer or
    /// commits it.
    fn take_turn<T>(
        &self,
        mut st: MutexGuard<'_, GroupState>,
        file: &RwLock<FileDb>,
        durable: bool,
        f: impl FnOnce(&FileWrite<'_, '_>) -> Result<T>,
    ) -> Step<T> {
        let db = || file.read().unwrap_or_else(|e| e.into_inner());
        let g = &self.inner.group;
        let me = Arc::new(Condvar::new());
        st.queue.push_back(Arc::clone(&me));
        if st.arrival_awaited {
            g.arrival.notify_one();
        }
        // A batch in progress is always joined; a new one waits for whoever wants the file
        // alone. Writers take their turns in the order they came.
        loop {
            let first = st
                .queue
                .front()
                .is_some_and(|first| Arc::ptr_eq(first, &me));
            if first && !st.busy && !(st.open.is_none() && st.exclusive > 0) {
                break;
            }
            st = Group::wait(&me, st);
        }
        st.queue.pop_front();
        st.busy = true;
        let joined = st.open.take();
        drop(st);
        let mut turn = BatchTurn::new(g);
        let first = joined.is_none();
        let open = match joined {
            Some(open) => open,
            None => match db().begin_shared() {
                Ok(open) => open,
                Err(e) => {
                    let mut st = g.lock();
                    turn.end();
                    let wake = g.release(&mut st);
                    drop(st);
                    wake.send();
                    return Step::Over(Ran::Failed(e));
                }
            },
        };
        let undo = (!first).then(UndoLog::default);
        let ran = {
            let _db = db();
            match catch_unwind(AssertUnwindSafe(|| open.run(undo.as_ref(), f))) {
                Ok(Ok(v)) => Ran::Kept(v),
                Ok(Err(e)) => Ran::Failed(e),
                Err(panic) => Ran::Panicked(panic),
            }
        };
        #[cfg(test)]
        tests::panic_if_armed(&self.inner, tests::Point::AfterRun);
        let kept = matches!(ran, Ran::Kept(_));
        // A write that failed is taken back alone; if that is impossible the batch ends here.
        let open = if kept {
            Some(open)
        } else if let Some(log) = undo {
            let undone = {
                let _db = db();
                open.undo(log)
            };
            match undone {
                Ok(()) => Some(open),
                Err(e) => {
                    open.abort();
                    let mut st = g.lock();
                    let (batch, members, _) = st.close_batch();
                    st.leave_outcome(
                        batch,
                        Some(format!(
                            "a write in the same commit failed and could not be taken back: {e}"
                        )),
                        members,
                    );
                    turn.end();
                    let wake = Wake {
                        done: Some(&g.done),
                        ..g.release(&mut st)
                    };
                    drop(st);
                    wake.send();
                    None
                }
            }
        } else {
            // The batch's first write: nothing else is in it, so it simply ends.
            open.abort();
            let mut st = g.lock();
            turn.end();
            let wake = g.release(&mut st);
            drop(st);
            wake.send();
            None
        };
        let Some(open) = open else {
            return Step::Over(match ran {
                Ran::Kept(_) => Ran::Failed(kept_lost()),
                other => other,
            });
        };

        let mut st = g.lock();
        if kept {
            st.kept += 1;
            st.durable |= durable;
            turn.counted = true;
        }
        // Before committing, let writers that are on their way (woken by the previous
        // commit, not yet in line) join the batch (see [`Group`]).
        let mut yields = 0;
        while !st.joining() && st.kept > 1 && st.kept >= st.last && yields < 4 {
            drop(st);
            std::thread::yield_now();
            yields += 1;
            st = g.lock();
        }
        if !st.joining() && st.kept < st.last {
            let deadline = std::time::Instant::now() + (st.last_took / 2).min(ARRIVAL_WAIT);
            while !st.joining() {
                let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                    break;
                };
                st.arrival_awaited = true;
                st = g
                    .arrival
                    .wait_timeout(st, left)
                    .map_or_else(|e| e.into_inner().0, |(st, _)| st);
                st.arrival_awaited = false;
            }
        }
        let batch = st.batch;
        if st.joining() && st.kept < MAX_BATCH {
            // Somebody joins: the last of the batch commits it.
            st.open = Some(open);
            turn.end();
            let wake = g.release(&mut st);
            drop(st);
            wake.send();
            return match ran {
                Ran::Kept(v) => Step::Joined(v, batch),
                other => Step::Over(other),
            };
        }
        // The last of the batch: commit it for everyone in it.
        let (batch, members, durable_batch) = st.close_batch();
        st.last = members;
        turn.committing = Some((batch, members));
        drop(st);
        let began = std::time::Instant::now();
        let committed = if members == 0 {
            open.abort();
            Ok(())
        } else {
            #[cfg(test)]
            tests::panic_if_armed(&self.inner, tests::Point::Commit);
            db().commit(open, durable_batch)
        };
        let mut st = g.lock();
        turn.end();
        st.last_took = began.elapsed();
        let others = members - usize::from(kept);
        let failed = committed.as_ref().err().map(ToString::to_string);
        st.leave_outcome(batch, failed, others);
        let wake = Wake {
            done: (others > 0).then_some(&g.done),
            ..g.release(&mut st)
        };
        drop(st);
        wake.send();
        Step::Over(match (ran, committed) {
            (Ran::Kept(v), Ok(())) => Ran::Kept(v),
            (Ran::Kept(_), Err(e)) => Ran::Failed(e),
            (other, _) => other,
        })
    }

    /// What this handle knows to be committed in the file (shapes, catalog entries).
    /// Keeps each table name of `tables` for its record type: writing a record of another
    /// type into one is refused with `InvalidInput`.
    pub(crate) fn reserve_tables(&self, tables: &[(&'static str, std::any::TypeId)]) {
        self.inner.registry.reserve(tables);
    }

    /// Refuses a record type `ty` other than the one table `name` is kept for (one of
    /// redkeep's own tables, in a handle).
    ///
    /// # Errors
    /// `InvalidInput` naming the type and the table.
    pub(crate) fn refuse_foreign(
        &self,
        name: &str,
        ty: std::any::TypeId,
        type_name: &'static str,
        info: fn() -> super::TableInfo,
    ) -> Result<()> {
        self.inner
            .registry
            .refuse_foreign(name, ty, type_name, info)
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Runs `f` in a write transaction: commits if it returns `Ok`, aborts on `Err` or panic.
    /// The closure may run more than once (engines that retry conflicts re-run it), so side
    /// effects outside the store belong after `write` returns.
    ///
    /// On a redb file, writes from several threads of one handle share commits (group
    /// commit): a write that arrives while another runs waits, then runs in the same
    /// transaction after it, and one commit (one fsync) serves them all. Each still sees every
    /// write before it, and one that fails or panics is taken back alone. Waiting writes take
    /// their turns in about the order they arrived (see below). `write` returns once its
    /// commit is done.
    ///
    /// A write that finds others at work is run by the handle's committing thread, one after
    /// another without waking each writer's own thread in turn; that is why `f` and its value
    /// must be `Send`. [`Store::write_here`] takes a closure that is not. Such a write takes
    /// its place in line when that thread picks it up, so one that runs on its own thread
    /// and comes just after it may go first. `f` should not use rayon: it may run on the
    /// committing thread, a one-thread rayon pool.
    ///
    /// # Errors
    /// The closure's error; `InvalidInput` for a write begun inside a write or a read of the
    /// same store (directly or through another store's write); `Storage` if the transaction
    /// cannot begin or commit.
    pub fn write<T: Send>(&self, f: impl FnMut(&WriteTx<'_>) -> Result<T> + Send) -> Result<T> {
        self.write_with(self.inner.durability, f)
    }

    /// [`Store::write`] with the durability of this one commit: `Durability::None` commits
    /// without waiting for the disk (the next durable commit carries it), for bookkeeping
    /// that may be lost in a crash or after an I/O error. A store opened with `Durability::None` never waits.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn write_with<T: Send>(
        &self,
        durability: Durability,
        f: impl FnMut(&WriteTx<'_>) -> Result<T> + Send,
    ) -> Result<T> {
        super::engine::note_call("write");
        self.refuse_writes(false)?;
        self.write_anyway(durability, f)
    }

    /// [`Store::write`] for a closure that must stay on this thread (it holds an `Rc`, a
    /// `RefCell` borrow or a reader that is not `Send`): it runs here, and shares commits with
    /// other writes the same way, at the cost of waking this thread for its turn.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn write_here<T>(&self, f: impl FnMut(&WriteTx<'_>) -> Result<T>) -> Result<T> {
        self.refuse_writes(false)?;
        self.write_anyway_here(self.inner.durability, f)
    }

    /// [`Store::write`] without the refusal after a migration down: for migration steps.
    pub(crate) fn write_migrating<T: Send>(
        &self,
        f: impl FnMut(&WriteTx<'_>) -> Result<T> + Send,
    ) -> Result<T> {
        self.refuse_writes(true)?;
        self.write_anyway(self.inner.durability, f)
    }

    /// Whether a write begun here now could run: the store takes writes (not behind its
    /// schema, not damaged), and no write of it runs on this thread.
    pub(crate) fn writes_open(&self) -> bool {
        self.refuse_writes(false).is_ok() && Inside::refuse_nested_write(&self.inner).is_ok()
    }

    /// Refuses a write to a store behind its schema (unless `migrating`) or damaged.
    fn refuse_writes(&self, migrating: bool) -> Result<()> {
        if !migrating {
            self.refuse_behind()?;
        }
        if let Some(reason) = self.damage() {
            return Err(Error::Damaged {
                path: self.inner.path.clone(),
                reason: format!("writes are refused since a corruption was seen ({reason})"),
            });
        }
        Ok(())
    }

    /// Whether a commit at `durability` waits for the disk.
    fn durable(&self, durability: Durability) -> bool {
        // redb shares a file between processes only with durable commits.
        (self.inner.mode == Mode::Shared && self.engine() == "redb")
            || (durability == Durability::Immediate
                && self.inner.durability == Durability::Immediate)
    }

    /// [`Store::write_with`] even on a store that refuses writes: for repairs.
    pub(crate) fn write_anyway<T: Send>(
        &self,
        durability: Durability,
        mut f: impl FnMut(&WriteTx<'_>) -> Result<T> + Send,
    ) -> Result<T> {
        Inside::refuse_nested_write(&self.inner)?;
        let durable = self.durable(durability);
        let mut known = None;
        // The closure may run on the batch's committing thread: it sees this thread's locks
        // and the transactions this thread is inside.
        let held = super::held::snapshot();
        let inside = Inside::snapshot();
        let origin = super::origin::current();
        let outcome = match &self.inner.engine {
            Engine::File(file) => self.write_grouped(file, durable, |raw: &FileWrite<'_, '_>| {
                let _carried = super::held::Carried::install(&held);
                let _inside = Carried::install(&inside);
                self.run_write(raw, origin.clone(), &mut f, &mut known)
            }),
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.write(durable, |raw| {
                self.run_write(raw, origin.clone(), &mut f, &mut known)
            }),
        };
        self.written(outcome, known)
    }

    /// [`Store::write_anyway`] on this thread (see [`Store::write_here`]).
    pub(crate) fn write_anyway_here<T>(
        &self,
        durability: Durability,
        mut f: impl FnMut(&WriteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        Inside::refuse_nested_write(&self.inner)?;
        let durable = self.durable(durability);
        let mut known = None;
        let origin = super::origin::current();
        let outcome = match &self.inner.engine {
            Engine::File(file) => {
                self.write_grouped_here(file, durable, |raw: &FileWrite<'_, '_>| {
                    self.run_write(raw, origin.clone(), &mut f, &mut known)
                })
            }
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.write(durable, |raw| {
                self.run_write(raw, origin.clone(), &mut f, &mut known)
            }),
        };
        self.written(outcome, known)
    }

    /// Runs `f` in the engine's transaction `raw`, noting in `known` what it registered.
    fn run_write<T>(
        &self,
        raw: &dyn RawWrite,
        origin: Option<Arc<str>>,
        f: &mut impl FnMut(&WriteTx<'_>) -> Result<T>,
        known: &mut Option<Registrations>,
    ) -> Result<T> {
        let _writing = Inside::writing(&self.inner);
        let tx = WriteTx::new(raw, &self.inner.registry, origin);
        let value = f(&tx)?;
        tx.flush_sequences()?;
        *known = Some(tx.into_registrations());
        Ok(value)
    }

    /// A write's outcome, noting what it registered once it is committed.
    fn written<T>(&self, outcome: Result<T>, known: Option<Registrations>) -> Result<T> {
        let value = match self.observe(outcome) {
            Ok(value) => value,
            Err(e) => {
                // Not on a store just found damaged: nothing more is written to it.
                if self.damage().is_none() {
                    self.clear_refused_builds();
                }
                return Err(e);
            }
        };
        // Committed: later transactions need not look these up again.
        if let Some(known) = known {
            self.inner.registry.publish(known);
        }
        Ok(value)
    }

    /// Runs `f` on one consistent snapshot. A read begun inside `f` takes a snapshot of its
    /// own; a write or a file check of the same store begun inside `f` is refused (on the
    /// file, it would wait for a check that waits for `f`).
    ///
    /// # Errors
    /// The closure's error, or `Storage` if the snapshot cannot be taken.
    pub fn read<T>(&self, f: impl FnOnce(&ReadTx<'_>) -> Result<T>) -> Result<T> {
        super::engine::note_call("read");
        let nested = Inside::of(&self.inner).is_some();
        let reading = Inside::reading(&self.inner);
        let outcome = match &self.inner.engine {
            Engine::File(file) => {
                // Counted once per thread (see [`ReadGate`]): a read inside a transaction of
                // this store never waits at the gate.
                let _counted = (!nested).then(|| self.inner.reads.enter());
                let db = file.read().unwrap_or_else(|e| e.into_inner());
                db.read(|raw: &FileRead| f(&ReadTx::new(raw, &self.inner.registry)))
            }
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.read(|raw| f(&ReadTx::new(raw, &self.inner.registry))),
        };
        // A failure seen may reopen the file, which waits for every read to end.
        drop(reading);
        self.observe(outcome)
    }

    /// Runs redb's own integrity check (page checksums and allocator state), waiting for
    /// transactions of this handle to end. Returns whether the file was already sound; a
    /// repairable problem is repaired.
    ///
    /// # Errors
    /// `Storage` when the file cannot be checked; `InvalidInput` when called inside a read or
    /// a write of the same store (it would wait for it).
    /// On PostgreSQL, checks the tables' B-tree indexes with `amcheck` when that extension is
    /// installed.
    pub fn check_file(&self) -> Result<bool> {
        Inside::refuse_alone(&self.inner)?;
        let outcome = match &self.inner.engine {
            Engine::File(file) => self.alone(file, FileDb::check_integrity),
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.check_indexes(),
        };
        self.observe(outcome)
    }

    /// Runs redb's integrity check (page checksums and allocator state) on a byte copy of the
    /// file, so the file keeps its bytes whatever it finds. The copy is taken while no write
    /// of this handle commits (writes wait for the copy, not for the check); reads go on
    /// throughout. Returns whether the copy was sound (`false`: a problem
    /// that [`check_file`](Self::check_file) repairs in place). Works on a handle opened only
    /// to read too.
    ///
    /// # Errors
    /// `Damaged` when the pages are damaged; `Io` when no copy can be made; `Busy` when
    /// another process kept writing the file while it was copied; `InvalidInput` when called
    /// inside a read or a write of the same store.
    /// On PostgreSQL, the same as [`check_file`](Self::check_file) (which changes nothing).
    pub fn check_file_copy(&self) -> Result<bool> {
        Inside::refuse_alone(&self.inner)?;
        let outcome = match &self.inner.engine {
            Engine::File(file) => {
                // Only the copy holds commits back; reads go on meanwhile, and the check of
                // the copy holds nothing.
                let copied = {
                    let _turn = self.commits_wait();
                    let db = file.read().unwrap_or_else(|e| e.into_inner());
                    db.copy_for_check()
                };
                copied.and_then(CheckCopy::check)
            }
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.check_indexes(),
        };
        self.observe(outcome)
    }

    /// Copies one snapshot of every table into a new redb file at `dest` (the store as it
    /// is; no index is rebuilt).
    pub(crate) fn copy_file(&self, dest: &Path) -> Result<()> {
        let outcome = match &self.inner.engine {
            Engine::File(file) => file.read().unwrap_or_else(|e| e.into_inner()).copy_to(dest),
            #[cfg(feature = "postgres")]
            Engine::Pg(_) => {
                // `dest` may be a placeholder the caller created to reserve the name; the copy
                // is a new file.
                if std::fs::metadata(dest).is_ok_and(|m| m.len() == 0) {
                    std::fs::remove_file(dest)
                        .map_err(|e| Error::io(format!("replacing {}", dest.display()), e))?;
                }
                let target = Store::open_unchecked(
                    dest,
                    &StoreOptions {
                        durability: Durability::None,
                        ..StoreOptions::default()
                    },
                )?;
                let copied = self.copy_into(&target);
                drop(target);
                copied.map(|_| ())
            }
        };
        self.observe(outcome)
    }

    /// Whether the store was opened only to be read (every write fails with `ReadOnly`).
    pub(crate) fn is_read_only(&self) -> bool {
        match &self.inner.engine {
            Engine::File(file) => file
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_read_only(),
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.is_read_only(),
        }
    }

    /// Runs `f` while no other process has the store open: a redb store is already held
    /// exclusively by whoever opened it so; a PostgreSQL store takes its advisory lock
    /// exclusively. `what` says what is refused otherwise (`be restored`).
    ///
    /// # Errors
    /// `ReadOnly` when the store was opened read-only; `InUse` when another process has the
    /// store open; `f`'s error.
    pub fn alone_with<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.is_read_only() {
            let path = &self.inner.path;
            // (A PostgreSQL store's path is its URL, no file.)
            let on_file = matches!(self.inner.engine, Engine::File(_));
            let what = if on_file && crate::fsutil::on_read_only_fs(path) {
                format!(
                    "{} is on a read-only file system, so it cannot {what}; remount it \
                     read-write",
                    path.display()
                )
            } else {
                format!(
                    "{} is open read-only (as asked, or because this user cannot write the data \
                     dir), so it cannot {what}; run this as the data dir's owner (a user who \
                     may write it)",
                    path.display()
                )
            };
            return Err(Error::ReadOnly { what });
        }
        match &self.inner.engine {
            Engine::File(_) => {
                if self.inner.mode == Mode::Shared {
                    return Err(Error::InUse {
                        path: self.inner.path.clone(),
                        holder: format!(
                            "it is open in shared mode, so other processes may use it and it \
                             cannot {what}; open it exclusively"
                        ),
                    });
                }
                f()
            }
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.alone(what, f),
        }
    }

    /// Whether this process still has the store alone, inside [`Store::alone_with`]: a
    /// PostgreSQL store's lock goes with the session holding it (a server restart,
    /// `idle_session_timeout`, a dropped connection); a redb file's lock stays until closed.
    ///
    /// # Errors
    /// `InUse` when the lock was lost (`what` says what it was held for); `Storage` when the
    /// server cannot be asked.
    pub(crate) fn still_alone(&self, what: &str) -> Result<()> {
        match &self.inner.engine {
            Engine::File(_) => {
                let _ = what;
                Ok(())
            }
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.still_alone(what),
        }
    }

    /// Runs `f` under the store's migration lock (PostgreSQL: one migration at a time across
    /// every instance; a redb file is held by one writer anyway).
    pub(crate) fn migrating<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        match &self.inner.engine {
            Engine::File(_) => f(),
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.migrating(f),
        }
    }

    /// The other connections that have a PostgreSQL store open now (not this process's own
    /// hold), oldest first; `None` for a redb file, whose holder the owner marker names.
    ///
    /// # Errors
    /// `Storage` when the server cannot be asked.
    #[cfg(feature = "admin")]
    pub(crate) fn holders(&self) -> Result<Option<Vec<super::engine::Holder>>> {
        match &self.inner.engine {
            Engine::File(_) => Ok(None),
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.holders().map(Some),
        }
    }

    /// Bytes the store takes: the file's size, or the tables' size on the server.
    ///
    /// # Errors
    /// `Io` or `Storage` when it cannot be measured.
    pub fn size_bytes(&self) -> Result<u64> {
        match &self.inner.engine {
            Engine::File(_) => std::fs::metadata(&self.inner.path)
                .map(|m| m.len())
                .map_err(|e| Error::io(format!("reading {}", self.inner.path.display()), e)),
            #[cfg(feature = "postgres")]
            Engine::Pg(pg) => pg.size(),
        }
    }
}

/// Fills in the store's path in an engine error that does not know it.
fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Damaged { path: p, reason } if p.as_os_str().is_empty() => Error::Damaged {
            path: path.to_path_buf(),
            reason,
        },
        e => e,
    }
}

/// Whether `e` says the store's bytes are damaged: an engine report, or a record whose bytes
/// do not decode (a record of a newer application version is not damage).
fn is_damage(e: &Error) -> bool {
    match e {
        Error::Damaged { .. } => true,
        // A record of a newer application version, or whole bytes that do not fit the
        // application's type, is a mismatch between code and data: the file is sound.
        Error::Corrupt { reason, .. } => {
            !reason.contains(super::table::NEWER_VERSION)
                && !reason.contains(super::table::DOES_NOT_FIT)
        }
        _ => false,
    }
}

/// The failure of a group commit, as the writes that waited for it see it.
#[derive(Debug)]
struct GroupFailed(String);

impl std::fmt::Display for GroupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GroupFailed {}

fn kept_lost() -> Error {
    Error::Invariant {
        what: "a kept write lost its transaction".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    /// A holder that is the CLI is named by its command words only: never a value, which
    /// may be a token; any other program is not named.
    #[test]
    fn a_redkeep_command_holding_the_store_is_named_without_its_values() {
        let line = |args: &[&str]| args.join("\0").into_bytes();
        assert_eq!(
            redkeep_command_in(&line(&[
                "/usr/bin/redkeep",
                "--data-dir",
                "/d",
                "migrate",
                "up"
            ])),
            Some("redkeep migrate up".into())
        );
        assert_eq!(
            redkeep_command_in(&line(&["redkeep", "--data-dir", "sl", "import", "-"])),
            Some("redkeep import".into())
        );
        assert_eq!(
            redkeep_command_in(&line(&[
                "redkeep", "--store", "db", "--json", "user", "list"
            ])),
            Some("redkeep user list".into())
        );
        assert_eq!(
            redkeep_command_in(&line(&["redkeep", "backup", "nightly"])),
            Some("redkeep backup".into())
        );
        assert_eq!(
            redkeep_command_in(&line(&["redkeep", "adopt", "--preset", "code-monet"])),
            Some("redkeep adopt".into())
        );
        assert_eq!(
            redkeep_command_in(&line(&["redkeep", "migrate", "up", "--to", "1"])),
            Some("redkeep migrate up".into())
        );
        assert_eq!(
            redkeep_command_in(&line(&[
                "./redkeep",
                "session",
                "revoke",
                "rks_abcdefgh2345"
            ])),
            Some("redkeep session revoke".into())
        );
        assert_eq!(
            redkeep_command_in(&line(&["/usr/bin/myapp", "serve"])),
            None
        );
        assert_eq!(redkeep_command_in(b""), None);
    }

    /// Where in a write of a batch a panic is injected, in redkeep's own code, outside the
    /// engine calls that turn panics into errors.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub(super) enum Point {
        /// After a write's closure ran, before it is counted in the batch.
        AfterRun,
        /// Before the last write of a batch commits it.
        Commit,
    }

    /// The store (its `Inner`'s address) and the point at which a panic is injected, and how
    /// many times that point is passed before it.
    static PANIC_AT: Mutex<Option<(usize, Point, u32)>> = Mutex::new(None);

    pub(super) fn panic_if_armed(inner: &Inner, here: Point) {
        let me = std::ptr::from_ref(inner) as usize;
        let mut armed = PANIC_AT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((store, point, passes)) = armed.as_mut()
            && *store == me
            && *point == here
        {
            if *passes > 0 {
                *passes -= 1;
                return;
            }
            *armed = None;
            drop(armed);
            panic!("an injected panic at {here:?}");
        }
    }

    /// Arms a panic for `store` at `point` once `passes` writes went by it; disarms when
    /// dropped, so no later store at the same address meets it.
    struct Armed;

    impl Armed {
        fn at(store: &Store, point: Point, passes: u32) -> Armed {
            let me = std::ptr::from_ref(&*store.inner) as usize;
            *PANIC_AT.lock().unwrap_or_else(|e| e.into_inner()) = Some((me, point, passes));
            Armed
        }
    }

    impl Drop for Armed {
        fn drop(&mut self) {
            *PANIC_AT.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// The outcome a thread sends, or a failure naming what never came.
    fn within<T>(rx: &mpsc::Receiver<T>, what: &str) -> T {
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{what} never returned: the group stayed busy"))
    }

    /// A store file that is a symlink is never opened through it, to write or to read:
    /// whoever may write the data dir could point one at another store (or at any file of
    /// the user running redkeep, for redb to write a store into).
    #[test]
    fn a_symlink_in_place_of_the_store_file_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real.redb");
        drop(Store::open(&real, &StoreOptions::default()).unwrap());
        let before = std::fs::read(&real).unwrap();
        let link = tmp.path().join("redkeep.redb");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let refused = |r: Result<Store>| match r {
            Err(Error::UnsafePath { reason, .. }) => {
                assert!(reason.contains("symlink"), "{reason}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened through the symlink"),
        };
        refused(Store::open(&link, &StoreOptions::default()));
        refused(Store::open_to_read(&link, &StoreOptions::default()));
        assert_eq!(std::fs::read(&real).unwrap(), before);
    }

    /// Two writes share a batch: the first holds it open until the second waits to join,
    /// and the second, the last of the batch, commits it. A panic injected at `point` (after
    /// `passes` writes went by it) must give the batch up: the second write panics, the first
    /// is told its commit failed, neither is committed, no outcome is left behind, and a
    /// third write goes on.
    fn a_panic_gives_the_batch_up(point: Point, passes: u32) {
        // One panic is armed at a time: these tests take turns.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("s.redb"), &StoreOptions::default()).unwrap();
        let _armed = Armed::at(&store, point, passes);
        let inside = Arc::new(AtomicBool::new(false));
        let (first_tx, first) = mpsc::channel();
        let (s, now_inside) = (store.clone(), Arc::clone(&inside));
        std::thread::spawn(move || {
            let r = s.write(|tx| {
                tx.set_meta("first", b"1")?;
                now_inside.store(true, Ordering::SeqCst);
                while s.waiting_writers() < 1 {
                    std::thread::yield_now();
                }
                Ok(())
            });
            first_tx.send(r).unwrap();
        });
        while !inside.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let (second_tx, second) = mpsc::channel();
        let s = store.clone();
        std::thread::spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(|| {
                s.write(|tx| tx.set_meta("second", b"2"))
            }));
            second_tx.send(r.is_err()).unwrap();
        });
        assert!(
            within(&second, "the write that met the panic"),
            "it did not panic"
        );
        let e = within(&first, "the write kept in the same batch")
            .expect_err("a write of a batch given up was reported committed");
        assert!(e.to_string().contains("(a panic)"), "{e}");
        let (third_tx, third) = mpsc::channel();
        let s = store.clone();
        std::thread::spawn(move || third_tx.send(s.write(|tx| tx.set_meta("third", b"3"))));
        within(&third, "a write after the panic").unwrap();
        let seen = |key| store.read(|tx| tx.meta(key)).unwrap();
        assert_eq!((seen("first"), seen("second")), (None, None));
        assert_eq!(seen("third").as_deref(), Some(&b"3"[..]));
        assert!(
            store.inner.group.lock().outcomes.is_empty(),
            "an outcome nobody waits for was left behind"
        );
    }

    #[test]
    fn a_panic_inside_redkeep_during_a_commit_fails_its_batch_and_later_writes_go_on() {
        a_panic_gives_the_batch_up(Point::Commit, 0);
    }

    #[test]
    fn a_panic_inside_redkeep_before_a_write_is_counted_fails_its_batch_and_later_writes_go_on() {
        // The first write passes the point unharmed; the second meets the panic there.
        a_panic_gives_the_batch_up(Point::AfterRun, 1);
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Thing {
        id: u64,
        name: String,
    }

    impl crate::Record for Thing {
        const TABLE: &'static str = "things";
        type Key = u64;
        const INDEXES: &'static [&'static crate::Index<Self>] = &[];
        fn key(&self) -> u64 {
            self.id
        }
    }

    fn insert_thing(tx: &WriteTx<'_>, id: u64) -> Result<()> {
        tx.table::<Thing>().insert(&Thing {
            id,
            name: format!("thing {id}"),
        })
    }

    /// What a fresh handle on the file at `path` reads: the things' ids (failing on any it
    /// cannot read), and whether their shape and catalog entry are registered.
    fn fresh_read(path: &Path) -> (Vec<u64>, bool) {
        let fresh = Store::open(path, &StoreOptions::default()).unwrap();
        fresh
            .read(|tx| {
                let ids = tx
                    .table::<Thing>()
                    .range(super::super::KeyRange::all(), super::super::Order::Asc, 100)?
                    .iter()
                    .map(|t| t.id)
                    .collect();
                let shape = super::super::format::shape_id(&["id", "name"]);
                let registered = tx.shapes()?.iter().any(|(id, _)| *id == shape)
                    && tx.catalog()?.iter().any(|t| t.name == "things");
                Ok((ids, registered))
            })
            .unwrap()
    }

    /// A write batched just before a wipe publishes what it registered once its batch is
    /// committed, which may be after the wipe returned: the handle must not take that for
    /// registered, or the writes after the wipe would store records whose shape and catalog
    /// entry the file lacks. (The order is forced here: the write's registrations are
    /// published by hand after the wipe.)
    #[test]
    fn what_a_write_registered_before_a_wipe_is_not_taken_for_registered_after_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.redb");
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let file = match &store.inner.engine {
            Engine::File(file) => file,
            #[cfg(feature = "postgres")]
            Engine::Pg(_) => unreachable!("a redb file"),
        };
        let mut known = None;
        let mut first = |tx: &WriteTx<'_>| insert_thing(tx, 1);
        store
            .write_grouped_here(file, false, |raw: &FileWrite<'_, '_>| {
                store.run_write(raw, None, &mut first, &mut known)
            })
            .unwrap();
        store.wipe(1).unwrap();
        store.inner.registry.publish(known.unwrap());
        store.write(|tx| insert_thing(tx, 2)).unwrap();
        drop(store);
        assert_eq!(fresh_read(&path), (vec![2], true));
    }

    /// A write, a wipe and a write of the same type in one transaction: the second write
    /// registers the shape and catalog entry the wipe took away again (the transaction's
    /// memory of what it registered last goes with them).
    #[test]
    fn a_write_after_a_wipe_in_the_same_transaction_registers_again() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.redb");
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        store
            .write(|tx| {
                insert_thing(tx, 1)?;
                tx.delete_all_tables()?;
                tx.set_schema_version(1)?;
                insert_thing(tx, 2)
            })
            .unwrap();
        drop(store);
        assert_eq!(fresh_read(&path), (vec![2], true));
    }

    /// A wipe that fails in a shared commit is taken back whole (`meta` included), and the
    /// write after it in the same commit leaves a record a fresh handle reads.
    #[test]
    fn a_wipe_taken_back_in_a_shared_commit_leaves_the_writes_around_it_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.redb");
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        store.write(|tx| insert_thing(tx, 1)).unwrap();
        let inside = Arc::new(AtomicBool::new(false));
        let (s, now_inside) = (store.clone(), Arc::clone(&inside));
        let holder = std::thread::spawn(move || {
            s.write(|tx| {
                insert_thing(tx, 2)?;
                now_inside.store(true, Ordering::SeqCst);
                while s.waiting_writers() < 2 {
                    std::thread::yield_now();
                }
                Ok(())
            })
        });
        while !inside.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let s = store.clone();
        let wiper = std::thread::spawn(move || {
            s.write(|tx| {
                tx.delete_all_tables()?;
                insert_thing(tx, 9)?;
                Err::<(), _>(Error::invalid("wipe", "taken back"))
            })
        });
        while store.waiting_writers() < 1 {
            std::thread::yield_now();
        }
        let s = store.clone();
        let after = std::thread::spawn(move || s.write(|tx| insert_thing(tx, 3)));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let outcomes = (
                holder.join().unwrap(),
                wiper.join().unwrap(),
                after.join().unwrap(),
            );
            tx.send(outcomes).unwrap();
        });
        let (held, wiped, last) = within(&rx, "the three writes");
        assert!(held.is_ok() && last.is_ok(), "{held:?} {last:?}");
        assert!(
            matches!(wiped, Err(Error::InvalidInput { .. })),
            "{wiped:?}"
        );
        drop(store);
        assert_eq!(fresh_read(&path), (vec![1, 2, 3], true));
    }
}
