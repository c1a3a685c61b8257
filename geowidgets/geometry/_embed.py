"""2-D embeddings of a layer's activations: PCA and UMAP fed our exact kNN graph; layout alignment.

UMAP here is umap-learn's own fuzzy simplicial set and SGD layout, but it never runs its own
neighbour search: it is given the exact kNN graph of our engine (``geo.knn_graph``, computed once
per layer and sliced for any ``n_neighbors``), and starts from a PCA layout instead of a spectral
one. The fuzzy graph is cached per (data, n_neighbors, metric), so a live refinement
(``init=previous_layout, n_epochs=30``) only pays for the SGD epochs.

Reproducibility: with an integer ``random_state`` umap-learn runs its SGD **single-threaded**
(its parallel SGD is a lock-free race and is not reproducible). ``random_state=None`` uses every
core, with a different layout on each call.

umap-learn compiles its numba kernels on the first call in a process (15-25 s). Most of them are
not declared ``cache=True`` by umap-learn, so before their first use we turn on numba's on-disk
cache for them (:func:`enable_umap_disk_cache`): the machine code is written next to umap-learn's
sources (``__pycache__``) or, where those are read-only, to numba's user-wide cache directory
(``NUMBA_CACHE_DIR`` when set), and every later process loads it instead of compiling. Call
:func:`warm_up_umap` early (e.g. when a widget opens): it compiles (first process) or loads
(later ones) them in a background thread, once per process, so the first slider move does not
wait for the compiler.

Consecutive layers are put in the same frame with :func:`align_layout` (orthogonal Procrustes with
reflection, uniform scale and shift), so scrubbing through layers does not flip or rotate the
picture.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import (
    Array,
    as_tensor,
    check_positive,
    column_mean,
    renamed_keywords,
    spectral_device,
    to_kind,
)
from geowidgets.geometry._knn import PrecomputedKNN, _fingerprint, resolve_knn

__all__ = ["embed", "align_layout", "warm_up_umap", "enable_umap_disk_cache", "heat_geodesic_distances"]

_METHODS = ("pca", "umap", "heatgeo")
_GRAPH_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_GRAPH_CACHE_SIZE = 8
# Bytes of one float64 row block when the PCA accumulates the scatter matrix and projects.
_PCA_BLOCK_BYTES = 32 * 2**20
_CACHE_LOCK = threading.Lock()
_WARM_LOCK = threading.Lock()
_WARM_THREAD: threading.Thread | None = None
_UMAP_CACHE_LOCK = threading.Lock()
_UMAP_CACHE_MODULES = ("umap.umap_", "umap.layouts", "umap.utils")
_umap_cached: list[str] | None = None


def enable_umap_disk_cache() -> list[str]:
    """Turn on numba's on-disk cache for umap-learn's kernels that do not enable it themselves.

    umap-learn (0.5) compiles ``smooth_knn_dist``, ``compute_membership_strengths`` and the SGD
    epoch with ``numba.njit`` but without ``cache=True``, so every new Python process compiled them
    again. This calls numba's ``Dispatcher.enable_caching()`` on each such kernel in
    ``umap.umap_``, ``umap.layouts`` and ``umap.utils`` before its first compilation. Where
    umap-learn wraps one Python function in several dispatchers with different options (the serial
    and ``parallel=True`` SGD epoch), numba's cache index does not tell them apart, so only the
    serial one (the reproducible path, ``random_state`` given) is cached and the parallel one keeps
    compiling per process. Idempotent and thread-safe; kernels compiled before the call are cached
    from their next new signature on.

    Returns
    -------
    list of str
        ``module.name`` of every kernel whose cache this process turned on (the same list on
        later calls).
    """
    global _umap_cached
    with _UMAP_CACHE_LOCK:
        if _umap_cached is not None:
            return list(_umap_cached)
        import importlib

        from numba.core.caching import NullCache
        from numba.core.registry import CPUDispatcher

        found: dict[int, list[tuple[str, Any]]] = {}
        for mod_name in _UMAP_CACHE_MODULES:
            module = importlib.import_module(mod_name)
            for name, obj in vars(module).items():
                if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod_name:
                    found.setdefault(id(obj.py_func), []).append((f"{mod_name}.{name}", obj))
        enabled = []
        for same_func in found.values():
            serial = [(n, d) for n, d in same_func if not d.targetoptions.get("parallel")]
            pick = same_func if len(same_func) == 1 else serial[:1] if len(serial) == 1 else []
            for name, dispatcher in pick:
                if isinstance(dispatcher._cache, NullCache):
                    dispatcher.enable_caching()
                    enabled.append(name)
        _umap_cached = sorted(enabled)
        return list(_umap_cached)


def _pca_scores(Xt: torch.Tensor, n_components: int) -> torch.Tensor:
    """Top principal-component scores in float64, signs fixed (largest |loading| positive).

    For N >= D the mean and the scatter matrix ``(X − μ)ᵀ(X − μ)`` are accumulated in float64 over
    row blocks of about 32 MiB, and the scores are projected block by block, so memory is
    O(D² + N·n_components) rather than two float64 copies of X (0.8 GB at 10^5 × 512).
    """
    dev = spectral_device(Xt)
    n, d = Xt.shape
    if d > n:  # wide and therefore small: an SVD of the centred rows
        X = Xt.to(dev, torch.float64)
        Xc = X - X.mean(0)
        _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)
        V = Vh[:n_components].T
    else:
        step = max(1, _PCA_BLOCK_BYTES // (8 * max(1, d)))
        mean = column_mean(Xt, torch.float64, device=dev, block_bytes=_PCA_BLOCK_BYTES)
        scatter = torch.zeros((d, d), dtype=torch.float64, device=dev)
        for s in range(0, n, step):
            block = Xt[s : s + step].to(dev, torch.float64) - mean
            scatter.addmm_(block.T, block)
        evals, evecs = torch.linalg.eigh(scatter)
        V = evecs[:, torch.argsort(evals, descending=True)[:n_components]]
    pick = torch.argmax(V.abs(), dim=0)
    signs = torch.sign(V[pick, torch.arange(V.shape[1], device=V.device)])
    signs[signs == 0] = 1
    V = V * signs
    if d > n:
        return Xc @ V
    scores = torch.empty((n, V.shape[1]), dtype=torch.float64, device=dev)
    for s in range(0, n, step):
        scores[s : s + step] = (Xt[s : s + step].to(dev, torch.float64) - mean) @ V
    return scores


def _check_init(init: Any, n: int, n_components: int) -> np.ndarray | None:
    if init is None:
        return None
    arr = init.detach().cpu().numpy() if isinstance(init, torch.Tensor) else np.asarray(init)
    if arr.shape != (n, n_components):
        raise ValueError(f"init must be a layout of shape [N={n}, {n_components}], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("init contains NaN/inf values; give a finite previous layout")
    return arr.astype(np.float32)


def _fuzzy_graph(Xt: torch.Tensor, n_neighbors: int, knn: Any, metric: str, random_state: int | None):
    """umap-learn's fuzzy simplicial set from our exact kNN graph (self prepended, as umap expects)."""
    enable_umap_disk_cache()
    from umap.umap_ import fuzzy_simplicial_set

    key = (_fingerprint(Xt), n_neighbors, metric)
    with _CACHE_LOCK:
        if key in _GRAPH_CACHE:
            _GRAPH_CACHE.move_to_end(key)
            return _GRAPH_CACHE[key]
    dist, idx = resolve_knn(Xt, n_neighbors - 1, knn, metric)
    n = Xt.shape[0]
    self_idx = np.arange(n, dtype=np.int64)[:, None]
    knn_idx = np.concatenate([self_idx, idx.cpu().numpy().astype(np.int64)], axis=1)
    knn_dist = np.concatenate([np.zeros((n, 1), np.float32), dist.float().cpu().numpy()], axis=1)
    umap_metric = "cosine" if metric == "cosine" else "euclidean"
    graph, _, _ = fuzzy_simplicial_set(
        np.empty((n, 1), np.float32),  # only the row count is read when the kNN graph is given
        n_neighbors,
        np.random.RandomState(0 if random_state is None else random_state),
        umap_metric,
        knn_indices=knn_idx,
        knn_dists=knn_dist,
    )
    with _CACHE_LOCK:
        _GRAPH_CACHE[key] = graph
        while len(_GRAPH_CACHE) > _GRAPH_CACHE_SIZE:
            _GRAPH_CACHE.popitem(last=False)
    return graph


