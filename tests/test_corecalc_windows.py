"""corecalc rate windows against plain-Python references (kept here, not in the package)."""

import math
import threading
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corecalc


def ref_window_decide(prev, curr, fraction, limit, window=1.0):
    estimate = prev * (1.0 - fraction) + curr
    if estimate + 1.0 <= limit:
        return True, math.floor(limit - estimate - 1.0), 0.0
    if curr + 1.0 <= limit:
        windows = (1.0 - (limit - curr - 1.0) / prev) - fraction
    else:
        windows = (1.0 - fraction) + (1.0 - (limit - 1.0) / curr)
    return False, 0, max(windows, 0.0) * window


class RefLog:
    """An exact sliding log: allowed when fewer than `limit` requests lie in (now - window, now]."""

    def __init__(self, limit, window):
        self.limit, self.window, self.times = limit, window, {}

    def check(self, key, now):
        times = self.times.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.limit:
            times.append(now)
            return True, self.limit - len(times), 0.0
        return False, 0, max(times[0] + self.window - now, 0.0)


class RefCounter:
    """The sliding-window counter, two fixed windows per key."""

    def __init__(self, limit, window):
        self.limit, self.window, self.state = limit, window, {}

    def check(self, key, now):
        index = math.floor(now / self.window)
        fraction = now / self.window - index
        old, prev, curr = self.state.get(key, (None, 0, 0))
        if old is not None and index == old + 1:
            prev, curr = curr, 0
        elif old is None or index > old + 1:
            prev, curr = 0, 0
        decision = ref_window_decide(prev, curr, fraction, self.limit, self.window)
        self.state[key] = (index, prev, curr + decision[0])
        return decision


def same_decision(got, want):
    return got[0] == want[0] and got[1] == want[1] and math.isclose(got[2], want[2], rel_tol=1e-9, abs_tol=1e-9)


counts = st.integers(0, 10_000)


@settings(max_examples=3000)
@given(counts, counts, st.floats(0, 1), st.integers(1, 10_000), st.floats(1e-3, 1e5))
def test_window_decide_matches_the_reference(prev, curr, fraction, limit, window):
    got = corecalc.window_decide(prev, curr, fraction, limit, window)
    assert same_decision(got, ref_window_decide(prev, curr, fraction, limit, window))


@settings(max_examples=1000)
@given(st.integers(1, 10_000), st.integers(1, 10_000), st.floats(0, 1), st.integers(1, 10_000))
def test_a_denied_request_is_allowed_after_retry_after(prev, curr, fraction, limit):
    allowed, remaining, retry = corecalc.window_decide(prev, curr, fraction, limit)
    if allowed:
        assert retry == 0.0 and remaining >= 0
        return
    later = fraction + retry + 1e-9
    if later <= 1.0:
        assert corecalc.window_decide(prev, curr, later, limit)[0]
    else:
        assert corecalc.window_decide(curr, 0, min(later - 1.0, 1.0), limit)[0]


def test_window_decide_worked_example():
    # Limit 10 a minute; the previous minute had 10, 15 s in with 2 counted: 7.5 + 2 + 1 > 10.
    allowed, remaining, retry = corecalc.window_decide(10, 2, 0.25, 10, 60.0)
    assert (allowed, remaining) == (False, 0) and math.isclose(retry, 3.0)
    assert corecalc.window_decide(10, 2, 0.5, 10, 60.0) == (True, 2, 0.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 0, 0.5, 10), "prev_count"),
        ((0, -1, 0.5, 10), "curr_count"),
        ((0, 0, 1.5, 10), "elapsed_fraction"),
        ((0, 0, float("nan"), 10), "elapsed_fraction"),
        ((0, 0, 0.5, 0), "limit"),
        ((0, 0, 0.5, 10, 0.0), "window_seconds"),
        ((2**64, 0, 0.5, 10), "64-bit"),
    ],
)
def test_window_decide_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        corecalc.window_decide(*args)


# Request streams: a few keys, non-decreasing times with gaps from tiny to several windows.
streams = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.one_of(st.just(0.0), st.floats(0, 3), st.floats(0, 0.05))),
    max_size=300,
)


def replay(limiter, reference, stream):
    now = 100.0
    for key, gap in stream:
        now += gap
        want = reference.check(key, now)
        assert same_decision(limiter.check(key, now), want), (key, now, want)


@settings(max_examples=300, deadline=None)
@given(streams, st.integers(1, 8), st.floats(0.1, 2))
def test_the_exact_log_matches_the_reference(stream, limit, window):
    limiter = corecalc.SlidingWindow(limit, window, log_limit=8)
    assert limiter.exact
    replay(limiter, RefLog(limit, window), stream)


@settings(max_examples=300, deadline=None)
@given(streams, st.integers(1, 8), st.floats(0.1, 2))
def test_the_counter_matches_the_reference(stream, limit, window):
    limiter = corecalc.SlidingWindow(limit, window, log_limit=0)
    assert not limiter.exact
    replay(limiter, RefCounter(limit, window), stream)


def test_idle_keys_are_dropped_and_live_keys_are_capped():
    limiter = corecalc.SlidingWindow(5, 1.0, max_keys=1000)
    for i in range(1000):
        limiter.check(f"client-{i}", 0.0)
    assert len(limiter) == 1000
    limiter.check("late", 0.5)
    assert len(limiter) <= 1000, "the least recently seen eighth made room"
    held = len(limiter)
    assert limiter.sweep(2.0) == held and len(limiter) == 0, "a window later every key is idle"
    # Many distinct keys over time never hold more than max_keys, and idle ones go on their own.
    for i in range(50_000):
        limiter.check(f"flood-{i}", 10.0 + i * 1e-3)
        assert len(limiter) <= 1000
    assert limiter.sweep(1e6) > 0 and len(limiter) == 0


def test_concurrent_checks_never_allow_more_than_the_limit():
    limiter = corecalc.SlidingWindow(1000, 60.0)
    allowed = []

    def hammer():
        allowed.append(sum(limiter.check("shared", 1.0)[0] for _ in range(2_000)))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 1000


def test_sliding_window_validates_and_describes_itself():
    limiter = corecalc.SlidingWindow(10, 60.0, max_keys=5, log_limit=64)
    assert (limiter.limit, limiter.window_seconds, limiter.max_keys, limiter.exact) == (10, 60.0, 5, True)
    assert "SlidingWindow(limit=10" in repr(limiter)
    for args, message in [((0, 1.0), "limit"), ((1, 0.0), "window_seconds"), ((1, float("inf")), "window_seconds")]:
        with pytest.raises(ValueError, match=message):
            corecalc.SlidingWindow(*args)
    with pytest.raises(ValueError, match="max_keys"):
        corecalc.SlidingWindow(1, 1.0, max_keys=0)
    with pytest.raises(ValueError, match="now"):
        limiter.check("a", float("nan"))
    with pytest.raises(TypeError):
        limiter.check(42, 1.0)
