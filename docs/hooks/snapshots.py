"""MkDocs hook: interactive HTML snapshots of the views, generated with the site and embedded in its pages.

A static page cannot run a widget: the tutorials' widget outputs need a kernel. Each snapshot is a
view or an Explorer on a built-in demo, written with ``save_html`` (the same front end as in the
notebook, driven by the stored state: hover, tooltips, selection and the linked highlights work,
with no kernel and no request) into ``<site_dir>/snapshots/``.

* :func:`build_snapshots` writes them (``tests/ui/test_ui_docs_snapshots.py`` calls it too). An
  Explorer's snapshot carries BokehJS for its layer profile; the site keeps one copy of it in
  ``snapshots/bokeh-<version>/`` that every snapshot loads (about 4 MB less per Explorer).
* ``docs/index.md`` and ``docs/probes.md`` embed a snapshot with an ``<iframe>`` written in the page;
  the tutorial pages get one (``TUTORIALS``) after the cell that displays the widget it stands for.
* After the build every ``<iframe src>`` of the site must name a file of the site.

A snapshot that cannot be generated, a tutorial cell that is no longer there, or an iframe that
points nowhere fails the build. The module imports mkdocs only where a page needs it, so the test
imports :func:`build_snapshots` without the docs extra.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

SNAPSHOT_DIR = "snapshots"
log = logging.getLogger("mkdocs.hooks.snapshots")


# -- the snapshots --------------------------------------------------------------------------------
def _explorer(path: Path) -> Path:
    """The Explorer on the spirals MLP (600 points, UMAP), every layer stored."""
    import torch

    import geowidgets as gw

    torch.manual_seed(0)
    demo = gw.datasets.toy_demo("spirals", n=600, seed=0, epochs=40)
    ex = gw.Explorer(demo.model, demo.inputs, demo.labels, layers=demo.layers, k=10, method="umap", size=300)
    try:
        ex.wait()
        return ex.save_html(path, all_layers=True, title="geowidgets Explorer: spirals MLP")
    finally:
        ex.close()


def _digits_explorer(path: Path) -> Path:
    """Tutorial 1's Explorer on the digits CNN: every third digit, three layers stored, UMAP."""
    import torch

    import geowidgets as gw

    torch.manual_seed(0)
    demo = gw.datasets.digits_demo()
    every_third = torch.arange(0, len(demo.labels), 3)
    ex = gw.Explorer(
        demo.model,
        demo.inputs[every_third],
        demo.labels[every_third],
        layers=["conv1", "fc1", "fc2"],
        class_names=demo.class_names,
        images=demo.images[every_third],
        k=10,
        method="umap",
        size=300,
    )
    try:
        ex.wait()
        return ex.save_html(path, all_layers=True, title="geowidgets Explorer: digits CNN")
    finally:
        ex.close()


def _deviation(path: Path) -> Path:
    """Tutorial 3's deviation map: the digits against the correctly classified training digits."""
    import geowidgets as gw
    from geowidgets.session import Session

    demo = gw.datasets.digits_demo()
    session = Session(
        demo.model,
        demo.inputs,
        demo.labels,
        layers=demo.layers,
        reference=demo.train_mask,
        class_names=demo.class_names,
    )
    view = gw.DeviationMap(session, k=10, threshold=2.0, sort_by="divergence")
    try:
        view.wait()
        return view.save_html(path, title="geowidgets DeviationMap: digits CNN")
    finally:
        view.close()


def _slice(path: Path) -> Path:
    """Tutorial 2's input-space decision slice of the spirals MLP."""
    import geowidgets as gw
    from geowidgets.session import Session

    demo = gw.datasets.toy_demo("spirals", n=1000, seed=0)
    session = Session(demo.model, demo.inputs, demo.labels, layers=demo.layers, class_names=demo.class_names)
    view = gw.SliceView(session, layer="input", resolution=128)
    try:
        view.wait()
        return view.save_html(path, title="geowidgets SliceView: spirals MLP")
    finally:
        view.close()


#: Snapshot name (``snapshots/<name>.html``) -> the function that writes it.
SNAPSHOTS: dict[str, Callable[[Path], Path]] = {
    "explorer": _explorer,
    "digits-explorer": _digits_explorer,
    "deviation": _deviation,
    "slice": _slice,
}

#: Tutorial page -> (the start of the code cell that displays the widget, snapshot, iframe height, what it shows).
TUTORIALS: dict[str, tuple[str, str, int, str]] = {
    "tutorials/01_quickstart.ipynb": (
        "ex = gw.Explorer(",
        "digits-explorer",
        1000,
        "The Explorer on every third digit, with the layers conv1, fc1 and fc2 stored (UMAP layout)",
    ),
    "tutorials/02_decision_boundaries.ipynb": (
        "session = Session(",
        "slice",
        590,
        "The input-space decision slice of the spirals MLP at T = 1",
    ),
    "tutorials/03_knn_deviation.ipynb": (
        "session = Session(",
        "deviation",
        620,
        "The deviation map of the digits against the correctly classified training digits (k = 10, threshold 2)",
    ),
}


