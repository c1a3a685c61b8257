"""Decision slices (docs/probes.md#decision-slices): analytic boundaries, hidden-layer patching, temperature."""

import numpy as np
import pytest
import torch
from torch import nn

from geowidgets import geometry as geo
from geowidgets.geometry._slices import DecisionSlice


def _linear_model(w, b) -> nn.Linear:
    """Two logits with z1 - z0 = w.x + b."""
    model = nn.Linear(len(w), 2).double()
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1] = torch.as_tensor(w, dtype=torch.float64)
        model.bias[1] = b
    return model


def _mlp(seed=0, d_in=6, classes=4) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, classes))


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_plane_through_and_directions():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 7))
    p = geo.Plane.through(a, b, c)
    assert np.allclose(p.basis.numpy() @ p.basis.numpy().T, np.eye(2), atol=1e-12)
    assert np.allclose(p.distance(np.stack([a, b, c])), 0, atol=1e-12)
    coords = p.anchor_coords()
    assert np.allclose(coords[0], 0) and np.isclose(coords[1, 0], np.linalg.norm(b - a)) and np.isclose(coords[1, 1], 0)
    assert np.allclose(p.point(coords[:, 0], coords[:, 1]), np.stack([a, b, c]))
    with pytest.raises(ValueError, match="collinear"):
        geo.Plane.from_directions(a, b, 2 * b)
    with pytest.raises(ValueError, match="collinear"):
        geo.Plane.through(a, b, a + 3 * (b - a))


def test_linear_slice_boundary_within_one_cell():
    rng = np.random.default_rng(1)
    w, bias = rng.normal(size=5), 0.3
    model = _linear_model(w, bias)
    a, b, c = rng.normal(size=(3, 5))
    plane = geo.Plane.through(a, b, c)
    G = 64
    s = geo.decision_slice(model, plane, resolution=G)
    al, be = s.alphas, s.betas
    e1, e2, o = plane.basis[0].numpy(), plane.basis[1].numpy(), plane.origin.numpy()
    f = al[None, :] * (w @ e1) + be[:, None] * (w @ e2) + (w @ o + bias)  # analytic z1 - z0 at each pixel
    truth = (f > 0).astype(np.int64)
    wrong = s.classes != truth
    # every misclassified pixel is within one cell of the analytic line
    cell = np.hypot(al[1] - al[0], be[1] - be[0])
    slope = np.hypot(w @ e1, w @ e2)
    assert np.all(np.abs(f[wrong]) / slope <= cell)
    assert (s.classes == 1).any() and (s.classes == 0).any()
    assert s.classes.shape == (G, G) and s.logits.shape == (G, G, 2)


def test_slice_extent_orientation():
    model = _linear_model([1.0, 0.0], 0.0)  # class 1 where x > 0
    plane = geo.Plane.through(np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    s = geo.decision_slice(model, plane, resolution=5, extent=(-1, 1, -2, 2))
    assert s.classes.tolist() == [[0, 0, 0, 1, 1]] * 5  # columns are alpha
    model2 = _linear_model([0.0, 1.0], 0.0)
    s2 = geo.decision_slice(model2, plane, resolution=5, extent=(-1, 1, -2, 2))
    assert s2.classes[:, 0].tolist() == [0, 0, 0, 1, 1]  # rows are beta, row 0 at the bottom


@pytest.mark.parametrize("layer_idx", [1, 3])
def test_hidden_layer_slice_equals_tail(layer_idx):
    model = _mlp()
    torch.manual_seed(3)
    x = torch.randn(50, 6)
    h = model[: layer_idx + 1](x).detach()
    a, b, c = h[0], h[1], h[2]
    plane = geo.Plane.through(a, b, c)
    tail = model[layer_idx + 1 :]
    ref = geo.decision_slice(tail, plane, resolution=40)
    # anchors given in layer space (a carrier input is needed)
    got = geo.decision_slice(model, plane, layer=str(layer_idx), resolution=40, carrier=x[7])
    assert torch.equal(got.classes, ref.classes)
    assert torch.allclose(got.confidence, ref.confidence, atol=1e-5)
    assert got.extent == ref.extent
    # anchors given as inputs: mapped to the layer by a forward pass
    plane_in = geo.Plane.through(x[0], x[1], x[2])
    got_in = geo.decision_slice(model, plane_in, layer=str(layer_idx), resolution=40)
    assert torch.equal(got_in.classes, ref.classes)
    assert torch.allclose(got_in.confidence, ref.confidence, atol=1e-5)
    assert np.allclose(got_in.extent, ref.extent, atol=1e-5)
    assert _hooks(model) == 0


def test_hidden_slice_of_cnn_with_data():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10), nn.ReLU(), nn.Linear(10, 3)
    )
    x = torch.randn(20, 1, 8, 8)
    plane = geo.Plane.through(x[0].numpy(), x[1].numpy(), x[2].numpy())  # input samples, numpy
    s = geo.decision_slice(model, plane, layer="1", resolution=16, data=x.numpy())
    assert isinstance(s.classes, np.ndarray) and s.classes.shape == (16, 16)
    assert s.data_coords.shape == (20, 2) and s.data_distance.shape == (20,)
    assert np.allclose(s.data_distance[:3], 0, atol=1e-4)
    assert set(s.nearby(1e-3).tolist()) == {0, 1, 2}
    h = model[:2](x).reshape(20, -1).detach().numpy()
    assert np.allclose(s.coords(h), s.data_coords, atol=1e-4)
    # input-space slice of the same model, grid reshaped to the image shape
    s_in = geo.decision_slice(model, plane, resolution=8)
    assert s_in.logits.shape == (8, 8, 3)
    # a plane of flattened images needs the input shape from a carrier
    flat = geo.Plane.through(*x[:3].reshape(3, -1))
    with pytest.raises(ValueError, match="carrier"):
        geo.decision_slice(model, flat, resolution=8)
    s_flat = geo.decision_slice(model, flat, resolution=8, carrier=x[0])
    assert torch.allclose(s_flat.logits, torch.as_tensor(s_in.logits), atol=1e-5)


