"""A closed Explorer frees its data: no thread, observer or widget registry keeps its session alive."""

from __future__ import annotations

import gc
import weakref

_FREED = """
import gc, threading, weakref
from geowidgets import Explorer
from geowidgets.datasets import toy_demo

demo = toy_demo("blobs", n=300, epochs=10, seed=0)
ex = Explorer(demo.model, demo.inputs, demo.labels, layers=["fc1", "fc2"], k_max=10, method="pca")
assert ex.wait(600)
session_ref = weakref.ref(ex.session)
features_ref = weakref.ref(ex.session.features("fc1"))
view_ref = weakref.ref(ex.embedding)
ex.close()
left = [t.name for t in threading.enumerate() if t.name.startswith("geowidgets") and t.is_alive()]
assert not left, left
del ex
gc.collect()
assert session_ref() is None, "session kept alive"
assert features_ref() is None, "features kept alive"
assert view_ref() is None, "view kept alive"
print("freed")
"""


def test_closed_and_deleted_explorer_frees_its_session():
    """In a fresh interpreter (no other test's widgets, caches or threads around): nothing keeps it alive."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _FREED], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0 and "freed" in run.stdout, run.stderr[-3000:]


def test_close_frees_the_data_even_while_the_explorer_is_still_referenced(demo):
    from geowidgets import Explorer

    ex = Explorer(demo.model, demo.inputs, demo.labels, layers=["fc1", "fc2"], k_max=10, method="pca")
    features_ref = weakref.ref(ex.session.features("fc2"))
    ex.close()  # possibly while work is still queued or running
    gc.collect()
    assert features_ref() is None
    assert not ex.scheduler.busy and ex.scheduler.closed
    ex.close()  # closing twice is harmless


def test_closing_an_explorer_leaves_a_given_session_usable(demo):
    from geowidgets import Explorer, Session

    session = Session(demo.model, demo.inputs, demo.labels, layers=["fc1", "fc2"], k_max=10)
    ex = Explorer.from_session(session, method="pca")
    assert ex.wait(600)
    ex_ref = weakref.ref(ex)
    ex.close()
    del ex
    gc.collect()
    assert ex_ref() is None
    assert session.has_graph("fc2")  # the session's caches are the caller's
