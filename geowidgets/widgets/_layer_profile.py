"""LayerProfile: bokeh line charts of per-layer metrics, shown through jupyter_bokeh."""

from __future__ import annotations

import math
from typing import Any

import ipywidgets
import traitlets
from jupyter_bokeh import BokehModel

from geowidgets.plotting import profile_figure, profile_values
from geowidgets.session import Session
from geowidgets.widgets._base import StatusBar, _Worker

__all__ = ["LayerProfile", "load_bokehjs_inline"]

DEFAULT_METRICS = ("rankme", "twonn", "knn_agreement", "fisher", "mst")
_bokehjs_loaded_at: int | None = None


def load_bokehjs_inline(force: bool = False) -> bool:
    """Load BokehJS into the notebook page from the installed bokeh package (never a CDN).

    jupyter_bokeh's views need BokehJS on the page; this publishes bokeh's INLINE resources in
    the output of the running cell, once per cell execution (so re-running the cell after a page
    reload loads it again). Outside a Jupyter kernel it does nothing and returns False.

    Examples
    --------
    >>> load_bokehjs_inline()  # outside a kernel
    False
    """
    global _bokehjs_loaded_at
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    count = getattr(shell, "execution_count", None)
    if _bokehjs_loaded_at == count and not force:
        return True
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    output_notebook(resources=INLINE, hide_banner=True)
    _bokehjs_loaded_at = count
    return True


class _ClosableBokehModel(BokehModel):
    """A jupyter_bokeh ``BokehModel`` whose ``close`` may run twice (explicitly, then on GC).

    jupyter_bokeh 4.1's ``close`` unregisters the model from its document unconditionally, so a
    second call raises ``KeyError``; this one unregisters only while still registered.
    """

    def close(self) -> None:
        doc = self._document
        if doc is not None and self in doc.callbacks._change_callbacks:
            doc.remove_on_change(self)
        ipywidgets.DOMWidget.close(self)


