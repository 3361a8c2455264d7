"""One eventlet measurement, run as its own interpreter by rows_eventlet.py.

    python eventlet_child.py IMPL MODE HOLD_MS LOCK_DIR BATCHES

Monkey-patches first (as nova-compute and cinder-volume do), then 20 greenthreads share 200
calls of ``@lockutils.synchronized(name, ...)`` whose body holds the lock for HOLD_MS via
``eventlet.sleep``; a ticker greenthread counts hub turns meanwhile. One warm-up batch, then
BATCHES timed ones. Prints one JSON line: the batch times, the ticker's record and the hold
log check (overlap and lost updates raise, exit status 2).
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from array import array  # noqa: E402
from collections.abc import Callable  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import CorrectnessError  # noqa: E402
from impls import lockutils  # noqa: E402
from measure import HoldLog, check_counter, check_no_overlap, hold_stats  # noqa: E402

GREENTHREADS = 20
CALLS = 200
TICK_S = 0.001


def main() -> int:
    impl, mode, hold_ms, lock_dir, batches = sys.argv[1:6]
    hold = float(hold_ms) / 1000
    kwargs: dict[str, object] = {}
    if mode == "fair":
        kwargs["fair"] = True
    elif mode == "external":
        kwargs.update(external=True, lock_path=lock_dir)
    synchronized = lockutils(impl).synchronized
    state = {"counter": 0, "inside": 0}
    clock = time.perf_counter_ns
    logs = [HoldLog(w, array("q"), array("q"), array("q")) for w in range(GREENTHREADS)]

    def body(log: HoldLog) -> None:
        log.acq.append(clock())
        state["inside"] += 1
        if state["inside"] != 1:
            raise CorrectnessError("two greenthreads inside at once")
        seen = state["counter"]
        eventlet.sleep(hold)  # the others run meanwhile, and must stay out
        state["counter"] = seen + 1
        state["inside"] -= 1
        log.rel.append(clock())

    # As services write it: @synchronized(name, ...) on the function.
    critical: Callable[[HoldLog], None] = synchronized(f"bench-eventlet-{mode}", **kwargs)(body)

    def batch() -> float:
        left = [CALLS]

        def worker(log: HoldLog) -> None:
            while left[0] > 0:
                left[0] -= 1
                log.req.append(clock())
                critical(log)

        t0 = time.perf_counter()
        pool = [eventlet.spawn(worker, logs[w]) for w in range(GREENTHREADS)]
        for gt in pool:
            gt.wait()
        return time.perf_counter() - t0

    done = [False]
    ticks = [0]
    gaps = [0.0]

    def ticker() -> None:
        last = time.perf_counter()
        while not done[0]:
            eventlet.sleep(TICK_S)
            now = time.perf_counter()
            ticks[0] += 1
            gaps[0] = max(gaps[0], now - last)
            last = now

    batch()  # warm-up: first use creates the lock (and its file), lazy imports
    for log in logs:
        del log.req[:], log.acq[:], log.rel[:]
    state["counter"] = 0
    tick = eventlet.spawn(ticker)
    eventlet.sleep(0)
    times = [batch() for _ in range(int(batches))]
    done[0] = True
    tick.wait()
    try:
        check_no_overlap(logs)
        check_counter(state["counter"], logs)
    except CorrectnessError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    stats = hold_stats(logs)
    out = {"times": times, "ticks": ticks[0], "max_tick_gap": gaps[0], "cycles": state["counter"]}
    out["handoff_p50_us"] = stats.get("handoff_p50_us", 0.0)
    out["handoff_p99_us"] = stats.get("handoff_p99_us", 0.0)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
