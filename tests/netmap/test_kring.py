"""The window check of the sync prologues (csrc/sync.c), against its definition."""

import itertools

from nmfuse._helper import lib


def test_in_window_matches_walking_the_ring():
    # valid: walking forward from lo, head comes no later than cur, and cur no later than hi
    n = 6
    for lo, hi, head, cur in itertools.product(range(n), repeat=4):
        def at(x, lo=lo):
            return (x - lo) % n   # position along the window
        want = at(head) <= at(cur) <= at(hi)
        assert bool(lib.nmh_in_window(head, cur, lo, hi, n)) == want, (lo, hi, head, cur)


def test_out_of_range_pointers_are_refused():
    assert not lib.nmh_in_window(6, 0, 0, 5, 6)
    assert not lib.nmh_in_window(0, 6, 0, 5, 6)
