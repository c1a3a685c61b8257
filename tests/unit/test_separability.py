"""Tests for geowidgets.geometry._separability: MST / H0 separability (docs/probes.md#mst-separability)."""

import numpy as np
import pytest
import torch

from geowidgets.geometry import MSTSeparability, mst_separability
from geowidgets.geometry._separability import minimum_spanning_tree


def _blobs(rng, delta, n=200, dim=10):
    shift = np.zeros(dim)
    shift[0] = delta
    return np.r_[rng.normal(size=(n, dim)), rng.normal(size=(n, dim)) + shift], np.repeat([0, 1], n)


def test_v1_lengths_equal_ripser_and_scipy():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(150, 6)), rng.normal(size=(100, 6)) * 0.5 + 5]
    res = mst_separability(X)
    lengths = np.sort(res.lengths)
    ripser = pytest.importorskip("ripser")
    deaths = ripser.ripser(X, maxdim=0)["dgms"][0][:, 1]
    np.testing.assert_allclose(lengths, np.sort(deaths[np.isfinite(deaths)]), rtol=1e-5)
    sparse = pytest.importorskip("scipy.sparse.csgraph")
    distance = pytest.importorskip("scipy.spatial.distance")
    tree = sparse.minimum_spanning_tree(distance.squareform(distance.pdist(X)))
    np.testing.assert_allclose(lengths, np.sort(tree.data), rtol=1e-10)


def test_edges_form_a_spanning_tree_in_original_indices():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    res = mst_separability(X, max_n=120, random_state=3)
    assert isinstance(res, MSTSeparability) and res.n_used == 120
    assert res.edges.shape == (119, 2) and res.edges.dtype == np.int64
    used = set(res.indices.tolist())
    assert set(res.edges.ravel().tolist()) == used
    np.testing.assert_allclose(res.lengths, np.linalg.norm(X[res.edges[:, 0]] - X[res.edges[:, 1]], axis=1))
    # connected: union-find over the edges leaves one component
    parent = {i: i for i in used}

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in res.edges:
        parent[find(a)] = find(b)
    assert len({find(i) for i in used}) == 1
    assert np.all(np.diff(res.persistence) <= 0) and res.persistence[0] == 1.0
    assert res.score == pytest.approx(1 - res.persistence.mean())
    # the subsample is reproducible and equals running on those rows
    again = mst_separability(X, max_n=120, random_state=3)
    np.testing.assert_array_equal(again.indices, res.indices)
    direct = mst_separability(X[res.indices], max_n=None)
    assert direct.score == pytest.approx(res.score, rel=1e-12)
    assert mst_separability(X, max_n=None).n_used == 300


def test_v2_score_increases_with_separation_and_cross_fraction():
    rng = np.random.default_rng(0)
    scores = {}
    for delta in (0, 10, 20, 40, 80):
        X, y = _blobs(rng, delta)
        res = mst_separability(X, y)
        scores[delta] = res.score
        if delta >= 20:
            assert res.cross_fraction == pytest.approx(1 / 399)
    values = [scores[d] for d in (0, 10, 20, 40, 80)]
    assert np.all(np.diff(values) > 0), scores
    assert scores[80] > 0.9 and scores[0] < 0.6


def test_cross_fraction_random_labels():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 5))
    y = rng.integers(0, 3, 600)
    counts = np.bincount(y)
    expected = 1 - (counts * (counts - 1)).sum() / (600 * 599)
    assert mst_separability(X, y).cross_fraction == pytest.approx(expected, abs=0.06)


def test_v3_invariant_to_rotation_shift_and_scale():
    rng = np.random.default_rng(3)
    X, y = _blobs(rng, 15, n=100)
    rotation, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    base = mst_separability(X, y)
    moved = mst_separability(2.5 * X @ rotation - 7.0, y)
    assert moved.score == pytest.approx(base.score, rel=1e-9)
    np.testing.assert_allclose(moved.persistence, base.persistence, rtol=1e-9)
    assert moved.cross_fraction == base.cross_fraction


def test_normalize_and_tensor_kind():
    rng = np.random.default_rng(4)
    X = torch.from_numpy(rng.normal(size=(80, 3)).astype(np.float32)) + 2
    res = mst_separability(X, normalize=True)
    unit = X / torch.linalg.vector_norm(X, dim=1, keepdim=True)
    ref = mst_separability(unit)
    assert isinstance(res.persistence, torch.Tensor) and res.edges.dtype == torch.int64
    assert res.score == pytest.approx(ref.score, rel=1e-6)


def test_minimum_spanning_tree_small_exact():
    edges, lengths = minimum_spanning_tree(np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 2.0]]))
    assert sorted(map(tuple, np.sort(edges, axis=1).tolist())) == [(0, 1), (0, 2), (2, 3)]
    np.testing.assert_allclose(np.sort(lengths), [1.0, 2.0, 5.0])


def test_errors():
    X = np.random.default_rng(5).normal(size=(20, 3))
    with pytest.raises(ValueError, match="length 19"):
        mst_separability(X, np.zeros(19))
    with pytest.raises(ValueError, match="max_n"):
        mst_separability(X, max_n=1)
    with pytest.raises(ValueError, match="identical"):
        mst_separability(np.ones((5, 3)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        mst_separability(X[:1])
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        mst_separability(bad)
    zero = X.copy()
    zero[3] = 0
    with pytest.raises(ValueError, match="all-zero"):
        mst_separability(zero, normalize=True)


@pytest.mark.parametrize("d", [16, 512])
def test_expansion_tree_is_kept_when_pairs_are_well_apart(monkeypatch, d):
    """Activation-like rows (a common offset, no near-duplicates): the error bound per distance is
    ε/d_lo, not √ε, so the tree chosen on the expansion's matrix is kept (no second, direct matrix),
    and its total length is scipy's float64 MST length. A duplicate row still takes the direct matrix."""
    from scipy.sparse.csgraph import minimum_spanning_tree as scipy_mst
    from scipy.spatial.distance import pdist, squareform

    from geowidgets.geometry import _separability

    calls = []
    direct = _separability._direct_distance_matrix
    monkeypatch.setattr(_separability, "_direct_distance_matrix", lambda X: (calls.append(1), direct(X))[1])
    rng = np.random.default_rng(d)
    X = np.maximum(rng.normal(size=(500, d)) + 0.3, 0).astype(np.float32) + 5.0  # ReLU-like, offset
    _, lengths = minimum_spanning_tree(X)
    assert calls == []
    ref = scipy_mst(squareform(pdist(X.astype(np.float64)))).sum()
    assert float(np.sum(lengths.astype(np.float64))) == pytest.approx(ref, rel=1e-7)
    X[7] = X[3]  # a duplicate pair: no distance bounds the pairs from below, the error bound is back to √ε
    _, lengths = minimum_spanning_tree(X)
    assert calls == [1]
    # scipy reads a zero entry as no edge: its reference is the tree without the copy (+ a 0 edge).
    ref = scipy_mst(squareform(pdist(np.delete(X, 7, axis=0).astype(np.float64)))).sum()
    assert float(np.sum(lengths.astype(np.float64))) == pytest.approx(ref, rel=1e-7)
