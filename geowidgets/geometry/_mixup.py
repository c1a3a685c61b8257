"""The 1-D slice between two samples, with MixUp's target and manifold intrusion (docs/probes.md#mixup-path).

Source: *MixUp as Locally Linear Out-Of-Manifold Regularization*. Along x_λ = (1−λ)a + λb the
model's probabilities are compared with MixUp's linear label mix; a point of the segment whose
nearest data carry a third label is a "manifold intrusion" (its mixed label would be wrong).
The intrusion test here is a kNN vote over given data — a cheap, inspectable stand-in for the
paper's learned discriminator **[design]**.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, check_k
from geowidgets.geometry._knn import knn as _knn
from geowidgets.geometry._plane import check_temperature, data_in_space, head_for_samples

__all__ = ["mixup_path", "MixupPath"]


@dataclass(frozen=True)
class MixupPath:
    """Predictions along the segment from a (λ=0) to b (λ=1).

    Attributes
    ----------
    lam : [S]
        λ values, ``linspace(0, 1, steps)``.
    points : [S, D]
        x_λ in the searched space (the layer's, for a hidden layer).
    logits : [S, C]
        Raw logits (a temperature change needs no forward pass: :meth:`with_temperature`).
    temperature : float
    class_a, class_b : int
        y_a and y_b: the given labels, else the model's predictions at a and b.
    target : [S, C]
        MixUp's label mix (1−λ)·onehot(y_a) + λ·onehot(y_b).
    knn_label : [S] int64 or None
        Majority label of each x_λ's k nearest ``data`` points (ties: smaller summed distance).
    intrusion : [S] bool or None
        ``knn_label ∉ {y_a, y_b}``.
    crossings : [K] float
        λ where the predicted class changes (linear interpolation of the two logits between the
        neighbouring steps).
    probs, classes, model_intrusion
        softmax(z/T) [S, C]; predicted class [S]; predicted class ∉ {y_a, y_b} [S].
    layer : str or None
    """

    lam: Any
    points: Any
    logits: Any
    temperature: float
    class_a: int
    class_b: int
    target: Any
    knn_label: Any
    intrusion: Any
    crossings: Any
    layer: str | None = None
    probs: Any = field(init=False)
    classes: Any = field(init=False)
    model_intrusion: Any = field(init=False)

    def __post_init__(self):
        z = torch.as_tensor(self.logits).double()
        numpy_out = isinstance(self.logits, np.ndarray)
        probs = torch.softmax(z / self.temperature, dim=1)
        classes = z.argmax(1)
        model_intrusion = (classes != self.class_a) & (classes != self.class_b)
        for name, value in (("probs", probs), ("classes", classes), ("model_intrusion", model_intrusion)):
            object.__setattr__(self, name, value.numpy() if numpy_out else value)

    def with_temperature(self, temperature: float) -> MixupPath:
        """The same path with probabilities at another temperature (no forward pass)."""
        return dataclasses.replace(self, temperature=check_temperature(temperature))


def _crossings(lam: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    cls = z.argmax(1)
    idx = torch.nonzero(cls[1:] != cls[:-1]).reshape(-1)
    out = []
    for i in idx.tolist():
        c0, c1 = int(cls[i]), int(cls[i + 1])
        d0 = float(z[i, c1] - z[i, c0])  # < 0 before the change
        d1 = float(z[i + 1, c1] - z[i + 1, c0])  # > 0 after it
        frac = 0.5 if d1 == d0 else min(max(-d0 / (d1 - d0), 0.0), 1.0)
        out.append(float(lam[i]) + frac * float(lam[i + 1] - lam[i]))
    return torch.tensor(out, dtype=torch.float64)


def _knn_vote(points: torch.Tensor, data: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Majority label of the k nearest data points; ties go to the smaller summed distance."""
    dist, idx = _knn(points, k, Y=data)
    neigh = labels[idx]  # [S, k]
    n_cls = int(labels.max()) + 1
    votes = torch.zeros(points.shape[0], n_cls, dtype=torch.float64)
    votes.scatter_add_(1, neigh, torch.ones_like(dist, dtype=torch.float64))
    summed = torch.zeros(points.shape[0], n_cls, dtype=torch.float64)
    summed.scatter_add_(1, neigh, dist.double())
    best = votes.max(1, keepdim=True).values
    # among the classes with the most votes pick the smallest summed distance
    score = torch.where(votes == best, -summed, torch.full_like(summed, -torch.inf))
    return score.argmax(1)


def mixup_path(
    model: torch.nn.Module,
    a: Array,
    b: Array,
    steps: int = 101,
    *,
    layer: str | None = None,
    carrier: torch.Tensor | np.ndarray | None = None,
    space: str = "auto",
    temperature: float = 1.0,
    data: Array | None = None,
    labels: Array | None = None,
    k: int = 10,
    label_a: int | None = None,
    label_b: int | None = None,
) -> MixupPath:
    """Model predictions on the segment between samples ``a`` and ``b``, with manifold intrusion.

    Parameters
    ----------
    model : nn.Module
        Returns logits ``[B, C]``.
    a, b : Tensor or ndarray
        Two samples: inputs, or layer vectors when ``layer`` is given (inputs are mapped into
        the layer; see ``space``).
    steps : int
        Number of λ values (≥ 2).
    layer : str, optional
        Interpolate in this layer's flattened output (activation patching).
    carrier : Tensor or ndarray, optional
        Input sample the model runs on for a hidden layer (default: a, when a is an input).
    space : {"auto", "input", "layer"}
        Whether a, b (and data) are inputs or layer vectors.
    temperature : float
    data : array [M, ...], optional
        Samples in the same space as a and b, for the kNN intrusion test.
    labels : array [M] of int, optional
        Class indices (as the model's outputs) of ``data``.
    k : int
        Neighbours in the vote.
    label_a, label_b : int, optional
        y_a and y_b for the MixUp target (default: the model's predictions at a and b).

    Returns
    -------
    MixupPath

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> p = mixup_path(model, torch.zeros(2), torch.ones(2), steps=5)
    >>> p.probs.shape, p.lam.tolist()
    (torch.Size([5, 2]), [0.0, 0.25, 0.5, 0.75, 1.0])
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    T = check_temperature(temperature)
    head, pts, is_numpy, space = head_for_samples(model, [a, b], layer, carrier, space, names=("a", "b"))
    lam = torch.linspace(0.0, 1.0, int(steps), dtype=torch.float64)
    points = (1 - lam)[:, None] * pts[0] + lam[:, None] * pts[1]
    z = head.logits(points.to(head.dtype)).double()
    n_cls = z.shape[1]
    ya = int(z[0].argmax()) if label_a is None else int(label_a)
    yb = int(z[-1].argmax()) if label_b is None else int(label_b)
    for name, y in (("label_a", ya), ("label_b", yb)):
        if not 0 <= y < n_cls:
            raise ValueError(f"{name}={y} is not a class index of the model's {n_cls} outputs")
    target = torch.zeros(int(steps), n_cls, dtype=torch.float64)
    target[:, ya] += 1 - lam
    target[:, yb] += lam
    knn_label = intrusion = None
    if (data is None) != (labels is None):
        raise ValueError("data and labels go together: give both for the intrusion test, or neither")
    if data is not None:
        dpts = data_in_space(head, data, pts.shape[1], layer is not None and space == "input")
        lab = torch.as_tensor(labels.detach().cpu() if isinstance(labels, torch.Tensor) else np.asarray(labels))
        if lab.ndim != 1 or lab.shape[0] != dpts.shape[0]:
            raise ValueError(f"labels must have one entry per data row ({dpts.shape[0]}), got shape {tuple(lab.shape)}")
        if lab.is_floating_point() or lab.dtype == torch.bool or (lab.numel() and int(lab.min()) < 0):
            raise ValueError("labels must be non-negative integer class indices")
        k = check_k(k, dpts.shape[0], what="data points")
        knn_label = _knn_vote(points, dpts, lab.long(), k)
        intrusion = (knn_label != ya) & (knn_label != yb)
    out = (lambda t: t.numpy()) if is_numpy else (lambda t: t)
    return MixupPath(
        lam=out(lam),
        points=out(points),
        logits=out(z),
        temperature=T,
        class_a=ya,
        class_b=yb,
        target=out(target),
        knn_label=None if knn_label is None else out(knn_label),
        intrusion=None if intrusion is None else out(intrusion),
        crossings=out(_crossings(lam, z)),
        layer=head.layer,
    )
