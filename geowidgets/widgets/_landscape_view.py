"""Static bokeh views of the loss landscape: loss surface, Hessian spectrum, loss along an interpolation.

* :class:`LossSurfaceView` — ``geo.loss_surface``: the loss on a plane through the weights as an
  image with contour lines, the current weights marked.
* :class:`HessianView` — the top eigenvalues of ``geo.hessian_eigenvalues`` (outliers counted by
  the largest relative gap) and the smoothed density of ``geo.hessian_spectral_density``.
* :class:`BarrierChart` — ``geo.loss_barrier``: loss (and accuracy) along α with the straight line
  between the endpoints and the barrier; a marker follows ``alpha`` (the Explorer's α scrubber).
"""

from __future__ import annotations

from typing import Any

import ipywidgets
import numpy as np
import traitlets

from geowidgets.widgets._layer_profile import _ClosableBokehModel, load_bokehjs_inline

__all__ = ["BarrierChart", "HessianView", "LossSurfaceView"]


class _BokehView(ipywidgets.VBox):
    """A static bokeh layout in an ipywidgets box (root class ``gw-<name>``)."""

    def _show(self, layout: Any, name: str) -> None:
        load_bokehjs_inline()
        self.layout_model = layout
        self.bokeh = _ClosableBokehModel(layout)
        self.children = [self.bokeh]
        self.add_class(f"gw-{name}")


class LossSurfaceView(_BokehView):
    """The loss on a plane through the weights (``geo.loss_surface``), the current weights marked.

    The image shows ``loss[i, j]`` at ``(alphas[i], betas[j])`` (α across, β up) on a viridis
    scale (log10 of the loss with ``log=True``), with ``contours`` iso-loss lines; a white cross
    marks (0, 0), the model's own weights.

    Parameters
    ----------
    surface : geo.LossSurface
    contours : int
        Number of contour levels (0: none).
    log : bool
        Colour by log10 of the loss (a sharp minimum's walls otherwise take the whole scale).
    size : int
        Plot width and height in CSS pixels.

    Raises
    ------
    ValueError
        ``surface`` is not a LossSurface.
    """

    def __init__(self, surface: Any, *, contours: int = 8, log: bool = True, size: int = 360):
        from bokeh.models import ColorBar, LinearColorMapper
        from bokeh.palettes import Viridis256
        from bokeh.plotting import figure

        from geowidgets.geometry._landscape import LossSurface

        if not isinstance(surface, LossSurface):
            raise ValueError(f"LossSurfaceView needs a geo.loss_surface result, got {type(surface).__name__}")
        super().__init__()
        self.surface = surface
        a, b = np.asarray(surface.alphas), np.asarray(surface.betas)
        z = np.asarray(surface.loss, dtype=np.float64).T  # rows follow β (the image's y)
        shown = np.log10(np.maximum(z, 1e-12)) if log else z
        self.image = shown
        mapper = LinearColorMapper(palette=Viridis256, low=float(np.nanmin(shown)), high=float(np.nanmax(shown)))
        da, db = (a[-1] - a[0]) / max(len(a) - 1, 1), (b[-1] - b[0]) / max(len(b) - 1, 1)
        fig = figure(
            width=size,
            height=size,
            title=f"{'log10 ' if log else ''}loss on the {surface.directions} plane (centre {surface.center_loss:.3g})",
            x_range=(a[0] - da / 2, a[-1] + da / 2),
            y_range=(b[0] - db / 2, b[-1] + db / 2),
            tools="hover",
            tooltips=[("α", "$x{0.00}"), ("β", "$y{0.00}"), ("value", "@image{0.000}")],
            toolbar_location=None,
        )
        fig.image(
            [shown], x=a[0] - da / 2, y=b[0] - db / 2, dw=a[-1] - a[0] + da, dh=b[-1] - b[0] + db, color_mapper=mapper
        )
        if contours and np.ptp(shown) > 0 and hasattr(fig, "contour"):
            levels = np.linspace(float(shown.min()), float(shown.max()), int(contours) + 2)[1:-1]
            fig.contour(a, b, shown, levels=levels, line_color="white", line_alpha=0.6, line_width=1)
        fig.scatter([0.0], [0.0], marker="x", size=14, line_width=3, color="white", legend_label="current weights")
        fig.legend.location = "top_left"
        fig.legend.background_fill_alpha = 0.4
        fig.xaxis.axis_label, fig.yaxis.axis_label = "α (d1)", "β (d2)"
        fig.title.text_font_size = "11px"
        fig.add_layout(ColorBar(color_mapper=mapper, width=8), "right")
        self._show(fig, "loss-surface")


