"""The distributions ``python -m build`` makes, installed as a user installs them (not editable).

The wheel is installed with ``pip install --no-deps --no-index`` into a fresh virtual environment
created with ``--system-site-packages`` (torch and the other dependencies come from this Python), and
every check runs outside the repository, so nothing can fall back to the editable checkout.
``tests/ui/test_ui_wheel.py`` renders the embedding view from such an install in a real browser.

Helpers here (:func:`build_dists`, :func:`install_wheel`, :func:`venv_env`) are shared with it.
"""

from __future__ import annotations

import email
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "geowidgets" / "static"


def source_version() -> str:
    """``__version__`` as written in ``geowidgets/__init__.py`` (the one source of the version)."""
    text = (ROOT / "geowidgets" / "__init__.py").read_text()
    (version,) = re.findall(r'^__version__ = "([^"]+)"$', text, flags=re.M)
    return version


def build_dists(outdir: Path) -> tuple[Path, Path]:
    """Run ``python -m build`` on the repository; return the wheel and the sdist it wrote."""
    pytest.importorskip("build", reason="`pip install build` (in the test extra)")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)],
        capture_output=True,
        text=True,
        cwd=outdir,
    )
    assert result.returncode == 0, f"python -m build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    wheels, sdists = sorted(outdir.glob("*.whl")), sorted(outdir.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist, got {wheels + sdists}"
    return wheels[0], sdists[0]


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_env(venv: Path) -> dict[str, str]:
    """The environment of an activated ``venv``: its bin first on PATH, no PYTHONPATH into the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv_python(venv).parent), env.get("PATH", "")])
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    return env


def install_wheel(wheel: Path, venv: Path) -> Path:
    """Create ``venv`` (seeing this Python's packages) and install ``wheel`` into it; return its python.

    ``--ignore-installed``: the editable install of this checkout is visible through the system
    site-packages, and pip must install the wheel next to it rather than call it satisfied.
    """
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv_python(venv)
    pip = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)]
    result = subprocess.run(pip, capture_output=True, text=True, env=venv_env(venv), cwd=venv)
    assert result.returncode == 0, f"pip install of the wheel failed:\n{result.stdout}\n{result.stderr}"
    return python


def run_in_venv(venv: Path, code: str) -> str:
    """Run ``code`` with the venv's python, from a folder outside the repository; return stdout."""
    result = subprocess.run(
        [str(venv_python(venv)), "-c", code], capture_output=True, text=True, env=venv_env(venv), cwd=venv
    )
    assert result.returncode == 0, f"the venv's python failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_dists(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def venv(dists: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    install_wheel(dists[0], venv)
    return venv


def test_build_names_both_files_with_the_source_version(dists: tuple[Path, Path]) -> None:
    wheel, sdist = dists
    version = source_version()
    assert wheel.name == f"geowidgets-{version}-py3-none-any.whl"
    assert sdist.name == f"geowidgets-{version}.tar.gz"


def test_wheel_metadata_is_complete(dists: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(dists[0]) as zf:
        names = zf.namelist()
        info = f"geowidgets-{source_version()}.dist-info"
        meta = email.message_from_bytes(zf.read(f"{info}/METADATA"))
        shipped_license = zf.read(f"{info}/licenses/LICENSE")
    assert meta["Version"] == source_version()
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert shipped_license == (ROOT / "LICENSE").read_bytes()
    assert "BSD 3-Clause" in shipped_license.decode() and "geowidgets developers" in shipped_license.decode()
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls), urls
    classifiers = meta.get_all("Classifier")
    assert "Framework :: Jupyter :: JupyterLab" in classifiers and "Typing :: Typed" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.") for c in classifiers)
    assert meta["Requires-Python"] and meta.get_all("Requires-Dist")
    assert meta.get_payload().startswith("# geowidgets"), "the README is the long description"
    assert "geowidgets/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "js/", "docs/", "node_modules/"))]


def test_wheel_carries_the_built_front_end_byte_for_byte(dists: tuple[Path, Path]) -> None:
    expected = {f"geowidgets/static/{p.name}": _sha256(p.read_bytes()) for p in STATIC.iterdir() if p.is_file()}
    assert "geowidgets/static/embedding.js" in expected
    with zipfile.ZipFile(dists[0]) as zf:
        shipped = {n: _sha256(zf.read(n)) for n in zf.namelist() if n.startswith("geowidgets/static/")}
    assert shipped == expected


def test_sdist_rebuilds_the_package(dists: tuple[Path, Path]) -> None:
    """The sdist holds what a wheel is built from: the sources, the front end bundle, the license."""
    with tarfile.open(dists[1]) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    version = source_version()
    for needed in (
        "pyproject.toml",
        "LICENSE",
        "README.md",
        "geowidgets/__init__.py",
        "geowidgets/static/embedding.js",
    ):
        assert needed in names, f"{needed} missing from geowidgets-{version}.tar.gz"
    assert not [n for n in names if n.startswith(("node_modules/", ".ci/", "tests/ui/artifacts/", "build/"))]


def test_installed_wheel_imports_from_the_venv(venv: Path) -> None:
    out = run_in_venv(
        venv,
        "import json, importlib.metadata as md, geowidgets\n"
        "from geowidgets.widgets import _embedding\n"
        "print(json.dumps({'file': geowidgets.__file__, 'version': geowidgets.__version__,"
        " 'dist': md.version('geowidgets'), 'static': str(_embedding.STATIC.resolve()),"
        " 'esm': (_embedding.STATIC / 'embedding.js').read_text()[:200]}))",
    )
    import json

    got = json.loads(out.strip().splitlines()[-1])
    site = venv.resolve()
    assert Path(got["file"]).resolve().is_relative_to(site), f"geowidgets came from {got['file']}, not the venv"
    assert not Path(got["file"]).resolve().is_relative_to(ROOT)
    assert Path(got["static"]).is_relative_to(site)
    assert got["version"] == got["dist"] == source_version()
    assert got["esm"] == (STATIC / "embedding.js").read_text()[:200]


def test_installed_wheel_computes(venv: Path) -> None:
    """A probe runs from the installed package: kNN indices against scikit-learn's brute-force search."""
    out = run_in_venv(
        venv,
        "import numpy as np\n"
        "from sklearn.neighbors import NearestNeighbors\n"
        "from geowidgets import geometry as geo\n"
        "x = np.random.default_rng(0).normal(size=(60, 4))\n"
        "_, idx = geo.knn(x, k=5)\n"
        "_, ref = NearestNeighbors(n_neighbors=6, algorithm='brute').fit(x).kneighbors(x)\n"
        "print(int((np.asarray(idx) == ref[:, 1:]).all()))",
    )
    assert out.strip().splitlines()[-1] == "1"
