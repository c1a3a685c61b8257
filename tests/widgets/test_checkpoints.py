"""Explorer over checkpoints and along an interpolation: the step scrubber swaps every view's session."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from geowidgets import geometry as geo
from geowidgets.session import Session
from geowidgets.widgets import BarrierChart, Explorer, TrainingProfile
from geowidgets.widgets._embedding import normalise_positions


@pytest.fixture(scope="module")
def checkpoints(demo):
    """Three checkpoints of one architecture: the trained demo model and two perturbed copies of it."""
    g = torch.Generator().manual_seed(1)
    out = []
    for scale in (1.0, 0.4):
        m = copy.deepcopy(demo.model)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=g) * scale)
        out.append(m)
    out.append(demo.model)
    return out


def _session(demo, model):
    return Session(model, demo.inputs, demo.labels, layers=demo.layers, reference=demo.train_mask, k_max=20)


def _explorer(demo, models, **kwargs):
    ex = Explorer(
        models,
        demo.inputs,
        demo.labels,
        layers=demo.layers,
        reference=demo.train_mask,
        k_max=20,
        method="pca",
        k=5,
        **kwargs,
    )
    assert ex.wait(120), ex.message
    return ex


def test_step_scrubber_equals_a_fresh_session_at_that_step(demo, checkpoints):
    ex = _explorer(demo, checkpoints, steps=[0, 50, 100])
    try:
        assert ex.steps == [0, 50, 100] and ex.step == 0
        assert "gw-step-scrubber" in ex.step_slider._dom_classes
        layer = ex.layer
        before = ex.embedding._raw_layout.copy()
        predictions_0 = ex.embedding.predictions.copy()
        auroc_0 = list(ex.deviation_map.auroc)
        ex.step = 100
        assert ex.wait(120), ex.message
        assert ex.step_slider.value == 2
        fresh = _session(demo, checkpoints[2])
        # The synced results changed, and are the fresh session's at that step.
        np.testing.assert_array_equal(ex.embedding.predictions, fresh.predictions.astype(np.int32))
        assert (ex.embedding.predictions != predictions_0).any()
        np.testing.assert_allclose(ex.deviation_map.auroc, fresh.auroc(5), rtol=1e-6, equal_nan=True)
        assert not np.allclose(ex.deviation_map.auroc, auroc_0, equal_nan=True)
        for metric in ("rankme", "fisher"):
            expected = geo.layer_profile({n: fresh.features(n) for n in fresh.layers}, fresh.labels, metrics=(metric,))
            np.testing.assert_allclose(ex.profile.values[metric], expected["value"].to_numpy(), rtol=1e-5)
        # The layout is the new step's PCA aligned to the one that was on screen, as across layers.
        aligned = geo.align_layout(fresh.layout(layer, "pca"), before)
        np.testing.assert_allclose(ex.embedding.positions, normalise_positions(aligned), atol=1e-4)
        assert ex.slice is not None and ex.slice.session is ex.session
        # Moving back reuses the first step's session and its captures.
        first = ex.step_family.session(0)
        ex.step = 0
        assert ex.wait(120), ex.message
        assert ex.session is first and first.has_layout(layer, "pca")
        np.testing.assert_array_equal(ex.embedding.predictions, predictions_0)
        ex.step = 100
        assert ex.wait(120) and ex.session is ex.step_family.session(2)  # built once, reused
    finally:
        ex.close()


def test_training_profile_is_layer_profile_per_step(demo, checkpoints):
    ex = _explorer(demo, checkpoints[:2])
    try:
        tp = ex.training_profile
        assert isinstance(tp, TrainingProfile) and tp.wait(120), tp.message
        for i, model in enumerate(checkpoints[:2]):
            fresh = _session(demo, model)
            table = geo.layer_profile({n: fresh.features(n) for n in fresh.layers}, fresh.labels, metrics=tp.metrics)
            for metric in tp.metrics:
                rows = table[table["metric"] == metric]
                np.testing.assert_allclose(tp.values[metric][i], rows["value"].to_numpy(), rtol=1e-5)
        ex.layer = demo.layers[0]
        ex.step = 1
        assert ex.wait(120)
        assert tp.layer == demo.layers[0] and tp.step == 1
        assert tp._figure.outline.data == {"x": [0], "y": [1]}
        line = tp._figure.lines[tp.metrics[0]].data["value"]
        np.testing.assert_allclose(line, tp.values[tp.metrics[0]][:, 0])
    finally:
        ex.close()


def test_static_training_profile_from_tables(demo, checkpoints):
    tables = {}
    for step, model in zip((0, 10), checkpoints[:2]):
        s = _session(demo, model)
        tables[step] = geo.layer_profile({n: s.features(n) for n in s.layers}, s.labels, metrics=("rankme",))
    view = TrainingProfile(tables)
    assert view.steps == [0, 10] and view.metrics == ("rankme",)
    np.testing.assert_allclose(view.values["rankme"][1], tables[10]["value"].to_numpy())
    with pytest.raises(ValueError, match="static"):
        view.k = 3


def test_state_dicts_and_callable_give_the_same_steps(demo, checkpoints):
    states = [checkpoints[0], checkpoints[2].state_dict()]
    ex = _explorer(demo, states, steps=[0, 7])
    try:
        ex.step = 7
        assert ex.wait(120), ex.message
        np.testing.assert_array_equal(ex.embedding.predictions, _session(demo, checkpoints[2]).predictions)
    finally:
        ex.close()
    with pytest.raises(TypeError, match="needs steps"):
        Explorer(lambda step: checkpoints[step], demo.inputs, demo.labels)
    with pytest.raises(TypeError, match="architecture"):
        Explorer([checkpoints[0].state_dict()], demo.inputs, demo.labels)
    with pytest.raises(TypeError, match="several models"):
        Explorer(checkpoints[0], demo.inputs, demo.labels, steps=[0])


def test_unknown_step_and_single_model(demo, checkpoints, session):
    ex = _explorer(demo, lambda s: checkpoints[s], steps=[0, 2])
    try:
        with pytest.raises(Exception, match="unknown step"):
            ex.step = 1
    finally:
        ex.close()
    single = Explorer.from_session(session, method="pca")
    with pytest.raises(Exception, match="one model"):
        single.step = 0
    single.wait(120)


def test_alpha_slider_equals_interpolate(demo, checkpoints):
    a, b = checkpoints[0], checkpoints[2]
    ex = _explorer(demo, [a, b], interpolate=5)
    try:
        assert ex.steps == [0.0, 0.25, 0.5, 0.75, 1.0]
        expected = geo.loss_barrier(a, b, demo.inputs, demo.labels, steps=5)
        assert isinstance(ex.barrier_chart, BarrierChart)
        np.testing.assert_allclose(ex.barrier.loss, expected.loss, rtol=1e-6)
        assert ex.barrier.barrier == pytest.approx(expected.barrier, rel=1e-6)
        ex.step = 0.5
        assert ex.wait(120), ex.message
        mid = _session(demo, geo.interpolate(a, b, 0.5))
        np.testing.assert_array_equal(ex.embedding.predictions, mid.predictions)
        for layer in demo.layers:
            np.testing.assert_allclose(ex.session.features(layer), mid.features(layer), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ex.deviation_map.auroc, mid.auroc(5), rtol=1e-6, equal_nan=True)
        assert ex.barrier_chart.alpha == 0.5 and all(s.location == 0.5 for s in ex.barrier_chart.spans)
        # α = 1 is model_b's weights exactly.
        ex.step = 1.0
        assert ex.wait(120), ex.message
        np.testing.assert_array_equal(ex.embedding.predictions, _session(demo, b).predictions)
    finally:
        ex.close()
