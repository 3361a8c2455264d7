"""RbdLock against a real single-node Ceph cluster (see conftest.py and tests/services/ceph.py).

Timing assertions are generous bounds that catch hangs; readiness is always a printed line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import ferrolock
from ferrolock import LockBackendError, LockBusy, RbdLock

from testutil import Child, child_env

CHILD = str(Path(__file__).resolve().parent / "ceph_child.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def unique(prefix: str = "lock") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kids():
    started: list[Child] = []

    def spawn(*args: str, python: str = sys.executable) -> Child:
        c = Child([python, CHILD, *args], env=child_env())
        started.append(c)
        return c

    yield spawn
    for c in started:
        if c.proc.poll() is None:
            try:
                os.kill(c.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        c.finish()


def args(ceph_cluster, name: str) -> list[str]:
    return [str(ceph_cluster.conffile), ceph_cluster.client, ceph_cluster.pool, name]


def test_acquire_release_and_owner(ceph):
    name = unique()
    lock = RbdLock("rbd", name, **ceph)
    assert lock.acquire()
    assert lock.is_still_owner()
    assert lock.owners() == [lock.client_address()]
    assert lock.owners_alive() == [(lock.client_address(), True)]
    lock.release()
    assert not lock.is_still_owner()
    assert lock.owners() == []
    with pytest.raises(ferrolock.LockUsageError):
        lock.release()


def test_with_and_lock_unlock_names(ceph):
    name = unique()
    with RbdLock("rbd", name, **ceph) as held:
        assert held.is_still_owner()
    lock = RbdLock("rbd", name, **ceph)
    lock.lock()
    lock.unlock()
    assert lock.owners() == []


def test_release_on_exception(ceph):
    name = unique()
    with pytest.raises(ZeroDivisionError):
        with RbdLock("rbd", name, **ceph):
            1 / 0  # noqa: B018
    assert RbdLock("rbd", name, **ceph).owners() == []


def test_threads_of_one_process_exclude_each_other(ceph):
    name = unique()
    a, b = RbdLock("rbd", name, **ceph), RbdLock("rbd", name, **ceph)
    assert a.acquire()
    assert not b.acquire()
    with pytest.raises(LockBusy):
        b.lock()
    a.release()
    assert b.acquire()
    b.release()


def test_mutual_exclusion_3_processes_2_threads(ceph_cluster, kids, tmp_path):
    name = unique()
    counter, log = tmp_path / "counter", tmp_path / "log"
    counter.write_text("0")
    n = 15
    workers = [
        kids("work", *args(ceph_cluster, name), str(counter), str(log), str(n)) for _ in range(3)
    ]
    for w in workers:
        w.expect("DONE", timeout=180)
    assert int(counter.read_text()) == 3 * 2 * n
    spans = sorted(tuple(map(float, line.split()[:2])) for line in log.read_text().splitlines())
    assert len(spans) == 3 * 2 * n
    for (s1, e1), (s2, _e2) in zip(spans, spans[1:]):
        assert e1 <= s2, f"overlapping holds: {s1}-{e1} and {s2}"


def test_nonblocking_conflict_is_fast_and_names_owner(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rbd", *args(ceph_cluster, name))
    addr = holder.expect("ACQUIRED", timeout=30).split()[1]
    lock = RbdLock("rbd", name, **ceph)
    t = time.monotonic()
    with pytest.raises(LockBusy) as err:
        lock.lock()
    assert time.monotonic() - t < 5
    assert addr in str(err.value)
    assert err.value.owners and addr in err.value.owners[0]
    assert isinstance(err.value, ferrolock.AcquireLockFailedException)
    assert lock.owners() == [addr]


def test_blocking_waiter_is_woken_on_release(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rbd", *args(ceph_cluster, name))
    holder.expect("ACQUIRED", timeout=30)
    lock = RbdLock("rbd", name, blocking=True, timeout=60, **ceph)
    got: list[float] = []

    def wait() -> None:
        with lock:
            got.append(time.monotonic())

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)  # not synchronisation: only lets the waiter start waiting (either way works)
    assert not got
    released = time.monotonic()
    holder.proc.stdin.write("release\n")
    holder.proc.stdin.flush()
    holder.expect("RELEASED", timeout=10)
    t.join(30)
    assert got, "the waiter never got the lock"
    # Woken by the release notification, not the 2 s back-off (generous bound for CI noise).
    assert got[0] - released < 10


def test_blocking_with_timeout_times_out(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rbd", *args(ceph_cluster, name))
    holder.expect("ACQUIRED", timeout=30)
    lock = RbdLock("rbd", name, blocking=True, timeout=0.5, **ceph)
    t = time.monotonic()
    with pytest.raises(ferrolock.LockTimeout):
        lock.lock()
    assert 0.4 < time.monotonic() - t < 10
    assert not lock.acquire(timeout=0.2)


def test_sigkilled_holder_is_taken_over_after_watch_timeout(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rbd", *args(ceph_cluster, name))
    holder.expect("ACQUIRED", timeout=30)
    holder.kill()
    t = time.monotonic()
    lock = RbdLock("rbd", name, blocking=True, timeout=60, **ceph)
    assert lock.acquire()
    took = time.monotonic() - t
    lock.release()
    # about osd_client_watch_timeout (5 s here); bounded generously
    assert took < ceph_cluster.watch_timeout * 6, took


def test_nonblocking_nova_pattern_takes_over_a_dead_holder(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rbd", *args(ceph_cluster, name))
    holder.expect("ACQUIRED", timeout=30)
    holder.kill()
    deadline = time.monotonic() + ceph_cluster.watch_timeout * 8
    lock = RbdLock("rbd", name, **ceph)
    tries = 0
    while True:  # nova's periodic task: one non-blocking try per period
        tries += 1
        t = time.monotonic()
        got = lock.acquire()
        assert time.monotonic() - t < 5, "a non-blocking try must stay bounded"
        if got:
            break
        assert time.monotonic() < deadline, "never took over from the dead holder"
        time.sleep(0.5)  # the period of the caller's retry loop, not synchronisation
    lock.release()


def test_frozen_holder_loses_lock_and_learns_it(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rbd", *args(ceph_cluster, name))
    holder.expect("ACQUIRED", timeout=30)
    holder.signal(signal.SIGSTOP)
    try:
        # a non-blocking try against the frozen holder stays bounded
        lock = RbdLock("rbd", name, **ceph)
        t = time.monotonic()
        assert not lock.acquire()
        assert time.monotonic() - t < 5
        # a blocking waiter takes over once the frozen holder's watch expires (fencing it)
        waiter = RbdLock("rbd", name, blocking=True, timeout=60, **ceph)
        assert waiter.acquire()
    finally:
        holder.signal(signal.SIGCONT)
    holder.expect("ONLOST", timeout=30)
    holder.proc.stdin.write("check\nrelease\n")
    holder.proc.stdin.flush()
    assert holder.expect("OWNER", timeout=30).split()[1] == "False"
    assert holder.expect("LOST", timeout=30).split()[1] == "LockLost"
    waiter.release()
    # the fenced process gets a new connection for its next lock
    holder.proc.stdin.write("again\n")
    holder.proc.stdin.flush()
    assert holder.expect("AGAIN", timeout=60).split()[1] == "True"


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="no system python")
def test_interop_with_python_rbd(ceph_cluster, kids, ceph):
    ok = subprocess.run([SYSTEM_PYTHON, "-c", "import rbd, rados"], capture_output=True)
    if ok.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("python3-rbd missing for the system python")
        pytest.skip("python3-rbd missing for the system python")
    name = unique()
    peer = kids("hold", "pyrbd", *args(ceph_cluster, name), python=SYSTEM_PYTHON)
    peer.expect("ACQUIRED", timeout=30)
    lock = RbdLock("rbd", name, **ceph)
    assert not lock.acquire()
    assert len(lock.owners()) == 1
    # a python-rbd release wakes our blocking waiter
    waiter = RbdLock("rbd", name, blocking=True, timeout=30, **ceph)
    peer.proc.stdin.write("release\n")
    peer.proc.stdin.flush()
    assert waiter.acquire()
    peer.expect("RELEASED", timeout=10)
    # and ours blocks python-rbd
    trier = kids("try", "pyrbd", *args(ceph_cluster, name), python=SYSTEM_PYTHON)
    assert trier.expect("TRY", timeout=60).split()[1] == "False"
    waiter.release()


def test_two_processes_racing_to_create(ceph_cluster, kids):
    name = unique()
    tries = [kids("try", "rbd", *args(ceph_cluster, name)) for _ in range(3)]
    results = [t.expect("TRY", timeout=60).split()[1] for t in tries]
    assert "True" in results
    out = ceph_cluster.rbd("ls", "rbd")
    assert out.split().count(name) == 1


def test_image_without_exclusive_lock(ceph_cluster, ceph):
    name = unique("plain")
    ceph_cluster.rbd("create", "--size", "4M", "--image-feature", "layering", f"rbd/{name}")
    with pytest.raises(LockBackendError, match=r"exclusive-lock.*rbd feature enable"):
        RbdLock("rbd", name, **ceph).acquire()


def test_create_false_on_missing_image(ceph):
    with pytest.raises(LockBackendError, match="no such image"):
        RbdLock("rbd", unique(), create=False, **ceph).acquire()


def test_missing_pool(ceph):
    with pytest.raises(LockBackendError, match=r"pool \"nopool\" does not exist"):
        RbdLock("nopool", unique(), **ceph).acquire()


def test_bad_conffile(tmp_path):
    missing = tmp_path / "nope.conf"
    with pytest.raises(LockBackendError, match="configuration file"):
        RbdLock("rbd", "x", conffile=missing, rados_id="openstack").acquire()


def test_wrong_key(ceph_cluster, tmp_path):
    conf = tmp_path / "ceph.conf"
    text = ceph_cluster.conffile.read_text()
    keyring = tmp_path / "wrong.keyring"
    keyring.write_text("[client.openstack]\n\tkey = AQBm8wxrG6bEJhAAVyJu400mPHsP8rYOrHmEEA==\n")
    conf.write_text(text.replace("[client]", f"[client]\nkeyring = {keyring}"))
    t = time.monotonic()
    with pytest.raises(LockBackendError, match=r"authentication|cannot connect") as err:
        RbdLock("rbd", "x", conffile=conf, rados_id="openstack", connect_timeout=5).acquire()
    assert "AQB" not in str(err.value)
    assert time.monotonic() - t < 30


def test_unreachable_cluster_fails_within_bound(ceph_cluster, tmp_path):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "ceph.conf"
    text = ceph_cluster.conffile.read_text()
    conf.write_text(
        "\n".join(
            f"mon host = v1:127.0.0.1:{port}" if line.startswith("mon host") else line
            for line in text.splitlines()
        )
        + "\n"
    )
    t = time.monotonic()
    with pytest.raises(LockBackendError, match="cannot connect within 2 s"):
        RbdLock("rbd", "x", conffile=conf, rados_id="openstack", connect_timeout=2).acquire()
    assert time.monotonic() - t < 15


def test_break_lock_fences_the_owner(ceph_cluster, kids, ceph):
    name = unique()
    holder = kids("hold", "rbd", *args(ceph_cluster, name))
    addr = holder.expect("ACQUIRED", timeout=30).split()[1]
    lock = RbdLock("rbd", name, **ceph)
    assert lock.break_lock(addr)
    holder.expect("ONLOST", timeout=30)
    assert lock.acquire()
    lock.release()
    assert not lock.break_lock(addr)


def test_import_and_file_locks_without_ceph_libraries(tmp_path):
    """With librados/librbd hidden (bind-mounted over in a private mount namespace)."""
    libs = [
        p
        for p in (
            "/usr/lib/x86_64-linux-gnu/librados.so.2",
            "/usr/lib/x86_64-linux-gnu/librbd.so.1",
        )
        if Path(p).exists()
    ]
    if os.geteuid() != 0 or not libs or not Path("/usr/bin/unshare").exists():
        pytest.skip("needs root, unshare and the Ceph libraries to hide")
    empty = tmp_path / "empty"
    empty.write_text("")
    mounts = " && ".join(f"mount --bind {empty} {os.path.realpath(p)}" for p in libs)
    code = (
        "import ferrolock, tempfile\n"
        "d = tempfile.mkdtemp()\n"
        "with ferrolock.FileLock(d + '/f'):\n    pass\n"
        "try:\n    ferrolock.RbdLock('rbd', 'x').acquire()\n"
        "except ferrolock.LockBackendError as e:\n    print('ERR', e)\n"
    )
    script = tmp_path / "probe.py"
    script.write_text(code)
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"{mounts} && {sys.executable} {script}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "librados.so.2" in r.stdout and "librbd1" in r.stdout, r.stdout


def test_forked_child_does_not_use_parent_connection(ceph):
    name = unique()
    lock = RbdLock("rbd", name, **ceph)
    assert lock.acquire()
    parent_addr = lock.client_address()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            other = RbdLock("rbd", name, **ceph)
            busy = not other.acquire()
            addr = other.client_address()
            os.write(w, f"{busy} {addr != parent_addr}".encode())
        except BaseException as e:
            os.write(w, f"error {e}".encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    assert out == "True True", out
    assert lock.is_still_owner()
    lock.release()


def test_idle_images_are_closed_beyond_a_bound(ceph_cluster, ceph):
    """Many distinct names (rbd:// coordination) keep a bounded set of images open."""
    names = [unique("many") for _ in range(70)]
    for name in names:
        with RbdLock("rbd", name, **ceph):
            pass
    status = ceph_cluster.rbd("status", "--format", "json", f"rbd/{names[0]}")
    assert '"watchers":[]' in status.replace(" ", ""), status
    kept = ceph_cluster.rbd("status", "--format", "json", f"rbd/{names[-1]}")
    assert '"watchers":[]' not in kept.replace(" ", ""), kept


EVENTLET_WAITER = """
import eventlet
eventlet.monkey_patch()
import sys, time
from ferrolock import RbdLock
conf, rid, name = sys.argv[1:4]
lock = RbdLock("rbd", name, conffile=conf, rados_id=rid, blocking=True, timeout=60)
ticks = []
def ticker():
    while True:
        ticks.append(1)
        eventlet.sleep(0.01)
eventlet.spawn(ticker)
print("WAITING", flush=True)
got = lock.acquire()
print("GOT", got, len(ticks), flush=True)
lock.release()
"""


def test_eventlet_waiter_lets_other_greenthreads_run(ceph_cluster, kids, ceph, tmp_path):
    pytest.importorskip("eventlet")
    name = unique()
    holder = kids("hold", "rbd", *args(ceph_cluster, name))
    holder.expect("ACQUIRED", timeout=30)
    script = tmp_path / "green.py"
    script.write_text(EVENTLET_WAITER)
    waiter = Child(
        [sys.executable, str(script), str(ceph_cluster.conffile), ceph_cluster.client, name],
        env=child_env(),
    )
    try:
        waiter.expect("WAITING", timeout=30)
        # the waiter's greenthreads keep running while it waits: its ticker counts up
        time.sleep(1.0)  # lets ticks accumulate; the assertion below does not depend on timing
        holder.proc.stdin.write("release\n")
        holder.proc.stdin.flush()
        line = waiter.expect("GOT", timeout=60).split()
        assert line[1] == "True"
        assert int(line[2]) > 5, line
    finally:
        waiter.finish()
