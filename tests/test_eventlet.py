"""ferrolock under eventlet monkey-patching: greenthreads contend without deadlock.

Each case runs in a fresh interpreter that calls eventlet.monkey_patch() before
importing ferrolock.  A blocked wait must yield to the hub (otherwise the holder
greenthread never runs again and the child hangs, which the timeout turns into
a failure).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from testutil import HELPERS, child_env, run_python


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "mode",
    [
        "internal",
        "internal-lockutils",
        "internal-fair",
        "internal-lock-obj",
        "external",
        "external-lockutils",
        "synchronized-external",
    ],
)
def test_two_greenthreads_contend(mode, tmp_path):
    try:
        r = subprocess.run(
            [sys.executable, str(HELPERS / "eventlet_child.py"), mode, str(tmp_path / "locks")],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"eventlet child deadlocked ({mode}): stderr={e.stderr!r}")
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("OK ")]
    assert line, (r.stdout, r.stderr)
    state = json.loads(line[0][3:])
    assert state["counter"] == state["expected"] == 100, state
    assert state["peak"] == 1, f"two greenthreads were inside at once: {state}"
    # the hub kept running while greenthreads waited for the lock
    assert state["ticks"] >= 5, state


_FORK_WHILE_A_GREENTHREAD_HOLDS = """
import eventlet; eventlet.monkey_patch()
import os, sys, time
from ferrolock import lockutils
lock_dir = sys.argv[1]
held, forked = eventlet.event.Event(), eventlet.event.Event()
def holder():
    lk = lockutils.external_lock("gl", lock_path=lock_dir)
    lk.acquire()
    held.send()
    forked.wait()  # the child may wait for the file; a hold it carried would never end
    lk.release()
eventlet.spawn(holder)
held.wait()
pid = os.fork()
if pid:
    forked.send()
if pid == 0:
    eventlet.hubs.use_hub()  # what oslo.service's ProcessLauncher does in each worker
    got = lockutils.external_lock("gl", lock_path=lock_dir).acquire(timeout=10)
    os._exit(0 if got else 1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_worker_forked_while_a_greenthread_holds_gets_the_lock_once_free(tmp_path) -> None:
    """All greenthreads share one OS thread, so a hold of another greenthread looks like the
    forking thread's own: none may be carried into the child, whose hub starts afresh."""
    done = run_python(_FORK_WHILE_A_GREENTHREAD_HOLDS, str(tmp_path))
    assert done.returncode == 0, done.stderr


_FORK_WHILE_A_GREENTHREAD_WAITS = """
import eventlet; eventlet.monkey_patch()
import os, subprocess, sys, time
import ferrolock
lock_dir = sys.argv[1]
a, b = os.path.join(lock_dir, "a"), os.path.join(lock_dir, "b")
released = a + ".released"
# Holds a until its stdin closes; says so in a file before it lets go.
other = subprocess.Popen(
    [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a');"
     "fcntl.lockf(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read();"
     "open(sys.argv[2], 'w').close(); fcntl.lockf(f, fcntl.LOCK_UN)", a, released],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
)
assert other.stdout.readline().strip() == "held"
result = {}
entered = []
def waiter():
    lock = ferrolock.FileLock(a)
    entered.append(True)
    result["got"] = lock.acquire(timeout=20)
    result["after_release"] = os.path.exists(released)
    if result["got"]:
        lock.release()
w = eventlet.spawn(waiter)
while not entered:
    eventlet.sleep(0)
# The waiter ran until its first switch to the hub, which is in its cooperative wait on a's
# descriptor (nothing before it yields).
def reopened():
    # The child's own descriptor on a: the waiter's restart after the fork opened it.
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(a):
                return True
        except OSError:
            pass
    return False
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:
    other.stdin.close()  # only the parent's copy may keep the holder holding
    ferrolock.FileLock(b).acquire()  # may take the number a's descriptor had in the parent
    deadline = time.monotonic() + 10
    while not (reopened() or w.dead):
        assert time.monotonic() < deadline, "the waiter never restarted on a"
        eventlet.sleep(0.001)
    os.write(ready_w, b"r")
    w.wait()
    # The other process still held a until told: getting it before means it locked b.
    os._exit(0 if result["got"] and result["after_release"] else 1)
assert os.read(ready_r, 1) == b"r"
other.stdin.close()
w.wait()
_, status = os.waitpid(pid, 0)
other.wait()
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_greenthread_waiting_across_a_fork_waits_for_the_real_holder(tmp_path) -> None:
    done = run_python(_FORK_WHILE_A_GREENTHREAD_WAITS, str(tmp_path))
    assert done.returncode == 0, done.stderr
