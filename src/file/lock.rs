//! Inter-process locks on files, with oslo's semantics: the file is created (and its directory)
//! on first use and never deleted on release.
//!
//! Each lock file has one entry per process: an in-process guard that threads take first, and a
//! cached descriptor whose kernel lock (OFD on Linux) excludes other processes, including oslo
//! processes holding a `lockf` lock on the same file. Caching the descriptor saves an open and a
//! close per cycle; after each kernel acquire the path is checked to still name our file, so a
//! lock file removed and re-created elsewhere is never locked on a stale inode.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex as StateMutex;

use crate::local::Mutex;
use crate::sys::inotify::{self, Inotify};
use crate::sys::{self, fork, FileId};
use crate::wait::{self, Until, WaitTicket};
use crate::{Lock, LockError, RawLock};

/// Straight re-takes after which a releaser yields the CPU anyway. The kernel wakes waiters on
/// unlock but hands the lock to none, so a process in a loop keeps re-taking it. Measured on 2
/// cores with 4 processes in a tight loop (bench `external.procs4`): 384 cut the longest wait
/// from ~10 ms to ~5 ms for ~15% of throughput; 128 halved throughput, 1024 bounded nothing.
const RETAKES: u32 = 384;

/// oslo/fasteners waiters never block in the kernel: they try `lockf` every 10-100 ms, so a
/// process that keeps re-taking the lock within microseconds starves them (measured: an oslo
/// process waited 10-27 s per take next to a busy ferrolock process). Such a busy process
/// leaves the file free for `POLLER_GAP` at the start of every `POLLER_PERIOD` of
/// `CLOCK_MONOTONIC`; the clock is the machine's, so every busy ferrolock process keeps the
/// same windows and the file really is free then. Only runs of back-to-back holds (released and
/// taken again within `POLLER_GAP`) at least `POLLER_PERIOD` long do this: a lock used in
/// bursts never pays. Costs a busy loop `POLLER_GAP / POLLER_PERIOD` (7.5%).
const POLLER_PERIOD_NS: u64 = 2_000_000_000;
/// The period once a `lockf` holder of the file was seen (an oslo process does use it: a
/// rolling upgrade is on): its waiters then wait about as long as next to a busy oslo service,
/// for 30% of a busy loop's throughput, until `MIXED_FOR_NS` after the last sighting. The
/// windows of both periods start together, so processes in either mode agree.
const MIXED_PERIOD_NS: u64 = 500_000_000;
const MIXED_FOR_NS: u64 = 60_000_000_000;
/// Longer than fasteners' longest poll interval (`max_delay`, 100 ms), with room for a late
/// wake-up of the poller.
const POLLER_GAP_NS: u64 = 150_000_000;

/// Whether busy processes leave oslo pollers their windows (`FERROLOCK_OSLO_POLLERS=0` or
/// `set_yield_to_pollers(false)` turns it off for fleets where only ferrolock takes the files).
static YIELD_TO_POLLERS: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = 2;

fn yield_to_pollers() -> bool {
    match YIELD_TO_POLLERS.load(Ordering::Relaxed) {
        UNSET => {
            let off = std::env::var_os("FERROLOCK_OSLO_POLLERS").is_some_and(|v| v == "0");
            YIELD_TO_POLLERS.store(u8::from(!off), Ordering::Relaxed);
            !off
        }
        on => on == 1,
    }
}

/// Turn the windows left to oslo pollers on or off for this process.
pub fn set_yield_to_pollers(on: bool) {
    YIELD_TO_POLLERS.store(u8::from(on), Ordering::Relaxed);
}

/// Test hooks, read once: `_FERROLOCK_TEST_PERIODIC=0` leaves no periodic windows (so a test
/// proves that opens alone let an oslo poller in); `_FERROLOCK_TEST_WATCH=0` watches no opens.
struct Hooks {
    periodic: bool,
    watch: bool,
}

fn hooks() -> &'static Hooks {
    static HOOKS: OnceLock<Hooks> = OnceLock::new();
    HOOKS.get_or_init(|| {
        let on = |name: &str| std::env::var_os(name).map_or(true, |v| v != "0");
        Hooks { periodic: on("_FERROLOCK_TEST_PERIODIC"), watch: on("_FERROLOCK_TEST_WATCH") }
    })
}

fn poller_period(file: &LockFile, now: u64) -> u64 {
    if file.mixed_until.load(Ordering::Relaxed) > now {
        MIXED_PERIOD_NS
    } else {
        POLLER_PERIOD_NS
    }
}

/// Time left in the current pollers' window of `file`, if one is open now.
fn poller_window_left(file: &LockFile, now: u64) -> Option<u64> {
    let phase = now % poller_period(file, now);
    (phase < POLLER_GAP_NS).then(|| POLLER_GAP_NS - phase)
}

/// The window to keep out of, for the thread about to take `file`: a run of back-to-back holds
/// is on, and a window answering an open is on, or the run is long and a periodic window open.
fn must_leave_free(file: &LockFile, now: u64) -> bool {
    let start = file.run_start.load(Ordering::Relaxed);
    start != 0
        && now.saturating_sub(file.last_release.load(Ordering::Relaxed)) < POLLER_GAP_NS
        && (file.window_until.load(Ordering::Relaxed) > now
            || (now.saturating_sub(start) >= poller_period(file, now)
                && poller_window_left(file, now).is_some()
                && hooks().periodic))
        && yield_to_pollers()
}

/// The file is busy: if an oslo process (a `lockf` holder) has it, this file is shared with
/// pollers, whose windows then come more often.
/// Asked at most every `POSIX_CHECK_NS`: processes contending in a tight loop find the file
/// busy thousands of times a second.
fn note_posix_holder(file: &LockFile, fd: &LockFd) {
    let now = sys::monotonic_ns();
    if now.saturating_sub(file.posix_checked.load(Ordering::Relaxed)) < POSIX_CHECK_NS {
        return;
    }
    file.posix_checked.store(now, Ordering::Relaxed);
    if let Ok(Some(_)) = sys::posix_holder(fd.as_raw_fd()) {
        file.mixed_until.store(now + MIXED_FOR_NS, Ordering::Relaxed);
    }
}

const POSIX_CHECK_NS: u64 = 20_000_000;

/// Waiting out a pollers' window, as a lock the wait loop can wait for (deadlines, Ctrl-C).
struct PollerWindow<'a>(&'a LockFile);

impl RawLock for PollerWindow<'_> {
    fn try_acquire(&self) -> Result<bool, LockError> {
        Ok(!must_leave_free(self.0, sys::monotonic_ns()))
    }
    fn acquire_step(&self, step: Duration, _: &mut WaitTicket) -> Result<bool, LockError> {
        let now = sys::monotonic_ns();
        let answering = self.0.window_until.load(Ordering::Relaxed);
        if answering > now {
            std::thread::sleep(step.min(WINDOW_CHECK).min(Duration::from_nanos(answering - now)));
            end_window_if_answered(self.0);
        } else if let Some(left) = poller_window_left(self.0, now) {
            std::thread::sleep(step.min(Duration::from_nanos(left)));
        }
        // The run goes on after the window: the gap was ours, not the end of the run.
        self.0.last_release.store(sys::monotonic_ns(), Ordering::Relaxed);
        self.try_acquire()
    }
    fn release(&self) -> Result<(), LockError> {
        Ok(())
    }
}

