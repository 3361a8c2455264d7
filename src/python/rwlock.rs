//! The fair reader-writer lock for Python. Owners are passed in by the Python wrapper
//! (`threading.get_ident()`, which eventlet turns into a greenthread id), so re-entrancy follows
//! greenthreads, not the OS thread they share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

use super::exit::call_python;
use super::hold;
use super::policy::Policy;
use super::protocol::{with_lock_protocol, WithLock};
use crate::local::rwlock::{Access, OwnerId, RwLock, RwRef, Side};
use crate::registry::{Handle, Registry};

pub fn fair_rw_locks() -> &'static Arc<Registry<RwLock>> {
    static LOCKS: OnceLock<Arc<Registry<RwLock>>> = OnceLock::new();
    LOCKS.get_or_init(Registry::new)
}

enum Inner {
    /// Shared with a helper thread that waits for it under eventlet.
    Own(Arc<RwLock>),
    Named(Handle<RwLock>),
}

impl RwRef for Inner {
    fn rw(&self) -> &RwLock {
        match self {
            Inner::Own(l) => l,
            Inner::Named(h) => h,
        }
    }
    fn owned(&self) -> Option<Arc<dyn RwRef>> {
        match self {
            Inner::Own(l) => l.owned(),
            Inner::Named(h) => h.owned(),
        }
    }
}

#[pyclass(frozen, module = "ferrolock._native")]
pub struct ReaderWriterLock {
    inner: Inner,
}

impl ReaderWriterLock {
    fn lock(&self) -> &RwLock {
        self.inner.rw()
    }

    fn take(
        &self,
        py: Python<'_>,
        owner: OwnerId,
        access: Access,
        policy: Policy,
    ) -> PyResult<bool> {
        hold::acquire(py, policy, &Side { lock: &self.inner, owner, access })
    }
}

#[pymethods]
impl ReaderWriterLock {
    /// `name`: share one lock per name process-wide (oslo's `FairLocks`); `None`: a private lock.
    #[new]
    #[pyo3(signature = (name=None))]
    fn new(name: Option<&str>) -> PyResult<Self> {
        let inner = match name {
            None => Inner::Own(Arc::new(RwLock::new())),
            Some(name) => {
                Inner::Named(fair_rw_locks().get(name, || Ok::<_, PyErr>(RwLock::new()))?)
            }
        };
        Ok(ReaderWriterLock { inner })
    }

    #[getter]
    fn name(&self) -> Option<&str> {
        match &self.inner {
            Inner::Own(_) => None,
            Inner::Named(h) => Some(h.name()),
        }
    }

    #[pyo3(signature = (owner, blocking=true, timeout=None))]
    fn acquire_read(
        &self,
        py: Python<'_>,
        owner: OwnerId,
        blocking: bool,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        self.take(py, owner, Access::Read, Policy::new(blocking, timeout)?)
    }

    #[pyo3(signature = (owner, blocking=true, timeout=None))]
    fn acquire_write(
        &self,
        py: Python<'_>,
        owner: OwnerId,
        blocking: bool,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        self.take(py, owner, Access::Write, Policy::new(blocking, timeout)?)
    }

    fn release_read(&self, owner: OwnerId) -> PyResult<()> {
        Ok(self.lock().release(owner, Access::Read)?)
    }

    fn release_write(&self, owner: OwnerId) -> PyResult<()> {
        Ok(self.lock().release(owner, Access::Write)?)
    }

    fn is_reader_id(&self, owner: OwnerId) -> bool {
        self.lock().is_reader(owner)
    }

    /// Holds the write lock, or (with `check_pending`) waits for it.
    #[pyo3(signature = (owner, check_pending=false))]
    fn is_writer_id(&self, owner: OwnerId, check_pending: bool) -> bool {
        let lock = self.lock();
        lock.is_writer(owner) || (check_pending && lock.is_pending_writer(owner))
    }

    fn has_pending_writers(&self) -> bool {
        self.lock().has_pending_writers()
    }

    /// Test hook: readers and writers in line now.
    #[pyo3(name = "_waiters")]
    fn waiters(&self) -> usize {
        self.lock().waiters()
    }

    /// `"w"` while a writer holds it, `"r"` while readers do, else `None` (fasteners' `owner`).
    fn held_for(&self) -> Option<&'static str> {
        self.lock().held_for().map(|a| match a {
            Access::Write => "w",
            Access::Read => "r",
        })
    }
}

/// oslo's `lock(name, fair=True)`: the write side of the process-wide fair lock `name`, as one
/// native object for `with`, owned by the thread (or greenthread) that enters it.
#[pyclass(frozen, module = "ferrolock._native")]
pub struct FairWriteLock {
    handle: Handle<RwLock>,
    /// Set once held, read by `__exit__` of the same `with`.
    owner: AtomicU64,
    policy: Policy,
}

#[pyfunction]
#[pyo3(signature = (name, blocking=true, timeout=None))]
pub fn fair_lock(name: &str, blocking: bool, timeout: Option<f64>) -> PyResult<FairWriteLock> {
    let policy = Policy::new(blocking, timeout)?;
    let handle = fair_rw_locks().get(name, || Ok::<_, PyErr>(RwLock::new()))?;
    Ok(FairWriteLock { handle, owner: AtomicU64::new(0), policy })
}

/// `threading.get_ident()`, looked up on each call: eventlet's monkey-patching replaces it with
/// a greenthread id, and re-entrancy must follow greenthreads.
fn current_owner(py: Python<'_>) -> PyResult<OwnerId> {
    static THREADING: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let threading = THREADING.get_or_try_init(py, || py.import("threading").map(Bound::unbind))?;
    // eventlet replaces it with Python code
    let get_ident = threading.bind(py).getattr(intern!(py, "get_ident"))?;
    call_python(py, || get_ident.call0())?.extract()
}

impl WithLock for FairWriteLock {
    fn take(&self, py: Python<'_>, policy: Policy) -> PyResult<bool> {
        let owner = current_owner(py)?;
        let got =
            hold::acquire(py, policy, &Side { lock: &self.handle, owner, access: Access::Write })?;
        if got {
            self.owner.store(owner, Ordering::Release);
        }
        Ok(got)
    }

    fn give_back(&self, _py: Python<'_>) -> PyResult<()> {
        Ok(self.handle.release(self.owner.load(Ordering::Acquire), Access::Write)?)
    }

    fn lock_name(&self) -> &str {
        self.handle.name()
    }

    fn with_policy(&self) -> Policy {
        self.policy
    }
}

with_lock_protocol!(FairWriteLock);

#[pymethods]
impl FairWriteLock {
    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Test hook: readers and writers in line for fair lock `name` now.
    #[pyo3(name = "_waiters")]
    fn waiters(&self) -> usize {
        self.handle.waiters()
    }
}
