"""Embeddings: PCA against scikit-learn, UMAP on our kNN graph (reproducible, good), alignment."""

import numpy as np
import pytest
import torch

from geowidgets import geometry as geo


def _clusters(n=600, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, d)) * 6
    y = np.repeat(np.arange(4), n // 4)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_pca_matches_sklearn_up_to_sign():
    sklearn_decomposition = pytest.importorskip("sklearn.decomposition")
    X, _ = _clusters()
    Y = geo.embed(X, method="pca")
    ref = sklearn_decomposition.PCA(2).fit_transform(X.astype(np.float64))
    for j in range(2):
        s = np.sign(Y[:, j] @ ref[:, j])
        assert np.allclose(Y[:, j], s * ref[:, j], atol=1e-3)
    Yt = geo.embed(torch.from_numpy(X), method="pca")
    assert isinstance(Yt, torch.Tensor) and torch.allclose(Yt, torch.from_numpy(Y))


def test_align_layout_recovers_rotation_reflection_scale_shift():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(200, 2))
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    flip = np.diag([1.0, -1.0])
    moved = 2.5 * ref @ rot @ flip + np.array([4.0, -3.0])
    assert np.allclose(geo.align_layout(moved, ref), ref, atol=1e-10)
    assert np.array_equal(geo.align_layout(ref, ref), ref) or np.allclose(geo.align_layout(ref, ref), ref, atol=1e-12)
    # without reflection a mirror image cannot be undone
    assert not np.allclose(geo.align_layout(ref @ flip, ref, reflection=False), ref, atol=1e-3)
    assert np.allclose(geo.align_layout(ref @ rot, ref, reflection=False), ref, atol=1e-10)
    with pytest.raises(ValueError, match="same shape"):
        geo.align_layout(ref[:10], ref)


def test_umap_reproducible_and_identical_layers_coincide():
    X, _ = _clusters()
    g = geo.knn_graph(X, 30)
    Y1 = geo.embed(X, n_neighbors=15, knn=g, random_state=3)
    Y2 = geo.embed(X.copy(), n_neighbors=15, random_state=3)  # no graph given: same exact neighbours
    assert Y1.shape == (600, 2) and Y1.dtype == np.float32
    assert np.array_equal(Y1, Y2)
    # two identical layers aligned to each other coincide
    assert np.allclose(geo.align_layout(Y2, Y1), Y1, atol=1e-5)
    # another seed gives another layout, which alignment brings close to the first
    Y3 = geo.embed(X, n_neighbors=15, knn=g, random_state=4)
    assert not np.array_equal(Y1, Y3)


def test_umap_keeps_neighbourhoods_better_than_pca():
    # The comparison with plain umap.UMAP (trustworthiness within 0.01) is in benchmarks/embed.py: it
    # needs umap-learn's own neighbour search compiled, which costs ~20 s more than a unit test should.
    manifold = pytest.importorskip("sklearn.manifold")
    from sklearn.datasets import make_swiss_roll

    roll, _ = make_swiss_roll(1000, noise=0.05, random_state=0)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(20, 20)))[0][:3]
    X = (roll @ rotation).astype(np.float32)  # a 2-d manifold in R^20
    ours = geo.embed(X, n_neighbors=15, random_state=0)
    t_ours = manifold.trustworthiness(X, ours, n_neighbors=10)
    t_pca = manifold.trustworthiness(X, geo.embed(X, method="pca"), n_neighbors=10)
    assert t_ours > 0.95 and t_ours > t_pca + 0.02, (t_ours, t_pca)


def test_live_refine_stays_close_and_aligns():
    X, _ = _clusters()
    g = geo.knn_graph(X, 20)
    Y = geo.embed(X, knn=g, random_state=0)
    Y_live = geo.embed(X, knn=g, init=Y, n_epochs=30, learning_rate=0.25, random_state=0, reference=Y)
    # a warm-started pass keeps each point near its previous place (relative to the layout size)
    spread = np.linalg.norm(Y - Y.mean(0), axis=1).mean()
    assert np.median(np.linalg.norm(Y_live - Y, axis=1)) < 0.25 * spread


def test_embed_errors():
    X, _ = _clusters(n=40)
    with pytest.raises(ValueError, match="method"):
        geo.embed(X, method="tsne")
    with pytest.raises(ValueError, match="init"):
        geo.embed(X, init=np.zeros((39, 2)))
    with pytest.raises(ValueError, match="n_neighbors"):
        geo.embed(X, n_neighbors=1)
    with pytest.raises(ValueError, match="k_max"):
        geo.embed(X, n_neighbors=15, knn=geo.knn_graph(X, 5))
    with pytest.raises(ValueError, match="NaN"):
        geo.embed(np.full((10, 3), np.nan))


