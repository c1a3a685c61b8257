"""One layer's kNN deviation from a reference manifold (REMA, PROBES.md §2).

:class:`DeviationTables` holds both kNN tables of a layer (queries → reference, and reference →
reference leave-one-out) at ``k_max``, so a k slider only reads cached prefix sums. The
multi-layer profile lives in :mod:`geowidgets.geometry._deviation`, which re-exports all of this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from geowidgets.geometry._arrays import ArrayKind, as_tensor, check_k, to_kind
from geowidgets.geometry._knn import _check_metric, _normalize_rows, resolve_knn
from geowidgets.geometry._knn import knn as knn_search
from geowidgets.geometry._stats import sorted_values

__all__ = ["DeviationResult", "DeviationTables", "knn_deviation", "Statistic"]

Statistic = Literal["mean", "kth"]
_STATISTICS = ("mean", "kth")
# 1.4826 · MAD estimates the standard deviation of a normal distribution.
_MAD_TO_STD = 1.4826


def _check_statistic(statistic: str) -> str:
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {_STATISTICS}, got {statistic!r}")
    return statistic


def _reduce(dist: torch.Tensor, prefix: torch.Tensor, k: int, statistic: str) -> torch.Tensor:
    """Per-row deviation from an ascending distance table: mean of the first k or the k-th.

    ``prefix`` holds the row-wise cumulative sums of ``dist``, so the mean is O(N) for any k.
    """
    return prefix[:, k - 1] / k if statistic == "mean" else dist[:, k - 1]


def _median(t: torch.Tensor) -> torch.Tensor:
    """Median with the midpoint of the two middle values for even counts (numpy's convention)."""
    s = sorted_values(t)
    n = s.shape[0]
    return s[(n - 1) // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


@dataclass(frozen=True)
class DeviationResult:
    """Deviation of each query from the reference set at one layer (PROBES.md §2).

    Attributes
    ----------
    distance : Tensor or ndarray, shape [Nq]
        d(q): mean distance to the k nearest reference points (``statistic="kth"``: the k-th).
    z : Tensor or ndarray, shape [Nq]
        ``(d − baseline_mean) / baseline_std``.
    percentile : Tensor or ndarray, shape [Nq]
        Empirical CDF of the baseline at d(q): the fraction of baseline values ``<= d(q)``, in [0, 1].
    baseline : Tensor or ndarray, shape [Nr]
        The same statistic for each reference point against the other reference points
        (leave-one-out).
    baseline_mean : float
        Mean of the baseline (``robust=True``: its median).
    baseline_std : float
        Standard deviation of the baseline, ddof=1 (``robust=True``: 1.4826 · MAD).
    k : int
        Neighbours used.
    statistic : str
        ``"mean"`` or ``"kth"``.
    robust : bool
        Whether median / MAD were used.

    Examples
    --------
    >>> import numpy as np
    >>> R = np.random.default_rng(0).normal(size=(200, 2))
    >>> res = knn_deviation(np.array([[0.0, 0.0]]), R, k=5)
    >>> res.distance.shape, res.baseline.shape, res.k
    ((1,), (200,), 5)
    """

    distance: Any
    z: Any
    percentile: Any
    baseline: Any
    baseline_mean: float
    baseline_std: float
    k: int
    statistic: str = "mean"
    robust: bool = False


@dataclass(frozen=True, eq=False)  # equality is identity: the tables are large tensors
class DeviationTables:
    """Both kNN distance tables of one layer, computed once at ``k_max``.

    Build with :meth:`from_data`; :meth:`result` gives the :class:`DeviationResult` for any
    ``k <= k_max`` by reading cached row-wise prefix sums (O(Nq + Nr), no distances).

    Attributes
    ----------
    query_dist : Tensor, shape [Nq, k_max]
        Ascending distances from each query to its nearest reference points.
    query_idx : Tensor, shape [Nq, k_max]
        Indices of those reference points.
    reference_dist : Tensor, shape [Nr, k_max]
        Ascending distances from each reference point to the *other* reference points.
    reference_idx : Tensor, shape [Nr, k_max]
        Indices of those reference points.
    k_max : int
        Columns held.
    metric : str
        ``"euclidean"`` or ``"cosine"``.
    normalize : bool
        Whether rows were L2-normalised before the search.
    kind : ArrayKind
        Kind of the queries as given, so results come back as numpy or tensors like the input.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tables = DeviationTables.from_data(rng.normal(size=(20, 3)), rng.normal(size=(200, 3)), k_max=10)
    >>> tables.result(5).distance.shape
    (20,)
    """

    query_dist: torch.Tensor
    query_idx: torch.Tensor
    reference_dist: torch.Tensor
    reference_idx: torch.Tensor
    k_max: int
    metric: str
    normalize: bool
    kind: ArrayKind = field(repr=False)
    _query_prefix: torch.Tensor = field(init=False, repr=False, compare=False)
    _reference_prefix: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Row-wise prefix sums: a k move then costs one column read per row.
        object.__setattr__(self, "_query_prefix", torch.cumsum(self.query_dist, dim=1))
        object.__setattr__(self, "_reference_prefix", torch.cumsum(self.reference_dist, dim=1))

    @classmethod
    def from_data(
        cls,
        queries: Any,
        reference: Any,
        k_max: int = 50,
        *,
        metric: str = "euclidean",
        normalize: bool = False,
        knn: Any = None,
    ) -> DeviationTables:
        """Compute the query → reference and leave-one-out reference tables at ``k_max``.

        Parameters
        ----------
        queries : Tensor or ndarray, shape [Nq, D]
            Samples to score.
        reference : Tensor or ndarray, shape [Nr, D]
            Trusted samples (e.g. correctly classified training points); ``Nr >= k_max + 1``.
        k_max : int
            Largest k any later :meth:`result` call will ask for.
        metric : {"euclidean", "cosine"}
        normalize : bool
            L2-normalise rows of both sets first.
        knn : KNNGraph or (dist, idx), optional
            The reference set's own kNN graph (self excluded), reused as the leave-one-out
            baseline table. It must be built on the reference rows as searched (after
            ``normalize``), with the same metric and at least ``k_max`` neighbours.

        Returns
        -------
        DeviationTables

        Examples
        --------
        >>> import numpy as np
        >>> R = np.random.default_rng(0).normal(size=(100, 4))
        >>> DeviationTables.from_data(R[:10] + 5, R, k_max=8).query_dist.shape
        torch.Size([10, 8])
        """
        metric = _check_metric(metric)
        Q, kind = as_tensor(queries, "queries", min_rows=1)
        R, _ = as_tensor(reference, "reference", min_rows=2, device=Q.device)
        R = R.to(Q.device)
        if Q.shape[1] != R.shape[1]:
            raise ValueError(
                f"queries and reference must have the same number of features, got {Q.shape[1]} and {R.shape[1]}"
            )
        dtype = torch.promote_types(Q.dtype, R.dtype)
        Q, R = Q.to(dtype), R.to(dtype)
        k_max = check_k(k_max, R.shape[0] - 1, what="other reference points (leave-one-out baseline)")
        if normalize:
            Q, R = _normalize_rows(Q, "queries"), _normalize_rows(R, "reference")
        ref_dist, ref_idx = resolve_knn(R, k_max, knn, metric)
        q_dist, q_idx = knn_search(Q, k_max, Y=R, metric=metric)
        return cls(q_dist, q_idx, ref_dist, ref_idx, k_max, metric, bool(normalize), kind)

    @property
    def n_queries(self) -> int:
        """Number of query rows."""
        return int(self.query_dist.shape[0])

    @property
    def n_reference(self) -> int:
        """Number of reference rows."""
        return int(self.reference_dist.shape[0])

    def result(self, k: int, statistic: Statistic = "mean", robust: bool = False) -> DeviationResult:
        """Deviation result at ``k`` from the cached tables (no new distances).

        Parameters
        ----------
        k : int
            Neighbours, ``1 <= k <= k_max``.
        statistic : {"mean", "kth"}
            Mean of the k distances, or the k-th distance.
        robust : bool
            Standardise with median and 1.4826·MAD instead of mean and std (ddof=1).

        Returns
        -------
        DeviationResult

        Raises
        ------
        ValueError
            If k is out of range, or the baseline has zero spread (z is undefined).

        Examples
        --------
        >>> import numpy as np
        >>> R = np.random.default_rng(0).normal(size=(300, 2))
        >>> tables = DeviationTables.from_data(np.array([[0.0, 0.0], [9.0, 9.0]]), R, k_max=20)
        >>> bool(tables.result(10).z[1] > 5)
        True
        """
        k = check_k(k, self.k_max, what=f"neighbours in these tables (k_max={self.k_max})")
        statistic = _check_statistic(statistic)
        d = _reduce(self.query_dist, self._query_prefix, k, statistic)
        b = _reduce(self.reference_dist, self._reference_prefix, k, statistic)
        if robust:
            centre = _median(b)
            scale = _MAD_TO_STD * _median((b - centre).abs())
            what = "1.4826·MAD"
        else:
            centre = b.mean()
            scale = b.std(correction=1) if b.shape[0] > 1 else torch.zeros((), dtype=b.dtype, device=b.device)
            what = "standard deviation"
        if not float(scale) > 0:
            raise ValueError(
                f"the baseline's {what} is 0 (every reference point has the same k={k} {statistic} distance), "
                "so z is undefined; use more varied reference data" + (" or robust=False" if robust else "")
            )
        z = (d - centre) / scale
        sorted_b = sorted_values(b)
        percentile = torch.searchsorted(sorted_b, d.contiguous(), right=True).to(d.dtype) / b.shape[0]
        return DeviationResult(
            distance=to_kind(d, self.kind),
            z=to_kind(z, self.kind),
            percentile=to_kind(percentile, self.kind),
            baseline=to_kind(b, self.kind),
            baseline_mean=float(centre),
            baseline_std=float(scale),
            k=k,
            statistic=statistic,
            robust=bool(robust),
        )


def knn_deviation(
    queries: Any,
    reference: Any,
    k: int = 10,
    *,
    metric: str = "euclidean",
    statistic: Statistic = "mean",
    robust: bool = False,
    normalize: bool = False,
    knn: Any = None,
) -> DeviationResult:
    """Distance of each query to the reference manifold, standardised by the reference's own spread.

    d(q) is the mean distance from q to its k nearest reference points (REMA's kNN distance to
    the reference set; mean-of-k is a design choice, ``statistic="kth"`` uses the k-th). The
    baseline is the same statistic for every reference point against the rest (leave-one-out),
    giving ``z = (d − mean b)/std b`` and ``percentile`` = the fraction of b that is ``<= d``.

    For a k slider, build :class:`DeviationTables` once at ``k_max`` and call its ``result(k)``.

    Parameters
    ----------
    queries : Tensor or ndarray, shape [Nq, D]
        Samples to score (e.g. misclassified, OOD or perturbed inputs' activations).
    reference : Tensor or ndarray, shape [Nr, D]
        Trusted samples' activations at the same layer; needs ``Nr >= k + 1``.
    k : int
        Neighbours, ``1 <= k <= Nr − 1``.
    metric : {"euclidean", "cosine"}
    statistic : {"mean", "kth"}
    robust : bool
        Use median and 1.4826·MAD of the baseline instead of mean and std (ddof=1).
    normalize : bool
        L2-normalise rows of both sets first (as in deep-kNN OOD scores).
    knn : KNNGraph or (dist, idx), optional
        The reference set's kNN graph (self excluded), reused for the baseline.

    Returns
    -------
    DeviationResult
        Arrays follow the kind of ``queries`` (numpy in, numpy out).

    Raises
    ------
    ValueError
        NaN/inf, mismatched widths, ``k`` out of range, a ``knn`` graph from other data, or a
        baseline with zero spread.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> R = rng.normal(size=(500, 2))
    >>> res = knn_deviation(np.array([[0.0, 0.0], [6.0, 0.0]]), R, k=10)
    >>> bool(res.z[0] < 1 < 3 < res.z[1])
    True
    """
    tables = DeviationTables.from_data(queries, reference, k, metric=metric, normalize=normalize, knn=knn)
    return tables.result(k, statistic, robust)
