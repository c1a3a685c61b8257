"""Probe.capture writes each batch into one preallocated [N, D] tensor when N is known up front.

The rows must equal, bit for bit, the per-batch forward passes concatenated (what the capture did
before, and what it still does when N is unknown), whatever the inputs: a Tensor, a Dataset, a
DataLoader with a short last batch, an iterable Dataset of unknown length, a Dataset whose length
is wrong.
"""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import geowidgets as gw
from geowidgets.probe._capture import _Rows


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).eval()


def _reference(model: nn.Module, x: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
    """Layer "1" and the outputs, one forward pass per batch, concatenated."""
    hidden, outputs = [], []
    with torch.inference_mode():
        for s in range(0, x.shape[0], batch):
            h = model[1](model[0](x[s : s + batch]))
            hidden.append(h.clone())
            outputs.append(model[2](h))
    return {"1": torch.cat(hidden), "out": torch.cat(outputs)}


class _Stream(IterableDataset):
    """An iterable-style Dataset: a generator of (x, y) of unknown length."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __iter__(self):
        return ((self.x[i], self.y[i]) for i in range(self.x.shape[0]))


def _data(n: int = 23):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def _inputs(kind: str, x: torch.Tensor, y: torch.Tensor):
    if kind == "tensor":
        return x
    if kind == "dataset":
        return TensorDataset(x, y)
    if kind == "loader_short_last":
        return DataLoader(TensorDataset(x, y), batch_size=4)  # 23 = 5 * 4 + 3
    if kind == "stream":
        return DataLoader(_Stream(x, y), batch_size=4)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["tensor", "dataset", "loader_short_last", "stream"])
def test_capture_equals_the_batches_concatenated(kind):
    model = _model()
    x, y = _data()
    acts = gw.Probe(model, ["1"], device="cpu").capture(_inputs(kind, x, y), batch_size=4, progress=False)
    ref = _reference(model, x, 4)
    assert acts["1"].dtype == torch.float32 and acts["1"].is_contiguous()
    assert torch.equal(acts["1"], ref["1"])
    assert torch.equal(acts.outputs, ref["out"])
    if kind != "tensor":
        assert torch.equal(acts.labels, y)


def test_known_n_allocates_the_rows_once_and_concatenates_nothing(monkeypatch):
    """With N known, no [N, D] concatenation happens: each batch lands in its place."""
    model = _model()
    x, _ = _data(40)
    real_cat = torch.cat
    made = []

    def cat(tensors, *args, **kwargs):
        out = real_cat(tensors, *args, **kwargs)
        made.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch, "cat", cat)
    acts = gw.Probe(model, ["1"], device="cpu").capture(x, batch_size=8, progress=False)
    monkeypatch.setattr(torch, "cat", real_cat)
    assert not [shape for shape in made if shape and shape[0] == 40]
    assert torch.equal(acts["1"], _reference(model, x, 8)["1"])


class _Sampler:
    """Yields 0..9 in order but says it has ``length`` indices."""

    def __init__(self, length: int):
        self.length = length

    def __iter__(self):
        return iter(range(10))

    def __len__(self) -> int:
        return self.length


@pytest.mark.parametrize("length", [7, 14])
def test_a_sampler_that_misstates_its_length(length):
    """More rows than announced (the buffer becomes a piece) or fewer (the buffer is trimmed): the rows that came."""
    model = _model()
    x, y = _data(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=3, sampler=_Sampler(length))
    acts = gw.Probe(model, ["1"], device="cpu").capture(loader, progress=False)
    ref = _reference(model, x, 3)
    assert torch.equal(acts["1"], ref["1"]) and torch.equal(acts.outputs, ref["out"])
    assert torch.equal(acts.labels, y)


def test_rows_collector_fallbacks():
    rows = _Rows(5)
    a, b, c = torch.arange(6.0).reshape(3, 2), torch.arange(4.0).reshape(2, 2) + 10, torch.ones(2, 2)
    assert torch.equal(rows.add(a), a) and rows.buffer is not None
    rows.add(b)
    rows.add(c)  # one more batch than announced: the buffer so far becomes a piece
    assert torch.equal(rows.take(), torch.cat([a, b, c]))
    short = _Rows(9)
    short.add(a)
    got = short.take()
    assert torch.equal(got, a) and got.untyped_storage().nbytes() == a.numel() * 4  # trimmed to the rows
    widths = _Rows(5)
    widths.add(torch.zeros(2, 3))
    widths.add(torch.zeros(2, 4))  # outputs padded per batch: no common width
    assert widths.take(same_shape=True) is None
    unknown = _Rows(None)
    unknown.add(a)
    unknown.add(b)
    assert torch.equal(unknown.take(), torch.cat([a, b]))


def test_view_outputs_are_copied_not_kept_as_views():
    rows = _Rows(None)
    base = torch.arange(6.0).reshape(3, 2)
    kept = rows.add(base.reshape(3, 2), copy=True)
    base += 100
    assert torch.equal(kept, torch.arange(6.0).reshape(3, 2))


def test_non_finite_values_are_counted_over_all_batches():
    model = nn.Sequential(nn.Identity(), nn.Identity()).eval()
    x = torch.zeros(10, 3)
    x[1, 0] = float("nan")
    x[8, 2] = float("inf")
    x[9, 1] = float("-inf")
    with pytest.raises(ValueError, match=r"layer '0' produced 3 NaN/inf activation value\(s\)"):
        gw.Probe(model, ["0", "1"], device="cpu").capture(x, batch_size=4, progress=False)


def test_numpy_and_tensor_inputs_give_the_same_rows():
    model = _model()
    x, _ = _data()
    a = gw.Probe(model, ["1"], device="cpu").capture(x, batch_size=5, progress=False)["1"]
    b = gw.Probe(model, ["1"], device="cpu").capture(np.asarray(x), batch_size=5, progress=False)["1"]
    assert torch.equal(a, b)
