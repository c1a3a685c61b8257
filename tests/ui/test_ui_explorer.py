"""The Explorer in a real browser: every view draws, the controls change the pictures and the Python state,
a click or a lasso in the embedding reaches ``ex.selection``, and hovering shows a tooltip.

One notebook (``notebooks/explorer.ipynb``: the toy moons MLP, PCA layouts) and one kernel serve the whole
module; the tests run in file order and each starts from the state the previous one left.
"""

from __future__ import annotations

import numpy as np
import pytest
from labdriver import nonblank_fraction, pixel_difference

VIEWS = ("embedding", "slice", "deviation", "profile")


@pytest.fixture(scope="module")
def lab(module_lab):
    return module_lab.open_explorer("explorer.ipynb")


def _root(lab, view: str):
    return lab.explorer_view(view)


def _settle(lab) -> None:
    lab.settle_explorer(VIEWS)


def _snapshot(lab) -> dict[str, np.ndarray]:
    return {view: lab.pixels(_root(lab, view)) for view in VIEWS}


def test_every_view_draws_something(lab) -> None:
    _settle(lab)
    explorer = lab.page.locator('[data-gw-view="explorer"]')
    assert int(lab.view_state(explorer)["drawn"]) >= 1
    for view in VIEWS:
        root = _root(lab, view)
        assert root.locator("canvas").count() >= 1, f"{view}: no canvas"
        image = lab.pixels(root)
        share = nonblank_fraction(image)
        assert share > 0.02, f"{view}: only {share:.1%} of the pixels differ from the background"
        lab.screenshot(f"explorer_{view}", root)
    lab.screenshot("explorer", explorer)
    assert lab.kernel_value("[ex.status, ex.layer, ex.k]") == ["idle", "fc3", 10]
    lab.assert_clean()


def test_layer_dropdown_and_scrubber_change_views_and_state(lab) -> None:
    before = _snapshot(lab)
    lab.page.locator(".gw-layer-dropdown select").select_option("relu1")
    lab.wait_kernel_value("[ex.layer, ex.embedding.layer, ex.slice.layer]", lambda v: v == ["relu1"] * 3)
    _settle(lab)
    after = _snapshot(lab)
    for view in ("embedding", "slice", "profile"):
        diff = pixel_difference(before[view], after[view])
        assert diff > 0.005, f"{view}: changing the layer changed only {diff:.2%} of the pixels"
    assert lab.kernel_value("ex.layer_scrubber.value") == 1

    handle = lab.page.locator(".gw-layer-scrubber .noUi-handle")
    handle.focus()
    handle.press("ArrowLeft")
    lab.wait_kernel_value("ex.layer", lambda v: v == "fc1")
    _settle(lab)
    assert lab.page.locator(".gw-layer-dropdown select").input_value() == "fc1"
    moved = lab.pixels(_root(lab, "embedding"))
    assert pixel_difference(moved, after["embedding"]) > 0.005
    lab.screenshot("explorer_after_layer_change", lab.page.locator('[data-gw-view="explorer"]'))
    lab.assert_clean()


def test_k_slider_recolours_and_reaches_python(lab) -> None:
    before = _snapshot(lab)
    k0 = lab.kernel_value("ex.k")
    handle = lab.page.locator(".gw-k-slider .noUi-handle")
    handle.focus()
    for _ in range(3):
        handle.press("PageUp")
    lab.page.wait_for_timeout(300)
    k1 = int(lab.page.locator(".gw-k-slider .widget-readout").inner_text())
    assert k1 > k0 + 5, f"three PageUp presses moved the k slider only from {k0} to {k1}"
    lab.wait_kernel_value("ex.k", lambda v: v == k1)
    assert lab.kernel_value("[ex.embedding.k, ex.deviation_map.k]") == [k1, k1]
    _settle(lab)
    after = _snapshot(lab)
    for view in ("embedding", "deviation"):
        diff = pixel_difference(before[view], after[view])
        assert diff > 0.001, f"{view}: k {k0} -> {k1} changed only {diff:.3%} of the pixels"
    summary = lab.page.locator(".gw-explorer .gw-summary").first.inner_text()
    assert f"k={k1}" in summary
    lab.assert_clean()


def test_temperature_slider_changes_slice_and_python(lab) -> None:
    before = lab.pixels(_root(lab, "slice"))
    t0 = lab.kernel_value("ex.temperature")
    handle = lab.page.locator(".gw-temperature-slider .noUi-handle")
    handle.focus()
    handle.press("End")  # the largest temperature: every confidence flattens
    lab.page.wait_for_timeout(300)
    t1 = lab.wait_kernel_value("ex.temperature", lambda v: v > 10 * t0)
    assert abs(t1 - 10**1.3) < 1e-6, f"End should move the temperature to its maximum 10**1.3, got {t1}"
    assert abs(lab.kernel_value("ex.slice.temperature") - t1) < 1e-9
    _settle(lab)
    after = lab.pixels(_root(lab, "slice"))
    diff = pixel_difference(before, after)
    assert diff > 0.05, f"temperature {t0} -> {t1:.3g} changed only {diff:.2%} of the slice pixels"
    lab.screenshot("explorer_slice_hot", _root(lab, "slice"))


