"""The docs site fetches nothing from outside itself: the checks of ``docs/hooks/offline.py``.

``bash scripts/docs`` fails on a remote fetch found by :func:`remote_fetches` / :func:`check_site`
(run on the whole built site after every page and snapshot is written); the executed tutorial pages
lose their widget state and CDN loaders through :func:`strip_notebook_page`. These tests run the
functions on HTML strings and a small site, with no mkdocs build.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location("docs_offline_hook", ROOT / "docs" / "hooks" / "offline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "tag",
    [
        '<script src="https://unpkg.com/@jupyter-widgets/html-manager@*/dist/embed-amd.js"></script>',
        '<script src="//cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js"></script>',
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">',
        "<link rel='preconnect' href='https://fonts.gstatic.com'>",
        '<LINK REL="Stylesheet" HREF="HTTP://example.org/a.css">',
        '<img src="https://example.org/a.png">',
        '<img srcset="a.png 1x, https://example.org/a@2x.png 2x">',
        '<iframe src="https://example.org/view.html"></iframe>',
        '<style>@import url("https://fonts.googleapis.com/css?family=Roboto");</style>',
        "<div style=\"background: url('//example.org/bg.png')\"></div>",
        '<script>var s = document.createElement("script"); s.src = "https://cdn.jsdelivr.net/npm/x";</script>',
        "<script>import('https://example.org/lib/mermaid.esm.min.mjs')</script>",
        '<script type="application/vnd.jupyter.widget-state+json">{"state": {}}</script>',
    ],
)
def test_remote_fetch_is_found(hook, tag):
    page = f"<!DOCTYPE html><html><head></head><body><p>text</p>{tag}</body></html>"
    assert hook.remote_fetches(page), tag


def test_local_references_and_links_pass(hook):
    page = """<!DOCTYPE html><html><head>
    <link rel="stylesheet" href="../assets/stylesheets/main.css">
    <link rel="icon" href="/assets/images/favicon.png">
    <link rel="canonical" href="https://example.org/docs/">
    <script src="../../assets/javascripts/bundle.min.js"></script>
    <script id="__config" type="application/json">{"search": "https://example.org/x.js"}</script>
    <script>const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");</script>
    <style>.a { background: url("data:image/svg+xml;charset=utf-8,<svg xmlns='http://www.w3.org/2000/svg'/>") }</style>
    </head><body>
    <a href="https://github.com/example/geowidgets">source</a>
    <img src="explorer.png" srcset="explorer.png 1x, explorer@2x.png 2x"><img src="data:image/png;base64,AAAA">
    <iframe src="../snapshots/explorer.html"></iframe>
    <pre><code>&lt;script src="https://unpkg.com/x.js"&gt;&lt;/script&gt;</code></pre>
    </body></html>"""
    assert hook.remote_fetches(page) == []


def test_check_site_names_the_file(hook, tmp_path):
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "index.html").write_text('<script src="../a.js"></script>', encoding="utf-8")
    (tmp_path / "bad.html").write_text('<script src="https://unpkg.com/a.js"></script>', encoding="utf-8")
    (tmp_path / "a.css").write_text("@font-face { src: url(https://fonts.gstatic.com/r.woff2) }", encoding="utf-8")
    (tmp_path / "b.css").write_text(".x { background: url(img/x.png) }", encoding="utf-8")
    assert hook.check_site(tmp_path) == [
        "a.css: css url https://fonts.gstatic.com/r.woff2",
        'bad.html: <script src="https://unpkg.com/a.js">',
    ]


# What nbconvert (through mkdocs-jupyter) writes for an executed notebook with a widget and a Bokeh load.
NOTEBOOK_PAGE = """
<script>
(function() {
  function addWidgetsRenderer() {
    var widgetRendererSrc = 'https://unpkg.com/@jupyter-widgets/html-manager@*/dist/embed-amd.js';
    scriptElement.src = widgetRendererSrc;
  }
}());
</script>
<script src=""> </script>
<script type="text/x-mathjax-config">
    init_mathjax = function() { if (window.MathJax) { MathJax.Hub.Config({}); } }
</script>
<script type="module">
  document.addEventListener("DOMContentLoaded", async () => {
    const diagrams = document.querySelectorAll(".jp-Mermaid > pre.mermaid");
    const mermaid = (await import("https://cdnjs.cloudflare.com/ajax/libs/mermaid/11.10.0/mermaid.esm.min.mjs")).default;
  });
</script>
<div class="jp-Cell jp-CodeCell jp-Notebook-cell" id="cell-id=abc">
<div class="jp-OutputArea jp-Cell-outputArea">
<div class="jp-OutputArea-child">
<div class="jp-OutputPrompt jp-OutputArea-prompt"></div>
<div class="jp-RenderedJavaScript jp-OutputArea-output" data-mime-type="application/javascript" id="e9" tabindex="0">
<script type="text/javascript">
var element = document.getElementById('e9');
(function(root) { root._bokeh_onload_callbacks = [];
  const url = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js"; }(window));
</script>
</div>
</div>
<div class="jp-OutputArea-child">
<div class="jp-OutputPrompt jp-OutputArea-prompt"></div>
<div class="jp-RenderedJavaScript jp-OutputArea-output" data-mime-type="application/javascript" id="e10" tabindex="0">
<script type="text/javascript">
var element = document.getElementById('e10');
console.log("kept");
</script>
</div>
</div>
<div class="jp-OutputArea-child jp-OutputArea-executeResult">
<div class="jp-OutputPrompt jp-OutputArea-prompt">Out[4]:</div>
<div class="jupyter-widgets jp-OutputArea-output jp-OutputArea-executeResult" id="ff8e" tabindex="0">
<script type="text/javascript">
var element = document.getElementById('ff8e');
</script>
<script type="application/vnd.jupyter.widget-view+json">
{"version_major": 2, "version_minor": 0, "model_id": "6356"}
</script>
</div>
</div>
</div>
</div>
<script type="application/vnd.jupyter.widget-state+json">
{"state": {"6356": {"model_name": "LayoutModel", "state": {}}}, "version_major": 2, "version_minor": 0}
</script>
"""


def test_strip_notebook_page(hook):
    assert hook.remote_fetches(NOTEBOOK_PAGE)
    page = hook.strip_notebook_page(NOTEBOOK_PAGE)
    assert hook.remote_fetches(page) == []
    for gone in ("widgetRendererSrc", "widget-state+json", "widget-view+json", "_bokeh_onload_callbacks", "MathJax"):
        assert gone not in page, gone
    assert '<script src="">' not in page
    assert 'console.log("kept")' in page  # a notebook's own JavaScript output stays
    assert page.count('class="gw-widget-note"') == 1
    assert page.index('class="gw-widget-note"') > page.index("Out[4]:")


def test_mermaid_diagram_fails(hook):
    with pytest.raises(ValueError, match="Mermaid"):
        hook.strip_notebook_page('<div class="jp-Mermaid"><pre class="mermaid">graph TD; A-->B</pre></div>')


def test_site_config_disables_remote_theme_assets():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "\n  font: false" in config  # mkdocs-material would load Roboto from Google Fonts
    assert "docs/hooks/offline.py" in config
