"""Distances that select give the float64 answer on hard inputs (common offset, tiny spread, ties).

Every expected value is computed independently: scikit-learn brute force or scipy on float64
copies of the data, scikit-dimension, or distances from float64 differences.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import minimum_spanning_tree as scipy_mst
from scipy.spatial.distance import cdist, pdist, squareform
from sklearn.neighbors import NearestNeighbors

import geowidgets.geometry._knn as knn_mod
from geowidgets import geometry as geo
from geowidgets.geometry._separability import minimum_spanning_tree

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device in this environment")
    ),
    pytest.param("mps", marks=pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no MPS device")),
]
ENGINES = [
    pytest.param(True, id="faiss", marks=pytest.mark.skipif(not knn_mod.faiss_available(), reason="faiss absent")),
    pytest.param(False, id="torch"),
]


@pytest.fixture
def engine(request, monkeypatch):
    monkeypatch.setattr(knn_mod, "_faiss_ok", request.param)
    return request.param


@pytest.fixture(scope="module")
def offset_data():
    """The reported case: 2000 x 32 float32 points at 1e4 + N(0, 1)."""
    return (1e4 + np.random.default_rng(0).normal(size=(2000, 32))).astype(np.float32)


def _recall(idx, ref):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(idx, ref)])


def _exact_neighbours(X, k, metric="euclidean", Y=None):
    """k nearest by float64 differences (scipy cdist), ties to the lower index, self excluded without Y."""
    A = X.astype(np.float64)
    B = A if Y is None else Y.astype(np.float64)
    if metric == "cosine":
        A = A / np.linalg.norm(A, axis=1, keepdims=True)
        B = B / np.linalg.norm(B, axis=1, keepdims=True)
        D = cdist(A, B, "sqeuclidean") / 2  # 1 - cos without its cancellation
    else:
        D = cdist(A, B)
    if Y is None:
        np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, idx, axis=1), idx


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_on_offset_float32_equals_float64_sklearn(offset_data, engine, device, metric):
    X = torch.from_numpy(offset_data).to(device)
    d, i = geo.knn(X, 10, metric=metric)
    d_ref, i_ref = (
        NearestNeighbors(n_neighbors=10, algorithm="brute", metric=metric)
        .fit(offset_data.astype(np.float64))
        .kneighbors()
    )
    assert d.dtype == torch.float32 and d.device.type == device
    assert _recall(i.cpu().numpy(), i_ref) == 1.0
    rtol = 1e-6 if metric == "euclidean" else 1e-4  # sklearn's float64 cosine itself cancels at ~1e-12
    np.testing.assert_allclose(d.cpu().numpy(), d_ref, rtol=rtol)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("device", DEVICES)
def test_knn_queries_against_offset_reference(offset_data, engine, device):
    queries = (1e4 + np.random.default_rng(1).normal(size=(300, 32))).astype(np.float32)
    d, i = geo.knn(torch.from_numpy(queries).to(device), 10, torch.from_numpy(offset_data).to(device))
    d_ref, i_ref = (
        NearestNeighbors(n_neighbors=10, algorithm="brute")
        .fit(offset_data.astype(np.float64))
        .kneighbors(queries.astype(np.float64))
    )
    np.testing.assert_array_equal(i.cpu().numpy(), i_ref)
    np.testing.assert_allclose(d.cpu().numpy(), d_ref, rtol=1e-6)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_spread_tiny_next_to_norm_even_after_centring(engine, metric):
    """Two tight clusters far apart: centring cannot remove their offsets, the float64 fallback must."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(2, 16)) * 1e4
    X = (centres[rng.integers(0, 2, 1000)] + 1e-3 * rng.normal(size=(1000, 16))).astype(np.float32)
    d, i = geo.knn(torch.from_numpy(X), 10, metric=metric)
    d_ref, i_ref = _exact_neighbours(X, 10, metric)
    np.testing.assert_array_equal(i.numpy(), i_ref)
    np.testing.assert_allclose(d.numpy(), d_ref, rtol=1e-6)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_knn_tie_groups_larger_than_the_candidate_pad_go_to_lower_index(engine):
    """60 distinct rows, 12 copies each, k=15: the k-th distance sits inside the next row's tie group of 12."""
    X = np.repeat(np.random.default_rng(3).normal(size=(60, 8)), 12, axis=0)
    X = X[np.random.default_rng(4).permutation(len(X))].astype(np.float32)
    d, i = geo.knn(torch.from_numpy(X), 15)
    d_ref, i_ref = _exact_neighbours(X, 15)
    np.testing.assert_array_equal(i.numpy(), i_ref)
    np.testing.assert_array_equal(d.numpy(), d_ref.astype(np.float32))


def test_knn_graph_repr_is_short(offset_data):
    text = repr(geo.knn_graph(offset_data[:100], k_max=5))
    assert text == "KNNGraph(n=100, k_max=5, metric='euclidean', device='cpu')"


def test_deviation_tables_on_offset_data_equal_float64(offset_data):
    queries = (1e4 + np.random.default_rng(5).normal(size=(200, 32))).astype(np.float32)
    tables = geo.DeviationTables.from_data(torch.from_numpy(queries), torch.from_numpy(offset_data), k_max=10)
    nn = NearestNeighbors(n_neighbors=10, algorithm="brute").fit(offset_data.astype(np.float64))
    d_ref, i_ref = nn.kneighbors(queries.astype(np.float64))
    np.testing.assert_array_equal(tables.query_idx.numpy(), i_ref)
    np.testing.assert_allclose(tables.query_dist.numpy(), d_ref, rtol=1e-6)
    d_ref, i_ref = nn.kneighbors()
    np.testing.assert_array_equal(tables.reference_idx.numpy(), i_ref)


