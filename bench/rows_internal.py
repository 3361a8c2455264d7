"""In-process rows: lock(), @synchronized, fair, 8 threads, DEBUG logging, threading.Lock floor."""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from harness import (
    OPS,
    Metric,
    Metrics,
    Settings,
    ratio_at_least,
    row,
    within_factor_of,
)
from impls import FLOOR, lockutils
from measure import HoldLog, check_counter, check_no_overlap, timed_loop

NAME = "bench-internal"
THREADS = 8
LOG_LINES = Metric("log_lines", "DEBUG log lines per cycle", "x")


def _rate(body: Callable[[int], None], s: Settings) -> float:
    cycles, seconds = timed_loop(body, s.duration_s)
    return cycles / seconds


def _lock_body(impl: str) -> Callable[[int], None]:
    lock = lockutils(impl).lock

    # A plain call, as services write it: forwarding **kwargs here would add a dict-unpacking
    # call to every cycle and shrink the measured difference between the libraries.
    def body(n: int) -> None:
        for _ in range(n):
            with lock(NAME):
                pass

    return body


def _fair_body(impl: str) -> Callable[[int], None]:
    lock = lockutils(impl).lock

    def body(n: int) -> None:
        for _ in range(n):
            with lock(NAME, fair=True):
                pass

    return body


def _synchronized_body(impl: str) -> Callable[[int], None]:
    synchronized: Callable[[str], Callable[[Callable[[], None]], Callable[[], None]]]
    synchronized = lockutils(impl).synchronized

    @synchronized(NAME)
    def noop() -> None:
        pass

    def body(n: int) -> None:
        for _ in range(n):
            noop()

    return body


@row(
    "internal.uncontended",
    "internal lock, uncontended",
    targets=(
        ratio_at_least(20),
        within_factor_of("floor.uncontended", 3, "bare threading.Lock"),
    ),
)
def internal_uncontended(impl: str, s: Settings) -> Metrics:
    return {OPS: _rate(_lock_body(impl), s)}


@row("floor.uncontended", "bare threading.Lock, uncontended (floor)", impls=(FLOOR,))
def floor_uncontended(impl: str, s: Settings) -> Metrics:
    tlock = threading.Lock()

    def body(n: int) -> None:
        for _ in range(n):
            with tlock:
                pass

    return {OPS: _rate(body, s)}


@row("internal.synchronized", "@synchronized no-op", targets=(ratio_at_least(10),))
def internal_synchronized(impl: str, s: Settings) -> Metrics:
    return {OPS: _rate(_synchronized_body(impl), s)}


@row("internal.fair", "internal lock, fair=True, uncontended")
def internal_fair(impl: str, s: Settings) -> Metrics:
    return {OPS: _rate(_fair_body(impl), s)}


def _contended(enter: Callable[[], AbstractContextManager[object]], s: Settings) -> Metrics:
    """THREADS threads hammer one lock for duration_s; each hold bumps a plain int non-atomically
    (read, then write) and logs its interval, so lost updates or overlaps are caught."""
    box = [0]
    logs = [HoldLog(i, array("q"), array("q"), array("q")) for i in range(THREADS)]
    barrier = threading.Barrier(THREADS)
    dur_ns = int(s.duration_s * 1e9)
    clock = time.perf_counter_ns

    def worker(log: HoldLog) -> None:
        acq, rel = log.acq, log.rel
        barrier.wait()
        log.req.append(clock())  # start of this thread's run, for the wall-clock span
        end = log.req[0] + dur_ns
        while clock() < end:
            with enter():
                t1 = clock()
                value = box[0]
                box[0] = value + 1
                t2 = clock()
            acq.append(t1)
            rel.append(t2)

    threads = [threading.Thread(target=worker, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = check_counter(box[0], logs)
    check_no_overlap(logs)
    start = min(log.req[0] for log in logs)
    end = max(log.rel[-1] for log in logs if len(log.rel))
    return {OPS: total / ((end - start) / 1e9)}


@row("internal.threads8", f"internal, {THREADS} threads one name", targets=(ratio_at_least(10),))
def internal_threads(impl: str, s: Settings) -> Metrics:
    # partial is a C-level call, so the harness adds the same small cost to both libraries
    return _contended(functools.partial(lockutils(impl).lock, NAME), s)


@row("floor.threads8", f"bare threading.Lock, {THREADS} threads (floor)", impls=(FLOOR,))
def floor_threads(impl: str, s: Settings) -> Metrics:
    tlock = threading.Lock()
    # repeat().__next__ hands back the same lock through a C call, like partial(lock) above
    return _contended(itertools.repeat(tlock).__next__, s)


class _Discard:
    """A stream that drops everything: formatting cost stays, I/O cost goes."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _CountingHandler(logging.StreamHandler):  # type: ignore[type-arg]  # not generic on 3.9
    def __init__(self) -> None:
        super().__init__(_Discard())
        self.records = 0
        # a typical service format, so both sides pay for asctime and message interpolation
        fmt = "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"
        self.setFormatter(logging.Formatter(fmt))

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        super().emit(record)


@contextmanager
def _debug_logging() -> Iterator[_CountingHandler]:
    root = logging.getLogger()
    handler = _CountingHandler()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.setLevel(old_level)
        root.removeHandler(handler)


def _debug_row(body: Callable[[int], None], s: Settings) -> Metrics:
    with _debug_logging() as handler:
        cycles, seconds = timed_loop(body, s.duration_s)
        # timed_loop's 16 warm-up cycles logged too, so they count in the denominator
        lines = handler.records / (cycles + 16)
    return {OPS: cycles / seconds, LOG_LINES.key: lines}


# The details table shows log lines per cycle: both sides must log the same lines, or the
# row compares different work.
@row("internal.debug", "internal lock, DEBUG logging on", metrics=(LOG_LINES,))
def internal_debug(impl: str, s: Settings) -> Metrics:
    return _debug_row(_lock_body(impl), s)


@row("internal.synchronized_debug", "@synchronized no-op, DEBUG logging on", metrics=(LOG_LINES,))
def synchronized_debug(impl: str, s: Settings) -> Metrics:
    return _debug_row(_synchronized_body(impl), s)