class LayerProfile(_Worker, ipywidgets.VBox):
    """Per-layer metric charts (bokeh, via jupyter_bokeh), updated in place.

    One small line chart per metric of ``geo.layer_profile`` (computed on a worker thread, once
    per session), plus the kNN-deviation AUROC per layer, which follows ``k``. Hover shows the
    value; a dashed line marks ``current_layer``; tapping a point sets ``current_layer`` (the
    Explorer links it to its layer). Data changes are sent by assigning the charts' data sources,
    so the charts update without being re-created. BokehJS comes from the installed bokeh
    package (inline), never from a CDN.

    Parameters
    ----------
    session : Session
    metrics : tuple of str
        Metrics of ``geo.layer_profile`` to chart.
    profile_k : int
        Neighbour count for the k-based metrics of the profile (fixed; they are computed once).
    k : int
        Neighbour count of the deviation AUROC series (follows the Explorer's k slider).
    ncols : int
        Charts per row.

    Examples
    --------
    >>> from geowidgets.datasets import toy_demo
    >>> from geowidgets.session import Session
    >>> demo = toy_demo("moons", n=200)
    >>> view = LayerProfile(Session(demo.model, demo.inputs, demo.labels, k_max=20), metrics=("rankme",))
    >>> _ = view.wait()
    >>> view.values["rankme"][0] > 0
    True
    """

    revision = traitlets.Int(0, help="Result counter (int): bumped each time chart data have been set.")
    status = traitlets.Unicode("idle", help='Work state (str): "idle", "busy" or "error" (see message).')
    message = traitlets.Unicode("", help="Progress text while busy, the error text after a failure, else empty (str).")
    current_layer = traitlets.Unicode(
        "", help="Layer marked by the dashed line (str): one of session.layers; tapping a point sets it."
    )
    k = traitlets.Int(10, help="Neighbour count (int, 1..session.k_max) of the deviation AUROC series.")

    def __init__(
        self,
        session: Session,
        *,
        metrics: tuple[str, ...] = DEFAULT_METRICS,
        profile_k: int = 10,
        k: int = 10,
        current_layer: str | None = None,
        ncols: int = 3,
        **kwargs: Any,
    ):
        if not isinstance(session, Session):
            raise ValueError(f"LayerProfile needs a geowidgets Session, got {type(session).__name__}")
        self.session = session
        self.metrics = tuple(metrics)
        self.profile_k = session.check_k(profile_k)
        self.last_traceback = ""
        self._init_worker()
        load_bokehjs_inline()
        layers = list(session.layers)
        names = [*self.metrics, "deviation_auroc"]
        self.values: dict[str, list[float]] = {m: [math.nan] * len(layers) for m in names}
        self.figure = profile_figure(self.values, layers, current_layer=current_layer or layers[-1], ncols=ncols)
        self.bokeh = _ClosableBokehModel(self.figure.layout)
        self.status_bar = StatusBar(view="profile", root_class="gw-profile", needs_bokeh=True)
        super().__init__(children=[self.status_bar, self.bokeh], **kwargs)
        self.add_class("gw-profile")
        self.set_trait("k", session.check_k(k))
        self.set_trait("current_layer", current_layer or layers[-1])
        for source in self.figure.sources.values():
            source.selected.on_change("indices", self._on_tap)
        self.observe(self._mirror, names=["status", "message", "revision"])
        self.observe(self._on_current, names=["current_layer"])
        self.observe(self._on_k, names=["k"])
        self._mirror()
        self._on_profile()
        self._on_k()

    @traitlets.validate("current_layer")
    def _check_layer(self, proposal: dict) -> str:
        return self.session.check_layer(proposal["value"])

    @traitlets.validate("k")
    def _check_k(self, proposal: dict) -> int:
        return self.session.check_k(proposal["value"])

    def _mirror(self, change: dict | None = None) -> None:
        with self.status_bar.hold_sync():
            self.status_bar.status = self.status
            self.status_bar.message = self.message
            self.status_bar.revision = self.revision
            self.status_bar.summary = f"per-layer metrics · current layer {self.current_layer}"

    def _set_metric(self, metric: str, values: list[float]) -> None:
        first = all(math.isnan(v) for v in self.values[metric])
        self.values[metric] = list(values)
        self.figure.set_values(metric, values)
        self._sync_bundle(full=first)

    def _sync_bundle(self, full: bool) -> None:
        """Keep the browser in step with the bokeh document.

        In-place changes (assigning a source's data, moving the marker) reach displayed charts as
        document patches. Patches sent before the charts are on screen would be lost, so a series'
        first data shows the charts through a fresh ``BokehModel`` (a new view renders the whole
        current document; re-rendering an existing view in place makes BokehJS 3.9 fail with
        "configuration is missing"). Later changes only patch, and the kernel-side copy of the
        document is refreshed silently so a reloaded page shows the current state.
        """
        if full:
            old = self.bokeh
            old.close()  # stops its patches; the new model below takes over the document
            self.bokeh = _ClosableBokehModel(self.figure.layout)
            self.children = [self.status_bar, self.bokeh]
        else:
            self.bokeh._trait_values["render_bundle"] = BokehModel._model_to_traits(self.figure.layout)

    def _on_profile(self) -> None:
        s, metrics, k = self.session, self.metrics, self.profile_k

        def compute():
            return profile_values(s.profile(metrics, k=k), s.layers)

        def apply(values: dict[str, list[float]]) -> None:
            for metric in self.metrics:
                self._set_metric(metric, values.get(metric, [math.nan] * len(s.layers)))

        self.lane("profile").submit(compute, apply, message="computing per-layer metrics…")

    def _on_k(self, change: dict | None = None) -> None:
        s, k = self.session, self.k
        cheap = s.captured and all(s.has_tables(layer) for layer in s.layers)
        self.lane("auroc").submit(
            lambda: s.auroc(k),
            lambda values: self._set_metric("deviation_auroc", values),
            inline=cheap,
            message="computing deviation AUROC per layer…",
        )

    def _on_current(self, change: dict) -> None:
        def apply(_: Any) -> None:
            self.figure.mark_layer(self.current_layer)
            self._sync_bundle(full=False)

        self.lane("marker").submit(lambda: None, apply, inline=True)

    def _on_tap(self, attr: str, old: list[int], new: list[int]) -> None:
        if new:
            self.current_layer = self.session.layers[int(new[0])]
