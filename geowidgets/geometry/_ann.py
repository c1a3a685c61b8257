"""Approximate kNN graphs for large N, with their recall measured against exact search.

Above a size threshold an exact kNN graph costs O(N² · D); an approximate index answers in
roughly O(N log N · D) but may miss neighbours. This module builds the same :class:`KNNGraph` the
exact engine builds, from one of three indexes:

* ``"hnsw"``: faiss ``IndexHNSWFlat`` (Malkov & Yashunin 2018, "Efficient and robust approximate
  nearest neighbor search using Hierarchical Navigable Small World graphs"), CPU.
* ``"ivf"``: faiss ``IndexIVFFlat`` (inverted lists over a k-means coarse quantiser; Jégou et al.
  2011), moved to the GPU when the data is on CUDA and faiss was built with GPU support.
* ``"nndescent"``: pynndescent's ``NNDescent`` (Dong et al. 2011, "Efficient k-nearest neighbor
  graph construction for generic similarity measures"), a dependency of umap-learn.

Every engine searches on rows centred by their float64 mean (cosine: unit rows, then centred),
so a large common offset cannot cancel in float32, and only *proposes* candidates: they are
re-scored exactly in float64 from differences of the original rows, sorted by (distance, index)
and the point itself is dropped. Distances are therefore exact for the neighbours returned; only
the neighbour *sets* are approximate.

The search effort (HNSW ``efSearch``, IVF ``nprobe``) is chosen from a measured recall: queries
for a random sample of rows are searched at increasing effort and compared with exact
brute-force search for those rows only, and the first effort whose recall@k reaches the target
is used for all rows. The final graph's recall is then measured on a second, independent sample
(:func:`knn_recall`) and stored on the graph, so views can report it. ``engine="auto"`` keeps
exact search below :data:`APPROX_MIN_POINTS` rows (measured in ``benchmarks/knn_scale.py``), and
falls back to exact search when no effort reaches the target.

Formulas, defaults, cost and validation: docs/probes.md#approximate-knn-graph.

Recall@k here counts a returned neighbour as a hit when its exact distance is at most the true
k-th distance (so exact ties in distance are not misses); without ties this is the usual
``|approx ∩ exact| / k``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_tensor, check_k, row_norms, to_kind
from geowidgets.geometry._knn import (
    KNNGraph,
    Metric,
    _all_rows_equal,
    _fingerprint,
    faiss_available,
    knn,
    pair_distances,
)

__all__ = [
    "ApproxKNNGraph",
    "KNNRecall",
    "approximate_knn_graph",
    "knn_recall",
    "APPROX_MIN_POINTS",
    "TARGET_RECALL",
]

Engine = Literal["auto", "exact", "hnsw", "ivf", "nndescent"]
_ENGINES = ("auto", "exact", "hnsw", "ivf", "nndescent")
_APPROX = ("hnsw", "ivf", "nndescent")

#: Below this many rows ``engine="auto"`` uses exact search. On a 2-core CPU at D=768, k=50,
#: HNSW (with its recall checks) took 2.0-2.5x the exact time at N=10^4 and 1.8x at 3·10^4, and
#: about 0.5x at 10^5 (measured earlier on trained activations); the log-log interpolation crosses
#: 1 near 5.3·10^4, so below 6·10^4 exact search is as fast or faster and has no recall loss
#: (``benchmarks/RESULTS_knn_scale.md``).
APPROX_MIN_POINTS = 60_000
#: Recall@10 an approximate graph must reach on the measured sample, else ``"auto"`` goes exact.
TARGET_RECALL = 0.99
#: Neighbour count the recall is measured at.
RECALL_K = 10
# HNSW graph degree and construction effort (faiss defaults are M=32, efConstruction=40; 40 leaves
# recall@10 short of 0.99 on 768-d activations, so the graph is built with more effort).
_HNSW_M = 32
_HNSW_EF_CONSTRUCTION = 80
_HNSW_EF_LADDER = (64, 128, 256, 512)
_IVF_NPROBE_LADDER = (8, 16, 32, 64, 128)
# Extra candidates proposed beyond k_max + 1, re-scored exactly before the top k_max are kept.
_PAD = 4
# Bytes of one float64 row block when the searched rows are centred.
_BLOCK_BYTES = 32 * 2**20


def _index_costs_more(t_index: float, t_exact: float) -> bool:
    """Whether the sampled rows took longer through the index (at the chosen effort) than through exact search."""
    return t_index > t_exact


@dataclass(frozen=True)
class KNNRecall:
    """Recall@k of a kNN graph measured against exact search on a random sample of rows.

    Attributes
    ----------
    recall : float
        Mean over the sampled rows of the fraction of the graph's first ``k`` neighbours whose
        exact distance is at most the true k-th distance, in [0, 1].
    k : int
        Neighbours compared per row.
    sample : int
        Rows sampled (without replacement).
    stderr : float
        Standard error of ``recall`` over the sampled rows (sample standard deviation / √sample).
    min_row : float
        The worst sampled row's recall.
    """

    recall: float
    k: int
    sample: int
    stderr: float
    min_row: float


@dataclass(frozen=True, repr=False)
class ApproxKNNGraph(KNNGraph):
    """A :class:`KNNGraph` that also says how it was built and how exact it is.

    Attributes
    ----------
    engine : str
        ``"exact"``, ``"hnsw"``, ``"ivf"`` or ``"nndescent"``: the engine whose answer is stored.
    recall : float
        Measured recall@``recall_k`` on ``recall_sample`` random rows (1.0 for exact search).
    recall_k : int
        Neighbours the recall compares.
    recall_sample : int
        Rows the recall was measured on (0 for exact search: nothing to measure).
    params : tuple of (str, value) pairs
        Engine settings used (e.g. ``(("M", 32), ("efSearch", 128))``), and for ``"auto"`` the
        approximate engine's measured recall when it fell short and exact search was used.
    seconds : float
        Wall-clock seconds spent building the graph (index, search, re-scoring, recall).
    """

    engine: str = "exact"
    recall: float = 1.0
    recall_k: int = RECALL_K
    recall_sample: int = 0
    params: tuple = ()
    seconds: float = 0.0


def _check_engine(engine: str) -> Engine:
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {_ENGINES}, got {engine!r}")
    return cast(Engine, engine)


def _search_rows(Xt: torch.Tensor, metric: str) -> tuple[np.ndarray, torch.Tensor | None]:
    """Float32 C-contiguous rows the index searches: centred (cosine: unit rows, then centred).

    Returns the rows and, for cosine, the float64 ``1/‖x‖`` used by exact re-scoring.
    """
    Xc = Xt.detach().to("cpu")
    n, d = Xc.shape
    step = max(1, _BLOCK_BYTES // (8 * max(1, d)))
    inv = None
    if metric == "cosine":
        nonzero = "cosine distance is undefined for them — drop them or use metric='euclidean'"
        inv = 1.0 / row_norms(Xc, torch.float64, nonzero=nonzero, block_bytes=_BLOCK_BYTES)

    def rows64(s: int) -> torch.Tensor:  # one block in float64 (unit rows for cosine)
        block = Xc[s : s + step].to(torch.float64)
        return block if inv is None else block * inv[s : s + step].unsqueeze(1)

    # Mean and centring in float64 block by block: no full float64 copy (0.4 GB at 10^5 x 512).
    mean = sum((rows64(s).sum(0) for s in range(0, n, step)), torch.zeros(d, dtype=torch.float64)) / n
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, step):
        out[s : s + step] = (rows64(s) - mean).numpy()
    return out, inv


def _rescore(
    X64src: torch.Tensor, inv: torch.Tensor | None, rows: np.ndarray, cand: np.ndarray, k: int, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact float64 distances from ``rows`` to candidates ``cand`` [r, kc]; self dropped, best k kept.

    Candidates equal to the row itself or negative (faiss' "no result") are set to +inf, then rows
    are sorted by (distance, index) so ties go to the lower index.
    """
    rows_t = torch.as_tensor(rows, dtype=torch.int64)
    cand_t = torch.as_tensor(cand, dtype=torch.int64)
    bad = (cand_t < 0) | (cand_t == rows_t.unsqueeze(1))
    safe = cand_t.clamp(min=0)
    src = X64src.detach().cpu()
    d = pair_distances(src, src, rows_t, safe, inv, inv)
    if metric == "cosine":
        d = d.square_().mul_(0.5)  # 1 − cos = ‖x̂ − ŷ‖²/2
    d[bad] = math.inf
    safe, order = torch.sort(safe, dim=1)
    d = torch.gather(d, 1, order)
    d, order = torch.sort(d, dim=1, stable=True)
    safe = torch.gather(safe, 1, order)
    if bool(torch.isinf(d[:, :k]).any()):
        raise RuntimeError(
            "the approximate index returned fewer than k_max distinct neighbours for some rows; "
            "use exact search (exact=True) or a smaller k_max"
        )
    return d[:, :k].contiguous(), safe[:, :k].contiguous()


