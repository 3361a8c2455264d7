"""Locks with tooz's interface, over ferrolock's native locks."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Optional, Union

from ferrolock import _native
from ferrolock.exceptions import LockError, LockUsageError

Blocking = Union[bool, float, int]


class LockAcquireFailed(LockError):
    """``with lock:`` or ``with lock(blocking):`` did not get the lock (tooz's
    ``tooz.coordination.LockAcquireFailed``)."""


def _policy(blocking: Blocking) -> tuple[bool, Optional[float]]:
    """tooz's ``blocking``: True waits for ever, False tries once, a number is a timeout."""
    if isinstance(blocking, bool):
        return blocking, None
    if blocking < 0:
        raise ValueError("blocking must be True, False or a non-negative number of seconds")
    return True, float(blocking)


class _LockProxy:
    """What ``lock(blocking)`` returns: a context manager taking the lock with those args."""

    __slots__ = ("_blocking", "_lock")

    def __init__(self, lock: ToozLock, blocking: Blocking) -> None:
        self._lock = lock
        self._blocking = blocking

    def __enter__(self) -> ToozLock:
        return self._lock.__enter__(self._blocking)

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._lock.__exit__(exc_type, exc, tb)


class ToozLock:
    """tooz's lock interface: ``acquire(blocking) -> bool``, ``release() -> bool``,
    ``with lock:``, ``with lock(blocking):``, ``name``, ``is_still_owner()``, ``break_()``."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("Locks must be provided a name")
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def acquire(self, blocking: Blocking = True, shared: bool = False) -> bool:
        raise NotImplementedError

    def release(self) -> bool:
        raise NotImplementedError

    def is_still_owner(self) -> bool:
        return False

    def break_(self) -> bool:
        """Force the lock free whoever holds it; not supported here (as most tooz drivers)."""
        return False

    def __call__(self, blocking: Blocking = True) -> _LockProxy:
        return _LockProxy(self, blocking)

    def __enter__(self, blocking: Blocking = True) -> ToozLock:
        if not self.acquire(blocking):
            raise LockAcquireFailed(f"Acquiring lock {self.name} failed")
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class NativeToozLock(ToozLock):
    """A tooz-shaped lock over a native ferrolock lock (``MySQLLock``, ``FileLock``)."""

    __slots__ = ("_lock",)

    def __init__(self, name: str, lock: Any) -> None:
        super().__init__(name)
        self._lock = lock

    @property
    def native(self) -> Any:
        """The native lock underneath."""
        return self._lock

    def acquire(self, blocking: Blocking = True, shared: bool = False) -> bool:
        if shared:
            raise NotImplementedError("shared locks are not supported by this backend")
        wait, timeout = _policy(blocking)
        return bool(self._lock.acquire(wait, timeout))

    def release(self) -> bool:
        """True when released; False when it was not held (tooz's answer). A server lock
        that was lost meanwhile raises ``LockLost``."""
        try:
            self._lock.release()
        except LockUsageError:
            return False
        return True

    def is_still_owner(self) -> bool:
        return bool(
            self._lock.is_still_owner()
            if hasattr(self._lock, "is_still_owner")
            else self._lock.locked()
        )


class MySQLToozLock(NativeToozLock):
    """A tooz-shaped MySQL lock; ``holder()`` tells who holds the name on the server."""

    __slots__ = ()

    def holder(self) -> Optional[dict[str, Any]]:
        return self._lock.holder()  # type: ignore[no-any-return]


def mysql_lock(url: str, name: str) -> MySQLToozLock:
    return MySQLToozLock(name, _native.MySQLLock(url, name))


def file_lock(path: str, name: str) -> NativeToozLock:
    return NativeToozLock(name, _native.FileLock(path))
