//! Waiting under eventlet: when eventlet has monkey-patched threads, every greenthread runs on
//! one OS thread, so a native blocking wait would stop them all.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use super::errors::wait_error;
use super::exit::{call_python, exiting_elsewhere};
use crate::{Lock, Until};

/// The eventlet sleep to yield with, when eventlet has patched threading. Asked on every
/// contended wait (a service may monkey-patch after importing us), so it must stay cheap: one
/// lookup in `sys.modules`, whose object is fetched once.
pub fn green_sleep(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
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

/// Every step is a non-blocking try (the lock keeps this waiter's place in line), and between
/// tries the greenthread sleeps, so the others, the holder among them, run.
pub fn wait(sleep: &Bound<'_, PyAny>, lock: &dyn Lock, until: Until) -> PyResult<bool> {
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
