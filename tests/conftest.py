"""Fixtures for the ferrolock test suites; shared helpers live in helpers/testutil.py.

Child processes are real, independent Python interpreters started with
``subprocess`` (never through a shell ``&``, which would ignore SIGINT).
Every child started through the ``spawn`` fixture is killed at teardown, and
every wait on a child is bounded, so a broken lock can fail a test but never
hang the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))

from testutil import HELPERS, Child


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    d = tmp_path / "locks"
    d.mkdir()
    return d


@pytest.fixture
def spawn():
    """Factory: spawn(script_name, *args) -> Child running tests/helpers/<script>."""
    children: list[Child] = []

    def _spawn(
        script: str, *args: str, env: dict[str, str] | None = None, new_session: bool = False
    ) -> Child:
        argv = [sys.executable, str(HELPERS / script), *map(str, args)]
        c = Child(argv, env=env, new_session=new_session)
        children.append(c)
        return c

    yield _spawn
    for c in children:
        c.finish()


@pytest.fixture
def holder(spawn):
    """Start a helper process holding a lock: holder(kind, target) -> Child.

    ``kind`` is one of ferro-lock, ferro-lockutils, oslo-lock, ferro-filelock,
    fasteners, lockf, flock.  For the *-lock kinds ``target`` is ``(name, lock_path)``;
    for the others it is a file path.  Returns once the child holds the lock.
    """

    def _holder(kind: str, target, prefix: str | None = None) -> Child:
        if isinstance(target, tuple):
            name, lock_path = target
            args = ["--kind", kind, "--name", name, "--lock-path", str(lock_path)]
        else:
            args = ["--kind", kind, "--path", str(target)]
        if prefix:
            args += ["--prefix", prefix]
        c = spawn("holder.py", *args)
        c.expect("ACQUIRED", timeout=20)
        return c

    return _holder


@pytest.fixture
def cli_children():
    """Children started by a CLI test; each is finished (let go, reaped) at teardown."""
    kids: list[Child] = []
    yield kids
    for k in kids:
        k.finish()
