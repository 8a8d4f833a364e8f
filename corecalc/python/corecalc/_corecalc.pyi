from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Literal, SupportsIndex, final, overload

from typing_extensions import Buffer

__version__: str
__all__ = [
    "__version__",
    "CoreCalcError",
    "Float64Array",
    "Int64Array",
    "SlidingWindow",
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

_Matrix = Buffer | Sequence[Sequence[float]]
"""n×m float64: a C-contiguous buffer (a NumPy array, read without copying; a strided one is
copied once) or a sequence of rows."""

_Floats = Buffer | Sequence[float]
"""1-D float64: a buffer (read without copying) or a sequence of numbers."""

class CoreCalcError(ValueError):
    """Invalid input to a corecalc function; the message names the argument at fault
    (mismatched lengths, NaN or infinity, negative or all-zero weights, out-of-range values)."""

@final
class Float64Array:
    """A read-only array of float64 results. Indexable (ints and slices), iterable, ``len()``,
    ``==`` against another array or any sequence; ``numpy.asarray(a)`` views it without copying
    (buffer protocol, format ``"d"``)."""

    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: SupportsIndex, /) -> float: ...
    @overload
    def __getitem__(self, index: slice, /) -> Float64Array: ...
    def __iter__(self) -> Iterator[float]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def tolist(self) -> list[float]:
        """The values as a list of floats."""

@final
class Int64Array:
    """A read-only array of int64 results (row indices); like ``Float64Array``, format ``"q"``."""

    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: SupportsIndex, /) -> int: ...
    @overload
    def __getitem__(self, index: slice, /) -> Int64Array: ...
    def __iter__(self) -> Iterator[int]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def tolist(self) -> list[int]:
        """The values as a list of ints."""

# --- Ranking --------------------------------------------------------------------------------

def topsis(matrix: _Matrix, weights: Sequence[float], benefit: Sequence[bool]) -> Float64Array:
    """TOPSIS closeness coefficients (Hwang & Yoon, vector normalisation), one per row, in [0, 1].

    ``weights`` (m values, finite, >= 0, not all zero; any sequence, NumPy arrays included) are
    scaled to sum to 1. ``benefit[j]`` is True when a higher value of criterion j is better, False
    for a cost. Cell (i, j) becomes ``w_j * x_ij / ||x_j||``; the ideal and anti-ideal points are
    the best and worst of each column; the score is ``d- / (d+ + d-)``.

    Defined edge cases: no rows gives an empty array; a column of zeros contributes nothing; a
    row equally far from both points (every column constant, e.g. a single row) scores 0.5.
    Columns are rescaled internally by powers of two when huge or tiny, which changes nothing.
    Note that classic TOPSIS differs from pymcdm's vector normalisation on cost columns (pymcdm
    uses ``1 - x/||x||``); they agree when every criterion is a benefit.

    Releases the GIL; from 1.5 million cells the two passes are split over two threads.
    Raises CoreCalcError (a ValueError) naming the argument at fault (NaN or infinity in the
    matrix with its row and column, mismatched lengths, bad weights, ragged rows, not 2-D);
    TypeError for a non-numeric matrix, weights or flags.
    """

def weighted_sum(matrix: _Matrix, weights: Sequence[float], benefit: Sequence[bool]) -> Float64Array:
    """Weighted sum of min-max normalised criteria, one score per row, in [0, 1].

    Cell (i, j) becomes ``(x_ij - min_j) / (max_j - min_j)`` for a benefit and
    ``(max_j - x_ij) / (max_j - min_j)`` for a cost; weights are scaled to sum to 1. A constant
    column contributes nothing. Same inputs, validation and errors as ``topsis``.
    """

