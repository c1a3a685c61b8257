"""Interactive views (anywidget + ipywidgets + bokeh) over a :class:`~geowidgets.session.Session`.

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
