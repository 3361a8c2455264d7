//! Wake-ups for the waiters of a lock whose state sits behind a mutex (the semaphore and the
//! reader-writer lock): a condition variable whose sleepers wait in the kernel, on a futex over
//! a change counter, rather than in a queue in our memory. A forked child, where the parent's
//! waiting threads are gone, then holds no trace of them; a condition variable's queue would
//! still list them, in memory that glibc hands to the child's new threads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use parking_lot::MutexGuard;

use crate::sys;

#[derive(Default)]
pub struct Changes {
    /// Bumped by every notification; a sleeper sleeps while it still reads what it saw.
    count: AtomicU32,
    /// Threads asleep (or about to be): notifications make a system call only for them.
    sleepers: AtomicU32,
}

impl Changes {
    pub const fn new() -> Changes {
        Changes { count: AtomicU32::new(0), sleepers: AtomicU32::new(0) }
    }

    /// Sleep, with `guard` unlocked, until a notification after this call or `deadline`; true
    /// when the deadline has passed. No notification is missed: the state was read under the
    /// lock, and whoever changes it next notifies after taking that lock.
    pub fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, deadline: Instant) -> bool {
        let seen = self.count.load(Ordering::SeqCst);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        MutexGuard::unlocked(guard, || sys::wait_while_equal(&self.count, seen, deadline));
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        Instant::now() >= deadline
    }

    /// Threads asleep now (or about to be): a test probe.
    pub fn sleepers(&self) -> usize {
        self.sleepers.load(Ordering::SeqCst) as usize
    }

    pub fn notify_all(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            sys::wake_all(&self.count);
        }
    }

    pub fn notify_one(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            sys::wake_one(&self.count);
        }
    }
}
