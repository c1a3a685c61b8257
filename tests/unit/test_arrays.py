"""Shared input helpers of geowidgets.geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.preprocessing import normalize

from geowidgets.geometry._arrays import unit_rows


def test_unit_rows_equals_sklearn_normalize():
    X = np.random.default_rng(0).normal(size=(40, 7)) * np.arange(1, 41)[:, None]
    got = unit_rows(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(got, normalize(X, norm="l2"), rtol=1e-15, atol=0)


def test_unit_rows_names_the_first_zero_row_and_the_remedy():
    X = torch.ones(5, 3)
    X[[1, 3]] = 0.0
    with pytest.raises(ValueError, match=r"queries has 2 all-zero row\(s\) \(first: row 1\).*pass normalize=False"):
        unit_rows(X, "queries")
    with pytest.raises(ValueError, match="metric='euclidean'"):
        unit_rows(X, remedy="use metric='euclidean'")


def test_row_norms_and_column_mean_match_float64_numpy_in_small_blocks():
    from geowidgets.geometry._arrays import column_mean, row_norms

    rng = np.random.default_rng(0)
    X = (rng.normal(size=(257, 5)) + 1e4).astype(np.float32)  # a large common offset
    t = torch.from_numpy(X)
    ref_mean = X.astype(np.float64).mean(0)
    np.testing.assert_allclose(column_mean(t, block_bytes=64).numpy(), ref_mean, rtol=1e-14)
    got = row_norms(t, torch.float64, center=column_mean(t), block_bytes=64).numpy()
    np.testing.assert_allclose(got, np.linalg.norm(X.astype(np.float64) - ref_mean, axis=1), rtol=1e-12)
    np.testing.assert_allclose(row_norms(t, torch.float64).numpy(), np.linalg.norm(X.astype(np.float64), axis=1))
    with pytest.raises(ValueError, match=r"1 all-zero row\(s\) \(first: row 3\).*fix it"):
        row_norms(torch.eye(4)[[0, 1, 2, 3, 0]] * torch.tensor([1.0, 1, 1, 0, 1])[:, None], nonzero="fix it")
