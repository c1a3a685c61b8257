"""Session: cached results equal direct computations (brute force / scipy references)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_deviation_matches_brute_force(session):
    from sklearn.neighbors import NearestNeighbors

    layer, k = session.layers[1], 7
    X = session.features(layer).double().numpy()
    ref = session.reference_mask
    R = X[ref]
    res = session.deviation(layer, k)
    # Reference samples: leave-one-out mean distance to k other reference samples.
    d_ref, _ = NearestNeighbors(n_neighbors=k + 1).fit(R).kneighbors(R)
    baseline = d_ref[:, 1:].mean(1)
    np.testing.assert_allclose(res.distance[ref], baseline, rtol=1e-4)
    # Other samples: mean distance to their k nearest reference samples.
    d_q, _ = NearestNeighbors(n_neighbors=k).fit(R).kneighbors(X[~ref])
    np.testing.assert_allclose(res.distance[~ref], d_q.mean(1), rtol=1e-4)
    z = (res.distance - baseline.mean()) / baseline.std(ddof=1)
    np.testing.assert_allclose(res.z, z, rtol=1e-3, atol=1e-4)


def test_k_move_reuses_tables(session):
    layer = session.layers[0]
    session.deviation(layer, 5)
    tables = session.deviation_tables(layer)
    assert session.has_tables(layer)
    session.deviation(layer, 12)
    assert session.deviation_tables(layer) is tables  # computed once at k_max


def test_temperature_scores_match_scipy(session):
    from scipy.special import softmax

    z = session.logits.double().numpy()
    for t in (0.2, 1.0, 5.0):
        spec = session.color_values("confidence", temperature=t)
        np.testing.assert_allclose(spec.values, softmax(z / t, axis=1).max(1), rtol=1e-5)


def test_color_values_categorical_and_errors(session, demo):
    spec = session.color_values("correct")
    assert spec.kind == "categorical" and spec.categories == ["wrong", "correct"]
    expected = (demo.model(demo.inputs).argmax(1) == demo.labels).numpy()
    np.testing.assert_array_equal(spec.values.astype(bool), expected)
    with pytest.raises(ValueError, match="color_by must be one of"):
        session.color_values("nope")
    with pytest.raises(KeyError, match="unknown layer"):
        session.color_values("deviation", layer="nope", k=3)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 20\]"):
        session.deviation(session.layers[0], 21)
    with pytest.raises(ValueError, match="temperature must be"):
        session.scores(0.0)


def test_layout_is_aligned_to_reference(session):
    a = session.layout(session.layers[0], "pca")
    rot = np.array([[0.0, -1.0], [1.0, 0.0]], dtype=np.float32)
    target = a @ rot * 3.0 + 1.0
    aligned = session.layout(session.layers[0], "pca", reference=target)
    np.testing.assert_allclose(aligned, target, atol=1e-3)


def test_revision_counts_answers(session):
    before = session.revision
    session.scores(1.0)
    session.scores(2.0)
    assert session.revision == before + 2


def test_decision_slice_cached_and_validated(session):
    anchors = session.default_anchors()
    assert len(set(session.labels[list(anchors)])) == 3
    s1 = session.decision_slice("input", anchors, resolution=16)
    assert session.decision_slice("input", anchors, resolution=16) is s1
    with pytest.raises(ValueError, match="3 distinct sample indices"):
        session.decision_slice("input", (0, 0, 1), resolution=16)
    hidden = session.decision_slice(session.layers[1], anchors, resolution=16)
    assert tuple(hidden.classes.shape) == (16, 16)


def test_bad_arguments():
    from geowidgets.session import Session

    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    with pytest.raises(ValueError, match="k_max must be a positive integer"):
        Session(model, torch.zeros(10, 2), k_max=0)
    with pytest.raises(ValueError, match="at least 3 samples"):
        Session(model, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="bool mask"):
        Session(model, torch.zeros(10, 2), reference=np.ones(9, dtype=bool))


def test_input_space_slice_of_an_image_model_uses_the_anchor_as_carrier():
    """Input-space planes of image data live in the flattened input; the carrier gives them their shape."""
    import torch

    from geowidgets.datasets import digits_demo
    from geowidgets.session import INPUT_LAYER, Session

    demo = digits_demo()
    session = Session(demo.model, demo.inputs[:200], demo.labels[:200], layers=["fc1"], k_max=10)
    sl = session.decision_slice(INPUT_LAYER, (0, 1, 2), 33)
    assert sl.classes.shape == (33, 33)
    with torch.inference_mode():
        expected = demo.model(demo.inputs[:3]).argmax(1).tolist()
    # Each anchor's own pixel carries the class the model gives that anchor.
    alpha, beta = torch.as_tensor(sl.coords(demo.inputs[:3].reshape(3, -1))).T
    a0, a1, b0, b1 = sl.extent
    cols = torch.round((alpha - a0) / (a1 - a0) * 32).long()
    rows = torch.round((beta - b0) / (b1 - b0) * 32).long()
    got = [int(sl.classes[r, c]) for r, c in zip(rows, cols)]
    assert got == expected


def test_profile_reuses_the_sessions_knn_graphs(session, monkeypatch):
    import geowidgets.geometry._profile as profile_module

    monkeypatch.setattr(
        profile_module, "knn_graph", lambda *a, **kw: pytest.fail("the profile built its own kNN graph")
    )
    table = session.profile(("twonn", "knn_agreement"), k=5)
    assert set(table["layer"]) == set(session.layers)
    assert all(session.has_graph(layer) for layer in session.layers)


def test_deviation_profile_matches_brute_force_and_auroc_of_mistakes(session):
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    k, ref = 6, session.reference_mask
    prof = session.deviation_profile(k, threshold=1.5)
    assert prof.z.shape == (len(session.layers), session.n) and prof.threshold == 1.5
    wrong = ~session.correct
    for i, layer in enumerate(session.layers):
        X = session.features(layer).double().numpy()
        d_ref, _ = NearestNeighbors(n_neighbors=k + 1).fit(X[ref]).kneighbors(X[ref])
        d_q, _ = NearestNeighbors(n_neighbors=k).fit(X[ref]).kneighbors(X[~ref])
        distance = np.empty(session.n)
        distance[ref], distance[~ref] = d_ref[:, 1:].mean(1), d_q.mean(1)
        baseline = d_ref[:, 1:].mean(1)
        z = (distance - baseline.mean()) / baseline.std(ddof=1)
        np.testing.assert_allclose(prof.z[i], z, rtol=1e-3, atol=1e-4)
        if wrong.any():
            truth = np.r_[np.ones(wrong.sum()), np.zeros(baseline.size)]
            expected = roc_auc_score(truth, np.r_[distance[wrong], baseline])
            assert prof.auroc[i] == pytest.approx(expected, abs=1e-3)
    above = prof.z > 1.5
    np.testing.assert_array_equal(prof.divergence_layer, np.where(above.any(0), above.argmax(0), -1))
    assert session.auroc(k) == pytest.approx(list(prof.auroc), nan_ok=True)


def test_default_anchors_of_an_untrained_model_with_one_predicted_class():
    """Fewer than three classes with a correct sample (issue: IndexError in default_anchors)."""
    from geowidgets.session import Session

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        model[2].bias.copy_(torch.tensor([0.0, 0.0, 50.0]))  # always predicts class 2
    X = torch.randn(90, 4)
    y = np.repeat([0, 1, 2], 30)
    session = Session(model, X, y, k_max=10)
    anchors = session.default_anchors()
    assert len(set(anchors)) == 3 and all(0 <= a < 90 for a in anchors)
    assert y[anchors[0]] == 2 and session.correct[anchors[0]]  # the one class with correct samples first
    only_two = Session(model, X, np.full(90, 2), k_max=10)
    assert len(set(only_two.default_anchors())) == 3


def test_deprecated_colour_names_warn_and_still_work(session):
    import geowidgets.session as gs

    with pytest.warns(DeprecationWarning, match="color_values"):
        spec = session.colour_values("confidence", temperature=2.0)
    np.testing.assert_array_equal(spec.values, session.color_values("confidence", temperature=2.0).values)
    with pytest.warns(DeprecationWarning, match="add_coloring"):
        session.add_colouring("zeros", lambda s, layer, k, t: np.zeros(s.n))
    with pytest.warns(DeprecationWarning, match="colorings"):
        assert "zeros" in session.colourings
    with pytest.warns(DeprecationWarning, match="ColorSpec"):
        assert gs.ColourSpec is gs.ColorSpec
    with pytest.warns(DeprecationWarning, match="COLOR_BY"):
        assert gs.COLOUR_BY is gs.COLOR_BY
    z = session.logits_numpy
    with pytest.warns(DeprecationWarning, match="temperature_scores"):
        conf = gs.temperature_colours(z, 0.5, "confidence")
    from scipy.special import softmax

    np.testing.assert_allclose(conf, softmax(z.astype(np.float64) / 0.5, axis=1).max(1), rtol=1e-5)


def test_a_constant_layer_leaves_the_other_layers_profile_intact():
    """Zeroed last layer: its undefined metrics are NaN with their reason; the hidden layer keeps its values."""
    import warnings

    from torch import nn

    from geowidgets import geometry as geo
    from geowidgets.session import Session

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.zero_()
    x, y = torch.randn(400, 4), torch.randint(0, 3, (400,))
    s = Session(model, x, y, layers=["1", "2"], k_max=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = s.profile(("rankme", "vne"), k=10)
    hidden = table[table.layer == "1"].set_index("metric")["value"]
    assert hidden["rankme"] == pytest.approx(geo.rankme(s.features("1")))
    assert hidden["vne"] == pytest.approx(geo.von_neumann_entropy(s.features("1")))
    vne = table[(table.layer == "2") & (table.metric == "vne")].iloc[0]
    assert np.isnan(vne["value"]) and "zero variance" in vne["params"]["error"]


def test_slice_says_why_three_anchors_span_no_plane():
    from torch import nn

    import geowidgets as gw

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    X = torch.randn(30, 3)
    X[1] = X[0]  # a duplicate sample
    X[2], X[3], X[4] = torch.zeros(3), torch.tensor([1.0, 0, 0]), torch.tensor([2.0, 0, 0])  # on one line
    s = gw.Session(model, X, torch.arange(30) % 3, k_max=5)
    with pytest.raises(ValueError, match=r"samples 0 and 1 have the same values in the inputs"):
        s.decision_slice("input", (0, 1, 5))
    with pytest.raises(ValueError, match=r"anchors \(2, 3, 4\) lie on one line in the inputs"):
        s.decision_slice("input", (2, 3, 4))
    with torch.no_grad():
        model[0].weight.zero_()
    constant = gw.Session(model, X, torch.arange(30) % 3, k_max=5)
    with pytest.raises(ValueError, match=r"every sample has the same values in layer '1' \(a constant layer"):
        constant.decision_slice("1", constant.default_anchors())
