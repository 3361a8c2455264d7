"""Ctrl-C while waiting, and waits with timeout=.

The waiting child is started with subprocess from Python (a shell `cmd &` would
start it with SIGINT ignored).  SIGINT is sent once the child is seen blocked (in
``/proc/locks`` when another process holds the lock, by the child's ``BLOCKED`` line,
from the native ``_waiters()`` hook, when a thread of its own does); it must then raise
KeyboardInterrupt (within a generous bound: promptness is the benchmark's business)
and hold nothing afterwards.  Timed waits must not end before their timeout.
"""

from __future__ import annotations

import json
import pickle
import signal
import threading
import time

import pytest

import ferrolock
from ferrolock import lockutils as ferro_lockutils

from testutil import PATIENCE, blocked_on, fd_lock_lines, hold_in_thread


def _interrupt(child, blocked_path=None) -> dict:
    """SIGINT ``child`` once it waits: blocked in the kernel on ``blocked_path`` when given,
    else once it says its own thread is queued (``BLOCKED``)."""
    child.expect("WAITING", timeout=20)
    if blocked_path is not None:
        blocked_on(blocked_path)
    else:
        child.expect("BLOCKED", timeout=PATIENCE)
    assert not any(s.startswith("ACQUIRED") for s in child.drain()), child.seen
    child.signal(signal.SIGINT)
    child.expect("KI", timeout=PATIENCE)
    report = json.loads(child.expect("REPORT", timeout=15)[len("REPORT ") :])
    return report


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["ext-lock", "ext-lock-timeout", "ext-lockutils"])
@pytest.mark.parametrize("holder_kind", ["ferro-lock", "oslo-lock"])
def test_ctrl_c_while_waiting_for_external_lock(holder, spawn, lock_dir, kind, holder_kind):
    h = holder(holder_kind, ("intr", lock_dir))
    c = spawn("interrupt_child.py", "--kind", kind, "--name", "intr", "--lock-path", lock_dir)
    report = _interrupt(c, lock_dir / "intr")
    assert report["fd_locks"] == [], f"child still holds file locks: {report}"
    assert report["registry_size"] == 0, report
    # The holder lets go; with the interrupted child still alive, another
    # process (this one) must get the lock immediately.
    h.release()
    assert h.wait() == 0
    assert c.proc.poll() is None
    with ferrolock.lock("intr", external=True, lock_path=str(lock_dir), blocking=False):
        assert fd_lock_lines(c.pid) == []
    c.release()
    c.expect("EXIT")
    assert c.wait() == 0


@pytest.mark.timeout(60)
def test_ctrl_c_while_waiting_for_filelock(holder, spawn, tmp_path):
    path = tmp_path / "f.lock"
    h = holder("ferro-filelock", path)
    c = spawn("interrupt_child.py", "--kind", "filelock", "--path", path)
    report = _interrupt(c, path)
    assert report["fd_locks"] == [], report
    h.release()
    assert h.wait() == 0
    fl = ferrolock.FileLock(str(path))
    assert fl.acquire(blocking=False) is True
    fl.release()
    c.release()
    assert c.wait() == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "kind",
    [
        "internal",
        "internal-lockutils",
        "internal-fair",
        "internal-lock-obj",
        "internal-lock-obj-timeout",
        "semaphore",
        "synchronized",
        "filelock-thread",
    ],
)
def test_ctrl_c_while_waiting_for_lock_held_by_a_thread(spawn, tmp_path, kind):
    c = spawn("interrupt_child.py", "--kind", kind, "--path", tmp_path / "t.lock")
    report = _interrupt(c)
    assert report["holder_joined"] is True, report
    assert report["reacquired"] is True, report
    assert report["fd_locks_after"] == [], report
    assert report["registry_size"] == 0, report
    c.release()
    assert c.wait() == 0


# ---------------------------------------------------------------- timeouts


def _busy_internal(name):
    """Hold internal lock `name` in a thread; returns the release callable."""
    return hold_in_thread(ferrolock.lock(name))


def _bounds(t0, timeout):
    elapsed = time.monotonic() - t0
    assert elapsed >= timeout, f"gave up after {elapsed:.3f}s < timeout {timeout}"
    assert elapsed < timeout + PATIENCE, f"gave up after {elapsed:.3f}s, timeout was {timeout}"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("timeout", [0.2, 0.7])
