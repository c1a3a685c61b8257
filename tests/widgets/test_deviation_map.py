"""DeviationMap: z rows, divergence layers, sorting, selection filter."""

from __future__ import annotations

import numpy as np
import pytest

from geowidgets.widgets import DeviationMap
from geowidgets.widgets._deviation_map import sort_rows


def _rows(view):
    n, L = view.n_rows, len(view.layer_names)
    z = np.frombuffer(view.z, "<f4").reshape(n, L)
    return np.frombuffer(view.row_index, "<i4"), z, np.frombuffer(view.divergence, "<i4")


def test_matrix_rows_and_divergence(session):
    view = DeviationMap(session, k=6, threshold=1.5)
    assert view.wait(30), view.message
    idx, z, div = _rows(view)
    assert sorted(idx.tolist()) == list(range(session.n))
    full = np.stack([session.deviation(layer, 6).z for layer in session.layers])
    np.testing.assert_allclose(z, full[:, idx].T, rtol=1e-6)
    above = full[:, idx] > 1.5
    expected = np.where(above.any(0), above.argmax(0), -1)
    np.testing.assert_array_equal(div, expected)
    # sorted by divergence layer: non-decreasing, never-diverging (-1) last
    key = np.where(div < 0, 10**9, div)
    assert (np.diff(key) >= 0).all()
    assert len(view.auroc) == len(session.layers)


def test_k_move_is_inline_once_tables_exist(session, monkeypatch):
    view = DeviationMap(session, k=5)
    assert view.wait(30)
    rev = view.revision
    view.k = 8
    assert session.n * len(session.layers) <= 20_000
    assert view.revision == rev + 1 and view.status == "idle"
    _, z, _ = _rows(view)
    idx = np.frombuffer(view.row_index, "<i4")
    np.testing.assert_allclose(z[:, 0], session.deviation(session.layers[0], 8).z[idx], rtol=1e-6)
    # a large session goes to the worker thread instead, and still lands
    monkeypatch.setattr("geowidgets.widgets._deviation_map.INLINE_CELLS", 0)
    view.k = 9
    assert view.status == "busy" or view.revision == rev + 2
    assert view.wait(30) and view.revision == rev + 2


def test_selection_filters_rows_and_sorts(session):
    view = DeviationMap(session, k=5)
    assert view.wait(30)
    view.selection = [7, 3, 11]
    idx, _, _ = _rows(view)
    assert sorted(idx.tolist()) == [3, 7, 11]
    view.sort_by = "index"
    assert np.frombuffer(view.row_index, "<i4").tolist() == [3, 7, 11]
    view.selection = []
    assert view.n_rows == session.n
    with pytest.raises(ValueError, match="sort_by must be one of"):
        view.sort_by = "random"


def test_sort_rows_reference_orders():
    z = np.array([[0.0, 5.0, 1.0, 3.0], [4.0, 0.0, 2.0, 0.0]])
    div = np.array([1, 0, -1, 0])
    rows = np.arange(4)
    assert sort_rows(z, div, rows, "divergence").tolist() == [1, 3, 0, 2]
    assert sort_rows(z, div, rows, "max_z").tolist() == [1, 0, 3, 2]
    assert sort_rows(z, div, rows, "label", labels=np.array([1, 0, 1, 0])).tolist() == [1, 3, 0, 2]
    with pytest.raises(ValueError, match="needs labels"):
        sort_rows(z, div, rows, "label")
