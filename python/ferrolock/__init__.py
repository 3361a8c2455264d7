"""ferrolock: fast, drop-in locks for OpenStack services, from one Rust core.

- In-process: ``InternalLock`` (named, FIFO-fair on request), ``Semaphore`` (N permits),
  ``ReaderWriterLock`` (fair, re-entrant like fasteners').
- Across processes: ``FileLock`` (a Linux open-file-description lock that also excludes the
  ``lockf`` locks oslo.concurrency takes on the same file).
- On Ceph: ``RbdLock`` (the managed exclusive lock of an RBD image, for nova/cinder's
  ``with RbdLock(pool, name, ...)``) and ``RadosLock`` (a RADOS object lock with a lease);
  librados/librbd are loaded on first use.
- Across hosts: ``MySQLLock`` (``GET_LOCK`` on MySQL/MariaDB), and ``ferrolock.coordination``,
  cinder's coordination API over file and MySQL locks (tooz for other backends).
- ``lock`` and ``synchronized`` with oslo.concurrency's signatures (plus ``timeout=``), and
  ``ferrolock.lockutils``, a drop-in for ``oslo_concurrency.lockutils``.

Every wait releases the GIL, can be interrupted with Ctrl-C, and yields to other greenthreads
when eventlet has monkey-patched threading.
"""

from __future__ import annotations

import atexit
import os
from typing import Optional

from ferrolock import _native
from ferrolock._native import (
    FileLock,
    InternalLock,
    MySQLLock,
    Semaphore,
    registry_size,
    yield_to_oslo_pollers,
)
from ferrolock.exceptions import (
    AcquireLockFailedException,
    InvalidLockName,
    LockBackendError,
    LockError,
    LockLost,
    LockPathError,
    LockTimeout,
    LockUsageError,
)
from ferrolock.lockutils import lock, synchronized
from ferrolock.rbd import LockBusy, RadosLock, RbdLock
from ferrolock.rwlock import ReaderWriterLock

__version__: str = _native.__version__

# Services take locks at start-up, then fork their workers: a child must not share the
# parent's lock-file descriptors (it would share the parent's locks).
os.register_at_fork(after_in_child=_native.after_fork_in_child)
# Daemon threads still waiting for a lock when the interpreter exits must not take the GIL
# back during finalization (CPython would end them by unwinding, which aborts the process).
atexit.register(_native.quiesce_at_exit)


def lock_file_path(
    name: str, lock_file_prefix: Optional[str] = None, lock_path: Optional[str] = None
) -> str:
    """The file that external lock ``name`` uses (oslo's naming rule), validated."""
    from ferrolock.lockutils import _get_lock_path

    return os.fspath(_get_lock_path(name, lock_file_prefix, lock_path))


__all__ = [
    "AcquireLockFailedException",
    "FileLock",
    "InternalLock",
    "InvalidLockName",
    "LockBackendError",
    "LockBusy",
    "LockError",
    "LockLost",
    "LockPathError",
    "LockTimeout",
    "LockUsageError",
    "MySQLLock",
    "RadosLock",
    "RbdLock",
    "ReaderWriterLock",
    "Semaphore",
    "__version__",
    "lock",
    "lock_file_path",
    "registry_size",
    "synchronized",
    "yield_to_oslo_pollers",
]
