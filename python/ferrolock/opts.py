"""The options ferrolock reads, for ``oslo-config-generator --namespace ferrolock``.

ferrolock reads oslo.concurrency's own ``[oslo_concurrency]`` options (``lock_path``,
``disable_process_locking``), so a service that swaps the library keeps its config files and its
sample config keeps documenting them. Needs oslo.config.
"""

from __future__ import annotations

import copy
from typing import Any, List, Tuple

from ferrolock import lockutils

__all__ = ["list_opts"]


def list_opts() -> List[Tuple[str, List[Any]]]:
    """``[(group, options)]`` for the sample config generator (the ``oslo.config.opts`` entry
    point ``ferrolock``): the options are copies, as oslo hands them out."""
    if lockutils.cfg is None:
        raise ImportError("ferrolock.opts needs oslo.config (pip install ferrolock[oslo])")
    return [("oslo_concurrency", copy.deepcopy(lockutils._opts))]
