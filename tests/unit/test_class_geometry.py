"""Fisher ratio, neural collapse and coding rate (docs/probes.md): analytic values, invariances, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geowidgets import geometry as geo


def _two_gaussians(n: int = 8000, d: int = 10, delta: float = 2.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, d))
    X[y == 1, 0] += delta
    return X, y


def _etf(n_classes: int, radius: float, dim: int, seed: int = 0) -> np.ndarray:
    """Simplex ETF: C centred unit-free vectors of norm `radius` embedded in R^dim."""
    rng = np.random.default_rng(seed)
    E = np.eye(n_classes) - 1.0 / n_classes
    E *= radius / np.linalg.norm(E, axis=1, keepdims=True)
    Q, _ = np.linalg.qr(rng.normal(size=(dim, n_classes)))
    return E @ Q.T


# ---------------------------------------------------------------- docs/probes.md#fisher-ratio


def test_fisher_analytic_values():
    X, y = _two_gaussians()
    delta, d = 2.0, 10
    assert float(geo.fisher_ratio(X, y)) == pytest.approx(delta**2 / (4 * d), rel=0.05)
    assert float(geo.fisher_ratio(X, y, "lda")) == pytest.approx(delta**2 / 4, rel=0.05)
    fdr = geo.fisher_ratio(X, y, "fdr")
    assert float(fdr) == pytest.approx(delta**2 / 2, rel=0.05)
    assert int(np.argmax(fdr.per_feature)) == 0 and fdr.per_feature.shape == (10,)


def test_fisher_matches_brute_force_matrices():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 6)) @ rng.normal(size=(6, 6))
    y = rng.integers(0, 3, 90)
    mu = X.mean(0)
    Sw = np.zeros((6, 6))
    Sb = np.zeros((6, 6))
    for c in range(3):
        Xc = X[y == c]
        m = Xc.mean(0)
        Sw += (Xc - m).T @ (Xc - m) / len(X)
        Sb += len(Xc) * np.outer(m - mu, m - mu) / len(X)
    assert float(geo.fisher_ratio(X, y)) == pytest.approx(np.trace(Sb) / np.trace(Sw), rel=1e-10)
    gamma = 0.1 * np.trace(Sw) / 6
    expected = np.trace(np.linalg.solve(Sw + gamma * np.eye(6), Sb))
    assert float(geo.fisher_ratio(X, y, "lda", shrinkage=0.1)) == pytest.approx(expected, rel=1e-10)


def test_fisher_lda_woodbury_branch_matches_direct_solve():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(12, 40))  # D > N
    y = np.repeat([0, 1, 2], 4)
    within = X - np.stack([X[y == c].mean(0) for c in range(3)])[y]
    Sw = within.T @ within / 12
    B = np.stack([np.sqrt(4 / 12) * (X[y == c].mean(0) - X.mean(0)) for c in range(3)])
    gamma = 1e-2 * np.trace(Sw) / 40
    expected = np.trace(np.linalg.solve(Sw + gamma * np.eye(40), B.T @ B))
    assert float(geo.fisher_ratio(X, y, "lda", shrinkage=1e-2)) == pytest.approx(expected, rel=1e-8)


def test_fisher_lda_without_shrinkage_is_affine_invariant():
    X, y = _two_gaussians(n=2000)
    A = np.random.default_rng(3).normal(size=(10, 10))
    base = float(geo.fisher_ratio(X, y, "lda", shrinkage=0.0))
    assert float(geo.fisher_ratio(X @ A, y, "lda", shrinkage=0.0)) == pytest.approx(base, rel=1e-8)
    # the trace ratio is not invariant
    assert abs(float(geo.fisher_ratio(X @ A, y)) - float(geo.fisher_ratio(X, y))) > 1e-3


def test_fisher_returns_float_subclass_and_per_feature_kind_follows_input():
    X, y = _two_gaussians(n=200)
    r = geo.fisher_ratio(torch.from_numpy(X), torch.from_numpy(y), "fdr")
    assert isinstance(r, float) and isinstance(r.per_feature, torch.Tensor) and r.kind == "fdr"


def test_fisher_errors():
    X, y = _two_gaussians(n=100)
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        geo.fisher_ratio(X, np.zeros(100, dtype=int))
    with pytest.raises(ValueError, match="kind"):
        geo.fisher_ratio(X, y, "ratio")
    with pytest.raises(ValueError, match="exactly two classes"):
        geo.fisher_ratio(X, np.arange(100) % 3, "fdr")
    with pytest.raises(ValueError, match="length"):
        geo.fisher_ratio(X, y[:-1])
    with pytest.raises(ValueError, match="shrinkage > 0"):
        geo.fisher_ratio(np.random.default_rng(0).normal(size=(6, 10)), [0, 0, 0, 1, 1, 1], "lda", shrinkage=0.0)
    with pytest.raises(ValueError, match="within-class scatter is zero"):
        geo.fisher_ratio(np.repeat(np.eye(2), 3, axis=0), [0, 0, 0, 1, 1, 1])


# ---------------------------------------------------------------- docs/probes.md#neural-collapse


def test_nc1_noisy_etf_matches_analytic_value():
    C, r, sigma, D = 4, 3.0, 0.5, 10
    M = _etf(C, r, D)
    y = np.repeat(np.arange(C), 3000)
    H = M[y] + sigma * np.random.default_rng(4).normal(size=(len(y), D))
    res = geo.neural_collapse(H, y)
    assert res.nc1 == pytest.approx(sigma**2 * (C - 1) ** 2 / (C * r**2), rel=0.05)


def test_nc1_matches_pseudo_inverse_definition():
    rng = np.random.default_rng(5)
    H = rng.normal(size=(300, 8)) + np.repeat(rng.normal(size=(3, 8)) * 2, 100, axis=0)
    y = np.repeat([0, 1, 2], 100)
    means = np.stack([H[y == c].mean(0) for c in range(3)])
    Mt = means - H.mean(0)
    within = H - means[y]
    Sw = within.T @ within / 300
    Sb = Mt.T @ Mt / 3
    assert geo.neural_collapse(H, y).nc1 == pytest.approx(np.trace(Sw @ np.linalg.pinv(Sb)) / 3, rel=1e-8)


def test_noise_free_etf_is_fully_collapsed_and_nc3_nc4_zero():
    C, D = 5, 12
    M = _etf(C, 2.0, D, seed=1)
    y = np.repeat(np.arange(C), 20)
    H = M[y]
    res = geo.neural_collapse(H, y, weight=M)
    for value in (res.nc1, res.nc2_equinorm, res.nc2_equiangular, res.nc2_max_angle, res.nc3, res.nc4):
        assert value == pytest.approx(0.0, abs=1e-8)
    off = res.class_cosines[~np.eye(C, dtype=bool)]
    np.testing.assert_allclose(off, -1.0 / (C - 1), atol=1e-10)


def test_nc3_zero_for_scaled_means_and_nc4_nearest_centroid_logits():
    rng = np.random.default_rng(6)
    y = np.repeat([0, 1, 2], 200)
    H = rng.normal(size=(600, 6)) + 3 * np.repeat(rng.normal(size=(3, 6)), 200, axis=0)
    means = np.stack([H[y == c].mean(0) for c in range(3)])
    res = geo.neural_collapse(H, y, weight=5.0 * (means - H.mean(0)))
    assert res.nc3 == pytest.approx(0.0, abs=1e-10)
    ncc = geo.neural_collapse(H, y, weight=means, bias=-0.5 * (means**2).sum(1))
    assert ncc.nc4 == pytest.approx(0.0, abs=1e-12)
    # predictions given directly: flip the nearest-centroid decision for 30 samples
    nearest = np.argmin(((H[:, None] - means[None]) ** 2).sum(2), 1)
    pred = nearest.copy()
    pred[:30] = (pred[:30] + 1) % 3
    assert geo.neural_collapse(H, y, predictions=pred).nc4 == pytest.approx(30 / 600)


def test_neural_collapse_errors():
    rng = np.random.default_rng(7)
    H = rng.normal(size=(20, 4))
    y = np.repeat([0, 1], 10)
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        geo.neural_collapse(H, np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="weight must have shape"):
        geo.neural_collapse(H, y, weight=np.ones((3, 4)))
    with pytest.raises(ValueError, match="bias was given without weight"):
        geo.neural_collapse(H, y, bias=np.zeros(2))
    with pytest.raises(ValueError, match="not in labels"):
        geo.neural_collapse(H, y, predictions=np.full(20, 7))
    symmetric = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    with pytest.raises(ValueError, match="coincide with the global mean"):
        geo.neural_collapse(symmetric, [0, 0, 1, 1])


# ---------------------------------------------------------------- docs/probes.md#coding-rate


def test_coding_rate_identical_unit_rows():
    d, eps = 16, 0.5**0.5
    Z = np.tile(np.random.default_rng(8).normal(size=(1, d)), (50, 1))
    res = geo.coding_rate(Z, np.arange(50) % 3)
    assert res.R == pytest.approx(0.5 * math.log(1 + d / eps**2), rel=1e-10)
    assert res.delta_R == pytest.approx(0.0, abs=1e-10)
    assert res.eps == pytest.approx(eps)


def _logdet_rates(Z: np.ndarray, y: np.ndarray, eps: float):
    n, d = Z.shape

    def rate(A, form):
        m = len(A)
        if form == "dd":
            return 0.5 * np.linalg.slogdet(np.eye(d) + d / (m * eps**2) * A.T @ A)[1]
        return 0.5 * np.linalg.slogdet(np.eye(m) + d / (m * eps**2) * A @ A.T)[1]

    out = {}
    for form in ("dd", "nn"):
        R = rate(Z, form)
        Rc = sum((y == c).sum() / n * rate(Z[y == c], form) for c in np.unique(y))
        out[form] = (R, Rc)
    return out


def test_coding_rate_equals_dxd_and_nxn_logdet_forms():
    rng = np.random.default_rng(9)
    for n, d in ((60, 12), (15, 40)):
        X = rng.normal(size=(n, d))
        y = rng.integers(0, 3, n)
        Z = X / np.linalg.norm(X, axis=1, keepdims=True)
        for eps in (0.1, 0.5**0.5, 2.0):
            forms = _logdet_rates(Z, y, eps)
            assert forms["dd"][0] == pytest.approx(forms["nn"][0], rel=1e-8)
            assert forms["dd"][1] == pytest.approx(forms["nn"][1], rel=1e-8)
            res = geo.coding_rate(X, y, eps=eps)
            assert res.R == pytest.approx(forms["dd"][0], rel=1e-8)
            assert res.Rc == pytest.approx(forms["dd"][1], rel=1e-8)
            assert res.delta_R == pytest.approx(forms["dd"][0] - forms["dd"][1], rel=1e-7, abs=1e-10)
    raw = geo.coding_rate(X, normalize=False)
    assert raw.R == pytest.approx(_logdet_rates(X, np.zeros(len(X)), 0.5**0.5)["dd"][0], rel=1e-8)
    assert raw.Rc is None and raw.delta_R is None


def test_orthogonal_class_subspaces_beat_a_shared_subspace():
    rng = np.random.default_rng(10)
    n, D = 300, 12
    y = np.repeat([0, 1], n)
    A = rng.normal(size=(n, 3))
    B = rng.normal(size=(n, 3))
    separate = np.zeros((2 * n, D))
    separate[:n, :3] = A
    separate[n:, 3:6] = B
    shared = np.zeros((2 * n, D))
    shared[:n, :3] = A
    shared[n:, :3] = B
    assert geo.coding_rate(separate, y).delta_R > geo.coding_rate(shared, y).delta_R + 0.5
    assert geo.coding_rate(separate, np.zeros(2 * n, dtype=int)).delta_R == pytest.approx(0.0, abs=1e-12)


def test_coding_rate_eps_move_reuses_cached_spectra():
    X = torch.randn(200, 8, dtype=torch.float64)
    y = torch.arange(200) % 4
    geo.clear_spectral_cache()
    first = geo.coding_rate(X, y, eps=0.3)
    from geowidgets.geometry._spectra import _SPECTRAL_CACHE

    entries = len(_SPECTRAL_CACHE)
    second = geo.coding_rate(X, y, eps=1.3)
    assert len(_SPECTRAL_CACHE) == entries == 2  # overall + per-class spectra, not recomputed
    assert second.R < first.R


def test_coding_rate_errors():
    with pytest.raises(ValueError, match="eps"):
        geo.coding_rate(np.eye(3), eps=0.0)
    with pytest.raises(ValueError, match="all-zero row"):
        geo.coding_rate(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="length"):
        geo.coding_rate(np.eye(3), [0, 1])
