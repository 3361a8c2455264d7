"""The Rust core's Python binding (``ferrolock._native``). Use the public ``ferrolock`` API.

Every wait: one try with the GIL held, then (when blocking) waits with the GIL released in
bounded steps that check for signals, so Ctrl-C raises KeyboardInterrupt in the main thread and
leaves nothing held. Under eventlet monkey-patching, waits yield to other greenthreads instead.
``timeout`` is in seconds; ``None`` (or -1) waits forever; it cannot be given with
``blocking=False``. ``with`` uses the ``blocking``/``timeout`` given at construction and raises
AcquireLockFailedException (or LockTimeout) when that does not get the lock.
"""

from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar, Union, type_check_only

from typing_extensions import Self, final

_F = TypeVar("_F", bound=Callable[..., Any])

__version__: str
__all__ = [
    "ExternalLock",
    "FairWriteLock",
    "FileLock",
    "InternalLock",
    "LockRegistry",
    "MySQLLock",
    "RadosLockCore",
    "RbdLockCore",
    "ReaderWriterLock",
    "Semaphore",
    "__version__",
    "after_fork_in_child",
    "cached_lock_files",
    "external_lock",
    "fair_lock",
    "internal_lock",
    "lock",
    "lock_file_path",
    "quiesce_at_exit",
    "registry_size",
    "set_lock_fallback",
    "yield_to_oslo_pollers",
]

@type_check_only
class _NativeLock:
    """What every native lock class has (one shared method block in the binding)."""

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """Take the lock; False when busy (non-blocking) or when ``timeout`` passed. Waits
        release the GIL; Ctrl-C interrupts them and leaves nothing held."""
    def release(self) -> None:
        """Raises LockUsageError when the lock is not held (through this object, for file
        locks)."""
    def __enter__(self) -> Self:
        """Raises AcquireLockFailedException (busy, non-blocking) or LockTimeout."""
    def __call__(self, func: _F) -> _F:
        """Decorator: each call of ``func`` runs inside the lock."""
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class InternalLock(_NativeLock):
    """A named in-process lock: every InternalLock of one name (and fairness) is one lock.
    Any thread may release it (like ``threading.Semaphore(1)``)."""

    def __new__(
        cls,
        name: str,
        fair: bool = False,
        blocking: bool = True,
        timeout: Optional[float] = None,
    ) -> Self: ...
    @property
    def name(self) -> str: ...
    @property
    def fair(self) -> bool: ...
    def locked(self) -> bool: ...
    def _waiters(self) -> int:
        """Test hook: threads waiting for it now (fair: in line; plain: asleep in a step)."""

@final
class Semaphore(_NativeLock):
    """A named counting semaphore with ``permits`` holders at once, FIFO when ``fair``."""

    def __new__(
        cls,
        name: str,
        permits: int,
        fair: bool = False,
        *,
        blocking: bool = True,
        timeout: Optional[float] = None,
    ) -> Self: ...
    @property
    def name(self) -> str: ...
    @property
    def permits(self) -> int: ...
    def available(self) -> int: ...
    def locked(self) -> bool: ...
    def _waiters(self) -> int:
        """Test hook: threads waiting for a permit now (fair: in line; else asleep)."""

@final
class LockRegistry:
    """A namespace of named in-process locks (oslo's ``Semaphores`` container)."""

    def __new__(cls) -> Self: ...
    @staticmethod
    def default() -> LockRegistry:
        """The process-wide registry that ``InternalLock(name)`` uses."""
    def __len__(self) -> int: ...
    def get(
        self, name: str, *, blocking: bool = True, timeout: Optional[float] = None
    ) -> InternalLock: ...

@final
class ReaderWriterLock:
    """Fair reader-writer lock; owners are thread (or greenthread) ids chosen by the caller."""

    def __new__(cls, name: Optional[str] = None) -> Self: ...
    @property
    def name(self) -> Optional[str]: ...
    def acquire_read(
        self, owner: int, blocking: bool = True, timeout: Optional[float] = None
    ) -> bool: ...
    def acquire_write(
        self, owner: int, blocking: bool = True, timeout: Optional[float] = None
    ) -> bool:
        """Raises LockUsageError when ``owner`` holds the read lock (no upgrades)."""
    def release_read(self, owner: int) -> None: ...
    def release_write(self, owner: int) -> None: ...
    def is_reader_id(self, owner: int) -> bool: ...
    def is_writer_id(self, owner: int, check_pending: bool = False) -> bool: ...
    def has_pending_writers(self) -> bool: ...
    def _waiters(self) -> int:
        """Test hook: readers and writers in line now."""
    def held_for(self) -> Optional[str]:
        """``"w"`` while a writer holds it, ``"r"`` while readers do, else None."""

