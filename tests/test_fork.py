"""Locks across fork(): services take locks at start-up, then fork their workers.

A forked child inherits the parent's descriptors; an open-file-description lock belongs to the
shared open file, so a child that reused the parent's cached descriptor would share the
parent's lock instead of competing for it. These tests fork real children with os.fork.
Scenario scripts wait for a waiter to be in place with a probe (``settle``: the native
``_waiters()`` test hook, or a blocked request in ``/proc/locks``), never with a sleep.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ferrolock import lockutils

from testutil import run_python

pytestmark = pytest.mark.timeout(60)

# For scenario scripts: wait (bounded) until probe() >= n; requests blocked on a file.
_PROBES = """
import os, time
def settle(probe, n=1):
    deadline = time.monotonic() + 10
    while probe() < n:
        assert time.monotonic() < deadline, "no waiter showed up within 10 s"
        time.sleep(0.001)
def blocked_on(path):
    st = os.stat(path)
    key = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open("/proc/locks") as f:
        return sum(1 for l in f if l.split()[1:2] == ["->"] and l.split()[6:7] == [key])
"""


def _wait_child(pid: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not finish")


def _fork(body) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = body()
        finally:
            os._exit(code)
    return pid


def test_children_forked_after_use_still_exclude_each_other(tmp_path: Path) -> None:
    lock_dir = str(tmp_path / "locks")
    counter = tmp_path / "counter"
    counter.write_text("0")
    with lockutils.lock("fork", external=True, lock_path=lock_dir):
        pass  # the parent's descriptor is now cached: children must not share it

    def work() -> int:
        for _ in range(400):
            with lockutils.lock("fork", external=True, lock_path=lock_dir):
                n = int(counter.read_text())
                os.sched_yield()
                counter.write_text(str(n + 1))
        return 0

    pids = [_fork(work) for _ in range(3)]
    assert [_wait_child(p) for p in pids] == [0, 0, 0]
    assert int(counter.read_text()) == 3 * 400


def test_parent_lock_held_across_fork_excludes_the_child_and_survives_its_exit(
    tmp_path: Path,
) -> None:
    lock_dir = str(tmp_path / "locks")

    def child_probe() -> int:
        try:
            with lockutils.lock("held", external=True, lock_path=lock_dir, blocking=False):
                return 4
        except lockutils.AcquireLockFailedException:
            return 0

    def outsider_gets_it() -> bool:
        # A fresh interpreter shares no memory or descriptor with us: oslo's kind of lock.
        code = (
            "import fcntl, sys\n"
            "f = open(sys.argv[1], 'a')\n"
            "try:\n"
            "    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "except OSError:\n"
            "    sys.exit(0)\n"
            "sys.exit(4)\n"
        )
        path = os.path.join(lock_dir, "held")
        return subprocess.run([sys.executable, "-c", code, path], timeout=30).returncode == 4

    with lockutils.lock("held", external=True, lock_path=lock_dir) as held:
        # A child does not get the lock its parent holds.
        assert _wait_child(_fork(child_probe)) == 0

        def leave_inherited_with() -> int:
            held.__exit__(None, None, None)  # what leaving the inherited block does
            return 0

        assert _wait_child(_fork(leave_inherited_with)) == 0
        assert not outsider_gets_it(), "a child's exit released the parent's lock"
    assert outsider_gets_it(), "the parent's release did not free the lock"


_PROBE = """
import ferrolock, sys
print(ferrolock.FileLock(sys.argv[1]).acquire(blocking=False))
"""


def test_a_worker_forked_while_a_thread_waits_does_not_keep_the_lock_alive(
    tmp_path: Path,
) -> None:
    """The waiting thread holds its own copy of the descriptor; a child forked meanwhile must
    still close it, or the lock would outlive its SIGKILLed holder for as long as the child
    lives."""
    path = str(tmp_path / "lk")
    scenario = (
        _PROBES
        + """
import os, signal, sys, threading, time, ferrolock
path = sys.argv[1]
blocker = ferrolock.FileLock(path)           # another thread of ours stands in for process H
assert blocker.acquire()
got = threading.Event()
def waiter():
    ferrolock.FileLock(path).acquire()
    got.set()
threading.Thread(target=waiter, daemon=True).start()
settle(ferrolock.FileLock(path)._waiters)    # the waiter is blocked behind the blocker
worker = os.fork()
if worker == 0:
    time.sleep(30)
    os._exit(0)
print(worker, flush=True)
blocker.release()
assert got.wait(10)
print("held", flush=True)
time.sleep(60)
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", scenario, path], stdout=subprocess.PIPE, text=True
    )
    worker = 0
    try:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())
        assert proc.stdout.readline().strip() == "held"
        assert run_python(_PROBE, path).stdout.strip() == "False"
        proc.kill()
        proc.wait(10)
        # The holder is dead and its forked worker still alive: the lock must be free.
        assert run_python(_PROBE, path).stdout.strip() == "True"
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        if worker:
            os.kill(worker, 9)


