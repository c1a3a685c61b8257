"""Every probe on every layer, in one tidy table (docs/probes.md#layer-profile).

:func:`layer_profile` walks the captured layers in order and, per layer, builds one kNN graph (at
``max(k, 20, mle_k)``) that serves every neighbourhood probe, and lets the spectral probes share
cached singular values: RankMe (raw) and the von Neumann entropy (centred) come from one Gram
matrix; the coding rate needs its own (its rows are unit-normalised, a different matrix). Nothing
is captured or computed twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from geowidgets.geometry._agreement import knn_label_agreement
from geowidgets.geometry._arrays import as_labels, as_tensor, check_k
from geowidgets.geometry._class_geometry import coding_rate, fisher_ratio, neural_collapse
from geowidgets.geometry._diffusion import dse, dsmi
from geowidgets.geometry._dimension import mle_intrinsic_dimension, twonn
from geowidgets.geometry._knn import knn_graph
from geowidgets.geometry._separability import mst_separability
from geowidgets.geometry._spectra import prefetch_raw_and_centred, rankme, von_neumann_entropy

__all__ = ["layer_profile", "PROFILE_METRICS", "DEFAULT_PROFILE_METRICS", "PROFILE_GRAPH_MIN_K"]

DEFAULT_PROFILE_METRICS: tuple[str, ...] = (
    "rankme",
    "vne",
    "twonn",
    "mle",
    "dse",
    "knn_agreement",
    "fisher",
    "mst",
    "nc1",
    "coding_rate",
)

# metric -> (needs labels, tunable keyword parameters of the underlying probe, with defaults)
PROFILE_METRICS: dict[str, tuple[bool, dict[str, Any]]] = {
    "rankme": (False, {"eps": 1e-7, "center": False}),
    "vne": (False, {"center": True, "exp": False}),
    "twonn": (False, {"discard_fraction": 0.1, "method": "linear"}),
    "mle": (False, {"k": 20, "unbiased": False, "average": "harmonic"}),
    "dse": (False, {"sigma": 1.0, "t": 1.0, "scale": "sqrt_dim", "max_n": 2000, "random_state": 0}),
    "dsmi": (
        True,
        {
            "sigma": 1.0,
            "t": 1.0,
            "scale": "sqrt_dim",
            "repetitions": 5,
            "n_clusters": 10,
            "max_n": 2000,
            "random_state": 0,
        },
    ),
    "knn_agreement": (True, {"temperature": None}),
    "fisher": (True, {"kind": "trace", "shrinkage": 1e-3}),
    "mst": (False, {"normalize": False, "max_n": 5000, "random_state": 0}),
    "nc1": (True, {}),
    "coding_rate": (False, {"eps": 0.5**0.5, "normalize": True}),
}
# Fewest neighbours in the per-layer graph that twonn, mle and knn_agreement share.
PROFILE_GRAPH_MIN_K = 20
_COLUMNS = ["layer", "layer_index", "metric", "value", "k", "params", "n_used", "seconds"]


def _split_params(metrics: Sequence[str], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Route ``<metric>_<name>=value`` keywords to each metric's defaults; unknown keys are errors."""
    chosen = {m: dict(PROFILE_METRICS[m][1]) for m in metrics}
    allowed = sorted(f"{m}_{p}" for m in PROFILE_METRICS for p in PROFILE_METRICS[m][1])
    for key, value in params.items():
        owner = max((m for m in PROFILE_METRICS if key.startswith(m + "_")), key=len, default=None)
        name = key[len(owner) + 1 :] if owner else None
        if owner is None or name not in PROFILE_METRICS[owner][1]:
            raise ValueError(f"unknown layer_profile parameter {key!r}; allowed: {', '.join(allowed)}")
        if owner in chosen:
            chosen[owner][name] = value
    return chosen


def _check_metrics(metrics: Any) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError(f"metrics is empty; choose from {sorted(PROFILE_METRICS)}")
    unknown = [m for m in metrics if m not in PROFILE_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(PROFILE_METRICS)}")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics lists a metric more than once: {list(metrics)}")
    return metrics


def _layer_order(activations: Mapping) -> list[str]:
    layers = getattr(activations, "layers", None)
    return list(layers) if layers is not None else list(activations.keys())