@final
class FairWriteLock(_NativeLock):
    """The write side of fair lock ``name`` held by one thread; see ``fair_lock``."""

    @property
    def name(self) -> str: ...
    def _waiters(self) -> int:
        """Test hook: readers and writers in line for fair lock ``name`` now."""

def fair_lock(name: str, blocking: bool = True, timeout: Optional[float] = None) -> FairWriteLock:
    """oslo's ``lock(name, fair=True)``: arrival order, re-entrant for the entering thread."""

@final
class FileLock(_NativeLock):
    """An inter-process lock on a file: a Linux open-file-description lock, which also
    excludes (and is excluded by) ``fcntl.lockf`` locks on the same file. Missing directories
    and the file are created on first acquire; the file is never deleted on release. Threads of
    one process on the same path exclude each other too. Waits block in the kernel
    (``F_OFD_SETLKW``) with the GIL released. Acquiring raises LockPathError when the
    directory cannot hold the lock file. With ``release_on_drop``, an object dropped while
    holding gives its hold back (fasteners' shape)."""

    def __new__(
        cls,
        path: Union[str, PathLike[str]],
        *,
        blocking: bool = True,
        timeout: Optional[float] = None,
        release_on_drop: bool = False,
    ) -> Self: ...
    @property
    def path(self) -> Path: ...
    @property
    def name(self) -> str: ...
    def locked(self) -> bool:
        """Held by a thread of this process."""
    @property
    def held(self) -> bool:
        """Held through this object (set by the acquire itself, with no Python in between)."""
    def _waiters(self) -> int:
        """Test hook: threads of this process asleep until another thread of it lets go
        (waits for other processes are in the kernel's ``/proc/locks``)."""
    def exists(self) -> bool:
        """Whether the lock file exists (fasteners' ``exists``)."""
    def remove_if_unused(self, remove: Optional[Callable[[str], object]] = None) -> bool:
        """Delete the lock file while holding it, unless someone holds it or oslo processes
        use it (then False); ``remove(path)`` unlinks (default: the system call)."""
    def used_by_oslo(self) -> bool:
        """oslo processes lock this file (one held it with lockf within the last minute)."""

@final
class MySQLLock(_NativeLock):
    """A named lock on a MySQL/MariaDB server (``GET_LOCK``), shared by every process and host
    using the server. Every try, wait, release and check is a network round trip made with the
    GIL released; waits are server-side ``GET_LOCK(name, step)`` steps (Ctrl-C is noticed
    between them). Each hold pins its own pooled connection; a keepalive thread notices a lost
    session within about 2 s (``is_still_owner()`` turns False, ``on_lost(name, reason)`` is
    called once, ``release()`` raises ``LockLost``). Under eventlet a helper thread waits on the
    server for the greenthread, which sleeps until the grant. Connection failures raise
    ``LockBackendError`` (never showing the password); a malformed URL raises ``ValueError``
    naming the bad part."""

    def __new__(
        cls,
        url: str,
        name: str,
        *,
        blocking: bool = True,
        timeout: Optional[float] = None,
        on_lost: Optional[Callable[[str, str], object]] = None,
    ) -> Self: ...
    @property
    def name(self) -> str: ...
    @property
    def server_name(self) -> str:
        """The name the server sees (over 64 characters: a prefix plus a hash)."""
    @property
    def url(self) -> str:
        """The URL with the password masked."""
    @property
    def connection_id(self) -> Optional[int]:
        """The server session holding the lock through this object, if held here."""
    @property
    def connections_opened(self) -> int:
        """Connections this process opened to this URL so far (pooled, reused)."""
    def locked(self) -> bool:
        """Held through this object in this process (no round trip)."""
    def is_still_owner(self) -> bool:
        """Asks the server whether this object's session still holds the lock."""
    def holder(self) -> Optional[dict[str, Any]]:
        """Who holds the name now: ``{"connection_id", "user", "host"}`` or None."""

def internal_lock(
    name: str, blocking: bool = True, timeout: Optional[float] = None
) -> InternalLock:
    """``InternalLock(name, False, blocking, timeout)`` at the cost of a function call."""

def external_lock(
    name: str,
    lock_file_prefix: Optional[str] = None,
    lock_path: Optional[Union[str, PathLike[str]]] = None,
    blocking: bool = True,
    timeout: Optional[float] = None,
) -> ExternalLock:
    """oslo's ``lock(name, external=True)``; ``lock_path=None`` reads the configuration."""

