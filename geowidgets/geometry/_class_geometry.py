"""Class geometry of a layer: Fisher ratio, neural collapse NC1–NC4, coding rate (docs/probes.md#fisher-ratio).

All three compare class means with the spread around them. Everything is computed in float64 on
the spectral device (MPS tensors use the CPU for these steps) and without forming D×D matrices
unless the formula needs one (``fisher_ratio(kind="lda")`` with D <= N). The data is read in
blocks of rows converted to float64 one at a time (class sums in a first pass, the spread around
the class means in a second), so beyond the input the memory is O(C·D + block), plus the D×D or
N×N matrix ``kind="lda"`` needs; no float64 copy of the whole layer is made.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_labels, as_tensor, renamed_keywords, spectral_device, to_kind
from geowidgets.geometry._spectra import (
    _singular_values_f64,
    _step,
    cached,
    singular_values_tensor,
    to_input_device,
)

__all__ = ["fisher_ratio", "FisherRatio", "neural_collapse", "NeuralCollapse", "coding_rate", "CodingRate"]

_FISHER_KINDS = ("trace", "lda", "fdr")


def _row_blocks(X: torch.Tensor, codes: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(rows of X in float64 on the spectral device, their codes), one block of rows at a time."""
    device, step = spectral_device(X), _step(X.shape[1])
    for s in range(0, X.shape[0], step):
        yield X[s : s + step].to(device=device, dtype=torch.float64), codes[s : s + step]


