//! Inter-process file locks for Python.

use std::path::{Path, PathBuf};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::errors::to_pyerr;
use super::internal::plain_locks;
use super::waiting::{acquire, with_lock_protocol, Policy, WithLock};
use crate::file_lock::{self, FileLock as CoreFileLock};
use crate::mutex::Mutex;
use crate::registry::Handle;
use crate::wait::{self, Until};
use crate::{lock_path, RawLock};

/// oslo's lock file path for `name`, validated.
#[pyfunction]
#[pyo3(signature = (lock_path, name, lock_file_prefix=None))]
pub fn lock_file_path(
    lock_path: PathBuf,
    name: &str,
    lock_file_prefix: Option<&str>,
) -> PyResult<PathBuf> {
    lock_path::lock_file_path(&lock_path, name, lock_file_prefix).map_err(|e| to_pyerr(e, None))
}

/// Lock `name` as oslo's `lock(name, external=True)` takes it: the in-process lock of that name
/// (so internal and external users of one name exclude each other, as in oslo), then the file.
#[pyfunction]
#[pyo3(signature = (lock_path, name, lock_file_prefix=None, blocking=true, timeout=None))]
pub fn external_lock(
    lock_path: PathBuf,
    name: &str,
    lock_file_prefix: Option<&str>,
    blocking: bool,
    timeout: Option<f64>,
) -> PyResult<FileLock> {
    let path = lock_file_path(lock_path, name, lock_file_prefix)?;
    let internal = plain_locks().get(name, || Ok::<_, PyErr>(Mutex::new()))?;
    Ok(FileLock {
        core: CoreFileLock::new(&path),
        internal: Some(internal),
        name: name.to_owned(),
        policy: Policy::new(blocking, timeout)?,
    })
}

/// Run in a forked child (`os.register_at_fork`): drop descriptors inherited from the parent.
#[pyfunction]
pub fn after_fork_in_child() {
    // SAFETY: registered with os.register_at_fork(after_in_child=...), so this runs in the
    // child, on the thread that forked, before any other thread exists.
    unsafe { file_lock::forget_inherited() };
}

/// Lock files with an entry (and usually an open descriptor) in this process.
#[pyfunction]
pub fn cached_lock_files() -> usize {
    file_lock::cached_files()
}

/// An inter-process lock on a file.
#[pyclass(frozen, module = "ferrolock._native")]
pub struct FileLock {
    core: CoreFileLock,
    internal: Option<Handle<Mutex>>,
    name: String,
    policy: Policy,
}

impl WithLock for FileLock {
    fn take(&self, py: Python<'_>, policy: Policy) -> PyResult<bool> {
        let core = &self.core;
        let internal: Option<&Mutex> = self.internal.as_deref();
        acquire(
            py,
            policy,
            || {
                if let Some(int) = internal {
                    if !int.try_acquire()? {
                        return Ok(false);
                    }
                }
                let got = core.acquire(Until::now(), &mut || false);
                release_unless_taken(internal, &got);
                got
            },
            move |until, interrupted| {
                if let Some(int) = internal {
                    if !wait::acquire(int, until, interrupted)? {
                        return Ok(false);
                    }
                }
                let got = core.acquire(until, interrupted);
                release_unless_taken(internal, &got);
                got
            },
        )
    }

    fn give_back(&self) -> PyResult<()> {
        let file = self.core.release();
        if let Some(int) = &self.internal {
            int.release().map_err(|e| to_pyerr(e, None))?;
        }
        file.map_err(|e| to_pyerr(e, None))
    }

    fn lock_name(&self) -> &str {
        &self.name
    }

    fn with_policy(&self) -> Policy {
        self.policy
    }
}

fn release_unless_taken(internal: Option<&Mutex>, got: &Result<bool, crate::LockError>) {
    if let (Some(int), false) = (internal, matches!(got, Ok(true))) {
        // Taken by this call a moment ago, so giving it back cannot fail.
        let _ = int.release();
    }
}

with_lock_protocol!(FileLock);

#[pymethods]
impl FileLock {
    #[new]
    #[pyo3(signature = (path, *, blocking=true, timeout=None))]
    fn new(path: PathBuf, blocking: bool, timeout: Option<f64>) -> PyResult<Self> {
        if path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(PyValueError::new_err("lock file path contains a NUL byte"));
        }
        let name = path.to_string_lossy().into_owned();
        Ok(FileLock {
            core: CoreFileLock::new(&path),
            internal: None,
            name,
            policy: Policy::new(blocking, timeout)?,
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

    /// Delete the lock file unless someone holds it; returns whether it is gone.
    fn remove_if_unused(&self) -> PyResult<bool> {
        self.core.remove_if_unused().map_err(|e| to_pyerr(e, None))
    }

    fn __repr__(&self) -> String {
        format!("<ferrolock.FileLock path={:?} locked={}>", self.core.path(), self.core.locked())
    }
}
