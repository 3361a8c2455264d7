"""A holder killed with SIGKILL: the kernel drops its lock and a waiter gets it.

Each waiter is first seen blocked (in ``/proc/locks``, or on stdout for a child that
only prints once it has the lock), so the kill always lands on a real wait. How fast
the waiter wakes is the benchmark's business; here a generous bound only catches hangs.
"""

from __future__ import annotations

import signal
import threading

import pytest

import ferrolock
from ferrolock import lockutils as ferro_lockutils

from testutil import PATIENCE, blocked_on, proc_locks

pytestmark = pytest.mark.timeout(60)


def _wait_in_thread(acquire_cm):
    """Start a thread that enters `with acquire_cm():`; returns (thread, result dict)."""
    result: dict = {}

    def run():
        try:
            with acquire_cm():
                result["got"] = True
        except BaseException as e:  # surfaced by the test
            result["err"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def _kill_and_expect_handover(h, path, t, result) -> None:
    blocked_on(path)  # the waiter is in the kernel's queue behind the holder
    assert not result, f"waiter finished while the holder was alive: {result}"
    h.signal(signal.SIGKILL)
    t.join(PATIENCE)
    assert not t.is_alive(), "the waiter did not get the lock of a killed holder"
    assert "err" not in result, result.get("err")
    assert result.get("got") is True, result
    assert h.wait() == -signal.SIGKILL


@pytest.mark.parametrize("holder_kind", ["ferro-lock", "oslo-lock"])
def test_sigkilled_holder_waiter_in_this_process(holder, lock_dir, holder_kind):
    h = holder(holder_kind, ("crashy", lock_dir))
    t, result = _wait_in_thread(
        lambda: ferrolock.lock("crashy", external=True, lock_path=str(lock_dir), timeout=60)
    )
    _kill_and_expect_handover(h, lock_dir / "crashy", t, result)


def test_sigkilled_filelock_holder(holder, tmp_path):
    path = tmp_path / "f.lock"
    h = holder("ferro-filelock", path)
    fl = ferrolock.FileLock(str(path))
    assert fl.acquire(blocking=False) is False
    got = {}

    def run():
        got["ok"] = fl.acquire(timeout=60)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    blocked_on(path)
    h.signal(signal.SIGKILL)
    t.join(PATIENCE)
    assert got.get("ok") is True
    fl.release()
    assert path.exists(), "FileLock must never delete its file"


def test_sigkilled_holder_waiter_in_another_process(holder, spawn, lock_dir):
    h = holder("ferro-lock", ("crashy2", lock_dir))
    w = spawn(
        "holder.py", "--kind", "ferro-lockutils", "--name", "crashy2", "--lock-path", lock_dir
    )
    blocked_on(lock_dir / "crashy2")
    assert not any(s.startswith("ACQUIRED") for s in w.drain()), "waiter got a held lock"
    h.signal(signal.SIGKILL)
    w.expect("ACQUIRED", timeout=PATIENCE)
    assert proc_locks(lock_dir / "crashy2") == (1, 0)
    w.release()
    w.expect("RELEASED")
    assert w.wait() == 0


def test_sigkilled_holder_oslo_waiter_via_lockutils(holder, lock_dir):
    """ferrolock.lockutils blocking wait (no timeout) also wakes on the holder's death."""
    h = holder("ferro-lock", ("crashy3", lock_dir))
    t, result = _wait_in_thread(
        lambda: ferro_lockutils.lock("crashy3", external=True, lock_path=str(lock_dir))
    )
    _kill_and_expect_handover(h, lock_dir / "crashy3", t, result)
