"""Pure geometry probes over one layer's activations (torch tensors or numpy arrays).

Every function accepts a ``torch.Tensor`` or a ``numpy.ndarray``, runs on the tensor's device
(numpy: the best available device) and returns the same kind. Nothing here imports Jupyter.
See docs/probes.md for each probe's formula, defaults, cost, source and validation.

Submodules are imported lazily on first attribute access, so ``import geowidgets`` stays fast
(umap-learn and numba load only when an embedding is asked for).

Examples
--------
>>> import numpy as np
>>> from geowidgets import geometry as geo
>>> dist, idx = geo.knn(np.random.default_rng(0).normal(size=(50, 3)), k=5)
>>> idx.shape
(50, 5)
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from geowidgets.geometry._knn import KNNGraph, faiss_available, knn, knn_graph

# Private module (under geowidgets.geometry) -> public names it provides. Any further name a
# module lists in its own ``__all__`` is found too (see ``__getattr__``).
_MODULES: dict[str, tuple[str, ...]] = {
    "_deviation": (
        "knn_deviation",
        "knn_deviation_profile",
        "KNNDeviation",
        "DeviationProfile",
        "mean_shift_deviation",
        "MeanShiftDeviation",
        "DeviationTables",
        "DeviationProfileTables",
        "divergence_layers",
    ),
    "_boundary_points": ("lodd", "LoDDScores"),
    "_dimension": ("twonn", "mle_intrinsic_dimension"),
    "_agreement": ("knn_label_agreement", "LabelAgreement"),
    "_separability": ("mst_separability", "MSTSeparability", "minimum_spanning_tree"),
    "_stats": ("auroc", "fpr_at_tpr"),
    "_spectra": ("rankme", "von_neumann_entropy", "singular_values", "clear_spectral_cache"),
    "_diffusion": ("dse", "dsmi", "diffusion_spectrum", "diffusion_entropy_from_spectrum"),
    "_class_geometry": (
        "fisher_ratio",
        "FisherRatio",
        "neural_collapse",
        "NeuralCollapse",
        "coding_rate",
        "CodingRate",
    ),
    "_temperature": ("temperature_scores", "TemperatureScores", "expected_calibration_error"),
    "_tilting": ("boundary_tilting_angle", "BoundaryTilt"),
    "_profile": ("layer_profile", "PROFILE_METRICS", "DEFAULT_PROFILE_METRICS", "PROFILE_GRAPH_MIN_K"),
    "_embed": ("embed", "align_layout", "warm_up_umap", "enable_umap_disk_cache", "heat_geodesic_distances"),
    "_ann": ("approximate_knn_graph", "knn_recall", "ApproxKNNGraph", "KNNRecall"),
    "_slices": ("Plane", "plane_directions", "decision_slice", "DecisionSlice"),
    "_boundary_search": ("boundary_search", "BoundaryHit"),
    "_mixup": ("mixup_path", "MixupPath"),
    "_compare": ("cka", "cka_matrix", "mutual_knn"),
    "_landscape": (
        "interpolate",
        "loss_barrier",
        "LossBarrier",
        "hessian_eigenvalues",
        "hessian_trace",
        "HessianTrace",
        "hessian_spectral_density",
        "HessianDensity",
        "loss_surface",
        "LossSurface",
    ),
}
_NAME_TO_MODULE = {name: mod for mod, names in _MODULES.items() for name in names}

# Result types are named for what they hold (docs/architecture.md#names); the old ``...Result``
# names stay importable for one release and warn.
_DEPRECATED_NAMES: dict[str, str] = {
    "AgreementResult": "LabelAgreement",
    "DeviationResult": "KNNDeviation",
    "LoDDResult": "LoDDScores",
    "MeanShiftResult": "MeanShiftDeviation",
    "MSTResult": "MSTSeparability",
    "NCResult": "NeuralCollapse",
    "TiltResult": "BoundaryTilt",
}

__all__ = ["KNNGraph", "faiss_available", "knn", "knn_graph", *sorted(_NAME_TO_MODULE)]


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED_NAMES:
        new = _DEPRECATED_NAMES[name]
        warnings.warn(
            f"geowidgets.geometry.{name} is deprecated and will be removed in the next release; use {new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return __getattr__(new)
    mod_name = _NAME_TO_MODULE.get(name)
    candidates = [mod_name] if mod_name else list(_MODULES)
    for mod in candidates:
        try:
            module = importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{mod}":
                continue
            raise
        if name in getattr(module, "__all__", ()) or (mod_name and hasattr(module, name)):
            value = getattr(module, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
