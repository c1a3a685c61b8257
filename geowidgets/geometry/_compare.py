"""Comparing two representations of the same samples: CKA and mutual kNN overlap.

Both take two activation matrices whose rows are the same N samples (two layers, two models,
two checkpoints) and may have different widths.

* :func:`cka`: centred kernel alignment, Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of
  Neural Network Representations Revisited" (ICML), with the debiased HSIC estimator of Song,
  Smola, Gretton, Bedo & Borgwardt 2012, "Feature Selection via Dependence Maximization" (JMLR)
  as used by Nguyen, Raghu & Kornblith 2021.
* :func:`mutual_knn`: the mean share of each sample's k nearest neighbours that the two
  representations have in common (the mutual-kNN alignment of Huh, Cheung, Wang & Isola 2024,
  "The Platonic Representation Hypothesis").
* :func:`cka_matrix`: CKA between every layer of one model and every layer of another.

Formulas, defaults, cost and validation: docs/probes.md#cka-and-cka-matrix and
docs/probes.md#mutual-knn.

Everything is computed in float64 on the data's device (MPS uses the CPU). Linear CKA is computed
in feature space (``‖YᵀX‖²_F`` on centred data, chunked over rows, no N×N matrix) when that is the
cheaper side; otherwise, and for the RBF kernel, the Gram matrices are built one block of rows at
a time, so memory stays O(rows · N).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch

from geowidgets.geometry._arrays import Array, as_tensor, check_k, check_positive, spectral_device
from geowidgets.geometry._knn import PrecomputedKNN, resolve_knn

__all__ = ["cka", "cka_matrix", "mutual_knn"]

Kernel = Literal["linear", "rbf"]
_KERNELS = ("linear", "rbf")
# Bytes of one float64 block of Gram rows [rows, N] (two are alive at a time, one per side).
_BLOCK_BYTES = 64 * 2**20
# Largest feature-space cross product [Dx, Dy] (float64) computed in one piece.
_FEATURE_BYTES = 512 * 2**20
# The median heuristic needs every pairwise distance at once: N² float64 values at most this size.
_MEDIAN_BYTES = 2**30
# Elements of one [rows, k, k] neighbour-comparison block in mutual_knn.
_OVERLAP_ELEMENTS = 16 * 2**20


@dataclass
class _Rep:
    """One representation, prepared for HSIC terms: centred float64 rows and the kernel's parameters."""

    Xc: torch.Tensor  # [N, D] float64, column means removed
    kernel: str
    gamma: float | None  # rbf: 1 / (2 σ²)
    row_sq: torch.Tensor  # [N] squared norms of the centred rows

    @property
    def n(self) -> int:
        return int(self.Xc.shape[0])

    @property
    def d(self) -> int:
        return int(self.Xc.shape[1])

    def gram_rows(self, rows: slice) -> torch.Tensor:
        """Rows ``rows`` of the (uncentred) kernel matrix, [r, N] float64."""
        block = self.Xc[rows]
        dot = block @ self.Xc.T
        if self.kernel == "linear":
            return dot
        d2 = dot.mul_(-2.0).add_(self.row_sq[rows].unsqueeze(1)).add_(self.row_sq.unsqueeze(0)).clamp_(min=0.0)
        start = rows.start or 0
        i = torch.arange(d2.shape[0], device=d2.device)
        d2[i, i + start] = 0.0
        return d2.mul_(-cast(float, self.gamma)).exp_()  # rbf: gamma is set


def _check_kernel(kernel: str) -> Kernel:
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be one of {_KERNELS}, got {kernel!r}")
    return cast(Kernel, kernel)


def _as_rows(X: Any, name: str) -> torch.Tensor:
    """``X`` as a float tensor [N, D]; trailing dimensions (channels, positions) are flattened."""
    t, _ = as_tensor(X, name, ndim=None, min_rows=1)
    if t.ndim < 2:
        raise ValueError(f"{name} must have shape [N, D] (or [N, ...], flattened), got shape {tuple(t.shape)}")
    return t.reshape(t.shape[0], -1)


