"""Share and keep: standalone HTML snapshots, PNG snapshots and the Explorer's saved state.

* :func:`synced_state` is what a view has sent to the browser (its synced traits, arrays as
  ``{"dtype", "shape", "b64"}``: the typed codec's little-endian bytes in base64).
* :func:`write_html` writes one self-contained HTML file: that state, the bundled front end
  (``geowidgets/static/standalone.js``, the same render functions as in the notebook, driven by a
  small model object over the stored state, with the selection and hover links re-created in
  JavaScript), the stylesheet, and for the layer profile BokehJS inline (bokeh's ``components``
  with ``INLINE`` resources). The file opens offline with no kernel and makes no request.
* :class:`ViewExport` gives every view ``save_html`` and ``save_png`` (the latter asks the
  displayed view for a snapshot through a custom message).
* :class:`ExplorerState` gives the Explorer ``state``, ``from_state``, ``save_state`` and
  ``save_html``.
"""

from __future__ import annotations

import base64
import html
import json
import pathlib
import threading
import warnings
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from geowidgets.widgets._explorer import Explorer
    from geowidgets.widgets._layer_profile import LayerProfile

__all__ = ["STATE_VERSION", "ExplorerState", "ViewExport", "array_from_json", "array_to_json", "synced_state"]

#: Version of the saved Explorer state (``ex.state["version"]``).
STATE_VERSION = 1

# Synced traits that are ipywidgets/anywidget plumbing, not what a view draws.
_PLUMBING = {"layout", "_esm", "_css", "_anywidget_id", "_dom_classes", "tabbable", "tooltip", "comm", "log"}
# Linked between the views (never part of one layer's stored differences).
_LINKED = ("selection", "hovered")
_VOLATILE = {"revision", "status", "message", *_LINKED}


def _static_dir() -> pathlib.Path:
    from geowidgets.widgets._base import STATIC

    return STATIC


def array_to_json(arr: Any) -> dict[str, Any]:
    """An array as JSON: ``{"dtype", "shape", "b64"}`` with its little-endian C-order bytes in base64.

    Examples
    --------
    >>> array_to_json(np.array([1, 2], dtype=np.int32))
    {'dtype': 'int32', 'shape': [2], 'b64': 'AQAAAAIAAAA='}
    """
    a = np.asarray(arr.detach().cpu().numpy() if hasattr(arr, "detach") else arr)
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.name, "shape": [int(s) for s in a.shape], "b64": base64.b64encode(a.tobytes()).decode()}


def array_from_json(value: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`array_to_json` (a writeable copy).

    Examples
    --------
    >>> array_from_json(array_to_json(np.eye(2, dtype=np.float32))).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    dtype = np.dtype(value["dtype"]).newbyteorder("<")
    flat = np.frombuffer(base64.b64decode(value["b64"]), dtype=dtype)
    return flat.reshape([int(s) for s in value["shape"]]).copy()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if "buffer" in value and "dtype" in value and "shape" in value:
            return {
                "dtype": value["dtype"],
                "shape": list(value["shape"]),
                "b64": base64.b64encode(bytes(value["buffer"])).decode(),
            }
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    return value


def synced_state(widget: Any) -> dict[str, Any]:
    """The state a view has synced to the browser, as JSON: array traits as ``{"dtype", "shape", "b64"}``.

    Two views that draw the same picture have equal synced states (the arrays' bytes compared
    exactly; a NaN float is stored as None, as JSON has no NaN). ipywidgets plumbing (``layout``,
    ``_esm``, model names...) is left out.

    Parameters
    ----------
    widget : ipywidgets.Widget
        An anywidget view (:class:`EmbeddingView`, :class:`SliceView`, :class:`DeviationMap`).

    Returns
    -------
    dict of str to JSON value
    """
    state = widget.get_state()
    return {
        key: _finite(_jsonable(value))
        for key, value in state.items()
        if key not in _PLUMBING and not key.startswith(("_model_", "_view_"))
    }


def _kind(view: Any) -> str:
    from geowidgets.widgets._deviation_map import DeviationMap
    from geowidgets.widgets._embedding import EmbeddingView
    from geowidgets.widgets._slice import SliceView

    for cls, kind in ((EmbeddingView, "embedding"), (SliceView, "slice"), (DeviationMap, "deviation")):
        if isinstance(view, cls):
            return kind
    raise TypeError(f"no standalone front end for {type(view).__name__}")


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element (no ``</script>``, no HTML comment openers)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_json_default)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in the HTML snapshot")


