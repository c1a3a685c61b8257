"""Training steps and interpolation weights as an axis of the Explorer: one session per step.

:class:`SessionFamily` holds the models of one architecture at several points of a sequence (the
checkpoints of a run, or the weights ``(1 − α)·θ_a + α·θ_b`` along the line between two models) and
builds one :class:`~geowidgets.Session` per point, lazily and once (captures, kNN graphs, layouts
and profiles are cached in it, so coming back to a step reuses them).

:func:`attach_steps` gives an :class:`~geowidgets.widgets.Explorer` a step scrubber: moving it
swaps every view's session for that step's and redraws them, the embedding aligned
(``geo.align_layout``) to the layout on screen, as a layer move is; below the views, a
:class:`~geowidgets.widgets.TrainingProfile` (steps × layers heatmaps) or, along α, a
:class:`~geowidgets.widgets.BarrierChart` (loss and accuracy along α with the barrier).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import ipywidgets
import numpy as np
from torch import nn

from geowidgets.session import Session

if TYPE_CHECKING:
    from geowidgets.widgets._explorer import Explorer

__all__ = ["SessionFamily", "attach_steps", "checkpoint_family", "interpolation_family", "model_family", "swap_session"]

#: α values of ``Explorer([a, b], ..., interpolate=True)``.
DEFAULT_ALPHA_STEPS = 11


class SessionFamily:
    """One lazily built, memoised :class:`~geowidgets.Session` per step of a sequence of models.

    Parameters
    ----------
    steps : sequence of int or float
        The step labels, in order (training steps, epochs, or interpolation weights α); distinct.
    model_at : callable
        ``model_at(i)`` -> the ``nn.Module`` of step ``steps[i]``; called once per step, on first use.
    session_kwargs : dict
        Arguments of :class:`~geowidgets.Session` other than the model (inputs, labels, layers, ...),
        the same for every step, so every session has the same samples and layers.
    kind : {"step", "alpha"}
        What the steps are (labels of the scrubber and charts).

    Raises
    ------
    ValueError
        No steps, or repeated steps.
    """

    def __init__(
        self,
        steps: Sequence[Any],
        model_at: Callable[[int], nn.Module],
        session_kwargs: dict[str, Any],
        *,
        kind: str = "step",
    ):
        steps = [s.item() if isinstance(s, np.generic) else s for s in steps]
        if not steps:
            raise ValueError("steps is empty: give at least one checkpoint")
        if len(set(steps)) != len(steps):
            raise ValueError(f"steps must be distinct, got {steps}")
        self.steps = list(steps)
        self.kind = kind
        self._model_at = model_at
        self._kwargs = dict(session_kwargs)
        self._sessions: dict[int, Session] = {}
        self._lock = threading.Lock()
        self._building: dict[int, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self.steps)

    def index(self, step: Any) -> int:
        """Position of ``step`` in :attr:`steps` (``ValueError`` naming the steps if absent)."""
        for i, s in enumerate(self.steps):
            if s == step:
                return i
        raise ValueError(f"unknown {self.kind} {step!r}; the {self.kind}s are {self.steps}")

    def built(self, i: int) -> bool:
        """True once the session of ``steps[i]`` exists."""
        return i in self._sessions

    def session(self, i: int) -> Session:
        """The session of ``steps[i]``, built on first use (thread-safe: built once)."""
        with self._lock:
            if i in self._sessions:
                return self._sessions[i]
            if not 0 <= i < len(self.steps):
                raise IndexError(f"step index {i} outside 0..{len(self.steps) - 1}")
            guard = self._building.setdefault(i, threading.Lock())
        with guard:
            if i in self._sessions:
                return self._sessions[i]
            model = self._model_at(i)
            if not isinstance(model, nn.Module):
                raise TypeError(
                    f"the model of {self.kind} {self.steps[i]!r} is a {type(model).__name__}, not an nn.Module"
                )
            s = Session(model, **self._kwargs)
            with self._lock:
                self._sessions[i] = s
            return s

    def sessions(self) -> dict[Any, Session]:
        """Every step's session (building those not built yet), keyed by step."""
        return {step: self.session(i) for i, step in enumerate(self.steps)}

    def close(self, keep: Session | None = None) -> None:
        """Close every session built (but ``keep``) and forget them."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            if s is not keep:
                s.close()


def _load(template: nn.Module, state: Mapping[str, Any]) -> nn.Module:
    model = copy.deepcopy(template)
    model.load_state_dict(dict(state))
    return model.eval() if not template.training else model


def checkpoint_family(models: Any, steps: Sequence[Any] | None, session_kwargs: dict[str, Any]) -> SessionFamily:
    """The family of ``Explorer(models, ..., steps=...)``.

    Parameters
    ----------
    models : list of nn.Module or state dicts, or callable
        One model per step, of one architecture. State dicts are loaded into a copy of the first
        ``nn.Module`` of the list (the list must hold at least one module). A callable is called
        as ``models(step)`` with a step label and must return the ``nn.Module`` of that step.
    steps : list of int or float, optional
        Labels of the steps (default ``0..len(models) - 1``; required with a callable).
    session_kwargs : dict
        Session arguments other than the model.

    Raises
    ------
    TypeError
        Neither a list nor a callable, a list entry that is neither a module nor a mapping, state
        dicts without a module to load them into, or a callable without ``steps``.
    ValueError
        ``steps`` and ``models`` of different lengths, or repeated steps.
    """
    if callable(models) and not isinstance(models, nn.Module):
        if steps is None:
            raise TypeError("a callable step -> model needs steps=[...] (the steps to call it with)")
        labels = list(steps)
        return SessionFamily(labels, lambda i: models(labels[i]), session_kwargs)
    if not isinstance(models, (list, tuple)):
        raise TypeError(
            "models must be a list of nn.Module or state dicts, or a callable step -> model; "
            f"got {type(models).__name__}"
        )
    items = list(models)
    for i, m in enumerate(items):
        if not isinstance(m, (nn.Module, Mapping)):
            raise TypeError(f"models[{i}] is a {type(m).__name__}; expected an nn.Module or a state dict")
    template = next((m for m in items if isinstance(m, nn.Module)), None)
    if template is None:
        raise TypeError(
            "state dicts need an architecture: put the model itself first in the list, or pass a callable step -> model"
        )
    labels = list(range(len(items))) if steps is None else list(steps)
    if len(labels) != len(items):
        raise ValueError(f"steps has {len(labels)} entries for {len(items)} models")

    def model_at(i: int) -> nn.Module:
        m = items[i]
        return m if isinstance(m, nn.Module) else _load(template, m)

    return SessionFamily(labels, model_at, session_kwargs)


def interpolation_family(models: Any, n_alphas: int, session_kwargs: dict[str, Any], **bn: Any) -> SessionFamily:
    """The family of ``Explorer([model_a, model_b], ..., interpolate=n)``: ``geo.interpolate`` at ``n`` α values.

    α runs over ``linspace(0, 1, n)``; α = 0 is model_a itself and α = 1 model_b (``geo.interpolate``
    reproduces them exactly), in between a new interpolated model per α.

    Raises
    ------
    TypeError
        ``models`` is not a pair of modules.
    ValueError
        ``n < 2``, or the two models' architectures differ (``geo.interpolate``'s message).
    """
    from geowidgets.geometry._landscape import _check_same_architecture, interpolate

    if not (isinstance(models, (list, tuple)) and len(models) == 2 and all(isinstance(m, nn.Module) for m in models)):
        raise TypeError("interpolate= needs exactly two models: Explorer([model_a, model_b], ..., interpolate=True)")
    if isinstance(n_alphas, bool) or not isinstance(n_alphas, (int, np.integer)) or n_alphas < 2:
        raise ValueError(f"interpolate must be True or a number of α values >= 2, got {n_alphas!r}")
    model_a, model_b = models
    _check_same_architecture(model_a, model_b)
    alphas = [round(float(a), 12) for a in np.linspace(0.0, 1.0, int(n_alphas))]
    family = SessionFamily(
        alphas, lambda i: interpolate(model_a, model_b, alphas[i], **bn), session_kwargs, kind="alpha"
    )
    family.model_a, family.model_b = model_a, model_b  # type: ignore[attr-defined]
    return family


def model_family(
    model: Any, steps: Sequence[Any] | None, interpolate: bool | int, session_kwargs: dict[str, Any]
) -> SessionFamily | None:
    """The Explorer's family for its first argument: None for one model, else checkpoints or interpolation.

    Raises
    ------
    TypeError
        ``steps=`` or ``interpolate=`` with a single model, or a malformed list (see
        :func:`checkpoint_family`, :func:`interpolation_family`).
    """
    if isinstance(model, nn.Module):
        if steps is not None or interpolate:
            raise TypeError("steps= and interpolate= need several models: Explorer([model_a, model_b, ...], ...)")
        return None
    if interpolate:
        if steps is not None:
            raise TypeError("interpolate= sets the steps (the α values); do not pass steps= too")
        n = DEFAULT_ALPHA_STEPS if interpolate is True else interpolate
        return interpolation_family(model, n, session_kwargs)
    return checkpoint_family(model, steps, session_kwargs)


# ---------------------------------------------------------------------------------------------------------------
def attach_steps(explorer: Explorer, family: SessionFamily) -> None:
    """Give ``explorer`` a step (or α) scrubber over ``family`` and the chart over steps below its views.

    The explorer must have been built over ``family.session(0)``. Adds ``explorer.steps``,
    ``explorer.step_slider``, ``explorer.step_family`` and ``explorer.training_profile`` (checkpoints)
    or ``explorer.barrier_chart`` (interpolation); the ``step`` trait then swaps the views' session.
    """
    from geowidgets.widgets._landscape_view import BarrierChart
    from geowidgets.widgets._training_profile import TrainingProfile

    explorer.step_family = family
    explorer.steps = list(family.steps)
    description = "α" if family.kind == "alpha" else "step"
    explorer.step_slider = ipywidgets.SelectionSlider(
        options=[(_label(s), i) for i, s in enumerate(family.steps)],
        value=0,
        description=description,
        continuous_update=False,
        layout=ipywidgets.Layout(width="420px"),
    )
    explorer.step_slider.add_class("gw-step-scrubber")
    explorer.step_slider.style.description_width = "initial"
    explorer.step_slider.observe(lambda change: _on_slider(explorer, change), names=["value"])
    explorer.training_profile = None
    explorer.barrier_chart = None
    extra: list[ipywidgets.Widget] = []
    if family.kind == "alpha":
        from geowidgets.geometry import loss_barrier

        s0 = explorer.session
        # The loss and accuracy along the same α grid as the scrubber (geo.loss_barrier's linspace).
        barrier = loss_barrier(family.model_a, family.model_b, s0.inputs, s0.labels, steps=len(family))  # type: ignore[attr-defined]
        explorer.barrier = barrier
        explorer.barrier_chart = BarrierChart(barrier, alpha=family.steps[0])
        extra.append(explorer.barrier_chart)
    else:
        explorer.training_profile = TrainingProfile(family, k=explorer.k, layer=explorer.layer)
        extra.append(explorer.training_profile)
        explorer.observe(lambda change: setattr(explorer.training_profile, "layer", change["new"]), names=["layer"])
        explorer.observe(lambda change: setattr(explorer.training_profile, "k", change["new"]), names=["k"])
        explorer.training_profile.observe(
            lambda change: setattr(explorer, "layer", change["new"]) if change["new"] != explorer.layer else None,
            names=["layer"],
        )
    first, *rest = explorer.children
    explorer.children = [first, explorer.step_slider, *rest, *extra]
    explorer.set_trait("step", family.steps[0])


def _label(step: Any) -> str:
    return f"{step:g}" if isinstance(step, float) else str(step)


def _on_slider(explorer: Explorer, change: dict) -> None:
    explorer.step = explorer.steps[int(change["new"])]


def swap_session(explorer: Explorer, i: int) -> None:
    """Show ``steps[i]`` in every view of ``explorer``: swap their session and redraw them in place.

    The embedding keeps its layout on screen as the alignment reference, so the new step's points
    move from where they are (``geo.align_layout``), as they do across layers; the slice keeps its
    anchors; the per-sample traits that change with the weights (predictions) are resent.
    """
    family: SessionFamily = explorer.step_family
    session = family.session(i)
    if explorer.step_slider.value != i:
        explorer.step_slider.value = i
    if session is explorer.session:
        return
    explorer.session = session
    explorer._dirty = True
    scheduler = explorer.scheduler
    with scheduler.hold():
        for name in session.layers:
            # One queued task per (step, layer): the new step's graphs and tables, current layer first.
            scheduler.add_task(("graph", i, name), partial(session.knn_graph, name), layer=name, stage="graph")
            scheduler.add_task(("tables", i, name), partial(session.deviation_tables, name), layer=name, stage="tables")
        emb = explorer.embedding
        emb.session = session
        with emb.hold_sync():
            for key, value in emb._static_traits().items():
                emb.set_trait(key, value)
        emb._on_layer()
        if explorer.slice is not None:
            explorer.slice.session = session
            explorer.slice._on_plane()
        explorer.deviation_map.session = session
        explorer.deviation_map._on_k()
        explorer.profile.session = session
        explorer.profile._on_profile()
        explorer.profile._on_k()
        if explorer.temperature_panel is not None:  # the step's logits
            explorer.temperature_panel.session = session
            explorer.temperature_panel.refresh()
        explorer.neighbour_link.update()  # the step's neighbours of the hovered or clicked sample
    if explorer.barrier_chart is not None:
        explorer.barrier_chart.alpha = family.steps[i]
    if explorer.training_profile is not None:
        explorer.training_profile.step = family.steps[i]
    explorer._on_view_state()
