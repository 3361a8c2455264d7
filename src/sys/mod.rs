//! The system calls behind file locks. Linux uses open-file-description locks, which conflict
//! with the classic POSIX locks `fcntl.lockf` takes (oslo/fasteners) and belong to our open file,
//! not to the process; other Unixes get classic POSIX locks, which the caller guards per process.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

pub mod fork;
pub mod inotify;
pub(crate) mod signal_fd;
#[cfg(target_os = "linux")]
mod wake_timer;

pub use signal_fd::SignalFd;

#[cfg(target_os = "linux")]
const SET_LOCK: libc::c_int = libc::F_OFD_SETLK;
#[cfg(target_os = "linux")]
const SET_LOCK_WAIT: libc::c_int = libc::F_OFD_SETLKW;
#[cfg(not(target_os = "linux"))]
const SET_LOCK: libc::c_int = libc::F_SETLK;

/// Which file a descriptor or path is, to notice a lock file replaced behind our back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Opens (creating if needed) a lock file for writing, as `lockf` needs, and close-on-exec so a
/// child we spawn cannot keep our lock alive.
pub fn open_lock_file(path: &Path) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: `c` is a valid NUL-terminated path; the mode is passed as the variadic int.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOCTTY,
            0o666 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn id_of(st: &libc::stat) -> FileId {
    #[allow(clippy::unnecessary_cast)]
    FileId { dev: st.st_dev as u64, ino: st.st_ino as u64 }
}

pub fn fd_identity(fd: &OwnedFd) -> io::Result<FileId> {
    // SAFETY: zeroed `stat` is a valid out-buffer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the duration of the call; `st` is a valid pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(id_of(&st))
}

/// `None` when the path does not exist (the file was removed).
pub fn path_identity(path: &Path) -> io::Result<Option<FileId>> {
    let c = c_path(path)?;
    // SAFETY: zeroed `stat` is a valid out-buffer for stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid pointer.
    if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::NotFound { Ok(None) } else { Err(err) };
    }
    Ok(Some(id_of(&st)))
}

fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: all-zero is a valid `flock` (offset 0, length 0 = to EOF, pid 0 as OFD requires).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl
}

fn set_lock(fd: &OwnedFd, cmd: libc::c_int, kind: libc::c_int) -> io::Result<()> {
    let fl = whole_file(kind);
    // SAFETY: `fd` is open and `fl` is a valid flock for the duration of the call.
    if unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &fl) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn is_busy(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
}

/// One attempt at an exclusive lock on the whole file. `Ok(false)` when someone else holds it.
pub fn try_lock(fd: &OwnedFd) -> io::Result<bool> {
    match set_lock(fd, SET_LOCK, libc::F_WRLCK) {
        Ok(()) => Ok(true),
        Err(e) if is_busy(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// Blocks in the kernel for at most about `step`; the kernel wakes us the moment the holder
/// lets go. `Ok(false)` when the step ended first (or a signal arrived: the caller checks).
pub fn lock_wait(fd: &OwnedFd, step: Duration) -> io::Result<bool> {
    if step.is_zero() {
        return try_lock(fd);
    }
    #[cfg(target_os = "linux")]
    {
        // Out of timers or of queued signals (RLIMIT_SIGPENDING) is no reason to fail a lock:
        // the wait falls back to polling below, like a process whose signal is taken.
        if let Ok(Some(timer)) = wake_timer::WakeTimer::arm(step) {
            let outcome = match set_lock(fd, SET_LOCK_WAIT, libc::F_WRLCK) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
                Err(e) => Err(e),
            };
            drop(timer);
            return outcome;
        }
    }
    // No wake-up timer could be had: try, then sleep a short while.
    if try_lock(fd)? {
        return Ok(true);
    }
    std::thread::sleep(step.min(Duration::from_millis(2)));
    try_lock(fd)
}

/// Point descriptor `fd` at `/dev/null`: the open file it named (and any lock on it) is let go,
/// while the number stays taken, so whoever owns `fd` can go on using and later close it
/// without ever touching a file opened since under a reused number.
pub fn retire_descriptor(fd: RawFd) -> io::Result<()> {
    // SAFETY: a valid NUL-terminated path.
    let null =
        unsafe { libc::open(b"/dev/null\0".as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC) };
    if null < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `null` was just opened and is owned here.
    let null = unsafe { OwnedFd::from_raw_fd(null) };
    // SAFETY: both descriptors are open; dup2 atomically replaces what `fd` names, and only
    // this thread exists in the child that calls this, so no exec can see it before FD_CLOEXEC.
    let retired = unsafe {
        libc::dup2(null.as_raw_fd(), fd) >= 0
            && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
    };
    if retired {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(target_os = "linux")]
fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// Sleep while `word` holds `expected`, until woken by `wake_one` or `deadline`. May return
/// early for no reason; the caller looks again.
#[cfg(target_os = "linux")]
pub fn wait_while_equal(word: &AtomicU32, expected: u32, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return;
    }
    let timeout = timespec(left);
    // SAFETY: `word` is a live, aligned u32 for the call; the timeout is relative (FUTEX_WAIT);
    // the private flag matches `wake_one`. EINTR, EAGAIN and ETIMEDOUT all mean "look again".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &timeout as *const libc::timespec,
        )
    };
}

