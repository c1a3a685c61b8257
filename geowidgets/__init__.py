"""geowidgets: see what a network's layers do, live in JupyterLab.

The compute lives in :mod:`geowidgets.probe` (capture) and :mod:`geowidgets.geometry` (probes);
:class:`Session` captures a model's layers once and memoises what geometry derives from them; the
views (:class:`Explorer`, :class:`EmbeddingView`, :class:`SliceView`, :class:`DeviationMap`,
:class:`LayerProfile`) show geometry results (static) or a session (live), and are imported on
first use, so ``import geowidgets`` stays light outside Jupyter.

Examples
--------
>>> import geowidgets as gw
>>> from geowidgets import geometry as geo
>>> demo = gw.datasets.toy_demo("moons", n=200, epochs=2)
>>> acts = gw.Probe(demo.model, layers=["fc2"], device="cpu").capture(demo.inputs, progress=False)
>>> tuple(acts["fc2"].shape)
(200, 64)
"""

from __future__ import annotations

from typing import Any

from geowidgets import datasets, geometry
from geowidgets.probe import Activations, LayerInfo, Probe, list_layers

__version__ = "0.1.0"

_WIDGETS = (
    "Explorer",
    "EmbeddingView",
    "SliceView",
    "DeviationMap",
    "LayerProfile",
    "TrainingProfile",
    "CompareView",
    "LossSurfaceView",
    "HessianView",
    "BarrierChart",
)
_LAZY = {"Session": "geowidgets.session"}

__all__ = [
    "Activations",
    "LayerInfo",
    "Probe",
    "datasets",
    "geometry",
    "list_layers",
    "Session",
    *_WIDGETS,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _WIDGETS:
        from geowidgets import widgets

        value = getattr(widgets, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geowidgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
