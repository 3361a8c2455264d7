"""Details of the `ferrolock` CLI: exact exit codes, signals, holders parsing, demo backends."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ferrolock import holders as ferro_holders
from ferrolock.cli.demo import story as demo_story
from ferrolock.cli.demo.backends import mask_url
from ferrolock.cli.demo.worker import LOCK_NAME
from ferrolock.holders import LockEntry, parse_lock_line

from testutil import Child, child_env, console_script, run_cli

pytestmark = pytest.mark.timeout(60)

EX_TEMPFAIL = 75
EX_CONFIG = 78


def ferrolock_cli() -> list[str]:
    return [console_script("ferrolock")]


def _start_cli(cli_children, *args) -> Child:
    c = Child([*ferrolock_cli(), *map(str, args)])
    cli_children.append(c)
    return c


def _wait_for_waiters(path: Path, count: int = 1, timeout: float = 15.0):
    """Poll holders.status_of until ``count`` processes are blocked on ``path`` (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        status = ferro_holders.status_of(str(path))
        if status.waiters >= count:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count} waiter(s) on {path} within {timeout}s: {status}")
        time.sleep(0.05)


def _holders_json(lock_dir) -> dict:
    r = run_cli("holders", "--lock-path", lock_dir, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["lock_path"] == str(lock_dir)
    return {entry["name"]: entry for entry in data["locks"]}


# ------------------------------------------------------------------------------ parse_lock_line


@pytest.mark.parametrize(
    "line, expected",
    [
        # /proc/locks, classic POSIX lock (fcntl.lockf: oslo.concurrency, fasteners)
        (
            "1: POSIX  ADVISORY  WRITE 4242 fe:01:1234567 0 EOF",
            LockEntry("posix", 4242, (0xFE, 0x01, 1234567), False),
        ),
        # /proc/locks, OFD lock (ferrolock): pid is -1
        (
            "7: OFDLCK ADVISORY  WRITE -1 08:12:10027325 0 EOF",
            LockEntry("ofd", -1, (0x08, 0x12, 10027325), False),
        ),
        # major/minor are hex, the inode is decimal
        (
            "2: FLOCK  ADVISORY  WRITE 99 ab:cd:10 0 EOF",
            LockEntry("flock", 99, (0xAB, 0xCD, 10), False),
        ),
        # a read lock on a byte range
        (
            "3: POSIX  ADVISORY  READ 17 00:2a:77 100 199",
            LockEntry("posix", 17, (0x00, 0x2A, 77), False),
        ),
        # fdinfo "lock:" lines (tab after the prefix, as the kernel prints it)
        (
            "lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:10010707 0 EOF",
            LockEntry("ofd", -1, (0xFE, 0x00, 10010707), False),
        ),
        (
            "lock:\t1: FLOCK  ADVISORY  WRITE 8718 fe:00:10010707 0 EOF",
            LockEntry("flock", 8718, (0xFE, 0x00, 10010707), False),
        ),
        # blocked waiters: "N: -> KIND ..."
        (
            "1: -> OFDLCK ADVISORY  WRITE -1 fe:00:10027325 0 EOF",
            LockEntry("ofd", -1, (0xFE, 0x00, 10027325), True),
        ),
        (
            "12: -> POSIX  ADVISORY  WRITE 31337 fe:00:5 0 EOF",
            LockEntry("posix", 31337, (0xFE, 0x00, 5), True),
        ),
        # leases have a different word count before dev:inode; unknown kinds are lower-cased
        (
            "4: LEASE  ACTIVE    READ 555 fe:00:42 0 EOF",
            LockEntry("lease", 555, (0xFE, 0x00, 42), False),
        ),
        (
            "5: DELEG  ACTIVE    READ 556 fe:00:43 0 EOF",
            LockEntry("deleg", 556, (0xFE, 0x00, 43), False),
        ),
    ],
)
def test_parse_lock_line(line, expected):
    assert parse_lock_line(line) == expected


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "   ",
        "lock:",
        "lock:\t",
        "1:",
        "1: ->",
        "1: -> POSIX",
        "pos:\t0",
        "flags:\t02100001",
        "hello world, this is not a lock line",
        "1: POSIX ADVISORY WRITE",  # truncated before pid and dev:inode
        "1: POSIX ADVISORY WRITE 12 zz:00:1 0 EOF",  # dev not hex
        "1: POSIX ADVISORY WRITE 12 fe:00 0 EOF",  # no inode
        "1: POSIX ADVISORY WRITE 12 fe:00:1x 0 EOF",  # inode not decimal
        "1: POSIX ADVISORY WRITE notapid fe:00:12 0 EOF",  # pid not a number
        "\x00\xff\ufffd binary junk",
    ],
)
def test_parse_lock_line_rejects_garbage(garbage):
    assert parse_lock_line(garbage) is None


