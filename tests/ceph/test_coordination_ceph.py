"""rbd:// and rados:// backends: URL parsing, lock names to images, holders/break for operators."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from ferrolock import RadosLock, RbdLock
from ferrolock.coordination_ceph import break_lock, holders, image_name, make_lock, parse_url

from testutil import console_script


def test_parse_url():
    t = parse_url("rbd://volumes/ns1?conf=/etc/ceph/ceph.conf&id=nova&connect_timeout=3")
    assert (t.scheme, t.pool, t.namespace, t.conffile, t.rados_id) == (
        "rbd",
        "volumes",
        "ns1",
        "/etc/ceph/ceph.conf",
        "nova",
    )
    assert t.connect_timeout == 3
    assert parse_url("rados://p?lease=5").lease == 5
    for bad in ("rbd://", "mysql://x", "rbd://p/a/b", "rbd://p?password=x"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_image_names_are_valid_and_stable():
    assert image_name("flattening_lock") == "lock.flattening_lock"
    odd = image_name("cinder-volume/with spaces@and:colons")
    assert "/" not in odd and "@" not in odd and " " not in odd
    assert odd == image_name("cinder-volume/with spaces@and:colons")
    assert image_name("a/b") != image_name("a_b")
    long = image_name("x" * 500)
    assert len(long) <= 64 and long != image_name("x" * 499)


def url(cl, scheme: str) -> str:
    return f"{scheme}://{cl.pool}?conf={cl.conffile}&id={cl.client}&lease=5"


@pytest.mark.parametrize("scheme", ["rbd", "rados"])
def test_backend_locks_exclude(ceph_cluster, scheme):
    name = f"coord/{uuid.uuid4().hex[:8]} any name"
    a = make_lock(url(ceph_cluster, scheme), name)
    assert isinstance(a, RbdLock if scheme == "rbd" else RadosLock)
    assert a.acquire()
    rows = holders(url(ceph_cluster, scheme), name)
    assert len(rows) == 1
    a.release()
    assert holders(url(ceph_cluster, scheme), name) == []


def test_break_refuses_live_owner_without_force(ceph_cluster):
    name = f"coord-{uuid.uuid4().hex[:8]}"
    u = url(ceph_cluster, "rbd")
    code = (
        "import sys; from ferrolock.coordination_ceph import make_lock\n"
        f"l = make_lock({u!r}, {name!r}); l.acquire(); print('ACQ', flush=True); sys.stdin.read()"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ACQ"
        fl = console_script("ferrolock")

        def cli(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([fl, *argv], capture_output=True, text=True, timeout=60)

        out = cli("holders", "--backend", u, name)
        assert out.returncode == 0 and "live watch" in out.stdout, out
        refused = cli("break", "--backend", u, name)
        assert refused.returncode == 1 and "--force" in refused.stderr, refused
        forced = cli("break", "--force", "--backend", u, name)
        assert forced.returncode == 0 and "blocklisted" in forced.stdout, forced
        after = cli("holders", "--backend", u, name)
        assert f"{name}: free" in after.stdout, after
        # the module entry point works too
        mod = [sys.executable, "-m", "ferrolock.coordination_ceph", "holders", u, name]
        assert "free" in subprocess.run(mod, capture_output=True, text=True, timeout=60).stdout
        assert break_lock(u, name) == []
    finally:
        p.kill()
        p.wait(10)
        if p.stdin:
            p.stdin.close()
        if p.stdout:
            p.stdout.close()


@pytest.mark.parametrize("scheme", ["rbd", "rados"])
def test_demo_flatten_story_on_ceph(ceph_cluster, scheme):
    r = subprocess.run(
        [console_script("ferrolock"), "demo", "--backend", url(ceph_cluster, scheme)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout


@pytest.mark.parametrize("scheme", ["rbd", "rados"])
def test_coordination_serves_ceph_schemes(ceph_cluster, scheme):
    """cinder's ``coordination`` on a Ceph URL: tooz-shaped locks that exclude each other."""
    from ferrolock import coordination

    coordinator = coordination.Coordinator(prefix="cinder-")
    coordinator.start(backend_url=url(ceph_cluster, scheme))
    try:
        name = f"{uuid.uuid4().hex[:8]}-delete_volume"
        first, second = coordinator.get_lock(name), coordinator.get_lock(name)
        assert first.acquire(blocking=False)
        assert first.is_still_owner()
        assert not second.acquire(blocking=False)
        with pytest.raises(coordination.LockAcquireFailed):
            with second(False):
                pass
        assert first.release()
        assert second.acquire(blocking=5)
        assert second.release()
    finally:
        coordinator.stop()


@pytest.mark.parametrize("scheme", ["rbd", "rados"])
def test_cli_run_holds_a_ceph_lock_around_a_command(ceph_cluster, scheme, tmp_path):
    """``ferrolock run --backend rbd://|rados://``: the command runs under the lock, which is
    busy for others meanwhile and free afterwards."""
    u = url(ceph_cluster, scheme)
    name = f"run-{uuid.uuid4().hex[:8]}"
    fl = console_script("ferrolock")
    probe = f"from ferrolock.coordination_ceph import make_lock; l = make_lock({u!r}, {name!r})"
    # While the command runs, another process finds the lock busy.
    check = f"{probe}; import sys; sys.exit(0 if not l.acquire(blocking=False) else 3)"
    inside = subprocess.run(
        [fl, "run", "--backend", u, name, "--", sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inside.returncode == 0, inside
    after = f"{probe}; import sys; ok = l.acquire(blocking=False); sys.exit(0 if ok else 4)"
    assert subprocess.run([sys.executable, "-c", after], timeout=120).returncode == 0
    # Held elsewhere: --no-wait gives the busy exit code and does not run the command.
    marker = tmp_path / "ran"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"{probe}; l.acquire(); print('ACQ', flush=True); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ACQ"
        busy = subprocess.run(
            [fl, "run", "--no-wait", "--backend", u, name, "--", "touch", str(marker)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert busy.returncode == 75 and "busy" in busy.stderr, busy
        assert not marker.exists()
    finally:
        holder.kill()
        holder.wait(10)
        for pipe in (holder.stdin, holder.stdout):
            if pipe:
                pipe.close()
