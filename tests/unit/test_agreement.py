"""Tests for geowidgets.geometry._agreement: kNN label agreement / Thornton@k (docs/probes.md#knn-label-agreement)."""

import numpy as np
import pytest
import torch

from geowidgets.geometry import LabelAgreement, knn_graph, knn_label_agreement


def _brute(X, y, k, metric="euclidean"):
    NearestNeighbors = pytest.importorskip("sklearn.neighbors").NearestNeighbors
    idx = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric=metric).fit(X).kneighbors(X)[1][:, 1:]
    return np.array([np.mean(y[idx[i]] == y[i]) for i in range(len(X))])


def test_v1_separated_clusters_agree_exactly():
    rng = np.random.default_rng(0)
    centres = 100 * rng.normal(size=(4, 6))
    sizes = [30, 40, 50, 60]
    X = np.concatenate([c + 0.1 * rng.normal(size=(s, 6)) for c, s in zip(centres, sizes)])
    y = np.repeat([7, -2, 3, 11], sizes)
    for k in (1, 10, 29):
        res = knn_label_agreement(X, y, k=k)
        assert res.mean == 1.0
        assert np.all(res.per_point == 1.0) and np.all(res.per_class == 1.0)
    assert res.classes.tolist() == [-2, 3, 7, 11]


def test_v2_random_labels_give_one_over_c():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5000, 8))
    y = np.repeat(np.arange(5), 1000)
    rng.shuffle(y)
    assert knn_label_agreement(X, y, k=10).mean == pytest.approx(0.2, abs=0.02)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_v3_matches_brute_force_and_per_class(metric):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 5)) + np.repeat(rng.normal(size=(3, 5)), [100, 150, 150], axis=0)
    y = np.repeat([0, 1, 2], [100, 150, 150])
    res = knn_label_agreement(X, y, k=9, metric=metric)
    expected = _brute(X, y, 9, metric)
    assert isinstance(res, LabelAgreement) and res.effective_neighbors is None
    np.testing.assert_allclose(res.per_point, expected, atol=1e-12)
    np.testing.assert_allclose(res.per_class, [expected[y == c].mean() for c in range(3)], atol=1e-12)
    assert res.mean == pytest.approx(expected.mean(), abs=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_v3_temperature_limits(metric):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = rng.integers(0, 3, 300)
    graph = knn_graph(X, 15, metric=metric)
    hard = knn_label_agreement(X, y, k=10, metric=metric, knn=graph)
    warm = knn_label_agreement(X, y, k=10, temperature=1e6, metric=metric, knn=graph)
    np.testing.assert_allclose(warm.per_point, hard.per_point, atol=1e-5)
    np.testing.assert_allclose(warm.effective_neighbors, 10, rtol=1e-5)
    cold = knn_label_agreement(X, y, k=10, temperature=1e-4, metric=metric, knn=graph)
    one = knn_label_agreement(X, y, k=1, metric=metric, knn=graph)
    # tau -> 0 is the 1-NN vote wherever the first two similarities are not tied within ~20 tau
    d = graph.dist
    gap = (d[:, 1] - d[:, 0]) if metric == "cosine" else (d[:, 1] ** 2 - d[:, 0] ** 2) / 2
    clear = gap > 20 * 1e-4
    assert clear.mean() > 0.9
    np.testing.assert_allclose(cold.per_point[clear], one.per_point[clear], atol=1e-6)
    np.testing.assert_allclose(cold.effective_neighbors[clear], 1, atol=1e-6)
    mid = knn_label_agreement(X, y, k=10, temperature=0.5, metric=metric, knn=graph)
    assert np.all((mid.effective_neighbors > 1) & (mid.effective_neighbors < 10))


def test_soft_weights_formula_and_cosine_equivalence_on_unit_rows():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 6))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.integers(0, 2, 200)
    tau = 0.2
    res = knn_label_agreement(X, y, k=7, temperature=tau, metric="cosine")
    sim = X @ X.T
    np.fill_diagonal(sim, -np.inf)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :7]
    s = np.take_along_axis(sim, idx, 1) / tau
    w = np.exp(s - s.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    np.testing.assert_allclose(res.per_point, (w * (y[idx] == y[:, None])).sum(1), atol=1e-10)
    np.testing.assert_allclose(res.effective_neighbors, np.exp(-(w * np.log(w)).sum(1)), rtol=1e-8)
    # on unit rows the euclidean soft vote gives the same weights (−d²/2 = cos − 1)
    euclid = knn_label_agreement(X, y, k=7, temperature=tau)
    np.testing.assert_allclose(euclid.per_point, res.per_point, atol=1e-10)


def test_tensor_kind():
    X = torch.randn(100, 3, generator=torch.Generator().manual_seed(0))
    y = torch.arange(100) % 2
    res = knn_label_agreement(X, y, k=5, temperature=1.0)
    assert isinstance(res.per_point, torch.Tensor) and res.per_point.dtype == torch.float32
    assert isinstance(res.effective_neighbors, torch.Tensor) and isinstance(res.mean, float)


def test_errors():
    X = np.random.default_rng(5).normal(size=(30, 3))
    y = np.arange(30) % 3
    with pytest.raises(ValueError, match="length 29"):
        knn_label_agreement(X, y[:29], k=3)
    with pytest.raises(ValueError, match="k=30 is too large"):
        knn_label_agreement(X, y, k=30)
    for bad_t in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            knn_label_agreement(X, y, k=3, temperature=bad_t)
    with pytest.raises(ValueError, match="metric"):
        knn_label_agreement(X, y, k=3, metric="manhattan")
    with pytest.raises(ValueError, match="metric 'euclidean'"):
        knn_label_agreement(X, y, k=3, metric="cosine", knn=knn_graph(X, 5))
    with pytest.raises(ValueError, match="other data"):
        knn_label_agreement(X, y, k=3, knn=knn_graph(X + 1, 5))
    bad = X.copy()
    bad[4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        knn_label_agreement(bad, y, k=3)
