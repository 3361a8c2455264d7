//! A descriptor one thread makes readable for another thread's event loop (eventlet's hub polls
//! descriptors, not futexes): an eventfd on Linux, a pipe elsewhere.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct SignalFd {
    read: OwnedFd,
    /// Elsewhere than Linux, the pipe's other end.
    #[cfg(not(target_os = "linux"))]
    write: OwnedFd,
}

impl SignalFd {
    /// Non-blocking and close-on-exec: a spawned program must not keep it.
    #[cfg(target_os = "linux")]
    pub fn new() -> io::Result<SignalFd> {
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned to us and is owned by nobody else.
        Ok(SignalFd { read: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn new() -> io::Result<SignalFd> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both were just returned to us and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            // SAFETY: plain fcntl flag changes on descriptors we own.
            unsafe {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
            }
        }
        Ok(SignalFd { read, write })
    }

    /// The descriptor to watch for reading.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Make it readable. Never blocks (a full pipe is readable already).
    pub fn raise(&self) {
        let one: u64 = 1;
        #[cfg(target_os = "linux")]
        let fd = self.read.as_raw_fd();
        #[cfg(not(target_os = "linux"))]
        let fd = self.write.as_raw_fd();
        // SAFETY: writes 8 bytes from a live u64. An eventfd only fails at a counter overflow,
        // which would leave it readable anyway.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }

    /// Make it unreadable again (drain what `raise` wrote).
    pub fn clear(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a live buffer of the length given; the descriptor is non-blocking.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || cfg!(target_os = "linux") {
                break;
            }
        }
    }
}

/// Whether `fd` is readable now (tests).
#[cfg(test)]
pub fn readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd.
    unsafe { libc::poll(&mut p, 1, timeout_ms) == 1 }
}
