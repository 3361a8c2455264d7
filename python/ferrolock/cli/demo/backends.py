"""Demo backends: a URL names where the demo's lock lives.

:func:`lock_factory` is the single place a new backend (mysql://, rbd://) has to extend: it maps a
URL to a function making a lock object for a name.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["BackendUnavailable", "DemoLock", "LockFactory", "NoLock", "lock_factory", "mask_url"]

_SECRET_WORDS = ("pass", "pwd", "secret", "key", "token", "auth", "credential")


class BackendUnavailable(ValueError):
    """The backend URL names a scheme this build cannot use (yet)."""


class DemoLock(Protocol):
    """What the demo needs from a lock; FileLock and later backends' locks all fit."""

    def acquire(self, blocking: bool = ..., timeout: Optional[float] = ...) -> bool: ...

    def release(self) -> None: ...


LockFactory = Callable[[str], DemoLock]


def mask_url(url: str) -> str:
    """``url`` safe to print: the password (or a lone user part, which may be a token) and
    secret-looking query values replaced by ``***``, the fragment dropped.

    The user information is cut at the *last* ``@`` before the path is parsed, so a password
    holding ``#``, ``/``, ``?`` or ``@`` cannot slip through as part of the host or path.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<unparsable URL>"
    at = rest.rfind("@")
    if at != -1:
        # Everything up to the last '@' counts as user information, whatever it holds. A user
        # name before a password is kept; a lone user part may be a token, so it is masked.
        user, colon, _ = rest[:at].partition(":")
        rest = (f"{user}:***" if colon else "***") + rest[at:]
    try:
        parts = urlsplit(f"{scheme}://{rest}")
    except ValueError:
        return "<unparsable URL>"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, "***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in pairs]
        query = urlencode(masked, safe="*/:")
    return urlunsplit(parts._replace(query=query, fragment=""))


def _file_lock(lock_dir: str, name: str) -> DemoLock:
    from ferrolock import FileLock, lock_file_path

    lock: DemoLock = FileLock(lock_file_path(name, lock_path=lock_dir))
    return lock


def file_backend_dir(url: str) -> Optional[str]:
    """Directory of a ``file://`` URL; None for bare ``file://`` (meaning: a fresh temp dir)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise BackendUnavailable(
            f"file:// URLs need an absolute path (file:///DIR): {mask_url(url)}"
        )
    return parts.path or None


def lock_factory(url: str) -> LockFactory:
    """Map a backend URL to a ``name -> lock`` function.  Extend this for new backends.

    The result is rebuilt from the URL inside each worker process, so it need not be picklable.
    Raises BackendUnavailable for schemes not supported yet.
    """
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise BackendUnavailable(f"bad backend URL {mask_url(url)}: {exc}") from None
    if scheme == "file":
        lock_dir = file_backend_dir(url)
        if lock_dir is None:
            raise BackendUnavailable("file:// needs a directory here; run_demo picks a temp dir")
        return lambda name: _file_lock(lock_dir, name)
    if scheme in ("rbd", "rados"):
        from ferrolock.coordination_ceph import make_lock, parse_url

        try:
            target = parse_url(url)
        except ValueError as exc:
            raise BackendUnavailable(f"bad backend URL {mask_url(url)}: {exc}") from None
        return lambda name: make_lock(target, name)
    if scheme in ("mysql", "mysql+pymysql"):
        from ferrolock import MySQLLock

        try:
            MySQLLock(url, "ferrolock-demo")  # a malformed URL fails here, not in the workers
        except ValueError as exc:
            raise BackendUnavailable(f"{mask_url(url)}: {exc}") from None
        return lambda name: MySQLLock(url, name)
    raise BackendUnavailable(
        f"backend not available yet: {mask_url(url)} "
        "(supported: file://, mysql://, rbd://, rados://)"
    )


class NoLock:
    """Stand-in for --no-lock: always 'acquired', so flattens overlap and the check fails."""

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return True

    def release(self) -> None:
        pass
