"""Boundary geometry of a session: slice planes from the data, CGBA searches, MixUp paths, tilting.

:class:`BoundaryGeometry` is mixed into :class:`~geowidgets.session.Session`. Every method hands
back geometry's own result object (``DecisionSlice``, ``BoundaryHit``, ``MixupPath``,
``BoundaryTilt``, ``LoDDScores``), computed once and memoised, so a view and a user asking the
same question get the same object.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from geowidgets.geometry._plane import CarrierError
from geowidgets.session._memo import Memo, model_lock

if TYPE_CHECKING:
    from geowidgets.geometry import BoundaryHit, BoundaryTilt, DecisionSlice, LoDDScores, MixupPath, Plane
    from geowidgets.session._colorings import ColorSpec

__all__ = ["BoundaryGeometry", "PLANE_KINDS", "BOUNDARY_COLORINGS", "LAYOUT_PARAMS", "check_layout_params"]

#: Colorings of the embedding this module computes (entries of ``COLOR_BY``).
BOUNDARY_COLORINGS = ("boundary_distance", "lodd_score")

#: How a slice plane is chosen: through three anchors, or through anchor A along two directions
#: of ``geo.plane_directions`` (top principal axes, the margin gradient at A, class centroids, random).
PLANE_KINDS = ("anchors", "pca", "gradient", "centroids", "random")
_INPUT = "input"


class BoundaryGeometry:
    """Session methods for the decision boundary (mixed into ``Session``; needs its attributes)."""

    # Provided by Session.
    if TYPE_CHECKING:
        n: int
        labels: np.ndarray | None
        metric: str
        inputs: Any
        prediction_model: Any
        model: Any
        layers: list[str]
        SLICE_MARGIN: float
        _memo: dict[str, Memo]
        _small: dict[str, Memo]

        def check_layer(self, layer: str | None, *, allow_input: bool = False) -> str: ...

        @property
        def task(self) -> str: ...
        def check_k(self, k: int) -> int: ...
        def slice_space(self, layer: str) -> torch.Tensor: ...
        def features(self, layer: str) -> torch.Tensor: ...
        def knn_graph(self, layer: str) -> Any: ...
        def decision_slice(self, layer: str, anchors: tuple[int, int, int], resolution: int = 128) -> Any: ...
        def _answer(self, value: Any) -> Any: ...

    def _boundary_memo(self, name: str, maxsize: int | None = None) -> Memo:
        """The memo ``name`` (created on first use; ``close`` clears it with the others)."""
        store = self._small if maxsize else self._memo
        memo = store.get(name)
        if memo is None:
            memo = store.setdefault(name, Memo(maxsize=maxsize) if maxsize else Memo())
        return memo

    def _carrier(self, index: int) -> torch.Tensor:
        """Input sample ``index`` (no batch dimension): what the model runs on for a patched layer.

        For mapping inputs (a tokenizer's batch) the main tensor, ``input_ids`` if present, else the
        first entry (the model's other arguments keep their defaults); for a Dataset or DataLoader,
        the input of the item (``x`` of an ``(x, y)`` pair).
        """
        from torch.utils.data import DataLoader

        from geowidgets.probe import take_rows

        if take_rows(self.inputs, [int(index)]) is None:
            raise ValueError(
                "these inputs (an iterable Dataset, or a DataLoader that does not read its dataset in order) cannot "
                "give one sample by index, which a slice or a MixUp path at a hidden layer runs the model on; pass "
                "a Tensor, a mapping of Tensors or a sized Dataset"
            )
        inputs = self.inputs.dataset if isinstance(self.inputs, DataLoader) else self.inputs
        if isinstance(inputs, Mapping):
            x: Any = {key: value[int(index)] for key, value in inputs.items()}
        else:
            x = inputs[int(index)]
        if isinstance(x, (tuple, list)):
            x = x[0]
        if isinstance(x, Mapping):
            x = x["input_ids"] if "input_ids" in x else next(iter(x.values()))
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))

    @contextmanager
    def _running_carrier(self) -> Iterator[None]:
        """Explain a model that fails on a carrier from a mapping batch (its other arguments at their defaults)."""
        try:
            yield
        except CarrierError as exc:
            if isinstance(self.inputs, Mapping):
                raise ValueError(
                    "slices, MixUp paths and boundary searches at a hidden layer run the model on one sample's "
                    "input_ids alone, its other arguments (the attention mask among them) at their defaults, and "
                    f"this model fails that way. {exc}"
                ) from exc
            raise

    def _check_index(self, index: int, name: str = "index") -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < self.n:
            raise ValueError(f"{name} must be a sample index in [0, {self.n}), got {index!r}")
        return int(index)

    def _classifier(self, what: str) -> None:
        if self.task != "classification":
            raise ValueError(f"{what} needs a classifier's decisions; this session's task is {self.task!r}")
        if getattr(self, "tokens", None) is not None:
            raise ValueError(
                f"{what} moves a sample through the model; this session's rows are tokens (pooling='tokens'), "
                "single positions of a sequence that the model cannot run on their own. Use a per-sample "
                "pooling ('mean', 'first', 'last') for it"
            )

    # ------------------------------------------------------------------ planes
    def slice_plane(
        self,
        layer: str,
        anchors: tuple[int, ...],
        plane: str = "anchors",
        classes: tuple[int, ...] | None = None,
    ) -> Plane:
        """The plane of a slice at ``layer``: through the three anchors, or through anchor A along two directions.

        Parameters
        ----------
        layer : str
            A session layer or ``"input"``.
        anchors : 3 int
            Sample indices A, B, C. Every plane passes through A.
        plane : {"anchors", "pca", "gradient", "centroids", "random"}
            ``"anchors"``: ``geo.Plane.through(A, B, C)``. Otherwise ``geo.Plane.from_directions(A, u, v)``
            with ``(u, v) = geo.plane_directions(X, plane, ...)`` on the layer's samples X: the top
            two principal axes, the margin gradient at A (then the top principal axis orthogonal to
            it), the centroid differences of ``classes`` (default: the two largest classes), or two
            Gaussian directions (seed 0).
        classes : tuple of 2 or 3 int, optional
            Labels for ``"centroids"``.

        Raises
        ------
        ValueError
            Unknown plane kind, invalid anchors, ``"centroids"`` without labels.
        """
        from geowidgets import geometry as geo

        if plane not in PLANE_KINDS:
            raise ValueError(f"plane must be one of {PLANE_KINDS}, got {plane!r}")
        layer = self.check_layer(layer, allow_input=True)
        picked = tuple(self._check_index(a, "anchors") for a in anchors)
        if len(picked) != 3 or len(set(picked)) != 3:
            raise ValueError(f"anchors must be 3 distinct sample indices, got {picked}")
        space = self.slice_space(layer)
        if plane == "anchors":
            return geo.Plane.through(*(space[a] for a in picked))
        if plane == "centroids" and self.labels is None:
            raise ValueError("plane='centroids' needs labels; this session has none")
        kwargs: dict[str, Any] = {}
        if plane == "centroids":
            kwargs.update(labels=self.labels, classes=None if classes is None else tuple(int(c) for c in classes))
        if plane == "gradient":
            kwargs.update(
                origin=space[picked[0]],
                model=self.prediction_model,
                layer=None if layer == _INPUT else layer,
                carrier=self._carrier(picked[0]),
            )
            with model_lock(self.model), self._running_carrier():
                dirs = geo.plane_directions(space, plane, **kwargs)
        else:
            dirs = geo.plane_directions(space, plane, **kwargs)
        return geo.Plane.from_directions(space[picked[0]], dirs[0], dirs[1])

    def plane_slice(
        self,
        layer: str,
        anchors: tuple[int, ...],
        resolution: int = 128,
        plane: str = "anchors",
        classes: tuple[int, ...] | None = None,
    ) -> DecisionSlice:
        """The decision slice on :meth:`slice_plane` (``plane="anchors"`` is :meth:`decision_slice`).

        The frame fits the samples' projections as in :meth:`decision_slice`. Cached per (layer,
        plane, anchors, resolution, classes).
        """
        from geowidgets import geometry as geo

        if plane == "anchors":
            return self.decision_slice(layer, tuple(anchors), resolution)  # type: ignore[arg-type]
        layer = self.check_layer(layer, allow_input=True)
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= 1024:
            raise ValueError(f"resolution must be an integer in [8, 1024], got {resolution!r}")
        picked = tuple(int(a) for a in anchors)
        classes = None if classes is None else tuple(int(c) for c in classes)
        key = (layer, plane, picked, resolution, classes)

        def compute():
            p = self.slice_plane(layer, picked, plane, classes)
            kwargs: dict[str, Any] = {"carrier": self._carrier(picked[0])}
            if layer != _INPUT:
                kwargs.update(layer=layer, plane_space="layer")
            if self.task == "regression":
                kwargs.update(target_index=0)
            with model_lock(self.model), self._running_carrier():
                return geo.decision_slice(
                    self.prediction_model,
                    p,
                    resolution=resolution,
                    data=self.slice_space(layer),
                    margin=self.SLICE_MARGIN,
                    **kwargs,
                )

        return self._answer(self._boundary_memo("plane_slice").get(key, compute))

    # ------------------------------------------------------------------ boundary search
    def boundary_hit(self, layer: str, index: int, method: str = "semicircle") -> BoundaryHit:
        """``geo.boundary_search`` from sample ``index`` in the space of ``layer`` (or the input).

        ``"semicircle"`` is CGBA's search (the line hit along the margin gradient, then 10
        semicircle iterations toward the nearest boundary point); ``"line"`` stops at the line hit.
        The line range is twice the largest distance from the sample to the others. Cached per
        (layer, index, method).
        """
        from geowidgets import geometry as geo

        self._classifier("a boundary search")
        layer = self.check_layer(layer, allow_input=True)
        index = self._check_index(index)
        space = self.slice_space(layer)

        def compute():
            with model_lock(self.model), self._running_carrier():
                return geo.boundary_search(
                    self.prediction_model,
                    space[index],
                    method=method,
                    layer=None if layer == _INPUT else layer,
                    carrier=self._carrier(index),
                    space="input" if layer == _INPUT else "layer",
                    data=space,
                )

        return self._answer(self._boundary_memo("boundary_hit", 256).get((layer, index, method), compute))

    def boundary_distances(self, layer: str) -> np.ndarray:
        """Distance of every sample to the decision boundary in ``layer``'s space, float32 ``[N]``.

        Each is ``geo.boundary_search(..., method="line")``: along the margin gradient at the
        sample, the first class change (bisected to 1e-4), within four times the data's radius
        about its mean (at least twice any distance between samples); inf when the class never
        changes there. An upper bound on the
        distance to the nearest boundary point (:meth:`boundary_hit` with ``"semicircle"`` refines
        one sample's). N searches, one per sample: computed once per layer.
        """
        from geowidgets import geometry as geo

        self._classifier("distance to the boundary")
        layer = self.check_layer(layer, allow_input=True)
        if layer != _INPUT and not self.patchable(layer):  # type: ignore[attr-defined]
            raise ValueError(
                f"the distance to the decision boundary moves each sample through {layer}'s space, but "
                f"{self.unpatchable_reason(layer)}; color by it at a layer whose whole output is kept"  # type: ignore[attr-defined]
            )
        space = self.slice_space(layer)

        def compute():
            from geowidgets.geometry._arrays import column_mean, row_norms

            # Four times the largest distance to the mean, in float64 a block at a time (no [N, D] copies).
            reach = 4.0 * float(row_norms(space, torch.float64, center=column_mean(space)).max())
            out = np.empty(self.n, dtype=np.float32)
            with model_lock(self.model), self._running_carrier():
                for i in range(self.n):
                    hit = geo.boundary_search(
                        self.prediction_model,
                        space[i],
                        method="line",
                        layer=None if layer == _INPUT else layer,
                        carrier=self._carrier(i),
                        space="input" if layer == _INPUT else "layer",
                        max_distance=max(reach, 1e-6),
                    )
                    out[i] = hit.distance
            return out

        return self._answer(self._boundary_memo("boundary_distances").get(layer, compute))

    def lodd(self, layer: str, k: int = 20) -> LoDDScores:
        """``geo.lodd`` of the layer's samples at k neighbours (the layer's cached kNN graph when euclidean)."""
        from geowidgets import geometry as geo

        layer = self.check_layer(layer)
        k = self.check_k(k)

        def compute():
            graph = self.knn_graph(layer) if self.metric == "euclidean" else None
            return geo.lodd(self.features(layer), k=k, knn=graph)

        return self._answer(self._boundary_memo("lodd", 64).get((layer, k), compute))

    # ------------------------------------------------------------------ colorings
    def boundary_coloring(self, color_by: str, layer: str | None, k: int) -> ColorSpec:
        """The ``"boundary_distance"`` (:meth:`boundary_distances`) or ``"lodd_score"`` (:meth:`lodd`) coloring.

        Distances are drawn on the continuous scale from 0 to their largest finite value (a sample
        whose class never changes within reach gets that largest value); LoDD scores from their
        minimum to maximum (small: the sample's neighbours all lie to one side, a rim point).
        """
        from geowidgets.session._colorings import value_coloring

        if color_by not in BOUNDARY_COLORINGS:
            raise ValueError(f"color_by must be one of {BOUNDARY_COLORINGS}, got {color_by!r}")
        layer = self.check_layer(layer)
        if color_by == "lodd_score":
            score = np.asarray(torch.as_tensor(self.lodd(layer, k).score).cpu(), dtype=np.float32)
            return value_coloring(score, "continuous", name=f"LoDD score (k={self.check_k(k)})")
        d = self.boundary_distances(layer)
        finite = d[np.isfinite(d)]
        top = float(finite.max()) if finite.size else 1.0
        shown = np.where(np.isfinite(d), d, top).astype(np.float32)
        return value_coloring(shown, "continuous", vmin=0.0, vmax=max(top, 1e-12), name="distance to the boundary")

    def has_boundary_coloring(self, color_by: str, layer: str) -> bool:
        """True if :meth:`boundary_coloring` answers from cache (distances computed for ``layer``)."""
        return color_by == "boundary_distance" and layer in self._boundary_memo("boundary_distances")

    # ------------------------------------------------------------------ mixup and tilting
    def mixup(self, layer: str, a: int, b: int, steps: int = 101, k: int = 10) -> MixupPath:
        """``geo.mixup_path`` between samples ``a`` and ``b`` in ``layer``'s space (or the input).

        Manifold intrusion uses the majority label of the k nearest session samples (labels
        needed; without them only the model's own intrusion, ``model_intrusion``, is defined).
        The end classes are the samples' labels (else the model's predictions). Cached.
        """
        from geowidgets import geometry as geo

        self._classifier("a MixUp path")
        layer = self.check_layer(layer, allow_input=True)
        a, b = self._check_index(a, "a"), self._check_index(b, "b")
        if a == b:
            raise ValueError(f"a and b must be two different samples, got {a} twice")
        k = self.check_k(k)
        space = self.slice_space(layer)
        labels = self.labels

        def compute():
            kwargs: dict[str, Any] = {}
            if labels is not None:
                kwargs.update(data=space, labels=labels, k=k, label_a=int(labels[a]), label_b=int(labels[b]))
            with model_lock(self.model), self._running_carrier():
                return geo.mixup_path(
                    self.prediction_model,
                    space[a],
                    space[b],
                    steps,
                    layer=None if layer == _INPUT else layer,
                    carrier=self._carrier(a),
                    space="input" if layer == _INPUT else "layer",
                    **kwargs,
                )

        return self._answer(self._boundary_memo("mixup", 64).get((layer, a, b, steps, k), compute))

    def tilting(self, classes: tuple[int, ...] | None = None, reg: float = 1e-2) -> list[BoundaryTilt]:
        """``geo.boundary_tilting_angle`` of each layer for the class pair, at L2 strength ``reg`` (λ).

        One fitted probe per layer of ``session.layers`` (in order); ``classes`` default to the two
        most frequent classes. Cached per (classes, reg).
        """
        from geowidgets import geometry as geo

        if self.labels is None:
            raise ValueError("boundary tilting needs labels; this session has none")
        pair = None if classes is None else tuple(int(c) for c in classes)
        reg = float(reg)

        def compute():
            return [geo.boundary_tilting_angle(self.features(name), self.labels, pair, reg=reg) for name in self.layers]

        return self._answer(self._boundary_memo("tilting", 64).get((pair, reg), compute))


#: Layout methods of ``Session.layout`` and the ``geo.embed`` parameters each takes from the view.
LAYOUT_PARAMS: dict[str, tuple[str, ...]] = {
    "pca": (),
    "umap": ("n_neighbors", "min_dist"),
    "heatgeo": ("n_neighbors", "t"),
}


def check_layout_params(method: str, params: dict[str, Any], k_max: int) -> dict[str, Any]:
    """The layout parameters of ``method``, checked; parameters equal to ``geo.embed``'s defaults are dropped.

    Dropping the defaults keeps one cache entry per distinct layout (``layout(l, "umap")`` and
    ``layout(l, "umap", n_neighbors=15)`` are the same picture).

    Raises
    ------
    ValueError
        A parameter the method does not take, ``n_neighbors`` outside ``[2, k_max + 1]`` (UMAP
        counts the point itself) or ``[1, k_max]`` (heatgeo), ``min_dist < 0``, ``t <= 0``.

    Examples
    --------
    >>> check_layout_params("umap", {"n_neighbors": 15, "min_dist": 0.3}, k_max=30)
    {'min_dist': 0.3}
    """
    allowed = LAYOUT_PARAMS.get(method)
    if allowed is None:
        raise ValueError(f"method must be one of {list(LAYOUT_PARAMS)}, got {method!r}")
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"layout method {method!r} takes {list(allowed) or 'no parameters'}, got {unknown}")
    defaults = {"n_neighbors": 15, "min_dist": 0.1, "t": 10.0}
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name == "n_neighbors":
            hi, lo = (k_max + 1, 2) if method == "umap" else (k_max, 1)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
                raise ValueError(f"n_neighbors must be an integer in [{lo}, {hi}] (k_max={k_max}), got {value!r}")
            value = int(value)
        elif name == "min_dist":
            if not (isinstance(value, (int, float)) and 0 <= value and np.isfinite(value)):
                raise ValueError(f"min_dist must be a finite number >= 0, got {value!r}")
            value = float(value)
        elif not (isinstance(value, (int, float)) and value > 0 and np.isfinite(value)):
            raise ValueError(f"t (the diffusion time) must be a finite number > 0, got {value!r}")
        else:
            value = float(value)
        if value != defaults[name]:
            out[name] = value
    return out
