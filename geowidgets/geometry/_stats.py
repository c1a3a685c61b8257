"""Two-sample score statistics: AUROC (Mann–Whitney) and FPR at a fixed TPR.

Both take scores of a *positive* and a *negative* group, where a larger score means "more
positive" (e.g. a kNN deviation for failing vs trusted samples, or -energy for in- vs
out-of-distribution inputs). They run on the scores' device and return Python floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_tensor

__all__ = ["auroc", "fpr_at_tpr"]


def sorted_values(t: torch.Tensor) -> torch.Tensor:
    """Ascending sort of a 1-D tensor (numpy on the CPU, where torch's sort is many times slower).

    Examples
    --------
    >>> sorted_values(torch.tensor([3.0, 1.0, 2.0])).tolist()
    [1.0, 2.0, 3.0]
    """
    if t.device.type == "cpu":
        return torch.from_numpy(np.sort(t.numpy()))
    return torch.sort(t).values


def stable_argsort(t: torch.Tensor, descending: bool = False) -> torch.Tensor:
    """Stable argsort of a 1-D tensor: equal values keep index order (numpy on the CPU).

    Examples
    --------
    >>> stable_argsort(torch.tensor([2.0, 1.0, 2.0]), descending=True).tolist()
    [0, 2, 1]
    """
    if t.device.type == "cpu":
        a = t.numpy()
        return torch.from_numpy(np.argsort(-a if descending else a, kind="stable"))
    return torch.sort(t, descending=descending, stable=True).indices


def _scores(values: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    t, _ = as_tensor(values, name, ndim=1, min_rows=1, device=device)
    return t


def _pair(pos: Any, neg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p = _scores(pos, "pos")
    n = _scores(neg, "neg", device=p.device)
    n = n.to(p.device)
    dtype = torch.promote_types(p.dtype, n.dtype)
    if p.device.type != "mps":  # exact rank sums need float64 where it exists
        dtype = torch.float64
    return p.to(dtype), n.to(dtype)


def auroc(pos: Array, neg: Array) -> float:
    """Area under the ROC curve of ``pos`` (label 1) against ``neg`` (label 0).

    Computed as the Mann–Whitney U statistic with mid-ranks for ties,
    ``AUROC = (R_pos − n_pos(n_pos + 1)/2) / (n_pos · n_neg)``, which equals
    ``sklearn.metrics.roc_auc_score(concat([1]*n_pos, [0]*n_neg), concat(pos, neg))``: the
    probability that a random positive scores higher than a random negative, ties counting ½.

    Parameters
    ----------
    pos : Tensor or ndarray, shape [n_pos]
        Scores of the positive group (higher = more positive).
    neg : Tensor or ndarray, shape [n_neg]
        Scores of the negative group.

    Returns
    -------
    float
        AUROC in [0, 1]; 0.5 means no separation.

    Raises
    ------
    ValueError
        If a group is empty, not 1-D, or holds NaN/inf.

    Examples
    --------
    >>> auroc([3.0, 4.0], [1.0, 2.0])
    1.0
    >>> auroc([1.0, 2.0], [1.0, 2.0])
    0.5
    """
    p, n = _pair(pos, neg)
    n_pos, n_neg = p.shape[0], n.shape[0]
    values = torch.cat([p, n])
    order = stable_argsort(values)
    _, inverse, counts = torch.unique_consecutive(values[order], return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(values.dtype)  # 1-based rank of each tie group's last member
    mid_ranks = ends - (counts.to(values.dtype) - 1) / 2
    ranks = torch.empty_like(values)
    ranks[order] = mid_ranks[inverse]
    rank_sum = ranks[:n_pos].sum()
    u = rank_sum - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def fpr_at_tpr(pos: Array, neg: Array, tpr: float = 0.95) -> float:
    """False-positive rate at the highest threshold that reaches a true-positive rate of ``tpr``.

    A sample is called positive when its score is ``>= t``. ``t`` is the largest threshold with
    ``mean(pos >= t) >= tpr`` (the ``m``-th largest positive score, ``m = ⌈tpr·n_pos⌉``), and the
    result is ``mean(neg >= t)``. This is the usual OOD "FPR@95" and equals reading
    ``sklearn.metrics.roc_curve(..., drop_intermediate=False)`` at the first point with
    TPR ≥ ``tpr``.

    Parameters
    ----------
    pos : Tensor or ndarray, shape [n_pos]
        Scores of the positive group (higher = more positive).
    neg : Tensor or ndarray, shape [n_neg]
        Scores of the negative group.
    tpr : float
        Target true-positive rate, ``0 < tpr <= 1``.

    Returns
    -------
    float
        FPR in [0, 1]; lower is better.

    Examples
    --------
    >>> fpr_at_tpr([5.0, 6.0, 7.0, 8.0], [1.0, 2.0, 5.5, 9.0], tpr=0.75)
    0.25
    """
    if isinstance(tpr, bool) or not isinstance(tpr, (int, float)) or not 0 < float(tpr) <= 1:
        raise ValueError(f"tpr must be a number with 0 < tpr <= 1, got {tpr!r}")
    p, n = _pair(pos, neg)
    n_pos = p.shape[0]
    m = max(1, int(-(-float(tpr) * n_pos // 1)))  # ceil(tpr * n_pos)
    while m > 1 and (m - 1) / n_pos >= tpr:  # guard against float round-up in the product
        m -= 1
    while m < n_pos and m / n_pos < tpr:
        m += 1
    threshold = torch.kthvalue(p.cpu(), n_pos - m + 1).values.to(p.device)  # the m-th largest
    return float((n >= threshold).to(p.dtype).mean())
