"""DeviationTables.from_graph reads the graph by row blocks and searches short rows without a copy of
the reference rows when few fall short: the tables still equal a direct search, on every path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geowidgets.geometry import DeviationTables, knn_graph
from geowidgets.geometry import _deviation_tables as dt


def _same(a: DeviationTables, b: DeviationTables) -> None:
    for name in ("query_idx", "query_dist", "reference_idx", "reference_dist"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert torch.equal(torch.as_tensor(x), torch.as_tensor(y)), name


def _data(n: int, out: float, seed: int = 0, d: int = 5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:20] = X[20:40]  # duplicates: ties at distance 0
    return X, rng.random(n) > out


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("table_bytes", [8 * 3 * 16, dt._TABLE_BYTES])  # 3-row blocks, or the default
@pytest.mark.parametrize("out, extra, d", [(0.1, 2, 64), (0.5, 1, 5)])  # few short rows (search all X) or many
def test_blocked_tables_equal_direct_tables(monkeypatch, metric, table_bytes, out, extra, d):
    monkeypatch.setattr(dt, "_TABLE_BYTES", table_bytes)
    monkeypatch.setattr(dt, "_SEARCH_BYTES", 4 * 301 * 3)  # 3 queries per search block
    X, mask = _data(301, out, d=d)
    k_max = 8
    graph = knn_graph(X, k_max=k_max + extra, metric=metric)
    idx = np.asarray(graph.idx)
    assert (mask[idx].sum(1) < k_max).any()  # some rows fall short of the graph
    tables = DeviationTables.from_graph(X, mask, graph, k_max, metric=metric)
    _same(tables, DeviationTables.from_samples(X, mask, k_max, metric=metric))


def test_short_rows_take_the_copy_of_the_reference_only_when_many(monkeypatch):
    """Few short rows: no [Nr, D] copy of the reference rows; many (or narrow rows): the copy is searched."""
    X, mask = _data(300, 0.1, d=64)
    real_knn = dt.knn_search
    widths = []

    def knn(Q, k, Y=None, **kw):
        widths.append(int(Y.shape[0]))
        return real_knn(Q, k, Y=Y, **kw)

    monkeypatch.setattr(dt, "knn_search", knn)
    DeviationTables.from_graph(X, mask, knn_graph(X, k_max=10), 8)
    assert widths and set(widths) == {300}  # searched among all rows of X
    widths.clear()
    X2, mask2 = _data(300, 0.6)
    DeviationTables.from_graph(X2, mask2, knn_graph(X2, k_max=9), 8)
    assert widths and int(mask2.sum()) in widths


def test_nan_in_x_is_counted():
    X, mask = _data(50, 0.1)
    graph = knn_graph(X, k_max=10)
    X = X.copy()
    X[3, 1], X[40, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"X contains 2 NaN/inf value\(s\)"):
        DeviationTables.from_graph(X, mask, graph, 8)
