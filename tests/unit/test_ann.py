"""Approximate kNN graphs: exact distances for what they return, recall measured against exact search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

from geowidgets.geometry import _ann
from geowidgets.geometry._ann import ApproxKNNGraph, approximate_knn_graph, knn_recall
from geowidgets.geometry._knn import KNNGraph, _fingerprint, faiss_available, knn_graph, resolve_knn

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss not installed")


def clustered(n: int, d: int, seed: int = 0, offset: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(10, d))
    return (centres[rng.integers(0, 10, size=n)] + rng.normal(size=(n, d)) + offset).astype(np.float32)


def sklearn_neighbours(X: np.ndarray, k: int, metric: str = "euclidean") -> np.ndarray:
    """Exact neighbour indices (self excluded) from scikit-learn's brute force in float64."""
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(X.astype(np.float64))
    return nn.kneighbors(return_distance=False)


def set_recall(idx: np.ndarray, ref: np.ndarray, k: int) -> float:
    """Mean |found ∩ exact| / k over rows (no distance ties in continuous random data)."""
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(idx, ref)]))


def check_exact_distances(X: np.ndarray, g: KNNGraph, metric: str = "euclidean") -> None:
    """Returned distances are the float64 distances of the returned pairs, ascending, self excluded."""
    X64 = X.astype(np.float64)
    rows = np.arange(X.shape[0])[:, None]
    assert not (g.idx == rows).any()
    if metric == "euclidean":
        ref = np.linalg.norm(X64[g.idx] - X64[:, None, :], axis=2)
    else:
        U = X64 / np.linalg.norm(X64, axis=1, keepdims=True)
        ref = 1.0 - np.einsum("nd,nkd->nk", U, U[g.idx])
    np.testing.assert_allclose(g.dist, ref, rtol=1e-6, atol=1e-6)
    assert (np.diff(g.dist, axis=1) >= 0).all()


@needs_faiss
@pytest.mark.parametrize("engine", ["hnsw", "ivf"])
def test_faiss_engines_distances_exact_and_recall_matches_sklearn(engine):
    X = clustered(1500, 24)
    k = 15
    g = approximate_knn_graph(X, k_max=k, engine=engine, recall_sample=300)
    assert isinstance(g, ApproxKNNGraph) and g.engine == engine and g.dist.shape == (1500, k)
    check_exact_distances(X, g)
    ref = sklearn_neighbours(X, 10)
    true_recall = set_recall(g.idx, ref, 10)
    # The recall measured on every row equals the one counted independently from scikit-learn's answer.
    assert knn_recall(g, X, sample=X.shape[0]).recall == pytest.approx(true_recall, abs=1e-12)
    # The effort was raised until the sampled recall reached the target.
    assert g.recall >= _ann.TARGET_RECALL and g.recall_sample == 300
    assert true_recall >= 0.97


def test_nndescent_engine_distances_exact():
    X = clustered(800, 12, seed=1)
    g = approximate_knn_graph(X, k_max=10, engine="nndescent", recall_sample=200)
    assert g.engine == "nndescent"
    check_exact_distances(X, g)
    assert knn_recall(g, X, sample=800).recall == pytest.approx(set_recall(g.idx, sklearn_neighbours(X, 10), 10))


@needs_faiss
def test_large_common_offset_is_centred_away():
    # A float32 offset of 1e4 on unit-scale clusters: ‖x‖² ≈ 2.4e9, far beyond float32's 7 digits.
    X = clustered(1200, 24, seed=2, offset=1e4)
    g = approximate_knn_graph(X, k_max=10, engine="hnsw", recall_sample=200)
    check_exact_distances(X, g)
    assert set_recall(g.idx, sklearn_neighbours(X, 10), 10) >= 0.97


@needs_faiss
def test_cosine_matches_sklearn():
    X = clustered(1000, 16, seed=3)
    g = approximate_knn_graph(X, k_max=10, metric="cosine", engine="hnsw", recall_sample=200)
    check_exact_distances(X, g, metric="cosine")
    ref = sklearn_neighbours(X, 10, metric="cosine")
    assert knn_recall(g, X, sample=1000).recall == pytest.approx(set_recall(g.idx, ref, 10), abs=1e-12)


