"""The Explorer's temperature panel: score histograms, AUROC, FPR@95%TPR and ECE follow T without a forward pass."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import roc_auc_score, roc_curve

from geowidgets import geometry as geo


@pytest.fixture()
def explorer(demo):
    from geowidgets import Explorer

    ex = Explorer(
        demo.model, demo.inputs, demo.labels, layers=demo.layers, reference=demo.train_mask, k_max=20, method="pca"
    )
    assert ex.wait() and ex.status == "idle", ex.message
    yield ex
    ex.close()


def _float64_confidence(logits, t):
    return softmax(logits.astype(np.float64) / t, axis=1).max(1)


def test_panel_numbers_equal_the_geometry_functions_at_two_temperatures(explorer, demo):
    ex = explorer
    panel = ex.temperature_panel
    s = ex.session
    logits, ref, labels = s.logits_numpy, s.reference_mask, np.asarray(s.labels)
    assert ref.sum() > 0 and (~ref).sum() > 0
    seen = []
    for t in (0.5, 4.0):
        ex.temperature = t
        assert ex.wait()
        assert panel.temperature == t
        scores = geo.temperature_scores(logits, t)
        conf = np.asarray(scores.confidence, np.float64)
        assert panel.auroc == pytest.approx(geo.auroc(conf[ref], conf[~ref]), abs=1e-12)
        assert panel.fpr95 == pytest.approx(geo.fpr_at_tpr(conf[ref], conf[~ref], 0.95), abs=1e-12)
        assert panel.ece == pytest.approx(geo.expected_calibration_error(scores.probs, labels, 15), abs=1e-12)
        # and against scikit-learn on the same (float32, so saturated ones tie) confidences
        truth = np.r_[np.ones(ref.sum()), np.zeros((~ref).sum())]
        assert panel.auroc == pytest.approx(roc_auc_score(truth, np.r_[conf[ref], conf[~ref]]), abs=1e-12)
        fpr, tpr, _ = roc_curve(truth, np.r_[conf[ref], conf[~ref]], drop_intermediate=False)
        assert panel.fpr95 == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
        p = softmax(logits.astype(np.float64) / t, axis=1)
        bins = np.clip(np.ceil(p.max(1) * 15).astype(int) - 1, 0, 14)
        ece = sum(
            abs((p.argmax(1)[bins == b] == labels[bins == b]).mean() - p.max(1)[bins == b].mean()) * (bins == b).mean()
            for b in range(15)
            if (bins == b).any()
        )
        assert panel.ece == pytest.approx(ece, abs=1e-4)  # float64 softmax vs the panel's float32
        # the histograms are the two groups' shares per bin
        summary = panel.summary
        np.testing.assert_allclose(summary.reference_density, np.histogram(conf[ref], summary.edges)[0] / ref.sum())
        assert panel.reference_source.data["top"] == summary.reference_density.tolist()
        seen.append((panel.auroc, panel.ece, list(panel.others_source.data["top"])))
    assert seen[0][1] != seen[1][1]  # calibration moves with T
    assert seen[0][2] != seen[1][2]  # so do the histograms
    assert "AUROC" in panel.histogram_figure.title.text and "ECE" in panel.reliability_figure.title.text


@pytest.mark.parametrize("score", ["energy", "entropy", "margin"])
def test_other_scores_are_oriented_reference_high(explorer, score):
    ex = explorer
    panel = ex.temperature_panel
    s = ex.session
    panel.score = score
    ex.temperature = 2.0
    assert ex.wait()
    v = np.asarray(getattr(geo.temperature_scores(s.logits_numpy, 2.0), score), np.float64)
    oriented = -v if score in ("energy", "entropy") else v
    ref = s.reference_mask
    assert panel.auroc == pytest.approx(geo.auroc(oriented[ref], oriented[~ref]), abs=1e-12)
    assert panel.fpr95 == pytest.approx(geo.fpr_at_tpr(oriented[ref], oriented[~ref], 0.95), abs=1e-12)


def test_added_samples_are_what_the_reference_is_compared_with(explorer, demo):
    import torch

    ex = explorer
    panel = ex.temperature_panel
    gen = torch.Generator().manual_seed(0)
    noise = 4.0 * torch.randn(60, *demo.inputs.shape[1:], generator=gen)
    ex.add_samples(noise, name="noise")
    assert ex.wait()
    with torch.no_grad():
        out = demo.model(noise).numpy()  # the model's own logits of the added samples
    conf_new = np.asarray(geo.temperature_scores(out, ex.temperature).confidence)
    conf = np.asarray(geo.temperature_scores(ex.session.logits_numpy, ex.temperature).confidence)
    ref = ex.session.reference_mask
    assert panel.summary.others_name == "noise"
    truth = np.r_[np.ones(ref.sum()), np.zeros(len(conf_new))]
    assert panel.auroc == pytest.approx(roc_auc_score(truth, np.r_[conf[ref], conf_new]), abs=1e-12)
    ex.remove_samples("noise")
    assert ex.wait() and panel.summary.others_name == "rest"


def test_no_panel_without_class_logits(demo):
    from geowidgets import Explorer

    ex = Explorer(demo.model[:-1], demo.inputs, demo.labels, task="embedding", k_max=20, method="pca")
    assert ex.temperature_panel is None and ex.temperature_panel not in ex.children
    ex.close()


def test_panel_and_neighbours_follow_the_checkpoint_step(demo):
    import copy

    import torch

    from geowidgets import Explorer

    perturbed = copy.deepcopy(demo.model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    ex = Explorer(
        [demo.model, perturbed],
        demo.inputs,
        demo.labels,
        layers=demo.layers,
        reference=demo.train_mask,
        k_max=20,
        method="pca",
    )
    assert ex.wait()
    ex.hovered = 9
    ex.temperature = 2.0
    assert ex.wait()
    before = (ex.temperature_panel.ece, list(ex.neighbours))
    ex.step = ex.step_family.steps[1]
    assert ex.wait()
    s = ex.session
    with torch.no_grad():
        logits = perturbed(demo.inputs).numpy()  # the perturbed checkpoint's own outputs
    scores = geo.temperature_scores(logits, 2.0)
    conf, ref = np.asarray(scores.confidence, np.float64), s.reference_mask
    assert ex.temperature_panel.session is s
    assert ex.temperature_panel.auroc == pytest.approx(geo.auroc(conf[ref], conf[~ref]), abs=1e-6)
    assert ex.temperature_panel.ece == pytest.approx(
        geo.expected_calibration_error(scores.probs, np.asarray(demo.labels), 15), abs=1e-6
    )
    assert ex.neighbours == geo.knn(s.features(ex.layer).numpy(), ex.k)[1][9].tolist()
    assert (ex.temperature_panel.ece, list(ex.neighbours)) != before
    ex.close()


def test_a_classifier_right_on_every_sample_has_a_panel_with_nothing_to_compare():
    """No sample outside the reference: the panel says so (AUROC/FPR NaN) instead of failing."""
    import torch
    from sklearn.datasets import make_blobs

    import geowidgets as gw

    X, y = make_blobs(600, centers=[[-6, 0], [6, 0], [0, 8]], cluster_std=0.5, random_state=0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    with torch.no_grad():  # nearest-centre read-out: exact on these well-separated blobs
        centres = torch.tensor([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])
        model[0].weight.copy_(centres)
        model[0].bias.copy_(-0.5 * (centres**2).sum(1))
    X = torch.tensor(X, dtype=torch.float32)
    assert (model(X).argmax(1).numpy() == y).all()
    ex = gw.Explorer(model, X, y, k_max=10, method="pca")
    assert ex.wait(180), ex.message
    panel = ex.temperature_panel
    assert ex.status == "idle" and panel.status == "idle", (ex.message, panel.message)
    assert np.isnan(panel.auroc) and np.isnan(panel.fpr95) and np.isfinite(panel.ece)
    assert "no other samples" in panel.readout.value
