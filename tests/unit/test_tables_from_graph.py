"""Deviation tables read off a layer's one kNN graph equal tables from a direct search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geowidgets.geometry import DeviationTables, knn_graph


def _assert_same_tables(a: DeviationTables, b: DeviationTables) -> None:
    for name in ("query_idx", "query_dist", "reference_idx", "reference_dist"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        assert x.dtype == y.dtype, name
        assert torch.equal(torch.as_tensor(x), torch.as_tensor(y)), name
    np.testing.assert_array_equal(a.reference_mask, b.reference_mask)


def _short_rows(graph, mask: np.ndarray, k_max: int) -> int:
    """Rows of the graph with fewer than k_max reference neighbours (computed with a plain loop)."""
    idx = np.asarray(graph.idx)
    return sum(1 for row in idx if sum(bool(mask[j]) for j in row) < k_max)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_tables_from_graph_equal_direct_tables(metric):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6)).astype(np.float32) + 3.0
    mask = rng.random(400) > 0.15
    k_max = 12
    graph = knn_graph(X, k_max=k_max + 10, metric=metric)
    tables = DeviationTables.from_graph(X, mask, graph, k_max, metric=metric)
    direct = DeviationTables.from_samples(X, mask, k_max, metric=metric)
    _assert_same_tables(tables, direct)
    for k in (1, 5, k_max):
        np.testing.assert_array_equal(tables.result(k).z, direct.result(k).z)


def test_fallback_rows_are_searched_exactly():
    rng = np.random.default_rng(1)
    # Non-reference rows cluster together, so rows in that cluster have few reference neighbours.
    X = np.concatenate([rng.normal(size=(300, 4)), rng.normal(size=(80, 4)) * 0.2 + 4.0]).astype(np.float32)
    mask = np.ones(380, dtype=bool)
    mask[300:370] = False  # 10 reference rows left inside the dense cluster
    k_max = 8
    graph = knn_graph(X, k_max=k_max)  # no extra neighbours: many rows must fall back
    assert _short_rows(graph, mask, k_max) > 20
    tables = DeviationTables.from_graph(X, mask, graph, k_max)
    _assert_same_tables(tables, DeviationTables.from_samples(X, mask, k_max))


def test_ties_and_duplicates_follow_the_direct_search():
    rng = np.random.default_rng(2)
    X = rng.integers(0, 3, size=(250, 3)).astype(np.float64)  # many exact duplicates and ties
    mask = rng.random(250) > 0.2
    k_max = 10
    for extra in (0, 5, 40):
        graph = knn_graph(X, k_max=k_max + extra)
        tables = DeviationTables.from_graph(X, mask, graph, k_max)
        _assert_same_tables(tables, DeviationTables.from_samples(X, mask, k_max))


def test_tensor_input_all_reference_and_errors():
    X = torch.randn(120, 5)
    mask = np.ones(120, dtype=bool)
    graph = knn_graph(X, k_max=9)
    tables = DeviationTables.from_graph(X, mask, graph, 9)
    assert tables.n_queries == 0
    _assert_same_tables(tables, DeviationTables.from_samples(X, mask, 9))
    assert isinstance(tables.result(3).z, torch.Tensor)
    with pytest.raises(ValueError, match="other data"):
        DeviationTables.from_graph(X + 1, mask, graph, 9)
    with pytest.raises(ValueError, match="bool mask"):
        DeviationTables.from_graph(X, mask.astype(int), graph, 9)
    with pytest.raises(ValueError, match="metric"):
        DeviationTables.from_graph(X, mask, graph, 9, metric="cosine")
