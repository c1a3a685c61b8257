"""Planes in a model's input or layer space, and the directions that span them.

Shared by decision slices (:mod:`._slices`), boundary searches and mixup paths.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, as_labels, as_tensor, check_positive

__all__ = ["Plane", "plane_directions"]

_DIRECTION_KINDS = ("pca", "centroids", "gradient", "random")
# Points projected onto a plane are made float64 a block of rows at a time, this many bytes per block
# (the projection holds two such blocks, reused).
_PROJECT_BYTES = 8 * 2**20


def _row_blocks(n: int, step: int) -> list[tuple[int, int]]:
    """``[start, stop)`` blocks of ``step`` rows whose last block takes the remainder.

    No block is shorter than ``min(n, step)`` rows, so a matrix product never meets a block of one
    row (which BLAS computes by another kernel, rounding differently) unless ``n`` is 1.
    """
    starts = list(range(0, max(n - step, 0) + 1, step)) if n > step else [0]
    return [(a, starts[j + 1] if j + 1 < len(starts) else n) for j, a in enumerate(starts)]


def _block_rows(dim: int, multiple: int = 1) -> int:
    """Rows per block for float64 rows of ``dim`` values: about ``_PROJECT_BYTES``, a multiple of ``multiple``."""
    step = max(1, _PROJECT_BYTES // (8 * max(1, dim)))
    return max(multiple, step // multiple * multiple)


class CarrierError(ValueError):
    """The model could not run on any candidate input (carrier) to patch a hidden layer."""


def _check_finite(t: torch.Tensor, what: str, *, count: bool) -> None:
    """NaN/inf in ``t`` [M, ...] is a ``ValueError``; checked by row blocks (O(block) scratch, not O(M·D))."""
    step = _block_rows(math.prod(t.shape[1:]) if t.ndim > 1 else 1)
    bad = 0
    for a in range(0, t.shape[0] if t.ndim else 1, step):
        rows = t[a : a + step] if t.ndim else t
        if not bool(torch.isfinite(rows).all()):
            if not count:
                raise ValueError(f"{what} contain NaN/inf values; only finite values are allowed")
            bad += int((~torch.isfinite(rows)).sum())
    if bad:
        raise ValueError(f"{what} contains {bad} NaN/inf value(s); only finite values are allowed")


def _flat(x: Any, name: str) -> tuple[torch.Tensor, tuple[int, ...], bool]:
    """One sample (any shape) -> float64 CPU vector, its shape, and whether it was numpy."""
    t, kind = as_tensor(x, name, ndim=None, device="cpu")
    if t.ndim == 0:
        raise ValueError(f"{name} must be a sample (a vector or an input-shaped array), got a scalar")
    return t.detach().cpu().double().reshape(-1), tuple(t.shape), kind.is_numpy


def _gram_schmidt(u: torch.Tensor, v: torch.Tensor, what: str) -> torch.Tensor:
    nu = torch.linalg.vector_norm(u)
    if not float(nu) > 0:
        raise ValueError(f"{what}: the first direction has zero length")
    e1 = u / nu
    w = v - (v @ e1) * e1
    nw = torch.linalg.vector_norm(w)
    if not float(nw) > 1e-9 * max(float(torch.linalg.vector_norm(v)), 1e-300):
        raise ValueError(f"{what}: the two directions are collinear, so they do not span a plane")
    return torch.stack([e1, w / nw])


@dataclass(frozen=True)
class Plane:
    """A 2-D affine plane ``origin + α e₁ + β e₂`` in a space of flattened samples.

    Build it with :meth:`through` (three samples) or :meth:`from_directions` (a sample plus two
    directions). All vectors are float64 CPU tensors of length D; ``sample_shape`` remembers the
    shape the anchors were given in (e.g. ``(1, 8, 8)`` for an image), so input-space grid points
    can be reshaped for the model.

    Attributes
    ----------
    origin : Tensor [D]
    basis : Tensor [2, D]
        Orthonormal rows e₁, e₂.
    anchors : Tensor [K, D]
        The samples the plane was built from (3 for ``through``, 1 for ``from_directions``).
    sample_shape : tuple of int
    is_numpy : bool
        Whether the anchors were numpy (results derived from the plane are then numpy).

    Examples
    --------
    >>> import numpy as np
    >>> p = Plane.through(np.zeros(3), np.array([2.0, 0, 0]), np.array([0, 1.0, 0]))
    >>> p.coords(np.array([[1.0, 1.0, 5.0]])).tolist(), p.distance(np.array([[1.0, 1.0, 5.0]])).tolist()
    ([[1.0, 1.0]], [5.0])
    """

    origin: torch.Tensor
    basis: torch.Tensor
    anchors: torch.Tensor
    sample_shape: tuple[int, ...]
    is_numpy: bool = True

    @classmethod
    def through(cls, a: Array, b: Array, c: Array) -> Plane:
        """The plane through three samples: origin a, e₁ = (b − a)/‖b − a‖, e₂ from c by Gram–Schmidt."""
        (ta, shape, is_np), (tb, sb, _), (tc, sc, _) = _flat(a, "a"), _flat(b, "b"), _flat(c, "c")
        if not (ta.shape == tb.shape == tc.shape):
            raise ValueError(f"a, b and c must have the same size, got {shape}, {sb} and {sc}")
        basis = _gram_schmidt(tb - ta, tc - ta, "Plane.through(a, b, c)")
        return cls(ta, basis, torch.stack([ta, tb, tc]), shape, is_np)

    @classmethod
    def from_directions(cls, origin: Array, u: Array, v: Array) -> Plane:
        """The plane through ``origin`` spanned by ``u`` and ``v`` (orthonormalised; collinear: error)."""
        to, shape, is_np = _flat(origin, "origin")
        tu, _, _ = _flat(u, "u")
        tv, _, _ = _flat(v, "v")
        if not (to.shape == tu.shape == tv.shape):
            raise ValueError(f"origin, u and v must have the same size, got {to.numel()}, {tu.numel()}, {tv.numel()}")
        return cls(to, _gram_schmidt(tu, tv, "Plane.from_directions"), to.unsqueeze(0), shape, is_np)

    @property
    def dim(self) -> int:
        """Dimension D of the space the plane lives in."""
        return int(self.origin.numel())

    def _points(self, points: Any, name: str = "points") -> torch.Tensor:
        """``points`` as checked CPU rows ``[M, D]`` in their own float dtype (made float64 by :meth:`_project`)."""
        t, _ = as_tensor(points, name, ndim=None, device="cpu", allow_nonfinite=True)
        t = t.detach().cpu()
        if t.ndim == 1:
            t = t.unsqueeze(0)
        _check_finite(t, name, count=True)
        t = t.reshape(t.shape[0], -1)
        if t.shape[1] != self.dim:
            raise ValueError(f"{name} have {t.shape[1]} features per sample but the plane lives in D={self.dim}")
        return t

    def _project(
        self,
        rows: torch.Tensor,
        convert: Callable[[torch.Tensor], torch.Tensor] | None = None,
        multiple: int = 1,
        *,
        distance: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Plane coordinates ``[M, 2]`` and distances ``[M]`` (float64) of ``rows``, a block of rows at a time.

        ``convert`` turns a block of ``rows`` into float64 points ``[B, D]`` (default: flatten and
        cast); blocks are multiples of ``multiple`` rows. Each block's values are exactly those of
        the whole-matrix expressions ``(p − origin) @ basis.T`` and ``‖(p − origin) − coords @ basis‖``:
        memory is O(M) for the results plus two reused blocks of about ``_PROJECT_BYTES`` (8 MB), never an ``[M, D]``
        float64 copy.
        """
        n = int(rows.shape[0])
        coords = torch.empty((n, 2), dtype=torch.float64)
        dist = torch.empty(n, dtype=torch.float64) if distance else None
        blocks = _row_blocks(n, _block_rows(self.dim, multiple))
        longest = max(b - a for a, b in blocks)
        # Two float64 blocks reused for every block (the last, longest one included): p − origin, and
        # coords @ basis. Copying float32 rows into float64 is exact, so these are the same numbers as
        # ``p.double() - origin``.
        diff = torch.empty((longest, self.dim), dtype=torch.float64)
        back = torch.empty((longest, self.dim), dtype=torch.float64) if dist is not None else None
        for a, b in blocks:
            block = rows[a:b]
            d = diff[: b - a]
            if convert is not None:
                d.copy_(convert(block))
            else:
                d.copy_(block.reshape(b - a, -1))
            d.sub_(self.origin)
            c = d @ self.basis.T
            coords[a:b] = c
            if dist is not None and back is not None:
                dist[a:b] = torch.linalg.vector_norm(d.sub_(torch.matmul(c, self.basis, out=back[: b - a])), dim=1)
        return coords, dist

    def _out(self, t: torch.Tensor) -> Any:
        return t.numpy() if self.is_numpy else t

    def point(self, alpha: Any, beta: Any) -> Any:
        """Points ``origin + α e₁ + β e₂`` for arrays of equal length: ``[M, D]``."""
        a = torch.as_tensor(np.asarray(alpha, dtype=np.float64)).reshape(-1)
        b = torch.as_tensor(np.asarray(beta, dtype=np.float64)).reshape(-1)
        if a.shape != b.shape:
            raise ValueError(f"alpha and beta must have the same length, got {a.numel()} and {b.numel()}")
        return self._out(self.origin + a[:, None] * self.basis[0] + b[:, None] * self.basis[1])

    def coords(self, points: Array) -> Any:
        """Plane coordinates ``(α, β)`` of the orthogonal projections of ``points``: ``[M, 2]``.

        Computed in float64 a block of rows at a time: O(M) memory besides the points.
        """
        return self._out(self._project(self._points(points), distance=False)[0])

    def distance(self, points: Array) -> Any:
        """Euclidean distance of each point from the plane: ``[M]`` (by row blocks, O(M) memory)."""
        dist = self._project(self._points(points))[1]
        assert dist is not None
        return self._out(dist)

    def anchor_coords(self) -> Any:
        """Plane coordinates of the anchors: ``[K, 2]``."""
        return self.coords(self.anchors)


