"""Tests for geowidgets.geometry._deviation: knn_deviation and mean_shift_deviation (docs/probes.md)."""

import numpy as np
import pytest
import torch

from geowidgets.geometry import (
    DeviationProfile,
    KNNDeviation,
    knn_deviation,
    knn_deviation_profile,
    knn_graph,
    mean_shift_deviation,
)
from geowidgets.geometry._deviation import DeviationProfileTables, DeviationTables


def _plane_data(rng, n, dim=64, basis=None):
    """A 2-d standard Gaussian on a random plane in R^dim; returns points and the basis [dim, 2]."""
    if basis is None:
        basis, _ = np.linalg.qr(rng.normal(size=(dim, 2)))
    return rng.normal(size=(n, 2)) @ basis.T, basis


def _off_plane_direction(rng, basis):
    v = rng.normal(size=basis.shape[0])
    v -= basis @ (basis.T @ v)
    return v / np.linalg.norm(v)


def _brute(queries, reference, k, statistic="mean"):
    """Reference implementation with dense numpy distances."""
    dq = np.sort(np.linalg.norm(queries[:, None] - reference[None], axis=2), axis=1)[:, :k]
    dr = np.linalg.norm(reference[:, None] - reference[None], axis=2)
    np.fill_diagonal(dr, np.inf)
    dr = np.sort(dr, axis=1)[:, :k]
    if statistic == "mean":
        return dq.mean(1), dr.mean(1)
    return dq[:, -1], dr[:, -1]


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("statistic", ["mean", "kth"])
def test_matches_brute_force_definition(statistic):
    rng = np.random.default_rng(0)
    reference, queries = rng.normal(size=(120, 5)), rng.normal(size=(30, 5)) * 1.5
    res = knn_deviation(queries, reference, k=7, statistic=statistic)
    d, b = _brute(queries, reference, 7, statistic)
    assert isinstance(res, KNNDeviation) and isinstance(res.distance, np.ndarray)
    np.testing.assert_allclose(res.distance, d, rtol=1e-10)
    np.testing.assert_allclose(res.baseline, b, rtol=1e-10)
    assert res.baseline_mean == pytest.approx(b.mean(), rel=1e-12)
    assert res.baseline_std == pytest.approx(b.std(ddof=1), rel=1e-12)
    np.testing.assert_allclose(res.z, (d - b.mean()) / b.std(ddof=1), rtol=1e-10)
    np.testing.assert_allclose(res.percentile, (b[None, :] <= d[:, None]).mean(1), atol=0)


def test_robust_uses_median_and_mad():
    rng = np.random.default_rng(1)
    reference, queries = rng.normal(size=(101, 3)), rng.normal(size=(10, 3))
    res = knn_deviation(queries, reference, k=5, robust=True)
    d, b = _brute(queries, reference, 5)
    med = np.median(b)
    mad = 1.4826 * np.median(np.abs(b - med))
    assert res.baseline_mean == pytest.approx(med, rel=1e-12)
    assert res.baseline_std == pytest.approx(mad, rel=1e-12)
    np.testing.assert_allclose(res.z, (d - med) / mad, rtol=1e-10)
    even = knn_deviation(queries, reference[:100], k=5, robust=True)  # even count: midpoint median
    assert even.baseline_mean == pytest.approx(np.median(_brute(queries, reference[:100], 5)[1]), rel=1e-12)


def test_normalize_and_cosine():
    rng = np.random.default_rng(2)
    reference, queries = rng.normal(size=(80, 4)) + 1, rng.normal(size=(9, 4))
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    res = knn_deviation(queries, reference, k=4, normalize=True)
    d, b = _brute(unit(queries), unit(reference), 4)
    np.testing.assert_allclose(res.distance, d, rtol=1e-10)
    cos = knn_deviation(queries, reference, k=4, metric="cosine")
    # for unit vectors, 1 - cos = |u - v|^2 / 2
    sim = unit(queries) @ unit(reference).T
    expected = np.sort(1 - sim, axis=1)[:, :4].mean(1)
    np.testing.assert_allclose(cos.distance, expected, atol=1e-12)