class HessianView(_BokehView):
    """The Hessian spectrum: top eigenvalues (outliers highlighted) and the density of the bulk.

    Parameters
    ----------
    eigenvalues : array-like [k], optional
        Top eigenvalues (``geo.hessian_eigenvalues``); the ones above the largest relative gap are
        the outliers (``HessianDensity.count_outliers``' rule), drawn in red.
    density : geo.HessianDensity, optional
        ``geo.hessian_spectral_density``: its smoothed density on a log scale.
    size : int
        Width of each chart in CSS pixels.

    Attributes
    ----------
    n_outliers : int or None
        Outliers among ``eigenvalues`` (None without eigenvalues).

    Raises
    ------
    ValueError
        Neither argument given.
    """

    def __init__(self, eigenvalues: Any = None, density: Any = None, *, size: int = 320):
        from bokeh.layouts import row
        from bokeh.plotting import figure

        from geowidgets.geometry._landscape import _count_outliers

        if eigenvalues is None and density is None:
            raise ValueError("HessianView needs eigenvalues=, density= or both")
        super().__init__()
        charts = []
        self.n_outliers: int | None = None
        if eigenvalues is not None:
            vals = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
            self.n_outliers = _count_outliers(vals)
            colors = ["#e15759" if i < self.n_outliers else "#4e79a7" for i in range(vals.size)]
            fig = figure(
                width=size,
                height=220,
                title=f"top {vals.size} Hessian eigenvalues: {self.n_outliers} outlier(s)",
                tools="hover",
                tooltips=[("rank", "@x"), ("eigenvalue", "@top{0.0000}")],
                toolbar_location=None,
            )
            fig.vbar(x=list(range(1, vals.size + 1)), top=vals.tolist(), width=0.8, color=colors)
            fig.xaxis.axis_label, fig.yaxis.axis_label = "rank", "eigenvalue"
            fig.title.text_font_size = "11px"
            charts.append(fig)
        if density is not None:
            grid, dens = np.asarray(density.grid), np.asarray(density.density)
            fig = figure(
                width=size,
                height=220,
                title=f"spectral density (SLQ, {density.n_vectors} vectors, P={density.n_params})",
                y_axis_type="log",
                tools="",
                toolbar_location=None,
            )
            fig.line(grid, np.maximum(dens, 1e-12), line_width=2, color="#4e79a7")
            fig.xaxis.axis_label, fig.yaxis.axis_label = "eigenvalue", "density"
            fig.title.text_font_size = "11px"
            charts.append(fig)
        self._show(row(charts), "hessian")


class BarrierChart(_BokehView):
    """Loss (and accuracy) along the line between two models, ``geo.loss_barrier``, with α marked.

    Parameters
    ----------
    barrier : geo.LossBarrier
    alpha : float
        The α marked (a dashed line), e.g. the Explorer's α scrubber.
    size : int
        Width of each chart in CSS pixels.
    """

    alpha = traitlets.Float(0.0, help="Interpolation weight α (float) marked on the charts.")

    def __init__(self, barrier: Any, *, alpha: float = 0.0, size: int = 320):
        from bokeh.layouts import row
        from bokeh.models import Span
        from bokeh.plotting import figure

        from geowidgets.geometry._landscape import LossBarrier

        if not isinstance(barrier, LossBarrier):
            raise ValueError(f"BarrierChart needs a geo.loss_barrier result, got {type(barrier).__name__}")
        super().__init__()
        self.barrier = barrier
        self.spans: list[Any] = []
        a = np.asarray(barrier.alphas)
        fig = figure(
            width=size,
            height=220,
            title=f"loss along α: barrier {barrier.barrier:.3g} at α={barrier.barrier_alpha:.2g}",
            tools="hover",
            tooltips=[("α", "@x{0.00}"), ("loss", "@y{0.000}")],
            toolbar_location=None,
        )
        fig.line(a, barrier.loss, line_width=2, color="#4e79a7", legend_label="loss")
        fig.scatter(a, barrier.loss, size=5, color="#4e79a7")
        fig.line(a, barrier.linear_path, line_dash="dashed", color="#888888", legend_label="straight line")
        fig.legend.location = "top_left"
        fig.xaxis.axis_label = "α (0: model A, 1: model B)"
        charts = [fig]
        if barrier.accuracy is not None:
            acc = figure(
                width=size,
                height=220,
                title=f"accuracy along α (error barrier {barrier.error_barrier:.3g})",
                tools="hover",
                tooltips=[("α", "@x{0.00}"), ("accuracy", "@y{0.000}")],
                toolbar_location=None,
            )
            acc.line(a, barrier.accuracy, line_width=2, color="#59a14f")
            acc.scatter(a, barrier.accuracy, size=5, color="#59a14f")
            acc.xaxis.axis_label = "α"
            charts.append(acc)
        for f in charts:
            f.title.text_font_size = "11px"
            span = Span(
                location=float(alpha), dimension="height", line_dash="dashed", line_color="#e15759", line_width=2
            )
            f.add_layout(span)
            self.spans.append(span)
        self.set_trait("alpha", float(alpha))
        self._show(row(charts), "barrier")
        self.observe(self._on_alpha, names=["alpha"])

    def _on_alpha(self, change: dict) -> None:
        for span in self.spans:
            span.location = float(change["new"])
        self.bokeh._trait_values["render_bundle"] = self.bokeh._model_to_traits(self.layout_model)
