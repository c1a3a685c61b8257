"""Sessions and Explorers for every kind of model: task=, output=, head=, metadata=, texts=, search.

Expected values come from the model's own forward pass, pandas and numpy on the inputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from geowidgets import Explorer
from geowidgets.session import Session

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class ModelOutput:
    """An object with a ``logits`` attribute, like a Hugging Face ModelOutput."""

    def __init__(self, logits: torch.Tensor, hidden: torch.Tensor):
        self.logits = logits
        self.hidden = hidden


class Wrapped(nn.Module):
    def __init__(self, model: nn.Sequential, kind: str):
        super().__init__()
        self.body, self.kind = model, kind

    def forward(self, x):
        h = self.body[:-1](x)
        logits = self.body[-1](h)
        if self.kind == "object":
            return ModelOutput(logits, h)
        if self.kind == "dict":
            return {"hidden": h, "scores": logits}
        return (h, logits)


def _encoder(demo) -> nn.Sequential:
    return nn.Sequential(*list(demo.model.children())[:-1])


@pytest.mark.parametrize(("kind", "output"), [("object", None), ("dict", "scores"), ("tuple", 1), ("tuple", "fn")])
def test_output_selects_the_logits(demo, kind, output):
    model = Wrapped(demo.model, kind).eval()
    out = (lambda o: o[1]) if output == "fn" else output
    s = Session(model, demo.inputs, demo.labels, layers=["body.relu2"], output=out, k_max=10)
    with torch.no_grad():
        expected = demo.model(demo.inputs)
    assert s.task == "classification"
    torch.testing.assert_close(s.logits, expected)
    np.testing.assert_array_equal(s.predictions, expected.argmax(1).numpy())


def test_auto_refuses_a_single_output_and_asks_for_task(demo):
    reg = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    with pytest.raises(ValueError, match=r"task='auto'.*\(300, 1\).*task='regression'"):
        _ = Session(reg, demo.inputs, k_max=10).task
    with pytest.raises(ValueError, match="task must be one of"):
        Session(reg, demo.inputs, task="ranking")


def test_regression_colorings(demo):
    reg = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).eval()
    target = demo.inputs[:, 0] * 2.0
    s = Session(reg, demo.inputs, target, task="regression", k_max=10)
    with torch.no_grad():
        pred = reg(demo.inputs).double().numpy().ravel()
    assert s.colorings == ["target", "prediction", "abs_error", "deviation"]
    np.testing.assert_allclose(s.color_values("prediction").values, pred, rtol=1e-5)
    np.testing.assert_allclose(s.color_values("target").values, target.numpy(), rtol=1e-6)
    err = s.color_values("abs_error")
    np.testing.assert_allclose(err.values, np.abs(pred - target.double().numpy()), rtol=1e-4, atol=1e-6)
    assert err.kind == "continuous" and err.vmin == 0.0
    assert s.labels is None and s.correct is None
    ex = Explorer.from_session(s, method="pca")
    assert ex.wait() and ex.status == "idle"
    assert ex.slice is not None and ex.no_slice_reason == ""  # the slice shows the predicted value
    # the output layer has one feature: no plane there, so the slice stays at the last 2-D+ layer
    assert s.features("2").shape[1] == 1 and ex.layer == "2" and ex.slice.layer == "1"
    assert ex.embedding.predictions is None and "target: " in ex.embedding.details[0]


def test_embedding_explorer_with_metadata_texts_and_search(demo):
    n = demo.inputs.shape[0]
    meta = pd.DataFrame({"parity": np.where(np.arange(n) % 2, "odd", "even"), "size": np.arange(n) * 0.5})
    texts = [f"sample number {i}" for i in range(n)]
    ex = Explorer(
        _encoder(demo), demo.inputs, demo.labels, task="embedding", metadata=meta, texts=texts, k_max=20, method="pca"
    )
    assert ex.wait() and ex.status == "idle", ex.message
    s = ex.session
    assert s.predictions is None and s.correct is None
    assert ex.slice is None and "head=" in ex.no_slice_reason
    options = ["label", "deviation", "knn_agreement", "neighbourhood_kept", "parity", "size"]
    assert list(ex.color_dropdown.options) == options
    parity = s.color_values("parity")
    cat = pd.Categorical(meta["parity"])
    assert parity.kind == "categorical" and parity.categories == list(cat.categories)
    np.testing.assert_array_equal(parity.values, cat.codes)
    size = s.color_values("size")
    assert size.kind == "continuous" and (size.vmin, size.vmax) == (0.0, float(meta["size"].max()))
    ex.color_by = "parity"
    assert ex.wait() and ex.embedding.color_label == "parity"
    assert ex.embedding.texts == texts and ex.embedding.details[3] == "parity: odd\nsize: 1.5"
    # The reference is every sample (no class logits to judge them by).
    assert s.reference_mask.all()
    assert ex.search("label == 2 and parity == 'odd'") == [i for i in range(n) if demo.labels[i] == 2 and i % 2 == 1]
    assert ex.selection == ex.search("label == 2 and parity == 'odd'")
    assert ex.search("number 17") == [i for i in range(n) if "number 17" in texts[i]]


def test_head_makes_an_encoder_a_classifier(demo):
    head = list(demo.model.children())[-1]
    s = Session(_encoder(demo), demo.inputs, demo.labels, task="embedding", head=head, k_max=10)
    with torch.no_grad():
        expected = demo.model(demo.inputs)
    assert s.task == "classification"
    torch.testing.assert_close(s.logits, expected)


def test_labels_from_a_loader_of_pairs(demo):
    loader = DataLoader(TensorDataset(demo.inputs, torch.as_tensor(demo.labels)), batch_size=64)
    s = Session(demo.model, loader, k_max=10)
    np.testing.assert_array_equal(s.labels, np.asarray(demo.labels))


def test_token_mode_rows_and_per_sample_values():
    from geowidgets._arithmetic import AdditionTransformer

    torch.manual_seed(0)
    lm = AdditionTransformer(max_len=6, d_model=8, n_heads=2, n_layers=1, d_ff=16).eval()
    ids = torch.randint(0, 10, (10, 6))
    keep = torch.zeros(10, 6, dtype=torch.long)
    keep[:, 3:] = 1
    s = Session(
        lm,
        ids,
        labels=np.arange(10) % 3,
        layers=["blocks.0"],
        pooling="tokens",
        attention_mask=keep,
        task="embedding",
        texts=[f"t{i}" for i in range(10)],
        k_max=5,
    )
    assert s.n == int(keep.sum()) == len(s.tokens)
    sample = s.tokens["sample"].to_numpy()
    np.testing.assert_array_equal(s.labels, (np.arange(10) % 3)[sample])
    assert s.texts == [f"t{i}" for i in sample]
    assert list(s.metadata.columns) == ["sample", "position", "token"]
    with torch.no_grad():
        logits = lm(ids)
    np.testing.assert_allclose(s.outputs.numpy(), logits[sample, s.tokens["position"].to_numpy()].numpy(), rtol=1e-5)


@pytest.mark.parametrize("mode", [False, True])
def test_session_leaves_the_models_mode_alone(mode):
    """A capture through the prediction wrapper restores the user's own train/eval mode."""
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train(mode)
    x = torch.randn(30, 4)
    stats = model[1].running_mean.clone()
    s = Session(model, x, np.arange(30) % 3, output=lambda out: out, k_max=5)
    s.activations()
    assert model.training is mode
    assert all(m.training is mode for m in model.modules())
    torch.testing.assert_close(model[1].running_mean, stats)  # captured in eval mode: BatchNorm stats untouched


def test_float_targets_without_task_suggest_regression(demo):
    """A regressor's float targets given without task=: the error says which task to pass."""
    reg = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    targets = demo.inputs[:, 0] * 2.0 + 0.1
    with pytest.raises(ValueError, match=r"not a whole number.*task='regression'"):
        Session(reg, demo.inputs, targets, k_max=10)
