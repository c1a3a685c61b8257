"""Views of geometry results without a session (static), argument checking and short reprs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax

from geowidgets import geometry as geo
from geowidgets.widgets import DeviationMap, EmbeddingView, Explorer, LayerProfile, SliceView
from geowidgets.widgets._embedding import normalise_positions


def test_embedding_of_a_layout_is_static_and_colored_by_its_labels():
    rng = np.random.default_rng(0)
    xy, labels = rng.normal(size=(300, 2)), np.arange(300) % 4
    view = EmbeddingView(xy, labels=labels, class_names=["a", "b", "c", "d"])
    assert view.session is None and view.n_points == 300
    np.testing.assert_allclose(view.positions, normalise_positions(xy))
    np.testing.assert_array_equal(view.values, labels.astype(np.float32))
    assert view.color_kind == "categorical" and view.categories == ["a", "b", "c", "d"]
    assert "static" in view.title
    for name, value in (("k", 5), ("temperature", 2.0), ("layer", "fc1"), ("method", "pca")):
        with pytest.raises(ValueError, match="static"):
            setattr(view, name, value)
    with pytest.raises(ValueError, match="color_by must be one of"):
        view.color_by = "prediction"  # no predictions given
    both = EmbeddingView(xy, labels=labels, predictions=labels[::-1].copy())
    both.color_by = "prediction"
    np.testing.assert_array_equal(both.values, labels[::-1].astype(np.float32))
    assert "static" in repr(view) and len(repr(view)) < 200


def test_slice_of_a_decision_slice_is_static_and_rescales_its_logits():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    X = np.random.default_rng(1).normal(size=(60, 2))
    plane = geo.Plane.through(X[0], X[1], X[2])
    sl = geo.decision_slice(model, plane, resolution=16, data=X)
    labels = np.arange(60) % 3
    view = SliceView(sl, labels=labels, max_points=20)
    assert view.session is None and view.layer == "input" and view.resolution == 16
    np.testing.assert_array_equal(view.classes, np.asarray(sl.classes))
    z = np.asarray(sl.logits, dtype=np.float64).reshape(-1, 3)  # the slice's own logits, scipy softmax
    np.testing.assert_allclose(view.confidence.ravel() / 255, softmax(z, axis=1).max(1), atol=1 / 255)
    view.temperature = 0.3  # served from the held logits: no session needed
    np.testing.assert_allclose(view.confidence.ravel() / 255, softmax(z / 0.3, axis=1).max(1), atol=1 / 255)
    order = np.argsort(np.asarray(sl.data_distance), kind="stable")[:20]
    np.testing.assert_array_equal(view.point_index, order)
    np.testing.assert_allclose(view.points, np.asarray(sl.data_coords, dtype=np.float32)[order])
    np.testing.assert_array_equal(view.point_labels, labels[order])
    np.testing.assert_allclose(view.anchor_xy, np.asarray(sl.anchor_coords), atol=1e-6)
    for name, value in (("layer", "fc1"), ("resolution", 32), ("anchors", [0, 1, 2])):
        with pytest.raises(ValueError, match="fixed geo.DecisionSlice"):
            setattr(view, name, value)
    assert "static" in repr(view)


def test_deviation_map_of_a_profile_is_static_and_rethresholds():
    rng = np.random.default_rng(2)
    R = {"a": rng.normal(size=(300, 3)), "b": rng.normal(size=(300, 3))}
    Q = {"a": rng.normal(size=(40, 3)), "b": rng.normal(size=(40, 3)) + 3 * (np.arange(40) < 10)[:, None]}
    prof = geo.knn_deviation_profile(Q, R, k=6)
    labels = np.arange(40) % 2
    view = DeviationMap(prof, labels=labels)
    assert view.session is None and view.k == 6 and view.layer_names == ["a", "b"] and view.layer == "b"
    for threshold in (2.0, 0.5, 1e9):
        view.threshold = threshold
        idx = np.asarray(view.row_index)
        np.testing.assert_allclose(view.z, prof.z[:, idx].T, rtol=1e-6)
        loop = [next((i for i in range(2) if prof.z[i, j] > threshold), -1) for j in idx]  # plain reference
        assert np.asarray(view.divergence).tolist() == loop
    np.testing.assert_allclose(view.auroc, prof.auroc)
    view.sort_by = "label"
    assert (np.diff(labels[np.asarray(view.row_index)]) >= 0).all()
    with pytest.raises(ValueError, match="k cannot change"):
        view.k = 7
    with pytest.raises(KeyError, match="unknown layer"):
        view.layer = "c"


def test_layer_profile_of_a_table_is_static(demo):
    from geowidgets.probe import Probe

    acts = Probe(demo.model, demo.layers, device="cpu").capture(demo.inputs, progress=False)
    table = geo.layer_profile({n: acts[n] for n in demo.layers}, demo.labels, metrics=("rankme", "knn_agreement"), k=7)
    view = LayerProfile(table)
    assert view.session is None and view.k == 7 and view.metrics == ("rankme", "knn_agreement")
    for metric in view.metrics:
        rows = table[table["metric"] == metric].set_index("layer")["value"]
        np.testing.assert_allclose(view.values[metric], [rows[n] for n in demo.layers], rtol=1e-12)
    assert "deviation_auroc" not in view.values
    view.figure.sources["rankme"].selected.indices = [1]  # a tap still picks a layer
    assert view.layer == demo.layers[1]
    with pytest.raises(ValueError, match="k cannot change"):
        view.k = 9
    with pytest.raises(ValueError, match="not in the table"):
        LayerProfile(table, metrics=("fisher",))


def test_unknown_keywords_raise_type_error_naming_the_allowed_ones(session, demo):
    with pytest.raises(TypeError, match=r"'colourby', 'pointsize'.*allowed: .*color_by.*point_size"):
        EmbeddingView(session, colourby="label", pointsize=9)
    with pytest.raises(TypeError, match="'resolutoin'"):
        SliceView(session, resolutoin=16)
    with pytest.raises(TypeError, match="'treshold'"):
        DeviationMap(session, treshold=1.0)
    with pytest.raises(TypeError, match="'metric'"):
        LayerProfile(session, metric=("rankme",))
    with pytest.raises(TypeError, match="'session_kwargs'"):
        Explorer(demo.model, demo.inputs, demo.labels, session_kwargs={"k_max": 10})
    with pytest.raises(TypeError, match="from_session"):
        Explorer(session, None)
    with pytest.warns(DeprecationWarning, match="color_by"):
        view = EmbeddingView(session, method="pca", colour_by="prediction")
    assert view.color_by == "prediction"
    with pytest.warns(DeprecationWarning, match="layer"):
        dmap = DeviationMap(session, current_layer=session.layers[0])
    assert dmap.layer == session.layers[0]
    # the old attribute names read and write the new ones, each time with a warning
    with pytest.warns(DeprecationWarning, match="'color_by'"):
        assert view.colour_by == "prediction"
    with pytest.warns(DeprecationWarning, match="'color_by'"):
        view.colour_by = "label"
    assert view.color_by == "label"
    with pytest.warns(DeprecationWarning, match="'color_kind'"):
        assert view.colour_kind == view.color_kind
    with pytest.raises(AttributeError):
        view.colour_kind = "continuous"  # read-only, like the trait it stands for
    with pytest.warns(DeprecationWarning, match="'layer'"):
        dmap.current_layer = session.layers[1]
    assert dmap.layer == session.layers[1]


def test_untrained_model_explorer_and_short_reprs():
    """A freshly initialised 3-class MLP on iris: few correct samples, one predicted class."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    ex = Explorer(model, torch.tensor(X, dtype=torch.float32), y, k_max=10, method="pca")
    assert ex.wait(120), ex.message
    assert ex.status == "idle", ex.message
    assert len(set(ex.slice.anchors)) == 3
    for obj in (ex, ex.embedding, ex.slice, ex.deviation_map, ex.profile, ex.session):
        text = repr(obj)
        assert len(text) < 300 and "\n" not in text, text


def test_explorer_k_drives_the_profile_knn_agreement(session):
    ex = Explorer.from_session(session, method="pca", k=5)
    assert ex.wait(120), ex.message
    ex.k = 7
    assert ex.wait(120), ex.message
    acts = session.activations()
    table = geo.layer_profile({n: acts[n] for n in session.layers}, session.labels, metrics=("knn_agreement",), k=7)
    rows = table.set_index("layer")["value"]
    np.testing.assert_allclose(ex.profile.values["knn_agreement"], [rows[n] for n in session.layers], rtol=1e-6)
    np.testing.assert_allclose(ex.profile.values["deviation_auroc"], session.auroc(7), equal_nan=True)