def pareto_front(matrix: _Matrix, benefit: Sequence[bool]) -> Int64Array:
    """Indices (ascending) of the rows that no other row dominates.

    Row a dominates row b when a is at least as good on every criterion and strictly better on
    one (higher for a benefit, lower for a cost). Identical rows do not dominate each other, so
    every copy of a best row is kept. O(n log n + n·f·m) for a front of f rows.
    Raises CoreCalcError for NaN or infinity or a wrong number of flags.
    """

def rank(
    method: Literal["topsis", "weighted_sum"],
    matrix: _Matrix,
    weights: Sequence[float],
    benefit: Sequence[bool],
    top_k: int | None = None,
) -> tuple[Int64Array, Float64Array]:
    """Row indices best first and their scores under ``method``.

    Ties keep the lower index first (a stable order). With ``top_k`` only the k best are
    returned (all rows if k >= n, none if k == 0): the rows are partitioned around the k-th best
    in O(n) and only the k selected are sorted. Raises CoreCalcError for an unknown method or a
    negative ``top_k``, and whatever the method raises.
    """

# --- Cache expiry ---------------------------------------------------------------------------

def should_refresh(
    now: float, expiry: float, delta: float, beta: float = 1.0, rand: float | None = None
) -> bool:
    """XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): recompute a cached value early?

    True when ``now - delta * beta * ln(rand) >= expiry``, where ``delta`` is how long the last
    recompute took (seconds), ``beta`` > 1 favours earlier refreshes, and ``rand`` is uniform in
    (0, 1] (drawn from a fast per-thread SplitMix64 generator when None; see ``seed``). The chance
    of True is ``refresh_probability(now, expiry, delta, beta)``; always True from ``expiry`` on.
    Raises CoreCalcError for a non-finite time, negative ``delta``/``beta`` or ``rand`` outside
    (0, 1].
    """

def refresh_probability(now: float, expiry: float, delta: float, beta: float = 1.0) -> float:
    """The probability that ``should_refresh`` returns True for a uniform draw:
    ``exp(-(expiry - now) / (delta * beta))`` before expiry (0 when ``delta * beta`` is 0), 1 from
    expiry on."""

def jittered_ttl(ttl: float, jitter: float = 0.1, rand: float | None = None) -> float:
    """A TTL shortened by up to ``jitter`` of itself, ``ttl * (1 - jitter * (1 - rand))``, in
    ``(ttl * (1 - jitter), ttl]``, so keys written together do not expire together and ``ttl``
    stays an upper bound. ``rand`` in (0, 1] as for ``should_refresh``; ``0 <= jitter <= 1``."""

def stored_expiry(now: float, ttl: float, jitter: float = 0.0, rand: float | None = None) -> float:
    """The absolute expiry to store beside a value written at ``now`` (seconds):
    ``now + jittered_ttl(ttl, jitter, rand)``. Store it with the recompute time ``delta`` and
    pass both to ``should_refresh`` on each read."""

def seed(value: int) -> None:
    """Seeds the calling thread's generator (used when ``rand`` is None), for reproducible tests."""

# --- Rate windows ---------------------------------------------------------------------------

def window_decide(
    prev_count: int,
    curr_count: int,
    elapsed_fraction: float,
    limit: int,
    window_seconds: float = 1.0,
) -> tuple[bool, int, float]:
    """The sliding-window counter (two fixed windows weighted by overlap), as a Redis-backed
    limiter uses it with the two counters kept in Redis.

    ``prev_count`` and ``curr_count`` are the requests counted in the previous and the current
    fixed window, not counting this one; ``elapsed_fraction`` in [0, 1] is how far into the
    current window now is; ``limit`` >= 1 requests per window of ``window_seconds``. The estimate
    over the sliding window ending now is ``prev_count * (1 - elapsed_fraction) + curr_count``.

    Returns ``(allowed, remaining, retry_after_seconds)``: allowed when ``estimate + 1 <= limit``
    (the caller then increments the current counter); ``remaining = floor(limit - estimate - 1)``
    when allowed, else 0; ``retry_after_seconds`` is 0 when allowed, else the time until the
    estimate would admit one request if nothing more is counted: later in this window as the
    previous window's weight fades, or else in the next one, where this window's count fades in
    turn. It is in units of ``window_seconds`` (with the default 1.0: in windows).
    Raises CoreCalcError for negative counts, a fraction outside [0, 1], ``limit`` < 1 or a
    non-positive window.
    """

