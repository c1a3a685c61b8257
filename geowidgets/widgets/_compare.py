"""CompareView: two models (or two checkpoints) layer by layer, CKA / mutual-kNN heatmap and linked embeddings."""

from __future__ import annotations

from typing import Any

import anywidget
import ipywidgets
import numpy as np
import pandas as pd
import traitlets
from torch import nn

from geowidgets.session import Session
from geowidgets.widgets._base import check_keywords
from geowidgets.widgets._embedding import EmbeddingView

__all__ = ["CompareView", "HeatmapGrid"]

METRICS = ("cka", "mutual_knn")
_TITLES = {"cka": "linear CKA", "mutual_knn": "mutual kNN overlap"}

# A small grid of DOM cells (one <div> per layer pair): each cell is a click target with its own
# data attributes, so a click or a browser test addresses a cell without pixel arithmetic.
_HEATMAP_ESM = r"""
function render({ model, el }) {
  const root = document.createElement('div');
  root.className = 'gw-heatmap';
  root.dataset.gwView = 'compare-heatmap';
  el.appendChild(root);
  function draw() {
    const rows = model.get('row_names'), cols = model.get('col_names');
    const values = model.get('values'), colors = model.get('colors'), cell = model.get('cell');
    const size = model.get('cell_size');
    root.replaceChildren();
    const title = document.createElement('div');
    title.className = 'gw-heatmap-title';
    title.textContent = model.get('title');
    title.style.cssText = 'font: 12px sans-serif; margin: 2px 0 4px 0;';
    root.appendChild(title);
    const grid = document.createElement('div');
    grid.style.cssText = `display: grid; grid-template-columns: max-content repeat(${cols.length}, ${size}px);` +
      'gap: 1px; font: 10px sans-serif; align-items: center;';
    grid.appendChild(document.createElement('div'));
    for (const c of cols) {
      const h = document.createElement('div');
      h.textContent = c; h.title = c;
      h.style.cssText = 'overflow: hidden; text-overflow: ellipsis; white-space: nowrap; text-align: center;';
      grid.appendChild(h);
    }
    rows.forEach((r, i) => {
      const h = document.createElement('div');
      h.textContent = r; h.style.cssText = 'padding-right: 4px; text-align: right; white-space: nowrap;';
      grid.appendChild(h);
      cols.forEach((c, j) => {
        const v = values[i][j];
        const d = document.createElement('div');
        d.className = 'gw-heatmap-cell';
        d.dataset.gwCell = `${i},${j}`;
        d.dataset.value = String(v);
        d.title = `${r} × ${c}: ${Number(v).toFixed(3)}`;
        const on = cell.length === 2 && cell[0] === i && cell[1] === j;
        if (on) d.dataset.selected = 'true';
        d.style.cssText = `height: ${size}px; background: ${colors[i * cols.length + j]}; cursor: pointer;` +
          'display: flex; align-items: center; justify-content: center; box-sizing: border-box;' +
          `color: ${v > 0.6 ? '#222' : '#fff'};` + (on ? 'outline: 3px solid #e15759; outline-offset: -3px;' : '');
        d.textContent = Number.isFinite(v) ? v.toFixed(2) : '–';
        d.addEventListener('click', () => { model.set('cell', [i, j]); model.save_changes(); });
        grid.appendChild(d);
      });
    });
    root.appendChild(grid);
    const note = document.createElement('div');
    note.style.cssText = 'font: 10px sans-serif; color: #555; margin-top: 4px;';
    note.textContent = 'rows: model A · columns: model B · click a cell to compare the two layers';
    root.appendChild(note);
    root.dataset.gwDrawn = String(model.get('revision'));
  }
  model.on('change', draw);
  draw();
}
export default { render };
"""


class HeatmapGrid(anywidget.AnyWidget):
    """A labelled grid of coloured, clickable cells (rows × columns); a click sets ``cell``."""

    _esm = _HEATMAP_ESM
    values: traitlets.List = traitlets.List(help="Cell values (list of list of float), rows × columns.").tag(sync=True)
    colors = traitlets.List(traitlets.Unicode(), help="CSS colour (str) of each cell, row-major.").tag(sync=True)
    row_names = traitlets.List(traitlets.Unicode(), help="Row labels (list of str).").tag(sync=True)
    col_names = traitlets.List(traitlets.Unicode(), help="Column labels (list of str).").tag(sync=True)
    cell = traitlets.List(traitlets.Int(), default_value=[], help="[row, column] of the chosen cell.").tag(sync=True)
    title = traitlets.Unicode("", help="Title line (str).").tag(sync=True)
    cell_size = traitlets.Int(34, help="Cell height and width in CSS pixels (int).").tag(sync=True)
    revision = traitlets.Int(0, help="Counter (int) bumped at each data change.").tag(sync=True)


