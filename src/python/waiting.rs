//! How a Python caller waits: first one try with the GIL held (the uncontended path costs no
//! GIL switch), then either blocking waits with the GIL released, checking for signals between
//! bounded steps, or, when eventlet has monkey-patched threads, short tries that yield to other
//! greenthreads (a native wait would block the one OS thread they all run on).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use pyo3::PyClass;

use super::errors::{not_acquired, to_pyerr};
use crate::wait::{self, Until};
use crate::{LockError, RawLock};

/// A validated `acquire(blocking, timeout)` request, as `threading.Lock` takes it.
#[derive(Clone, Copy)]
pub struct Policy {
    pub blocking: bool,
    /// Seconds, as given (for error messages); `None` waits forever.
    pub timeout: Option<f64>,
    wait: Option<Duration>,
}

impl Policy {
    pub fn new(blocking: bool, timeout: Option<f64>) -> PyResult<Policy> {
        let timeout = match timeout {
            Some(-1.0) => None,
            Some(t) if t.is_nan() || t < 0.0 => {
                return Err(PyValueError::new_err("timeout must be a non-negative number"))
            }
            other => other,
        };
        if !blocking && timeout.is_some() {
            return Err(PyValueError::new_err("can't specify a timeout for a non-blocking call"));
        }
        let wait = match timeout {
            None => None,
            Some(t) => match Duration::try_from_secs_f64(t) {
                Ok(d) if Instant::now().checked_add(d).is_some() => Some(d),
                _ => return Err(PyOverflowError::new_err("timeout value is too large")),
            },
        };
        Ok(Policy { blocking, timeout, wait })
    }

    fn until(&self) -> Until {
        if self.blocking {
            Until::after(self.wait)
        } else {
            Until::now()
        }
    }
}

/// The eventlet sleep to yield with, when eventlet has patched threading. Asked on every
/// contended wait (a service may monkey-patch after importing us), so it must stay cheap: one
/// lookup in `sys.modules`, whose object is fetched once.
fn green_sleep(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    static MODULES: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
    let modules = MODULES.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
        Ok(py.import("sys")?.getattr("modules")?.cast_into::<PyDict>()?.unbind())
    })?;
    let Some(patcher) = modules.bind(py).get_item("eventlet.patcher")? else {
        return Ok(None);
    };
    if !call_python(py, || patcher.call_method1("is_monkey_patched", ("thread",)))?.is_truthy()? {
        return Ok(None);
    }
    Ok(Some(py.import("eventlet")?.getattr("sleep")?))
}

/// Acquire with `try_once` (never blocks) and `wait` (blocks until `until.deadline`, asking its
/// argument after each step whether to stop); `undo` gives back what a successful `wait` took.
/// `Ok(false)` when the policy's time ran out.
pub fn acquire<T, W, U>(
    py: Python<'_>,
    policy: Policy,
    try_once: T,
    wait: W,
    undo: U,
) -> PyResult<bool>
where
    T: Fn() -> Result<bool, LockError>,
    W: FnOnce(Until, &mut dyn FnMut() -> bool) -> Result<bool, LockError> + Send,
    U: FnOnce() + Send,
{
    if try_once().map_err(|e| to_pyerr(e, None))? {
        return Ok(true);
    }
    if !policy.blocking {
        return Ok(false);
    }
    park_if_exiting(py);
    let until = policy.until();
    if let Some(sleep) = green_sleep(py)? {
        let got = green(&sleep, until, wait);
        if exiting_elsewhere() {
            // A wait in a thread other than the exiting one (eventlet's tpool) stopped for the
            // exit: give back what it took, then sleep without running more Python.
            if matches!(got, Ok(true)) {
                undo();
            }
            park_if_exiting(py);
        }
        return got;
    }
    detached(py, until, wait, undo)
}

/// `acquire` for a lock that needs no more than its `RawLock` (in-process FIFO locks).
pub fn acquire_raw(py: Python<'_>, policy: Policy, lock: &dyn RawLock) -> PyResult<bool> {
    acquire(
        py,
        policy,
        || lock.try_acquire(),
        move |until, interrupted| wait::acquire(lock, until, interrupted),
        move || {
            let _ = lock.release();
        },
    )
}

