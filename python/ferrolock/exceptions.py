"""Every exception ferrolock raises, in one place (importable without the native module)."""

from __future__ import annotations

from typing import Optional


class LockError(Exception):
    """Base of all ferrolock errors."""


class AcquireLockFailedException(LockError):
    """The lock was busy and the caller asked not to wait (oslo.concurrency's exception)."""

    def __init__(self, lock_name: str) -> None:
        super().__init__(lock_name)
        self.lock_name = lock_name
        self.message = f"Failed to acquire the lock {lock_name}"

    def __str__(self) -> str:
        return self.message


class LockTimeout(AcquireLockFailedException, TimeoutError):
    """The lock was still busy when ``timeout`` seconds had passed."""

    def __init__(self, lock_name: str, timeout: Optional[float] = None) -> None:
        super().__init__(lock_name)
        self.args = (lock_name, timeout)
        self.timeout = timeout
        self.message = f"Failed to acquire the lock {lock_name} within {timeout} s"


class InvalidLockName(LockError, ValueError):
    """The lock name cannot be used: empty, NUL byte, or a lock file name over 255 bytes."""


class LockPathError(LockError, OSError):
    """The lock directory cannot hold lock files, or none is configured."""


class LockUsageError(LockError, RuntimeError):
    """A call the lock's state does not allow, such as releasing a lock that is not held."""


class LockBackendError(LockError, ConnectionError):
    """A lock server or the connection to it failed (refused, unreachable, timed out, wrong
    credentials). The message names the backend and the server, never a password."""


class LockLost(LockError):
    """A lock that was held has been taken away (its server session was killed, its lease
    expired, the cluster fenced the holder). It is not held any more: whatever it protected
    may have been entered by someone else meanwhile."""


__all__ = [
    "AcquireLockFailedException",
    "InvalidLockName",
    "LockBackendError",
    "LockError",
    "LockLost",
    "LockPathError",
    "LockTimeout",
    "LockUsageError",
]
