"""Projections onto a plane are made a block of rows at a time, with the whole-matrix values.

The reference is the whole-matrix float64 expression the plane and the slice used before; the
blocks are made tiny (a few rows) so that every path, the last longer block included, is taken.
"""

import numpy as np
import pytest
import torch
from torch import nn

from geowidgets import geometry as geo
from geowidgets.geometry import _plane
from geowidgets.geometry._plane import Plane, _row_blocks


def _whole(points: torch.Tensor, plane: Plane) -> tuple[torch.Tensor, torch.Tensor]:
    pts = points.reshape(points.shape[0], -1).double()
    coords = (pts - plane.origin) @ plane.basis.T
    dist = torch.linalg.vector_norm(pts - plane.origin - coords @ plane.basis, dim=1)
    return coords, dist


def _data(n: int = 103, d: int = 6) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0)) * 3 + 1


@pytest.mark.parametrize("n, step", [(10, 3), (9, 3), (3, 5), (1, 4), (0, 2), (7, 1)])
def test_row_blocks_cover_the_rows_once_none_shorter_than_a_step(n, step):
    blocks = _row_blocks(n, step)
    assert [a for a, _ in blocks][0] == 0 and blocks[-1][1] == n
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(blocks, blocks[1:]))
    assert all(b - a >= min(n, step) for a, b in blocks)


@pytest.mark.parametrize("scratch", [None, 8 * 6 * 4])  # default blocks, or 4 rows of 6 float64 values
def test_plane_coords_and_distance_equal_the_whole_matrix(monkeypatch, scratch):
    if scratch is not None:
        monkeypatch.setattr(_plane, "_PROJECT_BYTES", scratch)
    X = _data()
    plane = Plane.through(X[0], X[1], X[2])
    coords, dist = _whole(X, plane)
    assert torch.equal(plane.coords(X), coords)
    assert torch.equal(plane.distance(X), dist)
    assert np.array_equal(plane.coords(X.numpy().astype(np.float64)), coords)  # a numpy float64 input
    with pytest.raises(ValueError, match="points contains 2 NaN/inf value"):
        Y = X.clone()
        Y[5, 1], Y[90, 0] = float("nan"), float("inf")
        plane.coords(Y)


def test_decision_slice_data_projection_equals_the_whole_matrix(monkeypatch):
    monkeypatch.setattr(_plane, "_PROJECT_BYTES", 8 * 8 * 5)  # 5 rows of the layer's 8 values per block
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    X = _data()
    with torch.no_grad():
        H = model[1](model[0](X))
    # Layer space: data are the layer's rows.
    plane = Plane.through(H[0], H[1], H[2])
    s = geo.decision_slice(model, plane, layer="1", resolution=8, data=H, carrier=X[0], plane_space="layer")
    coords, dist = _whole(H, plane)
    assert torch.equal(s.data_coords, coords) and torch.equal(s.data_distance, dist)
    # Input samples mapped through the model, 4 per forward pass: blocks hold whole batches.
    s2 = geo.decision_slice(
        model, Plane.through(X[0], X[1], X[2]), layer="1", resolution=8, data=X, batch_size=4, plane_space="input"
    )
    head = _plane.patched_head(model, "1", [("x", X[0])], 4, "")
    mapped = head.to_space(X).double()
    coords2, dist2 = _whole(mapped, s2.plane)
    assert torch.equal(s2.data_coords, coords2) and torch.equal(s2.data_distance, dist2)
    # Input space.
    lin = nn.Linear(6, 3).eval()
    s3 = geo.decision_slice(lin, Plane.through(X[0], X[1], X[2]), resolution=8, data=X.numpy())
    coords3, dist3 = _whole(X, s3.plane)
    assert np.array_equal(s3.data_coords, coords3.numpy()) and np.array_equal(s3.data_distance, dist3.numpy())


def test_no_float64_copy_of_all_the_data(monkeypatch):
    """The projection never makes the [M, D] float64 points at once (neither by .double() nor torch.empty)."""
    monkeypatch.setattr(_plane, "_PROJECT_BYTES", 8 * 6 * 10)  # 10 rows per block
    X = _data(200)
    plane = Plane.through(X[0], X[1], X[2])
    real_double, real_empty = torch.Tensor.double, torch.empty
    rows = []

    def record(out):
        if out.dtype == torch.float64 and out.ndim == 2 and out.shape[1] == 6:
            rows.append(out.shape[0])
        return out

    monkeypatch.setattr(torch.Tensor, "double", lambda self, *a, **kw: record(real_double(self, *a, **kw)))
    monkeypatch.setattr(torch, "empty", lambda *a, **kw: record(real_empty(*a, **kw)))
    plane.coords(X)
    plane.distance(X)
    model = nn.Sequential(nn.Linear(6, 3)).eval()
    geo.decision_slice(model, plane, resolution=8, data=X)
    monkeypatch.setattr(torch.Tensor, "double", real_double)
    monkeypatch.setattr(torch, "empty", real_empty)
    assert rows and max(rows) < 20


def test_data_with_nan_is_refused():
    X = _data()
    X[50, 3] = float("nan")
    with pytest.raises(ValueError, match="data contain NaN/inf values"):
        geo.decision_slice(nn.Linear(6, 2), Plane.through(X[0], X[1], X[2]), resolution=8, data=X)
