"""CompareView: the heatmap is geo.cka_matrix / geo.mutual_knn; a cell shows its two layers, linked."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from geowidgets import geometry as geo
from geowidgets.session import Session
from geowidgets.widgets import CompareView, EmbeddingView
from geowidgets.widgets._embedding import normalise_positions


@pytest.fixture(scope="module")
def pair(demo):
    other = copy.deepcopy(demo.model)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    return demo.model, other


@pytest.fixture()
def view(demo, pair):
    v = CompareView(pair[0], pair[1], demo.inputs, demo.labels, layers=demo.layers, k_max=20, method="pca", k=5)
    assert v.wait(120)
    yield v
    v.wait(120)
    v.close()


def _features(demo, model):
    s = Session(model, demo.inputs, demo.labels, demo.layers, k_max=20)
    return {n: s.features(n) for n in s.layers}


def test_heatmap_equals_cka_matrix(view, demo, pair):
    expected = geo.cka_matrix(_features(demo, pair[0]), _features(demo, pair[1]))
    np.testing.assert_allclose(np.array(view.heatmap.values), expected.to_numpy(), rtol=1e-9)
    assert view.heatmap.row_names == list(expected.index) and view.heatmap.col_names == list(expected.columns)
    assert len(view.heatmap.colors) == expected.size
    assert "CKA" in view.heatmap.title


def test_mutual_knn_toggle(view, demo, pair):
    fa, fb = _features(demo, pair[0]), _features(demo, pair[1])
    view.metric_toggle.value = "mutual_knn"
    assert view.metric == "mutual_knn"
    expected = np.array([[geo.mutual_knn(fa[a], fb[b], k=5) for b in fb] for a in fa])
    np.testing.assert_allclose(np.array(view.heatmap.values), expected, rtol=1e-12)
    assert "k=5" in view.heatmap.title
    with pytest.raises(Exception, match="metric must be"):
        view.metric = "svcca"


def test_clicking_a_cell_shows_those_two_layers(view, demo, pair):
    before = view.embedding_b._raw_layout.copy()
    view.heatmap.cell = [0, 2]  # what a click in the browser sets
    assert view.cell == [0, 2]
    assert view.wait(120)
    assert view.embedding_a.layer == demo.layers[0] and view.embedding_b.layer == demo.layers[2]
    # The B view shows model B's layer 2, aligned to the layout it showed before (as a layer move is).
    sb = Session(pair[1], demo.inputs, demo.labels, demo.layers, k_max=20)
    expected = normalise_positions(geo.align_layout(sb.layout(demo.layers[2], "pca"), before))
    np.testing.assert_allclose(view.embedding_b.positions, expected, atol=1e-4)
    with pytest.raises(Exception, match="cell must be"):
        view.cell = [0, 99]


def test_selection_and_hover_travel_between_the_embeddings(view):
    assert isinstance(view.embedding_a, EmbeddingView)
    view.embedding_a.selection = [1, 4, 9]
    assert view.embedding_b.selection == [1, 4, 9] and view.selection == [1, 4, 9]
    view.embedding_b.hovered = 7
    assert view.embedding_a.hovered == 7 and view.hovered == 7


def test_sessions_with_different_samples_refused(demo, pair):
    sa = Session(pair[0], demo.inputs, demo.labels, demo.layers)
    sb = Session(pair[1], demo.inputs[:50], demo.labels[:50], demo.layers)
    with pytest.raises(ValueError, match="samples"):
        CompareView(sa, sb)
    with pytest.raises(TypeError, match="unexpected keyword"):
        CompareView(sa, sa, colour="x")