def _exact_reference(Xt: torch.Tensor, rows: np.ndarray, k: int, metric: Metric) -> torch.Tensor:
    """The true k-th neighbour distance of each sampled row (self excluded), by exact brute force."""
    X = Xt.detach().cpu()
    d, i = knn(X[torch.as_tensor(rows)], k + 1, Y=X, metric=metric)
    d, i = d.to(torch.float64), i
    own = i == torch.as_tensor(rows).unsqueeze(1)
    # Drop the row itself where found, else the last column (a duplicate took its place at distance 0).
    drop = torch.where(own.any(1), own.to(torch.int8).argmax(1), torch.full_like(own[:, 0], k, dtype=torch.int64))
    keep = torch.ones_like(own)
    keep[torch.arange(len(rows)), drop] = False
    return d[keep].view(len(rows), k)[:, k - 1]


def _recall_of(found: torch.Tensor, kth: torch.Tensor, k: int) -> KNNRecall:
    """Recall from the graph's first k exact distances ``found`` [r, >=k] and the true k-th distances."""
    f = found[:, :k].to(torch.float64)
    tol = 1e-6 * kth.abs() + 1e-12  # float32 storage of the same exact distance
    per_row = (f <= (kth + tol).unsqueeze(1)).to(torch.float64).mean(1)
    n = per_row.shape[0]
    stderr = float(per_row.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
    return KNNRecall(float(per_row.mean()), k, n, stderr, float(per_row.min()))


def _sample_rows(n: int, sample: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))


