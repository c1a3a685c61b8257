"""MixupView: the model's decisions along the segment between two samples (bokeh, via jupyter_bokeh)."""

from __future__ import annotations

from typing import Any

import ipywidgets
import numpy as np
import traitlets

from geowidgets.session import INPUT_LAYER, Session
from geowidgets.widgets._base import StatusBar, _Worker, check_keywords
from geowidgets.widgets._embedding import INLINE_PCA_CELLS
from geowidgets.widgets._layer_profile import _ClosableBokehModel, load_bokehjs_inline

__all__ = ["MixupView", "intrusion_intervals", "CATEGORY_COLORS"]

#: The views' categorical palette (Tableau-10 and its light variants), as js/colour.js draws classes.
CATEGORY_COLORS = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#a0cbe8", "#ffbe7d", "#ff9d9a", "#86bcb6", "#8cd17d", "#f1ce63", "#d4a6c8", "#fabfd2", "#d7b5a6", "#79706e",
)  # fmt: skip


def intrusion_intervals(lam: Any, flags: Any) -> list[tuple[float, float]]:
    """The λ intervals ``[(start, end), ...]`` over which ``flags`` is True (contiguous runs of steps).

    Parameters
    ----------
    lam : array [S]
        Increasing λ values of the steps.
    flags : array of bool [S]
        E.g. ``MixupPath.intrusion``.

    Returns
    -------
    list of (float, float)
        Each run's first and last λ (equal for a single flagged step).

    Examples
    --------
    >>> intrusion_intervals([0.0, 0.25, 0.5, 0.75, 1.0], [False, True, True, False, True])
    [(0.25, 0.5), (1.0, 1.0)]
    """
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    f = np.asarray(flags, dtype=bool).reshape(-1)
    if lam.shape != f.shape:
        raise ValueError(f"lam and flags must have the same length, got {lam.size} and {f.size}")
    edges = np.diff(np.concatenate([[0], f.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(float(lam[s]), float(lam[e])) for s, e in zip(starts, ends)]


def _numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)


class _LiveBokeh(_Worker, ipywidgets.VBox):
    """A bokeh figure kept in step with the kernel, a status bar above it (root class ``gw-<name>``)."""

    revision = traitlets.Int(0, help="Result counter (int): bumped each time chart data have been set.")
    status = traitlets.Unicode("idle", help='Work state (str): "idle", "busy" or "error" (see message).')
    message = traitlets.Unicode("", help="Progress text while busy, the error text after a failure, else empty (str).")

    def _start(self, layout: Any, name: str, **kwargs: Any) -> None:
        self.last_traceback = ""
        self._init_worker()
        load_bokehjs_inline()
        self.layout_model = layout
        self.bokeh = _ClosableBokehModel(layout)
        self.status_bar = StatusBar(view=name, root_class=f"gw-{name}", needs_bokeh=True)
        ipywidgets.VBox.__init__(self, children=[self.status_bar, self.bokeh], **kwargs)
        self.add_class(f"gw-{name}")
        self._shown = False
        self.observe(self._mirror, names=["status", "message", "revision"])

    def _summary(self) -> str:
        return ""

    def _mirror(self, change: dict | None = None) -> None:
        with self.status_bar.hold_sync():
            self.status_bar.status = self.status
            self.status_bar.message = self.message
            self.status_bar.revision = self.revision
            self.status_bar.summary = self._summary()

    def _sync_bundle(self) -> None:
        """Show the document's new state: a fresh model for the first data, patches after (see LayerProfile)."""
        if not self._shown:
            self._shown = True
            self.bokeh.close()
            self.bokeh = _ClosableBokehModel(self.layout_model)
            self.children = [self.status_bar, self.bokeh]
        else:
            self.bokeh._trait_values["render_bundle"] = _ClosableBokehModel._model_to_traits(self.layout_model)


class MixupView(_LiveBokeh):
    """Predicted class and confidence along the MixUp segment between samples ``a`` and ``b``.

    ``x_λ = (1 − λ) a + λ b`` in the space of ``layer`` (activation patching) or of the input
    (``Session.mixup``, i.e. ``geo.mixup_path``). The chart shows, against λ: the softmax
    probability of a's class and of b's class, the top-class confidence (dashed), a strip coloured
    by the predicted class, and shaded the λ intervals flagged as manifold intrusion (the majority
    label of x_λ's k nearest samples is neither a's nor b's class). The Explorer sets ``a`` and
    ``b`` from two shift-clicked samples in the slice; ``temperature`` rescales the held logits.

    Parameters
    ----------
    session : Session
        A classifier's session.
    a, b : int, optional
        Sample indices (default: the slice's first two default anchors).
    layer : str, optional
        A session layer or ``"input"`` (default: the first layer).
    k : int
        Neighbours of the intrusion vote.
    steps : int
        Number of λ values.
    temperature : float
    width, height : int
        Chart size in CSS pixels. Unknown keywords raise ``TypeError``.

    Attributes
    ----------
    path : geo.MixupPath or None
        The path on display.
    intervals : list of (float, float)
        λ intervals of manifold intrusion (:func:`intrusion_intervals` of ``path.intrusion``).

    Examples
    --------
    >>> from geowidgets.datasets import toy_demo
    >>> demo = toy_demo("blobs", n=200)
    >>> view = MixupView(Session(demo.model, demo.inputs, demo.labels), a=0, b=1, steps=21)
    >>> _ = view.wait()
    >>> len(view.path.lam)
    21
    """

    a = traitlets.Int(0, help="Sample index (int) at λ = 0.")
    b = traitlets.Int(1, help="Sample index (int) at λ = 1.")
    layer = traitlets.Unicode("", help="Where the segment lies (str): a session layer or 'input'.")
    k = traitlets.Int(10, help="Neighbours (int, 1..session.k_max) of the manifold-intrusion vote.")
    steps = traitlets.Int(101, help="Number of λ values (int >= 2).")
    temperature = traitlets.Float(1.0, help="Softmax temperature (float > 0); a change rescales the held logits.")

    def __init__(self, session: Session, **kwargs: Any):
        if not isinstance(session, Session):
            raise ValueError(f"MixupView needs a geowidgets Session, got {type(session).__name__}")
        check_keywords(
            "MixupView", kwargs, ["a", "b", "layer", "k", "steps", "temperature", "width", "height", "layout"]
        )
        if session.task != "classification":
            raise ValueError(f"a MixUp path needs a classifier's decisions; this session's task is {session.task!r}")
        self.session = session
        width, height = kwargs.pop("width", 600), kwargs.pop("height", 260)
        # Without a pair, the slice's default anchors A and B (Session.default_anchors, which read every
        # sample's prediction) are chosen on the worker with the first path: building never waits for them.
        pair = kwargs.pop("a", None), kwargs.pop("b", None)
        self._default_pair = pair == (None, None)
        if None in pair and not self._default_pair:  # one given: the other is the default A or B
            defaults = session.default_anchors()
            pair = (defaults[0] if pair[0] is None else pair[0], defaults[1] if pair[1] is None else pair[1])
        self._setting_pair = False
        traits = {
            **({} if self._default_pair else {"a": pair[0], "b": pair[1]}),
            "layer": kwargs.pop("layer", session.layers[0]),
            "k": kwargs.pop("k", 10),
            "steps": kwargs.pop("steps", 101),
            "temperature": kwargs.pop("temperature", 1.0),
        }
        self.path: Any = None
        self.intervals: list[tuple[float, float]] = []
        self._build(width, height)
        self._start(self.figure, "mixup", **kwargs)
        for name, value in traits.items():
            setattr(self, name, value)
        self.observe(self._on_path, names=["a", "b", "layer", "k", "steps"])
        self.observe(self._on_temperature, names=["temperature"])
        self._mirror()
        self._on_path()

    def __repr__(self) -> str:
        return f"MixupView(a={self.a}, b={self.b}, layer={self.layer!r}, k={self.k}, steps={self.steps})"

    def _summary(self) -> str:
        where = "input space" if self.layer == INPUT_LAYER else f"layer {self.layer}"
        return f"MixUp #{self.a} → #{self.b} in {where} · k={self.k} · T={self.temperature:.3g}"

    @traitlets.validate("a", "b")
    def _check_sample(self, proposal: dict) -> int:
        i = proposal["value"]
        if not 0 <= i < self.session.n:
            raise ValueError(f"{proposal['trait'].name} must be a sample index in [0, {self.session.n}), got {i}")
        return i

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        return self.session.check_layer(proposal["value"], allow_input=True)

    @traitlets.validate("k")
    def _check_k(self, proposal: dict) -> int:
        return self.session.check_k(proposal["value"])

    @traitlets.validate("steps")
    def _check_steps(self, proposal: dict) -> int:
        if not 2 <= proposal["value"] <= 10_000:
            raise ValueError(f"steps must be in [2, 10000], got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("temperature")
    def _check_temperature(self, proposal: dict) -> float:
        return Session.check_temperature(proposal["value"])

    def _build(self, width: int, height: int) -> None:
        from bokeh.models import ColumnDataSource, HoverTool, Legend, Range1d
        from bokeh.plotting import figure

        fig = figure(
            width=width,
            height=height,
            title="MixUp path",
            tools="",
            toolbar_location=None,
            x_range=Range1d(0, 1),
            y_range=Range1d(-0.12, 1.04),
            x_axis_label="λ (0: a, 1: b)",
            y_axis_label="probability",
        )
        fig.title.text_font_size = "11px"
        self.sources = {
            "curve": ColumnDataSource({"lam": [], "p_a": [], "p_b": [], "conf": [], "cls": []}),
            "strip": ColumnDataSource({"left": [], "right": [], "color": [], "cls": []}),
            "intrusion": ColumnDataSource({"left": [], "right": []}),
        }
        fig.quad(
            left="left",
            right="right",
            bottom=-0.12,
            top=1.04,
            source=self.sources["intrusion"],
            fill_color="#f28e2b",
            fill_alpha=0.2,
            line_alpha=0,
        )
        fig.quad(left="left", right="right", bottom=-0.1, top=-0.03, color="color", source=self.sources["strip"])
        src = self.sources["curve"]
        ra = fig.line("lam", "p_a", source=src, line_width=2, color="#4e79a7")
        rb = fig.line("lam", "p_b", source=src, line_width=2, color="#e15759")
        rc = fig.line("lam", "conf", source=src, line_width=1.5, color="#333333", line_dash="dashed")
        self.legend = Legend(items=[("p(class of a)", [ra]), ("p(class of b)", [rb]), ("confidence", [rc])])
        self.legend.label_text_font_size = "10px"
        fig.add_layout(self.legend, "right")
        fig.add_tools(
            HoverTool(
                renderers=[rc],
                mode="vline",
                tooltips=[("λ", "@lam{0.00}"), ("predicted", "@cls"), ("confidence", "@conf{0.000}")],
            )
        )
        self.figure = fig

    def _on_path(self, change: dict | None = None) -> None:
        if self._setting_pair:
            return  # the default pair of the path being applied: it is already computed for them
        s, layer, a, b, k, steps, t = self.session, self.layer, self.a, self.b, self.k, self.steps, self.temperature
        if change is not None and change["name"] in ("a", "b"):
            self._default_pair = False
        default = self._default_pair
        if not default and a == b:
            self.message = "pick two different samples"
            return

        def compute() -> Any:
            pair = s.default_anchors()[:2] if default else (a, b)
            return s.mixup(layer, *pair, steps=steps, k=k).with_temperature(t), pair

        # A path is `steps` forward passes and a kNN vote over the samples: inline while that is small.
        width = None
        if s.captured:  # (before the capture, reading the layer's width would wait for it)
            try:
                width = s.slice_space(layer).shape[1]
            except ValueError:  # no space at this layer: the path's own computation reports why, in this view
                pass
        cheap = width is not None and s.n * max(steps, width) <= INLINE_PCA_CELLS
        self.lane("path").submit(
            compute,
            self._apply_pair,
            inline=cheap,
            message="MixUp path…" if default else f"MixUp #{a} → #{b}…",
        )

    def _apply_pair(self, result: tuple) -> None:
        path, (a, b) = result
        if (self.a, self.b) != (a, b):
            self._setting_pair = True
            try:
                with self.hold_trait_notifications():
                    self.a, self.b = a, b
            finally:
                self._setting_pair = False
        self._apply(path)

    def _on_temperature(self, change: dict | None = None) -> None:
        path, t = self.path, self.temperature
        if path is None or self.lane("path").busy:
            return
        self.lane("temperature").submit(lambda: path.with_temperature(t), self._apply, inline=True)

    def _apply(self, path: Any) -> None:
        names = self.session.class_names
        name = lambda c: names[c] if 0 <= c < len(names) else str(c)  # noqa: E731
        lam = _numpy(path.lam).astype(float)
        probs = _numpy(path.probs).astype(float)
        cls = _numpy(path.classes).astype(int)
        intrusion = path.intrusion if path.intrusion is not None else path.model_intrusion
        self.path = path
        self.intervals = intrusion_intervals(lam, _numpy(intrusion))
        half = np.diff(lam).min() / 2 if lam.size > 1 else 0.5
        self.sources["curve"].data = {
            "lam": lam.tolist(),
            "p_a": probs[:, path.class_a].tolist(),
            "p_b": probs[:, path.class_b].tolist(),
            "conf": probs.max(1).tolist(),
            "cls": [name(c) for c in cls],
        }
        self.sources["strip"].data = {
            "left": (lam - half).tolist(),
            "right": (lam + half).tolist(),
            "color": [CATEGORY_COLORS[c % len(CATEGORY_COLORS)] for c in cls],
            "cls": [name(c) for c in cls],
        }
        pad = half if lam.size > 1 else 0.0
        self.sources["intrusion"].data = {
            "left": [lo - pad for lo, _ in self.intervals],
            "right": [hi + pad for _, hi in self.intervals],
        }
        self.legend.items[0].label = {"value": f"p({name(path.class_a)}) · class of #{self.a}"}
        self.legend.items[1].label = {"value": f"p({name(path.class_b)}) · class of #{self.b}"}
        crossings = ", ".join(f"{float(c):.2f}" for c in _numpy(path.crossings))
        shaded = ", ".join(f"{lo:.2f}–{hi:.2f}" for lo, hi in self.intervals) or "none"
        basis = "kNN" if path.intrusion is not None else "prediction"
        self.figure.title.text = (
            f"MixUp #{self.a} ({name(path.class_a)}) → #{self.b} ({name(path.class_b)}) · changes at λ = "
            f"{crossings or '—'} · intrusion ({basis}, shaded): {shaded}"
        )
        self._sync_bundle()
        self._mirror()
