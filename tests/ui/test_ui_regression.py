"""A regression model's Explorer in a real browser: the slice shows the predicted value on a continuous scale
with a colour bar, the samples coloured by their target, a hover gives target / prediction / distance, the
temperature is replaced by its reason, and the profile charts that need class labels say so instead of
being drawn empty.

One notebook (``notebooks/regression.ipynb``: a small regressor trained on 2-D inputs, ``task="regression"``,
PCA layouts) and one kernel serve the module; the tests run in file order.
"""

from __future__ import annotations

import numpy as np
import pytest
from labdriver import nonblank_fraction

VIEWS = ("embedding", "slice", "deviation", "profile")
# Viridis control points (matplotlib), as js/colour.js holds them.
VIRIDIS = np.array(
    [
        [68, 1, 84],
        [72, 35, 116],
        [64, 67, 135],
        [52, 94, 141],
        [41, 120, 142],
        [32, 144, 140],
        [34, 167, 132],
        [68, 190, 112],
        [121, 209, 81],
        [189, 222, 38],
        [253, 231, 37],
    ],
    dtype=float,
)


@pytest.fixture(scope="module")
def lab(module_lab):
    return module_lab.open_explorer("regression.ipynb")


def _root(lab, view: str):
    return lab.explorer_view(view)


def _settle(lab) -> None:
    lab.settle_explorer(VIEWS)


def _viridis(t: np.ndarray) -> np.ndarray:
    u = np.clip(t, 0, 1) * (len(VIRIDIS) - 1)
    i = np.minimum(np.floor(u).astype(int), len(VIRIDIS) - 2)
    f = (u - i)[..., None]
    return VIRIDIS[i] + f * (VIRIDIS[i + 1] - VIRIDIS[i])


def test_regression_slice_draws_the_predicted_value_with_a_colour_bar(lab) -> None:
    _settle(lab)
    for view in VIEWS:
        share = nonblank_fraction(lab.pixels(_root(lab, view)))
        assert share > 0.02, f"{view}: only {share:.1%} of the pixels differ from the background"
    assert lab.page.locator(".gw-explorer .gw-no-slice").count() == 0
    assert lab.kernel_value("[ex.slice.mode, ex.no_slice_reason]") == ["regression", ""]
    slice_root = _root(lab, "slice")
    canvas = slice_root.locator("canvas").first
    img = lab.pixels(canvas).astype(float)[..., :3]
    # The image is the predicted value on the viridis scale: compare the canvas, cell by cell, with the
    # kernel's values mapped through viridis (the grid is [G, G], row 0 at the bottom; dots cover a few cells).
    g, lo, hi = lab.kernel_value("[ex.slice.resolution, *ex.slice.value_range]")
    values = np.asarray(lab.kernel_value("np.asarray(ex.slice.values, dtype=float).tolist()"), dtype=float)
    expected = _viridis((values[::-1] - lo) / (hi - lo))  # top row first, as drawn
    h, w = img.shape[:2]
    rows = ((np.arange(g) + 0.5) * h / g).astype(int)
    cols = ((np.arange(g) + 0.5) * w / g).astype(int)
    drawn = img[rows][:, cols]
    close = np.abs(drawn - expected).max(-1) < 24
    assert close.mean() > 0.8, f"only {close.mean():.0%} of the grid cells show their value's viridis colour"
    assert np.ptp(values) > 0.5, "the slice's values should vary across the plane"
    bar = slice_root.locator(".gw-legend .gw-colourbar")
    assert bar.count() == 1 and bar.is_visible()
    ticks = [t.strip() for t in slice_root.locator(".gw-legend .gw-legend-tick").all_inner_texts()]
    assert ticks == lab.kernel_value("[gw_fmt(v) for v in ex.slice.value_range]".replace("gw_fmt", _FMT))
    legend = slice_root.locator(".gw-legend").inner_text()
    assert "predicted value" in legend and "by target" in legend
    assert "not used for regression" in legend
    note = lab.page.locator(".gw-explorer .gw-no-temperature")
    assert note.count() == 1 and "not used for regression" in note.inner_text()
    assert lab.page.locator(".gw-explorer .gw-temperature-slider").count() == 0
    lab.screenshot("regression_explorer", lab.page.locator('[data-gw-view="explorer"]'))
    lab.screenshot("regression_slice", slice_root)
    lab.assert_clean()


