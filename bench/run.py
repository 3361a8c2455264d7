"""Benchmark ferrolock.lockutils against oslo_concurrency.lockutils in one run.

    python3 bench/run.py                  # 3 rounds, ~1 s per measurement, a few minutes
    python3 bench/run.py --quick          # smoke run, well under a minute
    python3 bench/run.py --only external  # rows whose id matches a regex
    python3 bench/run.py --list           # row ids

Exit status: 0 if every measurement ran and every correctness check held (a missed performance
target is reported, not fatal), 2 on a correctness failure (overlapping holds, lost updates,
deadlock), 1 if a row crashed or an implementation cannot be imported.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import sys
import tempfile
import time
from typing import Any

import harness
from impls import FLOOR, OSLO, import_error, version
from measure import fs_type

HERE = os.path.dirname(os.path.abspath(__file__))

# Row modules register their rows on import, and the table follows this order. A new backend
# (rows_mysql: ferrolock vs tooz, rows_rbd: vs python-rbd) is one more module here.
ROW_MODULES: tuple[str, ...] = (
    "rows_internal",
    "rows_external",
    "rows_scale",
    "rows_eventlet",
    "rows_mysql",
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, help="rounds per row (default 3, --quick 1)")
    p.add_argument("--quick", action="store_true", help="fast smoke run: short rows, 1 round")
    p.add_argument("--duration", type=float, help="seconds per timed measurement (default 1.0)")
    p.add_argument("--json", default=os.path.join(HERE, "results.json"), help="raw results file")
    p.add_argument("--only", help="regex on row ids: run only matching rows")
    p.add_argument("--skip", help="regex on row ids: leave matching rows out")
    p.add_argument(
        "--impls",
        help="comma-separated implementations to run (default: all the rows name; the "
        "threading.Lock floor rows always run)",
    )
    p.add_argument(
        "--mp-start",
        default="fork",
        choices=["fork", "spawn", "forkserver"],
        help="start method of the contending worker processes",
    )
    p.add_argument("--tmpdir", help="directory for lock files (default: tempfile's)")
    p.add_argument("--list", action="store_true", help="list rows and exit")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for module in ROW_MODULES:
        importlib.import_module(module)
    rows = [
        r
        for r in harness.ROWS
        if (not args.only or re.search(args.only, r.id))
        and not (args.skip and re.search(args.skip, r.id))
    ]
    if args.list:
        for r in harness.ROWS:
            print(f"{r.id:30} {r.title}")
        return 0
    if not rows:
        print("no row left after --only/--skip; see --list", file=sys.stderr)
        return 1

    named = list(dict.fromkeys(i for r in rows for i in r.impls if i != FLOOR))
    impls = [i.strip() for i in args.impls.split(",") if i.strip()] if args.impls else named
    for impl in impls:
        if (err := import_error(impl)) is not None:
            print(
                f"error: cannot import {impl} ({err}).\n"
                f"Build and install ferrolock first, or run one side only: --impls {OSLO}",
                file=sys.stderr,
            )
            return 1

    rounds = args.rounds or (1 if args.quick else 3)
    settings = harness.Settings(
        duration_s=args.duration or (0.2 if args.quick else 1.0),
        quick=args.quick,
        mp_start=args.mp_start,
        tmpdir=args.tmpdir,
    )
    tmp = args.tmpdir or tempfile.gettempdir()
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": {i: version(i) for i in impls},
        "rounds": rounds,
        "duration_s": settings.duration_s,
        "quick": settings.quick,
        "mp_start": settings.mp_start,
        "tmpdir": tmp,
        "tmpdir_fs": fs_type(tmp),
    }
    print(
        f"ferrolock bench: Python {meta['python']}, {meta['cpus']} CPUs, "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + f"; {rounds} round(s) x {settings.duration_s:g} s; lock files on {tmp}"
        f" ({meta['tmpdir_fs']})"
        + ("; quick: scale rows use 20k / 1k names" if settings.quick else ""),
        flush=True,
    )

    results = harness.run_rows(rows, [*impls, FLOOR], settings, rounds)
    checks = harness.evaluate(rows, results)
    print()
    print(harness.render(rows, results, checks))
    print()
    print(harness.summary(results, checks, rows))
    harness.write_json(args.json, harness.to_json(rows, results, checks, meta))
    print(f"raw results: {args.json}")

    if any(f.kind == "correctness" for f in results.failures):
        print("FAILED: a lock let two holders in or lost an update (see above).", file=sys.stderr)
        return 2
    if results.failures:
        print("FAILED: a row crashed (see above).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
