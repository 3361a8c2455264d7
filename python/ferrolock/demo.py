"""``ferrolock demo``: the nova-compute "flatten" story, runnable with no server.

Several nova-compute hosts share one Ceph clone image.  On a periodic timer each host wakes up and
tries to flatten it (copy the parent's data into the clone) under one lock.  Hosts configured to
wait block on the lock (with a timeout); the others try once and skip: "image is being flattened
by another host, skipping".  Every flatten appends its [start, end] interval to a log and bumps a
shared counter with a deliberately racy read-modify-write; at the end the log must show no overlap
and the counter must equal the number of flattens.  ``--no-lock`` drops the lock to show the
check failing.

Backends are chosen by URL.  :func:`lock_factory` is the single place a new backend (mysql://,
rbd://) has to extend: it maps a URL to a function making a lock object for a name.
"""

from __future__ import annotations

import hashlib
import heapq
import multiprocessing
import os
import queue
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Protocol, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "BackendUnavailable",
    "DemoLock",
    "LockFactory",
    "check_intervals",
    "lock_factory",
    "mask_url",
    "run_demo",
]

EX_OK = 0
EX_FAILED = 1
EX_USAGE = 2
EX_INTERRUPTED = 130

IMAGE_ID = "6f1c0b9e"
LOCK_NAME = f"nova-flatten-{IMAGE_ID}"
MAX_WORKERS = 16
FLATTEN_SECONDS = (0.3, 0.6)
START_DELAY = 0.1  # lets every worker reach its first timer before t=0
REORDER_DELAY = 0.15  # events from different processes may arrive out of order; hold them this long
SAFETY_TIMEOUT = 60.0  # a hung worker must not hang the demo forever

_SECRET_WORDS = ("pass", "pwd", "secret", "key", "token", "auth", "credential")


class BackendUnavailable(ValueError):
    """The backend URL names a scheme this build cannot use (yet)."""


class DemoLock(Protocol):
    """What the demo needs from a lock; FileLock and later backends' locks all fit."""

    def acquire(self, blocking: bool = ..., timeout: Optional[float] = ...) -> bool: ...

    def release(self) -> None: ...


LockFactory = Callable[[str], DemoLock]


# -------------------------------------------------------------------------------------- backends


def mask_url(url: str) -> str:
    """``url`` safe to print: the password (or a lone user part, which may be a token) and
    secret-looking query values replaced by ``***``, the fragment dropped.

    The user information is cut at the *last* ``@`` before the path is parsed, so a password
    holding ``#``, ``/``, ``?`` or ``@`` cannot slip through as part of the host or path.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<unparsable URL>"
    at = rest.rfind("@")
    if at != -1:
        # Everything up to the last '@' counts as user information, whatever it holds. A user
        # name before a password is kept; a lone user part may be a token, so it is masked.
        user, colon, _ = rest[:at].partition(":")
        rest = (f"{user}:***" if colon else "***") + rest[at:]
    try:
        parts = urlsplit(f"{scheme}://{rest}")
    except ValueError:
        return "<unparsable URL>"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, "***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in pairs]
        query = urlencode(masked, safe="*/:")
    return urlunsplit(parts._replace(query=query, fragment=""))


def _file_lock(lock_dir: str, name: str) -> DemoLock:
    from ferrolock import FileLock, lock_file_path

    lock: DemoLock = FileLock(lock_file_path(name, lock_path=lock_dir))
    return lock


def file_backend_dir(url: str) -> Optional[str]:
    """Directory of a ``file://`` URL; None for bare ``file://`` (meaning: a fresh temp dir)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise BackendUnavailable(
            f"file:// URLs need an absolute path (file:///DIR): {mask_url(url)}"
        )
    return parts.path or None


