"""Probe.capture gives the right activations on real inputs.

Each expected value is computed independently: the layer's own output called directly, or a fresh
forward pass of the model as it is now.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import geowidgets as gw
from geowidgets import geometry as geo
from geowidgets.probe import PatchedModel, model_fingerprint, patch_activation


def _probe(model, layers, **kw):
    return gw.Probe(model, layers, device="cpu", **kw)


# ---------------------------------------------------------------- in-place operations after a hook


def test_inplace_relu_after_hooked_conv_keeps_conv_output():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 36, 2)
    ).eval()
    x = torch.randn(9, 3, 6, 6)
    with torch.no_grad():
        conv = model[0](x)
    assert float(conv.min()) < 0  # the in-place ReLU would wipe these out
    for pooling, ref in (("flatten", conv.reshape(9, -1)), ("mean", conv.mean((2, 3)))):
        acts = _probe(model, ["0", "1"], pooling=pooling).capture(x, batch_size=4, progress=False)
        torch.testing.assert_close(acts["0"], ref)
        relu = torch.relu(conv)
        torch.testing.assert_close(acts["1"], relu.reshape(9, -1) if pooling == "flatten" else relu.mean((2, 3)))


class _Residual(nn.Module):
    """A ResNet basic block: ``out = bn2(conv2(relu(bn1(conv1(x))))); out += x; relu_(out)``."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def test_residual_add_after_hooked_conv_and_bn():
    torch.manual_seed(1)
    block = _Residual(5)
    with torch.no_grad():  # non-trivial running statistics
        block.bn1.running_mean.uniform_(-1, 1)
        block.bn2.running_var.uniform_(0.5, 2)
    model = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), block, nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = torch.randn(7, 2, 5, 5)
    with torch.no_grad():
        stem = model[0](x)
        bn1 = block.bn1(block.conv1(stem))
        conv2 = block.conv2(torch.relu(bn1))
        bn2 = block.bn2(conv2)
    layers = ["0", "1.conv1", "1.bn1", "1.conv2", "1.bn2"]
    acts = _probe(model, layers).capture(x, batch_size=3, progress=False)
    for name, ref in zip(layers, (stem, block.conv1(stem).detach(), bn1, conv2, bn2)):
        torch.testing.assert_close(acts[name], ref.reshape(7, -1), rtol=1e-6, atol=1e-6)
    # the stem is the identity added in place: it must not carry the residual sum
    assert not torch.allclose(stem + bn2, stem)