def _umap_layout(
    Xt: torch.Tensor,
    n_neighbors: int,
    knn: Any,
    init: np.ndarray | None,
    n_epochs: int | None,
    n_components: int,
    min_dist: float,
    metric: str,
    learning_rate: float,
    random_state: int | None,
) -> np.ndarray:
    enable_umap_disk_cache()
    from umap.umap_ import find_ab_params, simplicial_set_embedding

    n = Xt.shape[0]
    graph = _fuzzy_graph(Xt, n_neighbors, knn, metric, random_state)
    if init is None:
        init = _pca_scores(Xt, n_components).cpu().numpy().astype(np.float32)
        # umap-learn's noisy_scale_coords: scale to max |coord| 10, tiny seeded noise against ties
        init = 10.0 * init / max(float(np.abs(init).max()), 1e-12)
        init = init + np.random.RandomState(random_state).normal(scale=1e-4, size=init.shape).astype(np.float32)
    if n_epochs is None:
        n_epochs = 100 if n <= 10_000 else 50
    a, b = find_ab_params(1.0, min_dist)
    rs = np.random.RandomState(random_state)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(not fully connected|n_jobs).*")
        layout, _ = simplicial_set_embedding(
            None,
            graph,
            n_components,
            learning_rate,
            a,
            b,
            1.0,  # repulsion strength (gamma)
            5,  # negative sample rate
            int(n_epochs),
            init.astype(np.float32),
            rs,
            "euclidean",
            {},
            False,
            {},
            False,
            parallel=random_state is None,
        )
    return layout


