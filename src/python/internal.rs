//! In-process named locks and semaphores for Python.

use std::sync::{Arc, OnceLock};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::policy::Policy;
use super::protocol::{with_lock_protocol, WithLock};
use super::{green_local, hold};
use crate::local::Mutex;
use crate::local::Semaphore as CoreSemaphore;
use crate::registry::{Handle, Registry};
use crate::RawLock;

pub(super) fn plain_locks() -> &'static Arc<Registry<Mutex>> {
    static LOCKS: OnceLock<Arc<Registry<Mutex>>> = OnceLock::new();
    LOCKS.get_or_init(Registry::new)
}

fn fair_locks() -> &'static Arc<Registry<CoreSemaphore>> {
    static LOCKS: OnceLock<Arc<Registry<CoreSemaphore>>> = OnceLock::new();
    LOCKS.get_or_init(Registry::new)
}

fn semaphores() -> &'static Arc<Registry<CoreSemaphore>> {
    static SEMAPHORES: OnceLock<Arc<Registry<CoreSemaphore>>> = OnceLock::new();
    SEMAPHORES.get_or_init(Registry::new)
}

/// Named in-process locks in use now, across the default registries.
#[pyfunction]
pub fn registry_size() -> usize {
    plain_locks().len()
        + fair_locks().len()
        + semaphores().len()
        + super::rwlock::fair_rw_locks().len()
}

/// `InternalLock(name, False, blocking, timeout)` through a vectorcall function: a class call
/// goes through `tp_new` with an argument tuple, which costs more than the lock cycle itself.
#[pyfunction]
#[pyo3(signature = (name, blocking=true, timeout=None))]
pub fn internal_lock(name: &str, blocking: bool, timeout: Option<f64>) -> PyResult<InternalLock> {
    InternalLock::plain(plain_locks(), name, Policy::new(blocking, timeout)?)
}

/// A namespace of named locks (oslo's `Semaphores` container); the default one is global.
#[pyclass(frozen, module = "ferrolock._native")]
pub struct LockRegistry {
    locks: Arc<Registry<Mutex>>,
}

#[pymethods]
impl LockRegistry {
    #[new]
    fn new() -> Self {
        LockRegistry { locks: Registry::new() }
    }

    /// The process-wide registry that `InternalLock(name)` uses.
    #[staticmethod]
    fn default() -> Self {
        LockRegistry { locks: Arc::clone(plain_locks()) }
    }

    fn __len__(&self) -> usize {
        self.locks.len()
    }

    /// The lock named `name` in this registry.
    #[pyo3(signature = (name, *, blocking=true, timeout=None))]
    fn get(&self, name: &str, blocking: bool, timeout: Option<f64>) -> PyResult<InternalLock> {
        InternalLock::plain(&self.locks, name, Policy::new(blocking, timeout)?)
    }
}

enum Kind {
    Plain(Handle<Mutex>),
    Fair(Handle<CoreSemaphore>),
}

/// A named in-process lock; every `InternalLock` of one name is the same lock.
#[pyclass(frozen, module = "ferrolock._native")]
pub struct InternalLock {
    kind: Kind,
    /// How `with` acquires.
    policy: Policy,
}

impl InternalLock {
    fn plain(registry: &Arc<Registry<Mutex>>, name: &str, policy: Policy) -> PyResult<Self> {
        let handle = registry.get(name, || Ok::<_, PyErr>(Mutex::new()))?;
        Ok(InternalLock { kind: Kind::Plain(handle), policy })
    }

    fn name(&self) -> &str {
        match &self.kind {
            Kind::Plain(h) => h.name(),
            Kind::Fair(h) => h.name(),
        }
    }
}

impl WithLock for InternalLock {
    fn take(&self, py: Python<'_>, policy: Policy) -> PyResult<bool> {
        match &self.kind {
            Kind::Plain(m) => hold::acquire_local(py, policy, m),
            Kind::Fair(f) => hold::acquire(py, policy, f),
        }
    }
    fn give_back(&self, py: Python<'_>) -> PyResult<()> {
        match &self.kind {
            Kind::Plain(m) => {
                // A thread that only gives the lock back uses it too (see `Affinity`).
                m.affinity().note();
                m.release()?;
                green_local::released(py, m);
                Ok(())
            }
            Kind::Fair(f) => Ok(f.release()?),
        }
    }
    fn lock_name(&self) -> &str {
        self.name()
    }
    fn with_policy(&self) -> Policy {
        self.policy
    }
}

