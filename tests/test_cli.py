"""The `ferrolock` command line (run / holders / demo) and `python -m ferrolock`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from testutil import PATIENCE, Child, blocked_on, console_script, run_cli

pytestmark = pytest.mark.timeout(60)


def ferrolock_cli() -> list[str]:
    return [console_script("ferrolock")]


def _hold_with_cli(cli_children, lock_dir, name="cli-lock") -> Child:
    c = Child(
        [
            *ferrolock_cli(),
            "run",
            name,
            "--lock-path",
            str(lock_dir),
            "--",
            "sh",
            "-c",
            "echo HELD; read x; echo DONE",
        ]
    )
    cli_children.append(c)
    c.expect("HELD", timeout=20)
    return c


def test_run_returns_command_exit_code(lock_dir):
    r = run_cli("run", "n1", "--lock-path", lock_dir, "--", "sh", "-c", "exit 3")
    assert r.returncode == 3, r.stderr
    r = run_cli("run", "n1", "--lock-path", lock_dir, "--", "true")
    assert r.returncode == 0, r.stderr
    assert (lock_dir / "n1").is_file()


def test_python_dash_m_ferrolock(lock_dir):
    r = run_cli(
        "run",
        "n2",
        "--lock-path",
        lock_dir,
        "--",
        "sh",
        "-c",
        "exit 5",
        argv0=[sys.executable, "-m", "ferrolock"],
    )
    assert r.returncode == 5, r.stderr


def test_run_holds_the_lock_while_the_command_runs(lock_dir):
    # the command itself checks, with the real oslo.concurrency, that the lock is busy
    check = (
        "import sys\n"
        "from oslo_concurrency import lockutils\n"
        "try:\n"
        f"    with lockutils.lock('held-during', external=True, lock_path={str(lock_dir)!r},\n"
        "                        blocking=False):\n"
        "        sys.exit(9)\n"
        "except lockutils.AcquireLockFailedException:\n"
        "    sys.exit(0)\n"
    )
    r = run_cli(
        "run",
        "held-during",
        "--lock-path",
        lock_dir,
        "--prefix",
        "pfx",
        "--",
        sys.executable,
        "-c",
        check.replace("'held-during'", "'held-during', 'pfx'"),
    )
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert (lock_dir / "pfx-held-during").is_file()


def test_second_run_with_timeout_fails_while_first_holds(lock_dir, tmp_path, cli_children):
    first = _hold_with_cli(cli_children, lock_dir)
    marker = tmp_path / "second-ran"
    t0 = time.monotonic()
    r = run_cli(
        "run", "cli-lock", "--lock-path", lock_dir, "--timeout", "0.5", "--", "touch", marker
    )
    elapsed = time.monotonic() - t0
    assert r.returncode != 0
    assert not marker.exists(), "the command ran without the lock"
    assert elapsed >= 0.5
    assert elapsed < 10
    assert r.stderr.strip(), "a failure must say why"
    assert "Traceback" not in r.stderr

    r = run_cli("run", "cli-lock", "--lock-path", lock_dir, "--no-wait", "--", "touch", marker)
    assert r.returncode != 0 and not marker.exists()

    first.release()
    first.expect("DONE")
    assert first.wait() == 0
    r = run_cli(
        "run", "cli-lock", "--lock-path", lock_dir, "--timeout", "0.5", "--", "touch", marker
    )
    assert r.returncode == 0, r.stderr
    assert marker.exists()


def test_ctrl_c_while_cli_waits_for_the_lock(lock_dir, tmp_path, cli_children):
    first = _hold_with_cli(cli_children, lock_dir, name="ctrl-c")
    marker = tmp_path / "ran"
    second = Child(
        [
            *ferrolock_cli(),
            "run",
            "ctrl-c",
            "--lock-path",
            str(lock_dir),
            "--",
            "touch",
            str(marker),
        ]
    )
    cli_children.append(second)
    blocked_on(lock_dir / "ctrl-c")  # started and blocked on the lock
    assert second.proc.poll() is None, second.stderr
    second.signal(signal.SIGINT)
    rc = second.wait(timeout=PATIENCE)
    assert rc != 0
    assert not marker.exists()
    assert "Traceback" not in second.stderr
    # the first holder is unaffected, and once it is done the lock is free
    assert first.proc.poll() is None
    first.release()
    assert first.wait() == 0
    r = run_cli("run", "ctrl-c", "--lock-path", lock_dir, "--no-wait", "--", "true")
    assert r.returncode == 0, r.stderr


def test_oslo_holder_blocks_cli_run(holder, lock_dir, tmp_path):
    h = holder("oslo-lock", ("oslo-held", lock_dir))
    marker = tmp_path / "ran"
    r = run_cli(
        "run", "oslo-held", "--lock-path", lock_dir, "--timeout", "0.3", "--", "touch", marker
    )
    assert r.returncode != 0 and not marker.exists()
    h.release()
    assert h.wait() == 0


def _holders_json(lock_dir):
    r = run_cli("holders", "--lock-path", lock_dir, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    return {entry["name"]: entry for entry in data["locks"]}


def _holders_text(lock_dir):
    r = run_cli("holders", "--lock-path", lock_dir)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("kind", ["ferro-lock", "oslo-lock"])
def test_holders_lists_file_and_holder_pid(holder, lock_dir, kind):
    # a free lock file next to the held one
    import ferrolock

    with ferrolock.lock("free-one", external=True, lock_path=str(lock_dir)):
        pass
    h = holder(kind, ("busy-one", lock_dir))
    text = _holders_text(lock_dir)
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.strip()}
    assert "busy-one" in lines, text
    assert str(h.pid) in lines["busy-one"], text
    assert "free-one" in lines, text
    assert str(h.pid) not in lines["free-one"], text

    js = _holders_json(lock_dir)
    assert js["busy-one"]["held"] is True
    assert h.pid in js["busy-one"]["holder_pids"]
    assert js["busy-one"]["kind"] == ("ofd" if kind == "ferro-lock" else "posix")
    assert js["free-one"]["held"] is False
    assert js["free-one"]["holder_pids"] == []

    h.release()
    assert h.wait() == 0
    js = _holders_json(lock_dir)
    assert js["busy-one"]["held"] is False
    assert js["busy-one"]["holder_pids"] == []


def test_holders_with_cli_run_holder(lock_dir, cli_children):
    first = _hold_with_cli(cli_children, lock_dir, name="via-cli")
    js = _holders_json(lock_dir)
    assert js["via-cli"]["held"] is True
    # the `ferrolock run` process holds it (its child shares the descriptor at most)
    assert first.pid in js["via-cli"]["holder_pids"]


def test_holders_bad_lock_path(tmp_path):
    r = run_cli("holders", "--lock-path", tmp_path / "nope")
    assert r.returncode != 0
    assert str(tmp_path / "nope") in r.stderr
    assert "Traceback" not in r.stderr


def test_run_bad_name_is_a_clear_error(lock_dir, tmp_path):
    marker = tmp_path / "ran"
    for bad in ["", "x" * 300]:
        r = run_cli("run", bad, "--lock-path", lock_dir, "--", "touch", marker)
        assert r.returncode != 0
        assert not marker.exists()
        assert r.stderr.strip() and "Traceback" not in r.stderr
    assert list(lock_dir.iterdir()) == []


def test_run_without_lock_path_is_a_clear_error(tmp_path):
    marker = tmp_path / "ran"
    r = run_cli("run", "x", "--", "touch", marker)
    assert r.returncode != 0
    assert not marker.exists()
    assert "OSLO_LOCK_PATH" in r.stderr or "lock-path" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.timeout(40)
def test_demo_exits_zero_quickly():
    t0 = time.monotonic()
    try:
        r = run_cli("demo", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("ferrolock demo took more than 15 s")
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert time.monotonic() - t0 < 15
