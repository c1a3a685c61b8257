"""Each view on its own in a real browser: it draws, its controls change the picture and the Python state,
clicks reach the kernel, and hovering shows a tooltip.

One notebook (``notebooks/views.ipynb``: the toy moons MLP, one Session, the four views each under the
controls the Explorer uses) and one kernel serve the whole module.
"""

from __future__ import annotations

import numpy as np
import pytest
from labdriver import nonblank_fraction, pixel_difference

VIEWS = ("embedding", "slice", "deviation", "profile")
# Share of non-background pixels a drawn view must have (a scatter of 400 small dots is sparse).
MIN_INK = {"embedding": 0.005, "slice": 0.2, "deviation": 0.2, "profile": 0.02}
PYTHON_NAME = {"embedding": "embedding", "slice": "slice_view", "deviation": "deviation", "profile": "profile"}


@pytest.fixture(scope="module")
def lab(module_lab):
    module_lab.open_notebook("views.ipynb")
    module_lab.run_all()
    for view in VIEWS:
        module_lab.wait_drawn(module_lab.page.locator(f'.gw-test-{view} [data-gw-view="{view}"]').first)
    return module_lab


def _box(lab, view: str):
    return lab.page.locator(f".gw-test-{view}")


def _root(lab, view: str):
    return lab.page.locator(f'.gw-test-{view} [data-gw-view="{view}"]').first


def _settle(lab, view: str) -> None:
    lab.kernel_exec(f"assert {PYTHON_NAME[view]}.wait(120), 'the view did not finish'")
    lab.wait_drawn(_root(lab, view))
    lab.page.wait_for_timeout(700)  # layout transitions (600 ms) end before pixels are compared


def _move_slider(lab, view: str, control: str, key: str, presses: int = 1) -> None:
    handle = _box(lab, view).locator(f".{control} .noUi-handle")
    handle.focus()
    for _ in range(presses):
        handle.press(key)
    lab.page.wait_for_timeout(300)


@pytest.mark.parametrize("view", VIEWS)
def test_view_draws_on_a_canvas(lab, view: str) -> None:
    root = _root(lab, view)
    assert root.locator("canvas").count() >= 1, f"{view}: no canvas in the view"
    state = lab.view_state(root)
    assert state["drawn"] == state["revision"] and int(state["drawn"]) >= 1, state
    share = nonblank_fraction(lab.pixels(root))
    assert share > MIN_INK[view], f"{view}: only {share:.1%} of the pixels differ from the background"
    assert lab.kernel_value(f"[{PYTHON_NAME[view]}.status, {PYTHON_NAME[view]}.revision >= 1]") == ["idle", True]
    lab.screenshot(f"view_{view}", _box(lab, view))
    lab.assert_clean()


@pytest.mark.parametrize("view", VIEWS)
def test_layer_picker_redraws_the_view(lab, view: str) -> None:
    name = PYTHON_NAME[view]
    trait = "layer"
    before = lab.pixels(_root(lab, view))
    current = lab.kernel_value(f"{name}.{trait}")
    target = "fc2" if current != "fc2" else "relu1"
    _box(lab, view).locator(".gw-layer-dropdown select").select_option(target)
    lab.wait_kernel_value(f"{name}.{trait}", lambda v: v == target)
    _settle(lab, view)
    diff = pixel_difference(before, lab.pixels(_root(lab, view)))
    assert diff > 0.002, f"{view}: layer {current} -> {target} changed only {diff:.2%} of the pixels"
    lab.assert_clean()


@pytest.mark.parametrize("view", ["embedding", "deviation"])
def test_k_slider_redraws_the_view(lab, view: str) -> None:
    name = PYTHON_NAME[view]
    before = lab.pixels(_root(lab, view))
    k0 = lab.kernel_value(f"{name}.k")
    _move_slider(lab, view, "gw-k-slider", "PageUp", presses=3)
    k1 = int(_box(lab, view).locator(".gw-k-slider .widget-readout").inner_text())
    assert k1 > k0
    lab.wait_kernel_value(f"{name}.k", lambda v: v == k1)
    _settle(lab, view)
    diff = pixel_difference(before, lab.pixels(_root(lab, view)))
    assert diff > 0.001, f"{view}: k {k0} -> {k1} changed only {diff:.3%} of the pixels"
    lab.assert_clean()


