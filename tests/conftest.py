"""Shared fixtures for the ferrolock test suites.

Child processes are real, independent Python interpreters started with
``subprocess`` (never through a shell ``&``, which would ignore SIGINT).
Every child started through the ``spawn`` fixture is killed at teardown, and
every wait on a child is bounded, so a broken lock can fail a test but never
hang the run.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parent / "helpers"
SCRIPTS_DIR = Path(sysconfig.get_path("scripts"))


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OSLO_LOCK_PATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    # Children are not under pytest's warning filters; keep their stderr clean.
    env.setdefault("PYTHONWARNINGS", "ignore")
    env.update(extra)
    return env


class Child:
    """A helper process whose stdout lines are read by a background thread."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None,
                 new_session: bool = False) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env if env is not None else child_env(),
            start_new_session=new_session,
        )
        self.pid = self.proc.pid
        self.new_session = new_session
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._stderr: list[str] = []
        self._t_out = threading.Thread(target=self._pump_out, daemon=True)
        self._t_err = threading.Thread(target=self._pump_err, daemon=True)
        self._t_out.start()
        self._t_err.start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def expect(self, prefix: str, timeout: float = 10.0) -> str:
        """Return the next stdout line starting with ``prefix`` (bounded wait)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"child {self.argv!r} did not print {prefix!r} within {timeout}s; "
                    f"stdout so far={self.seen!r} stderr={self.stderr!r}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                # give the stderr pump a moment to finish
                self._t_err.join(timeout=2)
                raise AssertionError(
                    f"child {self.argv!r} exited (rc={self.proc.poll()}) before printing "
                    f"{prefix!r}; stdout={self.seen!r} stderr={self.stderr!r}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def release(self) -> None:
        """Close stdin: the helper protocol treats EOF as "let go and exit"."""
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def wait(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"child {self.argv!r} did not exit within {timeout}s; "
                f"stdout={self.seen!r} stderr={self.stderr!r}") from None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    d = tmp_path / "locks"
    d.mkdir()
    return d


@pytest.fixture
def spawn():
    """Factory: spawn(script_name, *args) -> Child running tests/helpers/<script>."""
    children: list[Child] = []

    def _spawn(script: str, *args: str, env: dict[str, str] | None = None,
               new_session: bool = False) -> Child:
        argv = [sys.executable, str(HELPERS / script), *map(str, args)]
        c = Child(argv, env=env, new_session=new_session)
        children.append(c)
        return c

    yield _spawn
    for c in children:
        c.release()
        if c.proc.poll() is None:
            try:
                c.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                if c.proc.poll() is None:
                    if c.new_session:
                        try:
                            os.killpg(c.pid, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            pass
                    c.kill()


@pytest.fixture
def holder(spawn):
    """Start a helper process holding a lock: holder(kind, target) -> Child.

    ``kind`` is one of ferro-lock, ferro-lockutils, oslo-lock, ferro-filelock,
    fasteners, lockf.  For the *-lock kinds ``target`` is ``(name, lock_path)``;
    for the others it is a file path.  Returns once the child holds the lock.
    """

    def _holder(kind: str, target, prefix: str | None = None) -> Child:
        if isinstance(target, tuple):
            name, lock_path = target
            args = ["--kind", kind, "--name", name, "--lock-path", str(lock_path)]
        else:
            args = ["--kind", kind, "--path", str(target)]
        if prefix:
            args += ["--prefix", prefix]
        c = spawn("holder.py", *args)
        c.expect("ACQUIRED", timeout=20)
        return c

    return _holder


def console_script(name: str) -> str:
    """Path of an installed console script (fails, not skips, when missing)."""
    candidate = SCRIPTS_DIR / name
    if candidate.exists():
        return str(candidate)
    cand2 = Path(sys.executable).parent / name
    if cand2.exists():
        return str(cand2)
    import shutil

    found = shutil.which(name)
    assert found, f"console script {name!r} is not installed (looked in {SCRIPTS_DIR})"
    return found


def fd_lock_lines(pid: int | str = "self") -> list[str]:
    """The 'lock:' lines of every open fd of a process (held file locks)."""
    out = []
    base = Path(f"/proc/{pid}/fdinfo")
    for fd in base.iterdir():
        try:
            text = fd.read_text()
        except OSError:
            continue
        out.extend(line for line in text.splitlines() if line.startswith("lock:"))
    return out