def check_temperature(temperature: Any) -> float:
    """A positive finite float temperature, else ``ValueError``."""
    return check_positive(temperature, "temperature")


def _top_pcs(X: torch.Tensor, n: int) -> torch.Tensor:
    Xc = X - X.mean(0)
    _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)
    return Vh[:n]


def _orthogonal_pc(X: torch.Tensor | None, u: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The top principal axis of X with ``u`` projected out (a random direction without X)."""
    e = u / torch.linalg.vector_norm(u)
    if X is not None and X.shape[0] >= 2:
        Xc = X - X.mean(0)
        Xc = Xc - (Xc @ e)[:, None] * e
        if float(torch.linalg.vector_norm(Xc)) > 0:
            return _top_pcs(Xc, 1)[0]
    w = torch.from_numpy(rng.standard_normal(u.numel()))
    return w - (w @ e) * e


def plane_directions(
    X: Array | None = None,
    kind: str = "pca",
    *,
    labels: Array | None = None,
    classes: tuple | None = None,
    origin: Array | None = None,
    model: Any = None,
    layer: str | None = None,
    carrier: torch.Tensor | np.ndarray | None = None,
    dim: int | None = None,
    random_state: int = 0,
) -> Any:
    """Two directions ``[2, D]`` to span a slice plane with :meth:`Plane.from_directions`.

    Parameters
    ----------
    X : Tensor or ndarray [N, D], optional
        Data in the plane's space (input space, or a layer's flattened outputs).
    kind : {"pca", "centroids", "gradient", "random"}
        - ``"pca"``: the top two principal axes of X.
        - ``"centroids"``: μ_b − μ_a for classes ``(a, b)`` (default: the two largest); the second
          direction is μ_c − μ_a for a third class ``c`` if ``classes`` names one, else the top
          principal axis of X orthogonal to the first.
        - ``"gradient"``: the gradient of the margin max_{j≠y} z_j − z_y at ``origin`` (needs
          ``model``; with ``layer``, in that layer's space), then the top principal axis of X
          orthogonal to it (a random orthogonal direction without X).
        - ``"random"``: two Gaussian directions (seeded by ``random_state``); needs X or ``dim``.
    labels : array [N], optional
        Class labels of X, for ``"centroids"``.
    classes : tuple, optional
        Label values ``(a, b)`` or ``(a, b, c)`` for ``"centroids"``.
    origin, model, layer, carrier
        For ``"gradient"``: the sample (in the same space as X), the model, the layer (None:
        input space) and, for a hidden layer, the carrier input sample the model runs on.
    dim : int, optional
        Dimension for ``"random"`` without X.
    random_state : int

    Returns
    -------
    Tensor or ndarray [2, D]
        Unit-norm rows (not necessarily orthogonal; :meth:`Plane.from_directions` orthonormalises).
        numpy unless X (or origin) was a tensor.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 5)) * [5, 3, 1, 1, 1]
    >>> int(np.abs(plane_directions(X, "pca")[0]).argmax())
    0
    """
    if kind not in _DIRECTION_KINDS:
        raise ValueError(f"kind must be one of {_DIRECTION_KINDS}, got {kind!r}")
    rng = np.random.default_rng(random_state)
    Xt, is_numpy = None, True
    if X is not None:
        Xt, k = as_tensor(X, "X", min_rows=1, device="cpu")
        Xt, is_numpy = Xt.cpu().double(), k.is_numpy
    if kind == "pca":
        if Xt is None or Xt.shape[0] < 3:
            raise ValueError("kind='pca' needs data X with at least 3 rows")
        if Xt.shape[1] < 2:
            raise ValueError("kind='pca' needs at least 2 features")
        dirs = _top_pcs(Xt, 2)
    elif kind == "random":
        d = Xt.shape[1] if Xt is not None else dim
        if d is None or d < 2:
            raise ValueError("kind='random' needs X or dim >= 2")
        dirs = torch.from_numpy(rng.standard_normal((2, int(d))))
    elif kind == "centroids":
        if Xt is None or labels is None:
            raise ValueError("kind='centroids' needs data X and labels")
        codes, values = as_labels(labels, Xt.shape[0], min_classes=2)
        counts = torch.bincount(codes, minlength=len(values))
        if classes is None:
            order = sorted(range(len(values)), key=lambda c: (-int(counts[c]), c))
            picked = order[:2]
        else:
            if len(classes) not in (2, 3):
                raise ValueError(f"classes must name 2 or 3 label values, got {classes!r}")
            lookup = {v.item() if hasattr(v, "item") else v: i for i, v in enumerate(values)}
            missing = [c for c in classes if c not in lookup]
            if missing:
                raise ValueError(f"classes {missing} are not among the labels {values.tolist()}")
            picked = [lookup[c] for c in classes]
        means = [Xt[codes == c].mean(0) for c in picked]
        u = means[1] - means[0]
        v = means[2] - means[0] if len(means) == 3 else _orthogonal_pc(Xt, u, rng)
        dirs = torch.stack([u, v])
    else:  # gradient
        if model is None or origin is None:
            raise ValueError("kind='gradient' needs model= and origin=")
        from geowidgets.probe._patch import PatchedModel

        o, _, o_numpy = _flat(origin, "origin")
        if X is None:
            is_numpy = o_numpy
        head = PatchedModel(model, layer, carrier, input_shape=None if layer else tuple(np.shape(origin)) or None)
        u = margin_gradient(head, o.unsqueeze(0))[0].cpu().double()
        if Xt is not None and Xt.shape[1] != u.numel():
            raise ValueError(f"X has {Xt.shape[1]} features but the gradient space has {u.numel()}")
        dirs = torch.stack([u, _orthogonal_pc(Xt, u, rng)])
    norms = torch.linalg.vector_norm(dirs, dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError(f"kind={kind!r} gave a zero direction (e.g. equal centroids or a flat gradient)")
    dirs = dirs / norms
    return dirs.numpy() if is_numpy else dirs


def margin_gradient(head: Any, points: torch.Tensor, from_class: torch.Tensor | None = None) -> torch.Tensor:
    """Unit gradients ``[B, D]`` of the margin ``m = max_{j≠y₀} z_j − z_{y₀}`` at ``points`` [B, D].

    ``y₀`` is each point's predicted class, or ``from_class`` [B] when given (e.g. the class of a
    search's start point, evaluated at a point already across the boundary). The gradient points
    away from ``y₀``, toward a different decision.
    """
    p, z = head.logits_with_grad(points)
    rows = torch.arange(z.shape[0], device=z.device)
    y0 = z.argmax(1) if from_class is None else torch.as_tensor(from_class).to(z.device).reshape(-1)
    others = z.detach().clone()
    others[rows, y0] = -math.inf
    j = others.argmax(1)
    m = z[rows, j] - z[rows, y0]
    (g,) = torch.autograd.grad(m.sum(), p)
    g = g.detach().double()
    return g / torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(1e-300)


_SPACES = ("auto", "input", "layer")


def head_for_samples(
    model: Any,
    samples: list[Any],
    layer: str | None,
    carrier: Any,
    space: str = "auto",
    *,
    names: tuple[str, ...] = ("x",),
    batch_size: int = 4096,
) -> tuple[Any, torch.Tensor, bool, str]:
    """The model as a function on the space of ``samples``, and the samples as vectors there.

    ``samples`` are single samples (vectors, or input-shaped arrays). With ``layer=None`` they are
    inputs. With a layer they are layer vectors (D_ℓ values) or input samples (mapped into the layer
    by a forward pass); ``space="auto"`` decides by size and raises if both fit. The carrier for a
    hidden layer defaults to the first sample when it is an input.

    Returns
    -------
    head : PatchedModel
    points : Tensor [len(samples), D] float64 (CPU), in the layer's space for a hidden layer
    is_numpy : bool
        Whether the first sample was numpy (outputs follow it).
    space : {"input", "layer"}
        Which space the samples were given in.
    """
    from geowidgets.probe._patch import PatchedModel

    if space not in _SPACES:
        raise ValueError(f"space must be one of {_SPACES}, got {space!r}")
    if len(names) != len(samples):
        names = tuple(f"sample {i}" for i in range(len(samples)))
    flats = [_flat(s, name) for s, name in zip(samples, names)]
    sizes = {f[0].numel() for f in flats}
    if len(sizes) != 1:
        raise ValueError(f"the samples must have the same size, got shapes {[f[1] for f in flats]}")
    vecs = torch.stack([f[0] for f in flats])
    shape, is_numpy = flats[0][1], flats[0][2]
    if layer is None:
        if space == "layer":
            raise ValueError("space='layer' needs a layer name")
        input_shape = None if carrier is not None else shape
        head = PatchedModel(model, None, carrier, input_shape=input_shape, batch_size=batch_size)
        if head.dim is not None and head.dim != vecs.shape[1]:
            raise ValueError(f"the samples have {vecs.shape[1]} values but the model input has {head.dim}")
        return head, vecs, is_numpy, "input"
    candidates = [("carrier", carrier)] if carrier is not None else []
    if carrier is None and space != "layer":
        candidates.append(("the first sample", vecs[0].reshape(shape).float()))
    head = patched_head(model, layer, candidates, batch_size, "give the samples in input space")
    d = vecs.shape[1]
    in_dim = math.prod(head.input_shape)
    if space == "auto":
        if d == head.dim and d == in_dim:
            raise ValueError(
                f"the samples' size {d} matches both the input and layer {layer!r}; pass space='input' or 'layer'"
            )
        space = "layer" if d == head.dim else "input" if d == in_dim else "neither"
        if space == "neither":
            raise ValueError(
                f"the samples have {d} values, neither the input ({in_dim}) nor layer {layer!r} "
                f"({head.dim}, output shape {head.sample_shape})"
            )
    if space == "input":
        if d != in_dim:
            raise ValueError(f"space='input' needs samples with {in_dim} values, got {d}")
        vecs = head.to_space(vecs.reshape(-1, *head.input_shape).float()).double()
    elif d != head.dim:
        raise ValueError(f"space='layer' needs samples with {head.dim} values, got {d}")
    return head, vecs, is_numpy, space


def patched_head(model: Any, layer: str, candidates: list[tuple[str, Any]], batch_size: int, advice: str) -> Any:
    """A :class:`PatchedModel` on ``layer`` carried by the first candidate input the model accepts.

    Parameters
    ----------
    candidates : list of (description, input sample)
        Tried in order; a model that fails on one moves on to the next.
    advice : str
        What else the user can do, appended to the error when no candidate works.

    Raises
    ------
    KeyError
        Unknown layer (from ``PatchedModel``).
    ValueError
        No candidate input runs the model; the message lists why each failed.
    """
    from geowidgets.probe._patch import PatchedModel

    errors = []
    for what, carrier in candidates:
        try:
            return PatchedModel(model, layer, carrier, batch_size=batch_size)
        except KeyError:
            raise
        except Exception as exc:  # the model could not run on this candidate input
            errors.append(f"{what}: {exc}")
    detail = "; ".join(errors) if errors else "no input sample was available"
    raise CarrierError(
        f"cannot run the model to patch layer {layer!r}: pass carrier= (one input sample without batch "
        f"dimension) or {advice} ({detail})"
    )


def _data_rows(
    head: Any, data: Any, dim: int, mapped: bool
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor], int]:
    """Checked ``data`` [M, ...], the function that turns a block of its rows into float64 vectors of
    the head's space (input samples are mapped through the head), and the multiple of rows a block
    must be so that the mapping runs the model on the same batches as on all rows at once."""
    t = data.detach() if isinstance(data, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(data))
    if t.ndim < 2 or t.shape[0] == 0:
        raise ValueError(f"data must be samples [M, ...] with M >= 1, got shape {tuple(t.shape)}")
    _check_finite(t, "data", count=False)
    flat_dim = math.prod(t.shape[1:])
    if head.layer is not None:
        in_dim = math.prod(head.input_shape)
        if flat_dim == in_dim and (mapped or flat_dim != dim):
            shape = tuple(head.input_shape)
            return t, lambda rows: head.to_space(rows.reshape(rows.shape[0], *shape).float()).double(), head.batch_size
    if flat_dim != dim:
        raise ValueError(f"data have {flat_dim} values per sample but the space has D={dim}")
    return t, lambda rows: rows.reshape(rows.shape[0], -1).double().cpu(), 1


def data_in_space(head: Any, data: Any, dim: int, mapped: bool) -> torch.Tensor:
    """``data`` [M, ...] as float64 vectors of the head's space; input samples are mapped through it.

    The result is an ``[M, D]`` float64 tensor; :func:`project_data` gives a plane's coordinates
    and distances of the same points without it.
    """
    t, convert, _ = _data_rows(head, data, dim, mapped)
    return convert(t)


def project_data(head: Any, data: Any, plane: Plane, mapped: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Plane coordinates ``[M, 2]`` and distances from the plane ``[M]`` of ``data`` (as :func:`data_in_space`).

    Equal to projecting ``data_in_space(head, data, plane.dim, mapped)``, but the float64 points
    are made a block of rows at a time: memory O(M) plus two reused 8 MB blocks of scratch (and,
    for input samples mapped through the head, one block of the layer's outputs).
    """
    t, convert, multiple = _data_rows(head, data, plane.dim, mapped)
    coords, dist = plane._project(t, convert, multiple)
    assert dist is not None
    return coords, dist
