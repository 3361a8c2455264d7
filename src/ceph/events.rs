//! A change counter that watch callbacks and finished attempts bump, and waiters sleep on.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

#[derive(Default)]
pub struct Events {
    seq: Mutex<u64>,
    cv: Condvar,
}

impl Events {
    pub fn seq(&self) -> u64 {
        *self.seq.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn bump(&self) {
        let mut s = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        *s = s.wrapping_add(1);
        self.cv.notify_all();
    }

    /// Sleep until the counter differs from `seen` or `until`; returns whether it changed.
    pub fn wait_change(&self, seen: u64, until: Instant) -> bool {
        let mut s = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        while *s == seen {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = match self.cv.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}
