"""The fair reader-writer lock, with fasteners' API (what oslo's ``fair=True`` locks are)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Optional

from ferrolock import _native


def _owner() -> int:
    # Looked up on each call: eventlet's monkey-patching replaces it with a greenthread id.
    return threading.get_ident()


class ReaderWriterLock:
    """Readers share, a writer excludes; waiters are served in arrival order.

    Re-entrant per thread (or greenthread): a writer may take the read or write lock again, a
    reader may take the read lock again; a reader asking to write raises ``LockUsageError``.
    ``name`` shares one lock per name across the process; without it the lock is private.
    """

    def __init__(self, name: Optional[str] = None) -> None:
        self._lock = _native.ReaderWriterLock(name)

    @property
    def name(self) -> Optional[str]:
        return self._lock.name

    def is_reader(self) -> bool:
        return self._lock.is_reader_id(_owner())

    def is_writer(self, check_pending: bool = True) -> bool:
        return self._lock.is_writer_id(_owner())

    def acquire_read(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return self._lock.acquire_read(_owner(), blocking, timeout)

    def release_read(self) -> None:
        self._lock.release_read(_owner())

    def acquire_write(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return self._lock.acquire_write(_owner(), blocking, timeout)

    def release_write(self) -> None:
        self._lock.release_write(_owner())

    @contextlib.contextmanager
    def read_lock(self) -> Iterator[ReaderWriterLock]:
        owner = _owner()
        self._lock.acquire_read(owner)
        try:
            yield self
        finally:
            self._lock.release_read(owner)

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[ReaderWriterLock]:
        owner = _owner()
        self._lock.acquire_write(owner)
        try:
            yield self
        finally:
            self._lock.release_write(owner)

    def __repr__(self) -> str:
        return f"<ferrolock.ReaderWriterLock name={self.name!r}>"
