"""Progress of work whose amount is known: the capture's sample counts, the views' determinate bar."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from geowidgets.probe import Probe
from geowidgets.widgets._base import PROGRESS_UNKNOWN, Scheduler, StatusBar, ViewBase, progress_fraction

N = 103


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _x() -> torch.Tensor:
    return torch.randn(N, 3, generator=torch.Generator().manual_seed(0))


class _Keyword(torch.nn.Module):
    """A model called with keyword arguments (mapping inputs)."""

    def __init__(self):
        super().__init__()
        self.inner = _model()

    def forward(self, input):
        return self.inner(input)


@pytest.mark.parametrize(
    ("kind", "batches"),
    [("tensor", 11), ("dataset", 11), ("loader", 4), ("mapping", 11)],
)
def test_capture_reports_monotone_sample_counts_ending_at_n(kind, batches):
    x = _x()
    inputs = {
        "tensor": x,
        "dataset": TensorDataset(x, torch.arange(N) % 2),
        "loader": DataLoader(TensorDataset(x), batch_size=30),
        "mapping": {"input": x},
    }[kind]
    model = _Keyword() if kind == "mapping" else _model()
    calls: list[tuple[int, int | None]] = []
    layer = "inner.1" if kind == "mapping" else "1"
    acts = Probe(model, layers=[layer], device="cpu").capture(
        inputs, batch_size=10, progress=lambda done, total: calls.append((done, total))
    )
    assert acts[layer].shape[0] == N
    assert calls[0] == (0, N)
    assert calls[-1] == (N, N)
    assert len(calls) == batches + 1  # once before the first batch, then once per batch
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done)
    assert {t for _, t in calls} == {N}


def test_capture_progress_counts_what_the_loader_yields():
    x = _x()
    calls: list[tuple[int, int | None]] = []
    dropped = DataLoader(TensorDataset(x), batch_size=25, drop_last=True)
    Probe(_model(), layers=["1"], device="cpu").capture(dropped, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 100), (25, 100), (50, 100), (75, 100), (100, 100)]

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(x)

    calls.clear()
    stream = DataLoader(Stream(), batch_size=50)
    Probe(_model(), layers=["1"], device="cpu").capture(stream, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, None), (50, None), (100, None), (N, None)]  # the total is unknown


def test_capture_progress_not_called_from_the_cache_and_no_tqdm(capsys):
    probe = Probe(_model(), layers=["1"], device="cpu")
    x = _x()
    calls: list = []
    probe.capture(x, batch_size=10, progress=lambda d, t: calls.append(d))
    assert calls[-1] == N
    calls.clear()
    probe.capture(x, batch_size=10, progress=lambda d, t: calls.append(d))
    assert calls == []
    assert "capture" not in capsys.readouterr().err  # a callable replaces the tqdm bar


def test_progress_fraction():
    assert progress_fraction(1, 4) == 0.25
    assert progress_fraction(7, 4) == 1.0
    assert progress_fraction(0, 0) == PROGRESS_UNKNOWN
    assert progress_fraction(3, None) == PROGRESS_UNKNOWN


class _Probe(ViewBase):
    _esm = "export default { render() {} }"


def test_progress_shows_only_while_busy_and_resets():
    view = _Probe()
    assert view.progress == PROGRESS_UNKNOWN
    view.show_progress(1, 2, "half")  # idle: a late report is ignored
    assert view.progress == PROGRESS_UNKNOWN and view.message == ""
    release = threading.Event()
    started = threading.Event()

    def work():
        started.set()
        view.report_progress(3, 4, "three of four")  # from the worker thread
        release.wait(10)
        return 1

    view.lane("x").submit(work, lambda _: None, message="working on four")
    assert started.wait(10)
    deadline = time.monotonic() + 10
    while view.progress != 0.75 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert view.progress == 0.75 and view.message == "three of four" and view.status == "busy"
    release.set()
    assert view.wait(10)
    assert view.status == "idle" and view.progress == PROGRESS_UNKNOWN
    assert "progress" in ViewBase.class_traits(sync=True)
    assert "progress" not in _Probe.keyword_traits()


class _Paused(Scheduler):
    """A scheduler that starts paused, so a test can watch the views before anything runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pause()


