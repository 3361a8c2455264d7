"""oslo.concurrency waiters poll (fasteners: a ``lockf`` try every 10-100 ms) and are never woken;
a busy ferrolock process that re-takes the lock within microseconds must still let them in
(rolling upgrades run both). Measured with bench/oslo_starvation.py: an oslo process needing
the lock 10 times next to 2 ferrolock threads holding it ~2 ms in a loop. Before: 37 s for the
10 takes (one take waited 10.5 s; 10-27 s in the issue); oslo next to oslo: under 5 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testutil import Child, child_env, wait_until

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "oslo_starvation.py"


def _run(*args: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env or child_env(),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_an_oslo_process_gets_in_next_to_a_busy_ferrolock_service() -> None:
    # A generous bound (the busy loop stops after 30 s): starved, the oslo process finishes
    # only once the loop stops; served, its 10 takes need a few seconds.
    result = _run("--busy", "ferrolock", "--takes", "10", "--limit", "30")
    assert result["finished_while_busy"], result


BUSY = """
import sys, threading, time
from ferrolock import lockutils

stop = threading.Event()

def loop():
    while not stop.is_set():
        with lockutils.lock("starved", external=True, lock_path=sys.argv[1]):
            end = time.perf_counter() + 0.002
            while time.perf_counter() < end:
                pass

threads = [threading.Thread(target=loop) for _ in range(2)]
for t in threads:
    t.start()
print("BUSY", flush=True)
sys.stdin.read()
stop.set()
for t in threads:
    t.join()
"""

OSLO_TAKER = """
import sys
from oslo_concurrency import lockutils

for i in range(5):
    with lockutils.lock("starved", external=True, lock_path=sys.argv[1]):
        print("TOOK", i, flush=True)
print("DONE", flush=True)
"""


def _watches_a_file(pid: int) -> bool:
    """Whether process ``pid`` has an inotify instance with a watch (its fdinfo lists it)."""
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) != "anon_inode:inotify":
                continue
            if "inotify wd:" in Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text():
                return True
        except OSError:
            continue
    return False


@pytest.mark.timeout(120)
def test_an_open_of_the_lock_file_alone_lets_an_oslo_waiter_in(tmp_path: Path) -> None:
    # No periodic windows here (test hook): only the busy process's inotify watch, which sees
    # the oslo process open the lock file, can let it in. Without it the oslo process starves
    # until the busy loop stops, far beyond the bound below.
    env = child_env(_FERROLOCK_TEST_PERIODIC="0")
    busy = Child([sys.executable, "-c", BUSY, str(tmp_path)], env=env)
    try:
        busy.expect("BUSY", timeout=30)
        wait_until(lambda: _watches_a_file(busy.pid), 30, "the busy process watches its file")
        taker = Child([sys.executable, "-c", OSLO_TAKER, str(tmp_path)])
        try:
            taker.expect("DONE", timeout=30)
            assert taker.wait(30) == 0, taker.stderr
        finally:
            taker.finish()
        assert busy.proc.poll() is None, busy.stderr
    finally:
        busy.release()
        busy.finish()


LINGER = """
import os, sys, time
import ferrolock

def instances():
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return n

def run_until_watched(lock):
    # Back-to-back holds: a run, which watches its file once 50 ms long.
    give_up = time.monotonic() + 30
    while not instances():
        assert time.monotonic() < give_up, "a busy run never watched its file"
        with lock:
            pass

def other_use_ends_it(other):
    # Uses 0.2 s apart are no run of their own; each may sweep the ended run's watch away.
    give_up = time.monotonic() + 30
    while instances():
        assert time.monotonic() < give_up, "the ended run kept its inotify instance"
        time.sleep(0.2)
        with other:
            pass

d = sys.argv[1]
busy = ferrolock.FileLock(os.path.join(d, "busy"))
other = ferrolock.FileLock(os.path.join(d, "other"))
run_until_watched(busy)
pid = os.fork()
if pid == 0:
    # The parent's instance is not the child's; the child watches with its own.
    try:
        assert instances() == 0, "the child kept the parent's instance"
        run_until_watched(ferrolock.FileLock(os.path.join(d, "child")))
        other_use_ends_it(other)
    except AssertionError as e:
        print("CHILD", e, flush=True)
        os._exit(1)
    os._exit(0)
other_use_ends_it(other)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, "child failed"
print("ENDED", flush=True)
"""


@pytest.mark.timeout(180)
def test_an_ended_run_gives_back_its_inotify_instance_at_the_next_lock_use(
    tmp_path: Path,
) -> None:
    # Instances are a per-user quota (128): a process gone idle after a busy run must not keep
    # one until it takes that same lock again. Also in a forked child, which watches with its
    # own instance and never the parent's.
    done = subprocess.run(
        [sys.executable, "-c", LINGER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=150,
        env=child_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ENDED" in done.stdout
