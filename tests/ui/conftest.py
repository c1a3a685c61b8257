"""Real-browser test harness: one JupyterLab server and one headless Chromium per test session.

What the fixtures give a test
-----------------------------
- ``lab_server`` (session): ``jupyter lab`` on 127.0.0.1 with a random token, serving a temporary
  copy of ``tests/ui/notebooks/``; stopped (process group terminated) at the end of the session.
- ``browser`` (session): Playwright's sync API driving the system Chromium (``/usr/bin/chromium``,
  or ``$GW_CHROMIUM``) through ``executable_path``; Playwright never downloads a browser.
- ``lab`` (function) and ``module_lab`` (module, one notebook and kernel shared by a module's tests):
  a fresh browser context and page on the server, with every request recorded
  and non-local ones blocked, and console errors collected. At teardown the test fails if any
  request left 127.0.0.1/localhost or if the page logged an error; a screenshot is always kept in
  ``tests/ui/artifacts/``.

Browser absence: with ``CI=true`` and no Chromium the UI tests FAIL; locally they skip with a reason.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from labdriver import LabPage, open_lab_page

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE / "notebooks"
ARTIFACTS = HERE / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
]
SERVER_START_TIMEOUT = 120.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/ui is a ``ui`` test."""
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.ui)


def find_chromium() -> str | None:
    """Path of the system Chromium: ``$GW_CHROMIUM`` if set (and only it), else ``/usr/bin/chromium`` or PATH."""
    if os.environ.get("GW_CHROMIUM"):
        candidates = [os.environ["GW_CHROMIUM"]]
    else:
        candidates = ["/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _require_chromium() -> str:
    path = find_chromium()
    if path is not None:
        return path
    reason = "no Chromium found (looked at $GW_CHROMIUM, /usr/bin/chromium, PATH); `apt-get install chromium`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"UI tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_lab_settings(settings_dir: Path) -> None:
    """User settings that keep JupyterLab quiet and offline: no news, no update checks."""
    notif = settings_dir / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True, exist_ok=True)
    (notif / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
    )


class LabServer:
    """A running ``jupyter lab`` (``app="lab"``) or ``jupyter notebook`` (``app="notebook"``) process."""

    def __init__(
        self,
        root: Path,
        port: int,
        token: str,
        process: subprocess.Popen,
        log: Path,
        runtime: Path,
        app: str = "lab",
    ):
        self.app = app
        self.root = root
        self.port = port
        self.token = token
        self.process = process
        self.log = log
        self.runtime = runtime

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str) -> object:
        """GET a JSON REST endpoint of the server."""
        req = urllib.request.Request(f"{self.base_url}{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read().decode())

    def connection_file(self, kernel_id: str) -> Path:
        return self.runtime / f"kernel-{kernel_id}.json"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return _require_chromium()


@pytest.fixture(scope="session")
def chromium_args() -> list[str]:
    """The command-line switches every test browser is launched with (add to them for a special browser)."""
    return list(CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def lab_server(chromium_path: str) -> Iterator[LabServer]:
    """Start ``jupyter lab`` on 127.0.0.1 with a random token in a temp copy of tests/ui/notebooks."""
    yield from _serve("lab")


@pytest.fixture(scope="session")
def notebook_server(chromium_path: str) -> Iterator[LabServer]:
    """Start Jupyter Notebook 7 (``jupyter notebook``) the same way; skips when ``notebook`` is not installed."""
    pytest.importorskip(
        "notebook", minversion="7", reason="Jupyter Notebook 7 is not installed (`pip install notebook`)"
    )
    yield from _serve("notebook")


def _serve(app: str) -> Iterator[LabServer]:
    tmp = Path(tempfile.mkdtemp(prefix=f"gw-ui-{app}-"))
    root = tmp / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    runtime, settings, workspaces, config = (tmp / d for d in ("runtime", "settings", "workspaces", "config"))
    for d in (runtime, settings, workspaces, config):
        d.mkdir()
    if app == "lab":  # JupyterLab-only plugins: Notebook 7 fails to load settings of plugins it lacks
        _write_lab_settings(settings)
    port, token = _free_port(), secrets.token_hex(24)
    env = dict(os.environ)
    env.update(
        JUPYTER_RUNTIME_DIR=str(runtime),
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(workspaces),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(HERE.parents[1]), env.get("PYTHONPATH", "")) if p),
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),  # small shared machines: threads only fight
    )
    cmd = [
        sys.executable, "-m", "jupyterlab" if app == "lab" else "notebook", "--no-browser", "--allow-root",
        "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
        "--ServerApp.disable_check_xsrf=False",
    ]  # fmt: skip
    if app == "lab":
        cmd += [
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.news_url=None",
        ]
    else:
        cmd += ["--JupyterNotebookApp.expose_app_in_browser=True"]
    log = tmp / "jupyter.log"
    log_fh = log.open("w")
    process = subprocess.Popen(cmd, cwd=root, env=env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
    server = LabServer(root, port, token, process, log, runtime, app=app)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter {app} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                server.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                if time.monotonic() > deadline:
                    tail = log.read_text()[-4000:]
                    raise RuntimeError(f"jupyter {app} did not answer in {SERVER_START_TIMEOUT}s:\n{tail}") from exc
                time.sleep(0.5)
        yield server
    finally:
        _stop(process)
        log_fh.close()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / ("jupyter.log" if app == "lab" else f"jupyter-{app}.log"))
        shutil.rmtree(tmp, ignore_errors=True)


def _stop(process: subprocess.Popen) -> None:
    """Terminate the server's whole process group (server and kernels), then kill if needed."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[object]:
    """Headless system Chromium through Playwright's sync API."""
    try:
        from playwright import sync_api
    except ImportError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"UI tests cannot run in CI: playwright is not installed ({exc})", pytrace=False)
        pytest.skip(f"playwright is not installed ({exc}); `pip install -e .[test]`")
    pw = sync_api.sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


@pytest.fixture
def lab(request: pytest.FixtureRequest, browser, lab_server: LabServer) -> Iterator[LabPage]:
    """A fresh page on the lab server; fails at teardown on an external request or a console error."""
    with open_lab_page(browser, lab_server, request.node.name, ARTIFACTS) as page:
        yield page


@pytest.fixture(scope="module")
def module_lab(request: pytest.FixtureRequest, browser, lab_server: LabServer) -> Iterator[LabPage]:
    """One page shared by a module's tests (one kernel, one notebook run); same checks at teardown."""
    with open_lab_page(browser, lab_server, request.module.__name__.rsplit(".", 1)[-1], ARTIFACTS) as page:
        yield page
