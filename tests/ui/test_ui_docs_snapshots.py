"""The documentation site's interactive snapshots draw in a real browser, embedded and offline.

The docs build writes them with ``build_snapshots`` of ``docs/hooks/snapshots.py`` into
``build/docs/snapshots/``; this test calls the same function for the Explorer's snapshot (the
largest; its layer profile loads the site's shared copy of BokehJS) into a small site whose page
iframes it as the documentation pages do (``snapshot_block``). The page opens from a ``file://`` URL
in headless Chromium with every request that is not ``file:`` or ``data:`` aborted: each view in the
frame draws a non-blank picture, the profile draws its charts, nothing is blocked and no error is
logged. The hook's iframe check passes on that site and names an iframe whose file is missing.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from labdriver import nonblank_fraction, png_to_array

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"


def _hook():
    spec = importlib.util.spec_from_file_location("docs_snapshots_hook", ROOT / "docs" / "hooks" / "snapshots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def docs_site(tmp_path_factory) -> Path:
    """A site with the Explorer's snapshot and a page that iframes it."""
    hook = _hook()
    site = tmp_path_factory.mktemp("site")
    written = hook.build_snapshots(site / hook.SNAPSHOT_DIR, ["explorer"])
    for name, path in written.items():
        # BokehJS (about 4 MB) is shared, not inlined: each snapshot stays small.
        assert path.stat().st_size < 1_500_000, f"{name}: {path.stat().st_size} bytes"
    assert list((site / hook.SNAPSHOT_DIR).glob("bokeh-*/bokeh.min.js")), "no shared BokehJS"
    (site / "index.html").write_text(
        "<!DOCTYPE html><html><body><h1>snapshots</h1>"
        + hook.snapshot_block("explorer", "", 1000, "The Explorer")
        + "</body></html>",
        encoding="utf-8",
    )
    return site


def _wait(frame, predicate: str, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if frame.evaluate(predicate):
            return
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}")


def _drawn(view: str) -> str:
    return (
        f"() => {{ const el = document.querySelector('[data-gw-view=\"{view}\"]');"
        " return !!el && el.dataset.gwDrawn !== undefined && el.dataset.gwDrawn === el.dataset.gwRevision; }"
    )


def test_docs_snapshots_draw_in_their_iframes_offline(browser, docs_site: Path) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 1800}, device_scale_factor=1)
    requests, blocked, errors = [], [], []

    def route(r) -> None:
        url = r.request.url
        requests.append(url)
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    try:
        page.goto((docs_site / "index.html").as_uri())
        page.locator('iframe[src="snapshots/explorer.html"]').scroll_into_view_if_needed()
        deadline = time.monotonic() + 30
        found: list = []
        while not found and time.monotonic() < deadline:
            found = [f for f in page.frames if f.url.endswith("/snapshots/explorer.html")]
            page.wait_for_timeout(200)
        assert found, "the Explorer's iframe did not load"
        explorer = found[0]
        for view in ("embedding", "slice", "deviation"):
            _wait(explorer, _drawn(view), f"the Explorer snapshot's {view} view to draw")
        _wait(explorer, "() => !!window.Bokeh && Bokeh.documents.length > 0", "BokehJS and the profile")
        _wait(explorer, "() => document.documentElement.dataset.gwProfile === 'ready'", "the profile's links")
        page.wait_for_timeout(500)

        regions = {
            view: explorer.locator(f'[data-gw-view="{view}"] canvas').first
            for view in ("embedding", "slice", "deviation")
        }
        regions["profile"] = explorer.locator(".gw-export-profile")
        for what, locator in regions.items():
            locator.scroll_into_view_if_needed()
            share = nonblank_fraction(png_to_array(locator.screenshot(animations="disabled")))
            assert share > 0.02, f"{what}: only {share:.1%} of the pixels differ from the background"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs_snapshots.png"), full_page=True)
    finally:
        context.close()
    assert not blocked, f"requests that left the files: {blocked}"
    assert any("/snapshots/bokeh-" in url and url.endswith("/bokeh.min.js") for url in requests), requests
    assert not errors, errors

    hook = _hook()
    assert hook.check_iframes(docs_site) == []
    (docs_site / "broken.html").write_text('<iframe src="snapshots/missing.html"></iframe>', encoding="utf-8")
    assert hook.check_iframes(docs_site) == ["broken.html: snapshots/missing.html"]
