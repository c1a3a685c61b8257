"""Bokeh figures of per-layer metrics (small multiples), updated in place by assigning data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ProfileFigure",
    "profile_figure",
    "profile_values",
    "profile_reasons",
    "padded_range",
    "METRIC_TITLES",
]

#: Share of the data's span added above and below it, so the extreme points are drawn whole.
RANGE_PADDING = 0.12

#: Readable titles of the metrics ``geo.layer_profile`` reports (others are shown by name).
METRIC_TITLES = {
    "rankme": "RankMe (effective rank)",
    "vne": "von Neumann entropy",
    "twonn": "intrinsic dimension (TwoNN)",
    "mle": "intrinsic dimension (MLE)",
    "dse": "diffusion spectral entropy",
    "knn_agreement": "kNN label agreement",
    "fisher": "Fisher ratio",
    "mst": "MST separability",
    "nc1": "neural collapse NC1",
    "coding_rate": "coding rate ΔR",
    "dsmi": "diffusion spectral mutual information",
    "nc2_equinorm": "neural collapse NC2 (equinorm)",
    "nc2_equiangular": "neural collapse NC2 (equiangular)",
    "nc3": "neural collapse NC3 (self-duality)",
    "nc4": "neural collapse NC4 (NCC mismatch)",
    "deviation_auroc": "deviation AUROC (wrong vs ref.)",
}


@dataclass
class ProfileFigure:
    """A grid of bokeh line charts, one per metric, sharing a layer axis.

    Attributes
    ----------
    layout : bokeh LayoutDOM
        What to show (e.g. wrapped in ``jupyter_bokeh.BokehModel``).
    sources : dict of str to ColumnDataSource
        One source per metric; assign ``source.data`` to update in place.
    markers : list of Span
        The current-layer marker of each chart.
    layers : list of str
    figures : dict of str to bokeh figure
    notes : dict of str to Label
        Per chart, the centred one-line text saying why it has no data (empty text: none).
    """

    layout: Any
    sources: dict
    markers: list
    layers: list
    figures: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def set_reason(self, metric: str, reason: str) -> None:
        """Say in one centred line why ``metric``'s chart is empty (e.g. "needs class labels"); ``""`` removes it.

        A chart with a reason has its data emptied, so it shows the text, not an empty axis alone.
        """
        if metric not in self.sources:
            raise KeyError(f"no chart for metric {metric!r}; charts: {list(self.sources)}")
        if reason:
            self.sources[metric].data = _columns(self.layers, [float("nan")] * len(self.layers))
            self.figures[metric].y_range.update(start=0.0, end=1.0)
        self.notes[metric].text = reason

    def set_values(self, metric: str, values: list[float]) -> None:
        """Replace one metric's values (one per layer), in place; its y range follows them (padded)."""
        if metric not in self.sources:
            raise KeyError(f"no chart for metric {metric!r}; charts: {list(self.sources)}")
        if len(values) != len(self.layers):
            raise ValueError(f"need one value per layer ({len(self.layers)}), got {len(values)}")
        self.sources[metric].data = _columns(self.layers, values)
        if metric in self.figures:
            start, end = padded_range(values)
            y_range = self.figures[metric].y_range
            y_range.update(start=start, end=end)

    def set_k(self, k: int, metrics: tuple[str, ...]) -> None:
        """Say the neighbour count ``k`` in the titles of the charts of ``metrics`` (those that depend on k)."""
        for metric in metrics:
            if metric in self.figures:
                self.figures[metric].title.text = f"{METRIC_TITLES.get(metric, metric)} · k={k}"

    def mark_layer(self, layer: str) -> None:
        """Move the current-layer marker of every chart to ``layer``."""
        if layer not in self.layers:
            raise KeyError(f"unknown layer {layer!r}; layers: {self.layers}")
        for span in self.markers:
            span.location = self.layers.index(layer)


