"""RankMe and von Neumann entropy (docs/probes.md#rankme): analytic values, bounds, invariances, errors, caching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geowidgets import geometry as geo
from geowidgets.geometry._spectra import _SPECTRAL_CACHE, _raw_and_centred_f64


def _equal_singular_values(n: int, d: int, rank: int, value: float, seed: int = 0, center: bool = False) -> np.ndarray:
    """An n×d matrix whose (centred, if asked) singular values are `rank` copies of `value`."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n, rank))
    if center:
        U -= U.mean(0)
    U, _ = np.linalg.qr(U)
    V, _ = np.linalg.qr(rng.normal(size=(d, rank)))
    return value * U @ V.T


def test_rankme_equal_singular_values_gives_rank():
    X = _equal_singular_values(500, 64, 8, 3.0)
    assert geo.rankme(X) == pytest.approx(8.0, abs=0.01)
    assert geo.rankme(X, eps=0.0) == pytest.approx(8.0, rel=1e-5)


def test_rankme_identical_rows_gives_one():
    X = np.tile(np.random.default_rng(1).normal(size=(1, 32)), (200, 1))
    assert geo.rankme(X) == pytest.approx(1.0, abs=1e-3)


def test_rankme_isotropic_gaussian_near_full_and_rotation_invariant():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4000, 32))
    value = geo.rankme(X)
    assert 0.98 * 32 <= value <= 32.0
    Q, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    assert geo.rankme(X @ Q) == pytest.approx(value, rel=1e-9)


def test_rankme_matches_direct_formula_and_center_option():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 90)) * np.linspace(0.1, 3, 90) + 2.0  # N < D: Gram on the N side
    s = np.linalg.svd(X, compute_uv=False)
    p = s / s.sum() + 1e-7
    assert geo.rankme(X) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-9)
    sc = np.linalg.svd(X - X.mean(0), compute_uv=False)
    pc = sc / sc.sum() + 1e-7
    assert geo.rankme(X, center=True) == pytest.approx(math.exp(-(pc * np.log(pc)).sum()), rel=1e-8)


def test_singular_values_match_numpy_and_return_kind():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 7))
    s = geo.singular_values(X)
    assert isinstance(s, np.ndarray) and s.dtype == np.float64
    np.testing.assert_allclose(s, np.linalg.svd(X, compute_uv=False), rtol=1e-10)
    st = geo.singular_values(torch.from_numpy(X), center=True)
    assert isinstance(st, torch.Tensor)
    np.testing.assert_allclose(st.numpy(), np.linalg.svd(X - X.mean(0), compute_uv=False), rtol=1e-10)


@pytest.mark.parametrize("shape", [(80, 12), (12, 80)])
def test_raw_and_centred_from_one_gram_match_numpy(shape):
    rng = np.random.default_rng(11)
    X = rng.normal(size=shape) + 3.0
    raw, centred = _raw_and_centred_f64(torch.from_numpy(X))
    np.testing.assert_allclose(raw.numpy(), np.linalg.svd(X, compute_uv=False), rtol=1e-9)
    expected = np.linalg.svd(X - X.mean(0), compute_uv=False)  # N < D: the last one is 0
    np.testing.assert_allclose(centred.numpy(), expected, rtol=1e-8, atol=1e-6 * expected[0])


def test_singular_values_cached_per_tensor_and_invalidated_by_inplace_change():
    geo.clear_spectral_cache()
    X = torch.randn(100, 10, dtype=torch.float64)
    first = geo.singular_values(X)
    assert geo.singular_values(X) is first  # served from the cache
    X.mul_(2.0)  # in-place change bumps the version counter
    second = geo.singular_values(X)
    assert second is not first
    torch.testing.assert_close(second, 2 * first)
    del X
    assert len(_SPECTRAL_CACHE) == 0  # entries die with the tensor


def test_vne_equal_centred_singular_values_gives_log_rank():
    for rank in (1, 3, 10):
        X = _equal_singular_values(300, 20, rank, 2.0, seed=rank, center=True)
        assert geo.von_neumann_entropy(X) == pytest.approx(math.log(rank), rel=1e-10, abs=1e-12)
        assert geo.von_neumann_entropy(X, exp=True) == pytest.approx(rank, rel=1e-10)


def test_vne_bounds():
    rng = np.random.default_rng(5)
    for n, d in ((10, 50), (500, 8), (50, 50)):
        X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
        S = geo.von_neumann_entropy(X)
        assert 0.0 <= S <= math.log(min(n - 1, d)) + 1e-12
    # uncentred second moment: a constant non-zero matrix has one direction, S = 0
    assert geo.von_neumann_entropy(np.ones((10, 4)), center=False) == pytest.approx(0.0, abs=1e-12)


def test_vne_zero_variance_raises():
    with pytest.raises(ValueError, match="zero variance"):
        geo.von_neumann_entropy(np.ones((10, 4)))


def test_rankme_is_sigma_weighted_vne_is_sigma_squared_weighted():
    # One dominant direction: von Neumann (σ²) reacts more than RankMe (σ).
    X = _equal_singular_values(400, 10, 10, 1.0) @ np.diag([10.0] + [1.0] * 9)
    assert geo.von_neumann_entropy(X, center=False, exp=True) < geo.rankme(X)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.zeros(5), "shape"),
        (np.zeros((3, 4)), "all zeros"),
    ],
)
def test_rankme_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        geo.rankme(bad)


def test_errors_on_bad_parameters_and_too_few_rows():
    with pytest.raises(ValueError, match="eps"):
        geo.rankme(np.eye(3), eps=-1.0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        geo.von_neumann_entropy(np.ones((1, 3)))
    with pytest.raises(ValueError, match="all-zero row"):
        geo.singular_values(np.zeros((3, 2)), normalize_rows=True)


def test_float32_tensor_input_matches_float64():
    X = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    assert geo.rankme(X) == pytest.approx(geo.rankme(X.double().numpy()), rel=1e-5)
