"""cka / cka_matrix / mutual_knn: explicit N×N float64 HSIC references, invariances, sklearn neighbour sets."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from geowidgets import geometry as geo
from geowidgets.geometry import _compare


# ---- independent references: explicit Gram matrices, float64 numpy ----------------------------------------------
def _hsic_biased(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def _hsic_unbiased(K, L):
    """Song et al. 2012, eq. (5): K̃, L̃ are K, L with zero diagonals."""
    n = K.shape[0]
    Kt = K - np.diag(np.diag(K))
    Lt = L - np.diag(np.diag(L))
    one = np.ones(n)
    total = np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
    return (total - 2 / (n - 2) * one @ Kt @ Lt @ one) / (n * (n - 3))


def _cka_ref(K, L, debiased=False):
    h = _hsic_unbiased if debiased else _hsic_biased
    return h(K, L) / np.sqrt(h(K, K) * h(L, L))


def _gram_linear(X):
    return X @ X.T


def _gram_rbf(X, fraction=1.0, sigma=None):
    """Kornblith et al.'s reference: exp(−d² / (2 t² median(d²))), median over the full matrix."""
    sq = np.sum(X * X, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    if sigma is None:
        return np.exp(-d2 / (2 * fraction**2 * np.median(d2)))
    return np.exp(-d2 / (2 * sigma**2))


def _pair(n, dx, dy, seed=0, shared=0.5):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 4))
    X = Z @ rng.normal(size=(4, dx)) + rng.normal(size=(n, dx)) + 3.0
    Y = np.tanh(shared * Z @ rng.normal(size=(4, dy))) + 0.5 * rng.normal(size=(n, dy)) - 1.0
    return X, Y


# ---- CKA against the references ---------------------------------------------------------------------------------
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(151, 12, 7), (41, 90, 120)])  # feature-space route, Gram route
def test_linear_cka_matches_explicit_hsic(shape, debiased):
    n, dx, dy = shape
    X, Y = _pair(n, dx, dy)
    a = _compare._prepare(X, "X", "linear", None, 1.0)
    b = _compare._prepare(Y, "Y", "linear", None, 1.0)
    assert _compare._use_feature_space(a, b) == (dx < n)  # both routes are exercised
    ref = _cka_ref(_gram_linear(X), _gram_linear(Y), debiased)
    assert geo.cka(X, Y, debiased=debiased) == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert geo.cka(torch.as_tensor(X, dtype=torch.float64), Y, debiased=debiased) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("fraction", [0.4, 1.0])
def test_rbf_cka_matches_explicit_hsic_with_median_bandwidth(fraction, debiased):
    X, Y = _pair(101, 6, 9, seed=1)  # N odd: N² odd, so the median distance is one of the distances
    ref = _cka_ref(_gram_rbf(X, fraction), _gram_rbf(Y, fraction), debiased)
    got = geo.cka(X, Y, kernel="rbf", sigma_fraction=fraction, debiased=debiased)
    assert got == pytest.approx(ref, rel=1e-9)


def test_rbf_cka_with_explicit_sigma_and_small_blocks(monkeypatch):
    X, Y = _pair(64, 5, 5, seed=2)
    ref = _cka_ref(_gram_rbf(X, sigma=2.5), _gram_rbf(Y, sigma=2.5))
    full = geo.cka(X, Y, kernel="rbf", sigma=2.5)
    monkeypatch.setattr(_compare, "_BLOCK_BYTES", 8 * 64 * 7)  # 7-row blocks: a ragged last block
    chunked = geo.cka(X, Y, kernel="rbf", sigma=2.5)
    assert full == pytest.approx(ref, rel=1e-10) and chunked == pytest.approx(ref, rel=1e-10)


def test_linear_feature_space_chunked_equals_gram_route(monkeypatch):
    X, Y = _pair(300, 8, 6, seed=3)
    ref = _cka_ref(_gram_linear(X), _gram_linear(Y))
    monkeypatch.setattr(_compare, "_BLOCK_BYTES", 8 * 14 * 11)  # 11-row blocks
    assert geo.cka(X, Y) == pytest.approx(ref, rel=1e-10)
    monkeypatch.setattr(_compare, "_FEATURE_BYTES", 0)  # forces the blocked Gram route
    assert geo.cka(X, Y) == pytest.approx(ref, rel=1e-10)


