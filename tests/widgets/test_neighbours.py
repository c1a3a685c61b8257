"""Neighbours of the hovered / clicked sample in every view, and the "neighbourhood kept" coloring."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from geowidgets import geometry as geo


@pytest.fixture()
def explorer(demo):
    from geowidgets import Explorer

    ex = Explorer(demo.model, demo.inputs, demo.labels, layers=demo.layers, k_max=20, method="pca")
    assert ex.wait() and ex.status == "idle", ex.message
    yield ex
    ex.close()


def _views(ex):
    return [v for v in (ex.embedding, ex.slice, ex.deviation_map) if v is not None]


def test_hovered_neighbours_equal_knn_at_two_k(explorer):
    ex = explorer
    X = ex.session.features(ex.layer).numpy()
    ex.hovered = 17
    for k in (10, 4):
        ex.k = k
        assert ex.wait()
        dist, idx = geo.knn(X, k)
        assert ex.neighbour_of == 17
        assert ex.neighbours == idx[17].tolist()
        np.testing.assert_allclose(ex.neighbour_distances, dist[17], rtol=1e-6)
        for view in _views(ex):  # every linked view draws the same highlight
            assert view.neighbour_of == 17 and view.neighbours == idx[17].tolist()


def test_clicked_sample_neighbours_follow_the_layer_and_clear(explorer):
    ex = explorer
    ex.k = 6
    ex.selection = [40]  # a click selects one sample; with no hover its neighbours are shown
    assert ex.wait()
    for layer in ex.session.layers[:2]:
        ex.layer = layer
        assert ex.wait()
        expected = (
            NearestNeighbors(n_neighbors=6)
            .fit(ex.session.features(layer).numpy())
            .kneighbors([ex.session.features(layer).numpy()[40]], n_neighbors=7)[1][0]
        )
        assert ex.neighbours == [int(i) for i in expected if i != 40][:6]
    ex.hovered = 3  # a hover takes over from the click...
    assert ex.wait() and ex.neighbour_of == 3
    ex.hovered = -1  # ...and gives it back when the mouse leaves
    assert ex.wait() and ex.neighbour_of == 40
    ex.selection = []
    assert ex.wait()
    assert ex.neighbour_of == -1 and ex.neighbours == [] and ex.embedding.neighbours == []


def _sklearn_neighbours(X, k):
    return NearestNeighbors(n_neighbors=k).fit(X).kneighbors(return_distance=False)  # self excluded


@pytest.mark.parametrize("k", [5, 12])
def test_neighbourhood_kept_equals_sklearn_overlap(session, demo, k):
    layers = session.layers
    spaces = [demo.inputs.reshape(len(demo.inputs), -1).numpy(), *(session.features(name).numpy() for name in layers)]
    for j, layer in enumerate(layers):
        before, after = _sklearn_neighbours(spaces[j], k), _sklearn_neighbours(spaces[j + 1], k)
        expected = np.array([len(set(a) & set(b)) / k for a, b in zip(before, after)])
        spec = session.color_values("neighbourhood_kept", layer=layer, k=k)
        np.testing.assert_allclose(spec.values, expected, atol=1e-6)
        assert (spec.vmin, spec.vmax) == (0.0, 1.0)
    assert "neighbourhood_kept" in session.usable_colorings()


def test_neighbourhood_kept_is_a_menu_coloring_that_follows_k(explorer):
    ex = explorer
    ex.color_by = "neighbourhood_kept"
    assert ex.wait() and ex.status == "idle", ex.message
    first = ex.embedding.values.copy()
    ex.k = 3
    assert ex.wait()
    expected = ex.session.color_values("neighbourhood_kept", layer=ex.layer, k=3).values
    np.testing.assert_array_equal(ex.embedding.values, expected)
    assert not np.array_equal(first, ex.embedding.values)
