"""Fair locks stay fair under eventlet: greenthreads that queue in order are served in order,
and only after the holder (nova's fair `compute_resources` lock in an eventlet nova-compute)."""

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

order = []
def worker(i):
    with make():
        order.append(i)
        eventlet.sleep(0.005)

def holder():
    with make():
        eventlet.sleep(0.3)
        order.append("H")  # still inside: nobody may have entered before this

pool = [eventlet.spawn(holder)]
eventlet.sleep(0.01)
for i in range(8):
    pool.append(eventlet.spawn(worker, i))
    eventlet.sleep(0.03)  # they queue in order 0..7 while the holder holds
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
