"""Decorating with locks: lock objects as decorators, as oslo's ``lock()`` (a ``contextlib``
context manager) allows (``@lock('name')`` runs each call of the function inside the lock), and
a ``synchronized`` call with oslo's DEBUG log lines, naming the decorated function as oslo does."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from contextlib import AbstractContextManager
from typing import Any, Callable, TypeVar

from ferrolock.exceptions import AcquireLockFailedException

# oslo's log lines come from its lockutils logger; ours from ferrolock.lockutils.
LOG = logging.getLogger("ferrolock.lockutils")

F = TypeVar("F", bound=Callable[..., Any])


def decorate(lock: AbstractContextManager[Any], func: F) -> F:
    @functools.wraps(func)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return func(*args, **kwargs)

    return locked  # type: ignore[return-value]


def callable_name(f: Any) -> str:
    """oslo_utils.reflection.get_callable_name, as oslo's log lines name functions."""
    owner = getattr(f, "__self__", None)
    if owner is not None and not inspect.ismodule(owner):
        cls = owner if isinstance(owner, type) else type(owner)
        qualname = getattr(f, "__qualname__", None)
        if qualname is None:
            return ".".join((cls.__module__, cls.__name__, f.__name__))
        return ".".join((cls.__module__, qualname))
    if inspect.isfunction(f) or inspect.ismethod(f):
        return ".".join((f.__module__, f.__qualname__))
    cls = f if isinstance(f, type) else type(f)
    return ".".join((cls.__module__, getattr(cls, "__qualname__", cls.__name__)))


def logged_call(
    name: Any,
    f_name: str,
    locked: Callable[[], AbstractContextManager[Any]],
    f: Callable[..., Any],
    args: Any,
    kwargs: Any,
    log: logging.Logger = LOG,
) -> Any:
    """``f(*args, **kwargs)`` inside ``locked()``, with the DEBUG lines of oslo's
    ``synchronized``: acquiring, acquired (time waited), then released or unacquired (time held),
    on ``log`` (``lockutils`` passes its ``LOG`` at each call, so a test that patches it sees
    them). ``locked`` is called after the first line, so a lock that fails to build still logs
    both."""
    t1 = time.monotonic()
    t2 = None
    gotten = True
    try:
        log.debug('Acquiring lock "%s" by "%s"', name, f_name)
        with locked():
            t2 = time.monotonic()
            log.debug(
                'Lock "%(name)s" acquired by "%(function)s" :: waited %(wait_secs)0.3fs',
                {"name": name, "function": f_name, "wait_secs": (t2 - t1)},
            )
            return f(*args, **kwargs)
    except AcquireLockFailedException:
        gotten = False
        raise
    finally:
        t3 = time.monotonic()
        held_secs = "N/A" if t2 is None else "%0.3fs" % (t3 - t2)
        log.debug(
            'Lock "%(name)s" "%(gotten)s" by "%(function)s" :: held %(held_secs)s',
            {
                "name": name,
                "gotten": "released" if gotten else "unacquired",
                "function": f_name,
                "held_secs": held_secs,
            },
        )
