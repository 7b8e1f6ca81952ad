"""The window check of the sync prologues, against its definition."""

import itertools

from nmfuse.netmap.kring import in_window


def test_in_window_matches_walking_the_ring():
    # valid: walking forward from lo, head comes no later than cur, and cur no later than hi
    n = 6
    for lo, hi, head, cur in itertools.product(range(n), repeat=4):
        at = lambda x: (x - lo) % n  # noqa: E731 - position along the window
        want = at(head) <= at(cur) <= at(hi)
        assert in_window(head, cur, lo, hi, n) == want, (lo, hi, head, cur)


def test_out_of_range_pointers_are_refused():
    assert not in_window(6, 0, 0, 5, 6)
    assert not in_window(0, 6, 0, 5, 6)
