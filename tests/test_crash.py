"""A holder killed with SIGKILL: the kernel drops its lock and a waiter gets it fast."""

from __future__ import annotations

import signal
import threading
import time

import pytest

import ferrolock
from ferrolock import lockutils as ferro_lockutils

pytestmark = pytest.mark.timeout(60)


def _wait_in_thread(acquire_cm):
    """Start a thread blocked in `with acquire_cm():`; returns (thread, result dict)."""
    result: dict = {}
    started = threading.Event()

    def run():
        started.set()
        try:
            with acquire_cm():
                result["t"] = time.monotonic()
        except BaseException as e:  # surfaced by the test
            result["err"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert started.wait(5)
    return t, result


@pytest.mark.parametrize("holder_kind", ["ferro-lock", "oslo-lock"])
def test_sigkilled_holder_waiter_in_this_process(holder, lock_dir, holder_kind):
    h = holder(holder_kind, ("crashy", lock_dir))
    t, result = _wait_in_thread(
        lambda: ferrolock.lock("crashy", external=True, lock_path=str(lock_dir), timeout=20)
    )
    time.sleep(0.3)
    assert not result, f"waiter finished while the holder was alive: {result}"
    t_kill = time.monotonic()
    h.signal(signal.SIGKILL)
    t.join(10)
    assert not t.is_alive()
    assert "err" not in result, result.get("err")
    assert result["t"] - t_kill < 1.0, f"waiter took {result['t'] - t_kill:.3f}s after SIGKILL"
    assert h.wait() == -signal.SIGKILL


def test_sigkilled_filelock_holder(holder, tmp_path):
    path = tmp_path / "f.lock"
    h = holder("ferro-filelock", path)
    fl = ferrolock.FileLock(str(path))
    assert fl.acquire(blocking=False) is False
    got = {}

    def run():
        got["ok"] = fl.acquire(timeout=20)
        got["t"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(0.3)
    t_kill = time.monotonic()
    h.signal(signal.SIGKILL)
    t.join(10)
    assert got.get("ok") is True
    fl.release()
    assert got["t"] - t_kill < 1.0
    assert path.exists(), "FileLock must never delete its file"


def test_sigkilled_holder_waiter_in_another_process(holder, spawn, lock_dir):
    h = holder("ferro-lock", ("crashy2", lock_dir))
    w = spawn(
        "holder.py", "--kind", "ferro-lockutils", "--name", "crashy2", "--lock-path", lock_dir
    )
    time.sleep(0.5)
    assert not any(s.startswith("ACQUIRED") for s in w.drain()), "waiter got a held lock"
    t_kill = time.monotonic()
    h.signal(signal.SIGKILL)
    w.expect("ACQUIRED", timeout=5)
    assert time.monotonic() - t_kill < 1.0
    w.release()
    w.expect("RELEASED")
    assert w.wait() == 0


def test_sigkilled_holder_oslo_waiter_via_lockutils(holder, lock_dir):
    """ferrolock.lockutils blocking wait (no timeout) also wakes on the holder's death."""
    h = holder("ferro-lock", ("crashy3", lock_dir))
    t, result = _wait_in_thread(
        lambda: ferro_lockutils.lock("crashy3", external=True, lock_path=str(lock_dir))
    )
    time.sleep(0.3)
    assert not result
    t_kill = time.monotonic()
    h.signal(signal.SIGKILL)
    t.join(10)
    assert "t" in result, result
    assert result["t"] - t_kill < 1.0