def test_warm_up_is_idempotent():
    t1 = geo.warm_up_umap()
    t2 = geo.warm_up_umap(wait=True)
    assert t1 is t2 and not t2.is_alive()


def _swiss_roll(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.uniform(1.5 * np.pi, 4.5 * np.pi, n)
    h = rng.uniform(0, 10, n)
    X = np.stack([u * np.cos(u), h, u * np.sin(u)], axis=1)
    s = 0.5 * (u * np.sqrt(1 + u * u) + np.arcsinh(u))  # arc length along the spiral
    geodesic = np.hypot(s[:, None] - s[None, :], h[:, None] - h[None, :])
    return X, geodesic


def test_heat_kernel_equals_expm_and_distances_are_a_metric_shape():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    neighbors = pytest.importorskip("sklearn.neighbors")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    k, t, decay = 5, 3.0, 40.0
    # independent construction of the alpha-decay graph and its normalised Laplacian
    dist, idx = neighbors.NearestNeighbors(n_neighbors=3 * k + 1).fit(X).kneighbors(X)
    eps = dist[:, k]  # column 0 is the point itself
    W = np.zeros((300, 300))
    rows = np.repeat(np.arange(300), 3 * k + 1)
    W[rows, idx.ravel()] = np.exp(-((dist / eps[:, None]) ** decay)).ravel()
    W = 0.5 * (W + W.T)
    dinv = 1 / np.sqrt(W.sum(1))
    L = np.eye(300) - dinv[:, None] * W * dinv[None, :]
    H = np.maximum(scipy_linalg.expm(-t * L), 0)
    expected = np.sqrt(np.maximum(0, -4 * t * np.log(H + 1e-16)))
    np.fill_diagonal(expected, 0)
    D = geo.heat_geodesic_distances(X, k=k, t=t, decay=decay)
    assert np.allclose(D, expected, atol=1e-6)
    assert np.allclose(D, D.T) and np.all(np.diag(D) == 0)
    with pytest.raises(ValueError, match="max_n"):
        geo.heat_geodesic_distances(X, k=5, max_n=100)
    with pytest.raises(ValueError, match="harnack"):
        geo.heat_geodesic_distances(X, harnack=2.0)


def test_heat_geodesics_follow_the_swiss_roll():
    stats = pytest.importorskip("scipy.stats")
    X, geodesic = _swiss_roll()
    iu = np.triu_indices(len(X), 1)
    fid = {}
    for t in (1.0, 20.0):
        D = geo.heat_geodesic_distances(X, k=10, t=t)
        fid[t] = stats.spearmanr(D[iu], geodesic[iu])[0]
    euclid = np.linalg.norm(X[:, None] - X[None], axis=2)
    fid_euclid = stats.spearmanr(euclid[iu], geodesic[iu])[0]
    assert fid[20.0] >= 0.9 and fid_euclid <= 0.5 and fid[20.0] > fid[1.0], (fid, fid_euclid)


def test_heatgeo_embedding_reproducible_and_subsampled():
    X, _ = _swiss_roll(400)
    Y1 = geo.embed(X, method="heatgeo", n_neighbors=10, t=10.0)
    assert Y1.shape == (400, 2) and np.array_equal(Y1, geo.embed(X, method="heatgeo", n_neighbors=10, t=10.0))
    Y_sub = geo.embed(X, method="heatgeo", n_neighbors=10, max_n=200, random_state=1)
    assert Y_sub.shape == (400, 2) and np.isfinite(Y_sub).all()


def test_pca_accumulated_over_row_blocks_equals_scikit_learn(monkeypatch):
    """The PCA reads X in float64 row blocks (no full float64 copy); with many tiny blocks the
    scores still equal scikit-learn's float64 PCA, on rows with a large common offset."""
    from sklearn.decomposition import PCA

    import geowidgets.geometry._embed as embed

    monkeypatch.setattr(embed, "_PCA_BLOCK_BYTES", 8 * 12 * 7)  # 7 rows per block
    rng = np.random.default_rng(3)
    X = (rng.normal(size=(403, 12)) * np.linspace(4.0, 0.2, 12) + 1e3).astype(np.float32)
    got = geo.embed(X, method="pca", n_components=3)
    ref = PCA(3).fit_transform(X.astype(np.float64))
    np.testing.assert_allclose(np.abs(got), np.abs(ref), rtol=1e-4, atol=1e-3)
    for j in range(3):
        assert abs(np.corrcoef(got[:, j], ref[:, j])[0, 1]) > 0.999999