def test_tables_reslice_equals_fresh_computation_and_graph_reuse():
    rng = np.random.default_rng(3)
    reference, queries = rng.normal(size=(200, 6)), rng.normal(size=(40, 6)) * 2
    tables = DeviationTables.from_data(queries, reference, k_max=30)
    for k in (1, 5, 30):
        for statistic in ("mean", "kth"):
            a = tables.result(k, statistic)
            b = knn_deviation(queries, reference, k=k, statistic=statistic)
            np.testing.assert_allclose(a.z, b.z, rtol=1e-12)
            np.testing.assert_allclose(a.percentile, b.percentile)
    graph = knn_graph(reference, k_max=30)
    with_graph = knn_deviation(queries, reference, k=12, knn=graph)
    np.testing.assert_allclose(with_graph.z, knn_deviation(queries, reference, k=12).z, rtol=1e-12)
    with pytest.raises(ValueError, match="k=31"):
        tables.result(31)


@pytest.mark.parametrize("statistic", ["mean", "kth"])
def test_from_samples_scores_every_row_and_reference_rows_leave_one_out(statistic):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(150, 4))
    X[:5] += 6.0
    mask = np.ones(150, dtype=bool)
    mask[:20] = False
    tables = DeviationTables.from_samples(X, mask, k_max=12)
    assert tables.n_rows == 150 and tables.n_queries == 20 and tables.n_reference == 130
    for k in (1, 7, 12):
        res = tables.result(k, statistic)
        dq, dr = _brute(X[~mask], X[mask], k, statistic)  # dense float64 reference
        np.testing.assert_allclose(res.distance[~mask], dq, rtol=1e-10)
        np.testing.assert_allclose(res.distance[mask], dr, rtol=1e-10)
        np.testing.assert_allclose(res.baseline, dr, rtol=1e-10)
        expected_z = (res.distance - dr.mean()) / dr.std(ddof=1)
        np.testing.assert_allclose(res.z, expected_z, rtol=1e-9, atol=1e-12)
        both = np.concatenate([dq, dr])
        pct = (res.baseline[None, :] <= res.distance[:, None]).mean(1)  # empirical CDF by counting
        np.testing.assert_allclose(res.percentile, pct, rtol=1e-12)
        assert np.sort(res.distance).tolist() == pytest.approx(np.sort(both).tolist(), rel=1e-10)
        fast = tables.result(k, statistic, percentile=False)
        assert fast.percentile is None
        np.testing.assert_array_equal(fast.z, res.z)
    # every row trusted: no queries, every row gets its leave-one-out value
    every = DeviationTables.from_samples(torch.from_numpy(X), np.ones(150, dtype=bool), k_max=5).result(5)
    assert isinstance(every.z, torch.Tensor) and every.z.shape == (150,)
    np.testing.assert_allclose(every.distance.numpy(), _brute(X[:1], X, 5)[1], rtol=1e-10)
    with pytest.raises(ValueError, match="bool mask of shape"):
        DeviationTables.from_samples(X, mask[:-1], k_max=5)


