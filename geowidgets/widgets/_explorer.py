"""Explorer: the four views over one session, linked, with layer / k / temperature controls."""

from __future__ import annotations

import inspect
import math
from functools import partial
from typing import Any

import ipywidgets
import traitlets
from numpy.typing import ArrayLike
from torch import nn

from geowidgets.session import INPUT_LAYER, Session
from geowidgets.session._colorings import renamed_alias, warn_renamed
from geowidgets.widgets._base import PROGRESS_UNKNOWN, Lane, Scheduler, StatusBar, Task, check_keywords
from geowidgets.widgets._boundary_panel import attach_boundary_views
from geowidgets.widgets._checkpoints import attach_steps, model_family, swap_session
from geowidgets.widgets._deviation_map import DeviationMap
from geowidgets.widgets._embedding import EmbeddingView
from geowidgets.widgets._export import ExplorerState, forget_added, remember_added
from geowidgets.widgets._layer_profile import LayerProfile
from geowidgets.widgets._neighbours import NeighbourLink
from geowidgets.widgets._slice import SliceView
from geowidgets.widgets._temperature_panel import TemperaturePanel

__all__ = ["Explorer"]

# Keywords of Explorer(...) that set up the views (the rest of its signature builds the session).
_VIEW_OPTIONS = ("k", "temperature", "color_by", "method", "size", "colour_by")


