"""The constructor never waits for the whole capture, and a layer's first picture is drawn from landmarks.

Issue "Real sizes": the Explorer appears at once at any N (the capture runs on the queue's worker),
and its first picture is the PCA of a random subsample captured first, replaced by the layout of
every sample when the full capture is done. The landmarks' rows must equal the same rows of the
full capture (eval mode), whatever the input kind.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from geowidgets.probe import take_rows
from geowidgets.session import Session


class Counting(nn.Module):
    """A classifier that records how many samples each thread ran, and can hold the full capture."""

    def __init__(self, hold_after: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
        self.seen: dict[str, int] = {}
        self.hold_after = hold_after
        self.release = threading.Event()
        self.total = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = threading.current_thread().name
        self.seen[name] = self.seen.get(name, 0) + len(x)
        self.total += len(x)
        if self.hold_after is not None and self.total > self.hold_after:
            assert self.release.wait(60), "the test never released the full capture"
        return self.net(x)


def _data(n: int = 1200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 6, generator=g) + 2.0 * nn.functional.one_hot(y, 6).float()
    return x, y


def test_take_rows_keeps_every_input_kind():
    x, y = _data(50)
    rows = np.array([3, 7, 20])
    assert torch.equal(take_rows(x, rows)[0], x[rows])
    np.testing.assert_array_equal(take_rows(x.numpy(), rows)[0], x.numpy()[rows])
    mapping, mask = take_rows({"input_ids": x, "attention_mask": y}, rows, attention_mask=y[:, None])
    assert torch.equal(mapping["input_ids"], x[rows]) and torch.equal(mask, y[rows, None])
    pairs = take_rows(TensorDataset(x, y), rows)[0]
    assert [int(pairs[i][1]) for i in range(3)] == y[rows].tolist()
    loader = take_rows(DataLoader(TensorDataset(x, y), batch_size=4), rows)[0]
    assert torch.equal(torch.cat([b[0] for b in loader]), x[rows])
    # A shuffled loader's order is not the dataset's: its rows cannot be addressed.
    assert take_rows(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True), rows) is None


@pytest.mark.parametrize("kind", ["tensor", "dataset", "loader", "shuffled_loader"])
def test_landmarks_equal_the_same_rows_of_the_full_capture(kind):
    """BatchNorm in train mode, in-place ReLU: the landmarks' rows equal the full capture's (eval mode)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 32), nn.BatchNorm1d(32), nn.ReLU(inplace=True), nn.Linear(32, 3)).train()
    x, y = _data(700)
    inputs = {
        "tensor": x,
        "dataset": TensorDataset(x, y),
        "loader": DataLoader(TensorDataset(x, y), batch_size=64),
        "shuffled_loader": DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True),
    }[kind]
    s = Session(model, inputs, y if kind == "tensor" else None, layers=["1", "2"], k_max=10, batch_size=128)
    marks = s.landmarks(100)
    assert marks.rows.shape == (100,) and np.all(np.diff(marks.rows) > 0)
    for layer in ("1", "2"):
        np.testing.assert_allclose(marks.features[layer].numpy(), s.features(layer)[marks.rows].numpy(), atol=1e-5)
    np.testing.assert_allclose(marks.outputs.numpy(), s.outputs[marks.rows].numpy(), atol=1e-5)
    assert s.landmarks(100) is marks  # captured once
    assert model.training  # the user's model is left as it was


def test_constructor_returns_while_the_capture_is_still_running():
    """The model's full capture is held until the Explorer exists: the constructor must not wait for it."""
    import geowidgets as gw

    model = Counting(hold_after=Session.SHAPE_ROWS + Session.PREVIEW_ROWS)
    x, y = _data(3000)
    ex = gw.Explorer(model, x, y, layers=["net.1", "net.3"], k_max=10, method="pca")
    try:
        main = threading.main_thread().name
        assert model.seen.get(main, 0) <= Session.SHAPE_ROWS  # only the shapes' probe ran on the kernel thread
        assert not ex.session.captured
        assert ex.layer == "net.3" and ex.color_by == "label" and ex.slice is not None
        model.release.set()
        assert ex.wait(120)
        assert ex.session.captured and sum(model.seen.values()) >= 3000
        assert len(set(ex.slice.anchors)) == 3  # the default anchors, chosen on the worker
        assert ex.slice.anchors == list(ex.session.default_anchors())
        assert ex.mixup is not None and (ex.mixup.a, ex.mixup.b) == ex.session.default_anchors()[:2]
    finally:
        model.release.set()
        ex.close()


