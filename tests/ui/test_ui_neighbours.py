"""Neighbours and the temperature panel in a real browser.

Hovering a point in the embedding highlights its k nearest neighbours (in the current layer's space)
in the embedding, the slice and the deviation map, and the tooltip lists them; moving k changes the
highlight; moving T changes the temperature panel's histograms. One notebook
(``notebooks/neighbours.ipynb``: the toy moons MLP, PCA layouts) and one kernel serve the module;
the tests run in file order. Screenshots are kept in ``tests/ui/artifacts/``.
"""

from __future__ import annotations

import numpy as np
import pytest
from labdriver import pixel_difference

VIEWS = ("embedding", "slice", "deviation", "profile", "temperature")


@pytest.fixture(scope="module")
def lab(module_lab):
    return module_lab.open_explorer("neighbours.ipynb")


def _root(lab, view: str):
    return lab.explorer_view(view)


def _settle(lab) -> None:
    lab.settle_explorer(VIEWS)


def _dataset(lab, view: str, key: str) -> str | None:
    return _root(lab, view).evaluate(f"el => el.dataset.{key} ?? null")


def _wait_dataset(lab, view: str, key: str, value: str, what: str) -> None:
    lab.wait_until(
        f"() => document.querySelector('.gw-explorer [data-gw-view=\"{view}\"]')?.dataset.{key} === '{value}'",
        timeout=90,
        what=what,
    )


def _screen_points(lab) -> tuple[np.ndarray, dict]:
    flat = lab.kernel_value("np.frombuffer(ex.embedding.positions, dtype=np.float32).tolist()")
    xy = np.asarray(flat, dtype=float).reshape(-1, 2)
    canvas = _root(lab, "embedding").locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    return np.stack(
        [box["x"] + (xy[:, 0] + 1) / 2 * box["width"], box["y"] + (1 - xy[:, 1]) / 2 * box["height"]], 1
    ), box


