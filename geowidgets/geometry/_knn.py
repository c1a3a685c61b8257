"""Exact k-nearest neighbours and the cached kNN graph every k-dependent probe reads.

Two engines propose candidates:

* **faiss** (``faiss.knn``, the brute force behind ``IndexFlatL2``, without an index's copy of
  the rows; CPU float32) when the ``faiss`` package is importable: its fused GEMM + heap
  selection is the fastest exact search on a CPU we know of, so we use it rather than hand-roll
  one.
* **torch** everywhere else (CUDA, MPS, float64, no faiss): chunked ``‖x‖² + ‖y‖² − 2x·y`` with
  a per-chunk ``topk``; memory is O(chunk · M).

Both run on rows centred by the mean of reference ∪ queries (computed in float64), so a large
common offset does not cancel in the expansion. Each proposes k + 4 candidates, which are
re-scored exactly as ``‖x − y‖`` (cosine: ``‖x̂ − ŷ‖²/2 = 1 − cos``) from differences of the
original rows in float64, in blocks of bounded size, and sorted by (distance, index), so ties go
to the lower index. A query row is then *certified*: every point outside its candidates has an
approximate squared distance of at least the largest candidate's, and the expansion's rounding
error is bounded (see :func:`_error_bound`); when that margin cannot exclude a point from beating
or tying the k-th exact distance (exact ties, duplicates, spread tiny next to the norm even after
centring), the row is searched again in float64 and every point within the error band is
re-scored exactly.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_tensor, check_k, row_norms, to_kind

__all__ = ["knn", "knn_graph", "KNNGraph", "PrecomputedKNN", "resolve_knn", "faiss_available"]

Metric = Literal["euclidean", "cosine"]
_METRICS = ("euclidean", "cosine")
# Extra candidates taken before exact re-scoring, so float error in the expansion cannot
# push a true neighbour out of the top k.
_PAD = 4
# Bytes allowed for one chunk's approximate distance block [rows, M].
_CHUNK_BYTES = 256 * 2**20
# Queries at most 1/this of the reference rows: the reference is centred in blocks, not copied.
_FEW_QUERIES_RATIO = 16
# Bytes allowed for one exact re-scoring block [rows, k + _PAD, D] in the exact dtype.
_RESCORE_BYTES = 32 * 2**20

try:  # pragma: no cover - depends on the environment
    import faiss as _faiss

    _faiss_ok = True
except Exception:  # pragma: no cover
    _faiss = None  # type: ignore[assignment]
    _faiss_ok = False


def faiss_available() -> bool:
    """True when faiss is importable and will be used for CPU float32 searches."""
    return _faiss_ok


def _check_metric(metric: str) -> Metric:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    return cast(Metric, metric)


def _exact_dtype(device: torch.device) -> torch.dtype:
    """The dtype distances are re-scored in: float64, except on MPS, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64


def _matmul_roundoff(dtype: torch.dtype, device: torch.device) -> float:
    """Unit roundoff of a matrix product in ``dtype`` on ``device`` (TF32 / bfloat16 where enabled on CUDA)."""
    u = torch.finfo(dtype).eps / 2
    if dtype == torch.float32 and device.type == "cuda":
        precision = torch.get_float32_matmul_precision()
        if precision == "medium":
            u = max(u, 2.0**-9)  # bfloat16 products
        elif (
            precision == "high"
            or getattr(torch.backends.cuda.matmul, "fp32_precision", None) == "tf32"
            or getattr(torch.backends.cuda.matmul, "allow_tf32", False)
        ):
            u = max(u, 2.0**-11)  # TF32 products
    return u


@dataclass
class _Prepared:
    """Rows as searched: originals for exact re-scoring, and centred copies for the candidate search.

    ``work_*`` are ``(x − μ)`` (cosine: ``(x/‖x‖ − μ)``) in the search dtype, with μ the mean of
    reference ∪ queries computed in the exact dtype, so the ``‖x‖² + ‖y‖² − 2x·y`` expansion no
    longer cancels a common offset. ``inv_*`` are the exact-dtype ``1/‖x‖`` for cosine, else None.
    """

    src_q: torch.Tensor
    src_r: torch.Tensor
    work_q: torch.Tensor
    work_r: torch.Tensor | None  # None: few queries, the reference is centred block by block
    inv_q: torch.Tensor | None
    inv_r: torch.Tensor | None
    mean: torch.Tensor
    exact: torch.dtype
    same: bool  # queries are the reference (self-search)


