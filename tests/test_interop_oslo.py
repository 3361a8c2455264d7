"""Interoperability with the real oslo.concurrency and fasteners.

A lock held in another process by one implementation must block the other on
the same name/lock_path (or the same file), in both directions. A timed wait must not
give up before its timeout; how soon after it gives up is the benchmark's business
(here a generous bound only catches hangs).
"""

from __future__ import annotations

import threading
import time

import fasteners
import pytest
from oslo_concurrency import lockutils as oslo_lockutils

import ferrolock
from ferrolock import lockutils as ferro_lockutils

from testutil import PATIENCE, blocked_on, oslo_busy, tolerate_fasteners_fd_leak

pytestmark = pytest.mark.timeout(60)


def _assert_ferro_blocked(name, lock_dir, prefix=None):
    with pytest.raises(ferrolock.AcquireLockFailedException):
        with ferrolock.lock(
            name, lock_file_prefix=prefix, external=True, lock_path=str(lock_dir), blocking=False
        ):
            pytest.fail("ferrolock got a lock that another process holds")
    with pytest.raises(ferro_lockutils.AcquireLockFailedException):
        with ferro_lockutils.lock(
            name, lock_file_prefix=prefix, external=True, lock_path=str(lock_dir), blocking=False
        ):
            pytest.fail("ferrolock.lockutils got a lock that another process holds")
    t0 = time.monotonic()
    with pytest.raises(ferrolock.LockTimeout):
        with ferrolock.lock(
            name, lock_file_prefix=prefix, external=True, lock_path=str(lock_dir), timeout=0.3
        ):
            pytest.fail("ferrolock got a lock that another process holds")
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < PATIENCE


@pytest.mark.parametrize("prefix", [None, "nova"])
def test_oslo_holder_blocks_ferrolock(holder, lock_dir, prefix):
    h = holder("oslo-lock", ("shared-name", lock_dir), prefix=prefix)
    _assert_ferro_blocked("shared-name", lock_dir, prefix)
    h.release()
    h.expect("RELEASED")
    assert h.wait() == 0
    # and once oslo lets go, ferrolock gets it at once
    with ferrolock.lock(
        "shared-name",
        lock_file_prefix=prefix,
        external=True,
        lock_path=str(lock_dir),
        blocking=False,
    ):
        pass


@pytest.mark.parametrize("kind", ["ferro-lock", "ferro-lockutils"])
@pytest.mark.parametrize("prefix", [None, "nova-"])
def test_ferrolock_holder_blocks_oslo(holder, lock_dir, kind, prefix):
    h = holder(kind, ("shared-name", lock_dir), prefix=prefix)
    assert oslo_busy("shared-name", lock_dir, prefix), "oslo got a lock a ferrolock process holds"
    # fasteners' own timeout-based acquire on the very same file also fails
    path = oslo_lockutils._get_lock_path("shared-name", prefix, str(lock_dir))
    with tolerate_fasteners_fd_leak(lock_dir):
        ipl = fasteners.InterProcessLock(path)
        assert ipl.acquire(timeout=0.3) is False
        del ipl
    h.release()
    h.expect("RELEASED")
    assert h.wait() == 0
    with oslo_lockutils.lock(
        "shared-name",
        lock_file_prefix=prefix,
        external=True,
        lock_path=str(lock_dir),
        blocking=False,
    ):
        pass


def test_ferrolock_waiter_gets_lock_when_oslo_holder_releases(holder, lock_dir):
    h = holder("oslo-lock", ("handoff", lock_dir))
    result: dict = {}
    letting_go = threading.Event()

    def waiter() -> None:
        with ferrolock.lock("handoff", external=True, lock_path=str(lock_dir), timeout=60):
            result["after_release"] = letting_go.is_set()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    blocked_on(lock_dir / "handoff")  # the waiter is queued behind oslo's lockf lock
    assert not result
    letting_go.set()
    h.release()
    h.expect("RELEASED")
    t.join(PATIENCE)
    assert not t.is_alive(), "the waiter did not get the lock oslo gave up"
    assert result == {"after_release": True}
    assert h.wait() == 0


def test_filelock_vs_fasteners_holder(holder, tmp_path):
    path = tmp_path / "sub" / "file.lock"
    path.parent.mkdir()
    h = holder("fasteners", path)
    fl = ferrolock.FileLock(str(path))
    assert fl.acquire(blocking=False) is False
    t0 = time.monotonic()
    assert fl.acquire(timeout=0.3) is False
    assert 0.3 <= time.monotonic() - t0 < PATIENCE
    h.release()
    assert h.wait() == 0
    assert fl.acquire(blocking=False) is True
    fl.release()


