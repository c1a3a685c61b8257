"""kNN deviation from a reference manifold across layers (REMA, PROBES.md §2), and its exports.

REMA asks how far a query sample lies from the manifold of trusted samples at each layer, and
at which layer it leaves it. The expensive part is two kNN tables per layer (queries → reference
and reference → reference, leave-one-out); :class:`DeviationTables` computes them once at
``k_max`` so a k slider only re-averages and a threshold slider only re-compares z values — no
new distances. This module holds the multi-layer profile and re-exports the single-layer probe
(:mod:`geowidgets.geometry._deviation_tables`) and mean-shift deviation (§3,
:mod:`geowidgets.geometry._mean_shift`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._deviation_tables import DeviationResult, DeviationTables, Statistic, knn_deviation
from geowidgets.geometry._mean_shift import MeanShiftResult, mean_shift_deviation
from geowidgets.geometry._stats import auroc

__all__ = [
    "DeviationResult",
    "DeviationProfile",
    "DeviationTables",
    "DeviationProfileTables",
    "knn_deviation",
    "knn_deviation_profile",
    "MeanShiftResult",
    "mean_shift_deviation",
]


@dataclass(frozen=True)
class DeviationProfile:
    """Deviation of each query at every layer, with its divergence layer (PROBES.md §2).

    Attributes
    ----------
    layers : list
        Layer names in capture order.
    distance, z, percentile : Tensor or ndarray, shape [L, Nq]
        Per-layer :class:`DeviationResult` fields stacked.
    baseline_mean, baseline_std : Tensor or ndarray, shape [L]
    divergence_layer : Tensor or ndarray, shape [Nq], int64
        Index (into ``layers``) of the first layer with ``z > threshold``, else −1.
    auroc : Tensor or ndarray, shape [L]
        Mann–Whitney AUROC of the queries' distances against the baseline distances per layer
        (1 = every query lies farther than every reference point).
    threshold : float
        z threshold used for ``divergence_layer``.
    k : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> R = {"a": rng.normal(size=(100, 3)), "b": rng.normal(size=(100, 3))}
    >>> Q = {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=(4, 3)) + 9}
    >>> prof = knn_deviation_profile(Q, R, k=5)
    >>> prof.layers, prof.z.shape, bool(prof.auroc[1] == 1.0)
    (['a', 'b'], (2, 4), True)
    """

    layers: list
    distance: Any
    z: Any
    percentile: Any
    baseline_mean: Any
    baseline_std: Any
    divergence_layer: Any
    auroc: Any
    threshold: float
    k: int

    def with_threshold(self, threshold: float) -> DeviationProfile:
        """The same profile re-thresholded (O(L·Nq), no distances).

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> R = {"a": rng.normal(size=(200, 3)), "b": rng.normal(size=(200, 3))}
        >>> Q = {"a": rng.normal(size=(5, 3)), "b": rng.normal(size=(5, 3)) + 10}
        >>> knn_deviation_profile(Q, R, k=5).with_threshold(1e6).divergence_layer.tolist()
        [-1, -1, -1, -1, -1]
        """
        threshold = _check_threshold(threshold)
        z = torch.as_tensor(self.z)
        return replace(self, divergence_layer=_divergence(z, threshold, self.divergence_layer), threshold=threshold)


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)):
        raise ValueError(f"threshold must be a real number, got {threshold!r}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    return float(threshold)


def _divergence(z: torch.Tensor, threshold: float, like: Any) -> Any:
    """First row index (layer) with z > threshold per column, −1 if none; same kind as ``like``."""
    above = z > threshold  # [L, Nq]
    first = torch.argmax(above.to(torch.uint8), dim=0)  # first True (argmax returns the first max)
    first = torch.where(above.any(dim=0), first, torch.full_like(first, -1)).to(torch.int64)
    return first.cpu().numpy() if isinstance(like, np.ndarray) else first


def _as_layer_dict(data: Any, name: str) -> dict:
    if isinstance(data, Mapping):
        out = dict(data.items())
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        out = dict(enumerate(data))
    else:
        raise ValueError(f"{name} must be a mapping layer -> [N, D] array (e.g. Activations) or a list of arrays")
    if not out:
        raise ValueError(f"{name} holds no layers")
    return out


@dataclass(frozen=True, eq=False)  # equality is identity: the tables are large tensors
class DeviationProfileTables:
    """Per-layer :class:`DeviationTables`, so k and threshold moves over a whole profile are cheap.

    Attributes
    ----------
    layers : list
        Layer names in order.
    tables : dict
        Layer -> :class:`DeviationTables` at ``k_max``.
    k_max : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> R = {"a": rng.normal(size=(100, 3)), "b": rng.normal(size=(100, 3))}
    >>> Q = {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=(4, 3)) + 9}
    >>> cache = DeviationProfileTables.from_data(Q, R, k_max=20)
    >>> cache.profile(10, threshold=2.0).divergence_layer.tolist()
    [1, 1, 1, 1]
    """

    layers: list
    tables: dict
    k_max: int

    @classmethod
    def from_data(
        cls,
        queries_by_layer: Any,
        reference_by_layer: Any,
        k_max: int = 50,
        *,
        metric: str = "euclidean",
        normalize: bool = False,
        knn: Mapping | None = None,
    ) -> DeviationProfileTables:
        """Build every layer's tables at ``k_max`` (arguments as in :func:`knn_deviation_profile`).

        Examples
        --------
        >>> import numpy as np
        >>> R = [np.random.default_rng(i).normal(size=(50, 2)) for i in range(2)]
        >>> DeviationProfileTables.from_data([r[:3] for r in R], R, k_max=10).layers
        [0, 1]
        """
        queries = _as_layer_dict(queries_by_layer, "queries_by_layer")
        reference = _as_layer_dict(reference_by_layer, "reference_by_layer")
        if list(queries) != list(reference):
            raise KeyError(
                f"queries_by_layer and reference_by_layer must have the same layers in the same order, "
                f"got {list(queries)} and {list(reference)}"
            )
        if knn is not None and not isinstance(knn, Mapping):
            raise ValueError("knn for a profile must be a mapping layer -> KNNGraph of that layer's reference")
        tables = {}
        n_queries = None
        for layer in queries:
            try:
                t = DeviationTables.from_data(
                    queries[layer],
                    reference[layer],
                    k_max,
                    metric=metric,
                    normalize=normalize,
                    knn=None if knn is None else knn.get(layer),
                )
            except ValueError as exc:
                raise ValueError(f"layer {layer!r}: {exc}") from exc
            if n_queries is not None and t.n_queries != n_queries:
                raise ValueError(f"layer {layer!r} has {t.n_queries} queries but earlier layers have {n_queries}")
            n_queries = t.n_queries
            tables[layer] = t
        return cls(list(queries), tables, int(k_max))

    def profile(
        self, k: int, threshold: float = 2.0, statistic: Statistic = "mean", robust: bool = False
    ) -> DeviationProfile:
        """The :class:`DeviationProfile` at ``k`` and ``threshold`` from the cached tables.

        Examples
        --------
        >>> import numpy as np
        >>> R = [np.random.default_rng(i).normal(size=(50, 2)) for i in range(2)]
        >>> cache = DeviationProfileTables.from_data([r[:3] for r in R], R, k_max=10)
        >>> cache.profile(4, threshold=1e9).divergence_layer.tolist()
        [-1, -1, -1]
        """
        threshold = _check_threshold(threshold)
        results = [self.tables[layer].result(k, statistic, robust) for layer in self.layers]
        first = self.tables[self.layers[0]]

        def stack(field_name: str) -> torch.Tensor:
            return torch.stack([torch.as_tensor(getattr(r, field_name)).cpu() for r in results])

        distance, z, percentile = stack("distance"), stack("z"), stack("percentile")
        dtype = distance.dtype
        aurocs = torch.tensor([auroc(r.distance, r.baseline) for r in results], dtype=dtype)
        means = torch.tensor([r.baseline_mean for r in results], dtype=dtype)
        stds = torch.tensor([r.baseline_std for r in results], dtype=dtype)
        like = np.empty(0) if first.kind.is_numpy else torch.empty(0)
        divergence = _divergence(z, threshold, like)
        out = (distance, z, percentile, means, stds, aurocs)
        if first.kind.is_numpy:
            out = tuple(t.numpy() for t in out)
        else:
            out = tuple(t.to(first.kind.device) for t in out)
            divergence = divergence.to(first.kind.device)
        distance, z, percentile, means, stds, aurocs = out
        return DeviationProfile(
            layers=list(self.layers),
            distance=distance,
            z=z,
            percentile=percentile,
            baseline_mean=means,
            baseline_std=stds,
            divergence_layer=divergence,
            auroc=aurocs,
            threshold=threshold,
            k=results[0].k,
        )


def knn_deviation_profile(
    queries_by_layer: Any,
    reference_by_layer: Any,
    k: int = 10,
    threshold: float = 2.0,
    *,
    metric: str = "euclidean",
    statistic: Statistic = "mean",
    robust: bool = False,
    normalize: bool = False,
    knn: Mapping | None = None,
) -> DeviationProfile:
    """kNN deviation of the queries at every layer, the layer where each leaves the reference
    manifold, and how well each layer separates queries from reference points.

    Parameters
    ----------
    queries_by_layer : Mapping layer -> [Nq, D_l] (e.g. Activations) or list of arrays
        Query activations; the mapping's order is the capture order.
    reference_by_layer : Mapping with the same layers, or list
        Reference (trusted) activations, ``Nr >= k + 1`` rows per layer.
    k : int
    threshold : float
        A query's divergence layer is the first layer with ``z > threshold`` (−1 if none).
    metric, statistic, robust, normalize
        As in :func:`knn_deviation`.
    knn : Mapping layer -> KNNGraph, optional
        Reference graphs to reuse per layer (missing layers are computed).

    Returns
    -------
    DeviationProfile
        Arrays follow the kind of the first layer's queries.

    Raises
    ------
    KeyError
        If the two inputs hold different layers.
    ValueError
        As :func:`knn_deviation`, naming the layer.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> R = [rng.normal(size=(300, 4)) for _ in range(3)]
    >>> Q = [rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) + 8, rng.normal(size=(6, 4)) + 8]
    >>> prof = knn_deviation_profile(Q, R, k=10)
    >>> prof.divergence_layer.tolist()
    [1, 1, 1, 1, 1, 1]
    """
    cache = DeviationProfileTables.from_data(
        queries_by_layer, reference_by_layer, k, metric=metric, normalize=normalize, knn=knn
    )
    return cache.profile(k, threshold, statistic, robust)
