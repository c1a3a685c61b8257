"""Input conversion and validation shared by every probe.

Every public function in :mod:`geowidgets.geometry` accepts a ``torch.Tensor`` or a
``numpy.ndarray`` and returns the same kind. :func:`as_tensor` turns the input into a
floating tensor on the right device (remembering what it was given), and
:func:`to_kind` turns a result back.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, cast

import numpy as np
import numpy.typing as npt
import torch

from geowidgets.probe._device import resolve_device

__all__ = [
    "Array",
    "ArrayKind",
    "renamed_keywords",
    "as_tensor",
    "as_labels",
    "as_class_indices",
    "label_array",
    "check_k",
    "check_positive",
    "to_kind",
    "unit_rows",
    "spectral_device",
]

#: What every probe accepts as data: a tensor (results come back as tensors on its device) or
#: anything numpy can read (results come back as numpy arrays).
Array: TypeAlias = torch.Tensor | npt.ArrayLike

_F = TypeVar("_F", bound=Callable[..., Any])


def renamed_keywords(**renames: str) -> Callable[[_F], _F]:
    """Keep old keyword names of a function working for one release, with a ``DeprecationWarning``.

    ``@renamed_keywords(H="X")`` lets ``f(H=...)`` call ``f(X=...)``; passing both raises ``TypeError``.

    Examples
    --------
    >>> @renamed_keywords(y="labels")
    ... def f(X, labels):
    ...     return labels
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     f(1, y=2)
    2
    """

    def decorate(func: _F) -> _F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{func.__name__}() got both {old!r} and {new!r}; pass only {new!r}")
                    warnings.warn(
                        f"{func.__name__}(): keyword {old!r} is deprecated and will be removed in the next release; "
                        f"use {new!r}",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return cast(_F, wrapper)

    return decorate


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


# Bytes of one block of rows when a matrix whose sum is not finite is checked entry by entry.
_FINITE_BLOCK_BYTES = 4 * 2**20


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
    if not allow_nonfinite and t.numel() and not math.isfinite(float(t.sum())):
        # A finite sum (a reduction, no temporary) proves every entry finite; only a non-finite one
        # (a NaN/inf, or a sum that overflows) is checked entry by entry, over ~4 MiB blocks, instead
        # of a whole-matrix isfinite (an N×D float copy plus masks).
        flat = t.reshape(t.shape[0], -1) if t.ndim >= 1 else t.reshape(1, 1)
        step = max(1, _FINITE_BLOCK_BYTES // (4 * max(1, flat.shape[1])))
        bad = sum(int((~torch.isfinite(flat[s : s + step])).sum()) for s in range(0, flat.shape[0], step))
        if bad:
            raise ValueError(f"{name} contains {bad} NaN/inf value(s); only finite values are allowed")
    return t, ArrayKind(is_numpy=is_numpy, device=t.device, dtype=t.dtype)


def to_kind(t: torch.Tensor, kind: ArrayKind) -> Any:
    """Return ``t`` as numpy (on the CPU) if the caller gave numpy, else as a tensor."""
    if kind.is_numpy:
        return t.detach().cpu().numpy()
    return t


def label_array(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    """Labels as a 1-D numpy array of length ``n`` with no missing values.

    Accepts a list, numpy array, torch tensor, pandas ``Series`` or ``Categorical`` (positional
    order: a Series' index is ignored).

    Raises
    ------
    ValueError
        If the labels are not 1-D, have the wrong length, or hold a missing value (``None``,
        NaN, ``pd.NA``); the message names the first bad position.
    """
    if isinstance(labels, torch.Tensor):
        arr = labels.detach().cpu().numpy()
    elif hasattr(labels, "to_numpy") and not isinstance(labels, np.ndarray):  # pandas Series / Categorical / Index
        arr = labels.to_numpy(dtype=object) if _has_missing_pandas(labels) else labels.to_numpy()
    else:
        arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with one label per row, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but the data has {n} rows")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
    elif arr.dtype.kind == "O":
        bad = np.fromiter((_is_missing(v) for v in arr), dtype=bool, count=arr.shape[0])
    else:
        bad = np.zeros(arr.shape[0], dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = arr[i].item() if isinstance(arr[i], np.generic) else arr[i]  # nan, not np.float64(nan)
        raise ValueError(
            f"{name}[{i}] is {value!r}: every sample needs a label ({int(bad.sum())} missing); "
            "drop the unlabelled rows or pass labels=None"
        )
    if arr.dtype.kind == "O":
        kinds = {type(v) for v in arr}
        if all(issubclass(t, str) for t in kinds):
            arr = arr.astype(str)
        elif all(issubclass(t, (int, np.integer)) and not issubclass(t, bool) for t in kinds):
            arr = arr.astype(np.int64)
        elif not all(issubclass(t, (int, float, np.integer, np.floating)) for t in kinds):
            names = sorted(t.__name__ for t in kinds)
            raise ValueError(f"{name} mix value types {names}; use all integers or all strings")
        else:
            arr = arr.astype(np.float64)
    return arr


def _has_missing_pandas(labels: Any) -> bool:
    isna = getattr(labels, "isna", None)
    return bool(isna().any()) if callable(isna) else False


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return not math.isfinite(float(v))
    try:  # pandas.NA / NaT
        import pandas as pd

        return v is pd.NA or v is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False


def as_labels(labels: Any, n: int, name: str = "labels", *, min_classes: int = 1) -> tuple[torch.Tensor, np.ndarray]:
    """Map labels of length ``n`` (any values: ints, strings...) to ``0..C-1`` in sorted order.

    For probes where only which samples share a class matters (class geometry, agreement,
    separability). Where labels must agree with a model's output columns, use
    :func:`as_class_indices`.

    Returns
    -------
    codes : torch.Tensor
        int64 codes on the CPU, shape [n].
    classes : numpy.ndarray
        The original label values, ``classes[code]``.

    Raises
    ------
    ValueError
        Wrong shape or length, a missing label (see :func:`label_array`), or fewer than
        ``min_classes`` distinct classes.
    """
    arr = label_array(labels, n, name)
    classes, codes = np.unique(arr, return_inverse=True)
    if classes.size < min_classes:
        raise ValueError(f"{name} must contain at least {min_classes} distinct classes, got {classes.size}")
    return torch.from_numpy(codes.astype(np.int64).reshape(-1)), classes


def as_class_indices(
    labels: Any,
    n: int,
    *,
    n_classes: int | None = None,
    class_names: list[str] | None = None,
    name: str = "labels",
) -> np.ndarray:
    """Labels as class indices: the column of the model's output each sample's class is.

    Labels are values, never ranks: integer label ``5`` is output column 5 even when classes
    0-4 are absent. String labels are looked up in ``class_names`` (the model's classes in
    output order). Float labels are accepted only when every value is a whole number (pandas
    turns an integer column with gaps into floats).

    Parameters
    ----------
    labels : array-like, Tensor, pandas Series or Categorical, shape [N]
        Integer class indices, or strings that are entries of ``class_names``.
    n : int
        Number of samples.
    n_classes : int, optional
        Width C of the model's output; indices must lie in ``0..C-1``.
    class_names : list of str, optional
        Class names in output order; required for string labels.
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        int64 ``[N]`` class indices.

    Raises
    ------
    ValueError
        Missing labels (naming the first position), strings without ``class_names`` or not in
        them, non-integral floats, negative indices, or indices ``>= n_classes``.

    Examples
    --------
    >>> as_class_indices([0, 5, 9], 3, n_classes=10).tolist()
    [0, 5, 9]
    >>> as_class_indices(["dog", "cat"], 2, class_names=["cat", "dog"]).tolist()
    [1, 0]
    """
    arr = label_array(labels, n, name)
    if arr.dtype.kind in "US":
        if class_names is None:
            shown = sorted(set(arr.tolist()))[:5]
            raise ValueError(
                f"{name} are strings ({shown}...); pass class_names=[...] listing the classes in the order of "
                "the model's output columns, so each label maps to its column"
            )
        lookup = {str(c): i for i, c in enumerate(class_names)}
        unknown = sorted({v for v in arr.tolist() if v not in lookup})
        if unknown:
            raise ValueError(f"{name} hold {unknown[:5]} which are not in class_names {list(class_names)[:20]}")
        codes = np.fromiter((lookup[v] for v in arr.tolist()), dtype=np.int64, count=n)
    elif arr.dtype.kind == "b":
        codes = arr.astype(np.int64)
    elif arr.dtype.kind in "iu":
        codes = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        if not np.all(arr == np.round(arr)):
            i = int(np.flatnonzero(arr != np.round(arr))[0])
            raise ValueError(
                f"{name}[{i}] = {arr[i]!r} is not a whole number; classification labels are class indices "
                "(integers) or class names (strings); for a regressor's targets pass task='regression'"
            )
        codes = arr.astype(np.int64)
    else:
        raise ValueError(f"{name} must be integers or strings, got dtype {arr.dtype}")
    if codes.size and codes.min() < 0:
        i = int(np.flatnonzero(codes < 0)[0])
        raise ValueError(f"{name}[{i}] = {codes[i]} is negative; class indices start at 0")
    if n_classes is not None and codes.size and codes.max() >= n_classes:
        i = int(np.flatnonzero(codes >= n_classes)[0])
        raise ValueError(
            f"{name}[{i}] = {codes[i]} but the model's output has {n_classes} columns (classes 0..{n_classes - 1}); "
            "integer labels are class indices, not arbitrary values"
        )
    if class_names is not None and n_classes is not None and len(class_names) != n_classes:
        raise ValueError(f"class_names has {len(class_names)} names but the model's output has {n_classes} columns")
    return codes


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


#: Bytes of a row block converted to another dtype at a time by :func:`row_norms`.
_NORM_BLOCK_BYTES = 32 * 2**20


def row_norms(
    t: torch.Tensor,
    dtype: torch.dtype | None = None,
    *,
    device: torch.device | None = None,
    name: str = "X",
    nonzero: str | None = None,
    block_bytes: int | None = None,
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """Euclidean norms ``[N]`` of the rows of ``t`` [N, D], computed in ``dtype`` a block of rows at a time.

    The one row-norm routine of the probes: no ``[N, D]`` copy in ``dtype`` is made (blocks of
    about 32 MiB are converted), so float64 norms of a float32 layer cost O(N) memory.

    Parameters
    ----------
    t : Tensor [N, D]
    dtype : torch.dtype, optional
        Dtype the norms are computed and returned in (default: ``t``'s).
    device : torch.device, optional
        Where they are computed (default: ``t``'s).
    name : str
        How the error names ``t``.
    nonzero : str, optional
        When given, an all-zero row (it has no direction: it cannot be unit-normalised) raises
        ``ValueError``, whose message counts them, names the first and ends with this remedy.
    block_bytes : int, optional
        Bytes of a converted block (default 32 MiB).
    center : Tensor [D], optional
        Subtracted from every row first (in ``dtype``): the norms of ``t − center``, e.g. the
        distances to the mean (:func:`column_mean`).

    Examples
    --------
    >>> row_norms(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), torch.float64).tolist()
    [5.0, 1.0]
    """
    dtype = t.dtype if dtype is None else dtype
    device = t.device if device is None else device
    out = torch.empty(t.shape[0], dtype=dtype, device=device)
    size = _NORM_BLOCK_BYTES if block_bytes is None else block_bytes
    step = max(1, size // (torch.finfo(dtype).bits // 8 * max(1, t.shape[1])))
    shift = None if center is None else center.to(device=device, dtype=dtype)
    for s in range(0, t.shape[0], step):
        block = t[s : s + step].to(device=device, dtype=dtype)
        out[s : s + step] = torch.linalg.vector_norm(block if shift is None else block - shift, dim=1)
    if nonzero is not None:
        zero = out == 0
        if bool(zero.any()):
            first = int(torch.nonzero(zero)[0])
            raise ValueError(
                f"{name} has {int(zero.sum())} all-zero row(s) (first: row {first}) that cannot be unit-normalised; "
                f"{nonzero}"
            )
    return out


def column_mean(
    t: torch.Tensor,
    dtype: torch.dtype = torch.float64,
    *,
    device: torch.device | None = None,
    block_bytes: int | None = None,
) -> torch.Tensor:
    """Mean ``[D]`` of the rows of ``t`` [N, D], summed in ``dtype`` a block of rows at a time (no full copy).

    ``device``: where the blocks are summed (default: ``t``'s); ``block_bytes``: bytes of a
    converted block (default 32 MiB).

    Examples
    --------
    >>> column_mean(torch.tensor([[1.0, 2.0], [3.0, 6.0]])).tolist()
    [2.0, 4.0]
    """
    device = t.device if device is None else device
    size = _NORM_BLOCK_BYTES if block_bytes is None else block_bytes
    step = max(1, size // (torch.finfo(dtype).bits // 8 * max(1, t.shape[1])))
    total = torch.zeros(t.shape[1], dtype=dtype, device=device)
    for s in range(0, t.shape[0], step):
        total += t[s : s + step].to(device=device, dtype=dtype).sum(0)
    return total / max(1, t.shape[0])


def unit_rows(t: torch.Tensor, name: str = "X", *, remedy: str = "drop them or pass normalize=False") -> torch.Tensor:
    """Rows of ``t`` [N, D] divided by their Euclidean norms (the one row normalisation of every probe).

    Raises
    ------
    ValueError
        If a row is all zeros (it has no direction); the message counts them, names the first and
        ends with ``remedy``.

    Examples
    --------
    >>> unit_rows(torch.tensor([[3.0, 4.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    return t / row_norms(t, name=name, nonzero=remedy).unsqueeze(1)


def spectral_device(t: torch.Tensor) -> torch.device:
    """Device for float64 spectral steps: the tensor's own, except MPS (no float64) -> CPU."""
    return torch.device("cpu") if t.device.type == "mps" else t.device
