"""ferrolock.lockutils behaves like oslo_concurrency.lockutils 7.x.

Where possible the same calls are made against both modules and the outcomes
(files, exceptions, DEBUG log records) are compared.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
import threading

import pytest
from oslo_concurrency import lockutils as oslo_lockutils
from oslo_config import cfg

import ferrolock
from ferrolock import lockutils as ferro_lockutils

from testutil import child_env, console_script, hold_in_thread, oslo_busy, run_cli

pytestmark = pytest.mark.timeout(30)

APIS = [pytest.param(oslo_lockutils, id="oslo"), pytest.param(ferro_lockutils, id="ferro")]


# ------------------------------------------------------------------ helpers


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def captured(logger_name):
    lg = logging.getLogger(logger_name)
    h = _ListHandler()
    old = lg.level
    lg.setLevel(logging.DEBUG)
    lg.addHandler(h)
    try:
        yield h.records
    finally:
        lg.removeHandler(h)
        lg.setLevel(old)


TIME_RE = re.compile(r"\d+\.\d{3}s")


def _norm(records):
    return [(r.levelname, TIME_RE.sub("<T>s", r.getMessage())) for r in records]


def _logs_of(api, action):
    name = api.__name__
    with captured(name) as recs:
        action(api)
    for r in recs:
        assert r.name == name, r.name
    return recs


def _compare(action):
    oslo = _logs_of(oslo_lockutils, action)
    ours = _logs_of(ferro_lockutils, action)
    assert _norm(ours) == _norm(oslo)
    assert len(ours) > 0
    return ours


def plain_function(x, y=2):
    """Docstring of plain_function."""
    return x + y


class Owner:
    def method(self, v):
        """Method doc."""
        return ("method", v)


# ------------------------------------------------------------------ logging


def test_log_lines_synchronized_internal():
    def action(api):
        f = api.synchronized("log-int")(plain_function)
        assert f(1) == 3

    ours = _compare(action)
    msgs = [r.getMessage() for r in ours]
    fname = "test_lockutils_compat.plain_function"
    assert msgs[0] == f'Acquiring lock "log-int" by "{fname}"'
    assert re.fullmatch(rf'Lock "log-int" acquired by "{fname}" :: waited \d+\.\d{{3}}s', msgs[1])
    assert re.fullmatch(rf'Lock "log-int" "released" by "{fname}" :: held \d+\.\d{{3}}s', msgs[2])
    assert all(r.levelno == logging.DEBUG for r in ours)


def test_log_lines_synchronized_method_and_external(lock_dir):
    def action(api):
        Owner.m2 = api.synchronized("log-ext", external=True, lock_path=str(lock_dir))(Owner.method)
        try:
            assert Owner().m2(5) == ("method", 5)
        finally:
            del Owner.m2

    ours = _compare(action)
    assert len(ours) == 3


def test_log_lines_lock_internal_and_external(lock_dir):
    def action(api):
        with api.lock("log-cm"):
            pass
        with api.lock("log-cm-ext", external=True, lock_path=str(lock_dir)):
            pass
        with api.lock("quiet", do_log=False):
            pass

    ours = _compare(action)
    msgs = [r.getMessage() for r in ours]
    assert msgs[:3] == [
        'Acquiring lock "log-cm"',
        'Acquired lock "log-cm"',
        'Releasing lock "log-cm"',
    ]
    assert not any("quiet" in m for m in msgs)


def test_log_lines_when_unacquired():
    def action(api):
        release = hold_in_thread(api.lock("log-busy", do_log=False))
        try:
            f = api.synchronized("log-busy", blocking=False)(plain_function)
            with pytest.raises(api.AcquireLockFailedException):
                f(1)
        finally:
            release()

    ours = _compare(action)
    assert ours[-1].getMessage() == (
        'Lock "log-busy" "unacquired" by "test_lockutils_compat.plain_function" :: held N/A'
    )


def test_log_lines_when_function_raises():
    def boom():
        raise KeyError("x")

    def action(api):
        with pytest.raises(KeyError):
            api.synchronized("log-raise")(boom)()

    ours = _compare(action)
    assert '"released"' in ours[-1].getMessage()


# ------------------------------------------------------------------ prefixes & files


@pytest.mark.parametrize("prefix", ["nova", "nova-"])
def test_prefix_with_and_without_hyphen(lock_dir, prefix):
    with ferro_lockutils.lock("thing", prefix, external=True, lock_path=str(lock_dir)):
        assert (lock_dir / "nova-thing").is_file()
    assert sorted(p.name for p in lock_dir.iterdir()) == ["nova-thing"]


def test_lock_with_prefix_and_synchronized_with_prefix(lock_dir):
    lock = ferro_lockutils.lock_with_prefix("cinder")
    sync = ferro_lockutils.synchronized_with_prefix("glance-")
    cleanup = ferro_lockutils.remove_external_lock_file_with_prefix("cinder")

    with lock("vol", external=True, lock_path=str(lock_dir)):
        pass

    @sync("img", external=True, lock_path=str(lock_dir))
    def f():
        return "r"

    assert f() == "r"
    assert sorted(p.name for p in lock_dir.iterdir()) == ["cinder-vol", "glance-img"]
    cleanup("vol", lock_path=str(lock_dir))
    assert sorted(p.name for p in lock_dir.iterdir()) == ["glance-img"]
    ferro_lockutils.remove_external_lock_file_with_prefix("glance")("img", lock_path=str(lock_dir))
    assert list(lock_dir.iterdir()) == []
    # internal use of the partials works and creates nothing
    with lock("vol"):
        pass
    assert list(lock_dir.iterdir()) == []


def test_remove_external_lock_file(lock_dir):
    with ferro_lockutils.lock("rm-me", external=True, lock_path=str(lock_dir)):
        pass
    assert (lock_dir / "rm-me").is_file()
    ferro_lockutils.remove_external_lock_file("rm-me", lock_path=str(lock_dir))
    assert not (lock_dir / "rm-me").exists()
    # removing again (missing file) is not an error, as in oslo
    ferro_lockutils.remove_external_lock_file("rm-me", lock_path=str(lock_dir))
    with ferro_lockutils.lock("p-x", external=True, lock_path=str(lock_dir)):
        pass
    ferro_lockutils.remove_external_lock_file("x", lock_file_prefix="p", lock_path=str(lock_dir))
    assert list(lock_dir.iterdir()) == []


# ------------------------------------------------------------------ semantics


def test_disable_process_locking(holder, lock_dir):
    h = holder("ferro-lock", ("dpl", lock_dir))
    with pytest.raises(ferro_lockutils.AcquireLockFailedException):
        with ferro_lockutils.lock("dpl", external=True, lock_path=str(lock_dir), blocking=False):
            pass
    conf = ferro_lockutils.CONF
    conf.set_override("disable_process_locking", True, "oslo_concurrency")
    try:
        # the inter-process part is skipped: the busy file lock does not matter
        with ferro_lockutils.lock("dpl", external=True, lock_path=str(lock_dir), blocking=False):
            pass
        with ferro_lockutils.lock("dpl-new", external=True, lock_path=str(lock_dir)):
            pass
        assert not (lock_dir / "dpl-new").exists()
        # ...but the in-process part still excludes threads
        release = hold_in_thread(
            ferro_lockutils.lock("dpl", external=True, lock_path=str(lock_dir))
        )
        try:
            with pytest.raises(ferro_lockutils.AcquireLockFailedException):
                with ferro_lockutils.lock(
                    "dpl", external=True, lock_path=str(lock_dir), blocking=False
                ):
                    pass
        finally:
            release()
    finally:
        conf.clear_override("disable_process_locking", "oslo_concurrency")
    # the override is gone: the other process's lock counts again (no stale config)
    with pytest.raises(ferro_lockutils.AcquireLockFailedException):
        with ferro_lockutils.lock("dpl", external=True, lock_path=str(lock_dir), blocking=False):
            pass
    h.release()
    assert h.wait() == 0


def test_lock_path_override_changes_take_effect(tmp_path):
    """CONF.set_override of lock_path is seen by the very next lock (no stale cache)."""
    conf = ferro_lockutils.CONF
    d1, d2 = tmp_path / "o1", tmp_path / "o2"
    try:
        conf.set_override("lock_path", str(d1), "oslo_concurrency")
        with ferro_lockutils.lock("ov", external=True):
            pass
        with ferrolock.lock("ov-top", external=True):
            pass
        conf.set_override("lock_path", str(d2), "oslo_concurrency")
        with ferro_lockutils.lock("ov", external=True):
            pass

        @ferro_lockutils.synchronized("ov-sync", external=True)
        def f():
            return 1

        assert f() == 1
        assert ferro_lockutils.get_lock_path(conf) == str(d2)
    finally:
        conf.clear_override("lock_path", "oslo_concurrency")
    assert sorted(p.name for p in d1.iterdir()) == ["ov", "ov-top"]
    assert sorted(p.name for p in d2.iterdir()) == ["ov", "ov-sync"]


@pytest.mark.parametrize("api", APIS)
def test_lock_decorator_reads_lock_path_at_each_call(tmp_path, api):
    """``@lock(..., external=True)`` applied before lock_path is configured (at import) works
    once it is, and follows it when it changes, as oslo's contextlib decorator does."""
    conf = api.CONF
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    conf.clear_override("lock_path", "oslo_concurrency")
    assert conf.oslo_concurrency.lock_path is None
    with child_env_cleared("OSLO_LOCK_PATH"):

        @api.lock("deco", external=True)
        def f():
            return 7

        try:
            conf.set_override("lock_path", str(d1), "oslo_concurrency")
            assert f() == 7
            conf.set_override("lock_path", str(d2), "oslo_concurrency")
            assert f() == 7
        finally:
            conf.clear_override("lock_path", "oslo_concurrency")
    assert [p.name for p in d1.iterdir()] == ["deco"]
    assert [p.name for p in d2.iterdir()] == ["deco"]


