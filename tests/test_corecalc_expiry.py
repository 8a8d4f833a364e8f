"""corecalc cache-expiry maths (XFetch) against the formula of Vattani et al., VLDB 2015."""

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corecalc

times = st.floats(-1e9, 1e9, allow_nan=False)
durations = st.floats(0, 1e4, allow_nan=False)
units = st.floats(5e-324, 1.0, exclude_min=False)


def ref_should_refresh(now, expiry, delta, beta, rand):
    return now - delta * beta * math.log(rand) >= expiry


def ref_probability(now, expiry, delta, beta):
    if now >= expiry:
        return 1.0
    return math.exp(-(expiry - now) / (delta * beta)) if delta * beta > 0 else 0.0


@settings(max_examples=2000)
@given(times, times, durations, st.floats(0, 10), units)
def test_should_refresh_is_the_xfetch_rule(now, expiry, delta, beta, rand):
    assert corecalc.should_refresh(now, expiry, delta, beta, rand) is ref_should_refresh(now, expiry, delta, beta, rand)


@settings(max_examples=1000)
@given(times, times, durations, st.floats(0, 10))
def test_refresh_probability_is_the_formula(now, expiry, delta, beta):
    assert math.isclose(corecalc.refresh_probability(now, expiry, delta, beta), ref_probability(now, expiry, delta, beta), rel_tol=1e-9)


@pytest.mark.parametrize(("gap", "delta", "beta"), [(0.5, 1.0, 1.0), (2.0, 1.0, 1.0), (3.0, 2.0, 1.5), (10.0, 4.0, 1.0)])
def test_the_early_refresh_rate_follows_the_formula(gap, delta, beta):
    corecalc.seed(20150801)
    n = 40_000
    hits = sum(corecalc.should_refresh(1000.0, 1000.0 + gap, delta, beta) for _ in range(n))
    p = ref_probability(1000.0, 1000.0 + gap, delta, beta)
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(hits / n - p) < 4.5 * sigma, (hits / n, p)


def test_the_generator_is_per_thread_and_reproducible():
    corecalc.seed(7)
    first = [corecalc.jittered_ttl(100.0, 1.0) for _ in range(5)]
    corecalc.seed(7)
    assert [corecalc.jittered_ttl(100.0, 1.0) for _ in range(5)] == first
    assert len(set(first)) == 5
    seen = []
    worker = threading.Thread(target=lambda: seen.append(corecalc.should_refresh(0.0, 1.0, 1.0)))
    worker.start()
    worker.join()
    assert seen in ([True], [False])


def test_past_expiry_always_refreshes_and_no_delta_never_refreshes_early():
    assert corecalc.should_refresh(10.0, 10.0, 0.0)
    assert corecalc.should_refresh(11.0, 10.0, 5.0, rand=1.0)
    assert not any(corecalc.should_refresh(9.999, 10.0, 0.0) for _ in range(1000))


@settings(max_examples=1000)
@given(st.floats(0, 1e7), st.floats(0, 1), units)
def test_jittered_ttl_is_the_formula_and_never_exceeds_the_ttl(ttl, jitter, rand):
    got = corecalc.jittered_ttl(ttl, jitter, rand)
    assert math.isclose(got, ttl * (1 - jitter * (1 - rand)), rel_tol=1e-9, abs_tol=1e-300)
    assert ttl * (1 - jitter) - 1e-9 * ttl <= got <= ttl


def test_stored_expiry_adds_the_jittered_ttl():
    assert corecalc.stored_expiry(1000.0, 60.0) == 1060.0
    assert corecalc.stored_expiry(1000.0, 60.0, 0.5, 0.5) == 1045.0
    corecalc.seed(1)
    assert all(1054.0 < corecalc.stored_expiry(1000.0, 60.0, 0.1) <= 1060.0 for _ in range(1000))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: corecalc.should_refresh(0.0, 1.0, 1.0, rand=0.0), "rand: 0 is out of range"),
        (lambda: corecalc.should_refresh(0.0, 1.0, 1.0, rand=1.5), "rand"),
        (lambda: corecalc.should_refresh(0.0, 1.0, -1.0), "delta"),
        (lambda: corecalc.should_refresh(0.0, 1.0, 1.0, beta=-0.1), "beta"),
        (lambda: corecalc.should_refresh(float("nan"), 1.0, 1.0), "now"),
        (lambda: corecalc.should_refresh(0.0, float("inf"), 1.0), "expiry"),
        (lambda: corecalc.jittered_ttl(-1.0), "ttl"),
        (lambda: corecalc.jittered_ttl(1.0, 2.0), "jitter"),
        (lambda: corecalc.stored_expiry(float("inf"), 1.0), "now"),
        (lambda: corecalc.seed(2**64), "64-bit"),
    ],
)
def test_invalid_arguments_raise_a_value_error_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_wrong_types_raise_a_type_error():
    with pytest.raises(TypeError):
        corecalc.should_refresh("now", 1.0, 1.0)
    with pytest.raises(TypeError):
        corecalc.jittered_ttl(None)
