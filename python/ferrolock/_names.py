"""In-process locks of names that are not plain text, keyed as oslo.concurrency keys them.

oslo keeps its in-process locks in a dict keyed by the name object: names that compare equal
(``1``, ``1.0``, ``True``) are one lock, and a name is never its string form (``1`` is not
``"1"``, ``b"x"`` is not ``"b'x'"``). Strings with lone surrogates (``os.fsdecode`` of a byte
that is not UTF-8) are text Rust cannot hold. The native registries are keyed by text, so each
such name in use gets a key of its own in a registry no text name reaches, for as long as some
lock object of that name lives; the hot path (plain text names) never comes here.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from typing import Any, Optional

from ferrolock import _native
from ferrolock.exceptions import AcquireLockFailedException, LockTimeout
from ferrolock.rwlock import ReaderWriterLock


def is_text(name: Any) -> bool:
    """Whether ``name`` keys the native registries as it is (a str that is valid text)."""
    if not isinstance(name, str):
        return False
    if name.isascii():
        return True
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


class _Key:
    """One name's key; the name keeps it while a lock object of that name refers to it."""

    __slots__ = ("__weakref__", "text")

    def __init__(self, text: str) -> None:
        self.text = text


class ObjectNames:
    """The keys of the names in use of one namespace, and that namespace's own registry."""

    def __init__(self) -> None:
        self.registry = _native.LockRegistry()
        self._keys: weakref.WeakValueDictionary[Any, _Key] = weakref.WeakValueDictionary()
        self._rwlocks: weakref.WeakValueDictionary[Any, ReaderWriterLock] = (
            weakref.WeakValueDictionary()
        )
        self._mutex = threading.Lock()
        self._count = itertools.count()

    def key(self, name: Any) -> _Key:
        with self._mutex:
            key = self._keys.get(name)  # unhashable names raise TypeError, as in oslo
            if key is None:
                key = self._keys[name] = _Key(str(next(self._count)))
            return key

    def rwlock(self, name: Any) -> ReaderWriterLock:
        with self._mutex:
            rw = self._rwlocks.get(name)
            if rw is None:
                rw = self._rwlocks[name] = ReaderWriterLock()
            return rw


class ObjectLock:
    """The in-process lock of a name that is not plain text (``with`` as ``lock()`` gives)."""

    __slots__ = ("_blocking", "_key", "_lock", "_name", "_timeout", "_write")

    def __init__(
        self,
        names: ObjectNames,
        name: Any,
        fair: bool,
        blocking: bool = True,
        timeout: Optional[float] = None,
    ) -> None:
        self._name = name
        self._blocking = blocking
        self._timeout = timeout
        self._write: Optional[ReaderWriterLock] = names.rwlock(name) if fair else None
        self._key = None if fair else names.key(name)
        self._lock = None if self._key is None else names.registry.get(self._key.text)

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        if self._write is not None:
            return self._write.acquire_write(blocking, timeout)
        assert self._lock is not None
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        if self._write is not None:
            self._write.release_write()
        else:
            assert self._lock is not None
            self._lock.release()

    def __enter__(self) -> ObjectLock:
        if not self.acquire(self._blocking, self._timeout):
            if self._timeout is None:
                raise AcquireLockFailedException(self._name)
            raise LockTimeout(self._name, self._timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


#: The namespace of the process-wide in-process locks (``lock(name)``, ``internal_lock``).
PROCESS = ObjectNames()


class Container:
    """A ``Semaphores``-shaped view of a namespace, for the composed (layered) lock."""

    def __init__(self, names: ObjectNames, fair: bool) -> None:
        self._names = names
        self._fair = fair

    def get(self, name: Any) -> ObjectLock:
        return ObjectLock(self._names, name, self._fair)


def file_name_for(lock_dir: str, name: str, prefix: Optional[str]) -> str:
    """The lock file of a name with lone surrogates: oslo's rule on the file-system bytes the
    name stands for, validated like any other name."""
    stand_in = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    _native.lock_file_path(lock_dir, stand_in, prefix)
    file_name = name.replace(os.sep, "_")
    if prefix:
        file_name = prefix + ("" if prefix.endswith("-") else "-") + file_name
    return os.path.join(lock_dir, file_name)
