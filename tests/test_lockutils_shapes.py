"""oslo/fasteners API shapes a service may rely on beyond the basic calls: lock objects as
decorators, truthy flags and non-str names, FairLocks namespaces, fasteners' ReaderWriterLock."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferrolock import lockutils

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=[False, True], ids=["quiet", "debug"])
def debug(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run with DEBUG logging off and on: lock() takes a different path for each."""
    logger = logging.getLogger("ferrolock.lockutils")
    old = logger.level
    logger.setLevel(logging.DEBUG if request.param else logging.INFO)
    try:
        yield request.param
    finally:
        logger.setLevel(old)


@pytest.mark.parametrize("kind", ["internal", "fair", "external"])
def test_lock_decorates_a_function(tmp_path: Path, debug: bool, kind: str) -> None:
    kwargs = {"fair": {"fair": True}, "external": {"external": True, "lock_path": str(tmp_path)}}
    inside: list[bool] = []

    def probe() -> object:
        # lock() objects are single-use with DEBUG on (a generator context manager, as in oslo)
        return lockutils.lock("deco", blocking=False, **kwargs.get(kind, {}))

    @lockutils.lock("deco", **kwargs.get(kind, {}))
    def work(x: int) -> int:
        """Doc."""
        # Another thread cannot take the lock while the decorated call runs.
        t = threading.Thread(target=lambda: inside.append(_try(probe())))
        t.start()
        t.join(10)
        return x * 2

    assert work(21) == 42 and work.__name__ == "work" and work.__doc__ == "Doc."
    assert inside == [False]
    assert _try(probe())


def _try(lock: object) -> bool:
    try:
        with lock:  # type: ignore[attr-defined]
            return True
    except lockutils.AcquireLockFailedException:
        return False


def test_truthy_flags_and_non_str_names_work_as_in_oslo(tmp_path: Path, debug: bool) -> None:
    with lockutils.lock("t", blocking=1):
        pass
    with lockutils.lock("t", external=1, lock_path=str(tmp_path), blocking=1):
        pass
    assert (tmp_path / "t").exists()
    with lockutils.lock(5), lockutils.lock(("a", 1)):
        pass
    with lockutils.internal_lock("t", blocking=0):
        pass

    @lockutils.synchronized("t", blocking=1)
    def f() -> str:
        return "ran"

    assert f() == "ran"
    with pytest.raises(ValueError):
        lockutils.lock("t", blocking=False, timeout=1)
    # None is a false flag, as oslo reads it: blocking=None does not wait.
    with lockutils.lock("t"), pytest.raises(lockutils.AcquireLockFailedException):
        _enter_in_thread(lambda: lockutils.lock("t", blocking=None))


def _enter_in_thread(make: object) -> None:
    """Enter ``make()`` in another thread (the caller holds the lock); re-raise its error."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with make():  # type: ignore[operator]
                pass
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert not t.is_alive(), "blocking=None waited"
    if errors:
        raise errors[0]


def test_same_object_kinds_with_debug_on_and_off(tmp_path: Path, debug: bool) -> None:
    with lockutils.lock("kinds", external=True, lock_path=str(tmp_path)) as ext:
        # oslo yields the file lock (fasteners' InterProcessLock): its path is what users read
        assert ext.path == tmp_path / "kinds"
    with lockutils.lock("kinds", fair=True) as fair:
        assert type(fair).__name__ == "FairWriteLock"


def test_fair_lock_containers_are_separate_namespaces() -> None:
    first, second = lockutils.FairLocks(), lockutils.FairLocks()
    assert first.get("n") is first.get("n")
    done = threading.Event()
    with first.get("n").write_lock():

        def other_thread() -> None:
            with second.get("n").write_lock():
                done.set()

        t = threading.Thread(target=other_thread)
        t.start()
        t.join(10)
    assert done.is_set(), "two containers shared one lock"
    # The process-wide container is what lock(fair=True) takes.
    with lockutils.internal_fair_lock("shared").write_lock():
        blocked = threading.Thread(target=lambda: done.clear() or _fair_try("shared", done))
        blocked.start()
        blocked.join(10)
        assert not done.is_set()


def _fair_try(name: str, done: threading.Event) -> None:
    try:
        with lockutils.lock(name, fair=True, blocking=False):
            done.set()
    except lockutils.AcquireLockFailedException:
        pass


def test_reader_writer_lock_has_fasteners_api() -> None:
    rw = lockutils.ReaderWriterLock()
    assert (rw.WRITER, rw.READER, rw.owner, rw.has_pending_writers) == ("w", "r", None, False)
    with rw.read_lock():
        assert rw.owner == "r" and rw.is_reader() and not rw.is_writer()
    rw.acquire_write_lock()
    assert rw.owner == "w" and rw.is_writer(check_pending=False)
    pending = threading.Event()

    def writer() -> None:
        pending.set()
        rw.acquire_write_lock()
        rw.release_write_lock()

    t = threading.Thread(target=writer)
    t.start()
    pending.wait(5)
    for _ in range(200):
        if rw.has_pending_writers:
            break
        threading.Event().wait(0.01)
    assert rw.has_pending_writers
    rw.release_write_lock()
    t.join(10)
    assert rw.owner is None and not rw.has_pending_writers

    me = object()
    custom = lockutils.ReaderWriterLock(threading.Condition, lambda: me)
    with custom.write_lock():
        assert custom.is_writer()
