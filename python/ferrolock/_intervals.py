"""The one interval-overlap checker: the demo's final check, the benchmark's correctness check and
the tests' exclusion checks all prove mutual exclusion the same way.

A hold is ``[start, end]`` on one monotonic clock (CLOCK_MONOTONIC compares across processes).
Two holds overlap when one starts before the other ends; holds that only touch (one ends at the
very instant the next starts) do not overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional, Tuple, TypeVar

__all__ = ["first_overlap", "overlaps"]

T = TypeVar("T")
N = TypeVar("N", int, float)


def overlaps(holds: Iterable[Tuple[float, float, T]]) -> list[Tuple[T, T, float]]:
    """Every hold that began while an earlier one was still held.

    ``holds`` are ``(start, end, holder)`` in any order. Returns ``(earlier, later, seconds)``
    per overlapping hold: ``earlier`` is the holder whose hold reaches furthest at that moment
    (a long hold is named for each hold nested inside it), ``seconds`` how much of ``later``'s
    start fell inside it. Empty when the holds are disjoint.
    """
    found: list[Tuple[T, T, float]] = []
    reach: Optional[Tuple[float, T]] = None  # the furthest end so far, and whose hold it is
    for start, end, holder in sorted(holds, key=lambda h: (h[0], h[1])):
        if reach is not None and start < reach[0]:
            found.append((reach[1], holder, reach[0] - start))
        if reach is None or end > reach[0]:
            reach = (end, holder)
    return found


def first_overlap(starts: Iterable[N], ends: Iterable[N]) -> Optional[Tuple[N, N]]:
    """The same rule for millions of holds without a tuple per hold: ``(start, end)`` of the
    first hold that began (at ``start``) before a hold ending at ``end`` was released, or None.

    Sorting starts and ends separately suffices: holds are disjoint iff, in time order, every
    start after the first is no earlier than the previous end. Each hold's own start must come
    before its end (callers check that pairwise, where they still know which hold is which): a
    hold of zero length inside another is seen only by :func:`overlaps`.
    """
    s = sorted(starts)
    e = sorted(ends)
    for i in range(len(s) - 1):
        if s[i + 1] < e[i]:
            return s[i + 1], e[i]
    return None
