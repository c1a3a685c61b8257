"""EmbeddingView: a WebGL scatter of one layer's 2-D layout, colored by any per-point value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import traitlets
from numpy.typing import ArrayLike

from geowidgets.session import ColorSpec, Session
from geowidgets.session._colorings import renamed_alias, value_coloring, warn_renamed
from geowidgets.widgets._base import STATIC, ViewBase
from geowidgets.widgets._codec import array_trait

__all__ = ["EmbeddingView", "normalise_positions"]

# N x D below which a layer's PCA layout is computed inline on a layer change (~30 ms per 10^6 on 2 cores).
INLINE_PCA_CELLS = 2_000_000


def layout_transform(xy: Any, pad: float = 0.95) -> tuple[np.ndarray, float]:
    """Centre and scale of :func:`normalise_positions` for ``xy`` ``[N, 2]``: ``(xy - centre) * scale``.

    Examples
    --------
    >>> centre, scale = layout_transform([[0, 0], [4, 2]])
    >>> centre.tolist(), round(scale, 4)
    ([2.0, 1.0], 0.475)
    """
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        return np.zeros(2), 1.0
    lo, hi = arr.min(0), arr.max(0)
    half = float((hi - lo).max()) / 2
    return (lo + hi) / 2, (pad / half if half > 0 else 1.0)


def normalise_positions(xy: Any, pad: float = 0.95) -> np.ndarray:
    """Centre a layout and scale it uniformly (aspect kept) so it fits in ``[-pad, pad]^2``.

    Parameters
    ----------
    xy : array-like, shape [N, 2]
        Finite coordinates.
    pad : float
        Half-width the longer side is scaled to (``< 1`` keeps edge points whole on screen).

    Returns
    -------
    numpy.ndarray
        float32 ``[N, 2]`` within ``[-1, 1]``.

    Examples
    --------
    >>> normalise_positions([[0, 0], [4, 2]]).tolist()
    [[-0.949999988079071, -0.4749999940395355], [0.949999988079071, 0.4749999940395355]]
    """
    arr = xy.detach().cpu().numpy() if hasattr(xy, "detach") else np.asarray(xy)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"positions must have shape [N, 2], got {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    if arr.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.float32)
    # Column-wise reductions: numpy's axis-0 reduction over a 2-wide array is ~50x slower.
    cols = (arr[:, 0], arr[:, 1])
    lo = np.array([float(c.min()) for c in cols])
    hi = np.array([float(c.max()) for c in cols])
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("positions contain NaN/inf; only finite coordinates can be drawn")
    half = float((hi - lo).max()) / 2
    out = np.empty(arr.shape, dtype=np.float32)
    scale = np.float32(pad / half) if half > 0 else np.float32(1.0)
    for j in range(2):  # contiguous per-column writes are the fast path for [N, 2]
        out[:, j] = (cols[j] - np.float32((lo[j] + hi[j]) / 2)) * scale
    return out


class EmbeddingView(ViewBase):
    """WebGL scatter (regl-scatterplot) of a layer's embedding, for up to ~10^6 points.

    Give it a :class:`~geowidgets.Session` and it is live: it computes layouts and colors for
    ``layer``, ``k``, ``temperature`` and ``color_by``. Give it a layout ``[N, 2]`` (any 2-D
    embedding, e.g. ``geo.embed(X)``) and it is static: it shows those points, colored by
    ``labels`` (or ``predictions``, or :meth:`set_colors`), and refuses the controls it cannot
    serve without a session (layer, k, temperature, method) instead of recomputing anything.

    Positions are sent once, normalised to ``[-1, 1]`` (aspect kept), as a float32 buffer; a k or
    temperature move sends only the new values; a layer change animates the points to the new
    layout, aligned to the one on screen. The first picture of a layer is its PCA; with
    ``method="umap"`` a UMAP layout (warm-started, on a worker thread) replaces it.

    Parameters
    ----------
    source : Session or array-like [N, 2], optional
        A session (live) or point positions (static); None: an empty view for
        :meth:`set_points`.
    labels : array-like of int [N], optional
        Static view: class codes of the points (named by ``class_names``).
    predictions : array-like of int [N], optional
        Static view: predicted classes (shown in tooltips, ``color_by="prediction"``).
    class_names : list of str, optional
        Static view: names of the class codes.
    layer, k, temperature, color_by, method, point_size, size : see the traits
        Any other trait is accepted as a keyword too.
        Unknown keywords raise ``TypeError`` listing the allowed ones; ``colour_by`` is a
        deprecated alias of ``color_by``.

    Attributes
    ----------
    selection : list of int
        Indices selected in the browser (click a point; shift+drag to lasso).
    hovered : int
        Index under the mouse, or -1.

    Examples
    --------
    >>> import numpy as np
    >>> xy = np.random.default_rng(0).normal(size=(100, 2))
    >>> view = EmbeddingView(xy, labels=np.arange(100) % 3)
    >>> view.n_points, view.color_by
    (100, 'label')
    """

    _esm = STATIC / "embedding.js"

    positions = array_trait(
        "float32",
        "[N, 2]",
        "Point positions, float32 [N, 2]: the layout normalised to [-1, 1] (centred, aspect kept); row i is sample i.",
    )
    sample_indices = array_trait(
        "int32",
        "[M]",
        "Sample index of each point, int32 [M], while a layer's first picture shows M landmarks (a random "
        "subsample, drawn before the whole set is captured); None when point i is sample i.",
    )
    values = array_trait(
        "float32",
        "[N]",
        "Colour value of each point, float32 [N]: class codes of a categorical colouring, else the probe's value "
        "(in the units of color_label).",
    )
    color_kind = traitlets.Unicode(
        "categorical", help="Colour scale (str): 'categorical', 'continuous' or 'diverging' (centred at 0)."
    ).tag(sync=True)
    color_label = traitlets.Unicode(
        "", help="Name of the colouring (str) shown in the legend and tooltip, e.g. 'label' or 'knn_deviation'."
    ).tag(sync=True)
    value_range = traitlets.List(
        traitlets.Float(),
        default_value=[0.0, 1.0],
        help="[vmin, vmax] (2 floats) of a continuous or diverging colour scale, in the units of values.",
    ).tag(sync=True)
    categories = traitlets.List(
        traitlets.Unicode(), default_value=[], help="Names (list of str) of the codes 0..C-1 of a categorical colouring"
    ).tag(sync=True)
    labels = array_trait("int32", "[N]", "True class of each point, int32 [N] (class codes, named by class_names).")
    predictions = array_trait("int32", "[N]", "Predicted class (argmax of the logits) of each point, int32 [N].")
    class_names = traitlets.List(
        traitlets.Unicode(), default_value=[], help="Class names (list of str), indexed by class code."
    ).tag(sync=True)
    images = array_trait(
        "uint8",
        "[N, H, W] or [N, H, W, 3]",
        "Tooltip thumbnail of each sample, uint8 0..255: [N, H, W] grey (255 = ink, drawn dark) or [N, H, W, 3] RGB.",
    )
    selection = traitlets.List(
        traitlets.Int(),
        default_value=[],
        help="Indices (list of int) of the selected samples: click a point, shift+drag to lasso; settable from Python.",
    ).tag(sync=True)
    hovered = traitlets.Int(-1, help="Index (int) of the sample under the mouse, -1 if none.").tag(sync=True)
    animate = traitlets.Bool(
        True, help="Animate a new layout of the same points from the one on screen (bool, 600 ms)."
    ).tag(sync=True)
    point_size = traitlets.Float(
        4.0,
        help="Point diameter in CSS pixels at N = 1000 (float); drawn scaled by (1000 / N)^(1/4), kept within "
        "0.5x..2.5x, so few points are drawn larger than many.",
    ).tag(sync=True)
    size = traitlets.Int(440, help="Canvas width and height in CSS pixels (int).").tag(sync=True)
    title = traitlets.Unicode("", help="Title line above the plot (str), set by the view.").tag(sync=True)
    texts = traitlets.List(
        traitlets.Unicode(),
        default_value=[],
        help="Hover text of each point (list of N str, e.g. a sentence); [] for none.",
    ).tag(sync=True)
    details = traitlets.List(
        traitlets.Unicode(),
        default_value=[],
        help="Extra tooltip lines of each point (list of N str, lines separated by newlines: metadata columns, "
        "regression target and prediction); [] for none.",
    ).tag(sync=True)
    added_positions = array_trait(
        "float32",
        "[M, 2]",
        "Positions of added samples (Session.add_samples), float32 [M, 2] in the coordinates of positions, "
        "groups one after another as listed in added_groups; drawn as rings over the points.",
    )
    added_groups = traitlets.List(
        traitlets.Dict(),
        default_value=[],
        help="Added sample groups (list of dict with 'name' (str) and 'count' (int)), in the order of added_positions.",
    ).tag(sync=True)

    layer = traitlets.Unicode("", help="Layer shown (str): one of session.layers.").tag(sync=True)
    k = traitlets.Int(
        10, help="Neighbour count (int, 1..session.k_max) of the k-based colourings, e.g. kNN deviation."
    ).tag(sync=True)
    temperature = traitlets.Float(
        1.0, help="Softmax temperature (float > 0) of the confidence-based colourings; 1 is the model as trained."
    ).tag(sync=True)
    color_by = traitlets.Unicode(
        "label", help="Coloring (str): one of session.colorings (see geowidgets.session.COLOR_BY)."
    ).tag(sync=True)
    method = traitlets.Unicode(
        "umap",
        help="Layout method (str): 'pca' (shown first), 'umap' or 'heatgeo' (heat-geodesic MDS), which refine the "
        "PCA on a worker thread.",
    ).tag(sync=True)
    n_neighbors = traitlets.Int(
        15, help="UMAP's and heatgeo's neighbourhood size (int; UMAP counts the point itself): 2..session.k_max + 1."
    ).tag(sync=True)
    min_dist = traitlets.Float(0.1, help="UMAP's minimum distance between embedded points (float >= 0).").tag(sync=True)
    diffusion_time = traitlets.Float(10.0, help="Heat-geodesic diffusion time t (float > 0) of method 'heatgeo'.").tag(
        sync=True
    )

    @property
    def n_points(self) -> int:
        """Number of points shown (rows of ``positions``; 0 before the first layout)."""
        return 0 if self.positions is None else int(self.positions.shape[0])

    _renamed_keywords = {"colour_by": "color_by"}

    def __init__(
        self,
        source: Session | ArrayLike | None = None,
        labels: ArrayLike | None = None,
        *,
        predictions: ArrayLike | None = None,
        class_names: list[str] | None = None,
        **kwargs: Any,
    ):
        session = source if isinstance(source, Session) else None
        if session is not None and (labels is not None or predictions is not None or class_names is not None):
            raise TypeError("labels, predictions and class_names come from the session; pass them to Session")
        self.session = session
        self._raw_layout: np.ndarray | None = None
        self._sent_capture_free = False  # labels, images, texts: sent with the first picture
        self._layout_key: tuple | None = None
        if session is not None:
            kwargs.setdefault("layer", session.layers[-1])
            if session.labels is None and kwargs.get("color_by", kwargs.get("colour_by", "label")) == "label":
                kwargs.pop("colour_by", None)
                kwargs["color_by"] = "prediction"
        elif labels is None and predictions is not None:
            kwargs.setdefault("color_by", "prediction")
        super().__init__(**kwargs)
        if session is not None:
            if self.method == "umap":
                from geowidgets import geometry as geo

                geo.warm_up_umap()  # compile umap's numba kernels in the background, once per process
            self.observe(self._on_layer, names=["layer", "method", "n_neighbors", "min_dist", "diffusion_time"])
            self.observe(self._on_values, names=["k", "temperature", "color_by"])
            self._on_layer()
            return
        if source is not None and not isinstance(source, Session):
            self.set_points(source, labels=labels, predictions=predictions, class_names=class_names)
            if not self.title:
                self.title = "static layout (no session): layer, k, temperature and method are fixed"
            self._color_static()
        self.observe(self._color_static, names=["color_by"])

    def __repr__(self) -> str:
        mode = f"layer={self.layer!r}, live" if self.session is not None else "static"
        return f"EmbeddingView(N={self.n_points}, color_by={self.color_by!r}, {mode})"

    # Deprecated spellings (traits and methods renamed to color), kept for one release.
    colour_by = renamed_alias("colour_by", "color_by")
    colour_kind = renamed_alias("colour_kind", "color_kind", writable=False)
    colour_label = renamed_alias("colour_label", "color_label", writable=False)

    def set_colours(self, values: ArrayLike, kind: str = "continuous", **kwargs: Any) -> None:
        """Deprecated alias of :meth:`set_colors`."""
        warn_renamed("set_colours", "set_colors")
        self.set_colors(values, kind, **kwargs)

    # ------------------------------------------------------------------ validation
    def _needs_session(self, name: str) -> None:
        if self.session is None:
            raise ValueError(
                f"this EmbeddingView is static (built from a layout, no session), so {name} cannot change; "
                "pass a geowidgets Session to make it live"
            )

    @traitlets.validate("layer")
    def _check_layer(self, proposal: dict) -> str:
        self._needs_session("layer")
        return self._live.check_layer(proposal["value"])

    @traitlets.validate("k")
    def _check_k(self, proposal: dict) -> int:
        self._needs_session("k")
        return self._live.check_k(proposal["value"])

    @traitlets.validate("temperature")
    def _check_temperature(self, proposal: dict) -> float:
        self._needs_session("temperature")
        return Session.check_temperature(proposal["value"])

    @traitlets.validate("color_by")
    def _check_color_by(self, proposal: dict) -> str:
        if self.session is not None:
            allowed = self.session.colorings
        else:  # static: the class codes it was given
            allowed = [
                name
                for name, trait in (("label", "labels"), ("prediction", "predictions"))
                if getattr(self, trait, None) is not None
            ]
            allowed = allowed or ["label"]
        if proposal["value"] not in allowed:
            raise ValueError(f"color_by must be one of {allowed}, got {proposal['value']!r}")
        return proposal["value"]

    @traitlets.validate("method")
    def _check_method(self, proposal: dict) -> str:
        self._needs_session("method")
        if proposal["value"] not in ("pca", "umap", "heatgeo"):
            raise ValueError(f"method must be 'pca', 'umap' or 'heatgeo', got {proposal['value']!r}")
        return proposal["value"]

    def layout_params(self, method: str | None = None) -> dict[str, Any]:
        """``Session.layout``'s parameters of ``method`` (default: the current one) from the view's controls.

        Those at ``geo.embed``'s defaults are left out (the session caches one layout per distinct
        picture); invalid values raise ``ValueError``.
        """
        from geowidgets.session._boundary import check_layout_params

        method = self.method if method is None else method
        if self.session is None:
            raise ValueError("a static layout has no layout parameters; pass a geowidgets Session")
        k_max = self.session.k_max
        given = {
            "pca": {},
            "umap": {"n_neighbors": min(self.n_neighbors, k_max + 1), "min_dist": self.min_dist},
            "heatgeo": {"n_neighbors": min(self.n_neighbors, k_max), "t": self.diffusion_time},
        }[method]
        return check_layout_params(method, given, k_max)

    # ------------------------------------------------------------------ direct use
    def set_points(
        self,
        xy: ArrayLike,
        *,
        labels: ArrayLike | None = None,
        predictions: ArrayLike | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        """Show new point positions ``[N, 2]`` (normalised here); same N animates from the old ones.

        Examples
        --------
        >>> view = EmbeddingView()
        >>> view.set_points([[0, 0], [1, 1], [2, 0]], labels=[0, 1, 1])
        >>> view.revision
        1
        """
        with self.hold_sync():
            self._set_positions(xy)
            n = self.n_points
            if labels is not None:
                self.set_trait("labels", self._check_len(labels, n, "labels").astype(np.int32))
            if predictions is not None:
                self.set_trait("predictions", self._check_len(predictions, n, "predictions").astype(np.int32))
            if class_names is not None:
                self.class_names = [str(c) for c in class_names]
            if self.values is not None and self.values.shape[0] != n:
                self.set_trait("values", None)
            self.revision += 1

    def set_colors(
        self,
        values: ArrayLike,
        kind: str = "continuous",
        *,
        vmin: float | None = None,
        vmax: float | None = None,
        categories: list[str] | None = None,
        label: str = "value",
    ) -> None:
        """Color the points by ``values`` ``[N]`` (only the values travel; positions stay).

        ``kind`` is ``"categorical"`` (integer codes, named by ``categories``), ``"continuous"``
        or ``"diverging"`` (centred at 0).
        """
        spec = value_coloring(values, kind, vmin=vmin, vmax=vmax, categories=categories, name=label, n=self.n_points)
        with self.hold_sync():
            self._set_color_spec(spec)
            self.revision += 1

    def _color_static(self, change: dict | None = None) -> None:
        """Static view: color by the class codes it was given (labels or predictions)."""
        codes = self.labels if self.color_by == "label" else self.predictions
        if codes is None or self.n_points == 0:
            return
        names = list(self.class_names) or None
        self.set_colors(codes, "categorical", categories=names, label=self.color_by)

    @staticmethod
    def _check_len(values: Any, n: int, name: str) -> np.ndarray:
        arr = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
        if arr.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) (one per point), got {arr.shape}")
        return arr

    def _set_positions(self, xy: Any) -> None:
        norm = normalise_positions(xy)
        self.set_trait("positions", norm)

    def _set_color_spec(self, spec: ColorSpec) -> None:
        self.set_trait("values", np.asarray(spec.values, dtype=np.float32))
        self.color_kind = spec.kind
        self.value_range = [float(spec.vmin), float(spec.vmax)]
        self.categories = list(spec.categories)
        self.color_label = spec.name

    # ------------------------------------------------------------------ session-driven
    def _set_static(self, traits: dict[str, Any]) -> None:
        for name, value in traits.items():
            self.set_trait(name, value)
        if "class_names" in traits:
            self._sent_capture_free = True

    def _static_traits(self, capture_free: bool = False) -> dict[str, Any]:
        """Per-sample traits set once: those needing no capture (each sent once), then the predictions'."""
        s = self._live
        out: dict[str, Any] = {}
        if not self._sent_capture_free:
            out["class_names"] = s.class_names
            if s.labels is not None:
                out["labels"] = np.asarray(s.labels, np.int32)
            if s.images is not None:
                out["images"] = np.asarray(s.images, np.uint8)
            if s.texts is not None:
                out["texts"] = list(s.texts)
        if capture_free:
            return out
        if s.task == "classification":
            out["predictions"] = np.asarray(s.predictions, np.int32)
        out["details"] = tooltip_details(s)
        return out

    def refresh_added(self) -> None:
        """Draw the session's added sample groups (:meth:`Session.add_samples`) in the current layout."""
        s = self.session
        if s is None or self._raw_layout is None:
            return
        groups = list(s.added.values())
        if not groups:
            xy = np.zeros((0, 2), dtype=np.float32)
        else:
            centre, scale = layout_transform(self._raw_layout)
            raw = np.concatenate([g.positions(self.layer, self._raw_layout) for g in groups])
            xy = ((raw - centre) * scale).astype(np.float32)
        with self.hold_sync():
            self.set_trait("added_positions", xy)
            self.added_groups = [{"name": g.name, "count": g.n} for g in groups]
            self.revision += 1

    def _current_layout(self) -> np.ndarray | None:
        return self._raw_layout

    def _on_layer(self, change: dict | None = None) -> None:
        s, layer, method = self._live, self.layer, self.method
        params = self.layout_params()
        reference = self._current_layout()
        first = reference is None
        if change is not None and change["name"] in ("n_neighbors", "min_dist", "diffusion_time"):
            if first or method == "pca":
                return  # the PCA shown first does not use them; a refinement reads them when it starts
        self.lane("refine").cancel()

        def compute_pca():
            return s.layout(layer, "pca", reference=reference), (self._static_traits() if first else {})

        def apply(result, stage="pca"):
            xy, extra = result
            self._set_static(extra)
            if self.sample_indices is not None:  # landmarks were shown: every point is a sample again
                xy = _orient_like(xy, self.sample_indices, self.positions)
                self.set_trait("sample_indices", None)
            self._raw_layout = xy
            self._set_positions(xy)
            if self.session.added or self.added_groups:
                self.refresh_added()
            self.title = f"{layer} · {_METHOD_TITLES[stage]}" + (
                f" (refining with {_METHOD_TITLES[method]}…)" if stage == "pca" and method != "pca" else ""
            )
            if stage == "pca" and method != "pca":
                self._refine(layer)

        def compute_first_pca():
            s.landmarks(s.preview_rows)  # the landmarks' capture first, so the first picture never waits
            return compute_pca()

        done = s.has_layout(layer, method, **params)
        if done:  # cached (e.g. a UMAP computed earlier): only the alignment runs
            self.lane("layout").submit(
                lambda: (
                    s.layout(layer, method, reference=reference, **params),
                    self._static_traits() if first else {},
                ),
                lambda r: apply(r, method),
                inline=True,
            )
        elif change is not None and change["name"] in ("n_neighbors", "min_dist", "diffusion_time"):
            self._refine(layer)  # a parameter of the layout on screen: refine it in place, no PCA first
        else:
            # PCA is O(N·D²): inline (no thread) only while that stays well under ~100 ms.
            small = s.captured and s.n * s.features(layer).shape[1] <= INLINE_PCA_CELLS
            landmarks = first and not s.captured and s.n > s.preview_rows
            if landmarks:  # the first picture from landmarks while the whole set is captured
                by = self.color_by
                self.lane("landmarks").submit(
                    lambda: s.landmark_picture(layer, by),
                    lambda picture: self._show_landmarks(layer, picture),
                    message=f"capturing {s.preview_rows:,} landmarks of {layer}…",
                )
            compute = compute_first_pca if landmarks else compute_pca
            if first and not s.captured:  # the status line counts the samples captured (a determinate bar)
                compute = self._following_capture(compute, layer)
            self.lane("layout").submit(
                compute,
                apply,
                inline=small,
                message=f"capturing {s.n:,} samples and laying out {layer}…" if first else f"laying out {layer}…",
            )
        self._on_values()

    def _following_capture(self, compute: Callable[[], Any], layer: str) -> Callable[[], Any]:
        """``compute`` that reports the session's capture, batch by batch, in this view's status line."""

        def text(done: int, total: int) -> str:
            return f"laying out {layer}…" if done >= total else f"captured {done:,} / {total:,} samples…"

        def run() -> Any:
            with self.following_capture(self._live, text):
                return compute()

        return run

    def _show_landmarks(self, layer: str, picture: Any) -> None:
        """Draw a layer's first picture from landmarks (``Session.landmark_picture``) until its full layout.

        Positions are the landmarks' (``sample_indices`` names their samples); every per-sample
        trait stays indexed by sample, so only what needs no capture is sent now (labels, images,
        texts) and the rest with the whole layout.
        """
        s = self._live
        if self._raw_layout is not None or layer != self.layer:
            return  # the whole layout (or another layer) is already shown
        self.set_trait("sample_indices", picture.rows.astype(np.int32))
        self._set_positions(picture.positions)
        if picture.colors is not None and self.values is None:
            self._set_color_spec(picture.colors)
        self._set_static(self._static_traits(capture_free=True))
        self.title = f"{layer} · PCA of {len(picture.rows):,} landmarks of {s.n:,} samples (capturing the rest…)"

    def _refine(self, layer: str) -> None:
        s, method = self._live, self.method
        params = self.layout_params()
        reference = self._raw_layout

        def apply(xy):
            self._raw_layout = xy
            self._set_positions(xy)
            if self.session.added or self.added_groups:
                self.refresh_added()
            self.title = f"{layer} · {_METHOD_TITLES[method]}"

        self.lane("refine").submit(
            lambda: s.layout(layer, method, reference=reference, **params),
            apply,
            message=f"refining {layer} with {_METHOD_TITLES[method]}…",
        )

    def _on_values(self, change: dict | None = None) -> None:
        s, layer, k, t, by = self._live, self.layer, self.k, self.temperature, self.color_by
        cheap = s.color_is_cheap(by, layer)
        self.lane("values").submit(
            lambda: s.color_values(by, layer=layer, k=k, temperature=t),
            self._set_color_spec,
            inline=cheap,
            message=f"computing {by} for {layer}…",
        )


