"""MySQLLock against a real MariaDB: exclusion across processes and threads, holders that die
or freeze, killed sessions, server restarts, names, bad URLs and servers, fork."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from ferrolock import LockBackendError, LockLost, LockUsageError, MySQLLock

from testutil import Child, child_env

CHILD = Path(__file__).resolve().parent / "mysql_child.py"


def spawn(*args: str) -> Child:
    return Child([sys.executable, str(CHILD), *args], env=child_env())


@pytest.fixture
def children():
    started: list[Child] = []

    def _spawn(*args: str) -> Child:
        c = spawn(*args)
        started.append(c)
        return c

    yield _spawn
    for c in started:
        c.finish()


def kill_session(url: str, connection_id: int) -> None:
    """KILL CONNECTION through a session of our own (the test user may kill its own)."""
    import pymysql

    parts = pymysql_args(url)
    conn = pymysql.connect(**parts)
    try:
        with conn.cursor() as cur:
            cur.execute(f"KILL CONNECTION {int(connection_id)}")
    finally:
        conn.close()


def pymysql_args(url: str) -> dict[str, object]:
    from urllib.parse import unquote, urlsplit

    u = urlsplit(url.split("?", 1)[0])
    return {
        "host": u.hostname,
        "port": u.port or 3306,
        "user": unquote(u.username or ""),
        "password": unquote(u.password or ""),
        "database": u.path.lstrip("/"),
    }


def test_exclusion_3_processes_x_4_threads(mysql_url, lock_name, tmp_path, children):
    log = tmp_path / "intervals.log"
    counter = tmp_path / "counter"
    counter.write_text("0")
    iters = 25
    procs = [
        children("worker", mysql_url, lock_name, "4", str(iters), str(log), str(counter))
        for _ in range(3)
    ]
    for p in procs:
        p.expect("done", timeout=120)
        assert p.wait(timeout=30) == 0, p.stderr()
    assert int(counter.read_text()) == 3 * 4 * iters
    spans = sorted(tuple(map(int, line.split()[:2])) for line in log.read_text().splitlines())
    assert len(spans) == 3 * 4 * iters
    for (_, e1), (s2, _) in zip(spans, spans[1:]):
        assert e1 <= s2, "two holders inside at once"


def test_try_timeout_and_holder(mysql_url, lock_name):
    a = MySQLLock(mysql_url, lock_name)
    b = MySQLLock(mysql_url, lock_name)
    assert a.acquire()
    assert a.locked() and a.is_still_owner()
    started = time.monotonic()
    assert not b.acquire(blocking=False)
    assert time.monotonic() - started < 5
    started = time.monotonic()
    assert not b.acquire(timeout=0.5)
    waited = time.monotonic() - started
    assert 0.4 <= waited < 10
    holder = b.holder()
    assert holder is not None
    assert holder["connection_id"] == a.connection_id
    assert holder["user"] == "ferrolock" or holder["user"] is None
    a.release()
    with pytest.raises(LockUsageError):
        a.release()
    assert b.holder() is None
    with b:
        assert not a.acquire(False)
    assert "pw-" not in repr(a) and "***" in a.url


def test_connections_are_reused(mysql_url, lock_name):
    lock = MySQLLock(mysql_url, lock_name + "-reuse")
    before = lock.connections_opened
    for _ in range(200):
        with MySQLLock(mysql_url, lock_name + "-reuse"):
            pass
    assert lock.connections_opened - before <= 2


def test_sigkill_holder_frees_the_lock(mysql_url, lock_name, children):
    holder = children("holder", mysql_url, lock_name)
    holder.expect("held", timeout=30)
    lock = MySQLLock(mysql_url, lock_name)
    assert not lock.acquire(False)
    holder.kill()
    started = time.monotonic()
    assert lock.acquire(timeout=10)
    assert time.monotonic() - started < 2.0
    lock.release()


def test_sigstop_holder_loses_the_lock_after_wait_timeout(mysql_server, lock_name, children):
    url = mysql_server.url_with(wait_timeout=2)
    holder = children("holder", url, lock_name)
    holder.expect("held", timeout=30)
    lock = MySQLLock(mysql_server.url, lock_name)
    holder.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert lock.acquire(timeout=20), "the server never freed the frozen holder's lock"
        assert time.monotonic() - started < 15
    finally:
        holder.signal(signal.SIGCONT)
    assert holder.proc.stdin is not None
    holder.proc.stdin.write("check\n")
    holder.proc.stdin.flush()
    assert holder.expect("owner", timeout=20) == "owner False"
    assert holder.expect("release", timeout=20).startswith("release lost")
    assert holder.expect("on_lost", timeout=20) == "on_lost 1"
    lock.release()


def test_killed_session_is_noticed(mysql_server, lock_name):
    lost = threading.Event()
    reasons: list[str] = []

    def on_lost(name: str, reason: str) -> None:
        reasons.append(reason)
        lost.set()

    lock = MySQLLock(mysql_server.url, lock_name, on_lost=on_lost)
    assert lock.acquire()
    kill_session(mysql_server.url, lock.connection_id)
    started = time.monotonic()
    assert lost.wait(10), "on_lost never called"
    assert time.monotonic() - started < 2.0
    assert not lock.is_still_owner()
    with pytest.raises(LockLost):
        lock.release()
    other = MySQLLock(mysql_server.url, lock_name)
    assert other.acquire(False)
    other.release()
    assert len(reasons) == 1


def test_server_restart(mysql_server, lock_name):
    server = mysql_server.require_own()
    idle = MySQLLock(mysql_server.url, lock_name + "-idle")
    with idle:
        pass  # leaves an idle pooled session
    lost = threading.Event()
    held = MySQLLock(mysql_server.url, lock_name + "-held", on_lost=lambda n, r: lost.set())
    assert held.acquire()
    server.restart()
    assert lost.wait(10), "the holder never learned the server restarted"
    assert not held.is_still_owner()
    with pytest.raises(LockLost):
        held.release()
    # The pooled idle session died with the server: the next acquire still works.
    assert idle.acquire(timeout=10)
    idle.release()


def test_names_collide_only_with_themselves(mysql_url, lock_name):
    names = [
        lock_name + "-" + "long" * 30,
        lock_name + "-" + "long" * 30 + "-other",
        lock_name + '-it\'s "quoted" \\ back\\slash',
        lock_name + "-verrou-éàü-日本",
        lock_name + "-" + "日本" * 60,
        lock_name + "-CASE",
        lock_name + "-case",
    ]
    locks = [MySQLLock(mysql_url, n) for n in names]
    for lock in locks:
        assert lock.acquire(False), lock.name
        assert len(lock.server_name) <= 64
    for n in names:
        assert not MySQLLock(mysql_url, n).acquire(False)
    for lock in locks:
        lock.release()


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("postgres://u:hunter2@h/db", "scheme"),
        ("mysql://u:hunter2@h:99999/db", "port"),
        ("mysql://u:hunter2@/db", "host"),
        ("mysql://u:hunter2@h/db?wait_timeout=x", "wait_timeout"),
        ("mysql://u:hunter2@h/db?bogus=1", "options"),
    ],
)
def test_bad_urls(url, part):
    with pytest.raises(ValueError, match=part) as info:
        MySQLLock(url, "n")
    assert "hunter2" not in str(info.value)


def _assert_clean_failure(url: str, secret: str) -> None:
    lock = MySQLLock(url, "n")
    started = time.monotonic()
    with pytest.raises(LockBackendError) as info:
        lock.acquire(timeout=30)
    assert time.monotonic() - started < 15
    assert isinstance(info.value, ConnectionError)
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in repr(lock)


def test_wrong_password(mysql_url):
    args = pymysql_args(mysql_url)
    secret = "wrong-" + str(os.getpid())
    _assert_clean_failure(
        f"mysql://{args['user']}:{secret}@{args['host']}:{args['port']}/{args['database']}", secret
    )


def test_refused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _assert_clean_failure(f"mysql://u:sekrit99@127.0.0.1:{port}/db", "sekrit99")


def test_server_that_never_answers():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # the kernel completes handshakes; nobody ever speaks
        port = s.getsockname()[1]
        _assert_clean_failure(f"mysql://u:sekrit99@127.0.0.1:{port}/db?read_timeout=1", "sekrit99")


def test_forked_child_never_touches_the_parents_session(mysql_url, lock_name):
    lock = MySQLLock(mysql_url, lock_name)
    assert lock.acquire()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # The parent's hold is not ours: releasing it is refused, nothing is sent.
            try:
                lock.release()
            except LockUsageError:
                mine = MySQLLock(mysql_url, lock_name + "-child")
                code = 0 if mine.acquire(False) and not lock.locked() else 2
                mine.release()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert lock.is_still_owner(), "the child ended or released the parent's session"
    lock.release()


def test_eventlet_greenthreads(mysql_url, lock_name, children):
    pytest.importorskip("eventlet")
    child = children("green", mysql_url, lock_name, "5", "10")
    line = child.expect("done", timeout=120)
    _, finished, ticks = line.split()
    assert int(finished) == 5
    assert int(ticks) > 0, "waiting greenthreads stopped the others"
    assert child.wait(timeout=30) == 0, child.stderr()


def test_galera_refused_then_allowed(galera_server):
    with pytest.raises(LockBackendError, match="Galera") as info:
        MySQLLock(galera_server.url, "g").acquire(timeout=30)
    assert galera_server.password not in str(info.value)
    lock = MySQLLock(galera_server.url + "?allow_galera=true", "g")
    assert lock.acquire(timeout=30)
    lock.release()
