"""The child-side fork hook is a function of the native module that any code can call: run
outside a freshly forked child it must do nothing, never retire the descriptors (and so the
locks) the process itself holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ferrolock
from ferrolock import _native

from testutil import child_env

_PROBE = "import ferrolock, sys; print(ferrolock.FileLock(sys.argv[1]).acquire(blocking=False))"


@pytest.mark.timeout(60)
def test_the_child_hook_run_in_the_parent_keeps_its_locks(tmp_path: Path) -> None:
    path = str(tmp_path / "held")
    lock = ferrolock.FileLock(path)
    assert lock.acquire()
    try:
        _native.after_fork_in_child()
        other = subprocess.run(
            [sys.executable, "-c", _PROBE, path],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert other.returncode == 0, other.stderr
        assert other.stdout.strip() == "False", "another process took a lock this one holds"
    finally:
        lock.release()
