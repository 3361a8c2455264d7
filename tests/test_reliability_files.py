"""Lock-file descriptors: bounded by the process's descriptor limit, never the reason a process
runs out of them, and never closed while oslo (fasteners' ``lockf``) holds that file in the
same process (closing any descriptor of a file drops the process's POSIX locks on it).

Each case runs in its own interpreter: it lowers ``RLIMIT_NOFILE`` or mixes oslo in.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest

import ferrolock

from testutil import run_python

pytestmark = pytest.mark.timeout(120)


def _run(code: str, *args: object) -> str:
    done = run_python(textwrap.dedent(code), *args)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_many_distinct_names_next_to_sockets_near_the_descriptor_limit(lock_dir: Path) -> None:
    """The issue's service: close to ``ulimit -n`` with sockets, it takes many distinct external
    names one after another; neither the locks nor its next sockets may fail."""
    out = _run(
        """
        import os, resource, socket, sys
        from ferrolock import lockutils
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        socks = []
        while len(os.listdir("/proc/self/fd")) < 256 - 12:
            socks.append(socket.socket())
        for i in range(300):
            with lockutils.lock(f"name-{i}", external=True, lock_path=sys.argv[1]):
                pass
        more = [socket.socket() for _ in range(6)]
        print("OK", len(socks), len(more))
        """,
        lock_dir,
    )
    assert out.startswith("OK"), out


def test_a_tiny_descriptor_limit_still_takes_every_name(lock_dir: Path) -> None:
    """Under ``ulimit -n 64`` the 61st distinct name used to fail with EMFILE."""
    out = _run(
        """
        import os, resource, sys
        import ferrolock
        from ferrolock import lockutils
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        for i in range(200):
            with lockutils.lock(f"n-{i}", external=True, lock_path=sys.argv[1]):
                pass
        # FileLock objects kept by the caller give back their idle descriptors too.
        kept = [ferrolock.FileLock(os.path.join(sys.argv[1], f"kept-{i}")) for i in range(100)]
        for lock in kept:
            with lock:
                pass
        print("OK", len(os.listdir("/proc/self/fd")))
        """,
        lock_dir,
    )
    assert out.startswith("OK"), out
    assert int(out.split()[1]) < 40, out


def test_an_open_failing_with_emfile_gives_idle_descriptors_back(lock_dir: Path) -> None:
    """Every descriptor but the cached lock files is taken: the next lock must still open."""
    out = _run(
        """
        import os, resource, sys
        from ferrolock import lockutils
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
        for i in range(3):
            with lockutils.lock(f"idle-{i}", external=True, lock_path=sys.argv[1]):
                pass
        hog = []
        try:
            while True:
                hog.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        with lockutils.lock("fresh", external=True, lock_path=sys.argv[1]):
            print("OK")
        """,
        lock_dir,
    )
    assert out.startswith("OK"), out


def test_trimming_never_drops_an_oslo_lock_held_in_this_process(lock_dir: Path) -> None:
    """A partial migration: ferrolock cached a descriptor of ``shared``; oslo then holds
    ``shared`` in the same process while ferrolock goes through many other names. Another
    process must still find ``shared`` locked."""
    out = _run(
        """
        import resource, subprocess, sys
        from ferrolock import lockutils as ferro
        from oslo_concurrency import lockutils as oslo
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        d = sys.argv[1]
        probe = (
            "import sys\\n"
            "from ferrolock import lockutils\\n"
            "try:\\n"
            "    with lockutils.lock('shared', external=True, lock_path=sys.argv[1],"
            " blocking=False):\\n"
            "        print('FREE')\\n"
            "except lockutils.AcquireLockFailedException:\\n"
            "    print('BUSY')\\n"
        )
        with ferro.lock("shared", external=True, lock_path=d):
            pass
        with oslo.lock("shared", external=True, lock_path=d):
            for i in range(200):
                with ferro.lock(f"other-{i}", external=True, lock_path=d):
                    pass
            seen = subprocess.run(
                [sys.executable, "-c", probe, d], capture_output=True, text=True, timeout=60
            ).stdout.strip()
            print("INSIDE", seen)
        # oslo let go: the parked descriptor is closed at a later trim, and the file is free.
        for i in range(200):
            with ferro.lock(f"again-{i}", external=True, lock_path=d):
                pass
        seen = subprocess.run(
            [sys.executable, "-c", probe, d], capture_output=True, text=True, timeout=60
        ).stdout.strip()
        print("AFTER", seen)
        """,
        lock_dir,
    )
    assert "INSIDE BUSY" in out, out
    assert "AFTER FREE" in out, out


def test_a_lock_file_of_another_user_is_a_permission_error_naming_the_file() -> None:
    """oslo raises PermissionError for the file; the directory is fine."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a file owned by another user")
    # Under /tmp: pytest's own temporary tree is closed to other users.
    lock_dir = Path(tempfile.mkdtemp(prefix="ferrolock-perm-"))
    request_cleanup = shutil.rmtree
    path = lock_dir / "theirs"
    path.write_text("")
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)
    code = """
        import os, sys
        from ferrolock import lockutils
        os.setgid(54321)
        os.setuid(54321)
        try:
            with lockutils.lock("theirs", external=True, lock_path=sys.argv[1]):
                print("TAKEN")
        except PermissionError as e:
            print("PERM", e.filename)
        except OSError as e:
            print("OTHER", type(e).__name__, e.filename)
        """
    os.chmod(lock_dir, 0o777)
    try:
        out = _run(code, lock_dir)
    finally:
        request_cleanup(lock_dir)
    assert out.split() == ["PERM", str(path)], out


def test_cached_lock_files_stay_bounded_in_process(lock_dir: Path) -> None:
    for i in range(400):
        with ferrolock.lock(f"bounded-{i}", external=True, lock_path=str(lock_dir)):
            pass
    from ferrolock import _native

    assert _native.cached_lock_files() <= 128


def test_a_lock_file_oslo_processes_use_is_not_removed(lock_dir: Path) -> None:
    """An oslo poller of the old file would lock the unlinked inode while ferrolock locks the new
    one: a file seen locked with ``lockf`` (oslo) within the last minute stays."""
    out = _run(
        """
        import os, sys
        from ferrolock import lockutils as ferro
        from oslo_concurrency import lockutils as oslo
        d = sys.argv[1]
        with oslo.lock("mixed", external=True, lock_path=d):
            try:
                with ferro.lock("mixed", external=True, lock_path=d, blocking=False):
                    print("TAKEN")
            except ferro.AcquireLockFailedException:
                pass
        ferro.remove_external_lock_file("mixed", lock_path=d)
        with ferro.lock("plain", external=True, lock_path=d):
            pass
        ferro.remove_external_lock_file("plain", lock_path=d)
        exists = [os.path.exists(os.path.join(d, n)) for n in ("mixed", "plain")]
        print("EXISTS", *exists)
        """,
        lock_dir,
    )
    assert out.split() == ["EXISTS", "True", "False"], out
