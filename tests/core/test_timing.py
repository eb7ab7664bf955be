"""The timing harness: warm-up rounds are not counted, the median of the counted rounds is reported, and the
callables alternate (every one once a round; in blocks for ``blocked_medians``). A fake clock makes it exact."""

import pytest

from mobilenets.core import timing


@pytest.fixture
def clock(monkeypatch):
    """``time.perf_counter`` advanced by each call's own duration (the call's name sets it), and the calls' order."""
    state = {"now": 0.0, "calls": []}
    monkeypatch.setattr(timing.time, "perf_counter", lambda: state["now"])
    monkeypatch.setattr(timing.time, "sleep", lambda seconds: None)

    def call(name, durations):
        def run():
            state["calls"].append(name)
            state["now"] += durations.pop(0)
        return run

    state["call"] = call
    return state


def test_interleaved_medians_skip_warmup_and_alternate(clock):
    work = {"a": clock["call"]("a", [9.0, 1.0, 3.0, 2.0]), "b": clock["call"]("b", [7.0, 5.0, 4.0, 6.0])}
    assert timing.interleaved_medians(work, rounds=3, warmup=1) == {"a": 2.0, "b": 5.0}
    assert clock["calls"] == ["a", "b"] * 4


def test_blocked_medians_run_blocks_that_alternate_over_passes(clock):
    work = {"a": clock["call"]("a", [9.0, 1.0, 8.0, 3.0]), "b": clock["call"]("b", [7.0, 5.0, 8.0, 4.0])}
    assert timing.blocked_medians(work, rounds=2, warmup=1, passes=2) == {"a": 2.0, "b": 4.5}
    assert clock["calls"] == ["a", "a", "b", "b", "a", "a", "b", "b"]


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        timing.interleaved_medians({}, rounds=0)
