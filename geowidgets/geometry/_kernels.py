"""Compiled kernels (numba) for the loops no library routine does without an extra copy.

Imported on first use, so ``import geowidgets`` does not load numba; the machine code is cached on
disk (``cache=True``), so only the first process on a machine compiles.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, nogil=True)
def pair_distances_kernel(Q, R, rows, cand, inv_q, inv_r, out):  # pragma: no cover - compiled
    """``out[a, b] = ‖Q[rows[a]]·s_q − R[cand[a, b]]·s_r‖`` in float64, summed feature by feature.

    ``inv_q``/``inv_r`` are the row scales ``s`` (empty arrays: 1). See ``_knn.pair_distances``.
    """
    cosine = inv_q.shape[0] > 0
    for a in numba.prange(cand.shape[0]):
        i = rows[a]
        scale_q = inv_q[i] if cosine else 1.0
        for b in range(cand.shape[1]):
            j = cand[a, b]
            scale_r = inv_r[j] if cosine else 1.0
            total = 0.0
            for f in range(Q.shape[1]):
                t = np.float64(Q[i, f]) * scale_q - np.float64(R[j, f]) * scale_r
                total += t * t
            out[a, b] = math.sqrt(total)
