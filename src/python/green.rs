//! Waiting under eventlet: when eventlet has monkey-patched threads, every greenthread and the
//! hub run on one OS thread, so the wait itself must not block that thread. A helper thread
//! blocks on the real lock on the greenthread's behalf (`crate::proxy`: a futex, a kernel file
//! lock, a server-side wait) and makes a descriptor readable when done; the greenthread sleeps
//! in `eventlet.hubs.trampoline` on it. The hub runs every other greenthread meanwhile and wakes
//! this one when the helper is done: no polling, and a fair lock keeps the waiter's place (the
//! helper queued for it).
//!
//! Anything thrown into the sleeping greenthread (`GreenThread.kill`, `eventlet.Timeout`)
//! cancels the wait and comes out with nothing held: a hold the helper got anyway is given back.
//!
//! A forked child copies the sleeping greenthreads but not the helpers, so the sleep ends every
//! `FORK_CHECK` to see whether this is still the process that started the wait; a child starts
//! a wait of its own. Nothing else is looked at then: the wake-up is the descriptor.
//!
//! A lock that cannot hand its wait over (`Lock::shared` is `None`) is waited for in short
//! green sleeps between tries instead.

use std::sync::Arc;
use std::time::Duration;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use super::errors::wait_error;
use super::exit::{call_python, exiting_elsewhere};
use crate::proxy::ProxyWait;
use crate::{fork, Lock, LockError, Until};

/// How often a sleeping waiter checks that no fork left its helper behind.
const FORK_CHECK: Duration = Duration::from_secs(1);

pyo3::create_exception!(
    ferrolock,
    ForkCheck,
    pyo3::exceptions::PyException,
    "Ends a greenthread's sleep on its wait's descriptor to look for a fork (never escapes)."
);

/// eventlet's functions, once it has patched threading.
pub struct Hub<'py> {
    trampoline: Bound<'py, PyAny>,
    sleep: Bound<'py, PyAny>,
}

/// `Some` when eventlet has patched threading. Asked on every contended wait (a service may
/// monkey-patch after importing us), so it must stay cheap: one lookup in `sys.modules` and
/// one call of `is_monkey_patched`; eventlet's functions are fetched once.
pub fn hub(py: Python<'_>) -> PyResult<Option<Hub<'_>>> {
    static MODULES: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
    static FUNCTIONS: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    let modules = MODULES.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
        Ok(py.import("sys")?.getattr("modules")?.cast_into::<PyDict>()?.unbind())
    })?;
    let Some(patcher) = modules.bind(py).get_item(intern!(py, "eventlet.patcher"))? else {
        return Ok(None);
    };
    if !call_python(py, || patcher.call_method1(intern!(py, "is_monkey_patched"), ("thread",)))?
        .is_truthy()?
    {
        return Ok(None);
    }
    let (trampoline, sleep) = FUNCTIONS.get_or_try_init(py, || -> PyResult<_> {
        let trampoline = py.import("eventlet.hubs")?.getattr("trampoline")?.unbind();
        Ok((trampoline, py.import("eventlet")?.getattr("sleep")?.unbind()))
    })?;
    Ok(Some(Hub { trampoline: trampoline.bind(py).clone(), sleep: sleep.bind(py).clone() }))
}

/// Wait for `lock` (tried once already) until `until.deadline`, as a greenthread: `Ok(true)`
/// held, `Ok(false)` the deadline passed. On any error, nothing is held.
pub fn wait(py: Python<'_>, hub: &Hub<'_>, lock: &dyn Lock, until: Until) -> PyResult<bool> {
    match lock.shared() {
        Some(shared) => woken(py, hub, shared, until),
        None => polled(&hub.sleep, lock, until),
    }
}

fn woken(py: Python<'_>, hub: &Hub<'_>, lock: Arc<dyn Lock>, until: Until) -> PyResult<bool> {
    let start = |lock| {
        ProxyWait::start(lock, until).map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!("cannot start a wait for the lock: {e}"))
        })
    };
    let mut wait = start(Arc::clone(&lock))?;
    let mut generation = fork::generation();
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "read"), true)?;
    kwargs.set_item(intern!(py, "timeout"), FORK_CHECK.as_secs_f64())?;
    kwargs.set_item(intern!(py, "timeout_exc"), py.get_type::<ForkCheck>())?;
    loop {
        if let Some(outcome) = wait.outcome() {
            return Ok(outcome?);
        }
        // Another thread than this one's (eventlet's tpool) runs the interpreter's exit: stop,
        // holding nothing, and run no more Python.
        if exiting_elsewhere() {
            wait.cancel();
            return Err(LockError::Interrupted.into());
        }
        // Not counted for the exit like other calls into Python: the hub runs the other
        // greenthreads meanwhile, and this one may never be resumed.
        let args = PyTuple::new(py, [wait.fd()])?;
        match hub.trampoline.call(&args, Some(&kwargs)) {
            Ok(_) => wait.clear(),
            Err(e) if e.is_instance_of::<ForkCheck>(py) => {
                if fork::generation() != generation {
                    // Our helper stayed in the parent, which also owns the descriptor's
                    // signal: leave both alone and wait anew from here.
                    wait.abandon();
                    wait = start(Arc::clone(&lock))?;
                    generation = fork::generation();
                }
            }
            Err(e) => {
                wait.cancel();
                return Err(e);
            }
        }
    }
}

/// Every step is a non-blocking try (the lock keeps this waiter's place in line), and between
/// tries the greenthread sleeps, so the others, the holder among them, run.
fn polled(sleep: &Bound<'_, PyAny>, lock: &dyn Lock, until: Until) -> PyResult<bool> {
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
    let outcome = lock.acquire(until.with_step(Duration::ZERO), &mut yield_between);
    outcome.map_err(|e| wait_error(e, pending))
}
