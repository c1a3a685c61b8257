"""Tests for geowidgets.geometry._stats: auroc and fpr_at_tpr against scikit-learn."""

import numpy as np
import pytest
import torch

from geowidgets.geometry import auroc, fpr_at_tpr


def _sk_auroc(pos, neg):
    metrics = pytest.importorskip("sklearn.metrics")
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return metrics.roc_auc_score(y, np.r_[pos, neg])


def _sk_fpr_at_tpr(pos, neg, tpr):
    metrics = pytest.importorskip("sklearn.metrics")
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    fpr, tprs, _ = metrics.roc_curve(y, np.r_[pos, neg], drop_intermediate=False)
    return fpr[np.argmax(tprs >= tpr)]


def test_auroc_matches_sklearn_continuous_and_tied():
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.5, 2.0):
        pos, neg = rng.normal(shift, 1, 300), rng.normal(0, 1, 500)
        assert auroc(pos, neg) == pytest.approx(_sk_auroc(pos, neg), abs=1e-12)
    # heavy ties: integer scores
    pos, neg = rng.integers(0, 4, 200).astype(float), rng.integers(0, 3, 150).astype(float)
    assert auroc(pos, neg) == pytest.approx(_sk_auroc(pos, neg), abs=1e-12)


def test_auroc_analytic_values_and_tensor_input():
    assert auroc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auroc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0, 1.0]) == 0.5
    pos = torch.tensor([0.2, 0.9, 0.4], dtype=torch.float32)
    neg = torch.tensor([0.1, 0.4, 0.3], dtype=torch.float32)
    # pairs: (0.2: beats 0.1) 1, (0.9) 3, (0.4: beats 0.1, 0.3, ties 0.4) 2.5 -> 6.5 / 9
    assert isinstance(auroc(pos, neg), float)
    assert auroc(pos, neg) == pytest.approx(6.5 / 9)


@pytest.mark.parametrize("tpr", [0.5, 0.8, 0.95, 1.0])
def test_fpr_at_tpr_matches_roc_curve(tpr):
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1.0, 1, 100), rng.normal(0, 1, 400)
    assert fpr_at_tpr(pos, neg, tpr) == pytest.approx(_sk_fpr_at_tpr(pos, neg, tpr), abs=1e-12)
    ties_pos, ties_neg = rng.integers(0, 5, 100).astype(float), rng.integers(0, 4, 80).astype(float)
    assert fpr_at_tpr(ties_pos, ties_neg, tpr) == pytest.approx(_sk_fpr_at_tpr(ties_pos, ties_neg, tpr), abs=1e-12)


def test_fpr_at_tpr_exact_fraction_is_not_rounded_up():
    pos = np.arange(100, dtype=float)  # 0.95 * 100 = 95.00000000000001 in floating point
    neg = np.array([4.5, 5.5])
    # the 95th largest positive is 5, so only 5.5 is flagged
    assert fpr_at_tpr(pos, neg, 0.95) == 0.5


@pytest.mark.parametrize(
    "pos, neg, match",
    [
        ([], [1.0], "at least 1 rows"),
        ([np.nan], [1.0], "NaN"),
        ([1.0], [np.inf], "NaN/inf"),
        ([[1.0]], [1.0], "shape"),
    ],
)
def test_bad_scores_raise(pos, neg, match):
    with pytest.raises(ValueError, match=match):
        auroc(pos, neg)
    with pytest.raises(ValueError, match=match):
        fpr_at_tpr(pos, neg)


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.5, True, "0.9"])
def test_bad_tpr_raises(tpr):
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr([1.0, 2.0], [0.0], tpr)
