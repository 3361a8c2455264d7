//! One fork registry for every resource: a forked child must never use, close into or release
//! what its parent holds (a lock file's open description and its lock, a server connection
//! whose session holds the parent's locks, a librados handle whose threads did not survive).
//!
//! Each fork bumps a generation (in the child, from `pthread_atfork`). A resource remembers the
//! generation it was made in; `PerProcess` gives a child a fresh value and leaks the parent's,
//! and `on_child` hooks run in the child (from the binding's `os.register_at_fork` hook) for
//! what must be retired at once, such as descriptors.

use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTERED: AtomicU64 = AtomicU64::new(0);
/// The process the child hooks last ran in (or that started counting): a call in that same
/// process is not a fresh child's, and must not retire what the process itself holds.
static HOOKS_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: a child of a threaded parent may do nothing more here.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// How many forks separate this process from the one that started counting: anything made in
/// another generation belongs to an ancestor.
pub fn generation() -> u64 {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic; no prepare/parent handlers.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        REGISTERED.store(u64::from(rc == 0), Ordering::Relaxed);
        // SAFETY: getpid has no preconditions.
        HOOKS_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    });
    GENERATION.load(Ordering::Relaxed)
}

/// Whether forks are being counted (`pthread_atfork` can fail with ENOMEM). When they are not,
/// only forks that run the child hooks (Python's `os.fork`) are counted, by `run_child_hooks`.
pub fn counting() -> bool {
    generation();
    REGISTERED.load(Ordering::Relaxed) == 1
}

/// A process-wide value that a forked child never shares: there, `get` makes a fresh
/// `T::default()`, and the parent's is leaked, never dropped (dropping would close the parent's
/// descriptors, send a quit on its sessions, or join threads that do not exist in the child).
pub struct PerProcess<T> {
    current: AtomicPtr<Slot<T>>,
}

struct Slot<T> {
    generation: u64,
    value: T,
}

impl<T: Default> PerProcess<T> {
    pub const fn new() -> Self {
        PerProcess { current: AtomicPtr::new(ptr::null_mut()) }
    }

    /// This process's value.
    pub fn get(&'static self) -> &'static T {
        let now = generation();
        let current = self.current.load(Ordering::Acquire);
        if !current.is_null() {
            // SAFETY: slots are leaked once published and never freed.
            let slot = unsafe { &*current };
            if slot.generation == now {
                return &slot.value;
            }
        }
        let fresh = Box::into_raw(Box::new(Slot { generation: now, value: T::default() }));
        match self.current.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: `fresh` is published and leaked from here on; the parent's slot stays
            // leaked as it was.
            Ok(_) => unsafe { &(*fresh).value },
            Err(other) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: published slots are leaked; another thread of this generation
                // published `other` (a parent's would have been replaced by now).
                unsafe { &(*other).value }
            }
        }
    }

    /// This process's value if one was made in this generation (a child sees the parent's
    /// value as absent).
    pub fn get_if_made(&'static self) -> Option<&'static T> {
        let current = self.current.load(Ordering::Acquire);
        // SAFETY: slots are leaked once published and never freed.
        let slot = unsafe { current.as_ref() }?;
        (slot.generation == generation()).then_some(&slot.value)
    }

    /// The value an ancestor left, for a child hook to retire (never to use).
    pub fn inherited(&'static self) -> Option<&'static T> {
        let current = self.current.load(Ordering::Acquire);
        // SAFETY: slots are leaked once published and never freed.
        let slot = unsafe { current.as_ref() }?;
        (slot.generation != generation()).then_some(&slot.value)
    }
}

impl<T: Default> Default for PerProcess<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Room for one hook per resource kind (lock files, MySQL pools, Ceph clients, with space).
const HOOKS: usize = 16;
static CHILD_HOOKS: [AtomicUsize; HOOKS] = [const { AtomicUsize::new(0) }; HOOKS];

/// Run `hook` in every forked child, on the forking thread, before other threads start
/// (see `run_child_hooks`). Registering the same hook twice runs it once.
///
/// # Panics
/// Never: past `HOOKS` hooks the registration is refused with `false`.
pub fn on_child(hook: fn()) -> bool {
    let wanted = hook as usize;
    for slot in &CHILD_HOOKS {
        match slot.compare_exchange(0, wanted, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(present) if present == wanted => return true,
            Err(_) => {}
        }
    }
    false
}

/// Run the registered hooks; called in a forked child (Python's
/// `os.register_at_fork(after_in_child=...)`). Returns whether they ran: only once per process,
/// and never in the process that started counting, since the binding exports the call to
/// Python, where any code can make it (in the parent, the hooks would retire descriptors that
/// carry its own locks).
///
/// # Safety
/// In a forked child, the first call must come from the thread that forked, before other
/// threads exist.
pub unsafe fn run_child_hooks() -> bool {
    let counted = counting();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if HOOKS_PID.swap(pid, Ordering::AcqRel) == pid {
        return false;
    }
    if !counted {
        // pthread_atfork failed, so nothing counted this fork: without a new generation the
        // child would take the parent's descriptors, and the locks on them, for its own.
        GENERATION.fetch_add(1, Ordering::Relaxed);
    }
    for slot in &CHILD_HOOKS {
        let raw = slot.load(Ordering::Acquire);
        if raw != 0 {
            // SAFETY: only `fn()` pointers are stored, by `on_child`.
            let hook: fn() = unsafe { std::mem::transmute::<usize, fn()>(raw) };
            hook();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Counter(AtomicUsize);

    #[test]
    fn per_process_value_is_made_once_per_generation() {
        static VALUE: PerProcess<Counter> = PerProcess::new();
        assert!(VALUE.get_if_made().is_none());
        VALUE.get().0.fetch_add(1, Ordering::Relaxed);
        assert_eq!(VALUE.get().0.load(Ordering::Relaxed), 1);
        assert!(VALUE.get_if_made().is_some());
        assert!(VALUE.inherited().is_none());
    }

    #[test]
    fn child_hooks_count_the_fork_when_pthread_atfork_could_not() {
        generation();
        // SAFETY: the child only touches atomics, runs the hooks, then `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            REGISTERED.store(0, Ordering::Relaxed);
            let before = generation();
            // SAFETY: in the forked child, on the forking thread, before any other thread.
            let ran = unsafe { run_child_hooks() };
            let code = i32::from(!ran || generation() == before);
            // SAFETY: `_exit` skips atexit handlers and destructors, as a forked test child must.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "fork not counted");
    }

    #[test]
    fn child_hooks_do_nothing_in_the_process_that_started_counting() {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        fn count() {
            RUNS.fetch_add(1, Ordering::SeqCst);
        }
        assert!(on_child(count));
        let before = generation();
        // SAFETY: not a forked child: the guard must make this a no-op.
        assert!(!unsafe { run_child_hooks() });
        assert_eq!(RUNS.load(Ordering::SeqCst), 0);
        assert_eq!(generation(), before);
    }

    #[test]
    fn a_forked_child_gets_a_fresh_value_and_never_the_parents() {
        static VALUE: PerProcess<Counter> = PerProcess::new();
        VALUE.get().0.store(7, Ordering::Relaxed);
        // SAFETY: the child only touches atomics and leaked memory, then `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let fresh = VALUE.get().0.load(Ordering::Relaxed) == 0;
            let inherited = VALUE.inherited().is_none();
            let code = if fresh && inherited { 0 } else { 1 };
            // SAFETY: `_exit` skips atexit handlers and destructors, as a forked test child must.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(VALUE.get().0.load(Ordering::Relaxed), 7);
    }
}
