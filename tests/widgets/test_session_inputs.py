"""A Session over inputs other than one tensor: mappings of keyword arguments, Datasets, DataLoaders."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from geowidgets.session import INPUT_LAYER, Session


class _TwoInputs(nn.Module):
    """``forward(x, z)``: called with keyword arguments from a mapping."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x, z):
        return self.out(torch.tanh(self.hidden(x - z)))


def _data(n=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g), torch.arange(n) % 3


def test_mapping_inputs_count_samples_not_keys():
    torch.manual_seed(0)
    model = _TwoInputs().eval()
    x, z, y = _data()
    session = Session(model, {"x": x, "z": z.numpy()}, y, layers=["hidden"], k_max=5)
    assert session.n == len(x) != 2
    with torch.no_grad():
        torch.testing.assert_close(session.features("hidden"), model.hidden(x - z))
        np.testing.assert_array_equal(session.predictions, model(x, z).argmax(1).numpy())
    with pytest.raises(ValueError, match="mapping of keyword arguments.*hidden layers \\['hidden'\\]"):
        session.slice_space(INPUT_LAYER)
    with pytest.raises(ValueError, match="same number of samples"):
        Session(model, {"x": x, "z": z[:10]}, layers=["hidden"])


def test_dataset_and_loader_inputs_count_their_samples():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).eval()
    x, _, y = _data(seed=1)
    pairs = TensorDataset(x, y)
    for inputs, n in (
        (pairs, 17),
        (DataLoader(pairs, batch_size=5), 17),
        (DataLoader(pairs, batch_size=5, drop_last=True), 15),
    ):
        session = Session(model, inputs, layers=["1"], k_max=5)
        assert session.n == n
        with torch.no_grad():
            torch.testing.assert_close(session.features("1"), torch.tanh(model[0](x[:n])))
        with pytest.raises(ValueError, match="Dataset/DataLoader: give the session the stacked inputs"):
            session.slice_space(INPUT_LAYER)

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(x)

    with pytest.raises(ValueError, match="needs to know its number of samples"):
        Session(model, DataLoader(Stream(), batch_size=4), layers=["1"])


def test_a_shuffling_loader_is_read_in_dataset_order_so_given_labels_match():
    from torch.utils.data import WeightedRandomSampler

    import geowidgets as gw

    torch.manual_seed(0)
    X = torch.randn(100, 5)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        y = model(X).argmax(1)  # labels = predictions: every sample is correct when rows and labels align
        hidden = model[1](model[0](X))
    loader = DataLoader(TensorDataset(X), batch_size=16, shuffle=True, drop_last=True)
    s = gw.Session(model, loader, y, layers=["1"], k_max=10)
    assert s.n == 100 and bool(s.correct.all())  # every sample, none dropped, in dataset order
    torch.testing.assert_close(s.features("1"), hidden, rtol=1e-6, atol=1e-6)  # batches of 16 vs one of 100
    weighted = DataLoader(TensorDataset(X), batch_size=16, sampler=WeightedRandomSampler(torch.ones(100), 100))
    with pytest.raises(ValueError, match=r"does not read its dataset in order.*matched to the labels"):
        gw.Session(model, weighted, y, k_max=10)


def test_the_default_k_is_at_most_k_max():
    """A session with k_max below 10 (few samples, or asked for): the views start at k = k_max instead of failing."""
    import geowidgets as gw

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    X, y = torch.randn(200, 4), torch.arange(200) % 3
    ex = gw.Explorer(mlp, X, y, k_max=5, method="pca")
    try:
        assert ex.wait(120) and ex.k == 5 and ex.embedding.k == 5 and ex.deviation_map.k == 5, ex.message
        assert ex.status == "idle", ex.message
    finally:
        ex.close()
    with pytest.warns(UserWarning, match="using k_max=9"):
        session = gw.Session(mlp, X[:11], y[:11])  # k_max lowered to N - 2 = 9
    view = gw.EmbeddingView(session, method="pca")
    try:
        assert session.k_max == 9 and view.k == 9
    finally:
        view.close()
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 5\]"):
        gw.Explorer(mlp, X, y, k_max=5, k=6, method="pca")


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (lambda y: np.where(np.arange(40) == 3, np.nan, y), r"targets\)\[3\] is nan: every sample needs a label"),
        (lambda y: pd.Series([*y[:39], None]), r"targets\)\[39\] is nan"),
        (lambda y: np.r_[y, 1.0], r"targets\) has length 41 but the data has 40 rows"),
        (lambda y: np.stack([y, y], 1), r"targets\) must be 1-D with one label per row, got shape \(40, 2\)"),
        (lambda y: ["a"] * 40, r"targets\) must be numbers"),
    ],
)
def test_regression_targets_are_checked_at_construction(targets, message):
    import geowidgets as gw

    torch.manual_seed(0)
    X = torch.randn(40, 4)
    reg = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).eval()
    y = X[:, 0].numpy().astype(np.float64)
    with pytest.raises(ValueError, match=message):
        gw.Session(reg, X, targets(y), task="regression", k_max=5)
    ok = gw.Session(reg, X, pd.Series(y.astype(np.float32)), task="regression", k_max=5)
    np.testing.assert_array_equal(ok.targets, y.astype(np.float32).astype(np.float64))


def test_a_model_returning_several_per_sample_tensors_is_warned_about():
    import geowidgets as gw

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 3)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return h, self.b(h)

    X, y = torch.randn(60, 4), torch.arange(60) % 3
    with pytest.warns(UserWarning, match=r"returns 2 tensors per sample \(\[N, 8\] and \[N, 3\]\).*output=1"):
        assert gw.Session(Two().eval(), X, y, k_max=5).outputs.shape == (60, 8)  # the first, as documented
    picked = gw.Session(Two().eval(), X, y, k_max=5, output=1)
    assert picked.logits.shape == (60, 3)