def test_parse_own_ofd_lock_from_fdinfo(tmp_path):
    """A FileLock held by this process shows in our fdinfo and parses to the file's inode."""
    import ferrolock

    path = tmp_path / "own.lock"
    with ferrolock.FileLock(str(path)):
        entries = []
        for fd in os.listdir("/proc/self/fdinfo"):
            try:
                with open(f"/proc/self/fdinfo/{fd}") as fh:
                    text = fh.read()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("lock:"):
                    entry = parse_lock_line(line)
                    assert entry is not None, line
                    entries.append(entry)
    ino = path.stat().st_ino
    mine = [e for e in entries if e.key[2] == ino]
    assert len(mine) == 1, entries
    assert mine[0].kind == "ofd"
    assert mine[0].pid == -1
    assert mine[0].waiter is False


# -------------------------------------------------------------------------------- holders kinds


def test_holders_shows_flock_kind(holder, lock_dir):
    h = holder("flock", lock_dir / "flocked")
    js = _holders_json(lock_dir)
    assert js["flocked"]["held"] is True
    assert js["flocked"]["kind"] == "flock"
    assert h.pid in js["flocked"]["holder_pids"]
    status = ferro_holders.status_of(str(lock_dir / "flocked"))
    assert (status.held, status.kind) == (True, "flock")
    assert h.pid in status.holder_pids
    h.release()
    assert h.wait() == 0
    js = _holders_json(lock_dir)
    assert js["flocked"]["held"] is False
    assert js["flocked"]["kind"] is None


@pytest.mark.parametrize(
    "kind, target, file_name, lock_kind",
    [
        ("ferro-lock", "waited-on", "waited-on", "ofd"),
        ("lockf", None, "lockf-file", "posix"),
    ],
)
def test_holders_counts_a_blocked_waiter(
    holder, spawn, lock_dir, kind, target, file_name, lock_kind
):
    tgt = (target, lock_dir) if target else lock_dir / file_name
    args = ["--kind", kind]
    args += ["--name", target, "--lock-path", str(lock_dir)] if target else ["--path", str(tgt)]
    first = holder(kind, tgt)
    second = spawn("holder.py", *args)  # blocks in the kernel behind `first`
    status = _wait_for_waiters(lock_dir / file_name)
    assert status.held is True
    assert status.waiters == 1
    assert status.kind == lock_kind
    assert first.pid in status.holder_pids
    assert second.pid not in status.holder_pids  # a waiter is not a holder

    js = _holders_json(lock_dir)
    assert js[file_name]["waiters"] == 1
    assert js[file_name]["holder_pids"] == [first.pid]

    r = run_cli("holders", "--lock-path", lock_dir)
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith(file_name + " "))
    assert row.split()[1:4] == ["held", lock_kind, "1"], r.stdout

    # the waiter gets the lock when the holder lets go; then nobody waits any more
    first.release()
    assert first.wait() == 0
    second.expect("ACQUIRED", timeout=15)
    js = _holders_json(lock_dir)
    assert js[file_name]["waiters"] == 0
    assert js[file_name]["holder_pids"] == [second.pid]
    second.release()
    assert second.wait() == 0


# ------------------------------------------------------------------------------ run: exit codes


def test_run_busy_no_wait_exits_75(holder, lock_dir, tmp_path):
    h = holder("ferro-lock", ("busy", lock_dir))
    marker = tmp_path / "ran"
    for flag in ("--no-wait", "-n"):
        r = run_cli("run", "busy", "--lock-path", lock_dir, flag, "--", "touch", marker)
        assert r.returncode == EX_TEMPFAIL, r.stderr
        assert not marker.exists()
        assert "busy" in r.stderr and str(h.pid) in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    h.release()
    assert h.wait() == 0
    r = run_cli("run", "busy", "--lock-path", lock_dir, "--no-wait", "--", "touch", marker)
    assert r.returncode == 0, r.stderr
    assert marker.exists()


