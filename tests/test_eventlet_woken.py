"""Under eventlet a waiting greenthread is woken, not polled: a helper thread waits on the real
lock for it while the hub runs every other greenthread (or, for a plain in-process lock only
this OS thread uses, the holder's release wakes it in the hub), and whatever ends the wait (the
lock, a timeout, a kill, eventlet.Timeout) leaves nothing held.

Each case runs in a fresh interpreter that monkey-patches before importing ferrolock. Readiness
is probed, never slept for: greenthreads are cooperative, so a ticker turn that follows the
waiter's "about to wait" mark proves the waiter is inside its wait (it only yields there).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from testutil import run_python

pytestmark = pytest.mark.timeout(120)

KINDS = ["internal", "fair", "semaphore", "rw-write", "file", "external", "oslo-external"]

_PRELUDE = """
import warnings
warnings.simplefilter("ignore")
import eventlet
eventlet.monkey_patch()
import os, sys
import ferrolock
from ferrolock import lockutils

kind, lock_dir = sys.argv[1], sys.argv[2]
rw = ferrolock.ReaderWriterLock()

class RwWrite:
    # the write side of one private reader-writer lock, owned by the calling greenthread
    def acquire(self, blocking=True, timeout=None):
        return rw.acquire_write(blocking, timeout)
    def release(self):
        rw.release_write()

def make():
    if kind == "internal":
        return ferrolock.InternalLock("woken")
    if kind == "fair":
        return lockutils.lock("woken", fair=True)
    if kind == "semaphore":
        return ferrolock.Semaphore("woken", 1)
    if kind == "rw-write":
        return RwWrite()
    if kind == "file":
        return ferrolock.FileLock(os.path.join(lock_dir, "woken"))
    if kind == "oslo-external":
        return lockutils.lock("woken", external=True, lock_path=lock_dir)
    return lockutils.external_lock("woken", lock_path=lock_dir)

ticks = [0]
def ticker():
    while True:
        ticks[0] += 1
        eventlet.sleep(0.001)
eventlet.spawn(ticker)

def helpers():
    # helper threads of ferrolock's woken waits (named by the pool)
    names = []
    for t in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{t}/comm") as f:
            names.append(f.read().strip())
    return sum(1 for n in names if n.startswith("ferrolock-wait"))

def until(cond, what, limit=10.0):
    deadline = eventlet.hubs.get_hub().clock() + limit
    while not cond():
        if eventlet.hubs.get_hub().clock() > deadline:
            print("TIMEOUT", what, flush=True)
            os._exit(3)
        eventlet.sleep(0.001)

def waiting(mark):
    # the waiter marked itself just before acquiring: ticks after the mark mean it yielded
    # inside the wait
    until(lambda: mark[0] is not None and ticks[0] > mark[0] + 5, "waiter never waited")
"""


def _run(kind: str, body: str, tmp_path) -> None:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir(exist_ok=True)
    r = run_python(_PRELUDE + body, kind, lock_dir, timeout=90)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "OK" in r.stdout.split(), (r.stdout, r.stderr)


@pytest.mark.parametrize("kind", KINDS)
def test_a_release_by_another_greenthread_wakes_the_waiter_while_the_hub_runs(
    kind, tmp_path
) -> None:
    _run(
        kind,
        """
holder, waiter = make(), make()
assert holder.acquire()
mark, got = [None], []
def wait():
    mark[0] = ticks[0]
    got.append(waiter.acquire(timeout=30))
    waiter.release()
gt = eventlet.spawn(wait)
waiting(mark)
# the hub keeps running other greenthreads while one waits, and a helper waits for it
before = ticks[0]
until(lambda: ticks[0] >= before + 20, "ticker stalled")
if kind in ("internal", "oslo-external"):
    # only this OS thread uses the lock: the waiter sleeps in the hub, registered for the
    # holder's release to wake, with no helper thread and no descriptor in the hub
    assert holder._waiters() == 1, "the waiter is not registered for a wake-up"
    assert helpers() == 0, "a helper thread waits for a lock only this OS thread uses"
    assert not eventlet.hubs.get_hub().listeners["read"], "a descriptor in the hub"
else:
    assert helpers() >= 1, "no helper thread: the wait was not handed over"
assert not got
holder.release()
gt.wait()
assert got == [True], got
assert make().acquire(blocking=False)
print("OK")
""",
        tmp_path,
    )


@pytest.mark.parametrize(
    "kind", ["internal", "fair", "semaphore", "file", "external", "oslo-external"]
)
def test_a_release_by_another_os_thread_wakes_the_waiter(kind, tmp_path) -> None:
    _run(
        kind,
        """
real_threading = eventlet.patcher.original("threading")
held, go, done = real_threading.Event(), real_threading.Event(), real_threading.Event()
def hold_in_real_thread():
    lk = make()
    assert lk.acquire()
    held.set()
    go.wait()
    lk.release()
    done.set()
