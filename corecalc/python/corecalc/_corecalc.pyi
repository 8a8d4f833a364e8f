from collections.abc import Buffer, Sequence

__version__: str

class CoreCalcError(ValueError):
    """Invalid input to a corecalc function (mismatched lengths, NaN, bad weights...)."""

def topsis(
    matrix: Buffer | Sequence[Sequence[float]],
    weights: Sequence[float],
    benefit: Sequence[bool],
) -> list[float]:
    """TOPSIS closeness coefficients (Hwang & Yoon, vector normalisation), one per row, in [0, 1].

    ``matrix`` is n×m: a C-contiguous float64 buffer (a NumPy array, read without copying) or a
    sequence of rows. ``weights`` (m, finite, >= 0, not all zero) are scaled to sum to 1.
    ``benefit[j]`` is True when a higher value of criterion j is better, False for a cost.
    A zero column contributes nothing; rows with every column constant score 0.5.

    Raises CoreCalcError (a ValueError) naming the argument at fault, TypeError for a non-numeric
    matrix.
    """
