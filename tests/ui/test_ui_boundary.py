"""Boundary geometry in a real browser: the slice draws the decision boundary as contour lines where the
kernel's class grid changes, an alt-click on a sample draws CGBA's boundary search from it (ray, arcs,
boundary point) with the distance geo.boundary_search finds, and the plane dropdown re-slices.

One notebook (``notebooks/boundary.ipynb``: a toy classifier on 2-D blobs, a SliceView in input space)
and one kernel serve the module; the tests run in file order. The screenshots (``boundary_contours.png``,
``boundary_search.png``) are kept in ``tests/ui/artifacts``.
"""

from __future__ import annotations

import numpy as np
import pytest
from labdriver import nonblank_fraction


@pytest.fixture(scope="module")
def lab(module_lab):
    module_lab.open_notebook("boundary.ipynb")
    module_lab.run_all()
    root = module_lab.page.locator('[data-gw-view="slice"]').first
    root.wait_for()
    module_lab.wait_drawn(root)
    return module_lab


def _root(lab):
    return lab.page.locator('[data-gw-view="slice"]').first


def _settle(lab) -> None:
    lab.kernel_exec("assert view.wait(120), 'the slice did not finish'")
    lab.wait_drawn(_root(lab))
    lab.page.wait_for_timeout(500)


def _edges(classes: np.ndarray) -> np.ndarray:
    """Midpoints (column, row) in grid units of the edges between 4-neighbouring cells of different classes."""
    g = classes.shape[0]
    mids = []
    for r in range(g):
        for c in range(g):
            if c + 1 < g and classes[r, c] != classes[r, c + 1]:
                mids.append((c + 0.5, r))
            if r + 1 < g and classes[r, c] != classes[r + 1, c]:
                mids.append((c, r + 0.5))
    return np.asarray(mids, dtype=float)


def _grid_to_screen(colrow: np.ndarray, g: int, box: dict) -> np.ndarray:
    """Grid units (column, row; row 0 at the bottom) -> pixels in the canvas; the image spans G cells."""
    x = (colrow[:, 0] + 0.5) / g * box["width"]
    y = (g - 0.5 - colrow[:, 1]) / g * box["height"]
    return np.stack([x, y], 1)


def test_contour_lines_follow_the_class_grid(lab) -> None:
    _settle(lab)
    root = _root(lab)
    canvas = root.locator("canvas").first
    classes = np.asarray(lab.kernel_value("np.asarray(view.classes).tolist()"))
    g = classes.shape[0]
    mids = _edges(classes)
    assert len(mids) > 10, "the toy classifier's slice should hold several class changes"
    # The front end draws one segment per differing neighbour pair (counted in numpy here).
    lab.page.wait_for_function(
        "n => document.querySelector('[data-gw-view=\"slice\"]').dataset.gwBoundarySegments === String(n)",
        arg=len(mids),
        timeout=60_000,
    )
    with_lines = lab.pixels(canvas).astype(int)
    lab.kernel_exec("view.show_boundary = False")
    lab.page.wait_for_function(
        "() => document.querySelector('[data-gw-view=\"slice\"]').dataset.gwBoundarySegments === 'off'",
        timeout=60_000,
    )
    lab.page.wait_for_timeout(800)
    without = lab.pixels(canvas).astype(int)
    lab.kernel_exec("view.show_boundary = True")
    lab.page.wait_for_function(
        "n => document.querySelector('[data-gw-view=\"slice\"]').dataset.gwBoundarySegments === String(n)",
        arg=len(mids),
        timeout=60_000,
    )
    assert with_lines.shape == without.shape
    h, w = with_lines.shape[:2]
    box = {"width": w, "height": h}
    changed = np.abs(with_lines - without).sum(-1) > 60
    assert changed.mean() > 0.002, f"the boundary lines changed only {changed.mean():.2%} of the pixels"
    # Every changed pixel lies on a class change of the kernel's grid (within a few pixels of an edge)...
    near = np.zeros((h, w), dtype=bool)
    pix = _grid_to_screen(mids, g, box)
    cell = max(w, h) / g
    reach = int(np.ceil(cell)) + 3
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    for x, y in np.rint(pix).astype(int):
        ys, xs = np.clip(y + yy, 0, h - 1), np.clip(x + xx, 0, w - 1)
        near[ys, xs] = True
    on_edges = changed[near].sum() / max(changed.sum(), 1)
    assert on_edges > 0.97, f"only {on_edges:.1%} of the line pixels lie at a class change of the grid"
    # ... and the lines run along every part of the boundary (most edge midpoints have a line pixel by them).
    hit = [changed[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].any() for x, y in np.rint(pix).astype(int)]
    assert np.mean(hit) > 0.8, f"only {np.mean(hit):.0%} of the class changes have a line drawn at them"
    lab.screenshot("boundary_contours", root)


