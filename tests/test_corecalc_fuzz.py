"""10,000 random corecalc calls with random arguments never crash the interpreter.

The calls run in a child interpreter, so a crash (a segfault, an abort, a Rust panic surfacing as
pyo3's PanicException) fails this test instead of killing the test run. Every call must return or
raise ValueError or TypeError; OverflowError is tolerated only where Python itself raises it,
converting an int beyond the float range to a float.
"""

import subprocess
import sys
import textwrap

FUZZ = textwrap.dedent(
    """
    import math, random, sys
    import numpy as np
    import corecalc

    rng = random.Random(int(sys.argv[1]))
    SCALARS = [0, 1, -1, 2**63, 2**70, -(2**70), 0.0, -0.0, 0.5, 1.0, 1.5, -1e308, 1e308, 5e-324,
               math.nan, math.inf, -math.inf, None, "x", "", b"ab", True, False, [], (), {}, object()]

    def scalar():
        return rng.choice(SCALARS) if rng.random() < 0.5 else rng.uniform(-1e3, 1e3)

    def vector(n=None):
        n = rng.randint(0, 8) if n is None else n
        kind = rng.random()
        if kind < 0.4:
            return [scalar() if rng.random() < 0.1 else rng.uniform(-10, 10) for _ in range(n)]
        if kind < 0.7:
            return np.array([rng.uniform(-10, 10) for _ in range(n)], dtype=rng.choice(["f8", "f4", "i8", "?"]))
        return scalar()

    def matrix():
        n, m = rng.randint(0, 12), rng.randint(0, 7)
        kind = rng.random()
        if kind < 0.4:
            a = np.array([[rng.choice([rng.uniform(-5, 5), 0.0, 1.0]) for _ in range(m)] for _ in range(n)], dtype="f8").reshape(n, m)
            if n and m and rng.random() < 0.2:
                a[rng.randrange(n), rng.randrange(m)] = rng.choice([math.nan, math.inf, 1e308, 5e-324])
            if rng.random() < 0.2:
                a = a[::-1, ::2] if rng.random() < 0.5 else np.asfortranarray(a)
            return a
        if kind < 0.7:
            return [vector(m if rng.random() < 0.8 else None) for _ in range(n)]
        return rng.choice([vector(), scalar(), np.zeros((2, 2, 2)), np.zeros(3, dtype="f4")])

    def flags(m):
        return rng.choice([[rng.random() < 0.5 for _ in range(m)], np.array([True] * m), vector(m), scalar()])

    def call():
        f = rng.randrange(13)
        m = rng.randint(0, 7)
        if f == 0:
            return corecalc.topsis(matrix(), vector(m), flags(m))
        if f == 1:
            return corecalc.weighted_sum(matrix(), vector(m), flags(m))
        if f == 2:
            return corecalc.pareto_front(matrix(), flags(m))
        if f == 3:
            return corecalc.rank(rng.choice(["topsis", "weighted_sum", "x", 3]), matrix(), vector(m), flags(m), rng.choice([None, 0, 3, -2, 2**70, "a"]))
        if f == 4:
            return corecalc.should_refresh(scalar(), scalar(), scalar(), scalar(), rng.choice([None, scalar()]))
        if f == 5:
            return corecalc.jittered_ttl(scalar(), scalar(), rng.choice([None, scalar()]))
        if f == 6:
            return corecalc.stored_expiry(scalar(), scalar(), scalar(), rng.choice([None, scalar()]))
        if f == 7:
            return corecalc.window_decide(scalar(), scalar(), scalar(), scalar(), scalar())
        if f == 8:
            return corecalc.SlidingWindow(scalar(), scalar()).check(rng.choice(["k", 1, None]), scalar())
        if f == 9:
            return corecalc.pct_change(vector(), rng.choice([1, 2, 0, -1, 2**70, "x"]))
        if f == 10:
            return corecalc.rolling_stats(vector(), rng.choice([1, 2, 3, 0, -1, 10]), rng.choice([0, 1, 5, -1]))
        if f == 11:
            n = rng.randint(0, 6)
            return corecalc.minute_aggregates(vector(n), rng.choice([["a"] * n, [[1]] * n, vector(n), scalar()]), vector(n), scalar())
        result = corecalc.topsis(matrix(), vector(m), flags(m))
        return (result[rng.randint(-3, 3)], result[::-1], list(result), np.asarray(result), result == [0.5])

    limiter = corecalc.SlidingWindow(3, 1.0, max_keys=16)
    unexpected = []
    for i in range(10_000):
        try:
            call()
            limiter.check(str(rng.randrange(100)), rng.uniform(0, 1e3))
        except (ValueError, TypeError, IndexError):
            pass
        except OverflowError as e:
            if "too large to convert to float" not in str(e):
                unexpected.append(repr(e))
        except BaseException as e:  # a PanicException is a BaseException
            unexpected.append(repr(e))
    print(len(unexpected))
    for e in unexpected[:20]:
        print(e)
    sys.exit(1 if unexpected else 0)
    """
)


def test_ten_thousand_random_calls_never_crash_the_interpreter():
    result = subprocess.run(
        [sys.executable, "-c", FUZZ, "20260423"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    assert result.stdout.strip() == "0"
