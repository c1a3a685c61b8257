"""The Python/JS boundary is declared once: every view trait has a docstring, and the JS reads only declared traits."""

from __future__ import annotations

import pathlib
import re

import pytest
import traitlets

from geowidgets.widgets import DeviationMap, EmbeddingView, Explorer, LayerProfile, SliceView
from geowidgets.widgets._base import StatusBar, ViewBase
from geowidgets.widgets._codec import Array, parse_shape

VIEWS = [EmbeddingView, SliceView, DeviationMap, LayerProfile, StatusBar, Explorer]
JS = pathlib.Path(__file__).resolve().parents[2] / "js"


def _own_traits(cls: type) -> dict[str, traitlets.TraitType]:
    """Traits declared by geowidgets classes in ``cls``'s MRO (not those inherited from ipywidgets/anywidget)."""
    out: dict[str, traitlets.TraitType] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("geowidgets"):
            out.update({k: v for k, v in vars(klass).items() if isinstance(v, traitlets.TraitType)})
    return out


@pytest.mark.parametrize("cls", VIEWS, ids=lambda c: c.__name__)
def test_every_view_trait_has_a_docstring(cls):
    traits = _own_traits(cls)
    assert traits, f"{cls.__name__} declares no traits"
    undocumented = [name for name, trait in traits.items() if not (trait.help or "").strip()]
    assert undocumented == [], f"{cls.__name__}: traits without help=: {undocumented}"


@pytest.mark.parametrize("cls", VIEWS, ids=lambda c: c.__name__)
def test_every_synced_trait_is_declared_and_documented_here(cls):
    """Each sync=True trait that is not ipywidgets' own widget plumbing is one of ours, with a help text."""
    ours = _own_traits(cls)
    synced = cls.class_traits(sync=True)
    plumbing: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith(("ipywidgets", "anywidget")):
            plumbing |= {k for k, v in vars(klass).items() if isinstance(v, traitlets.TraitType)}
    for name, trait in synced.items():
        if name in ours:
            assert (trait.help or "").strip(), f"{cls.__name__}.{name} has no help"
        else:
            assert name in plumbing, f"{cls.__name__}.{name} is synced but declared neither here nor by ipywidgets"


@pytest.mark.parametrize("cls", [EmbeddingView, SliceView, DeviationMap], ids=lambda c: c.__name__)
def test_array_traits_say_their_dtype_and_shape_and_are_read_only(cls):
    arrays = {name: t for name, t in _own_traits(cls).items() if isinstance(t, Array)}
    assert arrays
    for name, trait in arrays.items():
        assert trait.dtype.name in trait.help, f"{cls.__name__}.{name}: help does not name the dtype"
        for dims in parse_shape(trait.shape):
            text = "[" + ", ".join(map(str, dims)) + "]"
            assert text in trait.help, f"{cls.__name__}.{name}: help does not give the shape {text}"
        assert trait.read_only, f"{cls.__name__}.{name}: a result array must be read-only from Python"
    # no Bytes trait is left beside the codec: every binary array goes through it
    assert not [n for n, t in _own_traits(cls).items() if isinstance(t, traitlets.Bytes)]


JS_VIEWS = {"embedding.js": EmbeddingView, "slice.js": SliceView, "deviation.js": DeviationMap, "status.js": StatusBar}


@pytest.mark.parametrize("file", [*JS_VIEWS, "common.js"])
def test_the_front_end_reads_and_writes_only_declared_traits(file):
    source = (JS / file).read_text()
    used = set(re.findall(r"model\.(?:get|set|on|off)\(\s*'(?:change:)?([A-Za-z_]\w*)'", source))
    assert used, f"{file} uses no traits?"
    classes = [JS_VIEWS[file]] if file in JS_VIEWS else [ViewBase]
    for cls in classes:
        missing = sorted(used - set(cls.class_trait_names()))
        assert missing == [], f"{file} uses traits {cls.__name__} does not declare: {missing}"


ROOT = pathlib.Path(__file__).resolve().parents[2]


def _github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_code_cites_only_sections_that_exist_in_the_docs():
    anchors: dict[str, set[str]] = {}
    for page in (ROOT / "docs").glob("*.md"):
        headings = re.findall(r"^#{1,6} (.+)$", page.read_text(), flags=re.M)
        anchors[f"docs/{page.name}"] = {_github_slug(h) for h in headings}
    cited = []
    for folder in ("geowidgets", "tests", "js"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".js", ".mjs") and "static" not in path.parts:
                for page, anchor in re.findall(r"(docs/[\w\-]+\.md)#([\w\-]+)", path.read_text()):
                    cited.append((path.relative_to(ROOT).as_posix(), page, anchor))
    assert cited, "no code cites the docs"
    broken = [c for c in cited if c[2] not in anchors.get(c[1], set())]
    assert broken == [], f"citations of missing doc sections: {broken}"