class Explorer(ExplorerState, ipywidgets.VBox):
    """The composed dashboard: embedding, decision slice, deviation map and layer profile, linked.

    Controls: a layer dropdown and a scrubber (slider over the layer index), a k slider, a
    temperature slider (log scale), and a color-by menu. Setting ``ex.layer``, ``ex.k``,
    ``ex.temperature`` or ``ex.color_by`` from Python is the same as moving the control. One
    control, one meaning: ``k`` drives every k-dependent number shown (the embedding's kNN
    colorings, the deviation map, the profile's kNN agreement and deviation AUROC), and
    ``layer`` is the current layer of every view. A selection (click or shift+lasso in the
    embedding, a click in the deviation map) or a hover in one view highlights the same samples
    in all of them; ``ex.selection`` returns the indices.

    Parameters
    ----------
    model : nn.Module, list of nn.Module or state dicts, or callable
        A classifier returning logits. To reuse a :class:`~geowidgets.Session`, use
        :meth:`from_session`. Several checkpoints of one architecture (a list of modules or of
        state dicts, loaded into a copy of the first module of the list; or a callable
        ``step -> model`` with ``steps=``) add a step scrubber: each step gets its own session,
        built on first visit and cached, and :attr:`training_profile` charts every metric over
        steps × layers. Two models with ``interpolate=`` add an α scrubber over
        ``geo.interpolate(model_a, model_b, α)`` and :attr:`barrier_chart` (``geo.loss_barrier``).
    inputs : Tensor, ndarray or sized Dataset
        Samples ``[N, ...]``.
    labels : array-like, optional
        True classes ``[N]`` (class indices, or names listed in ``class_names``).
    layers : list of str, optional
        Layers to explore (default: the outputs of the model's blocks, without Dropout/Identity/Flatten
        duplicates; :attr:`layer_note` says which).
    reference : array-like of bool, optional
        Trusted samples for kNN deviation (default all, correctly classified ones).
    k_max : int
        Largest k of the slider (graphs and deviation tables are built once at it).
    device : str
        Device for capture ("auto", "cpu", "cuda"...).
    metric : {"euclidean", "cosine"}
        Distance for neighbours and deviations.
    class_names : list of str, optional
        Names of the model's output columns.
    images : array-like, optional
        ``[N, H, W]`` hover thumbnails (default the inputs if they look like images).
    task : {"auto", "classification", "regression", "embedding"}
        What the model predicts (see :class:`~geowidgets.Session`). Regression: the slice shows the
        predicted value on the plane and the temperature is hidden with a one-line reason
        (:attr:`no_temperature_reason`); an embedding model (no predictions): the slice and
        temperature are hidden with a one-line reason (:attr:`no_slice_reason`).
    output, head : optional
        Where the prediction is in the model's return value, and a module mapping it to logits.
    metadata : pandas.DataFrame, optional
        One row per sample: columns become colorings and tooltip lines, and searchable.
    texts : list of str, optional
        Hover text per sample (e.g. the sentence).
    pooling : str or dict of str to str, optional
        How a layer's output becomes one row per sample, forwarded to the Session: ``"mean"`` (over
        space, the default for the default layers), ``"flatten"`` (the default for given layers),
        ``"tokens"`` (one point per real token)...
    attention_mask : optional
        Capture setting for token models.
    steps : list of int or float, optional
        Labels of the checkpoints (default 0, 1, ...; required with a callable ``model``).
    interpolate : bool or int
        With two models: show the weights ``(1 − α)·θ_a + α·θ_b`` on ``linspace(0, 1, n)`` (True: 11
        values) instead of the two checkpoints; ``ex.step`` is then α.
    k : int, optional
        Initial neighbour count (default 10, or the session's ``k_max`` when that is smaller).
    temperature : float
        Initial softmax temperature (slider 0.05 to 20, log scale).
    color_by : str
        Initial coloring (see :data:`geowidgets.session.COLOR_BY`); ``colour_by`` is a
        deprecated alias.
    method : {"umap", "pca"}
        Embedding method (PCA is always shown first).
    size : int
        Size of each view in CSS pixels.

    Raises
    ------
    TypeError
        A session as the first argument (use :meth:`from_session`) or an unknown keyword.

    Attributes
    ----------
    session : Session
    embedding, slice, deviation_map, profile : the views.
    no_temperature_reason : str
        Why the temperature control is hidden while the slice is shown (a regression model, whose
        outputs are values, not class logits); empty otherwise.
    layer_note : ipywidgets.HTML
        The session's ``layer_note`` (which default layers were chosen and how conv maps are pooled),
        shown under the controls when the layers were chosen by default.
    slice_note : ipywidgets.HTML
        One line under the controls saying where the decision slice and MixUp are, and why, when they
        are not at the current layer (its output is pooled); hidden otherwise.
    no_slice_reason : str
        Why the decision slice (and the temperature) are hidden, e.g. a model without class logits
        or token rows; empty when the slice is shown (``slice`` is then a :class:`SliceView`, else None).
    training_profile : TrainingProfile or None
        Over checkpoints: every metric over steps × layers (``geo.layer_profile`` per step); else None.
    barrier_chart : BarrierChart or None
        Along ``interpolate=``: the loss along α (``geo.loss_barrier``); else None.

    Notes
    -----
    The views compute on background threads and run the model in eval mode while they do. Running
    the model yourself meanwhile (``model(x)`` in a later cell) is safe: geowidgets' hooks record
    and patch only its own forward passes. Training it meanwhile is not: your steps would run in
    eval mode until the views are idle (``ex.wait()``), and a capture that sees the model switched
    to training mode stops with an error.

    Examples
    --------
    >>> from geowidgets.datasets import toy_demo
    >>> demo = toy_demo("moons", n=300)
    >>> ex = Explorer(demo.model, demo.inputs, demo.labels, layers=demo.layers, k_max=20, method="pca")
    >>> ex.k = 7
    >>> _ = ex.wait()
    >>> ex.embedding.k, ex.profile.k
    (7, 7)
    """

    layer = traitlets.Unicode("", help="Layer shown by every view (str): one of session.layers.")
    k = traitlets.Int(10, help="Neighbour count (int, 1..session.k_max) of the kNN probes of every view.")
    temperature = traitlets.Float(
        1.0, help="Softmax temperature (float > 0) of the confidence-based colourings and the slice."
    )
    color_by = traitlets.Unicode("label", help="Coloring of the embedding (str): one of the color-by menu options.")
    selection = traitlets.List(
        traitlets.Int(), default_value=[], help="Indices (list of int) of the samples selected in any view."
    )
    hovered = traitlets.Int(-1, help="Index (int) of the sample under the mouse in any view, -1 if none.")
    neighbour_of = traitlets.Int(
        -1, help="Sample (int) whose neighbours are highlighted: the hovered one, else a clicked one, else -1."
    )
    neighbours = traitlets.List(
        traitlets.Int(),
        default_value=[],
        help="Indices (list of int) of the k nearest neighbours of neighbour_of in the current layer's space "
        "(geo.knn on the layer, nearest first), highlighted in every view.",
    )
    neighbour_distances = traitlets.List(
        traitlets.Float(), default_value=[], help="Distances (list of float) of the neighbours, nearest first."
    )
    revision = traitlets.Int(0, help="Counter (int): bumped once all views have applied a change.")
    step = traitlets.Any(
        None, help="Checkpoint step (or interpolation α) shown by every view: one of ex.steps; None for one model."
    )
    status = traitlets.Unicode("idle", help='Combined state (str): "error" if any view failed, else "busy" or "idle".')
    message = traitlets.Unicode("", help="Progress or error text (str) of the first busy or failed view.")

    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        labels: ArrayLike | None = None,
        *,
        layers: list[str] | None = None,
        reference: ArrayLike | None = None,
        k_max: int = 50,
        device: str = "auto",
        metric: str = "euclidean",
        class_names: list[str] | None = None,
        images: ArrayLike | None = None,
        task: str = "auto",
        output: Any = None,
        head: nn.Module | None = None,
        metadata: Any = None,
        texts: Any = None,
        pooling: str | dict[str, str] | None = None,
        attention_mask: Any = None,
        steps: list[Any] | None = None,
        interpolate: bool | int = False,
        **view_options: Any,
    ):
        if isinstance(model, Session):
            raise TypeError(
                "Explorer's first argument is a model; to explore a Session use Explorer.from_session(session)"
            )
        named = [p for p in inspect.signature(Explorer.__init__).parameters if p not in ("self", "view_options")]
        check_keywords("Explorer", view_options, [*named, *_VIEW_OPTIONS])
        session_kwargs = dict(
            inputs=inputs,
            labels=labels,
            layers=layers,
            reference=reference,
            k_max=k_max,
            class_names=class_names,
            images=images,
            device=device,
            metric=metric,
            task=task,
            output=output,
            head=head,
            metadata=metadata,
            texts=texts,
            pooling=pooling,
            attention_mask=attention_mask,
        )
        # Several checkpoints (or two models to interpolate): one session per step, see _checkpoints.py.
        family = model_family(model, steps, interpolate, session_kwargs)
        session = Session(model, **session_kwargs) if family is None else family.session(0)
        self._owns_session = True  # close() frees it
        self._build(session, **view_options)
        if family is not None:
            attach_steps(self, family)
            self.observe(lambda change: swap_session(self, family.index(change["new"])), names=["step"])

    @classmethod
    def from_session(
        cls,
        session: Session,
        *,
        k: int | None = None,
        temperature: float = 1.0,
        color_by: str | None = None,
        method: str = "umap",
        size: int = 420,
        **deprecated: Any,
    ) -> Explorer:
        """The Explorer over an existing :class:`~geowidgets.Session` (its caches are shared).

        Examples
        --------
        >>> import geowidgets as gw
        >>> demo = gw.datasets.toy_demo("moons", n=300)
        >>> session = gw.Session(demo.model, demo.inputs, demo.labels, k_max=20)
        >>> ex = gw.Explorer.from_session(session, method="pca")
        >>> ex.session is session
        True
        """
        if not isinstance(session, Session):
            raise TypeError(f"Explorer.from_session needs a geowidgets Session, got {type(session).__name__}")
        check_keywords("Explorer.from_session", deprecated, ["colour_by"])
        self = cls.__new__(cls)
        self._build(session, k=k, temperature=temperature, color_by=color_by, method=method, size=size, **deprecated)
        return self

    def _build(
        self,
        session: Session,
        *,
        k: int | None = None,
        temperature: float = 1.0,
        color_by: str | None = None,
        method: str = "umap",
        size: int = 420,
        colour_by: str | None = None,
    ) -> None:
        if colour_by is not None:
            warn_renamed("Explorer(colour_by=...)", "color_by=")
            color_by = colour_by if color_by is None else color_by
        self.session = session
        layer = session.layers[-1]
        k = session.check_k(min(Explorer.k.default_value, session.k_max) if k is None else k)
        temperature = session.check_temperature(temperature)
        options = session.usable_colorings()
        color_by = color_by or next(c for c in ("label", "target", "prediction", "deviation") if c in options)
        # One prioritised queue for every view and the per-layer work (see _rank): the current
        # layer's picture first, then its UMAP, deviation column and metrics, other layers after.
        self._owns_session = getattr(self, "_owns_session", False)
        self._shown_layer = layer
        self.scheduler = Scheduler(self._rank, urgent_rank=(0, 2), name="geowidgets-explorer")
        self.scheduler.listeners.append(self._on_progress)
        with self.scheduler.attach(), self.scheduler.hold():
            self.embedding = EmbeddingView(
                session, layer=layer, k=k, temperature=temperature, color_by=color_by, method=method, size=size
            )
            # The slice needs predictions (class logits, or a regressor's values): without them, one line says
            # why it is absent.
            self.slice: SliceView | None = None
            self.no_slice_reason = ""
            predicts = session.task in ("classification", "regression")
            where = self.slice_layer(layer) if predicts and session.tokens is None else None
            if where is not None:
                self.slice = SliceView(session, layer=where, temperature=temperature, size=size)
                slice_box: ipywidgets.Widget = self.slice
            else:
                if predicts and session.tokens is not None:
                    self.no_slice_reason = (
                        "Decision slice hidden: the rows are tokens (pooling='tokens'), not inputs to lay a plane "
                        "through"
                    )
                elif predicts:
                    self.no_slice_reason = (
                        "Decision slice hidden: no layer's whole output can take a plane's points (each is pooled "
                        f"or has one value per sample), and {session.input_space_reason}"
                    )
                else:
                    self.no_slice_reason = (
                        f"Decision slice and temperature hidden: this model has no class logits (task={session.task!r})"
                    )
                if session.task == "embedding":
                    self.no_slice_reason += "; pass head= (a module mapping the features to logits) to add them"
                slice_box = ipywidgets.HTML(
                    f"<i>{self.no_slice_reason}.</i>", layout=ipywidgets.Layout(width=f"{size}px")
                )
                slice_box.add_class("gw-no-slice")
            self.deviation_map = DeviationMap(session, k=k, layer=layer, size=size)
            self.profile = LayerProfile(session, k=k, layer=layer, ncols=2)
            for name in session.layers:
                self.scheduler.add_task(("graph", name), partial(session.knn_graph, name), layer=name, stage="graph")
                self.scheduler.add_task(
                    ("tables", name), partial(session.deviation_tables, name), layer=name, stage="tables"
                )
        self._views = [v for v in (self.embedding, self.slice, self.deviation_map, self.profile) if v is not None]
        self._dirty = True

        self.layer_dropdown = ipywidgets.Dropdown(options=session.layers, value=layer, description="layer")
        self.layer_scrubber = ipywidgets.IntSlider(
            value=session.layers.index(layer), min=0, max=len(session.layers) - 1, readout=False, description="depth"
        )
        self.k_slider = ipywidgets.IntSlider(value=k, min=1, max=session.k_max, description="k")
        self.temperature_slider = ipywidgets.FloatLogSlider(
            value=temperature, base=10, min=-1.3, max=1.3, step=0.01, description="temperature"
        )
        self.color_dropdown = ipywidgets.Dropdown(options=options, value=color_by, description="color by")
        for control, cls in [
            (self.layer_dropdown, "gw-layer-dropdown"),
            (self.layer_scrubber, "gw-layer-scrubber"),
            (self.k_slider, "gw-k-slider"),
            (self.temperature_slider, "gw-temperature-slider"),
            (self.color_dropdown, "gw-color-by"),
        ]:
            control.add_class(cls)
            control.style.description_width = "initial"  # the whole label ("temperature", "color by"), never cut
        self.status_bar = StatusBar(view="explorer", root_class="gw-explorer")
        controls = ipywidgets.HBox([self.layer_dropdown, self.layer_scrubber, self.k_slider])
        self.search_box = ipywidgets.Text(
            value="",
            placeholder="search: label == 3, prediction != label, index < 10, or text",
            description="search",
            continuous_update=False,
            layout=ipywidgets.Layout(width="420px"),
        )
        self.search_box.add_class("gw-search")
        self.search_note = ipywidgets.HTML("")
        self.search_box.observe(self._on_search, names=["value"])
        # The temperature scales class logits: a regressor's values have none, and one line says so.
        self.no_temperature_reason = (
            "temperature: not used for regression (the model's outputs are values, not class logits)"
            if session.task == "regression"
            else ""
        )
        if session.has_logits:
            extra: list[ipywidgets.Widget] = [self.temperature_slider]
        elif self.no_temperature_reason:
            note = ipywidgets.HTML(f"<i>{self.no_temperature_reason}</i>")
            note.add_class("gw-no-temperature")
            extra = [note]
        else:
            extra = []
        controls2 = ipywidgets.HBox([*extra, self.color_dropdown, self.search_box, self.search_note])
        # Beside the temperature slider: what T does to reference-vs-rest separation and calibration.
        self.temperature_panel: TemperaturePanel | None = None
        if session.has_logits:
            self.temperature_panel = TemperaturePanel(session, temperature=temperature)
            self._views.append(self.temperature_panel)
        row1 = ipywidgets.HBox([self.embedding, slice_box])
        row2 = ipywidgets.HBox([self.deviation_map, self.profile])
        # How the layers were chosen (Session.layer_note: default blocks, conv maps mean-pooled), one line
        # under the controls; no line when the layers were given.
        from html import escape

        self.layer_note = ipywidgets.HTML(escape(session.layer_note))
        self.layer_note.add_class("gw-layer-note")
        # Where the slice is not at the current layer (a pooled layer), one line says where it is and why.
        self.slice_note = ipywidgets.HTML("")
        self.slice_note.add_class("gw-slice-note")
        self._update_slice_note(layer, where)
        notes = [self.layer_note] if session.layer_note else []
        notes.append(self.slice_note)
        panel = [self.temperature_panel] if self.temperature_panel is not None else []
        super().__init__(children=[controls, controls2, *notes, self.status_bar, *panel, row1, row2])
        self.add_class("gw-explorer")
        self.set_trait("layer", layer)
        self.set_trait("k", k)
        self.set_trait("temperature", temperature)
        self.set_trait("color_by", color_by)

        # Controls <-> explorer traits (a Python write moves the control, a control move writes the trait).
        traitlets.link((self.layer_dropdown, "value"), (self, "layer"))
        traitlets.link((self.k_slider, "value"), (self, "k"))
        # Not a plain link: the log slider rounds to its step and range, and a Python write such as
        # ex.temperature = 0.5 must stay exactly 0.5 (never silently snapped or clipped).
        self.temperature_slider.observe(self._on_temperature_slider, names=["value"])
        traitlets.link((self.color_dropdown, "value"), (self, "color_by"))
        self.layer_scrubber.observe(self._on_scrubber, names=["value"])
        # Linked views: selection and hover travel through the explorer to every view.
        for view in (v for v in (self.embedding, self.slice, self.deviation_map) if v is not None):
            traitlets.link((view, "selection"), (self, "selection"))
            traitlets.link((view, "hovered"), (self, "hovered"))
        traitlets.link((self.profile, "layer"), (self, "layer"))
        # The hovered or clicked sample's k nearest neighbours in the current layer, in every view.
        self.neighbour_link = NeighbourLink(self)
        self.observe(self._on_layer, names=["layer"])
        self.observe(self._on_k, names=["k"])
        self.observe(self._on_temperature, names=["temperature"])
        self.observe(self._on_color, names=["color_by"])
        self.observe(self._on_view_state, names=["selection"])  # the summary's selection count
        attach_boundary_views(self)  # MixUp path, boundary tilting, metric picker, layout method (a row below)
        for view in self._views:
            view.observe(self._on_view_state, names=["status", "revision", "message", "progress"])
        self._on_view_state()

    def _on_temperature_slider(self, change: dict) -> None:
        slider = self.temperature_slider
        shown = min(max(self.temperature, 10**slider.min), 10**slider.max)
        if abs(math.log10(change["new"]) - math.log10(shown)) <= slider.step / 2 + 1e-9:
            return  # the slider's own rounding of the current value, not a user move
        self.temperature = change["new"]

    # ------------------------------------------------------------------ validation
    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        return self.session.check_layer(proposal["value"])

    @traitlets.validate("step")
    def _check_step(self, proposal: dict) -> Any:
        family = getattr(self, "step_family", None)
        if family is None:
            raise ValueError("this Explorer shows one model; pass a list of checkpoints to scrub steps")
        return family.steps[family.index(proposal["value"])]

    @traitlets.validate("k")
    def _check_k(self, proposal: dict) -> int:
        return self.session.check_k(proposal["value"])

    @traitlets.validate("temperature")
    def _check_temperature(self, proposal: dict) -> float:
        return Session.check_temperature(proposal["value"])

    @traitlets.validate("color_by")
    def _check_color_by(self, proposal: dict) -> str:
        if proposal["value"] not in self.color_dropdown.options:
            raise ValueError(f"color_by must be one of {list(self.color_dropdown.options)}, got {proposal['value']!r}")
        return proposal["value"]

    # ------------------------------------------------------------------ propagation
    def _on_scrubber(self, change: dict) -> None:
        self.layer = self.session.layers[change["new"]]

    def slice_layer(self, layer: str) -> str | None:
        """The layer the decision slice shows while ``layer`` is current; None where no slice can be taken.

        A slice swaps a plane's points in for the layer's output, so it needs the layer's whole
        output (not a pooled one, such as the default mean over a conv map's positions) with at
        least two values per sample (not a regressor's single output): otherwise the slice is taken
        at the nearest earlier layer that qualifies, else at the input (when the inputs are one
        tensor), else at the nearest later layer that qualifies. ``slice_note`` says why when
        it is not ``layer`` itself.
        """
        s = self.session
        i = s.layers.index(layer)
        for name in reversed(s.layers[: i + 1]):
            if s.patchable(name):
                return name
        if not s.input_space_reason:
            return INPUT_LAYER
        return next((name for name in s.layers[i + 1 :] if s.patchable(name)), None)

    def _update_slice_note(self, layer: str, shown: str | None) -> None:
        """Show (or hide) the line on why the slice is at ``shown`` (``slice_layer(layer)``) and not at ``layer``."""
        from html import escape

        text = self._slice_note_text(layer, shown)
        self.slice_note.value = f"<i>{escape(text)}</i>" if text else ""
        self.slice_note.layout.display = "" if text else "none"

    def _slice_note_text(self, layer: str, shown: str | None) -> str:
        """One line on why the slice is at ``shown`` and not at ``layer`` (empty when it is there)."""
        if shown is None or shown == layer or self.slice is None:
            return ""
        where = "input space" if shown == INPUT_LAYER else f"layer {shown}"
        note = f"decision slice and MixUp in {where}: {self.session.unpatchable_reason(layer)}"
        if shown != INPUT_LAYER and self.session.layers.index(shown) > self.session.layers.index(layer):
            note += f", and {self.session.input_space_reason}"
        return note

    def _on_layer(self, change: dict) -> None:
        self._shown_layer = self.layer  # the queue now ranks this layer's work first
        self._dirty = True
        self.layer_scrubber.value = self.session.layers.index(self.layer)
        self.embedding.layer = self.layer
        where = self.slice_layer(self.layer)
        if self.slice is not None and where is not None:  # (never None while a slice exists: some layer qualifies)
            self.slice.layer = where
        self._update_slice_note(self.layer, where)
        self.deviation_map.layer = self.layer
        self.profile.layer = self.layer
        self._on_view_state()

    def _on_k(self, change: dict) -> None:
        self._dirty = True
        self.embedding.k = self.k
        self.deviation_map.k = self.k
        self.profile.k = self.k
        self._on_view_state()

    def _on_temperature(self, change: dict) -> None:
        self.temperature_slider.value = self.temperature
        self._dirty = True
        self.embedding.temperature = self.temperature
        if self.slice is not None:
            self.slice.temperature = self.temperature
        if self.temperature_panel is not None:
            self.temperature_panel.temperature = self.temperature
        self._on_view_state()

    def _on_color(self, change: dict) -> None:
        self._dirty = True
        self.embedding.color_by = self.color_by
        self._on_view_state()

    def search(self, query: str) -> list[int]:
        """Select the samples a query matches (see :meth:`Session.select`) and return their indices.

        Same as typing the query into the search box: ``label == 3``, ``prediction != label``,
        ``index < 10``, ``topic == "sport"`` (any metadata column), or a word matched in the texts.
        """
        hits = self.session.select(query)
        self.selection = hits
        return hits

    def _on_search(self, change: dict) -> None:
        try:
            hits = self.search(change["new"]) if change["new"].strip() else []
            if not change["new"].strip():
                self.selection = []
            self.search_note.value = f"{len(hits)} match{'' if len(hits) == 1 else 'es'}" if change["new"] else ""
        except ValueError as err:
            self.search_note.value = f"<span style='color:#b00'>{err}</span>"

    def add_samples(self, inputs: Any, labels: ArrayLike | None = None, name: str = "added") -> Any:
        """Capture new inputs and show them as a named, ring-marked group in the embedding and the deviation map.

        The existing points do not move; the new ones are placed among their k nearest samples in
        each layer (k = the current ``k``) and scored against the reference set
        (:meth:`Session.add_samples`).

        Returns
        -------
        pandas.DataFrame
            One row per new sample: its deviation z at each layer and its ``divergence_layer``.

        Examples
        --------
        >>> table = ex.add_samples(noise_images, name="noise")  # doctest: +SKIP
        >>> table["divergence_layer"].value_counts()  # doctest: +SKIP
        """
        table = self.session.add_samples(inputs, labels, name, k=self.k, threshold=self.deviation_map.threshold)
        remember_added(self, name, inputs, labels)  # for ex.state
        self._refresh_added()
        return table

    def remove_samples(self, name: str) -> None:
        """Take an added group out of the views (``KeyError`` if there is none of that name)."""
        self.session.remove_samples(name)
        forget_added(self, name)
        self._refresh_added()

    def _refresh_added(self) -> None:
        self.wait()
        self.embedding.refresh_added()
        self.deviation_map.refresh_added()
        if self.temperature_panel is not None:
            self.temperature_panel.refresh()  # the added samples are now what the reference is compared with

    def add_coloring(self, name: str, fn: Any, kind: str = "continuous", **kwargs: Any) -> None:
        """Add any per-sample probe to the color-by menu (see :meth:`Session.add_coloring`).

        Examples
        --------
        >>> from geowidgets import geometry as geo
        >>> ex.add_coloring("lodd", lambda s, layer, k, t: geo.lodd(s.features(layer), k=k).score)  # doctest: +SKIP
        """
        self.session.add_coloring(name, fn, kind, **kwargs)
        if name not in self.color_dropdown.options:
            self.color_dropdown.options = [*self.color_dropdown.options, name]

    # Deprecated spellings, kept for one release.
    def add_colouring(self, name: str, fn: Any, kind: str = "continuous", **kwargs: Any) -> None:
        """Deprecated alias of :meth:`add_coloring`."""
        warn_renamed("Explorer.add_colouring", "Explorer.add_coloring")
        self.add_coloring(name, fn, kind, **kwargs)

    colour_by = renamed_alias("colour_by", "color_by")

    colour_dropdown = renamed_alias("colour_dropdown", "color_dropdown", writable=False)

    def __repr__(self) -> str:
        s = self.session
        return (
            f"Explorer(N={s.n}, layers={len(s.layers)}, layer={self.layer!r}, k={self.k}, "
            f"temperature={self.temperature:.3g}, color_by={self.color_by!r}, status={self.status!r})"
        )

    def _on_view_state(self, change: dict | None = None) -> None:
        statuses = [view.status for view in self._views]
        errors = [view.message for view in self._views if view.status == "error"]
        busy = [view for view in self._views if view.status == "busy"]
        with self.status_bar.hold_sync():
            # The first busy view's message, and its progress bar where it knows its amount of work.
            self.status_bar.progress = busy[0].progress if busy and not errors else PROGRESS_UNKNOWN
            if errors:
                self.status, self.message = "error", errors[0]
            elif busy:
                self.status, self.message = "busy", busy[0].message
            else:
                self.status, self.message = "idle", ""
            if self._dirty and "busy" not in statuses:
                self._dirty = False
                self.revision += 1
            self.status_bar.status = self.status
            self.status_bar.message = self.message
            self.status_bar.revision = self.revision
            self.status_bar.summary = (
                f"N={self.session.n} · layer {self.layer} · k={self.k} · T={self.temperature:.3g} · "
                f"{len(self.selection)} selected sample{'' if len(self.selection) == 1 else 's'}"
            )

    # ------------------------------------------------------------------ scheduling
    #: Rank of the current layer's work, in the order the user sees it: the first picture (landmarks,
    #: then the PCA of every sample) and its coloring, the kNN graph the UMAP needs, the UMAP, the
    #: deviation tables, the slice.
    _STAGES = {
        "EmbeddingView.landmarks": -1,
        "EmbeddingView.layout": 0,
        "EmbeddingView.values": 1,
        "graph": 2,
        "EmbeddingView.refine": 3,
        "tables": 4,
        "SliceView.slice": 5,
    }
    #: Work over every layer, after every layer's graph and tables: the deviation map, then the profile.
    _ALL_LAYERS = ("DeviationMap.matrix", "LayerProfile.k", "LayerProfile.profile")

    def _rank(self, item: Lane | Task) -> tuple:
        """Queue rank (smaller first): ``(0, stage)`` for the current layer, ``(1, distance, stage)`` for
        another layer (nearest first), ``(2, order)`` for the views that show every layer."""
        what, layer = self.scheduler.describe(item)
        if what in self._ALL_LAYERS:
            return (2, self._ALL_LAYERS.index(what))
        stage = self._STAGES.get(what, len(self._STAGES))
        current = self._shown_layer
        if layer is None or layer == current or layer not in self.session.layers:
            return (0, stage)
        distance = abs(self.session.layers.index(layer) - self.session.layers.index(current))
        return (1, distance, stage)

    def progress(self) -> dict[str, tuple[int, int]]:
        """Per-layer work done so far: ``{"graph": (done, total), "tables": (done, total)}``."""
        out = {}
        for stage in ("graph", "tables"):
            tasks = self.scheduler.tasks(stage)
            out[stage] = (sum(t.done for t in tasks), len(tasks))
        return out

    def _on_progress(self, item: Lane | Task) -> None:
        """After each queued item: the views over every layer say how many layers are done (text and bar)."""
        if not isinstance(item, Task) or self.scheduler.closed:
            return
        done = self.progress()

        def show() -> None:
            if self.scheduler.closed:
                return
            tables, graphs = done["tables"], done["graph"]
            # The count as text and as a determinate bar (progress), while the view is busy.
            self.deviation_map.show_progress(*tables, f"kNN deviations: layers done {tables[0]}/{tables[1]}…")
            self.profile.show_progress(*graphs, f"per-layer metrics: kNN graphs done {graphs[0]}/{graphs[1]}…")

        self.deviation_map._deliver(show)

    def close(self) -> None:
        """Stop the queued work and close every widget of the Explorer, so nothing keeps its data alive.

        Queued requests are dropped, a running one finishes but is never drawn, and every view,
        control and status line is closed (ipywidgets keeps open widgets in a registry until they
        are closed). A session the Explorer built itself is closed too (its caches are freed); one
        given to :meth:`from_session` is left as it is.
        """
        if getattr(self, "_closed", False):
            return
        self._closed = True
        if not hasattr(self, "scheduler"):  # the constructor failed before building the views
            super().close()
            return
        self.scheduler.close()
        self.unobserve_all()
        for view in getattr(self, "_views", ()):
            view.unobserve_all()
        stack: list[Any] = [self]
        seen: set[int] = set()
        while stack:
            widget = stack.pop()
            if id(widget) in seen:
                continue
            seen.add(id(widget))
            stack.extend(getattr(widget, "children", ()) or ())
            for name in ("bokeh", "status_bar"):
                child = getattr(widget, name, None)
                if child is not None:
                    stack.append(child)
            if widget is not self:
                widget.close()
        if getattr(self, "_owns_session", False):
            self.session.close()
            if getattr(self, "step_family", None) is not None:
                self.step_family.close(keep=self.session)
        super().close()

    def wait(self, timeout: float | None = 120.0) -> bool:
        """Block until every view is idle and its results applied (for scripts and tests)."""
        ok = all(view.wait(timeout) for view in self._views) and self.scheduler.wait(timeout)
        self._on_view_state()
        return ok
