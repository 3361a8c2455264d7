"""``--backend mysql://...`` for ``ferrolock run`` and ``ferrolock holders``: the lock lives on a
MySQL/MariaDB server (``GET_LOCK``) instead of in a lock file. The URL's password is never
printed."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Optional, Sequence

from ferrolock.cli._common import EX_CONFIG, EX_INTERRUPTED, EX_TEMPFAIL, err

EX_UNAVAILABLE = 69  # sysexits: the lock server cannot be reached or refused us

SCHEMES = ("mysql", "mysql+pymysql")


def is_mysql(url: Optional[str]) -> bool:
    return bool(url) and str(url).split("://", 1)[0].lower() in SCHEMES


def describe_holder(holder: Optional[dict[str, Any]]) -> str:
    if not holder:
        return ""
    who = f"{holder.get('user') or '?'}@{holder.get('host') or '?'}"
    return f", held by connection {holder['connection_id']} ({who})"


def run_with_mysql(args: argparse.Namespace, command: Sequence[str], run_child: Any) -> int:
    from ferrolock import MySQLLock

    try:
        lock = MySQLLock(args.backend, args.name, blocking=not args.no_wait, timeout=args.timeout)
    except ValueError as exc:
        err(str(exc))
        return EX_CONFIG
    return run_under_server_lock(
        lock, args, command, run_child, lambda _: f" on {lock.url}{_holder_text(lock)}"
    )


def run_under_server_lock(
    lock: Any,
    args: argparse.Namespace,
    command: Sequence[str],
    run_child: Any,
    where: Callable[[BaseException], str],
) -> int:
    """Run ``command`` holding ``lock`` (a MySQL or Ceph lock object with ``with`` semantics);
    ``where(exc)`` says where the lock is and who holds it, for the busy and timeout messages."""
    from ferrolock import LockBackendError, LockLost
    from ferrolock.exceptions import AcquireLockFailedException, LockTimeout

    try:
        lock.__enter__()
    except LockTimeout as exc:
        err(
            f"timed out after {args.timeout:g} s waiting for lock {args.name!r}{where(exc)}; "
            f"{command[0]} was not run"
        )
        return EX_TEMPFAIL
    except AcquireLockFailedException as exc:
        err(f"lock {args.name!r} is busy{where(exc)}; {command[0]} was not run")
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


def _holder_text(lock: Any) -> str:
    try:
        return describe_holder(lock.holder())
    except Exception:  # only makes a message nicer
        return ""


def holders_on_mysql(url: str, names: Sequence[str], as_json: bool) -> int:
    from ferrolock import LockBackendError, MySQLLock

    if not names:
        err("holders --backend mysql://... needs the lock NAMEs to look up")
        return 2
    rows: list[dict[str, Any]] = []
    shown = url
    try:
        for name in names:
            lock = MySQLLock(url, name)
            rows.append({"name": name, "server_name": lock.server_name, "holder": lock.holder()})
            shown = lock.url
    except ValueError as exc:
        err(str(exc))
        return EX_CONFIG
    except LockBackendError as exc:
        err(f"cannot ask the lock server: {exc}")
        return EX_UNAVAILABLE
    if as_json:
        print(json.dumps({"backend": shown, "locks": rows}, indent=2))
        return 0
    print(f"backend: {shown}")
    table = [("NAME", "STATE", "CONNECTION", "USER@HOST")]
    for r in rows:
        h = r["holder"]
        table.append(
            (
                str(r["name"]),
                "held" if h else "free",
                str(h["connection_id"]) if h else "",
                f"{h.get('user') or '?'}@{h.get('host') or '?'}" if h else "",
            )
        )
    widths = [max(len(t[i]) for t in table) for i in range(3)]
    for t in table:
        print("  ".join([*(c.ljust(w) for c, w in zip(t, widths)), t[3]]).rstrip())
    return 0
