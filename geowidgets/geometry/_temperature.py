"""Temperature-scaled confidence scores (PROBES.md §13): softmax(z/T), energy, entropy, margins, ECE.

Everything is O(N·C) on cached logits, so a temperature slider recomputes in milliseconds. The
energy score is Liu et al.'s ``E(x; T) = −T·logsumexp(z/T)`` (lower = more in-distribution);
``ablate_outer=True`` gives the AbeT form ``−logsumexp(z/T(x))`` without the outer T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geowidgets.geometry._arrays import as_tensor, to_kind

__all__ = ["temperature_scores", "TemperatureScores", "expected_calibration_error"]


@dataclass(frozen=True)
class TemperatureScores:
    """Scores of every sample at one temperature (same array kind as the logits).

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

    Examples
    --------
    >>> import numpy as np
    >>> s = temperature_scores(np.array([[1.0, 1.0, 1.0]]), temperature=2.0)
    >>> round(float(s.entropy[0]), 6) == round(float(np.log(3)), 6), s.temperature
    (True, 2.0)
    """

    probs: Any
    predicted: Any
    confidence: Any
    energy: Any
    entropy: Any
    margin: Any
    logit_margin: Any
    temperature: Any


def _temperature_tensor(temperature: Any, n: int, like: torch.Tensor) -> torch.Tensor:
    """T as a [N, 1] tensor (per-sample) or a 0-d tensor; must be finite and > 0."""
    if isinstance(temperature, bool):
        raise ValueError(f"temperature must be a number > 0 or an array [N], got {temperature!r}")
    if isinstance(temperature, (int, float, np.integer, np.floating)):
        value = float(temperature)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        return torch.tensor(value, dtype=like.dtype, device=like.device)
    T, _ = as_tensor(temperature, "temperature", ndim=None)
    if T.ndim == 0:
        return _temperature_tensor(float(T), n, like)
    if T.ndim != 1 or T.shape[0] != n:
        raise ValueError(f"a per-sample temperature must have shape [N={n}], got {tuple(T.shape)}")
    if not bool((T > 0).all()):
        raise ValueError(f"temperature must be > 0 everywhere; {int((T <= 0).sum())} value(s) are <= 0")
    return T.to(device=like.device, dtype=like.dtype).unsqueeze(1)


def temperature_scores(logits: Any, temperature: Any = 1.0, *, ablate_outer: bool = False) -> TemperatureScores:
    """Confidence, energy, entropy and margins of logits at temperature T.

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

    Examples
    --------
    >>> import numpy as np
    >>> s = temperature_scores(np.array([[2.0, 0.0], [0.0, 0.0]]), temperature=1.0)
    >>> s.predicted.tolist(), np.round(s.margin, 4).tolist()
    ([0, 0], [0.7616, 0.0])
    """
    z, kind = as_tensor(logits, "logits", min_rows=1)
    n, c = z.shape
    if c < 2:
        raise ValueError(f"logits need at least 2 classes (columns), got {c}")
    T = _temperature_tensor(temperature, n, z)
    scaled = z / T
    log_probs = torch.log_softmax(scaled, dim=1)
    probs = log_probs.exp()
    lse = torch.logsumexp(scaled, dim=1)
    energy = -lse if ablate_outer else -(T.squeeze(-1) if T.ndim else T) * lse
    entropy = -(probs * log_probs).sum(1)
    top_p = torch.topk(probs, 2, dim=1).values
    top_z = torch.topk(z, 2, dim=1).values
    out = {
        "probs": probs,
        "predicted": z.argmax(1),
        "confidence": top_p[:, 0],
        "energy": energy,
        "entropy": entropy,
        "margin": top_p[:, 0] - top_p[:, 1],
        "logit_margin": top_z[:, 0] - top_z[:, 1],
    }
    temp_out = float(T) if T.ndim == 0 else to_kind(T.squeeze(1), kind)
    return TemperatureScores(**{k: to_kind(v, kind) for k, v in out.items()}, temperature=temp_out)


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
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
