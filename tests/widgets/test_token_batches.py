"""A tokenizer batch (a dict of input_ids and attention_mask) into an HF-style classifier and a headless encoder.

Found by a new user: the encoder's default layers named its ModuleList (never called), and the
classifier's decision slice indexed the dict by a sample number (KeyError).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import geowidgets as gw


@dataclasses.dataclass
class Out:
    logits: torch.Tensor


class Enc(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 16)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(16, 16), nn.GELU()) for _ in range(2)])

    def forward(self, input_ids, attention_mask=None):
        h = self.emb(input_ids)
        for b in self.blocks:
            h = h + b(h)
        return h


class Clf(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Enc()
        self.classifier = nn.Linear(16, 3)

    def forward(self, input_ids, attention_mask=None):
        h = self.encoder(input_ids)
        m = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
        return Out(self.classifier(pooled))


def _batch():
    torch.manual_seed(0)
    ids = torch.randint(1, 30, (300, 12))
    mask = torch.ones(300, 12, dtype=torch.long)
    mask[::3, 8:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}, torch.randint(0, 3, (300,))


def test_classifier_on_a_tokenizer_batch_gets_its_slice_and_mixup():
    batch, y = _batch()
    model = Clf().eval()
    ex = gw.Explorer(model, batch, y, method="pca", k_max=10)
    try:
        assert ex.wait(120)
        assert ex.slice is not None and ex.slice.status == "idle", ex.slice.message
        assert ex.mixup is not None and ex.mixup.status == "idle", ex.mixup.message
        # The session ran the dict as keyword arguments, mask included: anchor A is predicted as the model does.
        a = ex.slice.anchors[0]
        with torch.no_grad():
            own = model(**{k: v[a : a + 1] for k, v in batch.items()}).logits.argmax(1).item()
        assert int(ex.session.predictions[a]) == own
    finally:
        ex.close()


def test_headless_encoder_with_a_module_list_explores_its_blocks():
    batch, _ = _batch()
    ex = gw.Explorer(Clf().encoder, batch, task="embedding", method="pca", k_max=10)
    try:
        assert ex.wait(120) and ex.status == "idle", ex.message
        assert ex.session.layers == ["emb", "blocks.0", "blocks.1"]
        assert np.isfinite(ex.profile.values["rankme"]).all()
    finally:
        ex.close()


class WideClf(Clf):
    """A sequence classifier with as many classes as positions (12): its logits [N, 12] look like [N, L]."""

    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(16, 12)


@pytest.mark.parametrize("model_cls", [Clf, WideClf])
def test_token_mode_with_default_layers_leaves_out_the_class_head_and_repeats_its_logits(model_cls):
    batch, y = _batch()
    torch.manual_seed(1)
    model = model_cls().eval()
    session = gw.Session(model, batch, y, pooling="tokens", k_max=10)
    assert session.layers == ["encoder"]  # the head's [N, C] output is not a token sequence
    assert set(session.left_out) == {"classifier"}
    assert "left out: classifier [" in session.layer_note and "] per sample, not a token sequence" in session.layer_note
    sample = session.tokens["sample"].to_numpy()
    assert session.n == int(batch["attention_mask"].sum()) == len(sample)
    with torch.no_grad():
        logits = model(**batch).logits
    assert session.task == "classification"
    # One prediction per sentence, repeated for each of its tokens (as the labels are), never read per position.
    torch.testing.assert_close(session.logits, logits[torch.from_numpy(sample.copy())], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(session.labels, y.numpy()[sample])


def test_token_mode_refuses_default_layers_without_a_sequence():
    batch, _ = _batch()
    head_only = nn.Sequential()
    head_only.add_module("proj", nn.Linear(12, 4))  # takes the ids as floats: a [N, 4] output, no sequence
    with pytest.raises(ValueError, match=r"none of the model's default layers \(proj\) outputs a token sequence"):
        gw.Session(head_only, batch["input_ids"].float(), None, pooling="tokens", k_max=5, task="embedding")


def test_token_mode_offers_no_boundary_search():
    batch, y = _batch()
    session = gw.Session(Clf().eval(), batch, y, pooling="tokens", k_max=10)
    assert "boundary_distance" not in session.colorings and "lodd_score" in session.colorings
    with pytest.raises(ValueError, match=r"rows are tokens \(pooling='tokens'\).*per-sample pooling"):
        session.boundary_distances("encoder")
    assert "1 block that outputs a token sequence" in session.layer_note


def test_the_labels_entry_of_a_tokenizer_batch_are_the_session_labels():
    batch, y = _batch()
    session = gw.Session(Clf().eval(), {**batch, "labels": y}, k_max=10)
    np.testing.assert_array_equal(session.labels, y.numpy())
    tokens = gw.Session(Clf().eval(), {**batch, "labels": y}, pooling="tokens", k_max=10)
    np.testing.assert_array_equal(tokens.labels, y.numpy()[tokens.tokens["sample"].to_numpy()])


def test_moving_the_layer_never_raises_and_the_note_says_where_the_slice_is():
    """A pooled layer of a dict batch: no input space, so the slice goes to the next layer that takes a plane."""
    batch, y = _batch()
    ex = gw.Explorer(Clf().eval(), batch, y, method="pca", k_max=10)
    try:
        assert ex.wait(120)
        for layer in [*ex.session.layers, *reversed(ex.session.layers)]:
            ex.layer = layer  # a Python write is a control move: it must never raise
            assert ex.wait(120)
        ex.layer = "encoder"  # its output [12, 16] is pooled over the real tokens
        assert ex.wait(120)
        assert ex.slice is not None and ex.slice.layer == "classifier" and ex.mixup.layer == "classifier"
        assert ex.slice.status == "idle", ex.slice.message
        note = ex.slice_note.value
        assert "in layer classifier: encoder" in note and "pooled" in note and "mapping" in note
        ex.layer = "classifier"
        assert ex.wait(120) and ex.slice_note.value == "" and ex.slice_note.layout.display == "none"
    finally:
        ex.close()


class NeedsMask(Clf):
    """A classifier whose forward needs its attention mask (no default)."""

    def forward(self, input_ids, attention_mask):
        return super().forward(input_ids, attention_mask.long())


def test_a_model_that_needs_its_mask_gets_a_slice_error_that_says_so():
    batch, y = _batch()
    session = gw.Session(NeedsMask().eval(), batch, y, k_max=10)
    with pytest.raises(ValueError, match=r"input_ids alone, its other arguments \(the attention mask among them\)"):
        session.decision_slice("classifier", session.default_anchors())


class TinyGPT(nn.Module):
    """As in many from-scratch tutorials: a top-level position embedding called on arange(L), [L, D] for any batch."""

    def __init__(self, vocab=30, length=12, dim=16):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, dim)
        self.position_embedding = nn.Embedding(length, dim)
        self.block = nn.TransformerEncoderLayer(dim, 2, 32, batch_first=True, dropout=0.0)
        self.head = nn.Linear(dim, 3)

    def forward(self, input_ids):
        positions = self.position_embedding(torch.arange(input_ids.shape[1]))
        h = self.block(self.token_embedding(input_ids) + positions)
        return self.head(h.mean(1))


def test_default_layers_leave_out_a_layer_that_is_not_one_row_per_sample():
    torch.manual_seed(0)
    ids = torch.randint(0, 30, (60, 12))
    model = TinyGPT().eval()
    session = gw.Session(model, ids, torch.arange(60) % 3, k_max=5)
    assert "position_embedding" not in session.layers and "block" in session.layers
    assert session.left_out == {"position_embedding": "[12, 16] for a batch of 2, not one row per sample"}
    assert "left out: position_embedding [12, 16] for a batch of 2, not one row per sample" in session.layer_note
    with torch.no_grad():
        expected = model.block(model.token_embedding(ids) + model.position_embedding(torch.arange(12))).mean(1)
    torch.testing.assert_close(session.features("block"), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"'position_embedding' gave 12 rows for a batch of"):
        gw.Session(model, ids, torch.arange(60) % 3, layers=["position_embedding"], k_max=5).features(
            "position_embedding"
        )
