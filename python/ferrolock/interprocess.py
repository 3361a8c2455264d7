"""fasteners' ``InterProcessLock`` shape (what oslo's ``lockutils.external_lock`` returns and what
oslo users call), over ferrolock's ``FileLock``."""

from __future__ import annotations

import os
import threading
from typing import Optional

from ferrolock import _native

_FOREVER = float("inf")


class InterProcessLock:
    """fasteners' ``InterProcessLock`` interface over a ``FileLock``: ``acquire(blocking, delay,
    max_delay, timeout)``, where ``delay`` and ``max_delay`` were polling intervals and are
    unused, since waiters are woken."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = _native.FileLock(path)

    @property
    def acquired(self) -> bool:
        """Held through this object. Kept by the native lock, which sets it as it takes the
        lock: a signal's exception raised right after the acquire returns cannot leave a hold
        that this object does not know it has (and so could never release)."""
        return self._lock.held

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

    def __del__(self) -> None:
        # A hold nobody can release any more (a signal's exception between the acquire and
        # the `with` block) ends with the object, as fasteners' ends when its file is closed.
        lock = self.__dict__.get("_lock")
        if lock is not None and lock.held:
            lock.release()

    def __repr__(self) -> str:
        return f"<ferrolock.lockutils.InterProcessLock path={self.path!r}>"
