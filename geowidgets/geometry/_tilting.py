"""Boundary tilting (Tanay & Griffin): linear probe vs nearest-centroid direction (docs/probes.md#boundary-tilting).

A regularised logistic-regression probe between two classes is compared with the direction joining
their means. A large angle means the boundary is tilted along the data: it can classify well while
passing close to the samples, so small steps cross it. Weak regularisation lets the probe follow
the within-class covariance (the tilt appears); strong regularisation pulls it back to the
nearest-centroid direction.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_labels, as_tensor, spectral_device, to_kind
from geowidgets.geometry._spectra import to_input_device

__all__ = ["boundary_tilting_angle", "BoundaryTilt"]

_GRAD_TOL = 1e-6


@dataclass(frozen=True)
class BoundaryTilt:
    """A fitted two-class probe and its angle to the nearest-centroid direction.

    Attributes
    ----------
    angle_deg : float
        Angle between ``w`` and ``w_nc`` in degrees, in [0, 180].
    w : [D]
        Probe weights, oriented toward class ``classes[1]``.
    b : float
        Probe intercept (0 without ``fit_intercept``).
    w_nc : [D]
        ``μ_b − μ_a``.
    accuracy : float
        Training accuracy of the probe on the pair.
    mean_boundary_distance : float
        Mean ``|w·x + b| / ‖w‖`` over the pair's samples.
    half_centroid_distance : float
        ``‖w_nc‖ / 2``, the distance from each mean to the nearest-centroid boundary.
    reg : float
        The L2 strength λ.
    classes : tuple
        The pair (a, b) in original label values.
    converged : bool
        Whether the gradient norm fell below 1e-6 within ``max_iter`` iterations.
    grad_norm : float
        Final gradient norm of the objective.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [2.0, 0.0], [2.0, 1.0]])
    >>> res = boundary_tilting_angle(X, [0, 0, 1, 1], reg=1.0)
    >>> round(res.angle_deg, 3), res.classes
    (0.0, (0, 1))
    """

    angle_deg: float
    w: Any
    b: float
    w_nc: Any
    accuracy: float
    mean_boundary_distance: float
    half_centroid_distance: float
    reg: float
    classes: tuple
    converged: bool
    grad_norm: float


def _pick_pair(codes: torch.Tensor, classes: np.ndarray, pair: Any) -> tuple[int, int]:
    if pair is None:
        counts = torch.bincount(codes, minlength=len(classes)).numpy()
        order = sorted(range(len(classes)), key=lambda j: (-counts[j], j))
        return tuple(sorted(order[:2]))  # type: ignore[return-value]
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"classes must be a pair (a, b) of label values, got {pair!r}")
    found = []
    for value in pair:
        hits = np.flatnonzero(classes == value)
        if hits.size == 0:
            raise ValueError(f"class {value!r} is not among the labels {classes.tolist()}")
        found.append(int(hits[0]))
    if found[0] == found[1]:
        raise ValueError(f"classes must name two different labels, got {pair!r}")
    return found[0], found[1]


def _initial_params(init: Any, d: int, shift: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    params = torch.zeros(d + 1, dtype=torch.float64, device=like.device)
    if init is None:
        return params
    if isinstance(init, BoundaryTilt):
        w0, b0 = init.w, init.b
    elif isinstance(init, (tuple, list)) and len(init) == 2:
        w0, b0 = init
    else:
        raise ValueError("init must be a BoundaryTilt or a (w, b) pair")
    w0t, _ = as_tensor(w0, "init w", ndim=1)
    if w0t.shape[0] != d:
        raise ValueError(f"init w must have {d} entries, got {w0t.shape[0]}")
    params[:d] = w0t.to(device=like.device, dtype=torch.float64)
    params[d] = float(b0) + float(params[:d] @ shift)  # intercept of the centred problem
    return params


def boundary_tilting_angle(
    X: Array,
    labels: Array,
    classes: Any = None,
    *,
    reg: float = 1e-2,
    fit_intercept: bool = True,
    max_iter: int = 500,
    init: BoundaryTilt | tuple[Array, Array] | None = None,
) -> BoundaryTilt:
    """Angle between an L2-regularised logistic probe and the nearest-centroid direction.

    The probe minimises ``(1/n) Σ log(1 + exp(−s_i (w·x_i + b))) + (λ/2)‖w‖²`` over the two
    classes' samples (``s_i = +1`` for class b, −1 for class a; intercept unpenalised), by
    full-batch L-BFGS in float64 until the gradient norm is below 1e-6. ``λ = 1/(C·n)`` in
    scikit-learn's ``C``. Features are not standardised (angles depend on the metric). The angle
    is ``arccos(w·w_nc / (‖w‖‖w_nc‖))`` with ``w_nc = μ_b − μ_a``.

    Parameters
    ----------
    X : Tensor or ndarray, shape [N, D]
    labels : array-like of int, shape [N]
    classes : (a, b), optional
        Label values of the pair; default the two most frequent classes (ties to the smaller
        label), ordered by label value.
    reg : float
        λ > 0 (the slider spans 1e-6 to 1e2).
    fit_intercept : bool
        Fit ``b`` (default) or fix it at 0.
    max_iter : int
        L-BFGS iterations; if the tolerance is not reached a ``RuntimeWarning`` is issued and
        ``converged`` is False.
    init : BoundaryTilt or (w, b), optional
        Warm start (e.g. the result at a neighbouring λ).

    Returns
    -------
    BoundaryTilt

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 3)) + np.repeat([[0, 0, 0], [2, 0, 0]], 200, axis=0)
    >>> res = boundary_tilting_angle(X, np.repeat([0, 1], 200))
    >>> res.angle_deg < 10, res.accuracy > 0.8
    (True, True)
    """
    if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not (reg > 0 and math.isfinite(reg)):
        raise ValueError(f"reg must be a finite number > 0, got {reg!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    Xt, kind = as_tensor(X, "X", min_rows=2)
    codes, class_values = as_labels(labels, Xt.shape[0], min_classes=2)
    ia, ib = _pick_pair(codes, class_values, classes)
    codes = codes.to(Xt.device)
    keep = (codes == ia) | (codes == ib)
    X64 = Xt[keep].to(device=spectral_device(Xt), dtype=torch.float64)
    signs = torch.where(codes[keep] == ib, 1.0, -1.0).to(device=X64.device, dtype=torch.float64)
    n, d = X64.shape
    mean_a, mean_b = X64[signs < 0].mean(0), X64[signs > 0].mean(0)
    w_nc = mean_b - mean_a
    if float(torch.linalg.vector_norm(w_nc)) == 0:
        raise ValueError("the two class means coincide, so the nearest-centroid direction is undefined")
    shift = X64.mean(0) if fit_intercept else torch.zeros(d, dtype=torch.float64, device=X64.device)
    Xc = X64 - shift
    params = _initial_params(init, d, shift, X64).requires_grad_(True)

    def objective() -> torch.Tensor:
        w = params[:d]
        b = params[d] if fit_intercept else 0.0
        margins = signs * (Xc @ w + b)
        return torch.nn.functional.softplus(-margins).mean() + 0.5 * reg * (w @ w)

    optimizer = torch.optim.LBFGS(
        [params],
        lr=1.0,
        max_iter=int(max_iter),
        max_eval=int(max_iter) * 2,
        tolerance_grad=_GRAD_TOL / math.sqrt(d + 1),  # inf-norm bound that implies ‖g‖₂ < 1e-6
        tolerance_change=0.0,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        if not fit_intercept and params.grad is not None:  # backward() has set it
            params.grad[d] = 0.0
        return loss

    optimizer.step(closure)
    closure()
    grad_norm = float(torch.linalg.vector_norm(params.grad))
    converged = grad_norm < _GRAD_TOL
    if not converged:
        warnings.warn(
            f"boundary_tilting_angle: L-BFGS stopped after max_iter={max_iter} with gradient norm {grad_norm:.2e} "
            f"(target {_GRAD_TOL:g}); raise max_iter or reg",
            RuntimeWarning,
            stacklevel=2,
        )
    with torch.no_grad():
        w = params[:d].detach().clone()
        b = float(params[d]) - float(w @ shift) if fit_intercept else 0.0
        w_norm = float(torch.linalg.vector_norm(w))
        if w_norm == 0:
            raise ValueError(f"the probe's weights are exactly 0 at reg={reg}; the angle is undefined, lower reg")
        cosine = float(w @ w_nc) / (w_norm * float(torch.linalg.vector_norm(w_nc)))
        angle = math.degrees(math.acos(max(-1.0, min(1.0, cosine))))
        scores = X64 @ w + b
        accuracy = float(((scores > 0) == (signs > 0)).double().mean())
        boundary_distance = float(scores.abs().mean()) / w_norm
    return BoundaryTilt(
        angle_deg=angle,
        w=to_kind(to_input_device(w, Xt), kind),
        b=b,
        w_nc=to_kind(to_input_device(w_nc, Xt), kind),
        accuracy=accuracy,
        mean_boundary_distance=boundary_distance,
        half_centroid_distance=0.5 * float(torch.linalg.vector_norm(w_nc)),
        reg=float(reg),
        classes=(class_values[ia].item(), class_values[ib].item()),
        converged=converged,
        grad_norm=grad_norm,
    )