def test_knn_recall_of_a_corrupted_graph_matches_set_recall():
    X = clustered(600, 8, seed=4)
    exact = knn_graph(X, k_max=10)
    rng = np.random.default_rng(0)
    idx = exact.idx.copy()
    # Replace one of the first 10 neighbours of 40% of the rows by a random far point.
    hit = rng.random(600) < 0.4
    far = np.argsort(pairwise_distances(X.astype(np.float64)), axis=1)[:, -1]
    idx[hit, rng.integers(0, 10, size=hit.sum())] = far[hit]
    d = np.linalg.norm(X[idx].astype(np.float64) - X[:, None, :].astype(np.float64), axis=2)
    order = np.argsort(d, axis=1, kind="stable")
    d, idx = np.take_along_axis(d, order, 1), np.take_along_axis(idx, order, 1)
    g = KNNGraph(d.astype(np.float32), idx, "euclidean", 10, _fingerprint(torch.from_numpy(X)))
    expected = set_recall(idx, sklearn_neighbours(X, 10), 10)
    assert expected == pytest.approx(1 - 0.1 * hit.mean(), abs=1e-12)
    r = knn_recall(g, X, sample=600)
    assert r.recall == pytest.approx(expected, abs=1e-12) and r.sample == 600 and r.k == 10
    assert r.min_row == pytest.approx(0.9)
    # A sample estimates the same quantity: within 4 standard errors of the full value.
    part = knn_recall(g, X, sample=200, seed=1)
    assert abs(part.recall - expected) <= 4 * part.stderr + 1e-12


def test_auto_is_exact_below_threshold():
    X = clustered(500, 8, seed=5)
    g = approximate_knn_graph(X, k_max=12)
    ref = knn_graph(X, k_max=12)
    assert g.engine == "exact" and g.recall == 1.0
    np.testing.assert_array_equal(g.idx, ref.idx)
    np.testing.assert_array_equal(g.dist, ref.dist)


@needs_faiss
def test_auto_falls_back_to_exact_when_recall_falls_short(monkeypatch):
    # Isotropic 64-d noise with a tiny search effort cannot reach recall 1.0.
    X = np.random.default_rng(6).normal(size=(3000, 64)).astype(np.float32)
    monkeypatch.setattr(_ann, "_HNSW_EF_LADDER", (16,))
    g = approximate_knn_graph(X, k_max=10, min_points=0, target_recall=1.0, recall_sample=300)
    params = dict(g.params)
    assert g.engine == "exact" and params["hnsw_recall"] < 1.0
    np.testing.assert_array_equal(g.idx, knn_graph(X, k_max=10).idx)
    # The same index without "auto" keeps its approximate answer, and says how good it is.
    h = approximate_knn_graph(X, k_max=10, engine="hnsw", target_recall=1.0, recall_sample=300)
    assert h.engine == "hnsw" and h.recall < 1.0
    assert h.recall == pytest.approx(knn_recall(h, X, sample=300, seed=1).recall)


@needs_faiss
@pytest.mark.parametrize("slower", ["index", "exact"])
def test_auto_goes_exact_when_the_index_costs_more_per_row_than_exact_search(monkeypatch, slower):
    """At the effort that reaches the recall, "auto" times the sampled rows through the index and
    through exact search: a slower index gives the exact graph (the times noted), a faster one keeps it."""
    import time as time_mod

    X = clustered(3000, 16, seed=8)  # easy: the smallest effort reaches the recall
    pause = 0.3  # far more than either search of 200 rows takes here
    if slower == "index":
        search = _ann._Index.search
        monkeypatch.setattr(
            _ann._Index, "search", lambda self, rows, e: (time_mod.sleep(pause), search(self, rows, e))[1]
        )
    else:
        reference = _ann._exact_reference
        monkeypatch.setattr(_ann, "_exact_reference", lambda *a: (time_mod.sleep(pause), reference(*a))[1])
    g = approximate_knn_graph(X, k_max=10, min_points=0, recall_sample=200)
    params = dict(g.params)
    if slower == "index":
        assert g.engine == "exact" and params["hnsw_recall"] >= 0.99
        assert params["sample_seconds_index"] > params["sample_seconds_exact"]
        np.testing.assert_array_equal(g.idx, knn_graph(X, k_max=10).idx)
    else:
        assert g.engine == "hnsw" and g.recall >= 0.99


@needs_faiss
def test_graph_feeds_probes_like_an_exact_graph():
    X = clustered(700, 10, seed=7)
    g = approximate_knn_graph(torch.from_numpy(X), k_max=20, engine="hnsw", recall_sample=100)
    assert isinstance(g.dist, torch.Tensor) and g.dist.dtype == torch.float32
    d, i = resolve_knn(torch.from_numpy(X), 5, g)
    assert torch.equal(i, g.idx[:, :5])