@contextlib.contextmanager
def child_env_cleared(name):
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


@pytest.mark.parametrize("api", APIS)
def test_remove_external_lock_file_of_a_missing_lock_path_creates_nothing(tmp_path, api):
    missing = tmp_path / "never-made"
    api.remove_external_lock_file("ghost", lock_path=str(missing))
    assert not missing.exists()


@pytest.mark.parametrize("api", APIS)
def test_a_semaphores_subclass_with_its_own_get_is_used(api):
    taken = []

    class Counting(api.Semaphores):
        def __init__(self):
            self.sem = threading.Semaphore()

        def get(self, name):
            taken.append(name)
            return self.sem

    with api.lock("sub", semaphores=Counting()):
        pass
    with api.internal_lock("sub2", semaphores=Counting()):
        pass
    assert taken == ["sub", "sub2"]


def test_releasing_an_unacquired_lock_object_is_refused(lock_dir):
    """The try-lock pattern ``acquire(blocking=False)`` then ``release()`` in ``finally`` must
    not end another hold of the same file."""
    with ferro_lockutils.lock("busy-file", external=True, lock_path=str(lock_dir)):
        other = ferro_lockutils.external_lock("busy-file", lock_path=str(lock_dir))
        assert not other.acquire(blocking=False)
        with pytest.raises(threading.ThreadError):  # fasteners' error
            other.release()
        with pytest.raises(ferrolock.LockUsageError):
            ferrolock.FileLock(lock_dir / "busy-file").release()
        assert oslo_busy("busy-file", lock_dir), "a stray release ended the hold"