def test_temperature_slider_redraws_the_slice(lab) -> None:
    before = lab.pixels(_root(lab, "slice"))
    _move_slider(lab, "slice", "gw-temperature-slider", "End")
    lab.wait_kernel_value("slice_view.temperature", lambda v: abs(v - 10**1.3) < 1e-6)
    _settle(lab, "slice")
    diff = pixel_difference(before, lab.pixels(_root(lab, "slice")))
    assert diff > 0.05, f"the largest temperature changed only {diff:.2%} of the slice"
    lab.screenshot("view_slice_hot", _box(lab, "slice"))
    lab.assert_clean()


def test_temperature_recolours_the_embedding_by_confidence(lab) -> None:
    _box(lab, "embedding").locator(".gw-color-by select").select_option("confidence")
    lab.wait_kernel_value("embedding.color_by", lambda v: v == "confidence")
    _settle(lab, "embedding")
    before = lab.pixels(_root(lab, "embedding"))
    _move_slider(lab, "embedding", "gw-temperature-slider", "End")
    lab.wait_kernel_value("embedding.temperature", lambda v: abs(v - 10**1.3) < 1e-6)
    _settle(lab, "embedding")
    after = lab.pixels(_root(lab, "embedding"))
    diff = pixel_difference(before, after)
    assert diff > 0.002, f"temperature changed only {diff:.3%} of the confidence-coloured embedding"
    lab.screenshot("view_embedding_confidence_hot", _box(lab, "embedding"))
    lab.assert_clean()


def test_slice_click_sets_clicked_and_hover_shows_tooltip(lab) -> None:
    canvas = _root(lab, "slice").locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    extent = lab.kernel_value("slice_view.extent")
    lab.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=3)
    tooltip = _root(lab, "slice").locator(".gw-tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    text = tooltip.inner_text()  # the plane position in plain words, no α/β symbols
    assert "along A→B" in text and "across towards C" in text and "α" not in text, text
    lab.screenshot("view_slice_hover", _box(lab, "slice"))
    lab.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    alpha, beta = lab.wait_kernel_value("slice_view.clicked", lambda v: len(v) == 2)
    resolution = lab.kernel_value("slice_view.resolution")
    cell_a = (extent[1] - extent[0]) / (resolution - 1)
    cell_b = (extent[3] - extent[2]) / (resolution - 1)
    assert abs(alpha - (extent[0] + extent[1]) / 2) < 2 * cell_a, (alpha, extent)
    assert abs(beta - (extent[2] + extent[3]) / 2) < 2 * cell_b, (beta, extent)
    lab.assert_clean()


def test_deviation_hover_and_click_select_a_sample(lab) -> None:
    canvas = _root(lab, "deviation").locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    point = (box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.5)
    lab.page.mouse.move(*point, steps=3)
    tooltip = _root(lab, "deviation").locator(".gw-tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    text = tooltip.inner_text()
    sample = int(text.split("#", 1)[1].split()[0])
    lab.wait_kernel_value("deviation.hovered", lambda v: v == sample)
    lab.page.mouse.click(*point)
    lab.wait_kernel_value("deviation.selection", lambda v: v == [sample])
    lab.screenshot("view_deviation_selected", _box(lab, "deviation"))
    lab.assert_clean()


def test_embedding_click_selects_the_point_under_the_mouse(lab) -> None:
    flat = lab.kernel_value("np.frombuffer(embedding.positions, dtype=np.float32).tolist()")
    xy = np.asarray(flat, dtype=float).reshape(-1, 2)
    canvas = _root(lab, "embedding").locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    points = np.stack(
        [box["x"] + (xy[:, 0] + 1) / 2 * box["width"], box["y"] + (1 - xy[:, 1]) / 2 * box["height"]], axis=1
    )
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    inside = np.all(
        (points > [box["x"] + 12, box["y"] + 12])
        & (points < [box["x"] + box["width"] - 12, box["y"] + box["height"] - 12]),
        axis=1,
    )
    i = int(np.where(inside, d.min(1), -1).argmax())
    lab.page.mouse.move(*points[i], steps=4)
    tooltip = _root(lab, "embedding").locator(".gw-tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    assert f"#{i}" in tooltip.inner_text()
    lab.page.mouse.click(*points[i])
    lab.wait_kernel_value("embedding.selection", lambda v: v == [i])
    lab.assert_clean()
