"""Diffusion spectral entropy and mutual information (Liao, Liu et al.; see docs/probes.md#dse-and-dsmi).

The diffusion operator of a layer's data graph is ``P = D⁻¹G`` with the Gaussian affinity
``G_ij = exp(−‖x_i − x_j‖² / (2σ²))``; its eigenvalues are those of the symmetric
``K = D^{−½} G D^{−½}``. :func:`diffusion_spectrum` computes them once per (data, σ) in float64 and
caches them, so the diffusion time ``t`` is applied to cached eigenvalues: a t slider costs
nothing. The formulas follow the authors' ``dse-dsmi`` 1.1 package, with the trivial top
eigenvalue kept, and the bandwidth made relative to the layer (``scale``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_tensor, check_positive, renamed_keywords, spectral_device, to_kind
from geowidgets.geometry._spectra import cached, eigvalsh_f64

__all__ = ["dse", "dsmi", "diffusion_spectrum", "diffusion_entropy_from_spectrum"]

Scale = Literal["sqrt_dim", "median"] | None
_SCALES = ("sqrt_dim", "median", None)
_EPS = float(np.finfo(float).eps)  # the package adds this to every probability


def _check_max_n(max_n: Any) -> int | None:
    if max_n is None:
        return None
    if isinstance(max_n, bool) or not isinstance(max_n, (int, np.integer)) or max_n < 2:
        raise ValueError(f"max_n must be an integer >= 2 or None (no subsampling), got {max_n!r}")
    return int(max_n)


def _subsample_indices(n: int, max_n: int | None, random_state: int | None) -> np.ndarray | None:
    """Sorted indices of a reproducible subsample of size ``max_n``, or None when ``n <= max_n``."""
    if max_n is None or n <= max_n:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=max_n, replace=False))


def _squared_distances(X: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances (float64), exact zeros on the diagonal.

    Rows are centred first so the expansion ``‖x‖² + ‖y‖² − 2x·y`` does not cancel a common offset.
    """
    X = X - X.mean(0)
    sq = (X * X).sum(1)
    d2 = sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (X @ X.T)
    d2.clamp_(min=0.0)
    d2.fill_diagonal_(0.0)
    return d2


def _bandwidth(d2: torch.Tensor, n_features: int, sigma: float, scale: Scale) -> float:
    if scale == "sqrt_dim":
        return sigma * math.sqrt(n_features)
    if scale == "median":
        n = d2.shape[0]
        iu = torch.triu_indices(n, n, offset=1, device=d2.device)
        median = float(torch.sqrt(d2[iu[0], iu[1]]).median())
        if not median > 0:
            raise ValueError("scale='median' needs distinct points, but the median pairwise distance is 0")
        return sigma * median
    return sigma


def _spectrum_f64(X64: torch.Tensor, sigma: float, scale: Scale) -> torch.Tensor:
    """Eigenvalues (descending) of K = D^{-1/2} G D^{-1/2} for float64 data."""
    d2 = _squared_distances(X64)
    return _spectrum_from_d2(d2, _bandwidth(d2, X64.shape[1], sigma, scale))


