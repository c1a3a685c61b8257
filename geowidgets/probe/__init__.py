"""PyTorch probing backend: layer listing, activation capture, device selection.

Pure compute: nothing here imports Jupyter, ipywidgets, anywidget or bokeh.
"""

from geowidgets.probe._capture import (
    Activations,
    Probe,
    iterate_batches,
    model_device,
    model_fingerprint,
    pool,
    take_rows,
)
from geowidgets.probe._device import resolve_device
from geowidgets.probe._layers import (
    LayerInfo,
    default_layers,
    list_layers,
    module_mode,
    own_forward_hook,
    resolve_layers,
    select_output,
)
from geowidgets.probe._patch import PatchedModel, patch_activation

__all__ = [
    "Activations",
    "LayerInfo",
    "PatchedModel",
    "Probe",
    "default_layers",
    "iterate_batches",
    "list_layers",
    "model_device",
    "model_fingerprint",
    "module_mode",
    "own_forward_hook",
    "patch_activation",
    "pool",
    "resolve_device",
    "resolve_layers",
    "select_output",
    "take_rows",
]
