"""ferrolock under eventlet monkey-patching: greenthreads contend without deadlock.

Each case runs in a fresh interpreter that calls eventlet.monkey_patch() before
importing ferrolock.  A blocked wait must yield to the hub (otherwise the holder
greenthread never runs again and the child hangs, which the timeout turns into
a failure).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from testutil import HELPERS, child_env


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "mode",
    [
        "internal",
        "internal-lockutils",
        "internal-fair",
        "internal-lock-obj",
        "external",
        "external-lockutils",
        "synchronized-external",
    ],
)
def test_two_greenthreads_contend(mode, tmp_path):
    try:
        r = subprocess.run(
            [sys.executable, str(HELPERS / "eventlet_child.py"), mode, str(tmp_path / "locks")],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"eventlet child deadlocked ({mode}): stderr={e.stderr!r}")
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("OK ")]
    assert line, (r.stdout, r.stderr)
    state = json.loads(line[0][3:])
    assert state["counter"] == state["expected"] == 100, state
    assert state["peak"] == 1, f"two greenthreads were inside at once: {state}"
    # the hub kept running while greenthreads waited for the lock
    assert state["ticks"] >= 5, state