def _runner(metric: str, X: Any, codes: Any, k: int, graph: Any, p: dict[str, Any]) -> tuple[float, int, dict]:
    """Run one metric on one layer: (value, n_used, extra params to record)."""
    n = X.shape[0]
    if metric == "rankme":
        return rankme(X, **p), n, {}
    if metric == "vne":
        return von_neumann_entropy(X, **p), n, {}
    if metric == "twonn":
        return twonn(X, knn=graph, **p), n, {}
    if metric == "mle":
        return cast(float, mle_intrinsic_dimension(X, knn=graph, **p)), n, {}  # pointwise=False: one float
    if metric == "dse":
        used = n if p["max_n"] is None else min(n, p["max_n"])
        return dse(X, **p), used, {}
    if metric == "dsmi":
        used = n if p["max_n"] is None else min(n, p["max_n"])
        return dsmi(X, codes, **p), used, {}
    if metric == "knn_agreement":
        return knn_label_agreement(X, codes, k, knn=graph, **p).mean, n, {}
    if metric == "fisher":
        return float(fisher_ratio(X, codes, **p)), n, {}
    if metric == "mst":
        res = mst_separability(X, codes, **p)
        extra = {} if res.cross_fraction is None else {"cross_fraction": res.cross_fraction}
        return res.score, res.n_used, extra
    if metric == "nc1":
        return neural_collapse(X, codes).nc1, n, {}
    if metric == "coding_rate":
        rate = coding_rate(X, codes, **p)
        if rate.delta_R is None:
            return rate.R, n, {"value": "R"}
        return rate.delta_R, n, {"value": "delta_R", "R": rate.R, "Rc": rate.Rc}
    raise AssertionError(metric)  # pragma: no cover - guarded by _check_metrics


