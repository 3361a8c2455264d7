"""A signal that arrives while a native acquire is taking the lock never leaves it held.

CPython raises a pending signal's exception at the first check after a native call returns,
before the caller can record the hold (``InterProcessLock.acquire`` sets ``acquired``, a
``try``/``finally`` starts): a lock taken in that call would be held by nobody. So the native
acquire itself must raise the exception, having given the lock back.

Each scenario runs in a child interpreter, where SIGINT is sent with ``signal.pthread_kill``
to a helper thread: its C handler only marks the signal pending, so the main thread's own wait
is not cut short and the acquire does win with the signal pending.
"""

from __future__ import annotations

import json

import pytest

from testutil import run_python

_KINDS = """
import json, os, queue, signal, sys, threading
from ferrolock import _native, lockutils

kind, directory = sys.argv[1], sys.argv[2]

def make():
    if kind == "filelock":
        return _native.FileLock(os.path.join(directory, "x"))
    if kind == "interprocess":
        return lockutils.external_lock("x", lock_path=directory)
    if kind == "internal":
        return _native.internal_lock("x")
    if kind == "fair":
        return _native.InternalLock("x", True)
    if kind == "fair-lock":
        return _native.fair_lock("x")
    if kind == "semaphore":
        return _native.Semaphore("x", 1)
    raise SystemExit(f"unknown kind {kind}")

def free():
    # Another object of the same name, tried from another thread (a fair lock is re-entrant
    # for its owner thread): this try fails while anything holds it.
    result = []
    def probe():
        other = make()
        got = other.acquire(blocking=False)
        if got:
            other.release()
        result.append(got)
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return result[0]
"""

# The signal is marked pending while the main thread is inside one chain of C calls that ends
# in the acquire (list -> map -> callable iterator -> SimpleQueue.get, then acquire): no
# bytecode runs in between, so nothing raises it before the acquire takes the lock.
_FIRST_TRY = (
    _KINDS
    + """
lk = make()
for attempt in range(200):
    q = queue.SimpleQueue()
    ready = threading.Event()
    def signaller():
        ready.wait()
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        q.put(True)
        q.put(None)
    t = threading.Thread(target=signaller)
    t.start()
    interrupted = False
    try:
        ready.set()
        list(map(lk.acquire, iter(q.get, None)))
    except KeyboardInterrupt:
        interrupted = True
    t.join()
    if q.qsize() < 2:  # the acquire ran (took the first item), with the signal pending
        print(json.dumps({"interrupted": interrupted, "free": free()}))
        break
else:
    print(json.dumps({"reached": False}))
"""
)

# The main thread waits (its probe shows it asleep); the holder marks SIGINT pending in its own
# thread, then lets go, so the wait wins with the signal pending.
_AFTER_WAIT = (
    _KINDS
    + """
import time
held = threading.Event()
def holder():
    holder_lock = make()
    assert holder_lock.acquire()
    held.set()
    probe = holder_lock if kind != "interprocess" else holder_lock._lock
    deadline = time.monotonic() + 10
    while probe._waiters() == 0:
        assert time.monotonic() < deadline, "the waiter never slept"
        time.sleep(0.001)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    holder_lock.release()
t = threading.Thread(target=holder)
t.start()
assert held.wait(10)
waiter = make()
interrupted = False
try:
    waiter.acquire()
except KeyboardInterrupt:
    interrupted = True
t.join()
print(json.dumps({"interrupted": interrupted, "free": free()}))
"""
)


def _run(code: str, kind: str, tmp_path) -> dict:
    done = run_python(code, kind, str(tmp_path), timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["filelock", "internal", "fair", "fair-lock", "semaphore"])
def test_a_signal_pending_when_the_first_try_wins_leaves_nothing_held(kind, tmp_path):
    report = _run(_FIRST_TRY, kind, tmp_path)
    assert report.get("reached", True), "the acquire never ran with the signal pending"
    assert report["interrupted"], report
    assert report["free"], f"the lock stayed held after KeyboardInterrupt: {report}"


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "kind", ["filelock", "interprocess", "internal", "fair", "fair-lock", "semaphore"]
)
def test_a_signal_pending_when_a_wait_wins_leaves_nothing_held(kind, tmp_path):
    report = _run(_AFTER_WAIT, kind, tmp_path)
    assert report["interrupted"], report
    assert report["free"], f"the lock stayed held after KeyboardInterrupt: {report}"
