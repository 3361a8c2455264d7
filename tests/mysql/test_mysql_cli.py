"""``ferrolock run/holders --backend mysql://``: a server lock around a command, and who holds
a name; the password never printed."""

from __future__ import annotations

import json
import subprocess
import sys

from ferrolock import MySQLLock


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferrolock", *args], capture_output=True, text=True, timeout=60
    )


def password_of(url: str) -> str:
    return url.split("@")[0].rsplit(":", 1)[1]


def test_run_holds_the_lock_around_the_command(mysql_url, lock_name):
    code = (
        "from ferrolock import MySQLLock; import sys; "
        "sys.exit(7 if MySQLLock(sys.argv[1], sys.argv[2]).acquire(False) else 3)"
    )
    done = cli(
        "run",
        "--backend",
        mysql_url,
        lock_name,
        "--",
        sys.executable,
        "-c",
        code,
        mysql_url,
        lock_name,
    )
    assert done.returncode == 3, done.stderr  # busy while the command ran
    assert MySQLLock(mysql_url, lock_name).acquire(False)  # and free after


def test_run_busy_and_unreachable(mysql_url, lock_name):
    holder = MySQLLock(mysql_url, lock_name)
    assert holder.acquire()
    try:
        done = cli("run", "--backend", mysql_url, "-n", lock_name, "--", "true")
        assert done.returncode == 75
        assert f"connection {holder.connection_id}" in done.stderr
        assert password_of(mysql_url) not in done.stderr
        done = cli("run", "--backend", mysql_url, "--timeout", "0.3", lock_name, "--", "true")
        assert done.returncode == 75 and "timed out" in done.stderr
    finally:
        holder.release()
    done = cli("run", "--backend", "mysql://u:sekrit77@127.0.0.1:1/db", lock_name, "--", "true")
    assert done.returncode == 69
    assert "sekrit77" not in done.stderr + done.stdout


def test_holders(mysql_url, lock_name):
    holder = MySQLLock(mysql_url, lock_name)
    assert holder.acquire()
    try:
        done = cli("holders", "--backend", mysql_url, "--json", lock_name, lock_name + "-free")
        assert done.returncode == 0, done.stderr
        locks = json.loads(done.stdout)["locks"]
        assert locks[0]["holder"]["connection_id"] == holder.connection_id
        assert locks[1]["holder"] is None
        done = cli("holders", "--backend", mysql_url, lock_name)
        assert "held" in done.stdout and password_of(mysql_url) not in done.stdout
    finally:
        holder.release()
