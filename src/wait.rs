//! The one wait loop every primitive shares.
//!
//! A backend only knows how to try once and how to block for a bounded step (a kernel wait, a
//! server-side `GET_LOCK(name, step)`). The loop owns deadlines and interruption, so a caller
//! that must react to signals (Python's Ctrl-C) gets control back between steps.

use std::time::{Duration, Instant};

pub use crate::lock::{RawLock, Until, WaitTicket};
use crate::LockError;

/// Longest single blocking step: bounds how late a deadline or an interrupt is noticed.
pub const DEFAULT_STEP: Duration = Duration::from_millis(50);

/// Wait for `lock` until `until.deadline`, asking `interrupted` between steps.
///
/// Returns `Ok(false)` when the deadline passed first. Nothing is held after an error.
///
/// # Errors
/// `LockError::Interrupted` when `interrupted` returned true; the backend's errors.
pub fn acquire<L: RawLock + ?Sized>(
    lock: &L,
    until: Until,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<bool, LockError> {
    if lock.try_acquire()? {
        return Ok(true);
    }
    if until.passed() {
        return Ok(false);
    }
    let mut ticket = WaitTicket::default();
    let outcome = wait_steps(lock, until, interrupted, &mut ticket);
    if !matches!(outcome, Ok(true)) {
        lock.cancel_wait(&mut ticket);
    }
    outcome
}

fn wait_steps<L: RawLock + ?Sized>(
    lock: &L,
    until: Until,
    interrupted: &mut dyn FnMut() -> bool,
    ticket: &mut WaitTicket,
) -> Result<bool, LockError> {
    loop {
        let step = match until.deadline {
            None => until.step,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                left.min(until.step)
            }
        };
        if lock.acquire_step(step, ticket)? {
            return Ok(true);
        }
        if interrupted() {
            return Err(LockError::Interrupted);
        }
    }
}

/// When a step of `step` started now ends; a step past the clock's range is cut to the default.
pub(crate) fn step_end(step: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(step).unwrap_or(now + DEFAULT_STEP)
}

/// `timeout` as a deadline from now; `None` waits forever (so does one past the clock's range).
pub fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}