def test_explorer_views_count_layers_with_a_determinate_bar(demo, monkeypatch):
    from geowidgets import Explorer
    from geowidgets.session import Session
    from geowidgets.widgets import _explorer

    monkeypatch.setattr(_explorer, "Scheduler", _Paused)
    session = Session(demo.model, demo.inputs, demo.labels, layers=["fc1", "fc2", "fc3"], k_max=15)
    seen: dict[str, list[tuple[float, str, str]]] = {"map": [], "profile": [], "bar": []}
    ex = Explorer.from_session(session, method="pca", k=5)
    try:
        assert ex.deviation_map.status == "busy" and ex.profile.status == "busy"
        ex.deviation_map.observe(
            lambda c: seen["map"].append((c["new"], ex.deviation_map.message, ex.deviation_map.status)),
            names=["progress"],
        )
        ex.profile.observe(lambda c: seen["profile"].append((c["new"], ex.profile.message, "")), names=["progress"])
        ex.profile.status_bar.observe(
            lambda c: seen["bar"].append((c["new"], ex.profile.status_bar.message, "")), names=["progress"]
        )
        ex.scheduler.resume()
        assert ex.wait(600), ex.message
    finally:
        ex.close()
    known = [(p, m) for p, m, _ in seen["map"] if p >= 0]
    # Every layer's deviation tables, counted k/L, as text and bar; then unknown (idle) at the end.
    counts = [round(p * 3) for p, _ in known]
    assert counts == sorted(counts) and {1, 2, 3} <= set(counts), seen["map"]
    assert all(abs(p * 3 - round(p * 3)) < 1e-9 for p, _ in known)
    for p, message in known:
        assert f"layers done {round(p * 3)}/3" in message
    assert seen["map"][-1][0] == PROGRESS_UNKNOWN
    assert ex.deviation_map.progress == PROGRESS_UNKNOWN
    assert ex.deviation_map.status == "idle"
    graphs = [round(p * 3) for p, _, _ in seen["profile"] if p >= 0]
    assert graphs == sorted(graphs) and {1, 2, 3} <= set(graphs), seen["profile"]
    # The profile's StatusBar (the status line the browser shows) mirrors every value.
    assert [p for p, _, _ in seen["bar"]] == [p for p, _, _ in seen["profile"]]
    assert ex.profile.status_bar.progress == PROGRESS_UNKNOWN


class _Held(torch.nn.Module):
    """A model whose forward waits after ``hold_after`` batches of ``batch`` samples until ``release`` is set."""

    def __init__(self, batch: int, hold_after: int):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        self.batch, self.hold_after = batch, hold_after
        self.full_batches = 0
        self.release = threading.Event()

    def forward(self, x):
        if len(x) == self.batch:
            self.full_batches += 1
            if self.full_batches > self.hold_after:
                self.release.wait(30)
        return self.net(x)


def test_embedding_view_counts_the_capture_it_waits_for():
    from geowidgets.session import Session
    from geowidgets.widgets import EmbeddingView

    n, batch = 2000, 200
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 2, generator=g), torch.randint(0, 3, (n,), generator=g)
    model = _Held(batch, hold_after=3)
    session = Session(model, x, y, layers=["net.1"], k_max=10, batch_size=batch)
    # Every sample at once, no landmarks first: their number follows the model's timing, and on a
    # loaded machine a landmark capture of full batches would meet the hold instead.
    session.MIN_PREVIEW_ROWS = n
    assert session.task == "classification"  # learnt from a few samples, before the capture holds the model
    reports: list[tuple[int, int | None]] = []
    session.capture_listeners.append(lambda d, t: reports.append((d, t)))
    view = EmbeddingView(session, method="pca")
    try:
        deadline = time.monotonic() + 60
        while view.progress != 0.3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert view.status == "busy"
        assert view.progress == 0.3, (view.progress, view.message)
        assert view.message == "captured 600 / 2,000 samples…"
        assert session.capture_progress == (600, n)
    finally:
        model.release.set()
    assert view.wait(60), view.message
    assert view.status == "idle" and view.progress == PROGRESS_UNKNOWN
    assert reports[0] == (0, n) and reports[-1] == (n, n)
    assert [d for d, _ in reports] == list(range(0, n + 1, batch))
    assert session.capture_progress is None and session.captured
    # the view's listener is gone once its layout is done
    assert len(session.capture_listeners) == 1


def test_status_bar_declares_progress():
    assert StatusBar.class_traits(sync=True)["progress"].default_value == PROGRESS_UNKNOWN
