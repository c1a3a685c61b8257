"""The :class:`Session`: a model, its data, and every result the views ask for, computed once.

The session captures the chosen layers once (through a :class:`~geowidgets.probe.Probe`),
memoises what geometry derives from them and hands back geometry's own result objects, so that
a slider move is answered from cache or by a cheap re-slice. It computes nothing itself:

* one kNN graph per layer at ``k_max`` (a k move slices it);
* one :class:`~geowidgets.geometry.DeviationTables` per layer at ``k_max`` (a k move re-reads
  its running sums: ``tables.result(k)``);
* the model's logits (a temperature move is ``geo.temperature_scores``, computed per score);
* one 2-D layout per (layer, method), aligned to the layout on screen when it is requested;
* decision slices per (layer, anchors, resolution) with their logits (a temperature move is
  ``slice.with_temperature``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn
from torch.utils.data import DataLoader, Dataset

from geowidgets.geometry._arrays import ArrayKind, as_class_indices, check_positive, label_array
from geowidgets.probe import Probe, iterate_batches, take_rows
from geowidgets.probe._capture import _LABEL_KEYS, _MASK_KEY, _batches, in_dataset_order, reads_in_order
from geowidgets.probe._layers import default_layers
from geowidgets.session._boundary import BOUNDARY_COLORINGS, LAYOUT_PARAMS, BoundaryGeometry, check_layout_params
from geowidgets.session._colorings import (
    COLOR_BY,
    ColorSpec,
    categorical_coloring,
    check_color_kind,
    temperature_coloring,
    value_coloring,
    warn_renamed,
)
from geowidgets.session._images import image_thumbnails
from geowidgets.session._memo import Memo, model_lock
from geowidgets.session._tasks import (
    TASKS,
    AddedSamples,
    PredictionModel,
    as_metadata,
    metadata_colorings,
    resolve_task,
)

if TYPE_CHECKING:
    import pandas as pd

    from geowidgets.geometry import (
        DecisionSlice,
        DeviationProfile,
        DeviationTables,
        KNNDeviation,
        KNNGraph,
        TemperatureScores,
    )
    from geowidgets.probe import Activations

__all__ = ["Session", "INPUT_LAYER"]

#: Name used for "the model's input" where a layer is expected (decision slices).
INPUT_LAYER = "input"
#: Colorings that need labels.
_NEEDS_LABELS = ("label", "correct", "knn_agreement")
#: Colorings that need regression targets.
_NEEDS_TARGETS = ("target", "abs_error")


@dataclasses.dataclass(frozen=True)
class Landmarks:
    """Some samples' activations (see :meth:`Session.landmarks`).

    Attributes
    ----------
    rows : numpy.ndarray
        int64 ``[M]``: the samples' indices, sorted.
    features : dict of str to Tensor
        Layer name → float32 ``[M, D]`` (row i is sample ``rows[i]``).
    outputs : Tensor or None
        The model's output ``[M, W]``, None if it has none per sample.
    shapes : dict of str to tuple
        Each layer's unpooled output shape without the batch dimension.
    """

    rows: np.ndarray
    features: dict[str, torch.Tensor]
    outputs: torch.Tensor | None
    shapes: dict[str, tuple]


@dataclasses.dataclass(frozen=True)
class LandmarkPicture:
    """A layer's first picture drawn from landmarks (see :meth:`Session.landmark_picture`).

    ``positions`` row i is sample ``rows[i]``; ``colors`` covers every sample (or is None).
    """

    rows: np.ndarray
    positions: np.ndarray
    colors: ColorSpec | None


def _pca_layout(X: torch.Tensor) -> np.ndarray:
    """PCA layout float32 ``[N, 2]``; a one-feature layer (a regressor's output) along x, centred."""
    from geowidgets import geometry as geo

    if X.shape[1] < 2:
        x = X[:, 0].double().numpy()
        return np.stack([x - x.mean(), np.zeros_like(x)], 1).astype(np.float32)
    return np.asarray(geo.embed(X, method="pca"), dtype=np.float32)


def _carries_attention_mask(inputs: Any, attention_mask: Any) -> bool:
    """True when the inputs' first batch carries an attention mask (a tokenizer batch, a mask given beside them)."""
    if attention_mask is not None:
        return True
    if isinstance(inputs, Mapping):
        return _MASK_KEY in inputs
    if not isinstance(inputs, (DataLoader, Dataset)):
        return False
    try:  # a Dataset's first item or a DataLoader's first batch: what the shapes' peek loads anyway
        batches, _, _ = _batches(inputs, 1)
        _, _, mask = next(iter(batches))
    except Exception:  # empty or unreadable inputs: the capture reports them with its own message
        return False
    return mask is not None


def _regression_targets(labels: Any, n: int) -> np.ndarray:
    """A regression's targets as float64 ``[n]``: one finite number per row, checked like class labels."""
    name = "labels (the regression targets)"
    arr = label_array(labels, n, name)  # 1-D, length n, no None/NaN/pd.NA (the first one named)
    try:
        targets = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers, got dtype {arr.dtype}") from None
    bad = ~np.isfinite(targets)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        count = int(bad.sum())
        raise ValueError(f"{name}[{i}] is {targets[i]}: every target must be a finite number ({count} are not)")
    return targets


def _default_layer_shapes(probe: Probe, inputs: Any, attention_mask: Any) -> tuple[int, Any, dict[str, tuple]] | None:
    """Each of the probe's layers' full output shape (batch dim included) on the first one or two samples.

    Returns ``(samples in that batch, its attention mask or None, {layer: shape})``, read off
    :func:`~geowidgets.probe.list_layers`; None when the samples cannot be taken on their own (then
    the capture itself says which layer does not fit). A layer that did not run is missing.
    """
    from geowidgets.probe import list_layers
    from geowidgets.probe._capture import _forward_input, _model_float_dtype, _n_samples, _to_device, model_device

    try:
        part = take_rows(inputs, [0, 1], attention_mask)
    except IndexError:  # one sample (in token mode, its tokens may still be rows enough)
        part = take_rows(inputs, [0], attention_mask)
    if part is None:
        return None
    sub, sub_mask = part
    batch, _, mask = next(iter(_batches(sub, 2, sub_mask)[0]))  # the first (and only) batch
    model = probe.model
    x = _forward_input(model, _to_device(batch, model_device(model), _model_float_dtype(model)))
    example = x if isinstance(x, dict) else (x,)  # called as the capture calls it: model(**x) or model(x)
    with model_lock(model):
        infos = list_layers(model, example, select=probe.select)
    return _n_samples(batch, "a batch"), mask, {info.name: info.output_shape for info in infos}


def _usable_default_layers(probe: Probe, inputs: Any, attention_mask: Any, token_mode: bool) -> dict[str, str]:
    """The default layers a session cannot use, each with why: not one row per sample, or (token mode) not a sequence.

    A top-level ``nn.Embedding`` of positions called on ``arange(L)`` gives ``[L, D]`` whatever the
    batch; a class head gives ``[B, C]``, which token mode cannot split into tokens.
    """
    probed = _default_layer_shapes(probe, inputs, attention_mask)
    if probed is None:
        return {}
    b, mask, shapes = probed
    lengths = [shape[1] for shape in shapes.values() if len(shape) == 3 and shape[0] == b]
    length = mask.shape[1] if mask is not None else max(set(lengths), key=lengths.count, default=None)
    out: dict[str, str] = {}
    for name in probe.layers:
        shape = shapes.get(name)
        if shape is None:
            continue  # did not run: the capture says so
        if not shape or shape[0] != b:
            out[name] = f"{list(shape)} for a batch of {b}, not one row per sample"
        elif token_mode and not (len(shape) == 3 and shape[1] == length):
            out[name] = f"{list(shape[1:])} per sample, not a token sequence"
    return out


def _left_out_text(left_out: dict[str, str]) -> str:
    """``name (why), ...`` of the default layers a session left out."""
    return "; ".join(f"{name} {why}" for name, why in left_out.items())


def _no_plane_message(space: torch.Tensor, anchors: tuple[int, ...], layer: str) -> str:
    """Why three samples span no plane in ``space`` (a layer's rows, or the flattened inputs), and what to do."""
    from geowidgets.geometry._knn import _all_rows_equal

    where = "the inputs" if layer == INPUT_LAYER else f"layer {layer!r}"
    if _all_rows_equal(space):
        return (
            f"every sample has the same values in {where} (a constant layer: e.g. zeroed weights or a dead ReLU), "
            "so no three samples span a plane there; slice another layer"
        )
    a, b, c = anchors
    same = [(i, j) for i, j in ((a, b), (a, c), (b, c)) if torch.equal(space[i], space[j])]
    if same:
        i, j = same[0]
        return (
            f"samples {i} and {j} have the same values in {where}, so anchors {anchors} span no plane; "
            "pick anchors that differ there"
        )
    return f"anchors {anchors} lie on one line in {where}, so they span no plane; pick other anchors"


class Session(BoundaryGeometry):
    """A model, its data and a cache of every per-layer result the views show.

    Pass a session to any view (``gw.EmbeddingView(session)``, ``gw.SliceView(session)``...) to
    make it live: its sliders then ask the session, which answers from cache or by re-slicing a
    cached geometry result. Several views on one session share every computation; the
    :class:`~geowidgets.Explorer` builds one (``Explorer.from_session`` takes yours). Every
    public method is thread-safe (the views call them from worker threads); ``revision`` counts
    the answers given.

    Parameters
    ----------
    model : nn.Module
        A classifier whose output is logits ``[N, C]``.
    inputs : Tensor, ndarray or sized Dataset
        The samples, ``[N, ...]`` as the model takes them.
    labels : array-like, optional
        True class per sample (``[N]``): integer class indices (the model's output columns, so
        label 5 is column 5 even if classes 0-4 are absent), or strings listed in
        ``class_names``. A list, numpy array, tensor, pandas Series or Categorical. Without
        labels the reference set for deviations is every sample and ``"label"``/``"correct"``
        colorings are unavailable. Missing labels (None, NaN) raise ``ValueError``. None: the
        labels the inputs carry, if any (``y`` of a Dataset's or DataLoader's ``(x, y)`` items, or a
        mapping's ``labels``/``label`` entry with one value per sample).
    layers : list of str, optional
        Layers to explore (names in ``model.named_modules()``); None: the outputs of the model's
        blocks (:func:`~geowidgets.probe.default_layers`: top-level children, without Dropout,
        Identity or Flatten duplicates, a conv/norm/activation/pool run as one block), which
        ``layer_note`` reports.
    pooling : str or dict of str to str, optional
        How a layer output with more than two dims becomes one row per sample (see
        :class:`~geowidgets.probe.Probe`). None: ``"mean"`` (a conv map's mean over space; a token
        layer's mean over the real tokens when the inputs carry an attention mask) with the default
        layers, and with layers you name when the inputs carry an attention mask; otherwise
        ``"flatten"`` with layers you name.
    reference : array-like of bool, optional
        Trusted samples for kNN deviation (e.g. the training mask). The reference set is
        ``reference & correctly classified``; default all samples, correctly classified.
    k_max : int
        Largest neighbour count any slider may ask for; graphs and deviation tables are built
        once at this k.
    class_names : list of str, optional
        Names of the model's output columns, in order (default ``"0"``, ``"1"``...). Needed
        when the labels are strings.
    images : array-like, optional
        ``[N, H, W]`` images for hover thumbnails; default the inputs if they look like images.
    device : str
        Device for capture (see :class:`~geowidgets.probe.Probe`).
    metric : {"euclidean", "cosine"}
        Distance used for neighbours and deviations.
    batch_size : int
        Samples per forward pass during capture.

    Raises
    ------
    ValueError
        ``k_max`` not a positive integer, fewer than 3 samples, a reference that is not a bool
        mask ``[N]``, or labels that are not class indices / names.

    Examples
    --------
    >>> import geowidgets as gw
    >>> demo = gw.datasets.toy_demo("moons", n=300)
    >>> session = gw.Session(demo.model, demo.inputs, demo.labels, layers=demo.layers, k_max=20)
    >>> session.deviation(demo.layers[0], k=10).z.shape
    (300,)
    >>> session.color_values("confidence", temperature=2.0).vmax
    1.0
    >>> view = gw.EmbeddingView(session, method="pca")  # live: k / temperature / layer follow
    """

    #: Padding of a decision slice's frame on each side, as a fraction of the span of the samples'
    #: projections (``geo.decision_slice``'s ``margin``): small, so the data fill the picture.
    SLICE_MARGIN: float = 0.05
    #: Samples captured up front (at random, seeded) to learn the model's output and layer shapes,
    #: so that building a view never waits for the whole capture (see :meth:`landmarks`).
    SHAPE_ROWS: int = 8
    #: Most landmarks of a layer's first picture while the whole set is captured (see :attr:`preview_rows`).
    PREVIEW_ROWS: int = 2048
    #: Fewest landmarks of a first picture, however slow the model.
    MIN_PREVIEW_ROWS: int = 256
    #: Time the landmarks' capture aims at, from the model's measured time per sample (seconds).
    PREVIEW_SECONDS: float = 0.5

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor | np.ndarray | Sequence,
        labels: ArrayLike | None = None,
        layers: list[str] | None = None,
        *,
        reference: ArrayLike | None = None,
        k_max: int = 50,
        class_names: list[str] | None = None,
        images: ArrayLike | None = None,
        device: str = "auto",
        metric: str = "euclidean",
        batch_size: int = 256,
        pooling: str | dict[str, str] | None = None,
        task: str = "auto",
        output: str | int | Callable[[Any], torch.Tensor] | None = None,
        head: nn.Module | None = None,
        metadata: pd.DataFrame | None = None,
        texts: Sequence[str] | None = None,
        attention_mask: torch.Tensor | np.ndarray | None = None,
    ):
        if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1:
            raise ValueError(f"k_max must be a positive integer, got {k_max!r}")
        self.model = model
        # A shuffling DataLoader is read in its dataset's order: its rows then match per-sample values given beside it.
        inputs = in_dataset_order(inputs)
        if not reads_in_order(inputs):
            given = [
                name
                for name, value in (
                    ("labels", labels),
                    ("reference", reference),
                    ("images", images),
                    ("metadata", metadata),
                    ("texts", texts),
                )
                if value is not None
            ]
            if given:
                raise ValueError(
                    f"this DataLoader does not read its dataset in order (a custom sampler or batch_sampler), so "
                    f"its rows cannot be matched to the {', '.join(given)} given beside it. Pass a DataLoader "
                    "with a sequential sampler (shuffle=False), or let the loader yield the labels as (x, y)"
                )
        self.inputs = inputs
        chosen = layers is None
        if chosen:
            layers = default_layers(model)
        if pooling is None:
            # Named layers keep every value (flatten), unless the inputs carry an attention mask:
            # flattening a token layer would mix the padding positions into every row.
            pooling = "mean" if chosen or _carries_attention_mask(inputs, attention_mask) else "flatten"
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self._task_arg = task
        self._task: str | None = task if task == "embedding" and head is None else None
        # The model as the session runs it: its prediction tensor picked by output=, then head= if given.
        self.prediction_model = PredictionModel(model, output, head)
        self._attention_mask = attention_mask
        self.probe = Probe(self.prediction_model, layers, device=device, pooling=pooling)
        #: Default layers left out, each with why: its output is not one row per sample (a position
        #: embedding called on ``arange(L)``), or in token mode not a token sequence (a class head).
        self.left_out: dict[str, str] = {}
        if chosen:
            self.left_out = _usable_default_layers(self.probe, inputs, attention_mask, pooling == "tokens")
            keep = [name for name in self.probe.layers if name not in self.left_out]
            if not keep:
                what = "a token sequence [B, L, D]" if pooling == "tokens" else "one row per sample"
                raise ValueError(
                    f"none of the model's default layers ({', '.join(self.probe.layers)}) outputs {what}; "
                    "name the layers to explore with layers=[...]"
                )
            if self.left_out:
                self.probe = Probe(self.prediction_model, keep, device=device, pooling=pooling)
        self._layers_chosen = chosen
        self._layer_note: str | None = None if chosen else ""
        self.layers: list[str] = list(self.probe.layers)
        self.metric = metric
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._acts: Activations | None = None
        #: Called as ``listener(done_samples, total_samples)`` on the capturing thread while
        #: :meth:`activations` captures (a view waiting for the capture shows a determinate bar).
        self.capture_listeners: list[Callable[[int, int | None], None]] = []
        #: ``(done_samples, total_samples)`` of the capture under way, else None.
        self.capture_progress: tuple[int, int | None] | None = None
        self._landmarks: dict[int, Landmarks] = {}
        self._landmark_lock = threading.Lock()
        self._seconds_per_sample: float | None = None  # the model's time per sample (from the shapes' probe)
        self._logits_np: np.ndarray | None = None
        self._predictions: np.ndarray | None = None
        self._reference: np.ndarray | None = None
        self.revision = 0
        self._memo = {name: Memo() for name in ("graph", "tables", "layout", "profile", "slice")}
        self._small = {
            name: Memo(maxsize=64) for name in ("temperature", "deviation", "agreement", "deviation_profile", "custom")
        }
        self._small["scores"] = Memo(maxsize=8)  # TemperatureScores keep their intermediates: few of them
        self._colorings: dict[str, tuple] = {}
        self.added: dict[str, AddedSamples] = {}
        self.n_samples = self._n_inputs(inputs)
        #: Token mode (``pooling="tokens"``): one row per real token, indexed by this DataFrame
        #: (``sample``, ``position``, ``token``); None otherwise. The session's N is then the token count.
        self.tokens: pd.DataFrame | None = None
        token_mode = any(p == "tokens" for p in self.probe.pooling.values())
        if labels is None and isinstance(inputs, Mapping):  # a tokenizer batch with its labels: one per sample
            carried = next((cast(Mapping, inputs)[key] for key in _LABEL_KEYS if key in inputs), None)
            if carried is not None and np.ndim(carried) == 1 and len(carried) == self.n_samples:
                labels = carried
        if token_mode or (labels is None and isinstance(inputs, (Dataset, DataLoader))):
            acts = self.activations()  # token rows or the loader's labels are known only after the capture
            self.tokens = acts.tokens
            if labels is None and acts.labels is not None and not token_mode:
                labels = acts.labels
        n = self.n_samples if self.tokens is None else len(self.tokens)
        if n < 3:
            raise ValueError(f"a session needs at least 3 samples, got {n}")
        self.n = n
        self._class_names = None if class_names is None else [str(c) for c in class_names]
        labels = self._per_row(labels, "labels")
        # Regression: the labels are the targets (float); otherwise class indices (output columns),
        # checked against the output width once the logits exist; strings are looked up in class_names.
        self.targets: np.ndarray | None = None
        if task == "regression" and labels is not None:
            self.targets = _regression_targets(labels, n)
            labels = None
        self.labels: np.ndarray | None = (
            None if labels is None else as_class_indices(labels, n, class_names=self._class_names)
        )
        self._labels_checked = labels is None
        self._reference_arg = (
            None if reference is None else self._as_mask(self._per_row(reference, "reference"), "reference")
        )
        self.images = (
            None
            if self.tokens is not None
            else image_thumbnails(images if images is not None else self._image_like(inputs), n)
        )
        meta = as_metadata(metadata, self.n_samples if self.tokens is not None else n)
        if self.tokens is not None:
            token_columns = self.tokens.reset_index(drop=True)
            if meta is not None:
                meta = meta.iloc[self.tokens["sample"].to_numpy()].reset_index(drop=True)
                token_columns = token_columns.drop(columns=[c for c in token_columns if c in meta.columns])
            if meta is None:
                meta = token_columns
            else:
                import pandas as pd

                meta = pd.concat([token_columns, meta], axis=1)
        clash = [] if meta is None else [c for c in meta.columns if c in (*COLOR_BY, *_NEEDS_TARGETS)]
        if clash:
            raise ValueError(f"metadata columns {clash} clash with built-in colorings; rename them")
        #: Per-sample metadata (a DataFrame of N rows; in token mode with sample/position/token columns).
        self.metadata = meta
        self._meta_specs: dict[str, ColorSpec] | None = None
        if texts is not None:
            texts = [str(t) for t in texts]
            if len(texts) != self.n_samples:
                raise ValueError(f"texts must hold one string per sample ({self.n_samples}), got {len(texts)}")
            if self.tokens is not None:
                texts = [texts[i] for i in self.tokens["sample"].to_numpy()]
        #: Hover text per row (None without ``texts=``).
        self.texts: list[str] | None = texts
        if k_max > n - 2:  # k neighbours of a sample need k other samples, plus one for the baseline's spread
            warnings.warn(f"k_max={k_max} is more than {n} samples allow; using k_max={n - 2}", stacklevel=2)
        self.k_max = min(k_max, n - 2)

    # ------------------------------------------------------------------ data
    def _per_row(self, values: Any, name: str) -> Any:
        """Per-sample values as one per row: in token mode, ``[n_samples]`` values are repeated per token."""
        if values is None or self.tokens is None:
            return values
        arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        if arr.shape[:1] == (len(self.tokens),):
            return arr
        if arr.shape[:1] != (self.n_samples,):
            raise ValueError(
                f"{name} must have one entry per sample ({self.n_samples}) or per token row ({len(self.tokens)}), "
                f"got shape {arr.shape}"
            )
        return arr[self.tokens["sample"].to_numpy()]

    @staticmethod
    def _n_inputs(inputs: Any) -> int:
        """Number of samples, counted as the probe batches them (a mapping's N, not its number of keys)."""
        _, _, n = iterate_batches(inputs, 1)  # checks the input kind; nothing runs yet
        if n is None:
            raise ValueError(
                "a session needs to know its number of samples up front; these inputs (an iterable-style Dataset "
                "or a DataLoader with a custom batch_sampler) do not tell it: pass a Tensor, a mapping of "
                "Tensors, a sized Dataset or a DataLoader over one"
            )
        return n

    @staticmethod
    def _image_like(inputs: Any) -> Any:
        if isinstance(inputs, (torch.Tensor, np.ndarray)) and inputs.ndim in (3, 4):
            return inputs
        return None

    def _as_mask(self, mask: ArrayLike, name: str) -> np.ndarray:
        arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if arr.dtype != bool or arr.shape != (self.n,):
            raise ValueError(f"{name} must be a bool mask of shape ({self.n},), got {arr.dtype} {arr.shape}")
        return arr

    def _answer(self, value: Any) -> Any:
        with self._lock:
            self.revision += 1
        return value

    def check_layer(self, layer: str | None, *, allow_input: bool = False) -> str:
        """Return ``layer`` if the session knows it, else raise ``KeyError`` listing the layers."""
        if layer is None:
            raise ValueError(f"this needs a layer: one of {self.layers}")
        if allow_input and layer == INPUT_LAYER:
            return layer
        if layer not in self.layers:
            extra = f" or {INPUT_LAYER!r}" if allow_input else ""
            raise KeyError(f"unknown layer {layer!r}; this session has layers {self.layers}{extra}")
        return layer

    def unpatchable_reason(self, layer: str) -> str:
        """Why a slice or MixUp path cannot replace ``layer``'s output (see :meth:`patchable`); empty if it can."""
        if self.patchable(layer):
            return ""
        shape = self._peek().shapes.get(layer)
        pooling = self.probe.pooling.get(layer, "flatten")
        if shape is not None and int(np.prod(shape)) < 2:
            return f"{layer}'s output has one value per sample, and a plane needs two dimensions"
        return (
            f"{layer}'s output {list(shape) if shape else ''} is pooled ({pooling!r}) into its features, so a "
            "plane's points cannot be put back into it"
        )

    @property
    def input_space_reason(self) -> str:
        """Why the inputs have no space to lay a plane in (a mapping, a Dataset or DataLoader); empty if they have."""
        if isinstance(self.inputs, Mapping):
            return "the inputs are a mapping of keyword arguments (model(**batch)), not one tensor"
        if isinstance(self.inputs, (Dataset, DataLoader)):
            return "the inputs are a Dataset/DataLoader, not one stacked tensor"
        return ""

    def patchable(self, layer: str) -> bool:
        """True if a slice or MixUp path can replace ``layer``'s output with points of its feature space.

        That needs the features to be the layer's whole output, unpooled (a conv map averaged over
        its positions cannot be put back), with at least two values per sample (a plane needs two
        dimensions).
        """
        peek = self._peek()
        shape = peek.shapes.get(self.check_layer(layer))
        features = peek.features[layer]
        width = int(features.reshape(features.shape[0], -1).shape[1])
        return shape is not None and width >= 2 and width == int(np.prod(shape))

    def check_k(self, k: int) -> int:
        """Return ``k`` if ``1 <= k <= k_max``, else raise ``ValueError``."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.k_max:
            raise ValueError(f"k must be an integer in [1, {self.k_max}] (k_max of this session), got {k!r}")
        return int(k)

    @staticmethod
    def check_temperature(temperature: float) -> float:
        """Return ``temperature`` as a float if finite and > 0, else raise ``ValueError``."""
        return check_positive(temperature, "temperature")

    @property
    def captured(self) -> bool:
        """True once the activations have been captured."""
        return self._acts is not None

    def activations(self) -> Activations:
        """All layers' activations (captured on first use), an :class:`~geowidgets.probe.Activations`.

        While capturing, each batch is reported to :attr:`capture_listeners` and kept in
        :attr:`capture_progress`.
        """
        if self._acts is None and "n" in vars(self) and self._addressable():  # (not while __init__ reads labels)
            # The few samples that tell the shapes first: asked for later (e.g. by a view's coloring on
            # the kernel's thread) they would otherwise wait for the model, held by the whole capture.
            self._peek()
        if self._acts is None:
            with self._lock:
                if self._acts is None:
                    try:
                        with model_lock(self.model):
                            acts = self.probe.capture(
                                self.inputs,
                                batch_size=self.batch_size,
                                progress=self._report_capture,
                                attention_mask=self._attention_mask,
                            )
                        self._check_rows(acts)
                        self._acts = acts
                    finally:
                        self.capture_progress = None
        return self._acts

    @property
    def layer_note(self) -> str:
        """One line on how the layers were chosen and which were pooled (empty when the layers were given).

        Names the layers whose output is a map or a sequence (more than one dim per sample) and
        their pooling, read off the shapes' probe; a layer that is already one vector per sample
        is not pooled, and the note does not say it is.
        """
        if self._layer_note is None and self.tokens is not None:
            n = len(self.layers)
            which = "block that outputs a token sequence" if n == 1 else "blocks that output token sequences"
            note = f"layers: the model's {n} {which}, a row per real token"
            if self.left_out:
                note += f" (left out: {_left_out_text(self.left_out)})"
            self._layer_note = note + "; pass layers=[...] to change"
            logging.getLogger("geowidgets").info(self._layer_note)
        if self._layer_note is None:
            if self._acts is not None or self._addressable():
                shapes = self._acts.shapes if self._acts is not None else self._peek().shapes
                pooled = [name for name in self.layers if len(shapes.get(name, ())) >= 2]
            else:  # shapes unknown before the capture: every layer may be a map
                pooled = list(self.layers)
            n = len(self.layers)
            note = f"layers: the outputs of the model's {n} block{'s' if n != 1 else ''} (no Dropout/Identity/Flatten)"
            if self.left_out:
                note += f", left out: {_left_out_text(self.left_out)}"
            if pooled:
                kinds = sorted({self.probe.pooling[name] for name in pooled})
                how = f"pooled by {kinds[0]!r}" if len(kinds) == 1 else "pooled"
                shown = ", ".join(pooled[:3]) + (f" and {len(pooled) - 3} more" if len(pooled) > 3 else "")
                note += f"; maps and sequences {how} ({shown}); pass layers=[...] or pooling=... to change"
            else:
                note += ", each one vector per sample; pass layers=[...] to change"
            self._layer_note = note
            logging.getLogger("geowidgets").info(note)
        return self._layer_note

    def _check_rows(self, acts: Activations) -> None:
        """Every layer holds one row per sample (per real token in token mode): the views index them by sample."""
        expected = len(acts.tokens) if acts.tokens is not None else getattr(self, "n_samples", None)
        if expected is None:
            return
        wrong = {name: int(acts[name].shape[0]) for name in self.layers if int(acts[name].shape[0]) != expected}
        if wrong:
            raise RuntimeError(
                f"the capture holds {wrong} rows per layer for {expected} samples; every layer must give one row per "
                "sample. Please report this with the model and the inputs' type"
            )

    def _report_capture(self, done: int, total: int | None) -> None:
        self.capture_progress = (done, total)
        for listener in list(self.capture_listeners):
            try:
                listener(done, total)
            except Exception:  # noqa: BLE001 - a progress display must not stop the capture
                pass

    def features(self, layer: str) -> torch.Tensor:
        """Layer activations ``[N, D]`` (float32, CPU)."""
        return self.activations()[self.check_layer(layer)]

    def landmarks(self, m: int) -> Landmarks:
        """Activations of ``m`` samples drawn at random (seeded), captured without the rest.

        What a first picture is drawn from while the whole set is still being captured, and how
        the session learns the model's output and layer shapes up front (:attr:`task`,
        :meth:`patchable`) without capturing every sample. The model runs in eval mode, so each
        landmark's rows equal the same rows of the full capture. Once the full capture exists (or
        when the inputs cannot be addressed row by row: an iterable-style Dataset, a DataLoader
        with a non-sequential sampler), the rows are read from the full capture instead.

        Parameters
        ----------
        m : int
            Number of landmarks (all rows when ``m >= N``).

        Returns
        -------
        Landmarks
            ``rows`` (int64 ``[M]``, sorted), ``features`` (layer → float32 ``[M, D]``),
            ``outputs`` (``[M, W]`` or None) and ``shapes`` (each layer's unpooled output shape).
        """
        m = max(1, min(int(m), self.n))
        with self._landmark_lock:  # a second caller waits for the first's capture
            cached = self._landmarks.get(m)
            if cached is None:
                cached = self._landmarks[m] = self._capture_landmarks(m)
            return cached

    def _capture_landmarks(self, m: int) -> Landmarks:
        rows = np.sort(np.random.default_rng(0).choice(self.n, size=m, replace=False)).astype(np.int64)
        part = None if self.captured or self.tokens is not None else take_rows(self.inputs, rows, self._attention_mask)
        if part is None:
            acts = self.activations()
            t = torch.as_tensor(rows)
            out = self.outputs
            found = Landmarks(
                rows, {name: acts[name][t] for name in self.layers}, None if out is None else out[t], dict(acts.shapes)
            )
        else:
            inputs, mask = part
            clock: list[float] = []  # when the forward passes started and ended (the model's own time)
            with model_lock(self.model):
                acts = self.probe.capture(
                    inputs,
                    batch_size=self.batch_size,
                    progress=lambda done, total: clock.append(time.perf_counter()),
                    attention_mask=mask,
                )
            if len(clock) >= 2 and self._seconds_per_sample is None:
                self._seconds_per_sample = (clock[-1] - clock[0]) / m
            found = Landmarks(rows, {name: acts[name] for name in self.layers}, acts.outputs, dict(acts.shapes))
        return found

    @property
    def preview_rows(self) -> int:
        """Landmarks of a layer's first picture: as many as the model runs in :attr:`PREVIEW_SECONDS`.

        Measured on the few samples that tell the shapes (:attr:`SHAPE_ROWS`), within
        ``[MIN_PREVIEW_ROWS, PREVIEW_ROWS]`` and at most N: 2,048 for a small MLP, a few hundred
        for a CNN whose forward pass takes milliseconds per sample on the CPU.
        """
        if self._seconds_per_sample is None and not self.captured and self._addressable():
            self._peek()  # times the model on the few samples that tell the shapes
        per_sample = self._seconds_per_sample
        fits = self.PREVIEW_ROWS if not per_sample else int(self.PREVIEW_SECONDS / per_sample)
        rows = max(min(fits, self.PREVIEW_ROWS), min(self.MIN_PREVIEW_ROWS, self.PREVIEW_ROWS))
        return min(rows, self.n)

    def _addressable(self) -> bool:
        """True if some samples can be captured without the rest (not token rows; see ``take_rows``)."""
        token_mode = any(p == "tokens" for p in self.probe.pooling.values())
        return not token_mode and take_rows(self.inputs, [0], self._attention_mask) is not None

    def _peek(self) -> Landmarks:
        """A few samples' activations: the output and layer shapes, known without the full capture."""
        return self.landmarks(self.SHAPE_ROWS)

    @property
    def outputs(self) -> torch.Tensor | None:
        """The model's prediction per row ``[N, W]`` (float32, CPU; see ``output=``), None if it has none.

        In token mode a sequence output ``[n_samples, L, V]`` (next-token logits) is read at each
        token row's position; a per-sample output (a sequence classifier's logits ``[n_samples, C]``)
        is repeated for each of the sample's tokens, as per-sample labels are. An output whose shape
        per sample is unknown (a store written before it was recorded) gives None.
        """
        acts = self.activations()
        out = acts.outputs
        if out is None or self.tokens is None:
            return out
        shape = acts.output_shape
        sample = torch.as_tensor(self.tokens["sample"].to_numpy().copy())
        length = next(iter(acts.shapes.values()))[0] if acts.shapes else None
        if shape is None:
            return None
        if len(shape) >= 2 and shape[0] == length:  # one output per position: read at each token's own
            position = torch.as_tensor(self.tokens["position"].to_numpy().copy())
            return out.reshape(out.shape[0], length, -1)[sample, position]
        return out[sample]

    @property
    def task(self) -> str:
        """``"classification"``, ``"regression"`` or ``"embedding"`` (``"auto"`` resolved on the captured outputs)."""
        if self._task is None:
            task = self._task_arg
            if self.prediction_model.head is not None and task in ("auto", "embedding"):
                task = "classification"  # the head maps the features to logits
            self._task = resolve_task(task, self.outputs if self.captured else self._output_like())
        return self._task

    def _output_like(self) -> torch.Tensor | None:
        """A data-less tensor shaped and typed like :attr:`outputs` (from a few samples, no full capture)."""
        out = self._peek().outputs
        return None if out is None else torch.empty((self.n, *out.shape[1:]), dtype=out.dtype, device="meta")

    def _output_width(self) -> int:
        """Columns of the model's output per row (from a few samples before the full capture)."""
        out = self.outputs if self.captured else self._peek().outputs
        return 0 if out is None else int(out.reshape(out.shape[0], -1).shape[1])

    @property
    def has_logits(self) -> bool:
        """True for a classifier (logits ``[N, C>=2]``): the slice, temperature and class colorings apply."""
        return self.task == "classification"

    @property
    def logits(self) -> torch.Tensor:
        """The model's outputs ``[N, C]`` (float32, CPU)."""
        if self.task != "classification":
            raise ValueError(
                f"this session's task is {self.task!r}: its model has no class logits (pass head= to add a classifier)"
            )
        out = self.outputs
        if out is None or out.ndim != 2 or out.shape[1] < 2:
            shape = None if out is None else tuple(out.shape)
            raise ValueError(f"the model's output must be logits [N, C] with C >= 2, got shape {shape}")
        if not self._labels_checked:
            as_class_indices(self.labels, self.n, n_classes=int(out.shape[1]), class_names=self._class_names)
            self._labels_checked = True
        return out

    @property
    def logits_numpy(self) -> np.ndarray:
        """The logits as a float32 numpy array (held for temperature moves)."""
        if self._logits_np is None:
            self._logits_np = np.ascontiguousarray(self.logits.numpy(), dtype=np.float32)
        return self._logits_np

    @property
    def predictions(self) -> np.ndarray | None:
        """Predicted class per sample (argmax of the logits), int64 ``[N]``; regression: the predicted value
        (float64 ``[N]``); embedding: None."""
        if self._predictions is None:
            if self.task == "embedding":
                return None
            if self.task == "regression":
                out = self.outputs
                assert out is not None  # resolve_task gave "regression" for a one-value output
                self._predictions = out.numpy().reshape(self.n).astype(np.float64)
            else:
                self._predictions = self.logits_numpy.argmax(1).astype(np.int64)
        return self._predictions

    @property
    def class_names(self) -> list[str]:
        """Display names of the classes (embedding: of the label codes; regression: none)."""
        if self._class_names is not None:
            return self._class_names
        if self.task == "classification":
            width = self.logits.shape[1] if self.captured else self._output_width()
            return [str(c) for c in range(width)]
        return [] if self.labels is None else [str(c) for c in range(int(self.labels.max(initial=0)) + 1)]

    @property
    def correct(self) -> np.ndarray | None:
        """Bool ``[N]``: prediction equals label (None without labels, or without class logits)."""
        if self.labels is None or self.task != "classification":
            return None
        # predictions check the labels against the output width
        return np.asarray(self.predictions == self.labels, dtype=bool)

    @property
    def reference_mask(self) -> np.ndarray:
        """Bool ``[N]``: the trusted samples kNN deviations are measured against."""
        if self._reference is not None:
            return self._reference
        mask = np.ones(self.n, dtype=bool) if self._reference_arg is None else self._reference_arg.copy()
        if self.correct is not None:
            mask &= self.correct
        if mask.sum() < self.k_max + 2:
            raise ValueError(
                f"only {int(mask.sum())} reference samples (trusted and correctly classified); "
                f"need at least k_max + 2 = {self.k_max + 2}: pass a smaller k_max= (at most "
                f"{max(int(mask.sum()) - 2, 1)}), or reference= a larger mask of trusted samples"
            )
        self._reference = mask
        return mask

    # ------------------------------------------------------------------ neighbours and deviation
    def knn_graph(self, layer: str) -> KNNGraph:
        """The layer's kNN graph (computed once): the layer's one neighbour search.

        It holds ``k_max`` neighbours plus enough extra ones to read the deviation tables off it
        (:meth:`deviation_tables`): about twice the non-reference samples expected among a
        sample's ``k_max`` neighbours, ``ceil(2·k_max·n_out/n_ref) + 4``, capped at ``N − 1``.
        Every k-dependent view slices it (``graph.slice(k)`` for any ``k <= k_max``).
        """
        from geowidgets import geometry as geo

        X = self.features(layer)

        def build() -> KNNGraph:
            try:
                n_ref = int(self.reference_mask.sum())
            except ValueError:  # too few reference samples: the tables will say so; no extra neighbours
                n_ref = self.n
            extra = math.ceil(2 * self.k_max * (self.n - n_ref) / max(n_ref, 1)) + 4 if n_ref < self.n else 0
            return geo.knn_graph(X, min(self.k_max + extra, self.n - 1), metric=self.metric)  # type: ignore[arg-type]

        return self._memo["graph"].get(layer, build)

    def has_graph(self, layer: str) -> bool:
        """True if the layer's kNN graph is cached (so k moves are cheap)."""
        return layer in self._memo["graph"]

    def deviation_tables(self, layer: str) -> DeviationTables:
        """The layer's cached deviation tables at ``k_max``, read off its kNN graph (``DeviationTables.from_graph``).

        Every sample is scored against the reference set (:attr:`reference_mask`); reference
        samples by their leave-one-out baseline, so no sample counts itself as a neighbour. The
        tables equal ``DeviationTables.from_samples`` but reuse :meth:`knn_graph` instead of a
        second search (rows with too few reference neighbours in the graph are searched exactly
        against the reference). Results are numpy.
        """
        from geowidgets.geometry import DeviationTables

        X = self.features(layer)

        def build():
            mask = self.reference_mask
            tables = DeviationTables.from_graph(X, mask, self.knn_graph(layer), self.k_max, metric=self.metric)
            numpy_kind = ArrayKind(is_numpy=True, device=torch.device("cpu"), dtype=tables.kind.dtype)
            return dataclasses.replace(tables, kind=numpy_kind)

        return self._memo["tables"].get(layer, build)

    def has_tables(self, layer: str) -> bool:
        """True if the layer's deviation tables are cached (so k moves only re-read running sums)."""
        return layer in self._memo["tables"]

    def deviation(self, layer: str, k: int) -> KNNDeviation:
        """kNN deviation of every sample from the reference set at ``k`` (docs/probes.md#knn-deviation).

        The layer's :meth:`deviation_tables` re-read at ``k`` (no percentile): ``distance`` and
        ``z`` are float32 ``[N]``, ``baseline`` the reference samples' leave-one-out values.
        """
        k = self.check_k(k)
        tables = self.deviation_tables(self.check_layer(layer))
        return self._answer(self._small["deviation"].get((layer, k), lambda: tables.result(k, percentile=False)))

    def deviation_profile(self, k: int, threshold: float = 2.0) -> DeviationProfile:
        """Deviation of every sample at every layer, with divergence layers and per-layer AUROC.

        A :class:`~geowidgets.geometry.DeviationProfile` over all N samples (numpy), from the
        layers' cached tables; ``auroc`` compares the misclassified samples' distances with the
        reference baseline (NaN without labels or without mistakes). Cached per k; another
        threshold only re-compares (``with_threshold``).
        """
        from geowidgets.geometry import DeviationProfileTables

        k = self.check_k(k)

        def compute():
            tables = DeviationProfileTables(
                list(self.layers), {layer: self.deviation_tables(layer) for layer in self.layers}, self.k_max
            )
            wrong = np.zeros(self.n, dtype=bool) if self.correct is None else ~self.correct
            return tables.profile(k, threshold=2.0, positives=wrong, percentile=False)

        profile = self._small["deviation_profile"].get(k, compute)
        if float(threshold) != profile.threshold:
            profile = profile.with_threshold(threshold)
        return self._answer(profile)

    def auroc(self, k: int) -> list[float]:
        """Per-layer AUROC of the misclassified samples' deviation vs the reference baseline."""
        return [float(a) for a in self.deviation_profile(k).auroc]

    # ------------------------------------------------------------------ temperature scores
    def scores(self, temperature: float) -> TemperatureScores:
        """``geo.temperature_scores`` of the logits at ``temperature`` (numpy; a rescale, no forward pass)."""
        from geowidgets import geometry as geo

        t = self.check_temperature(temperature)
        logits = self.logits_numpy
        return self._answer(self._small["scores"].get(t, lambda: geo.temperature_scores(logits, t)))

    # ------------------------------------------------------------------ colorings
    def color_values(self, color_by: str, layer: str | None = None, k: int = 10, temperature: float = 1.0) -> ColorSpec:
        """Per-point values for the embedding's coloring (see :data:`COLOR_BY`).

        Parameters
        ----------
        color_by : str
            A built-in coloring or one added with :meth:`add_coloring`.
        layer : str, optional
            The layer (for ``"deviation"``, ``"knn_agreement"`` and added colorings).
        k : int
            Neighbours (k-dependent colorings).
        temperature : float
            Softmax temperature (``"confidence"``, ``"entropy"``, ``"energy"``, ``"margin"``).

        Returns
        -------
        ColorSpec

        Raises
        ------
        ValueError
            Unknown coloring, a coloring that needs labels in a session without them, or a k /
            temperature out of range. ``KeyError`` for an unknown layer.
        """
        if color_by in self._colorings:
            return self._custom_color(color_by, layer, k, temperature)
        if color_by not in self.colorings:
            raise ValueError(f"color_by must be one of {self.colorings}, got {color_by!r}")
        if color_by in _NEEDS_LABELS and self.labels is None:
            raise ValueError(f"color_by={color_by!r} needs labels; this session has none")
        if color_by in _NEEDS_TARGETS and self.targets is None:
            raise ValueError(f"color_by={color_by!r} needs regression targets (labels=); this session has none")
        if color_by in self.metadata_colorings:
            return self.metadata_colorings[color_by]
        if color_by == "label":
            return categorical_coloring(self.labels, self.class_names, "label")
        if self.task == "regression" and color_by in ("target", "prediction", "abs_error"):
            values = {
                "target": self.targets,
                "prediction": self.predictions,
                "abs_error": None if self.targets is None else np.abs(self.predictions - self.targets),
            }[color_by]
            if color_by == "abs_error":
                return value_coloring(values, "continuous", vmin=0.0, name="absolute error")
            assert self.predictions is not None  # a regression session has predictions
            both = self.predictions if self.targets is None else np.concatenate([self.predictions, self.targets])
            return value_coloring(values, "continuous", vmin=float(both.min()), vmax=float(both.max()), name=color_by)
        if color_by == "prediction":
            return categorical_coloring(self.predictions, self.class_names, "prediction")
        if color_by == "correct":
            correct = self.correct
            assert correct is not None  # checked above: the session has labels and class logits
            return categorical_coloring(correct.astype(np.int64), ["wrong", "correct"], "correct")
        if color_by in BOUNDARY_COLORINGS:
            return self.boundary_coloring(color_by, layer, k)
        if color_by == "deviation":
            z = self.deviation(self.check_layer(layer), k).z
            return value_coloring(z, "diverging", vmin=-5.0, vmax=5.0, name="deviation z")
        if color_by == "knn_agreement":
            v = self._agreement(self.check_layer(layer), self.check_k(k))
            return value_coloring(v, "continuous", vmin=0.0, vmax=1.0, name="kNN label agreement")
        if color_by == "neighbourhood_kept":
            from geowidgets.session._neighbours import neighbourhood_kept_coloring

            layer, k = self.check_layer(layer), self.check_k(k)
            compute_kept = lambda: neighbourhood_kept_coloring(self, layer, k)  # noqa: E731
            return self._answer(self._small["agreement"].get(("kept", layer, k), compute_kept))
        from geowidgets import geometry as geo

        t = self.check_temperature(temperature)
        logits = self.logits_numpy

        def compute():
            # Only the asked score is computed (TemperatureScores compute each on first access).
            return temperature_coloring(geo.temperature_scores(logits, t), color_by)

        return self._answer(self._small["temperature"].get((color_by, t), compute))

    def _agreement(self, layer: str, k: int) -> np.ndarray:
        from geowidgets import geometry as geo

        def compute():
            g = self.knn_graph(layer)
            res = geo.knn_label_agreement(self.features(layer), self.labels, k=k, knn=g)
            return np.asarray(res.per_point, dtype=np.float32)

        return self._answer(self._small["agreement"].get((layer, k), compute))

    @property
    def colorings(self) -> list[str]:
        """Every ``color_by`` name this session understands: its task's built-in ones, metadata columns, added ones.

        Classification: :data:`COLOR_BY` (without ``boundary_distance`` in token mode); regression:
        ``target``, ``prediction``, ``abs_error`` and ``deviation``; embedding: ``label``,
        ``deviation`` and ``knn_agreement``.
        """
        built_in = {
            # Token rows are positions of a sequence: no boundary search moves one through the model.
            "classification": [c for c in COLOR_BY if self.tokens is None or c != "boundary_distance"],
            "regression": ["target", "prediction", "abs_error", "deviation"],
            "embedding": ["label", "deviation", "knn_agreement", "neighbourhood_kept"],
        }[self.task]
        return [*built_in, *self.metadata_colorings, *self._colorings]

    def usable_colorings(self) -> list[str]:
        """The :attr:`colorings` this session's data supports (those needing labels or targets only when given)."""
        return [
            c
            for c in self.colorings
            if not (c in _NEEDS_LABELS and self.labels is None)
            and not (c in _NEEDS_TARGETS and self.targets is None)
            or c in self._colorings
            or c in self.metadata_colorings
        ]

    @property
    def metadata_colorings(self) -> dict[str, ColorSpec]:
        """One coloring per metadata column (categorical for object/category/bool columns, else continuous)."""
        if self._meta_specs is None:
            self._meta_specs = metadata_colorings(self.metadata)
        return self._meta_specs

    def add_coloring(
        self,
        name: str,
        fn: Callable[[Session, str, int, float], ArrayLike],
        kind: str = "continuous",
        *,
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> None:
        """Make any per-sample probe available as a coloring of the embedding.

        Parameters
        ----------
        name : str
            The ``color_by`` name (must not clash with a built-in one).
        fn : callable
            ``fn(session, layer, k, temperature)`` returning ``N`` finite values (array or tensor).
            Results are memoised per (name, layer, k, temperature).
        kind : {"continuous", "diverging", "categorical"}
        vmin, vmax : float, optional
            Color range (default: the values' min and max).

        Examples
        --------
        >>> from geowidgets.datasets import toy_demo
        >>> demo = toy_demo("blobs", n=200)
        >>> s = Session(demo.model, demo.inputs, demo.labels)
        >>> s.add_coloring("norm", lambda s, layer, k, t: s.features(layer).norm(dim=1))
        >>> s.color_values("norm", layer=s.layers[0]).values.shape
        (200,)
        """
        if name in COLOR_BY or name in ("target", "abs_error") or name in self.metadata_colorings:
            raise ValueError(f"{name!r} is a built-in or metadata coloring; choose another name")
        check_color_kind(kind)
        if not callable(fn):
            raise ValueError(f"fn must be callable as fn(session, layer, k, temperature), got {type(fn).__name__}")
        self._colorings[name] = (fn, kind, vmin, vmax)

    def _custom_color(self, name: str, layer: str | None, k: int, temperature: float) -> ColorSpec:
        fn, kind, vmin, vmax = self._colorings[name]
        layer = self.check_layer(layer)

        def compute():
            out = fn(self, layer, self.check_k(k), self.check_temperature(temperature))
            return value_coloring(out, kind, vmin=vmin, vmax=vmax, name=name, n=self.n)

        return self._answer(self._small["custom"].get((name, layer, k, temperature), compute))

    def color_is_cheap(self, color_by: str, layer: str) -> bool:
        """True if :meth:`color_values` answers from cache or in O(N·k) (no kNN search, no capture)."""
        if color_by in self.metadata_colorings or (color_by == "label" and self.labels is not None):
            return True  # known without the capture
        if not self.captured or color_by in self._colorings:
            return False
        if color_by in BOUNDARY_COLORINGS:
            return self.has_boundary_coloring(color_by, layer)
        if color_by == "deviation":
            return self.has_tables(layer)
        if color_by == "knn_agreement":
            return self.has_graph(layer)
        if color_by == "neighbourhood_kept":
            j = self.layers.index(layer)
            return j > 0 and self.has_graph(layer) and self.has_graph(self.layers[j - 1])
        return True

    # Deprecated spellings, kept for one release.
    def colour_values(self, colour_by: str, layer: str | None = None, k: int = 10, temperature: float = 1.0):
        """Deprecated alias of :meth:`color_values`."""
        warn_renamed("Session.colour_values", "Session.color_values")
        return self.color_values(colour_by, layer, k, temperature)

    def add_colouring(self, name: str, fn: Callable[..., Any], kind: str = "continuous", **kwargs: Any) -> None:
        """Deprecated alias of :meth:`add_coloring`."""
        warn_renamed("Session.add_colouring", "Session.add_coloring")
        self.add_coloring(name, fn, kind, **kwargs)

    @property
    def colourings(self) -> list[str]:
        """Deprecated alias of :attr:`colorings`."""
        warn_renamed("Session.colourings", "Session.colorings")
        return self.colorings

    def colour_is_cheap(self, colour_by: str, layer: str) -> bool:
        """Deprecated alias of :meth:`color_is_cheap`."""
        warn_renamed("Session.colour_is_cheap", "Session.color_is_cheap")
        return self.color_is_cheap(colour_by, layer)

    # ------------------------------------------------------------------ layouts
    def layout(self, layer: str, method: str = "pca", reference: np.ndarray | None = None, **params: Any) -> np.ndarray:
        """2-D layout of a layer, float32 ``[N, 2]``, aligned to ``reference`` when given.

        ``method="pca"`` is immediate; ``"umap"`` is warm-started from ``reference`` (the layout on
        screen) or the PCA layout, and reuses the layer's cached kNN graph; ``"heatgeo"`` is the
        classical MDS of heat-geodesic distances on that graph (``geo.embed(method="heatgeo")``).
        ``params`` are ``geo.embed``'s: ``n_neighbors`` and ``min_dist`` for UMAP, ``n_neighbors``
        and ``t`` (the diffusion time) for heatgeo (``n_neighbors`` default: 15, at most ``k_max``,
        +1 for UMAP, which counts the point itself). Cached per (layer, method, params).
        """
        from geowidgets import geometry as geo
        from geowidgets.geometry._knn import _all_rows_equal as all_rows_equal

        layer = self.check_layer(layer)
        if method not in LAYOUT_PARAMS:
            raise ValueError(f"method must be one of {list(LAYOUT_PARAMS)}, got {method!r}")
        params = check_layout_params(method, params, self.k_max)
        X = self.features(layer)

        def compute():
            if X.shape[1] < 2 or method == "pca" or all_rows_equal(X):
                return _pca_layout(X)  # (identical rows: one point, whatever the method; no graph to lay out)
            init = reference if reference is not None and reference.shape == (self.n, 2) else None
            if init is None:
                init = self.layout(layer, "pca")
            graph = self.knn_graph(layer)
            if method == "heatgeo":
                kw = {"n_neighbors": min(15, self.k_max), **params}  # the graph holds k_max neighbours
                return np.asarray(geo.embed(X, method="heatgeo", knn=graph, **kw), dtype=np.float32)
            kw = {"n_neighbors": min(15, self.k_max + 1), **params}  # UMAP counts the point itself
            return np.asarray(geo.embed(X, method="umap", knn=graph, init=init, **kw), dtype=np.float32)

        key = (layer, method, *sorted(params.items()))
        Y = self._memo["layout"].get(key if params else (layer, method), compute)
        if reference is not None and reference.shape == Y.shape:
            Y = np.asarray(geo.align_layout(Y, reference), dtype=np.float32)
        return self._answer(Y)

    def landmark_picture(self, layer: str, color_by: str = "label") -> LandmarkPicture:
        """A layer's first picture from :attr:`preview_rows` landmarks, before the whole set is captured.

        The PCA layout of the landmarks' activations (:meth:`landmarks`), with a coloring of every
        sample that needs no capture: ``color_by`` itself when it needs none (the labels, a metadata
        column), else the labels when there are some. Cost: one
        capture of the landmarks and a PCA of ``[M, D]``, whatever N.

        Returns
        -------
        LandmarkPicture
            ``rows`` (int64 ``[M]``: the landmarks' sample indices), ``positions`` (float32
            ``[M, 2]``, unnormalised; row i is sample ``rows[i]``) and ``colors`` (a
            :class:`ColorSpec` over all N samples, or None).
        """
        layer = self.check_layer(layer)
        marks = self.landmarks(self.preview_rows)
        free = [
            c for c in (color_by, "label") if c in self.metadata_colorings or (c == "label" and self.labels is not None)
        ]
        colors = self.color_values(free[0], layer) if free else None
        return LandmarkPicture(marks.rows, _pca_layout(marks.features[layer]), colors)

    def has_layout(self, layer: str, method: str, **params: Any) -> bool:
        """True if the (layer, method, params) layout is cached."""
        params = check_layout_params(method, params, self.k_max)
        return ((layer, method, *sorted(params.items())) if params else (layer, method)) in self._memo["layout"]

    # ------------------------------------------------------------------ decision slices
    def default_anchors(self) -> tuple[int, int, int]:
        """Three samples to span the first slice: one per most frequent class, correctly classified if possible.

        Classes are taken in order of frequency among the correctly classified samples (all
        samples when fewer than three are correct, e.g. an untrained model); when fewer than
        three classes occur, the remaining anchors are spread over the other samples.
        """
        correct = self.correct
        pool = np.flatnonzero(correct) if correct is not None and int(correct.sum()) >= 3 else np.arange(self.n)
        if self.labels is None:
            return int(pool[0]), int(pool[len(pool) // 2]), int(pool[-1])
        labels = self.labels[pool]
        counts = np.bincount(labels)
        order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
        picks = [int(pool[np.flatnonzero(labels == c)[0]]) for c in order[:3]]
        if len(picks) < 3:  # the other samples, as an array (not N Python ints)
            rest = pool[~np.isin(pool, picks)]
            while len(picks) < 3:
                picks.append(int(rest[(len(picks) * len(rest)) // 3]))
        return picks[0], picks[1], picks[2]

    def slice_space(self, layer: str) -> torch.Tensor:
        """The points a slice at ``layer`` lives among: the inputs (flattened) or the layer's activations."""
        if layer == INPUT_LAYER:
            if isinstance(self.inputs, Mapping):
                raise ValueError(
                    "an input-space slice needs the inputs as one Tensor/array [N, ...]; this session's inputs are "
                    "a mapping of keyword arguments (model(**batch)), which has no single input space to lay a "
                    "plane in. Slices run the model on one tensor input, so look at this model through its "
                    f"hidden layers {self.layers} in the embedding, deviation and profile views"
                )
            if isinstance(self.inputs, (Dataset, DataLoader)):
                raise ValueError(
                    "an input-space slice needs the inputs as one Tensor/array [N, ...]; this session's inputs are "
                    "a Dataset/DataLoader: give the session the stacked inputs as a Tensor to slice the input space"
                )
            x = self.inputs if isinstance(self.inputs, torch.Tensor) else torch.as_tensor(np.asarray(self.inputs))
            return x.detach().float().reshape(self.n, -1).cpu()
        return self.features(layer)

    def decision_slice(self, layer: str, anchors: tuple[int, int, int], resolution: int = 128) -> DecisionSlice:
        """The decision slice (at temperature 1) through three samples, at a layer or at the input.

        The frame fits the data: it is the box around every sample's projection on the plane (the
        anchors are samples, so they are inside), padded by :attr:`SLICE_MARGIN` of its span on each
        side, so the samples span ``1 / (1 + 2 * SLICE_MARGIN)`` (about 91%) of each axis. Cached per
        (layer, anchors, resolution); use ``.with_temperature(T)`` for other T.

        The model is run as the session runs it (``output=`` and ``head=`` applied). A regression
        session's slice holds the predicted value per grid point (``.values``, ``target_index=0``)
        instead of classes. An embedding session has nothing to slice: ``ValueError``.
        """
        from geowidgets import geometry as geo

        layer = self.check_layer(layer, allow_input=True)
        anchors = tuple(int(a) for a in anchors)  # type: ignore[assignment]  # validated just below
        if len(anchors) != 3 or len(set(anchors)) != 3 or not all(0 <= a < self.n for a in anchors):
            raise ValueError(f"anchors must be 3 distinct sample indices in [0, {self.n}), got {anchors}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= 1024:
            raise ValueError(f"resolution must be an integer in [8, 1024], got {resolution!r}")
        if self.task == "embedding":
            raise ValueError(
                "an embedding session has no predictions to slice; pass head= (a module mapping the features to "
                "logits) for a classifier's slice"
            )
        target_index = 0 if self.task == "regression" else None
        space = self.slice_space(layer)

        def compute():
            try:
                plane = geo.Plane.through(*(space[a] for a in anchors))
            except ValueError as exc:  # the anchors coincide or are collinear in this space
                raise ValueError(_no_plane_message(space, anchors, layer)) from exc
            # The first anchor's input is the carrier: in input space it gives the grid points their
            # shape (e.g. images); in a layer the model runs on it and the layer output is swapped.
            kwargs: dict[str, Any] = {"carrier": self._carrier(anchors[0])}
            if layer != INPUT_LAYER:
                kwargs.update(layer=layer, plane_space="layer")
            with model_lock(self.model), self._running_carrier():
                return geo.decision_slice(
                    self.prediction_model,
                    plane,
                    resolution=resolution,
                    data=space,
                    margin=self.SLICE_MARGIN,
                    target_index=target_index,
                    **kwargs,
                )

        return self._answer(self._memo["slice"].get((layer, anchors, resolution), compute))

    # ------------------------------------------------------------------ layer profile
    def profile(self, metrics: tuple[str, ...], k: int = 10) -> pd.DataFrame:
        """Tidy per-layer metric table (``geo.layer_profile``), computed once per (metrics, k)."""
        from geowidgets import geometry as geo

        k = self.check_k(k)
        acts = self.activations()
        labels = self.labels

        def compute():
            # The layers' kNN graphs (at k_max) are shared with the embeddings and colourings, so
            # the profile reuses them instead of building its own; only euclidean graphs fit it.
            graphs = None
            uses_graph = set(metrics) & {"twonn", "mle", "knn_agreement"}
            if uses_graph and self.metric == "euclidean" and self.k_max >= max(k, geo.PROFILE_GRAPH_MIN_K):
                graphs = {name: self.knn_graph(name) for name in self.layers}
            # A metric undefined on one layer (e.g. the entropy of a constant layer) is NaN there, with its
            # reason in that row's params["error"]; the other layers keep their values.
            return geo.layer_profile(
                {name: acts[name] for name in self.layers}, labels, metrics=metrics, k=k, knn=graphs, errors="record"
            )

        return self._answer(self._memo["profile"].get((tuple(metrics), k), compute))

    # ------------------------------------------------------------------ search
    def frame(self) -> pd.DataFrame:
        """One row per sample: ``index``, ``label``, ``prediction``, ``correct``, ``target``, ``abs_error``
        (those the task has) and the metadata columns; the table :meth:`select` queries."""
        import pandas as pd

        columns: dict[str, Any] = {"index": np.arange(self.n)}
        if self.labels is not None:
            columns["label"] = self.labels
        if self.predictions is not None:
            columns["prediction"] = self.predictions
        if self.correct is not None:
            columns["correct"] = self.correct
        if self.targets is not None:
            columns["target"] = self.targets
            columns["abs_error"] = np.abs(self.predictions - self.targets)
        out = pd.DataFrame(columns)
        if self.metadata is not None:
            out = pd.concat([out, self.metadata.drop(columns=[c for c in self.metadata if c in columns])], axis=1)
        return out

    def select(self, query: str) -> list[int]:
        """Indices of the samples a search matches.

        The query is a pandas ``DataFrame.query`` expression over :meth:`frame` (``label == 3``,
        ``prediction != label``, ``index < 10``, ``topic == "sport"``, ``abs_error > 0.5``); a
        query that is not one (a plain word or phrase) matches the samples whose text
        (``texts=``) or any text metadata column contains it, ignoring case. An empty query matches
        nothing.

        Raises
        ------
        ValueError
            A query that is neither a valid expression nor found as text (no texts or text columns).

        Examples
        --------
        >>> from geowidgets.datasets import toy_demo
        >>> demo = toy_demo("blobs", n=60)
        >>> s = Session(demo.model, demo.inputs, demo.labels, k_max=10)
        >>> s.select("label == 1 and index < 10") == [i for i in range(10) if demo.labels[i] == 1]
        True
        """
        query = str(query).strip()
        if not query:
            return []
        frame = self.frame()
        try:
            hit = frame.query(query, engine="python")
            return [int(i) for i in hit["index"]]
        except Exception as err:  # not an expression over the columns: search the texts
            texts = [] if self.texts is None else [self.texts]
            if self.metadata is not None:
                texts += [
                    self.metadata[c].astype(str).tolist() for c in self.metadata if self.metadata[c].dtype == object
                ]
            if not texts:
                raise ValueError(
                    f"cannot search for {query!r}: it is not a query over the columns {list(frame.columns)} ({err}) "
                    "and this session has no texts to match it against"
                ) from None
            needle = query.lower()
            return [i for i in range(self.n) if any(needle in column[i].lower() for column in texts)]

    # ------------------------------------------------------------------ added samples
    def add_samples(
        self,
        inputs: Any,
        labels: ArrayLike | None = None,
        name: str = "added",
        *,
        k: int = 10,
        threshold: float = 2.0,
    ) -> pd.DataFrame:
        """Capture new inputs and score them against the reference manifold, without changing the session's samples.

        For every layer: each new sample's kNN deviation z from the reference set at ``k`` (the
        layer's cached :class:`~geowidgets.geometry.DeviationTables` baseline, so z is
        ``geo.knn_deviation(new, reference, k).z``), and its placement among the session's
        samples (its ``k`` nearest samples in the layer's feature space with inverse-distance
        weights, so it can be drawn in any layout of that layer without moving a point). The
        group's tables are kept at ``k_max``, so its z at another k is an O(M) re-read
        (``session.added[name].deviation(k)``; the deviation map follows its k this way).

        Parameters
        ----------
        inputs : Tensor, ndarray, mapping, Dataset or DataLoader
            New samples, as the session's inputs.
        labels : array-like, optional
            Their labels (class indices or names; regression targets); from an ``(x, y)`` loader when None.
        name : str
            Group name (replaces a group of that name).
        k : int
            Neighbours (``1..k_max``), e.g. the Explorer's current k.
        threshold : float
            z above which a sample has diverged (``divergence_layer``).

        Returns
        -------
        pandas.DataFrame
            One row per new sample: a column of z per layer (named by the layer), ``divergence_layer``
            (first layer with ``z > threshold``, None if none; ``geo.divergence_layers``), and
            ``label``/``prediction`` when known.

        Raises
        ------
        ValueError
            Token mode (``pooling="tokens"``), an empty name, k out of range.
        """
        import pandas as pd

        from geowidgets import geometry as geo
        from geowidgets.geometry import DeviationTables
        from geowidgets.session._tasks import knn_placement

        if self.tokens is not None:
            raise ValueError("add_samples scores one row per sample; this session is in token mode (pooling='tokens')")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        k = self.check_k(k)
        with model_lock(self.model):
            acts = self.probe.capture(inputs, batch_size=self.batch_size, progress=False)
        m = int(next(iter(acts.values())).shape[0])
        z = np.zeros((len(self.layers), m), dtype=np.float32)
        neighbours = {}
        scored_tables = {}  # at k_max: a later k re-reads them (AddedSamples.deviation)
        for j, layer in enumerate(self.layers):
            Q = acts[layer]
            X = self.features(layer)
            tables = self.deviation_tables(layer)
            reference = X[torch.from_numpy(self.reference_mask)]
            scored = DeviationTables.from_data(
                Q, reference, self.k_max, metric=self.metric, knn=(tables.reference_dist, tables.reference_idx)
            )
            scored_tables[layer] = scored
            z[j] = np.asarray(scored.result(k, percentile=False, zero_spread="nan").z, dtype=np.float32)
            neighbours[layer] = knn_placement(Q, X, k, metric=self.metric)
        divergence = np.asarray(geo.divergence_layers(z, threshold), dtype=np.int64)
        table = pd.DataFrame({layer: z[j] for j, layer in enumerate(self.layers)})
        table["divergence_layer"] = pd.Series([self.layers[d] if d >= 0 else None for d in divergence], dtype=object)
        if labels is None and acts.labels is not None:
            labels = acts.labels
        if labels is not None:  # checked like the session's own: class indices within the output, or targets
            if self.task == "classification":
                width = None if acts.outputs is None else int(acts.outputs.shape[1])
                codes = as_class_indices(labels, m, n_classes=width, class_names=self._class_names)
                table["label"] = [self.class_names[c] for c in codes] if self._class_names else codes
            else:
                values = label_array(labels, m)
                table["label"] = values
        if self.task != "embedding" and acts.outputs is not None:
            out = acts.outputs.numpy()
            table["prediction"] = out.argmax(1) if self.task == "classification" else out.reshape(m)
        self.added[name] = AddedSamples(
            name,
            table,
            z,
            divergence,
            neighbours,
            k,
            float(threshold),
            {layer: acts[layer] for layer in self.layers},
            scored_tables,
            acts.outputs if self.task == "classification" else None,
        )
        with self._lock:
            self.revision += 1
        return table.copy()

    def remove_samples(self, name: str) -> None:
        """Forget the added group ``name`` (``KeyError`` listing the groups if unknown)."""
        if name not in self.added:
            raise KeyError(f"no added samples named {name!r}; groups: {list(self.added)}")
        del self.added[name]
        with self._lock:
            self.revision += 1

    def close(self) -> None:
        """Free the captured activations and every cached result.

        The session stays usable: anything asked for later is captured and computed again. The
        Explorer calls this from its ``close()`` for a session it built.
        """
        with self._lock:
            self._acts = None
            self._landmarks.clear()
            self._logits_np = None
            for memo in (*self._memo.values(), *self._small.values()):
                memo.clear()
            self.probe.clear_cache()

    def __repr__(self) -> str:
        layers = self.layers if len(self.layers) <= 4 else [*self.layers[:2], "…", self.layers[-1]]
        shown = ", ".join(str(name) for name in layers)
        return (
            f"Session(N={self.n}, layers=[{shown}] ({len(self.layers)}), k_max={self.k_max}, captured={self.captured})"
        )
