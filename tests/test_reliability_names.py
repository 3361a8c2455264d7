"""Lock names as oslo.concurrency takes them.

oslo keys in-process locks by the name object (a dict key): names that compare equal (1, 1.0,
True) are one lock, and a name is never confused with its string form (1 and "1", b"x" and
"b'x'"). Names decoded from bytes with surrogate escapes work; an empty name with a prefix is
the file ``prefix-``; fasteners takes ``timeout=float('inf')``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from ferrolock import lockutils

pytestmark = pytest.mark.timeout(60)


def _excluded_by(held: Any, other: Any, **kwargs: Any) -> bool:
    """Whether ``other`` cannot be taken while another thread holds ``held``."""
    taken = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with lockutils.lock(held, **kwargs):
            taken.set()
            done.wait(30)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert taken.wait(10)
    try:
        with lockutils.lock(other, blocking=False, **kwargs):
            return False
    except lockutils.AcquireLockFailedException:
        return True
    finally:
        done.set()
        t.join(10)


@pytest.mark.parametrize(
    ("held", "other"), [(1, 1.0), (1, True), (1.0, True), ((1, "a"), (1.0, "a"))]
)
def test_equal_names_are_one_lock(held: Any, other: Any) -> None:
    assert _excluded_by(held, other)


@pytest.mark.parametrize(
    ("held", "other"), [(1, "1"), (b"x", "b'x'"), (None, "None"), (1.5, "1.5")]
)
def test_a_name_is_not_its_string_form(held: Any, other: Any) -> None:
    assert not _excluded_by(held, other)
    assert not _excluded_by(other, held)


def test_equal_names_in_a_semaphores_container() -> None:
    sems = lockutils.Semaphores()
    assert _excluded_by(2, 2.0, semaphores=sems)
    assert not _excluded_by(2, "2", semaphores=sems)


def test_equal_names_with_fair_locks() -> None:
    assert _excluded_by(3, 3.0, fair=True)
    assert not _excluded_by(3, "3", fair=True)


def test_synchronized_keys_names_like_lock() -> None:
    entered = threading.Event()
    done = threading.Event()

    @lockutils.synchronized(7)
    def hold() -> None:
        entered.set()
        done.wait(30)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert entered.wait(10)
    try:
        with pytest.raises(lockutils.AcquireLockFailedException):
            with lockutils.lock(7.0, blocking=False):
                pass
        with lockutils.lock("7", blocking=False):
            pass
    finally:
        done.set()
        t.join(10)


def test_object_names_leave_nothing_behind() -> None:
    from ferrolock import _native

    before = _native.registry_size()
    for i in range(2000):
        with lockutils.lock(i):
            pass
        with lockutils.lock((i, "x")):
            pass
    assert _native.registry_size() <= before + 2


def test_surrogate_escaped_names(lock_dir: Path) -> None:
    name = os.fsdecode(b"vol-\xff")
    with lockutils.lock(name):
        pass
    assert _excluded_by(name, name)
    with lockutils.lock(name, external=True, lock_path=str(lock_dir)):
        assert os.listdir(os.fsencode(lock_dir)) == [b"vol-\xff"]
    with lockutils.lock(name, external=True, lock_path=str(lock_dir), fair=True):
        pass


def test_an_empty_name_with_a_prefix_is_the_file_prefix_dash(lock_dir: Path) -> None:
    with lockutils.lock("", lock_file_prefix="nova", external=True, lock_path=str(lock_dir)):
        assert os.listdir(lock_dir) == ["nova-"]


def test_interprocesslock_waits_forever_with_an_infinite_timeout(lock_dir: Path) -> None:
    lk = lockutils.external_lock("inf", lock_path=str(lock_dir))
    assert lk.acquire(timeout=float("inf")) is True
    lk.release()
