"""The Binder landing page: tutorial 1 (the Explorer on the digits CNN) runs in the browser and draws.

It also retakes the README image, ``docs/explorer.png``: the whole Explorer, controls and titles included.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from labdriver import nonblank_fraction, png_to_array

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "tutorials" / "01_quickstart.ipynb"
README_IMAGE = ROOT / "docs" / "explorer.png"


def test_quickstart_tutorial_runs_and_the_explorer_draws(lab, lab_server) -> None:
    shutil.copy(TUTORIAL, lab_server.root / TUTORIAL.name)
    lab.open_notebook(TUTORIAL.name)
    lab.run_all(timeout=300)
    explorer = lab.page.locator('[data-gw-view="explorer"]').first
    explorer.wait_for()
    lab.kernel_exec("assert ex.wait(240), 'the Explorer did not finish'", timeout=300)
    lab.wait_drawn(explorer)
    for view in ("embedding", "slice", "deviation", "profile"):
        root = explorer.locator(f'[data-gw-view="{view}"]').first
        lab.wait_drawn(root)
        share = nonblank_fraction(lab.pixels(root))
        assert share > 0.005, f"{view}: only {share:.1%} of the pixels differ from the background"
    layer, k, temperature = lab.kernel_value("[ex.layer, ex.k, ex.temperature]")
    assert (layer, k) == ("fc1", 15)
    assert abs(temperature - 0.5) < 0.01  # the log slider snaps 0.5 to its 0.01-decade grid (10**-0.3)
    lab.screenshot("quickstart_explorer", explorer)
    # The README image: the whole Explorer, controls and titles included. A viewport taller than the
    # Explorer keeps JupyterLab's notebook panel from clipping it; the element is scrolled to the top.
    height = int(explorer.bounding_box()["height"])
    lab.page.set_viewport_size({"width": 1400, "height": max(1000, height + 300)})
    explorer.evaluate("el => el.scrollIntoView({block: 'start'})")
    lab.page.wait_for_timeout(700)
    box = explorer.bounding_box()
    viewport = lab.page.viewport_size
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], (box, viewport)
    README_IMAGE.parent.mkdir(exist_ok=True)
    explorer.screenshot(path=str(README_IMAGE))
    image = png_to_array(README_IMAGE.read_bytes())
    assert abs(image.shape[0] - box["height"]) <= 2, (image.shape, box)
    controls = explorer.locator(".gw-temperature-slider").first.bounding_box()
    assert controls["y"] >= box["y"], "the controls are above the image's top"
    assert nonblank_fraction(image[: int(controls["y"] - box["y"] + controls["height"])]) > 0.01
    lab.assert_clean()
