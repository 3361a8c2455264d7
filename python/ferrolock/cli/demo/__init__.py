"""``ferrolock demo``: the nova-compute "flatten" story, runnable with no server.

Several nova-compute hosts share one Ceph clone image.  On a periodic timer each host wakes up and
tries to flatten it (copy the parent's data into the clone) under one lock.  Hosts configured to
wait block on the lock (with a timeout); the others try once and skip: "image is being flattened
by another host, skipping".  Every flatten appends its [start, end] interval to a log and bumps a
shared counter with a deliberately racy read-modify-write; at the end the log must show no overlap
and the counter must equal the number of flattens.  ``--no-lock`` drops the lock to show the
check failing.

Exit codes: 0 when the final check passes, 1 when flattens overlapped; 2 for bad usage or an
unusable backend.

The jobs live apart: ``backends`` (URL -> lock; where new backends plug in), ``worker`` (one
host's process), ``timeline`` (the parent collecting events), ``story`` (plan, run, check).
"""

from __future__ import annotations

import argparse

from ferrolock.cli._common import positive_int


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="nova-compute 'flatten' story: workers contend for one lock, then it is checked",
        description="Worker processes compute-1..N wake on a timer and try to flatten a shared "
        "clone image under one lock; some wait for it, some skip. At the end an interval log and "
        "a shared counter prove that no two flattens overlapped.",
        epilog="exit codes: 0 PASS; 1 overlapping flattens; 2 bad usage or backend not available",
    )
    demo.add_argument(
        "--workers",
        type=positive_int,
        default=4,
        metavar="N",
        help="number of worker processes (default 4)",
    )
    demo.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        metavar="R",
        help="timer wake-ups per worker (default 3)",
    )
    demo.add_argument(
        "--backend",
        metavar="URL",
        default="file://",
        help="lock backend: file:///DIR (default: file:// in a fresh temp dir) or "
        "mysql://USER:PASSWORD@HOST[:PORT]/DB",
    )
    demo.add_argument("--seed", type=int, default=None, help="random seed for the jitter")
    demo.add_argument(
        "--no-lock",
        action="store_true",
        help="flatten without taking the lock, to watch the final check fail",
    )
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # Imported here: `ferrolock run` should not pay for multiprocessing and the demo's modules.
    from ferrolock.cli.demo.story import run_demo

    return run_demo(
        workers=args.workers,
        rounds=args.rounds,
        backend=args.backend,
        seed=args.seed,
        use_lock=not args.no_lock,
    )