def test_a_failed_try_on_a_shared_interprocess_lock_object_keeps_its_hold(lock_dir):
    shared = ferro_lockutils.external_lock("shared-obj", lock_path=str(lock_dir))
    assert shared.acquire()
    tried: list[bool] = []
    t = threading.Thread(target=lambda: tried.append(shared.acquire(timeout=0.1)))
    t.start()
    t.join(10)
    assert tried == [False]
    shared.release()  # the holder's release still works, and frees the file
    assert not oslo_busy("shared-obj", lock_dir)


def test_nested_synchronized_different_names():
    trace = []

    @ferro_lockutils.synchronized("outer-n")
    def outer():
        trace.append("outer")
        return inner()

    @ferro_lockutils.synchronized("inner-n")
    def inner():
        trace.append("inner")
        busy = {}

        def probe():
            for n in ("outer-n", "inner-n"):
                try:
                    with ferro_lockutils.lock(n, blocking=False):
                        busy[n] = False
                except ferro_lockutils.AcquireLockFailedException:
                    busy[n] = True

        t = threading.Thread(target=probe)
        t.start()
        t.join(5)
        return busy

    assert outer() == {"outer-n": True, "inner-n": True}
    assert trace == ["outer", "inner"]
    with ferro_lockutils.lock("outer-n", blocking=False):
        with ferro_lockutils.lock("inner-n", blocking=False):
            pass