def lock_factory(url: str) -> LockFactory:
    """Map a backend URL to a ``name -> lock`` function.  Extend this for new backends.

    The result is rebuilt from the URL inside each worker process, so it need not be picklable.
    Raises BackendUnavailable for schemes not supported yet.
    """
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise BackendUnavailable(f"bad backend URL {mask_url(url)}: {exc}") from None
    if scheme == "file":
        lock_dir = file_backend_dir(url)
        if lock_dir is None:
            raise BackendUnavailable("file:// needs a directory here; run_demo picks a temp dir")
        return lambda name: _file_lock(lock_dir, name)
    raise BackendUnavailable(f"backend not available yet: {mask_url(url)} (supported: file://)")


class _NoLock:
    """Stand-in for --no-lock: always 'acquired', so flattens overlap and the check fails."""

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return True

    def release(self) -> None:
        pass


# --------------------------------------------------------------------------------------- workers


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


def _paths(workspace: str) -> Dict[str, str]:
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


def _read(path: str) -> str:
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
        self.paths = _paths(spec.workspace)
        self.lock: DemoLock = lock_factory(spec.backend)(LOCK_NAME) if spec.use_lock else _NoLock()

    def emit(self, what: str, detail: str = "", seconds: float = 0.0) -> None:
        self.events.put(Event(time.monotonic() - self.t0, self.spec.name, what, detail, seconds))

    def holder(self) -> str:
        return _read(self.paths["holder"]) or "another host"

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
        count = int(_read(self.paths["counter"]) or "0")
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


# ---------------------------------------------------------------------------------------- check


@dataclass
class CheckResult:
    flattens: int
    counter: int
    overlaps: List[Tuple[str, str, float]] = field(default_factory=list)  # (earlier, later, secs)

    @property
    def passed(self) -> bool:
        return not self.overlaps and self.counter == self.flattens


def check_intervals(lines: List[str], counter: int) -> CheckResult:
    """Find overlapping [start, end] intervals in ``worker start end`` lines."""
    intervals: List[Tuple[float, float, str]] = []
    for line in lines:
        name, begin, finish = line.split()
        intervals.append((float(begin), float(finish), name))
    intervals.sort()
    result = CheckResult(flattens=len(intervals), counter=counter)
    latest_end, latest_worker = float("-inf"), ""
    for start, end, worker in intervals:
        if start < latest_end:
            result.overlaps.append((latest_worker, worker, latest_end - start))
        if end > latest_end:
            latest_end, latest_worker = end, worker
    return result


# ---------------------------------------------------------------------------------------- parent


