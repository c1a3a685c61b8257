"""Temperature scores: softmax(z/T), energy, entropy, margins, ECE (docs/probes.md#temperature-scores-energy-and-ece).

Everything is O(N·C) on cached logits, computed per score on first access, so a temperature
slider recomputes in milliseconds. The
energy score is Liu et al.'s ``E(x; T) = −T·logsumexp(z/T)`` (lower = more in-distribution);
``ablate_outer=True`` gives the AbeT form ``−logsumexp(z/T(x))`` without the outer T.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import Array, ArrayKind, as_tensor

__all__ = ["temperature_scores", "TemperatureScores", "expected_calibration_error"]


class TemperatureScores:
    """Scores of every sample at one temperature, each computed on first access.

    Holds the logits (float, on the CPU) and T; a score is computed when it is first read and
    kept, sharing the shifted exponentials between scores. Reading one score costs one O(N·C)
    pass, so a temperature slider that shows only the confidence never builds the others.
    Arrays come back in the kind of the logits given (numpy in, numpy out; a tensor in gives
    tensors on its device) and in their float dtype (integers: float32).

    Attributes
    ----------
    probs : [N, C]
        ``softmax(z / T)``.
    predicted : [N] int64
        ``argmax z`` (ties to the lower class index); independent of T.
    confidence : [N]
        Largest probability.
    energy : [N]
        ``−T·logsumexp(z/T)`` (or ``−logsumexp(z/T)`` with ``ablate_outer``); lower means more
        in-distribution, so views usually show ``−energy``.
    entropy : [N]
        ``−Σ p log p`` in nats, in ``[0, log C]``.
    margin : [N]
        Largest minus second-largest probability.
    logit_margin : [N]
        Largest minus second-largest raw logit (independent of T).
    temperature : float or [N]
        The temperature used.
    ablate_outer : bool

    Examples
    --------
    >>> import numpy as np
    >>> s = temperature_scores(np.array([[1.0, 1.0, 1.0]]), temperature=2.0)
    >>> round(float(s.entropy[0]), 6) == round(float(np.log(3)), 6), s.temperature
    (True, 2.0)
    """

    def __init__(self, logits: np.ndarray, temperature: float | np.ndarray, ablate_outer: bool, kind: ArrayKind):
        # Built by temperature_scores, which validates: logits float [N, C], C >= 2, finite; T > 0.
        self._z = logits
        self._t = temperature  # float, or float [N, 1]
        self._kind = kind
        self.ablate_outer = bool(ablate_outer)

    def __repr__(self) -> str:
        n, c = self._z.shape
        t = self._t if isinstance(self._t, float) else f"[{n}]"
        return f"TemperatureScores(N={n}, C={c}, temperature={t})"

    def _out(self, value: np.ndarray) -> Any:
        if self._kind.is_numpy:
            return value
        return torch.from_numpy(np.ascontiguousarray(value)).to(self._kind.device)

    # Shared intermediates: z/T shifted by its row maximum, its exponentials and their row sums.
    @cached_property
    def _scaled_top(self) -> tuple[np.ndarray, np.ndarray]:
        zs = self._z / (self._t if isinstance(self._t, np.ndarray) else self._z.dtype.type(self._t))
        top = zs.max(1)
        return zs - top[:, None], top

    @cached_property
    def _exp(self) -> tuple[np.ndarray, np.ndarray]:
        shifted, _ = self._scaled_top
        e = np.exp(shifted)
        return e, e.sum(1)

    @cached_property
    def _probs(self) -> np.ndarray:
        e, total = self._exp
        return e / total[:, None]

    @cached_property
    def probs(self) -> Any:
        return self._out(self._probs)

    @cached_property
    def predicted(self) -> Any:
        return self._out(self._z.argmax(1).astype(np.int64))

    @cached_property
    def confidence(self) -> Any:
        return self._out(1.0 / self._exp[1])  # the top class has exp(0) = 1

    @cached_property
    def energy(self) -> Any:
        _, top = self._scaled_top
        lse = top + np.log(self._exp[1])  # logsumexp(z/T)
        if self.ablate_outer:
            return self._out(-lse)
        t = self._t[:, 0] if isinstance(self._t, np.ndarray) else self._z.dtype.type(self._t)
        return self._out(-t * lse)

    @cached_property
    def entropy(self) -> Any:
        # −Σ p log p with log p = shifted − log Σ e; p·shifted is 0 where p underflows (never 0·log 0).
        shifted, _ = self._scaled_top
        return self._out(np.log(self._exp[1]) - (self._probs * shifted).sum(1))

    @cached_property
    def margin(self) -> Any:
        e, total = self._exp
        second = np.partition(e, e.shape[1] - 2, axis=1)[:, -2]
        return self._out((1.0 - second) / total)  # (e_top − e_second) / Σ e with e_top = 1

    @cached_property
    def logit_margin(self) -> Any:
        two = np.partition(self._z, self._z.shape[1] - 2, axis=1)[:, -2:]
        return self._out(two[:, 1] - two[:, 0])

    @property
    def n_classes(self) -> int:
        """Number of classes C (columns of the logits)."""
        return int(self._z.shape[1])

    @property
    def temperature(self) -> Any:
        """The temperature used: a float, or ``[N]`` in the kind of the logits."""
        if isinstance(self._t, np.ndarray):
            return self._out(self._t[:, 0].copy())
        return self._t


def _temperature_array(temperature: Any, n: int, dtype: np.dtype) -> float | np.ndarray:
    """T as a float, or (per sample) a ``[N, 1]`` array of ``dtype``; must be finite and > 0."""
    if isinstance(temperature, bool):
        raise ValueError(f"temperature must be a number > 0 or an array [N], got {temperature!r}")
    if isinstance(temperature, (int, float, np.integer, np.floating)):
        value = float(temperature)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        return value
    T = temperature.detach().cpu().numpy() if isinstance(temperature, torch.Tensor) else np.asarray(temperature)
    if T.ndim == 0:
        return _temperature_array(float(T), n, dtype)
    if T.ndim != 1 or T.shape[0] != n:
        raise ValueError(f"a per-sample temperature must have shape [N={n}], got {tuple(T.shape)}")
    T = T.astype(dtype)
    if not np.isfinite(T).all():
        raise ValueError("temperature contains NaN/inf values; only finite values are allowed")
    if not (T > 0).all():
        raise ValueError(f"temperature must be > 0 everywhere; {int((T <= 0).sum())} value(s) are <= 0")
    return T[:, None]


def _logits_array(logits: Any) -> tuple[np.ndarray, ArrayKind]:
    """Logits as a float numpy array on the CPU (no copy for float CPU input) and the caller's kind."""
    if isinstance(logits, torch.Tensor):
        t = logits.detach()
        if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
            t = t.to(torch.float32)
        kind = ArrayKind(is_numpy=False, device=t.device, dtype=t.dtype)
        z = t.cpu().numpy()
    else:
        z = np.asarray(logits)
        if z.dtype == object or z.dtype == bool or np.iscomplexobj(z):
            raise ValueError(f"logits must be real-valued numeric, got dtype {z.dtype}")
        if z.dtype not in (np.float32, np.float64):
            z = z.astype(np.float32)
        kind = ArrayKind(is_numpy=True, device=torch.device("cpu"), dtype=torch.from_numpy(z[:0]).dtype)
    if z.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got shape {tuple(z.shape)}")
    if z.shape[0] < 1:
        raise ValueError("logits need at least 1 rows, got 0")
    if z.shape[1] < 2:
        raise ValueError(f"logits need at least 2 classes (columns), got {z.shape[1]}")
    if not np.isfinite(z).all():
        bad = int((~np.isfinite(z)).sum())
        raise ValueError(f"logits contain {bad} NaN/inf value(s); only finite values are allowed")
    return z, kind


