"""Share and keep in a real browser.

* The standalone HTML snapshot (``ex.save_html``) opens from a ``file://`` URL in headless Chromium
  with every request that is not ``file:`` or ``data:`` aborted: every view draws a non-blank
  picture, the bokeh profile draws its charts, hovering a point of the embedding shows its tooltip
  and highlights the same sample in the deviation map and the slice (pixels change there), and the
  layer picker swaps in another layer's stored picture.
* ``view.save_png`` in JupyterLab writes a PNG of the view as shown: the canvas and its legend
  (the legend's region of the PNG is not blank, and the PNG has the view's size).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from labdriver import nonblank_fraction, pixel_difference, png_to_array

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"


# ---------------------------------------------------------------------------------------- HTML file
@pytest.fixture(scope="module")
def snapshot_file(tmp_path_factory) -> tuple[Path, dict]:
    """An Explorer on the toy moons MLP, saved with every layer; the file and what it was saved from."""
    import torch

    import geowidgets as gw

    torch.manual_seed(0)
    demo = gw.datasets.toy_demo("moons", n=400, seed=0, epochs=20)
    ex = gw.Explorer(demo.model, demo.inputs, demo.labels, layers=demo.layers, k=10, method="pca", size=320)
    ex.wait()
    path = ex.save_html(tmp_path_factory.mktemp("export") / "lesson.html", all_layers=True)
    info = {
        "layer": ex.layer,
        "layers": list(ex.session.layers),
        "positions": np.array(ex.embedding.positions),
        "size": int(ex.embedding.size),
    }
    ex.close()
    return path, info


@pytest.fixture()
def offline_page(browser):
    """A page on which every request that is not file: or data: is aborted (and recorded)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, device_scale_factor=1)
    requests, blocked, errors = [], [], []

    def route(r) -> None:
        url = r.request.url
        requests.append(url)
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    yield page, requests, blocked, errors
    context.close()


def _wait(page, predicate: str, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(predicate):
            return
        page.wait_for_timeout(200)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}")


def _pixels(locator) -> np.ndarray:
    return png_to_array(locator.screenshot(animations="disabled"))


def test_html_snapshot_opens_offline_draws_and_links(offline_page, snapshot_file) -> None:
    page, requests, blocked, errors = offline_page
    path, info = snapshot_file
    page.goto(path.as_uri())
    for view in ("embedding", "slice", "deviation"):
        _wait(
            page,
            f"() => {{ const el = document.querySelector('[data-gw-view=\"{view}\"]');"
            " return !!el && el.dataset.gwDrawn !== undefined && el.dataset.gwDrawn === el.dataset.gwRevision; }",
            f"the {view} view to draw",
        )
    # BokehJS draws into shadow roots: wait for its document and the file's links to its charts.
    _wait(page, "() => !!window.Bokeh && Bokeh.documents.length > 0", "BokehJS and the profile's document")
    _wait(page, "() => document.documentElement.dataset.gwProfile === 'ready'", "the profile's tap links")
    page.wait_for_timeout(500)
    roots = {v: page.locator(f'[data-gw-view="{v}"]') for v in ("embedding", "slice", "deviation")}
    roots["profile"] = page.locator(".gw-export-profile")
    for view, root in roots.items():
        share = nonblank_fraction(_pixels(root))
        assert share > 0.02, f"{view}: only {share:.1%} of the pixels differ from the background"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "export_html.png"), full_page=True)

    # Hover a sample in the embedding: its tooltip shows, and the deviation map and the slice highlight it.
    before = {v: _pixels(roots[v]) for v in ("deviation", "slice")}
    xy = info["positions"]
    i = int(np.argmin(np.abs(xy).sum(1)))  # a point well inside the frame
    canvas = roots["embedding"].locator("canvas.gw-canvas")
    box = canvas.bounding_box()
    size = info["size"]
    page.mouse.move(float(box["x"] + (xy[i, 0] + 1) / 2 * size), float(box["y"] + (1 - xy[i, 1]) / 2 * size))
    _wait(page, "() => window.gwExport.models.embedding.get('hovered') >= 0", "a hovered point")
    hovered = page.evaluate("() => window.gwExport.models.embedding.get('hovered')")
    assert page.evaluate("() => window.gwExport.models.deviation.get('hovered')") == hovered
    assert page.evaluate("() => window.gwExport.models.slice.get('hovered')") == hovered
    tip = roots["embedding"].locator(".gw-tooltip")
    assert tip.is_visible() and f"#{hovered}" in tip.inner_text()
    page.wait_for_timeout(300)
    for view in ("deviation", "slice"):
        # The highlight is an outline (a row in the map, a ring around one dot in the slice): count pixels.
        after = _pixels(roots[view])
        changed = pixel_difference(before[view], after) * after.shape[0] * after.shape[1]
        assert changed >= 8, f"{view}: hovering sample {hovered} in the embedding changed only {changed:.0f} pixels"
    page.screenshot(path=str(ARTIFACTS / "export_html_hover.png"), full_page=True)

    # The layer picker swaps in another layer's stored picture (and the profile marker follows it):
    # the slice is that layer's plane (its pixels change), every view redraws, titles name the layer.
    page.mouse.move(0, 0)
    other = info["layers"][0]
    slice_before = _pixels(roots["slice"])
    drawn = {v: int(roots[v].get_attribute("data-gw-drawn")) for v in ("embedding", "slice", "deviation")}
    page.locator("#gw-export-layer").select_option(other)
    _wait(page, f"() => window.gwExport.models.deviation.get('layer') === {json.dumps(other)}", "the layer switch")
    for view, before_rev in drawn.items():
        _wait(
            page,
            f"() => Number(document.querySelector('[data-gw-view=\"{view}\"]').dataset.gwDrawn) > {before_rev}",
            f"the {view} view to redraw layer {other}",
        )
    # The views hold that layer's stored arrays (the very buffers the file stores for it).
    for view, trait in (("embedding", "positions"), ("slice", "classes")):
        assert page.evaluate(
            f"() => window.gwExport.models.{view}.get('{trait}').buffer"
            f" === window.gwExport.spec.by_layer[{json.dumps(other)}].{view}.{trait}.buffer"
        ), f"{view}.{trait} is not layer {other}'s stored array"
    page.wait_for_timeout(1000)  # the 600 ms layout transition
    diff = pixel_difference(slice_before, _pixels(roots["slice"]))
    assert diff > 0.02, f"picking layer {other} changed only {diff:.2%} of the slice"
    for view in ("embedding", "slice"):
        assert other in roots[view].locator(".gw-title").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "export_html_layer.png"), full_page=True)

    assert requests, "no request recorded: the route is broken"
    assert not blocked, f"the snapshot asked for something outside the file: {blocked}"
    assert not errors, "console errors:\n" + "\n".join(errors)


