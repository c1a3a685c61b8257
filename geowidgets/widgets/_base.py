"""Machinery every view shares: busy/error/revision traits and worker threads.

Arrays travel through the typed codec of :mod:`geowidgets.widgets._codec` (``array_trait``).

How a request flows (see docs/architecture.md#how-a-slider-move-flows):

* A trait change (slider move or Python assignment) calls :meth:`Lane.submit` with a
  ``compute`` function and an ``apply`` function.
* Cheap requests (answered from cache, well under ~100 ms) run inline: the result traits are set
  before the assignment returns.
* Anything else runs on the lane's worker thread while the view shows ``status="busy"``. Only the
  newest request of a lane is kept: a request still waiting is replaced, and a result whose
  request is no longer the newest is dropped (stale results are never drawn).
* ``apply`` sets the result traits in one batched update (``hold_sync``) and bumps
  ``revision``; an exception sets ``status="error"`` and ``message`` (shown in the widget).

Inside a running kernel, results computed on a worker thread are applied on the kernel's main
thread (through its asyncio loop), so comm messages and observers stay on one thread.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import queue
import threading
import traceback
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

__all__ = ["STATIC", "Lane", "ViewBase", "StatusBar", "check_keywords"]

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"


def check_keywords(owner: str, given: Any, allowed: Any) -> None:
    """Raise ``TypeError`` naming the unknown keywords in ``given`` and listing the ``allowed`` ones.

    ipywidgets accept any trait name as a keyword and silently ignore misspellings; the views and
    the Explorer call this first so that ``colourby=`` or ``pointsize=`` fail loudly.

    Examples
    --------
    >>> check_keywords("EmbeddingView", {"pointsize": 9}, ["point_size", "size"])
    Traceback (most recent call last):
    ...
    TypeError: EmbeddingView() got an unexpected keyword argument 'pointsize'; allowed: point_size, size
    """
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        what = "an unexpected keyword argument" if len(unknown) == 1 else "unexpected keyword arguments"
        names = ", ".join(repr(u) for u in unknown)
        raise TypeError(f"{owner}() got {what} {names}; allowed: {', '.join(sorted(allowed))}")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _error_text(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return f"{name}: {text}"


class Lane:
    """One stream of requests of a view (e.g. "positions" or "colours"), newest-wins.

    Parameters
    ----------
    owner : ViewBase or LayerProfile
        The view whose ``status``/``message``/``revision`` this lane drives.
    name : str
        Name for the worker thread and messages.
    """

    def __init__(self, owner: _Worker, name: str):
        self.owner = owner
        self.name = name
        self._lock = threading.Lock()
        self._generation = 0
        self._pending: tuple | None = None
        self._thread: threading.Thread | None = None
        self._busy = False
        self._idle = threading.Event()
        self._idle.set()
        self.error: str | None = None

    @property
    def busy(self) -> bool:
        """True while a request of this lane is waiting or running."""
        return self._busy

    def submit(
        self,
        compute: Callable[[], Any],
        apply: Callable[[Any], None],
        *,
        inline: bool = False,
        message: str = "working…",
    ) -> None:
        """Ask for ``apply(compute())``; newer submissions supersede this one.

        Parameters
        ----------
        compute : callable
            Does the work; runs on a worker thread unless ``inline``.
        apply : callable
            Receives the result and sets traits; always runs where traits may be set.
        inline : bool
            Run now on the caller's thread (only for cheap work, and only when the lane is idle).
        message : str
            Progress text shown while busy.
        """
        with self._lock:
            self._generation += 1
            generation = self._generation
            run_now = inline and not self._busy
            if not run_now:
                self._pending = (generation, compute, apply)
                self._busy = True
                self._idle.clear()
                new_thread: threading.Thread | None = None
                if self._thread is None:
                    # Not a daemon: interpreter exit waits for the running job, instead of tearing torch down
                    # under it ("terminate called without an active exception", exit code 134).
                    new_thread = threading.Thread(target=self._work, name=f"geowidgets-{self.name}", daemon=False)
                    self._thread = new_thread
        if run_now:
            try:
                result = compute()
            except Exception as exc:  # noqa: BLE001 - shown in the widget
                self._fail(exc)
                return
            self._apply(generation, apply, result)
            return
        self.owner._refresh_status(message)
        if new_thread is not None:
            new_thread.start()

    def cancel(self) -> None:
        """Drop the waiting request and make a running one stale (its result is never applied)."""
        with self._lock:
            self._generation += 1
            self._pending = None

    def _work(self) -> None:
        while True:
            with self._lock:
                job = self._pending
                self._pending = None
                if job is None:
                    self._thread = None
                    self._busy = False
                    break
            generation, compute, apply = job
            try:
                result = compute()
            except Exception as exc:  # noqa: BLE001 - shown in the widget
                if generation == self._generation:
                    self.owner._deliver(functools.partial(self._fail, exc))
                continue
            if generation == self._generation:
                self.owner._deliver(functools.partial(self._apply, generation, apply, result))
        # Refresh the status before signalling idle, so wait() never returns while "busy" shows.
        self.owner._deliver(lambda: self.owner._refresh_status())
        with self._lock:
            if not self._busy:  # a request submitted meanwhile keeps the lane busy
                self._idle.set()

    def _apply(self, generation: int, apply: Callable[[Any], None], result: Any) -> None:
        if generation != self._generation:
            return  # a newer request exists: never draw a stale result
        try:
            with self.owner.hold_sync():
                apply(result)
                self.owner.revision += 1
        except Exception as exc:  # noqa: BLE001 - shown in the widget
            self._fail(exc)
            return
        self.error = None
        self.owner._refresh_status()

    def _fail(self, exc: BaseException) -> None:
        self.error = _error_text(exc)
        self.owner.log_error(exc)
        self.owner._refresh_status()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the lane is idle; True if it is."""
        return self._idle.wait(timeout)


