"""The first picture of a large capture: landmarks drawn at once, hover names the right sample, then every sample.

The notebook's model holds its full capture until the test releases it, so the browser shows the
landmarks' picture for as long as the test needs. Screenshots: ``landmarks_first.png``,
``landmarks_full.png``.
"""

from __future__ import annotations

import numpy as np
from labdriver import nonblank_fraction, png_to_array


def _screen_points(lab, box: dict) -> np.ndarray:
    flat = lab.kernel_value("np.asarray(ex.embedding.positions, dtype=float).ravel().tolist()")
    xy = np.asarray(flat).reshape(-1, 2)
    return np.stack([box["x"] + (xy[:, 0] + 1) / 2 * box["width"], box["y"] + (1 - xy[:, 1]) / 2 * box["height"]], 1)


def _isolated(points: np.ndarray, box: dict, margin: float = 14.0) -> int:
    lo = np.array([box["x"], box["y"]]) + margin
    hi = np.array([box["x"] + box["width"], box["y"] + box["height"]]) - margin
    inside = np.all((points > lo) & (points < hi), axis=1)
    sub = np.flatnonzero(inside)[:1500]
    d = np.linalg.norm(points[sub, None] - points[None], axis=-1)
    d[np.arange(len(sub)), sub] = np.inf
    return int(sub[d.min(1).argmax()])


def _hover_tooltip(lab, root, point: np.ndarray, box: dict) -> str:
    lab.page.mouse.move(box["x"] + 2, box["y"] + 2)
    lab.page.mouse.move(*point, steps=4)
    tooltip = root.locator(".gw-tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    return tooltip.inner_text()


def test_landmarks_first_then_every_sample(module_lab) -> None:
    lab = module_lab
    lab.open_notebook("landmarks.ipynb")
    lab.run_all(timeout=300)
    lab.kernel_exec("import numpy as np")
    lab.wait_kernel_value("ex.embedding.sample_indices is not None", bool, timeout=120)
    root = lab.page.locator('.gw-explorer [data-gw-view="embedding"]').first
    revision = lab.kernel_value("ex.embedding.revision")
    # Drawn while busy (the rest is still being captured): wait_drawn would wait for idle.
    lab.wait_until(
        f"() => {{ const el = document.querySelector('.gw-explorer [data-gw-view=\"embedding\"]');"
        f" return !!el && Number(el.dataset.gwDrawn) >= {revision}; }}",
        what="the landmarks' picture to be drawn",
    )
    title = root.locator(".gw-title").inner_text()
    m = lab.kernel_value("ex.session.preview_rows")
    assert f"PCA of {m:,} landmarks of 6,000 samples" in title, title
    assert lab.kernel_value("ex.session.captured") is False
    canvas = root.locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert nonblank_fraction(png_to_array(canvas.screenshot())) > 0.01
    rows = lab.kernel_value("np.asarray(ex.embedding.sample_indices).tolist()")
    labels = lab.kernel_value("ex.session.labels.tolist()")
    screen = _screen_points(lab, box)
    assert len(screen) == len(rows) == m
    i = _isolated(screen, box)
    text = _hover_tooltip(lab, root, screen[i], box)
    sample = rows[i]
    # The point drawn at row i is sample rows[i]: its index, label and the kernel's hovered agree.
    assert text.split("\n")[0].strip() == f"#{sample}", text
    assert f"label: {labels[sample]}" in text, text
    assert lab.wait_kernel_value("ex.hovered", lambda h: h == sample) == sample
    lab.screenshot("landmarks_first", lab.page.locator('[data-gw-view="explorer"]').first)
    # No view claims anything of samples it has not drawn yet (the slice's distance legend).
    slice_legend = lab.page.locator('.gw-explorer [data-gw-view="slice"] .gw-legend').first.inner_text()
    assert "every sample lies on the plane" not in slice_legend, slice_legend

    lab.kernel_exec("model.release.set()")
    lab.kernel_exec("assert ex.wait(240), 'a view did not finish'")
    lab.wait_drawn(root)
    assert lab.kernel_value("ex.embedding.sample_indices is None") is True
    lab.page.wait_for_timeout(800)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()  # the other views have drawn meanwhile: the page may have moved
    screen = _screen_points(lab, box)
    assert len(screen) == 6000
    j = _isolated(screen, box)
    text = _hover_tooltip(lab, root, screen[j], box)
    assert text.split("\n")[0].strip() == f"#{j}", text
    assert f"label: {labels[j]}" in text, text
    assert "landmarks" not in root.locator(".gw-title").inner_text()
    lab.screenshot("landmarks_full", lab.page.locator('[data-gw-view="explorer"]').first)
    lab.page.mouse.move(box["x"] - 30, box["y"] - 30)
    lab.assert_clean()
