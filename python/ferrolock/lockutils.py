"""Drop-in replacement for ``oslo_concurrency.lockutils`` (7.x).

Switch with ``from ferrolock import lockutils``: same functions, signatures, defaults, lock file
names, exceptions and DEBUG log lines. Beyond oslo: ``timeout=`` on ``lock``/``synchronized``,
non-blocking fair locks, waiters woken by the kernel instead of polling, and lock files removed
only while nobody holds them.

The hot path (no DEBUG logging, default semaphores, not fair) returns a native lock object whose
``__enter__``/``__exit__`` are one native call each.

This module holds oslo's public API and its config plumbing (``[oslo_concurrency]`` options, the
lock directory and lock file a name gets) only. The slow path of ``lock`` is in ``_compose``,
``synchronized``'s logged call in ``_decorate``, names that are not plain text in ``_names``, the
fasteners-shaped classes in ``interprocess`` and ``rwlock``.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Callable, Optional, TypeVar, cast

from ferrolock import _names, _native
from ferrolock._compose import held, slow_lock
from ferrolock._decorate import callable_name, logged_call
from ferrolock.exceptions import AcquireLockFailedException, LockPathError
from ferrolock.interprocess import InterProcessLock
from ferrolock.rwlock import ReaderWriterLock

LOG = logging.getLogger(__name__)
_DEBUG = logging.DEBUG

F = TypeVar("F", bound=Callable[..., Any])

cfg: Any
try:
    from oslo_config import cfg
except ImportError:  # oslo.config is optional: OSLO_LOCK_PATH and lock_path= still work.
    cfg = None

CONF: Any = None
if cfg is not None:
    try:
        # A partial migration runs both libraries in one process: register oslo's own option
        # objects, so either library's set_defaults() changes the one lock_path both read.
        from oslo_concurrency.lockutils import _opts as _opts
    except ImportError:
        _opts = [
            cfg.BoolOpt(
                "disable_process_locking",
                default=False,
                help="Enables or disables inter-process locks.",
            ),
            cfg.StrOpt(
                "lock_path",
                default=os.environ.get("OSLO_LOCK_PATH"),
                help="Directory to use for lock files.  For security, the "
                "specified directory should only be writable by the user "
                "running the processes that need locking. "
                "Defaults to environment variable OSLO_LOCK_PATH. "
                "If external locks are used, a lock path must be set.",
            ),
        ]
    CONF = cfg.CONF


def _register_opts(conf: Any) -> None:
    conf.register_opts(_opts, group="oslo_concurrency")


if cfg is not None:
    _register_opts(CONF)

_MISSING_LOCK_PATH = (
    "external locks need a lock directory: pass lock_path=, set the OSLO_LOCK_PATH environment "
    "variable, or install oslo.config and set [oslo_concurrency] lock_path"
)


def set_defaults(lock_path: str) -> None:
    """Set the default lock_path (tests use it to point at a temporary directory)."""
    if cfg is not None:
        cfg.set_defaults(_opts, lock_path=lock_path)
    else:
        os.environ["OSLO_LOCK_PATH"] = lock_path


def get_lock_path(conf: Any) -> Optional[str]:
    """The lock_path of an oslo.config ``ConfigOpts``."""
    _register_opts(conf)
    return cast(Optional[str], conf.oslo_concurrency.lock_path)


def _option(name: str) -> Any:
    """``CONF.oslo_concurrency.<name>``, read through oslo.config's own value cache first.

    The attribute path costs two failed attribute lookups (exceptions) per read, more than a
    whole lock cycle; oslo.config clears that cache whenever a value can change (overrides,
    defaults, reloads), so a hit is exactly what the attribute path would return.
    """
    cache = vars(CONF).get("_ConfigOpts__cache")
    if cache is not None:
        try:
            return cache[("oslo_concurrency", name)]
        except KeyError:
            pass
    return getattr(CONF.oslo_concurrency, name)


def _lock_dir(lock_path: Optional[str]) -> str:
    if lock_path:
        return lock_path
    if CONF is not None:
        configured = _option("lock_path")
        if not configured:
            raise cfg.RequiredOptError("lock_path", cfg.OptGroup("oslo_concurrency"))
        return cast(str, configured)
    configured = os.environ.get("OSLO_LOCK_PATH")
    if not configured:
        raise LockPathError(_MISSING_LOCK_PATH)  # one argument: no "[Errno None]" in front
    return configured


def _process_locking_disabled() -> bool:
    return CONF is not None and bool(_option("disable_process_locking"))


def _get_lock_path(
    name: str, lock_file_prefix: Optional[str], lock_path: Optional[str] = None
) -> str:
    return os.fspath(_native.lock_file_path(_lock_dir(lock_path), name, lock_file_prefix))


class Semaphores:
    """A container of named in-process locks; a name's lock exists while someone uses it."""

    def __init__(self) -> None:
        self._registry = _native.LockRegistry()

    def get(self, name: str) -> Any:
        """The lock of ``name`` in this container (``with`` blocks until it is free)."""
        if not _names.is_text(name):
            return _names.ObjectLock(self._object_names(), name, False)
        return self._registry.get(name)

    def _object_names(self) -> _names.ObjectNames:
        """Where this container keeps names that are not plain text (see ``_names``)."""
        objects = self.__dict__.get("_objects")
        if objects is None:
            objects = self.__dict__.setdefault("_objects", _names.ObjectNames())
        return cast(_names.ObjectNames, objects)

    def __len__(self) -> int:
        return len(self._registry)


