"""Timing loops, hold-interval analysis and process probes shared by the row modules."""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness import CorrectnessError, Metrics

from ferrolock._intervals import first_overlap


def timed_loop(body: Callable[[int], None], duration_s: float) -> tuple[int, float]:
    """Call body(n) (which runs n cycles in its own tight loop) for about duration_s.

    Returns (cycles, seconds). The batch grows until one batch takes ~10 ms so the clock read
    between batches costs nothing next to the cycles, whatever the speed of the lock.
    """
    body(16)  # warm-up: first use creates the lock, fills caches, triggers lazy imports
    clock = time.perf_counter
    cycles, batch = 0, 16
    start = clock()
    elapsed = 0.0
    while elapsed < duration_s:
        t0 = clock()
        body(batch)
        cycles += batch
        now = clock()
        elapsed = now - start
        if now - t0 < 0.01:
            batch *= 2
    return cycles, elapsed


@dataclass
class HoldLog:
    """What one worker (thread or process) saw: per cycle, perf_counter_ns at request, at
    acquire (first thing inside the lock) and at release (last thing inside the lock).

    perf_counter_ns is CLOCK_MONOTONIC on Linux, so logs from different processes compare.
    """

    worker: int
    req: array[int]
    acq: array[int]
    rel: array[int]

    def to_bytes(self) -> bytes:
        return self.req.tobytes() + self.acq.tobytes() + self.rel.tobytes()

    @classmethod
    def from_bytes(cls, worker: int, data: bytes) -> HoldLog:
        whole = array("q")
        whole.frombytes(data)
        n = len(whole) // 3
        return cls(worker, whole[:n], whole[n : 2 * n], whole[2 * n :])


def check_no_overlap(logs: Sequence[HoldLog]) -> None:
    """Raise CorrectnessError if two recorded holds overlap (ferrolock's one interval checker,
    in its form that builds no tuple per cycle: the threading.Lock floor row logs millions)."""
    for log in logs:
        for a, r in zip(log.acq, log.rel):
            if r < a:
                raise CorrectnessError(f"worker {log.worker}: release {r} before acquire {a}")
    found = first_overlap(
        (a for log in logs for a in log.acq), (r for log in logs for r in log.rel)
    )
    if found is not None:
        start, end = found
        raise CorrectnessError(
            f"two holders at once: a hold began at {start} ns before the hold "
            f"ending at {end} ns was released ({end - start} ns overlap)"
        )


def check_counter(actual: int, logs: Sequence[HoldLog]) -> int:
    """The shared counter was read-incremented-written inside every hold: no lost update."""
    expected = sum(len(log.acq) for log in logs)
    if actual != expected:
        raise CorrectnessError(
            f"shared counter is {actual}, expected {expected}: {expected - actual} lost updates"
        )
    return expected


def pct(sorted_vals: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    return float(sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))])


def hold_stats(logs: Sequence[HoldLog]) -> Metrics:
    """Throughput, wait per acquire and handoff latency from the hold logs (times in µs).

    A handoff is a change of holder while the next holder was already waiting (it asked before
    the previous holder released); its latency is release -> next acquire, i.e. how long the
    lock sat free with someone queued. Holder changes after an idle lock are not handoffs.
    """
    waits = sorted(a - r for log in logs for r, a in zip(log.req, log.acq))
    events = sorted(
        (a, r, q, log.worker) for log in logs for q, a, r in zip(log.req, log.acq, log.rel)
    )
    handoffs: list[int] = []
    changes = 0
    for (_, prev_rel, _, prev_w), (acq, _, req, w) in zip(events, events[1:]):
        if w != prev_w:
            changes += 1
            if req < prev_rel:
                handoffs.append(acq - prev_rel)
    handoffs.sort()
    start = min(log.req[0] for log in logs if len(log.req))
    end = max(log.rel[-1] for log in logs if len(log.rel))
    wall = (end - start) / 1e9
    m: Metrics = {
        "ops": len(events) / wall,
        "cycles": float(len(events)),
        "wait_p50_us": pct(waits, 0.50) / 1e3,
        "wait_p99_us": pct(waits, 0.99) / 1e3,
        "wait_max_us": waits[-1] / 1e3,
        "holder_changes": float(changes),
    }
    if handoffs:
        m["handoff_p50_us"] = pct(handoffs, 0.50) / 1e3
        m["handoff_p99_us"] = pct(handoffs, 0.99) / 1e3
        # share of the run the lock sat free while someone was queued for it
        m["idle_queued_pct"] = 100 * sum(handoffs) / (end - start)
    return m


def busy_wait_ns(ns: int) -> None:
    """Hold the CPU like real work does; sleeping would hand the core to the waiters."""
    clock = time.perf_counter_ns
    end = clock() + ns
    while clock() < end:
        pass


def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fs_type(path: str) -> str:
    """Filesystem type holding path (lock file creation costs 8x more on ext4 than tmpfs)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    with open("/proc/mounts", encoding="utf-8") as f:
        for line in f:
            _, mnt, typ = line.split()[:3]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best, kind = mnt, typ
    return kind
