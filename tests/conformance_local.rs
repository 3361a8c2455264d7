//! The in-process locks through the conformance kit: the mutex and the semaphore as primitives
//! (the shared wait loop drives them through `Raw`), and the reader-writer lock's sides.

#[macro_use]
mod conformance;

use conformance::Subject;
use ferrolock::local::rwlock::{Access, Side};
use ferrolock::local::{Mutex, RwLock, Semaphore};
use ferrolock::Raw;

/// A lock that lives as long as the test binary: handles borrow it, as `Raw` and `Side` do.
fn leak<T>(lock: T) -> &'static T {
    Box::leak(Box::new(lock))
}

struct PlainMutex;

impl Subject for PlainMutex {
    type Handle = Raw<'static, Mutex>;
    fn pair(&self) -> (Self::Handle, Self::Handle) {
        let m = leak(Mutex::new());
        (Raw(m), Raw(m))
    }
    fn waiters(&self, handle: &Self::Handle) -> Option<usize> {
        Some(handle.0.waiters())
    }
    /// Any thread may release it (like `threading.Semaphore(1)`): it knows no holder.
    fn tracks_owner(&self) -> bool {
        false
    }
}

struct OnePermit {
    fair: bool,
}

impl Subject for OnePermit {
    type Handle = Raw<'static, Semaphore>;
    fn pair(&self) -> (Self::Handle, Self::Handle) {
        let s = match Semaphore::new(1, self.fair) {
            Ok(s) => leak(s),
            Err(e) => panic!("semaphore: {e}"),
        };
        (Raw(s), Raw(s))
    }
    fn waiters(&self, handle: &Self::Handle) -> Option<usize> {
        Some(handle.0.waiters())
    }
    fn tracks_owner(&self) -> bool {
        false
    }
}

/// Two owners of one reader-writer lock, with the given sides.
struct Sides(Access, Access);

impl Subject for Sides {
    type Handle = Side<&'static RwLock>;
    fn pair(&self) -> (Self::Handle, Self::Handle) {
        let lock = leak(RwLock::new());
        (Side { lock, owner: 1, access: self.0 }, Side { lock, owner: 2, access: self.1 })
    }
    fn waiters(&self, handle: &Self::Handle) -> Option<usize> {
        Some(handle.lock.waiters())
    }
}

conformance_tests!(mutex, PlainMutex);
conformance_tests!(semaphore, OnePermit { fair: false });
conformance_tests!(fair_semaphore, OnePermit { fair: true });
conformance_tests!(writer_writer, Sides(Access::Write, Access::Write));
conformance_tests!(writer_reader, Sides(Access::Write, Access::Read));
conformance_tests!(reader_writer, Sides(Access::Read, Access::Write));

/// A "lock" that lets everyone in and never says no: the kit must fail it.
struct NoLock;

impl ferrolock::Lock for NoLock {
    fn acquire(
        &self,
        _until: ferrolock::Until,
        _interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, ferrolock::LockError> {
        Ok(true)
    }
    fn release(&self) -> Result<(), ferrolock::LockError> {
        Ok(())
    }
    fn is_still_owner(&self) -> Result<bool, ferrolock::LockError> {
        Ok(true)
    }
}

impl Subject for NoLock {
    type Handle = NoLock;
    fn pair(&self) -> (NoLock, NoLock) {
        (NoLock, NoLock)
    }
}

type Check = fn(&NoLock);

#[test]
fn the_kit_fails_a_lock_that_does_not_exclude() {
    let checks: [(&str, Check); 5] = [
        ("try while held", conformance::a_try_while_held_is_false),
        ("timed wait", conformance::a_timed_wait_ends_false_not_before_its_deadline),
        ("interrupt", conformance::an_interrupt_between_steps_ends_the_wait),
        ("release when not held", conformance::release_when_not_held_is_not_held),
        ("is_still_owner", conformance::is_still_owner_follows_the_hold),
    ];
    for (name, check) in checks {
        let caught = std::panic::catch_unwind(|| check(&NoLock));
        assert!(caught.is_err(), "the {name} check passed a lock that excludes nobody");
    }
}
