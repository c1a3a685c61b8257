"""Probe: capture equals a manual forward, hooks are always removed, bad input is explained."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import geowidgets as gw


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(5, 3))
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.head(self.encoder(x))


def n_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_list_layers_reports_names_types_shapes():
    infos = gw.list_layers(Nested(), torch.zeros(2, 6))
    names = [i.name for i in infos]
    assert names[:4] == ["encoder", "encoder.0", "encoder.1", "encoder.2"]
    assert "unused" not in names  # it never runs
    enc1 = next(i for i in infos if i.name == "encoder.1")
    assert enc1.type == "Tanh" and enc1.output_shape == (2, 8)


def test_capture_equals_manual_forward_for_nested_model():
    model = Nested()
    x = torch.randn(37, 6)
    acts = gw.Probe(model, layers=["encoder.1", "head.1"], device="cpu").capture(x, batch_size=8, progress=False)
    with torch.no_grad():
        h = model.encoder[1](model.encoder[0](x))
        out = model(x)
    torch.testing.assert_close(acts["encoder.1"], h)
    torch.testing.assert_close(acts["head.1"], out)
    torch.testing.assert_close(acts.outputs, out)
    assert acts.layers == ["encoder.1", "head.1"] and acts["head.1"].dtype == torch.float32
    assert n_hooks(model) == 0


def test_default_layers_are_leaves_and_model_state_restored():
    model = Nested().train()
    probe = gw.Probe(model, device="cpu")
    assert probe.layers == ["encoder.0", "encoder.1", "encoder.2", "head.0", "head.1", "unused"]
    with pytest.raises(ValueError, match="'unused' never ran"):
        probe.capture(torch.randn(4, 6), progress=False)
    assert model.training and n_hooks(model) == 0


def test_hooks_removed_after_exception_in_forward():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            self.fc(x)
            raise RuntimeError("boom")

    model = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        gw.Probe(model, device="cpu").capture(torch.randn(2, 3), progress=False)
    assert n_hooks(model) == 0


def test_inputs_as_ndarray_dataset_and_dataloader_agree():
    model = Nested()
    x = torch.randn(20, 6)
    ref = gw.Probe(model, layers=["encoder.2"], device="cpu").capture(x, progress=False)["encoder.2"]
    for inputs in (x.numpy().astype(np.float64), TensorDataset(x, torch.zeros(20)), DataLoader(TensorDataset(x), 7)):
        got = gw.Probe(model, layers=["encoder.2"], device="cpu").capture(inputs, batch_size=6, progress=False)
        torch.testing.assert_close(got["encoder.2"], ref)


def test_pooling_options_for_conv_and_tokens():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1))
    x = torch.randn(5, 1, 6, 6)
    flat = gw.Probe(conv, device="cpu").capture(x, progress=False)["0"]
    mean = gw.Probe(conv, device="cpu", pooling="mean").capture(x, progress=False)["0"]
    assert flat.shape == (5, 4 * 36) and mean.shape == (5, 4)
    torch.testing.assert_close(mean, conv(x).mean((2, 3)).detach())
    tok = torch.randn(3, 7, 4)
    assert torch.equal(gw.probe.pool(tok, "cls"), tok[:, 0])
    assert torch.equal(gw.probe.pool(tok, "last"), tok[:, -1])
    torch.testing.assert_close(gw.probe.pool(tok, "mean"), tok.mean(1))
    with pytest.raises(ValueError, match="pooling for layer .0. must be one of"):
        gw.Probe(conv, pooling="max")


def test_tuple_and_dict_outputs_and_shared_modules():
    class Multi(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Linear(4, 4)
            self.rnn = nn.GRU(4, 3, batch_first=True)

        def forward(self, x):
            h = self.block(self.block(x))  # a shared module called twice
            out, _ = self.rnn(h.unsqueeze(1))  # GRU returns a tuple
            return out[:, 0]

    model = Multi()
    x = torch.randn(6, 4)
    with torch.no_grad():
        first = model.block(x)
        second = model.block(first)
    last = gw.Probe(model, ["block", "rnn"], device="cpu").capture(x, progress=False)
    torch.testing.assert_close(last["block"], second)
    assert last["rnn"].shape == (6, 3)
    firstc = gw.Probe(model, ["block"], device="cpu", repeated="first").capture(x, progress=False)
    torch.testing.assert_close(firstc["block"], first)
    meanc = gw.Probe(model, ["block"], device="cpu", repeated="mean").capture(x, progress=False)
    torch.testing.assert_close(meanc["block"], (first + second) / 2)
    with pytest.raises(ValueError, match="ran 2 times"):
        gw.Probe(model, ["block"], device="cpu", repeated="error").capture(x, progress=False)


def test_unknown_layer_suggests_close_matches():
    with pytest.raises(KeyError, match="Did you mean .*'encoder.1'"):
        gw.Probe(Nested(), layers=["encoder.l"])


def test_empty_and_nan_inputs_are_errors():
    model = Nested()
    with pytest.raises(ValueError, match="empty"):
        gw.Probe(model, ["encoder.0"], device="cpu").capture(torch.zeros(0, 6), progress=False)
    with pytest.raises(ValueError, match="empty"):
        gw.Probe(model, ["encoder.0"], device="cpu").capture(TensorDataset(torch.zeros(0, 6)), progress=False)
    x = torch.randn(4, 6)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="'encoder.0' produced .* NaN/inf"):
        gw.Probe(model, ["encoder.0"], device="cpu").capture(x, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        gw.Probe(model, ["encoder.0"], device="cpu").capture(x, batch_size=0)


def test_cache_skips_forward_and_invalidates_on_training():
    model = Nested()
    calls = []
    model.encoder[0].register_forward_pre_hook(lambda m, i: calls.append(1))
    probe = gw.Probe(model, ["encoder.0"], device="cpu")
    x = torch.randn(10, 6)
    a = probe.capture(x, progress=False)
    b = probe.capture(x.clone(), progress=False)  # same content -> cached
    assert len(calls) == 1 and a["encoder.0"] is b["encoder.0"]
    with torch.no_grad():
        model.encoder[0].weight.add_(1.0)  # weights changed -> recapture
    probe.capture(x, progress=False)
    assert len(calls) == 2
