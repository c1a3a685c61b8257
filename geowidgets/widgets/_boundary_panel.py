"""The Explorer's boundary and engine panel: MixUp path, boundary tilting, metric picker, layout controls.

:func:`attach_boundary_views` adds, under the Explorer's four views, one row of controls (the
embedding's layout method with UMAP's ``n_neighbors`` / ``min_dist`` and heatgeo's diffusion time,
the profile's metric picker, the tilting λ and class pair) and one row of charts (the MixUp path
between the two samples last shift-clicked in the slice, and the tilting angle per layer), all
linked to the Explorer's layer, k and temperature.
"""

from __future__ import annotations

from typing import Any

import ipywidgets
import numpy as np
import traitlets

from geowidgets.widgets._metric_picker import metric_picker
from geowidgets.widgets._mixup_view import MixupView
from geowidgets.widgets._tilting_view import TiltingView

__all__ = ["attach_boundary_views"]

#: Queue lanes of the panel's views: work over every layer (or a pair of samples), after the rest.
_PANEL_LANES = ("MixupView.path", "TiltingView.fit", "LayerProfile.collapse")


def _labelled(control: ipywidgets.Widget, css: str) -> ipywidgets.Widget:
    control.add_class(css)
    control.style.description_width = "initial"
    return control


def layout_controls(embedding: Any) -> ipywidgets.HBox:
    """Method dropdown (PCA, UMAP, heat-geodesic) and its parameters, linked to the embedding's traits."""
    s = embedding.session
    method = _labelled(
        ipywidgets.Dropdown(
            options=[("PCA", "pca"), ("UMAP", "umap"), ("heat-geodesic", "heatgeo")],
            value=embedding.method,
            description="layout",
        ),
        "gw-layout-method",
    )
    n_neighbors = _labelled(
        ipywidgets.IntSlider(
            value=min(embedding.n_neighbors, s.k_max + 1), min=2, max=s.k_max + 1, description="n_neighbors"
        ),
        "gw-n-neighbors",
    )
    min_dist = _labelled(
        ipywidgets.FloatSlider(value=embedding.min_dist, min=0.0, max=1.0, step=0.01, description="min_dist"),
        "gw-min-dist",
    )
    t = _labelled(
        ipywidgets.FloatLogSlider(
            value=embedding.diffusion_time, base=10, min=-1, max=3, step=0.05, description="diffusion time"
        ),
        "gw-diffusion-time",
    )
    for control in (n_neighbors, min_dist, t):
        control.continuous_update = False
        control.layout.width = "300px"
    traitlets.link((method, "value"), (embedding, "method"))
    traitlets.link((n_neighbors, "value"), (embedding, "n_neighbors"))
    traitlets.link((min_dist, "value"), (embedding, "min_dist"))
    traitlets.link((t, "value"), (embedding, "diffusion_time"))

    def show(change: dict | None = None) -> None:
        m = embedding.method
        n_neighbors.layout.display = "" if m != "pca" else "none"
        min_dist.layout.display = "" if m == "umap" else "none"
        t.layout.display = "" if m == "heatgeo" else "none"

    embedding.observe(show, names=["method"])
    show()
    box = ipywidgets.HBox([method, n_neighbors, min_dist, t])
    box.add_class("gw-layout-controls")
    return box


def tilting_controls(view: TiltingView) -> ipywidgets.HBox:
    """λ (log slider, 1e-6..1e2) and the class pair (two dropdowns) of a tilting view."""
    names = view.session.class_names
    present = np.unique(np.asarray(view.session.labels)).tolist()
    options = [(names[c] if c < len(names) else str(c), c) for c in present]
    counts = np.bincount(np.asarray(view.session.labels, dtype=np.int64))
    largest = sorted(sorted(present, key=lambda c: (-counts[c], c))[:2])  # geo's default pair
    first = tuple(view.classes) or tuple(largest)
    a = _labelled(ipywidgets.Dropdown(options=options, value=int(first[0]), description="tilt: class"), "gw-tilt-a")
    b = _labelled(ipywidgets.Dropdown(options=options, value=int(first[1]), description="vs"), "gw-tilt-b")
    reg = _labelled(
        ipywidgets.FloatLogSlider(value=view.reg, base=10, min=-6, max=2, step=0.1, description="λ"), "gw-tilt-reg"
    )
    reg.continuous_update = False
    reg.layout.width = "300px"
    traitlets.link((reg, "value"), (view, "reg"))

    def pair(change: dict) -> None:
        if a.value != b.value:
            view.classes = [int(a.value), int(b.value)]

    a.observe(pair, names=["value"])
    b.observe(pair, names=["value"])
    box = ipywidgets.HBox([a, b, reg])
    box.add_class("gw-tilting-controls")
    return box


def attach_boundary_views(ex: Any) -> None:
    """Add the panel to an Explorer (``ex.mixup``, ``ex.tilting``, ``ex.metric_picker``, ``ex.layout_controls``).

    The MixUp view needs a classifier with a slice (None otherwise) and the tilting view labels
    (None otherwise). Shift-clicking two samples in the slice sets the MixUp pair; the MixUp view
    follows the Explorer's layer, k and temperature, the tilting marker its layer. Their work is
    queued after every view's per-layer work.
    """
    s = ex.session
    ex._ALL_LAYERS = (*type(ex)._ALL_LAYERS, *_PANEL_LANES)  # rank the panel's work last (instance override)
    ex.mixup = None
    ex.tilting = None
    with ex.scheduler.attach():
        if ex.slice is not None and s.task == "classification":
            ex.mixup = MixupView(s, layer=ex.slice_layer(ex.layer), k=ex.k, temperature=ex.temperature)
        if s.labels is not None and len(np.unique(s.labels)) >= 2:
            ex.tilting = TiltingView(s, layer=ex.layer)
    ex.layout_controls = layout_controls(ex.embedding)
    ex.metric_picker = metric_picker(ex.profile)
    controls: list[ipywidgets.Widget] = [ex.metric_picker]
    charts: list[ipywidgets.Widget] = []
    if ex.mixup is not None:
        mixup = ex.mixup

        def on_picked(change: dict) -> None:
            picked = list(change["new"])
            if len(picked) == 2 and picked[0] != picked[1]:
                with mixup.hold_trait_notifications():
                    mixup.a, mixup.b = picked

        ex.slice.observe(on_picked, names=["picked"])
        traitlets.dlink((ex, "layer"), (mixup, "layer"), ex.slice_layer)  # a path, like a slice, needs whole outputs
        traitlets.dlink((ex, "k"), (mixup, "k"))
        traitlets.dlink((ex, "temperature"), (mixup, "temperature"))
        charts.append(mixup)
    if ex.tilting is not None:
        traitlets.dlink((ex, "layer"), (ex.tilting, "layer"))
        controls.append(tilting_controls(ex.tilting))
        controls[-1].layout.flex_flow = "column"
        charts.append(ex.tilting)
    ex._views.extend(v for v in (ex.mixup, ex.tilting) if v is not None)
    help_line = ipywidgets.HTML(
        "<i>In the slice: alt-click a sample for its boundary search (CGBA), shift-click two samples for their "
        "MixUp path.</i>"
    )
    help_line.add_class("gw-boundary-help")
    panel = ipywidgets.VBox([ex.layout_controls, ipywidgets.HBox(controls), help_line, ipywidgets.HBox(charts)])
    panel.add_class("gw-boundary-panel")
    ex.boundary_panel = panel
    ex.children = (*ex.children, panel)
