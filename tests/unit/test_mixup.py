"""mixup_path (docs/probes.md#mixup-path): intrusion on collinear clusters, analytic logistic, crossings."""

import numpy as np
import pytest
import torch
from scipy.special import expit
from torch import nn

from geowidgets import geometry as geo


def _clusters(seed=0, n=200, d=5):
    rng = np.random.default_rng(seed)
    centres = np.zeros((3, d))
    centres[:, 0] = [-1.0, 0.0, 1.0]  # A, C, B along e1
    y = np.repeat([0, 1, 2], n)
    X = centres[y] + 0.1 * rng.normal(size=(3 * n, d))
    return X, y


def _nearest_centroid_model(centres: np.ndarray) -> nn.Linear:
    """Logits mu_c.x - |mu_c|^2/2: argmax is the nearest centre."""
    C = torch.as_tensor(centres, dtype=torch.float64)
    model = nn.Linear(C.shape[1], C.shape[0]).double()
    with torch.no_grad():
        model.weight.copy_(C)
        model.bias.copy_(-0.5 * (C * C).sum(1))
    return model


def test_intrusion_on_collinear_clusters():
    X, y = _clusters()
    centres = np.stack([X[y == c].mean(0) for c in range(3)])
    model = _nearest_centroid_model(centres)
    a = X[np.argmin(np.linalg.norm(X - centres[0], axis=1))]
    b = X[np.argmin(np.linalg.norm(X - centres[2], axis=1))]
    p = geo.mixup_path(model, a, b, steps=101, data=X, labels=y, k=10)
    assert p.class_a == 0 and p.class_b == 2
    lam = p.lam
    assert p.intrusion[(lam >= 0.4) & (lam <= 0.6)].all()
    assert not p.intrusion[(lam < 0.2) | (lam > 0.8)].any()
    assert p.model_intrusion[(lam >= 0.4) & (lam <= 0.6)].all()  # the model predicts C in the middle
    assert np.allclose(p.target.sum(1), 1) and np.allclose(p.target[:, 0], 1 - lam)


def test_path_inside_one_cluster_never_intrudes():
    X, y = _clusters(1)
    model = _nearest_centroid_model(np.stack([X[y == c].mean(0) for c in range(3)]))
    inside = X[y == 2]
    p = geo.mixup_path(model, inside[0], inside[1], steps=51, data=X, labels=y)
    assert not p.intrusion.any() and not p.model_intrusion.any()


def test_linear_model_gives_analytic_logistic_and_crossings():
    rng = np.random.default_rng(3)
    w, bias = rng.normal(size=4), 0.2
    model = nn.Linear(4, 2).double()
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1] = torch.from_numpy(w)
        model.bias[1] = bias
    a = -2 * w / np.linalg.norm(w) ** 2
    b = 2 * w / np.linalg.norm(w) ** 2
    steps = 41
    T = 0.7
    p = geo.mixup_path(model, a, b, steps=steps, temperature=T)
    lam = p.lam
    f = (1 - lam) * (w @ a + bias) + lam * (w @ b + bias)
    assert np.allclose(p.probs[:, 1], expit(f / T), atol=1e-6)
    root = -(w @ a + bias) / ((w @ b) - (w @ a))
    assert p.crossings.shape == (1,) and abs(p.crossings[0] - root) <= 1 / (steps - 1)
    cold = p.with_temperature(0.1)
    assert np.allclose(cold.probs[:, 1], expit(f / 0.1), atol=1e-6)
    assert np.array_equal(cold.classes, p.classes)


def test_hidden_layer_path_equals_tail():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 4))
    x = torch.randn(2, 3)
    h = model[:2](x).detach()
    p_layer = geo.mixup_path(model, x[0], x[1], steps=21, layer="1")  # inputs mapped into the layer
    p_tail = geo.mixup_path(model[2:], h[0], h[1], steps=21)
    assert torch.allclose(p_layer.probs, p_tail.probs, atol=1e-6)
    assert torch.allclose(p_layer.points, p_tail.points.double(), atol=1e-6)


def test_errors():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="steps"):
        geo.mixup_path(model, np.zeros(2), np.ones(2), steps=1)
    with pytest.raises(ValueError, match="both"):
        geo.mixup_path(model, np.zeros(2), np.ones(2), data=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="k="):
        geo.mixup_path(model, np.zeros(2), np.ones(2), data=np.zeros((5, 2)), labels=np.zeros(5, int), k=6)
    with pytest.raises(ValueError, match="temperature"):
        geo.mixup_path(model, np.zeros(2), np.ones(2), temperature=-1)
