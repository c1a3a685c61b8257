"""SliceView: the model's decisions on a plane through three samples, at the input or a layer."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import traitlets

from geowidgets.session import INPUT_LAYER, Session, temperature_colours
from geowidgets.widgets._base import STATIC, ViewBase
from geowidgets.widgets._codec import array_trait

__all__ = ["SliceView"]


class SliceView(ViewBase):
    """Decision-boundary slice as an image: class colour, confidence as lightness.

    The plane passes through three anchor samples (A, B, C) in the space of ``layer`` (or of the
    model's input with ``layer="input"``). The data nearest the plane are drawn projected onto it,
    fading with their distance from it. A temperature move rescales the cached slice logits (no
    forward pass) and sends only the new confidences. A click on the image sets ``clicked``
    (plane coordinates ``[alpha, beta]``) and makes the sample nearest the click the new anchor,
    replacing the anchors in turn (A, then B, then C).

    Parameters
    ----------
    session : Session
    layer : str, optional
        A session layer or ``"input"`` (default: the session's first layer).
    anchors : list of 3 int, optional
        Sample indices (default: one sample from each of the three largest classes).
    resolution : int
        Grid size G (the image is G x G).
    temperature : float
    max_points : int
        Data points drawn (those nearest the plane).

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
    resolution = traitlets.Int(
        128, help="Grid size G (int, 8..1024) of the next slice; the image drawn is the [G, G] grid of classes."
    ).tag(sync=True)
    extent = traitlets.List(
        traitlets.Float(),
        default_value=[],
        help="[alpha0, alpha1, beta0, beta1] (4 floats): plane coordinates of the first and last grid-point centres.",
    ).tag(sync=True)
    n_classes = traitlets.Int(0, help="Number of classes C of the model (int); sets the class colour palette.").tag(
        sync=True
    )
    class_names = traitlets.List(
        traitlets.Unicode(), default_value=[], help="Class names (list of str), indexed by class code."
    ).tag(sync=True)
    points = array_trait(
        "float32", "[M, 2]", "Plane coordinates (alpha, beta) of the M samples nearest the plane, float32 [M, 2]."
    )
    point_labels = array_trait(
        "int32", "[M]", "Class of each drawn sample, int32 [M]: its label, or its prediction without labels."
    )
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
    title = traitlets.Unicode("", help="Title line above the image (str), set by the view.").tag(sync=True)
    layer = traitlets.Unicode(
        "", help="Where the plane lies (str): one of session.layers, or 'input' for the model's input space."
    ).tag(sync=True)
    temperature = traitlets.Float(
        1.0, help="Softmax temperature (float > 0) of the confidence; a change rescales the held logits only."
    ).tag(sync=True)
    max_points = traitlets.Int(5000, help="Most samples drawn on the plane (int): those nearest to it.").tag(sync=True)

    def __init__(self, session: Session, **kwargs: Any):
        if not isinstance(session, Session):
            raise ValueError(f"SliceView needs a geowidgets Session, got {type(session).__name__}")
        self.session = session
        self._slice = None
        self._coords: np.ndarray | None = None
        self._logits: tuple | None = None
        self._next_anchor = 0
        kwargs.setdefault("layer", session.layers[0])
        kwargs.setdefault("anchors", list(session.default_anchors()))
        super().__init__(**kwargs)
        self.class_names = session.class_names
        self.observe(self._on_plane, names=["layer", "anchors", "resolution", "max_points"])
        self.observe(self._on_temperature, names=["temperature"])
        self.observe(self._on_click, names=["clicked"])
        self._on_plane()

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        return self.session.check_layer(proposal["value"], allow_input=True)

    @traitlets.validate("anchors")
    def _check_anchors(self, proposal: dict) -> list[int]:
        a = [int(i) for i in proposal["value"]]
        if len(a) != 3 or len(set(a)) != 3 or not all(0 <= i < self.session.n for i in a):
            raise ValueError(f"anchors must be 3 distinct sample indices in [0, {self.session.n}), got {a}")
        return a

    @traitlets.validate("temperature")
    def _check_temperature(self, proposal: dict) -> float:
        return Session.check_temperature(proposal["value"])

    @traitlets.validate("resolution")
    def _check_resolution(self, proposal: dict) -> int:
        if not 8 <= proposal["value"] <= 1024:
            raise ValueError(f"resolution must be in [8, 1024], got {proposal['value']}")
        return proposal["value"]

    def _on_plane(self, change: dict | None = None) -> None:
        s, layer, anchors, g = self.session, self.layer, tuple(self.anchors), self.resolution
        max_points = self.max_points

        def compute():
            sl = s.decision_slice(layer, anchors, g)
            space = s.slice_space(layer)
            coords = np.asarray(sl.coords(space), dtype=np.float32)
            dist = np.asarray(sl.distance_to_plane(space), dtype=np.float64)
            return sl, coords, dist, max_points

        self.lane("slice").submit(compute, self._apply_plane, message=f"slicing the decisions at {layer}…")

    def _confidence_bytes(self, sl: Any, temperature: float) -> np.ndarray:
        """Confidence at ``temperature`` as uint8 (0..255), from the slice's held logits (no forward pass)."""
        if self._logits is None or self._logits[0] is not sl:
            z = sl.logits.detach().cpu().numpy() if isinstance(sl.logits, torch.Tensor) else np.asarray(sl.logits)
            self._logits = (sl, np.ascontiguousarray(z.reshape(-1, z.shape[-1]), dtype=np.float32))
        conf = temperature_colours(self._logits[1], temperature, "confidence")
        return np.clip(np.rint(conf * 255), 0, 255).astype(np.uint8).reshape(sl.classes.shape)

    def _apply_plane(self, result: tuple) -> None:
        sl, coords, dist, max_points = result
        s = self.session
        classes = sl.classes.detach().cpu().numpy() if isinstance(sl.classes, torch.Tensor) else np.asarray(sl.classes)
        order = np.argsort(dist, kind="stable")[:max_points]
        scale = float(np.median(dist[order])) if order.size else 1.0
        alpha = np.clip(1.0 - dist[order] / (3 * scale), 0.15, 1.0) if scale > 0 else np.ones(order.size)
        labels = s.labels if s.labels is not None else s.predictions
        self._slice, self._coords = sl, coords
        self.set_trait("classes", classes.astype(np.uint8))
        self.set_trait("confidence", self._confidence_bytes(sl, self.temperature))  # the temperature now
        self.extent = [float(v) for v in sl.extent]
        self.n_classes = int(s.logits.shape[1])
        self.set_trait("points", coords[order].astype(np.float32))
        self.set_trait("point_labels", np.asarray(labels)[order].astype(np.int32))
        self.set_trait("point_alpha", np.rint(alpha * 255).astype(np.uint8))
        self.set_trait("point_index", order.astype(np.int32))
        self.set_trait("anchor_xy", coords[list(self.anchors)].astype(np.float32))
        where = "input space" if self.layer == INPUT_LAYER else f"layer {self.layer}"
        self.title = f"decision slice in {where} through #{self.anchors[0]}, #{self.anchors[1]}, #{self.anchors[2]}"

    def _on_temperature(self, change: dict | None = None) -> None:
        sl, t = self._slice, self.temperature
        if sl is None or self.lane("slice").busy:
            return  # the slice being computed picks up the new temperature when it is applied

        def apply(conf: np.ndarray) -> None:
            self.set_trait("confidence", conf)

        self.lane("temperature").submit(lambda: self._confidence_bytes(sl, t), apply, inline=True)

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

    def nearest_sample(self, alpha: float, beta: float) -> int:
        """Index of the sample whose projection on the current plane is nearest ``(alpha, beta)``."""
        if self._coords is None:
            raise ValueError("no slice has been computed yet")
        d = ((self._coords - np.array([alpha, beta], dtype=np.float32)) ** 2).sum(1)
        return int(np.argmin(d))
