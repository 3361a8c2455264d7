//! Bounding a kernel lock wait: `F_OFD_SETLKW` has no timeout, so a per-thread POSIX timer sends
//! this thread a real-time signal whose do-nothing handler is installed without `SA_RESTART`;
//! the wait then returns `EINTR` and the caller can check its deadline and Ctrl-C. The timer
//! repeats, so a signal that lands just before the wait starts costs one more period, not a hang.

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

extern "C" fn wake(_: libc::c_int) {}

/// The signal used, or `None` when it already has another owner (we never take it over).
fn wake_signal() -> Option<libc::c_int> {
    static SIGNAL: OnceLock<Option<libc::c_int>> = OnceLock::new();
    *SIGNAL.get_or_init(|| {
        // High enough to stay clear of the few that glibc and common runtimes reserve.
        let signo = libc::SIGRTMIN() + 7;
        if signo > libc::SIGRTMAX() {
            return None;
        }
        // SAFETY: zeroed sigaction is a valid out-buffer; querying does not change anything.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: valid signal number and pointer.
        if unsafe { libc::sigaction(signo, std::ptr::null(), &mut current) } != 0 {
            return None;
        }
        if current.sa_sigaction != libc::SIG_DFL {
            return None;
        }
        // SAFETY: zeroed sigaction with our handler and an emptied mask is valid to install.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = 0;
        // SAFETY: `action.sa_mask` is a valid sigset.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: installing a handler that does nothing is async-signal-safe.
        if unsafe { libc::sigaction(signo, &action, std::ptr::null_mut()) } != 0 {
            return None;
        }
        Some(signo)
    })
}

pub struct WakeTimer {
    id: libc::timer_t,
    /// The thread's signal mask to restore, when it had the wake signal blocked (worker threads
    /// often block every signal; the wait must still end at its deadline).
    restore_mask: Option<libc::sigset_t>,
}

impl WakeTimer {
    /// A timer signalling this thread after `step` and every `step` after that.
    /// `Ok(None)` when no wake-up signal is available.
    pub fn arm(step: Duration) -> io::Result<Option<WakeTimer>> {
        let Some(signo) = wake_signal() else {
            return Ok(None);
        };
        // A zero step would disarm the timer; a tiny one still bounds the wait.
        let step = step.max(Duration::from_micros(100));
        // SAFETY: zeroed sigevent is valid; we fill the fields SIGEV_THREAD_ID reads.
        let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
        ev.sigev_notify = libc::SIGEV_THREAD_ID;
        ev.sigev_signo = signo;
        // SAFETY: gettid has no preconditions.
        ev.sigev_notify_thread_id = unsafe { libc::syscall(libc::SYS_gettid) } as libc::c_int;
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `ev` and `id` are valid pointers for the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut timer = WakeTimer { id, restore_mask: None };
        timer.restore_mask = unblock(signo)?;
        let spec = libc::itimerspec {
            it_interval: super::timespec(step),
            it_value: super::timespec(step),
        };
        // SAFETY: `id` is the timer just created; `spec` is valid.
        if unsafe { libc::timer_settime(timer.id, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(timer))
    }
}

/// Unblocks `signo` for this thread; returns the previous mask if it had been blocked.
fn unblock(signo: libc::c_int) -> io::Result<Option<libc::sigset_t>> {
    // SAFETY: zeroed sigsets are valid out-buffers and are initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to sigsets; `signo` is a valid signal number.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signo);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut old)
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: `old` was filled in by pthread_sigmask.
    let was_blocked = unsafe { libc::sigismember(&old, signo) } == 1;
    Ok(was_blocked.then_some(old))
}

impl Drop for WakeTimer {
    fn drop(&mut self) {
        // SAFETY: `id` is a live timer owned by this value; deleting it cancels pending expiry.
        unsafe { libc::timer_delete(self.id) };
        if let Some(mask) = &self.restore_mask {
            // SAFETY: `mask` is the thread's own earlier mask.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
        }
    }
}
