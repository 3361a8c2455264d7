//! Inter-process file locks for Python.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;

use super::config::external_lock_dir;
use super::exit::call_python;
use super::internal::plain_locks;
use super::policy::Policy;
use super::protocol::{with_lock_protocol, WithLock};
use super::{green_local, hold};
use crate::file::lock::{self as file_lock, FileLock as CoreFileLock};
use crate::file::naming as lock_path;
use crate::local::Mutex;
use crate::registry::Handle;
use crate::{Both, LockError};

/// oslo's lock file path for `name`, validated.
#[pyfunction]
#[pyo3(signature = (lock_path, name, lock_file_prefix=None))]
pub fn lock_file_path(
    lock_path: PathBuf,
    name: &str,
    lock_file_prefix: Option<&str>,
) -> PyResult<PathBuf> {
    Ok(lock_path::lock_file_path(&lock_path, name, lock_file_prefix)?)
}

/// oslo's `lock(name, external=True)` (lock_path: None reads the configuration).
#[pyfunction]
#[pyo3(signature = (name, lock_file_prefix=None, lock_path=None, blocking=true, timeout=None))]
pub fn external_lock(
    name: &str,
    lock_file_prefix: Option<&str>,
    lock_path: Option<Py<PyAny>>,
    blocking: bool,
    timeout: Option<f64>,
) -> PyResult<ExternalLock> {
    Ok(ExternalLock {
        internal: plain_locks().get(name, || Ok::<_, PyErr>(Mutex::new()))?,
        name: name.to_owned(),
        prefix: lock_file_prefix.map(str::to_owned),
        lock_path,
        policy: Policy::new(blocking, timeout)?,
        hold: parking_lot::Mutex::new(None),
    })
}

/// Whether a process that keeps re-taking a lock file leaves it free at times for processes
/// that poll it with `lockf` (oslo.concurrency/fasteners); on unless `FERROLOCK_OSLO_POLLERS=0`.
/// Turn off where only ferrolock takes these files.
#[pyfunction]
pub fn yield_to_oslo_pollers(enabled: bool) {
    file_lock::set_yield_to_pollers(enabled);
}

/// Lock files with an entry (and usually an open descriptor) in this process.
#[pyfunction]
pub fn cached_lock_files() -> usize {
    file_lock::cached_files()
}

/// An inter-process lock on a file.
#[pyclass(frozen, module = "ferrolock._native")]
pub struct FileLock {
    /// Shared with a helper thread that waits for it under eventlet.
    core: Arc<CoreFileLock>,
    name: String,
    policy: Policy,
    /// Taken through this object: another object's hold of the same file is not ours to end
    /// (fasteners refuses such a release too).
    held: AtomicBool,
    /// Give a hold back when the object goes (fasteners' shape); otherwise a hold taken with
    /// `FileLock(path).acquire()` lasts until the process exits.
    release_on_drop: bool,
}

/// With `release_on_drop`, a hold nobody can release any more (its object is gone: say a
/// signal's exception came between the acquire and the `with` block) ends with the object, as
/// fasteners' ends when its file is closed. In Rust, so that no Python code (and no signal's
/// exception) can stop it halfway.
impl Drop for FileLock {
    fn drop(&mut self) {
        if self.release_on_drop && self.held.swap(false, Ordering::AcqRel) {
            let _ = crate::Lock::release(&*self.core);
        }
    }
}

impl WithLock for FileLock {
    fn take(&self, py: Python<'_>, policy: Policy) -> PyResult<bool> {
        let got = hold::acquire(py, policy, &self.core)?;
        if got {
            self.held.store(true, Ordering::Release);
        }
        Ok(got)
    }

    fn give_back(&self, py: Python<'_>) -> PyResult<()> {
        if !self.held.swap(false, Ordering::AcqRel) {
            return Err(LockError::NotHeld.into());
        }
        hold::release(py, &self.core)
    }

    fn lock_name(&self) -> &str {
        &self.name
    }

    fn with_policy(&self) -> Policy {
        self.policy
    }
}

/// oslo's `lock(name, external=True)`: the in-process lock `name` (so internal and external
/// users of one name exclude each other, as in oslo), then the lock file. Which file is settled
/// at each acquire from the configuration then in force, as oslo does: a lock made before
/// `lock_path` is configured (`@lock(..., external=True)` applied at import) works once it is,
/// and follows the configuration when it changes.
#[pyclass(frozen, module = "ferrolock._native")]
pub struct ExternalLock {
    internal: Handle<Mutex>,
    name: String,
    prefix: Option<String>,
    /// As given (`None`: from the configuration at each acquire).
    lock_path: Option<Py<PyAny>>,
    policy: Policy,
    /// The file of the current hold; `Some(None)` while process locking is disabled. Holders
    /// of one object follow each other through `internal`, so one slot is enough.
    hold: parking_lot::Mutex<Option<Option<Arc<CoreFileLock>>>>,
}