def _viridis(values: np.ndarray, lo: float, hi: float) -> list[str]:
    from bokeh.palettes import Viridis256

    t = np.clip((np.nan_to_num(values, nan=lo) - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    return [Viridis256[int(round(x * 255))] if np.isfinite(v) else "#dddddd" for x, v in zip(t.ravel(), values.ravel())]


class CompareView(ipywidgets.VBox):
    """Two models compared layer by layer: a layers(A) × layers(B) heatmap and the chosen pair's embeddings.

    The heatmap shows linear CKA (``geo.cka_matrix``, Kornblith et al. 2019) or the mutual kNN
    overlap (``geo.mutual_knn`` at ``k``) between every layer of model A (rows) and of model B
    (columns), on the same samples. Clicking a cell (or setting ``cell``) shows those two layers'
    embeddings side by side; they are linked: a selection or a hover in one highlights the same
    samples in the other (``selection`` and ``hovered`` are shared, as in the Explorer).

    Parameters
    ----------
    model_a, model_b : nn.Module or Session
        The two models (two seeds, two checkpoints, two architectures), or two sessions over the
        same samples.
    inputs : Tensor, ndarray or sized Dataset, optional
        Samples ``[N, ...]`` (with models).
    labels : array-like, optional
        True classes ``[N]``.
    layers, layers_b : list of str, optional
        Layers of A and of B (default: the models' blocks; ``layers_b`` defaults to ``layers``).
    metric : {"cka", "mutual_knn"}
        The heatmap's similarity (a toggle switches it).
    k : int
        Neighbours of the mutual kNN overlap.
    method : {"umap", "pca"}
        Embedding method of the two views.
    size : int
        Size of each embedding in CSS pixels.
    **session_options
        Other :class:`~geowidgets.Session` arguments (``reference``, ``k_max``, ``device``, ...),
        used for both models.

    Attributes
    ----------
    session_a, session_b : Session
    heatmap : HeatmapGrid
    embedding_a, embedding_b : EmbeddingView
    matrices : dict of str to pandas.DataFrame
        The similarity matrix of each metric computed so far (rows A's layers, columns B's).

    Raises
    ------
    ValueError
        Two sessions over different numbers of samples, an unknown metric.
    TypeError
        Unknown keywords.

    Examples
    --------
    >>> view = CompareView(model_seed0, model_seed1, x, y, method="pca")  # doctest: +SKIP
    >>> view.cell = [0, 0]  # doctest: +SKIP
    """

    metric = traitlets.Unicode("cka", help='Similarity shown (str): "cka" or "mutual_knn".')
    cell = traitlets.List(traitlets.Int(), default_value=[], help="[row, column] (A's layer, B's layer) shown.")
    k = traitlets.Int(10, help="Neighbour count (int) of the mutual kNN overlap.")
    selection = traitlets.List(traitlets.Int(), default_value=[], help="Indices (list of int) selected in either view.")
    hovered = traitlets.Int(-1, help="Index (int) of the sample under the mouse in either view, -1 if none.")

    def __init__(
        self,
        model_a: nn.Module | Session,
        model_b: nn.Module | Session,
        inputs: Any = None,
        labels: Any = None,
        *,
        layers: list[str] | None = None,
        layers_b: list[str] | None = None,
        metric: str = "cka",
        k: int = 10,
        method: str = "pca",
        size: int = 320,
        **session_options: Any,
    ):
        allowed = ["reference", "k_max", "device", "metric_space", "class_names", "images", "batch_size", "pooling"]
        check_keywords("CompareView", session_options, allowed)
        if isinstance(model_a, Session) and isinstance(model_b, Session):
            self.session_a, self.session_b = model_a, model_b
        else:
            opts = {("metric" if key == "metric_space" else key): v for key, v in session_options.items()}
            if not (isinstance(model_a, nn.Module) and isinstance(model_b, nn.Module)):
                raise TypeError("CompareView takes two models or two Sessions, not one of each")
            self.session_a = Session(model_a, inputs, labels, layers, **opts)
            self.session_b = Session(model_b, inputs, labels, layers_b or layers, **opts)
        if self.session_a.n != self.session_b.n:
            raise ValueError(
                f"the two sessions hold {self.session_a.n} and {self.session_b.n} samples; they must match"
            )
        self.matrices: dict[str, pd.DataFrame] = {}
        last = [len(self.session_a.layers) - 1, len(self.session_b.layers) - 1]
        self.heatmap = HeatmapGrid(
            row_names=list(self.session_a.layers), col_names=list(self.session_b.layers), cell=last
        )
        self.heatmap.add_class("gw-compare-heatmap")
        la, lb = self.session_a.layers[-1], self.session_b.layers[-1]
        self.embedding_a = EmbeddingView(self.session_a, layer=la, method=method, size=size)
        self.embedding_b = EmbeddingView(self.session_b, layer=lb, method=method, size=size)
        self.metric_toggle = ipywidgets.ToggleButtons(
            options=[("CKA", "cka"), ("mutual kNN", "mutual_knn")], value="cka", description="similarity"
        )
        self.metric_toggle.add_class("gw-compare-metric")
        super().__init__(
            children=[self.metric_toggle, ipywidgets.HBox([self.heatmap, self.embedding_a, self.embedding_b])]
        )
        self.add_class("gw-compare")
        self.set_trait("k", self.session_a.check_k(k))
        self.set_trait("cell", last)
        traitlets.link((self.metric_toggle, "value"), (self, "metric"))
        traitlets.link((self.heatmap, "cell"), (self, "cell"))
        for view in (self.embedding_a, self.embedding_b):
            traitlets.link((view, "selection"), (self, "selection"))
            traitlets.link((view, "hovered"), (self, "hovered"))
        self.observe(self._on_metric, names=["metric", "k"])
        self.observe(self._on_cell, names=["cell"])
        self.metric = metric
        self._on_metric()

    @traitlets.validate("metric")
    def _check_metric(self, proposal: dict) -> str:
        if proposal["value"] not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {proposal['value']!r}")
        return proposal["value"]

    @traitlets.validate("cell")
    def _check_cell(self, proposal: dict) -> list[int]:
        c = [int(x) for x in proposal["value"]]
        na, nb = len(self.session_a.layers), len(self.session_b.layers)
        if len(c) != 2 or not (0 <= c[0] < na and 0 <= c[1] < nb):
            raise ValueError(f"cell must be [row, column] with row < {na} and column < {nb}, got {c}")
        return c

    def matrix(self, metric: str | None = None) -> pd.DataFrame:
        """The layers(A) × layers(B) similarity of ``metric`` (default the shown one), computed once."""
        from geowidgets import geometry as geo

        metric = self.metric if metric is None else metric
        key = metric if metric == "cka" else f"{metric}@{self.k}"
        if key not in self.matrices:
            sa, sb = self.session_a, self.session_b
            acts_a = {n: sa.features(n) for n in sa.layers}
            acts_b = {n: sb.features(n) for n in sb.layers}
            if metric == "cka":
                m = geo.cka_matrix(acts_a, acts_b)
            else:
                out = np.array([[geo.mutual_knn(acts_a[a], acts_b[b], k=self.k) for b in sb.layers] for a in sa.layers])
                m = pd.DataFrame(out, index=list(sa.layers), columns=list(sb.layers))
            self.matrices[key] = m
        return self.matrices[key]

    def _on_metric(self, change: dict | None = None) -> None:
        m = self.matrix()
        values = m.to_numpy(dtype=np.float64)
        with self.heatmap.hold_sync():
            self.heatmap.values = [[float(v) for v in row] for row in values]
            # Colours span the matrix's own range (similarities of related layers often all sit near 1).
            finite = values[np.isfinite(values)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            self.heatmap.colors = _viridis(values, lo, hi)
            extra = f" (k={self.k})" if self.metric == "mutual_knn" else ""
            self.heatmap.title = (
                f"{_TITLES[self.metric]}{extra}: layers of A (rows) × B (columns) · colour {lo:.2f} to {hi:.2f}"
            )
            self.heatmap.revision += 1

    def _on_cell(self, change: dict) -> None:
        i, j = self.cell
        self.embedding_a.layer = self.session_a.layers[i]
        self.embedding_b.layer = self.session_b.layers[j]
        self.heatmap.revision += 1

    def wait(self, timeout: float | None = 120.0) -> bool:
        """Block until both embeddings have applied their results (scripts and tests)."""
        return self.embedding_a.wait(timeout) and self.embedding_b.wait(timeout)

    def close(self) -> None:
        """Close the views and controls (the sessions stay usable)."""
        for name in ("embedding_a", "embedding_b", "heatmap", "metric_toggle"):
            widget = getattr(self, name, None)  # absent when the constructor failed
            if widget is not None:
                widget.close()
        super().close()
