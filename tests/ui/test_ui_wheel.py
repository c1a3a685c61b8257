"""The built wheel, installed in a fresh virtual environment, draws the embedding view in a real browser.

``python -m build`` makes the wheel; it is installed (not editable) into a venv that sees this Python's
packages (torch, JupyterLab and their extensions), and JupyterLab is started from the venv's python
with the venv activated and no path into the repository. The kernel must import geowidgets from the
venv and the view must draw from the front end the wheel installed (``geowidgets/static``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import ARTIFACTS, SERVER_START_TIMEOUT, LabServer, _free_port, _stop, _write_lab_settings
from labdriver import nonblank_fraction, open_lab_page

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_wheel import build_dists, install_wheel, source_version, venv_env  # noqa: E402

CELL = """\
import json, sys
import numpy as np
import geowidgets
from geowidgets.widgets import EmbeddingView, _base

xy = np.random.default_rng(0).normal(size=(300, 2))
view = EmbeddingView(xy, labels=np.arange(300) % 3)
where = {"python": sys.executable, "file": geowidgets.__file__, "static": str(_base.STATIC),
         "version": geowidgets.__version__}
view"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheel, _ = build_dists(tmp_path_factory.mktemp("dist"))
    venv = tmp_path_factory.mktemp("ui-wheel") / "venv"
    install_wheel(wheel, venv)
    return venv


@pytest.fixture(scope="module")
def venv_lab(venv: Path, chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """``jupyter lab`` run by the venv's python, on a folder outside the repository with one notebook."""
    tmp = tmp_path_factory.mktemp("wheel-lab")
    root = tmp / "notebooks"
    root.mkdir()
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    nbformat.write(nb, root / "wheel.ipynb")
    runtime, settings, workspaces, config = (tmp / d for d in ("runtime", "settings", "workspaces", "config"))
    for d in (runtime, settings, workspaces, config):
        d.mkdir()
    _write_lab_settings(settings)
    port, token = _free_port(), secrets.token_hex(24)
    env = venv_env(venv)
    # JupyterLab, its server extensions and its prebuilt extensions (the widget manager, anywidget,
    # jupyter_bokeh) come from this Python, whose config and data folders a venv does not search: name them.
    data = [str(Path(sys.prefix) / "share" / "jupyter"), env.get("JUPYTER_PATH", "")]
    conf = [str(Path(sys.prefix) / "etc" / "jupyter"), env.get("JUPYTER_CONFIG_PATH", "")]
    env.update(
        JUPYTER_PATH=os.pathsep.join(p for p in data if p),
        JUPYTER_CONFIG_PATH=os.pathsep.join(p for p in conf if p),
        JUPYTER_RUNTIME_DIR=str(runtime),
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(workspaces),
    )
    cmd = [
        str(venv / "bin" / "python"), "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
    ]  # fmt: skip
    log = tmp / "jupyter.log"
    with log.open("w") as log_fh:
        process = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        server = LabServer(root, port, token, process, log, runtime)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{log.read_text()[-4000:]}")
                try:
                    server.api("/api/status")
                    break
                except (urllib.error.URLError, ConnectionError, OSError) as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"jupyter lab did not answer:\n{log.read_text()[-4000:]}") from exc
                    time.sleep(0.5)
            yield server
        finally:
            _stop(process)
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "wheel_jupyter.log").write_text(log.read_text())


def test_installed_wheel_draws_the_embedding(browser, venv: Path, venv_lab: LabServer) -> None:
    with open_lab_page(browser, venv_lab, "wheel_embedding", ARTIFACTS) as lab:
        lab.open_notebook("wheel.ipynb")
        lab.run_all()
        where = lab.kernel_value("where")
        site = venv.resolve()
        assert Path(where["python"]).parent == (venv / "bin").absolute(), f"the kernel is not the venv's: {where}"
        assert Path(where["file"]).resolve().is_relative_to(site), f"geowidgets did not come from the wheel: {where}"
        assert Path(where["static"]).resolve().is_relative_to(site), where
        assert where["version"] == source_version()

        root = lab.page.locator('[data-gw-view="embedding"]').first
        lab.wait_drawn(root)
        assert root.locator("canvas").count() >= 1, "no canvas in the embedding view"
        share = nonblank_fraction(lab.pixels(root))
        assert share > 0.005, f"only {share:.1%} of the embedding's pixels differ from the background"
        assert lab.kernel_value("[view.status, view.revision >= 1]") == ["idle", True]
        lab.screenshot("wheel_embedding_view", root)
