"""LayerProfile: values equal geo.layer_profile, updates in place, tap picks a layer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geowidgets.widgets import LayerProfile


def test_values_match_layer_profile_and_update_in_place(session):
    from geowidgets import geometry as geo

    view = LayerProfile(session, metrics=("rankme", "fisher"), k=5)
    assert view.wait(300), view.message
    assert view.status == "idle", view.message
    acts = session.activations()
    table = geo.layer_profile({n: acts[n] for n in session.layers}, session.labels, metrics=("rankme", "fisher"), k=10)
    for metric in ("rankme", "fisher"):
        rows = table[table["metric"] == metric].set_index("layer")["value"]
        np.testing.assert_allclose(view.values[metric], [rows[n] for n in session.layers], rtol=1e-6)
        assert view.figure.sources[metric].data["value"] == pytest.approx(view.values[metric])
    np.testing.assert_allclose(view.values["deviation_auroc"], session.auroc(5))
    source = view.figure.sources["deviation_auroc"]
    bundle = view.bokeh.render_bundle
    view.k = 9  # in place: the same data source gets new data, the document is not re-sent
    assert view.figure.sources["deviation_auroc"] is source
    assert source.data["value"] == pytest.approx(session.auroc(9))
    assert view.bokeh.render_bundle is not bundle  # kernel copy refreshed for a reloaded page


def test_marker_and_tap(session):
    view = LayerProfile(session, metrics=("rankme",), layer=session.layers[0])
    assert view.wait(300)
    assert all(span.location == 0 for span in view.figure.markers)
    view.layer = session.layers[2]
    assert all(span.location == 2 for span in view.figure.markers)
    view.figure.sources["rankme"].selected.indices = [1]
    assert view.layer == session.layers[1]
    with pytest.raises(KeyError, match="unknown layer"):
        view.layer = "nope"
    assert view.status_bar.view == "profile" and "gw-profile" in view._dom_classes


def test_profile_figure_validation():
    from geowidgets.plotting import profile_figure

    fig = profile_figure({"rankme": [1.0, math.nan]}, ["a", "b"])
    assert math.isnan(fig.sources["rankme"].data["value"][1])
    with pytest.raises(ValueError, match="2 layers"):
        profile_figure({"rankme": [1.0]}, ["a", "b"])
    with pytest.raises(KeyError, match="no chart"):
        fig.set_values("nope", [1.0, 2.0])
