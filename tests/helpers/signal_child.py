"""A signal arrives while the main thread waits for a lock file; the lock is then let go.

Thread A holds the lock file, with a classic POSIX lock taken by this very process (so the main
thread's wait is a kernel wait, visible in /proc/locks as a blocked waiter), or with a
``ferrolock.FileLock`` (the issue's reproduction; the main thread then waits in-process). Once
the main thread is seen waiting, A sends itself SIGINT with ``signal.pthread_kill`` (so the main
thread's wait is not interrupted: the signal is only pending when the lock comes free) and
lets go. The main thread then gets KeyboardInterrupt; still inside its ``except`` block (where a
service restarting on SIGHUP would take the lock again), another process must find the file
free, and this process must take the name again.

Prints one JSON line: REPORT {...}.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable

import ferrolock
from ferrolock import lockutils

NAME = "X"

PROBE = """
import fcntl, sys
fd = open(sys.argv[1], "a")
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("FREE")
except OSError:
    print("BUSY")
"""


def blocked_on(path: str) -> bool:
    """Whether /proc/locks shows a waiter blocked on the file at ``path``."""
    ino = os.stat(path).st_ino
    with open("/proc/locks") as f:
        return any("->" in line and f":{ino} " in line for line in f)


def main_waiting_in_process(main_tid: int) -> bool:
    """The main thread sleeps (a futex wait: ours, or the GIL's between two steps)."""
    try:
        with open(f"/proc/self/task/{main_tid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state == "S"


def other_process_finds_free(path: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, path], capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip() == "FREE"


def enter(kind: str, lock_dir: str, path: str) -> Callable[[], Any]:
    """Start waiting for the lock as ``kind`` does; returns what gives it back if taken."""
    if kind == "external_lock":
        with lockutils.external_lock(NAME, lock_path=lock_dir):
            return lambda: None
    if kind == "external_lock_acquire":
        lk = lockutils.external_lock(NAME, lock_path=lock_dir)
        lk.acquire()
        return lk.release
    if kind == "filelock":
        with ferrolock.FileLock(path):
            return lambda: None
    if kind == "filelock_acquire":
        fl = ferrolock.FileLock(path)
        fl.acquire()
        return fl.release
    kwargs: dict[str, Any] = {"external": True, "lock_path": lock_dir}
    if kind == "debug":
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    elif kind == "semaphores":
        kwargs["semaphores"] = lockutils.Semaphores()
    elif kind == "fair":
        kwargs["fair"] = True
    elif kind == "synchronized":

        @lockutils.synchronized(NAME, **kwargs)
        def f() -> None:
            pass

        f()
        return lambda: None
    else:
        assert kind == "native", kind
    with lockutils.lock(NAME, **kwargs):
        return lambda: None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--kind", required=True)
    p.add_argument("--holder", choices=("posix", "filelock"), default="posix")
    p.add_argument("--lock-path", required=True)
    args = p.parse_args()
    lock_dir = args.lock_path
    path = os.fspath(lockutils._get_lock_path(NAME, None, lock_dir))
    open(path, "a").close()
    main_tid = threading.get_native_id()
    holding = threading.Event()

    def holder() -> None:
        if args.holder == "posix":
            fd = open(path, "a")
            fcntl.lockf(fd, fcntl.LOCK_EX)
            holding.set()
            while not blocked_on(path):
                threading.Event().wait(0.001)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            fcntl.lockf(fd, fcntl.LOCK_UN)
            fd.close()
        else:
            fl = ferrolock.FileLock(path)
            fl.acquire()
            holding.set()
            while not main_waiting_in_process(main_tid):
                threading.Event().wait(0.001)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            fl.release()

    a = threading.Thread(target=holder, daemon=True)
    a.start()
    holding.wait(30)
    report: dict[str, Any] = {}
    try:
        give_back = enter(args.kind, lock_dir, path)
        report["outcome"] = "acquired"
        give_back()
    except KeyboardInterrupt:
        report["outcome"] = "KeyboardInterrupt"
        # Still handling the signal: what a service restarting in place would do next.
        report["free_inside_handler"] = other_process_finds_free(path)
        try:
            with lockutils.lock(NAME, external=True, lock_path=lock_dir, timeout=10):
                report["retake_inside_handler"] = True
        except lockutils.LockTimeout:
            report["retake_inside_handler"] = False
    a.join(30)
    report["free_after"] = other_process_finds_free(path)
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
