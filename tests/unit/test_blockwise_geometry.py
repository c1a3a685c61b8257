"""Layer metrics summed over blocks of rows equal float64 references, and never copy a layer whole in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from geowidgets import geometry as geo
from geowidgets.geometry import _arrays, _spectra

SHAPES = [(300, 12), (12, 40)]  # N > D (D-side Gram over row blocks), N < D (N-side Gram over column blocks)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few rows (or columns), so every sum runs over many blocks."""
    monkeypatch.setattr(_spectra, "_BLOCK_BYTES", 8 * 40 * 5)
    monkeypatch.setattr(_arrays, "_FINITE_BLOCK_BYTES", 4 * 8 * 5)  # as_tensor's NaN/inf count: 5 rows of 8


def _offset_data(shape, seed=0, offset=1e3):
    rng = np.random.default_rng(seed)
    n, d = shape
    X = rng.normal(size=shape) * rng.uniform(0.5, 2.0, size=d) + offset  # a large common offset
    y = np.arange(n) % 3
    X[y == 1, 0] += 2.0
    return X, y


def _svals(M):
    return np.linalg.svd(M, compute_uv=False)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("normalize_rows", [False, True])
def test_blockwise_singular_values_match_numpy_svd(small_blocks, shape, center, normalize_rows):
    X, _ = _offset_data(shape, offset=3.0 if normalize_rows else 1e3)
    Z = X / np.linalg.norm(X, axis=1, keepdims=True) if normalize_rows else X
    Z = Z - Z.mean(0) if center else Z
    expected = _svals(Z)
    for given in (X, torch.from_numpy(X), torch.from_numpy(X).float()):
        s = np.asarray(geo.singular_values(given, center=center, normalize_rows=normalize_rows), dtype=np.float64)
        if isinstance(given, torch.Tensor) and given.dtype == torch.float32:
            ref = _svals(
                (lambda A: A - A.mean(0) if center else A)(
                    (lambda A: A / np.linalg.norm(A, axis=1, keepdims=True) if normalize_rows else A)(
                        given.double().numpy()
                    )
                )
            )
        else:
            ref = expected
        # the Gram route is exact to ~1e-8 of σ_max (see _singular_values_f64)
        np.testing.assert_allclose(s, ref, rtol=1e-9, atol=1e-7 * ref[0])


@pytest.mark.parametrize("shape", SHAPES)
def test_blockwise_rankme_vne_and_pair_match_unblocked(small_blocks, shape, monkeypatch):
    X, _ = _offset_data(shape, offset=10.0)
    t = torch.from_numpy(X)
    raw, centred = _spectra._raw_and_centred_f64(t)
    np.testing.assert_allclose(raw.numpy(), _svals(X), rtol=1e-9)
    expected = _svals(X - X.mean(0))
    np.testing.assert_allclose(centred.numpy(), expected, rtol=1e-7, atol=1e-7 * expected[0])
    blocked = (geo.rankme(X), geo.von_neumann_entropy(X), geo.rankme(X, center=True))
    monkeypatch.setattr(_spectra, "_BLOCK_BYTES", 2**30)  # one block
    whole = (geo.rankme(X), geo.von_neumann_entropy(X), geo.rankme(X, center=True))
    np.testing.assert_allclose(blocked, whole, rtol=1e-12)


def test_blockwise_normalised_rows_reject_zero_rows(small_blocks):
    X = np.ones((50, 4))
    X[[7, 30]] = 0
    with pytest.raises(ValueError, match=r"2 all-zero row\(s\) \(first: row 7\)"):
        geo.singular_values(X, normalize_rows=True)


def _fisher_reference(X, y, kind, shrinkage=1e-3):
    n, d = X.shape
    classes = np.unique(y)
    mu = X.mean(0)
    means = np.stack([X[y == c].mean(0) for c in classes])
    counts = np.array([(y == c).sum() for c in classes])
    W = X - means[np.searchsorted(classes, y)]
    Sw = W.T @ W / n
    B = np.sqrt(counts / n)[:, None] * (means - mu)
    Sb = B.T @ B
    if kind == "trace":
        return np.trace(Sb) / np.trace(Sw)
    if kind == "lda":
        gamma = shrinkage * np.trace(Sw) / d
        return np.trace(np.linalg.solve(Sw + gamma * np.eye(d), Sb))
    var = np.stack([(W[y == c] ** 2).mean(0) for c in classes])  # population variances
    return np.max((means[0] - means[1]) ** 2 / var.sum(0))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["trace", "lda", "fdr"])
