"""Reference-free deviation by blurring mean shift (MSS, docs/probes.md#mean-shift-deviation).

Exported through :mod:`geowidgets.geometry._deviation` with the other deviation probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_tensor, check_k, to_kind
from geowidgets.geometry._knn import PrecomputedKNN, resolve_knn

__all__ = ["MeanShiftDeviation", "mean_shift_deviation"]


@dataclass(frozen=True)
class MeanShiftDeviation:
    """Blurring mean-shift deviation (docs/probes.md#mean-shift-deviation).

    Attributes
    ----------
    score : Tensor or ndarray, shape [N]
        ``‖x_i − x_i^(m)‖``: how far each point moved after m mean-shift steps.
    shifted : Tensor or ndarray, shape [N, D]
        The points after m steps, ``x^(m)``.
    k : int
    iterations : int
    fixed_graph : bool

    Examples
    --------
    >>> import numpy as np
    >>> res = mean_shift_deviation(np.random.default_rng(0).normal(size=(50, 3)), k=5, iterations=2)
    >>> res.score.shape, res.shifted.shape
    ((50,), (50, 3))
    """

    score: Any
    shifted: Any
    k: int
    iterations: int
    fixed_graph: bool


def mean_shift_deviation(
    X: Array, k: int = 10, iterations: int = 3, *, fixed_graph: bool = False, knn: PrecomputedKNN | None = None
) -> MeanShiftDeviation:
    """Reference-free deviation: how far each point moves under m steps of blurring mean shift.

    ``X⁽⁰⁾ = X``; at each step every point becomes the mean of its k nearest neighbours
    (self excluded) in the previous configuration, ``X⁽ᵗ⁾_i = mean_{j ∈ N_k(X⁽ᵗ⁻¹⁾, i)} X⁽ᵗ⁻¹⁾_j``.
    The score is ``‖X_i − X⁽ᵐ⁾_i‖`` (after the MSS score of the cited paper, applied to layer
    features without an autoencoder). Points off the bulk move far; interior points barely move.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
    k : int
        Neighbours, ``1 <= k <= N − 1``.
    iterations : int
        Mean-shift steps m >= 1.
    fixed_graph : bool
        Reuse X's neighbour indices at every step instead of searching again (O(m·N·k·D)),
        for live dragging of k or m.
    knn : KNNGraph or (dist, idx), optional
        X's kNN graph (euclidean), used for the first step (and every step with
        ``fixed_graph``).

    Returns
    -------
    MeanShiftDeviation
        Same kind as X.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.r_[np.random.default_rng(0).normal(size=(100, 2)), [[10.0, 10.0]]]
    >>> int(np.argmax(mean_shift_deviation(X, k=5).score))
    100
    """
    Xt, kind = as_tensor(X, "X", min_rows=2)
    k = check_k(k, Xt.shape[0] - 1)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    _, idx = resolve_knn(Xt, k, knn, "euclidean")
    current = Xt
    for step in range(int(iterations)):
        if step > 0 and not fixed_graph:
            _, idx = resolve_knn(current, k, None, "euclidean")
        current = current[idx].mean(dim=1)
    score = torch.linalg.vector_norm(Xt - current, dim=1)
    return MeanShiftDeviation(to_kind(score, kind), to_kind(current, kind), k, int(iterations), bool(fixed_graph))