/// An in-process lock that Python threads contend for. A waiter does not take the lock while
/// it is away from the GIL: it waits until the lock is free, then takes it only once it holds
/// the GIL again. Otherwise each handoff would park the thread that holds the GIL (and would
/// simply have re-taken the lock) until the woken waiter gets the GIL: a convoy that costs a
/// GIL switch per cycle. Not for fair locks, whose waiters must be served in order.
pub fn acquire_with_gil(py: Python<'_>, policy: Policy, lock: &dyn RawLock) -> PyResult<bool> {
    if lock.try_acquire().map_err(|e| to_pyerr(e, None))? {
        return Ok(true);
    }
    if !policy.blocking {
        return Ok(false);
    }
    park_if_exiting(py);
    let until = policy.until();
    if let Some(sleep) = green_sleep(py)? {
        return green(&sleep, until, |until, interrupted| wait::acquire(lock, until, interrupted));
    }
    loop {
        let seen_free = detached(
            py,
            until,
            |until, interrupted| {
                let got = wait::acquire(lock, until, interrupted)?;
                if got {
                    lock.release()?;
                }
                Ok(got)
            },
            || {},
        )?;
        if !seen_free {
            return Ok(false);
        }
        if lock.try_acquire().map_err(|e| to_pyerr(e, None))? {
            return Ok(true);
        }
    }
}

/// Runs `wait` with the GIL released; between its steps it re-attaches to check for signals
/// (KeyboardInterrupt comes out of here with nothing held).
fn detached<W, U>(py: Python<'_>, until: Until, wait: W, undo: U) -> PyResult<bool>
where
    W: FnOnce(Until, &mut dyn FnMut() -> bool) -> Result<bool, LockError> + Send,
    U: FnOnce() + Send,
{
    let mut pending: Option<PyErr> = None;
    let (outcome, _counted) = py.detach(|| {
        let mut interrupted = || {
            let Some(_counted) = Reattaching::enter() else {
                // No Python to return to any more: stop waiting, holding nothing.
                return true;
            };
            Python::try_attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    pending = Some(e);
                    true
                }
            })
            .unwrap_or(false)
        };
        let outcome = wait(until, &mut interrupted);
        let Some(counted) = Reattaching::enter() else {
            // The interpreter is going away and would end this daemon thread as it takes the
            // GIL back, by unwinding it through our frames, which aborts the process. It gives
            // back what it took and sleeps until the process is gone.
            if matches!(outcome, Ok(true)) {
                undo();
            }
            sleep_forever();
        };
        (outcome, counted)
    });
    outcome.map_err(|e| to_pyerr(e, pending))
}

/// Threads between the end of a detached wait (or step) and holding the GIL again.
static REATTACHING: AtomicUsize = AtomicUsize::new(0);
/// `pthread_self()` of the thread running the interpreter's exit (0: not exiting).
static EXITING_THREAD: AtomicU64 = AtomicU64::new(0);

/// This thread, counted in `REATTACHING` until dropped.
struct Reattaching {
    /// A fork in between resets the count, which in the child never included this thread.
    generation: u64,
}

impl Reattaching {
    /// `None` when the interpreter's exit has begun on another thread: then this one must never
    /// take the GIL back.
    fn enter() -> Option<Reattaching> {
        let generation = crate::sys::fork_generation();
        REATTACHING.fetch_add(1, Ordering::SeqCst);
        if exiting_elsewhere() {
            REATTACHING.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Reattaching { generation })
    }
}

