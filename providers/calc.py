"""The catalog's maths, from corecalc.

TEMPORARY: corecalc's cache-expiry, ranking and statistics functions are being added on the
`corecalc` branch. Until that branch is merged here, the names corecalc does not have yet fall back
to the exact Python definitions below (same semantics and tie-breaking as the Rust code), so the
results are the same either way; each fallback goes away when corecalc provides its name.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import corecalc

Matrix = Sequence[Sequence[float]]


def _normalised_weights(weights: Sequence[float], cols: int) -> list[float]:
    if len(weights) != cols:
        raise corecalc.CoreCalcError(f"weights: expected {cols} values, got {len(weights)}")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise corecalc.CoreCalcError("weights: every weight must be finite and >= 0")
    total = sum(weights)
    if total <= 0:
        raise corecalc.CoreCalcError("weights: at least one weight must be above zero")
    return [w / total for w in weights]


def _py_weighted_sum(matrix: Matrix, weights: Sequence[float], benefit: Sequence[bool]) -> list[float]:
    """Weighted sum of min-max normalised criteria in [0, 1]; a constant column adds nothing."""
    if not matrix:
        return []
    cols = len(matrix[0])
    w = _normalised_weights(weights, cols)
    lows = [min(row[j] for row in matrix) for j in range(cols)]
    highs = [max(row[j] for row in matrix) for j in range(cols)]
    scores = []
    for row in matrix:
        total = 0.0
        for j in range(cols):
            span = highs[j] - lows[j]
            if span > 0:
                share = (row[j] - lows[j]) / span
                total += w[j] * (share if benefit[j] else 1.0 - share)
        scores.append(total)
    return scores


def _py_pareto_front(matrix: Matrix, benefit: Sequence[bool]) -> list[int]:
    """Ascending indices of rows no other row dominates (identical rows do not dominate)."""
    oriented = [[x if b else -x for x, b in zip(row, benefit, strict=True)] for row in matrix]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [i for i, row in enumerate(oriented) if not any(dominates(other, row) for other in oriented)]


def _py_rank(method: str, matrix: Matrix, weights: Sequence[float], benefit: Sequence[bool], top_k: int | None = None) -> tuple[list[int], list[float]]:
    if method == "topsis":
        scores = corecalc.topsis(matrix, weights, benefit) if matrix else []
    elif method == "weighted_sum":
        scores = weighted_sum(matrix, weights, benefit)
    else:
        raise corecalc.CoreCalcError(f"method: unknown ranking method {method!r}; use topsis or weighted_sum")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if top_k is not None:
        order = order[:top_k]
    return order, [scores[i] for i in order]


def _py_should_refresh(now: float, expiry: float, delta: float, beta: float = 1.0, rand: float | None = None) -> bool:
    """Probabilistic early expiration (Vattani et al., "XFetch"): refresh when
    now - delta * beta * ln(rand) >= expiry, rand uniform in (0, 1]."""
    if rand is None:
        rand = 1.0 - random.random()  # (0, 1]: ln(0) would be -inf
    return now - delta * beta * math.log(rand) >= expiry


weighted_sum = getattr(corecalc, "weighted_sum", _py_weighted_sum)
pareto_front = getattr(corecalc, "pareto_front", _py_pareto_front)
rank = getattr(corecalc, "rank", _py_rank)
should_refresh = getattr(corecalc, "should_refresh", _py_should_refresh)


def pct_change(old: float, new: float) -> float:
    """Percent change from `old` to `new` (old > 0)."""
    return (new - old) / old * 100.0


def zscore(history: Sequence[float], value: float) -> float | None:
    """How many (population) standard deviations `value` lies from the mean of `history`.

    None when the history is too short (< 5) or flat: no anomaly can be judged against it.
    """
    n = len(history)
    if n < 5:
        return None
    mean = sum(history) / n
    var = sum((x - mean) ** 2 for x in history) / n
    if var <= 0:
        return None
    return (value - mean) / math.sqrt(var)