/// A poller cannot be seen, but its open of the lock file can: fasteners opens the file at each
/// acquire (and closes it at release), while ferrolock processes keep theirs open. So a run of
/// back-to-back holds at least `WATCH_AFTER_NS` long watches its file with inotify, and each
/// open by someone else earns the opener a window (`POLLER_GAP_NS` at most) at the next
/// re-take, ended early once a `lockf` holder has the file (the poller got in; we then wait in
/// the kernel for its release) or every opener closed it again.
/// The periodic windows stay for what inotify cannot see (opens on other NFS clients). A new
/// process opening the file (a ferrolock process starting, a backup) costs one window.
const WATCH_AFTER_NS: u64 = 50_000_000;
/// Events are read at most this often while a run goes on (one `read` each): the run pays
/// nothing per cycle, and a poller's first retry (10 ms after its open) finds the window open.
const READ_EVERY_NS: u64 = 2_000_000;
/// How often a window answering an open asks whether the poller got in.
const WINDOW_CHECK: Duration = Duration::from_millis(2);

const NO_WATCH: i32 = -1;
/// Watching failed (watch limit, no inotify): this run has the periodic windows only.
const WATCH_FAILED: i32 = -2;

/// What the watch of one lock file saw, shared with the process's inotify reader.
struct Openers {
    /// The watch descriptor, `NO_WATCH` or `WATCH_FAILED`.
    wd: AtomicI32,
    /// Opens by others that no window answered yet.
    owed: AtomicU32,
    /// Descriptors others opened since the watch began and have not closed yet (saturating:
    /// a ferrolock process closing a descriptor it opened before counts nothing).
    open: AtomicU32,
    /// Our own opens of the file since the watch began, whose events are not others'.
    own: AtomicU32,
    /// Our own closes likewise: a waiting poller's open must not be taken back by them.
    own_closes: AtomicU32,
    /// `monotonic_ns()` of the last release while watched (`u64::MAX` while held): the sweep
    /// ends the watch of a run that ended without another acquire of its file.
    released: AtomicU64,
}

impl Openers {
    fn new() -> Openers {
        Openers {
            wd: AtomicI32::new(NO_WATCH),
            owed: AtomicU32::new(0),
            open: AtomicU32::new(0),
            own: AtomicU32::new(0),
            own_closes: AtomicU32::new(0),
            released: AtomicU64::new(u64::MAX),
        }
    }

    fn watched(&self) -> bool {
        self.wd.load(Ordering::Relaxed) >= 0
    }

