"""Exact kNN engine: agreement with scikit-learn, graph slicing, ties, kinds, errors."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from geowidgets import geometry as geo
from geowidgets.geometry._knn import resolve_knn


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(500, 16)), rng.normal(size=(300, 16))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("with_y", [False, True])
def test_knn_equals_sklearn_brute_float64(data, metric, with_y):
    X, Y = data
    ref = NearestNeighbors(n_neighbors=10, algorithm="brute", metric=metric)
    if with_y:
        d_ref, i_ref = ref.fit(Y).kneighbors(X)
        d, i = geo.knn(X, 10, Y, metric=metric)
    else:
        d_ref, i_ref = ref.fit(X).kneighbors()
        d, i = geo.knn(X, 10, metric=metric)
    assert isinstance(d, np.ndarray) and d.dtype == np.float64 and i.dtype == np.int64
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(d, d_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_float32_tensor_matches_float64_indices(data, metric):
    X, _ = data
    d, i = geo.knn(torch.tensor(X, dtype=torch.float32), 10, metric=metric)
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float32 and i.dtype == torch.int64
    _, i64 = geo.knn(X, 10, metric=metric)
    assert (i.numpy() == i64).mean() > 0.999  # float32 rounding may swap near-ties only


def test_torch_engine_equals_faiss_engine(data, monkeypatch):
    import geowidgets.geometry._knn as knn_mod

    X = torch.tensor(data[0], dtype=torch.float32)
    d1, i1 = geo.knn(X, 12)
    monkeypatch.setattr(knn_mod, "_faiss_ok", False)
    d2, i2 = geo.knn(X, 12, chunk_size=37)  # odd chunks exercise the self-exclusion offsets
    assert torch.equal(i1, i2)
    torch.testing.assert_close(d1, d2)


@pytest.mark.parametrize("k", [1, 7, 50])
def test_graph_slice_equals_fresh_call(data, k):
    X, _ = data
    g = geo.knn_graph(X, k_max=50)
    d, i = g.slice(k)
    d_ref, i_ref = geo.knn(X, k)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_array_equal(d, d_ref)
    assert np.shares_memory(d, g.dist)  # a view, nothing recomputed


def test_duplicates_are_neighbours_at_zero_but_never_self():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [6.0, 5.0]])
    d, i = geo.knn(X, 2)
    assert i[0, 0] == 1 and i[1, 0] == 0 and d[0, 0] == 0 and d[1, 0] == 0
    assert not (i == np.arange(4)[:, None]).any()


def test_ties_go_to_lower_index():
    X = np.array([[0.0], [1.0], [-1.0], [2.0], [-2.0]])
    _, i = geo.knn(X, 4)
    assert i[0].tolist() == [1, 2, 3, 4]


def test_errors_say_what_is_allowed(data):
    X, _ = data
    with pytest.raises(ValueError, match="k must be <= 499"):
        geo.knn(X, 500)
    with pytest.raises(ValueError, match="k must be >= 1"):
        geo.knn(X, 0)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        geo.knn(bad, 5)
    with pytest.raises(ValueError, match=r"shape \[N, D\]"):
        geo.knn(X[0], 1)
    with pytest.raises(ValueError, match="metric must be one of"):
        geo.knn(X, 3, metric="manhattan")
    with pytest.raises(ValueError, match="same number of columns"):
        geo.knn(X, 3, X[:, :4])
    z = X.copy()
    z[0] = 0
    with pytest.raises(ValueError, match="all-zero row"):
        geo.knn(z, 3, metric="cosine")
    with pytest.raises(ValueError, match="at least 2 rows"):
        geo.knn(X[:1], 1)


def test_resolve_knn_rejects_foreign_or_short_graphs(data):
    X, Y = data
    Xt = torch.tensor(X)
    g = geo.knn_graph(X, k_max=10)
    d, i = resolve_knn(Xt, 5, g)
    assert d.shape == (500, 5)
    with pytest.raises(ValueError, match="exceeds the graph's k_max=10"):
        resolve_knn(Xt, 11, g)
    with pytest.raises(ValueError, match="other data"):
        resolve_knn(torch.tensor(X + 1.0), 5, g)
    with pytest.raises(ValueError, match="metric"):
        resolve_knn(Xt, 5, g, metric="cosine")
    d2, i2 = resolve_knn(Xt, 3, (g.dist, g.idx))
    assert torch.equal(i2, torch.as_tensor(g.idx[:, :3]))


def test_memory_stays_bounded_with_chunks():
    """A 20k x 20k distance matrix would need 1.6 GB; chunking keeps blocks at chunk_size rows."""
    import geowidgets.geometry._knn as knn_mod

    X = torch.randn(3000, 8)
    seen = []
    orig = knn_mod._candidates_torch

    def spy(Q, R, kc, offset):
        seen.append(Q.shape[0])
        return orig(Q, R, kc, offset)

    knn_mod._candidates_torch = spy
    old = knn_mod._faiss_ok
    knn_mod._faiss_ok = False
    try:
        geo.knn(X, 5, chunk_size=512)
    finally:
        knn_mod._candidates_torch = orig
        knn_mod._faiss_ok = old
    assert max(seen) == 512 and sum(seen) == 3000


def test_pair_distances_equal_a_float64_reference_bit_for_bit():
    """The compiled re-scoring kernel: float64 differences of the original rows, summed in feature
    order, the same bits as torch.cdist's direct (no matrix product) float64 evaluation."""
    from geowidgets.geometry._knn import pair_distances

    rng = np.random.default_rng(7)
    X = (rng.normal(size=(300, 37)) + 1e4).astype(np.float32)  # a large common offset
    Xt = torch.from_numpy(X)
    rows = torch.as_tensor(rng.integers(0, 300, size=120))
    cand = torch.as_tensor(rng.integers(0, 300, size=(120, 9)))
    got = pair_distances(Xt, Xt, rows, cand)
    X64 = torch.from_numpy(X.astype(np.float64))
    ref = torch.cdist(X64[rows].unsqueeze(1), X64[cand], compute_mode="donot_use_mm_for_euclid_dist")[:, 0]
    assert got.dtype == torch.float64 and torch.equal(got, ref)
    brute = np.sqrt(((X.astype(np.float64)[rows.numpy(), None] - X.astype(np.float64)[cand.numpy()]) ** 2).sum(-1))
    np.testing.assert_allclose(got.numpy(), brute, rtol=1e-13)
    # Cosine: unit rows through the float64 scales.
    inv = 1.0 / torch.linalg.vector_norm(X64, dim=1)
    unit = X64 * inv.unsqueeze(1)
    ref_cos = torch.cdist(unit[rows].unsqueeze(1), unit[cand], compute_mode="donot_use_mm_for_euclid_dist")[:, 0]
    torch.testing.assert_close(pair_distances(Xt, Xt, rows, cand, inv, inv), ref_cos, rtol=1e-14, atol=0)
    # Non-contiguous, float16 and mixed-dtype inputs are read as float64 values.
    cols = Xt[:, ::2]
    torch.testing.assert_close(
        pair_distances(cols, cols, rows, cand),
        torch.cdist(X64[:, ::2][rows].unsqueeze(1), X64[:, ::2][cand], compute_mode="donot_use_mm_for_euclid_dist")[
            :, 0
        ],
        rtol=1e-15,
        atol=0,
    )
    half = torch.from_numpy(rng.normal(size=(50, 5)).astype(np.float16))
    h64 = half.double()
    r, c = torch.arange(50), torch.as_tensor(rng.integers(0, 50, size=(50, 3)))
    torch.testing.assert_close(pair_distances(half, h64, r, c), torch.linalg.vector_norm(h64[r, None] - h64[c], dim=2))
    with pytest.raises(ValueError, match="both row scales"):
        pair_distances(Xt, Xt, rows, cand, inv, None)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_few_queries_search_the_reference_block_by_block_without_copying_it(monkeypatch, metric):
    """A handful of queries (a path's points) against many rows: the reference is centred block
    by block, never copied whole, and the answer is a float64 brute force's (ties to the lower index)."""
    import geowidgets.geometry._knn as knn_mod

    copies = []
    centred_copy = knn_mod._centred_copy

    def recording(src, *args):
        copies.append(src.shape[0])
        return centred_copy(src, *args)

    monkeypatch.setattr(knn_mod, "_centred_copy", recording)
    monkeypatch.setattr(knn_mod, "_RESCORE_BYTES", 8 * 6 * 50)  # reference blocks of 50 rows
    rng = np.random.default_rng(11)
    R = (rng.normal(size=(1000, 6)) + 300.0).astype(np.float32)  # a large common offset
    R[500] = R[20]  # an exact tie: the lower index must win
    Q = np.concatenate([R[[20, 3]], (rng.normal(size=(6, 6)) + 300.0).astype(np.float32)])
    d, i = geo.knn(Q, 7, Y=R, metric=metric)
    assert 1000 not in copies and copies == [len(Q)]
    R64, Q64 = R.astype(np.float64), Q.astype(np.float64)
    if metric == "cosine":
        R64 /= np.linalg.norm(R64, axis=1, keepdims=True)
        Q64 /= np.linalg.norm(Q64, axis=1, keepdims=True)
        full = ((Q64[:, None] - R64[None]) ** 2).sum(-1) / 2  # the same quantity, from differences
    else:
        full = np.sqrt(((Q64[:, None] - R64[None]) ** 2).sum(-1))
    order = np.argsort(full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(i, order)
    np.testing.assert_allclose(d, np.take_along_axis(full, order, 1), rtol=1e-6, atol=1e-6)
    assert i[0, 0] == 20 and i[0, 1] == 500
