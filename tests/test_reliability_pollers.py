"""oslo.concurrency waiters poll (fasteners: a ``lockf`` try every 10-100 ms) and are never woken;
a busy ferrolock process that re-takes the lock within microseconds must still let them in
(rolling upgrades run both). Measured with bench/oslo_starvation.py: an oslo process needing
the lock 10 times next to 2 ferrolock threads holding it ~2 ms in a loop. Before: 37 s for the
10 takes (one take waited 10.5 s; 10-27 s in the issue); oslo next to oslo: under 5 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testutil import child_env

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "oslo_starvation.py"


def _run(*args: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env or child_env(),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_an_oslo_process_gets_in_next_to_a_busy_ferrolock_service() -> None:
    # A generous bound (the busy loop stops after 30 s): starved, the oslo process finishes
    # only once the loop stops; served, its 10 takes need a few seconds.
    result = _run("--busy", "ferrolock", "--takes", "10", "--limit", "30")
    assert result["finished_while_busy"], result