def temperature_scores(logits: Array, temperature: Any = 1.0, *, ablate_outer: bool = False) -> TemperatureScores:
    """Confidence, energy, entropy and margins of logits at temperature T.

    The one implementation of these scores in geowidgets: decision slices, the session's
    colourings and the views all read them from here. Scores are computed on first access in
    numpy on the CPU (O(N·C) single-threaded passes, which on a busy CPU beat torch's threaded
    kernels at these sizes by 3-10x), so reading only ``confidence`` after a temperature move
    costs one pass.

    Parameters
    ----------
    logits : Tensor or ndarray, shape [N, C]
        Raw class scores, C >= 2.
    temperature : float or Tensor/ndarray [N]
        T > 0; an array gives each sample its own (e.g. learned) temperature.
    ablate_outer : bool
        Energy without the outer temperature factor: ``−logsumexp(z/T)`` (AbeT).

    Returns
    -------
    TemperatureScores
        Arrays in the kind of ``logits`` (tensors on its device).

    Raises
    ------
    ValueError
        Logits not ``[N, C]`` with C >= 2, NaN/inf logits, or a temperature that is not > 0 and
        finite (or a per-sample temperature of the wrong shape).

    Examples
    --------
    >>> import numpy as np
    >>> s = temperature_scores(np.array([[2.0, 0.0], [0.0, 0.0]]), temperature=1.0)
    >>> s.predicted.tolist(), np.round(s.margin, 4).tolist()
    ([0, 0], [0.7616, 0.0])
    """
    z, kind = _logits_array(logits)
    T = _temperature_array(temperature, z.shape[0], z.dtype)
    return TemperatureScores(z, T, ablate_outer, kind)


