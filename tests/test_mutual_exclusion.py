"""Mutual exclusion across real processes on one external lock.

Each worker is a separate interpreter started with subprocess.  Two independent
checks: a shared counter file updated read-modify-write inside the lock (zero lost
updates) and the acquire/release interval log (no two holders ever overlap).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ferrolock._intervals import overlaps

WORKERS = 4
ITERS = 300


def _run_workers(
    spawn,
    tmp_path: Path,
    lock_dir: Path,
    impls: list[str],
    iters: int,
    threads: int = 1,
    name: str = "mutex",
):
    counter = tmp_path / "counter"
    counter.write_text("0")
    go = tmp_path / "go"
    kids = []
    for i, impl in enumerate(impls):
        kids.append(
            (
                spawn(
                    "mutex_worker.py",
                    "--impl",
                    impl,
                    "--name",
                    name,
                    "--lock-path",
                    lock_dir,
                    "--counter",
                    counter,
                    "--log",
                    tmp_path / f"log{i}",
                    "--go",
                    go,
                    "--iters",
                    iters,
                    "--threads",
                    threads,
                ),
                i,
            )
        )
    for k, _ in kids:
        k.expect("READY", timeout=30)
    go.write_text("go")
    for k, _ in kids:
        k.expect("DONE", timeout=150)
        assert k.wait(timeout=10) == 0, k.stderr
    intervals = []
    for _k, i in kids:
        for line in (tmp_path / f"log{i}").read_text().splitlines():
            t0, t1 = map(int, line.split())
            intervals.append((t0, t1, i))
    return int(counter.read_text()), intervals


def _assert_no_overlap(intervals) -> None:
    found = overlaps(intervals)
    assert not found, f"{len(found)} overlapping critical sections, e.g. {found[:3]}"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("impl", ["ferrolock", "ferrolock-lockutils"])
def test_four_processes_no_lost_updates_no_overlap(spawn, tmp_path, lock_dir, impl):
    total, intervals = _run_workers(spawn, tmp_path, lock_dir, [impl] * WORKERS, ITERS)
    assert total == WORKERS * ITERS, f"lost {WORKERS * ITERS - total} updates"
    assert len(intervals) == WORKERS * ITERS
    _assert_no_overlap(intervals)
    # the critical sections really interleaved between processes (real contention)
    order = [w for _, _, w in sorted(intervals)]
    switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
    assert switches >= WORKERS - 1
    # exactly one lock file, inside lock_path
    assert [p.name for p in lock_dir.iterdir()] == ["mutex"]


@pytest.mark.timeout(240)
def test_processes_with_threads_no_lost_updates(spawn, tmp_path, lock_dir):
    """Threads inside each process and processes all exclude each other."""
    total, intervals = _run_workers(spawn, tmp_path, lock_dir, ["ferrolock"] * 3, 100, threads=3)
    assert total == 3 * 3 * 100
    _assert_no_overlap(intervals)


@pytest.mark.timeout(300)
def test_mixed_ferrolock_and_oslo_processes_exclude_each_other(spawn, tmp_path, lock_dir):
    """2 ferrolock + 2 oslo.concurrency processes on the same name and lock_path."""
    total, intervals = _run_workers(
        spawn, tmp_path, lock_dir, ["ferrolock", "oslo", "ferrolock", "oslo"], 100
    )
    assert total == 400, f"lost {400 - total} updates"
    _assert_no_overlap(intervals)