def build_snapshots(out_dir: str | Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Write the snapshots ``names`` (default: all) as ``out_dir/<name>.html``; BokehJS shared in ``out_dir``.

    Raises whatever a snapshot raises: the build must not go on without one.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in names if names is not None else SNAPSHOTS:
        path = SNAPSHOTS[name](out / f"{name}.html")
        _share_bokeh(path, out)
        written[name] = path
    return written


def _share_bokeh(path: Path, out_dir: Path) -> None:
    """Replace the BokehJS inlined in a snapshot by scripts in ``out_dir/bokeh-<version>/`` (written once)."""
    import bokeh
    from bokeh.resources import INLINE

    text = path.read_text(encoding="utf-8")
    inline = INLINE.render_js()
    found = text.count(inline)
    if found == 0:
        return  # a single view without a layer profile: no BokehJS in it
    if found != 1:
        raise RuntimeError(f"{path.name}: BokehJS is inlined {found} times")
    folder = out_dir / f"bokeh-{bokeh.__version__}"
    folder.mkdir(exist_ok=True)
    tags = []
    for i, source in enumerate(INLINE.js_raw):
        named = re.match(r"\s*/\* BEGIN (\S+\.js) \*/", source)
        file = folder / (named.group(1) if named else f"bokeh-{i}.js")
        if not file.exists():
            file.write_text(source, encoding="utf-8")
        tags.append(f'<script src="{folder.name}/{file.name}"></script>')
    path.write_text(text.replace(inline, "\n".join(tags)), encoding="utf-8")


# -- the pages ------------------------------------------------------------------------------------
def snapshot_block(name: str, page_url: str, height: int, caption: str) -> str:
    """The HTML of an embedded snapshot: the iframe and a caption with a link to the snapshot's own page."""
    from mkdocs.utils import get_relative_url

    src = html.escape(get_relative_url(f"{SNAPSHOT_DIR}/{name}.html", page_url))
    return (
        f'<div class="gw-snapshot" style="margin: 1em 0">'
        f'<iframe src="{src}" title="{html.escape(caption)}" loading="lazy" '
        f'style="width: 100%; height: {height}px; border: 1px solid #ddd; border-radius: 4px"></iframe>'
        f'<p style="font-size: 0.85em; margin-top: 0.2em">{html.escape(caption)}: an interactive snapshot '
        f"written with <code>save_html</code> (hover a point; no kernel runs here, so the controls are fixed). "
        f'<a href="{src}" target="_blank" rel="noopener">Open it on its own page</a>.</p></div>'
    )


def _cell_id(notebook: Path, start: str) -> str:
    from mkdocs.exceptions import PluginError

    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell["cell_type"] == "code" and "".join(cell["source"]).lstrip().startswith(start) and cell.get("id"):
            return cell["id"]
    raise PluginError(f"snapshots hook: no code cell of {notebook.name} starts with {start!r} (update TUTORIALS)")


def on_page_content(html_text: str, page, config, files) -> str:
    """Tutorial pages: the snapshot after the cell that displays the widget it stands for."""
    from mkdocs.exceptions import PluginError

    entry = TUTORIALS.get(page.file.src_uri)
    if entry is None:
        return html_text
    start, name, height, caption = entry
    cell = _cell_id(Path(page.file.abs_src_path), start)
    anchor = html_text.find(f'id="cell-id={cell}"')
    if anchor < 0:
        raise PluginError(f"snapshots hook: cell {cell} of {page.file.src_uri} is not on its page")
    following = html_text.find('<div class="jp-Cell ', anchor)
    at = following if following >= 0 else len(html_text)
    heading = (
        "<p><strong>Try it without a kernel.</strong> A static page cannot run the widget the cell above "
        "displays (it needs a kernel); here is a snapshot of it, which needs none.</p>"
    )
    block = f'<div class="gw-snapshot-cell">{heading}{snapshot_block(name, page.url, height, caption)}</div>\n'
    return html_text[:at] + block + html_text[at:]


def on_post_build(config, **kwargs: Any) -> None:
    """Write the snapshots into the site, then check that every iframe of the site shows a file of it."""
    from mkdocs.exceptions import PluginError

    site = Path(config["site_dir"])
    report = []
    for name in SNAPSHOTS:
        started = time.perf_counter()
        try:
            path = build_snapshots(site / SNAPSHOT_DIR, [name])[name]
        except Exception as exc:
            raise PluginError(f"snapshots hook: snapshot {name!r} failed: {type(exc).__name__}: {exc}") from exc
        report.append(f"{name} {path.stat().st_size / 1e6:.2f} MB in {time.perf_counter() - started:.1f} s")
    log.info("Snapshots written to %s/: %s", SNAPSHOT_DIR, ", ".join(report))
    broken = check_iframes(site)
    if broken:
        raise PluginError("iframes that show no file of the site:\n  " + "\n  ".join(broken))


IFRAME_SRC = re.compile(r"<iframe\b[^>]*?\bsrc\s*=\s*([\"'])(.*?)\1", re.I | re.S)


def check_iframes(site: Path) -> list[str]:
    """``page: src`` for every iframe of the site whose src is not a file of the site (external URLs included)."""
    broken = []
    root = site.resolve()
    for page in sorted(site.rglob("*.html")):
        if page.parent.name == SNAPSHOT_DIR:
            continue
        for match in IFRAME_SRC.finditer(page.read_text(encoding="utf-8", errors="replace")):
            src = html.unescape(match.group(2))
            path = src.split("#", 1)[0].split("?", 1)[0]
            target = (page.parent / path).resolve()
            if path.endswith("/") or target.is_dir():
                target = target / "index.html"
            ok = bool(path) and "://" not in src and not src.startswith("//") and target.is_relative_to(root)
            if not (ok and target.is_file()):
                broken.append(f"{page.relative_to(site)}: {src}")
    return broken
