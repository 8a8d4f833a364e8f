"""Runs every `bench/bench_*.py` module's `main()` in turn (`python -m bench [name ...]` runs only
the named ones, e.g. `python -m bench corecalc`)."""

import importlib
import os
import pkgutil
import sys
from pathlib import Path

# OpenBLAS tuning variables set for other work on this machine would skew the NumPy baselines:
# drop them before NumPy is first imported, by re-executing this process without them.
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def main() -> None:
    if any(v in os.environ for v in OPENBLAS_VARS):
        env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
        env["BENCH_UNSET_OPENBLAS"] = ",".join(v for v in OPENBLAS_VARS if v in os.environ)
        os.execve(sys.executable, [sys.executable, "-m", "bench", *sys.argv[1:]], env)
    if os.environ.get("BENCH_UNSET_OPENBLAS"):
        print(f"note: unset {os.environ['BENCH_UNSET_OPENBLAS']} for this run (NumPy baselines use OpenBLAS defaults)")
    wanted = set(sys.argv[1:])
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    for name in names:
        if wanted and name.removeprefix("bench_") not in wanted:
            continue
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
