"""Edge cases of waiting: threads that block signals, out-of-range timeouts."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ferrolock

pytestmark = pytest.mark.timeout(60)


def _holder(path: str, seconds: float) -> subprocess.Popen[str]:
    code = (
        "import ferrolock, sys, time\n"
        "lock = ferrolock.FileLock(sys.argv[1]); lock.acquire()\n"
        "print('held', flush=True); time.sleep(float(sys.argv[2]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, path, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_timeout_holds_in_a_thread_that_blocks_all_signals(tmp_path: Path) -> None:
    """Worker threads often block every signal; a kernel wait must still end on time."""
    path = str(tmp_path / "lk")
    holder = _holder(path, 30)
    result: list[object] = []

    def worker() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        started = time.monotonic()
        got = ferrolock.FileLock(path).acquire(timeout=0.5)
        result.append((got, time.monotonic() - started))

    try:
        t = threading.Thread(target=worker)
        t.start()
        t.join(10)
        assert result, "the wait ignored its timeout"
        got, waited = result[0]
        assert got is False and 0.5 <= waited < 2.0  # type: ignore[operator]
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


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
