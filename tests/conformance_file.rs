//! The file lock through the conformance kit: two threads of this process (the in-process
//! guard), ferrolock against an outsider holding its own open file description (the kernel
//! lock, as another process would contend for it; OFD locks of two descriptions conflict even
//! within one process), and the "in-process, then file" pair that oslo's external locks are.

#[macro_use]
mod conformance;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::linux::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use conformance::Subject;
use ferrolock::file::FileLock;
use ferrolock::local::Mutex;
use ferrolock::{Both, Lock, LockError, Raw, Until};

/// A directory for the test's lock files and fresh names in it.
struct Files {
    dir: tempfile::TempDir,
    made: AtomicUsize,
}

impl Files {
    fn new() -> Files {
        match tempfile::tempdir() {
            Ok(dir) => Files { dir, made: AtomicUsize::new(0) },
            Err(e) => panic!("temp dir: {e}"),
        }
    }

    fn fresh(&self) -> PathBuf {
        self.dir.path().join(format!("lock-{}", self.made.fetch_add(1, Ordering::Relaxed)))
    }
}

/// Another user of the file with its own open file description, as another process would
/// hold it; it waits by polling (it stands in for the other side, it is not under test).
struct Outsider {
    path: PathBuf,
    file: File,
    held: AtomicBool,
}

impl Outsider {
    fn new(path: &Path) -> Outsider {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => Outsider { path: path.to_owned(), file, held: AtomicBool::new(false) },
            Err(e) => panic!("open {path:?}: {e}"),
        }
    }

    fn set(&self, kind: libc::c_short) -> std::io::Result<bool> {
        // SAFETY: a zeroed `flock` is a valid value (whole file from offset 0, pid 0 as OFD
        // locks require); the fields set below are plain integers.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = kind;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: the descriptor is open for the call and `lock` outlives it.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
        if rc == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => Ok(false),
            _ => Err(err),
        }
    }

    fn io(&self, source: std::io::Error) -> LockError {
        LockError::Io { path: self.path.clone(), op: "lock", source }
    }
}

impl Lock for Outsider {
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        loop {
            if self.set(libc::F_WRLCK as libc::c_short).map_err(|e| self.io(e))? {
                self.held.store(true, Ordering::Release);
                return Ok(true);
            }
            if until.passed() {
                return Ok(false);
            }
            std::thread::sleep(until.step.min(Duration::from_millis(1)));
            if interrupted() {
                return Err(LockError::Interrupted);
            }
        }
    }

    fn release(&self) -> Result<(), LockError> {
        if !self.held.swap(false, Ordering::AcqRel) {
            return Err(LockError::NotHeld);
        }
        self.set(libc::F_UNLCK as libc::c_short).map(|_| ()).map_err(|e| self.io(e))
    }

    fn is_still_owner(&self) -> Result<bool, LockError> {
        Ok(self.held.load(Ordering::Acquire))
    }
}

/// Either side of a pair that mixes ferrolock and the outsider.
enum User {
    Ferro(FileLock),
    Other(Outsider),
}

impl User {
    fn lock(&self) -> &dyn Lock {
        match self {
            User::Ferro(l) => l,
            User::Other(l) => l,
        }
    }
}

impl Lock for User {
    fn acquire(
        &self,
        until: Until,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<bool, LockError> {
        self.lock().acquire(until, interrupted)
    }
    fn release(&self) -> Result<(), LockError> {
        self.lock().release()
    }
    fn is_still_owner(&self) -> Result<bool, LockError> {
        self.lock().is_still_owner()
    }
}

/// Requests blocked in the kernel on the file at `path` (`N: -> KIND ... MAJ:MIN:INODE ...`
/// lines of `/proc/locks`, major and minor in hex).
fn blocked_requests(path: &Path) -> usize {
    let Ok(meta) = std::fs::metadata(path) else { return 0 };
    let (major, minor) = (libc::major(meta.st_dev()), libc::minor(meta.st_dev()));
    let key = format!("{major:02x}:{minor:02x}:{}", meta.st_ino());
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("->"))
        .filter(|l| l.split_whitespace().nth(6) == Some(key.as_str()))
        .count()
}

/// Two threads of this process on one path: the second waits on the in-process guard.
struct Threads(Files);

impl Subject for Threads {
    type Handle = FileLock;
    fn pair(&self) -> (FileLock, FileLock) {
        let path = self.0.fresh();
        (FileLock::new(&path), FileLock::new(&path))
    }
    fn waiters(&self, handle: &FileLock) -> Option<usize> {
        Some(handle.waiters())
    }
    // The core FileLock's hold belongs to the process: any handle of it may end it (its own
    // unit tests rely on that; the binding adds per-object ownership), and is_still_owner
    // answers for the process, though its doc says "held through this lock".
    fn per_handle(&self) -> bool {
        false
    }
}

/// ferrolock first, the outsider second: the holder under test releases to another file
/// description (the outsider's waits poll).
struct FerroThenOutsider(Files);

impl Subject for FerroThenOutsider {
    type Handle = User;
    fn pair(&self) -> (User, User) {
        let path = self.0.fresh();
        (User::Ferro(FileLock::new(&path)), User::Other(Outsider::new(&path)))
    }
}

/// The outsider first, ferrolock second: the waits under test block in the kernel.
struct OutsiderThenFerro(Files);

impl Subject for OutsiderThenFerro {
    type Handle = User;
    fn pair(&self) -> (User, User) {
        let path = self.0.fresh();
        (User::Other(Outsider::new(&path)), User::Ferro(FileLock::new(&path)))
    }
    fn waiters(&self, handle: &User) -> Option<usize> {
        match handle {
            User::Other(outsider) => Some(blocked_requests(&outsider.path)),
            User::Ferro(_) => None,
        }
    }
}

/// oslo's external lock: the in-process lock of the name, then the file.
struct InProcessThenFile(Files);

impl Subject for InProcessThenFile {
    type Handle = Both<Raw<'static, Mutex>, FileLock>;
    fn pair(&self) -> (Self::Handle, Self::Handle) {
        let path = self.0.fresh();
        let name: &'static Mutex = Box::leak(Box::new(Mutex::new()));
        (Both(Raw(name), FileLock::new(&path)), Both(Raw(name), FileLock::new(&path)))
    }
    fn waiters(&self, handle: &Self::Handle) -> Option<usize> {
        Some(handle.0 .0.waiters())
    }
    // The core FileLock's hold belongs to the process: any handle of it may end it (its own
    // unit tests rely on that; the binding adds per-object ownership), and is_still_owner
    // answers for the process, though its doc says "held through this lock".
    fn per_handle(&self) -> bool {
        false
    }
}

conformance_tests!(threads, Threads(Files::new()));
conformance_tests!(ferro_then_outsider, FerroThenOutsider(Files::new()));
conformance_tests!(outsider_then_ferro, OutsiderThenFerro(Files::new()));
conformance_tests!(in_process_then_file, InProcessThenFile(Files::new()));