class _Tokens(nn.Module):
    """A token model that scales a hooked layer's output in place (``mul_``)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        h = self.proj(x)
        h.mul_(2)
        return self.out(h).mean(1)


@pytest.mark.parametrize("pooling", ["flatten", "first", "last", "mean"])
def test_mul_inplace_after_hooked_layer_for_every_pooling(pooling):
    torch.manual_seed(2)
    model = _Tokens().eval()
    x = torch.randn(6, 5, 4)
    with torch.no_grad():
        h = model.proj(x)
    ref = {"flatten": h.reshape(6, -1), "first": h[:, 0], "last": h[:, -1], "mean": h.mean(1)}[pooling]
    got = _probe(model, ["proj"], pooling=pooling).capture(x, batch_size=4, progress=False)["proj"]
    torch.testing.assert_close(got, ref)


def test_tuple_output_select_and_repeated_calls_with_inplace_ops():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            h = self.fc(x)
            return h, h.sum(1)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = Pair()

        def forward(self, x):
            a, _ = self.pair(x)
            a.mul_(3)
            b, _ = self.pair(a)  # the shared module runs again
            b.add_(1)
            return b

    torch.manual_seed(3)
    model = Model().eval()
    x = torch.randn(8, 3)
    with torch.no_grad():
        first = model.pair.fc(x)
        second = model.pair.fc(3 * first)
    for repeated, ref in (("first", first), ("last", second), ("mean", (first + second) / 2)):
        got = _probe(model, ["pair"], select=0, repeated=repeated).capture(x, batch_size=3, progress=False)
        torch.testing.assert_close(got["pair"], ref, rtol=1e-6, atol=1e-6)
    sums = _probe(model, ["pair"], select=1, repeated="first").capture(x, progress=False)["pair"]
    torch.testing.assert_close(sums, first.sum(1, keepdim=True))


# ---------------------------------------------------------------- batches as dicts (keyword arguments)


class _MaskedMean(nn.Module):
    def forward(self, h, mask=None):
        if mask is None:
            return h.mean(1)
        m = mask.to(h.dtype).unsqueeze(-1)
        return (h * m).sum(1) / m.sum(1).clamp_min(1)


class _TinyLM(nn.Module):
    """Hugging Face style: ``forward(input_ids, attention_mask=None)``."""

    def __init__(self, vocab=20, dim=6, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pool = _MaskedMean()
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.pool(self.emb(input_ids), attention_mask))


def _tokens(n=11, t=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 20, (n, t), generator=g)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    return ids, mask


class _DictDataset(Dataset):
    def __init__(self, ids, mask, with_label=False):
        self.ids, self.mask, self.with_label = ids, mask, with_label

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        item = {"input_ids": self.ids[i], "attention_mask": self.mask[i]}
        return (item, i % 3) if self.with_label else item


def test_dict_batches_are_keyword_arguments():
    torch.manual_seed(4)
    model = _TinyLM().eval()
    ids, mask = _tokens()
    with torch.no_grad():
        ref = model.pool(model.emb(ids), mask)
        unmasked = model.pool(model.emb(ids))
        logits = model(ids, attention_mask=mask)
    assert not torch.allclose(ref, unmasked)  # dropping the mask gives other numbers
    batch = {"input_ids": ids, "attention_mask": mask}
    inputs = [
        batch,
        {"input_ids": ids.numpy(), "attention_mask": mask.numpy()},
        DataLoader(_DictDataset(ids, mask), batch_size=4),
        DataLoader(_DictDataset(ids, mask, with_label=True), batch_size=5),
        _DictDataset(ids, mask),
    ]
    for x in inputs:
        acts = _probe(model, ["pool", "emb"]).capture(x, batch_size=4, progress=False)
        torch.testing.assert_close(acts["pool"], ref)
        torch.testing.assert_close(acts["emb"], model.emb(ids).detach().reshape(len(ids), -1))
        torch.testing.assert_close(acts.outputs, logits)
        assert acts.shapes["emb"] == (ids.shape[1], 6)
    infos = {i.name: i.output_shape for i in gw.list_layers(model, {"input_ids": ids[:2], "attention_mask": mask[:2]})}
    assert infos["pool"] == (2, 6) and infos["emb"] == (2, ids.shape[1], 6)


def test_dict_inputs_cache_by_content_and_errors():
    model = _TinyLM().eval()
    ids, mask = _tokens()
    calls = []
    model.emb.register_forward_pre_hook(lambda m, i: calls.append(1))
    probe = _probe(model, ["pool"])
    a = probe.capture({"input_ids": ids, "attention_mask": mask}, progress=False)["pool"]
    b = probe.capture({"attention_mask": mask.clone(), "input_ids": ids.clone()}, progress=False)["pool"]
    assert len(calls) == 1 and a is b
    other = torch.ones_like(mask)
    c = probe.capture({"input_ids": ids, "attention_mask": other}, progress=False)["pool"]
    assert len(calls) == 2
    torch.testing.assert_close(c, model.pool(model.emb(ids), other).detach())
    with pytest.raises(ValueError, match="same number of samples.*input_ids: 11, attention_mask: 10"):
        probe.capture({"input_ids": ids, "attention_mask": mask[:10]}, progress=False)
    with pytest.raises(ValueError, match=r"inputs\['flag'\] is a bool"):
        probe.capture({"input_ids": ids, "flag": True}, progress=False)


@pytest.mark.parametrize(
    "bad, match",
    [
        ([[1.0, 2.0]], "got a list"),
        ((torch.zeros(2, 6), torch.zeros(2)), "got a tuple"),
        ("some text", "got str"),
        (np.array([object(), object()]), "dtype object"),
        ({1: torch.zeros(2, 6)}, "keys must be keyword-argument names"),
        ({"x": [1, 2]}, r"inputs\['x'\] is a list"),
        (torch.tensor(1.0), "0-d"),
        (DataLoader(["a b", "c d"], batch_size=2), "raw text must be tokenized"),
    ],
)
def test_unsupported_inputs_are_clear_value_errors(bad, match):
    model = nn.Sequential(nn.Linear(6, 2))
    with pytest.raises(ValueError, match=match):
        _probe(model, ["0"]).capture(bad, progress=False)


def test_patch_activation_with_keyword_call_and_mapping_carrier_is_refused():
    model = _TinyLM().eval()
    ids, mask = _tokens(n=4)
    with torch.no_grad():
        pooled = model.pool(model.emb(ids), mask)
        zero = torch.zeros_like(pooled)
        with patch_activation(model, "pool", zero) as patch:
            out = model(input_ids=ids, attention_mask=mask)
    assert patch.calls == 1
    torch.testing.assert_close(out, model.head(zero))
    with pytest.raises(ValueError, match="mapping .*one tensor input"):
        PatchedModel(model, "pool", {"input_ids": ids[0], "attention_mask": mask[0]})


# ---------------------------------------------------------------- the cache follows the weights


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def _fresh(model, x, upto):
    with torch.no_grad():
        return model[:upto](x).float()


def _assert_recaptured(probe, model, x, before):
    """The capture equals a fresh forward now, and the change really changed the numbers."""
    ref = _fresh(model, x.to(next(model.parameters()).dtype), 2)
    assert not torch.allclose(ref, before)
    torch.testing.assert_close(probe.capture(x, progress=False)["1"], ref)
    return ref


def test_cache_follows_every_kind_of_weight_change():
    model = _mlp()
    x = torch.randn(12, 5)
    probe = _probe(model, ["1"])
    before = probe.capture(x, progress=False)["1"]
    torch.testing.assert_close(before, _fresh(model, x, 2))

    vec = torch.nn.utils.parameters_to_vector(model.parameters())
    torch.nn.utils.vector_to_parameters(vec + 0.1, model.parameters())
    before = _assert_recaptured(probe, model, x, before)

    model[0].weight.data = torch.randn_like(model[0].weight)
    before = _assert_recaptured(probe, model, x, before)

    model[0].bias.data.copy_(torch.randn_like(model[0].bias))  # bypasses the version counter
    before = _assert_recaptured(probe, model, x, before)

    model.load_state_dict(_mlp(seed=5).state_dict())
    before = _assert_recaptured(probe, model, x, before)

    model.half()
    half = probe.capture(x, progress=False)["1"]
    torch.testing.assert_close(half, _fresh(model, x.half(), 2))
    model.float()  # the weights are now rounded to half precision
    _assert_recaptured(probe, model, x, before)


def test_cache_follows_batchnorm_running_stats_in_train_mode():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU())
    x = torch.randn(10, 4)
    probe = _probe(model, ["1"])
    before = probe.capture(x, progress=False)["1"]
    assert model.training  # the probe restores the mode
    with torch.no_grad():
        model(torch.randn(32, 4) * 3 + 1)  # a training-mode forward updates the running statistics
    model.eval()
    with torch.no_grad():
        ref = model[:2](x)
    model.train()
    assert not torch.allclose(ref, before)
    torch.testing.assert_close(probe.capture(x, progress=False)["1"], ref)


def test_model_fingerprint_is_exact_and_content_based():
    model = _mlp()
    key = model_fingerprint(model)
    assert model_fingerprint(copy.deepcopy(model)) == key  # same content, other tensors
    with torch.no_grad():
        w = model[2].weight.view(-1)
        w[5] = torch.nextafter(w[5], torch.tensor(np.inf))  # one ulp in one value
    assert model_fingerprint(model) != key
    bn = nn.BatchNorm1d(3)
    k0 = model_fingerprint(bn)
    bn.num_batches_tracked += 1  # buffers count too
    assert model_fingerprint(bn) != k0


# ---------------------------------------------------------------- integer inputs in input space


def test_input_space_slice_of_token_model_is_a_clear_error():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Embedding(20, 4), nn.Flatten(), nn.Linear(12, 3)).eval()
    ids = torch.randint(0, 20, (3, 3))
    plane = geo.Plane.through(*ids.double())
    for kwargs in ({}, {"carrier": ids[0]}):
        with pytest.raises(ValueError, match=r"continuous \(floating-point\) model inputs.*layer='0'"):
            geo.decision_slice(model, plane, resolution=4, **kwargs)
    # the suggested hidden-layer slice works and equals the tail on the grid points
    with torch.no_grad():
        emb = model[0](ids).reshape(3, -1)
    s = geo.decision_slice(model, geo.Plane.through(*emb.double()), layer="0", carrier=ids[0], resolution=4)
    pts = s.plane.point(torch.as_tensor(s.alphas)[None, :].expand(4, 4), torch.as_tensor(s.betas)[:, None].expand(4, 4))
    with torch.no_grad():
        tail = model[2](pts.reshape(16, -1).float()).reshape(4, 4, 3)
    torch.testing.assert_close(torch.as_tensor(s.logits), tail, rtol=1e-4, atol=1e-5)
