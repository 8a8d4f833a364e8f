"""Runs every `bench/bench_*.py` module's `main()` in turn (`python -m bench [name ...]` runs only
the named ones, e.g. `python -m bench http`)."""

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> None:
    wanted = set(sys.argv[1:])
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    for name in names:
        if wanted and name.removeprefix("bench_") not in wanted:
            continue
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
