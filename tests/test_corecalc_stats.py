"""corecalc price statistics against plain-Python references (kept here, not in the package)."""

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import corecalc

NAN = float("nan")


def same(a: float, b: float, abs_tol: float = 0.0) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=abs_tol)


def ref_pct_change(values, periods):
    out = []
    for i, x in enumerate(values):
        if i < periods:
            out.append(NAN)
            continue
        old = values[i - periods]
        out.append((x - old) / old if old != 0 else (math.copysign(math.inf, x - old) if x != old else NAN))
    return out


def ref_rolling(values, window, ddof):
    means, stds, zs = [], [], []
    for i in range(len(values)):
        if i + 1 < window:
            means.append(NAN), stds.append(NAN), zs.append(NAN)
            continue
        w = values[i + 1 - window : i + 1]
        mean = math.fsum(w) / window
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in w) / (window - ddof))
        if max(w) == min(w):
            mean, std = w[0], 0.0
        means.append(mean), stds.append(std), zs.append((values[i] - mean) / std if std > 0 else 0.0)
    return means, stds, zs


def ref_aggregates(timestamps, groups, prices, bucket):
    order, acc = {}, {}
    for t, g, p in zip(timestamps, groups, prices):
        order.setdefault(g, len(order))
        acc.setdefault((math.floor(t / bucket), g), []).append(p)
    rows = sorted(acc.items(), key=lambda kv: (kv[0][0], order[kv[0][1]]))
    return [(b * bucket, g, min(ps), math.fsum(ps) / len(ps), max(ps), len(ps)) for (b, g), ps in rows]


prices = st.lists(st.one_of(st.floats(0.01, 1e5), st.sampled_from([1.0, 2.5, 2.5, 0.0, 100.0])), max_size=200)


@settings(max_examples=500)
@given(prices, st.integers(1, 5))
def test_pct_change_matches_the_reference(values, periods):
    got = corecalc.pct_change(values, periods)
    assert all(same(a, b) for a, b in zip(got, ref_pct_change(values, periods), strict=True))


@settings(max_examples=500, deadline=None)
@given(prices, st.integers(1, 30), st.integers(0, 1))
@example([1.0, 1.0, 1.0, 1.0, 6945.8013379314725, 100.0, 1.0, 1.0, 1.0, 0.5], 4, 0)  # a spike leaving
@example([726.0, 1.01, 1.0], 2, 1)
def test_rolling_stats_match_a_two_pass_reference(values, window, ddof):
    if ddof >= window:
        window = ddof + 1
    got = corecalc.rolling_stats(values, window, ddof)
    want = ref_rolling(values, window, ddof)
    for i in range(len(values)):
        # Welford's error is bounded relative to the magnitude of the data, not to the spread; a
        # z-score's to |x| / std. Both floors are far below any price's meaningful digits.
        scale = max(map(abs, values[max(0, i + 1 - window) : i + 1]))
        assert same(got[0][i], want[0][i])
        assert same(got[1][i], want[1][i], abs_tol=1e-9 * scale)
        spread = want[1][i] if want[1][i] > 0 else 1.0
        assert same(got[2][i], want[2][i], abs_tol=1e-9 * scale / spread)


def test_rolling_stats_on_a_long_series_do_not_drift():
    rng = np.random.default_rng(5)
    values = 1000 + np.cumsum(rng.normal(0, 0.5, 100_000))
    mean, std, z = (np.asarray(a) for a in corecalc.rolling_stats(values, 250))
    for i in (249, 250, 9_999, 54_321, 99_999):
        w = values[i - 249 : i + 1]
        assert math.isclose(mean[i], w.mean(), rel_tol=1e-12)
        assert math.isclose(std[i], w.std(ddof=1), rel_tol=1e-9)
        assert math.isclose(z[i], (values[i] - w.mean()) / w.std(ddof=1), rel_tol=1e-8, abs_tol=1e-9)


def test_flat_prices_have_zero_spread_and_zero_z():
    mean, std, z = corecalc.rolling_stats([3.1] * 10 + [3.2], 4)
    assert list(mean)[3:10] == [3.1] * 7 and list(std)[3:10] == [0.0] * 7 and list(z)[3:10] == [0.0] * 7
    assert z[10] > 0


@st.composite
def events(draw):
    n = draw(st.integers(0, 120))
    ts = draw(st.lists(st.floats(-1e6, 2e9), min_size=n, max_size=n))
    groups = draw(st.lists(st.sampled_from(["H100", "A100", "L40S", 7]), min_size=n, max_size=n))
    ps = draw(st.lists(st.floats(0.01, 1e4), min_size=n, max_size=n))
    return ts, groups, ps


@settings(max_examples=400, deadline=None)
@given(events(), st.sampled_from([60.0, 1.0, 300.0, 0.25]))
def test_minute_aggregates_match_the_reference(ev, bucket):
    ts, groups, ps = ev
    got = corecalc.minute_aggregates(ts, groups, ps, bucket)
    want = ref_aggregates(ts, groups, ps, bucket)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[0] == w[0] and g[1] == w[1] and g[2] == w[2] and g[4] == w[4] and g[5] == w[5]
        assert same(g[3], w[3])


def test_minute_aggregates_accept_numpy_columns():
    ts = np.array([0.0, 30.0, 61.0])
    got = corecalc.minute_aggregates(ts, np.array([1, 1, 2]), np.array([2.0, 4.0, 5.0]))
    assert got == [(0.0, 1, 2.0, 3.0, 4.0, 2), (60.0, 2, 5.0, 5.0, 5.0, 1)]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: corecalc.pct_change([1.0, NAN]), "values: value at index 1 is NaN"),
        (lambda: corecalc.pct_change([1.0], 0), "periods"),
        (lambda: corecalc.rolling_stats([1.0, math.inf], 2), "index 1"),
        (lambda: corecalc.rolling_stats([1.0], 0), "window"),
        (lambda: corecalc.rolling_stats([1.0], 2, 2), "ddof"),
        (lambda: corecalc.minute_aggregates([1.0], ["a", "b"], [1.0]), "groups: expected length 1, got 2"),
        (lambda: corecalc.minute_aggregates([1.0], ["a"], [1.0, 2.0]), "prices: expected length 1, got 2"),
        (lambda: corecalc.minute_aggregates([NAN], ["a"], [1.0]), "timestamps"),
        (lambda: corecalc.minute_aggregates([1.0], ["a"], [1.0], 0.0), "bucket_seconds"),
        (lambda: corecalc.minute_aggregates([1e300], ["a"], [1.0]), "timestamps"),
        (lambda: corecalc.pct_change(np.zeros((2, 2))), "1-D"),
    ],
)
def test_invalid_input_raises_a_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_wrong_types_raise_a_type_error():
    for call in (
        lambda: corecalc.pct_change("abc"),
        lambda: corecalc.rolling_stats([1.0, "x"], 1),
        lambda: corecalc.minute_aggregates([1.0], [[1]], [1.0]),
        lambda: corecalc.minute_aggregates([1.0], 5, [1.0]),
    ):
        with pytest.raises(TypeError):
            call()
