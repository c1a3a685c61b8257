"""One exploration: a model, its data, and every result the views ask for, computed once.

* :class:`Session` (``_session.py``): captures the layers, memoises and hands back geometry's
  result objects (deviation tables and profiles, temperature scores, layouts, slices).
* ``_memo.py``: the thread-safe memo and the per-model lock every forward pass holds.
* ``_colorings.py``: the embedding's colorings as data (:data:`COLOR_BY`, :class:`ColorSpec`)
  and the pure functions that build them.
* ``_images.py``: hover thumbnails.

Examples
--------
>>> from geowidgets.datasets import toy_demo
>>> from geowidgets.session import Session
>>> demo = toy_demo("moons", n=300)
>>> s = Session(demo.model, demo.inputs, demo.labels, layers=demo.layers)
>>> s.color_values("deviation", layer=demo.layers[0], k=10).values.shape
(300,)
"""

from __future__ import annotations

from typing import Any

from geowidgets.session._colorings import COLOR_BY, TEMPERATURE_COLORINGS, ColorSpec, warn_renamed
from geowidgets.session._memo import Memo, model_lock
from geowidgets.session._session import INPUT_LAYER, Session

__all__ = ["Session", "ColorSpec", "COLOR_BY", "TEMPERATURE_COLORINGS", "INPUT_LAYER", "Memo", "model_lock"]

_RENAMED = {"ColourSpec": "ColorSpec", "COLOUR_BY": "COLOR_BY"}


def temperature_colours(logits: Any, temperature: float, name: str) -> Any:
    """Deprecated: use ``geo.temperature_scores(logits, temperature).<name>``."""
    from geowidgets import geometry as geo

    warn_renamed("temperature_colours", "geowidgets.geometry.temperature_scores(logits, T).<score>")
    if name not in TEMPERATURE_COLORINGS:
        raise ValueError(f"unknown temperature score {name!r}; allowed: {', '.join(TEMPERATURE_COLORINGS)}")
    return getattr(geo.temperature_scores(logits, temperature), name)


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        warn_renamed(name, _RENAMED[name])
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
