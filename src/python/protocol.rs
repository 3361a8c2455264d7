//! The `with`, decorator and `acquire`/`release` protocol every native lock class shares.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::PyClass;

use super::errors::not_acquired;
use super::policy::Policy;

/// A native lock object usable with `with`: `__enter__` takes it under the policy it was made
/// with and raises when that does not get it; `__exit__` gives it back.
pub trait WithLock {
    fn take(&self, py: Python<'_>, policy: Policy) -> PyResult<bool>;
    fn give_back(&self, py: Python<'_>) -> PyResult<()>;
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
pub fn exit<T: WithLock>(py: Python<'_>, lock: &T) -> PyResult<bool> {
    lock.give_back(py)?;
    Ok(false)
}

/// `@lock(...)` on a function: each call runs inside the lock (oslo's `lock()` is a
/// `contextlib` context manager, which decorates too).
pub fn decorate<'py, T>(slf: Bound<'py, T>, func: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>
where
    T: WithLock + PyClass,
{
    let py = slf.py();
    py.import(intern!(py, "ferrolock._decorate"))?
        .getattr(intern!(py, "decorate"))?
        .call1((slf, func))
}

/// `acquire`/`release` and the `with` and decorator protocol of a native lock class, as its own
/// `#[pymethods]` block (pyo3's `multiple-pymethods`), so every lock class gets the same ones.
macro_rules! with_lock_protocol {
    ($class:ty) => {
        #[pyo3::pymethods]
        impl $class {
            /// Returns whether the lock was taken; waits with the GIL released, Ctrl-C
            /// interrupts the wait.
            #[pyo3(signature = (blocking=true, timeout=None))]
            fn acquire(
                &self,
                py: pyo3::Python<'_>,
                blocking: bool,
                timeout: Option<f64>,
            ) -> pyo3::PyResult<bool> {
                let policy = $crate::python::policy::Policy::new(blocking, timeout)?;
                $crate::python::protocol::WithLock::take(self, py, policy)
            }

            fn release(&self, py: pyo3::Python<'_>) -> pyo3::PyResult<()> {
                $crate::python::protocol::WithLock::give_back(self, py)
            }

            fn __enter__(slf: pyo3::Bound<'_, Self>) -> pyo3::PyResult<pyo3::Bound<'_, Self>> {
                $crate::python::protocol::enter(slf)
            }

            fn __exit__(
                &self,
                py: pyo3::Python<'_>,
                _exc_type: &pyo3::Bound<'_, pyo3::PyAny>,
                _exc: &pyo3::Bound<'_, pyo3::PyAny>,
                _tb: &pyo3::Bound<'_, pyo3::PyAny>,
            ) -> pyo3::PyResult<bool> {
                $crate::python::protocol::exit(py, self)
            }

            /// Use as a decorator: each call of `func` runs inside the lock.
            fn __call__<'py>(
                slf: pyo3::Bound<'py, Self>,
                func: pyo3::Bound<'py, pyo3::PyAny>,
            ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
                $crate::python::protocol::decorate(slf, func)
            }
        }
    };
}
pub(crate) use with_lock_protocol;
