"""Shapes that projects' unit tests (and oslo's own) use on lockutils: fasteners' methods on what
lock(external=True) yields, InterProcessLock.trylock/unlock, remove_external_lock_file through a
patchable _get_lock_path and os.remove, and mock.patch.object(lockutils, "lock") seeing
@synchronized calls. Also pins the deliberate differences test_oslo_suite.py lists."""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path
from unittest import mock

import pytest

import ferrolock
from ferrolock import lockutils

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=[False, True], ids=["quiet", "debug"])
def debug(request: pytest.FixtureRequest):
    logger = logging.getLogger("ferrolock.lockutils")
    old = logger.level
    logger.setLevel(logging.DEBUG if request.param else logging.INFO)
    yield request.param
    logger.setLevel(old)


def test_external_lock_yields_exists_and_path(tmp_path: Path, debug: bool):
    with lockutils.lock("ex", external=True, lock_path=str(tmp_path)) as held:
        assert held.exists()
        assert Path(held.path) == tmp_path / "ex"
        os.unlink(held.path)
        assert not held.exists()


def test_in_process_lock_yields_the_native_lock():
    # a deliberate difference: oslo yields a threading.Semaphore
    with lockutils.lock("native-yield") as held:
        assert isinstance(held, ferrolock.InternalLock)
        assert not isinstance(held, threading.Semaphore)
        assert held.locked()


def test_interprocess_lock_trylock_and_unlock(tmp_path: Path):
    path = str(tmp_path / "ipl")
    first, second = lockutils.InterProcessLock(path), lockutils.InterProcessLock(path)
    first.trylock()
    with pytest.raises(OSError) as caught:
        second.trylock()
    assert caught.value.errno == errno.EAGAIN
    first.unlock()
    second.trylock()
    second.unlock()
    second.unlock()  # fasteners' unlock of an unheld lock is quiet


def test_interprocess_lock_follows_an_assigned_lockfile(tmp_path: Path):
    target = tmp_path / "assigned"
    ipl = lockutils.InterProcessLock(str(tmp_path / "unused"))
    with open(target, "w") as handle:
        ipl.lockfile = handle
        ipl.trylock()
        try:
            assert not lockutils.InterProcessLock(str(target)).acquire(blocking=False)
        finally:
            ipl.unlock()
    assert not (tmp_path / "unused").exists()


def test_remove_external_lock_file_goes_through_patchable_helpers(tmp_path: Path):
    with (
        mock.patch.object(lockutils, "_get_lock_path") as path_mock,
        mock.patch("os.remove") as remove_mock,
    ):
        lockutils.remove_external_lock_file("n", "p-", "/somewhere")
    path_mock.assert_called_once_with("n", "p-", "/somewhere")
    remove_mock.assert_called_once_with(path_mock.return_value)


def test_remove_external_lock_file_warns_on_permission_error(tmp_path: Path, caplog):
    (tmp_path / "perm").touch()
    with mock.patch("os.remove", side_effect=OSError(errno.EPERM, "no")):
        with caplog.at_level(logging.WARNING, logger="ferrolock.lockutils"):
            lockutils.remove_external_lock_file("perm", lock_path=str(tmp_path))
    assert any("Failed to remove file" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "perm").exists()


def test_remove_external_lock_file_leaves_a_held_file_and_removes_a_free_one(tmp_path: Path):
    with lockutils.external_lock("busy", lock_path=str(tmp_path)):
        done = []
        t = threading.Thread(
            target=lambda: done.append(
                lockutils.remove_external_lock_file("busy", lock_path=str(tmp_path))
            )
        )
        t.start()
        t.join(10)
        assert done == [None] and (tmp_path / "busy").exists()
    lockutils.remove_external_lock_file("busy", lock_path=str(tmp_path))
    assert not (tmp_path / "busy").exists()
    # a missing file is not created just to be removed
    lockutils.remove_external_lock_file("never", lock_path=str(tmp_path))
    assert not (tmp_path / "never").exists()


def test_patching_lock_intercepts_plain_synchronized_calls(debug: bool):
    calls = []

    @lockutils.synchronized("patched")
    def work() -> str:
        return "ran"

    assert work() == "ran"
    real = lockutils.lock

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(args[0])
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with mock.patch.object(lockutils, "lock", side_effect=spy):
        assert work() == "ran"
        assert work() == "ran"
    assert calls == ["patched", "patched"]
    assert work() == "ran"
    assert calls == ["patched", "patched"]


def test_fair_lock_works_without_blocking():
    # a deliberate difference: oslo raises NotImplementedError for fair=True, blocking=False
    with lockutils.lock("fair-nb", fair=True, blocking=False):
        got = []
        t = threading.Thread(target=lambda: got.append(_try_fair("fair-nb")))
        t.start()
        t.join(10)
        assert got == [False]
    assert _try_fair("fair-nb")


def _try_fair(name: str) -> bool:
    try:
        with lockutils.lock(name, fair=True, blocking=False):
            return True
    except lockutils.AcquireLockFailedException:
        return False
