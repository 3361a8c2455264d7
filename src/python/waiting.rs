//! How a Python caller waits: first one try with the GIL held (the uncontended path costs no
//! GIL switch), then either blocking waits with the GIL released, checking for signals between
//! bounded steps, or, when eventlet has monkey-patched threads, short tries that yield to other
//! greenthreads (a native wait would block the one OS thread they all run on).

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::types::PyDict;
use pyo3::PyClass;

use super::errors::{not_acquired, to_pyerr};
use crate::wait::deadline_after;
use crate::LockError;

/// A validated `acquire(blocking, timeout)` request, as `threading.Lock` takes it.
#[derive(Clone, Copy)]
pub struct Policy {
    pub blocking: bool,
    /// Seconds; `None` waits forever.
    pub timeout: Option<f64>,
}

impl Policy {
    pub fn new(blocking: bool, timeout: Option<f64>) -> PyResult<Policy> {
        let timeout = match timeout {
            Some(-1.0) => None,
            Some(t) if !t.is_finite() || t < 0.0 => {
                return Err(PyValueError::new_err(
                    "timeout must be a non-negative number",
                ))
            }
            other => other,
        };
        if !blocking && timeout.is_some() {
            return Err(PyValueError::new_err(
                "can't specify a timeout for a non-blocking call",
            ));
        }
        Ok(Policy { blocking, timeout })
    }

    fn deadline(&self) -> Option<Instant> {
        if !self.blocking {
            return Some(Instant::now());
        }
        deadline_after(self.timeout.map(Duration::from_secs_f64))
    }
}

/// The eventlet sleep to yield with, when eventlet has patched threading.
fn green_sleep(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let modules = py.import("sys")?.getattr("modules")?;
    let modules = modules.cast_into::<PyDict>()?;
    let Some(patcher) = modules.get_item("eventlet.patcher")? else {
        return Ok(None);
    };
    if !patcher
        .call_method1("is_monkey_patched", ("thread",))?
        .is_truthy()?
    {
        return Ok(None);
    }
    Ok(Some(py.import("eventlet")?.getattr("sleep")?))
}

/// Acquire with `try_once` (never blocks) and `wait` (blocks until the deadline, asking its
/// argument between steps whether to stop). `Ok(false)` when the policy's time ran out.
pub fn acquire<T, W>(py: Python<'_>, policy: Policy, try_once: T, wait: W) -> PyResult<bool>
where
    T: Fn() -> Result<bool, LockError>,
    W: FnOnce(Option<Instant>, &mut dyn FnMut() -> bool) -> Result<bool, LockError> + Send,
{
    if try_once().map_err(|e| to_pyerr(e, None))? {
        return Ok(true);
    }
    if !policy.blocking {
        return Ok(false);
    }
    let deadline = policy.deadline();
    if let Some(sleep) = green_sleep(py)? {
        return green_wait(&sleep, deadline, try_once);
    }
    let mut pending: Option<PyErr> = None;
    let outcome = py.detach(|| {
        let mut interrupted = || {
            Python::attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    pending = Some(e);
                    true
                }
            })
        };
        wait(deadline, &mut interrupted)
    });
    outcome.map_err(|e| to_pyerr(e, pending))
}

fn green_wait<T>(sleep: &Bound<'_, PyAny>, deadline: Option<Instant>, try_once: T) -> PyResult<bool>
where
    T: Fn() -> Result<bool, LockError>,
{
    // Start by just yielding: the holder is most likely a greenthread about to release.
    let mut pause = 0.0_f64;
    loop {
        sleep.call1((pause,))?;
        if try_once().map_err(|e| to_pyerr(e, None))? {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        pause = (pause * 2.0).clamp(0.0005, 0.02);
    }
}

/// A native lock object usable with `with`: `__enter__` takes it under the policy it was made
/// with and raises when that does not get it; `__exit__` gives it back.
pub trait WithLock {
    fn take(&self, py: Python<'_>, policy: Policy) -> PyResult<bool>;
    fn give_back(&self) -> PyResult<()>;
    fn lock_name(&self) -> &str;
    fn with_policy(&self) -> Policy;
}

pub fn enter<T>(slf: Bound<'_, T>) -> PyResult<Bound<'_, T>>
where
    T: WithLock + PyClass<Frozen = True> + Sync,
{
    let this = slf.get();
    let policy = this.with_policy();
    if !this.take(slf.py(), policy)? {
        return Err(not_acquired(this.lock_name(), policy.timeout));
    }
    Ok(slf)
}

/// Never swallows the exception of the `with` body.
pub fn exit<T: WithLock>(lock: &T) -> PyResult<bool> {
    lock.give_back()?;
    Ok(false)
}
