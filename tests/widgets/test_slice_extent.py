"""A live slice's frame fits the data: the samples' projections fill most of each axis, anchors inside.

The plane coordinates are recomputed here in float64 with numpy (Gram-Schmidt through A, B, C:
alpha along B - A, beta across it towards C, the convention ``SliceView.extent`` documents), not
read from the slice.
"""

from __future__ import annotations

import numpy as np
import pytest

from geowidgets.session import Session
from geowidgets.widgets import SliceView


def _plane_coords(points: np.ndarray, anchors: list[int]) -> np.ndarray:
    """float64 ``[N, 2]`` coordinates of ``points`` on the plane through ``points[anchors]``."""
    a, b, c = (points[i].astype(np.float64) for i in anchors)
    e1 = (b - a) / np.linalg.norm(b - a)
    w = (c - a) - ((c - a) @ e1) * e1
    e2 = w / np.linalg.norm(w)
    centred = points.astype(np.float64) - a
    return np.stack([centred @ e1, centred @ e2], axis=1)


def _logit_layer(session: Session) -> str:
    """The session's layer whose output is the model's logits (compared with the logits themselves)."""
    logits = np.asarray(session.logits, dtype=np.float64)
    for name in session.layers:
        features = np.asarray(session.features(name), dtype=np.float64)
        if features.shape == logits.shape and np.allclose(features, logits, atol=1e-5):
            return name
    raise AssertionError(f"no layer of {session.layers} outputs the logits")


@pytest.mark.parametrize("kind", ["blobs", "spirals"])
def test_live_slice_on_the_logit_layer_fits_the_data(kind):
    from geowidgets.datasets import toy_demo

    demo = toy_demo(kind, n=300, epochs=10, seed=0)
    session = Session(demo.model, demo.inputs, demo.labels, layers=demo.layers, k_max=20)
    layer = _logit_layer(session)
    view = SliceView(session, layer=layer, resolution=24)
    assert view.wait(60), view.message
    assert view.status == "idle", view.message

    coords = _plane_coords(np.asarray(session.features(layer)), list(view.anchors))
    lo, hi = np.array(view.extent[0::2]), np.array(view.extent[1::2])
    frame = hi - lo
    tol = 1e-4 * frame
    # Every sample, anchors included, is inside the frame.
    assert np.all(coords >= lo - tol) and np.all(coords <= hi + tol)
    anchors_xy = coords[list(view.anchors)]
    assert np.all(anchors_xy >= lo - tol) and np.all(anchors_xy <= hi + tol)
    np.testing.assert_allclose(np.asarray(view.anchor_xy, dtype=np.float64), anchors_xy, atol=1e-4 * frame.max())
    # The samples span most of each axis (the old frame, padded by a quarter of the span each side, gave 2/3).
    share = np.ptp(coords, axis=0) / frame
    assert np.all(share > 0.6), share
    expected = 1 / (1 + 2 * Session.SLICE_MARGIN)
    np.testing.assert_allclose(share, expected, rtol=1e-3)


def test_slice_margin_reaches_geo_decision_slice(session):
    from geowidgets import geometry as geo

    layer = session.layers[-1]
    anchors = session.default_anchors()
    sl = session.decision_slice(layer, anchors, 16)
    space = session.slice_space(layer)
    plane = geo.Plane.through(*(space[a] for a in anchors))
    carrier = session.inputs[anchors[0]]
    default = geo.decision_slice(
        session.model, plane, layer=layer, resolution=16, data=space, plane_space="layer", carrier=carrier
    )
    coords = _plane_coords(np.asarray(space), list(anchors))
    span = np.ptp(coords, axis=0)
    # geo's own default pads by a quarter of the span; the session's frame is tighter, around the same box.
    lo, hi = coords.min(0), coords.max(0)
    pad = Session.SLICE_MARGIN * span
    np.testing.assert_allclose(sl.extent, [lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]], rtol=1e-4)
    default_frame = np.array(default.extent[1::2]) - np.array(default.extent[0::2])
    np.testing.assert_allclose(default_frame, 1.5 * span, rtol=1e-4)