def test_temperature_rescales_without_forward():
    model = _mlp(1)
    x = torch.randn(3, 6)
    plane = geo.Plane.through(*x)
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        s1 = geo.decision_slice(model, plane, resolution=24, temperature=1.0)
        n = len(calls)
        s_cold = s1.with_temperature(0.3)
        assert len(calls) == n  # no forward pass
        fresh = geo.decision_slice(model, plane, resolution=24, temperature=0.3)
    finally:
        handle.remove()
    for name in ("confidence", "margin", "entropy", "energy"):
        assert torch.allclose(getattr(s_cold, name), getattr(fresh, name), atol=1e-6), name
    assert torch.equal(s_cold.classes, s1.classes)
    z = s1.logits.double()
    p = torch.softmax(z / 0.3, -1)
    assert torch.allclose(s_cold.confidence.double(), p.max(-1).values, atol=1e-6)
    assert torch.allclose(s_cold.energy.double(), -0.3 * torch.logsumexp(z / 0.3, -1), atol=1e-5)
    assert isinstance(s_cold, DecisionSlice)


def test_errors():
    model = _mlp()
    x = torch.randn(3, 6)
    plane = geo.Plane.through(*x)
    with pytest.raises(ValueError, match="temperature"):
        geo.decision_slice(model, plane, temperature=0)
    with pytest.raises(ValueError, match="resolution"):
        geo.decision_slice(model, plane, resolution=1)
    with pytest.raises(KeyError, match="unknown layer"):
        geo.decision_slice(model, plane, layer="9")
    with pytest.raises(ValueError, match="extent"):
        geo.decision_slice(model, plane, extent=(1, 0, 0, 1))
    layer_plane = geo.Plane.through(*torch.randn(3, 16))
    with pytest.raises(ValueError, match="carrier"):
        geo.decision_slice(model, layer_plane, layer="1")
    with pytest.raises(ValueError, match="Plane.through"):
        geo.decision_slice(model, geo.Plane.from_directions(x[0], x[1], x[2]), layer="1")
    assert _hooks(model) == 0


def test_plane_directions():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)) * np.array([6.0, 3.0, 1, 1, 1, 1])
    d = geo.plane_directions(X, "pca")
    assert abs(d[0, 0]) > 0.99 and abs(d[1, 1]) > 0.99
    y = np.repeat([0, 1, 2], 100)
    X2 = X + np.array([[0, 0, 10, 0, 0, 0]])[:, :] * (y[:, None] == 1)
    d2 = geo.plane_directions(X2, "centroids", labels=y, classes=(0, 1))
    assert abs(d2[0, 2]) > 0.95
    r1 = geo.plane_directions(X, "random", random_state=3)
    assert np.allclose(r1, geo.plane_directions(X, "random", random_state=3))
    model = _linear_model([0.0, 2.0, 0.0, 0.0, 0.0, 0.0], 0.5)
    g = geo.plane_directions(X, "gradient", origin=np.zeros(6), model=model)
    assert np.allclose(np.abs(g[0]), [0, 1, 0, 0, 0, 0], atol=1e-12)
    assert abs(g[0] @ g[1]) < 1e-9
    with pytest.raises(ValueError, match="kind"):
        geo.plane_directions(X, "nope")


def test_slice_scores_at_any_temperature_match_scipy_on_the_grid_logits():
    """Scores of a slice (and of its temperature rescales) against scipy on the model's own grid logits."""
    from scipy.special import logsumexp, softmax

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    plane = geo.Plane.through(np.zeros(3), np.array([1.0, 0.0, 0.5]), np.array([0.0, 2.0, 0.0]))
    sl = geo.decision_slice(model, plane, resolution=12, temperature=0.5)
    alphas, betas = np.meshgrid(sl.alphas, sl.betas)  # rows are beta
    pts = plane.point(alphas.ravel(), betas.ravel())
    with torch.no_grad():
        z = model(torch.from_numpy(pts)).numpy()
    for T in (0.5, 0.05, 20.0):
        s = sl if T == 0.5 else sl.with_temperature(T)
        assert s.n_forward == (sl.n_forward if T == 0.5 else 0)
        p = softmax(z / T, axis=1)
        top2 = np.sort(p, axis=1)[:, -2:]
        np.testing.assert_array_equal(np.asarray(s.classes).ravel(), z.argmax(1))
        np.testing.assert_allclose(np.asarray(s.confidence).ravel(), top2[:, 1], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.asarray(s.margin).ravel(), top2[:, 1] - top2[:, 0], rtol=1e-5, atol=1e-7)
        entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(1)
        np.testing.assert_allclose(np.asarray(s.entropy).ravel(), entropy, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.asarray(s.energy).ravel(), -T * logsumexp(z / T, axis=1), rtol=1e-5, atol=1e-7)