@pytest.mark.parametrize("api", APIS)
def test_nonblocking_internal_busy_raises(api):
    release = hold_in_thread(api.lock("nb-int"))
    try:
        with pytest.raises(api.AcquireLockFailedException) as ei:
            with api.lock("nb-int", blocking=False):
                pytest.fail("entered a busy lock")
        assert str(ei.value) == "Failed to acquire the lock nb-int"

        @api.synchronized("nb-int", blocking=False)
        def f():
            pytest.fail("ran under a busy lock")

        with pytest.raises(api.AcquireLockFailedException):
            f()
    finally:
        release()
    with api.lock("nb-int", blocking=False):
        pass


@pytest.mark.parametrize("api", APIS)
def test_nonblocking_external_busy_raises(api, holder, lock_dir):
    h = holder("ferro-lock", ("nb-ext", lock_dir))
    if api is oslo_lockutils:
        assert oslo_busy("nb-ext", lock_dir)
    else:
        with pytest.raises(api.AcquireLockFailedException) as ei:
            with api.lock("nb-ext", external=True, lock_path=str(lock_dir), blocking=False):
                pytest.fail("entered a busy lock")
        assert str(ei.value) == "Failed to acquire the lock nb-ext"
    h.release()
    assert h.wait() == 0
    with api.lock("nb-ext", external=True, lock_path=str(lock_dir), blocking=False):
        pass


def test_wrapped_function_metadata_and_return_value():
    wrapped = ferro_lockutils.synchronized("meta")(plain_function)
    assert wrapped.__name__ == "plain_function"
    assert wrapped.__qualname__ == "plain_function"
    assert wrapped.__doc__ == "Docstring of plain_function."
    assert wrapped.__module__ == plain_function.__module__
    assert wrapped.__wrapped__ is plain_function
    assert wrapped(1) == 3
    assert wrapped(1, y=10) == 11

    class K:
        @ferrolock.synchronized("meta-m")
        def m(self, a):
            """m doc"""
            return (self, a)

    k = K()
    assert k.m(3) == (k, 3)
    assert K.m.__name__ == "m" and K.m.__doc__ == "m doc"

    sentinel = object()

    @ferrolock.synchronized("meta-ret", external=False)
    def ret():
        return sentinel

    assert ret() is sentinel

    @ferrolock.synchronized("meta-exc")
    def raises():
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        raises()
    # the exception released the lock
    with ferrolock.lock("meta-exc", blocking=False):
        pass


def test_lock_yields_and_exception_propagates(lock_dir):
    with pytest.raises(RuntimeError, match="inside"):
        with ferro_lockutils.lock("prop", external=True, lock_path=str(lock_dir)):
            raise RuntimeError("inside")
    with ferro_lockutils.lock("prop", external=True, lock_path=str(lock_dir), blocking=False):
        pass


