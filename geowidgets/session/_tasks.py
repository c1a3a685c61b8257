"""What a session's model predicts (task, output selection, head), its metadata, and added samples.

* :class:`PredictionModel`: the user's model followed by the choice of its prediction tensor
  (``output=``: a key, index, attribute or callable; a ``.logits`` attribute by default) and an
  optional ``head``; it lists the user's modules under their own names, so layer names are unchanged.
* :func:`resolve_task`: ``"auto"`` picks classification only for an ``[N, C>=2]`` output.
* :func:`metadata_colorings`: a pandas DataFrame's columns as colorings.
* :func:`knn_placement` / :class:`AddedSamples`: out-of-sample positions of new points in a
  layout (inverse-distance weighted mean of the layout positions of their k nearest samples in
  the layer's feature space) and their per-layer deviation.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from geowidgets.probe._layers import select_output
from geowidgets.session._colorings import ColorSpec, categorical_coloring, value_coloring

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "TASKS",
    "PredictionModel",
    "select_prediction",
    "resolve_task",
    "as_metadata",
    "metadata_colorings",
    "knn_placement",
    "AddedSamples",
]

#: The kinds of model a session understands.
TASKS = ("auto", "classification", "regression", "embedding")

Output = str | int | Callable[[Any], torch.Tensor] | None


def _warn_if_ambiguous(out: Any, first: torch.Tensor | None) -> None:
    """Warn when ``out`` holds several per-sample tensors and the first was taken as the prediction."""
    if first is None or first.ndim == 0 or not isinstance(out, (Mapping, tuple, list)):
        return
    if isinstance(out, Mapping) and "last_hidden_state" in out:
        return  # an encoder's output (Hugging Face): its hidden states are the documented choice
    values = list(out.values()) if isinstance(out, Mapping) else list(out)
    per_sample = [v for v in values if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == first.shape[0]]
    if len(per_sample) > 1:
        shapes = " and ".join(f"[N, {', '.join(map(str, v.shape[1:]))}]" if v.ndim > 1 else "[N]" for v in per_sample)
        warnings.warn(
            f"the model returns {len(per_sample)} tensors per sample ({shapes}); geowidgets reads the first as its "
            "prediction. Pass output= (an index, key or attribute, e.g. output=1) to pick the logits",
            UserWarning,
            stacklevel=2,
        )


def select_prediction(out: Any, output: Output = None) -> torch.Tensor:
    """The prediction tensor in a model's return value.

    Parameters
    ----------
    out : Any
        What ``model(...)`` returned: a tensor, a tuple/list, a dict or an object (e.g. a Hugging
        Face ``ModelOutput``).
    output : str, int, callable or None
        A dict key or attribute name (e.g. ``"logits"``), a tuple index, or a callable
        ``output(out) -> Tensor``. None: the tensor itself, else a ``logits`` entry or attribute,
        else the first tensor (``last_hidden_state`` of an encoder output).

    Returns
    -------
    torch.Tensor

    Raises
    ------
    ValueError
        ``output`` not found in ``out``, or no tensor there.

    Examples
    --------
    >>> import torch
    >>> select_prediction({"loss": torch.tensor(0.0), "logits": torch.ones(2, 3)}).shape
    torch.Size([2, 3])
    >>> select_prediction((torch.zeros(2, 4), torch.ones(2)), 1).shape
    torch.Size([2])
    """
    t: torch.Tensor | None
    if callable(output) and not isinstance(output, (str, int)):
        t = output(out)
    elif output is None:
        if isinstance(out, torch.Tensor):
            t = out
        elif isinstance(out, Mapping) and "logits" in out:
            t = out["logits"]
        elif not isinstance(out, (Mapping, tuple, list)) and getattr(out, "logits", None) is not None:
            t = out.logits
        else:
            t = select_output(out, 0)
            _warn_if_ambiguous(out, t)
    elif isinstance(output, str):
        if hasattr(out, "keys") and output in out:
            t = out[output]
        elif hasattr(out, output):
            t = getattr(out, output)
        else:
            keys = list(out.keys()) if hasattr(out, "keys") else [a for a in dir(out) if not a.startswith("_")]
            raise ValueError(f"output={output!r}: the model returned {type(out).__name__} without it; it has {keys}")
    elif isinstance(output, int) and isinstance(out, (tuple, list)):
        if not -len(out) <= output < len(out):
            raise ValueError(f"output={output}: the model returned a {type(out).__name__} of {len(out)} elements")
        t = out[output]
    else:
        raise ValueError(
            f"output={output!r} cannot pick from a {type(out).__name__}: give a key or attribute name (str), a "
            "tuple index (int) or a callable"
        )
    if not isinstance(t, torch.Tensor):
        raise ValueError(
            f"the model's prediction must be a tensor, got {type(t).__name__} (from a {type(out).__name__} output); "
            "pass output= (a key, index, attribute name or callable) to say where it is"
        )
    return t


class PredictionModel(nn.Module):
    """``head(select_prediction(model(...), output))``: a model whose forward returns its prediction tensor.

    ``named_modules()`` (and so layer names, parameters and buffers) are the wrapped model's own,
    without a prefix, so a probe, a decision slice or a layer list see the same names as on the
    model itself; ``forward`` has the wrapped model's signature. The head's parameters are not in
    ``named_parameters()``.

    Parameters
    ----------
    model : nn.Module
    output : str, int, callable or None
        See :func:`select_prediction`.
    head : nn.Module, optional
        Applied to the selected tensor (e.g. a linear classifier on an encoder's embedding).

    Examples
    --------
    >>> from torch import nn
    >>> m = PredictionModel(nn.Sequential(nn.Linear(2, 3)), head=nn.Linear(3, 4))
    >>> [name for name, _ in m.named_modules()], m(torch.zeros(1, 2)).shape
    (['', '0'], torch.Size([1, 4]))
    """

    def __init__(self, model: nn.Module, output: Output = None, head: nn.Module | None = None):
        super().__init__()
        if head is not None and not isinstance(head, nn.Module):
            raise ValueError(f"head must be a torch.nn.Module (features -> logits), got {type(head).__name__}")
        self.model = model
        self.head = head
        self.output = output
        # The wrapped forward's signature, so keyword checks (e.g. "does it take labels?") see the model's own.
        predict = functools.partial(PredictionModel._predict, self)
        self.forward = functools.update_wrapper(predict, model.forward, assigned=("__doc__", "__wrapped__"), updated=())

    def named_modules(self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True):
        return self.model.named_modules(memo, prefix, remove_duplicate)

    # The wrapped model holds the train/eval mode: a wrapper's own flag (True after nn.Module's
    # __init__) would be "restored" onto the user's model after a capture and flip it to train mode.
    @property
    def training(self) -> bool:
        inner = self._modules.get("model")
        return True if inner is None else inner.training

    @training.setter
    def training(self, mode: bool) -> None:
        pass  # train()/eval() reach the wrapped model (and head) through children()

    def _predict(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        t = select_prediction(self.model(*args, **kwargs), self.output)
        return t if self.head is None else self.head(t)


def resolve_task(task: str, outputs: torch.Tensor | None) -> str:
    """The session's task, checked against the model's outputs ``[N, W]`` (flattened per sample).

    ``"auto"`` is ``"classification"`` for an output of two or more columns; otherwise it raises.

    Raises
    ------
    ValueError
        An unknown task; ``"auto"`` or ``"classification"`` with an output that is not
        ``[N, C>=2]``; ``"regression"`` with more than one value per sample.

    Examples
    --------
    >>> import torch
    >>> resolve_task("auto", torch.zeros(5, 3)), resolve_task("regression", torch.zeros(5, 1))
    ('classification', 'regression')
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "embedding":
        return task
    shape = None if outputs is None else tuple(outputs.shape)
    if task == "regression":
        if shape is None or len(shape) != 2 or shape[1] != 1:
            raise ValueError(
                f"task='regression' needs one predicted value per sample (output [N] or [N, 1]), got shape {shape}; "
                "pass output= to pick it"
            )
        return task
    if shape is not None and len(shape) == 2 and shape[1] >= 2:
        return "classification"
    if task == "classification":
        raise ValueError(f"task='classification' needs logits [N, C] with C >= 2, got the output shape {shape}")
    raise ValueError(
        "task='auto' picks classification only for a floating output [N, C] with C >= 2 (logits); this model's "
        f"output has shape {shape} per capture (None: no per-sample tensor). Pass task='regression' (one value per "
        "sample), task='embedding' (features without class logits, e.g. a sentence encoder) or output= (the key, "
        "index, attribute or callable that gives the logits)"
    )


def as_metadata(metadata: Any, n: int) -> pd.DataFrame | None:
    """``metadata`` as a DataFrame with a 0..n-1 index, checked to have one row per sample."""
    import pandas as pd

    if metadata is None:
        return None
    if not isinstance(metadata, pd.DataFrame):
        raise ValueError(f"metadata must be a pandas DataFrame (one row per sample), got {type(metadata).__name__}")
    if len(metadata) != n:
        raise ValueError(f"metadata must have one row per sample ({n}), got {len(metadata)} rows")
    frame = metadata.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def metadata_colorings(metadata: pd.DataFrame | None) -> dict[str, ColorSpec]:
    """Each column as a coloring: categorical for object, category, string and bool columns, else continuous.

    Examples
    --------
    >>> import pandas as pd
    >>> specs = metadata_colorings(pd.DataFrame({"topic": ["a", "b", "a"], "length": [3, 5, 4]}))
    >>> specs["topic"].kind, specs["topic"].categories, specs["length"].kind, specs["length"].vmax
    ('categorical', ['a', 'b'], 'continuous', 5.0)
    """
    import pandas as pd

    if metadata is None:
        return {}
    out: dict[str, ColorSpec] = {}
    for name in metadata.columns:
        col = metadata[name]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            cat = pd.Categorical(col.astype(str) if not isinstance(col.dtype, pd.CategoricalDtype) else col)
            codes = np.asarray(cat.codes, dtype=np.int64)
            out[name] = categorical_coloring(np.maximum(codes, 0), [str(c) for c in cat.categories], name)
        else:
            values = col.to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            fill = float(finite.min()) if finite.size else 0.0
            out[name] = value_coloring(np.where(np.isfinite(values), values, fill), "continuous", name=name)
    return out


def knn_placement(
    queries: torch.Tensor, data: torch.Tensor, k: int, metric: str = "euclidean"
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's k nearest rows of ``data`` and inverse-distance weights (summing to 1).

    A new point's position in any layout ``xy`` of ``data`` is then ``(weights[..., None] *
    xy[idx]).sum(1)``: it lies among its neighbours and no existing point moves. A query at
    distance 0 from a row takes that row's position.

    Returns
    -------
    idx : numpy.ndarray
        int64 ``[M, k]``.
    weights : numpy.ndarray
        float64 ``[M, k]``.

    Examples
    --------
    >>> import torch
    >>> X = torch.tensor([[0.0], [1.0], [10.0]])
    >>> idx, w = knn_placement(torch.tensor([[0.25]]), X, k=2)
    >>> idx.tolist(), w.round(2).tolist()
    ([[0, 1]], [[0.75, 0.25]])
    """
    from geowidgets.geometry._knn import knn as knn_search

    k = min(int(k), int(data.shape[0]))
    dist, idx = knn_search(queries, k, Y=data, metric=metric)  # type: ignore[arg-type]
    d = np.asarray(dist.detach().cpu().numpy() if hasattr(dist, "detach") else dist, dtype=np.float64)
    idx = np.asarray(idx.detach().cpu().numpy() if hasattr(idx, "detach") else idx, dtype=np.int64)
    exact = d <= 1e-12 * np.maximum(1.0, d.max(1, keepdims=True))
    w = np.where(exact.any(1, keepdims=True), exact.astype(np.float64), 1.0 / np.maximum(d, 1e-300))
    return idx, w / w.sum(1, keepdims=True)


@dataclass
class AddedSamples:
    """A named group of samples added to a live session (see ``Session.add_samples``).

    Attributes
    ----------
    name : str
    table : pandas.DataFrame
        One row per sample: ``z`` at each layer (columns named by layer), ``divergence_layer``
        and, when known, ``label`` and ``prediction``.
    z : numpy.ndarray
        float32 ``[L, M]`` deviation z at each layer (session layer order) at ``k``.
    divergence : numpy.ndarray
        int64 ``[M]``: first layer index with ``z > threshold``, -1 if none.
    neighbours : dict of str to (idx, weights)
        Per layer, :func:`knn_placement` of the new samples among the session's samples.
    k : int
        Neighbours used for z and placement.
    threshold : float
    features : dict of str to Tensor
        The new samples' activations ``[M, D]`` per layer.
    tables : dict of str to DeviationTables
        Per layer (session layer order), the new samples' deviation tables against the reference
        set at the session's ``k_max``; :meth:`deviation` re-reads them at another k.
    outputs : Tensor or None
        The new samples' model outputs ``[M, C]`` (a classifier's logits; the temperature panel scores them).
    """

    name: str
    table: Any
    z: np.ndarray
    divergence: np.ndarray
    neighbours: dict
    k: int
    threshold: float
    features: dict
    tables: dict = field(default_factory=dict)
    outputs: Any = None

    @property
    def n(self) -> int:
        """Number of samples in the group."""
        return int(self.z.shape[1])

    def deviation(self, k: int) -> np.ndarray:
        """The group's deviation z at every layer at ``k`` neighbours, float32 ``[L, M]``.

        ``tables[layer].result(k).z`` per layer (kNN deviation against the reference set, see
        :class:`~geowidgets.geometry.DeviationTables`): an O(M) re-read of the tables cached at
        ``k_max``, equal to ``geo.knn_deviation(new, reference, k).z``. At the k the group was
        added with (or without tables) it is :attr:`z`.

        Raises
        ------
        ValueError
            ``k`` outside ``1..k_max`` of the tables.
        """
        k = int(k)
        if k == self.k or not self.tables:
            if k != self.k:
                raise ValueError(f"group {self.name!r} holds no deviation tables; it was scored at k={self.k} only")
            return self.z
        rows = [
            np.asarray(tables.result(k, percentile=False, zero_spread="nan").z, dtype=np.float32)
            for tables in self.tables.values()
        ]
        return np.stack(rows).reshape(len(rows), self.n)

    def positions(self, layer: str, layout: np.ndarray) -> np.ndarray:
        """The group's positions ``[M, 2]`` in ``layout`` (the session's samples' ``[N, 2]`` layout of ``layer``)."""
        idx, w = self.neighbours[layer]
        xy = np.asarray(layout, dtype=np.float64)
        return (w[:, :, None] * xy[idx]).sum(1).astype(np.float32)
