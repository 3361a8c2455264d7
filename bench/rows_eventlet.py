"""Eventlet rows: greenthreads of one monkey-patched process contend (nova-compute, cinder-volume).

20 greenthreads share 200 calls of ``@synchronized(name)`` holding the lock 1 ms or 0 ms via
``eventlet.sleep``, plain, ``fair=True`` and ``external=True``. Each measurement runs in a fresh
interpreter that monkey-patches before importing anything (eventlet_child.py), with a ticker
greenthread that shows the hub keeps running the others while greenthreads wait. The rows
report the median time of one batch of 200 calls as ``seconds`` and 200/seconds as ``ops``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from harness import OPS, CorrectnessError, Metric, Metrics, Settings, ratio_at_least, row

HERE = os.path.dirname(os.path.abspath(__file__))
CALLS = 200
BATCHES, BATCHES_QUICK = 5, 2
METRICS = (
    Metric("seconds", "one batch of 200 calls", "s"),
    Metric("max_tick_gap_ms", "longest ticker gap, ms (ticker sleeps 1 ms)", "x"),
    Metric("ticks_per_s", "ticker turns per second", "n"),
    Metric("handoff_p50_us", "handoff p50 (release -> next holder in)", "us"),
    Metric("handoff_p99_us", "handoff p99", "us"),
)


def _run_child(impl: str, mode: str, hold_ms: int, s: Settings) -> Metrics:
    lock_dir = tempfile.mkdtemp(prefix="ferrolock-bench-green-", dir=s.tmpdir)
    batches = BATCHES_QUICK if s.quick else BATCHES
    try:
        r = subprocess.run(
            [
                sys.executable,
                os.path.join(HERE, "eventlet_child.py"),
                impl,
                mode,
                str(hold_ms),
                lock_dir,
                str(batches),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(lock_dir, ignore_errors=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"eventlet child failed (status {r.returncode}): {r.stderr[-2000:]}")
    out = json.loads(lines[-1])
    if "error" in out:
        raise CorrectnessError(out["error"])
    seconds = statistics.median(out["times"])
    return {
        OPS: CALLS / seconds,
        "seconds": seconds,
        "max_tick_gap_ms": out["max_tick_gap"] * 1000,
        "ticks_per_s": out["ticks"] / sum(out["times"]),
        "handoff_p50_us": out["handoff_p50_us"],
        "handoff_p99_us": out["handoff_p99_us"],
    }


def _register(mode: str, label: str, hold_ms: int) -> None:
    @row(
        f"eventlet.{mode}_{hold_ms}ms",
        f"eventlet, 20 greenthreads, {label}, hold {hold_ms} ms",
        metrics=METRICS,
        targets=(ratio_at_least(1.0),),
    )
    def measure(impl: str, s: Settings) -> Metrics:
        return _run_child(impl, mode, hold_ms, s)


for _mode, _label in (
    ("plain", "@synchronized"),
    ("fair", "@synchronized fair=True"),
    ("external", "@synchronized external=True"),
):
    for _hold in (1, 0):
        _register(_mode, _label, _hold)
