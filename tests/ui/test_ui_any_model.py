"""An embedding model's Explorer in a real browser: the hover tooltip shows the sample's text, and a group
added from the kernel (``ex.add_samples``) is drawn as rings with a legend entry and named deviation-map rows.

One notebook (``notebooks/any_model.ipynb``: an untrained 3-layer encoder with no class head on the toy moons,
``task="embedding"``, ``texts=`` and a ``metadata=`` colouring, PCA layouts) and one kernel serve the module;
the tests run in file order.
"""

from __future__ import annotations

import numpy as np
import pytest
from labdriver import nonblank_fraction, pixel_difference

VIEWS = ("embedding", "deviation", "profile")


@pytest.fixture(scope="module")
def lab(module_lab):
    return module_lab.open_explorer("any_model.ipynb")


def _root(lab, view: str):
    return lab.explorer_view(view)


def _settle(lab) -> None:
    lab.settle_explorer(VIEWS)


def _to_screen(lab, trait: str) -> tuple[np.ndarray, dict]:
    """Page pixel coordinates of the embedding's ``positions`` or ``added_positions`` (normalised [-1, 1])."""
    flat = lab.kernel_value(f"np.frombuffer(ex.embedding.{trait}, dtype=np.float32).tolist()")
    xy = np.asarray(flat, dtype=float).reshape(-1, 2)
    canvas = _root(lab, "embedding").locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    return np.stack(
        [box["x"] + (xy[:, 0] + 1) / 2 * box["width"], box["y"] + (1 - xy[:, 1]) / 2 * box["height"]], 1
    ), box


def test_embedding_explorer_draws_without_a_slice(lab) -> None:
    _settle(lab)
    for view in VIEWS:
        share = nonblank_fraction(lab.pixels(_root(lab, view)))
        assert share > 0.02, f"{view}: only {share:.1%} of the pixels differ from the background"
    note = lab.page.locator(".gw-explorer .gw-no-slice").first.inner_text()
    assert "no class logits" in note and "task='embedding'" in note
    assert lab.page.locator('.gw-explorer [data-gw-view="slice"]').count() == 0
    assert lab.kernel_value("[ex.session.task, ex.color_by, ex.slice is None]") == ["embedding", "side", True]
    legend = _root(lab, "embedding").inner_text()
    assert "left" in legend and "right" in legend, f"the metadata colouring's legend should name its values: {legend!r}"
    lab.screenshot("any_model_explorer", lab.page.locator('[data-gw-view="explorer"]'))
    lab.assert_clean()


def test_hover_tooltip_shows_the_text(lab) -> None:
    points, box = _to_screen(lab, "positions")
    inside = (
        (points[:, 0] > box["x"] + 12)
        & (points[:, 0] < box["x"] + box["width"] - 12)
        & (points[:, 1] > box["y"] + 12)
        & (points[:, 1] < box["y"] + box["height"] - 12)
    )
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    i = int(np.where(inside, d.min(1), -1).argmax())
    lab.page.mouse.move(box["x"] + 2, box["y"] + 2)
    lab.page.mouse.move(*points[i], steps=4)
    tooltip = _root(lab, "embedding").locator(".gw-tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    text = lab.kernel_value(f"texts[{i}]")
    shown = tooltip.inner_text()
    assert text in " ".join(shown.split()), f"tooltip {shown!r} should show the text {text!r}"
    side = lab.kernel_value(f"str(metadata['side'][{i}])")
    lines = [ln.strip() for ln in shown.splitlines()]
    assert lines.count(f"side: {side}") == 1, f"tooltip {shown!r} should show the line 'side: {side}' once"
    radius = lab.kernel_value(f"f\"radius: {{float(metadata['radius'][{i}]):.4g}}\"")
    assert radius in lines, f"tooltip {shown!r} should show the metadata line {radius!r}"
    # Not cut: the whole tooltip lies inside the page, and no line overflows its box.
    tip = tooltip.bounding_box()
    viewport = lab.page.viewport_size
    assert tip["x"] >= 0 and tip["x"] + tip["width"] <= viewport["width"], f"tooltip {tip} leaves the page"
    assert tooltip.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), "tooltip text overflows its box"
    lab.wait_kernel_value("ex.hovered", lambda v: v == i)
    lab.screenshot("any_model_hover", _root(lab, "embedding"))
    lab.page.mouse.move(box["x"] - 40, box["y"] - 40)
    lab.assert_clean()


def test_added_samples_are_drawn_as_a_group(lab) -> None:
    embedding = _root(lab, "embedding")
    before = lab.pixels(embedding)
    lab.kernel_exec(
        "far = demo.inputs[:12] * 1.5 + torch.tensor([2.0, 1.0])\ntable = ex.add_samples(far, name='far away')"
    )
    _settle(lab)
    m = 12
    lab.wait_until(
        f"() => document.querySelector('.gw-explorer [data-gw-added]')?.dataset.gwAdded === '{m}'",
        what=f"the embedding to draw {m} added rings (data-gw-added)",
    )
    legend = embedding.locator(".gw-legend-added")
    assert legend.count() == 1
    assert legend.first.inner_text().strip() == f"far away ({m} added)"
    assert lab.kernel_value("[len(table), list(table.columns[-1:])]") == [m, ["divergence_layer"]]
    # The rings are drawn: around each added position the pixels changed from the picture before the add.
    after = lab.pixels(embedding)
    assert pixel_difference(before, after) > 0.001
    rings, box = _to_screen(lab, "added_positions")
    frame = embedding.bounding_box()
    scale_x, scale_y = after.shape[1] / frame["width"], after.shape[0] / frame["height"]
    changed = 0
    for px, py in rings:
        if not (box["x"] + 6 < px < box["x"] + box["width"] - 6 and box["y"] + 6 < py < box["y"] + box["height"] - 6):
            continue
        cx, cy = int((px - frame["x"]) * scale_x), int((py - frame["y"]) * scale_y)
        patch_a = before[cy - 8 : cy + 9, cx - 8 : cx + 9].astype(int)
        patch_b = after[cy - 8 : cy + 9, cx - 8 : cx + 9].astype(int)
        changed += int((np.abs(patch_a - patch_b).max(-1) > 40).sum() >= 6)
    assert changed >= 3, f"only {changed} added positions show a ring"
    deviation = _root(lab, "deviation")
    lab.wait_until(
        f"() => document.querySelector('.gw-explorer [data-gw-added-rows]')?.dataset.gwAddedRows === '{m}'",
        what="the deviation map to draw the added rows",
    )
    lab.screenshot("any_model_added", embedding)
    lab.screenshot("any_model_added_deviation", deviation)
    lab.screenshot("any_model_added_explorer", lab.page.locator('[data-gw-view="explorer"]'))

    lab.kernel_exec("ex.remove_samples('far away')")
    _settle(lab)
    lab.wait_until(
        "() => document.querySelector('.gw-explorer [data-gw-added]')?.dataset.gwAdded === '0'",
        what="the rings to go when the group is removed",
    )
    assert embedding.locator(".gw-legend-added").count() == 0
    lab.assert_clean()