def test_alt_click_draws_the_boundary_search_and_reports_its_distance(lab) -> None:
    _settle(lab)
    root = _root(lab)
    canvas = root.locator("canvas").first
    box = canvas.bounding_box()
    pts = np.asarray(lab.kernel_value("np.asarray(view.points, dtype=float).tolist()"))
    ids = np.asarray(lab.kernel_value("np.asarray(view.point_index).tolist()"))
    extent, g = lab.kernel_value("view.extent"), lab.kernel_value("view.resolution")
    # planeToPixel (js/codecs.js): the image covers the extent padded by half a cell on each side.
    da, db = (extent[1] - extent[0]) / (g - 1) / 2, (extent[3] - extent[2]) / (g - 1) / 2
    a_lo, a_hi, b_lo, b_hi = extent[0] - da, extent[1] + da, extent[2] - db, extent[3] + db
    px = (pts[:, 0] - a_lo) / (a_hi - a_lo) * box["width"]
    py = (b_hi - pts[:, 1]) / (b_hi - b_lo) * box["height"]
    inside = (px > 60) & (px < box["width"] - 60) & (py > 60) & (py < box["height"] - 60)
    # The sample farthest from the boundary (along its margin gradient, Session.boundary_distances) among
    # those away from the frame's edges: its ray and arcs are long enough to see.
    far = np.asarray(lab.kernel_value("session.boundary_distances('input').tolist()"))[ids]
    i = int(np.flatnonzero(inside)[np.argmax(np.where(np.isfinite(far), far, -1)[inside])])
    before = lab.pixels(canvas)
    canvas.click(position={"x": float(px[i]), "y": float(py[i])}, modifiers=["Alt"])
    lab.page.wait_for_function(
        "n => document.querySelector('[data-gw-view=\"slice\"]').dataset.gwBoundarySearch === String(n)",
        arg=int(ids[i]),
        timeout=90_000,
    )
    lab.kernel_exec("assert view.wait(120)")
    assert lab.kernel_value("view.boundary_from") == int(ids[i])
    # The distance shown is geo.boundary_search's (CGBA semicircle search), recomputed here in the kernel.
    got, expected = lab.kernel_value(
        "[view.boundary_distance, geo.boundary_search(demo.model, demo.inputs[view.boundary_from], "
        "method='semicircle', data=demo.inputs.reshape(len(demo.inputs), -1)).distance]"
    )
    assert got == pytest.approx(expected, rel=1e-6)
    legend = root.locator(".gw-boundary-search").inner_text()
    assert f"#{int(ids[i])}" in legend and f"{expected:.4g}" in legend, legend
    lab.page.mouse.move(1, 1)  # the tooltip away from the picture
    lab.page.wait_for_timeout(600)
    after = lab.pixels(canvas)
    # The search is drawn: orange (#e65100) strokes appear by the sample, none were there before.
    orange = lambda im: np.abs(im.astype(int) - [230, 81, 0]).sum(-1) < 60  # noqa: E731
    assert orange(after).sum() > 30 and orange(after).sum() > 5 * orange(before).sum()
    ys, xs = np.nonzero(orange(after))
    assert np.min(np.hypot(xs - px[i], ys - py[i])) < 8, "the search is not drawn at the clicked sample"
    assert nonblank_fraction(after) > 0.5
    lab.screenshot("boundary_search", root)


def test_plane_dropdown_reslices(lab) -> None:
    root = _root(lab)
    select = root.locator("select.gw-plane-select")
    assert select.is_visible()
    options = select.locator("option").evaluate_all("opts => opts.map(o => o.value)")
    assert options == lab.kernel_value("view.plane_kinds")
    select.select_option("pca")
    lab.page.wait_for_function(
        "() => document.querySelector('[data-gw-view=\"slice\"] .gw-title').textContent.includes('plane: pca')",
        timeout=90_000,
    )
    assert lab.kernel_value("view.plane") == "pca"
    lab.kernel_exec("assert view.wait(120)")
    # The slice is the one through A along geo.plane_directions' top two principal axes.
    same = lab.kernel_value(
        "bool(np.array_equal(np.asarray(view.classes), np.asarray(geo.decision_slice(demo.model, "
        "geo.Plane.from_directions(demo.inputs[view.anchors[0]], *geo.plane_directions(demo.inputs, 'pca')), "
        "resolution=view.resolution, data=demo.inputs, margin=session.SLICE_MARGIN, "
        "carrier=demo.inputs[view.anchors[0]]).classes)))"
    )
    assert same
