"""GPUBROKER's hot maths, implemented in Rust (see ``corecalc/src``).

The compiled module is ``corecalc._corecalc``; this package re-exports its public names (the
module's ``__all__``, listed once in ``_corecalc.pyi``) so callers write ``import corecalc`` and
type checkers read the stub.
"""

from corecalc._corecalc import *  # noqa: F403 (the public API is exactly the module's __all__)
from corecalc._corecalc import __all__ as __all__
