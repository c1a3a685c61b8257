"""SliceView: the model's decisions on a plane through three samples, at the input or a layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import traitlets
from numpy.typing import ArrayLike

from geowidgets.session import INPUT_LAYER, Session
from geowidgets.session._boundary import PLANE_KINDS
from geowidgets.widgets._base import STATIC, ViewBase
from geowidgets.widgets._codec import array_trait

if TYPE_CHECKING:
    from geowidgets.geometry import DecisionSlice

__all__ = ["SliceView"]


class SliceView(ViewBase):
    """Decision-boundary slice as an image: class color, confidence as lightness.

    The plane passes through three anchor samples (A, B, C) in the space of ``layer`` (or of the
    model's input with ``layer="input"``). The data nearest the plane are drawn projected onto it,
    fading with their distance from it (opaque on the plane, faint beyond three times the median
    distance of the drawn samples, as the legend says). Hovering a sample gives its own label,
    prediction and distance to the plane; the background color is the model's decision on the
    plane itself, which an off-plane sample's projection need not share. A temperature move
    rescales the cached slice logits (no forward pass) and sends only the new confidences.

    A regression model (``mode == "regression"``) shows its predicted value at each point of the
    plane on a continuous scale (viridis, a colour bar gives the range), the samples coloured by
    their target on the same scale; hovering a sample gives its target, prediction and distance to
    the plane. The temperature does not apply there (``temperature_note`` says so). A click
    on the image sets ``clicked`` (plane coordinates ``[alpha, beta]``) and makes the sample
    nearest the click the new anchor, replacing the anchors in turn (A, then B, then C).

    The decision boundary is drawn as lines between neighbouring grid cells of different classes
    (``show_boundary``). ``plane`` chooses the plane from the data instead of the anchors (through
    A along the top two PCA axes, the margin gradient at A, class centroids or random directions;
    a dropdown above the image). An alt-click on a sample (or setting ``boundary_from``) runs
    CGBA's boundary search from it (``Session.boundary_hit``) and draws the ray, the semicircle
    arcs and the boundary point projected on the plane, with the distance found
    (``boundary_distance``). A shift-click adds the nearest sample to ``picked`` (the last two: a
    MixUp pair).

    Parameters
    ----------
    source : Session or DecisionSlice
        A session (live: layer, anchors and resolution changes slice again) or a
        :class:`~geowidgets.geometry.DecisionSlice` from ``geo.decision_slice`` (static: the
        plane is fixed; a temperature move still rescales its logits, clicks pick nothing).
    labels : array-like of int [M], optional
        Static view: classes of the slice's ``data`` points (drawn grey without them).
    targets : array-like of float [M], optional
        Static view of a regression slice: target values of its ``data`` points (drawn grey without them).
    class_names : list of str, optional
        Static view: names of the classes (default ``"0"``, ``"1"``...).
    layer : str, optional
        A session layer or ``"input"`` (default: the session's first layer).
    anchors : list of 3 int, optional
        Sample indices (default: one sample from each of the three largest classes).
    resolution : int
        Grid size G (the image is G x G).
    temperature : float
    max_points : int
        Data points drawn (those nearest the plane). Unknown keywords raise ``TypeError``.

    Examples
    --------
    >>> from geowidgets.datasets import toy_demo
    >>> from geowidgets.session import Session
    >>> demo = toy_demo("moons", n=200)
    >>> view = SliceView(Session(demo.model, demo.inputs, demo.labels), layer="input", resolution=32)
    >>> _ = view.wait()
    >>> view.classes.shape
    (32, 32)
    """

    _esm = STATIC / "slice.js"

    classes = array_trait(
        "uint8",
        "[G, G]",
        "Predicted class at each grid point, uint8 [G, G]: row = beta (row 0 at the bottom), column = alpha.",
    )
    confidence = array_trait(
        "uint8",
        "[G, G]",
        "Top-class softmax probability at the current temperature, uint8 [G, G], 0..255 for 0..1 (grid of classes).",
    )
    mode = traitlets.Unicode(
        "classification",
        read_only=True,
        help='What the image shows (str): "classification" (classes, confidence as lightness) or "regression" '
        "(the predicted value on a continuous scale, `values`).",
    ).tag(sync=True)
    values = array_trait(
        "float32",
        "[G, G]",
        "Regression: the predicted value at each grid point, float32 [G, G] (rows = beta, row 0 at the bottom); "
        "None for a classifier.",
    )
    value_range = traitlets.List(
        traitlets.Float(),
        default_value=[],
        read_only=True,
        help="Regression: [low, high] (2 floats) of the colour scale shared by the image and the samples' targets: "
        "the range of the grid's predictions and the drawn samples' targets. Empty for a classifier.",
    ).tag(sync=True)
    point_targets = array_trait(
        "float32", "[M]", "Regression: target value of each drawn sample, float32 [M] (NaN: none); None otherwise."
    )
    point_values = array_trait(
        "float32",
        "[M]",
        "Regression: the model's prediction for each drawn sample itself, float32 [M] (NaN: unknown); None otherwise.",
    )
    temperature_note = traitlets.Unicode(
        "",
        read_only=True,
        help="Why the temperature does not apply (str), shown in the legend; empty when it does (a classifier).",
    ).tag(sync=True)
    resolution = traitlets.Int(
        128, help="Grid size G (int, 8..1024) of the next slice; the image drawn is the [G, G] grid of classes."
    ).tag(sync=True)
    extent = traitlets.List(
        traitlets.Float(),
        default_value=[],
        read_only=True,
        help="[alpha0, alpha1, beta0, beta1] (4 floats): plane coordinates of the first and last grid-point centres; "
        "alpha runs from A towards B, beta across it towards C, in the units of the sliced space.",
    ).tag(sync=True)
    n_classes = traitlets.Int(
        0, read_only=True, help="Number of classes C of the model (int); sets the class color palette."
    ).tag(sync=True)
    class_names = traitlets.List(
        traitlets.Unicode(), default_value=[], read_only=True, help="Class names (list of str), indexed by class code."
    ).tag(sync=True)
    points = array_trait(
        "float32", "[M, 2]", "Plane coordinates (alpha, beta) of the M samples nearest the plane, float32 [M, 2]."
    )
    point_labels = array_trait(
        "int32", "[M]", "Label of each drawn sample, int32 [M] (-1: none; the dot is then colored by its prediction)."
    )
    point_predictions = array_trait(
        "int32",
        "[M]",
        "The model's prediction for each drawn sample itself (not its projection), int32 [M]; -1: unknown.",
    )
    point_distance = array_trait(
        "float32", "[M]", "Distance of each drawn sample from the plane, float32 [M], in the units of the sliced space."
    )
    distance_scale = traitlets.Float(
        0.0,
        read_only=True,
        help="Median distance from the plane of the drawn samples (float >= 0): opacity falls to its floor at 3x this.",
    ).tag(sync=True)
    point_alpha = array_trait(
        "uint8", "[M]", "Opacity of each drawn sample, uint8 [M], 0..255: fades with its distance from the plane."
    )
    point_index = array_trait("int32", "[M]", "Sample index of each drawn point, int32 [M] (nearest the plane first).")
    anchors = traitlets.List(
        traitlets.Int(),
        default_value=[],
        help="The three sample indices (list of 3 distinct int) the plane passes through: A, B, C.",
    ).tag(sync=True)
    anchor_xy = array_trait("float32", "[3, 2]", "Plane coordinates (alpha, beta) of anchors A, B, C, float32 [3, 2].")
    clicked = traitlets.List(
        traitlets.Float(),
        default_value=[],
        help="Plane coordinates [alpha, beta] (2 floats) of the last click; the nearest sample becomes an anchor.",
    ).tag(sync=True)
    selection = traitlets.List(
        traitlets.Int(), default_value=[], help="Indices (list of int) of the selected samples, drawn emphasised."
    ).tag(sync=True)
    hovered = traitlets.Int(-1, help="Index (int) of the sample under the mouse, -1 if none.").tag(sync=True)
    size = traitlets.Int(440, help="Image width and height in CSS pixels (int).").tag(sync=True)
    title = traitlets.Unicode("", read_only=True, help="Title line above the image (str), set by the view.").tag(
        sync=True
    )
    layer = traitlets.Unicode(
        "", help="Where the plane lies (str): one of session.layers, or 'input' for the model's input space."
    ).tag(sync=True)
    temperature = traitlets.Float(
        1.0, help="Softmax temperature (float > 0) of the confidence; a change rescales the held logits only."
    ).tag(sync=True)
    max_points = traitlets.Int(5000, help="Most samples drawn on the plane (int): those nearest to it.").tag(sync=True)
    plane = traitlets.Unicode(
        "anchors",
        help="How the plane is chosen (str, one of plane_kinds): 'anchors' (through A, B, C), or through A along "
        "'pca' (top two principal axes), 'gradient' (margin gradient at A), 'centroids' (class centroids of the "
        "anchors' labels) or 'random' directions (Session.slice_plane).",
    ).tag(sync=True)
    plane_kinds = traitlets.List(
        traitlets.Unicode(),
        default_value=[],
        read_only=True,
        help="The plane choices offered (list of str); empty for a static slice (its plane is fixed).",
    ).tag(sync=True)
    show_boundary = traitlets.Bool(
        True, help="Draw the decision boundary (bool): lines between neighbouring grid cells of different classes."
    ).tag(sync=True)
    modified_click = traitlets.Dict(
        default_value={},
        help="Last click with a modifier (dict: alpha, beta, modifier 'alt' or 'shift', seq): alt starts a boundary "
        "search from the nearest sample (boundary_from), shift adds it to `picked`.",
    ).tag(sync=True)
    boundary_from = traitlets.Int(
        -1, help="Sample (int) the CGBA boundary search starts from (Session.boundary_hit), -1 for none."
    ).tag(sync=True)
    boundary_path = array_trait(
        "float32",
        "[P, 2]",
        "The boundary search projected on the plane, float32 [P, 2]: the sample, then each boundary point found.",
    )
    boundary_arcs = array_trait(
        "float32", "[A, S, 2]", "The search's semicircle arcs (S points each) on the plane, float32 [A, S, 2]."
    )
    boundary_distance = traitlets.Float(
        float("nan"),
        read_only=True,
        help="Distance (float) from boundary_from to the boundary point found, in the sliced space's units; NaN: none.",
    ).tag(sync=True)
    boundary_summary = traitlets.Unicode(
        "", read_only=True, help="What the boundary search found (str), shown under the legend."
    ).tag(sync=True)
    picked = traitlets.List(
        traitlets.Int(), default_value=[], help="The last two samples shift-clicked (list of int): a MixUp pair."
    ).tag(sync=True)

    def __init__(
        self,
        source: Session | DecisionSlice,
        *,
        labels: ArrayLike | None = None,
        class_names: list[str] | None = None,
        targets: ArrayLike | None = None,
        **kwargs: Any,
    ):
        from geowidgets.geometry import DecisionSlice

        self._static: DecisionSlice | None = None
        self._slice: DecisionSlice | None = None
        self._coords: np.ndarray | None = None
        self._next_anchor = 0
        if isinstance(source, Session):
            if labels is not None or class_names is not None or targets is not None:
                raise TypeError("labels, targets and class_names come from the session; pass them to Session")
            if source.task == "embedding":
                raise ValueError(
                    "this session's model has no predictions to slice (task='embedding'); pass head= (a module "
                    "mapping the features to logits) to the Session"
                )
            self.session: Session | None = source
            kwargs.setdefault("layer", source.layers[0])
            # Without anchors, the default ones (Session.default_anchors, which read the predictions of
            # every sample) are chosen on the worker with the first slice, so building the view never
            # waits for the whole capture.
            self._defaulting_anchors = False
            super().__init__(**kwargs)
            self._set_mode(source.task == "regression")
            self.set_trait("class_names", list(source.class_names))
            if source.task == "classification":
                self.set_trait("plane_kinds", list(PLANE_KINDS))
            self.observe(self._on_plane, names=["layer", "anchors", "resolution", "max_points", "plane"])
            self.observe(self._on_modified_click, names=["modified_click"])
            self.observe(self._on_boundary_from, names=["boundary_from"])
            self.observe(self._on_temperature, names=["temperature"])
            self.observe(self._on_click, names=["clicked"])
            self._on_plane()
            return
        if not isinstance(source, DecisionSlice):
            raise ValueError(
                f"SliceView needs a geowidgets Session or a geo.DecisionSlice, got {type(source).__name__}"
            )
        self.session = None
        self._static = source
        regression = source.is_regression
        if regression and (labels is not None or class_names is not None):
            raise TypeError("a regression slice has no classes: pass targets= (one value per data point), not labels=")
        if not regression and targets is not None:
            raise TypeError("targets= is for a regression slice (geo.decision_slice(..., target_index=...))")
        if not regression:
            kwargs.setdefault("temperature", float(source.temperature))
        super().__init__(**kwargs)
        self._set_mode(regression)
        self.set_trait("layer", source.layer or INPUT_LAYER)
        self.set_trait("resolution", source.resolution)
        n_classes = 0 if regression else int(source.logits.shape[-1])
        self.set_trait(
            "class_names",
            [str(c) for c in class_names] if class_names is not None else [str(c) for c in range(n_classes)],
        )
        given, what = (targets, "targets") if regression else (labels, "labels")
        if source.data_coords is None:
            coords, dist, point_labels = np.zeros((0, 2), np.float32), np.zeros(0), np.zeros(0, np.int32)
        else:
            coords = np.asarray(source.data_coords, dtype=np.float32)
            dist = np.asarray(source.data_distance, dtype=np.float64)
            missing = np.nan if regression else -1
            point_labels = np.full(coords.shape[0], missing) if given is None else np.asarray(given)
            if point_labels.shape != (coords.shape[0],):
                raise ValueError(
                    f"{what} must have shape ({coords.shape[0]},) (one per data point), got {point_labels.shape}"
                )
        anchors = np.asarray(source.anchor_coords, dtype=np.float32)
        self._show(source, coords, dist, point_labels, anchors if anchors.shape == (3, 2) else None, n_classes)
        self.set_trait(
            "title",
            ("regression slice" if regression else "decision slice")
            + (f" in layer {source.layer}" if source.layer else " in input space")
            + " · static (no session): the plane is fixed",
        )
        self.observe(self._on_temperature, names=["temperature"])

    def __repr__(self) -> str:
        mode = "live" if self.session is not None else "static"
        return (
            f"SliceView(layer={self.layer!r}, resolution={self.resolution}, temperature={self.temperature:.3g}, {mode})"
        )

    def _set_mode(self, regression: bool) -> None:
        """Set ``mode`` and, for a regression model, the reason the temperature is not used."""
        self.set_trait("mode", "regression" if regression else "classification")
        self.set_trait(
            "temperature_note",
            "temperature: not used for regression (the model's outputs are values, not class logits)"
            if regression
            else "",
        )

    def _needs_session(self, name: str, value: Any, current: Any) -> None:
        if self.session is None and value != current:
            raise ValueError(
                f"this SliceView shows a fixed geo.DecisionSlice, so {name} cannot change; "
                "pass a geowidgets Session to make it live"
            )

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        if self.session is None:
            assert self._static is not None  # a view without a session shows a fixed slice
            self._needs_session("layer", proposal["value"], self._static.layer or INPUT_LAYER)
            return proposal["value"]
        return self.session.check_layer(proposal["value"], allow_input=True)

    @traitlets.validate("anchors")
    def _check_anchors(self, proposal: dict) -> list[int]:
        a = [int(i) for i in proposal["value"]]
        if self.session is None:
            self._needs_session("anchors", a, [])
            return a
        if len(a) != 3 or len(set(a)) != 3 or not all(0 <= i < self.session.n for i in a):
            raise ValueError(f"anchors must be 3 distinct sample indices in [0, {self.session.n}), got {a}")
        return a

    @traitlets.validate("temperature")
    def _check_temperature(self, proposal: dict) -> float:
        return Session.check_temperature(proposal["value"])

    @traitlets.validate("resolution")
    def _check_resolution(self, proposal: dict) -> int:
        if self.session is None:
            assert self._static is not None
            self._needs_session("resolution", proposal["value"], self._static.resolution)
            return proposal["value"]
        if not 8 <= proposal["value"] <= 1024:
            raise ValueError(f"resolution must be in [8, 1024], got {proposal['value']}")
        return proposal["value"]

    def _on_plane(self, change: dict | None = None) -> None:
        if self._defaulting_anchors:
            return  # the default anchors of the slice being applied: it is already computed for them
        s, layer, given, g = self._live, self.layer, tuple(self.anchors), self.resolution
        max_points, plane = self.max_points, self.plane

        def compute():
            anchors = given or s.default_anchors()
            sl = s.plane_slice(layer, anchors, g, plane, self._plane_classes(anchors))
            space = s.slice_space(layer)
            coords = np.asarray(sl.coords(space), dtype=np.float32)
            dist = np.asarray(sl.distance_to_plane(space), dtype=np.float64)
            return sl, coords, dist, max_points, anchors

        self.lane("slice").submit(compute, self._apply_plane, message=f"slicing the decisions at {layer}…")

    @staticmethod
    def _confidence_image(sl: DecisionSlice, temperature: float) -> np.ndarray:
        """The slice's confidence at ``temperature`` as uint8 ``[G, G]`` (0..255), from its held logits."""
        conf = np.asarray(sl.with_temperature(temperature).confidence)
        return np.clip(np.rint(conf * 255), 0, 255).astype(np.uint8)

    def _apply_plane(self, result: tuple) -> None:
        sl, coords, dist, max_points, anchors = result
        s = self._live
        if list(self.anchors) != list(anchors):
            self._defaulting_anchors = True
            try:
                self.anchors = list(anchors)
            finally:
                self._defaulting_anchors = False
        anchor_xy = coords[list(self.anchors)]
        if sl.is_regression:
            targets = s.targets if s.targets is not None else np.full(s.n, np.nan)
            self._show(sl, coords, dist, targets, anchor_xy, 0, max_points, s.predictions)
        else:
            labels = s.labels if s.labels is not None else np.full(s.n, -1)
            self._show(sl, coords, dist, labels, anchor_xy, int(s.logits.shape[1]), max_points, s.predictions)
        title = slice_title(self.layer, self.anchors, regression=sl.is_regression)
        self.set_trait("title", title if self.plane == "anchors" else f"{title} · plane: {self.plane} through A")
        if self.boundary_from >= 0:
            self._on_boundary_from()

    def _show(
        self,
        sl: DecisionSlice,
        coords: np.ndarray,
        dist: np.ndarray,
        labels: np.ndarray,
        anchor_xy: np.ndarray | None,
        n_classes: int,
        max_points: int | None = None,
        predictions: np.ndarray | None = None,
    ) -> None:
        """Set the image and point traits from a slice and its data's plane coordinates.

        ``labels`` and ``predictions`` are per sample: class codes for a classifier's slice, float
        targets and predicted values for a regression slice.
        """
        order = np.argsort(dist, kind="stable")[: self.max_points if max_points is None else max_points]
        scale = float(np.median(dist[order])) if order.size else 0.0
        spread = float(np.ptp(coords[order])) if order.size else 0.0
        if scale <= 1e-9 * max(spread, 1.0):
            # Rounding only (e.g. a 2-D layer, where the plane is the whole space): every sample is on it.
            dist = np.zeros_like(dist)
            scale = 0.0
        alpha = np.clip(1.0 - dist[order] / (3 * scale), 0.15, 1.0) if scale > 0 else np.ones(order.size)
        self._slice, self._coords = sl, coords
        if sl.is_regression:
            values = np.asarray(sl.values, dtype=np.float32)
            targets = np.asarray(labels, dtype=np.float32)[order]
            preds = np.full(order.size, np.nan) if predictions is None else np.asarray(predictions)[order]
            shown = np.concatenate([values.ravel(), targets])
            shown = shown[np.isfinite(shown)]
            lo, hi = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
            if hi <= lo:
                lo, hi = lo - 0.5, hi + 0.5
            self.set_trait("classes", None)
            self.set_trait("confidence", None)
            self.set_trait("values", values)
            self.set_trait("value_range", [lo, hi])
            self.set_trait("point_targets", targets)
            self.set_trait("point_values", preds.astype(np.float32))
            self.set_trait("point_labels", np.full(order.size, -1, dtype=np.int32))
            self.set_trait("point_predictions", np.full(order.size, -1, dtype=np.int32))
        else:
            self.set_trait("classes", np.asarray(sl.classes).astype(np.uint8))
            self.set_trait("confidence", self._confidence_image(sl, self.temperature))  # the temperature now
            self.set_trait("point_labels", np.asarray(labels)[order].astype(np.int32))
            preds = np.full(order.size, -1) if predictions is None else np.asarray(predictions)[order]
            self.set_trait("point_predictions", preds.astype(np.int32))
        self.set_trait("extent", [float(v) for v in sl.extent])
        self.set_trait("n_classes", n_classes)
        self.set_trait("distance_scale", scale)
        self.set_trait("points", coords[order].astype(np.float32))
        self.set_trait("point_distance", dist[order].astype(np.float32))
        self.set_trait("point_alpha", np.rint(alpha * 255).astype(np.uint8))
        self.set_trait("point_index", order.astype(np.int32))
        if anchor_xy is not None:
            self.set_trait("anchor_xy", np.asarray(anchor_xy, dtype=np.float32))

    def _on_temperature(self, change: dict | None = None) -> None:
        sl, t = self._slice, self.temperature
        if self.mode == "regression" or sl is None or self.lane("slice").busy:
            return  # regression: no temperature; else the slice being computed picks it up when it is applied

        def apply(conf: np.ndarray) -> None:
            self.set_trait("confidence", conf)

        self.lane("temperature").submit(lambda: self._confidence_image(sl, t), apply, inline=True)

    def _on_click(self, change: dict) -> None:
        clicked = self.clicked
        if len(clicked) != 2 or self._coords is None:
            return
        nearest = self.nearest_sample(clicked[0], clicked[1])
        anchors = list(self.anchors)
        if nearest in anchors:
            return
        anchors[self._next_anchor] = nearest
        self._next_anchor = (self._next_anchor + 1) % 3
        self.anchors = anchors

    @traitlets.validate("plane")
    def _check_plane(self, proposal: dict) -> str:
        if self.session is None:
            self._needs_session("plane", proposal["value"], "anchors")
        else:
            allowed = PLANE_KINDS if self.session.task == "classification" else ("anchors",)
            if proposal["value"] not in allowed:
                raise ValueError(f"plane must be one of {list(allowed)}, got {proposal['value']!r}")
        return proposal["value"]

    def _plane_classes(self, anchors: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
        """For ``plane="centroids"``: the distinct labels of A, B, C in order (None: the two largest classes)."""
        labels = None if self.session is None else self.session.labels
        if labels is None:
            return None
        distinct = tuple(dict.fromkeys(int(labels[a]) for a in (self.anchors if anchors is None else anchors)))
        return distinct if len(distinct) >= 2 else None

    def _on_modified_click(self, change: dict) -> None:
        click = self.modified_click
        if self._coords is None or not {"alpha", "beta", "modifier"} <= set(click):
            return
        nearest = self.nearest_sample(float(click["alpha"]), float(click["beta"]))
        if click["modifier"] == "alt":
            self.boundary_from = nearest
        elif click["modifier"] == "shift":
            self.picked = [*[i for i in self.picked if i != nearest][-1:], nearest]

    def _on_boundary_from(self, change: dict | None = None) -> None:
        """Run (or take from the session's cache) the CGBA search from ``boundary_from``; project it on the plane."""
        s, start, layer, sl = self.session, self.boundary_from, self.layer, self._slice
        if start < 0 or s is None or sl is None or s.task != "classification":
            with self.hold_sync():
                self.set_trait("boundary_path", None)
                self.set_trait("boundary_arcs", None)
                self.set_trait("boundary_distance", float("nan"))
                self.set_trait("boundary_summary", "")
            return

        def compute():
            hit = s.boundary_hit(layer, start)
            path = np.asarray(sl.coords(np.asarray(torch_cpu(hit.path))), dtype=np.float32).reshape(-1, 2)
            arcs = None
            if hit.arcs is not None:
                a = np.asarray(torch_cpu(hit.arcs))
                arcs = np.asarray(sl.coords(a.reshape(-1, a.shape[-1])), dtype=np.float32).reshape(a.shape[0], -1, 2)
            return hit, path, arcs

        def apply(result: tuple) -> None:
            hit, path, arcs = result
            names = self.class_names
            name = lambda c: names[c] if 0 <= c < len(names) else str(c)  # noqa: E731
            summary = (
                f"boundary search (CGBA) from #{start}: distance {hit.distance:.4g} to the boundary "
                f"{name(hit.from_class)} → {name(hit.to_class)} in {'input space' if layer == INPUT_LAYER else layer}"
                if hit.found
                else f"boundary search from #{start}: no class change found within reach"
            )
            with self.hold_sync():
                self.set_trait("boundary_path", path)
                self.set_trait("boundary_arcs", arcs)
                self.set_trait("boundary_distance", float(hit.distance) if hit.found else float("nan"))
                self.set_trait("boundary_summary", summary)

        self.lane("boundary").submit(compute, apply, message=f"searching the boundary from #{start}…")

    def nearest_sample(self, alpha: float, beta: float) -> int:
        """Index of the sample whose projection on the current plane is nearest ``(alpha, beta)``."""
        if self._coords is None:
            raise ValueError("no slice has been computed yet")
        d = ((self._coords - np.array([alpha, beta], dtype=np.float32)) ** 2).sum(1)
        return int(np.argmin(d))


def torch_cpu(x: Any) -> Any:
    """A tensor moved to the CPU and detached (numpy arrays pass through)."""
    return x.detach().cpu() if hasattr(x, "detach") else x


def slice_title(layer: str, anchors: list[int], regression: bool = False) -> str:
    """The title of a live slice: what it shows, where the plane lies and which samples A, B, C are.

    Examples
    --------
    >>> slice_title("fc1", [3, 4, 7])
    'decision slice in layer fc1 · A = #3, B = #4, C = #7'
    >>> slice_title("input", [0, 1, 2], regression=True)
    'predicted value in input space · A = #0, B = #1, C = #2'
    """
    where = "input space" if layer == INPUT_LAYER else f"layer {layer}"
    what = "predicted value" if regression else "decision slice"
    return f"{what} in {where} · " + ", ".join(f"{n} = #{i}" for n, i in zip("ABC", anchors))
