"""Activation patching: hook swaps outputs, is always removed, and names a layer that never ran."""

import pytest
import torch
from torch import nn

from geowidgets.probe._patch import PatchedModel, patch_activation


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))


class _Residual(nn.Module):
    """A block with a skip path around ``inner`` (not an nn.Sequential)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.inner = nn.Linear(5, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        return self.head(x + self.inner(x))


class _Branches(nn.Module):
    """Concatenates a skip path: a batch-1 carrier cannot broadcast here."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.a = nn.Linear(3, 4)
        self.head = nn.Linear(7, 2)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), x], dim=1))


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_patch_replaces_output_and_removes_hook():
    model = _mlp()
    x = torch.randn(5, 4)
    values = torch.randn(5, 6)
    with patch_activation(model, "2", values) as patch:
        out = model(x)
    assert patch.calls == 1
    assert torch.allclose(out, model[4](model[3](values)))
    assert _hook_count(model) == 0


def test_patch_removed_after_exception():
    model = _mlp()
    with pytest.raises(RuntimeError, match="boom"):
        with patch_activation(model, "1", torch.zeros(2, 8)):
            raise RuntimeError("boom")
    assert _hook_count(model) == 0


def test_patch_that_never_fired_names_layer():
    model = _mlp()
    with pytest.raises(ValueError, match="'3' never ran"):
        with patch_activation(model, "3", torch.zeros(1, 6)):
            pass
    assert _hook_count(model) == 0


def test_patch_bad_values_and_unknown_layer():
    model = _mlp()
    with pytest.raises(KeyError, match="unknown layer"):
        with patch_activation(model, "nope"):
            pass
    with pytest.raises(ValueError, match="per sample"):
        with patch_activation(model, "2", torch.zeros(2, 5)):
            model(torch.zeros(2, 4))
    assert _hook_count(model) == 0


def test_patched_model_equals_sequential_tail():
    model = _mlp()
    head = PatchedModel(model, layer="1", carrier=torch.randn(4), batch_size=7)
    assert head.dim == 8
    pts = torch.randn(30, 8)
    assert torch.allclose(head.logits(pts), model[2:](pts), atol=1e-6)
    assert head._broadcast is True
    assert _hook_count(model) == 0


def test_patched_model_skip_path_keeps_carrier():
    model = _Residual()
    carrier = torch.randn(5)
    head = PatchedModel(model, layer="inner", carrier=carrier)
    pts = torch.randn(6, 5)
    expected = model.head(carrier + pts)
    assert torch.allclose(head.logits(pts), expected, atol=1e-6)


def test_patched_model_falls_back_when_broadcast_fails():
    model = _Branches()
    carrier = torch.randn(3)
    head = PatchedModel(model, layer="a", carrier=carrier)
    pts = torch.randn(9, 4)
    expected = model.head(torch.cat([pts, carrier.expand(9, 3)], dim=1))
    assert torch.allclose(head.logits(pts), expected, atol=1e-6)
    assert head._broadcast is False


def test_to_space_and_gradient():
    model = _mlp()
    head = PatchedModel(model, layer="3", carrier=torch.zeros(4))
    x = torch.randn(10, 4)
    assert torch.allclose(head.to_space(x), model[:4](x), atol=1e-6)
    p, z = head.logits_with_grad(torch.randn(3, 6))
    (g,) = torch.autograd.grad(z[:, 0].sum(), p)
    w = model[4].weight[0].detach()
    assert torch.allclose(g, w.expand(3, 6), atol=1e-6)


def test_hidden_layer_needs_carrier():
    with pytest.raises(ValueError, match="carrier"):
        PatchedModel(_mlp(), layer="1")
