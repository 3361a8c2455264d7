//! The two lock traits, the guard, and how long to wait.
//!
//! `RawLock` is a primitive: try once, block for one bounded step, release (a futex word, one
//! OFD lock). `Lock` is what a caller holds: every lock kind (in-process, file, "in-process then
//! file", a reader-writer side, the server locks) implements it, and the binding takes nothing
//! else. `Guard` and `Both` write "take A then B, give A back if B fails" once, for all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::registry::Handle;
use crate::wait::{self, DEFAULT_STEP};
use crate::LockError;

/// How long to wait and in what steps: the loop asks its caller whether to stop after each step.
#[derive(Clone, Copy, Debug)]
pub struct Until {
    /// `None`: forever.
    pub deadline: Option<Instant>,
    /// Longest single blocking step. Zero makes every step a non-blocking try, for callers
    /// that must not block their thread and wait in their `interrupted` instead.
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
        Until::deadline(wait::deadline_after(timeout))
    }

    pub fn with_step(self, step: Duration) -> Until {
        Until { step, ..self }
    }

    /// The deadline has passed (a wait for `Until::now()` has passed it from the start).
    pub fn passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Time left, `None` when waiting forever.
    pub fn left(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// A waiter's place in a backend's queue, kept across the steps of one wait so that a fair lock
/// does not send a waiter to the back each time a step ends.
#[derive(Debug, Default)]
pub struct WaitTicket(pub(crate) Option<u64>);

/// A primitive: one non-blocking try, one bounded blocking step, release.
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

/// A lock a caller holds: every lock kind implements this, and the binding takes only this.
pub trait Lock: Send + Sync {
    /// Take it, waiting until `until.deadline` in steps of at most `until.step`, asking
    /// `interrupted` between steps. `Ok(true)` when held, `Ok(false)` when the deadline passed.
    ///
    /// # Errors
    /// `Interrupted` when `interrupted` said so; the backend's errors. Nothing is held after an
    /// error.
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError>;

    /// # Errors
    /// `NotHeld` when it is not held; `Lost` when it was held and then taken away (it is not
    /// held any more either way); the backend's errors.
    fn release(&self) -> Result<(), LockError>;

    /// Whether the current hold is still ours. A local lock cannot be taken away, so it answers
    /// whether it is held; a server lock asks the server.
    ///
    /// # Errors
    /// The backend's errors (the answer is unknown then).
    fn is_still_owner(&self) -> Result<bool, LockError>;

    /// A try or a release may block for long (a network round trip): the binding then runs
    /// them with the GIL released, as it runs every wait.
    fn blocking_io(&self) -> bool {
        false
    }

    /// The longest single blocking step this kind wants: how late a deadline or Ctrl-C may be
    /// noticed, and for a server wait, the server-side wait per round trip.
    fn max_step(&self) -> Duration {
        DEFAULT_STEP
    }

    /// This same lock, owned, for a helper thread that waits on the caller's behalf while the
    /// caller's own thread must keep running (a greenthread under eventlet: see
    /// `crate::proxy`). Its acquire and release must act on the very hold the caller's object
    /// records (same owner id, same open file, same session). `None` (the default): the caller
    /// cannot hand its waits over, and waits in short sleeps instead.
    fn shared(&self) -> Option<Arc<dyn Lock>> {
        None
    }
}

/// A lock shared with helper threads.
impl<L: Lock + ?Sized + 'static> Lock for Arc<L> {
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        (**self).acquire(until, interrupted)
    }
    fn release(&self) -> Result<(), LockError> {
        (**self).release()
    }
    fn is_still_owner(&self) -> Result<bool, LockError> {
        (**self).is_still_owner()
    }
    fn blocking_io(&self) -> bool {
        (**self).blocking_io()
    }
    fn max_step(&self) -> Duration {
        (**self).max_step()
    }
    fn shared(&self) -> Option<Arc<dyn Lock>> {
        Some(Arc::new(Arc::clone(self)))
    }
}

