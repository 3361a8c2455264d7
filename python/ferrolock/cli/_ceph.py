"""``--backend rbd://...`` or ``rados://...`` for ``ferrolock run``: the lock is an RBD image's
exclusive lock or a librados object lock (see ``ferrolock.coordination_ceph``)."""

from __future__ import annotations

import argparse
from typing import Any, Optional, Sequence

from ferrolock.cli._common import EX_CONFIG, EX_INTERRUPTED, EX_TEMPFAIL, err
from ferrolock.cli._mysql import EX_UNAVAILABLE

SCHEMES = ("rbd", "rados")


def is_ceph(url: Optional[str]) -> bool:
    return bool(url) and str(url).split("://", 1)[0].lower() in SCHEMES


def run_with_ceph(args: argparse.Namespace, command: Sequence[str], run_child: Any) -> int:
    from ferrolock import LockBackendError, LockLost
    from ferrolock.coordination_ceph import make_lock
    from ferrolock.exceptions import AcquireLockFailedException, LockTimeout

    try:
        lock = make_lock(args.backend, args.name, blocking=not args.no_wait, timeout=args.timeout)
    except ValueError as exc:
        err(str(exc))
        return EX_CONFIG
    try:
        lock.__enter__()
    except LockTimeout as exc:
        err(f"timed out after {args.timeout:g} s waiting for lock {args.name!r}: {exc}")
        err(f"{command[0]} was not run")
        return EX_TEMPFAIL
    except AcquireLockFailedException as exc:
        err(f"lock {args.name!r} is busy: {exc}; {command[0]} was not run")
        return EX_TEMPFAIL
    except LockBackendError as exc:
        err(f"cannot lock {args.name!r}: {exc}")
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        err(f"interrupted while waiting for lock {args.name!r}")
        return EX_INTERRUPTED
    code: int = run_child(command)
    try:
        lock.release()
    except LockLost as exc:
        err(f"warning: {exc}; {command[0]} may not have run alone")
    except LockBackendError as exc:
        err(f"warning: releasing {args.name!r}: {exc}")
    return code
