"""Block on a busy lock in the main thread until SIGINT arrives.

Prints ``WAITING`` just before blocking, ``BLOCKED`` once a thread of this process
holds the lock and the main thread is seen queued on it (the native ``_waiters()`` test
hook; waits for another process are seen from outside, in /proc/locks), ``KI <monotonic>`` when
KeyboardInterrupt is raised, then a ``REPORT {json}`` describing what this
process still holds, and finally waits for stdin EOF before exiting (so the
test can check from outside that nothing is held while this process lives).

Kinds whose holder is another process: ext-lock, ext-lock-timeout,
ext-lockutils, filelock.  Kinds held by a thread of this process: internal,
internal-lock-obj, internal-fair, semaphore, synchronized, filelock-thread.
"""

import argparse
import json
import os
import sys
import threading
import time

import ferrolock
from ferrolock import lockutils


def fd_locks() -> list:
    out = []
    base = "/proc/self/fdinfo"
    for fd in os.listdir(base):
        try:
            with open(os.path.join(base, fd)) as f:
                out += [line.strip() for line in f if line.startswith("lock:")]
        except OSError:
            pass
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--kind", required=True)
    p.add_argument("--name", default="intr")
    p.add_argument("--lock-path")
    p.add_argument("--path")
    a = p.parse_args()
    name, lp = a.name, a.lock_path

    release_holder = threading.Event()
    holder_has_it = threading.Event()
    holder_thread = None

    def hold(cm):
        with cm:
            holder_has_it.set()
            release_holder.wait()

    def start_holder(cm):
        nonlocal holder_thread
        holder_thread = threading.Thread(target=hold, args=(cm,), daemon=True)
        holder_thread.start()
        assert holder_has_it.wait(10)

    # A fresh probe object per look: a kept one would count as a registry entry in use.
    probes = {
        "filelock-thread": lambda: ferrolock.FileLock(a.path),
        "internal": lambda: ferrolock.InternalLock(name),
        "internal-lockutils": lambda: ferrolock.InternalLock(name),
        "internal-fair": lambda: lockutils.lock(name, fair=True),
        "internal-lock-obj": lambda: ferrolock.InternalLock(name),
        "internal-lock-obj-timeout": lambda: ferrolock.InternalLock(name),
        "semaphore": lambda: ferrolock.Semaphore(name, 1),
        "synchronized": lambda: ferrolock.InternalLock(name),
    }

    def say_when_blocked(make_probe):
        deadline = time.monotonic() + 30
        while make_probe()._waiters() < 1:
            if time.monotonic() > deadline:
                return
            time.sleep(0.002)
        print("BLOCKED", flush=True)

    k = a.kind
    if k == "ext-lock":

        def wait():
            return ferrolock.lock(name, external=True, lock_path=lp).__enter__()
    elif k == "ext-lock-timeout":

        def wait():
            return ferrolock.lock(name, external=True, lock_path=lp, timeout=60).__enter__()
    elif k == "ext-lockutils":

        def wait():
            return lockutils.lock(name, external=True, lock_path=lp).__enter__()
    elif k == "filelock":

        def wait():
            return ferrolock.FileLock(a.path).acquire()
    elif k == "filelock-thread":
        start_holder(ferrolock.FileLock(a.path))

        def wait():
            return ferrolock.FileLock(a.path).acquire()
    elif k == "internal":
        start_holder(ferrolock.lock(name))

        def wait():
            return ferrolock.lock(name).__enter__()
    elif k == "internal-lockutils":
        start_holder(lockutils.lock(name))

        def wait():
            return lockutils.lock(name).__enter__()
    elif k == "internal-fair":
        start_holder(ferrolock.lock(name, fair=True))

        def wait():
            return ferrolock.lock(name, fair=True).__enter__()
    elif k == "internal-lock-obj":
        start_holder(ferrolock.InternalLock(name))

        def wait():
            return ferrolock.InternalLock(name).acquire()
    elif k == "internal-lock-obj-timeout":
        start_holder(ferrolock.InternalLock(name))

        def wait():
            return ferrolock.InternalLock(name).acquire(timeout=60)
    elif k == "semaphore":
        start_holder(ferrolock.Semaphore(name, 1))

        def wait():
            return ferrolock.Semaphore(name, 1).acquire()
    elif k == "synchronized":
        start_holder(ferrolock.lock(name))

        @ferrolock.synchronized(name)
        def f():
            return "ran"

        wait = f
    else:
        print(f"unknown kind {k}", file=sys.stderr)
        return 2

    print("WAITING", flush=True)
    watcher = None
    if k in probes:
        watcher = threading.Thread(target=say_when_blocked, args=(probes[k],), daemon=True)
        watcher.start()
    try:
        r = wait()
        print(f"ACQUIRED-UNEXPECTEDLY {r!r}", flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"KI {time.monotonic()}", flush=True)

    if watcher is not None:
        watcher.join(10)
    report = {"fd_locks": fd_locks()}
    if holder_thread is not None:
        release_holder.set()
        holder_thread.join(10)
        report["holder_joined"] = not holder_thread.is_alive()
        # Nothing leaked: the lock is free for this process now.
        if k in ("internal", "internal-fair", "synchronized"):
            with (
                ferrolock.lock(name, blocking=False)
                if k != "internal-fair"
                else ferrolock.lock(name, fair=True)
            ):
                report["reacquired"] = True
        elif k == "internal-lockutils":
            with lockutils.lock(name, blocking=False):
                report["reacquired"] = True
        elif k.startswith("internal-lock-obj"):
            lk = ferrolock.InternalLock(name)
            report["reacquired"] = lk.acquire(blocking=False)
            if report["reacquired"]:
                lk.release()
        elif k == "semaphore":
            s = ferrolock.Semaphore(name, 1)
            report["reacquired"] = s.acquire(blocking=False)
            if report["reacquired"]:
                s.release()
        elif k == "filelock-thread":
            fl = ferrolock.FileLock(a.path)
            report["reacquired"] = fl.acquire(blocking=False)
            if report["reacquired"]:
                fl.release()
        report["fd_locks_after"] = fd_locks()
    # Drop every reference this script holds to lock objects (a live object may count
    # as "in use"), then ask the registry whether anything is left.
    import gc

    lk = s = fl = wait = f = holder_thread = watcher = None
    gc.collect()
    report["registry_size"] = ferrolock.registry_size()
    print("REPORT " + json.dumps(report), flush=True)
    sys.stdin.read()
    print("EXIT", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