def test_first_picture_is_the_landmarks_pca_then_every_sample_oriented_alike():
    import geowidgets as gw

    n, m = 1500, 200
    model = Counting(hold_after=Session.SHAPE_ROWS + m)  # the full capture waits for the test
    x, y = _data(n)
    s = Session(model, x, y, layers=["net.1", "net.3"], k_max=10)
    s.PREVIEW_ROWS = m
    view = gw.EmbeddingView(s, layer="net.3", method="pca")
    try:
        for _ in range(600):
            if view.sample_indices is not None:
                break
            threading.Event().wait(0.05)
        assert view.sample_indices is not None, (view.status, view.message, view.title, s.captured, model.seen)
        marks = s.landmarks(m)
        np.testing.assert_array_equal(view.sample_indices, marks.rows)
        assert view.positions.shape == (m, 2)
        assert "PCA of 200 landmarks of 1,500 samples" in view.title
        # Colored by label (no capture needed), indexed by sample; labels sent for every sample.
        np.testing.assert_array_equal(view.values, y.numpy().astype(np.float32))
        np.testing.assert_array_equal(view.labels, y.numpy())
        assert not s.captured
        shown = np.array(view.positions)  # the landmarks' picture the user sees first
        model.release.set()
        assert view.wait(120)
        assert view.sample_indices is None and view.positions.shape == (n, 2)
        # Independent check of both pictures: scikit-learn's PCA (of the landmarks' rows, and of all).
        feats = s.features("net.3").double().numpy()
        ref_marks = PCA(2).fit_transform(feats[marks.rows])
        full = PCA(2).fit_transform(feats)
        for j in range(2):
            assert abs(np.corrcoef(ref_marks[:, j], shown[:, j])[0, 1]) > 0.999
            assert abs(np.corrcoef(full[:, j], view.positions[:, j])[0, 1]) > 0.999
            # Not mirrored against the landmarks' picture the user saw first.
            assert np.dot(view.positions[marks.rows, j], shown[:, j]) > 0
    finally:
        model.release.set()
        view.close()


def test_a_view_built_during_a_capture_never_waits_for_it():
    """A capture already running (holding the model) must not block a view's coloring, which needs the shapes only."""
    import geowidgets as gw

    model = Counting(hold_after=Session.SHAPE_ROWS)
    x, y = _data(2000)  # fewer than PREVIEW_ROWS: no landmarks, the layout waits for the capture
    s = Session(model, x, y, layers=["net.1", "net.3"], k_max=10)
    threading.Thread(target=s.activations, daemon=True).start()
    for _ in range(400):  # until the capture holds the model
        if model.total > Session.SHAPE_ROWS:
            break
        threading.Event().wait(0.05)
    done = threading.Event()
    views = []

    def build() -> None:
        views.append(gw.EmbeddingView(s, method="pca"))
        done.set()

    # Built on the main thread in a notebook; here a thread, so a regression fails instead of hanging.
    threading.Thread(target=build, daemon=True).start()
    try:
        assert done.wait(60), "EmbeddingView(session) waited for the held capture"
        assert not s.captured
    finally:
        model.release.set()
        for view in views:
            view.wait(120)
            view.close()


def test_landmarks_follow_the_models_speed():
    """A slow model's first picture uses fewer landmarks (MIN_PREVIEW_ROWS here), never more than PREVIEW_ROWS."""

    class Slow(Counting):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            threading.Event().wait(0.004 * len(x))  # 4 ms per sample: 0.5 s buys 125 samples
            return super().forward(x)

    x, y = _data(5000)
    fast = Session(Counting(), x, y, layers=["net.1"], k_max=10)
    assert Session.MIN_PREVIEW_ROWS <= fast.preview_rows <= Session.PREVIEW_ROWS
    slow = Session(Slow(), x, y, layers=["net.1"], k_max=10)
    assert slow.preview_rows == Session.MIN_PREVIEW_ROWS
    assert slow.landmark_picture("net.1").rows.shape == (Session.MIN_PREVIEW_ROWS,)
    assert not slow.captured