@final
class SlidingWindow:
    """An in-process rate limiter: at most ``limit`` requests per key in any ``window_seconds``
    (the fallback when Redis is down). Thread-safe (a mutex inside).

    Limits up to ``log_limit`` keep an exact sliding log of request times (8 bytes per request in
    the window); larger limits use the sliding-window counter of ``window_decide``. Memory stays
    bounded: keys whose state has expired are dropped by a sweep every so many checks (amortised
    O(1)), and at ``max_keys`` live keys the least recently seen eighth is evicted (forgetting
    their history, so they start afresh).
    """

    def __new__(cls, limit: int, window_seconds: float, *, max_keys: int = 65536, log_limit: int = 64) -> SlidingWindow: ...
    def check(self, key: str, now: float) -> tuple[bool, int, float]:
        """Counts a request for ``key`` at ``now`` (seconds on any clock, e.g. ``time.monotonic()``;
        normally non-decreasing) if the limit allows it. Returns
        ``(allowed, remaining, retry_after_seconds)`` as ``window_decide`` does; with the exact log,
        ``retry_after_seconds`` is when the oldest counted request leaves the window."""
    def sweep(self, now: float) -> int:
        """Drops every key whose state has expired by ``now``; returns how many."""
    def __len__(self) -> int:
        """How many keys are held."""
    @property
    def limit(self) -> int: ...
    @property
    def window_seconds(self) -> float: ...
    @property
    def max_keys(self) -> int: ...
    @property
    def exact(self) -> bool:
        """True when this limiter keeps an exact log (``limit <= log_limit``)."""

# --- Price statistics -----------------------------------------------------------------------

def pct_change(values: _Floats, periods: int = 1) -> Float64Array:
    """``(x[i] - x[i - periods]) / x[i - periods]``; NaN for the first ``periods`` entries.

    IEEE division: a previous value of 0 gives ±infinity (NaN for 0 → 0). Raises CoreCalcError
    for NaN or infinity in ``values`` (with its index) or ``periods`` < 1.
    """

def rolling_stats(values: _Floats, window: int, ddof: int = 1) -> tuple[Float64Array, Float64Array, Float64Array]:
    """Rolling ``(mean, std, zscore)`` over the ``window`` values ending at each index.

    NaN until the first window is full. ``std`` has ``ddof`` delta degrees of freedom (1: sample,
    0: population; ``0 <= ddof < window``); ``zscore = (x - mean) / std``, 0 where the window is
    constant. Welford's update, sliding, with an exact two-pass recompute every ``window`` steps
    and whenever a running bound on the updates' rounding error passes 1e-11 of the moment (e.g.
    a spike leaving the window), so rounding does not drift; a constant window is reported exactly (std 0). Raises CoreCalcError
    for NaN or infinity in ``values``.
    """

def minute_aggregates(
    timestamps: _Floats,
    groups: Iterable[Hashable],
    prices: _Floats,
    bucket_seconds: float = 60.0,
) -> list[tuple[float, Hashable, float, float, float, int]]:
    """Per-(time bucket, group) aggregates of price updates: one-minute buckets by default.

    Returns ``(bucket_start, group, min, mean, max, count)`` tuples, where ``bucket_start`` is
    ``floor(timestamp / bucket_seconds) * bucket_seconds``, ordered by bucket, then by the
    group's first appearance in ``groups``. Groups are any hashable values (GPU type names, ids);
    the mean uses a compensated sum. Raises CoreCalcError for mismatched lengths, NaN or infinity,
    a non-positive bucket or a timestamp too far from 0 for an exact bucket number.
    """