def test_errors():
    X = clustered(50, 4)
    with pytest.raises(ValueError, match="engine"):
        approximate_knn_graph(X, engine="annoy")
    with pytest.raises(ValueError, match="k=50"):
        approximate_knn_graph(X, k_max=50)
    with pytest.raises(ValueError, match="other data"):
        knn_recall(knn_graph(X, k_max=5), X[:40])
    with pytest.raises(ValueError, match="k_max=5"):
        knn_recall(knn_graph(X, k_max=5), X, k=10)
    Z = X.copy()
    Z[3] = 0
    with pytest.raises(ValueError, match="all-zero"):
        approximate_knn_graph(Z, k_max=5, metric="cosine", engine="nndescent")


def test_knn_graph_default_stays_exact_below_threshold():
    X = clustered(400, 6, seed=8)
    g = knn_graph(X, k_max=8)
    assert type(g) is KNNGraph and g.engine == "exact" and g.recall == 1.0 and g.recall_sample == 0
    ref = sklearn_neighbours(X, 8)
    np.testing.assert_array_equal(g.idx, ref)


@needs_faiss
def test_knn_graph_exact_switch_and_threshold(monkeypatch):
    X = clustered(900, 12, seed=9)
    approx = knn_graph(X, k_max=10, exact=False)
    assert isinstance(approx, ApproxKNNGraph) and approx.engine == "hnsw" and approx.recall_sample > 0
    check_exact_distances(X, approx)
    assert "engine='hnsw'" in repr(approx)
    # Above the threshold the default goes approximate (when the index is the cheaper one: fixed here, since
    # which is faster on 900 rows depends on the machine's load); exact=True keeps exact search there.
    monkeypatch.setattr(_ann, "APPROX_MIN_POINTS", 500)
    monkeypatch.setattr(_ann, "_index_costs_more", lambda t_index, t_exact: False)
    assert knn_graph(X, k_max=10).engine == "hnsw"
    exact = knn_graph(X, k_max=10, exact=True)
    assert exact.engine == "exact"
    np.testing.assert_array_equal(exact.idx, sklearn_neighbours(X, 10))
    assert knn_graph(X, k_max=10, engine="ivf").engine == "ivf"
    with pytest.raises(ValueError, match="approximate"):
        knn_graph(X, k_max=10, exact=True, engine="hnsw")
    with pytest.raises(ValueError, match="engine must be"):
        knn_graph(X, k_max=10, engine="annoy")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_searched_rows_are_centred_in_float64_blocks(monkeypatch, metric):
    """The index's rows are centred block by block (no full float64 copy of X): the same float32
    rows as centring a float64 copy at once, for many tiny blocks and a large common offset."""
    import geowidgets.geometry._ann as ann

    monkeypatch.setattr(ann, "_BLOCK_BYTES", 8 * 6 * 5)  # 5 rows per block
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(97, 6)) + 500.0).astype(np.float32)
    rows, inv = ann._search_rows(torch.from_numpy(X), metric)
    X64 = X.astype(np.float64)
    if metric == "cosine":
        ref_inv = 1.0 / np.linalg.norm(X64, axis=1)
        np.testing.assert_allclose(inv.numpy(), ref_inv, rtol=1e-15)
        X64 = X64 * ref_inv[:, None]
    else:
        assert inv is None
    ref = (X64 - X64.mean(0)).astype(np.float32)
    assert rows.dtype == np.float32 and rows.flags.c_contiguous
    np.testing.assert_allclose(rows, ref, rtol=0, atol=2e-7 * np.abs(ref).max())


@needs_faiss
def test_hnsw_queries_read_the_index_own_copy_of_the_rows():
    """The HNSW index keeps one copy of the searched rows: its queries read a view of the index's
    storage (equal to the rows it was given), so the caller's array can be dropped."""
    rows, _ = _ann._search_rows(torch.from_numpy(clustered(400, 8, seed=9)), "euclidean")
    index = _ann._Index("hnsw", rows.copy(), 15, 0, False)
    assert not index.Xs.flags.owndata  # a view, not a second copy
    np.testing.assert_array_equal(index.Xs, rows)
    found = index.search(np.arange(400), 64)
    assert (found[:, 0] == np.arange(400)).mean() > 0.99  # each row finds itself first
