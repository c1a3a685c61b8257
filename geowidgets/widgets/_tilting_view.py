"""TiltingView: the boundary tilting angle of two classes per layer, with the probe's λ as a control."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import traitlets

from geowidgets.plotting._profile import padded_range
from geowidgets.session import Session
from geowidgets.widgets._base import check_keywords
from geowidgets.widgets._mixup_view import _LiveBokeh

__all__ = ["TiltingView"]


class TiltingView(_LiveBokeh):
    """Boundary tilting per layer: the angle between a logistic probe and the nearest-centroid direction.

    For the two classes ``classes``, each layer's features get an L2-regularised logistic probe
    (strength ``reg`` = λ) and its weight vector's angle to ``μ_b − μ_a`` is charted
    (``Session.tilting``, i.e. ``geo.boundary_tilting_angle`` per layer). 0° means the probe's
    boundary is the nearest-centroid one; a large angle means it tilts along low-variance
    directions (Tanay & Griffin's boundary tilting). Hover gives the angle and the probe's
    training accuracy; a dashed line marks ``layer``. Moving ``reg`` refits (cached per λ).

    Parameters
    ----------
    session : Session
        A session with labels.
    classes : list of 2 int, optional
        The pair (default: the two most frequent classes).
    reg : float
        λ > 0 (a strong λ shrinks the probe toward the centroid direction).
    layer : str, optional
        The layer marked.
    width, height : int
        Chart size in CSS pixels. Unknown keywords raise ``TypeError``.

    Attributes
    ----------
    angles : list of float
        Angle in degrees per layer (``session.layers`` order) for the current pair and λ.
    tilts : list of geo.BoundaryTilt
        The fitted probes behind them.

    Examples
    --------
    >>> from geowidgets.datasets import toy_demo
    >>> demo = toy_demo("blobs", n=200)
    >>> view = TiltingView(Session(demo.model, demo.inputs, demo.labels, layers=demo.layers), reg=0.1)
    >>> _ = view.wait()
    >>> len(view.angles) == len(demo.layers)
    True
    """

    classes = traitlets.List(
        traitlets.Int(), default_value=[], help="The class pair (list of 2 int); empty: the two most frequent classes."
    )
    reg = traitlets.Float(1e-2, help="L2 strength λ (float > 0) of the logistic probes.")
    layer = traitlets.Unicode("", help="Layer marked by the dashed line (str).")

    def __init__(self, session: Session, **kwargs: Any):
        if not isinstance(session, Session):
            raise ValueError(f"TiltingView needs a geowidgets Session, got {type(session).__name__}")
        check_keywords("TiltingView", kwargs, ["classes", "reg", "layer", "width", "height", "layout"])
        if session.labels is None:
            raise ValueError("boundary tilting needs labels; this session has none")
        self.session = session
        width, height = kwargs.pop("width", 420), kwargs.pop("height", 240)
        traits = {
            "classes": list(kwargs.pop("classes", [])),
            "reg": kwargs.pop("reg", 1e-2),
            "layer": kwargs.pop("layer", session.layers[-1]),
        }
        self.angles: list[float] = [math.nan] * len(session.layers)
        self.tilts: list[Any] = []
        self._build(width, height)
        self._start(self.figure, "tilting", **kwargs)
        for name, value in traits.items():
            setattr(self, name, value)
        self.observe(self._on_fit, names=["classes", "reg"])
        self.observe(self._on_layer, names=["layer"])
        self._on_layer()
        self._mirror()
        self._on_fit()

    def __repr__(self) -> str:
        return f"TiltingView(classes={self.classes}, reg={self.reg:.3g}, layers={len(self.session.layers)})"

    def _summary(self) -> str:
        pair = " vs ".join(self._names(self._pair())) if self.tilts else "the two largest classes"
        return f"boundary tilting · {pair} · λ={self.reg:.3g}"

    def _names(self, pair: tuple[int, ...]) -> list[str]:
        names = self.session.class_names
        return [names[c] if 0 <= c < len(names) else str(c) for c in pair]

    def _pair(self) -> tuple[int, ...]:
        if self.tilts:
            return tuple(int(c) for c in self.tilts[0].classes)
        return tuple(self.classes)

    @traitlets.validate("classes")
    def _check_classes(self, proposal: dict) -> list[int]:
        pair = [int(c) for c in proposal["value"]]
        if pair and (len(pair) != 2 or pair[0] == pair[1]):
            raise ValueError(f"classes must be two different labels (or empty for the largest two), got {pair}")
        present = set(np.unique(np.asarray(self.session.labels)).tolist())
        missing = [c for c in pair if c not in present]
        if missing:
            raise ValueError(f"classes {missing} do not occur among the session's labels")
        return pair

    @traitlets.validate("reg")
    def _check_reg(self, proposal: dict) -> float:
        v = float(proposal["value"])
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"reg must be a finite number > 0, got {v!r}")
        return v

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        return self.session.check_layer(proposal["value"])

    def _build(self, width: int, height: int) -> None:
        from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d, Span
        from bokeh.plotting import figure

        layers = list(self.session.layers)
        fig = figure(
            width=width,
            height=height,
            title="boundary tilting angle",
            tools="",
            toolbar_location=None,
            x_range=Range1d(-0.5, len(layers) - 0.5),
            y_range=Range1d(0, 90),
            y_axis_label="angle to μ_b − μ_a (degrees)",
        )
        fig.title.text_font_size = "11px"
        self.source = ColumnDataSource({"x": [], "angle": [], "layer": [], "accuracy": []})
        fig.line("x", "angle", source=self.source, line_width=2, color="#b07aa1")
        dots = fig.scatter("x", "angle", source=self.source, size=7, color="#b07aa1")
        fig.add_tools(
            HoverTool(
                renderers=[dots],
                tooltips=[("layer", "@layer"), ("angle", "@angle{0.0}°"), ("probe accuracy", "@accuracy{0.000}")],
            )
        )
        fig.xaxis.ticker = FixedTicker(ticks=list(range(len(layers))))
        fig.xaxis.major_label_overrides = {i: name for i, name in enumerate(layers)}
        fig.xaxis.major_label_orientation = 0.6 if len(layers) > 4 else 0.0
        self.marker = Span(location=0, dimension="height", line_dash="dashed", line_color="#e15759", line_width=2)
        fig.add_layout(self.marker)
        self.figure = fig

    def _on_layer(self, change: dict | None = None) -> None:
        self.marker.location = self.session.layers.index(self.layer)
        if self._shown:
            self._sync_bundle()

    def _on_fit(self, change: dict | None = None) -> None:
        s, pair, reg = self.session, tuple(self.classes) or None, self.reg
        self.lane("fit").submit(
            lambda: s.tilting(pair, reg), self._apply, message=f"fitting the probes at λ={reg:.3g}…"
        )

    def _apply(self, tilts: list[Any]) -> None:
        layers = list(self.session.layers)
        self.tilts = list(tilts)
        self.angles = [float(t.angle_deg) for t in tilts]
        self.source.data = {
            "x": list(range(len(layers))),
            "angle": self.angles,
            "layer": layers,
            "accuracy": [float(t.accuracy) for t in tilts],
        }
        lo, hi = padded_range(self.angles)
        self.figure.y_range.update(start=max(0.0, lo), end=min(180.0, hi))
        a, b = self._names(self._pair())
        self.figure.title.text = f"boundary tilting: {a} vs {b} · λ = {self.reg:.3g} (angle of the probe to μ_b − μ_a)"
        self._sync_bundle()
        self._mirror()
