"""The ``ferrolock`` command line: run a command under a lock, show lock holders, run the demo.

Each subcommand is a module here (``run``, ``holders``, ``demo``) giving ``add_parser`` and its
``cmd_*`` function, and documents its exit codes. Exit codes follow sysexits.h where one fits and
shell conventions for a child; the same problem has the same code in every subcommand:

* 75 (EX_TEMPFAIL): the lock was busy or the wait timed out;
* 78 (EX_CONFIG): no usable lock directory (none configured, missing, not listable or
  writable) or lock file, or an invalid lock name;
* 2 (argparse): bad usage everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ferrolock import _native
from ferrolock.cli import breaklock, demo, holders, run
from ferrolock.cli._common import EX_CONFIG, EX_TEMPFAIL, PROG

__all__ = ["EX_CONFIG", "EX_TEMPFAIL", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="ferrolock: inter-process locks compatible with oslo.concurrency"
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_native.__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    sub.required = True
    run.add_parser(sub)
    holders.add_parser(sub)
    demo.add_parser(sub)
    breaklock.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    head, tail = run.split_argv(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(head)
    args.after_dashdash = tail
    try:
        result = int(args.func(args, parser))
    except BrokenPipeError:
        # `ferrolock holders | head`: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