def _finite(obj: Any) -> Any:
    """NaN/inf floats as None (JSON has no NaN)."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _profile_parts(profile: LayerProfile) -> tuple[str, str, dict[str, Any]]:
    """BokehJS (inline), the profile's script and div (bokeh ``components``), and the marker/source ids."""
    import logging

    from bokeh.embed import components
    from bokeh.resources import INLINE

    layout = profile.figure.layout
    # bokeh warns that the charts' Python tap callbacks cannot run in a file: the file re-wires
    # tapping in JavaScript (js/standalone.js), so the warning is not for the user.
    logger = logging.getLogger("bokeh.embed.util")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the layout also lives in the notebook's document
            script, div = components(layout)
    finally:
        logger.setLevel(level)
    ids = {
        "markers": [m.id for m in profile.figure.markers],
        "sources": [s.id for s in profile.figure.sources.values()],
    }
    return INLINE.render_js(), f"{script}\n{div}", ids


def _page(title: str, body: str, head_extra: str, spec: dict[str, Any], with_views: bool) -> str:
    static = _static_dir()
    css = (static / "widgets.css").read_text(encoding="utf-8")
    bundle = ""
    if with_views:
        bundle = (static / "standalone.js").read_text(encoding="utf-8").replace("</script", "<\\/script")
    spec_json = _script_json(_finite(spec))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="geowidgets">
