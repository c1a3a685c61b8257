"""One layer's kNN deviation from a reference manifold (REMA, docs/probes.md#knn-deviation).

:class:`DeviationTables` holds both kNN tables of a layer (queries → reference, and reference →
reference leave-one-out) at ``k_max``, so a k slider only reads cached prefix sums. The
multi-layer profile lives in :mod:`geowidgets.geometry._deviation`, which re-exports all of this.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, cast

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, ArrayKind, as_tensor, check_k, unit_rows
from geowidgets.geometry._knn import PrecomputedKNN, _check_metric, resolve_knn
from geowidgets.geometry._knn import knn as knn_search
from geowidgets.geometry._plane import _check_finite

__all__ = ["KNNDeviation", "DeviationTables", "knn_deviation", "Statistic"]

Statistic = Literal["mean", "kth"]
_STATISTICS = ("mean", "kth")
# 1.4826 · MAD estimates the standard deviation of a normal distribution.
_MAD_TO_STD = 1.4826
# DeviationTables.from_graph reads the kNN graph a block of rows at a time: about this much int64 scratch per array.
_TABLE_BYTES = 2 * 2**20
# The exact search of the rows the graph leaves short takes blocks of queries of about this many
# bytes of candidate distances (the search's default is 256 MB; the result does not depend on it).
_SEARCH_BYTES = 32 * 2**20


def _check_statistic(statistic: str) -> Statistic:
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {_STATISTICS}, got {statistic!r}")
    return cast(Statistic, statistic)


@dataclass(frozen=True)
class KNNDeviation:
    """Deviation of each query from the reference set at one layer (docs/probes.md#knn-deviation).

    Attributes
    ----------
    distance : Tensor or ndarray, shape [Nq]
        d(q): mean distance to the k nearest reference points (``statistic="kth"``: the k-th).
    z : Tensor or ndarray, shape [Nq]
        ``(d − baseline_mean) / baseline_std``.
    percentile : Tensor or ndarray, shape [Nq], or None
        Empirical CDF of the baseline at d(q): the fraction of baseline values ``<= d(q)``, in [0, 1]
        (None when :meth:`DeviationTables.result` was asked for ``percentile=False``).
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

    Build with :meth:`from_data` (queries against a reference set) or :meth:`from_samples` (every
    row of a data set against its trusted rows); :meth:`result` gives the
    :class:`KNNDeviation` for any ``k <= k_max`` by reading cached prefix sums: one contiguous
    row of ``[k_max, N]`` running sums per k, so a k move is O(Nq + Nr) single-threaded numpy
    passes and no distances. This is the one k-slicing of deviation tables in geowidgets.

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
    reference_mask : numpy.ndarray or None
        bool ``[N]`` for tables built by :meth:`from_samples`: which rows of the data set are the
        reference (their scores are the leave-one-out baseline); results then cover all N rows.

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
    reference_mask: np.ndarray | None = field(default=None, repr=False)

    # Distances as numpy (a view for CPU tables) and their running sums over the neighbours,
    # transposed to [k_max, N] in the distances' dtype (summed in float64), so one k is one
    # contiguous row. Built on the first result() call. numpy, not torch: on a busy CPU small
    # multi-threaded torch ops cost 10-100x more than these single passes.
    @cached_property
    def _query_table(self) -> tuple[np.ndarray, np.ndarray]:
        return _table_and_prefix(self.query_dist)

    @cached_property
    def _reference_table(self) -> tuple[np.ndarray, np.ndarray]:
        return _table_and_prefix(self.reference_dist)

    @classmethod
    def from_data(
        cls,
        queries: Array,
        reference: Array,
        k_max: int = 50,
        *,
        metric: str = "euclidean",
        normalize: bool = False,
        knn: PrecomputedKNN | None = None,
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
            Q, R = unit_rows(Q, "queries"), unit_rows(R, "reference")
        ref_dist, ref_idx = resolve_knn(R, k_max, knn, metric)
        q_dist, q_idx = knn_search(Q, k_max, Y=R, metric=metric)
        return cls(q_dist, q_idx, ref_dist, ref_idx, k_max, metric, bool(normalize), kind)

    @classmethod
    def from_samples(
        cls,
        X: Array,
        reference: Array,
        k_max: int = 50,
        *,
        metric: str = "euclidean",
        normalize: bool = False,
        knn: PrecomputedKNN | None = None,
    ) -> DeviationTables:
        """Tables that score every row of ``X`` against the rows marked as the reference.

        Rows outside the reference are the queries (searched against the reference rows); the
        reference rows are scored by their leave-one-out baseline, so no row counts itself as a
        neighbour. :meth:`result` then returns arrays over all N rows, in ``X``'s order.

        Parameters
        ----------
        X : Tensor or ndarray, shape [N, D]
            Every sample (e.g. one layer's activations of a whole data set).
        reference : array-like of bool, shape [N]
            The trusted rows (e.g. correctly classified training samples); at least
            ``k_max + 1`` of them.
        k_max, metric, normalize, knn
            As in :meth:`from_data` (``knn`` is the graph of the reference rows).

        Returns
        -------
        DeviationTables
            With ``reference_mask`` set.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(100, 3))
        >>> X[0] += 20  # an outlier outside the reference
        >>> mask = np.arange(100) >= 1
        >>> res = DeviationTables.from_samples(X, mask, k_max=10).result(5)
        >>> res.z.shape, bool(res.z[0] > 5)
        ((100,), True)
        """
        mask = reference.detach().cpu().numpy() if isinstance(reference, torch.Tensor) else np.asarray(reference)
        data: torch.Tensor | np.ndarray = X if isinstance(X, torch.Tensor) else np.asarray(X)
        n = int(data.shape[0]) if data.ndim else 0
        if mask.dtype != bool or mask.shape != (n,):
            raise ValueError(f"reference must be a bool mask of shape ({n},), got {mask.dtype} {mask.shape}")
        pick = torch.from_numpy(mask) if isinstance(data, torch.Tensor) else mask
        R = data[pick]
        has_queries = not bool(mask.all())
        # With no rows outside the reference, one reference row stands in as the query (to fix the
        # kind and dtype) and its row is dropped below.
        tables = cls.from_data(
            data[~pick] if has_queries else R[:1], R, k_max, metric=metric, normalize=normalize, knn=knn
        )
        q_dist, q_idx = (
            (tables.query_dist, tables.query_idx) if has_queries else (tables.query_dist[:0], tables.query_idx[:0])
        )
        fields = {f.name: getattr(tables, f.name) for f in dataclasses.fields(tables)}
        fields.update(query_dist=q_dist, query_idx=q_idx, reference_mask=mask.copy())
        return cls(**fields)

    @classmethod
    def from_graph(
        cls,
        X: Array,
        reference: Array,
        graph: Any,
        k_max: int = 50,
        *,
        metric: str = "euclidean",
    ) -> DeviationTables:
        """The :meth:`from_samples` tables read off the kNN graph of all of ``X`` (no second search).

        A row's k nearest *reference* rows are its nearest rows with the non-reference ones removed
        (and, for a reference row, itself, which the graph already excludes). So the graph's
        neighbours, filtered to the reference and kept in order, are the tables' rows. A graph
        built with enough extra neighbours (more than ``k_max`` plus the non-reference rows among
        a row's neighbours) answers every row; rows left with fewer than ``k_max`` reference
        neighbours are completed by an exact search against the reference rows only (for a
        reference row: ``k_max + 1`` neighbours with itself removed). Ties keep the lower index,
        as in :func:`~geowidgets.geometry.knn`, so an exact graph gives tables equal to
        :meth:`from_samples` (indices and distances).

        Memory: the O(N·k_max) tables, written in place, plus O(B·k_graph) scratch for a block of B
        rows of the graph at a time (about ``_TABLE_BYTES`` per array). Rows that fall short are
        searched among all of ``X`` (for ``k_max`` plus the number of non-reference rows, while that
        takes less memory than a copy of the reference rows), else against an ``[Nr, D]`` copy of
        the reference rows, in blocks of queries of about 32 MB of distances; the search itself
        also needs the copies :func:`~geowidgets.geometry.knn` makes.

        Parameters
        ----------
        X : Tensor or ndarray, shape [N, D]
            Every sample (the data the graph was built on).
        reference : array-like of bool, shape [N]
            The trusted rows; at least ``k_max + 1`` of them.
        graph : KNNGraph or (dist, idx)
            The kNN graph of ``X`` (self excluded) with the same metric, ascending; any number of
            neighbours (more than ``k_max`` leaves fewer rows to the fallback search).
        k_max : int
            Columns of the tables.
        metric : {"euclidean", "cosine"}

        Returns
        -------
        DeviationTables
            With ``reference_mask`` set; ``query_idx`` and ``reference_idx`` index the reference
            rows (in ``X``'s order), as for :meth:`from_samples`.

        Raises
        ------
        ValueError
            A mask that is not bool ``[N]``, too few reference rows, or a graph from other data or
            another metric.

        Examples
        --------
        >>> import numpy as np
        >>> from geowidgets.geometry import knn_graph
        >>> X = np.random.default_rng(0).normal(size=(200, 3))
        >>> mask = np.arange(200) % 10 != 0
        >>> tables = DeviationTables.from_graph(X, mask, knn_graph(X, k_max=15), k_max=10)
        >>> direct = DeviationTables.from_samples(X, mask, k_max=10)
        >>> bool((tables.query_idx == direct.query_idx).all() and (tables.query_dist == direct.query_dist).all())
        True
        """
        metric = _check_metric(metric)
        Xt, kind = as_tensor(X, "X", min_rows=2, allow_nonfinite=True)
        _check_finite(Xt, "X", count=True)  # by row blocks: no [N, D] bool mask
        n = int(Xt.shape[0])
        mask = reference.detach().cpu().numpy() if isinstance(reference, torch.Tensor) else np.asarray(reference)
        if mask.dtype != bool or mask.shape != (n,):
            raise ValueError(f"reference must be a bool mask of shape ({n},), got {mask.dtype} {mask.shape}")
        n_ref = int(mask.sum())
        k_max = check_k(k_max, n_ref - 1, what="other reference points (leave-one-out baseline)")
        k_graph = graph.k_max if hasattr(graph, "k_max") else int(np.shape(graph[0])[1])
        g_dist, g_idx = resolve_knn(Xt, k_graph, graph, metric)
        idx = g_idx.cpu().numpy()
        dist = g_dist.cpu()
        position = np.full(n, -1, dtype=np.int64)
        position[mask] = np.arange(n_ref)
        # Each row goes straight to its place in the query table or the reference table.
        slot = np.empty(n, dtype=np.int64)
        slot[~mask] = np.arange(n - n_ref)
        slot[mask] = np.arange(n_ref)
        tables = {
            is_ref: (torch.empty((size, k_max), dtype=Xt.dtype), torch.empty((size, k_max), dtype=torch.int64))
            for is_ref, size in ((False, n - n_ref), (True, n_ref))
        }

        def put(rows: np.ndarray, d: torch.Tensor, i: torch.Tensor) -> None:
            """Write the tables' rows for the samples ``rows`` (ascending)."""
            for is_ref, (out_dist, out_idx) in tables.items():
                sel = mask[rows] == is_ref
                if sel.any():
                    at, pick = torch.from_numpy(slot[rows[sel]]), torch.from_numpy(np.flatnonzero(sel))
                    out_dist[at], out_idx[at] = d[pick], i[pick]

        # The graph is read a block of rows at a time: scratch O(block · k_graph), not O(N · k_graph).
        step = max(1, _TABLE_BYTES // (8 * max(1, k_graph)))
        short_blocks = []
        for a in range(0, n, step):
            block_idx = idx[a : a + step]
            keep = mask[block_idx]  # [B, k_graph]: neighbour is a reference row
            rank = np.cumsum(keep, axis=1, dtype=np.int64)
            enough = rank[:, -1] >= k_max
            rows = np.flatnonzero(enough)
            if rows.size:
                # Each of these rows has exactly k_max neighbours with keep & rank <= k_max, in order.
                cols = np.nonzero((keep & (rank <= k_max))[rows])[1].reshape(rows.size, k_max)
                picked = block_idx[rows[:, None], cols]
                d = dist[torch.from_numpy(rows + a)[:, None], torch.from_numpy(cols)].to(Xt.dtype)
                put(rows + a, d, torch.from_numpy(position[picked]))
            short_blocks.append(np.flatnonzero(~enough) + a)
        short = np.concatenate(short_blocks)
        reference_rows: list[torch.Tensor] = []  # the reference rows of X, copied only when needed

        def nearest_reference(rows: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
            """``knn_search(X[rows], k, Y=R)`` for the reference rows R, as CPU tensors.

            While that costs less memory than a copy of the reference rows, they are searched
            among all of X for ``k`` plus every non-reference row neighbours (``[rows, k + N − Nr]``)
            and the reference ones kept in order: the same neighbours and distances (exact float64
            distances, ties to the lower index, and ``position`` keeps the order of X), without an
            ``[Nr, D]`` copy of the reference rows; otherwise that copy is searched. Either search
            takes blocks of queries of about ``_SEARCH_BYTES``.
            """
            rows_t = torch.from_numpy(rows).to(Xt.device)
            wide = min(n, k + n - n_ref)
            n_features = int(Xt.shape[1])
            # Searching all of X costs the wide result (about 24 bytes a neighbour, candidates included)
            # and the search's own copies of the N − Nr extra rows; the copy of the reference rows, 4·Nr·D.
            if rows.size * wide * 24 + 8 * (n - n_ref) * n_features <= 4 * n_ref * n_features:
                chunk = max(1, _SEARCH_BYTES // (4 * n))
                d, i = knn_search(Xt[rows_t], wide, Y=Xt, metric=metric, chunk_size=chunk)
                i_np = i.cpu().numpy()
                keep = mask[i_np]
                cols = np.nonzero(keep & (np.cumsum(keep, axis=1, dtype=np.int64) <= k))[1].reshape(rows.size, k)
                picked = np.take_along_axis(i_np, cols, axis=1)
                return d.cpu()[torch.arange(rows.size)[:, None], torch.from_numpy(cols)], torch.from_numpy(
                    position[picked]
                )
            if not reference_rows:
                reference_rows.append(Xt[torch.from_numpy(mask).to(Xt.device)])
            chunk = max(1, _SEARCH_BYTES // (4 * n_ref))
            d, i = knn_search(Xt[rows_t], k, Y=reference_rows[0], metric=metric, chunk_size=chunk)
            return d.cpu(), i.cpu()

        short_q = short[~mask[short]]
        if short_q.size:
            d, i = nearest_reference(short_q, k_max)
            put(short_q, d.to(Xt.dtype), i)
        short_r = short[mask[short]]
        if short_r.size:
            d, i = nearest_reference(short_r, min(k_max + 1, n_ref))
            own = torch.from_numpy(position[short_r])[:, None]
            # Drop the row itself (or, if ties at distance 0 pushed it out, the last column).
            is_self = i == own
            drop = torch.where(is_self.any(1), is_self.int().argmax(1), torch.full_like(own[:, 0], i.shape[1] - 1))
            keep_cols = torch.ones_like(i, dtype=torch.bool)
            keep_cols[torch.arange(i.shape[0]), drop] = False
            put(short_r, d[keep_cols].view(-1, k_max).to(Xt.dtype), i[keep_cols].view(-1, k_max))
        reference_rows.clear()
        device = Xt.device
        (q_dist, q_idx), (r_dist, r_idx) = tables[False], tables[True]
        return cls(
            q_dist.to(device),
            q_idx.to(device),
            r_dist.to(device),
            r_idx.to(device),
            k_max,
            metric,
            False,
            kind,
            reference_mask=mask.copy(),
        )

    @property
    def n_queries(self) -> int:
        """Number of query rows."""
        return int(self.query_dist.shape[0])

    @property
    def n_reference(self) -> int:
        """Number of reference rows."""
        return int(self.reference_dist.shape[0])

    @property
    def n_rows(self) -> int:
        """Rows a :meth:`result` covers: N for :meth:`from_samples` tables, else the queries."""
        return self.n_queries if self.reference_mask is None else int(self.reference_mask.shape[0])

    def _out(self, values: np.ndarray) -> Any:
        if self.kind.is_numpy:
            return values
        return torch.from_numpy(values).to(self.kind.device)

    def result(
        self,
        k: int,
        statistic: Statistic = "mean",
        robust: bool = False,
        *,
        percentile: bool = True,
        zero_spread: Literal["raise", "nan"] = "raise",
    ) -> KNNDeviation:
        """Deviation result at ``k`` from the cached tables (no new distances).

        Parameters
        ----------
        k : int
            Neighbours, ``1 <= k <= k_max``.
        statistic : {"mean", "kth"}
            Mean of the k distances, or the k-th distance.
        robust : bool
            Standardise with median and 1.4826·MAD instead of mean and std (ddof=1).
        percentile : bool
            Compute ``percentile`` (a sort of the baseline, O(Nr log Nr)); False leaves it None,
            which keeps a k move at O(Nq + Nr).
        zero_spread : {"raise", "nan"}
            When the baseline has zero spread (every reference point at the same distance, as in a
            constant layer): raise ``ValueError``, or give ``z`` as NaN (``baseline_std`` 0; the
            distances and percentiles are still defined), as a profile over many layers does.

        Returns
        -------
        KNNDeviation
            For :meth:`from_samples` tables ``distance``, ``z`` and ``percentile`` cover all N
            rows (reference rows hold their leave-one-out values).

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
        d = _statistic(*self._query_table, k, statistic)
        b = _statistic(*self._reference_table, k, statistic)
        if robust:
            centre = float(np.median(b))
            scale = _MAD_TO_STD * float(np.median(np.abs(b - b.dtype.type(centre))))
            what = "1.4826·MAD"
        else:
            centre = float(b.mean(dtype=np.float64))
            scale = float(b.std(ddof=1, dtype=np.float64)) if b.shape[0] > 1 else 0.0
            what = "standard deviation"
        if zero_spread not in ("raise", "nan"):
            raise ValueError(f"zero_spread must be 'raise' or 'nan', got {zero_spread!r}")
        if not scale > 0 and zero_spread == "raise":
            raise ValueError(
                f"the baseline's {what} is 0 (every reference point has the same k={k} {statistic} distance), "
                "so z is undefined; use more varied reference data" + (" or robust=False" if robust else "")
            )
        if self.reference_mask is not None:
            distance = np.empty(self.reference_mask.shape[0], dtype=b.dtype)
            distance[self.reference_mask] = b
            distance[~self.reference_mask] = d
        else:
            distance = d
        if scale > 0:
            z = (distance - distance.dtype.type(centre)) / distance.dtype.type(scale)
        else:  # z is undefined: zero_spread="nan"
            z = np.full_like(distance, np.nan)
        pct = None
        if percentile:
            pct = np.searchsorted(np.sort(b), distance, side="right").astype(b.dtype) / b.dtype.type(b.shape[0])
        return KNNDeviation(
            distance=self._out(distance),
            z=self._out(z),
            percentile=None if pct is None else self._out(pct),
            baseline=self._out(b),
            baseline_mean=centre,
            baseline_std=scale,
            k=k,
            statistic=statistic,
            robust=bool(robust),
        )


def _table_and_prefix(dist: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """An ascending distance table as numpy ``[N, k_max]`` and its running sums ``[k_max, N]``."""
    table = dist.detach().cpu().numpy()
    prefix = np.ascontiguousarray(np.cumsum(table, axis=1, dtype=np.float64).T, dtype=table.dtype)
    return table, prefix


def _statistic(table: np.ndarray, prefix: np.ndarray, k: int, statistic: str) -> np.ndarray:
    """Per-row deviation from an ascending distance table: mean of the first k, or the k-th."""
    if statistic == "mean":
        return prefix[k - 1] / table.dtype.type(k)
    return np.ascontiguousarray(table[:, k - 1])


def knn_deviation(
    queries: Array,
    reference: Array,
    k: int = 10,
    *,
    metric: str = "euclidean",
    statistic: Statistic = "mean",
    robust: bool = False,
    normalize: bool = False,
    knn: PrecomputedKNN | None = None,
) -> KNNDeviation:
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
    KNNDeviation
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
