"""``ferrolock holders``: the lock files of a lock directory and who holds each one now.

Exit codes: 0; 78 (EX_CONFIG, as ``run`` reports an unusable lock directory) if no lock
directory is configured or it cannot be listed.
The /proc introspection itself is ``ferrolock.holders``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Sequence

from ferrolock.cli._common import EX_CONFIG, NO_LOCK_PATH_HINT, configured_lock_path, err
from ferrolock.holders import LockFileStatus, list_holders, process_name


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    holders = sub.add_parser(
        "holders",
        help="list lock files and the processes holding them",
        description="List the lock files in DIR and, for each one held now, the pid(s) holding it "
        "and the lock kind: 'ofd' (ferrolock), 'posix' (fcntl.lockf: oslo.concurrency, "
        "fasteners) or 'flock'.",
    )
    holders.add_argument(
        "--lock-path",
        metavar="DIR",
        help="lock directory (default: [oslo_concurrency] lock_path, i.e. $OSLO_LOCK_PATH)",
    )
    holders.add_argument(
        "--json", action="store_true", help='print {"lock_path": DIR, "locks": [...]} as JSON'
    )
    holders.add_argument(
        "--backend",
        metavar="URL",
        help="mysql://USER:PASSWORD@HOST[:PORT]/DB, rbd://POOL?conf=...&id=... or rados://...: "
        "show who holds the NAMEs there",
    )
    holders.add_argument("names", nargs="*", metavar="NAME", help="lock names (with --backend)")
    holders.set_defaults(func=cmd_holders)


def _format_pids(pids: Sequence[int]) -> str:
    return ", ".join(f"{pid} ({process_name(pid) or '?'})" for pid in pids)


def _print_table(lock_path: str, statuses: Sequence[LockFileStatus]) -> None:
    print(f"lock path: {lock_path}")
    if not statuses:
        print("(no lock files)")
        return
    table = [("NAME", "STATE", "KIND", "WAITERS", "HOLDER PIDS")]
    for s in statuses:
        holders = _format_pids(s.holder_pids) if s.holder_pids else ("?" if s.held else "")
        table.append(
            (
                s.name,
                "held" if s.held else "free",
                s.kind or "",
                str(s.waiters) if s.held or s.waiters else "",
                holders,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        print("  ".join([*cells, row[4]]).rstrip())
    held = sum(1 for s in statuses if s.held)
    print(f"{len(statuses)} lock files, {held} held")


def cmd_holders(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.backend and args.backend.split(":", 1)[0] in ("rbd", "rados"):
        from ferrolock.cli.breaklock import ceph_holders

        if not args.names:
            parser.error("holders --backend rbd://|rados:// needs the lock NAMEs to look up")
        return ceph_holders(args.backend, args.names, args.json)
    if args.backend:
        from ferrolock.cli._mysql import holders_on_mysql, is_mysql

        if is_mysql(args.backend):
            if not args.names:
                parser.error("holders --backend mysql:// needs the lock NAMEs to look up")
            return holders_on_mysql(args.backend, args.names, args.json)
    if args.names or args.backend:
        parser.error("NAMEs and --backend go with mysql://, rbd:// or rados:// backends")
    lock_path = args.lock_path or configured_lock_path()
    if not lock_path:
        err("no lock directory configured")
        err(NO_LOCK_PATH_HINT)
        return EX_CONFIG
    try:
        rows = list_holders(lock_path)
    except OSError as exc:
        err(f"cannot list lock directory {lock_path}: {exc.strerror or exc}")
        return EX_CONFIG
    if args.json:
        payload = {"lock_path": lock_path, "locks": [dataclasses.asdict(r) for r in rows]}
        print(json.dumps(payload, indent=2))
    else:
        _print_table(lock_path, rows)
    return 0
