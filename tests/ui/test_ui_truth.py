"""What the learner sees is true and readable: each check compares what the browser shows with the kernel.

One notebook (``notebooks/truth.ipynb``: the toy moons MLP's Explorer, a 50-point static embedding, an
untrained MLP's Explorer on the default layers) and one kernel serve the module; the tests run in file order.
Every test keeps a screenshot in ``tests/ui/artifacts/`` (``truth_*.png``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from labdriver import nonblank_fraction, png_to_array

MAIN = ".gw-test-main"
VIEWS = ("embedding", "slice", "deviation", "profile")
HEADER = 64  # deviation map: rows start below the rotated layer names (js/deviation.js HEADER)

# Per chart in the page: its title, y range and the values its data source holds (BokehJS documents).
BOKEH_CHARTS = """() => {
  const out = [];
  for (const doc of (window.Bokeh && window.Bokeh.documents) || []) {
    for (const m of doc.all_models) {
      if (!m.y_range || !m.title || !m.renderers) continue;
      let values = [];
      for (const r of m.renderers) {
        const d = r.data_source && r.data_source.data;
        const v = d && (d.get ? d.get('value') : d.value);
        if (v && v.length) { values = Array.from(v); break; }
      }
      out.push({title: m.title.text, start: m.y_range.start, end: m.y_range.end, values});
    }
  }
  return out;
}"""


@pytest.fixture(scope="module")
def lab(module_lab):
    module_lab.open_notebook("truth.ipynb")
    module_lab.run_all(timeout=300)
    for cls in (MAIN, ".gw-test-weak"):
        root = module_lab.page.locator(f'{cls} [data-gw-view="explorer"], {cls}[data-gw-view="explorer"]').first
        root.wait_for()
    _settle(module_lab)
    return module_lab


def _root(lab, view: str, where: str = MAIN):
    return lab.page.locator(f'{where} [data-gw-view="{view}"]').first


def _settle(lab, name: str = "ex") -> None:
    lab.kernel_exec(f"assert {name}.wait(180), 'a view did not finish'")
    where = MAIN if name == "ex" else ".gw-test-weak"
    lab.wait_drawn(lab.page.locator(f'{where}[data-gw-view="explorer"]').first)
    for view in VIEWS:
        lab.wait_drawn(_root(lab, view, where))
    lab.page.wait_for_timeout(700)


def _dom_text(lab, selector: str) -> str:
    return lab.page.locator(selector).first.inner_text()


def _wait_dom_text(lab, selector: str, expected: str, timeout: float = 20.0) -> None:
    lab.wait_until(
        f"() => {{ const e = document.querySelector({json.dumps(selector)});"
        f" return !!e && e.textContent === {json.dumps(expected)}; }}",
        timeout=timeout,
        what=f"{selector} to read {expected!r} (it reads {_dom_text(lab, selector)!r})",
    )


def _isolated(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float = 14.0) -> int:
    inside = np.all((points > lo + margin) & (points < hi - margin), axis=1)
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return int(np.where(inside, d.min(1), -1).argmax())


def test_titles_follow_their_traits(lab) -> None:
    """A Python write of a title-affecting trait reaches the DOM title without waiting for another update."""
    lab.kernel_exec("ex.deviation_map.sort_by = 'max_z'")
    title = lab.wait_kernel_value("ex.deviation_map.title", lambda t: "largest" in t or "max z" in t)
    _wait_dom_text(lab, f'{MAIN} [data-gw-view="deviation"] .gw-title', title)

    a, b, c = lab.kernel_value("[int(i) for i in ex.session.default_anchors()][::-1]")
    lab.kernel_exec(f"ex.slice.anchors = [{a}, {b}, {c}]")
    title = lab.wait_kernel_value("ex.slice.title", lambda t: f"A = #{a}, B = #{b}, C = #{c}" in t)
    _wait_dom_text(lab, f'{MAIN} [data-gw-view="slice"] .gw-title', title)

    lab.kernel_exec("ex.k = 17")
    _settle(lab)
    title = lab.kernel_value("ex.deviation_map.title")
    assert "k=17" in title
    _wait_dom_text(lab, f'{MAIN} [data-gw-view="deviation"] .gw-title', title)
    lab.screenshot("truth_titles", lab.page.locator(f'{MAIN}[data-gw-view="explorer"]'))
    lab.assert_clean()


def test_profile_ranges_hold_every_point_and_say_their_k(lab) -> None:
    """After k moves every chart's y range holds all its points with room for the dots; kNN titles say k."""
    for k in (47, 3):
        lab.kernel_exec(f"ex.k = {k}")
        _settle(lab)
        values = lab.kernel_value("{m: [None if v != v else v for v in vals] for m, vals in ex.profile.values.items()}")
        titles = lab.kernel_value("{m: f.title.text for m, f in ex.profile.figure.figures.items()}")
        assert f"k={k}" in titles["knn_agreement"] and f"k={k}" in titles["deviation_auroc"], titles
        lab.page.wait_for_timeout(500)
        charts = lab.page.evaluate(BOKEH_CHARTS)
        for metric, want in values.items():
            finite = [v for v in want if v is not None]
            shown = [
                ch
                for ch in charts
                if ch["title"] == titles[metric]
                and len(ch["values"]) == len(want)
                and all(
                    (w is None and (v is None or math.isnan(v)))
                    or (w is not None and v is not None and abs(v - w) < 1e-9)
                    for v, w in zip(ch["values"], want)
                )
            ]
            assert shown, f"{metric}: no chart in the page shows the kernel's values {want} under {titles[metric]!r}"
            chart = shown[-1]
            span = chart["end"] - chart["start"]
            for v in finite:
                room = min(v - chart["start"], chart["end"] - v) / span
                assert room > 0.04, (
                    f"k={k}, {metric}: value {v} sits at the edge of the y range "
                    f"[{chart['start']}, {chart['end']}] (margin {room:.1%}): the dot is cut"
                )
    lab.screenshot("truth_profile_ranges", _root(lab, "profile"))
    warnings = lab.view_warnings()
    assert not warnings, "console warnings from the views:\n" + "\n".join(warnings[:10])
    lab.assert_clean()