impl WithLock for ExternalLock {
    fn take(&self, py: Python<'_>, policy: Policy) -> PyResult<bool> {
        let file = match external_lock_dir(py, self.lock_path.as_ref().map(|p| p.bind(py)))? {
            Some(dir) => {
                let path = lock_path::lock_file_path(&dir, &self.name, self.prefix.as_deref())?;
                Some(Arc::new(CoreFileLock::new(&path)))
            }
            None => None,
        };
        let got = hold::acquire_pair(py, policy, &self.internal, file.as_ref())?;
        if got {
            *self.hold.lock() = Some(file);
        }
        Ok(got)
    }

    fn give_back(&self, py: Python<'_>) -> PyResult<()> {
        let Some(file) = self.hold.lock().take() else {
            return Err(LockError::NotHeld.into());
        };
        // A thread that only gives the lock back uses it too (see `Affinity`).
        self.internal.affinity().note();
        let released = hold::release(py, &Both(&self.internal, file.as_ref()));
        green_local::released(py, &self.internal);
        released
    }

    fn lock_name(&self) -> &str {
        &self.name
    }

    fn with_policy(&self) -> Policy {
        self.policy
    }
}

with_lock_protocol!(FileLock);
with_lock_protocol!(ExternalLock);

#[pymethods]
impl ExternalLock {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The file of the current hold (`None` when not held, or process locking is disabled).
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.hold.lock().as_ref()?.as_ref().map(|f| f.path().to_owned())
    }

    /// Held by a thread of this process (the in-process lock of the name).
    fn locked(&self) -> bool {
        self.internal.locked()
    }

    /// Test hook: threads of this process asleep on the in-process lock of the name (and
    /// greenthreads asleep in the hub for it).
    #[pyo3(name = "_waiters")]
    fn waiters(&self) -> usize {
        self.internal.waiters() + green_local::waiting(&self.internal)
    }

    fn __repr__(&self) -> String {
        format!("<ferrolock.ExternalLock name={:?} locked={}>", self.name, self.locked())
    }
}

#[pymethods]
impl FileLock {
    #[new]
    #[pyo3(signature = (path, *, blocking=true, timeout=None, release_on_drop=false))]
    fn new(
        path: PathBuf,
        blocking: bool,
        timeout: Option<f64>,
        release_on_drop: bool,
    ) -> PyResult<Self> {
        if path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(PyValueError::new_err("lock file path contains a NUL byte"));
        }
        let name = path.to_string_lossy().into_owned();
        Ok(FileLock {
            core: Arc::new(CoreFileLock::new(&path)),
            name,
            policy: Policy::new(blocking, timeout)?,
            held: AtomicBool::new(false),
            release_on_drop,
        })
    }

    #[getter]
    fn path(&self) -> &Path {
        self.core.path()
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Held by a thread of this process.
    fn locked(&self) -> bool {
        self.core.locked()
    }

    /// Held through this object: set by the acquire itself, so no Python code runs between
    /// taking the lock and its owner knowing (fasteners' `acquired`).
    #[getter]
    fn held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Test hook: threads of this process asleep until another thread of it lets go (waits
    /// for other processes are in the kernel's `/proc/locks`).
    #[pyo3(name = "_waiters")]
    fn waiters(&self) -> usize {
        self.core.waiters()
    }

    /// Delete the lock file unless someone holds it or oslo processes use it; returns whether
    /// it is gone. `remove(path)` unlinks (default: the system call; `lockutils` passes
    /// `os.remove`, as oslo calls it, so tests that patch it see the call).
    #[pyo3(signature = (remove=None))]
    fn remove_if_unused(&self, py: Python<'_>, remove: Option<Bound<'_, PyAny>>) -> PyResult<bool> {
        let Some(remove) = remove else {
            return Ok(self.core.remove_if_unused()?);
        };
        let mut raised: Option<PyErr> = None;
        let outcome = self.core.remove_if_unused_with(&mut |path| match call_python(py, || {
            remove.call1((path.as_os_str(),))
        }) {
            Ok(_) => Ok(()),
            Err(e) => {
                let kind = if e.is_instance_of::<PyFileNotFoundError>(py) {
                    std::io::ErrorKind::NotFound
                } else {
                    std::io::ErrorKind::Other
                };
                raised = Some(e);
                Err(kind.into())
            }
        });
        match (outcome, raised) {
            (Ok(gone), _) => Ok(gone),
            (Err(_), Some(raised)) => Err(raised),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// oslo processes lock this file (one held it within the last minute).
    fn used_by_oslo(&self) -> bool {
        self.core.used_by_oslo()
    }

    fn __repr__(&self) -> String {
        format!("<ferrolock.FileLock path={:?} locked={}>", self.core.path(), self.core.locked())
    }
}

/// fasteners' `exists()`, which oslo's users call on what `lock(name, external=True)` yields
/// (oslo yields a fasteners `InterProcessLock`; ours yields one of these two).
#[pymethods]
impl ExternalLock {
    /// Whether the file of the current hold exists (False when not held).
    fn exists(&self) -> bool {
        self.path().is_some_and(|p| p.exists())
    }
}

#[pymethods]
impl FileLock {
    /// Whether the lock file exists.
    fn exists(&self) -> bool {
        self.core.path().exists()
    }
}
