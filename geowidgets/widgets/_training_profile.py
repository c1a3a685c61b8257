"""TrainingProfile: per-layer metrics over training steps, a steps × layers heatmap per metric (bokeh)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import ipywidgets
import numpy as np
import traitlets

from geowidgets.plotting import METRIC_TITLES, profile_values
from geowidgets.plotting._profile import padded_range
from geowidgets.widgets._base import StatusBar, _Worker, check_keywords
from geowidgets.widgets._checkpoints import SessionFamily
from geowidgets.widgets._layer_profile import K_DEPENDENT_METRICS, _ClosableBokehModel, load_bokehjs_inline

__all__ = ["TrainingProfile", "DEFAULT_TRAINING_METRICS"]

#: Metrics charted by default: the effective rank and the diffusion spectral entropy of each layer.
DEFAULT_TRAINING_METRICS = ("rankme", "dse")


class TrainingProfile(_Worker, ipywidgets.VBox):
    """Per-layer metrics over training: one steps × layers heatmap per metric, and the current layer over steps.

    Each metric is ``geo.layer_profile`` of every step's activations (one implementation: the live
    view asks each step's :class:`~geowidgets.Session` for ``session.profile``, which calls it). The
    heatmap's rows are the steps (first at the bottom), its columns the layers; a dark outline marks
    the current (step, layer). Under each heatmap a line chart shows the metric over the steps for
    the current layer, with a dashed marker at the current step. Tapping a cell sets ``layer`` and
    ``step``.

    Parameters
    ----------
    source : SessionFamily or mapping of step to pandas.DataFrame
        The Explorer's family of per-step sessions (live: computed on a worker thread, following
        ``k`` for k-dependent metrics), or ``{step: geo.layer_profile(...)}`` (static).
    metrics : tuple of str, optional
        Metrics to chart (default :data:`DEFAULT_TRAINING_METRICS`; static: every metric of the tables).
    k : int
        Neighbour count of the k-dependent metrics (live only; static tables carry theirs).
    layer, step : optional
        The layer and step marked (default the last layer, the first step).
    width, height : int
        Size of each heatmap in CSS pixels.

    Attributes
    ----------
    values : dict of str to ndarray [S, L] float64
        The value of each metric at each step (rows, in ``steps`` order) and layer (columns);
        NaN until computed.
    steps, layers : list

    Raises
    ------
    ValueError
        A source of another type, tables with different layers, or unknown metrics.

    Examples
    --------
    >>> import geowidgets.geometry as geo, numpy as np  # doctest: +SKIP
    >>> tables = {s: geo.layer_profile(acts_at[s], labels, metrics=("rankme",)) for s in (0, 10)}  # doctest: +SKIP
    >>> view = TrainingProfile(tables)  # doctest: +SKIP
    """

    revision = traitlets.Int(0, help="Result counter (int): bumped each time chart data have been set.")
    status = traitlets.Unicode("idle", help='Work state (str): "idle", "busy" or "error" (see message).')
    message = traitlets.Unicode("", help="Progress text while busy, the error text after a failure, else empty (str).")
    layer = traitlets.Unicode("", help="Layer (str) outlined in the heatmaps and charted over steps.")
    step = traitlets.Any(None, help="Step outlined in the heatmaps and marked on the line charts: one of steps.")
    k = traitlets.Int(10, help="Neighbour count (int) of the k-dependent metrics (kNN agreement).")

    def __init__(
        self,
        source: SessionFamily | Mapping[Any, Any],
        *,
        metrics: tuple[str, ...] | None = None,
        k: int = 10,
        layer: str | None = None,
        step: Any = None,
        width: int = 300,
        height: int = 200,
        **kwargs: Any,
    ):
        check_keywords("TrainingProfile", kwargs, ["layout"])
        self.last_traceback = ""
        self._init_worker()
        if isinstance(source, SessionFamily):
            self.family: SessionFamily | None = source
            self.steps = list(source.steps)
            self.layers = list(source.session(0).layers)
            self.metrics = tuple(DEFAULT_TRAINING_METRICS if metrics is None else metrics)
            tables = None
        elif isinstance(source, Mapping) and source:
            self.family = None
            self.steps = list(source)
            tables = dict(source)
            first = next(iter(tables.values()))
            if not (hasattr(first, "columns") and {"layer", "metric", "value"} <= set(first.columns)):
                raise ValueError("a static TrainingProfile needs {step: geo.layer_profile(...) DataFrame}")
            order = first.sort_values("layer_index") if "layer_index" in first.columns else first
            self.layers = [str(n) for n in dict.fromkeys(order["layer"])]
            found = list(dict.fromkeys(first["metric"]))
            self.metrics = tuple(found if metrics is None else metrics)
            missing = [m for m in self.metrics if m not in found]
            if missing:
                raise ValueError(f"metrics {missing} are not in the tables; they have {found}")
            for s, t in tables.items():
                layers = [str(n) for n in dict.fromkeys(t["layer"])]
                if sorted(layers) != sorted(self.layers):
                    raise ValueError(f"the table of step {s!r} has layers {layers}, the first {self.layers}")
        else:
            raise ValueError(
                "TrainingProfile needs a SessionFamily or a non-empty mapping step -> geo.layer_profile table, "
                f"got {type(source).__name__}"
            )
        self.values: dict[str, np.ndarray] = {
            m: np.full((len(self.steps), len(self.layers)), np.nan) for m in self.metrics
        }
        self._width, self._height = int(width), int(height)
        load_bokehjs_inline()
        self._figure = _TrainingFigure(self.metrics, self.steps, self.layers, self._width, self._height)
        self.bokeh = _ClosableBokehModel(self._figure.layout)
        self.status_bar = StatusBar(view="training-profile", root_class="gw-training-profile", needs_bokeh=True)
        super().__init__(children=[self.status_bar, self.bokeh], **kwargs)
        self.add_class("gw-training-profile")
        self.set_trait("k", int(k))
        self.set_trait("layer", layer if layer is not None else self.layers[-1])
        self.set_trait("step", step if step is not None else self.steps[0])
        self._figure.mark(self.steps.index(self.step), self.layers.index(self.layer))
        for src in self._figure.cells.values():
            src.selected.on_change("indices", self._on_tap)
        self.observe(self._mirror, names=["status", "message", "revision"])
        self.observe(self._on_mark, names=["layer", "step"])
        self._mirror()
        if tables is not None:
            values = {
                m: np.array([profile_values(tables[s], self.layers)[m] for s in self.steps]) for m in self.metrics
            }
            self.lane("profile").submit(lambda: values, self._apply, inline=True)
            return
        self.observe(self._on_k, names=["k"])
        self._on_k()

    def __repr__(self) -> str:
        mode = "live" if self.family is not None else "static"
        return (
            f"TrainingProfile(steps={len(self.steps)}, layers={len(self.layers)}, metrics={list(self.metrics)}, {mode})"
        )

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        if proposal["value"] not in self.layers:
            raise KeyError(f"unknown layer {proposal['value']!r}; this profile has layers {self.layers}")
        return proposal["value"]

    @traitlets.validate("step")
    def _check_step(self, proposal: dict) -> Any:
        if proposal["value"] not in self.steps:
            raise ValueError(f"unknown step {proposal['value']!r}; the steps are {self.steps}")
        return proposal["value"]

    @traitlets.validate("k")
    def _check_k(self, proposal: dict) -> int:
        if self.family is None and proposal["value"] != self.k:
            raise ValueError("a static TrainingProfile shows its tables' k; pass the Explorer's steps to make it live")
        return proposal["value"] if self.family is None else self.family.session(0).check_k(proposal["value"])

    def _on_k(self, change: dict | None = None) -> None:
        family, k, metrics, layers = self.family, self.k, self.metrics, self.layers
        if change is not None and not any(m in K_DEPENDENT_METRICS for m in metrics):
            return  # nothing here depends on k

        def compute() -> dict[str, np.ndarray]:
            assert family is not None
            rows: dict[str, list[list[float]]] = {m: [] for m in metrics}
            for i in range(len(family)):
                values = profile_values(family.session(i).profile(metrics, k=k), layers)
                for m in metrics:
                    rows[m].append(values[m])
            return {m: np.asarray(v, dtype=np.float64) for m, v in rows.items()}

        self.lane("profile").submit(compute, self._apply, message="per-layer metrics at every step…")

    def _apply(self, values: dict[str, np.ndarray]) -> None:
        for m, v in values.items():
            self.values[m] = np.asarray(v, dtype=np.float64)
        self._figure.set_values(self.values)
        self._figure.mark(self.steps.index(self.step), self.layers.index(self.layer))
        # A new BokehModel renders the whole document (patches sent before the first render would be lost).
        self.bokeh.close()
        self.bokeh = _ClosableBokehModel(self._figure.layout)
        self.children = [self.status_bar, self.bokeh]

    def _on_mark(self, change: dict) -> None:
        def apply(_: Any) -> None:
            self._figure.mark(self.steps.index(self.step), self.layers.index(self.layer))
            self.bokeh._trait_values["render_bundle"] = self.bokeh._model_to_traits(self._figure.layout)

        self.lane("marker").submit(lambda: None, apply, inline=True)

    def _on_tap(self, attr: str, old: list[int], new: list[int]) -> None:
        if new:
            i, j = divmod(int(new[0]), len(self.layers))
            self.step = self.steps[i]
            self.layer = self.layers[j]

    def _mirror(self, change: dict | None = None) -> None:
        with self.status_bar.hold_sync():
            self.status_bar.status = self.status
            self.status_bar.message = self.message
            self.status_bar.revision = self.revision
            shape = f"{len(self.steps)} steps × {len(self.layers)} layers"
            self.status_bar.summary = f"metrics over {shape} · step {self.step} · layer {self.layer}"


class _TrainingFigure:
    """Bokeh heatmaps (steps × layers) and line charts (current layer over steps), one column per metric."""

    def __init__(self, metrics: tuple[str, ...], steps: list[Any], layers: list[str], width: int, height: int):
        from bokeh.layouts import gridplot
        from bokeh.models import (
            ColorBar,
            ColumnDataSource,
            FixedTicker,
            HoverTool,
            LinearColorMapper,
            Range1d,
            Span,
            TapTool,
        )
        from bokeh.palettes import Viridis256
        from bokeh.plotting import figure

        self.steps, self.layers = steps, layers
        self.cells: dict[str, Any] = {}
        self.lines: dict[str, Any] = {}
        self.mappers: dict[str, Any] = {}
        self.line_figs: dict[str, Any] = {}
        self.outline = ColumnDataSource({"x": [0], "y": [0]})
        self.spans: list[Any] = []
        S, L = len(steps), len(layers)
        columns = []
        for m in metrics:
            mapper = LinearColorMapper(palette=Viridis256, nan_color="#dddddd", low=0.0, high=1.0)
            cells = ColumnDataSource(self._cells(np.full((S, L), np.nan)))
            fig = figure(
                width=width,
                height=height,
                title=f"{METRIC_TITLES.get(m, m)}: steps × layers",
                tools="",
                toolbar_location=None,
                x_range=Range1d(-0.5, L - 0.5),
                y_range=Range1d(-0.5, S - 0.5),
            )
            rects = fig.rect(
                "x",
                "y",
                1,
                1,
                source=cells,
                fill_color={"field": "value", "transform": mapper},
                line_color=None,
                nonselection_alpha=1.0,
            )
            fig.rect("x", "y", 1, 1, source=self.outline, fill_alpha=0.0, line_color="#e15759", line_width=3)
            fig.add_tools(
                HoverTool(
                    renderers=[rects], tooltips=[("step", "@step"), ("layer", "@layer"), ("value", "@value{0.000}")]
                ),
                TapTool(renderers=[rects]),
            )
            fig.xaxis.ticker = FixedTicker(ticks=list(range(L)))
            fig.xaxis.major_label_overrides = {i: n for i, n in enumerate(layers)}
            fig.xaxis.major_label_orientation = 0.6 if L > 4 else 0.0
            fig.yaxis.ticker = FixedTicker(ticks=list(range(S)))
            fig.yaxis.major_label_overrides = {i: _label(s) for i, s in enumerate(steps)}
            fig.xaxis.axis_label, fig.yaxis.axis_label = "layer", "step"
            fig.title.text_font_size = "11px"
            fig.add_layout(ColorBar(color_mapper=mapper, width=8), "right")
            line_src = ColumnDataSource({"x": [], "value": [], "step": []})
            lf = figure(
                width=width,
                height=int(height * 0.7),
                title="current layer over steps",
                tools="",
                toolbar_location=None,
                x_range=Range1d(-0.5, S - 0.5),
                y_range=Range1d(0.0, 1.0),
            )
            lf.line("x", "value", source=line_src, line_width=2, color="#4e79a7")
            dots = lf.scatter("x", "value", source=line_src, size=6, color="#4e79a7")
            lf.add_tools(HoverTool(renderers=[dots], tooltips=[("step", "@step"), ("value", "@value{0.000}")]))
            lf.xaxis.ticker = FixedTicker(ticks=list(range(S)))
            lf.xaxis.major_label_overrides = {i: _label(s) for i, s in enumerate(steps)}
            lf.title.text_font_size = "11px"
            span = Span(location=0, dimension="height", line_dash="dashed", line_color="#e15759", line_width=2)
            lf.add_layout(span)
            self.spans.append(span)
            self.cells[m], self.lines[m], self.mappers[m], self.line_figs[m] = cells, line_src, mapper, lf
            columns.append([fig, lf])
        rows = [list(r) for r in zip(*columns)]  # heatmaps on the first row, line charts under them
        self.layout = gridplot(rows, toolbar_location=None)
        self.values: dict[str, np.ndarray] = {m: np.full((S, L), np.nan) for m in metrics}
        self._at = (0, L - 1)

    def _cells(self, values: np.ndarray) -> dict[str, list]:
        S, L = values.shape
        return {
            "x": [j for _ in range(S) for j in range(L)],
            "y": [i for i in range(S) for _ in range(L)],
            "value": [float(v) for v in values.ravel()],
            "step": [_label(self.steps[i]) for i in range(S) for _ in range(L)],
            "layer": [self.layers[j] for _ in range(S) for j in range(L)],
        }

    def set_values(self, values: dict[str, np.ndarray]) -> None:
        for m, v in values.items():
            self.values[m] = v
            self.cells[m].data = self._cells(v)
            finite = v[np.isfinite(v)]
            if finite.size:
                lo, hi = float(finite.min()), float(finite.max())
                self.mappers[m].low, self.mappers[m].high = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
        self.mark(*self._at)

    def mark(self, i: int, j: int) -> None:
        """Outline step ``i`` at layer ``j`` and chart layer ``j`` over the steps."""
        self._at = (i, j)
        self.outline.data = {"x": [j], "y": [i]}
        for span in self.spans:
            span.location = i
        for m, src in self.lines.items():
            col = self.values[m][:, j]
            ok = [k for k in range(len(col)) if math.isfinite(col[k])]
            src.data = {"x": ok, "value": [float(col[k]) for k in ok], "step": [_label(self.steps[k]) for k in ok]}
            lo, hi = padded_range([float(c) for c in col])
            self.line_figs[m].y_range.start, self.line_figs[m].y_range.end = lo, hi
            self.line_figs[m].title.text = f"layer {self.layers[j]} over steps"


def _label(step: Any) -> str:
    return f"{step:g}" if isinstance(step, float) else str(step)