    fn note(&self, mask: u32) {
        if mask & inotify::OPENED != 0 {
            let own =
                self.own.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            if own.is_err() {
                self.open.fetch_add(1, Ordering::Relaxed);
                self.owed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if mask & inotify::CLOSED != 0 {
            let own = self
                .own_closes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            if own.is_err() {
                let _ = self
                    .open
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
    }
}

/// The process's inotify instance (made on first need) and the files it watches.
#[derive(Default)]
struct Watcher {
    state: StateMutex<Watches>,
    /// `monotonic_ns()` of the last read of events.
    last_read: AtomicU64,
}

#[derive(Default)]
struct Watches {
    inotify: Option<Inotify>,
    /// No inotify until then (`ENOSYS`, `EMFILE`): try again later, not at every run.
    unavailable_until: u64,
    files: HashMap<i32, Arc<Openers>>,
}

/// Fork-safe: a child makes its own instance; the parent's is retired by `forget_inherited`.
static WATCHER: fork::PerProcess<Watcher> = fork::PerProcess::new();
const RETRY_INOTIFY_NS: u64 = 60_000_000_000;

impl Watches {
    fn watch(&mut self, path: &Path, openers: &Arc<Openers>, now: u64) -> i32 {
        if self.inotify.is_none() {
            if now < self.unavailable_until {
                return WATCH_FAILED;
            }
            match Inotify::new() {
                Ok(made) => self.inotify = Some(made),
                Err(_) => {
                    self.unavailable_until = now + RETRY_INOTIFY_NS;
                    return WATCH_FAILED;
                }
            }
        }
        let Some(ino) = &self.inotify else { return WATCH_FAILED };
        let wd = match ino.add_watch(path, inotify::OPENED | inotify::CLOSED) {
            // Another path of the same file is watched already: its watch sees the opens.
            Ok(wd) if self.files.contains_key(&wd) => WATCH_FAILED,
            Ok(wd) => {
                openers.owed.store(0, Ordering::Relaxed);
                openers.open.store(0, Ordering::Relaxed);
                openers.own.store(0, Ordering::Relaxed);
                openers.own_closes.store(0, Ordering::Relaxed);
                // Watching starts on a re-take: the file is held.
                openers.released.store(u64::MAX, Ordering::Relaxed);
                self.files.insert(wd, Arc::clone(openers));
                wd
            }
            Err(_) => WATCH_FAILED,
        };
        self.close_if_idle();
        wd
    }

    /// Stop watch `wd` if it is `openers`' (a number given out again is another file's).
    fn unwatch(&mut self, wd: i32, openers: &Arc<Openers>) {
        if self.files.get(&wd).is_some_and(|o| Arc::ptr_eq(o, openers)) {
            self.files.remove(&wd);
            if let Some(ino) = &self.inotify {
                ino.remove_watch(wd);
            }
        }
        self.close_if_idle();
    }

    /// End the watches of runs that ended: released `POLLER_GAP_NS` ago and not taken since.
    /// Whoever turns `wd` to `NO_WATCH` removes the watch, so an owner's `end_watch` racing
    /// this never removes a number given out again.
    fn sweep(&mut self, now: u64) {
        let ended: Vec<i32> = self
            .files
            .iter()
            .filter(|(wd, o)| {
                now.saturating_sub(o.released.load(Ordering::Relaxed)) >= POLLER_GAP_NS
                    && o.wd
                        .compare_exchange(**wd, NO_WATCH, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
            })
            .map(|(wd, _)| *wd)
            .collect();
        for wd in ended {
            self.files.remove(&wd);
            if let Some(ino) = &self.inotify {
                ino.remove_watch(wd);
            }
        }
        self.close_if_idle();
    }

    /// Instances are few (`max_user_instances`, 128 per user by default, shared with every
    /// program of that user): keep one only while a run watches a file.
    fn close_if_idle(&mut self) {
        if self.files.is_empty() {
            self.inotify = None;
        }
        WATCHED_FILES.store(self.files.len(), Ordering::Relaxed);
    }

    fn read(&mut self) {
        let Some(ino) = &self.inotify else { return };
        let files = &mut self.files;
        let _ = ino.drain(&mut |event| {
            if event.mask & inotify::OVERFLOW != 0 {
                // Opens were lost: assume one of them is waiting.
                for openers in files.values() {
                    openers.owed.fetch_max(1, Ordering::Relaxed);
                    openers.open.fetch_max(1, Ordering::Relaxed);
                }
                return;
            }
            if event.mask & inotify::GONE != 0 {
                // The file was deleted (or we removed the watch): a later run watches anew.
                if let Some(openers) = files.remove(&event.wd) {
                    let _ = openers.wd.compare_exchange(
                        event.wd,
                        NO_WATCH,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                return;
            }
            if let Some(openers) = files.get(&event.wd) {
                openers.note(event.mask);
            }
        });
        self.close_if_idle();
    }
}

/// Files this process watches (0 in a child until it watches its own): while none, a lock
/// use pays one relaxed load for the sweep.
static WATCHED_FILES: AtomicUsize = AtomicUsize::new(0);
/// `monotonic_ns()` of the last sweep.
static LAST_SWEEP: AtomicU64 = AtomicU64::new(0);
const SWEEP_EVERY_NS: u64 = 100_000_000;

/// At any lock use, at most every `SWEEP_EVERY_NS`: end the watches of runs that ended, of
/// any file, so that a process gone idle keeps no watch nor inotify instance.
fn sweep_ended_runs() {
    if WATCHED_FILES.load(Ordering::Relaxed) == 0 {
        return;
    }
    let now = sys::monotonic_ns();
    let last = LAST_SWEEP.load(Ordering::Relaxed);
    if now.saturating_sub(last) < SWEEP_EVERY_NS
        || LAST_SWEEP.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
    {
        return;
    }
    match WATCHER.get_if_made() {
        // Busy: the next lock use sweeps.
        Some(watcher) => {
            if let Some(mut watches) = watcher.state.try_lock() {
                watches.sweep(now);
            } else {
                LAST_SWEEP.store(last, Ordering::Relaxed);
            }
        }
        // A forked child's count was the parent's.
        None => WATCHED_FILES.store(0, Ordering::Relaxed),
    }
}

/// Read the queued events now, or only if the last read is `READ_EVERY_NS` old.
fn read_opens(now: u64, now_or_never: bool) {
    let Some(watcher) = WATCHER.get_if_made() else { return };
    if !now_or_never
        && now.saturating_sub(watcher.last_read.load(Ordering::Relaxed)) < READ_EVERY_NS
    {
        return;
    }
    // Another thread reading them does as well.
    if let Some(mut watches) = watcher.state.try_lock() {
        watcher.last_read.store(now, Ordering::Relaxed);
        watches.read();
    }
}

/// A run reached `WATCH_AFTER_NS`: watch its file for opens (once per run).
fn start_watch(file: &LockFile, now: u64) {
    // An ancestor's entry (a wait that spanned a fork) is no file of this process's instance.
    if !hooks().watch || !yield_to_pollers() || file.generation != fork::generation() {
        file.openers.wd.store(WATCH_FAILED, Ordering::Relaxed);
        return;
    }
    let wd = WATCHER.get().state.lock().watch(&file.path, &file.openers, now);
    file.openers.wd.store(wd, Ordering::Relaxed);
}

/// The run ended (or the entry goes): stop watching; a failed watch may be tried again.
fn end_watch(file: &LockFile) {
    let wd = file.openers.wd.swap(NO_WATCH, Ordering::Relaxed);
    file.window_until.store(0, Ordering::Relaxed);
    // An ancestor's entry: `wd` numbers a watch of the parent's instance, not of ours.
    if wd >= 0 && file.generation == fork::generation() {
        if let Some(watcher) = WATCHER.get_if_made() {
            watcher.state.lock().unwatch(wd, &file.openers);
        }
    }
}

/// Before a re-take of a watched file: open a window for an opener that is still around.
fn answer_opens(file: &LockFile, now: u64) {
    read_opens(now, false);
    let openers = &file.openers;
    if file.window_until.load(Ordering::Relaxed) > now {
        return;
    }
    // Read before `open`: the reader counts an open in `open` first, so one it adds after
    // this load is still owed after the subtraction below.
    let owed = openers.owed.load(Ordering::Relaxed);
    let open = openers.open.load(Ordering::Relaxed);
    if owed == 0 {
        return;
    }
    // They opened and closed again (took the lock in a gap, or gave up): nothing is owed.
    // Else one window per opener still around; older opens were answered by their closes.
    let answered = if open == 0 { owed } else { owed - owed.min(open) + 1 };
    // Only this thread (holding the guard) takes from `owed`; the reader adds concurrently.
    let _ = openers
        .owed
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(answered)));
    if open > 0 {
        file.window_until.store(now + POLLER_GAP_NS, Ordering::Relaxed);
    }
}

/// During a window answering an open: end it once another process holds the file (the poller
/// got in; we then wait in the kernel for its release) or every opener closed it again.
fn end_window_if_answered(file: &LockFile) {
    read_opens(sys::monotonic_ns(), true);
    let answered = file.openers.open.load(Ordering::Relaxed) == 0 || {
        let fd = file.open.lock().as_ref().map(|o| Arc::clone(&o.fd));
        fd.is_some_and(|fd| matches!(sys::posix_holder(fd.as_raw_fd()), Ok(Some(_))))
    };
    if answered {
        file.window_until.store(0, Ordering::Relaxed);
    }
}

/// Most idle lock-file descriptors kept open, whatever the descriptor limit.
const IDLE_FILES_MAX: usize = 128;
/// Share of `RLIMIT_NOFILE` the idle descriptors may take at most: a service near its limit
/// (sockets) must never find it reached because of locks it no longer holds.
const NOFILE_SHARE: u64 = 32;
/// Fewest idle descriptors kept, however low the limit (a hot lock keeps its open file).
const IDLE_FILES_MIN: usize = 2;

/// How many idle lock files keep their descriptor: 1/32 of the descriptor limit, 2 to 128.
/// Read at each new file, so a limit lowered at run time (`resource.setrlimit`) counts.
fn idle_files_kept() -> usize {
    match sys::open_files_limit() {
        Some(limit) => usize::try_from(limit / NOFILE_SHARE)
            .unwrap_or(IDLE_FILES_MAX)
            .clamp(IDLE_FILES_MIN, IDLE_FILES_MAX),
        None => IDLE_FILES_MAX,
    }
}

/// Lock-file descriptors open now (parked ones not counted).
static OPEN_FILES: AtomicUsize = AtomicUsize::new(0);

/// Descriptors whose close would have dropped a POSIX lock this process holds (see `LockFd`).
static PARKED: std::sync::Mutex<Vec<OwnedFd>> = std::sync::Mutex::new(Vec::new());

/// A lock file's descriptor. Dropped, it closes, unless this process holds a classic POSIX lock
/// on that file (oslo/fasteners in the same process, during a partial migration): POSIX locks
/// belong to the process and the kernel drops them when it closes any descriptor of the file,
/// so closing ours would silently end oslo's hold. Such a descriptor is parked, and closed by a
/// later trim once that lock is gone.
struct LockFd(ManuallyDrop<OwnedFd>);

impl LockFd {
    fn new(fd: OwnedFd) -> LockFd {
        OPEN_FILES.fetch_add(1, Ordering::Relaxed);
        LockFd(ManuallyDrop::new(fd))
    }
}

impl std::ops::Deref for LockFd {
    type Target = OwnedFd;
    fn deref(&self) -> &OwnedFd {
        &self.0
    }
}

impl Drop for LockFd {
    fn drop(&mut self) {
        // Saturating: a child's count starts at 0, and a descriptor opened before the fork (a
        // wait that spanned it) may still be dropped here.
        let _ = OPEN_FILES
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
        // SAFETY: taken exactly once, here; `self.0` is never used again.
        let fd = unsafe { ManuallyDrop::take(&mut self.0) };
        // A failed query keeps it too: a leaked descriptor costs less than a dropped lock.
        if sys::process_holds_posix_lock(fd.as_raw_fd()).unwrap_or(true) {
            parked().push(fd);
        }
    }
}

fn parked() -> std::sync::MutexGuard<'static, Vec<OwnedFd>> {
    PARKED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Close idle descriptors: entries nobody uses go, and entries still referenced (a `FileLock`
/// kept by the caller) that no thread holds or waits for give theirs back (reopened on next
/// use). Parked descriptors whose POSIX lock is gone are closed.
fn close_idle() {
    parked().retain(|fd| sys::process_holds_posix_lock(fd.as_raw_fd()).unwrap_or(true));
    let mut files = cache().lock();
    files.retain(|_, f| Arc::strong_count(f) > 1 || f.guard.locked());
    for file in files.values() {
        // Holding the guard, nobody else touches `open`; a held or awaited file is skipped.
        if file.guard.try_acquire().unwrap_or(false) {
            // Idle now: its run (if any) is over, and our close must not count as a poller's.
            if file.openers.watched() {
                end_watch(file);
            }
            file.close_own(&mut file.open.lock());
            let _ = file.guard.release();
        }
    }
}

struct LockFile {
    path: PathBuf,
    guard: Mutex,
    /// Only touched by the thread holding `guard`.
    open: StateMutex<Option<OpenFile>>,
    /// The holder had to wait for another process: there may be more waiters to make way for.
    contended: AtomicBool,
    /// Straight re-takes (no wait) since this process last made way.
    retakes: AtomicU32,
    /// `monotonic_ns()` when the current run of back-to-back holds began (0: none yet).
    run_start: AtomicU64,
    /// `monotonic_ns()` of the last release.
    last_release: AtomicU64,
    /// `monotonic_ns()` until which the file counts as shared with oslo pollers.
    mixed_until: AtomicU64,
    /// `monotonic_ns()` when the holder of the busy file was last asked for.
    posix_checked: AtomicU64,
    /// Opens of the file by others, seen while a long run watches it.
    openers: Arc<Openers>,
    /// `monotonic_ns()` until which a window answering an open lasts (0: none).
    window_until: AtomicU64,
    /// Held: the file is locked too, not only `guard` (which a thread still waiting for the
    /// file holds), so that `release` cannot cut into an acquire in progress.
    held: AtomicBool,
    /// `fork::generation()` when made. A forked child starts a new cache: `guard` may be
    /// held or waited for by parent threads the child did not get, so these entries are dead
    /// there, and a `FileLock` made before the fork finds its path's entry in the new cache.
    generation: u64,
}

impl LockFile {
    fn new(path: &Path) -> LockFile {
        LockFile {
            path: path.to_owned(),
            guard: Mutex::new(),
            open: StateMutex::new(None),
            contended: AtomicBool::new(false),
            retakes: AtomicU32::new(0),
            run_start: AtomicU64::new(0),
            last_release: AtomicU64::new(0),
            mixed_until: AtomicU64::new(0),
            posix_checked: AtomicU64::new(0),
            openers: Arc::new(Openers::new()),
            window_until: AtomicU64::new(0),
            held: AtomicBool::new(false),
            generation: fork::generation(),
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // An ancestor's entry is never dropped in a child; its watch was never the child's.
        if self.generation == fork::generation() && self.openers.watched() {
            end_watch(self);
        }
    }
}

struct OpenFile {
    fd: Arc<LockFd>,
    id: FileId,
    /// `fork::generation()` when opened. A forked child inherits the descriptor, and with
    /// it the parent's open file and lock: it must open its own and never unlock the parent's.
    generation: u64,
}

impl OpenFile {
    fn inherited(&self) -> bool {
        self.generation != fork::generation()
    }
}

type Files = StateMutex<HashMap<PathBuf, Arc<LockFile>>>;

/// The cache of this process. Replaced, never freed: a forked child cannot use the parent's,
/// whose lock may be held or waited for by threads that did not survive the fork.
static CACHE: AtomicPtr<Files> = AtomicPtr::new(ptr::null_mut());

fn cache() -> &'static Files {
    let current = CACHE.load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: CACHE only ever points at a leaked, never freed `Files`.
        return unsafe { &*current };
    }
    let fresh = Box::into_raw(Box::default());
    match CACHE.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `fresh` is leaked from here on.
        Ok(_) => unsafe { &*fresh },
        Err(other) => {
            // SAFETY: `fresh` came from `Box::into_raw` above and was never shared.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: `other` is leaked like every published cache.
            unsafe { &*other }
        }
    }
}

/// The entry for `path`, made on first use. Full caches drop idle entries first (closing their
/// descriptors), but never a held one: its descriptor carries the lock.
fn entry_for(path: &Path) -> Arc<LockFile> {
    let mut files = cache().lock();
    if let Some(file) = files.get(path) {
        return Arc::clone(file);
    }
    if files.len() >= idle_files_kept() {
        files.retain(|_, f| Arc::strong_count(f) > 1 || f.guard.locked());
    }
    let file = Arc::new(LockFile::new(path));
    files.insert(path.to_owned(), Arc::clone(&file));
    file
}

/// Have `forget_inherited` run in every forked child (`fork::run_child_hooks`).
pub fn register_fork_hook() {
    fn forget() {
        // SAFETY: child hooks run in a forked child, on the forking thread, before other
        // threads start.
        unsafe { forget_inherited() }
    }
    fork::on_child(forget);
}

/// Lock files this process has entries for (in use or idle with an open descriptor).
pub fn cached_files() -> usize {
    cache().lock().len()
}

/// In a forked child (only the forking thread exists): start a new, empty cache. The parent's
/// entries are left as they are, since their guards (and the cache's own lock) may be held or
/// queued on by threads that did not survive the fork; only holds and waits that spanned the
/// fork still use them, and a release of such a hold unlocks nothing of the parent's. Their
/// descriptors, which keep the parent's open files and so its locks alive, are retired.
///
/// # Safety
/// Call only in a forked child before it starts threads that use file locks, from the thread
/// that forked (Python's `os.register_at_fork(after_in_child=...)` does both).
pub unsafe fn forget_inherited() {
    let files = cache();
    // A thread that did not survive the fork may have been changing the map or an entry: that
    // is not read, and its descriptors stay open here.
    // SAFETY: single-threaded child; unlocked data is only read, and the locks are never taken.
    let inherited = if files.is_locked() { None } else { Some(unsafe { &*files.data_ptr() }) };
    for file in inherited.into_iter().flat_map(HashMap::values) {
        // SAFETY: as above.
        let open = if file.open.is_locked() { &None } else { unsafe { &*file.open.data_ptr() } };
        if let Some(open) = open {
            // Retired rather than closed: the number stays owned by `open.fd`, which a wait
            // that spanned the fork may still use, and which closes it when dropped.
            let _ = sys::retire_descriptor(open.fd.as_raw_fd());
        }
    }
    if let Some(watcher) = WATCHER.inherited() {
        if !watcher.state.is_locked() {
            // SAFETY: as above.
            if let Some(ino) = unsafe { &*watcher.state.data_ptr() }.inotify.as_ref() {
                // Reading it here would take the parent's events.
                let _ = sys::retire_descriptor(ino.as_raw_fd());
            }
        }
    }
    CACHE.store(Box::into_raw(Box::default()), Ordering::Release);
    // The parent's descriptors are retired, never dropped here: none of them is ours to count.
    OPEN_FILES.store(0, Ordering::Relaxed);
    // The parent's watches are not ours: none until this child watches its own.
    WATCHED_FILES.store(0, Ordering::Relaxed);
}

/// A process-wide lock on one file. Cheap to create: the file is opened on first acquire.
pub struct FileLock {
    file: Arc<LockFile>,
    /// The entry of the last hold taken through this lock on another entry than `file` (made
    /// before a fork, used after): that hold's release must find it, even after another fork.
    rebound: StateMutex<Option<Arc<LockFile>>>,
    /// `generation` of the entry this lock's current hold was taken on: after a fork, another
    /// thread may hold the child's entry for the same path, and that hold is not ours.
    held_generation: AtomicU64,
}

struct Ofd<'a>(&'a OwnedFd);

impl RawLock for Ofd<'_> {
    fn try_acquire(&self) -> Result<bool, LockError> {
        sys::try_lock(self.0).map_err(|e| io_error(Path::new(""), "lock", e))
    }
    fn acquire_step(&self, step: Duration, _: &mut WaitTicket) -> Result<bool, LockError> {
        sys::lock_wait(self.0, step).map_err(|e| io_error(Path::new(""), "lock", e))
    }
    fn release(&self) -> Result<(), LockError> {
        sys::unlock(self.0).map_err(|e| io_error(Path::new(""), "unlock", e))
    }
}

fn io_error(path: &Path, op: &'static str, source: io::Error) -> LockError {
    LockError::Io { path: path.to_owned(), op, source }
}

fn with_path(err: LockError, path: &Path) -> LockError {
    match err {
        LockError::Io { op, source, .. } => io_error(path, op, source),
        other => other,
    }
}

/// Errors that mean the directory cannot hold lock files, named by the directory. An existing
/// lock file we may not open (another user's) is the file's fault, named by the file, and
/// comes out as `PermissionError` like oslo's.
fn open_error(path: &Path, source: io::Error) -> LockError {
    let denied = matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM));
    if denied && matches!(sys::path_identity(path), Ok(Some(_))) {
        return io_error(path, "open", source);
    }
    let dir_problem = matches!(
        source.raw_os_error(),
        Some(
            libc::ENOTDIR | libc::EACCES | libc::EPERM | libc::EROFS | libc::ENOENT | libc::EEXIST
        )
    );
    if dir_problem {
        let dir = path.parent().unwrap_or(path).to_owned();
        LockError::LockPath { path: dir, source }
    } else {
        io_error(path, "open", source)
    }
}