<title>{html.escape(title)}</title>
<style>
{css}
body {{ margin: 16px; font: 13px system-ui, -apple-system, 'Segoe UI', sans-serif; color: #222; }}
.gw-export-row {{ display: flex; gap: 16px; align-items: flex-start; margin-top: 10px; flex-wrap: wrap; }}
.gw-export-controls {{ display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }}
.gw-export-note {{ color: #666; font-size: 11px; margin-top: 4px; }}
</style>
{head_extra}
</head>
<body>
{body}
<script type="application/json" id="gw-export-state">{spec_json}</script>
{f'<script type="module">{bundle}</script>' if with_views else ""}
</body>
</html>
"""


def write_html(
    path: str | pathlib.Path,
    views: dict[str, Any],
    *,
    title: str = "geowidgets",
    profile: LayerProfile | None = None,
    links: tuple[str, ...] = (),
    layer: str = "",
    layers: list[str] | None = None,
    by_layer: dict[str, dict[str, dict[str, Any]]] | None = None,
    header: str = "",
) -> pathlib.Path:
    """Write a self-contained HTML file drawing ``views`` (and ``profile``) from their synced state.

    Parameters
    ----------
    path : str or Path
        Output file (``.html``).
    views : dict of str to view
        Element name -> anywidget view; drawn in that order, two per row.
    title : str
        The page title.
    profile : LayerProfile, optional
        Charted with BokehJS inline.
    links : tuple of str
        Traits kept equal between the views (``"selection"``, ``"hovered"``).
    layer : str
        The current layer; ``layers`` and ``by_layer`` (per layer, per view, the synced traits
        that differ from the stored state) make the layer picker work in the file.
    header : str
        HTML shown above the views (already escaped).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = pathlib.Path(path)
    spec: dict[str, Any] = {
        "version": STATE_VERSION,
        "views": {name: {"kind": _kind(v), "state": synced_state(v)} for name, v in views.items()},
        "links": [[trait, list(views)] for trait in links],
        "layer": layer,
        "layers": list(layers or ([layer] if layer else [])),
    }
    if by_layer:
        spec["by_layer"] = by_layer
    cells = [
        # As wide as the view's canvas, so its legend wraps under it as in the notebook.
        f'<div id="gw-view-{html.escape(name)}" style="max-width: {_width(v) + 4}px"></div>'
        for name, v in views.items()
    ]
    head_extra = ""
    if profile is not None:
        bokeh_js, profile_html, ids = _profile_parts(profile)
        spec["profile"] = ids
        head_extra = bokeh_js
        cells.append(f'<div class="gw-export-profile" id="gw-view-profile">{profile_html}</div>')
    rows = "\n".join(f'<div class="gw-export-row">{"".join(cells[i : i + 2])}</div>' for i in range(0, len(cells), 2))
    body = f'<div class="gw-export">{header}\n{rows}</div>'
    path.write_text(_page(title, body, head_extra, spec, with_views=bool(views)), encoding="utf-8")
    return path


def _width(view: Any) -> int:
    """Canvas width in CSS pixels of a view (the deviation map's ``width``, else its ``size``)."""
    from geowidgets.widgets._deviation_map import DeviationMap

    return int(view.width if isinstance(view, DeviationMap) else view.size)


class ViewExport:
    """Mixin of the views: :meth:`save_html` (a standalone file) and :meth:`save_png` (a snapshot)."""

    def save_html(self, path: str | pathlib.Path, *, title: str | None = None) -> pathlib.Path:
        """Write this view, as drawn now, to one self-contained HTML file (opens offline, no kernel).

        The file holds the view's synced state and the bundled front end (no request leaves it);
        hover tooltips work, and a selection made in the file is drawn. Wait for the view first
        (``view.wait()``) so the file holds its finished picture.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        from geowidgets.widgets._layer_profile import LayerProfile

        name = type(self).__name__
        if isinstance(self, LayerProfile):
            return write_html(path, {}, title=title or name, profile=self, layer=self.layer)
        return write_html(path, {"view": self}, title=title or name, layer=getattr(self, "layer", ""))

    def save_png(self, path: str | pathlib.Path, *, timeout: float = 30.0) -> Future:
        """Save the view as the user sees it (canvas, title and legend) to a PNG file.

        The displayed view composes its canvas and legend into one image and sends it back (a
        custom message), so the view must be displayed in a live notebook front end. Inside a
        kernel the answer is read once the running cell has finished: the file appears then.

        Parameters
        ----------
        path : str or Path
            Output ``.png`` file.
        timeout : float
            Seconds to wait for the browser's answer before the future fails with ``TimeoutError``.

        Returns
        -------
        concurrent.futures.Future
            Resolves to the path once the file is written.

        Raises
        ------
        RuntimeError
            Outside a running kernel (no front end can draw the view).
        """
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover
            get_ipython = None  # type: ignore[assignment]
        shell = get_ipython() if get_ipython is not None else None
        if shell is None or not hasattr(shell, "kernel"):
            raise RuntimeError(
                "save_png needs the view displayed in a running notebook (the browser draws the PNG); "
                "use save_html for a file written without a front end"
            )
        target = self._snapshot_widget()
        path = pathlib.Path(path)
        future: Future = Future()
        request = f"{id(future):x}"

        def on_msg(widget: Any, content: Any, buffers: Any) -> None:
            if not isinstance(content, dict) or content.get("type") != "snapshot" or content.get("id") != request:
                return
            target.on_msg(on_msg, remove=True)
            timer.cancel()
            if future.done():
                return
            if content.get("error"):
                future.set_exception(RuntimeError(f"the browser could not draw the view: {content['error']}"))
                return
            path.write_bytes(base64.b64decode(content["png"]))
            future.set_result(path)

        def expire() -> None:
            target.on_msg(on_msg, remove=True)
            if not future.done():
                future.set_exception(
                    TimeoutError(f"no snapshot came back in {timeout:g} s: is the view displayed in a live notebook?")
                )

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        target.on_msg(on_msg)
        timer.start()
        target.send({"type": "snapshot", "id": request})
        return future

    def _snapshot_widget(self) -> Any:
        """The widget whose front end answers snapshot messages (a Box-based view: its status line)."""
        return getattr(self, "status_bar", self)


class ExplorerState(ViewExport):
    """Mixin of the Explorer: its state as JSON, restoring it, and the HTML snapshot of all four views."""

    if TYPE_CHECKING:
        session: Any
        layer: str
        k: int
        temperature: float
        color_by: str
        selection: list[int]

    @property
    def state(self) -> dict[str, Any]:
        """What the Explorer shows, as JSON: layer, k, temperature, colouring, anchors, selection, added groups.

        Also the session's layers, ``k_max``, metric, pooling, class names and reference set, and the
        view settings (method, size, deviation map sort and threshold), so :meth:`from_state` with
        the same model and data rebuilds the same pictures. Added sample groups keep their inputs
        (and labels) as arrays, so they must be tensors or arrays.

        Examples
        --------
        >>> import json
        >>> json.loads(json.dumps(ex.state))["k"] == ex.k  # doctest: +SKIP
        True
        """
        ex: Explorer = self  # type: ignore[assignment]
        s = ex.session
        added = []
        remembered = getattr(ex, "_added_inputs", {})
        for name, group in s.added.items():
            if name not in remembered:
                raise ValueError(f"added group {name!r} was not added through this Explorer; its inputs are unknown")
            inputs, labels = remembered[name]
            added.append(
                {
                    "name": name,
                    "k": int(group.k),
                    "threshold": float(group.threshold),
                    "inputs": array_to_json(inputs),
                    "labels": None if labels is None else array_to_json(np.asarray(labels)),
                }
            )
        return {
            "version": STATE_VERSION,
            "layer": ex.layer,
            "k": int(ex.k),
            "temperature": float(ex.temperature),
            "color_by": ex.color_by,
            "anchors": None if ex.slice is None else [int(a) for a in ex.slice.anchors],
            "selection": [int(i) for i in ex.selection],
            "added_samples": added,
            "view": {
                "method": ex.embedding.method,
                "size": int(ex.embedding.size),
                "sort_by": ex.deviation_map.sort_by,
                "threshold": float(ex.deviation_map.threshold),
            },
            "session": {
                "layers": list(s.layers),
                "k_max": int(s.k_max),
                "metric": s.metric,
                "pooling": dict(s.probe.pooling),
                "task": s.task,
                "class_names": list(s.class_names) if s.task == "classification" else None,
                "reference": array_to_json(np.packbits(np.asarray(s.reference_mask, dtype=bool))),
                "n": int(s.n),
            },
        }

    def save_state(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write :attr:`state` to a JSON file (restore with ``Explorer.from_state(path, model, inputs, labels)``)."""
        path = pathlib.Path(path)
        path.write_text(json.dumps(self.state), encoding="utf-8")
        return path

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any] | str | pathlib.Path,
        model: nn.Module,
        inputs: Any,
        labels: Any = None,
        *,
        wait: bool = True,
        **session_options: Any,
    ) -> Explorer:
        """Rebuild an Explorer from :attr:`state` (a dict or a JSON file) over the same model and data.

        Parameters
        ----------
        state : dict, str or Path
            :attr:`state`, or the file :meth:`save_state` wrote.
        model, inputs, labels
            As for ``Explorer(...)``: the same model and samples the state was saved from.
        wait : bool
            Wait until every view has drawn before returning (default True).
        **session_options
            Other ``Explorer`` keywords that are not part of the state (``images``, ``metadata``,
            ``texts``, ``head``, ``output``, ``device``...).

        Returns
        -------
        Explorer

        Raises
        ------
        ValueError
            A state of another version, or samples of another size than the state's.
        """
        if isinstance(state, dict):
            loaded: dict[str, Any] = state
        else:
            loaded = json.loads(pathlib.Path(state).read_text(encoding="utf-8"))
        return cls._restore(loaded, model, inputs, labels, wait=wait, **session_options)

    @staticmethod
    def _restore(
        state: dict[str, Any], model: nn.Module, inputs: Any, labels: Any, *, wait: bool, **session_options: Any
    ) -> Explorer:
        from geowidgets.widgets._explorer import Explorer

        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state version {state.get('version')!r}; this geowidgets reads {STATE_VERSION}")
        sess, view = state["session"], state["view"]
        tokens = any(p == "tokens" for p in sess["pooling"].values())
        if not tokens and hasattr(inputs, "__len__") and not isinstance(inputs, dict) and len(inputs) != sess["n"]:
            raise ValueError(f"the state was saved over {sess['n']} samples; these inputs have {len(inputs)}")
        reference = np.unpackbits(array_from_json(sess["reference"]))[: sess["n"]].astype(bool)
        options = {
            "layers": sess["layers"],
            "k_max": sess["k_max"],
            "metric": sess["metric"],
            "pooling": sess["pooling"],
            "task": sess["task"],
            "class_names": sess["class_names"],
            "reference": reference,
            **session_options,
        }
        ex = Explorer(
            model,
            inputs,
            labels,
            k=state["k"],
            temperature=state["temperature"],
            method=view["method"],
            size=view["size"],
            **options,
        )
        if ex.session.n != sess["n"]:
            raise ValueError(f"the state was saved over {sess['n']} samples; these inputs give {ex.session.n}")
        if wait:  # the first layer's picture first: the saved layer's layout is aligned to it, as when it was shown
            ex.wait()
        ex.layer = state["layer"]
        ex.deviation_map.sort_by = view["sort_by"]
        ex.deviation_map.threshold = view["threshold"]
        if state.get("anchors") is not None and ex.slice is not None:
            ex.slice.anchors = list(state["anchors"])
        for group in state.get("added_samples", []):
            ex.k = group["k"]  # placed among its k nearest samples, as when it was added
            labels_ = None if group["labels"] is None else array_from_json(group["labels"])
            ex.deviation_map.threshold = group["threshold"]
            ex.add_samples(array_from_json(group["inputs"]), labels_, name=group["name"])
        ex.deviation_map.threshold = view["threshold"]
        ex.k = state["k"]
        if state["color_by"] in ex.color_dropdown.options:
            ex.color_by = state["color_by"]
        else:
            warnings.warn(
                f"color_by {state['color_by']!r} is not a coloring of the rebuilt Explorer (a custom coloring?); "
                f"add it with add_coloring and set color_by",
                stacklevel=2,
            )
        ex.selection = list(state["selection"])
        if wait:
            ex.wait()
        return ex

    def save_html(
        self, path: str | pathlib.Path, *, all_layers: bool = False, title: str | None = None
    ) -> pathlib.Path:
        """Write the four views, linked, to one self-contained HTML file that opens offline with no kernel.

        The embedding, decision slice, deviation map and layer profile are drawn from the current
        layer, k and temperature; hover tooltips work and a hover or selection in one view
        highlights the same samples in the others. Nothing is fetched: the front end, BokehJS and
        the data are inside the file.

        Parameters
        ----------
        path : str or Path
            Output ``.html`` file.
        all_layers : bool
            Store every layer, so the layer picker works in the file. The Explorer then shows each
            layer in turn while the file is written (computing what is not cached yet) and comes
            back to the current one (its layout then aligned to the last layer visited, as after
            any layer move).
        title : str, optional
            Page title (default "geowidgets Explorer").

        Returns
        -------
        pathlib.Path
            The file written.
        """
        ex: Explorer = self  # type: ignore[assignment]
        ex.wait()
        views = {"embedding": ex.embedding, "slice": ex.slice, "deviation": ex.deviation_map}
        views = {k: v for k, v in views.items() if v is not None}
        current = ex.layer
        by_layer: dict[str, dict[str, dict[str, Any]]] | None = None
        layers = [current]
        if all_layers:
            base = {name: synced_state(v) for name, v in views.items()}
            by_layer = {}
            layers = list(ex.session.layers)
            try:
                for layer in layers:
                    if layer == current:  # the stored state is this layer's picture as shown now
                        by_layer[layer] = {name: {} for name in views}
                        continue
                    ex.layer = layer
                    ex.wait()
                    by_layer[layer] = {}
                    for name, v in views.items():
                        now = synced_state(v)
                        by_layer[layer][name] = {
                            key: value
                            for key, value in now.items()
                            if key not in _VOLATILE and value != base[name].get(key)
                        }
            finally:
                ex.layer = current
                ex.wait()
        layer_options = "".join(
            f'<option value="{html.escape(name)}"{" selected" if name == current else ""}>{html.escape(name)}</option>'
            for name in layers
        )
        disabled = "" if all_layers else " disabled"
        note = (
            "every layer is stored: pick one"
            if all_layers
            else "only this layer is stored (ex.save_html(path, all_layers=True) keeps them all)"
        )
        header = (
            '<div class="gw-export-controls">'
            f'<label>layer <select id="gw-export-layer"{disabled}>{layer_options}</select></label>'
            f"<span class='gw-export-summary'>N={ex.session.n} · k={ex.k} · T={ex.temperature:.3g} · "
            f"color by {html.escape(ex.color_by)}</span></div>"
            f'<div class="gw-export-note">{html.escape(note)}; saved from geowidgets (no kernel: the controls '
            "are fixed, hover and selection are live)</div>"
        )
        return write_html(
            path,
            views,
            title=title or "geowidgets Explorer",
            profile=ex.profile,
            links=_LINKED,
            layer=current,
            layers=layers,
            by_layer=by_layer,
            header=header,
        )


def remember_added(explorer: Any, name: str, inputs: Any, labels: Any) -> None:
    """Keep an added group's inputs and labels on the Explorer, for :attr:`ExplorerState.state`."""
    store = explorer.__dict__.setdefault("_added_inputs", {})
    store[name] = (inputs, labels)


def forget_added(explorer: Any, name: str) -> None:
    """Drop what :func:`remember_added` kept for ``name``."""
    explorer.__dict__.get("_added_inputs", {}).pop(name, None)
