"""The implementations under test, loaded by name so child processes can load them too.

ferrolock.lockutils and oslo_concurrency.lockutils share one API, so every row runs the same
code against both; "threading" is the floor (bare threading.Lock) for the in-process rows.
Imports are lazy: a run with --impls oslo must work before ferrolock is built.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable, Optional

FERROLOCK = "ferrolock"
OSLO = "oslo"
FLOOR = "threading"
# tooz 9.x with PyMySQL: the peer of the MySQL rows (rows_mysql.py)
TOOZ = "tooz"

_LOCKUTILS = {FERROLOCK: "ferrolock.lockutils", OSLO: "oslo_concurrency.lockutils"}


# Implementations outside this process's Python (python-rbd runs under the system python):
# name -> (why it is unavailable or None, its version), registered by their row modules.
_EXTERNAL: dict[str, tuple[Callable[[], Optional[str]], Callable[[], str]]] = {}


def register_external(
    name: str, error: Callable[[], Optional[str]], version: Callable[[], str]
) -> None:
    _EXTERNAL[name] = (error, version)


def lockutils(impl: str) -> ModuleType:
    return importlib.import_module(_LOCKUTILS[impl])


def registry_size(impl: str) -> int:
    """Live named in-process locks: what a long-running service would accumulate."""
    if impl == FERROLOCK:
        return int(importlib.import_module("ferrolock").registry_size())
    return len(lockutils(OSLO)._semaphores)


def version(impl: str) -> str:
    if impl in _EXTERNAL:
        return _EXTERNAL[impl][1]()
    if impl == FERROLOCK:
        return str(importlib.import_module("ferrolock").__version__)
    from importlib.metadata import version as dist_version

    return dist_version("tooz" if impl == TOOZ else "oslo.concurrency")


def import_error(impl: str) -> str | None:
    """Why impl cannot be imported, or None if it can."""
    if impl in _EXTERNAL:
        return _EXTERNAL[impl][0]()
    try:
        if impl == TOOZ:
            importlib.import_module("tooz.coordination")
            importlib.import_module("pymysql")
        else:
            lockutils(impl)
    except Exception as e:  # any import failure means "not available"
        return f"{type(e).__name__}: {e}"
    return None