/// Open `path` for a lock, making room first when the idle descriptors reached their share,
/// and once more after giving all idle ones back when the process or system is out of them.
fn open_lock_file(path: &Path) -> Result<OpenFile, LockError> {
    if OPEN_FILES.load(Ordering::Relaxed) >= idle_files_kept() {
        close_idle();
    }
    match open_creating_dirs(path) {
        Err(LockError::Io { source, .. }) if sys::out_of_descriptors(&source) => {
            close_idle();
            open_creating_dirs(path)
        }
        opened => opened,
    }
}

fn open_creating_dirs(path: &Path) -> Result<OpenFile, LockError> {
    let fd = match sys::open_lock_file(path) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| LockError::LockPath { path: dir.to_owned(), source: e })?;
            }
            sys::open_lock_file(path).map_err(|e| open_error(path, e))?
        }
        Err(e) => return Err(open_error(path, e)),
    };
    let id = sys::fd_identity(&fd).map_err(|e| io_error(path, "fstat", e))?;
    Ok(OpenFile { fd: Arc::new(LockFd::new(fd)), id, generation: fork::generation() })
}

impl FileLock {
    pub fn new(path: &Path) -> FileLock {
        FileLock {
            file: entry_for(path),
            rebound: StateMutex::new(None),
            held_generation: AtomicU64::new(0),
        }
    }

