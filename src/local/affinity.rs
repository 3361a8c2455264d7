//! Which OS threads use an in-process lock: none yet, one, or several (for good).
//!
//! Under eventlet every greenthread of a hub runs on one OS thread. While only that thread has
//! used a lock, its holder is a greenthread there, and that holder's release runs there too: a
//! waiting greenthread can then sleep in the hub and be woken by the release itself, with no
//! helper thread and no descriptor in the hub. Once a second OS thread (eventlet's tpool, a
//! native thread) has used the lock, waits must go through a helper thread that can see any
//! holder's release, and that stays so for the lock's life.

use std::cell::Cell;
use std::sync::atomic::{fence, AtomicU64, Ordering};

const NOBODY: u64 = 0;
const SEVERAL: u64 = u64::MAX;

pub struct Affinity(AtomicU64);

impl Default for Affinity {
    fn default() -> Self {
        Self::new()
    }
}

impl Affinity {
    pub const fn new() -> Self {
        Affinity(AtomicU64::new(NOBODY))
    }

    /// The calling thread is about to try to take the lock. Costs a load once the lock is
    /// known to be this thread's, or to be shared.
    #[inline]
    pub fn note(&self) {
        let me = thread_number();
        let seen = self.0.load(Ordering::Relaxed);
        if seen == me || seen == SEVERAL {
            return;
        }
        if seen == NOBODY
            && self.0.compare_exchange(NOBODY, me, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            return;
        }
        self.0.store(SEVERAL, Ordering::SeqCst);
        // Pairs with the fence in `only_this_thread`: a waiter that saw our hold also sees
        // that the lock is shared now.
        fence(Ordering::SeqCst);
    }

    /// After a failed try: whether the calling thread is the only one that ever noted the lock,
    /// so that its holder (which noted before taking it) runs on this thread.
    pub fn only_this_thread(&self) -> bool {
        fence(Ordering::SeqCst);
        self.0.load(Ordering::SeqCst) == thread_number()
    }
}

/// A number for the calling OS thread, never 0 nor reused. A forked child's thread keeps its
/// parent's number (thread-local storage is copied), as it keeps the greenthreads.
pub fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static NUMBER: Cell<u64> = const { Cell::new(NOBODY) };
    }
    NUMBER.with(|number| {
        if number.get() == NOBODY {
            number.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        number.get()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_keeps_it_until_another_uses_it() {
        let a = Affinity::new();
        assert!(!a.only_this_thread(), "nobody noted it yet");
        a.note();
        a.note();
        assert!(a.only_this_thread());
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(!a.only_this_thread());
                a.note();
            });
        });
        assert!(!a.only_this_thread(), "shared once a second thread used it");
        a.note();
        assert!(!a.only_this_thread(), "shared for good");
    }

    #[test]
    fn threads_have_distinct_numbers() {
        let here = thread_number();
        assert_eq!(here, thread_number());
        let there = std::thread::spawn(thread_number).join().unwrap_or(here);
        assert_ne!(here, there);
    }
}