def test_internal_lock_shares_registry_with_lock():
    sem = ferro_lockutils.internal_lock("shared-reg")
    with sem:
        with pytest.raises(ferro_lockutils.AcquireLockFailedException):
            with ferro_lockutils.lock("shared-reg", blocking=False):
                pass
    with ferro_lockutils.lock("shared-reg", blocking=False):
        pass


def test_semaphores_container_isolated_from_default():
    sems = ferro_lockutils.Semaphores()
    # same name -> the same lock (oslo even returns the same object; we only need the lock)
    a, b = sems.get("iso"), sems.get("iso")
    assert a.acquire(blocking=False)
    try:
        assert b.acquire(blocking=False) is False
    finally:
        a.release()
    del a, b
    with ferro_lockutils.lock("iso", semaphores=sems):
        # the default container has its own lock for the name
        with ferro_lockutils.lock("iso", blocking=False):
            pass
        with pytest.raises(ferro_lockutils.AcquireLockFailedException):
            with ferro_lockutils.lock("iso", semaphores=sems, blocking=False):
                pass


def test_fair_locks_container():
    for get in (ferro_lockutils.internal_fair_lock, ferro_lockutils.FairLocks().get):
        a, b = get("fl"), get("fl")  # oslo returns one object; we need one lock
        entered = threading.Event()

        def other(b=b, entered=entered):
            with b.write_lock():
                entered.set()

        with a.write_lock():
            assert a.is_writer()
            t = threading.Thread(target=other, daemon=True)
            t.start()
            assert not entered.wait(0.3), "same name gave two different locks"
        assert entered.wait(5)
        t.join(5)


def test_external_lock_object(lock_dir):
    ext = ferro_lockutils.external_lock("eobj", "pfx", str(lock_dir))
    assert ext.acquire()
    try:
        assert (lock_dir / "pfx-eobj").is_file()
    finally:
        ext.release()


# ------------------------------------------------------------------ config


def test_conf_is_the_global_oslo_config():
    assert ferro_lockutils.CONF is cfg.CONF
    assert ferro_lockutils.CONF is oslo_lockutils.CONF


def test_both_modules_register_compatible_options():
    conf = cfg.ConfigOpts()
    assert ferro_lockutils.get_lock_path(conf) == oslo_lockutils.get_lock_path(conf)
    conf.set_override("lock_path", "/some/where", "oslo_concurrency")
    assert ferro_lockutils.get_lock_path(conf) == "/some/where"


@pytest.mark.parametrize("api", APIS)
def test_set_defaults_and_get_lock_path(tmp_path, api):
    """oslo is the reference: the same sequence must work on both modules."""
    before = api.get_lock_path(api.CONF)
    d = tmp_path / "defaults"
    api.set_defaults(str(d))
    try:
        assert api.get_lock_path(api.CONF) == str(d)
        assert api.get_lock_path(cfg.CONF) == str(d)
        with api.lock("via-defaults", external=True):
            pass
        assert sorted(p.name for p in d.iterdir()) == ["via-defaults"]
        if api is ferro_lockutils:
            with ferrolock.lock("via-defaults-top", external=True):
                pass
            assert (d / "via-defaults-top").is_file()
            assert ferrolock.lock_file_path("q") == os.path.join(str(d), "q")
    finally:
        api.set_defaults(before)
    assert api.get_lock_path(api.CONF) == before


_BOTH_MODULES = """
import os, sys
first, d1, d2 = sys.argv[1], sys.argv[2], sys.argv[3]
if first == "oslo":
    from oslo_concurrency import lockutils as oslo
    from ferrolock import lockutils as ferro
else:
    from ferrolock import lockutils as ferro
    from oslo_concurrency import lockutils as oslo
from oslo_config import cfg
oslo.set_defaults(d1)
assert oslo.get_lock_path(cfg.CONF) == d1, oslo.get_lock_path(cfg.CONF)
assert ferro.get_lock_path(cfg.CONF) == d1, ferro.get_lock_path(cfg.CONF)
with oslo.lock("o1", external=True):
    pass
with ferro.lock("f1", external=True):
    pass
assert sorted(os.listdir(d1)) == ["f1", "o1"], os.listdir(d1)
ferro.set_defaults(d2)
assert ferro.get_lock_path(cfg.CONF) == d2, ferro.get_lock_path(cfg.CONF)
assert oslo.get_lock_path(cfg.CONF) == d2, oslo.get_lock_path(cfg.CONF)
with oslo.lock("o2", external=True):
    pass
with ferro.lock("f2", external=True):
    pass
assert sorted(os.listdir(d2)) == ["f2", "o2"], os.listdir(d2)
print("OK")
"""