def _median_sigma(Xc: torch.Tensor, row_sq: torch.Tensor, name: str) -> float:
    """Median of the N×N matrix of pairwise distances, diagonal included (Kornblith et al.'s code)."""
    n = Xc.shape[0]
    if n * n * 8 > _MEDIAN_BYTES:
        raise ValueError(
            f"{name} has N={n} samples: the median-distance bandwidth needs all N² = {n * n:,} distances "
            f"({n * n * 8 / 2**30:.1f} GiB); pass sigma= explicitly (e.g. estimated on a subsample) or use "
            "kernel='linear'"
        )
    d2 = (Xc @ Xc.T).mul_(-2.0).add_(row_sq.unsqueeze(1)).add_(row_sq.unsqueeze(0)).clamp_(min=0.0)
    d2.fill_diagonal_(0.0)
    flat = d2.reshape(-1)
    m = flat.numel()
    lo = torch.kthvalue(flat, (m + 1) // 2).values
    hi = torch.kthvalue(flat, m // 2 + 1).values
    # The median of the squared distances is the square of the median distance (monotone map).
    med = 0.5 * (math.sqrt(float(lo)) + math.sqrt(float(hi)))
    if not med > 0:
        raise ValueError(f"{name}: the median pairwise distance is 0 (over half the samples coincide); pass sigma=")
    return med


def _prepare(
    X: Any, name: str, kernel: str, sigma: float | None, sigma_fraction: float, device: torch.device | None = None
) -> _Rep:
    t = _as_rows(X, name)
    dev = spectral_device(t) if device is None else device
    X64 = t.to(device=dev, dtype=torch.float64)
    Xc = X64 - X64.mean(0, keepdim=True)
    row_sq = (Xc * Xc).sum(1)
    if float(row_sq.sum()) == 0.0:
        raise ValueError(f"{name} is constant across samples (zero variance); CKA is undefined")
    gamma = None
    if kernel == "rbf":
        s = check_positive(sigma, "sigma") if sigma is not None else sigma_fraction * _median_sigma(Xc, row_sq, name)
        gamma = 1.0 / (2.0 * s * s)
    return _Rep(Xc=Xc, kernel=kernel, gamma=gamma, row_sq=row_sq)


def _use_feature_space(a: _Rep, b: _Rep) -> bool:
    """Linear kernel: ``‖XᵀY‖²`` costs N·Dx·Dy, the Gram route N²·(Dx + Dy); pick the cheaper that fits."""
    if a.kernel != "linear" or b.kernel != "linear":
        return False
    return a.d * b.d * 8 <= _FEATURE_BYTES and a.d * b.d <= a.n * (a.d + b.d)


def _hsic(a: _Rep, b: _Rep, debiased: bool) -> float:
    """HSIC of two representations up to a factor that depends on N only.

    Biased: ``tr(K H L H)`` (= (N−1)² · HSIC₀ of Gretton et al. 2005). Debiased: Song et al.'s
    unbiased estimator times N(N−3), ``tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((N−1)(N−2)) − 2/(N−2)·1ᵀK̃L̃1``
    with ``K̃`` the Gram matrix with its diagonal set to zero.
    """
    n = a.n
    if _use_feature_space(a, b):
        cross = torch.zeros(a.d, b.d, dtype=torch.float64, device=a.Xc.device)
        step = max(1, _BLOCK_BYTES // (8 * (a.d + b.d)))
        for s in range(0, n, step):
            cross.addmm_(a.Xc[s : s + step].T, b.Xc[s : s + step])
        value = float((cross * cross).sum())
        if not debiased:
            return value
        # Centred data: K1 = 0, so K̃1 = −diag K and 1ᵀK̃1 = −tr K (Kornblith et al.'s feature-space form).
        ra, rb = a.row_sq, b.row_sq
        return value - n / (n - 2) * float(ra @ rb) + float(ra.sum()) * float(rb.sum()) / ((n - 1) * (n - 2))
    step = max(1, _BLOCK_BYTES // (8 * n))
    kl = 0.0
    k1 = torch.empty(n, dtype=torch.float64, device=a.Xc.device)
    l1 = torch.empty_like(k1)
    dk = torch.empty_like(k1)
    dl = torch.empty_like(k1)
    for s in range(0, n, step):
        rows = slice(s, min(n, s + step))
        K = a.gram_rows(rows)
        L = K if b is a else b.gram_rows(rows)
        kl += float((K * L).sum())
        k1[rows] = K.sum(1)
        l1[rows] = L.sum(1)
        i = torch.arange(K.shape[0], device=K.device)
        dk[rows] = K[i, i + s]
        dl[rows] = L[i, i + s]
    if not debiased:
        return kl - 2.0 / n * float(k1 @ l1) + float(k1.sum()) * float(l1.sum()) / (n * n)
    ka, lb = k1 - dk, l1 - dl  # row sums of K̃ and L̃
    tr = kl - float(dk @ dl)
    return tr + float(ka.sum()) * float(lb.sum()) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(ka @ lb)


def _cka_from_terms(xy: float, xx: float, yy: float) -> float:
    if not (xx > 0 and yy > 0):
        raise ValueError(
            "the debiased HSIC of a representation with itself is <= 0 (too few samples, or a nearly constant "
            "representation); use more samples or debiased=False"
        )
    return xy / math.sqrt(xx * yy)


def _check_pair(a: _Rep, b: _Rep, debiased: bool, names: tuple[str, str]) -> None:
    if a.n != b.n:
        raise ValueError(f"{names[0]} and {names[1]} must hold the same samples (rows), got N={a.n} and N={b.n}")
    if a.n < (4 if debiased else 2):
        raise ValueError(f"CKA needs at least {4 if debiased else 2} samples{' when debiased' if debiased else ''}")


def cka(
    X: Array,
    Y: Array,
    *,
    kernel: Kernel = "linear",
    sigma: float | None = None,
    sigma_fraction: float = 1.0,
    debiased: bool = False,
) -> float:
    """Centred kernel alignment between two representations of the same samples.

    ``CKA(K, L) = HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L))`` with Gram matrices ``K`` of ``X`` and
    ``L`` of ``Y`` and ``HSIC(K, L) ∝ tr(K H L H)``, ``H = I − 11ᵀ/N`` (Kornblith et al. 2019, eq. 3).
    For the linear kernel this is ``‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)`` on column-centred data, which
    is how it is computed when the feature dimensions are small (no N×N matrix).

    Linear CKA is invariant to orthogonal transforms and isotropic scaling of either side (not to
    arbitrary invertible maps); ``CKA(X, X) = 1``. The RBF kernel is ``k(x, x') = exp(−‖x − x'‖² /
    (2σ²))``; by default ``σ = sigma_fraction × median distance`` over the N×N matrix of pairwise
    distances (diagonal included, as in the paper's reference code).

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, Dx] (or [N, ...], flattened)
        First representation (e.g. a layer of model A). Any float or integer dtype.
    Y : Tensor or ndarray, shape [N, Dy] (or [N, ...])
        Second representation of the same N samples, in the same order.
    kernel : {"linear", "rbf"}
    sigma : float, optional
        RBF bandwidth, in the units of the activations, used for both X and Y. Default: the median
        heuristic, per representation.
    sigma_fraction : float
        Multiplier of the median distance when ``sigma`` is None (the paper reports 0.2, 0.4, 0.8).
    debiased : bool
        Use the unbiased HSIC estimator of Song et al. 2012 (Nguyen, Raghu & Kornblith 2021) in
        all three terms. It removes the bias towards 1 of CKA when D is large compared with N;
        the value can then be slightly negative. Needs N >= 4.

    Returns
    -------
    float
        CKA, in [0, 1] for the biased estimator.

    Raises
    ------
    ValueError
        Different numbers of rows, too few samples, a constant representation, an unknown kernel,
        a non-positive ``sigma``, non-finite values, or the median heuristic on more samples than
        fit in memory (N above about 11,500; pass ``sigma=`` then).

    Notes
    -----
    Computed in float64. Memory: O(N·(Dx + Dy)) plus Dx·Dy for the feature-space route, else
    O(rows·N) per block of Gram rows (the Gram matrices are never stored whole).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 10))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    >>> round(cka(X, 3.0 * X @ Q), 6)
    1.0
    >>> cka(X, rng.normal(size=(200, 10))) < 0.2
    True
    """
    kernel = _check_kernel(kernel)
    frac = check_positive(sigma_fraction, "sigma_fraction")
    a = _prepare(X, "X", kernel, sigma, frac)
    b = _prepare(Y, "Y", kernel, sigma, frac, device=a.Xc.device)
    _check_pair(a, b, debiased, ("X", "Y"))
    return _cka_from_terms(_hsic(a, b, debiased), _hsic(a, a, debiased), _hsic(b, b, debiased))


def cka_matrix(
    acts_a: Mapping[str, Any],
    acts_b: Mapping[str, Any] | None = None,
    *,
    kernel: Kernel = "linear",
    sigma: float | None = None,
    sigma_fraction: float = 1.0,
    debiased: bool = False,
) -> pd.DataFrame:
    """CKA between every layer of one model (or checkpoint) and every layer of another.

    Each layer is prepared once (centred, bandwidth chosen) and its self-similarity computed once;
    each cell is then :func:`cka` of the two layers (Kornblith et al. 2019, Fig. 2-style heat map).

    Parameters
    ----------
    acts_a : mapping of str to Tensor or ndarray [N, D_layer] (or [N, ...], flattened)
        Layer name -> activations of model A (a dict, or a :class:`geowidgets.Activations`).
    acts_b : mapping of str to Tensor or ndarray, optional
        Layers of model B on the same N samples in the same order. Default: ``acts_a`` (the
        layer-by-layer self-similarity of one model, symmetric with a unit diagonal).
    kernel, sigma, sigma_fraction, debiased
        As in :func:`cka`.

    Returns
    -------
    pandas.DataFrame
        float64 [len(acts_a), len(acts_b)]; rows are A's layers, columns B's, in the mappings' order.

    Raises
    ------
    ValueError
        An empty mapping, layers with different numbers of samples, or any error of :func:`cka`
        (the message names the layer).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> h = rng.normal(size=(100, 8))
    >>> m = cka_matrix({"fc1": h, "fc2": np.tanh(h)}, {"fc1": h, "noise": rng.normal(size=(100, 8))})
    >>> m.shape, round(float(m.loc["fc1", "fc1"]), 6)
    ((2, 2), 1.0)
    """
    kernel = _check_kernel(kernel)
    frac = check_positive(sigma_fraction, "sigma_fraction")
    same = acts_b is None
    acts_b = acts_a if acts_b is None else acts_b
    for what, acts in (("acts_a", acts_a), ("acts_b", acts_b)):
        if not isinstance(acts, Mapping) and not hasattr(acts, "items"):
            raise ValueError(f"{what} must be a mapping of layer name -> activations [N, D], got {type(acts).__name__}")
        if len(acts) == 0:
            raise ValueError(f"{what} holds no layers")
    reps_a = {str(k): _prepare(v, f"acts_a[{k!r}]", kernel, sigma, frac) for k, v in acts_a.items()}
    device = next(iter(reps_a.values())).Xc.device
    reps_b = (
        reps_a
        if same
        else {str(k): _prepare(v, f"acts_b[{k!r}]", kernel, sigma, frac, device=device) for k, v in acts_b.items()}
    )
    self_terms: dict[int, float] = {}

    def self_term(rep: _Rep) -> float:
        if id(rep) not in self_terms:
            self_terms[id(rep)] = _hsic(rep, rep, debiased)
        return self_terms[id(rep)]

    out = np.empty((len(reps_a), len(reps_b)), dtype=np.float64)
    for i, (na, ra) in enumerate(reps_a.items()):
        for j, (nb, rb) in enumerate(reps_b.items()):
            if same and j < i:
                out[i, j] = out[j, i]
                continue
            _check_pair(ra, rb, debiased, (f"acts_a[{na!r}]", f"acts_b[{nb!r}]"))
            try:
                out[i, j] = _cka_from_terms(_hsic(ra, rb, debiased), self_term(ra), self_term(rb))
            except ValueError as exc:
                raise ValueError(f"layers {na!r} / {nb!r}: {exc}") from exc
    return pd.DataFrame(out, index=list(reps_a), columns=list(reps_b))


def mutual_knn(
    X: Array,
    Y: Array,
    k: int = 10,
    *,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    knn_x: PrecomputedKNN | None = None,
    knn_y: PrecomputedKNN | None = None,
    per_point: bool = False,
) -> Any:
    """Mean share of each sample's k nearest neighbours that two representations have in common.

    ``m = (1/N) Σ_i |N_k^X(i) ∩ N_k^Y(i)| / k`` with ``N_k^X(i)`` the indices of the k nearest
    neighbours of sample i in X (itself excluded), from :func:`geowidgets.geometry.knn`
    (exact; ties go to the lower index). 1 means identical neighbourhoods; for unrelated
    representations the expected value is about ``k / (N − 1)``. Source: the mutual-kNN alignment
    metric of Huh et al. 2024, "The Platonic Representation Hypothesis".

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, Dx]
    Y : Tensor or ndarray, shape [N, Dy]
        The same N samples, in the same order.
    k : int
        Neighbours per sample, ``1 <= k <= N − 1``.
    metric : {"euclidean", "cosine"}
        Distance used in both spaces.
    knn_x, knn_y : KNNGraph or (dist, idx), optional
        Precomputed neighbours of X / Y (e.g. a layer's cached graph), sliced to k.
    per_point : bool
        Also return the per-sample overlap.

    Returns
    -------
    float
        The mean overlap in [0, 1].
    per_sample : ndarray or Tensor [N] float64
        Only with ``per_point=True``: ``|N_k^X(i) ∩ N_k^Y(i)| / k``, the same kind as X.

    Raises
    ------
    ValueError
        Different numbers of rows, fewer than 2 samples, an invalid k or metric, or a
        precomputed graph that does not fit the data.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 5))
    >>> mutual_knn(X, 2.0 * X + 1.0, k=5)
    1.0
    """
    Xt, kind = as_tensor(X, "X", min_rows=2)
    Yt, _ = as_tensor(Y, "Y", min_rows=2)
    if Xt.shape[0] != Yt.shape[0]:
        raise ValueError(f"X and Y must hold the same samples (rows), got N={Xt.shape[0]} and N={Yt.shape[0]}")
    n = Xt.shape[0]
    k = check_k(k, n - 1)
    _, ix = resolve_knn(Xt, k, knn_x, metric)
    _, iy = resolve_knn(Yt, k, knn_y, metric)
    iy = iy.to(ix.device)
    shared = torch.empty(n, dtype=torch.float64, device=ix.device)
    step = max(1, _OVERLAP_ELEMENTS // (k * k))
    for s in range(0, n, step):
        a, b = ix[s : s + step], iy[s : s + step]
        shared[s : s + step] = (a.unsqueeze(2) == b.unsqueeze(1)).any(2).sum(1).to(torch.float64)
    share = shared / k
    mean = float(share.mean())
    if not per_point:
        return mean
    return mean, (share.cpu().numpy() if kind.is_numpy else share)
