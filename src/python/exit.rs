//! The interpreter's exit, seen from threads waiting in our frames. CPython ends a daemon
//! thread that takes the GIL during finalization by unwinding it, which through an extension's
//! frames aborts the process: once exit has begun, other threads never take the GIL back.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Threads between the end of a detached wait (or step) and holding the GIL again.
static REATTACHING: AtomicUsize = AtomicUsize::new(0);
/// `pthread_self()` of the thread running the interpreter's exit (0: not exiting).
static EXITING_THREAD: AtomicU64 = AtomicU64::new(0);

/// This thread, counted in `REATTACHING` until dropped.
pub struct Reattaching {
    /// A fork in between resets the count, which in the child never included this thread.
    generation: u64,
}

impl Reattaching {
    /// `None` when the interpreter's exit has begun on another thread: then this one must never
    /// take the GIL back.
    pub fn enter() -> Option<Reattaching> {
        let generation = crate::fork::generation();
        REATTACHING.fetch_add(1, Ordering::SeqCst);
        if exiting_elsewhere() {
            REATTACHING.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Reattaching { generation })
    }
}

impl Drop for Reattaching {
    fn drop(&mut self) {
        if crate::fork::generation() == self.generation {
            REATTACHING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The interpreter's exit has begun, on another thread than this one.
pub fn exiting_elsewhere() -> bool {
    let exiting = EXITING_THREAD.load(Ordering::SeqCst);
    // SAFETY: pthread_self has no preconditions.
    exiting != 0 && exiting != unsafe { libc::pthread_self() } as u64
}

pub fn sleep_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// Once the interpreter's exit has begun, another thread must run no more Python from our
/// frames: it sleeps, with the GIL released, until the process is gone.
pub fn park_if_exiting(py: Python<'_>) {
    if exiting_elsewhere() {
        py.detach(|| sleep_forever());
    }
}

/// Run `call`, which runs Python code, from our frames. It is counted like a thread taking the
/// GIL back, so the interpreter's exit lets it finish first; once the exit has begun, another
/// thread sleeps instead (CPython would end it mid-call by unwinding through our frames).
pub fn call_python<R>(py: Python<'_>, call: impl FnOnce() -> R) -> R {
    let Some(_counted) = Reattaching::enter() else { py.detach(|| sleep_forever()) };
    call()
}

/// In a forked child: the threads counted were the parent's, and its exit is not the child's.
pub fn reset_after_fork() {
    REATTACHING.store(0, Ordering::SeqCst);
    EXITING_THREAD.store(0, Ordering::SeqCst);
}

/// Run at interpreter exit (`atexit`), before finalization starts: from now on waits of other
/// threads never take the GIL back, and the threads already on their way back get it now,
/// while that is still safe.
#[pyfunction]
pub fn quiesce_at_exit(py: Python<'_>) {
    // SAFETY: pthread_self has no preconditions.
    EXITING_THREAD.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
    let give_up = Instant::now() + Duration::from_secs(1);
    while REATTACHING.load(Ordering::SeqCst) > 0 && Instant::now() < give_up {
        py.detach(|| std::thread::sleep(Duration::from_millis(1)));
    }
}
