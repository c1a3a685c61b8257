"""Temperature scores and ECE (docs/probes.md): scipy/sklearn references, temperature limits, invariants, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax

from geowidgets import geometry as geo


def _logits(n: int = 400, c: int = 6, seed: int = 0) -> np.ndarray:
    return 3.0 * np.random.default_rng(seed).normal(size=(n, c))


@pytest.mark.parametrize("T", [0.05, 0.7, 1.0, 4.0, 20.0])
def test_scores_match_scipy(T):
    z = _logits()
    s = geo.temperature_scores(z, T)
    p = softmax(z / T, axis=1)
    np.testing.assert_allclose(s.probs, p, rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(s.energy, -T * logsumexp(z / T, axis=1), rtol=1e-6)
    np.testing.assert_allclose(s.entropy, -(p * np.log(np.where(p > 0, p, 1.0))).sum(1), rtol=1e-6, atol=1e-12)
    srt = np.sort(p, axis=1)
    np.testing.assert_allclose(s.confidence, srt[:, -1], rtol=1e-6)
    np.testing.assert_allclose(s.margin, srt[:, -1] - srt[:, -2], rtol=1e-6, atol=1e-12)
    zs = np.sort(z, axis=1)
    np.testing.assert_allclose(s.logit_margin, zs[:, -1] - zs[:, -2], rtol=1e-12)
    np.testing.assert_array_equal(s.predicted, z.argmax(1))
    ablated = geo.temperature_scores(z, T, ablate_outer=True)
    np.testing.assert_allclose(ablated.energy, -logsumexp(z / T, axis=1), rtol=1e-6)


def test_energy_auroc_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    ind = _logits(300, 5, seed=2) + 4 * np.eye(5)[rng.integers(0, 5, 300)]
    ood = _logits(200, 5, seed=3)
    neg_energy_in = -geo.temperature_scores(ind, 2.0).energy
    neg_energy_out = -geo.temperature_scores(ood, 2.0).energy
    labels = np.r_[np.ones(300), np.zeros(200)]
    expected = metrics.roc_auc_score(labels, np.r_[neg_energy_in, neg_energy_out])
    assert geo.auroc(neg_energy_in, neg_energy_out) == pytest.approx(expected, rel=1e-6)


def test_low_temperature_limit():
    z = _logits(200, 7, seed=4)
    T = 1e-3
    s = geo.temperature_scores(z, T)
    assert np.all(np.abs(s.energy + z.max(1)) <= T * math.log(7) + 1e-12)
    clear = s.logit_margin > 0.05  # exp(-0.05 / 1e-3) = 2e-22: the top class takes all the mass
    assert clear.sum() > 180
    assert np.all(s.confidence[clear] > 1 - 1e-12)


def test_high_temperature_limit():
    z = _logits(200, 7, seed=5)
    T = 1e4
    s = geo.temperature_scores(z, T)
    assert np.all(np.abs(s.entropy - math.log(7)) < 1e-3)
    expected = -T * math.log(7) - z.mean(1)
    np.testing.assert_allclose(s.energy, expected, rtol=1e-3)


def test_per_sample_temperature_equals_rowwise_scalar_calls():
    z = _logits(30, 4, seed=6)
    T = np.random.default_rng(7).uniform(0.1, 5.0, 30)
    s = geo.temperature_scores(z, T)
    for i in (0, 11, 29):
        row = geo.temperature_scores(z[i : i + 1], float(T[i]))
        np.testing.assert_allclose(s.probs[i], row.probs[0], rtol=1e-12)
        np.testing.assert_allclose(s.energy[i], row.energy[0], rtol=1e-12)
        np.testing.assert_allclose(s.entropy[i], row.entropy[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(s.temperature, T)


def test_predicted_independent_of_temperature_and_equal_logits():
    z = _logits(100, 5, seed=8)
    preds = [geo.temperature_scores(z, T).predicted for T in (0.01, 1.0, 100.0)]
    for p in preds[1:]:
        np.testing.assert_array_equal(p, preds[0])
    flat = geo.temperature_scores(np.full((3, 4), 2.5), 0.3)
    np.testing.assert_allclose(flat.margin, 0.0, atol=1e-15)
    np.testing.assert_allclose(flat.entropy, math.log(4), rtol=1e-12)
    np.testing.assert_array_equal(flat.predicted, [0, 0, 0])  # ties go to the lower class


def test_tensor_in_tensor_out():
    z = torch.randn(10, 3)
    s = geo.temperature_scores(z, torch.full((10,), 2.0))
    assert isinstance(s.probs, torch.Tensor) and s.predicted.dtype == torch.int64
    assert isinstance(s.temperature, torch.Tensor)


def test_temperature_errors():
    z = _logits(5, 3)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="temperature"):
            geo.temperature_scores(z, bad)
    with pytest.raises(ValueError, match="shape"):
        geo.temperature_scores(z, np.ones(4))
    with pytest.raises(ValueError, match="> 0 everywhere"):
        geo.temperature_scores(z, np.array([1.0, 1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        geo.temperature_scores(np.ones((5, 1)))
    with pytest.raises(ValueError, match="NaN"):
        geo.temperature_scores(np.array([[0.0, np.nan]]))


def test_ece_matches_manual_binning():
    rng = np.random.default_rng(9)
    probs = softmax(_logits(500, 4, seed=10), axis=1)
    labels = rng.integers(0, 4, 500)
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, 11)
    expected = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            expected += inside.mean() * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
    assert geo.expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected, rel=1e-12)


def test_ece_zero_for_perfectly_calibrated_and_one_for_confidently_wrong():
    # 10 samples at confidence 0.8 of which 8 are right: calibrated.
    probs = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert geo.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    wrong = np.tile([1.0, 0.0], (5, 1))
    assert geo.expected_calibration_error(wrong, np.ones(5, dtype=int)) == pytest.approx(1.0)


def test_ece_errors():
    probs = np.tile([0.5, 0.5], (4, 1))
    with pytest.raises(ValueError, match="sum to 1"):
        geo.expected_calibration_error(np.ones((4, 2)) * 0.3, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="did you pass logits"):
        geo.expected_calibration_error(np.array([[2.0, -1.0]]), [0])
    with pytest.raises(ValueError, match="class indices"):
        geo.expected_calibration_error(probs, [0, 1, 2, 0])
    with pytest.raises(ValueError, match="shape"):
        geo.expected_calibration_error(probs, [0, 1])
    with pytest.raises(ValueError, match="n_bins"):
        geo.expected_calibration_error(probs, [0, 1, 0, 1], n_bins=0)
