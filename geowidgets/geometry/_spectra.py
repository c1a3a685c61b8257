"""Spectral summaries of one layer: RankMe and von Neumann entropy (docs/probes.md#rankme).

Both read the singular values of the activation matrix. :func:`singular_values` computes them once
in float64 (on the tensor's device; MPS falls back to the CPU for this step), from a Gram matrix
accumulated over blocks of rows, so the extra memory is O(min(N, D)²) plus one block rather than a
float64 copy of the layer, and caches them per (tensor, variant), so a profile or a widget that
asks for RankMe, the von Neumann entropy and the spectrum plot pays for one decomposition per
variant. The cache is keyed on the tensor object and
its in-place version counter, so modifying the tensor invalidates it; numpy inputs are converted
afresh on every call and therefore not cached.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_tensor, row_norms, spectral_device, to_kind

__all__ = ["rankme", "von_neumann_entropy", "singular_values", "clear_spectral_cache"]


class TensorCache:
    """A small LRU cache of results computed from a tensor, valid while the tensor is unchanged.

    Entries are keyed on ``id(tensor)``, its in-place version counter and an extra key. A weak
    reference confirms the entry belongs to this very tensor (ids are reused after a tensor dies)
    and removes its entries when it is garbage collected. An inference tensor (made under
    ``torch.inference_mode``, as captured activations are) has no version counter; it can only be
    modified in place inside inference mode, and its entries are kept until it dies.

    Examples
    --------
    >>> import torch
    >>> cache = TensorCache(maxsize=4)
    >>> t = torch.ones(3)
    >>> cache.get(t, "sum", lambda: float(t.sum()))
    3.0
    """

    def __init__(self, maxsize: int = 64):
        self.maxsize = int(maxsize)
        self._entries: OrderedDict[tuple, tuple[weakref.ref, Any]] = OrderedDict()
        self._lock = threading.RLock()  # widgets compute off the kernel's main thread

    def _forget(self, tensor_id: int) -> None:
        with self._lock:
            for key in [key for key in self._entries if key[0] == tensor_id]:
                self._entries.pop(key, None)

    def get(self, tensor: torch.Tensor, key: Hashable, compute: Callable[[], Any]) -> Any:
        """Return the cached value for (tensor, key), computing and storing it on a miss."""
        ident = (id(tensor), None if tensor.is_inference() else tensor._version, key)
        with self._lock:
            entry = self._entries.get(ident)
            if entry is not None and entry[0]() is tensor:
                self._entries.move_to_end(ident)
                return entry[1]
        value = compute()  # outside the lock: long computations do not block other lookups
        tensor_id = id(tensor)
        ref = weakref.ref(tensor, lambda _ref: self._forget(tensor_id))
        with self._lock:
            self._entries[ident] = (ref, value)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_SPECTRAL_CACHE = TensorCache(maxsize=64)


def clear_spectral_cache() -> None:
    """Forget all cached singular values and diffusion spectra.

    Examples
    --------
    >>> clear_spectral_cache()
    """
    _SPECTRAL_CACHE.clear()


def eigvalsh_f64(A: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of a symmetric float64 matrix.

    On the CPU this calls LAPACK through numpy (the routine the ``dse-dsmi`` reference uses; on the
    shared 2-core CPU machine it was as fast as or faster than torch's ``eigvalsh``, which in some
    runs took several times longer on kernel matrices with fast-decaying spectra). Elsewhere
    (CUDA) it stays in torch.
    """
    if A.device.type == "cpu":
        return torch.from_numpy(np.linalg.eigvalsh(A.numpy()))
    return torch.linalg.eigvalsh(A)


#: Bytes of float64 data converted at a time when class sums or a NaN/inf check run over blocks of
#: rows. At N=5e4 x 512 on the CPU, 4 MiB blocks gave a smaller peak RSS than 16 MiB (each larger
#: temporary takes fresh pages) and were no slower.
_BLOCK_BYTES = 4 * 2**20
#: Gram matrices are summed over blocks this many times larger: the matrix product of 4096 rows of
#: 512 ran about as fast as one over all rows, 1024 rows about 1.4x slower.
_GRAM_BLOCKS = 4


