"""The demo's story from start to verdict: plan the hosts' timers, run them, check the log.

``--no-lock`` drops the lock to show the final check failing.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from ferrolock._intervals import overlaps
from ferrolock.cli.demo.backends import (
    BackendUnavailable,
    file_backend_dir,
    lock_factory,
    mask_url,
)
from ferrolock.cli.demo.timeline import run_workers
from ferrolock.cli.demo.worker import IMAGE_ID, LOCK_NAME, WorkerSpec, paths, read

EX_OK = 0
EX_FAILED = 1
EX_USAGE = 2
EX_INTERRUPTED = 130

MAX_WORKERS = 16
FLATTEN_SECONDS = (0.3, 0.6)


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
    holds: List[Tuple[float, float, str]] = []
    for line in lines:
        name, begin, finish = line.split()
        holds.append((float(begin), float(finish), name))
    return CheckResult(flattens=len(holds), counter=counter, overlaps=overlaps(holds))


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
        timeline, errors = run_workers(specs)
        timeline.summary()
        for message in errors:
            print(f"ERROR: {message}", file=sys.stderr)
        files = paths(workspace)
        lines = [line for line in read(files["intervals"]).splitlines() if line.strip()]
        counter = int(read(files["counter"]) or "0")
        return _report(check_intervals(lines, counter), failed_workers=len(errors))
    except KeyboardInterrupt:
        print("\nferrolock demo: interrupted", file=sys.stderr)
        return EX_INTERRUPTED
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
