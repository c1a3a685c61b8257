"""DSE / DSMI (docs/probes.md): against dse-dsmi 1.1, monotonicity in intrinsic dimension, label MI, caching, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geowidgets import geometry as geo


def _subspace_data(d: int, n: int = 1000, ambient: int = 100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(ambient, d)))
    return rng.normal(size=(n, d)) @ Q.T + 0.01 * rng.normal(size=(n, ambient))


def _blobs(n: int = 1000, n_classes: int = 10, dim: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(n_classes, dim))
    y = rng.integers(0, n_classes, n)
    return centres[y] + 0.5 * rng.normal(size=(n, dim)), y


def test_dse_equals_reference_package():
    dse_dsmi = pytest.importorskip("dse_dsmi")
    X = np.random.default_rng(0).normal(size=(400, 16))
    for t in (1, 2):
        ours = geo.dse(X, sigma=1.0, t=t)  # scale="sqrt_dim": bandwidth √16 = 4
        ref = dse_dsmi.diffusion_spectral_entropy(X, gaussian_kernel_sigma=4.0, t=t, max_N=None)
        assert ours == pytest.approx(ref, abs=1e-8)
        absolute = geo.dse(X, sigma=2.5, t=t, scale=None)
        ref_abs = dse_dsmi.diffusion_spectral_entropy(X, gaussian_kernel_sigma=2.5, t=t, max_N=None)
        assert absolute == pytest.approx(ref_abs, abs=1e-8)


def test_separated_clusters_beat_one_cluster():
    rng = np.random.default_rng(1)
    centres = np.zeros((8, 16))
    centres[np.arange(8), np.arange(8)] = 50.0
    clusters = centres[rng.integers(0, 8, 800)] + 0.2 * rng.normal(size=(800, 16))
    one = 0.2 * rng.normal(size=(800, 16))
    assert geo.dse(clusters) > geo.dse(one) + 2.0


def test_dse_increases_with_intrinsic_dimension():
    dims = (1, 2, 4, 8, 16)
    data = [_subspace_data(d, n=600, seed=d) for d in dims]
    default = [geo.dse(X) for X in data]
    median = [geo.dse(X, sigma=0.5, scale="median") for X in data]
    assert all(a < b for a, b in zip(default, default[1:])), default
    assert all(a < b for a, b in zip(median, median[1:])), median
    for value in default + median:
        assert 0.0 <= value <= math.log2(600)


def test_spectrum_is_cached_and_t_is_applied_to_it():
    X = torch.from_numpy(_subspace_data(4, n=300))
    lam = geo.diffusion_spectrum(X)
    assert geo.diffusion_spectrum(X) is lam  # cached per tensor
    assert lam[0].item() == pytest.approx(1.0, abs=1e-10)  # trivial eigenvalue kept
    assert bool((lam[:-1] >= lam[1:]).all())  # descending
    for t in (1, 2.5, 7):
        assert geo.dse(X, t=t) == pytest.approx(geo.diffusion_entropy_from_spectrum(lam, t), abs=1e-12)
    # larger t concentrates the spectrum: entropy falls
    assert geo.dse(X, t=1) > geo.dse(X, t=3) > geo.dse(X, t=10)


def test_max_n_subsample_is_reproducible_and_reported_size():
    X = _subspace_data(3, n=700)
    lam = geo.diffusion_spectrum(X, max_n=200, random_state=3)
    assert lam.shape == (200,)
    np.testing.assert_array_equal(lam, geo.diffusion_spectrum(X, max_n=200, random_state=3))
    assert not np.allclose(lam, geo.diffusion_spectrum(X, max_n=200, random_state=4))
    assert geo.diffusion_spectrum(X, max_n=None).shape == (700,)


def test_median_scale_is_scale_invariant_and_sqrt_dim_is_not():
    X = _subspace_data(4, n=300)
    assert geo.dse(10 * X, scale="median") == pytest.approx(geo.dse(X, scale="median"), abs=1e-9)
    assert abs(geo.dse(10 * X) - geo.dse(X)) > 0.1


def test_dsmi_labels_high_random_labels_near_zero_and_close_to_reference():
    X, y = _blobs()
    value = geo.dsmi(X, y)
    assert value > 2.0
    random_labels = np.random.default_rng(9).integers(0, 10, len(y))
    assert abs(geo.dsmi(X, random_labels)) < 0.1
    dse_dsmi = pytest.importorskip("dse_dsmi")
    ref = dse_dsmi.diffusion_spectral_mutual_information(X, y, gaussian_kernel_sigma=10.0)[0]
    assert value == pytest.approx(ref, abs=0.1)


def test_dsmi_continuous_variable_is_binned_like_the_package():
    dse_dsmi = pytest.importorskip("dse_dsmi")
    rng = np.random.default_rng(2)
    s = rng.uniform(-1, 1, 600)
    X = np.stack([s, np.sin(3 * s)], 1) * 5 + 0.05 * rng.normal(size=(600, 2))
    ours = geo.dsmi(X, s, n_clusters=5)
    ref = dse_dsmi.diffusion_spectral_mutual_information(X, s, gaussian_kernel_sigma=math.sqrt(2), n_clusters=5)[0]
    assert ours > 0.5
    assert ours == pytest.approx(ref, abs=0.15)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sigma": 0.0}, "sigma"),
        ({"t": -1.0}, "t must be"),
        ({"scale": "mean"}, "scale"),
        ({"max_n": 1}, "max_n"),
    ],
)
def test_dse_parameter_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        geo.dse(np.random.default_rng(0).normal(size=(20, 3)), **kwargs)


def test_input_errors():
    with pytest.raises(ValueError, match="NaN"):
        geo.dse(np.array([[0.0, 1.0], [np.inf, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="at least 2 rows"):
        geo.diffusion_spectrum(np.ones((1, 3)))
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        geo.dse(np.ones((5, 3)), scale="median")
    X, y = _blobs(n=100)
    with pytest.raises(ValueError, match="one entry per row"):
        geo.dsmi(X, y[:-1])
    with pytest.raises(ValueError, match="repetitions"):
        geo.dsmi(X, y, repetitions=0)
    with pytest.raises(ValueError, match="constant"):
        geo.dsmi(X, np.zeros(100, dtype=float))
