"""``ferrolock break --backend rbd://...|rados://... NAME``: break a stale holder's lock.

For rbd:// this is ``rbd_lock_break``, which also blocklists (fences) the owner's client for an
hour; it is refused while the owner still has a live watch on the image unless ``--force``.
For rados:// the lock is broken without fencing (the holder learns at its next lease renewal).

Exit codes: 0 (broken, or nothing to break); 1 refused (owner alive, no --force) or the cluster
failed; 78 a backend URL this command does not handle.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from ferrolock.cli._common import EX_CONFIG, err


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "break",
        help="break a stale holder's lock on a Ceph backend",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", required=True, metavar="URL", help="rbd://POOL?... or rados://...")
    p.add_argument("name", metavar="NAME", help="lock name")
    p.add_argument(
        "--force", action="store_true", help="break even an owner that is still alive (fences it)"
    )
    p.set_defaults(func=cmd_break)


def cmd_break(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if urlsplit(args.backend).scheme not in ("rbd", "rados"):
        err("break works on rbd:// and rados:// backends")
        return EX_CONFIG
    from ferrolock.coordination_ceph import break_lock

    try:
        broken = break_lock(args.backend, args.name, force=args.force)
    except (ValueError, RuntimeError, OSError) as exc:
        err(str(exc))
        return 1
    if broken:
        fenced = (
            " (blocklisted: its every call now fails)" if args.backend.startswith("rbd") else ""
        )
        print(f"{args.name}: broke the lock of {', '.join(broken)}{fenced}")
    else:
        print(f"{args.name}: not held, nothing to break")
    return 0


def ceph_holders(url: str, names: list[str], as_json: bool) -> int:
    """``ferrolock holders --backend rbd://...|rados://... NAME...``."""
    import json

    from ferrolock.coordination_ceph import holders

    try:
        rows = {name: holders(url, name) for name in names}
    except (ValueError, OSError) as exc:
        err(str(exc))
        return 1
    if as_json:
        print(json.dumps({"backend_scheme": urlsplit(url).scheme, "locks": rows}, indent=2))
        return 0
    for name, owners in rows.items():
        if not owners:
            print(f"{name}: free")
        for o in owners:
            alive = o["alive"]
            if alive is None:
                state = "lease renewed while alive"
            elif alive:
                state = "live watch"
            else:
                state = "NO live watch: crashed, safe to break"
            print(f"{name}: held by {o['address']} ({state})")
    return 0
