"""LayerProfile: bokeh line charts of per-layer metrics, shown through jupyter_bokeh."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import ipywidgets
import traitlets
from jupyter_bokeh import BokehModel

from geowidgets.plotting import profile_figure, profile_values
from geowidgets.session import Session
from geowidgets.session._colorings import warn_renamed
from geowidgets.widgets._base import StatusBar, _Worker, check_keywords

from geowidgets.widgets._export import ViewExport
if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LayerProfile", "load_bokehjs_inline"]

DEFAULT_METRICS = ("rankme", "twonn", "knn_agreement", "fisher", "mst")
# Profile metrics whose neighbour count is geo.layer_profile's ``k`` (the k slider); the others
# use their own fixed parameters and are computed once.
K_DEPENDENT_METRICS = ("knn_agreement",)
# Charts whose title states the k they were computed with (the live view's deviation AUROC follows k too).
K_TITLED = (*K_DEPENDENT_METRICS, "deviation_auroc")
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


class LayerProfile(_Worker, ViewExport, ipywidgets.VBox):
    """Per-layer metric charts (bokeh, via jupyter_bokeh), updated in place.

    One small line chart per metric of ``geo.layer_profile`` plus, with a session, the
    kNN-deviation AUROC per layer. Each chart's y range follows its data (padded, so the extreme
    points show whole) after every update, and a k-dependent chart's title states its k. Hover
    shows the value; a dashed line marks ``layer``; tapping
    a point sets ``layer`` (the Explorer links it to its layer). Data changes are sent by
    assigning the charts' data sources, so the charts update without being re-created. BokehJS
    comes from the installed bokeh package (inline), never from a CDN.

    With a session the view is live: the k-independent metrics are computed once (worker
    thread), and every k-dependent series (kNN agreement, deviation AUROC) follows ``k``. With
    the DataFrame of ``geo.layer_profile`` it is static: it charts that table, and ``k`` is the
    table's.

    Parameters
    ----------
    source : Session or pandas.DataFrame
        A session (live) or ``geo.layer_profile``'s tidy table (static).
    metrics : tuple of str, optional
        Metrics to chart (default: ``DEFAULT_METRICS`` with a session, every metric of the table).
    k : int, optional
        Neighbour count of the k-dependent series (default 10; static: the table's).
    layer : str, optional
        The layer marked (default the last). ``current_layer`` is a deprecated alias.
    ncols : int
        Charts per row. Unknown keywords raise ``TypeError``.

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
    layer = traitlets.Unicode(
        "", help="Layer marked by the dashed line (str): one of session.layers; tapping a point sets it."
    )
    k = traitlets.Int(
        10, help="Neighbour count (int, 1..session.k_max) of the k-dependent series: kNN agreement, deviation AUROC."
    )

    def __init__(
        self,
        source: Session | pd.DataFrame,
        *,
        metrics: tuple[str, ...] | None = None,
        k: int | None = None,
        layer: str | None = None,
        ncols: int = 3,
        **kwargs: Any,
    ):
        if "current_layer" in kwargs:
            warn_renamed("LayerProfile(current_layer=...)", "layer=")
            layer = kwargs.pop("current_layer") if layer is None else layer
        check_keywords("LayerProfile", kwargs, ["layout"])
        self.last_traceback = ""
        self._init_worker()
        if isinstance(source, Session):
            self.session: Session | None = source
            self._table = None
            layers = list(source.layers)
            self.metrics = tuple(DEFAULT_METRICS if metrics is None else metrics)
            names = [*self.metrics, "deviation_auroc"]
            k = source.check_k(10 if k is None else k)
        elif hasattr(source, "columns") and {"layer", "metric", "value"} <= set(source.columns):
            self.session = None
            self._table = source
            order = source.sort_values("layer_index") if "layer_index" in source.columns else source
            layers = [str(name) for name in dict.fromkeys(order["layer"])]
            found = list(dict.fromkeys(source["metric"]))
            self.metrics = tuple(found if metrics is None else metrics)
            missing = [m for m in self.metrics if m not in found]
            if missing:
                raise ValueError(f"metrics {missing} are not in the table; it has {found}")
            names = list(self.metrics)
            ks = source.loc[source["metric"].isin(K_DEPENDENT_METRICS), "k"].dropna() if "k" in source.columns else []
            table_k = int(ks.iloc[0]) if len(ks) else None
            if k is not None and k != table_k:
                raise ValueError(f"a static LayerProfile shows the table's k ({table_k}); k cannot be {k}")
            k = table_k if table_k is not None else 10
        else:
            raise ValueError(
                "LayerProfile needs a geowidgets Session or the DataFrame of geo.layer_profile, "
                f"got {type(source).__name__}"
            )
        self._layers = layers
        self._static_k = None if self.session is not None else k
        load_bokehjs_inline()
        self.values: dict[str, list[float]] = {m: [math.nan] * len(layers) for m in names}
        self.figure = profile_figure(self.values, layers, current_layer=layer or layers[-1], ncols=ncols)
        self.figure.set_k(k, K_TITLED)
        self.bokeh = _ClosableBokehModel(self.figure.layout)
        self.status_bar = StatusBar(view="profile", root_class="gw-profile", needs_bokeh=True)
        super().__init__(children=[self.status_bar, self.bokeh], **kwargs)
        self.add_class("gw-profile")
        self.set_trait("k", k)
        self.set_trait("layer", layer or layers[-1])
        for source_ in self.figure.sources.values():
            source_.selected.on_change("indices", self._on_tap)
        self.observe(self._mirror, names=["status", "message", "revision"])
        self.observe(self._on_current, names=["layer"])
        self._mirror()
        if self.session is None:
            values = profile_values(self._table, layers)
            self.lane("profile").submit(lambda: values, self._apply_values, inline=True)
            return
        self.observe(self._on_k, names=["k"])
        self._on_profile()
        self._on_k()

    def __repr__(self) -> str:
        mode = "live" if self.session is not None else "static"
        return f"LayerProfile(layers={len(self._layers)}, metrics={list(self.metrics)}, k={self.k}, {mode})"

    @property
    def current_layer(self) -> str:
        """Deprecated alias of ``layer``."""
        warn_renamed("current_layer", "layer")
        return self.layer

    @current_layer.setter
    def current_layer(self, value: str) -> None:
        warn_renamed("current_layer", "layer")
        self.layer = value

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        if self.session is not None:
            return self.session.check_layer(proposal["value"])
        if proposal["value"] not in self._layers:
            raise KeyError(f"unknown layer {proposal['value']!r}; this profile has layers {self._layers}")
        return proposal["value"]

    @traitlets.validate("k")
    def _check_k(self, proposal: dict) -> int:
        if self.session is None:
            if proposal["value"] != self._static_k:
                raise ValueError(
                    "this LayerProfile shows a fixed geo.layer_profile table, so k cannot change; "
                    "pass a geowidgets Session to make it live"
                )
            return proposal["value"]
        return self.session.check_k(proposal["value"])

    def _apply_values(self, values: dict[str, list[float]]) -> None:
        for metric, series in values.items():
            if metric in self.values:
                self._set_metric(metric, series)

    def _mirror(self, change: dict | None = None) -> None:
        with self.status_bar.hold_sync():
            self.status_bar.status = self.status
            self.status_bar.message = self.message
            self.status_bar.revision = self.revision
            fixed = " · static table" if self.session is None else ""
            self.status_bar.summary = f"per-layer metrics (k={self.k}) · current layer {self.layer}{fixed}"

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
        """The metrics that do not depend on k: computed once."""
        s, k = self.session, self.k
        metrics = tuple(m for m in self.metrics if m not in K_DEPENDENT_METRICS)
        if not metrics:
            return
        self.lane("profile").submit(
            lambda: profile_values(s.profile(metrics, k=k), s.layers),
            self._apply_values,
            message="computing per-layer metrics…",
        )

    def _on_k(self, change: dict | None = None) -> None:
        """Every series that depends on k (kNN agreement, deviation AUROC) follows the k slider."""
        s, k = self.session, self.k
        metrics = tuple(m for m in self.metrics if m in K_DEPENDENT_METRICS)
        cheap = s.captured and all(s.has_tables(layer) for layer in s.layers)
        if metrics:
            cheap = cheap and all(s.has_graph(layer) for layer in s.layers)

        def compute() -> tuple[int, dict[str, list[float]]]:
            values = profile_values(s.profile(metrics, k=k), s.layers) if metrics else {}
            return k, {**values, "deviation_auroc": s.auroc(k)}

        def apply(result: tuple[int, dict[str, list[float]]]) -> None:
            k_done, values = result
            self.figure.set_k(k_done, K_TITLED)
            self._apply_values(values)

        self.lane("k").submit(compute, apply, inline=cheap, message="computing the k-dependent metrics…")

    def _on_current(self, change: dict) -> None:
        def apply(_: Any) -> None:
            self.figure.mark_layer(self.layer)
            self._sync_bundle(full=False)

        self.lane("marker").submit(lambda: None, apply, inline=True)

    def _on_tap(self, attr: str, old: list[int], new: list[int]) -> None:
        if new:
            self.layer = self._layers[int(new[0])]
