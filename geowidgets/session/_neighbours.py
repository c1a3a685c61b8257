"""A sample's neighbours in a layer, and how many of them a layer keeps from the one before.

Both read the session's cached kNN graphs (:meth:`Session.knn_graph`, built once per layer at
``k_max``), so a hover or a k move costs a slice of one row, and the "neighbourhood kept"
coloring one overlap count per sample (:func:`geowidgets.geometry.mutual_knn` on two
precomputed graphs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

from geowidgets.session._colorings import ColorSpec, value_coloring

if TYPE_CHECKING:
    from geowidgets.session._session import Session

__all__ = ["neighbours_of", "previous_layer", "neighbourhood_kept", "neighbourhood_kept_coloring"]


def neighbours_of(session: Session, layer: str, index: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of sample ``index`` in ``layer``'s feature space (itself excluded).

    Row ``index`` of the layer's cached graph sliced to ``k``: the same indices and distances as
    ``geo.knn(session.features(layer), k)[.][index]`` (ties to the lower index).

    Returns
    -------
    idx : numpy.ndarray
        int64 ``[k]``, nearest first.
    dist : numpy.ndarray
        float32 ``[k]``, ascending, in the session's metric.

    Raises
    ------
    IndexError
        ``index`` outside ``[0, N)``. ``ValueError`` for a k outside ``1..k_max``, ``KeyError`` for an unknown layer.
    """
    k = session.check_k(k)
    layer = session.check_layer(layer)
    if isinstance(index, bool) or not 0 <= int(index) < session.n:
        raise IndexError(f"sample index must be in [0, {session.n}), got {index!r}")
    dist, idx = session.knn_graph(layer).slice(k)
    row_i, row_d = idx[int(index)], dist[int(index)]
    row_i = row_i.cpu().numpy() if hasattr(row_i, "cpu") else np.asarray(row_i)
    row_d = row_d.cpu().numpy() if hasattr(row_d, "cpu") else np.asarray(row_d)
    return row_i.astype(np.int64), row_d.astype(np.float32)


def previous_layer(session: Session, layer: str) -> str:
    """The layer before ``layer`` in the session's order; for the first layer, the input (``INPUT_LAYER``)."""
    from geowidgets.session._session import INPUT_LAYER

    j = session.layers.index(session.check_layer(layer))
    return session.layers[j - 1] if j > 0 else INPUT_LAYER


def _graph(session: Session, layer: str):
    """The cached kNN graph of a layer, or of the flattened inputs (built once, kept in the session's graph memo)."""
    from geowidgets import geometry as geo
    from geowidgets.session._session import INPUT_LAYER

    if layer != INPUT_LAYER:
        return session.features(layer), session.knn_graph(layer)
    X = session.slice_space(INPUT_LAYER)  # the inputs [N, ...] flattened; ValueError when there is no single tensor
    graph = session._memo["graph"].get(
        INPUT_LAYER, lambda: geo.knn_graph(X, session.k_max, metric=cast(Any, session.metric))
    )
    return X, graph


def neighbourhood_kept(session: Session, layer: str, k: int) -> np.ndarray:
    """Per sample, the share of its ``k`` nearest neighbours in ``layer`` that were also among its ``k`` nearest
    neighbours in the layer before (the inputs, for the first layer).

    ``|N_k^prev(i) ∩ N_k^layer(i)| / k``: :func:`geowidgets.geometry.mutual_knn` with ``per_point=True``
    on the two layers' cached graphs (exact kNN, itself excluded, the session's metric). 1 means the
    layer kept the whole neighbourhood; about ``k / (N − 1)`` means it was reshuffled. The per-point
    change between layers of Emblaze (Sivaraman et al. 2022, "Emblaze: Illuminating Machine Learning
    Representations through Interactive Comparison of Embedding Spaces").

    Returns
    -------
    numpy.ndarray
        float32 ``[N]`` in ``[0, 1]``.

    Raises
    ------
    ValueError
        For the first layer, when the inputs are not one tensor (nothing to compare with); k out of range.
    """
    from geowidgets import geometry as geo

    k = session.check_k(k)
    X_prev, g_prev = _graph(session, previous_layer(session, layer))
    X, g = _graph(session, layer)
    _, share = geo.mutual_knn(X_prev, X, k, metric=session.metric, knn_x=g_prev, knn_y=g, per_point=True)
    return np.asarray(share, dtype=np.float32)


def neighbourhood_kept_coloring(session: Session, layer: str, k: int) -> ColorSpec:
    """:func:`neighbourhood_kept` as a continuous coloring over ``[0, 1]``, named by the layer it compares with."""
    values = neighbourhood_kept(session, layer, k)
    name = f"neighbourhood kept from {previous_layer(session, layer)} (k={k})"
    return value_coloring(values, "continuous", vmin=0.0, vmax=1.0, name=name)
