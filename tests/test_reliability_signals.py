"""A signal whose exception comes due as a lock wait ends must never leave the lock held.

oslo.service raises SignalExit on SIGHUP and restarts the service in the same process, so the
hold must be gone while the exception is still being handled, not only once it is collected.
The scenario lives in helpers/signal_child.py; each path by which an application takes an
external lock gets its own run.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(90)

KINDS = [
    "native",
    "external_lock",
    "external_lock_acquire",
    "filelock",
    "filelock_acquire",
    "debug",
    "semaphores",
    "fair",
    "synchronized",
]


def _report(spawn, lock_dir, kind: str, holder: str) -> dict:
    child = spawn(
        "signal_child.py", "--kind", kind, "--holder", holder, "--lock-path", str(lock_dir)
    )
    line = child.expect("REPORT", timeout=60)
    assert child.wait() == 0
    return json.loads(line[len("REPORT ") :])


@pytest.mark.parametrize("kind", KINDS)
def test_signal_pending_when_the_kernel_grants_the_lock(spawn, lock_dir, kind: str) -> None:
    report = _report(spawn, lock_dir, kind, "posix")
    assert report["outcome"] == "KeyboardInterrupt", report
    assert report["free_inside_handler"] is True, report
    assert report["retake_inside_handler"] is True, report
    assert report["free_after"] is True, report


@pytest.mark.parametrize("kind", ["external_lock", "filelock_acquire", "debug", "fair"])
def test_signal_pending_when_another_thread_lets_go(spawn, lock_dir, kind: str) -> None:
    """The issue's reproduction: thread A holds a ferrolock.FileLock of the same file."""
    report = _report(spawn, lock_dir, kind, "filelock")
    assert report["outcome"] == "KeyboardInterrupt", report
    assert report["free_inside_handler"] is True, report
    assert report["retake_inside_handler"] is True, report
    assert report["free_after"] is True, report


def test_a_dropped_interprocesslock_gives_its_hold_back(lock_dir) -> None:
    """A hold whose owner is gone (a signal's exception between the acquire and the ``with``
    block drops the object) ends with the object, as fasteners' ends when its file closes."""
    import gc
    import subprocess
    import sys

    from ferrolock import lockutils

    lk = lockutils.external_lock("dropped", lock_path=str(lock_dir))
    assert lk.acquire() and lk.acquired
    path = lk.path
    del lk
    gc.collect()
    probe = "import fcntl,sys; f=open(sys.argv[1],'a'); fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)"
    done = subprocess.run([sys.executable, "-c", probe, path], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with lockutils.lock("dropped", external=True, lock_path=str(lock_dir), timeout=10):
        pass