def _spectrum_from_d2(d2: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Eigenvalues (descending) of the normalised Gaussian kernel of squared distances ``d2``."""
    G = torch.exp(d2 / (-2.0 * bandwidth * bandwidth))
    inv_sqrt_deg = torch.rsqrt(G.sum(1))
    K = G * inv_sqrt_deg.unsqueeze(1) * inv_sqrt_deg.unsqueeze(0)
    K = 0.5 * (K + K.T)
    return eigvalsh_f64(K).flip(0)


def _validated_spectrum(
    Xt: torch.Tensor, sigma: float, scale: Scale, max_n: int | None, random_state, source: Any = None
) -> torch.Tensor:
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of 'sqrt_dim', 'median' or None, got {scale!r}")
    sigma = check_positive(sigma, "sigma")
    max_n = _check_max_n(max_n)

    def compute() -> torch.Tensor:
        X64 = Xt.to(device=spectral_device(Xt), dtype=torch.float64)
        sub = _subsample_indices(X64.shape[0], max_n, random_state)
        if sub is not None:
            X64 = X64[torch.from_numpy(sub).to(X64.device)]
        return _spectrum_f64(X64, sigma, scale)

    return cached(source, ("diffusion", sigma, scale, max_n, random_state), compute)


def diffusion_spectrum(
    X: Array,
    sigma: float = 1.0,
    *,
    scale: Scale = "sqrt_dim",
    max_n: int | None = 2000,
    random_state: int | None = 0,
) -> Any:
    """Eigenvalues of the diffusion operator of the data's Gaussian affinity graph.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
        Activations.
    sigma : float
        Bandwidth multiplier (> 0); the kernel bandwidth is ``sigma × s`` where ``s`` depends on
        ``scale``.
    scale : {"sqrt_dim", "median", None}
        ``"sqrt_dim"``: ``s = √D`` (the paper's scripts; suits O(1)-per-feature activations);
        ``"median"``: ``s`` = median pairwise distance (scale-invariant); None: ``sigma`` is the
        absolute bandwidth (the package's default is 10).
    max_n : int or None
        Above this many rows, a reproducible random subsample of ``max_n`` rows is used
        (O(n²) memory, O(n³) time); None forces all rows.
    random_state : int or None
        Seed of the subsample.

    Returns
    -------
    Tensor or ndarray, shape [n]
        Eigenvalues of ``P = D⁻¹G`` in descending order (float64; the first is the trivial 1).
        Cached per (tensor, sigma, scale, max_n, random_state) for torch input.

    Examples
    --------
    >>> import numpy as np
    >>> lam = diffusion_spectrum(np.random.default_rng(0).normal(size=(100, 5)))
    >>> lam.shape, round(float(lam[0]), 6)
    ((100,), 1.0)
    """
    Xt, kind = as_tensor(X, "X", min_rows=2)
    return to_kind(_validated_spectrum(Xt, sigma, scale, max_n, random_state, source=X), kind)


def diffusion_entropy_from_spectrum(eigenvalues: Array, t: float = 1.0) -> float:
    """DSE (bits) of a diffusion spectrum at diffusion time ``t``.

    ``p_i = |λ_i|^t / Σ_j |λ_j|^t + eps`` (eps = float64 machine epsilon, as in ``dse-dsmi``) and
    ``DSE = −Σ p_i log₂ p_i``.

    Parameters
    ----------
    eigenvalues : Tensor or ndarray, shape [n]
        From :func:`diffusion_spectrum`.
    t : float
        Diffusion time, > 0 (real values allowed).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> round(diffusion_entropy_from_spectrum(np.ones(8)), 6)
    3.0
    """
    t = check_positive(t, "t")
    lam = torch.as_tensor(np.asarray(eigenvalues) if not isinstance(eigenvalues, torch.Tensor) else eigenvalues)
    lam = lam.to(torch.float64).abs() ** t
    total = float(lam.sum())
    if not total > 0:
        raise ValueError(f"every |eigenvalue|^t underflows to 0 at t={t}; use a smaller t")
    p = lam / total + _EPS
    return float(-(p * torch.log2(p)).sum())


def dse(
    X: Array,
    sigma: float = 1.0,
    t: float = 1.0,
    *,
    scale: Scale = "sqrt_dim",
    max_n: int | None = 2000,
    random_state: int | None = 0,
) -> float:
    """Diffusion spectral entropy (bits): a noise-resistant count of the data graph's diffusion modes.

    Lies in ``[0, log₂ n]``; it grows with the intrinsic dimension of the data and with the number
    of separated clusters. ``t`` is applied to cached eigenvalues, so varying it is free.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
        Activations.
    sigma : float
        Bandwidth multiplier (see :func:`diffusion_spectrum`).
    t : float
        Diffusion time (> 0); larger t suppresses small, noisy eigenvalues.
    scale, max_n, random_state
        See :func:`diffusion_spectrum`.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(300, 10))
    >>> 0.0 <= dse(X) <= float(np.log2(300))
    True
    """
    t = check_positive(t, "t")
    Xt, _ = as_tensor(X, "X", min_rows=2)
    return diffusion_entropy_from_spectrum(_validated_spectrum(Xt, sigma, scale, max_n, random_state, source=X), t)


def _reference_groups(labels: Any, n: int, n_clusters: int) -> np.ndarray:
    """Discrete group of each sample: labels as given, 1-D floats binned, vectors clustered."""
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.shape[:1] != (n,):
        raise ValueError(f"labels must have one entry per row of X ({n}), got shape {arr.shape}")
    if arr.ndim > 2:
        raise ValueError(f"labels must be classes [N], scalars [N] or vectors [N, D'], got shape {arr.shape}")
    if arr.dtype == object or np.iscomplexobj(arr):
        raise ValueError("labels must be real-valued numeric")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 1 and (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        return np.unique(arr, return_inverse=True)[1].astype(np.int64)
    if not np.isfinite(arr).all():
        raise ValueError("labels contain NaN/inf; only finite values are allowed")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 2:
        raise ValueError(f"n_clusters must be an integer >= 2, got {n_clusters!r}")
    if arr.ndim == 1:
        span = arr.max() - arr.min()
        if not span > 0:
            raise ValueError(
                "labels are constant, so they cannot be binned; DSMI with a constant variable is 0 by definition"
            )
        scaled = (arr - arr.min()) / span
        return np.digitize(scaled, bins=np.linspace(0, 1, n_clusters + 1)[:-1]).astype(np.int64)
    from sklearn.cluster import SpectralClustering

    clustering = SpectralClustering(
        n_clusters=int(n_clusters), affinity="nearest_neighbors", assign_labels="cluster_qr", random_state=0
    )
    return clustering.fit(arr).labels_.astype(np.int64)


@renamed_keywords(y="labels")
def dsmi(
    X: Array,
    labels: Array,
    sigma: float = 1.0,
    t: float = 1.0,
    *,
    scale: Scale = "sqrt_dim",
    repetitions: int = 5,
    n_clusters: int = 10,
    max_n: int | None = 2000,
    random_state: int | None = 0,
) -> float:
    """Diffusion spectral mutual information (bits) between a layer's geometry and ``labels``.

    ``DSMI(Z; Y) = Σ_y p(y)·[mean_r DSE(Z*_r) − DSE(Z | Y=y)]`` where each ``Z*_r`` is a random
    subset of size ``|Y=y|`` (``repetitions`` of them). Integer ``labels`` are used as classes; a
    float vector ``[N]`` is min–max binned into ``n_clusters`` bins and ``[N, D']`` vectors are
    spectrally clustered into ``n_clusters`` groups, as in ``dse-dsmi``.

    All entropies share one absolute bandwidth, computed from the (subsampled) full data: for
    ``scale="median"`` the median pairwise distance of the whole set, not of each subset.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
        Activations.
    labels : array-like, shape [N] or [N, D']
        Class labels, or a continuous variable (binned or clustered, see above). The keyword
        ``y=`` still works for one release, with a ``DeprecationWarning``.
    sigma, t, scale
        As in :func:`dse`.
    repetitions : int
        Random subsets per group for the unconditional entropy (>= 1).
    n_clusters : int
        Bins / clusters for continuous ``labels``.
    max_n : int or None
        Above this many rows, a reproducible subsample of ``max_n`` rows (with their ``labels``) is used.
    random_state : int or None
        Seed for the subsample and the random subsets.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 50)
    >>> X = rng.normal(size=(150, 5)) * 0.3 + 10 * np.eye(5)[y]
    >>> dsmi(X, y) > 1.0
    True
    """
    t = check_positive(t, "t")
    sigma = check_positive(sigma, "sigma")
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of 'sqrt_dim', 'median' or None, got {scale!r}")
    if isinstance(repetitions, bool) or not isinstance(repetitions, (int, np.integer)) or repetitions < 1:
        raise ValueError(f"repetitions must be an integer >= 1, got {repetitions!r}")
    max_n = _check_max_n(max_n)
    Xt, _ = as_tensor(X, "X", min_rows=2)
    groups = _reference_groups(labels, Xt.shape[0], n_clusters)
    X64 = Xt.to(device=spectral_device(Xt), dtype=torch.float64)
    sub = _subsample_indices(X64.shape[0], max_n, random_state)
    if sub is not None:
        X64 = X64[torch.from_numpy(sub).to(X64.device)]
        groups = groups[sub]
    n = X64.shape[0]
    # One distance matrix and one absolute bandwidth for every subset.
    d2 = _squared_distances(X64)
    bandwidth = _bandwidth(d2, X64.shape[1], sigma, scale)
    rng = np.random.default_rng(random_state)

    def entropy_of(rows: np.ndarray) -> float:
        if rows.size < 2:
            return 0.0  # a one-point graph has the single eigenvalue 1: entropy 0 (up to eps)
        index = torch.from_numpy(rows).to(d2.device)
        lam = _spectrum_from_d2(d2[index][:, index], bandwidth)
        return diffusion_entropy_from_spectrum(lam, t)

    codes, counts = np.unique(groups, return_counts=True)
    total = 0.0
    for code, count in zip(codes, counts):
        conditional = entropy_of(np.flatnonzero(groups == code))
        unconditional = np.mean(
            [entropy_of(np.sort(rng.choice(n, size=count, replace=False))) for _ in range(repetitions)]
        )
        total += count / n * (unconditional - conditional)
    return float(total)
