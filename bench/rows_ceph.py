"""RBD lock rows: the nova pattern against the class services write over python-rbd, the floor,
and handoff latency between 3 contending processes.

    python3 bench/rows_ceph.py [run.py options]    # starts a throwaway cluster, runs these rows

Set FERROLOCK_BENCH_CEPH=CONF:CLIENT to use a running cluster instead. python-rbd is Debian's
``python3-rbd``, so its rows run under the system python (/usr/bin/python3) in a subprocess
that times its own loop and reports cycles.

- ``rbd.nova``: ``with RbdLock(pool, name, ...)`` anew per use, uncontended. The peer connects,
  opens the image, acquires, releases, closes and shuts down per use (today's class).
- ``rbd-floor``: one open image, ``lock_acquire`` + ``lock_release`` through python-rbd: the
  cost of the two round trips alone.
- ``rbd.handoff3``: 3 processes (spawned) contend with a 1 ms hold and 1 ms think.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import (  # noqa: E402 - after the path set-up for the standalone entry
    OPS,
    CorrectnessError,
    Metric,
    Metrics,
    Settings,
    metric_at_most,
    ratio_at_least,
    row,
)
from impls import register_external  # noqa: E402
from measure import HoldLog, check_counter, check_no_overlap, hold_stats  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"
PYTHON_RBD = "python-rbd"
RBD_FLOOR = "rbd-floor"
POOL = "rbd"

_PEER = r"""
import sys, time, rados, rbd
conf, rid, pool, name, duration, mode = sys.argv[1:7]
duration = float(duration)
def cycle_class():
    c = rados.Rados(conffile=conf, rados_id=rid); c.connect()
    io = c.open_ioctx(pool)
    img = rbd.Image(io, name)
    img.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
    img.lock_release()
    img.close(); io.close(); c.shutdown()
if mode == "class":
    cycle_class()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < duration:
        cycle_class(); n += 1
else:
    c = rados.Rados(conffile=conf, rados_id=rid); c.connect()
    io = c.open_ioctx(pool)
    img = rbd.Image(io, name)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < duration:
        img.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE); img.lock_release(); n += 1
    img.close(); io.close(); c.shutdown()