@pytest.mark.parametrize("kind", ["ferro-lock", "oslo-lock"])
def test_run_timeout_exits_75(holder, lock_dir, tmp_path, kind):
    h = holder(kind, ("slow", lock_dir))
    marker = tmp_path / "ran"
    r = run_cli("run", "slow", "--lock-path", lock_dir, "--timeout", "0.3", "--", "touch", marker)
    assert r.returncode == EX_TEMPFAIL, r.stderr
    assert not marker.exists()
    assert "timed out" in r.stderr and str(h.pid) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    h.release()
    assert h.wait() == 0


def test_run_without_lock_path_exits_78(tmp_path):
    marker = tmp_path / "ran"
    env = child_env()
    assert "OSLO_LOCK_PATH" not in env
    r = run_cli("run", "x", "--", "touch", marker, env=env)
    assert r.returncode == EX_CONFIG, r.stderr
    assert not marker.exists()
    assert "OSLO_LOCK_PATH" in r.stderr and "--lock-path" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_uses_oslo_lock_path_from_environment(tmp_path):
    d = tmp_path / "from-env"
    r = run_cli("run", "envy", "--", "true", env=child_env(OSLO_LOCK_PATH=str(d)))
    assert r.returncode == 0, r.stderr
    assert (d / "envy").is_file()


@pytest.mark.parametrize("bad", ["", "x" * 300])
def test_run_invalid_name_exits_78(lock_dir, tmp_path, bad):
    marker = tmp_path / "ran"
    r = run_cli("run", bad, "--lock-path", lock_dir, "--", "touch", marker)
    assert r.returncode == EX_CONFIG, r.stderr
    assert not marker.exists()
    assert "Traceback" not in r.stderr
    assert "hint:" not in r.stderr  # the lock path was given; the name is what is wrong
    assert list(lock_dir.iterdir()) == []


@pytest.mark.parametrize("cmd", ["no-such-command-ferrolock-test", "/nonexistent/dir/cmd"])
def test_run_missing_command_exits_127_and_releases(lock_dir, cmd):
    r = run_cli("run", "nocmd", "--lock-path", lock_dir, "--", cmd, "arg")
    assert r.returncode == 127, r.stderr
    assert cmd in r.stderr and "not found" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("run", "nocmd", "--lock-path", lock_dir, "--no-wait", "--", "true")
    assert r.returncode == 0, r.stderr


def test_run_non_executable_exits_126(lock_dir, tmp_path):
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)  # no x bit for anyone: not executable even for root
    for cmd in (script, tmp_path):  # a plain file, and a directory
        r = run_cli("run", "noexec", "--lock-path", lock_dir, "--", cmd)
        assert r.returncode == 126, r.stderr
        assert str(cmd) in r.stderr and "cannot execute" in r.stderr
        assert "Traceback" not in r.stderr
    r = run_cli("run", "noexec", "--lock-path", lock_dir, "--no-wait", "--", "true")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_run_passes_exit_code_through(lock_dir, code):
    r = run_cli("run", "rc", "--lock-path", lock_dir, "--", "sh", "-c", f"exit {code}")
    assert r.returncode == code, r.stderr


def test_run_child_killed_by_signal_is_128_plus_n(lock_dir):
    r = run_cli("run", "killed", "--lock-path", lock_dir, "--", "sh", "-c", "kill -USR1 $$")
    assert r.returncode == 128 + signal.SIGUSR1, r.stderr


# --------------------------------------------------------------------------------- run: signals

_TERM_CHILD = """
import os, signal, sys, time
marker = sys.argv[1]
def on_term(signum, frame):
    with open(marker, "w") as fh:
        fh.write("TERM")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
signal.signal(signal.SIGTERM, on_term)
print("READY", os.getpid(), flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(3)
"""


