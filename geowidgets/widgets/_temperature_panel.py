"""TemperaturePanel: what softmax temperature does to telling reference samples from the rest, and to calibration.

Two bokeh charts beside the Explorer's temperature slider, updated in place: the histograms of a
temperature score (max softmax confidence, −energy, entropy or margin) of the reference samples
against the rest (or against the samples added with ``add_samples``), titled with the AUROC and
the FPR at 95% TPR, and the reliability diagram with the ECE. Every number is a rescale of the
cached logits (``geo.temperature_scores``): moving T runs no forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import ipywidgets
import numpy as np
import traitlets

from geowidgets.session import TEMPERATURE_COLORINGS, Session
from geowidgets.widgets._base import StatusBar, _Worker
from geowidgets.widgets._layer_profile import _ClosableBokehModel, load_bokehjs_inline

__all__ = ["TemperaturePanel", "TemperatureSummary", "temperature_summary"]

#: Bins of the score histograms.
HISTOGRAM_BINS = 30
#: Equal-width confidence bins of the reliability diagram and the ECE.
CALIBRATION_BINS = 15
#: How each score is shown (histogram axis) and its sign for the AUROC (higher = more reference-like).
SCORE_AXES = {
    "confidence": ("max softmax confidence", 1.0),
    "energy": ("−energy", 1.0),
    "entropy": ("entropy", -1.0),
    "margin": ("margin (top-1 − top-2 probability)", 1.0),
}


@dataclass(frozen=True)
class TemperatureSummary:
    """The panel's numbers at one temperature and score.

    Attributes
    ----------
    temperature : float
    score : str
        One of ``"confidence"``, ``"energy"``, ``"entropy"``, ``"margin"``.
    reference, others : numpy.ndarray
        float64 score values as drawn (``"energy"`` drawn as −energy) of the reference samples and of the
        samples compared with them.
    edges : numpy.ndarray
        float64 ``[HISTOGRAM_BINS + 1]`` histogram bin edges.
    reference_density, others_density : numpy.ndarray
        float64 ``[HISTOGRAM_BINS]``: share of each group per bin (each sums to 1).
    auroc : float
        ``geo.auroc(reference, others)`` on the score oriented so that higher = more like the reference
        (entropy negated): 1 separates them perfectly, 0.5 not at all.
    fpr95 : float
        ``geo.fpr_at_tpr(reference, others, 0.95)`` on the same oriented score (lower is better).
    ece : float
        ``geo.expected_calibration_error(probs, labels, CALIBRATION_BINS)`` over the session's samples (NaN
        without labels).
    bin_confidence, bin_accuracy, bin_count : numpy.ndarray
        Per calibration bin ``(b/B, (b+1)/B]``: mean confidence, accuracy (NaN when empty) and sample count.
    others_name : str
        What the reference is compared with (``"rest"`` or the added groups' names).
    """

    temperature: float
    score: str
    reference: np.ndarray
    others: np.ndarray
    edges: np.ndarray
    reference_density: np.ndarray
    others_density: np.ndarray
    auroc: float
    fpr95: float
    ece: float
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray
    bin_count: np.ndarray
    others_name: str


def temperature_summary(
    logits: Any,
    reference: Any,
    temperature: float,
    score: str = "confidence",
    *,
    labels: Any = None,
    other_logits: Any = None,
    others_name: str = "rest",
) -> TemperatureSummary:
    """Histograms, AUROC, FPR@95%TPR and calibration of one temperature score (a rescale of ``logits``).

    Parameters
    ----------
    logits : array-like, shape [N, C]
        The session's logits.
    reference : array-like of bool, shape [N]
        The reference (in-distribution) samples: the positives.
    temperature : float
        Softmax temperature (> 0).
    score : {"confidence", "energy", "entropy", "margin"}
        Field of ``geo.temperature_scores``.
    labels : array-like of int, shape [N], optional
        True classes, for the ECE and the reliability diagram.
    other_logits : array-like, shape [M, C], optional
        Logits of the samples to compare with the reference (e.g. samples added with ``add_samples``);
        by default the samples outside the reference.
    others_name : str
        Name of that group for the legend.

    Returns
    -------
    TemperatureSummary

    Raises
    ------
    ValueError
        Unknown score, a temperature that is not > 0, or no reference samples. With nothing to compare
        the reference with, ``auroc`` and ``fpr95`` are NaN (the histograms and calibration are kept).
    """
    from geowidgets import geometry as geo

    if score not in SCORE_AXES:
        raise ValueError(f"score must be one of {list(SCORE_AXES)}, got {score!r}")
    z = np.asarray(logits, dtype=np.float32)
    ref = np.asarray(reference, dtype=bool)
    scores = geo.temperature_scores(z, temperature)
    shown = np.asarray(getattr(scores, score), dtype=np.float64)
    if score == "energy":
        shown = -shown
    if other_logits is None:
        pos, neg = shown[ref], shown[~ref]
    else:
        other = np.asarray(getattr(geo.temperature_scores(np.asarray(other_logits, np.float32), temperature), score))
        pos, neg = shown[ref], (-other if score == "energy" else other).astype(np.float64)
    if pos.size == 0:
        raise ValueError("need reference samples to compare with, got none")
    sign = SCORE_AXES[score][1]
    # Nothing outside the reference (a classifier right on every sample, no added groups): no AUROC or
    # FPR to give, the reference histogram and the calibration still are.
    auroc = geo.auroc(sign * pos, sign * neg) if neg.size else math.nan
    fpr95 = geo.fpr_at_tpr(sign * pos, sign * neg, 0.95) if neg.size else math.nan
    n_classes = z.shape[1]
    fixed = {"confidence": (1.0 / n_classes, 1.0), "margin": (0.0, 1.0), "entropy": (0.0, math.log(n_classes))}
    both = np.concatenate([pos, neg])
    lo, hi = fixed.get(score, (float(both.min()), float(both.max())))
    if not hi > lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    ref_counts = np.histogram(np.clip(pos, lo, hi), edges)[0]
    other_counts = np.histogram(np.clip(neg, lo, hi), edges)[0]
    bins = CALIBRATION_BINS
    conf_sum, acc_sum, count = np.zeros(bins), np.zeros(bins), np.zeros(bins)
    ece = math.nan
    if labels is not None:
        probs = np.asarray(scores.probs, dtype=np.float64)
        y = np.asarray(labels).astype(np.int64)
        ece = geo.expected_calibration_error(probs, y, n_bins=bins)
        confidence = probs.max(1)
        which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
        np.add.at(conf_sum, which, confidence)
        np.add.at(acc_sum, which, (probs.argmax(1) == y).astype(np.float64))
        np.add.at(count, which, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_conf, bin_acc = conf_sum / count, acc_sum / count
    return TemperatureSummary(
        float(temperature),
        score,
        pos,
        neg,
        edges,
        ref_counts / pos.size,
        other_counts / max(neg.size, 1),
        float(auroc),
        float(fpr95),
        float(ece),
        bin_conf,
        bin_acc,
        count.astype(np.int64),
        others_name,
    )


class TemperaturePanel(_Worker, ipywidgets.VBox):
    """Score histograms (reference vs the rest) with AUROC and FPR@95%TPR, and a reliability diagram with ECE.

    Follows ``temperature`` (the Explorer links its slider) and ``score`` (its menu): each move
    re-scores the cached logits (``geo.temperature_scores``, no forward pass) and assigns the
    charts' data sources in place. The reference samples are the session's
    :attr:`~geowidgets.Session.reference_mask`; they are compared with the other samples, or with
    the samples added with ``add_samples`` when there are some (call :meth:`refresh` after adding).

    Parameters
    ----------
    session : Session
        A classifier's session (class logits).
    temperature : float
        Initial temperature.
    score : {"confidence", "energy", "entropy", "margin"}
        Initial score.

    Attributes
    ----------
    summary : TemperatureSummary or None
        The numbers drawn (None before the first result).
    auroc, fpr95, ece : float
        The summary's numbers, as traits.

    Raises
    ------
    ValueError
        A session without class logits.

    Examples
    --------
    >>> from geowidgets.datasets import toy_demo
    >>> demo = toy_demo("moons", n=200)
    >>> panel = TemperaturePanel(Session(demo.model, demo.inputs, demo.labels, k_max=20), temperature=2.0)
    >>> _ = panel.wait()
    >>> 0.0 <= panel.auroc <= 1.0
    True
    """

    revision = traitlets.Int(0, help="Result counter (int): bumped each time the charts' data have been set.")
    status = traitlets.Unicode("idle", help='Work state (str): "idle", "busy" or "error" (see message).')
    message = traitlets.Unicode("", help="Progress text while busy, the error text after a failure, else empty (str).")
    temperature = traitlets.Float(1.0, help="Softmax temperature (float > 0) the scores are computed at.")
    score = traitlets.Unicode(
        "confidence", help="Score (str): 'confidence', 'energy' (as −energy), 'entropy' or 'margin'."
    )
    auroc = traitlets.Float(math.nan, help="AUROC (float) of the reference samples against the others on the score.")
    fpr95 = traitlets.Float(math.nan, help="FPR (float) at 95% TPR of the reference samples against the others.")
    ece = traitlets.Float(math.nan, help="Expected calibration error (float) of the softmax at the temperature.")

    def __init__(self, session: Session, *, temperature: float = 1.0, score: str = "confidence", **kwargs: Any):
        if not isinstance(session, Session) or not session.has_logits:
            raise ValueError("TemperaturePanel needs a Session of a classifier (class logits)")
        self.session = session
        self.last_traceback = ""
        self.summary: TemperatureSummary | None = None
        self._init_worker()
        load_bokehjs_inline()
        self._build_figures()
        self.score_menu = ipywidgets.Dropdown(
            options=[(SCORE_AXES[s][0], s) for s in TEMPERATURE_COLORINGS], value=score, description="score"
        )
        self.score_menu.add_class("gw-temperature-score")
        self.score_menu.style.description_width = "initial"
        self.readout = ipywidgets.HTML("")
        self.readout.add_class("gw-temperature-readout")
        self.bokeh = _ClosableBokehModel(self.layout_figures)
        self.status_bar = StatusBar(view="temperature", root_class="gw-temperature-panel", needs_bokeh=True)
        self._head = [self.status_bar, ipywidgets.HBox([self.score_menu, self.readout])]
        super().__init__(children=[*self._head, self.bokeh], **kwargs)
        self.add_class("gw-temperature-panel")
        self.set_trait("temperature", Session.check_temperature(temperature))
        self.set_trait("score", score)
        traitlets.link((self.score_menu, "value"), (self, "score"))
        self.observe(self._mirror, names=["status", "message", "revision"])
        self.observe(self.refresh, names=["temperature", "score"])
        self._shown = False
        self._mirror()
        self.refresh()

    def __repr__(self) -> str:
        return (
            f"TemperaturePanel(temperature={self.temperature:.3g}, score={self.score!r}, auroc={self.auroc:.3f}, "
            f"fpr95={self.fpr95:.3f}, ece={self.ece:.3f})"
        )

    @traitlets.validate("temperature")
    def _check_temperature(self, proposal: dict) -> float:
        return Session.check_temperature(proposal["value"])

    @traitlets.validate("score")
    def _check_score(self, proposal: dict) -> str:
        if proposal["value"] not in SCORE_AXES:
            raise ValueError(f"score must be one of {list(SCORE_AXES)}, got {proposal['value']!r}")
        return proposal["value"]

    def _build_figures(self) -> None:
        from bokeh.layouts import row
        from bokeh.models import ColumnDataSource, Range1d
        from bokeh.plotting import figure

        empty_hist: dict[str, list[float]] = {"left": [], "right": [], "top": []}
        self.reference_source = ColumnDataSource(dict(empty_hist))
        self.others_source = ColumnDataSource(dict(empty_hist))
        self.reliability_source = ColumnDataSource({"left": [], "right": [], "top": [], "count": []})
        hist = figure(
            width=330, height=200, tools="", toolbar_location=None, x_range=Range1d(0, 1), y_range=Range1d(0, 1)
        )
        hist.quad(
            left="left",
            right="right",
            top="top",
            bottom=0,
            source=self.reference_source,
            fill_color="#4e79a7",
            fill_alpha=0.55,
            line_color=None,
            legend_label="reference",
        )
        self._others_glyph = hist.quad(
            left="left",
            right="right",
            top="top",
            bottom=0,
            source=self.others_source,
            fill_color="#f28e2b",
            fill_alpha=0.55,
            line_color=None,
            legend_label="rest",
        )
        hist.legend.location = "top_left"
        hist.legend.label_text_font_size = "10px"
        hist.legend.background_fill_alpha = 0.5  # bars under the legend stay visible
        hist.legend.border_line_alpha = 0.0
        hist.legend.padding = 2
        hist.legend.glyph_height = 12
        hist.legend.label_height = 12
        hist.title.text_font_size = "11px"
        hist.yaxis.axis_label = "share of group"
        rel = figure(
            width=230, height=200, tools="", toolbar_location=None, x_range=Range1d(0, 1), y_range=Range1d(0, 1)
        )
        rel.line([0, 1], [0, 1], line_dash="dashed", color="#888888")
        rel.quad(
            left="left",
            right="right",
            top="top",
            bottom=0,
            source=self.reliability_source,
            fill_color="#59a14f",
            fill_alpha=0.7,
            line_color="#ffffff",
        )
        rel.title.text_font_size = "11px"
        rel.xaxis.axis_label = "confidence"
        rel.yaxis.axis_label = "accuracy"
        self.histogram_figure, self.reliability_figure = hist, rel
        self.layout_figures = row(hist, rel)

    def _others(self) -> tuple[Any, str]:
        """Logits of the added groups (with their names) when there are some, else None: the rest."""
        groups = [g for g in self.session.added.values() if getattr(g, "outputs", None) is not None]
        if not groups:
            return None, "rest"
        return np.concatenate([np.asarray(g.outputs, np.float32) for g in groups]), ", ".join(g.name for g in groups)

    def refresh(self, change: dict | None = None) -> None:
        """Recompute the charts at the current temperature and score (and the current added groups)."""
        s, t, score = self.session, self.temperature, self.score

        def compute() -> TemperatureSummary:
            others, name = self._others()
            return temperature_summary(
                s.logits_numpy, s.reference_mask, t, score, labels=s.labels, other_logits=others, others_name=name
            )

        self.lane("summary").submit(compute, self._apply, inline=s.captured, message="scoring the logits…")

    def _apply(self, summary: TemperatureSummary) -> None:
        self.summary = summary
        e = summary.edges
        self.reference_source.data = {
            "left": e[:-1].tolist(),
            "right": e[1:].tolist(),
            "top": summary.reference_density.tolist(),
        }
        self.others_source.data = {
            "left": e[:-1].tolist(),
            "right": e[1:].tolist(),
            "top": summary.others_density.tolist(),
        }
        b = CALIBRATION_BINS
        filled = summary.bin_count > 0
        self.reliability_source.data = {
            "left": (np.arange(b)[filled] / b).tolist(),
            "right": ((np.arange(b)[filled] + 1) / b).tolist(),
            "top": summary.bin_accuracy[filled].tolist(),
            "count": summary.bin_count[filled].tolist(),
        }
        top = float(max(summary.reference_density.max(), summary.others_density.max()))
        self.histogram_figure.x_range.update(start=float(e[0]), end=float(e[-1]))
        self.histogram_figure.y_range.update(start=0.0, end=top * 1.1 if top > 0 else 1.0)
        self.histogram_figure.xaxis.axis_label = f"{SCORE_AXES[summary.score][0]} at T={summary.temperature:.3g}"
        nothing = summary.others.size == 0
        self.histogram_figure.title.text = (
            "nothing to compare with: every sample is in the reference (add some with ex.add_samples)"
            if nothing
            else f"AUROC {summary.auroc:.3f} · FPR@95%TPR {summary.fpr95:.3f}"
        )
        self.histogram_figure.legend.items[1].label = {"value": summary.others_name}
        self.reliability_figure.title.text = (
            f"reliability · ECE {summary.ece:.3f}" if math.isfinite(summary.ece) else "reliability (needs labels)"
        )
        self.auroc, self.fpr95, self.ece = summary.auroc, summary.fpr95, summary.ece
        versus = (
            "no other samples"
            if nothing
            else f"{summary.others_name}: AUROC <b>{summary.auroc:.3f}</b> · FPR@95%TPR <b>{summary.fpr95:.3f}</b>"
        )
        self.readout.value = f"T={summary.temperature:.3g} · reference vs {versus} · ECE <b>{summary.ece:.3f}</b>"
        self._sync_bundle()

    def _sync_bundle(self) -> None:
        """First data: show the charts through a fresh BokehModel; later changes reach them as document patches
        (see :meth:`LayerProfile._sync_bundle`)."""
        if not self._shown:
            self._shown = True
            self.bokeh.close()
            self.bokeh = _ClosableBokehModel(self.layout_figures)
            self.children = [*self._head, self.bokeh]
        else:
            self.bokeh._trait_values["render_bundle"] = _ClosableBokehModel._model_to_traits(self.layout_figures)

    def _mirror(self, change: dict | None = None) -> None:
        with self.status_bar.hold_sync():
            self.status_bar.status = self.status
            self.status_bar.message = self.message
            self.status_bar.revision = self.revision
            self.status_bar.summary = f"temperature panel · T={self.temperature:.3g} · {self.score}"