def _rows_exact(src: torch.Tensor, inv: torch.Tensor | None, rows: Any, exact: torch.dtype) -> torch.Tensor:
    """Rows of ``src`` (a slice or an index tensor) in the exact dtype, unit-normalised for cosine."""
    out = src[rows].to(exact)
    if inv is not None:
        out = out * inv[rows].unsqueeze(1)
    return out


def _centred_copy(src: torch.Tensor, inv: torch.Tensor | None, mean: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``rows − mean`` in ``dtype``, built in blocks so no full exact-dtype copy is held."""
    out = torch.empty(src.shape, dtype=dtype, device=src.device)
    step = max(1, _RESCORE_BYTES // (8 * max(1, src.shape[1])))
    for s in range(0, src.shape[0], step):
        out[s : s + step] = (_rows_exact(src, inv, slice(s, s + step), mean.dtype) - mean).to(dtype)
    return out


def _prepare(Q: torch.Tensor, R: torch.Tensor | None, metric: str) -> _Prepared:
    same = R is None
    R = Q if R is None else R
    exact = _exact_dtype(Q.device)
    inv_q = inv_r = None
    if metric == "cosine":
        inv_q = _inverse_norms(Q, "X", exact)
        inv_r = inv_q if same else _inverse_norms(R, "Y", exact)
    step = max(1, _RESCORE_BYTES // (8 * max(1, Q.shape[1])))
    total = torch.zeros(Q.shape[1], dtype=exact, device=Q.device)
    sets = [(R, inv_r)] if same else [(R, inv_r), (Q, inv_q)]
    for src, inv in sets:
        for s in range(0, src.shape[0], step):
            total += _rows_exact(src, inv, slice(s, s + step), exact).sum(0)
    mean = total / sum(src.shape[0] for src, _ in sets)
    # A few queries against many rows (a path's points, added samples): the reference is centred
    # block by block during the search instead of copied whole (an [M, D] copy for a handful of rows).
    few = not same and Q.shape[0] * _FEW_QUERIES_RATIO <= R.shape[0]
    work_r = None if few else _centred_copy(R, inv_r, mean, R.dtype)
    work_q = _centred_copy(Q, inv_q, mean, Q.dtype) if work_r is None or not same else work_r
    return _Prepared(Q, R, work_q, work_r, inv_q, inv_r, mean, exact, same)


def _inverse_norms(t: torch.Tensor, name: str, exact: torch.dtype) -> torch.Tensor:
    nonzero = "cosine distance is undefined for them — drop them or use metric='euclidean'"
    return 1.0 / row_norms(t, exact, name=name, nonzero=nonzero)


def _exact_scores(p: _Prepared, rows: torch.Tensor, cand: torch.Tensor, metric: str) -> torch.Tensor:
    """Exact distances from query ``rows`` to candidate indices ``cand`` [c, kc], in the exact dtype.

    Differences are taken on the original rows (exact for float32 data in float64) and their
    squares summed in float64 one feature after the other. On the CPU a compiled kernel reads each
    candidate's row in place (:func:`pair_distances`); elsewhere the rows are gathered in blocks of
    about ``_RESCORE_BYTES`` held in two reused buffers, so memory never grows with N·k·D.
    """
    if cand.device.type == "cpu" and p.exact == torch.float64:
        out = pair_distances(p.src_q, p.src_r, rows, cand, p.inv_q, p.inv_r)
        return out if metric == "euclidean" else out.square_().mul_(0.5)  # 1 − cos = ‖x̂ − ŷ‖²/2
    c, kc = cand.shape
    n_features = p.src_r.shape[1]
    device = cand.device
    out = torch.empty((c, kc), dtype=p.exact, device=device)
    step = max(1, min(c, _RESCORE_BYTES // (8 * max(1, kc * n_features))))
    gathered = torch.empty((step * kc, n_features), dtype=p.src_r.dtype, device=device)
    converted = gathered if p.src_r.dtype == p.exact else torch.empty_like(gathered, dtype=p.exact)
    for s in range(0, c, step):
        n_rows = min(step, c - s)
        flat = cand[s : s + n_rows].reshape(-1)
        torch.index_select(p.src_r, 0, flat, out=gathered[: n_rows * kc])
        block = converted[: n_rows * kc]
        if block.data_ptr() != gathered.data_ptr():
            block.copy_(gathered[: n_rows * kc])
        if p.inv_r is not None:
            block.mul_(p.inv_r[flat].unsqueeze(1))
        q = _rows_exact(p.src_q, p.inv_q, rows[s : s + n_rows], p.exact).unsqueeze(1)
        d = block.view(n_rows, kc, n_features).sub_(q).square_().sum(dim=2).sqrt_()
        out[s : s + n_rows] = d if metric == "euclidean" else d.square_().mul_(0.5)
    return out


# One caller of the parallel kernel at a time (numba's fallback threading layer is not threadsafe).
_KERNEL_LOCK = threading.Lock()


def pair_distances(
    Q: torch.Tensor,
    R: torch.Tensor,
    rows: torch.Tensor,
    cand: torch.Tensor,
    inv_q: torch.Tensor | None = None,
    inv_r: torch.Tensor | None = None,
) -> torch.Tensor:
    """Float64 distances ``‖Q[rows[a]]·s_q − R[cand[a, b]]·s_r‖`` for every candidate, on the CPU.

    The exact re-scoring step of every kNN search (exact and approximate): each difference of two
    float32 values is exact in float64 and the squares are summed in float64 in feature order, the
    same arithmetic as ``torch.cdist(..., compute_mode="donot_use_mm_for_euclid_dist")`` in float64
    (bit for bit), without gathering the candidates' rows into an ``[c, kc, D]`` float64 block:
    a compiled kernel (parallel over query rows) reads each row in place, about 5× faster at
    5·10^4 × 512. Memory: the ``[c, kc]`` result only.

    Parameters
    ----------
    Q, R : Tensor ``[N, D]``, ``[M, D]``, float32 or float64, CPU
        Query and reference rows (others are converted to float64 first).
    rows : Tensor ``[c]``, int
        Query row of each output row.
    cand : Tensor ``[c, kc]``, int
        Reference rows to score, each in ``[0, M)``.
    inv_q, inv_r : Tensor ``[N]``, ``[M]``, float64, optional
        Row scales (``1/‖x‖`` for cosine: the distance between unit rows); both or neither.

    Returns
    -------
    Tensor ``[c, kc]``, float64
    """

    def array(t: torch.Tensor) -> np.ndarray:
        t = t.detach()
        if t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float64)
        return np.ascontiguousarray(t.cpu().numpy())

    empty = np.empty(0, dtype=np.float64)
    scale_q = empty if inv_q is None else np.ascontiguousarray(inv_q.detach().cpu().numpy(), dtype=np.float64)
    scale_r = empty if inv_r is None else np.ascontiguousarray(inv_r.detach().cpu().numpy(), dtype=np.float64)
    if (inv_q is None) != (inv_r is None):
        raise ValueError("give both row scales (inv_q, inv_r) or neither")
    q = array(Q)
    r = q if R is Q else array(R)
    if r.dtype != q.dtype:
        q, r = q.astype(np.float64), r.astype(np.float64)
    idx_rows = np.ascontiguousarray(rows.detach().cpu().numpy(), dtype=np.int64)
    idx_cand = np.ascontiguousarray(cand.detach().cpu().numpy(), dtype=np.int64)
    out = np.empty(idx_cand.shape, dtype=np.float64)
    if out.size:
        with _KERNEL_LOCK:
            from geowidgets.geometry._kernels import pair_distances_kernel  # numba, imported on first use

            pair_distances_kernel(q, r, idx_rows, idx_cand, scale_q, scale_r, out)
    return torch.from_numpy(out)


def _select(d: torch.Tensor, cand: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest of each row by (distance, index): ties go to the lower index."""
    cand, order = torch.sort(cand, dim=1)
    d = torch.gather(d, 1, order)
    d, order = torch.sort(d, dim=1, stable=True)
    cand = torch.gather(cand, 1, order)
    return d[:, :k].contiguous(), cand[:, :k].contiguous()


def _candidates_torch(
    Q: torch.Tensor, R: torch.Tensor, kc: int, self_index: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``kc`` smallest approximate squared distances ``‖q‖² + ‖r‖² − 2q·r`` per row, and their indices.

    ``self_index`` [c] (optional) gives each query's own column in R, which is excluded.
    """
    rn = (R * R).sum(1)
    qn = (Q * Q).sum(1)
    d2 = torch.addmm(rn.unsqueeze(0), Q, R.T, beta=1.0, alpha=-2.0)
    d2.add_(qn.unsqueeze(1))
    if self_index is not None:
        d2[torch.arange(Q.shape[0], device=Q.device), self_index] = math.inf
    return torch.topk(d2, kc, dim=1, largest=False, sorted=False)


def _error_bound(work_q: torch.Tensor, r_norm_max: float, n_features: int, u: float) -> torch.Tensor:
    """Bound on the rounding error of the expansion ``‖q‖² + ‖r‖² − 2q·r`` for every r, per query row.

    Each inner product of length D carries an error of about ``√D·u·‖q‖‖r‖`` (the probabilistic
    bound of Higham & Mary 2019, with a safety factor of 4), plus ``u`` per rounding of the
    centred rows and of the three-term sum: in all ``(4√D + 4)·u·(‖q‖ + max‖r‖)²``.
    """
    q_norm = row_norms(work_q, _exact_dtype(work_q.device))
    return (4.0 * math.sqrt(n_features) + 4.0) * u * (q_norm + r_norm_max) ** 2


def _certified(
    approx_max: torch.Tensor, kth: torch.Tensor, bound: torch.Tensor, metric: str, exact: torch.dtype
) -> torch.Tensor:
    """Rows where no point outside the candidates can beat (or tie) the k-th exact distance.

    Every non-candidate r has approximate squared distance >= ``approx_max``, hence a true one
    >= ``approx_max − bound``; the row is certified when that exceeds the k-th squared distance.
    """
    kth2 = kth.square() if metric == "euclidean" else 2.0 * kth  # squared euclidean of the searched rows
    slack = 16 * torch.finfo(exact).eps * kth2
    return approx_max.to(kth2.dtype) - bound.to(kth2.dtype) > kth2 + slack


def _band_exact(
    p: _Prepared, rows: torch.Tensor, k: int, kc: int, metric: str, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact neighbours of query ``rows`` without trusting a fixed number of candidates.

    The expansion is evaluated in the exact dtype on centred rows (the reference is centred in
    blocks, never copied whole); every point whose value lies within the error bound of the k-th
    exact distance is re-scored exactly, however many there are (exact ties at the k-th distance,
    duplicates, data whose spread is tiny next to its norm).
    """
    exact = p.exact
    m, n_features = p.src_r.shape
    u = _matmul_roundoff(exact, p.src_r.device)
    eps = torch.finfo(exact).eps
    r_step = max(1, _RESCORE_BYTES // (8 * max(1, n_features)))
    step = max(1, _CHUNK_BYTES // (8 * max(m, 1)))
    dists, idxs = [], []
    for s in range(0, rows.shape[0], step):
        r = rows[s : s + step]
        q = _centred_rows(p, r, exact)
        d2 = torch.empty((r.shape[0], m), dtype=exact, device=q.device)
        r_max = 0.0
        for t in range(0, m, r_step):
            if p.work_r is not None and p.work_r.dtype == exact:
                block = p.work_r[t : t + r_step]
            else:
                block = _rows_exact(p.src_r, p.inv_r, slice(t, t + r_step), exact) - p.mean
            r_sq = (block * block).sum(1)
            r_max = max(r_max, float(r_sq.max().sqrt()))
            d2[:, t : t + r_step] = torch.addmm(r_sq.unsqueeze(0), q, block.T, beta=1.0, alpha=-2.0)
        d2.add_((q * q).sum(1).unsqueeze(1))
        if exclude_self:
            d2[torch.arange(r.shape[0], device=d2.device), r] = math.inf
        cand = torch.topk(d2, kc, dim=1, largest=False, sorted=False).indices
        d, i = _select(_exact_scores(p, r, cand, metric), cand, k)
        kth2 = d[:, -1].square() if metric == "euclidean" else 2.0 * d[:, -1]
        limit = kth2 * (1 + 16 * eps) + _error_bound(q, r_max, n_features, u).to(exact)
        band = d2 <= limit.unsqueeze(1)
        for j in range(r.shape[0]):
            members = torch.nonzero(band[j]).squeeze(1)
            if members.shape[0] <= kc and bool(torch.isin(members, cand[j]).all()):
                continue  # every point that could be a neighbour was a candidate: the selection stands
            scores = _exact_scores(p, r[j : j + 1], members.unsqueeze(0), metric)
            dj, ij = _select(scores, members.unsqueeze(0), k)
            d[j], i[j] = dj[0], ij[0]
        dists.append(d)
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


def _centred_rows(p: _Prepared, rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (_rows_exact(p.src_q, p.inv_q, rows, p.exact) - p.mean).to(dtype)


def _search(p: _Prepared, k: int, metric: str, exclude_self: bool, chunk_size: int | None):
    Qw, Rw = p.work_q, p.work_r
    n, m = Qw.shape[0], p.src_r.shape[0]
    avail = m - 1 if exclude_self else m
    kc = min(avail, k + _PAD)
    device = Qw.device
    dtype = Qw.dtype
    use_faiss = Rw is not None and _faiss_ok and device.type == "cpu" and Rw.dtype == torch.float32
    u = _matmul_roundoff(dtype, device)
    r_max = float(row_norms(Rw, p.exact).max()) if kc < avail and Rw is not None else 0.0
    dists, idxs, approx_max = [], [], []
    if Rw is None:  # few queries: every query against one centred block of the reference at a time
        vals = torch.full((n, kc), math.inf, dtype=dtype, device=device)
        cand = torch.zeros((n, kc), dtype=torch.int64, device=device)
        step = max(1, min(_RESCORE_BYTES // (8 * max(1, Qw.shape[1])), _CHUNK_BYTES // (4 * max(n, 1))))
        for t in range(0, m, step):
            block = (_rows_exact(p.src_r, p.inv_r, slice(t, t + step), p.exact) - p.mean).to(dtype)
            r_max = max(r_max, float(row_norms(block, p.exact).max()))
            v, i = _candidates_torch(Qw, block, min(kc, block.shape[0]), None)
            v, j = torch.topk(torch.cat([vals, v], 1), kc, dim=1, largest=False, sorted=False)
            cand = torch.gather(torch.cat([cand, i + t], 1), 1, j)
            vals = v
        rows = torch.arange(n, device=device)
        d, i = _select(_exact_scores(p, rows, cand, metric), cand, k)
        dists.append(d)
        idxs.append(i)
        approx_max.append(vals.max(1).values)
    elif use_faiss:
        # Brute force straight on the centred rows (no index: an index would copy all of them).
        vals_all, cand_np = _faiss.knn(Qw.numpy(), Rw.numpy(), min(m, kc + int(exclude_self)))
        cand_all = torch.from_numpy(cand_np)
        approx_all = torch.from_numpy(vals_all).max(1).values  # every other point scores at least this
        if exclude_self:
            own = torch.arange(n).unsqueeze(1)
            is_self = cand_all == own
            # Drop self where present, else the last column; keep kc columns.
            drop = torch.where(is_self.any(1), is_self.float().argmax(1), cand_all.shape[1] - 1)
            keep = torch.ones_like(cand_all, dtype=torch.bool)
            keep[torch.arange(n), drop] = False
            cand_all = cand_all[keep].view(n, -1)[:, :kc]
        # One call: the re-scoring blocks reuse two buffers (many calls would fragment the heap).
        d, i = _select(_exact_scores(p, torch.arange(n), cand_all, metric), cand_all, k)
        dists.append(d)
        idxs.append(i)
        approx_max.append(approx_all)
    else:
        step = chunk_size or max(1, min(n, _CHUNK_BYTES // (4 * max(m, 1))))
        for s in range(0, n, step):
            rows = torch.arange(s, min(n, s + step), device=device)
            vals, cand = _candidates_torch(Qw[s : s + step], Rw, kc, rows if exclude_self else None)
            d, i = _select(_exact_scores(p, rows, cand, metric), cand, k)
            dists.append(d)
            idxs.append(i)
            approx_max.append(vals.max(1).values)
    d, i = torch.cat(dists), torch.cat(idxs)
    if kc < avail:
        bound = _error_bound(Qw, r_max, Qw.shape[1], u)
        ok = _certified(torch.cat(approx_max).to(d.device), d[:, k - 1], bound.to(d.device), metric, p.exact)
        if not bool(ok.all()):
            rows = torch.nonzero(~ok).squeeze(1)
            d[rows], i[rows] = _band_exact(p, rows, k, kc, metric, exclude_self)
    return d, i


def _knn_tensors(
    X: torch.Tensor, k: int, Y: torch.Tensor | None, metric: str, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    m = X.shape[0] if Y is None else Y.shape[0]
    p = _prepare(X, Y, metric)
    d, i = _search(p, k, metric, Y is None, chunk_size)
    # Every index names a row of the reference: a wrong neighbour must never reach a view silently.
    if i.numel() and not (int(i.min()) >= 0 and int(i.max()) < m):
        raise RuntimeError(
            f"the kNN search returned neighbour indices outside [0, {m}) "
            f"(min {int(i.min())}, max {int(i.max())}); please report this with the data's shape {tuple(X.shape)}"
        )
    return d.to(X.dtype), i


def knn(
    X: Array,
    k: int,
    Y: Array | None = None,
    metric: Metric = "euclidean",
    *,
    chunk_size: int | None = None,
) -> tuple[Any, Any]:
    """Exact k nearest neighbours.

    Guarantees: the indices are those of the k smallest float64 distances ``‖x − y‖`` computed
    from differences of the given rows (cosine: of the float64-normalised rows), ties to the
    lower index, on every device and with or without faiss, whatever common offset or scale the
    data have. The one assumption is the rounding-error bound of the candidate search
    (``(4√D + 4)·u·(‖x‖ + max‖y‖)²`` on centred rows, about 3× the largest error we measure),
    beyond which a row falls back to a float64 band search. On MPS, which has no float64, the
    re-scoring is float32, so near-ties within float32 rounding may swap. Distances are
    returned in X's dtype (rounded from float64). Memory: the input, one centred copy, blocks of
    about 256 MB for the search and 32 MB for the re-scoring, and the O(N·k) result.

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
        Query rows per candidate-search block; by default blocks of about 256 MB.

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
        if _all_rows_equal(Xt):  # every distance is 0: ties to the lower index, no search (it would be all ties)
            n = Xt.shape[0]
            j = torch.arange(k, device=Xt.device)[None, :]
            i = j + (j >= torch.arange(n, device=Xt.device)[:, None]).long()
            return to_kind(torch.zeros((n, k), dtype=Xt.dtype, device=Xt.device), kind), to_kind(i, kind)
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


def _all_rows_equal(X: torch.Tensor) -> bool:
    """True if every row of ``X`` equals the first (a layer that does not depend on the input)."""
    step = max(1, _RESCORE_BYTES // (4 * max(1, X.shape[1])))
    first = X[:1]
    return all(bool((X[s : s + step] == first).all()) for s in range(0, X.shape[0], step))


def _fingerprint(X: torch.Tensor) -> tuple[int, int, float]:
    """Cheap identity of a data matrix: shape and a float64 checksum."""
    step = max(1, _RESCORE_BYTES // (8 * max(1, X.shape[1])))
    total = sum(float(X[s : s + step].double().sum()) for s in range(0, X.shape[0], step))
    return (int(X.shape[0]), int(X.shape[1]), total)


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
    engine : str
        ``"exact"``, or the approximate index the neighbours came from (``"hnsw"``, ``"ivf"``,
        ``"nndescent"``; see :func:`geowidgets.geometry.approximate_knn_graph`).
    recall : float
        Recall@10 measured against exact search on ``recall_sample`` random rows (1.0 if exact).
    recall_sample : int
        Rows the recall was measured on (0 for an exact graph).
    """

    dist: Any
    idx: Any
    metric: str
    k_max: int
    fingerprint: tuple
    engine: str = "exact"
    recall: float = 1.0
    recall_sample: int = 0

    def __repr__(self) -> str:
        device = self.dist.device if isinstance(self.dist, torch.Tensor) else "cpu"
        approx = "" if self.engine == "exact" else f", engine={self.engine!r}, recall@10={self.recall:.3f}"
        return f"KNNGraph(n={self.n}, k_max={self.k_max}, metric={self.metric!r}, device={str(device)!r}{approx})"

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


#: A precomputed neighbour graph a probe may reuse instead of searching again: a
#: :class:`KNNGraph` (sliced to the probe's k) or a ``(dist, idx)`` pair of [N, k'] arrays, k' >= k.
PrecomputedKNN: TypeAlias = "KNNGraph | tuple[Array, Array]"


def knn_graph(
    X: Array,
    k_max: int = 50,
    metric: Metric = "euclidean",
    *,
    chunk_size: int | None = None,
    exact: bool | None = None,
    engine: str = "auto",
) -> KNNGraph:
    """Compute the kNN graph of ``X`` (self excluded) once, at ``k_max``: exact, or approximate at scale.

    ``k_max`` is capped at ``N - 1`` only if you ask for it explicitly; a larger value is an
    error, never silently clipped.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
    k_max : int
        Largest k any slider will ask for.
    metric : {"euclidean", "cosine"}
    exact : bool, optional
        ``True``: exact search whatever N. ``False``: an approximate index whatever N (``engine``;
        HNSW for ``"auto"``). ``None`` (default): exact below
        ``geowidgets.geometry._ann.APPROX_MIN_POINTS`` rows or for CUDA data; above it HNSW when
        its recall@10, measured against exact search on a random sample, reaches 0.99, else exact.
    engine : {"auto", "hnsw", "ivf", "nndescent"}
        The approximate index, when one is used (see
        :func:`geowidgets.geometry.approximate_knn_graph`).

    Returns
    -------
    KNNGraph
        ``engine``, ``recall`` and ``recall_sample`` say how exact it is.

    Raises
    ------
    ValueError
        For ``exact=True`` together with an approximate ``engine``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 8))
    >>> g = knn_graph(X, k_max=20)
    >>> np.array_equal(g.slice(7)[1], knn(X, 7)[1])
    True
    """
    Xt, kind = as_tensor(X, "X")
    if engine not in ("auto", "exact", "hnsw", "ivf", "nndescent"):
        raise ValueError(f"engine must be one of ('auto', 'exact', 'hnsw', 'ivf', 'nndescent'), got {engine!r}")
    if exact is True and engine not in ("auto", "exact"):
        raise ValueError(f"exact=True asks for exact search, but engine={engine!r} is approximate")
    if exact is not True and engine != "exact":
        from geowidgets.geometry._ann import APPROX_MIN_POINTS, approximate_knn_graph

        if exact is False or Xt.shape[0] >= APPROX_MIN_POINTS:
            chosen = "hnsw" if exact is False and engine == "auto" else engine
            return approximate_knn_graph(X, k_max, metric, engine=chosen)  # type: ignore[arg-type]
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
