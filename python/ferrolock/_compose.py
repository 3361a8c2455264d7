"""The slow path of ``lockutils.lock``: what the native ``lock()`` hands back to Python (external
locks, a caller's ``Semaphores`` container, DEBUG logging, names that are not plain text). It
composes an in-process lock (plain, fair, or the container's), then the lock file, with one
deadline across both and oslo's DEBUG log lines. Which lock file (config applied) is asked of
``lockutils``, which passes that function in: this module never imports ``lockutils``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

from ferrolock import _names, _native
from ferrolock.exceptions import AcquireLockFailedException, InvalidLockName, LockTimeout

# oslo's log lines come from its lockutils logger; ours from ferrolock.lockutils, whichever module
# composes the lock.
LOG = logging.getLogger("ferrolock.lockutils")
_DEBUG = logging.DEBUG

#: ``lock_file(name, lock_file_prefix, lock_path)``: the lock file of an external lock, or None
#: while process locking is disabled (``lockutils._lock_file``).
LockFile = Callable[[Any, Optional[str], Optional[str]], Optional[str]]


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


def slow_lock(
    lock_file: LockFile,
    name: str,
    lock_file_prefix: Optional[str],
    external: bool,
    lock_path: Optional[str],
    do_log: bool,
    semaphores: Any,
    delay: float,
    fair: bool,
    blocking: bool,
    timeout: Optional[float],
) -> Any:
    """What ``lock`` (native, see ``_native.lock``) does not answer itself: external locks,
    custom semaphores, DEBUG logging, names that are not strings. Arguments as ``lock``, after
    ``lock_file`` (which ``lockutils`` binds)."""
    if fair and semaphores is not None:
        raise NotImplementedError("Specifying semaphores is not supported when using fair locks.")
    blocking = bool(blocking)
    if not blocking and timeout is not None:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if external and not isinstance(name, str):
        # oslo fails too (it builds the file name with str methods); ours would be "None"
        raise InvalidLockName(f"an external lock needs a str name, not {name!r}")
    # Asked only once the in-process lock is held, as oslo reads its options.
    file_path: Optional[Callable[[], Optional[str]]] = None
    if external:
        file_path = functools.partial(lock_file, name, lock_file_prefix, lock_path)
    if not _names.is_text(name):
        return _object_lock(name, file_path, do_log, semaphores, fair, blocking, timeout)
    if not (do_log and LOG.isEnabledFor(_DEBUG)) and semaphores is None:
        if not external:
            make = _native.fair_lock if fair else _native.internal_lock
            return make(name, blocking, timeout)
        if not fair:
            return _native.external_lock(name, lock_file_prefix, lock_path, blocking, timeout)
    return layered_lock(name, file_path, do_log, semaphores, fair, blocking, timeout)


def _object_lock(
    name: Any,
    file_path: Optional[Callable[[], Optional[str]]],
    do_log: bool,
    semaphores: Any,
    fair: bool,
    blocking: bool,
    timeout: Optional[float],
) -> Any:
    """``lock`` of a name that is not plain text (see ``_names``): keyed as oslo keys it."""
    if semaphores is None:
        if file_path is None and not (do_log and LOG.isEnabledFor(_DEBUG)):
            return _names.ObjectLock(_names.PROCESS, name, fair, blocking, timeout)
        semaphores = _names.Container(_names.PROCESS, fair)
    return layered_lock(name, file_path, do_log, semaphores, False, blocking, timeout)
