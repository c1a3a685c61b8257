"""Boundary points by local direction dispersion (LoDD, docs/probes.md#lodd).

An interior point has neighbours in every direction; a rim point has them all to one side. LoDD
measures how evenly the unit directions to the k nearest neighbours spread, from the covariance
C of those directions, exactly as the official ``LoDD.m``:

``LoDD_i = w (tr C)² + d(1 − w)/(d − 1) · ((tr C)² − tr C²)``, w = 0.5, d = D.

The D×D covariance is never formed: with Ũ the centred k×D direction matrix,
``tr C = ‖Ũ‖²_F / k`` and ``tr C² = ‖Ũ Ũᵀ‖²_F / k²``, O(k²·D) per point, batched on the device.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, ArrayKind, as_tensor, check_k, to_kind
from geowidgets.geometry._knn import PrecomputedKNN, resolve_knn
from geowidgets.geometry._stats import stable_argsort

__all__ = ["LoDDScores", "lodd"]

_WEIGHT = 0.5  # w in the official code
_CHUNK_ELEMENTS = 2**24  # neighbour-block elements (chunk · k · D) processed at once


def _check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating, np.integer)):
        raise ValueError(f"ratio must be a number with 0 < ratio <= 1, got {ratio!r}")
    if not 0 < float(ratio) <= 1:
        raise ValueError(f"ratio must satisfy 0 < ratio <= 1 (the fraction of points flagged), got {ratio!r}")
    return float(ratio)


def _flag(score: torch.Tensor, ratio: float) -> tuple[torch.Tensor, float]:
    """The ⌈N·ratio⌉ lowest scores (ties to the lower index) and the largest flagged score."""
    n = score.shape[0]
    count = min(n, math.ceil(n * ratio - 1e-9 * n))  # guard against float round-up, e.g. 0.1 * 30
    count = max(count, 1)
    order = stable_argsort(score)[:count].to(score.device)
    boundary = torch.zeros(n, dtype=torch.bool, device=score.device)
    boundary[order] = True
    return boundary, float(score[order].max())


@dataclass(frozen=True)
class LoDDScores:
    """LoDD scores and the boundary set (docs/probes.md#lodd).

    Attributes
    ----------
    score : Tensor or ndarray, shape [N]
        LoDD per point; small = neighbours to one side (boundary), ≈ 1 for a full ring in 2-D.
    boundary : Tensor or ndarray, shape [N], bool
        The ⌈N·ratio⌉ points with the smallest scores (ties to the lower index).
    threshold : float
        The largest score among the flagged points.
    ratio : float
    k : int

    Examples
    --------
    >>> import numpy as np
    >>> res = lodd(np.random.default_rng(0).normal(size=(100, 2)), k=10, ratio=0.2)
    >>> int(res.boundary.sum()), bool(res.score[res.boundary].max() == res.threshold)
    (20, True)
    """

    score: Any
    boundary: Any
    threshold: float
    ratio: float
    k: int
    kind: ArrayKind = field(repr=False)

    def with_ratio(self, ratio: float) -> LoDDScores:
        """Re-threshold at another ``ratio`` without recomputing scores.

        Examples
        --------
        >>> import numpy as np
        >>> res = lodd(np.random.default_rng(0).uniform(-1, 1, size=(400, 2)), k=10, ratio=0.1)
        >>> int(res.with_ratio(0.25).boundary.sum())
        100
        """
        ratio = _check_ratio(ratio)
        boundary, threshold = _flag(torch.as_tensor(self.score), ratio)
        return replace(self, boundary=to_kind(boundary, self.kind), threshold=threshold, ratio=ratio)


def _lodd_scores(X: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, int]:
    """LoDD per point from its neighbour indices; returns scores and the number of zero directions."""
    n, d = X.shape
    k = idx.shape[1]
    coef = d * (1 - _WEIGHT) / (d - 1)
    scores = torch.empty(n, dtype=X.dtype, device=X.device)
    n_zero = 0
    step = max(1, _CHUNK_ELEMENTS // max(1, k * d))
    for s in range(0, n, step):
        i = idx[s : s + step]
        diff = X[i] - X[s : s + step].unsqueeze(1)  # [c, k, D]
        norms = torch.linalg.vector_norm(diff, dim=2, keepdim=True)
        zero = norms == 0
        n_zero += int(zero.sum())
        u = torch.where(zero, torch.zeros_like(diff), diff / torch.where(zero, torch.ones_like(norms), norms))
        centred = u - u.mean(dim=1, keepdim=True)
        tr_c = centred.square().sum(dim=(1, 2)) / k
        gram = centred @ centred.transpose(1, 2)  # [c, k, k]
        tr_c2 = gram.square().sum(dim=(1, 2)) / (k * k)
        scores[s : s + step] = _WEIGHT * tr_c.square() + coef * (tr_c.square() - tr_c2)
    return scores, n_zero


def lodd(X: Array, k: int = 20, ratio: float = 0.1, *, knn: PrecomputedKNN | None = None) -> LoDDScores:
    """Local direction dispersion (LoDD) scores and boundary points.

    For each point, the unit directions ``u_j = (x_j − x_i)/‖x_j − x_i‖`` to its k nearest
    neighbours (self excluded) have population covariance C; the score is
    ``0.5 (tr C)² + D/(2(D − 1)) · ((tr C)² − tr C²)`` (official LoDD code, w = 0.5, d = D). The
    ⌈N·ratio⌉ smallest scores are the boundary. A neighbour at distance 0 (a duplicate point) has
    no direction; its u_j is set to 0 and a warning gives the count.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D], D >= 2
    k : int
        Neighbours, ``1 <= k <= N − 1`` (default 20, as the official code).
    ratio : float
        Fraction of points flagged as boundary, ``0 < ratio <= 1`` (default 0.1). The official
        grid-based adaptive ratio is replaced by this slider.
    knn : KNNGraph or (dist, idx), optional
        X's euclidean kNN graph.

    Returns
    -------
    LoDDScores
        ``score`` and ``boundary`` in X's kind; :meth:`LoDDScores.with_ratio` re-thresholds.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).uniform(-1, 1, size=(2000, 2))
    >>> res = lodd(X, k=20, ratio=0.1)
    >>> r = np.abs(X).max(axis=1)
    >>> bool(r[res.boundary].mean() > r.mean())
    True
    """
    Xt, kind = as_tensor(X, "X", min_rows=2)
    if Xt.shape[1] < 2:
        raise ValueError(f"LoDD needs at least 2 features (d enters as d/(d-1)), got D={Xt.shape[1]}")
    k = check_k(k, Xt.shape[0] - 1)
    ratio = _check_ratio(ratio)
    _, idx = resolve_knn(Xt, k, knn, "euclidean")
    scores, n_zero = _lodd_scores(Xt, idx)
    if n_zero:
        warnings.warn(
            f"lodd: {n_zero} neighbour(s) lie at distance 0 (duplicate points); their directions are "
            "undefined and were set to 0",
            stacklevel=2,
        )
    boundary, threshold = _flag(scores, ratio)
    return LoDDScores(to_kind(scores, kind), to_kind(boundary, kind), threshold, ratio, k, kind)
