"""Hold a lock in this (independent) process until stdin reaches EOF.

Protocol: prints ``ACQUIRED <pid>`` once the lock is held, then blocks reading
stdin; on EOF it releases, prints ``RELEASED`` and exits 0.  Tests kill it with
SIGKILL to simulate a crashed holder.
"""

import argparse
import fcntl
import os
import sys


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--kind", required=True)
    p.add_argument("--name")
    p.add_argument("--lock-path")
    p.add_argument("--prefix")
    p.add_argument("--path")
    a = p.parse_args()

    if a.kind == "ferro-lock":
        import ferrolock

        cm = ferrolock.lock(a.name, lock_file_prefix=a.prefix, external=True, lock_path=a.lock_path)
    elif a.kind == "ferro-lockutils":
        from ferrolock import lockutils

        cm = lockutils.lock(a.name, lock_file_prefix=a.prefix, external=True, lock_path=a.lock_path)
    elif a.kind == "oslo-lock":
        from oslo_concurrency import lockutils

        cm = lockutils.lock(a.name, lock_file_prefix=a.prefix, external=True, lock_path=a.lock_path)
    elif a.kind == "ferro-filelock":
        import ferrolock

        cm = ferrolock.FileLock(a.path)
    elif a.kind == "fasteners":
        import fasteners

        cm = fasteners.InterProcessLock(a.path)
    elif a.kind == "lockf":

        class _Lockf:
            def __enter__(self):
                self.f = open(a.path, "a")
                fcntl.lockf(self.f, fcntl.LOCK_EX)

            def __exit__(self, *exc):
                fcntl.lockf(self.f, fcntl.LOCK_UN)
                self.f.close()

        cm = _Lockf()
    elif a.kind == "flock":

        class _Flock:
            def __enter__(self):
                self.f = open(a.path, "a")
                fcntl.flock(self.f, fcntl.LOCK_EX)

            def __exit__(self, *exc):
                fcntl.flock(self.f, fcntl.LOCK_UN)
                self.f.close()

        cm = _Flock()
    else:
        print(f"unknown kind {a.kind}", file=sys.stderr)
        return 2

    with cm:
        print(f"ACQUIRED {os.getpid()}", flush=True)
        sys.stdin.read()
    print("RELEASED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
