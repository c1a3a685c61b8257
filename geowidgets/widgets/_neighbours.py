"""Neighbour highlight of the Explorer: the k nearest neighbours of the hovered or clicked sample, in every view."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from geowidgets.session._neighbours import neighbours_of

if TYPE_CHECKING:
    from geowidgets.widgets._explorer import Explorer

__all__ = ["NeighbourLink", "focus_index"]


def focus_index(hovered: int, selection: list[int]) -> int:
    """The sample whose neighbours are shown: the hovered one, else the one clicked (a one-sample selection), else -1.

    Examples
    --------
    >>> focus_index(-1, [7]), focus_index(3, [7]), focus_index(-1, [1, 2])
    (7, 3, -1)
    """
    if hovered >= 0:
        return int(hovered)
    return int(selection[0]) if len(selection) == 1 else -1


class NeighbourLink:
    """Keeps the Explorer's ``neighbours`` and every view's highlight on the focus sample's k nearest neighbours.

    The focus is :func:`focus_index` of the Explorer's ``hovered`` and ``selection``; its
    neighbours are row ``focus`` of the current layer's cached kNN graph at the current ``k``
    (:func:`geowidgets.session._neighbours.neighbours_of`), so a hover, a click, a k move or a
    layer move re-reads one row. Before the layer's graph exists the search runs on the
    embedding's worker (newest request wins).
    """

    def __init__(self, explorer: Explorer):
        self.explorer = explorer
        explorer.observe(self.update, names=["hovered", "selection", "k", "layer"])

    def update(self, change: dict | None = None) -> None:
        """Recompute the neighbours of the current focus (clear them when there is none)."""
        ex = self.explorer
        s, layer, k = ex.session, ex.layer, ex.k
        focus = focus_index(ex.hovered, list(ex.selection))
        lane = ex.embedding.lane("neighbours")
        if focus < 0 or focus >= s.n:
            lane.cancel()
            self._show(-1, np.zeros(0, np.int64), np.zeros(0, np.float32))
            return
        lane.submit(
            lambda: (focus, *neighbours_of(s, layer, focus, k)),
            lambda result: self._show(*result),
            inline=s.captured and s.has_graph(layer),
            message=f"finding the neighbours of sample {focus} in {layer}…",
        )

    def _show(self, focus: int, idx: Any, dist: Any) -> None:
        ex = self.explorer
        neighbours = [int(i) for i in idx]
        distances = [float(d) for d in dist]
        views = [v for v in (ex.embedding, ex.slice, ex.deviation_map) if v is not None]
        for view in views:
            with view.hold_sync():
                view.neighbour_of = focus
                view.neighbours = neighbours
                view.neighbour_distances = distances
        with ex.hold_trait_notifications():
            ex.neighbour_of = focus
            ex.neighbours = neighbours
            ex.neighbour_distances = distances
