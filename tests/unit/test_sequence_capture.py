"""Capture of sequence models: mask-aware pooling, token mode, labels from the inputs.

Every expected value is computed independently of ``Probe``: each sample is run on its own,
without padding, with a plain forward hook, and pooled by hand over its real tokens; token rows are
compared with the layer's output on the padded batch, indexed directly.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import geowidgets as gw
from geowidgets._arithmetic import AdditionTransformer
from geowidgets.probe import iterate_batches, pool

LAYERS = ["attn", "mlp", "mlp.0"]


class _CausalAttention(nn.Module):
    """One causal self-attention head over the real tokens (a padding query attends to itself only)."""

    def __init__(self, d: int):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)

    def forward(self, h: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        length = h.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        allowed = (causal & real[:, None, :]) | torch.eye(length, dtype=torch.bool)
        scores = (q @ k.transpose(1, 2) / math.sqrt(h.shape[-1])).masked_fill(~allowed, -math.inf)
        return scores.softmax(-1) @ v


class _Pooler(nn.Module):
    """A pooled head ``[B, D]``: the mean over real tokens (its output is not a sequence)."""

    def forward(self, h: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        w = real.to(h.dtype).unsqueeze(-1)
        return (h * w).sum(1) / w.sum(1)


class _Ends(nn.Module):
    """``[B, 2, D]``: the first and last position (a 3-D output whose second dim is not the length)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.stack([h[:, 0], h[:, -1]], 1)