    /// This process's entry: made before a fork, this lock uses the child's entry for its path.
    fn file(&self) -> Cow<'_, Arc<LockFile>> {
        if self.file.generation == fork::generation() {
            Cow::Borrowed(&self.file)
        } else {
            Cow::Owned(entry_for(&self.file.path))
        }
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Held by some thread of this process.
    pub fn locked(&self) -> bool {
        self.file().guard.locked()
    }

    /// Threads of this process asleep waiting for another thread of it to let go (a test
    /// probe). Waits for another process are in the kernel: `/proc/locks` lists them.
    pub fn waiters(&self) -> usize {
        self.file().guard.waiters()
    }
}

impl Lock for FileLock {
    /// Take the lock, waiting until `until.deadline`; `Ok(false)` when it passed.
    ///
    /// # Errors
    /// `LockPath` when the directory cannot hold the file, `Io` for other failures,
    /// `Interrupted` when `interrupted` said so. Nothing is held after an error.
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        let file = self.file();
        if !wait::acquire(&file.guard, until, interrupted)? {
            return Ok(false);
        }
        let outcome = lock_file(&file, until, interrupted);
        sweep_ended_runs();
        if matches!(outcome, Ok(true)) {
            file.held.store(true, Ordering::Release);
            self.held_generation.store(file.generation, Ordering::Release);
            if let Cow::Owned(entry) = &file {
                *self.rebound.lock() = Some(Arc::clone(entry));
            }
        } else {
            // The guard was ours a moment ago; giving it back cannot fail.
            let _ = file.guard.release();
        }
        outcome
    }

    /// # Errors
    /// `NotHeld` when no thread of this process holds it; `Io` when the kernel refused.
    fn release(&self) -> Result<(), LockError> {
        let current = self.file();
        let rebound;
        // A hold taken through this lock before a fork lives on the entry it was taken on.
        let generation = self.held_generation.load(Ordering::Acquire);
        let file: &LockFile = if current.generation == generation {
            &current
        } else {
            rebound = self.rebound.lock().clone();
            match rebound.as_deref().filter(|f| f.generation == generation) {
                Some(entry) => entry,
                None => &self.file,
            }
        };
        if !file.held.swap(false, Ordering::AcqRel) {
            return Err(LockError::NotHeld);
        }
        let unlocked = file.unlock(false);
        let now = sys::monotonic_ns();
        file.last_release.store(now, Ordering::Relaxed);
        if file.openers.watched() {
            file.openers.released.store(now, Ordering::Relaxed);
        }
        // Waited for this hold, or re-took the lock many times in a row since last making way:
        // other processes may be waiting, and whoever runs first after the unlock gets it.
        let retakes = file.retakes.fetch_add(1, Ordering::Relaxed);
        let made_way = file.contended.swap(false, Ordering::Relaxed) || retakes >= RETAKES;
        if made_way {
            file.retakes.store(0, Ordering::Relaxed);
        }
        file.guard.release()?;
        sweep_ended_runs();
        if made_way {
            // Waiters in other processes were woken by the unlock; give one of them the CPU
            // before this thread can take the lock straight back.
            std::thread::yield_now();
        }
        unlocked
    }

    /// Held by this process through this path (file locks belong to the process, as oslo's
    /// do, and cannot be taken away while it lives).
    fn is_still_owner(&self) -> Result<bool, LockError> {
        let generation = self.held_generation.load(Ordering::Acquire);
        let file = self.file();
        Ok(file.generation == generation && file.held.load(Ordering::Acquire))
    }
}