/// A named lock from a registry; every handle of a name is the same lock.
impl<R: RawLock + 'static> Lock for Handle<R> {
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        wait::acquire(&**self, until, interrupted)
    }
    fn release(&self) -> Result<(), LockError> {
        (**self).release()
    }
    fn is_still_owner(&self) -> Result<bool, LockError> {
        Ok(true)
    }
    fn shared(&self) -> Option<Arc<dyn Lock>> {
        Some(Arc::new(self.clone()))
    }
}

impl<L: Lock + ?Sized> Lock for &L {
    fn shared(&self) -> Option<Arc<dyn Lock>> {
        (**self).shared()
    }
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        (**self).acquire(until, interrupted)
    }
    fn release(&self) -> Result<(), LockError> {
        (**self).release()
    }
    fn is_still_owner(&self) -> Result<bool, LockError> {
        (**self).is_still_owner()
    }
    fn blocking_io(&self) -> bool {
        (**self).blocking_io()
    }
    fn max_step(&self) -> Duration {
        (**self).max_step()
    }
}

/// Absent: nothing to take (say, process locking switched off), always had.
impl<L: Lock> Lock for Option<L> {
    fn shared(&self) -> Option<Arc<dyn Lock>> {
        match self {
            Some(l) => Some(Arc::new(Some(l.shared()?))),
            None => Some(Arc::new(None::<Arc<dyn Lock>>)),
        }
    }
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        self.as_ref().map_or(Ok(true), |l| l.acquire(until, interrupted))
    }
    fn release(&self) -> Result<(), LockError> {
        self.as_ref().map_or(Ok(()), Lock::release)
    }
    fn is_still_owner(&self) -> Result<bool, LockError> {
        self.as_ref().map_or(Ok(true), Lock::is_still_owner)
    }
    fn blocking_io(&self) -> bool {
        self.as_ref().is_some_and(Lock::blocking_io)
    }
    fn max_step(&self) -> Duration {
        self.as_ref().map_or(DEFAULT_STEP, Lock::max_step)
    }
}

/// A primitive used as a `Lock`: the shared wait loop drives it.
pub struct Raw<'a, R: RawLock + ?Sized>(pub &'a R);

impl<R: RawLock + ?Sized> Lock for Raw<'_, R> {
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        wait::acquire(self.0, until, interrupted)
    }
    fn release(&self) -> Result<(), LockError> {
        self.0.release()
    }
    /// A primitive does not know who holds it; the caller's bookkeeping does.
    fn is_still_owner(&self) -> Result<bool, LockError> {
        Ok(true)
    }
}

/// A hold of `lock`: dropping the guard releases it. `keep` hands the hold over to a caller
/// that releases it later through the lock itself (the binding, across Python calls).
#[must_use = "dropping the guard releases the lock at once"]
pub struct Guard<'a, L: Lock + ?Sized> {
    lock: &'a L,
    held: bool,
}

impl<'a, L: Lock + ?Sized> Guard<'a, L> {
    /// `Ok(None)` when the deadline passed first.
    ///
    /// # Errors
    /// As `Lock::acquire`; nothing is held then.
    pub fn acquire(
        lock: &'a L,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Guard<'a, L>>, LockError> {
        // Not `then_some`: its argument is built either way, and dropping that guard would
        // release a lock this call never took.
        if lock.acquire(until, interrupted)? {
            Ok(Some(Guard { lock, held: true }))
        } else {
            Ok(None)
        }
    }

    /// # Errors
    /// As `Lock::release` (`Lost` among them): the hold is over either way.
    pub fn release(mut self) -> Result<(), LockError> {
        self.held = false;
        self.lock.release()
    }

    /// The caller holds the lock from now on and must release it.
    pub fn keep(mut self) {
        self.held = false;
    }

    /// # Errors
    /// As `Lock::is_still_owner`.
    pub fn is_still_owner(&self) -> Result<bool, LockError> {
        self.lock.is_still_owner()
    }
}

impl<L: Lock + ?Sized> Drop for Guard<'_, L> {
    fn drop(&mut self) {
        if self.held {
            // Nobody is left to tell: a release error on a hold being abandoned (the caller's
            // own error or timeout is what it sees) leaves nothing more to do.
            let _ = self.lock.release();
        }
    }
}

