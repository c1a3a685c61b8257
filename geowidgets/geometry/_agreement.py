"""Neighbourhood label agreement, Thornton's separability index at k (docs/probes.md#knn-label-agreement)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_labels, as_tensor, check_k, to_kind
from geowidgets.geometry._knn import PrecomputedKNN, _check_metric, resolve_knn

__all__ = ["LabelAgreement", "knn_label_agreement"]


@dataclass(frozen=True)
class LabelAgreement:
    """kNN label agreement (docs/probes.md#knn-label-agreement).

    Attributes
    ----------
    mean : float
        Mean agreement over all points (k = 1: Thornton's separability index).
    per_point : Tensor or ndarray, shape [N]
        a_i: (weighted) fraction of i's k neighbours that share its label.
    per_class : Tensor or ndarray, shape [C]
        Mean of a_i over the points of each class, in the order of ``classes``.
    effective_neighbors : Tensor or ndarray, shape [N], or None
        ``exp(entropy(w_i))`` of the neighbour weights when a temperature is given (k for the
        hard vote, 1 for a single dominant neighbour).
    classes : numpy.ndarray
        The original label values, sorted.
    k : int
    temperature : float or None

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(60, 2))
    >>> res = knn_label_agreement(X, np.arange(60) % 3, k=5, temperature=0.5)
    >>> res.per_point.shape, res.per_class.shape, res.classes.tolist()
    ((60,), (3,), [0, 1, 2])
    """

    mean: float
    per_point: Any
    per_class: Any
    effective_neighbors: Any
    classes: np.ndarray
    k: int
    temperature: float | None


def _similarity(dist: torch.Tensor, metric: str) -> torch.Tensor:
    """Neighbour similarity for the soft vote: cosine similarity, or −d²/2 for euclidean.

    For unit-norm rows −‖x − y‖²/2 = cos(x, y) − 1, and the softmax ignores the constant, so on
    L2-normalised features both metrics give the contrastive-loss weights exactly.
    """
    return 1.0 - dist if metric == "cosine" else -0.5 * dist.square()


def knn_label_agreement(
    X: Array,
    labels: Array,
    k: int = 10,
    *,
    temperature: float | None = None,
    metric: str = "euclidean",
    knn: PrecomputedKNN | None = None,
) -> LabelAgreement:
    """How much each point's neighbourhood shares its label (Thornton@k, soft with a temperature).

    Hard vote (``temperature=None``): ``a_i = (1/k) Σ_{j ∈ N_k(i)} 1[y_j = y_i]``, self excluded.
    Soft vote: ``a_i = Σ_j w_ij 1[y_j = y_i]`` with ``w_ij = softmax_j(s_ij / τ)`` over the k
    neighbours, after the neighbour weighting in *Understanding the Behaviour of Contrastive
    Loss* [design]. ``s_ij`` is the cosine similarity for ``metric="cosine"`` and ``−d_ij²/2``
    for ``"euclidean"`` (the same weights on unit-norm rows, and ordered like the neighbours
    in both cases), so τ → ∞ gives the hard vote and τ → 0 gives the 1-NN vote.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
    labels : array-like of int, shape [N]
        Any integer labels; mapped to 0..C−1 in sorted order.
    k : int
        Neighbours, ``1 <= k <= N − 1``.
    temperature : float, optional
        τ > 0 for the soft vote; None for the hard vote.
    metric : {"euclidean", "cosine"}
    knn : KNNGraph or (dist, idx), optional
        X's kNN graph with the same metric.

    Returns
    -------
    LabelAgreement
        Arrays in X's kind.

    Raises
    ------
    ValueError
        Label length mismatch, ``temperature <= 0``, k out of range, NaN/inf, or a graph from
        other data.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.r_[np.zeros((5, 2)), np.full((5, 2), 10.0)] + np.arange(10)[:, None] * 0.01
    >>> knn_label_agreement(X, [0] * 5 + [1] * 5, k=3).mean
    1.0
    """
    metric = _check_metric(metric)
    Xt, kind = as_tensor(X, "X", min_rows=2)
    codes, classes = as_labels(labels, Xt.shape[0])
    k = check_k(k, Xt.shape[0] - 1)
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating, np.integer)):
            raise ValueError(f"temperature must be a positive number or None, got {temperature!r}")
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
        temperature = float(temperature)
    dist, idx = resolve_knn(Xt, k, knn, metric)
    codes = codes.to(Xt.device)
    same = (codes[idx] == codes.unsqueeze(1)).to(Xt.dtype)  # [N, k]
    effective = None
    if temperature is None:
        per_point = same.mean(dim=1)
    else:
        logits = _similarity(dist, metric) / temperature
        log_w = torch.log_softmax(logits, dim=1)
        w = log_w.exp()
        per_point = (w * same).sum(dim=1)
        entropy = -(w * torch.where(w > 0, log_w, torch.zeros_like(log_w))).sum(dim=1)
        effective = to_kind(entropy.exp(), kind)
    n_classes = len(classes)
    sums = torch.zeros(n_classes, dtype=Xt.dtype, device=Xt.device).index_add_(0, codes, per_point)
    counts = torch.bincount(codes, minlength=n_classes).to(Xt.dtype)
    return LabelAgreement(
        mean=float(per_point.mean()),
        per_point=to_kind(per_point, kind),
        per_class=to_kind(sums / counts, kind),
        effective_neighbors=effective,
        classes=classes,
        k=k,
        temperature=temperature,
    )