impl FileLock {
    /// Delete the lock file if nobody holds it, holding it ourselves while we do, so that no
    /// process can be inside the lock on the old file while another locks a new one.
    /// `Ok(false)` when it was busy (left in place).
    ///
    /// # Errors
    /// As `acquire` and `release`; `Io` when unlinking failed.
    pub fn remove_if_unused(&self) -> Result<bool, LockError> {
        self.remove_if_unused_with(&mut |path| std::fs::remove_file(path))
    }

    /// oslo processes lock this file: one was seen holding it with `lockf` within the last
    /// minute, and another may be polling it unseen.
    pub fn used_by_oslo(&self) -> bool {
        self.file().mixed_until.load(Ordering::Relaxed) > sys::monotonic_ns()
    }

    /// `remove_if_unused`, unlinking with `remove` (Python's `os.remove`, which tests patch).
    ///
    /// # Errors
    /// As `remove_if_unused`.
    pub fn remove_if_unused_with(
        &self,
        remove: &mut dyn FnMut(&Path) -> io::Result<()>,
    ) -> Result<bool, LockError> {
        let file = self.file();
        // Locking a missing file would create it (and its directory) only to delete it.
        if sys::path_identity(&file.path).map_err(|e| io_error(&file.path, "stat", e))?.is_none() {
            return Ok(true);
        }
        if !self.acquire(Until::now(), &mut || false)? {
            return Ok(false);
        }
        if self.used_by_oslo() {
            // oslo processes lock this file (one held it within the last minute), and one may
            // be polling it unseen: once unlinked, that poller would lock the old inode while
            // we lock a new one. Their files stay.
            let _ = file.unlock(false);
            file.held.store(false, Ordering::Release);
            file.guard.release()?;
            return Ok(false);
        }
        let removed = match remove(&file.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(io_error(&file.path, "remove", e)),
        };
        // Our descriptor names the deleted inode now: close it while still holding the lock,
        // so the next acquire opens the new file.
        let _ = file.unlock(true);
        file.held.store(false, Ordering::Release);
        file.guard.release()?;
        removed
    }
}

impl LockFile {
    /// Close our descriptor, telling the watch that this close is ours (its `IN_CLOSE` would
    /// otherwise take back the open of a poller still waiting).
    fn close_own(&self, open: &mut Option<OpenFile>) {
        if open.as_ref().is_some_and(|o| !o.inherited()) && self.openers.watched() {
            self.openers.own_closes.fetch_add(1, Ordering::Relaxed);
        }
        *open = None;
    }

    /// Unlock the kernel lock of the current hold; `close`: also close the descriptor.
    fn unlock(&self, close: bool) -> Result<(), LockError> {
        let mut open = self.open.lock();
        let unlocked = match open.as_ref() {
            // Not ours to unlock: the parent's lock, taken before we were forked.
            Some(file) if file.inherited() => {
                *open = None;
                return Ok(());
            }
            Some(file) => sys::unlock(&file.fd).map_err(|e| io_error(&self.path, "unlock", e)),
            None => Ok(()),
        };
        if close {
            self.close_own(&mut open);
        }
        unlocked
    }
}

