"""What every ``ferrolock`` subcommand shares: exit codes, error output, the lock path."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Tuple, Type

EX_USAGE = 2
EX_TEMPFAIL = 75
EX_CONFIG = 78
EX_NOEXEC = 126
EX_NOTFOUND = 127
EX_INTERRUPTED = 130

PROG = "ferrolock"

NO_LOCK_PATH_HINT = (
    "hint: pass --lock-path DIR, or set OSLO_LOCK_PATH (or [oslo_concurrency] lock_path)"
)


def err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def seconds(text: str) -> float:
    """argparse type: a number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value


def configured_lock_path() -> Optional[str]:
    """The lock directory lockutils would use by default, or None if none is configured."""
    from ferrolock import lockutils

    conf = getattr(lockutils, "CONF", None)  # only there when oslo.config is installed
    if conf is not None:
        try:
            path = lockutils.get_lock_path(conf)
        except Exception:  # any config trouble means "not configured" here
            path = None
        if path:
            return str(path)
    return os.environ.get("OSLO_LOCK_PATH") or None


def config_errors() -> Tuple[Type[BaseException], ...]:
    """Exceptions that mean "no usable lock path / bad name" (oslo.config's only if installed)."""
    from ferrolock.exceptions import InvalidLockName, LockPathError

    errors: List[Type[BaseException]] = [InvalidLockName, LockPathError]
    try:
        from oslo_config import cfg

        errors.append(cfg.RequiredOptError)
    except ImportError:
        pass
    return tuple(errors)