def _screen_points(lab) -> tuple[np.ndarray, dict]:
    """Page pixel coordinates of every embedding point, from the positions the kernel sent."""
    flat = lab.kernel_value("np.frombuffer(ex.embedding.positions, dtype=np.float32).tolist()")
    xy = np.asarray(flat, dtype=float).reshape(-1, 2)
    canvas = _root(lab, "embedding").locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    px = box["x"] + (xy[:, 0] + 1) / 2 * box["width"]
    py = box["y"] + (1 - xy[:, 1]) / 2 * box["height"]
    return np.stack([px, py], 1), box


def _isolated_point(points: np.ndarray, box: dict, margin: float = 12.0) -> int:
    inside = (
        (points[:, 0] > box["x"] + margin)
        & (points[:, 0] < box["x"] + box["width"] - margin)
        & (points[:, 1] > box["y"] + margin)
        & (points[:, 1] < box["y"] + box["height"] - margin)
    )
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    gap = np.where(inside, d.min(1), -1)
    return int(gap.argmax())
    lab.assert_clean()


def test_hover_shows_tooltip_with_the_index(lab) -> None:
    lab.kernel_exec("import numpy as np")
    points, box = _screen_points(lab)
    i = _isolated_point(points, box)
    lab.page.mouse.move(box["x"] + 2, box["y"] + 2)
    lab.page.mouse.move(*points[i], steps=4)
    tooltip = _root(lab, "embedding").locator(".gw-tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    assert f"#{i}" in tooltip.inner_text()
    lab.wait_kernel_value("ex.hovered", lambda v: v == i)
    lab.screenshot("explorer_hover", _root(lab, "embedding"))
    lab.assert_clean()


def test_click_selects_a_point(lab) -> None:
    points, box = _screen_points(lab)
    i = _isolated_point(points, box)
    lab.page.mouse.click(*points[i])
    lab.wait_kernel_value("ex.selection", lambda v: v == [i])
    assert lab.kernel_value("ex.embedding.selection") == [i]
    lab.assert_clean()


def test_shift_lasso_selects_the_points_inside(lab) -> None:
    points, box = _screen_points(lab)
    cx, cy = np.median(points, axis=0)
    half = 0.18 * box["width"]
    corners = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    mouse, keyboard = lab.page.mouse, lab.page.keyboard
    mouse.move(*corners[0])
    keyboard.down("Shift")
    mouse.down()
    for edge, (a, b) in enumerate(zip(corners, corners[1:] + corners[:1])):
        # stop short of the start on the closing edge: releasing where the drag began counts as a click
        for t in np.linspace(0, 0.85 if edge == 3 else 1, 8)[1:]:
            mouse.move(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
            lab.page.wait_for_timeout(25)  # the lasso keeps a vertex only every few milliseconds
    mouse.up()
    keyboard.up("Shift")

    def inside(pad: float) -> set[int]:
        x, y = points[:, 0], points[:, 1]
        ok = (x > cx - half + pad) & (x < cx + half - pad) & (y > cy - half + pad) & (y < cy + half - pad)
        return set(np.flatnonzero(ok).tolist())

    surely_in, maybe_in = inside(4.0), inside(-4.0)
    assert len(surely_in) >= 5, "the lasso rectangle should contain several points"
    selected = set(lab.wait_kernel_value("ex.selection", lambda v: len(v) >= len(surely_in)))
    assert surely_in <= selected <= maybe_in, (
        f"lasso selected {len(selected)} points; {len(surely_in - selected)} inside were missed, "
        f"{len(selected - maybe_in)} outside were taken"
    )
    summary = lab.page.locator(".gw-explorer .gw-summary").first.inner_text()
    lab.wait_until(
        f"() => document.querySelector('.gw-explorer .gw-summary').textContent.includes('{len(selected)} selected')",
        what=f"the summary to say {len(selected)} selected (it says {summary!r})",
    )
    lab.page.wait_for_timeout(1500)  # the selection must stay: no view may echo an older one back
    assert set(lab.kernel_value("ex.selection")) == selected
    assert set(lab.kernel_value("ex.deviation_map.selection")) == selected
    lab.screenshot("explorer_lasso", lab.page.locator('[data-gw-view="explorer"]'))
    lab.assert_clean()