# fmt() of js/common.js, in Python, for the colour bar's end labels.
_FMT = "(lambda v: f'{v:.2e}' if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5) else f'{v:.{1 if abs(v) >= 100 else 3}f}')"


def test_hover_gives_target_prediction_and_distance(lab) -> None:
    canvas = _root(lab, "slice").locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    pts = np.asarray(lab.kernel_value("np.asarray(ex.slice.points, dtype=float).tolist()"), dtype=float)
    extent = lab.kernel_value("list(ex.slice.extent)")
    g = lab.kernel_value("ex.slice.resolution")
    # planeToPixel (js/codecs.js): the image covers the extent padded by half a cell on each side.
    da, db = (extent[1] - extent[0]) / (g - 1) / 2, (extent[3] - extent[2]) / (g - 1) / 2
    a_lo, a_hi, b_lo, b_hi = extent[0] - da, extent[1] + da, extent[2] - db, extent[3] + db
    px = box["x"] + (pts[:, 0] - a_lo) / (a_hi - a_lo) * box["width"]
    py = box["y"] + (b_hi - pts[:, 1]) / (b_hi - b_lo) * box["height"]
    xy = np.stack([px, py], 1)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    inside = (px > box["x"] + 20) & (px < box["x"] + box["width"] - 20) & (py > box["y"] + 20)
    i = int(np.where(inside, d.min(1), -1).argmax())  # the most isolated point: nothing else under the mouse
    lab.page.mouse.move(box["x"] + 2, box["y"] + 2)
    lab.page.mouse.move(*xy[i], steps=4)
    tooltip = _root(lab, "slice").locator(".gw-tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    lines = [ln.strip() for ln in tooltip.inner_text().splitlines()]
    idx, target, pred, dist = lab.kernel_value(
        f"[int(ex.slice.point_index[{i}]), float(ex.slice.point_targets[{i}]), float(ex.slice.point_values[{i}]), "
        f"float(ex.slice.point_distance[{i}])]"
    )
    fmt = lab.kernel_value(f"[{_FMT}(v) for v in ({target}, {pred}, {dist})]")
    assert lines[0] == f"#{idx}"
    assert f"target: {fmt[0]}" in lines and f"prediction: {fmt[1]}" in lines, lines
    assert any(ln.startswith(f"distance to the plane: {fmt[2]}") for ln in lines), lines
    assert any(ln.startswith("plane here: predicted ") for ln in lines), lines
    # The kernel's own numbers: the target is y, the prediction the model on that sample.
    y_i, model_i = lab.kernel_value(f"[float(y[{idx}]), model(x[{idx}:{idx + 1}]).detach().item()]")
    assert target == pytest.approx(y_i, rel=1e-5, abs=1e-6) and pred == pytest.approx(model_i, rel=1e-4, abs=1e-5)
    lab.screenshot("regression_hover", _root(lab, "slice"))
    lab.page.mouse.move(box["x"] - 40, box["y"] - 40)
    lab.assert_clean()


def _grey_text_pixels(img: np.ndarray) -> int:
    """Dark grey pixels (the reason's text colour #555555 and its anti-aliasing), not the blue line or red marker."""
    rgb = img[..., :3].astype(int)
    return int(((rgb.max(-1) < 150) & (rgb.max(-1) - rgb.min(-1) < 30)).sum())


def test_profile_charts_without_labels_say_why(lab) -> None:
    reasons = lab.kernel_value("ex.profile.reasons")
    assert reasons == {m: "needs class labels" for m in ("knn_agreement", "fisher", "deviation_auroc")}
    metrics = lab.kernel_value("list(ex.profile.values)")
    figures = _root(lab, "profile").locator(".bk-Figure")
    assert figures.count() == len(metrics), f"{figures.count()} bokeh figures for {len(metrics)} metrics"
    for j, metric in enumerate(metrics):
        fig = figures.nth(j)
        img = lab.pixels(fig)
        h, w = img.shape[:2]
        centre = img[int(h * 0.35) : int(h * 0.7), int(w * 0.3) : int(w * 0.85)]
        text = _grey_text_pixels(centre)
        if metric in reasons:
            assert text > 30, f"{metric}: the chart should say {reasons[metric]!r} in its middle ({text} grey pixels)"
        else:
            assert text < 30, f"{metric}: a drawn chart has no reason text in its middle ({text} grey pixels)"
    lab.screenshot("regression_profile", _root(lab, "profile"))
    lab.assert_clean()