@final
class ExternalLock(_NativeLock):
    """oslo's ``lock(name, external=True)``: the in-process lock ``name``, then its lock file.
    The file is settled at each acquire from the configuration then in force, so a decorator
    applied before ``lock_path`` is configured works once it is. Acquiring raises
    LockPathError, or oslo.config's RequiredOptError, when no usable lock_path is set."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Optional[Path]:
        """The file of the current hold (None when not held or process locking is disabled)."""
    def locked(self) -> bool:
        """The in-process lock of the name is held by a thread of this process."""
    def _waiters(self) -> int:
        """Test hook: threads of this process asleep on the in-process lock of the name."""
    def exists(self) -> bool:
        """Whether the file of the current hold exists (fasteners' ``exists``; False when not
        held)."""

def lock_file_path(
    lock_path: Union[str, PathLike[str]], name: str, lock_file_prefix: Optional[str] = None
) -> Path:
    """oslo's lock file path; raises InvalidLockName or LockPathError for unusable input."""

def lock(
    name: str,
    lock_file_prefix: Optional[str] = None,
    external: bool = False,
    lock_path: Optional[str] = None,
    do_log: bool = True,
    semaphores: Any = None,
    delay: float = 0.01,
    fair: bool = False,
    blocking: bool = True,
    timeout: Optional[float] = None,
) -> Any:
    """oslo.concurrency's ``lock`` plus ``timeout``: a context manager holding lock ``name``
    (``ferrolock.lockutils.lock``). The in-process case is answered natively in one call."""

def set_lock_fallback(
    slow_lock: Callable[..., Any],
    lock_dir: Callable[[Optional[str]], Optional[str]],
    logger: Any,
) -> None:
    """Register the Python ``lock`` for what ``lock`` does not answer natively, the function
    giving external locks' directory (None while process locking is disabled), and the logger
    whose DEBUG level turns on oslo's log lines."""

def registry_size() -> int:
    """Named in-process locks in use now."""

def after_fork_in_child() -> None:
    """Close lock-file descriptors inherited from the parent (registered with
    ``os.register_at_fork``; a fork leaves the parent's locks to the parent)."""

def cached_lock_files() -> int:
    """Lock files with an entry (and usually an open descriptor) in this process."""

def yield_to_oslo_pollers(enabled: bool) -> None:
    """Whether a process that keeps re-taking a lock file leaves it free at times for processes
    that poll it with ``lockf`` (oslo.concurrency/fasteners); on unless
    ``FERROLOCK_OSLO_POLLERS=0``. Turn off where only ferrolock takes these files."""

def quiesce_at_exit() -> None:
    """At interpreter exit (registered with atexit): waits of other threads never take the GIL
    back from now on, and those on their way back get it before finalization starts."""

@final
class RbdLockCore:
    """The managed exclusive lock of one RBD image (librbd loaded on first use)."""

    def __new__(
        cls,
        pool: str,
        name: str,
        conffile: Optional[str] = None,
        rados_id: Optional[str] = None,
        cluster: Optional[str] = None,
        namespace: Optional[str] = None,
        create: bool = True,
        connect_timeout: float = 10.0,
        try_timeout: float = 1.0,
        on_lost: Optional[Callable[[str], object]] = None,
    ) -> RbdLockCore: ...
    @property
    def spec(self) -> str: ...
    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool: ...
    def release(self) -> None: ...
    def is_still_owner(self) -> bool: ...
    def holds(self) -> bool: ...
    def owners(self) -> list[tuple[str, bool]]: ...
    def watchers(self) -> list[tuple[str, int, int]]: ...
    def break_lock(self, owner: str) -> bool: ...
    def client_address(self) -> str: ...

@final
class RadosLockCore:
    """A librados object lock with a lease renewed in the background while held."""

    def __new__(
        cls,
        pool: str,
        name: str,
        conffile: Optional[str] = None,
        rados_id: Optional[str] = None,
        cluster: Optional[str] = None,
        namespace: Optional[str] = None,
        lease: float = 30.0,
        connect_timeout: float = 10.0,
        on_lost: Optional[Callable[[str], object]] = None,
    ) -> RadosLockCore: ...
    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool: ...
    def release(self) -> None: ...
    def is_still_owner(self) -> bool: ...
    def holds(self) -> bool: ...
    def lockers(self) -> list[tuple[str, str, str]]: ...
    def break_lock(self, client: str, cookie: str) -> bool: ...
