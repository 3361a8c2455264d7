"""Bad names and lock paths: clear exceptions, no stray files, no escaping lock_path.

The suite runs as root, so "unwritable" is made real without permissions: a
lock_path whose parent is a regular file (ENOTDIR for everyone), and an
immutable directory (chattr +i: EPERM even for root) where the filesystem
supports it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from oslo_concurrency import lockutils as oslo_lockutils

import ferrolock
from ferrolock import lockutils as ferro_lockutils

pytestmark = pytest.mark.timeout(30)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _enter_external(name, lock_path, prefix=None):
    with ferrolock.lock(name, lock_file_prefix=prefix, external=True, lock_path=str(lock_path)):
        pass


def test_exception_hierarchy():
    assert issubclass(ferrolock.InvalidLockName, ferrolock.LockError)
    assert issubclass(ferrolock.InvalidLockName, ValueError)
    assert issubclass(ferrolock.LockPathError, ferrolock.LockError)
    assert issubclass(ferrolock.LockPathError, OSError)
    assert issubclass(ferrolock.AcquireLockFailedException, ferrolock.LockError)
    assert ferro_lockutils.AcquireLockFailedException is ferrolock.AcquireLockFailedException
    e = ferrolock.AcquireLockFailedException("nm")
    assert e.message == "Failed to acquire the lock nm" == str(e)
    assert e.lock_name == "nm"
    from ferrolock import exceptions

    assert exceptions.LockTimeout is ferrolock.LockTimeout


BAD_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("a\0b", id="nul"),
    pytest.param("\0", id="only-nul"),
    pytest.param("x" * 256, id="256-ascii"),
    pytest.param("é" * 128, id="256-bytes-128-chars"),
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_name_external_lock(tmp_path, name):
    lock_path = tmp_path / "not-yet-created"
    with pytest.raises(ferrolock.InvalidLockName) as ei:
        _enter_external(name, lock_path)
    assert isinstance(ei.value, ValueError)
    assert str(ei.value), "error message must not be empty"
    # validation happens before anything touches the disk
    assert not lock_path.exists(), _tree(tmp_path)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_name_lockutils_and_synchronized(lock_dir, name):
    with pytest.raises(ferrolock.InvalidLockName):
        with ferro_lockutils.lock(name, external=True, lock_path=str(lock_dir)):
            pass

    with pytest.raises(ferrolock.InvalidLockName):  # at decoration time or at call time

        @ferro_lockutils.synchronized(name, external=True, lock_path=str(lock_dir))
        def f():
            return 1

        f()
    with pytest.raises(ferrolock.InvalidLockName):
        ferrolock.lock_file_path(name, None, str(lock_dir))
    assert _tree(lock_dir) == set()
    # nothing left in the in-process registry by the failed attempts
    assert ferrolock.registry_size() == 0


def test_name_length_limit_counts_bytes_of_prefixed_file_name(lock_dir):
    ok = "n" * 255
    _enter_external(ok, lock_dir)
    assert (lock_dir / ok).is_file()
    # the prefix and its hyphen count too: 'p-' + 254 chars = 256 bytes
    with pytest.raises(ferrolock.InvalidLockName):
        _enter_external("n" * 254, lock_dir, prefix="p")
    with pytest.raises(ferrolock.InvalidLockName):
        ferrolock.lock_file_path("n" * 254, "p-", str(lock_dir))
    assert ferrolock.lock_file_path("n" * 253, "p", str(lock_dir)) == str(
        lock_dir / ("p-" + "n" * 253)
    )
    assert _tree(lock_dir) == {ok}


def test_lock_path_is_a_file(tmp_path):
    f = tmp_path / "iam-a-file"
    f.write_text("data")
    with pytest.raises(ferrolock.LockPathError) as ei:
        _enter_external("name", f)
    err = ei.value
    assert isinstance(err, OSError)
    assert str(f) in str(err)
    assert err.filename is not None and str(f) in str(err.filename)
    assert err.errno in (errno.ENOTDIR, errno.EEXIST)
    assert f.read_text() == "data"
    assert _tree(tmp_path) == {"iam-a-file"}


def test_lock_path_under_a_file_is_unwritable(tmp_path):
    f = tmp_path / "plain"
    f.write_text("")
    bad = f / "locks" / "deeper"
    with pytest.raises(ferrolock.LockPathError) as ei:
        _enter_external("name", bad)
    assert str(f) in str(ei.value)
    assert ei.value.errno == errno.ENOTDIR
    assert _tree(tmp_path) == {"plain"}

    @ferrolock.synchronized("name", external=True, lock_path=str(bad))
    def g():
        return 1

    with pytest.raises(ferrolock.LockPathError):
        g()
    # FileLock has no lock_path; any OSError naming the path will do
    with pytest.raises(OSError) as ei2:
        ferrolock.FileLock(str(bad / "x.lock")).acquire()
    assert str(f) in str(ei2.value)
    assert ferrolock.registry_size() == 0


def test_immutable_lock_dir_is_unwritable_even_for_root(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    r = subprocess.run(["chattr", "+i", str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"chattr +i unsupported here: {r.stderr!r}")
    try:
        with pytest.raises(ferrolock.LockPathError) as ei:
            _enter_external("name", d)
        assert str(d) in str(ei.value)
        assert ei.value.errno in (errno.EPERM, errno.EACCES, errno.EROFS)
        assert list(d.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(d)], check=True)


@pytest.mark.parametrize(
    "name", ["../escape", "../../escape", "a/b/c", "/abs/olute", "..", ".", "../", "sub/../../up"]
)
def test_name_never_escapes_lock_path(tmp_path, name):
    outer = tmp_path / "outer"
    lock_dir = outer / "locks"
    lock_dir.mkdir(parents=True)
    try:
        _enter_external(name, lock_dir)
    except ferrolock.InvalidLockName:
        pass  # refusing is fine; escaping is not
    else:
        files = list(lock_dir.iterdir())
        assert len(files) == 1 and files[0].is_file(), files
        if "/" in name and name.replace("/", "_") not in (".", ".."):
            # oslo's rule: separators become underscores
            assert files[0].name == name.replace("/", "_")
    # nothing created anywhere but directly inside lock_dir
    stray = {
        p
        for p in _tree(tmp_path)
        if p not in ("outer", "outer/locks")
        and not (p.startswith("outer/locks/") and p.count("/") == 2)
    }
    assert stray == set()
    assert not os.path.exists("/abs/olute") and not os.path.exists("/abs")


@pytest.mark.parametrize(
    "name,prefix",
    [("plain", None), ("a/b", None), ("x", "nova"), ("x", "nova-"), ("x", ""), ("sp ace", "pre")],
)
def test_lock_file_path_matches_oslo(lock_dir, name, prefix):
    assert ferrolock.lock_file_path(name, prefix, str(lock_dir)) == oslo_lockutils._get_lock_path(
        name, prefix, str(lock_dir)
    )


def test_missing_lock_path_raises_required_opt_error(monkeypatch):
    from oslo_config import cfg

    monkeypatch.delenv("OSLO_LOCK_PATH", raising=False)
    ferro_lockutils.CONF.set_override("lock_path", None, "oslo_concurrency")
    try:
        with pytest.raises(cfg.RequiredOptError):
            with ferrolock.lock("nolockpath", external=True):
                pass
        with pytest.raises(cfg.RequiredOptError):
            with ferro_lockutils.lock("nolockpath", external=True):
                pass
        with pytest.raises(cfg.RequiredOptError):
            ferrolock.lock_file_path("nolockpath")
    finally:
        ferro_lockutils.CONF.clear_override("lock_path", "oslo_concurrency")
    assert ferrolock.registry_size() == 0


def test_filelock_bad_paths(tmp_path):
    with pytest.raises(ValueError):
        ferrolock.FileLock(str(tmp_path / "a\0b")).acquire()
    d = tmp_path / "adir"
    d.mkdir()
    with pytest.raises(OSError):
        ferrolock.FileLock(str(d)).acquire()
    assert _tree(tmp_path) == {"adir"}


def test_filelock_creates_missing_dirs_and_never_deletes(tmp_path):
    p = tmp_path / "a" / "b" / "c.lock"
    fl = ferrolock.FileLock(str(p))
    assert os.fspath(fl.path) == str(p)
    with fl:
        assert p.is_file()
    assert p.is_file()
    del fl
    import gc

    gc.collect()
    assert p.is_file()


def test_external_lock_creates_missing_lock_path(tmp_path):
    d = tmp_path / "x" / "y"
    _enter_external("made", d)
    assert (d / "made").is_file()


_NO_OSLO_CONFIG = """
import sys
sys.modules["oslo_config"] = None  # as if oslo.config were not installed
import ferrolock
try:
    with ferrolock.lock("x", external=True):
        pass
except ferrolock.LockPathError as e:
    assert isinstance(e, OSError)
    print("ERR", e.errno, str(e))
else:
    print("NOERR")
"""


def test_without_oslo_config_missing_lock_path_is_lock_path_error(tmp_path):
    from testutil import child_env

    r = subprocess.run(
        [sys.executable, "-c", _NO_OSLO_CONFIG],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ERR None "), r.stdout
    assert "OSLO_LOCK_PATH" in r.stdout and "lock_path=" in r.stdout, r.stdout

    d = tmp_path / "env"
    r = subprocess.run(
        [sys.executable, "-c", _NO_OSLO_CONFIG],
        env=child_env(OSLO_LOCK_PATH=str(d)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "NOERR"
    assert (d / "x").is_file()
