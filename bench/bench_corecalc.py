"""corecalc against what a user would otherwise pick, measured in the same run.

- TOPSIS: pymcdm's TOPSIS (vector normalisation, validation=False) and a vectorised NumPy TOPSIS,
  at 1,000 / 100,000 / 1,000,000 offers × 6 criteria, from Python with the call overhead
  included; beside them NumPy summing the matrix twice (the memory-bandwidth floor of a
  two-pass algorithm). All six criteria are benefits: pymcdm's vector normalisation treats a
  cost column as 1 - x/||x||, which is not classic (Hwang & Yoon) TOPSIS, so the comparison is
  like for like only on benefit columns; the scores are checked to agree.
- Rate windows: SlidingWindow.check against the `limits` library's in-memory moving window.
- Per-call cost of should_refresh and window_decide from Python.
"""

import gc
import time
import timeit

import numpy as np

import corecalc

SIZES = (1_000, 100_000, 1_000_000)
CRITERIA = 6
WEIGHTS = np.array([0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
BENEFIT = np.ones(CRITERIA, dtype=bool)


def best_time(fn, budget: float = 1.0, repeats: int = 5) -> float:
    """The best mean time of one call over `repeats` batches sized to fill about `budget` s."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(budget / repeats / once))
    gc.disable()
    try:
        return min(timeit.repeat(fn, number=number, repeat=repeats)) / number
    finally:
        gc.enable()


def numpy_topsis(matrix: np.ndarray, weights: np.ndarray, benefit: np.ndarray) -> np.ndarray:
    """Classic TOPSIS as a NumPy user writes it: vectorised, one temporary per step."""
    v = matrix / np.sqrt((matrix**2).sum(axis=0)) * (weights / weights.sum())
    ideal = np.where(benefit, v.max(axis=0), v.min(axis=0))
    anti = np.where(benefit, v.min(axis=0), v.max(axis=0))
    d_plus = np.sqrt(((v - ideal) ** 2).sum(axis=1))
    d_minus = np.sqrt(((v - anti) ** 2).sum(axis=1))
    return d_minus / (d_plus + d_minus)


def two_reads(matrix: np.ndarray) -> None:
    matrix.sum()
    matrix.sum()


def fmt_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:,.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:,.1f} µs"
    return f"{seconds * 1e9:,.0f} ns"


def row(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print(row(header, widths))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(row(r, widths))


def bench_topsis() -> None:
    from pymcdm.methods import TOPSIS
    from pymcdm.normalizations import vector_normalization

    pymcdm_topsis = TOPSIS(normalization_function=vector_normalization)
    types = np.ones(CRITERIA)
    weights = WEIGHTS / WEIGHTS.sum()
    rng = np.random.default_rng(2015)
    rows, notes = [], []
    for n in SIZES:
        matrix = rng.uniform(0.5, 100.0, size=(n, CRITERIA))
        ours = np.asarray(corecalc.topsis(matrix, WEIGHTS, BENEFIT))
        theirs = pymcdm_topsis(matrix, weights, types, validation=False)
        by_numpy = numpy_topsis(matrix, WEIGHTS, BENEFIT)
        notes.append(f"n={n:,}: max |corecalc - pymcdm| = {np.abs(ours - theirs).max():.1e}, "
                     f"max |corecalc - numpy| = {np.abs(ours - by_numpy).max():.1e}")
        budget = 1.5 if n < 1_000_000 else 3.0
        t_ours = best_time(lambda: corecalc.topsis(matrix, WEIGHTS, BENEFIT), budget)
        t_pymcdm = best_time(lambda: pymcdm_topsis(matrix, weights, types, validation=False), budget, repeats=3)
        t_numpy = best_time(lambda: numpy_topsis(matrix, WEIGHTS, BENEFIT), budget, repeats=3)
        t_reads = best_time(lambda: two_reads(matrix), budget)
        target = n == 1_000_000
        rows.append([
            f"{n:,} × {CRITERIA}",
            fmt_time(t_ours),
            fmt_time(t_pymcdm),
            f"{t_pymcdm / t_ours:,.1f}×" + (" (≥ 30×)" if target else ""),
            fmt_time(t_numpy),
            f"{t_numpy / t_ours:,.1f}×" + (" (≥ 20×)" if target else ""),
            fmt_time(t_reads),
            f"{t_reads / t_ours:,.2f}×" + (" (≥ 1×)" if target else ""),
        ])
    table(
        "TOPSIS from Python, all-benefit criteria (ratio = baseline time / corecalc time; target in brackets)",
        ["offers × criteria", "corecalc", "pymcdm", "vs pymcdm", "NumPy TOPSIS", "vs NumPy", "NumPy 2 reads", "vs 2 reads"],
        rows,
    )
    for note in notes:
        print(f"  agreement {note}")


def bench_rate_windows() -> None:
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    keys = [f"203.0.113.{i % 250}:{i}" for i in range(10_000)]
    rows = []
    for limit, label in ((50, "exact log"), (1_000, "counter")):
        window = corecalc.SlidingWindow(limit, 60.0)
        assert window.exact == (label == "exact log")
        limiter = MovingWindowRateLimiter(MemoryStorage())
        item = parse(f"{limit}/minute")
        checks = 100_000  # 10 per key: every check on the allowed path, as in the baseline notes

        def ours() -> None:
            now = time.monotonic()
            check = window.check
            for i in range(checks):
                check(keys[i % 10_000], now + i * 1e-6)

        def theirs() -> None:
            hit = limiter.hit
            for i in range(checks):
                hit(item, keys[i % 10_000])

        t_ours = best_time(ours, 2.0, repeats=3) / checks
        t_theirs = best_time(theirs, 3.0, repeats=3) / checks
        rows.append([
            f"limit {limit}/min, 10,000 keys ({label})",
            f"{1 / t_ours:,.0f}/s",
            f"{1 / t_theirs:,.0f}/s",
            f"{t_theirs / t_ours:,.1f}× (≥ 10×)",
        ])
    table(
        "Rate windows in process, allowed path (checks per second)",
        ["case", "SlidingWindow.check", "limits moving window", "ratio"],
        rows,
    )


def bench_per_call() -> None:
    g = {"c": corecalc}
    cases = [
        ("should_refresh(now, expiry, delta)", "c.should_refresh(1000.0, 1010.0, 2.0)"),
        ("should_refresh(now, expiry, delta, beta, rand)", "c.should_refresh(1000.0, 1010.0, 2.0, 1.0, 0.5)"),
        ("window_decide(prev, curr, fraction, limit)", "c.window_decide(90, 40, 0.25, 100)"),
        ("window_decide(..., window_seconds)", "c.window_decide(90, 40, 0.25, 100, 60.0)"),
    ]
    rows = []
    for label, stmt in cases:
        number = 200_000
        t = min(timeit.repeat(stmt, globals=g, number=number, repeat=5)) / number
        rows.append([label, fmt_time(t), "< 300 ns", "yes" if t < 300e-9 else "NO"])
    table("Per-call cost from Python (timeit, best of 5 × 200,000)", ["call", "time", "target", "met"], rows)


def main() -> None:
    print(f"corecalc {corecalc.__version__}, NumPy {np.__version__}")
    bench_topsis()
    bench_rate_windows()
    bench_per_call()
