"""layer_profile (docs/probes.md): rows equal direct calls, shared graph and spectra, skipped label metrics, errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import geowidgets.geometry._knn as _knn
import geowidgets.geometry._profile as _profile
import geowidgets.geometry._spectra as _spectra
from geowidgets import geometry as geo
from geowidgets.probe._capture import Activations

N = 200


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, N)
    acts = {
        "embed": torch.from_numpy(rng.normal(size=(N, 12)) + 2.0 * np.eye(12)[y]).float(),
        "hidden": torch.from_numpy(np.tanh(rng.normal(size=(N, 6)) + np.eye(6)[y])).float(),
        "logits": torch.from_numpy(rng.normal(size=(N, 3)) + 3.0 * np.eye(3)[y]).float(),
    }
    return acts, y


def _direct(metric: str, X, y, k: int):
    X = X.clone()  # a new tensor: nothing is served from the profile's caches
    if metric == "rankme":
        return geo.rankme(X)
    if metric == "vne":
        return geo.von_neumann_entropy(X)
    if metric == "twonn":
        return geo.twonn(X)
    if metric == "mle":
        return geo.mle_intrinsic_dimension(X, 20)
    if metric == "dse":
        return geo.dse(X)
    if metric == "dsmi":
        return geo.dsmi(X, y)
    if metric == "knn_agreement":
        return geo.knn_label_agreement(X, y, k).mean
    if metric == "fisher":
        return float(geo.fisher_ratio(X, y))
    if metric == "mst":
        return geo.mst_separability(X, y).score
    if metric == "nc1":
        return geo.neural_collapse(X, y).nc1
    if metric == "coding_rate":
        return geo.coding_rate(X, y).delta_R
    raise AssertionError(metric)


def test_rows_equal_direct_calls(data):
    acts, y = data
    metrics = (*_profile.DEFAULT_PROFILE_METRICS, "dsmi")
    df = geo.layer_profile(acts, y, metrics=metrics, k=7)
    assert list(df.columns) == ["layer", "layer_index", "metric", "value", "k", "params", "n_used", "seconds"]
    assert len(df) == 3 * len(metrics)
    assert df["layer"].tolist() == [name for name in acts for _ in metrics]
    assert df["layer_index"].tolist() == [i for i in range(3) for _ in metrics]
    for row in df.itertuples():
        expected = _direct(row.metric, acts[row.layer], y, 7)
        assert row.value == pytest.approx(expected, rel=1e-9, abs=1e-12), (row.layer, row.metric)
        assert row.n_used == N and row.seconds >= 0
    assert df.loc[df.metric == "knn_agreement", "k"].tolist() == [7, 7, 7]
    assert df.loc[df.metric == "mle", "k"].tolist() == [20, 20, 20]
    assert df.loc[df.metric == "rankme", "k"].isna().all()
    assert set(df.attrs["graph_seconds"]) == set(acts)


def test_parameters_are_routed_to_their_metric(data):
    acts, y = data
    X = acts["hidden"]
    df = geo.layer_profile(
        {"hidden": X},
        y,
        metrics=("dse", "fisher", "mle", "coding_rate", "mst"),
        dse_sigma=0.5,
        dse_t=2,
        fisher_kind="lda",
        mle_k=15,
        coding_rate_eps=0.2,
        mst_max_n=100,
    )
    values = dict(zip(df.metric, df.value))
    assert values["dse"] == pytest.approx(geo.dse(X, sigma=0.5, t=2), rel=1e-12)
    assert values["fisher"] == pytest.approx(float(geo.fisher_ratio(X, y, "lda")), rel=1e-12)
    assert values["mle"] == pytest.approx(geo.mle_intrinsic_dimension(X, 15), rel=1e-12)
    assert values["coding_rate"] == pytest.approx(geo.coding_rate(X, y, eps=0.2).delta_R, rel=1e-12)
    assert values["mst"] == pytest.approx(geo.mst_separability(X, y, max_n=100).score, rel=1e-12)
    params = dict(zip(df.metric, df.params))
    assert params["dse"]["sigma"] == 0.5 and params["fisher"]["kind"] == "lda"
    assert params["coding_rate"]["value"] == "delta_R"
    assert df.loc[df.metric == "mst", "n_used"].item() == 100
    assert df.loc[df.metric == "mle", "k"].item() == 15


def test_label_metrics_skipped_without_labels(data):
    acts, _ = data
    df = geo.layer_profile({"embed": acts["embed"]})
    skipped = df[df.params.map(lambda p: p.get("skipped") == "needs labels")]
    assert sorted(skipped.metric) == ["fisher", "knn_agreement", "nc1"]
    assert skipped.value.isna().all()
    row = df[df.metric == "coding_rate"].iloc[0]
    assert row.params["value"] == "R"
    assert row.value == pytest.approx(geo.coding_rate(acts["embed"]).R, rel=1e-12)
    assert df[~df.metric.isin(skipped.metric)].value.notna().all()


def test_one_graph_per_layer_and_no_distance_recomputation(data, monkeypatch):
    acts, y = data
    calls = {"graph": 0, "search": 0}
    real_graph, real_search = _profile.knn_graph, _knn._knn_tensors

    def counting_graph(*args, **kwargs):
        calls["graph"] += 1
        return real_graph(*args, **kwargs)

    def counting_search(*args, **kwargs):
        calls["search"] += 1
        return real_search(*args, **kwargs)

    monkeypatch.setattr(_profile, "knn_graph", counting_graph)
    monkeypatch.setattr(_knn, "_knn_tensors", counting_search)
    geo.layer_profile(acts, y, metrics=("twonn", "mle", "knn_agreement"), k=25)
    assert calls == {"graph": 3, "search": 3}  # one exact search per layer, shared by all three probes


def test_spectra_computed_once_per_variant(data, monkeypatch):
    acts, y = data
    X = acts["embed"].clone()
    _spectra.clear_spectral_cache()
    calls = []
    real_single, real_pair = _spectra._singular_values_f64, _spectra._raw_and_centred_f64

    def counting_single(M, *args):
        calls.append("single")
        return real_single(M, *args)

    def counting_pair(M):
        calls.append("pair")
        return real_pair(M)

    monkeypatch.setattr(_spectra, "_singular_values_f64", counting_single)
    monkeypatch.setattr(_spectra, "_raw_and_centred_f64", counting_pair)
    df = geo.layer_profile({"embed": X}, y, metrics=("rankme", "vne", "coding_rate"))
    # one Gram pass for RankMe (raw) + von Neumann (centred), one for the row-normalised coding rate
    assert calls == ["pair", "single"]
    assert geo.rankme(X) == df.value[0]
    assert geo.von_neumann_entropy(X) == df.value[1]
    geo.coding_rate(X, y, eps=0.1)  # a later ε move
    assert calls == ["pair", "single"]  # all served from the cache
    monkeypatch.undo()
    fresh = X.clone()
    assert df.value[0] == pytest.approx(geo.rankme(fresh), rel=1e-10)
    assert df.value[1] == pytest.approx(geo.von_neumann_entropy(fresh), rel=1e-10)


def test_activations_object_order_is_kept(data):
    acts, y = data
    ordered = Activations({"logits": acts["logits"], "embed": acts["embed"]}, None, {}, {})
    df = geo.layer_profile(ordered, y, metrics=("rankme",))
    assert df.layer.tolist() == ["logits", "embed"]
    assert df.layer_index.tolist() == [0, 1]


def test_numpy_activations_work_and_match_tensors(data):
    acts, y = data
    np_acts = {name: t.numpy() for name, t in acts.items()}
    a = geo.layer_profile(np_acts, y, metrics=("rankme", "knn_agreement"))
    b = geo.layer_profile(acts, y, metrics=("rankme", "knn_agreement"))
    np.testing.assert_allclose(a.value.to_numpy(), b.value.to_numpy(), rtol=1e-12)


def test_nan_in_a_layer_names_it(data):
    acts, y = data
    bad = acts["hidden"].clone()
    bad[5, 2] = math.nan
    with pytest.raises(ValueError, match="layer 'hidden'.*NaN"):
        geo.layer_profile({"embed": acts["embed"], "hidden": bad}, y, metrics=("rankme",))


def test_profile_errors(data):
    acts, y = data
    with pytest.raises(ValueError, match="unknown metric"):
        geo.layer_profile(acts, y, metrics=("rankme", "curvature"))
    with pytest.raises(ValueError, match="more than once"):
        geo.layer_profile(acts, y, metrics=("rankme", "rankme"))
    with pytest.raises(ValueError, match="unknown layer_profile parameter 'dse_bandwidth'"):
        geo.layer_profile(acts, y, dse_bandwidth=3.0)
    with pytest.raises(ValueError, match="activations is empty"):
        geo.layer_profile({}, y)
    with pytest.raises(ValueError, match="must map layer name"):
        geo.layer_profile([acts["embed"]], y)
    with pytest.raises(ValueError, match="has 199 rows"):
        geo.layer_profile({"a": acts["embed"], "b": acts["hidden"][:-1]}, metrics=("rankme",))
    with pytest.raises(ValueError, match="k=200 is too large"):
        geo.layer_profile(acts, y, k=200)
    with pytest.raises(ValueError, match="length"):
        geo.layer_profile(acts, y[:-1])
    with pytest.raises(ValueError, match="layer 'embed', metric 'fisher'.*at least 2 distinct classes"):
        geo.layer_profile(acts, np.zeros(N, dtype=int), metrics=("fisher",))


def test_result_is_a_tidy_dataframe(data):
    acts, y = data
    df = geo.layer_profile(acts, y, metrics=("rankme", "fisher"), callback=lambda layer, metric: None)
    assert isinstance(df, pd.DataFrame)
    assert str(df["k"].dtype) == "Int64" and df["value"].dtype == float
    wide = df.pivot(index="layer", columns="metric", values="value")
    assert wide.shape == (3, 2)


def test_errors_record_keeps_the_rest_of_the_table(data):
    acts, y = data
    dead = torch.zeros(N, 4)  # a dead ReLU layer: no variance, all-zero rows
    layers = {"embed": acts["embed"], "dead": dead}
    with pytest.raises(ValueError, match="layer 'dead', metric 'vne'.*zero variance"):
        geo.layer_profile(layers, y, metrics=("vne", "coding_rate", "fisher"))
    df = geo.layer_profile(layers, y, metrics=("vne", "coding_rate", "fisher"), errors="record")
    ok = df[df.layer == "embed"]
    assert ok.value.notna().all() and not any("error" in p for p in ok.params)
    failed = df[df.layer == "dead"].set_index("metric")
    assert np.isnan(failed.loc["vne", "value"]) and "zero variance" in failed.loc["vne", "params"]["error"]
    assert "all-zero row" in failed.loc["coding_rate", "params"]["error"]
    with pytest.raises(ValueError, match="errors must be"):
        geo.layer_profile(layers, y, errors="ignore")
    bad = acts["embed"].clone()
    bad[0, 0] = math.inf
    with pytest.raises(ValueError, match="layer 'bad'"):  # invalid input raises even with errors="record"
        geo.layer_profile({"bad": bad}, y, errors="record")


def test_given_graphs_are_reused_and_too_short_ones_rebuilt(data, monkeypatch):
    acts, y = data
    metrics = ("twonn", "mle", "knn_agreement")
    expected = geo.layer_profile(acts, y, metrics=metrics, k=10)
    graphs = {"embed": geo.knn_graph(acts["embed"], 50), "hidden": geo.knn_graph(acts["hidden"], 50)}
    graphs["logits"] = geo.knn_graph(acts["logits"], 5)  # fewer neighbours than mle's 20
    built = []
    real_graph = _profile.knn_graph
    monkeypatch.setattr(_profile, "knn_graph", lambda X, k: built.append(k) or real_graph(X, k))
    got = geo.layer_profile(acts, y, metrics=metrics, k=10, knn=graphs)
    assert built == [20]  # only the layer whose graph was too short got a new one
    pd.testing.assert_series_equal(got["value"], expected["value"])
    with pytest.raises(ValueError, match="knn must map layer name"):
        geo.layer_profile(acts, y, metrics=metrics, knn=[graphs["embed"]])