def _class_stats(
    X: torch.Tensor, codes: torch.Tensor, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Counts [C], class means [C, D] and the global mean [D] (float64), summed over row blocks."""
    counts = torch.bincount(codes, minlength=n_classes).to(torch.float64)
    sums = torch.zeros(n_classes, X.shape[1], dtype=torch.float64, device=codes.device)
    for block, block_codes in _row_blocks(X, codes):
        sums.index_add_(0, block_codes, block)
    return counts, sums / counts.unsqueeze(1), sums.sum(0) / X.shape[0]


def _prepare(X: Any, labels: Any, min_classes: int, name: str = "X"):
    """Validated tensor, its kind, label codes on the spectral device, and the label values."""
    Xt, kind = as_tensor(X, name, min_rows=2)
    codes, classes = as_labels(labels, Xt.shape[0], min_classes=min_classes)
    return Xt, kind, codes.to(spectral_device(Xt)), classes


class FisherRatio(float):
    """A float (the Fisher ratio) that also carries the per-feature values for ``kind="fdr"``.

    Attributes
    ----------
    kind : str
        ``"trace"``, ``"lda"`` or ``"fdr"``.
    per_feature : Tensor or ndarray or None
        For ``"fdr"``: the ratio of every feature [D] (the value is their maximum).

    Examples
    --------
    >>> r = FisherRatio(2.0, kind="trace")
    >>> r + 1, r.kind
    (3.0, 'trace')
    """

    kind: str
    per_feature: Any

    def __new__(cls, value: float, kind: str, per_feature: Any = None) -> FisherRatio:
        obj = super().__new__(cls, value)
        obj.kind = kind
        obj.per_feature = per_feature
        return obj

    def __repr__(self) -> str:
        return f"FisherRatio({float(self)!r}, kind={self.kind!r})"


def fisher_ratio(
    X: Array, labels: Array, kind: Literal["trace", "lda", "fdr"] = "trace", *, shrinkage: float = 1e-3
) -> FisherRatio:
    """Between-class vs within-class scatter of a layer's activations.

    With ``S_W = (1/N) Σ_i (x_i − μ_{y_i})(·)ᵀ`` and ``S_B = (1/N) Σ_c n_c (μ_c − μ)(·)ᵀ``:

    - ``"trace"`` (default): ``tr S_B / tr S_W``, no D×D matrix formed.
    - ``"lda"``: ``tr((S_W + γI)⁻¹ S_B)`` with ``γ = shrinkage · tr S_W / D``; Cholesky when
      D <= N, the Woodbury identity when D > N (then ``shrinkage`` must be > 0). Invariant under
      invertible linear maps when ``shrinkage=0``.
    - ``"fdr"`` (two classes): ``max_j (μ_{1j} − μ_{2j})² / (σ²_{1j} + σ²_{2j})`` with population
      variances; ``.per_feature`` holds every feature's ratio (a feature with zero variance in
      both classes gives ``inf`` if the means differ and 0 if they agree).

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
    labels : array-like of int, shape [N]
        At least two classes (exactly two for ``"fdr"``).
    kind : {"trace", "lda", "fdr"}
    shrinkage : float
        Relative ridge for ``"lda"`` (>= 0).

    Returns
    -------
    FisherRatio
        A ``float`` subclass with ``.kind`` and ``.per_feature``.

    Notes
    -----
    Two passes over blocks of rows in float64 (class sums, then the spread around the class
    means): extra memory O(C·D + block) for ``"trace"`` and ``"fdr"``, plus the D×D scatter
    (D <= N) or, over blocks of columns, the N×N Woodbury matrix (D > N) for ``"lda"``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.2], [1.0], [1.2]])
    >>> round(float(fisher_ratio(X, [0, 0, 1, 1])), 6)
    25.0
    """
    if kind not in _FISHER_KINDS:
        raise ValueError(f"kind must be one of {_FISHER_KINDS}, got {kind!r}")
    if not (isinstance(shrinkage, (int, float)) and shrinkage >= 0 and math.isfinite(shrinkage)):
        raise ValueError(f"shrinkage must be a finite number >= 0, got {shrinkage!r}")
    Xt, array_kind, codes, classes = _prepare(X, labels, min_classes=2)
    n, d = Xt.shape
    if kind == "fdr" and len(classes) != 2:
        raise ValueError(f"kind='fdr' needs exactly two classes, got {len(classes)}: {classes.tolist()}")
    counts, means, mean = _class_stats(Xt, codes, len(classes))
    f64: dict[str, Any] = {"dtype": torch.float64, "device": means.device}
    # Second pass: the spread around the class means, within = X − μ_y, one block of rows at a time.
    squares = torch.zeros((), **f64)
    var = torch.zeros(2, d, **f64) if kind == "fdr" else None
    scatter = torch.zeros(d, d, **f64) if kind == "lda" and d <= n else None  # n·S_W
    for block, block_codes in _row_blocks(Xt, codes):
        within = block - means[block_codes]
        squared = within * within
        squares += squared.sum()
        if var is not None:
            var.index_add_(0, block_codes, squared)
        if scatter is not None:
            scatter.addmm_(within.T, within)
    if var is not None:
        var = var / counts.unsqueeze(1)
        num = (means[0] - means[1]) ** 2
        den = var.sum(0)
        ratio = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), torch.where(num > 0, math.inf, 0.0))
        return FisherRatio(float(ratio.max()), "fdr", to_kind(to_input_device(ratio, Xt), array_kind))
    trace_within = float(squares) / n
    between_rows = torch.sqrt(counts / n).unsqueeze(1) * (means - mean)  # S_B = BᵀB
    if trace_within <= 0:
        raise ValueError("the within-class scatter is zero (every point equals its class mean); the ratio is undefined")
    if kind == "trace":
        return FisherRatio(float((between_rows * between_rows).sum()) / trace_within, "trace")
    gamma = shrinkage * trace_within / d
    if scatter is not None:  # d <= n
        A = scatter / n + gamma * torch.eye(d, **f64)  # S_W + γI
        chol, info = torch.linalg.cholesky_ex(A)
        if int(info) != 0:
            raise ValueError(
                "the within-class scatter S_W is singular (collinear features); use shrinkage > 0 for kind='lda'"
            )
        solved = torch.cholesky_solve(between_rows.T, chol)  # A⁻¹Bᵀ
        return FisherRatio(float((between_rows.T * solved).sum()), "lda")
    if gamma <= 0:
        raise ValueError(f"kind='lda' with D={d} > N={n} makes S_W singular; use shrinkage > 0")
    # Woodbury with S_W = UᵀU, U = (X − μ_y)/√N [N, D]: (γI + UᵀU)⁻¹ = (I − Uᵀ(γI_N + UUᵀ)⁻¹U)/γ.
    # UUᵀ [N, N] and UBᵀ [N, C] are summed over blocks of columns, so U is never formed whole.
    small = gamma * torch.eye(n, **f64)
    UB = torch.zeros(n, between_rows.shape[0], **f64)
    step = _step(n)
    for s in range(0, d, step):
        U = (Xt[:, s : s + step].to(**f64) - means[codes, s : s + step]) / math.sqrt(n)
        small.addmm_(U, U.T)
        UB.addmm_(U, between_rows[:, s : s + step].T)
    inner = torch.linalg.solve(small, UB)
    value = (float((between_rows * between_rows).sum()) - float((UB * inner).sum())) / gamma
    return FisherRatio(value, "lda")


@dataclass(frozen=True)
class NeuralCollapse:
    """Neural-collapse statistics of one layer (Papyan, Han & Donoho 2020).

    Attributes
    ----------
    nc1 : float
        ``(1/C) tr(Σ_W Σ_B⁺)``: within-class variability relative to the class-mean spread (→ 0).
    nc2_equinorm : float
        ``std_c ‖m̃_c‖ / mean_c ‖m̃_c‖`` (population std) of the centred class means (→ 0).
    nc2_equiangular : float
        Standard deviation of ``cos(m̃_c, m̃_c′)`` over pairs c < c′ (→ 0).
    nc2_max_angle : float
        ``mean_{c≠c′} |cos(m̃_c, m̃_c′) + 1/(C−1)|`` (→ 0 for a simplex ETF).
    nc3 : float or None
        ``‖W/‖W‖_F − M̃/‖M̃‖_F‖_F`` (self-duality of the classifier), when ``weight`` is given.
    nc4 : float or None
        Fraction of samples where the classifier disagrees with the nearest class mean.
    class_cosines : Tensor or ndarray, shape [C, C]
        Cosines between centred class means (ideal ETF: −1/(C−1) off the diagonal).
    classes : numpy.ndarray
        Original label values, in the order of the rows of ``class_cosines``.

    Examples
    --------
    >>> import numpy as np
    >>> res = neural_collapse(np.array([[1.0, 0.0], [1.2, 0.0], [-1.0, 0.0], [-1.2, 0.0]]), [0, 0, 1, 1])
    >>> round(res.nc2_max_angle, 9), res.nc3 is None
    (0.0, True)
    """

    nc1: float
    nc2_equinorm: float
    nc2_equiangular: float
    nc2_max_angle: float
    nc3: float | None
    nc4: float | None
    class_cosines: Any
    classes: np.ndarray


def _mean_directions(centred_means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values s [r] and right singular vectors V [r, D] of M̃, those below 1e-6·s_max dropped."""
    _, s, vh = torch.linalg.svd(centred_means, full_matrices=False)
    keep = s > 1e-6 * s.max()
    return s[keep], vh[keep]


