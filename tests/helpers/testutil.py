"""Shared helpers for the ferrolock test suites (conftest puts this directory on sys.path).

``Child`` wraps a helper process: stdout lines are read by a background thread so
every wait on a child is bounded (``expect(prefix, timeout)``), closing stdin is
the "let go and exit" signal of the helper scripts, and ``finish()`` guarantees the
process is gone and its pipes are closed at teardown.

Readiness probes replace "sleep until the waiter is surely blocked": ``wait_until``
polls a condition with a generous bound (a hang fails, a slow machine does not);
``blocked_on(path)`` waits until the kernel lists a blocked request for the file in
``/proc/locks``; ``queued_on(lock)`` waits until a native lock's ``_waiters()`` test
hook counts the waiters of this process.  Tests never assert how fast something
happened: timing claims belong in the benchmark.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import re
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

HELPERS = Path(__file__).resolve().parent
SCRIPTS_DIR = Path(sysconfig.get_path("scripts"))


#: The bound of every readiness wait: long enough for a loaded 2-core machine, short
#: enough to fail a hung test before pytest-timeout does.
PATIENCE = 10.0


def wait_until(
    predicate: Callable[[], Any], timeout: float = PATIENCE, what: str | None = None
) -> Any:
    """Return ``predicate()``'s first truthy value, polling until ``timeout`` (then fail)."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or predicate}")
        # A probe, not synchronisation: how long we pause changes only how soon we notice.
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def _file_key(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    st = os.stat(path)
    return os.major(st.st_dev), os.minor(st.st_dev), st.st_ino


def proc_locks(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(held, blocked): the kernel's lock records on ``path`` from ``/proc/locks``, for every
    process and every kind (OFD, POSIX ``lockf``, ``flock``). A blocked request is a
    ``N: -> KIND ...`` line; its key is ``MAJ:MIN:INODE`` with major and minor in hex."""
    try:
        major, minor, ino = _file_key(path)
    except FileNotFoundError:
        return 0, 0
    held = blocked = 0
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            is_blocked = len(fields) > 1 and fields[1] == "->"
            if is_blocked:
                del fields[1]
            if len(fields) < 6:
                continue
            try:
                maj, mino, inode = fields[5].split(":")
                key = (int(maj, 16), int(mino, 16), int(inode))
            except ValueError:
                continue
            if key == (major, minor, ino):
                if is_blocked:
                    blocked += 1
                else:
                    held += 1
    return held, blocked


def blocked_on(path: str | os.PathLike[str], count: int = 1, timeout: float = PATIENCE) -> None:
    """Wait until at least ``count`` requests are blocked in the kernel on file ``path``."""
    wait_until(
        lambda: proc_locks(path)[1] >= count,
        timeout,
        f"{count} blocked request(s) on {path} in /proc/locks",
    )


def queued_on(lock: Any, count: int = 1, timeout: float = PATIENCE) -> None:
    """Wait until native ``lock``'s ``_waiters()`` test hook counts ``count`` waiters."""
    wait_until(lambda: lock._waiters() >= count, timeout, f"{count} waiter(s) on {lock!r}")


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

    def __init__(
        self, argv: list[str], env: dict[str, str] | None = None, new_session: bool = False
    ) -> None:
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
        try:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))
        finally:
            self.proc.stdout.close()
            self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        try:
            for line in self.proc.stderr:
                self._stderr.append(line)
        finally:
            self.proc.stderr.close()

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
                    f"stdout so far={self.seen!r} stderr={self.stderr!r}"
                )
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                # give the stderr pump a moment to finish
                self._t_err.join(timeout=2)
                raise AssertionError(
                    f"child {self.argv!r} exited (rc={self.proc.poll()}) before printing "
                    f"{prefix!r}; stdout={self.seen!r} stderr={self.stderr!r}"
                )
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def drain(self) -> list[str]:
        """Every stdout line printed so far (without waiting), all recorded in ``seen``."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return list(self.seen)
            if line is None:
                self.lines.put(None)  # keep the end-of-output marker for expect()
                return list(self.seen)
            self.seen.append(line)

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
                f"stdout={self.seen!r} stderr={self.stderr!r}"
            ) from None

    def finish(self) -> None:
        """Teardown: let go, make sure the process is gone, close every pipe."""
        self.release()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                if self.new_session:
                    try:
                        os.killpg(self.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                self.kill()
        self._t_out.join(5)
        self._t_err.join(5)

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


@contextlib.contextmanager
def tolerate_fasteners_fd_leak(directory):
    """fasteners (hence oslo) leaves its lock file open when an acquire attempt fails;
    the file object is collected later with a ResourceWarning that is not ours.  Within
    this block (and a gc pass at its end) only ResourceWarnings about files under
    ``directory`` are dropped; everything else still surfaces."""
    orig = sys.unraisablehook

    def hook(u):
        if isinstance(u.exc_value, ResourceWarning) and str(directory) in str(u.exc_value):
            return
        orig(u)

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                category=ResourceWarning,
                message=r"unclosed file .*" + re.escape(str(directory)),
            )
            try:
                yield
            finally:
                gc.collect()
    finally:
        sys.unraisablehook = orig


def oslo_busy(name, lock_path, prefix=None) -> bool:
    """True if oslo.concurrency's non-blocking external lock attempt fails (busy)."""
    from oslo_concurrency import lockutils as oslo_lockutils

    with tolerate_fasteners_fd_leak(lock_path):
        try:
            with oslo_lockutils.lock(
                name,
                lock_file_prefix=prefix,
                external=True,
                lock_path=str(lock_path),
                blocking=False,
            ):
                return False
        except oslo_lockutils.AcquireLockFailedException as e:
            assert str(e) == f"Failed to acquire the lock {name}"
            return True


def run_cli(
    *args: object,
    timeout: float = 30,
    env: dict[str, str] | None = None,
    argv0: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the ``ferrolock`` console script (or ``argv0``) to completion, bounded."""
    return subprocess.run(
        [*(argv0 or [console_script("ferrolock")]), *map(str, args)],
        env=env if env is not None else child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_python(code: str, *args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code args...`` to completion, bounded, with a clean child environment."""
    return run_cli(*args, timeout=timeout, argv0=[sys.executable, "-c", code])


def hold_in_thread(cm: Any) -> Callable[[], None]:
    """Hold context manager ``cm`` in a daemon thread until the returned callable is called."""
    held = threading.Event()
    done = threading.Event()

    def run() -> None:
        with cm:
            held.set()
            done.wait(30)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert held.wait(5)

    def release() -> None:
        done.set()
        t.join(5)

    return release
