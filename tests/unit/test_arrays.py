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