def test_blockwise_fisher_matches_float64_numpy(small_blocks, shape, kind):
    X, y = _offset_data(shape, seed=1)
    if kind == "fdr":
        y = y % 2
    expected = _fisher_reference(X, y, kind)
    for given in (X, torch.from_numpy(X)):
        assert float(geo.fisher_ratio(given, y, kind)) == pytest.approx(expected, rel=1e-8)
    X32 = torch.from_numpy(X).float()  # float32 input: the reference is its float64 value
    assert float(geo.fisher_ratio(X32, y, kind)) == pytest.approx(
        _fisher_reference(X32.double().numpy(), y, kind), rel=1e-8
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_blockwise_neural_collapse_matches_float64_numpy(small_blocks, shape):
    X, y = _offset_data(shape, seed=2)
    n = X.shape[0]
    classes = np.unique(y)
    means = np.stack([X[y == c].mean(0) for c in classes])
    M = means - X.mean(0)
    W = X - means[y]
    Sw = W.T @ W / n
    Sb = M.T @ M / len(classes)
    nc1 = np.trace(Sw @ np.linalg.pinv(Sb, rcond=1e-12)) / len(classes)
    rng = np.random.default_rng(3)
    weight, bias = rng.normal(size=(3, X.shape[1])), rng.normal(size=3)
    logits_pred = (X @ weight.T + bias).argmax(1)
    nearest = ((X[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    res = geo.neural_collapse(X, y, weight=weight, bias=bias)
    assert res.nc1 == pytest.approx(nc1, rel=1e-6)
    assert res.nc4 == pytest.approx(float((logits_pred != nearest).mean()), abs=0)
    res = geo.neural_collapse(torch.from_numpy(X), y, predictions=y)
    assert res.nc4 == pytest.approx(float((y != nearest).mean()), abs=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_blockwise_coding_rate_matches_logdet(small_blocks, shape):
    X, y = _offset_data(shape, seed=4, offset=1.0)
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    n, d = Z.shape
    eps2 = 0.5

    def rate(A):
        return 0.5 * np.linalg.slogdet(np.eye(d) + d / (A.shape[0] * eps2) * A.T @ A)[1]

    R = rate(Z)
    Rc = sum((y == c).sum() / n * rate(Z[y == c]) for c in np.unique(y))
    res = geo.coding_rate(X, y)
    assert res.R == pytest.approx(R, rel=1e-9)
    assert res.Rc == pytest.approx(Rc, rel=1e-9)


class _Float64Sizes(TorchFunctionMode):
    """Records the size of every float64 tensor a torch function returns."""

    def __init__(self):
        super().__init__()
        self.sizes: list[int] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                self.sizes.append(t.numel())
        return out


@pytest.mark.parametrize(
    "call",
    [
        lambda X, y: geo.rankme(X),
        lambda X, y: geo.von_neumann_entropy(X),
        lambda X, y: geo.coding_rate(X, y),
        lambda X, y: geo.fisher_ratio(X, y),
        lambda X, y: geo.fisher_ratio(X, y, "lda"),
        lambda X, y: geo.fisher_ratio(X, y % 2, "fdr"),
        lambda X, y: geo.neural_collapse(X, y),
        lambda X, y: geo.layer_profile({"a": X}, y, metrics=("rankme", "vne", "fisher", "nc1", "coding_rate")),
    ],
)
def test_no_float64_copy_of_the_whole_layer(call):
    """With N·D far above one block, no float64 tensor of N·D entries (a copy of the layer) is made."""
    n, d = 20000, 64  # 10 MB in float64; blocks of 256 KiB (1 MiB for Gram matrices) make many of them
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(0)) + 5.0
    y = torch.arange(n) % 3
    _spectra.clear_spectral_cache()
    old = _spectra._BLOCK_BYTES
    _spectra._BLOCK_BYTES = 2**18
    try:
        with _Float64Sizes() as mode:
            call(X, y)
    finally:
        _spectra._BLOCK_BYTES = old
    assert mode.sizes, "nothing was computed in float64"
    assert max(mode.sizes) < n * d // 4


def test_spectral_cache_accepts_inference_tensors():
    """Captured activations are inference tensors, which have no version counter."""
    geo.clear_spectral_cache()
    with torch.inference_mode():
        X = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    first = geo.singular_values(X)
    assert geo.singular_values(X) is first  # served from the cache
    assert geo.rankme(X) == pytest.approx(geo.rankme(X.clone()), rel=1e-12)
    del X
    assert len(_spectra._SPECTRAL_CACHE) == 0


@pytest.mark.parametrize(
    "call",
    [
        geo.rankme,
        geo.twonn,
        lambda X: geo.knn_label_agreement(X, np.arange(len(X)) % 2, k=3),
        lambda X: geo.fisher_ratio(X, np.arange(len(X)) % 2),
        geo.mst_separability,
        lambda X: geo.layer_profile({"a": X}, metrics=("rankme",)),
    ],
)
def test_nan_inf_check_over_blocks_counts_like_as_tensor(small_blocks, call):
    X = np.random.default_rng(0).normal(size=(400, 8))
    X[[3, 390], [1, 5]] = np.nan
    X[399, 0] = np.inf  # in the last block
    with pytest.raises(ValueError, match=r"contains 3 NaN/inf value\(s\); only finite values are allowed"):
        call(X)
    with pytest.raises(ValueError, match=r"contains 3 NaN/inf"):
        call(torch.from_numpy(X).float())


def test_finite_check_accepts_finite_data_whose_sum_overflows(small_blocks):
    X = np.full((200, 3), 3e38, dtype=np.float32)  # finite, but the float32 sum is inf
    assert geo.rankme(torch.from_numpy(X)) == pytest.approx(1.0, abs=1e-5)