def knn_recall(graph: KNNGraph, X: Array, k: int = RECALL_K, *, sample: int = 512, seed: int = 0) -> KNNRecall:
    """Measure a kNN graph's recall@k against exact search on a random sample of rows.

    Only the sampled rows are searched exactly (brute force against all N rows), so the cost is
    O(sample · N · D), not O(N² · D).

    Parameters
    ----------
    graph : KNNGraph
        A graph of ``X`` (any engine), with ``k_max >= k``.
    X : Tensor or ndarray, shape [N, D]
        The data the graph was built on.
    k : int
        Neighbours compared per row (default 10).
    sample : int
        Rows to sample without replacement (all rows when N is smaller).
    seed : int
        Seed of the row sample.

    Returns
    -------
    KNNRecall

    Raises
    ------
    ValueError
        If the graph was built on other data, or ``k`` exceeds its ``k_max``.

    Examples
    --------
    >>> import numpy as np
    >>> from geowidgets.geometry import knn_graph
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> knn_recall(knn_graph(X, k_max=10), X, sample=50).recall
    1.0
    """
    Xt, _ = as_tensor(X, "X", min_rows=2)
    fp = _fingerprint(Xt)
    if fp[:2] != graph.fingerprint[:2] or not math.isclose(fp[2], graph.fingerprint[2], rel_tol=1e-6, abs_tol=1e-6):
        raise ValueError(
            f"graph was built on other data (N={graph.fingerprint[0]}, D={graph.fingerprint[1]}) than X "
            f"(N={fp[0]}, D={fp[1]})"
        )
    k = check_k(k, graph.k_max, what=f"neighbours in this graph (k_max={graph.k_max})")
    rows = _sample_rows(Xt.shape[0], int(sample), seed)
    kth = _exact_reference(Xt, rows, k, cast(Metric, graph.metric))
    found = torch.as_tensor(np.asarray(graph.dist[:, :k].cpu() if torch.is_tensor(graph.dist) else graph.dist))
    return _recall_of(found[torch.as_tensor(rows)], kth, k)


