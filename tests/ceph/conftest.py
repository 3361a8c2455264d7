"""A throwaway single-node Ceph cluster for every test in tests/ceph/ (started once a session).

Without Ceph (daemons missing and not installable, start-up failure) the tests skip, except
when ``CI=true``: then they fail, so a broken cluster can never pass CI unnoticed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

import ceph as ceph_service


@pytest.fixture(scope="session")
def ceph_cluster() -> Iterator[ceph_service.Cluster]:
    try:
        cluster = ceph_service.start()
    except Exception as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Ceph test cluster did not start: {e}")
        pytest.skip(f"no Ceph test cluster: {e}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def ceph(ceph_cluster: ceph_service.Cluster) -> dict[str, str]:
    """Keyword arguments for RbdLock naming the test cluster's restricted client."""
    return {"conffile": str(ceph_cluster.conffile), "rados_id": ceph_cluster.client}
