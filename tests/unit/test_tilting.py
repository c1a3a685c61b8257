"""Boundary tilting (docs/probes.md): isotropic vs anisotropic classes, analytic angle, sklearn agreement, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geowidgets import geometry as geo

REGS = (1e-4, 1e-2, 1.0, 100.0)


def _classes(std: np.ndarray, n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    d = len(std)
    shift = np.zeros(d)
    shift[:2] = 1.0
    y = np.repeat([0, 1], n)
    X = rng.normal(size=(2 * n, d)) * std + shift * y[:, None]
    return X, y, shift


def test_isotropic_classes_are_not_tilted():
    X, y, _ = _classes(np.ones(20))
    for reg in REGS:
        res = geo.boundary_tilting_angle(X, y, reg=reg)
        assert res.converged
        assert res.angle_deg < 5.0


def test_anisotropic_classes_tilt_at_weak_regularisation_and_straighten_at_strong():
    std = np.ones(20)
    std[:2] = (0.5, 2.0)
    X, y, shift = _classes(std)
    lda = shift / std**2
    analytic = math.degrees(math.acos(lda @ shift / (np.linalg.norm(lda) * np.linalg.norm(shift))))
    assert analytic == pytest.approx(41.4, abs=0.05)
    angles = []
    previous = None
    for reg in REGS:
        res = geo.boundary_tilting_angle(X, y, reg=reg, init=previous)
        previous = res
        angles.append(res.angle_deg)
    assert angles[0] == pytest.approx(analytic, abs=2.0)
    assert angles[-1] < 1.0
    assert all(a >= b for a, b in zip(angles, angles[1:])), angles


def test_probe_matches_sklearn_logistic_regression():
    linear_model = pytest.importorskip("sklearn.linear_model")
    std = np.ones(20)
    std[:2] = (0.5, 2.0)
    X, y, _ = _classes(std, n=1000, seed=1)
    n = len(y)
    for reg in (1e-3, 1e-1):
        ours = geo.boundary_tilting_angle(X, y, reg=reg)
        ref = linear_model.LogisticRegression(C=1.0 / (reg * n), tol=1e-10, max_iter=10_000).fit(X, y)
        w = ref.coef_[0]
        assert ours.w @ w / (np.linalg.norm(ours.w) * np.linalg.norm(w)) > 0.99999
        assert ours.b == pytest.approx(float(ref.intercept_[0]), rel=1e-4, abs=1e-5)
        assert ours.accuracy == pytest.approx(ref.score(X, y), abs=1e-12)


def test_readouts_and_orientation():
    X, y, shift = _classes(np.ones(5), n=500, seed=2)
    res = geo.boundary_tilting_angle(X + 10.0, y + 3, reg=1e-2)  # shifted data and labels 3/4
    assert res.classes == (3, 4)
    assert res.w @ shift > 0  # oriented toward the second class
    np.testing.assert_allclose(res.w_nc, X[y == 1].mean(0) - X[y == 0].mean(0), rtol=1e-10)
    assert res.half_centroid_distance == pytest.approx(np.linalg.norm(res.w_nc) / 2)
    scores = (X + 10.0) @ res.w + res.b
    assert res.mean_boundary_distance == pytest.approx(np.abs(scores).mean() / np.linalg.norm(res.w), rel=1e-10)
    swapped = geo.boundary_tilting_angle(X + 10.0, y + 3, classes=(4, 3), reg=1e-2)
    np.testing.assert_allclose(swapped.w, -res.w, rtol=1e-5, atol=1e-8)


def test_default_pair_is_the_two_largest_classes_and_fit_intercept_false():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(50), np.ones(200), np.full(150, 2)].astype(int)
    X = rng.normal(size=(400, 4)) + 3 * np.eye(4)[y]
    assert geo.boundary_tilting_angle(X, y).classes == (1, 2)
    res = geo.boundary_tilting_angle(X, y, fit_intercept=False)
    assert res.b == 0.0 and res.converged


def test_tensor_input_returns_tensors():
    X, y, _ = _classes(np.ones(3), n=200, seed=4)
    res = geo.boundary_tilting_angle(torch.from_numpy(X).float(), torch.from_numpy(y))
    assert isinstance(res.w, torch.Tensor) and res.w.shape == (3,)


def test_not_converging_warns():
    X, y, _ = _classes(np.ones(5), n=300, seed=5)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        res = geo.boundary_tilting_angle(X, y, reg=1e-6, max_iter=1)
    assert not res.converged


def test_tilting_errors():
    X, y, _ = _classes(np.ones(3), n=50)
    with pytest.raises(ValueError, match="reg"):
        geo.boundary_tilting_angle(X, y, reg=0.0)
    with pytest.raises(ValueError, match="not among the labels"):
        geo.boundary_tilting_angle(X, y, classes=(0, 5))
    with pytest.raises(ValueError, match="two different labels"):
        geo.boundary_tilting_angle(X, y, classes=(1, 1))
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        geo.boundary_tilting_angle(X, np.zeros(100, dtype=int))
    with pytest.raises(ValueError, match="max_iter"):
        geo.boundary_tilting_angle(X, y, max_iter=0)
    with pytest.raises(ValueError, match="init"):
        geo.boundary_tilting_angle(X, y, init="zeros")
    same_means = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    with pytest.raises(ValueError, match="class means coincide"):
        geo.boundary_tilting_angle(same_means, [0, 0, 1, 1])
