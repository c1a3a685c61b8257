"""The embedding's colorings as data (:data:`COLOR_BY`) and the pure functions that make them.

A coloring is a :class:`ColorSpec`: one value per sample and how to map it to colors. The
session computes the values (from geometry results) and these functions turn them into specs,
so a view without a session builds the same specs from arrays it was given.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "COLOR_BY",
    "ColorSpec",
    "ColorKind",
    "TEMPERATURE_COLORINGS",
    "categorical_coloring",
    "value_coloring",
    "temperature_coloring",
    "check_color_kind",
    "warn_renamed",
    "renamed_alias",
]

ColorKind = Literal["categorical", "continuous", "diverging"]
_KINDS = ("categorical", "continuous", "diverging")

#: Colorings the embedding understands: name -> (kind, depends on k, depends on temperature).
COLOR_BY: dict[str, tuple[str, bool, bool]] = {
    "label": ("categorical", False, False),
    "prediction": ("categorical", False, False),
    "correct": ("categorical", False, False),
    "deviation": ("diverging", True, False),
    "knn_agreement": ("continuous", True, False),
    "neighbourhood_kept": ("continuous", True, False),
    "confidence": ("continuous", False, True),
    "entropy": ("continuous", False, True),
    "energy": ("continuous", False, True),
    "margin": ("continuous", False, True),
    "boundary_distance": ("continuous", False, False),
    "lodd_score": ("continuous", True, False),
}
#: The colorings that are temperature scores of the logits (``geo.temperature_scores`` fields).
TEMPERATURE_COLORINGS = ("confidence", "entropy", "energy", "margin")


@dataclass(frozen=True)
class ColorSpec:
    """Per-point values for coloring, and how to map them to colors.

    Attributes
    ----------
    values : numpy.ndarray
        float32 ``[N]``; category codes for ``kind="categorical"``.
    kind : {"categorical", "continuous", "diverging"}
        ``"diverging"`` is centred at 0.
    vmin, vmax : float
        Range mapped onto the color scale (values outside are drawn at the ends).
    categories : list of str
        Names of the categories (empty for numeric values).
    name : str
        What the values are (``"deviation z"``, ``"confidence"``...).
    """

    values: np.ndarray
    kind: str
    vmin: float
    vmax: float
    categories: list[str]
    name: str


def check_color_kind(kind: str) -> str:
    """Return ``kind`` if it is a coloring kind, else raise ``ValueError``."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'categorical', 'continuous' or 'diverging', got {kind!r}")
    return kind


def _values(values: Any, n: int | None, name: str) -> np.ndarray:
    v = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    if n is not None and v.shape != (n,):
        raise ValueError(f"the values of {name!r} must have shape ({n},) (one value per sample), got shape {v.shape}")
    if v.ndim != 1:
        raise ValueError(f"the values of {name!r} must be 1-D (one value per sample), got shape {v.shape}")
    v = v.astype(np.float32)
    if not np.isfinite(v).all():
        raise ValueError(f"the values of {name!r} contain NaN/inf; give finite values")
    return v


def categorical_coloring(codes: Any, categories: list[str] | None, name: str, n: int | None = None) -> ColorSpec:
    """Integer category codes ``[N]`` named by ``categories`` (default ``"0"``, ``"1"``...).

    Examples
    --------
    >>> spec = categorical_coloring([0, 2, 1], None, "label")
    >>> spec.categories, spec.vmax
    (['0', '1', '2'], 2.0)
    """
    v = _values(codes, n, name)
    if categories is None:
        categories = [str(i) for i in range(int(v.max(initial=0)) + 1)]
    cats = [str(c) for c in categories]
    return ColorSpec(v, "categorical", 0.0, float(len(cats) - 1), cats, name)


def value_coloring(
    values: Any,
    kind: str = "continuous",
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    categories: list[str] | None = None,
    name: str = "value",
    n: int | None = None,
) -> ColorSpec:
    """Any per-sample values as a coloring (range: the values' min and max unless given).

    Raises
    ------
    ValueError
        Unknown kind, wrong shape (when ``n`` is given) or NaN/inf values.

    Examples
    --------
    >>> value_coloring([0.5, 2.0], vmin=0.0).vmin, value_coloring([0.5, 2.0], vmin=0.0).vmax
    (0.0, 2.0)
    """
    kind = check_color_kind(kind)
    if kind == "categorical":
        return categorical_coloring(values, categories, name, n)
    v = _values(values, n, name)
    lo = float(v.min(initial=0.0) if v.size else 0.0) if vmin is None else float(vmin)
    hi = float(v.max(initial=1.0) if v.size else 1.0) if vmax is None else float(vmax)
    return ColorSpec(v, kind, lo, hi, [], name)


def temperature_coloring(scores: Any, name: str) -> ColorSpec:
    """A temperature score of :class:`~geowidgets.geometry.TemperatureScores` as a coloring.

    ``"confidence"`` spans ``[1/C, 1]``, ``"margin"`` ``[0, 1]``, ``"entropy"`` ``[0, log C]``;
    ``"energy"`` is shown as ``−energy`` (higher = more in-distribution) over its range. Only
    the asked score is computed (the scores are computed on first access).

    Examples
    --------
    >>> import numpy as np
    >>> from geowidgets import geometry as geo
    >>> spec = temperature_coloring(geo.temperature_scores(np.zeros((2, 4)), 1.0), "confidence")
    >>> spec.values.tolist(), spec.vmin
    ([0.25, 0.25], 0.25)
    """
    if name not in TEMPERATURE_COLORINGS:
        raise ValueError(f"unknown temperature score {name!r}; allowed: {', '.join(TEMPERATURE_COLORINGS)}")
    v = np.asarray(getattr(scores, name), dtype=np.float32)
    n_classes = scores.n_classes
    if name == "energy":
        v = -v
        return ColorSpec(v, "continuous", float(v.min()), float(v.max()), [], "−energy")
    vmin, vmax = {"confidence": (1.0 / n_classes, 1.0), "margin": (0.0, 1.0), "entropy": (0.0, math.log(n_classes))}[
        name
    ]
    return ColorSpec(v, "continuous", float(vmin), float(vmax), [], name)


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` is a deprecated alias of ``new`` (kept for one release).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_renamed("colour_by", "color_by")
    >>> str(caught[0].message)
    "'colour_by' is deprecated and will be removed in the next release; use 'color_by'"
    """
    warnings.warn(
        f"{old!r} is deprecated and will be removed in the next release; use {new!r}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_alias(old: str, new: str, *, writable: bool = True) -> property:
    """A deprecated attribute ``old`` that reads (and writes) ``new``, warning each time.

    Examples
    --------
    >>> import warnings
    >>> class View:
    ...     color_by = "label"
    ...     colour_by = renamed_alias("colour_by", "color_by")
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     View().colour_by
    'label'
    """

    def fget(self: Any) -> Any:
        warn_renamed(old, new)
        return getattr(self, new)

    def fset(self: Any, value: Any) -> None:
        warn_renamed(old, new)
        setattr(self, new, value)

    return property(fget, fset if writable else None, doc=f"Deprecated alias of ``{new}``.")
