"""Exact k-nearest neighbours and the cached kNN graph every k-dependent probe reads.

Two engines give the same exact answer:

* **faiss** (``IndexFlatL2``, CPU float32) when the ``faiss`` package is importable: its fused
  GEMM + heap selection is the fastest exact search on a CPU we know of, so we use it rather
  than hand-roll one.
* **torch** everywhere else (CUDA, MPS, float64, no faiss): chunked ``‖x‖² + ‖y‖² − 2x·y`` with
  cached norms and a per-chunk ``topk``; memory is O(chunk · M).

Both only *propose* candidates (a few more than k); the winners are then re-scored directly as
``‖x − y‖`` (or ``1 − cos``) to remove the cancellation error of the expansion, and sorted by
(distance, index), so ties go to the lower index deterministically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from geowidgets.geometry._arrays import as_tensor, check_k, to_kind

__all__ = ["knn", "knn_graph", "KNNGraph", "resolve_knn", "faiss_available"]

Metric = Literal["euclidean", "cosine"]
_METRICS = ("euclidean", "cosine")
# Extra candidates taken before exact re-scoring, so float error in the expansion cannot
# push a true neighbour out of the top k.
_PAD = 4
# Bytes allowed for one chunk's distance block.
_CHUNK_BYTES = 256 * 2**20

try:  # pragma: no cover - depends on the environment
    import faiss as _faiss

    _faiss_ok = True
except Exception:  # pragma: no cover
    _faiss = None
    _faiss_ok = False


def faiss_available() -> bool:
    """True when faiss is importable and will be used for CPU float32 searches."""
    return _faiss_ok


def _check_metric(metric: str) -> str:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    return metric


def _normalize_rows(t: torch.Tensor, name: str) -> torch.Tensor:
    norms = torch.linalg.vector_norm(t, dim=1, keepdim=True)
    zero = norms.squeeze(1) == 0
    if bool(zero.any()):
        first = int(torch.nonzero(zero)[0])
        raise ValueError(
            f"{name} has {int(zero.sum())} all-zero row(s) (first: row {first}); "
            "cosine distance is undefined for them — drop them or use metric='euclidean'"
        )
    return t / norms


def _exact_rescore(
    Q: torch.Tensor, R: torch.Tensor, cand: torch.Tensor, k: int, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-score candidate indices exactly and keep the k best, ties to the lower index."""
    neigh = torch.index_select(R, 0, cand.reshape(-1)).view(*cand.shape, R.shape[1])  # [c, kc, D]
    if metric == "euclidean":
        d = torch.linalg.vector_norm(neigh.sub_(Q.unsqueeze(1)), dim=2)
    else:  # rows of Q and R are unit-normalised
        d = 1.0 - torch.einsum("cd,ckd->ck", Q, neigh)
    # Sort by index first, then stably by distance: ties end up in index order.
    cand, order = torch.sort(cand, dim=1)
    d = torch.gather(d, 1, order)
    d, order = torch.sort(d, dim=1, stable=True)
    cand = torch.gather(cand, 1, order)
    return d[:, :k].contiguous(), cand[:, :k].contiguous()


def _candidates_torch(Q: torch.Tensor, R: torch.Tensor, kc: int, offset: int | None) -> torch.Tensor:
    """Indices of the ``kc`` smallest approximate squared distances per row of ``Q``."""
    rn = (R * R).sum(1)
    qn = (Q * Q).sum(1)
    d2 = torch.addmm(rn.unsqueeze(0), Q, R.T, beta=1.0, alpha=-2.0)
    d2.add_(qn.unsqueeze(1))
    if offset is not None:  # exclude each query's own index
        rows = torch.arange(Q.shape[0], device=Q.device)
        d2[rows, rows + offset] = math.inf
    return torch.topk(d2, kc, dim=1, largest=False, sorted=False).indices