def test_a_lock_parent_threads_held_and_waited_for_at_fork_is_usable_in_the_child(
    tmp_path: Path,
) -> None:
    """Giving the dead holder's in-process guard back would hand it to the dead waiter, which
    the child did not get either: the lock would stay taken in the child for good."""
    scenario = (
        _PROBES
        + """
import os, sys, threading, time, ferrolock
path = sys.argv[1]
made_before_fork = ferrolock.FileLock(path)
holding, forked = threading.Event(), threading.Event()
def holder():
    lock = ferrolock.FileLock(path)
    lock.acquire()
    holding.set()
    forked.wait(30)
    lock.release()
def waiter():
    with ferrolock.FileLock(path):
        pass
threading.Thread(target=holder).start()
holding.wait()
threading.Thread(target=waiter).start()
settle(made_before_fork._waiters)            # the waiter is queued on the in-process guard
pid = os.fork()
if pid:
    forked.set()
if pid == 0:
    got = made_before_fork.acquire(timeout=5)
    free = got and made_before_fork.locked()
    made_before_fork.release()
    again = ferrolock.FileLock(path).acquire(timeout=5)
    os._exit(0 if got and free and again else 1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    )
    for _ in range(3):
        assert run_python(scenario, str(tmp_path / "lk")).returncode == 0


_HOLD_ACROSS_FORK_WITH_A_WAITER = (
    _PROBES
    + """
import os, sys, threading, time
from ferrolock import lockutils
external, lock_dir = sys.argv[1] == "external", sys.argv[2]
held = lockutils.lock("n", external=external, lock_path=lock_dir)
held.__enter__()
def waiter():
    with lockutils.lock("n", external=external, lock_path=lock_dir):
        pass
parked = threading.Thread(target=waiter, daemon=True)
parked.start()
settle(lockutils.lock("n", external=external, lock_path=lock_dir)._waiters)  # parked
done_r, done_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(done_w)
    held.__exit__(None, None, None)  # the with block ends in the child too
    os.read(done_r, 1)  # the parent and its waiter are done
    try:
        with lockutils.lock("n", external=external, lock_path=lock_dir, blocking=False):
            os._exit(0)
    except lockutils.AcquireLockFailedException:
        os._exit(1)
os.close(done_r)
held.__exit__(None, None, None)
parked.join(10)
assert not parked.is_alive()
os.close(done_w)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
)


@pytest.mark.parametrize("kind", ["internal", "external"])
def test_a_hold_spanning_the_fork_is_released_in_the_child_despite_a_parked_waiter(
    tmp_path: Path, kind: str
) -> None:
    """The waiter parked in the parent is not in the child; the child's release must free
    the lock, not hand it to that waiter (as oslo's semaphore does)."""
    for _ in range(3):
        done = run_python(_HOLD_ACROSS_FORK_WITH_A_WAITER, kind, str(tmp_path))
        assert done.returncode == 0, done.stderr


_HOLD_ACROSS_A_SECOND_FORK = """
import os, sys
import ferrolock
lock = ferrolock.FileLock(sys.argv[1])  # made in the parent
pid = os.fork()
if pid == 0:
    lock.acquire()  # taken in the child
    grandchild = os.fork()
    if grandchild == 0:
        lock.release()  # a with block spanning the second fork ends in the grandchild
        os._exit(0)
    _, status = os.waitpid(grandchild, 0)
    lock.release()
    os._exit(os.waitstatus_to_exitcode(status))
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_hold_spanning_a_second_fork_is_released_in_the_grandchild(tmp_path: Path) -> None:
    done = run_python(_HOLD_ACROSS_A_SECOND_FORK, str(tmp_path / "lk"))
    assert done.returncode == 0, done.stderr


_RELEASE_AFTER_ANOTHER_CHILD_THREAD_TOOK_IT = (
    _PROBES
    + """
import os, sys, threading, time
import ferrolock
path = sys.argv[1]
spanning = ferrolock.FileLock(path)
assert spanning.acquire()
pid = os.fork()
if pid:
    settle(lambda: blocked_on(path))  # the child's thread waits for the file
    spanning.release()  # the parent's hold ends: a thread of the child may take the file now
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
other = ferrolock.FileLock(path)
inside = threading.Event()
finished = threading.Event()
outcome = []
def thread_of_the_child():
    other.acquire()
    inside.set()
    finished.wait(10)
    try:
        other.release()
        outcome.append("released")
    except ferrolock.LockUsageError as e:
        outcome.append(repr(e))
t = threading.Thread(target=thread_of_the_child)
t.start()
assert inside.wait(10)
spanning.release()  # the with block that spanned the fork ends: it must not end the thread's
still_held = not ferrolock.FileLock(path).acquire(blocking=False)
finished.set()
t.join(10)
os._exit(0 if still_held and outcome == ["released"] else 1)
"""
)


def test_ending_a_hold_that_spanned_the_fork_leaves_a_child_threads_hold_alone(
    tmp_path: Path,
) -> None:
    done = run_python(_RELEASE_AFTER_ANOTHER_CHILD_THREAD_TOOK_IT, str(tmp_path / "lk"))
    assert done.returncode == 0, done.stderr
