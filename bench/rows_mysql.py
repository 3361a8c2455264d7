"""MySQL lock rows: ferrolock's coordination module against tooz 9.x with PyMySQL (its MySQL
driver), both through cinder's pattern: a new ``get_lock(name)`` per call.

The server is ``$FERROLOCK_BENCH_MYSQL_URL``, or a throwaway MariaDB started once for the run by
``tests/services/mariadb.py`` (stopped at exit). Connections opened are counted by the server
(``SHOW GLOBAL STATUS LIKE 'Connections'``), so both sides are measured the same way. The floor
is one persistent PyMySQL connection doing ``GET_LOCK`` + ``RELEASE_LOCK`` (2 round trips).
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from harness import (
    OPS,
    CorrectnessError,
    Metric,
    Metrics,
    Settings,
    metric_at_most,
    ratio_at_least,
    row,
    within_factor_of,
)
from impls import FERROLOCK, FLOOR, TOOZ
from measure import HoldLog, check_counter, check_no_overlap, hold_stats, timed_loop

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "bench-mysql"
_server: dict[str, Any] = {}


def server_url() -> str:
    url = os.environ.get("FERROLOCK_BENCH_MYSQL_URL")
    if url:
        return url
    if "url" not in _server:
        sys.path.insert(0, os.path.join(HERE, "..", "tests"))
        from services.mariadb import MariaDB

        server = MariaDB().start()
        atexit.register(server.cleanup)
        _server["url"] = server.url
    return str(_server["url"])


def _pymysql(url: str) -> Any:
    import pymysql

    u = urlsplit(url.split("?", 1)[0])
    return pymysql.connect(
        host=u.hostname,
        port=u.port or 3306,
        user=unquote(u.username or ""),
        password=unquote(u.password or ""),
        database=u.path.lstrip("/"),
        autocommit=True,
    )


def connections_so_far(url: str) -> int:
    conn = _pymysql(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
            row_ = cur.fetchone()
            return int(row_[1]) if row_ else 0
    finally:
        conn.close()


def coordinator(impl: str, url: str) -> Any:
    """A started coordinator whose get_lock(name) gives a tooz-shaped lock."""
    if impl == FERROLOCK:
        from ferrolock.coordination import Coordinator

        c = Coordinator(prefix="bench-")
        c.start(backend_url=url)
        return c
    from tooz import coordination

    t = coordination.get_coordinator(url, b"bench-" + str(os.getpid()).encode())
    t.start()
    return t


def get_lock(impl: str, c: Any, name: str) -> Any:
    return c.get_lock(name) if impl == FERROLOCK else c.get_lock(("bench-" + name).encode())


def stop(c: Any) -> None:
    c.stop()


CONN_METRICS = (Metric("conns_per_1000", "connections opened per 1,000 cycles", "n"),)


@row(
    "mysql.floor",
    "mysql floor: one persistent connection, GET_LOCK + RELEASE_LOCK",
    impls=(FLOOR,),
)
def mysql_floor(impl: str, s: Settings) -> Metrics:
    conn = _pymysql(server_url())
    try:
        cur = conn.cursor()

        def body(n: int) -> None:
            for _ in range(n):
                cur.execute("SELECT GET_LOCK(%s, 0)", (NAME,))
                cur.fetchone()
                cur.execute("SELECT RELEASE_LOCK(%s)", (NAME,))
                cur.fetchone()

        cycles, seconds = timed_loop(body, s.duration_s)
    finally:
        conn.close()
    return {OPS: cycles / seconds}


@row(
    "mysql.cinder",
    "mysql, cinder pattern (get_lock per call), uncontended",
    impls=(FERROLOCK, TOOZ),
    metrics=CONN_METRICS,
    targets=(
        ratio_at_least(50, peer=TOOZ),
        within_factor_of("mysql.floor", 1.5, "the floor (persistent connection)"),
    ),
)
def mysql_cinder(impl: str, s: Settings) -> Metrics:
    url = server_url()
    c = coordinator(impl, url)
    try:
        with get_lock(impl, c, NAME):
            pass  # warm-up: imports, the first connection
        before = connections_so_far(url)

        def body(n: int) -> None:
            for _ in range(n):
                with get_lock(impl, c, NAME):
                    pass

        cycles, seconds = timed_loop(body, s.duration_s)
        opened = connections_so_far(url) - before - 1  # minus the counting connection
    finally:
        stop(c)
    return {OPS: cycles / seconds, "conns_per_1000": 1000.0 * max(opened, 0) / max(cycles, 1)}


WAIT_METRICS = (
    Metric("wait_p50_us", "wait p50", "us"),
    Metric("wait_p99_us", "wait p99", "us"),
    Metric("wait_max_us", "wait max", "us"),
    Metric("handoff_p50_us", "handoff p50 (release → next waiter holds)", "us"),
    Metric("holder_changes", "holder changes", "n"),
    Metric("cycles", "cycles", "n"),
)


@dataclass(frozen=True)
class _Job:
    impl: str
    worker: int
    url: str
    counter_path: str
    log_path: str
    duration_ns: int


def _worker(job: _Job, barrier: multiprocessing.synchronize.Barrier) -> None:
    c = coordinator(job.impl, job.url)
    fd = os.open(job.counter_path, os.O_RDWR)
    log = HoldLog(job.worker, array("q"), array("q"), array("q"))
    clock = time.perf_counter_ns
    with get_lock(job.impl, c, NAME):
        pass
    barrier.wait(timeout=60)
    end = clock() + job.duration_ns
    while True:
        t0 = clock()
        if t0 >= end:
            break
        with get_lock(job.impl, c, NAME):
            t1 = clock()
            value = int.from_bytes(os.pread(fd, 8, 0), "little")
            os.pwrite(fd, (value + 1).to_bytes(8, "little"), 0)
            t2 = clock()
        log.req.append(t0)
        log.acq.append(t1)
        log.rel.append(t2)
    os.close(fd)
    stop(c)
    with open(job.log_path, "wb") as f:
        f.write(log.to_bytes())


def run_procs(impl: str, procs: int, s: Settings) -> Metrics:
    url = server_url()
    # spawn: a forked child would inherit the parent's tooz/PyMySQL state
    ctx = multiprocessing.get_context("spawn")
    base = tempfile.mkdtemp(prefix="ferrolock-bench-mysql-", dir=s.tmpdir)
    try:
        counter_path = os.path.join(base, "counter")
        with open(counter_path, "wb") as f:
            f.write(bytes(8))
        jobs = [
            _Job(
                impl, i, url, counter_path, os.path.join(base, f"log-{i}"), int(s.duration_s * 1e9)
            )
            for i in range(procs)
        ]
        barrier = ctx.Barrier(procs)
        process = ctx.Process
        workers = [process(target=_worker, args=(job, barrier)) for job in jobs]
        for w in workers:
            w.start()
        deadline = time.monotonic() + s.duration_s + 120
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
        hung = [w for w in workers if w.is_alive()]
        for w in hung:
            w.kill()
            w.join()
        if hung:
            raise CorrectnessError(f"{len(hung)} of {procs} MySQL workers never finished")
        bad = [(j.worker, w.exitcode) for j, w in zip(jobs, workers) if w.exitcode != 0]
        if bad:
            raise RuntimeError(f"workers exited non-zero (worker, exit code): {bad}")
        logs = []
        for j in jobs:
            with open(j.log_path, "rb") as f:
                logs.append(HoldLog.from_bytes(j.worker, f.read()))
        with open(counter_path, "rb") as f:
            counter = int.from_bytes(f.read(8), "little")
        check_counter(counter, logs)
        check_no_overlap(logs)
        return hold_stats(logs)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@row(
    "mysql.procs4",
    "mysql, 4 procs contending (get_lock per call)",
    impls=(FERROLOCK, TOOZ),
    metrics=WAIT_METRICS,
    targets=(
        ratio_at_least(50, peer=TOOZ),
        metric_at_most("wait_p99_us", 5000, "wait p99 ≤ 5 ms"),
    ),
)
def mysql_procs4(impl: str, s: Settings) -> Metrics:
    # tooz retries a busy lock once a second: give each round at least 3 s so it gets cycles.
    longer = Settings(max(s.duration_s, 3.0), s.quick, s.mp_start, s.tmpdir)
    return run_procs(impl, 4, longer)
