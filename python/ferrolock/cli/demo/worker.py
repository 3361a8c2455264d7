"""A demo worker process: one nova-compute host waking on its timer to flatten the shared image.

Every flatten appends its [start, end] interval to a log and bumps a shared counter with a
deliberately racy read-modify-write spread over the flatten: only the lock keeps it exact.
"""

from __future__ import annotations

import hashlib
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Tuple

from ferrolock.cli.demo.backends import DemoLock, NoLock, lock_factory

IMAGE_ID = "6f1c0b9e"
LOCK_NAME = f"nova-flatten-{IMAGE_ID}"
SAFETY_TIMEOUT = 60.0  # a hung worker must not hang the demo forever


@dataclass
class WorkerSpec:
    """Everything a worker process needs; plain data so it pickles for the spawn start method."""

    name: str
    waits: bool  # True: block up to wait_timeout; False: skip when busy
    wait_timeout: float
    schedule: List[Tuple[float, float]]  # (wake-up offset from t0, flatten duration) per round
    backend: str
    workspace: str
    use_lock: bool = True


class Event(NamedTuple):
    t: float  # seconds since t0
    worker: str
    what: str  # READY HOLDS WAITS SKIPS RELEASES GIVES-UP DONE ERROR
    detail: str = ""
    seconds: float = 0.0  # waited (HOLDS) or held (RELEASES)


def paths(workspace: str) -> Dict[str, str]:
    return {
        "holder": os.path.join(workspace, "holder"),
        "counter": os.path.join(workspace, "counter"),
        "intervals": os.path.join(workspace, "intervals.log"),
    }


def _write_atomic(path: str, text: str) -> None:
    # Readers of "holder" must never see a half-written name.
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return ""


def _append_line(path: str, line: str) -> None:
    # One write() on an O_APPEND descriptor: lines from different processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _flatten(seconds: float) -> None:
    """Pretend to copy the parent image: hash data in short bursts (busy-ish, not a pure sleep)."""
    deadline = time.monotonic() + seconds
    block = os.urandom(1 << 16)
    while time.monotonic() < deadline:
        hashlib.sha256(block).digest()
        time.sleep(0.005)


class _Worker:
    def __init__(self, spec: WorkerSpec, events: Any, t0: float) -> None:
        self.spec = spec
        self.events = events
        self.t0 = t0
        self.paths = paths(spec.workspace)
        self.lock: DemoLock = lock_factory(spec.backend)(LOCK_NAME) if spec.use_lock else NoLock()

    def emit(self, what: str, detail: str = "", seconds: float = 0.0) -> None:
        self.events.put(Event(time.monotonic() - self.t0, self.spec.name, what, detail, seconds))

    def holder(self) -> str:
        return read(self.paths["holder"]) or "another host"

    def run(self) -> None:
        for wake, duration in self.spec.schedule:
            _sleep_until(self.t0 + wake)
            self.attempt(duration)

    def attempt(self, duration: float) -> None:
        asked = time.monotonic()
        if not self.lock.acquire(blocking=False):
            holder = self.holder()
            if not self.spec.waits:
                self.emit("SKIPS", f"image is being flattened by {holder}, skipping")
                return
            self.emit("WAITS", f"held by {holder}; waiting up to {self.spec.wait_timeout:g} s")
            if not self.lock.acquire(blocking=True, timeout=self.spec.wait_timeout):
                self.emit(
                    "GIVES-UP",
                    f"still held by {self.holder()} after "
                    f"{self.spec.wait_timeout:g} s; next timer will retry",
                )
                return
        try:
            self.flatten(duration, waited=time.monotonic() - asked)
        finally:
            self.lock.release()

    def flatten(self, duration: float, waited: float) -> None:
        start = time.monotonic()
        _write_atomic(self.paths["holder"], self.spec.name)
        how = f"after waiting {waited:.2f} s" if waited >= 0.01 else "lock was free"
        self.emit("HOLDS", f"flattening image {IMAGE_ID} ({how})", waited)
        # Read-modify-write spread over the whole flatten: only mutual exclusion keeps it exact.
        count = int(read(self.paths["counter"]) or "0")
        _flatten(duration)
        _write_atomic(self.paths["counter"], str(count + 1))
        end = time.monotonic()
        _append_line(self.paths["intervals"], f"{self.spec.name} {start:.6f} {end:.6f}\n")
        _write_atomic(self.paths["holder"], "")
        self.emit("RELEASES", f"flattened in {end - start:.2f} s", end - start)


class _ParentGone(Exception):
    """The demo process died (e.g. SIGKILL): a worker must not linger as an orphan."""


_PARENT_PID = 0  # set in worker_main


def _check_parent() -> None:
    # Orphans are re-parented, so a changed ppid means the demo process is gone.
    if os.getppid() != _PARENT_PID:
        raise _ParentGone


def _sleep_until(deadline: float) -> None:
    while True:
        _check_parent()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))


def _wait_for_start(go: Any) -> None:
    """Wait for the parent's start signal, but not forever and not after the parent died."""
    give_up = time.monotonic() + SAFETY_TIMEOUT
    while not go.wait(0.2):
        _check_parent()
        if time.monotonic() > give_up:
            raise _ParentGone


def worker_main(spec: WorkerSpec, events: Any, go: Any, t0: Any, parent_pid: int) -> None:
    """Entry point of a worker process (module level so the spawn start method can import it)."""
    global _PARENT_PID
    _PARENT_PID = parent_pid
    try:
        worker = _Worker(spec, events, 0.0)
        events.put(Event(0.0, spec.name, "READY"))
        _wait_for_start(go)
        worker.t0 = t0.value
        worker.run()
        worker.emit("DONE")
    except (KeyboardInterrupt, _ParentGone):
        pass  # the parent reports an interruption once; a dead parent hears nothing
    except BaseException as exc:  # report anything to the parent
        events.put(Event(0.0, spec.name, "ERROR", f"{exc!r}\n{traceback.format_exc()}"))