def embed(
    X: Array,
    method: str = "umap",
    n_neighbors: int = 15,
    knn: PrecomputedKNN | None = None,
    init: Array | None = None,
    *,
    n_epochs: int | None = None,
    n_components: int = 2,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    learning_rate: float = 1.0,
    random_state: int | None = 0,
    reference: Array | None = None,
    t: float = 10.0,
    harnack: float = 0.0,
    max_n: int | None = 3000,
) -> Any:
    """Embed ``X`` [N, D] in ``n_components`` (2) dimensions.

    Parameters
    ----------
    X : Tensor or ndarray [N, D]
    method : {"umap", "pca", "heatgeo"}
        ``"pca"``: principal-component scores (instant, torch, signs fixed). ``"umap"``:
        umap-learn's layout on our exact kNN graph (see the module docstring). ``"heatgeo"``:
        classical MDS of :func:`heat_geodesic_distances` (``n_neighbors`` is its k; ``t``,
        ``harnack``); above ``max_n`` points a seeded random subsample is laid out and every other
        point is placed at the inverse-distance-weighted mean of its 5 nearest sampled points.
    n_neighbors : int
        UMAP neighbourhood size, counting the point itself as umap-learn does (so the kNN
        graph must hold at least ``n_neighbors - 1`` neighbours).
    knn : KNNGraph or (dist, idx), optional
        A precomputed graph of X (``geo.knn_graph(X, k_max)``); used instead of a new search.
    init : array [N, n_components], optional
        Start layout (e.g. the previous one, for a live refinement). Default: PCA.
    n_epochs : int, optional
        SGD epochs. Default 100 for N ≤ 10k, 50 above: from a PCA start on the exact kNN graph the
        layout's trustworthiness is within 0.001 of 200/100 epochs and of plain umap-learn's 500/200
        (``benchmarks/embed.py``); ~30 for a live pass from ``init``.
    n_components : int
    min_dist : float
        UMAP's minimum distance (with spread 1).
    metric : {"euclidean", "cosine"}
    learning_rate : float
        Initial SGD step (lower it, e.g. 0.25, to keep a warm start closer to ``init``).
    random_state : int or None
        Seed. An int gives identical layouts on every call and runs UMAP's SGD single-threaded;
        None runs it on every core (not reproducible).
    reference : array [N, n_components], optional
        Align the result to this layout with :func:`align_layout` (e.g. the previous layer's).
    t, harnack, max_n
        Diffusion time, Harnack regularisation and size cap for ``method="heatgeo"``.

    Returns
    -------
    Tensor or ndarray [N, n_components]
        float32; the same kind as X.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 5))
    >>> embed(X, method="pca").shape
    (100, 2)
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    Xt, kind = as_tensor(X, "X", min_rows=3)
    n = Xt.shape[0]
    if isinstance(n_components, bool) or not isinstance(n_components, int) or not 1 <= n_components <= Xt.shape[1]:
        raise ValueError(f"n_components must be an integer in [1, D={Xt.shape[1]}], got {n_components!r}")
    init_arr = _check_init(init, n, n_components)
    if random_state is not None and (isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer))):
        raise ValueError(f"random_state must be an int or None, got {random_state!r}")
    if method == "pca":
        Y = _pca_scores(Xt, n_components).float().cpu().numpy()
    elif method == "heatgeo":
        Y = _heatgeo_layout(Xt, int(n_neighbors), t, harnack, n_components, max_n, random_state, knn)
    else:
        if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 2:
            raise ValueError(f"n_neighbors must be an integer >= 2 (it counts the point itself), got {n_neighbors!r}")
        if n_neighbors > n:
            raise ValueError(f"n_neighbors={n_neighbors} exceeds the number of points N={n}")
        if n_epochs is not None and (isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 1):
            raise ValueError(f"n_epochs must be a positive integer, got {n_epochs!r}")
        if not (min_dist >= 0 and learning_rate > 0):
            raise ValueError(f"min_dist must be >= 0 and learning_rate > 0, got {min_dist!r} and {learning_rate!r}")
        Y = _umap_layout(
            Xt, int(n_neighbors), knn, init_arr, n_epochs, n_components, min_dist, metric, learning_rate, random_state
        )
    out = torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float32))
    if reference is not None:
        out = torch.as_tensor(align_layout(out, reference))
    return to_kind(out.to(kind.device) if not kind.is_numpy else out, kind)


@renamed_keywords(Y="X")
def align_layout(X: Array, reference: Array, *, scale: bool = True, reflection: bool = True) -> Any:
    """Rotate (and reflect), scale and shift layout ``X`` to best match ``reference`` (least squares).

    Orthogonal Procrustes: with X̂, R̂ the centred layouts and UΣVᵀ = svd(X̂ᵀR̂), the rotation is
    Q = UVᵀ (``reflection=False`` forces det Q = +1), the scale s = tr Σ / ‖X̂‖²_F, and the result
    s·X̂Q + mean(reference). Two identical layouts coincide exactly; a rotated, reflected, scaled
    or shifted copy is mapped back onto the reference.

    Parameters
    ----------
    X, reference : Tensor or ndarray [N, d]
        Layouts of the same N points (e.g. two layers, or a refit and the previous layout). The
        keyword ``Y=`` still works for one release, with a ``DeprecationWarning``.
    scale : bool
        Also fit a uniform scale.
    reflection : bool
        Allow a mirror image (so a flipped layout is flipped back).

    Returns
    -------
    Tensor or ndarray [N, d], the same kind as ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.random.default_rng(0).normal(size=(50, 2))
    >>> flipped = 3 * ref @ np.array([[0.0, 1.0], [1.0, 0.0]]) + 5
    >>> bool(np.allclose(align_layout(flipped, ref), ref))
    True
    """
    Yt, kind = as_tensor(X, "X", min_rows=2)
    Rt, _ = as_tensor(reference, "reference", min_rows=2, device=Yt.device)
    if Yt.shape != Rt.shape:
        raise ValueError(f"X and reference must have the same shape, got {tuple(Yt.shape)} and {tuple(Rt.shape)}")
    dev = spectral_device(Yt)
    A = Yt.to(dev, torch.float64)
    B = Rt.to(dev, torch.float64)
    mu_a, mu_b = A.mean(0), B.mean(0)
    Ac, Bc = A - mu_a, B - mu_b
    U, S, Vh = torch.linalg.svd(Ac.T @ Bc)
    if not reflection and float(torch.linalg.det(U @ Vh)) < 0:
        U = U.clone()
        U[:, -1] = -U[:, -1]
        S = S.clone()
        S[-1] = -S[-1]
    Q = U @ Vh
    norm2 = float((Ac * Ac).sum())
    s = float(S.sum()) / norm2 if (scale and norm2 > 0) else 1.0
    out = (s * (Ac @ Q) + mu_b).to(Yt.device, Yt.dtype)
    return to_kind(out, kind)


def _warm_up() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    embed(X, method="umap", n_neighbors=10, n_epochs=11, random_state=0)


def warm_up_umap(wait: bool = False) -> threading.Thread:
    """Compile umap-learn's numba kernels in a background thread, once per process.

    Runs a tiny seeded UMAP through exactly the code path :func:`embed` uses. The kernels are
    cached on disk (:func:`enable_umap_disk_cache`), so only the first process on a machine
    compiles; later ones load the machine code. Idempotent: later calls return the same thread.
    Pass ``wait=True`` to block until compilation is done.

    Returns
    -------
    threading.Thread
        ``thread.is_alive()`` is False once the kernels are compiled.

    Examples
    --------
    >>> thread = warm_up_umap()   # returns at once; compilation continues in the background
    """
    global _WARM_THREAD
    with _WARM_LOCK:
        if _WARM_THREAD is None:
            # Not a daemon: exiting mid-compile would abort the process from inside numba/LLVM.
            _WARM_THREAD = threading.Thread(target=_warm_up, name="geowidgets-umap-warmup", daemon=False)
            _WARM_THREAD.start()
        thread = _WARM_THREAD
    if wait:
        thread.join()
    return thread


def _heat_kernel(
    Xt: torch.Tensor, k: int, t: float, decay: float, knn: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heat kernel H_t [n, n] (float64) from the alpha-decay graph, plus L's eigenpairs."""
    n = Xt.shape[0]
    k_max = min(3 * k, n - 1)
    dist, idx = resolve_knn(Xt, k_max, knn)
    dev = spectral_device(Xt)
    dist, idx = dist.to(dev, torch.float64), idx.to(dev)
    eps = dist[:, k - 1 : k].clamp_min(1e-300)  # distance to the k-th neighbour
    W = torch.zeros(n, n, dtype=torch.float64, device=dev)
    W.scatter_(1, idx, torch.exp(-((dist / eps) ** decay)))
    W.fill_diagonal_(1.0)  # the point itself, at distance 0, as in PHATE's graph
    W = 0.5 * (W + W.T)
    d_isqrt = W.sum(1).rsqrt()
    L = torch.eye(n, dtype=torch.float64, device=dev) - d_isqrt[:, None] * W * d_isqrt[None, :]
    evals, evecs = torch.linalg.eigh(L)
    H = (evecs * torch.exp(-t * evals)) @ evecs.T
    return H.clamp_min(0.0), evals, evecs


