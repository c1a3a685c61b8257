"""Griffe extension for the API reference: the lazily imported public names, and Sphinx-style roles.

geowidgets imports most public names on first attribute access (``geowidgets.geometry.__getattr__``
reads them from the ``_MODULES`` table; ``geowidgets.__getattr__`` loads ``Session`` and the views),
so a static reading of the package does not see them. This extension adds them as aliases, so
``::: geowidgets.geometry`` documents every probe under its public path.

The docstrings cross-reference with Sphinx roles (``:class:`~geowidgets.Session```, ``:func:`knn```).
Each role becomes a Markdown cross-reference to the canonical path of the object it names, resolved
from the docstring's own scope. Three outcomes:

* the target is documented on the site: a link;
* it resolves, but to a private object the site does not document: inline code;
* it does not resolve (a typo, a renamed object): the reference is kept as a link to the name as
  written, which the docs build reports as a broken cross-reference (``mkdocs build --strict`` fails).
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(mod|class|func|meth|attr|data|obj|exc|const):`(~?)([^`<>]+)`")
# Objects outside geowidgets are shown as code (the site loads no other project's inventory).
EXTERNAL = ("torch", "numpy", "np", "sklearn", "scipy", "pandas", "umap", "faiss", "bokeh", "traitlets",
            "anywidget", "ipywidgets", "dask", "pynndescent", "nbformat", "IPython", "builtins")  # fmt: skip
# Public modules that have a page of the API reference (docs/api/*.md).
DOCUMENTED_MODULES = (
    "geowidgets",
    "geowidgets.datasets",
    "geowidgets.geometry",
    "geowidgets.probe",
    "geowidgets.session",
    "geowidgets.widgets",
)


def _lookup(root: griffe.Module, path: str) -> griffe.Object | griffe.Alias | None:
    """The object at a dotted path under the package, following aliases; None if there is none."""
    parts = path.split(".")
    if parts[0] != root.name:
        return None
    obj: Any = root
    for part in parts[1:]:
        try:
            obj = obj.members[part]
            if isinstance(obj, griffe.Alias):
                obj = obj.final_target
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return obj


def _has_docstring(obj: griffe.Object | griffe.Alias) -> bool:
    try:
        return obj.docstring is not None
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False


def _in_attributes_section(scope: griffe.Object, name: str) -> bool:
    """Whether ``name`` is listed in the Attributes section of the class that holds ``scope``."""
    obj: griffe.Object | None = scope
    while obj is not None and not obj.is_class:
        obj = obj.parent
    if obj is None or obj.docstring is None:
        return False
    text = obj.docstring.value
    section = re.search(r"^\s*Attributes\n\s*-{3,}\n(.*?)(?:^\s*\w[\w ]*\n\s*-{3,}\n|\Z)", text, re.M | re.S)
    return bool(section and re.search(rf"^\s*{re.escape(name)}\s*:", section.group(1), re.M))


class GeowidgetsDocs(griffe.Extension):
    """Add the lazily imported public names, then turn Sphinx roles into cross-references."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "geowidgets":
            return
        self._add_lazy_names(pkg)
        documented = self._documented_paths(pkg)
        for obj in self._walk(pkg):
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = ROLE.sub(
                    lambda m, o=obj: self._crossref(pkg, o, m, documented), obj.docstring.value
                )

    # -- public names -----------------------------------------------------------------------------
    @staticmethod
    def _add_lazy_names(pkg: griffe.Module) -> None:
        geometry = pkg["geometry"]
        modules = ast.literal_eval(str(geometry.members["_MODULES"].value))
        names = ["KNNGraph", "faiss_available", "knn", "knn_graph"]
        for module, public in modules.items():
            for name in public:
                geometry.set_member(name, griffe.Alias(name, f"geowidgets.geometry.{module}.{name}", parent=geometry))
                names.append(name)
        geometry.exports = sorted(set(names))
        widgets = ast.literal_eval(str(pkg.members["_WIDGETS"].value))
        for name in widgets:
            pkg.set_member(name, griffe.Alias(name, f"geowidgets.widgets.{name}", parent=pkg))
        pkg.set_member("Session", griffe.Alias("Session", "geowidgets.session.Session", parent=pkg))
        pkg.exports = [e for e in (pkg.exports or []) if isinstance(e, str)] + list(widgets)

    @staticmethod
    def _documented_paths(pkg: griffe.Module) -> set[str]:
        """Canonical paths of what the API pages show: each public module's exports and their public members."""
        paths: set[str] = set()
        for module_path in DOCUMENTED_MODULES:
            module = _lookup(pkg, module_path)
            if module is None:
                continue
            paths.add(module.path)
            for name in module.exports or ():
                target = _lookup(pkg, f"{module_path}.{name}") if isinstance(name, str) else None
                if target is None:
                    continue
                if target.docstring is None:
                    continue  # not rendered (show_if_no_docstring: false)
                paths.add(target.path)
                for member_name, member in target.members.items():
                    if not member_name.startswith("_") and _has_docstring(member):
                        paths.add(f"{target.path}.{member_name}")
            if module_path == "geowidgets.datasets":
                paths.update(
                    f"{module.path}.{n}"
                    for n, m in module.members.items()
                    if not n.startswith("_") and _has_docstring(m)
                )
        return paths

    @staticmethod
    def _walk(obj: griffe.Object):
        yield obj
        for member in obj.members.values():
            if not isinstance(member, griffe.Alias) and member.parent is obj:
                yield from GeowidgetsDocs._walk(member)

    @staticmethod
    def _crossref(pkg: griffe.Module, scope: griffe.Object, match: re.Match, documented: set[str]) -> str:
        short, written = match.group(2) == "~", match.group(3).strip()
        title = written.rsplit(".", 1)[-1] if short else written
        head, _, rest = written.partition(".")
        if head in EXTERNAL:
            return f"`{title}`"
        try:
            base = written if head == pkg.name else scope.resolve(head) + (f".{rest}" if rest else "")
        except (griffe.NameResolutionError, Exception):
            base = None
        if base is not None and base.split(".", 1)[0] in EXTERNAL:
            return f"`{title}`"
        target = _lookup(pkg, base) if base else None
        if target is None:
            if match.group(1) == "attr" and "." not in written and _in_attributes_section(scope, written):
                return f"`{title}`"  # an instance attribute the class documents in its Attributes section
            return f"[`{title}`][{written}]"  # unresolved: the build reports it
        if target.path in documented:
            return f"[`{title}`][{target.path}]"
        return f"`{title}`"