def test_fasteners_vs_filelock_holder(holder, tmp_path):
    path = tmp_path / "file.lock"
    h = holder("ferro-filelock", path)
    with tolerate_fasteners_fd_leak(path.parent):
        ipl = fasteners.InterProcessLock(str(path))
        assert ipl.acquire(blocking=False) is False
        del ipl
    ipl = fasteners.InterProcessLock(str(path))
    h.release()
    assert h.wait() == 0
    assert ipl.acquire(blocking=False) is True
    ipl.release()


def test_filelock_vs_raw_lockf_holder(holder, tmp_path):
    path = tmp_path / "file.lock"
    h = holder("lockf", path)
    fl = ferrolock.FileLock(str(path))
    assert fl.acquire(blocking=False) is False
    h.release()
    assert h.wait() == 0
    with fl:
        pass


def test_lock_file_is_the_one_oslo_uses(lock_dir):
    """Same inputs -> same file as oslo's _get_lock_path, so the locks meet."""
    for name, prefix in [
        ("plain", None),
        ("a/b", None),
        ("x", "nova"),
        ("x", "nova-"),
        ("spaces in name", "p"),
        ("ünïcode", None),
    ]:
        with ferrolock.lock(name, lock_file_prefix=prefix, external=True, lock_path=str(lock_dir)):
            pass
        expected = oslo_lockutils._get_lock_path(name, prefix, str(lock_dir))
        assert ferrolock.lock_file_path(name, prefix, str(lock_dir)) == expected
        import os

        assert os.path.isfile(expected)
    # ('x', 'nova') and ('x', 'nova-') are the same file
    assert len(list(lock_dir.iterdir())) == 5


def _other_process_sees_busy(path) -> bool:
    probe = (
        "import fasteners, sys\n"
        f"l = fasteners.InterProcessLock({str(path)!r})\n"
        "sys.exit(0 if not l.acquire(blocking=False) else 1)\n"
    )
    import subprocess
    import sys

    from testutil import child_env

    r = subprocess.run(
        [sys.executable, "-c", probe], env=child_env(), capture_output=True, text=True, timeout=30
    )
    assert r.returncode in (0, 1), r.stderr
    return r.returncode == 0


def test_same_process_oslo_holder_blocks_ferrolock_and_survives_its_attempts(lock_dir):
    """Partial migration: one process uses both libraries on one name.  ferrolock must
    see oslo's lockf lock, and its failed attempts must not drop that lock (closing
    any descriptor of the file in a process drops the process's POSIX locks)."""
    path = lock_dir / "mixed"
    with oslo_lockutils.lock("mixed", external=True, lock_path=str(lock_dir)):
        assert _other_process_sees_busy(path)
        for _ in range(3):
            with pytest.raises(ferrolock.AcquireLockFailedException):
                with ferrolock.lock(
                    "mixed", external=True, lock_path=str(lock_dir), blocking=False
                ):
                    pass
            fl = ferrolock.FileLock(str(path))
            assert fl.acquire(blocking=False) is False
            del fl
        import gc

        gc.collect()
        assert _other_process_sees_busy(path), "ferrolock's attempt released oslo's lock"
    assert not _other_process_sees_busy(path)


def test_same_process_ferrolock_holder_blocks_oslo(lock_dir):
    path = lock_dir / "mixed2"
    with ferrolock.lock("mixed2", external=True, lock_path=str(lock_dir)):
        with tolerate_fasteners_fd_leak(lock_dir):
            ipl = fasteners.InterProcessLock(str(path))
            assert ipl.acquire(blocking=False) is False
            del ipl
        assert _other_process_sees_busy(path)
    assert not _other_process_sees_busy(path)


def test_external_lock_acquire_takes_fasteners_positional_arguments(tmp_path) -> None:
    """oslo's external_lock() returned a fasteners lock: acquire(blocking, delay, max_delay,
    timeout). A second positional argument is a polling delay, never a timeout."""
    from ferrolock import lockutils as ferro_lockutils

    lock = ferro_lockutils.external_lock("positional", lock_path=str(tmp_path))
    assert lock.acquire(True, 0.05, 0.1, 5)
    lock.release()
    assert lock.acquire(True, 0.05)
    lock.release()