def _orient_like(xy: np.ndarray, rows: np.ndarray, shown: np.ndarray | None) -> np.ndarray:
    """``xy`` with each axis flipped where that matches the landmarks ``shown`` (rows ``rows``) better.

    A PCA's axes have no sign: the layout of every sample replaces the landmarks' picture without
    mirroring it.
    """
    if shown is None or len(shown) != len(rows) or len(rows) < 2:
        return xy
    signs = [-1.0 if float(np.dot(xy[rows, j] - xy[rows, j].mean(), shown[:, j])) < 0 else 1.0 for j in range(2)]
    return xy if signs == [1.0, 1.0] else (xy * np.asarray(signs, dtype=xy.dtype)).astype(np.float32)


#: How the title names each layout method.
_METHOD_TITLES = {"pca": "PCA", "umap": "UMAP", "heatgeo": "heat-geodesic"}


def tooltip_details(session: Session, max_lines: int = 6) -> list[str]:
    """Per-row tooltip lines: regression target and prediction, then up to ``max_lines`` metadata columns."""
    columns: list[tuple[str, Any]] = []
    if session.task == "regression":
        columns.append(("prediction", session.predictions))
        if session.targets is not None:
            columns.append(("target", session.targets))
    if session.metadata is not None:
        columns += [(str(c), session.metadata[c].to_numpy()) for c in list(session.metadata.columns)[:max_lines]]
    if not columns:
        return []
    return ["\n".join(f"{name}: {_format_value(values[i])}" for name, values in columns) for i in range(session.n)]


def _format_value(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)
