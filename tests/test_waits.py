"""Edge cases of waiting: threads that block signals, out-of-range timeouts, exits.

Scenarios that need a waiter to be waiting first say so with a probe (``/proc/locks``
for the kernel, a native lock's ``_waiters()`` test hook for in-process queues), never
with a sleep; a timed wait is checked not to end early, and only loosely not to hang.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ferrolock

from testutil import PATIENCE, blocked_on, run_python

# For scenario scripts run in a fresh interpreter: wait (bounded) until probe() >= n.
_SETTLE = """
def settle(probe, n=1):
    import time
    deadline = time.monotonic() + 10
    while probe() < n:
        assert time.monotonic() < deadline, "no waiter showed up within 10 s"
        time.sleep(0.001)
"""

pytestmark = pytest.mark.timeout(60)


def _holder(path: str) -> subprocess.Popen[str]:
    """A process holding the file lock on ``path`` until its stdin is closed (or killed)."""
    code = (
        "import ferrolock, sys\n"
        "lock = ferrolock.FileLock(sys.argv[1]); lock.acquire()\n"
        "print('held', flush=True); sys.stdin.read(); lock.release()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _end(holder: subprocess.Popen[str]) -> None:
    holder.kill()
    holder.wait()
    for pipe in (holder.stdin, holder.stdout):
        if pipe is not None:
            pipe.close()


def test_timeout_holds_in_a_thread_that_blocks_all_signals(tmp_path: Path) -> None:
    """Worker threads often block every signal; a kernel wait must still end on time."""
    path = str(tmp_path / "lk")
    holder = _holder(path)
    result: list[object] = []

    def worker() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        started = time.monotonic()
        got = ferrolock.FileLock(path).acquire(timeout=0.5)
        result.append((got, time.monotonic() - started))

    try:
        t = threading.Thread(target=worker)
        t.start()
        t.join(PATIENCE)
        assert result, "the wait ignored its timeout"
        got, waited = result[0]
        assert got is False and 0.5 <= waited < PATIENCE  # type: ignore[operator]
    finally:
        _end(holder)


@pytest.mark.parametrize("timeout", [1e20, float("inf")])
def test_a_timeout_out_of_range_is_an_overflow_error(timeout: float) -> None:
    lock = ferrolock.InternalLock("overflow")
    assert lock.acquire()
    try:
        with pytest.raises(OverflowError):
            ferrolock.InternalLock("overflow").acquire(timeout=timeout)
        with pytest.raises(OverflowError):
            ferrolock.lock("overflow", timeout=timeout)
    finally:
        lock.release()


def test_an_idle_semaphore_name_can_be_reused_with_another_size() -> None:
    with ferrolock.Semaphore("resized", 2):
        pass
    with ferrolock.Semaphore("resized", 4) as sem:
        assert sem.permits == 4
    held = ferrolock.Semaphore("resized", 4)
    with held, pytest.raises(ValueError):
        ferrolock.Semaphore("resized", 3)


def test_a_wait_without_queued_signals_left_still_waits_its_timeout(tmp_path: Path) -> None:
    """At RLIMIT_SIGPENDING no wake-up timer can be made; the wait polls instead of failing."""
    path = str(tmp_path / "lk")
    holder = _holder(path)
    code = (
        "import ferrolock, resource, sys, time\n"
        "resource.setrlimit(resource.RLIMIT_SIGPENDING, (0, 0))\n"
        "started = time.monotonic()\n"
        "got = ferrolock.FileLock(sys.argv[1]).acquire(timeout=0.3)\n"
        "print(got, time.monotonic() - started >= 0.3)\n"
    )
    try:
        done = run_python(code, path, timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["False", "True"]
    finally:
        _end(holder)


def test_release_cannot_cut_into_an_acquire_that_waits_for_the_file(tmp_path: Path) -> None:
    """A thread waiting for another process holds the in-process guard but not the lock: a
    stray release must not hand that guard to a third thread, or two would get in at once."""
    path = str(tmp_path / "lk")
    holder = _holder(path)
    got = threading.Event()

    def waiter() -> None:
        lock = ferrolock.FileLock(path)
        if lock.acquire(timeout=60):
            got.set()
            lock.release()

    t = threading.Thread(target=waiter)
    try:
        t.start()
        blocked_on(path)  # the waiter is blocked in the kernel, holding the guard
        with pytest.raises(ferrolock.LockUsageError):
            ferrolock.FileLock(path).release()
        assert not ferrolock.FileLock(path).acquire(blocking=False)
        assert not got.is_set()
        assert holder.stdin is not None
        holder.stdin.close()  # the holder lets go: now the waiter gets it
        assert got.wait(PATIENCE)
    finally:
        _end(holder)
        t.join(PATIENCE)


_EXIT_WITH_WAITERS = (
    _SETTLE
    + """
