"""Regression slices and honest empty profile panels.

A regression session's slice holds the model's predicted value at each grid point: checked against the
model (or the part of it after the sliced layer) called directly on grid points built from the plane's
origin and basis. The SliceView sends those values, the samples' targets and predictions; the
Explorer shows it instead of a reason line. A LayerProfile chart whose metric cannot be computed
(no class labels, no mistakes) shows the reason instead of an empty axis.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from geowidgets import geometry as geo
from geowidgets.session import Session
from geowidgets.widgets import Explorer, LayerProfile, SliceView

N = 160


class _Squeeze(nn.Module):
    """A regressor returning ``[B]`` (not ``[B, 1]``)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def _data() -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 2))
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] ** 2
    return torch.as_tensor(x, dtype=torch.float32), y


def _regressor(out: int = 1) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, out))


@pytest.fixture()
def regression():
    x, y = _data()
    model = _regressor()
    return model, x, y, Session(model, x, y, task="regression", layers=["1", "3"], k_max=20)


def _grid_points(sl: geo.DecisionSlice) -> np.ndarray:
    """``origin + alpha_j e1 + beta_i e2`` as ``[G, G, D]`` float64, from the plane and the extent alone."""
    origin = np.asarray(sl.plane.origin, dtype=np.float64)
    basis = np.asarray(sl.plane.basis, dtype=np.float64)
    g = sl.resolution
    alphas = np.linspace(sl.extent[0], sl.extent[1], g)
    betas = np.linspace(sl.extent[2], sl.extent[3], g)
    return origin + alphas[None, :, None] * basis[0] + betas[:, None, None] * basis[1]