def _step(length: int, blocks: int = 1) -> int:
    """Rows (or columns) of ``length`` float64 entries that fill ``blocks`` blocks."""
    return max(1, blocks * _BLOCK_BYTES // (8 * max(1, length)))


def _row_norms_f64(X: torch.Tensor) -> torch.Tensor:
    """Euclidean norms [N] of X's rows in float64, in row blocks; an all-zero row is a ``ValueError``."""
    remedy = "drop them or switch the row normalisation off"
    return row_norms(X, torch.float64, device=spectral_device(X), nonzero=remedy, block_bytes=_BLOCK_BYTES)


def _gram_f64(X: torch.Tensor, *, center: bool = False, normalize_rows: bool = False) -> torch.Tensor:
    """Float64 Gram matrix of the prepared X on its smaller side, accumulated over blocks.

    The prepared matrix is X with its rows unit-normalised (``normalize_rows``), then its columns
    centred (``center``), as in a float64 copy of X. It is never formed: with N >= D the D×D matrix
    ``Σ_b X_bᵀX_b`` is summed over blocks of rows (the column means from a first pass over the same
    blocks); with N < D the N×N matrix ``Σ_c X_c X_cᵀ`` is summed over blocks of columns (each
    centred by its own means). Extra memory is O(min(N, D)² + block) instead of an N×D float64
    copy; the sums differ from the copy's only by float64 round-off.
    """
    n, d = X.shape
    device = spectral_device(X)
    norms = _row_norms_f64(X).unsqueeze(1) if normalize_rows else None
    if n >= d:
        step = _step(d, _GRAM_BLOCKS)

        def rows(s: int) -> torch.Tensor:
            block = X[s : s + step].to(device=device, dtype=torch.float64)
            return block if norms is None else block / norms[s : s + step]

        mean = None
        if center:
            total = torch.zeros(d, dtype=torch.float64, device=device)
            for s in range(0, n, step):
                total += rows(s).sum(0)
            mean = total / n
        gram = torch.zeros(d, d, dtype=torch.float64, device=device)
        for s in range(0, n, step):
            block = rows(s) if mean is None else rows(s) - mean
            gram.addmm_(block.T, block)
        return gram
    step = _step(n, _GRAM_BLOCKS)
    gram = torch.zeros(n, n, dtype=torch.float64, device=device)
    for s in range(0, d, step):
        block = X[:, s : s + step].to(device=device, dtype=torch.float64)
        if norms is not None:
            block = block / norms
        if center:
            block = block - block.mean(dim=0, keepdim=True)
        gram.addmm_(block, block.T)
    return gram


def _singular_values_f64(X: torch.Tensor, center: bool = False, normalize_rows: bool = False) -> torch.Tensor:
    """Singular values (descending, float64, length min(N, D)) from the smaller Gram matrix.

    X may have any floating dtype: rows are unit-normalised (``normalize_rows``) and columns
    centred (``center``) block by block in float64 while the Gram matrix is accumulated
    (:func:`_gram_f64`), so the extra memory is O(min(N, D)² + block), not an N×D float64 copy.
    The Gram route is O(N·D·min(N, D)) and much faster than a full SVD when N and D differ a lot;
    it loses relative accuracy only for singular values below ~1e-8·σ_max, which carry no weight in
    any entropy computed here. Tiny negative eigenvalues from rounding are set to 0.
    """
    eig = eigvalsh_f64(_gram_f64(X, center=center, normalize_rows=normalize_rows))
    return torch.sqrt(torch.clamp(eig, min=0.0)).flip(0)


def _raw_and_centred_f64(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values of X and of X − mean from one Gram matrix (one pass over the data).

    Centring is applied to the Gram matrix: ``XcᵀXc = XᵀX − N·μμᵀ`` (D side) or
    ``XcXcᵀ = HXXᵀH`` with ``H = I − 11ᵀ/N`` (N side), both O(min(N, D)²). The Gram matrix and
    the column sums are accumulated in float64 over blocks of rows (of columns when N < D), so X
    (any floating dtype) is never copied whole: extra memory O(min(N, D)² + block).
    """
    n, d = X.shape
    if n >= d:
        device, step = spectral_device(X), _step(d, _GRAM_BLOCKS)
        gram = torch.zeros(d, d, dtype=torch.float64, device=device)
        total = torch.zeros(d, dtype=torch.float64, device=device)
        for s in range(0, n, step):
            block = X[s : s + step].to(device=device, dtype=torch.float64)
            gram.addmm_(block.T, block)
            total += block.sum(0)
        centred = gram - torch.outer(total, total) / n
    else:
        gram = _gram_f64(X)
        row_mean = gram.mean(1, keepdim=True)
        centred = gram - row_mean - row_mean.T + gram.mean()
    centred = 0.5 * (centred + centred.T)
    return (
        torch.sqrt(torch.clamp(eigvalsh_f64(gram), min=0.0)).flip(0),
        torch.sqrt(torch.clamp(eigvalsh_f64(centred), min=0.0)).flip(0),
    )


def prefetch_raw_and_centred(X: torch.Tensor, source: Any) -> None:
    """Fill the cache with both the raw and the centred singular values of ``X`` from one Gram pass.

    Used by ``layer_profile`` when RankMe (raw) and the von Neumann entropy (centred) are both
    requested; afterwards both :func:`rankme` and :func:`von_neumann_entropy` are cache hits.
    """
    if not isinstance(source, torch.Tensor):
        return
    raw_key, centred_key = ("svals", False, False), ("svals", True, False)
    pair: list[torch.Tensor] = []

    def compute_pair() -> list[torch.Tensor]:
        if not pair:
            pair.extend(_raw_and_centred_f64(X))
        return pair

    _SPECTRAL_CACHE.get(source, raw_key, lambda: compute_pair()[0])
    _SPECTRAL_CACHE.get(source, centred_key, lambda: compute_pair()[1])


def cached(source: Any, key: Hashable, compute: Callable[[], Any]) -> Any:
    """Memoise ``compute()`` on the caller's own tensor ``source``; other inputs are not cached.

    Validated tensors are fresh ``detach()`` views, so the cache is keyed on the object the caller
    passed (its identity and in-place version counter, shared with every view of it).
    """
    if isinstance(source, torch.Tensor):
        return _SPECTRAL_CACHE.get(source, key, compute)
    return compute()


def singular_values_tensor(
    X: torch.Tensor, *, center: bool = False, normalize_rows: bool = False, source: Any = None
) -> torch.Tensor:
    """Float64 singular values of a validated tensor, cached on ``source`` (the caller's tensor).

    Computed from a Gram matrix accumulated over blocks (:func:`_singular_values_f64`): extra
    memory O(min(N, D)² + block), no N×D float64 copy of X.
    """
    return cached(
        source,
        ("svals", bool(center), bool(normalize_rows)),
        lambda: _singular_values_f64(X, center, normalize_rows),
    )


def singular_values(X: Array, *, center: bool = False, normalize_rows: bool = False) -> Any:
    """Singular values of a layer's activation matrix, in float64, cached per tensor.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
        Activations.
    center : bool
        Subtract the column means first (the spectrum of the covariance).
    normalize_rows : bool
        Unit-normalise every row first (as the coding rate does); an all-zero row is an error.
        Applied before centring.

    Returns
    -------
    Tensor or ndarray, shape [min(N, D)]
        Descending, float64, on the spectral device (CPU for MPS tensors). Torch tensors reuse a
        cached result while they are not modified in place.

    Notes
    -----
    They are the square roots of the eigenvalues of the float64 Gram matrix (``XᵀX`` or ``XXᵀ``,
    the smaller), accumulated over row blocks: memory O(min(N, D)²) instead of an SVD's copies of
    X. The price is absolute accuracy near zero: a singular value that is exactly 0 comes out as
    about ``√ε · s_max`` (≈ 1e-8 · s_max) rather than ε · s_max as from an SVD. Large singular
    values, and the entropy-based ranks built on them (RankMe, von Neumann entropy), are not
    affected beyond ~1e-6.

    Examples
    --------
    >>> import numpy as np
    >>> singular_values(np.diag([3.0, 2.0, 1.0])).round(6).tolist()
    [3.0, 2.0, 1.0]
    """
    Xt, kind = as_tensor(X, "X", min_rows=1)
    return to_kind(singular_values_tensor(Xt, center=center, normalize_rows=normalize_rows, source=X), kind)


def rankme_from_singular_values(s: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe of a vector of singular values (see :func:`rankme`)."""
    total = float(s.sum())
    if not total > 0:
        raise ValueError("X is all zeros (every singular value is 0); RankMe needs at least one non-zero entry")
    p = s / total + eps
    return float(torch.exp(-torch.special.xlogy(p, p).sum()))  # 0·log 0 = 0 when eps = 0


def rankme(X: Array, *, eps: float = 1e-7, center: bool = False) -> float:
    """RankMe: the effective rank of a representation (Garrido et al., Roy–Vetterli).

    With σ the singular values of ``X``, ``p_k = σ_k / ‖σ‖₁ + eps`` and
    ``RankMe = exp(−Σ_k p_k log p_k)``. It lies in ``[1, min(N, D)]`` (up to ``eps``): 1 when every
    row is the same vector, ``r`` when ``X`` has ``r`` equal non-zero singular values.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
        Activations (uncentred, as published).
    eps : float
        Small constant added to each ``p_k`` (the published formula); must be >= 0.
    center : bool
        Subtract the column means first (a design option, off by default).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 4)) @ np.diag([1.0, 1.0, 1.0, 0.0])
    >>> 2.9 < rankme(X) < 3.01
    True
    """
    if not (isinstance(eps, (int, float)) and eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    Xt, _ = as_tensor(X, "X", min_rows=2 if center else 1)
    return rankme_from_singular_values(singular_values_tensor(Xt, center=center, source=X), eps)


def von_neumann_from_singular_values(s: torch.Tensor, exp: bool = False) -> float:
    """Von Neumann entropy (nats) from the singular values of the (centred) matrix."""
    power = s.double() ** 2
    total = float(power.sum())
    if not total > 0:
        raise ValueError(
            "X has zero variance (every singular value is 0); the von Neumann entropy is undefined. "
            "Check that the layer's activations are not constant"
        )
    lam = power / total
    lam = lam[lam > 0]
    entropy = float(-(lam * torch.log(lam)).sum())
    return math.exp(entropy) if exp else entropy


def von_neumann_entropy(X: Array, *, center: bool = True, exp: bool = False) -> float:
    """Von Neumann entropy of the trace-normalised covariance of ``X``.

    ``ρ = C / tr C`` with ``C = (X − μ)ᵀ(X − μ)/N``; its eigenvalues are ``λ_i = s_i² / Σ s_j²``
    (``s``: singular values of the centred ``X``) and ``S = −Σ λ_i log λ_i`` (natural log,
    ``0 log 0 = 0``). ``0 ≤ S ≤ log min(N − 1, D)``; ``S = log r`` for ``r`` equal variances.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
        Activations.
    center : bool
        Subtract the column means (default). ``False`` uses the uncentred second moment.
    exp : bool
        Return ``exp(S)``, an effective number of directions comparable with :func:`rankme`.

    Returns
    -------
    float
        Entropy in nats (or its exponential). Zero variance raises ``ValueError``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> round(von_neumann_entropy(X), 6) == round(float(np.log(2)), 6)
    True
    """
    Xt, _ = as_tensor(X, "X", min_rows=2)
    return von_neumann_from_singular_values(singular_values_tensor(Xt, center=center, source=X), exp=exp)


def to_input_device(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Move a float64 result back to ``like``'s device (float32 on MPS, which has no float64)."""
    if like.device.type == "mps":
        return t.to(dtype=torch.float32).to(like.device)
    return t.to(like.device)
