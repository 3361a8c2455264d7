//! What the Python side of `lockutils` lends the native code: the slow path of `lock()` for
//! the cases not answered natively, the configured lock directory, and the logger whose DEBUG
//! level decides whether oslo's log lines are due. Registered once, at import.

use std::path::PathBuf;

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyInt};

use super::exit::call_python;

pub struct Fallback {
    pub slow_lock: Py<PyAny>,
    /// `lock_dir(lock_path)`: the directory external locks use (config applied), or `None`
    /// when process locking is disabled.
    lock_dir: Py<PyAny>,
    logger: Py<PyAny>,
    /// `logger._cache`: logging's own memo of `isEnabledFor(level)`, cleared in place whenever
    /// a level or `logging.disable` changes. A hit answers without a Python call.
    level_cache: Option<Py<PyDict>>,
    debug: Py<PyAny>,
}

static FALLBACK: PyOnceLock<Fallback> = PyOnceLock::new();

pub fn fallback(py: Python<'_>) -> PyResult<&Fallback> {
    FALLBACK
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("ferrolock.lockutils is not initialised"))
}

/// Register the Python `lock` for the cases not answered natively, and the logger whose DEBUG
/// level decides whether the oslo log lines are due.
#[pyfunction]
pub fn set_lock_fallback(
    py: Python<'_>,
    slow_lock: Py<PyAny>,
    lock_dir: Py<PyAny>,
    logger: Py<PyAny>,
) {
    // Registered once, at import of ferrolock.lockutils; a re-import keeps the first.
    let level_cache = logger
        .bind(py)
        .getattr(intern!(py, "_cache"))
        .ok()
        .and_then(|c| c.cast_into::<PyDict>().ok())
        .map(Bound::unbind);
    let debug = PyInt::new(py, DEBUG).into_any().unbind();
    let _ = FALLBACK.set(py, Fallback { slow_lock, lock_dir, logger, level_cache, debug });
}

/// The directory external locks use now, for `lock_path` as given to `lock()` (`None`: the
/// configured one), or `None` while process locking is disabled.
pub fn external_lock_dir(
    py: Python<'_>,
    lock_path: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<PathBuf>> {
    let lock_dir = fallback(py)?.lock_dir.bind(py);
    call_python(py, || lock_dir.call1((lock_path,)))?.extract()
}

const DEBUG: u8 = 10;

/// `logger.isEnabledFor(DEBUG)`, answered from logging's memo when it has the answer.
pub fn debug_enabled(py: Python<'_>, fallback: &Fallback) -> PyResult<bool> {
    let logger = fallback.logger.bind(py);
    if let Some(cache) = &fallback.level_cache {
        if logger.getattr(intern!(py, "disabled"))?.is_truthy()? {
            return Ok(false);
        }
        if let Some(known) = cache.bind(py).get_item(fallback.debug.bind(py))? {
            return known.is_truthy();
        }
    }
    call_python(py, || logger.call_method1(intern!(py, "isEnabledFor"), (DEBUG,)))?.is_truthy()
}