def test_slice_tooltip_describes_the_hovered_sample(lab) -> None:
    """The tooltip of a drawn sample gives that sample's own label, prediction and distance to the plane."""
    lab.kernel_exec("import numpy as np")
    state = lab.kernel_value(
        "dict(pts=np.asarray(ex.slice.points, dtype=float).tolist(), ids=np.asarray(ex.slice.point_index).tolist(),"
        " dist=np.asarray(ex.slice.point_distance, dtype=float).tolist(), extent=ex.slice.extent,"
        " g=int(ex.slice.classes.shape[0]), size=ex.slice.size, names=ex.session.class_names,"
        " labels=ex.session.labels.tolist(), preds=ex.session.predictions.tolist())"
    )
    a0, a1, b0, b1 = state["extent"]
    g = state["g"]
    da, db = (a1 - a0) / (g - 1), (b1 - b0) / (g - 1)
    a_lo, a_hi, b_lo, b_hi = a0 - da / 2, a1 + da / 2, b0 - db / 2, b1 + db / 2
    pts = np.asarray(state["pts"])
    canvas = _root(lab, "slice").locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    px = box["x"] + (pts[:, 0] - a_lo) / (a_hi - a_lo) * box["width"]
    py = box["y"] + (b_hi - pts[:, 1]) / (b_hi - b_lo) * box["height"]
    screen = np.stack([px, py], 1)
    i = _isolated(screen, np.array([box["x"], box["y"]]), np.array([box["x"] + box["width"], box["y"] + box["height"]]))
    sample = state["ids"][i]
    lab.page.mouse.move(box["x"] + 2, box["y"] + 2)
    lab.page.mouse.move(*screen[i], steps=4)
    tooltip = _root(lab, "slice").locator(".gw-tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    text = tooltip.inner_text()
    names = state["names"]
    assert f"#{sample}" in text.split("\n")[0], text
    assert f"label: {names[state['labels'][sample]]}" in text, text
    assert f"prediction: {names[state['preds'][sample]]}" in text, text
    shown = float(text.split("distance to the plane: ", 1)[1].split()[0])
    assert abs(shown - state["dist"][i]) <= 1e-3 * max(1.0, abs(state["dist"][i])), (shown, state["dist"][i])
    assert "α" not in text and "β" not in text, text
    legend = _root(lab, "slice").locator(".gw-legend").inner_text()
    if max(state["dist"]) > 0:  # the legend explains the fade by distance...
        assert "distance" in legend, legend
    else:  # ...or says that this plane holds every sample (a 2-D space)
        assert "every sample lies on the plane" in legend, legend
    lab.screenshot("truth_slice_tooltip", _root(lab, "slice"))
    lab.page.mouse.move(box["x"] - 30, box["y"] - 30)
    lab.assert_clean()


def test_status_line_counts_the_selection(lab) -> None:
    """After a click selects one sample the summary says "1 selected sample", as len(ex.selection) is."""
    lab.kernel_exec("ex.selection = list(range(30))")
    lab.wait_until(
        f"() => document.querySelector('{MAIN} .gw-summary').textContent.includes('30 selected samples')",
        what="the summary to count 30 selected samples",
    )
    flat = lab.kernel_value("np.asarray(ex.embedding.positions, dtype=float).ravel().tolist()")
    xy = np.asarray(flat).reshape(-1, 2)
    canvas = _root(lab, "embedding").locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    screen = np.stack(
        [box["x"] + (xy[:, 0] + 1) / 2 * box["width"], box["y"] + (1 - xy[:, 1]) / 2 * box["height"]], axis=1
    )
    i = _isolated(screen, np.array([box["x"], box["y"]]), np.array([box["x"] + box["width"], box["y"] + box["height"]]))
    lab.page.mouse.move(*screen[i], steps=4)
    lab.page.mouse.click(*screen[i])
    lab.wait_kernel_value("ex.selection", lambda v: v == [i])
    n = lab.kernel_value("len(ex.selection)")
    assert n == 1
    lab.wait_until(
        f"() => / 1 selected sample$/.test(document.querySelector('{MAIN} .gw-summary').textContent)",
        what=f"the summary to end with '1 selected sample' (it reads {_dom_text(lab, MAIN + ' .gw-summary')!r})",
    )
    lab.screenshot("truth_status_line", lab.page.locator(f'{MAIN}[data-gw-view="explorer"]'))
    lab.assert_clean()


def test_deviation_map_is_keyed_and_one_sample_is_one_row(lab) -> None:
    """One selected sample is one short row; z and the divergence marks have keys; the footer names each layer."""
    _settle(lab)
    assert lab.kernel_value("len(ex.deviation_map.selection)") == 1
    root = _root(lab, "deviation")
    canvas = root.locator("canvas").first
    image = png_to_array(canvas.screenshot())
    below = image[HEADER + 20 :]
    share = nonblank_fraction(np.concatenate([below, np.full((4, *below.shape[1:]), 255, np.uint8)]))
    assert share < 0.02, f"one selected sample fills {share:.1%} of the map below its first row: the row is stretched"
    assert root.locator(".gw-deviation-key .gw-colourbar").count() == 1
    assert "divergence" in root.locator(".gw-deviation-key").inner_text()
    layers, auroc = lab.kernel_value("[ex.deviation_map.layer_names, ex.deviation_map.auroc]")
    footer = root.locator(".gw-footer").inner_text()
    expected = " · ".join(f"{name} {v:.2f}" if v == v else f"{name} —" for name, v in zip(layers, auroc))
    assert footer.endswith(expected), (footer, expected)
    title_box = root.locator(".gw-title").bounding_box()
    profile_box = _root(lab, "profile").bounding_box()
    overlap_x = min(title_box["x"] + title_box["width"], profile_box["x"] + profile_box["width"]) - max(
        title_box["x"], profile_box["x"]
    )
    overlap_y = min(title_box["y"] + title_box["height"], profile_box["y"] + profile_box["height"]) - max(
        title_box["y"], profile_box["y"]
    )
    assert overlap_x <= 0 or overlap_y <= 0, f"the deviation title {title_box} overlaps the profile {profile_box}"
    lab.screenshot("truth_deviation_one_row", root)
    lab.assert_clean()


def test_controls_read_whole_and_status_has_no_emoji(lab) -> None:
    """Control labels are not cut; status lines use text and CSS icons (no emoji font needed)."""
    cut = lab.page.evaluate(
        f"() => Array.from(document.querySelectorAll('{MAIN} .widget-label'))"
        ".filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)"
    )
    assert not cut, f"control labels cut: {cut}"
    texts = lab.page.evaluate("() => Array.from(document.querySelectorAll('.gw-status')).map(e => e.textContent)")
    assert not any(ch in t for t in texts for ch in "⏳⚠"), texts
    lab.screenshot("truth_controls", lab.page.locator(f"{MAIN} .widget-hbox").first)
    lab.assert_clean()


def test_point_size_follows_n(lab) -> None:
    """50 points are drawn larger than the Explorer's 400, from the same point_size."""
    lab.kernel_exec("assert few.wait(60)")
    few_root = lab.page.locator('.gw-test-few[data-gw-view="embedding"], .gw-test-few [data-gw-view="embedding"]').first
    lab.wait_drawn(few_root)
    sizes = [root.evaluate("el => el.gwScatterplot.get('pointSize')") for root in (few_root, _root(lab, "embedding"))]
    base = lab.kernel_value("[few.point_size, ex.embedding.point_size]")
    assert base[0] == base[1]
    assert sizes[0] > sizes[1] > 0, sizes
    lab.screenshot("truth_few_points", few_root)
    lab.assert_clean()


def test_untrained_model_on_default_layers_draws(lab) -> None:
    """An untrained MLP (layers=None: the blocks' outputs, Dropout skipped) builds and every view draws."""
    _settle(lab, "weak")
    layers = lab.kernel_value("weak.session.layers")
    kinds = lab.kernel_value("[type(dict(weak_model.named_modules())[n]).__name__ for n in weak.session.layers]")
    assert "Dropout" not in kinds and len(layers) == 3, (layers, kinds)
    for view in VIEWS:
        root = _root(lab, view, ".gw-test-weak")
        share = nonblank_fraction(lab.pixels(root))
        assert share > 0.005, f"untrained model, {view}: only {share:.1%} of the pixels are drawn"
    lab.screenshot("truth_untrained", lab.page.locator('.gw-test-weak[data-gw-view="explorer"]'))
    warnings = lab.view_warnings()
    assert not warnings, "console warnings from the views:\n" + "\n".join(warnings[:10])
    lab.assert_clean()
