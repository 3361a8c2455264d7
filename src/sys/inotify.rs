//! A non-blocking inotify instance: who opens and closes a file, seen without polling it.
//! Elsewhere than Linux there is none: `Inotify::new` fails with `Unsupported`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One event of a watch: its descriptor and the event bits (`IN_OPEN`, `IN_CLOSE_*`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub wd: i32,
    pub mask: u32,
}

// The Linux values (`IN_OPEN`, `IN_CLOSE_WRITE | IN_CLOSE_NOWRITE`, `IN_IGNORED`,
// `IN_Q_OVERFLOW`), spelled out so that other systems build.
pub const OPENED: u32 = 0x20;
pub const CLOSED: u32 = 0x08 | 0x10;
/// The watch is gone (removed, or its file deleted): its descriptor may be given out again.
pub const GONE: u32 = 0x8000;
/// Events were lost: counts kept from events are unreliable.
pub const OVERFLOW: u32 = 0x4000;

pub struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    #[cfg(not(target_os = "linux"))]
    pub fn new() -> io::Result<Inotify> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Non-blocking and close-on-exec: a reader never sleeps, and a spawned program never
    /// inherits it.
    ///
    /// # Errors
    /// ENOSYS, EMFILE (instance or descriptor limit), ENFILE, ENOMEM.
    #[cfg(target_os = "linux")]
    pub fn new() -> io::Result<Inotify> {
        // SAFETY: no pointers; the flags are valid.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned and is owned by nobody else.
        Ok(Inotify { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Watch `path` for `mask`; the watch descriptor, the same for every path of one inode.
    ///
    /// # Errors
    /// ENOSPC past the user's watch limit, ENOENT, EACCES, ...
    #[cfg(target_os = "linux")]
    pub fn add_watch(&self, path: &Path, mask: u32) -> io::Result<i32> {
        let c = super::c_path(path)?;
        // SAFETY: `c` is a valid C string for the duration of the call; the fd is open.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Stop a watch (its `GONE` event follows).
    #[cfg(target_os = "linux")]
    pub fn remove_watch(&self, wd: i32) {
        // SAFETY: no pointers; an unknown `wd` only fails with EINVAL.
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
    }

    /// Hand every queued event to `each`, without blocking.
    ///
    /// # Errors
    /// Failures other than "nothing queued".
    #[cfg(target_os = "linux")]
    pub fn drain(&self, each: &mut dyn FnMut(Event)) -> io::Result<()> {
        // Aligned for `inotify_event`; room for many name-less events per read (watches on files
        // carry no names).
        let mut buf = [0u64; 512];
        let header = std::mem::size_of::<libc::inotify_event>();
        loop {
            // SAFETY: `buf` is valid for writes of its whole size for the duration of the call.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(&buf),
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                return match err.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(err),
                };
            }
            let n = usize::try_from(n).unwrap_or(0);
            if n == 0 {
                return Ok(());
            }
            let bytes = buf.as_ptr().cast::<u8>();
            let mut at = 0;
            while at + header <= n {
                // SAFETY: the kernel wrote whole events into `buf[..n]`; `at + header <= n` and
                // `read_unaligned` needs no alignment.
                let event = unsafe {
                    std::ptr::read_unaligned(bytes.add(at).cast::<libc::inotify_event>())
                };
                each(Event { wd: event.wd, mask: event.mask });
                at += header + event.len as usize;
            }
        }
    }
}

impl AsRawFd for Inotify {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(not(target_os = "linux"))]
impl Inotify {
    pub fn add_watch(&self, _path: &Path, _mask: u32) -> io::Result<i32> {
        Err(io::ErrorKind::Unsupported.into())
    }
    pub fn remove_watch(&self, _wd: i32) {}
    pub fn drain(&self, _each: &mut dyn FnMut(Event)) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn sees_opens_and_closes_of_a_watched_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("watched");
        std::fs::write(&path, b"").expect("write");
        let ino = Inotify::new().expect("inotify");
        let wd = ino.add_watch(&path, OPENED | CLOSED).expect("watch");
        assert_eq!(
            (OPENED, CLOSED, GONE, OVERFLOW),
            (
                libc::IN_OPEN,
                libc::IN_CLOSE_WRITE | libc::IN_CLOSE_NOWRITE,
                libc::IN_IGNORED,
                libc::IN_Q_OVERFLOW
            )
        );
        let mut seen = Vec::new();
        ino.drain(&mut |e| seen.push(e)).expect("drain");
        assert!(seen.is_empty());
        drop(std::fs::File::open(&path).expect("open"));
        ino.drain(&mut |e| seen.push(e)).expect("drain");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].wd == wd && seen[0].mask & OPENED != 0);
        assert!(seen[1].mask & CLOSED != 0);
        ino.remove_watch(wd);
        seen.clear();
        ino.drain(&mut |e| seen.push(e)).expect("drain");
        assert!(seen.iter().all(|e| e.mask & GONE != 0), "{seen:?}");
    }
}
