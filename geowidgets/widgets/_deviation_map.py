"""DeviationMap: samples x layers heatmap of kNN-deviation z-scores with divergence layers."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets

from geowidgets.session import Session
from geowidgets.widgets._base import STATIC, ViewBase
from geowidgets.widgets._codec import array_trait

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

    Rows are samples, columns layers; z is coloured on a diverging scale clipped at ±5, and each
    sample's divergence layer (first layer with ``z > threshold``) is marked. With a selection
    (e.g. a lasso in the embedding) only the selected samples are shown. Clicking a row selects
    that sample; the footer gives each layer's AUROC of misclassified samples vs the reference
    baseline. A k move re-averages the cached deviation tables; a threshold or sort change only
    re-orders.

    Parameters
    ----------
    session : Session
    k : int
    threshold : float
    sort_by : {"divergence", "max_z", "label", "index"}

    Examples
    --------
    >>> from geowidgets.datasets import toy_demo
    >>> from geowidgets.session import Session
    >>> demo = toy_demo("moons", n=200)
    >>> view = DeviationMap(Session(demo.model, demo.inputs, demo.labels, k_max=20), k=5)
    >>> _ = view.wait()
    >>> view.n_rows
    200
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
        traitlets.Unicode(), default_value=[], help="Names (list of str) of the L layers, the columns of z."
    ).tag(sync=True)
    auroc = traitlets.List(
        traitlets.Float(),
        default_value=[],
        help="AUROC (L floats in [0, 1], NaN if undefined) of kNN deviation for misclassified vs correct samples.",
    ).tag(sync=True)
    current_layer = traitlets.Unicode("", help="Layer outlined in the heatmap (str): one of layer_names.").tag(
        sync=True
    )
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
    title = traitlets.Unicode("", help="Title line above the heatmap (str), set by the view.").tag(sync=True)

    @property
    def n_rows(self) -> int:
        """Number of samples shown (rows of ``z``; 0 before the first result)."""
        return 0 if self.row_index is None else int(self.row_index.shape[0])

    def __init__(self, session: Session, **kwargs: Any):
        if not isinstance(session, Session):
            raise ValueError(f"DeviationMap needs a geowidgets Session, got {type(session).__name__}")
        self.session = session
        self._matrix: tuple[np.ndarray, np.ndarray] | None = None
        self._matrix_key: tuple | None = None
        kwargs.setdefault("current_layer", session.layers[-1])
        super().__init__(**kwargs)
        self.layer_names = list(session.layers)
        self.observe(self._on_k, names=["k"])
        self.observe(self._on_rows, names=["threshold", "sort_by", "selection"])
        self._on_k()

    @traitlets.validate("k")
    def _check_k(self, proposal: dict) -> int:
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
        if proposal["value"] == "label" and self.session.labels is None:
            raise ValueError("sort_by='label' needs labels; this session has none")
        return proposal["value"]

    @traitlets.validate("current_layer")
    def _check_current(self, proposal: dict) -> str:
        return self.session.check_layer(proposal["value"])

    def _on_k(self, change: dict | None = None) -> None:
        s, k = self.session, self.k
        # Re-averaging is O(N·k) per layer: inline (no thread) only while that stays well under ~100 ms.
        small = s.n * len(s.layers) <= INLINE_CELLS
        cheap = small and s.captured and all(s.has_tables(layer) for layer in s.layers)

        def compute():
            z, _ = s.deviation_matrix(k)
            return z, s.auroc(k)

        def apply(result):
            z, auroc = result
            self._matrix = z
            self.auroc = [float(a) for a in auroc]
            self._apply_rows()

        self.lane("matrix").submit(compute, apply, inline=cheap, message="computing kNN deviations at every layer…")

    def _on_rows(self, change: dict | None = None) -> None:
        if self._matrix is None or self.lane("matrix").busy:
            return  # the matrix being computed applies the current rows when it lands
        self.lane("rows").submit(lambda: None, lambda _: self._apply_rows(), inline=True)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Sample indices in display order (the selection if any, else every sample), and divergence layers."""
        if self._matrix is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
        z = self._matrix
        above = z > self.threshold
        divergence = np.where(above.any(0), above.argmax(0), -1).astype(np.int32)
        sel = np.array([i for i in self.selection if 0 <= i < self.session.n], dtype=np.int64)
        rows = np.unique(sel) if sel.size else np.arange(self.session.n)
        return sort_rows(z, divergence, rows, self.sort_by, self.session.labels), divergence

    def _apply_rows(self) -> None:
        order, divergence = self.rows()
        z = self._matrix
        self.set_trait("z", np.ascontiguousarray(z[:, order].T, dtype=np.float32))
        self.set_trait("row_index", order.astype(np.int32))
        self.set_trait("divergence", divergence[order].astype(np.int32))
        shown = f"{order.size} selected samples" if self.selection else f"all {order.size} samples"
        self.title = f"kNN deviation z (k={self.k}) · {shown} · sorted by {self.sort_by.replace('_', ' ')}"
