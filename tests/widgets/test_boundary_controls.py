"""Boundary controls of the views: each moves its picture, and equals the geometry function's value.

* SliceView ``plane``: the slice on ``geo.Plane.from_directions(A, *geo.plane_directions(...))``.
* SliceView ``boundary_from`` (alt-click): ``geo.boundary_search``'s CGBA distance, path and arcs
  projected on the slice's plane.
* ``color_by="boundary_distance"``: a two-class linear read-out, where the distance along the margin
  gradient has a closed form; ``color_by="lodd_score"``: ``geo.lodd``.
* EmbeddingView ``method="heatgeo"`` and its diffusion time, UMAP's ``n_neighbors`` / ``min_dist``.
* LayerProfile metric picker: NC2–NC4 against ``geo.neural_collapse`` and a numpy nearest-class-mean
  count; a k-dependent metric follows ``k``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from geowidgets import geometry as geo
from geowidgets.session import Session
from geowidgets.widgets import EmbeddingView, LayerProfile, SliceView


@pytest.fixture()
def view(session):
    v = SliceView(session, layer=session.layers[1], resolution=24)
    assert v.wait(60)
    return v


@pytest.mark.parametrize("kind", ["pca", "gradient", "centroids", "random"])
def test_plane_choice_slices_on_plane_directions(session, view, kind):
    layer = view.layer
    before, extent_before = np.asarray(view.classes).copy(), list(view.extent)
    view.plane = kind
    assert view.wait(60) and view.status == "idle", view.message
    X = session.features(layer)
    a = view.anchors[0]
    kwargs = {}
    if kind == "centroids":  # the distinct labels of the anchors, in order
        labels = [int(session.labels[i]) for i in view.anchors]
        kwargs = {"labels": session.labels, "classes": tuple(dict.fromkeys(labels))}
    if kind == "gradient":
        kwargs = {"origin": X[a], "model": session.model, "layer": layer, "carrier": session.inputs[a]}
    dirs = geo.plane_directions(X, kind, **kwargs)
    plane = geo.Plane.from_directions(X[a], dirs[0], dirs[1])
    expected = geo.decision_slice(
        session.model,
        plane,
        layer=layer,
        plane_space="layer",
        carrier=session.inputs[a],
        resolution=view.resolution,
        data=X,
        margin=session.SLICE_MARGIN,
    )
    np.testing.assert_array_equal(np.asarray(view.classes), np.asarray(expected.classes))
    np.testing.assert_allclose(view.extent, expected.extent, rtol=1e-6)
    assert not (np.array_equal(before, np.asarray(view.classes)) and view.extent == extent_before), "nothing moved"
    assert f"plane: {kind}" in view.title
    # The data are drawn at their projections on this plane.
    coords = np.asarray(plane.coords(X), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(view.points), coords[np.asarray(view.point_index)], rtol=1e-4, atol=1e-5)


def test_plane_rejects_unknown_kinds_and_static_slices(session, view, demo):
    with pytest.raises(Exception, match="plane must be one of"):
        view.plane = "diagonal"
    static = SliceView(session.decision_slice(session.layers[0], session.default_anchors(), 16))
    assert static.plane_kinds == []
    with pytest.raises(ValueError, match="fixed"):
        static.plane = "pca"


def test_boundary_search_from_a_sample_equals_geo_boundary_search(session, view):
    layer, start = view.layer, 7
    view.boundary_from = start
    assert view.wait(60) and view.status == "idle", view.message
    X = session.features(layer)
    hit = geo.boundary_search(
        session.model, X[start], method="semicircle", layer=layer, carrier=session.inputs[start], space="layer", data=X
    )
    assert hit.found
    assert view.boundary_distance == pytest.approx(hit.distance, rel=1e-9)
    # Path and arcs are drawn at their projections on the slice's plane (float64 numpy here).
    sl = session.plane_slice(layer, tuple(view.anchors), view.resolution)
    origin = sl.plane.origin.numpy()
    basis = sl.plane.basis.numpy()
    path = (hit.path.numpy() - origin) @ basis.T
    np.testing.assert_allclose(np.asarray(view.boundary_path), path, rtol=1e-4, atol=1e-5)
    arcs = (hit.arcs.numpy().reshape(-1, X.shape[1]) - origin) @ basis.T
    np.testing.assert_allclose(np.asarray(view.boundary_arcs).reshape(-1, 2), arcs, rtol=1e-4, atol=1e-5)
    assert f"#{start}" in view.boundary_summary and f"{hit.distance:.4g}" in view.boundary_summary
    # Another start moves the picture; -1 clears it.
    view.boundary_from = 11
    assert view.wait(60)
    assert view.boundary_distance != pytest.approx(hit.distance)
    view.boundary_from = -1
    assert view.boundary_path is None and np.isnan(view.boundary_distance) and view.boundary_summary == ""


def test_modified_clicks_pick_the_nearest_sample(view):
    coords = np.asarray(view._coords, dtype=np.float64)
    i, j = 5, 40
    view.modified_click = {"alpha": float(coords[i, 0]), "beta": float(coords[i, 1]), "modifier": "alt", "seq": 1}
    assert view.boundary_from == view.nearest_sample(*coords[i])
    view.modified_click = {"alpha": float(coords[i, 0]), "beta": float(coords[i, 1]), "modifier": "shift", "seq": 2}
    view.modified_click = {"alpha": float(coords[j, 0]), "beta": float(coords[j, 1]), "modifier": "shift", "seq": 3}
    assert view.picked == [view.nearest_sample(*coords[i]), view.nearest_sample(*coords[j])]
    assert view.wait(60)


def test_boundary_distance_coloring_matches_the_closed_form_of_a_linear_read_out():
    torch.manual_seed(0)
    x = torch.randn(80, 3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    s = Session(model, x, layers=["0"], k_max=10)
    spec = s.color_values("boundary_distance", layer="0")
    # After layer "0" the model is z = W h + b: along the margin gradient (W_j - W_y) the boundary is at
    # |z_1 - z_0| / ||W_1 - W_0||, in float64.
    with torch.no_grad():
        h = model[0](x).double()
        W, b = model[1].weight.double(), model[1].bias.double()
        z = h @ W.T + b
    expected = (z[:, 1] - z[:, 0]).abs() / torch.linalg.vector_norm(W[1] - W[0])
    np.testing.assert_allclose(spec.values, expected.numpy(), rtol=1e-3, atol=2e-4)
    assert spec.kind == "continuous" and spec.vmin == 0.0
    assert s.color_is_cheap("boundary_distance", "0")


def test_lodd_coloring_equals_geo_lodd_and_follows_k(session):
    layer = session.layers[2]
    X = session.features(layer)
    for k in (5, 15):
        spec = session.color_values("lodd_score", layer=layer, k=k)
        np.testing.assert_allclose(spec.values, np.asarray(geo.lodd(X, k=k).score), rtol=1e-5, atol=1e-6)
    assert not np.allclose(session.color_values("lodd_score", layer=layer, k=5).values, spec.values)


def test_embedding_heatgeo_and_its_diffusion_time(session):
    layer = session.layers[1]
    view = EmbeddingView(session, layer=layer, method="pca")
    assert view.wait(60)
    view.method = "heatgeo"
    assert view.wait(120) and view.status == "idle", view.message
    X = session.features(layer)
    graph = session.knn_graph(layer)
    first = np.asarray(geo.embed(X, method="heatgeo", knn=graph, n_neighbors=15), dtype=np.float32)
    np.testing.assert_allclose(session.layout(layer, "heatgeo"), first, rtol=1e-5, atol=1e-5)
    assert view.title == f"{layer} · heat-geodesic"
    shown = view._raw_layout.copy()
    view.diffusion_time = 2.0
    assert view.wait(120) and view.status == "idle", view.message
    second = np.asarray(geo.embed(X, method="heatgeo", knn=graph, n_neighbors=15, t=2.0), dtype=np.float32)
    aligned = np.asarray(geo.align_layout(second, shown), dtype=np.float32)
    np.testing.assert_allclose(view._raw_layout, aligned, rtol=1e-4, atol=1e-4)
    assert not np.allclose(first, second, atol=1e-3)


def test_umap_controls_reach_session_layout(session, monkeypatch):
    calls = []
    original = session.layout

    def spy(layer, method="pca", reference=None, **params):
        calls.append((method, params))
        if method == "umap":  # a stand-in (no numba compile in unit tests): PCA scaled by min_dist
            return original(layer, "pca", reference=reference) * (1.0 + params.get("min_dist", 0.1))
        return original(layer, method, reference=reference, **params)

    monkeypatch.setattr(session, "layout", spy)
    view = EmbeddingView(session, layer=session.layers[0], method="umap")
    assert view.wait(60)
    view.min_dist = 0.5
    assert view.wait(60)
    view.n_neighbors = 8
    assert view.wait(60)
    assert ("umap", {"min_dist": 0.5}) in calls and ("umap", {"n_neighbors": 8, "min_dist": 0.5}) in calls
    with pytest.raises(ValueError, match="n_neighbors"):
        session.has_layout(session.layers[0], "umap", n_neighbors=session.k_max + 2)


def test_metric_picker_charts_neural_collapse_and_k_dependent_metrics(session):
    from geowidgets.widgets._metric_picker import metric_picker

    profile = LayerProfile(session, metrics=("rankme",), k=10)
    assert profile.wait(120)
    picker = metric_picker(profile)
    picker.value = ("nc2_equinorm", "nc2_equiangular", "nc4", "knn_agreement")
    assert profile.wait(120) and profile.status == "idle", profile.message
    assert set(profile.values) == {"nc2_equinorm", "nc2_equiangular", "nc4", "knn_agreement", "deviation_auroc"}
    labels = np.asarray(session.labels)
    for j, layer in enumerate(session.layers):
        X = session.features(layer)
        nc = geo.neural_collapse(X, labels, predictions=session.predictions)
        assert profile.values["nc2_equinorm"][j] == pytest.approx(nc.nc2_equinorm, rel=1e-9)
        assert profile.values["nc2_equiangular"][j] == pytest.approx(nc.nc2_equiangular, rel=1e-9)
        # NC4: share of samples whose nearest class mean (float64 numpy) disagrees with the prediction.
        Xn = X.double().numpy()
        means = np.stack([Xn[labels == c].mean(0) for c in np.unique(labels)])
        ncc = np.unique(labels)[((Xn[:, None] - means[None]) ** 2).sum(-1).argmin(1)]
        assert profile.values["nc4"][j] == pytest.approx(np.mean(ncc != session.predictions), abs=1e-12)
    for k in (5, 12):
        profile.k = k
        assert profile.wait(120)
        X = session.features(session.layers[0])
        ref = geo.knn_label_agreement(X, labels, k).mean
        assert profile.values["knn_agreement"][0] == pytest.approx(ref, rel=1e-9)
    with pytest.raises(ValueError, match="unknown metrics"):
        profile.set_metrics(("nc9",))


def test_plane_as_a_keyword_slices_on_that_plane(session):
    view = SliceView(session, layer=session.layers[0], resolution=16, plane="pca")
    assert view.wait(60) and view.status == "idle", view.message
    expected = session.plane_slice(session.layers[0], tuple(view.anchors), 16, "pca")
    np.testing.assert_array_equal(np.asarray(view.classes), np.asarray(expected.classes))
