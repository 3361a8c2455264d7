//! An exclusive in-process lock that any thread may release (like Python's
//! `threading.Semaphore(1)`, which oslo uses). Not fair: the FIFO variant is
//! `Semaphore::new(1, true)`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::lock_api::{RawMutex as _, RawMutexTimed as _};
use parking_lot::RawMutex;

use crate::wait::WaitTicket;
use crate::{LockError, RawLock};

pub struct Mutex {
    raw: RawMutex,
    /// Set by the holder; lets `release` refuse an unheld lock instead of corrupting `raw`.
    held: AtomicBool,
}

impl Default for Mutex {
    fn default() -> Self {
        Self::new()
    }
}

impl Mutex {
    pub const fn new() -> Self {
        Mutex { raw: RawMutex::INIT, held: AtomicBool::new(false) }
    }

    pub fn locked(&self) -> bool {
        self.held.load(Ordering::Acquire)
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
        Ok(self.mark_held(self.raw.try_lock()))
    }

    fn acquire_step(&self, step: Duration, _ticket: &mut WaitTicket) -> Result<bool, LockError> {
        Ok(self.mark_held(self.raw.try_lock_for(step)))
    }

    fn release(&self) -> Result<(), LockError> {
        if !self.held.swap(false, Ordering::AcqRel) {
            return Err(LockError::NotHeld);
        }
        // SAFETY: `held` was true, so `raw` is locked, and the swap made this call the only
        // one allowed to unlock it.
        unsafe { self.raw.unlock() };
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
}