/// Take `.0`, then `.1` within the same deadline; `.0` is given back when `.1` is not had.
/// Released in the reverse order.
pub struct Both<A, B>(pub A, pub B);

impl<A: Lock, B: Lock> Lock for Both<A, B> {
    fn shared(&self) -> Option<Arc<dyn Lock>> {
        Some(Arc::new(Both(self.0.shared()?, self.1.shared()?)))
    }
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        let Some(first) = Guard::acquire(&self.0, until, interrupted)? else {
            return Ok(false);
        };
        if !self.1.acquire(until, interrupted)? {
            return Ok(false);
        }
        first.keep();
        Ok(true)
    }

    fn release(&self) -> Result<(), LockError> {
        let second = self.1.release();
        let first = self.0.release();
        second.and(first)
    }

    fn is_still_owner(&self) -> Result<bool, LockError> {
        Ok(self.0.is_still_owner()? && self.1.is_still_owner()?)
    }

    fn blocking_io(&self) -> bool {
        self.0.blocking_io() || self.1.blocking_io()
    }

    fn max_step(&self) -> Duration {
        self.0.max_step().min(self.1.max_step())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// A lock that is free unless `busy`, counting releases.
    #[derive(Default)]
    struct Probe {
        busy: AtomicBool,
        held: AtomicBool,
        releases: AtomicUsize,
    }

    impl Lock for Probe {
        fn acquire(&self, _: Until, _: &mut dyn FnMut() -> bool) -> Result<bool, LockError> {
            if self.busy.load(Ordering::SeqCst) || self.held.swap(true, Ordering::SeqCst) {
                return Ok(false);
            }
            Ok(true)
        }
        fn release(&self) -> Result<(), LockError> {
            self.releases.fetch_add(1, Ordering::SeqCst);
            if self.held.swap(false, Ordering::SeqCst) {
                Ok(())
            } else {
                Err(LockError::NotHeld)
            }
        }
        fn is_still_owner(&self) -> Result<bool, LockError> {
            Ok(self.held.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn a_failed_guard_acquire_releases_nothing() {
        let lock = Probe::default();
        lock.busy.store(true, Ordering::SeqCst);
        assert!(matches!(Guard::acquire(&lock, Until::now(), &mut || false), Ok(None)));
        assert_eq!(lock.releases.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_dropped_guard_releases_and_a_kept_one_does_not() {
        let lock = Probe::default();
        drop(Guard::acquire(&lock, Until::now(), &mut || false));
        assert_eq!(lock.releases.load(Ordering::SeqCst), 1);
        assert!(!lock.held.load(Ordering::SeqCst));
        if let Ok(Some(guard)) = Guard::acquire(&lock, Until::now(), &mut || false) {
            guard.keep();
        }
        assert!(lock.held.load(Ordering::SeqCst));
        assert!(lock.release().is_ok());
    }

    #[test]
    fn both_gives_the_first_back_when_the_second_is_busy() {
        let both = Both(Probe::default(), Probe::default());
        both.1.busy.store(true, Ordering::SeqCst);
        assert!(matches!(both.acquire(Until::now(), &mut || false), Ok(false)));
        assert!(!both.0.held.load(Ordering::SeqCst));
        assert_eq!(both.1.releases.load(Ordering::SeqCst), 0);
        both.1.busy.store(false, Ordering::SeqCst);
        assert!(matches!(both.acquire(Until::now(), &mut || false), Ok(true)));
        assert!(matches!(both.is_still_owner(), Ok(true)));
        assert!(both.release().is_ok());
        assert!(matches!(both.release(), Err(LockError::NotHeld)));
    }

    #[test]
    fn an_absent_lock_is_always_had() {
        let none: Option<Probe> = None;
        assert!(matches!(none.acquire(Until::now(), &mut || false), Ok(true)));
        assert!(none.release().is_ok());
    }
}