def heat_geodesic_distances(
    X: Array,
    k: int = 10,
    t: float = 10.0,
    *,
    harnack: float = 0.0,
    decay: float = 40.0,
    knn: PrecomputedKNN | None = None,
    max_n: int | None = 3000,
) -> Any:
    """Heat-geodesic distances (Varadhan's formula on the heat kernel of the data graph).

    Source: *A Heat Diffusion Perspective on Geodesic Preserving Dimensionality Reduction*
    (see docs/probes.md#embeddings-pca-umap-heat-geodesic). Steps:

    1. W_ij = exp(−(d_ij/ε_k(i))^decay) over the 3k nearest neighbours (ε_k(i): distance to the
       k-th), the point itself with weight 1, then W ← (W + Wᵀ)/2 (PHATE's alpha-decay graph,
       built from our exact kNN graph).
    2. L = I − D^{−½} W D^{−½}; H_t = V e^{−tΛ} Vᵀ exactly from the eigendecomposition of L
       (the paper's code uses a Chebyshev approximation), negatives set to 0.
    3. d_t(i, j) = sqrt(max(0, −4t·log(H_t(i,j) + 1e-16) + h·4t·log(½(H_t(i,i) + H_t(j,j)) + 1e-16))),
       h = ``harnack`` ∈ [0, 1]; the diagonal is set to 0.

    Parameters
    ----------
    X : Tensor or ndarray [N, D]
    k : int
        Neighbourhood size for the bandwidth ε_k (the graph holds 3k neighbours).
    t : float
        Diffusion time: small t is local (SNE-like), large t global (PHATE-like).
    harnack : float
        Harnack regularisation h in [0, 1].
    decay : float
        Alpha-decay exponent.
    knn : KNNGraph or (dist, idx), optional
        Precomputed graph of X with at least min(3k, N−1) neighbours.
    max_n : int or None
        Largest N accepted (the cost is O(N³)); larger data raise ``ValueError`` — subsample
        first, or pass ``max_n=None`` to force it. ``embed(method="heatgeo")`` subsamples for you.

    Returns
    -------
    Tensor or ndarray [N, N], float64, symmetric, zero diagonal.

    Examples
    --------
    >>> import numpy as np
    >>> D = heat_geodesic_distances(np.random.default_rng(0).normal(size=(60, 3)), k=5, t=5.0)
    >>> D.shape, bool(np.allclose(D, D.T))
    ((60, 60), True)
    """
    Xt, kind = as_tensor(X, "X", min_rows=3)
    n = Xt.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be an integer with 1 <= k < N={n}, got {k!r}")
    t = check_positive(t, "t")
    decay = check_positive(decay, "decay")
    if not (isinstance(harnack, (int, float)) and 0.0 <= harnack <= 1.0):
        raise ValueError(f"harnack must be a number in [0, 1], got {harnack!r}")
    if max_n is not None and n > max_n:
        raise ValueError(
            f"heat_geodesic_distances is O(N^3) and N={n} exceeds max_n={max_n}; subsample the data, "
            "raise max_n, or pass max_n=None to force it"
        )
    H, _, _ = _heat_kernel(Xt, int(k), t, decay, knn)
    logH = torch.log(H + 1e-16)
    d2 = -4.0 * t * logH
    if harnack:
        diag = torch.diagonal(H)
        d2 = d2 + harnack * 4.0 * t * torch.log(0.5 * (diag[:, None] + diag[None, :]) + 1e-16)
    D = torch.sqrt(d2.clamp_min(0.0))
    D = 0.5 * (D + D.T)
    D.fill_diagonal_(0.0)
    return to_kind(D.to(Xt.device) if not kind.is_numpy else D.cpu(), kind)


