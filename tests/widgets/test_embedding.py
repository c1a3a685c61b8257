"""EmbeddingView: binary positions in [-1, 1], k/temperature moves only change values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from geowidgets.widgets import EmbeddingView
from geowidgets.widgets._embedding import normalise_positions


def _xy(view):
    return np.frombuffer(view.positions, dtype="<f4").reshape(-1, 2)


def test_normalise_positions_keeps_aspect_and_range():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(500, 2)) * [10.0, 2.0] + [100.0, -5.0]
    out = normalise_positions(xy)
    assert np.abs(out).max() <= 0.95 + 1e-6
    assert np.isclose(np.abs(out).max(), 0.95, atol=1e-6)
    span_in = xy.max(0) - xy.min(0)
    span_out = out.max(0) - out.min(0)
    np.testing.assert_allclose(span_out / span_out[0], span_in / span_in[0], rtol=1e-5)
    with pytest.raises(ValueError, match="NaN/inf"):
        normalise_positions([[0.0, np.nan]])
    with pytest.raises(ValueError, match=r"shape \[N, 2\]"):
        normalise_positions(np.zeros((3, 3)))


def test_standalone_points_and_colours_are_binary():
    view = EmbeddingView()
    xy = np.random.default_rng(1).normal(size=(1000, 2))
    view.set_points(xy, labels=np.arange(1000) % 3)
    assert view.positions.dtype == np.float32 and view.positions.shape == (1000, 2)
    assert view.revision == 1
    positions = view.positions
    view.set_colors(np.linspace(-3, 3, 1000), "diverging", vmin=-5, vmax=5, label="z")
    assert view.positions is positions  # colours never resend positions
    assert np.frombuffer(view.values, dtype="<f4")[-1] == pytest.approx(3.0)
    assert view.revision == 2 and view.color_kind == "diverging" and view.value_range == [-5.0, 5.0]
    with pytest.raises(ValueError, match=r"shape \(1000,\)"):
        view.set_colors(np.zeros(10))
    with pytest.raises(ValueError, match="kind must be"):
        view.set_colors(np.zeros(1000), "rainbow")


def test_session_view_k_and_temperature_moves_only_send_values(session):
    view = EmbeddingView(session, layer=session.layers[1], method="pca", color_by="deviation", k=5)
    assert view.wait(30), view.message
    assert view.status == "idle", view.message
    assert view.n_points == session.n
    positions, rev = view.positions, view.revision
    view.k = 9  # deviation tables are cached: inline, no thread
    assert view.revision == rev + 1
    assert view.positions is positions
    np.testing.assert_allclose(np.frombuffer(view.values, "<f4"), session.deviation(session.layers[1], 9).z)
    view.color_by = "confidence"
    view.temperature = 0.25
    assert view.positions is positions
    expected = softmax(session.logits.double().numpy() / 0.25, axis=1).max(1)
    np.testing.assert_allclose(np.frombuffer(view.values, "<f4"), expected, rtol=1e-5)
    assert view.value_range[0] == pytest.approx(1 / session.logits.shape[1])


def test_layer_change_sends_new_aligned_positions(session):
    view = EmbeddingView(session, layer=session.layers[0], method="pca")
    assert view.wait(30)
    first = _xy(view).copy()
    assert np.abs(first).max() <= 1.0
    view.layer = session.layers[2]
    assert view.wait(30)
    second = _xy(view)
    assert second.shape == first.shape and not np.allclose(first, second)
    # what is shown is the new layer's PCA aligned (Procrustes) to the first layer's layout
    aligned = session.layout(session.layers[2], "pca", reference=session.layout(session.layers[0], "pca"))
    np.testing.assert_allclose(view._raw_layout, aligned, atol=1e-4)
    np.testing.assert_allclose(second, normalise_positions(aligned), atol=1e-5)
    assert view.title.startswith(session.layers[2])


def test_umap_refinement_replaces_pca_and_is_cancelled_by_a_layer_change(session, monkeypatch):
    calls = []
    original = session.layout

    def fake_layout(layer, method="pca", reference=None):
        calls.append((layer, method))
        if method == "umap":  # a stand-in refinement (no numba compile in unit tests)
            return original(layer, "pca", reference=reference) * 2.0 + 0.5
        return original(layer, method, reference=reference)

    monkeypatch.setattr(session, "layout", fake_layout)
    view = EmbeddingView(session, layer=session.layers[0], method="umap")
    assert view.wait(30)
    assert (session.layers[0], "umap") in calls
    assert view.title == f"{session.layers[0]} · UMAP"


def test_bad_traits_raise(session):
    view = EmbeddingView(session, method="pca")
    with pytest.raises(KeyError, match="unknown layer"):
        view.layer = "nope"
    with pytest.raises(ValueError, match="color_by must be one of"):
        view.color_by = "rainbow"
    with pytest.raises(ValueError, match="temperature must be"):
        view.temperature = -1.0
    with pytest.raises(ValueError, match="method must be"):
        view.method = "tsne"


def test_metadata_for_tooltips(session):
    view = EmbeddingView(session, method="pca")
    assert view.wait(30)
    assert np.array_equal(np.frombuffer(view.labels, "<i4"), session.labels)
    assert np.array_equal(np.frombuffer(view.predictions, "<i4"), session.predictions)
    assert view.class_names == session.class_names
    assert view.images is None  # toy data: no thumbnails
