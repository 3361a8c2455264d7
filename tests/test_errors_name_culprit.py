"""Errors name what is wrong: the lock file itself when only it is refused, no "[Errno None]",
no lock file named "None"; the CLI says its version and gives one exit code per problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ferrolock
from ferrolock import lockutils
from ferrolock.exceptions import InvalidLockName, LockPathError

from testutil import child_env, run_cli

pytestmark = pytest.mark.timeout(60)

EX_CONFIG = 78


def test_missing_lock_path_error_reads_cleanly(monkeypatch):
    monkeypatch.delenv("OSLO_LOCK_PATH", raising=False)
    monkeypatch.setattr(lockutils, "CONF", None)
    with pytest.raises(LockPathError) as caught:
        with lockutils.lock("x", external=True):
            pass
    text = str(caught.value)
    assert not text.startswith("[Errno"), text
    assert "OSLO_LOCK_PATH" in text and "lock_path=" in text


@pytest.mark.parametrize("name", [None, 7])
def test_external_lock_needs_a_str_name(tmp_path: Path, name: object):
    with pytest.raises(InvalidLockName):
        with lockutils.lock(name, external=True, lock_path=str(tmp_path)):  # type: ignore[arg-type]
            pass
    with pytest.raises(InvalidLockName):

        @lockutils.synchronized(name, external=True, lock_path=str(tmp_path))  # type: ignore[arg-type]
        def f() -> None:
            pass

        f()
    assert list(tmp_path.iterdir()) == []
    # in-process locks take any hashable name, as oslo's do
    with lockutils.lock(name):  # type: ignore[arg-type]
        pass


_OPEN_READ_ONLY_FILE = """
import sys
from ferrolock import lockutils
try:
    with lockutils.lock("ro", external=True, lock_path=sys.argv[1]):
        print("LOCKED")
except OSError as exc:
    print(type(exc).__name__, exc.errno, exc.filename)
"""


def test_a_refused_lock_file_is_named_not_its_directory(tmp_path: Path):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    (lock_dir / "ro").touch()
    os.chmod(lock_dir / "ro", 0o444)
    # root opens any file: drop the capability that lets it (it then obeys the file's mode)
    argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    r = subprocess.run(
        [*argv, sys.executable, "-c", _OPEN_READ_ONLY_FILE, str(lock_dir)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    kind, errno_, filename = r.stdout.split()
    assert kind != "LockPathError", r.stdout  # the directory is fine
    assert errno_ == "13" and filename == str(lock_dir / "ro"), r.stdout


def test_cli_version():
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"ferrolock {ferrolock.__version__}"


def test_run_and_holders_give_one_exit_code_for_an_unusable_lock_directory(tmp_path: Path):
    not_a_dir = tmp_path / "file"
    not_a_dir.touch()
    run = run_cli("run", "--lock-path", not_a_dir, "n", "--", "true")
    holders = run_cli("holders", "--lock-path", not_a_dir)
    assert (run.returncode, holders.returncode) == (EX_CONFIG, EX_CONFIG), (
        run.stderr,
        holders.stderr,
    )
    missing = tmp_path / "missing"
    assert run_cli("holders", "--lock-path", missing).returncode == EX_CONFIG


def test_holders_without_any_lock_directory_is_a_config_error():
    env = child_env()
    env.pop("OSLO_LOCK_PATH", None)
    r = run_cli("holders", env=env)
    assert r.returncode == EX_CONFIG, r.stderr
