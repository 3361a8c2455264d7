"""A throwaway MariaDB (or single-node Galera) server for tests.

Uses Debian's ``mariadb-server`` (installed with apt-get when missing and we are root). The
server lives in a temporary directory, listens on 127.0.0.1 and a free port only, gets its own
database, user and password, and ``stop()`` ends exactly the process ``start()`` started.

Run by hand: ``python tests/services/mariadb.py [--galera]`` prints the URL and serves until
Ctrl-C; ``... -- CMD`` runs CMD with ``FERROLOCK_TEST_MYSQL_URL`` set (``make test-rust`` does).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

GALERA_PROVIDERS = ("/usr/lib/galera/libgalera_smm.so", "/usr/lib/libgalera_smm.so")
START_TIMEOUT = 60.0


class ServiceError(RuntimeError):
    """The server could not be installed or started (with its log's tail)."""


def _which(name: str) -> Optional[str]:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def ensure_installed(galera: bool = False) -> None:
    """Install mariadb-server (and galera-4) from Debian when missing and we may."""
    wanted = ["mariadb-server"] if _which("mariadbd") is None else []
    if galera and not any(os.path.exists(p) for p in GALERA_PROVIDERS):
        wanted.append("galera-4")
    if not wanted:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServiceError(f"{' '.join(wanted)} missing, and cannot apt-get install it here")
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=900", "install", "-y", *wanted]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceError(f"apt-get install {' '.join(wanted)} failed: {done.stderr[-2000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MariaDB:
    """One throwaway server. ``url`` is ready once ``start()`` returns."""

    def __init__(self, galera: bool = False) -> None:
        self.galera = galera
        self.dir = Path(tempfile.mkdtemp(prefix="ferrolock-mariadb-"))
        self.port = free_port()
        self.user = "ferrolock"
        self.password = "pw-" + secrets.token_hex(8)
        self.database = "ferrolock"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.os_user = _os_user()

    @property
    def socket(self) -> Path:
        return self.dir / "sock"

    @property
    def url(self) -> str:
        return f"mysql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def log_tail(self) -> str:
        try:
            return (self.dir / "error.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def start(self) -> MariaDB:
        ensure_installed(self.galera)
        data = self.dir / "data"
        if not data.exists():
            init = subprocess.run(
                [
                    _which("mariadb-install-db") or "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={data}",
                    f"--user={self.os_user}",
                    "--skip-test-db",
                    "--auth-root-authentication-method=socket",
                ],
                capture_output=True,
                text=True,
            )
            if init.returncode != 0:
                raise ServiceError(f"mariadb-install-db failed: {init.stderr[-2000:]}")
            first = True
        else:
            first = False
        self._launch(data)
        if first:
            pw = self.password.replace("'", "''")
            self.admin_sql(
                f"CREATE DATABASE IF NOT EXISTS {self.database};"
                f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{pw}';"
                f"CREATE USER '{self.user}'@'localhost' IDENTIFIED BY '{pw}';"
                f"GRANT ALL ON {self.database}.* TO '{self.user}'@'127.0.0.1';"
                f"GRANT ALL ON {self.database}.* TO '{self.user}'@'localhost';"
                # PROCESS lets the tests see other sessions (holders) in the processlist;
                # CONNECTION ADMIN lets them KILL another user's session.
                f"GRANT PROCESS, CONNECTION ADMIN ON *.* TO '{self.user}'@'127.0.0.1';"
                "FLUSH PRIVILEGES;"
            )
        return self

    def _launch(self, data: Path) -> None:
        argv = [
            _which("mariadbd") or "mariadbd",
            "--no-defaults",
            f"--user={self.os_user}",
            f"--datadir={data}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.dir / 'mariadbd.pid'}",
            f"--log-error={self.dir / 'error.log'}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--max-connections=500",
        ]
        if self.galera:
            provider = next((p for p in GALERA_PROVIDERS if os.path.exists(p)), None)
            if provider is None:
                raise ServiceError("no Galera provider (libgalera_smm.so) installed")
            argv += [
                "--wsrep-on=ON",
                f"--wsrep-provider={provider}",
                "--wsrep-cluster-address=gcomm://",
                "--wsrep-new-cluster",
                "--binlog-format=ROW",
                "--wsrep-node-address=127.0.0.1",
                f"--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{free_port()}",
            ]
        else:
            argv.append("--skip-log-bin")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"mariadbd exited at start:\n{self.log_tail()}")
            ping = subprocess.run(
                [
                    _which("mariadb-admin") or "mariadb-admin",
                    "--no-defaults",
                    f"--socket={self.socket}",
                    f"-u{self.os_user}",
                    "--connect-timeout=2",
                    "ping",
                ],
                capture_output=True,
            )
            if ping.returncode == 0:
                return
            time.sleep(0.1)  # readiness probe: the server has no way to tell us it is up
        self.stop()
        raise ServiceError(
            f"mariadbd did not answer within {START_TIMEOUT:.0f} s:\n{self.log_tail()}"
        )

    def admin_sql(self, sql: str) -> str:
        """Run SQL as the server's superuser (over the unix socket); returns its output."""
        done = subprocess.run(
            [
                _which("mariadb") or "mariadb",
                "--no-defaults",
                f"--socket={self.socket}",
                f"-u{self.os_user}",
                "--batch",
                "--skip-column-names",
                "-e",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise ServiceError(f"SQL failed: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        """Stop the server this object started (and only it); the data stays for restart."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self._launch(self.dir / "data")

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> MariaDB:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _os_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def main() -> int:
    """``mariadb.py [--galera]``: print the URL and serve until Ctrl-C.
    ``mariadb.py [--galera] -- CMD...``: run CMD with ``FERROLOCK_TEST_MYSQL_URL`` set to a
    throwaway server (or the one already in the environment) and exit with CMD's status. When
    the server cannot start, CMD runs without the URL (its tests say they did not run), except
    under ``CI=true``, where that is a failure."""
    argv = sys.argv[1:]
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    galera = "--galera" in (argv[: argv.index("--")] if "--" in argv else argv)
    if command:
        env = dict(os.environ)
        if env.get("FERROLOCK_TEST_MYSQL_URL"):
            return subprocess.call(command, env=env)
        server = MariaDB(galera=galera)
        try:
            server.start()
            env["FERROLOCK_TEST_MYSQL_URL"] = server.url
        except (ServiceError, OSError) as exc:
            print(f"no MariaDB for the tests: {exc}", file=sys.stderr)
            if os.environ.get("CI", "").lower() == "true":
                server.cleanup()
                return 1
        try:
            return subprocess.call(command, env=env)
        finally:
            server.cleanup()
    server = MariaDB(galera=galera)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # A background job's SIGINT is ignored: `kill PID` (SIGTERM) must stop the server too.
    signal.signal(signal.SIGTERM, stop)
    with server, contextlib.suppress(KeyboardInterrupt):
        print(server.url, flush=True)
        signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