@pytest.mark.parametrize("first", ["oslo", "ferro"])
def test_oslo_and_ferrolock_in_one_process_share_config(tmp_path, first):
    """A process using both libraries (a partial migration) keeps one working config,
    whichever is imported first and whichever set_defaults is called."""
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    r = subprocess.run(
        [sys.executable, "-c", _BOTH_MODULES, first, str(d1), str(d2)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "OK"


def test_oslo_lock_path_environment_variable(tmp_path):
    d = tmp_path / "envlocks"
    code = (
        "import ferrolock.lockutils as l\n"
        "with l.lock('from-env', external=True):\n"
        "    pass\n"
        "print(l.get_lock_path(l.CONF))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(OSLO_LOCK_PATH=str(d)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(d)
    assert (d / "from-env").is_file()


# ------------------------------------------------------------------ wrapper


def test_ferrolock_wrapper_sets_lock_path_and_returns_exit_code(tmp_path):
    out = tmp_path / "seen"
    code = (
        "import os, sys\n"
        "d = os.environ['OSLO_LOCK_PATH']\n"
        "assert os.path.isdir(d)\n"
        "open(os.path.join(d, 'junk'), 'w').close()\n"
        f"open({str(out)!r}, 'w').write(d)\n"
        "sys.exit(7)\n"
    )
    r = run_cli(sys.executable, "-c", code, argv0=[console_script("ferrolock-wrapper")])
    assert r.returncode == 7, r.stderr
    d = out.read_text()
    assert d and os.path.isabs(d)
    assert not os.path.exists(d), "the temporary lock dir must be removed"


def test_ferrolock_wrapper_lock_path_used_by_lockutils(tmp_path):
    code = (
        "import os, ferrolock.lockutils as l\n"
        "with l.lock('w', external=True):\n"
        "    assert os.path.isfile(os.path.join(os.environ['OSLO_LOCK_PATH'], 'w'))\n"
    )
    r = run_cli(sys.executable, "-c", code, argv0=[console_script("ferrolock-wrapper")])
    assert r.returncode == 0, r.stderr


def test_main_is_the_wrapper(tmp_path):
    assert callable(ferro_lockutils.main)
    code = (
        "import sys; sys.argv = ['ferrolock-wrapper', 'sh', '-c', 'exit 4']\n"
        "import ferrolock.lockutils as l; l.main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 4, r.stderr


def test_public_names_exist():
    for n in [
        "lock",
        "synchronized",
        "synchronized_with_prefix",
        "lock_with_prefix",
        "external_lock",
        "internal_lock",
        "internal_fair_lock",
        "remove_external_lock_file",
        "remove_external_lock_file_with_prefix",
        "Semaphores",
        "FairLocks",
        "ReaderWriterLock",
        "AcquireLockFailedException",
        "set_defaults",
        "get_lock_path",
        "CONF",
        "main",
    ]:
        assert hasattr(ferro_lockutils, n), n
    for n in [
        "lock",
        "synchronized",
        "InternalLock",
        "Semaphore",
        "ReaderWriterLock",
        "FileLock",
        "lock_file_path",
        "registry_size",
        "LockError",
        "AcquireLockFailedException",
        "LockTimeout",
        "InvalidLockName",
        "LockPathError",
        "__version__",
    ]:
        assert hasattr(ferrolock, n), n
    assert isinstance(ferrolock.__version__, str) and ferrolock.__version__
