"""How ``lockutils.lock`` composes a lock when the native fast path cannot answer alone: an
in-process lock (plain, fair, or a caller's ``Semaphores`` container's), then the lock file, with
one deadline across both and oslo's DEBUG log lines.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

from ferrolock import _native
from ferrolock.exceptions import AcquireLockFailedException, LockTimeout

# oslo's log lines come from its lockutils logger; ours from ferrolock.lockutils, whichever module
# composes the lock.
LOG = logging.getLogger("ferrolock.lockutils")


def _deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


@contextlib.contextmanager
def held(
    lk: Any, name: str, blocking: bool, timeout: Optional[float], deadline: Optional[float] = None
) -> Iterator[Any]:
    """Hold any lock with acquire/release (ours, or a container's ``threading.Semaphore``)."""
    if not blocking:
        got = lk.acquire(blocking=False)
    elif timeout is None:
        got = lk.acquire()
    else:
        got = lk.acquire(timeout=_left(deadline) if deadline is not None else timeout)
    if not got:
        raise AcquireLockFailedException(name) if timeout is None else LockTimeout(name, timeout)
    try:
        yield lk
    finally:
        lk.release()


@contextlib.contextmanager
def layered_lock(
    name: str,
    file_path: Optional[Callable[[], Optional[str]]],
    do_log: bool,
    semaphores: Any,
    fair: bool,
    blocking: bool,
    timeout: Optional[float],
) -> Iterator[Any]:
    """oslo's lock() step by step: in-process lock, then the file lock, with oslo's log lines.

    ``file_path`` is None for an in-process lock; otherwise it is asked, once the in-process lock
    is held, for the lock file (None: process locking is disabled), as oslo reads its options.
    """
    deadline = _deadline(timeout)
    int_lock: Any
    if fair:
        int_lock = _native.fair_lock(name, blocking, timeout)
    elif semaphores is None:
        int_lock = _native.internal_lock(name, blocking, timeout)
    else:
        int_lock = held(semaphores.get(name), name, blocking, timeout, deadline)
    if do_log:
        LOG.debug('Acquiring lock "%s"', name)
    with int_lock as in_process:
        if do_log:
            LOG.debug('Acquired lock "%(lock)s"', {"lock": name})
        try:
            path = None if file_path is None else file_path()
            if path is not None:
                ext_lock = _native.FileLock(path, blocking=blocking, timeout=_left(deadline))
                entered = False
                try:
                    # The native `with`: no Python code runs between taking the file and the
                    # block that gives it back, so no signal's exception can come in between.
                    with ext_lock:
                        entered = True
                        if do_log:
                            LOG.debug('Acquired external semaphore "%(lock)s"', {"lock": name})
                        yield ext_lock
                except AcquireLockFailedException:
                    if entered:
                        raise
                    if timeout is None:
                        raise AcquireLockFailedException(name) from None
                    raise LockTimeout(name, timeout) from None
            else:
                yield in_process
        finally:
            if do_log:
                LOG.debug('Releasing lock "%(lock)s"', {"lock": name})
