"""RadosLock (librados object locks with a renewed lease) against the real cluster."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from ferrolock import LockBusy, LockLost, RadosLock

from testutil import Child, child_env

CHILD = str(Path(__file__).resolve().parent / "ceph_child.py")


def unique() -> str:
    return f"obj-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kids():
    started: list[Child] = []

    def spawn(*args: str) -> Child:
        c = Child([sys.executable, CHILD, *args], env=child_env())
        started.append(c)
        return c

    yield spawn
    for c in started:
        if c.proc.poll() is None:
            try:
                os.kill(c.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        c.finish()


def args(cl, name: str) -> list[str]:
    return [str(cl.conffile), cl.client, cl.pool, name]


def test_acquire_release_lockers(ceph):
    name = "any name / with spaces: " + unique()
    lock = RadosLock("rbd", name, lease=5, **ceph)
    assert lock.acquire()
    assert lock.is_still_owner()
    ((client, _cookie, _addr),) = lock.lockers()
    assert client.startswith("client.")
    other = RadosLock("rbd", name, **ceph)
    assert not other.acquire()
    with pytest.raises(LockBusy, match="held by client"):
        other.lock()
    lock.release()
    assert lock.lockers() == []
    assert other.acquire()
    other.release()


def test_lease_is_renewed_while_alive(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rados", *args(ceph_cluster, name), "1")
    holder.expect("ACQUIRED", timeout=30)
    lock = RadosLock("rbd", name, **ceph)
    deadline = time.monotonic() + 4  # four leases: a lease nobody renewed would have expired
    while time.monotonic() < deadline:
        assert not lock.acquire()
        time.sleep(0.3)  # sampling period of this check, not synchronisation
    holder.proc.stdin.write("check\n")
    holder.proc.stdin.flush()
    assert holder.expect("OWNER", timeout=10).split()[1] == "True"


def test_crashed_holder_lease_expires(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rados", *args(ceph_cluster, name), "2")
    holder.expect("ACQUIRED", timeout=30)
    holder.kill()
    t = time.monotonic()
    lock = RadosLock("rbd", name, blocking=True, timeout=30, **ceph)
    assert lock.acquire()
    assert time.monotonic() - t < 20
    lock.release()


def test_frozen_holder_learns_it_lost(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rados", *args(ceph_cluster, name), "1")
    holder.expect("ACQUIRED", timeout=30)
    holder.signal(signal.SIGSTOP)
    try:
        lock = RadosLock("rbd", name, blocking=True, timeout=30, **ceph)
        assert lock.acquire()
    finally:
        holder.signal(signal.SIGCONT)
    holder.expect("ONLOST", timeout=30)
    holder.proc.stdin.write("check\nrelease\n")
    holder.proc.stdin.flush()
    assert holder.expect("OWNER", timeout=10).split()[1] == "False"
    assert holder.expect("LOST", timeout=10).split()[1] == "LockLost"
    assert lock.is_still_owner()
    lock.release()


def test_waiter_is_woken_on_release(ceph):
    name = unique()
    a = RadosLock("rbd", name, **ceph)
    b = RadosLock("rbd", name, blocking=True, timeout=30, **ceph)
    assert a.acquire()
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(b.acquire()))
    t.start()
    a.release()
    t.join(30)
    assert got == [True]
    b.release()


def test_break_lock(ceph):
    name = unique()
    lost: list[str] = []
    a = RadosLock("rbd", name, lease=1, on_lost=lost.append, **ceph)
    assert a.acquire()
    ((client, cookie, _),) = a.lockers()
    b = RadosLock("rbd", name, **ceph)
    assert b.break_lock(client, cookie)
    assert not a.is_still_owner()
    with pytest.raises(LockLost):
        a.release()
    assert b.acquire()
    b.release()


def test_waiter_in_another_process_is_woken(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rados", *args(ceph_cluster, name), "30")
    holder.expect("ACQUIRED", timeout=30)
    lock = RadosLock("rbd", name, blocking=True, timeout=60, **ceph)
    got: list[float] = []
    t = threading.Thread(target=lambda: got.append(time.monotonic()) if lock.acquire() else None)
    t.start()
    released = time.monotonic()
    holder.proc.stdin.write("release\n")
    holder.proc.stdin.flush()
    holder.expect("RELEASED", timeout=10)
    t.join(60)
    assert got, "the waiter never got the lock"
    # long before the 30 s lease could have expired: the release woke it
    assert got[0] - released < 20
    lock.release()
