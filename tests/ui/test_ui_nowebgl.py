"""The embedding without WebGL: Chromium started with ``--disable-webgl --disable-3d-apis``.

In JupyterLab with that browser, ``notebooks/explorer.ipynb``'s embedding says WebGL is missing
(``.gw-fallback-note``), marks its root ``data-gw-renderer="2d"`` and draws its points on a 2-D
canvas (non-blank, in the category colours of its legend); hovering a point still shows its
tooltip and reaches ``ex.hovered``. The other views (2-D canvases, bokeh) draw as usual.
Screenshots: ``artifacts/nowebgl_embedding.png`` (message and drawing) and ``artifacts/nowebgl_explorer.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from labdriver import nonblank_fraction, open_lab_page

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def nowebgl_browser(browser, chromium_path, chromium_args):
    """A second Chromium from the session's Playwright (one sync Playwright per thread), WebGL switched off."""
    second = browser.browser_type.launch(
        executable_path=chromium_path, headless=True, args=[*chromium_args, "--disable-webgl", "--disable-3d-apis"]
    )
    try:
        yield second
    finally:
        second.close()


@pytest.fixture(scope="module")
def lab(nowebgl_browser, lab_server):
    with open_lab_page(nowebgl_browser, lab_server, "test_ui_nowebgl", ARTIFACTS) as page:
        page.open_notebook("explorer.ipynb")
        page.run_all()
        root = page.page.locator('[data-gw-view="explorer"]')
        root.wait_for()
        page.wait_drawn(root)
        yield page


def test_embedding_falls_back_to_a_2d_canvas_with_a_message(lab) -> None:
    assert lab.page.evaluate("() => !document.createElement('canvas').getContext('webgl')"), "WebGL is still on"
    root = lab.page.locator('.gw-explorer [data-gw-view="embedding"]').first
    drawn = lab.wait_drawn(root)
    lab.kernel_exec("ex.color_by = 'label'; assert ex.wait(120)")  # class colours, as in the legend
    lab.wait_drawn(root, after=drawn)
    assert root.get_attribute("data-gw-renderer") == "2d"
    note = root.locator(".gw-fallback-note")
    assert note.is_visible() and "WebGL is not available" in note.inner_text()
    canvas = root.locator("canvas.gw-canvas")
    image = lab.pixels(canvas)
    assert nonblank_fraction(image) > 0.005, "the fallback drew nothing"
    # The points carry the legend's category colours (tableau blue and orange for the two moons).
    for rgb in ((0x4E, 0x79, 0xA7), (0xF2, 0x8E, 0x2B)):
        share = (np.abs(image.astype(int) - np.array(rgb)).max(-1) < 40).mean()
        assert share > 0.0005, f"colour {rgb} covers only {share:.3%} of the fallback drawing"
    for view in ("slice", "deviation", "profile"):
        other = lab.page.locator(f'.gw-explorer [data-gw-view="{view}"]').first
        assert nonblank_fraction(lab.pixels(other)) > 0.02, f"{view} is blank without WebGL"

    xy = lab.kernel_value("ex.embedding.positions.tolist()")
    i = min(range(len(xy)), key=lambda j: abs(xy[j][0]) + abs(xy[j][1]))
    size = lab.kernel_value("ex.embedding.size")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    lab.page.mouse.move(box["x"] + (xy[i][0] + 1) / 2 * size, box["y"] + (1 - xy[i][1]) / 2 * size)
    hovered = lab.wait_kernel_value("ex.hovered", lambda v: v >= 0)
    tip = root.locator(".gw-tooltip")
    assert tip.is_visible() and f"#{hovered}" in tip.inner_text()
    lab.screenshot("nowebgl_embedding", root)
    lab.screenshot("nowebgl_explorer", lab.page.locator('[data-gw-view="explorer"]'))
    lab.assert_clean()
