"""Distributed locks with cinder's ``coordination`` API, on ferrolock's backends.

A drop-in for ``cinder/coordination.py`` (which wraps tooz)::

    from ferrolock import coordination
    coordination.COORDINATOR.start(backend_url='mysql://cinder:secret@db/cinder')

    @coordination.synchronized('{volume.id}-{f_name}')
    def delete_volume(self, context, volume): ...

The backend URL comes from ``start(backend_url=...)``, else from oslo.config's
``[coordination] backend_url`` (when oslo.config is importable and the value resolves), else
from ``$FERROLOCK_COORDINATION_URL``. Schemes: ``file://DIR``, ``mysql://`` (and
``mysql+pymysql://``), those other packages register, and, when tooz is installed, any of
tooz's.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import uuid
from contextlib import ExitStack
from typing import Any, Callable, Optional, TypeVar

from ferrolock.exceptions import LockUsageError

from ._backends import (
    Backend,
    FileBackend,
    UnsupportedBackend,
    backend_url,
    make_backend,
    register_backend,
    schemes,
)
from ._locks import Blocking, LockAcquireFailed, ToozLock

LOG = logging.getLogger("ferrolock.coordination")
F = TypeVar("F", bound=Callable[..., Any])


class Coordinator:
    """Locks named ``prefix + name`` on the configured backend (cinder's ``Coordinator``).

    :param agent_id: this member's identifier (a random UUID by default).
    :param prefix: put before every lock name (cinder uses ``'cinder-'``).
    """

    def __init__(self, agent_id: Optional[str] = None, prefix: str = "") -> None:
        self.coordinator: Optional[Backend] = None
        self.agent_id = agent_id or str(uuid.uuid4())
        self.started = False
        self.prefix = prefix
        self.backend_url: Optional[str] = None

    def start(self, backend_url: Optional[str] = None) -> None:
        if self.started:
            return
        url = _resolve_url(backend_url)
        member_id = (self.prefix + self.agent_id).encode("ascii")
        backend = make_backend(url, member_id)
        backend.start()
        self.coordinator = backend
        self.backend_url = url
        self.started = True

    def stop(self) -> None:
        """Disconnect from the backend (held locks stay with their holders)."""
        if self.started:
            if self.coordinator is not None:
                self.coordinator.stop()
            self.coordinator = None
            self.started = False

    def get_lock(self, name: str) -> Any:
        """A lock named ``prefix + name``, the same on every host using the backend."""
        if self.coordinator is None:
            raise LockUsageError("Coordinator uninitialized.")
        return self.coordinator.get_lock(self.prefix + name)

    def remove_lock(self, glob_name: str) -> None:
        """Remove lock files matching ``prefix + glob_name`` (file backend only; server
        locks leave nothing behind)."""
        if isinstance(self.coordinator, FileBackend):
            self.coordinator.remove_lock(self.prefix + glob_name)


def _resolve_url(explicit: Optional[str]) -> str:
    return backend_url(explicit)


COORDINATOR = Coordinator(prefix="cinder-")


def synchronized_remove(glob_name: str, coordinator: Coordinator = COORDINATOR) -> None:
    coordinator.remove_lock(glob_name)


def synchronized(
    *lock_names: str, blocking: Blocking = True, coordinator: Coordinator = COORDINATOR
) -> Callable[[F], F]:
    """Run each call of the decorated function holding the named lock(s).

    Names are format strings over the call's arguments plus ``f_name`` (the function's name):
    ``'{volume.id}-{f_name}'``, ``'{snap[name]}'``. Several names are de-duplicated and taken
    in sorted order (every caller takes them in the same order: no deadlock).

    :param blocking: True waits, False raises at once when busy, a number is a timeout in
        seconds.
    :raises LockAcquireFailed: when the lock is not acquired.
    """
    if not lock_names:
        raise TypeError("synchronized() needs at least one lock name")

    def wrap(f: F) -> F:
        signature = inspect.signature(f)
        f_name = f.__name__

        @functools.wraps(f)
        def locked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            call_args = dict(bound.arguments)
            call_args["f_name"] = f_name
            names = sorted({n.format(**call_args) for n in lock_names})
            with ExitStack() as stack:
                for name in names:
                    stack.enter_context(_held(coordinator.get_lock(name), f_name, blocking))
                return f(*args, **kwargs)

        return locked  # type: ignore[return-value]

    return wrap


class _held:
    """One lock around a call, with cinder's DEBUG lines (acquiring, waited, held)."""

    __slots__ = ("blocking", "f_name", "lock", "name", "t1", "t2")

    def __init__(self, lock: Any, f_name: str, blocking: Blocking) -> None:
        self.lock = lock
        self.f_name = f_name
        self.blocking = blocking
        name = lock.name
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.t1 = 0.0
        self.t2: Optional[float] = None

    def __enter__(self) -> None:
        debug = LOG.isEnabledFor(logging.DEBUG)
        self.t1 = time.monotonic()
        if debug:
            LOG.debug(
                'Acquiring lock "%(name)s" by "%(f_name)s"',
                {"name": self.name, "f_name": self.f_name},
            )
        self.lock(self.blocking).__enter__()
        self.t2 = time.monotonic()
        if debug:
            LOG.debug(
                'Lock "%(name)s" acquired by "%(f_name)s" :: waited %(wait)s',
                {"name": self.name, "f_name": self.f_name, "wait": f"{self.t2 - self.t1:0.3f}s"},
            )

    def __exit__(self, *exc: object) -> None:
        try:
            self.lock.release()
        finally:
            if LOG.isEnabledFor(logging.DEBUG):
                held = "N/A" if self.t2 is None else f"{time.monotonic() - self.t2:0.3f}s"
                LOG.debug(
                    'Lock "%(name)s" released by "%(f_name)s" :: held %(held)s',
                    {"name": self.name, "f_name": self.f_name, "held": held},
                )


__all__ = [
    "COORDINATOR",
    "Coordinator",
    "LockAcquireFailed",
    "ToozLock",
    "UnsupportedBackend",
    "register_backend",
    "schemes",
    "synchronized",
    "synchronized_remove",
]
