"""Labels are class indices (the model's output columns), never ranks of the values present.

Every expected value is computed directly from the model's own output, independently of the session.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn


def _sparse_class_model(n_per_class: int = 40, classes=(0, 5, 9), n_classes: int = 10, seed: int = 0):
    """A 100% accurate 10-class model on samples of classes {0, 5, 9} only."""
    g = torch.Generator().manual_seed(seed)
    labels = np.repeat(np.array(classes), n_per_class)
    X = torch.zeros(len(labels), n_classes)
    X[torch.arange(len(labels)), torch.from_numpy(labels)] = 5.0
    X += 0.3 * torch.randn(X.shape, generator=g)
    model = nn.Sequential(nn.Linear(n_classes, 16), nn.ReLU(), nn.Linear(16, n_classes))
    with torch.no_grad():  # out = relu(x): the largest input column wins
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[0].weight[:n_classes] = torch.eye(n_classes)
        model[2].weight.zero_()
        model[2].bias.zero_()
        model[2].weight[:, :n_classes] = torch.eye(n_classes)
    return model, X, labels


def test_sparse_integer_labels_are_class_indices():
    from geowidgets.session import Session

    model, X, labels = _sparse_class_model()
    truth = model(X).argmax(1).numpy() == labels
    assert truth.all()  # independent check: the model really is 100% accurate
    s = Session(model, X, labels, layers=["0"], k_max=10)
    assert s.correct.mean() == truth.mean() == 1.0
    assert s.reference_mask.sum() == len(labels) == 120
    spec = s.colour_values("label")
    np.testing.assert_array_equal(spec.values, labels)  # value 5 stays 5
    assert spec.categories == [str(c) for c in range(10)]
    assert spec.vmax == 9.0
    np.testing.assert_array_equal(s.colour_values("prediction").values, labels)


def test_digits_without_a_class_keeps_its_accuracy():
    from geowidgets.datasets import digits_demo
    from geowidgets.session import Session

    demo = digits_demo()
    keep = demo.labels.numpy() != 2 if isinstance(demo.labels, torch.Tensor) else np.asarray(demo.labels) != 2
    X, y = demo.inputs[keep], np.asarray(demo.labels)[keep]
    with torch.no_grad():
        accuracy = float((demo.model.eval()(X).argmax(1).numpy() == y).mean())
    s = Session(demo.model, X, y, layers=demo.layers[-1:], k_max=10)
    assert s.correct.mean() == pytest.approx(accuracy, abs=1e-12)
    assert accuracy > 0.9  # a true ~97.7%, not the 21.9% that ranking labels gave


@pytest.mark.parametrize(
    "wrap",
    [
        lambda y: y,
        lambda y: list(y),
        lambda y: torch.from_numpy(y),
        lambda y: pd.Series(y, index=np.arange(len(y))[::-1] + 1000),  # a shuffled index is ignored: positional
        lambda y: pd.Series(pd.Categorical(y)),
        lambda y: pd.Categorical(y),
        lambda y: y.astype(np.float64),  # pandas' integer columns become floats
    ],
    ids=["ndarray", "list", "tensor", "series", "series-categorical", "categorical", "float"],
)
def test_label_containers_agree(wrap):
    from geowidgets.session import Session

    model, X, labels = _sparse_class_model(n_per_class=10)
    s = Session(model, X, wrap(labels), layers=["0"], k_max=5)
    np.testing.assert_array_equal(s.labels, labels)
    assert s.correct.all()
    assert s.reference_mask.sum() == len(labels)


def test_string_labels_need_class_names():
    from geowidgets.session import Session

    model, X, labels = _sparse_class_model(n_per_class=10)
    names = [f"digit {c}" for c in range(10)]
    text = np.array([names[c] for c in labels])
    with pytest.raises(ValueError, match="class_names"):
        Session(model, X, text, layers=["0"], k_max=5)
    s = Session(model, X, pd.Series(text, dtype="category"), layers=["0"], class_names=names, k_max=5)
    np.testing.assert_array_equal(s.labels, labels)
    assert s.correct.all()
    assert s.colour_values("label").categories == names
    with pytest.raises(ValueError, match="not in class_names"):
        Session(model, X, np.array(["cat"] * len(labels)), layers=["0"], class_names=names, k_max=5)


@pytest.mark.parametrize(
    "bad, position",
    [
        ([0, 5, None, 9], 2),
        ([0.0, np.nan, 5.0, 9.0], 1),
        (pd.Series([0, 5, 9, None], dtype="Int64"), 3),
        (pd.Series(["a", None, "b", "c"]), 1),
    ],
)
def test_missing_labels_name_the_first_bad_position(bad, position):
    from geowidgets.geometry._arrays import as_class_indices, as_labels

    with pytest.raises(ValueError, match=rf"labels\[{position}\]"):
        as_class_indices(bad, 4, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=rf"labels\[{position}\]"):
        as_labels(bad, 4)


def test_labels_beyond_the_output_width_are_refused():
    from geowidgets.session import Session

    model, X, labels = _sparse_class_model(n_per_class=10)
    y = labels.copy()
    y[3] = 12
    s = Session(model, X, y, layers=["0"], k_max=5)
    with pytest.raises(ValueError, match=r"labels\[3\] = 12 .* 10 columns"):
        _ = s.correct
    with pytest.raises(ValueError, match="whole number"):
        Session(model, X, labels + 0.5, layers=["0"], k_max=5)
    with pytest.raises(ValueError, match="negative"):
        Session(model, X, labels - 1, layers=["0"], k_max=5)
