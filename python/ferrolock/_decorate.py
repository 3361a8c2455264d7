"""Decorating with locks: lock objects as decorators, as oslo's ``lock()`` (a ``contextlib``
context manager) allows (``@lock('name')`` runs each call of the function inside the lock), and
the decorated function's name as oslo's ``synchronized`` log lines give it."""

from __future__ import annotations

import functools
import inspect
from contextlib import AbstractContextManager
from typing import Any, Callable, TypeVar

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
