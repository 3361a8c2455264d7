//! The lock trait every backend implements and the one wait loop they share.
//!
//! A backend only knows how to try once and how to block for a bounded step (a kernel wait, a
//! server-side `GET_LOCK(name, step)`). The loop owns deadlines and interruption, so a caller
//! that must react to signals (Python's Ctrl-C) gets control back between steps.

use std::time::{Duration, Instant};

use crate::LockError;

/// Longest single blocking step: bounds how late a deadline or an interrupt is noticed.
pub const DEFAULT_STEP: Duration = Duration::from_millis(50);

/// How long to wait and in what steps: the loop asks its caller whether to stop after each step.
#[derive(Clone, Copy, Debug)]
pub struct Until {
    /// `None`: forever.
    pub deadline: Option<Instant>,
    /// Longest single blocking step. Zero makes every step a non-blocking try, for callers
    /// that must not block their thread (eventlet) and wait in their `interrupted` instead.
    pub step: Duration,
}

impl Until {
    pub fn deadline(deadline: Option<Instant>) -> Until {
        Until { deadline, step: DEFAULT_STEP }
    }

    pub fn forever() -> Until {
        Until::deadline(None)
    }

    /// One try, no waiting.
    pub fn now() -> Until {
        Until::deadline(Some(Instant::now()))
    }

    /// `timeout` from now; `None` waits forever.
    pub fn after(timeout: Option<Duration>) -> Until {
        Until::deadline(deadline_after(timeout))
    }

    pub fn with_step(self, step: Duration) -> Until {
        Until { step, ..self }
    }

    fn passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// A waiter's place in a backend's queue, kept across the steps of one wait so that a fair lock
/// does not send a waiter to the back each time a step ends.
#[derive(Debug, Default)]
pub struct WaitTicket(pub(crate) Option<u64>);

pub trait RawLock: Send + Sync {
    /// One attempt that never blocks. `Ok(true)` when the lock is now held.
    ///
    /// # Errors
    /// Broken lock storage or connection; "busy" is `Ok(false)`.
    fn try_acquire(&self) -> Result<bool, LockError>;

    /// Block at most `step` for the lock. `Ok(true)` when the lock is now held; returning early
    /// with `Ok(false)` is allowed (the loop tries again).
    ///
    /// # Errors
    /// As `try_acquire`.
    fn acquire_step(&self, step: Duration, ticket: &mut WaitTicket) -> Result<bool, LockError>;

    /// The wait that owns `ticket` gives up; a queueing backend forgets the waiter.
    fn cancel_wait(&self, _ticket: &mut WaitTicket) {}

    /// Give the lock back.
    ///
    /// # Errors
    /// `LockError::NotHeld` when it is not held; I/O errors of the backend.
    fn release(&self) -> Result<(), LockError>;
}

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