class _ProcessSemaphores(Semaphores):
    """The default container: the process-wide registry behind ``InternalLock(name)``."""

    def __init__(self) -> None:
        self._registry = _native.LockRegistry.default()

    def _object_names(self) -> _names.ObjectNames:
        return _names.PROCESS


_semaphores: Semaphores = _ProcessSemaphores()


class FairLocks:
    """A container of fair reader-writer locks; a name's lock exists while someone uses it.
    Each container is its own namespace, as in oslo."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, ReaderWriterLock] = (
            weakref.WeakValueDictionary()
        )
        self._lock = threading.Lock()

    def get(self, name: str) -> ReaderWriterLock:
        with self._lock:
            rwlock = self._locks.get(name)
            if rwlock is None:
                rwlock = self._locks[name] = ReaderWriterLock()
            return rwlock


class _ProcessFairLocks(FairLocks):
    """The default container: the process-wide fair locks that ``lock(name, fair=True)`` takes."""

    def get(self, name: str) -> ReaderWriterLock:
        return ReaderWriterLock(name=name)


_fair_locks: FairLocks = _ProcessFairLocks()


def internal_fair_lock(name: str) -> ReaderWriterLock:
    return _fair_locks.get(name)


def internal_lock(name: str, semaphores: Optional[Semaphores] = None, blocking: bool = True) -> Any:
    """The in-process lock ``name``; with ``blocking=False`` its ``with`` raises
    AcquireLockFailedException instead of waiting."""
    blocking = bool(blocking)
    if not _names.is_text(name) and (semaphores is None or isinstance(semaphores, Semaphores)):
        objects = _names.PROCESS if semaphores is None else semaphores._object_names()
        return _names.ObjectLock(objects, name, False, blocking)
    if semaphores is None:
        return _native.internal_lock(_lock_name(name), blocking)
    if type(semaphores) in (Semaphores, _ProcessSemaphores):
        return semaphores._registry.get(_lock_name(name), blocking=blocking)
    return held(semaphores.get(name), name, blocking, None)


def external_lock(
    name: str, lock_file_prefix: Optional[str] = None, lock_path: Optional[str] = None
) -> InterProcessLock:
    """The inter-process lock of ``name`` (its file alone, without the in-process lock)."""
    return InterProcessLock(_get_lock_path(name, lock_file_prefix, lock_path))


def remove_external_lock_file(
    name: str,
    lock_file_prefix: Optional[str] = None,
    lock_path: Optional[str] = None,
    semaphores: Optional[Semaphores] = None,
) -> None:
    """Remove the lock file of ``name`` when nobody holds it.

    Unlike oslo, the file lock itself is held while the file is unlinked (``os.remove``, as oslo
    does), so no process can be inside the lock on the old file while another takes it on a new
    one; a lock in use is left.
    """
    with internal_lock(name, semaphores=semaphores):
        lock_file_path = _get_lock_path(name, lock_file_prefix, lock_path)
        try:
            if isinstance(lock_file_path, str):
                if not _native.FileLock(lock_file_path).remove_if_unused(os.remove):
                    LOG.debug("Lock file %(file)s is in use; not removed", {"file": lock_file_path})
            else:  # a test's stand-in for _get_lock_path (a mock): oslo's plain removal
                os.remove(lock_file_path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                LOG.warning("Failed to remove file %(file)s", {"file": lock_file_path})


def _lock_name(name: Any) -> str:
    """oslo takes any hashable as an in-process lock name; ours are strings."""
    return name if isinstance(name, str) else str(name)


def _lock_file(
    name: Any, lock_file_prefix: Optional[str], lock_path: Optional[str]
) -> Optional[str]:
    """The lock file of an external lock, or None while process locking is disabled. A str
    with lone surrogates (see ``_names``) stands for the bytes it was decoded from."""
    if _process_locking_disabled():
        return None
    if isinstance(name, str) and not _names.is_text(name):
        return _names.file_name_for(_lock_dir(lock_path), name, lock_file_prefix)
    return _get_lock_path(_lock_name(name), lock_file_prefix, lock_path)


def _external_lock_dir(lock_path: Optional[str]) -> Optional[str]:
    """The directory of external locks, or None while process locking is disabled."""
    return None if _process_locking_disabled() else _lock_dir(lock_path)


# The native lock() hands back what it does not answer itself (see _compose), and asks
# _external_lock_dir for the configured directory.
_native.set_lock_fallback(functools.partial(slow_lock, _lock_file), _external_lock_dir, LOG)
lock = _native.lock
# synchronized's fast path is taken only while ``lock`` is this one: a test that patches
# lockutils.lock (mock.patch.object(lockutils, "lock")) sees every call, as with oslo.
_LOCK = lock


def lock_with_prefix(lock_file_prefix: str) -> Callable[..., Any]:
    """``lock`` with ``lock_file_prefix`` bound (``nova`` and ``nova-`` are equal)."""
    return functools.partial(lock, lock_file_prefix=lock_file_prefix)


def synchronized(
    name: str,
    lock_file_prefix: Optional[str] = None,
    external: bool = False,
    lock_path: Optional[str] = None,
    semaphores: Optional[Semaphores] = None,
    delay: float = 0.01,
    fair: bool = False,
    blocking: bool = True,
    timeout: Optional[float] = None,
) -> Callable[[F], F]:
    """Decorator running the function while holding lock ``name`` (arguments as ``lock``)."""
    lock_args = (name, lock_file_prefix, external, lock_path)
    lock_kwargs: dict[str, Any] = {
        "do_log": False,
        "semaphores": semaphores,
        "delay": delay,
        "fair": fair,
        "blocking": blocking,
        "timeout": timeout,
    }
    simple = not (external or fair or semaphores is not None) and _names.is_text(name)

    def wrap(f: F) -> F:
        f_name = callable_name(f)
        # Holding the lock object keeps the name's registry entry for the decorated function's
        # lifetime: each call then costs one native enter and exit.
        native = (
            _native.internal_lock(_lock_name(name), bool(blocking), timeout) if simple else None
        )

        def locked() -> Any:
            if native is not None and lock is _LOCK:
                return native
            return lock(*lock_args, **lock_kwargs)

        @functools.wraps(f)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if LOG.isEnabledFor(_DEBUG):
                return logged_call(name, f_name, locked, f, args, kwargs, LOG)
            if native is not None and lock is _LOCK:
                with native:
                    return f(*args, **kwargs)
            with lock(*lock_args, **lock_kwargs):
                return f(*args, **kwargs)

        return cast(F, inner)

    return wrap


def synchronized_with_prefix(lock_file_prefix: str) -> Callable[..., Any]:
    """``synchronized`` with ``lock_file_prefix`` bound."""
    return functools.partial(synchronized, lock_file_prefix=lock_file_prefix)


def remove_external_lock_file_with_prefix(lock_file_prefix: str) -> Callable[..., None]:
    """``remove_external_lock_file`` with ``lock_file_prefix`` bound."""
    return functools.partial(remove_external_lock_file, lock_file_prefix=lock_file_prefix)


def _lock_wrapper(argv: Sequence[str]) -> int:
    """Run ``argv[1:]`` with OSLO_LOCK_PATH set to a fresh directory, removed afterwards."""
    lock_dir = tempfile.mkdtemp()
    os.environ["OSLO_LOCK_PATH"] = lock_dir
    try:
        return subprocess.call(list(argv[1:]))
    finally:
        shutil.rmtree(lock_dir, ignore_errors=True)


def main() -> None:
    """The ``ferrolock-wrapper`` console script (oslo's ``lockutils-wrapper``)."""
    if len(sys.argv) < 2:
        sys.stderr.write("usage: ferrolock-wrapper COMMAND [ARG...]\n")
        sys.exit(2)
    sys.exit(_lock_wrapper(sys.argv))


__all__ = [
    "CONF",
    "AcquireLockFailedException",
    "FairLocks",
    "InterProcessLock",
    "ReaderWriterLock",
    "Semaphores",
    "external_lock",
    "get_lock_path",
    "internal_fair_lock",
    "internal_lock",
    "lock",
    "lock_with_prefix",
    "main",
    "remove_external_lock_file",
    "remove_external_lock_file_with_prefix",
    "set_defaults",
    "synchronized",
    "synchronized_with_prefix",
]
