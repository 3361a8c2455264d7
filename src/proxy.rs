//! Waits that a helper thread does on behalf of a caller that must keep its own thread running
//! (a greenthread: eventlet runs every greenthread and its hub on one OS thread, so a blocking
//! wait there would stop them all). The helper blocks on the real lock (a futex, a kernel file
//! lock, a server-side wait) with the caller's deadline and, when it is done, makes a descriptor
//! readable, which the caller's event loop watches. The caller may give up at any time
//! (`cancel`, or dropping the wait): the helper then stops at its next step and gives back what
//! it took, so nothing stays held.
//!
//! Helpers come from a pool that grows to the number of waits in flight and keeps idle threads
//! a while, so a contended wait costs a wake-up, not a thread start. There is no cap: a wait
//! queued behind helpers that all wait for a lock its caller holds would never end.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::fork::PerProcess;
use crate::sys::SignalFd;
use crate::{Lock, LockError, Until};

const WAITING: u8 = 0;
const DONE: u8 = 1;
const CANCELLED: u8 = 2;

struct Shared {
    state: AtomicU8,
    outcome: Mutex<Option<Result<bool, LockError>>>,
    signal: SignalFd,
}

/// One wait in flight; see the module doc.
pub struct ProxyWait {
    shared: Arc<Shared>,
    lock: Arc<dyn Lock>,
    /// The outcome was handed to the caller (or the wait was cancelled): nothing left to undo.
    settled: bool,
}

impl ProxyWait {
    /// Start waiting for `lock` on a helper thread (its caller tried once already).
    ///
    /// # Errors
    /// No descriptor or thread could be made (descriptor or thread limits).
    pub fn start(lock: Arc<dyn Lock>, until: Until) -> io::Result<ProxyWait> {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(WAITING),
            outcome: Mutex::new(None),
            signal: SignalFd::new()?,
        });
        let (theirs, their_lock) = (Arc::clone(&shared), Arc::clone(&lock));
        pool().submit(Box::new(move || {
            let outcome = their_lock
                .acquire(until, &mut || theirs.state.load(Ordering::Acquire) == CANCELLED);
            let got = matches!(outcome, Ok(true));
            *theirs.outcome.lock() = Some(outcome);
            if theirs
                .state
                .compare_exchange(WAITING, DONE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                theirs.signal.raise();
            } else if got {
                // The caller left while we waited: the hold is nobody's.
                let _ = their_lock.release();
            }
        }))?;
        Ok(ProxyWait { shared, lock, settled: false })
    }

    /// The descriptor that becomes readable when the wait is over.
    pub fn fd(&self) -> RawFd {
        self.shared.signal.fd()
    }

    /// The outcome once the helper is done; `None` while it waits. Call `clear` before watching
    /// the descriptor again after a `None`, so a signal that raced the look is not lost.
    pub fn outcome(&mut self) -> Option<Result<bool, LockError>> {
        if self.shared.state.load(Ordering::Acquire) != DONE {
            return None;
        }
        let outcome = self.shared.outcome.lock().take();
        self.settled = outcome.is_some();
        outcome
    }

    /// Drain the descriptor (it stays readable until then).
    pub fn clear(&self) {
        self.shared.signal.clear();
    }

    /// The caller gives up: nothing is held afterwards (a hold the helper got anyway is given
    /// back, by a helper, since a give-back may block on I/O).
    pub fn cancel(mut self) {
        self.settle();
    }

    /// In a forked child, a wait its parent started: the helper is not here, and whatever it
    /// does concerns the parent. Forget it without touching the lock.
    pub fn abandon(mut self) {
        self.settled = true;
    }

    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let cancelled = self
            .shared
            .state
            .compare_exchange(WAITING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if cancelled {
            return; // the helper gives back whatever it gets
        }
        if matches!(self.shared.outcome.lock().take(), Some(Ok(true))) {
            let lock = Arc::clone(&self.lock);
            if pool().submit(Box::new(move || drop(lock.release()))).is_err() {
                let _ = self.lock.release();
            }
        }
    }
}

impl Drop for ProxyWait {
    fn drop(&mut self) {
        self.settle();
    }
}

type Task = Box<dyn FnOnce() + Send>;

/// How long an idle helper stays for the next wait.
const IDLE_KEEP: Duration = Duration::from_secs(30);
/// Helpers run lock calls only (a futex, fcntl, a socket round trip).
const HELPER_STACK: usize = 256 * 1024;

#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

#[derive(Default)]
struct PoolState {
    tasks: VecDeque<Task>,
    idle: usize,
}

/// A forked child has none of its parent's helpers: it gets a pool of its own, and leaves the
/// parent's alone (its lock may have been held by a thread the child did not get).
static POOL: PerProcess<Pool> = PerProcess::new();

fn pool() -> &'static Pool {
    POOL.get()
}