def _plan(
    workers: int, rounds: int, seed: Optional[int], backend: str, workspace: str, use_lock: bool
) -> List[WorkerSpec]:
    """Timers: staggered per worker, jittered per round; even-numbered hosts skip, odd ones wait."""
    rng = random.Random(seed)
    waiting = max(1, (workers + 1) // 2)
    # A round must leave room for every waiting host to flatten once before the next timer fires.
    period = FLATTEN_SECONDS[1] * 0.75 * (waiting + 1) + 0.3
    wait_timeout = round(period * 0.8, 1)
    specs = []
    for i in range(workers):
        schedule = [
            (r * period + i * 0.05 + rng.uniform(0.0, 0.4), rng.uniform(*FLATTEN_SECONDS))
            for r in range(rounds)
        ]
        specs.append(
            WorkerSpec(
                f"compute-{i + 1}",
                i % 2 == 0 or workers == 1,
                wait_timeout,
                schedule,
                backend,
                workspace,
                use_lock,
            )
        )
    return specs


@dataclass
class _Stats:
    flattens: int = 0
    waits: int = 0
    skips: int = 0
    gave_up: int = 0
    waited: float = 0.0
    held: float = 0.0


_COLUMN = {
    "HOLDS": "HOLDS",
    "WAITS": "WAITS",
    "SKIPS": "SKIPS",
    "RELEASES": "RELEASES",
    "GIVES-UP": "GIVES UP",
}


class _Timeline:
    """Prints events in time order although they arrive from several processes."""

    def __init__(self, names: List[str]) -> None:
        self.heap: List[Event] = []
        self.stats = {name: _Stats() for name in names}
        self.width = max(len(n) for n in names)

    def add(self, event: Event) -> None:
        heapq.heappush(self.heap, event)
        stats = self.stats[event.worker]
        if event.what == "HOLDS":
            stats.flattens += 1
            stats.waited += event.seconds
        elif event.what == "RELEASES":
            stats.held += event.seconds
        elif event.what == "WAITS":
            stats.waits += 1
        elif event.what == "SKIPS":
            stats.skips += 1
        elif event.what == "GIVES-UP":
            stats.gave_up += 1

    def flush(self, now: Optional[float] = None) -> None:
        while self.heap and (now is None or self.heap[0].t < now - REORDER_DELAY):
            e = heapq.heappop(self.heap)
            offset = f"+{e.t:.3f}s"
            print(
                f"  {offset:>8}  {e.worker:<{self.width}}  {_COLUMN[e.what]:<8}  {e.detail}",
                flush=True,
            )

    def summary(self) -> None:
        print("\nsummary:")
        header = "flattens  waited  skipped  gave up  wait total  held total"
        print(f"  {'host':<{self.width}}  {header}")
        for name, s in self.stats.items():
            print(
                f"  {name:<{self.width}}  {s.flattens:>8}  {s.waits:>6}  {s.skips:>7}  "
                f"{s.gave_up:>7}  {s.waited:>9.2f}s  {s.held:>9.2f}s"
            )


def _collect(
    procs: Dict[str, Any], events: Any, timeline: _Timeline, go: Any, t0: Any
) -> List[str]:
    """Run the event loop until every worker is done; return error messages (empty if none)."""
    ready: set[str] = set()
    running = set(procs)
    errors: List[str] = []
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while running:
        if time.monotonic() > deadline:
            errors.append(f"workers did not finish within {SAFETY_TIMEOUT:g} s: {sorted(running)}")
            break
        try:
            event: Event = events.get(timeout=0.05)
        except queue.Empty:
            for name in sorted(running):
                if not procs[name].is_alive():
                    errors.append(f"{name} exited with code {procs[name].exitcode}")
                    running.discard(name)
        else:
            if event.what == "READY":
                ready.add(event.worker)
                if ready == set(procs):
                    t0.value = time.monotonic() + START_DELAY
                    go.set()
            elif event.what in ("DONE", "ERROR"):
                running.discard(event.worker)
                if event.what == "ERROR":
                    errors.append(f"{event.worker} failed: {event.detail}")
            else:
                timeline.add(event)
        if errors and not go.is_set():
            break  # a worker died before the start: the others would wait for `go` forever
        if go.is_set():
            timeline.flush(time.monotonic() - t0.value)
    timeline.flush()
    return errors


def _run_workers(specs: List[WorkerSpec]) -> Tuple[_Timeline, List[str]]:
    # spawn, not fork: workers must not inherit the parent's native lock state or threads.
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    go = ctx.Event()
    t0 = ctx.Value("d", 0.0)
    procs = {
        spec.name: ctx.Process(
            target=worker_main,
            args=(spec, events, go, t0, os.getpid()),
            name=spec.name,
            daemon=True,
        )
        for spec in specs
    }
    for proc in procs.values():
        proc.start()
    timeline = _Timeline([spec.name for spec in specs])
    try:
        errors = _collect(procs, events, timeline, go, t0)
    finally:
        # After a failure, workers may still be parked on `go`: do not wait for them long.
        patience = 2.0 if go.is_set() else 0.1
        for proc in procs.values():
            proc.join(timeout=patience)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2.0)
    return timeline, errors


def _report(result: CheckResult, failed_workers: int = 0) -> int:
    print("\nfinal check (interval log written by the workers, shared counter):")
    print(f"  flattens logged: {result.flattens}; shared counter: {result.counter}")
    for earlier, later, seconds in result.overlaps:
        print(f"  OVERLAP: {later} started flattening {seconds:.3f} s before {earlier} finished")
    if result.counter != result.flattens:
        print(f"  LOST UPDATES: counter is {result.counter}, expected {result.flattens}")
    if failed_workers:
        print(f"  {failed_workers} worker error(s), see stderr: the run is incomplete")
    elif result.passed:
        print("  no two flattens overlapped; counter matches")
        print("PASS")
        return EX_OK
    print("FAIL")
    return EX_FAILED


