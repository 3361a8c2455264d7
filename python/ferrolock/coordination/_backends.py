"""Coordination backends, chosen by the backend URL's scheme.

``file://DIR`` (ferrolock's file locks, on the files tooz's file driver uses) and
``mysql://...`` (``GET_LOCK`` on MySQL/MariaDB) are served natively; other packages plug their
schemes in with ``register_backend`` (the Ceph backend does). Any other scheme is handed to
tooz when it is installed, so a service configured for etcd3, ZooKeeper or Redis keeps working.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
from typing import Any, Callable, Optional, Protocol
from urllib.parse import unquote, urlsplit

from ferrolock.exceptions import LockError

from ._locks import ToozLock, file_lock, mysql_lock

LOG = logging.getLogger("ferrolock.coordination")


class Backend(Protocol):
    """What a coordinator needs from a backend."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def get_lock(self, name: str) -> Any: ...

    def remove_lock(self, pattern: str) -> None: ...


BackendFactory = Callable[[str, bytes], Backend]
_REGISTRY: dict[str, BackendFactory] = {}


class UnsupportedBackend(LockError, ValueError):
    """No backend serves the URL's scheme (and tooz is not installed to try)."""


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Serve ``scheme://`` URLs with ``factory(url, member_id)``."""
    _REGISTRY[scheme.lower()] = factory


def schemes() -> list[str]:
    return sorted(_REGISTRY)


def make_backend(url: str, member_id: bytes) -> Backend:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    factory = _REGISTRY.get(scheme)
    if factory is not None:
        return factory(url, member_id)
    try:
        from tooz import coordination as tooz_coordination
    except ImportError:
        raise UnsupportedBackend(
            f"no coordination backend for {scheme + '://' if scheme else 'this URL'}: ferrolock "
            f"serves {', '.join(s + '://' for s in schemes())}; install tooz for other schemes"
        ) from None
    return ToozBackend(tooz_coordination, url, member_id)


class FileBackend:
    """``file://DIR``: one lock file per name in DIR, as tooz's file driver and cinder lay
    them out (so ferrolock and tooz processes exclude each other on the same names)."""

    def __init__(self, url: str, member_id: bytes) -> None:
        self.directory = os.path.abspath(unquote(urlsplit(url).path) or ".")

    def start(self) -> None:
        os.makedirs(self.directory, exist_ok=True)

    def stop(self) -> None:
        pass

    def path(self, name: str) -> str:
        path = os.path.abspath(os.path.join(self.directory, name))
        if os.path.dirname(path) != self.directory:
            raise ValueError(f"lock name {name!r} would leave the lock directory")
        return path

    def get_lock(self, name: str) -> ToozLock:
        return file_lock(self.path(name), name)

    def remove_lock(self, pattern: str) -> None:
        # As cinder does: most locks clean up on release, lock files do not.
        for file_name in glob.glob(os.path.join(self.directory, pattern)):
            try:
                os.remove(file_name)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    LOG.warning(
                        "Failed to cleanup lock %(name)s: %(exc)s", {"name": file_name, "exc": exc}
                    )


class MySQLBackend:
    """``mysql://USER:PASSWORD@HOST[:PORT]/DB[?options]``: ``GET_LOCK`` on the server.
    Connections are pooled per URL in the process, so ``get_lock`` per call is cheap."""

    def __init__(self, url: str, member_id: bytes) -> None:
        self.url = url
        # Parse now: a malformed URL fails at start() with a ValueError, not at the first lock.
        mysql_lock(url, "ferrolock-url-check")

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def get_lock(self, name: str) -> ToozLock:
        return mysql_lock(self.url, name)

    def remove_lock(self, pattern: str) -> None:
        # Server locks leave nothing behind.
        pass


class ToozBackend:
    """Any other scheme, through tooz (its locks are returned as tooz made them)."""

    def __init__(self, tooz_coordination: Any, url: str, member_id: bytes) -> None:
        self._coordinator = tooz_coordination.get_coordinator(url, member_id)

    def start(self) -> None:
        self._coordinator.start(start_heart=True)

    def stop(self) -> None:
        self._coordinator.stop()

    def get_lock(self, name: str) -> Any:
        return self._coordinator.get_lock(name.encode("utf-8"))

    def remove_lock(self, pattern: str) -> None:
        pass


register_backend("file", FileBackend)
register_backend("mysql", MySQLBackend)
register_backend("mysql+pymysql", MySQLBackend)


def _ceph_backend(url: str, member_id: bytes) -> Backend:
    # Imported on first use: Ceph's libraries load only when a Ceph lock is wanted.
    from ferrolock.coordination_ceph import CephBackend

    return CephBackend(url, member_id)


register_backend("rbd", _ceph_backend)
register_backend("rados", _ceph_backend)


def backend_url(explicit: Optional[str]) -> str:
    """The argument; else oslo.config's ``[coordination] backend_url`` (cinder's option,
    default ``file://$state_path``) when oslo.config is importable and the value resolves;
    else ``$FERROLOCK_COORDINATION_URL``."""
    if explicit:
        return explicit
    configured = _oslo_backend_url()
    if configured:
        return configured
    env = os.environ.get("FERROLOCK_COORDINATION_URL")
    if env:
        return env
    raise UnsupportedBackend(
        "no coordination backend URL: pass start(backend_url=...), set [coordination] "
        "backend_url in the service's configuration, or FERROLOCK_COORDINATION_URL"
    )


def _oslo_backend_url() -> Optional[str]:
    try:
        from oslo_config import cfg
    except ImportError:
        return None
    conf = cfg.CONF
    try:
        conf.register_opts(
            [
                cfg.StrOpt(
                    "backend_url",
                    default="file://$state_path",
                    help="The backend URL to use for distributed coordination.",
                )
            ],
            group="coordination",
        )
    except cfg.DuplicateOptError:
        pass  # the service registered it itself (cinder does)
    try:
        value = conf.coordination.backend_url
    except (cfg.Error, AttributeError, KeyError, ValueError):
        # `$state_path` does not resolve outside a service that defines it.
        return None
    return str(value) if value else None
