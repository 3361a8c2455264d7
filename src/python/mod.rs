//! The PyO3 binding layer: the only code that speaks Python. It turns core results into Python
//! exceptions, releases the GIL while waiting and keeps Ctrl-C and eventlet working.

mod ceph;
mod config;
mod entry;
mod errors;
mod exit;
mod file;
mod green;
mod green_local;
mod hold;
mod internal;
mod mysql;
mod policy;
mod protocol;
mod rwlock;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Start counting forks now, at import: registering the fork handler later, on the first
    // file lock, could race a fork of another thread and leave the child's counter unusable.
    crate::fork::generation();
    crate::file::lock::register_fork_hook();
    m.add_class::<internal::InternalLock>()?;
    m.add_class::<internal::Semaphore>()?;
    m.add_class::<internal::LockRegistry>()?;
    m.add_class::<rwlock::ReaderWriterLock>()?;
    m.add_class::<rwlock::FairWriteLock>()?;
    m.add_function(wrap_pyfunction!(rwlock::fair_lock, m)?)?;
    m.add_class::<ceph::RbdLockCore>()?;
    m.add_class::<ceph::RadosLockCore>()?;
    m.add_class::<file::FileLock>()?;
    m.add_class::<mysql::MySQLLock>()?;
    m.add_class::<file::ExternalLock>()?;
    m.add_function(wrap_pyfunction!(internal::registry_size, m)?)?;
    m.add_function(wrap_pyfunction!(entry::lock, m)?)?;
    m.add_function(wrap_pyfunction!(config::set_lock_fallback, m)?)?;
    m.add_function(wrap_pyfunction!(internal::internal_lock, m)?)?;
    m.add_function(wrap_pyfunction!(file::lock_file_path, m)?)?;
    m.add_function(wrap_pyfunction!(file::external_lock, m)?)?;
    m.add_function(wrap_pyfunction!(file::cached_lock_files, m)?)?;
    m.add_function(wrap_pyfunction!(file::yield_to_oslo_pollers, m)?)?;
    m.add_function(wrap_pyfunction!(after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(exit::quiesce_at_exit, m)?)?;
    Ok(())
}

/// Run in a forked child (`os.register_at_fork`): every resource forgets what the parent's
/// threads left behind (lock-file descriptors, server connections), and the waiters counted
/// for the interpreter's exit were the parent's.
#[pyfunction]
fn after_fork_in_child() {
    // SAFETY: registered with os.register_at_fork(after_in_child=...), so its first call in a
    // child runs on the thread that forked, before any other thread exists; any other call
    // (Python code may make one) finds the hooks already run in this process and does nothing.
    if unsafe { crate::fork::run_child_hooks() } {
        exit::reset_after_fork();
    }
}
