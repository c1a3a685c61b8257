"""Interactive views (anywidget + ipywidgets + bokeh) of geometry results, live over a :class:`~geowidgets.Session`.

Each view takes either a geometry result (static: it shows it, and refuses the controls it cannot
serve without a session) or a session (live: its controls recompute through the session's caches):

* :class:`EmbeddingView` — WebGL scatter (regl-scatterplot, bundled) of a layout ``[N, 2]`` or a
  session layer's layout.
* :class:`SliceView` — a ``geo.decision_slice`` or a session's slice through three samples;
  temperature rescales in place.
* :class:`DeviationMap` — samples x layers kNN-deviation z heatmap with divergence layers, of a
  ``geo.knn_deviation_profile`` or a session.
* :class:`LayerProfile` — bokeh per-layer metric charts of ``geo.layer_profile`` or a session.
* :class:`Explorer` — the four views linked, with layer / k / temperature / colour controls; over
  several checkpoints (or two models to interpolate) a step (α) scrubber.
* :class:`TrainingProfile` — steps × layers heatmaps of ``geo.layer_profile`` metrics.
* :class:`CompareView` — layers(A) × layers(B) CKA or mutual-kNN heatmap of two models; a cell
  shows the two layers' embeddings side by side, linked.
* :class:`LossSurfaceView`, :class:`HessianView`, :class:`BarrierChart` — ``geo.loss_surface``,
  the Hessian spectrum and ``geo.loss_barrier`` (static bokeh charts).

Traits are the state: a Python assignment is the same as moving a control; unknown constructor
keywords raise ``TypeError``. Arrays travel as
binary buffers (float32 / int32 / uint8 ``Bytes`` traits). Every view has ``revision``,
``status`` ("idle" | "busy" | "error") and ``message``; its root element carries
``data-gw-view`` and, after each draw, ``data-gw-drawn="<revision>"``. Work that is not cheap
runs on per-view worker threads, newest request wins (see ``_base.py``); ``view.wait()`` blocks
until results are applied (scripts and tests).

Examples
--------
>>> from geowidgets.widgets import Explorer, EmbeddingView, SliceView, DeviationMap, LayerProfile
"""

from geowidgets.widgets._compare import CompareView
from geowidgets.widgets._deviation_map import DeviationMap
from geowidgets.widgets._embedding import EmbeddingView
from geowidgets.widgets._explorer import Explorer
from geowidgets.widgets._landscape_view import BarrierChart, HessianView, LossSurfaceView
from geowidgets.widgets._layer_profile import LayerProfile
from geowidgets.widgets._slice import SliceView
from geowidgets.widgets._training_profile import TrainingProfile

__all__ = [
    "BarrierChart",
    "CompareView",
    "DeviationMap",
    "EmbeddingView",
    "Explorer",
    "HessianView",
    "LayerProfile",
    "LossSurfaceView",
    "SliceView",
    "TrainingProfile",
]
