"""The Binder landing page: tutorial 1 (the Explorer on the digits CNN) runs in the browser and draws."""

from __future__ import annotations

import shutil
from pathlib import Path

from labdriver import nonblank_fraction

TUTORIAL = Path(__file__).resolve().parents[2] / "tutorials" / "01_quickstart.ipynb"


def test_quickstart_tutorial_runs_and_the_explorer_draws(lab, lab_server) -> None:
    shutil.copy(TUTORIAL, lab_server.root / TUTORIAL.name)
    lab.open_notebook(TUTORIAL.name)
    lab.run_all(timeout=300)
    explorer = lab.page.locator('[data-gw-view="explorer"]').first
    explorer.wait_for()
    lab.kernel_exec("assert ex.wait(240), 'the Explorer did not finish'")
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
    lab.assert_clean()
