"""Checkpoints and model comparison in a real browser: the step scrubber redraws the views at another
training step, and a click on a CKA cell shows those two layers side by side.

One notebook (``notebooks/training.ipynb``: the toy moons MLP with a checkpoint per epoch in the
Explorer, and two seeds in a CompareView) and one kernel serve the module; the tests run in file order.
"""

from __future__ import annotations

import pytest
from labdriver import nonblank_fraction


@pytest.fixture(scope="module")
def lab(module_lab):
    module_lab.open_notebook("training.ipynb")
    module_lab.run_all()
    root = module_lab.page.locator('[data-gw-view="explorer"]')
    root.wait_for()
    module_lab.wait_drawn(root)
    module_lab.page.locator('[data-gw-view="compare-heatmap"]').wait_for()
    return module_lab


def _settle(lab) -> None:
    lab.kernel_exec("assert ex.wait(120) and ex.training_profile.wait(120), 'a view did not finish'")
    lab.wait_drawn(lab.page.locator('[data-gw-view="explorer"]').first)
    for view in ("embedding", "deviation"):
        lab.wait_drawn(lab.page.locator(f'.gw-explorer [data-gw-view="{view}"]').first)
    lab.page.wait_for_timeout(700)  # layout transitions (600 ms) finish before pixels are compared


def test_step_scrubber_moves_the_training_step(lab) -> None:
    _settle(lab)
    explorer = lab.page.locator('[data-gw-view="explorer"]')
    scrubber = lab.page.locator(".gw-step-scrubber")
    assert scrubber.count() == 1 and scrubber.is_visible()
    profile = lab.page.locator(".gw-training-profile")
    profile.wait_for()
    assert nonblank_fraction(lab.pixels(profile)) > 0.05, "the steps × layers heatmaps are blank"
    lab.screenshot("training_step0", explorer)
    embedding = lab.page.locator('.gw-explorer [data-gw-view="embedding"]').first
    before = lab.pixels(embedding)
    predictions_0 = lab.kernel_value("ex.embedding.predictions.tolist()")
    handle = scrubber.locator(".noUi-handle")
    handle.focus()
    handle.press("End")  # the last checkpoint
    assert lab.wait_kernel_value("ex.step", lambda v: v == 4, timeout=60) == 4
    _settle(lab)
    # The views show the last checkpoint's session: its predictions, a redrawn layout.
    assert lab.kernel_value("ex.session is ex.step_family.session(4)") is True
    assert lab.kernel_value("ex.embedding.predictions.tolist() == ex.session.predictions.tolist()") is True
    assert lab.kernel_value("ex.embedding.predictions.tolist()") != predictions_0
    changed = lab.wait_pixels_change(embedding, before, minimum=0.01)
    assert changed >= 0.01, f"the embedding did not change with the step ({changed:.1%} of pixels)"
    assert lab.kernel_value("ex.training_profile.step") == 4
    lab.screenshot("training_step4", explorer)
    lab.screenshot("training_profile", profile)
    lab.assert_clean()


def test_clicking_a_cka_cell_shows_those_layers(lab) -> None:
    heatmap = lab.page.locator('[data-gw-view="compare-heatmap"]')
    heatmap.scroll_into_view_if_needed()
    cells = heatmap.locator("[data-gw-cell]")
    n_layers = lab.kernel_value("len(compare.session_a.layers)")
    assert cells.count() == n_layers * lab.kernel_value("len(compare.session_b.layers)")
    expected = lab.kernel_value("compare.matrix('cka').to_numpy().tolist()")
    shown = float(heatmap.locator('[data-gw-cell="0,1"]').get_attribute("data-value"))
    assert shown == pytest.approx(expected[0][1], rel=1e-6)
    compare = lab.page.locator(".gw-compare")
    lab.screenshot("compare_before", compare)
    heatmap.locator('[data-gw-cell="0,1"]').click()
    assert lab.wait_kernel_value("compare.cell", lambda v: v == [0, 1], timeout=60) == [0, 1]
    assert lab.kernel_value("[compare.embedding_a.layer, compare.embedding_b.layer]") == lab.kernel_value(
        "[compare.session_a.layers[0], compare.session_b.layers[1]]"
    )
    lab.page.locator('[data-gw-cell="0,1"][data-selected="true"]').wait_for(timeout=30_000)
    lab.kernel_exec("assert compare.wait(120)")
    lab.page.wait_for_timeout(700)
    for view in compare.locator('[data-gw-view="embedding"]').all():
        lab.wait_drawn(view)
        assert nonblank_fraction(lab.pixels(view)) > 0.005
    lab.screenshot("compare_cell_0_1", compare)
    lab.assert_clean()
