"""MixupView and TiltingView: each control moves the chart, and the chart's numbers are checked independently.

* MixUp at the logit layer: the model after that layer is the identity, so the logits along the path are
  ``(1 − λ) z_a + λ z_b`` exactly; probabilities are their softmax at T; manifold intrusion is the k-nearest
  samples' majority label (scikit-learn ``NearestNeighbors``, ties to the smaller summed distance) being
  neither end's class.
* Tilting: scikit-learn's ``LogisticRegression`` (``C = 1 / (λ n)``) on the pair, angle to ``μ_b − μ_a``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors

from geowidgets import geometry as geo
from geowidgets.widgets import Explorer
from geowidgets.widgets._mixup_view import MixupView, intrusion_intervals
from geowidgets.widgets._tilting_view import TiltingView


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _runs(lam: np.ndarray, flags: np.ndarray) -> list[tuple[float, float]]:
    out, start = [], None
    for i, f in enumerate(flags):
        if f and start is None:
            start = i
        if start is not None and (not f or i == len(flags) - 1):
            end = i if f else i - 1
            out.append((float(lam[start]), float(lam[end])))
            start = None
    return out


def _knn_majority(points: np.ndarray, data: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    dist, idx = NearestNeighbors(n_neighbors=k).fit(data).kneighbors(points)
    out = []
    for d, i in zip(dist, idx):
        votes = np.bincount(labels[i], minlength=labels.max() + 1)
        best = np.flatnonzero(votes == votes.max())
        summed = [d[labels[i] == c].sum() for c in best]
        out.append(best[int(np.argmin(summed))])
    return np.asarray(out)


def test_mixup_at_the_logit_layer_is_the_logits_interpolation(session):
    layer = session.layers[-1]  # fc3: the logits
    a, b = 3, 150
    view = MixupView(session, a=a, b=b, layer=layer, k=7, steps=41)
    assert view.wait(60) and view.status == "idle", view.message
    Z = session.features(layer).double().numpy()
    lam = np.linspace(0, 1, 41)
    z = (1 - lam)[:, None] * Z[a] + lam[:, None] * Z[b]
    np.testing.assert_allclose(np.asarray(view.path.logits), z, rtol=1e-5, atol=1e-5)
    data = view.sources["curve"].data
    labels = np.asarray(session.labels)
    ya, yb = int(labels[a]), int(labels[b])
    np.testing.assert_allclose(data["p_a"], _softmax(z)[:, ya], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data["p_b"], _softmax(z)[:, yb], rtol=1e-5, atol=1e-6)
    vote = _knn_majority(z, Z, labels, 7)
    flags = (vote != ya) & (vote != yb)
    np.testing.assert_array_equal(np.asarray(view.path.intrusion), flags)
    assert view.intervals == pytest.approx(_runs(lam, flags))
    # Temperature rescales the held logits.
    view.temperature = 0.3
    assert view.wait(60)
    np.testing.assert_allclose(view.sources["curve"].data["p_a"], _softmax(z / 0.3)[:, ya], rtol=1e-5, atol=1e-6)
    # Another pair moves the chart.
    view.b = 20
    assert view.wait(60)
    z2 = (1 - lam)[:, None] * Z[a] + lam[:, None] * Z[20]
    np.testing.assert_allclose(np.asarray(view.path.logits), z2, rtol=1e-5, atol=1e-5)


def test_mixup_in_a_hidden_layer_equals_geo_mixup_path(session):
    layer = session.layers[1]
    view = MixupView(session, a=0, b=1, layer=layer, k=10, steps=31)
    assert view.wait(60)
    X = session.features(layer)
    ref = geo.mixup_path(
        session.model,
        X[0],
        X[1],
        31,
        layer=layer,
        carrier=session.inputs[0],
        space="layer",
        data=X,
        labels=session.labels,
        k=10,
        label_a=int(session.labels[0]),
        label_b=int(session.labels[1]),
    )
    np.testing.assert_allclose(np.asarray(view.path.probs), np.asarray(ref.probs), rtol=1e-6, atol=1e-7)
    assert view.intervals == intrusion_intervals(ref.lam, ref.intrusion)
    with pytest.raises(Exception, match="sample index"):
        view.a = session.n


def test_intrusion_intervals_are_the_runs_of_flagged_steps():
    rng = np.random.default_rng(1)
    lam = np.linspace(0, 1, 60)
    for _ in range(20):
        flags = rng.random(60) < 0.3
        assert intrusion_intervals(lam, flags) == _runs(lam, flags)


def _sklearn_angle(X: np.ndarray, labels: np.ndarray, pair: tuple[int, int], reg: float) -> float:
    keep = np.isin(labels, pair)
    Xp, y = X[keep], (labels[keep] == pair[1]).astype(int)
    clf = LogisticRegression(C=1.0 / (reg * len(y)), tol=1e-10, max_iter=20_000).fit(Xp, y)
    w = clf.coef_[0]
    w_nc = Xp[y == 1].mean(0) - Xp[y == 0].mean(0)
    return math.degrees(math.acos(np.clip(w @ w_nc / (np.linalg.norm(w) * np.linalg.norm(w_nc)), -1, 1)))


def test_tilting_view_angles_match_sklearn_and_follow_lambda_and_pair(session):
    labels = np.asarray(session.labels)
    counts = np.bincount(labels)
    pair = tuple(sorted(np.argsort(-counts, kind="stable")[:2].tolist()))
    view = TiltingView(session, reg=1e-2)
    assert view.wait(120) and view.status == "idle", view.message
    for reg in (1e-2, 1.0):
        view.reg = reg
        assert view.wait(120)
        for j, layer in enumerate(session.layers):
            X = session.features(layer).double().numpy()
            assert view.angles[j] == pytest.approx(_sklearn_angle(X, labels, pair, reg), abs=0.5)
        assert view.source.data["angle"] == view.angles
    strong = list(view.angles)
    view.reg = 1e-4
    assert view.wait(120)
    assert view.angles != pytest.approx(strong, abs=1e-3)
    other = (int(np.argsort(-counts, kind="stable")[2]), pair[0])
    view.classes = list(other)
    assert view.wait(120)
    X = session.features(session.layers[0]).double().numpy()
    assert view.angles[0] == pytest.approx(_sklearn_angle(X, labels, other, 1e-4), abs=0.5)
    with pytest.raises(Exception, match="two different labels"):
        view.classes = [1, 1]


def test_explorer_links_the_panel(demo):
    ex = Explorer(demo.model, demo.inputs, demo.labels, layers=demo.layers, method="pca", k_max=20)
    try:
        assert ex.wait(120)
        assert ex.mixup is not None and ex.tilting is not None
        ex.slice.picked = [4, 120]
        ex.layer = demo.layers[2]
        ex.k = 6
        assert ex.wait(120)
        assert (ex.mixup.a, ex.mixup.b, ex.mixup.layer, ex.mixup.k) == (4, 120, demo.layers[2], 6)
        assert ex.tilting.layer == demo.layers[2]
        ref = ex.session.mixup(demo.layers[2], 4, 120, steps=101, k=6)
        np.testing.assert_allclose(np.asarray(ex.mixup.path.probs), np.asarray(ref.probs))
        ex.layout_controls.children[0].value = "heatgeo"
        assert ex.embedding.method == "heatgeo"
    finally:
        ex.close()
