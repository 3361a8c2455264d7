"""Ceph locks: ``RbdLock`` (the managed exclusive lock of an RBD image) and ``RadosLock`` (a
librados object lock with a lease renewed in the background).

``RbdLock`` replaces the class OpenStack services write over python-rbd, with the same
``lock()``/``unlock()`` names, so swapping it is an import change::

    with RbdLock('volumes', 'flattening_lock', conffile='/etc/ceph/ceph.conf', rados_id='nova'):
        flatten_one_clone()

librados and librbd are loaded on first use (Debian/Ubuntu and RHEL package ``librbd1``);
importing ferrolock never needs them.
"""

from __future__ import annotations

import os
import types
from typing import Callable, Optional, TypeVar, Union

from ferrolock import _native
from ferrolock.exceptions import AcquireLockFailedException, LockTimeout

_T = TypeVar("_T", bound="_CephLock")
PathLike = Union[str, "os.PathLike[str]"]


class LockBusy(AcquireLockFailedException):
    """The lock is held by another client: ``owners`` lists their addresses."""

    def __init__(self, lock_name: str, owners: Optional[list[str]] = None) -> None:
        super().__init__(lock_name)
        self.owners = list(owners or [])
        held = f": held by {', '.join(self.owners)}" if self.owners else ""
        self.message = f"Failed to acquire the lock {lock_name}{held}"


class _CephLock:
    _core: _native.RbdLockCore | _native.RadosLockCore
    name: str
    blocking: bool
    timeout: Optional[float]

    def _describe_owners(self) -> list[str]:
        raise NotImplementedError

    def acquire(self, blocking: Optional[bool] = None, timeout: Optional[float] = None) -> bool:
        """Take the lock; False when busy (non-blocking) or ``timeout`` passed.

        ``blocking``/``timeout`` default to the values given to the constructor.
        """
        if blocking is None:
            blocking = self.blocking
            if timeout is None:
                timeout = self.timeout
        return self._core.acquire(blocking, timeout if blocking else None)

    def release(self) -> None:
        """Give the lock back; raises ``LockLost`` if it had been taken away meanwhile."""
        self._core.release()

    def is_still_owner(self) -> bool:
        """Whether this object holds the lock and the cluster agrees."""
        return self._core.is_still_owner()

    def _raise_busy(self, blocking: bool, timeout: Optional[float]) -> None:
        try:
            owners = self._describe_owners()
        except Exception:
            owners = []
        if blocking and timeout is not None:
            err: AcquireLockFailedException = LockTimeout(self.name, timeout)
            if owners:
                err.message += f" (held by {', '.join(owners)})"
            raise err
        raise LockBusy(self.name, owners)

    def lock(self) -> None:
        """Take the lock or raise (``LockBusy`` naming the owner, ``LockTimeout``)."""
        blocking, timeout = self.blocking, self.timeout
        if not self._core.acquire(blocking, timeout if blocking else None):
            self._raise_busy(blocking, timeout)

    def unlock(self) -> None:
        """Release the lock (``release`` under the name of the python-rbd class)."""
        self.release()

    def __enter__(self: _T) -> _T:
        self.lock()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[types.TracebackType],
    ) -> None:
        self.release()


class RbdLock(_CephLock):
    """The managed exclusive lock of RBD image ``name`` in ``pool`` (created if missing).

    Non-blocking by default (a busy lock raises ``LockBusy`` naming its owner at once);
    ``blocking=True`` waits, up to ``timeout`` seconds, and is woken when the holder releases.
    A non-blocking try returns within about ``try_timeout`` seconds even when the owner is
    frozen. ``on_lost(reason)`` is called (from a background thread) if the cluster takes the
    lock away while held (this client was fenced after being unresponsive past
    ``osd_client_watch_timeout``, or an operator broke the lock).
    """

    def __init__(
        self,
        pool: str,
        name: str,
        *,
        conffile: Optional[PathLike] = None,
        rados_id: Optional[str] = None,
        cluster: str = "ceph",
        namespace: Optional[str] = None,
        create: bool = True,
        blocking: bool = False,
        timeout: Optional[float] = None,
        on_lost: Optional[Callable[[str], object]] = None,
        connect_timeout: float = 10.0,
        try_timeout: float = 1.0,
    ) -> None:
        self.pool = pool
        self.name = name
        self.blocking = blocking
        self.timeout = timeout
        self._core: _native.RbdLockCore = _native.RbdLockCore(
            pool,
            name,
            os.fspath(conffile) if conffile is not None else None,
            rados_id,
            cluster,
            namespace,
            create,
            connect_timeout,
            try_timeout,
            on_lost,
        )

    def _describe_owners(self) -> list[str]:
        return [a if alive else f"{a} (no live watch)" for a, alive in self.owners_alive()]

    def owners(self) -> list[str]:
        """Addresses of the rados clients that own the lock now (empty when free)."""
        return [a for a, _alive in self._core.owners()]

    def owners_alive(self) -> list[tuple[str, bool]]:
        """``(address, has a live watch)`` per owner: a crashed owner's watch expires after
        ``osd_client_watch_timeout``, after which the next acquire fences it and takes over."""
        return self._core.owners()

    def watchers(self) -> list[tuple[str, int, int]]:
        """``(address, client id, cookie)`` of every client with the image open."""
        return self._core.watchers()

    def break_lock(self, owner: str) -> bool:
        """Break ``owner``'s lock. librbd blocklists (fences) that client for an hour: every
        call it makes fails from then on. False when ``owner`` does not own the lock."""
        return self._core.break_lock(owner)

    def client_address(self) -> str:
        """This process's client address on the cluster (what ``owners()`` shows for us)."""
        return self._core.client_address()

    def __repr__(self) -> str:
        return f"<RbdLock {self._core.spec}>"


class RadosLock(_CephLock):
    """An exclusive lock on RADOS object ``name`` in ``pool``: any name, no image per lock.

    The lock has a lease of ``lease`` seconds that a background thread renews while held; a
    crashed holder's lock frees itself when its lease runs out, and a holder that could not
    renew in time learns it (``is_still_owner()`` False, ``on_lost``, ``LockLost`` on
    release). ``lease=0`` holds until released or broken.
    """

    def __init__(
        self,
        pool: str,
        name: str,
        *,
        conffile: Optional[PathLike] = None,
        rados_id: Optional[str] = None,
        cluster: str = "ceph",
        namespace: Optional[str] = None,
        lease: float = 30.0,
        blocking: bool = False,
        timeout: Optional[float] = None,
        on_lost: Optional[Callable[[str], object]] = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.pool = pool
        self.name = name
        self.blocking = blocking
        self.timeout = timeout
        self._core: _native.RadosLockCore = _native.RadosLockCore(
            pool,
            name,
            os.fspath(conffile) if conffile is not None else None,
            rados_id,
            cluster,
            namespace,
            lease,
            connect_timeout,
            on_lost,
        )

    def _describe_owners(self) -> list[str]:
        return [f"{client} at {addr}" for client, _cookie, addr in self.lockers()]

    def lockers(self) -> list[tuple[str, str, str]]:
        """``(client, cookie, address)`` of the holders."""
        return self._core.lockers()

    def owners(self) -> list[str]:
        return [addr for _c, _k, addr in self.lockers()]

    def break_lock(self, client: str, cookie: str) -> bool:
        """Break a holder's lock. Unlike RBD this does not fence it: a frozen holder learns at
        its next lease renewal."""
        return self._core.break_lock(client, cookie)

    def __repr__(self) -> str:
        return f"<RadosLock {self.pool}/{self.name}>"


__all__ = ["LockBusy", "RadosLock", "RbdLock"]
