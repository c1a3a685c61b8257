"""Input conversion and validation shared by every probe.

Every public function in :mod:`geowidgets.geometry` accepts a ``torch.Tensor`` or a
``numpy.ndarray`` and returns the same kind. :func:`as_tensor` turns the input into a
floating tensor on the right device (remembering what it was given), and
:func:`to_kind` turns a result back.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geowidgets.probe._device import resolve_device

__all__ = [
    "ArrayKind",
    "as_tensor",
    "as_labels",
    "check_k",
    "check_positive",
    "to_kind",
    "spectral_device",
]


@dataclass(frozen=True)
class ArrayKind:
    """What the caller passed in, so results can be returned in the same form.

    Attributes
    ----------
    is_numpy : bool
        True if the input was a numpy array (results are returned as numpy).
    device : torch.device
        Device the computation runs on.
    dtype : torch.dtype
        Floating dtype used for the computation.
    """

    is_numpy: bool
    device: torch.device
    dtype: torch.dtype


def as_tensor(
    X: Any,
    name: str = "X",
    *,
    ndim: int | None = 2,
    min_rows: int = 1,
    device: str | torch.device | None = None,
    allow_nonfinite: bool = False,
) -> tuple[torch.Tensor, ArrayKind]:
    """Validate ``X`` and return it as a floating tensor plus its :class:`ArrayKind`.

    Integer and half-precision inputs are upcast to float32; float64 stays float64.
    Tensors stay on their device; numpy arrays go to ``device`` (``"auto"`` when None).

    Parameters
    ----------
    X : torch.Tensor or numpy.ndarray or array-like
        The data.
    name : str
        Name used in error messages.
    ndim : int or None
        Required number of dimensions (None: any).
    min_rows : int
        Minimum number of rows (first dimension).
    device : str or torch.device, optional
        Device for numpy input; ignored for tensors.
    allow_nonfinite : bool
        If False (default), NaN or inf raise ``ValueError``.

    Returns
    -------
    tensor : torch.Tensor
    kind : ArrayKind

    Examples
    --------
    >>> import numpy as np
    >>> t, kind = as_tensor(np.zeros((3, 2)), device="cpu")
    >>> t.shape, kind.is_numpy
    (torch.Size([3, 2]), True)
    """
    if isinstance(X, torch.Tensor):
        is_numpy = False
        t = X.detach()
    else:
        is_numpy = True
        try:
            arr = np.asarray(X)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(X).__name__}") from exc
        if arr.dtype == object:
            raise ValueError(f"{name} must be numeric, got an object array")
        t = torch.from_numpy(np.ascontiguousarray(arr))
        t = t.to(resolve_device(device if device is not None else "auto"))
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be real-valued numeric, got dtype {t.dtype}")
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    if ndim is not None and t.ndim != ndim:
        shape = "[N, D]" if ndim == 2 else f"{ndim} dimensions"
        raise ValueError(f"{name} must have shape {shape}, got shape {tuple(t.shape)}")
    if t.ndim >= 1 and t.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {t.shape[0]}")
    if t.ndim == 2 and t.shape[1] == 0:
        raise ValueError(f"{name} has zero features (shape {tuple(t.shape)})")
    if not allow_nonfinite and t.numel() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN/inf value(s); only finite values are allowed")
    return t, ArrayKind(is_numpy=is_numpy, device=t.device, dtype=t.dtype)


def to_kind(t: torch.Tensor, kind: ArrayKind) -> Any:
    """Return ``t`` as numpy (on the CPU) if the caller gave numpy, else as a tensor."""
    if kind.is_numpy:
        return t.detach().cpu().numpy()
    return t


def as_labels(labels: Any, n: int, name: str = "labels", *, min_classes: int = 1) -> tuple[torch.Tensor, np.ndarray]:
    """Map any integer-like labels of length ``n`` to ``0..C-1`` in sorted order.

    Returns
    -------
    codes : torch.Tensor
        int64 codes on the CPU, shape [n].
    classes : numpy.ndarray
        The original label values, ``classes[code]``.
    """
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with one label per row, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but the data has {n} rows")
    classes, codes = np.unique(arr, return_inverse=True)
    if classes.size < min_classes:
        raise ValueError(f"{name} must contain at least {min_classes} distinct classes, got {classes.size}")
    return torch.from_numpy(codes.astype(np.int64)), classes


def check_k(k: Any, n_available: int, *, what: str = "points (self excluded)") -> int:
    """Validate a neighbour count: an int with ``1 <= k <= n_available``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n_available:
        raise ValueError(f"k={k} is too large: only {n_available} {what} are available, so k must be <= {n_available}")
    return k


def check_positive(value: Any, name: str) -> float:
    """Validate a real scalar such as a temperature, bandwidth or diffusion time: finite and > 0.

    Examples
    --------
    >>> check_positive(0.5, "temperature")
    0.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    v = float(value)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def spectral_device(t: torch.Tensor) -> torch.device:
    """Device for float64 spectral steps: the tensor's own, except MPS (no float64) -> CPU."""
    return torch.device("cpu") if t.device.type == "mps" else t.device