/// Take the kernel lock on the file `file` names, for the thread holding `file.guard`.
fn lock_file(
    file: &LockFile,
    until: Until,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<bool, LockError> {
    let path = &file.path;
    loop {
        let now = sys::monotonic_ns();
        if file.openers.watched() {
            answer_opens(file, now);
        }
        if must_leave_free(file, now) && !wait::acquire(&PollerWindow(file), until, interrupted)? {
            return Ok(false);
        }
        let (fd, id, generation) = {
            let mut open = file.open.lock();
            if open.as_ref().is_some_and(OpenFile::inherited) {
                // Closing our copy leaves the parent's lock alone.
                *open = None;
            }
            let opened = match &mut *open {
                Some(opened) => opened,
                None => {
                    // Our own open, which the watch must not take for a poller's.
                    let watched = file.openers.watched();
                    if watched {
                        file.openers.own.fetch_add(1, Ordering::Relaxed);
                    }
                    match open_lock_file(path) {
                        Ok(made) => open.insert(made),
                        Err(e) => {
                            if watched {
                                let _ = file.openers.own.fetch_update(
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                    |n| n.checked_sub(1),
                                );
                            }
                            return Err(e);
                        }
                    }
                }
            };
            (Arc::clone(&opened.fd), opened.id, opened.generation)
        };
        let ofd = Ofd(&fd);
        let locked = match ofd.try_acquire() {
            Ok(false) => {
                note_posix_holder(file, &fd);
                // `wait::acquire` tries once more before it blocks: in a tight loop the holder
                // has often let go by then, and a blocking wait costs a timer and a wake-up
                // (measured: 2 processes in a tight loop run 1.7x faster with it).
                let got = wait::acquire(&ofd, until, interrupted);
                if matches!(got, Ok(true)) {
                    file.contended.store(true, Ordering::Relaxed);
                }
                got
            }
            tried => tried,
        };
        if generation != fork::generation() && !matches!(locked, Err(LockError::Interrupted)) {
            // Forked while waiting (a greenthread's wait): that descriptor was the parent's,
            // retired in this child. Start again on one of our own. No unlock: unretired (the
            // fork caught the cache mid-change), it would still be the parent's lock.
            continue;
        }
        if !locked.map_err(|e| with_path(e, path))? {
            return Ok(false);
        }
        match sys::path_identity(path) {
            Ok(Some(now)) if now == id => {
                let now = sys::monotonic_ns();
                if must_leave_free(file, now) {
                    // A kernel wait handed it over inside a pollers' window: pass it on (to
                    // the next ferrolock waiter, which does the same) and wait the window out.
                    let _ = sys::unlock(&fd);
                    continue;
                }
                let last = file.last_release.load(Ordering::Relaxed);
                let watch = file.openers.wd.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= POLLER_GAP_NS {
                    file.run_start.store(now, Ordering::Relaxed);
                    if watch != NO_WATCH {
                        end_watch(file);
                    }
                } else if watch == NO_WATCH
                    && now.saturating_sub(file.run_start.load(Ordering::Relaxed)) >= WATCH_AFTER_NS
                {
                    start_watch(file, now);
                } else if watch >= 0 {
                    // Held: the sweep leaves this run's watch alone until its release.
                    file.openers.released.store(u64::MAX, Ordering::Relaxed);
                }
                return Ok(true);
            }
            Ok(_) => {
                // Removed or replaced while we waited: lock whatever the path names now.
                let _ = sys::unlock(&fd);
                file.close_own(&mut file.open.lock());
            }
            Err(e) => {
                let _ = sys::unlock(&fd);
                return Err(io_error(path, "stat", e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_long_run_of_back_to_back_holds_keeps_out_of_a_window() {
        let file = LockFile::new(Path::new("/nonexistent/window"));
        let ms = 1_000_000;
        let in_window = 100 * POLLER_PERIOD_NS + 10 * ms;
        let outside = 100 * POLLER_PERIOD_NS + POLLER_GAP_NS + ms;
        assert_eq!(poller_window_left(&file, in_window), Some(POLLER_GAP_NS - 10 * ms));
        assert_eq!(poller_window_left(&file, outside), None);
        file.run_start.store(in_window - 3_000 * ms, Ordering::Relaxed);
        file.last_release.store(in_window - ms, Ordering::Relaxed);
        assert!(must_leave_free(&file, in_window));
        assert!(!must_leave_free(&file, outside));
        // A short run, or a file left free longer than a poll interval, owes nothing.
        file.run_start.store(in_window - 1_000 * ms, Ordering::Relaxed);
        assert!(!must_leave_free(&file, in_window));
        file.run_start.store(in_window - 3_000 * ms, Ordering::Relaxed);
        file.last_release.store(in_window - 200 * ms, Ordering::Relaxed);
        assert!(!must_leave_free(&file, in_window));
        // Once oslo was seen on the file, windows come every 0.5 s and runs count from 0.5 s.
        let mixed = 100 * POLLER_PERIOD_NS + MIXED_PERIOD_NS + 10 * ms;
        file.last_release.store(mixed - ms, Ordering::Relaxed);
        file.run_start.store(mixed - 600 * ms, Ordering::Relaxed);
        assert!(!must_leave_free(&file, mixed));
        file.mixed_until.store(mixed + MIXED_FOR_NS, Ordering::Relaxed);
        assert!(must_leave_free(&file, mixed));
    }

    #[test]
    fn a_window_answering_an_open_needs_a_run_but_no_long_one() {
        let file = LockFile::new(Path::new("/nonexistent/answered"));
        let ms = 1_000_000;
        // Outside any periodic window, 10 ms into a run.
        let now = 100 * POLLER_PERIOD_NS + POLLER_GAP_NS + 10 * ms;
        file.run_start.store(now - 10 * ms, Ordering::Relaxed);
        file.last_release.store(now - ms, Ordering::Relaxed);
        assert!(!must_leave_free(&file, now));
        file.window_until.store(now + ms, Ordering::Relaxed);
        assert!(must_leave_free(&file, now));
        assert!(!must_leave_free(&file, now + 2 * ms));
        // The file was left free longer than a poll interval: nobody is owed anything.
        file.last_release.store(now - 200 * ms, Ordering::Relaxed);
        assert!(!must_leave_free(&file, now));
    }

    /// Watches this process's file for opens as a long run would, or says why not.
    fn watched(file: &LockFile) -> bool {
        let now = sys::monotonic_ns();
        file.run_start.store(now - 100_000_000, Ordering::Relaxed);
        file.last_release.store(now, Ordering::Relaxed);
        start_watch(file, now);
        file.openers.watched()
    }

    fn answer(file: &LockFile) -> bool {
        let now = sys::monotonic_ns();
        read_opens(now, true);
        file.last_release.store(now, Ordering::Relaxed);
        answer_opens(file, now);
        must_leave_free(file, now)
    }

    #[test]
    fn each_open_by_someone_else_earns_one_window_until_answered() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("watched");
        std::fs::write(&path, b"").expect("write");
        let file = LockFile::new(&path);
        assert!(watched(&file), "inotify unavailable");
        assert!(!answer(&file));
        // Our own opens are no poller's.
        file.openers.own.fetch_add(1, Ordering::Relaxed);
        drop(std::fs::File::open(&path).expect("open"));
        assert!(!answer(&file));
        let waiter = std::fs::File::open(&path).expect("open");
        assert!(answer(&file), "an open by someone else left no window");
        // One window per open: once it ended, the run goes on.
        file.window_until.store(0, Ordering::Relaxed);
        assert!(!answer(&file));
        drop(waiter);
        // An opener gone again before the next re-take is owed nothing.
        drop(std::fs::File::open(&path).expect("open"));
        assert!(!answer(&file));
        // A window ends once the opener holds the file (the kernel reports this process's
        // POSIX lock to an OFD query on our own descriptor) ...
        // Opened for writing, as `lockf` needs (fasteners opens with "a").
        let again = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        assert!(answer(&file));
        file.openers.own.fetch_add(1, Ordering::Relaxed);
        *file.open.lock() = Some(open_lock_file(&path).expect("open"));
        end_window_if_answered(&file);
        assert_ne!(file.window_until.load(Ordering::Relaxed), 0, "ended before anyone got in");
        // SAFETY: `again` is open; F_TLOCK never blocks.
        assert_eq!(unsafe { libc::lockf(again.as_raw_fd(), libc::F_TLOCK, 0) }, 0);
        end_window_if_answered(&file);
        assert_eq!(file.window_until.load(Ordering::Relaxed), 0, "the poller got in");
        drop(again);
        // ... or once every opener closed it again.
        let third = std::fs::File::open(&path).expect("open");
        assert!(answer(&file));
        drop(third);
        end_window_if_answered(&file);
        assert_eq!(file.window_until.load(Ordering::Relaxed), 0, "the openers are gone");
        *file.open.lock() = None;
        end_watch(&file);
        assert!(!file.openers.watched());
    }

    #[test]
    fn our_own_close_does_not_take_back_a_waiting_openers_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("closed");
        std::fs::write(&path, b"").expect("write");
        let file = LockFile::new(&path);
        assert!(watched(&file), "inotify unavailable");
        file.openers.own.fetch_add(1, Ordering::Relaxed);
        *file.open.lock() = Some(open_lock_file(&path).expect("open"));
        // Read now: the kernel merges an event into an identical one still queued.
        assert!(!answer(&file));
        let _waiter = std::fs::File::open(&path).expect("open");
        // As `remove_if_unused` and a replaced file do: close ours while the poller waits.
        assert!(file.unlock(true).is_ok());
        assert!(answer(&file), "our close was taken for the waiter's");
        end_watch(&file);
    }

    #[test]
    fn an_answer_takes_only_the_opens_it_saw() {
        let file = LockFile::new(Path::new("/nonexistent/owed"));
        let now = sys::monotonic_ns();
        file.openers.owed.store(3, Ordering::Relaxed);
        file.openers.open.store(1, Ordering::Relaxed);
        answer_opens(&file, now);
        assert_eq!(file.openers.owed.load(Ordering::Relaxed), 0);
        assert!(file.window_until.load(Ordering::Relaxed) > now);
        file.window_until.store(0, Ordering::Relaxed);
        file.openers.owed.store(2, Ordering::Relaxed);
        file.openers.open.store(5, Ordering::Relaxed);
        answer_opens(&file, now);
        assert_eq!(file.openers.owed.load(Ordering::Relaxed), 1);
        file.window_until.store(0, Ordering::Relaxed);
        file.openers.open.store(0, Ordering::Relaxed);
        answer_opens(&file, now);
        assert_eq!(file.openers.owed.load(Ordering::Relaxed), 0);
        assert_eq!(file.window_until.load(Ordering::Relaxed), 0, "nobody left to answer");
    }

    #[test]
    fn an_ancestors_entry_never_touches_this_processs_watches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ours");
        std::fs::write(&path, b"").expect("write");
        let ours = LockFile::new(&path);
        assert!(watched(&ours), "inotify unavailable");
        let wd = ours.openers.wd.load(Ordering::Relaxed);
        // An entry made before a fork, whose watch number is the parent's (here: ours).
        let mut inherited = LockFile::new(&dir.path().join("parents"));
        inherited.generation = fork::generation().wrapping_add(1);
        inherited.openers.wd.store(wd, Ordering::Relaxed);
        end_watch(&inherited);
        assert!(!inherited.openers.watched());
        assert!(ours.openers.watched());
        let kept = WATCHER
            .get()
            .state
            .lock()
            .files
            .get(&wd)
            .is_some_and(|o| Arc::ptr_eq(o, &ours.openers));
        assert!(kept, "an ancestor's entry removed another file's watch");
        start_watch(&inherited, sys::monotonic_ns());
        assert_eq!(inherited.openers.wd.load(Ordering::Relaxed), WATCH_FAILED);
        end_watch(&ours);
    }

    #[test]
    fn a_run_that_ended_loses_its_watch_at_the_next_use_of_any_file_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (busy, other) =
            (FileLock::new(&dir.path().join("busy")), FileLock::new(&dir.path().join("other")));
        let cycle = |lock: &FileLock| {
            assert!(lock.acquire(Until::forever(), &mut || false).unwrap_or(false));
            assert!(lock.release().is_ok());
        };
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while !busy.file.openers.watched() {
            assert!(std::time::Instant::now() < give_up, "a long run never watched its file");
            cycle(&busy);
        }
        let wd = busy.file.openers.wd.load(Ordering::Relaxed);
        // The run ended a poll interval ago, and the last sweep is long past.
        busy.file.openers.released.store(1, Ordering::Relaxed);
        LAST_SWEEP.store(0, Ordering::Relaxed);
        while busy.file.openers.watched() {
            assert!(std::time::Instant::now() < give_up, "the ended run kept its watch");
            LAST_SWEEP.store(0, Ordering::Relaxed);
            cycle(&other);
        }
        let watches = WATCHER.get().state.lock();
        assert!(!watches.files.get(&wd).is_some_and(|o| Arc::ptr_eq(o, &busy.file.openers)));
    }

    #[test]
    fn without_a_watch_the_periodic_windows_remain() {
        let file = LockFile::new(Path::new("/nonexistent/unwatchable"));
        assert!(!watched(&file));
        assert_eq!(file.openers.wd.load(Ordering::Relaxed), WATCH_FAILED);
        let ms = 1_000_000;
        let in_window = 100 * POLLER_PERIOD_NS + 10 * ms;
        file.run_start.store(in_window - 3_000 * ms, Ordering::Relaxed);
        file.last_release.store(in_window - ms, Ordering::Relaxed);
        assert!(must_leave_free(&file, in_window));
        // A later run tries again.
        end_watch(&file);
        assert_eq!(file.openers.wd.load(Ordering::Relaxed), NO_WATCH);
    }

    #[test]
    fn a_long_run_of_holds_watches_its_file_and_leaves_an_opener_a_window() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("busy");
        let lock = FileLock::new(&path);
        let cycle = || {
            assert!(lock.acquire(Until::forever(), &mut || false).unwrap_or(false));
            assert!(lock.release().is_ok());
        };
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while !lock.file.openers.watched() {
            assert!(std::time::Instant::now() < give_up, "a long run never watched its file");
            cycle();
        }
        let _waiter = std::fs::File::open(&path).expect("open");
        while lock.file.window_until.load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < give_up, "the open was never answered");
            cycle();
        }
        // A run that ended (the file left free longer than a poll interval) stops watching.
        lock.file.last_release.store(1, Ordering::Relaxed);
        cycle();
        assert!(!lock.file.openers.watched());
    }

    #[test]
    fn creates_directories_and_excludes_within_the_process() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a/b/lock");
        let (one, two) = (FileLock::new(&path), FileLock::new(&path));
        let now = Until::now;
        assert!(one.acquire(Until::forever(), &mut || false).unwrap_or(false));
        assert!(path.exists());
        assert!(!two.acquire(now(), &mut || false).unwrap_or(true));
        assert!(one.release().is_ok());
        assert!(two.acquire(now(), &mut || false).unwrap_or(false));
        assert!(matches!(one.release(), Ok(())));
        assert!(matches!(two.release(), Err(LockError::NotHeld)));
    }

    #[test]
    fn a_file_as_lock_path_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").expect("write");
        let lock = FileLock::new(&file.join("x"));
        match lock.acquire(Until::forever(), &mut || false) {
            Err(LockError::LockPath { path, .. }) => assert_eq!(path, file),
            other => {
                panic!("expected a LockPath error, got {:?}", other.map_err(|e| e.to_string()))
            }
        }
        assert!(!lock.locked());
    }

    #[test]
    fn a_held_lock_survives_the_trimming_of_idle_entries() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("held");
        assert!(FileLock::new(&path).acquire(Until::forever(), &mut || false).unwrap_or(false));
        let others: Vec<FileLock> = (0..2 * IDLE_FILES_MAX)
            .map(|i| FileLock::new(&dir.path().join(i.to_string())))
            .collect();
        drop(others);
        for i in 0..2 * IDLE_FILES_MAX {
            drop(FileLock::new(&dir.path().join(format!("idle-{i}"))));
        }
        let outsider = sys::open_lock_file(&path).expect("open");
        assert!(!sys::try_lock(&outsider).unwrap_or(true), "the kernel lock was dropped");
        assert!(FileLock::new(&path).release().is_ok());
        assert!(sys::try_lock(&outsider).unwrap_or(false));
    }

    #[test]
    fn removal_is_refused_while_held_and_relocks_the_new_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gone");
        let lock = FileLock::new(&path);
        assert!(lock.acquire(Until::forever(), &mut || false).unwrap_or(false));
        assert!(!lock.remove_if_unused().unwrap_or(true));
        assert!(lock.release().is_ok());
        assert!(lock.remove_if_unused().unwrap_or(false));
        assert!(!path.exists());
        assert!(lock.acquire(Until::forever(), &mut || false).unwrap_or(false));
        assert!(path.exists());
        assert!(lock.release().is_ok());
    }
}
