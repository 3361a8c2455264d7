"""ferrolock.fixture (oslo_concurrency.fixture's counterpart) and the oslo.config.opts entry point,
the latter through the real oslo-config-generator."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import fixtures
import pytest
from oslo_config import cfg

from ferrolock import lockutils, opts
from ferrolock.fixture import ExternalLockFixture, LockFixture
from ferrolock.fixture import lockutils as lock_fixture

from testutil import child_env, console_script, run_python


def _lockf_busy(path: str) -> bool:
    """Whether a classic POSIX lock (oslo's kind) on ``path`` would have to wait now (it
    conflicts with ferrolock's open-file-description lock even inside one process)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def test_fixture_module_has_oslos_shape():
    assert lock_fixture.LockFixture is LockFixture
    assert lock_fixture.ExternalLockFixture is ExternalLockFixture


def test_lock_fixture_holds_the_lock_through_later_cleanups(lock_dir):
    path = str(lock_dir / "tests-db")
    seen_in_cleanup = []

    class Case(fixtures.Fixture):
        def _setUp(self) -> None:
            self.useFixture(fixtures.MonkeyPatch("ferrolock.lockutils.CONF", None))
            self.useFixture(fixtures.EnvironmentVariable("OSLO_LOCK_PATH", str(lock_dir)))
            self.useFixture(LockFixture("db", lock_file_prefix="tests-"))
            # added after the lock: runs before it is released
            self.addCleanup(lambda: seen_in_cleanup.append(_lockf_busy(path)))

    case = Case()
    case.setUp()
    assert _lockf_busy(path)
    case.cleanUp()
    assert seen_in_cleanup == [True]
    assert not _lockf_busy(path)


def test_external_lock_fixture_sets_lock_path_for_the_test_only():
    before = lockutils.CONF.oslo_concurrency.lock_path
    fix = ExternalLockFixture()
    fix.setUp()
    try:
        lock_path = lockutils.CONF.oslo_concurrency.lock_path
        assert lock_path and lock_path != before and os.path.isdir(lock_path)
        with lockutils.lock("ext", external=True):
            assert os.listdir(lock_path) == ["ext"]
            assert _lockf_busy(os.path.join(lock_path, "ext"))
    finally:
        fix.cleanUp()
    assert lockutils.CONF.oslo_concurrency.lock_path == before
    assert not os.path.exists(lock_path)


def test_external_lock_fixture_without_oslo_config_sets_the_environment():
    code = """
import os, sys
sys.modules["oslo_config"] = None  # as if oslo.config were not installed
from ferrolock import lockutils
from ferrolock.fixture import ExternalLockFixture
assert lockutils.CONF is None
fix = ExternalLockFixture()
fix.setUp()
d = os.environ["OSLO_LOCK_PATH"]
with lockutils.lock("ext", external=True):
    assert os.listdir(d) == ["ext"], os.listdir(d)
fix.cleanUp()
assert "OSLO_LOCK_PATH" not in os.environ and not os.path.exists(d)
print("OK")
"""
    env = child_env()
    env.pop("OSLO_LOCK_PATH", None)
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr


def test_list_opts_gives_copies_of_the_options_lockutils_reads():
    [(group, options)] = opts.list_opts()
    assert group == "oslo_concurrency"
    assert {o.name for o in options} == {"lock_path", "disable_process_locking"}
    registered = {o.name: o for o in lockutils._opts}
    for opt in options:
        assert opt is not registered[opt.name] and opt == registered[opt.name]


def test_entry_point_is_registered_under_oslo_config_opts():
    r = run_python(
        "from importlib.metadata import entry_points\n"
        "eps = entry_points()\n"
        "group = eps.select(group='oslo.config.opts') if hasattr(eps, 'select') "
        "else eps.get('oslo.config.opts', [])\n"
        "print([e.value for e in group if e.name == 'ferrolock'])\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['ferrolock.opts:list_opts']"


def test_oslo_config_generator_writes_the_options(tmp_path: Path):
    out = tmp_path / "sample.conf"
    r = subprocess.run(
        [
            console_script("oslo-config-generator"),
            "--namespace",
            "ferrolock",
            "--output-file",
            str(out),
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "[oslo_concurrency]" in text
    assert "#lock_path = <None>" in text
    assert "#disable_process_locking = false" in text
    # the generated file is a config ferrolock reads
    conf = cfg.ConfigOpts()
    (tmp_path / "svc.conf").write_text(text.replace("#lock_path = <None>", "lock_path = /srv/l"))
    conf(args=[], default_config_files=[str(tmp_path / "svc.conf")])
    assert lockutils.get_lock_path(conf) == "/srv/l"


@pytest.fixture(autouse=True)
def _no_env_lock_path(monkeypatch):
    monkeypatch.delenv("OSLO_LOCK_PATH", raising=False)
