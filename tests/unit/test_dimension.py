"""Tests for geowidgets.geometry._dimension: TwoNN and MLE intrinsic dimension (docs/probes.md#twonn)."""

import numpy as np
import pytest
import torch

from geowidgets.geometry import knn_graph, mle_intrinsic_dimension, twonn


def _subspace(rng, n, d, ambient):
    basis, _ = np.linalg.qr(rng.normal(size=(ambient, d)))
    return rng.normal(size=(n, d)) @ basis.T


@pytest.fixture(scope="module")
def five_d():
    return _subspace(np.random.default_rng(0), 2000, 5, 100)


def test_v1_five_dimensional_subspace(five_d):
    graph = knn_graph(five_d, 20)
    for method in ("linear", "mle"):
        assert twonn(five_d, method=method, knn=graph) == pytest.approx(5, abs=0.5)
    for average in ("harmonic", "mean", "median"):
        assert mle_intrinsic_dimension(five_d, 20, average=average, knn=graph) == pytest.approx(5, abs=0.5)


@pytest.mark.parametrize("method", ["linear", "mle"])
@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_v2_twonn_equals_skdim(five_d, method, fraction):
    skdim = pytest.importorskip("skdim")
    X = five_d[:800]
    expected = skdim.id.TwoNN(discard_fraction=fraction, method=method).fit(X).dimension_
    assert twonn(X, discard_fraction=fraction, method=method) == pytest.approx(expected, rel=1e-6)
    low = _subspace(np.random.default_rng(1), 600, 3, 10)  # D <= 25: skdim's other neighbour path
    expected = skdim.id.TwoNN(discard_fraction=fraction, method=method).fit(low).dimension_
    assert twonn(low, discard_fraction=fraction, method=method) == pytest.approx(expected, rel=1e-6)


def test_v2_mle_equals_skdim(five_d):
    skdim = pytest.importorskip("skdim")
    X = five_d[:800]
    assert mle_intrinsic_dimension(X, 20) == pytest.approx(skdim.id.MLE().fit(X, n_neighbors=20).dimension_, rel=1e-6)
    for average, comb in (("mean", "mean"), ("median", "median")):
        expected = skdim.id.MLE().fit(X, n_neighbors=12, comb=comb).dimension_
        assert mle_intrinsic_dimension(X, 12, average=average) == pytest.approx(expected, rel=1e-6)
    expected = skdim.id.MLE(unbiased=True).fit(X, n_neighbors=10).dimension_
    assert mle_intrinsic_dimension(X, 10, unbiased=True) == pytest.approx(expected, rel=1e-6)
    value, local = mle_intrinsic_dimension(X, 20, pointwise=True)
    np.testing.assert_allclose(local, skdim.id.MLE().fit(X, n_neighbors=20).dimension_pw_, rtol=1e-6)
    assert value == pytest.approx(1 / np.mean(1 / local), rel=1e-12)


def test_v3_plane_and_blob_pointwise_and_invariance():
    rng = np.random.default_rng(2)
    plane = _subspace(rng, 1500, 2, 20)
    blob = _subspace(rng, 1500, 6, 20) + 100 * np.eye(20)[0]
    X = np.r_[plane, blob]
    _, local = mle_intrinsic_dimension(X, 20, pointwise=True)
    assert np.median(local[:1500]) == pytest.approx(2, abs=0.3)
    assert np.median(local[1500:]) == pytest.approx(6, abs=0.6)
    rotation, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    moved = 3.7 * X @ rotation + 11.0
    for f in (lambda A: twonn(A), lambda A: twonn(A, method="mle"), lambda A: mle_intrinsic_dimension(A, 20)):
        assert f(moved) == pytest.approx(f(X), rel=1e-6)


def test_torch_input_and_graph_reuse():
    X = torch.from_numpy(_subspace(np.random.default_rng(3), 500, 3, 8).astype(np.float32))
    graph = knn_graph(X, 25)
    assert twonn(X, knn=graph) == twonn(X)
    value, local = mle_intrinsic_dimension(X, 20, pointwise=True, knn=graph)
    assert isinstance(value, float) and isinstance(local, torch.Tensor) and local.shape == (500,)
    assert value == pytest.approx(mle_intrinsic_dimension(X, 20), rel=1e-12)


def test_duplicates_are_removed_with_a_truthful_warning():
    rng = np.random.default_rng(4)
    X = _subspace(rng, 400, 3, 6)
    dup = np.r_[X, X[:10]]
    with pytest.warns(UserWarning, match="10 duplicate row.*400 distinct rows"):
        value = twonn(dup, method="mle")
    assert value == pytest.approx(twonn(X, method="mle"), rel=1e-12)
    skdim = pytest.importorskip("skdim")
    assert value == pytest.approx(skdim.id.TwoNN(method="mle").fit(X).dimension_, rel=1e-6)
    with pytest.warns(UserWarning, match="10 duplicate row"):
        value, local = mle_intrinsic_dimension(dup, 10, pointwise=True)
    clean, clean_local = mle_intrinsic_dimension(X, 10, pointwise=True)
    assert value == pytest.approx(clean, rel=1e-12)
    np.testing.assert_allclose(local, np.r_[clean_local, clean_local[:10]], rtol=1e-12)
    with pytest.raises(ValueError, match="only 2 distinct row"):
        twonn(np.repeat(X[:2], 5, axis=0))


def test_errors():
    X = np.random.default_rng(5).normal(size=(50, 4))
    with pytest.raises(ValueError, match="method"):
        twonn(X, method="ols")
    with pytest.raises(ValueError, match="discard_fraction"):
        twonn(X, discard_fraction=1.0)
    with pytest.raises(ValueError, match="discard_fraction > 0"):
        twonn(X, discard_fraction=0.0)
    assert np.isfinite(twonn(X, discard_fraction=0.0, method="mle"))
    with pytest.raises(ValueError, match="k=50 is too large"):
        mle_intrinsic_dimension(X, 50)
    with pytest.raises(ValueError, match="k >= 2"):
        mle_intrinsic_dimension(X, 1)
    with pytest.raises(ValueError, match="k >= 3"):
        mle_intrinsic_dimension(X, 2, unbiased=True)
    with pytest.raises(ValueError, match="average"):
        mle_intrinsic_dimension(X, 5, average="geometric")
    with pytest.raises(ValueError, match="other data"):
        twonn(X, knn=knn_graph(X[::-1].copy() * 2, 5))
    with pytest.raises(ValueError, match="k_max"):
        mle_intrinsic_dimension(X, 10, knn=knn_graph(X, 5))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        twonn(bad)
    with pytest.raises(ValueError, match="only 1 distinct row"):
        mle_intrinsic_dimension(np.zeros((10, 3)), 3)