class _Index:
    """One built approximate index: ``search(rows, kc, effort)`` returns candidate indices [r, kc]."""

    def __init__(self, engine: str, Xs: np.ndarray, kc: int, seed: int, on_cuda: bool):
        self.engine, self.Xs, self.kc = engine, Xs, kc
        self.params: dict[str, Any] = {}
        self.ladder: tuple[int, ...]
        self.index: Any  # a faiss index (CPU or GPU), for the faiss engines
        n, d = Xs.shape
        if engine in ("hnsw", "ivf"):
            if not faiss_available():
                raise ImportError(f"engine={engine!r} needs the faiss package (pip install faiss-cpu)")
            import faiss

            index: Any
            if engine == "hnsw":
                index = faiss.IndexHNSWFlat(d, _HNSW_M)
                index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
                index.add(Xs)
                # Queries read the index's own copy of the rows (a view), so the caller can drop
                # its array: one [N, D] float32 copy instead of two while the index lives.
                storage: Any = faiss.downcast_index(index.storage)
                self.Xs = faiss.rev_swig_ptr(storage.get_xb(), n * d).reshape(n, d)
                self.params.update(M=_HNSW_M, efConstruction=_HNSW_EF_CONSTRUCTION)
                self.ladder = _HNSW_EF_LADDER
            else:
                nlist = max(1, min(n // 39, int(4 * math.sqrt(n))))
                quantizer = faiss.IndexFlatL2(d)
                index = faiss.IndexIVFFlat(quantizer, d, nlist)
                train = Xs[_sample_rows(n, 64 * nlist, seed)] if n > 64 * nlist else Xs
                index.cp.seed = seed
                index.train(train)
                if on_cuda and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
                    self._gpu_res = faiss.StandardGpuResources()
                    index = faiss.index_cpu_to_gpu(self._gpu_res, torch.cuda.current_device(), index)
                    self.params["gpu"] = True
                index.add(Xs)
                self.params.update(nlist=nlist)
                self.ladder = tuple(p for p in _IVF_NPROBE_LADDER if p < nlist) + (nlist,)
            self.index = index
        elif engine == "nndescent":
            from pynndescent import NNDescent

            nnd = NNDescent(Xs, metric="euclidean", n_neighbors=min(n, kc), random_state=seed, low_memory=True)
            self.graph_idx = nnd.neighbor_graph[0]
            self.params.update(n_neighbors=min(n, kc))
            self.ladder = (0,)
        else:  # pragma: no cover - guarded by the caller
            raise ValueError(engine)

    def search(self, rows: np.ndarray, effort: int) -> np.ndarray:
        if self.engine == "nndescent":
            return self.graph_idx[rows]
        import faiss

        name = "efSearch" if self.engine == "hnsw" else "nprobe"
        if self.engine == "hnsw":
            self.index.hnsw.efSearch = max(effort, self.kc)
        else:
            faiss.ParameterSpace().set_index_parameter(self.index, "nprobe", int(effort))
        self.params[name] = max(effort, self.kc) if self.engine == "hnsw" else int(effort)
        _, idx = self.index.search(self.Xs[rows], self.kc)
        return idx


def approximate_knn_graph(
    X: Array,
    k_max: int = 50,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    *,
    engine: Engine = "auto",
    target_recall: float = TARGET_RECALL,
    recall_sample: int = 512,
    min_points: int | None = None,
    seed: int = 0,
) -> ApproxKNNGraph:
    """A kNN graph of ``X`` (self excluded) from an approximate index, with its measured recall.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
    k_max : int
        Neighbours stored per row, ``1 <= k_max <= N - 1``.
    metric : {"euclidean", "cosine"}
    engine : {"auto", "exact", "hnsw", "ivf", "nndescent"}
        ``"auto"``: exact search below ``min_points`` rows or for data on CUDA (a GPU's brute-force
        GEMM beats building an index), else HNSW, falling back to exact search when no search
        effort reaches ``target_recall`` on the sample, or when the effort that does takes longer
        on the sampled rows than their exact search (both timed on the same rows, so the choice
        follows the data: noise-like layers in many dimensions go exact). A named approximate engine is used
        whatever its recall (which is still measured and stored).
    target_recall : float
        Recall@10 the search effort is raised until (``"hnsw"``, ``"ivf"``, ``"auto"``).
    recall_sample : int
        Rows sampled to choose the effort and, independently, to measure the final recall.
    min_points : int, optional
        Rows below which ``"auto"`` uses exact search (default :data:`APPROX_MIN_POINTS`).
    seed : int
        Seed of the row samples and of the index construction where it is random.

    Returns
    -------
    ApproxKNNGraph
        ``dist`` (exact distances, ascending, X's dtype) and ``idx`` (int64) of shape [N, k_max],
        plus ``engine``, ``recall`` (measured on ``recall_sample`` rows; 1.0 for exact), ``params``.

    Raises
    ------
    ValueError
        For an unknown engine or metric, or ``k_max`` outside ``[1, N - 1]``.
    ImportError
        When ``"hnsw"`` / ``"ivf"`` is asked for and faiss is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    >>> g = approximate_knn_graph(X, k_max=10, engine="hnsw", recall_sample=100)
    >>> g.engine, g.dist.shape, g.recall >= 0.9
    ('hnsw', (300, 10), True)
    """
    t0 = time.perf_counter()
    engine = _check_engine(engine)
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be one of ('euclidean', 'cosine'), got {metric!r}")
    if not 0.0 < float(target_recall) <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}")
    Xt, kind = as_tensor(X, "X", min_rows=2)
    n = Xt.shape[0]
    k_max = check_k(k_max, n - 1)
    fp = _fingerprint(Xt)
    rk = min(RECALL_K, k_max)
    note: dict[str, Any] = {}

    def exact() -> ApproxKNNGraph:
        d, i = knn(Xt, k_max, metric=metric)
        return ApproxKNNGraph(
            to_kind(d, kind), to_kind(i, kind), metric, k_max, fp, engine="exact", recall=1.0, recall_k=rk,
            recall_sample=0, params=tuple(note.items()), seconds=time.perf_counter() - t0,
        )  # fmt: skip

    on_cuda = Xt.device.type == "cuda"
    min_points = APPROX_MIN_POINTS if min_points is None else int(min_points)
    if engine == "exact" or (engine == "auto" and (n < min_points or on_cuda)) or _all_rows_equal(Xt):
        return exact()  # (identical rows: every distance is 0, no index can do better than the tie order)
    chosen = "hnsw" if engine == "auto" else engine
    if chosen in ("hnsw", "ivf") and not faiss_available() and engine == "auto":
        chosen = "nndescent"
    Xs, inv = _search_rows(Xt, metric)
    X_src = Xt.detach().cpu()
    kc = min(n, k_max + 1 + _PAD)
    index = _Index(chosen, Xs, kc, seed, on_cuda)
    del Xs  # the index holds what it searches (HNSW: a view of its own copy)
    # Choose the effort on one sample of rows ...
    tune_rows = _sample_rows(n, recall_sample, seed)
    one = torch.zeros(1, dtype=torch.int64)  # compile (or load) the re-scoring kernel before timing
    pair_distances(X_src[:1], X_src[:1], one, one.view(1, 1))
    t_exact = time.perf_counter()
    kth = _exact_reference(Xt, tune_rows, rk, metric)
    t_exact = time.perf_counter() - t_exact  # exact search of the sampled rows against all N
    effort, tuned, t_index = None, None, 0.0
    for e in index.ladder:
        t_index = time.perf_counter()
        d, _ = _rescore(X_src, inv, tune_rows, index.search(tune_rows, e), k_max, metric)
        t_index = time.perf_counter() - t_index  # the same rows through the index at this effort
        tuned = _recall_of(d, kth, rk)
        effort = e
        if tuned.recall >= target_recall:
            break
    assert tuned is not None and effort is not None
    if engine == "auto" and (tuned.recall < target_recall or _index_costs_more(t_index, t_exact)):
        # Either no effort reaches the recall, or the effort that does costs more per row than exact
        # search (hard data: noise-like layers in many dimensions): the index's build is spent, but
        # searching every row with it would cost more than exact search, measured on the same rows.
        note.update({f"{chosen}_recall": round(tuned.recall, 4), f"{chosen}_params": tuple(index.params.items())})
        note.update(sample_seconds_index=round(t_index, 4), sample_seconds_exact=round(t_exact, 4))
        return exact()
    # ... search every row at that effort, and measure recall on an independent sample.
    all_rows = np.arange(n)
    d, i = _rescore(X_src, inv, all_rows, index.search(all_rows, effort), k_max, metric)
    check_rows = _sample_rows(n, recall_sample, seed + 1)
    final = _recall_of(d[torch.as_tensor(check_rows)], _exact_reference(Xt, check_rows, rk, metric), rk)
    d = d.to(device=Xt.device, dtype=Xt.dtype)
    i = i.to(Xt.device)
    return ApproxKNNGraph(
        to_kind(d, kind), to_kind(i, kind), metric, k_max, fp, engine=chosen, recall=final.recall, recall_k=rk,
        recall_sample=final.sample, params=tuple(index.params.items()), seconds=time.perf_counter() - t0,
    )  # fmt: skip
