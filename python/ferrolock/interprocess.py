"""fasteners' ``InterProcessLock`` shape (what oslo's ``lockutils.external_lock`` returns and what
oslo users call), over ferrolock's ``FileLock``."""

from __future__ import annotations

import errno
import os
import threading
from typing import IO, Any, Optional

from ferrolock import _native

_FOREVER = float("inf")


class InterProcessLock:
    """fasteners' ``InterProcessLock`` interface over a ``FileLock``: ``acquire(blocking, delay,
    max_delay, timeout)``, where ``delay`` and ``max_delay`` were polling intervals and are
    unused, since waiters are woken."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = _native.FileLock(path, release_on_drop=True)
        self._lockfile: Optional[IO[Any]] = None

    @property
    def acquired(self) -> bool:
        """Held through this object. Kept by the native lock, which sets it as it takes the
        lock: a signal's exception raised right after the acquire returns cannot leave a hold
        that this object does not know it has (and so could never release)."""
        return self._lock.held

    @property
    def lockfile(self) -> Optional[IO[Any]]:
        """fasteners' open lock file: None until the caller assigns one (ferrolock opens and
        caches its own descriptors)."""
        return self._lockfile

    @lockfile.setter
    def lockfile(self, handle: Optional[IO[Any]]) -> None:
        # fasteners' callers (oslo's own tests among them) open a file and assign it here, then
        # trylock(): the lock then is on that file.
        if self.acquired:
            raise threading.ThreadError("cannot change the lock file while holding the lock")
        self._lockfile = handle
        if handle is not None:
            self.path = os.fspath(handle.name)
            self._lock = _native.FileLock(self.path)

    def acquire(
        self,
        blocking: bool = True,
        delay: float = 0.01,
        max_delay: float = 0.1,
        timeout: Optional[float] = None,
    ) -> bool:
        if timeout == _FOREVER:  # fasteners waits forever; a finite deadline would overflow
            timeout = None
        return self._lock.acquire(bool(blocking), timeout if blocking else None)

    def trylock(self) -> None:
        """fasteners' single try: hold the lock, or raise BlockingIOError (EAGAIN) if it is
        held elsewhere, as ``fcntl.lockf`` does there."""
        if not self._lock.acquire(False):
            raise BlockingIOError(errno.EAGAIN, "lock is held elsewhere", self.path)

    def unlock(self) -> None:
        """fasteners' unlock: give the lock back if this object holds it (else nothing)."""
        if self.acquired:
            self.release()

    def exists(self) -> bool:
        """Whether the lock file exists (fasteners' ``exists``)."""
        return os.path.exists(self.path)

    def release(self) -> None:
        if not self.acquired:
            # fasteners' error; the file may well be held, through another object
            raise threading.ThreadError("Unable to release an unacquired lock")
        self._lock.release()

    def __enter__(self) -> InterProcessLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<ferrolock.lockutils.InterProcessLock path={self.path!r}>"
