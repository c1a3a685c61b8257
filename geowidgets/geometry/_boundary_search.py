"""Distance to the decision boundary: a line search and CGBA's semicircle search (docs/probes.md#boundary-search).

Both run on :class:`geowidgets.probe._patch.PatchedModel`, so they work in input space or inside
any hidden layer (activation patching). Bisections are *batched*: each round evaluates
``_ROUND`` points of the bracket in one forward pass and keeps the sub-interval of the first class
change, so a search to 1e-4 takes a handful of forward passes, not dozens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array
from geowidgets.geometry._plane import Plane, data_in_space, head_for_samples, margin_gradient

__all__ = ["boundary_search", "BoundaryHit"]

_METHODS = ("line", "semicircle")
_ROUND = 15  # interior points per bisection round


@dataclass(frozen=True)
class BoundaryHit:
    """Result of :func:`boundary_search`.

    Attributes
    ----------
    found : bool
        False if no class change was found (then ``distance`` is inf and the points are None).
    distance : float
        Distance from x to the boundary point (along the direction for ``"line"``).
    point : [D] or None
        The boundary point, just across the boundary (classified ``to_class``).
    from_class, to_class : int
        Class of x, and class found across the boundary (-1 if none).
    normal : [D] or None
        Unit gradient of the margin at ``point``, pointing away from ``from_class``.
    path : [P, D]
        x followed by the successive boundary points.
    arcs : [A, S, D] or None
        For ``"semicircle"``: the points evaluated on each arc (for drawing).
    plane : Plane or None
        For ``"semicircle"``: the plane of the first arc, ``Plane.from_directions(x, v, e)``.
    n_evals : int
        Model evaluations (points), including gradient passes.
    direction : [D] or None
        The unit search direction (``"line"``).
    layer : str or None
    """

    found: bool
    distance: float
    point: Any
    from_class: int
    to_class: int
    normal: Any
    path: Any
    arcs: Any
    plane: Plane | None
    n_evals: int
    direction: Any = None
    layer: str | None = None


def _classes(head, pts: torch.Tensor, counter: list[int]) -> torch.Tensor:
    counter[0] += pts.shape[0]
    return head.logits(pts.to(head.dtype)).argmax(1)


def _bisect(head, point_at, lo: float, hi: float, lo_is_y0: bool, y0: int, tol: float, scale: float, counter):
    """Shrink the bracket [lo, hi] around the first class change seen from ``lo``.

    ``point_at(t)`` maps parameters [T] to points [T, D]; ``lo_is_y0`` says whether ``lo`` is on
    the ``y0`` side. Each round evaluates ``_ROUND`` interior points in one batch, until
    ``(hi − lo)·scale < tol``. Returns the final ``(lo, hi)``: lo on the starting side, hi across.
    """
    while (hi - lo) * scale > tol:
        ts = torch.linspace(lo, hi, _ROUND + 2, dtype=torch.float64)[1:-1]
        is_y0 = _classes(head, point_at(ts), counter) == y0
        changed = torch.nonzero(is_y0 != lo_is_y0)
        if changed.numel() == 0:
            lo = float(ts[-1])
        else:
            first = int(changed[0])
            hi = float(ts[first])
            lo = float(ts[first - 1]) if first > 0 else lo
    return lo, hi


def boundary_search(
    model: torch.nn.Module,
    x: Array,
    direction: Array | None = None,
    *,
    method: str = "line",
    layer: str | None = None,
    carrier: torch.Tensor | np.ndarray | None = None,
    space: str = "auto",
    start: Array | None = None,
    data: Array | None = None,
    max_distance: float | None = None,
    n_coarse: int = 64,
    tol: float = 1e-4,
    iterations: int = 10,
) -> BoundaryHit:
    """Distance from ``x`` to the model's decision boundary.

    Parameters
    ----------
    model : nn.Module
        Returns logits ``[B, C]``.
    x : Tensor or ndarray
        One sample: an input, or a layer vector (D_ℓ values) when ``layer`` is given.
    direction : array [D], optional
        ``"line"``: the search direction (normalised). Default: the unit gradient of the margin
        max_{j≠y₀} z_j − z_{y₀} at x (autograd; at the patched activation for a layer).
    method : {"line", "semicircle"}
        ``"line"``: scan ``n_coarse`` points on (0, max_distance] in one batch, then bisect the
        first class change to ``tol``. ``"semicircle"``: CGBA's Thales-semicircle search toward the
        nearest boundary point, from ``start`` (a point across the boundary; default: the line
        method's hit), ``iterations`` times.
    layer : str, optional
        Search in this layer's flattened output space (activation patching).
    carrier : Tensor or ndarray, optional
        Input sample the model runs on for a hidden layer (default: x, when x is an input).
    space : {"auto", "input", "layer"}
        Whether x (and ``start``, ``direction``, ``data``) are inputs or layer vectors.
    data : array [M, ...], optional
        Samples in x's space; sets the default ``max_distance`` to twice the largest distance
        from x to them.
    max_distance : float, optional
        Line range (default from ``data``, else 10·(‖x‖ + 1)).
    n_coarse : int
    tol : float
        Bisection tolerance in distance units.
    iterations : int
        Semicircle iterations.

    Returns
    -------
    BoundaryHit
        Not finding a boundary is not an error: ``found=False``, ``distance=inf``.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]])); _ = model.bias.fill_(0.0)
    >>> hit = boundary_search(model, torch.tensor([-2.0, 1.0]))
    >>> round(hit.distance, 3), hit.to_class
    (2.0, 1)
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if isinstance(n_coarse, bool) or not isinstance(n_coarse, int) or n_coarse < 1:
        raise ValueError(f"n_coarse must be a positive integer, got {n_coarse!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    head, pts, is_numpy, space = head_for_samples(model, [x], layer, carrier, space)
    xs = pts[0]
    out = (lambda t: t.numpy()) if is_numpy else (lambda t: t)
    counter = [0]
    y0 = int(_classes(head, xs[None], counter)[0])
    mapped = layer is not None and space == "input"

    if method == "semicircle" and start is not None:
        _, sp, _, _ = head_for_samples(model, [start], layer, carrier, space, names=("start",))
        xb = sp[0]
        if int(_classes(head, xb[None], counter)[0]) == y0:
            raise ValueError("start must be classified differently from x (a point across the boundary)")
        line_hit = None
    else:
        line_hit = _line(head, xs, y0, direction, data, max_distance, n_coarse, tol, counter, mapped)
        if method == "line" or not line_hit[0]:
            found, dist, point, to_class, u = line_hit
            normal = None
            if found:
                normal = margin_gradient(head, point[None], torch.tensor([y0]))[0]
                counter[0] += 1
            path = torch.stack([xs, point]) if found else xs[None]
            return BoundaryHit(
                found=found,
                distance=dist,
                point=None if point is None else out(point),
                from_class=y0,
                to_class=to_class,
                normal=None if normal is None else out(normal),
                path=out(path),
                arcs=None,
                plane=None,
                n_evals=counter[0],
                direction=out(u),
                layer=head.layer,
            )
        xb = line_hit[2]
    return _semicircle(head, xs, xb, y0, tol, iterations, counter, out, is_numpy)


def _line(head, xs, y0, direction, data, max_distance, n_coarse, tol, counter, mapped):
    """Coarse scan along the direction, then batched bisection of the first class change."""
    if direction is None:
        u = margin_gradient(head, xs[None])[0]
        counter[0] += 1
    else:
        d = torch.as_tensor(direction.detach() if isinstance(direction, torch.Tensor) else direction)
        u = d.reshape(-1).double().cpu()
        if u.numel() != xs.numel():
            raise ValueError(f"direction has {u.numel()} values but the search space has {xs.numel()}")
        if not bool(torch.isfinite(u).all()) or float(torch.linalg.vector_norm(u)) == 0:
            raise ValueError("direction must be finite and non-zero")
    u = u / torch.linalg.vector_norm(u)
    if max_distance is None:
        if data is not None:
            dpts = data_in_space(head, data, xs.numel(), mapped)
            max_distance = 2.0 * float(torch.linalg.vector_norm(dpts - xs, dim=1).max())
        if not max_distance:
            max_distance = 10.0 * (float(torch.linalg.vector_norm(xs)) + 1.0)
    elif not (max_distance > 0 and math.isfinite(max_distance)):
        raise ValueError(f"max_distance must be a positive number, got {max_distance!r}")
    point_at = lambda t: xs[None] + t[:, None] * u[None]  # noqa: E731
    ts = torch.linspace(0.0, max_distance, n_coarse + 1, dtype=torch.float64)[1:]
    cls = _classes(head, point_at(ts), counter)
    changed = torch.nonzero(cls != y0)
    if changed.numel() == 0:
        return False, math.inf, None, -1, u
    first = int(changed[0])
    lo = float(ts[first - 1]) if first > 0 else 0.0
    lo, hi = _bisect(head, point_at, lo, float(ts[first]), True, y0, tol, 1.0, counter)
    point = point_at(torch.tensor([hi], dtype=torch.float64))[0]
    to_class = int(_classes(head, point[None], counter)[0])
    return True, hi, point, to_class, u


def _semicircle(head, xs, xb, y0, tol, iterations, counter, out, is_numpy) -> BoundaryHit:
    """CGBA's semicircle iterations from the boundary point ``xb`` toward the nearest boundary point."""
    path, arcs = [xs, xb], []
    plane = None
    normal = None
    for _ in range(iterations):
        eta = margin_gradient(head, xb[None], torch.tensor([y0]))[0]
        counter[0] += 1
        normal = eta
        R = float(torch.linalg.vector_norm(xb - xs))
        v = (xb - xs) / R
        w = eta - (eta @ v) * v
        if float(torch.linalg.vector_norm(w)) < 1e-12:
            break  # the normal at x_b points straight back at x: x_b is already the nearest point
        e = w / torch.linalg.vector_norm(w)
        if plane is None:
            p = Plane.from_directions(xs, v, e)
            plane = Plane(p.origin, p.basis, p.anchors, p.sample_shape, is_numpy)

        def arc(phi: torch.Tensor, v=v, e=e, R=R) -> torch.Tensor:
            c, s = torch.cos(phi)[:, None], torch.sin(phi)[:, None]
            return xs[None] + R * c * (c * v[None] + s * e[None])

        lo, _ = _bisect(head, arc, 0.0, math.pi / 2, False, y0, tol, R, counter)
        arcs.append(arc(torch.linspace(0.0, math.pi / 2, 17, dtype=torch.float64)))
        new_b = arc(torch.tensor([lo], dtype=torch.float64))[0]
        if float(torch.linalg.vector_norm(new_b - xs)) > R:  # never move away (numerical guard)
            break
        xb = new_b
        path.append(xb)
    to_class = int(_classes(head, xb[None], counter)[0])
    normal = margin_gradient(head, xb[None], torch.tensor([y0]))[0]
    counter[0] += 1
    return BoundaryHit(
        found=True,
        distance=float(torch.linalg.vector_norm(xb - xs)),
        point=out(xb),
        from_class=y0,
        to_class=to_class,
        normal=out(normal),
        path=out(torch.stack(path)),
        arcs=out(torch.stack(arcs)) if arcs else None,
        plane=plane,
        n_evals=counter[0],
        direction=None,
        layer=head.layer,
    )
