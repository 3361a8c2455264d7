"""Greenthread contention under eventlet.monkey_patch() (patched BEFORE ferrolock).

Prints ``OK <json>`` on success.  Any deadlock is caught by the parent's timeout.
"""

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import ferrolock  # noqa: E402
from ferrolock import lockutils  # noqa: E402


def main() -> int:
    mode, lock_path = sys.argv[1], sys.argv[2]
    iters = 50
    state = {"counter": 0, "inside": 0, "peak": 0, "ticks": 0, "ticks_while_waiting": 0}

    if mode == "internal":

        def cm():
            return ferrolock.lock("green")
    elif mode == "internal-lockutils":

        def cm():
            return lockutils.lock("green")
    elif mode == "internal-fair":

        def cm():
            return lockutils.lock("green", fair=True)
    elif mode == "external":

        def cm():
            return ferrolock.lock("green", external=True, lock_path=lock_path)
    elif mode == "external-lockutils":

        def cm():
            return lockutils.lock("green", external=True, lock_path=lock_path)
    elif mode == "synchronized-external":

        @lockutils.synchronized("green", external=True, lock_path=lock_path)
        def crit(fn):
            return fn()

        cm = None
    elif mode == "internal-lock-obj":

        def cm():
            return ferrolock.InternalLock("green")
    else:
        print("bad mode", file=sys.stderr)
        return 2

    def body():
        state["inside"] += 1
        state["peak"] = max(state["peak"], state["inside"])
        v = state["counter"]
        eventlet.sleep(0.001)  # yield to the other greenthread while holding
        state["counter"] = v + 1
        state["inside"] -= 1

    def worker():
        for _ in range(iters):
            if cm is None:
                crit(body)
            else:
                with cm():
                    body()

    stop = [False]

    def ticker():
        while not stop[0]:
            state["ticks"] += 1
            eventlet.sleep(0.005)

    tick = eventlet.spawn(ticker)
    t0 = time.monotonic()
    gts = [eventlet.spawn(worker) for _ in range(2)]
    for g in gts:
        g.wait()
    elapsed = time.monotonic() - t0
    stop[0] = True
    tick.wait()
    state["elapsed"] = elapsed
    state["expected"] = 2 * iters
    print("OK " + json.dumps(state), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