def padded_range(values: list[float], padding: float = RANGE_PADDING) -> tuple[float, float]:
    """The y range ``(start, end)`` that holds every finite value with ``padding`` × span around it.

    A constant series gets ±10% of its magnitude (±0.05 at zero); no finite value gives (0, 1).

    Examples
    --------
    >>> padded_range([0.5, 1.0], padding=0.1)
    (0.45, 1.05)
    >>> padded_range([float("nan")])
    (0.0, 1.0)
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = padding * (hi - lo) if hi > lo else max(0.1 * abs(hi), 0.05)
    return lo - pad, hi + pad


def _columns(layers: list[str], values: list[float]) -> dict:
    v = [float(x) if x is not None and math.isfinite(float(x)) else float("nan") for x in values]
    if all(math.isnan(x) for x in v):  # nothing to draw yet: empty columns keep the ranges computable
        return {"x": [], "value": [], "layer": []}
    return {"x": list(range(len(layers))), "value": v, "layer": list(layers)}


def profile_figure(
    values: dict[str, list[float]],
    layers: list[str],
    *,
    current_layer: str | None = None,
    ncols: int = 3,
    width: int = 250,
    height: int = 170,
) -> ProfileFigure:
    """Small multiples of per-layer metrics with hover, a current-layer marker and tap to pick.

    Parameters
    ----------
    values : dict of str to list of float
        Metric name -> one value per layer (NaN where undefined).
    layers : list of str
        Layer names (the x axis, in order).
    current_layer : str, optional
        Layer to mark.

    Examples
    --------
    >>> fig = profile_figure({"rankme": [3.0, 2.0]}, ["fc1", "fc2"], current_layer="fc2")
    >>> fig.sources["rankme"].data["value"]
    [3.0, 2.0]
    >>> fig.set_values("rankme", [float("nan"), float("nan")])
    >>> fig.sources["rankme"].data["value"]
    []
    """
    from bokeh.layouts import gridplot
    from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d, Span, TapTool
    from bokeh.plotting import figure

    if not layers:
        raise ValueError("need at least one layer")
    from bokeh.models import Label

    sources, markers, figures, notes = {}, [], {}, {}
    where = layers.index(current_layer) if current_layer in layers else 0
    for metric, vals in values.items():
        if len(vals) != len(layers):
            raise ValueError(f"metric {metric!r} has {len(vals)} values for {len(layers)} layers")
        src = ColumnDataSource(_columns(layers, vals))
        fig = figure(
            width=width,
            height=height,
            title=METRIC_TITLES.get(metric, metric),
            tools="",
            toolbar_location=None,
            # Explicit ranges: set_values moves y to the data (padded); data ranges computed in the
            # browser would freeze at the first fill (and warn while the source is empty).
            x_range=Range1d(-0.5, len(layers) - 0.5),
            y_range=Range1d(*padded_range(vals)),
        )
        fig.line("x", "value", source=src, line_width=2, color="#4e79a7")
        dots = fig.scatter("x", "value", source=src, size=7, color="#4e79a7", nonselection_alpha=1.0)
        fig.add_tools(
            HoverTool(renderers=[dots], tooltips=[("layer", "@layer"), ("value", "@value{0.000}")]),
            TapTool(renderers=[dots]),
        )
        fig.xaxis.ticker = FixedTicker(ticks=list(range(len(layers))))
        fig.xaxis.major_label_overrides = {i: name for i, name in enumerate(layers)}
        fig.xaxis.major_label_orientation = 0.6 if len(layers) > 4 else 0.0
        fig.title.text_font_size = "11px"
        span = Span(location=where, dimension="height", line_dash="dashed", line_color="#e15759", line_width=2)
        fig.add_layout(span)
        # Why the chart is empty (set_reason), centred in data units: the x range is fixed, and an
        # empty chart's y range is (0, 1).
        note = Label(
            x=(len(layers) - 1) / 2,
            y=0.5,
            text="",
            text_align="center",
            text_baseline="middle",
            text_font_size="12px",
            text_color="#555555",
            text_font_style="italic",
        )
        fig.add_layout(note)
        sources[metric], figures[metric], notes[metric] = src, fig, note
        markers.append(span)
    grid = gridplot(list(figures.values()), ncols=ncols, toolbar_location=None)
    return ProfileFigure(grid, sources, markers, list(layers), figures, notes)


def profile_values(table: Any, layers: list[str]) -> dict[str, list[float]]:
    """Turn ``geo.layer_profile``'s tidy table into metric -> values per layer (NaN if missing).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"layer": ["a", "b"], "metric": ["rankme", "rankme"], "value": [1.0, 2.0]})
    >>> profile_values(t, ["a", "b"])
    {'rankme': [1.0, 2.0]}
    """
    out: dict[str, list[float]] = {}
    for metric in dict.fromkeys(table["metric"]):
        rows = table[table["metric"] == metric]
        by_layer = dict(zip(rows["layer"], rows["value"]))
        out[str(metric)] = [float(by_layer.get(layer, np.nan)) for layer in layers]
    return out


#: Display text of ``geo.layer_profile``'s ``params["skipped"]`` reasons.
_SKIP_TEXT = {"needs labels": "needs class labels"}


def profile_reasons(table: Any) -> dict[str, str]:
    """Why each metric of ``geo.layer_profile``'s table that has no finite value at any layer is missing.

    The reason is the rows' ``params["skipped"]`` (``"needs labels"`` reads "needs class labels") or
    ``params["error"]`` (the first layer's); a metric with a value at some layer has no reason.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"layer": ["a", "a"], "metric": ["rankme", "fisher"], "value": [1.0, float("nan")],
    ...                   "params": [{}, {"skipped": "needs labels"}]})
    >>> profile_reasons(t)
    {'fisher': 'needs class labels'}
    """
    out: dict[str, str] = {}
    for metric in dict.fromkeys(table["metric"]):
        rows = table[table["metric"] == metric]
        if np.isfinite(rows["value"].to_numpy(dtype=float)).any():
            continue
        params = [p for p in (rows["params"] if "params" in rows.columns else []) if isinstance(p, dict)]
        given = [p.get("skipped") or p.get("error") for p in params]
        reason = next((str(r) for r in given if r), "")
        out[str(metric)] = _SKIP_TEXT.get(reason, reason or "no value at any layer")
    return out