def _describe(specs: List[WorkerSpec], backend: str, temporary: bool, use_lock: bool) -> None:
    waiters = [s.name for s in specs if s.waits]
    skippers = [s.name for s in specs if not s.waits]
    print(
        f"ferrolock demo: {len(specs)} nova-compute hosts flatten clone image {IMAGE_ID} "
        f"under lock {LOCK_NAME!r}"
    )
    where = " (temporary, removed afterwards)" if temporary else ""
    print(f"backend: {mask_url(backend)}{where}" if use_lock else "backend: NONE (--no-lock)")
    print(f"waiting up to {specs[0].wait_timeout:g} s: {', '.join(waiters)}")
    if skippers:
        print(f"skipping when busy: {', '.join(skippers)}")
    print()


def _prepare_backend(backend: str, scratch: str) -> str:
    """Validate ``backend``; resolve a bare ``file://`` to a directory inside ``scratch``."""
    lock_factory_url = backend
    if urlsplit(backend).scheme.lower() == "file" and file_backend_dir(backend) is None:
        lock_factory_url = "file://" + os.path.join(scratch, "locks")
    make_lock = lock_factory(lock_factory_url)  # raises BackendUnavailable early, in the parent
    # Take the lock once here too: an unusable backend (file:///DIR where DIR is a file, or not
    # writable) must be a usage error now, not a crash in every worker later.
    try:
        lock = make_lock(LOCK_NAME)
        if lock.acquire(blocking=False):
            lock.release()
    except (OSError, ValueError) as exc:  # LockPathError, InvalidLockName
        url = mask_url(lock_factory_url)
        raise BackendUnavailable(f"backend not usable: {url}: {exc}") from None
    return lock_factory_url


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _cleanup_on_termination() -> Dict[int, Any]:
    """Turn SIGTERM/SIGHUP (e.g. `timeout 5 ferrolock demo`) into SystemExit so the temp dir goes.

    Returns the previous handlers for restoring; nothing is changed outside the main thread,
    where Python cannot install handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: Dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, _exit_on_signal)
    return previous


def run_demo(
    workers: int = 4,
    rounds: int = 3,
    backend: str = "file://",
    seed: Optional[int] = None,
    use_lock: bool = True,
) -> int:
    """Run the story; print the timeline, summary and check.  Returns the process exit code."""
    if not 1 <= workers <= MAX_WORKERS:
        print(f"ferrolock demo: --workers must be 1..{MAX_WORKERS}", file=sys.stderr)
        return EX_USAGE
    previous_handlers = _cleanup_on_termination()
    scratch = tempfile.mkdtemp(prefix="ferrolock-demo-")
    try:
        try:
            url = _prepare_backend(backend, scratch)
        except (BackendUnavailable, ValueError) as exc:
            print(f"ferrolock demo: {exc}", file=sys.stderr)
            return EX_USAGE
        workspace = os.path.join(scratch, "image")
        os.mkdir(workspace)
        specs = _plan(workers, rounds, seed, url, workspace, use_lock)
        _describe(specs, url, temporary=url != backend, use_lock=use_lock)
        timeline, errors = _run_workers(specs)
        timeline.summary()
        for message in errors:
            print(f"ERROR: {message}", file=sys.stderr)
        paths = _paths(workspace)
        lines = [line for line in _read(paths["intervals"]).splitlines() if line.strip()]
        counter = int(_read(paths["counter"]) or "0")
        return _report(check_intervals(lines, counter), failed_workers=len(errors))
    except KeyboardInterrupt:
        print("\nferrolock demo: interrupted", file=sys.stderr)
        return EX_INTERRUPTED
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
