//! The one mapping from core errors to Python exceptions. The exception classes live in
//! `ferrolock/exceptions.py` so Python code can import them without the native module.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::LockError;

pyo3::import_exception!(ferrolock.exceptions, AcquireLockFailedException);
pyo3::import_exception!(ferrolock.exceptions, LockTimeout);
pyo3::import_exception!(ferrolock.exceptions, InvalidLockName);
pyo3::import_exception!(ferrolock.exceptions, LockPathError);
pyo3::import_exception!(ferrolock.exceptions, LockUsageError);
pyo3::import_exception!(ferrolock.exceptions, LockBackendError);
pyo3::import_exception!(ferrolock.exceptions, LockLost);

impl From<LockError> for PyErr {
    fn from(err: LockError) -> PyErr {
        match err {
            LockError::InvalidName { .. } => InvalidLockName::new_err(err.to_string()),
            LockError::LockPath { ref path, ref source } => LockPathError::new_err((
                source.raw_os_error().unwrap_or(0),
                format!("lock_path cannot hold lock files: {}", strerror(source)),
                path.to_string_lossy().into_owned(),
            )),
            LockError::Io { ref path, op, ref source } => PyOSError::new_err((
                source.raw_os_error().unwrap_or(0),
                format!("{} ({op} of the lock file)", strerror(source)),
                path.to_string_lossy().into_owned(),
            )),
            LockError::NotHeld | LockError::Misuse(_) => LockUsageError::new_err(err.to_string()),
            LockError::InvalidArgument(_) => PyValueError::new_err(err.to_string()),
            LockError::Backend { .. } => LockBackendError::new_err(err.to_string()),
            LockError::Lost { .. } => LockLost::new_err(err.to_string()),
            LockError::Interrupted => PyRuntimeError::new_err(err.to_string()),
        }
    }
}

/// A wait's error: the exception that stopped it (a pending KeyboardInterrupt, an eventlet
/// timeout), when there is one, wins over what the lock said as it gave up (`Interrupted`, or a
/// failure while cancelling): that exception was consumed from Python and must not be lost.
pub fn wait_error(err: LockError, pending: Option<PyErr>) -> PyErr {
    pending.unwrap_or_else(|| err.into())
}

/// The OS's text for `err`, without Rust's " (os error N)" (Python prints the errno itself).
fn strerror(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// What a `with` block raises when its policy did not get the lock.
pub fn not_acquired(name: &str, timeout: Option<f64>) -> PyErr {
    match timeout {
        Some(t) => LockTimeout::new_err((name.to_owned(), t)),
        None => AcquireLockFailedException::new_err((name.to_owned(),)),
    }
}