def test_profile_auroc_of_chosen_positives_matches_sklearn_and_divergence_loop():
    metrics = pytest.importorskip("sklearn.metrics")
    from geowidgets.geometry import divergence_layers

    rng = np.random.default_rng(7)
    layers = {
        name: rng.normal(size=(120, 3)) + (4.0 * (np.arange(120) < 10))[:, None] * i for i, name in enumerate("abc")
    }
    mask = np.arange(120) >= 15  # rows 0-14 outside the reference; 0-9 drift away with depth
    cache = DeviationProfileTables(
        list(layers), {n: DeviationTables.from_samples(x, mask, k_max=8) for n, x in layers.items()}, 8
    )
    wrong = np.arange(120) < 10
    prof = cache.profile(6, threshold=2.0, positives=wrong, percentile=False)
    assert prof.percentile is None and prof.z.shape == (3, 120)
    for i, name in enumerate(layers):
        res = cache.tables[name].result(6)
        scores = np.concatenate([res.distance[wrong], res.baseline])
        truth = np.r_[np.ones(wrong.sum()), np.zeros(res.baseline.size)]
        assert prof.auroc[i] == pytest.approx(metrics.roc_auc_score(truth, scores), rel=1e-9)
    default = cache.profile(6)  # default positives: the rows outside the reference
    res = cache.tables["c"].result(6)
    truth = np.r_[np.ones((~mask).sum()), np.zeros(res.baseline.size)]
    expected = metrics.roc_auc_score(truth, np.concatenate([res.distance[~mask], res.baseline]))
    assert default.auroc[2] == pytest.approx(expected, rel=1e-9)
    assert np.isnan(cache.profile(6, positives=np.zeros(120, dtype=bool)).auroc).all()
    # divergence layer: first layer above the threshold, by a plain loop
    for threshold in (-1e9, 0.5, 2.0, 1e9):
        loop = [next((i for i in range(3) if prof.z[i, j] > threshold), -1) for j in range(120)]
        assert divergence_layers(prof.z, threshold).tolist() == loop
        assert prof.with_threshold(threshold).divergence_layer.tolist() == loop


def test_tensor_in_tensor_out():
    rng = np.random.default_rng(4)
    reference = torch.from_numpy(rng.normal(size=(100, 3)).astype(np.float32))
    res = knn_deviation(reference[:10] + 3, reference, k=5)
    assert isinstance(res.z, torch.Tensor) and res.z.dtype == torch.float32
    assert isinstance(res.baseline_mean, float)


# ------------------------------------------------ docs/probes.md#knn-deviation validation


def test_v1_in_distribution_queries_have_small_z():
    rng = np.random.default_rng(0)
    reference, basis = _plane_data(rng, 2000)
    queries, _ = _plane_data(rng, 500, basis=basis)
    z = knn_deviation(queries, reference, k=10).z
    assert abs(z.mean()) < 0.2
    assert (z > 2).mean() < 0.08


def test_v2_offset_queries_deviation_grows():
    rng = np.random.default_rng(1)
    reference, basis = _plane_data(rng, 2000)
    queries, _ = _plane_data(rng, 500, basis=basis)
    direction = _off_plane_direction(rng, basis)
    graph = knn_graph(reference, 10)  # the baseline table is shared by every offset
    scale = DeviationTables.from_data(queries, reference, k_max=10, knn=graph).result(10).baseline_mean
    means, z_at_4 = [], None
    for delta in (0.0, 0.5, 1.0, 2.0, 4.0):
        res = knn_deviation(queries + delta * scale * direction, reference, k=10, knn=graph)
        means.append(res.distance.mean())
        z_at_4 = res.z
    assert np.all(np.diff(means) > 0), means
    assert (z_at_4 > 2).mean() >= 0.95


def _stack(rng, n_layers=6, diverge_at=3, nr=2000, nq=500):
    references, queries = {}, {}
    for layer in range(n_layers):
        reference, basis = _plane_data(rng, nr)
        q, _ = _plane_data(rng, nq, basis=basis)
        if layer >= diverge_at:
            scale = knn_deviation(reference[:1], reference, k=10).baseline_mean
            q = q + 4 * scale * _off_plane_direction(rng, basis)
        references[f"layer{layer}"], queries[f"layer{layer}"] = reference, q
    return queries, references


