"""oslo.concurrency's own lockutils unit tests, run against ferrolock.

The suite is oslo's, not ours: taken at test time from the installed oslo.concurrency (its wheel
ships ``oslo_concurrency/tests``), else from its sdist via ``pip download``. A conftest swaps
``oslo_concurrency.lockutils`` (and ``oslo_concurrency.fixture.lockutils``) for ferrolock's
modules before the suite imports them. Every test must pass except the deliberate differences
below, each listed in the README's "Differences worth knowing" and pinned by a test of ours; a
difference that starts passing must leave the list (the README would be wrong).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

import pytest

from testutil import child_env

SUITE = "oslo_concurrency/tests/unit/test_lockutils.py"

# oslo test -> (what differs, the test of ours that pins ferrolock's behaviour)
DIFFERENCES = {
    "LockTestCase.test_contextlock": (
        "lock(name) yields ferrolock's native InternalLock, not a threading.Semaphore",
        "test_oslo_test_shapes.py::test_in_process_lock_yields_the_native_lock",
    ),
    "LockTestCase.test_contextlock_unlocks": (
        "same as test_contextlock (asserts threading.Semaphore first)",
        "test_oslo_test_shapes.py::test_in_process_lock_yields_the_native_lock",
    ),
    "LockTestCase.test_fair_lock_with_nonblocking": (
        "fair=True works with blocking=False (oslo raises NotImplementedError)",
        "test_oslo_test_shapes.py::test_fair_lock_works_without_blocking",
    ),
}

CONFTEST = """
import sys

import oslo_concurrency
import oslo_concurrency.fixture
import oslo_concurrency.lockutils  # first: ferrolock registers oslo's own option objects

from ferrolock import lockutils
from ferrolock.fixture import lockutils as fixture

sys.modules["oslo_concurrency.lockutils"] = lockutils
oslo_concurrency.lockutils = lockutils
sys.modules["oslo_concurrency.fixture.lockutils"] = fixture
oslo_concurrency.fixture.lockutils = fixture
"""


def _suite_source(scratch: Path) -> Path:
    spec = importlib.util.find_spec("oslo_concurrency")
    assert spec is not None and spec.submodule_search_locations
    installed = Path(next(iter(spec.submodule_search_locations))).parent / SUITE
    if installed.exists():
        return installed
    # Not shipped by this build of oslo.concurrency: its sdist has it.
    pinned = version("oslo.concurrency")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
            *("--no-binary", ":all:", "--dest", str(scratch)),
            f"oslo.concurrency=={pinned}",
        ],
        check=True,
        timeout=300,
    )
    [sdist] = scratch.glob("oslo*concurrency-*.tar.gz")
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(SUITE))
        handle = tar.extractfile(member)
        assert handle is not None
        target = scratch / "test_lockutils.py"
        target.write_bytes(handle.read())
    return target


@pytest.mark.timeout(600)
def test_oslos_lockutils_suite_passes_against_ferrolock(tmp_path: Path):
    # oslo's suite needs oslotest (tests/requirements.txt): missing, it is a failure, not a skip
    assert importlib.util.find_spec("oslotest") is not None, "pip install -r tests/requirements.txt"
    run_dir = tmp_path / "suite"
    run_dir.mkdir()
    shutil.copy(_suite_source(tmp_path), run_dir / "test_lockutils.py")
    (run_dir / "conftest.py").write_text(CONFTEST)
    report = tmp_path / "report.xml"
    env = child_env()
    env.pop("OSLO_LOCK_PATH", None)
    r = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("--rootdir", str(run_dir), f"--junitxml={report}", "test_lockutils.py"),
        ],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        bad = case.find("failure") is not None or case.find("error") is not None
        outcomes[name] = "failed" if bad else "skipped" if case.find("skipped") else "passed"
    failed = {n for n, o in outcomes.items() if o == "failed"}
    assert len(outcomes) >= 30, r.stdout[-3000:] + r.stderr[-3000:]
    assert not failed - DIFFERENCES.keys(), (
        f"oslo's tests fail on ferrolock: {sorted(failed - DIFFERENCES.keys())}\n"
        + r.stdout[-6000:]
    )
    assert not DIFFERENCES.keys() - failed, (
        f"no longer different, drop from DIFFERENCES and the README: "
        f"{sorted(DIFFERENCES.keys() - failed)}"
    )
    assert not any(o == "skipped" for o in outcomes.values()), outcomes
    assert os.path.exists(report)
