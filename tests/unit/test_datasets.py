"""Built-in demo data and models: shapes, seeding, and that the models actually learned."""

import pytest
import torch

from geowidgets import datasets


@pytest.mark.parametrize("kind", datasets.TOY_KINDS)
def test_toy_data_is_seeded_and_standardised(kind):
    X1, y1 = datasets.toy_data(kind, n=300, seed=3)
    X2, y2 = datasets.toy_data(kind, n=300, seed=3)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    assert X1.shape == (300, 2) and X1.dtype == torch.float32 and y1.dtype == torch.int64
    torch.testing.assert_close(X1.mean(0), torch.zeros(2), atol=1e-5, rtol=0)


def test_toy_data_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        datasets.toy_data("swissroll")


def test_toy_demo_learns_and_is_reproducible():
    a = datasets.toy_demo("spirals", n=600, seed=1)
    b = datasets.toy_demo("spirals", n=600, seed=1)
    assert a.accuracy("test") > 0.9
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_digits_demo_cnn_learns_and_leaves_errors_to_study():
    demo = datasets.digits_demo()
    assert demo.inputs.shape == (1797, 1, 8, 8) and demo.images.shape == (1797, 8, 8)
    acc = demo.accuracy("test")
    assert 0.9 < acc < 1.0  # good, yet with misclassified samples for the deviation demo
    assert set(demo.layers) <= {name for name, _ in demo.model.named_modules()}
    other = datasets.digits_demo()
    assert other.model is not demo.model  # callers get independent copies
