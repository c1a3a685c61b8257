"""MkDocs hook: the site fetches nothing from outside itself at run time (no CDN, no web font).

The pages must work offline. Two parts:

* :func:`on_page_content` cleans the executed tutorial pages. mkdocs-jupyter stores the notebook's
  widget state (``ExecutePreprocessor.store_widget_state`` is fixed to true there, with no option)
  and adds a script that loads the ipywidgets HTML manager and require.js from a CDN to draw it;
  the page also gets BokehJS inlined by each ``output_notebook`` call (about 4 MB each), a MathJax
  script with no URL and a Mermaid loader from a CDN. The hook removes them
  (:func:`strip_notebook_page`) and leaves a short note where a widget was; the interactive views
  are shown by the snapshots of ``docs/hooks/snapshots.py``.
* :func:`on_post_build` reads every HTML and CSS file of the built site and fails the build on
  anything that would fetch from outside it (:func:`remote_fetches`): a ``<script src>``, a
  stylesheet, preload or preconnect ``<link>``, an ``<img>``/``<iframe>``/``<source>``/... with an
  ``http(s)`` or protocol-relative URL, a CSS ``url()``/``@import`` of one, an inline script that
  loads a script from a CDN, and the widget state itself. ``<a href>`` links are navigation and
  stay allowed.

The module needs mkdocs only in the events, so the tests import it without the docs extra.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

try:
    from mkdocs.plugins import event_priority
except ImportError:  # the tests import the module without the docs extra

    def event_priority(priority: float):  # type: ignore[no-redef]
        return lambda event: event


#: The note that stands where a widget output was on a tutorial page.
WIDGET_NOTE = (
    '<p class="gw-widget-note" style="font-size: 0.85em; font-style: italic; margin: 0.2em 0">'
    "Interactive widget: it needs a running kernel, so this static page does not show it "
    "(run the notebook to use it).</p>"
)

# A widget output as nbconvert writes it: the element script, then the view's model id.
_WIDGET_VIEW = re.compile(
    r'(?:<script type="text/javascript">\s*var element = document\.getElementById\([^)]*\);\s*</script>\s*)?'
    r'<script type="application/vnd\.jupyter\.widget-view\+json">.*?</script>',
    re.S,
)
_WIDGET_STATE = re.compile(r'<script type="application/vnd\.jupyter\.widget-state\+json">.*?</script>\s*', re.S)
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>\s*", re.S | re.I)
# A whole output of the notebook whose only content is one script (nbconvert's lab template).
_JS_OUTPUT = re.compile(
    r'<div class="jp-OutputArea-child">\s*<div class="jp-OutputPrompt jp-OutputArea-prompt">[^<]*</div>\s*'
    r'<div class="jp-RenderedJavaScript jp-OutputArea-output"[^>]*>\s*<script type="text/javascript">(.*?)</script>'
    r"\s*</div>\s*</div>\s*",
    re.S,
)


def strip_notebook_page(text: str) -> str:
    """A notebook page without widget state, widget manager, inlined BokehJS, MathJax or Mermaid loaders.

    Raises ``ValueError`` on a Mermaid diagram (it would need the loader from a CDN to draw).
    """
    if 'class="jp-Mermaid' in text:
        raise ValueError("a Mermaid diagram in a notebook needs mermaid.js from a CDN; use a picture")
    text = _WIDGET_STATE.sub("", text)

    def script(match: re.Match[str]) -> str:
        attrs, body = match.group(1), match.group(2)
        if "widgetRendererSrc" in body:  # loads @jupyter-widgets/html-manager (and require.js) from unpkg
            return ""
        if "text/x-mathjax-config" in attrs or re.fullmatch(r"""\s*src=(""|'')\s*""", attrs):
            return ""  # MathJax: its URL is empty (custom_mathjax_url), so only its configuration is left
        if 'type="module"' in attrs and "mermaid" in body:  # imports mermaid.js from cdnjs on a diagram
            return ""
        return match.group(0)

    text = _SCRIPT.sub(script, text)
    # BokehJS that output_notebook inlines for the widgets' charts: nothing else on the page uses it.
    text = _JS_OUTPUT.sub(lambda m: "" if "_bokeh_onload_callbacks" in m.group(1) else m.group(0), text)
    return _WIDGET_VIEW.sub(WIDGET_NOTE, text)


def on_page_content(html_text: str, page, config, files) -> str:
    """Executed notebook pages: :func:`strip_notebook_page` (other pages are left as they are)."""
    from mkdocs.exceptions import PluginError

    if not page.file.src_uri.endswith(".ipynb"):
        return html_text
    try:
        return strip_notebook_page(html_text)
    except ValueError as exc:
        raise PluginError(f"offline hook: {page.file.src_uri}: {exc}") from exc


# -- the check ------------------------------------------------------------------------------------
#: ``<link rel>`` values that make the browser fetch (or connect to) the ``href``.
FETCHING_RELS = {
    "stylesheet",
    "preload",
    "modulepreload",
    "prefetch",
    "preconnect",
    "dns-prefetch",
    "prerender",
    "icon",
    "shortcut",
    "apple-touch-icon",
    "mask-icon",
    "manifest",
}
#: Element -> the attributes whose URL the browser fetches.
FETCHING_ATTRS = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "frame": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "track": ("src",),
    "input": ("src",),
    "image": ("href", "xlink:href"),
    "use": ("href", "xlink:href"),
    "base": ("href",),
}
_REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)
_CSS_URL = re.compile(r"""(?:url\(\s*|@import\s+(?!url\())(["']?)([^"')\s]+)\1""", re.I)
# A script loaded at run time by an inline script: a CDN host or an absolute URL of a .js/.mjs/.css file.
_CDN = re.compile(
    r"""(?:https?:)?//(?:unpkg\.com|cdn\.jsdelivr\.net|cdnjs\.cloudflare\.com|ajax\.googleapis\.com|"""
    r"""fonts\.googleapis\.com|fonts\.gstatic\.com|esm\.sh|cdn\.skypack\.dev|polyfill\.io|code\.jquery\.com|"""
    r"""cdn\.bokeh\.org|cdn\.plot\.ly|[a-z0-9.-]*bootstrapcdn\.com|[a-z0-9.-]*fontawesome\.com)[^\s"'`]*"""
    r"""|https?://[^\s"'`]+\.(?:m?js|css)(?=[?#"'`\s])""",
    re.I,
)
_DATA_SCRIPT = re.compile(r"json|template|x-mathjax-config|text/plain", re.I)
_WIDGET_TYPES = ("application/vnd.jupyter.widget-state+json", "application/vnd.jupyter.widget-view+json")


def is_remote(url: str) -> bool:
    """An absolute (``scheme://``) or protocol-relative (``//host``) URL: outside the site."""
    return bool(_REMOTE.match(url))


def _css_fetches(css: str) -> list[str]:
    return [f"css url {m.group(2)}" for m in _CSS_URL.finditer(css) if is_remote(m.group(2))]


class _Finder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in: str | None = None  # "script" / "style" / "data" while inside one

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v or "" for k, v in attrs}
        urls: list[tuple[str, str]] = []
        for name in FETCHING_ATTRS.get(tag, ()):
            if name in a:
                values = (
                    [v.strip().split()[0] for v in a[name].split(",") if v.strip()] if "srcset" in name else [a[name]]
                )
                urls += [(name, v) for v in values]
        if tag == "link" and FETCHING_RELS & set(a.get("rel", "").lower().split()):
            urls.append(("href", a.get("href", "")))
        for name, url in urls:
            if is_remote(url):
                self.found.append(f'<{tag} {name}="{url}">')
        if "style" in a:
            self.found += [f"<{tag} style> {f}" for f in _css_fetches(a["style"])]
        if tag == "script":
            kind = a.get("type", "")
            if kind in _WIDGET_TYPES:
                self.found.append(f'<script type="{kind}"> (widget state needs a widget manager from a CDN)')
            self._in = "data" if _DATA_SCRIPT.search(kind) else "script"
        elif tag == "style":
            self._in = "style"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.found += [f"<style> {f}" for f in _css_fetches(data)]
        elif self._in == "script":
            self.found += [f"<script> loads {m.group(0)}" for m in _CDN.finditer(data)]


def remote_fetches(html_text: str) -> list[str]:
    """What an HTML page would fetch from outside the site when a browser shows it (empty: nothing)."""
    finder = _Finder()
    finder.feed(html_text)
    finder.close()
    return finder.found


def check_site(site: Path) -> list[str]:
    """``file: reference`` for every remote fetch of the site's HTML and CSS files."""
    problems = []
    for path in sorted(site.rglob("*")):
        if path.suffix not in (".html", ".css") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found = remote_fetches(text) if path.suffix == ".html" else _css_fetches(text)
        problems += [f"{path.relative_to(site)}: {f}" for f in found]
    return problems


@event_priority(-100)  # last: after docs/hooks/snapshots.py has written its pages into the site
def on_post_build(config, **kwargs: Any) -> None:
    """After the site and the snapshots are written: fail on any fetch from outside the site."""
    from mkdocs.exceptions import PluginError

    problems = check_site(Path(config["site_dir"]))
    if problems:
        shown = problems[:40] + ([f"... and {len(problems) - 40} more"] if len(problems) > 40 else [])
        raise PluginError("offline hook: the site fetches from outside itself at run time:\n  " + "\n  ".join(shown))
