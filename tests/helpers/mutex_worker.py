"""Worker for the mutual-exclusion suite (one real process per worker).

Waits for the go-file, then ``iters`` times: takes the external lock, records
perf_counter_ns() right after acquiring, does a read-modify-write of the
counter file, records perf_counter_ns() right before releasing.  Writes its
intervals (one ``start end`` pair per line) to ``--log`` and prints ``DONE``.
perf_counter_ns is CLOCK_MONOTONIC on Linux, so values compare across processes.
"""

import argparse
import os
import sys
import threading
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--impl", choices=["ferrolock", "ferrolock-lockutils", "oslo"], default="ferrolock"
    )
    p.add_argument("--name", required=True)
    p.add_argument("--lock-path", required=True)
    p.add_argument("--counter", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--go", required=True)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()

    if a.impl == "ferrolock":
        import ferrolock as mod
    elif a.impl == "ferrolock-lockutils":
        from ferrolock import lockutils as mod
    else:
        from oslo_concurrency import lockutils as mod

    intervals: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        mine = []
        try:
            for _ in range(a.iters):
                with mod.lock(a.name, external=True, lock_path=a.lock_path):
                    t0 = time.perf_counter_ns()
                    with open(a.counter, "r+") as f:
                        v = int(f.read() or "0")
                        f.seek(0)
                        f.write(str(v + 1))
                        f.truncate()
                    t1 = time.perf_counter_ns()
                mine.append((t0, t1))
        except BaseException as e:  # reported below
            errors.append(e)
        intervals.extend(mine)

    print("READY", flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(a.go):
        if time.monotonic() > deadline:
            print("no go file", file=sys.stderr)
            return 3
        time.sleep(0.001)

    threads = [threading.Thread(target=run) for _ in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(a.log, "w") as f:
        for t0, t1 in intervals:
            f.write(f"{t0} {t1}\n")
    if errors:
        print(f"ERROR {errors!r}", file=sys.stderr, flush=True)
        return 1
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
