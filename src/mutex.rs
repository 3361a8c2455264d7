//! An exclusive in-process lock that any thread may release (like Python's
//! `threading.Semaphore(1)`, which oslo uses). Not fair: the FIFO variant is
//! `Semaphore::new(1, true)`.
//!
//! Built on parking_lot's parking lot rather than on its `RawMutex`, whose unlock may hand the
//! lock straight to the first parked waiter. In a forked child that waiter can be a thread that
//! did not survive the fork, and a lock handed to it stays taken for good; here an unlock only
//! frees the lock and wakes a waiter, which then competes for it like anyone else.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use parking_lot_core::{ParkResult, DEFAULT_PARK_TOKEN, DEFAULT_UNPARK_TOKEN};

use crate::wait::{self, WaitTicket};
use crate::{LockError, RawLock};

const LOCKED: u8 = 1;
/// Some thread is (or is about to be) parked waiting for the lock.
const PARKED: u8 = 2;

pub struct Mutex {
    state: AtomicU8,
    /// Set by the holder; lets `release` refuse an unheld lock instead of corrupting `state`.
    held: AtomicBool,
}

impl Default for Mutex {
    fn default() -> Self {
        Self::new()
    }
}

impl Mutex {
    pub const fn new() -> Self {
        Mutex { state: AtomicU8::new(0), held: AtomicBool::new(false) }
    }

    pub fn locked(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    fn key(&self) -> usize {
        &self.state as *const AtomicU8 as usize
    }

    fn try_lock(&self) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & LOCKED == 0 {
            match self.state.compare_exchange_weak(
                state,
                state | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
        false
    }

    fn lock_until(&self, deadline: Instant) -> bool {
        loop {
            if self.try_lock() {
                return true;
            }
            let state = self.state.load(Ordering::Relaxed);
            if state & LOCKED == 0 {
                continue;
            }
            if state & PARKED == 0
                && self
                    .state
                    .compare_exchange_weak(
                        state,
                        state | PARKED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_err()
            {
                continue;
            }
            let validate = || self.state.load(Ordering::Relaxed) == LOCKED | PARKED;
            let timed_out = |_, was_last: bool| {
                if was_last {
                    self.state.fetch_and(!PARKED, Ordering::Relaxed);
                }
            };
            // SAFETY: the key is this lock's address, used only by this lock's own park and
            // unpark calls; the callbacks neither panic nor call into the parking lot.
            let parked = unsafe {
                parking_lot_core::park(
                    self.key(),
                    validate,
                    || {},
                    timed_out,
                    DEFAULT_PARK_TOKEN,
                    Some(deadline),
                )
            };
            if matches!(parked, ParkResult::TimedOut) {
                return self.try_lock();
            }
        }
    }

    fn unlock(&self) {
        if self.state.compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed).is_ok() {
            return;
        }
        // Waiters are parked. The state is changed under the queue's lock, where no waiter can
        // park or give up meanwhile; the woken one takes its chances with the rest.
        let free = |woken: parking_lot_core::UnparkResult| {
            let state = if woken.have_more_threads { PARKED } else { 0 };
            self.state.store(state, Ordering::Release);
            DEFAULT_UNPARK_TOKEN
        };
        // SAFETY: as in `lock_until`.
        unsafe { parking_lot_core::unpark_one(self.key(), free) };
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
