"""GPUBROKER's hot maths, implemented in Rust (see ``corecalc/src``).

The compiled module is ``corecalc._corecalc``; this package re-exports its public names so callers
write ``import corecalc`` and type checkers read ``_corecalc.pyi``.
"""

from corecalc._corecalc import (
    CoreCalcError,
    Float64Array,
    Int64Array,
    SlidingWindow,
    __version__,
    jittered_ttl,
    minute_aggregates,
    pareto_front,
    pct_change,
    rank,
    refresh_probability,
    rolling_stats,
    seed,
    should_refresh,
    stored_expiry,
    topsis,
    weighted_sum,
    window_decide,
)

__all__ = [
    "CoreCalcError",
    "Float64Array",
    "Int64Array",
    "SlidingWindow",
    "__version__",
    "jittered_ttl",
    "minute_aggregates",
    "pareto_front",
    "pct_change",
    "rank",
    "refresh_probability",
    "rolling_stats",
    "seed",
    "should_refresh",
    "stored_expiry",
    "topsis",
    "weighted_sum",
    "window_decide",
]