def test_v3_divergence_layer_and_auroc_profile():
    rng = np.random.default_rng(2)
    queries, references = _stack(rng)
    prof = knn_deviation_profile(queries, references, k=10, threshold=2.0)
    assert isinstance(prof, DeviationProfile)
    assert prof.layers == [f"layer{i}" for i in range(6)]
    assert prof.z.shape == (6, 500) and prof.divergence_layer.dtype == np.int64
    assert (prof.divergence_layer == 3).mean() >= 0.85
    assert np.all(prof.auroc[:3] <= 0.6) and np.all(prof.auroc[3:] >= 0.95), prof.auroc


def test_profile_tables_rethreshold_and_reslice_without_new_distances(monkeypatch):
    rng = np.random.default_rng(5)
    queries, references = _stack(rng, n_layers=3, diverge_at=1, nr=300, nq=50)
    cache = DeviationProfileTables.from_data(queries, references, k_max=20)
    import geowidgets.geometry._deviation_tables as dev

    def forbidden(*args, **kwargs):
        raise AssertionError("no kNN search may run after the tables are built")

    monkeypatch.setattr(dev, "knn_search", forbidden)
    monkeypatch.setattr(dev, "resolve_knn", forbidden)
    prof = cache.profile(8, threshold=2.0)
    for i, layer in enumerate(cache.layers):
        np.testing.assert_allclose(prof.z[i], cache.tables[layer].result(8).z)
    high = prof.with_threshold(1e9)
    assert np.all(high.divergence_layer == -1) and high.threshold == 1e9
    low = prof.with_threshold(-1e9)
    assert np.all(low.divergence_layer == 0)
    np.testing.assert_array_equal(prof.with_threshold(2.0).divergence_layer, prof.divergence_layer)


def test_profile_divergence_is_first_layer_above_threshold():
    z = np.array([[0.0, 3.0, 0.0], [2.5, 0.0, 0.0], [3.0, 3.0, 1.0]])
    prof = DeviationProfile(["a", "b", "c"], z, z, z, None, None, np.zeros(3, dtype=np.int64), None, 2.0, 1)
    assert prof.with_threshold(2.0).divergence_layer.tolist() == [1, 0, -1]


def test_profile_accepts_lists_and_tensor_layers():
    refs = [torch.randn(100, 4, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    qs = [r[:5] + 10 * (i == 1) for i, r in enumerate(refs)]
    prof = knn_deviation_profile(qs, refs, k=3)
    assert prof.layers == [0, 1] and isinstance(prof.z, torch.Tensor)
    assert prof.divergence_layer.tolist() == [1] * 5


# ---------------------------------------------------------------- errors


def test_errors():
    rng = np.random.default_rng(7)
    reference, queries = rng.normal(size=(50, 3)), rng.normal(size=(5, 3))
    bad = queries.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        knn_deviation(bad, reference, k=3)
    with pytest.raises(ValueError, match="k=50 is too large"):
        knn_deviation(queries, reference, k=50)  # leave-one-out leaves 49
    with pytest.raises(ValueError, match="same number of features"):
        knn_deviation(queries[:, :2], reference, k=3)
    with pytest.raises(ValueError, match="statistic"):
        knn_deviation(queries, reference, k=3, statistic="max")
    with pytest.raises(ValueError, match="other data"):
        knn_deviation(queries, reference, k=3, knn=knn_graph(reference + 1, 5))
    with pytest.raises(ValueError, match="k_max"):
        knn_deviation(queries, reference, k=8, knn=knn_graph(reference, 5))
    with pytest.raises(ValueError, match="baseline"):
        knn_deviation(queries, np.zeros((10, 3)), k=2)
    with pytest.raises(KeyError, match="same layers"):
        knn_deviation_profile({"a": queries}, {"b": reference}, k=3)
    with pytest.raises(ValueError, match="layer 'a'.*NaN"):
        knn_deviation_profile({"a": bad}, {"a": reference}, k=3)
    with pytest.raises(ValueError, match="threshold"):
        knn_deviation_profile({"a": queries}, {"a": reference}, k=3, threshold=float("nan"))


# ---------------------------------------------------------------- docs/probes.md#mean-shift-deviation


def test_ms_v1_lattice_interior_zero_border_positive():
    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0), indexing="ij"), -1).reshape(-1, 2)
    res = mean_shift_deviation(grid, k=4, iterations=1)
    interior = (grid.min(1) > 0) & (grid.max(1) < 9)
    assert np.all(res.score[interior] == 0)
    assert np.all(res.score[~interior] > 0)
    np.testing.assert_array_equal(res.shifted[interior], grid[interior])


