"""boundary_search (docs/probes.md#boundary-search): line search and CGBA semicircle against analytic distances."""

import numpy as np
import pytest
import torch
from torch import nn

from geowidgets import geometry as geo


def _linear_model(w, b) -> nn.Linear:
    """Two logits with z1 - z0 = w.x + b (float64)."""
    model = nn.Linear(len(w), 2).double()
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1] = torch.as_tensor(w, dtype=torch.float64)
        model.bias[1] = b
    return model


class _Sphere(nn.Module):
    """Class 1 outside the unit sphere: logits [0, 5(|x| - 1)]."""

    def forward(self, x):
        r = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        return torch.cat([torch.zeros_like(r), 5 * (r - 1)], dim=1)


def test_line_search_linear_analytic():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=6), 0.4
    model = _linear_model(w, b)
    for _ in range(5):
        x = rng.normal(size=6)
        u = rng.normal(size=6)
        u /= np.linalg.norm(u)
        t_star = -(w @ x + b) / (w @ u)
        if t_star < 0:
            u, t_star = -u, -t_star
        hit = geo.boundary_search(model, x, u, tol=1e-6)
        assert hit.found
        assert abs(hit.distance - t_star) < 1e-4
        assert hit.to_class != hit.from_class
        assert np.allclose(hit.point, x + hit.distance * u)
        assert np.allclose(hit.normal, np.sign(hit.to_class - hit.from_class) * w / np.linalg.norm(w), atol=1e-9)


def test_default_direction_is_gradient_and_gives_orthogonal_distance():
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=4), -0.2
    model = _linear_model(w, b)
    x = rng.normal(size=4)
    hit = geo.boundary_search(model, torch.from_numpy(x))
    assert isinstance(hit.distance, float) and isinstance(hit.point, torch.Tensor)
    assert abs(hit.distance - abs(w @ x + b) / np.linalg.norm(w)) < 1e-4


def test_no_boundary_is_not_an_error():
    model = _linear_model([1.0, 0.0], 5.0)
    hit = geo.boundary_search(model, np.zeros(2), np.array([1.0, 0.0]), max_distance=3.0)
    assert not hit.found and hit.distance == np.inf and hit.to_class == -1


def test_semicircle_one_iteration_reaches_orthogonal_distance_on_a_flat_boundary():
    rng = np.random.default_rng(2)
    w, b = rng.normal(size=5), 0.3
    model = _linear_model(w, b)
    x = rng.normal(size=5)
    exact = abs(w @ x + b) / np.linalg.norm(w)
    for seed in range(3):
        # any boundary point: project a random point onto the hyperplane, nudge it across
        p = np.random.default_rng(seed + 10).normal(size=5) * 3
        p -= (w @ p + b) / (w @ w) * w
        side = np.sign(w @ x + b)
        p -= side * 1e-7 * w / np.linalg.norm(w)
        hit = geo.boundary_search(model, x, method="semicircle", start=p, iterations=1, tol=1e-7)
        assert abs(hit.distance - exact) < 1e-4
        assert hit.plane is not None and hit.arcs.shape[0] == 1


def test_semicircle_converges_on_a_sphere():
    model = _Sphere()
    xs = np.array([0.5, 0.0, 0.0])
    start = np.array([-0.3, 0.9, 0.0])
    start = start / np.linalg.norm(start) * 1.0001
    hit = geo.boundary_search(model, xs, method="semicircle", start=start, iterations=30, tol=1e-6)
    d = np.linalg.norm(hit.path[1:] - xs, axis=1)
    assert np.all(np.diff(d) <= 1e-9)
    assert abs(hit.distance - 0.5) < 1e-3
    # without a start point it begins from the line search hit
    hit2 = geo.boundary_search(model, xs, np.array([0.0, 1.0, 0.0]), method="semicircle", iterations=30)
    assert abs(hit2.distance - 0.5) < 1e-3


def test_hidden_layer_search_matches_tail():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(4)
    h = model[:2](x[None])[0].detach()
    u = torch.randn(8)
    hit_layer = geo.boundary_search(model, h, u, layer="1", carrier=x, max_distance=20.0)
    hit_tail = geo.boundary_search(model[2:], h, u, max_distance=20.0)
    assert hit_layer.found == hit_tail.found
    if hit_tail.found:
        assert abs(hit_layer.distance - hit_tail.distance) < 1e-4
    # x given as an input: mapped into the layer first
    hit_in = geo.boundary_search(model, x, u, layer="1", max_distance=20.0)
    assert hit_in.found == hit_tail.found
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0


def test_errors():
    model = _linear_model([1.0, 0.0], 0.0)
    with pytest.raises(ValueError, match="method"):
        geo.boundary_search(model, np.zeros(2), method="bogus")
    with pytest.raises(ValueError, match="direction"):
        geo.boundary_search(model, np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="start"):
        geo.boundary_search(model, np.array([-1.0, 0]), method="semicircle", start=np.array([-2.0, 0]))