def test_acquire_timeout_returns_false(timeout, tmp_path):
    lk = ferrolock.InternalLock("to-obj")
    assert lk.acquire() is True
    try:
        result = {}

        def other():
            t0 = time.monotonic()
            result["r"] = ferrolock.InternalLock("to-obj").acquire(timeout=timeout)
            result["t0"] = t0
            result["t1"] = time.monotonic()

        t = threading.Thread(target=other)
        t.start()
        t.join(PATIENCE + timeout)
        assert result["r"] is False
        assert timeout <= result["t1"] - result["t0"] < timeout + PATIENCE
    finally:
        lk.release()

    sem = ferrolock.Semaphore("to-sem", 1)
    assert sem.acquire()
    t0 = time.monotonic()
    assert ferrolock.Semaphore("to-sem", 1).acquire(timeout=timeout) is False
    _bounds(t0, timeout)
    sem.release()


@pytest.mark.timeout(30)
def test_filelock_acquire_timeout_returns_false(holder, tmp_path):
    path = tmp_path / "x.lock"
    h = holder("ferro-filelock", path)
    fl = ferrolock.FileLock(str(path))
    t0 = time.monotonic()
    assert fl.acquire(timeout=0.5) is False
    _bounds(t0, 0.5)
    h.release()
    assert h.wait() == 0
    assert fl.acquire(timeout=0.5) is True
    fl.release()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("api", [ferrolock, ferro_lockutils])
def test_lock_timeout_internal_raises_locktimeout(api):
    release = _busy_internal("to-int")
    try:
        t0 = time.monotonic()
        with pytest.raises(ferrolock.LockTimeout) as ei:
            with api.lock("to-int", timeout=0.5):
                pytest.fail("got a busy lock")
        _bounds(t0, 0.5)
        err = ei.value
        assert isinstance(err, TimeoutError)
        assert isinstance(err, ferrolock.AcquireLockFailedException)
        assert isinstance(err, ferro_lockutils.AcquireLockFailedException)
        assert err.lock_name == "to-int"
        assert err.timeout == 0.5
        clone = pickle.loads(pickle.dumps(err))
        assert type(clone) is ferrolock.LockTimeout
        assert (clone.lock_name, clone.timeout, str(clone)) == (
            err.lock_name,
            err.timeout,
            str(err),
        )
    finally:
        release()
    # nothing left behind by the failed attempt
    with ferrolock.lock("to-int", blocking=False):
        pass


@pytest.mark.timeout(30)
def test_lock_timeout_external_raises_locktimeout(holder, lock_dir):
    h = holder("oslo-lock", ("to-ext", lock_dir))
    t0 = time.monotonic()
    with pytest.raises(ferrolock.LockTimeout):
        with ferrolock.lock("to-ext", external=True, lock_path=str(lock_dir), timeout=0.6):
            pytest.fail("got a busy lock")
    _bounds(t0, 0.6)
    assert fd_lock_lines() == []
    h.release()
    assert h.wait() == 0
    with ferrolock.lock("to-ext", external=True, lock_path=str(lock_dir), timeout=0.6):
        pass


@pytest.mark.timeout(30)
@pytest.mark.parametrize("api", [ferrolock, ferro_lockutils])
def test_synchronized_timeout_raises_locktimeout(api, holder, lock_dir):
    calls = []

    @api.synchronized("to-sync", timeout=0.4)
    def f():
        calls.append(1)
        return 42

    release = _busy_internal("to-sync")
    try:
        t0 = time.monotonic()
        with pytest.raises(ferrolock.LockTimeout):
            f()
        _bounds(t0, 0.4)
    finally:
        release()
    assert calls == []
    assert f() == 42

    @api.synchronized("to-sync-ext", external=True, lock_path=str(lock_dir), timeout=0.4)
    def g():
        calls.append(2)

    h = holder("ferro-lock", ("to-sync-ext", lock_dir))
    t0 = time.monotonic()
    with pytest.raises(ferrolock.LockTimeout):
        g()
    _bounds(t0, 0.4)
    assert calls == [1]
    h.release()
    assert h.wait() == 0
    g()
    assert calls == [1, 2]


@pytest.mark.timeout(30)
def test_timeout_zero_is_a_single_try():
    release = _busy_internal("to-zero")
    try:
        t0 = time.monotonic()
        with pytest.raises(ferrolock.AcquireLockFailedException):
            with ferrolock.lock("to-zero", timeout=0):
                pass
        # One try: the holder keeps the lock until `release()` below, so a wait would hang.
        assert time.monotonic() - t0 < PATIENCE
    finally:
        release()