class _Worker:
    """Mixin: lanes plus delivery of results to the thread that owns the traits.

    The class it is mixed into provides ``revision``, ``status`` and ``message`` traits and
    ``hold_sync`` (an ipywidgets widget).
    """

    if TYPE_CHECKING:
        revision: int
        status: str
        message: str

        def hold_sync(self) -> AbstractContextManager[Any]: ...

    def _init_worker(self) -> None:
        self._lanes: dict[str, Lane] = {}
        self._loop = _running_loop()
        self._main_thread = threading.get_ident()
        self._deliveries: queue.SimpleQueue = queue.SimpleQueue()
        self._apply_lock = threading.RLock()

    def lane(self, name: str) -> Lane:
        """The lane called ``name`` (created on first use)."""
        if name not in self._lanes:
            self._lanes[name] = Lane(self, name)
        return self._lanes[name]

    def _deliver(self, fn: Callable[[], None]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._deliveries.put(fn)
            self._loop.call_soon_threadsafe(self._drain)
        else:
            with self._apply_lock:
                fn()

    def _drain(self) -> None:
        while True:
            try:
                fn = self._deliveries.get_nowait()
            except queue.Empty:
                return
            with self._apply_lock:
                fn()

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until every lane is idle and its results are applied (for scripts and tests).

        Returns True if the view is idle, False on timeout. Inside a running kernel call it from a
        later cell: results are applied when the kernel is free.
        """
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for lane in list(self._lanes.values()):
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not lane.wait(remaining):
                    return False
            if threading.get_ident() == self._main_thread:
                self._drain()
            if not any(lane.busy for lane in self._lanes.values()) and self._deliveries.empty():
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False

    def log_error(self, exc: BaseException) -> None:
        """Keep the traceback of the last error (``view.last_traceback``) for debugging."""
        self.last_traceback = "".join(traceback.format_exception(exc))

    def _refresh_status(self, message: str | None = None) -> None:
        """busy while any lane works; else error while any lane's last request failed; else idle."""
        lanes = list(self._lanes.values())
        errors = [lane.error for lane in lanes if lane.error]
        with self.hold_sync():
            if any(lane.busy for lane in lanes):
                if message is not None or self.status != "busy":
                    self.message = message if message is not None else "working…"
                self.status = "busy"
            elif errors:
                self.message = errors[0]
                self.status = "error"
            else:
                self.message = ""
                self.status = "idle"


class ViewBase(_Worker, anywidget.AnyWidget):
    """Base of the anywidget views: ``revision``, ``status``, ``message`` and worker lanes.

    Attributes
    ----------
    revision : int
        Bumped each time a result has been set; the browser marks ``data-gw-drawn`` with the
        revision it drew.
    status : {"idle", "busy", "error"}
    message : str
        Progress or error text, shown in the widget's ``.gw-status`` element.
    """

    revision = traitlets.Int(
        0, help="Result counter (int): bumped each time results have been set; the browser marks data-gw-drawn with it."
    ).tag(sync=True)
    status = traitlets.Unicode(
        "idle", help='Work state (str): "idle", "busy" (a lane is computing) or "error" (see message).'
    ).tag(sync=True)
    message = traitlets.Unicode(
        "", help="Progress text while busy, the error text after a failure, else empty (str); shown in .gw-status."
    ).tag(sync=True)
    _css = STATIC / "widgets.css"

    #: Deprecated keyword spellings a view still accepts for one release: old -> new.
    _renamed_keywords: dict[str, str] = {}

    def __init__(self, **kwargs: Any):
        for old, new in self._renamed_keywords.items():
            if old in kwargs:
                warnings.warn(
                    f"{type(self).__name__}({old}=...) is deprecated and will be removed in the next release; "
                    f"use {new}=",
                    DeprecationWarning,
                    stacklevel=3,
                )
                kwargs.setdefault(new, kwargs.pop(old))
        check_keywords(type(self).__name__, kwargs, self.keyword_traits())
        self.last_traceback = ""
        self._init_worker()
        super().__init__(**kwargs)

    @classmethod
    def keyword_traits(cls) -> list[str]:
        """The traits a constructor accepts as keywords: the view's own settable traits, plus ``layout``."""
        own = set()
        for klass in cls.__mro__:
            if isinstance(klass, type) and issubclass(klass, ViewBase):
                own |= {name for name, value in vars(klass).items() if isinstance(value, traitlets.TraitType)}
        traits = cls.class_traits()
        skip = {"revision", "status", "message"}
        return sorted(
            name
            for name in own | {"layout"}
            if name in traits and not name.startswith("_") and name not in skip and not traits[name].read_only
        )

    @traitlets.validate("status")
    def _check_status(self, proposal: dict) -> str:
        if proposal["value"] not in ("idle", "busy", "error"):
            raise traitlets.TraitError(f"status must be 'idle', 'busy' or 'error', got {proposal['value']!r}")
        return proposal["value"]


class StatusBar(anywidget.AnyWidget):
    """A status line that marks the ipywidgets Box it sits in as a geowidgets view root.

    Used by the Box-based views (Explorer, LayerProfile): its JavaScript finds the enclosing
    element with class ``root_class`` and sets ``data-gw-view`` and, after each draw,
    ``data-gw-drawn`` on it (for the Explorer: once every nested view has drawn its revision).
    """

    _esm = STATIC / "status.js"
    _css = STATIC / "widgets.css"
    view = traitlets.Unicode(
        "explorer", help='View name (str) written to the root\'s data-gw-view, e.g. "explorer" or "profile".'
    ).tag(sync=True)
    root_class = traitlets.Unicode(
        "gw-explorer", help="CSS class (str) of the enclosing ipywidgets Box that is the view's root element."
    ).tag(sync=True)
    revision = traitlets.Int(
        0, help="Revision (int) of the composed view; data-gw-drawn is set to it once every nested view has drawn."
    ).tag(sync=True)
    status = traitlets.Unicode("idle", help='Work state (str) of the composed view: "idle", "busy" or "error".').tag(
        sync=True
    )
    message = traitlets.Unicode("", help="Progress or error text (str) shown in the status line.").tag(sync=True)
    summary = traitlets.Unicode("", help="One-line summary (str) shown left of the status, e.g. N, layer, k.").tag(
        sync=True
    )
    needs_bokeh = traitlets.Bool(
        False, help="Whether the view needs BokehJS on the page (bool); if missing, the status line says so."
    ).tag(sync=True)