class _MaskedLM(nn.Module):
    """A tiny language model that respects the attention mask under right and left padding.

    Positions count real tokens (``cumsum(mask) - 1``) and attention is causal over real tokens,
    so each real token's state is the same as in the un-padded sequence run alone.
    """

    def __init__(self, vocab: int = 13, d: int = 8, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.position = nn.Embedding(16, d)
        self.attn = _CausalAttention(d)
        self.mlp = nn.Sequential(nn.Linear(d, 16), nn.GELU(), nn.Linear(16, d))
        self.ends = _Ends()
        self.pooler = _Pooler()
        self.head = nn.Linear(d, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        h = self.embed(input_ids) + self.position((real.long().cumsum(1) - 1).clamp_min(0))
        h = h + self.attn(h, real)
        h = h + self.mlp(h)
        self.ends(h)
        return self.head(self.pooler(h, real))


def _sequences(n=9, max_len=7, vocab=12, seed=0):
    """Token sequences of lengths 1..max_len (both ends included)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (n,), generator=g).tolist()
    lengths[0], lengths[1] = 1, max_len
    return [torch.randint(0, vocab, (length,), generator=g) for length in lengths]


def _pad(seqs, side, length=None, pad_id=12):
    """``input_ids`` and ``attention_mask`` ``[N, L]``, padded on the right or the left."""
    length = length or max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.int64)
    mask = torch.zeros(len(seqs), length, dtype=torch.int64)
    for i, s in enumerate(seqs):
        cols = slice(0, len(s)) if side == "right" else slice(length - len(s), length)
        ids[i, cols], mask[i, cols] = s, 1
    return ids, mask


def _layer_outputs(model, ids, layers, **kwargs):
    """Each layer's full output on one forward pass, recorded by plain forward hooks."""
    out, handles = {}, []
    modules = dict(model.named_modules())
    for name in layers:
        handles.append(modules[name].register_forward_hook(lambda m, i, o, name=name: out.__setitem__(name, o)))
    try:
        with torch.no_grad():
            model(ids, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return out


def _alone(model, seqs, layers):
    """Per sample, each layer's output ``[len, D]`` on the un-padded sequence run alone."""
    return [{k: v[0] for k, v in _layer_outputs(model, s[None], layers).items()} for s in seqs]


def _by_hand(alone, layer, pooling):
    pick = {"mean": lambda h: h.mean(0), "first": lambda h: h[0], "cls": lambda h: h[0], "last": lambda h: h[-1]}
    return torch.stack([pick[pooling](a[layer]) for a in alone])


def _model(seed=0):
    torch.manual_seed(seed)
    return _MaskedLM().eval()


class _Items(Dataset):
    def __init__(self, ids, mask, labels=None, key="label"):
        self.ids, self.mask, self.labels, self.key = ids, mask, labels, key

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        item = {"input_ids": self.ids[i], "attention_mask": self.mask[i]}
        if self.labels is not None:
            item[self.key] = self.labels[i]
        return item


# ---------------------------------------------------------------- mask-aware pooling


@pytest.mark.parametrize("side", ["right", "left"])
def test_masked_poolings_equal_each_sample_run_alone(side):
    model = _model()
    seqs = _sequences()
    ids, mask = _pad(seqs, side)
    alone = _alone(model, seqs, LAYERS)
    inputs = {
        "mapping": {"input_ids": ids, "attention_mask": mask},
        "numpy mapping": {"input_ids": ids.numpy(), "attention_mask": mask.numpy().astype(bool)},
        "loader": DataLoader(_Items(ids, mask), batch_size=4),
    }
    for pooling in ("mean", "last", "first", "cls"):
        for kind, x in inputs.items():
            acts = gw.Probe(model, LAYERS, device="cpu", pooling=pooling).capture(x, batch_size=4, progress=False)
            for layer in LAYERS:
                torch.testing.assert_close(acts[layer], _by_hand(alone, layer, pooling), msg=f"{kind} {layer}")
    # the padding really changes the plain (unmasked) poolings
    plain = gw.Probe(model, ["mlp"], device="cpu", pooling="mean").capture(ids, progress=False)["mlp"]
    assert not torch.allclose(plain, _by_hand(alone, "mlp", "mean"))


def test_attention_mask_argument_for_tensor_inputs_of_a_causal_model():
    """A causal model called as ``model(ids)``: the mask argument only tells the probe the real tokens."""
    model = _model(1)
    seqs = _sequences(seed=1)
    ids, mask = _pad(seqs, "right")
    alone = _alone(model, seqs, LAYERS)
    for pooling in ("mean", "last", "first"):
        probe = gw.Probe(model, LAYERS, device="cpu", pooling=pooling)
        acts = probe.capture(ids, attention_mask=mask, batch_size=5, progress=False)
        for layer in LAYERS:
            torch.testing.assert_close(acts[layer], _by_hand(alone, layer, pooling))
        unmasked = probe.capture(ids, batch_size=5, progress=False)  # another cache entry, the plain pooling
        with torch.no_grad():
            full = _layer_outputs(model, ids, ["mlp"])["mlp"]
        torch.testing.assert_close(unmasked["mlp"], pool(full, pooling))


def test_addition_transformer_right_padded_batch():
    torch.manual_seed(2)
    model = AdditionTransformer(max_len=8, d_model=16, n_heads=2, n_layers=2, d_ff=32).eval()
    seqs = _sequences(n=7, max_len=8, vocab=12, seed=2)
    ids, mask = _pad(seqs, "right", pad_id=12)
    layers = ["blocks.0", "blocks.1", "norm"]
    alone = _alone(model, seqs, layers)
    for pooling in ("mean", "last", "first"):
        acts = gw.Probe(model, layers, device="cpu", pooling=pooling).capture(
            {"input_ids": ids, "attention_mask": mask}, batch_size=3, progress=False
        )
        for layer in layers:
            torch.testing.assert_close(acts[layer], _by_hand(alone, layer, pooling), rtol=1e-5, atol=1e-5)


def test_outputs_that_are_not_the_sequence_are_left_alone():
    model = _model(3)
    ids, mask = _pad(_sequences(seed=3), "left")
    batch = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        full = _layer_outputs(model, ids, ["pooler", "ends"], attention_mask=mask)
    assert full["ends"].shape[1] == 2 != ids.shape[1]
    for pooling, ends in (("mean", full["ends"].mean(1)), ("last", full["ends"][:, -1])):
        acts = gw.Probe(model, ["pooler", "ends"], device="cpu", pooling=pooling).capture(batch, progress=False)
        torch.testing.assert_close(acts["pooler"], full["pooler"])
        torch.testing.assert_close(acts["ends"], ends)


class _NaNAtPads(nn.Module):
    """A layer that writes NaN at padding positions (as attention over no real key can)."""

    def forward(self, h, real):
        return h.masked_fill(~real.unsqueeze(-1), float("nan"))


class _NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(13, 4)
        self.nan = _NaNAtPads()

    def forward(self, input_ids, attention_mask):
        return self.nan(self.embed(input_ids), attention_mask.bool())[:, -1, :1].nan_to_num()


def test_padding_positions_holding_nan_do_not_reach_the_masked_poolings():
    torch.manual_seed(4)
    model = _NaNModel().eval()
    seqs = _sequences(seed=4)
    ids, mask = _pad(seqs, "left")
    batch = {"input_ids": ids, "attention_mask": mask}
    emb = [model.embed(s).detach() for s in seqs]
    for pooling in ("mean", "last", "first"):
        got = gw.Probe(model, ["nan"], device="cpu", pooling=pooling).capture(batch, progress=False)["nan"]
        torch.testing.assert_close(got, _by_hand([{"nan": e} for e in emb], "nan", pooling))
    with pytest.raises(ValueError, match="NaN/inf"):
        gw.Probe(model, ["nan"], device="cpu").capture(batch, progress=False)  # flatten keeps the pads


def test_mask_errors():
    model = _model()
    ids, mask = _pad(_sequences(), "right")
    probe = gw.Probe(model, ["mlp"], device="cpu", pooling="mean")
    empty = mask.clone()
    empty[3] = 0
    with pytest.raises(ValueError, match=r"sample\(s\) \[3\] have no real token"):
        probe.capture({"input_ids": ids, "attention_mask": empty}, progress=False)
    with pytest.raises(ValueError, match="1 .*for real tokens and 0 for padding"):
        probe.capture(ids, attention_mask=mask * 2, progress=False)
    with pytest.raises(ValueError, match=r"\[N, L\] with the inputs' N = 9"):
        probe.capture(ids, attention_mask=mask[:5], progress=False)
    with pytest.raises(ValueError, match="goes with Tensor/array inputs"):
        probe.capture({"input_ids": ids}, attention_mask=mask, progress=False)
    with pytest.raises(ValueError, match=r"row\(s\) \[0\] have no real token"):
        pool(torch.ones(2, 3, 4), "last", attention_mask=torch.tensor([[0, 0, 0], [1, 0, 0]]))


def test_flatten_ignores_an_invalid_mask_the_model_reads_itself():
    """Without a masked pooling the mapping's attention_mask is only the model's input."""
    model = nn.Sequential(nn.Linear(3, 2))

    class Additive(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x, attention_mask):
            return self.inner(x + attention_mask.unsqueeze(-1))

    x, additive = torch.randn(4, 5, 3), torch.zeros(4, 5).masked_fill(torch.rand(4, 5) > 0.5, -1e4)
    acts = gw.Probe(Additive(), ["inner"], device="cpu").capture({"x": x, "attention_mask": additive}, progress=False)
    torch.testing.assert_close(acts["inner"], model(x + additive.unsqueeze(-1)).detach().reshape(4, -1))


# ---------------------------------------------------------------- token mode


@pytest.mark.parametrize("side", ["right", "left"])
def test_token_rows_are_the_layer_outputs_at_sample_and_position(side):
    model = _model(5)
    seqs = _sequences(seed=5)
    ids, mask = _pad(seqs, side)
    with torch.no_grad():
        full = _layer_outputs(model, ids, LAYERS, attention_mask=mask)
    alone = _alone(model, seqs, LAYERS)
    acts = gw.Probe(model, LAYERS, device="cpu").capture(
        {"input_ids": ids, "attention_mask": mask}, pooling="tokens", batch_size=4, progress=False
    )
    tok = acts.tokens
    assert len(tok) == int(mask.sum()) and list(tok.columns) == ["sample", "position", "token"]
    assert all(tok[c].dtype == np.int64 for c in tok.columns)
    sample, position = (torch.from_numpy(tok[c].to_numpy(copy=True)) for c in ("sample", "position"))
    assert bool(mask[sample, position].all())
    pads = (mask.shape[1] - mask.sum(1)) if side == "left" else torch.zeros(len(seqs), dtype=torch.int64)
    np.testing.assert_array_equal(tok["token"], (position - pads[sample]).numpy())
    for layer in LAYERS:
        assert acts.pooling[layer] == "tokens"
        assert acts[layer].shape == (len(tok), full[layer].shape[-1])
        torch.testing.assert_close(acts[layer], full[layer][sample, position])  # the padded batch's own output
        per_sample = torch.cat([a[layer] for a in alone])  # each sample run alone, in (sample, token) order
        torch.testing.assert_close(acts[layer], per_sample)


def test_token_mode_without_a_mask_and_with_per_batch_padding():
    model = _model(6)
    seqs = _sequences(n=10, seed=6)
    ids, _ = _pad(seqs, "right")
    acts = gw.Probe(model, LAYERS, device="cpu", pooling="tokens").capture(ids, batch_size=4, progress=False)
    n, length = ids.shape
    assert len(acts.tokens) == n * length
    np.testing.assert_array_equal(acts.tokens["sample"], np.repeat(np.arange(n), length))
    np.testing.assert_array_equal(acts.tokens["position"], np.tile(np.arange(length), n))
    with torch.no_grad():
        full = _layer_outputs(model, ids, ["attn"])["attn"]
    torch.testing.assert_close(acts["attn"], full.reshape(n * length, -1))

    # a DataLoader that pads each batch to its own longest sequence: the batches differ in L
    def collate(items):
        s, y = zip(*items)
        ids_b, mask_b = _pad(list(s), "left")
        return {"input_ids": ids_b, "attention_mask": mask_b}, torch.tensor(y)

    labels = list(range(10, 20))
    loader = DataLoader(list(zip(seqs, labels)), batch_size=3, collate_fn=collate)
    acts = gw.Probe(model, LAYERS, device="cpu", pooling="tokens").capture(loader, progress=False)
    alone = _alone(model, seqs, LAYERS)
    np.testing.assert_array_equal(acts.tokens["sample"], np.repeat(np.arange(10), [len(s) for s in seqs]))
    np.testing.assert_array_equal(acts.tokens["token"], np.concatenate([np.arange(len(s)) for s in seqs]))
    for layer in LAYERS:
        torch.testing.assert_close(acts[layer], torch.cat([a[layer] for a in alone]))
    assert acts.labels.tolist() == labels


def test_token_mode_refuses_layers_that_are_not_the_sequence():
    model = _model()
    ids, mask = _pad(_sequences(), "right")
    batch = {"input_ids": ids, "attention_mask": mask}
    for layer in ("pooler", "ends"):
        with pytest.raises(ValueError, match=f"pooling='tokens' needs .*layer '{layer}' gave shape"):
            gw.Probe(model, ["mlp", layer], device="cpu").capture(batch, pooling="tokens", progress=False)
    with pytest.raises(ValueError, match="without an attention mask needs all captured layers to share one"):
        gw.Probe(model, ["mlp", "ends"], device="cpu").capture(ids, pooling="tokens", progress=False)
    with pytest.raises(ValueError, match="cannot mix them"):
        gw.Probe(model, ["mlp", "attn"], device="cpu", pooling={"mlp": "tokens"})
    with pytest.raises(ValueError, match="must be one of"):
        gw.Probe(model, ["mlp"], device="cpu").capture(batch, pooling="token", progress=False)


def test_token_and_sample_captures_share_one_probe_and_cache():
    model = _model(7)
    seqs = _sequences(seed=7)
    ids, mask = _pad(seqs, "left")
    batch = {"input_ids": ids, "attention_mask": mask}
    calls = []
    model.embed.register_forward_pre_hook(lambda m, i: calls.append(1))
    probe = gw.Probe(model, ["mlp"], device="cpu", pooling="last")
    alone = _alone(model, seqs, ["mlp"])
    n_alone = len(calls)
    last = probe.capture(batch, progress=False)
    tokens = probe.capture(batch, pooling="tokens", progress=False)
    again = probe.capture(batch, pooling="tokens", progress=False)
    assert len(calls) - n_alone == 2  # the repeated token capture is cached
    assert again["mlp"] is tokens["mlp"] and again.tokens.equals(tokens.tokens)
    assert last.tokens is None and last.pooling == {"mlp": "last"} and probe.pooling == {"mlp": "last"}
    torch.testing.assert_close(last["mlp"], _by_hand(alone, "mlp", "last"))
    torch.testing.assert_close(tokens["mlp"], torch.cat([a["mlp"] for a in alone]))
    rank = tokens.tokens["token"].to_numpy()
    ends = np.flatnonzero(np.r_[rank[1:] == 0, True])  # each sample's last real token
    torch.testing.assert_close(tokens["mlp"][ends], last["mlp"])


# ---------------------------------------------------------------- labels from the inputs


class _WithLabels(nn.Module):
    """``forward(input_ids, attention_mask, labels=None)``: records the labels it was given."""

    def __init__(self):
        super().__init__()
        self.lm = _model(8)
        self.seen = []

    def forward(self, input_ids, attention_mask=None, labels=None):
        self.seen.append(labels)
        return self.lm(input_ids, attention_mask)


class _AnyKeywords(_WithLabels):
    def forward(self, input_ids, **kwargs):
        self.seen.append(kwargs.get("labels", kwargs.get("label")))
        return self.lm(input_ids, kwargs.get("attention_mask"))


def test_loader_pairs_offer_y_as_labels():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(11, 3), torch.randint(0, 2, (11,))
    targets = torch.randn(11, dtype=torch.float64)
    probe = gw.Probe(model, ["1"], device="cpu")
    for inputs, expected in (
        (DataLoader(TensorDataset(x, y), batch_size=4), y),
        (TensorDataset(x, y), y),
        (DataLoader(list(zip(x, y.tolist())), batch_size=5), y),  # Python int labels, collated
        (DataLoader(TensorDataset(x, targets), batch_size=4), targets),  # float targets keep their dtype
    ):
        acts = probe.capture(inputs, batch_size=3, progress=False)
        assert acts.labels.dtype == expected.dtype
        torch.testing.assert_close(acts.labels, expected)
        torch.testing.assert_close(acts["1"], torch.tanh(model[0](x)).detach())
    assert probe.capture(x, progress=False).labels is None
    assert probe.capture(DataLoader(TensorDataset(x), batch_size=4), progress=False).labels is None
    strings = DataLoader(list(zip(x, [str(v) for v in y.tolist()])), batch_size=4)
    assert probe.capture(strings, progress=False).labels is None  # not one number per sample


@pytest.mark.parametrize("key", ["labels", "label"])
def test_label_entries_of_mappings_are_labels_and_reach_forward_only_when_it_takes_them(key):
    seqs = _sequences()
    ids, mask = _pad(seqs, "right")
    y = torch.arange(len(ids)) % 3
    base = _model(8)
    ref = _by_hand(_alone(base, seqs, ["mlp"]), "mlp", "mean")
    models = {"no labels": base, "labels": _WithLabels(), "kwargs": _AnyKeywords()}
    for kind, model in models.items():
        layer = "mlp" if model is base else "lm.mlp"
        for inputs in (
            {"input_ids": ids, "attention_mask": mask, key: y},
            DataLoader(_Items(ids, mask, y, key=key), batch_size=4),
        ):
            acts = gw.Probe(model, [layer], device="cpu", pooling="mean").capture(inputs, batch_size=4, progress=False)
            torch.testing.assert_close(acts.labels, y)
            torch.testing.assert_close(acts[layer], ref)
            if kind == "kwargs" or (kind == "labels" and key == "labels"):
                torch.testing.assert_close(torch.cat(model.seen), y)  # passed on, batch by batch
            elif kind == "labels":
                assert model.seen == [None] * len(model.seen)  # 'label' is not a keyword it takes
            if model is not base:
                model.seen.clear()


def test_token_level_labels_are_not_sample_labels():
    ids, mask = _pad(_sequences(), "right")
    model = _WithLabels()
    acts = gw.Probe(model, ["lm.mlp"], device="cpu", pooling="mean").capture(
        {"input_ids": ids, "attention_mask": mask, "labels": ids}, progress=False
    )
    assert acts.labels is None
    torch.testing.assert_close(torch.cat(model.seen), ids)


def test_iterate_batches_counts_samples_of_every_input_kind():
    x = torch.randn(10, 3)

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(x)

    cases = [
        (x, 10),
        ({"a": x, "b": x.numpy()}, 10),
        (TensorDataset(x), 10),
        (DataLoader(TensorDataset(x), batch_size=3), 10),
        (DataLoader(TensorDataset(x), batch_size=3, drop_last=True), 9),
        (DataLoader(TensorDataset(x), batch_size=3, shuffle=True), 10),
        (DataLoader(Stream(), batch_size=3), None),
    ]
    for inputs, n in cases:
        batches, _, counted = iterate_batches(inputs, 4)
        assert counted == n
        seen = sum(len(b["a"]) if isinstance(b, dict) else len(b) for b in batches)
        assert seen == (n if n is not None else 10)


@pytest.mark.parametrize("kind", ["mapping", "loader", "mask beside"])
def test_session_named_token_layers_default_to_the_masked_mean_not_flatten(kind):
    """Layers named by the user on a padded token batch: each sample's row must not depend on the
    padding (flatten would mix the padding positions in). Default: the mean over real tokens,
    equal to the sample's states run alone, un-padded, and the same whatever the padded length."""
    from geowidgets.session import Session

    model = _model()
    seqs = _sequences()
    labels = torch.arange(len(seqs)) % 3
    alone = _alone(model, seqs, ["mlp"])
    rows = []
    for length in (None, 11):  # padded to the longest sequence, and further
        ids, mask = _pad(seqs, "right", length)
        x, given = {
            "mapping": ({"input_ids": ids, "attention_mask": mask}, None),
            "loader": (DataLoader(_Items(ids, mask), batch_size=4), None),
            "mask beside": (ids, mask),
        }[kind]
        s = Session(model, x, labels, layers=["mlp"], k_max=3, attention_mask=given)
        assert s.probe.pooling["mlp"] == "mean"
        rows.append(s.features("mlp"))
    torch.testing.assert_close(rows[0], _by_hand(alone, "mlp", "mean"), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rows[1], rows[0], rtol=1e-5, atol=1e-5)
    # Without a mask, named layers keep every value.
    plain = Session(model, _pad(seqs, "right")[0], labels, layers=["mlp"], k_max=3)
    assert plain.probe.pooling["mlp"] == "flatten"