def test_sigterm_to_run_reaches_child_and_exits_143(lock_dir, tmp_path, cli_children):
    marker = tmp_path / "got-term"
    run = _start_cli(
        cli_children,
        "run",
        "term",
        "--lock-path",
        lock_dir,
        "--",
        sys.executable,
        "-c",
        _TERM_CHILD,
        marker,
    )
    child_pid = int(run.expect("READY", timeout=20).split()[1])
    assert child_pid != run.pid
    # while the command runs, `ferrolock run` holds the lock
    assert run.pid in ferro_holders.status_of(str(lock_dir / "term")).holder_pids
    run.signal(signal.SIGTERM)
    rc = run.wait(timeout=15)
    assert rc == 128 + signal.SIGTERM, run.stderr  # not -15: run exited, reporting the child
    assert marker.read_text() == "TERM"  # the child received the forwarded SIGTERM
    assert "Traceback" not in run.stderr
    r = run_cli("run", "term", "--lock-path", lock_dir, "--no-wait", "--", "true")
    assert r.returncode == 0, r.stderr


def test_sigint_while_waiting_exits_130_and_command_never_runs(
    holder, lock_dir, tmp_path, cli_children
):
    h = holder("ferro-lock", ("intr", lock_dir))
    marker = tmp_path / "ran"
    waiting = _start_cli(
        cli_children, "run", "intr", "--lock-path", lock_dir, "--", "touch", marker
    )
    _wait_for_waiters(lock_dir / "intr")  # really blocked on the lock
    assert waiting.proc.poll() is None, waiting.stderr
    waiting.signal(signal.SIGINT)
    rc = waiting.wait(timeout=10)
    assert rc == 130, waiting.stderr
    assert "interrupted" in waiting.stderr
    assert "Traceback" not in waiting.stderr
    assert not marker.exists()
    # the holder is unaffected and nobody waits any more
    assert h.proc.poll() is None
    status = ferro_holders.status_of(str(lock_dir / "intr"))
    assert (status.held, status.holder_pids, status.waiters) == (True, [h.pid], 0)
    h.release()
    assert h.wait() == 0
    time.sleep(0.2)
    assert not marker.exists()  # still never ran, even once the lock became free


def test_sigint_to_run_while_command_runs_is_forwarded(lock_dir, cli_children):
    # a SIGINT sent to `run` alone (not by the tty to the whole group) reaches the command
    run = _start_cli(
        cli_children,
        "run",
        "fwd",
        "--lock-path",
        lock_dir,
        "--",
        "sh",
        "-c",
        "echo READY; exec sleep 30",
    )
    run.expect("READY", timeout=20)
    run.signal(signal.SIGINT)
    assert run.wait(timeout=10) == 128 + signal.SIGINT, run.stderr
    assert "Traceback" not in run.stderr
    r = run_cli("run", "fwd", "--lock-path", lock_dir, "--no-wait", "--", "true")
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------ demo


@pytest.mark.timeout(60)
def test_demo_no_lock_fails_and_reports_overlaps():
    r = run_cli("demo", "--no-lock", "--rounds", "1", "--seed", "7", timeout=40)
    assert r.returncode == 1, (r.stdout[-2000:], r.stderr[-2000:])
    assert "backend: NONE (--no-lock)" in r.stdout
    overlaps = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("OVERLAP:")]
    assert overlaps, r.stdout
    assert r.stdout.rstrip().splitlines()[-1] == "FAIL"
    assert "PASS" not in r.stdout.split()
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:secret@h/db",
        "mysql+pymysql://admin:secret@db.example:3306/nova?charset=utf8",
        "mysql://u@h/db?password=secret",
        "file://u:secret@somehost/dir",
    ],
)
def test_demo_unavailable_backend_exits_2_without_leaking_secret(url):
    r = run_cli("demo", "--backend", url, timeout=20)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "secret" not in r.stdout
    assert "secret" not in r.stderr
    assert "***" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_demo_unparsable_backend_exits_2_without_leaking_secret():
    r = run_cli("demo", "--backend", "mysql://u:secret@[::1/db", timeout=20)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "secret" not in r.stdout + r.stderr
    assert "URL" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.timeout(60)
def test_demo_file_backend_uses_the_directory(tmp_path):
    d = tmp_path / "demo-locks"  # does not exist yet
    r = run_cli("demo", "--backend", f"file://{d}", "--rounds", "1", "--workers", "2", timeout=40)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert f"backend: file://{d}\n" in r.stdout, r.stdout  # not a temporary dir
    assert r.stdout.rstrip().splitlines()[-1] == "PASS"
    # the lock file is in DIR and left there (lock files are never deleted)
    assert sorted(p.name for p in d.iterdir()) == [LOCK_NAME]


