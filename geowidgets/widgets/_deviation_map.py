"""DeviationMap: samples x layers heatmap of kNN-deviation z-scores with divergence layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import traitlets
from numpy.typing import ArrayLike

from geowidgets.session import Session
from geowidgets.session._colorings import renamed_alias
from geowidgets.widgets._base import STATIC, ViewBase
from geowidgets.widgets._codec import array_trait

if TYPE_CHECKING:
    from geowidgets.geometry import DeviationProfile

__all__ = ["DeviationMap", "sort_rows"]

SORTS = ("divergence", "max_z", "label", "index")
# Samples x layers below which a k move is answered inline (measured ~50 ms per 10^4 cells on 2 cores).
INLINE_CELLS = 20_000


def sort_rows(z: np.ndarray, divergence: np.ndarray, rows: np.ndarray, sort_by: str, labels: Any = None) -> np.ndarray:
    """Order the sample indices ``rows`` for display.

    Parameters
    ----------
    z : ndarray [L, N]
        z-scores of every sample at every layer.
    divergence : ndarray [N]
        First layer with z above the threshold, -1 if none.
    rows : ndarray of int
        The samples to show.
    sort_by : {"divergence", "max_z", "label", "index"}
        ``"divergence"``: earliest divergence layer first (never-diverging last), ties by largest
        z; ``"max_z"``: largest z over layers first; ``"label"``: by label, then index.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[0.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
    >>> sort_rows(z, np.array([-1, 0, 1]), np.arange(3), "divergence").tolist()
    [1, 2, 0]
    """
    if sort_by not in SORTS:
        raise ValueError(f"sort_by must be one of {SORTS}, got {sort_by!r}")
    rows = np.asarray(rows, dtype=np.int64)
    zmax = z[:, rows].max(0) if z.shape[0] else np.zeros(rows.size)
    if sort_by == "index":
        return np.sort(rows)
    if sort_by == "max_z":
        return rows[np.lexsort((rows, -zmax))]
    if sort_by == "label":
        if labels is None:
            raise ValueError("sort_by='label' needs labels")
        return rows[np.lexsort((rows, np.asarray(labels)[rows]))]
    div = divergence[rows].astype(np.int64)
    key = np.where(div < 0, np.iinfo(np.int64).max, div)
    return rows[np.lexsort((rows, -zmax, key))]


class DeviationMap(ViewBase):
    """Heatmap of each sample's kNN-deviation z-score at every layer (REMA, see docs/probes.md#knn-deviation).

    Rows are samples, columns layers; z is colored on a diverging scale clipped at ±5 (its color
    scale is drawn below the map), and each sample's divergence layer (first layer with
    ``z > threshold``) is marked with a black bar (keyed below the map). With a selection
    (e.g. a lasso in the embedding) only the selected samples are shown. Clicking a row selects
    that sample; the footer gives each layer's AUROC of misclassified samples vs the reference
    baseline. A k move re-averages the cached deviation tables; a threshold or sort change only
    re-orders.

    Parameters
    ----------
    source : Session or DeviationProfile
        A session (live: k moves re-read its cached tables) or a
        :class:`~geowidgets.geometry.DeviationProfile` from ``geo.knn_deviation_profile``
        (static: its k is fixed; threshold, sort and selection still apply).
    labels : array-like of int [N], optional
        Static view: the samples' classes, for ``sort_by="label"``.
    k : int
    threshold : float
    sort_by : {"divergence", "max_z", "label", "index"}
    layer : str
        The layer outlined (the Explorer's current layer). Unknown keywords raise ``TypeError``;
        ``current_layer`` is a deprecated alias of ``layer``.

    Examples
    --------
    >>> import numpy as np
    >>> from geowidgets import geometry as geo
    >>> rng = np.random.default_rng(0)
    >>> R = {"a": rng.normal(size=(200, 3)), "b": rng.normal(size=(200, 3))}
    >>> Q = {"a": rng.normal(size=(20, 3)), "b": rng.normal(size=(20, 3)) + 6}
    >>> view = DeviationMap(geo.knn_deviation_profile(Q, R, k=5))
    >>> view.n_rows, view.layer_names, view.k
    (20, ['a', 'b'], 5)
    """

    _esm = STATIC / "deviation.js"

    z = array_trait(
        "float32",
        "[R, L]",
        "kNN-deviation z-score (dimensionless, robust z against the reference) of each shown sample at each layer, "
        "float32 [R, L]: rows in display order (row_index), columns as layer_names.",
    )
    row_index = array_trait("int32", "[R]", "Sample index of each row of z, int32 [R], in display order.")
    divergence = array_trait(
        "int32", "[R]", "Divergence layer of each row, int32 [R]: first column with z > threshold, -1 if none."
    )
    layer_names = traitlets.List(
        traitlets.Unicode(),
        default_value=[],
        read_only=True,
        help="Names (list of str) of the L layers, the columns of z.",
    ).tag(sync=True)
    auroc = traitlets.List(
        traitlets.Float(),
        default_value=[],
        read_only=True,
        help="AUROC (L floats in [0, 1], NaN if undefined) of kNN deviation for misclassified vs correct samples.",
    ).tag(sync=True)
    layer = traitlets.Unicode("", help="Layer outlined in the heatmap (str): one of layer_names.").tag(sync=True)
    threshold = traitlets.Float(
        2.0, help="z above which a sample has diverged (float, finite); a change only re-orders rows."
    ).tag(sync=True)
    sort_by = traitlets.Unicode(
        "divergence", help="Row order (str): 'divergence', 'max_z', 'label' or 'index' (see sort_rows)."
    ).tag(sync=True)
    k = traitlets.Int(10, help="Neighbour count (int, 1..session.k_max) of the kNN deviation.").tag(sync=True)
    selection = traitlets.List(
        traitlets.Int(),
        default_value=[],
        help="Indices (list of int) of the selected samples; when not empty only they are shown. A row click sets it.",
    ).tag(sync=True)
    hovered = traitlets.Int(-1, help="Index (int) of the sample under the mouse, -1 if none.").tag(sync=True)
    size = traitlets.Int(440, help="Heatmap height in CSS pixels (int).").tag(sync=True)
    width = traitlets.Int(360, help="Heatmap width in CSS pixels (int).").tag(sync=True)
    title = traitlets.Unicode("", read_only=True, help="Title line above the heatmap (str), set by the view.").tag(
        sync=True
    )

    added_groups = traitlets.List(
        traitlets.Dict(),
        default_value=[],
        help="Added sample groups (Session.add_samples) drawn below the samples: list of dict with 'name' (str), "
        "'start' (int, first row of z), 'count' (int) and 'k' (int, the map's k, at which their z is read); their rows "
        "have row_index -1, -2, ...",
    ).tag(sync=True)

    @property
    def n_rows(self) -> int:
        """Number of samples shown (rows of ``z``; 0 before the first result)."""
        return 0 if self.row_index is None else int(self.row_index.shape[0])

    _renamed_keywords = {"current_layer": "layer"}

    def __init__(self, source: Session | DeviationProfile, *, labels: ArrayLike | None = None, **kwargs: Any):
        from geowidgets.geometry import DeviationProfile

        self.session: Session | None = source if isinstance(source, Session) else None
        self._static: DeviationProfile | None = None
        self._profile: DeviationProfile | None = None
        if self.session is not None:
            if labels is not None:
                raise TypeError("labels come from the session; pass them to Session")
            layers = list(self.session.layers)
            self._labels = self.session.labels
            self._n = self.session.n
        elif isinstance(source, DeviationProfile):
            self._static = _numpy_profile(source)
            layers = [str(name) for name in source.layers]
            self._n = int(self._static.z.shape[1])
            self._labels = None if labels is None else np.asarray(labels)
            if self._labels is not None and self._labels.shape != (self._n,):
                raise ValueError(
                    f"labels must have shape ({self._n},), one per profile sample, got {self._labels.shape}"
                )
            kwargs.setdefault("threshold", float(source.threshold))
        else:
            raise ValueError(
                f"DeviationMap needs a geowidgets Session or a geo.DeviationProfile, got {type(source).__name__}"
            )
        self._layers = layers
        if "current_layer" not in kwargs:
            kwargs.setdefault("layer", layers[-1])
        super().__init__(**kwargs)
        self.set_trait("layer_names", layers)
        self.observe(self._on_rows, names=["threshold", "sort_by", "selection"])
        if self._static is not None:
            self.set_trait("k", int(self._static.k))
            self._apply_profile(self._static)
            return
        self.observe(self._on_k, names=["k"])
        self._on_k()

    def __repr__(self) -> str:
        mode = "live" if self.session is not None else "static"
        return f"DeviationMap(N={self._n}, layers={len(self._layers)}, k={self.k}, threshold={self.threshold}, {mode})"

    current_layer = renamed_alias("current_layer", "layer")

    @traitlets.validate("k")
    def _check_k(self, proposal: dict) -> int:
        if self.session is None:
            static = self._static
            assert static is not None  # a view without a session shows a fixed profile
            if proposal["value"] == static.k:
                return proposal["value"]
            raise ValueError(
                f"this DeviationMap shows a fixed geo.DeviationProfile (k={static.k}), so k cannot change; "
                "pass a geowidgets Session to make it live"
            )
        return self.session.check_k(proposal["value"])

    @traitlets.validate("threshold")
    def _check_threshold(self, proposal: dict) -> float:
        v = float(proposal["value"])
        if not np.isfinite(v):
            raise ValueError(f"threshold must be finite, got {v}")
        return v

    @traitlets.validate("sort_by")
    def _check_sort(self, proposal: dict) -> str:
        if proposal["value"] not in SORTS:
            raise ValueError(f"sort_by must be one of {SORTS}, got {proposal['value']!r}")
        if proposal["value"] == "label" and self._labels is None:
            raise ValueError("sort_by='label' needs labels; this view has none")
        return proposal["value"]

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        if self.session is not None:
            return self.session.check_layer(proposal["value"])
        if proposal["value"] not in self._layers:
            raise KeyError(f"unknown layer {proposal['value']!r}; this profile has layers {self._layers}")
        return proposal["value"]

    def _on_k(self, change: dict | None = None) -> None:
        s, k = self._live, self.k
        # Re-reading the tables is O(N) per layer: inline (no thread) only while that stays well under ~100 ms.
        small = s.n * len(s.layers) <= INLINE_CELLS
        cheap = small and s.captured and all(s.has_tables(layer) for layer in s.layers)
        self.lane("matrix").submit(
            lambda: s.deviation_profile(k),
            self._apply_profile,
            inline=cheap,
            message="computing kNN deviations at every layer…",
        )

    def _apply_profile(self, profile: DeviationProfile) -> None:
        self._profile = profile
        self.set_trait("auroc", [float(a) for a in profile.auroc])
        self._apply_rows()

    def _on_rows(self, change: dict | None = None) -> None:
        if self._profile is None or self.lane("matrix").busy:
            return  # the matrix being computed applies the current rows when it lands
        self.lane("rows").submit(lambda: None, lambda _: self._apply_rows(), inline=True)

    def refresh_added(self) -> None:
        """Redraw with the session's current added sample groups (rows after the samples)."""
        if self._profile is not None:
            with self.hold_sync():
                self._apply_rows()
                self.revision += 1

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Sample indices in display order (the selection if any, else every sample), and divergence layers."""
        if self._profile is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
        profile = self._profile.with_threshold(self.threshold)
        z, divergence = profile.z, np.asarray(profile.divergence_layer).astype(np.int32)
        sel = np.array([i for i in self.selection if 0 <= i < self._n], dtype=np.int64)
        rows = np.unique(sel) if sel.size else np.arange(self._n)
        return sort_rows(z, divergence, rows, self.sort_by, self._labels), divergence

    def _apply_rows(self) -> None:
        order, divergence = self.rows()
        profile = self._profile
        assert profile is not None  # rows() answers only once a profile is held
        z = profile.z
        z_rows, index, div = z[:, order].T, order.astype(np.int32), divergence[order].astype(np.int32)
        groups = [] if self.session is None else list(self.session.added.values())
        k = int(profile.k)  # the k of the samples' rows: added groups are re-read at it too
        if groups:  # added samples after the session's rows, in their groups, with negative row indices
            from geowidgets import geometry as geo

            added_z = [g.deviation(k) for g in groups]  # O(M) re-read of each group's k_max tables
            z_rows = np.concatenate([z_rows, *(gz.T for gz in added_z)])
            added_div = [np.asarray(geo.divergence_layers(gz, self.threshold), dtype=np.int32) for gz in added_z]
            div = np.concatenate([div, *added_div])
            n_added = sum(g.n for g in groups)
            index = np.concatenate([index, -1 - np.arange(n_added, dtype=np.int32)])
        starts = np.cumsum([order.size] + [g.n for g in groups])
        added = [{"name": g.name, "start": int(a), "count": g.n, "k": k} for g, a in zip(groups, starts)]
        self.set_trait("z", np.ascontiguousarray(z_rows, dtype=np.float32))
        self.set_trait("row_index", index.astype(np.int32))
        self.set_trait("divergence", div.astype(np.int32))
        self.added_groups = added
        plural = "" if order.size == 1 else "s"
        shown = f"{order.size} selected sample{plural}" if self.selection else f"all {order.size} samples"
        fixed = " · static profile: k is fixed" if self.session is None else ""
        undefined = getattr(profile, "undefined", {})
        flat = (
            f" · z undefined (grey) at {', '.join(map(str, undefined))}: every reference point at the same distance"
            if undefined
            else ""
        )
        self.set_trait(
            "title",
            f"kNN deviation z (k={self.k}) · {shown} · sorted by {self.sort_by.replace('_', ' ')}{fixed}{flat}",
        )


def _numpy_profile(profile: DeviationProfile) -> DeviationProfile:
    """The profile with its arrays as numpy (a profile of tensors is moved to the CPU once)."""
    import dataclasses

    def numpy(x: Any) -> Any:
        if x is None or isinstance(x, np.ndarray):
            return x
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    names = ("distance", "z", "percentile", "baseline_mean", "baseline_std", "divergence_layer", "auroc")
    return dataclasses.replace(profile, **{name: numpy(getattr(profile, name)) for name in names})
