"""Lane machinery: newest request wins, stale results are never applied, errors are shown."""

from __future__ import annotations

import threading
import time

import pytest

from geowidgets.widgets._base import ViewBase


class _Probe(ViewBase):
    """A minimal view recording what was applied."""

    _esm = "export default { render() {} }"

    def __init__(self, **kwargs):
        self.applied = []
        super().__init__(**kwargs)


def test_latest_request_wins_and_stale_results_are_dropped():
    view = _Probe()
    release = threading.Event()
    started = threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return "stale"

    view.lane("x").submit(slow, view.applied.append)
    assert started.wait(10)
    assert view.status == "busy"
    view.lane("x").submit(lambda: "waiting", view.applied.append)  # replaced before it runs
    view.lane("x").submit(lambda: "newest", view.applied.append)
    release.set()
    assert view.wait(10)
    assert view.applied == ["newest"]
    assert view.revision == 1
    assert view.status == "idle" and view.message == ""


def test_inline_request_sets_results_before_returning():
    view = _Probe()
    view.lane("x").submit(lambda: 42, view.applied.append, inline=True)
    assert view.applied == [42] and view.revision == 1


def test_errors_show_in_the_widget_and_clear_on_success():
    view = _Probe()

    def boom():
        raise ValueError("k must be <= 5")

    view.lane("x").submit(boom, view.applied.append)
    assert view.wait(10)
    assert view.status == "error"
    assert view.message == "ValueError: k must be <= 5"
    assert "ValueError" in view.last_traceback
    # another lane succeeding does not hide the error
    view.lane("y").submit(lambda: 1, view.applied.append, inline=True)
    assert view.status == "error"
    view.lane("x").submit(lambda: 2, view.applied.append, inline=True)
    assert view.status == "idle" and view.message == "" and view.applied == [1, 2]


def test_cancel_makes_running_work_stale():
    view = _Probe()
    release = threading.Event()
    view.lane("x").submit(lambda: release.wait(10) and "late", view.applied.append)
    view.lane("x").cancel()
    release.set()
    assert view.wait(10)
    assert view.applied == [] and view.revision == 0 and view.status == "idle"


def test_status_is_validated():
    view = _Probe()
    with pytest.raises(Exception, match="status must be"):
        view.status = "sleeping"


def test_results_arrive_when_a_stopped_loop_was_left_registered():
    """A loop registered as running but stopped (left behind by code that ran a notebook in this process)
    must not swallow results: they are applied at once instead of waiting for that loop."""
    import asyncio

    from geowidgets.widgets._base import ViewBase

    loop = asyncio.new_event_loop()
    asyncio.events._set_running_loop(loop)  # what a leaked run_sync / nested loop leaves behind
    try:
        view = ViewBase()
    finally:
        asyncio.events._set_running_loop(None)
    try:
        got: list[int] = []
        view.lane("x").submit(lambda: 7, got.append)
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:  # not view.wait(), which drains deliveries itself
            time.sleep(0.02)
        assert got == [7]
    finally:
        view.close()
        loop.close()
