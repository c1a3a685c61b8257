"""kNN deviation from a reference manifold across layers (REMA, docs/probes.md#knn-deviation), and its exports.

REMA asks how far a query sample lies from the manifold of trusted samples at each layer, and
at which layer it leaves it. The expensive part is two kNN tables per layer (queries → reference
and reference → reference, leave-one-out); :class:`DeviationTables` computes them once at
``k_max`` so a k slider only re-averages and a threshold slider only re-compares z values — no
new distances. This module holds the multi-layer profile and re-exports the single-layer probe
(:mod:`geowidgets.geometry._deviation_tables`) and mean-shift deviation (docs/probes.md#mean-shift-deviation,
:mod:`geowidgets.geometry._mean_shift`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array
from geowidgets.geometry._deviation_tables import DeviationTables, KNNDeviation, Statistic, knn_deviation
from geowidgets.geometry._mean_shift import MeanShiftDeviation, mean_shift_deviation
from geowidgets.geometry._stats import auroc

__all__ = [
    "KNNDeviation",
    "DeviationProfile",
    "DeviationTables",
    "DeviationProfileTables",
    "knn_deviation",
    "knn_deviation_profile",
    "divergence_layers",
    "MeanShiftDeviation",
    "mean_shift_deviation",
]


@dataclass(frozen=True)
class DeviationProfile:
    """Deviation of each query at every layer, with its divergence layer (docs/probes.md#divergence-layer).

    Attributes
    ----------
    layers : list
        Layer names in capture order.
    distance, z, percentile : Tensor or ndarray, shape [L, Nq]
        Per-layer :class:`KNNDeviation` fields stacked (``percentile`` is None when the
        profile was asked for ``percentile=False``).
    baseline_mean, baseline_std : Tensor or ndarray, shape [L]
    divergence_layer : Tensor or ndarray, shape [Nq], int64
        Index (into ``layers``) of the first layer with ``z > threshold``, else −1
        (:func:`divergence_layers`).
    auroc : Tensor or ndarray, shape [L]
        Mann–Whitney AUROC of the queries' distances (or the chosen ``positives``) against the
        baseline distances per layer (1 = every query lies farther than every reference point).
    threshold : float
        z threshold used for ``divergence_layer``.
    k : int
    undefined : dict of layer to str
        Layers where z is undefined (NaN for every sample: every reference point lies at the same
        distance from its neighbours, as in a constant layer), with the reason. Such a layer is
        never a divergence layer.

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
    undefined: dict = field(default_factory=dict)

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
        return replace(self, divergence_layer=divergence_layers(self.z, threshold), threshold=threshold)


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)):
        raise ValueError(f"threshold must be a real number, got {threshold!r}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    return float(threshold)


def divergence_layers(z: Array, threshold: float) -> Any:
    """Each sample's divergence layer: the first row (layer) with ``z > threshold``, −1 if none.

    The one computation of divergence layers in geowidgets (profiles, the session and the
    deviation map use it).

    Parameters
    ----------
    z : Tensor or ndarray, shape [L, N]
        z-scores of N samples at L layers, in layer order.
    threshold : float

    Returns
    -------
    Tensor or ndarray, shape [N], int64
        Same kind as ``z`` (a tensor on its device).

    Examples
    --------
    >>> import numpy as np
    >>> divergence_layers(np.array([[0.0, 3.0, 0.0], [2.5, 0.0, 0.0]]), 2.0).tolist()
    [1, 0, -1]
    """
    threshold = _check_threshold(threshold)
    arr = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    if arr.ndim != 2:
        raise ValueError(f"z must have shape [L, N] (layers x samples), got {arr.shape}")
    above = arr > threshold
    first = np.where(above.any(0), above.argmax(0), -1).astype(np.int64) if arr.shape[0] else np.full(arr.shape[1], -1)
    return torch.from_numpy(first).to(z.device) if isinstance(z, torch.Tensor) else first


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
        self,
        k: int,
        threshold: float = 2.0,
        statistic: Statistic = "mean",
        robust: bool = False,
        *,
        positives: Array | None = None,
        percentile: bool = True,
    ) -> DeviationProfile:
        """The :class:`DeviationProfile` at ``k`` and ``threshold`` from the cached tables.

        Parameters
        ----------
        k, threshold, statistic, robust
            As in :func:`knn_deviation_profile`.
        positives : array-like of bool, shape [Nq], optional
            The rows whose distances the per-layer AUROC compares with the baseline (e.g. the
            misclassified samples). Default: every query row (for tables built with
            :meth:`DeviationTables.from_samples`, every row outside the reference). No positive
            row gives NaN.
        percentile : bool
            Compute the percentiles (a sort per layer); False leaves ``percentile`` None.

        Examples
        --------
        >>> import numpy as np
        >>> R = [np.random.default_rng(i).normal(size=(50, 2)) for i in range(2)]
        >>> cache = DeviationProfileTables.from_data([r[:3] for r in R], R, k_max=10)
        >>> cache.profile(4, threshold=1e9).divergence_layer.tolist()
        [-1, -1, -1]
        """
        threshold = _check_threshold(threshold)
        results = [
            self.tables[layer].result(k, statistic, robust, percentile=percentile, zero_spread="nan")
            for layer in self.layers
        ]
        undefined = {
            layer: f"every reference point has the same k={k} distance to its neighbours (a constant layer?), "
            "so z is undefined"
            for layer, r in zip(self.layers, results)
            if not r.baseline_std > 0
        }
        first = self.tables[self.layers[0]]
        if positives is None:
            mask = first.reference_mask
            chosen = None if mask is None else ~mask
        else:
            chosen = positives.detach().cpu().numpy() if isinstance(positives, torch.Tensor) else np.asarray(positives)
            if chosen.dtype != bool or chosen.shape != (first.n_rows,):
                raise ValueError(
                    f"positives must be a bool mask of shape ({first.n_rows},), got {chosen.dtype} {chosen.shape}"
                )

        def numpy(x: Any) -> np.ndarray:
            return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

        def layer_auroc(r: KNNDeviation) -> float:
            d = numpy(r.distance)
            d = d if chosen is None else d[chosen]
            return float(auroc(d, numpy(r.baseline))) if d.size else float("nan")

        distance = np.stack([numpy(r.distance) for r in results])
        z = np.stack([numpy(r.z) for r in results])
        pct = np.stack([numpy(r.percentile) for r in results]) if percentile else None
        dtype = distance.dtype
        out = {
            "distance": distance,
            "z": z,
            "percentile": pct,
            "baseline_mean": np.array([r.baseline_mean for r in results], dtype=dtype),
            "baseline_std": np.array([r.baseline_std for r in results], dtype=dtype),
            "auroc": np.array([layer_auroc(r) for r in results], dtype=dtype),
            "divergence_layer": divergence_layers(z, threshold),
        }
        if not first.kind.is_numpy:
            out = {name: None if v is None else torch.from_numpy(v).to(first.kind.device) for name, v in out.items()}
        return DeviationProfile(
            layers=list(self.layers), threshold=threshold, k=results[0].k, undefined=undefined, **out
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
