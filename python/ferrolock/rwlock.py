"""The fair reader-writer lock, with fasteners' API (what oslo's ``fair=True`` locks are)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Callable, Optional

from ferrolock import _native


def _thread_id() -> int:
    # Looked up on each call: eventlet's monkey-patching replaces it with a greenthread id.
    return threading.get_ident()


class ReaderWriterLock:
    """Readers share, a writer excludes; waiters are served in arrival order.

    Re-entrant per thread (or greenthread): a writer may take the read or write lock again, a
    reader may take the read lock again; a reader asking to write raises ``LockUsageError``.

    The constructor takes fasteners' arguments: ``condition_cls`` is accepted and unused (the
    waiting is native); ``current_thread_functor`` names the caller, as in fasteners (default:
    the thread, or the greenthread under eventlet). ``name`` shares one lock per name across
    the process (oslo's ``lock(name, fair=True)`` uses the same ones); without it the lock is
    private.
    """

    WRITER = "w"
    READER = "r"

    def __init__(
        self,
        condition_cls: Any = None,
        current_thread_functor: Optional[Callable[[], Any]] = None,
        *,
        name: Optional[str] = None,
    ) -> None:
        self._lock = _native.ReaderWriterLock(name)
        if current_thread_functor is None:
            self._me: Callable[[], int] = _thread_id
        else:
            functor = current_thread_functor
            self._me = lambda: id(functor())

    @property
    def name(self) -> Optional[str]:
        return self._lock.name

    @property
    def has_pending_writers(self) -> bool:
        return self._lock.has_pending_writers()

    @property
    def owner(self) -> Optional[str]:
        """``WRITER`` while a writer holds it, ``READER`` while readers do, else None."""
        return self._lock.held_for()

    def is_reader(self) -> bool:
        return self._lock.is_reader_id(self._me())

    def is_writer(self, check_pending: bool = True) -> bool:
        return self._lock.is_writer_id(self._me(), check_pending)

    def acquire_read(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return self._lock.acquire_read(self._me(), bool(blocking), timeout)

    def release_read(self) -> None:
        self._lock.release_read(self._me())

    def acquire_write(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return self._lock.acquire_write(self._me(), bool(blocking), timeout)

    def release_write(self) -> None:
        self._lock.release_write(self._me())

    # fasteners' names for the same calls
    def acquire_read_lock(self) -> None:
        self.acquire_read()

    def release_read_lock(self) -> None:
        self.release_read()

    def acquire_write_lock(self) -> None:
        self.acquire_write()

    def release_write_lock(self) -> None:
        self.release_write()

    @contextlib.contextmanager
    def read_lock(self) -> Iterator[ReaderWriterLock]:
        me = self._me()
        self._lock.acquire_read(me)
        try:
            yield self
        finally:
            self._lock.release_read(me)

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[ReaderWriterLock]:
        me = self._me()
        self._lock.acquire_write(me)
        try:
            yield self
        finally:
            self._lock.release_write(me)

    def __repr__(self) -> str:
        return f"<ferrolock.ReaderWriterLock name={self.name!r} owner={self.owner!r}>"