def test_demo_unusable_file_backend_exits_2(tmp_path):
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("")
    r = run_cli("demo", "--backend", f"file://{not_a_dir}", "--rounds", "1", timeout=40)
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    assert str(not_a_dir) in r.stderr
    assert "Traceback" not in r.stderr
    assert "PASS" not in r.stdout
    assert not_a_dir.read_text() == ""  # untouched


# ------------------------------------------------------------------------------- mask_url (unit)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("mysql://u:secret@h/db", "mysql://u:***@h/db"),
        ("mysql://u:secret@h:3306/db", "mysql://u:***@h:3306/db"),
        ("mysql://u:p@ss@h/db", "mysql://u:***@h/db"),  # '@' inside the password
        ("mysql://u:@h/db", "mysql://u:***@h/db"),  # empty password is still a password
        ("mysql://u@h/db", "mysql://***@h/db"),  # a lone user part may be a token
        ("mysql://nova:pa#ss@db/nova", "mysql://nova:***@db/nova"),  # '#' in the password
        ("mysql://nova:p/s?s@db/nova", "mysql://nova:***@db/nova"),  # '/' and '?' in it
        ("https://ghp_token@example.org/x", "https://***@example.org/x"),
        ("mysql://u:pw@h/db?pwd=a&auth=b#frag", "mysql://u:***@h/db?pwd=***&auth=***"),
        ("file:///var/lib/nova/tmp", "file:///var/lib/nova/tmp"),
        ("file://", "file://"),
        (
            "mysql://h/db?user=nova&password=pw&charset=utf8",
            "mysql://h/db?user=nova&password=***&charset=utf8",
        ),
        ("etcd://h?api_key=abc&Token=t&x=1", "etcd://h?api_key=***&Token=***&x=1"),
        ("rbd://h/pool?conf=/etc/ceph/ceph.conf", "rbd://h/pool?conf=/etc/ceph/ceph.conf"),
        ("http://[::1", "<unparsable URL>"),
    ],
)
def test_mask_url(url, expected):
    assert mask_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:hunter2@h/db",
        "mysql://user:hunter2@h/db?passwd=hunter2&secret_key=hunter2",
        "redis://:hunter2@h:6379/0",
    ],
)
def test_mask_url_never_shows_the_secret(url):
    masked = mask_url(url)
    assert "hunter2" not in masked
    assert "***" in masked


# ------------------------------------------------------------------------ check_intervals (unit)


def test_check_intervals_empty_passes():
    result = demo_story.check_intervals([], 0)
    assert (result.flattens, result.counter, result.overlaps, result.passed) == (0, 0, [], True)


def test_check_intervals_disjoint_and_touching_pass():
    lines = ["b 2.0 3.0", "a 0.0 1.0", "c 3.0 4.5"]  # unsorted; b and c touch at 3.0
    result = demo_story.check_intervals(lines, 3)
    assert result.flattens == 3
    assert result.overlaps == []
    assert result.passed


def test_check_intervals_reports_overlap():
    result = demo_story.check_intervals(["compute-1 0.0 2.0", "compute-2 1.5 3.0"], 2)
    assert len(result.overlaps) == 1
    earlier, later, seconds = result.overlaps[0]
    assert (earlier, later) == ("compute-1", "compute-2")
    assert seconds == pytest.approx(0.5)
    assert not result.passed


def test_check_intervals_nested_overlaps_name_the_long_holder():
    lines = ["long 0.0 10.0", "x 1.0 2.0", "y 3.0 4.0", "z 11.0 12.0"]
    result = demo_story.check_intervals(lines, 4)
    assert [(e, w) for e, w, _ in result.overlaps] == [("long", "x"), ("long", "y")]
    assert [s for _, _, s in result.overlaps] == pytest.approx([9.0, 7.0])
    assert not result.passed


def test_check_intervals_lost_update_fails_without_overlap():
    result = demo_story.check_intervals(["a 0.0 1.0", "b 1.5 2.0"], 1)
    assert result.overlaps == []
    assert result.flattens == 2 and result.counter == 1
    assert not result.passed
