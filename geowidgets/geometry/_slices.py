"""Decision-boundary slices: a model's decisions on a 2-D plane in input or hidden-layer space.

See docs/probes.md#decision-slices. The plane is a :class:`Plane` (through three samples, or a sample plus two
directions from :func:`plane_directions`). For a hidden layer, the grid points are written into
that layer's output by activation patching (:class:`geowidgets.probe._patch.PatchedModel`), so any
architecture works; skip paths around the layer keep the carrier input's values.

Logits are kept, so :meth:`DecisionSlice.with_temperature` rescales them without a forward pass.
A regression model's slice (``target_index=``) holds its predicted value per grid point
(:attr:`DecisionSlice.values`) instead of a class; the same grid evaluation serves both.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array
from geowidgets.geometry._plane import (
    Plane,
    check_temperature,
    patched_head,
    plane_directions,
    project_data,
)
from geowidgets.geometry._temperature import TemperatureScores, temperature_scores
from geowidgets.probe._patch import PatchedModel

__all__ = ["Plane", "plane_directions", "decision_slice", "DecisionSlice"]

_PLANE_SPACES = ("auto", "input", "layer")


@dataclass(frozen=True)
class DecisionSlice:
    """A model's decisions (classification) or predicted values (regression) on a G×G grid of a plane.

    ``classes[i, j]`` is the prediction at ``origin + α_j e₁ + β_i e₂`` with
    ``α = linspace(extent[0], extent[1], G)`` and ``β = linspace(extent[2], extent[3], G)``:
    rows are β, row 0 is the bottom (origin lower-left); the extent gives the first/last pixel
    *centres* (a drawing pads half a cell).

    Attributes
    ----------
    logits : [G, G, C]
        Raw logits (float32), kept so a temperature change needs no forward pass.
    temperature : float
    plane : Plane
        The plane in the space that was sliced (the layer's space for a hidden layer).
    extent : tuple of float
        ``(α_min, α_max, β_min, β_max)``.
    layer : str or None
    classes : [G, G] int64
        Predicted class (independent of the temperature).
    confidence, margin, entropy, energy : [G, G]
        softmax(z/T) max, top-1 minus top-2 probability, entropy (nats), −T·logsumexp(z/T):
        :func:`~geowidgets.geometry.temperature_scores` of the logits, each computed on first
        access (a temperature move that shows only the confidence computes only that).
    data_coords : [M, 2] or None
        Plane coordinates of the projections of the ``data`` points.
    data_distance : [M] or None
        Their distances from the plane (fade far ones when drawing).
    anchor_coords : [K, 2]
        Plane coordinates of the anchors.
    n_forward : int
        Forward passes the slice took.
    target_index : int or None
        None: a classifier's slice (``classes``, ``confidence``... from the logits). An int: a
        regression slice, whose :attr:`values` are output column ``target_index`` (the scores, the
        classes and :meth:`with_temperature` then raise ``ValueError``).

    Arrays are numpy when the plane's anchors were numpy, else tensors.
    """

    logits: Any
    temperature: float
    plane: Plane
    extent: tuple[float, float, float, float]
    layer: str | None = None
    data_coords: Any = None
    data_distance: Any = None
    n_forward: int = 0
    target_index: int | None = None

    @property
    def is_regression(self) -> bool:
        """True for a regression slice (``target_index`` set): :attr:`values` instead of classes."""
        return self.target_index is not None

    @property
    def values(self) -> Any:
        """Predicted value per pixel, ``[G, G]`` float32: output column ``target_index`` (regression slices)."""
        if self.target_index is None:
            raise ValueError("a classification slice has no values; read .classes / .confidence (or pass target_index)")
        z = self.logits
        return self._grid(torch.as_tensor(z).reshape(-1, z.shape[-1])[:, self.target_index])

    @cached_property
    def scores(self) -> TemperatureScores:
        """Temperature scores of the G² grid logits (rows in grid order, ``[G·G]`` per score)."""
        if self.target_index is not None:
            raise ValueError(
                "a regression slice has no classes, confidences or temperature scores; read .values (the predicted "
                "value per pixel)"
            )
        z = self.logits
        return temperature_scores(z.reshape(-1, z.shape[-1]), self.temperature)

    def _grid(self, values: Any) -> Any:
        return self.plane._out(torch.as_tensor(values).reshape(self.resolution, self.resolution).cpu())

    @property
    def classes(self) -> Any:
        """Predicted class per pixel, int64 ``[G, G]`` (independent of the temperature)."""
        return self._grid(self.scores.predicted)

    @property
    def confidence(self) -> Any:
        """Largest softmax(z/T) probability per pixel, ``[G, G]``."""
        return self._grid(self.scores.confidence)

    @property
    def margin(self) -> Any:
        """Top-1 minus top-2 probability per pixel, ``[G, G]``."""
        return self._grid(self.scores.margin)

    @property
    def entropy(self) -> Any:
        """Entropy of softmax(z/T) in nats per pixel, ``[G, G]``."""
        return self._grid(self.scores.entropy)

    @property
    def energy(self) -> Any:
        """−T·logsumexp(z/T) per pixel, ``[G, G]``."""
        return self._grid(self.scores.energy)

    @property
    def resolution(self) -> int:
        """Grid size G."""
        return int(self.logits.shape[0])

    @property
    def alphas(self) -> Any:
        """Pixel-centre coordinates along e₁: ``[G]``."""
        return self.plane._out(torch.linspace(self.extent[0], self.extent[1], self.resolution, dtype=torch.float64))

    @property
    def betas(self) -> Any:
        """Pixel-centre coordinates along e₂: ``[G]``."""
        return self.plane._out(torch.linspace(self.extent[2], self.extent[3], self.resolution, dtype=torch.float64))

    @property
    def anchor_coords(self) -> Any:
        """Plane coordinates of the plane's anchors: ``[K, 2]``."""
        return self.plane.anchor_coords()

    def with_temperature(self, temperature: float) -> DecisionSlice:
        """The same slice at another temperature: rescales the stored logits, no forward pass.

        Examples
        --------
        >>> import numpy as np, torch
        >>> model = torch.nn.Linear(2, 3)
        >>> s = decision_slice(model, Plane.through(np.zeros(2), np.eye(2)[0], np.eye(2)[1]), resolution=8)
        >>> s.with_temperature(0.5).temperature
        0.5
        """
        if self.target_index is not None:
            raise ValueError("the temperature does not apply to a regression slice (its values are not logits)")
        return dataclasses.replace(self, temperature=check_temperature(temperature), n_forward=0)

    def nearby(self, max_distance: float) -> Any:
        """Indices of the ``data`` points within ``max_distance`` of the plane, nearest first.

        Examples
        --------
        >>> import numpy as np, torch
        >>> plane = Plane.through(np.zeros(3), np.eye(3)[0], np.eye(3)[1])
        >>> data = np.array([[0.0, 0, 5], [1, 1, 0.1], [0, 0, -0.5]])
        >>> decision_slice(torch.nn.Linear(3, 2), plane, resolution=4, data=data).nearby(1.0).tolist()
        [1, 2]
        """
        if self.data_distance is None:
            raise ValueError("this slice was made without data=; pass data to decision_slice")
        d = torch.as_tensor(self.data_distance)
        if not (isinstance(max_distance, (int, float)) and max_distance >= 0):
            raise ValueError(f"max_distance must be a number >= 0, got {max_distance!r}")
        idx = torch.nonzero(d <= max_distance).reshape(-1)
        idx = idx[torch.argsort(d[idx], stable=True)]
        return self.plane._out(idx)

    def coords(self, points: Array) -> Any:
        """Plane coordinates ``[M, 2]`` of points given in the sliced space."""
        return self.plane.coords(points)

    def distance_to_plane(self, points: Array) -> Any:
        """Distances ``[M]`` of points (in the sliced space) from the plane."""
        return self.plane.distance(points)


def _check_resolution(resolution: Any) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or int(resolution) < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    return int(resolution)


def _check_extent(extent: Any) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in extent)
    except (TypeError, ValueError):
        raise ValueError(f"extent must be 4 numbers (a_min, a_max, b_min, b_max), got {extent!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"extent must be 4 finite numbers (a_min, a_max, b_min, b_max), got {extent!r}")
    if not (values[0] < values[1] and values[2] < values[3]):
        raise ValueError(f"extent needs a_min < a_max and b_min < b_max, got {values}")
    return values


def _default_extent(coords: torch.Tensor, margin: float) -> tuple[float, float, float, float]:
    """Box around ``coords`` [K, 2], padded by ``margin`` × span (a zero span becomes 1 each side)."""
    lo, hi = coords.min(0).values, coords.max(0).values
    span = hi - lo
    ext = []
    for d in range(2):
        s = float(span[d])
        if s <= 0:
            other = float(span[1 - d])
            pad = other / 2 + margin * other if other > 0 else 1.0
        else:
            pad = margin * s
        ext += [float(lo[d]) - pad, float(hi[d]) + pad]
    return tuple(ext)  # type: ignore[return-value]


def _resolve_head(model, plane: Plane, layer, plane_space, carrier, data, batch_size):
    """Build the PatchedModel and decide which space the plane was given in."""
    if plane_space not in _PLANE_SPACES:
        raise ValueError(f"plane_space must be one of {_PLANE_SPACES}, got {plane_space!r}")
    if layer is None:
        if plane_space == "layer":
            raise ValueError("plane_space='layer' needs a layer name")
        input_shape = None if carrier is not None else plane.sample_shape
        head = PatchedModel(model, None, carrier, input_shape=input_shape, batch_size=batch_size)
        if head.dim is not None and head.dim != plane.dim:
            raise ValueError(f"the plane lives in D={plane.dim} but the model input has {head.dim} values")
        return head, "input"
    candidates = []
    if carrier is not None:
        candidates.append(("carrier", carrier))
    else:
        if plane_space != "layer":
            candidates.append(("the plane's first anchor", plane.anchors[0].reshape(plane.sample_shape)))
        if data is not None:
            first = data[0]
            candidates.append(("the first data sample", first))
    head = patched_head(model, layer, candidates, batch_size, "give the plane in input space")
    in_dim = math.prod(head.input_shape)
    if plane_space == "auto":
        if plane.dim == head.dim and plane.dim == in_dim:
            raise ValueError(
                f"the plane's dimension {plane.dim} matches both the input and layer {layer!r}; "
                "pass plane_space='input' or 'layer'"
            )
        if plane.dim == head.dim:
            plane_space = "layer"
        elif plane.dim == in_dim:
            plane_space = "input"
        else:
            raise ValueError(
                f"the plane lives in D={plane.dim}, which is neither the input ({in_dim}) nor layer "
                f"{layer!r} ({head.dim}, output shape {head.sample_shape})"
            )
    expected = head.dim if plane_space == "layer" else in_dim
    if plane.dim != expected:
        raise ValueError(f"plane_space={plane_space!r} needs a plane in D={expected}, got D={plane.dim}")
    return head, plane_space


def decision_slice(
    model: torch.nn.Module,
    plane: Plane,
    layer: str | None = None,
    resolution: int = 256,
    temperature: float = 1.0,
    *,
    extent: tuple[float, float, float, float] | None = None,
    margin: float = 0.25,
    plane_space: str = "auto",
    carrier: torch.Tensor | np.ndarray | None = None,
    batch_size: int = 4096,
    data: Array | None = None,
    target_index: int | None = None,
) -> DecisionSlice:
    """Evaluate ``model`` on a G×G grid of ``plane``, in input space or in a hidden layer.

    Parameters
    ----------
    model : nn.Module
        Returns logits ``[B, C]`` (a regressor: predictions ``[B]`` or ``[B, T]``); run in eval mode on its
        own device, modes restored afterwards.
    plane : Plane
    layer : str, optional
        None: the plane is in input space. Else the grid points are patched into this layer's
        flattened output (D_ℓ = prod(output_shape[1:])).
    resolution : int
        G ≥ 2.
    temperature : float
        T > 0 for the scores; change it later with :meth:`DecisionSlice.with_temperature`.
    extent : (α_min, α_max, β_min, β_max), optional
        First/last pixel centres. Default: the anchors' coordinates (and projected ``data``),
        padded by ``margin`` × span; a direction with zero span gets ±1.
    margin : float
        Padding fraction for the default extent.
    plane_space : {"auto", "input", "layer"}
        For a hidden layer: whether the plane's anchors are layer vectors or input samples. Input
        anchors (needs a plane built with :meth:`Plane.through`) are mapped to the layer by one
        forward pass, and the plane is rebuilt through their images. ``"auto"`` decides by the
        dimension (ambiguous dimensions are an error).
    carrier : Tensor or ndarray, optional
        One input sample the model runs on while the layer is patched. Default: the plane's
        first anchor when it is an input sample, else the first ``data`` sample.
    batch_size : int
        Grid points per forward pass.
    data : Tensor or ndarray [M, ...], optional
        Samples to place on the slice (layer vectors, or inputs mapped to the layer).
    target_index : int, optional
        Regression: the slice's :attr:`~DecisionSlice.values` are the model's output column
        ``target_index`` (0 for a single-output model ``[B]`` or ``[B, 1]``). None: a classifier.

    Returns
    -------
    DecisionSlice

    Examples
    --------
    >>> import numpy as np, torch
    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]])); _ = model.bias.zero_()
    >>> plane = Plane.through(np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    >>> s = decision_slice(model, plane, resolution=5, extent=(-1, 1, -1, 1))
    >>> s.classes[0].tolist()
    [0, 0, 0, 1, 1]
    >>> r = decision_slice(torch.nn.Linear(2, 1), plane, resolution=5, extent=(-1, 1, -1, 1), target_index=0)
    >>> r.values.shape
    (5, 5)

    Raises
    ------
    ValueError
        A bad resolution, extent, margin, plane or ``target_index`` (not an output column), a plane
        whose dimension fits neither the input nor the layer.
    """
    G = _check_resolution(resolution)
    T = check_temperature(temperature)
    if target_index is not None and (
        isinstance(target_index, bool) or not isinstance(target_index, (int, np.integer)) or target_index < 0
    ):
        raise ValueError(f"target_index must be None or an output column index >= 0, got {target_index!r}")
    if not isinstance(plane, Plane):
        raise ValueError(
            f"plane must be a geo.Plane (Plane.through or Plane.from_directions), got {type(plane).__name__}"
        )
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    head, space = _resolve_head(model, plane, layer, plane_space, carrier, data, batch_size)
    mapped = layer is not None and space == "input"
    if mapped:
        if plane.anchors.shape[0] < 3:
            raise ValueError(
                "an input-space plane built from directions cannot be carried into a hidden layer; build it "
                "with Plane.through(a, b, c) from three input samples, or give the plane in layer space"
            )
        images = head.to_space(plane.anchors.reshape(-1, *head.input_shape).to(torch.float32)).double()
        p = Plane.through(*images)
        plane = Plane(p.origin, p.basis, p.anchors, p.sample_shape, plane.is_numpy)
    data_coords = data_distance = None
    if data is not None:
        # By row blocks: O(M) memory besides the data, no [M, D] float64 copy of it.
        data_coords, data_distance = project_data(head, data, plane, mapped)
    if extent is None:
        coords = (plane.anchors - plane.origin) @ plane.basis.T
        if data_coords is not None:
            coords = torch.cat([coords, data_coords])
        extent = _default_extent(coords, float(margin))
    extent = _check_extent(extent)
    alphas = torch.linspace(extent[0], extent[1], G, dtype=torch.float64)
    betas = torch.linspace(extent[2], extent[3], G, dtype=torch.float64)
    try:
        logits = _evaluate_grid(head, plane, alphas, betas, batch_size)
    except RuntimeError as exc:
        if layer is None and carrier is None and len(plane.sample_shape) == 1:
            raise ValueError(
                f"the model failed on grid points of shape [B, {plane.dim}] ({exc}); if it takes inputs of another "
                "shape (e.g. images), pass carrier= (one input sample) or build the plane from input-shaped samples"
            ) from exc
        raise
    if target_index is not None and int(target_index) >= logits.shape[-1]:
        raise ValueError(
            f"target_index={target_index} but the model has {logits.shape[-1]} output column(s) per grid point"
        )
    return DecisionSlice(
        logits=plane._out(logits),
        temperature=T,
        plane=plane,
        extent=extent,
        layer=head.layer,
        data_coords=None if data_coords is None else plane._out(data_coords),
        data_distance=None if data_distance is None else plane._out(data_distance),
        n_forward=head.forward_calls,
        target_index=None if target_index is None else int(target_index),
    )


def _evaluate_grid(
    head: PatchedModel, plane: Plane, alphas: torch.Tensor, betas: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Logits ``[G, G, C]`` at ``origin + α_j e₁ + β_i e₂``, built and evaluated a block of rows at a time.

    Each batch holds whole grid rows, so its points are one broadcast add of a row part
    ``origin + β_i e₂`` and the shared column part ``α_j e₁``, in the model's dtype on its device.
    """
    G = alphas.numel()
    dev, dtype = head.device, head.dtype
    cols = (alphas[:, None] * plane.basis[0][None, :]).to(dev, dtype)  # [G, D]
    rows_all = (plane.origin[None, :] + betas[:, None] * plane.basis[1][None, :]).to(dev, dtype)  # [G, D]
    step = max(1, batch_size // G)
    buffer = torch.empty(step, G, cols.shape[1], device=dev, dtype=dtype)  # reused: no fresh pages per batch
    out = []
    for r in range(0, G, step):
        rows = rows_all[r : r + step]
        pts = torch.add(rows[:, None, :], cols[None, :, :], out=buffer[: rows.shape[0]])
        out.append(head.logits(pts.reshape(-1, cols.shape[1])))
    z = torch.cat(out)
    return z.reshape(G, G, z.shape[1])
