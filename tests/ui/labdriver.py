"""Driving JupyterLab in a real browser: open and run notebooks, read kernel state, compare pixels.

Used by ``tests/ui/conftest.py`` and the UI tests. The page's JupyterLab application is exposed as
``window.jupyterapp`` (``--LabApp.expose_app_in_browser``), so notebooks are run with the same
commands the menus use. Python-side state is read through a second client on the notebook's own
kernel (``jupyter_client`` with the kernel's connection file), which never disturbs the front end.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
LOCAL_SCHEMES = ("data", "blob", "about")
# Console messages that are not errors of the page under test. Each entry must say why.
EXPECTED_CONSOLE_ERRORS: tuple[tuple[str, str], ...] = ()


def allowed_url(url: str) -> bool:
    """True for a request that stays on this machine (loopback HTTP/WS, data:, blob:, about:).

    Examples
    --------
    >>> allowed_url("http://127.0.0.1:8888/lab"), allowed_url("https://cdn.example.com/x.js")
    (True, False)
    """
    parsed = urlparse(url)
    if parsed.scheme in LOCAL_SCHEMES:
        return True
    return parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname in LOCAL_HOSTS


def png_to_array(png: bytes) -> np.ndarray:
    """Decode PNG bytes to a uint8 RGB array ``[H, W, 3]``."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def nonblank_fraction(img: np.ndarray, tolerance: int = 12) -> float:
    """Share of pixels that differ from the image's most common colour (its background)."""
    flat = img.reshape(-1, img.shape[-1]).astype(np.int16)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return float((np.abs(flat - background).max(axis=1) > tolerance).mean())


def pixel_difference(a: np.ndarray, b: np.ndarray, tolerance: int = 12) -> float:
    """Share of pixels that changed between two same-sized images."""
    if a.shape != b.shape:
        return 1.0
    return float((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1) > tolerance).mean())


class KernelError(RuntimeError):
    """Code run in the notebook's kernel raised."""


