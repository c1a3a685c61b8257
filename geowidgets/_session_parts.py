"""Building blocks of :class:`geowidgets.session.Session`: result records, memo, fast paths, locks.

Pure compute (numpy/torch); nothing here imports Jupyter.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "ColourSpec",
    "SampleDeviation",
    "DeviationSums",
    "Memo",
    "image_thumbnails",
    "model_lock",
    "temperature_colours",
]

_IMAGE_BYTES_LIMIT = 64 * 2**20
# One lock per model: a capture and a decision slice (which patches a layer with a forward hook)
# must never run the same model at the same time, even from two sessions or two threads.
_MODEL_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock every forward pass of ``model`` made by geowidgets holds."""
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


@dataclass(frozen=True)
class ColourSpec:
    """Per-point values for colouring, and how to map them to colours.

    Attributes
    ----------
    values : numpy.ndarray
        float32 ``[N]``; category codes for ``kind="categorical"``.
    kind : str
        ``"categorical"``, ``"continuous"`` or ``"diverging"`` (centred at 0).
    vmin, vmax : float
        Range mapped onto the colour scale (values outside are drawn at the ends).
    categories : list of str
        Names of the categories (empty for numeric values).
    name : str
        What the values are (``"deviation"``, ``"confidence"``...).
    """

    values: np.ndarray
    kind: str
    vmin: float
    vmax: float
    categories: list[str]
    name: str


@dataclass(frozen=True)
class SampleDeviation:
    """kNN deviation of every sample of a session at one layer and k.

    Attributes
    ----------
    distance : numpy.ndarray
        float32 ``[N]``: mean distance to the k nearest reference samples (leave-one-out for
        reference samples).
    z : numpy.ndarray
        float32 ``[N]``: ``(distance − baseline mean) / baseline std``.
    baseline : numpy.ndarray
        ``[Nr]`` leave-one-out distances of the reference samples.
    reference : numpy.ndarray
        bool ``[N]``: which samples are in the reference set.
    k : int
    """

    distance: np.ndarray
    z: np.ndarray
    baseline: np.ndarray
    reference: np.ndarray
    k: int


@dataclass(frozen=True)
class DeviationSums:
    """Running sums of a layer's deviation tables, so the mean of the first k distances is O(N).

    ``query[k - 1]`` / ``reference[k - 1]`` hold the sum of each row's k smallest distances
    (rows transposed to ``[k_max, N]`` so one k is a contiguous read). numpy, not torch: on a
    busy CPU small multi-threaded torch ops cost 10-100x more than these single-pass sums.
    """

    query: np.ndarray
    reference: np.ndarray

    @classmethod
    def from_tables(cls, tables: Any) -> DeviationSums:
        def sums(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(np.cumsum(t.detach().cpu().double().numpy(), axis=1).T, dtype=np.float32)

        return cls(sums(tables.query_dist), sums(tables.reference_dist))


def temperature_colours(logits: np.ndarray, temperature: float, name: str) -> np.ndarray:
    """One temperature score per sample from held logits, float32 ``[N]`` (numpy fast path).

    Same formulas as ``geo.temperature_scores`` (tested equal): ``"confidence"`` = max softmax(z/T),
    ``"entropy"`` (nats), ``"energy"`` = −T·logsumexp(z/T), ``"margin"`` = top-1 − top-2
    probability. Computing only the asked score, single-threaded, keeps a temperature move at
    10⁵ samples in milliseconds.

    Examples
    --------
    >>> import numpy as np
    >>> temperature_colours(np.array([[0.0, 0.0]], dtype=np.float32), 1.0, "confidence").tolist()
    [0.5]
    """
    zs = logits / np.float32(temperature)
    top = zs.max(1)
    shifted = zs - top[:, None]
    e = np.exp(shifted)
    total = e.sum(1)
    if name == "confidence":
        return (1.0 / total).astype(np.float32)
    if name == "energy":
        return (-temperature * (top + np.log(total))).astype(np.float32)
    p = e / total[:, None]
    if name == "entropy":
        return (np.log(total) - (p * shifted).sum(1)).astype(np.float32)
    if name == "margin":
        two = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return (two[:, 1] - two[:, 0]).astype(np.float32)
    raise ValueError(f"unknown temperature score {name!r}; allowed: confidence, entropy, energy, margin")


class Memo:
    """A small thread-safe LRU memo where concurrent callers of the same key compute once."""

    def __init__(self, maxsize: int | None = None):
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        self._maxsize = maxsize

    def __contains__(self, key: Hashable) -> bool:
        with self._guard:
            return key in self._data

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._guard:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._data:
                    return self._data[key]
            value = compute()
            with self._guard:
                self._data[key] = value
                self._locks.pop(key, None)
                if self._maxsize is not None:
                    while len(self._data) > self._maxsize:
                        self._data.popitem(last=False)
            return value


def image_thumbnails(images: Any, n: int) -> np.ndarray | None:
    """Images ``[N, H, W]`` (or ``[N, 1, H, W]`` / ``[N, H, W, 3]``) as uint8, or None if unusable."""
    if images is None:
        return None
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 1, -1)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape[0] != n or arr.ndim not in (3, 4) or arr.nbytes > 4 * _IMAGE_BYTES_LIMIT:
        return None
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
