"""corecalc ranking against plain-Python references (kept here, not in the package).

Scores are compared within 1e-9 relative; because they lie in [0, 1] and a score near 0 comes
from a difference of nearly equal numbers (a row next to the anti-ideal), an absolute floor of
1e-12 is allowed as well.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corecalc


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def all_close(got, want) -> bool:
    return len(got) == len(want) and all(close(a, b) for a, b in zip(got, want))


# --- references ------------------------------------------------------------------------------


def ref_topsis(rows, weights, benefit):
    """Hwang & Yoon TOPSIS, vector normalisation, cell by cell."""
    if not rows:
        return []
    m, total = len(weights), math.fsum(weights)
    w = [x / total for x in weights]
    norms = [math.hypot(*(r[j] for r in rows)) for j in range(m)]
    v = [[w[j] * r[j] / norms[j] if norms[j] > 0 else 0.0 for j in range(m)] for r in rows]
    cols = list(zip(*v))
    ideal = [max(c) if b else min(c) for c, b in zip(cols, benefit)]
    anti = [min(c) if b else max(c) for c, b in zip(cols, benefit)]
    scores = []
    for row in v:
        dp = math.hypot(*(x - i for x, i in zip(row, ideal)))
        dm = math.hypot(*(x - a for x, a in zip(row, anti)))
        scores.append(dm / (dp + dm) if dp + dm > 0 else 0.5)
    return scores


def ref_weighted_sum(rows, weights, benefit):
    if not rows:
        return []
    total = math.fsum(weights)
    w = [x / total for x in weights]
    cols = list(zip(*rows))
    lo, hi = [min(c) for c in cols], [max(c) for c in cols]
    scores = []
    for r in rows:
        s = 0.0
        for j, x in enumerate(r):
            if hi[j] > lo[j]:
                s += w[j] * ((x - lo[j]) if benefit[j] else (hi[j] - x)) / (hi[j] - lo[j])
        scores.append(s)
    return scores


def ref_pareto(rows, benefit):
    def better_or_equal(a, b):
        return all((x >= y) if up else (x <= y) for x, y, up in zip(a, b, benefit))

    def dominates(a, b):
        return better_or_equal(a, b) and a != b

    return [i for i, r in enumerate(rows) if not any(dominates(o, r) for o in rows)]


def ref_rank(scores, top_k):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return order if top_k is None else order[:top_k]


# --- strategies ------------------------------------------------------------------------------

# Values from a small set make ties, duplicates and constant columns likely; wide ones test scaling.
plain = st.floats(-1e6, 1e6, allow_nan=False)
ties = st.sampled_from([0.0, 1.0, 2.0, 2.5, -1.0, 1e-3])
value = st.one_of(plain, ties)


@st.composite
def problems(draw, min_rows=0, max_rows=40):
    m = draw(st.integers(1, 9))
    n = draw(st.integers(min_rows, max_rows))
    rows = [draw(st.lists(value, min_size=m, max_size=m)) for _ in range(n)]
    scale = draw(st.sampled_from([1.0, 1.0, 1e300, 1e-300, 1e150]))
    rows = [[x * scale for x in r] for r in rows]
    weights = draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1e6)), min_size=m, max_size=m))
    if not any(weights):
        weights[0] = 1.0
    benefit = draw(st.lists(st.booleans(), min_size=m, max_size=m))
    return rows, weights, benefit


# --- TOPSIS ----------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(problems())
def test_topsis_matches_the_reference(problem):
    rows, weights, benefit = problem
    got = corecalc.topsis(rows, weights, benefit)
    assert all_close(list(got), ref_topsis(rows, weights, benefit))
    assert all(0.0 <= s <= 1.0 for s in got)


@settings(max_examples=60, deadline=None)
@given(problems(min_rows=1))
def test_numpy_input_gives_the_same_bits_as_lists(problem):
    rows, weights, benefit = problem
    matrix = np.array(rows, dtype=np.float64)
    from_list = corecalc.topsis(rows, weights, benefit)
    assert corecalc.topsis(matrix, np.array(weights), np.array(benefit)) == from_list
    # A strided view (every other column of a wider array) and a Fortran-ordered copy are read
    # correctly.
    wide = np.zeros((matrix.shape[0], 2 * matrix.shape[1]))
    wide[:, ::2] = matrix
    assert corecalc.topsis(wide[:, ::2], weights, benefit) == from_list
    assert corecalc.topsis(np.asfortranarray(matrix), weights, benefit) == from_list


def test_topsis_large_inputs_match_the_reference_on_every_kernel_path():
    # Sizes around the 4-row vector steps and the two-thread split; 6 and 9 columns take the
    # AVX2 kernel and the portable one.
    rng = np.random.default_rng(3)
    for n, m in [(5, 6), (1_003, 6), (300_001, 6), (1_001, 9)]:
        matrix = rng.random((n, m)) * 100
        weights, benefit = list(range(1, m + 1)), [j % 2 == 0 for j in range(m)]
        got = np.asarray(corecalc.topsis(matrix, weights, benefit))
        sample = rng.choice(n, size=min(n, 500), replace=False)
        want = ref_topsis([list(matrix[i]) for i in range(n)], weights, benefit)
        assert all(close(got[i], want[i]) for i in sample)


def test_topsis_edge_cases():
    assert list(corecalc.topsis([], [1.0, 1.0], [True, False])) == []
    assert list(corecalc.topsis(np.empty((0, 3)), [1, 1, 1], [True] * 3)) == []
    assert list(corecalc.topsis([[5.0, 7.0]], [1, 1], [True, False])) == [0.5]
    assert list(corecalc.topsis([[1.0, 3.0], [1.0, 4.0]], [1, 0], [True, True])) == [0.5, 0.5]
    # A zero column counts for nothing; a constant column neither.
    assert list(corecalc.topsis([[1.0, 0.0, 4.0], [2.0, 0.0, 4.0]], [1, 1, 1], [True, True, False])) == [0.0, 1.0]
    # Ties: identical rows score identically.
    tied = corecalc.topsis([[1.0, 2.0], [3.0, 1.0], [1.0, 2.0]], [1, 1], [True, True])
    assert tied[0] == tied[2]


def test_the_result_behaves_like_a_list_and_converts_to_numpy_without_copying():
    scores = corecalc.topsis([[2.0, 80.0], [1.0, 40.0], [4.0, 80.0]], (0.8, 0.2), (False, True))
    assert len(scores) == 3
    assert scores[-1] == scores[2]
    assert list(scores) == scores.tolist() == scores
    assert isinstance(scores[0], float)
    assert scores[1:] == scores.tolist()[1:]
    assert max(range(3), key=lambda i: scores[i]) == 1
    view = np.asarray(scores)
    assert view.dtype == np.float64 and not view.flags.writeable
    assert np.shares_memory(view, np.asarray(scores))
    with pytest.raises(IndexError):
        scores[3]
    with pytest.raises(TypeError):
        scores["a"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([[1.0, float("nan")]], [1, 1], [True, True]), "row 0, column 1 is NaN"),
        (([[1.0, 2.0], [1.0, float("inf")]], [1, 1], [True, True]), "row 1, column 1"),
        (([[1.0, 2.0]], [1.0], [True, True]), "weights: expected length 2, got 1"),
        (([[1.0, 2.0]], [1.0, -1.0], [True, True]), "weight 1 is -1"),
        (([[1.0, 2.0]], [0.0, 0.0], [True, True]), "all weights are zero"),
        (([[1.0, 2.0]], [1.0, float("nan")], [True, True]), "weight 1 is NaN"),
        (([[1.0, 2.0]], [1.0, 1.0], [True]), "benefit: expected length 2, got 1"),
        (([[1.0, 2.0], [1.0]], [1.0, 1.0], [True, True]), "row 1 has 1 values"),
        (([[]], [], []), "no columns"),
        ((np.zeros(3), [1.0], [True]), "expected a 2-D array"),
    ],
)
def test_invalid_input_raises_a_value_error_naming_the_problem(args, message):
    with pytest.raises(corecalc.CoreCalcError, match=message) as raised:
        corecalc.topsis(*args)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    "args",
    [
        ("abc", [1.0], [True]),
        ([["a", "b"]], [1.0, 1.0], [True, True]),
        ([[1.0, 2.0]], "ab", [True, True]),
        ([[1.0, 2.0]], [1.0, 1.0], [1, 0]),
        (None, [1.0], [True]),
    ],
)
def test_wrong_types_raise_a_type_error(args):
    with pytest.raises(TypeError):
        corecalc.topsis(*args)


def test_huge_weights_are_normalised():
    assert corecalc.topsis([[1.0], [2.0]], [1e308], [True]) == [0.0, 1.0]
    assert corecalc.topsis([[1.0, 2.0], [2.0, 1.0]], [1.7e308, 1.7e308], [True, True]) == [0.5, 0.5]


# --- weighted sum, Pareto front, rank ----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(problems())
def test_weighted_sum_matches_the_reference(problem):
    rows, weights, benefit = problem
    assert all_close(list(corecalc.weighted_sum(rows, weights, benefit)), ref_weighted_sum(rows, weights, benefit))


def test_weighted_sum_handles_a_range_wider_than_the_largest_float():
    assert corecalc.weighted_sum([[-1e308], [1e308], [0.0]], [1], [True]) == [0.0, 1.0, 0.5]
    assert corecalc.weighted_sum([[-1e308], [1e308], [0.0]], [1], [False]) == [1.0, 0.0, 0.5]


@settings(max_examples=300, deadline=None)
@given(problems(max_rows=60))
def test_pareto_front_matches_all_pairs(problem):
    rows, _, benefit = problem
    assert list(corecalc.pareto_front(rows, benefit)) == ref_pareto(rows, benefit)


def test_pareto_front_keeps_identical_best_rows():
    rows = [[1.0, 80.0], [1.0, 80.0], [2.0, 40.0], [0.5, 10.0]]
    assert corecalc.pareto_front(rows, [False, True]) == [0, 1, 3]
    assert corecalc.pareto_front([], [True]) == []
    assert corecalc.pareto_front([[-0.0, 1.0], [0.0, 2.0]], [True, True]) == [1], "-0.0 equals 0.0"


@settings(max_examples=300, deadline=None)
@given(problems(), st.one_of(st.none(), st.integers(0, 50)), st.sampled_from(["topsis", "weighted_sum"]))
def test_rank_orders_best_first_with_ties_by_index(problem, top_k, method):
    rows, weights, benefit = problem
    scores = list(getattr(corecalc, method)(rows, weights, benefit))
    indices, picked = corecalc.rank(method, rows, weights, benefit, top_k=top_k)
    assert list(indices) == ref_rank(scores, top_k)
    assert list(picked) == [scores[i] for i in indices]


def test_rank_on_many_ties_is_stable():
    rows = [[float(i % 3)] for i in range(1_000)]
    indices, _ = corecalc.rank("topsis", rows, [1], [True], top_k=5)
    assert list(indices) == [2, 5, 8, 11, 14]


def test_rank_rejects_unknown_methods_and_negative_k():
    with pytest.raises(corecalc.CoreCalcError, match='unknown ranking method "best"'):
        corecalc.rank("best", [[1.0]], [1], [True])
    with pytest.raises(corecalc.CoreCalcError, match="top_k"):
        corecalc.rank("topsis", [[1.0]], [1], [True], top_k=-1)
    with pytest.raises(ValueError, match="64-bit"):
        corecalc.rank("topsis", [[1.0]], [1], [True], top_k=2**70)