print(n, time.perf_counter() - t0)
"""


def _peer_error() -> str | None:
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} missing"
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import rbd, rados"], capture_output=True, text=True)
    return None if r.returncode == 0 else "python3-rbd is not installed for the system python"


def _peer_version() -> str:
    r = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import rbd; print('.'.join(map(str, rbd.RBD().version())))"],
        capture_output=True,
        text=True,
    )
    return f"librbd {r.stdout.strip()}" if r.returncode == 0 else "?"


register_external(PYTHON_RBD, _peer_error, _peer_version)
register_external(RBD_FLOOR, _peer_error, _peer_version)

_CLUSTER: tuple[str, str] | None = None


def cluster() -> tuple[str, str]:
    """(conffile, client id) of the cluster the rows use, started on first use."""
    global _CLUSTER
    if _CLUSTER is None:
        given = os.environ.get("FERROLOCK_BENCH_CEPH")
        if given:
            conf, _, client = given.rpartition(":")
            _CLUSTER = (conf, client)
        else:
            sys.path.insert(0, os.path.join(HERE, "..", "tests", "services"))
            import ceph as ceph_service

            started = ceph_service.start()
            atexit.register(started.stop)
            _CLUSTER = (str(started.conffile), started.client)
    return _CLUSTER


def _image(tag: str) -> str:
    name = f"bench-{tag}"
    from ferrolock import RbdLock

    conf, client = cluster()
    with RbdLock(POOL, name, conffile=conf, rados_id=client):
        pass  # creates the image outside any timed window
    return name


def _peer(mode: str, name: str, s: Settings) -> Metrics:
    conf, client = cluster()
    duration = s.duration_s if mode == "floor" else max(s.duration_s, 1.0)
    r = subprocess.run(
        [SYSTEM_PYTHON, "-c", _PEER, conf, client, POOL, name, str(duration), mode],
        capture_output=True,
        text=True,
        timeout=duration + 120,
    )
    if r.returncode != 0:
        raise RuntimeError(f"python-rbd peer failed: {r.stderr.strip()[-400:]}")
    n, secs = r.stdout.split()
    return {OPS: int(n) / float(secs)}


@row(
    "rbd.nova",
    "RbdLock, nova pattern (with RbdLock(...) per use), uncontended",
    impls=("ferrolock", PYTHON_RBD, RBD_FLOOR),
    targets=(
        ratio_at_least(5, peer=PYTHON_RBD),
        ratio_at_least(0.5, peer=RBD_FLOOR),
    ),
)
def rbd_nova(impl: str, s: Settings) -> Metrics:
    name = _image("nova")
    if impl == PYTHON_RBD:
        return _peer("class", name, s)
    if impl == RBD_FLOOR:
        return _peer("floor", name, s)
    from ferrolock import RbdLock

    conf, client = cluster()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < s.duration_s:
        with RbdLock(POOL, name, conffile=conf, rados_id=client):
            pass
        n += 1
    return {OPS: n / (time.perf_counter() - t0)}


@dataclass(frozen=True)
class _Job:
    worker: int
    conf: str
    client: str
    name: str
    counter_path: str
    log_path: str
    duration_ns: int
    hold_s: float
    think_s: float


def _worker(job: _Job, barrier: multiprocessing.synchronize.Barrier) -> None:
    from ferrolock import RbdLock

    lock = RbdLock(POOL, job.name, conffile=job.conf, rados_id=job.client, blocking=True)
    fd = os.open(job.counter_path, os.O_RDWR)
    log = HoldLog(job.worker, array("q"), array("q"), array("q"))
    clock = time.perf_counter_ns
    with lock:
        pass  # connect and open outside the timed window
    barrier.wait(timeout=120)
    end = clock() + job.duration_ns
    while True:
        t0 = clock()
        if t0 >= end:
            break
        with lock:
            t1 = clock()
            value = int.from_bytes(os.pread(fd, 8, 0), "little")
            os.pwrite(fd, (value + 1).to_bytes(8, "little"), 0)
            time.sleep(job.hold_s)
            t2 = clock()
        log.req.append(t0)
        log.acq.append(t1)
        log.rel.append(t2)
        time.sleep(job.think_s)
    os.close(fd)
    with open(job.log_path, "wb") as f:
        f.write(log.to_bytes())


HANDOFF_METRICS = (
    Metric("handoff_p50_us", "handoff p50 (release → next waiter holds)", "us"),
    Metric("handoff_p99_us", "handoff p99", "us"),
    Metric("wait_p99_us", "wait p99", "us"),
    Metric("holder_changes", "holder changes", "n"),
    Metric("cycles", "cycles", "n"),
)


@row(
    "rbd.handoff3",
    "RbdLock, 3 procs, hold 1 ms + think 1 ms",
    impls=("ferrolock",),
    metrics=HANDOFF_METRICS,
    targets=(metric_at_most("handoff_p50_us", 5000, "handoff p50 ≤ 5 ms"),),
)
def rbd_handoff3(impl: str, s: Settings) -> Metrics:
    conf, client = cluster()
    name = _image("handoff")
    base = tempfile.mkdtemp(prefix="ferrolock-bench-rbd-")
    try:
        counter = os.path.join(base, "counter")
        with open(counter, "wb") as f:
            f.write(bytes(8))
        ctx = multiprocessing.get_context("spawn")  # a fork would copy librados's threads' state
        barrier = ctx.Barrier(3)
        duration = max(s.duration_s, 2.0)
        jobs = [
            _Job(
                i,
                conf,
                client,
                name,
                counter,
                os.path.join(base, f"log-{i}"),
                int(duration * 1e9),
                0.001,
                0.001,
            )
            for i in range(3)
        ]
        procs = [ctx.Process(target=_worker, args=(j, barrier)) for j in jobs]
        for p in procs:
            p.start()
        for p in procs:
            p.join(duration + 120)
        hung = [p for p in procs if p.is_alive()]
        for p in hung:
            p.kill()
            p.join()
        if hung:
            raise CorrectnessError(f"{len(hung)} RBD workers hung: deadlock or lost wake-up")
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"RBD workers failed: {[p.exitcode for p in procs]}")
        logs = []
        for j in jobs:
            with open(j.log_path, "rb") as f:
                logs.append(HoldLog.from_bytes(j.worker, f.read()))
        with open(counter, "rb") as f:
            check_counter(int.from_bytes(f.read(8), "little"), logs)
        check_no_overlap(logs)
        return hold_stats(logs)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    import run

    # This module registered its rows when it ran as __main__: import no others.
    run.ROW_MODULES = ()
    sys.exit(run.main(sys.argv[1:]))
