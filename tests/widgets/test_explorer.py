"""Explorer: Python writes act like slider moves; views are linked; revisions count updates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geowidgets.widgets import DeviationMap, EmbeddingView, Explorer, LayerProfile, SliceView


@pytest.fixture()
def explorer(session):
    ex = Explorer.from_session(session, method="pca", k=5)
    assert ex.wait(120), ex.message
    yield ex
    ex.wait(120)  # no work left running into the next test


def test_imports_and_views(explorer):
    assert isinstance(explorer.embedding, EmbeddingView)
    assert isinstance(explorer.slice, SliceView)
    assert isinstance(explorer.deviation_map, DeviationMap)
    assert isinstance(explorer.profile, LayerProfile)
    assert explorer.status == "idle", explorer.message
    assert explorer.revision >= 1
    classes = {c for w in (explorer.layer_dropdown, explorer.layer_scrubber, explorer.k_slider) for c in w._dom_classes}
    assert {"gw-layer-dropdown", "gw-layer-scrubber", "gw-k-slider"} <= classes
    assert "gw-temperature-slider" in explorer.temperature_slider._dom_classes
    assert "gw-color-by" in explorer.color_dropdown._dom_classes
    assert "gw-explorer" in explorer._dom_classes


def test_k_and_temperature_moves(explorer, session):
    rev = explorer.revision
    positions = explorer.embedding.positions
    explorer.k = 8
    assert explorer.k_slider.value == 8
    assert explorer.embedding.k == 8 and explorer.deviation_map.k == 8 and explorer.profile.k == 8
    assert explorer.wait(60)
    assert explorer.revision == rev + 1
    assert explorer.embedding.positions is positions
    explorer.temperature = 0.5
    assert explorer.temperature_slider.value == pytest.approx(0.5)
    assert explorer.slice.temperature == 0.5 and explorer.embedding.temperature == 0.5
    explorer.k_slider.value = 3  # a slider move is the same as a Python write
    assert explorer.k == 3 and explorer.embedding.k == 3


def test_layer_change_from_python_dropdown_and_scrubber(explorer, session):
    explorer.layer = session.layers[0]
    assert explorer.layer_dropdown.value == session.layers[0] and explorer.layer_scrubber.value == 0
    assert explorer.wait(60)
    assert explorer.embedding.layer == explorer.slice.layer == explorer.deviation_map.layer == session.layers[0]
    explorer.layer_scrubber.value = 2
    assert explorer.layer == session.layers[2] and explorer.embedding.layer == session.layers[2]
    explorer.profile.layer = session.layers[1]  # a tap on the profile
    assert explorer.layer == session.layers[1]


def test_selection_and_hover_are_linked(explorer):
    explorer.embedding.selection = [4, 2, 9]
    assert explorer.selection == [4, 2, 9]
    assert explorer.slice.selection == [4, 2, 9]
    assert explorer.deviation_map.n_rows == 3
    explorer.deviation_map.selection = [5]
    assert explorer.embedding.selection == [5] and explorer.selection == [5]
    explorer.slice.hovered = 7
    assert explorer.embedding.hovered == 7 and explorer.deviation_map.hovered == 7


def test_bad_writes_raise_and_keep_state(explorer):
    layer = explorer.layer
    with pytest.raises(KeyError, match="unknown layer"):
        explorer.layer = "nope"
    with pytest.raises(ValueError, match="k must be an integer"):
        explorer.k = 10_000
    with pytest.raises(ValueError, match="temperature must be"):
        explorer.temperature = 0.0
    with pytest.raises(ValueError, match="color_by must be one of"):
        explorer.color_by = "rainbow"
    assert explorer.layer == layer


def test_errors_surface_in_the_explorer(explorer, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("synthetic failure")

    monkeypatch.setattr(explorer.session, "color_values", broken)
    explorer.color_by = "prediction"
    assert explorer.embedding.status == "error"
    assert explorer.status == "error" and "synthetic failure" in explorer.message
    assert "synthetic failure" in explorer.status_bar.message
    monkeypatch.undo()
    explorer.color_by = "label"
    assert explorer.status == "idle"


def test_explorer_from_model(demo):
    ex = Explorer(demo.model, demo.inputs, demo.labels, layers=demo.layers[:2], method="pca", k_max=15)
    assert ex.wait(120), ex.message
    assert ex.session.layers == demo.layers[:2] and ex.k_slider.max == 15
    assert np.frombuffer(ex.embedding.positions, "<f4").size == 2 * len(demo.labels)


def test_any_probe_as_a_colouring(explorer, session):
    from geowidgets import geometry as geo

    def lodd(s, layer, k, temperature):
        return geo.lodd(s.features(layer), k=max(k, 3), knn=s.knn_graph(layer)).score

    explorer.add_coloring("lodd", lodd)
    assert "lodd" in explorer.color_dropdown.options
    explorer.color_by = "lodd"
    assert explorer.wait(60), explorer.message
    layer = explorer.layer
    expected = np.asarray(geo.lodd(session.features(layer), k=max(explorer.k, 3)).score)
    np.testing.assert_allclose(np.frombuffer(explorer.embedding.values, "<f4"), expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="built-in"):
        explorer.add_coloring("label", lodd)
    explorer.add_coloring("bad", lambda s, layer, k, t: np.zeros(3))
    explorer.color_by = "bad"
    assert explorer.wait(60) is True
    assert explorer.embedding.status == "error" and "one value per sample" in explorer.embedding.message


def test_python_temperature_write_is_kept_exactly_while_slider_moves_still_apply(demo):
    from geowidgets.widgets import Explorer

    ex = Explorer(demo.model, demo.inputs, demo.labels, layers=demo.layers[:2], method="pca", k_max=10)
    ex.temperature = 0.5
    # The log slider shows the nearest step; its echo must not rewrite the exact value.
    ex.temperature_slider.value = 10 ** round(math.log10(0.5), 2)
    assert ex.temperature == 0.5
    ex.temperature = 50.0  # beyond the slider's range: kept, the slider shows its end
    ex.temperature_slider.value = 10**ex.temperature_slider.max
    assert ex.temperature == 50.0
    ex.temperature_slider.value = 2.0  # a real move
    assert ex.temperature == pytest.approx(2.0)
    assert ex.embedding.temperature == pytest.approx(2.0) and ex.slice.temperature == pytest.approx(2.0)
