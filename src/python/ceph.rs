//! Ceph locks for Python: the cores of `ferrolock.RbdLock` and the `rados://` lock. Every Ceph
//! call (even a first try) runs with the GIL released: each is a network round trip.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::hold;
use super::policy::Policy;
use crate::ceph::rados::{ObjectKey, RadosLock};
use crate::ceph::rbd::{ImageKey, OnLost, RbdLock, RbdOptions};
use crate::ceph::ClusterKey;

fn seconds(what: &str, v: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        PyValueError::new_err(format!("{what} must be a non-negative number of seconds"))
    })
}

/// A Python callable run (with the GIL) when a held lock is found lost.
fn on_lost_callback(cb: Option<Py<PyAny>>) -> Option<OnLost> {
    cb.map(|cb| -> OnLost {
        Arc::new(move |reason: &str| {
            // The interpreter may be exiting: then nobody is left to tell.
            let _ = Python::try_attach(|py| {
                if let Err(e) = cb.call1(py, (reason,)) {
                    e.write_unraisable(py, Some(cb.bind(py)));
                }
            });
        })
    })
}

fn cluster_key(
    cluster: Option<String>,
    conffile: Option<PathBuf>,
    rados_id: Option<String>,
) -> ClusterKey {
    ClusterKey { cluster: cluster.unwrap_or_else(|| String::from("ceph")), conffile, rados_id }
}

/// The managed exclusive lock of one RBD image.
#[pyclass(frozen, module = "ferrolock._native")]
pub struct RbdLockCore {
    core: RbdLock,
}

#[pymethods]
impl RbdLockCore {
    #[new]
    #[pyo3(signature = (pool, name, conffile=None, rados_id=None, cluster=None,
        namespace=None, create=true, connect_timeout=10.0, try_timeout=1.0, on_lost=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        pool: String,
        name: String,
        conffile: Option<PathBuf>,
        rados_id: Option<String>,
        cluster: Option<String>,
        namespace: Option<String>,
        create: bool,
        connect_timeout: f64,
        try_timeout: f64,
        on_lost: Option<Py<PyAny>>,
    ) -> PyResult<RbdLockCore> {
        let key = ImageKey {
            cluster: cluster_key(cluster, conffile, rados_id),
            pool,
            namespace,
            image: name,
        };
        let opts = RbdOptions {
            create,
            connect_timeout: seconds("connect_timeout", connect_timeout)?,
            try_bound: seconds("try_timeout", try_timeout)?,
        };
        let core = RbdLock::new(key, opts, on_lost_callback(on_lost))?;
        Ok(RbdLockCore { core })
    }

    /// `pool/[namespace/]image`.
    #[getter]
    fn spec(&self) -> String {
        self.core.key().spec()
    }

    #[pyo3(signature = (blocking=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
        hold::acquire(py, Policy::new(blocking, timeout)?, &self.core)
    }

    fn release(&self, py: Python<'_>) -> PyResult<()> {
        hold::release(py, &self.core)
    }

    fn is_still_owner(&self, py: Python<'_>) -> PyResult<bool> {
        hold::is_still_owner(py, &self.core)
    }

    /// Whether this object holds the lock (as far as it knows; `is_still_owner` asks).
    fn holds(&self) -> bool {
        self.core.holds()
    }

    /// `[(address, has_live_watch)]` of the current owners.
    fn owners(&self, py: Python<'_>) -> PyResult<Vec<(String, bool)>> {
        let core = &self.core;
        py.detach(|| core.owners())
            .map(|v| v.into_iter().map(|o| (o.address, o.alive)).collect())
            .map_err(PyErr::from)
    }

    /// `[(address, client_id, cookie)]` of the clients watching the image.
    fn watchers(&self, py: Python<'_>) -> PyResult<Vec<(String, i64, u64)>> {
        let core = &self.core;
        py.detach(|| core.watchers())
            .map(|v| v.into_iter().map(|w| (w.address, w.client_id, w.cookie)).collect())
            .map_err(PyErr::from)
    }

    /// Break `owner`'s lock (librbd blocklists that client). False when it owns nothing.
    fn break_lock(&self, py: Python<'_>, owner: String) -> PyResult<bool> {
        let core = &self.core;
        py.detach(|| core.break_lock(&owner)).map_err(PyErr::from)
    }

    /// This process's client address on that cluster (what `owners()` shows for us).
    fn client_address(&self, py: Python<'_>) -> PyResult<String> {
        let core = &self.core;
        py.detach(|| core.client_address()).map_err(PyErr::from)
    }
}

/// A librados object lock with a lease renewed in the background while held.
#[pyclass(frozen, module = "ferrolock._native")]
pub struct RadosLockCore {
    core: RadosLock,
}

#[pymethods]
impl RadosLockCore {
    #[new]
    #[pyo3(signature = (pool, name, conffile=None, rados_id=None, cluster=None,
        namespace=None, lease=30.0, connect_timeout=10.0, on_lost=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        pool: String,
        name: String,
        conffile: Option<PathBuf>,
        rados_id: Option<String>,
        cluster: Option<String>,
        namespace: Option<String>,
        lease: f64,
        connect_timeout: f64,
        on_lost: Option<Py<PyAny>>,
    ) -> PyResult<RadosLockCore> {
        let key = ObjectKey {
            cluster: cluster_key(cluster, conffile, rados_id),
            pool,
            namespace,
            object: name,
        };
        let core = RadosLock::new(
            key,
            seconds("lease", lease)?,
            seconds("connect_timeout", connect_timeout)?,
            on_lost_callback(on_lost),
        )?;
        Ok(RadosLockCore { core })
    }

    #[pyo3(signature = (blocking=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
        hold::acquire(py, Policy::new(blocking, timeout)?, &self.core)
    }

    fn release(&self, py: Python<'_>) -> PyResult<()> {
        hold::release(py, &self.core)
    }

    fn is_still_owner(&self, py: Python<'_>) -> PyResult<bool> {
        hold::is_still_owner(py, &self.core)
    }

    fn holds(&self) -> bool {
        self.core.holds()
    }

    /// `[(client, cookie, address)]` of the holders.
    fn lockers(&self, py: Python<'_>) -> PyResult<Vec<(String, String, String)>> {
        let core = &self.core;
        py.detach(|| core.lockers()).map_err(PyErr::from)
    }

    /// Break a holder's lock (not fenced: it learns at its next renewal).
    fn break_lock(&self, py: Python<'_>, client: String, cookie: String) -> PyResult<bool> {
        let core = &self.core;
        py.detach(|| core.break_lock(&client, &cookie)).map_err(PyErr::from)
    }
}
