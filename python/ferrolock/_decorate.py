"""Lock objects as decorators, as oslo's ``lock()`` (a ``contextlib`` context manager) allows:
``@lock('name')`` runs each call of the function inside the lock."""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def decorate(lock: AbstractContextManager[Any], func: F) -> F:
    @functools.wraps(func)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return func(*args, **kwargs)

    return locked  # type: ignore[return-value]