t = real_threading.Thread(target=hold_in_real_thread, daemon=True)
t.start()
until(held.is_set, "real thread never held")
mark, got = [None], []
def wait():
    mark[0] = ticks[0]
    lk = make()
    got.append(lk.acquire(timeout=30))
    lk.release()
gt = eventlet.spawn(wait)
waiting(mark)
go.set()
gt.wait()
assert got == [True], got
print("OK")
""",
        tmp_path,
    )


@pytest.mark.parametrize("kind", ["internal", "oslo-external"])
def test_an_os_thread_that_begins_using_the_lock_does_not_strand_sleeping_greenthreads(
    kind, tmp_path
) -> None:
    """Greenthreads asleep in the hub for a lock only their OS thread used, when a real thread
    starts taking it too: its releases cannot wake the hub, so they go on through helpers, and
    every one of them gets the lock."""
    _run(
        kind,
        """
real_threading = eventlet.patcher.original("threading")
holder = make()
assert holder.acquire()
marks, got = [], []
def wait(i):
    marks.append(ticks[0])
    lk = make()
    got.append(lk.acquire(timeout=30))
    lk.release()
gts = [eventlet.spawn(wait, i) for i in range(3)]
until(lambda: holder._waiters() == 3, "greenthreads never asleep for the lock")
assert helpers() == 0
real_got = []
def real_thread():
    lk = make()
    for _ in range(20):
        real_got.append(lk.acquire(timeout=30))
        lk.release()
t = real_threading.Thread(target=real_thread, daemon=True)
t.start()
# the real thread is asleep for the lock: from now on it is shared
until(lambda: holder._waiters() == 4, "the real thread never waited")
holder.release()
for gt in gts:
    gt.wait()
until(lambda: len(real_got) == 20, "the real thread never finished")
assert got == [True] * 3 and real_got == [True] * 20, (got, real_got)
assert make().acquire(blocking=False)
print("OK")
""",
        tmp_path,
    )


def test_a_thread_that_only_gives_the_lock_back_makes_it_shared(tmp_path) -> None:
    """A plain lock may be given back by any thread (threading.Semaphore(1) semantics): once a
    native thread has, the lock counts as used by several OS threads, so later green waits go
    through helpers (a release there could not reach the hub), and every waiter gets it."""
    _run(
        "internal",
        """
real_threading = eventlet.patcher.original("threading")
lk = make()
got = []
def waiter():
    with make():
        got.append(True)
for round_ in range(3):
    assert lk.acquire()
    gt = eventlet.spawn(waiter)
    until(lambda: lk._waiters() >= 1 or helpers() >= 1, "the waiter never waited")
    if round_ > 0:
        assert helpers() >= 1, "a green-only wait for a lock another OS thread gives back"
    t = real_threading.Thread(target=lk.release)
    t.start()
    t.join()
    gt.wait()