import sys, threading, time, ferrolock
from ferrolock import lockutils
lock_dir = sys.argv[1]
makers = [
    lambda: lockutils.lock("x"),
    lambda: lockutils.lock("y", fair=True),
    lambda: lockutils.lock("z", external=True, lock_path=lock_dir),
]
held = [make() for make in makers]
for lk in held:
    lk.__enter__()
def wait(make):
    with make():
        pass
for make in makers:
    for _ in range(2):
        threading.Thread(target=wait, args=(make,), daemon=True).start()
for make in makers:
    settle(make()._waiters, 2)
"""
)


def test_the_interpreter_exits_cleanly_while_daemon_threads_wait(tmp_path: Path) -> None:
    """Waiters check for signals between steps; once the interpreter is gone they must not try
    to (which would panic in the extension) but keep waiting until the process ends."""
    for _ in range(5):
        done = run_python(_EXIT_WITH_WAITERS, str(tmp_path), timeout=30)
        assert done.returncode == 0 and done.stderr == "", done.stderr


_EXIT_RIGHT_AFTER_RELEASE = (
    _SETTLE
    + """
import sys, threading, time
from ferrolock import lockutils
kind, lock_dir = sys.argv[1], sys.argv[2]
kw = {"int": {}, "fair": {"fair": True}, "ext": {"external": True, "lock_path": lock_dir}}[kind]
held = lockutils.lock("n", **kw)
held.__enter__()
def wait():
    with lockutils.lock("n", **kw):
        time.sleep(0.5)
threading.Thread(target=wait, daemon=True).start()
settle(lockutils.lock("n", **kw)._waiters)
held.__exit__(None, None, None)
"""
)


@pytest.mark.parametrize("kind", ["int", "fair", "ext"])
def test_a_daemon_waiter_woken_as_the_interpreter_exits_does_not_abort_it(
    tmp_path: Path, kind: str
) -> None:
    """The waiter gets the lock just as the main thread exits: it must not take the GIL back
    during finalization, where CPython would end it by unwinding through the extension."""
    for _ in range(5):
        done = run_python(_EXIT_RIGHT_AFTER_RELEASE, kind, str(tmp_path), timeout=30)
        assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr)


_LATE_ATEXIT_HANDLER = (
    _SETTLE
    + """
import atexit, sys, threading, time
kind, lock_dir = sys.argv[1], sys.argv[2]
def late_handler():  # registered before ferrolock's own handler, so it runs after it
    print("late handler got it:", lock.acquire(timeout=10), flush=True)
atexit.register(late_handler)
exiting = threading.Event()
atexit.register(exiting.set)  # runs after ferrolock's handler, before late_handler
import ferrolock
lock = {
    "fair": lambda: ferrolock.InternalLock("n", fair=True),
    "semaphore": lambda: ferrolock.Semaphore("s", 1),
    "file": lambda: ferrolock.FileLock(lock_dir + "/f"),
}[kind]()
holding = threading.Event()
def holder():
    lock.acquire()
    holding.set()
    exiting.wait(30)  # lets go once the interpreter's exit began
    lock.release()
def waiter():
    with lock:
        time.sleep(30)
threading.Thread(target=holder, daemon=True).start()
assert holding.wait(10)
threading.Thread(target=waiter, daemon=True).start()
settle(lock._waiters)
"""
)


@pytest.mark.parametrize("kind", ["fair", "semaphore", "file"])
def test_a_daemon_waiter_served_during_exit_leaves_the_lock_free(tmp_path: Path, kind: str) -> None:
    """A daemon thread whose wait ends after the interpreter's exit began gives the lock back
    before it stops for good: an exit handler that needs the lock still gets it."""
    done = run_python(_LATE_ATEXIT_HANDLER, kind, str(tmp_path), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "late handler got it: True", done.stderr


_EXIT_AMID_CONTENTION = """
import random, sys, threading, time
from ferrolock import lockutils
kind, lock_dir = sys.argv[1], sys.argv[2]
kw = {"int": {}, "fair": {"fair": True}, "ext": {"external": True, "lock_path": lock_dir}}[kind]
def hammer():
    while True:
        with lockutils.lock("n", **kw):
            pass
for _ in range(4):
    threading.Thread(target=hammer, daemon=True).start()
time.sleep(random.uniform(0.02, 0.1))
"""


@pytest.mark.parametrize("kind", ["int", "fair", "ext"])
def test_the_interpreter_exits_cleanly_amid_daemon_contention(tmp_path: Path, kind: str) -> None:
    """Eight daemon threads keep taking the lock while the main thread exits: none may run
    Python, or take the GIL back, from the extension's frames during finalization."""
    for _ in range(10):
        done = run_python(_EXIT_AMID_CONTENTION, kind, str(tmp_path), timeout=30)
        assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr)
