"""Explorer.state / from_state / save_state, and the standalone HTML snapshot's stored state.

The round trip is judged on what the browser draws: every synced trait of every view (array
traits compared byte for byte through their base64) of the restored Explorer equals the original's.
"""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

import geowidgets as gw
from geowidgets.widgets._export import array_from_json, array_to_json, synced_state


@pytest.fixture(scope="module")
def explorer(demo):
    ex = gw.Explorer(
        demo.model, demo.inputs, demo.labels, layers=demo.layers, reference=demo.train_mask, k_max=20, method="pca"
    )
    ex.wait()
    ex.layer = demo.layers[1]
    ex.k = 7
    ex.temperature = 0.5
    ex.color_by = "prediction"
    ex.slice.anchors = [3, 10, 20]
    ex.deviation_map.sort_by = "label"
    ex.wait()
    ex.add_samples(demo.inputs[:6] + 3.0, None, name="shifted")
    ex.selection = [1, 2, 3]
    ex.wait()
    yield ex
    ex.close()


def _views(ex):
    return {"embedding": ex.embedding, "slice": ex.slice, "deviation": ex.deviation_map}


def test_array_json_round_trip_is_exact():
    rng = np.random.default_rng(0)
    for arr in (rng.normal(size=(5, 3)).astype(np.float32), np.arange(7, dtype=np.int32), np.zeros((0, 2), np.uint8)):
        back = array_from_json(array_to_json(arr))
        assert back.dtype == arr.dtype and back.shape == arr.shape
        assert back.tobytes() == arr.tobytes()


def test_state_is_json_and_holds_what_is_shown(explorer, demo):
    state = json.loads(json.dumps(explorer.state))
    assert state["layer"] == demo.layers[1] == explorer.layer
    assert (state["k"], state["temperature"], state["color_by"]) == (7, 0.5, "prediction")
    assert state["anchors"] == list(explorer.slice.anchors) == [3, 10, 20]
    assert state["selection"] == [1, 2, 3]
    (group,) = state["added_samples"]
    assert group["name"] == "shifted" and group["k"] == 7
    np.testing.assert_array_equal(array_from_json(group["inputs"]), np.asarray(demo.inputs[:6] + 3.0))


def test_restored_explorer_syncs_the_same_buffers(explorer, demo, tmp_path):
    path = explorer.save_state(tmp_path / "state.json")
    restored = gw.Explorer.from_state(path, demo.model, demo.inputs, demo.labels)
    try:
        assert restored.state == explorer.state
        for name, view in _views(explorer).items():
            a, b = synced_state(view), synced_state(_views(restored)[name])
            a.pop("revision"), b.pop("revision")
            differ = sorted(k for k in a if a[k] != b.get(k))
            assert not differ, f"{name}: restored state differs in {differ}"
            # The arrays really are there (not both empty): the embedding's positions are N x 2.
        positions = array_from_json(synced_state(restored.embedding)["positions"])
        np.testing.assert_array_equal(positions, explorer.embedding.positions)
        assert positions.shape == (explorer.session.n, 2)
    finally:
        restored.close()


def test_from_state_refuses_other_data(explorer, demo):
    with pytest.raises(ValueError, match="samples"):
        gw.Explorer.from_state(explorer.state, demo.model, demo.inputs[:100], demo.labels[:100])


def _stored(html_text: str) -> dict:
    m = re.search(r'<script type="application/json" id="gw-export-state">(.*?)</script>', html_text, re.S)
    assert m, "no stored state in the file"
    return json.loads(m.group(1))


def test_html_snapshot_stores_the_synced_state_and_fetches_nothing(explorer, tmp_path):
    path = explorer.save_html(tmp_path / "lesson.html", all_layers=True)
    text = path.read_text()
    spec = _stored(text)
    assert spec["layer"] == explorer.layer and spec["layers"] == explorer.session.layers
    for name, view in _views(explorer).items():
        stored = spec["views"][name]["state"]
        positions_or_z = {"embedding": "positions", "slice": "classes", "deviation": "z"}[name]
        raw = base64.b64decode(stored[positions_or_z]["b64"])
        assert raw == np.ascontiguousarray(getattr(view, positions_or_z)).tobytes()
    # Every other layer's stored differences are that layer's picture: the deviation map outlines
    # it, the embedding's title names it and its positions are that layer's layout ([N, 2], moved).
    base_positions = stored_positions = array_from_json(spec["views"]["embedding"]["state"]["positions"])
    for layer in explorer.session.layers:
        diff = spec["by_layer"][layer]
        if layer == spec["layer"]:
            assert diff == {"embedding": {}, "slice": {}, "deviation": {}}
            continue
        assert diff["deviation"]["layer"] == layer
        assert layer in diff["embedding"]["title"]
        stored_positions = array_from_json(diff["embedding"]["positions"])
        assert stored_positions.shape == base_positions.shape
        assert not np.array_equal(stored_positions, base_positions)
    # Nothing outside the file is referenced: no element of the page has a src or href (script
    # contents are data to the parser, so code that builds such elements does not count).
    found = []

    class Refs(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(f"<{tag} {k}={v}>" for k, v in attrs if k in ("src", "href") and v)

    Refs().feed(text)
    assert not found, found
    assert "BEGIN bokeh" in text or "Bokeh" in text


def test_each_view_saves_its_own_html(explorer, tmp_path):
    for name, view in _views(explorer).items():
        spec = _stored(view.save_html(tmp_path / f"{name}.html").read_text())
        (stored,) = spec["views"].values()
        assert stored["kind"] == name
        assert stored["state"] == synced_state(view)
        assert spec["links"] == []
    text = explorer.profile.save_html(tmp_path / "profile.html").read_text()
    spec = _stored(text)
    assert spec["views"] == {}
    assert spec["profile"]["markers"] == [m.id for m in explorer.profile.figure.markers]
    assert all(source_id in text for source_id in spec["profile"]["sources"])


def test_save_png_needs_a_front_end(explorer, tmp_path):
    with pytest.raises(RuntimeError, match="displayed"):
        explorer.embedding.save_png(tmp_path / "x.png")
