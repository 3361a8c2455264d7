"""Scale rows: many distinct names, each used once (a service locking per instance/volume id).

Each measurement runs in a freshly spawned interpreter: RSS growth and the registry size must
not inherit allocations, cached fds or lock objects from the rows that ran before.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

from harness import OPS, Metric, Metrics, Settings, metric_at_most, ratio_at_least, row
from impls import lockutils, registry_size
from measure import open_fds, rss_kb

INTERNAL_NAMES, INTERNAL_NAMES_QUICK = 100_000, 20_000
EXTERNAL_NAMES, EXTERNAL_NAMES_QUICK = 10_000, 1_000
NAMES = Metric("names", "names used (fewer with --quick)", "n")


def _in_fresh_process(fn: object, *args: object) -> Metrics:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        result: Metrics = pool.submit(fn, *args).result(timeout=600)  # type: ignore[arg-type]
    return result


def _internal_names(impl: str, n: int) -> Metrics:
    lock = lockutils(impl).lock
    names = [f"instance-{i:08d}" for i in range(n)]  # built before the baseline: not our memory
    with lock("warm-up"):
        pass
    gc.collect()
    rss0 = rss_kb()
    t0 = time.perf_counter()
    for name in names:
        with lock(name):
            pass
    seconds = time.perf_counter() - t0
    return {
        OPS: n / seconds,
        "names": float(n),
        "seconds": seconds,
        "rss_growth_mb": (rss_kb() - rss0) / 1024,
        "registry_after": float(registry_size(impl)),
    }


def _external_names(impl: str, n: int, tmpdir: str | None) -> Metrics:
    lock = lockutils(impl).lock
    names = [f"volume-{i:08d}" for i in range(n)]
    lock_dir = tempfile.mkdtemp(prefix="ferrolock-bench-", dir=tmpdir)
    try:
        with lock("warm-up", external=True, lock_path=lock_dir):
            pass
        fds0 = open_fds()
        t0 = time.perf_counter()
        for name in names:
            with lock(name, external=True, lock_path=lock_dir):
                pass
        seconds = time.perf_counter() - t0
        return {
            OPS: n / seconds,
            "names": float(n),
            "seconds": seconds,
            "files_left": float(len(os.listdir(lock_dir)) - 1),  # minus the warm-up file
            "fds_growth": float(open_fds() - fds0),
        }
    finally:
        shutil.rmtree(lock_dir, ignore_errors=True)


@row(
    "scale.internal_names",
    "100k distinct internal names",
    metrics=(
        NAMES,
        Metric("seconds", "time", "s"),
        Metric("rss_growth_mb", "RSS growth", "MB"),
        Metric("registry_after", "registry size after", "n"),
    ),
    targets=(
        ratio_at_least(5),
        metric_at_most("registry_after", 0, "registry empty after"),
        metric_at_most("rss_growth_mb", 5, "RSS growth < 5 MB"),
    ),
)
def scale_internal(impl: str, s: Settings) -> Metrics:
    n = INTERNAL_NAMES_QUICK if s.quick else INTERNAL_NAMES
    return _in_fresh_process(_internal_names, impl, n)


@row(
    "scale.external_names",
    "10k distinct external names",
    metrics=(
        NAMES,
        Metric("seconds", "time", "s"),
        Metric("files_left", "lock files left", "n"),
        Metric("fds_growth", "open fds growth", "n"),
    ),
)
def scale_external(impl: str, s: Settings) -> Metrics:
    n = EXTERNAL_NAMES_QUICK if s.quick else EXTERNAL_NAMES
    return _in_fresh_process(_external_names, impl, n, s.tmpdir)