def test_hover_highlights_the_neighbours_in_every_view(lab) -> None:
    _settle(lab)
    k = lab.kernel_value("ex.k")
    embedding = _root(lab, "embedding")
    lab.page.mouse.move(5, 5)
    before = lab.pixels(embedding)  # scrolls the embedding into view before the points are located
    points, box = _screen_points(lab)
    inside = (
        (points[:, 0] > box["x"] + 20)
        & (points[:, 0] < box["x"] + box["width"] - 20)
        & (points[:, 1] > box["y"] + 20)
        & (points[:, 1] < box["y"] + box["height"] - 20)
    )
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    i = int(np.where(inside, d.min(1), -1).argmax())  # the most isolated point inside the frame: one hit
    lab.page.mouse.move(box["x"] + 2, box["y"] + 2)
    lab.page.mouse.move(*points[i], steps=4)
    lab.wait_kernel_value("ex.hovered", lambda v: v == i)
    expected = lab.kernel_value(
        f"gw.geometry.knn(ex.session.features(ex.layer).numpy(), {k})[1][{i}].tolist()"
    )  # geo.knn on the current layer, computed in the kernel independently of the view
    lab.wait_kernel_value("ex.neighbours", lambda v: v == expected)
    for view in ("embedding", "slice", "deviation"):
        _wait_dataset(lab, view, "gwNeighbourOf", str(i), f"the {view} view to highlight the neighbours of #{i}")
    _wait_dataset(lab, "embedding", "gwNeighbours", str(k), f"the embedding to draw {k} neighbour rings")
    assert int(_dataset(lab, "deviation", "gwNeighbours")) == k  # every sample has a row
    assert 0 < int(_dataset(lab, "slice", "gwNeighbours")) <= k  # the slice shows the samples near its plane
    tooltip = embedding.locator(".gw-tooltip")
    lab.wait_until(
        "() => [...document.querySelectorAll('.gw-explorer .gw-tooltip')].some("
        "t => !t.hidden && t.querySelectorAll('.gw-tip-neighbour').length > 0)",
        what="the tooltip to list the neighbours",
    )
    text = tooltip.inner_text()
    layer = lab.kernel_value("ex.layer")
    assert f"{k} nearest in {layer}" in text, text
    for j in expected[:3]:
        assert f"#{j} · d=" in text, f"tooltip {text!r} should list neighbour #{j}"
    # The highlight is on screen: pixels around the neighbours changed (rings and lines).
    after = lab.pixels(embedding)
    assert pixel_difference(before, after) > 0.002
    frame = embedding.bounding_box()
    sx, sy = after.shape[1] / frame["width"], after.shape[0] / frame["height"]
    magenta = 0
    for j in expected:
        cx, cy = int((points[j, 0] - frame["x"]) * sx), int((points[j, 1] - frame["y"]) * sy)
        patch = after[max(cy - 9, 0) : cy + 10, max(cx - 9, 0) : cx + 10].astype(int)
        magenta += int(((patch[..., 0] > 170) & (patch[..., 1] < 90) & (patch[..., 2] > 80)).sum() >= 3)
    assert magenta >= k // 2, f"only {magenta} of {k} neighbours show the highlight colour"
    lab.screenshot("neighbours_hover", embedding)

    # A click (a one-sample selection) keeps the highlight when the mouse leaves; moving k changes it.
    lab.kernel_exec(f"ex.selection = [{i}]")
    lab.page.mouse.move(box["x"] - 30, box["y"] - 30)
    lab.wait_kernel_value("[ex.hovered, ex.neighbour_of]", lambda v: v == [-1, i])
    lab.kernel_exec("ex.k = 3")
    expected3 = lab.kernel_value(f"gw.geometry.knn(ex.session.features(ex.layer).numpy(), 3)[1][{i}].tolist()")
    lab.wait_kernel_value("ex.neighbours", lambda v: v == expected3)
    _wait_dataset(lab, "embedding", "gwNeighbours", "3", "the embedding to draw 3 neighbour rings after k = 3")
    # The deviation map now lists only the selected sample's row, so it marks the neighbours it shows: none.
    _wait_dataset(lab, "deviation", "gwNeighbourOf", str(i), "the deviation map to follow the clicked sample")
    assert _dataset(lab, "deviation", "gwNeighbours") == "0"
    lab.screenshot("neighbours_click_k3", embedding)
    lab.screenshot("neighbours_explorer", lab.page.locator('[data-gw-view="explorer"]'))
    lab.kernel_exec("ex.selection = []")
    _wait_dataset(lab, "embedding", "gwNeighbours", "0", "the highlight to go when nothing is hovered or clicked")
    _wait_dataset(lab, "slice", "gwNeighbourOf", "-1", "the slice's highlight to go too")
    lab.assert_clean()


def test_moving_temperature_changes_the_histograms(lab) -> None:
    _settle(lab)
    panel = _root(lab, "temperature")
    panel.scroll_into_view_if_needed()
    figures = panel.locator(".bk-Row, .bk-root, .bk-Figure").first
    figures.wait_for()
    lab.page.wait_for_timeout(500)
    readout = panel.locator(".gw-temperature-readout")
    assert "AUROC" in readout.inner_text() and "ECE" in readout.inner_text()
    before = lab.pixels(panel)
    lab.screenshot("temperature_panel_t1", panel)
    numbers = lab.kernel_value("[ex.temperature_panel.auroc, ex.temperature_panel.ece]")
    lab.kernel_exec("ex.temperature = 6.0")
    _settle(lab)
    lab.wait_until(
        "() => document.querySelector('.gw-explorer .gw-temperature-readout')?.innerText.includes('T=6')",
        what="the temperature panel's readout to show T=6",
    )
    changed = lab.wait_pixels_change(panel, before, minimum=0.01)
    assert changed >= 0.01, f"only {changed:.2%} of the panel's pixels changed when T moved"
    after = lab.kernel_value("[ex.temperature_panel.auroc, ex.temperature_panel.ece, ex.temperature_panel.temperature]")
    assert after[2] == 6.0 and after[1] != numbers[1]
    lab.screenshot("temperature_panel_t6", panel)
    lab.assert_clean()
