"""Percentile intervals of bootstrap values (the fits of seed-bootstrap resamples, docs/science.md 2.4)."""

import numpy as np


def percentile_interval(values, q=(2.5, 97.5), min_n=1):
    """[lo, hi] percentiles of the finite values; [None, None] with fewer than `min_n` of them."""
    a = np.asarray(values, float)
    a = a[np.isfinite(a)]
    return [float(np.percentile(a, q[0])), float(np.percentile(a, q[1]))] if len(a) >= min_n else [None, None]
