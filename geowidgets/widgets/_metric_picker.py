"""The layer profile's metric picker, and the neural-collapse metrics NC2–NC4 per layer.

``geo.layer_profile`` reports NC1 and the coding rate among its metrics; NC2 (equinorm,
equiangularity), NC3 (self-duality with the classifier) and NC4 (agreement with the nearest class
mean) come from ``geo.neural_collapse`` and are computed here per layer of a session, so the
profile can chart every metric.
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets
import numpy as np
import torch

from geowidgets.geometry._profile import PROFILE_METRICS

__all__ = ["COLLAPSE_METRICS", "PICKABLE_METRICS", "collapse_values", "classifier_weights", "metric_picker"]

#: ``geo.neural_collapse`` fields charted by the profile (besides ``nc1`` of ``geo.layer_profile``).
COLLAPSE_METRICS = ("nc2_equinorm", "nc2_equiangular", "nc3", "nc4")
#: Every metric a live profile can chart: ``geo.layer_profile``'s and the neural-collapse ones.
PICKABLE_METRICS = (*PROFILE_METRICS, *COLLAPSE_METRICS)


def classifier_weights(model: torch.nn.Module, n_classes: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The last ``nn.Linear`` of ``model`` with ``n_classes`` outputs: its weight ``[C, D]`` and bias, or None."""
    last = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == n_classes:
            last = module
    if last is None:
        return None
    bias = None if last.bias is None else last.bias.detach().cpu()
    return last.weight.detach().cpu(), bias


def collapse_values(session: Any, metrics: tuple[str, ...]) -> tuple[dict[str, list[float]], dict[str, str]]:
    """NC2–NC4 per layer of a session: ``(metric -> one value per layer, metric -> why it has none)``.

    NC2 (``nc2_equinorm``, ``nc2_equiangular``) and NC4 (the share of samples whose
    nearest-class-mean label differs from the model's prediction) are defined at every layer; NC3
    needs the classifier's weights, so it is computed at the layers whose width equals the input
    width of the model's last ``nn.Linear`` with one output per class (NaN elsewhere).

    Raises
    ------
    ValueError
        A metric not in :data:`COLLAPSE_METRICS`.
    """
    from geowidgets import geometry as geo

    unknown = [m for m in metrics if m not in COLLAPSE_METRICS]
    if unknown:
        raise ValueError(f"unknown neural-collapse metrics {unknown}; allowed: {list(COLLAPSE_METRICS)}")
    layers = list(session.layers)
    values = {m: [math.nan] * len(layers) for m in metrics}
    if session.labels is None:
        return values, {m: "needs class labels" for m in metrics}
    predictions = session.predictions if session.task == "classification" else None
    n_classes = len(np.unique(session.labels))  # the weight's rows are the classes present, in label order
    weights = classifier_weights(session.model, n_classes) if "nc3" in metrics else None
    reasons: dict[str, str] = {}
    for j, layer in enumerate(layers):
        X = session.features(layer)
        w = weights if weights is not None and weights[0].shape[1] == X.shape[1] else None
        try:
            res = geo.neural_collapse(
                X,
                session.labels,
                weight=None if w is None else w[0],
                bias=None if w is None else w[1],
                predictions=predictions,
            )
        except ValueError as exc:  # e.g. a class mean at the global mean: the angles are undefined here
            reasons.setdefault(metrics[0], str(exc))
            continue
        for m in metrics:
            v = getattr(res, m)
            values[m][j] = math.nan if v is None else float(v)
    if "nc3" in metrics and all(math.isnan(v) for v in values["nc3"]):
        reasons["nc3"] = "needs a layer as wide as the classifier's input"
    if "nc4" in metrics and predictions is None:
        reasons["nc4"] = "needs the classifier's predictions"
    return values, reasons


def metric_picker(profile: Any) -> ipywidgets.SelectMultiple:
    """A multi-select of :data:`PICKABLE_METRICS` that sets the live profile's charts (``profile.set_metrics``).

    The profile's titles name the metrics; the picker lists the same names. Selecting none keeps
    the deviation AUROC chart alone.
    """
    from geowidgets.plotting._profile import METRIC_TITLES

    options = [(METRIC_TITLES.get(m, m), m) for m in PICKABLE_METRICS]
    picker = ipywidgets.SelectMultiple(
        options=options,
        value=tuple(m for m in profile.metrics if m in PICKABLE_METRICS),
        rows=min(8, len(options)),
        description="metrics",
        layout=ipywidgets.Layout(width="330px"),
    )
    picker.style.description_width = "initial"
    picker.add_class("gw-metric-picker")
    picker.observe(lambda change: profile.set_metrics(change["new"]), names=["value"])
    return picker
