"""Many threads on one in-process lock, with the GIL switching inside the locked region.

A waiter only takes the lock once it holds the GIL again (see src/python/waiting.rs); these
tests force a GIL switch at nearly every bytecode so that waiters park, get woken and race,
and check that the lock still excludes: a non-atomic counter loses no update and no two
holders' intervals overlap.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Callable

import pytest

import ferrolock
from ferrolock import lockutils
from ferrolock._intervals import first_overlap

from testutil import PATIENCE, queued_on

pytestmark = pytest.mark.timeout(60)

THREADS = 8
ROUNDS = 400


@contextmanager
def _tiny_switch_interval() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _hammer(enter: Callable[[], AbstractContextManager[object]]) -> None:
    box = [0]
    intervals: list[tuple[int, int]] = []
    barrier = threading.Barrier(THREADS)

    def worker() -> None:
        barrier.wait()
        for _ in range(ROUNDS):
            with enter():
                start = time.perf_counter_ns()
                value = box[0]
                if value % 7 == 0:
                    time.sleep(0)  # give the GIL away while holding the lock
                box[0] = value + 1
                intervals.append((start, time.perf_counter_ns()))

    with _tiny_switch_interval():
        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(50)
    assert not any(t.is_alive() for t in threads), "a thread never got the lock"
    assert box[0] == THREADS * ROUNDS
    assert first_overlap([s for s, _ in intervals], [e for _, e in intervals]) is None, (
        "two holders overlapped"
    )


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: lockutils.lock("contended"), id="lockutils.lock"),
        pytest.param(lambda: ferrolock.InternalLock("contended"), id="InternalLock"),
        pytest.param(lambda: ferrolock.InternalLock("contended-fair", True), id="fair"),
        pytest.param(lambda: lockutils.lock("contended-rw", fair=True), id="lock-fair"),
        pytest.param(lambda: ferrolock.Semaphore("contended-sem", 1), id="Semaphore"),
    ],
)
def test_threads_exclude_each_other(make: Callable[[], AbstractContextManager[object]]) -> None:
    _hammer(make)
    assert ferrolock.registry_size() == 0


def test_a_waiter_gets_a_lock_held_by_a_thread_that_releases_without_the_gil() -> None:
    lock = ferrolock.InternalLock("handoff")
    assert lock.acquire()
    got = threading.Event()

    def waiter() -> None:
        if lock.acquire(timeout=10):
            got.set()
            lock.release()

    t = threading.Thread(target=waiter)
    t.start()
    queued_on(lock)  # the waiter sleeps in the lock: the release must wake it
    lock.release()
    t.join(PATIENCE)
    assert got.is_set()