# ---------------------------------------------------------------------------------------- save_png
@pytest.fixture(scope="module")
def explorer_lab(module_lab):
    module_lab.open_notebook("explorer.ipynb")
    module_lab.run_all()
    root = module_lab.page.locator('[data-gw-view="explorer"]')
    root.wait_for()
    module_lab.wait_drawn(root)
    module_lab.kernel_exec("assert ex.wait(120)")
    return module_lab


def _save_png(lab, expression: str, path: Path, timeout: float = 60.0) -> np.ndarray:
    lab.kernel_exec(f"_gw_png = {expression}.save_png({str(path)!r})")
    # The kernel reads the browser's answer once the cell above has finished.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.kernel_value("_gw_png.done()"):
            break
        time.sleep(0.25)
    assert lab.kernel_value("_gw_png.exception() is None and str(_gw_png.result())") == str(path)
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))


@pytest.mark.parametrize(
    ("view", "expression"),
    [("embedding", "ex.embedding"), ("slice", "ex.slice"), ("deviation", "ex.deviation_map")],
)
def test_save_png_writes_the_view_with_its_legend(explorer_lab, tmp_path, view, expression) -> None:
    lab = explorer_lab
    image = _save_png(lab, expression, tmp_path / f"{view}.png")
    root = lab.page.locator(f'.gw-explorer [data-gw-view="{view}"]').first
    box = root.evaluate(
        "el => { const r = el.getBoundingClientRect();"
        " const l = el.querySelector('.gw-legend').getBoundingClientRect();"
        " return {w: r.width, h: r.height, top: l.top - r.top, bottom: l.bottom - r.top, left: l.left - r.left,"
        " right: l.right - r.left}; }"
    )
    assert abs(image.shape[1] - box["w"]) <= 2 and abs(image.shape[0] - box["h"]) <= 2, (image.shape, box)
    assert nonblank_fraction(image) > 0.02, f"{view}: the PNG is blank"
    legend = image[int(box["top"]) : int(np.ceil(box["bottom"])), int(box["left"]) : int(np.ceil(box["right"]))]
    assert legend.size and nonblank_fraction(legend) > 0.01, f"{view}: the legend's region of the PNG is blank"
    # The PNG is what the page shows: compared with a screenshot of the same element.
    shown = lab.pixels(root)
    if shown.shape == image.shape:
        assert pixel_difference(shown, image, tolerance=40) < 0.2
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"save_png_{view}.png").write_bytes((tmp_path / f"{view}.png").read_bytes())
    lab.assert_clean()


def test_save_png_of_the_bokeh_profile(explorer_lab, tmp_path) -> None:
    image = _save_png(explorer_lab, "ex.profile", tmp_path / "profile.png")
    assert nonblank_fraction(image) > 0.02, "the profile PNG is blank"
    # The charts' line colour (#4e79a7) is in the PNG: the bokeh canvases were composed, not only the text.
    blue = np.abs(image.astype(int) - np.array([0x4E, 0x79, 0xA7])).max(-1) < 30
    assert blue.mean() > 0.001, "no chart line in the profile PNG"
    (ARTIFACTS / "save_png_profile.png").write_bytes((tmp_path / "profile.png").read_bytes())
    explorer_lab.assert_clean()
