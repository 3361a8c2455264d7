//! An exclusive in-process lock that any thread may release (like Python's
//! `threading.Semaphore(1)`, which oslo uses). Not fair: the FIFO variant is
//! `Semaphore::new(1, true)`.
//!
//! A lock word and the kernel's futex wait queue, as glibc's mutex does it: no queue of
//! waiters lives in our memory, so in a forked child, where the parent's other threads are
//! gone, nothing refers to them. (A user-space queue, as in parking_lot, would still list
//! those threads and could hand the lock to one of them, or follow memory that glibc hands to
//! the child's new threads.) An unlock only frees the lock and wakes one waiter, which then
//! competes for it like anyone else.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::affinity::Affinity;
use crate::sys;
use crate::wait::{self, WaitTicket};
use crate::{LockError, RawLock};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and some thread may be waiting: its unlock must wake one.
const CONTENDED: u32 = 2;

pub struct Mutex {
    state: AtomicU32,
    /// Set by the holder; lets `release` refuse an unheld lock instead of corrupting `state`.
    held: AtomicBool,
    /// Threads asleep on `state` (or about to be): a readiness probe for tests, touched only
    /// around the futex wait, never on an uncontended path.
    sleepers: AtomicU32,
    /// Which OS threads take it (noted by the Python binding; see `Affinity`).
    affinity: Affinity,
}

impl Default for Mutex {
    fn default() -> Self {
        Self::new()
    }
}

impl Mutex {
    pub const fn new() -> Self {
        Mutex {
            state: AtomicU32::new(UNLOCKED),
            held: AtomicBool::new(false),
            sleepers: AtomicU32::new(0),
            affinity: Affinity::new(),
        }
    }

    pub fn locked(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    pub fn affinity(&self) -> &Affinity {
        &self.affinity
    }

    /// Threads blocked waiting for it now (a test probe: "the waiter is asleep by now").
    pub fn waiters(&self) -> usize {
        self.sleepers.load(Ordering::SeqCst) as usize
    }

    fn try_lock(&self) -> bool {
        self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    fn lock_until(&self, deadline: Instant) -> bool {
        if self.try_lock() {
            return true;
        }
        loop {
            // Taking it as CONTENDED is pessimistic but safe: the next unlock wakes one waiter
            // more than needed at worst.
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            sys::wait_while_equal(&self.state, CONTENDED, deadline);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            sys::wake_one(&self.state);
        }
    }

    fn mark_held(&self, got: bool) -> bool {
        if got {
            self.held.store(true, Ordering::Release);
        }
        got
    }
}

impl RawLock for Mutex {
    fn try_acquire(&self) -> Result<bool, LockError> {
        Ok(self.mark_held(self.try_lock()))
    }

    fn acquire_step(&self, step: Duration, _ticket: &mut WaitTicket) -> Result<bool, LockError> {
        Ok(self.mark_held(self.lock_until(wait::step_end(step))))
    }

    fn release(&self) -> Result<(), LockError> {
        if !self.held.swap(false, Ordering::AcqRel) {
            return Err(LockError::NotHeld);
        }
        self.unlock();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_of_unheld_lock_is_refused() {
        let m = Mutex::new();
        assert!(matches!(m.release(), Err(LockError::NotHeld)));
        assert!(m.try_acquire().unwrap_or(false));
        assert!(!m.try_acquire().unwrap_or(true));
        assert!(m.release().is_ok());
        assert!(matches!(m.release(), Err(LockError::NotHeld)));
    }

    #[test]
    fn a_sleeping_waiter_is_counted_until_it_gets_the_lock() {
        let m = Mutex::new();
        assert!(m.try_acquire().unwrap_or(false));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| wait::acquire(&m, wait::Until::forever(), &mut || false));
            let deadline = Instant::now() + Duration::from_secs(10);
            while m.waiters() == 0 {
                assert!(Instant::now() < deadline, "the waiter never slept");
                std::thread::yield_now();
            }
            assert!(m.release().is_ok());
            assert!(matches!(waiter.join(), Ok(Ok(true))));
        });
        assert_eq!(m.waiters(), 0);
        assert!(m.release().is_ok());
    }

    #[test]
    fn threads_exclude_each_other_and_waits_end_on_time() {
        use std::sync::atomic::AtomicU64;
        let (m, counter) = (Mutex::new(), AtomicU64::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        assert!(wait::acquire(&m, wait::Until::forever(), &mut || false)
                            .unwrap_or(false));
                        // A read and a separate write: a second holder would lose an update.
                        let seen = counter.load(Ordering::Relaxed);
                        std::hint::spin_loop();
                        counter.store(seen + 1, Ordering::Relaxed);
                        assert!(m.release().is_ok());
                    }
                });
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 16_000);
        assert!(m.try_acquire().unwrap_or(false));
        let started = Instant::now();
        let soon = wait::Until::after(Some(Duration::from_millis(30)));
        assert!(!std::thread::scope(|s| {
            s.spawn(|| wait::acquire(&m, soon, &mut || false).unwrap_or(true)).join()
        })
        .unwrap_or(true));
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(m.release().is_ok());
    }
}