def _search(Qall: torch.Tensor, R: torch.Tensor, k: int, metric: str, exclude_self: bool, chunk_size: int | None):
    n, m = Qall.shape[0], R.shape[0]
    avail = m - 1 if exclude_self else m
    kc = min(avail, k + _PAD)
    use_faiss = _faiss_ok and R.device.type == "cpu" and R.dtype == torch.float32
    dists, idxs = [], []
    if use_faiss:
        index = _faiss.IndexFlatL2(R.shape[1])
        index.add(R.numpy())
        _, cand_all = index.search(Qall.numpy(), min(m, kc + int(exclude_self)))
        cand_all = torch.from_numpy(cand_all)
        if exclude_self:
            own = torch.arange(n).unsqueeze(1)
            is_self = cand_all == own
            # Drop self where present, else the last column; keep kc columns.
            drop = torch.where(is_self.any(1), is_self.float().argmax(1), cand_all.shape[1] - 1)
            keep = torch.ones_like(cand_all, dtype=torch.bool)
            keep[torch.arange(n), drop] = False
            cand_all = cand_all[keep].view(n, -1)[:, :kc]
        step = chunk_size or 1024
        for s in range(0, n, step):
            d, i = _exact_rescore(Qall[s : s + step], R, cand_all[s : s + step], k, metric)
            dists.append(d)
            idxs.append(i)
    else:
        step = chunk_size or max(1, min(n, _CHUNK_BYTES // (4 * max(m, 1))))
        for s in range(0, n, step):
            Q = Qall[s : s + step]
            cand = _candidates_torch(Q, R, kc, s if exclude_self else None)
            d, i = _exact_rescore(Q, R, cand, k, metric)
            dists.append(d)
            idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


def _knn_tensors(
    X: torch.Tensor, k: int, Y: torch.Tensor | None, metric: str, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if metric == "cosine":
        X = _normalize_rows(X, "X")
        Y = None if Y is None else _normalize_rows(Y, "Y")
    if Y is None:
        return _search(X, X, k, metric, True, chunk_size)
    return _search(X, Y, k, metric, False, chunk_size)


def knn(
    X: Any,
    k: int,
    Y: Any = None,
    metric: Metric = "euclidean",
    *,
    chunk_size: int | None = None,
) -> tuple[Any, Any]:
    """Exact k nearest neighbours.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
        Query points.
    k : int
        Number of neighbours, ``1 <= k <= M`` (``k <= N - 1`` when ``Y`` is None).
    Y : Tensor or ndarray, shape [M, D], optional
        Reference points. If None, neighbours are searched in ``X`` and each point's own
        index is excluded (exact duplicates still appear, at distance 0).
    metric : {"euclidean", "cosine"}
        ``‖x − y‖₂`` or ``1 − cos(x, y)`` in [0, 2] (an all-zero row is an error).
    chunk_size : int, optional
        Query rows per block; by default blocks of about 256 MB.

    Returns
    -------
    dist : same kind as X, shape [N, k]
        Ascending distances in X's dtype.
    idx : same kind as X, shape [N, k], int64
        Indices into Y (or X). Ties go to the lower index.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [3.0]])
    >>> d, i = knn(X, 1)
    >>> i.ravel().tolist(), d.ravel().tolist()
    ([1, 0, 1], [1.0, 1.0, 2.0])
    """
    metric = _check_metric(metric)
    Xt, kind = as_tensor(X, "X", min_rows=1)
    if Y is None:
        if Xt.shape[0] < 2:
            raise ValueError(f"X needs at least 2 rows to find neighbours, got {Xt.shape[0]}")
        k = check_k(k, Xt.shape[0] - 1)
        Yt = None
    else:
        Yt, _ = as_tensor(Y, "Y", device=Xt.device)
        Yt = Yt.to(device=Xt.device)
        if Yt.shape[1] != Xt.shape[1]:
            raise ValueError(f"X and Y must have the same number of columns, got {Xt.shape[1]} and {Yt.shape[1]}")
        dtype = torch.promote_types(Xt.dtype, Yt.dtype)
        Xt, Yt = Xt.to(dtype), Yt.to(dtype)
        k = check_k(k, Yt.shape[0], what="reference points in Y")
    d, i = _knn_tensors(Xt, k, Yt, metric, chunk_size)
    return to_kind(d, kind), to_kind(i, kind)


def _fingerprint(X: torch.Tensor) -> tuple[int, int, float]:
    """Cheap identity of a data matrix: shape and a float64 checksum."""
    return (int(X.shape[0]), int(X.shape[1]), float(X.double().sum()))


@dataclass(frozen=True)
class KNNGraph:
    """A kNN graph computed once at ``k_max``; :meth:`slice` gives any ``k <= k_max`` for free.

    Attributes
    ----------
    dist : Tensor or ndarray, shape [N, k_max]
        Ascending neighbour distances (self excluded).
    idx : Tensor or ndarray, shape [N, k_max]
        Neighbour indices (int64).
    metric : str
        ``"euclidean"`` or ``"cosine"``.
    k_max : int
        Number of neighbours stored.
    fingerprint : tuple
        (N, D, checksum) of the data the graph was built on, used to reject a graph from
        other data.
    """

    dist: Any
    idx: Any
    metric: str
    k_max: int
    fingerprint: tuple

    @property
    def n(self) -> int:
        """Number of points in the graph."""
        return int(self.fingerprint[0])

    def slice(self, k: int) -> tuple[Any, Any]:
        """Return ``(dist[:, :k], idx[:, :k])`` as views, without recomputing anything.

        Examples
        --------
        >>> import numpy as np
        >>> g = knn_graph(np.random.default_rng(0).normal(size=(20, 3)), k_max=5)
        >>> d, i = g.slice(3)
        >>> d.shape
        (20, 3)
        """
        k = check_k(k, self.k_max, what=f"neighbours in this graph (k_max={self.k_max})")
        return self.dist[:, :k], self.idx[:, :k]


def knn_graph(X: Any, k_max: int = 50, metric: Metric = "euclidean", *, chunk_size: int | None = None) -> KNNGraph:
    """Compute the exact kNN graph of ``X`` (self excluded) once, at ``k_max``.

    ``k_max`` is capped at ``N - 1`` only if you ask for it explicitly; a larger value is an
    error, never silently clipped.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
    k_max : int
        Largest k any slider will ask for.
    metric : {"euclidean", "cosine"}

    Returns
    -------
    KNNGraph

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 8))
    >>> g = knn_graph(X, k_max=20)
    >>> np.array_equal(g.slice(7)[1], knn(X, 7)[1])
    True
    """
    Xt, kind = as_tensor(X, "X")
    d, i = knn(Xt, k_max, metric=metric, chunk_size=chunk_size)
    return KNNGraph(to_kind(d, kind), to_kind(i, kind), metric, int(k_max), _fingerprint(Xt))


def resolve_knn(
    X: torch.Tensor, k: int, knn_arg: Any = None, metric: str = "euclidean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbours of ``X`` (self excluded) for a probe: computed, or sliced from ``knn_arg``.

    Parameters
    ----------
    X : Tensor, shape [N, D]
        The (already validated) data tensor.
    k : int
        Neighbours wanted.
    knn_arg : KNNGraph or (dist, idx) or None
        A precomputed graph. It must come from the same data and metric and hold at least k
        neighbours; anything else is a ``ValueError``.

    Returns
    -------
    dist, idx : Tensor [N, k] on X's device.
    """
    n = X.shape[0]
    if knn_arg is None:
        k = check_k(k, n - 1)
        return _knn_tensors(X, k, None, _check_metric(metric), None)
    if isinstance(knn_arg, KNNGraph):
        if knn_arg.metric != metric:
            raise ValueError(f"knn graph uses metric {knn_arg.metric!r} but {metric!r} was requested")
        fp = _fingerprint(X)
        same = fp[:2] == knn_arg.fingerprint[:2] and math.isclose(
            fp[2], knn_arg.fingerprint[2], rel_tol=1e-6, abs_tol=1e-6
        )
        if not same:
            raise ValueError(
                f"knn graph was built on other data (N={knn_arg.fingerprint[0]}, D={knn_arg.fingerprint[1]}) "
                f"than X (N={fp[0]}, D={fp[1]}); rebuild it with knn_graph(X, ...)"
            )
        if k > knn_arg.k_max:
            raise ValueError(f"k={k} exceeds the graph's k_max={knn_arg.k_max}; rebuild it with a larger k_max")
        d, i = knn_arg.slice(k)
    elif isinstance(knn_arg, (tuple, list)) and len(knn_arg) == 2:
        d, i = knn_arg
        d = torch.as_tensor(np.asarray(d) if not isinstance(d, torch.Tensor) else d)
        i = torch.as_tensor(np.asarray(i) if not isinstance(i, torch.Tensor) else i)
        if d.ndim != 2 or i.shape != d.shape or d.shape[0] != n:
            raise ValueError(
                f"knn=(dist, idx) must both have shape [N={n}, k_max], got {tuple(d.shape)} and {tuple(i.shape)}"
            )
        if k > d.shape[1]:
            raise ValueError(f"k={k} exceeds the {d.shape[1]} neighbours given in knn=(dist, idx)")
        d, i = d[:, :k], i[:, :k]
    else:
        raise ValueError("knn must be a KNNGraph, a (dist, idx) pair, or None")
    k = check_k(k, n - 1)
    d = torch.as_tensor(d).to(device=X.device, dtype=X.dtype)
    i = torch.as_tensor(i).to(device=X.device, dtype=torch.int64)
    return d, i
