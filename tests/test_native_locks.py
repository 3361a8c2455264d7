"""The native in-process primitives: InternalLock, Semaphore, ReaderWriterLock,
FileLock (thread side) and the registry.

A test that needs a thread to be waiting first waits for the native locks' ``_waiters()``
test hook to count it (``queued_on``), never for a sleep to pass."""

from __future__ import annotations

import gc
import os
import threading
import time

import fasteners
import pytest

import ferrolock
from ferrolock._intervals import first_overlap

from testutil import PATIENCE, queued_on, wait_until

pytestmark = pytest.mark.timeout(60)

CLEAR_ERRORS = (RuntimeError, ferrolock.LockError)


def _assert_usage_error(err: BaseException) -> None:
    """Misuse (e.g. releasing what is not held) is both a LockError and a RuntimeError,
    like threading's own "release unlocked lock" RuntimeError."""
    assert isinstance(err, ferrolock.LockError), type(err).__mro__
    assert isinstance(err, RuntimeError), type(err).__mro__
    assert str(err)


def _in_thread(fn, *args):
    out = {}

    def run():
        try:
            out["r"] = fn(*args)
        except BaseException as e:
            out["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "thread did not finish"
    if "e" in out:
        raise out["e"]
    return out["r"]


@pytest.fixture(autouse=True)
def _registry_clean():
    gc.collect()
    before = ferrolock.registry_size()
    yield
    gc.collect()
    assert ferrolock.registry_size() == before, "a test leaked a registry entry"


# ------------------------------------------------------------------ InternalLock


def test_internal_lock_same_name_same_lock():
    a = ferrolock.InternalLock("same")
    b = ferrolock.InternalLock("same")
    other = ferrolock.InternalLock("different")
    assert a.name == "same"
    assert not a.locked() and not b.locked()
    assert a.acquire() is True
    try:
        assert b.locked()
        assert _in_thread(b.acquire, False) is False
        assert _in_thread(lambda: b.acquire(timeout=0.05)) is False
        assert _in_thread(other.acquire, False) is True
        other.release()
    finally:
        a.release()
    assert not b.locked()
    assert _in_thread(b.acquire, False) is True
    b.release()


def test_internal_lock_context_manager_and_exclusion():
    lk = ferrolock.InternalLock("cm")
    with lk as entered:
        assert entered is lk
        assert lk.locked()
        assert _in_thread(ferrolock.InternalLock("cm").acquire, False) is False
    assert not lk.locked()


def test_internal_lock_threads_no_lost_updates():
    counter = {"v": 0}
    intervals = []

    def work():
        lk = ferrolock.InternalLock("threads")
        for i in range(2000):
            with lk:
                t0 = time.perf_counter_ns()
                v = counter["v"]
                if i % 97 == 0:
                    time.sleep(0)  # invite a thread switch inside the critical section
                counter["v"] = v + 1
                intervals.append((t0, time.perf_counter_ns()))

    ts = [threading.Thread(target=work) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(50)
    assert counter["v"] == 16000
    assert first_overlap([s for s, _ in intervals], [e for _, e in intervals]) is None


def test_release_of_unheld_internal_lock_is_a_clear_error():
    lk = ferrolock.InternalLock("unheld")
    with pytest.raises(CLEAR_ERRORS) as ei:
        lk.release()
    _assert_usage_error(ei.value)
    # and the lock still works afterwards
    assert lk.acquire(blocking=False)
    lk.release()


def test_release_of_unheld_semaphore_is_a_clear_error():
    s = ferrolock.Semaphore("unheld-sem", 2)
    with pytest.raises((*CLEAR_ERRORS, ValueError)) as ei:
        s.release()
    _assert_usage_error(ei.value)
    assert s.acquire(blocking=False) and s.acquire(blocking=False)
    assert s.acquire(blocking=False) is False
    s.release()
    s.release()
    with pytest.raises((*CLEAR_ERRORS, ValueError)):
        s.release()


def test_release_of_unheld_filelock_is_a_clear_error(tmp_path):
    fl = ferrolock.FileLock(str(tmp_path / "u.lock"))
    with pytest.raises(CLEAR_ERRORS) as ei:
        fl.release()
    _assert_usage_error(ei.value)


# ------------------------------------------------------------------ registry


def test_registry_counts_live_locks_and_empties():
    lk = ferrolock.InternalLock("live")
    lk.acquire()
    assert ferrolock.registry_size() >= 1
    lk.release()
    del lk
    gc.collect()
    assert ferrolock.registry_size() == 0
    with ferrolock.lock("live-cm"):
        assert ferrolock.registry_size() >= 1
    assert ferrolock.registry_size() == 0


@pytest.mark.timeout(120)
def test_registry_back_to_zero_after_100k_distinct_names():
    for i in range(100_000):
        with ferrolock.lock(f"name-{i}"):
            pass
    gc.collect()
    assert ferrolock.registry_size() == 0
    for i in range(20_000):
        with ferrolock.InternalLock(f"obj-{i}"):
            pass
    gc.collect()
    assert ferrolock.registry_size() == 0


# ------------------------------------------------------------------ Semaphore


@pytest.mark.parametrize("permits", [1, 2, 3, 5])
def test_semaphore_lets_exactly_n_in(permits):
    inside = 0
    peak = 0
    guard = threading.Lock()
    enough = threading.Barrier(permits, timeout=10)
    errors = []

    def work():
        nonlocal inside, peak
        s = ferrolock.Semaphore("sem-n", permits)
        for k in range(3):
            with s:
                with guard:
                    inside += 1
                    peak = max(peak, inside)
                    assert inside <= permits
                if k == 0:
                    # the first round: N threads must be able to be inside together
                    try:
                        enough.wait()
                    except threading.BrokenBarrierError as e:
                        errors.append(e)
                time.sleep(0.005)
                with guard:
                    inside -= 1

    ts = [threading.Thread(target=work) for _ in range(permits * 3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors
    assert peak == permits


def test_semaphore_nonblocking_when_full():
    s = ferrolock.Semaphore("full", 2)
    assert s.acquire() and s.acquire()
    assert _in_thread(ferrolock.Semaphore("full", 2).acquire, False) is False
    s.release()
    assert _in_thread(lambda: ferrolock.Semaphore("full", 2).acquire(blocking=False)) is True
    # that thread's permit is still out: we are full again
    assert s.acquire(blocking=False) is False
    s.release()
    s.release()


# ------------------------------------------------------------------ fairness


def _fifo_order(make_holder_cm, make_waiter_cm, n=6):
    order = []
    threads = []
    probe = make_waiter_cm()  # the same lock: its _waiters() counts those in line
    with make_holder_cm():
        for i in range(n):

            def run(i=i):
                with make_waiter_cm():
                    order.append(i)

            t = threading.Thread(target=run, daemon=True)
            t.start()
            threads.append(t)
            queued_on(probe, i + 1)  # thread i is in line before i+1 starts
        assert order == []
    for t in threads:
        t.join(PATIENCE)
    return order


def test_fair_internal_lock_is_fifo():
    def lk():
        return ferrolock.InternalLock("fifo", fair=True)

    assert _fifo_order(lk, lk) == list(range(6))


def test_fair_lock_cm_is_fifo():
    def lk():
        return ferrolock.lock("fifo-cm", fair=True)

    assert _fifo_order(lk, lk) == list(range(6))


def test_fair_lockutils_synchronized_is_fifo():
    from ferrolock import lockutils

    order = []

    @lockutils.synchronized("fifo-sync", fair=True)
    def f(i):
        order.append(i)

    threads = []
    probe = lockutils.lock("fifo-sync", fair=True)
    with lockutils.lock("fifo-sync", fair=True):
        for i in range(5):
            t = threading.Thread(target=f, args=(i,), daemon=True)
            t.start()
            threads.append(t)
            queued_on(probe, i + 1)
    for t in threads:
        t.join(PATIENCE)
    assert order == list(range(5))


def test_fair_semaphore_is_fifo():
    def s():
        return ferrolock.Semaphore("fifo-sem", 1, fair=True)

    assert _fifo_order(s, s) == list(range(6))


# ------------------------------------------------------------------ ReaderWriterLock

RW_IMPLS = [
    pytest.param(fasteners.ReaderWriterLock, id="fasteners-reference"),
    pytest.param(ferrolock.ReaderWriterLock, id="ferrolock"),
]


def _rw_waiting(rw, count):
    """Wait until ``count`` threads wait for ``rw`` (fasteners': in its condition's queue)."""
    if isinstance(rw, fasteners.ReaderWriterLock):
        wait_until(lambda: len(rw._cond._waiters) >= count, what=f"{count} waiters")
    else:
        queued_on(rw._lock, count)


@pytest.mark.parametrize("RW", RW_IMPLS)
def test_rw_readers_share(RW):
    rw = RW()
    both_inside = threading.Barrier(3, timeout=5)
    res = []

    def reader():
        with rw.read_lock():
            res.append(rw.is_reader())
            both_inside.wait()  # all 3 readers inside at once

    ts = [threading.Thread(target=reader) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert res == [True, True, True]


@pytest.mark.parametrize("RW", RW_IMPLS)
def test_rw_writer_excludes_readers_and_writers(RW):
    rw = RW()
    got = []
    with rw.write_lock():
        assert rw.is_writer()

        def reader():
            with rw.read_lock():
                got.append("r")

        def writer():
            with rw.write_lock():
                got.append("w")

        tr = threading.Thread(target=reader, daemon=True)
        tw = threading.Thread(target=writer, daemon=True)
        tr.start()
        tw.start()
        _rw_waiting(rw, 2)
        assert got == [], "someone entered while a writer held the lock"
    tr.join(5)
    tw.join(5)
    assert sorted(got) == ["r", "w"]
    assert not rw.is_writer()


@pytest.mark.parametrize("RW", RW_IMPLS)
def test_rw_reader_excludes_writer_and_pending_writer_blocks_new_readers(RW):
    rw = RW()
    order = []
    r1_in = threading.Event()
    r1_go = threading.Event()

    def r1():
        with rw.read_lock():
            r1_in.set()
            r1_go.wait(10)
            order.append("r1-out")

    def w():
        with rw.write_lock():
            order.append("w")

    def r2():
        with rw.read_lock():
            order.append("r2")

    t1 = threading.Thread(target=r1, daemon=True)
    t1.start()
    assert r1_in.wait(5)
    tw = threading.Thread(target=w, daemon=True)
    tw.start()
    _rw_waiting(rw, 1)  # the writer is pending
    t2 = threading.Thread(target=r2, daemon=True)
    t2.start()
    _rw_waiting(rw, 2)  # and the second reader waits behind it
    assert order == []
    r1_go.set()
    for t in (t1, tw, t2):
        t.join(5)
    assert order == ["r1-out", "w", "r2"]


@pytest.mark.parametrize("RW", RW_IMPLS)
def test_rw_reentrancy_like_fasteners(RW):
    rw = RW()
    with rw.write_lock():
        with rw.write_lock():
            with rw.read_lock():
                assert rw.is_writer()
        assert rw.is_writer()
        assert _in_thread(lambda: rw.is_writer()) is False
    assert not rw.is_writer()
    with rw.read_lock():
        with rw.read_lock():
            assert rw.is_reader()
        assert rw.is_reader()
    assert not rw.is_reader()

    # fully released: another thread can write
    def w():
        with rw.write_lock():
            return True

    assert _in_thread(w) is True


@pytest.mark.parametrize("RW", RW_IMPLS)
def test_rw_reader_to_writer_upgrade_is_refused(RW):
    rw = RW()

    def upgrade():
        with rw.read_lock():
            with rw.write_lock():
                return "upgraded"

    with pytest.raises(CLEAR_ERRORS):
        _in_thread(upgrade)

    # the failed upgrade left nothing held
    def w():
        with rw.write_lock():
            return True

    assert _in_thread(w) is True


# ------------------------------------------------------------------ FileLock (threads)


def test_filelock_threads_of_one_process_exclude(tmp_path):
    path = str(tmp_path / "t.lock")
    a = ferrolock.FileLock(path)
    assert os.fspath(a.path) == path
    with a:
        assert _in_thread(ferrolock.FileLock(path).acquire, False) is False
        assert _in_thread(lambda: ferrolock.FileLock(path).acquire(timeout=0.1)) is False
    fl = ferrolock.FileLock(path)
    assert _in_thread(fl.acquire, False) is True
    fl.release()


def test_filelock_threads_no_lost_updates(tmp_path):
    path = str(tmp_path / "n.lock")
    counter = {"v": 0}

    def work():
        fl = ferrolock.FileLock(path)
        for _ in range(300):
            with fl:
                v = counter["v"]
                time.sleep(0)
                counter["v"] = v + 1

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(50)
    assert counter["v"] == 1200


# ------------------------------------------------------------------ the GIL


@pytest.mark.parametrize("kind", ["internal", "semaphore", "filelock", "lock-cm"])
def test_waiting_releases_the_gil(kind, tmp_path):
    """While a thread is blocked in a wait, other Python threads keep running."""
    path = str(tmp_path / "gil.lock")
    make = {
        "internal": lambda: ferrolock.InternalLock("gil"),
        "semaphore": lambda: ferrolock.Semaphore("gil-sem", 1),
        "filelock": lambda: ferrolock.FileLock(path),
        "lock-cm": lambda: ferrolock.InternalLock("gil-cm"),
    }[kind]
    result = {}
    if kind == "lock-cm":
        holder_cm = ferrolock.lock("gil-cm")

        def waiter():
            try:
                with ferrolock.lock("gil-cm", timeout=30):
                    result["got"] = True
            except ferrolock.LockTimeout:
                result["got"] = False
    else:
        holder_cm = make()

        def waiter():
            lk = make()
            result["got"] = lk.acquire(timeout=30)
            if result["got"]:
                lk.release()

    with holder_cm:
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        queued_on(make())  # the waiter is asleep in the lock
        # Pure-Python work on this thread needs the GIL: a wait that kept it would stall this
        # loop until the wait ended (after its 30 s timeout, so with a result).
        n = 0
        for _ in range(200_000):
            n += 1
        assert not result, f"the waiter's wait ended while the lock was held: {result}"
    t.join(PATIENCE)
    assert result.get("got") is True, result
