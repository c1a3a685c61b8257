"""Interactive views (anywidget + ipywidgets + bokeh) over a :class:`~geowidgets.session.Session`.

* :class:`EmbeddingView` — WebGL scatter (regl-scatterplot, bundled) of a layer's layout; also
  usable without a session through ``set_points`` / ``set_colours``.
* :class:`SliceView` — decision slice through three samples, temperature rescales in place.
* :class:`DeviationMap` — samples x layers kNN-deviation z heatmap with divergence layers.
* :class:`LayerProfile` — bokeh per-layer metric charts through jupyter_bokeh (BokehJS inline).
* :class:`Explorer` — the four views linked, with layer / k / temperature / colour controls.

Traits are the state: a Python assignment is the same as moving a control. Arrays travel as
binary buffers (float32 / int32 / uint8 ``Bytes`` traits). Every view has ``revision``,
``status`` ("idle" | "busy" | "error") and ``message``; its root element carries
``data-gw-view`` and, after each draw, ``data-gw-drawn="<revision>"``. Work that is not cheap
runs on per-view worker threads, newest request wins (see ``_base.py``); ``view.wait()`` blocks
until results are applied (scripts and tests).

Examples
--------
>>> from geowidgets.widgets import Explorer, EmbeddingView, SliceView, DeviationMap, LayerProfile
"""

from geowidgets.widgets._deviation_map import DeviationMap
from geowidgets.widgets._embedding import EmbeddingView
from geowidgets.widgets._explorer import Explorer
from geowidgets.widgets._layer_profile import LayerProfile
from geowidgets.widgets._slice import SliceView

__all__ = ["DeviationMap", "EmbeddingView", "Explorer", "LayerProfile", "SliceView"]
