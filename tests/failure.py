"""Failure injection for the undo tests: make one step of a set-up fail."""

import errno


def inject(monkeypatch, owner, attr: str, after: int = 0, err: int = errno.ENOMEM) -> dict:
    """Make ``owner.attr`` raise OSError(``err``) from its ``after + 1``-th
    call on (the first ``after`` calls work).  Returns the call counter;
    ``counter["failed"]`` tells whether the failure was reached."""
    original = getattr(owner, attr)
    counter = {"calls": 0, "failed": False}

    def failing(*args, **kwargs):
        counter["calls"] += 1
        if counter["calls"] > after:
            counter["failed"] = True
            raise OSError(err, f"injected failure of {attr}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attr, failing)
    return counter
