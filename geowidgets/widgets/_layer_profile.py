"""LayerProfile: bokeh line charts of per-layer metrics, shown through jupyter_bokeh."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import ipywidgets
import traitlets
from jupyter_bokeh import BokehModel

from geowidgets.plotting import profile_figure, profile_values
from geowidgets.plotting._profile import profile_reasons
from geowidgets.session import Session
from geowidgets.session._colorings import renamed_alias, warn_renamed
from geowidgets.widgets._base import StatusBar, _Worker, check_keywords
from geowidgets.widgets._export import ViewExport
from geowidgets.widgets._metric_picker import COLLAPSE_METRICS, PICKABLE_METRICS, collapse_values

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

    A metric that cannot be computed is not drawn as an empty chart: its chart says why in one
    centred line (``reasons``), e.g. "needs class labels" for kNN label agreement or the Fisher
    ratio without labels (an embedding or regression model), or "no misclassified samples" for
    the deviation AUROC of a classifier that makes no mistakes.

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
            ks = (
                source.loc[source["metric"].isin(K_DEPENDENT_METRICS), "k"].dropna()
                if "k" in source.columns
                else pd.Series([], dtype=float)
            )
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
        #: Metric -> the one line its chart shows instead of data, for the metrics that cannot be computed.
        self.reasons: dict[str, str] = {}
        self._ncols = ncols
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
            result = profile_values(self._table, layers), profile_reasons(self._table)
            self.lane("profile").submit(lambda: result, self._apply_profile, inline=True)
            return
        self.observe(self._on_k, names=["k"])
        self._on_profile()
        self._on_collapse()
        self._on_k()

    def __repr__(self) -> str:
        mode = "live" if self.session is not None else "static"
        return f"LayerProfile(layers={len(self._layers)}, metrics={list(self.metrics)}, k={self.k}, {mode})"

    current_layer = renamed_alias("current_layer", "layer")

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

    def _apply_values(self, values: dict[str, list[float]], reasons: dict[str, str] | None = None) -> None:
        for metric, series in values.items():
            if metric in self.values:
                self._set_metric(metric, series, (reasons or {}).get(metric, ""))

    def _apply_profile(self, result: tuple[dict[str, list[float]], dict[str, str]]) -> None:
        self._apply_values(*result)

    def _mirror(self, change: dict | None = None) -> None:
        with self.status_bar.hold_sync():
            self.status_bar.status = self.status
            self.status_bar.message = self.message
            self.status_bar.revision = self.revision
            fixed = " · static table" if self.session is None else ""
            self.status_bar.summary = f"per-layer metrics (k={self.k}) · current layer {self.layer}{fixed}"

    def _set_metric(self, metric: str, values: list[float], reason: str = "") -> None:
        """Chart one metric's values, or, when it has none (every value NaN), ``reason`` in place of them."""
        first = all(math.isnan(v) for v in self.values[metric])
        empty = all(math.isnan(v) for v in values)
        reason = reason if empty else ""
        if first and empty and metric in self.reasons and self.reasons[metric] == reason:
            self.values[metric] = list(values)
            return  # still nothing to draw, for the same reason: the charts on screen are unchanged
        self.values[metric] = list(values)
        self.figure.set_values(metric, values)
        self.figure.set_reason(metric, reason)
        if reason:
            self.reasons[metric] = reason
        else:
            self.reasons.pop(metric, None)
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
        s, k = self._live, self.k
        metrics = tuple(m for m in self.metrics if m not in K_DEPENDENT_METRICS and m not in COLLAPSE_METRICS)
        if not metrics:
            return

        def compute() -> tuple[dict[str, list[float]], dict[str, str]]:
            table = s.profile(metrics, k=k)
            return profile_values(table, s.layers), profile_reasons(table)

        self.lane("profile").submit(compute, self._apply_profile, message="computing per-layer metrics…")

    def _on_collapse(self) -> None:
        """The neural-collapse metrics NC2–NC4 (``geo.neural_collapse`` per layer): computed once."""
        s = self._live
        metrics = tuple(m for m in self.metrics if m in COLLAPSE_METRICS)
        if metrics:
            self.lane("collapse").submit(
                lambda: collapse_values(s, metrics), self._apply_profile, message="computing NC2–NC4 per layer…"
            )

    def set_metrics(self, metrics: tuple[str, ...] | list[str]) -> None:
        """Chart these metrics (any of ``PICKABLE_METRICS``, in this order) beside the deviation AUROC.

        The charts are rebuilt; values come from the session's caches where computed before (the
        metrics not computed yet are computed on a worker thread), and k-dependent ones follow ``k``.

        Raises
        ------
        ValueError
            A static profile (its table is fixed), or an unknown metric.
        """
        if self.session is None:
            raise ValueError("this LayerProfile shows a fixed geo.layer_profile table; pass a Session to pick metrics")
        picked = tuple(dict.fromkeys(metrics))
        unknown = [m for m in picked if m not in PICKABLE_METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; allowed: {list(PICKABLE_METRICS)}")
        if picked == self.metrics:
            return
        self.metrics = picked
        self.values = {m: [math.nan] * len(self._layers) for m in [*picked, "deviation_auroc"]}
        self.reasons = {}
        self.figure = profile_figure(self.values, self._layers, current_layer=self.layer, ncols=self._ncols)
        self.figure.set_k(self.k, K_TITLED)
        for source_ in self.figure.sources.values():
            source_.selected.on_change("indices", self._on_tap)
        self._sync_bundle(full=True)
        self._on_profile()
        self._on_collapse()
        self._on_k()

    def _on_k(self, change: dict | None = None) -> None:
        """Every series that depends on k (kNN agreement, deviation AUROC) follows the k slider."""
        s, k = self._live, self.k
        metrics = tuple(m for m in self.metrics if m in K_DEPENDENT_METRICS)
        cheap = s.captured and all(s.has_tables(layer) for layer in s.layers)
        if metrics:
            cheap = cheap and all(s.has_graph(layer) for layer in s.layers)

        def compute() -> tuple[int, dict[str, list[float]], dict[str, str]]:
            table = s.profile(metrics, k=k) if metrics else None
            values = profile_values(table, s.layers) if metrics else {}
            reasons = profile_reasons(table) if metrics else {}
            reasons["deviation_auroc"] = auroc_reason(s)
            return k, {**values, "deviation_auroc": s.auroc(k)}, reasons

        def apply(result: tuple[int, dict[str, list[float]], dict[str, str]]) -> None:
            k_done, values, reasons = result
            self.figure.set_k(k_done, K_TITLED)
            self._apply_values(values, reasons)

        self.lane("k").submit(compute, apply, inline=cheap, message="computing the k-dependent metrics…")

    def _on_current(self, change: dict) -> None:
        def apply(_: Any) -> None:
            self.figure.mark_layer(self.layer)
            self._sync_bundle(full=False)

        self.lane("marker").submit(lambda: None, apply, inline=True)

    def _on_tap(self, attr: str, old: list[int], new: list[int]) -> None:
        if new:
            self.layer = self._layers[int(new[0])]


def auroc_reason(session: Session) -> str:
    """Why the session's deviation AUROC (misclassified samples vs the reference) has no value, if it has none.

    Examples
    --------
    >>> from geowidgets.datasets import toy_demo
    >>> demo = toy_demo("moons", n=60)
    >>> auroc_reason(Session(demo.model, demo.inputs, k_max=10))
    'needs class labels'
    """
    if session.correct is None:
        return "needs class labels"
    if session.correct.all():
        return "no misclassified samples"
    return "no value at any layer"
