"""An oslo.concurrency process that needs a lock now and then, next to a busy service.

The busy service runs 2 threads that each take the external lock, hold it ~2 ms and take it
again at once; the oslo process takes the same lock ``--takes`` times (a short hold, then
50 ms of other work) and reports how long each take waited. Run it with ``--busy ferrolock``
and ``--busy oslo`` to compare (issue 8 item 4: no longer than next to a busy oslo service).

    python3 bench/oslo_starvation.py --busy ferrolock --takes 10
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import statistics
import tempfile
import threading
import time
from typing import Any

NAME = "starved"


def busy(
    impl: str,
    lock_dir: str,
    stop: multiprocessing.synchronize.Event,
    ready: multiprocessing.synchronize.Event,
    counts: Any,
) -> None:
    if impl == "ferrolock":
        from ferrolock import lockutils
    else:
        from oslo_concurrency import lockutils  # type: ignore[no-redef]

    def loop(slot: int) -> None:
        n = 0
        while not stop.is_set():
            with lockutils.lock(NAME, external=True, lock_path=lock_dir):
                end = time.perf_counter() + 0.002
                while time.perf_counter() < end:
                    pass
            n += 1
        counts[slot] = n

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    ready.set()
    for t in threads:
        t.join()


def oslo_taker(lock_dir: str, takes: int, out: Any) -> None:
    from oslo_concurrency import lockutils

    waits = []
    for _ in range(takes):
        t0 = time.monotonic()
        with lockutils.lock(NAME, external=True, lock_path=lock_dir):
            waits.append(time.monotonic() - t0)
            time.sleep(0.001)
        time.sleep(0.05)
    out.put(waits)


def run(impl: str, takes: int, limit: float) -> dict[str, Any]:
    lock_dir = tempfile.mkdtemp(prefix="ferrolock-starve-")
    ctx = multiprocessing.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    counts = ctx.Array("l", 2)
    out = ctx.Queue()
    b = ctx.Process(target=busy, args=(impl, lock_dir, stop, ready, counts))
    b.start()
    ready.wait(30)
    t0 = time.monotonic()
    o = ctx.Process(target=oslo_taker, args=(lock_dir, takes, out))
    o.start()
    try:
        waits = out.get(timeout=limit)
        finished = True
    except Exception:
        waits, finished = [], False
    elapsed = time.monotonic() - t0
    stop.set()
    if not finished:
        waits = out.get(timeout=120)
    o.join(30)
    b.join(30)
    shutil.rmtree(lock_dir, ignore_errors=True)
    return {
        "busy": impl,
        "finished_while_busy": finished,
        "seconds": round(elapsed, 2),
        "wait_max_s": round(max(waits), 3),
        "wait_median_s": round(statistics.median(waits), 3),
        "busy_cycles_per_s": round(sum(counts[:]) / elapsed),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--busy", choices=("ferrolock", "oslo"), required=True)
    p.add_argument("--takes", type=int, default=10)
    p.add_argument("--limit", type=float, default=120.0, help="seconds the busy loop runs at most")
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args()
    for _ in range(args.runs):
        print(json.dumps(run(args.busy, args.takes, args.limit)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
