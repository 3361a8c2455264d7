"""Ceph coordination backends by URL, for the scheme registry of ``ferrolock.coordination``.

- ``rbd://POOL[/NAMESPACE]?conf=PATH&id=CLIENT[&cluster=NAME][&connect_timeout=S]``: each
  lock name is the managed exclusive lock of one RBD image (created on first use; names are
  made valid image names, long or unusual ones hashed: same name, same image).
- ``rados://POOL[/NAMESPACE]?conf=PATH&id=CLIENT[&lease=S]``: each lock name is a librados
  object lock with a lease renewed while held (any name, no image per lock).

Operators: ``python -m ferrolock.coordination_ceph holders URL NAME`` lists the owners and
whether each still has a live watch; ``... break URL NAME [--force]`` breaks a stale owner
(``rbd_lock_break``, which blocklists that client for an hour), refusing without ``--force``
while the owner still has a live watch.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union
from urllib.parse import parse_qs, unquote, urlsplit

from ferrolock.rbd import RadosLock, RbdLock

SCHEMES = ("rbd", "rados")
_IMAGE_SAFE = re.compile(r"[^A-Za-z0-9._-]")
# librbd accepts longer names, but short ones keep `rbd ls` readable and stay far from limits.
_MAX_IMAGE_NAME = 64
IMAGE_PREFIX = "lock."


@dataclass(frozen=True)
class CephTarget:
    scheme: str
    pool: str
    namespace: Optional[str]
    conffile: Optional[str]
    rados_id: Optional[str]
    cluster: str
    connect_timeout: float
    lease: float


def parse_url(url: str) -> CephTarget:
    """Parse an ``rbd://`` or ``rados://`` URL; ValueError names what is wrong (no secret
    ever appears in a URL: the key comes from the keyring the conffile names)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"not a Ceph backend URL (rbd:// or rados://): {url!r}")
    pool = unquote(parts.netloc)
    path = unquote(parts.path).strip("/")
    if not pool:
        raise ValueError(f"{parts.scheme}:// needs a pool: {parts.scheme}://POOL[/NAMESPACE]")
    if "/" in path:
        raise ValueError(f"too many path parts in {url!r}: expected POOL[/NAMESPACE]")
    q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(q) - {"conf", "id", "cluster", "connect_timeout", "lease"}
    if unknown:
        raise ValueError(f"unknown {parts.scheme}:// parameter(s): {', '.join(sorted(unknown))}")
    try:
        connect_timeout = float(q.get("connect_timeout", 10))
        lease = float(q.get("lease", 30))
    except ValueError:
        raise ValueError("connect_timeout and lease must be numbers of seconds") from None
    return CephTarget(
        scheme=parts.scheme,
        pool=pool,
        namespace=path or None,
        conffile=q.get("conf") or None,
        rados_id=q.get("id") or None,
        cluster=q.get("cluster") or "ceph",
        connect_timeout=connect_timeout,
        lease=lease,
    )


def image_name(lock_name: str) -> str:
    """The image that carries lock ``lock_name``: readable when the name is simple, hashed
    (with a readable prefix) otherwise; the same name always maps to the same image."""
    if not lock_name:
        raise ValueError("empty lock name")
    safe = _IMAGE_SAFE.sub("_", lock_name)
    if safe == lock_name and len(IMAGE_PREFIX) + len(safe) <= _MAX_IMAGE_NAME:
        return IMAGE_PREFIX + safe
    digest = hashlib.sha256(lock_name.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    keep = _MAX_IMAGE_NAME - len(IMAGE_PREFIX) - len(digest) - 1
    return f"{IMAGE_PREFIX}{safe[:keep]}-{digest}"


CephLock = Union[RbdLock, RadosLock]


class CephBackend:
    """``rbd://`` and ``rados://`` for ``ferrolock.coordination`` (registered there by scheme).
    The cluster connection is shared per process, so ``get_lock`` per call is cheap."""

    def __init__(self, url: str, member_id: bytes) -> None:
        # Parse now: a malformed URL fails at start() with a ValueError, not at the first lock.
        self.target = parse_url(url)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def get_lock(self, name: str) -> Any:
        from ferrolock.coordination._locks import NativeToozLock

        return NativeToozLock(name, make_lock(self.target, name))

    def remove_lock(self, pattern: str) -> None:
        # Images and objects are reused by the next lock of the name; nothing to clean up.
        pass


def make_lock(
    url: Union[str, CephTarget],
    name: str,
    *,
    blocking: bool = True,
    timeout: Optional[float] = None,
    on_lost: Optional[Callable[[str], object]] = None,
) -> CephLock:
    """The lock ``name`` on the backend ``url``."""
    t = parse_url(url) if isinstance(url, str) else url
    if t.scheme == "rbd":
        return RbdLock(
            t.pool,
            image_name(name),
            conffile=t.conffile,
            rados_id=t.rados_id,
            cluster=t.cluster,
            namespace=t.namespace,
            blocking=blocking,
            timeout=timeout,
            on_lost=on_lost,
            connect_timeout=t.connect_timeout,
        )
    return RadosLock(
        t.pool,
        name,
        conffile=t.conffile,
        rados_id=t.rados_id,
        cluster=t.cluster,
        namespace=t.namespace,
        lease=t.lease,
        blocking=blocking,
        timeout=timeout,
        on_lost=on_lost,
        connect_timeout=t.connect_timeout,
    )


def holders(url: str, name: str) -> list[dict[str, object]]:
    """Who holds lock ``name``: ``address`` and ``alive`` (rbd: a live watch) per holder."""
    lock = make_lock(url, name)
    if isinstance(lock, RbdLock):
        return [{"address": a, "alive": alive} for a, alive in lock.owners_alive()]
    return [
        {"address": addr, "client": client, "cookie": cookie, "alive": None}
        for client, cookie, addr in lock.lockers()
    ]


def break_lock(url: str, name: str, *, force: bool = False) -> list[str]:
    """Break the current holder(s) of ``name``; returns what was broken. An rbd owner with a
    live watch is refused unless ``force`` (breaking blocklists it: that client's every call
    fails from then on)."""
    lock = make_lock(url, name)
    broken: list[str] = []
    if isinstance(lock, RbdLock):
        for addr, alive in lock.owners_alive():
            if alive and not force:
                raise RuntimeError(
                    f"owner {addr} still has a live watch (it is running); breaking its lock "
                    "blocklists that client: use --force if you are sure"
                )
            if lock.break_lock(addr):
                broken.append(addr)
        return broken
    for client, cookie, addr in lock.lockers():
        if lock.break_lock(client, cookie):
            broken.append(f"{client} at {addr}")
    return broken


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ferrolock.coordination_ceph")
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("holders", help="show the holders of a lock")
    h.add_argument("url")
    h.add_argument("name")
    b = sub.add_parser("break", help="break a stale holder's lock")
    b.add_argument("url")
    b.add_argument("name")
    b.add_argument("--force", action="store_true", help="also break an owner that is alive")
    a = p.parse_args(argv)
    try:
        if a.cmd == "holders":
            rows = holders(a.url, a.name)
            if not rows:
                print(f"{a.name}: free")
            for r in rows:
                alive = {True: "live watch", False: "NO live watch (stale)", None: "lease"}[
                    r["alive"]  # type: ignore[index]
                ]
                print(f"{a.name}: held by {r['address']} ({alive})")
            return 0
        done = break_lock(a.url, a.name, force=a.force)
        print(f"{a.name}: broke {', '.join(done)}" if done else f"{a.name}: nothing to break")
        return 0
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