with_lock_protocol!(InternalLock);

#[pymethods]
impl InternalLock {
    /// `blocking`/`timeout` are how `with` acquires: it raises AcquireLockFailedException
    /// (or LockTimeout) when that does not get the lock.
    #[new]
    #[pyo3(signature = (name, fair=false, blocking=true, timeout=None))]
    fn new(name: &str, fair: bool, blocking: bool, timeout: Option<f64>) -> PyResult<Self> {
        let policy = Policy::new(blocking, timeout)?;
        if !fair {
            return Self::plain(plain_locks(), name, policy);
        }
        let handle = fair_locks().get(name, || CoreSemaphore::new(1, true))?;
        Ok(InternalLock { kind: Kind::Fair(handle), policy })
    }

    #[getter(name)]
    fn py_name(&self) -> &str {
        self.name()
    }

    #[getter]
    fn fair(&self) -> bool {
        matches!(self.kind, Kind::Fair(_))
    }

    fn locked(&self) -> bool {
        match &self.kind {
            Kind::Plain(h) => h.locked(),
            Kind::Fair(h) => h.available() == 0,
        }
    }

    /// Test hook: threads waiting for it now (fair: in line; plain: asleep in a step, or
    /// greenthreads asleep in the hub for it).
    #[pyo3(name = "_waiters")]
    fn waiters(&self) -> usize {
        match &self.kind {
            Kind::Plain(h) => h.waiters() + green_local::waiting(h),
            Kind::Fair(h) => h.waiters(),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<ferrolock.InternalLock name={:?} fair={} locked={}>",
            self.name(),
            self.fair(),
            self.locked()
        )
    }
}

/// A named counting semaphore.
#[pyclass(frozen, module = "ferrolock._native")]
pub struct Semaphore {
    handle: Handle<CoreSemaphore>,
    policy: Policy,
}

with_lock_protocol!(Semaphore);

#[pymethods]
impl Semaphore {
    #[new]
    #[pyo3(signature = (name, permits, fair=false, *, blocking=true, timeout=None))]
    fn new(
        name: &str,
        permits: usize,
        fair: bool,
        blocking: bool,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let policy = Policy::new(blocking, timeout)?;
        let handle = semaphores()
            .get_fitting(
                name,
                || CoreSemaphore::new(permits, fair),
                |s| s.permits() == permits && s.is_fair() == fair,
            )
            .map_err(PyErr::from)?;
        if handle.permits() != permits || handle.is_fair() != fair {
            return Err(PyValueError::new_err(format!(
                "semaphore {name:?} is in use with permits={} fair={}",
                handle.permits(),
                handle.is_fair()
            )));
        }
        Ok(Semaphore { handle, policy })
    }

    #[getter]
    fn name(&self) -> &str {
        self.handle.name()
    }

    #[getter]
    fn permits(&self) -> usize {
        self.handle.permits()
    }

    /// Permits free now.
    fn available(&self) -> usize {
        self.handle.available()
    }

    fn locked(&self) -> bool {
        self.handle.available() == 0
    }

    /// Test hook: threads waiting for a permit now (fair: in line; else asleep in a step).
    #[pyo3(name = "_waiters")]
    fn waiters(&self) -> usize {
        self.handle.waiters()
    }

    fn __repr__(&self) -> String {
        format!(
            "<ferrolock.Semaphore name={:?} permits={} available={}>",
            self.handle.name(),
            self.handle.permits(),
            self.handle.available()
        )
    }
}

impl WithLock for Semaphore {
    fn take(&self, py: Python<'_>, policy: Policy) -> PyResult<bool> {
        hold::acquire(py, policy, &self.handle)
    }
    fn give_back(&self, _py: Python<'_>) -> PyResult<()> {
        Ok(self.handle.release()?)
    }
    fn lock_name(&self) -> &str {
        self.handle.name()
    }
    fn with_policy(&self) -> Policy {
        self.policy
    }
}
