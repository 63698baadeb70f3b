"""Small vectorised statistics shared by the scorer and the baselines."""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

_LN10 = np.log(10.0)


def gaussian_surprise(z: np.ndarray, *, two_sided: bool = True) -> np.ndarray:
    """-log10 of the Gaussian tail probability of ``z`` (0 for z <= 0 when one-sided).

    Computed in log space, so it stays finite and exact far into the tail.
    """
    z = np.asarray(z, dtype=np.float64)
    if two_sided:
        return np.maximum(-(log_ndtr(-np.abs(z)) + np.log(2.0)) / _LN10, 0.0)
    return np.maximum(-log_ndtr(-z) / _LN10, 0.0) * (z > 0)