@renamed_keywords(H="X")
def neural_collapse(
    X: Array, labels: Array, *, weight: Array | None = None, bias: Array | None = None, predictions: Array | None = None
) -> NeuralCollapse:
    """Neural-collapse metrics NC1–NC4 of features ``X`` (typically the penultimate layer).

    Notation: ``m̃_c = μ_c − μ_G`` (``μ_G`` the mean of all samples), ``Σ_W`` the within-class
    covariance (1/N), ``Σ_B = (1/C) Σ_c m̃_c m̃_cᵀ``. NC1 uses the thin SVD ``M̃ = USVᵀ`` (singular
    values below ``1e-6·s_max`` dropped): ``NC1 = Σ_k v_kᵀ Σ_W v_k / s_k²``, no D×D matrix. The
    data is read in float64 blocks of rows (class sums, then projections of ``x_i − μ_{y_i}`` and,
    for NC4, each row's logits and nearest class mean), so the extra memory is O(N + C·D + block).

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
        Features. The keyword ``H=`` still works for one release, with a ``DeprecationWarning``.
    labels : array-like of int, shape [N]
        At least two classes.
    weight : Tensor or ndarray, shape [C, D], optional
        Last-layer classifier weights, rows in sorted label order; enables NC3 and NC4.
    bias : Tensor or ndarray, shape [C], optional
        Classifier bias (needs ``weight``).
    predictions : array-like of int, shape [N], optional
        The classifier's predicted labels (original label values); enables NC4 without ``weight``.

    Returns
    -------
    NeuralCollapse

    Examples
    --------
    >>> import numpy as np
    >>> M = np.array([[1.0, 0.0], [-0.5, 3**0.5 / 2], [-0.5, -(3**0.5) / 2]])
    >>> res = neural_collapse(np.repeat(M, 5, axis=0), np.repeat([0, 1, 2], 5))
    >>> round(res.nc1, 9), round(res.nc2_max_angle, 9)
    (0.0, 0.0)
    """
    Ht, kind, codes, classes = _prepare(X, labels, min_classes=2, name="X")
    n, d = Ht.shape
    n_classes = len(classes)
    _, means, mean = _class_stats(Ht, codes, n_classes)
    device = means.device
    centred_means = means - mean
    norms = torch.linalg.vector_norm(centred_means, dim=1)
    if bool((norms == 0).any()):
        bad = classes[(norms == 0).cpu().numpy()].tolist()
        raise ValueError(f"class mean(s) of {bad} coincide with the global mean; NC2/NC3 angles are undefined")
    cosines = (centred_means / norms.unsqueeze(1)) @ (centred_means / norms.unsqueeze(1)).T
    iu = torch.triu_indices(n_classes, n_classes, offset=1, device=cosines.device)
    pair_cos = cosines[iu[0], iu[1]]
    equinorm = float(norms.std(correction=0) / norms.mean())
    equiangular = float(pair_cos.std(correction=0))
    max_angle = float((pair_cos + 1.0 / (n_classes - 1)).abs().mean())

    nc3 = nc4 = None
    W64 = b64 = None
    if bias is not None and weight is None:
        raise ValueError("bias was given without weight; pass the classifier's weight [C, D] too")
    if weight is not None:
        Wt, _ = as_tensor(weight, "weight")
        if tuple(Wt.shape) != (n_classes, d):
            raise ValueError(
                f"weight must have shape [C={n_classes}, D={d}] (rows in sorted label order), got {tuple(Wt.shape)}"
            )
        W64 = Wt.to(device=device, dtype=torch.float64)
        w_norm = torch.linalg.matrix_norm(W64)
        if float(w_norm) == 0:
            raise ValueError("weight is all zeros; NC3 is undefined")
        nc3 = float(torch.linalg.matrix_norm(W64 / w_norm - centred_means / torch.linalg.matrix_norm(centred_means)))
        if bias is not None:
            bt, _ = as_tensor(bias, "bias", ndim=1)
            if bt.shape[0] != n_classes:
                raise ValueError(f"bias must have shape [C={n_classes}], got {tuple(bt.shape)}")
            b64 = bt.to(device=device, dtype=torch.float64)
    if predictions is not None:
        pred = predictions.detach().cpu().numpy() if isinstance(predictions, torch.Tensor) else np.asarray(predictions)
        if pred.shape != (n,):
            raise ValueError(f"predictions must have shape [N={n}], got {pred.shape}")
        unknown = ~np.isin(pred, classes)
        if unknown.any():
            raise ValueError(f"predictions contain labels not in labels: {np.unique(pred[unknown]).tolist()[:5]}")
        pred_codes = torch.from_numpy(np.searchsorted(classes, pred)).to(device)
    else:
        pred_codes = None
    # One pass over blocks of rows: NC1's projections of x_i − μ_{y_i} onto the class-mean directions
    # and, for NC4, the classifier's and the nearest class mean's choices.
    s, vh = _mean_directions(centred_means)
    projected_squares = torch.zeros(vh.shape[0], dtype=torch.float64, device=device)
    wants_nc4 = pred_codes is not None or W64 is not None
    nearest_parts: list[torch.Tensor] = []
    logit_parts: list[torch.Tensor] = []
    for block, block_codes in _row_blocks(Ht, codes):
        projected = (block - means[block_codes]) @ vh.T  # [block, r]
        projected_squares += (projected * projected).sum(0)
        if wants_nc4:
            nearest_parts.append(torch.cdist(block, means).argmin(1))
        if pred_codes is None and W64 is not None:
            logit_parts.append((block @ W64.T + (b64 if b64 is not None else 0.0)).argmax(1))
    nc1 = float((projected_squares / n / (s * s)).sum())
    if wants_nc4:
        if pred_codes is None:
            pred_codes = torch.cat(logit_parts)
        nc4 = float((pred_codes != torch.cat(nearest_parts)).double().mean())
    return NeuralCollapse(
        nc1=nc1,
        nc2_equinorm=equinorm,
        nc2_equiangular=equiangular,
        nc2_max_angle=max_angle,
        nc3=nc3,
        nc4=nc4,
        class_cosines=to_kind(to_input_device(cosines, Ht), kind),
        classes=classes,
    )


