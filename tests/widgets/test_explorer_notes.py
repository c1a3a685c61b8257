"""Explorer: ``pooling=`` reaches the Session, and the session's layer note is shown under the controls.

Expected features are the model's own sub-module outputs (``model[: i + 1](x)``), pooled here with
torch (mean over the spatial dims, or flattened), not read from the probe.
"""

from __future__ import annotations

import html

import numpy as np
import pytest
import torch
from torch import nn

from geowidgets.widgets import Explorer


@pytest.fixture(scope="module")
def cnn():
    """A tiny untrained CNN (conv block, dropout, flatten, linear) on 60 random 8x8 images, 3 classes."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.1),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    ).eval()
    x = torch.randn(60, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(60) % 3
    return model, x, y


def _explorer(cnn, **kwargs) -> Explorer:
    model, x, y = cnn
    ex = Explorer(model, x, y, k_max=5, k=3, method="pca", **kwargs)
    assert ex.wait(120), ex.message
    return ex


def _block_output(model: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    with torch.inference_mode():
        return model[: int(name) + 1](x)


def test_default_layers_pool_conv_maps_and_the_note_says_so(cnn):
    model, x, _ = cnn
    ex = _explorer(cnn)
    try:
        conv_block = ex.session.layers[0]
        out = _block_output(model, x, conv_block)
        assert out.dim() == 4  # a conv map [N, C, H, W]
        expected = out.mean(dim=(2, 3)).numpy()
        np.testing.assert_allclose(np.asarray(ex.session.features(conv_block)), expected, rtol=1e-5, atol=1e-6)
        note = ex.session.layer_note
        assert note and "'mean'" in note and str(len(ex.session.layers)) in note
        assert ex.layer_note in ex.children
        assert ex.layer_note.value == html.escape(note)
        assert "gw-layer-note" in ex.layer_note._dom_classes
    finally:
        ex.close()


def test_pooling_is_forwarded_to_the_session(cnn):
    model, x, _ = cnn
    ex = _explorer(cnn, pooling="flatten")
    try:
        conv_block = ex.session.layers[0]
        expected = _block_output(model, x, conv_block).flatten(1).numpy()
        features = np.asarray(ex.session.features(conv_block))
        assert features.shape == expected.shape
        np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
        assert "'flatten'" in ex.session.layer_note
        assert ex.layer_note.value == html.escape(ex.session.layer_note)
    finally:
        ex.close()


def test_given_layers_show_no_note(cnn):
    model, x, _ = cnn
    ex = _explorer(cnn, layers=["1", "5"])
    try:
        assert ex.session.layer_note == ""
        assert ex.layer_note not in ex.children
        # Named layers are flattened: the ReLU map keeps every position.
        expected = _block_output(model, x, "1").flatten(1).numpy()
        np.testing.assert_allclose(np.asarray(ex.session.features("1")), expected, rtol=1e-5, atol=1e-6)
    finally:
        ex.close()


def test_the_slice_note_says_why_a_pooled_layer_is_sliced_elsewhere(cnn):
    model, x, y = cnn
    ex = _explorer(cnn)
    try:
        conv_block = ex.session.layers[0]  # a conv map [4, 4, 4] pooled by its mean
        ex.layer = conv_block
        assert ex.wait(120)
        assert ex.slice is not None and ex.slice.layer == "input"
        note = html.unescape(ex.slice_note.value)
        assert f"decision slice and MixUp in input space: {conv_block}'s output [4, 4, 4] is pooled ('mean')" in note
        ex.layer = ex.session.layers[-1]
        assert ex.wait(120) and ex.slice.layer == ex.layer and ex.slice_note.value == ""
    finally:
        ex.close()
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x, y), batch_size=16)  # no input space: the slice goes to the next layer
    ex = Explorer(model, loader, k_max=5, k=3, method="pca")
    try:
        assert ex.wait(120)
        ex.layer = ex.session.layers[0]
        assert ex.wait(120)
        assert ex.slice.layer == ex.session.layers[-1] and ex.slice.status == "idle", ex.slice.message
        assert "Dataset/DataLoader" in html.unescape(ex.slice_note.value)
    finally:
        ex.close()


def test_boundary_distance_at_a_pooled_layer_says_why(cnn):
    model, x, y = cnn
    from geowidgets import Session

    session = Session(model, x, y, k_max=5)
    with pytest.raises(ValueError, match=r"moves each sample through .* is pooled \('mean'\)"):
        session.boundary_distances(session.layers[0])