assert got == [True] * 3, got
assert make().acquire(blocking=False)
print("OK")
""",
        tmp_path,
    )


def test_a_forked_child_with_a_new_hub_forgets_the_parents_sleepers(tmp_path) -> None:
    """Greenthreads asleep for a lock at a fork are copied into the child; a child that makes a
    new hub (oslo.service's workers call use_hub()) never runs them again, so its releases
    must not keep scheduling wake-ups on the dead hub."""
    code = (
        _PRELUDE
        + """
lk = make()
assert lk.acquire()
def waiter():
    with make():
        pass
eventlet.spawn(waiter)
until(lambda: lk._waiters() == 1, "the waiter never waited")
pid = os.fork()
if pid == 0:
    old_hub = eventlet.hubs.get_hub()
    eventlet.hubs.use_hub()
    lk.release()
    before = len(old_hub.next_timers)
    for _ in range(1000):
        with make():
            pass
    ok = len(old_hub.next_timers) == before and lk._waiters() == 0
    os._exit(0 if ok else 7)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
lk.release()
print("OK")
"""
    )
    r = run_python(code, "internal", tmp_path, timeout=90)
    assert r.returncode == 0 and "OK" in r.stdout, (r.stdout, r.stderr)


@pytest.mark.parametrize("kind", ["file", "external", "oslo-external"])
def test_a_release_by_another_process_wakes_the_waiter(kind, tmp_path) -> None:
    _run(
        kind,
        """
import subprocess
path = (os.path.join(lock_dir, "woken") if kind == "file"
        else ferrolock._native.lock_file_path(lock_dir, "woken"))
if kind == "oslo-external":
    # the name's in-process lock is free: the greenthread takes it, then waits for the file
    assert make()._waiters() == 0
other = subprocess.Popen(
    [sys.executable, "-c",
     "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.lockf(f, fcntl.LOCK_EX); "
     "print('held', flush=True); sys.stdin.readline()", path],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
)
assert other.stdout.readline().strip() == "held"
mark, got = [None], []
def wait():
    mark[0] = ticks[0]
    lk = make()
    got.append(lk.acquire(timeout=30))
    lk.release()
gt = eventlet.spawn(wait)
waiting(mark)
assert not got
other.stdin.write("go\\n")
other.stdin.flush()
gt.wait()
other.wait()
assert got == [True], got
print("OK")
""",
        tmp_path,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_timed_out_wait_holds_nothing(kind, tmp_path) -> None:
    _run(
        kind,
        """
holder = make()
assert holder.acquire()
got = []
def wait():
    got.append(make().acquire(timeout=0.05))
eventlet.spawn(wait).wait()
assert got == [False], got
holder.release()
lk = make()
assert lk.acquire(blocking=False), "the timed-out wait left the lock held"
lk.release()
print("OK")
""",
        tmp_path,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_or_timed_out_greenthread_holds_nothing(kind, tmp_path) -> None:
    """Killed while the helper waits, and killed right after a release the helper may already
    have won: either way the lock comes free again."""
    _run(
        kind,
        """
for rnd in range(30):
    holder = make()
    assert holder.acquire()
    mark = [None]
    def wait():
        mark[0] = ticks[0]
        lk = make()
        if rnd % 3 == 2:
            try:
                with eventlet.Timeout(0.01):
                    lk.acquire()
            except eventlet.Timeout:
                return
        else:
            lk.acquire()
        raise AssertionError("the killed waiter went on")
    gt = eventlet.spawn(wait)
    waiting(mark)
    if rnd % 3 == 0:
        holder.release()  # the helper may win it before the kill lands
        gt.kill()
    else:
        if rnd % 3 == 1:
            gt.kill()
        else:
            gt.wait()
        holder.release()
    # a hold the helper got anyway is given back (by a helper: not at once)
    lk = make()
    assert lk.acquire(timeout=10), f"round {rnd}: still held after the waiter was killed"
    lk.release()
print("OK")
""",
        tmp_path,
    )


def test_a_forked_child_waits_with_its_own_helper(tmp_path) -> None:
    """A wait begun after fork in the child gets a helper of the child's (the parent's pool
    threads are not there)."""
    code = (
        _PRELUDE
        + """
holder = make()
assert holder.acquire()
mark, got = [None], []
def wait():
    mark[0] = ticks[0]
    lk = make(); got.append(lk.acquire(timeout=30)); lk.release()
gt = eventlet.spawn(wait)
waiting(mark)
holder.release()
gt.wait()
pid = os.fork()
if pid == 0:
    eventlet.hubs.use_hub()
    ticks[0] = 0
    eventlet.spawn(ticker)
    h = make(); assert h.acquire()
    mark2, got2 = [None], []
    def wait2():
        mark2[0] = ticks[0]
        lk = make(); got2.append(lk.acquire(timeout=30)); lk.release()
    g2 = eventlet.spawn(wait2)
    waiting(mark2)
    h.release()
    g2.wait()
    os._exit(0 if got2 == [True] else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
print("OK")
"""
    )
    r = run_python(code, "internal", tmp_path, timeout=90)
    assert r.returncode == 0 and "OK" in r.stdout, (r.stdout, r.stderr)


def test_the_woken_rows_keep_the_interpreter_exit_clean(tmp_path) -> None:
    """A greenthread still waiting at exit does not keep the process alive or crash it."""
    code = (
        _PRELUDE
        + """
holder = make()
assert holder.acquire()
mark = [None]
def wait():
    mark[0] = ticks[0]
    make().acquire()
eventlet.spawn(wait)
waiting(mark)
print("OK", flush=True)
"""
    )
    r = subprocess.run(
        [sys.executable, "-c", code, "internal", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "OK" in r.stdout


@pytest.mark.parametrize("kind", ["internal", "fair", "file"])
def test_an_os_thread_of_a_patched_process_waits_too(kind, tmp_path) -> None:
    """A native thread (eventlet's tpool, a library's thread) waits with a hub of its own and a
    helper, while the main hub's greenthreads go on running."""
    _run(
        kind,
        """
real_threading = eventlet.patcher.original("threading")
holder = make()
assert holder.acquire()
started, got = real_threading.Event(), []
def wait_in_real_thread():
    lk = make()
    started.set()
    got.append(lk.acquire(timeout=30))
    lk.release()
t = real_threading.Thread(target=wait_in_real_thread, daemon=True)
t.start()
until(started.is_set, "real thread never started")
until(lambda: helpers() >= 1, "the real thread's wait was not handed over")
before = ticks[0]
until(lambda: ticks[0] >= before + 20, "ticker stalled")
holder.release()
until(lambda: bool(got), "the real thread never got the lock")
assert got == [True], got
print("OK")
""",
        tmp_path,
    )
