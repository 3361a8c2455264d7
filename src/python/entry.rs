//! oslo's `lock()` entry point. Its common cases, an in-process lock (fair or not) or a plain
//! external one, with no DEBUG logging, are answered here natively; every other combination goes to the Python
//! implementation in `ferrolock.lockutils`, registered with `set_lock_fallback`.

use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyString};

use super::config::{debug_enabled, fallback};
use super::exit::call_python;
use super::file::external_lock;
use super::internal::internal_lock;
use super::rwlock::fair_lock;

/// A flag argument as oslo reads it: Python truthiness when given (so `None` is false, and
/// `1` true), the default when not given.
#[derive(Clone, Copy)]
pub enum Flag {
    Default,
    Given(bool),
}

impl Flag {
    fn or(self, default: bool) -> bool {
        match self {
            Flag::Default => default,
            Flag::Given(value) => value,
        }
    }
}

impl<'py> FromPyObject<'py> for Flag {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        ob.is_truthy().map(Flag::Given)
    }
}

/// Context manager holding lock `name`; oslo.concurrency's `lock` plus `timeout`.
///
/// external: also lock across processes with a file under lock_path. lock_file_prefix: prefix
/// of that file's name. do_log: log acquire/release at DEBUG as oslo does. semaphores: a
/// `Semaphores` container instead of the process-wide one. delay: accepted, unused (waiters are
/// woken, not polled). fair: serve waiters in arrival order. blocking: False raises
/// AcquireLockFailedException at once when busy. timeout: seconds to wait at most, then
/// LockTimeout. Waiting releases the GIL; Ctrl-C interrupts it and leaves nothing held.
#[pyfunction]
#[pyo3(signature = (
    name, lock_file_prefix=None, external=Flag::Default, lock_path=None, do_log=Flag::Default,
    semaphores=None, delay=None, fair=Flag::Default, blocking=Flag::Default, timeout=None
), text_signature = "(name, lock_file_prefix=None, external=False, lock_path=None, do_log=True, \
    semaphores=None, delay=0.01, fair=False, blocking=True, timeout=None)")]
#[allow(clippy::too_many_arguments)]
pub fn lock<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyAny>,
    lock_file_prefix: Option<&Bound<'py, PyAny>>,
    external: Flag,
    lock_path: Option<&Bound<'py, PyAny>>,
    do_log: Flag,
    semaphores: Option<&Bound<'py, PyAny>>,
    delay: Option<&Bound<'py, PyAny>>,
    fair: Flag,
    blocking: Flag,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let fallback = fallback(py)?;
    let (external, fair, blocking) = (external.or(false), fair.or(false), blocking.or(true));
    let quiet = || -> PyResult<bool> { Ok(!(do_log.or(true) && debug_enabled(py, fallback)?)) };
    // A name with lone surrogates (`os.fsdecode` of a non-UTF-8 byte) is no Rust string: the
    // Python path keys it, as it keys names that are not strings.
    let text = match (semaphores, name.cast::<PyString>()) {
        (None, Ok(name)) => name.to_cow().ok(),
        _ => None,
    };
    if let Some(name) = text {
        if !external && quiet()? {
            return if fair {
                Ok(Bound::new(py, fair_lock(&name, blocking, timeout)?)?.into_any())
            } else {
                Ok(Bound::new(py, internal_lock(&name, blocking, timeout)?)?.into_any())
            };
        }
        let prefix = lock_file_prefix.map(|p| p.cast::<PyString>()).transpose();
        if let (true, false, Ok(prefix)) = (external, fair, prefix) {
            if quiet()? {
                let prefix = prefix.map(|p| p.to_cow()).transpose()?;
                let made = external_lock(
                    &name,
                    prefix.as_deref(),
                    lock_path.map(|p| p.clone().unbind()),
                    blocking,
                    timeout,
                )?;
                return Ok(Bound::new(py, made)?.into_any());
            }
        }
    }
    let delay = match delay {
        Some(delay) => delay.clone(),
        None => PyFloat::new(py, 0.01).into_any(),
    };
    call_python(py, || {
        fallback.slow_lock.bind(py).call1((
            name,
            lock_file_prefix,
            external,
            lock_path,
            do_log.or(true),
            semaphores,
            delay,
            fair,
            blocking,
            timeout,
        ))
    })
}