class LabPage:
    """One browser page on the JupyterLab server, with helpers to run notebooks and inspect widgets."""

    def __init__(self, page: Any, server: Any, artifacts: Path):
        self.page = page
        self.server = server
        self.artifacts = artifacts
        self.console_errors: list[str] = []
        self.console_warnings: list[str] = []
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.notebook: str | None = None
        self._clients: dict[str, Any] = {}
        self._reported: set[str] = set()

    # -- navigation ---------------------------------------------------------------------------------
    def open_notebook(self, path: str, timeout: float = 120.0) -> None:
        """Open ``path`` (relative to the server root) in JupyterLab and wait for an idle kernel."""
        self.notebook = path
        # A workspace of its own, reset: JupyterLab would otherwise reopen (and start kernels for) the
        # notebooks earlier pages left open in the shared default workspace.
        workspace = "gw-" + "".join(c if c.isalnum() else "-" for c in path)
        url = f"{self.server.base_url}/lab/workspaces/{workspace}/tree/{path}?reset&token={self.server.token}"
        if getattr(self.server, "app", "lab") == "notebook":  # Jupyter Notebook 7: one notebook per page
            url = f"{self.server.base_url}/notebooks/{path}?token={self.server.token}"
        self.page.goto(url)
        self.page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=timeout * 1000)
        self.wait_until(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }",
            timeout=timeout,
            what=f"an idle kernel for {path}",
        )

    def run_all(self, timeout: float = 240.0) -> None:
        """Run every cell (the menu's Run All) and wait for the end; raise on any error output."""
        self.page.evaluate(
            "() => { window.__gwRunDone = false; window.jupyterapp.commands"
            ".execute('notebook:run-all-cells').then(() => { window.__gwRunDone = true; }); }"
        )
        self.wait_until("() => window.__gwRunDone === true", timeout=timeout, what="Run All to finish")
        self.wait_until(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
            timeout=timeout,
            what="the kernel to be idle after Run All",
        )
        errors = self.page.evaluate(
            "() => { const out = []; const cells = window.jupyterapp.shell.currentWidget.content.model.cells;"
            " for (let i = 0; i < cells.length; i++) { const c = cells.get(i);"
            "   if (c.type !== 'code') continue;"
            "   for (const o of c.toJSON().outputs || []) if (o.output_type === 'error')"
            "     out.push(`cell ${i}: ${o.ename}: ${o.evalue}\\n${(o.traceback || []).join('\\n')}`); }"
            " return out; }"
        )
        if errors:
            raise KernelError("notebook cells raised:\n" + "\n".join(errors))

    def wait_until(self, js_predicate: str, timeout: float = 60.0, what: str = "a condition") -> None:
        """Poll a JS predicate in the page until it returns true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.page.evaluate(js_predicate):
                    return
            except Exception as exc:  # the page may be navigating; keep polling until the deadline
                if "Target page, context or browser has been closed" in str(exc):
                    raise
            self.page.wait_for_timeout(200)
        raise TimeoutError(f"waited {timeout:.0f}s for {what}")

    # -- kernel state -------------------------------------------------------------------------------
    def kernel_id(self) -> str:
        """Id of the kernel behind the open notebook."""
        for session in self.server.api("/api/sessions"):
            if session.get("path") == self.notebook and session.get("kernel"):
                return session["kernel"]["id"]
        raise KeyError(f"no kernel session for {self.notebook!r}")

    def kernel_exec(self, code: str, timeout: float = 60.0) -> str:
        """Run ``code`` in the notebook's kernel through a second client; return what it printed."""
        from jupyter_client import BlockingKernelClient

        kid = self.kernel_id()
        client = self._clients.get(kid)
        if client is None:
            client = BlockingKernelClient(connection_file=str(self.server.connection_file(kid)))
            client.load_connection_file()
            client.start_channels()
            client.wait_for_ready(timeout=timeout)
            self._clients[kid] = client
        msg_id = client.execute(code, store_history=False)
        out: list[str] = []
        error: str | None = None
        deadline = time.monotonic() + timeout
        while True:
            msg = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}\n" + "\n".join(content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                break
        if error:
            raise KernelError(error)
        return "".join(out)

    def kernel_value(self, expression: str, timeout: float = 60.0) -> Any:
        """Evaluate a JSON-serialisable Python expression in the kernel and return its value."""
        text = self.kernel_exec(f"import json as _gwj; print(_gwj.dumps({expression}))", timeout=timeout)
        return json.loads(text.strip().splitlines()[-1])

    def wait_kernel_value(self, expression: str, predicate, timeout: float = 60.0) -> Any:
        """Poll a kernel expression until ``predicate(value)`` holds; return the value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.kernel_value(expression)
            if predicate(value):
                return value
            time.sleep(0.25)
        raise TimeoutError(f"kernel expression {expression!r} stayed {value!r} for {timeout:.0f}s")

    def shutdown_kernels(self) -> None:
        """Close our kernel clients and delete the sessions this page's notebook started."""
        for client in self._clients.values():
            client.stop_channels()
        self._clients.clear()
        try:
            sessions = self.server.api("/api/sessions")
        except OSError:
            return
        for session in sessions:
            if session.get("path") == self.notebook:
                req = urllib.request.Request(
                    f"{self.server.base_url}/api/sessions/{session['id']}",
                    method="DELETE",
                    headers={"Authorization": f"token {self.server.token}"},
                )
                try:
                    urllib.request.urlopen(req, timeout=20).close()
                except OSError:
                    pass

    # -- geowidgets views ----------------------------------------------------------------------------
    def view_state(self, root: Any) -> dict:
        """The DOM contract of a view root: revision, drawn revision and status (strings or None)."""
        return root.evaluate(
            "el => ({revision: el.dataset.gwRevision ?? null, drawn: el.dataset.gwDrawn ?? null,"
            " status: el.dataset.gwStatus ?? null})"
        )

    def wait_drawn(self, root: Any, after: int = 0, timeout: float = 90.0) -> int:
        """Wait until the view root has drawn a revision > ``after`` and is not busy; return it."""
        deadline = time.monotonic() + timeout
        state: dict = {}
        while time.monotonic() < deadline:
            state = self.view_state(root)
            drawn = state["drawn"]
            if drawn is not None and drawn == state["revision"] and int(drawn) > after and state["status"] != "busy":
                return int(drawn)
            self.page.wait_for_timeout(100)
        raise TimeoutError(f"view did not draw a revision > {after} in {timeout:.0f}s (last state {state})")

    def open_explorer(self, notebook: str, root: str = "explorer") -> LabPage:
        """Open a test notebook, run it, and wait until its ``data-gw-view=root`` widget has drawn."""
        self.open_notebook(notebook)
        self.run_all()
        widget = self.page.locator(f'[data-gw-view="{root}"]').first
        widget.wait_for()
        self.wait_drawn(widget)
        return self

    def explorer_view(self, view: str) -> Any:
        """The root of one of the Explorer's views (``"embedding"``, ``"slice"``, ``"deviation"``...)."""
        return self.page.locator(f'.gw-explorer [data-gw-view="{view}"]').first

    def settle_explorer(self, views: tuple[str, ...]) -> None:
        """Wait until the kernel's Explorer ``ex`` is idle and it and ``views`` have drawn their latest revision."""
        self.kernel_exec("assert ex.wait(120), 'a view did not finish'")
        for view in ("explorer", *views):
            self.wait_drawn(self.page.locator(f'[data-gw-view="{view}"]').first)
        self.page.wait_for_timeout(700)  # layout transitions (600 ms) finish before pixels are compared

    def wait_pixels_change(self, locator: Any, before: np.ndarray, minimum: float, timeout: float = 30.0) -> float:
        """Poll an element's pixels until at least ``minimum`` of them differ from ``before``."""
        deadline = time.monotonic() + timeout
        diff = 0.0
        while time.monotonic() < deadline:
            diff = pixel_difference(before, self.pixels(locator))
            if diff >= minimum:
                return diff
            self.page.wait_for_timeout(200)
        return diff

    # -- pixels -------------------------------------------------------------------------------------
    def pixels(self, locator: Any) -> np.ndarray:
        """RGB pixels of an element as shown on screen ``[H, W, 3]``."""
        locator.scroll_into_view_if_needed()
        return png_to_array(locator.screenshot(animations="disabled"))

    def screenshot(self, name: str, locator: Any | None = None) -> Path:
        """Keep a screenshot (of the page, or of one element) in the artifacts folder."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        (locator or self.page).screenshot(path=str(path))
        return path

    # -- checks -------------------------------------------------------------------------------------
    def view_warnings(self, patterns: tuple[str, ...] = ("bokeh", "geowidgets", "gw-", "anywidget")) -> list[str]:
        """Console warnings logged so far that come from the views (BokehJS, geowidgets, anywidget)."""
        return [w for w in self.console_warnings if any(p.lower() in w.lower() for p in patterns)]

    def is_expected_error(self, message: str) -> bool:
        return any(pattern in message for pattern, _why in EXPECTED_CONSOLE_ERRORS)

    def problems(self) -> list[str]:
        """External requests and unexpected console errors not yet reported by :meth:`assert_clean`."""
        found = []
        external = sorted({u for u in self.requests if not allowed_url(u)} | set(self.blocked))
        new_external = [u for u in external if u not in self._reported]
        if new_external:
            found.append(f"requests left 127.0.0.1/localhost: {new_external}")
        errors = [e for e in self.console_errors if not self.is_expected_error(e) and e not in self._reported]
        if errors:
            found.append("browser console errors:\n" + "\n".join(errors))
        self._reported.update(new_external, errors)
        return found

    def assert_clean(self) -> None:
        """Fail if a request left the machine or the page logged a console error since the last check.

        Each problem fails exactly one check (the first after it happened), so one error does not
        fail every later test that shares the page.
        """
        problems = self.problems()
        assert not problems, "\n".join(problems)


@contextmanager
def open_lab_page(browser: Any, server: Any, name: str, artifacts: Path) -> Iterator[LabPage]:
    """A new browser context and page that records requests (blocking non-local ones) and console errors.

    On exit it keeps a screenshot and the request log in ``artifacts``, shuts the page's kernel down,
    and raises ``AssertionError`` if a request left the machine or the console logged an error.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    lab = LabPage(None, server, artifacts)

    def route(route_obj: Any) -> None:
        url = route_obj.request.url
        if allowed_url(url):
            route_obj.continue_()
        else:
            lab.blocked.append(url)
            route_obj.abort()

    context.route("**/*", route)
    context.on("request", lambda req: lab.requests.append(req.url))
    page = context.new_page()

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            lab.console_errors.append(f"console.error: {msg.text}")
        elif msg.type == "warning":
            lab.console_warnings.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: lab.console_errors.append(f"uncaught exception: {exc}\n{exc.stack or ''}"))
    page.set_default_timeout(60_000)
    lab.page = page
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    try:
        yield lab
    finally:
        artifacts.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(artifacts / f"{safe}.png"))
        except Exception as exc:  # a crashed page must not hide the other checks
            lab.console_errors.append(f"final screenshot failed: {exc}")
        lab.shutdown_kernels()
        context.close()
        (artifacts / f"{safe}.requests.txt").write_text("\n".join(lab.requests) + "\n")
    assert lab.requests, "no request was recorded at all: the request recorder is broken"
    lab.assert_clean()
