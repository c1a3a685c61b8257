"""SliceView: slice image traits, in-place temperature rescale, click picks a new anchor."""

from __future__ import annotations

import numpy as np
import pytest
import traitlets

from geowidgets.widgets import SliceView


def test_slice_traits_match_the_decision_slice(session):
    view = SliceView(session, layer="input", resolution=24)
    assert view.wait(30), view.message
    assert view.status == "idle", view.message
    sl = session.decision_slice("input", tuple(view.anchors), 24)
    classes = np.frombuffer(view.classes, np.uint8).reshape(24, 24)
    np.testing.assert_array_equal(classes, np.asarray(sl.classes))
    conf = np.frombuffer(view.confidence, np.uint8).reshape(24, 24) / 255
    np.testing.assert_allclose(conf, np.asarray(sl.confidence), atol=1 / 255)
    assert view.extent == pytest.approx(list(sl.extent))
    anchors_xy = np.frombuffer(view.anchor_xy, "<f4").reshape(3, 2)
    np.testing.assert_allclose(anchors_xy, np.asarray(sl.coords(session.slice_space("input")))[view.anchors], atol=1e-5)
    assert view.n_classes == session.logits.shape[1]


def test_temperature_rescales_in_place(session):
    view = SliceView(session, layer=session.layers[1], resolution=16)
    assert view.wait(30), view.message
    classes, points, rev = view.classes, view.points, view.revision
    view.temperature = 0.2
    assert view.revision == rev + 1  # inline: no forward pass, no thread
    assert view.classes is classes and view.points is points
    sl = session.decision_slice(session.layers[1], tuple(view.anchors), 16).with_temperature(0.2)
    conf = np.frombuffer(view.confidence, np.uint8).reshape(16, 16) / 255
    np.testing.assert_allclose(conf, np.asarray(sl.confidence), atol=1 / 255)


def test_click_replaces_anchors_in_turn_with_the_nearest_sample(session):
    view = SliceView(session, layer="input", resolution=16)
    assert view.wait(30)
    coords = np.asarray(session.decision_slice("input", tuple(view.anchors), 16).coords(session.slice_space("input")))
    old = list(view.anchors)
    target = next(i for i in range(session.n) if i not in old)
    view.clicked = [float(coords[target, 0]) + 1e-4, float(coords[target, 1])]
    expected = int(np.argmin(((coords - np.array(view.clicked)) ** 2).sum(1)))
    assert view.anchors == [expected, old[1], old[2]]
    assert view.wait(30)
    assert view.title.endswith(f"A = #{expected}, B = #{old[1]}, C = #{old[2]}")


def test_bad_values(session):
    view = SliceView(session, layer="input", resolution=16)
    with pytest.raises(KeyError, match="unknown layer"):
        view.layer = "nope"
    with pytest.raises(ValueError, match="3 distinct"):
        view.anchors = [1, 1, 2]
    with pytest.raises(ValueError, match="resolution"):
        view.resolution = 4
    with pytest.raises(ValueError, match="Session"):
        SliceView(object())


def test_drawn_points_carry_their_own_prediction_and_distance(session):
    layer = "fc1"  # hidden width > 2: samples lie off the plane
    view = SliceView(session, layer=layer, resolution=16)
    assert view.wait(30)
    sl = session.decision_slice(layer, tuple(view.anchors), 16)
    space = np.asarray(session.slice_space(layer), dtype=np.float64)
    plane = sl.plane
    origin, basis = np.asarray(plane.origin, dtype=np.float64), np.asarray(plane.basis, dtype=np.float64)
    resid = space - origin - ((space - origin) @ basis.T) @ basis  # float64 reference distances
    dist = np.linalg.norm(resid, axis=1)
    idx = np.asarray(view.point_index)
    np.testing.assert_array_equal(np.asarray(view.point_predictions), np.asarray(session.predictions)[idx])
    np.testing.assert_allclose(np.asarray(view.point_distance), dist[idx], rtol=1e-4, atol=1e-6)
    assert view.distance_scale == pytest.approx(float(np.median(dist[idx])), rel=1e-4)
    assert view.distance_scale > 0
    with pytest.raises(traitlets.TraitError):
        view.title = "something else"


def test_a_plane_that_holds_every_sample_draws_them_on_it(session):
    view = SliceView(session, layer="input", resolution=16)  # the moons' input is 2-D: the plane is the space
    assert view.wait(30)
    assert view.distance_scale == 0.0
    assert not np.asarray(view.point_distance).any()
    assert (np.asarray(view.point_alpha) == 255).all()