@dataclass(frozen=True)
class CodingRate:
    """MCR² coding rates of a layer (natural log).

    Attributes
    ----------
    R : float
        ``½ logdet(I + d/(nε²) ZᵀZ)``: the volume all features fill.
    Rc : float or None
        ``Σ_c (n_c/n) ½ logdet(I + d/(n_c ε²) Z_cᵀZ_c)`` (None without labels).
    delta_R : float or None
        ``R − Rc``: large for distinct, compact class subspaces.
    eps : float
        The resolution ε.

    Examples
    --------
    >>> import numpy as np
    >>> res = coding_rate(np.eye(4), [0, 0, 1, 1])
    >>> res.delta_R > 0
    True
    """

    R: float
    Rc: float | None
    delta_R: float | None
    eps: float


def _rate(s: torch.Tensor, n_rows: int, d: int, eps: float) -> float:
    """½ Σ log(1 + d/(nε²) s²): Sylvester's identity on the smaller Gram side."""
    return 0.5 * float(torch.log1p((d / (n_rows * eps * eps)) * s * s).sum())


def _class_spectra(
    Xt: torch.Tensor, codes: torch.Tensor, normalize: bool, source: Any = None
) -> list[tuple[int, torch.Tensor]]:
    """(n_c, singular values of Z_c) per class, cached per (tensor, labels, normalize).

    Extra memory: one class's rows in X's dtype, O(n_c·D), plus a block and a Gram matrix.
    """
    digest = hashlib.blake2b(codes.cpu().numpy().tobytes(), digest_size=16).hexdigest()

    def compute() -> list[tuple[int, torch.Tensor]]:
        # One class's rows at a time, in X's dtype; each Gram matrix is summed over float64 blocks.
        c = codes.to(Xt.device)
        return [
            (int((c == j).sum()), _singular_values_f64(Xt[c == j], normalize_rows=normalize))
            for j in range(int(c.max()) + 1)
        ]

    return cached(source, ("class_svals", digest, bool(normalize)), compute)