impl Drop for Reattaching {
    fn drop(&mut self) {
        if crate::sys::fork_generation() == self.generation {
            REATTACHING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The interpreter's exit has begun, on another thread than this one.
fn exiting_elsewhere() -> bool {
    let exiting = EXITING_THREAD.load(Ordering::SeqCst);
    // SAFETY: pthread_self has no preconditions.
    exiting != 0 && exiting != unsafe { libc::pthread_self() } as u64
}

fn sleep_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// Once the interpreter's exit has begun, another thread must run no more Python from our
/// frames (CPython ends a thread that takes the GIL during finalization by unwinding it, which
/// through an extension aborts): it sleeps, with the GIL released, until the process is gone.
pub fn park_if_exiting(py: Python<'_>) {
    if exiting_elsewhere() {
        py.detach(|| sleep_forever());
    }
}

/// Run `call`, which runs Python code, from our frames. It is counted like a thread taking the
/// GIL back, so the interpreter's exit lets it finish first; once the exit has begun, another
/// thread sleeps instead (CPython would end it mid-call by unwinding through our frames).
pub fn call_python<R>(py: Python<'_>, call: impl FnOnce() -> R) -> R {
    let Some(_counted) = Reattaching::enter() else { py.detach(|| sleep_forever()) };
    call()
}

/// In a forked child: the threads counted were the parent's, and its exit is not the child's.
pub fn reset_exit_state_after_fork() {
    REATTACHING.store(0, Ordering::SeqCst);
    EXITING_THREAD.store(0, Ordering::SeqCst);
}

/// Run at interpreter exit (`atexit`), before finalization starts: from now on waits of other
/// threads never take the GIL back, and the threads already on their way back get it now,
/// while that is still safe. CPython ends a daemon thread that takes the GIL during
/// finalization by unwinding it, which through an extension's frames aborts the process.
#[pyfunction]
pub fn quiesce_at_exit(py: Python<'_>) {
    // SAFETY: pthread_self has no preconditions.
    EXITING_THREAD.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
    let give_up = Instant::now() + Duration::from_secs(1);
    while REATTACHING.load(Ordering::SeqCst) > 0 && Instant::now() < give_up {
        py.detach(|| std::thread::sleep(Duration::from_millis(1)));
    }
}

/// Under eventlet: every step is a non-blocking try (the lock keeps this waiter's place in
/// line), and between tries the greenthread sleeps, so the others, the holder among them, run.
fn green<W>(sleep: &Bound<'_, PyAny>, until: Until, wait: W) -> PyResult<bool>
where
    W: FnOnce(Until, &mut dyn FnMut() -> bool) -> Result<bool, LockError>,
{
    let mut pending: Option<PyErr> = None;
    // Start by just yielding: the holder is most likely a greenthread about to release.
    let mut pause = 0.0_f64;
    let mut yield_between = || {
        // Not counted across the sleep: other greenthreads run meanwhile, and this one may
        // never be resumed. Another OS thread stops its wait at exit, holding nothing.
        if exiting_elsewhere() {
            return true;
        }
        match sleep.call1((pause,)) {
            Ok(_) => {
                pause = (pause * 2.0).clamp(0.0005, 0.02);
                false
            }
            Err(e) => {
                pending = Some(e);
                true
            }
        }
    };
    let outcome = wait(until.with_step(Duration::ZERO), &mut yield_between);
    outcome.map_err(|e| to_pyerr(e, pending))
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
                let policy = $crate::python::waiting::Policy::new(blocking, timeout)?;
                $crate::python::waiting::WithLock::take(self, py, policy)
            }

            fn release(&self) -> pyo3::PyResult<()> {
                $crate::python::waiting::WithLock::give_back(self)
            }

            fn __enter__(slf: pyo3::Bound<'_, Self>) -> pyo3::PyResult<pyo3::Bound<'_, Self>> {
                $crate::python::waiting::enter(slf)
            }

            fn __exit__(
                &self,
                _exc_type: &pyo3::Bound<'_, pyo3::PyAny>,
                _exc: &pyo3::Bound<'_, pyo3::PyAny>,
                _tb: &pyo3::Bound<'_, pyo3::PyAny>,
            ) -> pyo3::PyResult<bool> {
                $crate::python::waiting::exit(self)
            }

            /// Use as a decorator: each call of `func` runs inside the lock.
            fn __call__<'py>(
                slf: pyo3::Bound<'py, Self>,
                func: pyo3::Bound<'py, pyo3::PyAny>,
            ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
                $crate::python::waiting::decorate(slf, func)
            }
        }
    };
}
pub(crate) use with_lock_protocol;
