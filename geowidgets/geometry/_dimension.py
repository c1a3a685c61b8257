"""Intrinsic dimension from nearest-neighbour distances: TwoNN and Levina–Bickel MLE (docs/probes.md#twonn).

Both read only a few columns of the kNN graph, so with a cached graph they cost O(N) / O(N·k).
They follow scikit-dimension 0.5 exactly (``skdim.id.TwoNN``, ``skdim.id.MLE``); the
statistics are computed in float64 whatever the input dtype.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_tensor, check_k, spectral_device, to_kind
from geowidgets.geometry._knn import PrecomputedKNN, resolve_knn
from geowidgets.geometry._stats import sorted_values

__all__ = ["twonn", "mle_intrinsic_dimension"]

_TWONN_METHODS = ("linear", "mle")
_AVERAGES = ("harmonic", "mean", "median")


def _float64(t: torch.Tensor) -> torch.Tensor:
    return t.to(device=spectral_device(t), dtype=torch.float64)


def _distinct_neighbours(
    Xt: torch.Tensor, k: int, knn: Any, caller: str
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Neighbour distances [U, k] of X's distinct rows, the inverse map [N] (None without duplicates), and U.

    A zero first-neighbour distance means an exact duplicate row (the kNN engine re-scores
    distances from differences, so only identical rows are at distance 0). Then the rows are
    de-duplicated exactly (``torch.unique(dim=0)``), the neighbours are searched again among the
    distinct rows (a given graph belongs to the full X and is not used), and a warning says so:
    duplicate copies would otherwise remain neighbours of the other copy's neighbours and skew
    their distance ratios.
    """
    dist, _ = resolve_knn(Xt, k, knn, "euclidean")
    if not bool((dist[:, 0] == 0).any()):
        return _float64(dist), None, Xt.shape[0]
    unique, inverse = torch.unique(Xt, dim=0, return_inverse=True)
    n_unique = unique.shape[0]
    if n_unique < k + 1:
        raise ValueError(f"{caller}: X has only {n_unique} distinct row(s); at least {k + 1} are needed")
    warnings.warn(
        f"{caller}: X has {Xt.shape[0] - n_unique} duplicate row(s); the estimate uses its {n_unique} distinct rows",
        stacklevel=3,
    )
    dist, _ = resolve_knn(unique, k, None, "euclidean")
    return _float64(dist), inverse, n_unique


def twonn(
    X: Array,
    *,
    discard_fraction: float = 0.1,
    method: Literal["linear", "mle"] = "linear",
    knn: PrecomputedKNN | None = None,
) -> float:
    """Intrinsic dimension by TwoNN (Facco et al. 2017), exactly as scikit-dimension 0.5.

    With r₁, r₂ the first two neighbour distances (self excluded), μ_i = r₂/r₁ follows a
    Pareto(1, d) law. Duplicate rows would give r₁ = 0 and leave their copies as neighbours of
    other points, so X is de-duplicated exactly first (with a warning): the estimate is that of
    the distinct rows. Of the N ratios the n_keep = ⌊N(1 − discard_fraction)⌋ smallest are kept,
    sorted.

    * ``"linear"``: least squares through the origin of y_i = −log(1 − i/N) on x_i = log μ_(i),
      i = 1..n_keep: d = Σxy / Σx².
    * ``"mle"``: the censored maximum-likelihood estimate
      d = (n_keep − 1) / (Σ_{i ≤ n_keep} log μ_(i) + (N − n_keep) log μ_(n_keep)).

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
    discard_fraction : float
        Fraction of the largest ratios to discard, ``0 <= f < 1`` (``"linear"`` needs f > 0,
        since the empirical CDF reaches 1 at the largest ratio and −log 0 is infinite).
    method : {"linear", "mle"}
    knn : KNNGraph or (dist, idx), optional
        X's euclidean kNN graph (only its first two columns are read; not used when X has
        duplicate rows, whose distinct rows are searched again).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Bad arguments, NaN/inf, or fewer than 2 ratios left.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 3)) @ rng.normal(size=(3, 20))
    >>> round(twonn(X))
    3
    """
    if method not in _TWONN_METHODS:
        raise ValueError(f"method must be one of {_TWONN_METHODS}, got {method!r}")
    if isinstance(discard_fraction, bool) or not isinstance(discard_fraction, (int, float, np.floating)):
        raise ValueError(f"discard_fraction must be a number in [0, 1), got {discard_fraction!r}")
    if not 0 <= discard_fraction < 1:
        raise ValueError(f"discard_fraction must satisfy 0 <= discard_fraction < 1, got {discard_fraction}")
    if method == "linear" and discard_fraction == 0:
        raise ValueError(
            "method='linear' needs discard_fraction > 0: with nothing discarded the largest ratio gets "
            "y = -log(1 - N/N) = inf; use discard_fraction > 0 or method='mle'"
        )
    Xt, _ = as_tensor(X, "X", min_rows=3)
    dist, _, _ = _distinct_neighbours(Xt, 2, knn, "twonn")
    mu = dist[:, 1] / dist[:, 0]
    n = mu.shape[0]
    n_keep = int(n * (1 - discard_fraction))
    if n_keep < 2:
        raise ValueError(
            f"twonn: only {n_keep} ratio(s) left after discarding {discard_fraction:.0%}; at least 2 are needed"
        )
    log_mu = torch.log(sorted_values(mu)[:n_keep])
    if method == "mle":
        return float((n_keep - 1) / (log_mu.sum() + (n - n_keep) * log_mu[-1]))
    ranks = torch.arange(1, n_keep + 1, dtype=torch.float64, device=log_mu.device)
    y = -torch.log1p(-ranks / n)
    return float((log_mu * y).sum() / log_mu.square().sum())