def coding_rate(X: Array, labels: Array | None = None, *, eps: float = 0.5**0.5, normalize: bool = True) -> CodingRate:
    """MCR² coding rate R, class-conditional rate Rc and the reduction ΔR = R − Rc (Yu et al. 2020).

    With ``Z`` the rows of ``X`` (unit-normalised when ``normalize``), ``n = N``, ``d = D``:
    ``R = ½ logdet(I + d/(nε²)·ZᵀZ) = ½ Σ log(1 + d/(nε²)·s_i²)`` from the singular values of
    ``Z`` (cached, so changing ``eps`` is free for torch input), and
    ``Rc = Σ_c (n_c/n)·½ logdet(I + d/(n_c ε²)·Z_cᵀZ_c)``.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
    labels : array-like of int, shape [N], optional
        Without labels only ``R`` is computed.
    eps : float
        Resolution ε > 0 (default ε² = 0.5).
    normalize : bool
        Unit-normalise rows first (an all-zero row is then an error).

    Returns
    -------
    CodingRate

    Examples
    --------
    >>> import numpy as np
    >>> import math
    >>> Z = np.tile([[1.0, 0.0, 0.0, 0.0]], (10, 1))
    >>> res = coding_rate(Z, np.repeat([0, 1], 5))
    >>> round(res.R, 6) == round(0.5 * math.log(1 + 4 / 0.5), 6), round(res.delta_R, 9)
    (True, 0.0)
    """
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    eps = float(eps)
    Xt, _ = as_tensor(X, "X", min_rows=1)
    n, d = Xt.shape
    R = _rate(singular_values_tensor(Xt, normalize_rows=normalize, source=X), n, d, eps)
    if labels is None:
        return CodingRate(R=R, Rc=None, delta_R=None, eps=eps)
    codes, _ = as_labels(labels, n)
    Rc = sum(count / n * _rate(s, count, d, eps) for count, s in _class_spectra(Xt, codes, normalize, source=X))
    return CodingRate(R=R, Rc=float(Rc), delta_R=R - float(Rc), eps=eps)
