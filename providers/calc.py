"""The catalog's maths, all from corecalc, in the shapes the catalog code uses.

corecalc works on series; the catalog mostly asks about pairs (old price, new price) and one new
value against its history, so these helpers adapt the shapes and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import corecalc
from corecalc import minute_aggregates, pareto_front, rank, should_refresh, weighted_sum

__all__ = ["minute_aggregates", "pareto_front", "pct_changes", "rank", "should_refresh", "weighted_sum", "zscore"]

MIN_HISTORY = 5


def pct_changes(pairs: Sequence[tuple[float, float]]) -> list[float]:
    """Percent change of each (old, new) pair, in one call."""
    if not pairs:
        return []
    series = [value for pair in pairs for value in pair]
    return [100.0 * change for change in list(corecalc.pct_change(series))[1::2]]


def zscore(history: Sequence[float], value: float) -> float | None:
    """How many sample standard deviations `value` lies from the mean of `history` (oldest first).

    The value is judged against the window before it, not a window that includes it (which would
    cap |z| at (n - 1) / sqrt(n) and hide outliers in short histories). None when the history is
    shorter than five values or flat: no anomaly can be judged against it.
    """
    if len(history) < MIN_HISTORY:
        return None
    means, stds, _ = corecalc.rolling_stats(list(history), len(history))
    mean, std = list(means)[-1], list(stds)[-1]
    if not std or math.isnan(std):
        return None
    return (value - mean) / std
