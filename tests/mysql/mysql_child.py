"""Child processes for the MySQL lock tests.

mysql_child.py worker URL NAME THREADS ITERS LOG COUNTER
    THREADS threads each take the lock ITERS times; inside, read-increment-write COUNTER
    (a lost update shows as a short count) and append "start end pid tid" to LOG.
mysql_child.py holder URL NAME
    take the lock, print "held CONNECTION_ID", then for each stdin line "check" print
    "owner BOOL" and "release OUTCOME" (ok / lost / error); stdin closed: release, exit.
mysql_child.py green URL NAME GREENTHREADS ITERS
    under eventlet monkey-patching: greenthreads contend on the lock; a ticker greenthread
    counts while they wait; prints "done N TICKS".
"""

from __future__ import annotations

import os
import sys
import threading
import time


def worker(url: str, name: str, threads: int, iters: int, log: str, counter: str) -> None:
    from ferrolock import MySQLLock

    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def run() -> None:
        lock = MySQLLock(url, name)
        for _ in range(iters):
            with lock:
                start = time.monotonic_ns()
                with open(counter) as f:
                    value = int(f.read() or "0")
                with open(counter, "w") as f:
                    f.write(str(value + 1))
                end = time.monotonic_ns()
                os.write(fd, f"{start} {end} {os.getpid()} {threading.get_ident()}\n".encode())

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("done", flush=True)


def holder(url: str, name: str) -> None:
    from ferrolock import LockLost, MySQLLock

    lost: list[str] = []
    lock = MySQLLock(url, name, on_lost=lambda n, reason: lost.append(reason))
    lock.acquire()
    print("held", lock.connection_id, flush=True)
    for line in sys.stdin:
        if line.strip() == "check":
            print("owner", lock.is_still_owner(), flush=True)
            try:
                lock.release()
                print("release ok", flush=True)
            except LockLost as e:
                print("release lost", e, flush=True)
            # on_lost runs on the keepalive thread, which may still be on its way to it
            deadline = time.monotonic() + 10
            while not lost and time.monotonic() < deadline:
                time.sleep(0.01)
            print("on_lost", len(lost), flush=True)
            return
    lock.release()


def green(url: str, name: str, greenthreads: int, iters: int) -> None:
    import eventlet

    eventlet.monkey_patch()
    from ferrolock import MySQLLock

    ticks = [0]
    stop = [False]

    def ticker() -> None:
        while not stop[0]:
            ticks[0] += 1
            eventlet.sleep(0.01)

    inside = [0]
    done = [0]

    def run() -> None:
        lock = MySQLLock(url, name)
        for _ in range(iters):
            with lock:
                inside[0] += 1
                assert inside[0] == 1, "two greenthreads inside"
                eventlet.sleep(0.002)
                inside[0] -= 1
        done[0] += 1

    t = eventlet.spawn(ticker)
    pool = [eventlet.spawn(run) for _ in range(greenthreads)]
    for g in pool:
        g.wait()
    stop[0] = True
    t.wait()
    print("done", done[0], ticks[0], flush=True)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "worker":
        worker(args[0], args[1], int(args[2]), int(args[3]), args[4], args[5])
    elif mode == "holder":
        holder(args[0], args[1])
    elif mode == "green":
        green(args[0], args[1], int(args[2]), int(args[3]))
    else:
        raise SystemExit(f"unknown mode {mode}")
