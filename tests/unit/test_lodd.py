"""Tests for geowidgets.geometry._boundary_points: LoDD (docs/probes.md#lodd)."""

import warnings

import numpy as np
import pytest
import torch

from geowidgets.geometry import LoDDScores, auroc, knn_graph, lodd


def _official_loop(X, k, w=0.5):
    """Port of the official LoDD.m loop (population covariance of the unit directions)."""
    NearestNeighbors = pytest.importorskip("sklearn.neighbors").NearestNeighbors
    n, d = X.shape
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    scores = np.zeros(n)
    for i in range(n):
        u = (X[idx[i, 1:]] - X[i]) / dist[i, 1:, None]
        cov = np.cov(u.T) * (k - 1) / k
        tr = np.trace(cov)
        scores[i] = w * tr**2 + d * (1 - w) / (d - 1) * (tr**2 - np.trace(cov @ cov))
    return scores


def _far_points(rng, n, dim):
    return 1000 + rng.uniform(0, 1, size=(n, dim)) * 10


@pytest.mark.parametrize("k", [3, 4, 7, 12])
def test_v1_regular_polygon_gives_one_and_one_sided_gives_zero(k):
    rng = np.random.default_rng(0)
    angles = 2 * np.pi * np.arange(k) / k
    polygon = np.c_[np.cos(angles), np.sin(angles)]
    X = np.r_[[[0.0, 0.0]], polygon, _far_points(rng, 40, 2)]
    assert lodd(X, k=k).score[0] == pytest.approx(1.0, abs=1e-12)
    ray = np.c_[np.arange(1.0, k + 1), np.zeros(k)]
    Y = np.r_[[[0.0, 0.0]], ray, _far_points(rng, 40, 2)]
    assert lodd(Y, k=k).score[0] == pytest.approx(0.0, abs=1e-12)


def test_v2_equals_official_loop():
    rng = np.random.default_rng(1)
    for dim, k in ((2, 8), (5, 20), (30, 10)):
        X = rng.normal(size=(300, dim))
        np.testing.assert_allclose(lodd(X, k=k).score, _official_loop(X, k), rtol=1e-10, atol=1e-12)


def _disc(rng, n):
    r = np.sqrt(rng.uniform(size=n))
    t = rng.uniform(0, 2 * np.pi, size=n)
    return np.c_[r * np.cos(t), r * np.sin(t)], r


def test_v3_unit_disc_flags_the_rim_also_in_high_dimension():
    rng = np.random.default_rng(0)
    X, r = _disc(rng, 2000)
    res = lodd(X, k=20, ratio=0.1)
    assert res.boundary.sum() == 200
    assert (r[res.boundary] > 0.9).mean() >= 0.7
    assert auroc(res.score[r < 0.6], res.score[r > 0.95]) > 0.9
    basis, _ = np.linalg.qr(rng.normal(size=(50, 2)))
    embedded = lodd(X @ basis.T + 3.0, k=20, ratio=0.1)
    assert (r[embedded.boundary] > 0.9).mean() >= 0.7
    assert not np.allclose(embedded.score, res.score)  # d enters the formula


def test_boundary_is_lowest_ceil_fraction_ties_to_lower_index_and_with_ratio():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(101, 3))
    res = lodd(X, k=10, ratio=0.1)
    assert isinstance(res, LoDDScores)
    order = np.argsort(res.score, kind="stable")
    assert res.boundary.sum() == 11  # ceil(10.1)
    assert set(np.flatnonzero(res.boundary)) == set(order[:11])
    assert res.threshold == pytest.approx(res.score[order[10]])
    wider = res.with_ratio(0.5)
    assert wider.boundary.sum() == 51 and wider.ratio == 0.5
    np.testing.assert_array_equal(wider.score, res.score)
    ties = res.with_ratio(0.3)
    assert ties.boundary.sum() == 31  # 0.3 * 101 = 30.3 -> 31; 0.1 * 30 must give 3, not 4
    assert lodd(X[:30], k=5, ratio=0.1).boundary.sum() == 3


def test_graph_reuse_device_kind_and_chunking(monkeypatch):
    rng = np.random.default_rng(3)
    X = torch.from_numpy(rng.normal(size=(200, 4)))
    graph = knn_graph(X, k_max=25)
    a = lodd(X, k=20, knn=graph)
    b = lodd(X, k=20)
    assert isinstance(a.score, torch.Tensor) and a.boundary.dtype == torch.bool
    torch.testing.assert_close(a.score, b.score)
    import geowidgets.geometry._boundary_points as bp

    monkeypatch.setattr(bp, "_CHUNK_ELEMENTS", 100)  # forces many small chunks
    torch.testing.assert_close(lodd(X, k=20).score, b.score)


def test_duplicates_warn_and_errors():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, 3))
    X[1] = X[0]
    with pytest.warns(UserWarning, match="distance 0"):
        res = lodd(X, k=5)
    assert np.all(np.isfinite(res.score))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lodd(rng.normal(size=(50, 3)), k=5)
    with pytest.raises(ValueError, match="at least 2 features"):
        lodd(rng.normal(size=(50, 1)), k=5)
    with pytest.raises(ValueError, match="k=50 is too large"):
        lodd(rng.normal(size=(50, 3)), k=50)
    with pytest.raises(ValueError, match="ratio"):
        lodd(rng.normal(size=(50, 3)), k=5, ratio=0)
    with pytest.raises(ValueError, match="ratio"):
        lodd(rng.normal(size=(50, 3)), k=5, ratio=1.5)
    bad = rng.normal(size=(50, 3))
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lodd(bad, k=5)
    with pytest.raises(ValueError, match="other data"):
        lodd(rng.normal(size=(50, 3)), k=5, knn=knn_graph(rng.normal(size=(50, 3)), 5))
