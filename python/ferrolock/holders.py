"""Who holds the lock files in a lock directory right now (Linux /proc introspection).

Two sources are combined because neither is enough alone:

* ``/proc/locks`` lists every lock in the system keyed by ``MAJ:MIN:INODE`` (major/minor in hex,
  inode in decimal).  It shows the real pid for classic POSIX locks (``fcntl.lockf``, taken by
  oslo.concurrency/fasteners) but ``-1`` for open-file-description (OFD) locks, which is what
  ferrolock takes.  It also lists blocked waiters as ``N: -> KIND ...`` lines.
* ``/proc/PID/fdinfo/FD`` of the descriptor that holds a lock carries a ``lock:`` line with the same
  format, so scanning the descriptors that point into the lock directory finds OFD holders' pids.

Processes we may not inspect (other users, without privileges) are skipped silently: the lock then
still shows as held (``/proc/locks`` is world readable), just with fewer or no pids.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

__all__ = ["LockFileStatus", "list_holders", "process_name", "status_of"]

PROC = "/proc"

# (major, minor, inode): how the kernel names a file in lock listings.
FileKey = Tuple[int, int, int]

# Kernel lock type names -> the words we show.  OFD = what ferrolock takes; POSIX = lockf/fcntl
# record locks as taken by oslo.concurrency and fasteners; FLOCK = flock(2).
_KIND_NAMES = {"OFDLCK": "ofd", "POSIX": "posix", "FLOCK": "flock", "LEASE": "lease"}

_DEV_INODE = re.compile(r"^([0-9a-fA-F]+):([0-9a-fA-F]+):(\d+)$")


@dataclass
class LockFileStatus:
    """State of one lock file.  ``kind`` is None when the file is not locked."""

    path: str
    name: str
    held: bool = False
    holder_pids: list[int] = field(default_factory=list)
    kind: str | None = None
    waiters: int = 0


class LockEntry(NamedTuple):
    """One parsed lock line from /proc/locks or a fdinfo ``lock:`` line."""

    kind: str
    pid: int  # -1 for OFD locks
    key: FileKey
    waiter: bool


def parse_lock_line(line: str) -> Optional[LockEntry]:
    """Parse ``1: [-> ]KIND ADVISORY WRITE PID MAJ:MIN:INODE START END``; None if unrecognised.

    The dev:inode token is located by pattern instead of by column because lease lines and
    future kernels use different numbers of words before it.
    """
    words = line.split()
    if words and words[0] == "lock:":  # fdinfo prefix
        words = words[1:]
    if len(words) < 3:
        return None
    words = words[1:]  # drop the "N:" ordinal
    waiter = words[0] == "->"
    if waiter:
        words = words[1:]
    for i in range(2, len(words)):
        match = _DEV_INODE.match(words[i])
        if match is None:
            continue
        try:
            pid = int(words[i - 1])
        except ValueError:
            return None
        key = (int(match.group(1), 16), int(match.group(2), 16), int(match.group(3)))
        kind = _KIND_NAMES.get(words[0], words[0].lower())
        return LockEntry(kind, pid, key, waiter)
    return None


def _read_text(path: str) -> Optional[str]:
    """Read a /proc file; None if it vanished or we lack permission (both are normal here)."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _system_locks() -> List[LockEntry]:
    text = _read_text(os.path.join(PROC, "locks")) or ""
    entries = (parse_lock_line(line) for line in text.splitlines())
    return [entry for entry in entries if entry is not None]


def _pids() -> Iterator[int]:
    try:
        names = os.listdir(PROC)
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def _fds_into(real_paths: Set[str]) -> Iterator[Tuple[int, str, str]]:
    """Yield (pid, fdinfo path, file path) for each open descriptor on one of ``real_paths``."""
    for pid in _pids():
        fd_dir = os.path.join(PROC, str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # not ours to read, or exited
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target in real_paths:
                yield pid, os.path.join(PROC, str(pid), "fdinfo", fd), target


def _file_key(st: os.stat_result) -> FileKey:
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)


def _lock_files(lock_path: str) -> Dict[str, LockFileStatus]:
    """Regular files directly in ``lock_path``, keyed by their real path (what fd links show)."""
    result: Dict[str, LockFileStatus] = {}
    with os.scandir(lock_path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                real = os.path.realpath(entry.path)
                result[real] = LockFileStatus(path=entry.path, name=entry.name)
    return result


def _add_holder(status: LockFileStatus, kind: str, pid: int) -> None:
    status.held = True
    if status.kind is None:
        status.kind = kind
    if pid > 0 and pid not in status.holder_pids:
        status.holder_pids.append(pid)


def _collect(files: Dict[str, LockFileStatus]) -> None:
    by_key: Dict[FileKey, LockFileStatus] = {}
    for real, status in files.items():
        try:
            by_key[_file_key(os.stat(real))] = status
        except OSError:
            continue  # removed while we looked

    # Descriptors first: they give OFD holders' pids, and the dev numbers the kernel uses (which
    # can differ from stat's st_dev on btrfs subvolumes), so /proc/locks matches afterwards.
    for pid, fdinfo, real in _fds_into(set(files)):
        text = _read_text(fdinfo)
        if text is None:
            continue
        status = files[real]
        for line in text.splitlines():
            if not line.startswith("lock:"):
                continue
            entry = parse_lock_line(line)
            if entry is None or entry.waiter:
                continue
            by_key[entry.key] = status
            _add_holder(status, entry.kind, entry.pid if entry.pid > 0 else pid)

    for entry in _system_locks():
        matched = by_key.get(entry.key)
        if matched is None:
            continue
        if entry.waiter:
            matched.waiters += 1
        else:
            _add_holder(matched, entry.kind, entry.pid)


def list_holders(lock_path: str) -> list[LockFileStatus]:
    """Status of every regular file directly in ``lock_path``, sorted by name.

    Raises OSError (e.g. FileNotFoundError, NotADirectoryError) if the directory cannot be listed.
    """
    files = _lock_files(lock_path)
    _collect(files)
    for status in files.values():
        status.holder_pids.sort()
    return sorted(files.values(), key=lambda s: s.name)


def status_of(path: str) -> LockFileStatus:
    """Status of one lock file (it need not exist: then it is simply not held)."""
    real = os.path.realpath(path)
    files = {real: LockFileStatus(path=path, name=os.path.basename(path))}
    if os.path.isfile(real):
        _collect(files)
    files[real].holder_pids.sort()
    return files[real]


def process_name(pid: int) -> Optional[str]:
    """Short command name of ``pid`` for display, None if unknown."""
    text = _read_text(os.path.join(PROC, str(pid), "comm"))
    return text.strip() if text else None