def layer_profile(
    activations: Mapping[str, Any],
    labels: Any = None,
    metrics: Sequence[str] = DEFAULT_PROFILE_METRICS,
    k: int = 10,
    *,
    callback: Callable[[str, str], None] | None = None,
    errors: str = "raise",
    knn: Mapping[str, Any] | None = None,
    **params: Any,
) -> pd.DataFrame:
    """Compute geometry metrics for every captured layer and return one tidy table.

    Per layer, one exact kNN graph at ``max(k, 20, mle_k)`` (capped at N − 1) serves ``twonn``,
    ``mle`` and ``knn_agreement``; the spectral metrics share cached singular values. Label
    metrics (``knn_agreement``, ``fisher``, ``nc1``, ``dsmi``) are skipped without labels: their
    rows have ``value`` NaN and ``params["skipped"]`` says why. ``coding_rate`` reports ΔR with
    labels and R without (``params["value"]`` says which).

    Parameters
    ----------
    activations : Mapping of layer name -> Tensor or ndarray [N, D_layer]
        For example a :meth:`Probe.capture` result (its ``layers`` order is kept). Every layer
        must have the same N.
    labels : array-like of int, shape [N], optional
    metrics : sequence of str
        Any of ``rankme``, ``vne``, ``twonn``, ``mle``, ``dse``, ``dsmi``, ``knn_agreement``,
        ``fisher``, ``mst``, ``nc1``, ``coding_rate``. The default is every metric but ``dsmi``.
    k : int
        Neighbours for ``knn_agreement`` (the k slider). ``mle`` uses ``mle_k`` (default 20).
    callback : callable(layer, metric), optional
        Called before each metric runs (for progress display).
    errors : {"raise", "record"}
        What a metric that cannot be computed on a layer does (e.g. the von Neumann entropy of a
        dead, constant layer): ``"raise"`` (default) raises a ``ValueError`` naming the layer and
        metric; ``"record"`` gives that row ``value`` NaN and the message in ``params["error"]``,
        so one degenerate layer does not hide the rest of the table. Invalid input (NaN/inf, bad
        shapes, mismatched N or labels, unknown metrics or parameters) always raises.
    knn : Mapping of layer name -> KNNGraph, optional
        Euclidean graphs already computed on these activations (e.g. a session's, at its k_max),
        used instead of building new ones. A layer missing here, or whose graph holds fewer
        neighbours than the metrics need, gets its own graph.
    **params
        Per-metric settings as ``<metric>_<parameter>``, e.g. ``dse_sigma=0.5``, ``dse_t=2``,
        ``fisher_kind="lda"``, ``mst_max_n=2000``, ``coding_rate_eps=0.1``, ``mle_k=15``,
        ``knn_agreement_temperature=0.1``. Unknown names are an error listing the allowed ones.

    Returns
    -------
    pandas.DataFrame
        One row per (layer, metric), columns ``layer``, ``layer_index``, ``metric``, ``value``
        (float), ``k`` (nullable int: the neighbours a k-dependent metric used), ``params``
        (dict of the settings used), ``n_used`` (rows used after any ``max_n`` subsample),
        ``seconds`` (wall time of that metric). ``df.attrs["graph_seconds"]`` maps each layer to
        the time spent building its shared kNN graph.

    Raises
    ------
    ValueError
        Naming the layer: NaN/inf or a bad shape in a layer, layers of different N, a label
        length mismatch, k too large, or any probe's own validation error.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> acts = {"a": rng.normal(size=(200, 8)), "b": rng.normal(size=(200, 3))}
    >>> df = layer_profile(acts, metrics=("rankme", "twonn"))
    >>> df[["layer", "metric"]].values.tolist()
    [['a', 'rankme'], ['a', 'twonn'], ['b', 'rankme'], ['b', 'twonn']]
    """
    if not isinstance(activations, Mapping):
        raise ValueError(
            f"activations must map layer name -> [N, D] array (e.g. Probe.capture()), got {type(activations).__name__}"
        )
    layers = _layer_order(activations)
    if not layers:
        raise ValueError("activations is empty; capture at least one layer")
    if errors not in ("raise", "record"):
        raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
    if knn is not None and not isinstance(knn, Mapping):
        raise ValueError(f"knn must map layer name -> KNNGraph, got {type(knn).__name__}")
    metrics = _check_metrics(metrics)
    settings = _split_params(metrics, params)

    rows: list[dict[str, Any]] = []
    graph_seconds: dict[str, float] = {}
    n_rows: int | None = None
    codes = None
    for layer_index, name in enumerate(layers):
        raw = activations[name]
        try:
            Xt, _ = as_tensor(raw, f"layer {name!r}", min_rows=2)
        except ValueError as exc:
            raise ValueError(f"layer {name!r}: {exc}") from exc
        X = raw if isinstance(raw, torch.Tensor) else Xt  # the caller's tensor keys the spectral cache
        if n_rows is None:
            n_rows = Xt.shape[0]
            k = check_k(k, n_rows - 1)
            if labels is not None:
                codes, _ = as_labels(labels, n_rows)
        elif Xt.shape[0] != n_rows:
            raise ValueError(f"layer {name!r} has {Xt.shape[0]} rows but layer {layers[0]!r} has {n_rows}")

        graph = None
        needs_graph = [m for m in metrics if m in ("twonn", "mle", "knn_agreement")]
        if needs_graph and not (codes is None and needs_graph == ["knn_agreement"]):
            k_graph = min(max(k, PROFILE_GRAPH_MIN_K, int(settings.get("mle", {}).get("k", 0))), n_rows - 1)
            given = knn.get(name) if knn is not None else None
            start = time.perf_counter()
            if given is not None and given.k_max >= k_graph:
                graph = given
            else:
                try:
                    graph = knn_graph(X, k_graph)
                except ValueError as exc:
                    raise ValueError(f"layer {name!r}: {exc}") from exc
            graph_seconds[name] = time.perf_counter() - start

        shares_gram = (
            "rankme" in settings
            and "vne" in settings
            and not settings["rankme"]["center"]
            and settings["vne"]["center"]
        )
        for metric in metrics:
            needs_labels, _ = PROFILE_METRICS[metric]
            p = settings[metric]
            row = {"layer": name, "layer_index": layer_index, "metric": metric, "k": pd.NA}
            if metric == "knn_agreement":
                row["k"] = k
            elif metric == "mle":
                row["k"] = p["k"]
            if needs_labels and codes is None:
                rows.append(
                    {**row, "value": np.nan, "params": {**p, "skipped": "needs labels"}, "n_used": 0, "seconds": 0.0}
                )
                continue
            if callback is not None:
                callback(name, metric)
            start = time.perf_counter()
            try:
                if metric in ("rankme", "vne") and shares_gram:
                    prefetch_raw_and_centred(Xt, X)  # one Gram pass for both; the first of them pays
                value, n_used, extra = _runner(metric, X, codes, k, graph, p)
            except ValueError as exc:
                if errors == "raise":
                    raise ValueError(f"layer {name!r}, metric {metric!r}: {exc}") from exc
                seconds = time.perf_counter() - start
                rows.append(
                    {**row, "value": np.nan, "params": {**p, "error": str(exc)}, "n_used": 0, "seconds": seconds}
                )
                continue
            seconds = time.perf_counter() - start
            rows.append(
                {**row, "value": float(value), "params": {**p, **extra}, "n_used": int(n_used), "seconds": seconds}
            )

    df = pd.DataFrame(rows, columns=_COLUMNS)
    df["k"] = df["k"].astype("Int64")
    df["value"] = df["value"].astype(float)
    df.attrs["graph_seconds"] = graph_seconds
    return df