def test_ms_v2_isolated_points_hold_top_scores():
    rng = np.random.default_rng(0)
    bulk = rng.normal(size=(500, 10))
    # isolated points at distance 8 from the origin on distinct axes, so they are far from each other too
    isolated = 8 * np.eye(10) * np.where(rng.random(10) < 0.5, -1, 1)[:, None]
    X = np.r_[bulk, isolated]
    score = mean_shift_deviation(X, k=10, iterations=3).score
    assert set(np.argsort(-score)[:10]) == set(range(500, 510))


def test_ms_v3_fixed_graph_equals_manual_loop_and_blurring_uses_new_graph():
    rng = np.random.default_rng(1)
    X = torch.from_numpy(rng.normal(size=(300, 5)).astype(np.float32))
    graph = knn_graph(X, 15)
    res = mean_shift_deviation(X, k=6, iterations=3, fixed_graph=True, knn=graph)
    _, idx = graph.slice(6)
    manual = X.clone()
    for _ in range(3):
        manual = manual[idx].mean(1)
    torch.testing.assert_close(res.shifted, manual, atol=1e-6, rtol=0)
    torch.testing.assert_close(res.score, torch.linalg.vector_norm(X - manual, dim=1), atol=1e-6, rtol=0)
    # blurring mean shift searches the shifted points again, so it differs from the fixed graph
    blurred = mean_shift_deviation(X, k=6, iterations=3)
    Xn = X.double().numpy()
    NearestNeighbors = pytest.importorskip("sklearn.neighbors").NearestNeighbors

    current = Xn
    for _ in range(3):
        idx_np = NearestNeighbors(n_neighbors=7).fit(current).kneighbors(current)[1][:, 1:]
        current = current[idx_np].mean(1)
    np.testing.assert_allclose(blurred.shifted.numpy(), current, atol=1e-4)
    assert not torch.allclose(blurred.shifted, res.shifted, atol=1e-3)


def test_ms_errors():
    X = np.random.default_rng(2).normal(size=(20, 3))
    with pytest.raises(ValueError, match="iterations"):
        mean_shift_deviation(X, k=3, iterations=0)
    with pytest.raises(ValueError, match="k=20 is too large"):
        mean_shift_deviation(X, k=20)
    X[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        mean_shift_deviation(X, k=3)


def test_profile_marks_a_constant_layer_undefined_and_keeps_the_others():
    import geowidgets.geometry as geo

    rng = np.random.default_rng(0)
    R = {"flat": np.ones((60, 3)), "live": rng.normal(size=(60, 3))}
    Q = {"flat": np.ones((4, 3)), "live": rng.normal(size=(4, 3)) + 6}
    prof = geo.knn_deviation_profile(Q, R, k=5)
    assert list(prof.undefined) == ["flat"] and "z is undefined" in prof.undefined["flat"]
    assert np.isnan(prof.z[0]).all() and prof.baseline_std[0] == 0
    alone = geo.knn_deviation(Q["live"], R["live"], k=5)
    np.testing.assert_allclose(prof.z[1], alone.z, rtol=1e-6)
    assert prof.divergence_layer.tolist() == [1, 1, 1, 1]  # the undefined layer is never a divergence layer
    with pytest.raises(ValueError, match="standard deviation is 0"):
        geo.knn_deviation(Q["flat"], R["flat"], k=5)  # one layer alone still refuses
