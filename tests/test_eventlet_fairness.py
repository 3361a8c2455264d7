"""Fair locks stay fair under eventlet: greenthreads that queue in order are served in order,
and only after the holder (nova's fair `compute_resources` lock in an eventlet nova-compute).
Each greenthread is seen in line (the native ``_waiters()`` test hook) before the next one
starts, and the holder lets go once all are, so no sleep decides the order."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

_SCENARIO = """
import warnings
warnings.simplefilter("ignore")
import eventlet
eventlet.monkey_patch()
import sys
import ferrolock
from ferrolock import lockutils

kind = sys.argv[1]
def make():
    if kind == "lock":
        return lockutils.lock("fair-green", fair=True)
    if kind == "internal":
        return ferrolock.InternalLock("fair-green-internal", True)
    return ferrolock.Semaphore("fair-green-sem", 1, True)

import time
def settle(n):
    deadline = time.monotonic() + 10
    while make()._waiters() < n:
        assert time.monotonic() < deadline, f"{n} greenthreads never queued"
        eventlet.sleep(0.001)

order = []
def worker(i):
    with make():
        order.append(i)
        eventlet.sleep(0.005)

holding, all_queued = eventlet.event.Event(), eventlet.event.Event()
def holder():
    with make():
        holding.send()
        all_queued.wait()
        order.append("H")  # still inside: nobody may have entered before this

pool = [eventlet.spawn(holder)]
holding.wait()
for i in range(8):
    pool.append(eventlet.spawn(worker, i))
    settle(i + 1)  # worker i is in line before i + 1 starts
all_queued.send()
for g in pool:
    g.wait()
print(order)
"""


@pytest.mark.parametrize("kind", ["lock", "internal", "semaphore"])
def test_greenthreads_are_served_in_arrival_order(kind: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCENARIO, kind], capture_output=True, text=True, timeout=50
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(["H", *range(8)])
