"""A child process for the Ceph lock tests (ferrolock's RbdLock/RadosLock, or python-rbd).

ceph_child.py hold KIND CONF ID POOL NAME [LEASE]
    KIND rbd, rados or pyrbd (python-rbd, run with the system python). Takes the lock
    (blocking), prints "ACQUIRED <client address>", then obeys stdin lines:
    "check" -> "OWNER True|False"; "release" -> "RELEASED" or "LOST <reason>";
    "again" -> a new lock object on the same name, non-blocking: "AGAIN True|False".
    EOF: release (if held) and exit. on_lost prints "ONLOST <reason>".
ceph_child.py try KIND CONF ID POOL NAME
    One non-blocking try: "TRY True|False <seconds>" (released at once).
ceph_child.py work CONF ID POOL NAME COUNTER LOG ITERATIONS
    Two threads, each ITERATIONS times: under the lock (blocking), read COUNTER, write it +1
    and append "start end pid" to LOG. Prints "DONE".
"""

from __future__ import annotations

import os
import sys
import threading
import time


def make(kind: str, conf: str, rid: str, pool: str, name: str, lease: float = 5.0):
    if kind == "pyrbd":
        return PyRbd(conf, rid, pool, name)
    import ferrolock

    def on_lost(reason: str) -> None:
        print("ONLOST", reason, flush=True)

    if kind == "rados":
        return ferrolock.RadosLock(
            pool, name, conffile=conf, rados_id=rid, lease=lease, on_lost=on_lost
        )
    return ferrolock.RbdLock(pool, name, conffile=conf, rados_id=rid, on_lost=on_lost)


class PyRbd:
    """The class services write today over python-rbd (connect per use)."""

    def __init__(self, conf: str, rid: str, pool: str, name: str) -> None:
        import rados
        import rbd

        self.rbd = rbd
        self.cluster = rados.Rados(conffile=conf, rados_id=rid)
        self.cluster.connect()
        self.io = self.cluster.open_ioctx(pool)
        try:
            rbd.RBD().create(self.io, name, 4 << 20, features=5)
        except rbd.ImageExists:
            pass
        self.image = rbd.Image(self.io, name)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self.image.lock_acquire(self.rbd.RBD_LOCK_MODE_EXCLUSIVE)
                return True
            except (self.rbd.ReadOnlyImage, self.rbd.ImageBusy):
                if not blocking or (deadline is not None and time.monotonic() > deadline):
                    return False
                time.sleep(0.05)

    def release(self) -> None:
        self.image.lock_release()

    def is_still_owner(self) -> bool:
        return bool(self.image.is_exclusive_lock_owner())

    def client_address(self) -> str:
        return str(self.cluster.get_addrs()) if hasattr(self.cluster, "get_addrs") else "?"


def hold(kind: str, conf: str, rid: str, pool: str, name: str, lease: float) -> None:
    lock = make(kind, conf, rid, pool, name, lease)
    lock.acquire(True, 60)
    addr = lock.client_address() if hasattr(lock, "client_address") else "-"
    print("ACQUIRED", addr, flush=True)
    held = True
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "check":
            print("OWNER", lock.is_still_owner(), flush=True)
        elif cmd == "release":
            held = False
            try:
                lock.release()
                print("RELEASED", flush=True)
            except Exception as e:
                print("LOST", type(e).__name__, e, flush=True)
        elif cmd == "again":
            other = make(kind, conf, rid, pool, name, lease)
            got = other.acquire(True, 30)
            print("AGAIN", got, flush=True)
            if got:
                other.release()
    if held:
        lock.release()


def try_once(kind: str, conf: str, rid: str, pool: str, name: str) -> None:
    lock = make(kind, conf, rid, pool, name)
    t = time.monotonic()
    got = lock.acquire(False)
    print("TRY", got, f"{time.monotonic() - t:.3f}", flush=True)
    if got:
        lock.release()


def work(conf: str, rid: str, pool: str, name: str, counter: str, log: str, n: int) -> None:
    import ferrolock

    lock = ferrolock.RbdLock(pool, name, conffile=conf, rados_id=rid, blocking=True, timeout=60)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(n):
                with lock:
                    start = time.time()
                    with open(counter) as f:
                        value = int(f.read() or 0)
                    time.sleep(0.002)
                    with open(counter, "w") as f:
                        f.write(str(value + 1))
                    with open(log, "a") as f:
                        f.write(f"{start} {time.time()} {os.getpid()}\n")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    print("DONE", flush=True)


def main() -> None:
    a = sys.argv[1:]
    if a[0] == "hold":
        hold(a[1], a[2], a[3], a[4], a[5], float(a[6]) if len(a) > 6 else 5.0)
    elif a[0] == "try":
        try_once(a[1], a[2], a[3], a[4], a[5])
    elif a[0] == "work":
        work(a[1], a[2], a[3], a[4], a[5], a[6], int(a[7]))


if __name__ == "__main__":
    main()