/// Wake one thread sleeping in `wait_while_equal` on `word`.
#[cfg(target_os = "linux")]
pub fn wake_one(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; waking has no other precondition.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
}

/// Wake every thread sleeping in `wait_while_equal` on `word`.
#[cfg(target_os = "linux")]
pub fn wake_all(word: &AtomicU32) {
    // SAFETY: as in `wake_one`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            libc::c_int::MAX,
        )
    };
}

/// Elsewhere the parking lot stands in for the futex (its queue is in our memory, so a forked
/// child's waits are not as safe as on Linux).
#[cfg(not(target_os = "linux"))]
pub fn wait_while_equal(word: &AtomicU32, expected: u32, deadline: Instant) {
    // SAFETY: the key is `word`'s address, used only by these two functions; the callbacks
    // neither panic nor call into the parking lot.
    unsafe {
        parking_lot_core::park(
            word as *const AtomicU32 as usize,
            || word.load(Ordering::Relaxed) == expected,
            || {},
            |_, _| {},
            parking_lot_core::DEFAULT_PARK_TOKEN,
            Some(deadline),
        )
    };
}

#[cfg(not(target_os = "linux"))]
pub fn wake_one(word: &AtomicU32) {
    // SAFETY: as in `wait_while_equal`.
    unsafe {
        parking_lot_core::unpark_one(word as *const AtomicU32 as usize, |_| {
            parking_lot_core::DEFAULT_UNPARK_TOKEN
        })
    };
}

#[cfg(not(target_os = "linux"))]
pub fn wake_all(word: &AtomicU32) {
    // SAFETY: as in `wait_while_equal`.
    unsafe {
        parking_lot_core::unpark_all(
            word as *const AtomicU32 as usize,
            parking_lot_core::DEFAULT_UNPARK_TOKEN,
        )
    };
}

pub fn unlock(fd: &OwnedFd) -> io::Result<()> {
    set_lock(fd, SET_LOCK, libc::F_UNLCK)
}

/// The pid of a process holding a classic POSIX (`lockf`/`F_SETLK`) lock that conflicts with an
/// exclusive lock through `fd`: `None` when free or held through an OFD lock (which the kernel
/// reports with pid -1). An OFD query on our own description also reports a POSIX lock of this
/// very process, which a classic `F_GETLK` could not (it ignores the caller's own locks).
#[cfg(target_os = "linux")]
pub fn posix_holder(fd: RawFd) -> io::Result<Option<i32>> {
    let mut fl = whole_file(libc::F_WRLCK);
    // SAFETY: `fd` is open for the duration of the call and `fl` a valid, writable flock.
    if unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let held = fl.l_type != libc::F_UNLCK as libc::c_short && fl.l_pid > 0;
    Ok(held.then_some(fl.l_pid))
}

/// Elsewhere our own locks are classic POSIX locks too, and a process cannot see its own.
#[cfg(not(target_os = "linux"))]
pub fn posix_holder(_fd: RawFd) -> io::Result<Option<i32>> {
    Ok(None)
}

/// Whether this process holds a classic POSIX lock on the file `fd` names. Such a lock belongs
/// to the process and vanishes when the process closes *any* descriptor of the file, ours
/// included (oslo/fasteners in the same process take those).
pub fn process_holds_posix_lock(fd: RawFd) -> io::Result<bool> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    Ok(posix_holder(fd)? == Some(me))
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`); `None` when unlimited or unknown.
pub fn open_files_limit() -> Option<u64> {
    // SAFETY: zeroed `rlimit` is a valid out-buffer.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `limit` is a valid pointer for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    let soft = limit.rlim_cur as u64;
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(soft)
}

/// Out of descriptors, in this process (EMFILE) or system-wide (ENFILE).
pub fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the machine, so that
/// processes can agree on moments without talking (`Instant` hides its value).
pub fn monotonic_ns() -> u64 {
    // SAFETY: zeroed `timespec` is a valid out-buffer.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid pointer; CLOCK_MONOTONIC always exists on the systems we build for.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    #[allow(clippy::unnecessary_cast)]
    let (secs, nanos) = (ts.tv_sec as u64, ts.tv_nsec as u64);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}