# ---- invariances --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_invariances(debiased):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 15)) @ rng.normal(size=(15, 15))
    Q, _ = np.linalg.qr(rng.normal(size=(15, 15)))
    assert geo.cka(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    assert geo.cka(X, 7.5 * X @ Q + 2.0, debiased=debiased) == pytest.approx(1.0, abs=1e-12)  # orthogonal, scale, shift
    A = np.diag(np.linspace(0.1, 10.0, 15))  # an anisotropic map is not an invariance of CKA
    assert geo.cka(X, X @ A, debiased=debiased) < 0.99


def test_rbf_cka_invariances_with_median_bandwidth():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(81, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert geo.cka(X, X, kernel="rbf") == pytest.approx(1.0, abs=1e-12)
    # the median bandwidth scales with the data, so an isotropic rescale is an invariance too
    assert geo.cka(X, 0.01 * X @ Q - 4.0, kernel="rbf") == pytest.approx(1.0, abs=1e-10)


def test_cka_is_symmetric_and_float32_agrees():
    X, Y = _pair(90, 10, 4, seed=6)
    ref = _cka_ref(_gram_linear(X), _gram_linear(Y))
    assert geo.cka(Y, X) == pytest.approx(ref, rel=1e-10)
    assert geo.cka(X.astype(np.float32), Y.astype(np.float32)) == pytest.approx(ref, rel=1e-5)


def test_debiasing_removes_the_high_dimension_bias():
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(200, 2000)), rng.normal(size=(200, 2000))  # independent, D >> N
    biased, unbiased = geo.cka(X, Y), geo.cka(X, Y, debiased=True)
    assert biased > 0.85  # the known bias of CKA for D >> N (Kornblith et al. 2019, Nguyen et al. 2021)
    assert abs(unbiased) < 0.05  # its spread over seeds at this N is about 0.008


def test_flattens_trailing_dimensions():
    X, Y = _pair(60, 12, 8, seed=8)
    assert geo.cka(X.reshape(60, 3, 2, 2), Y) == pytest.approx(geo.cka(X, Y), rel=1e-12)


def test_cka_errors():
    X, Y = _pair(30, 4, 3)
    with pytest.raises(ValueError, match="same samples"):
        geo.cka(X, Y[:29])
    with pytest.raises(ValueError, match="constant"):
        geo.cka(X, np.ones((30, 3)))
    with pytest.raises(ValueError, match="kernel"):
        geo.cka(X, Y, kernel="poly")
    with pytest.raises(ValueError, match="at least 4 samples"):
        geo.cka(X[:3], Y[:3], debiased=True)
    with pytest.raises(ValueError, match="sigma"):
        geo.cka(X, Y, kernel="rbf", sigma=0.0)
    with pytest.raises(ValueError, match="NaN"):
        geo.cka(np.where(np.eye(30, 4) > 0, np.nan, X), Y)


def test_median_heuristic_refuses_more_samples_than_fit(monkeypatch):
    X, Y = _pair(40, 4, 3)
    monkeypatch.setattr(_compare, "_MEDIAN_BYTES", 8 * 39 * 39)
    with pytest.raises(ValueError, match="pass sigma="):
        geo.cka(X, Y, kernel="rbf")
    assert geo.cka(X, Y, kernel="rbf", sigma=3.0) == pytest.approx(
        _cka_ref(_gram_rbf(X, sigma=3.0), _gram_rbf(Y, sigma=3.0)), rel=1e-10
    )


# ---- cka_matrix ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_matrix_cells_are_cka(kernel):
    X, Y = _pair(71, 8, 5, seed=9)
    rng = np.random.default_rng(9)
    acts_a = {"conv": X.reshape(71, 2, 4), "fc": Y}
    acts_b = {"h1": torch.as_tensor(np.tanh(X)), "h2": rng.normal(size=(71, 3)), "h3": Y}
    m = geo.cka_matrix(acts_a, acts_b, kernel=kernel)
    assert isinstance(m, pd.DataFrame)
    assert list(m.index) == ["conv", "fc"] and list(m.columns) == ["h1", "h2", "h3"]
    grams = {"conv": X, "fc": Y, "h1": np.tanh(X), "h2": acts_b["h2"], "h3": Y}
    gram = _gram_linear if kernel == "linear" else _gram_rbf
    for ra in m.index:
        for cb in m.columns:
            assert m.loc[ra, cb] == pytest.approx(_cka_ref(gram(grams[ra]), gram(grams[cb])), rel=1e-9)


def test_cka_matrix_of_one_model_is_symmetric_with_unit_diagonal():
    X, Y = _pair(50, 6, 6, seed=10)
    m = geo.cka_matrix({"a": X, "b": Y, "c": X + Y}, debiased=True)
    assert np.allclose(np.diag(m.to_numpy()), 1.0, atol=1e-12)
    assert np.array_equal(m.to_numpy(), m.to_numpy().T)
    assert m.loc["a", "c"] == pytest.approx(_cka_ref(_gram_linear(X), _gram_linear(X + Y), True), rel=1e-10)


def test_cka_matrix_errors_name_the_layers():
    X, Y = _pair(30, 4, 3)
    with pytest.raises(ValueError, match="'fc'"):
        geo.cka_matrix({"fc": X}, {"out": Y[:20]})
    with pytest.raises(ValueError, match="no layers"):
        geo.cka_matrix({})


# ---- mutual kNN ---------------------------------------------------------------------------------------------------
def _sklearn_sets(X, k):
    nn = NearestNeighbors(n_neighbors=k + 1).fit(X)
    idx = nn.kneighbors(X, return_distance=False)
    return [set(row[row != i][:k]) for i, row in enumerate(idx)]


@pytest.mark.parametrize("k", [1, 5, 20])
def test_mutual_knn_matches_sklearn_sets(k):
    X, Y = _pair(150, 6, 4, seed=11)
    sx, sy = _sklearn_sets(X, k), _sklearn_sets(Y, k)
    per_ref = np.array([len(a & b) / k for a, b in zip(sx, sy)])
    mean, per = geo.mutual_knn(X, Y, k, per_point=True)
    assert isinstance(per, np.ndarray)
    np.testing.assert_allclose(per, per_ref, rtol=0, atol=1e-15)
    assert mean == pytest.approx(per_ref.mean(), abs=1e-15)
    assert 0 < mean < 1


def test_mutual_knn_limits_and_precomputed_graphs(monkeypatch):
    rng = np.random.default_rng(12)
    X = rng.normal(size=(400, 8))
    Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert geo.mutual_knn(X, 3.0 * X @ Q, k=10) == 1.0  # a similarity transform keeps every neighbourhood
    unrelated = geo.mutual_knn(X, rng.normal(size=(400, 8)), k=10)
    assert unrelated < 0.1  # chance level is k / (N − 1) = 0.025
    Y = X + 0.3 * rng.normal(size=X.shape)
    graph = geo.knn_graph(X, k_max=15)
    assert geo.mutual_knn(X, Y, k=10, knn_x=graph) == geo.mutual_knn(X, Y, k=10)
    monkeypatch.setattr(_compare, "_OVERLAP_ELEMENTS", 7 * 100)  # 7-row blocks: the last one is ragged
    Xt = torch.as_tensor(X)
    m, per = geo.mutual_knn(Xt, torch.as_tensor(Y), k=10, per_point=True)
    assert isinstance(per, torch.Tensor) and per.shape == (400,)
    assert m == pytest.approx(float(per.mean()))


def test_mutual_knn_errors():
    X, Y = _pair(30, 4, 3)
    with pytest.raises(ValueError, match="same samples"):
        geo.mutual_knn(X, Y[:10], 3)
    with pytest.raises(ValueError, match="k=30"):
        geo.mutual_knn(X, Y, 30)
    with pytest.raises(ValueError, match="other data"):
        geo.mutual_knn(X, Y, 3, knn_y=geo.knn_graph(X, k_max=5))