def mle_intrinsic_dimension(
    X: Array,
    k: int = 20,
    *,
    unbiased: bool = False,
    average: Literal["harmonic", "mean", "median"] = "harmonic",
    pointwise: bool = False,
    knn: PrecomputedKNN | None = None,
) -> float | tuple[float, Any]:
    """Intrinsic dimension by maximum likelihood (Levina & Bickel 2005), as scikit-dimension 0.5.

    The local estimate at point i, from its k neighbour distances T_1 <= .. <= T_k (self
    excluded), is ``m_i = (k − 1) / Σ_{j<k} log(T_k / T_j)`` (``unbiased``: k − 2). Duplicate rows
    would give zero distances, so X is de-duplicated exactly first (with a warning): the average
    is over the distinct rows, and each copy of a row gets that row's pointwise estimate.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
    k : int
        Neighbours, ``2 <= k <= N − 1`` (3 with ``unbiased``).
    unbiased : bool
        Use k − 2 in the numerator.
    average : {"harmonic", "mean", "median"}
        How local values combine: ``1/mean(1/m_i)`` (skdim's default ``comb="mle"``), the
        arithmetic mean (Levina–Bickel, ``comb="mean"``) or the median.
    pointwise : bool
        Also return the local estimates [N] (X's kind), e.g. for a local-ID colouring.
    knn : KNNGraph or (dist, idx), optional
        X's euclidean kNN graph with at least k neighbours (not used when X has duplicate rows).

    Returns
    -------
    float, or (float, Tensor/ndarray [N]) if ``pointwise``

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 4)) @ rng.normal(size=(4, 30))
    >>> round(mle_intrinsic_dimension(X, k=20))
    4
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    Xt, kind = as_tensor(X, "X", min_rows=3)
    k = check_k(k, Xt.shape[0] - 1)
    k_min = 3 if unbiased else 2
    if k < k_min:
        raise ValueError(
            f"mle_intrinsic_dimension needs k >= {k_min}{' with unbiased=True' if unbiased else ''}, got {k}"
        )
    dist, inverse, _ = _distinct_neighbours(Xt, k, knn, "mle_intrinsic_dimension")
    log_ratio = torch.log(dist[:, -1:] / dist).sum(dim=1)
    numerator = (k - 2) if unbiased else (k - 1)
    local = numerator / log_ratio
    if average == "harmonic":
        value = 1.0 / (1.0 / local).mean()
    elif average == "mean":
        value = local.mean()
    else:
        value = torch.quantile(local, 0.5)
    if pointwise:
        if inverse is not None:  # every copy of a row gets that row's estimate
            local = local[inverse.to(local.device)]
        return float(value), to_kind(local.to(Xt.device, Xt.dtype), kind)
    return float(value)
