"""GPUBROKER's hot maths, implemented in Rust (see ``corecalc/src``).

The compiled module is ``corecalc._corecalc``; this package re-exports its public names so callers
write ``import corecalc`` and type checkers read ``_corecalc.pyi``.
"""

from corecalc._corecalc import CoreCalcError, __version__, topsis

__all__ = ["CoreCalcError", "__version__", "topsis"]