def _classical_mds(D: torch.Tensor, n_components: int) -> torch.Tensor:
    """Classical (Torgerson) MDS of a distance matrix, signs fixed."""
    n = D.shape[0]
    J = torch.eye(n, dtype=D.dtype, device=D.device) - 1.0 / n
    B = -0.5 * J @ (D * D) @ J
    evals, evecs = torch.linalg.eigh(B)
    order = torch.argsort(evals, descending=True)[:n_components]
    V = evecs[:, order]
    pick = torch.argmax(V.abs(), dim=0)
    signs = torch.sign(V[pick, torch.arange(V.shape[1], device=V.device)])
    signs[signs == 0] = 1
    return V * signs * evals[order].clamp_min(0.0).sqrt()


def _heatgeo_layout(
    Xt: torch.Tensor, k: int, t: float, harnack: float, n_components: int, max_n: int | None, random_state, knn
) -> np.ndarray:
    n = Xt.shape[0]
    if max_n is None or n <= max_n:
        D = heat_geodesic_distances(Xt, k, t, harnack=harnack, knn=knn, max_n=None)
        return _classical_mds(D, n_components).float().cpu().numpy()
    rng = np.random.default_rng(0 if random_state is None else random_state)
    keep = torch.from_numpy(np.sort(rng.choice(n, size=max_n, replace=False))).to(Xt.device)
    sub = Xt[keep]
    Ysub = _classical_mds(heat_geodesic_distances(sub, k, t, harnack=harnack, max_n=None), n_components)
    from geowidgets.geometry._knn import knn as _knn_search

    dist, idx = _knn_search(Xt, 5, Y=sub)
    w = 1.0 / dist.double().clamp_min(1e-12)
    Y = (w[:, :, None] * Ysub[idx.to(Ysub.device)]).sum(1) / w.sum(1, keepdim=True)
    Y[keep] = Ysub
    return Y.float().cpu().numpy()
