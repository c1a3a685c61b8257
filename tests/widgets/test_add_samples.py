"""Session.add_samples / Explorer.add_samples: z against the reference, placement, removal.

Expected values are computed independently: layer outputs by running the model's own prefix
(``model[: i + 1](x)``), z by ``geo.knn_deviation`` on those, neighbours by scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from geowidgets import geometry as geo
from geowidgets.session import Session

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _prefix_outputs(model: torch.nn.Sequential, x: torch.Tensor, layer: str) -> np.ndarray:
    names = [name for name, _ in model.named_children()]
    with torch.no_grad():
        return model[: names.index(layer) + 1](x).double().numpy()


@pytest.fixture()
def new_inputs(demo):
    g = torch.Generator().manual_seed(1)
    return torch.cat([demo.inputs[:6] + 4.0, torch.randn(6, 2, generator=g) * 0.1 + demo.inputs[6:12]])


def test_z_equals_knn_deviation_against_the_reference(session, demo, new_inputs):
    k = 7
    table = session.add_samples(new_inputs, name="shifted", k=k)
    assert len(table) == len(new_inputs)
    ref = session.reference_mask
    z_layers = []
    for layer in session.layers:
        X = _prefix_outputs(demo.model, demo.inputs, layer)
        Q = _prefix_outputs(demo.model, new_inputs, layer)
        expected = np.asarray(geo.knn_deviation(Q, X[ref], k=k).z)
        np.testing.assert_allclose(table[layer].to_numpy(), expected, rtol=1e-4, atol=1e-4)
        z_layers.append(expected)
    div = geo.divergence_layers(np.stack(z_layers), 2.0)
    expected_names = [session.layers[d] if d >= 0 else None for d in div]
    assert table["divergence_layer"].tolist() == expected_names
    with torch.no_grad():
        assert table["prediction"].tolist() == demo.model(new_inputs).argmax(1).tolist()


def test_placement_is_the_inverse_distance_mean_of_the_k_nearest_samples(session, demo, new_inputs):
    k = 5
    session.add_samples(new_inputs, name="g", k=k)
    layer = session.layers[1]
    layout = session.layout(layer, "pca")
    X = _prefix_outputs(demo.model, demo.inputs, layer)
    Q = _prefix_outputs(demo.model, new_inputs, layer)
    dist, idx = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(Q)
    w = 1.0 / dist
    w /= w.sum(1, keepdims=True)
    expected = (w[:, :, None] * layout[idx].astype(np.float64)).sum(1)
    np.testing.assert_allclose(session.added["g"].positions(layer, layout), expected, rtol=1e-4, atol=1e-4)


def test_explorer_add_keeps_points_and_remove_restores(demo, new_inputs):
    from geowidgets import Explorer

    ex = Explorer(demo.model, demo.inputs, demo.labels, layers=demo.layers, k_max=20, method="pca")
    assert ex.wait()
    positions = ex.embedding.positions.copy()
    z_before, rows_before = ex.deviation_map.z.copy(), ex.deviation_map.row_index.copy()
    table = ex.add_samples(new_inputs, name="ood")
    assert ex.wait()
    np.testing.assert_array_equal(ex.embedding.positions, positions)
    assert ex.embedding.added_groups == [{"name": "ood", "count": len(new_inputs)}]
    assert ex.embedding.added_positions.shape == (len(new_inputs), 2)
    n = demo.inputs.shape[0]
    assert ex.deviation_map.z.shape == (n + len(new_inputs), len(demo.layers))
    np.testing.assert_array_equal(ex.deviation_map.row_index[n:], -1 - np.arange(len(new_inputs)))
    np.testing.assert_allclose(ex.deviation_map.z[n:], table[demo.layers].to_numpy(), rtol=1e-6)
    ex.remove_samples("ood")
    assert ex.wait()
    np.testing.assert_array_equal(ex.embedding.positions, positions)
    assert ex.embedding.added_positions.shape == (0, 2) and ex.embedding.added_groups == []
    np.testing.assert_array_equal(ex.deviation_map.z, z_before)
    np.testing.assert_array_equal(ex.deviation_map.row_index, rows_before)
    with pytest.raises(KeyError, match="ood"):
        ex.remove_samples("ood")


def test_token_mode_refuses_add_samples(demo):
    from geowidgets._arithmetic import AdditionTransformer

    lm = AdditionTransformer(max_len=6, d_model=8, n_heads=2, n_layers=1, d_ff=16)
    ids = torch.randint(0, 10, (8, 6))
    s = Session(lm, ids, layers=["blocks.0"], pooling="tokens", task="embedding", k_max=5)
    with pytest.raises(ValueError, match="token mode"):
        s.add_samples(ids[:2])


def test_added_group_follows_k(demo, new_inputs):
    """After a k move the deviation map shows the group's z at the new k (geo.knn_deviation), and says that k."""
    from geowidgets import Explorer

    ex = Explorer(demo.model, demo.inputs, demo.labels, layers=demo.layers, k_max=20, method="pca", k=4)
    assert ex.wait()
    ex.add_samples(new_inputs, name="ood")
    assert ex.wait()
    ref = ex.session.reference_mask
    n, m = demo.inputs.shape[0], len(new_inputs)
    for k in (4, 13):
        ex.k = k
        assert ex.wait()
        expected = np.stack(
            [
                np.asarray(
                    geo.knn_deviation(
                        _prefix_outputs(demo.model, new_inputs, layer),
                        _prefix_outputs(demo.model, demo.inputs, layer)[ref],
                        k=k,
                    ).z
                )
                for layer in demo.layers
            ],
            1,
        )
        np.testing.assert_allclose(ex.deviation_map.z[n:], expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(
            ex.deviation_map.divergence[n:], geo.divergence_layers(expected.T, ex.deviation_map.threshold)
        )
        assert ex.deviation_map.added_groups == [{"name": "ood", "start": n, "count": m, "k": k}]
        np.testing.assert_allclose(ex.session.added["ood"].deviation(k), expected.T, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        ex.session.added["ood"].deviation(21)


def test_added_labels_are_checked_like_the_sessions(demo):
    """Labels given to add_samples are class indices within the model's output, or names in class_names."""
    from geowidgets.session import Session

    s = Session(demo.model, demo.inputs, demo.labels, layers=demo.layers[:2], k_max=10)
    new = demo.inputs[:3] + 0.1
    table = s.add_samples(new, labels=[0, 1, 2], name="ok")
    assert table["label"].tolist() == [0, 1, 2]
    n_classes = len(demo.class_names)
    with pytest.raises(ValueError, match=rf"{n_classes} columns"):
        s.add_samples(new, labels=[0, 1, n_classes], name="too far")
    with pytest.raises(ValueError, match="class_names"):
        s.add_samples(new, labels=["a", "b", "c"], name="strings")
    with pytest.raises(ValueError, match="length 2 but the data has 3"):
        s.add_samples(new, labels=[0, 1], name="short")
