"""geowidgets: see what a network's layers do, live in JupyterLab.

Examples
--------
>>> import geowidgets as gw
>>> from geowidgets import geometry as geo
"""

from geowidgets import geometry
from geowidgets.probe import Activations, LayerInfo, Probe, list_layers

__version__ = "0.1.0"

__all__ = [
    "Activations",
    "LayerInfo",
    "Probe",
    "geometry",
    "list_layers",
]