def _call(module: nn.Module, points: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = module(torch.as_tensor(points.reshape(-1, points.shape[-1]), dtype=torch.float32))
    return out.reshape(points.shape[0], points.shape[1], -1).numpy().astype(np.float64)


def test_input_slice_values_are_the_model_on_the_plane_grid(regression):
    model, x, y, session = regression
    anchors = session.default_anchors()
    sl = session.decision_slice("input", anchors, resolution=24)
    assert sl.is_regression and sl.target_index == 0
    # The plane passes through the three anchors (their distance to it is rounding only).
    assert np.asarray(sl.distance_to_plane(x[list(anchors)])).max() < 1e-5
    expected = _call(model, _grid_points(sl))[..., 0]
    values = np.asarray(sl.values, dtype=np.float64)
    assert values.shape == (24, 24)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
    assert np.ptp(values) > 0.05  # a real picture, not a constant
    with pytest.raises(ValueError, match="regression slice has no classes"):
        _ = sl.classes
    with pytest.raises(ValueError, match="temperature does not apply"):
        sl.with_temperature(2.0)


def test_hidden_layer_slice_values_are_the_rest_of_the_model(regression):
    model, x, y, session = regression
    sl = session.decision_slice("1", session.default_anchors(), resolution=16)
    # Grid points in layer "1" (the first Tanh's output) go through the layers after it.
    expected = _call(model[2:], _grid_points(sl))[..., 0]
    np.testing.assert_allclose(np.asarray(sl.values, dtype=np.float64), expected, rtol=1e-5, atol=1e-5)


def test_a_flat_output_and_a_chosen_target_column():
    x, y = _data()
    flat = _Squeeze(_regressor())
    session = Session(flat, x, y, task="regression", layers=["net.1"], k_max=20)
    sl = session.decision_slice("input", (0, 1, 2), resolution=12)
    expected = _call(flat.net, _grid_points(sl))[..., 0]
    np.testing.assert_allclose(np.asarray(sl.values, dtype=np.float64), expected, rtol=1e-5, atol=1e-5)
    # A multi-output model: target_index picks the column, the same grid evaluation.
    multi = _regressor(out=3)
    plane = geo.Plane.through(x[0].numpy(), x[1].numpy(), x[2].numpy())
    sl3 = geo.decision_slice(multi, plane, resolution=10, target_index=2)
    np.testing.assert_allclose(sl3.values, _call(multi, _grid_points(sl3))[..., 2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sl3.values, np.asarray(sl3.logits)[..., 2])
    with pytest.raises(ValueError, match="3 output column"):
        geo.decision_slice(multi, plane, resolution=10, target_index=3)
    with pytest.raises(ValueError, match="target_index must be"):
        geo.decision_slice(multi, plane, resolution=10, target_index=-1)
    with pytest.raises(ValueError, match="classification slice has no values"):
        _ = geo.decision_slice(multi, plane, resolution=10).values


def test_slice_view_sends_values_targets_and_predictions(regression):
    model, x, y, session = regression
    view = SliceView(session, layer="input", resolution=20)
    assert view.wait(120), view.message
    assert view.mode == "regression" and view.classes is None and view.confidence is None
    sl = session.decision_slice("input", tuple(view.anchors), 20)
    np.testing.assert_array_equal(view.values, np.asarray(sl.values, dtype=np.float32))
    idx = np.array(view.point_index)
    np.testing.assert_allclose(view.point_targets, y[idx].astype(np.float32))
    with torch.no_grad():
        own = model(x[idx]).numpy()[:, 0]
    np.testing.assert_allclose(view.point_values, own, rtol=1e-5, atol=1e-6)
    # One scale for the image and the dots: it spans the grid's values and the drawn targets.
    lo, hi = view.value_range
    both = np.concatenate([np.asarray(view.values).ravel(), np.asarray(view.point_targets)])
    assert lo == pytest.approx(float(both.min())) and hi == pytest.approx(float(both.max()))
    assert "not used for regression" in view.temperature_note
    assert view.title.startswith("predicted value in input space")
    before = view.values
    view.temperature = 3.0  # no effect on a regression picture, and no error
    assert view.wait(30) and view.status == "idle" and view.values is before


def test_static_regression_slice_view():
    x, y = _data()
    model = _regressor()
    plane = geo.Plane.through(x[0].numpy(), x[1].numpy(), x[2].numpy())
    sl = geo.decision_slice(model, plane, resolution=16, data=x.numpy(), target_index=0)
    view = SliceView(sl, targets=y)
    assert view.mode == "regression"
    np.testing.assert_allclose(view.values, np.asarray(sl.values, dtype=np.float32))
    np.testing.assert_allclose(view.point_targets, y[np.asarray(view.point_index)].astype(np.float32))
    with pytest.raises(TypeError, match="targets="):
        SliceView(sl, labels=np.zeros(N, dtype=int))


def test_explorer_shows_the_regression_slice_and_says_why_no_temperature(regression):
    model, x, y, session = regression
    ex = Explorer.from_session(session, method="pca", size=240)
    try:
        assert ex.wait(240)
        assert ex.slice is not None and ex.no_slice_reason == ""
        assert ex.slice.mode == "regression" and ex.slice.values is not None
        assert "not used for regression" in ex.no_temperature_reason
        controls = ex.children[1].children
        assert ex.temperature_slider not in controls
        notes = [c for c in controls if "gw-no-temperature" in c._dom_classes]
        assert len(notes) == 1 and ex.no_temperature_reason in notes[0].value
    finally:
        ex.close()


def test_profile_charts_say_why_a_metric_is_missing(regression):
    model, x, y, session = regression
    view = LayerProfile(session, metrics=("rankme", "knn_agreement", "fisher"), k=5)
    assert view.wait(300), view.message
    # A regression session has no class labels: those metrics and the deviation AUROC have no value.
    missing = {"knn_agreement", "fisher", "deviation_auroc"}
    assert set(view.reasons) == missing
    assert all(view.reasons[m] == "needs class labels" for m in missing)
    for metric in missing:
        assert all(math.isnan(v) for v in view.values[metric])
        assert view.figure.notes[metric].text == "needs class labels"
        assert view.figure.sources[metric].data["value"] == []
    # A computed metric draws its values and no note.
    acts = session.activations()
    table = geo.layer_profile({n: acts[n] for n in session.layers}, None, metrics=("rankme",))
    np.testing.assert_allclose(view.values["rankme"], table["value"].to_numpy(), rtol=1e-6)
    assert view.figure.notes["rankme"].text == "" and "rankme" not in view.reasons
    view.k = 7  # the k-dependent charts stay explained at another k
    assert view.wait(120)
    assert view.reasons["knn_agreement"] == "needs class labels"
    assert view.figure.notes["deviation_auroc"].text == "needs class labels"


def test_profile_reason_for_a_classifier_without_mistakes_and_a_static_table():
    x, _ = _data()
    labels = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():  # a perfect classifier of x0 > 0: logits (-x0, x0) through a ReLU pair
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[0].weight[0, 0], model[0].weight[1, 0] = 1.0, -1.0
        model[2].weight.zero_()
        model[2].bias.zero_()
        model[2].weight[0, 1], model[2].weight[1, 0] = 1.0, 1.0
    session = Session(model, x, labels, layers=["1"], k_max=20)
    assert bool(session.correct.all())
    view = LayerProfile(session, metrics=("rankme",), k=5)
    assert view.wait(120)
    assert view.reasons == {"deviation_auroc": "no misclassified samples"}
    assert view.figure.notes["deviation_auroc"].text == "no misclassified samples"
    # Static: the table's own skip reason.
    acts = session.activations()
    table = geo.layer_profile({"1": acts["1"]}, None, metrics=("rankme", "fisher"))
    static = LayerProfile(table)
    assert static.wait(30)
    assert static.reasons == {"fisher": "needs class labels"}
    assert static.figure.notes["fisher"].text == "needs class labels"