@pytest.mark.parametrize("device", DEVICES)
def test_mst_on_offset_float32_equals_scipy_float64(offset_data, device):
    X = offset_data[:1000]
    tree = scipy_mst(squareform(pdist(X.astype(np.float64)))).data
    _, lengths = minimum_spanning_tree(torch.from_numpy(X).to(device))
    assert float(lengths.double().sum()) == pytest.approx(tree.sum(), rel=1e-5)
    res = geo.mst_separability(torch.from_numpy(X).to(device), max_n=None)
    persistence = np.sort(tree)[::-1] / tree.max()
    assert res.score == pytest.approx(1.0 - persistence.mean(), rel=1e-5)


def test_mst_spread_tiny_next_to_norm_equals_scipy():
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(2, 16)) * 1e4
    X = (centres[rng.integers(0, 2, 600)] + 1e-3 * rng.normal(size=(600, 16))).astype(np.float32)
    tree = scipy_mst(squareform(pdist(X.astype(np.float64)))).data
    _, lengths = minimum_spanning_tree(X)
    np.testing.assert_allclose(np.sort(lengths.astype(np.float64)), np.sort(tree), rtol=1e-5)


def test_diffusion_entropy_on_offset_data_equals_float64(offset_data):
    X = offset_data[:500]
    X64 = X.astype(np.float64)
    bandwidth = np.sqrt(X.shape[1])
    G = np.exp(-cdist(X64, X64, "sqeuclidean") / (2 * bandwidth**2))
    deg = G.sum(1)
    lam = np.sort(np.abs(np.linalg.eigvalsh(G / np.sqrt(np.outer(deg, deg)))))[::-1]
    p = lam / lam.sum() + np.finfo(float).eps
    expected = -(p * np.log2(p)).sum()
    assert geo.dse(X, max_n=None) == pytest.approx(expected, rel=1e-6)


def _manifold(rng, n, d, ambient):
    """n points of a curved d-manifold in R^ambient: (sin, cos) of d angles, linearly embedded."""
    angles = rng.uniform(0, 2 * np.pi, size=(n, d))
    features = np.c_[np.sin(angles), np.cos(angles) * rng.uniform(0.5, 1.5, size=(n, 1))]
    return features @ rng.normal(size=(2 * d, ambient))


def test_twonn_with_duplicates_equals_deduplicated_and_skdim():
    skdim = pytest.importorskip("skdim")
    rng = np.random.default_rng(7)
    X = _manifold(rng, 1500, 5, 20)
    dup = np.r_[X, X[rng.choice(1500, 150, replace=False)]]
    with pytest.warns(UserWarning, match="150 duplicate row.*1500 distinct rows"):
        value = geo.twonn(dup)
    assert value == pytest.approx(geo.twonn(X), rel=1e-12)
    assert value == pytest.approx(skdim.id.TwoNN().fit(X).dimension_, rel=1e-6)
    with pytest.warns(UserWarning, match="150 duplicate row"):
        mle = geo.mle_intrinsic_dimension(dup, 20)
    assert mle == pytest.approx(skdim.id.MLE().fit(X, n_neighbors=20).dimension_, rel=1e-6)


_PEAK_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import torch
    import geowidgets.geometry._knn as knn_mod
    from geowidgets import geometry as geo

    knn_mod._faiss_ok = knn_mod._faiss_ok and sys.argv[1] == "faiss"
    X = torch.randn(400, 20000, generator=torch.Generator().manual_seed(0))
    geo.knn(X[:50], 3)  # warm up the allocator and libraries
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    geo.knn_graph(X, k_max=50)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024)  # ru_maxrss is in KiB on Linux
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units are platform-specific")
@pytest.mark.parametrize("engine", ["faiss", "torch"])
def test_knn_graph_peak_memory_is_a_small_multiple_of_the_input(engine):
    """400 x 20000 float32 (32 MB), k_max=50: gathering all candidates at once would take 1.7 GB."""
    if engine == "faiss" and not knn_mod.faiss_available():
        pytest.skip("faiss absent")
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, engine], capture_output=True, text=True, check=True, env=None
    )
    growth = int(out.stdout.strip().splitlines()[-1])
    input_bytes = 400 * 20000 * 4
    assert growth < 6 * input_bytes + 64 * 2**20


def test_identical_rows_give_zero_distances_and_lower_index_ties_at_once():
    """A layer that ignores its input (e.g. zeroed weights): every distance is 0, ties to the lower index.

    Found by a new user at 10^5 samples, where the tie-heavy search (every row within the rounding
    bound, so re-searched in float64) never finished; the answer is known without searching.
    """
    from geowidgets import geometry as geo

    X = np.full((7, 3), 2.5, dtype=np.float32)
    d, i = geo.knn(X, 3)
    assert np.asarray(d).max() == 0.0
    assert np.asarray(i).tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2]]
    # Independently: a float64 brute force with a stable sort (ties to the lower index).
    full = np.linalg.norm(X[:, None].astype(np.float64) - X[None], axis=-1)
    np.fill_diagonal(full, np.inf)
    assert np.asarray(i).tolist() == np.argsort(full, axis=1, kind="stable")[:, :3].tolist()
    g = geo.approximate_knn_graph(np.full((70_000, 4), 1.0, np.float32), k_max=5)
    assert g.engine == "exact" and np.asarray(g.dist).max() == 0.0
