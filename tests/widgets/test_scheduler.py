"""One prioritised queue per Explorer: the current layer's work first, reordered when the layer changes."""

from __future__ import annotations

import threading

import pytest

from geowidgets.widgets._base import Scheduler, ViewBase


class _Probe(ViewBase):
    """A minimal view recording what was applied."""

    _esm = "export default { render() {} }"

    def __init__(self, **kwargs):
        self.applied = []
        super().__init__(**kwargs)


def _position(history, entry):
    assert entry in history, f"{entry} never ran; history: {history}"
    return history.index(entry)


def test_scheduler_runs_by_rank_and_records_completion_order():
    ran = []
    sched = Scheduler(policy=lambda item: (abs(int(item.layer) - 2),))
    with sched.hold():
        for layer in "01234":
            sched.add_task(("graph", layer), lambda layer=layer: ran.append(layer), layer=layer, stage="graph")
    assert sched.wait(30)
    assert ran[0] == "2" and set(ran[1:3]) == {"1", "3"} and set(ran[3:]) == {"0", "4"}
    assert sched.history == [("graph", layer) for layer in ran]
    # A task is queued once per key: asking again does not run it again.
    again = sched.add_task(("graph", "2"), lambda: ran.append("again"), layer="2", stage="graph")
    assert again.done and sched.wait(30) and "again" not in ran


def test_lanes_on_a_scheduler_keep_newest_wins_and_never_apply_stale_results():
    sched = Scheduler()
    with sched.attach():
        view = _Probe()
    assert view._scheduler is sched
    release, started = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return "stale"

    view.lane("x").submit(slow, view.applied.append)
    assert started.wait(10)
    view.lane("x").submit(lambda: "waiting", view.applied.append)  # replaced before it runs
    view.lane("x").submit(lambda: "newest", view.applied.append)
    release.set()
    assert view.wait(10) and sched.wait(10)
    assert view.applied == ["newest"]
    assert view.status == "idle"
    # Two views share the one worker: the queue runs one request at a time.
    with sched.attach():
        other = _Probe()
    active, overlap = [0], []

    def work(tag):
        active[0] += 1
        overlap.append(active[0])
        release.wait(0.05)
        active[0] -= 1
        return tag

    with sched.hold():
        view.lane("a").submit(lambda: work("a"), view.applied.append)
        other.lane("b").submit(lambda: work("b"), other.applied.append)
    assert view.wait(10) and other.wait(10)
    assert max(overlap) == 1 and other.applied == ["b"]


def test_errors_in_a_task_are_kept_and_the_queue_goes_on():
    sched = Scheduler()
    bad = sched.add_task("bad", lambda: 1 / 0, stage="graph")
    good = sched.add_task("good", lambda: None, stage="graph")
    assert sched.wait(10)
    assert bad.error.startswith("ZeroDivisionError") and good.done and good.error is None


def test_closed_scheduler_drops_its_queue_and_lanes_turn_idle():
    sched = Scheduler()
    with sched.attach():
        view = _Probe()
    with sched.hold():
        view.lane("x").submit(lambda: "never", view.applied.append)
        assert sched.close(10)
    assert view.wait(10) and view.applied == [] and not view.lane("x").busy
    view.lane("x").submit(lambda: "after close", view.applied.append)
    assert view.wait(10) and view.applied == []


@pytest.fixture()
def explorer_session(demo):
    from geowidgets.session import Session

    return Session(demo.model, demo.inputs, demo.labels, layers=["fc1", "fc2", "fc3"], k_max=15)


def test_explorer_serves_the_current_layer_first(explorer_session):
    from geowidgets import Explorer

    ex = Explorer.from_session(explorer_session, method="umap", k=5)
    try:
        assert ex.wait(600)
        history = ex.scheduler.history
        current = ex.layer
        assert current == "fc3"
        others = [name for name in explorer_session.layers if name != current]
        first_other = min(_position(history, (stage, name)) for name in others for stage in ("graph", "tables"))
        # The current layer's picture, its UMAP, its graph and its deviation tables arrive before any
        # other layer's neighbour search completes.
        # (At this size the first picture is computed inline, before the queue starts.)
        if ("EmbeddingView.layout", current) in history:
            assert _position(history, ("EmbeddingView.layout", current)) < first_other
        else:
            assert ex.embedding.n_points == explorer_session.n
        for entry in [
            ("graph", current),
            ("EmbeddingView.refine", current),
            ("tables", current),
        ]:
            assert _position(history, entry) < first_other, history
        # The views over every layer come after every layer's graph and tables.
        last_layer_work = max(_position(history, (stage, name)) for name in others for stage in ("graph", "tables"))
        assert _position(history, ("DeviationMap.matrix", current)) > last_layer_work
        # Nearest layers first.
        assert _position(history, ("tables", "fc2")) < _position(history, ("graph", "fc1"))
        assert ex.progress() == {"graph": (3, 3), "tables": (3, 3)}
        assert ex.deviation_map.status == "idle" and ex.embedding.title.endswith("UMAP")
    finally:
        ex.close()


class _Paused(Scheduler):
    """A scheduler that starts paused, so a test can move the layer before anything runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pause()


def test_a_layer_change_reprioritises_the_queue(explorer_session, monkeypatch):
    from geowidgets import Explorer
    from geowidgets.widgets import _explorer

    monkeypatch.setattr(_explorer, "Scheduler", _Paused)
    ex = Explorer.from_session(explorer_session, method="pca", k=5)
    try:
        assert ex.scheduler.history == [] and ex.scheduler.busy
        ex.layer = "fc1"
        ex.scheduler.resume()
        assert ex.wait(600)
        history = ex.scheduler.history
        # After the change the new layer's work comes first, then the nearer layer, then the farther.
        assert _position(history, ("graph", "fc1")) < _position(history, ("graph", "fc2"))
        assert _position(history, ("tables", "fc1")) < _position(history, ("graph", "fc2"))
        assert _position(history, ("tables", "fc2")) < _position(history, ("graph", "fc3"))
        if ("EmbeddingView.layout", "fc1") in history:  # else it ran inline, at once
            assert _position(history, ("EmbeddingView.layout", "fc1")) < _position(history, ("graph", "fc2"))
        assert ex.embedding.title.startswith("fc1")
        # Moving k afterwards is answered from the cached tables, inline: nothing new is queued.
        ran = len(history)
        ex.k = 9
        assert not ex.scheduler.busy and len(ex.scheduler.history) == ran
        assert ex.deviation_map.k == 9 and ex.deviation_map.status == "idle"
    finally:
        ex.close()
