"""ferrolock.coordination: cinder's API and tooz's lock interface, on file:// and mysql://,
compared with tooz itself where it matters."""

from __future__ import annotations

import logging
import os
import time
from types import SimpleNamespace

import pytest

from ferrolock import coordination
from ferrolock.coordination import Coordinator, LockAcquireFailed, UnsupportedBackend


@pytest.fixture(params=["file", "mysql"])
def coordinator(request, tmp_path, mysql_server):
    url = f"file://{tmp_path}" if request.param == "file" else mysql_server.url
    c = Coordinator(prefix=f"t{os.getpid()}-")
    c.start(backend_url=url)
    yield c
    c.stop()


def test_tooz_lock_interface(coordinator, lock_name):
    a = coordinator.get_lock(lock_name)
    b = coordinator.get_lock(lock_name)
    assert a.name == coordinator.prefix + lock_name
    assert a.acquire() is True
    assert a.is_still_owner()
    started = time.monotonic()
    assert b.acquire(False) is False
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    assert b.acquire(blocking=0.5) is False
    assert 0.4 <= time.monotonic() - started < 10
    with pytest.raises(LockAcquireFailed):
        with b(False):
            pass
    assert a.release() is True
    assert a.release() is False
    with b(0.5):
        assert not a.acquire(False)
    with b:
        pass
    assert b.break_() is False


def test_synchronized_formats_names_and_sorts(coordinator, caplog):
    taken: list[str] = []
    original = coordinator.get_lock

    def spy(name: str):
        taken.append(name)
        return original(name)

    coordinator.get_lock = spy  # type: ignore[method-assign]

    @coordination.synchronized(
        "{volume.id}-{f_name}", "{snap[name]}", "{volume.id}-{f_name}", coordinator=coordinator
    )
    def delete_volume(context: object, volume: object, snap: dict[str, str]) -> str:
        """Docstring kept."""
        return "deleted"

    assert delete_volume.__name__ == "delete_volume"
    assert delete_volume.__doc__ == "Docstring kept."
    with caplog.at_level(logging.DEBUG, logger="ferrolock.coordination"):
        assert delete_volume(None, SimpleNamespace(id="v1"), {"name": "s1"}) == "deleted"
    assert taken == sorted({"v1-delete_volume", "s1"})
    messages = [r.getMessage() for r in caplog.records]
    assert any('acquired by "delete_volume" :: waited' in m for m in messages)
    assert any('released by "delete_volume" :: held' in m for m in messages)


def test_synchronized_non_blocking_raises(coordinator, lock_name):
    @coordination.synchronized(lock_name, blocking=False, coordinator=coordinator)
    def work() -> None:
        pass

    holder = coordinator.get_lock(lock_name)
    assert holder.acquire()
    try:
        with pytest.raises(LockAcquireFailed):
            work()
    finally:
        holder.release()
    work()


def test_remove_lock_globs_files(tmp_path):
    c = Coordinator(prefix="cinder-")
    c.start(backend_url=f"file://{tmp_path}")
    with c.get_lock("vol-1-delete"):
        pass
    with c.get_lock("vol-2-delete"):
        pass
    assert (tmp_path / "cinder-vol-1-delete").exists()
    coordination.synchronized_remove("vol-1-*", coordinator=c)
    assert not (tmp_path / "cinder-vol-1-delete").exists()
    assert (tmp_path / "cinder-vol-2-delete").exists()


def test_uninitialized_and_unknown_scheme(monkeypatch):
    c = Coordinator()
    with pytest.raises(Exception, match="uninitialized"):
        c.get_lock("x")
    import ferrolock.coordination._backends as backends

    real_import = __builtins__["__import__"] if isinstance(__builtins__, dict) else __import__

    def no_tooz(name, *args, **kwargs):
        if name.startswith("tooz"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", no_tooz)
    with pytest.raises(UnsupportedBackend, match="mysql://"):
        backends.make_backend("zookeeper://h:2181", b"me")


def test_backend_url_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FERROLOCK_COORDINATION_URL", f"file://{tmp_path}")
    c = Coordinator()
    c.start()
    assert c.backend_url == f"file://{tmp_path}"
    c.stop()


# tooz imports eventlet somewhere in its tree, which warns at import.
@pytest.mark.filterwarnings("ignore::Warning")
def test_other_schemes_go_to_tooz(monkeypatch):
    tooz_coordination = pytest.importorskip("tooz.coordination")
    calls: list[tuple[str, bytes]] = []

    class FakeDriver:
        def start(self, start_heart: bool = False) -> None:
            calls.append(("start", b""))

        def get_lock(self, name: bytes) -> str:
            return "tooz-lock:" + name.decode()

        def stop(self) -> None:
            pass

    def get_coordinator(url: str, member_id: bytes) -> FakeDriver:
        calls.append((url, member_id))
        return FakeDriver()

    monkeypatch.setattr(tooz_coordination, "get_coordinator", get_coordinator)
    c = Coordinator(agent_id="a1", prefix="cinder-")
    c.start(backend_url="etcd3+http://127.0.0.1:2379")
    assert calls == [("etcd3+http://127.0.0.1:2379", b"cinder-a1"), ("start", b"")]
    assert c.get_lock("x") == "tooz-lock:cinder-x"
    c.stop()


@pytest.mark.filterwarnings("ignore::Warning")
def test_mysql_interoperates_with_tooz(mysql_server, lock_name):
    tooz_coordination = pytest.importorskip("tooz.coordination")
    pytest.importorskip("pymysql")
    tooz = tooz_coordination.get_coordinator(mysql_server.url, b"tooz-member")
    tooz.start()
    try:
        ours = Coordinator(prefix="cinder-")
        ours.start(backend_url=mysql_server.url)
        theirs = tooz.get_lock(("cinder-" + lock_name).encode())
        assert theirs.acquire(blocking=False)
        try:
            assert ours.get_lock(lock_name).acquire(False) is False
        finally:
            theirs.release()
        mine = ours.get_lock(lock_name)
        assert mine.acquire(False)
        assert theirs.acquire(blocking=False) is False
        mine.release()
    finally:
        tooz.stop()


def test_module_coordinator_is_cinders():
    assert coordination.COORDINATOR.prefix == "cinder-"


def test_cli_demo_on_mysql(mysql_server):
    import subprocess
    import sys

    argv = [sys.executable, "-m", "ferrolock", "demo", "--backend", mysql_server.url]
    done = subprocess.run(
        [*argv, "--workers", "3", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout
    password = mysql_server.url.split("@")[0].rsplit(":", 1)[1]
    assert password not in done.stdout + done.stderr
