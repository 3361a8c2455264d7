//! MySQL/MariaDB locks for Python (`ferrolock.MySQLLock`).

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::exit::{call_python, exiting_elsewhere};
use super::hold;
use super::policy::Policy;
use super::protocol::{with_lock_protocol, WithLock};
use crate::mysql::{LostHook, MySqlLock};

/// A named lock on a MySQL/MariaDB server (`GET_LOCK`), shared by every process and host that
/// uses the server.
#[pyclass(frozen, module = "ferrolock._native", name = "MySQLLock")]
pub struct MySQLLock {
    core: Arc<MySqlLock>,
    policy: Policy,
}

// The core lock goes to `hold` as its `Arc`, so that under eventlet a helper thread can run
// the server-side wait on this very object (same hold slot) while the greenthread sleeps until
// the server grants it.
impl WithLock for MySQLLock {
    fn take(&self, py: Python<'_>, policy: Policy) -> PyResult<bool> {
        hold::acquire(py, policy, &self.core)
    }

    fn give_back(&self, py: Python<'_>) -> PyResult<()> {
        hold::release(py, &self.core)
    }

    fn lock_name(&self) -> &str {
        self.core.name()
    }

    fn with_policy(&self) -> Policy {
        self.policy
    }
}

with_lock_protocol!(MySQLLock);

#[pymethods]
impl MySQLLock {
    #[new]
    #[pyo3(signature = (url, name, *, blocking=true, timeout=None, on_lost=None))]
    fn new(
        url: &str,
        name: &str,
        blocking: bool,
        timeout: Option<f64>,
        on_lost: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let mut core =
            MySqlLock::new(url, name).map_err(|e| PyValueError::new_err(e.to_string()))?;
        if let Some(hook) = on_lost {
            core = core.with_on_lost(python_hook(hook));
        }
        Ok(MySQLLock { core: Arc::new(core), policy: Policy::new(blocking, timeout)? })
    }

    #[getter]
    fn name(&self) -> &str {
        self.core.name()
    }

    /// The name the server sees (names over 64 characters map to a prefix plus a hash).
    #[getter]
    fn server_name(&self) -> &str {
        self.core.server_name()
    }

    /// The URL with the password masked.
    #[getter]
    fn url(&self) -> String {
        self.core.url().redacted()
    }

    /// The server's id of the session holding the lock through this object (None if not held).
    #[getter]
    fn connection_id(&self) -> Option<u32> {
        self.core.connection_id()
    }

    /// Connections this process has opened to this URL so far (they are pooled and reused).
    #[getter]
    fn connections_opened(&self) -> u64 {
        self.core.connections_opened()
    }

    /// Held through this object in this process (no round trip).
    fn locked(&self) -> bool {
        self.core.locked()
    }

    /// Whether the server still shows this object's session holding the lock.
    fn is_still_owner(&self, py: Python<'_>) -> PyResult<bool> {
        hold::is_still_owner(py, &self.core)
    }

    /// Who holds the name on the server now: ``{"connection_id", "user", "host"}`` or None.
    fn holder<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(h) = py.detach(|| self.core.holder())? else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("connection_id", h.connection_id)?;
        d.set_item("user", h.user)?;
        d.set_item("host", h.host)?;
        Ok(Some(d))
    }

    fn __repr__(&self) -> String {
        format!(
            "<ferrolock.MySQLLock name={:?} url={:?} locked={}>",
            self.core.name(),
            self.core.url().redacted(),
            self.core.locked()
        )
    }
}

/// The `on_lost(name, reason)` callable, called from the keepalive thread. Never once the
/// interpreter is exiting (a thread taking the GIL then would be ended mid-call); an exception
/// it raises is reported as unraisable, as for a thread's.
fn python_hook(hook: Py<PyAny>) -> LostHook {
    Arc::new(move |name: &str, reason: &str| {
        if exiting_elsewhere() {
            return;
        }
        let _ = Python::try_attach(|py| {
            call_python(py, || {
                if let Err(e) = hook.call1(py, (name, reason)) {
                    e.write_unraisable(py, Some(hook.bind(py)));
                }
            })
        });
    })
}