impl Pool {
    fn submit(&'static self, task: Task) -> io::Result<()> {
        let mut state = self.state.lock();
        state.tasks.push_back(task);
        // Every queued task needs an idle helper of its own: a busy one may block for long.
        if state.tasks.len() <= state.idle {
            self.work.notify_one();
            return Ok(());
        }
        drop(state);
        let spawned = std::thread::Builder::new()
            .name("ferrolock-wait".into())
            .stack_size(HELPER_STACK)
            .spawn(move || self.serve());
        if let Err(e) = spawned {
            // Not run by anyone: take it back (the newest is ours, or one just like it).
            self.state.lock().tasks.pop_back();
            return Err(e);
        }
        Ok(())
    }

    fn serve(&self) {
        let mut state = self.state.lock();
        loop {
            if let Some(task) = state.tasks.pop_front() {
                drop(state);
                task();
                state = self.state.lock();
                continue;
            }
            state.idle += 1;
            let timed_out = self.work.wait_for(&mut state, IDLE_KEEP).timed_out();
            state.idle -= 1;
            if timed_out && state.tasks.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::Mutex as LocalMutex;
    use crate::sys::signal_fd::readable;
    use crate::RawLock;

    struct Held(LocalMutex);

    impl Lock for Held {
        fn acquire(
            &self,
            until: Until,
            interrupted: &mut dyn FnMut() -> bool,
        ) -> Result<bool, LockError> {
            crate::wait::acquire(&self.0, until, interrupted)
        }
        fn release(&self) -> Result<(), LockError> {
            self.0.release()
        }
        fn is_still_owner(&self) -> Result<bool, LockError> {
            Ok(self.0.locked())
        }
    }

    fn wait_done(w: &mut ProxyWait) -> Result<bool, LockError> {
        loop {
            if let Some(outcome) = w.outcome() {
                return outcome;
            }
            w.clear();
            if w.outcome().is_none() {
                assert!(readable(w.fd(), 10_000), "no signal within 10 s");
            }
        }
    }

    #[test]
    fn a_release_wakes_the_caller_with_the_lock() {
        let lock = Arc::new(Held(LocalMutex::new()));
        assert!(lock.0.try_acquire().unwrap_or(false));
        let mut w = ProxyWait::start(lock.clone(), Until::forever()).expect("start");
        assert!(!readable(w.fd(), 0));
        assert!(w.outcome().is_none());
        assert!(lock.0.release().is_ok());
        assert!(matches!(wait_done(&mut w), Ok(true)));
        assert!(!lock.0.try_acquire().unwrap_or(true), "the wait holds it for its caller");
        assert!(lock.0.release().is_ok());
    }

    #[test]
    fn a_deadline_ends_the_wait_holding_nothing() {
        let lock = Arc::new(Held(LocalMutex::new()));
        assert!(lock.0.try_acquire().unwrap_or(false));
        let mut w = ProxyWait::start(lock.clone(), Until::after(Some(Duration::from_millis(20))))
            .expect("start");
        assert!(matches!(wait_done(&mut w), Ok(false)));
        assert!(lock.0.release().is_ok());
        assert!(lock.0.try_acquire().unwrap_or(false));
        assert!(lock.0.release().is_ok());
    }

    #[test]
    fn a_cancelled_wait_leaves_nothing_held_whenever_it_is_cancelled() {
        let lock = Arc::new(Held(LocalMutex::new()));
        let ten_seconds = || Until::after(Some(Duration::from_secs(10)));
        for round in 0..200 {
            // The last round's cancelled helper may still be waiting, and may take the lock and
            // give it back at any moment: wait for it rather than try once.
            let got = crate::wait::acquire(&lock.0, ten_seconds(), &mut || false);
            assert!(matches!(got, Ok(true)), "round {round}: never free");
            let w = ProxyWait::start(lock.clone(), Until::forever()).expect("start");
            // Cancel before, around and after the helper took it.
            if round % 2 == 0 {
                assert!(lock.0.release().is_ok());
                w.cancel();
            } else {
                w.cancel();
                assert!(lock.0.release().is_ok());
            }
            // The helper may still be giving it back: the lock must come free.
            let got = crate::wait::acquire(&lock.0, ten_seconds(), &mut || false);
            assert!(matches!(got, Ok(true)), "round {round}: still held");
            assert!(lock.0.release().is_ok());
        }
    }

    #[test]
    fn many_waits_in_flight_each_get_a_helper() {
        let lock = Arc::new(Held(LocalMutex::new()));
        assert!(lock.0.try_acquire().unwrap_or(false));
        let mut waits: Vec<ProxyWait> = (0..16)
            .map(|_| ProxyWait::start(lock.clone(), Until::forever()).expect("start"))
            .collect();
        assert!(lock.0.release().is_ok());
        for _ in 0..16 {
            // Exactly one wait holds it at a time: find it, release it.
            let mut found = false;
            while !found {
                for w in waits.iter_mut() {
                    if let Some(outcome) = w.outcome() {
                        assert!(matches!(outcome, Ok(true)));
                        assert!(lock.0.release().is_ok());
                        found = true;
                        break;
                    }
                }
                std::thread::yield_now();
            }
        }
        drop(waits.drain(..));
    }
}