def expected_calibration_error(probs: Array, labels: Array, n_bins: int = 15) -> float:
    """Expected calibration error of predicted probabilities, with equal-width confidence bins.

    ``ECE = Σ_b (|B_b|/N)·|accuracy(B_b) − mean confidence(B_b)|`` where the confidence is the
    largest probability, the prediction its column (ties to the lower index), and bin ``b`` holds
    confidences in ``(b/n_bins, (b+1)/n_bins]`` (the first bin also holds 0).

    Parameters
    ----------
    probs : Tensor or ndarray, shape [N, C]
        Probabilities (rows in [0, 1] summing to 1 within 1e-3); pass softmax outputs, not logits.
    labels : array-like of int, shape [N]
        True class indices ``0..C−1`` (column numbers of ``probs``).
    n_bins : int
        Number of bins (>= 1).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    >>> round(expected_calibration_error(p, [0, 1, 0, 0]), 6)
    0.4
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    P, _ = as_tensor(probs, "probs", min_rows=1)
    P = P.to(torch.float64)
    n, c = P.shape
    if bool((P < 0).any()) or bool((P > 1).any()):
        raise ValueError("probs must lie in [0, 1]; did you pass logits? Use temperature_scores(logits).probs")
    row_sums = P.sum(1)
    if not bool(torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-3)):
        worst = float((row_sums - 1).abs().max())
        raise ValueError(f"every row of probs must sum to 1 (worst deviation {worst:.3g}); pass probabilities")
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape [N={n}], got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= c)):
        raise ValueError(f"labels must be integer class indices in 0..{c - 1} (columns of probs)")
    confidence, predicted = P.max(1)
    correct = (predicted.cpu() == torch.from_numpy(y.astype(np.int64))).to(torch.float64).to(P.device)
    bins = torch.clamp(torch.ceil(confidence * n_bins).long() - 1, min=0, max=n_bins - 1)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64, device=P.device).index_add_(0, bins, correct)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64, device=P.device).index_add_(0, bins, confidence)
    return float((acc_sum - conf_sum).abs().sum() / n)
