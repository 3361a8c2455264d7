"""``--backend rbd://...`` or ``rados://...`` for ``ferrolock run``: the lock is an RBD image's
exclusive lock or a librados object lock (see ``ferrolock.coordination_ceph``)."""

from __future__ import annotations

import argparse
from typing import Any, Optional, Sequence

from ferrolock.cli._common import EX_CONFIG, err
from ferrolock.cli._mysql import run_under_server_lock

SCHEMES = ("rbd", "rados")


def is_ceph(url: Optional[str]) -> bool:
    return bool(url) and str(url).split("://", 1)[0].lower() in SCHEMES


def run_with_ceph(args: argparse.Namespace, command: Sequence[str], run_child: Any) -> int:
    from ferrolock.coordination_ceph import make_lock

    try:
        lock = make_lock(args.backend, args.name, blocking=not args.no_wait, timeout=args.timeout)
    except ValueError as exc:
        err(str(exc))
        return EX_CONFIG
    # The lock's own exception names the owners (their client addresses).
    return run_under_server_lock(lock, args, command, run_child, lambda exc: f": {exc}")
