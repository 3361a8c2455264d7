"""The one interval-overlap checker: its two forms agree, and each catches what it must."""

from __future__ import annotations

import random

from ferrolock._intervals import first_overlap, overlaps


def test_touching_holds_do_not_overlap():
    holds = [(2.0, 3.0, "b"), (0.0, 2.0, "a"), (3.0, 3.0, "c")]
    assert overlaps(holds) == []
    assert first_overlap([s for s, _, _ in holds], [e for _, e, _ in holds]) is None


def test_a_hold_nested_in_another_is_caught_by_both_forms():
    holds = [(0, 10, "long"), (4, 5, "short")]
    assert overlaps(holds) == [("long", "short", 6)]
    assert first_overlap([0, 4], [10, 5]) == (4, 5)


def test_both_forms_agree_on_random_holds():
    # holds of positive length, as clocks read inside a lock give (see first_overlap)
    rng = random.Random(7)
    for _ in range(500):
        holds = []
        for i in range(rng.randint(0, 6)):
            start = rng.randint(0, 30)
            holds.append((start, start + rng.randint(1, 6), i))
        starts = [s for s, _, _ in holds]
        ends = [e for _, e, _ in holds]
        assert (overlaps(holds) == []) == (first_overlap(starts, ends) is None), holds
