"""The demo's parent side: start the worker processes, then print their events as one timeline.

Events arrive from several processes slightly out of order; they are held for REORDER_DELAY and
printed in time order.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import queue
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ferrolock.cli.demo.worker import SAFETY_TIMEOUT, Event, WorkerSpec, worker_main

START_DELAY = 0.1  # lets every worker reach its first timer before t=0
REORDER_DELAY = 0.15  # events from different processes may arrive out of order; hold them this long


@dataclass
class _Stats:
    flattens: int = 0
    waits: int = 0
    skips: int = 0
    gave_up: int = 0
    waited: float = 0.0
    held: float = 0.0


_COLUMN = {
    "HOLDS": "HOLDS",
    "WAITS": "WAITS",
    "SKIPS": "SKIPS",
    "RELEASES": "RELEASES",
    "GIVES-UP": "GIVES UP",
}


class Timeline:
    """Prints events in time order although they arrive from several processes."""

    def __init__(self, names: List[str]) -> None:
        self.heap: List[Event] = []
        self.stats = {name: _Stats() for name in names}
        self.width = max(len(n) for n in names)

    def add(self, event: Event) -> None:
        heapq.heappush(self.heap, event)
        stats = self.stats[event.worker]
        if event.what == "HOLDS":
            stats.flattens += 1
            stats.waited += event.seconds
        elif event.what == "RELEASES":
            stats.held += event.seconds
        elif event.what == "WAITS":
            stats.waits += 1
        elif event.what == "SKIPS":
            stats.skips += 1
        elif event.what == "GIVES-UP":
            stats.gave_up += 1

    def flush(self, now: Optional[float] = None) -> None:
        while self.heap and (now is None or self.heap[0].t < now - REORDER_DELAY):
            e = heapq.heappop(self.heap)
            offset = f"+{e.t:.3f}s"
            print(
                f"  {offset:>8}  {e.worker:<{self.width}}  {_COLUMN[e.what]:<8}  {e.detail}",
                flush=True,
            )

    def summary(self) -> None:
        print("\nsummary:")
        header = "flattens  waited  skipped  gave up  wait total  held total"
        print(f"  {'host':<{self.width}}  {header}")
        for name, s in self.stats.items():
            print(
                f"  {name:<{self.width}}  {s.flattens:>8}  {s.waits:>6}  {s.skips:>7}  "
                f"{s.gave_up:>7}  {s.waited:>9.2f}s  {s.held:>9.2f}s"
            )


def _collect(procs: Dict[str, Any], events: Any, timeline: Timeline, go: Any, t0: Any) -> List[str]:
    """Run the event loop until every worker is done; return error messages (empty if none)."""
    ready: set[str] = set()
    running = set(procs)
    errors: List[str] = []
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while running:
        if time.monotonic() > deadline:
            errors.append(f"workers did not finish within {SAFETY_TIMEOUT:g} s: {sorted(running)}")
            break
        try:
            event: Event = events.get(timeout=0.05)
        except queue.Empty:
            for name in sorted(running):
                if not procs[name].is_alive():
                    errors.append(f"{name} exited with code {procs[name].exitcode}")
                    running.discard(name)
        else:
            if event.what == "READY":
                ready.add(event.worker)
                if ready == set(procs):
                    t0.value = time.monotonic() + START_DELAY
                    go.set()
            elif event.what in ("DONE", "ERROR"):
                running.discard(event.worker)
                if event.what == "ERROR":
                    errors.append(f"{event.worker} failed: {event.detail}")
            else:
                timeline.add(event)
        if errors and not go.is_set():
            break  # a worker died before the start: the others would wait for `go` forever
        if go.is_set():
            timeline.flush(time.monotonic() - t0.value)
    timeline.flush()
    return errors


def run_workers(specs: List[WorkerSpec]) -> Tuple[Timeline, List[str]]:
    # spawn, not fork: workers must not inherit the parent's native lock state or threads.
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    go = ctx.Event()
    t0 = ctx.Value("d", 0.0)
    procs = {
        spec.name: ctx.Process(
            target=worker_main,
            args=(spec, events, go, t0, os.getpid()),
            name=spec.name,
            daemon=True,
        )
        for spec in specs
    }
    for proc in procs.values():
        proc.start()
    timeline = Timeline([spec.name for spec in specs])
    try:
        errors = _collect(procs, events, timeline, go, t0)
    finally:
        # After a failure, workers may still be parked on `go`: do not wait for them long.
        patience = 2.0 if go.is_set() else 0.1
        for proc in procs.values():
            proc.join(timeout=patience)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2.0)
    return timeline, errors
